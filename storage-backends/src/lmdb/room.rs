//! The room an LMDB environment has to grow, and the rule that a write failing for lack of it
//! keeps that kind: a full map is `MapFull` (the map grows for the next transaction) or
//! `LimitReached` (it may not grow for this kind of transaction; see `map`), a filesystem
//! that refuses to grow the data file is `DiskFull`, never a generic backend error.
//!
//! LMDB reports a refused write in two ways. A write that fails outright returns the OS error
//! (`ENOSPC`, `EDQUOT`, `EFBIG`). A *short* write (the disk had room for part of the pages, or
//! the file reached the process's size limit mid-write) is reported as `EIO`. So an `EIO`
//! from a write is examined: if the data file has reached `RLIMIT_FSIZE`, or the filesystem
//! has less than [`LOW_SPACE`] bytes left for this user, it was the lack of room. A disk
//! quota met by a short write cannot be told apart this way and stays `EIO`.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::backend_error;
use super::map::Map;
use crate::error::is_out_of_space;
use crate::{Purpose, StorageError};

/// Free space below which an `EIO` from a write counts as the disk being full: a short write
/// takes whatever the disk had left, so what remains afterwards is less than a page batch.
const LOW_SPACE: u64 = 1 << 20;

/// What bounds the room of one write transaction: the map (its size and its caps, which
/// depend on the transaction's purpose) and the filesystem holding it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Room<'env> {
    pub(super) map: &'env Map,
    pub(super) purpose: Purpose,
}

impl Room<'_> {
    /// An error from a write to the environment, with its kind kept (see the module doc).
    pub(super) fn error(self, context: &str, err: ::lmdb::Error) -> StorageError {
        match err {
            ::lmdb::Error::MapFull => self.map.full(self.purpose),
            ::lmdb::Error::Other(code) => {
                let mut source = io::Error::from_raw_os_error(code);
                if code == libc::EIO {
                    source = self.short_write_cause().unwrap_or(source);
                }
                if is_out_of_space(&source) {
                    StorageError::DiskFull {
                        path: self.map.data_file(),
                        cause: source,
                    }
                } else {
                    backend_error(context, err)
                }
            }
            err => backend_error(context, err),
        }
    }

    /// Why a write came up short, if it was the lack of room: the file size limit (`EFBIG`)
    /// or a filesystem with almost nothing left (`ENOSPC`).
    fn short_write_cause(self) -> Option<io::Error> {
        let size = std::fs::metadata(self.map.data_file()).ok()?.len();
        if file_size_limit().is_some_and(|limit| size >= limit) {
            return Some(io::Error::from_raw_os_error(libc::EFBIG));
        }
        if available_bytes(self.map.dir()).is_some_and(|free| free < LOW_SPACE) {
            return Some(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        None
    }
}

/// The process's file size limit (`RLIMIT_FSIZE`) in bytes, if it has one.
fn file_size_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` only writes the struct we pass, which lives for the call.
    let status = unsafe { libc::getrlimit(libc::RLIMIT_FSIZE, &mut limit) };
    (status == 0 && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

/// Bytes an unprivileged user may still write on the filesystem holding `path`.
pub(super) fn available_bytes(path: &Path) -> Option<u64> {
    let path = CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: `statvfs` is plain old data; all zeroes is a valid value to be overwritten.
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a NUL-terminated string and `stats` a struct, both live for the call.
    let status = unsafe { libc::statvfs(path.as_ptr(), &mut stats) };
    (status == 0).then(|| stats.f_bavail as u64 * stats.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Limits;

    /// An environment of `map_size` bytes in `dir` with its map policy (the maximum equal to
    /// the map, so it cannot grow).
    fn map_in(dir: &Path, map_size: u64) -> (::lmdb::Environment, Map) {
        let env = ::lmdb::Environment::new()
            .set_map_size(map_size as usize)
            .open(dir)
            .unwrap();
        let map = Map::new(&env, dir, Limits::new(map_size, Some(0)).unwrap());
        (env, map)
    }

    #[test]
    fn write_errors_keep_their_kind() {
        let dir = tempfile::tempdir().unwrap();
        let (_env, map) = map_in(dir.path(), 1 << 20);
        let room = Room {
            map: &map,
            purpose: Purpose::Ordinary,
        };
        assert!(matches!(
            room.error("commit", ::lmdb::Error::MapFull),
            StorageError::LimitReached { limit_bytes, .. } if limit_bytes == 1 << 20
        ));
        for errno in [libc::ENOSPC, libc::EDQUOT, libc::EFBIG] {
            let error = room.error("commit", ::lmdb::Error::Other(errno));
            assert!(
                matches!(&error, StorageError::DiskFull { path, .. } if path.ends_with("data.mdb")),
                "errno {errno}: {error:?}"
            );
        }
    }

    #[test]
    fn an_io_error_with_room_left_stays_a_backend_error() {
        let dir = tempfile::tempdir().unwrap();
        let (_env, map) = map_in(dir.path(), 1 << 20);
        let room = Room {
            map: &map,
            purpose: Purpose::Ordinary,
        };
        let error = room.error("commit", ::lmdb::Error::Other(libc::EIO));
        assert!(matches!(error, StorageError::Backend { .. }), "{error:?}");
        assert!(!error.is_full());
    }
}
