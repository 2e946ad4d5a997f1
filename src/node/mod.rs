//! A node: its storage (through [`Store`]), clock, client token, and the async face of the
//! operations the RPC layer calls. Writes run on blocking threads, tracked so that shutdown
//! waits for every commit in flight; reads are short snapshot reads done in place. After
//! every commit the node bumps a watch channel, so live peer streams and watchers wake at once
//! (push, never poll). `peers` keeps the peer list (config file plus run-time additions,
//! persisted) in step with the registry the sync layer reads; `syncgroups` holds the
//! syncgroup operations, `access` the access decisions made from syncgroup permissions,
//! `watchers` where each live watch reads the watch feed (collection keeps what they lack).

mod access;
mod collect;
mod collect_status;
mod epoch;
mod host;
mod peers;
mod proposals;
mod syncgroups;
#[cfg(test)]
pub(crate) mod txn_tests;
mod watchers;

pub use crate::sync::host::WriterCheck;
pub use crate::sync::membership::{JoinReply, PublishOutcome, PublishRequest};
pub use access::TrustSets;
pub use syncgroups::MAX_INVITE_USES;
pub use watchers::{WatchPosition, Watchers};

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use syncbase_storage::Storage;
use tokio_util::task::TaskTracker;

use crate::changes::{ChangeReceiver, Changes};
use crate::config::{Config, Role};
use crate::env::{Blocking, Env};
use crate::error::{Error, Result};
use crate::genvec::DeviceId;
use crate::identity::{Fingerprint, NodeIdentity};
use crate::names::DbName;
use crate::rpc::limits::NodeBudget;
use crate::rpc::transport::Network;
use crate::store::{Applied, LastWriterWins, Mutation, Notice, Resolver, Store, TableData, Taken};
use crate::sync::peers::PeerRegistry;
use crate::sync::screen::{IncomingPage, Screened};
use crate::token::ClientToken;

pub use collect::{CollectSettings, Pass};
pub use collect_status::{CollectionStatus, HeldBack, OnDemand};

/// Name of the lock file that keeps two nodes off one data directory.
const LOCK_FILE: &str = "node.lock";

/// One syncbase node's state, shared by every connection.
pub struct Node {
    store: Arc<Store>,
    commits: Changes,
    token: ClientToken,
    writes: TaskTracker,
    /// Failed commits, each logged (a repeat with a count, see `tally::RepeatLog`).
    commit_failures: Arc<crate::tally::RepeatLog>,
    identity: NodeIdentity,
    /// Shared with the commits that read it inside their transaction (`apply_page`).
    peers: Arc<PeerRegistry>,
    /// How applied pages settle conflicts: [`LastWriterWins`] (app-resolved conflicts will
    /// plug in here); shared with the commits that use it (`apply_page`).
    resolver: Arc<dyn Resolver>,
    network: Network,
    peer_address: OnceLock<String>,
    /// The name this node shows fellow members (config `name`, default the host name; unset:
    /// none, a node assembled from parts).
    name: OnceLock<String>,
    redial_max: Duration,
    role: Role,
    collect: collect::CollectSettings,
    /// Where each live watch reads the feed (`node::watchers`).
    watchers: Watchers,
    incoming: NodeBudget,
    /// Where the run marker lives (None: a memory store, nothing to restore).
    marker_dir: Option<PathBuf>,
    /// The data directory's lock (None: a node without one, [`Node::assemble`]).
    _data_dir_lock: Option<File>,
}

/// What a node is made of, besides the files of a data directory.
pub struct NodeParts {
    pub storage: Arc<dyn Storage>,
    pub identity: NodeIdentity,
    pub token: ClientToken,
    /// Time, randomness and where commits run.
    pub env: Env,
    /// How the RPC layer reaches peers.
    pub network: Network,
    pub role: Role,
    /// The longest pause between dials of an unreachable peer.
    pub redial_max: Duration,
    /// How the node collects history (`node::collect`).
    pub collect: collect::CollectSettings,
}

impl NodeParts {
    /// A simulated node: `storage`, `identity` and `env` as given, a random client token, the
    /// normal role, a 2 s redial cap, and TCP for a network it never uses (the simulation
    /// links nodes through `sync::link` itself).
    pub fn simulated(
        storage: Arc<dyn Storage>,
        identity: NodeIdentity,
        env: Env,
    ) -> anyhow::Result<NodeParts> {
        Ok(NodeParts {
            storage,
            identity,
            token: ClientToken::generate()?,
            env,
            network: Network::Tcp,
            role: Role::Normal,
            redial_max: Duration::from_secs(2),
            collect: collect::CollectSettings::default(),
        })
    }
}

