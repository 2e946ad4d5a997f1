//! A node's databases on top of [`Storage`]: rows with their version DAGs, the log, the change
//! feed, knowledge, and the catalog. Every operation is one storage transaction and blocking
//! (callers run writes off the async threads).
//!
//! - `keys`: the storage key layout, every key the node writes;
//! - `format`: the store's format version, older stores upgraded at open, newer refused;
//! - `records`: the stored types and their postcard encoding;
//! - `writer`: `DbWriter`, one database's records inside one write transaction;
//! - `local`: the app write path (every acknowledged write is a versioned DAG node);
//! - `apply`: records from peers: logged under their origin, grafted, resolved;
//! - `resolve`: the conflict `Resolver` trait and `LastWriterWins`, the default rule;
//! - `dag`: an object's version DAG and the common-ancestor search;
//! - `log`: reading the log for a peer, start positions, the watch feed;
//! - `resume`: resume cursors, the responder's token and the initiator's cursor per peer;
//! - `epoch`: moving to a fresh device id, the epoch history and record marks;
//! - `notice`: epoch notices, announced and taken;
//! - `members`: what each member reported it knows, the input of collection;
//! - `collect`: history garbage collection in bounded steps, the floor, the feed trimmed;
//! - `state`: catch-up by state: row heads as reconciliation items, applying fetched heads;
//! - `syncgroups`: syncgroup versions, local state, the name index and invites;
//! - `proposals`: syncgroups published here and not accepted;
//! - `tables`: a database's tables and their live data, the one rule for what is live;
//! - `inspect`: read-only views for checks from outside the write paths (the simulation).

mod apply;
mod collect;
mod dag;
mod epoch;
pub mod format;
mod inspect;
pub(crate) mod keys;
mod local;
mod log;
mod members;
mod notice;
mod proposals;
pub(crate) mod records;
mod resolve;
mod resume;
mod state;
mod syncgroups;
mod tables;
mod writer;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use syncbase_storage::{Scan, Storage, Usage, prefix_end, retry_full};

pub use apply::{Applied, Resolution};
pub use collect::{Collected, Cursor as CollectCursor, Cut};
pub use epoch::{Epoch, MARK_POINTS, Mark};
pub use inspect::{Logged, RowDag};
pub use keys::{peer as peer_key, peer_prefix};
pub use log::{FeedItem, FeedPage, Page, PageRequest, check_feed_floor};
pub use members::{MAX_REPORTS, REPORT_SPACING_NANOS, Report, Reports};
pub use notice::{MAX_NOTICES, MAX_TAKEN_PER_LINEAGE, Notice, Taken};
pub use records::{
    Change, DagNode, LogRecord, RecordContent, RowHead, SyncState, Version,
    decode as decode_record, encode as encode_record,
};
pub use resolve::{Conflict, Decision, Head, LastWriterWins, Resolver};
pub use resume::{CursorUpdate, MAX_TOKEN_BYTES, ResumeCursor};
pub use state::{StateApplied, StateItem, StateSnapshot, StateStep, state_id};
pub use syncgroups::{
    SyncgroupDeltas, SyncgroupKnowledge, SyncgroupTxn, SyncgroupsApplied, destroyed_error,
    wire_estimate as syncgroup_wire_estimate,
};
pub use tables::TableData;

use crate::clock::Clock;
use crate::env::Env;
use crate::error::{Error, Result};
use crate::genvec::{DeviceId, Generation, Knowledge};
use crate::names::{DbName, KeyPrefix, RowKey, TableName};
use crate::paging::PageFill;
use keys::DbKeys;
use local::Writer;
use records::{decode, encode, split_head};
use writer::{DbWriter, load_floor, load_knowledge, load_node, load_state};

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

/// Where a page applied by a session came from: the peer (its fingerprint), what to do with
/// its resume cursor, and [`Store::lowerings`] when the session asked (None: not checked).
#[derive(Debug, Clone)]
pub struct PageFrom {
    pub peer: String,
    pub cursor: CursorUpdate,
    pub asked_at: Option<u64>,
}

/// Which DAG nodes a store holds, as a screen running inside a page's write transaction
/// reads them.
pub trait HeldNodes {
    /// Whether the DAG of `table`/`row` holds `version`.
    fn holds(&self, table: &str, row: &str, version: Version) -> Result<bool>;

