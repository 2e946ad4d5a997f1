//! Epochs, the node's side (the store's side is `store::epoch`): starting one when the node
//! learns its device's generations may name other records elsewhere, logging it and relinking
//! every peer, and the *run marker* that catches a restored store at open.
//!
//! The run marker (`store.marker` in the data directory, outside the storage directory) holds
//! the device id and each database's own generation, and whether the run that wrote it shut
//! down cleanly. It is written at open (not clean) and after a clean shutdown (clean). At
//! open, a marker naming another device, one from a run that did not shut down cleanly, or one
//! recording a database at a higher own generation than the store holds means the store is
//! not the one the last run left (a restore of the storage directory, a crash whose last
//! writes a restore may have replaced): the node starts an epoch before it accepts any write.
//! No marker (a new directory, or one from before markers) starts none; a clean restart starts
//! none, since every epoch adds an entry to the generation vectors that mention this node.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::Node;
use crate::error::Result;
use crate::genvec::{DeviceId, Generation};
use crate::names::DbName;
use crate::store::{Epoch, Store};

/// The marker's file name in the data directory.
pub const MARKER_FILE: &str = "store.marker";

/// What the last run left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Marker {
    /// The device id, as 16 hex digits.
    device: String,
    clean: bool,
    /// Database -> its own generation.
    generations: BTreeMap<String, Generation>,
}

impl Marker {
    fn of(store: &Store, clean: bool) -> Result<Marker> {
        Ok(Marker {
            device: format!("{:016x}", store.device().0),
            clean,
            generations: store.own_generations()?,
        })
    }
}

/// Why the store is not the one the last run left, if it is not.
fn mismatch(marker: &Marker, now: &Marker) -> Option<String> {
    if marker.device != now.device {
        return Some(format!(
            "the store's device id {} is not {}, the one this data directory last ran with: \
             the store was restored or copied",
            now.device, marker.device
        ));
    }
    if !marker.clean {
        return Some(
            "the last run did not shut down cleanly: its last writes may be missing from a \
             restored store"
                .to_owned(),
        );
    }
    marker.generations.iter().find_map(|(db, last)| {
        let held = now.generations.get(db).copied().unwrap_or_default();
        (held < *last).then(|| {
            format!(
                "database {db:?} holds generation {held} of this device, which had made {last} \
                 by the last clean shutdown: the store was restored from a backup"
            )
        })
    })
}

/// A store that has written records but comes with no marker was moved here from another
/// data directory (a copy of `lmdb/` into a fresh one, which also gets a fresh identity): its
/// original may still be writing under the same device. (A data directory from before markers
/// pays one epoch once.)
fn unmarked(now: &Marker) -> Option<String> {
    let written = now
        .generations
        .values()
        .any(|generation| !generation.is_none());
    written.then(|| {
        "the store has written records but this data directory has no run marker: the store \
         was copied or moved here"
            .to_owned()
    })
}

/// At open: compares the marker with the store, starts an epoch if they disagree, and writes
/// the marker of this run (not clean yet).
pub fn check_marker(dir: &Path, store: &Store) -> anyhow::Result<Option<Epoch>> {
    let path = dir.join(MARKER_FILE);
    let last = read_marker(&path)?;
    let now = Marker::of(store, false)?;
    let reason = match &last {
        Some(last) => mismatch(last, &now),
        None => unmarked(&now),
    };
    let epoch = match reason {
        Some(reason) => {
            let epoch = store.start_epoch(store.device(), reason, None)?;
            epoch.inspect(log_epoch)
        }
        None => None,
    };
    write_marker(&path, &Marker::of(store, false)?)?;
    Ok(epoch)
}

fn read_marker(path: &Path) -> anyhow::Result<Option<Marker>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(
            toml::from_str(&text).with_context(|| format!("reading {}", path.display()))?,
        )),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes the marker durably: a temporary file, synced, renamed over the old one.
fn write_marker(path: &Path, marker: &Marker) -> anyhow::Result<()> {
    let text = toml::to_string(marker).context("encoding the run marker")?;
    let temporary = path.with_extension("marker.tmp");
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&temporary)?;
        std::io::Write::write_all(&mut file, text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    };
    write().with_context(|| format!("writing {}", path.display()))
}

