//! Syncgroup metadata sync (GetDeltas on syncgroups, reference §2.3 with `SgDeltaReq`),
//! without Cap'n Proto. Each syncgroup is one object in its own generation space; a
//! responder sends the version it holds when the initiator's vector for that syncgroup lacks
//! the version's (device, generation), and always its own vectors; the initiator keeps the
//! version that wins last-writer-wins and merges the vectors. Live, the responder re-sends
//! after every commit that changed what it would send, and re-checks the initiator's Read
//! permission each time, so an ejected member's stream ends at once with `NoAccess:`.
//!
//! Knowledge never covers a version the node refused: a live responder sends a version once
//! and keeps claiming it in its knowledge, so the initiator's session keeps the versions it
//! refused, merges no knowledge of their syncgroups for the rest of the session, and
//! [`SyncgroupSession::refused_now_acceptable`] resolves once one of them would now be taken
//! (the held copy changed), so the link re-issues the session, which asks for it again.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::identity::Fingerprint;
use crate::names::DbName;
use crate::store::{SyncgroupDeltas, SyncgroupKnowledge};
use crate::sync::host::Host;
use crate::sync::responder::{once_it_holds, wait_for_change};
use crate::syncgroup::{Removal, SyncgroupId, SyncgroupRecord};

/// One page of syncgroup metadata.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncgroupPage {
    pub records: Vec<SyncgroupRecord>,
    pub knowledge: SyncgroupKnowledge,
    /// Whether versions were left for the next page: the round has not ended (sent as the
    /// push's `remaining`, 1 or 0).
    pub more: bool,
    /// For syncgroups asked for that the initiator may no longer read, where the responder
    /// holds Admin: how the initiator lost each (`Host::syncgroup_removals`).
    pub removals: BTreeMap<SyncgroupId, Removal>,
}

/// Where syncgroup pages go.
pub trait SyncgroupSink {
    /// Room for one page; given back when dropped unused.
    type Room;
    /// Waits until the sink can take another page and reserves room for it, before the page
    /// is read.
    fn room(&mut self) -> impl Future<Output = Result<Self::Room>>;
    fn send(&mut self, room: Self::Room, page: SyncgroupPage) -> impl Future<Output = Result<()>>;
}

/// Streams syncgroup metadata of `db` to `peer`, starting from its `knowledge`, in pages
/// bounded by `paging::SYNCGROUPS` (a page's knowledge covers only the syncgroups it settles,
/// so a version left for the next page is never claimed as sent). Each page carries the
/// removal notices of the syncgroups asked for that `peer` may no longer read (sent again
/// only when they change); when it may read none, the notices go alone in one page and the
/// call fails `NoAccess:` as before.
pub async fn respond(
    node: &impl Host,
    peer: &Fingerprint,
    db: &DbName,
    mut knowledge: SyncgroupKnowledge,
    live: bool,
    sink: &mut impl SyncgroupSink,
) -> Result<()> {
    let mut commits = node.subscribe();
    let mut peers = node.peers().subscribe();
    let mut last_knowledge: Option<SyncgroupKnowledge> = None;
    let mut last_removals = BTreeMap::new();
    // A page that said more was coming is always followed by one, so the initiator sees
    // the round end.
    let mut announced_more = false;
    loop {
        commits.mark_seen();
        peers.mark_seen();
        let room = sink.room().await?;
        let removals = node.syncgroup_removals(peer, db, &knowledge)?;
        let deltas = match node.syncgroup_deltas(peer, db, &knowledge) {
            Err(Error::NoAccess(why)) => {
                if !removals.is_empty() && removals != last_removals {
                    let page = SyncgroupPage {
                        removals,
                        ..SyncgroupPage::default()
                    };
                    sink.send(room, page).await?;
                }
                return Err(Error::NoAccess(why));
            }
            deltas => deltas?,
        };
        let SyncgroupDeltas {
            records,
            knowledge: ours,
            more,
        } = deltas;
        let removals_changed = removals != last_removals;
        if !records.is_empty()
            || announced_more
            || removals_changed
            || last_knowledge.as_ref() != Some(&ours)
        {
            announced_more = more;
            for (id, vector) in &ours {
                knowledge.entry(*id).or_default().merge(vector);
            }
            last_knowledge = Some(ours.clone());
            last_removals = removals.clone();
            sink.send(
                room,
                SyncgroupPage {
                    records,
                    knowledge: ours,
                    more,
                    removals,
                },
            )
            .await?;
        } else {
            drop(room);
        }
        if more {
            continue;
        }
        if !live || !wait_for_change(&mut commits, &mut peers).await {
            return Ok(());
        }
    }
}

/// The initiator's side of one database's syncgroup metadata sync with one peer.
pub struct SyncgroupSession<H: Host> {
    node: Arc<H>,
    peer: Fingerprint,
    /// This node's failure applying a page, if one failed.
    failure: RefCell<Option<Error>>,
    db: DbName,
    asked: BTreeSet<SyncgroupId>,
    /// The last version refused of each syncgroup, this session.
    refused: RefCell<BTreeMap<SyncgroupId, SyncgroupRecord>>,
    /// Signalled whenever a version is refused, so a waiter re-examines it.
    refusal: tokio::sync::Notify,
}

