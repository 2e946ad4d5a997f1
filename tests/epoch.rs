//! A (device id, generation) pair names one record, forever (issue 10.2): a node whose store
//! is restored from a copy (its LMDB directory alone, caught at open by the run marker; or its
//! whole data directory, caught by what its peer holds) moves to a fresh device id, says so
//! in `identity`'s epochs and the log, and no write is lost on either node; it announces the
//! epoch to its peers, so a third node that took a record under a reused pair fetches the
//! original too.

mod common;

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use syncbase::embedded::{EmbeddedOptions, EmbeddedServer, EmbeddedStorage};
use syncbase::names::{DbName, TableName};
use syncbase::rpc::transport::MemoryNetwork;
use syncbase::syncgroup::access::Level;

use common::members::{copy_dir, create_syncgroup, join_by_invite, stop};
use common::nodes::{link, options, start};
use common::rows::{Rng, read, write};
use common::{DB, eventually, on_local};

const WAIT: Duration = Duration::from_secs(30);

async fn sees(node: &EmbeddedServer, key: &str, value: &str) {
    let what = format!("{key} = {value} on {}", node.peer_address());
    eventually(&what, WAIT, || read(node, key).as_deref() == Some(value)).await;
}

/// Both nodes hold every write: k1 (before the backup), k2 (lost by the restore), k3 (after).
async fn both_hold_every_write(a: &EmbeddedServer, b: &EmbeddedServer) {
    for node in [a, b] {
        sees(node, "k1", "v1").await;
        sees(node, "k2", "v2").await;
        sees(node, "k3", "v3").await;
    }
}

/// Puts a copy back in place of `dir`.
fn restore(copy: &Path, dir: &Path) {
    std::fs::remove_dir_all(dir).unwrap();
    copy_dir(copy, dir);
}

/// The node's epochs, as the app API's `identity` reports them.
async fn epochs(node: &EmbeddedServer) -> Vec<String> {
    let response = node
        .service()
        .identity_request()
        .send()
        .promise
        .await
        .unwrap();
    let epochs = response.get().unwrap().get_epochs().unwrap();
    epochs
        .iter()
        .map(|line| line.unwrap().to_string().unwrap())
        .collect()
}

/// Everything every node of this test binary logs.
fn log() -> &'static Mutex<Vec<u8>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || Shared(sink.clone()))
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        log
    })
}

struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Whether the log has a line naming an epoch to `device`.
fn logged_epoch_to(device: u64) -> bool {
    let text = String::from_utf8_lossy(&log().lock().unwrap()).into_owned();
    let device = format!("{device:016x}");
    text.lines().any(|line| {
        line.contains("epoch: this node moved to a new device id") && line.contains(&device)
    })
}

/// A durable node `b` linked with an in-memory `a`, which holds b's k1; and b's options.
async fn pair(
    network: &MemoryNetwork,
    dir: &Path,
) -> (EmbeddedServer, EmbeddedServer, EmbeddedOptions) {
    log();
    let durable = EmbeddedOptions {
        data_dir: Some(dir.to_path_buf()),
        ..options(network, "b", EmbeddedStorage::Lmdb)
    };
    let a = start(network, "a").await;
    let b = EmbeddedServer::start_with(durable.clone()).await.unwrap();
    link(&a, &b).await;
    write(&b, "k1", Some("v1")).await;
    sees(&a, "k1", "v1").await;
    (a, b, durable)
}

/// B (stopped) is copied (`what` of its data dir); restarted, B writes k2, which reaches A;
/// B is stopped and the copy put back.
async fn back_up_write_and_restore(
    a: &EmbeddedServer,
    b: EmbeddedServer,
    durable: &EmbeddedOptions,
    what: &str,
) {
    let dir = durable.data_dir.clone().unwrap();
    stop(b).await;
    let backup = tempfile::tempdir().unwrap();
    copy_dir(&dir.join(what), backup.path());
    let b = EmbeddedServer::start_with(durable.clone()).await.unwrap();
    write(&b, "k2", Some("v2")).await;
    sees(a, "k2", "v2").await;
    stop(b).await;
    restore(backup.path(), &dir.join(what));
}

