//! The size of an LMDB environment's memory map: when it grows, how far, and the cap that
//! keeps a reserve for freeing transactions.
//!
//! The map starts at the configured initial size. A write transaction that exhausts it fails
//! (`MDB_MAP_FULL`), and [`Map::full`] decides what the failure means: if the map may still
//! grow for a transaction of that purpose, the error is `MapFull` and a growth is due before
//! the next write transaction ([`Map::before_write`]), so redoing the failed one succeeds;
//! otherwise it is `LimitReached`. A growth step doubles the map, by at least 64 MiB and at
//! most 1 GiB, up to the cap of the transaction's purpose: ordinary writes up to the maximum
//! less the reserve, freeing transactions up to the maximum, where the maximum is
//! `storage.max_map_size` or, if smaller, the disk's free space plus the data file's size.
//! The map also grows before a write whenever less than [`HEADROOM`] is left past the last
//! page in use (pages there are certainly free), up to the ordinary cap: so below the cap a
//! transaction under 32 MiB never fails at all, and `MapFull` is for larger ones.
//!
//! The reserve is kept by the map size itself, so LMDB enforces it: ordinary writes run in a
//! map no larger than their cap. A freeing transaction that begins while the map is at that
//! cap first widens it to the whole maximum; the next ordinary write narrows it back (LMDB
//! never narrows a map below the pages in use, so ordinary writes then reuse only pages that
//! deletes freed). Every resize takes the environment's [`Gate`] alone and is logged.
//!
//! LMDB lets a transaction reuse pages freed by commits before the last one only (a reader
//! may still see the last one's parent), so right after a commit that freed pages (a big
//! delete), the next write may find the map full although pages are free. So a transaction
//! refused at its cap right after a commit fails with `MapFull` too, and a *settling*
//! commit (one that changes nothing visible) runs before the next write: the retried write
//! then reuses those pages. Only a write refused with no commit since the last settling one
//! is `LimitReached`.

use std::path::{Path, PathBuf};

use ::lmdb::Environment;
use parking_lot::Mutex;

use super::gate::Gate;
use super::room::available_bytes;
use crate::{Limits, Purpose, StorageError};

/// The least a growth step adds.
const MIN_STEP: u64 = 64 << 20;

/// The most a growth step adds.
const MAX_STEP: u64 = 1 << 30;

/// The room past the last page in use below which the map grows before a write begins, so
/// that a transaction smaller than this never finds the map full below the cap.
const HEADROOM: u64 = 32 << 20;

/// An environment's map size and its policy.
#[derive(Debug)]
pub(super) struct Map {
    limits: Limits,
    dir: PathBuf,
    page: u64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// The map size in effect, in bytes.
    size: u64,
    /// A transaction exhausted the map and it may grow: grow before the next write.
    grow: bool,
    /// The map is wider than ordinary writes may use: narrow it before the next one.
    wide: bool,
    /// A transaction committed since the last settling commit (see the module doc).
    committed: bool,
    /// A settling commit is due before the next write.
    settle: bool,
}

impl Map {
    /// The policy of `env`, open in `dir` with its initial map size.
    pub(super) fn new(env: &Environment, dir: &Path, limits: Limits) -> Map {
        let page = env.stat().map_or(4096, |stat| u64::from(stat.page_size()));
        let size = env.info().map_or(0, |info| info.map_size() as u64);
        let map = Map {
            limits,
            dir: dir.to_path_buf(),
            page,
            state: Mutex::new(State {
                size,
                grow: false,
                wide: false,
                committed: false,
                settle: false,
            }),
        };
        map.state.lock().wide = size > map.cap(Purpose::Ordinary);
        map
    }

    /// The map size in effect, in bytes.
    pub(super) fn size(&self) -> u64 {
        self.state.lock().size
    }

    /// The map's size as the store's usage shows it: the size in effect, or, once that is
    /// the ordinary cap (the reserve kept back by the map size itself, see the module doc),
    /// the whole maximum a freeing transaction widens it to. So a map configured at the
    /// maximum shows as configured, not as the maximum less the reserve.
    pub(super) fn shown_size(&self) -> u64 {
        let size = self.size();
        if size >= self.cap(Purpose::Ordinary) {
            size.max(self.cap(Purpose::Freeing))
        } else {
            size
        }
    }

    /// The bounds this map was opened with.
    pub(super) fn limits(&self) -> Limits {
        self.limits
    }

    /// The directory of the environment.
    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The most the store may hold now: the configured maximum, or the disk's free space
    /// plus the data file's size if that is less; in whole pages.
    pub(super) fn max_now(&self) -> u64 {
        let file = std::fs::metadata(self.data_file()).map_or(0, |meta| meta.len());
        let disk = available_bytes(&self.dir).map_or(u64::MAX, |free| free.saturating_add(file));
        let max = self.limits.max().min(disk);
        max - max % self.page
    }

