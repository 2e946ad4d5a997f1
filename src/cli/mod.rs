//! The `syncbase` command line: clap definitions and dispatch. `serve` runs a node; the client
//! verbs dial a running node found through the same config or data directory; `bench` runs
//! the benchmarks. Verbs print through `output` only (see its rule); `println!` is denied here.

#![deny(clippy::print_stdout)]

mod bench;
mod client;
pub mod output;
mod peers;
mod proposals;
mod serve;
mod sim;
mod syncgroups;
mod watch;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

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
    /// Remove KEY; prints whether it existed here (`deleted` or `absent`). Either way the delete
    /// is recorded and syncs, so it wins over an older put of KEY made elsewhere.
    ///
    /// Either way the delete is recorded and syncs, so it wins over an earlier put on a peer
    /// this node has not heard from yet.
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
    /// Print changes to rows as they commit, local or synced, until interrupted.
    Watch {
        #[command(flatten)]
        target: Target,
        db: String,
        /// Only this table ("" or absent: every table).
        #[arg(default_value = "")]
        table: String,
        /// Only keys starting with this prefix.
        #[arg(default_value = "")]
        prefix: String,
        /// First print the current rows (needs TABLE).
        #[arg(long)]
        initial: bool,
    },
    /// Print this node's peer identity (fingerprint), peer address and device id.
    Id {
        #[command(flatten)]
        target: Target,
    },
    /// Manage the peers this node syncs with.
    Peer {
        #[command(subcommand)]
        action: PeerAction,
    },
    /// Show every peer and its sync status, and how many proposals wait for `sg accept`.
    Status {
        #[command(flatten)]
        target: Target,
    },
    /// Create, join and manage syncgroups: prefixes of a database shared with the members.
    Sg {
        #[command(subcommand)]
        action: SgAction,
    },
    /// Run a benchmark; prints one JSON object per line.
    Bench(bench::BenchArgs),
    /// Run the deterministic simulation: many nodes, one seed each run, faults included;
    /// prints one JSON line (seeds passed, seeds per minute) and each failing seed's replay.
    Sim(sim::SimArgs),
}

