//! A real embedded node syncing from a fake peer built from the library (its own identity, the
//! real TLS acceptor, a `Sync` server written here) whose `getDeltas` pushes hand-crafted
//! batches: records outside the scopes asked for, malformed records, knowledge claiming more
//! of the node's own generations than it made, a record after the knowledge, a stream cut
//! half way, and a good page sent twice. The node must commit nothing from a bad batch, say
//! what was wrong in the peer's status, keep serving its apps, and take a good page once the
//! fake behaves (on the next connection, which it redials by itself).

mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use capnp_rpc::{RpcSystem, rpc_twoparty_capnp, twoparty};
use futures::AsyncReadExt;
use tokio::sync::Notify;
use tokio_util::compat::TokioAsyncReadCompatExt;

use syncbase::embedded::{EmbeddedOptions, EmbeddedServer, EmbeddedStorage};
use syncbase::genvec::{DeviceId, Scope};
use syncbase::identity::NodeIdentity;
use syncbase::names::{DbName, RowKey, TableName};
use syncbase::rpc::tls::TlsAcceptor;
use syncbase::schema::service_capnp::{service, table};
use syncbase::schema::sync_capnp::{delta_sink, sync};
use syncbase::schema::types_capnp::{RecType, delta_req};
use syncbase::sync::peers::{PeerConfig, PeerStatus};

use common::app::{database, get, put, table};
use common::{DB, eventually, on_local};

/// The fake peer's device id.
const FAKE: u64 = 0x0fa4_e000_0000_0001;
/// How long a test waits for the node to do something.
const LIMIT: Duration = Duration::from_secs(10);

// ---- What the fake sends ----

/// Knowledge in plain form: (scope bytes, [(device, generation)]) per scope.
type Vectors = Vec<(Vec<u8>, Vec<(u64, u64)>)>;

/// One item of a pushed batch.
#[derive(Clone)]
enum Item {
    Rec(Rec),
    /// A `respVec`: (table, prefix) -> [(device, generation)].
    Knows(Vectors),
}

#[derive(Clone)]
struct Rec {
    device: u64,
    generation: u64,
    object: Vec<u8>,
    version: String,
    value: Vec<u8>,
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// A well-formed write by the fake of `value` at table "t", `key`, at generation `generation`.
fn rec(generation: u64, key: &str, value: &str) -> Rec {
    Rec {
        device: FAKE,
        generation,
        object: [b"t".as_slice(), &[0xfe], key.as_bytes()].concat(),
        version: format!("{:016x}", 0x5eed_0000 + generation),
        value: value.as_bytes().to_vec(),
    }
}

fn scope_bytes(table: &str, prefix: &str) -> Vec<u8> {
    [table.as_bytes(), &[0xfe], prefix.as_bytes()].concat()
}

/// The fake's knowledge of table "t": it knows its own writes up to `generation`.
fn knows(generation: u64) -> Item {
    Item::Knows(vec![(scope_bytes("t", ""), vec![(FAKE, generation)])])
}

/// How the fake's `getDeltas` ends after its pushes.
#[derive(Clone)]
enum End {
    /// Keeps the call open until notified (or the node hangs up), then fails.
    Hold(Rc<Notify>),
    /// Fails at once with this message.
    Fail(&'static str),
}

/// What the fake does on one connection.
#[derive(Clone)]
struct Script {
    /// If set, `deviceInfo` answers only once notified (so the status of the connection
    /// before stays readable).
    gate: Option<Rc<Notify>>,
    batches: Vec<Vec<Item>>,
    /// Goes on pushing after a push failed (a responder that ignores the refusal).
    keep_pushing: bool,
    end: End,
}

fn script(batches: Vec<Vec<Item>>, end: End) -> Script {
    Script {
        gate: None,
        batches,
        keep_pushing: false,
        end,
    }
}

/// What the fake saw of a `getDeltas` call.
#[derive(Debug, Clone)]
struct Seen {
    initiator_device: u64,
    live: bool,
    /// The initiator's knowledge: scope bytes -> [(device, generation)].
    knowledge: Vectors,
}

#[derive(Default)]
struct FakeState {
    /// One script per connection; the last one repeats.
    scripts: Vec<Script>,
    connections: Cell<usize>,
    requests: RefCell<Vec<Seen>>,
    /// The errors the node returned to pushes.
    push_errors: RefCell<Vec<String>>,
    /// Pushes answered (either way).
    pushes: Cell<usize>,
}

impl FakeState {
    fn script(&self, connection: usize) -> Script {
        self.scripts[connection.min(self.scripts.len() - 1)].clone()
    }
}

struct FakeSync {
    state: Rc<FakeState>,
    connection: usize,
}

impl sync::Server for FakeSync {
    async fn device_info(
        self: Rc<Self>,
        _: sync::DeviceInfoParams,
        mut results: sync::DeviceInfoResults,
    ) -> capnp::Result<()> {
        if let Some(gate) = self.state.script(self.connection).gate {
            gate.notified().await;
        }
        results.get().set_device_id(FAKE);
        Ok(())
    }

