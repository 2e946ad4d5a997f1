//! The golden encodings of every stored type at the current format: a sample of each type the
//! storage key layout names (every field set, every variant of every stored enum), encoded as
//! the store encodes it, checked against `tests/fixtures/store-format/v{CURRENT}.txt`. A
//! stored layout that changes without a format bump fails here (a field added to a stored
//! struct fails to compile first: the samples are struct literals; a variant added to a stored
//! enum too: each enum's `every_*` list is checked by an exhaustive match).

use std::collections::BTreeMap;

use crate::clock::Hlc;
use crate::genvec::{DeviceId, GenVector, Generation, Knowledge, Scope};
use crate::identity::Fingerprint;
use crate::store::epoch::{Epoch, Mark};
use crate::store::members::{Report, Reports};
use crate::store::notice::Notice;
use crate::store::records::{
    Change, DagNode, EntryKind, HeadNode, LogEntry, RowHead, SyncState, Version, encode,
    encode_head,
};
use crate::store::resume::ResumeCursor;
use crate::store::syncgroups::NameEntry;
use crate::sync::peers::PeerConfig;
use crate::syncgroup::access::{AccessList, Level, Permissions, Tag};
use crate::syncgroup::invite::{Grant, Invite};
use crate::syncgroup::{
    Binding, LocalState, MemberInfo, Proposal, Removal, Removed, Spec, Status, Syncgroup,
    SyncgroupId, SyncgroupName, SyncgroupRecord, VersionStamp,
};

use super::CURRENT;

/// Every `Tag`, in declaration order. A new variant fails to compile in `next` below: add it
/// there and here, and bump the format (see the rule in `store::format`).
fn every_tag() -> Vec<Tag> {
    let next = |tag: Tag| match tag {
        Tag::Admin => Some(Tag::Debug),
        Tag::Debug => Some(Tag::Read),
        Tag::Read => Some(Tag::Write),
        Tag::Write => Some(Tag::Resolve),
        Tag::Resolve => None,
    };
    std::iter::successors(Some(Tag::Admin), |tag| next(*tag)).collect()
}

/// Every `Level` (see [`every_tag`]).
fn every_level() -> Vec<Level> {
    let next = |level: Level| match level {
        Level::Read => Some(Level::ReadWrite),
        Level::ReadWrite => Some(Level::Admin),
        Level::Admin => None,
    };
    std::iter::successors(Some(Level::Read), |level| next(*level)).collect()
}

/// Every `Status` (see [`every_tag`]).
fn every_status() -> Vec<Status> {
    let next = |status: Status| match status {
        Status::PublishPending => Some(Status::PublishRejected),
        Status::PublishRejected => Some(Status::Running),
        Status::Running => Some(Status::Destroyed),
        Status::Destroyed => None,
    };
    std::iter::successors(Some(Status::PublishPending), |status| next(*status)).collect()
}

/// Every `Removal` (see [`every_tag`]).
fn every_removal() -> Vec<Removal> {
    let next = |how: Removal| match how {
        Removal::Ejected => Some(Removal::ReadRevoked),
        Removal::ReadRevoked => None,
    };
    std::iter::successors(Some(Removal::Ejected), |how| next(*how)).collect()
}

/// Every `Grant` shape (see [`every_tag`]).
fn every_grant() -> Vec<Grant> {
    let join = Grant::Join {
        syncgroup: SyncgroupId(0x51),
        level: Level::ReadWrite,
    };
    let next = |grant: &Grant| match grant {
        Grant::Join { .. } => Some(Grant::Publish {
            db: "photos".into(),
        }),
        Grant::Publish { .. } => None,
    };
    std::iter::successors(Some(join), next).collect()
}

/// Every `EntryKind` shape (see [`every_tag`]).
fn every_entry_kind() -> Vec<EntryKind> {
    let next = |kind: &EntryKind| match kind {
        EntryKind::Node => Some(EntryKind::Link {
            parents: vec![Version(0x21), Version(0x22)],
            hlc: hlc(),
        }),
        EntryKind::Link { .. } => None,
    };
    std::iter::successors(Some(EntryKind::Node), next).collect()
}

fn fingerprint(digit: char) -> Fingerprint {
    Fingerprint::parse(&digit.to_string().repeat(64)).unwrap()
}

fn hlc() -> Hlc {
    Hlc {
        wall_nanos: 1_700_000_000_000_000_123,
        logical: 4,
    }
}

fn vector() -> GenVector {
    [
        (DeviceId(0x1111), Generation::new(3)),
        (DeviceId(0x2222), Generation::new(300)),
    ]
    .into_iter()
    .collect()
}

