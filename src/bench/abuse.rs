//! `syncbase bench abuse`: how much memory attackers on loopback can make a node hold, and how
//! a normal client fares meanwhile. An embedded node (memory storage, a TCP peer listener)
//! serves a normal client whose put and get latency is measured first without attack. Then, per
//! attack ([`Attack`]), a child process (`syncbase bench abuse-attacker`, so the attacker's
//! own memory is not counted) opens its connections and holds them while the normal client is
//! measured again and the bench process's resident memory is sampled. One JSON line per
//! attack: node RSS growth (peak during the attack minus before), connections the node closed,
//! and the client's latency beside the baseline.

pub mod attack;
mod raw;

use crate::cli::output::outln;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

pub use attack::{Attack, Target};

use crate::embedded::{EmbeddedOptions, EmbeddedServer, EmbeddedStorage};
use crate::identity::Fingerprint;
use crate::rpc::client::remote_error;
use crate::schema::service_capnp::table;

/// The environment variable that hands the client token to the attacker process.
pub const TOKEN_ENV: &str = "SYNCBASE_ABUSE_TOKEN";
/// The row the unread-answers attack gets: 1 MiB.
const BIG_ROW: (&str, &str, &str) = ("bench", "t", "big");
const BIG_VALUE_BYTES: usize = 1 << 20;
/// Bytes of each value the normal client puts.
const VALUE_BYTES: usize = 100;
/// How long an attack is held after the client's measurement, sampling memory.
const HOLD: Duration = Duration::from_secs(2);

/// The abuse benchmark's settings.
pub struct AbuseBench {
    /// Connections per header attack.
    pub connections: usize,
    /// Calls of the unread-answers attack.
    pub gets: usize,
    /// Puts and gets the normal client times per phase.
    pub ops: usize,
    pub attacks: Vec<Attack>,
}

impl AbuseBench {
    pub fn run(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.ops > 0, "bench abuse needs --ops >= 1");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        tokio::task::LocalSet::new().block_on(&runtime, self.run_local())
    }

    async fn run_local(&self) -> anyhow::Result<()> {
        let mut options = EmbeddedOptions::new(EmbeddedStorage::Memory);
        options.peer_listen = Some("127.0.0.1:0".into());
        let server = EmbeddedServer::start_with(options).await?;
        let table = open_table(&server).await?;
        put(&table, BIG_ROW.2, &vec![7u8; BIG_VALUE_BYTES]).await?;
        let baseline = latency(&table, self.ops, "baseline").await;
        let target = Target {
            app: server.addr(),
            peer: Some(server.peer_address().parse()?),
            fingerprint: Some(server.node().identity().fingerprint().clone()),
            token: server.token().to_owned(),
            row: (BIG_ROW.0.into(), BIG_ROW.1.into(), BIG_ROW.2.into()),
        };
        for &attack in &self.attacks {
            let before = resident_bytes(None)?;
            let sampler = Sampler::start(None);
            let mut attacker = spawn_attacker(attack, &target, self.connections, self.gets)?;
            let report = attacker.report()?;
            let during = latency(&table, self.ops, attack_name(attack)).await;
            tokio::time::sleep(HOLD).await;
            let peak = sampler.stop();
            attacker.stop();
            let line = json!({
                "bench": "abuse",
                "attack": attack,
                "connections": if attack == Attack::UnreadAnswers { 1 } else { self.connections },
                "gets": if attack == Attack::UnreadAnswers { Some(self.gets) } else { None },
                "closed_by_node": report["closed_by_node"],
                "held_open": report["open"],
                "node_rss_before_mib": mib(before),
                "node_rss_growth_mib": mib(peak.saturating_sub(before)),
                "client_ok": baseline.ok && during.ok,
                "put_ms": during.put,
                "get_ms": during.get,
                "baseline_put_ms": baseline.put,
                "baseline_get_ms": baseline.get,
            });
            outln!("{line}")?;
            // Let the node close what the attacker left before the next attack.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Ok(())
    }
}

fn attack_name(attack: Attack) -> &'static str {
    match attack {
        Attack::AppPreAuth => "app-pre-auth",
        Attack::AppPostAuth => "app-post-auth",
        Attack::PeerPreAuth => "peer-pre-auth",
        Attack::PeerPostAuth => "peer-post-auth",
        Attack::UnreadAnswers => "unread-answers",
    }
}

fn mib(bytes: u64) -> f64 {
    (bytes as f64 / f64::from(1 << 20) * 10.0).round() / 10.0
}

/// The attacker child process.
struct Attacker {
    child: Child,
    stdout: BufReader<std::process::ChildStdout>,
}

