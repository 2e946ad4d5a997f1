//! Embedded nodes on a `MemoryNetwork`, linked to sync table "t" of the test database.

use std::time::Duration;

use syncbase::embedded::{EmbeddedOptions, EmbeddedServer, EmbeddedStorage};
use syncbase::genvec::Scope;
use syncbase::rpc::transport::{MemoryNetwork, Network};
use syncbase::sync::peers::PeerConfig;

use super::DB;

/// A node listening for peers as `name` on `network`, redialling lost links quickly.
pub fn options(network: &MemoryNetwork, name: &str, storage: EmbeddedStorage) -> EmbeddedOptions {
    EmbeddedOptions {
        network: Network::Memory(network.clone()),
        peer_listen: Some(name.to_owned()),
        redial_max: Duration::from_millis(100),
        ..EmbeddedOptions::new(storage)
    }
}

/// Starts an in-memory node named `name` on `network`.
pub async fn start(network: &MemoryNetwork, name: &str) -> EmbeddedServer {
    EmbeddedServer::start_with(options(network, name, EmbeddedStorage::Memory))
        .await
        .expect("node starts")
}

/// Makes `a` sync table `t` of the database with `b` (one direction of a link: `a` dials `b`
/// and accepts `b`).
pub async fn add_peer(a: &EmbeddedServer, b: &EmbeddedServer) {
    let fingerprint = b.node().identity().fingerprint().clone();
    let peer = PeerConfig::new(
        &b.peer_address(),
        fingerprint,
        DB,
        vec![Scope::new("t", "")],
    )
    .unwrap();
    a.node().add_peer(peer).await.expect("peer added");
}

/// Makes `a` and `b` peers of each other.
pub async fn link(a: &EmbeddedServer, b: &EmbeddedServer) {
    add_peer(a, b).await;
    add_peer(b, a).await;
}
