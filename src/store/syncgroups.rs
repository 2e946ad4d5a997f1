//! Syncgroups in storage: each database's syncgroups (their current version and this node's
//! local state), the node-wide name index, and the invites this node minted. Changes happen
//! inside a [`SyncgroupTxn`], so a check and the write it guards (an invite's use and the join
//! it admits, a version check and the new spec) commit together or not at all.
//!
//! Each syncgroup has its own generation space: every version this node writes takes its
//! next generation there, and the knowledge of that space is a vector per syncgroup. A
//! version from a peer replaces the held one only if it wins last-writer-wins and passes
//! [`SyncgroupRecord::acceptable_from`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use syncbase_storage::{Scan, WriteTxn};

use super::records::{decode, encode};
use super::{Store, keys};
use crate::env::Env;
use crate::error::{Error, Result};
use crate::genvec::{GenVector, Knowledge};
use crate::identity::Fingerprint;
use crate::names::DbName;
use crate::paging::{self, PageFill};
use crate::store::Version;
use crate::store::keys::DbKeys;
use crate::syncgroup::invite::{Grant, Invite};
use crate::syncgroup::{
    Binding, LocalState, Syncgroup, SyncgroupId, SyncgroupName, SyncgroupRecord, SyncgroupView,
    Tag, VersionStamp,
};

/// Syncgroup knowledge: a vector per syncgroup.
pub type SyncgroupKnowledge = BTreeMap<SyncgroupId, GenVector>;

/// Where a name points.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct NameEntry {
    pub(super) db: String,
    pub(super) id: SyncgroupId,
}

/// What applying a page of syncgroup versions did.
#[derive(Debug, Default)]
pub struct SyncgroupsApplied {
    /// Versions that replaced the held one.
    pub replaced: usize,
    /// Versions refused, with why: `NoAccess` (relayed by a non-admin, or their writer was
    /// no admin), `InvalidArgument` (not asked for, another database, changed fixed fields).
    pub refused: Vec<Error>,
    /// The syncgroups (held here) a version of which was refused: their knowledge was not
    /// merged.
    pub refused_ids: std::collections::BTreeSet<SyncgroupId>,
}