fn knowledge() -> Knowledge {
    let mut knowledge = Knowledge::new();
    knowledge.insert(Scope::new("meta", ""), vector());
    knowledge.insert(Scope::new("meta", "thumbs/"), vector());
    knowledge
}

fn syncgroup() -> Syncgroup {
    let mut perms = Permissions::only(&fingerprint('a'));
    for tag in every_tag() {
        perms.0.insert(
            tag,
            AccessList {
                allowed: [fingerprint('b').as_str().to_owned()].into_iter().collect(),
                denied: ["...".to_owned()].into_iter().collect(),
            },
        );
    }
    Syncgroup {
        id: SyncgroupId(0x51),
        name: SyncgroupName::parse("127.0.0.1:7701/family").unwrap(),
        spec_version: "0a0b".into(),
        spec: Spec {
            description: "family".into(),
            perms,
            prefixes: vec![Scope::new("meta", "thumbs/")],
            mount_tables: vec!["127.0.0.1:9000".into()],
            is_private: true,
        },
        creator: fingerprint('a'),
        db: "photos".into(),
        status: Status::Running,
        joiners: [(
            fingerprint('b'),
            MemberInfo {
                sync_priority: 2,
                is_server: true,
                device: DeviceId(0x2222),
                address: "127.0.0.1:7801".into(),
                name: "bob".into(),
            },
        )]
        .into_iter()
        .collect(),
        former_writers: vector(),
        former_lineages: [0x77].into_iter().collect(),
    }
}

fn dag_node() -> DagNode {
    DagNode {
        parents: vec![Version(0x31)],
        device: DeviceId(0x1111),
        generation: Generation::new(5),
        hlc: hlc(),
        deleted: true,
        batch_id: 0x41,
        batch_count: 2,
        value: b"value".to_vec(),
        linked: vec![Version(0x32)],
    }
}

