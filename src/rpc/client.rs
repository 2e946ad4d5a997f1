//! Dialling a node's app API and logging in: used by the CLI, the embedded test server and
//! the benchmarks. Cap'n Proto clients are `!Send`: call these from inside a tokio `LocalSet`.

use std::net::SocketAddr;

use anyhow::Context;
use capnp_rpc::rpc_twoparty_capnp;

use crate::rpc::limits::{ConnectionBudget, NodeBudget};
use crate::rpc::network::rpc_system;
use crate::schema::service_capnp::{gate, service};

/// A logged-in connection to a node.
pub struct Session {
    /// The node's app API.
    pub service: service::Client,
    disconnector: capnp_rpc::Disconnector<rpc_twoparty_capnp::Side>,
}

impl Session {
    /// Dials `addr` and logs in with `token`. The connection is served by a task on the
    /// current `LocalSet`.
    pub async fn connect(addr: SocketAddr, token: &str) -> anyhow::Result<Session> {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to syncbase node at {addr}"))?;
        stream.set_nodelay(true)?;
        // The node is trusted: its answers may be as large as any message.
        let budget = ConnectionBudget::authenticated(NodeBudget::default());
        let mut rpc_system = rpc_system(stream, rpc_twoparty_capnp::Side::Client, None, budget);
        let gate: gate::Client = rpc_system.bootstrap(rpc_twoparty_capnp::Side::Server);
        let disconnector = rpc_system.get_disconnector();
        tokio::task::spawn_local(rpc_system);
        let mut request = gate.login_request();
        request.get().set_token(token);
        let response = request.send().promise.await.map_err(remote_error)?;
        let service = response.get()?.get_service()?;
        Ok(Session {
            service,
            disconnector,
        })
    }

    /// Closes the connection.
    pub async fn close(self) -> anyhow::Result<()> {
        drop(self.service);
        self.disconnector.await.context("closing the connection")
    }
}

/// Turns a Cap'n Proto error into one line: the node's own message (`NoAccess: ...`) when the
/// node sent one.
pub fn remote_error(error: capnp::Error) -> anyhow::Error {
    let message = error_message(&error);
    match error.kind {
        capnp::ErrorKind::Disconnected => anyhow::anyhow!("connection to the node lost: {message}"),
        _ => anyhow::anyhow!("{message}"),
    }
}

/// The message a node sent, without capnp-rpc's `remote exception: ` wrapper, so it starts
/// with the node's stable error id.
pub fn error_message(error: &capnp::Error) -> &str {
    error
        .extra
        .strip_prefix("remote exception: ")
        .unwrap_or(&error.extra)
}
