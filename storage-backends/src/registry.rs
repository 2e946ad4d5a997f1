//! The backend registry: the config section that picks a backend, the list of backend
//! names, and [`open`], which turns a config into a ready store.

use std::path::PathBuf;
use std::sync::Arc;

use crate::{
    DEFAULT_MAX_MAP_SIZE, Limits, LmdbStorage, MapSize, MemoryStorage, Result, Storage,
    StorageError,
};

/// Which backend to open and where; filled from the node's TOML config.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageConfig {
    /// Registry name of the backend: one of [`BACKENDS`].
    pub backend: String,
    /// Directory of an on-disk store; required by `lmdb`, ignored by `memory`.
    pub path: Option<PathBuf>,
    /// LMDB map size in bytes at open; the map grows by itself up to `max_map_size`.
    pub map_size: u64,
    /// The most the store may hold, in bytes. LMDB: the map grows up to it (and never past
    /// the disk's free space plus the data file); `None`: [`DEFAULT_MAX_MAP_SIZE`], or
    /// `map_size` if that is larger. Memory: a bound on its keys and values; `None`: none.
    pub max_map_size: Option<u64>,
    /// The bytes of that maximum kept for deletes and collection
    /// ([`Storage::write_freeing`]); `None`: [`crate::default_reserve`].
    pub reserve: Option<u64>,
    /// Whether a commit is on disk before it returns (LMDB without `MDB_NOSYNC`).
    pub durable: bool,
}

impl Default for StorageConfig {
    /// LMDB with a 1 GiB map, durable; the path still has to be set.
    fn default() -> Self {
        Self {
            backend: "lmdb".to_owned(),
            path: None,
            map_size: 1 << 30,
            max_map_size: None,
            reserve: None,
            durable: true,
        }
    }
}

impl StorageConfig {
    /// The LMDB map this config asks for (see the fields' docs); fails with
    /// `InvalidLimits` if the reserve is not smaller than the maximum.
    pub fn lmdb_map(&self) -> Result<MapSize> {
        Ok(MapSize {
            initial: self.map_size,
            limits: Limits::new(self.max_map_size_or_default(), self.reserve)?,
        })
    }

    /// `max_map_size`, or if unset LMDB's default: [`DEFAULT_MAX_MAP_SIZE`], or `map_size`
    /// if that is larger.
    pub fn max_map_size_or_default(&self) -> u64 {
        self.max_map_size
            .unwrap_or(DEFAULT_MAX_MAP_SIZE.max(self.map_size))
    }

    /// The bound of a memory store, if this config sets one.
    fn memory_limits(&self) -> Result<Option<Limits>> {
        self.max_map_size
            .map(|max| Limits::new(max, self.reserve))
            .transpose()
    }
}

/// Names of every backend [`open`] knows, in the order error messages list them.
pub const BACKENDS: &[&str] = &["memory", "lmdb"];

/// Opens the backend `config` names.
pub fn open(config: &StorageConfig) -> Result<Arc<dyn Storage>> {
    match config.backend.as_str() {
        "memory" => Ok(Arc::new(match config.memory_limits()? {
            Some(limits) => MemoryStorage::with_limits(limits),
            None => MemoryStorage::new(),
        })),
        "lmdb" => open_lmdb(config),
        name => Err(StorageError::UnknownBackend {
            name: name.to_owned(),
            known: BACKENDS.join(", "),
        }),
    }
}

