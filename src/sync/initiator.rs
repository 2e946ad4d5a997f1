//! The initiator side of a sync session with one peer for one database (reference §2.4),
//! without Cap'n Proto: builds the request from this node's knowledge, checks every page the
//! responder pushes (records only under the scopes asked for, knowledge only for them), and
//! applies each page in one commit. A page showing that the responder holds generations of this
//! node's device beyond what it has made, or another record at one it made, means this store
//! was restored or copied: the node starts an epoch (`Host::start_epoch`) and the session ends.
//! A page that fails a check is refused whole: nothing of it is committed, the session ends
//! with the error, and the next session starts from the knowledge last committed, or from the
//! resume cursor committed with the last page applied (`store::resume`): each page's token is
//! kept with the page, and sent back in the next request when this node's knowledge still
//! dominates what the cursor's session asked with. A page whose records were refused forgets
//! the cursor, so they are asked for again from knowledge.
//!
//! A responder's first page carries its epoch notices (`store::notice`), taken before the
//! page is applied (`Host::take_notices`); one that lowers knowledge makes every session that
//! asked before it stale: its pages still apply records but merge no knowledge and move no
//! cursor (checked inside the page's transaction), and [`Session::knowledge_lowered`] tells
//! the link to restart it from the lowered knowledge.
//!
//! Knowledge never covers a record this node does not hold: a record dropped because its
//! writer holds no Write permission here is noted in the session's [`Refused`], every
//! knowledge the session merges from then on is lowered below it (so the next request asks
//! for it again), and [`Session::refused_now_permitted`] resolves once the syncgroup metadata
//! (or a declared peer) changed so that it would pass: the link then restarts the session,
//! which fetches it.

use std::cell::{Cell, RefCell};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::genvec::{DeviceId, Generation, Knowledge, Scope};
use crate::identity::Fingerprint;
use crate::names::DbName;
use crate::store::{Applied, CursorUpdate, LogRecord, Mark, Notice, ResumeCursor};
use crate::sync::host::Host;
use crate::sync::refused::Refused;
use crate::sync::responder::{DeltaRequest, once_it_holds};
use crate::sync::screen::{IncomingPage, Screened};

/// One database's sync with one peer.
pub struct Session<H: Host> {
    node: Arc<H>,
    peer: Fingerprint,
    /// This node's failure applying a page, if one failed.
    failure: RefCell<Option<Error>>,
    /// The responder's device, as its first push named it.
    responder: Cell<Option<DeviceId>>,
    /// This node's device when the request was built.
    asked_as: Cell<Option<DeviceId>>,
    db: DbName,
    scopes: Vec<Scope>,
    /// The records this session refused (kept out of the knowledge it merges).
    refused: RefCell<Refused>,
    /// Signalled whenever a refusal is noted, so a waiter re-examines it.
    refusal: tokio::sync::Notify,
    /// The knowledge this session asked with (set by [`Session::request`]).
    asked: RefCell<Option<Knowledge>>,
    /// Whether this session's pages may move the resume cursor: not after one whose records
    /// were refused.
    resumable: Cell<bool>,
    /// [`crate::store::Store::lowerings`] when the request was built: once an epoch notice
    /// lowers knowledge, this session merges no more knowledge and is restarted.
    asked_at: Cell<Option<u64>>,
}

/// One page as a responder pushed it.
#[derive(Debug, Clone)]
pub struct Push {
    pub records: Vec<LogRecord>,
    /// The responder's knowledge, when the page ended its log.
    pub knowledge: Option<Knowledge>,
    /// Log entries the responder has yet to examine for us after this page.
    pub remaining: u64,
    /// The responder's device id (for generation vectors and echo suppression).
    pub responder: DeviceId,
    /// Where the page ends, as the responder's resume token.
    pub resume: Option<Vec<u8>>,
    /// With the knowledge: the responder's records of our device at the generations the request
    /// asked about (the first one written after each of our last opens), as digests.
    pub marks: Vec<Mark>,
    /// On the first page: the responder's epoch notices (`store::notice`).
    pub notices: Vec<Notice>,
}

