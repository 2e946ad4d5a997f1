//! `syncbase bench sync latency` (B4): A and B in sync on a warm database; A commits single
//! 100-byte records at a paced rate, and each write's latency is the time from A's `commit`
//! returning to B's `Database.watch` (a logged-in app session to B, served on this thread)
//! delivering it (also reported from the commit's start, since on a busy 2-core machine the
//! harness may notice a commit's return late). Writes are open loop: each starts on schedule
//! whether or not earlier ones have returned. Bytes per change are what both proxies forwarded
//! during the phase, divided by the writes: B's connection to A carries A's pushes of records
//! to B; A's connection to B carries B's pushes to A (knowledge-only pages once B's knowledge
//! moves). Two phases: `--rate` (paced) and `--fast-rate` (throughput mode).

use crate::cli::output::outln;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use super::proxy::ProxyHost;
use super::{
    DB, KEY_BYTES, Link, Percentiles, Records, TABLE, VALUE_BYTES, db, ms, on_local, put,
    raw_lmdb_commit_ms, start_node, target, wait_synced, wait_until,
};
use crate::embedded::EmbeddedServer;
use crate::rpc::client::remote_error;
use crate::schema::service_capnp::watch_sink;

/// Echo calls and raw LMDB commits measured for the comparators.
const COMPARATOR_SAMPLES: usize = 1000;
/// Targets (B4).
const P50_MS: f64 = 2.0;
const P99_MS: f64 = 10.0;
const THROUGHPUT_P99_MS: f64 = 50.0;
const BYTES_PER_CHANGE: f64 = 400.0;

/// The latency benchmark's settings.
pub struct LatencyBench {
    /// Records preloaded on A (and synced to B) before measuring.
    pub warm: usize,
    /// Writes measured per phase.
    pub writes: usize,
    /// Writes per second in the paced phase.
    pub rate: f64,
    /// Writes per second in the throughput phase (0: skip it).
    pub fast_rate: f64,
}

/// When B's watch delivered each key.
#[derive(Clone, Default)]
struct Arrivals(Rc<RefCell<HashMap<String, Instant>>>);

impl Arrivals {
    fn get(&self, key: &str) -> Option<Instant> {
        self.0.borrow().get(key).copied()
    }

    fn has(&self, key: &str) -> bool {
        self.0.borrow().contains_key(key)
    }
}

impl watch_sink::Server for Arrivals {
    async fn push(self: Rc<Self>, params: watch_sink::PushParams) -> capnp::Result<()> {
        let now = Instant::now();
        let mut seen = self.0.borrow_mut();
        for change in params.get()?.get_changes()? {
            seen.entry(change.get_key()?.to_str()?.to_owned())
                .or_insert(now);
        }
        Ok(())
    }
}

/// One phase's measurements.
struct Phase {
    /// From A's commit returning to B's watch delivering.
    latencies: Percentiles,
    /// From A's commit starting to B's watch delivering.
    from_commit_start: Percentiles,
    /// A's commit calls themselves.
    a_commit: Percentiles,
    offered_rate: f64,
    /// Writes over the time until the last one reached B's watch.
    completed_rate: f64,
    wire_bytes: u64,
    /// Bytes (see [`directions`]).
    by_link: [u64; 4],
}

impl LatencyBench {
    pub fn run(&self) -> anyhow::Result<()> {
        for line in self.measure()? {
            outln!("{line}")?;
        }
        Ok(())
    }