/// Each stored type's sample, named, encoded as the store encodes it.
fn samples() -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut add = |name: String, bytes: Vec<u8>| {
        assert!(out.insert(name, bytes).is_none());
    };
    add("i/format".into(), CURRENT.to_be_bytes().to_vec());
    add("i/device".into(), encode(&DeviceId(0x1111)).unwrap());
    let epoch = Epoch {
        device: DeviceId(0x1112),
        replaced: DeviceId(0x1111),
        reason: "restored".into(),
        at_nanos: 17,
        relogged: 9,
    };
    add("i/epochs".into(), encode(&vec![epoch]).unwrap());
    let peer = PeerConfig {
        address: "127.0.0.1:7801".into(),
        fingerprint: fingerprint('b'),
        databases: [(
            "photos".to_owned(),
            [Scope::new("notes", "")].into_iter().collect(),
        )]
        .into_iter()
        .collect(),
        from_config: true,
        syncgroups: [SyncgroupId(0x51)].into_iter().collect(),
        name: "bob".into(),
    };
    add("p/PeerConfig".into(), encode(&peer).unwrap());
    let entry = NameEntry {
        db: "photos".into(),
        id: SyncgroupId(0x51),
    };
    add("g/NameEntry".into(), encode(&entry).unwrap());
    for (index, grant) in every_grant().into_iter().enumerate() {
        let invite = Invite {
            grant,
            expires_nanos: 99,
            uses_left: 3,
        };
        add(format!("v/Invite/{index}"), encode(&invite).unwrap());
    }
    for level in every_level() {
        let grant = Grant::Join {
            syncgroup: SyncgroupId(1),
            level,
        };
        add(format!("v/Level/{level:?}"), encode(&grant).unwrap());
    }
    add(
        "j/Binding".into(),
        encode(&Binding::of(&syncgroup())).unwrap(),
    );
    let proposal = Proposal {
        sg: syncgroup(),
        version: Version(0x61),
        checkpoint: vector(),
        publisher: fingerprint('c'),
        received_nanos: 23,
    };
    add("q/Proposal".into(), encode(&proposal).unwrap());
    let head = RowHead {
        version: Version(0x71),
        deleted: false,
        value: b"v".to_vec(),
    };
    add("D r/RowHead".into(), encode_head(&head, None).unwrap());
    let node = HeadNode {
        parents: vec![Version(0x72)],
        device: DeviceId(0x1111),
        generation: Generation::new(6),
        hlc: hlc(),
        linked: vec![Version(0x73)],
    };
    add(
        "D r/RowHead+HeadNode".into(),
        encode_head(&head, Some(&node)).unwrap(),
    );
    add("D n/DagNode".into(), encode(&dag_node()).unwrap());
    for (index, kind) in every_entry_kind().into_iter().enumerate() {
        let entry = LogEntry {
            device: DeviceId(0x1111),
            generation: Generation::new(7),
            table: "meta".into(),
            row: "cat.jpg".into(),
            version: Version(0x81),
            kind,
            from: DeviceId(0x2222),
        };
        add(format!("D o/LogEntry/{index}"), encode(&entry).unwrap());
    }
    let change = Change {
        table: "meta".into(),
        row: "cat.jpg".into(),
        version: Version(0x91),
        deleted: true,
        from_sync: true,
    };
    add("D w/Change".into(), encode(&change).unwrap());
    add("D f/u64".into(), encode(&12_345u64).unwrap());
    let mark = Mark {
        generation: Generation::new(8),
        digest: 0xabcdef,
    };
    add("D m/Mark".into(), encode(&mark).unwrap());
    add(
        "D p/Vec<Generation>".into(),
        encode(&vec![Generation::new(1), Generation::new(9)]).unwrap(),
    );
    let state = SyncState {
        next_generation: Generation::new(10),
        next_position: 11,
        next_change: 12,
        last_hlc: hlc(),
    };
    add("D s/SyncState".into(), encode(&state).unwrap());
    add("D k/Knowledge".into(), encode(&knowledge()).unwrap());
    let reports = Reports {
        reports: vec![Report {
            at_nanos: 13,
            knowledge: knowledge(),
        }],
    };
    add("D y/Reports".into(), encode(&reports).unwrap());
    let notice = Notice {
        old: DeviceId(0x1111),
        safe: Generation::new(14),
    };
    add("D e/Vec<Notice>".into(), encode(&vec![notice]).unwrap());
    let cursor = ResumeCursor {
        token: vec![1, 2, 3],
        asked: knowledge(),
    };
    add("D u/ResumeCursor".into(), encode(&cursor).unwrap());
    for status in every_status() {
        let mut sg = syncgroup();
        sg.status = status;
        let record = SyncgroupRecord {
            stamp: VersionStamp {
                device: DeviceId(0x1111),
                generation: Generation::new(15),
                hlc: hlc(),
                version: Version(0xa1),
            },
            sg,
        };
        add(
            format!("D g/SyncgroupRecord/{status:?}"),
            encode(&record).unwrap(),
        );
    }
    let removals = every_removal().into_iter().map(|how| {
        Some(Removed {
            how,
            by: fingerprint('a'),
            member: fingerprint('b'),
            at_nanos: 16,
        })
    });
    for (index, removed) in std::iter::once(None).chain(removals).enumerate() {
        let local = LocalState {
            own_generation: Generation::new(17),
            knowledge: vector(),
            pending: Some(vector()),
            remote_publisher: Some(fingerprint('c')),
            left: true,
            removed,
        };
        add(format!("D h/LocalState/{index}"), encode(&local).unwrap());
    }
    out
}

/// The golden file's text for `samples`: one `name<TAB>hex` line each, in name order.
fn text(samples: &BTreeMap<String, Vec<u8>>) -> String {
    samples
        .iter()
        .map(|(name, bytes)| format!("{name}\t{}\n", hex::encode(bytes)))
        .collect()
}

fn golden_path(version: u32) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/store-format")
        .join(format!("v{version}.txt"))
}

#[test]
fn every_stored_layout_matches_the_golden_encoding_of_the_current_format() {
    let path = golden_path(CURRENT);
    let now = text(&samples());
    let golden = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "no golden encodings for store format {CURRENT} at {}: after bumping \
             store::format::CURRENT (and adding its migration step), commit this as that \
             file:\n{now}",
            path.display()
        )
    });
    let changed: Vec<String> = golden
        .lines()
        .zip(now.lines())
        .filter(|(was, is)| was != is)
        .map(|(was, is)| format!("  was {was}\n  now {is}"))
        .collect();
    assert!(
        golden == now,
        "a stored layout changed without a store format bump. Records are postcard: bytes \
         written before the change no longer decode. Bump store::format::CURRENT to {}, add a \
         migration step from {CURRENT} (decoding the old layout with a private copy of its \
         types), and commit the new encodings as tests/fixtures/store-format/v{}.txt; never \
         edit v{CURRENT}.txt. Changed:\n{}\nAll now:\n{now}",
        CURRENT + 1,
        CURRENT + 1,
        changed.join("\n")
    );
}
