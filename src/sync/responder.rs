//! The responder side of GetDeltas (reference §2.3), without Cap'n Proto: checks that the
//! authenticated peer may ask for what it asks, then streams pages of the records it lacks,
//! in the order this node learned them, and (in live mode) keeps streaming each new commit as
//! it lands. Every page that reaches the end of the log carries this node's knowledge for the
//! requested scopes; a knowledge-only page goes out only when that knowledge changed.
//!
//! The protocol in full (both sides):
//! 1. The initiator sends its knowledge for the scopes it syncs with this peer, each raised by
//!    its own device's generation (`Knowledge::request_for`), its device id, and `live`.
//! 2. The responder starts at the first log position holding a record the initiator may lack
//!    (or later: where the initiator's resume token says its last applied page ended, when
//!    the token is still valid here, `store::resume`) and sends, page by page, each record under a requested scope whose generation is above
//!    what the initiator knows for its device, skipping records the initiator made or sent.
//!    Every push names the responder's device, so the initiator opens the call at once
//!    instead of asking `deviceInfo` first. Every push carries a resume token for where its
//!    page ends, which the initiator commits with the page and sends back next time. The
//!    first push carries the responder's epoch notices (`store::notice`): devices of its
//!    lineage it left, with their safe points, which the initiator takes once.
//! 3. The page that reaches the log's end carries the responder's knowledge, read from the
//!    same snapshot; the initiator applies each page in one commit and merges that knowledge.
//! 4. Live mode: the responder waits for the next commit and repeats from where it stopped,
//!    so a change reaches a connected peer one push after its commit. A knowledge-only page
//!    goes out at once if the knowledge changed in more than the initiator's own generations;
//!    one that changed only in those is the responder's knowledge report (the initiator keeps
//!    it, `store::members`, so that its history can be collected) and goes out at most once
//!    per `sync::reports::REPORT_INTERVAL` (2 s), never twice with the same knowledge.

use std::future::Future;
use std::sync::Arc;

use crate::changes::ChangeReceiver;
use crate::error::{Error, Result};
use crate::genvec::{DeviceId, Generation, Knowledge, Scope};
use crate::identity::Fingerprint;
use crate::names::DbName;
use crate::store::{Mark, Page, PageRequest};
use crate::sync::host::Host;
use crate::sync::reports::{Pace, Report};

/// The most mark generations a request may name: every mark point a store keeps.
pub const MAX_MARKS: usize = crate::store::MARK_POINTS;

/// Most records in one page (`paging::DATA`), past which only an app batch continues it.
pub const PAGE_RECORDS: usize = crate::paging::DATA.limit.items;
/// Payload bytes in one page (`paging::DATA`), past which only an app batch continues it.
pub const PAGE_BYTES: usize = crate::paging::DATA.limit.bytes;

/// What an initiator asks for.
#[derive(Debug, Clone)]
pub struct DeltaRequest {
    pub db: DbName,
    pub initiator_device: DeviceId,
    pub knowledge: Knowledge,
    pub live: bool,
    /// The token of the last page the initiator applied from this node (`store::resume`).
    pub resume: Option<Vec<u8>>,
    /// The generations of the initiator's device to report the marks of.
    pub mark_at: Vec<Generation>,
    /// The initiator's collection floor as stored (`Store::stored_floor`): what it collected
    /// or caught up past by state, which its knowledge may not show (knowledge of a device
    /// left at an epoch stays at the safe point). Counted as known by [`check_floor`].
    pub floor: Knowledge,
}

/// Where pages go (the Cap'n Proto sink, or a test's vector).
pub trait PageSink {
    /// Room for one page (e.g. reserved outgoing bytes); given back when dropped unused.
    type Room;
    /// Waits until the sink can take another page and reserves room for it: called before
    /// the page is read, so a sink that takes nothing makes the node read nothing.
    fn room(&mut self) -> impl Future<Output = Result<Self::Room>>;
    /// Delivers one page in the room reserved for it; an error ends the stream.
    fn send(&mut self, room: Self::Room, page: Page) -> impl Future<Output = Result<()>>;
}

