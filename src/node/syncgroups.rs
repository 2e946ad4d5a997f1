//! A node's syncgroup operations (reference §3) and syncgroup metadata sync; the access
//! decisions made from the permissions are `node::access`. The app-facing operations act as this node's identity (create,
//! spec changes, eject, invites, leave); the admin-side ones (a join, a publish) act for an
//! authenticated peer. Every change is one storage transaction with its checks, and after it
//! the derived peers (the members this node syncs with, and what) are recomputed, which wakes
//! the dialer and every live responder: a revoked member's calls fail on their next page.
//!
//! Outgoing calls (publishing at a name's host, joining at an admin) are the RPC layer's job;
//! it calls the `*_reply` methods here with what the remote node answered.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::Node;
use crate::config::Role;
use crate::error::{Error, Result};
use crate::genvec::GenVector;
use crate::identity::Fingerprint;
use crate::names::DbName;
use crate::store::{
    Store, SyncgroupDeltas, SyncgroupKnowledge, SyncgroupTxn, SyncgroupsApplied, destroyed_error,
};
use crate::sync::membership::{JoinReply, PublishOutcome};
use crate::sync::peers::{PeerConfig, PeerRegistry};
use crate::syncgroup::access::Level;
use crate::syncgroup::invite::{Grant, Invite, InviteToken, hash_secret};
use crate::syncgroup::{
    LocalState, MemberInfo, Permissions, Removal, Removed, Spec, Status, Syncgroup, SyncgroupId,
    SyncgroupName, SyncgroupRecord, SyncgroupView, Tag, new_spec_version,
};

/// Most uses one invite can be minted with.
pub const MAX_INVITE_USES: u32 = 10_000;

impl Node {
    /// This node as a member: its device, whether it is a server, and the address it
    /// advertises (none for a leaf).
    pub fn member_info(&self) -> MemberInfo {
        MemberInfo {
            sync_priority: 0,
            is_server: self.role == Role::Server,
            device: self.store().device(),
            address: match self.role {
                Role::Leaf => String::new(),
                Role::Normal | Role::Server => self.peer_address(),
            },
            name: self.name().to_owned(),
        }
    }

    // ---- reads ----

    /// One syncgroup with this node's state of it (`NoExist` if unknown).
    pub fn syncgroup_view(&self, name: &SyncgroupName) -> Result<SyncgroupView> {
        self.store()
            .syncgroup_by_name(name)?
            .ok_or_else(|| Error::NoExist(format!("syncgroup {name} is not known here")))
    }

    /// The syncgroups of `db`, or of every database, by name; not those this node forgot
    /// (destroyed here, or left after it learnt of their destroy: [`LocalState::forgot`]).
    pub fn list_syncgroups(&self, db: Option<&DbName>) -> Result<Vec<SyncgroupView>> {
        let mut views = match db {
            Some(db) => self.store().syncgroups(db)?,
            None => self.store().all_syncgroups()?,
        };
        views.retain(|view| !view.local.forgot(&view.record.sg));
        views.sort_by(|a, b| a.record.sg.name.cmp(&b.record.sg.name));
        Ok(views)
    }

    // ---- operations on this node's behalf ----

    /// Creates a syncgroup with this node as creator, admin (if the permissions are empty)
    /// and first member. It is `Running` at once if its name routes here; otherwise it stays
    /// `PublishPending` until [`Node::publish_reply`]. A destroyed syncgroup holding the name
    /// here (destroyed by another admin, not yet left) is forgotten first, as `sg leave`
    /// would: the new one takes the name under a new id. `Exist:` if a live syncgroup holds
    /// the name.
    pub async fn create_syncgroup(
        &self,
        db: DbName,
        name: SyncgroupName,
        mut spec: Spec,
    ) -> Result<SyncgroupView> {
        let me = self.identity().fingerprint().clone();
        if spec.perms.0.is_empty() {
            spec.perms = Permissions::only(&me);
        }
        spec.validate()?;
        self.open_database(&db).await?;
        let hosted_here = self.hosts(&name);
        let sg = Syncgroup {
            id: SyncgroupId::random(self.env().random.as_ref())?,
            name,
            spec_version: new_spec_version(self.env().random.as_ref())?,
            spec,
            creator: me.clone(),
            db: db.as_str().to_owned(),
            status: if hosted_here {
                Status::Running
            } else {
                Status::PublishPending
            },
            joiners: BTreeMap::from([(me, self.member_info())]),
            former_writers: GenVector::new(),
            former_lineages: Default::default(),
        };
        self.change_syncgroups(move |txn| {
            if let Some(existing) = txn.find(&sg.name)?
                && existing.record.sg.is_destroyed()
            {
                // Dead for good: forgotten as `sg leave` would, which frees the name.
                forget(txn, existing)?;
            } else if let Some(existing) = txn.find(&sg.name)? {
                return Err(Error::Exist(format!(
                    "syncgroup {} already exists (id {})",
                    sg.name,
                    existing.record.sg.id.to_hex()
                )));
            }
            txn.write_version(sg, LocalState::default())
        })
        .await
    }

    /// Before publishing at the name's host: lists the host as a member and an admin (it
    /// will serve joins), so the version the host receives, and holds once it accepts, already
    /// makes it an admin.
    pub async fn admit_host(
        &self,
        name: SyncgroupName,
        host: Fingerprint,
        info: MemberInfo,
    ) -> Result<SyncgroupView> {
        self.change_syncgroups(move |txn| {
            let mut view = txn.get(&name)?;
            let sg = &mut view.record.sg;
            if sg.joiners.get(&host) == Some(&info) && sg.allows(Tag::Admin, &host) {
                return Ok(view);
            }
            sg.spec.perms.grant(Level::Admin, &host);
            sg.joiners.insert(host, info);
            txn.write_version(view.record.sg, view.local)
        })
        .await
    }

