//! LMDB-only behaviour the shared suite cannot express: persistence across close and
//! reopen, the one-environment-per-path rule, a full map, and filesystem errors.

use std::path::Path;

use syncbase_storage::{LmdbStorage, MapSize, Scan, Storage, StorageError};

/// A map size with plenty of room for these tests' data.
const ROOMY: u64 = 64 << 20;

/// A store whose map is `map_size` bytes and never grows.
fn open(path: &Path, map_size: u64) -> LmdbStorage {
    LmdbStorage::open(path, MapSize::fixed(map_size), true)
        .unwrap_or_else(|err| panic!("open {}: {err}", path.display()))
}

fn put(store: &dyn Storage, key: &[u8], value: &[u8]) {
    let mut txn = store.write().expect("begin write");
    txn.put(key, value).expect("put");
    txn.commit().expect("commit");
}

fn get(store: &dyn Storage, key: &[u8]) -> Option<Vec<u8>> {
    store.read().expect("begin read").get(key).expect("get")
}

fn count(store: &dyn Storage) -> usize {
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
fn data_survives_close_and_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("nested/store");
    let store = open(&path, ROOMY);
    put(&store, b"", b"empty key");
    put(&store, b"k", b"v");
    let mut txn = store.write().expect("begin write");
    txn.put(b"uncommitted", b"x").expect("put");
    drop(txn);
    drop(store);

    let store = open(&path, ROOMY);
    assert_eq!(get(&store, b"k").as_deref(), Some(&b"v"[..]));
    assert_eq!(get(&store, b"").as_deref(), Some(&b"empty key"[..]));
    assert_eq!(get(&store, b"uncommitted"), None);
    assert_eq!(count(&store), 2);
}

#[test]
fn same_path_twice_is_already_open_until_dropped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store");
    let first = open(&path, ROOMY);
    put(&first, b"k", b"v");

    // The same directory under another spelling is still the same environment.
    let other_spelling = dir.path().join("store/../store");
    match LmdbStorage::open(&other_spelling, MapSize::fixed(ROOMY), true) {
        Err(StorageError::AlreadyOpen { path: reported }) => {
            assert_eq!(
                reported,
                first.path(),
                "AlreadyOpen names the canonical path"
            );
        }
        other => panic!("second open: expected AlreadyOpen, got {other:?}"),
    }
    drop(first);

    let second = open(&path, ROOMY);
    assert_eq!(get(&second, b"k").as_deref(), Some(&b"v"[..]));
}

/// Puts 64 values of 64 KiB in one write transaction until one fails; returns that error
/// and what committing the failed transaction returns.
fn overflow(store: &dyn Storage) -> (StorageError, Option<StorageError>, StorageError) {
    let chunk = vec![0xab; 64 << 10];
    let mut txn = store.write().expect("begin write");
    let err = (0..64u32)
        .find_map(|i| txn.put(&i.to_be_bytes(), &chunk).err())
        .expect("64 puts of 64 KiB must overflow a 1 MiB map");
    let later = txn.put(b"small", b"x").err();
    let commit = txn
        .commit()
        .expect_err("a failed transaction does not commit");
    (err, later, commit)
}

#[test]
fn a_full_map_that_may_not_grow_is_limit_reached_and_rolls_back() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path(), 1 << 20);
    put(&store, b"before", b"kept");

    // Right after a commit, a refusal may be the last commit's freed pages (not reusable
    // yet): MapFull, and the retry settles them first.
    let (first, _, _) = overflow(&store);
    assert!(matches!(first, StorageError::MapFull { .. }), "{first:?}");
    let (err, later, commit) = overflow(&store);
    assert!(
        matches!(err, StorageError::LimitReached { limit_bytes, freeing: false, .. }
            if limit_bytes == store.map_size()),
        "expected LimitReached at the ordinary cap, got {err:?}"
    );
    let text = err.to_string();
    for fix in ["delete rows", "syncbase gc", "storage.max_map_size"] {
        assert!(text.contains(fix), "the message says what to do: {text}");
    }
    assert!(
        matches!(later, Some(StorageError::LimitReached { .. })),
        "a failed transaction keeps failing: {later:?}"
    );
    assert!(
        matches!(commit, StorageError::LimitReached { .. }),
        "committing a failed transaction reports the failure: {commit:?}"
    );

    assert_eq!(
        count(&store),
        1,
        "nothing of the failed transactions is visible"
    );
    put(&store, b"after", b"small write");
    assert_eq!(get(&store, b"before").as_deref(), Some(&b"kept"[..]));
    assert_eq!(get(&store, b"after").as_deref(), Some(&b"small write"[..]));
}

#[test]
fn path_under_a_regular_file_is_an_io_error_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"not a directory").expect("write file");
    let path = file.join("store");

    match LmdbStorage::open(&path, MapSize::fixed(ROOMY), true) {
        Err(err @ StorageError::Io { .. }) => {
            let text = err.to_string();
            assert!(
                text.contains(&*path.to_string_lossy()),
                "the error names the path: {text}"
            );
        }
        other => panic!("expected an Io error, got {other:?}"),
    }
}

#[test]
fn non_durable_store_commits_and_reopens() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store =
        LmdbStorage::open(dir.path(), MapSize::fixed(ROOMY), false).expect("open with NO_SYNC");
    put(&store, b"k", b"v");
    drop(store);
    let store = open(dir.path(), ROOMY);
    assert_eq!(get(&store, b"k").as_deref(), Some(&b"v"[..]));
}
