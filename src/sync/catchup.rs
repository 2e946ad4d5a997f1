//! Catch-up by state (issue 12), without Cap'n Proto: when a responder refuses a data session
//! with `BehindHorizon:` (records the initiator lacks were collected there), the initiator
//! reconciles the sets of row heads under the scopes it asked for with the responder's,
//! fetches the heads it lacks, applies them by the rules of `store::state`, merges the
//! responder's knowledge and floor, and then asks for deltas again.
//!
//! The exchange (both sides):
//! 1. `reconcileState(db, scopes)`: the responder checks that the caller may read every
//!    scope (`Host::may_read_scope`, as for GetDeltas), takes one read snapshot of its row
//!    heads under them (tombstones included), its knowledge and its collection floor, and
//!    answers with its device, the knowledge and the floor, and a session holding the items.
//! 2. `reconcile(message)` rounds of negentropy (the `negentropy` crate, protocol v1): each
//!    item is a row head, id [`crate::store::state_id`] (blake3 of table, row, version),
//!    timestamp 0; each message is at most [`FRAME_LIMIT`] bytes, and at most [`MAX_ROUNDS`]
//!    rounds are made. The initiator learns the ids only it holds and the ids it lacks.
//! 3. `fetch(ids, sink)`: at most [`MAX_FETCH_IDS`] ids a call; the responder pushes the
//!    current head of each id's row as an ordinary log record (its DAG node under the node's
//!    own device and generation) in pages bounded as data pages are (`paging::DATA`). The
//!    initiator applies each page in one commit (`Host::apply_state`, rule a).
//! 4. One last commit (rules b and c): rows only the initiator holds, then the responder's
//!    knowledge and floor merged; the link then asks for deltas again from there.
//!
//! Memory: a responder session keeps its snapshot's items, each the id and the row's table
//! and key (32 bytes plus at most 320), so at most about 350 MiB for a million rows, freed
//! when the initiator drops the session. The initiator holds its own items the same way.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;

use negentropy::{Id, Negentropy, NegentropyStorageVector};

use crate::error::{Error, Result};
use crate::genvec::{DeviceId, Knowledge, Scope};
use crate::identity::Fingerprint;
use crate::names::DbName;
use crate::paging::{self, PageFill};
use crate::store::{LogRecord, StateApplied, StateStep};
use crate::sync::host::Host;

/// The most bytes one negentropy message may take, either way (the crate's frame size limit).
pub const FRAME_LIMIT: u64 = 512 << 10;
/// The most ids one `fetch` call may name (32 bytes each: 256 KiB).
pub const MAX_FETCH_IDS: usize = 8192;
/// The most negentropy rounds one catch-up makes (each splits the differing ranges 16 ways,
/// so a million rows settle in well under 16).
pub const MAX_ROUNDS: usize = 64;

/// What an initiator asks to reconcile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateRequest {
    pub db: DbName,
    pub scopes: Vec<Scope>,
}

/// The responder's first answer: its device, and its knowledge and collection floor for the
/// scopes, read from the same snapshot as the items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateBegin {
    pub responder: DeviceId,
    pub knowledge: Knowledge,
    pub floor: Knowledge,
    /// The scopes served: those asked for that the caller may read (`reconcileState` leaves
    /// the others out, as getDeltas does).
    pub scopes: Vec<Scope>,
}

/// One catch-up-by-state session at a peer, as the initiator calls it.
pub trait StateSession {
    /// One negentropy round: the initiator's message, the responder's answer. Errors as
    /// `PeerClient::get_deltas`'s.
    fn reconcile(&self, message: Vec<u8>) -> impl Future<Output = Result<Vec<u8>>>;

    /// Fetches the current heads of the rows whose ids the responder holds; its pages go to
    /// `pages`, in order. Resolves when the responder ended the call.
    fn fetch<H: Host>(
        &self,
        ids: Vec<[u8; 32]>,
        pages: Rc<StatePages<H>>,
    ) -> impl Future<Output = Result<()>>;
}

