//! The embedded server: a whole node started in-process on an ephemeral loopback port, for
//! tests (ours and other Rust projects'). Its node runs on a thread of its own; dropping the
//! [`EmbeddedServer`] shuts the node down cleanly and waits for it.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use syncbase::embedded::{EmbeddedServer, EmbeddedStorage};
//! tokio::task::LocalSet::new()
//!     .run_until(async {
//!         let server = EmbeddedServer::start(EmbeddedStorage::Memory).await?;
//!         let mut request = server.service().database_request();
//!         request.get().set_name("demo");
//!         let db = request.send().promise.await?.get()?.get_db()?;
//!         # drop(db);
//!         anyhow::Ok(())
//!     })
//!     .await
//! # }
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::oneshot;

use crate::config::Config;
use crate::env::Env;
use crate::node::Node;
use crate::rpc::client::Session;
use crate::rpc::server::{Listeners, serve};
use crate::rpc::transport::Network;
use crate::schema::service_capnp::service;

/// Where an embedded node keeps its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbeddedStorage {
    /// Nothing on disk but the token, identity and address files in the data directory.
    Memory,
    /// Durable LMDB in the data directory.
    Lmdb,
}

/// How to start an embedded node.
#[derive(Clone)]
pub struct EmbeddedOptions {
    pub storage: EmbeddedStorage,
    /// How it reaches peers (TCP, or an in-memory network shared by several nodes).
    pub network: Network,
    /// Where its peer listener binds (`127.0.0.1:0` for TCP, a name on a memory network);
    /// None: it accepts no peers.
    pub peer_listen: Option<String>,
    /// A data directory to use (and keep); None: a temporary one removed on drop.
    pub data_dir: Option<PathBuf>,
    /// Longest pause between dials of an unreachable peer (tests that cut links use less).
    pub redial_max: std::time::Duration,
    /// LMDB map size in bytes at start.
    pub map_size: u64,
    /// The most the store may hold in bytes (`storage.max_map_size`); None: the default.
    pub max_map_size: Option<u64>,
    /// How it takes part in syncgroups.
    pub role: crate::config::Role,
    /// Seconds between background history collection passes (`sync.collect_interval_secs`;
    /// default 60, as `serve`'s; 0: none).
    pub collect_interval_secs: u64,
    /// Seconds after which a silent member no longer holds back history collection
    /// (`sync.horizon_secs`; default 7 days).
    pub horizon_secs: u64,
    /// The time and random sources it is opened with; None: the system's (`Env::system`).
    pub env: Option<Env>,
    /// The name it shows fellow syncgroup members (the config's `name`); None: the host name.
    pub name: Option<String>,
}

impl EmbeddedOptions {
    /// A node with `storage`, TCP, no peer listener and a temporary data directory.
    pub fn new(storage: EmbeddedStorage) -> EmbeddedOptions {
        EmbeddedOptions {
            storage,
            network: Network::Tcp,
            peer_listen: None,
            data_dir: None,
            redial_max: std::time::Duration::from_secs(5),
            map_size: syncbase_storage::StorageConfig::default().map_size,
            max_map_size: None,
            role: crate::config::Role::Normal,
            collect_interval_secs: crate::config::SyncSection::default().collect_interval_secs,
            horizon_secs: crate::config::Config::default().sync.horizon_secs,
            env: None,
            name: None,
        }
    }
}

enum DataDir {
    Temporary(tempfile::TempDir),
    Kept(PathBuf),
}

impl DataDir {
    fn path(&self) -> &Path {
        match self {
            DataDir::Temporary(dir) => dir.path(),
            DataDir::Kept(path) => path,
        }
    }
}

/// A running in-process node and a logged-in client session to it.
pub struct EmbeddedServer {
    addr: SocketAddr,
    token: String,
    node: Arc<Node>,
    session: Option<Session>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    data_dir: DataDir,
}

impl EmbeddedServer {
    /// Starts a node with `storage` in a fresh temporary directory, listening on an ephemeral
    /// loopback port, and logs in. Call inside a tokio `LocalSet`.
    pub async fn start(storage: EmbeddedStorage) -> anyhow::Result<EmbeddedServer> {
        EmbeddedServer::start_with(EmbeddedOptions::new(storage)).await
    }

