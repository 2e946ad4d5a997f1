//! The link loop, without Cap'n Proto: one live connection per peer, re-dialled with capped
//! exponential backoff, one live GetDeltas session per shared database, and the sinks that
//! take the pages a responder pushes. A peer is reached through the engine's [`Dialer`] and
//! [`PeerClient`] traits: `rpc::peer_link` implements them over TLS and Cap'n Proto, the
//! simulation over its in-memory network, so both run this same loop.
//!
//! Rules this module owns:
//! - On each link a database's syncgroup metadata is synced before its data: the data session
//!   starts once the syncgroup session's first round is applied, so records of a member this
//!   node has not heard of yet are not refused for want of its membership.
//! - A data session that refused records is restarted (on the same connection) as soon as the
//!   syncgroup metadata would accept one of them; its knowledge was kept below them, so the
//!   new request fetches them. Every data session is restarted once an epoch notice lowered
//!   knowledge after it asked (`store::notice`). A syncgroup session that refused a version
//!   that would now be taken is re-issued the same way.
//! - Pages are applied in order, one commit each; after a failed page every later page of the
//!   call is refused unread ([`DataPages`], [`SyncgroupPages`]): the responder pipelines
//!   pages, and applying one after a page that was not applied would let its knowledge or
//!   resume token cover records never applied.
//! - A syncgroup metadata session the peer refuses (`NoAccess`: it left those syncgroups,
//!   has not accepted a publish yet, or this node may no longer read them) ends alone and is
//!   asked for again after a growing pause: the data sessions keep the link, so a syncgroup
//!   left or lost never stops the declared scopes. A data session the peer refuses
//!   ends the link, which dials again and asks anew (the peer leaves out what it no longer
//!   serves).
//! - A failed link is dialled again after [`Backoff`], which goes back to its minimum only
//!   after the link made progress ([`made_progress`]); a failure repeated word for word is
//!   logged once, then with its count ([`Repeats`]).
//! - Errors stay typed ([`Error`]) until the peer's status: a [`PeerClient`] hands back the
//!   kind the peer raised (`NoAccess`, `StorageFull`, ...) or `ConnFail` for a broken
//!   connection, decided once by the transport; the loop decides on kinds and on who failed
//!   (the peer, or this node applying what it sent: [`LinkError`]), never on text. The text is
//!   made once, at the edge ([`keep_linked`]'s status line and log).
//! - Every `select!` here is `biased`, so a run under a seeded runtime replays exactly.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures::future::{FutureExt, select_all};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::genvec::{DeviceId, Scope};
use crate::identity::Fingerprint;
use crate::names::DbName;
use crate::retry::Backoff;
use crate::store::SyncgroupKnowledge;
use crate::sync::catchup::{CatchUpError, StateBegin, StateRequest, StateSession, catch_up};
use crate::sync::host::Host;
use crate::sync::initiator::{Push, Session};
use crate::sync::membership::{JoinReply, JoinRequest, PublishOutcome, PublishRequest};
use crate::sync::peers::PeerConfig;
use crate::sync::responder::DeltaRequest;
use crate::sync::syncgroups::{SyncgroupPage, SyncgroupSession};
use crate::tally::Repeats;

/// How long a link that caught up must have stayed up for its end to count as progress (a
/// link refused or dropped at once after catching up, e.g. one session refused while the other
/// caught up, makes none).
pub const LINK_STABLE: Duration = Duration::from_secs(5);
/// Identical link failures are logged once, then summed up at most this often.
const REPEAT_LOG_PERIOD: Duration = Duration::from_secs(60);

/// A GetDeltas request for syncgroup metadata (reference §2.3, `SgDeltaReq`).
#[derive(Debug, Clone)]
pub struct SyncgroupRequest {
    pub db: DbName,
    pub initiator_device: DeviceId,
    pub knowledge: SyncgroupKnowledge,
    pub live: bool,
}

/// One connection to a peer, as the link loop calls it.
pub trait PeerClient {
    /// A catch-up-by-state session at the peer (`sync::catchup`).
    type State: StateSession;

    /// Opens a catch-up by state (`reconcileState`): the peer's device, knowledge and floor
    /// for the scopes, and the session. Errors as [`PeerClient::get_deltas`].
    fn reconcile_state(
        &self,
        request: StateRequest,
    ) -> impl Future<Output = Result<(StateBegin, Self::State)>>;