    /// Records how publishing at `host` went: taken at once makes the syncgroup `Running`; a
    /// proposal leaves it `PublishPending` (the host's operator has yet to accept it; the host
    /// then marks it `Running` itself once it has caught up); `Exist` makes it
    /// `PublishRejected`, takes the host off again and returns the host's `Exist` (so the
    /// caller fails with the host's error); `DupSyncgroupPublish` changes nothing (another
    /// admin published it); any other failure (the host unreachable, refusing) removes the
    /// syncgroup again and is returned, so nothing is left half made.
    pub async fn publish_reply(
        &self,
        name: SyncgroupName,
        host: Fingerprint,
        outcome: std::result::Result<PublishOutcome, Error>,
    ) -> Result<SyncgroupView> {
        let outcome = match outcome {
            Err(error) if !matches!(error, Error::Exist(_) | Error::DupSyncgroupPublish(_)) => {
                // Never published: undo the creation, so nothing is left half made.
                self.change_syncgroups(move |txn| {
                    let view = txn.get(&name)?;
                    txn.delete(&view.record.sg)
                })
                .await?;
                return Err(error);
            }
            outcome => outcome,
        };
        self.change_syncgroups(move |txn| {
            let mut view = txn.get(&name)?;
            match outcome {
                Ok(PublishOutcome::Accepted) => {
                    view.record.sg.status = Status::Running;
                    txn.write_version(view.record.sg, view.local)
                }
                Err(Error::Exist(message)) => {
                    view.record.sg.status = Status::PublishRejected;
                    view.record.sg.eject(&host);
                    txn.write_version(view.record.sg, view.local)?;
                    Err(Error::Exist(format!(
                        "{message}; the host refused the publish, so {name} stays on this \
                         node as publish-rejected, shared with no one: create the syncgroup \
                         under another name"
                    )))
                }
                Ok(PublishOutcome::Proposed) | Err(_) => Ok(view),
            }
        })
        .await
    }

    /// Stores what an admin answered to this node's join: the syncgroup, pending until this
    /// node's knowledge of it reaches the checkpoint.
    pub async fn join_reply(&self, reply: JoinReply) -> Result<SyncgroupView> {
        let JoinReply {
            sg,
            version,
            checkpoint,
        } = reply;
        sg.validate()?;
        let me = self.identity().fingerprint();
        if sg.joiners.get(me).map(|info| info.device) != Some(self.store().device()) {
            return Err(Error::invalid(
                "the admin's reply does not list this node as a member",
            ));
        }
        self.open_database(&DbName::parse(&sg.db)?).await?;
        self.change_syncgroups(move |txn| {
            let local = LocalState {
                pending: Some(checkpoint),
                ..LocalState::default()
            };
            if let Some(old) = txn.find(&sg.name)?
                && old.record.sg.id != sg.id
                && old.record.sg.is_destroyed()
            {
                // The name's old syncgroup was destroyed and reused: forget the old one here.
                forget(txn, old)?;
            }
            if let Some(old) = txn.by_id(&sg.db, sg.id)?
                && old.record.sg.is_destroyed()
            {
                return Err(destroyed_error(&old.record));
            }
            match txn.find(&sg.name)? {
                Some(existing) if existing.record.sg.id != sg.id => Err(Error::Exist(format!(
                    "syncgroup name {} is known here with another id",
                    sg.name
                ))),
                Some(mut existing) if !existing.record.stamp.is_provisional() => {
                    existing.local.left = false;
                    existing.local.removed = None;
                    existing.local.pending = local.pending;
                    existing.local.settle();
                    txn.put_local(&sg.db, sg.id, &existing.local)?;
                    Ok(existing)
                }
                _ => txn.put_provisional(sg, version, local),
            }
        })
        .await
    }

    /// Replaces the spec (Admin; not while pending). A non-empty `version` must be the
    /// current spec version; prefixes cannot change.
    pub async fn set_spec(
        &self,
        actor: Fingerprint,
        name: SyncgroupName,
        spec: Spec,
        version: String,
    ) -> Result<SyncgroupView> {
        spec.validate()?;
        self.change_syncgroups(move |txn| {
            let mut view = admin_view(txn, &actor, &name)?;
            let known = txn.data_knowledge(&view.record.sg.db)?;
            let before = view.record.sg.clone();
            let sg = &mut view.record.sg;
            if !version.is_empty() && version != sg.spec_version {
                return Err(Error::BadVersion(format!(
                    "syncgroup {name} is at spec version {}, not {version}",
                    sg.spec_version
                )));
            }
            if spec.prefixes != sg.spec.prefixes {
                return Err(Error::invalid("a syncgroup's prefixes cannot change"));
            }
            sg.spec = spec;
            if !sg.has_member_admin() {
                return Err(Error::invalid(format!(
                    "the change would leave no member of syncgroup {name} an admin (grant \
                     Admin to a member first)"
                )));
            }
            sg.spec_version = new_spec_version(txn.env().random.as_ref())?;
            sg.remember_former_writers(&before, &known);
            txn.write_version(view.record.sg, view.local)
        })
        .await
    }

    /// Removes `member` from the members and every access list (Admin; not while pending).
    pub async fn eject(
        &self,
        actor: Fingerprint,
        name: SyncgroupName,
        member: Fingerprint,
    ) -> Result<SyncgroupView> {
        self.change_syncgroups(move |txn| {
            let mut view = admin_view(txn, &actor, &name)?;
            let known = txn.data_knowledge(&view.record.sg.db)?;
            let before = view.record.sg.clone();
            if !view.record.sg.eject(&member) {
                return Err(Error::NoExist(format!(
                    "{member} is not a member of syncgroup {name}"
                )));
            }
            let validated = view.record.sg.spec.perms.validate();
            if validated.is_err() || !view.record.sg.has_member_admin() {
                return Err(Error::invalid(format!(
                    "ejecting {member} would leave {name} without an admin among its members"
                )));
            }
            view.record.sg.remember_former_writers(&before, &known);
            txn.write_version(view.record.sg, view.local)
        })
        .await
    }

