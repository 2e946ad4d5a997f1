//! Conformance properties of scans: range boundaries, prefix scans (including prefixes of
//! `0xff` bytes), early stop and visitor errors.

use super::{Entry, collect, collect_prefix, commit_puts, ok};
use crate::{MAX_KEY_LEN, ReadTxn, Scan, Storage, StorageError, prefix_end};

/// Stored keys chosen to sit on interesting boundaries; [`keys`] adds two of the longest
/// allowed length.
const KEYS: &[&[u8]] = &[
    b"",
    b"\x00",
    b"\x00\x00",
    b"\x01",
    b"\x01\x00",
    b"\x01\xff",
    b"\x02",
    b"\x7f",
    b"\xfe\xff",
    b"\xff",
    b"\xff\x00",
    b"\xff\xff",
    b"\xff\xff\xff",
];

/// Extra bounds that fall between, before and after the stored keys.
const PROBES: &[&[u8]] = &[
    b"\x00\x00\x00",
    b"\x01\x01",
    b"\x80",
    b"\xfe",
    b"\xff\x01",
    b"\xff\xff\xff\xff",
];

/// Every stored key, unsorted: [`KEYS`] plus `[0x01; MAX_KEY_LEN]` and `[0xff; MAX_KEY_LEN]`
/// (the latter the greatest key a store can hold).
fn keys() -> Vec<Vec<u8>> {
    let mut keys: Vec<Vec<u8>> = KEYS.iter().map(|key| key.to_vec()).collect();
    keys.push(vec![0x01; MAX_KEY_LEN]);
    keys.push(vec![0xff; MAX_KEY_LEN]);
    keys
}

/// Commits [`keys`], each with its index as value, and returns them as sorted entries.
fn fill(store: &dyn Storage) -> Vec<Entry> {
    let mut sorted: Vec<Entry> = keys()
        .into_iter()
        .enumerate()
        .map(|(i, key)| (key, vec![i as u8]))
        .collect();
    let entries: Vec<(&[u8], &[u8])> = sorted
        .iter()
        .map(|(key, value)| (key.as_slice(), value.as_slice()))
        .collect();
    commit_puts(store, &entries);
    sorted.sort();
    sorted
}

/// Every bound the brute-force checks try: the keys, the probes, and starts longer than
/// any key may be (one byte past the longest stored keys, and more).
fn bounds() -> Vec<Vec<u8>> {
    let mut bounds = keys();
    bounds.extend(PROBES.iter().map(|probe| probe.to_vec()));
    bounds.push(vec![0x01; MAX_KEY_LEN + 1]);
    bounds.push(vec![0xff; MAX_KEY_LEN + 1]);
    bounds.push(vec![0x01; MAX_KEY_LEN + 40]);
    bounds
}

/// The keys of `entries`, for readable comparisons.
fn keys_of(entries: &[Entry]) -> Vec<Vec<u8>> {
    entries.iter().map(|(key, _)| key.clone()).collect()
}

/// Owned copies of `keys`, with the longest keys of `0x01` / `0xff` spelt `L1` / `LF`.
fn spelt(keys: &[&[u8]]) -> Vec<Vec<u8>> {
    keys.iter()
        .map(|key| match *key {
            b"L1" => vec![0x01; MAX_KEY_LEN],
            b"LF" => vec![0xff; MAX_KEY_LEN],
            key => key.to_vec(),
        })
        .collect()
}

/// The entries of sorted `all` in `[start, end)`.
fn expected_range(all: &[Entry], start: &[u8], end: Option<&[u8]>) -> Vec<Entry> {
    all.iter()
        .filter(|(key, _)| key.as_slice() >= start && end.is_none_or(|end| key.as_slice() < end))
        .cloned()
        .collect()
}

/// Scans include `start`, exclude `end`, run to the last key without `end`, and are
/// empty when `start` is past the last key or `end <= start`; checked for named cases and
/// then for every pair of bounds, in a read and in a write transaction.
pub fn scan_boundaries(store: &dyn Storage) {
    let all = fill(store);
    let txn = ok(store.read(), "begin read");
    check_named_boundaries(&*txn);
    check_every_range(&*txn, &all, "read");
    drop(txn);
    let txn = ok(store.write(), "begin write");
    check_every_range(&*txn, &all, "write");
}

