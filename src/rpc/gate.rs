//! The bootstrap capability of the app API: `Gate.login(token)` hands out the `Service` only
//! for the node's client token.

use std::rc::Rc;
use std::sync::Arc;

use crate::node::Node;
use crate::rpc::admission::Admission;
use crate::rpc::limits::ConnectionBudget;
use crate::rpc::service::ServiceImpl;
use crate::schema::service_capnp::{gate, service};

/// Serves `Gate` on one connection.
pub struct GateImpl {
    node: Arc<Node>,
    budget: Rc<ConnectionBudget>,
    admission: Arc<Admission>,
}

impl GateImpl {
    /// The gate of a connection whose limits are `budget`: a successful login marks it
    /// authenticated, and the services it hands out wait on it for room for large answers. A
    /// wrong token is counted by the port's `admission` (logged once, then summed up).
    pub fn new(node: Arc<Node>, budget: Rc<ConnectionBudget>, admission: Arc<Admission>) -> Self {
        GateImpl {
            node,
            budget,
            admission,
        }
    }
}

impl gate::Server for GateImpl {
    async fn login(
        self: Rc<Self>,
        params: gate::LoginParams,
        mut results: gate::LoginResults,
    ) -> capnp::Result<()> {
        let token = params.get()?.get_token()?.to_str()?;
        if let Err(error) = self.node.check_token(token) {
            self.admission
                .note_failure("a login with a wrong client token");
            return Err(error.into());
        }
        self.budget.authenticate();
        let service: service::Client =
            capnp_rpc::new_client(ServiceImpl::new(self.node.clone(), self.budget.clone()));
        results.get().set_service(service);
        Ok(())
    }
}
