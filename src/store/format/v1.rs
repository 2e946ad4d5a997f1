//! Format 1, the layout of builds before members, declared peers and local states carried
//! names and removals (commit 6dee37c), and the step to format 2. Format 2 appended
//! `MemberInfo.name` (inside `Syncgroup.joiners`, so every `SyncgroupRecord` at `D g` and
//! every `Proposal` at `q`), `LocalState.removed` (`D h`) and `PeerConfig.name` (`p`); no
//! other stored type changed. The types here are private copies of the old layouts, field
//! for field as format 1 wrote them; each upgrades to format 2's type with the new fields
//! empty (no name, not removed): the current types while format 2 is current (a copy for
//! `PeerConfig`, as the store never imports `sync`), copies in a `v2` module once it is not.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use syncbase_storage::{ReadTxn, Scan, WriteTxn};

use super::rewrite;
use crate::error::Result;
use crate::genvec::{DeviceId, GenVector, Generation, Scope};
use crate::identity::Fingerprint;
use crate::store::keys::{self, DbKeys};
use crate::store::records::Version;
use crate::syncgroup::proposal::Proposal;
use crate::syncgroup::{
    LocalState, MemberInfo, Spec, Status, Syncgroup, SyncgroupId, SyncgroupName, SyncgroupRecord,
    VersionStamp,
};

/// `MemberInfo` without its name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct MemberInfoV1 {
    pub sync_priority: u8,
    pub is_server: bool,
    pub device: DeviceId,
    pub address: String,
}

/// `Syncgroup` whose members have no names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct SyncgroupV1 {
    pub id: SyncgroupId,
    pub name: SyncgroupName,
    pub spec_version: String,
    pub spec: Spec,
    pub creator: Fingerprint,
    pub db: String,
    pub status: Status,
    pub joiners: BTreeMap<Fingerprint, MemberInfoV1>,
    pub former_writers: GenVector,
    pub former_lineages: BTreeSet<u64>,
}

/// `SyncgroupRecord` (`D g`) in format 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct SyncgroupRecordV1 {
    pub stamp: VersionStamp,
    pub sg: SyncgroupV1,
}

/// `LocalState` (`D h`) without `removed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct LocalStateV1 {
    pub own_generation: Generation,
    pub knowledge: GenVector,
    pub pending: Option<GenVector>,
    pub remote_publisher: Option<Fingerprint>,
    pub left: bool,
}

/// `Proposal` (`q`) whose syncgroup's members have no names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct ProposalV1 {
    pub sg: SyncgroupV1,
    pub version: Version,
    pub checkpoint: GenVector,
    pub publisher: Fingerprint,
    pub received_nanos: i64,
}

/// `PeerConfig` (`p`) without its name (its syncgroups were never stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct PeerConfigV1 {
    pub address: String,
    pub fingerprint: Fingerprint,
    pub databases: BTreeMap<String, BTreeSet<Scope>>,
    pub from_config: bool,
}

/// `PeerConfig` as format 2 lays it out (its syncgroups are never stored): a copy, since the
/// store never imports `sync`; the tests decode it as `sync::peers::PeerConfig`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct PeerConfigV2 {
    pub address: String,
    pub fingerprint: Fingerprint,
    pub databases: BTreeMap<String, BTreeSet<Scope>>,
    pub from_config: bool,
    pub name: String,
}

impl MemberInfoV1 {
    fn upgrade(self) -> MemberInfo {
        MemberInfo {
            sync_priority: self.sync_priority,
            is_server: self.is_server,
            device: self.device,
            address: self.address,
            name: String::new(),
        }
    }
}

impl SyncgroupV1 {
    fn upgrade(self) -> Syncgroup {
        Syncgroup {
            id: self.id,
            name: self.name,
            spec_version: self.spec_version,
            spec: self.spec,
            creator: self.creator,
            db: self.db,
            status: self.status,
            joiners: self
                .joiners
                .into_iter()
                .map(|(member, info)| (member, info.upgrade()))
                .collect(),
            former_writers: self.former_writers,
            former_lineages: self.former_lineages,
        }
    }
}

impl SyncgroupRecordV1 {
    pub(super) fn upgrade(self) -> SyncgroupRecord {
        SyncgroupRecord {
            stamp: self.stamp,
            sg: self.sg.upgrade(),
        }
    }
}

impl LocalStateV1 {
    pub(super) fn upgrade(self) -> LocalState {
        LocalState {
            own_generation: self.own_generation,
            knowledge: self.knowledge,
            pending: self.pending,
            remote_publisher: self.remote_publisher,
            left: self.left,
            removed: None,
        }
    }
}

impl ProposalV1 {
    pub(super) fn upgrade(self) -> Proposal {
        Proposal {
            sg: self.sg.upgrade(),
            version: self.version,
            checkpoint: self.checkpoint,
            publisher: self.publisher,
            received_nanos: self.received_nanos,
        }
    }
}

impl PeerConfigV1 {
    pub(super) fn upgrade(self) -> PeerConfigV2 {
        PeerConfigV2 {
            address: self.address,
            fingerprint: self.fingerprint,
            databases: self.databases,
            from_config: self.from_config,
            name: String::new(),
        }
    }
}

/// Format 1 -> 2: rewrites the declared peers, the proposals, and every database's
/// syncgroup versions and local states. Returns how many records it rewrote.
pub(super) fn upgrade(txn: &mut dyn WriteTxn) -> Result<usize> {
    let mut count = rewrite(txn, &keys::peer_prefix(), "peer", 1, PeerConfigV1::upgrade)?;
    count += rewrite(
        txn,
        &keys::proposal_prefix(),
        "proposal",
        1,
        ProposalV1::upgrade,
    )?;
    for db in databases(txn)? {
        let keys = DbKeys::new(&db);
        count += rewrite(
            txn,
            &keys.syncgroup_prefix(),
            "syncgroup",
            1,
            SyncgroupRecordV1::upgrade,
        )?;
        count += rewrite(
            txn,
            &keys.syncgroup_local_prefix(),
            "syncgroup local state",
            1,
            LocalStateV1::upgrade,
        )?;
    }
    Ok(count)
}

/// Where a syncgroup name points (`g 0xfe <name>`), unchanged since format 1.
#[derive(Deserialize)]
struct NameEntry {
    db: String,
    #[allow(dead_code)]
    id: SyncgroupId,
}

/// Every database that may hold syncgroups: those in the catalog and those the syncgroup
/// name index points to.
fn databases(txn: &dyn ReadTxn) -> Result<BTreeSet<String>> {
    let catalog = keys::catalog_prefix();
    let mut found: BTreeSet<String> = super::entries(txn, &catalog)?
        .into_iter()
        .filter_map(|(key, _)| String::from_utf8(key[catalog.len()..].to_vec()).ok())
        .collect();
    let names = keys::syncgroup_name("");
    let mut bytes = Vec::new();
    txn.scan_prefix(&names, &mut |_, value| {
        bytes.push(value.to_vec());
        Ok(Scan::Continue)
    })?;
    for value in bytes {
        let entry: NameEntry = crate::store::records::decode(&value, "syncgroup name")?;
        found.insert(entry.db);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
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
}