    /// The most a transaction of `purpose` may fill the map to now.
    fn cap(&self, purpose: Purpose) -> u64 {
        let cap = self.limits.cap(purpose, self.max_now());
        cap - cap % self.page
    }

    pub(super) fn data_file(&self) -> PathBuf {
        self.dir.join("data.mdb")
    }

    /// What a write transaction of `purpose` that exhausted the map fails with: `MapFull`
    /// if the map may still grow for it (a growth due) or a transaction committed since the
    /// last settling commit (a settling commit due), else `LimitReached`.
    pub(super) fn full(&self, purpose: Purpose) -> StorageError {
        let cap = self.cap(purpose);
        let mut state = self.state.lock();
        if state.size < cap {
            state.grow = true;
        } else if state.committed {
            state.settle = true;
        } else {
            return purpose.limit_reached(cap, self.limits.reserve());
        }
        StorageError::MapFull {
            map_size: state.size,
        }
    }

    /// Notes a commit: `settling` says whether it was a settling commit.
    pub(super) fn committed(&self, settling: bool) {
        self.state.lock().committed = !settling;
    }

    /// Whether a settling commit is due, clearing the request.
    pub(super) fn take_settle(&self) -> bool {
        std::mem::take(&mut self.state.lock().settle)
    }

    /// Resizes the map as a write transaction of `purpose` about to begin needs (see the
    /// module doc); call it holding no transaction of this environment. A resize that
    /// cannot take the gate in time is skipped (and logged): the transaction runs in the
    /// map as it is.
    pub(super) fn before_write(&self, env: &Environment, gate: &Gate, purpose: Purpose) {
        let low = self.headroom_low(env, gate);
        if self.target(&self.state.lock(), purpose, low).is_none() {
            return;
        }
        let Some(_alone) = gate.exclusive() else {
            tracing::warn!(
                path = %self.dir.display(),
                held_here = gate.held_here(),
                "LMDB map resize skipped: transactions in flight did not end in time"
            );
            return;
        };
        let mut state = self.state.lock();
        if let Some(target) = self.target(&state, purpose, low) {
            self.set(env, &mut state, target, purpose);
        }
    }

    /// Whether less than [`HEADROOM`] is left past the last page in use. (LMDB's info reads
    /// the meta pages in the map, so under a pass.)
    fn headroom_low(&self, env: &Environment, gate: &Gate) -> bool {
        let _pass = gate.enter();
        let Ok(info) = env.info() else {
            return false;
        };
        let used = (info.last_pgno() as u64 + 1) * self.page;
        (info.map_size() as u64).saturating_sub(used) < HEADROOM
    }

    /// Takes the map size another process set (after `MDB_MAP_RESIZED`); call it holding no
    /// transaction of this environment.
    pub(super) fn adopt(&self, env: &Environment, gate: &Gate) {
        if let Some(_alone) = gate.exclusive() {
            self.set(env, &mut self.state.lock(), 0, Purpose::Freeing);
        }
    }

    /// The size to set before a write of `purpose`, if any; `low`: the headroom is low.
    fn target(&self, state: &State, purpose: Purpose, low: bool) -> Option<u64> {
        match purpose {
            Purpose::Ordinary if state.wide => Some(self.cap(Purpose::Ordinary)),
            Purpose::Freeing if state.size >= self.cap(Purpose::Ordinary) => {
                let max = self.cap(Purpose::Freeing);
                (max > state.size).then_some(max)
            }
            _ if state.grow || low => {
                // A low headroom alone grows the map for ordinary writes only: the reserve
                // is for transactions that were refused.
                let cap = self.cap(if state.grow {
                    purpose
                } else {
                    Purpose::Ordinary
                });
                let grown = state.size + state.size.clamp(MIN_STEP, MAX_STEP);
                let target = grown.min(cap);
                (target > state.size).then_some(target)
            }
            _ => None,
        }
    }

    /// Sets the map to `target` bytes (0: the size in the environment's meta page) for a
    /// write of `purpose`, with the gate held alone, and logs the change. After an ordinary
    /// write's resize the map is as narrow as LMDB lets it be (never below the pages in
    /// use), so it is not narrowed again until a freeing transaction widens it.
    fn set(&self, env: &Environment, state: &mut State, target: u64, purpose: Purpose) {
        let applied = usize::try_from(target)
            .map_err(|_| ::lmdb::Error::Invalid)
            .and_then(|target| env.set_map_size(target))
            .and_then(|()| env.info());
        let info = match applied {
            Ok(info) => info,
            Err(err) => {
                tracing::warn!(path = %self.dir.display(), target, %err, "LMDB map resize failed");
                return;
            }
        };
        let (old, new) = (state.size, info.map_size() as u64);
        if new > old {
            state.grow = false;
        }
        state.size = new;
        state.wide = purpose == Purpose::Freeing && new > self.cap(Purpose::Ordinary);
        tracing::info!(
            path = %self.dir.display(),
            old_bytes = old,
            new_bytes = new,
            max_bytes = self.limits.max(),
            "LMDB map resized"
        );
    }
}
