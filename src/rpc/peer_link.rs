//! Peer links: the accept side (TLS with a known client certificate, then `Sync` as the
//! bootstrap) and the dial side (one live connection per peer, re-dialled with capped
//! exponential backoff, one live GetDeltas session per shared database). Both run on the
//! LocalSet workers because Cap'n Proto objects are `!Send`.
//!
//! On each link a database's syncgroup metadata is synced before its data: the data session
//! starts once the syncgroup session's first round is applied, so records of a member this
//! node has not heard of yet are not refused for want of its membership. A data session that
//! refused records is restarted (on the same connection) as soon as the syncgroup metadata
//! would accept one of them; its knowledge was kept below them, so the new request fetches
//! them. Likewise every data session is restarted once an epoch notice lowered knowledge
//! after it asked (`store::notice`).

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use capnp_rpc::{RpcSystem, rpc_twoparty_capnp};
use futures::future::{FutureExt, select_all};
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::identity::Fingerprint;
use crate::names::DbName;
use crate::node::Node;
use crate::retry::Backoff;
use crate::rpc::admission::Slot;
use crate::rpc::client::error_message;
use crate::rpc::limits::{ConnectionBudget, MAX_PEER_STREAMS};
use crate::rpc::network;
use crate::rpc::peer::SyncImpl;
use crate::rpc::peer_sinks::{DeltaSinkImpl, SyncgroupSinkImpl};
use crate::rpc::syncgroup_wire::write_syncgroup_knowledge;
use crate::rpc::tls::{PeerStream, TlsAcceptor, TlsConnector};
use crate::rpc::transport::BoxIo;
use crate::rpc::wire;
use crate::rpc::{disconnect, run_until_cancelled};
use crate::schema::sync_capnp::{delta_sink, sync};
use crate::store::SyncgroupKnowledge;
use crate::sync::initiator::Session;
use crate::sync::peers::PeerConfig;
use crate::sync::syncgroups::SyncgroupSession;
use crate::tally::Repeats;

/// How long a TCP connect plus TLS handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// First pause between dials of an unreachable peer (it doubles up to the node's
/// `redial_max`).
const BACKOFF_MIN: Duration = Duration::from_millis(50);

/// Serves one incoming peer connection until it closes or the node stops. `slot` is its place
/// under the peer port's caps: the TLS handshake must finish within [`CONNECT_TIMEOUT`], and
/// an identity over its connection cap is refused with `ResourceExhausted:`.
pub async fn serve_peer(io: BoxIo, mut slot: Slot, node: Arc<Node>, cancel: CancellationToken) {
    let acceptor = match TlsAcceptor::new(node.identity()) {
        Ok(acceptor) => acceptor,
        Err(error) => return tracing::error!(%error, "peer TLS setup"),
    };
    let admit = |peer: &Fingerprint| slot.bind_peer(peer);
    let accepted =
        tokio::time::timeout(CONNECT_TIMEOUT, acceptor.accept_admitting(io, admit)).await;
    let link = match accepted {
        Ok(Ok((link, ()))) => link,
        // Counted and summed up in the log by the caps.
        Ok(Err(error)) if is_resource_exhausted(&error) => return,
        Ok(Err(error)) => return slot.note_failure(&format!("{error:#}")),
        Err(_) => return slot.note_failure("the TLS handshake timed out"),
    };
    slot.authenticated();
    tracing::debug!(peer = %link.peer, "peer connected");
    let peer = link.peer.clone();
    let budget = peer_budget(&node, &peer);
    let member = (node.clone(), peer.clone());
    budget.restrict_large_frames(Box::new(move || {
        member.0.is_member(&member.1).unwrap_or(false)
    }));
    let sync: sync::Client =
        capnp_rpc::new_client(SyncImpl::new(node.clone(), link.peer, budget.clone()));
    let rpc_system = rpc_system(
        budget,
        link.stream,
        rpc_twoparty_capnp::Side::Server,
        Some(sync.client),
    );
    // A peer this node syncs with but cannot dial (a member advertising no address) is
    // synced over its own connection: its dialer serves `Sync` too.
    let unreachable = node
        .peers()
        .get(&peer)
        .filter(|config| config.address.is_empty());
    let Some(config) = unreachable else {
        if let Err(error) = run_until_cancelled(rpc_system, &cancel).await {
            tracing::debug!(%error, "peer connection ended");
        }
        return;
    };
    sync_back(&node, &config, rpc_system, &cancel).await;
}

