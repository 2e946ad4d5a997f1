//! The in-memory backend: a persistent ordered map (`imbl::OrdMap`) behind a lock.
//!
//! A read transaction clones the current map, which is an O(1) snapshot thanks to
//! structural sharing. The write transaction holds the store's writer mutex (one writer at a
//! time; others block), edits its own clone, and `commit` swaps that clone in. Dropping it
//! without `commit` simply discards the clone. Values are kept behind `Arc` so that the
//! copy-on-write of a tree node copies pointers, not megabytes of value bytes.

use std::fmt;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use imbl::OrdMap;

use crate::{ReadTxn, Result, Scan, Storage, Visitor, WriteTxn, check_key_len};

/// The map a transaction works on: keys to shared, immutable value bytes.
type Map = OrdMap<Vec<u8>, Arc<[u8]>>;

/// A volatile store that lives as long as the value; for tests and ephemeral nodes.
#[derive(Default)]
pub struct MemoryStorage {
    /// The last committed map; replaced wholesale by each commit.
    current: RwLock<Map>,
    /// Held by the open write transaction, serialising writers.
    writer: Mutex<()>,
}

impl MemoryStorage {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new, independent store holding what this one has committed (O(1): the map is
    /// persistent). What a backup taken now would restore; the deterministic simulation
    /// restarts nodes from such copies.
    pub fn copy(&self) -> MemoryStorage {
        MemoryStorage {
            current: RwLock::new(self.snapshot()),
            writer: Mutex::new(()),
        }
    }

    /// A snapshot of the last committed map.
    ///
    /// A poisoned lock is recovered rather than reported: the map is only ever replaced
    /// whole by one assignment, so a panic elsewhere cannot leave it half-written.
    fn snapshot(&self) -> Map {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Makes `map` the committed state.
    fn install(&self, map: Map) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = map;
    }
}

impl fmt::Debug for MemoryStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStorage")
            .field("entries", &self.snapshot().len())
            .finish_non_exhaustive()
    }
}

impl Storage for MemoryStorage {
    fn read(&self) -> Result<Box<dyn ReadTxn + '_>> {
        Ok(Box::new(MemoryRead {
            map: self.snapshot(),
        }))
    }

    fn write(&self) -> Result<Box<dyn WriteTxn + '_>> {
        // The guard protects no data (it is `()`), so a writer that panicked poisons
        // nothing: its uncommitted clone died with it.
        let guard = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(Box::new(MemoryWrite {
            store: self,
            _guard: guard,
            map: self.snapshot(),
        }))
    }

    fn backend(&self) -> &'static str {
        "memory"
    }
}

/// A read transaction: its own snapshot of the map.
struct MemoryRead {
    map: Map,
}

impl ReadTxn for MemoryRead {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(get(&self.map, key))
    }

    fn scan(&self, start: &[u8], end: Option<&[u8]>, visit: &mut Visitor<'_>) -> Result<()> {
        scan(&self.map, start, end, visit)
    }
}

/// The write transaction: a private clone of the map plus the writer lock.
struct MemoryWrite<'a> {
    store: &'a MemoryStorage,
    _guard: MutexGuard<'a, ()>,
    map: Map,
}

impl ReadTxn for MemoryWrite<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(get(&self.map, key))
    }

    fn scan(&self, start: &[u8], end: Option<&[u8]>, visit: &mut Visitor<'_>) -> Result<()> {
        scan(&self.map, start, end, visit)
    }
}

impl WriteTxn for MemoryWrite<'_> {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        check_key_len(key)?;
        self.map.insert(key.to_vec(), Arc::from(value));
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<bool> {
        Ok(self.map.remove(key).is_some())
    }

    fn commit(self: Box<Self>) -> Result<()> {
        let this = *self;
        this.store.install(this.map);
        // `this._guard` is released here, after the new map is visible.
        Ok(())
    }
}

/// The value at `key` in `map`, copied out.
fn get(map: &Map, key: &[u8]) -> Option<Vec<u8>> {
    map.get(key).map(|value| value.to_vec())
}

/// Visits `map`'s entries in `[start, end)` in order, as [`ReadTxn::scan`] describes.
fn scan(map: &Map, start: &[u8], end: Option<&[u8]>, visit: &mut Visitor<'_>) -> Result<()> {
    if end.is_some_and(|end| end <= start) {
        return Ok(());
    }
    let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
    for (key, value) in map.range::<_, [u8]>((Bound::Included(start), upper)) {
        if visit(key, value)? == Scan::Stop {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_holds_what_was_committed_and_goes_its_own_way() {
        let original = MemoryStorage::new();
        let mut txn = original.write().unwrap();
        txn.put(b"k", b"one").unwrap();
        txn.commit().unwrap();
        let copy = original.copy();
        let mut txn = original.write().unwrap();
        txn.put(b"k", b"two").unwrap();
        txn.commit().unwrap();
        assert_eq!(
            copy.read().unwrap().get(b"k").unwrap(),
            Some(b"one".to_vec())
        );
        let mut txn = copy.write().unwrap();
        txn.put(b"other", b"x").unwrap();
        txn.commit().unwrap();
        assert_eq!(original.read().unwrap().get(b"other").unwrap(), None);
        assert_eq!(
            original.read().unwrap().get(b"k").unwrap(),
            Some(b"two".to_vec())
        );
    }
}
