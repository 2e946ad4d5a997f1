//! The LMDB backend (`lmdb-rkv`): one environment per directory, memory-mapped B+tree.
//!
//! This module owns opening an environment (directory creation, map size, durability
//! flags), the process-wide registry that refuses to open one path twice (LMDB's locks break
//! if a process opens the same environment twice), the size figures, and the error mapping;
//! the transactions live in `lmdb/txn.rs`, the map's growth and reserve in `lmdb/map.rs`,
//! the gate that keeps the map still while transactions use it in `lmdb/gate.rs`.
//!
//! LMDB forbids zero-length keys, and the contract allows them. Prefixing every key with a
//! byte would push a [`MAX_KEY_LEN`](crate::MAX_KEY_LEN) key past LMDB's own 511-byte limit,
//! so instead the environment holds two named databases: `kv` for every non-empty key,
//! stored as is, and `empty-key`, whose single entry is the value of the empty key. The
//! empty key sorts before every other key, so scans visit it first.

mod gate;
mod map;
mod room;
mod txn;

use gate::{Gate, Pass};
use map::Map;
use room::Room;

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use ::lmdb::{Database, DatabaseFlags, Environment, EnvironmentFlags, Transaction, WriteFlags};

use crate::{Limits, Purpose, ReadTxn, Result, Storage, StorageError, Usage, WriteTxn};

/// Canonical paths of the environments open in this process.
static OPEN: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// Reader slots in the lock table: concurrent read transactions allowed per environment.
const MAX_READERS: u32 = 512;

/// Name of the database holding every non-empty key.
const KV_DB: &str = "kv";

/// Name of the database holding the empty key's value.
const EMPTY_KEY_DB: &str = "empty-key";

/// The memory map of an LMDB store: its initial size and its bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapSize {
    /// The map's size at open, in bytes (LMDB widens it to the pages in use if that is more).
    pub initial: u64,
    /// The most it grows to, and the reserve ordinary writes leave to freeing transactions.
    pub limits: Limits,
}

impl MapSize {
    /// A map of `size` bytes that never grows, with the [`default_reserve`](crate::default_reserve).
    pub fn fixed(size: u64) -> MapSize {
        MapSize {
            initial: size,
            limits: Limits::with_default_reserve(size),
        }
    }
}

/// A store in an LMDB environment on disk.
///
/// Only one `LmdbStorage` per directory may be open in a process at a time; a second
/// [`open`](LmdbStorage::open) of the same directory fails with
/// [`StorageError::AlreadyOpen`] until the first is dropped. Dropping it closes the
/// environment; every transaction borrows it, so none can outlive it.
pub struct LmdbStorage {
    // Field order matters: the environment closes before the path is released.
    env: Environment,
    dbs: Dbs,
    map: Map,
    gate: Gate,
    registration: Registration,
}

impl LmdbStorage {
    /// Opens (creating if needed) the environment in directory `path`, with a memory map of
    /// `map.initial` bytes that grows by itself up to `map.limits` (see [`Storage::write`]'s
    /// `MapFull` and the crate's [`Limits`]).
    ///
    /// With `durable`, every commit is flushed to disk (`fsync`) before it returns. Without
    /// it the environment uses `MDB_NOSYNC`: commits are atomic and isolated but a system
    /// crash may lose the latest ones. That is meant for benchmarks and tests only.
    pub fn open(path: &Path, map: MapSize, durable: bool) -> Result<Self> {
        std::fs::create_dir_all(path).map_err(|source| io_error(path, source))?;
        let canonical = path
            .canonicalize()
            .map_err(|source| io_error(path, source))?;
        let registration = Registration::claim(canonical)?;
        let env = open_env(path, map.initial, durable)?;
        let dbs = Dbs::create(&env, path)?;
        let map = Map::new(&env, &registration.path, map.limits);
        Ok(Self {
            env,
            dbs,
            map,
            gate: Gate::default(),
            registration,
        })
    }

    /// The size of the memory map in effect, in bytes: what the store may hold before it
    /// grows the map.
    pub fn map_size(&self) -> u64 {
        self.map.size()
    }

    /// The most the map may grow to now, in bytes: the configured maximum, or the disk's
    /// free space plus the data file's size if that is less.
    pub fn max_map_size(&self) -> u64 {
        self.map.max_now()
    }

