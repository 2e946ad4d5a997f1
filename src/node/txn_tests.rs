//! Access checks and the writes they guard commit in one storage transaction (issue 11): a
//! syncgroup change committed between a check and its write, or a failed commit, must not let
//! the two disagree. Driven deterministically through [`Interposed`], a memory storage that
//! runs a hook (another commit, through the same store) at the start of the next write
//! transaction, or fails the next commit.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use syncbase_storage::{
    MemoryStorage, ReadTxn, Result as StorageResult, Storage, StorageError, WriteTxn,
};

use super::{Node, NodeParts};
use crate::clock::ManualTime;
use crate::env::{Blocking, Env};
use crate::error::Error;
use crate::genvec::{DeviceId, Generation, Knowledge, Scope};
use crate::identity::{Fingerprint, NodeIdentity};
use crate::names::{DbName, RowKey, TableName};
use crate::store::test_txn::FailingCommit;
use crate::store::{Mutation, Notice, PageRequest, Store};
use crate::sync::initiator::{Push, Session};
use crate::sync::peers::PeerConfig;
use crate::syncgroup::access::Level;
use crate::syncgroup::{MemberInfo, Permissions, Spec, SyncgroupName};

type Hook = Box<dyn FnOnce() + Send>;

/// A memory storage that runs a hook before the next write transaction begins (as if another
/// writer had committed just before it), or fails the next commit.
#[derive(Default)]
struct Interposed {
    inner: MemoryStorage,
    before_next_write: Mutex<Option<Hook>>,
    fail_next_commit: AtomicBool,
}

impl Interposed {
    fn before_next_write(&self, hook: impl FnOnce() + Send + 'static) {
        *self.before_next_write.lock().unwrap() = Some(Box::new(hook));
    }
}

impl Storage for Interposed {
    fn read(&self) -> StorageResult<Box<dyn ReadTxn + '_>> {
        self.inner.read()
    }

    fn write(&self) -> StorageResult<Box<dyn WriteTxn + '_>> {
        let hook = self.before_next_write.lock().unwrap().take();
        if let Some(hook) = hook {
            hook();
        }
        let txn = self.inner.write()?;
        let fail = self.fail_next_commit.swap(false, Ordering::SeqCst);
        Ok(Box::new(FailingCommit {
            txn,
            error: fail.then(|| StorageError::Backend {
                backend: "interposed",
                message: "the commit failed (injected)".into(),
            }),
        }))
    }

    fn backend(&self) -> &'static str {
        "interposed"
    }
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

fn has_row(node: &Node, key: &str) -> bool {
    let (table, key) = (TableName::parse("t").unwrap(), RowKey::parse(key).unwrap());
    node.store().get(&db(), &table, &key).unwrap().is_some()
}

fn fingerprint(seed: u8) -> Fingerprint {
    NodeIdentity::from_seed([seed; 32])
        .unwrap()
        .fingerprint()
        .clone()
}

/// A node with identity `seed` on `storage`, committing inline.
fn node_on(storage: Arc<Interposed>, seed: u8) -> Arc<Node> {
    let mut env = Env::seeded(u64::from(seed), Arc::new(ManualTime::new(1_000_000_000)));
    env.blocking = Blocking::Inline;
    let identity = NodeIdentity::from_seed([seed; 32]).unwrap();
    let parts = NodeParts::simulated(storage, identity, env).unwrap();
    Arc::new(Node::assemble(parts).unwrap())
}

/// A syncgroup of `db` over table `t`, with this node as its admin (also used by other
/// modules' tests that need one).
pub(crate) async fn create_syncgroup(node: &Node) -> SyncgroupName {
    let name = SyncgroupName::parse("h:1/sg").unwrap();
    let spec = Spec {
        description: String::new(),
        perms: Permissions::only(node.identity().fingerprint()),
        prefixes: vec![Scope::new("t", "")],
        mount_tables: vec![],
        is_private: false,
    };
    node.create_syncgroup(db(), name.clone(), spec)
        .await
        .unwrap();
    name
}

/// Commits, through `node`'s own store, `member`'s eject from `name` as `Node::eject` writes it
/// (its device's known writes stay valid, later ones do not).
fn commit_eject(node: &Node, name: &SyncgroupName, member: &Fingerprint) {
    node.store()
        .syncgroup_txn(|txn| {
            let mut view = txn.get(name)?;
            let known = txn.data_knowledge(&view.record.sg.db)?;
            let before = view.record.sg.clone();
            assert!(view.record.sg.eject(member));
            view.record.sg.remember_former_writers(&before, &known);
            txn.write_version(view.record.sg, view.local)
        })
        .unwrap();
}

