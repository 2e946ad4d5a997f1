//! The app API through the embedded server, every test body run against both storage
//! backends: login, put/get/delete, scans, atomic batches, and bad input that must fail with
//! a clear id-prefixed error, change nothing and leave the connection usable.

mod common;

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;

use syncbase::embedded::{EmbeddedServer, EmbeddedStorage};
use syncbase::rpc::client::{Session, error_message};
use syncbase::schema::service_capnp::{row_sink, table};

use common::app::{batch, database, delete, get, put, table};
use common::on_local;

/// Runs `body` on a fresh embedded node of each backend.
fn on_every_backend<F, Fut>(body: F)
where
    F: Fn(EmbeddedServer) -> Fut,
    Fut: Future<Output = ()>,
{
    for storage in [EmbeddedStorage::Memory, EmbeddedStorage::Lmdb] {
        on_local(async {
            let server = EmbeddedServer::start(storage)
                .await
                .expect("embedded server starts");
            body(server).await;
        });
    }
}

/// A sink that keeps what it is pushed.
#[derive(Default)]
struct Collect(RefCell<Vec<(String, Vec<u8>)>>);

impl row_sink::Server for Collect {
    async fn push(self: Rc<Self>, params: row_sink::PushParams) -> capnp::Result<()> {
        for row in params.get()?.get_rows()? {
            let key = row.get_key()?.to_string()?;
            self.0.borrow_mut().push((key, row.get_value()?.to_vec()));
        }
        Ok(())
    }
}

async fn scan(table: &table::Client, prefix: &str) -> (u64, Vec<(String, Vec<u8>)>) {
    let collect = Rc::new(Collect::default());
    let sink: row_sink::Client = capnp_rpc::new_client_from_rc(collect.clone());
    let mut request = table.scan_request();
    request.get().set_prefix(prefix);
    request.get().set_sink(sink);
    let count = request
        .send()
        .promise
        .await
        .expect("scan succeeds")
        .get()
        .unwrap()
        .get_count();
    let rows = collect.0.borrow().clone();
    (count, rows)
}

fn expect_error<T>(result: Result<T, capnp::Error>, id: &str) -> String {
    let Err(error) = result else {
        panic!("expected a {id} error")
    };
    let message = error_message(&error).to_owned();
    assert!(
        message.starts_with(&format!("{id}: ")),
        "{message:?} should start with {id}"
    );
    assert_eq!(error.kind, capnp::ErrorKind::Failed, "{message}");
    message
}

#[test]
fn put_get_delete_round_trip() {
    on_every_backend(|server| async move {
        let t = table(&database(server.service(), "app").await.unwrap(), "rows")
            .await
            .unwrap();
        assert_eq!(get(&t, "k").await, None);
        put(&t, "k", b"v1").await.unwrap();
        put(&t, "k", b"v2").await.unwrap();
        put(&t, "empty", b"").await.unwrap();
        assert_eq!(get(&t, "k").await.as_deref(), Some(&b"v2"[..]));
        assert_eq!(get(&t, "empty").await.as_deref(), Some(&b""[..]));
        assert!(delete(&t, "k").await);
        assert!(!delete(&t, "k").await);
        assert_eq!(get(&t, "k").await, None);
    });
}

#[test]
fn scan_streams_prefix_rows_in_key_order_across_pages() {
    on_every_backend(|server| async move {
        let d = database(server.service(), "app").await.unwrap();
        let t = table(&d, "rows").await.unwrap();
        let other = table(&d, "other").await.unwrap();
        put(&other, "p/0", b"elsewhere").await.unwrap();
        let rows: Vec<(String, String)> = (0..3000u32)
            .map(|i| (format!("p/{i:05}"), format!("v{i}")))
            .collect();
        let ops: Vec<_> = rows
            .iter()
            .map(|(key, value)| ("rows", key.as_str(), Some(value.as_bytes())))
            .collect();
        batch(&d, &ops).await.unwrap();
        put(&t, "q", b"not in prefix").await.unwrap();
        let (count, rows) = scan(&t, "p/").await;
        assert_eq!(count, 3000);
        assert_eq!(rows.len(), 3000);
        assert!(
            rows.windows(2).all(|pair| pair[0].0 < pair[1].0),
            "rows out of order"
        );
        assert_eq!(rows[1234], ("p/01234".to_string(), b"v1234".to_vec()));
        assert_eq!(scan(&t, "").await.0, 3001);
        assert_eq!(scan(&t, "zzz").await, (0, vec![]));
    });
}

#[test]
fn a_batch_is_all_or_nothing() {
    on_every_backend(|server| async move {
        let d = database(server.service(), "app").await.unwrap();
        let (a, b) = (table(&d, "a").await.unwrap(), table(&d, "b").await.unwrap());
        put(&a, "gone", b"x").await.unwrap();
        let ops: [(&str, &str, Option<&[u8]>); 3] = [
            ("a", "k", Some(b"1")),
            ("b", "k", Some(b"2")),
            ("a", "gone", None),
        ];
        batch(&d, &ops).await.unwrap();
        assert_eq!(get(&a, "k").await.as_deref(), Some(&b"1"[..]));
        assert_eq!(get(&b, "k").await.as_deref(), Some(&b"2"[..]));
        assert_eq!(get(&a, "gone").await, None);

        let long_key = "k".repeat(300);
        let ops: [(&str, &str, Option<&[u8]>); 2] = [
            ("a", "new", Some(b"never")),
            ("a", &long_key, Some(b"too long a key")),
        ];
        let message = expect_error(batch(&d, &ops).await, "InvalidArgument");
        assert!(message.contains("batch operation 1"), "{message}");
        assert_eq!(
            get(&a, "new").await,
            None,
            "a failed batch left a write behind"
        );
    });
}