    async fn get_deltas(
        self: Rc<Self>,
        params: sync::GetDeltasParams,
        _: sync::GetDeltasResults,
    ) -> capnp::Result<()> {
        let params = params.get()?;
        let delta_req::Data(data) = params.get_req()?.which()? else {
            return Err(capnp::Error::failed("fake: expected a data request".into()));
        };
        let data = data?;
        let mut knowledge = Vec::new();
        for scope in data.get_init_vec()?.get_scopes()? {
            let vector = scope
                .get_vector()?
                .get_entries()?
                .iter()
                .map(|entry| (entry.get_device_id(), entry.get_generation()))
                .collect();
            knowledge.push((scope.get_scope()?.to_vec(), vector));
        }
        self.state.requests.borrow_mut().push(Seen {
            initiator_device: data.get_initiator_device(),
            live: data.get_live(),
            knowledge,
        });
        let sink = params.get_sink()?;
        let script = self.state.script(self.connection);
        for batch in &script.batches {
            let outcome = push(&sink, batch).await;
            self.state.pushes.set(self.state.pushes.get() + 1);
            if let Err(error) = outcome {
                self.state.push_errors.borrow_mut().push(error.extra);
                if !script.keep_pushing {
                    break;
                }
            }
        }
        match script.end {
            End::Hold(release) => {
                release.notified().await;
                Err(capnp::Error::failed("fake: hanging up".into()))
            }
            End::Fail(message) => Err(capnp::Error::failed(message.into())),
        }
    }
}

async fn push(sink: &delta_sink::Client, items: &[Item]) -> capnp::Result<()> {
    // The generated `push` request sent as an ordinary call rather than a flow-controlled
    // stream call, so each push's own error comes back to it (as the node's responder does).
    let mut request = capnp::capability::Request::<
        delta_sink::push_params::Owned,
        capnp::any_pointer::Owned,
    >::new(sink.push_request().hook);
    request.get().set_responder_device(FAKE);
    let mut list = request.get().init_batch(items.len() as u32);
    for (i, item) in items.iter().enumerate() {
        let entry = list.reborrow().get(i as u32);
        match item {
            Item::Rec(record) => {
                let mut out = entry.init_rec();
                out.set_value(&record.value);
                let mut meta = out.init_metadata();
                meta.set_id(record.device);
                meta.set_gen(record.generation);
                meta.set_rec_type(RecType::Node);
                meta.set_obj_id(&record.object);
                meta.set_cur_vers(record.version.as_str());
                meta.set_batch_count(1);
                meta.reborrow().init_parents(0);
                let mut time = meta.init_upd_time();
                time.set_wall_nanos(now_nanos());
                time.set_logical(0);
            }
            Item::Knows(scopes) => {
                let mut list = entry.init_resp_vec().init_scopes(scopes.len() as u32);
                for (j, (scope, vector)) in scopes.iter().enumerate() {
                    let mut out = list.reborrow().get(j as u32);
                    out.set_scope(scope);
                    let mut entries = out.init_vector().init_entries(vector.len() as u32);
                    for (k, (device, generation)) in vector.iter().enumerate() {
                        let mut entry = entries.reborrow().get(k as u32);
                        entry.set_device_id(*device);
                        entry.set_generation(*generation);
                    }
                }
            }
        }
    }
    request.send().promise.await.map(drop)
}

/// A fake peer listening on loopback TCP, admitting any node (as nodes do).
struct Fake {
    identity: NodeIdentity,
    address: String,
    state: Rc<FakeState>,
}

impl Fake {
    async fn start(scripts: Vec<Script>) -> Fake {
        let identity = NodeIdentity::generate().unwrap();
        let acceptor = TlsAcceptor::new(&identity).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let state = Rc::new(FakeState {
            scripts,
            ..FakeState::default()
        });
        let accepting = state.clone();
        tokio::task::spawn_local(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let Ok(link) = acceptor.accept(tcp).await else {
                    continue;
                };
                let connection = accepting.connections.get();
                accepting.connections.set(connection + 1);
                let fake: sync::Client = capnp_rpc::new_client(FakeSync {
                    state: accepting.clone(),
                    connection,
                });
                let (reader, writer) = link.stream.compat().split();
                let network = twoparty::VatNetwork::new(
                    futures::io::BufReader::new(reader),
                    futures::io::BufWriter::new(writer),
                    rpc_twoparty_capnp::Side::Server,
                    capnp::message::ReaderOptions::new(),
                );
                tokio::task::spawn_local(RpcSystem::new(Box::new(network), Some(fake.client)));
            }
        });
        Fake {
            identity,
            address,
            state,
        }
    }