/// Serves an accepted connection and, over it, syncs from the peer that opened it (whose
/// `Sync` is its bootstrap), until either ends or the node stops.
async fn sync_back(
    node: &Arc<Node>,
    config: &PeerConfig,
    mut rpc_system: RpcSystem<rpc_twoparty_capnp::Side>,
    cancel: &CancellationToken,
) {
    let peer = &config.fingerprint;
    let remote: sync::Client = rpc_system.bootstrap(rpc_twoparty_capnp::Side::Client);
    let disconnector = rpc_system.get_disconnector();
    let mut connection = Box::pin(rpc_system);
    tokio::select! {
        ended = &mut connection => tracing::debug!(?ended, "peer connection ended"),
        ended = sync_over(node, config, &remote) => {
            if let Err(LinkError { message, .. }) = ended {
                tracing::debug!(%peer, "{message}");
                node.peers().update_status(peer, |status| status.last_error = Some(message));
            }
        }
        () = cancel.cancelled() => {}
    }
    node.peers()
        .update_status(peer, |status| status.connected = false);
    drop(remote);
    disconnect(disconnector, connection).await;
}

/// The limits of one authenticated peer connection, shared by its network and its `Sync`.
/// The limits of a connection with `peer`: the peer port's pool of incoming bytes, one large
/// frame at a time for that identity, and [`MAX_PEER_STREAMS`] streams.
pub(crate) fn peer_budget(node: &Node, peer: &Fingerprint) -> Rc<ConnectionBudget> {
    let pools = node.node_budget();
    let budget = ConnectionBudget::authenticated(pools.peer_port());
    budget.one_large_frame_at_a_time(pools.identity_gate(peer));
    budget.allow_streams(MAX_PEER_STREAMS);
    budget
}

/// Runs Cap'n Proto RPC over an authenticated peer stream, under `budget` ([`peer_budget`]).
pub(crate) fn rpc_system<S>(
    budget: Rc<ConnectionBudget>,
    stream: S,
    side: rpc_twoparty_capnp::Side,
    bootstrap: Option<capnp::capability::Client>,
) -> RpcSystem<rpc_twoparty_capnp::Side>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + 'static,
{
    network::rpc_system(stream, side, bootstrap, budget)
}

fn is_resource_exhausted(error: &anyhow::Error) -> bool {
    matches!(error.downcast_ref(), Some(Error::ResourceExhausted(_)))
}

/// How long a link that caught up must have stayed up for its end to count as progress (a
/// link refused or dropped at once after catching up, e.g. one session refused while the other
/// caught up, makes none).
const LINK_STABLE: Duration = Duration::from_secs(5);
/// Identical link failures are logged once, then summed up at most this often.
const REPEAT_LOG_PERIOD: Duration = Duration::from_secs(60);

/// Keeps a live link to `peer` until cancelled: dial, sync, and on failure record
/// `ConnFail` and dial again after a capped exponential backoff ([`Backoff`]), which goes back
/// to its minimum only after a link made progress ([`made_progress`]), whatever the failure
/// (unreachable, `NoAccess:`, `StorageFull:`, `BadState:`). A failure repeated word for word
/// is logged once, then with its count ([`Repeats`]).
pub async fn keep_linked(node: Arc<Node>, peer: PeerConfig, cancel: CancellationToken) {
    let mut backoff = Backoff::new(BACKOFF_MIN, node.redial_max());
    let mut repeats = Repeats::new(REPEAT_LOG_PERIOD);
    loop {
        let before = LinkMark::of(&node, &peer.fingerprint);
        let outcome = run_link(&node, &peer, &cancel).await;
        if cancel.is_cancelled() {
            break;
        }
        node.peers()
            .update_status(&peer.fingerprint, |status| status.connected = false);
        if made_progress(&before, &LinkMark::of(&node, &peer.fingerprint)) {
            backoff.progress();
            if let Some(line) = repeats.flush() {
                tracing::warn!(peer = %peer.fingerprint, address = %peer.address, "{line}");
            }
        }
        if let Err(LinkError { message, .. }) = outcome {
            for line in repeats.note(&message) {
                tracing::warn!(peer = %peer.fingerprint, address = %peer.address, "{line}");
            }
            tracing::debug!(peer = %peer.fingerprint, "{message}");
            node.peers().update_status(&peer.fingerprint, |status| {
                status.last_error = Some(message)
            });
        }
        tokio::select! {
            () = tokio::time::sleep(backoff.fail()) => {}
            () = cancel.cancelled() => break,
        }
    }
    if let Some(line) = repeats.flush() {
        tracing::warn!(peer = %peer.fingerprint, address = %peer.address, "{line}");
    }
    node.peers()
        .update_status(&peer.fingerprint, |status| status.connected = false);
}