#[test]
fn a_restored_lmdb_directory_is_caught_at_open_and_no_write_is_lost() {
    on_local(async {
        let network = MemoryNetwork::new();
        let dir = tempfile::tempdir().unwrap();
        let (a, b, durable) = pair(&network, dir.path()).await;
        let old = b.node().store().device();
        back_up_write_and_restore(&a, b, &durable, "lmdb").await;

        let b = EmbeddedServer::start_with(durable).await.unwrap();
        let new = b.node().store().device();
        assert_ne!(
            new, old,
            "the restored store moved to a new device id at open"
        );
        let lines = epochs(&b).await;
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].contains("restored from a backup")
                && lines[0].contains(&format!("{:016x}", old.0)),
            "{lines:?}"
        );
        assert!(logged_epoch_to(new.0), "the log names the epoch");
        write(&b, "k3", Some("v3")).await;
        both_hold_every_write(&a, &b).await;
    });
}

#[test]
fn a_restored_data_dir_that_syncs_before_writing_moves_to_a_new_device_and_loses_nothing() {
    on_local(async {
        let network = MemoryNetwork::new();
        let dir = tempfile::tempdir().unwrap();
        let (a, b, durable) = pair(&network, dir.path()).await;
        let old = b.node().store().device();
        back_up_write_and_restore(&a, b, &durable, "").await;

        let b = EmbeddedServer::start_with(durable).await.unwrap();
        eventually("b learns from a that its store was restored", WAIT, || {
            b.node().store().device() != old
        })
        .await;
        sees(&b, "k2", "v2").await;
        write(&b, "k3", Some("v3")).await;
        both_hold_every_write(&a, &b).await;
        let lines = epochs(&b).await;
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains("holds generation 2"), "{lines:?}");
        assert!(logged_epoch_to(b.node().store().device().0));
    });
}

#[test]
fn a_restored_data_dir_that_writes_before_syncing_moves_to_a_new_device_and_loses_nothing() {
    on_local(async {
        let network = MemoryNetwork::new();
        let dir = tempfile::tempdir().unwrap();
        let (a, b, durable) = pair(&network, dir.path()).await;
        let old = b.node().store().device();
        back_up_write_and_restore(&a, b, &durable, "").await;

        network.set_link("a", "b", false);
        let b = EmbeddedServer::start_with(durable).await.unwrap();
        assert_eq!(b.node().store().device(), old, "nothing to see at open");
        write(&b, "k3", Some("v3")).await;
        network.set_link("a", "b", true);
        eventually(
            "b learns from a that (device, 2) names k2 there",
            WAIT,
            || b.node().store().device() != old,
        )
        .await;
        both_hold_every_write(&a, &b).await;
        let lines = epochs(&b).await;
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains("another record"), "{lines:?}");
        // k1 and k3: the backup was taken in the database's first run, so every own record
        // since its creation may name another record elsewhere (ARCHITECTURE.md, "Epochs").
        assert!(lines[0].contains("2 own records logged again"), "{lines:?}");
    });
}

#[test]
fn a_copy_running_beside_its_original_moves_to_a_new_device_while_the_links_stay_up() {
    on_local(async {
        let network = MemoryNetwork::new();
        let dir = tempfile::tempdir().unwrap();
        let (a, b, durable) = pair(&network, dir.path()).await;
        stop(b).await;
        let twin_dir = tempfile::tempdir().unwrap();
        copy_dir(dir.path(), twin_dir.path());
        let b = EmbeddedServer::start_with(durable.clone()).await.unwrap();
        let twin = EmbeddedServer::start_with(EmbeddedOptions {
            data_dir: Some(twin_dir.path().to_path_buf()),
            ..options(&network, "b2", EmbeddedStorage::Lmdb)
        })
        .await
        .unwrap();
        assert_eq!(b.node().store().device(), twin.node().store().device());
        // Both write under the same device and generation; a has b's write only.
        write(&b, "kb", Some("from b")).await;
        write(&twin, "kb2", Some("from the copy")).await;
        sees(&a, "kb", "from b").await;
        // The copy learns it from a's marks on its live link, not at a later reconnect.
        eventually("the copy moves to an epoch", WAIT, || {
            twin.node().store().epochs().unwrap().len() == 1
        })
        .await;
        assert_ne!(twin.node().store().device(), b.node().store().device());
        let (twin_epochs, b_epochs) = (epochs(&twin).await, epochs(&b).await);
        assert_eq!(
            (twin_epochs.len(), b_epochs.len()),
            (1, 0),
            "the copy lists its epoch, the original none: {twin_epochs:?} {b_epochs:?}"
        );
        sees(&twin, "kb", "from b").await;
        assert_eq!(read(&twin, "kb2").as_deref(), Some("from the copy"));
    });
}

