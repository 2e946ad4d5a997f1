//! `syncbase serve`: loads the config, applies the flags, opens the node, binds the app
//! address, records it in the data directory, and serves until SIGINT (Ctrl-C), SIGTERM or
//! SIGHUP, which all shut it down the same graceful way and remove the address files.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use tracing_subscriber::EnvFilter;

use crate::cli::output;
use crate::config::{Config, Role};
use crate::http::HttpServer;
use crate::node::Node;
use crate::rpc::server::Listeners;
use crate::rpc::transport::PeerListener;

/// Where `--http` alone serves the status page: loopback only.
const DEFAULT_HTTP: &str = "127.0.0.1:7780";

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML config file; the README's "Running a node" lists every key with its default.
    ///
    /// Keys: data_dir, listen, token_file, log_level; [storage] backend, path, map_size,
    /// max_map_size, reserve, durable; [sync] peer_listen, redial_max_ms, role, horizon_secs,
    /// collect_interval_secs; [[sync.peers]] address, fingerprint, database, scopes. Relative
    /// paths are relative to the file's directory; flags override the file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory: LMDB store, client.token, node.addr [default: ./syncbase-data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// App API address, HOST:PORT; 127.0.0.1:0 picks a free port [default: 127.0.0.1:7700].
    #[arg(long, value_name = "ADDR", value_parser = crate::address::resolve)]
    listen: Option<SocketAddr>,
    /// Keep rows in memory only (the token and address files are still written).
    #[arg(long)]
    memory: bool,
    /// TLS peer listener address; 127.0.0.1:0 picks a free port [default: none, or the
    /// config's sync.peer_listen].
    #[arg(long, value_name = "ADDR", value_parser = crate::address::resolve)]
    peer_listen: Option<SocketAddr>,
    /// How this node takes part in syncgroups: normal, server, or leaf (advertises no
    /// address and syncs only with server members) [default: the config's sync.role].
    #[arg(long, value_enum)]
    role: Option<Role>,
    /// Serve the live status page (/) and Prometheus metrics (/metrics) on ADDR (`--http`
    /// alone: 127.0.0.1:7780); any address but a loopback one asks for the client token
    /// (?token=... or Authorization: Bearer) [default: the config's http_listen, or none].
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = DEFAULT_HTTP)]
    http: Option<SocketAddr>,
    /// The name fellow syncgroup members see beside this node's fingerprint (at most 64
    /// bytes) [default: the config's name, else the host name].
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
}

impl ServeArgs {
    fn config(&self) -> anyhow::Result<Config> {
        let mut config = match &self.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        if let Some(dir) = &self.data_dir {
            config.data_dir = dir.clone();
        }
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if self.memory {
            config.storage.backend = "memory".into();
        }
        if let Some(addr) = self.peer_listen {
            config.sync.peer_listen = Some(addr.to_string());
        }
        if let Some(role) = self.role {
            config.sync.role = role;
        }
        if let Some(addr) = self.http {
            config.http_listen = Some(addr);
        }
        if let Some(name) = &self.name {
            config.name = Some(name.clone());
        }
        config.validate()?;
        Ok(config)
    }
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    init_logging(&config.log_level);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(config))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    // Watched before anything announces the node (the address files, the banner): a stop
    // signal sent as soon as `node.addr` appears must shut it down gracefully, not kill it.
    let stop = shutdown_signal();
    let node = Arc::new(Node::open(&config)?);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding the app address {}", config.listen))?;
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "the app API is plain TCP on a non-loopback address: anyone on the network can see the token");
    }
    let mut addr_files = AddrFiles::default();
    let peer = bind_peers(&config, &node, &mut addr_files).await?;
    let http = match config.http_listen {
        Some(addr) => Some(HttpServer::bind(addr, node.clone()).await?),
        None => None,
    };
    addr_files.write(&config.addr_path(), &addr.to_string())?;
    print_banner(&config, &node, addr, peer.is_some());
    if let Some(http) = &http {
        print_page_banner(http);
    }
    let page = http.map(|http| tokio::spawn(http.serve(std::future::pending())));
    let listeners = Listeners {
        app: listener,
        peer,
    };
    crate::rpc::server::serve(listeners, node, stop).await;
    if let Some(page) = page {
        page.abort();
    }
    drop(addr_files);
    Ok(())
}

/// Tells the operator where the status page is, and whether it asks for the token.
fn print_page_banner(http: &HttpServer) {
    let addr = http.local_addr();
    let line = if http.token_required() {
        format!(
            "syncbase: status page on http://{addr}/?token=TOKEN (the client token: any \
             address but loopback asks for it), metrics on /metrics\n"
        )
    } else {
        format!("syncbase: status page on http://{addr}/, metrics on http://{addr}/metrics\n")
    };
    if let Err(error) = output::write_bytes(line.as_bytes()) {
        tracing::warn!(%error, "the status page line was not printed; serving anyway");
    }
}

/// Tells the operator where the node listens. The node's stdout carries only this banner (its
/// log goes to stderr), so unlike the client verbs a closed stdout does not stop it: the
/// failure is logged and the node serves on.
fn print_banner(config: &Config, node: &Node, addr: SocketAddr, peers: bool) {
    let mut banner = format!(
        "syncbase: serving the app API on {addr} ({} storage)\n\
         syncbase: client token in {}\n\
         syncbase: peer identity {}\n",
        node.backend(),
        config.token_path().display(),
        node.identity().fingerprint()
    );
    if peers {
        banner += &format!(
            "syncbase: accepting peers (TLS) on {}\n",
            node.peer_address()
        );
    }
    if let Err(error) = output::write_bytes(banner.as_bytes()) {
        tracing::warn!(%error, "the startup banner was not printed; serving anyway");
    }
}