    /// Stops syncing the syncgroup's prefixes; its data stays. Joining again resumes. A
    /// destroyed syncgroup is forgotten instead ([`LocalState::forgot`]): its name is freed
    /// and `sg list` no longer shows it.
    pub async fn leave(&self, name: SyncgroupName) -> Result<SyncgroupView> {
        self.change_syncgroups(move |txn| {
            let view = txn.get(&name)?;
            forget(txn, view)
        })
        .await
    }

    /// Destroys a syncgroup for good (`actor` must hold Admin; not while pending or left):
    /// writes its last version, [`Status::Destroyed`], which every member takes from the
    /// admins by metadata sync and which no later version replaces
    /// ([`SyncgroupRecord::supersedes`]). Here it is forgotten at once: its name is free
    /// (`sg create` may reuse it, under a new id), its invites are void, and `sg list` no
    /// longer shows it; its version stays, by id, to tell members that ask. The rows stay on
    /// every node. `NoExist:` for an unknown name, `NoAccess:` for a non-admin, `BadState:`
    /// while this node's copy is pending or after it left (or learnt of a destroy).
    pub async fn destroy(&self, actor: Fingerprint, name: SyncgroupName) -> Result<SyncgroupView> {
        self.change_syncgroups(move |txn| {
            let mut view = admin_view(txn, &actor, &name).map_err(|error| match error {
                Error::NoAccess(why) => Error::NoAccess(format!(
                    "{why}: only an admin of a syncgroup may destroy it (ask one to run `sg \
                     destroy {name}`)"
                )),
                other => other,
            })?;
            view.record.sg.status = Status::Destroyed;
            view.local.left = true;
            let written = txn.write_version(view.record.sg, view.local)?;
            tracing::info!(syncgroup = %name, "destroyed the syncgroup; members learn it from its admins");
            Ok(written)
        })
        .await
    }

    /// Mints an invite at `level` (this node must be an admin with a peer listener). `uses`
    /// 0 means one.
    pub async fn mint_invite(
        &self,
        name: SyncgroupName,
        level: Level,
        expires_in: Option<Duration>,
        uses: u32,
    ) -> Result<InviteToken> {
        let address = self.invite_address(uses);
        let expires_nanos = expiry(self.env().now_nanos(), expires_in);
        let me = self.identity().fingerprint().clone();
        self.change_syncgroups(move |txn| {
            // Who may invite first: a non-admin is told who can, whatever its listener.
            let view = admin_view(txn, &me, &name)
                .map_err(|error| who_can_invite(error, txn, &me, &name))?;
            let address = address?;
            let token = InviteToken::mint(me, address, name, txn.env().random.as_ref())?;
            let invite = Invite {
                grant: Grant::Join {
                    syncgroup: view.record.sg.id,
                    level,
                },
                expires_nanos,
                uses_left: uses.max(1),
            };
            txn.put_invite(&token.hash(), &invite)?;
            Ok(token)
        })
        .await
    }

    // ---- admin-side operations for authenticated peers ----

    /// Serves `JoinSyncgroupAtAdmin` for `joiner`: redeems the invite if one is given, then
    /// requires Read, adds the member and writes the version whose checkpoint it returns.
    pub async fn join_at_admin(
        &self,
        joiner: Fingerprint,
        name: SyncgroupName,
        mut info: MemberInfo,
        invite_secret: Option<String>,
    ) -> Result<JoinReply> {
        if info.device.0 == 0 {
            return Err(Error::invalid("the joiner's device id is 0"));
        }
        info.address = info.address.trim().to_owned();
        let me = self.identity().fingerprint().clone();
        self.change_syncgroups(move |txn| {
            if let Some(secret) = &invite_secret {
                check_invite_not_destroyed(txn, secret)?;
            }
            let mut view = txn.get(&name)?;
            if view.record.sg.is_destroyed() {
                return Err(destroyed_error(&view.record));
            }
            if view.local.left {
                return Err(Error::NoExist(format!("this node left syncgroup {name}")));
            }
            view.local.check_settled(&name)?;
            let sg = &mut view.record.sg;
            if !sg.allows(Tag::Admin, &me) {
                return Err(Error::NoAccess(format!(
                    "this node is not an admin of syncgroup {name}"
                )));
            }
            if let Some(secret) = invite_secret {
                let level = redeem_join_invite(txn, &secret, sg.id)?;
                sg.spec.perms.grant(level, &joiner);
            }
            if !sg.allows(Tag::Read, &joiner) {
                return Err(Error::NoAccess(format!(
                    "{joiner} holds no Read capability for syncgroup {name}"
                )));
            }
            if sg
                .member_of_device(info.device)
                .is_some_and(|other| other != &joiner)
            {
                return Err(Error::invalid(format!(
                    "device {:016x} belongs to another member",
                    info.device.0
                )));
            }
            sg.joiners.insert(joiner, info);
            let written = txn.write_version(view.record.sg, view.local)?;
            Ok(JoinReply {
                sg: written.record.sg,
                version: written.record.stamp.version,
                checkpoint: written.local.knowledge,
            })
        })
        .await
    }

    // ---- syncgroup metadata sync ----