impl<H: Host> Session<H> {
    pub fn new(node: Arc<H>, peer: Fingerprint, db: DbName, scopes: Vec<Scope>) -> Session<H> {
        Session {
            node,
            peer,
            failure: RefCell::new(None),
            responder: Cell::new(None),
            asked_as: Cell::new(None),
            db,
            scopes,
            refused: RefCell::new(Refused::new()),
            refusal: tokio::sync::Notify::new(),
            asked: RefCell::new(None),
            resumable: Cell::new(true),
            asked_at: Cell::new(None),
        }
    }

    /// The request for a live session: our knowledge for the shared scopes, and the resume
    /// token kept with this peer if this knowledge still dominates what it was asked with.
    pub fn request(&self) -> Result<DeltaRequest> {
        let store = self.node.store();
        // Read before the knowledge: a lowering after this makes the session stale.
        self.asked_at.set(Some(store.lowerings()));
        self.asked_as.set(Some(store.device()));
        let own = store.state(&self.db)?.own_generation();
        let knowledge = store
            .knowledge(&self.db)?
            .request_for(&self.scopes, store.device(), own);
        let resume = store
            .resume_cursor(&self.db, self.peer.as_str())?
            .filter(|cursor| cursor.valid_for(&knowledge))
            .map(|cursor| cursor.token);
        *self.asked.borrow_mut() = Some(knowledge.clone());
        Ok(DeltaRequest {
            db: self.db.clone(),
            initiator_device: store.device(),
            knowledge,
            live: true,
            resume,
            mark_at: store.mark_points(&self.db)?,
            floor: store.stored_floor(&self.db)?,
        })
    }

    /// Checks and applies one pushed page.
    pub async fn receive(&self, push: Push) -> Result<Applied> {
        let Push {
            records,
            knowledge,
            remaining,
            responder,
            resume,
            marks,
            notices,
        } = push;
        self.check_responder(responder)?;
        self.check(&records, knowledge.as_ref())?;
        self.check_device(knowledge.as_ref(), &marks).await?;
        self.node
            .take_notices(self.db.clone(), &self.peer, responder, notices)
            .await?;
        let ended_log = knowledge.is_some();
        let page = IncomingPage {
            peer: self.peer.clone(),
            records,
            knowledge,
            scopes: self.scopes.clone(),
            refused: self.refused.borrow().clone(),
            cursor: self.cursor_update(resume),
            asked_at: self.asked_at.get(),
        };
        let (applied, screened) = self
            .node
            .apply_page(self.db.clone(), responder, page)
            .await?;
        let bytes = screened.kept_bytes;
        self.note_refused(screened);
        self.node.peers().update_status(&self.peer, |status| {
            status.records_received += applied.records;
            status.bytes_received += bytes;
            status.pending_in = remaining;
            status.conflicts_resolved += applied.resolutions.len() as u64;
            if ended_log {
                status.last_success_nanos = self.node.now_nanos();
                status.rounds += 1;
            }
        });
        for resolution in &applied.resolutions {
            tracing::info!(
                db = %self.db.as_str(),
                table = %resolution.table,
                row = %resolution.row,
                ancestor = ?resolution.ancestor.map(|v| v.to_hex()),
                winner = %resolution.winner.to_hex(),
                rule = self.node.resolver().name(),
                "conflict resolved"
            );
        }
        Ok(applied)
    }

    /// What a page does to the resume cursor unless its screen refuses a record (then it
    /// forgets it, and the rest of the session leaves it): a page with a token moves it there.
    fn cursor_update(&self, resume: Option<Vec<u8>>) -> CursorUpdate {
        let asked = self.asked.borrow().clone();
        match (self.resumable.get(), resume, asked) {
            (true, Some(token), Some(asked)) => CursorUpdate::Save(ResumeCursor { token, asked }),
            _ => CursorUpdate::Keep,
        }
    }

