//! `syncbase bench sync latency|bulk|noop`: peer sync between two embedded nodes in this
//! process, each on durable LMDB with a TLS peer listener on loopback TCP, linked both ways
//! (each dials the other) through counting TCP proxies, one in front of each peer listener, so
//! every byte either node sends the other is counted. Each subcommand prints one JSON object
//! per line with our figures, the comparators measured in the same run, ratios and the
//! targets (from the team's benchmark brief, B3-B5) with pass/fail.
//!
//! - `latency` (B4): a warm database; single-record writes on A at a paced rate; the time
//!   from A's commit returning to B's `Database.watch` delivering the change. Comparators: a
//!   trivial Cap'n Proto call's round trip on our stack, and one raw durable LMDB commit.
//! - `bulk` (B3): B starts empty and pulls N records from A. Comparator: raw `lmdb-rkv`
//!   durable puts of the same data in batches of 1,000.
//! - `noop` (B5a): nodes in sync; B drops A and adds it back; the bytes and the round trips
//!   until B's status for A shows a completed sync again. Comparator: a TLS connect that does
//!   nothing, through the same proxy.
//!
//! The nodes, the proxies and the harness share one process and this machine's cores, so peak
//! RSS covers both nodes (and their LMDB maps' resident pages).

mod bulk;
mod latency;
mod noop;
mod proxy;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use lmdb::{Transaction, WriteFlags};

pub use bulk::BulkBench;
pub use latency::LatencyBench;
pub use noop::NoopBench;

use crate::embedded::{EmbeddedOptions, EmbeddedServer, EmbeddedStorage};
use crate::genvec::Scope;
use crate::names::{DbName, RowKey, TableName};
use crate::store::Mutation;
use crate::sync::peers::{PeerConfig, PeerStatus};
use proxy::{Proxy, ProxyHost};

/// The database and table every sync benchmark writes.
pub(crate) const DB: &str = "bench";
pub(crate) const TABLE: &str = "t";
/// Key and value sizes (keys are 16 hex characters, see [`super::records`]).
pub(crate) const KEY_BYTES: usize = 16;
pub(crate) const VALUE_BYTES: usize = 100;
/// Records per commit when preloading a node, and per raw LMDB transaction.
pub(crate) const BATCH: usize = 1000;

type Records = [(String, Vec<u8>)];

/// Runs `body` on a current-thread runtime inside a `LocalSet` (Cap'n Proto clients are
/// `!Send`).
pub(crate) fn on_local<T>(body: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    tokio::task::LocalSet::new().block_on(&runtime, body)
}

/// A node on durable LMDB in a temporary directory with a TLS peer listener on loopback.
pub(crate) async fn start_node() -> anyhow::Result<EmbeddedServer> {
    start_node_collecting(0).await
}

/// [`start_node`], collecting history in the background every `collect_every` seconds
/// (0: never).
pub(crate) async fn start_node_collecting(collect_every: u64) -> anyhow::Result<EmbeddedServer> {
    let options = EmbeddedOptions {
        collect_interval_secs: collect_every,
        peer_listen: Some("127.0.0.1:0".into()),
        redial_max: Duration::from_millis(500),
        // Room for a few million records (the default 1 GiB map holds about 1.2M).
        map_size: 16 << 30,
        ..EmbeddedOptions::new(EmbeddedStorage::Lmdb)
    };
    let server = EmbeddedServer::start_with(options).await?;
    server.node().open_database(&db()).await?;
    Ok(server)
}

pub(crate) fn db() -> DbName {
    DbName::parse(DB).expect("a valid name")
}

pub(crate) fn peer_addr(node: &EmbeddedServer) -> anyhow::Result<SocketAddr> {
    let address = node.peer_address();
    address
        .parse()
        .with_context(|| format!("peer address {address:?}"))
}

