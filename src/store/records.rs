//! The records a database keeps beside its rows, and their storage encoding (postcard): row
//! heads, DAG nodes, log entries, the change feed and the sync state. Plain data; the rules
//! that write them live in `local` (app commits) and `apply` (records from peers).

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::clock::Hlc;
use crate::env::Random;
use crate::error::{Error, Result};
use crate::genvec::{DeviceId, Generation};

/// A version of one object: a random non-zero 64-bit number, unique per object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version(pub u64);

impl Version {
    /// A fresh random non-zero version drawn from `random` (the node's `Env`); fails only
    /// as `random` does (`Internal: no randomness`).
    pub fn random(random: &dyn Random) -> Result<Version> {
        loop {
            let value = random.next_u64()?;
            if value != 0 {
                return Ok(Version(value));
            }
        }
    }

    /// The version as 16 lowercase hex digits (its wire form).
    pub fn to_hex(self) -> String {
        format!("{:016x}", self.0)
    }

    /// Parses the wire form.
    pub fn from_hex(text: &str) -> Result<Version> {
        let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_hexdigit());
        match u64::from_str_radix(text, 16) {
            Ok(value) if digits && value != 0 && text.len() <= 16 => Ok(Version(value)),
            _ => Err(Error::invalid(format!(
                "version {text:?} is not 1-16 hex digits, non-zero"
            ))),
        }
    }
}

/// The current state of a row: its DAG head, and its value unless the head is a delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowHead {
    pub version: Version,
    pub deleted: bool,
    pub value: Vec<u8>,
}

/// What a row head keeps of its DAG node once that node's record is collected
/// (`store::collect`): everything a later reader of the head's node needs (conflict
/// resolution, catch-up by state, the responder, `apply`), the value and the deleted flag
/// being the row head's own. Stored after the row head's bytes, behind [`COLLECTED_HEAD`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadNode {
    pub parents: Vec<Version>,
    pub device: DeviceId,
    pub generation: Generation,
    pub hlc: Hlc,
    pub linked: Vec<Version>,
}

/// The byte after a row head's own bytes that says a [`HeadNode`] follows (format 1). A row
/// head written before collected heads existed ends with its value: no byte follows.
pub const COLLECTED_HEAD: u8 = 1;

impl HeadNode {
    /// What a head keeps of `node`, named by the pair its log entry gives it.
    pub fn of(node: &DagNode, device: DeviceId, generation: Generation) -> HeadNode {
        HeadNode {
            parents: node.parents.clone(),
            device,
            generation,
            hlc: node.hlc,
            linked: node.linked.clone(),
        }
    }

    /// The head's DAG node again: a record alone in its batch (its batch was collected).
    pub fn dag_node(&self, head: &RowHead) -> DagNode {
        DagNode {
            parents: self.parents.clone(),
            device: self.device,
            generation: self.generation,
            hlc: self.hlc,
            deleted: head.deleted,
            batch_id: 0,
            batch_count: 1,
            value: head.value.clone(),
            linked: self.linked.clone(),
        }
    }
}

/// A row head as stored: the head, and its node's metadata if that node was collected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredHead {
    pub head: RowHead,
    pub node: Option<HeadNode>,
}

impl StoredHead {
    /// The head's DAG node if it is kept here (collected), for `version`.
    pub fn node_at(&self, version: Version) -> Option<DagNode> {
        self.node
            .as_ref()
            .filter(|_| self.head.version == version)
            .map(|node| node.dag_node(&self.head))
    }
}

/// Encodes a row head for storage: the [`RowHead`] (postcard), then, for a collected head,
/// [`COLLECTED_HEAD`] and its [`HeadNode`] (postcard).
pub fn encode_head(head: &RowHead, node: Option<&HeadNode>) -> Result<Vec<u8>> {
    let mut bytes = encode(head)?;
    if let Some(node) = node {
        bytes.push(COLLECTED_HEAD);
        bytes.extend(encode(node)?);
    }
    Ok(bytes)
}

