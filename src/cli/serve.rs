//! `syncbase serve`: loads the config, applies the flags, opens the node, binds the app
//! address, records it in the data directory, and serves until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use tracing_subscriber::EnvFilter;

use crate::config::{Config, Role};
use crate::node::Node;
use crate::rpc::server::Listeners;
use crate::rpc::transport::PeerListener;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML config file (see ARCHITECTURE.md or `src/config.rs` for every key).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory: LMDB store, client.token, node.addr [default: ./syncbase-data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// App API address; 127.0.0.1:0 picks a free port [default: 127.0.0.1:7700].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Keep rows in memory only (the token and address files are still written).
    #[arg(long)]
    memory: bool,
    /// TLS peer listener address; 127.0.0.1:0 picks a free port [default: none, or the
    /// config's sync.peer_listen].
    #[arg(long, value_name = "ADDR")]
    peer_listen: Option<SocketAddr>,
    /// How this node takes part in syncgroups: normal, server, or leaf (advertises no
    /// address and syncs only with server members) [default: the config's sync.role].
    #[arg(long, value_enum)]
    role: Option<Role>,
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
    let node = Arc::new(Node::open(&config)?);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding the app address {}", config.listen))?;
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "the app API is plain TCP on a non-loopback address: anyone on the network can see the token");
    }
    let peer = bind_peers(&config, &node).await?;
    let addr_path = config.addr_path();
    write_addr_file(&addr_path, &addr.to_string())?;
    println!(
        "syncbase: serving the app API on {addr} ({} storage)",
        node.backend()
    );
    println!(
        "syncbase: client token in {}",
        config.token_path().display()
    );
    println!("syncbase: peer identity {}", node.identity().fingerprint());
    if peer.is_some() {
        println!("syncbase: accepting peers (TLS) on {}", node.peer_address());
    }
    let listeners = Listeners {
        app: listener,
        peer,
    };
    crate::rpc::server::serve(listeners, node, shutdown_signal()).await;
    let _ = std::fs::remove_file(&addr_path);
    let _ = std::fs::remove_file(config.peer_addr_path());
    Ok(())
}

/// Binds the TLS peer listener if configured, and records its address.
async fn bind_peers(config: &Config, node: &Node) -> anyhow::Result<Option<PeerListener>> {
    let Some(addr) = &config.sync.peer_listen else {
        return Ok(None);
    };
    let (listener, bound) = node
        .network()
        .bind(addr)
        .await
        .with_context(|| format!("binding the peer address {addr}"))?;
    write_addr_file(&config.peer_addr_path(), &bound)?;
    node.set_peer_address(bound);
    Ok(Some(listener))
}

/// Records a bound address so client verbs using the same data directory find the node.
fn write_addr_file(path: &Path, addr: &str) -> anyhow::Result<()> {
    let temp = path.with_extension("addr.tmp");
    std::fs::write(&temp, format!("{addr}\n"))
        .and_then(|()| std::fs::rename(&temp, path))
        .with_context(|| format!("writing the address file {}", path.display()))
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let sigterm = async {
        match terminate.as_mut() {
            Some(signal) => {
                signal.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = sigterm => {}
    }
    tracing::info!("shutdown requested");
}

fn init_logging(level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