    /// Whether this store collects history (its collection floor is not empty): a version
    /// it lacks may then have been held and collected.
    fn collecting(&self) -> Result<bool>;
}

/// [`HeldNodes`] over a transaction.
struct TxnNodes<'a> {
    txn: &'a dyn syncbase_storage::ReadTxn,
    keys: DbKeys,
}

impl HeldNodes for TxnNodes<'_> {
    fn holds(&self, table: &str, row: &str, version: Version) -> Result<bool> {
        Ok(load_node(self.txn, &self.keys, table, row, version)?.is_some())
    }

    fn collecting(&self) -> Result<bool> {
        Ok(!load_floor(self.txn, &self.keys)?.is_empty())
    }
}

/// A data page as a screen run inside its write transaction left it
/// ([`Store::apply_screened_page`]): the records to apply, the knowledge to merge (None: none),
/// and where it came from, with what to do with the peer's resume cursor.
#[derive(Debug, Clone)]
pub struct ScreenedPage {
    pub records: Vec<LogRecord>,
    pub knowledge: Option<Knowledge>,
    pub from: PageFrom,
}

/// A page's records from the peer device `from`, and the knowledge it brings (None: none).
struct Incoming<'a> {
    from: DeviceId,
    records: &'a [LogRecord],
    knowledge: Option<&'a Knowledge>,
}

/// The live rows of a database ([`Store::live_data`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LiveData {
    /// Rows that are not deleted.
    pub rows: u64,
    /// Their tables', keys' and values' bytes.
    pub bytes: u64,
}

/// A row read back from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub key: String,
    pub value: Vec<u8>,
}

/// Every database of a node.
pub struct Store {
    storage: Arc<dyn Storage>,
    /// This node's current device id (changed only by an epoch, see `epoch`).
    device: AtomicU64,
    /// The time and random sources (`env`): the clock reads `env.time`, ids and versions are
    /// drawn from `env.random`.
    env: Env,
    clock: Arc<Clock>,
    /// Bumped twice whenever an epoch notice lowers knowledge, once before its commit (odd:
    /// a lowering is committing) and once after: a session that read another value when it
    /// asked must not merge knowledge or move its cursor (see [`Store::apply_session_page`]).
    lowerings: AtomicU64,
    /// This run's id, drawn at open: resume tokens name it (`store::resume`).
    run: u64,
}

impl Store {
    /// Opens the store in `env`: its hybrid logical clock reads `env.time`, and its device id
    /// (drawn from `env.random` on first use), versions and epoch ids come from `env.random`.
    /// A store written by an older build is upgraded first, one newer than this build is
    /// refused (`format::prepare`). Errors: the storage's, `BadState:` for a newer store's
    /// format, `Internal:` for a corrupt device id or record, or no randomness.
    pub fn open(storage: Arc<dyn Storage>, env: Env) -> Result<Store> {
        format::prepare(storage.as_ref(), "this store")?;
        let device = load_or_create_device(storage.as_ref(), &env)?;
        let mut txn = storage.write()?;
        epoch::note_open(txn.as_mut())?;
        txn.commit()?;
        let run = env.random.next_u64()?;
        let store = Store {
            storage,
            device: AtomicU64::new(device.0),
            clock: Arc::new(Clock::new(env.time.clone())),
            env,
            lowerings: AtomicU64::new(0),
            run,
        };
        store.restore_clock()?;
        Ok(store)
    }

    /// Moves the clock past the last reading committed before a restart: data commits and
    /// syncgroup versions (`Store::committed_hlc`).
    fn restore_clock(&self) -> Result<()> {
        self.clock.restore(self.committed_hlc()?);
        Ok(())
    }

    /// This node's persistent device id (its current epoch's).
    pub fn device(&self) -> DeviceId {
        DeviceId(self.device.load(Ordering::SeqCst))
    }

