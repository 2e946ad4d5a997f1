//! Syncgroups (reference §3) without Cap'n Proto: what a syncgroup is (its name, spec,
//! permissions, members and status), the checks on a spec, and the rules that decide who may
//! do what: which identity holds which access tag, which device wrote a record, and which new
//! version of a syncgroup a node accepts from a peer. Storage is `store::syncgroups`; the
//! operations that change syncgroups are `node::syncgroups`.
//!
//! - `access`: permissions, per tag the identities admitted and refused, and invite levels;
//! - `name`: the routable names, `HOST:PORT/SUFFIX`;
//! - `binding`: what a syncgroup id is bound to at first sight;
//! - `proposal`: a syncgroup published here and not accepted, and its limits;
//! - `invite`: join and publish tokens, their hashing, expiry and uses.

pub mod access;
pub mod binding;
pub mod invite;
pub mod name;
pub mod proposal;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::clock::Hlc;
use crate::env::Random;
use crate::error::{Error, Result};
use crate::genvec::{DeviceId, GenVector, Generation, Knowledge, Scope};
use crate::identity::Fingerprint;
use crate::names::{DbName, KeyPrefix, TableName};
use crate::store::Version;
pub use access::{Permissions, Tag};
pub use binding::Binding;
pub use name::SyncgroupName;
pub use proposal::Proposal;

/// Longest description, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 1024;
/// Most prefixes in one spec.
pub const MAX_PREFIXES: usize = 64;
/// Most rendezvous addresses in one spec.
pub const MAX_MOUNT_TABLES: usize = 16;
/// Most members of one syncgroup.
pub const MAX_MEMBERS: usize = 10_000;
/// Longest name a node may choose for itself (`serve --name`), or a peer label, in bytes.
pub const MAX_MEMBER_NAME_BYTES: usize = 64;

/// Checks a node's chosen name or a peer label: at most [`MAX_MEMBER_NAME_BYTES`] bytes, no
/// control characters ("" is allowed: no name). `InvalidArgument:` otherwise. A name is only
/// shown, never trusted as an identity, but it is printed on terminals.
pub fn check_member_name(name: &str) -> Result<()> {
    if name.len() > MAX_MEMBER_NAME_BYTES || name.chars().any(char::is_control) {
        return Err(Error::invalid(format!(
            "name {name:?}: at most {MAX_MEMBER_NAME_BYTES} bytes, no control characters"
        )));
    }
    Ok(())
}

/// A syncgroup's id: random, non-zero, fixed at creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SyncgroupId(pub u64);

impl SyncgroupId {
    /// A fresh random non-zero id drawn from `random` (the node's `Env`); fails only as
    /// `random` does (`Internal:`).
    pub fn random(random: &dyn Random) -> Result<SyncgroupId> {
        Ok(SyncgroupId(Version::random(random)?.0))
    }

    /// 16 lowercase hex digits (its scope in syncgroup knowledge).
    pub fn to_hex(self) -> String {
        format!("{:016x}", self.0)
    }

    /// Parses [`SyncgroupId::to_hex`]'s form.
    pub fn from_hex(text: &str) -> Result<SyncgroupId> {
        let digits = text.bytes().all(|b| b.is_ascii_hexdigit());
        match u64::from_str_radix(text, 16) {
            Ok(id) if digits && id != 0 && text.len() == 16 => Ok(SyncgroupId(id)),
            _ => Err(Error::invalid(format!(
                "syncgroup id {text:?} is not 16 hex digits, non-zero"
            ))),
        }
    }
}

/// What a syncgroup shares and with whom. Prefixes cannot change once created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    pub description: String,
    pub perms: Permissions,
    pub prefixes: Vec<Scope>,
    pub mount_tables: Vec<String>,
    pub is_private: bool,
}

