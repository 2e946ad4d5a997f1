//! `syncbase bench ...`: the benchmark commands' flags. Each prints one JSON object per line.

use clap::{Args, Subcommand};

use crate::bench::storage::StorageBench;

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
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.which {
        Which::Storage { records, repeat } => StorageBench { records, repeat }.run(),
    }
}
