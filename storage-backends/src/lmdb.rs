//! The LMDB backend (`lmdb-rkv`): one environment per directory, memory-mapped B+tree.
//!
//! This module owns opening an environment (directory creation, map size, durability
//! flags), the process-wide registry that refuses to open one path twice (LMDB's locks break
//! if a process opens the same environment twice), and the error mapping; the transactions
//! live in `lmdb/txn.rs`.
//!
//! LMDB forbids zero-length keys, and the contract allows them. Prefixing every key with a
//! byte would push a [`MAX_KEY_LEN`](crate::MAX_KEY_LEN) key past LMDB's own 511-byte limit,
//! so instead the environment holds two named databases: `kv` for every non-empty key,
//! stored as is, and `empty-key`, whose single entry is the value of the empty key. The
//! empty key sorts before every other key, so scans visit it first.

mod room;
mod txn;

use room::Room;

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use ::lmdb::{Database, DatabaseFlags, Environment, EnvironmentFlags};

use crate::{ReadTxn, Result, Storage, StorageError, WriteTxn};

/// Canonical paths of the environments open in this process.
static OPEN: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// Reader slots in the lock table: concurrent read transactions allowed per environment.
const MAX_READERS: u32 = 512;

/// Name of the database holding every non-empty key.
const KV_DB: &str = "kv";

/// Name of the database holding the empty key's value.
const EMPTY_KEY_DB: &str = "empty-key";

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
    map_size: u64,
    registration: Registration,
}

impl LmdbStorage {
    /// Opens (creating if needed) the environment in directory `path`, with a memory map
    /// (and so a maximum database size) of `map_size` bytes.
    ///
    /// With `durable`, every commit is flushed to disk (`fsync`) before it returns. Without
    /// it the environment uses `MDB_NOSYNC`: commits are atomic and isolated but a system
    /// crash may lose the latest ones. That is meant for benchmarks and tests only.
    pub fn open(path: &Path, map_size: u64, durable: bool) -> Result<Self> {
        std::fs::create_dir_all(path).map_err(|source| io_error(path, source))?;
        let canonical = path
            .canonicalize()
            .map_err(|source| io_error(path, source))?;
        let registration = Registration::claim(canonical)?;
        let env = open_env(path, map_size, durable)?;
        let dbs = Dbs::create(&env, path)?;
        let info = env.info().map_err(|err| {
            backend_error(&format!("reading the info of {}", path.display()), err)
        })?;
        Ok(Self {
            env,
            dbs,
            map_size: info.map_size() as u64,
            registration,
        })
    }

    /// The size of the memory map in effect, in bytes: the most the database can hold.
    pub fn map_size(&self) -> u64 {
        self.map_size
    }

    /// The canonical path of the environment's directory.
    pub fn path(&self) -> &Path {
        &self.registration.path
    }

    fn room(&self) -> Room<'_> {
        Room {
            map_size: self.map_size,
            path: &self.registration.path,
        }
    }
}

impl fmt::Debug for LmdbStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LmdbStorage")
            .field("path", &self.registration.path)
            .field("map_size", &self.map_size)
            .finish_non_exhaustive()
    }
}

impl Storage for LmdbStorage {
    fn read(&self) -> Result<Box<dyn ReadTxn + '_>> {
        let txn = self
            .env
            .begin_ro_txn()
            .map_err(|err| backend_error("beginning a read transaction", err))?;
        Ok(Box::new(txn::LmdbRead::new(txn, self.dbs)))
    }

    fn write(&self) -> Result<Box<dyn WriteTxn + '_>> {
        let txn = self
            .env
            .begin_rw_txn()
            .map_err(|err| self.room().error("beginning a write transaction", err))?;
        Ok(Box::new(txn::LmdbWrite::new(txn, self.dbs, self.room())))
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
