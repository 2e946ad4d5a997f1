//! A node's databases on top of [`Storage`]: rows with their version DAGs, the log, the change
//! feed, knowledge, and the catalog. Every operation is one storage transaction and blocking
//! (callers run writes off the async threads). The key layout is in `keys`; the two write
//! paths are `local` (app commits) and `apply` (records from peers); `log` reads for peers and
//! watchers.

mod apply;
mod dag;
mod keys;
mod local;
mod log;
mod proposals;
mod records;
mod resume;
mod syncgroups;
mod writer;

use std::sync::Arc;

use syncbase_storage::{Scan, Storage, prefix_end};

pub use apply::{Applied, Resolution};
pub use keys::{peer as peer_key, peer_prefix};
pub use log::{FeedItem, FeedPage, Page, PageRequest};
pub use records::{
    Change, DagNode, LogRecord, RecordContent, RowHead, SyncState, Version,
    decode as decode_record, encode as encode_record,
};
pub use resume::{CursorUpdate, MAX_TOKEN_BYTES, ResumeCursor};
pub use syncgroups::{
    SyncgroupDeltas, SyncgroupKnowledge, SyncgroupTxn, SyncgroupsApplied,
    wire_estimate as syncgroup_wire_estimate,
};

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::names::{DbName, KeyPrefix, RowKey, TableName};
use crate::paging::PageFill;
use crate::sync::genvec::{DeviceId, Knowledge};
use keys::DbKeys;
use local::Writer;
use records::{decode, encode};
use writer::{DbWriter, load_knowledge, load_state};

/// One change in an atomic commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    Put {
        table: TableName,
        key: RowKey,
        value: Vec<u8>,
    },
    Delete {
        table: TableName,
        key: RowKey,
    },
}

impl Mutation {
    /// Its bytes under the batch limit: table name, key and value.
    pub fn bytes(&self) -> usize {
        match self {
            Mutation::Put { table, key, value } => {
                table.as_str().len() + key.as_str().len() + value.len()
            }
            Mutation::Delete { table, key } => table.as_str().len() + key.as_str().len(),
        }
    }

    /// The (table, row) it changes.
    pub fn row(&self) -> (&str, &str) {
        match self {
            Mutation::Put { table, key, .. } | Mutation::Delete { table, key } => {
                (table.as_str(), key.as_str())
            }
        }
    }
}

pub use crate::paging::PageLimit;

/// A row read back from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub key: String,
    pub value: Vec<u8>,
}

/// Every database of a node.
pub struct Store {
    storage: Arc<dyn Storage>,
    device: DeviceId,
    clock: Arc<Clock>,
}

impl Store {
    /// Opens the store, making this node's device id on first use.
    pub fn open(storage: Arc<dyn Storage>, clock: Arc<Clock>) -> Result<Store> {
        let device = load_or_create_device(storage.as_ref())?;
        let store = Store {
            storage,
            device,
            clock,
        };
        store.restore_clock()?;
        Ok(store)
    }

    /// Moves the clock past the last reading any database committed before a restart.
    fn restore_clock(&self) -> Result<()> {
        for name in self.list_databases()? {
            let db = DbName::parse(&name)?;
            self.clock.restore(self.state(&db)?.last_hlc);
        }
        Ok(())
    }

    /// This node's persistent device id.
    pub fn device(&self) -> DeviceId {
        self.device
    }

    /// The node's clock.
    pub fn clock(&self) -> &Arc<Clock> {
        &self.clock
    }

