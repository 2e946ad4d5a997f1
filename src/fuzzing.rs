//! Entry points for fuzz/ only (`fuzz/fuzz_targets/*.rs`, `fuzz/seeds`): each takes untrusted
//! bytes the way the node takes them from a peer or from its own storage, and must never
//! panic; errors are the expected outcome. Not part of the node's API.
//!
//! - [`delta_page`]: a `DeltaSink.push` message, decoded as the initiator's data sink does,
//!   then applied to a memory store holding database `db`;
//! - [`syncgroup_page`]: the same for a syncgroup metadata page, applied through the store's
//!   syncgroup transaction to a store holding [`seed_syncgroup`];
//! - [`knowledge`]: a `Knowledge` message;
//! - [`store_key_bytes`] and [`store_keys_round_trip`]: the storage key encodings;
//! - [`records`]: postcard decoding of every stored record type;
//! - [`seeds`]: real encoded inputs for each target, the committed seed corpus.

pub mod seeds;

use std::sync::{Arc, OnceLock};

use serde::{Serialize, de::DeserializeOwned};
use syncbase_storage::MemoryStorage;

use crate::genvec::{DeviceId, GenVector, Generation, Knowledge, Scope};
use crate::identity::Fingerprint;
use crate::names::{DbName, RowKey, TableName};
use crate::rpc::{reader_options, syncgroup_wire, wire};
use crate::schema::sync_capnp::delta_sink;
use crate::schema::types_capnp;
use crate::store::Version;
use crate::store::keys::{self, DbKeys};
use crate::store::{CursorUpdate, Mutation, PageFrom, PageRequest, ResumeCursor, Store, records};
use crate::syncgroup::LocalState;

pub use seeds::{seed_syncgroup, seeds};

/// The fingerprint of the peer every page comes from: the admin of [`seed_syncgroup`].
pub const PEER: &str = "00000000000000000000000000000000000000000000000000000000000000aa";

/// Decodes `bytes` as a flat capnp message of `DeltaSink.push` parameters, exactly as the
/// initiator's data sink does (`wire::decode_page`, `read_marks`, the resume token and epoch
/// notices), then takes the notices and applies the records and knowledge to a fresh memory
/// store holding database `db` and the rows of [`seeds::base_page`], so that fuzzed records
/// can meet existing rows and versions (`Store::take_notices`, `Store::apply_session_page`,
/// twice), makes local writes over the rows the page touched (`Store::commit`), and reads the
/// result back. Returns the records the first apply added (0 for a page that did not decode
/// or apply). Panics only on a bug.
pub fn delta_page(bytes: &[u8]) -> usize {
    let Ok(message) = read_message(bytes) else {
        return 0;
    };
    let Ok(params) = message.get_root::<delta_sink::push_params::Reader<'_>>() else {
        return 0;
    };
    let Ok(push) = decode_push(params) else {
        return 0;
    };
    let (store, db) = store_with_database();
    let (base_device, base_records) = BASE.get_or_init(seeds::base_page);
    store
        .apply(&db, *base_device, base_records, None)
        .expect("the base page applies");
    // The initiator refuses a responder that is device 0 or itself, and records it made.
    let me = store.device();
    if push.responder.0 == 0
        || push.responder == me
        || push.records.iter().any(|record| record.device() == me)
    {
        return 0;
    }
    let _ = store.take_notices(&db, push.responder, &push.notices);
    let cursor = match push.resume.clone() {
        Some(token) => CursorUpdate::Save(ResumeCursor {
            token,
            asked: Knowledge::new(),
        }),
        None => CursorUpdate::Keep,
    };
    let page = PageFrom {
        peer: PEER.to_owned(),
        cursor,
        asked_at: Some(store.lowerings()),
    };
    let apply = || {
        store.apply_session_page(
            &db,
            push.responder,
            &crate::store::LastWriterWins,
            &push.records,
            push.knowledge.as_ref(),
            &page,
        )
    };
    let added = apply().map_or(0, |applied| applied.records);
    let _ = apply();
    write_over(&store, &db, &push.records);
    read_back(&store, &db, &push.records);
    if let Some(token) = &push.resume {
        // As a responder takes it back from an initiator (`DataDeltaReq.resume`).
        let served = push.knowledge.clone().unwrap_or_default();
        let _ = store.resume_position(&db, push.responder, &served, token);
    }
    added as usize
}

