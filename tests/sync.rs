//! Sync between embedded nodes over real TLS links: on an in-memory network (whose links the
//! tests cut and restore) and over TCP. Two nodes, a line of three, restarts on LMDB, and a
//! randomised many-writer test with flapping links whose nodes must end identical.
//!
//! `SYNCBASE_SYNC_SEEDS=N` runs the randomised test with N seeds (default 50).

mod common;

use std::time::Duration;

use syncbase::embedded::{EmbeddedOptions, EmbeddedServer, EmbeddedStorage};
use syncbase::names::{DbName, RowKey, TableName};
use syncbase::rpc::transport::MemoryNetwork;
use syncbase::store::Mutation;

use common::nodes::{link, options, start};
use common::rows::{Rng, digest, read, write};
use common::{DB, eventually, on_local};

async fn sees(node: &EmbeddedServer, key: &str, value: Option<&str>) {
    let status: Vec<_> = node
        .node()
        .peers()
        .list()
        .into_iter()
        .map(|(_, status)| status)
        .collect();
    let what = format!("{key} = {value:?} on {} ({status:?})", node.peer_address());
    eventually(&what, Duration::from_secs(10), || {
        read(node, key).as_deref() == value
    })
    .await;
}

fn status_of(node: &EmbeddedServer, peer: &EmbeddedServer) -> syncbase::sync::peers::PeerStatus {
    let fingerprint = peer.node().identity().fingerprint();
    node.node()
        .peers()
        .status(fingerprint)
        .expect("peer listed")
}

#[test]
fn writes_and_deletes_on_either_side_reach_the_other() {
    on_local(async {
        let network = MemoryNetwork::new();
        let (a, b) = (start(&network, "a").await, start(&network, "b").await);
        write(&a, "early", Some("before the link")).await;
        link(&a, &b).await;
        sees(&b, "early", Some("before the link")).await;
        write(&b, "k", Some("from b")).await;
        sees(&a, "k", Some("from b")).await;
        write(&a, "k", None).await;
        sees(&b, "k", None).await;
        eventually("equal stores", Duration::from_secs(5), || {
            digest(&a) == digest(&b)
        })
        .await;
        assert!(status_of(&a, &b).connected && status_of(&b, &a).connected);
    });
}

#[test]
fn concurrent_writes_converge_on_the_same_winner_and_keep_the_loser() {
    on_local(async {
        let network = MemoryNetwork::new();
        let (a, b) = (start(&network, "a").await, start(&network, "b").await);
        write(&a, "k", Some("first")).await;
        write(&b, "k", Some("second, later")).await;
        link(&a, &b).await;
        sees(&a, "k", Some("second, later")).await;
        sees(&b, "k", Some("second, later")).await;
        eventually("equal stores", Duration::from_secs(5), || {
            digest(&a) == digest(&b)
        })
        .await;
        let db = DbName::parse(DB).unwrap();
        // A device's own generation counts the records it made.
        let made = |node: &EmbeddedServer| {
            let state = node.node().store().state(&db).unwrap();
            state.own_generation().get()
        };
        assert!(
            made(&a) + made(&b) >= 3,
            "each kept its own write and at least one logged the link that resolved them"
        );
    });
}

#[test]
fn a_later_delete_of_a_row_never_seen_wins_over_an_earlier_put_once_the_link_returns() {
    on_local(async {
        let network = MemoryNetwork::new();
        let (a, b) = (start(&network, "a").await, start(&network, "b").await);
        link(&a, &b).await;
        write(&a, "k1", Some("seen by both")).await;
        sees(&b, "k1", Some("seen by both")).await;
        network.set_link("a", "b", false);
        write(&a, "k2", Some("b never sees this")).await;
        write(&b, "k2", None).await;
        network.set_link("a", "b", true);
        sees(&a, "k2", None).await;
        eventually("equal stores", Duration::from_secs(10), || {
            digest(&a) == digest(&b)
        })
        .await;
        assert_eq!(read(&b, "k2"), None, "b's later delete won on both");
    });
}

