//! Bounded resources (security issue 9, part 4): attackers on loopback try to make a
//! `syncbase serve` process hold memory, with 60 MiB frame headers that stall (app and peer
//! ports, before and after authenticating), pipelined gets whose answers nobody reads, and more
//! connections than the caps. Each test checks that the node's resident memory (read from
//! /proc/PID/status) grows by at most [`MAX_GROWTH`] and that a client logged in before the
//! attack keeps working. Counts are small so the suite stays fast; `syncbase bench abuse`
//! runs the full-size attacks.

mod common;

use std::time::Duration;

use common::process::Served;
use common::{DB, app, on_local};
use syncbase::bench::abuse::attack::{self, Attack, Attacking, Target};
use syncbase::bench::abuse::{Sampler, resident_bytes};
use syncbase::identity::{Fingerprint, NodeIdentity};
use syncbase::rpc::admission::{
    MAX_CONNECTIONS_PER_PEER, MAX_CONNECTIONS_PER_PORT, MAX_PRE_AUTH_CONNECTIONS,
};
use syncbase::rpc::client::Session;
use syncbase::rpc::tls::TlsConnector;
use syncbase::schema::service_capnp::table;

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
