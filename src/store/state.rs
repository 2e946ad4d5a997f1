//! Catch-up by state, the store's side (issue 12): the row heads under a set of scopes as
//! items for set reconciliation ([`state_id`]), the responder's snapshot of them with its
//! knowledge and collection floor, the head records it sends, and the initiator's rules for
//! applying what it fetched. `sync::catchup` runs the exchange; this module owns the rules.
//!
//! With K_R the responder's knowledge and F_R its floor (from the snapshot), "h is covered by
//! K_R" when `K_R.known_gen(table, row, h.device) >= h.generation`:
//! - a. a fetched head h_R for row x: if this node has no x, or its head h_I is covered by K_R
//!   (the responder saw h_I, so h_R descends from it or won against it), h_R becomes the head
//!   (its node stored, logged under its own pair unless the index has it, a change with
//!   `from_sync`); otherwise (h_I is a write the responder never saw) h_R is grafted and the
//!   conflict settled as any page's is (`store::apply`, a link record at this node's next
//!   generation);
//! - b. a row only this node holds (its id unknown there, no fetched head for it): not covered
//!   by K_R, it is a write the responder never saw and stays (the log brings it there); covered,
//!   the responder saw it and no longer holds the row at all, which collection never does
//!   (a tombstone head stays, `store::collect`), so only a store written before tombstones
//!   stayed shows it: the row is removed here (head, DAG nodes, log and index entries, a
//!   change `deleted` `from_sync`), as the responder's state says;
//! - c. last: K_R is merged into this node's knowledge, F_R into its floor, and the resume
//!   cursor kept with the peer forgotten (its position predates the new knowledge).
//!
//! Every step is one write transaction and idempotent (a head already taken moves nothing, a
//! row already removed is absent), so an interrupted catch-up can run again.

use std::collections::{BTreeMap, BTreeSet};

use syncbase_storage::{Scan, WriteTxn};

use crate::error::{Error, Result};
use crate::genvec::{DeviceId, Knowledge, Scope};
use crate::names::DbName;
use crate::store::apply::{self, Resolution};
use crate::store::keys::{DbKeys, SEP};
use crate::store::local::Writer;
use crate::store::records::{
    Change, DagNode, EntryKind, LogEntry, LogRecord, RecordContent, RowHead, Version, decode,
};
use crate::store::resolve::Resolver;
use crate::store::resume::{self, CursorUpdate};
use crate::store::writer::{DbWriter, load_floor, load_knowledge, load_node, load_state};
use crate::store::{Store, notice, syncgroups};

/// The 32-byte id of a row head as an item of set reconciliation:
/// `blake3(table 0xfe row 0xfe version-be-bytes)`. Equal ids: the same row at the same head.
pub fn state_id(table: &str, row: &str, version: Version) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(table.as_bytes());
    hasher.update(&[SEP]);
    hasher.update(row.as_bytes());
    hasher.update(&[SEP]);
    hasher.update(&version.0.to_be_bytes());
    *hasher.finalize().as_bytes()
}

/// One row head under the scopes, tombstones included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateItem {
    pub id: [u8; 32],
    pub table: String,
    pub row: String,
    pub version: Version,
}

/// A responder's view for a catch-up, from one read snapshot: its row heads under the
/// scopes, its knowledge for them (with its own generation) and its collection floor.
#[derive(Debug, Clone)]
pub struct StateSnapshot {
    pub items: Vec<StateItem>,
    pub knowledge: Knowledge,
    pub floor: Knowledge,
}

/// One commit of a catch-up (see the module doc).
#[derive(Debug, Clone)]
pub enum StateStep {
    /// Rule a for one fetched page of head records, from the responder device `from`, whose
    /// snapshot knowledge is `knowledge`.
    Page {
        from: DeviceId,
        records: Vec<LogRecord>,
        knowledge: Knowledge,
    },
    /// Rules b and c: the rows only this node holds, then the responder's knowledge and
    /// floor merged, and the resume cursor kept with `peer` (its fingerprint) forgotten.
    Finish {
        peer: String,
        rows: Vec<(String, String)>,
        knowledge: Knowledge,
        floor: Knowledge,
    },
}