/// The address files (`node.addr`, `peer.addr`) this node wrote, removed when it stops,
/// whichever way it stops (a signal, an error after one was written, a panic), so no client
/// is sent to an address nobody serves.
#[derive(Default)]
struct AddrFiles {
    paths: Vec<PathBuf>,
}

impl AddrFiles {
    /// Records a bound address so client verbs using the same data directory find the node.
    fn write(&mut self, path: &Path, addr: &str) -> anyhow::Result<()> {
        let temp = path.with_extension("addr.tmp");
        std::fs::write(&temp, format!("{addr}\n"))
            .and_then(|()| std::fs::rename(&temp, path))
            .with_context(|| format!("writing the address file {}", path.display()))?;
        self.paths.push(path.to_path_buf());
        Ok(())
    }
}

impl Drop for AddrFiles {
    fn drop(&mut self) {
        for path in &self.paths {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Binds the TLS peer listener if configured, and records its address.
async fn bind_peers(
    config: &Config,
    node: &Node,
    addr_files: &mut AddrFiles,
) -> anyhow::Result<Option<PeerListener>> {
    let Some(addr) = &config.sync.peer_listen else {
        return Ok(None);
    };
    let addr = crate::address::resolve(addr)
        .with_context(|| format!("sync.peer_listen {addr:?}"))?
        .to_string();
    let (listener, bound) = node
        .network()
        .bind(&addr)
        .await
        .with_context(|| format!("binding the peer address {addr}"))?;
    addr_files.write(&config.peer_addr_path(), &bound)?;
    node.set_peer_address(bound);
    Ok(Some(listener))
}

/// Resolves when the node is told to stop: SIGINT (Ctrl-C), SIGTERM or SIGHUP, all alike.
///
/// SIGHUP is what a node started from a terminal or an ssh session gets when that session
/// closes; its default action would kill the process without a shutdown and leave the
/// address files behind. There is no config to reload and no log file to reopen (the log is
/// stderr), so it stops the node like SIGTERM. A SIGHUP already ignored when the node starts
/// (`nohup syncbase serve`) stays ignored. The handlers are installed when this is called,
/// not when the future is first polled.
pub(super) fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut kinds = vec![SignalKind::interrupt(), SignalKind::terminate()];
    if !hangup_ignored() {
        kinds.push(SignalKind::hangup());
    }
    let mut signals: Vec<_> = kinds
        .into_iter()
        .filter_map(|kind| signal(kind).ok())
        .collect();
    async move {
        if signals.is_empty() {
            tracing::warn!("no stop signal could be watched; the node stops only when killed");
            return std::future::pending().await;
        }
        let received = signals.iter_mut().map(|signal| Box::pin(signal.recv()));
        futures::future::select_all(received).await;
        tracing::info!("shutdown requested");
    }
}

/// Whether this process started with SIGHUP ignored (`nohup`), read from the `SigIgn` mask of
/// `/proc/self/status`; false where that is unreadable.
fn hangup_ignored() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| ignored_mask(&status))
        .is_some_and(|mask| mask & 1 << (SIGHUP - 1) != 0)
}

/// The `SigIgn:` mask of a `/proc/PID/status` text.
fn ignored_mask(status: &str) -> Option<u64> {
    let hex = status
        .lines()
        .find_map(|line| line.strip_prefix("SigIgn:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// SIGHUP's number, 1 on every Unix.
const SIGHUP: u32 = 1;

pub(super) fn init_logging(level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(log_in_colour(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR"),
        ))
        .try_init();
}

/// Colour codes only on a terminal, and not when `NO_COLOR` is set to anything non-empty
/// (no-color.org): a log redirected to a file or a pipe stays plain text. The one rule for
/// every colour the CLI prints (the log, `demo`).
pub(super) fn log_in_colour(terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    terminal && no_color.is_none_or(|value| value.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Serve {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn http_listen(argv: &[&str]) -> Option<SocketAddr> {
        use clap::Parser;
        let serve =
            Serve::try_parse_from(std::iter::once("serve").chain(argv.iter().copied())).unwrap();
        serve.args.config().unwrap().http_listen
    }

    #[test]
    fn http_alone_serves_the_page_on_loopback() {
        assert_eq!(http_listen(&[]), None, "no page unless asked");
        assert_eq!(
            http_listen(&["--http"]),
            Some(DEFAULT_HTTP.parse().unwrap())
        );
        assert_eq!(
            http_listen(&["--http", "0.0.0.0:9"]),
            Some("0.0.0.0:9".parse().unwrap())
        );
        assert_eq!(
            http_listen(&["--http", "--memory"]),
            Some(DEFAULT_HTTP.parse().unwrap()),
            "a flag after --http is not taken for its address"
        );
    }

    #[test]
    fn the_log_is_in_colour_only_on_a_terminal_without_no_color() {
        assert!(log_in_colour(true, None));
        assert!(log_in_colour(true, Some("".into())));
        assert!(!log_in_colour(true, Some("1".into())));
        assert!(!log_in_colour(false, None));
    }

    #[test]
    fn the_ignored_signal_mask_is_read_from_proc_status() {
        let status = "Name:\tsyncbase\nSigBlk:\t0000000000000000\nSigIgn:\t0000000000001001\n";
        let mask = ignored_mask(status).unwrap();
        assert_ne!(
            mask & 1 << (SIGHUP - 1),
            0,
            "SIGHUP (1) and SIGPIPE (13) ignored"
        );
        assert_eq!(ignored_mask("Name:\tx\n"), None);
    }
}
