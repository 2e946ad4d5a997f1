//! Epochs of this node's device id: a (device id, generation) pair names one record, forever.
//! When the node learns that its device's generations may name other records elsewhere (its
//! store was restored from a backup or copied), it moves to a fresh random device id, an
//! epoch, in one transaction: records of the old device stay valid; its records above the
//! *safe point* (the generations that may name other records on peers) are logged again under
//! the new device and their old log entries dropped; and the knowledge of the old device is
//! set to the safe point in every scope, so the peers' records for those generations are
//! fetched like any other device's. The history of epochs is kept (key `i 0xfe epochs`).
//!
//! Also the *mark* of a record: its generation and a digest of what it is (row, version,
//! kind), which a responder reports for the initiator's device at the initiator's *mark
//! points* (its first generation after each of its last opens, noted here at open) so the
//! initiator can tell that a peer holds another record under one of its own pairs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use syncbase_storage::{ReadTxn, Scan, WriteTxn};

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::genvec::{DeviceId, Generation};
use crate::store::keys::{self, DbKeys};
use crate::store::notice::{self, Notice};
use crate::store::records::{EntryKind, LogEntry, decode, encode};
use crate::store::writer::DbWriter;

/// One move to a fresh device id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Epoch {
    /// The device id used from then on.
    pub device: DeviceId,
    /// The device id it replaced (whose records stay valid).
    pub replaced: DeviceId,
    /// Why: what the node learned.
    pub reason: String,
    /// When (Unix nanoseconds).
    pub at_nanos: i64,
    /// Own records logged again under the new device (over every database).
    pub relogged: u64,
}

impl std::fmt::Display for Epoch {
    /// One line: when, the new and old device ids, how many records were logged again, why.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "at unix time {}: device {:016x} replaced {:016x} ({} own records logged again): {}",
            self.at_nanos / 1_000_000_000,
            self.device.0,
            self.replaced.0,
            self.relogged,
            self.reason
        )
    }
}

/// What names one record of a device: its generation and a digest of the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    pub generation: Generation,
    pub digest: u64,
}

/// The digest of a log entry's record: its row, version and kind (not who sent it), equal on
/// every node holding the same record.
pub fn digest(entry: &LogEntry) -> Result<u64> {
    let what = (&entry.table, &entry.row, entry.version, &entry.kind);
    Ok(xxhash_rust::xxh3::xxh3_64(&encode(&what)?))
}

/// The mark of `device`'s highest generation logged here, if any (kept by `DbWriter`).
pub fn last_mark(txn: &dyn ReadTxn, keys: &DbKeys, device: DeviceId) -> Result<Option<Mark>> {
    txn.get(&keys.mark(device))?
        .map(|bytes| decode(&bytes, "record mark"))
        .transpose()
}

/// The mark of (`device`, `generation`) as logged here, if it is.
pub fn mark_at(
    txn: &dyn ReadTxn,
    keys: &DbKeys,
    device: DeviceId,
    generation: Generation,
) -> Result<Option<Mark>> {
    let Some(position) = txn.get(&keys.index(device, generation))? else {
        return Ok(None);
    };
    let position = u64::from_be_bytes(
        position
            .as_slice()
            .try_into()
            .map_err(|_| Error::Internal("corrupt log index entry".into()))?,
    );
    entry_mark(txn, keys, position, generation)
}