    /// Runs the benchmark; one JSON object per phase.
    pub fn measure(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        anyhow::ensure!(
            self.writes > 0 && self.rate > 0.0 && self.fast_rate >= 0.0,
            "bench sync latency needs --writes >= 1 and positive rates"
        );
        let phases = if self.fast_rate > 0.0 { 2 } else { 1 };
        let data = super::super::records(self.warm + 20 + phases * self.writes, VALUE_BYTES);
        let (warm, rest) = data.split_at(self.warm);
        let (probes, writes) = rest.split_at(20);
        let lmdb = Percentiles::of(raw_lmdb_commit_ms(&super::super::records(
            COMPARATOR_SAMPLES,
            VALUE_BYTES,
        ))?);
        let host = ProxyHost::new()?;
        on_local(async {
            let (a, b) = (start_node().await?, start_node().await?);
            super::preload(&a, warm).await?;
            let link = Link::new(&host, &a, &b).await?;
            let limit = Duration::from_secs(60 + self.warm as u64 / 2000);
            wait_synced(&a, &b, self.warm as u64, limit).await?;
            let echo = echo_round_trips(&a).await?;
            let arrivals = Arrivals::default();
            let watching = watch(&b, arrivals.clone())?;
            probe(&a, &arrivals, probes).await?;
            let mut lines = Vec::new();
            for (i, rate) in [self.rate, self.fast_rate][..phases].iter().enumerate() {
                let keys = &writes[i * self.writes..(i + 1) * self.writes];
                let phase = measure_phase(&a, &link, &arrivals, keys, *rate).await?;
                lines.push(self.line(i == 0, *rate, &phase, echo, lmdb));
            }
            watching.abort();
            Ok(lines)
        })
    }

    fn line(
        &self,
        paced: bool,
        rate: f64,
        phase: &Phase,
        echo: Percentiles,
        lmdb: Percentiles,
    ) -> serde_json::Value {
        let per_change = phase.wire_bytes as f64 / self.writes as f64;
        let limit = echo.p50 + lmdb.p50;
        let mut targets = serde_json::Map::new();
        if paced {
            targets.insert("p50_ms".into(), target(phase.latencies.p50, P50_MS, true));
            targets.insert("p99_ms".into(), target(phase.latencies.p99, P99_MS, true));
        } else {
            let p99 = target(phase.latencies.p99, THROUGHPUT_P99_MS, true);
            targets.insert("p99_ms".into(), p99);
        }
        let bytes = target(per_change, BYTES_PER_CHANGE, true);
        targets.insert("wire_bytes_per_change".into(), bytes);
        json!({
            "bench": "sync-latency",
            "mode": if paced { "paced" } else { "throughput" },
            "durable": true,
            "warm_records": self.warm,
            "writes": self.writes,
            "key_bytes": KEY_BYTES,
            "value_bytes": VALUE_BYTES,
            "rate_per_sec_asked": rate,
            "rate_per_sec_offered": phase.offered_rate,
            "rate_per_sec_completed": phase.completed_rate,
            "latency_ms": phase.latencies,
            "latency_from_commit_start_ms": phase.from_commit_start,
            "a_commit_ms": phase.a_commit,
            "wire_bytes": phase.wire_bytes,
            "wire_bytes_per_change": per_change,
            "wire_bytes_per_change_by_link": {
                "b_dials_a": {
                    "a_to_b": phase.by_link[0] as f64 / self.writes as f64,
                    "b_to_a": phase.by_link[1] as f64 / self.writes as f64,
                },
                "a_dials_b": {
                    "a_to_b": phase.by_link[2] as f64 / self.writes as f64,
                    "b_to_a": phase.by_link[3] as f64 / self.writes as f64,
                },
            },
            "echo_rtt_ms": echo,
            "raw_lmdb_commit_ms": lmdb,
            "ratio_p50_vs_echo_plus_lmdb_commit_p50": phase.latencies.p50 / limit,
            "targets": targets,
        })
    }
}

/// Round trips of `Service.limits()` on a logged-in session to A (loopback TCP, no TLS).
async fn echo_round_trips(a: &EmbeddedServer) -> anyhow::Result<Percentiles> {
    let mut times = Vec::with_capacity(COMPARATOR_SAMPLES);
    for i in 0..COMPARATOR_SAMPLES + 100 {
        let start = Instant::now();
        let response = a.service().limits_request().send().promise.await;
        response.map_err(remote_error)?;
        if i >= 100 {
            times.push(ms(start.elapsed()));
        }
    }
    Ok(Percentiles::of(times))
}

/// Starts watching the table on B through its logged-in app session; the call runs until
/// the returned task is aborted.
fn watch(b: &EmbeddedServer, arrivals: Arrivals) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut request = b.service().database_request();
    request.get().set_name(DB);
    let database = request.send().pipeline.get_db();
    let mut request = database.watch_request();
    request.get().set_table(TABLE);
    request.get().set_prefix("");
    request.get().set_initial_state(false);
    request
        .get()
        .set_sink(capnp_rpc::new_client::<watch_sink::Client, _>(arrivals));
    let promise = request.send().promise;
    Ok(tokio::task::spawn_local(async move {
        if let Err(error) = promise.await {
            eprintln!("bench sync latency: B's watch ended: {error}");
        }
    }))
}