impl Node {
    /// Opens the configured storage, loads (or makes) the client token and the peer identity,
    /// and registers the peers of the config file and those added at run time before. Reads
    /// the system clock and draws from the operating system's generator (`Env::system`).
    pub fn open(config: &Config) -> anyhow::Result<Node> {
        Node::open_with(config, Network::Tcp, Env::system())
    }

    /// Like [`Node::open`], with peers reached over `network`, reading time and drawing
    /// randomness only through `env` (the client token and TLS key stay the operating
    /// system's).
    pub fn open_with(config: &Config, network: Network, env: Env) -> anyhow::Result<Node> {
        let data_dir_lock = lock_data_dir(&config.data_dir)?;
        let storage_config = config.storage_config();
        let storage = syncbase_storage::open(&storage_config)
            .with_context(|| format!("opening {} storage", storage_config.backend))?;
        // Upgraded or refused before anything reads it, naming the data directory.
        let place = format!("the data directory {:?}", config.data_dir);
        crate::store::format::prepare(storage.as_ref(), &place)?;
        let parts = NodeParts {
            storage,
            identity: NodeIdentity::load_or_create(&config.data_dir)?,
            token: ClientToken::load_or_create(&config.token_path())?,
            env,
            network,
            role: config.sync.role,
            redial_max: Duration::from_millis(config.sync.redial_max_ms),
            collect: config.collect_settings(),
        };
        let marker_dir = epoch::marker_dir(&config.data_dir, &storage_config.backend);
        let node = Node::build(parts, marker_dir, Some(data_dir_lock))?;
        node.name.get_or_init(|| config.node_name());
        node.load_peers(config)?;
        node.refresh_syncgroup_peers()?;
        Ok(node)
    }

    /// Opens a node from its parts, with no data directory: no lock file, no run marker, no
    /// config-file peers (the peers added at run time before are loaded from the store). For
    /// the deterministic simulation, whose nodes live on memory stores it keeps across
    /// crashes.
    pub fn assemble(parts: NodeParts) -> anyhow::Result<Node> {
        let node = Node::build(parts, None, None)?;
        node.load_stored_peers()?;
        node.refresh_syncgroup_peers()?;
        Ok(node)
    }

    fn build(
        parts: NodeParts,
        marker_dir: Option<PathBuf>,
        data_dir_lock: Option<File>,
    ) -> anyhow::Result<Node> {
        let store = Store::open(parts.storage, parts.env)?;
        if let Some(dir) = &marker_dir {
            epoch::check_marker(dir, &store)?;
        }
        Ok(Node {
            store: Arc::new(store),
            commits: Changes::new(),
            token: parts.token,
            writes: TaskTracker::new(),
            commit_failures: Arc::new(crate::tally::RepeatLog::new("storage commit")),
            identity: parts.identity,
            peers: Arc::default(),
            resolver: Arc::new(LastWriterWins),
            network: parts.network,
            peer_address: OnceLock::new(),
            name: OnceLock::new(),
            redial_max: parts.redial_max,
            role: parts.role,
            collect: parts.collect,
            watchers: Watchers::default(),
            incoming: NodeBudget::default(),
            marker_dir,
            _data_dir_lock: data_dir_lock,
        })
    }

    /// The name this node shows its fellow syncgroup members beside its fingerprint ("" if
    /// none): the config's `name` or the host name. Never an identity.
    pub fn name(&self) -> &str {
        self.name.get().map_or("", String::as_str)
    }

    /// The rule this node settles conflicts by: [`LastWriterWins`].
    pub fn resolver(&self) -> &dyn Resolver {
        self.resolver.as_ref()
    }

    /// The environment the node was opened with: its time and random sources.
    pub fn env(&self) -> &Env {
        self.store.env()
    }

    /// This node's TLS identity.
    pub fn identity(&self) -> &NodeIdentity {
        &self.identity
    }

    /// The peers this node syncs with.
    pub fn peers(&self) -> &PeerRegistry {
        &self.peers
    }

    /// How this node reaches peers.
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// Records the address the peer listener bound (once).
    pub fn set_peer_address(&self, address: String) {
        let _ = self.peer_address.set(address);
    }

    /// The node-wide budget of bytes of partly read large messages, shared by every
    /// connection (`rpc::limits`).
    pub fn node_budget(&self) -> &NodeBudget {
        &self.incoming
    }