/// The mark of `device`'s first record logged here at or above `generation`, if any: what a
/// responder reports for an initiator's mark point. Not only the record at the point: a
/// responder may lack that one (a scope it does not share) and hold a later one the
/// initiator made again after a restore, which must show too. When collection removed every
/// such entry, the device's last mark (kept, `D m`) if it is at or above the point: a
/// restored initiator that made as many records again as it lost sees the clash there.
pub fn mark_from(
    txn: &dyn ReadTxn,
    keys: &DbKeys,
    device: DeviceId,
    generation: Generation,
) -> Result<Option<Mark>> {
    let start = keys.index(device, generation);
    let end = syncbase_storage::prefix_end(
        &keys.index(device, Generation::NONE)[..keys.index_prefix().len() + 8],
    );
    let mut first = None;
    txn.scan(&start, end.as_deref(), &mut |key, value| {
        first = Some((key.to_vec(), value.to_vec()));
        Ok(Scan::Stop)
    })?;
    let Some((key, value)) = first else {
        let last = last_mark(txn, keys, device)?;
        return Ok(last.filter(|mark| mark.generation >= generation));
    };
    let generation = crate::store::keys::trailing_u64(&key)
        .map(Generation::new)
        .ok_or_else(|| Error::Internal("corrupt log index key".into()))?;
    let position = u64::from_be_bytes(
        value
            .as_slice()
            .try_into()
            .map_err(|_| Error::Internal("corrupt log index entry".into()))?,
    );
    entry_mark(txn, keys, position, generation)
}

fn entry_mark(
    txn: &dyn ReadTxn,
    keys: &DbKeys,
    position: u64,
    generation: Generation,
) -> Result<Option<Mark>> {
    let Some(bytes) = txn.get(&keys.log(position))? else {
        return Ok(None);
    };
    let entry: LogEntry = decode(&bytes, "log entry")?;
    Ok(Some(Mark {
        generation,
        digest: digest(&entry)?,
    }))
}

/// The epochs this store went through, oldest first.
pub fn history(txn: &dyn ReadTxn) -> Result<Vec<Epoch>> {
    match txn.get(&keys::epochs())? {
        Some(bytes) => decode(&bytes, "epoch history"),
        None => Ok(Vec::new()),
    }
}

/// Moves from device `old` to `new` inside `txn`: per database, re-logs `old`'s records above
/// `safe(db, own generation)` under `new`, sets the knowledge of `old` to that safe point and
/// announces (`old`, safe point) to peers (`store::notice`); stores the new device id and
/// appends the epoch to the history.
pub fn switch(
    txn: &mut dyn WriteTxn,
    clock: &Clock,
    (old, new): (DeviceId, DeviceId),
    safe: &dyn Fn(&str, Generation) -> Generation,
    reason: String,
    at_nanos: i64,
) -> Result<Epoch> {
    let mut relogged = 0;
    for db in databases(&*txn)? {
        let mut writer = DbWriter::new(&mut *txn, &db)?;
        let safe = safe(&db, writer.own_generation());
        relogged += relog(&mut writer, old, new, safe)?;
        writer.forget_mark(old)?;
        lower_knowledge(&mut writer, old, safe)?;
        // The new device's generations start here; none before can clash.
        let next = writer.own_generation().next();
        writer.finish(clock.last())?;
        let keys = DbKeys::new(&db);
        txn.put(&keys.mark_points(), &encode(&vec![next])?)?;
        notice::announce(&mut *txn, &keys, Notice { old, safe })?;
    }
    let epoch = Epoch {
        device: new,
        replaced: old,
        reason,
        at_nanos,
        relogged,
    };
    let mut epochs = history(&*txn)?;
    epochs.push(epoch.clone());
    txn.put(&keys::epochs(), &encode(&epochs)?)?;
    txn.put(&keys::device_id(), &encode(&new)?)?;
    Ok(epoch)
}

/// Logs `old`'s records above `safe` again under `new` (next generations, same versions), in
/// place of their old log entries (same positions, so the log keeps every write after its
/// parent and every resolution after the writes it names); how many.
fn relog(db: &mut DbWriter<'_>, old: DeviceId, new: DeviceId, safe: Generation) -> Result<u64> {
    let generations = db.generations_after(old, safe)?;
    for generation in &generations {
        let Some(entry) = db.relog_record(old, *generation, new)? else {
            continue;
        };
        if entry.kind == EntryKind::Node {
            // Collected under another pair of the same version (`store::log` skips such an
            // entry): nothing to carry over.
            let Some(mut node) = db.node(&entry.table, &entry.row, entry.version)? else {
                continue;
            };
            node.device = new;
            node.generation = entry.generation;
            db.put_node(&entry.table, &entry.row, entry.version, &node)?;
        }
    }
    Ok(generations.len() as u64)
}