#[test]
fn a_clean_restart_keeps_the_device_id() {
    on_local(async {
        let network = MemoryNetwork::new();
        let dir = tempfile::tempdir().unwrap();
        let (a, b, durable) = pair(&network, dir.path()).await;
        let device = b.node().store().device();
        stop(b).await;
        let b = EmbeddedServer::start_with(durable).await.unwrap();
        assert_eq!(b.node().store().device(), device);
        assert!(epochs(&b).await.is_empty());
        write(&b, "k2", Some("v2")).await;
        sees(&a, "k2", "v2").await;
    });
}

#[test]
fn a_restored_syncgroup_member_writes_as_itself_under_its_new_device() {
    on_local(async {
        log();
        let network = MemoryNetwork::new();
        let dir = tempfile::tempdir().unwrap();
        let durable = EmbeddedOptions {
            data_dir: Some(dir.path().to_path_buf()),
            ..options(&network, "m:1", EmbeddedStorage::Lmdb)
        };
        let host = start(&network, "h:1").await;
        let member = EmbeddedServer::start_with(durable.clone()).await.unwrap();
        let name = create_syncgroup(&host, "sg", "t").await;
        join_by_invite(&host, &member, &name, Level::ReadWrite).await;
        write(&member, "k1", Some("v1")).await;
        sees(&host, "k1", "v1").await;
        let old = member.node().store().device();
        back_up_write_and_restore(&host, member, &durable, "lmdb").await;

        let member = EmbeddedServer::start_with(durable).await.unwrap();
        let new = member.node().store().device();
        assert_ne!(new, old);
        assert!(new.same_lineage(old), "an epoch keeps the member's lineage");
        write(&member, "k3", Some("v3")).await;
        both_hold_every_write(&host, &member).await;
        let refused = |node: &EmbeddedServer| {
            node.node()
                .peers()
                .list()
                .iter()
                .map(|(_, status)| status.records_refused)
                .sum::<u64>()
        };
        assert_eq!(
            refused(&host),
            0,
            "the host refused none of the member's records"
        );
    });
}

/// Three nodes named `names` (A, B, C), connected by the caller (declared peers or
/// syncgroup members); B is durable with `durable`. B writes k1, which all see; B is backed
/// up; B writes k2, which reaches A only; B is restored and, cut off from A, writes k3, which
/// reaches C under the reused pair (B's generation 2). Once every link is back, every node
/// must hold k1, k2 and k3.
async fn third_node_takes_the_reused_pair(
    network: &MemoryNetwork,
    [a_name, b_name, c_name]: [&str; 3],
    (a, b, c): (EmbeddedServer, EmbeddedServer, EmbeddedServer),
    durable: &EmbeddedOptions,
) {
    let dir = durable.data_dir.clone().unwrap();
    write(&b, "k1", Some("v1")).await;
    sees(&a, "k1", "v1").await;
    sees(&c, "k1", "v1").await;
    let old = b.node().store().device();

    stop(b).await;
    let backup = tempfile::tempdir().unwrap();
    copy_dir(&dir, backup.path());
    network.set_link(b_name, c_name, false);
    network.set_link(a_name, c_name, false);
    let b = EmbeddedServer::start_with(durable.clone()).await.unwrap();
    write(&b, "k2", Some("v2")).await;
    sees(&a, "k2", "v2").await;
    stop(b).await;
    restore(backup.path(), &dir);

    network.set_link(a_name, b_name, false);
    network.set_link(b_name, c_name, true);
    let b = EmbeddedServer::start_with(durable.clone()).await.unwrap();
    assert_eq!(b.node().store().device(), old, "nothing to see at open");
    write(&b, "k3", Some("v3")).await;
    sees(&c, "k3", "v3").await;

    network.set_link(a_name, b_name, true);
    network.set_link(a_name, c_name, true);
    eventually(
        "b learns from a that (device, 2) names k2 there",
        WAIT,
        || b.node().store().device() != old,
    )
    .await;
    for node in [&a, &b, &c] {
        sees(node, "k1", "v1").await;
        sees(node, "k3", "v3").await;
        sees(node, "k2", "v2").await;
    }
}