    /// Sends a data GetDeltas call whose pushed pages go to `pages`, in order; resolves when
    /// the responder ends the call. `Err`: the error the responder raised, of the kind it
    /// raised (`NoAccess:` for a refused session, `StorageFull:` for its full store, ...;
    /// the echo of a page `pages` failed, when one did), or `ConnFail:` when the connection
    /// broke.
    fn get_deltas<H: Host>(
        &self,
        request: DeltaRequest,
        pages: Rc<DataPages<H>>,
    ) -> impl Future<Output = Result<()>>;

    /// Sends a syncgroup GetDeltas call whose pushed pages go to `pages`, in order; errors
    /// as [`PeerClient::get_deltas`].
    fn get_syncgroup_deltas<H: Host>(
        &self,
        request: SyncgroupRequest,
        pages: Rc<SyncgroupPages<H>>,
    ) -> impl Future<Output = Result<()>>;

    /// The peer's device id (`DeviceInfo`).
    fn device_info(&self) -> impl Future<Output = Result<DeviceId>>;

    /// Joins a syncgroup at the peer, an admin of it (`JoinSyncgroupAtAdmin`).
    fn join_at_admin(&self, request: JoinRequest) -> impl Future<Output = Result<JoinReply>>;

    /// Publishes a syncgroup at the peer its name routes to (`PublishSyncgroup`).
    fn publish(&self, request: PublishRequest) -> impl Future<Output = Result<PublishOutcome>>;
}

/// Opens connections to peers.
pub trait Dialer {
    type Client: PeerClient;
    type Driver: LinkDriver;
    /// Connects to the node at `address` and authenticates it as `fingerprint`; a failure is
    /// `ConnFail:`.
    fn dial(
        &self,
        address: &str,
        fingerprint: &Fingerprint,
    ) -> impl Future<Output = Result<(Self::Client, Self::Driver)>>;
}

/// What keeps a dialled connection going.
pub trait LinkDriver {
    /// Runs the connection; resolves when it ends, with why.
    fn run(&mut self) -> impl Future<Output = String>;
    /// Closes the connection, once its client is dropped.
    fn close(self) -> impl Future<Output = ()>;
}

/// Takes the data pages a responder pushes for one session, in order, one commit each.
pub struct DataPages<H: Host> {
    session: Rc<Session<H>>,
    order: tokio::sync::Mutex<()>,
    failed: Cell<bool>,
}

impl<H: Host> DataPages<H> {
    pub fn new(session: Rc<Session<H>>) -> DataPages<H> {
        DataPages {
            session,
            order: tokio::sync::Mutex::new(()),
            failed: Cell::new(false),
        }
    }

    /// Applies one pushed page (`Err`: it did not decode). A failure is recorded in the peer's
    /// status and refuses every later page of the call.
    pub async fn push(&self, page: Result<Push>) -> Result<()> {
        let _in_order = self.order.lock().await;
        refuse_after_failure(&self.failed)?;
        let outcome = match page {
            Ok(push) => self.session.receive(push).await.map(drop),
            Err(error) => Err(error),
        };
        if let Err(error) = &outcome {
            self.failed.set(true);
            self.session.fail(error);
        }
        outcome
    }
}

/// Takes the syncgroup metadata pages a responder pushes for one database, and tells the link
/// once the first round is applied (pages are bounded, so a round may take several; the page
/// that ends it says nothing remains).
pub struct SyncgroupPages<H: Host> {
    session: Rc<SyncgroupSession<H>>,
    order: tokio::sync::Mutex<()>,
    caught_up: RefCell<Option<tokio::sync::oneshot::Sender<()>>>,
    failed: Cell<bool>,
}

impl<H: Host> SyncgroupPages<H> {
    /// Pages for `session`, telling `caught_up` once its first round is applied.
    pub fn new(
        session: Rc<SyncgroupSession<H>>,
        caught_up: tokio::sync::oneshot::Sender<()>,
    ) -> SyncgroupPages<H> {
        SyncgroupPages {
            session,
            order: tokio::sync::Mutex::new(()),
            caught_up: RefCell::new(Some(caught_up)),
            failed: Cell::new(false),
        }
    }

