//! History garbage collection inside one database: removing what every member that counts
//! has seen, in bounded steps, each one short write transaction.
//!
//! The node decides *what* may go (`node::collect` builds a [`Cut`] from its members'
//! knowledge reports, `store::members`); this module removes it. A record (device,
//! generation) of a row is collectable when the cut for that row covers it: the element-wise
//! minimum of the cuts of every shared scope covering the row (a row in a table no scope
//! shares is this node's alone: everything it has seen is collectable). Then:
//! - its log entry and index entry go (every member that counts holds it; anyone else is
//!   below the floor and catches up by state);
//! - a DAG node that is not the row's head goes with its value (no head can be a descendant
//!   of nothing, and last-writer-wins never reads an ancestor: a late sibling of it settles
//!   against the head);
//! - a head's node goes too, live or tombstone, its row head keeping what the node held
//!   besides the value (`records::HeadNode`: parents, links, HLC, the pair its entry names),
//!   so the row is one key holding its value once. Every reader of a head's node reads it there when its key is
//!   gone (`writer::load_node`). Nothing points at it any more, and nothing needs to: a later
//!   write or an applied winner replaces the row head, and with it the last trace of the old
//!   head. A tombstone head stays so (its row is not removed): a later write of the row names
//!   it as its parent, so that write descends from the delete on every node whatever the
//!   clocks say (a clock capped against a peer's future timestamp can stamp it earlier than
//!   the delete), and a member that missed the delete (restored from a backup, or back from
//!   past the horizon) settles its own version against it by last-writer-wins instead of
//!   bringing the row back. The cost: a deleted key keeps its tombstone, one key of about
//!   70 bytes, until it is written again.
//!
//! Before removing anything, a step raises the database's **collection floor** (`D z`) to
//! the cut in the same transaction, so a responder refuses (`BehindHorizon:`) an initiator
//! whose knowledge does not cover what may be gone, and a collected record arriving again
//! is known as seen (`store::apply`). The watch feed is trimmed in the same steps, as etcd
//! compacts revisions: every change whose version's DAG node is gone from its key goes. A
//! superseded version's change is covered by a later change of its row (watchers coalesce;
//! `log::read_changes` skips it). A head's change (its node moved into the row head) is the
//! row's last, so removing it raises the **feed floor** (`D f`) past its sequence in the same
//! transaction: a watch resuming from below the floor is refused (`Compacted:`), never served
//! a feed with holes; one from the floor or later, or from now, sees every change it did.

use serde::{Deserialize, Serialize};
use syncbase_storage::{Scan, WriteTxn, prefix_end};

use crate::error::{Error, Result};
use crate::genvec::{DeviceId, GenVector, Generation, Knowledge, Scope};
use crate::store::keys::{DbKeys, trailing_u64};
use crate::store::log::load_feed_floor;
use crate::store::records::{
    Change, DagNode, EntryKind, HeadNode, LogEntry, StoredHead, decode, decode_head, encode_head,
    scan_decoded,
};
use crate::store::writer::load_floor;

/// The most bytes one step removes before it ends (then the next step goes on): collecting
/// a head rewrites its row head, value included, in the same transaction, so a step over
/// large values must stay within what the store's reserve can take when it is full.
pub const STEP_BYTES: u64 = 1 << 20;

/// What collection may remove in one database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cut {
    /// Every scope the database is shared under (with declared peers, in held syncgroups),
    /// each with its stable cut: every member that counts has seen its records up to there,
    /// and this node holds everything those members had seen when they said so.
    pub shared: Knowledge,
    /// For a table no scope shares: this node's knowledge (the cut of table T is its bound
    /// for T), and its own device and generation, raised into it.
    pub unshared: Knowledge,
    pub own: (DeviceId, Generation),
    /// The lowest watch-feed sequence a live watch still reads (`node::watchers`): a row
    /// head's change from there on stays, so no live watcher is refused. None: no live watch.
    pub feed_keep: Option<u64>,
}

impl Cut {
    /// The cut of table `table`, which no scope shares: everything this node has seen there.
    fn unshared_table(&self, table: &str) -> GenVector {
        let mut cut = self.unshared.bound_for(&Scope::new(table, ""));
        cut.raise(self.own.0, self.own.1);
        cut
    }
}