/// Makes `node` sync the table with `peer`, dialling it at `via`.
pub(crate) async fn add_peer(
    node: &EmbeddedServer,
    peer: &EmbeddedServer,
    via: SocketAddr,
) -> anyhow::Result<()> {
    let fingerprint = peer.node().identity().fingerprint().clone();
    let config = PeerConfig::new(
        &via.to_string(),
        fingerprint,
        DB,
        vec![Scope::new(TABLE, "")],
    )?;
    node.node().add_peer(config).await?;
    Ok(())
}

/// Two nodes linked both ways through counting proxies: `to_a` in front of A's peer listener
/// (B dials it), `to_b` in front of B's.
struct Link {
    to_a: Proxy,
    to_b: Proxy,
}

impl Link {
    /// Puts proxies in front of both listeners and makes each node a peer of the other.
    async fn new(host: &ProxyHost, a: &EmbeddedServer, b: &EmbeddedServer) -> anyhow::Result<Link> {
        let link = Link {
            to_a: host.proxy(peer_addr(a)?)?,
            to_b: host.proxy(peer_addr(b)?)?,
        };
        add_peer(b, a, link.to_a.addr).await?;
        add_peer(a, b, link.to_b.addr).await?;
        Ok(link)
    }

    /// Bytes through both proxies, both directions.
    fn bytes(&self) -> u64 {
        self.to_a.traffic.bytes() + self.to_b.traffic.bytes()
    }

    /// Waits until no byte has moved for 100 ms (at most 3 s), so trailing acknowledgements
    /// are counted; returns the byte count then.
    async fn settled_bytes(&self) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut last = self.bytes();
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = self.bytes();
            if now == last {
                break;
            }
            last = now;
        }
        last
    }
}

/// `node`'s sync status with `peer` (default if it is not a peer).
pub(crate) fn status(node: &EmbeddedServer, peer: &EmbeddedServer) -> PeerStatus {
    let fingerprint = peer.node().identity().fingerprint();
    node.node().peers().status(fingerprint).unwrap_or_default()
}

/// Polls `done` every `every` until it holds; fails naming `what` after `limit`.
async fn wait_until(
    what: &str,
    limit: Duration,
    every: Duration,
    mut done: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() >= deadline {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(every).await;
    }
    Ok(())
}