impl Store {
    /// Runs `change` in one write transaction, committed if it succeeds.
    pub fn syncgroup_txn<T>(
        &self,
        change: impl FnOnce(&mut SyncgroupTxn<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut txn = SyncgroupTxn {
            txn: self.storage.write()?,
            store: self,
        };
        let outcome = change(&mut txn)?;
        txn.txn.commit()?;
        Ok(outcome)
    }

    /// The syncgroup a name names.
    pub fn syncgroup_by_name(&self, name: &SyncgroupName) -> Result<Option<SyncgroupView>> {
        find_by_name(self.storage.read()?.as_ref(), name)
    }

    /// One syncgroup of a database.
    pub fn syncgroup(&self, db: &DbName, id: SyncgroupId) -> Result<Option<SyncgroupView>> {
        load(self.storage.read()?.as_ref(), db.as_str(), id)
    }

    /// Every syncgroup of a database, by id.
    pub fn syncgroups(&self, db: &DbName) -> Result<Vec<SyncgroupView>> {
        views(self.storage.read()?.as_ref(), db.as_str())
    }

    /// The syncgroups of `db` this node holds (created, joined or accepted) and has not left,
    /// by id, in one snapshot: what access decisions read (ARCHITECTURE.md, "Who may write
    /// what"). A check guarding a write reads them inside the write's own transaction instead
    /// ([`Store::commit_checked`], [`Store::apply_screened_page`]).
    pub fn held_syncgroups(&self, db: &DbName) -> Result<Vec<Syncgroup>> {
        held(self.storage.read()?.as_ref(), db.as_str())
    }

    /// Every syncgroup of every database.
    pub fn all_syncgroups(&self) -> Result<Vec<SyncgroupView>> {
        let mut views = Vec::new();
        for db in self.list_databases()? {
            views.extend(self.syncgroups(&DbName::parse(&db)?)?);
        }
        Ok(views)
    }

    /// Whether applying a page could change anything: a version that would win over the held
    /// one, or knowledge this node lacks. (If not, the page needs no commit, and no commit
    /// wakes the live streams for nothing.)
    pub fn syncgroup_page_is_news(
        &self,
        db: &DbName,
        sender: &Fingerprint,
        records: &[SyncgroupRecord],
        knowledge: &SyncgroupKnowledge,
    ) -> Result<bool> {
        let txn = self.storage.read()?;
        for record in records {
            let held = load(txn.as_ref(), db.as_str(), record.sg.id)?;
            if held.is_none_or(|held| record.supersedes(&held.record)) {
                return Ok(true);
            }
        }
        for (id, vector) in knowledge {
            let held = load(txn.as_ref(), db.as_str(), *id)?;
            let news = held.is_some_and(|held| {
                held.record.sg.allows(Tag::Admin, sender) && !held.local.knowledge.dominates(vector)
            });
            if news {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// For a peer knowing `wanted`: one page of the versions it lacks of those syncgroups,
    /// and this node's knowledge of the ones the page settles. Unknown ids are skipped;
    /// provisional copies are never sent.
    pub fn syncgroup_deltas(
        &self,
        db: &DbName,
        wanted: &SyncgroupKnowledge,
    ) -> Result<SyncgroupDeltas> {
        let txn = self.storage.read()?;
        let mut deltas = SyncgroupDeltas::default();
        let mut fill = PageFill::new(paging::SYNCGROUPS.limit);
        for (id, known) in wanted {
            let Some(view) = load(txn.as_ref(), db.as_str(), *id)? else {
                continue;
            };
            let stamp = view.record.stamp;
            if !stamp.is_provisional() && known.get(stamp.device) < stamp.generation {
                if !fill.take(wire_estimate(&view.record)?) {
                    deltas.more = true;
                    continue;
                }
                deltas.records.push(view.record);
            }
            deltas.knowledge.insert(*id, view.local.knowledge);
        }
        Ok(deltas)
    }
}

/// One page of syncgroup metadata for a peer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncgroupDeltas {
    /// The versions the peer lacks that fit the page (`paging::SYNCGROUPS`, at least one).
    pub records: Vec<SyncgroupRecord>,
    /// This node's knowledge of the syncgroups the page settles: those whose version it
    /// carries or that need none (never one whose version was left for a later page).
    pub knowledge: SyncgroupKnowledge,
    /// Whether versions were left for the next page.
    pub more: bool,
}

/// An upper estimate of a syncgroup version's encoded size on the wire: twice its stored
/// (postcard) encoding, which spends at most half as many bytes on every field (pinned by
/// `rpc::syncgroup_wire`'s tests), plus a fixed header.
pub fn wire_estimate(record: &SyncgroupRecord) -> Result<usize> {
    Ok(2 * encode(record)?.len() + 1024)
}

/// Syncgroup changes inside one write transaction.
pub struct SyncgroupTxn<'s> {
    pub(super) txn: Box<dyn WriteTxn + 's>,
    pub(super) store: &'s Store,
}

impl SyncgroupTxn<'_> {
    /// The syncgroup a name names.
    pub fn find(&self, name: &SyncgroupName) -> Result<Option<SyncgroupView>> {
        find_by_name(self.txn.as_ref(), name)
    }

    /// The syncgroup `id` of database `db`, if held.
    pub fn by_id(&self, db: &str, id: SyncgroupId) -> Result<Option<SyncgroupView>> {
        load(self.txn.as_ref(), db, id)
    }

    /// Like [`SyncgroupTxn::find`], failing with `NoExist` for an unknown name.
    pub fn get(&self, name: &SyncgroupName) -> Result<SyncgroupView> {
        self.find(name)?
            .ok_or_else(|| Error::NoExist(format!("syncgroup {name} is not known here")))
    }

    /// Writes `sg` as a new version by this node: its next generation in the syncgroup's
    /// space, a fresh HLC reading and version. The name must be free or already this id's.
    /// A destroyed syncgroup takes no new version (`BadState:`): nothing brings it back.
    /// A spec (permissions included) that differs from the version it replaces gets a fresh
    /// spec version, whichever change made it (an eject, a join's grant, `setSpec`): a
    /// read-modify-write of the spec checks it, so one based on the old spec fails with
    /// `BadVersion:` instead of undoing the change.
    pub fn write_version(
        &mut self,
        mut sg: Syncgroup,
        mut local: LocalState,
    ) -> Result<SyncgroupView> {
        if let Some(current) = self.by_id(&sg.db, sg.id)?
            && current.record.sg.is_destroyed()
        {
            return Err(destroyed_error(&current.record));
        }
        if let Some(current) = self.find(&sg.name)? {
            let old = &current.record.sg;
            if old.spec != sg.spec && old.spec_version == sg.spec_version {
                sg.spec_version =
                    crate::syncgroup::new_spec_version(self.store.env().random.as_ref())?;
            }
        }
        local.own_generation = local.own_generation.next();
        let stamp = VersionStamp {
            device: self.store.device(),
            generation: local.own_generation,
            hlc: self.store.clock().now(),
            version: Version::random(self.store.env().random.as_ref())?,
        };
        local.knowledge.raise(stamp.device, stamp.generation);
        self.put(SyncgroupRecord { stamp, sg }, local)
    }

    /// Stores a copy an admin handed over (a join or publish reply) as provisional: any
    /// synced version replaces it. Not over a syncgroup destroyed here (`BadState:`), even
    /// one forgotten: a join or a publish never brings it back.
    pub fn put_provisional(
        &mut self,
        sg: Syncgroup,
        version: Version,
        local: LocalState,
    ) -> Result<SyncgroupView> {
        if let Some(current) = self.by_id(&sg.db, sg.id)?
            && current.record.sg.is_destroyed()
        {
            return Err(destroyed_error(&current.record));
        }
        let record = SyncgroupRecord {
            stamp: VersionStamp::provisional(version),
            sg,
        };
        self.put(record, local)
    }

    /// Saves this node's state of a syncgroup.
    pub fn put_local(&mut self, db: &str, id: SyncgroupId, local: &LocalState) -> Result<()> {
        let key = DbKeys::new(db).syncgroup_local(id.0);
        Ok(self.txn.put(&key, &encode(local)?)?)
    }

    /// Stores an invite under the hash of its secret.
    pub fn put_invite(&mut self, hash: &str, invite: &Invite) -> Result<()> {
        Ok(self.txn.put(&keys::invite(hash), &encode(invite)?)?)
    }

    /// What this node knows of the data of database `db`, as this transaction sees it: an
    /// eject or a spec change reads the generations it records for former writers here, so a
    /// page applied just before it is counted and none can land in between.
    pub fn data_knowledge(&self, db: &str) -> Result<Knowledge> {
        super::writer::load_knowledge(self.txn.as_ref(), &DbKeys::new(db))
    }

    /// The environment of the store this transaction writes (its time and random sources).
    pub fn env(&self) -> &Env {
        self.store.env()
    }

    /// Uses one of an invite's uses, if it is valid now (the environment's time) and `fits`
    /// its grant; `NoAccess` otherwise, saying which: unknown here, expired, used up, or
    /// another syncgroup's or database's. A used-up invite is kept (with no uses left) so a
    /// later join is told it is used up. Nothing is spent unless the whole transaction
    /// commits.
    pub fn use_invite(
        &mut self,
        hash: &str,
        fits: impl FnOnce(&Grant) -> Result<()>,
    ) -> Result<Invite> {
        let now_nanos = self.env().now_nanos();
        let key = keys::invite(hash);
        let Some(bytes) = self.txn.get(&key)? else {
            return Err(Error::NoAccess(
                "the invite is not known here (not minted by this node, or its store was \
                 replaced since): check the token, or ask an admin for a new one (`sg invite`)"
                    .into(),
            ));
        };
        let mut invite: Invite = decode(&bytes, "invite")?;
        fits(&invite.grant)?;
        invite.check(now_nanos)?;
        invite.uses_left -= 1;
        self.txn.put(&key, &encode(&invite)?)?;
        Ok(invite)
    }

    /// Applies versions and knowledge the authenticated peer `sender` sent for syncgroups of
    /// `db` this node holds. Knowledge is merged only from a sender holding Admin in the copy
    /// held, and not for a syncgroup whose version was refused, so a version is never taken as
    /// known on a relay's word.
    pub fn apply(
        &mut self,
        db: &DbName,
        sender: &Fingerprint,
        records: &[SyncgroupRecord],
        knowledge: &SyncgroupKnowledge,
    ) -> Result<SyncgroupsApplied> {
        let mut applied = SyncgroupsApplied::default();
        let mut refused_ids = std::collections::BTreeSet::new();
        for record in records {
            let Some(current) = load(self.txn.as_ref(), db.as_str(), record.sg.id)? else {
                applied.refused.push(Error::invalid(format!(
                    "syncgroup {} was not asked for",
                    record.sg.id.to_hex()
                )));
                continue;
            };
            if record.sg.db != db.as_str() {
                applied.refused.push(Error::invalid(format!(
                    "syncgroup {} of another database",
                    record.sg.name
                )));
                refused_ids.insert(record.sg.id);
                continue;
            }
            if let Err(error) = record.acceptable_from(&current.record, sender) {
                applied.refused.push(error);
                refused_ids.insert(record.sg.id);
                continue;
            }
            self.store.clock().observe(record.stamp.hlc);
            if record.supersedes(&current.record) {
                self.put(record.clone(), current.local)?;
                applied.replaced += 1;
            }
        }
        for (id, vector) in knowledge {
            if refused_ids.contains(id) {
                continue;
            }
            if let Some(mut view) = load(self.txn.as_ref(), db.as_str(), *id)? {
                if !view.record.sg.allows(Tag::Admin, sender) {
                    // Knowledge is a claim like a version: a non-admin could forge one to hide
                    // later versions (an eject) or to end a pending state early.
                    continue;
                }
                view.local.knowledge.merge(vector);
                view.local.settle();
                self.put_local(db.as_str(), *id, &view.local)?;
            }
        }
        applied.refused_ids = refused_ids;
        Ok(applied)
    }

    /// The invite stored under `hash`, if any (whatever its state: expired, used up).
    pub fn invite(&self, hash: &str) -> Result<Option<Invite>> {
        match self.txn.get(&keys::invite(hash))? {
            Some(bytes) => Ok(Some(decode(&bytes, "invite")?)),
            None => Ok(None),
        }
    }

    /// Frees the name of a syncgroup this node forgot ([`LocalState::forgot`]), if the name
    /// still points to it: `sg create` may use it again, and a lookup by name no longer finds
    /// the old one. Its version and local state stay, by id.
    pub fn unindex(&mut self, sg: &Syncgroup) -> Result<()> {
        let name_key = keys::syncgroup_name(sg.name.as_str());
        if let Some(bytes) = self.txn.get(&name_key)? {
            let entry: NameEntry = decode(&bytes, "syncgroup name")?;
            if entry.id == sg.id && entry.db == sg.db {
                self.txn.delete(&name_key)?;
            }
        }
        Ok(())
    }

    /// Removes a syncgroup entirely (one that was never published), and its id's binding.
    pub fn delete(&mut self, sg: &Syncgroup) -> Result<()> {
        let keys = DbKeys::new(&sg.db);
        self.txn.delete(&keys::syncgroup_binding(sg.id.0))?;
        self.txn.delete(&keys::syncgroup_name(sg.name.as_str()))?;
        self.txn.delete(&keys.syncgroup(sg.id.0))?;
        self.txn.delete(&keys.syncgroup_local(sg.id.0))?;
        Ok(())
    }

    /// The binding of a syncgroup id, if this node has seen the id.
    pub fn binding(&self, id: SyncgroupId) -> Result<Option<Binding>> {
        match self.txn.get(&keys::syncgroup_binding(id.0))? {
            Some(bytes) => Ok(Some(decode(&bytes, "syncgroup binding")?)),
            None => Ok(None),
        }
    }

    /// Every write of a syncgroup version goes through here: the id must keep the name,
    /// database, creator and prefixes it was bound to at first sight (`Exist:` otherwise;
    /// the first write binds it), and the name must be free or this id's. A syncgroup this
    /// node forgot ([`LocalState::forgot`]) is stored by id only: its name is left to
    /// whichever syncgroup took it since.
    fn put(&mut self, record: SyncgroupRecord, local: LocalState) -> Result<SyncgroupView> {
        let sg = &record.sg;
        match self.binding(sg.id)? {
            Some(binding) => binding.check(sg)?,
            None => self.txn.put(
                &keys::syncgroup_binding(sg.id.0),
                &encode(&Binding::of(sg))?,
            )?,
        }
        let keys = DbKeys::new(&sg.db);
        if local.forgot(sg) {
            self.unindex(sg)?;
            self.txn.put(&keys.syncgroup(sg.id.0), &encode(&record)?)?;
            self.txn
                .put(&keys.syncgroup_local(sg.id.0), &encode(&local)?)?;
            return Ok(SyncgroupView { record, local });
        }
        let name_key = keys::syncgroup_name(sg.name.as_str());
        if let Some(bytes) = self.txn.get(&name_key)? {
            let entry: NameEntry = decode(&bytes, "syncgroup name")?;
            if entry.id != sg.id || entry.db != sg.db {
                return Err(Error::Exist(format!(
                    "syncgroup name {} is taken by another syncgroup",
                    sg.name
                )));
            }
        }
        let entry = NameEntry {
            db: sg.db.clone(),
            id: sg.id,
        };
        self.txn.put(&name_key, &encode(&entry)?)?;
        self.txn.put(&keys.syncgroup(sg.id.0), &encode(&record)?)?;
        self.txn
            .put(&keys.syncgroup_local(sg.id.0), &encode(&local)?)?;
        Ok(SyncgroupView { record, local })
    }
}

/// Why a destroyed syncgroup takes no change: `BadState:`, naming who destroyed it.
pub fn destroyed_error(record: &SyncgroupRecord) -> Error {
    let by = record
        .destroyed()
        .and_then(|(by, _)| by)
        .map_or_else(|| "an admin".to_owned(), |by| format!("admin {by}"));
    Error::BadState(format!(
        "syncgroup {} was destroyed by {by}: it takes no more changes (its rows stay; `sg \
         leave {}` forgets it here)",
        record.sg.name, record.sg.name
    ))
}

/// Every syncgroup of `db` in `txn`, by id.
pub(crate) fn views(txn: &dyn syncbase_storage::ReadTxn, db: &str) -> Result<Vec<SyncgroupView>> {
    let prefix = DbKeys::new(db).syncgroup_prefix();
    let mut ids = Vec::new();
    txn.scan_prefix(&prefix, &mut |key, _| {
        ids.push(keys::trailing_u64(key).unwrap_or_default());
        Ok(Scan::Continue)
    })?;
    let mut views = Vec::with_capacity(ids.len());
    for id in ids {
        views.extend(load(txn, db, SyncgroupId(id))?);
    }
    Ok(views)
}

/// The syncgroups of `db` held (not left) as `txn` sees them: read inside a write
/// transaction, they are the rule that write commits under.
pub(super) fn held(txn: &dyn syncbase_storage::ReadTxn, db: &str) -> Result<Vec<Syncgroup>> {
    Ok(views(txn, db)?
        .into_iter()
        .filter(|view| !view.local.left)
        .map(|view| view.local.held_copy(view.record.sg))
        .collect())
}

fn find_by_name(
    txn: &dyn syncbase_storage::ReadTxn,
    name: &SyncgroupName,
) -> Result<Option<SyncgroupView>> {
    let Some(bytes) = txn.get(&keys::syncgroup_name(name.as_str()))? else {
        return Ok(None);
    };
    let entry: NameEntry = decode(&bytes, "syncgroup name")?;
    load(txn, &entry.db, entry.id)
}

fn load(
    txn: &dyn syncbase_storage::ReadTxn,
    db: &str,
    id: SyncgroupId,
) -> Result<Option<SyncgroupView>> {
    let keys = DbKeys::new(db);
    let Some(bytes) = txn.get(&keys.syncgroup(id.0))? else {
        return Ok(None);
    };
    let record: SyncgroupRecord = decode(&bytes, "syncgroup")?;
    let local = match txn.get(&keys.syncgroup_local(id.0))? {
        Some(bytes) => decode(&bytes, "syncgroup local state")?,
        None => LocalState::default(),
    };
    Ok(Some(SyncgroupView { record, local }))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use syncbase_storage::MemoryStorage;

    use super::*;
    use crate::clock::Hlc;
    use crate::env::Env;
    use crate::genvec::{DeviceId, Generation, Scope};
    use crate::syncgroup::{MemberInfo, Permissions, Spec, Status};

    fn admin() -> Fingerprint {
        Fingerprint::parse(&"a".repeat(64)).unwrap()
    }

    fn syncgroup() -> Syncgroup {
        Syncgroup {
            id: SyncgroupId(7),
            name: SyncgroupName::parse("h:1/sg").unwrap(),
            spec_version: "1".into(),
            spec: Spec {
                description: String::new(),
                perms: Permissions::only(&admin()),
                prefixes: vec![Scope::new("t", "")],
                mount_tables: vec![],
                is_private: false,
            },
            creator: admin(),
            db: "db".into(),
            status: Status::Running,
            joiners: BTreeMap::from([(
                admin(),
                MemberInfo {
                    sync_priority: 0,
                    is_server: false,
                    device: DeviceId(1),
                    address: String::new(),
                    name: String::new(),
                },
            )]),
            former_writers: GenVector::new(),
            former_lineages: Default::default(),
        }
    }

    #[test]
    fn a_reopened_store_stamps_syncgroup_versions_after_those_it_wrote_though_its_clock_went_back()
    {
        let storage = Arc::new(MemoryStorage::new());
        let time = Arc::new(crate::clock::ManualTime::new(5_000_000_000));
        let store = Store::open(storage.clone(), Env::seeded(1, time.clone())).unwrap();
        store
            .create_database(&DbName::parse(&syncgroup().db).unwrap())
            .unwrap();
        let first = store
            .syncgroup_txn(|txn| txn.write_version(syncgroup(), LocalState::default()))
            .unwrap();
        drop(store);
        // The wall clock steps back a second across the restart (no data commit since).
        time.set(4_000_000_000);
        let store = Store::open(storage, Env::seeded(2, time)).unwrap();
        let second = store
            .syncgroup_txn(|txn| {
                let view = txn.get(&syncgroup().name)?;
                txn.write_version(view.record.sg, view.local)
            })
            .unwrap();
        assert!(
            second.record.stamp.hlc > first.record.stamp.hlc,
            "{:?} after {:?}: members would keep the earlier version",
            second.record.stamp.hlc,
            first.record.stamp.hlc
        );
    }

    /// A store holding `syncgroup()` as a provisional copy (a join reply), its database name
    /// and the syncgroup.
    fn holding_a_provisional_copy() -> (Store, DbName, Syncgroup) {
        let store = Store::open(Arc::new(MemoryStorage::new()), Env::system()).unwrap();
        let sg = syncgroup();
        store
            .syncgroup_txn(|txn| txn.put_provisional(sg.clone(), Version(1), LocalState::default()))
            .unwrap();
        (store, DbName::parse("db").unwrap(), sg)
    }

    #[test]
    fn knowledge_of_a_syncgroup_whose_version_was_refused_is_not_merged() {
        let (store, db, sg) = holding_a_provisional_copy();
        let mut elsewhere = sg.clone();
        elsewhere.db = "other".into();
        let version = SyncgroupRecord {
            stamp: VersionStamp {
                device: DeviceId(1),
                generation: Generation::new(5),
                hlc: Hlc {
                    wall_nanos: i64::MAX / 2,
                    logical: 0,
                },
                version: Version(9),
            },
            sg: elsewhere,
        };
        let knowledge = BTreeMap::from([(
            sg.id,
            [(DeviceId(1), Generation::new(5))].into_iter().collect(),
        )]);
        let applied = store
            .syncgroup_txn(|txn| txn.apply(&db, &admin(), &[version], &knowledge))
            .unwrap();
        assert!(
            matches!(applied.refused[..], [Error::InvalidArgument(_)]),
            "{:?}",
            applied.refused
        );
        assert_eq!(applied.refused_ids, [sg.id].into());
        let held = store.syncgroup(&db, sg.id).unwrap().unwrap();
        assert_eq!(held.local.knowledge.get(DeviceId(1)), Generation::NONE);
        assert_eq!(held.record.sg.db, "db");
    }

    /// Members relay versions to each other in the normal course; the initiator logs a refusal
    /// of one quietly on its kind (`NoAccess`), so the kind must survive to it.
    #[test]
    fn a_version_relayed_by_a_non_admin_is_refused_as_no_access() {
        let (store, db, sg) = holding_a_provisional_copy();
        let version = SyncgroupRecord {
            stamp: VersionStamp {
                device: DeviceId(1),
                generation: Generation::new(5),
                hlc: Hlc {
                    wall_nanos: 1,
                    logical: 0,
                },
                version: Version(9),
            },
            sg,
        };
        let relay = Fingerprint::parse(&"b".repeat(64)).unwrap();
        let applied = store
            .syncgroup_txn(|txn| txn.apply(&db, &relay, &[version], &BTreeMap::new()))
            .unwrap();
        assert!(
            matches!(applied.refused[..], [Error::NoAccess(_)]),
            "{:?}",
            applied.refused
        );
    }

    /// A version stamped by device 1 (the admin's) at `wall` nanoseconds, at `generation`.
    fn admin_version(sg: Syncgroup, generation: u64, wall: i64) -> SyncgroupRecord {
        SyncgroupRecord {
            stamp: VersionStamp {
                device: DeviceId(1),
                generation: Generation::new(generation),
                hlc: Hlc {
                    wall_nanos: wall,
                    logical: 0,
                },
                version: Version(generation),
            },
            sg,
        }
    }

    #[test]
    fn a_later_version_from_an_admin_does_not_bring_a_destroyed_copy_back() {
        let (store, db, sg) = holding_a_provisional_copy();
        let mut destroyed = sg.clone();
        destroyed.status = Status::Destroyed;
        let mut joined = sg.clone();
        joined.joiners.insert(
            Fingerprint::parse(&"c".repeat(64)).unwrap(),
            MemberInfo {
                sync_priority: 0,
                is_server: false,
                device: DeviceId(3),
                address: String::new(),
                name: String::new(),
            },
        );
        let knows = |generation: u64| {
            BTreeMap::from([(
                sg.id,
                [(DeviceId(1), Generation::new(generation))]
                    .into_iter()
                    .collect(),
            )])
        };
        let apply = |record: SyncgroupRecord, generation: u64| {
            store
                .syncgroup_txn(|txn| txn.apply(&db, &admin(), &[record], &knows(generation)))
                .unwrap()
        };
        assert_eq!(apply(admin_version(destroyed, 2, 10), 2).replaced, 1);
        let later = apply(admin_version(joined, 3, 20), 3);
        assert_eq!((later.replaced, later.refused.len()), (0, 0));
        let held = store.syncgroup(&db, sg.id).unwrap().unwrap();
        assert!(held.record.sg.is_destroyed(), "{held:?}");
        assert_eq!(
            held.local.knowledge.get(DeviceId(1)),
            Generation::new(3),
            "the losing version is known, as a last-writer-wins loser is"
        );
        let changed = store
            .syncgroup_txn(|txn| txn.write_version(held.record.sg.clone(), held.local.clone()));
        assert!(
            matches!(&changed, Err(Error::BadState(why)) if why.contains("destroyed")),
            "{changed:?}"
        );
        // Nor does a join or publish reply (a provisional copy) of the same id.
        let replied = store.syncgroup_txn(|txn| {
            txn.put_provisional(sg.clone(), Version(5), LocalState::default())
        });
        assert!(
            matches!(&replied, Err(Error::BadState(why)) if why.contains("destroyed")),
            "{replied:?}"
        );
    }

    #[test]
    fn a_forgotten_syncgroup_frees_its_name_and_keeps_its_version() {
        let (store, db, sg) = holding_a_provisional_copy();
        let mut destroyed = sg.clone();
        destroyed.status = Status::Destroyed;
        let left = LocalState {
            left: true,
            ..LocalState::default()
        };
        store
            .syncgroup_txn(|txn| txn.put(admin_version(destroyed, 2, 10), left))
            .unwrap();
        assert!(store.syncgroup_by_name(&sg.name).unwrap().is_none());
        assert!(store.syncgroup(&db, sg.id).unwrap().is_some());
        // The name takes another syncgroup, and a late copy of the forgotten one still
        // stores (by id) without taking it back.
        let mut other = sg.clone();
        other.id = SyncgroupId(8);
        store
            .syncgroup_txn(|txn| txn.write_version(other, LocalState::default()))
            .unwrap();
        let late = admin_version(
            store.syncgroup(&db, sg.id).unwrap().unwrap().record.sg,
            4,
            30,
        );
        store
            .syncgroup_txn(|txn| txn.apply(&db, &admin(), &[late], &BTreeMap::new()))
            .unwrap();
        let named = store.syncgroup_by_name(&sg.name).unwrap().unwrap();
        assert_eq!(named.record.sg.id, SyncgroupId(8));
    }
}
