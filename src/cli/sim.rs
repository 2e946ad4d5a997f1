//! `syncbase sim`: the deterministic simulation (`sim`) from the command line: a sweep of
//! seeds with its rate, or one seed replayed, with every event it went through.

use clap::Args;

use crate::cli::output::outln;
use crate::sim::{SimConfig, run, sweep};

#[derive(Debug, Args)]
pub struct SimArgs {
    /// Run this many seeds, from --first.
    #[arg(long, default_value_t = 100, conflicts_with = "seed")]
    seeds: u64,
    /// First seed of the sweep.
    #[arg(long, default_value_t = 0, conflicts_with = "seed")]
    first: u64,
    /// Replay this one seed (what a failure's `replay:` line runs).
    #[arg(long)]
    seed: Option<u64>,
    /// Nodes per run, 3 to 16.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(3..=16))]
    nodes: u64,
    /// Workload steps per run (writes and faults).
    #[arg(long, default_value_t = 200)]
    operations: usize,
    /// No partitions, lost pages, crashes, restores or clock jumps.
    #[arg(long)]
    no_faults: bool,
    /// Only node 0 is in the syncgroup: no joins, leaves or ejects as the run goes.
    #[arg(long)]
    no_membership: bool,
    /// No history collection (by default every running node collects after every step).
    #[arg(long)]
    no_collect: bool,
    /// With --seed: print every event of the run.
    #[arg(long, requires = "seed")]
    trace: bool,
    /// Threads running seeds (default: one per core).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    jobs: Option<u64>,
}

/// Runs the sweep or the replay; fails (exit 1) if a seed failed, after printing each failure
/// with the command that replays it.
pub fn run_sim(args: SimArgs) -> anyhow::Result<()> {
    let config = SimConfig {
        nodes: args.nodes as usize,
        operations: args.operations,
        faults: !args.no_faults,
        membership: !args.no_membership,
        collect: !args.no_collect,
        keep_trace: args.trace,
    };
    if let Some(seed) = args.seed {
        let outcome = match run(seed, &config) {
            Ok(outcome) => outcome,
            Err(failure) => {
                for line in &failure.log {
                    outln!("{line}")?;
                }
                anyhow::bail!("{failure}");
            }
        };
        for line in &outcome.log {
            outln!("{line}")?;
        }
        outln!(
            "{{\"seed\":{},\"trace\":\"{:016x}\",\"events\":{},\"acknowledged\":{},\"faults\":{},\"virtual_ms\":{}}}",
            outcome.seed,
            outcome.trace,
            outcome.events,
            outcome.acknowledged,
            outcome.faults,
            outcome.virtual_millis
        )?;
        return Ok(());
    }
    let jobs = args
        .jobs
        .map_or_else(
            || std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
            |jobs| jobs as usize,
        )
        .min(usize::try_from(args.seeds).unwrap_or(usize::MAX))
        .max(1);
    let Some(end) = args.first.checked_add(args.seeds) else {
        anyhow::bail!(
            "InvalidArgument: --first {} --seeds {} runs past the last seed ({}); lower either",
            args.first,
            args.seeds,
            u64::MAX
        );
    };
    let found = sweep(args.first..end, &config, jobs);
    for failure in &found.failures {
        eprintln!("{failure}");
    }
    outln!(
        "{{\"seeds\":{},\"passed\":{},\"failed\":{},\"nodes\":{},\"operations\":{},\"faults\":{},\"membership\":{},\"jobs\":{jobs},\"seconds\":{:.2},\"seeds_per_minute\":{:.0}}}",
        args.seeds,
        found.passed,
        found.failures.len(),
        config.nodes,
        config.operations,
        config.faults,
        config.membership,
        found.elapsed.as_secs_f64(),
        found.seeds_per_minute()
    )?;
    if !found.failures.is_empty() {
        anyhow::bail!("{} of {} seeds failed", found.failures.len(), args.seeds);
    }
    Ok(())
}
