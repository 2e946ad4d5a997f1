//! The model-based conformance property: pseudo-random transactions of puts, deletes, gets
//! and scans, committed or dropped, checked step by step against a `BTreeMap`.
//!
//! The random source is a seeded xorshift generator, so every run (and every backend)
//! replays the same sequences; a failure message names the seed and the round.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::{Entry, collect, collect_prefix, ok};
use crate::{ReadTxn, Storage, WriteTxn};

/// Seeds of the sequences replayed; each runs on top of the previous one's final state.
const SEEDS: [u64; 4] = [0x9e37_79b9_7f4a_7c15, 1, 0xdead_beef, 0x0123_4567_89ab_cdef];

/// Transactions per seed.
const ROUNDS: usize = 30;

/// Most operations in one transaction.
const MAX_OPS: u64 = 16;

/// Bytes keys are made of: both ends of the byte range and a few in between, so keys
/// collide often and exercise `0x00` / `0xff` boundaries.
const KEY_BYTES: [u8; 5] = [0x00, 0x01, 0x7f, 0xfe, 0xff];

/// The model of a store.
type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// Random transactions agree with a `BTreeMap` model in every get, delete result and scan,
/// inside the transaction and, after each commit or drop, from a fresh read.
pub fn model_based(store: &dyn Storage) {
    let mut committed = Model::new();
    for seed in SEEDS {
        let mut rng = XorShift::new(seed);
        for round in 0..ROUNDS {
            let context = format!("seed {seed:#x}, round {round}");
            run_round(store, &mut rng, &mut committed, &context);
            let txn = ok(store.read(), "begin read");
            check_scans(
                &*txn,
                &committed,
                &mut rng,
                &format!("{context}, after it ended"),
            );
        }
    }
}

/// One transaction of random operations, committed (three times in four) or dropped.
fn run_round(store: &dyn Storage, rng: &mut XorShift, committed: &mut Model, context: &str) {
    let mut txn = ok(store.write(), "begin write");
    let mut pending = committed.clone();
    for step in 0..rng.below(MAX_OPS + 1) {
        let context = format!("{context}, step {step}");
        random_op(&mut *txn, &mut pending, rng, &context);
    }
    let reader = ok(store.read(), "begin read during the write");
    check_scans(
        &*reader,
        committed,
        rng,
        &format!("{context}, reader during the write"),
    );
    drop(reader);
    if rng.below(4) == 0 {
        drop(txn);
    } else {
        ok(txn.commit(), &format!("{context}: commit"));
        *committed = pending;
    }
}

/// One random put, delete, get or scan, applied to both `txn` and `model`.
fn random_op(txn: &mut dyn WriteTxn, model: &mut Model, rng: &mut XorShift, context: &str) {
    let key = random_bytes(rng, 3, &KEY_BYTES);
    match rng.below(10) {
        0..=4 => {
            let value = random_bytes(rng, 6, &[0, 1, 2, 0xff]);
            ok(txn.put(&key, &value), &format!("{context}: put {key:x?}"));
            model.insert(key, value);
        }
        5 | 6 => {
            let existed = ok(txn.delete(&key), &format!("{context}: delete {key:x?}"));
            assert_eq!(
                existed,
                model.remove(&key).is_some(),
                "{context}: delete {key:x?}"
            );
        }
        7 => {
            let value = ok(txn.get(&key), &format!("{context}: get {key:x?}"));
            assert_eq!(value.as_ref(), model.get(&key), "{context}: get {key:x?}");
        }
        _ => check_scans(&*txn, model, rng, context),
    }
}

/// Compares a full scan, a random range scan and a random prefix scan with `model`.
fn check_scans<T: ReadTxn + ?Sized>(txn: &T, model: &Model, rng: &mut XorShift, context: &str) {
    assert_eq!(
        collect(txn, b"", None),
        entries(model, b"", None),
        "{context}: full scan"
    );

    let start = random_bytes(rng, 3, &KEY_BYTES);
    let end = (rng.below(4) != 0).then(|| random_bytes(rng, 3, &KEY_BYTES));
    let expected = entries(model, &start, end.as_deref());
    let scanned = collect(txn, &start, end.as_deref());
    assert_eq!(
        scanned, expected,
        "{context}: scan from {start:x?} to {end:x?}"
    );

    let prefix = random_bytes(rng, 2, &KEY_BYTES);
    let expected: Vec<Entry> = model
        .iter()
        .filter(|(key, _)| key.starts_with(&prefix))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    assert_eq!(
        collect_prefix(txn, &prefix),
        expected,
        "{context}: prefix {prefix:x?}"
    );
}

/// The model's entries in `[start, end)`.
fn entries(model: &Model, start: &[u8], end: Option<&[u8]>) -> Vec<Entry> {
    if end.is_some_and(|end| end <= start) {
        return Vec::new();
    }
    let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
    model
        .range::<[u8], _>((Bound::Included(start), upper))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

/// Up to `max_len` bytes drawn from `alphabet`; the length may be zero.
fn random_bytes(rng: &mut XorShift, max_len: u64, alphabet: &[u8]) -> Vec<u8> {
    let len = rng.below(max_len + 1);
    (0..len)
        .map(|_| alphabet[rng.below(alphabet.len() as u64) as usize])
        .collect()
}

/// Marsaglia's xorshift64* generator: tiny, deterministic, good enough for test choices.
struct XorShift(u64);

impl XorShift {
    /// A generator for `seed` (zero, a fixed point of xorshift, is replaced).
    fn new(seed: u64) -> Self {
        Self(if seed == 0 {
            0x2545_f491_4f6c_dd1d
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..bound` (`bound > 0`).
    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}