/// The rows of every seed store before any sync: fuzzed pages are applied on top of them.
static BASE: OnceLock<(DeviceId, Vec<crate::store::LogRecord>)> = OnceLock::new();

/// Local writes over the first rows `records` touched, with valid names: a put, then a delete
/// in one batch with a put of the next row.
fn write_over(store: &Store, db: &DbName, records: &[crate::store::LogRecord]) {
    let rows: Vec<(TableName, RowKey)> = records
        .iter()
        .filter_map(|record| {
            let table = TableName::parse(&record.table).ok()?;
            Some((table, RowKey::parse(&record.row).ok()?))
        })
        .take(2)
        .collect();
    let put = |(table, key): &(TableName, RowKey)| Mutation::Put {
        table: table.clone(),
        key: key.clone(),
        value: b"local".to_vec(),
    };
    if let Some(first) = rows.first() {
        let _ = store.commit(db, &[put(first)]);
        let mut batch = vec![Mutation::Delete {
            table: first.0.clone(),
            key: first.1.clone(),
        }];
        batch.extend(rows.get(1).map(put));
        let _ = store.commit(db, &batch);
    }
}

/// What one data push decodes to.
struct DecodedPush {
    records: Vec<crate::store::LogRecord>,
    knowledge: Option<Knowledge>,
    responder: DeviceId,
    resume: Option<Vec<u8>>,
    notices: Vec<crate::store::Notice>,
}

fn decode_push(params: delta_sink::push_params::Reader<'_>) -> capnp::Result<DecodedPush> {
    let (records, knowledge) = wire::decode_page(params.get_batch()?)?;
    wire::read_marks(params.get_mark_generations()?, params.get_mark_digests()?)?;
    Ok(DecodedPush {
        records,
        knowledge,
        responder: DeviceId(params.get_responder_device()),
        resume: wire::read_resume_token(params.get_resume())?,
        notices: wire::read_epoch_notices(params.get_epoch_notices())?,
    })
}

/// Reads what the applied page left: the digest, the log as a peer would page it, the rows,
/// the resume cursor.
fn read_back(store: &Store, db: &DbName, records: &[crate::store::LogRecord]) {
    let _ = store.digest(db);
    let mut knowledge = Knowledge::new();
    for record in records {
        knowledge.insert(Scope::new(record.table.clone(), ""), GenVector::new());
    }
    let request = PageRequest {
        initiator: DeviceId(u64::MAX),
        knowledge: &knowledge,
        position: 0,
        echoes_from: 0,
        max_records: 1024,
        max_bytes: 1 << 20,
    };
    let _ = store.read_page(db, &request);
    let _ = store.knowledge(db);
    let _ = store.resume_cursor(db, PEER);
    if let Ok(everything) = crate::names::KeyPrefix::parse("") {
        let _ = store.read_changes(db, 0, None, &everything, crate::paging::WATCH.limit);
    }
}

/// Decodes `bytes` as a flat capnp message of `DeltaSink.push` parameters holding a syncgroup
/// page, as the initiator's syncgroup sink does (`wire::decode_syncgroup_page`), then applies
/// it from [`PEER`] through the store's syncgroup transaction to a memory store holding
/// [`seed_syncgroup`] as a provisional copy (any synced version replaces it), and reads the
/// syncgroups back. Returns the versions that replaced the held one. Panics only on a bug.
pub fn syncgroup_page(bytes: &[u8]) -> usize {
    let Ok(message) = read_message(bytes) else {
        return 0;
    };
    let Ok(params) = message.get_root::<delta_sink::push_params::Reader<'_>>() else {
        return 0;
    };
    let Ok(batch) = params.get_batch() else {
        return 0;
    };
    let Ok(page) = wire::decode_syncgroup_page(batch) else {
        return 0;
    };
    let (store, db) = store_with_database();
    let held = seed_syncgroup();
    store
        .syncgroup_txn(|txn| txn.put_provisional(held.clone(), Version(1), LocalState::default()))
        .expect("the seed syncgroup is stored");
    let sender = Fingerprint::parse(PEER).expect("PEER is a fingerprint");
    let replaced = store
        .syncgroup_txn(|txn| txn.apply(&db, &sender, &page.records, &page.knowledge))
        .map_or(0, |applied| applied.replaced);
    let _ = store.syncgroups(&db);
    let _ = store.syncgroup(&db, held.id);
    let wanted = [(held.id, GenVector::new())].into_iter().collect();
    let _ = store.syncgroup_deltas(&db, &wanted);
    replaced
}