    /// The responder's device must be a real one, not ours, and the same in every push.
    fn check_responder(&self, responder: DeviceId) -> Result<()> {
        if responder.0 == 0 || responder == self.node.store().device() {
            return Err(Error::invalid(format!(
                "responder device {:016x} is not a peer's",
                responder.0
            )));
        }
        match self.responder.get() {
            Some(known) if known != responder => Err(Error::invalid(
                "the responder changed its device id mid-session",
            )),
            _ => {
                self.responder.set(Some(responder));
                Ok(())
            }
        }
    }

    fn check(&self, records: &[LogRecord], knowledge: Option<&Knowledge>) -> Result<()> {
        let me = self.node.store().device();
        for record in records {
            if !self
                .scopes
                .iter()
                .any(|scope| scope.covers(&record.table, &record.row))
            {
                return Err(Error::invalid(format!(
                    "record for {} is outside the scopes asked for",
                    crate::names::row_text(&record.table, &record.row)
                )));
            }
            if record.device() == me {
                return Err(Error::invalid(
                    "the responder sent back a record this node made",
                ));
            }
        }
        if let Some(knowledge) = knowledge {
            self.check_knowledge(knowledge)?;
        }
        Ok(())
    }

    /// Keeps what the page's screen (run inside its commit, see [`crate::sync::screen`])
    /// refused: the records whose writer had no right to make them are logged, counted in the
    /// peer's `recordsRefused`, never applied nor relayed, and noted in the session's
    /// [`Refused`], so the knowledge it merges does not cover them and they are fetched again
    /// once permitted; the rest of the session leaves the resume cursor.
    fn note_refused(&self, screened: Screened) {
        let Screened {
            refused,
            dropped,
            orphans,
            ..
        } = screened;
        if dropped.is_empty() && orphans.is_empty() {
            return;
        }
        for record in &orphans {
            tracing::debug!(
                peer = %self.peer,
                db = %self.db.as_str(),
                table = %record.table,
                row = %record.row,
                "held back a resolution whose winner was refused"
            );
        }
        for record in &dropped {
            tracing::warn!(
                peer = %self.peer,
                db = %self.db.as_str(),
                table = %record.table,
                row = %record.row,
                device = format!("{:016x}", record.device().0),
                "dropped a record whose writer holds no Write permission"
            );
        }
        *self.refused.borrow_mut() = refused;
        self.resumable.set(false);
        self.refusal.notify_one();
        self.node.peers().update_status(&self.peer, |status| {
            status.records_refused += dropped.len() as u64
        });
    }

    /// Resolves once a record this session refused would now be accepted (the syncgroup
    /// metadata or the declared peers changed); never while nothing was refused. The caller
    /// restarts the session: its new request, from the lowered knowledge, asks for it again.
    pub async fn refused_now_permitted(&self) -> Result<()> {
        once_it_holds(&*self.node, &self.refusal, || {
            if self.refused.borrow().is_empty() {
                return Ok(false);
            }
            let check = self.node.writer_check(&self.peer, &self.db)?;
            Ok(self.refused.borrow().permitted_by(&check))
        })
        .await
    }

    /// Resolves once an epoch notice (from any peer) lowered this node's knowledge after this
    /// session's request was built: the session asked with knowledge that claimed records
    /// it must now fetch, so its later pages merge no knowledge and the caller restarts it.
    pub async fn knowledge_lowered(&self) -> Result<()> {
        let nudge = tokio::sync::Notify::new();
        once_it_holds(&*self.node, &nudge, || {
            Ok(self
                .asked_at
                .get()
                .is_some_and(|asked_at| asked_at != self.node.store().lowerings()))
        })
        .await
    }

