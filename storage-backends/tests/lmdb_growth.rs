//! LMDB's map growing by itself and the reserve it keeps: a caller that redoes a transaction
//! once after `MapFull` is never refused below the maximum; a freeing transaction may use
//! the reserve but not more; readers on other threads read correctly across resizes. (That
//! a store at its maximum takes the deletes that empty it, then writes again, is a bounded
//! property of the conformance suite, run on LMDB in `tests/conformance.rs`.)

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use syncbase_storage::{
    Limits, LmdbStorage, MapSize, Result, Scan, Storage, StorageError, retry_full,
};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

/// A store whose map starts at `initial` bytes and grows up to `max`, keeping `reserve`.
fn open(path: &Path, initial: u64, max: u64, reserve: u64) -> LmdbStorage {
    let map = MapSize {
        initial,
        limits: Limits::new(max, Some(reserve)).expect("valid limits"),
    };
    LmdbStorage::open(path, map, false).expect("open")
}

/// Commits `value` at `key` in an ordinary write transaction.
fn put(store: &dyn Storage, key: &[u8], value: &[u8]) -> Result<()> {
    let mut txn = store.write()?;
    txn.put(key, value)?;
    txn.commit()
}

/// [`put`], redone once if the store was full, counting the failed attempts in `failed`.
fn put_retrying(store: &dyn Storage, key: &[u8], value: &[u8], failed: &mut u32) -> Result<()> {
    retry_full(
        || {
            let outcome = put(store, key, value);
            *failed += u32::from(outcome.is_err());
            outcome
        },
        StorageError::is_full,
    )
}

fn key(i: u64) -> [u8; 8] {
    i.to_be_bytes()
}

fn count(store: &dyn Storage) -> u64 {
    let mut count = 0;
    let txn = store.read().expect("begin read");
    txn.scan(b"", None, &mut |_, _| {
        count += 1;
        Ok(Scan::Continue)
    })
    .expect("scan");
    count
}

#[test]
fn a_caller_retrying_once_writes_three_mib_into_a_one_mib_map_growing_to_four() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), MIB, 4 * MIB, 256 * KIB);
    let value = vec![0x5a; 64 * KIB as usize];
    let mut failed = 0;
    for i in 0..48 {
        put_retrying(&store, &key(i), &value, &mut failed)
            .unwrap_or_else(|err| panic!("put {i} after a retry: {err}"));
    }
    assert_eq!(
        failed, 0,
        "below the cap, small transactions never fail: the map grew first"
    );
    assert!(
        store.map_size() > 2 * MIB,
        "the map grew: {}",
        store.map_size()
    );
    assert!(
        store.map_size() <= 4 * MIB - 256 * KIB,
        "ordinary writes stay under the maximum less the reserve: {}",
        store.map_size()
    );
    assert_eq!(count(&store), 48);
    let usage = store.usage().unwrap();
    assert!(usage.used_bytes >= 3 * MIB, "{usage:?}");
    assert_eq!(usage.max_map_bytes, Some(4 * MIB), "{usage:?}");
}

#[test]
fn a_transaction_larger_than_the_headroom_fails_with_map_full_once_then_fits() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), MIB, 512 * MIB, 8 * MIB);
    let value = vec![3; 64 * KIB as usize];
    let write_80_mib = || {
        let mut txn = store.write()?;
        for i in 0..1280 {
            txn.put(&key(i), &value)?;
        }
        txn.commit()
    };
    let mut outcomes = Vec::new();
    let written = retry_full(
        || {
            let outcome = write_80_mib();
            outcomes.push(format!("{outcome:?}"));
            outcome
        },
        StorageError::is_full,
    );
    written.expect("80 MiB fit once the map grew");
    assert_eq!(outcomes.len(), 2, "one refusal, one success: {outcomes:?}");
    assert!(outcomes[0].contains("MapFull"), "{outcomes:?}");
    assert_eq!(count(&store), 1280);
    assert!(store.map_size() >= 80 * MIB, "{}", store.map_size());
}

