//! What a member knows of its own standing, between embedded nodes on an in-memory network:
//! an ejected or revoked member learns it from an admin's notice, records it and refuses its
//! app's writes under the syncgroup's prefixes (not elsewhere); a leaf whose only admin is a
//! normal node settles, learns of a server member that joins later, and can leave and join
//! again; a pending copy says what it waits for; and a member's chosen name reaches the others.

mod common;

use std::time::Duration;

use syncbase::config::Role;
use syncbase::embedded::{EmbeddedOptions, EmbeddedServer, EmbeddedStorage};
use syncbase::error::Error;
use syncbase::genvec::Scope;
use syncbase::rpc::transport::MemoryNetwork;
use syncbase::syncgroup::access::Level;
use syncbase::syncgroup::{Removal, SyncgroupName, SyncgroupView};

use common::app::{AppSyncgroups, database, put, table};
use common::members::join_by_invite;
use common::{DB, eventually, nodes, on_local};

/// How long a test waits for the nodes to do something.
const LIMIT: Duration = Duration::from_secs(15);

/// A node named `name` on `network` with `role`, choosing `chosen` as its name.
async fn start(
    network: &MemoryNetwork,
    name: &str,
    role: Role,
    chosen: Option<&str>,
) -> EmbeddedServer {
    let options = EmbeddedOptions {
        role,
        name: chosen.map(str::to_owned),
        ..nodes::options(network, name, EmbeddedStorage::Memory)
    };
    EmbeddedServer::start_with(options).await.unwrap()
}

/// Creates `HOST/suffix` on `host`, sharing all of `table`.
async fn create(host: &EmbeddedServer, suffix: &str, table: &str) -> SyncgroupName {
    common::members::create_syncgroup(host, suffix, table).await
}

/// `node`'s view of `name`.
fn view(node: &EmbeddedServer, name: &SyncgroupName) -> SyncgroupView {
    node.node().syncgroup_view(name).unwrap()
}

/// How `node` recorded losing `name`, if it did.
fn removal(node: &EmbeddedServer, name: &SyncgroupName) -> Option<Removal> {
    view(node, name).local.removed.map(|removed| removed.how)
}

/// Puts `key` in `table` of the test database through `node`'s app API.
async fn put_in(node: &EmbeddedServer, table_name: &str, key: &str) -> Result<(), Error> {
    let db = database(node.service(), DB).await.unwrap();
    let table = table(&db, table_name).await.unwrap();
    put(&table, key, b"v").await.map_err(Error::from)
}

#[test]
fn an_ejected_member_learns_it_refuses_writes_under_its_prefixes_and_joins_again() {
    on_local(async {
        let network = MemoryNetwork::new();
        let host = nodes::start(&network, "h:1").await;
        let member = nodes::start(&network, "m:1").await;
        let shared = create(&host, "t", "t").await;
        let other = create(&host, "u", "u").await;
        join_by_invite(&host, &member, &shared, Level::ReadWrite).await;
        join_by_invite(&host, &member, &other, Level::ReadWrite).await;
        put_in(&member, "t", "before").await.unwrap();

        let hid = host.node().identity().fingerprint().clone();
        let mid = member.node().identity().fingerprint().clone();
        host.node()
            .eject(hid.clone(), shared.clone(), mid.clone())
            .await
            .unwrap();
        eventually("the member learns it was ejected", LIMIT, || {
            removal(&member, &shared) == Some(Removal::Ejected)
        })
        .await;
        let removed = view(&member, &shared).local.removed.unwrap();
        assert_eq!(removed.by, hid, "the admin's notice");
        assert_eq!(removal(&member, &other), None, "the other syncgroup stays");

        let refused = put_in(&member, "t", "after").await.unwrap_err();
        assert!(
            matches!(&refused, Error::NoAccess(text) if text.contains("ejected")),
            "{refused:?}"
        );
        put_in(&member, "u", "still-shared").await.unwrap();
        put_in(&member, "v", "never-shared").await.unwrap();
        // It stops asking the admin for the syncgroup it lost; the other one still syncs.
        let peer = member
            .node()
            .peers()
            .get(&hid)
            .expect("still a peer through u");
        assert!(
            !peer
                .syncgroups
                .contains(&view(&member, &shared).record.sg.id)
        );

        join_by_invite(&host, &member, &shared, Level::ReadWrite).await;
        assert_eq!(removal(&member, &shared), None, "a join clears it");
        eventually("the rejoined member settles", LIMIT, || {
            view(&member, &shared).local.pending.is_none()
        })
        .await;
        put_in(&member, "t", "rejoined").await.unwrap();
    });
}