/// Serves GetDeltas to one authenticated peer.
pub struct Responder<H: Host> {
    node: Arc<H>,
    peer: Fingerprint,
}

impl<H: Host> Responder<H> {
    pub fn new(node: Arc<H>, peer: Fingerprint) -> Responder<H> {
        Responder { node, peer }
    }

    /// The part of the request the peer may read: the scopes it was declared with or holds
    /// Read for in a syncgroup here. Refuses a request naming no scope, an unknown database, or
    /// no readable scope at all (`NoAccess:`). Scopes it may not read are left out rather than
    /// failing the whole request, so one syncgroup this node has not accepted (a proposal)
    /// does not stop the others from syncing.
    pub fn authorize(&self, request: &DeltaRequest) -> Result<Knowledge> {
        let db = request.db.as_str();
        if request.knowledge.is_empty() {
            return Err(Error::invalid("GetDeltas names no scope"));
        }
        let mut served = Knowledge::new();
        let mut refused = None;
        for (scope, vector) in request.knowledge.iter() {
            if self.node.may_read_scope(&self.peer, &request.db, scope)? {
                served.insert(scope.clone(), vector.clone());
            } else {
                refused.get_or_insert(scope);
            }
        }
        if let (true, Some(scope)) = (served.is_empty(), refused) {
            return Err(Error::NoAccess(format!(
                "{} holds no Read capability for scope {scope} of database {db:?}",
                self.peer
            )));
        }
        if !self.node.store().has_database(&request.db)? {
            return Err(Error::NoAccess(format!(
                "database {db:?} is not shared with this peer"
            )));
        }
        Ok(served)
    }

