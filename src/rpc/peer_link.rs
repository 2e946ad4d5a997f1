//! Peer links: the accept side (TLS with a known client certificate, then `Sync` as the
//! bootstrap) and the dial side (one live connection per peer, re-dialled with capped
//! exponential backoff, one live GetDeltas session per shared database). Both run on the
//! LocalSet workers because Cap'n Proto objects are `!Send`.

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
use crate::rpc::admission::Slot;
use crate::rpc::client::error_message;
use crate::rpc::limits::{ConnectionBudget, MAX_PEER_STREAMS};
use crate::rpc::network;
use crate::rpc::peer::SyncImpl;
use crate::rpc::peer_sinks::{DeltaSinkImpl, SyncgroupSinkImpl};
use crate::rpc::syncgroup_wire::write_syncgroup_knowledge;
use crate::rpc::tls::{PeerStream, TlsAcceptor, TlsConnector, TrustedPeers};
use crate::rpc::transport::BoxIo;
use crate::rpc::wire;
use crate::rpc::{disconnect, run_until_cancelled};
use crate::schema::sync_capnp::{delta_sink, sync};
use crate::store::SyncgroupKnowledge;
use crate::sync::initiator::Session;
use crate::sync::peers::PeerConfig;
use crate::sync::syncgroups::SyncgroupSession;

/// How long a TCP connect plus TLS handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// First pause between dials of an unreachable peer (it doubles up to the node's
/// `redial_max`).
const BACKOFF_MIN: Duration = Duration::from_millis(50);

/// Serves one incoming peer connection until it closes or the node stops. `slot` is its place
/// under the peer port's caps: the TLS handshake must finish within [`CONNECT_TIMEOUT`], and
/// an identity over its connection cap is refused with `ResourceExhausted:`.
pub async fn serve_peer(io: BoxIo, mut slot: Slot, node: Arc<Node>, cancel: CancellationToken) {
    let acceptor = match TlsAcceptor::new(node.identity(), TrustedPeers::anyone()) {
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

/// How long a link must have stayed up for its end to reset the redial backoff.
const LINK_STABLE: Duration = Duration::from_secs(5);

/// Keeps a live link to `peer` until cancelled: dial, sync, and on failure record
/// `ConnFail` and dial again after a capped exponential backoff.
pub async fn keep_linked(node: Arc<Node>, peer: PeerConfig, cancel: CancellationToken) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let started = std::time::Instant::now();
        let outcome = run_link(&node, &peer, &cancel).await;
        // A link refused or dropped soon after connecting (NoAccess: a proposal not yet
        // accepted, a revoked member) backs off like an unreachable peer.
        let lasted = started.elapsed() >= LINK_STABLE;
        if cancel.is_cancelled() {
            break;
        }
        node.peers()
            .update_status(&peer.fingerprint, |status| status.connected = false);
        match outcome {
            Ok(()) => backoff = BACKOFF_MIN,
            Err(LinkError {
                message,
                was_connected,
            }) => {
                if (was_connected && lasted) || backoff == BACKOFF_MIN {
                    tracing::warn!(peer = %peer.fingerprint, address = %peer.address, "{message}");
                } else {
                    tracing::debug!(peer = %peer.fingerprint, "{message}");
                }
                node.peers().update_status(&peer.fingerprint, |status| {
                    status.last_error = Some(message)
                });
                backoff = if was_connected && lasted {
                    BACKOFF_MIN
                } else {
                    (backoff * 2).min(node.redial_max())
                };
            }
        }
        tokio::select! {
            () = tokio::time::sleep(jitter(backoff)) => {}
            () = cancel.cancelled() => break,
        }
    }
    node.peers()
        .update_status(&peer.fingerprint, |status| status.connected = false);
}

/// Why a link ended, and whether it had got as far as syncing.
struct LinkError {
    message: String,
    was_connected: bool,
}

fn conn_fail(error: impl std::fmt::Display) -> LinkError {
    LinkError {
        message: format!("ConnFail: connection to peer failed: {error}"),
        was_connected: false,
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
        let scopes = scopes.iter().cloned().collect();
        let session = Session::new(node.clone(), peer.fingerprint.clone(), db.clone(), scopes);
        sessions.push(live_session(remote, session).boxed_local());
        match SyncgroupSession::new(node.clone(), peer.fingerprint.clone(), db) {
            Ok(Some((session, known))) => {
                sessions.push(live_syncgroup_session(remote, session, known).boxed_local());
            }
            Ok(None) => {}
            Err(error) => return Err(conn_fail(error)),
        }
    }
    let (ended, _, _) = select_all(sessions).await;
    Err(LinkError {
        message: match ended {
            Ok(()) => "ConnFail: connection to peer failed: the session ended".to_owned(),
            Err(message) => format!("ConnFail: connection to peer failed: {message}"),
        },
        was_connected: true,
    })
}

/// Runs one live GetDeltas call; returns when the responder ends it or fails.
async fn live_session(remote: &sync::Client, session: Session) -> Result<(), String> {
    let request = session.request().map_err(|e| e.to_string())?;
    let mut call = remote.get_deltas_request();
    {
        let mut params = call.get();
        let mut data = params.reborrow().init_req().init_data();
        data.set_db_name(request.db.as_str());
        data.set_initiator_device(request.initiator_device.0);
        data.set_live(request.live);
        let mut marks = data
            .reborrow()
            .init_mark_generations(request.mark_at.len() as u32);
        for (i, generation) in request.mark_at.iter().enumerate() {
            marks.set(i as u32, *generation);
        }
        wire::write_knowledge(&request.knowledge, data.init_init_vec());
    }
    let sink: delta_sink::Client = capnp_rpc::new_client(DeltaSinkImpl::new(session));
    run_get_deltas(call, sink).await
}

/// Runs one live GetDeltas call for syncgroup metadata.
async fn live_syncgroup_session(
    remote: &sync::Client,
    session: SyncgroupSession,
    known: SyncgroupKnowledge,
) -> Result<(), String> {
    let mut call = remote.get_deltas_request();
    {
        let mut sgs = call.get().init_req().init_sgs();
        sgs.set_db_name(session.db().as_str());
        sgs.set_initiator_device(session.device().0);
        sgs.set_live(true);
        write_syncgroup_knowledge(&known, sgs.init_init_vec());
    }
    let sink: delta_sink::Client = capnp_rpc::new_client(SyncgroupSinkImpl::new(session));
    run_get_deltas(call, sink).await
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

/// The pause with up to a quarter of random jitter, so peers don't redial in lockstep.
fn jitter(pause: Duration) -> Duration {
    let mut byte = [0u8; 1];
    let _ = getrandom::fill(&mut byte);
    pause + pause / 4 * u32::from(byte[0]) / 255
}
