//! The storage error type: one variant per failure a caller may want to tell apart.

use std::path::PathBuf;

/// Result of a storage operation.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The config named a backend the registry does not know.
    #[error("unknown storage backend {name:?}; known backends: {known}")]
    UnknownBackend { name: String, known: String },

    /// The backend needs a path and the config gave none.
    #[error("storage backend {backend:?} needs a path")]
    MissingPath { backend: &'static str },

    /// LMDB's map is full: the write was rolled back; raise `map_size`.
    #[error(
        "storage is full: the LMDB map size ({map_size} bytes) is exhausted; raise storage.map_size"
    )]
    MapFull { map_size: u64 },

    /// A key longer than [`crate::MAX_KEY_LEN`].
    #[error("key of {len} bytes is longer than the storage limit of {max} bytes")]
    KeyTooLong { len: usize, max: usize },

    /// The same store path is already open in this process.
    #[error("storage at {path} is already open in this process")]
    AlreadyOpen { path: PathBuf },

    /// A filesystem problem opening or creating the store.
    #[error("storage at {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Any other backend failure, with the backend's own message.
    #[error("{backend} storage: {message}")]
    Backend {
        backend: &'static str,
        message: String,
    },

    /// A visitor's own error, passed through a scan unchanged.
    #[error("{0}")]
    Visitor(String),
}