    /// Applies one pushed page (`Err`: it did not decode), like [`DataPages::push`].
    pub async fn push(&self, page: Result<SyncgroupPage>) -> Result<()> {
        let _in_order = self.order.lock().await;
        refuse_after_failure(&self.failed)?;
        let outcome = match page {
            Ok(page) => {
                let round_ended = !page.more;
                let applied = self.session.receive(page).await;
                if applied.is_ok()
                    && round_ended
                    && let Some(caught_up) = self.caught_up.borrow_mut().take()
                {
                    let _ = caught_up.send(());
                }
                applied
            }
            Err(error) => Err(error),
        };
        if let Err(error) = &outcome {
            self.failed.set(true);
            self.session.fail(error);
        }
        outcome
    }
}

/// Refuses a push that follows a failed one on the same call.
fn refuse_after_failure(failed: &Cell<bool>) -> Result<()> {
    if failed.get() {
        return Err(Error::BadState(
            "an earlier page of this call failed".into(),
        ));
    }
    Ok(())
}

/// Keeps a live link to `peer` until cancelled: dial, sync, and on failure record why in
/// the peer's status (the [`LinkError`]'s line) and dial again after `backoff`, which goes
/// back to its minimum only after a link made progress ([`made_progress`]), whatever the
/// failure (unreachable, `NoAccess:`, `StorageFull:`, `BadState:`). A failure repeated word
/// for word is logged once, then with its count ([`Repeats`]).
pub async fn keep_linked<H: Host, D: Dialer>(
    host: Arc<H>,
    dialer: D,
    peer: PeerConfig,
    mut backoff: Backoff,
    cancel: CancellationToken,
) {
    let mut repeats = Repeats::new(REPEAT_LOG_PERIOD);
    loop {
        let before = LinkMark::of(&*host, &peer.fingerprint);
        let outcome = run_link(&host, &dialer, &peer, &cancel).await;
        if cancel.is_cancelled() {
            break;
        }
        host.peers()
            .update_status(&peer.fingerprint, |status| status.connected = false);
        if made_progress(&before, &LinkMark::of(&*host, &peer.fingerprint)) {
            backoff.progress();
            if let Some(line) = repeats.flush() {
                tracing::warn!(peer = %peer.fingerprint, address = %peer.address, "{line}");
            }
        }
        if let Err(error) = outcome {
            let message = error.to_string();
            for line in repeats.note(&message) {
                tracing::warn!(peer = %peer.fingerprint, address = %peer.address, "{line}");
            }
            tracing::debug!(peer = %peer.fingerprint, "{message}");
            host.peers().update_status(&peer.fingerprint, |status| {
                status.last_error = Some(message)
            });
        }
        tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(backoff.fail()) => {}
        }
    }
    if let Some(line) = repeats.flush() {
        tracing::warn!(peer = %peer.fingerprint, address = %peer.address, "{line}");
    }
    // Cancelled: the link is replaced (its peer's configuration changed, or an epoch), the
    // peer removed, or the node stopping. Its status is the replacement's to set: marking it
    // down here could land after the new link came up and leave it "not connected" for good.
}

/// Keeps one link task per peer in the registry that has an address, restarting a peer's
/// task when its configuration changes or this node moved to an epoch (so every session asks
/// as the new device), and stopping it when the peer is removed. `start` spawns a link task
/// (usually [`keep_linked`]) that must end when its token is cancelled.
pub async fn follow_peers<H: Host>(
    host: Arc<H>,
    mut start: impl FnMut(PeerConfig, CancellationToken),
    cancel: CancellationToken,
) {
    let mut changes = host.peers().subscribe();
    let mut links: BTreeMap<Fingerprint, (PeerConfig, CancellationToken)> = BTreeMap::new();
    let mut device = host.store().device();
    loop {
        changes.mark_seen();
        let relink = std::mem::replace(&mut device, host.store().device()) != device;
        let wanted: BTreeMap<_, _> = host
            .peers()
            .list()
            .into_iter()
            .map(|(config, _)| (config.fingerprint.clone(), config))
            .collect();
        links.retain(|fingerprint, (config, link)| {
            let keep = !relink && wanted.get(fingerprint) == Some(config);
            if !keep {
                link.cancel();
            }
            keep
        });
        for (fingerprint, config) in wanted {
            // A peer without an address cannot be dialled; it syncs when it connects.
            if links.contains_key(&fingerprint) || config.address.is_empty() {
                continue;
            }
            let link = cancel.child_token();
            start(config.clone(), link.clone());
            links.insert(fingerprint, (config, link));
        }
        tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            changed = changes.changed() => if changed.is_err() { break },
        }
    }
    for (_, link) in links.values() {
        link.cancel();
    }
}