    /// The responder's knowledge must stay inside the scopes asked for.
    fn check_knowledge(&self, knowledge: &Knowledge) -> Result<()> {
        for (scope, _) in knowledge.iter() {
            if !self.scopes.iter().any(|asked| asked.contains(scope)) {
                return Err(Error::invalid(format!(
                    "knowledge for scope {scope}, which was not asked for"
                )));
            }
        }
        Ok(())
    }

    /// A (device, generation) pair names one record, forever: if the responder holds a
    /// generation of this node's device beyond what the store has made, or another record at
    /// one it has made (the mark), this store was restored or copied. The node then starts an
    /// epoch (a fresh device id, see `store::epoch`), the page is refused, and the session
    /// ends so that it starts again as the new device. A session asked as an older device
    /// ends too.
    async fn check_device(&self, knowledge: Option<&Knowledge>, marks: &[Mark]) -> Result<()> {
        let store = self.node.store();
        let me = store.device();
        if self.asked_as.get().is_some_and(|asked| asked != me) {
            return Err(Error::BadState(format!(
                "this node moved to a new device id ({:016x}, an epoch) since the session \
                 started: sync again",
                me.0
            )));
        }
        let Some(knowledge) = knowledge else {
            return Ok(());
        };
        let Some((generation, reason)) = self.clash(knowledge, marks, me)? else {
            return Ok(());
        };
        let reason = format!(
            "peer {} {reason} in database {:?}: this store was restored from a backup or copied",
            self.peer,
            self.db.as_str()
        );
        let clash = Some((self.db.clone(), generation));
        self.node.start_epoch(me, reason.clone(), clash).await?;
        Err(Error::BadState(format!(
            "{reason}; this node moved to a new device id ({:016x}, an epoch) and syncs again",
            self.node.store().device().0
        )))
    }

    /// The first generation of `me` the responder holds differently, and how, if any: the
    /// lowest mark point where it holds another record than ours, or else the first generation
    /// beyond what we made, if it holds one.
    fn clash(
        &self,
        knowledge: &Knowledge,
        marks: &[Mark],
        me: DeviceId,
    ) -> Result<Option<(Generation, String)>> {
        let store = self.node.store();
        let own = store.state(&self.db)?.own_generation();
        let mut marks = marks.to_vec();
        marks.sort_by_key(|mark| mark.generation);
        // Our own records this node collected (`store::collect`) cannot be compared: every
        // member that counts had them, so they are no sign of a copy.
        let collected = store.floor(&self.db)?.max_gen(me);
        for mark in marks.iter().filter(|mark| mark.generation <= own) {
            let ours = store.mark_at(&self.db, me, mark.generation)?;
            if ours.is_none() && mark.generation <= collected {
                continue;
            }
            if ours.is_none_or(|ours| ours.digest != mark.digest) {
                let reason = format!(
                    "holds another record than this node's at generation {} of its device \
                     {:016x}",
                    mark.generation, me.0
                );
                return Ok(Some((mark.generation, reason)));
            }
        }
        let claimed = marks
            .iter()
            .map(|mark| mark.generation)
            .fold(knowledge.max_gen(me), Generation::max);
        if claimed > own {
            let reason = format!(
                "holds generation {claimed} of this node's device {:016x}, which has made {own}",
                me.0
            );
            return Ok(Some((own.next(), reason)));
        }
        Ok(None)
    }

    /// Records this node's failure to take a page: in the peer's status (its text), and kept
    /// with its kind for [`Self::local_failure`].
    pub fn fail(&self, error: &Error) {
        self.node.peers().update_status(&self.peer, |status| {
            status.last_error = Some(error.to_string())
        });
        self.failure.replace(Some(error.clone()));
    }

    /// The failure this node met applying a page of this session, if any (what the session
    /// ended with, rather than the peer's echo of it), with its kind.
    pub fn local_failure(&self) -> Option<Error> {
        self.failure.borrow().clone()
    }
}
