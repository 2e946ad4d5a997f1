//! A randomised run of one syncgroup's members under faults: members write and delete, links
//! flap, the admin ejects members and they join again, and members restart from an older copy
//! of their store (a restored backup). When the faults stop and every member is back, all
//! members must hold the same rows (convergence), and every acknowledged write must be
//! visible unless a later write by the same writer replaced it (no acknowledged write lost).
//!
//! Each member writes its own keys (`n{i}-k{j}`), so the write that must survive for a key is
//! the last one its writer acknowledged; keys every member writes (`shared-k{j}`) exercise
//! concurrent writes and are checked for convergence only.
//!
//! `SYNCBASE_MEMBER_SEEDS=N` runs N seeds (default 20). A failure names its seed and step.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use syncbase::embedded::{EmbeddedOptions, EmbeddedServer, EmbeddedStorage};
use syncbase::rpc::transport::MemoryNetwork;
use syncbase::syncgroup::access::Level;

use common::members::{self, copy_dir, create_syncgroup, join_by_invite};
use common::rows::{Rng, commit, digest, read};
use common::{nodes, on_local};

/// How long the run waits for the members to converge once faults stop.
const SETTLE: Duration = Duration::from_secs(60);

/// One member: its running node (None while stopped), its data directory, and the copy of
/// that directory taken earlier, if any.
struct Member {
    name: String,
    dir: PathBuf,
    node: Option<EmbeddedServer>,
    backup: Option<PathBuf>,
    ejected: bool,
}

impl Member {
    fn node(&self) -> &EmbeddedServer {
        self.node.as_ref().expect("member running")
    }
}

fn member_options(network: &MemoryNetwork, name: &str, dir: &Path) -> EmbeddedOptions {
    EmbeddedOptions {
        data_dir: Some(dir.to_path_buf()),
        ..nodes::options(network, name, EmbeddedStorage::Lmdb)
    }
}

async fn start_member(network: &MemoryNetwork, name: &str, dir: &Path) -> EmbeddedServer {
    EmbeddedServer::start_with(member_options(network, name, dir))
        .await
        .expect("member starts")
}

/// Stops a member's node and waits until it has let go of its store.
async fn stop(member: &mut Member) {
    members::stop(member.node.take().expect("member running")).await;
}

/// Every member's own keys as its last acknowledged write left them.
type Expected = BTreeMap<String, Option<String>>;

fn holds(node: &EmbeddedServer, expected: &Expected, keys: impl Fn(&str) -> bool) -> bool {
    expected
        .iter()
        .filter(|(key, _)| keys(key))
        .all(|(key, value)| read(node, key) == *value)
}

fn set_links(network: &MemoryNetwork, members: &[Member], up: bool) {
    for a in members {
        for b in members {
            network.set_link(&a.name, &b.name, up);
        }
    }
}