    /// For `peer`: the versions it lacks of the syncgroups in `wanted` and this node's
    /// knowledge of them, for those this node holds (and has not left) and `peer` may read,
    /// and for every destroyed one (left or not; to a peer its version does not let read,
    /// its [`SyncgroupRecord::tombstone`]); the others are left out. `NoAccess:` if none is
    /// left.
    pub fn syncgroup_deltas(
        &self,
        peer: &Fingerprint,
        db: &DbName,
        wanted: &SyncgroupKnowledge,
    ) -> Result<SyncgroupDeltas> {
        if wanted.is_empty() {
            return Err(Error::invalid("GetDeltas names no syncgroup"));
        }
        let readable = |id: &SyncgroupId| -> Result<bool> {
            // A destroyed syncgroup is served even where it was forgotten, and to any peer
            // that names its id: its destroy must reach every node holding a copy, the admin
            // that destroyed it being the first to tell them, including members admitted
            // concurrently that its version does not list (they get its tombstone).
            Ok(self.store().syncgroup(db, *id)?.is_some_and(|view| {
                let sg = &view.record.sg;
                sg.is_destroyed() || (!view.local.left && sg.allows(Tag::Read, peer))
            }))
        };
        // Like a data responder, serve the syncgroups the peer may read and leave the others
        // out: one syncgroup left or lost must not stop the metadata of the others (and the
        // data sessions that wait for it).
        let mut served = SyncgroupKnowledge::new();
        let mut refused = None;
        for (id, vector) in wanted {
            if readable(id)? {
                served.insert(*id, vector.clone());
            } else {
                refused.get_or_insert(*id);
            }
        }
        if let (true, Some(id)) = (served.is_empty(), refused) {
            return Err(Error::NoAccess(format!(
                "{peer} holds no Read capability for syncgroup {} of database {:?}",
                id.to_hex(),
                db.as_str()
            )));
        }
        let mut deltas = self.store().syncgroup_deltas(db, &served)?;
        for record in &mut deltas.records {
            if record.sg.is_destroyed() && !record.sg.allows(Tag::Read, peer) {
                *record = record.tombstone();
            }
        }
        Ok(deltas)
    }

    /// For `peer`, which asked for the syncgroups in `wanted`: how it lost each one it may no
    /// longer read (`Ejected` if it is no member, `ReadRevoked` if it is one without Read),
    /// among those this node holds, has not left, has settled, and administers (its own
    /// removal applied). A peer that never was a member and names a syncgroup's id is told
    /// `Ejected` too: the notice says only that it may not read it, as `NoAccess:` does.
    pub fn syncgroup_removals(
        &self,
        peer: &Fingerprint,
        db: &DbName,
        wanted: &SyncgroupKnowledge,
    ) -> Result<BTreeMap<SyncgroupId, Removal>> {
        let me = self.identity().fingerprint();
        let mut removals = BTreeMap::new();
        for id in wanted.keys() {
            let Some(view) = self.store().syncgroup(db, *id)? else {
                continue;
            };
            let settled = !view.local.left && view.local.pending.is_none();
            let sg = view.local.held_copy(view.record.sg);
            if !settled || !sg.allows(Tag::Admin, me) || sg.allows(Tag::Read, peer) {
                continue;
            }
            let how = if sg.joiners.contains_key(peer) {
                Removal::ReadRevoked
            } else {
                Removal::Ejected
            };
            removals.insert(*id, how);
        }
        Ok(removals)
    }

    /// Takes an admin's removal notices ([`Node::syncgroup_removals`] on its side): each for
    /// a syncgroup of `db` held here, not left, in whose copy here `sender` holds Admin, is
    /// recorded in its local state (`sg show`: Ejected / Read revoked); from then on this
    /// node no longer syncs it and refuses its app's writes under its prefixes, unless
    /// another syncgroup or a declared peer shares the row (`node::access`). A notice that
    /// changes nothing commits nothing.
    pub async fn take_removals(
        &self,
        db: DbName,
        sender: Fingerprint,
        removals: BTreeMap<SyncgroupId, Removal>,
    ) -> Result<()> {
        let me = self.identity().fingerprint().clone();
        let mut taken = Vec::new();
        for (id, how) in removals {
            if let Some(view) = self.store().syncgroup(&db, id)?
                && removal_is_news(&view, &sender, how)
            {
                taken.push((id, how));
            }
        }
        if taken.is_empty() {
            return Ok(());
        }
        let now = self.env().now_nanos();
        self.change_syncgroups(move |txn| {
            for (id, how) in taken {
                let Some(mut view) = txn.by_id(db.as_str(), id)? else {
                    continue;
                };
                if !removal_is_news(&view, &sender, how) {
                    continue;
                }
                tracing::warn!(
                    syncgroup = %view.record.sg.name,
                    admin = %sender,
                    "an admin says this node lost the syncgroup: {}; it stops syncing it and \
                     refuses writes under its prefixes",
                    how.label()
                );
                view.local.removed = Some(Removed {
                    how,
                    by: sender.clone(),
                    member: me.clone(),
                    at_nanos: now,
                });
                txn.put_local(db.as_str(), id, &view.local)?;
            }
            Ok(())
        })
        .await
    }

    /// Applies syncgroup versions and knowledge from the authenticated peer `sender`.
    pub async fn apply_syncgroups(
        &self,
        db: DbName,
        sender: Fingerprint,
        records: Vec<SyncgroupRecord>,
        knowledge: SyncgroupKnowledge,
    ) -> Result<SyncgroupsApplied> {
        if !self
            .store()
            .syncgroup_page_is_news(&db, &sender, &records, &knowledge)?
        {
            return Ok(SyncgroupsApplied::default());
        }
        let applied = self
            .change_syncgroups(move |txn| txn.apply(&db, &sender, &records, &knowledge))
            .await?;
        self.confirm_published().await?;
        Ok(applied)
    }

    /// As the host of a syncgroup it accepted (or took by publish invite), marks it
    /// `Running` once this node is an admin of a settled copy still `PublishPending`.
    /// The candidates are found on a snapshot; each is checked again inside the transaction
    /// that marks it (an admin may have taken this node's Admin away, or it left, meanwhile).
    pub(super) async fn confirm_published(&self) -> Result<()> {
        let me = self.identity().fingerprint().clone();
        let waiting: Vec<SyncgroupName> = self
            .store()
            .all_syncgroups()?
            .into_iter()
            .filter(|view| self.hosts(&view.record.sg.name) && awaits_confirmation(view, &me))
            .map(|view| view.record.sg.name)
            .collect();
        for name in waiting {
            let me = me.clone();
            self.change_syncgroups(move |txn| {
                let mut view = txn.get(&name)?;
                if !awaits_confirmation(&view, &me) {
                    return Ok(());
                }
                view.record.sg.status = Status::Running;
                txn.write_version(view.record.sg, view.local).map(drop)
            })
            .await?;
        }
        Ok(())
    }

