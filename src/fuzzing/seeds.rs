//! The seed corpus: real pages and stored records, made by syncing memory stores by hand
//! (writes, a batch, a delete, a conflict and its resolution link, an epoch), then encoded as
//! a peer sends them or as the store keeps them. `fuzz/seeds` writes them under
//! `fuzz/corpus/<target>/`.

use std::collections::BTreeMap;
use std::sync::Arc;

use syncbase_storage::{MemoryStorage, Scan};

use crate::genvec::{DeviceId, GenVector, Generation, Knowledge, Scope};
use crate::identity::Fingerprint;
use crate::names::{DbName, RowKey, TableName};
use crate::rpc::{syncgroup_wire, wire};
use crate::schema::sync_capnp::delta_sink;
use crate::schema::types_capnp;
use crate::store::keys::{self, SEP};
use crate::store::{LogRecord, Mark, Mutation, Page, PageRequest, Store, SyncgroupKnowledge};
use crate::syncgroup::{
    LocalState, MemberInfo, Permissions, Spec, Status, Syncgroup, SyncgroupId, SyncgroupName,
};

/// The initiator every seed page is served to.
const INITIATOR: DeviceId = DeviceId(0x77);

/// The syncgroup the `syncgroup_page` target's store holds, administered by [`super::PEER`].
pub fn seed_syncgroup() -> Syncgroup {
    let admin = Fingerprint::parse(super::PEER).expect("PEER is a fingerprint");
    Syncgroup {
        id: SyncgroupId(0x5eed),
        name: SyncgroupName::parse("host:1/seed").expect("a valid name"),
        spec_version: "1".into(),
        spec: Spec {
            description: "seed".into(),
            perms: Permissions::only(&admin),
            prefixes: vec![Scope::new("t", "")],
            mount_tables: vec![],
            is_private: false,
        },
        creator: admin.clone(),
        db: "db".into(),
        status: Status::Running,
        joiners: BTreeMap::from([(
            admin,
            MemberInfo {
                sync_priority: 1,
                is_server: false,
                device: DeviceId(0x10),
                address: "127.0.0.1:7701".into(),
                name: String::new(),
            },
        )]),
        former_writers: GenVector::new(),
        former_lineages: Default::default(),
    }
}

/// Every seed: (target, file name, bytes).
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let db = DbName::parse("db").expect("a valid name");
    let (a, b) = (memory_store(&db), memory_store(&db));
    write_rows(&a, &db);
    commit(&b, &db, vec![put("t", "a", b"from b")]);
    let everything = scopes(&["t", "u"]);
    let from_a = page(&a, &db, &everything, 1 << 20);
    b.apply(&db, a.device(), &from_a.records, from_a.knowledge.as_ref())
        .expect("b applies a's page");
    let mut out = Vec::new();
    let mut push = |name: &str, page: &Page, responder: DeviceId| {
        out.push(("delta_page", name.to_owned(), push_message(page, responder)));
    };
    push("a-whole-log", &from_a, a.device());
    let first = page(&a, &db, &everything, 200);
    push("a-first-page", &first, a.device());
    let mut from_b = page(&b, &db, &everything, 1 << 20);
    from_b.initiator_marks = vec![Mark {
        generation: Generation::FIRST,
        digest: 0xd1,
    }];
    push("b-conflict-and-link", &from_b, b.device());
    a.start_epoch(a.device(), "seed".into(), None)
        .expect("an epoch starts");
    let mut after_epoch = page(&a, &db, &scopes(&["t"]), 1 << 20);
    after_epoch.notices = a.announced_notices(&db).expect("notices read");
    after_epoch.resume = a
        .resume_token(&db, INITIATOR, &scopes(&["t"]), after_epoch.next_position)
        .expect("a token");
    push("a-after-epoch", &after_epoch, a.device());
    let served = [("a", &from_a), ("b", &from_b), ("a-epoch", &after_epoch)];
    for (name, page) in served {
        if let Some(known) = &page.knowledge {
            out.push((
                "knowledge",
                format!("{name}-knowledge"),
                knowledge_message(known),
            ));
        }
    }
    out.push((
        "syncgroup_page",
        "newer-version".into(),
        syncgroup_message(),
    ));
    // Two stored records of each kind, and their keys.
    let mut kept = BTreeMap::<u8, usize>::new();
    for (i, (key, value)) in stored(&a).into_iter().chain(stored(&b)).enumerate() {
        if let Some(selector) = record_selector(&key) {
            let count = kept.entry(selector).or_default();
            *count += 1;
            if *count <= 2 {
                out.push((
                    "records",
                    format!("stored-{i:02}"),
                    [&[selector], &value[..]].concat(),
                ));
                out.push(("store_keys", format!("key-{i:02}"), key));
            }
        }
    }
    out
}

/// The device and the records of a store that made the rows of [`write_rows`]: the base
/// every fuzzed data page is applied over.
pub fn base_page() -> (DeviceId, Vec<LogRecord>) {
    let db = DbName::parse("db").expect("a valid name");
    let store = memory_store(&db);
    write_rows(&store, &db);
    let records = page(&store, &db, &scopes(&["t", "u"]), 1 << 20).records;
    (store.device(), records)
}