/// What one step did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StateApplied {
    /// Fetched heads that became their row's head (rule a).
    pub heads_taken: u64,
    /// Fetched heads grafted beside a write the responder never saw (rule a).
    pub grafted: u64,
    /// Fetched heads this node already held as head.
    pub unchanged: u64,
    /// Rows removed: deleted and collected at the responder (rule b).
    pub removed: u64,
    /// Conflicts the grafts left, as settled.
    pub resolutions: Vec<Resolution>,
}

impl StateApplied {
    /// Adds another step's counts (one catch-up's total).
    pub fn add(&mut self, other: StateApplied) {
        self.heads_taken += other.heads_taken;
        self.grafted += other.grafted;
        self.unchanged += other.unchanged;
        self.removed += other.removed;
        self.resolutions.extend(other.resolutions);
    }
}

impl Store {
    /// This node's row heads under `scopes` of `db` (each row once, tombstones included), in
    /// key order, from one read snapshot.
    pub fn state_items(&self, db: &DbName, scopes: &[Scope]) -> Result<Vec<StateItem>> {
        let txn = self.storage().read()?;
        items(txn.as_ref(), &DbKeys::new(db.as_str()), scopes)
    }

    /// [`Store::state_items`] with this node's knowledge for the scopes (`Knowledge::request_for`,
    /// its own generation included) and its collection floor for them, all from one snapshot.
    pub fn state_snapshot(&self, db: &DbName, scopes: &[Scope]) -> Result<StateSnapshot> {
        let txn = self.storage().read()?;
        let keys = DbKeys::new(db.as_str());
        let items = items(txn.as_ref(), &keys, scopes)?;
        let own = load_state(txn.as_ref(), &keys)?.own_generation();
        let knowledge =
            load_knowledge(txn.as_ref(), &keys)?.request_for(scopes, self.device(), own);
        let floor = load_floor(txn.as_ref(), &keys)?.request_for(
            scopes,
            self.device(),
            crate::genvec::Generation::NONE,
        );
        Ok(StateSnapshot {
            items,
            knowledge,
            floor,
        })
    }

    /// The current head of each row as a log record (its DAG node under the node's own
    /// device and generation), in the order given; rows absent here are skipped.
    pub fn head_records(&self, db: &DbName, rows: &[(String, String)]) -> Result<Vec<LogRecord>> {
        let txn = self.storage().read()?;
        let keys = DbKeys::new(db.as_str());
        let mut records = Vec::with_capacity(rows.len());
        for (table, row) in rows {
            let Some(bytes) = txn.get(&keys.row(table, row))? else {
                continue;
            };
            let head: RowHead = decode(&bytes, "row head")?;
            let Some(mut node) = load_node(txn.as_ref(), &keys, table, row, head.version)? else {
                return Err(Error::Internal(format!(
                    "the head of {} names a missing DAG node",
                    crate::names::row_text(table, row)
                )));
            };
            node.linked.clear();
            records.push(LogRecord {
                table: table.clone(),
                row: row.clone(),
                version: head.version,
                content: RecordContent::Node(node),
            });
        }
        Ok(records)
    }

