//! `DbWriter`: one database's records inside one write transaction: row heads, DAG nodes,
//! log entries with their index, the change feed, and the counters, which it saves on
//! `finish`. Both write paths (app commits in `local`, peer records in `apply`) go through it,
//! so data and sync metadata always land in the same commit.

use std::collections::HashMap;

use syncbase_storage::WriteTxn;

use crate::clock::Hlc;
use crate::error::Result;
use crate::genvec::{DeviceId, Generation, Knowledge};
use crate::store::epoch::{Mark, digest};
use crate::store::keys::DbKeys;
use crate::store::records::{
    Change, DagNode, HeadNode, LogEntry, RowHead, SyncState, Version, decode, decode_head, encode,
    encode_head,
};

/// Writes one database's records in a transaction the caller commits.
pub struct DbWriter<'t> {
    txn: &'t mut dyn WriteTxn,
    keys: DbKeys,
    state: SyncState,
    /// DAG nodes written in this transaction, so resolving a page reads none of them back.
    written: HashMap<Vec<u8>, DagNode>,
    /// Per device, the entry of its highest generation logged in this transaction: its mark
    /// is saved on `finish`.
    last_logged: HashMap<DeviceId, LogEntry>,
}

impl<'t> DbWriter<'t> {
    /// Starts writing `db` in `txn`, loading its counters.
    pub fn new(txn: &'t mut dyn WriteTxn, db: &str) -> Result<DbWriter<'t>> {
        let keys = DbKeys::new(db);
        let state = load_state(&*txn, &keys)?;
        Ok(DbWriter {
            txn,
            keys,
            state,
            written: HashMap::new(),
            last_logged: HashMap::new(),
        })
    }

    /// The transaction, for writes of other modules' keys in the same commit.
    pub fn txn(&mut self) -> &mut dyn WriteTxn {
        &mut *self.txn
    }

    /// Takes this device's next generation.
    pub fn next_generation(&mut self) -> Generation {
        let generation = self.state.next_generation;
        self.state.next_generation = generation.next();
        generation
    }

    /// The highest generation this device has taken in the database.
    pub fn own_generation(&self) -> Generation {
        self.state.own_generation()
    }

    pub fn head(&self, table: &str, row: &str) -> Result<Option<RowHead>> {
        self.txn
            .get(&self.keys.row(table, row))?
            .map(|bytes| decode(&bytes, "row head"))
            .transpose()
    }

    pub fn set_head(&mut self, table: &str, row: &str, head: &RowHead) -> Result<()> {
        Ok(self.txn.put(&self.keys.row(table, row), &encode(head)?)?)
    }

    /// The DAG node of `version`: stored under its own key, or kept by the row head once
    /// collected (`store::collect`); None if neither holds it.
    pub fn node(&self, table: &str, row: &str, version: Version) -> Result<Option<DagNode>> {
        let key = self.keys.node(table, row, version);
        if let Some(node) = self.written.get(&key) {
            return Ok(Some(node.clone()));
        }
        load_node(&*self.txn, &self.keys, table, row, version)
    }

    /// Stores `node` again after a change of its links: where the row head keeps it (a
    /// collected head), in the row head, so no node key comes back for it.
    pub fn update_node(
        &mut self,
        table: &str,
        row: &str,
        version: Version,
        node: &DagNode,
    ) -> Result<()> {
        let key = self.keys.node(table, row, version);
        if !self.written.contains_key(&key) && self.txn.get(&key)?.is_none() {
            let row_key = self.keys.row(table, row);
            if let Some(bytes) = self.txn.get(&row_key)? {
                let stored = decode_head(&bytes)?;
                if let Some(kept) = stored.node.filter(|_| stored.head.version == version) {
                    let kept = HeadNode::of(node, kept.device, kept.generation);
                    let bytes = encode_head(&stored.head, Some(&kept))?;
                    return Ok(self.txn.put(&row_key, &bytes)?);
                }
            }
        }
        self.put_node(table, row, version, node)
    }

    pub fn put_node(
        &mut self,
        table: &str,
        row: &str,
        version: Version,
        node: &DagNode,
    ) -> Result<()> {
        let key = self.keys.node(table, row, version);
        self.txn.put(&key, &encode(node)?)?;
        self.written.insert(key, node.clone());
        Ok(())
    }

    /// Whether the log already holds the record (device, generation).
    pub fn has_record(&self, device: DeviceId, generation: Generation) -> Result<bool> {
        Ok(self
            .txn
            .get(&self.keys.index(device, generation))?
            .is_some())
    }

    /// Appends an entry at the next log position and indexes it by (device, generation).
    pub fn append_log(&mut self, entry: &LogEntry) -> Result<u64> {
        let position = self.state.next_position;
        self.state.next_position += 1;
        self.txn.put(&self.keys.log(position), &encode(entry)?)?;
        let index = self.keys.index(entry.device, entry.generation);
        self.txn.put(&index, &position.to_be_bytes())?;
        let last = self.last_logged.get(&entry.device);
        if last.is_none_or(|last| last.generation < entry.generation) {
            self.last_logged.insert(entry.device, entry.clone());
        }
        Ok(position)
    }

    /// Appends an entry at the next log position without indexing it: a second record under
    /// a (device, generation) the index already names (a restored writer's reused pair, see
    /// `apply`). Responders read the log by position, so it is relayed to every peer whose
    /// knowledge lacks that generation; the index, and so the marks and deduplication, keep
    /// naming the first.
    pub fn append_log_unindexed(&mut self, entry: &LogEntry) -> Result<u64> {
        let position = self.state.next_position;
        self.state.next_position += 1;
        self.txn.put(&self.keys.log(position), &encode(entry)?)?;
        Ok(position)
    }

    /// The generations of `device` logged here above `after`, in order.
    pub fn generations_after(
        &self,
        device: DeviceId,
        after: Generation,
    ) -> Result<Vec<Generation>> {
        let start = self.keys.index(device, after.next());
        let device_prefix =
            &self.keys.index(device, Generation::NONE)[..self.keys.index_prefix().len() + 8];
        let end = syncbase_storage::prefix_end(device_prefix);
        let mut generations = Vec::new();
        self.txn.scan(&start, end.as_deref(), &mut |key, _| {
            generations.extend(crate::store::keys::trailing_u64(key).map(Generation::new));
            Ok(syncbase_storage::Scan::Continue)
        })?;
        Ok(generations)
    }

    /// Logs the record of (`old`, `generation`) again under `new` at this device's next
    /// generation, in place: the entry keeps its log position (so a resolution naming the
    /// record still comes after it, and a write after its parent, in every page read from
    /// this log) and is indexed under its new pair only. The entry as now logged, if there
    /// was one.
    pub fn relog_record(
        &mut self,
        old: DeviceId,
        generation: Generation,
        new: DeviceId,
    ) -> Result<Option<LogEntry>> {
        let index = self.keys.index(old, generation);
        let Some(position) = self.txn.get(&index)? else {
            return Ok(None);
        };
        let position = u64::from_be_bytes(
            position
                .as_slice()
                .try_into()
                .map_err(|_| crate::error::Error::Internal("corrupt log index entry".into()))?,
        );
        let log = self.keys.log(position);
        let Some(bytes) = self.txn.get(&log)? else {
            return Ok(None);
        };
        let entry = LogEntry {
            device: new,
            generation: self.next_generation(),
            from: new,
            ..decode(&bytes, "log entry")?
        };
        self.txn.put(&log, &encode(&entry)?)?;
        self.txn.delete(&index)?;
        let renamed = self.keys.index(new, entry.generation);
        self.txn.put(&renamed, &position.to_be_bytes())?;
        let last = self.last_logged.get(&new);
        if last.is_none_or(|last| last.generation < entry.generation) {
            self.last_logged.insert(new, entry.clone());
        }
        Ok(Some(entry))
    }

    /// Appends a row change to the watch feed.
    pub fn append_change(&mut self, change: &Change) -> Result<()> {
        let sequence = self.state.next_change;
        self.state.next_change += 1;
        Ok(self
            .txn
            .put(&self.keys.change(sequence), &encode(change)?)?)
    }

    pub fn knowledge(&self) -> Result<Knowledge> {
        load_knowledge(&*self.txn, &self.keys)
    }

    pub fn set_knowledge(&mut self, knowledge: &Knowledge) -> Result<()> {
        Ok(self.txn.put(&self.keys.knowledge(), &encode(knowledge)?)?)
    }

    /// The collection floor (empty if nothing was ever collected): per scope, the
    /// generations at or below which records of that scope may be gone from this node.
    pub fn floor(&self) -> Result<Knowledge> {
        load_floor(&*self.txn, &self.keys)
    }

    /// Raises the collection floor to cover `floor` too (per scope, element-wise max; never
    /// lowered: collected records stay gone).
    #[allow(dead_code)] // its caller (catch-up by state) lands next
    pub fn raise_floor(&mut self, floor: &Knowledge) -> Result<()> {
        let mut stored = self.floor()?;
        stored.merge_response(floor);
        Ok(self.txn.put(&self.keys.floor(), &encode(&stored)?)?)
    }

    /// Forgets the mark of `device`'s highest logged generation (its entries above the safe
    /// point were just removed by an epoch).
    pub fn forget_mark(&mut self, device: DeviceId) -> Result<()> {
        self.last_logged.remove(&device);
        self.txn.delete(&self.keys.mark(device))?;
        Ok(())
    }

    /// Saves the mark of each device's highest generation logged in this transaction, where
    /// it is above the stored one.
    fn save_marks(&mut self) -> Result<()> {
        for (device, entry) in std::mem::take(&mut self.last_logged) {
            let key = self.keys.mark(device);
            let stored: Option<Mark> = self
                .txn
                .get(&key)?
                .map(|bytes| decode(&bytes, "record mark"))
                .transpose()?;
            if stored.is_none_or(|stored| stored.generation < entry.generation) {
                let mark = Mark {
                    generation: entry.generation,
                    digest: digest(&entry)?,
                };
                self.txn.put(&key, &encode(&mark)?)?;
            }
        }
        Ok(())
    }

    /// Saves the counters, the marks and the clock's last reading; call once, after the last
    /// write.
    pub fn finish(mut self, last_hlc: Hlc) -> Result<()> {
        self.save_marks()?;
        self.state.last_hlc = self.state.last_hlc.max(last_hlc);
        Ok(self.txn.put(&self.keys.state(), &encode(&self.state)?)?)
    }
}

/// A database's counters (all start at 1 except positions and changes, at 0).
pub fn load_state(txn: &dyn syncbase_storage::ReadTxn, keys: &DbKeys) -> Result<SyncState> {
    match txn.get(&keys.state())? {
        Some(bytes) => decode(&bytes, "sync state"),
        None => Ok(SyncState {
            next_generation: Generation::FIRST,
            ..SyncState::default()
        }),
    }
}

/// A database's collection floor (empty if nothing was collected), kept at or below the safe
/// point of every device left at an epoch (`store::notice`), as knowledge is: above it a
/// (device, generation) pair may name two records, so one arriving there is never taken as
/// one collected here, and a peer is never asked to know past it.
pub fn load_floor(txn: &dyn syncbase_storage::ReadTxn, keys: &DbKeys) -> Result<Knowledge> {
    let mut floor = match txn.get(&keys.floor())? {
        Some(bytes) => decode(&bytes, "collection floor")?,
        None => return Ok(Knowledge::new()),
    };
    crate::store::notice::cap(&crate::store::notice::caps(txn, keys)?, &mut floor);
    Ok(floor)
}

/// The DAG node of `version` of a row: under its own key, or kept by the row head once
/// collected (`store::collect`); None if neither holds it.
pub fn load_node(
    txn: &dyn syncbase_storage::ReadTxn,
    keys: &DbKeys,
    table: &str,
    row: &str,
    version: Version,
) -> Result<Option<DagNode>> {
    if let Some(bytes) = txn.get(&keys.node(table, row, version))? {
        return decode(&bytes, "DAG node").map(Some);
    }
    Ok(match txn.get(&keys.row(table, row))? {
        Some(bytes) => decode_head(&bytes)?.node_at(version),
        None => None,
    })
}

/// A database's stored knowledge (empty if it never synced).
pub fn load_knowledge(txn: &dyn syncbase_storage::ReadTxn, keys: &DbKeys) -> Result<Knowledge> {
    match txn.get(&keys.knowledge())? {
        Some(bytes) => decode(&bytes, "knowledge"),
        None => Ok(Knowledge::new()),
    }
}