/// Waits until B has applied `count` records from A, then checks that their stores match.
pub(crate) async fn wait_synced(
    a: &EmbeddedServer,
    b: &EmbeddedServer,
    count: u64,
    limit: Duration,
) -> anyhow::Result<()> {
    let what = format!("B to receive {count} records from A");
    wait_until(&what, limit, Duration::from_millis(2), || {
        status(b, a).records_received >= count
    })
    .await?;
    let equal = || -> anyhow::Result<bool> {
        Ok(a.node().store().digest(&db())? == b.node().store().digest(&db())?)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !equal()? {
        if Instant::now() >= deadline {
            bail!("B received {count} records but its store differs from A's");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

fn put(key: &str, value: &[u8]) -> anyhow::Result<Mutation> {
    Ok(Mutation::Put {
        table: TableName::parse(TABLE)?,
        key: RowKey::parse(key)?,
        value: value.to_vec(),
    })
}

/// Commits `data` on `node` in batches of [`BATCH`].
pub(crate) async fn preload(node: &EmbeddedServer, data: &Records) -> anyhow::Result<()> {
    for chunk in data.chunks(BATCH) {
        let mutations = chunk
            .iter()
            .map(|(key, value)| put(key, value))
            .collect::<anyhow::Result<Vec<_>>>()?;
        node.node().commit(db(), mutations).await?;
    }
    Ok(())
}

/// A raw lmdb-rkv environment in a temporary directory, durable (fsync per commit).
pub(crate) fn raw_env() -> anyhow::Result<(tempfile::TempDir, lmdb::Environment, lmdb::Database)> {
    let dir = tempfile::tempdir()?;
    let env = lmdb::Environment::new()
        .set_map_size(1 << 30)
        .open(dir.path())?;
    let db = env.open_db(None)?;
    Ok((dir, env, db))
}

/// Raw durable LMDB puts of `data`, one transaction per [`BATCH`]: records per second, and
/// the data file's size after.
pub(crate) fn raw_lmdb_batched_rate(data: &Records) -> anyhow::Result<(f64, u64)> {
    let (dir, env, db) = raw_env()?;
    let start = Instant::now();
    for chunk in data.chunks(BATCH) {
        let mut txn = env.begin_rw_txn()?;
        for (key, value) in chunk {
            txn.put(db, key, value, WriteFlags::empty())?;
        }
        txn.commit()?;
    }
    let rate = super::rate(data.len(), start);
    Ok((rate, lmdb_file_bytes(dir.path())))
}

/// The size of the LMDB data file in `dir` (0 if unreadable).
pub(crate) fn lmdb_file_bytes(dir: &std::path::Path) -> u64 {
    std::fs::metadata(dir.join("data.mdb")).map_or(0, |meta| meta.len())
}

/// Milliseconds of each of `data.len()` raw durable LMDB commits of one record.
fn raw_lmdb_commit_ms(data: &Records) -> anyhow::Result<Vec<f64>> {
    let (_dir, env, db) = raw_env()?;
    let mut times = Vec::with_capacity(data.len());
    for (key, value) in data {
        let start = Instant::now();
        let mut txn = env.begin_rw_txn()?;
        txn.put(db, key, value, WriteFlags::empty())?;
        txn.commit()?;
        times.push(ms(start.elapsed()));
    }
    Ok(times)
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, serde::Serialize)]
struct Percentiles {
    p50: f64,
    p99: f64,
    max: f64,
    min: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `samples` (not empty).
    fn of(mut samples: Vec<f64>) -> Percentiles {
        samples.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            let index = (p * samples.len() as f64).ceil() as usize;
            samples[index.clamp(1, samples.len()) - 1]
        };
        Percentiles {
            p50: rank(0.50),
            p99: rank(0.99),
            max: samples[samples.len() - 1],
            min: samples[0],
        }
    }
}

/// A target and whether `value` meets it (`at_most`: lower is better).
pub(crate) fn target(value: f64, limit: f64, at_most: bool) -> serde_json::Value {
    let pass = if at_most {
        value <= limit
    } else {
        value >= limit
    };
    serde_json::json!({
        "value": value,
        if at_most { "at_most" } else { "at_least" }: limit,
        "pass": pass,
    })
}

/// Forgets the process's peak resident set so far (Linux `clear_refs` 5); false if refused.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The process's peak resident set in bytes (`VmHWM`), if readable.
fn peak_rss_bytes() -> Option<u64> {
    proc_status_bytes("VmHWM:")
}

/// The process's resident set in bytes (`VmRSS`), if readable.
pub(crate) fn rss_bytes() -> Option<u64> {
    proc_status_bytes("VmRSS:")
}

/// A figure of `/proc/self/status` given in kB (`field` with its colon), in bytes.
fn proc_status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = Percentiles::of(samples);
        assert_eq!((p.p50, p.p99, p.max, p.min), (50.0, 99.0, 100.0, 1.0));
        let p = Percentiles::of(vec![3.0]);
        assert_eq!((p.p50, p.p99), (3.0, 3.0));
    }

    #[test]
    fn targets_say_which_way_passes() {
        assert_eq!(target(1.5, 2.0, true)["pass"], true);
        assert_eq!(target(1.5, 2.0, false)["pass"], false);
        assert_eq!(target(1.5, 2.0, false)["at_least"], 2.0);
    }

    #[test]
    fn peak_rss_is_readable() {
        assert!(peak_rss_bytes().is_some_and(|bytes| bytes > 0));
        assert!(rss_bytes().is_some_and(|bytes| bytes > 0 && Some(bytes) <= peak_rss_bytes()));
    }
}
