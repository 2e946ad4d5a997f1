//! Peer links over TLS and Cap'n Proto: the accept side (TLS with any client certificate whose key
//! the client proves, then `Sync` as the bootstrap) and the dial side, the engine's `sync::link`
//! traits implemented by [`CapnpDialer`] (dial, authenticate, serve `Sync` back), [`CapnpPeer`]
//! (GetDeltas calls with their sinks) and [`CapnpDriver`] (the RPC system). The link loop itself,
//! its session rules and its backoff, is `sync::link`'s. Both sides run on the LocalSet workers
//! because Cap'n Proto objects are `!Send`.

use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use capnp_rpc::{RpcSystem, rpc_twoparty_capnp};

use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::genvec::DeviceId;
use crate::identity::Fingerprint;
use crate::node::Node;
use crate::retry::Backoff;
use crate::rpc::admission::Slot;
use crate::rpc::clock;
use crate::rpc::limits::{ConnectionBudget, MAX_PEER_STREAMS};
use crate::rpc::network;
use crate::rpc::peer::SyncImpl;
use crate::rpc::peer_sinks::{DeltaSinkImpl, SyncgroupSinkImpl};
use crate::rpc::peer_state::{CapnpState, read_state_answer};
use crate::rpc::syncgroup_wire::write_syncgroup_knowledge;
use crate::rpc::syncgroup_wire::{read_syncgroup, write_member_info, write_syncgroup};
use crate::rpc::tls::{PeerStream, TlsAcceptor, TlsConnector};
use crate::rpc::transport::BoxIo;
use crate::rpc::wire;
use crate::rpc::wire::{read_vector, write_vector};
use crate::rpc::{disconnect, run_until_cancelled};
use crate::schema::sync_capnp::{delta_sink, sync};
use crate::store::Version;
use crate::sync::catchup::{StateBegin, StateRequest};
use crate::sync::host::Host;
use crate::sync::link::{
    DataPages, Dialer, LinkDriver, PeerClient, SyncgroupPages, SyncgroupRequest, keep_linked,
    sync_over,
};
use crate::sync::membership::{JoinReply, JoinRequest, PublishOutcome, PublishRequest};
use crate::sync::peers::PeerConfig;
use crate::sync::responder::DeltaRequest;

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
    let remote = CapnpPeer {
        remote: rpc_system.bootstrap(rpc_twoparty_capnp::Side::Client),
        me: node.identity().fingerprint().clone(),
    };
    let sampler = clock::keep_sampling(node.clone(), peer.clone(), remote.remote.clone());
    tokio::task::spawn_local(sampler);
    let mut driver = CapnpDriver::new(rpc_system);
    tokio::select! {
        biased;
        () = cancel.cancelled() => {}
        ended = driver.run() => tracing::debug!(%ended, "peer connection ended"),
        ended = sync_over(node, config, &remote) => {
            if let Err(error) = ended {
                let message = error.to_string();
                tracing::debug!(%peer, "{message}");
                node.peers().update_status(peer, |status| status.last_error = Some(message));
            }
            // The connection is the peer's: its own calls on it (a join at this admin from a
            // member that left and joins again, whose sessions refuse ours) go on until it
            // hangs up. Closing it here failed them with "client requested disconnect".
            tokio::select! {
                biased;
                () = cancel.cancelled() => {}
                ended = driver.run() => tracing::debug!(%ended, "peer connection ended"),
            }
        }
    }
    node.peers()
        .update_status(peer, |status| status.connected = false);
    drop(remote);
    driver.close().await;
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

/// Keeps a live link to `peer` over TLS and Cap'n Proto until cancelled (the engine's
/// `sync::link::keep_linked`, redialling from [`BACKOFF_MIN`] up to the node's
/// `redial_max`).
pub async fn link_peer(node: Arc<Node>, peer: PeerConfig, cancel: CancellationToken) {
    let backoff = Backoff::new(BACKOFF_MIN, node.redial_max(), node.env().random.clone());
    let dialer = CapnpDialer { node: node.clone() };
    keep_linked(node, dialer, peer, backoff, cancel).await;
}

/// Reaches peers over TLS and Cap'n Proto for the engine's link loop
/// (`sync::link::keep_linked`): each connection also serves this node's `Sync` to the peer,
/// so a peer that cannot dial this node (it advertises no address) syncs over it.
pub struct CapnpDialer {
    pub node: Arc<Node>,
}

impl Dialer for CapnpDialer {
    type Client = CapnpPeer;
    type Driver = CapnpDriver;