/// In-memory nodes `a` and `c` and a durable `b` in `dir` (named by `names`), not linked yet;
/// and b's options, to restart it.
async fn three_nodes(
    network: &MemoryNetwork,
    [a, b, c]: [&str; 3],
    dir: &Path,
) -> (
    EmbeddedServer,
    EmbeddedServer,
    EmbeddedServer,
    EmbeddedOptions,
) {
    log();
    let durable = EmbeddedOptions {
        data_dir: Some(dir.to_path_buf()),
        ..options(network, b, EmbeddedStorage::Lmdb)
    };
    let a = start(network, a).await;
    let c = start(network, c).await;
    let b = EmbeddedServer::start_with(durable.clone()).await.unwrap();
    (a, b, c, durable)
}

/// A third node that took a restored node's post-restore write under the reused pair (k3
/// under B's generation 2) before B's epoch, and never saw the original (k2), fetches k2 once
/// B announces its epoch: B's notice (old device, safe point) lowers C's knowledge of B's old
/// device, so C asks for its generations above the safe point again. (Declared peers.)
#[test]
fn a_third_node_that_took_the_reused_pair_fetches_the_original_once_the_epoch_is_announced() {
    on_local(async {
        let network = MemoryNetwork::new();
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c, durable) = three_nodes(&network, ["a", "b", "c"], dir.path()).await;
        link(&a, &b).await;
        link(&a, &c).await;
        link(&b, &c).await;
        third_node_takes_the_reused_pair(&network, ["a", "b", "c"], (a, b, c), &durable).await;
    });
}

/// The same among members of a syncgroup (no declared peers): C takes B's notice because the
/// syncgroup binds B's lineage to B's identity.
#[test]
fn a_syncgroup_member_that_took_the_reused_pair_fetches_the_original_once_the_epoch_is_announced() {
    on_local(async {
        let network = MemoryNetwork::new();
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c, durable) = three_nodes(&network, ["a:1", "b:1", "c:1"], dir.path()).await;
        let name = create_syncgroup(&a, "sg", "t").await;
        join_by_invite(&a, &b, &name, Level::ReadWrite).await;
        join_by_invite(&a, &c, &name, Level::ReadWrite).await;
        third_node_takes_the_reused_pair(&network, ["a:1", "b:1", "c:1"], (a, b, c), &durable)
            .await;
    });
}

/// Every row of table `t` on `node`.
fn rows(node: &EmbeddedServer) -> std::collections::BTreeMap<String, String> {
    let (db, table) = (DbName::parse(DB).unwrap(), TableName::parse("t").unwrap());
    let all = syncbase::store::PageLimit {
        items: usize::MAX,
        bytes: usize::MAX,
    };
    let prefix = syncbase::names::KeyPrefix::parse("").unwrap();
    let store = node.node().store();
    if !store.has_database(&db).unwrap() {
        return Default::default();
    }
    let page = store.scan_page(&db, &table, &prefix, None, all).unwrap();
    page.into_iter()
        .map(|row| (row.key, String::from_utf8(row.value).unwrap()))
        .collect()
}

/// Waits until every node holds every acknowledged write.
async fn converge(
    nodes: &[EmbeddedServer],
    a: &EmbeddedServer,
    expected: &std::collections::BTreeMap<String, String>,
) {
    for node in nodes.iter().chain([a]) {
        for (key, value) in expected {
            sees(node, key, value).await;
        }
    }
}

/// One durable node of the randomised run: its options, and the copies taken of it.
struct Durable {
    name: &'static str,
    options: EmbeddedOptions,
    backups: Vec<tempfile::TempDir>,
}

