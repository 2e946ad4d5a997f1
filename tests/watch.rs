//! `Database.watch` through the app API of embedded nodes, with a `WatchSink` written here:
//! local puts and deletes in commit order, the initial state first, resuming after a closed
//! watch with the last marker received (exactly the changes in between, none twice), bad
//! markers and arguments refused with `InvalidArgument:`, changes synced from a linked node
//! marked `fromSync`, prefix filters, and a backlog of the largest rows paged by bytes.

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use syncbase::embedded::{EmbeddedServer, EmbeddedStorage};
use syncbase::rpc::client::error_message;
use syncbase::rpc::transport::MemoryNetwork;
use syncbase::schema::service_capnp::{database, table, watch_change, watch_sink};

use common::app::{batch, database, delete, put, table, watch_request};
use common::{DB, nodes, on_local};

async fn start() -> EmbeddedServer {
    EmbeddedServer::start(EmbeddedStorage::Memory)
        .await
        .expect("node starts")
}

// ---- The watcher ----

/// One change as the sink got it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Change {
    table: String,
    key: String,
    /// None: a delete.
    value: Option<String>,
    from_sync: bool,
    initial: bool,
    marker: Vec<u8>,
}

impl Change {
    /// (table, key, value) for comparing sequences.
    fn what(&self) -> (String, String, Option<String>) {
        (self.table.clone(), self.key.clone(), self.value.clone())
    }
}

fn put_of(table: &str, key: &str, value: &str) -> (String, String, Option<String>) {
    (table.into(), key.into(), Some(value.into()))
}

fn delete_of(table: &str, key: &str) -> (String, String, Option<String>) {
    (table.into(), key.into(), None)
}

/// A sink that keeps what it is pushed.
#[derive(Default)]
struct Collect(RefCell<Vec<Change>>);

impl watch_sink::Server for Collect {
    async fn push(self: Rc<Self>, params: watch_sink::PushParams) -> capnp::Result<()> {
        for change in params.get()?.get_changes()? {
            let value = match change.which()? {
                watch_change::Put(value) => Some(String::from_utf8(value?.to_vec()).unwrap()),
                watch_change::Delete(()) => None,
            };
            self.0.borrow_mut().push(Change {
                table: change.get_table()?.to_string()?,
                key: change.get_key()?.to_string()?,
                value,
                from_sync: change.get_from_sync(),
                initial: change.get_initial(),
                marker: change.get_resume_marker()?.to_vec(),
            });
        }
        Ok(())
    }
}

/// A running watch call.
struct Watch {
    seen: Rc<Collect>,
    /// The call's outcome once it ended (it shouldn't while the test watches).
    ended: Rc<RefCell<Option<Result<(), String>>>>,
}

impl Watch {
    fn changes(&self) -> Vec<Change> {
        self.seen.0.borrow().clone()
    }

    fn whats(&self) -> Vec<(String, String, Option<String>)> {
        self.changes().iter().map(Change::what).collect()
    }

    fn clear(&self) {
        self.seen.0.borrow_mut().clear();
    }

