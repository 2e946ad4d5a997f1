//! The `syncbase` command line: the top-level [`Command`] enum and its dispatch; each verb's
//! module owns its argument types and runs them. `serve` runs a node; the client verbs dial a
//! running node found through the same config or data directory; `bench` runs the
//! benchmarks. Verbs print through `output` only (see its rule); `println!` is denied here.
//!
//! - `serve`: `serve` and its flags;
//! - `client`: `put`, `get`, `delete`, `scan`, and `Target` (how a client verb finds its node);
//! - `reach`: finding the node a client verb names, and why a connection failed, with the fix;
//! - `watch`: `watch`;
//! - `list`: `ls`, the databases or one database's tables with their live data;
//! - `collect`: `gc`, and the store's part of `status` (size, live data, what gc waits for);
//! - `peers`: `id`, `peer add|list|remove`;
//! - `status`: `status`, its summary line and each peer's sync status;
//! - `syncgroups`: `sg` and its subcommands, running all but the proposal ones;
//! - `proposals`: `sg accept|reject|publish-invite`, and printing proposals;
//! - `bench`: `bench` and its benchmarks' flags;
//! - `demo`: `demo`, three nodes in this process showing sync, a partition and its heal;
//! - `sim`: `sim`, the deterministic simulation (a sweep of seeds, or one replayed);
//! - `completions`: `completions SHELL`, the shell completion script clap_complete writes;
//! - `output`: the one way verbs print, the closed-stdout rule, and how things look (escaped
//!   keys and values, counts, columns, JSON lines).
//!
//! Output convention, the same for every verb: stdout carries what was asked for. A verb that
//! reads prints its data (`--json`: one JSON object per line instead); a verb that changes
//! something prints one line that starts with what it did, in the past tense (`stored`,
//! `deleted`, `added peer`, `removed peer`, `created syncgroup`, `joined syncgroup`, `granted`,
//! `revoked`, `ejected`, `left syncgroup`, `accepted syncgroup`, `rejected syncgroup`), except
//! the verbs whose result is a token (`sg invite`, `sg publish-invite`), which print only it,
//! and `gc`, whose result is the figures it prints (`--json` too).
//! Errors go to stderr as one line.

#![deny(clippy::print_stdout)]

mod bench;
mod client;
mod collect;
mod completions;
mod demo;
mod list;
pub mod output;
mod peers;
mod proposals;
mod reach;
mod serve;
mod sim;
mod status;
mod syncgroups;
mod watch;

use clap::{Parser, Subcommand};

/// What `--version` prints after the name: the crate's version and the commit it was built
/// from (`build.rs`; "unknown" outside a git checkout), e.g. `0.1.0 (7a0d814)`.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("SYNCBASE_COMMIT"),
    ")"
);

/// A peer-to-peer replicated key-value store.
#[derive(Debug, Parser)]
#[command(
    name = "syncbase",
    version = VERSION,
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
    /// Store VALUE at KEY ("-" reads the value from stdin); prints one line: `stored KEY in
    /// table TABLE of database DB (N bytes)`.
    Put(client::PutArgs),
    /// Print the value at KEY (exit status 1 if there is none): its exact bytes into a pipe or
    /// a file; on a terminal as `scan` shows values, and a newline.
    Get(client::RowArgs),
    /// Remove KEY; prints one line, `deleted KEY in table TABLE of database DB`, with `(it was
    /// absent here ...)` after it if this node held no such row.
    ///
    /// Either way the delete is recorded and syncs, so it wins over an earlier put on a peer
    /// this node has not heard from yet.
    Delete(client::RowArgs),
    /// Print every row whose key starts with PREFIX as `key<TAB>value` lines (or JSON lines).
    ///
    /// Keys and values that are UTF-8 text print as they are, unless they hold a control
    /// character (a tab, a newline), start or end with whitespace, or start with `"`: those,
    /// and every value that is not UTF-8, print as a double-quoted string with Rust's escapes
    /// (\t, \n, \", \\, \0, \u{1b}) and \xNN for each byte that is not UTF-8. So the text
    /// `0x0001ff` prints as `0x0001ff`, the bytes 00 01 ff as `"\0\u{1}\xff"`.
    Scan(client::ScanArgs),
    /// List the databases with their tables and live data, or DB's tables with theirs.
    ///
    /// `ls`: one line per database: its name, its tables, live rows and live bytes (the
    /// figures `status` shows). `ls DB`: one line per table of DB with its live rows and
    /// bytes. `ls DB TABLE`: that table's line only, as `ls FILE` shows one file; its rows
    /// are `scan`'s job (`syncbase scan DB TABLE`). Live rows are rows not deleted; a row's
    /// bytes are its table name's, key's and value's. Tables need no creation, so a table is
    /// listed while it has a live row: one whose rows were all deleted is not listed (`scan`
    /// shows it empty), and `ls DB TABLE` answers `NoExist:` for it. Names print as `scan`
    /// prints keys. Reads every row head of each database listed once, as `status` does.
    Ls(list::ListArgs),
    /// Print changes to rows as they commit, local or synced, until interrupted.
    ///
    /// One line a change: `put|delete<TAB>ORIGIN<TAB>TABLE<TAB>KEY[<TAB>VALUE]`, ORIGIN
    /// `local` (written on this node), `sync` (received from a peer) or `initial` (a current
    /// row, with --initial); keys and values as `scan` prints them.
    Watch(watch::WatchArgs),
    /// Print this node's peer identity (fingerprint), peer address and device id.
    Id(peers::IdArgs),
    /// Manage the peers this node syncs with.
    Peer {
        #[command(subcommand)]
        action: peers::PeerAction,
    },
    /// Show a one-line summary (this node, peers connected, syncgroups, log entries pending,
    /// the last error), then every peer and its sync status, how many proposals wait for `sg
    /// accept`, the store's size (on disk, used, map and its maximum), and per database its
    /// live data and the members that hold history collection back.
    Status(status::StatusArgs),
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
    /// prints CLI lines and a status page address for each node and runs until Ctrl-C. Colour only on a terminal
    /// and without NO_COLOR.
    Demo(demo::DemoArgs),
    /// Run the deterministic simulation: many nodes, one seed each run, faults included;
    /// prints one JSON line (seeds passed, seeds per minute) and each failing seed's replay.
    Sim(sim::SimArgs),
    /// Print the shell completion script for SHELL (bash, zsh, fish, elvish, powershell).
    ///
    /// bash: `syncbase completions bash > ~/.local/share/bash-completion/completions/syncbase`;
    /// zsh: `syncbase completions zsh > ~/.zfunc/_syncbase` (with `fpath+=~/.zfunc` before
    /// `compinit` in ~/.zshrc); fish: `syncbase completions fish >
    /// ~/.config/fish/completions/syncbase.fish`. Open a new shell afterwards.
    Completions(completions::CompletionsArgs),
}

/// Runs one command to completion.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Put(args) => client::put(&args),
        Command::Get(args) => client::get(&args),
        Command::Delete(args) => client::delete(&args),
        Command::Scan(args) => client::scan(&args),
        Command::Ls(args) => list::run(&args),
        Command::Watch(args) => watch::run(&args),
        Command::Id(args) => peers::id(&args),
        Command::Peer { action } => peers::run(action),
        Command::Status(args) => status::run(&args),
        Command::Gc(args) => collect::gc(&args),
        Command::Sg { action } => syncgroups::run(action),
        Command::Bench(args) => bench::run(args),
        Command::Demo(args) => demo::run(&args),
        Command::Sim(args) => sim::run_sim(args),
        Command::Completions(args) => completions::run(&args),
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