/// What a link had achieved with a peer at one moment: records applied from it, when a round
/// with it last reached the end of its log, and when that was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LinkMark {
    records: u64,
    caught_up_nanos: i64,
    at: std::time::Instant,
}

impl LinkMark {
    pub(crate) fn of(node: &Node, peer: &Fingerprint) -> LinkMark {
        let status = node.peers().status(peer).unwrap_or_default();
        LinkMark {
            records: status.records_received,
            caught_up_nanos: status.last_success_nanos,
            at: std::time::Instant::now(),
        }
    }
}

/// Whether a link made progress between two marks: it applied records, or it reached the end
/// of the peer's log and stayed up [`LINK_STABLE`]. Connecting is not progress: a peer that
/// refuses every session right after the handshake would otherwise be redialled at once.
pub(crate) fn made_progress(before: &LinkMark, after: &LinkMark) -> bool {
    let lasted = after.at.duration_since(before.at) >= LINK_STABLE;
    after.records > before.records || (after.caught_up_nanos != before.caught_up_nanos && lasted)
}

/// Why a link ended.
struct LinkError {
    message: String,
}

fn conn_fail(error: impl std::fmt::Display) -> LinkError {
    LinkError {
        message: format!("ConnFail: connection to peer failed: {error}"),
    }
}

/// Dials `address` and authenticates the node there as `fingerprint` (TLS, pinned), within
/// [`CONNECT_TIMEOUT`]. Failures are `ConnFail`.
pub(crate) async fn dial(
    node: &Node,
    address: &str,
    fingerprint: &Fingerprint,
) -> Result<PeerStream<tokio_rustls::client::TlsStream<BoxIo>>, Error> {
    let connect = async {
        let io = node
            .network()
            .dial(&node.peer_address(), address)
            .await
            .map_err(|e| anyhow::anyhow!("dialling {address}: {e}"))?;
        TlsConnector::new(node.identity())?
            .connect(io, fingerprint)
            .await
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
        Err(_) => Err(Error::ConnFail(format!(
            "no connection to {address} within {CONNECT_TIMEOUT:?}"
        ))),
        Ok(Err(error)) => Err(Error::ConnFail(format!("{error:#}"))),
        Ok(Ok(link)) => Ok(link),
    }
}

/// One connection's life: dial, authenticate, open a live session per shared database, and
/// return when any of them (or the connection) ends.
async fn run_link(
    node: &Arc<Node>,
    peer: &PeerConfig,
    cancel: &CancellationToken,
) -> Result<(), LinkError> {
    let link = tokio::select! {
        link = dial(node, &peer.address, &peer.fingerprint) => link,
        () = cancel.cancelled() => return Ok(()),
    };
    let link = link.map_err(|error| {
        conn_fail(
            error
                .to_string()
                .trim_start_matches("ConnFail: connection to peer failed: "),
        )
    })?;
    // Serve `Sync` to the dialed peer too, so a peer that cannot dial this node (it
    // advertises no address) can sync from it over this connection.
    let budget = peer_budget(node, &peer.fingerprint);
    let ours: sync::Client = capnp_rpc::new_client(SyncImpl::new(
        node.clone(),
        peer.fingerprint.clone(),
        budget.clone(),
    ));
    let mut rpc_system = rpc_system(
        budget,
        link.stream,
        rpc_twoparty_capnp::Side::Client,
        Some(ours.client),
    );
    let remote: sync::Client = rpc_system.bootstrap(rpc_twoparty_capnp::Side::Server);
    let disconnector = rpc_system.get_disconnector();
    let mut connection = Box::pin(rpc_system);
    let outcome = tokio::select! {
        outcome = sync_over(node, peer, &remote) => outcome,
        ended = &mut connection => Err(conn_fail(format!("connection closed: {}", ended.err().map(|e| e.extra).unwrap_or_default()))),
        () = cancel.cancelled() => Ok(()),
    };
    drop(remote);
    disconnect(disconnector, connection).await;
    outcome
}

