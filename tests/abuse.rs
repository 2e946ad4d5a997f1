//! Bounded resources (security issue 9, part 4): attackers on loopback try to make a
//! `syncbase serve` process hold memory, with 60 MiB frame headers that stall (app and peer
//! ports, before and after authenticating), pipelined gets whose answers nobody reads, and more
//! connections than the caps. Each test checks that the node's resident memory (read from
//! /proc/PID/status) grows by at most [`MAX_GROWTH`] and that a client logged in before the
//! attack keeps working. Counts are small so the suite stays fast; `syncbase bench abuse`
//! runs the full-size attacks.
//!
//! The push attacks (sinks that never acknowledge, on connections that stop reading: many
//! watches with initial state, many live `getDeltas` from a read-only syncgroup member) use a
//! real RPC client over a stream whose reading can be paused.

mod common;

use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use capnp_rpc::rpc_twoparty_capnp::Side;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use common::peer_client::{Deltas, Join, PeerCalls};
use common::process::Served;
use common::{DB, app, on_local};
use syncbase::bench::abuse::attack::{self, Attack, Attacking, Target};
use syncbase::bench::abuse::{Sampler, resident_bytes};
use syncbase::genvec::DeviceId;
use syncbase::identity::{Fingerprint, NodeIdentity};
use syncbase::rpc::admission::{
    MAX_CONNECTIONS_PER_PEER, MAX_CONNECTIONS_PER_PORT, MAX_PRE_AUTH_CONNECTIONS,
};
use syncbase::rpc::client::{Session, error_message};
use syncbase::rpc::limits::{ConnectionBudget, MAX_STREAMS, NodeBudget};
use syncbase::rpc::network::rpc_system;
use syncbase::rpc::tls::TlsConnector;
use syncbase::schema::service_capnp::{database, gate, table, watch_sink};
use syncbase::schema::sync_capnp::{delta_sink, sync};
use syncbase::syncgroup::MemberInfo;
use syncbase::syncgroup::invite::InviteToken;

/// Attacking connections per test.
const CONNECTIONS: usize = 200;
/// The most the node's resident memory may grow during an attack.
const MAX_GROWTH: u64 = 64 << 20;
/// The value the unread gets ask for: 1 MiB.
const BIG: usize = 1 << 20;

/// A served node with a peer listener, the attacker's view of it, and a client logged in
/// before any attack.
struct Setup {
    served: Served,
    target: Target,
    session: Session,
    table: table::Client,
}

async fn setup() -> Setup {
    let served = Served::start_in_temp_dir(&["--peer-listen", "127.0.0.1:0"]);
    let read = |file: &str| {
        std::fs::read_to_string(served.path().join(file))
            .unwrap()
            .trim()
            .to_owned()
    };
    let target = Target {
        app: read("node.addr").parse().unwrap(),
        peer: Some(served.peer_addr().parse().unwrap()),
        fingerprint: Some(Fingerprint::parse(&served.fingerprint()).unwrap()),
        token: read("client.token"),
        row: (DB.into(), "t".into(), "big".into()),
    };
    let session = Session::connect(target.app, &target.token).await.unwrap();
    let db = app::database(&session.service, DB).await.unwrap();
    let table = app::table(&db, "t").await.unwrap();
    app::put(&table, "big", vec![7u8; BIG]).await.unwrap();
    Setup {
        served,
        target,
        session,
        table,
    }
}

impl Setup {
    fn pid(&self) -> u32 {
        self.served.pid()
    }

    /// Runs `attack`, checks the logged-in client still puts and gets while it holds, and
    /// returns the attack (still holding) and the node's memory growth meanwhile.
    async fn attack(&self, attack: Attack, connections: usize, gets: usize) -> (Attacking, u64) {
        let before = resident_bytes(Some(self.pid())).unwrap();
        let sampler = Sampler::start(Some(self.pid()));
        let attacking = attack::launch(attack, &self.target, connections, gets)
            .await
            .unwrap();
        self.client_still_works().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let growth = sampler.stop().saturating_sub(before);
        (attacking, growth)
    }

    async fn client_still_works(&self) {
        app::put(&self.table, "during", b"still here")
            .await
            .unwrap();
        assert_eq!(
            app::get(&self.table, "during").await.as_deref(),
            Some(&b"still here"[..])
        );
    }
}

fn assert_bounded(what: &str, growth: u64) {
    assert!(
        growth <= MAX_GROWTH,
        "{what}: the node grew by {} MiB",
        growth >> 20
    );
}

