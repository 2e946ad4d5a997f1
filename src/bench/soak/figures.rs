//! What the soak measures of a node, and the arithmetic of its summary: the rows read back
//! through the app RPC (`Table.scan`), the store's size on disk, the process's resident set,
//! the store's growth slope, the bound the issue sets, and the raw LMDB comparator.

use std::cell::RefCell;
use std::rc::Rc;

use lmdb::{Transaction, WriteFlags};
use serde_json::json;

use crate::bench::sync::{lmdb_file_bytes, raw_env};
use crate::embedded::EmbeddedServer;
use crate::rpc::client::remote_error;
use crate::schema::service_capnp::{row_sink, table};

/// The fixed part of the bound: store <= 3 x live + 16 MiB.
pub const FIXED_BYTES: u64 = 16 << 20;
/// The multiple of live bytes the bound allows.
pub const LIVE_FACTOR: u64 = 3;
/// How long the target soak runs: the slope is projected to this length.
pub const TARGET_MINUTES: f64 = 30.0;

/// A table's rows in key order, as a scan read them.
pub type Rows = Vec<(String, Vec<u8>)>;

/// One node's figures at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Seconds since the writes started.
    pub t_s: f64,
    /// Writes the node acknowledged.
    pub writes: u64,
    /// The size of the node's LMDB data file (`data.mdb`) in bytes.
    pub store_bytes: u64,
    /// Sum of key and value bytes of the rows a scan returned.
    pub live_bytes: u64,
    /// The process's resident set (`VmRSS`) in bytes: every node's, they share the process.
    pub rss_bytes: u64,
    /// Log entries the node's responders have not examined yet for its peers, summed.
    pub pending: u64,
    /// Writes due by the pace and not acknowledged yet.
    pub lag: u64,
}

impl Sample {
    /// `store / (live + 16 MiB)`.
    pub fn ratio(&self) -> f64 {
        self.store_bytes as f64 / (self.live_bytes + FIXED_BYTES) as f64
    }

    /// The bound for this sample's live bytes: 3 x live + 16 MiB.
    pub fn bound_bytes(&self) -> u64 {
        LIVE_FACTOR * self.live_bytes + FIXED_BYTES
    }

    /// The periodic JSON line of node `node`.
    pub fn line(&self, node: usize) -> serde_json::Value {
        json!({
            "bench": "soak",
            "t_s": self.t_s,
            "node": node,
            "writes": self.writes,
            "store_bytes": self.store_bytes,
            "live_bytes": self.live_bytes,
            "ratio": self.ratio(),
            "rss_bytes": self.rss_bytes,
            "pending": self.pending,
            "lag": self.lag,
        })
    }

    /// The figures a summary repeats for its first and last samples.
    pub fn brief(&self) -> serde_json::Value {
        json!({
            "t_s": self.t_s,
            "writes": self.writes,
            "store_bytes": self.store_bytes,
            "live_bytes": self.live_bytes,
            "ratio": self.ratio(),
            "rss_bytes": self.rss_bytes,
        })
    }
}

/// The size of `node`'s LMDB data file.
pub fn store_bytes(node: &EmbeddedServer) -> u64 {
    lmdb_file_bytes(&node.data_dir().join("lmdb"))
}

/// Sum of key and value bytes of `rows`.
pub fn live_bytes(rows: &Rows) -> u64 {
    rows.iter()
        .map(|(key, value)| (key.len() + value.len()) as u64)
        .sum()
}

/// Every row of `table`, read through `Table.scan`.
pub async fn scan(table: &table::Client) -> anyhow::Result<Rows> {
    let rows = Rc::new(RefCell::new(Vec::new()));
    let sink: row_sink::Client = capnp_rpc::new_client(Collect { rows: rows.clone() });
    let mut request = table.scan_request();
    request.get().set_prefix("");
    request.get().set_sink(sink);
    request.send().promise.await.map_err(remote_error)?;
    Ok(rows.take())
}

/// Keeps every pushed row.
struct Collect {
    rows: Rc<RefCell<Rows>>,
}

impl row_sink::Server for Collect {
    async fn push(self: Rc<Self>, params: row_sink::PushParams) -> capnp::Result<()> {
        let mut rows = self.rows.borrow_mut();
        for row in params.get()?.get_rows()? {
            let key = row.get_key()?.to_string()?;
            rows.push((key, row.get_value()?.to_vec()));
        }
        Ok(())
    }
}