/// Runs one live session per shared database until one ends. (The responder names its
/// device in every push, so no `deviceInfo` round trip comes first.)
async fn sync_over(
    node: &Arc<Node>,
    peer: &PeerConfig,
    remote: &sync::Client,
) -> Result<(), LinkError> {
    node.peers().update_status(&peer.fingerprint, |status| {
        status.connected = true;
        status.last_error = None;
    });
    let mut sessions = Vec::new();
    for (db, scopes) in &peer.databases {
        let db = DbName::parse(db).map_err(conn_fail)?;
        let scopes: Vec<_> = scopes.iter().cloned().collect();
        let (caught_up, metadata_first) = tokio::sync::oneshot::channel();
        match SyncgroupSession::new(node.clone(), peer.fingerprint.clone(), db.clone()) {
            Ok(Some((session, known))) => {
                let metadata = live_metadata(remote, session, known, caught_up);
                sessions.push(metadata.boxed_local());
            }
            Ok(None) => drop(caught_up),
            Err(error) => return Err(conn_fail(error)),
        }
        let data = async move {
            // Dropped unsent (no syncgroup shared, or its session ended first): go ahead.
            let _ = metadata_first.await;
            live_data(node, &peer.fingerprint, remote, &db, &scopes).await
        };
        sessions.push(data.boxed_local());
    }
    let (ended, _, _) = select_all(sessions).await;
    Err(LinkError {
        message: match ended {
            Ok(()) => "ConnFail: connection to peer failed: the session ended".to_owned(),
            Err(SessionEnd::Peer(message)) => peer_ended(&message),
            // This node's own failure (a full disk applying a page): its own id and fix, not
            // the echo the peer's failed push carried back.
            Err(SessionEnd::Local(message)) => format!("{message} (syncing with this peer)"),
        },
    })
}

/// How a session the peer ended reads in the status and the log: a refusal with its own id
/// (`NoAccess:`, `BadState:`, ...) keeps it, since the connection did not fail; a broken
/// connection or an error without an id is `ConnFail`.
fn peer_ended(message: &str) -> String {
    match Error::from_message(message).id() {
        "ConnFail" | "Internal" => format!("ConnFail: connection to peer failed: {message}"),
        _ => format!("{message} (answered by this peer)"),
    }
}

/// Why a session ended: the peer or the connection failed it, or this node failed (to
/// apply what the peer sent, or to read its own store).
#[derive(Debug)]
enum SessionEnd {
    Peer(String),
    Local(String),
}

impl From<Error> for SessionEnd {
    fn from(error: Error) -> SessionEnd {
        SessionEnd::Local(error.to_string())
    }
}