    /// Moves to a fresh device id unless the device is no longer `expected` (another epoch
    /// already replaced it: returns None). In one transaction, per database, this device's
    /// records above the safe point are logged again under the new device and the knowledge
    /// of the old one set to the safe point (see `epoch`). The safe point of a database is just
    /// below its lowest mark point (a restored store, or the copy it was restored from, may
    /// diverge from what peers hold from any of its recent opens on), lowered in `clash`'s
    /// database to just below the generation a peer holds differently.
    pub fn start_epoch(
        &self,
        expected: DeviceId,
        reason: String,
        clash: Option<(&DbName, Generation)>,
    ) -> Result<Option<Epoch>> {
        let mut txn = self.storage.write()?;
        let old = self.device();
        if old != expected {
            return Ok(None);
        }
        let new = fresh_device(txn.as_ref(), old, &self.env)?;
        let lowest = epoch::lowest_mark_points(txn.as_ref())?;
        let safe_point = |db: &str, own: Generation| -> Generation {
            let recent = lowest
                .get(db)
                .map_or(Generation::NONE, |point| point.previous());
            let clashed = clash
                .filter(|(clashed, _)| clashed.as_str() == db)
                .map_or(Generation::MAX, |(_, generation)| generation.previous());
            own.min(recent).min(clashed)
        };
        let at_nanos = self.env.now_nanos();
        let epoch = epoch::switch(
            txn.as_mut(),
            &self.clock,
            (old, new),
            &safe_point,
            reason,
            at_nanos,
        )?;
        // Writers read the device once they hold the write transaction, which this one still
        // holds: none can write under the old device after the commit.
        self.device.store(new.0, Ordering::SeqCst);
        if let Err(error) = txn.commit() {
            self.device.store(old.0, Ordering::SeqCst);
            return Err(error.into());
        }
        Ok(Some(epoch))
    }

    /// The epochs this node went through, oldest first.
    pub fn epochs(&self) -> Result<Vec<Epoch>> {
        epoch::history(self.storage.read()?.as_ref())
    }

    /// The mark of `device`'s highest generation logged in the database, if any.
    pub fn last_mark(&self, db: &DbName, device: DeviceId) -> Result<Option<Mark>> {
        let keys = DbKeys::new(db.as_str());
        epoch::last_mark(self.storage.read()?.as_ref(), &keys, device)
    }

    /// The mark of (`device`, `generation`) as logged in the database, if it is.
    pub fn mark_at(
        &self,
        db: &DbName,
        device: DeviceId,
        generation: Generation,
    ) -> Result<Option<Mark>> {
        let keys = DbKeys::new(db.as_str());
        epoch::mark_at(self.storage.read()?.as_ref(), &keys, device, generation)
    }

    /// The mark of `device`'s first record logged in the database at or above `generation`
    /// (`epoch::mark_from`): what a responder reports at an initiator's mark point.
    pub fn mark_from(
        &self,
        db: &DbName,
        device: DeviceId,
        generation: Generation,
    ) -> Result<Option<Mark>> {
        let keys = DbKeys::new(db.as_str());
        epoch::mark_from(self.storage.read()?.as_ref(), &keys, device, generation)
    }

    /// The database's mark points: the first generation of this device after each of its last
    /// opens (see `epoch::mark_points`).
    pub fn mark_points(&self, db: &DbName) -> Result<Vec<Generation>> {
        let keys = DbKeys::new(db.as_str());
        epoch::mark_points(self.storage.read()?.as_ref(), &keys)
    }

    /// Each database's own generation now.
    pub fn own_generations(&self) -> Result<BTreeMap<String, Generation>> {
        epoch::own_generations(self.storage.read()?.as_ref())
    }

    /// The node's clock.
    pub fn clock(&self) -> &Arc<Clock> {
        &self.clock
    }