#[test]
fn a_member_whose_read_is_revoked_learns_it_and_its_writes_fail() {
    on_local(async {
        let network = MemoryNetwork::new();
        let host = nodes::start(&network, "h:1").await;
        let member = nodes::start(&network, "m:1").await;
        let name = create(&host, "t", "t").await;
        join_by_invite(&host, &member, &name, Level::ReadWrite).await;
        eventually("the member settles", LIMIT, || {
            view(&member, &name).local.pending.is_none()
        })
        .await;

        let hid = host.node().identity().fingerprint().clone();
        let mid = member.node().identity().fingerprint().clone();
        let current = view(&host, &name).record.sg;
        let mut spec = current.spec.clone();
        assert!(spec.perms.revoke(&mid));
        host.node()
            .set_spec(hid, name.clone(), spec, current.spec_version)
            .await
            .unwrap();
        eventually("the member learns its Read was revoked", LIMIT, || {
            removal(&member, &name) == Some(Removal::ReadRevoked)
        })
        .await;
        let refused = put_in(&member, "t", "after").await.unwrap_err();
        assert!(
            matches!(&refused, Error::NoAccess(text) if text.contains("Read was revoked")),
            "{refused:?}"
        );

        // Granted again, it joins by name (as the message says) and writes again.
        let current = view(&host, &name).record.sg;
        let mut spec = current.spec.clone();
        spec.perms.grant(Level::ReadWrite, &mid);
        let hid = host.node().identity().fingerprint().clone();
        host.node()
            .set_spec(hid.clone(), name.clone(), spec, current.spec_version)
            .await
            .unwrap();
        let syncgroups = member
            .service()
            .syncgroups_request()
            .send()
            .pipeline
            .get_syncgroups();
        let mut request = syncgroups.join_request();
        request.get().set_name(name.as_str());
        request.get().set_admin_fingerprint(hid.as_str());
        request.send().promise.await.unwrap();
        assert_eq!(removal(&member, &name), None, "a join clears it");
        put_in(&member, "t", "granted-again").await.unwrap();
    });
}

#[test]
fn a_leaf_whose_only_admin_is_a_normal_node_settles_and_learns_of_a_later_server() {
    on_local(async {
        let network = MemoryNetwork::new();
        let host = nodes::start(&network, "h:1").await;
        let leaf = start(&network, "l:1", Role::Leaf, None).await;
        let name = create(&host, "t", "t").await;
        join_by_invite(&host, &leaf, &name, Level::ReadWrite).await;
        eventually("the leaf settles through the admin", LIMIT, || {
            view(&leaf, &name).local.pending.is_none()
        })
        .await;

        let server = start(&network, "s:1", Role::Server, None).await;
        join_by_invite(&host, &server, &name, Level::ReadWrite).await;
        let sid = server.node().identity().fingerprint().clone();
        eventually("the leaf learns of the server", LIMIT, || {
            view(&leaf, &name).record.sg.joiners.contains_key(&sid)
                && leaf.node().peers().get(&sid).is_some()
        })
        .await;
    });
}

#[test]
fn a_leaf_that_left_joins_again() {
    on_local(async {
        let network = MemoryNetwork::new();
        // Durable commits: the join at the admin takes long enough for the admin's sessions
        // over the leaf's connection to be refused first.
        let options = nodes::options(&network, "h:1", EmbeddedStorage::Lmdb);
        let host = EmbeddedServer::start_with(options).await.unwrap();
        let leaf = start(&network, "l:1", Role::Leaf, None).await;
        let name = create(&host, "t", "t").await;
        join_by_invite(&host, &leaf, &name, Level::ReadWrite).await;
        AppSyncgroups::of(leaf.service())
            .leave(name.as_str())
            .await
            .unwrap();
        // The host still lists the leaf (leaving is local), so it syncs back over the leaf's
        // join connection, where the leaf's sessions now refuse it.
        join_by_invite(&host, &leaf, &name, Level::ReadWrite).await;
        assert!(!view(&leaf, &name).local.left);
    });
}

#[test]
fn a_pending_copy_that_no_admin_can_reach_says_what_it_waits_for() {
    on_local(async {
        let network = MemoryNetwork::new();
        // An admin that is a leaf: its invites name its listener, but it advertises no
        // address, so a leaf joiner can dial nobody who could settle its copy.
        let host = start(&network, "h:1", Role::Leaf, None).await;
        let leaf = start(&network, "l:1", Role::Leaf, None).await;
        let name = create(&host, "t", "t").await;
        join_by_invite(&host, &leaf, &name, Level::ReadWrite).await;
        let held = view(&leaf, &name);
        assert!(held.local.pending.is_some());
        let waiting = leaf.node().waiting_for(&held);
        assert!(
            waiting.contains("waiting for an admin to connect here"),
            "{waiting}"
        );
        assert!(waiting.contains("sg grant"), "{waiting}");
        assert_eq!(host.node().waiting_for(&view(&host, &name)), "");
    });
}

#[test]
fn a_members_chosen_name_reaches_the_others_and_a_local_label_wins() {
    on_local(async {
        let network = MemoryNetwork::new();
        let host = start(&network, "h:1", Role::Normal, Some("alice")).await;
        let member = start(&network, "m:1", Role::Normal, Some("bob")).await;
        let name = create(&host, "t", "t").await;
        join_by_invite(&host, &member, &name, Level::ReadWrite).await;
        let hid = host.node().identity().fingerprint().clone();
        let mid = member.node().identity().fingerprint().clone();
        eventually("the host learns the member's name", LIMIT, || {
            view(&host, &name).record.sg.joiners[&mid].name == "bob"
        })
        .await;
        assert_eq!(view(&member, &name).record.sg.joiners[&hid].name, "alice");
        assert_eq!(member.node().peers().get(&hid).unwrap().name, "alice");
        assert_eq!(
            member.node().peer_label(&hid),
            format!("{hid} (alice)"),
            "status lines name it"
        );

        let label = syncbase::sync::peers::PeerConfig::new(
            &host.peer_address(),
            hid.clone(),
            DB,
            vec![Scope::new("t", "")],
        )
        .unwrap()
        .named("laptop")
        .unwrap();
        member.node().add_peer(label).await.unwrap();
        assert_eq!(member.node().peers().get(&hid).unwrap().name, "laptop");
        let too_long = "x".repeat(65);
        assert!(matches!(
            syncbase::sync::peers::PeerConfig::new("a:1", hid, DB, vec![Scope::new("t", "")])
                .unwrap()
                .named(&too_long),
            Err(Error::InvalidArgument(_))
        ));
    });
}