fn spawn_attacker(
    attack: Attack,
    target: &Target,
    connections: usize,
    gets: usize,
) -> anyhow::Result<Attacker> {
    let peer = target.peer.map(|peer| peer.to_string()).unwrap_or_default();
    let fingerprint = target.fingerprint.as_ref().map_or("", Fingerprint::as_str);
    let (db, table, key) = &target.row;
    let mut child = Command::new(std::env::current_exe()?)
        .args(["bench", "abuse-attacker", "--attack", attack_name(attack)])
        .args(["--app", &target.app.to_string(), "--peer", &peer])
        .args([
            "--fingerprint",
            fingerprint,
            "--db",
            db,
            "--table",
            table,
            "--key",
            key,
        ])
        .args([
            "--connections",
            &connections.to_string(),
            "--gets",
            &gets.to_string(),
        ])
        .env(TOKEN_ENV, &target.token)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the attacker process")?;
    let stdout = BufReader::new(child.stdout.take().context("attacker stdout")?);
    Ok(Attacker { child, stdout })
}

impl Attacker {
    /// The attacker's report, once its connections are in place.
    fn report(&mut self) -> anyhow::Result<serde_json::Value> {
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        serde_json::from_str(&line).with_context(|| format!("the attacker reported {line:?}"))
    }

    fn stop(mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `syncbase bench abuse-attacker`: runs `attack` on `target`, prints one JSON line once its
/// connections are in place, and holds them until stdin closes.
pub fn run_attacker(
    attack: Attack,
    target: Target,
    connections: usize,
    gets: usize,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let attacking = attack::launch(attack, &target, connections, gets).await?;
        let line = json!({
            "attempted": attacking.attempted,
            "closed_by_node": attacking.closed_by_node,
            "open": attacking.open(),
        });
        let mut stdout = std::io::stdout();
        writeln!(stdout, "{line}")?;
        stdout.flush()?;
        tokio::task::spawn_blocking(|| std::io::stdin().read_line(&mut String::new())).await??;
        drop(attacking);
        anyhow::Ok(())
    })
}

/// Median and 99th percentile, in milliseconds.
#[derive(Debug, Clone, Copy, serde::Serialize)]
struct Latency {
    median: f64,
    p99: f64,
}

impl Latency {
    fn of(mut samples: Vec<Duration>) -> Option<Latency> {
        samples.sort();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        let ms = |d: Duration| (d.as_secs_f64() * 1e5).round() / 100.0;
        (!samples.is_empty()).then(|| Latency {
            median: ms(at(0.5)),
            p99: ms(at(0.99)),
        })
    }
}

struct Phase {
    put: Option<Latency>,
    get: Option<Latency>,
    ok: bool,
}

/// Times `ops` puts then `ops` gets of the normal client.
async fn latency(table: &table::Client, ops: usize, phase: &str) -> Phase {
    let (mut puts, mut gets, mut ok) = (Vec::new(), Vec::new(), true);
    let value = vec![1u8; VALUE_BYTES];
    for i in 0..ops {
        let start = Instant::now();
        ok &= put(table, &format!("{phase}-{i}"), &value).await.is_ok();
        puts.push(start.elapsed());
    }
    for i in 0..ops {
        let start = Instant::now();
        let mut request = table.get_request();
        request.get().set_key(format!("{phase}-{i}"));
        ok &= request.send().promise.await.is_ok();
        gets.push(start.elapsed());
    }
    Phase {
        put: Latency::of(puts),
        get: Latency::of(gets),
        ok,
    }
}

async fn open_table(server: &EmbeddedServer) -> anyhow::Result<table::Client> {
    super::app_table(&super::app_database(server, BIG_ROW.0).await?, BIG_ROW.1).await
}

async fn put(table: &table::Client, key: &str, value: &[u8]) -> anyhow::Result<()> {
    let mut request = table.put_request();
    request.get().set_key(key);
    request.get().set_value(value);
    request.send().promise.await.map_err(remote_error)?;
    Ok(())
}

/// Resident memory (VmRSS) of process `pid`, or of this process, in bytes.
pub fn resident_bytes(pid: Option<u32>) -> anyhow::Result<u64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".to_owned(),
    };
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .with_context(|| format!("no VmRSS in {path}"))?;
    Ok(kib * 1024)
}

/// Samples a process's resident memory every 20 ms on a thread of its own; `stop` gives the
/// peak.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl Sampler {
    pub fn start(pid: Option<u32>) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = 0;
            while !flag.load(Ordering::Relaxed) {
                peak = peak.max(resident_bytes(pid).unwrap_or(0));
                std::thread::sleep(Duration::from_millis(20));
            }
            peak.max(resident_bytes(pid).unwrap_or(0))
        });
        Sampler { stop, thread }
    }

    pub fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or(0)
    }
}