fn memory_store(db: &DbName) -> Store {
    let store = Store::open(Arc::new(MemoryStorage::new()), crate::env::Env::system())
        .expect("a memory store opens");
    store.create_database(db).expect("a database is created");
    store
}

/// Puts in two tables, a three-row batch and a delete.
fn write_rows(store: &Store, db: &DbName) {
    commit(
        store,
        db,
        vec![put("t", "a", b"first"), put("u", "x", &[0, 1, 2])],
    );
    commit(
        store,
        db,
        vec![
            put("t", "b", b"one"),
            put("t", "c", b"two"),
            put("t", "d", b""),
        ],
    );
    commit(
        store,
        db,
        vec![Mutation::Delete {
            table: TableName::parse("t").expect("a table"),
            key: RowKey::parse("b").expect("a key"),
        }],
    );
}

fn put(table: &str, key: &str, value: &[u8]) -> Mutation {
    Mutation::Put {
        table: TableName::parse(table).expect("a table"),
        key: RowKey::parse(key).expect("a key"),
        value: value.to_vec(),
    }
}

fn commit(store: &Store, db: &DbName, mutations: Vec<Mutation>) {
    store.commit(db, &mutations).expect("a commit");
}

fn scopes(tables: &[&str]) -> Knowledge {
    let mut knowledge = Knowledge::new();
    for table in tables {
        knowledge.insert(Scope::new(*table, ""), GenVector::new());
    }
    knowledge
}

/// The first page `store` serves [`INITIATOR`], at most `max_bytes` of records.
fn page(store: &Store, db: &DbName, knowledge: &Knowledge, max_bytes: usize) -> Page {
    let request = PageRequest {
        initiator: INITIATOR,
        knowledge,
        position: 0,
        echoes_from: u64::MAX,
        max_records: 1024,
        max_bytes,
    };
    store.read_page(db, &request).expect("a page reads")
}

/// A `DeltaSink.push` message carrying `page`, as the responder fills it.
fn push_message(page: &Page, responder: DeviceId) -> Vec<u8> {
    let mut message = capnp::message::Builder::new_default();
    let mut params = message.init_root::<delta_sink::push_params::Builder<'_>>();
    params.set_remaining(page.remaining);
    params.set_responder_device(responder.0);
    crate::rpc::peer::write_page(page, params);
    capnp::serialize::write_message_to_words(&message)
}

fn knowledge_message(knowledge: &Knowledge) -> Vec<u8> {
    let mut message = capnp::message::Builder::new_default();
    wire::write_knowledge(
        knowledge,
        message.init_root::<types_capnp::knowledge::Builder<'_>>(),
    );
    capnp::serialize::write_message_to_words(&message)
}

/// A syncgroup page carrying a version of [`seed_syncgroup`] written by a store, and its
/// knowledge.
fn syncgroup_message() -> Vec<u8> {
    let db = DbName::parse("db").expect("a valid name");
    let store = memory_store(&db);
    let mut sg = seed_syncgroup();
    sg.spec.description = "a later version".into();
    for member in sg.joiners.values_mut() {
        member.device = store.device();
    }
    store
        .syncgroup_txn(|txn| txn.write_version(sg, LocalState::default()))
        .expect("a version is written");
    let wanted: SyncgroupKnowledge = [(seed_syncgroup().id, GenVector::new())].into();
    let deltas = store.syncgroup_deltas(&db, &wanted).expect("deltas read");
    let mut message = capnp::message::Builder::new_default();
    let mut params = message.init_root::<delta_sink::push_params::Builder<'_>>();
    params.set_responder_device(store.device().0);
    let mut batch = params.init_batch(deltas.records.len() as u32 + 1);
    for (i, record) in deltas.records.iter().enumerate() {
        let item = batch.reborrow().get(i as u32);
        syncgroup_wire::write_syncgroup_record(record, item.init_sg_rec());
    }
    let last = batch.reborrow().get(deltas.records.len() as u32);
    syncgroup_wire::write_syncgroup_knowledge(&deltas.knowledge, last.init_resp_vec());
    capnp::serialize::write_message_to_words(&message)
}

/// Every (key, value) the store holds.
fn stored(store: &Store) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut all = Vec::new();
    let txn = store.storage().read().expect("a read transaction");
    txn.scan_prefix(b"", &mut |key, value| {
        all.push((key.to_vec(), value.to_vec()));
        Ok(Scan::Continue)
    })
    .expect("a scan");
    all
}

/// The `records` target's selector for the record a key holds (see `super::records`).
fn record_selector(key: &[u8]) -> Option<u8> {
    if key == keys::epochs() {
        return Some(7);
    }
    let prefix = [b"d".as_slice(), &[SEP], b"db", &[SEP]].concat();
    let kind = *key.strip_prefix(prefix.as_slice())?.first()?;
    Some(match kind {
        b'r' => 0,
        b'n' => 1,
        b'o' => 2,
        b'w' => 3,
        b's' => 4,
        b'k' => 5,
        b'm' => 6,
        b'e' | b'a' => 8,
        _ => return None,
    })
}
