//! Knowledge never covers a record a node does not hold (issue 10.1): a record refused because
//! its writer was not known as a member yet is fetched once the syncgroup metadata permits it,
//! without a restart or a new write by its writer. Embedded nodes on an in-memory network
//! whose links the tests cut.

mod common;

use std::time::Duration;

use syncbase::embedded::{EmbeddedOptions, EmbeddedServer, EmbeddedStorage};
use syncbase::genvec::Generation;
use syncbase::identity::Fingerprint;
use syncbase::names::DbName;
use syncbase::rpc::transport::MemoryNetwork;
use syncbase::schema::service_capnp::table;
use syncbase::syncgroup::access::Level;
use syncbase::syncgroup::{SyncgroupName, Tag};

use common::app::{database, get, put};
use common::members::{create_syncgroup, join_by_invite};
use common::{DB, eventually, nodes, on_local};

/// How long a test waits for the nodes to do something (generous: 2 shared cores).
const LIMIT: Duration = Duration::from_secs(30);

fn db() -> DbName {
    DbName::parse(DB).unwrap()
}

async fn table_t(node: &EmbeddedServer) -> table::Client {
    let database = database(node.service(), DB).await.unwrap();
    common::app::table(&database, "t").await.unwrap()
}

/// Waits until row `key` of table `t` is on `node`.
async fn wait_for_row(node: &EmbeddedServer, key: &str, what: &str) {
    let table = table_t(node).await;
    let deadline = std::time::Instant::now() + LIMIT;
    while get(&table, key).await.is_none() {
        assert!(std::time::Instant::now() < deadline, "{what} never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn fingerprint(node: &EmbeddedServer) -> Fingerprint {
    node.node().identity().fingerprint().clone()
}

/// Whether `node`'s copy of `name` lists `member` as a member.
fn knows_member(node: &EmbeddedServer, name: &SyncgroupName, member: &EmbeddedServer) -> bool {
    node.node()
        .syncgroup_view(name)
        .is_ok_and(|view| view.record.sg.joiners.contains_key(&fingerprint(member)))
}

/// Records `node` refused from `peer` (its status counter).
fn refused_from(node: &EmbeddedServer, peer: &EmbeddedServer) -> u64 {
    node.node()
        .peers()
        .status(&fingerprint(peer))
        .map_or(0, |status| status.records_refused)
}

/// The case: B (read-write) is stopped, C joins read-write and writes `c1`, which A
/// receives; B restarts from its kept data dir and must get `c1` from A (C cannot reach B),
/// although its copy of the syncgroup did not list C when it came back.
#[test]
fn a_write_relayed_before_its_writer_is_known_is_fetched_once_permitted() {
    on_local(async {
        let network = MemoryNetwork::new();
        let dir = tempfile::tempdir().unwrap();
        let durable = EmbeddedOptions {
            data_dir: Some(dir.path().to_path_buf()),
            ..nodes::options(&network, "b:1", EmbeddedStorage::Lmdb)
        };
        // C never reaches B: whatever B gets of C's, it gets from A.
        network.set_link("b:1", "c:1", false);
        let a = nodes::start(&network, "a:1").await;
        let b = EmbeddedServer::start_with(durable.clone()).await.unwrap();
        let name = create_syncgroup(&a, "sg", "t").await;
        join_by_invite(&a, &b, &name, Level::ReadWrite).await;
        put(&table_t(&a).await, "a0", b"1").await.unwrap();
        wait_for_row(&b, "a0", "A's row, before B stops").await;
        drop(b);

        let c = nodes::start(&network, "c:1").await;
        join_by_invite(&a, &c, &name, Level::ReadWrite).await;
        put(&table_t(&c).await, "c1", b"1").await.unwrap();
        wait_for_row(&a, "c1", "C's row at A").await;

        let b = EmbeddedServer::start_with(durable).await.unwrap();
        wait_for_row(&b, "c1", "C's row at the restarted B").await;
        assert!(knows_member(&b, &name, &c));
        assert_eq!(get(&table_t(&b).await, "c1").await, Some(b"1".to_vec()));
    });
}

/// B refuses `c1`, relayed by the reader R, while B's copy of the syncgroup does not list C
/// (only admins relay syncgroup versions, and the admin A is cut off). `status` counts the
/// refusal and B's knowledge does not cover `c1`. Once A's metadata reaches B, B's live
/// session with R is re-issued and fetches `c1` from R: A never had it, C cannot reach B, C
/// writes nothing more, and nobody restarts.
#[test]
fn a_refused_record_is_fetched_again_from_the_same_relay_once_its_writer_is_permitted() {
    on_local(async {
        let network = MemoryNetwork::new();
        network.set_link("b:1", "c:1", false);
        let a = nodes::start(&network, "a:1").await;
        let b = nodes::start(&network, "b:1").await;
        let r = nodes::start(&network, "r:1").await;
        let name = create_syncgroup(&a, "sg", "t").await;
        join_by_invite(&a, &b, &name, Level::ReadWrite).await;
        join_by_invite(&a, &r, &name, Level::Read).await;
        eventually("B and R to know each other", LIMIT, || {
            knows_member(&b, &name, &r) && knows_member(&r, &name, &b)
        })
        .await;
        put(&table_t(&b).await, "b0", b"1").await.unwrap();
        wait_for_row(&r, "b0", "B's row at R").await;

        // B stops hearing from the admin; C joins, R learns of it, then A is cut off from all.
        network.set_link("a:1", "b:1", false);
        let c = nodes::start(&network, "c:1").await;
        join_by_invite(&a, &c, &name, Level::ReadWrite).await;
        eventually("R to know C", LIMIT, || knows_member(&r, &name, &c)).await;
        network.set_link("a:1", "c:1", false);
        network.set_link("a:1", "r:1", false);
        put(&table_t(&c).await, "c1", b"1").await.unwrap();
        wait_for_row(&r, "c1", "C's row at R").await;

        eventually("B to refuse C's row from R", LIMIT, || {
            refused_from(&b, &r) >= 1
        })
        .await;
        assert!(!knows_member(&b, &name, &c));
        assert!(get(&table_t(&b).await, "c1").await.is_none());
        let c_device = c.node().store().device();
        let knowledge = b.node().store().knowledge(&db()).unwrap();
        assert_eq!(
            knowledge.known_gen("t", "c1", c_device),
            Generation::NONE,
            "B's knowledge covers a record it refused"
        );

        network.set_link("a:1", "b:1", true);
        wait_for_row(&b, "c1", "C's refused row, once C is known").await;
        assert!(knows_member(&b, &name, &c));
    });
}

/// The description of `node`'s copy of `name`.
fn description(node: &EmbeddedServer, name: &SyncgroupName) -> String {
    node.node()
        .syncgroup_view(name)
        .map(|view| view.record.sg.spec.description)
        .unwrap_or_default()
}

/// B refuses the spec change X made as a new admin, relayed by X itself, because B's copy
/// (the admin A is cut off) does not list X as an admin yet; once A's version making X an
/// admin reaches B, B's live syncgroup session with X is re-issued and takes X's version. A
/// never had it, and nobody writes or restarts.
#[test]
fn a_refused_syncgroup_version_is_fetched_again_once_its_relay_is_an_admin() {
    on_local(async {
        let network = MemoryNetwork::new();
        let a = nodes::start(&network, "a:1").await;
        let b = nodes::start(&network, "b:1").await;
        let x = nodes::start(&network, "x:1").await;
        let name = create_syncgroup(&a, "sg", "t").await;
        join_by_invite(&a, &b, &name, Level::ReadWrite).await;
        join_by_invite(&a, &x, &name, Level::ReadWrite).await;
        eventually("B to know X", LIMIT, || knows_member(&b, &name, &x)).await;

        network.set_link("b:1", "x:1", false);
        network.set_link("a:1", "b:1", false);
        let mut spec = a.node().syncgroup_view(&name).unwrap().record.sg.spec;
        spec.perms.grant(Level::Admin, &fingerprint(&x));
        a.node()
            .set_spec(fingerprint(&a), name.clone(), spec, String::new())
            .await
            .unwrap();
        eventually("X to be an admin in its copy", LIMIT, || {
            x.node()
                .syncgroup_view(&name)
                .is_ok_and(|view| view.record.sg.allows(Tag::Admin, &fingerprint(&x)))
        })
        .await;
        network.set_link("a:1", "x:1", false);
        let mut spec = x.node().syncgroup_view(&name).unwrap().record.sg.spec;
        spec.description = "by x".into();
        x.node()
            .set_spec(fingerprint(&x), name.clone(), spec, String::new())
            .await
            .unwrap();
        put(&table_t(&x).await, "x0", b"1").await.unwrap();

        // B's data session with X starts after the syncgroup session's first round, which
        // brought X's version: refused, X being no admin in B's copy.
        network.set_link("b:1", "x:1", true);
        wait_for_row(&b, "x0", "X's row at B").await;
        assert_eq!(description(&b, &name), "test");

        network.set_link("a:1", "b:1", true);
        eventually("X's version at B", LIMIT, || {
            description(&b, &name) == "by x"
        })
        .await;
        assert_eq!(description(&a, &name), "test", "A never had X's version");
    });
}
