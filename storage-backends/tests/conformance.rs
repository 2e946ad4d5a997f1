//! Runs the shared conformance suite (`syncbase_storage::conformance`) against every
//! backend: in memory, and LMDB both durable and with `MDB_NOSYNC`, each test on a fresh
//! store in its own temporary directory; and the bounded properties against a memory store
//! and an LMDB store (its map growing from 1 MiB) with the suite's limits.

use std::sync::Arc;

use syncbase_storage::{Limits, LmdbStorage, MapSize, MemoryStorage};
use tempfile::TempDir;

/// Map size of the LMDB test stores: room for the 16 MiB value with copy-on-write slack.
const MAP_SIZE: u64 = 256 << 20;

/// A fresh LMDB store in a new temporary directory, which must outlive it.
fn lmdb(durable: bool) -> (Arc<LmdbStorage>, TempDir) {
    let dir = tempfile::tempdir().expect("create a temp dir");
    let store = LmdbStorage::open(&dir.path().join("store"), MapSize::fixed(MAP_SIZE), durable)
        .expect("open a fresh LMDB store");
    (Arc::new(store), dir)
}

/// A fresh LMDB store bounded by `limits`, its map starting at 1 MiB.
fn bounded_lmdb(limits: Limits) -> (Arc<LmdbStorage>, TempDir) {
    let dir = tempfile::tempdir().expect("create a temp dir");
    let map = MapSize {
        initial: 1 << 20,
        limits,
    };
    let store = LmdbStorage::open(&dir.path().join("store"), map, false)
        .expect("open a fresh bounded LMDB store");
    (Arc::new(store), dir)
}

syncbase_storage::conformance_tests!(memory, || (Arc::new(MemoryStorage::new()), ()));
syncbase_storage::conformance_tests!(lmdb_durable, || lmdb(true));
syncbase_storage::conformance_tests!(lmdb_nosync, || lmdb(false));

#[test]
fn run_all_covers_the_memory_backend() {
    syncbase_storage::conformance::run_all(|| (Box::new(MemoryStorage::new()), ()));
}

#[test]
fn bounded_memory_stores_keep_their_reserve() {
    syncbase_storage::conformance::run_bounded(|limits| {
        (Arc::new(MemoryStorage::with_limits(limits)), ())
    });
}

#[test]
fn bounded_lmdb_stores_grow_and_keep_their_reserve() {
    syncbase_storage::conformance::run_bounded(bounded_lmdb);
}