/// Waits until `done` holds for the members, failing with what each one lacks after
/// [`SETTLE`].
async fn settle(
    what: &str,
    members: &[Member],
    expected: &Expected,
    done: impl Fn(&[Member]) -> bool,
) {
    let deadline = std::time::Instant::now() + SETTLE;
    while !done(members) {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            diagnose(members, expected)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What each member lacks, and its view of its peers, for a failed run.
fn diagnose(members: &[Member], expected: &Expected) -> String {
    let mut report = String::new();
    for member in members {
        let node = member.node();
        report += &format!(
            "{} (device {:016x}, digest {:016x}, ejected {}):\n",
            member.name,
            node.node().store().device().0,
            digest(node),
            member.ejected
        );
        for (key, value) in expected {
            let held = read(node, key);
            if held != *value {
                report += &format!("  {key}: holds {held:?}, expected {value:?}\n");
            }
        }
        for (peer, status) in node.node().peers().list() {
            report += &format!(
                "  peer {}: connected {}, received {}, refused {}, last error {:?}\n",
                peer.address,
                status.connected,
                status.records_received,
                status.records_refused,
                status.last_error
            );
        }
    }
    report
}

async fn random_run(seed: u64) {
    let mut rng = Rng::new(seed);
    let network = MemoryNetwork::new();
    let root = tempfile::tempdir().unwrap();
    let count = 3 + rng.below(2);
    let mut members = Vec::new();
    for i in 0..count {
        let name = format!("n{i}:1");
        let dir = root.path().join(&name);
        let node = start_member(&network, &name, &dir).await;
        members.push(Member {
            name,
            dir,
            node: Some(node),
            backup: None,
            ejected: false,
        });
    }
    let sg = create_syncgroup(members[0].node(), "sg", "t").await;
    for member in &members[1..] {
        join_by_invite(members[0].node(), member.node(), &sg, Level::ReadWrite).await;
    }
    let mut expected = Expected::new();
    let mut acknowledged = 0;
    for step in 0..40 {
        let at = |what: &str| format!("seed {seed} step {step}: {what}");
        match rng.below(12) {
            0 | 1 => {
                let (i, j) = (rng.below(count), rng.below(count));
                let up = rng.below(2) == 0;
                network.set_link(&members[i].name, &members[j].name, up);
            }
            2 if count > 1 => {
                let i = 1 + rng.below(count - 1);
                let host = members[0].node();
                let me = host.node().identity().fingerprint().clone();
                let fingerprint = members[i].node().node().identity().fingerprint().clone();
                if !members[i].ejected {
                    host.node()
                        .eject(me, sg.clone(), fingerprint)
                        .await
                        .unwrap_or_else(|e| panic!("{}", at(&format!("eject: {e}"))));
                    members[i].ejected = true;
                } else {
                    network.set_link(&members[0].name, &members[i].name, true);
                    join_by_invite(members[0].node(), members[i].node(), &sg, Level::ReadWrite)
                        .await;
                    members[i].ejected = false;
                }
            }
            3 => {
                // A backup: stop, copy the data directory, start again.
                let i = rng.below(count);
                let member = &mut members[i];
                stop(member).await;
                let backup = root.path().join(format!("{}-backup-{step}", member.name));
                copy_dir(&member.dir, &backup);
                member.backup = Some(backup);
                member.node = Some(start_member(&network, &member.name, &member.dir).await);
            }
            4 => {
                // A restore from the backup, once another member holds this one's writes
                // (writes only on a lost disk are not the protocol's to keep).
                let i = rng.below(count);
                let Some(backup) = members[i].backup.take() else {
                    continue;
                };
                if members[i].ejected || i == 0 {
                    members[i].backup = Some(backup);
                    continue;
                }
                set_links(&network, &members, true);
                let own = format!("n{i}-");
                let held = |members: &[Member]| {
                    holds(members[0].node(), &expected, |key| key.starts_with(&own))
                };
                settle(
                    &at("the host holds the member's writes"),
                    &members,
                    &expected,
                    held,
                )
                .await;
                let member = &mut members[i];
                stop(member).await;
                std::fs::remove_dir_all(&member.dir).unwrap();
                copy_dir(&backup, &member.dir);
                member.node = Some(start_member(&network, &member.name, &member.dir).await);
            }
            _ => {
                let i = rng.below(count);
                let own = rng.below(3) != 0;
                let key = if own {
                    format!("n{i}-k{}", rng.below(4))
                } else {
                    format!("shared-k{}", rng.below(3))
                };
                let value = (rng.below(4) != 0).then(|| format!("seed {seed} step {step} n{i}"));
                if commit(members[i].node(), &key, value.as_deref())
                    .await
                    .is_ok()
                {
                    acknowledged += 1;
                    if own {
                        expected.insert(key, value);
                    }
                }
            }
        }
        if rng.below(3) == 0 {
            tokio::time::sleep(Duration::from_millis(rng.below(20) as u64)).await;
        }
    }
    set_links(&network, &members, true);
    for i in 1..count {
        if members[i].ejected {
            join_by_invite(members[0].node(), members[i].node(), &sg, Level::ReadWrite).await;
            members[i].ejected = false;
        }
    }
    let converged = |members: &[Member]| {
        let digests: std::collections::BTreeSet<_> =
            members.iter().map(|m| digest(m.node())).collect();
        digests.len() == 1 && members.iter().all(|m| holds(m.node(), &expected, |_| true))
    };
    let what = format!(
        "seed {seed}: {count} members converge on every acknowledged write ({acknowledged} writes)"
    );
    settle(&what, &members, &expected, converged).await;
    for member in &members {
        for (key, value) in &expected {
            assert_eq!(
                read(member.node(), key),
                *value,
                "seed {seed}: {} lost the last acknowledged write of {key}",
                member.name
            );
        }
    }
}

#[test]
fn members_joining_ejected_and_restored_converge_without_losing_a_write() {
    let seeds: u64 = std::env::var("SYNCBASE_MEMBER_SEEDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    on_local(async {
        for seed in 0..seeds {
            random_run(seed).await;
        }
    });
}