    /// Starts a node as `options` say, and logs in. Call inside a tokio `LocalSet`.
    pub async fn start_with(options: EmbeddedOptions) -> anyhow::Result<EmbeddedServer> {
        let data_dir = match options.data_dir {
            Some(path) => DataDir::Kept(path),
            None => DataDir::Temporary(
                tempfile::tempdir().context("creating a temporary data directory")?,
            ),
        };
        let mut config = Config {
            data_dir: data_dir.path().to_path_buf(),
            listen: "127.0.0.1:0".parse()?,
            ..Config::default()
        };
        config.storage.backend = match options.storage {
            EmbeddedStorage::Memory => "memory".into(),
            EmbeddedStorage::Lmdb => "lmdb".into(),
        };
        config.sync.peer_listen = options.peer_listen;
        config.storage.map_size = options.map_size;
        config.storage.max_map_size = options.max_map_size;
        config.sync.role = options.role;
        config.sync.collect_interval_secs = options.collect_interval_secs;
        config.sync.horizon_secs = options.horizon_secs;
        config.name = options.name;
        config.sync.redial_max_ms = options
            .redial_max
            .as_millis()
            .try_into()
            .unwrap_or(u64::MAX);
        config.validate()?;
        let env = options.env.unwrap_or_else(Env::system);
        let node = Arc::new(Node::open_with(&config, options.network, env)?);
        let token = node.token().as_str().to_owned();
        let listener = std::net::TcpListener::bind(config.listen)
            .with_context(|| format!("binding {}", config.listen))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (shutdown, stopped) = oneshot::channel::<()>();
        let (ready, bound) = oneshot::channel::<anyhow::Result<()>>();
        let (thread_node, peer_listen) = (node.clone(), config.sync.peer_listen.clone());
        let thread = std::thread::Builder::new()
            .name("syncbase-embedded".into())
            .spawn(move || run_node(listener, peer_listen, thread_node, ready, stopped))
            .context("starting the embedded node thread")?;
        let mut server = EmbeddedServer {
            addr,
            token,
            node,
            session: None,
            shutdown: Some(shutdown),
            thread: Some(thread),
            data_dir,
        };
        bound.await.context("the embedded node thread ended")??;
        server.session = Some(Session::connect(addr, &server.token).await?);
        Ok(server)
    }

    /// The node itself, for tests that look inside (device id, store digests, peers).
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// The node's app API address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The node's client token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The node's data directory (token file, address file, LMDB store).
    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// The peer listener's address ("" if none).
    pub fn peer_address(&self) -> String {
        self.node.peer_address()
    }

    /// The logged-in `Service` capability.
    pub fn service(&self) -> &service::Client {
        &self
            .session
            .as_ref()
            .expect("the session lives until drop")
            .service
    }

    /// A new, separate logged-in connection.
    pub async fn connect(&self) -> anyhow::Result<Session> {
        Session::connect(self.addr, &self.token).await
    }
}

impl Drop for EmbeddedServer {
    fn drop(&mut self) {
        drop(self.session.take());
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The node thread: a runtime of its own; binds the peer listener, reports readiness, and
/// serves until told to stop.
fn run_node(
    listener: std::net::TcpListener,
    peer_listen: Option<String>,
    node: Arc<Node>,
    ready: oneshot::Sender<anyhow::Result<()>>,
    stopped: oneshot::Receiver<()>,
) {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = ready.send(Err(anyhow::anyhow!("embedded node: no runtime: {error}")));
            return;
        }
    };
    runtime.block_on(async move {
        let listeners = match bind(listener, peer_listen, &node).await {
            Ok(listeners) => listeners,
            Err(error) => {
                let _ = ready.send(Err(error));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        serve(listeners, node, async {
            let _ = stopped.await;
        })
        .await;
    });
}

async fn bind(
    listener: std::net::TcpListener,
    peer_listen: Option<String>,
    node: &Node,
) -> anyhow::Result<Listeners> {
    let app = tokio::net::TcpListener::from_std(listener)?;
    let peer = match peer_listen {
        Some(addr) => {
            let (listener, bound) = node
                .network()
                .bind(&addr)
                .await
                .with_context(|| format!("binding the peer address {addr}"))?;
            node.set_peer_address(bound);
            Some(listener)
        }
        None => None,
    };
    Ok(Listeners { app, peer })
}
