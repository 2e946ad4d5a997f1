//! Issue 12's horizon, end to end between embedded nodes of one syncgroup over TLS and Cap'n
//! Proto: a member stopped for longer than the horizon no longer holds back the others'
//! history collection; when it returns, the log cannot bring it up to date (`BehindHorizon:`),
//! so it catches up by state, and every node converges: the same rows everywhere, rows
//! deleted while it was away stay deleted, the writes it made offline are kept, and an
//! offline write to a row deleted meanwhile settles by last-writer-wins, as it would have
//! without collection (the deletes' tombstone heads stay, `store::collect`).

mod common;

use std::path::Path;
use std::time::Duration;

use syncbase::embedded::{EmbeddedServer, EmbeddedStorage};
use syncbase::identity::Fingerprint;
use syncbase::names::DbName;
use syncbase::rpc::transport::MemoryNetwork;
use syncbase::store::Collected;
use syncbase::syncgroup::access::Level;

use common::members::{create_syncgroup, join_by_invite, stop};
use common::nodes::options;
use common::rows::{digest, read, write};
use common::{DB, eventually, on_local};

/// Seconds a member may stay silent before it stops holding collection back.
const HORIZON_SECS: u64 = 3;

fn db() -> DbName {
    DbName::parse(DB).unwrap()
}

/// A node named `name` on `network`, with the short horizon, its LMDB store in `dir`.
async fn start(network: &MemoryNetwork, name: &str, dir: &Path) -> EmbeddedServer {
    let options = syncbase::embedded::EmbeddedOptions {
        data_dir: Some(dir.to_path_buf()),
        horizon_secs: HORIZON_SECS,
        ..options(network, name, EmbeddedStorage::Lmdb)
    };
    EmbeddedServer::start_with(options)
        .await
        .expect("node starts")
}

fn fingerprint(node: &EmbeddedServer) -> Fingerprint {
    node.node().identity().fingerprint().clone()
}

/// Whether `member` holds back `node`'s collection (`syncbase status`).
fn holds_back(node: &EmbeddedServer, member: &Fingerprint) -> bool {
    let status = node.node().collection_status(&db()).unwrap();
    status.held_back.iter().any(|held| &held.member == member)
}

fn catch_ups(node: &EmbeddedServer, peer: &Fingerprint) -> u64 {
    let status = node.node().peers().status(peer).unwrap_or_default();
    status.catch_ups
}

/// Runs collection passes on `nodes` until each has collected `versions` superseded versions
/// (each once the others reported having seen what superseded them), failing after 15 s.
async fn collect_until_history_goes(nodes: &[&EmbeddedServer], versions: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut collected = vec![Collected::default(); nodes.len()];
    loop {
        for (node, done) in nodes.iter().zip(collected.iter_mut()) {
            done.add(&node.node().collect(&db()).await.unwrap().collected);
        }
        if collected.iter().all(|done| done.versions >= versions) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the deletes' history was never collected: {collected:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn a_member_offline_past_the_horizon_returns_by_state_and_its_offline_writes_settle_by_last_writer_wins()
 {
    on_local(async {
        let network = MemoryNetwork::new();
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let a = start(&network, "a:1", dirs[0].path()).await;
        let b = start(&network, "b:1", dirs[1].path()).await;
        let c = start(&network, "c:1", dirs[2].path()).await;
        write(&a, "seed", Some("opens the database")).await;
        let name = create_syncgroup(&a, "sg", "t").await;
        join_by_invite(&a, &b, &name, Level::ReadWrite).await;
        join_by_invite(&a, &c, &name, Level::ReadWrite).await;
        for key in ["kept", "overwritten", "gone", "contested", "revived"] {
            write(&a, key, Some("first, seen by c")).await;
        }
        write(&b, "gone-b", Some("b's, seen by c")).await;
        eventually("c holds every row", Duration::from_secs(15), || {
            read(&c, "contested").is_some() && read(&c, "gone-b").is_some()
        })
        .await;
        let away = fingerprint(&c);
        stop(c).await;
        write(&a, "overwritten", Some("second, while c was away")).await;
        assert!(
            holds_back(&a, &away),
            "c holds a's collection back within the horizon"
        );

        write(&a, "revived", None).await;

        // Offline writes: c runs alone (its peers' addresses lead nowhere on this network),
        // after a deleted "revived" and before it deletes "contested".
        let offline = start(&MemoryNetwork::new(), "c:1", dirs[2].path()).await;
        write(&offline, "c-offline", Some("written while away")).await;
        write(&offline, "contested", Some("c's offline overwrite")).await;
        write(
            &offline,
            "revived",
            Some("c's offline write, after the delete"),
        )
        .await;
        stop(offline).await;

        write(&a, "gone", None).await;
        write(&a, "contested", None).await;
        write(&b, "gone-b", None).await;
        write(&b, "b-new", Some("while c was away")).await;
        eventually("a and b converge", Duration::from_secs(15), || {
            read(&a, "b-new").is_some() && read(&b, "gone").is_none() && digest(&a) == digest(&b)
        })
        .await;

        tokio::time::sleep(Duration::from_secs(HORIZON_SECS + 1)).await;
        assert!(
            !holds_back(&a, &away) && !holds_back(&b, &away),
            "c is past the horizon"
        );
        collect_until_history_goes(&[&a, &b], 4).await;
        for node in [&a, &b] {
            assert!(!node.node().store().floor(&db()).unwrap().is_empty());
        }

        let c = start(&network, "c:1", dirs[2].path()).await;
        eventually("c converges with a and b", Duration::from_secs(30), || {
            digest(&c) == digest(&a) && digest(&a) == digest(&b)
        })
        .await;
        let (from_a, from_b) = (
            catch_ups(&c, &fingerprint(&a)),
            catch_ups(&c, &fingerprint(&b)),
        );
        assert!(
            from_a + from_b >= 1,
            "c was refused by log (BehindHorizon) and caught up by state: {from_a} + {from_b}"
        );
        // Whatever the links still exchange brings nothing back.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(digest(&c) == digest(&a) && digest(&a) == digest(&b));
        for node in [&a, &b, &c] {
            for gone in ["gone", "gone-b"] {
                assert_eq!(read(node, gone), None, "{gone} stays deleted");
            }
            assert_eq!(read(node, "kept").as_deref(), Some("first, seen by c"));
            assert_eq!(
                read(node, "overwritten").as_deref(),
                Some("second, while c was away")
            );
            assert_eq!(read(node, "b-new").as_deref(), Some("while c was away"));
            assert_eq!(
                read(node, "c-offline").as_deref(),
                Some("written while away")
            );
            assert_eq!(
                read(node, "contested"),
                None,
                "c's offline write before a's delete of its row settles under the delete"
            );
            assert_eq!(
                read(node, "revived").as_deref(),
                Some("c's offline write, after the delete"),
                "c's offline write after a's delete of its row wins over it"
            );
        }
    });
}