/// Lists `member` (device `device`) in `name` with ReadWrite, as a join at `node` would.
fn add_writer(node: &Node, name: &SyncgroupName, member: &Fingerprint, device: DeviceId) {
    node.store()
        .syncgroup_txn(|txn| {
            let mut view = txn.get(name)?;
            view.record.sg.spec.perms.grant(Level::ReadWrite, member);
            let info = MemberInfo {
                sync_priority: 0,
                is_server: false,
                device,
                address: String::new(),
                name: String::new(),
            };
            view.record.sg.joiners.insert(member.clone(), info);
            txn.write_version(view.record.sg, view.local)
        })
        .unwrap();
}

/// One page of everything `from` holds in `db` that `to` lacks.
fn page_for(to: &Store, from: &Store) -> crate::store::Page {
    let knowledge = to.knowledge(&db()).unwrap().request_for(
        &[Scope::new("t", "")],
        to.device(),
        Generation::NONE,
    );
    let request = PageRequest {
        initiator: to.device(),
        knowledge: &knowledge,
        position: 0,
        echoes_from: 0,
        max_records: 100,
        max_bytes: usize::MAX,
    };
    from.read_page(&db(), &request).unwrap()
}

#[tokio::test]
async fn an_app_write_checked_and_committed_in_one_transaction() {
    let storage = Arc::new(Interposed::default());
    let node = node_on(storage.clone(), 1);
    let name = create_syncgroup(&node).await;
    node.commit(db(), vec![put("before")]).await.unwrap();

    // This node is ejected from its own syncgroup by a commit landing after any check made
    // before the write began, and before the write's transaction.
    let (ejecting, me) = (node.clone(), fingerprint(1));
    storage.before_next_write(move || commit_eject(&ejecting, &name, &me));
    let refused = node.commit(db(), vec![put("after")]).await;

    assert!(
        matches!(refused, Err(Error::NoAccess(_))),
        "the write must be checked against the eject: {refused:?}"
    );
    assert!(has_row(&node, "before"));
    assert!(
        !has_row(&node, "after"),
        "a write the eject forbids was applied"
    );
}

#[tokio::test]
async fn a_page_whose_writer_was_ejected_after_the_request_is_refused_in_its_own_commit() {
    // Writer A (a plain store) writes one row; B holds a syncgroup listing A as a writer.
    let a = Store::open(Arc::new(MemoryStorage::new()), Env::system()).unwrap();
    a.commit(&db(), &[put("k")]).unwrap();
    let storage = Arc::new(Interposed::default());
    let b = node_on(storage.clone(), 1);
    let name = create_syncgroup(&b).await;
    let a_id = fingerprint(2);
    add_writer(&b, &name, &a_id, a.device());
    let scopes = vec![Scope::new("t", "")];
    let session = Session::new(b.clone(), a_id.clone(), db(), scopes.clone());
    let request = session.request().unwrap();
    let page = a
        .read_page(
            &db(),
            &PageRequest {
                initiator: request.initiator_device,
                knowledge: &request.knowledge,
                position: 0,
                echoes_from: 0,
                max_records: 100,
                max_bytes: usize::MAX,
            },
        )
        .unwrap();
    assert_eq!(page.records.len(), 1);
    assert!(page.knowledge.is_some(), "the page ends A's log");

    // A is ejected by a commit landing just before the page's own transaction.
    let ejecting = b.clone();
    storage.before_next_write(move || commit_eject(&ejecting, &name, &a_id));
    let applied = session
        .receive(Push {
            records: page.records,
            knowledge: page.knowledge,
            remaining: 0,
            responder: a.device(),
            resume: None,
            marks: vec![],
            notices: vec![],
        })
        .await
        .unwrap();

    assert_eq!(
        applied.records, 0,
        "the ejected writer's record was applied"
    );
    assert!(!has_row(&b, "k"));
    let known: Knowledge = b.store().knowledge(&db()).unwrap();
    assert_eq!(
        known.max_gen(a.device()),
        Generation::NONE,
        "the knowledge merged must stay below the refused record"
    );
    assert_ne!(a.device(), DeviceId(0));
}

