//! A (device id, generation) pair names one record, forever (issue 10.2): a node whose store
//! is restored from a copy (its LMDB directory alone, caught at open by the run marker; or its
//! whole data directory, caught by what its peer holds) moves to a fresh device id, says so
//! in `identity`'s epochs and the log, and no write is lost on either node.

mod common;

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use syncbase::embedded::{EmbeddedOptions, EmbeddedServer, EmbeddedStorage};
use syncbase::names::{DbName, RowKey, TableName};
use syncbase::rpc::transport::MemoryNetwork;
use syncbase::store::Mutation;
use syncbase::sync::genvec::Scope;
use syncbase::syncgroup::access::Level;
use syncbase::syncgroup::{Permissions, Spec, SyncgroupName};

use common::nodes::{link, options, start};
use common::{DB, eventually, on_local};

const WAIT: Duration = Duration::from_secs(30);

async fn write(node: &EmbeddedServer, key: &str, value: &str) {
    let (table, key) = (TableName::parse("t").unwrap(), RowKey::parse(key).unwrap());
    let mutation = Mutation::Put {
        table,
        key,
        value: value.as_bytes().to_vec(),
    };
    let db = DbName::parse(DB).unwrap();
    node.node().open_database(&db).await.unwrap();
    node.node()
        .commit(db, vec![mutation])
        .await
        .expect("commit");
}

fn read(node: &EmbeddedServer, key: &str) -> Option<String> {
    let (db, table) = (DbName::parse(DB).unwrap(), TableName::parse("t").unwrap());
    let value = node
        .node()
        .store()
        .get(&db, &table, &RowKey::parse(key).unwrap())
        .unwrap();
    value.map(|bytes| String::from_utf8(bytes).unwrap())
}

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

/// Stops a node and waits until it has released its store.
async fn stop(node: EmbeddedServer) {
    let weak = Arc::downgrade(node.node());
    drop(node);
    eventually("the stopped node releases its store", WAIT, || {
        weak.strong_count() == 0
    })
    .await;
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
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
    write(&b, "k1", "v1").await;
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
    write(&b, "k2", "v2").await;
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
        write(&b, "k3", "v3").await;
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
        write(&b, "k3", "v3").await;
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
        write(&b, "k3", "v3").await;
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
        assert!(lines[0].contains("1 own records logged again"), "{lines:?}");
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
        write(&b, "k2", "v2").await;
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
        let name = SyncgroupName::parse(&format!("{}/sg", host.peer_address())).unwrap();
        let spec = Spec {
            description: "test".into(),
            perms: Permissions::default(),
            prefixes: vec![Scope::new("t", "")],
            mount_tables: vec![],
            is_private: false,
        };
        let db = DbName::parse(DB).unwrap();
        host.node()
            .create_syncgroup(db, name.clone(), spec)
            .await
            .unwrap();
        let token = host
            .node()
            .mint_invite(name, Level::ReadWrite, None, 1)
            .await
            .unwrap();
        let syncgroups = member
            .service()
            .syncgroups_request()
            .send()
            .pipeline
            .get_syncgroups();
        let mut join = syncgroups.join_request();
        join.get().set_invite(token.to_string().as_str());
        join.send().promise.await.unwrap();
        write(&member, "k1", "v1").await;
        sees(&host, "k1", "v1").await;
        let old = member.node().store().device();
        back_up_write_and_restore(&host, member, &durable, "lmdb").await;

        let member = EmbeddedServer::start_with(durable).await.unwrap();
        let new = member.node().store().device();
        assert_ne!(new, old);
        assert!(new.same_lineage(old), "an epoch keeps the member's lineage");
        write(&member, "k3", "v3").await;
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