/// What a link had achieved with a peer at one moment: records applied from it, when a round
/// with it last reached the end of its log, and when that was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkMark {
    records: u64,
    caught_up_nanos: i64,
    at: Instant,
}

impl LinkMark {
    pub fn of(host: &impl Host, peer: &Fingerprint) -> LinkMark {
        let status = host.peers().status(peer).unwrap_or_default();
        LinkMark {
            records: status.records_received,
            caught_up_nanos: status.last_success_nanos,
            at: tokio::time::Instant::now(),
        }
    }
}

/// Whether a link made progress between two marks: it applied records, or it reached the end
/// of the peer's log and stayed up [`LINK_STABLE`]. Connecting is not progress: a peer that
/// refuses every session right after the handshake would otherwise be redialled at once.
pub fn made_progress(before: &LinkMark, after: &LinkMark) -> bool {
    let lasted = after.at.duration_since(before.at) >= LINK_STABLE;
    after.records > before.records || (after.caught_up_nanos != before.caught_up_nanos && lasted)
}

/// Why a link ended, by who failed. Its `Display` is the line for the peer's status and the
/// log: `ConnFail: connection to peer failed: ...` for the connection, the peer's own error
/// followed by `(answered by this peer)`, or this node's followed by `(syncing with this
/// peer)`.
#[derive(Debug, Clone)]
pub enum LinkError {
    /// The connection failed, never came up, or ended; always `ConnFail`.
    Connection(Error),
    /// The peer refused or failed a session, with the kind it raised (`NoAccess`,
    /// `StorageFull`, `BadState`, ...): the connection itself did not fail.
    Peer(Error),
    /// This node failed: applying what the peer sent (a full store: `StorageFull`) or reading
    /// its own store. The peer's echo of such a failure is never taken for the peer's.
    Local(Error),
}

impl LinkError {
    /// A connection failure: `ConnFail` kept as it is, any other error wrapped in one.
    pub fn connection(error: Error) -> LinkError {
        match error {
            Error::ConnFail(_) => LinkError::Connection(error),
            other => LinkError::Connection(Error::ConnFail(other.to_string())),
        }
    }

    /// How an error the peer ended a session with counts: a refusal or failure with its own
    /// kind is the peer's, since the connection did not fail; a broken connection
    /// (`ConnFail`) or an error without a kind (`Internal`: no id, or the peer's own internal
    /// failure) is the connection's.
    pub fn from_peer(error: Error) -> LinkError {
        match error {
            Error::ConnFail(_) | Error::Internal(_) | Error::Storage(_) => {
                LinkError::connection(error)
            }
            other => LinkError::Peer(other),
        }
    }

    /// The error, with its kind.
    pub fn error(&self) -> &Error {
        match self {
            LinkError::Connection(error) | LinkError::Peer(error) | LinkError::Local(error) => {
                error
            }
        }
    }
}

impl std::fmt::Display for LinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkError::Connection(error) => write!(f, "{error}"),
            LinkError::Peer(error) => write!(f, "{error} (answered by this peer)"),
            LinkError::Local(error) => write!(f, "{error} (syncing with this peer)"),
        }
    }
}

/// One connection's life: dial, authenticate, open a live session per shared database, and
/// return when any of them (or the connection) ends.
async fn run_link<H: Host, D: Dialer>(
    host: &Arc<H>,
    dialer: &D,
    peer: &PeerConfig,
    cancel: &CancellationToken,
) -> std::result::Result<(), LinkError> {
    let dialled = tokio::select! {
        biased;
        () = cancel.cancelled() => return Ok(()),
        dialled = dialer.dial(&peer.address, &peer.fingerprint) => dialled,
    };
    let (client, mut driver) = dialled.map_err(LinkError::connection)?;
    let outcome = tokio::select! {
        biased;
        () = cancel.cancelled() => Ok(()),
        ended = driver.run() => Err(LinkError::Connection(Error::ConnFail(format!("connection closed: {ended}")))),
        outcome = sync_over(host, peer, &client) => outcome,
    };
    drop(client);
    driver.close().await;
    outcome
}

