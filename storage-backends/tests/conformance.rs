//! Runs the shared conformance suite (`syncbase_storage::conformance`) against every
//! backend: in memory, and LMDB both durable and with `MDB_NOSYNC`, each test on a fresh
//! store in its own temporary directory.

use std::sync::Arc;

use syncbase_storage::{LmdbStorage, MapSize, MemoryStorage};
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

syncbase_storage::conformance_tests!(memory, || (Arc::new(MemoryStorage::new()), ()));
syncbase_storage::conformance_tests!(lmdb_durable, || lmdb(true));
syncbase_storage::conformance_tests!(lmdb_nosync, || lmdb(false));

#[test]
fn run_all_covers_the_memory_backend() {
    syncbase_storage::conformance::run_all(|| (Box::new(MemoryStorage::new()), ()));
}