impl Spec {
    /// Checks every rule of a spec: 1 to [`MAX_PREFIXES`] prefixes with valid table names and
    /// row prefixes and no duplicates, valid permissions with at least one admin, bounded
    /// description and rendezvous list.
    pub fn validate(&self) -> Result<()> {
        if self.prefixes.is_empty() {
            return Err(Error::invalid("a syncgroup spec needs at least one prefix"));
        }
        if self.prefixes.len() > MAX_PREFIXES {
            return Err(Error::invalid(format!(
                "a syncgroup spec has at most {MAX_PREFIXES} prefixes, not {}",
                self.prefixes.len()
            )));
        }
        let mut seen = BTreeSet::new();
        for prefix in &self.prefixes {
            TableName::parse(&prefix.table)?;
            KeyPrefix::parse(&prefix.prefix)?;
            if !seen.insert(prefix) {
                return Err(Error::invalid(format!("prefix {prefix} appears twice")));
            }
        }
        if self.description.len() > MAX_DESCRIPTION_BYTES {
            return Err(Error::invalid(format!(
                "description is longer than {MAX_DESCRIPTION_BYTES} bytes"
            )));
        }
        if self.mount_tables.len() > MAX_MOUNT_TABLES
            || self
                .mount_tables
                .iter()
                .any(|address| address.is_empty() || address.len() > 256)
        {
            return Err(Error::invalid(format!(
                "rendezvous addresses: at most {MAX_MOUNT_TABLES}, each 1-256 bytes"
            )));
        }
        self.perms.validate()
    }

    /// Whether the row lies under one of the prefixes.
    pub fn covers(&self, table: &str, row: &str) -> bool {
        self.prefixes.iter().any(|scope| scope.covers(table, row))
    }

    /// Whether every row of `scope` lies under one of the prefixes.
    pub fn contains(&self, scope: &Scope) -> bool {
        self.prefixes.iter().any(|prefix| prefix.contains(scope))
    }
}

/// Whether a syncgroup is published at the node its name routes to (§1.5), or was destroyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    PublishPending,
    PublishRejected,
    Running,
    /// An admin destroyed it (`sg destroy`): final, like a tombstone. Its version keeps the
    /// last spec and members, so it travels to every member as any version does; no member
    /// syncs its prefixes any more, and no later version replaces it
    /// ([`SyncgroupRecord::supersedes`]). Appended last: stored copies of the other variants
    /// keep their encoding.
    Destroyed,
}

/// What a member told the admin when it joined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    pub sync_priority: u8,
    pub is_server: bool,
    /// Its device id: records naming this device are this member's.
    pub device: DeviceId,
    /// Its peer listener's host:port ("" if it accepts no connections).
    pub address: String,
    /// The name its operator chose (`serve --name`, default the host name; "" if none): shown
    /// beside its fingerprint, never trusted as its identity (the fingerprint is).
    #[serde(default)]
    pub name: String,
}

/// A syncgroup as every member holds it (synced, last writer wins on the whole object).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Syncgroup {
    pub id: SyncgroupId,
    pub name: SyncgroupName,
    /// Random hex etag of the spec, changed by every spec change.
    pub spec_version: String,
    pub spec: Spec,
    pub creator: Fingerprint,
    pub db: String,
    pub status: Status,
    pub joiners: BTreeMap<Fingerprint, MemberInfo>,
    /// Devices of members that lost Write -> their last generation that stays valid.
    pub former_writers: GenVector,
    /// The device lineages ([`DeviceId::lineage`]) of members that lost Write: their records
    /// relayed by another member are valid at any generation (see
    /// [`Syncgroup::device_may_write`]).
    #[serde(default)]
    pub former_lineages: BTreeSet<u64>,
}

