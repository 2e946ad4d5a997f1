//! `syncbase bench sync bulk` (B3): A holds N records (preloaded in commits of 1,000, not
//! timed); an empty B is linked to it and the clock runs from the link until B has applied all
//! N (its status for A counts N records received; the stores' digests are then checked equal,
//! outside the timing). Each repetition uses a fresh B against the same A. Beside it, raw
//! `lmdb-rkv` durable puts of the same data in transactions of 1,000, in the same run.

use crate::cli::output::outln;
use std::time::{Duration, Instant};

use serde_json::json;

use super::proxy::ProxyHost;
use super::{
    KEY_BYTES, Link, VALUE_BYTES, lmdb_file_bytes, on_local, peak_rss_bytes, preload,
    raw_lmdb_batched_rate, reset_peak_rss, start_node, status, target, wait_synced,
};
use crate::bench::{Stats, records};
use crate::embedded::EmbeddedServer;

/// Targets (B3).
const MIN_RATE: f64 = 60_000.0;
const MIN_RATIO_VS_RAW: f64 = 0.6;
const MIN_SCALING: f64 = 0.8;
const MAX_WIRE_VS_PAYLOAD: f64 = 1.3;

/// The bulk benchmark's settings.
pub struct BulkBench {
    /// Each N to run, in order.
    pub records: Vec<usize>,
    /// Syncs (each to a fresh B) per N; the median is reported with min and max.
    pub repeat: usize,
}

/// One sync of N records to a fresh B.
struct Run {
    rate: f64,
    wire_bytes: u64,
    peak_rss: Option<u64>,
    /// B's LMDB data file size after the sync.
    b_file: u64,
}

impl BulkBench {
    pub fn run(&self) -> anyhow::Result<()> {
        self.measure(|line| Ok(outln!("{line}")?))
    }

    /// Runs the benchmark, handing each JSON line to `emit` as soon as it is measured.
    pub fn measure(
        &self,
        mut emit: impl FnMut(&serde_json::Value) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.repeat >= 1 && !self.records.is_empty() && self.records.iter().all(|&n| n > 0),
            "bench sync bulk needs --repeat >= 1 and --records N[,N...] with every N >= 1"
        );
        let host = ProxyHost::new()?;
        let mut first_rate: Option<(usize, f64)> = None;
        for &n in &self.records {
            let data = records(n, VALUE_BYTES);
            let raw = (0..self.repeat)
                .map(|_| raw_lmdb_batched_rate(&data))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let raw_file = raw.iter().map(|(_, file)| *file).max().unwrap_or(0);
            let raw = raw.into_iter().map(|(rate, _)| rate).collect();
            let runs = on_local(async {
                let a = start_node().await?;
                let preloaded = Instant::now();
                preload(&a, &data).await?;
                let preload_secs = preloaded.elapsed().as_secs_f64();
                let mut runs = Vec::new();
                for _ in 0..self.repeat {
                    runs.push(sync_once(&host, &a, n).await?);
                }
                anyhow::Ok((runs, preload_secs))
            })?;
            let mut line = self.line(n, &runs.0, runs.1, Stats::of(raw), first_rate);
            let ours = runs.0.iter().map(|run| run.b_file).max().unwrap_or(0);
            line["b_lmdb_file_bytes_per_record"] = (ours as f64 / n as f64).into();
            line["raw_lmdb_file_bytes_per_record"] = (raw_file as f64 / n as f64).into();
            first_rate
                .get_or_insert((n, line["records_per_sec"]["median"].as_f64().unwrap_or(0.0)));
            emit(&line)?;
        }
        Ok(())
    }

    fn line(
        &self,
        n: usize,
        runs: &[Run],
        preload_secs: f64,
        raw: Stats,
        first: Option<(usize, f64)>,
    ) -> serde_json::Value {
        let rate = Stats::of(runs.iter().map(|run| run.rate).collect());
        let per_record = Stats::of(
            runs.iter()
                .map(|run| run.wire_bytes as f64 / n as f64)
                .collect(),
        );
        let payload = (KEY_BYTES + VALUE_BYTES) as f64;
        let peak_rss = runs.iter().filter_map(|run| run.peak_rss).max();
        let mut targets = serde_json::Map::new();
        targets.insert(
            "records_per_sec".into(),
            target(rate.median, MIN_RATE, false),
        );
        let ratio = rate.median / raw.median;
        targets.insert(
            "ratio_vs_raw_lmdb".into(),
            target(ratio, MIN_RATIO_VS_RAW, false),
        );
        targets.insert(
            "wire_vs_payload".into(),
            target(per_record.median / payload, MAX_WIRE_VS_PAYLOAD, true),
        );
        let mut line = json!({
            "bench": "sync-bulk",
            "records": n,
            "repeat": self.repeat,
            "durable": true,
            "key_bytes": KEY_BYTES,
            "value_bytes": VALUE_BYTES,
            "records_per_sec": rate,
            "seconds": n as f64 / rate.median,
            "preload_secs_on_a": preload_secs,
            "wire_bytes_per_record": per_record,
            "wire_vs_payload": per_record.median / payload,
            "peak_rss_bytes": peak_rss,
            "peak_rss_note": "VmHWM of the whole process during the sync: both nodes, their LMDB maps' resident pages, the proxies and the harness",
            "raw_lmdb_batched_puts_per_sec": raw,
            "ratio_vs_raw_lmdb": ratio,
        });
        if let Some((smaller, smaller_rate)) = first.filter(|(smaller, _)| *smaller < n) {
            let scaling = rate.median / smaller_rate;
            line["rate_vs_smaller_n"] = json!({ "smaller_n": smaller, "ratio": scaling });
            targets.insert(
                "rate_vs_smaller_n".into(),
                target(scaling, MIN_SCALING, false),
            );
        }
        line["targets"] = targets.into();
        line
    }
}

/// Links a fresh, empty B to `a` and times until it holds all `n` records; then unlinks it.
async fn sync_once(host: &ProxyHost, a: &EmbeddedServer, n: usize) -> anyhow::Result<Run> {
    let b = start_node().await?;
    let peak_reset = reset_peak_rss();
    let start = Instant::now();
    let link = Link::new(host, a, &b).await?;
    let limit = Duration::from_secs(60 + n as u64 / 2000);
    wait_synced(a, &b, n as u64, limit).await?;
    let elapsed = start.elapsed().as_secs_f64();
    let peak_rss = peak_reset.then(peak_rss_bytes).flatten();
    let wire_bytes = link.settled_bytes().await;
    anyhow::ensure!(
        status(&b, a).records_received == n as u64,
        "B received more records than A holds"
    );
    a.node()
        .remove_peer(b.node().identity().fingerprint())
        .await?;
    let b_file = lmdb_file_bytes(&b.data_dir().join("lmdb"));
    drop(b);
    Ok(Run {
        rate: n as f64 / elapsed,
        wire_bytes,
        peak_rss,
        b_file,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_bulk_run_reports_every_field() {
        let bench = BulkBench {
            records: vec![500, 1500],
            repeat: 1,
        };
        let mut lines = Vec::new();
        bench
            .measure(|line| {
                lines.push(line.clone());
                Ok(())
            })
            .unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["bench"], "sync-bulk");
        assert!(lines[0]["records_per_sec"]["median"].as_f64().unwrap() > 0.0);
        assert!(
            lines[0]["wire_bytes_per_record"]["median"]
                .as_f64()
                .unwrap()
                > 100.0
        );
        assert!(lines[1]["targets"]["rate_vs_smaller_n"]["pass"].is_boolean());
        assert!(lines[0].get("rate_vs_smaller_n").is_none());
    }
}