    /// The environment the store was opened in (its time and random sources).
    pub fn env(&self) -> &Env {
        &self.env
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

    /// Records the database in the catalog, with its first mark point (`epoch::note_created`)
    /// (idempotent).
    pub fn create_database(&self, db: &DbName) -> Result<()> {
        let mut txn = self.storage.write()?;
        txn.put(&keys::catalog(db.as_str()), b"")?;
        epoch::note_created(txn.as_mut(), db.as_str())?;
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
        self.commit_checked(db, mutations, |_| Ok(()))
    }

    /// [`Store::commit`] guarded by `check`, which is given the syncgroups of `db` this node
    /// holds (not left) as read inside the same write transaction that commits the rows: a
    /// syncgroup change (an eject, a leave, a spec change) committed before the write is seen
    /// by the check, and none can commit between the check and the write. An error from
    /// `check` (e.g. `NoAccess:`) is returned and nothing is written.
    pub fn commit_checked(
        &self,
        db: &DbName,
        mutations: &[Mutation],
        check: impl Fn(&[crate::syncgroup::Syncgroup]) -> Result<()>,
    ) -> Result<Vec<bool>> {
        let freeing = mutations
            .iter()
            .all(|mutation| matches!(mutation, Mutation::Delete { .. }));
        self.commit_checked_as(db, mutations, freeing, check)
    }

    /// [`Store::commit_checked`] in a freeing transaction (which may use the storage's
    /// reserve) or not, as `freeing` says: a batch of deletes tried first as an ordinary
    /// write leaves the reserve to the collection that frees room for it.
    pub fn commit_checked_as(
        &self,
        db: &DbName,
        mutations: &[Mutation],
        freeing: bool,
        check: impl Fn(&[crate::syncgroup::Syncgroup]) -> Result<()>,
    ) -> Result<Vec<bool>> {
        crate::names::check_batch(mutations.len(), mutations.iter().map(Mutation::bytes).sum())?;
        retry_full(
            || self.commit_once(db, mutations, freeing, &check),
            is_storage_full,
        )
    }

    /// One attempt at [`Store::commit_checked`], in its own transaction: a freeing one
    /// (which may use the storage's reserve) for a batch of only deletes.
    fn commit_once(
        &self,
        db: &DbName,
        mutations: &[Mutation],
        freeing: bool,
        check: &dyn Fn(&[crate::syncgroup::Syncgroup]) -> Result<()>,
    ) -> Result<Vec<bool>> {
        let mut txn = if freeing {
            self.storage.write_freeing()?
        } else {
            self.storage.write()?
        };
        check(&syncgroups::held(txn.as_ref(), db.as_str())?)?;
        let mut writer = DbWriter::new(txn.as_mut(), db.as_str())?;
        let existed = local::commit(&mut writer, &self.writer(), mutations)?;
        writer.finish(self.clock.last())?;
        txn.commit()?;
        Ok(existed)
    }

    /// Applies a page of records from peer `from`, and merges `knowledge` (the peer's, sent
    /// with the page that reached the end of its log) into ours, in one transaction.
    /// Conflicts resolve by [`LastWriterWins`] (this and [`Store::apply_page`] are the by-hand
    /// paths of tests and tools; a session passes its host's resolver to
    /// [`Store::apply_session_page`] or [`Store::apply_screened_page`]).
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
    /// Knowledge of a device left at an epoch stays at its safe point (`notice::cap`).
    pub fn apply_page(
        &self,
        db: &DbName,
        from: DeviceId,
        records: &[LogRecord],
        knowledge: Option<&Knowledge>,
        peer: &str,
        cursor: &CursorUpdate,
    ) -> Result<Applied> {
        let page = PageFrom {
            peer: peer.to_owned(),
            cursor: cursor.clone(),
            asked_at: None,
        };
        self.apply_session_page(db, from, &LastWriterWins, records, knowledge, &page)
    }

    /// [`Store::apply_page`] for a session that asked when [`Store::lowerings`] was
    /// `page.asked_at`: if an epoch notice lowered knowledge since (checked inside the
    /// transaction), the page's records are applied but its knowledge is not merged and the
    /// cursor is not moved, since the session asked with knowledge that was too high.
    /// Conflicts resolve by `resolver`.
    pub fn apply_session_page(
        &self,
        db: &DbName,
        from: DeviceId,
        resolver: &dyn Resolver,
        records: &[LogRecord],
        knowledge: Option<&Knowledge>,
        page: &PageFrom,
    ) -> Result<Applied> {
        let forget = page.cursor == CursorUpdate::Forget;
        let snapshot = self.storage.read()?;
        if records.is_empty()
            && !forget
            && !knowledge_would_grow(snapshot.as_ref(), db, knowledge)?
            && !report_is_new(snapshot.as_ref(), db, &page.peer, knowledge)?
        {
            return Ok(Applied::default());
        }
        drop(snapshot);
        retry_full(
            || {
                let txn = self.storage.write()?;
                let incoming = Incoming {
                    from,
                    records,
                    knowledge,
                };
                self.apply_in(txn, db, incoming, resolver, page)
            },
            is_storage_full,
        )
    }

    /// [`Store::apply_session_page`] for a page whose records are checked inside the write
    /// transaction that applies them: `screen` is given the syncgroups of `db` this node holds
    /// (not left) as that transaction reads them, and returns what to apply (the records it
    /// kept, the knowledge to merge, the cursor) and an outcome of its own (what it refused),
    /// returned with what was applied. So a syncgroup change committed before the page is
    /// seen by the check, and none can commit between the check and the write. A page left
    /// with nothing to apply and no knowledge or cursor to change commits nothing. Conflicts
    /// resolve by `resolver`.
    pub fn apply_screened_page<T>(
        &self,
        db: &DbName,
        from: DeviceId,
        resolver: &dyn Resolver,
        screen: impl FnOnce(&[crate::syncgroup::Syncgroup], &dyn HeldNodes) -> Result<(ScreenedPage, T)>,
    ) -> Result<(Applied, T)> {
        let txn = self.storage.write()?;
        let held = syncgroups::held(txn.as_ref(), db.as_str())?;
        let nodes = TxnNodes {
            txn: txn.as_ref(),
            keys: DbKeys::new(db.as_str()),
        };
        let (page, outcome) = screen(&held, &nodes)?;
        let ScreenedPage {
            records,
            knowledge,
            from: page,
        } = page;
        let knowledge = knowledge.as_ref();
        if records.is_empty()
            && page.cursor != CursorUpdate::Forget
            && !knowledge_would_grow(txn.as_ref(), db, knowledge)?
            && !report_is_new(txn.as_ref(), db, &page.peer, knowledge)?
        {
            return Ok((Applied::default(), outcome)); // dropped: nothing committed
        }
        let incoming = Incoming {
            from,
            records: &records,
            knowledge,
        };
        let applied = self.apply_in(txn, db, incoming, resolver, &page)?;
        Ok((applied, outcome))
    }

    /// The body of [`Store::apply_session_page`], in `txn`, which it commits.
    fn apply_in(
        &self,
        mut txn: Box<dyn syncbase_storage::WriteTxn + '_>,
        db: &DbName,
        incoming: Incoming<'_>,
        resolver: &dyn Resolver,
        page: &PageFrom,
    ) -> Result<Applied> {
        let Incoming {
            from,
            records,
            knowledge,
        } = incoming;
        let stale = page
            .asked_at
            .is_some_and(|asked_at| asked_at != self.lowerings());
        let report = knowledge;
        let (knowledge, cursor) = match (stale, &page.cursor) {
            (true, CursorUpdate::Save(_)) => (None, &CursorUpdate::Keep),
            (true, cursor) => (None, cursor),
            (false, cursor) => (knowledge, cursor),
        };
        let peer = page.peer.as_str();
        let caps = notice::caps(txn.as_ref(), &DbKeys::new(db.as_str()))?;
        let mut writer = DbWriter::new(txn.as_mut(), db.as_str())?;
        if let (Some(response), false) = (report, peer.is_empty()) {
            // The responder's knowledge at its snapshot: a report of what that member knows,
            // kept even when it adds nothing to this node's knowledge or the session is stale.
            let keys = DbKeys::new(db.as_str());
            members::note(writer.txn(), &keys, peer, response, self.env.now_nanos())?;
        }
        let applied = apply::apply(&mut writer, &self.writer(), resolver, from, records)?;
        if let Some(response) = knowledge {
            let mut mine = writer.knowledge()?;
            mine.merge_response(response);
            notice::cap(&caps, &mut mine);
            writer.set_knowledge(&mine)?;
        }
        writer.finish(self.clock.last())?;
        resume::update(txn.as_mut(), &DbKeys::new(db.as_str()), peer, cursor)?;
        txn.commit()?;
        Ok(applied)
    }

    /// Twice the number of times an epoch notice lowered knowledge since the store opened
    /// (odd while one is committing). Read it before the knowledge a request is built from.
    pub fn lowerings(&self) -> u64 {
        self.lowerings.load(Ordering::SeqCst)
    }

    /// This node's epoch notices for `db` (its latest epochs, `store::notice`).
    pub fn announced_notices(&self, db: &DbName) -> Result<Vec<Notice>> {
        notice::announced(self.storage.read()?.as_ref(), &DbKeys::new(db.as_str()))
    }

    /// This node's epoch notices for `db` and its device id, read in one snapshot: the
    /// device the notices go with. ([`Store::device`] is the in-memory id, which an epoch
    /// switches just before its commit: a session that took that id with notices read
    /// before the commit would serve under the new device and never announce the epoch.)
    pub fn announced_notices_with_device(&self, db: &DbName) -> Result<(Vec<Notice>, DeviceId)> {
        let txn = self.storage.read()?;
        let notices = notice::announced(txn.as_ref(), &DbKeys::new(db.as_str()))?;
        let device = match txn.get(&keys::device_id())? {
            Some(bytes) => decode(&bytes, "device id")?,
            None => self.device(),
        };
        Ok((notices, device))
    }

    /// The epoch notices taken from peers in `db`.
    pub fn taken_notices(&self, db: &DbName) -> Result<Vec<Notice>> {
        notice::taken(self.storage.read()?.as_ref(), &DbKeys::new(db.as_str()))
    }

    /// Whether [`Store::take_notices`] would take any of these notices now (a read).
    pub fn would_take_notices(
        &self,
        db: &DbName,
        announcer: DeviceId,
        notices: &[Notice],
    ) -> Result<bool> {
        notice::any_takable(
            self.storage.read()?.as_ref(),
            &DbKeys::new(db.as_str()),
            (announcer, self.device()),
            notices,
        )
    }

    /// Takes the epoch notices a responder whose device is `announcer` sent for `db`, in one
    /// transaction (`store::notice`): each new one of the announcer's lineage lowers the
    /// knowledge of its device to its safe point, the resume cursors are forgotten, and the
    /// notices taken are remembered.
    pub fn take_notices(
        &self,
        db: &DbName,
        announcer: DeviceId,
        notices: &[Notice],
    ) -> Result<Taken> {
        self.take_notices_checked(db, announcer, notices, |_| true)
    }

    /// [`Store::take_notices`] if `may_announce`, given the syncgroups of `db` this node holds
    /// (not left) as read inside the same transaction, says the announcer may speak for its
    /// lineage; nothing is taken otherwise.
    pub fn take_notices_checked(
        &self,
        db: &DbName,
        announcer: DeviceId,
        notices: &[Notice],
        may_announce: impl FnOnce(&[crate::syncgroup::Syncgroup]) -> bool,
    ) -> Result<Taken> {
        let keys = DbKeys::new(db.as_str());
        let me = self.device();
        let mut txn = self.storage.write()?;
        if !may_announce(&syncgroups::held(txn.as_ref(), db.as_str())?) {
            return Ok(Taken::default());
        }
        let taken = notice::take(txn.as_mut(), &keys, (announcer, me), notices)?;
        if taken.notices.is_empty() {
            return Ok(taken);
        }
        // Bumped to odd before the commit and to even after it: a session that read the
        // counter before this commit, or while it was under way, differs from it afterwards.
        let bump = u64::from(taken.lowered);
        self.lowerings.fetch_add(bump, Ordering::SeqCst);
        let committed = txn.commit();
        self.lowerings.fetch_add(bump, Ordering::SeqCst);
        committed?;
        Ok(taken)
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
            self.issuer(),
            initiator,
            served,
            position,
        )
    }

