//! Members' knowledge reports over live links, between embedded nodes over TLS and Cap'n
//! Proto: a member that only reads still tells a writer, within a few seconds and over the
//! live calls already open, that it holds the writer's records, so the writer's history is
//! collected without waiting for the horizon (issue 12; `sync::reports`).

mod common;

use std::time::Duration;

use syncbase::embedded::EmbeddedServer;
use syncbase::genvec::{Generation, Scope};
use syncbase::names::DbName;
use syncbase::sync::reports::REPORT_INTERVAL;

use common::nodes::{link, start};
use common::rows::{read, write};
use common::{DB, eventually, on_local};

fn db() -> DbName {
    DbName::parse(DB).unwrap()
}

/// The generation of `node`'s own device its collection cut of table `t` reaches.
async fn cut_of_own_writes(node: &EmbeddedServer) -> Generation {
    let cut = node.node().collection_cut(&db()).await.unwrap();
    let device = node.node().store().device();
    cut.shared
        .get(&Scope::new("t", ""))
        .map_or(Generation::NONE, |vector| vector.get(device))
}

fn own_generation(node: &EmbeddedServer) -> Generation {
    node.node().store().state(&db()).unwrap().own_generation()
}

/// No link between `a` and `b` failed or was dialled again (each failure sets `last_error`).
fn links_never_failed(a: &EmbeddedServer, b: &EmbeddedServer) {
    for (node, peer) in [(a, b), (b, a)] {
        let status = node
            .node()
            .peers()
            .status(peer.node().identity().fingerprint())
            .unwrap_or_default();
        assert!(status.connected, "the link is up");
        assert_eq!(
            status.last_error, None,
            "the live calls were never re-issued"
        );
    }
}

#[test]
fn a_writers_history_is_collected_once_a_reading_member_reports_over_its_live_call() {
    on_local(async {
        let network = syncbase::rpc::transport::MemoryNetwork::new();
        let (writer, reader) = (
            start(&network, "writer").await,
            start(&network, "reader").await,
        );
        write(&writer, "first", Some("before the live calls settle")).await;
        link(&writer, &reader).await;
        eventually(
            "the reader has the first row",
            Duration::from_secs(10),
            || read(&reader, "first").is_some(),
        )
        .await;
        // Both live calls are open and caught up: every report from now on comes over them.
        tokio::time::sleep(Duration::from_millis(500)).await;
        for round in 0..5 {
            for key in ["a", "b", "c"] {
                write(&writer, key, Some(&format!("round {round}"))).await;
            }
        }
        eventually(
            "the reader has the last round",
            Duration::from_secs(10),
            || {
                ["a", "b", "c"]
                    .iter()
                    .all(|key| read(&reader, key).as_deref() == Some("round 4"))
            },
        )
        .await;
        let mine = own_generation(&writer);
        // The reader's paced report follows its last change within REPORT_INTERVAL.
        let started = tokio::time::Instant::now();
        let deadline = started + REPORT_INTERVAL + Duration::from_secs(3);
        while cut_of_own_writes(&writer).await < mine {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the writer's cut never reached its own writes (generation {mine:?}): the \
                 reader's report did not arrive"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let pass = writer.node().collect(&db()).await.unwrap();
        assert!(
            pass.collected.records > 0 && pass.collected.versions > 0,
            "the overwritten versions' history goes: {:?}",
            pass.collected
        );
        links_never_failed(&writer, &reader);
        for key in ["a", "b", "c"] {
            assert_eq!(read(&writer, key).as_deref(), Some("round 4"));
        }
    });
}