/// Three nodes (`a` in memory, `b` and `c` on LMDB) write, back up and restore from older
/// copies (the whole data dir or `lmdb/` alone, writing or not while cut off) at random; in
/// the end every node holds exactly every acknowledged write. Before each restore every
/// write has reached every node (a write only the restored node held is lost by the restore
/// itself); after it, the restored node may be restarted or restored again before it syncs.
/// (A third node that lacks the record a restored node's reused pair names is
/// `a_third_node_that_took_the_reused_pair_fetches_the_original_once_the_epoch_is_announced`.)
async fn random_restores(seed: u64) -> usize {
    let network = MemoryNetwork::new();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut durable: Vec<Durable> = ["b", "c"]
        .into_iter()
        .zip(&dirs)
        .map(|(name, dir)| Durable {
            name,
            options: EmbeddedOptions {
                data_dir: Some(dir.path().to_path_buf()),
                ..options(&network, name, EmbeddedStorage::Lmdb)
            },
            backups: Vec::new(),
        })
        .collect();
    let a = start(&network, "a").await;
    let mut nodes = Vec::new();
    for node in &durable {
        nodes.push(
            EmbeddedServer::start_with(node.options.clone())
                .await
                .unwrap(),
        );
    }
    link(&a, &nodes[0]).await;
    link(&a, &nodes[1]).await;
    link(&nodes[0], &nodes[1]).await;
    let mut rng = Rng::new(seed);
    let mut expected = std::collections::BTreeMap::new();
    for step in 0..14 {
        let i = rng.below(2);
        match rng.below(5) {
            0 => {
                let node = &nodes[i];
                let (key, value) = (format!("s{seed}-{step}"), format!("b{step}"));
                write(node, &key, Some(&value)).await;
                expected.insert(key, value);
            }
            1 | 2 => {
                let (key, value) = (format!("s{seed}-{step}"), format!("a{step}"));
                let node = if rng.below(2) == 0 { &a } else { &nodes[i] };
                write(node, &key, Some(&value)).await;
                expected.insert(key, value);
            }
            3 => {
                let node = nodes.remove(i);
                stop(node).await;
                let backup = tempfile::tempdir().unwrap();
                copy_dir(durable[i].options.data_dir.as_ref().unwrap(), backup.path());
                durable[i].backups.push(backup);
                let restarted = EmbeddedServer::start_with(durable[i].options.clone()).await;
                nodes.insert(i, restarted.unwrap());
            }
            _ if durable[i].backups.is_empty() => {}
            _ => {
                converge(&nodes, &a, &expected).await;
                let other = durable[1 - i].name;
                let name = durable[i].name;
                network.set_link(name, "a", false);
                network.set_link(name, other, false);
                let node = nodes.remove(i);
                stop(node).await;
                let which = rng.below(durable[i].backups.len());
                let dir = durable[i].options.data_dir.clone().unwrap();
                let copy = durable[i].backups[which].path().to_path_buf();
                if rng.below(2) == 0 {
                    restore(&copy, &dir);
                } else {
                    restore(&copy.join("lmdb"), &dir.join("lmdb"));
                }
                let restored = EmbeddedServer::start_with(durable[i].options.clone()).await;
                nodes.insert(i, restored.unwrap());
                for extra in 0..rng.below(3) {
                    let (key, value) = (format!("s{seed}-{step}-{extra}"), format!("r{step}"));
                    write(&nodes[i], &key, Some(&value)).await;
                    expected.insert(key, value);
                }
                network.set_link(name, "a", true);
                network.set_link(name, other, true);
            }
        }
    }
    for node in nodes.iter().chain([&a]) {
        let deadline = std::time::Instant::now() + WAIT;
        while rows(node) != expected && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let held = rows(node);
        let missing: Vec<_> = expected
            .iter()
            .filter(|(k, v)| held.get(*k) != Some(v))
            .collect();
        let extra: Vec<_> = held.keys().filter(|k| !expected.contains_key(*k)).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "seed {seed}: {} lacks {missing:?}, holds unacknowledged {extra:?}; epochs {:?}",
            node.peer_address(),
            node.node().store().epochs().unwrap()
        );
    }
    nodes
        .iter()
        .map(|node| node.node().store().epochs().unwrap().len())
        .sum()
}

#[test]
fn stores_restored_from_older_copies_at_random_lose_no_acknowledged_write() {
    log();
    let seeds: u64 = std::env::var("SYNCBASE_EPOCH_SEEDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3);
    on_local(async {
        let mut epochs = 0;
        for seed in 0..seeds {
            epochs += random_restores(seed).await;
        }
        eprintln!("{seeds} seeds, {epochs} epochs");
    });
}
