//! Conversions between the engine's plain types and their Cap'n Proto form in
//! `schema/types.capnp`: log records, knowledge, and the pages a responder pushes. Decoding validates what the types can't
//! express (names, sizes, non-zero ids), so a malformed record is refused before the engine
//! sees it.

use crate::clock::Hlc;
use crate::error::{Error, Result};
use crate::genvec::{DeviceId, GenVector, Generation, Knowledge, Scope};
use crate::names::{self, RowKey, TableName};
use crate::rpc::client::error_message;
use crate::rpc::syncgroup_wire::{read_syncgroup_knowledge, read_syncgroup_record};
use crate::schema::types_capnp::{
    RecType, delta_resp, epoch_notice, gen_vector, knowledge, log_rec,
};
use crate::store::{
    DagNode, LogRecord, MAX_NOTICES, MAX_TOKEN_BYTES, Mark, Notice, RecordContent, Version,
};
use crate::sync::responder::MAX_MARKS;
use crate::sync::syncgroups::SyncgroupPage;

/// Most parents a record may name (writes have at most one; merges name every loser).
const MAX_PARENTS: usize = 64;

/// Fills `out` with `record`.
pub fn write_record(record: &LogRecord, mut out: log_rec::Builder<'_>) {
    if let RecordContent::Node(node) = &record.content {
        out.set_value(&node.value);
    }
    let mut meta = out.init_metadata();
    meta.set_id(record.device().0);
    meta.set_gen(record.generation().get());
    meta.set_obj_id(object_id(&record.table, &record.row).as_slice());
    meta.set_cur_vers(record.version.to_hex().as_str());
    let hlc = record.hlc();
    let mut time = meta.reborrow().init_upd_time();
    time.set_wall_nanos(hlc.wall_nanos);
    time.set_logical(hlc.logical);
    let parents = match &record.content {
        RecordContent::Node(node) => {
            meta.set_rec_type(RecType::Node);
            meta.set_delete(node.deleted);
            meta.set_batch_id(node.batch_id);
            meta.set_batch_count(node.batch_count);
            &node.parents
        }
        RecordContent::Link { parents, .. } => {
            meta.set_rec_type(RecType::Link);
            parents
        }
    };
    let mut list = meta.init_parents(parents.len() as u32);
    for (i, parent) in parents.iter().enumerate() {
        list.set(i as u32, parent.to_hex().as_str());
    }
}

/// Decodes and validates one record.
pub fn read_record(record: log_rec::Reader<'_>) -> Result<LogRecord> {
    let meta = record.get_metadata().map_err(malformed)?;
    let (table, row) = split_object_id(meta.get_obj_id().map_err(malformed)?)?;
    let version = Version::from_hex(text(meta.get_cur_vers())?)?;
    let device = DeviceId(meta.get_id());
    let generation = Generation::new(meta.get_gen());
    if device.0 == 0 || generation.is_none() {
        return Err(Error::invalid("record with device 0 or generation 0"));
    }
    let parents = read_parents(meta.get_parents().map_err(malformed)?)?;
    let time = meta.get_upd_time().map_err(malformed)?;
    let hlc = Hlc {
        wall_nanos: time.get_wall_nanos(),
        logical: time.get_logical(),
    };
    let content = match meta
        .get_rec_type()
        .map_err(|_| Error::invalid("unknown record type"))?
    {
        RecType::Node => {
            let value = record.get_value().map_err(malformed)?;
            names::check_value(value)?;
            RecordContent::Node(DagNode {
                parents,
                device,
                generation,
                hlc,
                deleted: meta.get_delete(),
                batch_id: meta.get_batch_id(),
                batch_count: meta.get_batch_count(),
                value: value.to_vec(),
                linked: Vec::new(),
            })
        }
        RecType::Link if parents.is_empty() => {
            return Err(Error::invalid("link record without parents"));
        }
        RecType::Link => RecordContent::Link {
            device,
            generation,
            parents,
            hlc,
        },
    };
    Ok(LogRecord {
        table,
        row,
        version,
        content,
    })
}

fn read_parents(list: capnp::text_list::Reader<'_>) -> Result<Vec<Version>> {
    if list.len() as usize > MAX_PARENTS {
        return Err(Error::invalid(format!(
            "record names {} parents, over {MAX_PARENTS}",
            list.len()
        )));
    }
    list.iter()
        .map(|parent| Version::from_hex(text(parent)?))
        .collect()
}

/// `table 0xfe row`: the object id of a row (reference `r 0xfe table 0xfe row` without the
/// row-space marker, since only rows sync today).
pub fn object_id(table: &str, row: &str) -> Vec<u8> {
    [table.as_bytes(), &[0xfe], row.as_bytes()].concat()
}