/// What one catch-up did, and what it cost on the wire.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CaughtUp {
    pub applied: StateApplied,
    /// Negentropy rounds made.
    pub rounds: u64,
    /// Bytes of negentropy messages sent and received.
    pub message_bytes: u64,
    /// Ids fetched (the heads the initiator lacked).
    pub fetched_ids: u64,
    /// Ids only the initiator held.
    pub only_here: u64,
    /// Records fetched and their payload bytes (`LogRecord::payload_len`).
    pub records: u64,
    pub record_bytes: u64,
}

/// Why a catch-up failed: the peer refused or broke a call (its error, typed), or this node
/// failed (reading its store, applying a page, or an answer that breaks the protocol).
#[derive(Debug, Clone)]
pub enum CatchUpError {
    Peer(Error),
    Local(Error),
}

/// Catches up `db` by state from `peer` for `scopes` (see the module doc) through `open`,
/// which opens the session (the link's `PeerClient::reconcile_state`). Errors: the peer's
/// (kept typed), or this node's (`StorageFull:`, `NoAccess:` for a head whose writer may not
/// write here, `InvalidArgument:` for an answer that breaks the protocol).
pub async fn catch_up<H, S, F>(
    host: &Arc<H>,
    peer: &Fingerprint,
    request: StateRequest,
    open: F,
) -> std::result::Result<CaughtUp, CatchUpError>
where
    H: Host,
    S: StateSession,
    F: Future<Output = Result<(StateBegin, S)>>,
{
    use CatchUpError::{Local, Peer};
    let store = host.store();
    let (begin, session) = open.await.map_err(Peer)?;
    check_begin(&request, &begin, store.device()).map_err(Local)?;
    refuse_a_copy(host, peer, &request.db, &begin).await?;
    // Only the scopes the responder serves: a row under another is not "only here".
    let request = StateRequest {
        db: request.db,
        scopes: begin.scopes.clone(),
    };
    let items = store
        .state_items(&request.db, &request.scopes)
        .map_err(Local)?;
    let rows_of: HashMap<[u8; 32], (String, String)> = items
        .iter()
        .map(|item| (item.id, (item.table.clone(), item.row.clone())))
        .collect();
    let mut negentropy = storage(items.iter().map(|item| item.id))
        .and_then(|storage| Negentropy::owned(storage, FRAME_LIMIT).map_err(protocol))
        .map_err(Local)?;
    let mut message = negentropy.initiate().map_err(protocol).map_err(Local)?;
    let mut done = CaughtUp::default();
    let (mut have, mut need) = (Vec::new(), Vec::new());
    loop {
        done.rounds += 1;
        if done.rounds as usize > MAX_ROUNDS {
            return Err(Local(Error::invalid(format!(
                "catch-up by state did not settle in {MAX_ROUNDS} rounds"
            ))));
        }
        done.message_bytes += message.len() as u64;
        let answer = session.reconcile(message).await.map_err(Peer)?;
        done.message_bytes += answer.len() as u64;
        match negentropy
            .reconcile_with_ids(&answer, &mut have, &mut need)
            .map_err(protocol)
            .map_err(Local)?
        {
            Some(next) => message = next,
            None => break,
        }
    }
    // negentropy hands the ids out of a hash set: sorted, a seeded run replays.
    need.sort_unstable();
    have.sort_unstable();
    // What is left to fetch, shown as the log's "pending in" is (`status`, `sg join`'s bar).
    let to_fetch = need.len() as u64;
    host.peers()
        .update_status(peer, |status| status.pending_in = to_fetch);
    let pages = Rc::new(StatePages::new(
        host.clone(),
        peer.clone(),
        &request,
        &begin,
    ));
    for ids in need.chunks(MAX_FETCH_IDS) {
        let ids: Vec<[u8; 32]> = ids.iter().map(id_bytes).collect();
        let fetched = session.fetch(ids, pages.clone()).await;
        // This node's failure on a page, not the peer's echo of it.
        if let Some(error) = pages.failure() {
            return Err(Local(error));
        }
        fetched.map_err(Peer)?;
    }
    let fetched = pages.rows.take();
    let only_here: Vec<(String, String)> = have
        .iter()
        .filter_map(|id| rows_of.get(&id_bytes(id)))
        .filter(|row| !fetched.contains(*row))
        .cloned()
        .collect();
    let step = StateStep::Finish {
        peer: peer.as_str().to_owned(),
        rows: only_here,
        knowledge: begin.knowledge.clone(),
        floor: begin.floor.clone(),
    };
    let finished = host
        .apply_state(request.db.clone(), peer, step)
        .await
        .map_err(Local)?;
    done.applied = pages.applied.take();
    done.applied.add(finished);
    done.fetched_ids = need.len() as u64;
    done.only_here = have.len() as u64;
    done.records = pages.records.get();
    done.record_bytes = pages.bytes.get();
    host.peers().update_status(peer, |status| {
        status.catch_ups += 1;
        status.pending_in = 0;
    });
    Ok(done)
}