#[tokio::test]
async fn a_failed_peer_persist_leaves_the_registry_unchanged() {
    let storage = Arc::new(Interposed::default());
    let node = node_on(storage.clone(), 1);
    node.open_database(&db()).await.unwrap();
    let peer_id = fingerprint(2);
    let peer = PeerConfig::new("p:1", peer_id.clone(), "db", vec![Scope::new("t", "")]).unwrap();

    storage.fail_next_commit.store(true, Ordering::SeqCst);
    assert!(node.add_peer(peer.clone()).await.is_err());
    assert!(
        !node.peers().is_declared(&peer_id),
        "a peer whose persist failed is declared"
    );

    node.add_peer(peer).await.unwrap();
    storage.fail_next_commit.store(true, Ordering::SeqCst);
    assert!(node.remove_peer(&peer_id).await.is_err());
    assert!(
        node.peers().is_declared(&peer_id),
        "a peer whose removal failed to persist is gone"
    );

    // The store agrees with the registry: a node reopened on it declares the peer too.
    drop(node);
    let reopened = node_on(storage, 1);
    assert!(reopened.peers().is_declared(&peer_id));
}

#[tokio::test]
async fn an_eject_bounds_its_former_writer_by_the_writes_applied_just_before_it() {
    let a = Store::open(Arc::new(MemoryStorage::new()), Env::system()).unwrap();
    a.commit(&db(), &[put("k")]).unwrap();
    let storage = Arc::new(Interposed::default());
    let b = node_on(storage.clone(), 1);
    let name = create_syncgroup(&b).await;
    let a_id = fingerprint(2);
    add_writer(&b, &name, &a_id, a.device());

    // A's record (generation 1, valid: A holds Write) is applied just before the eject's
    // transaction, after anything the eject read before it began.
    let page = page_for(b.store(), &a);
    let (applying, from) = (b.clone(), a.device());
    storage.before_next_write(move || {
        let applied = applying
            .store()
            .apply(&db(), from, &page.records, page.knowledge.as_ref())
            .unwrap();
        assert_eq!(applied.records, 1);
    });
    let me = b.identity().fingerprint().clone();
    let view = b.eject(me, name, a_id.clone()).await.unwrap();

    // As A itself sends them (relays by other members are not held to the cutoff).
    let sg = &view.record.sg;
    assert!(
        sg.device_may_write(a.device(), Generation::FIRST, &a_id),
        "the eject must keep valid the write this node held when it committed"
    );
    assert!(!sg.device_may_write(a.device(), Generation::new(2), &a_id));
}

#[tokio::test]
async fn epoch_notices_of_a_member_ejected_before_their_commit_are_not_taken() {
    let storage = Arc::new(Interposed::default());
    let b = node_on(storage.clone(), 1);
    let name = create_syncgroup(&b).await;
    let (a_id, a_device) = (fingerprint(2), DeviceId(0x0000_1234_5678_9abc));
    add_writer(&b, &name, &a_id, a_device);
    let announcer = a_device.with_epoch(5);
    let notices = vec![Notice {
        old: a_device,
        safe: Generation::NONE,
    }];

    let (ejecting, member) = (b.clone(), a_id.clone());
    storage.before_next_write(move || commit_eject(&ejecting, &name, &member));
    let taken = b
        .take_notices(db(), &a_id, announcer, notices)
        .await
        .unwrap();

    assert!(
        taken.notices.is_empty(),
        "an ejected member spoke for its lineage: {taken:?}"
    );
    assert!(b.store().taken_notices(&db()).unwrap().is_empty());
}

#[tokio::test]
async fn a_publish_is_confirmed_only_by_a_host_still_admin_when_it_commits() {
    let storage = Arc::new(Interposed::default());
    let host = node_on(storage.clone(), 1);
    host.set_peer_address("h:1".into());
    let name = create_syncgroup(&host).await;
    let (me, publisher) = (host.identity().fingerprint().clone(), fingerprint(2));
    // As a syncgroup published here by `publisher` and caught up: waiting for confirmation.
    host.store()
        .syncgroup_txn(|txn| {
            let mut view = txn.get(&name)?;
            view.record.sg.status = crate::syncgroup::Status::PublishPending;
            view.record.sg.spec.perms.grant(Level::Admin, &publisher);
            view.local.remote_publisher = Some(publisher.clone());
            txn.write_version(view.record.sg, view.local)
        })
        .unwrap();

    // The publisher takes the host's Admin away, committed just before the confirmation.
    let (changing, changed) = (host.clone(), name.clone());
    storage.before_next_write(move || {
        changing
            .store()
            .syncgroup_txn(|txn| {
                let mut view = txn.get(&changed)?;
                view.record.sg.spec.perms.revoke(&me);
                view.record.sg.spec.perms.grant(Level::Read, &me);
                txn.write_version(view.record.sg, view.local)
            })
            .unwrap();
    });
    host.confirm_published().await.unwrap();

    let view = host.syncgroup_view(&name).unwrap();
    assert_eq!(
        view.record.sg.status,
        crate::syncgroup::Status::PublishPending,
        "a host that is no admin wrote the confirming version"
    );
}