/// Decodes `bytes` as a flat capnp message whose root is a `Knowledge`
/// (`wire::read_knowledge`); what decodes is written and read again and must be equal.
pub fn knowledge(bytes: &[u8]) {
    let Ok(message) = read_message(bytes) else {
        return;
    };
    let Ok(root) = message.get_root::<types_capnp::knowledge::Reader<'_>>() else {
        return;
    };
    if let Ok(knowledge) = wire::read_knowledge(root) {
        let mut out = capnp::message::Builder::new_default();
        wire::write_knowledge(&knowledge, out.init_root());
        let again = out
            .get_root_as_reader::<types_capnp::knowledge::Reader<'_>>()
            .expect("a written knowledge reads");
        let again = wire::read_knowledge(again).expect("written knowledge decodes");
        assert_eq!(again, knowledge, "knowledge round-trips through the wire");
    }
    if let Ok(root) = message.get_root::<types_capnp::knowledge::Reader<'_>>() {
        let _ = syncgroup_wire::read_syncgroup_knowledge(root);
    }
    if let Ok(root) = message.get_root::<types_capnp::gen_vector::Reader<'_>>() {
        let _ = wire::read_vector(root);
    }
}

/// Feeds arbitrary bytes to the storage key decoding the store does: the big-endian number
/// that ends a log, change-feed or syncgroup key (`keys::trailing_u64`), which must read the
/// last 8 bytes exactly when there are 8.
pub fn store_key_bytes(bytes: &[u8]) {
    let read = keys::trailing_u64(bytes);
    match bytes.len().checked_sub(8) {
        Some(start) => {
            let tail: [u8; 8] = bytes[start..].try_into().expect("8 bytes");
            assert_eq!(read, Some(u64::from_be_bytes(tail)));
        }
        None => assert_eq!(read, None),
    }
}

/// The parts of storage keys, as the fuzzer builds them.
#[derive(Debug, Clone)]
pub struct KeyParts {
    pub db: String,
    pub table: String,
    pub row: String,
    pub version: u64,
    pub position: u64,
    pub device: u64,
    pub generation: u64,
    pub sequence: u64,
    pub syncgroup: u64,
    /// A second number for the ordering checks.
    pub other: u64,
}

/// Encodes every key kind from `parts` and decodes it back: the number that ends a key reads
/// back (`trailing_u64`), a table's rows and DAG nodes stay under their prefixes and a
/// database's keys under its own, and binary parts sort numerically. Names holding the
/// separator byte cannot occur (they are UTF-8, which never holds `0xfe`).
pub fn store_keys_round_trip(parts: &KeyParts) {
    let keys = DbKeys::new(&parts.db);
    let trailing = [
        (keys.log(parts.position), parts.position),
        (keys.change(parts.sequence), parts.sequence),
        (keys.syncgroup(parts.syncgroup), parts.syncgroup),
        (keys.syncgroup_local(parts.syncgroup), parts.syncgroup),
        (keys.mark(DeviceId(parts.device)), parts.device),
        (
            keys.index(DeviceId(parts.device), Generation::new(parts.generation)),
            parts.generation,
        ),
        (
            keys.node(&parts.table, &parts.row, records::Version(parts.version)),
            parts.version,
        ),
        (keys::syncgroup_binding(parts.syncgroup), parts.syncgroup),
    ];
    for (key, number) in trailing {
        assert_eq!(keys::trailing_u64(&key), Some(number), "{key:?}");
    }
    let table_prefix = keys.table_prefix(&parts.table);
    assert!(
        keys.row(&parts.table, &parts.row)
            .starts_with(&table_prefix)
    );
    assert!(keys.log(parts.position).starts_with(&keys.log_prefix()));
    assert!(
        keys.change(parts.sequence)
            .starts_with(&keys.change_prefix())
    );
    assert!(keys.resume(&parts.row).starts_with(&keys.resume_prefix()));
    assert!(
        keys.syncgroup(parts.syncgroup)
            .starts_with(&keys.syncgroup_prefix())
    );
    let row = keys.row(&parts.table, &parts.row);
    assert_eq!(
        &row[table_prefix.len()..],
        parts.row.as_bytes(),
        "the row key ends with the row"
    );
    let catalog = keys::catalog(&parts.db);
    assert_eq!(
        &catalog[keys::catalog_prefix().len()..],
        parts.db.as_bytes()
    );
    let other_db = format!("{}x", parts.db);
    assert!(
        !DbKeys::new(&other_db)
            .row(&parts.table, &parts.row)
            .starts_with(&table_prefix)
    );
    let (low, high) = (
        parts.position.min(parts.other),
        parts.position.max(parts.other),
    );
    assert_eq!(keys.log(low) < keys.log(high), low < high);
    assert_eq!(
        keys.index(DeviceId(parts.device), Generation::new(low))
            < keys.index(DeviceId(parts.device), Generation::new(high)),
        low < high
    );
}

