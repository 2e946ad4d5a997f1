//! The deterministic simulation in CI (issues 11 and 12): many seeds of five nodes with
//! faults and history collection after every step on every node must pass every check
//! (`sim::check`), and a seed must replay event for event; fewer seeds run without
//! collection, and without faults. A failing seed prints itself and the command that
//! replays it (`syncbase sim --seed N`).
//!
//! `SYNCBASE_SIM_SEEDS` sets how many seeds the main sweep runs (default 200).

use syncbase::sim::{SimConfig, run, sweep};

fn seeds() -> u64 {
    std::env::var("SYNCBASE_SIM_SEEDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(200)
}

fn assert_all_passed(found: &syncbase::sim::Sweep) {
    let failures: Vec<String> = found.failures.iter().map(ToString::to_string).collect();
    assert!(
        failures.is_empty(),
        "{} seeds failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn seeds_of_five_nodes_joining_leaving_and_ejected_with_partitions_crashes_restores_clock_jumps_and_collection_all_pass()
 {
    let config = SimConfig::default();
    assert!(config.collect && config.faults && config.membership);
    let found = sweep(0..seeds(), &config, 2);
    assert_all_passed(&found);
    eprintln!(
        "{} seeds passed in {:.1} s ({:.0} seeds per minute)",
        found.passed,
        found.elapsed.as_secs_f64(),
        found.seeds_per_minute()
    );
}

#[test]
fn sixteen_nodes_and_three_nodes_converge_too() {
    for (nodes, seeds) in [(3, 1000..1004), (16, 1000..1001)] {
        let config = SimConfig {
            nodes,
            operations: 100,
            ..SimConfig::default()
        };
        assert_all_passed(&sweep(seeds, &config, 1));
    }
}

#[test]
fn runs_with_node_0_alone_in_the_syncgroup_converge() {
    let config = SimConfig {
        membership: false,
        ..SimConfig::default()
    };
    assert_all_passed(&sweep(3000..3020, &config, 2));
}

#[test]
fn runs_without_faults_converge() {
    let config = SimConfig {
        faults: false,
        ..SimConfig::default()
    };
    assert_all_passed(&sweep(2000..2010, &config, 1));
}

/// Without history collection, the engine alone: every check still passes.
#[test]
fn seeds_with_faults_and_no_collection_all_pass() {
    let config = SimConfig {
        collect: false,
        ..SimConfig::default()
    };
    assert_all_passed(&sweep(4000..4000 + seeds() / 4, &config, 2));
}

#[test]
fn a_seed_replays_event_for_event() {
    let config = SimConfig {
        keep_trace: true,
        ..SimConfig::default()
    };
    for seed in [3, 77] {
        let first = run(seed, &config).unwrap_or_else(|failure| panic!("{failure}"));
        let again = run(seed, &config).unwrap_or_else(|failure| panic!("{failure}"));
        let parted = first.log.iter().zip(&again.log).position(|(a, b)| a != b);
        assert_eq!(
            parted, None,
            "seed {seed}: the two runs part at event {parted:?}"
        );
        assert_eq!(first, again, "seed {seed}");
        assert!(first.faults > 0 && first.acknowledged > 100, "{first:?}");
    }
}
