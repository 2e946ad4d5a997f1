//! The step from format 1 to 2, record type by record type: each format-1 record keeps
//! what it held, with the new fields empty, and records already in format 2 are kept.

use syncbase_storage::MemoryStorage;
use syncbase_storage::Storage;

use super::*;
use crate::clock::Hlc;
use crate::store::records::{decode, encode};
use crate::sync::peers::PeerConfig;
use crate::syncgroup::access::Permissions;

fn fingerprint(byte: char) -> Fingerprint {
    Fingerprint::parse(&byte.to_string().repeat(64)).unwrap()
}

fn vector(generation: u64) -> GenVector {
    [(DeviceId(5), Generation::new(generation))]
        .into_iter()
        .collect()
}

fn syncgroup_v1() -> SyncgroupV1 {
    SyncgroupV1 {
        id: SyncgroupId(0xdd),
        name: SyncgroupName::parse("127.0.0.1:47101/family").unwrap(),
        spec_version: "d16d".into(),
        spec: Spec {
            description: "family photos".into(),
            perms: Permissions::only(&fingerprint('a')),
            prefixes: vec![Scope::new("meta", "")],
            mount_tables: vec![],
            is_private: false,
        },
        creator: fingerprint('a'),
        db: "photos".into(),
        status: Status::Running,
        joiners: [(
            fingerprint('b'),
            MemberInfoV1 {
                sync_priority: 3,
                is_server: true,
                device: DeviceId(9),
                address: "127.0.0.1:47201".into(),
            },
        )]
        .into_iter()
        .collect(),
        former_writers: vector(4),
        former_lineages: [7].into_iter().collect(),
    }
}

fn put(storage: &MemoryStorage, key: &[u8], value: &[u8]) {
    let mut txn = storage.write().unwrap();
    txn.put(key, value).unwrap();
    txn.commit().unwrap();
}

fn upgraded<T: serde::de::DeserializeOwned>(storage: &MemoryStorage, key: &[u8]) -> T {
    let mut txn = storage.write().unwrap();
    upgrade(txn.as_mut()).unwrap();
    txn.commit().unwrap();
    decode(
        &storage.read().unwrap().get(key).unwrap().unwrap(),
        "upgraded",
    )
    .unwrap()
}

#[test]
fn a_format_1_syncgroup_record_keeps_its_members_with_no_names() {
    let storage = MemoryStorage::new();
    put(&storage, &keys::catalog("photos"), b"");
    let key = DbKeys::new("photos").syncgroup(0xdd);
    let old = SyncgroupRecordV1 {
        stamp: VersionStamp {
            device: DeviceId(5),
            generation: Generation::new(2),
            hlc: Hlc {
                wall_nanos: 11,
                logical: 1,
            },
            version: Version(12),
        },
        sg: syncgroup_v1(),
    };
    put(&storage, &key, &encode(&old).unwrap());
    assert!(
        decode::<SyncgroupRecord>(&encode(&old).unwrap(), "syncgroup").is_err(),
        "the current layout cannot read format 1 (the fault this step fixes)"
    );
    let record: SyncgroupRecord = upgraded(&storage, &key);
    assert_eq!(record.stamp, old.stamp);
    let member = &record.sg.joiners[&fingerprint('b')];
    assert_eq!(
        (member.device, member.address.as_str(), member.name.as_str()),
        (DeviceId(9), "127.0.0.1:47201", "")
    );
    assert_eq!((member.sync_priority, member.is_server), (3, true));
    assert_eq!(record.sg.spec, old.sg.spec);
    assert_eq!(record.sg.former_writers, vector(4));
    assert_eq!(record.sg.former_lineages, [7].into_iter().collect());
}

#[test]
fn a_format_1_local_state_is_not_removed() {
    let storage = MemoryStorage::new();
    let key = DbKeys::new("photos").syncgroup_local(0xdd);
    // Only in the name index, not the catalog: still found.
    put(
        &storage,
        &keys::syncgroup_name("127.0.0.1:47101/family"),
        &encode(&("photos", SyncgroupId(0xdd))).unwrap(),
    );
    let old = LocalStateV1 {
        own_generation: Generation::new(3),
        knowledge: vector(6),
        pending: Some(vector(7)),
        remote_publisher: Some(fingerprint('c')),
        left: true,
    };
    put(&storage, &key, &encode(&old).unwrap());
    assert!(decode::<LocalState>(&encode(&old).unwrap(), "local state").is_err());
    let state: LocalState = upgraded(&storage, &key);
    assert_eq!(
        state,
        LocalState {
            own_generation: Generation::new(3),
            knowledge: vector(6),
            pending: Some(vector(7)),
            remote_publisher: Some(fingerprint('c')),
            left: true,
            removed: None,
        }
    );
}

