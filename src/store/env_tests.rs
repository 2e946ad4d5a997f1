//! The store takes its time and randomness from the `Env` it is opened with: stores opened
//! with the same seed and clock and given the same writes hold the same bytes, and every
//! drawn id and stamped time comes from the environment.

use std::sync::Arc;

use syncbase_storage::{MemoryStorage, Scan};

use super::*;
use crate::clock::ManualTime;
use crate::env::{Random, SeededRandom};

const SECOND: i64 = 1_000_000_000;
const START: i64 = 1_700_000_000 * SECOND;

fn db() -> DbName {
    DbName::parse("db").unwrap()
}

fn put(key: &str, value: &str) -> Mutation {
    Mutation::Put {
        table: TableName::parse("t").unwrap(),
        key: RowKey::parse(key).unwrap(),
        value: value.as_bytes().to_vec(),
    }
}

fn delete(key: &str) -> Mutation {
    Mutation::Delete {
        table: TableName::parse("t").unwrap(),
        key: RowKey::parse(key).unwrap(),
    }
}

/// A store on fresh memory storage in `Env::seeded(seed, time)`, and the storage.
fn seeded(seed: u64, time: &ManualTime) -> (Store, Arc<MemoryStorage>) {
    let storage = Arc::new(MemoryStorage::new());
    let env = Env::seeded(seed, Arc::new(time.clone()));
    (Store::open(storage.clone(), env).unwrap(), storage)
}

/// Every key and value of the storage, in key order.
fn dump(storage: &MemoryStorage) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut all = Vec::new();
    storage
        .read()
        .unwrap()
        .scan_prefix(b"", &mut |key, value| {
            all.push((key.to_vec(), value.to_vec()));
            Ok(Scan::Continue)
        })
        .unwrap();
    all
}

/// Single writes, a batch (a random batch id), a delete, time moving, and an epoch (a random
/// device id and a timestamp), each drawing versions from the store's environment.
fn workload(store: &Store, time: &ManualTime) {
    store.create_database(&db()).unwrap();
    store.commit(&db(), &[put("a", "1")]).unwrap();
    time.advance(SECOND);
    store
        .commit(&db(), &[put("b", "2"), put("c", "3"), delete("a")])
        .unwrap();
    store.commit(&db(), &[put("a", "4")]).unwrap();
    time.advance(SECOND);
    store
        .start_epoch(store.device(), "test".into(), None)
        .unwrap()
        .unwrap();
    store.commit(&db(), &[put("b", "5")]).unwrap();
}

fn run(seed: u64) -> Vec<(Vec<u8>, Vec<u8>)> {
    let time = ManualTime::new(START);
    let (store, storage) = seeded(seed, &time);
    workload(&store, &time);
    dump(&storage)
}

#[test]
fn two_stores_opened_with_the_same_seed_and_writes_are_identical_byte_for_byte() {
    let first = run(7);
    assert!(first.len() > 20, "the workload wrote {} keys", first.len());
    assert_eq!(first, run(7));
    assert_ne!(
        first,
        run(8),
        "the seed must reach the stored ids and versions"
    );
}

#[test]
fn a_seeded_store_draws_its_device_id_from_the_environment() {
    let time = ManualTime::new(START);
    let (store, _) = seeded(7, &time);
    let expected = SeededRandom::new(7).next_u64().unwrap();
    assert_ne!(expected, 0);
    assert_eq!(store.device(), DeviceId(expected));
}

#[test]
fn the_store_clock_and_epoch_stamps_read_the_environments_time() {
    let time = ManualTime::new(START);
    let (store, _) = seeded(1, &time);
    store.create_database(&db()).unwrap();
    store.commit(&db(), &[put("a", "1")]).unwrap();
    assert_eq!(store.clock().last().wall_nanos, START);
    time.advance(5 * SECOND);
    let epoch = store
        .start_epoch(store.device(), "test".into(), None)
        .unwrap()
        .unwrap();
    assert_eq!(epoch.at_nanos, START + 5 * SECOND);
    assert_eq!(store.epochs().unwrap()[0].at_nanos, START + 5 * SECOND);
    assert_eq!(store.env().now_nanos(), START + 5 * SECOND);
}
