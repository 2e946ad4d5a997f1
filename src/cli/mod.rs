//! The `syncbase` command line: clap definitions and dispatch. `serve` runs a node; the client
//! verbs dial a running node found through the same config or data directory; `bench` runs
//! the benchmarks.

mod bench;
mod client;
mod serve;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// A peer-to-peer replicated key-value store.
#[derive(Debug, Parser)]
#[command(name = "syncbase", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node: LMDB in ./syncbase-data, app API on 127.0.0.1:7700 unless configured.
    Serve(serve::ServeArgs),
    /// Store VALUE at KEY ("-" reads the value from stdin).
    Put {
        #[command(flatten)]
        target: Target,
        db: String,
        table: String,
        key: String,
        value: String,
    },
    /// Print the value at KEY (exit status 1 if there is none).
    Get {
        #[command(flatten)]
        target: Target,
        db: String,
        table: String,
        key: String,
    },
    /// Remove KEY; prints whether it existed.
    Delete {
        #[command(flatten)]
        target: Target,
        db: String,
        table: String,
        key: String,
    },
    /// Print every row whose key starts with PREFIX as `key<TAB>value` lines; values that are
    /// not printable UTF-8 are shown as 0x-prefixed hex.
    Scan {
        #[command(flatten)]
        target: Target,
        db: String,
        table: String,
        #[arg(default_value = "")]
        prefix: String,
    },
    /// Run a benchmark; prints one JSON object per line.
    Bench(bench::BenchArgs),
}

/// How a client verb finds its node.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// Config file of the node to talk to (its data_dir and token_file are used).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory of the node (holds node.addr and client.token) [default: ./syncbase-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The node's app address, instead of the one recorded in the data directory.
    #[arg(long, value_name = "ADDR")]
    pub addr: Option<SocketAddr>,
    /// The client token file, instead of the configured one.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

/// Runs one command to completion.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Put {
            target,
            db,
            table,
            key,
            value,
        } => client::put(&target, &db, &table, &key, &value),
        Command::Get {
            target,
            db,
            table,
            key,
        } => client::get(&target, &db, &table, &key),
        Command::Delete {
            target,
            db,
            table,
            key,
        } => client::delete(&target, &db, &table, &key),
        Command::Scan {
            target,
            db,
            table,
            prefix,
        } => client::scan(&target, &db, &table, &prefix),
        Command::Bench(args) => bench::run(args),
    }
}
