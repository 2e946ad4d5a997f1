//! `syncbase bench soak` (issue 12, item 4): does a node's store level off under a steady
//! write load, or grow with the number of writes? N embedded nodes (durable LMDB in
//! temporary directories, TLS peer listeners on loopback, each a declared peer of every
//! other for the one database and table, set up by `bench::sync`'s helpers) each take R
//! writes a second through the app RPC (`workload`: 80% puts over their own keys, 10% on
//! keys every node writes, 10% deletes of keys they put). Every `every` seconds it prints one
//! JSON line per node: `store_bytes` (the `data.mdb` file's size), `live_bytes` (key + value
//! bytes of the rows a `Table.scan` returns), their `ratio` to live + 16 MiB, the process's
//! RSS (one reading per set of lines: the nodes share the process), `pending` (log entries
//! its responders have not examined for its peers) and `lag` (writes due and not yet
//! acknowledged). When the time is up (or at Ctrl-C) the writes stop, it waits (at most 60 s,
//! or until a second Ctrl-C) until every node's scan returns the same rows, and prints one summary line per node:
//! first and last figures, the store's slope over the last half of the run, whether that
//! slope projected to the 30-minute soak stays within 3 x live + 16 MiB
//! (`levelled`), whether the nodes converged and how long it took, and the comparator: the
//! data file of a fresh raw `lmdb-rkv` environment holding the node's rows.

mod figures;
mod workload;

use std::time::{Duration, Instant};

use anyhow::ensure;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::bench::sync::{
    DB, TABLE, add_peer, on_local, peer_addr, rss_bytes, start_node_collecting, status,
};
use crate::bench::{app_database, app_table};
use crate::cli::output::outln;
use crate::embedded::EmbeddedServer;
use crate::schema::service_capnp::table;
use figures::{Rows, Sample};
use workload::{Mix, Progress};

/// The longest wait for the nodes to hold the same rows once the writes stop.
const CONVERGE_LIMIT: Duration = Duration::from_secs(60);

/// The soak's settings.
#[derive(Debug, Clone)]
pub struct SoakBench {
    /// How long the writes run (fractions allowed).
    pub minutes: f64,
    /// Writes per second per node.
    pub rate: f64,
    pub nodes: usize,
    /// Keys in the table, shared and own (see `workload`).
    pub keys: usize,
    pub value_bytes: usize,
    /// Seconds between sets of lines.
    pub every: f64,
    /// Seconds between each node's background history collection passes (0: none).
    pub collect_every: u64,
}

/// One node under load: the server, its table through the app RPC, and its driver's
/// progress.
struct Loaded {
    server: EmbeddedServer,
    table: table::Client,
    progress: tokio::sync::watch::Receiver<Progress>,
}

impl SoakBench {
    pub fn run(&self) -> anyhow::Result<()> {
        self.measure(|line| Ok(outln!("{line}")?))
    }

    /// Runs the soak, handing each JSON line to `emit` as soon as it is measured.
    pub fn measure(
        &self,
        mut emit: impl FnMut(&serde_json::Value) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        self.check()?;
        on_local(async {
            let (interrupted, hurried) = watch_interrupts();
            let stop = CancellationToken::new();
            let (nodes, drivers) = self.start(&stop).await?;
            let start = Instant::now();
            let history = self
                .sample_until(&nodes, start, &interrupted, &mut emit)
                .await?;
            stop.cancel();
            for driver in drivers {
                driver.await??;
            }
            let converging = Instant::now();
            let converged = converge(&nodes, &hurried).await?;
            let converge_s = converging.elapsed().as_secs_f64();
            let run_minutes = history[0].last().map_or(0.0, |s| s.t_s / 60.0);
            let rss = rss_bytes().unwrap_or(0);
            for (i, node) in nodes.iter().enumerate() {
                let (last, rows) = measure(node, &nodes, i, start, rss).await?;
                let mut line = self.summary(i, &history[i], &last, &rows, run_minutes)?;
                line["converged"] = converged.into();
                line["converge_s"] = converge_s.into();
                line["interrupted"] = interrupted.is_cancelled().into();
                emit(&line)?;
            }
            anyhow::Ok(())
        })
    }

    fn check(&self) -> anyhow::Result<()> {
        let shared = (self.keys / 10).max(1);
        ensure!(
            self.minutes > 0.0 && self.rate > 0.0 && self.every > 0.0,
            "bench soak needs --minutes, --rate and --every above 0"
        );
        ensure!(
            self.nodes >= 2 && self.keys >= shared + self.nodes && self.value_bytes >= 1,
            "bench soak needs --nodes >= 2, --keys >= 11 x nodes and --value-bytes >= 1"
        );
        Ok(())
    }

    /// Starts the nodes, peers every pair both ways, and starts a driver per node.
    async fn start(
        &self,
        stop: &CancellationToken,
    ) -> anyhow::Result<(
        Vec<Loaded>,
        Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
    )> {
        let mut servers = Vec::new();
        for _ in 0..self.nodes {
            servers.push(start_node_collecting(self.collect_every).await?);
        }
        for (i, node) in servers.iter().enumerate() {
            for (j, peer) in servers.iter().enumerate() {
                if i != j {
                    add_peer(node, peer, peer_addr(peer)?).await?;
                }
            }
        }
        let (mut nodes, mut drivers) = (Vec::new(), Vec::new());
        for (i, server) in servers.into_iter().enumerate() {
            let table = app_table(&app_database(&server, DB).await?, TABLE).await?;
            let (progress_tx, progress) = tokio::sync::watch::channel(Progress::default());
            let mix = Mix::new(i, self.nodes, self.keys, self.value_bytes);
            let (client, rate, stop) = (table.clone(), self.rate, stop.clone());
            drivers.push(tokio::task::spawn_local(workload::drive(
                client,
                mix,
                rate,
                stop,
                progress_tx,
            )));
            nodes.push(Loaded {
                server,
                table,
                progress,
            });
        }
        Ok((nodes, drivers))
    }

