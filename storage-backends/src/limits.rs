//! How much a store may hold, and the figures it reports about what it holds.
//!
//! A store may be bounded by a maximum size. Ordinary writes ([`Storage::write`]) may fill it
//! only up to the maximum less a *reserve*; a transaction opened for freeing
//! ([`Storage::write_freeing`]: deletes, history collection) may use the reserve too, so a
//! store that ordinary writes filled can always take the deletes that empty it. Bytes are
//! the unit throughout.
//!
//! [`Storage::write`]: crate::Storage::write
//! [`Storage::write_freeing`]: crate::Storage::write_freeing

use crate::{Result, StorageError};

/// The default most an LMDB map grows to (64 GiB), unless the disk has less room.
pub const DEFAULT_MAX_MAP_SIZE: u64 = 64 << 30;

/// The smallest default reserve, for a maximum of 64 MiB or more.
const MIN_RESERVE: u64 = 8 << 20;

/// The largest default reserve.
const MAX_RESERVE: u64 = 256 << 20;

/// The default reserve for a store of at most `max` bytes: 1/16 of it, at least 8 MiB and at
/// most 256 MiB, and never more than 1/8 of it (so a maximum under 64 MiB, in tests, still
/// leaves most of it to ordinary writes).
pub fn default_reserve(max: u64) -> u64 {
    (max / 16).clamp(MIN_RESERVE, MAX_RESERVE).min(max / 8)
}

/// A store's bound: at most `max` bytes, of which ordinary writes may use `max - reserve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    max: u64,
    reserve: u64,
}

impl Limits {
    /// At most `max` bytes with `reserve` of them kept for freeing transactions (`None`: the
    /// [`default_reserve`]). Fails with [`StorageError::InvalidLimits`] unless
    /// `reserve < max`.
    pub fn new(max: u64, reserve: Option<u64>) -> Result<Limits> {
        let reserve = reserve.unwrap_or_else(|| default_reserve(max));
        if reserve >= max {
            return Err(StorageError::InvalidLimits(format!(
                "the reserve ({reserve} bytes) must be smaller than the maximum ({max} bytes)"
            )));
        }
        Ok(Limits { max, reserve })
    }

    /// At most `max` bytes with the [`default_reserve`], which is always smaller (at most an
    /// eighth of it).
    pub fn with_default_reserve(max: u64) -> Limits {
        Limits {
            max,
            reserve: default_reserve(max),
        }
    }

    /// The most the store may hold, in bytes.
    pub fn max(self) -> u64 {
        self.max
    }

    /// The bytes kept for freeing transactions.
    pub fn reserve(self) -> u64 {
        self.reserve
    }

    /// The most a transaction of `purpose` may fill the store to, given that the store may
    /// hold at most `max` bytes now (the configured maximum, or less when the disk is short).
    pub(crate) fn cap(self, purpose: Purpose, max: u64) -> u64 {
        match purpose {
            Purpose::Ordinary => max.saturating_sub(self.reserve),
            Purpose::Freeing => max,
        }
    }
}

/// What a write transaction is for: it decides how much of the store it may fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// Any write: up to the maximum less the reserve.
    Ordinary,
    /// Deletes and history collection: up to the maximum.
    Freeing,
}

impl Purpose {
    /// The [`StorageError::LimitReached`] of a transaction of this purpose that reached `cap`.
    pub(crate) fn limit_reached(self, cap: u64, reserve: u64) -> StorageError {
        StorageError::LimitReached {
            limit_bytes: cap,
            reserve_bytes: reserve,
            freeing: self == Purpose::Freeing,
        }
    }
}

/// A store's size figures, in bytes ([`Storage::usage`](crate::Storage::usage)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// What the store takes on disk (LMDB: the data file's size; memory: the estimate below).
    pub file_bytes: u64,
    /// What its data takes (LMDB: pages in use, less the free list, times the page size;
    /// memory: the sum of its keys' and values' lengths).
    pub used_bytes: u64,
    /// What it may hold now without growing (LMDB: the memory map's size, counting the
    /// reserve once the map is at the maximum less the reserve, which freeing transactions
    /// widen it past; memory: the estimate, as it grows with every write).
    pub map_bytes: u64,
    /// The most it may grow to (LMDB: `storage.max_map_size`, or less if the disk has less
    /// room: its free space plus the data file); `None`: no bound (memory by default).
    pub max_map_bytes: Option<u64>,
    /// The part of that maximum only freeing transactions may use.
    pub reserve_bytes: u64,
}

/// Runs `attempt`, and runs it once more if it failed with an error `is_full` says is a
/// lack of room; returns the last outcome.
///
/// An LMDB store grows its map before a write when less than 32 MiB is left, so below its
/// cap a smaller transaction never fails. A larger one, or one just after a commit that
/// freed pages at the cap, fails with [`StorageError::MapFull`] and the store makes room
/// (grows the map, or settles the freed pages) before the next write transaction, so redoing
/// the whole transaction once succeeds whenever the store's maximum allows (a growth step,
/// at least 64 MiB, covers any transaction of the node). `attempt` must begin, fill and
/// commit its own transaction. Pass [`StorageError::is_full`] for storage errors, or the
/// caller's own test for errors converted from them (the node's `StorageFull:`).
pub fn retry_full<T, E>(
    mut attempt: impl FnMut() -> Result<T, E>,
    is_full: impl Fn(&E) -> bool,
) -> Result<T, E> {
    match attempt() {
        Err(error) if is_full(&error) => attempt(),
        outcome => outcome,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_reserve_is_a_sixteenth_within_its_bounds() {
        assert_eq!(default_reserve(DEFAULT_MAX_MAP_SIZE), 256 << 20);
        assert_eq!(default_reserve(1 << 30), 64 << 20);
        assert_eq!(default_reserve(64 << 20), 8 << 20);
        assert_eq!(
            default_reserve(4 << 20),
            512 << 10,
            "an eighth of a small store"
        );
    }

    #[test]
    fn a_reserve_must_be_smaller_than_the_maximum() {
        let error = Limits::new(1 << 20, Some(1 << 20)).unwrap_err();
        assert!(matches!(error, StorageError::InvalidLimits(_)), "{error:?}");
        let limits = Limits::new(1 << 20, Some(1 << 10)).unwrap();
        assert_eq!(
            limits.cap(Purpose::Ordinary, 1 << 20),
            (1 << 20) - (1 << 10)
        );
        assert_eq!(limits.cap(Purpose::Freeing, 1 << 20), 1 << 20);
    }

    #[test]
    fn retry_full_retries_once_and_only_when_full() {
        let full = || StorageError::MapFull { map_size: 1 };
        let mut calls = 0;
        let outcome = retry_full(
            || {
                calls += 1;
                if calls == 1 { Err(full()) } else { Ok(calls) }
            },
            StorageError::is_full,
        );
        assert_eq!(outcome.unwrap(), 2);
        let mut calls = 0;
        let outcome: Result<()> = retry_full(
            || {
                calls += 1;
                Err(full())
            },
            StorageError::is_full,
        );
        assert!(outcome.unwrap_err().is_full());
        assert_eq!(calls, 2, "at most one retry");
        let mut calls = 0;
        let outcome: Result<()> = retry_full(
            || {
                calls += 1;
                Err(StorageError::Visitor("no".into()))
            },
            StorageError::is_full,
        );
        assert!(outcome.is_err());
        assert_eq!(calls, 1, "other errors are not retried");
    }
}