    async fn dial(
        &self,
        address: &str,
        fingerprint: &Fingerprint,
    ) -> Result<(CapnpPeer, CapnpDriver), Error> {
        let node = &self.node;
        let link = dial(node, address, fingerprint).await?;
        let budget = peer_budget(node, fingerprint);
        let ours: sync::Client = capnp_rpc::new_client(SyncImpl::new(
            node.clone(),
            fingerprint.clone(),
            budget.clone(),
        ));
        let mut rpc_system = rpc_system(
            budget,
            link.stream,
            rpc_twoparty_capnp::Side::Client,
            Some(ours.client),
        );
        let remote: sync::Client = rpc_system.bootstrap(rpc_twoparty_capnp::Side::Server);
        let sampler = clock::keep_sampling(node.clone(), fingerprint.clone(), remote.clone());
        tokio::task::spawn_local(sampler);
        let me = node.identity().fingerprint().clone();
        Ok((CapnpPeer { remote, me }, CapnpDriver::new(rpc_system)))
    }
}

/// Keeps a peer connection's RPC system going, and closes it.
pub struct CapnpDriver {
    disconnector: capnp_rpc::Disconnector<rpc_twoparty_capnp::Side>,
    connection: Pin<Box<RpcSystem<rpc_twoparty_capnp::Side>>>,
}

impl CapnpDriver {
    fn new(rpc_system: RpcSystem<rpc_twoparty_capnp::Side>) -> CapnpDriver {
        CapnpDriver {
            disconnector: rpc_system.get_disconnector(),
            connection: Box::pin(rpc_system),
        }
    }
}

impl LinkDriver for CapnpDriver {
    async fn run(&mut self) -> String {
        (&mut self.connection)
            .await
            .err()
            .map(|error| error.extra)
            .unwrap_or_default()
    }

    async fn close(self) {
        disconnect(self.disconnector, self.connection).await;
    }
}

/// A peer's `Sync` capability, as the engine's [`PeerClient`].
pub struct CapnpPeer {
    remote: sync::Client,
    /// This node's identity, named as the caller where a call names one.
    me: Fingerprint,
}

impl PeerClient for CapnpPeer {
    type State = CapnpState;

    async fn reconcile_state(
        &self,
        request: StateRequest,
    ) -> Result<(StateBegin, CapnpState), Error> {
        let mut call = self.remote.reconcile_state_request();
        {
            let mut params = call.get();
            params.set_db(request.db.as_str());
            let mut scopes = params.init_scopes(request.scopes.len() as u32);
            for (i, scope) in request.scopes.iter().enumerate() {
                scopes.set(i as u32, scope.to_bytes().as_slice());
            }
        }
        let answer = call.send().promise.await?;
        read_state_answer(answer.get()?, &request.scopes)
    }

    async fn get_deltas<H: Host>(
        &self,
        request: DeltaRequest,
        pages: Rc<DataPages<H>>,
    ) -> Result<(), Error> {
        let mut call = self.remote.get_deltas_request();
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
                marks.set(i as u32, generation.get());
            }
            wire::write_knowledge(&request.knowledge, data.reborrow().init_init_vec());
            wire::write_knowledge(&request.floor, data.reborrow().init_init_floor());
        }
        let sink: delta_sink::Client = capnp_rpc::new_client(DeltaSinkImpl::new(pages));
        run_get_deltas(call, sink).await
    }

    async fn get_syncgroup_deltas<H: Host>(
        &self,
        request: SyncgroupRequest,
        pages: Rc<SyncgroupPages<H>>,
    ) -> Result<(), Error> {
        let mut call = self.remote.get_deltas_request();
        {
            let mut sgs = call.get().init_req().init_sgs();
            sgs.set_db_name(request.db.as_str());
            sgs.set_initiator_device(request.initiator_device.0);
            sgs.set_live(request.live);
            write_syncgroup_knowledge(&request.knowledge, sgs.init_init_vec());
        }
        let sink: delta_sink::Client = capnp_rpc::new_client(SyncgroupSinkImpl::new(pages));
        run_get_deltas(call, sink).await
    }

    async fn device_info(&self) -> Result<DeviceId, Error> {
        self.call_device_info().await
    }

    async fn join_at_admin(&self, request: JoinRequest) -> Result<JoinReply, Error> {
        let me = self.me.clone();
        self.call_join(request, me.as_str()).await
    }

    async fn publish(&self, request: PublishRequest) -> Result<PublishOutcome, Error> {
        self.call_publish(request).await
    }
}