    /// The canonical path of the environment's directory.
    pub fn path(&self) -> &Path {
        &self.registration.path
    }

    /// Begins a write transaction of `purpose`, settling and resizing the map first if it
    /// needs to.
    fn begin_write(&self, purpose: Purpose) -> Result<Box<dyn WriteTxn + '_>> {
        if !self.gate.held_here() && self.map.take_settle() {
            self.settle();
        }
        self.map.before_write(&self.env, &self.gate, purpose);
        let room = Room {
            map: &self.map,
            purpose,
        };
        let (txn, pass) = self.begin(Environment::begin_rw_txn, |err| {
            room.error("beginning a write transaction", err)
        })?;
        Ok(Box::new(txn::LmdbWrite::new(txn, self.dbs, room, pass)))
    }

    /// A settling commit (see `lmdb/map.rs`): a freeing transaction that writes and removes a
    /// scratch entry beside the empty key's slot, so it commits and changes nothing visible.
    /// A failure is logged: the write after it is refused again, as `LimitReached`.
    fn settle(&self) {
        self.map
            .before_write(&self.env, &self.gate, Purpose::Freeing);
        let settled = self
            .begin(Environment::begin_rw_txn, |err| {
                backend_error("beginning a settling commit", err)
            })
            .and_then(|(mut txn, _pass)| {
                let scratch: &[u8] = &[1];
                txn.put(self.dbs.empty_key, &scratch, &[], WriteFlags::empty())
                    .and_then(|()| txn.del(self.dbs.empty_key, &scratch, None))
                    .and_then(|()| txn.commit())
                    .map_err(|err| backend_error("a settling commit", err))
            });
        match settled {
            Ok(()) => self.map.committed(true),
            Err(err) => {
                tracing::warn!(path = %self.path().display(), %err, "LMDB settling commit failed")
            }
        }
    }

    /// Begins an LMDB transaction with `begin` under a gate pass. If another process
    /// resized the map (`MDB_MAP_RESIZED`), takes its size and begins once more.
    fn begin<'env, T>(
        &'env self,
        begin: impl Fn(&'env Environment) -> ::lmdb::Result<T>,
        error: impl Fn(::lmdb::Error) -> StorageError,
    ) -> Result<(T, Pass<'env>)> {
        let pass = self.gate.enter();
        match begin(&self.env) {
            Ok(txn) => return Ok((txn, pass)),
            Err(::lmdb::Error::MapResized) => drop(pass),
            Err(err) => return Err(error(err)),
        }
        self.map.adopt(&self.env, &self.gate);
        let pass = self.gate.enter();
        begin(&self.env).map(|txn| (txn, pass)).map_err(error)
    }
}

impl fmt::Debug for LmdbStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LmdbStorage")
            .field("path", &self.registration.path)
            .field("map", &self.map)
            .finish_non_exhaustive()
    }
}

impl Storage for LmdbStorage {
    fn read(&self) -> Result<Box<dyn ReadTxn + '_>> {
        let (txn, pass) = self.begin(Environment::begin_ro_txn, |err| {
            backend_error("beginning a read transaction", err)
        })?;
        Ok(Box::new(txn::LmdbRead::new(txn, self.dbs, pass)))
    }

    fn write(&self) -> Result<Box<dyn WriteTxn + '_>> {
        self.begin_write(Purpose::Ordinary)
    }

    fn write_freeing(&self) -> Result<Box<dyn WriteTxn + '_>> {
        self.begin_write(Purpose::Freeing)
    }

    fn usage(&self) -> Result<Usage> {
        let _pass = self.gate.enter();
        let failed = |err| backend_error("reading the store's size", err);
        let info = self.env.info().map_err(failed)?;
        let page = u64::from(self.env.stat().map_err(failed)?.page_size());
        let free = self.env.freelist().map_err(failed)? as u64;
        let file = std::fs::metadata(self.map.data_file())
            .map_err(|source| io_error(&self.map.data_file(), source))?;
        let pages = info.last_pgno() as u64 + 1;
        Ok(Usage {
            file_bytes: file.len(),
            used_bytes: pages.saturating_sub(free) * page,
            map_bytes: self.map.shown_size().max(info.map_size() as u64),
            max_map_bytes: Some(self.map.max_now()),
            reserve_bytes: self.map.limits().reserve(),
        })
    }

    fn backend(&self) -> &'static str {
        "lmdb"
    }
}

