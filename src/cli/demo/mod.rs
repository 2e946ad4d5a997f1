//! `syncbase demo`: three real nodes in this process (LMDB in temporary directories, app API
//! and TLS peer listeners on ephemeral loopback ports) form a syncgroup through invites, then
//! show writes flowing with their latency, a partition and its healing, and a concurrent
//! write resolved to the same winner everywhere; a summary ends it, or with `--keep` the
//! nodes stay up for the CLI until Ctrl-C. Nothing is simulated: the syncgroup is made with
//! the app API calls `sg create|invite|join` make, and carol's links run through TCP relays
//! (declared with the call `peer add` makes) that the demo cuts to partition her.
//!
//! - `cluster`: starting the nodes, relays and syncgroup, and reading the nodes' rows;
//! - `script`: the scenes and the summary;
//! - `relay`: the cuttable TCP relay;
//! - `show`: printing (alignment, colour) and the latency figures.

mod cluster;
mod relay;
mod script;
mod show;

use std::time::Duration;

use clap::Args;

use self::cluster::Cluster;
use self::show::Show;
use crate::cli::output::outln;
use crate::cli::serve::shutdown_signal;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// About how long the scenes run, in seconds (fewer seconds, fewer writes; the start of
    /// the nodes comes on top).
    #[arg(long, value_name = "N", default_value_t = 15, value_parser = clap::value_parser!(u64).range(3..=600))]
    seconds: u64,
    /// After the summary, keep the nodes running and print how to reach each with the CLI
    /// and its status page;
    /// Ctrl-C (or SIGTERM) stops them and removes their directories.
    #[arg(long)]
    keep: bool,
}

/// `demo`: runs the scenes, then stops (or, with `--keep`, waits for a stop signal). Ctrl-C
/// (or SIGTERM, or SIGHUP: `serve`'s stop signals) at any point shuts the nodes down and
/// removes their temporary directories; the exit status is then 0.
pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let show = Show::for_stdout();
    local.block_on(&runtime, async move {
        let stop = shutdown_signal();
        let stopped = tokio::select! {
            biased;
            () = stop => true,
            outcome = demo(args, show) => { outcome?; false }
        };
        if stopped {
            outln!()?;
            outln!("stopped: the nodes shut down and their temporary directories are removed")?;
        }
        Ok(())
    })
}

async fn demo(args: &DemoArgs, show: Show) -> anyhow::Result<()> {
    let cluster = Cluster::start(show).await?;
    let pace = Duration::from_secs(args.seconds);
    script::run(&cluster, show, pace).await?;
    if args.keep {
        let pages = cluster.serve_pages().await?;
        cluster.print_cli_lines(show, &pages)?;
        std::future::pending::<()>().await;
    }
    Ok(())
}