    /// Emits a set of lines now, every `every` seconds, and when the time is up or
    /// `interrupted`; returns each node's samples.
    async fn sample_until(
        &self,
        nodes: &[Loaded],
        start: Instant,
        interrupted: &CancellationToken,
        emit: &mut impl FnMut(&serde_json::Value) -> anyhow::Result<()>,
    ) -> anyhow::Result<Vec<Vec<Sample>>> {
        let end = start + Duration::from_secs_f64(self.minutes * 60.0);
        let every = Duration::from_secs_f64(self.every);
        let mut history = vec![Vec::new(); nodes.len()];
        let mut next = start;
        loop {
            let rss = rss_bytes().unwrap_or(0);
            for (i, node) in nodes.iter().enumerate() {
                let (sample, _) = measure(node, nodes, i, start, rss).await?;
                emit(&sample.line(i))?;
                history[i].push(sample);
            }
            if Instant::now() >= end || interrupted.is_cancelled() {
                return Ok(history);
            }
            next = (next + every).min(end);
            tokio::select! {
                biased;
                _ = interrupted.cancelled() => {}
                _ = tokio::time::sleep_until(next.into()) => {}
            }
        }
    }

    /// Node `i`'s summary line.
    fn summary(
        &self,
        i: usize,
        samples: &[Sample],
        last: &Sample,
        rows: &Rows,
        run_minutes: f64,
    ) -> anyhow::Result<serde_json::Value> {
        let first = samples.first().unwrap_or(last);
        let slope = figures::slope_per_minute(samples);
        let (projected, levelled) = slope.map_or((None, None), |slope| {
            let (projected, levelled) = figures::levelled(last, slope, run_minutes);
            (Some(projected), Some(levelled))
        });
        let raw = figures::raw_lmdb_bytes(rows)?;
        Ok(json!({
            "bench": "soak-summary",
            "node": i,
            "nodes": self.nodes,
            "minutes": run_minutes,
            "rate": self.rate,
            "keys": self.keys,
            "value_bytes": self.value_bytes,
            "first": first.brief(),
            "last": last.brief(),
            "rows": rows.len(),
            "slope_bytes_per_min": slope,
            "target_minutes": figures::TARGET_MINUTES,
            "projected_store_bytes": projected,
            "bound_bytes": last.bound_bytes(),
            "within_bound": last.store_bytes <= last.bound_bytes(),
            "levelled": levelled,
            "raw_lmdb_bytes": raw,
            "store_vs_raw_lmdb": last.store_bytes as f64 / raw.max(1) as f64,
            "store_bytes_source": "size of the node's data.mdb file",
            "live_bytes_source": "key + value bytes of the rows Table.scan returns",
        }))
    }
}

/// Node `i`'s figures now (`rss`: the process's, read once for the set), and the rows its
/// scan returned.
async fn measure(
    node: &Loaded,
    nodes: &[Loaded],
    i: usize,
    start: Instant,
    rss: u64,
) -> anyhow::Result<(Sample, Rows)> {
    let rows = figures::scan(&node.table).await?;
    let pending = nodes
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != i)
        .map(|(_, peer)| status(&node.server, &peer.server).pending_out)
        .sum();
    let progress = *node.progress.borrow();
    let sample = Sample {
        t_s: start.elapsed().as_secs_f64(),
        writes: progress.writes,
        store_bytes: figures::store_bytes(&node.server),
        live_bytes: figures::live_bytes(&rows),
        rss_bytes: rss,
        pending,
        lag: progress.lag,
    };
    Ok((sample, rows))
}

/// Tokens cancelled at the first Ctrl-C (stop writing, converge, summarise) and at the
/// second (stop waiting for convergence).
fn watch_interrupts() -> (CancellationToken, CancellationToken) {
    let (first, second) = (CancellationToken::new(), CancellationToken::new());
    let (on_first, on_second) = (first.clone(), second.clone());
    tokio::task::spawn_local(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_first.cancel();
            if tokio::signal::ctrl_c().await.is_ok() {
                on_second.cancel();
            }
        }
    });
    (first, second)
}

/// Waits until every node's scan returns the same rows: true if they do within
/// [`CONVERGE_LIMIT`], false if not or at `hurried`.
async fn converge(nodes: &[Loaded], hurried: &CancellationToken) -> anyhow::Result<bool> {
    let deadline = Instant::now() + CONVERGE_LIMIT;
    loop {
        let first = figures::scan(&nodes[0].table).await?;
        let mut same = true;
        for node in &nodes[1..] {
            same &= figures::scan(&node.table).await? == first;
        }
        if same {
            return Ok(true);
        }
        if Instant::now() >= deadline || hurried.is_cancelled() {
            return Ok(false);
        }
        tokio::select! {
            biased;
            _ = hurried.cancelled() => {}
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_are_refused() {
        let good = SoakBench {
            minutes: 1.0,
            rate: 10.0,
            nodes: 2,
            keys: 100,
            value_bytes: 10,
            every: 1.0,
            collect_every: 0,
        };
        assert!(good.check().is_ok());
        for bad in [
            SoakBench {
                minutes: 0.0,
                ..good.clone()
            },
            SoakBench {
                rate: 0.0,
                ..good.clone()
            },
            SoakBench {
                nodes: 1,
                ..good.clone()
            },
            SoakBench {
                keys: 2,
                ..good.clone()
            },
            SoakBench {
                every: 0.0,
                ..good.clone()
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }
}