impl Syncgroup {
    /// Checks a syncgroup that came from a peer: its spec, database name, id, members'
    /// devices (non-zero, each bound to one member).
    pub fn validate(&self) -> Result<()> {
        if self.id.0 == 0 {
            return Err(Error::invalid("syncgroup id is 0"));
        }
        DbName::parse(&self.db)?;
        self.spec.validate()?;
        if self.joiners.len() > MAX_MEMBERS
            || self.former_writers.len() > MAX_MEMBERS
            || self.former_lineages.len() > MAX_MEMBERS
        {
            return Err(Error::invalid(format!(
                "a syncgroup has at most {MAX_MEMBERS} members"
            )));
        }
        let mut lineages = BTreeSet::new();
        for (member, info) in &self.joiners {
            if info.device.0 == 0 || !lineages.insert(info.device.lineage()) {
                return Err(Error::invalid(format!(
                    "member {member} has device 0 or one of another member's lineage"
                )));
            }
            check_member_name(&info.name)?;
        }
        Ok(())
    }

    /// Whether `who` holds `tag`.
    pub fn allows(&self, tag: Tag, who: &Fingerprint) -> bool {
        self.spec.perms.allows(tag, who)
    }

    /// The member whose records name `device`: the one that joined with a device of its
    /// lineage (an epoch keeps a node's records its own).
    pub fn member_of_device(&self, device: DeviceId) -> Option<&Fingerprint> {
        self.joiners
            .iter()
            .find(|(_, info)| info.device.same_lineage(device))
            .map(|(member, _)| member)
    }

    /// Whether `device` may have written its record at `generation`, as `sender` (the
    /// authenticated peer the record came from) hands it over: it belongs to a member holding
    /// Write; or to one that lost Write, and either the admin had seen that generation then,
    /// or another member relays it.
    ///
    /// Why relays count: a member that had not learned of the change yet accepted the former
    /// writer's later records as valid, and holds them as heads; refusing them elsewhere would
    /// leave members diverged for ever (no member can tell when another learned of it). Only
    /// the former writer's own sends are held to the cutoff: once every member knows, no member
    /// takes its records from it, so the set of its records among the members stops growing.
    /// Records carry no signature, so a relay is trusted as a relay is for every record
    /// (ARCHITECTURE.md, "Who may write what").
    pub fn device_may_write(
        &self,
        device: DeviceId,
        generation: Generation,
        sender: &Fingerprint,
    ) -> bool {
        let owner = self.member_of_device(device);
        if owner.is_some_and(|member| self.allows(Tag::Write, member)) {
            return true;
        }
        let relayed = owner != Some(sender)
            && self.joiners.contains_key(sender)
            && self.former_lineages.contains(&device.lineage());
        relayed || generation <= self.former_writers.get(device)
    }

    /// Records, for every member that held Write in `before` and no longer does, the last
    /// generation of its records that stays valid: what `known` (the admin's data knowledge)
    /// says of each device of the member's lineage. Records name the device they were written
    /// under, and a member restored from a copy wrote under earlier devices of its lineage
    /// (see ARCHITECTURE.md, "Epochs"): those writes stay valid too.
    pub fn remember_former_writers(&mut self, before: &Syncgroup, known: &Knowledge) {
        let devices = known.devices();
        for (member, info) in &before.joiners {
            let still_writes = self.joiners.contains_key(member) && self.allows(Tag::Write, member);
            if before.allows(Tag::Write, member) && !still_writes {
                self.former_lineages.insert(info.device.lineage());
                let lineage = devices
                    .iter()
                    .copied()
                    .filter(|device| device.same_lineage(info.device))
                    .chain([info.device]);
                for device in lineage {
                    self.former_writers.raise(device, known.max_gen(device));
                }
            }
        }
    }

    /// Whether a member (a joiner, not just a fingerprint on the Admin list) holds Admin:
    /// without one nobody can run the syncgroup (admit, eject, change its spec).
    pub fn has_member_admin(&self) -> bool {
        self.joiners
            .keys()
            .any(|member| self.allows(Tag::Admin, member))
    }

    /// Whether an admin destroyed it ([`Status::Destroyed`]).
    pub fn is_destroyed(&self) -> bool {
        self.status == Status::Destroyed
    }

    /// Removes `member` from the joiners and every access list; whether anything changed.
    pub fn eject(&mut self, member: &Fingerprint) -> bool {
        let was_member = self.joiners.remove(member).is_some();
        self.spec.perms.revoke(member) || was_member
    }
}