/// Runs a database's data sessions: one live GetDeltas call at a time, a new one (from the
/// knowledge committed so far) whenever the current one refused records that would now be
/// accepted, or an epoch notice lowered knowledge after it asked. Returns when a call ends or
/// fails.
async fn live_data(
    node: &Arc<Node>,
    peer: &Fingerprint,
    remote: &sync::Client,
    db: &DbName,
    scopes: &[crate::genvec::Scope],
) -> Result<(), SessionEnd> {
    loop {
        let session = Rc::new(Session::new(
            node.clone(),
            peer.clone(),
            db.clone(),
            scopes.to_vec(),
        ));
        tokio::select! {
            ended = live_session(remote, session.clone()) => return ended,
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

/// Runs one live GetDeltas call; returns when the responder ends it or fails.
async fn live_session(remote: &sync::Client, session: Rc<Session>) -> Result<(), SessionEnd> {
    let request = session.request()?;
    let mut call = remote.get_deltas_request();
    {
        let mut params = call.get();
        let mut data = params.reborrow().init_req().init_data();
        data.set_db_name(request.db.as_str());
        data.set_initiator_device(request.initiator_device.0);
        data.set_live(request.live);
        if let Some(token) = &request.resume {
            data.set_resume(token);
        }
        let mut marks = data
            .reborrow()
            .init_mark_generations(request.mark_at.len() as u32);
        for (i, generation) in request.mark_at.iter().enumerate() {
            marks.set(i as u32, *generation);
        }
        wire::write_knowledge(&request.knowledge, data.init_init_vec());
    }
    let sink: delta_sink::Client = capnp_rpc::new_client(DeltaSinkImpl::new(session.clone()));
    run_get_deltas(call, sink).await.map_err(|peer| {
        session
            .local_failure()
            .map_or(SessionEnd::Peer(peer), SessionEnd::Local)
    })
}

/// Runs a database's syncgroup metadata sessions: one live GetDeltas call at a time (the
/// first tells `caught_up` when its first round is applied), a new one whenever the current
/// one refused a version that would now be taken. Returns when a call ends or fails, or
/// when no syncgroup is shared any more.
async fn live_metadata(
    remote: &sync::Client,
    session: SyncgroupSession,
    known: SyncgroupKnowledge,
    caught_up: tokio::sync::oneshot::Sender<()>,
) -> Result<(), SessionEnd> {
    let mut next = Some((session, known));
    let mut caught_up = Some(caught_up);
    while let Some((session, known)) = next.take() {
        let session = Rc::new(session);
        // Only the first call's first round gates the data session.
        let caught_up = caught_up
            .take()
            .unwrap_or_else(|| tokio::sync::oneshot::channel().0);
        tokio::select! {
            ended = live_syncgroup_session(remote, session.clone(), known, caught_up) => return ended,
            acceptable = session.refused_now_acceptable() => {
                acceptable?;
                tracing::info!(peer = %session.peer(), db = %session.db().as_str(), "syncgroup versions refused earlier may now be taken: asking again");
            }
        }
        next = session.renew()?;
    }
    Ok(())
}

/// Runs one live GetDeltas call for syncgroup metadata; tells `caught_up` when its first
/// round (one or more pages: the last says nothing remains) is applied.
async fn live_syncgroup_session(
    remote: &sync::Client,
    session: Rc<SyncgroupSession>,
    known: SyncgroupKnowledge,
    caught_up: tokio::sync::oneshot::Sender<()>,
) -> Result<(), SessionEnd> {
    let mut call = remote.get_deltas_request();
    {
        let mut sgs = call.get().init_req().init_sgs();
        sgs.set_db_name(session.db().as_str());
        sgs.set_initiator_device(session.device().0);
        sgs.set_live(true);
        write_syncgroup_knowledge(&known, sgs.init_init_vec());
    }
    let sink: delta_sink::Client =
        capnp_rpc::new_client(SyncgroupSinkImpl::new(session.clone(), caught_up));
    run_get_deltas(call, sink).await.map_err(|peer| {
        session
            .local_failure()
            .map_or(SessionEnd::Peer(peer), SessionEnd::Local)
    })
}

/// Sends a GetDeltas call with its sink; returns when the responder ends it, with the
/// responder's error text if it failed.
async fn run_get_deltas(
    mut call: capnp::capability::Request<
        sync::get_deltas_params::Owned,
        sync::get_deltas_results::Owned,
    >,
    sink: delta_sink::Client,
) -> Result<(), String> {
    call.get().set_sink(sink);
    call.send()
        .promise
        .await
        .map(drop)
        .map_err(|e| error_message(&e).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peers_refusal_keeps_its_id_and_a_broken_connection_is_conn_fail() {
        let refused = peer_ended("NoAccess: x holds no Read capability");
        assert!(refused.starts_with("NoAccess: "), "{refused}");
        let broken = peer_ended("Disconnected: connection reset");
        assert!(
            broken.starts_with("ConnFail: connection to peer failed: "),
            "{broken}"
        );
        let failed = peer_ended("ConnFail: no route");
        assert!(
            failed.starts_with("ConnFail: connection to peer failed: "),
            "{failed}"
        );
    }

    fn mark(records: u64, caught_up_nanos: i64, at: std::time::Instant) -> LinkMark {
        LinkMark {
            records,
            caught_up_nanos,
            at,
        }
    }

    #[test]
    fn only_applied_records_or_a_lasting_caught_up_link_count_as_progress() {
        let start = std::time::Instant::now();
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