impl Cut {
    /// The generations collectable in row (`table`, `row`); None if the row may keep all
    /// its history (a table shared under another prefix only).
    pub fn for_row(&self, table: &str, row: &str) -> Option<GenVector> {
        let mut covering = self
            .shared
            .iter()
            .filter(|(scope, _)| scope.covers(table, row))
            .map(|(_, vector)| vector);
        match covering.next() {
            Some(first) => Some(covering.fold(first.clone(), |cut, vector| cut.meet(vector))),
            None if self.shared.iter().any(|(scope, _)| scope.table == table) => None,
            None => Some(self.unshared_table(table)),
        }
    }
}

/// What collection removed (added up over steps).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Collected {
    /// Log entries removed (writes and resolutions).
    pub records: u64,
    /// DAG nodes removed (superseded versions, tombstones included; not a head's, whose row
    /// head keeps it).
    pub versions: u64,
    /// Of those, superseded tombstones (a deleted row written again; a tombstone head stays).
    pub tombstones: u64,
    /// Watch-feed changes removed.
    pub changes: u64,
    /// Key and value bytes removed.
    pub bytes: u64,
}

impl Collected {
    pub fn add(&mut self, other: &Collected) {
        self.records += other.records;
        self.versions += other.versions;
        self.tombstones += other.tombstones;
        self.changes += other.changes;
        self.bytes += other.bytes;
    }
}

/// Where a collection pass stands between steps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    /// The next log position to examine.
    pub log: u64,
    /// The next watch-feed sequence to examine.
    pub feed: u64,
    /// Whether both reached their end.
    pub done: bool,
}

/// One step of a pass: raises the floor to `cut`, then examines up to `max_entries` log
/// entries and watch-feed changes from `cursor`, removing what the cut covers, in `txn`
/// (which the caller commits). Returns where the next step starts.
pub fn step(
    txn: &mut dyn WriteTxn,
    keys: &DbKeys,
    cut: &Cut,
    cursor: Cursor,
    max_entries: usize,
    collected: &mut Collected,
) -> Result<Cursor> {
    // Records of a device left at an epoch above its safe point stay: their pairs may name
    // other records elsewhere, which peers will send again (`store::notice`).
    let caps = crate::store::notice::caps(&*txn, keys)?;
    let mut cut = cut.clone();
    crate::store::notice::cap(&caps, &mut cut.shared);
    crate::store::notice::cap(&caps, &mut cut.unshared);
    let cut = &cut;
    raise_floor(txn, keys, &cut.shared)?;
    let (entries, mut log_done) = read_entries(txn, keys, cursor.log, max_entries)?;
    let mut next = Cursor {
        log: entries
            .last()
            .map_or(cursor.log, |(position, _)| position + 1),
        ..cursor
    };
    let start = collected.bytes;
    for (position, entry) in entries {
        collect_entry(txn, keys, cut, position, &entry, collected)?;
        if collected.bytes - start >= STEP_BYTES {
            // Large values: the rest waits for the next step (and transaction).
            next.log = position + 1;
            log_done = false;
            break;
        }
    }
    let feed_done = if log_done {
        let (feed, done) = trim_feed(txn, keys, cut, cursor.feed, max_entries, collected)?;
        next.feed = feed;
        done
    } else {
        false
    };
    next.done = log_done && feed_done;
    Ok(next)
}

/// Raises the stored floor to cover `floor` (writes only if it changes).
fn raise_floor(txn: &mut dyn WriteTxn, keys: &DbKeys, floor: &Knowledge) -> Result<()> {
    if floor.is_empty() {
        return Ok(());
    }
    let stored = load_floor(&*txn, keys)?;
    let mut raised = stored.clone();
    raised.merge_response(floor);
    if raised != stored {
        txn.put(&keys.floor(), &crate::store::records::encode(&raised)?)?;
    }
    Ok(())
}

/// Up to `max` log entries from `from`, and whether they reach the log's end.
fn read_entries(
    txn: &dyn WriteTxn,
    keys: &DbKeys,
    from: u64,
    max: usize,
) -> Result<(Vec<(u64, LogEntry)>, bool)> {
    let end = prefix_end(&keys.log_prefix());
    let (entries, done) = scan_decoded(txn, &keys.log(from), end.as_deref(), max, "log entry")?;
    let entries = entries
        .into_iter()
        .map(|(key, entry)| {
            let position =
                trailing_u64(&key).ok_or_else(|| Error::Internal("corrupt log key".into()))?;
            Ok((position, entry))
        })
        .collect::<Result<_>>()?;
    Ok((entries, done))
}

