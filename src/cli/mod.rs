//! The `syncbase` command line: the top-level [`Command`] enum and its dispatch; each verb's
//! module owns its argument types and runs them. `serve` runs a node; the client verbs dial a
//! running node found through the same config or data directory; `bench` runs the
//! benchmarks. Verbs print through `output` only (see its rule); `println!` is denied here.
//!
//! - `serve`: `serve` and its flags;
//! - `client`: `put`, `get`, `delete`, `scan`, and `Target` (how a client verb finds its node);
//! - `reach`: finding the node a client verb names, and why a connection failed, with the fix;
//! - `watch`: `watch`;
//! - `collect`: `gc`, and the store's part of `status` (size, live data, what gc waits for);
//! - `peers`: `id`, `peer add|list|remove` and `status`;
//! - `syncgroups`: `sg` and its subcommands, running all but the proposal ones;
//! - `proposals`: `sg accept|reject|publish-invite`, and printing proposals;
//! - `bench`: `bench` and its benchmarks' flags;
//! - `demo`: `demo`, three nodes in this process showing sync, a partition and its heal;
//! - `sim`: `sim`, the deterministic simulation (a sweep of seeds, or one replayed);
//! - `output`: the one way verbs print, and the closed-stdout rule.

#![deny(clippy::print_stdout)]

mod bench;
mod client;
mod collect;
mod demo;
pub mod output;
mod peers;
mod proposals;
mod reach;
mod serve;
mod sim;
mod syncgroups;
mod watch;

use clap::{Parser, Subcommand};

use crate::cli::client::Target;

/// A peer-to-peer replicated key-value store.
#[derive(Debug, Parser)]
#[command(
    name = "syncbase",
    version,
    about,
    propagate_version = true,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node: LMDB in ./syncbase-data, app API on 127.0.0.1:7700 unless configured.
    ///
    /// SIGINT (Ctrl-C), SIGTERM and SIGHUP (a closed terminal or ssh session) all stop it
    /// gracefully: commits in flight finish and node.addr / peer.addr are removed. Under
    /// `nohup` (SIGHUP ignored at start) SIGHUP stays ignored.
    Serve(serve::ServeArgs),
    /// Store VALUE at KEY ("-" reads the value from stdin).
    Put(client::PutArgs),
    /// Print the value at KEY (exit status 1 if there is none).
    Get(client::RowArgs),
    /// Remove KEY; prints whether it existed here (`deleted` or `absent`). Either way the delete
    /// is recorded and syncs, so it wins over an older put of KEY made elsewhere.
    ///
    /// Either way the delete is recorded and syncs, so it wins over an earlier put on a peer
    /// this node has not heard from yet.
    Delete(client::RowArgs),
    /// Print every row whose key starts with PREFIX as `key<TAB>value` lines; values that are
    /// not printable UTF-8 are shown as 0x-prefixed hex.
    Scan(client::ScanArgs),
    /// Print changes to rows as they commit, local or synced, until interrupted.
    Watch(watch::WatchArgs),
    /// Print this node's peer identity (fingerprint), peer address and device id.
    Id {
        #[command(flatten)]
        target: Target,
    },
    /// Manage the peers this node syncs with.
    Peer {
        #[command(subcommand)]
        action: peers::PeerAction,
    },
    /// Show every peer and its sync status, how many proposals wait for `sg accept`, the
    /// store's size (on disk, used, map and its maximum), and per database its live data and
    /// the members that hold history collection back.
    Status {
        #[command(flatten)]
        target: Target,
    },
    /// Collect DB's history now (what every member has seen) and print what it freed and
    /// the store's size before and after, in bytes.
    Gc(collect::GcArgs),
    /// Create, join and manage syncgroups: prefixes of a database shared with the members.
    Sg {
        #[command(subcommand)]
        action: syncgroups::SgAction,
    },
    /// Run a benchmark; prints one JSON object per line.
    Bench(bench::BenchArgs),
    /// Show what syncbase does: three nodes in this process sync, split, heal and agree.
    ///
    /// The nodes (LMDB in temporary directories, loopback ports) form a syncgroup through
    /// invites; each write is shown reaching the other two with its latency; then one node is
    /// cut off (its links run through TCP relays the demo cuts), rows are written on both sides
    /// and one row on both, and after the heal every node holds the same winner. Ends after
    /// about 15 s with a summary (records, bytes synced, p50/p95 latency), or with `--keep`
    /// prints CLI lines that reach each node and runs until Ctrl-C. Colour only on a terminal
    /// and without NO_COLOR.
    Demo(demo::DemoArgs),
    /// Run the deterministic simulation: many nodes, one seed each run, faults included;
    /// prints one JSON line (seeds passed, seeds per minute) and each failing seed's replay.
    Sim(sim::SimArgs),
}

/// Runs one command to completion.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Put(args) => client::put(&args),
        Command::Get(args) => client::get(&args),
        Command::Delete(args) => client::delete(&args),
        Command::Scan(args) => client::scan(&args),
        Command::Watch(args) => watch::run(&args),
        Command::Id { target } => peers::id(&target),
        Command::Peer { action } => peers::run(action),
        Command::Status { target } => peers::list(&target, true),
        Command::Gc(args) => collect::gc(&args),
        Command::Sg { action } => syncgroups::run(action),
        Command::Bench(args) => bench::run(args),
        Command::Demo(args) => demo::run(&args),
        Command::Sim(args) => sim::run_sim(args),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