fn split_object_id(bytes: &[u8]) -> Result<(String, String)> {
    let separator = bytes
        .iter()
        .position(|byte| *byte == 0xfe)
        .ok_or_else(|| Error::invalid("object id without a 0xfe separator"))?;
    let table = std::str::from_utf8(&bytes[..separator])
        .map_err(|_| Error::invalid("object id table is not UTF-8"))?;
    let row = std::str::from_utf8(&bytes[separator + 1..])
        .map_err(|_| Error::invalid("object id row is not UTF-8"))?;
    let table = TableName::parse(table)?;
    let row = RowKey::parse(row)?;
    Ok((table.as_str().to_owned(), row.as_str().to_owned()))
}

/// Fills `out` with `knowledge`.
pub fn write_knowledge(knowledge: &Knowledge, out: knowledge::Builder<'_>) {
    let mut scopes = out.init_scopes(knowledge.len() as u32);
    for (i, (scope, vector)) in knowledge.iter().enumerate() {
        let mut entry = scopes.reborrow().get(i as u32);
        entry.set_scope(scope.to_bytes().as_slice());
        write_vector(vector, entry.init_vector());
    }
}

/// Fills `out` with `vector`.
pub fn write_vector(vector: &GenVector, out: gen_vector::Builder<'_>) {
    let mut entries = out.init_entries(vector.len() as u32);
    for (i, (device, generation)) in vector.iter().enumerate() {
        let mut entry = entries.reborrow().get(i as u32);
        entry.set_device_id(device.0);
        entry.set_generation(generation.get());
    }
}

/// Decodes knowledge, refusing scopes that are not `table 0xfe prefix` with valid names.
pub fn read_knowledge(reader: knowledge::Reader<'_>) -> Result<Knowledge> {
    let mut knowledge = Knowledge::new();
    for entry in reader.get_scopes().map_err(malformed)? {
        let scope = Scope::from_bytes(entry.get_scope().map_err(malformed)?)
            .map_err(|e| Error::invalid(format!("scope: {e}")))?;
        TableName::parse(&scope.table)?;
        let vector = read_vector(entry.get_vector().map_err(malformed)?)?;
        knowledge.insert(scope, vector);
    }
    Ok(knowledge)
}

/// Decodes a vector, refusing device 0.
pub fn read_vector(reader: gen_vector::Reader<'_>) -> Result<GenVector> {
    let mut vector = GenVector::new();
    for entry in reader.get_entries().map_err(malformed)? {
        if entry.get_device_id() == 0 {
            return Err(Error::invalid("generation vector names device 0"));
        }
        vector.raise(
            DeviceId(entry.get_device_id()),
            Generation::new(entry.get_generation()),
        );
    }
    Ok(vector)
}

/// A resume token as the wire carries it (`DataDeltaReq.resume`, `DeltaSink.push`'s
/// `resume`): opaque bytes, at most [`MAX_TOKEN_BYTES`]; empty means none.
pub fn read_resume_token(
    reader: capnp::Result<capnp::data::Reader<'_>>,
) -> Result<Option<Vec<u8>>> {
    let bytes = reader.map_err(malformed)?;
    if bytes.len() > MAX_TOKEN_BYTES {
        return Err(Error::invalid(format!(
            "a resume token of {} bytes (at most {MAX_TOKEN_BYTES})",
            bytes.len()
        )));
    }
    Ok((!bytes.is_empty()).then(|| bytes.to_vec()))
}

/// The epoch notices of a data push (`DeltaSink.push`'s `epochNotices`): at most
/// [`MAX_NOTICES`], each naming a non-zero device. Whether one may be taken (the announcer's
/// lineage) is the initiator's decision.
pub fn read_epoch_notices(
    reader: capnp::Result<capnp::struct_list::Reader<'_, epoch_notice::Owned>>,
) -> Result<Vec<Notice>> {
    let list = reader.map_err(malformed)?;
    if list.len() as usize > MAX_NOTICES {
        return Err(Error::invalid(format!(
            "{} epoch notices in one push (at most {MAX_NOTICES})",
            list.len()
        )));
    }
    list.iter()
        .map(|notice| {
            let old = DeviceId(notice.get_old_device());
            if old.0 == 0 {
                return Err(Error::invalid("an epoch notice names device 0"));
            }
            Ok(Notice {
                old,
                safe: Generation::new(notice.get_safe_generation()),
            })
        })
        .collect()
}

/// The responder's marks: generations and digests, pairwise.
pub fn read_marks(
    generations: capnp::primitive_list::Reader<'_, u64>,
    digests: capnp::primitive_list::Reader<'_, u64>,
) -> std::result::Result<Vec<Mark>, capnp::Error> {
    if generations.len() != digests.len() || generations.len() as usize > MAX_MARKS {
        return Err(Error::invalid("mark generations and digests do not pair up").into());
    }
    Ok(generations
        .iter()
        .zip(digests.iter())
        .map(|(generation, digest)| Mark {
            generation: Generation::new(generation),
            digest,
        })
        .collect())
}

