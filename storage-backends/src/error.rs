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

    /// LMDB's map of `map_size` bytes was exhausted: the write was rolled back, and the map
    /// grows before the next write transaction, so redoing the write once succeeds
    /// ([`crate::retry_full`]).
    #[error(
        "storage is full: the LMDB map ({map_size} bytes) was exhausted; room is made before the next write, so retry the write"
    )]
    MapFull { map_size: u64 },

    /// The store reached the most a transaction of its kind may fill it to: `limit_bytes`,
    /// which for an ordinary write is the maximum less the `reserve_bytes` kept for deletes
    /// and history collection, and for a freeing one the maximum itself. The write was
    /// rolled back; the message says what to free or raise.
    #[error("storage is full: {}", limit_message(*limit_bytes, *reserve_bytes, *freeing))]
    LimitReached {
        limit_bytes: u64,
        reserve_bytes: u64,
        freeing: bool,
    },

    /// A store's bounds that cannot hold (a reserve not smaller than the maximum).
    #[error("invalid storage limits: {0}")]
    InvalidLimits(String),

    /// The filesystem holding the store refused to grow it: no space left (`ENOSPC`), the
    /// user's quota reached (`EDQUOT`), or the process's file size limit reached (`EFBIG`).
    /// The write was rolled back; the message says what to free or raise.
    /// (The OS error is part of the message, not also a `source`, so an error chain names it
    /// once.)
    #[error(
        "storage is full: writing {path} failed: {cause}; {}",
        disk_full_fix(cause)
    )]
    DiskFull {
        path: PathBuf,
        cause: std::io::Error,
    },

    /// A key longer than [`crate::MAX_KEY_LEN`].
    #[error("key of {len} bytes is longer than the storage limit of {max} bytes")]
    KeyTooLong { len: usize, max: usize },

    /// The same store path is already open in this process.
    #[error("storage at {path} is already open in this process")]
    AlreadyOpen { path: PathBuf },

    /// A filesystem problem opening or creating the store.
    #[error("storage at {path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
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

impl StorageError {
    /// Whether the storage is out of room (the map or the disk): retrying fails the same way
    /// until space is freed or a limit raised.
    pub fn is_full(&self) -> bool {
        matches!(
            self,
            StorageError::MapFull { .. }
                | StorageError::LimitReached { .. }
                | StorageError::DiskFull { .. }
        )
    }
}

/// Whether an OS error means the filesystem refused to grow a file (see
/// [`StorageError::DiskFull`]).
pub fn is_out_of_space(error: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        error.kind(),
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded | ErrorKind::FileTooLarge
    )
}

/// What [`StorageError::LimitReached`] says: what was reached, and what to do.
fn limit_message(limit: u64, reserve: u64, freeing: bool) -> String {
    if freeing {
        format!(
            "even deletes and collection reached the store's maximum of {limit} bytes; raise storage.max_map_size or free disk space"
        )
    } else {
        format!(
            "writes reached {limit} bytes, the maximum less the {reserve} bytes kept for deletes and collection; delete rows, run `syncbase gc DB`, raise storage.max_map_size, or free disk space"
        )
    }
}

/// What the operator can do about an out-of-space error.
fn disk_full_fix(error: &std::io::Error) -> &'static str {
    use std::io::ErrorKind;
    match error.kind() {
        ErrorKind::QuotaExceeded => "free space within the user's disk quota, or raise the quota",
        ErrorKind::FileTooLarge => {
            "raise the file size limit of the node's process (ulimit -f / RLIMIT_FSIZE)"
        }
        _ => {
            "free space on the filesystem holding the data directory, or move data_dir to a larger one"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every message of an error and of its sources, joined as `{:#}` (anyhow) prints them.
    fn chain(error: &dyn std::error::Error) -> String {
        let mut text = error.to_string();
        let mut next = error.source();
        while let Some(cause) = next {
            text += &format!(": {cause}");
            next = cause.source();
        }
        text
    }

    #[test]
    fn an_os_error_is_named_once_in_an_error_chain() {
        let os = || std::io::Error::from_raw_os_error(28);
        let path = PathBuf::from("/data/data.mdb");
        for error in [
            StorageError::DiskFull {
                path: path.clone(),
                cause: os(),
            },
            StorageError::Io { path, cause: os() },
        ] {
            let text = chain(&error);
            assert_eq!(text.matches(&os().to_string()).count(), 1, "{text}");
        }
    }

    #[test]
    fn out_of_space_errnos_are_disk_full_and_each_names_its_fix() {
        let fixes = [
            (28, "free space on the filesystem"), // ENOSPC
            (122, "disk quota"),                  // EDQUOT
            (27, "file size limit"),              // EFBIG
        ];
        for (errno, fix) in fixes {
            let source = std::io::Error::from_raw_os_error(errno);
            assert!(is_out_of_space(&source), "errno {errno}");
            let error = StorageError::DiskFull {
                path: "/data/data.mdb".into(),
                cause: source,
            };
            assert!(error.is_full());
            let text = error.to_string();
            assert!(
                text.starts_with("storage is full: writing /data/data.mdb"),
                "{text}"
            );
            assert!(text.contains(fix), "{text}");
        }
        for errno in [5, 13] {
            // EIO, EACCES: not a question of space.
            assert!(!is_out_of_space(&std::io::Error::from_raw_os_error(errno)));
        }
    }
}
