//! The in-memory backend: a persistent ordered map (`imbl::OrdMap`) behind a lock.
//!
//! A read transaction clones the current map, which is an O(1) snapshot thanks to
//! structural sharing. The write transaction holds the store's writer mutex (one writer at a
//! time; others block), edits its own clone, and `commit` swaps that clone in. Dropping it
//! without `commit` simply discards the clone. Values are kept behind `Arc` so that the
//! copy-on-write of a tree node copies pointers, not megabytes of value bytes.
//!
//! The store's size is estimated as the sum of its keys' and values' lengths, kept with each
//! committed map. A store opened with [`Limits`] refuses a put that would take that estimate
//! past its transaction's cap (`LimitReached`; the transaction then fails every later call,
//! as LMDB's does); none by default.

use std::fmt;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use imbl::OrdMap;

use crate::{
    Limits, Purpose, ReadTxn, Result, Scan, Storage, Usage, Visitor, WriteTxn, check_key_len,
};

/// The map a transaction works on: keys to shared, immutable value bytes.
type Map = OrdMap<Vec<u8>, Arc<[u8]>>;

/// A map and its estimated size in bytes.
#[derive(Clone, Default)]
struct Sized {
    map: Map,
    bytes: u64,
}

/// A volatile store that lives as long as the value; for tests and ephemeral nodes.
#[derive(Default)]
pub struct MemoryStorage {
    /// The last committed map; replaced wholesale by each commit.
    current: RwLock<Sized>,
    /// Held by the open write transaction, serialising writers.
    writer: Mutex<()>,
    /// The store's bound, if it has one.
    limits: Option<Limits>,
}

impl MemoryStorage {
    /// An empty store with no bound.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store of at most `limits.max()` bytes (keys and values), of which ordinary
    /// writes may use all but `limits.reserve()`.
    pub fn with_limits(limits: Limits) -> Self {
        MemoryStorage {
            limits: Some(limits),
            ..MemoryStorage::default()
        }
    }

    /// A new, independent store holding what this one has committed (O(1): the map is
    /// persistent), with the same bound. What a backup taken now would restore; the
    /// deterministic simulation restarts nodes from such copies.
    pub fn copy(&self) -> MemoryStorage {
        MemoryStorage {
            current: RwLock::new(self.snapshot()),
            writer: Mutex::new(()),
            limits: self.limits,
        }
    }

    /// A snapshot of the last committed map.
    ///
    /// A poisoned lock is recovered rather than reported: the map is only ever replaced
    /// whole by one assignment, so a panic elsewhere cannot leave it half-written.
    fn snapshot(&self) -> Sized {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Makes `sized` the committed state.
    fn install(&self, sized: Sized) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = sized;
    }

    /// Begins the write transaction for `purpose`.
    fn begin_write(&self, purpose: Purpose) -> Box<dyn WriteTxn + '_> {
        // The guard protects no data (it is `()`), so a writer that panicked poisons
        // nothing: its uncommitted clone died with it.
        let guard = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        Box::new(MemoryWrite {
            store: self,
            _guard: guard,
            sized: self.snapshot(),
            cap: self.limits.map(|limits| limits.cap(purpose, limits.max())),
            purpose,
            failed: false,
        })
    }
}

impl fmt::Debug for MemoryStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStorage")
            .field("entries", &self.snapshot().map.len())
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Storage for MemoryStorage {
    fn read(&self) -> Result<Box<dyn ReadTxn + '_>> {
        Ok(Box::new(MemoryRead {
            map: self.snapshot().map,
        }))
    }

    fn write(&self) -> Result<Box<dyn WriteTxn + '_>> {
        Ok(self.begin_write(Purpose::Ordinary))
    }

    fn write_freeing(&self) -> Result<Box<dyn WriteTxn + '_>> {
        Ok(self.begin_write(Purpose::Freeing))
    }

    fn usage(&self) -> Result<Usage> {
        let bytes = self.snapshot().bytes;
        Ok(Usage {
            file_bytes: bytes,
            used_bytes: bytes,
            map_bytes: bytes,
            max_map_bytes: self.limits.map(Limits::max),
            reserve_bytes: self.limits.map_or(0, Limits::reserve),
        })
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
    sized: Sized,
    /// The most this transaction may fill the store to, if it is bounded.
    cap: Option<u64>,
    purpose: Purpose,
    /// A put went past `cap`: the transaction is rolled back.
    failed: bool,
}

impl MemoryWrite<'_> {
    /// Fails if a put past the cap broke the transaction.
    fn ensure_usable(&self) -> Result<()> {
        match (self.failed, self.cap, self.store.limits) {
            (true, Some(cap), Some(limits)) => {
                Err(self.purpose.limit_reached(cap, limits.reserve()))
            }
            _ => Ok(()),
        }
    }
}

impl ReadTxn for MemoryWrite<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.ensure_usable()?;
        Ok(get(&self.sized.map, key))
    }

    fn scan(&self, start: &[u8], end: Option<&[u8]>, visit: &mut Visitor<'_>) -> Result<()> {
        self.ensure_usable()?;
        scan(&self.sized.map, start, end, visit)
    }
}

impl WriteTxn for MemoryWrite<'_> {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        check_key_len(key)?;
        self.ensure_usable()?;
        let old = self
            .sized
            .map
            .get(key)
            .map_or(0, |old| entry_bytes(key, old));
        let bytes = self.sized.bytes - old + entry_bytes(key, value);
        if bytes > self.sized.bytes && self.cap.is_some_and(|cap| bytes > cap) {
            self.failed = true;
            return self.ensure_usable();
        }
        self.sized.map.insert(key.to_vec(), Arc::from(value));
        self.sized.bytes = bytes;
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<bool> {
        self.ensure_usable()?;
        let Some(old) = self.sized.map.remove(key) else {
            return Ok(false);
        };
        self.sized.bytes -= entry_bytes(key, &old);
        Ok(true)
    }

    fn commit(self: Box<Self>) -> Result<()> {
        self.ensure_usable()?;
        let this = *self;
        this.store.install(this.sized);
        // `this._guard` is released here, after the new map is visible.
        Ok(())
    }
}

/// The estimated bytes of one entry: its key's and value's lengths.
fn entry_bytes(key: &[u8], value: &[u8]) -> u64 {
    (key.len() + value.len()) as u64
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
    fn usage_is_the_sum_of_key_and_value_lengths_and_a_copy_keeps_the_bound() {
        let store = MemoryStorage::with_limits(Limits::new(100, Some(10)).unwrap());
        let mut txn = store.write().unwrap();
        txn.put(b"ab", b"cde").unwrap();
        txn.put(b"ab", b"c").unwrap();
        txn.put(b"x", b"").unwrap();
        txn.commit().unwrap();
        assert_eq!(store.usage().unwrap().used_bytes, 4);
        let copy = store.copy();
        let mut txn = copy.write().unwrap();
        let refused = txn.put(b"big", &[0; 90]).unwrap_err();
        assert!(
            matches!(
                refused,
                crate::StorageError::LimitReached {
                    limit_bytes: 90,
                    ..
                }
            ),
            "{refused:?}"
        );
        assert!(txn.commit().is_err(), "a refused transaction stays refused");
        let mut txn = copy.write_freeing().unwrap();
        txn.put(b"big", &[0; 90]).unwrap();
        txn.commit().unwrap();
        assert_eq!(copy.usage().unwrap().used_bytes, 97);
        assert_eq!(
            store.usage().unwrap().used_bytes,
            4,
            "the original is apart"
        );
    }

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
