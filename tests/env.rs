//! A node opened with an environment (`Node::open_with(config, network, env)`) reads time and
//! draws randomness only through it: invites expire by its clock, proposals are stamped with
//! it, and two nodes opened with the same seed make the same ids, versions and secrets.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use syncbase::clock::ManualTime;
use syncbase::config::Config;
use syncbase::env::Env;
use syncbase::genvec::{DeviceId, GenVector, Scope};
use syncbase::identity::Fingerprint;
use syncbase::names::DbName;
use syncbase::node::{Node, PublishOutcome, PublishRequest};
use syncbase::rpc::transport::Network;
use syncbase::store::Version;
use syncbase::syncgroup::access::Level;
use syncbase::syncgroup::{
    MemberInfo, Permissions, Spec, Status, Syncgroup, SyncgroupId, SyncgroupName,
};

const SECOND: i64 = 1_000_000_000;
const START: i64 = 1_700_000_000 * SECOND;
const ADDRESS: &str = "a:1";

fn db() -> DbName {
    DbName::parse("db").unwrap()
}

fn sg_name(suffix: &str) -> SyncgroupName {
    SyncgroupName::parse(&format!("{ADDRESS}/{suffix}")).unwrap()
}

fn fingerprint(who: u64) -> Fingerprint {
    Fingerprint::parse(&format!("{who:x}").repeat(64)).unwrap()
}

fn info(who: u64) -> MemberInfo {
    MemberInfo {
        sync_priority: 0,
        is_server: false,
        device: DeviceId(100 + who),
        address: format!("p{who}:1"),
        name: String::new(),
    }
}

fn spec(perms: Permissions) -> Spec {
    Spec {
        description: String::new(),
        perms,
        prefixes: vec![Scope::new("t", "")],
        mount_tables: vec![],
        is_private: false,
    }
}

/// A memory-backed node in `dir`, opened in `Env::seeded(seed, time)`, whose peer address
/// is [`ADDRESS`] (so syncgroups named `a:1/...` are hosted here).
fn node(dir: &Path, seed: u64, time: &ManualTime) -> Node {
    let mut config = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    config.storage.backend = "memory".into();
    let env = Env::seeded(seed, Arc::new(time.clone()));
    let node = Node::open_with(&config, Network::Tcp, env).unwrap();
    node.set_peer_address(ADDRESS.into());
    node
}

/// What a seeded node draws: its device id, a syncgroup's id and spec version, the stamp
/// version of its first metadata version, and two invite secrets.
async fn draws(seed: u64) -> (DeviceId, SyncgroupId, String, Version, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let time = ManualTime::new(START);
    let node = node(dir.path(), seed, &time);
    let view = node
        .create_syncgroup(db(), sg_name("sg"), spec(Permissions::default()))
        .await
        .unwrap();
    let join = node
        .mint_invite(sg_name("sg"), Level::Read, None, 1)
        .await
        .unwrap();
    let publish = node.mint_publish_invite(db(), None, 1).await.unwrap();
    (
        node.store().device(),
        view.record.sg.id,
        view.record.sg.spec_version,
        view.record.stamp.version,
        join.secret,
        publish.secret,
    )
}

#[tokio::test]
async fn two_nodes_opened_with_the_same_seed_make_the_same_ids_versions_and_secrets() {
    let first = draws(7).await;
    assert_eq!(first, draws(7).await);
    let other = draws(8).await;
    assert_ne!(first.0, other.0);
    assert_ne!(first.1, other.1);
    assert_ne!(first.4, other.4);
}

#[tokio::test]
async fn node_env_is_the_environment_it_was_opened_with() {
    let dir = tempfile::tempdir().unwrap();
    let time = ManualTime::new(START);
    let node = node(dir.path(), 1, &time);
    assert_eq!(node.env().now_nanos(), START);
    time.advance(3 * SECOND);
    assert_eq!(node.env().now_nanos(), START + 3 * SECOND);
    assert_eq!(node.store().clock().now().wall_nanos, START + 3 * SECOND);
}