/// Runs one live session per shared database over `client` until one ends (the responder
/// names its device in every push, so no `deviceInfo` round trip comes first). Used by the
/// dialling side and by the accepting side of a link to a peer that cannot be dialled.
pub async fn sync_over<H: Host, C: PeerClient>(
    host: &Arc<H>,
    peer: &PeerConfig,
    client: &C,
) -> std::result::Result<(), LinkError> {
    host.peers().update_status(&peer.fingerprint, |status| {
        status.connected = true;
        status.last_error = None;
    });
    let mut sessions = Vec::new();
    for (db, scopes) in &peer.databases {
        let db = DbName::parse(db).map_err(LinkError::Local)?;
        let scopes: Vec<_> = scopes.iter().cloned().collect();
        let (caught_up, metadata_first) = tokio::sync::oneshot::channel();
        match SyncgroupSession::new(host.clone(), peer.fingerprint.clone(), db.clone()) {
            Ok(Some((session, known))) => {
                let metadata = metadata_until_refused(
                    host,
                    peer,
                    db.clone(),
                    client,
                    session,
                    known,
                    caught_up,
                );
                sessions.push(metadata.boxed_local());
            }
            Ok(None) => drop(caught_up),
            Err(error) => return Err(LinkError::Local(error)),
        }
        let data = async move {
            // Dropped unsent (no syncgroup shared, or its session ended first): go ahead.
            let _ = metadata_first.await;
            live_data(host, &peer.fingerprint, client, &db, &scopes).await
        };
        sessions.push(data.boxed_local());
    }
    let (ended, _, _) = select_all(sessions).await;
    Err(link_ended(ended))
}

/// Why the link ends when one of its sessions ended.
fn link_ended(ended: std::result::Result<(), SessionEnd>) -> LinkError {
    match ended {
        Ok(()) => LinkError::Connection(Error::ConnFail("the session ended".into())),
        Err(SessionEnd::Peer(error)) => LinkError::from_peer(error),
        // This node's own failure (a full disk applying a page): its own kind and fix, not
        // the echo the peer's failed push carried back.
        Err(SessionEnd::Local(error)) => LinkError::Local(error),
    }
}

/// Why a session ended: the peer or the connection failed it, or this node failed (to
/// apply what the peer sent, or to read its own store).
#[derive(Debug)]
enum SessionEnd {
    Peer(Error),
    Local(Error),
}

impl From<Error> for SessionEnd {
    fn from(error: Error) -> SessionEnd {
        SessionEnd::Local(error)
    }
}

/// How a call the peer ended counts: as this node's failure if it failed a page of the call
/// (the peer's error is then its echo), else as the peer's.
fn session_end(local_failure: Option<Error>, peer: Error) -> SessionEnd {
    local_failure.map_or(SessionEnd::Peer(peer), SessionEnd::Local)
}

/// Runs a database's data sessions: one live GetDeltas call at a time, a new one (from the
/// knowledge committed so far) whenever the current one refused records that would now be
/// accepted, or an epoch notice lowered knowledge after it asked. A call the peer refuses with
/// `BehindHorizon:` (records this node lacks were collected there) is followed by a catch-up
/// by state (`sync::catchup`) and a new call; a second refusal before any record arrived
/// since ends the link, which is dialled again after its backoff, as is a catch-up that
/// fails. Returns when a call ends or fails.
async fn live_data<H: Host, C: PeerClient>(
    host: &Arc<H>,
    peer: &Fingerprint,
    client: &C,
    db: &DbName,
    scopes: &[Scope],
) -> std::result::Result<(), SessionEnd> {
    // Records received from the peer when the last catch-up ended: a refusal before any
    // other record arrived means the catch-up did not bring this node past the horizon.
    let mut caught_up_at: Option<u64> = None;
    let received = || {
        host.peers()
            .status(peer)
            .map_or(0, |status| status.records_received)
    };
    loop {
        let session = Rc::new(Session::new(
            host.clone(),
            peer.clone(),
            db.clone(),
            scopes.to_vec(),
        ));
        tokio::select! {
            biased;
            ended = live_session(client, session.clone()) => match ended {
                Err(SessionEnd::Peer(Error::BehindHorizon(why)))
                    if caught_up_at.is_none_or(|at| received() > at) =>
                {
                    tracing::info!(%peer, db = %db.as_str(), "{why} (answered by this peer): catching up by state");
                    catch_up_by_state(host, peer, client, db, scopes).await?;
                    caught_up_at = Some(received());
                }
                ended => return ended,
            },
            permitted = session.refused_now_permitted() => {
                permitted?;
                tracing::info!(%peer, db = %db.as_str(), "records refused earlier may now be accepted: fetching them again");
            }
            lowered = session.knowledge_lowered() => {
                lowered?;
                tracing::debug!(%peer, db = %db.as_str(), "an epoch notice lowered knowledge: asking again");
            }
        }
    }
}

