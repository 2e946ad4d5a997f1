//! The security invariant of ARCHITECTURE.md ("Who may widen what a node shares"), as a
//! property: random sequences of remote calls (publish, join, syncgroup metadata versions, spec
//! changes, eject, getDeltas) by a stranger, a reader, a writer, an ejected member and an
//! admin never change node A's trust sets (`Node::trust_sets`: whom it serves which scopes,
//! whose records it accepts) except as an admin of a syncgroup A holds may, and then only
//! inside that syncgroup's prefixes.

use std::collections::BTreeMap;

use proptest::prelude::*;

use syncbase::clock::Hlc;
use syncbase::config::Config;
use syncbase::genvec::{DeviceId, GenVector, Generation, Scope};
use syncbase::identity::Fingerprint;
use syncbase::names::DbName;
use syncbase::node::{Node, PublishRequest, TrustSets};
use syncbase::store::Version;
use syncbase::syncgroup::access::Level;
use syncbase::syncgroup::{
    MemberInfo, Permissions, Spec, Status, Syncgroup, SyncgroupId, SyncgroupName, SyncgroupRecord,
    Tag, VersionStamp,
};

const DB: &str = "D";
const ADDRESS: &str = "a:1";

/// The remote principals: index -> (name, level it joined with; None: never joined).
const PRINCIPALS: [(&str, Option<Level>); 5] = [
    ("admin", Some(Level::Admin)),
    ("writer", Some(Level::ReadWrite)),
    ("reader", Some(Level::Read)),
    ("stranger", None),
    ("ejected", Some(Level::ReadWrite)),
];

fn fingerprint(principal: usize) -> Fingerprint {
    Fingerprint::parse(&format!("{:x}", principal + 1).repeat(64)).unwrap()
}

fn device(principal: usize) -> DeviceId {
    DeviceId(100 + principal as u64)
}

fn db() -> DbName {
    DbName::parse(DB).unwrap()
}

fn sg_name() -> SyncgroupName {
    SyncgroupName::parse(&format!("{ADDRESS}/sg")).unwrap()
}

/// Scopes the calls name: the held syncgroup's, a private table, and all of table T.
fn scope(choice: usize) -> Scope {
    [
        Scope::new("T", "p"),
        Scope::new("priv", ""),
        Scope::new("T", ""),
    ][choice % 3]
        .clone()
}

fn info(principal: usize) -> MemberInfo {
    MemberInfo {
        sync_priority: 0,
        is_server: false,
        device: device(principal),
        address: format!("p{principal}:1"),
        name: String::new(),
    }
}

/// One remote call, by principal `who`.
#[derive(Debug, Clone)]
enum Call {
    /// Publish a syncgroup of the caller's own: a new name, or A's id under a new name, or
    /// A's name; over one scope; with a made-up invite secret or none.
    Publish {
        who: usize,
        kind: usize,
        scope: usize,
        invite: bool,
    },
    /// Join A's syncgroup, with a made-up invite or none.
    Join { who: usize, invite: bool },
    /// A syncgroup metadata version relayed by the caller, written by its own device or, if
    /// `forged`, stamped with the admin's device (records are not signed): granting `grantee`
    /// every tag, adding a prefix, or naming the caller's device as the admin's.
    Version {
        who: usize,
        change: usize,
        grantee: usize,
        forged: bool,
    },
    /// A spec change granting `grantee` `level`.
    SetSpec {
        who: usize,
        grantee: usize,
        level: usize,
    },
    /// Eject `target`.
    Eject { who: usize, target: usize },
    /// Reads: may it read a scope, syncgroup deltas.
    GetDeltas { who: usize, scope: usize },
}

impl Call {
    fn who(&self) -> usize {
        match self {
            Call::Publish { who, .. }
            | Call::Join { who, .. }
            | Call::Version { who, .. }
            | Call::SetSpec { who, .. }
            | Call::Eject { who, .. }
            | Call::GetDeltas { who, .. } => *who,
        }
    }
}