#[test]
fn a_line_relays_without_sending_records_back() {
    on_local(async {
        let network = MemoryNetwork::new();
        let (a, b, c) = (
            start(&network, "a").await,
            start(&network, "b").await,
            start(&network, "c").await,
        );
        link(&a, &b).await;
        link(&b, &c).await;
        write(&a, "k", Some("from a")).await;
        sees(&c, "k", Some("from a")).await;
        write(&c, "j", Some("from c")).await;
        sees(&a, "j", Some("from c")).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            status_of(&b, &a).records_received,
            1,
            "b got a's record once"
        );
        assert_eq!(
            status_of(&b, &c).records_received,
            1,
            "b got c's record once"
        );
        assert_eq!(
            status_of(&b, &a).records_sent,
            1,
            "b sent a only c's record"
        );
        assert_eq!(
            status_of(&b, &c).records_sent,
            1,
            "b sent c only a's record"
        );
        assert_eq!(status_of(&a, &b).records_received, 1);
        assert_eq!(status_of(&c, &b).records_received, 1);
    });
}

#[test]
fn a_restarted_lmdb_node_keeps_its_data_knowledge_and_device_and_catches_up() {
    on_local(async {
        let network = MemoryNetwork::new();
        let dir = tempfile::tempdir().unwrap();
        let durable = EmbeddedOptions {
            data_dir: Some(dir.path().to_path_buf()),
            ..options(&network, "a", EmbeddedStorage::Lmdb)
        };
        let a = EmbeddedServer::start_with(durable.clone()).await.unwrap();
        let b = start(&network, "b").await;
        link(&a, &b).await;
        write(&b, "k1", Some("v1")).await;
        sees(&a, "k1", Some("v1")).await;
        let db = DbName::parse(DB).unwrap();
        let device = a.node().store().device();
        eventually("knowledge stored", Duration::from_secs(5), || {
            !a.node().store().knowledge(&db).unwrap().is_empty()
        })
        .await;
        let weak = std::sync::Arc::downgrade(a.node());
        drop(a);
        let released = || weak.strong_count() == 0;
        eventually(
            "the stopped node releases everything",
            Duration::from_secs(5),
            released,
        )
        .await;

        write(&b, "k2", Some("while a was down")).await;
        let a = EmbeddedServer::start_with(durable).await.unwrap();
        assert_eq!(
            a.node().store().device(),
            device,
            "device id survives the restart"
        );
        assert_eq!(
            read(&a, "k1").as_deref(),
            Some("v1"),
            "data survives the restart"
        );
        assert!(
            !a.node().store().knowledge(&db).unwrap().is_empty(),
            "knowledge survives the restart"
        );
        sees(&a, "k2", Some("while a was down")).await;
        let counted = || status_of(&a, &b).records_received >= 1;
        eventually(
            "the status counts the record",
            Duration::from_secs(5),
            counted,
        )
        .await;
        assert_eq!(
            status_of(&a, &b).records_received,
            1,
            "only the missed record is sent after the restart"
        );
    });
}

#[test]
fn peers_sync_over_tcp_too() {
    on_local(async {
        let tcp = |storage| EmbeddedOptions {
            peer_listen: Some("127.0.0.1:0".into()),
            ..EmbeddedOptions::new(storage)
        };
        let a = EmbeddedServer::start_with(tcp(EmbeddedStorage::Lmdb))
            .await
            .unwrap();
        let b = EmbeddedServer::start_with(tcp(EmbeddedStorage::Memory))
            .await
            .unwrap();
        link(&a, &b).await;
        write(&a, "k", Some("over tcp")).await;
        sees(&b, "k", Some("over tcp")).await;
    });
}

async fn random_run(seed: u64) {
    let mut rng = Rng::new(seed);
    let network = MemoryNetwork::new();
    let count = 3 + rng.below(3);
    let mut nodes = Vec::new();
    for i in 0..count {
        nodes.push(start(&network, &format!("n{i}")).await);
    }
    for i in 0..count {
        for j in i + 1..count {
            link(&nodes[i], &nodes[j]).await;
        }
    }
    for step in 0..40 {
        if rng.below(4) == 0 {
            let (i, j) = (rng.below(count), rng.below(count));
            network.set_link(&format!("n{i}"), &format!("n{j}"), rng.below(2) == 0);
        }
        let node = &nodes[rng.below(count)];
        let key = format!("key{}", rng.below(8));
        let value = (rng.below(4) != 0).then(|| format!("seed {seed} step {step}"));
        write(node, &key, value.as_deref()).await;
        if rng.below(3) == 0 {
            tokio::time::sleep(Duration::from_millis(rng.below(5) as u64)).await;
        }
    }
    for i in 0..count {
        for j in 0..count {
            network.set_link(&format!("n{i}"), &format!("n{j}"), true);
        }
    }
    let what = format!("seed {seed}: {count} nodes identical");
    let same = || {
        nodes
            .iter()
            .map(digest)
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            == 1
    };
    eventually(&what, Duration::from_secs(20), same).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(same(), "seed {seed}: nodes drifted apart after converging");
}