    /// Waits until at least `count` changes arrived.
    async fn until(&self, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.seen.0.borrow().len() < count {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {count} changes; got {:?}; call ended: {:?}",
                self.whats(),
                self.ended.borrow()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits a little and checks nothing more arrived than `count` changes.
    async fn settles_at(&self, count: usize) {
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(self.changes().len(), count, "{:?}", self.whats());
    }
}

/// Starts a watch; the call runs in a local task.
fn watch(db: &database::Client, table: &str, prefix: &str, initial: bool, marker: &[u8]) -> Watch {
    let seen = Rc::new(Collect::default());
    let sink: watch_sink::Client = capnp_rpc::new_client_from_rc(seen.clone());
    let promise = watch_request(db, table, prefix, initial, marker, sink).promise;
    let ended = Rc::new(RefCell::new(None));
    let outcome = ended.clone();
    tokio::task::spawn_local(async move {
        let result = promise.await.map(drop).map_err(|e| e.extra);
        *outcome.borrow_mut() = Some(result);
    });
    Watch { seen, ended }
}

/// The error a watch call fails with at once.
async fn watch_error(db: &database::Client, table: &str, initial: bool, marker: &[u8]) -> String {
    let sink: watch_sink::Client = capnp_rpc::new_client(Collect::default());
    let outcome = tokio::time::timeout(
        Duration::from_secs(5),
        watch_request(db, table, "", initial, marker, sink).promise,
    )
    .await
    .expect("a refused watch fails at once");
    let Err(error) = outcome else {
        panic!("watch should have failed")
    };
    error_message(&error).to_owned()
}

/// Writes `key` of `t` until the watcher reports it, so the watch is surely live; then forgets
/// what it saw. (A watch without a marker starts from the changes committed after the node
/// took the call, which the test can't otherwise observe.)
async fn until_live(watch: &Watch, t: &table::Client, key: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    for round in 0.. {
        let value = format!("ping {round}");
        put(t, key, &value).await.unwrap();
        let wait = Instant::now() + Duration::from_millis(200);
        while Instant::now() < wait {
            if watch
                .whats()
                .contains(&put_of(&table_name(t).await, key, &value))
            {
                watch.clear();
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(Instant::now() < deadline, "the watch never went live");
    }
}

async fn table_name(t: &table::Client) -> String {
    let response = t.name_request().send().promise.await.unwrap();
    response
        .get()
        .unwrap()
        .get_name()
        .unwrap()
        .to_string()
        .unwrap()
}

// ---- Tests ----

#[test]
fn local_puts_and_deletes_arrive_in_commit_order_not_from_sync() {
    on_local(async {
        let node = start().await;
        let db = database(node.service(), DB).await.unwrap();
        let (t, u) = (
            table(&db, "t").await.unwrap(),
            table(&db, "u").await.unwrap(),
        );
        let w = watch(&db, "t", "", false, &[]);
        until_live(&w, &t, "~ping").await;

        put(&t, "a", "1").await.unwrap();
        put(&u, "a", "other table").await.unwrap();
        put(&t, "b", "2").await.unwrap();
        delete(&t, "a").await;
        batch(
            &db,
            &[
                ("t", "c", Some(b"3")),
                ("u", "c", Some(b"other table")),
                ("t", "b", None),
            ],
        )
        .await
        .unwrap();
        put(&t, "a", "4").await.unwrap();

        let expected = vec![
            put_of("t", "a", "1"),
            put_of("t", "b", "2"),
            delete_of("t", "a"),
            put_of("t", "c", "3"),
            delete_of("t", "b"),
            put_of("t", "a", "4"),
        ];
        w.until(expected.len()).await;
        w.settles_at(expected.len()).await;
        assert_eq!(w.whats(), expected);
        let changes = w.changes();
        assert!(
            changes.iter().all(|c| !c.from_sync && !c.initial),
            "{changes:?}"
        );
        let markers: std::collections::BTreeSet<_> = changes.iter().map(|c| &c.marker).collect();
        assert_eq!(
            markers.len(),
            changes.len(),
            "every change has its own marker"
        );
        assert!(changes.iter().all(|c| !c.marker.is_empty()));
        assert!(w.ended.borrow().is_none(), "the watch stays open");
    });
}

#[test]
fn initial_state_comes_first_marked_initial_then_changes() {
    on_local(async {
        let node = start().await;
        let db = database(node.service(), DB).await.unwrap();
        let (t, u) = (
            table(&db, "t").await.unwrap(),
            table(&db, "u").await.unwrap(),
        );
        put(&t, "b", "2").await.unwrap();
        put(&t, "a", "1").await.unwrap();
        put(&t, "c", "3").await.unwrap();
        delete(&t, "c").await;
        put(&u, "x", "other table").await.unwrap();

        let w = watch(&db, "t", "", true, &[]);
        w.until(2).await;
        // The initial rows were read after the watch took its start, so it is live now.
        put(&t, "d", "4").await.unwrap();
        delete(&t, "a").await;
        w.until(4).await;
        w.settles_at(4).await;
        assert_eq!(
            w.whats(),
            vec![
                put_of("t", "a", "1"),
                put_of("t", "b", "2"),
                put_of("t", "d", "4"),
                delete_of("t", "a"),
            ]
        );
        let changes = w.changes();
        assert!(changes[..2].iter().all(|c| c.initial && !c.from_sync));
        assert!(changes[2..].iter().all(|c| !c.initial && !c.from_sync));
    });
}

#[test]
fn resuming_with_the_last_marker_delivers_exactly_the_changes_in_between() {
    on_local(async {
        let node = start().await;
        let db = database(node.service(), DB).await.unwrap();
        let t = table(&db, "t").await.unwrap();

        let first_session = node.connect().await.unwrap();
        let first_db = database(&first_session.service, DB).await.unwrap();
        let first = watch(&first_db, "t", "", false, &[]);
        until_live(&first, &t, "~ping").await;
        put(&t, "k1", "v1").await.unwrap();
        put(&t, "k2", "v2").await.unwrap();
        first.until(2).await;
        let marker = first.changes().last().unwrap().marker.clone();
        first_session.close().await.unwrap();
        drop(first_db);

        put(&t, "k3", "v3").await.unwrap();
        delete(&t, "k1").await;
        put(&t, "k2", "v2 again").await.unwrap();

        let resumed = watch(&db, "t", "", false, &marker);
        let missed = vec![
            put_of("t", "k3", "v3"),
            delete_of("t", "k1"),
            put_of("t", "k2", "v2 again"),
        ];
        resumed.until(missed.len()).await;
        put(&t, "k4", "after resuming").await.unwrap();
        resumed.until(missed.len() + 1).await;
        resumed.settles_at(missed.len() + 1).await;
        let mut expected = missed;
        expected.push(put_of("t", "k4", "after resuming"));
        assert_eq!(
            resumed.whats(),
            expected,
            "exactly the missed changes, then new ones"
        );
        assert!(resumed.changes().iter().all(|c| !c.initial));

        // A marker from the middle replays from there on, also exactly.
        let middle = resumed.changes()[0].marker.clone();
        let again = watch(&db, "t", "", false, &middle);
        again.until(3).await;
        again.settles_at(3).await;
        assert_eq!(again.whats(), expected[1..].to_vec());
    });
}

#[test]
fn markers_from_another_database_or_damaged_are_invalid_arguments() {
    on_local(async {
        let node = start().await;
        let db = database(node.service(), DB).await.unwrap();
        let other = database(node.service(), "other").await.unwrap();
        let t = table(&db, "t").await.unwrap();
        let w = watch(&db, "t", "", false, &[]);
        until_live(&w, &t, "~ping").await;
        put(&t, "k", "v").await.unwrap();
        w.until(1).await;
        let marker = w.changes()[0].marker.clone();
        table(&other, "t").await.unwrap();

        let mut flipped = marker.clone();
        flipped[0] ^= 0xff;
        let mut ahead = marker.clone();
        let tail = ahead.len() - 1;
        ahead[tail - 2] = 0x7f;
        for (what, bad_db, bad) in [
            ("another database's", &other, marker.clone()),
            ("truncated", &db, marker[..marker.len() - 1].to_vec()),
            ("lengthened", &db, [marker.as_slice(), &[0]].concat()),
            ("bit-flipped tag", &db, flipped),
            ("one byte", &db, vec![1]),
            ("ahead of the database", &db, ahead),
        ] {
            let error = watch_error(bad_db, "t", false, &bad).await;
            assert!(
                error.starts_with("InvalidArgument: "),
                "{what} marker: {error}"
            );
        }
        // The connection and the good marker still work.
        let resumed = watch(&db, "t", "", false, &marker);
        put(&t, "k2", "v2").await.unwrap();
        resumed.until(1).await;
        assert_eq!(resumed.whats(), vec![put_of("t", "k2", "v2")]);
    });
}

#[test]
fn initial_state_without_a_table_is_an_invalid_argument() {
    on_local(async {
        let node = start().await;
        let db = database(node.service(), DB).await.unwrap();
        let error = watch_error(&db, "", true, &[]).await;
        assert!(error.starts_with("InvalidArgument: "), "{error}");
        let error = watch_error(&db, "bad\ntable", false, &[]).await;
        assert!(error.starts_with("InvalidArgument: "), "{error}");
        // Every table without initial state is fine.
        let t = table(&db, "t").await.unwrap();
        let w = watch(&db, "", "", false, &[]);
        until_live(&w, &t, "~ping").await;
        put(&table(&db, "u").await.unwrap(), "k", "v")
            .await
            .unwrap();
        w.until(1).await;
        assert_eq!(w.whats(), vec![put_of("u", "k", "v")]);
    });
}

#[test]
fn a_watcher_on_b_sees_as_write_marked_from_sync() {
    on_local(async {
        let network = MemoryNetwork::new();
        let (a, b) = (
            nodes::start(&network, "a").await,
            nodes::start(&network, "b").await,
        );
        nodes::link(&a, &b).await;
        let (a_db, b_db) = (
            database(a.service(), DB).await.unwrap(),
            database(b.service(), DB).await.unwrap(),
        );
        let (a_t, b_t) = (
            table(&a_db, "t").await.unwrap(),
            table(&b_db, "t").await.unwrap(),
        );
        let w = watch(&b_db, "t", "", false, &[]);
        until_live(&w, &b_t, "~ping").await;

        put(&a_t, "from-a", "synced").await.unwrap();
        w.until(1).await;
        put(&b_t, "from-b", "local").await.unwrap();
        w.until(2).await;
        delete(&a_t, "from-a").await;
        w.until(3).await;
        w.settles_at(3).await;
        let changes = w.changes();
        assert_eq!(
            w.whats(),
            vec![
                put_of("t", "from-a", "synced"),
                put_of("t", "from-b", "local"),
                delete_of("t", "from-a"),
            ]
        );
        assert_eq!(
            changes.iter().map(|c| c.from_sync).collect::<Vec<_>>(),
            vec![true, false, true],
            "{changes:?}"
        );
    });
}

#[test]
fn a_prefix_filter_only_delivers_matching_keys() {
    on_local(async {
        let node = start().await;
        let db = database(node.service(), DB).await.unwrap();
        let (t, u) = (
            table(&db, "t").await.unwrap(),
            table(&db, "u").await.unwrap(),
        );
        put(&t, "p/old", "before").await.unwrap();
        put(&t, "q/old", "before").await.unwrap();
        let w = watch(&db, "t", "p/", true, &[]);
        w.until(1).await;
        put(&t, "p/1", "yes").await.unwrap();
        put(&t, "q/1", "no").await.unwrap();
        put(&t, "p", "no: shorter than the prefix").await.unwrap();
        put(&u, "p/1", "no: other table").await.unwrap();
        put(&t, "p/2", "yes").await.unwrap();
        delete(&t, "q/old").await;
        delete(&t, "p/1").await;
        w.until(4).await;
        w.settles_at(4).await;
        assert_eq!(
            w.whats(),
            vec![
                put_of("t", "p/old", "before"),
                put_of("t", "p/1", "yes"),
                put_of("t", "p/2", "yes"),
                delete_of("t", "p/1"),
            ]
        );
        assert!(w.changes()[0].initial);

        // Without a table, the prefix applies in every table.
        let all = watch(&db, "", "p/", false, &[]);
        until_live(&all, &t, "p/~ping").await;
        put(&u, "p/3", "yes").await.unwrap();
        put(&u, "z", "no").await.unwrap();
        put(&t, "p/4", "yes").await.unwrap();
        all.until(2).await;
        all.settles_at(2).await;
        assert_eq!(
            all.whats(),
            vec![put_of("u", "p/3", "yes"), put_of("t", "p/4", "yes")]
        );
    });
}

/// How many rows of nearly the largest legal value the backlog tests write: 64 MB, more than
/// one message may carry.
const BIG_ROWS: usize = 16;
const BIG_VALUE_BYTES: usize = 4_000_000;

/// Puts [`BIG_ROWS`] rows `big00`.. of [`BIG_VALUE_BYTES`] each.
async fn put_largest_rows(t: &table::Client) {
    let big = "x".repeat(BIG_VALUE_BYTES);
    for i in 0..BIG_ROWS {
        put(t, &format!("big{i:02}"), &big).await.unwrap();
    }
}

/// Checks that `changes` are exactly the rows [`put_largest_rows`] wrote, in order.
fn assert_largest_rows(changes: &[Change]) {
    let got: Vec<(String, usize)> = changes
        .iter()
        .map(|c| (c.key.clone(), c.value.as_ref().map_or(0, String::len)))
        .collect();
    let expected: Vec<(String, usize)> = (0..BIG_ROWS)
        .map(|i| (format!("big{i:02}"), BIG_VALUE_BYTES))
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn a_backlog_of_the_largest_rows_is_delivered_when_resuming() {
    on_local(async {
        let node = start().await;
        let db = database(node.service(), DB).await.unwrap();
        let t = table(&db, "t").await.unwrap();
        let first = watch(&db, "t", "", false, &[]);
        until_live(&first, &t, "~ping").await;
        put(&t, "before", "v").await.unwrap();
        first.until(1).await;
        let marker = first.changes()[0].marker.clone();

        // A backlog more than one message may carry: the feed must page it by bytes.
        put_largest_rows(&t).await;
        let resumed = watch(&db, "t", "", false, &marker);
        resumed.until(BIG_ROWS).await;
        assert_largest_rows(&resumed.changes());
        assert!(
            resumed.ended.borrow().is_none(),
            "{:?}",
            resumed.ended.borrow()
        );
    });
}

/// A sink that takes no push until opened (a watcher that stops reading for a while), then
/// keeps what it is pushed; counts the pushes that arrived while it was closed.
struct Gated {
    open: tokio::sync::watch::Receiver<bool>,
    waiting: RefCell<usize>,
    seen: Rc<Collect>,
}

impl watch_sink::Server for Gated {
    async fn push(self: Rc<Self>, params: watch_sink::PushParams) -> capnp::Result<()> {
        let mut open = self.open.clone();
        if !*open.borrow() {
            *self.waiting.borrow_mut() += 1;
            let _ = open.wait_for(|open| *open).await;
        }
        watch_sink::Server::push(self.seen.clone(), params).await
    }
}

/// A watcher that stops reading while the largest rows commit gets them all once it reads
/// again, on the same stream, within the watch window; a collection pass meanwhile (on a lone
/// node it covers every row) keeps the changes the live watcher has yet to read
/// (`node::watchers`), so it is not refused `Compacted:`.
#[test]
fn a_live_watcher_that_stops_reading_then_reads_gets_every_large_row_even_past_a_collection() {
    on_local(async {
        let node = start().await;
        let db = database(node.service(), DB).await.unwrap();
        let t = table(&db, "t").await.unwrap();
        let probe = watch(&db, "t", "", false, &[]);
        until_live(&probe, &t, "~ping").await;
        put(&t, "start", "v").await.unwrap();
        probe.until(1).await;
        let marker = probe.changes()[0].marker.clone();

        let (open, gate) = tokio::sync::watch::channel(false);
        let seen = Rc::new(Collect::default());
        let gated = Rc::new(Gated {
            open: gate,
            waiting: RefCell::new(0),
            seen: seen.clone(),
        });
        let sink: watch_sink::Client = capnp_rpc::new_client_from_rc(gated.clone());
        let call = watch_request(&db, "t", "", false, &marker, sink).promise;
        let ended = Rc::new(RefCell::new(None));
        let outcome = ended.clone();
        tokio::task::spawn_local(async move {
            *outcome.borrow_mut() = Some(call.await.map(drop).map_err(|e| e.extra));
        });
        // The largest rows, committed while the watcher reads nothing.
        put_largest_rows(&t).await;
        probe.until(BIG_ROWS + 1).await;
        common::eventually(
            "the node to fill the watcher's window",
            Duration::from_secs(10),
            || *gated.waiting.borrow() > 0,
        )
        .await;
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let held = *gated.waiting.borrow();
        assert!(
            held <= 4,
            "{held} pushes outstanding: more than the watch window"
        );
        let collection = syncbase::rpc::client::collect(node.service(), DB)
            .await
            .unwrap();
        assert!(collection.freed.records > BIG_ROWS as u64, "{collection:?}");
        open.send(true).unwrap();

        let deadline = Instant::now() + Duration::from_secs(30);
        while seen.0.borrow().len() < BIG_ROWS {
            assert!(
                Instant::now() < deadline,
                "got {} of {BIG_ROWS} rows; call ended: {:?}",
                seen.0.borrow().len(),
                ended.borrow()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_largest_rows(&seen.0.borrow());
        put(&t, "after", "still live").await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while seen.0.borrow().len() < 17 {
            assert!(
                Instant::now() < deadline,
                "the stream went quiet: {:?}",
                ended.borrow()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(ended.borrow().is_none(), "{:?}", ended.borrow());
    });
}

/// Writes k1 and k2 under a live watch and returns their markers; then collects the
/// database's history (a lone node: everything it has seen), which removes their changes.
async fn two_changes_then_collect(
    node: &EmbeddedServer,
    db: &database::Client,
    t: &table::Client,
) -> (Vec<u8>, Vec<u8>) {
    let live = watch(db, "t", "", false, &[]);
    until_live(&live, t, "~ping").await;
    put(t, "k1", "v1").await.unwrap();
    put(t, "k2", "v2").await.unwrap();
    live.until(2).await;
    let markers = (
        live.changes()[0].marker.clone(),
        live.changes()[1].marker.clone(),
    );
    let collection = syncbase::rpc::client::collect(node.service(), DB)
        .await
        .unwrap();
    assert!(collection.freed.changes >= 2, "{:?}", collection.freed);
    markers
}

#[test]
fn a_watch_resuming_below_the_feed_floor_is_refused_as_compacted() {
    on_local(async {
        let node = start().await;
        let db = database(node.service(), DB).await.unwrap();
        let t = table(&db, "t").await.unwrap();
        let (after_k1, _) = two_changes_then_collect(&node, &db, &t).await;
        for initial in [false, true] {
            let error = watch_error(&db, "t", initial, &after_k1).await;
            assert!(error.starts_with("Compacted: "), "{error}");
            assert!(error.contains("watch from now"), "{error}");
        }
    });
}

#[test]
fn a_watch_from_the_feed_floor_or_from_now_sees_every_later_change() {
    on_local(async {
        let node = start().await;
        let db = database(node.service(), DB).await.unwrap();
        let t = table(&db, "t").await.unwrap();
        let (_, after_k2) = two_changes_then_collect(&node, &db, &t).await;
        let resumed = watch(&db, "t", "", false, &after_k2);
        let now = watch(&db, "t", "", false, &[]);
        until_live(&now, &t, "~ping again").await;
        resumed.clear();
        put(&t, "k3", "v3").await.unwrap();
        delete(&t, "k1").await;
        let expected = vec![put_of("t", "k3", "v3"), delete_of("t", "k1")];
        for watch in [&resumed, &now] {
            watch.until(2).await;
            watch.settles_at(2).await;
            assert_eq!(watch.whats(), expected);
        }
    });
}
