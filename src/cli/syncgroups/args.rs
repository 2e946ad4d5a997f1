//! The arguments of `syncbase sg`: one [`SgAction`] per subcommand, run by
//! `cli::syncgroups::run`.

use clap::{Args, Subcommand};

use crate::cli::client::Target;
use crate::syncgroup::access::Level;

#[derive(Debug, Subcommand)]
pub enum SgAction {
    /// Create a syncgroup sharing the --prefix scopes of DB.
    ///
    /// This node becomes its creator, first member and admin. NAME is HOST:PORT/SUFFIX, where
    /// HOST:PORT is the peer address (`syncbase id`) of the node that hosts it: this node, or
    /// the node given by --host.
    Create(CreateArgs),
    /// Join a syncgroup with an invite token, or by name.
    ///
    /// The token (syncbase://...) comes from `sg invite` on an admin. Joining by NAME needs
    /// --admin and this node already in the permissions (`sg grant` on an admin).
    ///
    /// Prints the syncgroup, then waits until the initial sync completes (a progress bar of
    /// records and bytes with rate and ETA on a terminal; a final `initial sync of NAME
    /// complete: ...` line either way), unless --no-wait.
    Join {
        #[command(flatten)]
        target: Target,
        /// An invite token (syncbase://...), or a syncgroup name with --admin.
        #[arg(value_name = "INVITE|NAME")]
        invite_or_name: String,
        /// Fingerprint of the admin node NAME routes to (joining by name).
        #[arg(long, value_name = "FINGERPRINT")]
        admin: Option<String>,
        /// Return once joined, without waiting for the initial sync.
        #[arg(long)]
        no_wait: bool,
        /// Stop waiting after this many seconds (exit 1; the sync goes on in the background).
        #[arg(long, value_name = "SECONDS", default_value_t = 300)]
        timeout: u64,
    },
    /// List the syncgroups this node knows, in one database or all, then the proposals
    /// waiting here.
    List {
        #[command(flatten)]
        target: Target,
        /// Only this database.
        #[arg(default_value = "")]
        db: String,
        /// One JSON object per syncgroup and per proposal, each as `sg show --json` prints it.
        #[arg(long)]
        json: bool,
    },
    /// Show a syncgroup, or a proposal waiting here: status, prefixes, permissions, members.
    Show {
        #[command(flatten)]
        target: Target,
        /// The syncgroup's name, HOST:PORT/SUFFIX.
        name: String,
        /// One JSON object: {"name", "id" (16 hex digits), "database", "status" ("running",
        /// "publish-pending", "publish-rejected", or how this node lost it: "ejected",
        /// "read-revoked", "destroyed"), "spec_version", "creator", "description",
        /// "prefixes": [{"table", "prefix"}], "permissions": {TAG: {"allowed": [fingerprint],
        /// "denied": [fingerprint]}}, "members": [{"fingerprint", "name" (the member's
        /// chosen name, or null), "device" (16 hex digits), "address" ("" if none), "server":
        /// bool}], "pending": bool (catching up with its admin), "left": bool, "publisher" (who
        /// published it here, or null), "proposal": bool (waiting here for `sg accept`),
        /// "removed" (as the human output says it: "Ejected", "Read revoked", "Destroyed"),
        /// "removed_by" (the admin that said so, or destroyed it), "removed_at_nanos" (when,
        /// Unix nanoseconds: the notice taken, or the destroy), "waiting_for" (what a pending
        /// copy waits for): each a string or null}.
        #[arg(long)]
        json: bool,
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
        level: LevelArg,
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
        level: LevelArg,
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
    ///
    /// For a destroyed syncgroup (`sg destroy` on an admin), forget it: `sg list` no longer
    /// shows it, and app writes under its prefixes work again.
    Leave {
        #[command(flatten)]
        target: Target,
        /// The syncgroup's name, HOST:PORT/SUFFIX.
        name: String,
    },
    /// Destroy a syncgroup for good.
    ///
    /// This node must be an admin. Its rows stay on every node, as with `sg leave`; nothing
    /// syncs under it any more. Members learn it from its admins (at once if online, else
    /// when they next reach one): they stop syncing its prefixes, `sg show`/`sg list`/`status`
    /// say `Destroyed` (by whom, when), and their app writes under its prefixes fail NoAccess
    /// (unless shared another way) until they run `sg leave NAME`, which forgets it. Here it
    /// is gone at once: `sg list` no longer shows it, its invites are void, and `sg create`
    /// may reuse the name (a new syncgroup, which old members do not join by accident).
    Destroy {
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

// No doc comment: the subcommand's help is its variant's in `SgAction`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub target: Target,
    /// The database whose rows it shares.
    pub db: String,
    /// The syncgroup's name, HOST:PORT/SUFFIX.
    pub name: String,
    /// A shared scope, TABLE (the whole table) or TABLE/PREFIX (rows of TABLE whose keys
    /// start with PREFIX), as in `peer add`; at least one (repeat for several).
    #[arg(long = "prefix", value_name = "TABLE[/PREFIX]", required = true)]
    pub prefixes: Vec<String>,
    #[arg(long, default_value = "")]
    pub description: String,
    /// Fingerprint of the node NAME routes to, when that is not this node: the syncgroup
    /// is published there as a proposal, and once that node's operator accepts it
    /// (`sg accept`) it becomes an admin that serves joins.
    #[arg(long, value_name = "FINGERPRINT")]
    pub host: Option<String>,
    /// A publish invite (syncbase-publish://...) from the host (`sg publish-invite` there):
    /// the host takes the syncgroup at once instead of as a proposal. It names the host,
    /// so --host may be left out.
    #[arg(long, value_name = "TOKEN")]
    pub invite: Option<String>,
    /// Another admin (Admin, Read and Write). Without --admin/--writer/--reader this node
    /// is the only member allowed anything; invites add more later.
    #[arg(long = "admin", value_name = "FINGERPRINT")]
    pub admins: Vec<String>,
    /// A member allowed to read and write.
    #[arg(long = "writer", value_name = "FINGERPRINT")]
    pub writers: Vec<String>,
    /// A member allowed to read only.
    #[arg(long = "reader", value_name = "FINGERPRINT")]
    pub readers: Vec<String>,
}

/// The level of `sg invite --level`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LevelArg {
    Read,
    ReadWrite,
    Admin,
}

impl From<LevelArg> for Level {
    fn from(level: LevelArg) -> Level {
        match level {
            LevelArg::Read => Level::Read,
            LevelArg::ReadWrite => Level::ReadWrite,
            LevelArg::Admin => Level::Admin,
        }
    }
}