#[tokio::test]
async fn invite_expiry_follows_the_environments_clock() {
    let dir = tempfile::tempdir().unwrap();
    let time = ManualTime::new(START);
    let node = node(dir.path(), 3, &time);
    node.create_syncgroup(db(), sg_name("sg"), spec(Permissions::default()))
        .await
        .unwrap();
    let token = node
        .mint_invite(sg_name("sg"), Level::Read, Some(Duration::from_secs(60)), 3)
        .await
        .unwrap();
    time.advance(60 * SECOND);
    node.join_at_admin(
        fingerprint(1),
        sg_name("sg"),
        info(1),
        Some(token.secret.clone()),
    )
    .await
    .unwrap();
    time.advance(1);
    let error = node
        .join_at_admin(fingerprint(2), sg_name("sg"), info(2), Some(token.secret))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("NoAccess:") && error.contains("expired"),
        "{error}"
    );
}

/// A syncgroup of database `db` published here by `publisher`.
fn published(publisher: &Fingerprint, suffix: &str) -> PublishRequest {
    let sg = Syncgroup {
        id: SyncgroupId(0x5000),
        name: sg_name(suffix),
        spec_version: "1".into(),
        spec: spec(Permissions::only(publisher)),
        creator: publisher.clone(),
        db: db().as_str().into(),
        status: Status::PublishPending,
        joiners: BTreeMap::from([(publisher.clone(), info(9))]),
        former_writers: GenVector::new(),
        former_lineages: Default::default(),
    };
    PublishRequest {
        publisher: publisher.clone(),
        sg,
        version: Version(1),
        checkpoint: GenVector::new(),
        invite_secret: None,
    }
}

#[tokio::test]
async fn publish_invite_expiry_and_proposal_times_follow_the_environments_clock() {
    let dir = tempfile::tempdir().unwrap();
    let time = ManualTime::new(START);
    let node = node(dir.path(), 4, &time);
    let publisher = fingerprint(9);
    let token = node
        .mint_publish_invite(db(), Some(Duration::from_secs(10)), 2)
        .await
        .unwrap();
    time.advance(11 * SECOND);
    let late = PublishRequest {
        invite_secret: Some(token.secret),
        ..published(&publisher, "late")
    };
    let error = node.accept_publish(late).await.unwrap_err().to_string();
    assert!(
        error.starts_with("NoAccess:") && error.contains("expired"),
        "{error}"
    );
    let outcome = node
        .accept_publish(published(&publisher, "offer"))
        .await
        .unwrap();
    assert!(matches!(outcome, PublishOutcome::Proposed), "{outcome:?}");
    let proposals = node.proposals().unwrap();
    assert_eq!(proposals.len(), 1);
    assert_eq!(proposals[0].received_nanos, START + 11 * SECOND);
}

/// The engine's sources, without their `#[cfg(test)]` tail: every file of `store`,
/// `syncgroup`, `sync` and `node`, and the leaves they use.
fn engine_sources() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files: Vec<_> = ["clock.rs", "genvec.rs", "retry.rs", "names.rs", "paging.rs"]
        .iter()
        .map(|file| root.join(file))
        .collect();
    for dir in ["store", "syncgroup", "sync", "node"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.ends_with(".rs") && !name.ends_with("tests.rs") {
                files.push(path);
            }
        }
    }
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or("").to_owned();
            (path.display().to_string(), code)
        })
        .collect()
}

#[test]
fn the_engine_reads_time_and_draws_randomness_only_through_the_env() {
    let forbidden = [
        "getrandom",
        "SystemTime::now",
        "Instant::now",
        "OsRandom",
        "Clock::system",
        "initiator::now_nanos",
    ];
    let sources = engine_sources();
    assert!(sources.len() > 20, "found {} engine files", sources.len());
    let mut found = Vec::new();
    for (path, code) in &sources {
        // The runtime's clock is the one timer the engine uses (`tokio::time`): virtual under
        // the simulation's paused runtime, so it is an effect the caller injects.
        let code = code.replace("tokio::time::Instant::now", "");
        for pattern in forbidden {
            if code.contains(pattern) {
                found.push(format!("{path}: {pattern}"));
            }
        }
    }
    // The one reading of the OS clock the engine keeps is the `TimeSource` it is handed.
    found.retain(|hit| !hit.ends_with("clock.rs: SystemTime::now"));
    assert!(found.is_empty(), "bypasses of the env: {found:#?}");
}
