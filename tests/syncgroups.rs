//! Syncgroups and capability security between embedded nodes and bare peers on an in-memory
//! network: the capability matrix of ARCHITECTURE.md (every cell called and compared with the
//! table there), the pending state, revocation, relaying by a read-only member, and bad input
//! (forged caller names, spent invites, malformed specs, a publish clashing with a known name
//! or id).

mod common;

use std::time::Duration;

use syncbase::config::Role;
use syncbase::embedded::{EmbeddedOptions, EmbeddedServer, EmbeddedStorage};
use syncbase::error::Error;
use syncbase::genvec::{DeviceId, Generation, Scope};
use syncbase::identity::Fingerprint;
use syncbase::names::DbName;
use syncbase::node::JoinReply;
use syncbase::rpc::transport::MemoryNetwork;
use syncbase::store::Version;
use syncbase::syncgroup::access::Level;
use syncbase::syncgroup::{MemberInfo, Permissions, Spec, SyncgroupName, Tag};

use common::app::{AppSyncgroups, database, get, put, table};
use common::members::join_by_invite;
use common::peer::{BarePeer, accepting_sink, outcome};
use common::peer_client::{AdminCalls, Deltas, Join, Publish};
use common::{DB, eventually, nodes, on_local};

/// How long a test waits for the nodes to do something.
const LIMIT: Duration = Duration::from_secs(15);

fn db() -> DbName {
    DbName::parse(DB).unwrap()
}

fn name(text: &str) -> SyncgroupName {
    SyncgroupName::parse(text).unwrap()
}

/// A spec sharing table `t`, with empty permissions (the creator alone).
fn spec() -> Spec {
    Spec {
        description: "test".into(),
        perms: Permissions::default(),
        prefixes: vec![Scope::new("t", "")],
        mount_tables: vec![],
        is_private: false,
    }
}

fn member(device: u64) -> MemberInfo {
    MemberInfo {
        sync_priority: 0,
        is_server: false,
        device: DeviceId(device),
        address: String::new(),
        name: String::new(),
    }
}

fn id_of(result: Result<impl Sized, Error>) -> String {
    match result {
        Ok(_) => "ok".into(),
        Err(error) => error.id().into(),
    }
}

/// Creates the syncgroup `HOST/sg` on `host`.
async fn create(host: &EmbeddedServer) -> SyncgroupName {
    let name = name(&format!("{}/sg", host.peer_address()));
    host.node()
        .create_syncgroup(db(), name.clone(), spec())
        .await
        .unwrap();
    name
}

/// The secret of a fresh one-use invite at `level`.
async fn invite(host: &EmbeddedServer, name: &SyncgroupName, level: Level) -> String {
    host.node()
        .mint_invite(name.clone(), level, None, 1)
        .await
        .unwrap()
        .secret
}

/// A `joinSyncgroupAtAdmin` of `name` as a member with device `device`.
fn join(name: &SyncgroupName, device: u64) -> Join<'_> {
    Join::new(name.as_str(), member(device))
}

/// Joins `name` as `peer` (device `device`) with the invite `secret`, and checks the admin
/// answered for that syncgroup.
async fn join_with(peer: &BarePeer, name: &SyncgroupName, device: u64, secret: &str) {
    let reply = peer
        .calls()
        .join(join(name, device).invite(secret))
        .await
        .unwrap();
    assert_eq!(&reply.sg.name, name);
}

/// Table `t` of the test database on `node`, through its app API.
async fn table_t(node: &EmbeddedServer) -> syncbase::schema::service_capnp::table::Client {
    table(&database(node.service(), DB).await.unwrap(), "t")
        .await
        .unwrap()
}