/// The 32 bytes of a negentropy id.
fn id_bytes(id: &Id) -> [u8; 32] {
    **id
}

/// A sealed negentropy storage of `ids`.
fn storage(ids: impl Iterator<Item = [u8; 32]>) -> Result<NegentropyStorageVector> {
    let mut storage = NegentropyStorageVector::new();
    for id in ids {
        storage
            .insert(0, Id::from_byte_array(id))
            .map_err(protocol)?;
    }
    storage.seal().map_err(protocol)?;
    Ok(storage)
}

fn protocol(error: negentropy::Error) -> Error {
    Error::invalid(format!("catch-up by state: negentropy: {error}"))
}

/// The responder's knowledge and floor must stay inside the scopes asked for, and name a
/// real peer device.
/// Like a data page's knowledge (`sync::initiator`), a responder's knowledge or floor holding
/// more of this node's generations than it made shows that this store was restored or
/// copied: the node moves to a fresh device id (an epoch) before taking anything, so none of
/// its next writes reuses a (device, generation) pair the responder holds for another record.
async fn refuse_a_copy<H: Host>(
    host: &Arc<H>,
    peer: &Fingerprint,
    db: &DbName,
    begin: &StateBegin,
) -> std::result::Result<(), CatchUpError> {
    let store = host.store();
    let me = store.device();
    let own = store
        .state(db)
        .map_err(CatchUpError::Local)?
        .own_generation();
    let claimed = begin.knowledge.max_gen(me).max(begin.floor.max_gen(me));
    if claimed <= own {
        return Ok(());
    }
    let reason = format!(
        "peer {peer} holds generation {claimed} of this node's device {:016x}, which has made \
         {own}, in database {:?}: this store was restored from a backup or copied",
        me.0,
        db.as_str()
    );
    let clash = Some((db.clone(), own.next()));
    host.start_epoch(me, reason.clone(), clash)
        .await
        .map_err(CatchUpError::Local)?;
    Err(CatchUpError::Local(Error::BadState(format!(
        "{reason}; this node moved to a new device id ({:016x}, an epoch) and syncs again",
        store.device().0
    ))))
}

fn check_begin(request: &StateRequest, begin: &StateBegin, me: DeviceId) -> Result<()> {
    if begin.responder.0 == 0 || begin.responder == me {
        return Err(Error::invalid(format!(
            "responder device {:016x} is not a peer's",
            begin.responder.0
        )));
    }
    if begin.scopes.is_empty() {
        return Err(Error::invalid(
            "catch-up by state: the responder serves no scope",
        ));
    }
    if let Some(scope) = begin
        .scopes
        .iter()
        .find(|served| !request.scopes.contains(served))
    {
        return Err(Error::invalid(format!(
            "catch-up by state: the responder serves scope {scope}, which was not asked for"
        )));
    }
    for (scope, _) in begin.knowledge.iter().chain(begin.floor.iter()) {
        if !begin.scopes.iter().any(|asked| asked.contains(scope)) {
            return Err(Error::invalid(format!(
                "catch-up by state: knowledge for scope {scope}, which was not asked for"
            )));
        }
    }
    Ok(())
}

/// Takes the pages of head records a responder pushes for one catch-up, in order, one commit
/// each (rule a of `store::state`); none after a failed one.
pub struct StatePages<H: Host> {
    host: Arc<H>,
    peer: Fingerprint,
    db: DbName,
    scopes: Vec<Scope>,
    begin: StateBegin,
    order: tokio::sync::Mutex<()>,
    failure: RefCell<Option<Error>>,
    rows: RefCell<BTreeSet<(String, String)>>,
    applied: RefCell<StateApplied>,
    records: Cell<u64>,
    bytes: Cell<u64>,
}

