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
#[path = "v1_tests.rs"]
mod tests;