/// Decodes a stored row head, either form; `Internal: corrupt row head` if the bytes are
/// neither. The [`RowHead`] part alone also decodes with [`decode`].
pub fn decode_head(bytes: &[u8]) -> Result<StoredHead> {
    let (head, rest) = split_head(bytes)?;
    let node = match rest {
        [] => None,
        [COLLECTED_HEAD, node @ ..] => match postcard::take_from_bytes::<HeadNode>(node) {
            Ok((node, [])) => Some(node),
            _ => return Err(Error::Internal("corrupt row head: its DAG node".into())),
        },
        [format, ..] => {
            return Err(Error::Internal(format!(
                "corrupt row head: unknown format {format}"
            )));
        }
    };
    Ok(StoredHead { head, node })
}

/// A stored row head's [`RowHead`] and the bytes after it (empty unless collected).
pub fn split_head(bytes: &[u8]) -> Result<(RowHead, &[u8])> {
    postcard::take_from_bytes(bytes).map_err(|e| Error::Internal(format!("corrupt row head: {e}")))
}

/// A node of an object's version DAG: one write (a put or a delete) as its writer made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DagNode {
    /// The versions this write replaced (0 for a first write; 2+ only after merges).
    pub parents: Vec<Version>,
    /// The device that wrote it and that device's generation for it.
    pub device: DeviceId,
    pub generation: Generation,
    /// When it was written (the writer's HLC).
    pub hlc: Hlc,
    pub deleted: bool,
    /// The app transaction it came from (0 = none) and that transaction's size.
    pub batch_id: u64,
    pub batch_count: u64,
    pub value: Vec<u8>,
    /// Parents added later by links (resolutions that picked this version); local only, never
    /// sent as part of the node (the links travel as their own records).
    pub linked: Vec<Version>,
}

/// What a log entry records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    /// A DAG node was added; its metadata is the node at (object, version).
    Node,
    /// A conflict was resolved by picking `version`: `parents` (the losing heads) became its
    /// parents. Written at `hlc` by the resolving device.
    Link { parents: Vec<Version>, hlc: Hlc },
}

/// One record of a database's log, at a local position, in the order this node learned it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    pub device: DeviceId,
    pub generation: Generation,
    pub table: String,
    pub row: String,
    pub version: Version,
    pub kind: EntryKind,
    /// The peer this node received it from (its own id for local writes): never sent back
    /// to that peer.
    pub from: DeviceId,
}

/// A log record as peers exchange it: one DAG node (a write) or one link (a resolution), with
/// what identifies it everywhere: its origin device and that device's generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub table: String,
    pub row: String,
    pub version: Version,
    pub content: RecordContent,
}

/// The body of a [`LogRecord`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordContent {
    /// A write, as its writer made it (device and generation inside).
    Node(DagNode),
    /// A resolution by `device`: `parents` became parents of `version`.
    Link {
        device: DeviceId,
        generation: Generation,
        parents: Vec<Version>,
        hlc: Hlc,
    },
}

impl LogRecord {
    /// The device that made the record.
    pub fn device(&self) -> DeviceId {
        match &self.content {
            RecordContent::Node(node) => node.device,
            RecordContent::Link { device, .. } => *device,
        }
    }

    /// That device's generation for it.
    pub fn generation(&self) -> Generation {
        match &self.content {
            RecordContent::Node(node) => node.generation,
            RecordContent::Link { generation, .. } => *generation,
        }
    }

    /// When it was made.
    pub fn hlc(&self) -> Hlc {
        match &self.content {
            RecordContent::Node(node) => node.hlc,
            RecordContent::Link { hlc, .. } => *hlc,
        }
    }

    /// Bytes of payload it carries (for page sizing).
    pub fn payload_len(&self) -> usize {
        let value = match &self.content {
            RecordContent::Node(node) => node.value.len(),
            RecordContent::Link { .. } => 0,
        };
        self.table.len() + self.row.len() + value + 64
    }
}