/// Logs an epoch (once, where it starts).
fn log_epoch(epoch: &Epoch) {
    tracing::warn!(
        old_device = format!("{:016x}", epoch.replaced.0),
        new_device = format!("{:016x}", epoch.device.0),
        relogged = epoch.relogged,
        "epoch: this node moved to a new device id ({}); records of the old one stay valid",
        epoch.reason
    );
}

impl Node {
    /// Moves this node to a fresh device id (see `store::epoch`) unless it has already left
    /// `expected`; logs it and relinks every peer, so every session starts again under the new
    /// device. `clash`: the database and generation at which a peer holds another record.
    pub async fn start_epoch(
        &self,
        expected: DeviceId,
        reason: String,
        clash: Option<(DbName, Generation)>,
    ) -> Result<Option<Epoch>> {
        let epoch = self
            .write(move |store| {
                let clash = clash.as_ref().map(|(db, generation)| (db, *generation));
                store.start_epoch(expected, reason, clash)
            })
            .await?;
        if let Some(epoch) = &epoch {
            log_epoch(epoch);
            self.peers().relink();
        }
        Ok(epoch)
    }

    /// After a clean shutdown: records in the run marker that this run ended cleanly.
    pub fn mark_clean_shutdown(&self) {
        let Some(dir) = &self.marker_dir else {
            return;
        };
        let written = Marker::of(self.store(), true)
            .map_err(anyhow::Error::from)
            .and_then(|marker| write_marker(&dir.join(MARKER_FILE), &marker));
        if let Err(error) = written {
            tracing::warn!("{error:#}");
        }
    }
}

/// Where the run marker lives: the data directory, for a durable backend; none for memory.
pub fn marker_dir(data_dir: &Path, backend: &str) -> Option<PathBuf> {
    (backend != "memory").then(|| data_dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marker(device: &str, clean: bool, generations: &[(&str, u64)]) -> Marker {
        Marker {
            device: device.to_owned(),
            clean,
            generations: generations
                .iter()
                .map(|(db, generation)| ((*db).to_owned(), Generation::new(*generation)))
                .collect(),
        }
    }

    #[test]
    fn a_clean_restart_or_later_writes_start_no_epoch() {
        let last = marker("01", true, &[("db", 3)]);
        assert_eq!(mismatch(&last, &marker("01", false, &[("db", 3)])), None);
        assert_eq!(
            mismatch(&last, &marker("01", false, &[("db", 5), ("new", 1)])),
            None
        );
    }

    #[test]
    fn a_store_behind_the_marker_another_device_or_an_unclean_run_starts_an_epoch() {
        let last = marker("01", true, &[("db", 3)]);
        let behind = mismatch(&last, &marker("01", false, &[("db", 2)])).unwrap();
        assert!(behind.contains("restored from a backup"), "{behind}");
        let gone = mismatch(&last, &marker("01", false, &[])).unwrap();
        assert!(gone.contains("holds generation 0"), "{gone}");
        let other = mismatch(&last, &marker("02", false, &[("db", 3)])).unwrap();
        assert!(other.contains("restored or copied"), "{other}");
        let unclean = marker("01", false, &[("db", 3)]);
        let crashed = mismatch(&unclean, &marker("01", false, &[("db", 3)])).unwrap();
        assert!(crashed.contains("did not shut down cleanly"), "{crashed}");
    }

    #[test]
    fn a_written_store_without_a_marker_starts_an_epoch_and_a_new_one_does_not() {
        let copied = unmarked(&marker("01", false, &[("db", 3)])).unwrap();
        assert!(copied.contains("copied or moved here"), "{copied}");
        assert_eq!(unmarked(&marker("01", false, &[])), None);
        assert_eq!(unmarked(&marker("01", false, &[("db", 0)])), None);
    }

    #[test]
    fn the_marker_round_trips_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(MARKER_FILE);
        assert_eq!(read_marker(&path).unwrap(), None);
        let written = marker("00000000000000ab", true, &[("a db", 7)]);
        write_marker(&path, &written).unwrap();
        assert_eq!(read_marker(&path).unwrap(), Some(written));
    }
}