#[test]
fn stalled_60_mib_headers_before_login_are_capped_and_cost_little() {
    on_local(async {
        let setup = setup().await;
        let (attacking, growth) = setup.attack(Attack::AppPreAuth, CONNECTIONS, 0).await;
        assert_bounded("pre-login headers", growth);
        assert!(
            attacking.open() <= MAX_PRE_AUTH_CONNECTIONS,
            "{} connections still authenticating",
            attacking.open()
        );
        assert!(attacking.closed_by_node >= CONNECTIONS - MAX_PRE_AUTH_CONNECTIONS);
        drop(setup.session);
    });
}

#[test]
fn stalled_60_mib_headers_after_login_allocate_nothing_up_front() {
    on_local(async {
        let setup = setup().await;
        let (attacking, growth) = setup.attack(Attack::AppPostAuth, CONNECTIONS, 0).await;
        assert_bounded("logged-in headers", growth);
        assert_eq!(
            attacking.open(),
            CONNECTIONS,
            "logged-in connections are held, not refused"
        );
    });
}

#[test]
fn stalled_60_mib_headers_before_tls_on_the_peer_port_are_dropped() {
    on_local(async {
        let setup = setup().await;
        let (attacking, growth) = setup.attack(Attack::PeerPreAuth, CONNECTIONS, 0).await;
        assert_bounded("pre-TLS headers", growth);
        assert_eq!(attacking.open(), 0, "not TLS: every connection is closed");
    });
}

#[test]
fn large_messages_from_strangers_on_the_peer_port_are_refused_at_their_header() {
    on_local(async {
        let setup = setup().await;
        let (attacking, growth) = setup.attack(Attack::PeerPostAuth, CONNECTIONS, 0).await;
        assert_bounded("post-TLS headers", growth);
        // Anyone with a key passes TLS, but only members may send over 64 KiB: a stranger's
        // 60 MiB header ends its connection before it can hold any of the node's budget.
        assert_eq!(attacking.open(), 0);
        assert_eq!(attacking.closed_by_node, CONNECTIONS);
        drop(attacking);
        setup.client_still_works().await;
    });
}

#[test]
fn pipelined_gets_nobody_reads_stay_within_the_outgoing_budget() {
    on_local(async {
        let setup = setup().await;
        // Unbounded, 300 answers of 1 MiB would grow the node by 300 MiB.
        let (attacking, growth) = setup.attack(Attack::UnreadAnswers, 1, 300).await;
        assert_bounded("unread answers", growth);
        assert_eq!(attacking.open(), 1);
    });
}

#[test]
fn connections_over_the_port_cap_are_refused_while_a_logged_in_client_works() {
    on_local(async {
        let setup = setup().await;
        let extra = 20;
        let connections = MAX_CONNECTIONS_PER_PORT + extra;
        let (attacking, growth) = setup.attack(Attack::AppPostAuth, connections, 0).await;
        assert_bounded("connections over the cap", growth);
        // The logged-in client holds one place.
        assert!(
            attacking.open() < MAX_CONNECTIONS_PER_PORT,
            "{}",
            attacking.open()
        );
        assert!(
            attacking.closed_by_node > extra,
            "{}",
            attacking.closed_by_node
        );
        // A client arriving now is told why it is refused, in an RPC Abort.
        let refused = Session::connect(setup.target.app, &setup.target.token).await;
        let message = format!("{:#}", refused.err().expect("over the cap"));
        assert!(message.contains("ResourceExhausted: "), "{message}");
        drop(attacking);
        setup.client_still_works().await;
    });
}