/// Opens an LMDB store at the configured path.
fn open_lmdb(config: &StorageConfig) -> Result<Arc<dyn Storage>> {
    let path = config
        .path
        .as_deref()
        .ok_or(StorageError::MissingPath { backend: "lmdb" })?;
    let store = LmdbStorage::open(path, config.lmdb_map()?, config.durable)?;
    Ok(Arc::new(store))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(backend: &str) -> StorageConfig {
        StorageConfig {
            backend: backend.to_owned(),
            ..StorageConfig::default()
        }
    }

    #[test]
    fn an_lmdb_map_configured_at_its_maximum_shows_as_configured() {
        let dir = tempfile::tempdir().unwrap();
        let eight = StorageConfig {
            path: Some(dir.path().to_path_buf()),
            map_size: 8 << 20,
            max_map_size: Some(8 << 20),
            ..StorageConfig::default()
        };
        let store = open(&eight).unwrap();
        let mut txn = store.write().unwrap();
        txn.put(b"k", b"v").unwrap();
        txn.commit().unwrap();
        let usage = store.usage().unwrap();
        assert_eq!(usage.map_bytes, 8 << 20, "{usage:?}");
        assert_eq!(usage.reserve_bytes, 1 << 20, "{usage:?}");
    }

    #[test]
    fn default_is_durable_lmdb_with_one_gib_map() {
        let config = StorageConfig::default();
        assert_eq!(config.backend, "lmdb");
        assert_eq!(config.path, None);
        assert_eq!(config.map_size, 1 << 30);
        assert!(config.durable);
    }

    #[test]
    fn unknown_backend_lists_the_known_ones() {
        let err = open(&config("rocksdb"))
            .err()
            .expect("rocksdb is not a backend");
        assert!(
            matches!(&err, StorageError::UnknownBackend { name, known }
                if name == "rocksdb" && known == "memory, lmdb"),
            "unexpected error: {err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains("\"rocksdb\"") && text.contains("memory, lmdb"),
            "{text}"
        );
    }

    #[test]
    fn lmdb_without_path_is_missing_path() {
        let err = open(&config("lmdb")).err().expect("lmdb needs a path");
        assert!(
            matches!(err, StorageError::MissingPath { backend: "lmdb" }),
            "unexpected error: {err:?}"
        );
    }

    #[test]
    fn memory_opens_without_path() {
        let store = open(&config("memory")).expect("memory backend opens");
        assert_eq!(store.backend(), "memory");
    }

    #[test]
    fn lmdb_opens_at_path() {
        let dir = tempfile::tempdir().expect("create a temp dir");
        let config = StorageConfig {
            path: Some(dir.path().join("store")),
            map_size: 16 << 20,
            ..StorageConfig::default()
        };
        let store = open(&config).expect("lmdb backend opens");
        assert_eq!(store.backend(), "lmdb");
    }

    #[test]
    fn lmdb_grows_to_64_gib_by_default_and_memory_is_bounded_only_when_asked() {
        let map = StorageConfig::default().lmdb_map().unwrap();
        assert_eq!(
            (map.initial, map.limits.max()),
            (1 << 30, DEFAULT_MAX_MAP_SIZE)
        );
        let huge = StorageConfig {
            map_size: 128 << 30,
            ..StorageConfig::default()
        };
        assert_eq!(huge.lmdb_map().unwrap().limits.max(), 128 << 30);
        let unbounded = open(&config("memory")).unwrap().usage().unwrap();
        assert_eq!(unbounded.max_map_bytes, None);
        let bounded = StorageConfig {
            max_map_size: Some(4 << 20),
            ..config("memory")
        };
        let usage = open(&bounded).unwrap().usage().unwrap();
        assert_eq!(usage.max_map_bytes, Some(4 << 20));
        assert_eq!(usage.reserve_bytes, 512 << 10);
        let invalid = StorageConfig {
            reserve: Some(4 << 20),
            ..bounded
        };
        assert!(matches!(
            open(&invalid),
            Err(StorageError::InvalidLimits(_))
        ));
    }

    #[test]
    fn every_listed_backend_opens() {
        let dir = tempfile::tempdir().expect("create a temp dir");
        for name in BACKENDS {
            let config = StorageConfig {
                path: Some(dir.path().join(name)),
                map_size: 16 << 20,
                ..config(name)
            };
            let store = open(&config).unwrap_or_else(|err| panic!("{name} fails to open: {err}"));
            assert_eq!(store.backend(), *name);
        }
    }
}