    /// Streams the pages until caught up (or, live, until the sink fails or the node stops).
    /// Every page is sent under a fresh authorisation: losing Read for a scope being served
    /// (removing the peer, ejecting it, revoking its Read) ends a live stream at once with
    /// `NoAccess:`; gaining it for a requested scope (a proposal accepted) widens the stream,
    /// going back to where the new scopes start.
    pub async fn run(&self, request: &DeltaRequest, sink: &mut impl PageSink) -> Result<()> {
        let mut served = self.authorize(request)?;
        let started = self.node.now_nanos();
        self.node
            .note_member_knowledge(request.db.clone(), &self.peer, served.clone())
            .await?;
        let store = self.node.store();
        let mut position = self.start(request, &served)?;
        // Echoes are suppressed only for records the initiator sends during this session: a
        // store restored from a copy may lack what it sent before.
        let echoes_from = store.state(&request.db)?.next_position;
        let mut commits = self.node.subscribe();
        let mut peers = self.node.peers().subscribe();
        let mut last_knowledge: Option<Knowledge> = None;
        // The marks last sent: new ones are news even when the knowledge is not (a copy of
        // the initiator's store running elsewhere writes under its device and generations:
        // only the marks tell it; see ARCHITECTURE.md, "Epochs").
        let mut last_marks: Option<Vec<Mark>> = None;
        // The first page sent carries this node's epoch notices (`store::notice`), read with
        // the device they go with: if an epoch is committing, the device is the old one and
        // the check below ends the session (`BadState:`), so the next one announces it.
        let (notices, device) = store.announced_notices_with_device(&request.db)?;
        let mut notices = Some(notices);
        // The knowledge reports sent: knowledge that changed only in the initiator's own
        // generations still goes out, paced (`sync::reports`).
        let mut pace = Pace::default();
        loop {
            commits.mark_seen();
            peers.mark_seen();
            let room = sink.room().await?;
            if store.device() != device {
                return Err(Error::BadState(format!(
                    "this node moved to a new device id ({:016x}, an epoch): sync again",
                    store.device().0
                )));
            }
            let now = self.authorize(request)?;
            let reported = self.reported_since(&request.db, started)?;
            check_floor(
                store,
                request,
                &now,
                [last_knowledge.as_ref(), reported.as_ref()],
            )?;
            if let Some(lost) = served
                .iter()
                .map(|(scope, _)| scope)
                .find(|s| now.get(s).is_none())
            {
                return Err(Error::NoAccess(format!(
                    "{} no longer holds a Read capability for scope {lost} of database {:?}",
                    self.peer,
                    request.db.as_str()
                )));
            }
            if now.len() > served.len() {
                let start = store.start_position(&request.db, request.initiator_device, &now)?;
                position = position.min(start);
                last_knowledge = None;
                served = now;
            }
            let mut page = store.read_page(
                &request.db,
                &PageRequest {
                    initiator: request.initiator_device,
                    knowledge: &served,
                    position,
                    echoes_from,
                    max_records: PAGE_RECORDS,
                    max_bytes: PAGE_BYTES,
                },
            )?;
            if page.knowledge.is_some() {
                page.initiator_marks = self.marks_for(request)?;
            }
            position = page.next_position;
            page.resume =
                store.resume_token(&request.db, request.initiator_device, &served, position)?;
            let at_end = page.knowledge.is_some();
            let news = !page.records.is_empty()
                || news_for(
                    page.knowledge.as_ref(),
                    last_knowledge.as_ref(),
                    request.initiator_device,
                )
                || (at_end && last_marks.as_ref() != Some(&page.initiator_marks));
            if at_end {
                last_knowledge.clone_from(&page.knowledge);
                last_marks = Some(page.initiator_marks.clone());
            }
            let now = tokio::time::Instant::now();
            let report = match &page.knowledge {
                Some(knowledge) if !news => pace.report(knowledge, now),
                _ => Report::None,
            };
            if news || report == Report::Now {
                if let Some(knowledge) = &page.knowledge {
                    pace.sent(knowledge, now);
                }
                page.notices = notices.take().unwrap_or_default();
                self.count_sent(&page);
                sink.send(room, page).await?;
            } else {
                drop(room);
            }
            // After every page, not only at the log's end: a responder that stays behind
            // (a peer writing as fast as it reads) shows how far behind it is.
            self.record_pending(&request.db, position);
            if !at_end {
                continue;
            }
            let due = match report {
                Report::At(due) => Some(due),
                Report::Now | Report::None => None,
            };
            if !request.live || !wait_for_change_or(&mut commits, &mut peers, due).await {
                return Ok(());
            }
        }
    }

    /// Where the stream starts: where the initiator's resume token says its last applied page
    /// ended, if the token is still valid here, and never before the first record its
    /// knowledge lacks.
    fn start(&self, request: &DeltaRequest, served: &Knowledge) -> Result<u64> {
        let store = self.node.store();
        let from_knowledge = store.start_position(&request.db, request.initiator_device, served)?;
        let Some(token) = &request.resume else {
            return Ok(from_knowledge);
        };
        let resumed =
            store.resume_position(&request.db, request.initiator_device, served, token)?;
        Ok(resumed.map_or(from_knowledge, |position| position.max(from_knowledge)))
    }

    /// The peer's latest knowledge report taken after `since` (a page it sent this node's
    /// initiator, or a later request of its own), if any.
    fn reported_since(&self, db: &DbName, since: i64) -> Result<Option<Knowledge>> {
        let reports = self
            .node
            .store()
            .member_report(db, &self.peer.to_string())?;
        Ok(reports
            .reports
            .into_iter()
            .last()
            .filter(|report| report.at_nanos >= since)
            .map(|report| report.knowledge))
    }

    /// The marks of the initiator's records held here at the generations it asked about, so it
    /// can tell whether this node holds other records there.
    fn marks_for(&self, request: &DeltaRequest) -> Result<Vec<Mark>> {
        let store = self.node.store();
        let mut marks = Vec::new();
        for generation in &request.mark_at {
            marks.extend(store.mark_from(&request.db, request.initiator_device, *generation)?);
        }
        Ok(marks)
    }