/// Decodes a data page (`DeltaSink.push`'s `batch`): its records, then at most one knowledge
/// item, which ends it. A syncgroup record, or anything after the knowledge, is refused.
pub fn decode_page(
    batch: capnp::struct_list::Reader<'_, delta_resp::Owned>,
) -> std::result::Result<
    (
        Vec<crate::store::LogRecord>,
        Option<crate::genvec::Knowledge>,
    ),
    capnp::Error,
> {
    let mut records = Vec::with_capacity(batch.len() as usize);
    let mut knowledge = None;
    for (i, item) in batch.iter().enumerate() {
        match item.which()? {
            delta_resp::Rec(record) => {
                if knowledge.is_some() {
                    return Err(
                        Error::invalid("a record came after the responder's knowledge").into(),
                    );
                }
                records.push(read_record(record?).map_err(|e| in_item(i, e))?);
            }
            delta_resp::SgRec(_) => {
                return Err(Error::invalid("a syncgroup record in a data page").into());
            }
            delta_resp::RespVec(vector) => {
                if knowledge.is_some() {
                    return Err(Error::invalid("two knowledge items in one batch").into());
                }
                knowledge = Some(read_knowledge(vector?)?);
            }
        }
    }
    Ok((records, knowledge))
}

fn in_item(index: usize, error: Error) -> capnp::Error {
    let message = error.to_string();
    match message.split_once(": ") {
        Some((id, rest)) => capnp::Error::failed(format!("{id}: batch item {index}: {rest}")),
        None => capnp::Error::failed(message),
    }
}

/// Decodes a syncgroup metadata page: its versions, then the responder's knowledge, which ends
/// it. A data record, or anything after the knowledge, is refused.
pub fn decode_syncgroup_page(
    batch: capnp::struct_list::Reader<'_, delta_resp::Owned>,
) -> std::result::Result<SyncgroupPage, capnp::Error> {
    let mut page = SyncgroupPage::default();
    let mut ended = false;
    for (i, item) in batch.iter().enumerate() {
        if ended {
            return Err(Error::invalid("an item came after the responder's knowledge").into());
        }
        match item.which()? {
            delta_resp::SgRec(record) => page
                .records
                .push(read_syncgroup_record(record?).map_err(|e| in_item(i, e))?),
            delta_resp::RespVec(vector) => {
                page.knowledge = read_syncgroup_knowledge(vector?)?;
                ended = true;
            }
            delta_resp::Rec(_) => {
                return Err(Error::invalid("a data record in a syncgroup page").into());
            }
        }
    }
    Ok(page)
}

pub(crate) fn text(reader: capnp::Result<capnp::text::Reader<'_>>) -> Result<&str> {
    reader
        .map_err(malformed)?
        .to_str()
        .map_err(|_| Error::invalid("text is not UTF-8"))
}

pub(crate) fn malformed(error: capnp::Error) -> Error {
    Error::invalid(format!("malformed message: {}", error.extra))
}

impl From<Error> for capnp::Error {
    /// Every node error travels as `Failed` (never `Disconnected`, which tells clients to
    /// reconnect and retry) with the id-prefixed message as its description.
    fn from(error: Error) -> Self {
        capnp::Error::failed(error.to_string())
    }
}

