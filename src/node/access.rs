//! The access decisions a node makes from its declared peers and its syncgroups' permissions,
//! for the RPC layer (may this peer read this scope, is it a member, is it an admin), the
//! responder (before every page), the initiator (may this device have written this row) and
//! the app write path (may this node write here). ARCHITECTURE.md, "Who may write what", has
//! the rules.
//!
//! Every decision here reads only two sources: the declared peers (changed only by this
//! node's operator: config, `peer add`) and [`Node::held_syncgroups`], the syncgroups this node
//! created, joined or accepted and has not left (proposals live elsewhere and are never read
//! here). [`Node::trust_sets`] computes from the same two sources the sets the security
//! invariant is about (ARCHITECTURE.md, "Who may widen what a node shares"), so a test can
//! check that no remote call widens them.

use std::collections::BTreeSet;

use super::Node;
use crate::error::{Error, Result};
use crate::genvec::{DeviceId, Generation, Scope};
use crate::identity::Fingerprint;
use crate::names::DbName;
use crate::sync::host::WriterCheck;
use crate::syncgroup::{Syncgroup, SyncgroupName, SyncgroupView, Tag};

/// What a node shares and whose records it accepts: the sets no remote call may widen except
/// an admin of a syncgroup this node holds, inside that syncgroup's prefixes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustSets {
    /// (permissions entry, database, scope) served to that entry's identity: a fingerprint, or
    /// `...` for every authenticated peer.
    pub shares: BTreeSet<(String, String, Scope)>,
    /// (writer device, database, scope, last valid generation; None: all) whose records count.
    pub accepts: BTreeSet<(DeviceId, String, Scope, Option<Generation>)>,
    /// (declared peer, database, scope): shared with it, and its records trusted.
    pub declared: BTreeSet<(Fingerprint, String, Scope)>,
}

impl TrustSets {
    /// The (database, scope) of every entry that is in one of `self` and `other` only.
    pub fn changed_scopes(&self, other: &TrustSets) -> BTreeSet<(String, Scope)> {
        let shares = self.shares.symmetric_difference(&other.shares);
        let accepts = self.accepts.symmetric_difference(&other.accepts);
        let declared = self.declared.symmetric_difference(&other.declared);
        shares
            .map(|(_, db, scope)| (db.clone(), scope.clone()))
            .chain(accepts.map(|(_, db, scope, _)| (db.clone(), scope.clone())))
            .chain(declared.map(|(_, db, scope)| (db.clone(), scope.clone())))
            .collect()
    }
}

impl Node {
    /// The sets of the security invariant, from the declared peers and the held syncgroups.
    pub fn trust_sets(&self) -> Result<TrustSets> {
        let mut sets = TrustSets::default();
        for peer in self.peers().declared() {
            for (db, scopes) in &peer.databases {
                for scope in scopes {
                    let entry = (peer.fingerprint.clone(), db.clone(), scope.clone());
                    sets.declared.insert(entry);
                }
            }
        }
        for db in self.store().list_databases()? {
            for sg in self.held_syncgroups(&DbName::parse(&db)?)? {
                add_syncgroup(&mut sets, &sg);
            }
        }
        Ok(sets)
    }

    /// Whether `peer` may read `scope` of `db`: declared with it, or holding Read in a
    /// syncgroup of `db` (that this node has not left) whose prefixes contain it.
    pub fn may_read_scope(&self, peer: &Fingerprint, db: &DbName, scope: &Scope) -> Result<bool> {
        if self.peers().declared_allows(peer, db.as_str(), scope) {
            return Ok(true);
        }
        Ok(self
            .held_syncgroups(db)?
            .iter()
            .any(|sg| sg.spec.contains(scope) && sg.allows(Tag::Read, peer)))
    }