impl CapnpPeer {
    async fn call_device_info(&self) -> Result<DeviceId, Error> {
        let info = self.remote.device_info_request().send().promise.await?;
        Ok(DeviceId(info.get()?.get_device_id()))
    }

    async fn call_join(&self, request: JoinRequest, me: &str) -> Result<JoinReply, Error> {
        let mut call = self.remote.join_syncgroup_at_admin_request();
        {
            let mut params = call.get();
            params.set_sg_name(request.name.as_str());
            params.set_joiner_name(me);
            params.set_invite(request.invite_secret.as_deref().unwrap_or_default());
            write_member_info(&request.info, params.init_my_info());
        }
        let response = call.send().promise.await?;
        let results = response.get()?;
        Ok(JoinReply {
            sg: read_syncgroup(results.get_sg()?)?,
            version: Version::from_hex(wire::text(results.get_version())?)?,
            checkpoint: read_vector(results.get_genvec()?)?,
        })
    }

    async fn call_publish(&self, request: PublishRequest) -> Result<PublishOutcome, Error> {
        let mut call = self.remote.publish_syncgroup_request();
        {
            let mut params = call.get();
            params.set_publisher(request.publisher.as_str());
            params.set_version(request.version.to_hex().as_str());
            write_syncgroup(&request.sg, params.reborrow().init_sg());
            params.set_invite(request.invite_secret.as_deref().unwrap_or_default());
            write_vector(&request.checkpoint, params.reborrow().init_genvec());
        }
        let published = call.send().promise.await?;
        Ok(match published.get()?.get_proposed() {
            true => PublishOutcome::Proposed,
            false => PublishOutcome::Accepted,
        })
    }
}

/// Sends a GetDeltas call with its sink; returns when the responder ends it, with the error
/// of the kind the responder raised if it failed, or `ConnFail` if the connection broke
/// (`From<capnp::Error>`, `rpc::wire`).
async fn run_get_deltas(
    mut call: capnp::capability::Request<
        sync::get_deltas_params::Owned,
        sync::get_deltas_results::Owned,
    >,
    sink: delta_sink::Client,
) -> Result<(), Error> {
    call.get().set_sink(sink);
    call.send().promise.await.map(drop).map_err(Error::from)
}