#[test]
fn random_writers_with_flapping_links_converge() {
    let seeds: u64 = std::env::var("SYNCBASE_SYNC_SEEDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(50);
    on_local(async {
        for seed in 0..seeds {
            random_run(seed).await;
        }
    });
}

/// Rows of table `t` whose keys start with `prefix`, read from one snapshot of `node`'s store.
fn snapshot(node: &syncbase::node::Node, prefix: &str) -> Vec<(String, Vec<u8>)> {
    let all = syncbase::paging::PageLimit {
        items: usize::MAX,
        bytes: usize::MAX,
    };
    let (db, table) = (DbName::parse(DB).unwrap(), TableName::parse("t").unwrap());
    let prefix = syncbase::names::KeyPrefix::parse(prefix).unwrap();
    match node.store().scan_page(&db, &table, &prefix, None, all) {
        Ok(rows) => rows.into_iter().map(|row| (row.key, row.value)).collect(),
        Err(_) => Vec::new(),
    }
}

/// A batch at the byte limit, committed on A after almost a page of other rows, is never seen
/// in part on B: a reader polling B's store (one snapshot per read) sees all of its rows or
/// none, round after round, and B's change feed holds each batch's changes together.
#[test]
fn a_batch_at_the_byte_limit_is_never_seen_half_applied_on_the_other_node() {
    const ROWS: usize = 5;
    const ROUNDS: u8 = 2;
    on_local(async {
        let net = MemoryNetwork::new();
        let (a, b) = (start(&net, "a").await, start(&net, "b").await);
        let db = DbName::parse(DB).unwrap();
        a.node().open_database(&db).await.unwrap();
        b.node().open_database(&db).await.unwrap();
        let each = syncbase::names::MAX_BATCH_BYTES / ROWS - 16;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (node, stop) = (b.node().clone(), stop.clone());
            std::thread::spawn(move || {
                let mut reads = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let rows = snapshot(&node, "batch");
                    let rounds: std::collections::BTreeSet<u8> =
                        rows.iter().map(|(_, value)| value[0]).collect();
                    assert!(
                        rows.is_empty() || (rows.len() == ROWS && rounds.len() == 1),
                        "read {reads} saw part of a batch: {} rows of rounds {rounds:?}",
                        rows.len()
                    );
                    reads += 1;
                    std::thread::sleep(Duration::from_millis(10));
                }
                reads
            })
        };
        link(&a, &b).await;
        for round in 1..=ROUNDS {
            let filler = (0..4).map(|i| Mutation::Put {
                table: TableName::parse("t").unwrap(),
                key: RowKey::parse(&format!("fill{round}-{i}")).unwrap(),
                value: vec![round; 480 << 10],
            });
            for mutation in filler {
                a.node().commit(db.clone(), vec![mutation]).await.unwrap();
            }
            let batch = (0..ROWS)
                .map(|i| Mutation::Put {
                    table: TableName::parse("t").unwrap(),
                    key: RowKey::parse(&format!("batch{i}")).unwrap(),
                    value: vec![round; each],
                })
                .collect();
            a.node().commit(db.clone(), batch).await.unwrap();
            eventually("B holds the round's batch", Duration::from_secs(60), || {
                let rows = snapshot(b.node(), "batch");
                rows.len() == ROWS && rows.iter().all(|(_, value)| value[0] == round)
            })
            .await;
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let reads = reader.join().expect("no read saw part of a batch");
        assert!(reads > 0);

        let all = syncbase::paging::PageLimit {
            items: usize::MAX,
            bytes: usize::MAX,
        };
        let prefix = syncbase::names::KeyPrefix::parse("").unwrap();
        let feed = b
            .node()
            .store()
            .read_changes(&db, 0, None, &prefix, all)
            .unwrap();
        let rows: Vec<&str> = feed
            .items
            .iter()
            .map(|item| item.change.row.as_str())
            .collect();
        let batches: Vec<_> = rows
            .windows(ROWS)
            .filter(|window| window.iter().all(|row| row.starts_with("batch")))
            .collect();
        assert_eq!(
            batches.len(),
            usize::from(ROUNDS),
            "each batch's changes are together in B's feed: {rows:?}"
        );
    });
}