/// Where a version of a syncgroup sits in its generation space, and its LWW order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionStamp {
    /// The device that wrote the version (0 for a provisional copy: a join or publish reply,
    /// which any synced version replaces).
    pub device: DeviceId,
    pub generation: Generation,
    pub hlc: Hlc,
    pub version: Version,
}

impl VersionStamp {
    /// A copy taken from an admin's reply rather than from sync.
    pub fn provisional(version: Version) -> VersionStamp {
        VersionStamp {
            device: DeviceId(0),
            generation: Generation::NONE,
            hlc: Hlc::default(),
            version,
        }
    }

    pub fn is_provisional(&self) -> bool {
        self.device.0 == 0
    }

    /// Whether this version wins last-writer-wins against `other` (later HLC, then the larger
    /// version; equal stamps are the same version).
    pub fn wins_over(&self, other: &VersionStamp) -> bool {
        (self.hlc, self.version) > (other.hlc, other.version)
    }
}

/// One version of a syncgroup, as stored and as synced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncgroupRecord {
    pub stamp: VersionStamp,
    pub sg: Syncgroup,
}

impl SyncgroupRecord {
    /// Whether this version replaces `held` when both meet (a merge, whatever the order they
    /// arrive in): a destroyed version beats every version that is not (a join, a grant or a
    /// spec change concurrent with the destroy never brings the syncgroup back), and a version
    /// that is not destroyed never replaces a destroyed one; otherwise last-writer-wins
    /// ([`VersionStamp::wins_over`]). So every member ends with a destroyed version once one
    /// reached it, and two destroys settle on the same one.
    pub fn supersedes(&self, held: &SyncgroupRecord) -> bool {
        match (self.sg.is_destroyed(), held.sg.is_destroyed()) {
            (true, false) => true,
            (false, true) => false,
            _ => self.stamp.wins_over(&held.stamp),
        }
    }

    /// Who destroyed the syncgroup and when, if this version is a destroy: the member bound
    /// to the version's writer device (None if the device names no member) and the version's
    /// HLC wall time, Unix nanoseconds.
    pub fn destroyed(&self) -> Option<(Option<&Fingerprint>, i64)> {
        self.sg.is_destroyed().then(|| {
            (
                self.sg.member_of_device(self.stamp.device),
                self.stamp.hlc.wall_nanos,
            )
        })
    }

    /// This destroyed version as served to an authenticated peer that asks for its id and
    /// holds no Read in it (a member admitted concurrently with the destroy, by an admin that
    /// had not learnt it yet): the id, name, database, creator, spec (prefixes, description,
    /// rendezvous) and stamp, with the destroyer (else the creator) as the one admin (a spec
    /// needs an admin) and the one member (so the receiver can name who destroyed it), no
    /// other access lists, no former writers. The peer learns that the syncgroup was
    /// destroyed, by whom and when, which a member's copy already told it; not who else was a
    /// member or an admin, nor their addresses. Any version not destroyed is returned whole.
    pub fn tombstone(&self) -> SyncgroupRecord {
        let mut record = self.clone();
        if !record.sg.is_destroyed() {
            return record;
        }
        let destroyer = record.sg.member_of_device(record.stamp.device).cloned();
        let sg = &mut record.sg;
        sg.joiners
            .retain(|member, _| Some(member) == destroyer.as_ref());
        let admin = destroyer.unwrap_or_else(|| sg.creator.clone());
        sg.spec.perms.0.clear();
        sg.spec.perms.grant(access::Level::Admin, &admin);
        sg.former_writers = GenVector::new();
        sg.former_lineages.clear();
        record
    }

