//! The Cap'n Proto face of a node: everything that knows Cap'n Proto, as adapters that
//! decode arguments, call the engine ([`crate::node`], [`crate::sync`]) and fill results.
//!
//! - `server`: the app and peer accept loops and the dialer; each connection's RPC system runs
//!   on a pinned LocalSet worker;
//! - `network`: the two-party vat network every connection runs on (in place of `twoparty`);
//! - `frame`: incremental frame reading, allocating as bytes arrive;
//! - `limits`: the node's and each connection's memory budgets and stream caps;
//! - `admission`: the connection caps of a port;
//! - `transport`: TCP or an in-memory network of pipes, under every peer link;
//! - `tls`: TLS 1.3 mutual authentication of peers by fingerprint;
//! - `gate`: the bootstrap `Gate` and its token check;
//! - `service`: `Service`, `Database` and `Table`;
//! - `admin`: the identity and peer calls of `Service`;
//! - `watch`: `Database.watch`;
//! - `app_syncgroups`: `Syncgroups`, the app's syncgroup calls;
//! - `peer`: `SyncImpl` (the `Sync` a peer holds, bound to its identity) and `SyncgroupAdmin`;
//! - `peer_link`: accepting peers, and the engine's `sync::link` traits over TLS and Cap'n Proto;
//! - `peer_sinks`: the capnp faces of the initiator's page sinks (decode, hand to the engine);
//! - `peer_state`: catch-up by state on the wire (`reconcileState`, `StateSession`), both sides;
//! - `clock`: each peer connection's clock offset, sampled with GetTime;
//! - `wire`: engine types <-> capnp, validating;
//! - `syncgroup_wire`: syncgroup types <-> capnp, validating;
//! - `push`: sending pages to a caller's sink capability with a bounded window and budget;
//! - `client`: dialling a node and logging in, and shared typed calls (CLI, tests, benchmarks).

pub mod admin;
pub mod admission;
pub mod app_syncgroups;
pub mod client;
pub mod clock;
pub mod frame;
pub mod gate;
pub mod limits;
pub mod network;
pub mod peer;
pub mod peer_link;
pub mod peer_sinks;
pub mod peer_state;
pub mod push;
pub mod server;
pub mod service;
pub mod syncgroup_wire;
pub mod tls;
pub mod transport;
pub mod watch;
pub mod wire;

/// Largest incoming message, in 8-byte words (64 MiB). Bigger messages drop the connection,
/// so every API keeps its messages well under it (values are at most 4 MiB, scans page).
pub const MAX_MESSAGE_WORDS: usize = crate::paging::MAX_MESSAGE_BYTES / 8;
/// Deepest struct nesting accepted in an incoming message.
pub const MAX_NESTING: i32 = 64;

/// The reader limits every connection, server or client, applies to incoming messages.
pub fn reader_options() -> capnp::message::ReaderOptions {
    let mut options = capnp::message::ReaderOptions::new();
    options
        .traversal_limit_in_words(Some(MAX_MESSAGE_WORDS))
        .nesting_limit(MAX_NESTING);
    options
}

/// Runs an RPC system until its peer hangs up or `cancel` fires. On cancel it disconnects
/// cleanly (for at most a second): dropping a live `RpcSystem` instead would leave
/// capnp-rpc's internal reference cycles, and so the capabilities it served, alive.
pub async fn run_until_cancelled(
    rpc_system: capnp_rpc::RpcSystem<capnp_rpc::rpc_twoparty_capnp::Side>,
    cancel: &tokio_util::sync::CancellationToken,
) -> capnp::Result<()> {
    let disconnector = rpc_system.get_disconnector();
    let mut rpc_system = Box::pin(rpc_system);
    tokio::select! {
        ended = &mut rpc_system => ended,
        () = cancel.cancelled() => {
            disconnect(disconnector, rpc_system).await;
            Ok(())
        }
    }
}

/// Shuts a connection down cleanly: drives it until our side's shutdown is written (the
/// disconnector resolves) or it ends, giving up after a second. It does not wait for the
/// other side to hang up.
pub async fn disconnect<F>(
    disconnector: capnp_rpc::Disconnector<capnp_rpc::rpc_twoparty_capnp::Side>,
    connection: F,
) where
    F: std::future::Future,
{
    tokio::select! {
        _ = disconnector => {}
        _ = connection => {}
        () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
    }
}