/// The decisions the link makes on a peer's errors, over a real Cap'n Proto connection to a
/// stub peer that answers GetDeltas with chosen errors: each fails if the adapter lost the
/// kind (mapped every remote exception to `Internal`, say).
#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicBool, Ordering};

    use syncbase_storage::{
        MemoryStorage, ReadTxn, Result as StorageResult, Storage, StorageError, WriteTxn,
    };

    use super::*;
    use crate::clock::ManualTime;
    use crate::env::{Blocking, Env};
    use crate::genvec::{Generation, Scope};
    use crate::identity::NodeIdentity;
    use crate::names::DbName;
    use crate::node::NodeParts;
    use crate::schema::types_capnp::delta_req;
    use crate::sync::link::LinkError;
    use crate::syncgroup::MemberInfo;
    use crate::syncgroup::access::Level;

    /// A memory storage whose write transactions fail as a full LMDB map does, once full.
    #[derive(Default)]
    struct Fillable {
        inner: MemoryStorage,
        full: AtomicBool,
    }

    impl Storage for Fillable {
        fn read(&self) -> StorageResult<Box<dyn ReadTxn + '_>> {
            self.inner.read()
        }

        fn write(&self) -> StorageResult<Box<dyn WriteTxn + '_>> {
            if self.full.load(Ordering::SeqCst) {
                return Err(StorageError::MapFull { map_size: 1 << 20 });
            }
            self.inner.write()
        }

        fn backend(&self) -> &'static str {
            "fillable"
        }
    }

    /// How the stub answers one kind of GetDeltas call.
    #[derive(Clone)]
    enum Answer {
        /// Never ends the call.
        Hold,
        /// Fails it with this error.
        Fail(Error),
        /// Pushes one page (the responder's knowledge) and, when the sink fails it, fails the
        /// call with the echo, as `rpc::peer` does.
        PushThenEcho,
    }

    /// A peer's `Sync` answering data and syncgroup GetDeltas calls as told, counting the
    /// syncgroup calls.
    struct Stub {
        data: Answer,
        syncgroups: Answer,
        syncgroup_calls: Rc<Cell<u32>>,
    }

    impl sync::Server for Stub {
        async fn get_deltas(
            self: Rc<Self>,
            params: sync::GetDeltasParams,
            _: sync::GetDeltasResults,
        ) -> capnp::Result<()> {
            let params = params.get()?;
            let answer = match params.get_req()?.which()? {
                delta_req::Data(_) => self.data.clone(),
                delta_req::Sgs(_) => {
                    self.syncgroup_calls.set(self.syncgroup_calls.get() + 1);
                    self.syncgroups.clone()
                }
            };
            match answer {
                Answer::Hold => std::future::pending().await,
                Answer::Fail(error) => Err(error.into()),
                Answer::PushThenEcho => {
                    let mut push = params.get_sink()?.push_request();
                    push.get().set_responder_device(42);
                    // The responder's knowledge of a record of its own: merging it commits.
                    let mut knowledge = crate::genvec::Knowledge::new();
                    knowledge.insert(
                        Scope::new("t", ""),
                        [(DeviceId(42), Generation::FIRST)].into_iter().collect(),
                    );
                    let batch = push.get().init_batch(1);
                    wire::write_knowledge(&knowledge, batch.get(0).init_resp_vec());
                    // Acknowledged, as `rpc::push` sends pages, so the sink's error comes back.
                    let push = capnp::capability::Request::<
                        delta_sink::push_params::Owned,
                        capnp::any_pointer::Owned,
                    >::new(push.hook);
                    match push.send().promise.await {
                        // Applied: end the call, which the test then reports.
                        Ok(_) => Ok(()),
                        Err(error) => Err(Error::Internal(format!(
                            "pushing to the peer: {}",
                            error.extra
                        ))
                        .into()),
                    }
                }
            }
        }
    }

    fn db() -> DbName {
        DbName::parse("db").unwrap()
    }

    fn stub_identity() -> Fingerprint {
        NodeIdentity::from_seed([9; 32])
            .unwrap()
            .fingerprint()
            .clone()
    }

    /// A node on `storage` holding database `db`.
    async fn node_on(storage: Arc<Fillable>) -> Arc<Node> {
        let mut env = Env::seeded(1, Arc::new(ManualTime::new(1_000_000_000)));
        env.blocking = Blocking::Inline;
        let identity = NodeIdentity::from_seed([1; 32]).unwrap();
        let parts = NodeParts::simulated(storage, identity, env).unwrap();
        let node = Arc::new(Node::assemble(parts).unwrap());
        node.store().create_database(&db()).unwrap();
        node
    }

    /// Makes `node` share a syncgroup of `db` with the stub, so links open a syncgroup
    /// session with it.
    async fn share_a_syncgroup_with_the_stub(node: &Node) {
        let name = crate::node::txn_tests::create_syncgroup(node).await;
        node.store()
            .syncgroup_txn(|txn| {
                let mut view = txn.get(&name)?;
                view.record
                    .sg
                    .spec
                    .perms
                    .grant(Level::Read, &stub_identity());
                let info = MemberInfo {
                    sync_priority: 0,
                    is_server: false,
                    device: DeviceId(42),
                    address: "stub:1".into(),
                    name: String::new(),
                };
                view.record.sg.joiners.insert(stub_identity(), info);
                txn.write_version(view.record.sg, view.local)
            })
            .unwrap();
    }

    fn stub_peer() -> PeerConfig {
        PeerConfig::new("stub:1", stub_identity(), "db", vec![Scope::new("t", "")]).unwrap()
    }

    /// Connects `node` to `stub` over an in-memory pipe, both ends on Cap'n Proto RPC; the
    /// stub's end runs until `hang_up` is cancelled.
    fn connect(node: &Arc<Node>, stub: Stub, hang_up: CancellationToken) -> CapnpPeer {
        let (near, far) = tokio::io::duplex(1 << 20);
        let me = node.identity().fingerprint().clone();
        let served: sync::Client = capnp_rpc::new_client(stub);
        let far = rpc_system(
            peer_budget(node, &me),
            far,
            rpc_twoparty_capnp::Side::Server,
            Some(served.client),
        );
        tokio::task::spawn_local(async move {
            tokio::select! {
                biased;
                // Dropping the RPC system closes its end of the pipe.
                () = hang_up.cancelled() => {}
                _ = far => {}
            }
        });
        let mut near = rpc_system(
            peer_budget(node, &stub_identity()),
            near,
            rpc_twoparty_capnp::Side::Client,
            None,
        );
        let remote = near.bootstrap(rpc_twoparty_capnp::Side::Server);
        tokio::task::spawn_local(near);
        CapnpPeer { remote, me }
    }

    /// Runs `test` on a LocalSet (capnp objects are `!Send`) under tokio's paused clock.
    fn on_local(test: impl Future<Output = ()>) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(tokio::task::LocalSet::new().run_until(test));
    }

    #[test]
    fn a_syncgroup_session_the_peer_refuses_with_no_access_is_asked_again_and_the_link_stays() {
        on_local(async {
            let node = node_on(Arc::default()).await;
            share_a_syncgroup_with_the_stub(&node).await;
            let calls = Rc::new(Cell::new(0));
            let stub = Stub {
                data: Answer::Hold,
                syncgroups: Answer::Fail(Error::NoAccess("no syncgroup shared".into())),
                syncgroup_calls: calls.clone(),
            };
            let client = connect(&node, stub, CancellationToken::new());
            let peer = stub_peer();
            let linked = sync_over(&node, &peer, &client);
            // Asked at 0, 0.5, 1.5, 3.5 and 7.5 s: the pause doubles.
            let ended = tokio::time::timeout(Duration::from_secs(10), linked).await;
            assert!(ended.is_err(), "the link ended: {ended:?}");
            assert_eq!(calls.get(), 5);
        });
    }

    #[test]
    fn a_syncgroup_session_the_peer_fails_otherwise_ends_the_link_with_the_peers_error() {
        on_local(async {
            let node = node_on(Arc::default()).await;
            share_a_syncgroup_with_the_stub(&node).await;
            let stub = Stub {
                data: Answer::Hold,
                syncgroups: Answer::Fail(Error::BadState("the syncgroup is pending".into())),
                syncgroup_calls: Rc::default(),
            };
            let client = connect(&node, stub, CancellationToken::new());
            let ended = sync_over(&node, &stub_peer(), &client).await;
            let error = ended.expect_err("a link whose session failed");
            assert!(
                matches!(error, LinkError::Peer(Error::BadState(_))),
                "{error:?}"
            );
        });
    }

    #[test]
    fn a_peers_own_failures_keep_their_kind_and_are_the_peers() {
        for (raised, line) in [
            (
                Error::StorageFull("raise storage.map_size".into()),
                "StorageFull: raise storage.map_size (answered by this peer)",
            ),
            (
                Error::NoAccess("no Read capability".into()),
                "NoAccess: no Read capability (answered by this peer)",
            ),
        ] {
            on_local(async {
                let node = node_on(Arc::default()).await;
                let stub = Stub {
                    data: Answer::Fail(raised),
                    syncgroups: Answer::Hold,
                    syncgroup_calls: Rc::default(),
                };
                let client = connect(&node, stub, CancellationToken::new());
                let error = sync_over(&node, &stub_peer(), &client)
                    .await
                    .expect_err("a link whose data session the peer failed");
                assert!(matches!(error, LinkError::Peer(_)), "{error:?}");
                assert_eq!(error.to_string(), line);
            });
        }
    }

    #[test]
    fn a_connection_that_breaks_mid_call_is_conn_fail() {
        on_local(async {
            let node = node_on(Arc::default()).await;
            let hang_up = CancellationToken::new();
            let stub = Stub {
                data: Answer::Hold,
                syncgroups: Answer::Hold,
                syncgroup_calls: Rc::default(),
            };
            let client = connect(&node, stub, hang_up.clone());
            let peer = stub_peer();
            let linked = sync_over(&node, &peer, &client);
            let hung_up = async {
                tokio::time::sleep(Duration::from_secs(1)).await;
                hang_up.cancel();
                std::future::pending::<()>().await
            };
            let error = tokio::select! {
                ended = linked => ended.expect_err("a link whose connection broke"),
                () = hung_up => unreachable!(),
            };
            assert!(
                matches!(error.error(), Error::ConnFail(text) if !text.contains("Internal")),
                "{error:?}"
            );
        });
    }

    #[test]
    fn this_nodes_full_store_is_its_own_failure_not_the_peers_echo() {
        on_local(async {
            let storage = Arc::new(Fillable::default());
            let node = node_on(storage.clone()).await;
            storage.full.store(true, Ordering::SeqCst);
            let stub = Stub {
                data: Answer::PushThenEcho,
                syncgroups: Answer::Hold,
                syncgroup_calls: Rc::default(),
            };
            let client = connect(&node, stub, CancellationToken::new());
            let error = sync_over(&node, &stub_peer(), &client)
                .await
                .expect_err("a link whose page did not commit");
            assert!(
                matches!(error, LinkError::Local(Error::StorageFull(_))),
                "{error:?}"
            );
            let line = error.to_string();
            assert!(
                line.starts_with("StorageFull: ") && line.ends_with("(syncing with this peer)"),
                "{line}"
            );
        });
    }
}