    fn requests(&self) -> Vec<Seen> {
        self.state.requests.borrow().clone()
    }
}

// ---- The node ----

async fn start_node() -> EmbeddedServer {
    EmbeddedServer::start_with(EmbeddedOptions {
        redial_max: Duration::from_millis(100),
        ..EmbeddedOptions::new(EmbeddedStorage::Memory)
    })
    .await
    .expect("node starts")
}

/// Makes `fake` a peer of `node` for `scopes` of table "t" (the node starts dialling it).
async fn add_fake(node: &EmbeddedServer, fake: &Fake, prefix: &str) {
    let peer = PeerConfig::new(
        &fake.address,
        fake.identity.fingerprint().clone(),
        DB,
        vec![Scope::new("t", prefix)],
    )
    .unwrap();
    node.node().add_peer(peer).await.expect("peer added");
}

fn status(node: &EmbeddedServer) -> PeerStatus {
    let peers = node.node().peers().list();
    assert_eq!(peers.len(), 1, "one peer");
    peers[0].1.clone()
}

fn db() -> DbName {
    DbName::parse(DB).unwrap()
}

fn read(node: &EmbeddedServer, table: &str, key: &str) -> Option<String> {
    let (Ok(table), Ok(key)) = (TableName::parse(table), RowKey::parse(key)) else {
        return None;
    };
    node.node()
        .store()
        .get(&db(), &table, &key)
        .unwrap()
        .map(|bytes| String::from_utf8(bytes).unwrap())
}

/// Whether the node's sync knowledge names the fake's device at all.
fn knows_fake(node: &EmbeddedServer) -> bool {
    let knowledge = node.node().store().knowledge(&db()).unwrap();
    knowledge
        .iter()
        .any(|(_, vector)| !vector.get(DeviceId(FAKE)).is_none())
}

/// Waits until the peer's last error contains `phrase`; returns it.
async fn error_naming(node: &EmbeddedServer, phrase: &str) -> String {
    eventually(&format!("last_error containing {phrase:?}"), LIMIT, || {
        status(node)
            .last_error
            .is_some_and(|error| error.contains(phrase))
    })
    .await;
    status(node).last_error.unwrap()
}

async fn app_table(service: &service::Client) -> table::Client {
    let db = database(service, DB).await.unwrap();
    table(&db, "app").await.unwrap()
}

/// The node still serves its apps: a put and a get through a fresh connection and through the
/// embedded session.
async fn still_serves_apps(node: &EmbeddedServer) {
    let session = node.connect().await.expect("a new app connection");
    for service in [&session.service, node.service()] {
        let table = app_table(service).await;
        put(&table, "alive", b"yes").await.expect("put works");
        assert_eq!(get(&table, "alive").await.as_deref(), Some(&b"yes"[..]));
    }
}

/// Lets the fake's held first connection go, waits for the node to take `good_key`'s page on
/// its next connection, checks that every `absent` row of the bad batch stays absent, and that
/// exactly one record was counted.
async fn recovers(
    node: &EmbeddedServer,
    release: &Notify,
    good_key: &str,
    absent: &[(&str, &str)],
) {
    release.notify_one();
    eventually("the good page after reconnecting", LIMIT, || {
        read(node, "t", good_key).as_deref() == Some("after recovery")
    })
    .await;
    for (table, key) in absent {
        assert_eq!(read(node, table, key), None, "{table}/{key} stays absent");
    }
    eventually("the record counted", LIMIT, || {
        status(node).records_received >= 1
    })
    .await;
    assert_eq!(status(node).records_received, 1);
}