fn call() -> impl Strategy<Value = Call> {
    let who = 0..PRINCIPALS.len();
    prop_oneof![
        (who.clone(), 0..3usize, 0..3usize, any::<bool>()).prop_map(
            |(who, kind, scope, invite)| Call::Publish {
                who,
                kind,
                scope,
                invite
            }
        ),
        (who.clone(), any::<bool>()).prop_map(|(who, invite)| Call::Join { who, invite }),
        (who.clone(), 0..3usize, 0..PRINCIPALS.len(), any::<bool>()).prop_map(
            |(who, change, grantee, forged)| Call::Version {
                who,
                change,
                grantee,
                forged,
            }
        ),
        (who.clone(), 0..PRINCIPALS.len(), 0..3usize).prop_map(|(who, grantee, level)| {
            Call::SetSpec {
                who,
                grantee,
                level,
            }
        }),
        (who.clone(), 0..PRINCIPALS.len()).prop_map(|(who, target)| Call::Eject { who, target }),
        (who, 0..3usize).prop_map(|(who, scope)| Call::GetDeltas { who, scope }),
    ]
}

/// Node A: it created syncgroup `a:1/sg` sharing `T/p`, every principal but the stranger
/// joined it with an invite at its level, and the last one was ejected.
async fn node_a(dir: &std::path::Path) -> Node {
    let mut config = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    config.storage.backend = "memory".into();
    let node = Node::open(&config).unwrap();
    node.set_peer_address(ADDRESS.into());
    let spec = Spec {
        description: String::new(),
        perms: Permissions::default(),
        prefixes: vec![Scope::new("T", "p")],
        mount_tables: vec![],
        is_private: false,
    };
    node.create_syncgroup(db(), sg_name(), spec).await.unwrap();
    for (principal, (_, level)) in PRINCIPALS.iter().enumerate() {
        let Some(level) = level else { continue };
        let token = node.mint_invite(sg_name(), *level, None, 1).await.unwrap();
        node.join_at_admin(
            fingerprint(principal),
            sg_name(),
            info(principal),
            Some(token.secret),
        )
        .await
        .unwrap();
    }
    let me = node.identity().fingerprint().clone();
    node.eject(me, sg_name(), fingerprint(4)).await.unwrap();
    node
}

/// A syncgroup of `who`'s own, as a publish would carry it.
fn own_syncgroup(who: usize, kind: usize, scope_choice: usize, a: &Syncgroup) -> Syncgroup {
    let me = fingerprint(who);
    let mut sg = Syncgroup {
        id: SyncgroupId(0x7000 + who as u64),
        name: SyncgroupName::parse(&format!("{ADDRESS}/own-{who}")).unwrap(),
        spec_version: "1".into(),
        spec: Spec {
            description: String::new(),
            perms: Permissions::only(&me),
            prefixes: vec![scope(scope_choice)],
            mount_tables: vec![],
            is_private: false,
        },
        creator: me.clone(),
        db: DB.into(),
        status: Status::PublishPending,
        joiners: BTreeMap::from([(me, info(who))]),
        former_writers: GenVector::new(),
        former_lineages: Default::default(),
    };
    match kind {
        0 => {}
        1 => sg.id = a.id,
        _ => sg.name = a.name.clone(),
    }
    sg
}

/// A version of A's syncgroup by `writer`'s device, changed as `change` says for `who`.
fn version_by(
    who: usize,
    writer: usize,
    change: usize,
    grantee: usize,
    current: &Syncgroup,
) -> SyncgroupRecord {
    let mut sg = current.clone();
    match change {
        0 => sg.spec.perms.grant(Level::Admin, &fingerprint(grantee)),
        1 => sg.spec.prefixes.push(Scope::new("priv", "")),
        _ => {
            let admin = fingerprint(0);
            sg.joiners.insert(admin, info(who));
            sg.spec.perms.grant(Level::Admin, &fingerprint(who));
        }
    }
    SyncgroupRecord {
        stamp: VersionStamp {
            device: device(writer),
            generation: Generation::new(1_000),
            hlc: Hlc {
                wall_nanos: i64::MAX / 2,
                logical: 0,
            },
            version: Version(0xabc + who as u64),
        },
        sg,
    }
}