impl From<capnp::Error> for Error {
    /// The node error a call's failure carries, decided here once for every peer call: a
    /// broken connection (`Disconnected`) is `ConnFail`; a remote exception keeps the kind its
    /// id prefix names (`NoAccess: ...` is `NoAccess`, `StorageFull: ...` is `StorageFull`),
    /// without capnp-rpc's `remote exception: ` wrapper; a text with no known id is
    /// `Internal`. (A malformed message being decoded is [`malformed`]'s `InvalidArgument`.)
    fn from(error: capnp::Error) -> Self {
        let message = error_message(&error);
        match error.kind {
            capnp::ErrorKind::Disconnected => Error::ConnFail(message.to_owned()),
            _ => Error::from_message(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_errors_travel_as_failed_and_keep_the_id() {
        let error: capnp::Error = Error::NoAccess("wrong client token".into()).into();
        assert_eq!(error.kind, capnp::ErrorKind::Failed);
        assert_eq!(error.extra, "NoAccess: wrong client token");
    }

    #[test]
    fn a_remote_exception_keeps_the_kind_the_peer_raised_and_a_disconnect_is_conn_fail() {
        let remote = |error: Error| {
            let sent = capnp::Error::from(error);
            Error::from(capnp::Error::failed(format!(
                "remote exception: {}",
                sent.extra
            )))
        };
        let refused = remote(Error::NoAccess("no Read capability".into()));
        assert!(
            matches!(&refused, Error::NoAccess(m) if m == "no Read capability"),
            "{refused:?}"
        );
        let full = remote(Error::StorageFull("raise storage.map_size".into()));
        assert!(matches!(full, Error::StorageFull(_)), "{full:?}");
        let state = remote(Error::BadState("pending".into()));
        assert!(matches!(state, Error::BadState(_)), "{state:?}");
        let internal = remote(Error::Internal("corrupt row".into()));
        assert!(
            matches!(&internal, Error::Internal(m) if m == "corrupt row"),
            "{internal:?}"
        );
        let broken = Error::from(capnp::Error::disconnected("connection reset".into()));
        assert!(
            matches!(&broken, Error::ConnFail(m) if m == "connection reset"),
            "{broken:?}"
        );
        let unknown = Error::from(capnp::Error::failed("method not implemented".into()));
        assert!(matches!(unknown, Error::Internal(_)), "{unknown:?}");
    }

    /// Reads a list of `count` notices, the first naming `first_device`.
    fn notices(count: u32, first_device: u64) -> Result<Vec<Notice>> {
        let mut message = capnp::message::Builder::new_default();
        let mut list: capnp::struct_list::Builder<'_, epoch_notice::Owned> =
            message.initn_root(count);
        for i in 0..count {
            let mut notice = list.reborrow().get(i);
            notice.set_old_device(if i == 0 { first_device } else { u64::from(i) });
            notice.set_safe_generation(u64::from(i));
        }
        let reader = message.get_root_as_reader().map_err(malformed)?;
        read_epoch_notices(Ok(reader))
    }

    #[test]
    fn epoch_notices_are_bounded_and_name_real_devices() {
        let read = notices(MAX_NOTICES as u32, 9).unwrap();
        assert_eq!(read.len(), MAX_NOTICES);
        assert_eq!(
            read[0],
            Notice {
                old: DeviceId(9),
                safe: Generation::NONE
            }
        );
        let error = notices(MAX_NOTICES as u32 + 1, 9).unwrap_err().to_string();
        assert!(error.starts_with("InvalidArgument:"), "{error}");
        let error = notices(1, 0).unwrap_err().to_string();
        assert!(error.contains("device 0"), "{error}");
    }

    fn round_trip(record: &LogRecord) -> Result<LogRecord> {
        let mut message = capnp::message::Builder::new_default();
        write_record(record, message.init_root::<log_rec::Builder<'_>>());
        read_record(
            message
                .get_root_as_reader::<log_rec::Reader<'_>>()
                .map_err(malformed)?,
        )
    }

    fn node_record() -> LogRecord {
        LogRecord {
            table: "t".into(),
            row: "k/1".into(),
            version: Version(0xabc),
            content: RecordContent::Node(DagNode {
                parents: vec![Version(1)],
                device: DeviceId(5),
                generation: Generation::new(3),
                hlc: Hlc {
                    wall_nanos: 99,
                    logical: 2,
                },
                deleted: false,
                batch_id: 7,
                batch_count: 2,
                value: b"value".to_vec(),
                linked: Vec::new(),
            }),
        }
    }

    #[test]
    fn records_round_trip() {
        let node = node_record();
        assert_eq!(round_trip(&node).unwrap(), node);
        let link = LogRecord {
            content: RecordContent::Link {
                device: DeviceId(9),
                generation: Generation::new(4),
                parents: vec![Version(2), Version(3)],
                hlc: Hlc {
                    wall_nanos: 1,
                    logical: 0,
                },
            },
            ..node
        };
        assert_eq!(round_trip(&link).unwrap(), link);
    }

    #[test]
    fn malformed_records_are_refused() {
        let mut bad_table = node_record();
        bad_table.table = String::new();
        assert!(
            round_trip(&bad_table)
                .unwrap_err()
                .to_string()
                .starts_with("InvalidArgument")
        );
        let mut zero_gen = node_record();
        if let RecordContent::Node(node) = &mut zero_gen.content {
            node.generation = Generation::NONE;
        }
        assert!(round_trip(&zero_gen).is_err());
    }

    #[test]
    fn knowledge_round_trips() {
        let mut knowledge = Knowledge::new();
        knowledge.insert(
            Scope::new("t", "a/"),
            [
                (DeviceId(1), Generation::new(4)),
                (DeviceId(2), Generation::new(9)),
            ]
            .into_iter()
            .collect(),
        );
        knowledge.insert(Scope::new("u", ""), GenVector::new());
        let mut message = capnp::message::Builder::new_default();
        write_knowledge(&knowledge, message.init_root::<knowledge::Builder<'_>>());
        let reader = message
            .get_root_as_reader::<knowledge::Reader<'_>>()
            .unwrap();
        assert_eq!(read_knowledge(reader).unwrap(), knowledge);
    }
}
