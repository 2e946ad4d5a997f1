//! Conformance properties of single transactions: point reads and writes, key and value
//! limits, rollback on drop or error, and a write transaction reading its own writes.

use super::{all_entries, collect, collect_prefix, commit_puts, ok, owned, read_value};
use crate::{BACKENDS, MAX_KEY_LEN, Storage, StorageError};

/// `put` stores, a second `put` overwrites, `delete` removes and says whether the key was
/// there; each visible to later transactions after `commit`.
pub fn put_get_overwrite_delete(store: &dyn Storage) {
    assert_eq!(read_value(store, b"a"), None, "a fresh store must be empty");
    commit_puts(store, &[(b"a", b"1"), (b"b", b"2")]);
    assert_eq!(
        read_value(store, b"a").as_deref(),
        Some(&b"1"[..]),
        "put then get"
    );
    assert_eq!(
        read_value(store, b"b").as_deref(),
        Some(&b"2"[..]),
        "put then get"
    );

    commit_puts(store, &[(b"a", b"one")]);
    assert_eq!(
        read_value(store, b"a").as_deref(),
        Some(&b"one"[..]),
        "overwrite"
    );

    let mut txn = ok(store.write(), "begin write");
    assert!(
        ok(txn.delete(b"a"), "delete a"),
        "deleting a present key returns true"
    );
    assert!(
        !ok(txn.delete(b"a"), "delete a again"),
        "deleting it twice returns false"
    );
    assert!(
        !ok(txn.delete(b"zz"), "delete zz"),
        "deleting an absent key returns false"
    );
    ok(txn.commit(), "commit deletes");

    assert_eq!(
        read_value(store, b"a"),
        None,
        "a deleted key reads as absent"
    );
    assert_eq!(all_entries(store), owned(&[(b"b", b"2")]), "only b is left");
}

/// Keys of exactly [`MAX_KEY_LEN`] bytes work; longer ones are `KeyTooLong` on `put`, are
/// absent on `get` and `delete`, and the rejected `put` does not spoil the transaction.
pub fn key_length_limit(store: &dyn Storage) {
    let longest_high = vec![0xff; MAX_KEY_LEN];
    let longest_low = vec![0x00; MAX_KEY_LEN];
    let too_long = vec![0x61; MAX_KEY_LEN + 1];

    let mut txn = ok(store.write(), "begin write");
    ok(
        txn.put(&longest_high, b"high"),
        "put a MAX_KEY_LEN key of 0xff",
    );
    ok(
        txn.put(&longest_low, b"low"),
        "put a MAX_KEY_LEN key of 0x00",
    );
    match txn.put(&too_long, b"x") {
        Err(StorageError::KeyTooLong { len, max }) => {
            assert_eq!(
                (len, max),
                (MAX_KEY_LEN + 1, MAX_KEY_LEN),
                "KeyTooLong fields"
            );
        }
        other => panic!(
            "put of a {}-byte key: expected KeyTooLong, got {other:?}",
            too_long.len()
        ),
    }
    assert_eq!(
        ok(txn.get(&too_long), "get too long"),
        None,
        "a too-long key is absent"
    );
    assert!(
        !ok(txn.delete(&too_long), "delete too long"),
        "a too-long key is absent"
    );
    ok(txn.commit(), "commit after a rejected put");

    assert_eq!(
        read_value(store, &longest_high).as_deref(),
        Some(&b"high"[..])
    );
    assert_eq!(
        read_value(store, &longest_low).as_deref(),
        Some(&b"low"[..])
    );
    let expected = vec![
        (longest_low, b"low".to_vec()),
        (longest_high, b"high".to_vec()),
    ];
    assert_eq!(all_entries(store), expected, "both longest keys, in order");
}

/// The empty key and empty values are ordinary: stored, read back as `Some(vec![])`,
/// scanned first, deleted.
pub fn empty_key_and_value(store: &dyn Storage) {
    commit_puts(
        store,
        &[(b"", b"empty key"), (b"k", b""), (b"\x00", b"zero")],
    );
    assert_eq!(
        read_value(store, b"").as_deref(),
        Some(&b"empty key"[..]),
        "empty key"
    );
    assert_eq!(
        read_value(store, b"k"),
        Some(Vec::new()),
        "an empty value is not absent"
    );

    let txn = ok(store.read(), "begin read");
    let all = owned(&[(b"", b"empty key"), (b"\x00", b"zero"), (b"k", b"")]);
    assert_eq!(collect(&*txn, b"", None), all, "the empty key scans first");
    assert_eq!(
        collect(&*txn, b"", Some(b"")),
        vec![],
        "end == start == empty"
    );
    assert_eq!(
        collect(&*txn, b"", Some(b"\x00")),
        all[..1],
        "only the empty key"
    );
    assert_eq!(
        collect(&*txn, b"\x00", None),
        all[1..],
        "start after the empty key"
    );
    assert_eq!(
        collect_prefix(&*txn, b""),
        all,
        "the empty prefix is everything"
    );
    drop(txn);

    commit_puts(store, &[(b"", b"")]);
    assert_eq!(
        read_value(store, b""),
        Some(Vec::new()),
        "empty key with empty value"
    );

    let mut txn = ok(store.write(), "begin write");
    assert!(
        ok(txn.delete(b""), "delete empty key"),
        "the empty key existed"
    );
    assert!(
        !ok(txn.delete(b""), "delete empty key again"),
        "and is gone"
    );
    ok(txn.commit(), "commit");
    assert_eq!(read_value(store, b""), None, "the empty key was deleted");
    assert_eq!(all_entries(store), all[1..], "the other keys are untouched");
}

