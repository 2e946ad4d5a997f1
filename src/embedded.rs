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
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::oneshot;

use crate::config::Config;
use crate::node::Node;
use crate::rpc::client::Session;
use crate::schema::service_capnp::service;

/// Where an embedded node keeps its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbeddedStorage {
    /// Nothing on disk but the token and address files in a temporary directory.
    Memory,
    /// Durable LMDB in a temporary directory, removed when the server is dropped.
    Lmdb,
}

/// A running in-process node and a logged-in client session to it.
pub struct EmbeddedServer {
    addr: SocketAddr,
    token: String,
    session: Option<Session>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    data_dir: tempfile::TempDir,
}

impl EmbeddedServer {
    /// Starts a node with `storage` in a fresh temporary directory, listening on an ephemeral
    /// loopback port, and logs in. Call inside a tokio `LocalSet`.
    pub async fn start(storage: EmbeddedStorage) -> anyhow::Result<EmbeddedServer> {
        let data_dir = tempfile::tempdir().context("creating a temporary data directory")?;
        let mut config = Config {
            data_dir: data_dir.path().to_path_buf(),
            listen: "127.0.0.1:0".parse()?,
            ..Config::default()
        };
        config.storage.backend = match storage {
            EmbeddedStorage::Memory => "memory".into(),
            EmbeddedStorage::Lmdb => "lmdb".into(),
        };
        EmbeddedServer::start_with(config, data_dir).await
    }

    /// Starts a node from `config` (its `listen` should be a loopback address with port 0);
    /// `data_dir` is kept alive as long as the server.
    pub async fn start_with(
        config: Config,
        data_dir: tempfile::TempDir,
    ) -> anyhow::Result<EmbeddedServer> {
        config.validate()?;
        let node = Arc::new(Node::open(&config)?);
        let token = node.token().as_str().to_owned();
        let listener = std::net::TcpListener::bind(config.listen)
            .with_context(|| format!("binding {}", config.listen))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (shutdown, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("syncbase-embedded".into())
            .spawn(move || run_node(listener, node, stopped))
            .context("starting the embedded node thread")?;
        let mut server = EmbeddedServer {
            addr,
            token,
            session: None,
            shutdown: Some(shutdown),
            thread: Some(thread),
            data_dir,
        };
        server.session = Some(Session::connect(addr, &server.token).await?);
        Ok(server)
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

/// The node thread: a runtime of its own serving until told to stop.
fn run_node(listener: std::net::TcpListener, node: Arc<Node>, stopped: oneshot::Receiver<()>) {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "embedded node: no runtime");
            return;
        }
    };
    runtime.block_on(async move {
        match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => {
                crate::rpc::server::serve(listener, node, async {
                    let _ = stopped.await;
                })
                .await
            }
            Err(error) => tracing::error!(%error, "embedded node: listener"),
        }
    });
}
