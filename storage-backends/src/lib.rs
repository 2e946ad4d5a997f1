//! `syncbase-storage`: the ordered key-value storage layer under a syncbase node.
//!
//! The node sees storage only through the [`Storage`] trait: ordered byte keys, snapshot
//! read transactions ([`ReadTxn`]), atomic write transactions ([`WriteTxn`]) and forward
//! range scans. Backends live in their own modules (`memory`, `lmdb`) and are opened by
//! name through the registry ([`open`]), so a config file picks one. `limits` holds what
//! bounds a store ([`Limits`]: a maximum and a reserve), its size figures ([`Usage`]) and
//! [`retry_full`]. Every backend runs the same conformance suite (`conformance`), one test
//! body per property.
//!
//! Contract shared by every backend:
//! - keys compare as unsigned bytes (memcmp order); keys and values may be empty, up to
//!   [`MAX_KEY_LEN`] bytes for keys;
//! - a read transaction sees one snapshot: commits that finish after it began are invisible;
//! - a write transaction sees its own writes; `commit` makes all of them visible at once and
//!   durable (for durable backends) before it returns; dropping it without `commit` discards
//!   every write;
//! - at most one write transaction is open at a time per store (others block until it ends);
//! - a write that fails for lack of room, in the backend's own limit or on the disk, fails
//!   with an error for which [`StorageError::is_full`] holds (`MapFull`, `LimitReached`,
//!   `DiskFull`), never as a generic backend error, and writes nothing; after `MapFull` the
//!   store has grown, so redoing the transaction once ([`retry_full`]) succeeds whenever its
//!   maximum allows;
//! - a bounded store ([`Limits`]) keeps a reserve: ordinary writes ([`Storage::write`]) fill
//!   it up to its maximum less the reserve, freeing transactions
//!   ([`Storage::write_freeing`]) up to the maximum, so deletes and history collection
//!   succeed in a store that ordinary writes filled;
//! - transactions are not `Send`: begin, use and end one on a single thread, and never hold
//!   one across an `.await` (run writes on a blocking thread).

mod error;
mod limits;
mod lmdb;
mod memory;
mod registry;

pub mod conformance;

pub use error::{Result, StorageError};
pub use limits::{DEFAULT_MAX_MAP_SIZE, Limits, Usage, default_reserve, retry_full};
pub use lmdb::{LmdbStorage, MapSize};
pub use memory::MemoryStorage;

pub(crate) use limits::Purpose;
pub use registry::{BACKENDS, StorageConfig, open};

/// Longest key any backend accepts (LMDB's default compile-time limit is 511 bytes).
pub const MAX_KEY_LEN: usize = 511;

/// Rejects a key longer than [`MAX_KEY_LEN`]; every backend calls this first in `put`, so
/// the limit and its error are the same everywhere.
pub(crate) fn check_key_len(key: &[u8]) -> Result<()> {
    if key.len() > MAX_KEY_LEN {
        return Err(StorageError::KeyTooLong {
            len: key.len(),
            max: MAX_KEY_LEN,
        });
    }
    Ok(())
}

/// What a scan callback tells the scan to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// Deliver the next entry.
    Continue,
    /// End the scan now; `scan` returns `Ok(())`.
    Stop,
}

/// A callback fed `(key, value)` pairs in ascending key order.
pub type Visitor<'a> = dyn FnMut(&[u8], &[u8]) -> Result<Scan> + 'a;

/// A store of ordered byte keys. Shared between threads (`Send + Sync`); transactions are
/// begun on the thread that uses them.
pub trait Storage: Send + Sync + 'static {
    /// Begins a read-only snapshot transaction.
    fn read(&self) -> Result<Box<dyn ReadTxn + '_>>;

    /// Begins the store's single write transaction, blocking while another one is open.
    /// It may fill a bounded store up to its maximum less the reserve (`LimitReached` past
    /// that).
    fn write(&self) -> Result<Box<dyn WriteTxn + '_>>;

    /// Begins a write transaction for freeing space (deletes, history collection), which may
    /// also use the reserve that ordinary writes leave; otherwise as [`Storage::write`] (the
    /// same single writer). A store with no reserve needs no other behaviour, hence the
    /// default.
    fn write_freeing(&self) -> Result<Box<dyn WriteTxn + '_>> {
        self.write()
    }

    /// The store's size figures (see [`Usage`]). The default, for wrappers of a store in
    /// tests, fails with `Backend` saying so; every backend of this crate reports them.
    fn usage(&self) -> Result<Usage> {
        Err(StorageError::Backend {
            backend: self.backend(),
            message: "this store reports no size figures".to_owned(),
        })
    }

    /// The backend's registry name (`memory`, `lmdb`).
    fn backend(&self) -> &'static str;
}

/// Reads through one consistent snapshot.
pub trait ReadTxn {
    /// The value stored at `key`, if any.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Visits entries with `start <= key` and, if `end` is given, `key < end`, in ascending
    /// key order, until the visitor says [`Scan::Stop`] or returns an error (which `scan`
    /// returns).
    fn scan(&self, start: &[u8], end: Option<&[u8]>, visit: &mut Visitor<'_>) -> Result<()>;

    /// Visits every entry whose key starts with `prefix`, in ascending key order.
    fn scan_prefix(&self, prefix: &[u8], visit: &mut Visitor<'_>) -> Result<()> {
        let end = prefix_end(prefix);
        self.scan(prefix, end.as_deref(), visit)
    }
}

/// An atomic write transaction. It reads its own writes.
pub trait WriteTxn: ReadTxn {
    /// Stores `value` at `key`, replacing any previous value.
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()>;

    /// Removes `key`; returns whether it existed.
    fn delete(&mut self, key: &[u8]) -> Result<bool>;

    /// Makes every write visible (and durable, for durable backends) at once.
    fn commit(self: Box<Self>) -> Result<()>;
}

/// The smallest key greater than every key starting with `prefix`, or `None` if there is
/// none (the prefix is empty or all `0xff`).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}