/// One catch-up by state of `db`'s `scopes` from `peer` over `client`, logged.
async fn catch_up_by_state<H: Host, C: PeerClient>(
    host: &Arc<H>,
    peer: &Fingerprint,
    client: &C,
    db: &DbName,
    scopes: &[Scope],
) -> std::result::Result<(), SessionEnd> {
    let request = StateRequest {
        db: db.clone(),
        scopes: scopes.to_vec(),
    };
    let done = catch_up(host, peer, request.clone(), client.reconcile_state(request))
        .await
        .map_err(|error| match error {
            CatchUpError::Peer(error) => SessionEnd::Peer(error),
            CatchUpError::Local(error) => SessionEnd::Local(error),
        })?;
    tracing::info!(
        %peer,
        db = %db.as_str(),
        rounds = done.rounds,
        message_bytes = done.message_bytes,
        fetched = done.records,
        taken = done.applied.heads_taken,
        grafted = done.applied.grafted,
        removed = done.applied.removed,
        "caught up by state"
    );
    Ok(())
}

/// Runs one live GetDeltas call; returns when the responder ends it or fails.
async fn live_session<H: Host, C: PeerClient>(
    client: &C,
    session: Rc<Session<H>>,
) -> std::result::Result<(), SessionEnd> {
    let request = session.request()?;
    let pages = Rc::new(DataPages::new(session.clone()));
    client
        .get_deltas(request, pages)
        .await
        .map_err(|peer| session_end(session.local_failure(), peer))
}

/// First pause before asking again for syncgroup metadata the peer refused; it doubles up to
/// [`METADATA_RETRY_MAX`].
const METADATA_RETRY_MIN: Duration = Duration::from_millis(500);
const METADATA_RETRY_MAX: Duration = Duration::from_secs(30);

/// Runs a database's syncgroup metadata sessions ([`live_metadata`]) on the link. When the
/// peer refuses them (`NoAccess`: it left those syncgroups, has not accepted a publish yet,
/// or this node may no longer read them), they end alone, the data sessions keep the link,
/// and they are asked for again after a pause that doubles from [`METADATA_RETRY_MIN`] to
/// [`METADATA_RETRY_MAX`] (the peer's answer can change without anything changing here).
async fn metadata_until_refused<H: Host, C: PeerClient>(
    host: &Arc<H>,
    peer: &PeerConfig,
    db: DbName,
    client: &C,
    session: SyncgroupSession<H>,
    known: SyncgroupKnowledge,
    caught_up: tokio::sync::oneshot::Sender<()>,
) -> std::result::Result<(), SessionEnd> {
    let mut next = Some((session, known, caught_up));
    let mut pause = METADATA_RETRY_MIN;
    loop {
        let Some((session, known, caught_up)) = next.take() else {
            // No syncgroup is shared with the peer any more.
            return std::future::pending().await;
        };
        let ended = live_metadata(client, session, known, caught_up).await;
        match ended {
            Err(SessionEnd::Peer(refused @ Error::NoAccess(_))) => {
                tracing::debug!(peer = %peer.fingerprint, "{}; asking again in {pause:?}", LinkError::Peer(refused));
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(METADATA_RETRY_MAX);
                next = SyncgroupSession::new(host.clone(), peer.fingerprint.clone(), db.clone())?
                    .map(|(session, known)| (session, known, tokio::sync::oneshot::channel().0));
            }
            _ => return ended,
        }
    }
}

