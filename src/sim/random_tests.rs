//! Randomised runs of the oracle against real stores: four memory stores write, delete, sync
//! pairwise by hand, jump their clocks (an hour ahead, or back), and are backed up and
//! restored from older copies or crash and restart (moving to a new device at once, as the
//! run marker makes a node do at open); once every store has pulled from every other, every check must pass.
//! The checks must accept every correct run, not only the hand-made ones. Nodes 0-2 share
//! table `t`, nodes 2 and 3 only its rows under `a`, so node 0's `a` rows reach node 3
//! through node 2 and node 3's `b` rows stay its own.

use proptest::prelude::*;

use super::check::Share;
use super::harness::*;
use crate::genvec::Scope;

const NODES: usize = 4;

#[derive(Debug, Clone)]
enum Op {
    Write {
        node: usize,
        key: u8,
        delete: bool,
        twice: bool,
    },
    Sync {
        to: usize,
        from: usize,
    },
    Jump {
        node: usize,
        seconds: i64,
    },
    Backup {
        node: usize,
    },
    Restore {
        node: usize,
    },
    Crash {
        node: usize,
    },
}

fn any_op() -> impl Strategy<Value = Op> {
    let node = 0..NODES;
    prop_oneof![
        4 => (node.clone(), 0u8..4, any::<bool>(), prop::bool::weighted(0.2)).prop_map(
            |(node, key, delete, twice)| Op::Write { node, key, delete, twice }
        ),
        4 => (node.clone(), node.clone()).prop_map(|(to, from)| Op::Sync { to, from }),
        1 => (node.clone(), prop_oneof![-120i64..0, 3_500i64..3_700])
            .prop_map(|(node, seconds)| Op::Jump { node, seconds }),
        1 => node.clone().prop_map(|node| Op::Backup { node }),
        1 => node.clone().prop_map(|node| Op::Restore { node }),
        1 => node.prop_map(|node| Op::Crash { node }),
    ]
}

/// Runs `ops`, lets every store pull from every other until nothing moves, and checks.
fn run(ops: &[Op]) -> Result<(), String> {
    let mut sim = Sim::new(NODES);
    sim.shares = vec![
        Share {
            db: db(),
            scope: Scope::new("t", ""),
            nodes: vec![0, 1, 2],
        },
        Share {
            db: db(),
            scope: Scope::new("t", "a"),
            nodes: vec![2, 3],
        },
    ];
    let mut backups = vec![None; NODES];
    for (step, op) in ops.iter().enumerate() {
        match op {
            Op::Write {
                node,
                key,
                delete: remove,
                twice,
            } => {
                let key = format!("{}{}", if key % 2 == 0 { "a" } else { "b" }, key / 2);
                let value = format!("v{step}");
                let mut mutations = vec![if *remove {
                    delete(&key)
                } else {
                    put(&key, &value)
                }];
                if *twice {
                    mutations.push(put(&key, &format!("{value}'")));
                }
                sim.write(*node, &mutations);
            }
            Op::Sync { to, from } if to != from => {
                sim.sync(*to, *from);
            }
            Op::Sync { .. } => {}
            Op::Jump { node, seconds } => sim.times[*node].advance(seconds * SECOND),
            Op::Backup { node } => backups[*node] = Some(copy(&sim.stores[*node])),
            Op::Crash { node } => sim.crash_and_restart(*node),
            Op::Restore { node } => {
                if let Some(backup) = backups[*node].take() {
                    sim.restore(*node, backup);
                }
            }
        }
        for time in &sim.times {
            time.advance(SECOND / 1_000);
        }
    }
    while sim.sync_all_counting() > 0 {}
    sim.check().map_err(|violation| violation.to_string())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn random_runs_synced_by_hand_pass_every_check(ops in prop::collection::vec(any_op(), 1..48)) {
        prop_assert_eq!(run(&ops), Ok(()));
    }
}