/// Removes the entry at `position` and what it alone kept, if the cut covers it.
fn collect_entry(
    txn: &mut dyn WriteTxn,
    keys: &DbKeys,
    cut: &Cut,
    position: u64,
    entry: &LogEntry,
    collected: &mut Collected,
) -> Result<()> {
    let (table, row) = (entry.table.as_str(), entry.row.as_str());
    let Some(row_cut) = cut.for_row(table, row) else {
        return Ok(());
    };
    if entry.generation > row_cut.get(entry.device) {
        return Ok(());
    }
    if !cut.shared.iter().any(|(scope, _)| scope.table == table) {
        let mut floor = Knowledge::new();
        floor.insert(Scope::new(table, ""), cut.unshared_table(table));
        raise_floor(txn, keys, &floor)?;
    }
    if entry.kind == EntryKind::Node {
        collect_version(txn, keys, entry, collected)?;
    }
    remove(txn, &keys.log(position), collected)?;
    let index = keys.index(entry.device, entry.generation);
    if txn.get(&index)?.as_deref() == Some(&position.to_be_bytes()[..]) {
        remove(txn, &index, collected)?;
    }
    collected.records += 1;
    Ok(())
}

/// Removes the DAG node `entry` added; a head's node, live or tombstone, is kept by its row
/// head ([`collapse_head`]). The entry may then go.
fn collect_version(
    txn: &mut dyn WriteTxn,
    keys: &DbKeys,
    entry: &LogEntry,
    collected: &mut Collected,
) -> Result<()> {
    let (table, row) = (entry.table.as_str(), entry.row.as_str());
    let row_key = keys.row(table, row);
    let head = txn.get(&row_key)?;
    let head = head.as_deref().map(decode_head).transpose()?;
    if let Some(stored) = head.filter(|stored| stored.head.version == entry.version) {
        // Moved into the row head, not removed: not counted as a version.
        collapse_head(txn, keys, entry, stored, collected)?;
        remove(txn, &keys.node(table, row, entry.version), collected)?;
        return Ok(());
    }
    let node_key = keys.node(table, row, entry.version);
    if let Some(bytes) = txn.get(&node_key)? {
        let node: DagNode = decode(&bytes, "DAG node")?;
        remove(txn, &node_key, collected)?;
        collected.versions += 1;
        if node.deleted {
            collected.tombstones += 1;
        }
    }
    Ok(())
}

/// Makes the row head of a head (live or tombstone) whose record is collected keep what its
/// DAG node holds besides the value (parents, links, HLC, and the pair its log entry names), so its node,
/// log entry and index entry can go and its value is stored once. The write paths write a
/// plain row head (nothing copied on every write); this is its one rewrite. A head that keeps
/// the node already, or whose node is gone (an entry logged again for it), stays as it is.
fn collapse_head(
    txn: &mut dyn WriteTxn,
    keys: &DbKeys,
    entry: &LogEntry,
    stored: StoredHead,
    collected: &mut Collected,
) -> Result<()> {
    let (table, row) = (entry.table.as_str(), entry.row.as_str());
    let Some(bytes) = txn.get(&keys.node(table, row, entry.version))? else {
        return Ok(());
    };
    let node: DagNode = decode(&bytes, "DAG node")?;
    let kept = HeadNode::of(&node, entry.device, entry.generation);
    if stored.node.as_ref() == Some(&kept) {
        return Ok(());
    }
    let before = encode_head(&stored.head, stored.node.as_ref())?.len();
    let bytes = encode_head(&stored.head, Some(&kept))?;
    txn.put(&keys.row(table, row), &bytes)?;
    collected.bytes = collected
        .bytes
        .saturating_sub(bytes.len().saturating_sub(before) as u64);
    Ok(())
}

/// Deletes `key`, counting its bytes; whether it existed.
fn remove(txn: &mut dyn WriteTxn, key: &[u8], collected: &mut Collected) -> Result<bool> {
    let Some(value) = txn.get(key)? else {
        return Ok(false);
    };
    txn.delete(key)?;
    collected.bytes += (key.len() + value.len()) as u64;
    Ok(true)
}