/// The common course of a bad-batch case: connection 1 pushes `bad` (and holds the call
/// open), connection 2 pushes a good page. Checks that nothing of `bad` is committed, that
/// the status names `phrase`, that apps are served, and that the good page is then applied.
async fn refuses_then_recovers(bad: Vec<Item>, absent: &[(&str, &str)], phrase: &str) {
    let node = start_node().await;
    let release = Rc::new(Notify::new());
    let good = vec![Item::Rec(rec(7, "good", "after recovery")), knows(7)];
    let fake = Fake::start(vec![
        script(vec![bad], End::Hold(release.clone())),
        script(vec![good], End::Hold(Rc::new(Notify::new()))),
    ])
    .await;
    add_fake(&node, &fake, "").await;
    let error = error_naming(&node, phrase).await;
    assert!(
        error.starts_with("InvalidArgument: "),
        "the refusal keeps its id: {error}"
    );
    eventually("the bad push answered with an error", LIMIT, || {
        fake.state.push_errors.borrow().len() == 1
    })
    .await;
    for (table, key) in absent {
        assert_eq!(
            read(&node, table, key),
            None,
            "{table}/{key} of the bad batch"
        );
    }
    assert!(!knows_fake(&node), "no knowledge from the bad batch");
    assert_eq!(status(&node).records_received, 0);
    still_serves_apps(&node).await;

    recovers(&node, &release, "good", absent).await;
    eventually("knowledge from the good page", LIMIT, || knows_fake(&node)).await;
    eventually("connected again", LIMIT, || status(&node).connected).await;
    let status = status(&node);
    assert!(status.last_success_nanos > 0, "{status:?}");
    assert!(fake.state.connections.get() >= 2);
}

#[test]
fn a_record_outside_the_scopes_asked_for_is_refused_with_its_batch() {
    on_local(async {
        let node = start_node().await;
        let release = Rc::new(Notify::new());
        let bad = vec![
            Item::Rec(rec(1, "in/1", "inside")),
            Item::Rec(rec(2, "out/2", "outside")),
            Item::Knows(vec![(scope_bytes("t", "in/"), vec![(FAKE, 2)])]),
        ];
        let good = vec![
            Item::Rec(rec(3, "in/3", "after recovery")),
            Item::Knows(vec![(scope_bytes("t", "in/"), vec![(FAKE, 3)])]),
        ];
        let fake = Fake::start(vec![
            script(vec![bad], End::Hold(release.clone())),
            script(vec![good], End::Hold(Rc::new(Notify::new()))),
        ])
        .await;
        add_fake(&node, &fake, "in/").await;
        let error = error_naming(&node, "outside the scopes asked for").await;
        assert!(error.contains("out/2"), "names the record: {error}");
        let seen = fake.requests();
        assert_eq!(seen[0].initiator_device, node.node().store().device().0);
        assert!(seen[0].live, "the node asks for a live stream");
        assert_eq!(
            seen[0]
                .knowledge
                .iter()
                .map(|(scope, _)| scope.clone())
                .collect::<Vec<_>>(),
            vec![scope_bytes("t", "in/")],
            "the node asks for its one scope"
        );
        assert_eq!(
            read(&node, "t", "in/1"),
            None,
            "the good record of the bad batch"
        );
        assert_eq!(read(&node, "t", "out/2"), None);
        assert!(!knows_fake(&node));
        still_serves_apps(&node).await;

        recovers(&node, &release, "in/3", &[("t", "in/1"), ("t", "out/2")]).await;
    });
}

#[test]
fn a_record_with_bad_version_hex_is_refused_with_its_batch() {
    on_local(async {
        let mut bad_version = rec(2, "v", "bad version");
        bad_version.version = "not hex!".into();
        refuses_then_recovers(
            vec![
                Item::Rec(rec(1, "first", "good")),
                Item::Rec(bad_version),
                knows(2),
            ],
            &[("t", "first"), ("t", "v")],
            "batch item 1: version \"not hex!\" is not 1-16 hex digits",
        )
        .await;
    });
}

#[test]
fn a_record_with_an_empty_table_is_refused_with_its_batch() {
    on_local(async {
        let mut empty_table = rec(2, "e", "empty table");
        empty_table.object = [[0xfe].as_slice(), b"e"].concat();
        refuses_then_recovers(
            vec![
                Item::Rec(rec(1, "first", "good")),
                Item::Rec(empty_table),
                knows(2),
            ],
            &[("t", "first")],
            "batch item 1: table name \"\" is empty",
        )
        .await;
    });
}