    /// How this node collects history.
    pub fn collect_settings(&self) -> collect::CollectSettings {
        self.collect
    }

    /// The longest pause between dials of an unreachable peer.
    pub fn redial_max(&self) -> Duration {
        self.redial_max
    }

    /// How it takes part in its syncgroups (`sync.role`, `serve --role`).
    pub fn role(&self) -> Role {
        self.role
    }

    /// The host:port of its TLS peer listener ("" if it has none).
    pub fn peer_address(&self) -> String {
        self.peer_address.get().cloned().unwrap_or_default()
    }

    /// The client token apps log in with.
    pub fn token(&self) -> &ClientToken {
        &self.token
    }

    /// Fails with `NoAccess` unless `candidate` is the client token.
    pub fn check_token(&self, candidate: &str) -> Result<()> {
        if self.token.matches(candidate) {
            Ok(())
        } else {
            Err(Error::NoAccess("wrong client token".into()))
        }
    }

    /// Makes sure the database exists, creating it on first use.
    pub async fn open_database(&self, db: &DbName) -> Result<()> {
        if self.store.has_database(db)? {
            return Ok(());
        }
        let db = db.clone();
        self.write(move |store| store.create_database(&db)).await
    }

    /// Commits the mutations atomically; per mutation, whether its key existed before. The
    /// local write rule ([`Node::check_local_writes`]: `NoAccess:` under a syncgroup where this
    /// node may only read) is checked inside the transaction that commits the rows, so a
    /// syncgroup change cannot commit between the check and the write.
    /// A batch of only deletes that finds the store full collects the database's history
    /// and tries once more ([`Node::delete_collecting`]).
    pub async fn commit(&self, db: DbName, mutations: Vec<Mutation>) -> Result<Vec<bool>> {
        if collect_status::deletes_only(&mutations) {
            return self.delete_collecting(db, mutations).await;
        }
        self.commit_once(db, mutations).await
    }

    /// One attempt at [`Node::commit`].
    async fn commit_once(&self, db: DbName, mutations: Vec<Mutation>) -> Result<Vec<bool>> {
        let me = self.identity().fingerprint().clone();
        let declared = self.declared_scopes(&db);
        self.write(move |store| {
            store.commit_checked(&db, &mutations, |held| {
                let rows = mutations.iter().map(Mutation::row);
                access::local_writes_allowed(held, &declared, &me, rows)
            })
        })
        .await
    }

    /// [`Node::commit_once`] in a freeing transaction or not (`Store::commit_checked_as`).
    async fn commit_once_as(
        &self,
        db: DbName,
        mutations: Vec<Mutation>,
        freeing: bool,
    ) -> Result<Vec<bool>> {
        let me = self.identity().fingerprint().clone();
        let declared = self.declared_scopes(&db);
        self.write(move |store| {
            store.commit_checked_as(&db, &mutations, freeing, |held| {
                let rows = mutations.iter().map(Mutation::row);
                access::local_writes_allowed(held, &declared, &me, rows)
            })
        })
        .await
    }

    /// Applies a session's page from the responder `from` in one commit, with the resume
    /// cursor kept for its peer: inside the commit's transaction, the page is screened
    /// ([`IncomingPage::screen`]) by the [`WriterCheck`] of the syncgroups held there and the
    /// peer's declared scopes; conflicts are settled by [`Node::resolver`]. Returns what was
    /// applied and what the screen refused.
    pub async fn apply_page(
        &self,
        db: DbName,
        from: DeviceId,
        page: IncomingPage,
    ) -> Result<(Applied, Screened)> {
        let (peers, resolver) = (self.peers.clone(), self.resolver.clone());
        self.write(move |store| {
            store.apply_screened_page(&db, from, resolver.as_ref(), |held, nodes| {
                let declared = peers.declared_scopes(&page.peer, db.as_str());
                let check = WriterCheck::new(page.peer.clone(), held.to_vec(), declared);
                page.screen(&check, nodes)
            })
        })
        .await
    }