    fn count_sent(&self, page: &Page) {
        let bytes: usize = page.records.iter().map(|record| record.payload_len()).sum();
        self.node.peers().update_status(&self.peer, |status| {
            status.records_sent += page.records.len() as u64;
            status.bytes_sent += bytes as u64;
        });
    }

    fn record_pending(&self, db: &DbName, position: u64) {
        let next = self
            .node
            .store()
            .state(db)
            .map(|state| state.next_position)
            .unwrap_or(position);
        self.node.peers().update_status(&self.peer, |status| {
            status.pending_out = next.saturating_sub(position)
        });
    }
}

/// Waits for the next commit or peer/syncgroup change; false once the node is gone.
pub(crate) async fn wait_for_change(
    commits: &mut ChangeReceiver,
    peers: &mut ChangeReceiver,
) -> bool {
    let woken = tokio::select! {
        biased;
        woken = commits.changed() => woken,
        woken = peers.changed() => woken,
    };
    woken.is_ok()
}

/// [`wait_for_change`], or until `due` (then true) if it comes first.
async fn wait_for_change_or(
    commits: &mut ChangeReceiver,
    peers: &mut ChangeReceiver,
    due: Option<tokio::time::Instant>,
) -> bool {
    let Some(due) = due else {
        return wait_for_change(commits, peers).await;
    };
    tokio::select! {
        biased;
        alive = wait_for_change(commits, peers) => alive,
        () = tokio::time::sleep_until(due) => true,
    }
}

/// Resolves once `holds` says yes: asked now, after every commit or peer/syncgroup change
/// of `node`, and whenever `nudge` is notified; never once the node is gone. (How a session
/// waits until something it refused would now be taken.)
pub(crate) async fn once_it_holds(
    node: &impl Host,
    nudge: &tokio::sync::Notify,
    mut holds: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let mut commits = node.subscribe();
    let mut peers = node.peers().subscribe();
    loop {
        commits.mark_seen();
        peers.mark_seen();
        if holds()? {
            return Ok(());
        }
        tokio::select! {
            biased;
            alive = wait_for_change(&mut commits, &mut peers) => {
                if !alive {
                    return std::future::pending().await;
                }
            }
            () = nudge.notified() => {}
        }
    }
}

/// Refuses (`BehindHorizon:`) to serve an initiator whose knowledge, with what it is known to
/// hold since (`also_known`: the knowledge of the last page this session sent that carried
/// it, and its latest report since the session began, `store::members`), does not cover
/// this node's collection floor for a served scope: records it lacks may be collected here,
/// so the log cannot bring it up to date; it catches up by state (`sync::catchup`) and asks
/// again. Checked before every page, since collection may raise the floor mid-session.
fn check_floor(
    store: &crate::store::Store,
    request: &DeltaRequest,
    served: &Knowledge,
    also_known: [Option<&Knowledge>; 2],
) -> Result<()> {
    // Kept at the safe point of every device left at an epoch (`store::load_floor`):
    // knowledge of such a device stays there on every node that took the notice.
    let floor = store.floor(&request.db)?;
    match floor_gap(&floor, &request.floor, served, also_known) {
        None => Ok(()),
        Some((scope, device, known, collected)) => Err(Error::BehindHorizon(format!(
            "database {:?} scope {scope}: this node collected the records of device {:016x} \
             up to generation {collected} and the initiator knows them up to {known}; catch up \
             by state",
            request.db.as_str(),
            device.0
        ))),
    }
}