    /// Whether a node holding `current` may take this version from the authenticated peer
    /// `sender`. The sender must hold Admin in the copy the node holds: without signatures a
    /// relay could forge a version in an admin's name, so versions travel only from admins
    /// (ARCHITECTURE.md, "Who may widen what a node shares"). The version's writer must be an
    /// admin's device in that copy, or the sender's own device as this version binds it. The
    /// id, name, database, creator and prefixes must not change. A version that fails is
    /// dropped; it never replaces what the node holds.
    pub fn acceptable_from(&self, current: &SyncgroupRecord, sender: &Fingerprint) -> Result<()> {
        self.sg.validate()?;
        let trusted = &current.sg;
        if !trusted.allows(Tag::Admin, sender) {
            return Err(Error::NoAccess(format!(
                "syncgroup {} version relayed by {sender}, who is no admin of it here",
                self.sg.name
            )));
        }
        let writer_is_admin = trusted
            .member_of_device(self.stamp.device)
            .is_some_and(|writer| trusted.allows(Tag::Admin, writer));
        let written_by_sender = self.sg.member_of_device(self.stamp.device) == Some(sender);
        if !writer_is_admin && !written_by_sender {
            return Err(Error::NoAccess(format!(
                "syncgroup {} version by device {:016x}, which is no admin's",
                self.sg.name, self.stamp.device.0
            )));
        }
        let (old, new) = (trusted, &self.sg);
        if old.id != new.id
            || old.name != new.name
            || old.db != new.db
            || old.creator != new.creator
            || old.spec.prefixes != new.spec.prefixes
        {
            return Err(Error::invalid(format!(
                "syncgroup {} version changes its id, name, database, creator or prefixes",
                old.name
            )));
        }
        Ok(())
    }
}

/// What only this node knows about a syncgroup (never synced).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalState {
    /// This node's generations in the syncgroup's space.
    pub own_generation: Generation,
    /// What this node knows of the syncgroup's space.
    pub knowledge: GenVector,
    /// Set by a join or a publish: the admin's vector to catch up to. While set, spec changes
    /// and admin-side joins here fail with `BadState`.
    pub pending: Option<GenVector>,
    /// Who published the syncgroup here (None if created or joined here).
    pub remote_publisher: Option<Fingerprint>,
    /// This node left: it no longer syncs the prefixes (its data stays).
    pub left: bool,
    /// An admin told this node it lost the syncgroup (ejected, or its Read revoked): it no
    /// longer syncs the prefixes, and its app writes under them fail `NoAccess:` (unless
    /// another syncgroup or a declared peer shares the row). A join clears it.
    #[serde(default)]
    pub removed: Option<Removed>,
}

/// How a node lost a syncgroup, as an admin of it told it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Removal {
    /// No longer a member: `sg eject`.
    Ejected,
    /// Still listed as a member, without Read: `sg revoke` (or a spec change).
    ReadRevoked,
}

impl Removal {
    /// How `sg show`, `sg list` and `status` name it: `Ejected`, `Read revoked`.
    pub fn label(self) -> &'static str {
        match self {
            Removal::Ejected => "Ejected",
            Removal::ReadRevoked => "Read revoked",
        }
    }

    /// How JSON names it (`status` in `/status.json`, `sg show --json`): `ejected`,
    /// `read-revoked`, in the lower-case, hyphenated form of the other status values.
    pub fn id(self) -> &'static str {
        match self {
            Removal::Ejected => "ejected",
            Removal::ReadRevoked => "read-revoked",
        }
    }
}

/// What this node recorded when an admin told it it lost a syncgroup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removed {
    pub how: Removal,
    /// The admin whose notice told it.
    pub by: Fingerprint,
    /// This node's identity, as the notice named it (the one [`LocalState::held_copy`] takes
    /// out of the copy).
    pub member: Fingerprint,
    /// When the notice was taken, Unix nanoseconds (the node's `Env` time).
    pub at_nanos: i64,
}

impl LocalState {
    /// Clears `pending` once the knowledge reaches the checkpoint; whether it did.
    pub fn settle(&mut self) -> bool {
        let caught_up = self
            .pending
            .as_ref()
            .is_some_and(|checkpoint| self.knowledge.dominates(checkpoint));
        if caught_up {
            self.pending = None;
        }
        caught_up
    }

