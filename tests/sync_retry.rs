//! Retries between embedded nodes on an in-memory network (issue 10, item 5): a refused link
//! is redialled with backoff.

mod common;

use std::time::Duration;

use syncbase::embedded::{EmbeddedOptions, EmbeddedServer, EmbeddedStorage};
use syncbase::names::{DbName, RowKey, TableName};
use syncbase::rpc::transport::MemoryNetwork;
use syncbase::store::Mutation;
use syncbase::sync::peers::PeerStatus;

use common::nodes::{link, options};
use common::{DB, eventually, on_local};

/// Writes `rows` rows of `value_bytes` each on `node`, `batch` rows per commit.
async fn write_backlog(node: &EmbeddedServer, rows: usize, value_bytes: usize, batch: usize) {
    let db = DbName::parse(DB).unwrap();
    node.node().open_database(&db).await.unwrap();
    for start in (0..rows).step_by(batch) {
        let mutations = (start..(start + batch).min(rows))
            .map(|i| Mutation::Put {
                table: TableName::parse("t").unwrap(),
                key: RowKey::parse(&format!("row{i:06}")).unwrap(),
                value: vec![(i % 251) as u8; value_bytes],
            })
            .collect();
        node.node()
            .commit(db.clone(), mutations)
            .await
            .expect("commit");
    }
}

async fn start(
    network: &MemoryNetwork,
    name: &str,
    tune: impl Fn(&mut EmbeddedOptions),
) -> EmbeddedServer {
    let mut options = options(network, name, EmbeddedStorage::Memory);
    tune(&mut options);
    EmbeddedServer::start_with(options)
        .await
        .expect("node starts")
}

fn status_of(node: &EmbeddedServer, peer: &EmbeddedServer) -> PeerStatus {
    node.node()
        .peers()
        .status(peer.node().identity().fingerprint())
        .unwrap_or_default()
}

#[test]
fn a_peer_removed_on_one_side_is_redialled_with_backoff() {
    on_local(async {
        let network = MemoryNetwork::new();
        let slow_redial = |options: &mut EmbeddedOptions| {
            options.redial_max = Duration::from_secs(1);
        };
        let a = start(&network, "a", slow_redial).await;
        let b = start(&network, "b", slow_redial).await;
        link(&a, &b).await;
        write_backlog(&a, 1, 16, 1).await;
        eventually("b syncs from a", Duration::from_secs(20), || {
            status_of(&b, &a).records_received == 1
        })
        .await;
        b.node()
            .remove_peer(a.node().identity().fingerprint())
            .await
            .unwrap();
        eventually("a is refused by b", Duration::from_secs(20), || {
            status_of(&a, &b)
                .last_error
                .is_some_and(|error| error.contains("NoAccess:"))
        })
        .await;
        // Counting over a window: at a 1 s cap about 4 dials; redialling on every refusal
        // (the fault) made 15-30 a second.
        let before = network.dials("a", "b");
        tokio::time::sleep(Duration::from_secs(4)).await;
        let dials = network.dials("a", "b") - before;
        assert!(dials <= 8, "{dials} dials in 4 s to a peer that refuses");
    });
}