/// One change of a row's current state, in commit order: the watch feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub table: String,
    pub row: String,
    pub version: Version,
    pub deleted: bool,
    /// Whether the change came from a peer (false: a local app write).
    pub from_sync: bool,
}

/// Per-database counters, written in every commit that changes them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncState {
    /// This device's next generation in this database (generations start at 1).
    pub next_generation: Generation,
    /// Next log position.
    pub next_position: u64,
    /// Next change-feed sequence number.
    pub next_change: u64,
    /// The clock's last reading at the commit, so a restarted node's clock never goes back.
    pub last_hlc: Hlc,
}

impl SyncState {
    /// The highest generation this device has written in the database (0 = none).
    pub fn own_generation(&self) -> Generation {
        self.next_generation.previous()
    }
}

/// Encodes a record for storage.
pub fn encode<T: Serialize>(record: &T) -> Result<Vec<u8>> {
    postcard::to_stdvec(record).map_err(|e| Error::Internal(format!("encoding a record: {e}")))
}

/// Decodes a stored record; `what` names it in the error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|e| Error::Internal(format!("corrupt {what}: {e}")))
}

/// Stored entries with their values decoded, and whether a scan reached its end.
pub type Decoded<T> = (Vec<(Vec<u8>, T)>, bool);