#[test]
fn a_record_with_a_non_utf8_object_id_is_refused_with_its_batch() {
    on_local(async {
        let mut not_utf8 = rec(2, "x", "not utf-8");
        not_utf8.object = [b"t".as_slice(), &[0xfe, 0xff, 0x80]].concat();
        refuses_then_recovers(
            vec![
                Item::Rec(rec(1, "first", "good")),
                Item::Rec(not_utf8),
                knows(2),
            ],
            &[("t", "first")],
            "batch item 1: object id row is not UTF-8",
        )
        .await;
    });
}

#[test]
fn knowledge_claiming_more_of_the_nodes_own_generations_is_refused_and_starts_an_epoch() {
    on_local(async {
        let node = start_node().await;
        let me = node.node().store().device().0;
        let release = Rc::new(Notify::new());
        let bad = vec![
            Item::Rec(rec(1, "k", "carried by a lie")),
            Item::Knows(vec![(scope_bytes("t", ""), vec![(FAKE, 1), (me, 99)])]),
        ];
        let good = vec![Item::Rec(rec(2, "good", "after recovery")), knows(2)];
        let fake = Fake::start(vec![
            script(vec![bad], End::Hold(release.clone())),
            script(vec![good], End::Hold(Rc::new(Notify::new()))),
        ])
        .await;
        add_fake(&node, &fake, "").await;
        // Peers holding more of this node's generations than it made means its store was
        // restored or copied: it moves to a fresh device id (issue 10.2).
        eventually("an epoch", LIMIT, || node.node().store().device().0 != me).await;
        let epochs = node.node().store().epochs().unwrap();
        assert!(
            epochs[0].reason.contains("holds generation 99"),
            "{epochs:?}"
        );
        assert_eq!(
            read(&node, "t", "k"),
            None,
            "the record of the refused page"
        );
        // The epoch relinks at once, so the good page may already have been merged; the lie
        // about this node's old device never was.
        let knowledge = node.node().store().knowledge(&db()).unwrap();
        assert!(
            knowledge
                .iter()
                .all(|(_, vector)| vector.get(DeviceId(me)).is_none()),
            "no knowledge merged: {knowledge:?}"
        );
        still_serves_apps(&node).await;

        // Record 1 was refused and the good page's knowledge names generation 2: an honest
        // responder would have re-sent it; this fake doesn't, so it stays absent here.
        recovers(&node, &release, "good", &[("t", "k")]).await;
    });
}

#[test]
fn a_record_after_the_knowledge_in_one_batch_is_refused() {
    on_local(async {
        refuses_then_recovers(
            vec![
                Item::Rec(rec(1, "before", "v")),
                knows(1),
                Item::Rec(rec(2, "after", "v")),
            ],
            &[("t", "before"), ("t", "after")],
            "a record came after the responder's knowledge",
        )
        .await;
    });
}

#[test]
fn a_stream_cut_half_way_keeps_its_valid_page_but_not_knowledge_and_resumes() {
    on_local(async {
        let node = start_node().await;
        let gate = Rc::new(Notify::new());
        let first = vec![Item::Rec(rec(1, "one", "first page"))];
        let rest = vec![
            Item::Rec(rec(1, "one", "first page")),
            Item::Rec(rec(2, "two", "second page")),
            knows(2),
        ];
        let fake = Fake::start(vec![
            script(vec![first], End::Fail("fake: stream broken")),
            Script {
                gate: Some(gate.clone()),
                ..script(vec![rest], End::Hold(Rc::new(Notify::new())))
            },
        ])
        .await;
        add_fake(&node, &fake, "").await;
        let error = error_naming(&node, "stream broken").await;
        assert!(error.starts_with("ConnFail: "), "{error}");
        // A page without knowledge commits on its own (it is valid), but moves no knowledge.
        assert_eq!(read(&node, "t", "one").as_deref(), Some("first page"));
        assert_eq!(read(&node, "t", "two"), None);
        assert!(!knows_fake(&node), "no knowledge from an unfinished stream");
        assert_eq!(status(&node).last_success_nanos, 0, "never caught up");
        still_serves_apps(&node).await;

        gate.notify_one();
        eventually("the rest after reconnecting", LIMIT, || {
            read(&node, "t", "two").as_deref() == Some("second page")
        })
        .await;
        eventually("knowledge after the full stream", LIMIT, || {
            knows_fake(&node)
        })
        .await;
        let seen = fake.requests();
        assert_eq!(seen.len(), 2);
        assert!(
            seen[1]
                .knowledge
                .iter()
                .all(|(_, vector)| vector.iter().all(|(device, _)| *device != FAKE)),
            "the second request claims nothing of the fake: {seen:?}"
        );
        eventually("the records counted", LIMIT, || {
            status(&node).records_received >= 2
        })
        .await;
        let status = status(&node);
        assert_eq!(
            status.records_received, 2,
            "the re-sent record is not counted twice: {status:?}"
        );
        assert!(status.last_error.is_none(), "{status:?}");
    });
}