/// Makes the call; its outcome does not matter, only what it changed.
async fn make(node: &Node, call: &Call) {
    // No call removes A's syncgroup: A stays its admin (no principal ejects A).
    let a = node.syncgroup_view(&sg_name()).unwrap().record.sg;
    let secret = |made_up: bool| made_up.then(|| "ab".repeat(32));
    match *call {
        Call::Publish {
            who,
            kind,
            scope,
            invite,
        } => {
            let request = PublishRequest {
                publisher: fingerprint(who),
                sg: own_syncgroup(who, kind, scope, &a),
                version: Version(1),
                checkpoint: GenVector::new(),
                invite_secret: secret(invite),
            };
            let _ = node.accept_publish(request).await;
        }
        Call::Join { who, invite } => {
            let _ = node
                .join_at_admin(fingerprint(who), sg_name(), info(who), secret(invite))
                .await;
        }
        Call::Version {
            who,
            change,
            grantee,
            forged,
        } => {
            let writer = if forged { 0 } else { who };
            let record = version_by(who, writer, change, grantee, &a);
            let knowledge = [(a.id, GenVector::new())].into();
            let sender = fingerprint(who);
            let _ = node
                .apply_syncgroups(db(), sender, vec![record], knowledge)
                .await;
        }
        Call::SetSpec {
            who,
            grantee,
            level,
        } => {
            let mut spec = a.spec.clone();
            let level = [Level::Read, Level::ReadWrite, Level::Admin][level];
            spec.perms.grant(level, &fingerprint(grantee));
            let _ = node
                .set_spec(fingerprint(who), sg_name(), spec, String::new())
                .await;
        }
        Call::Eject { who, target } => {
            let _ = node
                .eject(fingerprint(who), sg_name(), fingerprint(target))
                .await;
        }
        Call::GetDeltas { who, scope: choice } => {
            let _ = node.may_read_scope(&fingerprint(who), &db(), &scope(choice));
            let wanted = [(a.id, GenVector::new())].into();
            let _ = node.syncgroup_deltas(&fingerprint(who), &db(), &wanted);
        }
    }
}

/// Whether `who` held Admin in A's copy of its syncgroup.
fn is_admin(node: &Node, who: usize) -> bool {
    node.syncgroup_view(&sg_name())
        .is_ok_and(|view| !view.local.left && view.record.sg.allows(Tag::Admin, &fingerprint(who)))
}

/// Who made a call, as the invariant sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    /// An admin of A's syncgroup: may change what A shares or accepts inside its prefixes.
    Admin,
    /// Joining with permissions an admin gave it earlier: may add its own device as a writer
    /// (what the admin's grant already allowed), inside the prefixes.
    PermittedJoiner(DeviceId),
    /// Anyone else: changes nothing.
    Other,
}

fn standing(node: &Node, call: &Call) -> Standing {
    let who = call.who();
    if is_admin(node, who) {
        return Standing::Admin;
    }
    let permitted = node
        .syncgroup_view(&sg_name())
        .is_ok_and(|view| view.record.sg.allows(Tag::Read, &fingerprint(who)));
    match call {
        Call::Join { .. } if permitted => Standing::PermittedJoiner(device(who)),
        _ => Standing::Other,
    }
}

/// Checks one step: unchanged sets, or changes inside the held syncgroup's prefixes made by
/// one of its admins (or a joiner realising an admin's earlier grant).
fn check_step(before: &TrustSets, after: &TrustSets, standing: Standing, call: &Call) {
    let changed = before.changed_scopes(after);
    if standing == Standing::Other {
        assert!(
            changed.is_empty(),
            "{call:?} by a non-admin changed what A shares or accepts: {changed:?}"
        );
        return;
    }
    let held = Scope::new("T", "p");
    for (db, scope) in changed {
        assert!(
            db == DB && held.contains(&scope),
            "{call:?} by {standing:?} changed {db}:{scope}, outside the syncgroup's prefixes"
        );
    }
    if let Standing::PermittedJoiner(joiner) = standing {
        assert_eq!(
            before.shares, after.shares,
            "{call:?} changed whom A serves"
        );
        let added: Vec<_> = after.accepts.difference(&before.accepts).collect();
        assert!(
            added.iter().all(|(writer, ..)| *writer == joiner),
            "{call:?} made A accept another writer: {added:?}"
        );
    }
}

/// Runs `body` on a fresh current-thread runtime (node writes use its blocking pool).
fn block_on(body: impl std::future::Future<Output = ()>) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(body);
}

fn run(calls: Vec<Call>) {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let node = node_a(dir.path()).await;
        assert!(node.proposals().unwrap().is_empty());
        for call in &calls {
            let before = node.trust_sets().unwrap();
            let standing = standing(&node, call);
            make(&node, call).await;
            check_step(&before, &node.trust_sets().unwrap(), standing, call);
        }
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn no_remote_call_widens_what_a_node_shares_or_accepts(
        calls in proptest::collection::vec(call(), 1..16)
    ) {
        run(calls);
    }
}

