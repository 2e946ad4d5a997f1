//! `syncbase bench ...`: the benchmark commands' flags. Each prints one JSON object per line.

use clap::{Args, Subcommand};

use std::net::SocketAddr;

use crate::bench::abuse::{AbuseBench, Attack, TOKEN_ENV, Target, run_attacker};
use crate::bench::disk::DiskBench;
use crate::bench::soak::SoakBench;
use crate::bench::storage::StorageBench;
use crate::bench::sync::{BulkBench, LatencyBench, NoopBench};
use crate::identity::Fingerprint;

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    which: Which,
}

#[derive(Debug, Subcommand)]
enum Which {
    /// Put and get throughput through the app RPC (memory and durable LMDB, batches of 1 and
    /// 1,000, 16-byte keys, 100-byte random values) beside raw lmdb-rkv on the same data.
    Storage {
        /// Records per run for batches of 1,000 (batch-of-1 runs use a tenth, durable
        /// single commits being slow).
        #[arg(long, default_value_t = 100_000)]
        records: usize,
        /// Repetitions per figure; the median is reported with min and max.
        #[arg(long, default_value_t = 5)]
        repeat: usize,
    },
    /// Abuse resistance: an embedded node's resident memory growth and a normal client's put
    /// and get latency while attackers on loopback (a child process) hold N connections that
    /// each announce a 60 MiB message and stall, on the app and peer ports, before and after
    /// authenticating; and while one client sends pipelined gets of a 1 MiB value and reads no
    /// answer.
    Abuse {
        /// Connections per header attack.
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        /// `Table.get` calls of the unread-answers attack.
        #[arg(long, default_value_t = 3000)]
        gets: usize,
        /// Puts and gets the normal client times, without and during each attack.
        #[arg(long, default_value_t = 200)]
        ops: usize,
        /// Attacks to run, comma-separated (all by default).
        #[arg(long, value_enum, value_delimiter = ',', default_values_t = ALL_ATTACKS)]
        attacks: Vec<Attack>,
    },
    /// The attacker side of `bench abuse` (a child process), reading the token from the
    /// environment.
    #[command(hide = true)]
    AbuseAttacker {
        #[arg(long, value_enum)]
        attack: Attack,
        #[arg(long)]
        app: SocketAddr,
        /// The peer listener ("" for none).
        #[arg(long, default_value = "")]
        peer: String,
        /// The node's fingerprint ("" for none).
        #[arg(long, default_value = "")]
        fingerprint: String,
        #[arg(long)]
        db: String,
        #[arg(long)]
        table: String,
        #[arg(long)]
        key: String,
        #[arg(long)]
        connections: usize,
        #[arg(long)]
        gets: usize,
    },
    /// B7: the disk one synced record takes: node A takes N records (16-byte keys, 100-byte
    /// values), an empty node B syncs them; B's data file and used pages per record beside a
    /// raw lmdb-rkv environment holding the same records.
    Disk {
        /// Records written on A and synced to B.
        #[arg(long, default_value_t = 100_000)]
        records: usize,
    },
    /// Issue 12's soak: N peered embedded nodes (durable LMDB) each take R writes a second
    /// through the app RPC (80% puts over their own keys, 10% puts on keys every node writes,
    /// 10% deletes of keys they put); every few seconds one line per node with its store's
    /// size on disk, its live key and value bytes, the process's RSS and the sync backlog;
    /// at the end (or Ctrl-C) a summary per node: growth slope, whether the store levels off
    /// within 3 x live + 16 MiB, convergence, and raw lmdb-rkv holding the same rows.
    Soak {
        /// How long the writes run, in minutes (fractions allowed: 0.5 is 30 s).
        #[arg(long)]
        minutes: f64,
        /// Writes per second per node.
        #[arg(long)]
        rate: f64,
        /// Nodes, each a peer of every other.
        #[arg(long, default_value_t = 2)]
        nodes: usize,
        /// Keys in the table: a tenth written by every node, the rest split among the nodes.
        #[arg(long, default_value_t = 5000)]
        keys: usize,
        /// Bytes of each value put.
        #[arg(long, default_value_t = 100)]
        value_bytes: usize,
        /// Seconds between sets of lines (fractions allowed).
        #[arg(long, default_value_t = 10.0)]
        every: f64,
        /// The nodes' storage backend (LMDB: the one with a store on disk to measure).
        #[arg(long, value_enum, default_value_t = SoakBackend::Lmdb)]
        backend: SoakBackend,
        /// Seconds between each node's background history collection passes (0: none, the
        /// baseline the issue measured).
        #[arg(long, default_value_t = 5)]
        collect_every: u64,
    },
    /// Peer sync between two embedded nodes (durable LMDB, TLS over loopback TCP, linked both
    /// ways through counting proxies): latency, bulk initial sync, no-op resync.
    Sync {
        #[command(subcommand)]
        which: SyncWhich,
    },
}