/// Writes probe records on A until one reaches B's watch (so the watch is registered and the
/// live streams are warm).
async fn probe(a: &EmbeddedServer, arrivals: &Arrivals, probes: &Records) -> anyhow::Result<()> {
    for (key, value) in probes {
        a.node().commit(db(), vec![put(key, value)?]).await?;
        let arrived = || arrivals.has(key);
        if wait_until(
            "a probe",
            Duration::from_secs(1),
            Duration::from_millis(1),
            arrived,
        )
        .await
        .is_ok()
        {
            return Ok(());
        }
    }
    anyhow::bail!("no probe write on A reached B's watch")
}

/// Bytes so far: on B's connection to A (A's pushes of records to B) from A, from B; on A's
/// connection to B (B's pushes to A) from A, from B.
fn directions(link: &Link) -> [u64; 4] {
    let (to_a, to_b) = (&link.to_a.traffic, &link.to_b.traffic);
    [to_a.down(), to_a.up(), to_b.up(), to_b.down()]
}

/// Commits each record on A at `rate` per second, open loop (each write starts on schedule in
/// a task of its own, whether or not earlier ones have returned), and collects each one's
/// latency to B's watch, from its commit returning and from its commit starting.
async fn measure_phase(
    a: &EmbeddedServer,
    link: &Link,
    arrivals: &Arrivals,
    writes: &Records,
    rate: f64,
) -> anyhow::Result<Phase> {
    let before = link.settled_bytes().await;
    let before_by_link = directions(link);
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(writes.len());
    for (i, (key, value)) in writes.iter().enumerate() {
        tokio::time::sleep_until(start + interval.mul_f64(i as f64)).await;
        let (node, mutation) = (a.node().clone(), put(key, value)?);
        tasks.push(tokio::task::spawn_local(async move {
            let began = Instant::now();
            node.commit(db(), vec![mutation]).await?;
            anyhow::Ok((began, Instant::now()))
        }));
    }
    let offered_rate = writes.len() as f64 / start.elapsed().as_secs_f64();
    let mut commits = Vec::with_capacity(writes.len());
    for task in tasks {
        commits.push(task.await.context("a write task failed")??);
    }
    let limit = Duration::from_secs(30);
    let all = || writes.iter().all(|(key, _)| arrivals.has(key));
    wait_until(
        "B's watch to deliver every write",
        limit,
        Duration::from_millis(2),
        all,
    )
    .await
    .with_context(|| format!("after {} writes at {rate}/s", writes.len()))?;
    let completed_rate = writes.len() as f64 / start.elapsed().as_secs_f64();
    let wire_bytes = link.settled_bytes().await - before;
    let after = directions(link);
    let by_link = std::array::from_fn(|i| after[i] - before_by_link[i]);
    let (mut from_return, mut from_start, mut commit) = (Vec::new(), Vec::new(), Vec::new());
    for ((key, _), (began, returned)) in writes.iter().zip(commits) {
        let arrived = arrivals.get(key).expect("every write arrived");
        from_return.push(ms(arrived.saturating_duration_since(returned)));
        from_start.push(ms(arrived.saturating_duration_since(began)));
        commit.push(ms(returned - began));
    }
    Ok(Phase {
        latencies: Percentiles::of(from_return),
        from_commit_start: Percentiles::of(from_start),
        a_commit: Percentiles::of(commit),
        offered_rate,
        completed_rate,
        wire_bytes,
        by_link,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_latency_run_reports_every_field() {
        let bench = LatencyBench {
            warm: 1000,
            writes: 20,
            rate: 200.0,
            fast_rate: 0.0,
        };
        let lines = bench.measure().unwrap();
        assert_eq!(lines.len(), 1);
        let line = &lines[0];
        assert_eq!(line["bench"], "sync-latency");
        assert!(line["latency_ms"]["p50"].as_f64().unwrap() > 0.0);
        assert!(line["wire_bytes_per_change"].as_f64().unwrap() > 100.0);
        assert!(line["targets"]["p99_ms"]["pass"].is_boolean());
    }
}
