//! What the oracle's tests share: memory stores on manual clocks synced by hand (a page read
//! from one, applied to another, as `store/tests.rs` does), with the oracle told of every
//! acknowledged write and clock reading.

use std::sync::Arc;

use syncbase_storage::{MemoryStorage, Scan, Storage};

use super::check::{Share, Violation, check_all};
use super::oracle::{Oracle, RowId};
use crate::clock::ManualTime;
use crate::genvec::Scope;
use crate::names::{DbName, RowKey, TableName};
use crate::store::{Applied, Mutation, RowHead, Store, Version};

pub(super) const SECOND: i64 = 1_000_000_000;

pub(super) fn db() -> DbName {
    DbName::parse("db").unwrap()
}

pub(super) fn put(key: &str, value: &str) -> Mutation {
    Mutation::Put {
        table: TableName::parse("t").unwrap(),
        key: RowKey::parse(key).unwrap(),
        value: value.as_bytes().to_vec(),
    }
}

pub(super) fn delete(key: &str) -> Mutation {
    Mutation::Delete {
        table: TableName::parse("t").unwrap(),
        key: RowKey::parse(key).unwrap(),
    }
}

pub(super) fn row(key: &str) -> RowId {
    RowId {
        db: db(),
        table: "t".into(),
        row: key.into(),
    }
}

pub(super) fn whole_table() -> Scope {
    Scope::new("t", "")
}

/// A byte-for-byte copy of a store's storage (a backup).
pub(super) fn copy(store: &Store) -> Arc<MemoryStorage> {
    let copy = Arc::new(MemoryStorage::new());
    let mut txn = copy.write().unwrap();
    let snapshot = store.storage().read().unwrap();
    snapshot
        .scan_prefix(b"", &mut |key, value| {
            txn.put(key, value)?;
            Ok(Scan::Continue)
        })
        .unwrap();
    txn.commit().unwrap();
    copy
}

/// Stores on manual clocks (node i's time starts at i seconds), the oracle, and the shares.
pub(super) struct Sim {
    pub(super) stores: Vec<Store>,
    /// Each store's storage, which survives a crash.
    storages: Vec<Arc<MemoryStorage>>,
    pub(super) times: Vec<ManualTime>,
    pub(super) oracle: Oracle,
    pub(super) shares: Vec<Share>,
}

impl Sim {
    /// `count` stores all sharing table `t`.
    pub(super) fn new(count: usize) -> Sim {
        let times: Vec<ManualTime> = (0..count)
            .map(|i| ManualTime::new(1_000 * SECOND + i as i64 * SECOND))
            .collect();
        let storages: Vec<Arc<MemoryStorage>> =
            (0..count).map(|_| Arc::new(MemoryStorage::new())).collect();
        let stores = storages
            .iter()
            .zip(&times)
            .map(|(storage, time)| open(storage.clone(), time))
            .collect();
        Sim {
            stores,
            storages,
            times,
            oracle: Oracle::new(),
            shares: vec![Share {
                db: db(),
                scope: whole_table(),
                nodes: (0..count).collect(),
            }],
        }
    }

    /// Commits on `node`, tells the oracle, then the clock reading after the step.
    pub(super) fn write(&mut self, node: usize, mutations: &[Mutation]) {
        let store = &self.stores[node];
        store.commit(&db(), mutations).unwrap();
        self.oracle
            .acknowledged(node, store, &db(), mutations)
            .unwrap();
        self.oracle
            .observe_clock(node, store.clock().last())
            .unwrap();
    }

    /// Pulls into `to` what `from` holds under the scopes of the shares holding both
    /// (nothing if none does).
    pub(super) fn sync(&mut self, to: usize, from: usize) -> Applied {
        let scopes: Vec<Scope> = self
            .shares
            .iter()
            .filter(|share| share.nodes.contains(&to) && share.nodes.contains(&from))
            .map(|share| share.scope.clone())
            .collect();
        if scopes.is_empty() {
            return Applied::default();
        }
        let applied = pull(&self.stores[to], &self.stores[from], &scopes);
        let last = self.stores[to].clock().last();
        self.oracle.observe_clock(to, last).unwrap();
        applied
    }