/// Waits until `key` is in `table`.
async fn wait_for_row(
    table: &syncbase::schema::service_capnp::table::Client,
    key: &str,
    what: &str,
) {
    let deadline = std::time::Instant::now() + LIMIT;
    while get(table, key).await.is_none() {
        assert!(std::time::Instant::now() < deadline, "{what} never arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A non-live `getDeltas` for all of table `t`, as `peer` with device `device`.
async fn data_deltas(peer: &BarePeer, device: u64) -> Result<(), capnp::Error> {
    table_deltas(peer, device, "t").await
}

/// A non-live `getDeltas` for all of `table`, as `peer` with device `device`.
async fn table_deltas(peer: &BarePeer, device: u64, table: &str) -> Result<(), capnp::Error> {
    let data = Deltas::Data {
        tables: &[table],
        live: false,
    };
    peer.calls()
        .get_deltas(DB, device, data, accepting_sink())
        .await
}

// ---- The capability matrix ----

/// A principal of the matrix: a bare peer, its device, and the Admin capability it holds.
struct Principal {
    peer: BarePeer,
    device: u64,
    admin: Option<AdminCalls>,
}

/// The matrix as ARCHITECTURE.md writes it: (call, [admin, writer, reader, stranger, revoked]).
fn documented_matrix() -> Vec<(String, Vec<String>)> {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/ARCHITECTURE.md")).unwrap();
    let mut lines = text
        .lines()
        .skip_while(|line| {
            !line.starts_with("| call | admin | writer | reader | stranger | revoked |")
        })
        .skip(2);
    let mut rows = Vec::new();
    for line in lines.by_ref().take_while(|line| line.starts_with('|')) {
        let cells: Vec<String> = line
            .trim_matches('|')
            .split('|')
            .map(|cell| cell.trim().trim_matches('`').to_owned())
            .collect();
        assert_eq!(cells.len(), 6, "matrix row {line:?}");
        rows.push((cells[0].clone(), cells[1..].to_vec()));
    }
    assert!(
        rows.len() >= 18,
        "the matrix in ARCHITECTURE.md has {} rows",
        rows.len()
    );
    rows
}

/// Makes one call of the matrix as `who`; returns its outcome id, or "—" when `who` holds no
/// such capability (its `syncgroupAdmin` call was refused).
async fn matrix_call(
    call: &str,
    who: &Principal,
    host: &EmbeddedServer,
    name: &SyncgroupName,
    victim: &Fingerprint,
) -> String {
    let calls = who.peer.calls();
    let view = host.node().syncgroup_view(name).unwrap();
    let sg = &view.record.sg;
    match call {
        "Sync.deviceInfo" => outcome(calls.device_info().await),
        "Sync.getTime" => outcome(calls.get_time("").await),
        "Sync.getDeltas (data)" => outcome(data_deltas(&who.peer, who.device).await),
        "Sync.getDeltas (syncgroups)" => {
            let ids = Deltas::Syncgroups(&[sg.id]);
            outcome(
                calls
                    .get_deltas(DB, who.device, ids, accepting_sink())
                    .await,
            )
        }
        "Sync.joinSyncgroupAtAdmin" => outcome(calls.join(join(name, who.device)).await),
        "Sync.publishSyncgroup" => {
            let publish = Publish::new(sg).version(view.record.stamp.version);
            outcome(calls.publish(publish).await)
        }
        "Sync.publishSyncgroup (new name)" => {
            let own = own_syncgroup(who, host);
            outcome_or_proposed(calls.publish(Publish::new(&own)).await)
        }
        "Sync.publishSyncgroup (known id, new name)" => {
            let mut taken = own_syncgroup(who, host);
            taken.id = sg.id;
            taken.name = self::name(&format!("{}/taken-{}", host.peer_address(), who.device));
            outcome_or_proposed(calls.publish(Publish::new(&taken)).await)
        }
        "Sync.publishSyncgroup (publish invite)" => {
            let mut own = own_syncgroup(who, host);
            own.id.0 += 1_000;
            own.name = self::name(&format!("{}/invited-{}", host.peer_address(), who.device));
            let token = host
                .node()
                .mint_publish_invite(db(), None, 1)
                .await
                .unwrap();
            let publish = Publish::new(&own).invite(&token.secret);
            outcome_or_proposed(calls.publish(publish).await)
        }
        "Sync.getDeltas (own proposal)" => {
            outcome(table_deltas(&who.peer, who.device, &format!("p{}", who.device)).await)
        }
        "Sync.haveBlob" => outcome(calls.blob_call("haveBlob").await),
        "Sync.fetchBlob" => outcome(calls.blob_call("fetchBlob").await),
        "Sync.fetchBlobRecipe" => outcome(calls.blob_call("fetchBlobRecipe").await),
        "Sync.fetchChunks" => outcome(calls.blob_call("fetchChunks").await),
        "Sync.syncgroupAdmin" => outcome(calls.syncgroup_admin(name.as_str()).await),
        admin_call => {
            let Some(admin) = &who.admin else {
                return "—".into();
            };
            match admin_call {
                "SyncgroupAdmin.getSyncgroup" => outcome(admin.get_syncgroup().await),
                "SyncgroupAdmin.setSpec" => {
                    let mut spec = sg.spec.clone();
                    spec.description = format!("set by {}", who.peer.fingerprint());
                    outcome(admin.set_spec(&spec).await)
                }
                "SyncgroupAdmin.eject" => outcome(admin.eject(victim.as_str()).await),
                other => panic!("ARCHITECTURE.md names an unknown call {other:?}"),
            }
        }
    }
}

/// A syncgroup `who` makes of its own: named after the host, sharing table `p<device>`, with
/// `who` its creator and only member.
fn own_syncgroup(who: &Principal, host: &EmbeddedServer) -> syncbase::syncgroup::Syncgroup {
    let me = who.peer.identity.fingerprint().clone();
    syncbase::syncgroup::Syncgroup {
        id: syncbase::syncgroup::SyncgroupId(0x5000 + who.device),
        name: name(&format!("{}/own-{}", host.peer_address(), who.device)),
        spec_version: "1".into(),
        spec: Spec {
            perms: Permissions::only(&me),
            prefixes: vec![Scope::new(format!("p{}", who.device), "")],
            ..spec()
        },
        creator: me.clone(),
        db: DB.into(),
        status: syncbase::syncgroup::Status::PublishPending,
        joiners: [(me, member(who.device))].into(),
        former_writers: Default::default(),
        former_lineages: Default::default(),
    }
}

/// `proposed` for a publish taken as a proposal, else the outcome id.
fn outcome_or_proposed(result: Result<bool, capnp::Error>) -> String {
    match result {
        Ok(true) => "proposed".into(),
        other => outcome(other),
    }
}

#[test]
fn every_cell_of_the_capability_matrix_holds() {
    on_local(async {
        let network = MemoryNetwork::new();
        let host = nodes::start(&network, "host:1").await;
        let name = create(&host).await;
        let mut principals = Vec::new();
        for (i, level) in [
            Some(Level::Admin),
            Some(Level::ReadWrite),
            Some(Level::Read),
            None,
            Some(Level::Admin),
        ]
        .into_iter()
        .enumerate()
        {
            let peer = BarePeer::connect(&network, &format!("p{i}:1"), &host).await;
            let device = 100 + i as u64;
            if let Some(level) = level {
                let secret = invite(&host, &name, level).await;
                join_with(&peer, &name, device, &secret).await;
            }
            let admin = match level {
                Some(Level::Admin) => {
                    Some(peer.calls().syncgroup_admin(name.as_str()).await.unwrap())
                }
                _ => None,
            };
            principals.push(Principal {
                peer,
                device,
                admin,
            });
        }
        // A member for the admin to eject, and the revoked principal ejected (it held Admin).
        let victim = BarePeer::connect(&network, "victim:1", &host).await;
        let secret = invite(&host, &name, Level::Read).await;
        join_with(&victim, &name, 200, &secret).await;
        let me = host.node().identity().fingerprint().clone();
        let revoked = principals[4].peer.identity.fingerprint().clone();
        host.node().eject(me, name.clone(), revoked).await.unwrap();
        for who in &principals[..4] {
            assert!(
                host.node()
                    .syncgroup_view(&name)
                    .unwrap()
                    .record
                    .sg
                    .joiners
                    .contains_key(who.peer.identity.fingerprint())
                    || who.admin.is_none()
            );
        }

        let victim = victim.identity.fingerprint().clone();
        let mut mismatches = Vec::new();
        for (call, expected) in documented_matrix() {
            for (who, expected) in principals.iter().zip(&expected) {
                let got = matrix_call(&call, who, &host, &name, &victim).await;
                if &got != expected {
                    mismatches.push(format!(
                        "{call} as principal {}: got {got}, table says {expected}",
                        who.device - 100
                    ));
                }
            }
        }
        assert!(mismatches.is_empty(), "{mismatches:#?}");
    });
}

// ---- Pending state ----

#[test]
fn a_joiner_is_pending_until_it_catches_up_with_the_admin() {
    on_local(async {
        let network = MemoryNetwork::new();
        let host = nodes::start(&network, "h:1").await;
        let joiner = nodes::start(&network, "j:1").await;
        let name = create(&host).await;
        // The admin admits the joiner as an admin, but the joiner hears only the reply: the
        // link is down, so it cannot sync the syncgroup's metadata yet.
        network.set_link("h:1", "j:1", false);
        let secret = invite(&host, &name, Level::Admin).await;
        let jid = joiner.node().identity().fingerprint().clone();
        let reply = host
            .node()
            .join_at_admin(
                jid.clone(),
                name.clone(),
                joiner.node().member_info(),
                Some(secret),
            )
            .await
            .unwrap();
        let version = reply.sg.spec_version.clone();
        joiner.node().join_reply(reply).await.unwrap();
        assert!(
            joiner
                .node()
                .syncgroup_view(&name)
                .unwrap()
                .local
                .pending
                .is_some()
        );

        let mut changed = spec();
        changed.perms = joiner
            .node()
            .syncgroup_view(&name)
            .unwrap()
            .record
            .sg
            .spec
            .perms;
        changed.description = "changed by the joiner".into();
        let third = Fingerprint::parse(&"c".repeat(64)).unwrap();
        let set = joiner
            .node()
            .set_spec(jid.clone(), name.clone(), changed.clone(), version.clone())
            .await;
        assert_eq!(id_of(set), "BadState");
        let admitted = joiner
            .node()
            .join_at_admin(third.clone(), name.clone(), member(300), None)
            .await;
        assert_eq!(id_of(admitted), "BadState");
        let minted = joiner
            .node()
            .mint_invite(name.clone(), Level::Read, None, 1)
            .await;
        assert_eq!(id_of(minted), "BadState");

        network.set_link("h:1", "j:1", true);
        eventually("the joiner to catch up", LIMIT, || {
            joiner
                .node()
                .syncgroup_view(&name)
                .unwrap()
                .local
                .pending
                .is_none()
        })
        .await;
        joiner
            .node()
            .set_spec(jid.clone(), name.clone(), changed, version)
            .await
            .unwrap();
        let invited = joiner
            .node()
            .mint_invite(name.clone(), Level::Read, None, 1)
            .await
            .unwrap();
        joiner
            .node()
            .join_at_admin(third, name.clone(), member(300), Some(invited.secret))
            .await
            .unwrap();
        // The joiner's change reaches the host through syncgroup metadata sync.
        eventually("the spec change to reach the host", LIMIT, || {
            host.node()
                .syncgroup_view(&name)
                .unwrap()
                .record
                .sg
                .spec
                .description
                == "changed by the joiner"
        })
        .await;
    });
}

// ---- Membership drives sync; revocation stops it ----

/// A host "h:1" with syncgroup `h:1/sg`, and a member "m:1" that joined it as a writer.
async fn host_and_writer(
    network: &MemoryNetwork,
) -> (EmbeddedServer, EmbeddedServer, SyncgroupName) {
    let host = nodes::start(network, "h:1").await;
    let member = nodes::start(network, "m:1").await;
    let name = create(&host).await;
    join_by_invite(&host, &member, &name, Level::ReadWrite).await;
    (host, member, name)
}

/// Creates `HOST/suffix` on `host`, sharing all of `table`.
async fn create_for_table(host: &EmbeddedServer, suffix: &str, table: &str) -> SyncgroupName {
    let name = name(&format!("{}/{suffix}", host.peer_address()));
    let spec = Spec {
        prefixes: vec![Scope::new(table, "")],
        ..spec()
    };
    host.node()
        .create_syncgroup(db(), name.clone(), spec)
        .await
        .unwrap();
    name
}

/// Two syncgroups, `sa` (table `t`) and `sb` (table `u`), hosted by `h:1`, each joined as a
/// writer by `m:1` and `o:1`; returns (host, member, other, sb) once a row of `m:1` in `sa`
/// reached both.
async fn three_members_of_two(
    network: &MemoryNetwork,
) -> (
    EmbeddedServer,
    EmbeddedServer,
    EmbeddedServer,
    SyncgroupName,
) {
    let host = nodes::start(network, "h:1").await;
    let member = nodes::start(network, "m:1").await;
    let other = nodes::start(network, "o:1").await;
    let sa = create_for_table(&host, "sa", "t").await;
    let sb = create_for_table(&host, "sb", "u").await;
    for node in [&member, &other] {
        join_by_invite(&host, node, &sa, Level::ReadWrite).await;
        join_by_invite(&host, node, &sb, Level::ReadWrite).await;
    }
    put(&table_t(&member).await, "before", b"1").await.unwrap();
    wait_for_row(
        &table_t(&host).await,
        "before",
        "the member's row at the host",
    )
    .await;
    wait_for_row(
        &table_t(&other).await,
        "before",
        "the member's row at the other",
    )
    .await;
    (host, member, other, sb)
}

/// Rows `from` writes now in `sa` reach every node of `to`, and each of those nodes' own
/// link to `from` stays up without error (not only a link `from` opened).
async fn still_syncs(from: &EmbeddedServer, to: &[&EmbeddedServer], key: &str) {
    for round in 0..2 {
        let key = format!("{key}-{round}");
        put(&table_t(from).await, &key, b"x").await.unwrap();
        for node in to {
            let what = format!(
                "{key} in the syncgroup still shared, at {}",
                node.peer_address()
            );
            wait_for_row(&table_t(node).await, &key, &what).await;
            stays_linked(node, from).await;
        }
    }
}

/// `node`'s link to `peer` is up without error, and stays so for a second (not between two
/// redials).
async fn stays_linked(node: &EmbeddedServer, peer: &EmbeddedServer) {
    let fingerprint = peer.node().identity().fingerprint().clone();
    let link = format!("{}'s link to {}", node.peer_address(), peer.peer_address());
    let up = || {
        node.node()
            .peers()
            .status(&fingerprint)
            .is_some_and(|status| status.connected && status.last_error.is_none())
    };
    eventually(&link, LIMIT, up).await;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let status = node.node().peers().status(&fingerprint);
        assert!(up(), "{link} failed: {status:?}");
    }
}

#[test]
fn leaving_one_syncgroup_keeps_the_others_syncing_both_ways() {
    on_local(async {
        let network = MemoryNetwork::new();
        let (host, member, other, sb) = three_members_of_two(&network).await;
        member.node().leave(sb).await.unwrap();
        still_syncs(&member, &[&host, &other], "from-leaver").await;
        still_syncs(&other, &[&member], "to-leaver").await;
    });
}

/// Found by the simulation (`syncbase sim --membership`): a member that left the only
/// syncgroup it shared with a declared peer refused that peer's syncgroup metadata session,
/// and the refusal ended the whole link, so the peer no longer pulled the declared scopes
/// from it. A session the peer refuses now ends alone.
#[test]
fn a_peer_that_left_the_only_shared_syncgroup_keeps_syncing_its_declared_scopes() {
    on_local(async {
        let network = MemoryNetwork::new();
        let host = nodes::start(&network, "h:1").await;
        let member = nodes::start(&network, "m:1").await;
        nodes::link(&host, &member).await;
        let sg = create_for_table(&host, "su", "u").await;
        join_by_invite(&host, &member, &sg, Level::ReadWrite).await;
        member.node().leave(sg).await.unwrap();
        let member_id = member.node().identity().fingerprint().clone();
        for round in 0..3 {
            let key = format!("after-leaving-{round}");
            put(&table_t(&member).await, &key, b"x").await.unwrap();
            wait_for_row(&table_t(&host).await, &key, "the leaver's declared row").await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let status = host.node().peers().status(&member_id).unwrap();
        assert!(
            status.connected,
            "the host's link to the leaver is down: {status:?}"
        );
    });
}

#[test]
fn an_eject_from_one_syncgroup_keeps_the_others_syncing_both_ways() {
    on_local(async {
        let network = MemoryNetwork::new();
        let (host, member, other, sb) = three_members_of_two(&network).await;
        let me = host.node().identity().fingerprint().clone();
        let mid = member.node().identity().fingerprint().clone();
        host.node().eject(me, sb, mid).await.unwrap();
        still_syncs(&host, &[&member], "to-ejected").await;
        still_syncs(&other, &[&member], "from-other").await;
        still_syncs(&member, &[&host, &other], "from-ejected").await;
    });
}

#[test]
fn a_syncgroup_this_node_lost_no_longer_holds_its_collection_back() {
    on_local(async {
        let network = MemoryNetwork::new();
        let (host, member, name) = host_and_writer(&network).await;
        let member_t = table_t(&member).await;
        put(&member_t, "from-member", b"1").await.unwrap();
        wait_for_row(&table_t(&host).await, "from-member", "the member's row").await;
        let hid = host.node().identity().fingerprint().clone();
        let mid = member.node().identity().fingerprint().clone();
        host.node()
            .eject(hid.clone(), name.clone(), mid)
            .await
            .unwrap();
        eventually("the member to be told it was ejected", LIMIT, || {
            member
                .node()
                .syncgroup_view(&name)
                .is_ok_and(|view| view.local.removed.is_some())
        })
        .await;
        // A commit the host will never see (another table: writes under the lost prefix
        // fail), so the host's last report lags the member's knowledge of the database.
        let member_u = table(&database(member.service(), DB).await.unwrap(), "u")
            .await
            .unwrap();
        put(&member_u, "unshared", b"2").await.unwrap();
        let status = member.node().collection_status(&db()).unwrap();
        assert!(
            status.held_back.iter().all(|held| held.member != hid),
            "the admin of a syncgroup this node lost holds its collection back: {:?}",
            status.held_back
        );
    });
}

#[test]
fn members_sync_and_an_ejected_member_is_cut_off() {
    on_local(async {
        let network = MemoryNetwork::new();
        let (host, member, name) = host_and_writer(&network).await;

        let host_t = table_t(&host).await;
        let member_t = table_t(&member).await;
        put(&host_t, "from-host", b"1").await.unwrap();
        put(&member_t, "from-member", b"2").await.unwrap();
        wait_for_row(&member_t, "from-host", "the host's row").await;
        wait_for_row(&host_t, "from-member", "the member's row").await;

        let me = host.node().identity().fingerprint().clone();
        let mid = member.node().identity().fingerprint().clone();
        let hid = me.clone();
        host.node()
            .eject(me, name.clone(), mid.clone())
            .await
            .unwrap();
        // Its write the host had seen stays valid for members that lack it; later ones do
        // not when they come from the ejected member itself, and do when another member
        // relays them (one that took them before it learned of the eject).
        let device = member.node().store().device();
        let from_itself = host.node().writer_check(&mid, &db()).unwrap();
        assert!(from_itself.allows(device, Generation::FIRST, "t", "from-member"));
        assert!(!from_itself.allows(device, Generation::new(2), "t", "later"));
        let relayed = host.node().writer_check(&hid, &db()).unwrap();
        assert!(relayed.allows(device, Generation::new(2), "t", "later"));
        // Cut off either way: its next session is refused, or the admin's removal notice
        // reaches it first and it stops syncing the syncgroup (then it no longer dials the
        // host for it, and no refusal is ever recorded).
        eventually(
            "the member to be refused or told it was ejected",
            LIMIT,
            || {
                let refused = member
                    .node()
                    .peers()
                    .status(&hid)
                    .and_then(|status| status.last_error)
                    .is_some_and(|error| error.contains("NoAccess"));
                let told = member
                    .node()
                    .syncgroup_view(&name)
                    .is_ok_and(|view| view.local.removed.is_some());
                refused || told
            },
        )
        .await;
        assert!(
            host.node().peers().get(&mid).is_none(),
            "the host still dials the ejected member"
        );
        put(&host_t, "after-eject", b"3").await.unwrap();
        // Whatever it does next (redial and be refused, or stay away), the row never arrives.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(get(&member_t, "after-eject").await.is_none());
        // Its local write under the syncgroup is still its own (it keeps its data).
        assert!(get(&member_t, "from-host").await.is_some());
    });
}

#[test]
fn a_read_only_member_relays_writes_and_cannot_write_itself() {
    on_local(async {
        let network = MemoryNetwork::new();
        let host = nodes::start(&network, "h:1").await;
        let reader = nodes::start(&network, "r:1").await;
        let writer = nodes::start(&network, "w:1").await;
        let name = create(&host).await;
        join_by_invite(&host, &reader, &name, Level::Read).await;
        join_by_invite(&host, &writer, &name, Level::ReadWrite).await;
        let reader_t = table_t(&reader).await;
        let refused = put(&reader_t, "mine", b"x").await.unwrap_err();
        assert!(
            syncbase::rpc::client::error_message(&refused).starts_with("NoAccess:"),
            "{refused:?}"
        );
        // The writer and the host cannot reach each other: the write travels through the reader.
        network.set_link("h:1", "w:1", false);
        let writer_t = table_t(&writer).await;
        put(&writer_t, "relayed", b"y").await.unwrap();
        let host_t = table_t(&host).await;
        wait_for_row(&host_t, "relayed", "the write never reached the host").await;
    });
}

// ---- Bad input ----

#[test]
fn forged_caller_names_are_refused() {
    on_local(async {
        let network = MemoryNetwork::new();
        let host = nodes::start(&network, "h:1").await;
        let name = create(&host).await;
        let peer = BarePeer::connect(&network, "p:1", &host).await;
        let secret = invite(&host, &name, Level::Read).await;
        let forged = host.node().identity().fingerprint().to_string();
        let joined = peer
            .calls()
            .join(join(&name, 5).invite(&secret).claiming(&forged))
            .await;
        assert_eq!(outcome(joined), "NoAccess");
        // The invite was not spent and nobody was added.
        assert_eq!(
            host.node()
                .syncgroup_view(&name)
                .unwrap()
                .record
                .sg
                .joiners
                .len(),
            1
        );
        let own = peer.fingerprint();
        peer.calls()
            .join(join(&name, 5).invite(&secret).claiming(&own))
            .await
            .unwrap();

        assert_eq!(outcome(peer.calls().get_time(&forged).await), "NoAccess");
        assert_eq!(outcome(peer.calls().get_time(&own).await), "ok");
        let view = host.node().syncgroup_view(&name).unwrap();
        let publish = Publish::new(&view.record.sg).claiming(&forged);
        assert_eq!(outcome(peer.calls().publish(publish).await), "NoAccess");
    });
}

#[test]
fn spent_expired_and_foreign_invites_are_refused_and_change_nothing() {
    on_local(async {
        let network = MemoryNetwork::new();
        let host = nodes::start(&network, "h:1").await;
        let name = create(&host).await;
        let before = host.node().syncgroup_view(&name).unwrap();
        let first = BarePeer::connect(&network, "p:1", &host).await;
        let second = BarePeer::connect(&network, "q:1", &host).await;
        let secret = invite(&host, &name, Level::Read).await;
        join_with(&first, &name, 5, &secret).await;
        let joined = second.calls().join(join(&name, 6).invite(&secret)).await;
        assert_eq!(outcome(joined), "NoAccess");

        let expiring = host
            .node()
            .mint_invite(name.clone(), Level::Read, Some(Duration::from_millis(1)), 1)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let calls = second.calls();
        let expired = calls.join(join(&name, 6).invite(&expiring.secret)).await;
        let expired = expired.map(drop);
        assert!(format!("{expired:?}").contains("expired"), "{expired:?}");
        let unknown = "0".repeat(64);
        let joined = calls.join(join(&name, 6).invite(&unknown)).await;
        assert_eq!(outcome(joined), "NoAccess");
        let joined = calls.join(join(&name, 6).invite("not hex")).await;
        assert_eq!(outcome(joined), "InvalidArgument");
        let after = host.node().syncgroup_view(&name).unwrap();
        assert!(
            !after
                .record
                .sg
                .allows(Tag::Read, second.identity.fingerprint())
        );
        assert_eq!(
            after.record.sg.joiners.len(),
            before.record.sg.joiners.len() + 1
        );
        // Too many uses, and invites on an unknown syncgroup.
        let minted = host
            .node()
            .mint_invite(name.clone(), Level::Read, None, 1_000_000)
            .await;
        assert_eq!(id_of(minted), "InvalidArgument");
        let minted = host
            .node()
            .mint_invite(self::name("h:1/none"), Level::Read, None, 1)
            .await;
        assert_eq!(id_of(minted), "NoExist");
    });
}

#[test]
fn malformed_specs_and_names_are_refused_and_create_nothing() {
    on_local(async {
        let network = MemoryNetwork::new();
        let host = nodes::start(&network, "h:1").await;
        let mut cases = Vec::new();
        let mut empty = spec();
        empty.prefixes.clear();
        cases.push(empty);
        let mut duplicate = spec();
        duplicate.prefixes.push(Scope::new("t", ""));
        cases.push(duplicate);
        let mut bad_table = spec();
        bad_table.prefixes = vec![Scope::new("", "p")];
        cases.push(bad_table);
        let mut bad_perms = spec();
        bad_perms
            .perms
            .0
            .entry(Tag::Read)
            .or_default()
            .allowed
            .insert("alice".into());
        cases.push(bad_perms);
        for (i, case) in cases.into_iter().enumerate() {
            let created = host
                .node()
                .create_syncgroup(db(), name(&format!("h:1/bad{i}")), case)
                .await;
            assert_eq!(id_of(created), "InvalidArgument", "case {i}");
        }
        assert!(host.node().list_syncgroups(None).unwrap().is_empty());
        let name = create(&host).await;
        let again = host.node().create_syncgroup(db(), name, spec()).await;
        assert_eq!(id_of(again), "Exist");
        assert_eq!(host.node().list_syncgroups(None).unwrap().len(), 1);
    });
}

#[test]
fn a_publish_of_a_known_name_with_another_id_is_exist() {
    on_local(async {
        let network = MemoryNetwork::new();
        let host = nodes::start(&network, "h:1").await;
        let name = create(&host).await;
        let peer = BarePeer::connect(&network, "p:1", &host).await;
        let mut sg = host.node().syncgroup_view(&name).unwrap().record.sg;
        sg.id.0 ^= 1;
        let publisher: Fingerprint = peer.identity.fingerprint().clone();
        sg.spec.perms = Permissions::only(&publisher);
        sg.creator = publisher;
        let published = peer.calls().publish(Publish::new(&sg)).await;
        assert_eq!(outcome(published), "Exist");
        let kept = host.node().syncgroup_view(&name).unwrap();
        assert_ne!(kept.record.sg.id, sg.id);
        // The reply of a join naming another syncgroup under a known name is refused too.
        let other = JoinReply {
            sg: sg.clone(),
            version: Version(1),
            checkpoint: Default::default(),
        };
        assert!(host.node().join_reply(other).await.is_err());
    });
}

#[test]
fn a_publish_reusing_a_known_id_under_another_name_is_exist_and_the_host_stays_admin() {
    on_local(async {
        let network = MemoryNetwork::new();
        let host = nodes::start(&network, "h:1").await;
        let name = create(&host).await;
        let before = host.node().syncgroup_view(&name).unwrap();
        let stranger = BarePeer::connect(&network, "p:1", &host).await;
        let me = stranger.identity.fingerprint().clone();
        // The host's syncgroup id (as `sg show` prints it), under a name of the stranger's
        // choosing, with the stranger its only member and admin, over the same rows.
        let taken = syncbase::syncgroup::Syncgroup {
            name: self::name("h:1/taken"),
            spec: Spec {
                perms: Permissions::only(&me),
                ..spec()
            },
            creator: me.clone(),
            status: syncbase::syncgroup::Status::PublishPending,
            joiners: [(me, member(7))].into(),
            former_writers: Default::default(),
            former_lineages: Default::default(),
            ..before.record.sg.clone()
        };
        assert_eq!(
            outcome_or_proposed(stranger.calls().publish(Publish::new(&taken)).await),
            "Exist"
        );
        // A publish invite does not make it any better, and is not spent by the refusal.
        let token = host
            .node()
            .mint_publish_invite(db(), None, 1)
            .await
            .unwrap();
        assert_eq!(
            outcome_or_proposed(
                stranger
                    .calls()
                    .publish(Publish::new(&taken).invite(&token.secret))
                    .await
            ),
            "Exist"
        );

        // Nothing changed: no proposal, no second syncgroup, the host's copy as it was, and
        // the stranger still reads nothing.
        assert!(host.node().proposals().unwrap().is_empty());
        assert!(host.node().syncgroup_view(&taken.name).is_err());
        assert_eq!(host.node().syncgroup_view(&name).unwrap(), before);
        assert_eq!(outcome(data_deltas(&stranger, 7).await), "NoAccess");
        // The host is still the admin: it mints invites and a new member joins with one.
        let secret = invite(&host, &name, Level::Read).await;
        let joiner = BarePeer::connect(&network, "q:1", &host).await;
        join_with(&joiner, &name, 8, &secret).await;
        // The invite was not spent: a syncgroup of the stranger's own is taken with it.
        let mut own = taken.clone();
        own.id.0 ^= 0x5a5a;
        own.name = self::name("h:1/own");
        assert_eq!(
            outcome_or_proposed(
                stranger
                    .calls()
                    .publish(Publish::new(&own).invite(&token.secret))
                    .await
            ),
            "ok"
        );
    });
}

// ---- Publishing, spec versions, leaving ----

/// Creates syncgroup `name` (the test spec) through `node`'s app API, published at `host`.
async fn app_create(
    node: &EmbeddedServer,
    name: &str,
    host: Option<&Fingerprint>,
) -> Result<(), capnp::Error> {
    AppSyncgroups::of(node.service())
        .create(DB, name, host, &spec())
        .await
}

#[test]
fn a_pending_proposal_does_not_stop_the_syncgroups_already_shared() {
    on_local(async {
        let network = MemoryNetwork::new();
        let host = nodes::start(&network, "h:1").await;
        let member = nodes::start(&network, "m:1").await;
        let shared = create(&host).await;
        join_by_invite(&host, &member, &shared, Level::ReadWrite).await;
        // The member proposes a second syncgroup, over table u, to the host.
        let hid = host.node().identity().fingerprint().clone();
        let proposed = name("h:1/u");
        let over_u = Spec {
            prefixes: vec![Scope::new("u", "")],
            ..spec()
        };
        AppSyncgroups::of(member.service())
            .create(DB, proposed.as_str(), Some(&hid), &over_u)
            .await
            .unwrap();
        assert_eq!(host.node().proposals().unwrap().len(), 1);
        // Table t keeps syncing both ways while the proposal waits (the member's sessions ask
        // for t and u; the host serves t and leaves u out).
        let (host_t, member_t) = (table_t(&host).await, table_t(&member).await);
        put(&host_t, "from-host", b"1").await.unwrap();
        wait_for_row(
            &member_t,
            "from-host",
            "the host's row while a proposal waits",
        )
        .await;
        put(&member_t, "from-member", b"2").await.unwrap();
        wait_for_row(
            &host_t,
            "from-member",
            "the member's row while a proposal waits",
        )
        .await;
        let member_u = table(&database(member.service(), DB).await.unwrap(), "u")
            .await
            .unwrap();
        put(&member_u, "early", b"3").await.unwrap();
        // Once accepted, u syncs too, both ways, without reconnecting by hand.
        host.node().accept_proposal(proposed).await.unwrap();
        let host_u = table(&database(host.service(), DB).await.unwrap(), "u")
            .await
            .unwrap();
        wait_for_row(&host_u, "early", "the member's u row once accepted").await;
        put(&host_u, "late", b"4").await.unwrap();
        wait_for_row(&member_u, "late", "the host's u row once accepted").await;
    });
}

#[test]
fn a_syncgroup_named_after_another_node_is_published_there() {
    on_local(async {
        let network = MemoryNetwork::new();
        let host = nodes::start(&network, "h:1").await;
        let creator = nodes::start(&network, "c:1").await;
        let name = name("h:1/published");
        let hid = host.node().identity().fingerprint().clone();
        // A host without the database refuses the publish with NoExist.
        let refused = app_create(&creator, name.as_str(), Some(&hid)).await;
        assert_eq!(outcome(refused), "NoExist");
        assert!(creator.node().syncgroup_view(&name).is_err());
        host.node().open_database(&db()).await.unwrap();
        app_create(&creator, name.as_str(), Some(&hid))
            .await
            .unwrap();

        // A publish is an offer: the creator waits, the host holds only a proposal.
        let created = creator.node().syncgroup_view(&name).unwrap();
        let status =
            |node: &EmbeddedServer| node.node().syncgroup_view(&name).unwrap().record.sg.status;
        assert_eq!(
            status(&creator),
            syncbase::syncgroup::Status::PublishPending
        );
        assert!(
            created.record.sg.allows(Tag::Admin, &hid),
            "the host will serve joins"
        );
        assert!(host.node().syncgroup_view(&name).is_err());
        let proposals = host.node().proposals().unwrap();
        assert_eq!(proposals.len(), 1);
        assert!(
            proposals[0].sg.allows(Tag::Admin, &hid) && proposals[0].sg.joiners.contains_key(&hid),
            "the proposal already lists the host as a member and an admin"
        );
        let published = host.node().accept_proposal(name.clone()).await.unwrap();
        assert_eq!(
            published.local.remote_publisher.as_ref(),
            Some(creator.node().identity().fingerprint())
        );
        assert!(host.node().proposals().unwrap().is_empty());
        eventually("the host to catch up with the creator", LIMIT, || {
            host.node()
                .syncgroup_view(&name)
                .unwrap()
                .local
                .pending
                .is_none()
        })
        .await;
        eventually("the host to mark it running everywhere", LIMIT, || {
            [&host, &creator]
                .iter()
                .all(|node| status(node) == syncbase::syncgroup::Status::Running)
        })
        .await;

        // The host now admits a third node, which gets the creator's data.
        let third = nodes::start(&network, "t:1").await;
        join_by_invite(&host, &third, &name, Level::Read).await;
        let creator_t = table_t(&creator).await;
        put(&creator_t, "k", b"v").await.unwrap();
        let third_t = table_t(&third).await;
        wait_for_row(&third_t, "k", "the creator's row never arrived").await;
        // Publishing where the name does not route is refused before anything is created.
        let created = app_create(&creator, "nowhere:1/x", None).await;
        assert_eq!(outcome(created), "InvalidArgument");
        assert!(
            creator
                .node()
                .syncgroup_view(&self::name("nowhere:1/x"))
                .is_err()
        );
        // A host that cannot be reached: ConnFail, and the syncgroup is not left behind.
        let created = app_create(&creator, "nowhere:1/x", Some(&hid)).await;
        assert_eq!(outcome(created), "ConnFail");
        assert!(
            creator
                .node()
                .syncgroup_view(&self::name("nowhere:1/x"))
                .is_err()
        );
    });
}

#[test]
fn a_spec_read_before_a_join_or_an_eject_cannot_be_written_back_over_it() {
    on_local(async {
        let network = MemoryNetwork::new();
        let host = nodes::start(&network, "h:1").await;
        let name = create(&host).await;
        let me = host.node().identity().fingerprint().clone();
        let before_join = host.node().syncgroup_view(&name).unwrap();
        let member = nodes::start(&network, "m:1").await;
        join_by_invite(&host, &member, &name, Level::ReadWrite).await;
        let sg = before_join.record.sg;
        let stale = host
            .node()
            .set_spec(me.clone(), name.clone(), sg.spec, sg.spec_version)
            .await;
        assert_eq!(id_of(stale), "BadVersion");
        let before_eject = host.node().syncgroup_view(&name).unwrap();
        let mid = member.node().identity().fingerprint().clone();
        host.node()
            .eject(me.clone(), name.clone(), mid.clone())
            .await
            .unwrap();
        let sg = before_eject.record.sg;
        let stale = host
            .node()
            .set_spec(me.clone(), name.clone(), sg.spec, sg.spec_version)
            .await;
        assert_eq!(
            id_of(stale),
            "BadVersion",
            "a grant based on the spec before the eject would give the member Read again"
        );
        let now = host.node().syncgroup_view(&name).unwrap();
        assert!(!now.record.sg.allows(Tag::Read, &mid));
    });
}

#[test]
fn a_spec_change_leaving_no_member_an_admin_is_refused() {
    on_local(async {
        let network = MemoryNetwork::new();
        let host = nodes::start(&network, "h:1").await;
        let name = create(&host).await;
        let me = host.node().identity().fingerprint().clone();
        // Admin only for a stranger that never joined: nobody could run the syncgroup.
        let stranger = Fingerprint::parse(&"5".repeat(64)).unwrap();
        let mut spec = host.node().syncgroup_view(&name).unwrap().record.sg.spec;
        spec.perms = Permissions::only(&stranger);
        let refused = host
            .node()
            .set_spec(me.clone(), name.clone(), spec, String::new())
            .await;
        assert_eq!(id_of(refused), "InvalidArgument");
        assert!(
            host.node()
                .syncgroup_view(&name)
                .unwrap()
                .record
                .sg
                .allows(Tag::Admin, &me)
        );
    });
}

#[test]
fn spec_changes_check_the_version_and_keep_the_prefixes() {
    on_local(async {
        let network = MemoryNetwork::new();
        let host = nodes::start(&network, "h:1").await;
        let name = create(&host).await;
        let me = host.node().identity().fingerprint().clone();
        let view = host.node().syncgroup_view(&name).unwrap();
        let mut changed = view.record.sg.spec.clone();
        changed.description = "v2".into();
        let stale = host
            .node()
            .set_spec(me.clone(), name.clone(), changed.clone(), "0123".into())
            .await;
        assert_eq!(id_of(stale), "BadVersion");
        let mut moved = changed.clone();
        moved.prefixes = vec![Scope::new("u", "")];
        let moved = host
            .node()
            .set_spec(me.clone(), name.clone(), moved, String::new())
            .await;
        assert_eq!(id_of(moved), "InvalidArgument");
        let mut no_admin = changed.clone();
        no_admin.perms = Permissions::default();
        let no_admin = host
            .node()
            .set_spec(me.clone(), name.clone(), no_admin, String::new())
            .await;
        assert_eq!(id_of(no_admin), "InvalidArgument");
        assert_eq!(
            host.node().syncgroup_view(&name).unwrap(),
            view,
            "nothing changed"
        );
        let done = host
            .node()
            .set_spec(
                me,
                name.clone(),
                changed,
                view.record.sg.spec_version.clone(),
            )
            .await
            .unwrap();
        assert_ne!(done.record.sg.spec_version, view.record.sg.spec_version);
        assert_eq!(done.record.sg.spec.description, "v2");
    });
}

#[test]
fn removing_read_from_the_permissions_revokes_like_an_eject() {
    on_local(async {
        let network = MemoryNetwork::new();
        let host = nodes::start(&network, "h:1").await;
        let name = create(&host).await;
        let peer = BarePeer::connect(&network, "p:1", &host).await;
        let secret = invite(&host, &name, Level::Read).await;
        join_with(&peer, &name, 7, &secret).await;
        assert_eq!(outcome(peer.calls().get_time("").await), "ok");
        let me = host.node().identity().fingerprint().clone();
        let view = host.node().syncgroup_view(&name).unwrap();
        let mut narrowed = view.record.sg.spec.clone();
        narrowed.perms.revoke(peer.identity.fingerprint());
        host.node()
            .set_spec(me, name.clone(), narrowed, String::new())
            .await
            .unwrap();
        let rejoin = peer.calls().join(join(&name, 7)).await;
        assert_eq!(outcome(rejoin), "NoAccess");
        assert_eq!(outcome(peer.calls().get_time("").await), "NoAccess");
        assert_eq!(outcome(data_deltas(&peer, 7).await), "NoAccess");
    });
}

#[test]
fn leaving_stops_sync_and_keeps_the_data() {
    on_local(async {
        let network = MemoryNetwork::new();
        let (host, member, name) = host_and_writer(&network).await;
        let host_t = table_t(&host).await;
        let member_t = table_t(&member).await;
        put(&host_t, "before", b"1").await.unwrap();
        wait_for_row(&member_t, "before", "row never synced").await;
        let hid = host.node().identity().fingerprint().clone();
        AppSyncgroups::of(member.service())
            .leave(name.as_str())
            .await
            .unwrap();
        assert!(member.node().syncgroup_view(&name).unwrap().local.left);
        assert!(
            member.node().peers().get(&hid).is_none(),
            "the member still dials the host"
        );
        // The member's responder refuses the host too, so nothing flows either way.
        eventually("the host's session to the member to end", LIMIT, || {
            host.node()
                .peers()
                .status(member.node().identity().fingerprint())
                .is_some_and(|status| !status.connected)
        })
        .await;
        put(&host_t, "after", b"2").await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(get(&member_t, "after").await.is_none());
        assert!(get(&member_t, "before").await.is_some(), "local data stays");
        // Writing locally is no longer constrained by the syncgroup.
        put(&member_t, "own", b"3").await.unwrap();
    });
}

#[test]
fn records_count_only_from_devices_of_members_holding_write() {
    on_local(async {
        let network = MemoryNetwork::new();
        let host = nodes::start(&network, "h:1").await;
        let name = create(&host).await;
        for (i, level) in [Level::ReadWrite, Level::Read].into_iter().enumerate() {
            let peer = BarePeer::connect(&network, &format!("p{i}:1"), &host).await;
            let secret = invite(&host, &name, level).await;
            join_with(&peer, &name, 50 + i as u64, &secret).await;
        }
        let stranger = Fingerprint::parse(&"e".repeat(64)).unwrap();
        let check = host.node().writer_check(&stranger, &db()).unwrap();
        assert!(
            check.allows(DeviceId(50), Generation::FIRST, "t", "row"),
            "the writer's device"
        );
        assert!(
            !check.allows(DeviceId(51), Generation::FIRST, "t", "row"),
            "the reader's device"
        );
        assert!(
            !check.allows(DeviceId(52), Generation::FIRST, "t", "row"),
            "an unknown device"
        );
        assert!(
            !check.allows(DeviceId(50), Generation::FIRST, "u", "row"),
            "outside the prefixes"
        );
        let own = host.node().store().device();
        assert!(
            check.allows(own, Generation::FIRST, "t", "row"),
            "the admin itself"
        );
    });
}

#[test]
fn a_leaf_syncs_only_through_a_server_both_ways() {
    on_local(async {
        let network = MemoryNetwork::new();
        let host = nodes::start(&network, "h:1").await;
        let start = |name: &'static str, role| {
            let options = EmbeddedOptions {
                role,
                ..nodes::options(&network, name, EmbeddedStorage::Memory)
            };
            EmbeddedServer::start_with(options)
        };
        let server = start("s:1", Role::Server).await.unwrap();
        let leaf = start("l:1", Role::Leaf).await.unwrap();
        let name = create(&host).await;
        // The server is an admin: a leaf dials admins that are not servers only while no
        // server member is one (`a_leaf_whose_only_admin_is_a_normal_node_settles_...`).
        join_by_invite(&host, &server, &name, Level::Admin).await;
        join_by_invite(&host, &leaf, &name, Level::ReadWrite).await;
        let info = leaf.node().member_info();
        assert!(info.address.is_empty(), "a leaf advertises no address");
        // The leaf is never dialled, and never dials the host: only the server.
        let hid = host.node().identity().fingerprint().clone();
        let sid = server.node().identity().fingerprint().clone();
        assert!(leaf.node().peers().get(&hid).is_none());
        assert!(leaf.node().peers().get(&sid).is_some());

        // A value over 64 KiB: the leaf's pages reach the server over the connection the leaf
        // opened, where only members may send large messages.
        let leaf_t = table_t(&leaf).await;
        let big = vec![7u8; 1 << 20];
        put(&leaf_t, "from-leaf", &big).await.unwrap();
        let host_t = table_t(&host).await;
        wait_for_row(&host_t, "from-leaf", "the leaf's row at the host").await;
        assert_eq!(get(&host_t, "from-leaf").await.as_deref(), Some(&big[..]));
        put(&table_t(&host).await, "from-host", b"2").await.unwrap();
        wait_for_row(&leaf_t, "from-host", "the host's row at the leaf").await;
        let lid = leaf.node().identity().fingerprint().clone();
        assert!(
            !host
                .node()
                .peers()
                .status(&lid)
                .is_some_and(|status| status.connected),
            "the host never linked with the leaf"
        );
    });
}

#[test]
fn syncgroups_invites_and_members_survive_a_restart() {
    on_local(async {
        let network = MemoryNetwork::new();
        let dir = tempfile::tempdir().unwrap();
        let durable = EmbeddedOptions {
            data_dir: Some(dir.path().to_path_buf()),
            ..nodes::options(&network, "h:1", EmbeddedStorage::Lmdb)
        };
        let host = EmbeddedServer::start_with(durable.clone()).await.unwrap();
        let member = nodes::start(&network, "m:1").await;
        let name = create(&host).await;
        join_by_invite(&host, &member, &name, Level::ReadWrite).await;
        let kept = host
            .node()
            .mint_invite(name.clone(), Level::Read, None, 1)
            .await
            .unwrap();
        let before = host.node().syncgroup_view(&name).unwrap();
        drop(host);

        let host = EmbeddedServer::start_with(durable).await.unwrap();
        assert_eq!(host.node().syncgroup_view(&name).unwrap(), before);
        let mid = member.node().identity().fingerprint().clone();
        assert!(
            host.node().peers().get(&mid).is_some(),
            "members are peers again"
        );
        // The member's row written while the host was down arrives once it is back.
        put(&table_t(&member).await, "while-down", b"1")
            .await
            .unwrap();
        wait_for_row(&table_t(&host).await, "while-down", "the member's row").await;
        // The invite minted before the restart still admits one joiner.
        let peer = BarePeer::connect(&network, "p:1", &host).await;
        join_with(&peer, &name, 77, &kept.secret).await;
    });
}