#[derive(Debug, Subcommand)]
pub enum PeerAction {
    /// Sync DB's scopes with the peer at ADDR whose identity is FINGERPRINT (from `syncbase
    /// id` on that node), and accept its connections. Scopes are TABLE or TABLE/PREFIX.
    Add {
        #[command(flatten)]
        target: Target,
        #[arg(value_name = "ADDR")]
        peer_addr: String,
        fingerprint: String,
        db: String,
        #[arg(required = true, value_name = "TABLE[/PREFIX]")]
        scopes: Vec<String>,
    },
    /// List peers.
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Stop syncing with a peer (added at run time) and refuse its connections.
    Remove {
        #[command(flatten)]
        target: Target,
        fingerprint: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SgAction {
    /// Create a syncgroup sharing the --prefix scopes of DB.
    ///
    /// This node becomes its creator, first member and admin. NAME is HOST:PORT/SUFFIX, where
    /// HOST:PORT is the peer address (`syncbase id`) of the node that hosts it: this node, or
    /// the node given by --host.
    Create {
        #[command(flatten)]
        target: Target,
        /// The database whose rows it shares.
        db: String,
        /// The syncgroup's name, HOST:PORT/SUFFIX.
        name: String,
        /// A shared scope, TABLE or TABLE/PREFIX (repeat for several).
        #[arg(long = "prefix", value_name = "TABLE[/PREFIX]")]
        prefixes: Vec<String>,
        #[arg(long, default_value = "")]
        description: String,
        /// Fingerprint of the node NAME routes to, when that is not this node: the syncgroup
        /// is published there as a proposal, and once that node's operator accepts it
        /// (`sg accept`) it becomes an admin that serves joins.
        #[arg(long, value_name = "FINGERPRINT")]
        host: Option<String>,
        /// A publish invite (syncbase-publish://...) from the host (`sg publish-invite` there):
        /// the host takes the syncgroup at once instead of as a proposal. It names the host,
        /// so --host may be left out.
        #[arg(long, value_name = "TOKEN")]
        invite: Option<String>,
        /// Another admin (Admin, Read and Write). Without --admin/--writer/--reader this node
        /// is the only member allowed anything; invites add more later.
        #[arg(long = "admin", value_name = "FINGERPRINT")]
        admins: Vec<String>,
        /// A member allowed to read and write.
        #[arg(long = "writer", value_name = "FINGERPRINT")]
        writers: Vec<String>,
        /// A member allowed to read only.
        #[arg(long = "reader", value_name = "FINGERPRINT")]
        readers: Vec<String>,
    },
    /// Join a syncgroup with an invite token, or by name.
    ///
    /// The token (syncbase://...) comes from `sg invite` on an admin. Joining by NAME needs
    /// --admin and this node already in the permissions (`sg grant` on an admin).
    Join {
        #[command(flatten)]
        target: Target,
        /// An invite token (syncbase://...), or a syncgroup name with --admin.
        #[arg(value_name = "INVITE|NAME")]
        invite_or_name: String,
        /// Fingerprint of the admin node NAME routes to (joining by name).
        #[arg(long, value_name = "FINGERPRINT")]
        admin: Option<String>,
    },
    /// List the syncgroups this node knows, in one database or all.
    List {
        #[command(flatten)]
        target: Target,
        /// Only this database.
        #[arg(default_value = "")]
        db: String,
    },
    /// Show a syncgroup, or a proposal waiting here: status, prefixes, permissions, members.
    Show {
        #[command(flatten)]
        target: Target,
        /// The syncgroup's name, HOST:PORT/SUFFIX.
        name: String,
    },
    /// Mint an invite to a syncgroup and print its token.
    ///
    /// This node must be an admin. Only a hash of the token is kept; hand the token to the
    /// joiner over a trusted channel.
    Invite {
        #[command(flatten)]
        target: Target,
        /// The syncgroup's name, HOST:PORT/SUFFIX.
        name: String,
        /// What the joiner may do.
        #[arg(long, value_enum, default_value = "read")]
        level: syncgroups::LevelArg,
        /// Seconds until the invite expires, at least 1 (default: never).
        #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
        expires: Option<u64>,
        /// How many joins it admits, at least 1.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        uses: u32,
    },
    /// Remove a member and all its permissions.
    ///
    /// This node must be an admin. The member's capabilities fail on their next call and
    /// members stop syncing with it.
    Eject {
        #[command(flatten)]
        target: Target,
        /// The syncgroup's name, HOST:PORT/SUFFIX.
        name: String,
        /// The identity (64 hex digits, from `syncbase id` on that node).
        fingerprint: String,
    },
    /// Give an identity permissions at --level.
    ///
    /// This node must be an admin. The identity can then join by name
    /// (`sg join NAME --admin ...`).
    Grant {
        #[command(flatten)]
        target: Target,
        /// The syncgroup's name, HOST:PORT/SUFFIX.
        name: String,
        /// The identity (64 hex digits, from `syncbase id` on that node).
        fingerprint: String,
        #[arg(long, value_enum, default_value = "read")]
        level: syncgroups::LevelArg,
    },
    /// Take every permission away from an identity.
    ///
    /// This node must be an admin. Its capabilities fail from their next call; it stays
    /// listed as a member.
    Revoke {
        #[command(flatten)]
        target: Target,
        /// The syncgroup's name, HOST:PORT/SUFFIX.
        name: String,
        /// The identity (64 hex digits, from `syncbase id` on that node).
        fingerprint: String,
    },
    /// Stop syncing a syncgroup's prefixes; the rows stay here. Joining again resumes.
    Leave {
        #[command(flatten)]
        target: Target,
        /// The syncgroup's name, HOST:PORT/SUFFIX.
        name: String,
    },
    /// Accept a syncgroup another node proposed here (see `sg list`).
    ///
    /// This node then holds it, syncs its prefixes with its members, and becomes an admin
    /// once it has caught up with the publisher. Until accepted, a proposal shares nothing.
    Accept {
        #[command(flatten)]
        target: Target,
        /// The proposed syncgroup's name, HOST:PORT/SUFFIX.
        name: String,
    },
    /// Reject (forget) a syncgroup another node proposed here. Nothing was shared under it.
    Reject {
        #[command(flatten)]
        target: Target,
        /// The proposed syncgroup's name, HOST:PORT/SUFFIX.
        name: String,
    },
    /// Mint a publish invite for DB and print its token.
    ///
    /// A node that creates a syncgroup of DB named after this node's address, with
    /// `sg create --invite TOKEN`, has it taken here at once instead of as a proposal.
    /// Only a hash of the token is kept.
    PublishInvite {
        #[command(flatten)]
        target: Target,
        /// The database the publisher may share with this node (made if absent).
        db: String,
        /// Seconds until the invite expires, at least 1 (default: never).
        #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
        expires: Option<u64>,
        /// How many publishes it admits, at least 1.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        uses: u32,
    },
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
        Command::Watch {
            target,
            db,
            table,
            prefix,
            initial,
        } => watch::run(&target, &db, &table, &prefix, initial),
        Command::Id { target } => peers::id(&target),
        Command::Peer { action } => match action {
            PeerAction::Add {
                target,
                peer_addr,
                fingerprint,
                db,
                scopes,
            } => peers::add(&target, &peer_addr, &fingerprint, &db, &scopes),
            PeerAction::List { target } => peers::list(&target, false),
            PeerAction::Remove {
                target,
                fingerprint,
            } => peers::remove(&target, &fingerprint),
        },
        Command::Status { target } => peers::list(&target, true),
        Command::Sg { action } => run_sg(action),
        Command::Bench(args) => bench::run(args),
        Command::Sim(args) => sim::run_sim(args),
    }
}

fn run_sg(action: SgAction) -> anyhow::Result<()> {
    match action {
        SgAction::Create {
            target,
            db,
            name,
            prefixes,
            description,
            host,
            invite,
            admins,
            writers,
            readers,
        } => syncgroups::create(
            &target,
            syncgroups::CreateArgs {
                db: &db,
                name: &name,
                prefixes: &prefixes,
                description: &description,
                host: host.as_deref(),
                invite: invite.as_deref(),
                admins: &admins,
                writers: &writers,
                readers: &readers,
            },
        ),
        SgAction::Join {
            target,
            invite_or_name,
            admin,
        } => syncgroups::join(&target, &invite_or_name, admin.as_deref()),
        SgAction::List { target, db } => syncgroups::list(&target, &db),
        SgAction::Show { target, name } => syncgroups::show(&target, &name),
        SgAction::Invite {
            target,
            name,
            level,
            expires,
            uses,
        } => syncgroups::invite(&target, &name, level, expires, uses),
        SgAction::Eject {
            target,
            name,
            fingerprint,
        } => syncgroups::eject(&target, &name, &fingerprint),
        SgAction::Grant {
            target,
            name,
            fingerprint,
            level,
        } => syncgroups::access(
            &target,
            &name,
            &fingerprint,
            syncgroups::AccessChange::Grant(level.into()),
        ),
        SgAction::Revoke {
            target,
            name,
            fingerprint,
        } => syncgroups::access(
            &target,
            &name,
            &fingerprint,
            syncgroups::AccessChange::Revoke,
        ),
        SgAction::Leave { target, name } => syncgroups::leave(&target, &name),
        SgAction::Accept { target, name } => proposals::accept(&target, &name),
        SgAction::Reject { target, name } => proposals::reject(&target, &name),
        SgAction::PublishInvite {
            target,
            db,
            expires,
            uses,
        } => proposals::publish_invite(&target, &db, expires, uses),
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