    /// What to ask `peer` for in `db`: the syncgroups (not left) it is a member of with Read,
    /// with this node's knowledge of each.
    pub fn syncgroups_shared_with(
        &self,
        peer: &Fingerprint,
        db: &DbName,
    ) -> Result<SyncgroupKnowledge> {
        Ok(self
            .store()
            .syncgroups(db)?
            .into_iter()
            .filter(|view| {
                let sg = &view.record.sg;
                !view.local.left
                    && view.local.removed.is_none()
                    && !sg.is_destroyed()
                    && sg.joiners.contains_key(peer)
                    && sg.allows(Tag::Read, peer)
            })
            .map(|view| (view.record.sg.id, view.local.knowledge))
            .collect())
    }

    /// Recomputes the peers syncgroup membership makes: every other member holding Read (for a
    /// leaf, the server members, and the admins advertising an address while no server member
    /// is an admin: only an admin's versions settle its copy and tell it of later members),
    /// sharing the prefixes of the syncgroups this node has not left nor lost. A member
    /// without an address is never dialled; it is synced when it connects.
    pub fn refresh_syncgroup_peers(&self) -> Result<()> {
        refresh_derived(
            self.store(),
            self.peers(),
            self.identity().fingerprint(),
            self.role,
        )
    }

    /// While this node's copy of a syncgroup is pending: what it waits for and what to do, in
    /// one line ("" if it is not pending). It waits for the syncgroup's metadata from an
    /// admin (only admins' versions are taken): from the admins it dials, or, when none
    /// advertises an address it may dial, for one to connect here.
    pub fn waiting_for(&self, view: &SyncgroupView) -> String {
        let lost = view.local.removed.is_some() || view.record.sg.is_destroyed();
        if view.local.pending.is_none() || view.local.left || lost {
            return String::new();
        }
        let me = self.identity().fingerprint();
        let sg = &view.record.sg;
        let admins: Vec<&Fingerprint> = sg
            .joiners
            .keys()
            .filter(|member| *member != me && sg.allows(Tag::Admin, member))
            .collect();
        let dialled: Vec<String> = admins
            .iter()
            .filter_map(|admin| {
                self.peers()
                    .get(admin)
                    .filter(|peer| !peer.address.is_empty())
            })
            .map(|peer| {
                let status = self.peers().status(&peer.fingerprint);
                let error = status
                    .and_then(|status| status.last_error)
                    .map(|error| format!(", last error: {error}"))
                    .unwrap_or_default();
                format!(
                    "{} at {}{error}",
                    self.peer_label(&peer.fingerprint),
                    peer.address
                )
            })
            .collect();
        if !dialled.is_empty() {
            return format!(
                "waiting for the syncgroup's metadata from an admin, dialled here: {}; check \
                 that one runs and is reachable from this node",
                dialled.join("; ")
            );
        }
        let why = if self.role == Role::Leaf {
            "this node is a leaf and no admin advertises an address it could dial"
        } else {
            "no admin advertises an address this node could dial"
        };
        format!(
            "waiting for an admin to connect here ({why}); make a member with a peer listener \
             an admin (`syncbase sg grant {} FINGERPRINT admin` on an admin), ideally one \
             started with `--role server`, or run the admin with a peer listener",
            sg.name
        )
    }

    /// A peer as status lines name it: its fingerprint, and its name in parentheses if it
    /// has one (a local label, else the name it chose as a member).
    pub fn peer_label(&self, peer: &Fingerprint) -> String {
        match self.peers().get(peer).map(|config| config.name) {
            Some(name) if !name.is_empty() => format!("{peer} ({name})"),
            _ => peer.to_string(),
        }
    }

    /// The address an invite names (this node's peer listener), after checking `uses`.
    pub(super) fn invite_address(&self, uses: u32) -> Result<String> {
        if uses > MAX_INVITE_USES {
            return Err(Error::invalid(format!(
                "an invite has at most {MAX_INVITE_USES} uses"
            )));
        }
        let address = self.peer_address();
        if address.is_empty() {
            return Err(Error::BadState(
                "this node has no peer listener (`serve --peer-listen ADDR`), so nobody could \
                 redeem an invite minted here; restart it with --peer-listen, or mint the \
                 invite on another admin"
                    .into(),
            ));
        }
        Ok(address)
    }

    /// Whether a syncgroup name routes to this node.
    pub(super) fn hosts(&self, name: &SyncgroupName) -> bool {
        let address = self.peer_address();
        !address.is_empty() && name.host() == address
    }

    /// Runs a syncgroup change on a blocking thread, then recomputes the derived peers on
    /// the same thread, right after the commit: a caller dropped while it waits (a link torn
    /// down by another session's failure) leaves no committed change without its peers
    /// (which kept an admin as a peer after its destroy, or an ejected member for a while).
    /// A failure to recompute them is logged, not returned: the change is committed.
    pub(super) async fn change_syncgroups<T: Send + 'static>(
        &self,
        change: impl FnOnce(&mut SyncgroupTxn<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let peers = self.peers.clone();
        let me = self.identity().fingerprint().clone();
        let role = self.role;
        self.write(move |store| {
            let outcome = store.syncgroup_txn(change)?;
            if let Err(error) = refresh_derived(store, &peers, &me, role) {
                tracing::error!("recomputing the syncgroup peers after a change: {error}");
            }
            Ok(outcome)
        })
        .await
    }
}