#[test]
fn a_good_page_applied_twice_changes_nothing_the_second_time() {
    on_local(async {
        let node = start_node().await;
        let (gate, release) = (Rc::new(Notify::new()), Rc::new(Notify::new()));
        let page = vec![
            Item::Rec(rec(1, "a", "alpha")),
            Item::Rec(rec(2, "b", "beta")),
            knows(2),
        ];
        let fake = Fake::start(vec![
            script(vec![page.clone()], End::Hold(release.clone())),
            Script {
                gate: Some(gate.clone()),
                ..script(vec![page], End::Hold(Rc::new(Notify::new())))
            },
        ])
        .await;
        add_fake(&node, &fake, "").await;
        eventually("the page applied", LIMIT, || {
            status(&node).last_success_nanos > 0 && knows_fake(&node)
        })
        .await;
        assert_eq!(read(&node, "t", "a").as_deref(), Some("alpha"));
        assert_eq!(read(&node, "t", "b").as_deref(), Some("beta"));
        let store = node.node().store();
        let (digest, state, knowledge) = (
            store.digest(&db()).unwrap(),
            store.state(&db()).unwrap(),
            store.knowledge(&db()).unwrap(),
        );
        eventually("the records counted", LIMIT, || {
            status(&node).records_received >= 2
        })
        .await;
        let first_success = status(&node).last_success_nanos;
        assert_eq!(status(&node).records_received, 2);

        release.notify_one();
        gate.notify_one();
        eventually("the same page applied again", LIMIT, || {
            fake.requests().len() == 2 && status(&node).last_success_nanos > first_success
        })
        .await;
        let seen = fake.requests();
        assert!(
            seen[1]
                .knowledge
                .iter()
                .any(|(_, vector)| vector.contains(&(FAKE, 2))),
            "the second request says the node knows the page: {seen:?}"
        );
        assert!(fake.state.push_errors.borrow().is_empty());
        assert_eq!(store.digest(&db()).unwrap(), digest, "same data");
        let again = store.state(&db()).unwrap();
        assert_eq!(
            again.next_position, state.next_position,
            "no log entry added"
        );
        assert_eq!(
            again.next_change, state.next_change,
            "no change for watchers"
        );
        assert_eq!(again.next_generation, state.next_generation);
        assert_eq!(store.knowledge(&db()).unwrap(), knowledge);
        assert_eq!(status(&node).records_received, 2, "nothing new received");
        assert_eq!(read(&node, "t", "a").as_deref(), Some("alpha"));
    });
}

#[test]
fn no_later_page_of_a_session_is_applied_after_a_refused_page() {
    on_local(async {
        let node = start_node().await;
        let mut bad_version = rec(2, "bad", "v");
        bad_version.version = "not hex!".into();
        let refused = vec![
            Item::Rec(rec(1, "lost", "never applied")),
            Item::Rec(bad_version),
        ];
        let fake = Fake::start(vec![Script {
            keep_pushing: true,
            ..script(
                vec![refused, vec![knows(2)]],
                End::Hold(Rc::new(Notify::new())),
            )
        }])
        .await;
        add_fake(&node, &fake, "").await;
        eventually("both pushes answered", LIMIT, || {
            fake.state.pushes.get() == 2
        })
        .await;
        assert_eq!(read(&node, "t", "lost"), None);
        assert!(
            !knows_fake(&node),
            "knowledge of generations whose records were refused: {:?} (push errors {:?})",
            node.node().store().knowledge(&db()).unwrap(),
            fake.state.push_errors.borrow()
        );
    });
}