/// Up to `max` entries with `start <= key < end`, each value decoded as `what`, in key
/// order, and whether they reach `end`. A value that does not decode ends the scan with its
/// error (kept as an error of ours, not a storage one).
pub fn scan_decoded<T: DeserializeOwned>(
    txn: &dyn syncbase_storage::ReadTxn,
    start: &[u8],
    end: Option<&[u8]>,
    max: usize,
    what: &str,
) -> Result<Decoded<T>> {
    let mut entries = Vec::new();
    let mut failure = None;
    let mut more = false;
    txn.scan(start, end, &mut |key, value| {
        if entries.len() == max {
            more = true;
            return Ok(syncbase_storage::Scan::Stop);
        }
        match decode(value, what) {
            Ok(decoded) => entries.push((key.to_vec(), decoded)),
            Err(error) => {
                failure = Some(error);
                return Ok(syncbase_storage::Scan::Stop);
            }
        }
        Ok(syncbase_storage::Scan::Continue)
    })?;
    match failure {
        Some(error) => Err(error),
        None => Ok((entries, !more)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_round_trip_through_hex() {
        let version = Version::random(&crate::env::OsRandom).unwrap();
        assert_eq!(Version::from_hex(&version.to_hex()).unwrap(), version);
        assert_eq!(Version(0xab).to_hex(), "00000000000000ab");
        for bad in [
            "",
            "0",
            "xyz",
            "12345678901234567",
            "+ab",
            "+000000000000000a",
        ] {
            assert!(Version::from_hex(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn records_round_trip_through_storage_encoding() {
        let node = DagNode {
            parents: vec![Version(1), Version(2)],
            device: DeviceId(7),
            generation: Generation::new(9),
            hlc: Hlc {
                wall_nanos: 5,
                logical: 1,
            },
            deleted: false,
            batch_id: 3,
            batch_count: 2,
            value: b"v".to_vec(),
            linked: Vec::new(),
        };
        assert_eq!(
            decode::<DagNode>(&encode(&node).unwrap(), "node").unwrap(),
            node
        );
        let error = decode::<DagNode>(&[0xff; 3], "DAG node").unwrap_err();
        assert!(
            error.to_string().starts_with("Internal: corrupt DAG node"),
            "{error}"
        );
    }

    #[test]
    fn record_encodings_stay_those_an_existing_store_holds() {
        let node = DagNode {
            parents: vec![Version(1)],
            device: DeviceId(7),
            generation: Generation::new(300),
            hlc: Hlc {
                wall_nanos: 5,
                logical: 1,
            },
            deleted: false,
            batch_id: 0,
            batch_count: 1,
            value: b"v".to_vec(),
            linked: Vec::new(),
        };
        // parents [1], device 7, generation 300 (varint ac 02), HLC (zigzag 5, 1), not
        // deleted, batch 0 of 1, value "v", no linked parents.
        let node_bytes = [1, 1, 7, 0xac, 2, 10, 1, 0, 0, 1, 1, b'v', 0];
        assert_eq!(encode(&node).unwrap(), node_bytes);
        assert_eq!(decode::<DagNode>(&node_bytes, "node").unwrap(), node);
        let state = SyncState {
            next_generation: Generation::new(301),
            next_position: 2,
            next_change: 3,
            last_hlc: Hlc::default(),
        };
        let state_bytes = [0xad, 2, 2, 3, 0, 0];
        assert_eq!(encode(&state).unwrap(), state_bytes);
        assert_eq!(decode::<SyncState>(&state_bytes, "state").unwrap(), state);
        let mut knowledge = crate::genvec::Knowledge::new();
        let vector = [(DeviceId(7), Generation::new(300))].into_iter().collect();
        knowledge.insert(crate::genvec::Scope::new("t", ""), vector);
        // One scope ("t", ""), its vector {7: 300}.
        let knowledge_bytes = [1, 1, b't', 0, 1, 7, 0xac, 2];
        assert_eq!(encode(&knowledge).unwrap(), knowledge_bytes);
        assert_eq!(
            decode::<crate::genvec::Knowledge>(&knowledge_bytes, "knowledge").unwrap(),
            knowledge
        );
    }

    #[test]
    fn row_heads_written_before_collected_heads_decode_as_heads_without_a_kept_node() {
        let head = RowHead {
            version: Version(5),
            deleted: false,
            value: b"v".to_vec(),
        };
        // Version 5, not deleted, value "v": what every row head was before format 1.
        let old = [5, 0, 1, b'v'];
        assert_eq!(encode(&head).unwrap(), old);
        let stored = decode_head(&old).unwrap();
        assert_eq!((&stored.head, &stored.node), (&head, &None));
        assert_eq!(stored.node_at(Version(5)), None);
        assert_eq!(encode_head(&head, None).unwrap(), old);
    }

    #[test]
    fn a_collected_head_is_its_row_head_then_format_1_and_its_node() {
        let head = RowHead {
            version: Version(5),
            deleted: false,
            value: b"v".to_vec(),
        };
        let kept = HeadNode {
            parents: vec![Version(4)],
            device: DeviceId(7),
            generation: Generation::new(300),
            hlc: Hlc {
                wall_nanos: 5,
                logical: 1,
            },
            linked: vec![Version(3)],
        };
        // The row head, format 1, then parents [4], device 7, generation 300, HLC (zigzag 5,
        // 1), linked [3].
        let bytes = [5, 0, 1, b'v', 1, 1, 4, 7, 0xac, 2, 10, 1, 1, 3];
        assert_eq!(encode_head(&head, Some(&kept)).unwrap(), bytes);
        let stored = decode_head(&bytes).unwrap();
        assert_eq!(stored.node.as_ref(), Some(&kept));
        assert_eq!(decode::<RowHead>(&bytes, "row head").unwrap(), head);
        let node = stored.node_at(Version(5)).unwrap();
        assert_eq!(
            (node.value, node.hlc, node.linked),
            (b"v".to_vec(), kept.hlc, kept.linked)
        );
        assert_eq!(
            stored.node_at(Version(4)),
            None,
            "only the head's own version"
        );
        for bad in [&bytes[..5], &[5, 0, 1, b'v', 2][..]] {
            let error = decode_head(bad).unwrap_err();
            assert!(
                error.to_string().starts_with("Internal: corrupt row head"),
                "{error}"
            );
        }
    }
}