/// Removes up to `max` watch-feed changes from `from` that name a version collected here
/// ([`collected_change`]), raising the feed floor past every removed change of a row's head
/// (none at or after `cut.feed_keep`, which a live watch has yet to read); returns where to
/// go on and whether the feed's end was reached.
fn trim_feed(
    txn: &mut dyn WriteTxn,
    keys: &DbKeys,
    cut: &Cut,
    from: u64,
    max: usize,
    collected: &mut Collected,
) -> Result<(u64, bool)> {
    let end = prefix_end(&keys.change_prefix());
    let mut changes = Vec::new();
    let mut more = false;
    txn.scan(&keys.change(from), end.as_deref(), &mut |key, value| {
        if changes.len() == max {
            more = true;
            return Ok(Scan::Stop);
        }
        changes.push((key.to_vec(), value.to_vec()));
        Ok(Scan::Continue)
    })?;
    let next = changes
        .last()
        .and_then(|(key, _)| trailing_u64(key))
        .map_or(from, |sequence| sequence + 1);
    let mut floor = load_feed_floor(&*txn, keys)?;
    for (key, value) in changes {
        let change: Change = decode(&value, "change")?;
        let Some(removed) = collected_change(txn, keys, &change)? else {
            continue;
        };
        let sequence =
            trailing_u64(&key).ok_or_else(|| Error::Internal("corrupt watch feed key".into()))?;
        if removed == Removed::Head {
            if cut.feed_keep.is_some_and(|keep| sequence >= keep) {
                continue;
            }
            floor = floor.max(sequence + 1);
        }
        remove(txn, &key, collected)?;
        collected.changes += 1;
    }
    raise_feed_floor(txn, keys, floor)?;
    Ok((next, !more))
}

/// Why a watch-feed change may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Removed {
    /// Its version was superseded and collected: a later change of its row follows.
    Superseded,
    /// It names its row's head, whose node moved into the row head (or a row gone): the
    /// row's last change, so the feed floor must pass it.
    Head,
}

/// Whether a watch-feed change names a version whose DAG node is gone from its own key
/// (collected), and why; None while the node is still there.
fn collected_change(txn: &dyn WriteTxn, keys: &DbKeys, change: &Change) -> Result<Option<Removed>> {
    let (table, row) = (change.table.as_str(), change.row.as_str());
    if txn.get(&keys.node(table, row, change.version))?.is_some() {
        return Ok(None);
    }
    let head = txn.get(&keys.row(table, row))?;
    let head = head.as_deref().map(decode_head).transpose()?;
    Ok(Some(match head {
        Some(stored) if stored.head.version != change.version => Removed::Superseded,
        _ => Removed::Head,
    }))
}

/// Stores the feed floor `floor` if it is above the stored one.
fn raise_feed_floor(txn: &mut dyn WriteTxn, keys: &DbKeys, floor: u64) -> Result<()> {
    if floor > load_feed_floor(&*txn, keys)? {
        txn.put(&keys.feed_floor(), &crate::store::records::encode(&floor)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector(entries: &[(u64, u64)]) -> GenVector {
        entries
            .iter()
            .map(|(device, generation)| (DeviceId(*device), Generation::new(*generation)))
            .collect()
    }

    #[test]
    fn a_row_under_two_shared_scopes_is_cut_at_what_both_cover() {
        let mut cut = Cut::default();
        cut.shared
            .insert(Scope::new("t", ""), vector(&[(1, 9), (2, 9)]));
        cut.shared.insert(Scope::new("t", "a"), vector(&[(1, 4)]));
        assert_eq!(cut.for_row("t", "ab"), Some(vector(&[(1, 4)])));
        assert_eq!(cut.for_row("t", "b"), Some(vector(&[(1, 9), (2, 9)])));
    }

    #[test]
    fn a_row_outside_the_shared_prefixes_of_its_table_keeps_its_history() {
        let mut cut = Cut {
            own: (DeviceId(1), Generation::new(50)),
            ..Cut::default()
        };
        cut.unshared
            .insert(Scope::new("other", ""), vector(&[(2, 7)]));
        cut.shared.insert(Scope::new("t", "a"), vector(&[(1, 4)]));
        assert_eq!(cut.for_row("t", "b"), None);
        assert_eq!(cut.for_row("other", "b"), Some(vector(&[(1, 50), (2, 7)])));
        assert_eq!(
            cut.for_row("third", "b"),
            Some(vector(&[(1, 50)])),
            "only its own records: what others wrote there it never knew"
        );
    }
}