    /// Applies one step of a catch-up by state in one write transaction (see the module doc).
    /// `allows` is given the syncgroups of `db` held here as the transaction reads them and
    /// returns whether a fetched record's writer may have written it; a page holding one it
    /// refuses commits nothing and fails with `NoAccess:` (its knowledge must not be merged
    /// over a record left out). Conflicts are settled by `resolver`.
    pub fn apply_state<A>(
        &self,
        db: &DbName,
        resolver: &dyn Resolver,
        step: &StateStep,
        allows: impl FnOnce(&[crate::syncgroup::Syncgroup]) -> A,
    ) -> Result<StateApplied>
    where
        A: Fn(&LogRecord) -> bool,
    {
        let mut txn = self.storage().write()?;
        let keys = DbKeys::new(db.as_str());
        let applied = match step {
            StateStep::Page {
                from,
                records,
                knowledge,
            } => {
                let allows = allows(&syncgroups::held(txn.as_ref(), db.as_str())?);
                if let Some(refused) = records.iter().find(|record| !allows(record)) {
                    return Err(Error::NoAccess(format!(
                        "catch-up by state: the head of {} was written by device {:016x}, \
                         which holds no Write permission here",
                        crate::names::row_text(&refused.table, &refused.row),
                        refused.device().0
                    )));
                }
                let mut writer = DbWriter::new(txn.as_mut(), db.as_str())?;
                let applied = take_page(
                    &mut writer,
                    &self.writer(),
                    resolver,
                    *from,
                    records,
                    knowledge,
                )?;
                writer.finish(self.clock().last())?;
                applied
            }
            StateStep::Finish {
                peer,
                rows,
                knowledge,
                floor,
            } => {
                let caps = notice::caps(txn.as_ref(), &keys)?;
                let mut writer = DbWriter::new(txn.as_mut(), db.as_str())?;
                let (applied, removed) = settle_rows_only_here(&mut writer, rows, knowledge)?;
                let mut mine = writer.knowledge()?;
                mine.merge_response(knowledge);
                notice::cap(&caps, &mut mine);
                writer.set_knowledge(&mine)?;
                // The knowledge now claims records superseded at the responder that this
                // node never got: like collected ones, they are under the floor.
                writer.raise_floor(floor)?;
                writer.raise_floor(knowledge)?;
                writer.finish(self.clock().last())?;
                purge_rows(txn.as_mut(), &keys, &removed)?;
                resume::update(txn.as_mut(), &keys, peer, &CursorUpdate::Forget)?;
                applied
            }
        };
        txn.commit()?;
        Ok(applied)
    }
}

/// The row heads under `scopes`, each row once, in key order.
fn items(
    txn: &dyn syncbase_storage::ReadTxn,
    keys: &DbKeys,
    scopes: &[Scope],
) -> Result<Vec<StateItem>> {
    let mut rows: BTreeMap<(String, String), Version> = BTreeMap::new();
    for scope in scopes {
        let table_prefix = keys.table_prefix(&scope.table);
        let prefix = [table_prefix.as_slice(), scope.prefix.as_bytes()].concat();
        let mut failure = None;
        txn.scan_prefix(&prefix, &mut |key, value| {
            let row = match std::str::from_utf8(&key[table_prefix.len()..]) {
                Ok(row) => row.to_owned(),
                Err(_) => {
                    failure = Some(Error::Internal(
                        "corrupt record: row key is not UTF-8".into(),
                    ));
                    return Ok(Scan::Stop);
                }
            };
            match decode::<RowHead>(value, "row head") {
                Ok(head) => {
                    rows.insert((scope.table.clone(), row), head.version);
                    Ok(Scan::Continue)
                }
                Err(error) => {
                    failure = Some(error);
                    Ok(Scan::Stop)
                }
            }
        })?;
        if let Some(error) = failure {
            return Err(error);
        }
    }
    Ok(rows
        .into_iter()
        .map(|((table, row), version)| StateItem {
            id: state_id(&table, &row, version),
            table,
            row,
            version,
        })
        .collect())
}

/// Whether the responder's knowledge covers `node` at its row.
fn covered(knowledge: &Knowledge, table: &str, row: &str, node: &DagNode) -> bool {
    knowledge.known_gen(table, row, node.device) >= node.generation
}

/// Rule a for each record of a fetched page.
fn take_page(
    db: &mut DbWriter<'_>,
    writer: &Writer<'_>,
    resolver: &dyn Resolver,
    from: DeviceId,
    records: &[LogRecord],
    knowledge: &Knowledge,
) -> Result<StateApplied> {
    let mut applied = StateApplied::default();
    for record in records {
        let RecordContent::Node(node) = &record.content else {
            return Err(Error::invalid(format!(
                "catch-up by state sent a link record for {}; only heads are fetched",
                crate::names::row_text(&record.table, &record.row)
            )));
        };
        let (table, row) = (record.table.as_str(), record.row.as_str());
        let head = db.head(table, row)?;
        if head
            .as_ref()
            .is_some_and(|head| head.version == record.version)
        {
            applied.unchanged += 1;
            continue;
        }
        let supersedes = match &head {
            None => true,
            Some(head) => db
                .node(table, row, head.version)?
                .is_none_or(|mine| covered(knowledge, table, row, &mine)),
        };
        if supersedes {
            take_head(db, writer, from, record, node)?;
            applied.heads_taken += 1;
        } else {
            let page = apply::apply(db, writer, resolver, from, std::slice::from_ref(record))?;
            applied.grafted += page.records;
            applied.unchanged += page.duplicates;
            applied.resolutions.extend(page.resolutions);
        }
    }
    Ok(applied)
}