#[test]
fn a_format_1_proposal_keeps_its_syncgroup() {
    let storage = MemoryStorage::new();
    let key = keys::proposal("127.0.0.1:47101/family");
    let old = ProposalV1 {
        sg: syncgroup_v1(),
        version: Version(8),
        checkpoint: vector(2),
        publisher: fingerprint('c'),
        received_nanos: 99,
    };
    put(&storage, &key, &encode(&old).unwrap());
    let proposal: Proposal = upgraded(&storage, &key);
    assert_eq!(proposal.sg, old.sg.clone().upgrade());
    assert_eq!(
        (proposal.version, proposal.checkpoint, proposal.publisher),
        (Version(8), vector(2), fingerprint('c'))
    );
    assert_eq!(proposal.received_nanos, 99);
}

#[test]
fn a_format_1_declared_peer_has_no_name() {
    let storage = MemoryStorage::new();
    let key = keys::peer(fingerprint('b').as_str());
    let old = PeerConfigV1 {
        address: "127.0.0.1:47201".into(),
        fingerprint: fingerprint('b'),
        databases: [(
            "photos".to_string(),
            [Scope::new("notes", "")].into_iter().collect(),
        )]
        .into_iter()
        .collect(),
        from_config: false,
    };
    put(&storage, &key, &encode(&old).unwrap());
    assert!(decode::<PeerConfig>(&encode(&old).unwrap(), "peer").is_err());
    let peer: PeerConfig = upgraded(&storage, &key);
    assert_eq!(peer.address, old.address);
    assert_eq!(peer.fingerprint, old.fingerprint);
    assert_eq!(peer.databases, old.databases);
    assert!(!peer.from_config && peer.name.is_empty() && peer.syncgroups.is_empty());
}

#[test]
fn records_already_in_format_2_in_an_unversioned_store_are_kept() {
    // Builds from 6dee37c until the format key wrote format 2 with no key.
    let storage = MemoryStorage::new();
    put(&storage, &keys::catalog("photos"), b"");
    let mut record = SyncgroupRecordV1 {
        stamp: VersionStamp::provisional(Version(3)),
        sg: syncgroup_v1(),
    }
    .upgrade();
    for member in record.sg.joiners.values_mut() {
        member.name = "bob".into();
    }
    let local = LocalState {
        removed: Some(crate::syncgroup::Removed {
            how: crate::syncgroup::Removal::Ejected,
            by: fingerprint('a'),
            member: fingerprint('b'),
            at_nanos: 5,
        }),
        ..LocalState::default()
    };
    let peer = PeerConfig::new(
        "127.0.0.1:47201",
        fingerprint('b'),
        "photos",
        vec![Scope::new("notes", "")],
    )
    .unwrap()
    .named("bob")
    .unwrap();
    let db = DbKeys::new("photos");
    let stored = [
        (db.syncgroup(0xdd), encode(&record).unwrap()),
        (db.syncgroup_local(0xdd), encode(&local).unwrap()),
        (
            keys::peer(fingerprint('b').as_str()),
            encode(&peer).unwrap(),
        ),
    ];
    for (key, value) in &stored {
        put(&storage, key, value);
    }
    let mut txn = storage.write().unwrap();
    assert_eq!(upgrade(txn.as_mut()).unwrap(), 0, "nothing to rewrite");
    txn.commit().unwrap();
    let read = storage.read().unwrap();
    for (key, value) in &stored {
        assert_eq!(read.get(key).unwrap().as_ref(), Some(value));
    }
}

#[test]
fn a_record_in_neither_layout_fails_as_corrupt_naming_its_format() {
    let storage = MemoryStorage::new();
    put(&storage, &keys::peer("x"), &[1, 2, 3]);
    let mut txn = storage.write().unwrap();
    let error = upgrade(txn.as_mut()).unwrap_err().to_string();
    assert!(
        error.contains("corrupt peer: in neither the layout of format 1 nor that of format 2"),
        "{error}"
    );
}