/// Opens the environment in the existing directory `path`.
fn open_env(path: &Path, map_size: u64, durable: bool) -> Result<Environment> {
    let map_size = usize::try_from(map_size).map_err(|_| StorageError::Backend {
        backend: "lmdb",
        message: format!("map size of {map_size} bytes does not fit in this platform's memory"),
    })?;
    // NO_TLS ties reader slots to transactions rather than threads, so one thread may hold
    // several read transactions (and a read next to its write).
    let mut flags = EnvironmentFlags::NO_TLS;
    if !durable {
        flags |= EnvironmentFlags::NO_SYNC;
    }
    Environment::new()
        .set_flags(flags)
        .set_max_dbs(2)
        .set_max_readers(MAX_READERS)
        .set_map_size(map_size)
        .open(path)
        .map_err(|err| open_error(path, err))
}

/// The two databases of an environment (see the module docs).
#[derive(Debug, Clone, Copy)]
struct Dbs {
    kv: Database,
    empty_key: Database,
}

impl Dbs {
    /// Opens both databases, creating them in a new environment.
    fn create(env: &Environment, path: &Path) -> Result<Self> {
        let create = |name: &str| {
            env.create_db(Some(name), DatabaseFlags::empty())
                .map_err(|err| open_error(path, err))
        };
        Ok(Self {
            kv: create(KV_DB)?,
            empty_key: create(EMPTY_KEY_DB)?,
        })
    }

    /// Where `key` is stored: its database and the key inside it.
    fn locate(self, key: &[u8]) -> (Database, &[u8]) {
        /// The key of the empty key's value inside `empty-key`.
        const EMPTY_KEY_SLOT: &[u8] = &[0];
        if key.is_empty() {
            (self.empty_key, EMPTY_KEY_SLOT)
        } else {
            (self.kv, key)
        }
    }
}

/// A claim on a canonical path in [`OPEN`], released on drop.
#[derive(Debug)]
struct Registration {
    path: PathBuf,
}

impl Registration {
    /// Claims `path`, failing with `AlreadyOpen` if another store holds it.
    fn claim(path: PathBuf) -> Result<Self> {
        if !open_paths().insert(path.clone()) {
            return Err(StorageError::AlreadyOpen { path });
        }
        Ok(Self { path })
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        open_paths().remove(&self.path);
    }
}

/// The registry of open paths. A poisoned lock is recovered: every update is a single
/// `insert` or `remove`, so the set is never left half-changed.
fn open_paths() -> std::sync::MutexGuard<'static, BTreeSet<PathBuf>> {
    OPEN.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A filesystem error about `path`; out of room (see `room`) is `DiskFull` here too.
fn io_error(path: &Path, source: std::io::Error) -> StorageError {
    let path = path.to_path_buf();
    if crate::error::is_out_of_space(&source) {
        StorageError::DiskFull {
            path,
            cause: source,
        }
    } else {
        StorageError::Io {
            path,
            cause: source,
        }
    }
}

/// An error opening the environment at `path`: OS errors (permissions, missing files)
/// become `Io`, LMDB's own codes become `Backend`.
fn open_error(path: &Path, err: ::lmdb::Error) -> StorageError {
    match err {
        ::lmdb::Error::Other(code) => io_error(path, std::io::Error::from_raw_os_error(code)),
        err => backend_error(&format!("opening {}", path.display()), err),
    }
}

/// Any other LMDB error, with what was being done.
fn backend_error(context: &str, err: ::lmdb::Error) -> StorageError {
    StorageError::Backend {
        backend: "lmdb",
        message: format!("{context}: {err}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opening_on_a_full_disk_is_disk_full_and_other_os_errors_stay_io() {
        let dir = Path::new("/data/lmdb");
        let full = io_error(dir, std::io::Error::from_raw_os_error(libc::ENOSPC));
        assert!(full.is_full(), "{full:?}");
        let denied = io_error(dir, std::io::Error::from_raw_os_error(libc::EACCES));
        assert!(matches!(denied, StorageError::Io { .. }), "{denied:?}");
    }
}