    /// Whether `peer` is a declared peer or holds Read in a syncgroup here (not left): what
    /// `GetTime` and the blob methods require.
    pub fn is_member(&self, peer: &Fingerprint) -> Result<bool> {
        if self.peers().is_declared(peer) {
            return Ok(true);
        }
        for db in self.store().list_databases()? {
            let held = self.held_syncgroups(&DbName::parse(&db)?)?;
            if held.iter().any(|sg| sg.allows(Tag::Read, peer)) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The syncgroup `name` if `peer` holds Admin in it (`NoAccess` otherwise).
    pub fn check_admin(&self, peer: &Fingerprint, name: &SyncgroupName) -> Result<SyncgroupView> {
        let view = self.syncgroup_view(name)?;
        if view.local.left || !view.record.sg.allows(Tag::Admin, peer) {
            return Err(Error::NoAccess(format!(
                "{peer} holds no Admin capability for syncgroup {name}"
            )));
        }
        Ok(view)
    }

    /// The rule records from peers must pass in `db` for a session with `peer`.
    pub fn writer_check(&self, peer: &Fingerprint, db: &DbName) -> Result<WriterCheck> {
        let declared = self.peers().declared_scopes(peer, db.as_str());
        Ok(WriterCheck::new(
            peer.clone(),
            self.held_syncgroups(db)?,
            declared,
        ))
    }

    /// Whether `peer`, whose responder names itself `announcer`, may announce epochs of
    /// `announcer`'s lineage in `db` (`store::notice`): no held syncgroup binds that lineage
    /// to another member, and one binds it to `peer`, or `peer` is a declared peer of `db`.
    /// (A responder names its own device; this ties the claim to the authenticated identity.)
    pub fn may_announce(
        &self,
        peer: &Fingerprint,
        db: &DbName,
        announcer: DeviceId,
    ) -> Result<bool> {
        let declared = !self.peers().declared_scopes(peer, db.as_str()).is_empty();
        let held = self.held_syncgroups(db)?;
        Ok(lineage_owner(&held, declared, peer, announcer))
    }

    /// Refuses app writes under a syncgroup this node belongs to without holding Write there
    /// (unless another syncgroup covering the row grants it): nobody would accept them.
    /// Checked on one snapshot: [`Node::commit`] checks the same rule ([`local_writes_allowed`])
    /// inside the transaction that commits the rows.
    pub fn check_local_writes<'a>(
        &self,
        db: &DbName,
        rows: impl Iterator<Item = (&'a str, &'a str)>,
    ) -> Result<()> {
        let held = self.held_syncgroups(db)?;
        let declared = self.declared_scopes(db);
        local_writes_allowed(&held, &declared, self.identity().fingerprint(), rows)
    }

    /// Every scope of `db` a declared peer shares (config file, `peer add`).
    pub(super) fn declared_scopes(&self, db: &DbName) -> Vec<Scope> {
        self.peers()
            .declared()
            .into_iter()
            .filter_map(|peer| peer.databases.get(db.as_str()).cloned())
            .flatten()
            .collect()
    }

    /// The syncgroups of `db` this node holds (created, joined or accepted) and has not left:
    /// with the declared peers, the only source of every access decision.
    pub fn held_syncgroups(&self, db: &DbName) -> Result<Vec<Syncgroup>> {
        self.store().held_syncgroups(db)
    }
}

/// The rule of [`Node::check_local_writes`] over the held syncgroups `held` (each as
/// [`crate::syncgroup::LocalState::held_copy`] gives it: without this node's entries once an
/// admin said it lost it) and the scopes `declared` peers share in the database, for the node
/// `me`: `NoAccess:` for the first row a syncgroup covers where `me` holds no Write in any
/// syncgroup covering it and no declared peer shares it. The message says why: this node was
/// ejected, its Read revoked, or it may only read.
pub(super) fn local_writes_allowed<'a>(
    held: &[Syncgroup],
    declared: &[Scope],
    me: &Fingerprint,
    rows: impl Iterator<Item = (&'a str, &'a str)>,
) -> Result<()> {
    if held.is_empty() {
        return Ok(());
    }
    for (table, row) in rows {
        let covering: Vec<_> = held
            .iter()
            .filter(|sg| sg.spec.covers(table, row))
            .collect();
        let shared_otherwise = covering.iter().any(|sg| sg.allows(Tag::Write, me))
            || declared.iter().any(|scope| scope.covers(table, row));
        if let (Some(sg), false) = (covering.first(), shared_otherwise) {
            let name = &sg.name;
            let why = if sg.is_destroyed() {
                format!(
                    "which an admin destroyed (the rows stay; `syncbase sg leave {name}` forgets \
                     it, and this node may write them again)"
                )
            } else if !sg.joiners.contains_key(me) {
                "which ejected this node (ask an admin for a new invite, then `syncbase sg join`)"
                    .to_owned()
            } else if !sg.allows(Tag::Read, me) {
                format!(
                    "where this node's Read was revoked (once an admin grants it again, run \
                     `syncbase sg join {name} --admin ADMIN_FINGERPRINT`)"
                )
            } else {
                "where this node may only read".to_owned()
            };
            return Err(Error::NoAccess(format!(
                "{} is shared by syncgroup {}, {why}",
                crate::names::row_text(table, row),
                sg.name
            )));
        }
    }
    Ok(())
}