/// Sets what every stored scope knows of `old` to `safe`: this node holds its own records up
/// to there, and must fetch whatever peers hold above it.
fn lower_knowledge(db: &mut DbWriter<'_>, old: DeviceId, safe: Generation) -> Result<()> {
    let mut knowledge = db.knowledge()?;
    let scopes: Vec<_> = knowledge.iter().map(|(scope, _)| scope.clone()).collect();
    for scope in scopes {
        let mut vector = knowledge.get(&scope).cloned().unwrap_or_default();
        vector.set(old, safe);
        knowledge.insert(scope, vector);
    }
    db.set_knowledge(&knowledge)
}

/// Every database in the catalog.
fn databases(txn: &dyn ReadTxn) -> Result<Vec<String>> {
    let prefix = keys::catalog_prefix();
    let mut names = Vec::new();
    txn.scan_prefix(&prefix, &mut |key, _| {
        names.push(String::from_utf8_lossy(&key[prefix.len()..]).into_owned());
        Ok(Scan::Continue)
    })?;
    Ok(names)
}

/// How many opens' first generations a database keeps as mark points: as many as a request
/// may name (`sync::responder::MAX_MARKS`). A restored store that opens and writes this many
/// times before it first syncs is past detection by marks (see ARCHITECTURE.md, "Epochs",
/// "Not covered").
pub const MARK_POINTS: usize = 64;

/// A database's mark points: the first generation of this device written after each of the
/// last [`MARK_POINTS`] opens (a store restored from a copy diverges from what peers hold
/// from one of them on), oldest first.
pub fn mark_points(txn: &dyn ReadTxn, keys: &DbKeys) -> Result<Vec<Generation>> {
    match txn.get(&keys.mark_points())? {
        Some(bytes) => decode(&bytes, "mark points"),
        None => Ok(Vec::new()),
    }
}

/// At a database's creation: its first mark point is its next generation (1 for a new one),
/// unless it has points already. A store opens before it holds any database, so without this
/// a database's points would start at the next open, and a copy taken before that open
/// would have none below the generations a restore from it reuses.
pub fn note_created(txn: &mut dyn WriteTxn, db: &str) -> Result<()> {
    let keys = DbKeys::new(db);
    if mark_points(&*txn, &keys)?.is_empty() {
        let next = crate::store::writer::load_state(&*txn, &keys)?.next_generation;
        txn.put(&keys.mark_points(), &encode(&vec![next])?)?;
    }
    Ok(())
}

/// Each database's lowest mark point (databases without any are left out).
pub fn lowest_mark_points(txn: &dyn ReadTxn) -> Result<BTreeMap<String, Generation>> {
    let mut lowest = BTreeMap::new();
    for db in databases(txn)? {
        if let Some(point) = mark_points(txn, &DbKeys::new(&db))?.first() {
            lowest.insert(db, *point);
        }
    }
    Ok(lowest)
}

/// At open: adds each database's next generation to its mark points.
pub fn note_open(txn: &mut dyn WriteTxn) -> Result<()> {
    for db in databases(&*txn)? {
        let keys = DbKeys::new(&db);
        let next = crate::store::writer::load_state(&*txn, &keys)?.next_generation;
        let mut points = mark_points(&*txn, &keys)?;
        if points.last() != Some(&next) {
            points.retain(|point| *point < next);
            points.push(next);
            let excess = points.len().saturating_sub(MARK_POINTS);
            points.drain(..excess);
            txn.put(&keys.mark_points(), &encode(&points)?)?;
        }
    }
    Ok(())
}

/// The generation each database's own counter stood at (its highest own generation).
pub fn own_generations(txn: &dyn ReadTxn) -> Result<BTreeMap<String, Generation>> {
    let mut generations = BTreeMap::new();
    for db in databases(txn)? {
        let state = crate::store::writer::load_state(txn, &DbKeys::new(&db))?;
        generations.insert(db, state.own_generation());
    }
    Ok(generations)
}