    /// Takes the epoch notices `peer`'s responder (device `announcer`) sent for `db`, if the
    /// announcer may speak for their devices (`Node::may_announce`, decided inside the
    /// transaction that takes them); see `store::notice`.
    pub async fn take_notices(
        &self,
        db: DbName,
        peer: &Fingerprint,
        announcer: DeviceId,
        notices: Vec<Notice>,
    ) -> Result<Taken> {
        if notices.is_empty() || !self.store.would_take_notices(&db, announcer, &notices)? {
            return Ok(Taken::default());
        }
        let (peers, who) = (self.peers.clone(), peer.clone());
        let taken = self
            .write(move |store| {
                store.take_notices_checked(&db, announcer, &notices, |held| {
                    let declared = !peers.declared_scopes(&who, db.as_str()).is_empty();
                    access::lineage_owner(held, declared, &who, announcer)
                })
            })
            .await?;
        for notice in &taken.notices {
            tracing::info!(
                %peer,
                old_device = format!("{:016x}", notice.old.0),
                safe_generation = notice.safe.get(),
                "a peer moved to an epoch: fetching its old device's records above the safe \
                 point again"
            );
        }
        Ok(taken)
    }

    /// The store, for reads (they are short snapshot reads, safe on async threads).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The tables of `db` holding live rows, with their live data ([`Store::tables`]: one
    /// snapshot scan of the database's row heads). The scan reads every row head, so it runs
    /// where writes run (`env.blocking`: tokio's blocking threads in production), not on
    /// the connection's thread, whose other calls would wait for it. Errors: `NoExist:` for
    /// a database this node does not have.
    pub async fn tables(&self, db: &DbName) -> Result<Vec<TableData>> {
        self.existing(db)?;
        let (store, db) = (self.store.clone(), db.clone());
        self.long_read("listing tables", move || store.tables(&db))
            .await
    }

    /// Runs `read`, a read that scans much of the store (every row head of a database),
    /// where writes run (`env.blocking`: tokio's blocking threads in production, inline in
    /// the simulation), so the calling connection's other calls do not wait for it.
    /// `what` names it in the `Internal:` error of a read that panicked.
    pub async fn long_read<T: Send + 'static>(
        &self,
        what: &str,
        read: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        match self.env().blocking {
            Blocking::Inline => read(),
            Blocking::Threads => tokio::task::spawn_blocking(read)
                .await
                .map_err(|error| Error::Internal(format!("{what} failed: {error}")))?,
        }
    }

    /// Registers a live watch of `db` (`node::watchers`): until it drops, collection keeps
    /// the row heads' changes from its position on.
    pub fn watch_position(&self, db: &DbName) -> WatchPosition {
        self.watchers.register(db.as_str())
    }

    /// A receiver that changes after every commit.
    pub fn subscribe(&self) -> ChangeReceiver {
        self.commits.subscribe()
    }

    /// Runs a storage write where the environment says ([`Blocking`]): on a blocking thread
    /// (the write finishes even if the caller's future is dropped, and
    /// [`Node::finish_writes`] waits for it), or inline in the calling task.
    pub(crate) async fn write<T, F>(&self, write: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T> + Send + 'static,
    {
        let store = self.store.clone();
        let commits = self.commits.clone();
        let commit = move || {
            let result = write(&store);
            if result.is_ok() {
                commits.bump();
            }
            result
        };
        let result = match self.env().blocking {
            Blocking::Inline => commit(),
            Blocking::Threads => match self.writes.spawn_blocking(commit).await {
                Ok(result) => result,
                Err(join_error) => Err(Error::Internal(format!(
                    "storage write failed: {join_error}"
                ))),
            },
        };
        self.log_commit(&result);
        result
    }

    /// Logs a write that failed in storage (full, or broken), not a refused one: a node whose
    /// commits fail says so in its log, once per streak of identical failures with a count.
    fn log_commit<T>(&self, result: &Result<T>) {
        match result {
            Ok(_) => self.commit_failures.succeeded(),
            Err(error @ (Error::StorageFull(_) | Error::Storage(_) | Error::Internal(_))) => {
                self.commit_failures.failed(&error.to_string());
            }
            Err(_) => {}
        }
    }

    /// Waits until every write in flight has committed (call once no connection is left).
    pub async fn finish_writes(&self) {
        self.writes.close();
        self.writes.wait().await;
    }

    /// The storage backend's name.
    pub fn backend(&self) -> &'static str {
        self.store.backend()
    }
}

/// Creates the data directory if needed and takes its lock file, so a second node (in this
/// process or another) cannot serve the same directory. The lock ends with the node.
fn lock_data_dir(dir: &Path) -> anyhow::Result<File> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating data directory {}", dir.display()))?;
    let path = dir.join(LOCK_FILE);
    let file =
        File::create(&path).with_context(|| format!("creating lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => anyhow::bail!(
            "data directory {} is in use by another syncbase node",
            dir.display()
        ),
        Err(TryLockError::Error(error)) => {
            Err(error).with_context(|| format!("locking {}", path.display()))
        }
    }
}