    /// This store as the issuer of resume tokens: its device and this run's id.
    fn issuer(&self) -> resume::Issuer {
        resume::Issuer {
            device: self.device(),
            run: self.run,
        }
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
            self.issuer(),
            initiator,
            served,
            token,
        )
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

    /// The storage's size figures in bytes (file, used, map, maximum, reserve). Errors: the
    /// storage's (`Internal:` from a backend that reports none).
    pub fn usage(&self) -> Result<Usage> {
        Ok(self.storage.usage()?)
    }

    /// The database's counters.
    pub fn state(&self, db: &DbName) -> Result<SyncState> {
        load_state(self.storage.read()?.as_ref(), &DbKeys::new(db.as_str()))
    }

    /// What this node knows of other devices' records in the database.
    pub fn knowledge(&self, db: &DbName) -> Result<Knowledge> {
        load_knowledge(self.storage.read()?.as_ref(), &DbKeys::new(db.as_str()))
    }

    /// The database's collection floor: per scope, the generations at or below which its
    /// records may have been collected here (empty if nothing was). An initiator whose
    /// knowledge does not cover it cannot be served from the log (`BehindHorizon:`).
    pub fn floor(&self, db: &DbName) -> Result<Knowledge> {
        load_floor(self.storage.read()?.as_ref(), &DbKeys::new(db.as_str()))
    }