    /// The copy this node's access decisions read: `sg` as synced, less this node's own
    /// entries if an admin told it it lost the syncgroup (out of the members too when
    /// ejected), since the version that removed it never reaches it (it may no longer read
    /// the syncgroup's metadata). A destroyed syncgroup grants nothing to anyone: no members,
    /// no permissions, no former writers, so its prefixes are neither sent nor accepted under
    /// it, and this node's app writes under them fail `NoAccess:` as an ejected member's do
    /// (unless another syncgroup or a declared peer shares the row).
    pub fn held_copy(&self, sg: Syncgroup) -> Syncgroup {
        let mut sg = self.shown_copy(sg);
        if sg.is_destroyed() {
            sg.joiners.clear();
            sg.spec.perms = Permissions::default();
            sg.former_writers = GenVector::new();
            sg.former_lineages.clear();
        }
        sg
    }

    /// The copy `sg show` prints: `sg` less this node's own entries if an admin told it it
    /// lost the syncgroup; a destroyed one keeps the members and permissions it had.
    pub fn shown_copy(&self, mut sg: Syncgroup) -> Syncgroup {
        if let Some(removed) = &self.removed {
            match removed.how {
                Removal::Ejected => {
                    sg.eject(&removed.member);
                }
                Removal::ReadRevoked => {
                    sg.spec.perms.revoke(&removed.member);
                }
            }
        }
        sg
    }

    /// Whether this node forgot the syncgroup: destroyed, and left here (the admin that
    /// destroyed it, or a member that ran `sg leave` after learning of it). Its version stays
    /// stored as a tombstone (it is still served to members that ask, and a late version of
    /// it never brings it back), but its name is free and `sg list` no longer shows it.
    pub fn forgot(&self, sg: &Syncgroup) -> bool {
        self.left && sg.is_destroyed()
    }

    /// Fails with `BadState` while the node has not caught up with the admin.
    pub fn check_settled(&self, name: &SyncgroupName) -> Result<()> {
        match &self.pending {
            Some(_) => Err(Error::BadState(format!(
                "syncgroup {name} is pending until this node catches up with its admin"
            ))),
            None => Ok(()),
        }
    }
}

/// A syncgroup with this node's local state: what the app API shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncgroupView {
    pub record: SyncgroupRecord,
    pub local: LocalState,
}

/// How `sg show`, `sg list`, `status` and the status page name a destroyed syncgroup.
pub const DESTROYED_LABEL: &str = "Destroyed";

/// How this node lost a syncgroup, as every report says it (`SyncgroupInfo.removed`,
/// `removedBy`, `removedAtNanos`; `/status.json`'s `removed`, `removed_by`,
/// `removed_at_nanos`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lost<'a> {
    /// `Destroyed`, `Ejected` or `Read revoked`.
    pub label: &'static str,
    /// The admin that destroyed it or sent the notice (None: a destroy version whose writer
    /// device names no member).
    pub by: Option<&'a Fingerprint>,
    /// When, Unix nanoseconds: the destroy version's HLC wall time, or when the notice was
    /// taken here.
    pub at_nanos: i64,
}

impl SyncgroupView {
    /// How this node lost the syncgroup, if it did: its destroy (which says more than any
    /// removal notice taken before), else an admin's removal notice; None if neither.
    pub fn lost(&self) -> Option<Lost<'_>> {
        if let Some((by, at_nanos)) = self.record.destroyed() {
            return Some(Lost {
                label: DESTROYED_LABEL,
                by,
                at_nanos,
            });
        }
        self.local.removed.as_ref().map(|removed| Lost {
            label: removed.how.label(),
            by: Some(&removed.by),
            at_nanos: removed.at_nanos,
        })
    }
}

/// A fresh random spec version (etag), 16 hex digits drawn from `random` (the node's `Env`);
/// fails only as `random` does (`Internal:`).
pub fn new_spec_version(random: &dyn Random) -> Result<String> {
    Ok(Version::random(random)?.to_hex())
}

#[cfg(test)]
pub(crate) mod tests;