/// Where `floor` (this node's) passes what the initiator holds in a served scope: its
/// knowledge for the scope, what it is known to hold besides (`also_known`), and what its
/// own floor (`initiator_floor`) claims for rows under the scope. Scopes not served are not
/// checked. The first such (scope, device, what the initiator holds, the floor), or None.
fn floor_gap(
    floor: &Knowledge,
    initiator_floor: &Knowledge,
    served: &Knowledge,
    also_known: [Option<&Knowledge>; 2],
) -> Option<(Scope, DeviceId, Generation, Generation)> {
    if floor.is_empty() {
        return None;
    }
    let mut known = served.clone();
    for also in also_known.into_iter().flatten() {
        known.merge_response(also);
    }
    let mut checked = Knowledge::new();
    for (scope, _) in served.iter() {
        let mut vector = known.bound_for(scope);
        vector.merge(&initiator_floor.bound_for(scope));
        checked.insert(scope.clone(), vector);
    }
    floor.first_above(&checked)
}

/// Whether knowledge differs from what was last sent in anything but the initiator's own
/// generations (it knows those best): a knowledge-only page that only echoes them back would
/// cost a round trip and a commit for nothing.
fn news_for(knowledge: Option<&Knowledge>, last: Option<&Knowledge>, initiator: DeviceId) -> bool {
    match (knowledge, last) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(now), Some(last)) => without(now, initiator) != without(last, initiator),
    }
}

fn without(knowledge: &Knowledge, device: DeviceId) -> Knowledge {
    let mut trimmed = Knowledge::new();
    for (scope, vector) in knowledge.iter() {
        let mut vector = vector.clone();
        vector.set(device, Generation::NONE);
        trimmed.insert(scope.clone(), vector);
    }
    trimmed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::genvec::{GenVector, Scope};

    fn knowledge(entries: &[(u64, u64)]) -> Knowledge {
        let vector: GenVector = entries
            .iter()
            .map(|&(device, generation)| (DeviceId(device), Generation::new(generation)))
            .collect();
        let mut knowledge = Knowledge::new();
        knowledge.insert(Scope::new("t", ""), vector);
        knowledge
    }

    #[test]
    fn knowledge_that_only_echoes_the_initiator_is_not_news() {
        let initiator = DeviceId(1);
        let first = knowledge(&[(1, 3), (2, 5)]);
        assert!(news_for(Some(&first), None, initiator));
        assert!(!news_for(
            Some(&knowledge(&[(1, 4), (2, 5)])),
            Some(&first),
            initiator
        ));
        assert!(news_for(
            Some(&knowledge(&[(1, 3), (2, 6)])),
            Some(&first),
            initiator
        ));
        assert!(!news_for(None, Some(&first), initiator));
    }

    #[test]
    fn an_initiator_whose_floor_covers_the_responders_is_served_though_its_knowledge_is_capped() {
        // The initiator keeps its knowledge of device 7 at an epoch's safe point (2), but it
        // caught up by state past this node's floor (9) and its floor says so.
        let floor = knowledge(&[(7, 9)]);
        let served = knowledge(&[(7, 2)]);
        let gap = floor_gap(&floor, &Knowledge::new(), &served, [None, None]);
        assert_eq!(
            gap,
            Some((
                Scope::new("t", ""),
                DeviceId(7),
                Generation::new(2),
                Generation::new(9)
            ))
        );
        let caught_up = knowledge(&[(7, 9)]);
        assert_eq!(floor_gap(&floor, &caught_up, &served, [None, None]), None);
    }

    #[test]
    fn only_the_served_scopes_are_checked_against_the_floor() {
        let mut floor = knowledge(&[(7, 9)]);
        floor.insert(
            Scope::new("s", ""),
            [(DeviceId(8), Generation::new(5))].into_iter().collect(),
        );
        let served = knowledge(&[(7, 9)]);
        // The initiator's floor names a scope it is not served: it must not become one the
        // check asks it to cover.
        let mut initiator_floor = Knowledge::new();
        initiator_floor.insert(Scope::new("s", ""), GenVector::new());
        assert_eq!(
            floor_gap(&floor, &initiator_floor, &served, [None, None]),
            None
        );
    }
}