/// The boundary cases the contract spells out.
fn check_named_boundaries<T: ReadTxn + ?Sized>(txn: &T) {
    let scan = |start: &[u8], end: Option<&[u8]>| keys_of(&collect(txn, start, end));
    let one_to_two = spelt(&[b"\x01", b"\x01\x00", b"L1", b"\x01\xff"]);
    assert_eq!(
        scan(b"\x01", Some(b"\x02")),
        one_to_two,
        "start inclusive, end exclusive"
    );
    let tail = spelt(&[
        b"\xfe\xff",
        b"\xff",
        b"\xff\x00",
        b"\xff\xff",
        b"\xff\xff\xff",
        b"LF",
    ]);
    assert_eq!(
        scan(b"\xfe\xff", None),
        tail,
        "end None runs to the last key"
    );
    assert_eq!(scan(b"\xff\xff", None), tail[3..], "keys of 0xff bytes");
    assert_eq!(scan(b"\x02", Some(b"\x01")), spelt(&[]), "end before start");
    assert_eq!(
        scan(b"\x02", Some(b"\x02")),
        spelt(&[]),
        "end equal to start"
    );
    let past_last = vec![0xff; MAX_KEY_LEN + 1];
    assert_eq!(
        scan(&past_last, None),
        spelt(&[]),
        "start beyond the last key"
    );
    let past_long_01 = vec![0x01; MAX_KEY_LEN + 1];
    let after = spelt(&[b"\x01\xff", b"\x02"]);
    assert_eq!(
        scan(&past_long_01, Some(b"\x7f")),
        after,
        "start just past a longest key"
    );
}

/// Every `(start, end)` pair of [`bounds`], compared with a filter over `all`.
fn check_every_range<T: ReadTxn + ?Sized>(txn: &T, all: &[Entry], which: &str) {
    let bounds = bounds();
    for start in &bounds {
        for end in bounds.iter().map(|end| Some(end.as_slice())).chain([None]) {
            let expected = expected_range(all, start, end);
            assert_eq!(
                collect(txn, start, end),
                expected,
                "{which} scan from {start:x?} to {end:x?}"
            );
        }
    }
}

/// A prefix scan returns exactly the keys starting with the prefix, including prefixes
/// ending in (or made only of) `0xff`, whose end bound cannot be incremented.
pub fn prefix_scans(store: &dyn Storage) {
    let all = fill(store);
    let txn = ok(store.read(), "begin read");
    assert_eq!(
        prefix_end(b"\x01\xff"),
        Some(b"\x02".to_vec()),
        "prefix_end carries"
    );
    assert_eq!(prefix_end(b"\xff\xff"), None, "prefix_end of 0xff bytes");
    let ff = keys_of(&collect_prefix(&*txn, b"\xff"));
    let expected = spelt(&[b"\xff", b"\xff\x00", b"\xff\xff", b"\xff\xff\xff", b"LF"]);
    assert_eq!(ff, expected, "prefix \\xff reaches the end of the keyspace");
    for prefix in bounds() {
        let expected: Vec<Entry> = all
            .iter()
            .filter(|(key, _)| key.starts_with(&prefix))
            .cloned()
            .collect();
        assert_eq!(
            collect_prefix(&*txn, &prefix),
            expected,
            "prefix {prefix:x?}"
        );
    }
}

/// [`Scan::Stop`] ends a scan early with `Ok`; a visitor's error ends it and comes back
/// from `scan` unchanged; neither spoils the transaction.
pub fn scan_stop_and_visitor_error(store: &dyn Storage) {
    let all = fill(store);
    let txn = ok(store.read(), "begin read");
    check_stop_and_error(&*txn, &all, "read");
    drop(txn);

    let mut txn = ok(store.write(), "begin write");
    check_stop_and_error(&*txn, &all, "write");
    ok(txn.put(b"after", b"scan"), "put after a failed scan");
    ok(txn.commit(), "commit after a failed scan");
}

/// Stops after two entries, then fails on the third, then scans normally.
fn check_stop_and_error<T: ReadTxn + ?Sized>(txn: &T, all: &[Entry], which: &str) {
    let mut seen = Vec::new();
    let stopped = txn.scan(b"", None, &mut |key, _| {
        seen.push(key.to_vec());
        Ok(if seen.len() == 2 {
            Scan::Stop
        } else {
            Scan::Continue
        })
    });
    ok(stopped, &format!("{which}: a stopped scan"));
    let first_two: Vec<Vec<u8>> = all[..2].iter().map(|(key, _)| key.clone()).collect();
    assert_eq!(
        seen, first_two,
        "{which}: Scan::Stop must end the scan at once"
    );

    let mut visited = 0;
    let failed = txn.scan(b"\x01", None, &mut |_, _| {
        visited += 1;
        match visited {
            3 => Err(StorageError::Visitor("visitor gave up".to_owned())),
            _ => Ok(Scan::Continue),
        }
    });
    match failed {
        Err(StorageError::Visitor(message)) => assert_eq!(message, "visitor gave up"),
        other => panic!("{which}: the visitor's error must come back, got {other:?}"),
    }
    assert_eq!(
        visited, 3,
        "{which}: the scan must end at the visitor's error"
    );
    assert_eq!(
        collect(txn, b"", None),
        all,
        "{which}: the transaction still scans"
    );
}