#[test]
fn a_batch_over_the_byte_limit_fails_naming_the_limit_and_a_batch_at_it_commits() {
    on_every_backend(|server| async move {
        let response = server.service().limits_request().send().promise;
        let response = response.await.unwrap();
        let limit = response
            .get()
            .unwrap()
            .get_limits()
            .unwrap()
            .get_max_batch_bytes() as usize;
        assert_eq!(limit, syncbase::names::MAX_BATCH_BYTES);
        let d = database(server.service(), "app").await.unwrap();
        let value = vec![7u8; limit / 3 - 8];
        let legal: Vec<(&str, &str, Option<&[u8]>)> = ["k1", "k2", "k3"]
            .iter()
            .map(|key| ("t", *key, Some(&value[..])))
            .collect();
        batch(&d, &legal).await.unwrap();
        let mut over = legal.clone();
        over.push(("t", "k4", Some(&value[..])));
        let message = expect_error(batch(&d, &over).await, "InvalidArgument");
        assert!(message.contains("MAX_BATCH_BYTES"), "{message}");
        assert!(message.contains(&limit.to_string()), "{message}");
        let t = table(&d, "t").await.unwrap();
        assert_eq!(get(&t, "k4").await, None, "a refused batch wrote nothing");
    });
}

#[test]
fn bad_names_keys_and_values_are_refused_and_the_connection_survives() {
    on_every_backend(|server| async move {
        let service = server.service();
        expect_error(database(service, "").await, "InvalidArgument");
        expect_error(database(service, &"d".repeat(65)).await, "InvalidArgument");
        let message = expect_error(database(service, "bad\u{1}name").await, "InvalidArgument");
        assert!(message.contains("control character"), "{message}");
        let d = database(service, "app").await.unwrap();
        expect_error(table(&d, "").await, "InvalidArgument");
        let t = table(&d, "t").await.unwrap();
        expect_error(put(&t, "", b"v").await, "InvalidArgument");
        expect_error(put(&t, &"k".repeat(257), b"v").await, "InvalidArgument");
        let message = expect_error(
            put(&t, "big", &vec![7; (4 << 20) + 1]).await,
            "InvalidArgument",
        );
        assert!(message.contains("split"), "says how to split it: {message}");
        assert_eq!(get(&t, "big").await, None);
        put(&t, "max", &vec![7; 4 << 20]).await.unwrap();
        assert_eq!(get(&t, "max").await.map(|v| v.len()), Some(4 << 20));
    });
}

#[test]
fn a_wrong_token_gets_no_access_and_no_capability() {
    on_every_backend(|server| async move {
        let error = Session::connect(server.addr(), "not-the-token")
            .await
            .err()
            .expect("login refused");
        assert!(error.to_string().starts_with("NoAccess: "), "{error}");
        let session = server.connect().await.expect("the right token works");
        let d = database(&session.service, "app").await.unwrap();
        put(&table(&d, "t").await.unwrap(), "k", b"v")
            .await
            .unwrap();
        session.close().await.unwrap();
    });
}

#[test]
fn databases_are_created_on_first_use_and_listed() {
    on_every_backend(|server| async move {
        for name in ["zeta", "alpha", "zeta"] {
            database(server.service(), name).await.unwrap();
        }
        let response = server
            .service()
            .list_databases_request()
            .send()
            .promise
            .await
            .unwrap();
        let names: Vec<String> = response
            .get()
            .unwrap()
            .get_names()
            .unwrap()
            .iter()
            .map(|n| n.unwrap().to_string().unwrap())
            .collect();
        assert_eq!(names, ["alpha", "zeta"]);
        let response = server
            .service()
            .limits_request()
            .send()
            .promise
            .await
            .unwrap();
        let limits = response.get().unwrap().get_limits().unwrap();
        assert_eq!(
            (limits.get_max_key_bytes(), limits.get_max_name_bytes()),
            (256, 64)
        );
    });
}

#[test]
fn an_oversized_message_drops_only_its_own_connection() {
    on_every_backend(|server| async move {
        let victim = server.connect().await.unwrap();
        let d = database(&victim.service, "app").await.unwrap();
        let keys: Vec<String> = (0..20).map(|i| format!("k{i}")).collect();
        let value = vec![0u8; 4 << 20];
        let ops: Vec<_> = keys
            .iter()
            .map(|key| ("t", key.as_str(), Some(&value[..])))
            .collect();
        assert!(
            batch(&d, &ops).await.is_err(),
            "an 80 MiB message must be refused"
        );
        let t = table(&database(server.service(), "app").await.unwrap(), "t")
            .await
            .unwrap();
        assert_eq!(get(&t, "k0").await, None);
        put(&t, "after", b"ok").await.unwrap();
    });
}