    /// Every store pulls from every other, twice (so resolutions travel back too).
    pub(super) fn sync_all(&mut self) -> usize {
        let mut resolutions = 0;
        for _ in 0..2 {
            for to in 0..self.stores.len() {
                for from in 0..self.stores.len() {
                    if to != from {
                        resolutions += self.sync(to, from).resolutions.len();
                    }
                }
            }
        }
        resolutions
    }

    /// Every store pulls from every other once; how many records moved.
    pub(super) fn sync_all_counting(&mut self) -> u64 {
        let mut records = 0;
        for to in 0..self.stores.len() {
            for from in 0..self.stores.len() {
                if to != from {
                    records += self.sync(to, from).records;
                }
            }
        }
        records
    }

    /// Replaces `node`'s store by one opened on `backup`, which moves to a new device at once
    /// (as the run marker makes a node do at open), and tells the oracle.
    pub(super) fn restore(&mut self, node: usize, backup: Arc<MemoryStorage>) {
        self.storages[node] = backup.clone();
        let restored = open(backup, &self.times[node]);
        let device = restored.device();
        restored
            .start_epoch(device, "restored from a backup".into(), None)
            .unwrap();
        let before = std::mem::replace(&mut self.stores[node], restored);
        let others: Vec<(usize, &Store)> = self
            .stores
            .iter()
            .enumerate()
            .filter(|(other, _)| *other != node)
            .collect();
        self.oracle
            .restored(node, &before, &self.stores[node], &others, &|_, _| true)
            .unwrap();
    }

    /// Node `node` stops uncleanly and restarts on the storage it had: it moves to a new
    /// device at open (the run marker's rule), and its clock only stays above what it
    /// committed.
    pub(super) fn crash_and_restart(&mut self, node: usize) {
        let restarted = open(self.storages[node].clone(), &self.times[node]);
        let device = restarted.device();
        restarted
            .start_epoch(device, "an unclean stop".into(), None)
            .unwrap();
        self.oracle.restarted(node, &restarted).unwrap();
        self.stores[node] = restarted;
    }

    pub(super) fn live(&self) -> Vec<(usize, &Store)> {
        self.stores.iter().enumerate().collect()
    }

    pub(super) fn check(&self) -> Result<(), Violation> {
        check_all(&self.oracle, &self.live(), &self.shares)
    }

    pub(super) fn head(&self, node: usize, key: &str) -> RowHead {
        let dag = self.stores[node].row_dag(&db(), "t", key).unwrap();
        dag.head.expect("the row has a head")
    }

    /// The version of the write `node` acknowledged last for `key`.
    pub(super) fn acked(&self, node: usize, key: &str) -> Version {
        let writes = self.oracle.writes().iter().rev();
        writes
            .filter(|write| write.node == node && write.row == row(key))
            .map(|write| write.version)
            .next()
            .expect("an acknowledged write")
    }
}

/// A store on `storage` whose clock reads `time`, with the database in its catalog (so its
/// clock is restored from it at open, and an epoch covers it).
pub(super) fn open(storage: Arc<MemoryStorage>, time: &ManualTime) -> Store {
    let env = crate::env::Env {
        time: Arc::new(time.clone()),
        ..crate::env::Env::system()
    };
    let store = Store::open(storage, env).unwrap();
    store.create_database(&db()).unwrap();
    store
}

/// Pulls everything `from` holds under `scopes` into `to`, as one session would.
pub(super) fn pull(to: &Store, from: &Store, scopes: &[Scope]) -> Applied {
    crate::store::test_sync::pull(to, from, &db(), scopes)
}