/// The rule of [`Node::may_announce`] over the held syncgroups.
pub(super) fn lineage_owner(
    held: &[Syncgroup],
    declared: bool,
    peer: &Fingerprint,
    announcer: DeviceId,
) -> bool {
    let mut bound = false;
    for owner in held.iter().filter_map(|sg| sg.member_of_device(announcer)) {
        if owner != peer {
            return false;
        }
        bound = true;
    }
    bound || declared
}

/// Adds what one held syncgroup shares and accepts.
fn add_syncgroup(sets: &mut TrustSets, sg: &Syncgroup) {
    let readers: BTreeSet<String> = sg
        .spec
        .perms
        .0
        .get(&Tag::Read)
        .map(|list| list.allowed.iter().cloned().collect())
        .unwrap_or_default();
    let members = sg.joiners.keys().map(|member| member.as_str().to_owned());
    for scope in &sg.spec.prefixes {
        for reader in readers.iter().cloned().chain(members.clone()) {
            let readable = match Fingerprint::parse(&reader) {
                Ok(who) => sg.allows(Tag::Read, &who),
                Err(_) => true, // `...`: everyone (individual refusals are still refused)
            };
            if readable {
                sets.shares.insert((reader, sg.db.clone(), scope.clone()));
            }
        }
        for (member, info) in &sg.joiners {
            if sg.allows(Tag::Write, member) {
                let entry = (info.device, sg.db.clone(), scope.clone(), None);
                sets.accepts.insert(entry);
            }
        }
        for (device, generation) in sg.former_writers.iter() {
            let entry = (device, sg.db.clone(), scope.clone(), Some(generation));
            sets.accepts.insert(entry);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::genvec::GenVector;
    use crate::syncgroup::{MemberInfo, Permissions, Spec, Status, SyncgroupId};

    fn id(c: char) -> Fingerprint {
        Fingerprint::parse(&c.to_string().repeat(64)).unwrap()
    }

    /// A syncgroup whose members are `a` (device 1) and `b` (device 2).
    fn syncgroup() -> Syncgroup {
        let member = |device| MemberInfo {
            sync_priority: 0,
            is_server: false,
            device: DeviceId(device),
            address: String::new(),
            name: String::new(),
        };
        Syncgroup {
            id: SyncgroupId(7),
            name: SyncgroupName::parse("h:1/sg").unwrap(),
            spec_version: "1".into(),
            spec: Spec {
                description: String::new(),
                perms: Permissions::only(&id('a')),
                prefixes: vec![Scope::new("t", "")],
                mount_tables: vec![],
                is_private: false,
            },
            creator: id('a'),
            db: "db".into(),
            status: Status::Running,
            joiners: BTreeMap::from([(id('a'), member(1)), (id('b'), member(2))]),
            former_writers: GenVector::new(),
            former_lineages: Default::default(),
        }
    }

    #[test]
    fn only_the_member_bound_to_a_lineage_announces_its_epochs() {
        let held = [syncgroup()];
        let a_later = DeviceId(1).with_epoch(4);
        assert!(lineage_owner(&held, false, &id('a'), a_later));
        assert!(
            !lineage_owner(&held, false, &id('b'), a_later),
            "b claims a's lineage"
        );
        assert!(
            !lineage_owner(&held, true, &id('b'), a_later),
            "declared, but the lineage is a member's"
        );
        let unbound = DeviceId(3).with_epoch(4);
        assert!(!lineage_owner(&held, false, &id('c'), unbound));
        assert!(
            lineage_owner(&held, true, &id('c'), unbound),
            "a declared peer"
        );
    }
}