/// Decodes `bytes` (after a selector byte) as one of the stored record types with postcard
/// (`store::records::decode`); what decodes must encode and decode back to itself. Returns
/// whether it decoded.
pub fn records(bytes: &[u8]) -> bool {
    let Some((&selector, body)) = bytes.split_first() else {
        return false;
    };
    use crate::store::records::{Change, DagNode, LogEntry, RowHead, SyncState};
    match selector % 16 {
        0 => round_trip::<RowHead>(body),
        1 => round_trip::<DagNode>(body),
        2 => round_trip::<LogEntry>(body),
        3 => round_trip::<Change>(body),
        4 => round_trip::<SyncState>(body),
        5 => round_trip::<Knowledge>(body),
        6 => round_trip::<crate::store::Mark>(body),
        7 => round_trip::<Vec<crate::store::Epoch>>(body),
        8 => round_trip::<Vec<crate::store::Notice>>(body),
        9 => round_trip::<ResumeCursor>(body),
        10 => round_trip::<crate::syncgroup::SyncgroupRecord>(body),
        11 => round_trip::<LocalState>(body),
        12 => round_trip::<crate::syncgroup::invite::Invite>(body),
        13 => round_trip::<crate::syncgroup::Binding>(body),
        14 => round_trip::<crate::syncgroup::Proposal>(body),
        _ => round_trip::<crate::sync::peers::PeerConfig>(body),
    }
}

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(bytes: &[u8]) -> bool {
    let Ok(record) = records::decode::<T>(bytes, "fuzzed record") else {
        return false;
    };
    let encoded = records::encode(&record).expect("a decoded record encodes");
    let again = records::decode::<T>(&encoded, "re-encoded record").expect("decodes");
    assert_eq!(again, record, "a stored record round-trips");
    true
}

/// Reads `bytes` as one flat capnp message with the limits every connection applies.
fn read_message(
    bytes: &[u8],
) -> capnp::Result<capnp::message::Reader<capnp::serialize::OwnedSegments>> {
    capnp::serialize::read_message(bytes, reader_options())
}

/// A memory store holding database `db`.
fn store_with_database() -> (Store, DbName) {
    let store = Store::open(Arc::new(MemoryStorage::new()), crate::env::Env::system())
        .expect("a memory store opens");
    let db = DbName::parse("db").expect("db is a valid name");
    store.create_database(&db).expect("a database is created");
    (store, db)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seeds_of(target: &str) -> Vec<Vec<u8>> {
        seeds()
            .into_iter()
            .filter(|(of, _, _)| *of == target)
            .map(|(_, _, bytes)| bytes)
            .collect()
    }

    #[test]
    fn every_data_page_seed_applies_records_to_a_store() {
        let pages = seeds_of("delta_page");
        assert!(pages.len() >= 3);
        for page in pages {
            assert!(delta_page(&page) > 0);
        }
    }

    #[test]
    fn the_syncgroup_page_seeds_replace_the_held_copy() {
        let pages = seeds_of("syncgroup_page");
        assert!(!pages.is_empty());
        for page in pages {
            assert_eq!(syncgroup_page(&page), 1);
        }
    }

    #[test]
    fn knowledge_and_record_seeds_decode() {
        for bytes in seeds_of("knowledge") {
            let message = read_message(&bytes).unwrap();
            let root = message.get_root::<types_capnp::knowledge::Reader<'_>>();
            assert!(!wire::read_knowledge(root.unwrap()).unwrap().is_empty());
            knowledge(&bytes);
        }
        let stored = seeds_of("records");
        assert!(stored.len() >= 8);
        for bytes in stored {
            assert!(records(&bytes), "stored bytes {bytes:?} decode");
        }
        for bytes in seeds_of("store_keys") {
            store_key_bytes(&bytes);
        }
    }
}
