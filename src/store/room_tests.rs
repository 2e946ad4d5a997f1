//! The store's write paths and the storage's room (`syncbase_storage::limits`): an app
//! commit, a page applied from a peer, a member's report and a collection step each redo
//! their whole transaction once when a commit finds the store full (LMDB's `MapFull` before
//! it grows or settles), and only deletes and collection open freeing transactions. Driven by
//! [`Tight`], a memory storage that fails the next commits with `MapFull` and counts the
//! transactions of each purpose.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use syncbase_storage::{MemoryStorage, ReadTxn, Result as StorageResult, StorageError, WriteTxn};

use super::*;
use crate::genvec::{GenVector, Scope};
use crate::store::test_txn::FailingCommit;

/// A memory storage whose next `full` commits fail with `MapFull` (writing nothing), and
/// which counts ordinary and freeing write transactions.
#[derive(Default)]
struct Tight {
    inner: MemoryStorage,
    full: AtomicUsize,
    ordinary: AtomicUsize,
    freeing: AtomicUsize,
}

impl Tight {
    fn begin(&self) -> StorageResult<Box<dyn WriteTxn + '_>> {
        let txn = self.inner.write()?;
        let full = self
            .full
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        Ok(Box::new(FailingCommit {
            txn,
            error: full.then_some(StorageError::MapFull { map_size: 1 << 20 }),
        }))
    }

    /// (ordinary, freeing) write transactions begun so far.
    fn counts(&self) -> (usize, usize) {
        (
            self.ordinary.load(Ordering::SeqCst),
            self.freeing.load(Ordering::SeqCst),
        )
    }
}

impl Storage for Tight {
    fn read(&self) -> StorageResult<Box<dyn ReadTxn + '_>> {
        self.inner.read()
    }

    fn write(&self) -> StorageResult<Box<dyn WriteTxn + '_>> {
        self.ordinary.fetch_add(1, Ordering::SeqCst);
        self.begin()
    }

    fn write_freeing(&self) -> StorageResult<Box<dyn WriteTxn + '_>> {
        self.freeing.fetch_add(1, Ordering::SeqCst);
        self.begin()
    }

    fn backend(&self) -> &'static str {
        "tight"
    }
}

fn opened() -> (Arc<Tight>, Store) {
    let storage = Arc::new(Tight::default());
    let store = Store::open(storage.clone(), crate::env::Env::system()).unwrap();
    (storage, store)
}

fn db() -> DbName {
    DbName::parse("db").unwrap()
}

fn put(key: &str) -> Mutation {
    Mutation::Put {
        table: TableName::parse("t").unwrap(),
        key: RowKey::parse(key).unwrap(),
        value: b"v".to_vec(),
    }
}

fn delete(key: &str) -> Mutation {
    Mutation::Delete {
        table: TableName::parse("t").unwrap(),
        key: RowKey::parse(key).unwrap(),
    }
}

fn knowledge_of(device: u64, generation: u64) -> Knowledge {
    let vector: GenVector = [(DeviceId(device), Generation::new(generation))]
        .into_iter()
        .collect();
    let mut knowledge = Knowledge::new();
    knowledge.insert(Scope::new("t", ""), vector);
    knowledge
}

#[test]
fn an_app_commit_that_finds_the_store_full_is_redone_once() {
    let (storage, store) = opened();
    storage.full.store(1, Ordering::SeqCst);
    assert_eq!(store.commit(&db(), &[put("k")]).unwrap(), vec![false]);
    let value = store.get(
        &db(),
        &TableName::parse("t").unwrap(),
        &RowKey::parse("k").unwrap(),
    );
    assert_eq!(value.unwrap().as_deref(), Some(&b"v"[..]));

    storage.full.store(2, Ordering::SeqCst);
    let error = store.commit(&db(), &[put("j")]).unwrap_err();
    assert!(matches!(error, Error::StorageFull(_)), "{error}");
    assert_eq!(
        storage.full.load(Ordering::SeqCst),
        0,
        "two attempts, no more"
    );
}

#[test]
fn only_a_batch_of_deletes_opens_a_freeing_transaction() {
    let (storage, store) = opened();
    let before = storage.counts();
    store.commit(&db(), &[put("k"), delete("j")]).unwrap();
    assert_eq!(
        storage.counts(),
        (before.0 + 1, before.1),
        "a mixed batch is ordinary"
    );
    store.commit(&db(), &[delete("k"), delete("j")]).unwrap();
    assert_eq!(storage.counts(), (before.0 + 1, before.1 + 1));
}

#[test]
fn a_peers_page_a_members_report_and_a_collection_step_are_redone_once() {
    let (storage, store) = opened();
    store.commit(&db(), &[put("k"), put("k2")]).unwrap();
    store.commit(&db(), &[put("k")]).unwrap();

    storage.full.store(1, Ordering::SeqCst);
    let knowledge = knowledge_of(7, 3);
    store
        .apply(&db(), DeviceId(7), &[], Some(&knowledge))
        .unwrap();
    assert_eq!(
        store
            .knowledge(&db())
            .unwrap()
            .known_gen("t", "k", DeviceId(7))
            .get(),
        3
    );

    storage.full.store(1, Ordering::SeqCst);
    store
        .note_member_knowledge(&db(), "member", &knowledge)
        .unwrap();
    assert_eq!(
        store.member_report(&db(), "member").unwrap().reports.len(),
        1
    );

    let cut = Cut {
        unshared: store.knowledge(&db()).unwrap(),
        own: (store.device(), store.state(&db()).unwrap().own_generation()),
        ..Cut::default()
    };
    storage.full.store(1, Ordering::SeqCst);
    let freeing = storage.counts().1;
    let (next, collected) = store
        .collect_step(&db(), &cut, CollectCursor::default(), 1_000)
        .unwrap();
    assert!(next.done);
    assert_eq!(collected.versions, 1, "k's first version: {collected:?}");
    assert_eq!(
        storage.counts().1,
        freeing + 2,
        "both attempts were freeing ones"
    );
}