/// The cases the issue reported, pinned: a stranger's, a reader's and an ejected member's
/// publish over A's rows, and a publish reusing A's syncgroup id, change nothing.
#[test]
fn publishes_by_strangers_readers_and_ejected_members_change_nothing() {
    let mut calls = Vec::new();
    for who in [2, 3, 4] {
        for kind in 0..3 {
            for scope in 0..3 {
                calls.push(Call::Publish {
                    who,
                    kind,
                    scope,
                    invite: false,
                });
            }
        }
    }
    run(calls);
}

/// Proposals cost the host storage, so strangers get a bounded amount: a few per publisher,
/// a cap in all, each of bounded size; past that `ResourceExhausted`, and nothing is stored.
#[test]
fn proposals_are_bounded_per_publisher_in_all_and_in_size() {
    use syncbase::syncgroup::proposal::{MAX_PROPOSALS, MAX_PROPOSALS_PER_PUBLISHER};
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let node = node_a(dir.path()).await;
        let a = node.syncgroup_view(&sg_name()).unwrap().record.sg;
        let propose = |publisher: usize, n: usize| {
            let mut sg = own_syncgroup(3, 0, 1, &a);
            let me = Fingerprint::parse(&format!("{publisher:064x}")).unwrap();
            sg.id = SyncgroupId(0x10_0000 + (publisher * 100 + n) as u64);
            sg.name = SyncgroupName::parse(&format!("{ADDRESS}/p{publisher}-{n}")).unwrap();
            sg.spec.perms = Permissions::only(&me);
            PublishRequest {
                publisher: me,
                sg,
                version: Version(1),
                checkpoint: GenVector::new(),
                invite_secret: None,
            }
        };
        for n in 0..MAX_PROPOSALS_PER_PUBLISHER {
            node.accept_publish(propose(1, n)).await.unwrap();
        }
        let error = node.accept_publish(propose(1, 99)).await.unwrap_err();
        assert_eq!(error.id(), "ResourceExhausted", "{error}");
        let mut publisher = 2;
        while node.proposals().unwrap().len() < MAX_PROPOSALS {
            node.accept_publish(propose(publisher, 0)).await.unwrap();
            publisher += 1;
        }
        let error = node
            .accept_publish(propose(publisher, 0))
            .await
            .unwrap_err();
        assert_eq!(error.id(), "ResourceExhausted", "{error}");
        assert_eq!(node.proposals().unwrap().len(), MAX_PROPOSALS);

        // One oversized proposal (many members) is refused on its own.
        node.reject_proposal(propose(1, 0).sg.name).await.unwrap();
        let mut big = propose(1, 0);
        for i in 0..2_000u64 {
            let member = Fingerprint::parse(&format!("{:064x}", 0xbeef_0000 + i)).unwrap();
            big.sg.joiners.insert(member, info(10 + i as usize));
        }
        let error = node.accept_publish(big).await.unwrap_err();
        assert_eq!(error.id(), "ResourceExhausted", "{error}");
        assert_eq!(node.proposals().unwrap().len(), MAX_PROPOSALS - 1);
    });
}

/// Syncgroup knowledge is a claim like a version: from a non-admin it would hide later
/// versions (an eject) or end a pending state early, so only an admin's is merged.
#[test]
fn syncgroup_knowledge_from_a_non_admin_is_not_merged() {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let node = node_a(dir.path()).await;
        let id = node.syncgroup_view(&sg_name()).unwrap().record.sg.id;
        let forged = GenVector::from_iter([(device(0), Generation::new(1_000_000_000_000))]);
        let known = || node.syncgroup_view(&sg_name()).unwrap().local.knowledge;
        let before = known();
        for (who, (name, _)) in PRINCIPALS.iter().enumerate().skip(1) {
            let claim = [(id, forged.clone())].into();
            node.apply_syncgroups(db(), fingerprint(who), vec![], claim)
                .await
                .unwrap();
            assert_eq!(known(), before, "{name} moved A's knowledge");
        }
        // The admin's knowledge is taken.
        let claim = [(id, forged.clone())].into();
        node.apply_syncgroups(db(), fingerprint(0), vec![], claim)
            .await
            .unwrap();
        assert!(known().dominates(&forged));
    });
}