    /// The database's collection floor as stored, not kept at epochs' safe points as
    /// [`Store::floor`] is: what this node collected or caught up past by state (rule c of
    /// `store::state` raises it to the responder's knowledge and floor). A getDeltas request
    /// carries it (`sync::responder::check_floor`).
    pub fn stored_floor(&self, db: &DbName) -> Result<Knowledge> {
        let txn = self.storage.read()?;
        match txn.get(&DbKeys::new(db.as_str()).floor())? {
            Some(bytes) => crate::store::records::decode(&bytes, "collection floor"),
            None => Ok(Knowledge::new()),
        }
    }

    /// Keeps `knowledge` as a report of what `peer` knows of `db` now (the knowledge its
    /// getDeltas request carried), for collection (`store::members`). Reports are what lets
    /// collection free a full store, and a member's are bounded (`MAX_REPORTS`), so the
    /// write is a freeing one (it may use the reserve), redone once on `StorageFull:`.
    pub fn note_member_knowledge(
        &self,
        db: &DbName,
        peer: &str,
        knowledge: &Knowledge,
    ) -> Result<()> {
        let note = || {
            let mut txn = self.storage.write_freeing()?;
            let keys = DbKeys::new(db.as_str());
            members::note(txn.as_mut(), &keys, peer, knowledge, self.env.now_nanos())?;
            txn.commit()?;
            Ok(())
        };
        retry_full(note, is_storage_full)
    }