/// [`Node::refresh_syncgroup_peers`] over the parts it reads: the store's syncgroups, the
/// registry the derived peers go to, this node's identity and role.
fn refresh_derived(
    store: &Store,
    peers: &PeerRegistry,
    me: &Fingerprint,
    role: Role,
) -> Result<()> {
    let leaf = role == Role::Leaf;
    let mut derived: BTreeMap<Fingerprint, PeerConfig> = BTreeMap::new();
    for view in store.all_syncgroups()? {
        let sg = &view.record.sg;
        if view.local.left || view.local.removed.is_some() || sg.is_destroyed() {
            continue;
        }
        let server_admin = sg.joiners.iter().any(|(member, info)| {
            member != me && info.is_server && dialable_admin(sg, member, info)
        });
        for (member, info) in &sg.joiners {
            let leaf_dials = info.is_server || (!server_admin && dialable_admin(sg, member, info));
            let unwanted = member == me || (leaf && !leaf_dials) || !sg.allows(Tag::Read, member);
            if unwanted {
                continue;
            }
            let peer = derived.entry(member.clone()).or_insert_with(|| PeerConfig {
                address: info.address.clone(),
                fingerprint: member.clone(),
                databases: BTreeMap::new(),
                from_config: false,
                syncgroups: BTreeSet::new(),
                name: String::new(),
            });
            peer.syncgroups.insert(sg.id);
            if peer.address.is_empty() {
                peer.address.clone_from(&info.address);
            }
            if peer.name.is_empty() {
                peer.name.clone_from(&info.name);
            }
            peer.databases
                .entry(sg.db.clone())
                .or_default()
                .extend(sg.spec.prefixes.iter().cloned());
        }
    }
    peers.set_derived(derived);
    Ok(())
}

/// Stops syncing the syncgroup of `view` here (`sg leave`), and forgets it if it was
/// destroyed: its name is freed ([`SyncgroupTxn::unindex`]), its version kept by id.
fn forget(txn: &mut SyncgroupTxn<'_>, mut view: SyncgroupView) -> Result<SyncgroupView> {
    view.local.left = true;
    let sg = &view.record.sg;
    txn.put_local(&sg.db, sg.id, &view.local)?;
    if view.local.forgot(sg) {
        txn.unindex(sg)?;
    }
    Ok(view)
}

/// Fails a join whose invite (by its `secret`) is for a syncgroup destroyed here: `NoExist:`,
/// saying so, rather than "not known" or "for another syncgroup" once its name was freed or
/// reused. An invite unknown here, or for a syncgroup not destroyed, passes.
fn check_invite_not_destroyed(txn: &SyncgroupTxn<'_>, secret: &str) -> Result<()> {
    let Some(Invite {
        grant: Grant::Join { syncgroup, .. },
        ..
    }) = txn.invite(&hash_secret(secret))?
    else {
        return Ok(());
    };
    let Some(binding) = txn.binding(syncgroup)? else {
        return Ok(());
    };
    match txn.by_id(&binding.db, syncgroup)? {
        Some(view) if view.record.sg.is_destroyed() => {
            let by = view
                .record
                .destroyed()
                .and_then(|(by, _)| by)
                .map_or_else(|| "an admin".to_owned(), |by| format!("admin {by}"));
            Err(Error::NoExist(format!(
                "syncgroup {} (id {}) was destroyed by {by}, so its invites are void: ask an \
                 admin for an invite to a syncgroup that exists",
                binding.name,
                syncgroup.to_hex()
            )))
        }
        _ => Ok(()),
    }
}

/// Whether a removal notice `how` from `sender` changes what this node holds of `view`: a
/// syncgroup it has not left, where `sender` holds Admin in its copy, not yet marked so.
fn removal_is_news(view: &SyncgroupView, sender: &Fingerprint, how: Removal) -> bool {
    !view.local.left
        && view.record.sg.allows(Tag::Admin, sender)
        && view.local.removed.as_ref().map(|removed| removed.how) != Some(how)
}

/// Whether `member` holds Admin in `sg` and advertises an address to dial.
fn dialable_admin(sg: &Syncgroup, member: &Fingerprint, info: &MemberInfo) -> bool {
    !info.address.is_empty() && sg.allows(Tag::Admin, member)
}

/// Whether this node (`me`), the host of the syncgroup, should mark its copy `Running`: a
/// settled copy it holds, published here by a remote publisher, still `PublishPending`, in
/// which `me` holds Admin.
fn awaits_confirmation(view: &SyncgroupView, me: &Fingerprint) -> bool {
    let sg = &view.record.sg;
    sg.status == Status::PublishPending
        && view.local.remote_publisher.is_some()
        && view.local.pending.is_none()
        && !view.local.left
        && !view.record.stamp.is_provisional()
        && sg.allows(Tag::Admin, me)
}

/// When an invite minted at `now_nanos` (the node's `Env` time) for `expires_in` expires (0:
/// never), Unix nanoseconds.
pub(super) fn expiry(now_nanos: i64, expires_in: Option<Duration>) -> i64 {
    match expires_in {
        None => 0,
        Some(after) => now_nanos.saturating_add(after.as_nanos().try_into().unwrap_or(i64::MAX)),
    }
}

/// Spends one use of a join invite for syncgroup `id`; the level it grants.
fn redeem_join_invite(txn: &mut SyncgroupTxn<'_>, secret: &str, id: SyncgroupId) -> Result<Level> {
    let invite = txn.use_invite(&hash_secret(secret), |grant| match grant {
        Grant::Join { syncgroup, .. } if *syncgroup == id => Ok(()),
        Grant::Join { .. } => Err(Error::NoAccess(
            "the invite is for another syncgroup".into(),
        )),
        Grant::Publish { .. } => Err(Error::NoAccess(
            "the invite is a publish invite, not a join invite".into(),
        )),
    })?;
    match invite.grant {
        Grant::Join { level, .. } => Ok(level),
        Grant::Publish { .. } => Err(Error::Internal("a publish invite passed as a join".into())),
    }
}