#[derive(Debug, Subcommand)]
enum SyncWhich {
    /// B4: single-record writes on A in a warm database, timed from A's commit returning to
    /// B's watch delivering the change; bytes per change; beside a Cap'n Proto echo round
    /// trip and a raw durable LMDB commit. A paced phase, then a throughput phase.
    Latency {
        /// Records preloaded on A (16-byte keys, 100-byte values) and synced to B first.
        #[arg(long, default_value_t = 100_000)]
        warm: usize,
        /// Writes measured per phase.
        #[arg(long, default_value_t = 1000)]
        writes: usize,
        /// Writes per second in the paced phase (the brief's 10/s makes 1,000 writes take
        /// 100 s; 100/s takes 10 s).
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        /// Writes per second in the throughput phase (0 skips it).
        #[arg(long, default_value_t = 1000.0)]
        fast_rate: f64,
    },
    /// B3: an empty B pulls N records from A; records/s, wire bytes per record, peak RSS,
    /// beside raw lmdb-rkv durable puts of the same data in batches of 1,000.
    Bulk {
        /// Record counts to run, comma-separated (1,000,000 takes a few minutes).
        #[arg(long, value_delimiter = ',', default_values_t = [100_000, 1_000_000])]
        records: Vec<usize>,
        /// Syncs per count, each to a fresh B; the median is reported with min and max.
        #[arg(long, default_value_t = 1)]
        repeat: usize,
    },
    /// B5a: nodes in sync; B drops A and adds it back; bytes and round trips until B has
    /// synced again, beside a TLS connect that does nothing.
    Noop {
        /// Records the two nodes hold in sync.
        #[arg(long, default_value_t = 100_000)]
        records: usize,
        /// Disconnect/reconnect cycles; the median is reported with min and max.
        #[arg(long, default_value_t = 5)]
        repeat: usize,
    },
}

/// The backends `bench soak` can measure.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum SoakBackend {
    Lmdb,
}

const ALL_ATTACKS: [Attack; 5] = [
    Attack::AppPreAuth,
    Attack::AppPostAuth,
    Attack::PeerPreAuth,
    Attack::PeerPostAuth,
    Attack::UnreadAnswers,
];

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    // The nodes' warnings (a failing collection pass, a refused session) on stderr, beside
    // the figures on stdout; `RUST_LOG` sets more.
    super::serve::init_logging("warn");
    match args.which {
        Which::Storage { records, repeat } => StorageBench { records, repeat }.run(),
        Which::Abuse {
            connections,
            gets,
            ops,
            attacks,
        } => AbuseBench {
            connections,
            gets,
            ops,
            attacks,
        }
        .run(),
        Which::AbuseAttacker {
            attack,
            app,
            peer,
            fingerprint,
            db,
            table,
            key,
            connections,
            gets,
        } => {
            let target = Target {
                app,
                peer: (!peer.is_empty()).then(|| peer.parse()).transpose()?,
                fingerprint: (!fingerprint.is_empty())
                    .then(|| Fingerprint::parse(&fingerprint))
                    .transpose()?,
                token: std::env::var(TOKEN_ENV).unwrap_or_default(),
                row: (db, table, key),
            };
            run_attacker(attack, target, connections, gets)
        }
        Which::Disk { records } => DiskBench { records }.run(),
        Which::Soak {
            minutes,
            rate,
            nodes,
            keys,
            value_bytes,
            every,
            backend: SoakBackend::Lmdb,
            collect_every,
        } => SoakBench {
            minutes,
            rate,
            nodes,
            keys,
            value_bytes,
            every,
            collect_every,
        }
        .run(),
        Which::Sync { which } => match which {
            SyncWhich::Latency {
                warm,
                writes,
                rate,
                fast_rate,
            } => LatencyBench {
                warm,
                writes,
                rate,
                fast_rate,
            }
            .run(),
            SyncWhich::Bulk { records, repeat } => BulkBench { records, repeat }.run(),
            SyncWhich::Noop { records, repeat } => NoopBench { records, repeat }.run(),
        },
    }
}