/// Runs a database's syncgroup metadata sessions: one live GetDeltas call at a time (the
/// first tells `caught_up` when its first round is applied), a new one whenever the current
/// one refused a version that would now be taken. Returns when a call ends or fails, or
/// when no syncgroup is shared any more.
async fn live_metadata<H: Host, C: PeerClient>(
    client: &C,
    session: SyncgroupSession<H>,
    known: SyncgroupKnowledge,
    caught_up: tokio::sync::oneshot::Sender<()>,
) -> std::result::Result<(), SessionEnd> {
    let mut next = Some((session, known));
    let mut caught_up = Some(caught_up);
    while let Some((session, known)) = next.take() {
        let session = Rc::new(session);
        // Only the first call's first round gates the data session.
        let caught_up = caught_up
            .take()
            .unwrap_or_else(|| tokio::sync::oneshot::channel().0);
        let request = SyncgroupRequest {
            db: session.db().clone(),
            initiator_device: session.device(),
            knowledge: known,
            live: true,
        };
        let pages = Rc::new(SyncgroupPages::new(session.clone(), caught_up));
        tokio::select! {
            biased;
            ended = client.get_syncgroup_deltas(request, pages) => {
                return ended.map_err(|peer| session_end(session.local_failure(), peer));
            }
            acceptable = session.refused_now_acceptable() => {
                acceptable?;
                tracing::info!(peer = %session.peer(), db = %session.db().as_str(), "syncgroup versions refused earlier may now be taken: asking again");
            }
        }
        next = session.renew()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peers_refusal_is_the_peers_and_a_broken_connection_is_conn_fail() {
        let refused = LinkError::from_peer(Error::NoAccess("x holds no Read capability".into()));
        assert!(
            matches!(refused, LinkError::Peer(Error::NoAccess(_))),
            "{refused:?}"
        );
        assert_eq!(
            refused.to_string(),
            "NoAccess: x holds no Read capability (answered by this peer)"
        );
        let full = LinkError::from_peer(Error::StorageFull("raise storage.map_size".into()));
        assert!(
            matches!(full, LinkError::Peer(Error::StorageFull(_))),
            "{full:?}"
        );
        assert!(
            full.to_string().ends_with("(answered by this peer)"),
            "{full}"
        );
        // A broken connection keeps its one `ConnFail` prefix.
        let broken = LinkError::from_peer(Error::ConnFail("Disconnected: reset".into()));
        assert!(
            matches!(broken, LinkError::Connection(Error::ConnFail(_))),
            "{broken:?}"
        );
        assert_eq!(
            broken.to_string(),
            "ConnFail: connection to peer failed: Disconnected: reset"
        );
        // An error without a kind is taken for the connection's.
        let unknown = LinkError::from_peer(Error::Internal("no id".into()));
        assert!(
            matches!(unknown, LinkError::Connection(Error::ConnFail(_))),
            "{unknown:?}"
        );
        assert_eq!(
            unknown.to_string(),
            "ConnFail: connection to peer failed: Internal: no id"
        );
    }

    #[test]
    fn this_nodes_failure_on_a_call_is_its_own_not_the_peers_echo() {
        let own = Error::StorageFull("raise storage.map_size".into());
        let echo = Error::Internal(format!("pushing to the peer: {own}"));
        let link = link_ended(Err(session_end(Some(own), echo)));
        assert!(
            matches!(link, LinkError::Local(Error::StorageFull(_))),
            "{link:?}"
        );
        assert_eq!(
            link.to_string(),
            "StorageFull: raise storage.map_size (syncing with this peer)"
        );
        // Without a failure here, the peer's full store is the peer's.
        let theirs = link_ended(Err(session_end(
            None,
            Error::StorageFull("their disk".into()),
        )));
        assert!(
            matches!(theirs, LinkError::Peer(Error::StorageFull(_))),
            "{theirs:?}"
        );
        assert_eq!(
            theirs.to_string(),
            "StorageFull: their disk (answered by this peer)"
        );
    }

    fn mark(records: u64, caught_up_nanos: i64, at: Instant) -> LinkMark {
        LinkMark {
            records,
            caught_up_nanos,
            at,
        }
    }

    #[test]
    fn only_applied_records_or_a_lasting_caught_up_link_count_as_progress() {
        let start = Instant::now();
        let soon = start + Duration::from_millis(100);
        let later = start + LINK_STABLE;
        let before = mark(10, 1, start);
        // Connected, refused at once: nothing applied, nothing caught up.
        assert!(!made_progress(&before, &mark(10, 1, later)));
        // Records applied, however short the link.
        assert!(made_progress(&before, &mark(11, 1, soon)));
        // Caught up, then dropped at once (another session refused): not progress.
        assert!(!made_progress(&before, &mark(10, 2, soon)));
        // Caught up and stayed up.
        assert!(made_progress(&before, &mark(10, 2, later)));
    }
}
