//! A node: its storage (through [`Store`]), its client token, and the async face of the row
//! operations the RPC layer calls. Writes run on blocking threads, tracked so that shutdown
//! waits for every commit in flight; reads are short snapshot reads done in place.

use std::fs::{File, TryLockError};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::names::{DbName, KeyPrefix, RowKey, TableName};
use crate::store::{Mutation, PageLimit, Row, Store};
use crate::token::ClientToken;

/// Name of the lock file that keeps two nodes off one data directory.
const LOCK_FILE: &str = "node.lock";

/// One syncbase node's state, shared by every connection.
pub struct Node {
    store: Arc<Store>,
    token: ClientToken,
    writes: TaskTracker,
    _data_dir_lock: File,
}

impl Node {
    /// Opens the configured storage and loads (or makes) the client token.
    pub fn open(config: &Config) -> anyhow::Result<Node> {
        let data_dir_lock = lock_data_dir(&config.data_dir)?;
        let storage_config = config.storage_config();
        let storage = syncbase_storage::open(&storage_config)
            .with_context(|| format!("opening {} storage", storage_config.backend))?;
        let token = ClientToken::load_or_create(&config.token_path())?;
        Ok(Node {
            store: Arc::new(Store::new(storage)),
            token,
            writes: TaskTracker::new(),
            _data_dir_lock: data_dir_lock,
        })
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

    /// Every database's name.
    pub fn list_databases(&self) -> Result<Vec<String>> {
        self.store.list_databases()
    }

    /// One row's value.
    pub fn get(&self, db: &DbName, table: &TableName, key: &RowKey) -> Result<Option<Vec<u8>>> {
        self.store.get(db, table, key)
    }

    /// One page of a prefix scan (see [`Store::scan_page`]).
    pub fn scan_page(
        &self,
        db: &DbName,
        table: &TableName,
        prefix: &KeyPrefix,
        after: Option<&str>,
        limit: PageLimit,
    ) -> Result<Vec<Row>> {
        self.store.scan_page(db, table, prefix, after, limit)
    }

    /// Commits the mutations atomically; per mutation, whether its key existed before.
    pub async fn commit(&self, db: DbName, mutations: Vec<Mutation>) -> Result<Vec<bool>> {
        self.write(move |store| store.commit(&db, &mutations)).await
    }

    /// Runs a storage write on a blocking thread. The write finishes even if the caller's
    /// future is dropped, and [`Node::finish_writes`] waits for it.
    async fn write<T, F>(&self, write: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T> + Send + 'static,
    {
        let store = self.store.clone();
        let handle = self.writes.spawn_blocking(move || write(&store));
        match handle.await {
            Ok(result) => result,
            Err(join_error) => Err(Error::Internal(format!(
                "storage write failed: {join_error}"
            ))),
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
