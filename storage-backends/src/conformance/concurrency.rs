//! Conformance properties across transactions: snapshot isolation of readers, invisibility
//! of uncommitted writes, and serialised writers that lose no update.

use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;

use super::{all_entries, collect, commit_puts, ok, owned, read_value};
use crate::{ReadTxn, Storage};

/// Writer threads in [`concurrent_writers_serialise`].
const WRITERS: u64 = 4;

/// Read-modify-write increments per writer thread.
const INCREMENTS: u64 = 100;

/// A read transaction keeps seeing the snapshot it began with while writers commit, on
/// the same thread or on another; a read begun afterwards sees the new data.
pub fn readers_keep_their_snapshot(store: &dyn Storage) {
    commit_puts(store, &[(b"a", b"1"), (b"b", b"1")]);
    let old = ok(store.read(), "begin the old read");

    let mut txn = ok(store.write(), "begin write on the reader's thread");
    ok(txn.put(b"a", b"2"), "put a");
    assert!(ok(txn.delete(b"b"), "delete b"), "b existed");
    ok(txn.put(b"c", b"2"), "put c");
    ok(txn.commit(), "commit on the reader's thread");
    check_snapshot(&*old, "after a commit on the same thread");

    thread::scope(|scope| {
        scope.spawn(|| commit_puts(store, &[(b"d", b"3"), (b"a", b"3")]));
    });
    check_snapshot(&*old, "after a commit on another thread");

    let new = ok(store.read(), "begin a new read");
    let expected = owned(&[(b"a", b"3"), (b"c", b"2"), (b"d", b"3")]);
    assert_eq!(
        collect(&*new, b"", None),
        expected,
        "a new read sees every commit"
    );
    drop(new);
    check_snapshot(&*old, "after a newer read came and went");
}

/// `txn` still shows the state `{a: 1, b: 1}`.
fn check_snapshot<T: ReadTxn + ?Sized>(txn: &T, when: &str) {
    assert_eq!(
        ok(txn.get(b"a"), "get a").as_deref(),
        Some(&b"1"[..]),
        "{when}: a"
    );
    assert_eq!(
        ok(txn.get(b"b"), "get b").as_deref(),
        Some(&b"1"[..]),
        "{when}: b"
    );
    assert_eq!(ok(txn.get(b"c"), "get c"), None, "{when}: c");
    let expected = owned(&[(b"a", b"1"), (b"b", b"1")]);
    assert_eq!(collect(txn, b"", None), expected, "{when}: full scan");
}

/// Reads begun while a write transaction is open, before or after its writes, on its
/// thread or another, see none of them until it commits.
pub fn uncommitted_writes_are_invisible(store: &dyn Storage) {
    commit_puts(store, &[(b"a", b"1")]);
    let mut txn = ok(store.write(), "begin write");
    ok(txn.put(b"a", b"2"), "put a");
    ok(txn.put(b"b", b"2"), "put b");

    let committed = owned(&[(b"a", b"1")]);
    assert_eq!(
        all_entries(store),
        committed,
        "same thread, during the write"
    );
    let seen = thread::scope(|scope| scope.spawn(|| all_entries(store)).join());
    let seen = seen.unwrap_or_else(|_| panic!("the reader thread panicked"));
    assert_eq!(seen, committed, "another thread, during the write");

    ok(txn.commit(), "commit");
    assert_eq!(
        all_entries(store),
        owned(&[(b"a", b"2"), (b"b", b"2")]),
        "after commit"
    );
}

/// Several threads doing read-modify-write increments of one counter in their own write
/// transactions lose no update: writers are serialised. A reader thread meanwhile only ever
/// sees the counter grow.
pub fn concurrent_writers_serialise(store: &dyn Storage) {
    let finished = AtomicU64::new(0);
    thread::scope(|scope| {
        for _ in 0..WRITERS {
            scope.spawn(|| {
                let _done = Finished(&finished);
                for _ in 0..INCREMENTS {
                    increment(store);
                }
            });
        }
        scope.spawn(|| watch_counter(store, &finished));
    });
    assert_eq!(counter(store), WRITERS * INCREMENTS, "updates were lost");
}

/// Counts a writer thread as finished when dropped, even if it panicked, so the watcher
/// never waits for a writer that is gone.
struct Finished<'a>(&'a AtomicU64);

impl Drop for Finished<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Adds one to the counter in one write transaction.
fn increment(store: &dyn Storage) {
    let mut txn = ok(store.write(), "begin write");
    let value = decode(ok(txn.get(b"counter"), "get counter"));
    // Invite other writers in between the read and the write: without serialisation
    // this loses updates.
    thread::yield_now();
    ok(
        txn.put(b"counter", &(value + 1).to_le_bytes()),
        "put counter",
    );
    ok(txn.commit(), "commit increment");
}

/// Reads the counter until every writer finished, checking it never goes down.
fn watch_counter(store: &dyn Storage, finished: &AtomicU64) {
    let mut last = 0;
    loop {
        let writers_done = finished.load(Ordering::SeqCst) == WRITERS;
        let now = counter(store);
        assert!(now >= last, "the counter went down from {last} to {now}");
        last = now;
        if writers_done {
            return;
        }
        thread::yield_now();
    }
}

/// The committed counter.
fn counter(store: &dyn Storage) -> u64 {
    decode(read_value(store, b"counter"))
}

/// A counter value: absent is zero, else eight little-endian bytes.
fn decode(value: Option<Vec<u8>>) -> u64 {
    let Some(bytes) = value else { return 0 };
    let bytes: [u8; 8] = bytes
        .try_into()
        .unwrap_or_else(|bytes: Vec<u8>| panic!("counter is {} bytes, not 8", bytes.len()));
    u64::from_le_bytes(bytes)
}