/// Least-squares slope of `store_bytes` over time, in bytes per minute, fitted to the
/// samples in the second half of `samples`' time span (at least the last two); None with
/// fewer than two samples or no time between them.
pub fn slope_per_minute(samples: &[Sample]) -> Option<f64> {
    let end = samples.last()?.t_s;
    let half: Vec<&Sample> = samples.iter().filter(|s| s.t_s >= end / 2.0).collect();
    let fitted = if half.len() >= 2 {
        half
    } else {
        samples.iter().rev().take(2).collect()
    };
    let n = fitted.len() as f64;
    let mean_t = fitted.iter().map(|s| s.t_s).sum::<f64>() / n;
    let mean_b = fitted.iter().map(|s| s.store_bytes as f64).sum::<f64>() / n;
    let (mut cov, mut var) = (0.0, 0.0);
    for s in &fitted {
        cov += (s.t_s - mean_t) * (s.store_bytes as f64 - mean_b);
        var += (s.t_s - mean_t).powi(2);
    }
    (n >= 2.0 && var > 0.0).then(|| cov / var * 60.0)
}

/// Whether the store levels off: the last store size plus the slope over what is left of
/// the 30-minute target stays within 3 x live + 16 MiB of the last live bytes.
/// Returns the projected store size and the verdict.
pub fn levelled(last: &Sample, slope_per_minute: f64, run_minutes: f64) -> (f64, bool) {
    let remaining = (TARGET_MINUTES - run_minutes).max(0.0);
    let projected = last.store_bytes as f64 + slope_per_minute.max(0.0) * remaining;
    (projected, projected <= last.bound_bytes() as f64)
}

/// The data file size of a fresh raw `lmdb-rkv` environment holding `rows` (one
/// transaction): the comparator.
pub fn raw_lmdb_bytes(rows: &Rows) -> anyhow::Result<u64> {
    let (dir, env, db) = raw_env()?;
    let mut txn = env.begin_rw_txn()?;
    for (key, value) in rows {
        txn.put(db, key, value, WriteFlags::empty())?;
    }
    txn.commit()?;
    drop(env);
    Ok(lmdb_file_bytes(dir.path()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t_s: f64, store_bytes: u64) -> Sample {
        Sample {
            t_s,
            writes: 0,
            store_bytes,
            live_bytes: 1 << 20,
            rss_bytes: 0,
            pending: 0,
            lag: 0,
        }
    }

    #[test]
    fn the_slope_fits_the_second_half_only() {
        // Flat for the first minute, then 1 MiB a minute.
        let mut samples: Vec<Sample> = (0..=6).map(|i| at(f64::from(i) * 10.0, 5 << 20)).collect();
        samples.extend((1..=6u32).map(|i| {
            at(
                60.0 + f64::from(i) * 10.0,
                (5 << 20) + (u64::from(i) << 20) / 6,
            )
        }));
        let slope = slope_per_minute(&samples).unwrap();
        assert!((slope - f64::from(1 << 20)).abs() < 10.0, "{slope}");
    }

    #[test]
    fn no_slope_without_two_samples_apart() {
        assert_eq!(slope_per_minute(&[]), None);
        assert_eq!(slope_per_minute(&[at(5.0, 1)]), None);
        assert_eq!(slope_per_minute(&[at(5.0, 1), at(5.0, 2)]), None);
        assert_eq!(slope_per_minute(&[at(0.0, 0), at(60.0, 10)]), Some(10.0));
    }

    #[test]
    fn levelled_projects_the_slope_to_thirty_minutes() {
        let last = at(180.0, 10 << 20); // bound: 3 MiB + 16 MiB = 19 MiB
        assert_eq!(last.bound_bytes(), 19 << 20);
        assert!(levelled(&last, 0.0, 3.0).1);
        // 9 MiB of room over 27 minutes: 1/3 MiB a minute is the most that still fits.
        assert!(levelled(&last, f64::from(1 << 20) / 3.0, 3.0).1);
        assert!(!levelled(&last, f64::from(1 << 20) / 2.0, 3.0).1);
        // Past 30 minutes only the last size counts; a shrinking store is not credited.
        assert!(levelled(&last, 1e12, 30.0).1);
        assert_eq!(levelled(&last, -1e6, 3.0).0, f64::from(10 << 20));
    }

    #[test]
    fn the_ratio_is_store_over_live_plus_the_fixed_part() {
        let sample = at(0.0, 17 << 20);
        assert_eq!(sample.ratio(), 1.0);
        assert_eq!(live_bytes(&vec![("ab".into(), vec![0; 3])]), 5);
    }

    #[test]
    fn the_raw_comparator_holds_the_rows() {
        let rows: Rows = (0..1000)
            .map(|i| (format!("{i:016}"), vec![7; 100]))
            .collect();
        let bytes = raw_lmdb_bytes(&rows).unwrap();
        assert!((116_000..1 << 20).contains(&bytes), "{bytes}");
    }
}
