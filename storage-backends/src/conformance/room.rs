//! Conformance properties of a store's room: its size figures, freeing transactions, and
//! (for a store opened with [`Limits`]) the reserve that lets a full store take the deletes
//! that empty it.

use super::{all_entries, commit_puts, ok, owned, read_value};
use crate::{Limits, Result, Storage, StorageError, Usage, retry_full};

/// The size figures, read without error.
fn usage(store: &dyn Storage) -> Usage {
    ok(store.usage(), "usage")
}

/// `usage()` counts what is written and what deletes free: used bytes grow by at least the
/// keys and values written, never exceed the file or the map, and fall when the rows are
/// deleted.
pub fn usage_follows_writes_and_deletes(store: &dyn Storage) {
    let before = usage(store);
    let value = vec![0x3c; 4096];
    let keys: Vec<[u8; 2]> = (0..64u16).map(u16::to_be_bytes).collect();
    let rows: Vec<(&[u8], &[u8])> = keys.iter().map(|key| (&key[..], &value[..])).collect();
    commit_puts(store, &rows);
    let full = usage(store);
    assert!(
        full.used_bytes >= before.used_bytes + 64 * 4096,
        "256 KiB written: {before:?} then {full:?}"
    );
    assert!(full.used_bytes <= full.file_bytes, "{full:?}");
    assert!(full.used_bytes <= full.map_bytes, "{full:?}");
    if let Some(max) = full.max_map_bytes {
        assert!(
            full.map_bytes <= max && full.reserve_bytes < max,
            "{full:?}"
        );
    }
    let mut txn = ok(store.write_freeing(), "begin freeing write");
    for key in &keys {
        assert!(ok(txn.delete(key), "delete"), "the row existed");
    }
    ok(txn.commit(), "commit the deletes");
    let empty = usage(store);
    assert!(
        empty.used_bytes + 128 * 1024 <= full.used_bytes,
        "deleting 256 KiB frees most of it: {full:?} then {empty:?}"
    );
}

/// A freeing transaction is a write transaction like any other: it reads its own writes,
/// commits atomically and leaves nothing when dropped.
pub fn freeing_writes_are_write_transactions(store: &dyn Storage) {
    commit_puts(store, &[(b"a", b"1"), (b"b", b"2")]);
    let mut txn = ok(store.write_freeing(), "begin freeing write");
    assert!(ok(txn.delete(b"a"), "delete a"), "a existed");
    ok(txn.put(b"c", b"3"), "put c");
    assert_eq!(ok(txn.get(b"a"), "get a"), None, "own delete");
    assert_eq!(ok(txn.get(b"c"), "get c").as_deref(), Some(&b"3"[..]));
    drop(txn);
    assert_eq!(
        read_value(store, b"a").as_deref(),
        Some(&b"1"[..]),
        "dropped"
    );
    let mut txn = ok(store.write_freeing(), "begin freeing write");
    assert!(ok(txn.delete(b"a"), "delete a"), "a existed");
    ok(txn.commit(), "commit");
    assert_eq!(all_entries(store), owned(&[(b"b", b"2")]), "after commit");
}

/// The limits the bounded properties open their stores with: 4 MiB, 512 KiB of it kept.
pub fn bounded_limits() -> Limits {
    Limits::new(4 << 20, Some(512 << 10)).expect("a reserve below the maximum")
}

/// Commits `value` at row `i` in an ordinary write, redone once if the store was full.
fn put_row(store: &dyn Storage, i: u32, value: &[u8]) -> Result<()> {
    retry_full(
        || {
            let mut txn = store.write()?;
            txn.put(&i.to_be_bytes(), value)?;
            txn.commit()
        },
        StorageError::is_full,
    )
}

/// Fills `store` with 16 KiB rows until an ordinary write is refused; returns the rows
/// written and the refusal.
fn fill(store: &dyn Storage) -> (u32, StorageError) {
    let value = vec![0xa5; 16 << 10];
    let mut rows = 0;
    loop {
        match put_row(store, rows, &value) {
            Ok(()) => rows += 1,
            Err(err) => return (rows, err),
        }
        assert!(rows < 1024, "a store of 4 MiB took 16 MiB");
    }
}

/// A store at [`bounded_limits`] that ordinary writes filled (each redone once after a
/// refusal) refuses the next with `LimitReached`, takes a freeing transaction deleting
/// half its rows (writing a 1 KiB tombstone for each first, as the node's deletes add
/// history), and then takes ordinary writes again, with no reopening.
pub fn a_full_store_frees_and_writes_again(store: &dyn Storage) {
    let limits = bounded_limits();
    let (rows, refused) = fill(store);
    assert!(
        matches!(refused, StorageError::LimitReached { freeing: false, reserve_bytes, .. }
            if reserve_bytes == limits.reserve()),
        "the last write is refused for the reserve: {refused:?}"
    );
    assert!(rows >= 100, "only {rows} rows of 16 KiB before the limit");
    let used = usage(store);
    assert!(used.used_bytes <= limits.max(), "{used:?}");
    assert_eq!(used.max_map_bytes, Some(limits.max()), "{used:?}");

    let mut txn = ok(store.write_freeing(), "begin freeing write in a full store");
    let tombstone = vec![0; 1 << 10];
    for i in (0..rows).step_by(2) {
        let key = [&b"tombstone/"[..], &i.to_be_bytes()].concat();
        ok(txn.put(&key, &tombstone), "a tombstone in the reserve");
    }
    for i in (0..rows).step_by(2) {
        assert!(
            ok(txn.delete(&i.to_be_bytes()), "delete"),
            "row {i} existed"
        );
    }
    ok(txn.commit(), "commit the deletes in a full store");

    let value = vec![0x5a; 16 << 10];
    for i in 0..rows / 4 {
        if let Err(err) = put_row(store, rows + i, &value) {
            panic!("write {i} after freeing half the rows: {err}");
        }
    }
    let mut count = 0;
    let counted = ok(store.read(), "begin read").scan(&[0; 4], Some(&[1, 0, 0, 0]), &mut |_, _| {
        count += 1;
        Ok(crate::Scan::Continue)
    });
    ok(counted, "scan the rows");
    assert_eq!(count, rows - rows.div_ceil(2) + rows / 4, "rows left");
}