impl<H: Host> SyncgroupSession<H> {
    /// A session for the syncgroups this node shares with `peer` in `db`; None if none.
    pub fn new(
        node: Arc<H>,
        peer: Fingerprint,
        db: DbName,
    ) -> Result<Option<(Self, SyncgroupKnowledge)>> {
        let knowledge = node.syncgroups_shared_with(&peer, &db)?;
        if knowledge.is_empty() {
            return Ok(None);
        }
        let asked = knowledge.keys().copied().collect();
        let session = SyncgroupSession {
            node,
            peer,
            failure: RefCell::new(None),
            db,
            asked,
            refused: RefCell::new(BTreeMap::new()),
            refusal: tokio::sync::Notify::new(),
        };
        Ok(Some((session, knowledge)))
    }

    pub fn db(&self) -> &DbName {
        &self.db
    }

    /// The peer this session syncs with.
    pub fn peer(&self) -> &Fingerprint {
        &self.peer
    }

    /// A fresh session with the same peer for the same database, from the knowledge held
    /// now; None if no syncgroup is shared any more.
    pub fn renew(&self) -> Result<Option<(Self, SyncgroupKnowledge)>> {
        SyncgroupSession::new(self.node.clone(), self.peer.clone(), self.db.clone())
    }

    /// This node's device (the initiator's).
    pub fn device(&self) -> crate::genvec::DeviceId {
        self.node.store().device()
    }

    /// Checks and applies one page: only syncgroups asked for; versions not relayed by an
    /// admin, or whose writer was no admin, are dropped (logged, and kept to be re-examined),
    /// the rest applied with the knowledge in one commit, except the knowledge of a syncgroup
    /// a version of which this session refused.
    pub async fn receive(&self, page: SyncgroupPage) -> Result<()> {
        let stray = page
            .records
            .iter()
            .map(|record| record.sg.id)
            .chain(page.knowledge.keys().copied())
            .find(|id| !self.asked.contains(id));
        if let Some(id) = stray {
            return Err(Error::invalid(format!(
                "syncgroup {} was not asked for",
                id.to_hex()
            )));
        }
        if let Some(id) = page.removals.keys().find(|id| !self.asked.contains(id)) {
            return Err(Error::invalid(format!(
                "syncgroup {} was not asked for",
                id.to_hex()
            )));
        }
        if !page.removals.is_empty() {
            self.node
                .take_removals(self.db.clone(), self.peer.clone(), page.removals)
                .await?;
        }
        let mut knowledge = page.knowledge;
        knowledge.retain(|id, _| !self.refused.borrow().contains_key(id));
        let records = page.records.clone();
        let applied = self
            .node
            .apply_syncgroups(self.db.clone(), self.peer.clone(), page.records, knowledge)
            .await?;
        for refused in &applied.refused {
            // Members relay versions to each other and only an admin's relay is taken: a
            // member's relay is refused in the normal course (and asked again of an admin).
            if matches!(refused, Error::NoAccess(_)) {
                tracing::debug!(peer = %self.peer, db = %self.db.as_str(), "refused a syncgroup version: {refused}");
            } else {
                tracing::warn!(peer = %self.peer, db = %self.db.as_str(), "refused a syncgroup version: {refused}");
            }
        }
        if !applied.refused_ids.is_empty() {
            let mut kept = self.refused.borrow_mut();
            for record in records {
                if applied.refused_ids.contains(&record.sg.id) {
                    kept.insert(record.sg.id, record);
                }
            }
            drop(kept);
            self.refusal.notify_one();
        }
        Ok(())
    }

    /// Resolves once a version this session refused would now be taken: it passes
    /// [`SyncgroupRecord::acceptable_from`] against the copy now held and wins over it. A
    /// refused version that no longer wins is forgotten (the held copy supersedes it), and
    /// that syncgroup's knowledge is merged again. The caller re-issues the session.
    pub async fn refused_now_acceptable(&self) -> Result<()> {
        once_it_holds(&*self.node, &self.refusal, || self.reexamine()).await
    }

    /// Drops the refused versions the held copies supersede; whether one would now be taken.
    fn reexamine(&self) -> Result<bool> {
        let kept: Vec<SyncgroupRecord> = self.refused.borrow().values().cloned().collect();
        let mut acceptable = false;
        for record in kept {
            let Some(held) = self.node.store().syncgroup(&self.db, record.sg.id)? else {
                continue;
            };
            if !record.stamp.wins_over(&held.record.stamp) {
                self.refused.borrow_mut().remove(&record.sg.id);
            } else if record.acceptable_from(&held.record, &self.peer).is_ok() {
                acceptable = true;
            }
        }
        Ok(acceptable)
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