/// The syncgroup `name` for an admin action by `actor`: it must hold Admin and this node's
/// copy must not be pending or left.
/// `error` (why `me` may not mint an invite to `name`) with who can, when the copy held
/// here lists `me` as no admin: the same kind, ending with the admins it lists.
fn who_can_invite(
    error: Error,
    txn: &SyncgroupTxn<'_>,
    me: &Fingerprint,
    name: &SyncgroupName,
) -> Error {
    let Ok(view) = txn.get(name) else {
        return error;
    };
    if view.record.sg.allows(Tag::Admin, me) {
        return error;
    }
    let admins: Vec<&str> = view
        .record
        .sg
        .spec
        .perms
        .0
        .get(&Tag::Admin)
        .map(|list| list.allowed.iter().map(String::as_str).collect())
        .unwrap_or_default();
    let hint = format!(
        "this node holds no Admin capability for {name}, and only an admin mints invites: ask \
         an admin ({}) to run `sg invite {name}`",
        admins.join(", ")
    );
    match error {
        Error::NoAccess(_) => Error::NoAccess(hint),
        Error::BadState(message) => Error::BadState(format!("{message}; {hint}")),
        other => other,
    }
}

fn admin_view(
    txn: &SyncgroupTxn<'_>,
    actor: &Fingerprint,
    name: &SyncgroupName,
) -> Result<SyncgroupView> {
    let view = txn.get(name)?;
    if view.record.sg.is_destroyed() {
        return Err(destroyed_error(&view.record));
    }
    if view.local.left {
        return Err(Error::BadState(format!("this node left syncgroup {name}")));
    }
    // Pending first: a copy not yet caught up may not list this node's admin rights yet.
    view.local.check_settled(name)?;
    if !view.record.sg.allows(Tag::Admin, actor) {
        return Err(Error::NoAccess(format!(
            "{actor} holds no Admin capability for syncgroup {name}"
        )));
    }
    Ok(view)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use syncbase_storage::MemoryStorage;

    use super::*;
    use crate::clock::ManualTime;
    use crate::env::{Blocking, Env};
    use crate::identity::NodeIdentity;
    use crate::names::{RowKey, TableName};
    use crate::node::NodeParts;
    use crate::node::txn_tests::create_syncgroup;
    use crate::store::Mutation;

    fn db() -> DbName {
        DbName::parse("db").unwrap()
    }

    /// A node with identity `seed` on a memory store, committing inline.
    fn node(seed: u8) -> Arc<Node> {
        let mut env = Env::seeded(u64::from(seed), Arc::new(ManualTime::new(1_000_000_000)));
        env.blocking = Blocking::Inline;
        let identity = NodeIdentity::from_seed([seed; 32]).unwrap();
        let parts = NodeParts::simulated(Arc::new(MemoryStorage::new()), identity, env).unwrap();
        Arc::new(Node::assemble(parts).unwrap())
    }

    fn me(node: &Node) -> Fingerprint {
        node.identity().fingerprint().clone()
    }

    fn put(key: &str) -> Vec<Mutation> {
        vec![Mutation::Put {
            table: TableName::parse("t").unwrap(),
            key: RowKey::parse(key).unwrap(),
            value: b"v".to_vec(),
        }]
    }

    /// One round of syncgroup metadata from `from` to `to`, as a session would carry it.
    async fn metadata(from: &Node, to: &Node) {
        let wanted: SyncgroupKnowledge = to
            .store()
            .syncgroups(&db())
            .unwrap()
            .into_iter()
            .map(|view| (view.record.sg.id, view.local.knowledge))
            .collect();
        let deltas = from.syncgroup_deltas(&me(to), &db(), &wanted).unwrap();
        to.apply_syncgroups(db(), me(from), deltas.records, deltas.knowledge)
            .await
            .unwrap();
    }

    /// `joiner` joins `name` at `admin` (already in its permissions) and catches up.
    async fn join(admin: &Node, joiner: &Node, name: &SyncgroupName) {
        let reply = admin
            .join_at_admin(me(joiner), name.clone(), joiner.member_info(), None)
            .await
            .unwrap();
        joiner.join_reply(reply).await.unwrap();
    }

    #[tokio::test]
    async fn a_destroy_reaches_members_through_another_admin_and_beats_its_concurrent_grant() {
        let (a, b, c, d) = (node(1), node(2), node(3), node(4));
        let name = create_syncgroup(&a).await;
        let mut spec = a.syncgroup_view(&name).unwrap().record.sg.spec;
        spec.perms.grant(Level::Admin, &me(&b));
        spec.perms.grant(Level::ReadWrite, &me(&c));
        spec.perms.grant(Level::ReadWrite, &me(&d));
        a.set_spec(me(&a), name.clone(), spec, String::new())
            .await
            .unwrap();
        for member in [&b, &c, &d] {
            join(&a, member, &name).await;
        }
        for member in [&b, &c, &d] {
            metadata(&a, member).await;
        }
        c.commit(db(), put("before")).await.unwrap();

        // A non-admin may not destroy it.
        let refused = c.destroy(me(&c), name.clone()).await;
        assert!(matches!(refused, Err(Error::NoAccess(_))), "{refused:?}");

        // B grants C Admin while A destroys: B's version is the later one.
        a.destroy(me(&a), name.clone()).await.unwrap();
        let mut spec = b.syncgroup_view(&name).unwrap().record.sg.spec;
        spec.perms.grant(Level::Admin, &me(&c));
        b.set_spec(me(&b), name.clone(), spec, String::new())
            .await
            .unwrap();

        // D meets the destroy first, then the grant; B and C the grant first. C hears of the
        // destroy only from B, another admin.
        metadata(&a, &d).await;
        metadata(&b, &d).await;
        metadata(&b, &c).await;
        metadata(&a, &b).await;
        metadata(&b, &c).await;
        for member in [&b, &c, &d] {
            let view = member.syncgroup_view(&name).unwrap();
            assert_eq!(view.record.sg.status, Status::Destroyed, "{view:?}");
            assert!(
                member
                    .syncgroups_shared_with(&me(&a), &db())
                    .unwrap()
                    .is_empty()
            );
        }
        let spec = b.syncgroup_view(&name).unwrap().record.sg.spec;
        let late = b.set_spec(me(&b), name.clone(), spec, String::new());
        assert!(
            matches!(late.await, Err(Error::BadState(why)) if why.contains("destroyed")),
            "an admin's change after it learnt of the destroy"
        );

        // C may no longer write under the prefixes until it forgets the syncgroup.
        let refused = c.commit(db(), put("after")).await;
        assert!(
            matches!(&refused, Err(Error::NoAccess(why)) if why.contains("destroyed")),
            "{refused:?}"
        );
        c.leave(name.clone()).await.unwrap();
        assert!(c.list_syncgroups(None).unwrap().is_empty());
        c.commit(db(), put("after")).await.unwrap();

        // On A it is gone at once, and its name free.
        assert!(a.list_syncgroups(None).unwrap().is_empty());
        assert!(matches!(a.syncgroup_view(&name), Err(Error::NoExist(_))));
        assert_eq!(create_syncgroup(&a).await, name);
    }

    #[tokio::test]
    async fn a_member_admitted_concurrently_with_a_destroy_learns_it_from_admins_that_do_not_list_it()
     {
        let (a, b, c, d) = (node(1), node(2), node(3), node(4));
        let name = create_syncgroup(&a).await;
        let mut spec = a.syncgroup_view(&name).unwrap().record.sg.spec;
        spec.perms.grant(Level::Admin, &me(&b));
        spec.perms.grant(Level::ReadWrite, &me(&d));
        a.set_spec(me(&a), name.clone(), spec, String::new())
            .await
            .unwrap();
        join(&a, &b, &name).await;
        join(&a, &d, &name).await;
        metadata(&a, &b).await;

        // A destroys it while B, which has not heard, admits C.
        a.destroy(me(&a), name.clone()).await.unwrap();
        let mut spec = b.syncgroup_view(&name).unwrap().record.sg.spec;
        spec.perms.grant(Level::ReadWrite, &me(&c));
        b.set_spec(me(&b), name.clone(), spec, String::new())
            .await
            .unwrap();
        join(&b, &c, &name).await;
        metadata(&b, &c).await;
        metadata(&a, &b).await;
        assert!(b.syncgroup_view(&name).unwrap().record.sg.is_destroyed());

        // Neither A (which forgot it) nor B lists C in the destroyed version; both tell it.
        for admin in [&a, &b] {
            let wanted = c.syncgroups_shared_with(&me(admin), &db()).unwrap();
            let deltas = admin.syncgroup_deltas(&me(&c), &db(), &wanted).unwrap();
            let served = &deltas.records[0].sg;
            assert!(served.is_destroyed());
            assert!(
                !served.joiners.contains_key(&me(&d)),
                "other members stay hidden"
            );
            assert_eq!(served.joiners.keys().collect::<Vec<_>>(), [&me(&a)]);
        }
        metadata(&a, &c).await;
        let view = c.syncgroup_view(&name).unwrap();
        assert_eq!(
            view.record.destroyed().map(|(by, _)| by.cloned()),
            Some(Some(me(&a)))
        );
        assert!(c.syncgroups_shared_with(&me(&b), &db()).unwrap().is_empty());
        let refused = c.commit(db(), put("after")).await;
        let leave = format!("`syncbase sg leave {name}`");
        assert!(
            matches!(&refused, Err(Error::NoAccess(why)) if why.contains(&leave)),
            "{refused:?}"
        );
        let spec = view.record.sg.spec;
        let late = c.set_spec(me(&c), name.clone(), spec, String::new()).await;
        assert!(matches!(late, Err(Error::BadState(_))), "{late:?}");
    }

    #[tokio::test]
    async fn a_member_that_learns_of_a_destroy_drops_the_admin_from_its_derived_peers() {
        let (a, b) = (node(1), node(2));
        let name = create_syncgroup(&a).await;
        let mut spec = a.syncgroup_view(&name).unwrap().record.sg.spec;
        spec.perms.grant(Level::ReadWrite, &me(&b));
        a.set_spec(me(&a), name.clone(), spec, String::new())
            .await
            .unwrap();
        join(&a, &b, &name).await;
        metadata(&a, &b).await;
        let listed = |node: &Node| -> Vec<Fingerprint> {
            let peers = node.peers().list();
            peers
                .into_iter()
                .map(|(config, _)| config.fingerprint)
                .collect()
        };
        assert_eq!(listed(&b), [me(&a)]);
        a.destroy(me(&a), name.clone()).await.unwrap();
        metadata(&a, &b).await;
        assert!(b.syncgroup_view(&name).unwrap().record.sg.is_destroyed());
        assert_eq!(listed(&b), Vec::<Fingerprint>::new());
    }

    #[tokio::test]
    async fn a_create_over_a_syncgroup_another_admin_destroyed_forgets_it_and_takes_the_name() {
        let (a, b) = (node(1), node(2));
        let name = create_syncgroup(&a).await;
        let old = a.syncgroup_view(&name).unwrap().record.sg;
        let mut spec = old.spec.clone();
        spec.perms.grant(Level::Admin, &me(&b));
        a.set_spec(me(&a), name.clone(), spec, String::new())
            .await
            .unwrap();
        join(&a, &b, &name).await;
        metadata(&a, &b).await;
        b.destroy(me(&b), name.clone()).await.unwrap();
        metadata(&b, &a).await;
        assert!(a.syncgroup_view(&name).unwrap().record.sg.is_destroyed());

        let created = a
            .create_syncgroup(db(), name.clone(), old.spec.clone())
            .await
            .unwrap();
        assert_ne!(created.record.sg.id, old.id);
        let listed = a.list_syncgroups(None).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].record.sg.id, created.record.sg.id);
        let kept = a.store().syncgroup(&db(), old.id).unwrap().unwrap();
        assert!(
            kept.local.forgot(&kept.record.sg),
            "the old one stays as a tombstone"
        );

        // A live syncgroup still holds its name.
        let taken = a.create_syncgroup(db(), name, old.spec).await;
        assert!(matches!(taken, Err(Error::Exist(_))), "{taken:?}");
    }
}