    /// What `peer` reported it knows of `db` (`store::members`).
    pub fn member_report(&self, db: &DbName, peer: &str) -> Result<Reports> {
        members::of(
            self.storage.read()?.as_ref(),
            &DbKeys::new(db.as_str()),
            peer,
        )
    }

    /// What each member reported it knows of `db`, by fingerprint (`store::members`).
    pub fn member_reports(&self, db: &DbName) -> Result<Vec<(String, Reports)>> {
        members::all(self.storage.read()?.as_ref(), &DbKeys::new(db.as_str()))
    }

    /// One bounded step of history garbage collection in `db` (`store::collect`): raises the
    /// floor to `cut` and removes what it covers among up to `max_entries` log entries (and
    /// then watch-feed changes) from `cursor`, in one write transaction. Returns where the
    /// next step starts and what this one removed.
    pub fn collect_step(
        &self,
        db: &DbName,
        cut: &Cut,
        cursor: CollectCursor,
        max_entries: usize,
    ) -> Result<(CollectCursor, Collected)> {
        retry_full(
            || self.collect_step_once(db, cut, cursor, max_entries),
            is_storage_full,
        )
    }

    /// One attempt at [`Store::collect_step`], in its own freeing transaction (which may
    /// use the storage's reserve, so collection succeeds in a store ordinary writes filled).
    fn collect_step_once(
        &self,
        db: &DbName,
        cut: &Cut,
        cursor: CollectCursor,
        max_entries: usize,
    ) -> Result<(CollectCursor, Collected)> {
        let mut txn = self.storage.write_freeing()?;
        let keys = DbKeys::new(db.as_str());
        let mut collected = Collected::default();
        let next = collect::step(
            txn.as_mut(),
            &keys,
            cut,
            cursor,
            max_entries,
            &mut collected,
        )?;
        if collected != Collected::default() || next.done {
            txn.commit()?;
        }
        Ok((next, collected))
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
            self.device(),
            request,
        )
    }

    /// The lowest watch-feed sequence a watch of `db` may resume from: collection removed
    /// changes below it (`store::collect`); 0 if it removed none a watcher needs.
    pub fn feed_floor(&self, db: &DbName) -> Result<u64> {
        log::load_feed_floor(self.storage.read()?.as_ref(), &DbKeys::new(db.as_str()))
    }

    /// Watch-feed items from sequence `from` on, filtered to a table and row prefix, within
    /// `limit` (changes looked at, and key and value bytes: at least one item); also the
    /// sequence to continue from and whether a limit stopped the read. `Compacted:` if `from`
    /// is below the feed floor ([`Store::feed_floor`]) in the snapshot read.
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
                // The head alone: a collected head's node metadata is this node's business.
                let (_, kept) = split_head(value).map_err(visitor_error)?;
                hasher.update(key);
                hasher.update(&value[..value.len() - kept.len()]);
                Ok(Scan::Continue)
            })?;
        Ok(hasher.digest())
    }

    fn writer(&self) -> Writer<'_> {
        Writer {
            device: self.device(),
            clock: &self.clock,
            random: self.env.random.as_ref(),
        }
    }
}