impl<H: Host> StatePages<H> {
    fn new(host: Arc<H>, peer: Fingerprint, request: &StateRequest, begin: &StateBegin) -> Self {
        StatePages {
            host,
            peer,
            db: request.db.clone(),
            scopes: request.scopes.clone(),
            begin: begin.clone(),
            order: tokio::sync::Mutex::new(()),
            failure: RefCell::new(None),
            rows: RefCell::new(BTreeSet::new()),
            applied: RefCell::new(StateApplied::default()),
            records: Cell::new(0),
            bytes: Cell::new(0),
        }
    }

    /// Applies one pushed page (`Err`: it did not decode). A failure is kept and refuses every
    /// later page.
    pub async fn push(&self, page: Result<Vec<LogRecord>>) -> Result<()> {
        let _in_order = self.order.lock().await;
        if self.failure.borrow().is_some() {
            return Err(Error::BadState(
                "an earlier page of this call failed".into(),
            ));
        }
        let outcome = match page {
            Ok(records) => self.apply(records).await,
            Err(error) => Err(error),
        };
        if let Err(error) = &outcome {
            self.failure.replace(Some(error.clone()));
        }
        outcome
    }

    /// This node's failure taking a page, if one failed.
    pub fn failure(&self) -> Option<Error> {
        self.failure.borrow().clone()
    }

    async fn apply(&self, records: Vec<LogRecord>) -> Result<()> {
        for record in &records {
            if !self
                .scopes
                .iter()
                .any(|scope| scope.covers(&record.table, &record.row))
            {
                return Err(Error::invalid(format!(
                    "catch-up by state: record for {} is outside the scopes asked for",
                    crate::names::row_text(&record.table, &record.row)
                )));
            }
        }
        let bytes: usize = records.iter().map(LogRecord::payload_len).sum();
        let rows: Vec<_> = records
            .iter()
            .map(|record| (record.table.clone(), record.row.clone()))
            .collect();
        let count = records.len() as u64;
        let step = StateStep::Page {
            from: self.begin.responder,
            records,
            knowledge: self.begin.knowledge.clone(),
        };
        let applied = self
            .host
            .apply_state(self.db.clone(), &self.peer, step)
            .await?;
        for resolution in &applied.resolutions {
            tracing::info!(
                db = %self.db.as_str(),
                table = %resolution.table,
                row = %resolution.row,
                winner = %resolution.winner.to_hex(),
                rule = self.host.resolver().name(),
                "conflict resolved (catch-up by state)"
            );
        }
        self.applied.borrow_mut().add(applied);
        self.rows.borrow_mut().extend(rows);
        self.records.set(self.records.get() + count);
        self.bytes.set(self.bytes.get() + bytes as u64);
        self.host.peers().update_status(&self.peer, |status| {
            status.records_received += count;
            status.bytes_received += bytes as u64;
            status.pending_in = status.pending_in.saturating_sub(count);
        });
        Ok(())
    }
}

/// The responder's side of one catch-up session for one authenticated peer: the snapshot's
/// items in a negentropy instance, and which row each id names.
pub struct StateResponder<H: Host> {
    node: Arc<H>,
    peer: Fingerprint,
    request: StateRequest,
    negentropy: RefCell<Negentropy<'static, NegentropyStorageVector>>,
    rows: HashMap<[u8; 32], (String, String)>,
}

impl<H: Host> StateResponder<H> {
    /// Opens a session over the scopes asked for that `peer` may read (`NoAccess:` if none;
    /// `InvalidArgument:` for no scope), then takes the snapshot.
    pub fn begin(
        node: Arc<H>,
        peer: Fingerprint,
        request: StateRequest,
    ) -> Result<(StateBegin, StateResponder<H>)> {
        let request = StateRequest {
            scopes: authorize(&*node, &peer, &request)?,
            db: request.db,
        };
        let store = node.store();
        let snapshot = store.state_snapshot(&request.db, &request.scopes)?;
        let negentropy = Negentropy::owned(
            storage(snapshot.items.iter().map(|item| item.id))?,
            FRAME_LIMIT,
        )
        .map_err(protocol)?;
        let rows = snapshot
            .items
            .into_iter()
            .map(|item| (item.id, (item.table, item.row)))
            .collect();
        let begin = StateBegin {
            responder: store.device(),
            knowledge: snapshot.knowledge,
            floor: snapshot.floor,
            scopes: request.scopes.clone(),
        };
        let responder = StateResponder {
            node,
            peer,
            request,
            negentropy: RefCell::new(negentropy),
            rows,
        };
        Ok((begin, responder))
    }