/// Makes a fetched head the row's head: its node stored (kept if held, with its links), logged
/// under its own pair unless the index has it, the head moved, watchers told.
fn take_head(
    db: &mut DbWriter<'_>,
    writer: &Writer<'_>,
    from: DeviceId,
    record: &LogRecord,
    node: &DagNode,
) -> Result<()> {
    let (table, row, version) = (record.table.as_str(), record.row.as_str(), record.version);
    writer.clock.observe(node.hlc);
    if db.node(table, row, version)?.is_none() {
        db.put_node(table, row, version, node)?;
    }
    if !db.has_record(node.device, node.generation)? {
        db.append_log(&LogEntry {
            device: node.device,
            generation: node.generation,
            table: table.to_owned(),
            row: row.to_owned(),
            version,
            kind: EntryKind::Node,
            from,
        })?;
    }
    db.set_head(
        table,
        row,
        &RowHead {
            version,
            deleted: node.deleted,
            value: node.value.clone(),
        },
    )?;
    db.append_change(&Change {
        table: table.to_owned(),
        row: row.to_owned(),
        version,
        deleted: node.deleted,
        from_sync: true,
    })
}

/// Rule b for each row only this node holds, read as it is now; returns what it did and the
/// rows to purge.
fn settle_rows_only_here(
    db: &mut DbWriter<'_>,
    rows: &[(String, String)],
    knowledge: &Knowledge,
) -> Result<(StateApplied, BTreeSet<(String, String)>)> {
    let mut applied = StateApplied::default();
    let mut removed = BTreeSet::new();
    for (table, row) in rows {
        let Some(head) = db.head(table, row)? else {
            continue;
        };
        let Some(node) = db.node(table, row, head.version)? else {
            continue;
        };
        if covered(knowledge, table, row, &node) {
            db.append_change(&Change {
                table: table.clone(),
                row: row.clone(),
                version: head.version,
                deleted: true,
                from_sync: true,
            })?;
            removed.insert((table.clone(), row.clone()));
            applied.removed += 1;
        }
    }
    Ok((applied, removed))
}

/// Removes every trace of `rows`: heads, DAG nodes, and log entries with their index entries
/// (one scan of the log for all of them).
fn purge_rows(
    txn: &mut dyn WriteTxn,
    keys: &DbKeys,
    rows: &BTreeSet<(String, String)>,
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut doomed = Vec::new();
    for (table, row) in rows {
        doomed.push(keys.row(table, row));
        let node_prefix = keys.node_prefix(table, row);
        txn.scan_prefix(&node_prefix, &mut |key, _| {
            doomed.push(key.to_vec());
            Ok(Scan::Continue)
        })?;
    }
    let log_prefix = keys.log_prefix();
    let mut logged = Vec::new();
    let mut failure = None;
    txn.scan_prefix(&log_prefix, &mut |key, value| {
        match decode::<LogEntry>(value, "log entry") {
            Ok(entry) if rows.contains(&(entry.table.clone(), entry.row.clone())) => {
                logged.push((key.to_vec(), keys.index(entry.device, entry.generation)));
            }
            Ok(_) => {}
            Err(error) => {
                failure = Some(error);
                return Ok(Scan::Stop);
            }
        }
        Ok(Scan::Continue)
    })?;
    if let Some(error) = failure {
        return Err(error);
    }
    for (log, index) in logged {
        // An index entry naming another position (a reused pair) stays.
        let position = crate::store::keys::trailing_u64(&log).map(u64::to_be_bytes);
        if txn.get(&index)?.as_deref() == position.as_ref().map(|p| p.as_slice()) {
            txn.delete(&index)?;
        }
        txn.delete(&log)?;
    }
    for key in doomed {
        txn.delete(&key)?;
    }
    Ok(())
}
