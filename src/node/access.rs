//! The access decisions a node makes from its declared peers and its syncgroups' permissions,
//! for the RPC layer (may this peer read this scope, is it a member, is it an admin), the
//! responder (before every page), the initiator (may this device have written this row) and
//! the app write path (may this node write here). ARCHITECTURE.md, "Who may write what", has
//! the rules.

use super::Node;
use crate::error::{Error, Result};
use crate::identity::Fingerprint;
use crate::names::DbName;
use crate::sync::genvec::{DeviceId, Generation, Scope};
use crate::syncgroup::{Syncgroup, SyncgroupName, SyncgroupView, Tag};

/// Decides which records of one database a peer's page may carry: a record's writer (its
/// device) must be bound to a member holding Write in a syncgroup covering the row, unless the
/// peer was declared with that scope (declared peers are trusted for what they share).
pub struct WriterCheck {
    syncgroups: Vec<Syncgroup>,
    declared: Vec<Scope>,
}

impl WriterCheck {
    /// Whether `device` may have written its record at `generation` for row `row` of
    /// `table`.
    pub fn allows(&self, device: DeviceId, generation: Generation, table: &str, row: &str) -> bool {
        self.declared.iter().any(|scope| scope.covers(table, row))
            || self
                .syncgroups
                .iter()
                .any(|sg| sg.spec.covers(table, row) && sg.device_may_write(device, generation))
    }
}

impl Node {
    /// Whether `peer` may read `scope` of `db`: declared with it, or holding Read in a
    /// syncgroup of `db` (that this node has not left) whose prefixes contain it.
    pub fn may_read_scope(&self, peer: &Fingerprint, db: &DbName, scope: &Scope) -> Result<bool> {
        if self.peers().declared_allows(peer, db.as_str(), scope) {
            return Ok(true);
        }
        Ok(self
            .active_syncgroups(db)?
            .iter()
            .any(|sg| sg.spec.contains(scope) && sg.allows(Tag::Read, peer)))
    }

    /// Whether `peer` is a declared peer or holds Read in a syncgroup here (not left): what
    /// `GetTime` and the blob methods require.
    pub fn is_member(&self, peer: &Fingerprint) -> Result<bool> {
        if self.peers().is_declared(peer) {
            return Ok(true);
        }
        Ok(self
            .store()
            .all_syncgroups()?
            .iter()
            .any(|view| !view.local.left && view.record.sg.allows(Tag::Read, peer)))
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
        Ok(WriterCheck {
            syncgroups: self.active_syncgroups(db)?,
            declared,
        })
    }

    /// Refuses app writes under a syncgroup this node belongs to without holding Write there
    /// (unless another syncgroup covering the row grants it): nobody would accept them.
    pub fn check_local_writes<'a>(
        &self,
        db: &DbName,
        rows: impl Iterator<Item = (&'a str, &'a str)>,
    ) -> Result<()> {
        let syncgroups = self.active_syncgroups(db)?;
        if syncgroups.is_empty() {
            return Ok(());
        }
        let me = self.identity().fingerprint();
        for (table, row) in rows {
            let covering: Vec<_> = syncgroups
                .iter()
                .filter(|sg| sg.spec.covers(table, row))
                .collect();
            if !covering.is_empty() && !covering.iter().any(|sg| sg.allows(Tag::Write, me)) {
                return Err(Error::NoAccess(format!(
                    "row {table}:{row} is shared by syncgroup {}, where this node may only read",
                    covering[0].name
                )));
            }
        }
        Ok(())
    }

    fn active_syncgroups(&self, db: &DbName) -> Result<Vec<Syncgroup>> {
        Ok(self
            .store()
            .syncgroups(db)?
            .into_iter()
            .filter(|view| !view.local.left)
            .map(|view| view.record.sg)
            .collect())
    }
}