#[test]
fn one_peer_identity_over_its_cap_is_refused_with_resource_exhausted() {
    on_local(async {
        let setup = setup().await;
        let identity = NodeIdentity::generate().unwrap();
        let connector = TlsConnector::new(&identity).unwrap();
        let fingerprint = setup.target.fingerprint.clone().unwrap();
        let mut held = Vec::new();
        for _ in 0..MAX_CONNECTIONS_PER_PEER {
            let tcp = tokio::net::TcpStream::connect(setup.target.peer.unwrap())
                .await
                .unwrap();
            held.push(connector.connect(tcp, &fingerprint).await.unwrap());
        }
        let tcp = tokio::net::TcpStream::connect(setup.target.peer.unwrap())
            .await
            .unwrap();
        let refused = connector.connect(tcp, &fingerprint).await.err().unwrap();
        let message = refused.to_string();
        assert!(message.starts_with("ResourceExhausted: "), "{message}");
        held.pop();
        // Its place is given back once the node sees the close.
        let mut admitted = false;
        for _ in 0..100 {
            let tcp = tokio::net::TcpStream::connect(setup.target.peer.unwrap())
                .await
                .unwrap();
            if connector.connect(tcp, &fingerprint).await.is_ok() {
                admitted = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(admitted, "a place freed by a closed connection is reused");
    });
}

// ---- Pushes to sinks that never acknowledge ----

/// Rows of [`BIG`] bytes the push attacks stream (16 MiB, besides the setup's row).
const PUSHED_ROWS: usize = 16;
/// How long an attack runs before its memory is judged: ample for an unbounded node to pull
/// every page into memory (it did so at hundreds of MiB per second).
const PUSH_ATTACK: Duration = Duration::from_secs(3);

/// A stream whose reading stops for good once `paused` is set (the writes go on), like a
/// client that stops reading its socket.
struct Pausable<S> {
    inner: S,
    paused: Rc<Cell<bool>>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Pausable<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.paused.get() {
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Pausable<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serves `stream` as an RPC client (on the current `LocalSet`); returns the other side's
/// bootstrap and the switch that stops reading.
fn pausable_client<S, C>(stream: S) -> (C, Rc<Cell<bool>>)
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
    C: capnp::capability::FromClientHook,
{
    let paused = Rc::new(Cell::new(false));
    let stream = Pausable {
        inner: stream,
        paused: paused.clone(),
    };
    let budget = ConnectionBudget::authenticated(NodeBudget::default());
    let mut rpc_system = rpc_system(stream, Side::Client, None, budget);
    let bootstrap: C = rpc_system.bootstrap(Side::Server);
    tokio::task::spawn_local(rpc_system);
    (bootstrap, paused)
}

/// A `WatchSink` whose `push` never completes.
struct StuckWatchSink;

impl watch_sink::Server for StuckWatchSink {
    async fn push(self: Rc<Self>, _: watch_sink::PushParams) -> capnp::Result<()> {
        std::future::pending().await
    }
}

/// A `DeltaSink` whose `push` never completes.
struct StuckDeltaSink;

impl delta_sink::Server for StuckDeltaSink {
    async fn push(self: Rc<Self>, _: delta_sink::PushParams) -> capnp::Result<()> {
        std::future::pending().await
    }
}

/// A `DeltaSink` that takes every push.
struct TakingDeltaSink;

impl delta_sink::Server for TakingDeltaSink {
    async fn push(self: Rc<Self>, _: delta_sink::PushParams) -> capnp::Result<()> {
        Ok(())
    }
}

impl Setup {
    /// Fills table `t` with [`PUSHED_ROWS`] rows of [`BIG`] bytes.
    async fn fill(&self) {
        for i in 0..PUSHED_ROWS {
            app::put(&self.table, &format!("row-{i:02}"), vec![i as u8; BIG])
                .await
                .unwrap();
        }
    }

    /// A fresh logged-in app connection whose reading can be paused; its database `db`.
    async fn pausable_database(&self) -> (database::Client, Rc<Cell<bool>>) {
        let tcp = tokio::net::TcpStream::connect(self.target.app)
            .await
            .unwrap();
        let (gate, paused): (gate::Client, _) = pausable_client(tcp);
        let mut login = gate.login_request();
        login.get().set_token(&self.target.token);
        let service = login
            .send()
            .promise
            .await
            .unwrap()
            .get()
            .unwrap()
            .get_service()
            .unwrap();
        (app::database(&service, DB).await.unwrap(), paused)
    }

    /// Lets the attack run, checks the logged-in client still works, and returns the node's
    /// memory growth since `before`.
    async fn growth_under_attack(&self, before: u64, sampler: Sampler) -> u64 {
        tokio::time::sleep(PUSH_ATTACK).await;
        self.client_still_works().await;
        let growth = sampler.stop().saturating_sub(before);
        eprintln!("the node grew by {} MiB", growth >> 20);
        growth
    }
}

/// A watch of table `t` from the start (`initialState`), on `sink`.
fn watch_request(
    db: &database::Client,
    sink: watch_sink::Client,
) -> capnp::capability::RemotePromise<database::watch_results::Owned> {
    app::watch_request(db, "t", "", true, &[], sink)
}

#[test]
fn watches_with_initial_state_nobody_acknowledges_stay_within_the_outgoing_budget() {
    on_local(async {
        let setup = setup().await;
        let (db, paused) = setup.pausable_database().await;
        // As many watches as a connection may, each sent the table's 1 MiB row as its initial
        // state; the attacker's sink takes none of it.
        let sink: watch_sink::Client = capnp_rpc::new_client(StuckWatchSink);
        let watches: Vec<_> = (0..MAX_STREAMS)
            .map(|_| watch_request(&db, sink.clone()))
            .collect();
        // Calls on one capability are delivered in order: every watch runs once this answers.
        db.name_request().send().promise.await.unwrap();
        let before = resident_bytes(Some(setup.pid())).unwrap();
        let sampler = Sampler::start(Some(setup.pid()));
        // The attacker stops reading; every watch is owed 16 MiB of changes. Unbounded, each
        // would pile up its window of 1 MiB pushes: hundreds of MiB.
        paused.set(true);
        setup.fill().await;
        let growth = setup.growth_under_attack(before, sampler).await;
        assert_bounded("watches nobody acknowledges", growth);
        drop(watches);
    });
}

#[test]
fn a_watch_past_the_connections_stream_cap_fails_with_resource_exhausted() {
    on_local(async {
        let setup = setup().await;
        let (db, _) = setup.pausable_database().await;
        let sink: watch_sink::Client = capnp_rpc::new_client(StuckWatchSink);
        // The capped watches never end (their sink never acknowledges its first page): the
        // first call to finish is the one over the cap.
        let watches: Vec<_> = (0..=MAX_STREAMS)
            .map(|_| Box::pin(watch_request(&db, sink.clone()).promise))
            .collect();
        let (refused, _, rest) = futures::future::select_all(watches).await;
        let error = refused.err().expect("a watch over the cap is refused");
        let message = error_message(&error);
        assert!(message.starts_with("ResourceExhausted: "), "{message}");
        assert!(message.contains("streams"), "{message}");
        assert_eq!(rest.len(), MAX_STREAMS);
        setup.client_still_works().await;
    });
}

/// A read-only member of a syncgroup over table `t`: its identity, device and invite secret.
struct Reader {
    identity: NodeIdentity,
    device: u64,
}

impl Setup {
    /// Creates syncgroup `<peer address>/pushes` over table `t` and joins it at Read as a fresh
    /// identity over its own TLS connection.
    async fn read_only_member(&self) -> Reader {
        let name = format!("{}/pushes", self.served.peer_addr());
        self.served
            .ok(&["sg", "create", DB, &name, "--prefix", "t"]);
        let invite = self.served.ok(&["sg", "invite", &name, "--level", "read"]);
        let invite = InviteToken::parse(invite.trim()).unwrap();
        let reader = Reader {
            identity: NodeIdentity::generate().unwrap(),
            device: 4242,
        };
        let (sync, _) = self.peer_connection(&reader).await;
        let info = MemberInfo {
            sync_priority: 0,
            is_server: false,
            device: DeviceId(reader.device),
            // An address (nobody listens there), so the node dials it rather than syncing
            // back over the member's own connections, which serve nothing.
            address: "127.0.0.1:1".into(),
            name: String::new(),
        };
        let join = Join::new(&name, info).invite(&invite.secret);
        PeerCalls::new(&sync).join(join).await.unwrap();
        reader
    }

    /// A TLS peer connection as `reader`, its reading pausable.
    async fn peer_connection(&self, reader: &Reader) -> (sync::Client, Rc<Cell<bool>>) {
        let tcp = tokio::net::TcpStream::connect(self.target.peer.unwrap())
            .await
            .unwrap();
        let link = TlsConnector::new(&reader.identity)
            .unwrap()
            .connect(tcp, self.target.fingerprint.as_ref().unwrap())
            .await
            .unwrap();
        pausable_client(link.stream)
    }
}

/// A `getDeltas` for all of table `t` as `reader`, `live` or not, on `sink`: sent at once,
/// open while its promise is held.
fn deltas_request(
    sync: &sync::Client,
    reader: &Reader,
    live: bool,
    sink: delta_sink::Client,
) -> capnp::capability::Promise<(), capnp::Error> {
    let data = Deltas::Data {
        tables: &["t"],
        live,
    };
    PeerCalls::new(sync).get_deltas(DB, reader.device, data, sink)
}

#[test]
fn live_get_deltas_nobody_acknowledges_stay_within_the_outgoing_budget() {
    on_local(async {
        let setup = setup().await;
        setup.fill().await;
        let reader = setup.read_only_member().await;
        // The member may read the data: a whole non-live pull goes through.
        let (sync, _) = setup.peer_connection(&reader).await;
        let taking: delta_sink::Client = capnp_rpc::new_client(TakingDeltaSink);
        deltas_request(&sync, &reader, false, taking).await.unwrap();

        let before = resident_bytes(Some(setup.pid())).unwrap();
        let sampler = Sampler::start(Some(setup.pid()));
        // Two connections (each may hold its 16 MiB budget) with 25 live streams each, every
        // one owed 17 MiB: unbounded, 50 x 17 MiB would pile up in the node.
        let stuck: delta_sink::Client = capnp_rpc::new_client(StuckDeltaSink);
        let mut held = Vec::new();
        for _ in 0..2 {
            let (sync, paused) = setup.peer_connection(&reader).await;
            paused.set(true);
            for _ in 0..25 {
                held.push(deltas_request(&sync, &reader, true, stuck.clone()));
            }
        }
        let growth = setup.growth_under_attack(before, sampler).await;
        assert_bounded("live getDeltas nobody acknowledges", growth);
        drop(held);
    });
}
