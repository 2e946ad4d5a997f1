//! Dialling a node's app API and logging in, and typed calls some callers share (history
//! collection): used by the CLI, the embedded test server and the benchmarks. Cap'n Proto
//! clients are `!Send`: call these from inside a tokio `LocalSet`.

use std::net::SocketAddr;

use anyhow::Context;
use capnp_rpc::rpc_twoparty_capnp;

use crate::rpc::limits::{ConnectionBudget, NodeBudget};
use crate::rpc::network::rpc_system;
use crate::schema::service_capnp::{gate, service, store_usage};
use crate::store::Collected;
use syncbase_storage::Usage;

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

/// What `Service.collect` answered: what the pass freed, its steps (write transactions),
/// and the store's size figures before and after it, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Collection {
    pub freed: Collected,
    pub steps: u64,
    pub before: Usage,
    pub after: Usage,
}

/// Runs a history-collection pass over `db` on the node now (`Service.collect`). Errors:
/// the node's, as one line (`NoExist: ...` for a database it does not have).
pub async fn collect(service: &service::Client, db: &str) -> anyhow::Result<Collection> {
    let mut request = service.collect_request();
    request.get().set_database(db);
    let response = request.send().promise.await.map_err(remote_error)?;
    let response = response.get()?;
    let freed = response.get_freed()?;
    Ok(Collection {
        freed: Collected {
            records: freed.get_records(),
            versions: freed.get_versions(),
            tombstones: freed.get_tombstones(),
            changes: freed.get_changes(),
            bytes: freed.get_bytes(),
        },
        steps: response.get_steps(),
        before: read_usage(response.get_before()?),
        after: read_usage(response.get_after()?),
    })
}

/// Decodes a `StoreUsage` (a maximum of 0 is none).
pub fn read_usage(usage: store_usage::Reader<'_>) -> Usage {
    Usage {
        file_bytes: usage.get_file_bytes(),
        used_bytes: usage.get_used_bytes(),
        map_bytes: usage.get_map_bytes(),
        max_map_bytes: Some(usage.get_max_map_bytes()).filter(|max| *max > 0),
        reserve_bytes: usage.get_reserve_bytes(),
    }
}