#[test]
fn a_freeing_transaction_is_refused_only_at_the_maximum_itself() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 4 * MIB, 4 * MIB, 512 * KIB);
    let value = vec![1; 16 * KIB as usize];
    let mut rows = 0;
    while put(&store, &key(rows), &value).is_ok() {
        rows += 1;
    }
    let mut txn = store.write_freeing().unwrap();
    let refused = (0..1000)
        .find_map(|i| txn.put(&key(rows + i), &value).err())
        .expect("a freeing transaction cannot write past the maximum");
    assert!(
        matches!(refused, StorageError::LimitReached { freeing: true, limit_bytes, .. }
            if limit_bytes == 4 * MIB),
        "{refused:?}"
    );
    assert!(
        refused.to_string().contains("storage.max_map_size"),
        "{refused}"
    );
}

#[test]
fn readers_on_other_threads_read_correctly_across_resizes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), MIB, 256 * MIB, 8 * MIB);
    put(&store, b"stable", b"value").unwrap();
    let (done, reads) = (AtomicBool::new(false), AtomicU64::new(0));
    let value = vec![7; 256 * KIB as usize];
    std::thread::scope(|scope| {
        for _ in 0..3 {
            scope.spawn(|| {
                let mut last = 0;
                while !done.load(Ordering::SeqCst) {
                    let txn = store.read().expect("begin read");
                    assert_eq!(txn.get(b"stable").unwrap().as_deref(), Some(&b"value"[..]));
                    let mut rows = 0;
                    txn.scan(&[0; 8], Some(b"stable"), &mut |_, row| {
                        assert!(row.iter().all(|&byte| byte == 7), "a row reads whole");
                        rows += 1;
                        Ok(Scan::Continue)
                    })
                    .unwrap();
                    assert!(rows >= last, "a later snapshot holds every earlier row");
                    last = rows;
                    // Held a while, so resizes must wait for it.
                    std::thread::sleep(Duration::from_millis(1));
                    drop(txn);
                    reads.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
        let mut failed = 0;
        let written = (0..256).try_for_each(|i| put_retrying(&store, &key(i), &value, &mut failed));
        done.store(true, Ordering::SeqCst);
        written.expect("every put succeeds after at most one retry");
        assert_eq!(
            failed, 0,
            "transactions under the headroom are never refused"
        );
    });
    assert!(
        store.map_size() >= 128 * MIB,
        "the map grew twice (1 MiB, 65, 130) under the readers: {}",
        store.map_size()
    );
    assert!(reads.load(Ordering::SeqCst) > 0);
    assert_eq!(count(&store), 257);
}

/// Set in the environment of the second process of
/// `a_map_another_process_grew_is_adopted`: the store's directory.
const OTHER_PROCESS: &str = "SYNCBASE_STORAGE_OTHER_PROCESS";

#[test]
fn a_map_another_process_grew_is_adopted() {
    if let Ok(dir) = std::env::var(OTHER_PROCESS) {
        // The second process: the same environment, a larger map, 4 MiB written.
        let store = open(Path::new(&dir), 16 * MIB, 16 * MIB, MIB);
        let value = vec![9; 64 * KIB as usize];
        for i in 0..64 {
            put(&store, &key(i), &value).expect("the second process writes");
        }
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), MIB, 64 * MIB, MIB);
    put(&store, b"first", b"process").unwrap();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_map_another_process_grew_is_adopted",
            "--quiet",
        ])
        .env(OTHER_PROCESS, dir.path())
        .stdout(std::process::Stdio::null())
        .status()
        .expect("the test binary runs again");
    assert!(status.success(), "the second process failed: {status}");
    assert_eq!(count(&store), 65, "reads see the other process's rows");
    assert!(store.map_size() >= 4 * MIB, "{}", store.map_size());
    put(&store, b"after", b"the resize").expect("writes go on in the adopted map");
}