/// Whether `error` is a lack of room in storage (`StorageFull:`), which one more attempt of
/// the whole transaction may get past (`syncbase_storage::retry_full`).
fn is_storage_full(error: &Error) -> bool {
    matches!(error, Error::StorageFull(_))
}

/// Whether `response`, the knowledge a page from `peer` carries, differs from the latest
/// report kept of that member (`store::members`): then the page commits, for the report.
fn report_is_new(
    txn: &dyn syncbase_storage::ReadTxn,
    db: &DbName,
    peer: &str,
    response: Option<&Knowledge>,
) -> Result<bool> {
    let Some(response) = response else {
        return Ok(false);
    };
    if peer.is_empty() {
        return Ok(false);
    }
    let reports = members::of(txn, &DbKeys::new(db.as_str()), peer)?;
    Ok(reports
        .reports
        .last()
        .is_none_or(|last| &last.knowledge != response))
}

/// Whether merging `response` would change the knowledge `txn` holds for `db` (if not, a
/// page with no records needs no commit but for a new report, [`report_is_new`]).
fn knowledge_would_grow(
    txn: &dyn syncbase_storage::ReadTxn,
    db: &DbName,
    response: Option<&Knowledge>,
) -> Result<bool> {
    let Some(response) = response else {
        return Ok(false);
    };
    let keys = DbKeys::new(db.as_str());
    let mine = load_knowledge(txn, &keys)?;
    let mut merged = mine.clone();
    merged.merge_response(response);
    notice::cap(&notice::caps(txn, &keys)?, &mut merged);
    Ok(merged != mine)
}

fn load_or_create_device(storage: &dyn Storage, env: &Env) -> Result<DeviceId> {
    if let Some(bytes) = storage.read()?.get(&keys::device_id())? {
        return decode(&bytes, "device id");
    }
    let device = DeviceId(Version::random(env.random.as_ref())?.0);
    let mut txn = storage.write()?;
    txn.put(&keys::device_id(), &encode(&device)?)?;
    txn.commit()?;
    Ok(device)
}

/// A device id of `old`'s lineage with fresh random epoch bits: neither 0 nor `old` nor any
/// earlier epoch's.
fn fresh_device(txn: &dyn syncbase_storage::ReadTxn, old: DeviceId, env: &Env) -> Result<DeviceId> {
    let used: Vec<DeviceId> = epoch::history(txn)?
        .iter()
        .flat_map(|epoch| [epoch.device, epoch.replaced])
        .collect();
    if used.len() >= usize::from(u16::MAX) {
        return Err(Error::Internal(format!(
            "device lineage {:012x} has used every epoch",
            old.lineage()
        )));
    }
    loop {
        let epoch = Version::random(env.random.as_ref())?.0 as u16;
        let device = old.with_epoch(epoch);
        if device.0 != 0 && device != old && !used.contains(&device) {
            return Ok(device);
        }
    }
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
pub(crate) mod test_sync;
#[cfg(test)]
pub(crate) mod test_txn;
#[cfg(test)]
mod tests;

#[cfg(test)]
mod epoch_tests;

#[cfg(test)]
mod state_tests;

#[cfg(test)]
mod env_tests;

#[cfg(test)]
mod collect_tests;

#[cfg(test)]
mod room_tests;
