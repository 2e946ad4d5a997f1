//! Catch-up by state end to end, over TLS and Cap'n Proto between two embedded nodes: a
//! responder that collected history refuses the initiator's GetDeltas (`BehindHorizon:`), the
//! initiator reconciles row heads with it (`reconcileState`), fetches what it lacks, and the
//! two converge, each keeping the other's writes and neither bringing back a collected delete.

mod common;

use std::time::Duration;

use syncbase::embedded::EmbeddedServer;
use syncbase::genvec::Scope;
use syncbase::names::DbName;
use syncbase::rpc::transport::MemoryNetwork;

use common::nodes::{link, start};
use common::rows::{digest, read, write};
use common::{DB, eventually, on_local};

/// Collects `rows` of table `t` at `node` by hand: their history gone, its floor raised to
/// its knowledge.
fn collect(node: &EmbeddedServer, rows: &[&str]) {
    let rows: Vec<(String, String)> = rows
        .iter()
        .map(|row| ("t".to_owned(), (*row).to_owned()))
        .collect();
    node.node()
        .store()
        .collect_rows_by_hand(&DbName::parse(DB).unwrap(), &[Scope::new("t", "")], &rows)
        .unwrap();
}

fn catch_ups(node: &EmbeddedServer, peer: &EmbeddedServer) -> u64 {
    let status = node
        .node()
        .peers()
        .status(peer.node().identity().fingerprint());
    status.map_or(0, |status| status.catch_ups)
}

#[test]
fn a_node_behind_a_responders_horizon_catches_up_by_state_and_converges() {
    on_local(async {
        let network = MemoryNetwork::new();
        let (a, b) = (start(&network, "a").await, start(&network, "b").await);
        write(&a, "mine", Some("written at a, never seen by b")).await;
        write(&a, "shared", Some("a's, earlier")).await;
        for key in ["k1", "k2", "gone"] {
            write(&b, key, Some("from b")).await;
        }
        write(&b, "shared", Some("b's, later")).await;
        write(&b, "gone", None).await;
        collect(&b, &["gone"]);
        link(&a, &b).await;
        let what = "a caught up by state and both hold the same rows";
        eventually(what, Duration::from_secs(15), || {
            read(&a, "k1").is_some() && digest(&a) == digest(&b)
        })
        .await;
        assert_eq!(catch_ups(&a, &b), 1, "a was behind b's horizon once");
        assert_eq!(catch_ups(&b, &a), 0, "b's knowledge covers a's floor");
        for node in [&a, &b] {
            assert_eq!(read(node, "k2").as_deref(), Some("from b"));
            assert_eq!(read(node, "gone"), None);
            assert_eq!(read(node, "shared").as_deref(), Some("b's, later"));
            assert_eq!(
                read(node, "mine").as_deref(),
                Some("written at a, never seen by b")
            );
        }
        // Live sync goes on after the catch-up.
        write(&b, "after", Some("live")).await;
        eventually(
            "a live write after the catch-up",
            Duration::from_secs(10),
            || read(&a, "after").as_deref() == Some("live"),
        )
        .await;
    });
}