    /// This node's device (named in every pushed page).
    pub fn device(&self) -> DeviceId {
        self.node.store().device()
    }

    /// Answers one negentropy message (at most [`FRAME_LIMIT`] bytes either way).
    pub fn reconcile(&self, message: &[u8]) -> Result<Vec<u8>> {
        authorize(&*self.node, &self.peer, &self.request)?;
        if message.len() as u64 > FRAME_LIMIT {
            return Err(Error::invalid(format!(
                "a reconcile message of {} bytes, over {FRAME_LIMIT}",
                message.len()
            )));
        }
        self.negentropy
            .borrow_mut()
            .reconcile(message)
            .map_err(protocol)
    }

    /// Checks a fetch: at most [`MAX_FETCH_IDS`] ids, each one of this session's; the rows
    /// they name, in order.
    pub fn rows_for(&self, ids: &[[u8; 32]]) -> Result<Vec<(String, String)>> {
        authorize(&*self.node, &self.peer, &self.request)?;
        if ids.len() > MAX_FETCH_IDS {
            return Err(Error::invalid(format!(
                "a fetch of {} ids, over {MAX_FETCH_IDS}",
                ids.len()
            )));
        }
        ids.iter()
            .map(|id| {
                self.rows
                    .get(id)
                    .cloned()
                    .ok_or_else(|| Error::invalid("a fetch names an id this session never offered"))
            })
            .collect()
    }

    /// The next page of head records for `rows` from `from` on, bounded as a data page
    /// (`paging::DATA`), and where the next page starts (`rows.len()` when done). Rows gone
    /// since the snapshot are skipped; a row written since is sent at its current head.
    pub fn page(&self, rows: &[(String, String)], from: usize) -> Result<(Vec<LogRecord>, usize)> {
        authorize(&*self.node, &self.peer, &self.request)?;
        let store = self.node.store();
        let mut fill = PageFill::new(paging::DATA.limit);
        let mut records = Vec::new();
        let mut next = from;
        while next < rows.len() && !fill.is_full() {
            let Some(record) = store
                .head_records(&self.request.db, std::slice::from_ref(&rows[next]))?
                .pop()
            else {
                next += 1;
                continue;
            };
            if !fill.take(record.payload_len()) {
                break;
            }
            records.push(record);
            next += 1;
        }
        self.count_sent(&records);
        Ok((records, next))
    }

    fn count_sent(&self, records: &[LogRecord]) {
        let bytes: usize = records.iter().map(LogRecord::payload_len).sum();
        self.node.peers().update_status(&self.peer, |status| {
            status.records_sent += records.len() as u64;
            status.bytes_sent += bytes as u64;
        });
    }
}

/// The scopes asked for that the caller may read: at least one (`NoAccess:`), and the
/// database held here.
fn authorize(node: &impl Host, peer: &Fingerprint, request: &StateRequest) -> Result<Vec<Scope>> {
    if request.scopes.is_empty() {
        return Err(Error::invalid("reconcileState names no scope"));
    }
    let db = request.db.as_str();
    let mut readable = Vec::with_capacity(request.scopes.len());
    for scope in &request.scopes {
        if node.may_read_scope(peer, &request.db, scope)? {
            readable.push(scope.clone());
        }
    }
    if readable.is_empty() {
        return Err(Error::NoAccess(format!(
            "{peer} holds no Read capability for any scope asked for ({}) of database {db:?}",
            request
                .scopes
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    if !node.store().has_database(&request.db)? {
        return Err(Error::NoAccess(format!(
            "database {db:?} is not shared with this peer"
        )));
    }
    Ok(readable)
}