/// Values of 4 MiB and 16 MiB round-trip byte for byte, and can be replaced by small ones.
pub fn large_values(store: &dyn Storage) {
    let four = patterned(4 << 20, 7);
    let sixteen = patterned(16 << 20, 13);
    commit_puts(store, &[(b"four", &four)]);
    commit_puts(store, &[(b"sixteen", &sixteen)]);
    assert!(
        read_value(store, b"four") == Some(four),
        "the 4 MiB value changed"
    );
    assert!(
        read_value(store, b"sixteen") == Some(sixteen),
        "the 16 MiB value changed"
    );

    commit_puts(store, &[(b"sixteen", b"small")]);
    assert_eq!(
        read_value(store, b"sixteen").as_deref(),
        Some(&b"small"[..])
    );
}

/// `len` bytes of a pattern that differs per `salt` and has no short period.
fn patterned(len: usize, salt: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * salt + i / 251) % 256) as u8)
        .collect()
}

/// A write transaction dropped without `commit` leaves no trace.
pub fn dropped_write_leaves_nothing(store: &dyn Storage) {
    commit_puts(store, &[(b"kept", b"1"), (b"doomed", b"1")]);
    let mut txn = ok(store.write(), "begin write");
    ok(txn.put(b"new", b"x"), "put new");
    ok(txn.put(b"kept", b"changed"), "overwrite kept");
    assert!(ok(txn.delete(b"doomed"), "delete doomed"), "doomed existed");
    ok(txn.put(b"", b"empty"), "put empty key");
    drop(txn);

    let expected = owned(&[(b"doomed", b"1"), (b"kept", b"1")]);
    assert_eq!(
        all_entries(store),
        expected,
        "the dropped transaction left changes"
    );
    commit_puts(store, &[(b"after", b"1")]);
    assert_eq!(
        read_value(store, b"after").as_deref(),
        Some(&b"1"[..]),
        "store still works"
    );
}

/// A transaction that saw an error and is then dropped leaves nothing behind either.
pub fn error_mid_transaction_leaves_nothing(store: &dyn Storage) {
    commit_puts(store, &[(b"base", b"1")]);
    let mut txn = ok(store.write(), "begin write");
    for i in 0..10u8 {
        ok(txn.put(&[b'k', i], &[i]), "put before the error");
    }
    let err = txn.put(&vec![0; MAX_KEY_LEN + 1], b"x");
    assert!(
        matches!(err, Err(StorageError::KeyTooLong { .. })),
        "got {err:?}"
    );
    drop(txn);

    assert_eq!(
        all_entries(store),
        owned(&[(b"base", b"1")]),
        "writes leaked"
    );
}

/// A write transaction sees its own puts, overwrites and deletes, in `get` and in scans,
/// before it commits.
pub fn write_reads_own_writes(store: &dyn Storage) {
    commit_puts(store, &[(b"a", b"1"), (b"b", b"2"), (b"c", b"3")]);
    let mut txn = ok(store.write(), "begin write");
    ok(txn.put(b"b", b"20"), "overwrite b");
    assert!(ok(txn.delete(b"c"), "delete c"), "c existed");
    ok(txn.put(b"d", b"4"), "put d");
    ok(txn.put(b"", b"e"), "put empty key");
    ok(txn.put(b"tmp", b"x"), "put tmp");
    assert!(ok(txn.delete(b"tmp"), "delete tmp"), "tmp was just written");

    assert_eq!(
        ok(txn.get(b"b"), "get b").as_deref(),
        Some(&b"20"[..]),
        "own overwrite"
    );
    assert_eq!(ok(txn.get(b"c"), "get c"), None, "own delete");
    assert_eq!(
        ok(txn.get(b"d"), "get d").as_deref(),
        Some(&b"4"[..]),
        "own put"
    );
    assert_eq!(ok(txn.get(b"tmp"), "get tmp"), None, "own put then delete");

    let expected = owned(&[(b"", b"e"), (b"a", b"1"), (b"b", b"20"), (b"d", b"4")]);
    assert_eq!(
        collect(&*txn, b"", None),
        expected,
        "full scan inside the transaction"
    );
    assert_eq!(
        collect(&*txn, b"b", Some(b"d")),
        expected[2..3],
        "range scan"
    );
    assert_eq!(collect_prefix(&*txn, b"d"), expected[3..], "prefix scan");
    ok(txn.commit(), "commit");
    assert_eq!(all_entries(store), expected, "after commit");
}

/// The store reports a name the registry knows.
pub fn backend_name_is_registered(store: &dyn Storage) {
    let name = store.backend();
    assert!(
        BACKENDS.contains(&name),
        "backend {name:?} is not in {BACKENDS:?}"
    );
}