    /// The storage backend's name.
    pub fn backend(&self) -> &'static str {
        self.storage.backend()
    }

    /// The underlying storage (for node-level records such as runtime peers).
    pub fn storage(&self) -> &dyn Storage {
        self.storage.as_ref()
    }

    /// Whether the database was ever created.
    pub fn has_database(&self, db: &DbName) -> Result<bool> {
        Ok(self
            .storage
            .read()?
            .get(&keys::catalog(db.as_str()))?
            .is_some())
    }

    /// Records the database in the catalog (idempotent).
    pub fn create_database(&self, db: &DbName) -> Result<()> {
        let mut txn = self.storage.write()?;
        txn.put(&keys::catalog(db.as_str()), b"")?;
        txn.commit()?;
        Ok(())
    }

    /// Every database in the catalog, in name order.
    pub fn list_databases(&self) -> Result<Vec<String>> {
        let prefix = keys::catalog_prefix();
        let mut names = Vec::new();
        self.storage.read()?.scan_prefix(&prefix, &mut |key, _| {
            names.push(text(&key[prefix.len()..], "database name")?);
            Ok(Scan::Continue)
        })?;
        Ok(names)
    }

    /// The current value of one row (None if absent or deleted).
    pub fn get(&self, db: &DbName, table: &TableName, key: &RowKey) -> Result<Option<Vec<u8>>> {
        let key = DbKeys::new(db.as_str()).row(table.as_str(), key.as_str());
        let Some(bytes) = self.storage.read()?.get(&key)? else {
            return Ok(None);
        };
        let head: RowHead = decode(&bytes, "row head")?;
        Ok((!head.deleted).then_some(head.value))
    }

    /// Applies the mutations as one app transaction, with their sync metadata, all or
    /// nothing. Returns, per mutation, whether its row existed before it. A batch over the
    /// batch limits (`names::check_batch`) fails with `InvalidArgument:` and writes nothing.
    pub fn commit(&self, db: &DbName, mutations: &[Mutation]) -> Result<Vec<bool>> {
        crate::names::check_batch(mutations.len(), mutations.iter().map(Mutation::bytes).sum())?;
        let mut txn = self.storage.write()?;
        let mut writer = DbWriter::new(txn.as_mut(), db.as_str())?;
        let existed = local::commit(&mut writer, &self.writer(), mutations)?;
        writer.finish(self.clock.last())?;
        txn.commit()?;
        Ok(existed)
    }

    /// Applies a page of records from peer `from`, and merges `knowledge` (the peer's, sent
    /// with the page that reached the end of its log) into ours, in one transaction.
    pub fn apply(
        &self,
        db: &DbName,
        from: DeviceId,
        records: &[LogRecord],
        knowledge: Option<&Knowledge>,
    ) -> Result<Applied> {
        self.apply_page(db, from, records, knowledge, "", &CursorUpdate::Keep)
    }

    /// [`Store::apply`], also updating the resume cursor kept with `peer` (its fingerprint)
    /// in the same transaction, so the progress it records is exactly what was applied.
    pub fn apply_page(
        &self,
        db: &DbName,
        from: DeviceId,
        records: &[LogRecord],
        knowledge: Option<&Knowledge>,
        peer: &str,
        cursor: &CursorUpdate,
    ) -> Result<Applied> {
        let forget = *cursor == CursorUpdate::Forget;
        if records.is_empty() && !forget && !self.knowledge_would_grow(db, knowledge)? {
            return Ok(Applied::default());
        }
        let mut txn = self.storage.write()?;
        let mut writer = DbWriter::new(txn.as_mut(), db.as_str())?;
        let applied = apply::apply(&mut writer, &self.writer(), from, records)?;
        if let Some(response) = knowledge {
            let mut mine = writer.knowledge()?;
            mine.merge_response(response);
            writer.set_knowledge(&mine)?;
        }
        writer.finish(self.clock.last())?;
        resume::update(txn.as_mut(), &DbKeys::new(db.as_str()), peer, cursor)?;
        txn.commit()?;
        Ok(applied)
    }

    /// The resume cursor kept with `peer` (its fingerprint) in `db`, if any.
    pub fn resume_cursor(&self, db: &DbName, peer: &str) -> Result<Option<ResumeCursor>> {
        resume::load(
            self.storage.read()?.as_ref(),
            &DbKeys::new(db.as_str()),
            peer,
        )
    }

    /// Forgets every resume cursor of `db`, so the next session with each peer starts from
    /// this node's knowledge: call it whenever records before a cursor must be fetched again
    /// (e.g. knowledge lowered to re-fetch refused records). Returns how many there were.
    pub fn forget_resume_cursors(&self, db: &DbName) -> Result<usize> {
        let mut txn = self.storage.write()?;
        let forgotten = resume::forget_all(txn.as_mut(), &DbKeys::new(db.as_str()))?;
        txn.commit()?;
        Ok(forgotten)
    }

    /// The resume token for a page served to `initiator` under the scopes of `served` that
    /// ends before log `position` (see `store::resume`).
    pub fn resume_token(
        &self,
        db: &DbName,
        initiator: DeviceId,
        served: &Knowledge,
        position: u64,
    ) -> Result<Vec<u8>> {
        resume::token(
            self.storage.read()?.as_ref(),
            &DbKeys::new(db.as_str()),
            self.device,
            initiator,
            served,
            position,
        )
    }

    /// Where a request from `initiator` carrying `token` may start, if the token is valid
    /// for the scopes of `served` here; None: start from the initiator's knowledge.
    pub fn resume_position(
        &self,
        db: &DbName,
        initiator: DeviceId,
        served: &Knowledge,
        token: &[u8],
    ) -> Result<Option<u64>> {
        resume::resume_position(
            self.storage.read()?.as_ref(),
            &DbKeys::new(db.as_str()),
            self.device,
            initiator,
            served,
            token,
        )
    }

    /// Whether merging `response` would change the stored knowledge (if not, a page with no
    /// records needs no commit).
    fn knowledge_would_grow(&self, db: &DbName, response: Option<&Knowledge>) -> Result<bool> {
        let Some(response) = response else {
            return Ok(false);
        };
        let mine = self.knowledge(db)?;
        let mut merged = mine.clone();
        merged.merge_response(response);
        Ok(merged != mine)
    }

    /// The rows of `table` whose keys start with `prefix` that fit `limit` (`paging`: at least
    /// one), in key order, starting after `after` when given. An empty page means the scan is
    /// done.
    pub fn scan_page(
        &self,
        db: &DbName,
        table: &TableName,
        prefix: &KeyPrefix,
        after: Option<&str>,
        limit: PageLimit,
    ) -> Result<Vec<Row>> {
        let table_prefix = DbKeys::new(db.as_str()).table_prefix(table.as_str());
        let mut start = [table_prefix.as_slice(), prefix.as_str().as_bytes()].concat();
        let end = prefix_end(&start);
        if let Some(after) = after {
            start = [table_prefix.as_slice(), after.as_bytes(), &[0]].concat();
        }
        let mut rows = Vec::new();
        let mut fill = PageFill::new(limit);
        self.storage
            .read()?
            .scan(&start, end.as_deref(), &mut |key, value| {
                let head: RowHead = decode(value, "row head").map_err(visitor_error)?;
                if head.deleted {
                    return Ok(Scan::Continue);
                }
                let key = text(&key[table_prefix.len()..], "row key")?;
                if !fill.take(key.len() + head.value.len()) {
                    return Ok(Scan::Stop);
                }
                rows.push(Row {
                    key,
                    value: head.value,
                });
                Ok(if fill.is_full() {
                    Scan::Stop
                } else {
                    Scan::Continue
                })
            })?;
        Ok(rows)
    }

    /// The database's counters.
    pub fn state(&self, db: &DbName) -> Result<SyncState> {
        load_state(self.storage.read()?.as_ref(), &DbKeys::new(db.as_str()))
    }

    /// What this node knows of other devices' records in the database.
    pub fn knowledge(&self, db: &DbName) -> Result<Knowledge> {
        load_knowledge(self.storage.read()?.as_ref(), &DbKeys::new(db.as_str()))
    }

    /// The first log position an initiator with `knowledge` may lack.
    pub fn start_position(
        &self,
        db: &DbName,
        initiator: DeviceId,
        knowledge: &Knowledge,
    ) -> Result<u64> {
        log::start_position(
            self.storage.read()?.as_ref(),
            &DbKeys::new(db.as_str()),
            initiator,
            knowledge,
        )
    }

    /// The next page of records for an initiator.
    pub fn read_page(&self, db: &DbName, request: &PageRequest<'_>) -> Result<Page> {
        log::read_page(
            self.storage.read()?.as_ref(),
            &DbKeys::new(db.as_str()),
            self.device,
            request,
        )
    }

    /// Watch-feed items from sequence `from` on, filtered to a table and row prefix, within
    /// `limit` (changes looked at, and key and value bytes: at least one item); also the
    /// sequence to continue from and whether a limit stopped the read.
    pub fn read_changes(
        &self,
        db: &DbName,
        from: u64,
        table: Option<&TableName>,
        prefix: &KeyPrefix,
        limit: PageLimit,
    ) -> Result<FeedPage> {
        let txn = self.storage.read()?;
        let table = table.map(TableName::as_str);
        log::read_changes(
            txn.as_ref(),
            &DbKeys::new(db.as_str()),
            from,
            table,
            prefix.as_str(),
            limit,
        )
    }

    /// Every row head and its DAG nodes, hashed: equal digests mean equal rows and heads.
    pub fn digest(&self, db: &DbName) -> Result<u64> {
        let prefix = DbKeys::new(db.as_str()).table_prefix("");
        let rows_prefix = &prefix[..prefix.len() - 1];
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        self.storage
            .read()?
            .scan_prefix(rows_prefix, &mut |key, value| {
                hasher.update(key);
                hasher.update(value);
                Ok(Scan::Continue)
            })?;
        Ok(hasher.digest())
    }

    fn writer(&self) -> Writer<'_> {
        Writer {
            device: self.device,
            clock: &self.clock,
        }
    }
}

fn load_or_create_device(storage: &dyn Storage) -> Result<DeviceId> {
    if let Some(bytes) = storage.read()?.get(&keys::device_id())? {
        return decode(&bytes, "device id");
    }
    let device = DeviceId(Version::random()?.0);
    let mut txn = storage.write()?;
    txn.put(&keys::device_id(), &encode(&device)?)?;
    txn.commit()?;
    Ok(device)
}

fn text(bytes: &[u8], what: &str) -> syncbase_storage::Result<String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| {
        visitor_error(Error::Internal(format!(
            "corrupt record: {what} is not UTF-8"
        )))
    })
}

fn visitor_error(error: Error) -> syncbase_storage::StorageError {
    syncbase_storage::StorageError::Visitor(error.to_string())
}

#[cfg(test)]
mod tests;
