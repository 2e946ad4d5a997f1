//! The host side of `PublishSyncgroup` (reference §3) and the proposals it makes. A publish
//! is an offer: a syncgroup this node does not know is stored as a *proposal*, which shares
//! and accepts nothing, until this node's operator or app accepts it, or at once if the
//! publisher presents a publish invite this node minted for the database. A publish of a known
//! name changes nothing but the recorded publisher (`DupSyncgroupPublish` for a second one);
//! a known name or id with other fixed fields is `Exist:`. ARCHITECTURE.md, "Who may widen what
//! a node shares", states the invariant this keeps.

use std::time::Duration;

use super::Node;
use super::syncgroups::expiry;
use crate::error::{Error, Result};
use crate::names::DbName;
use crate::store::SyncgroupTxn;
use crate::sync::membership::{PublishOutcome, PublishRequest};
use crate::syncgroup::invite::{Grant, Invite, PublishInviteToken, hash_secret};
use crate::syncgroup::{LocalState, Proposal, SyncgroupName, SyncgroupView, Tag};

impl Node {
    /// Serves `PublishSyncgroup` (§3, publishee side). The name must route here and the
    /// publisher hold Write in the syncgroup it sends. Errors: `Exist:` for a name or id known
    /// here (held or proposed) with other fixed fields, `DupSyncgroupPublish:` if another
    /// publisher published it here, `NoExist:` for a database this node does not have,
    /// `NoAccess:` for a bad publish invite, `ResourceExhausted:` past the proposal limits.
    pub async fn accept_publish(&self, request: PublishRequest) -> Result<PublishOutcome> {
        request.sg.validate()?;
        if !self.hosts(&request.sg.name) {
            return Err(Error::invalid(format!(
                "syncgroup {} does not route to this node ({})",
                request.sg.name,
                self.peer_address()
            )));
        }
        if !request.sg.allows(Tag::Write, &request.publisher) {
            return Err(Error::NoAccess(format!(
                "{} holds no Write capability for syncgroup {}",
                request.publisher, request.sg.name
            )));
        }
        self.change_syncgroups(move |txn| publish_here(txn, request))
            .await
    }

    /// The proposals waiting here, by name.
    pub fn proposals(&self) -> Result<Vec<Proposal>> {
        self.store().proposals()
    }

    /// Accepts a proposal (this node's operator or app): the syncgroup becomes one this node
    /// holds, pending until it catches up with the publisher, and starts syncing.
    pub async fn accept_proposal(&self, name: SyncgroupName) -> Result<SyncgroupView> {
        self.change_syncgroups(move |txn| {
            let proposal = txn.take_proposal(&name)?;
            hold(txn, proposal)
        })
        .await
    }

    /// Rejects a proposal: it is forgotten; nothing was ever shared or accepted under it.
    pub async fn reject_proposal(&self, name: SyncgroupName) -> Result<Proposal> {
        self.change_syncgroups(move |txn| txn.take_proposal(&name))
            .await
    }

    /// Mints a publish invite for database `db` (made if absent): a syncgroup of `db`
    /// published here with it is accepted at once. `uses` 0 means one.
    pub async fn mint_publish_invite(
        &self,
        db: DbName,
        expires_in: Option<Duration>,
        uses: u32,
    ) -> Result<PublishInviteToken> {
        let address = self.invite_address(uses)?;
        self.open_database(&db).await?;
        let token = PublishInviteToken::mint(
            self.identity().fingerprint().clone(),
            address,
            db,
            self.env().random.as_ref(),
        )?;
        let invite = Invite {
            grant: Grant::Publish {
                db: token.db.as_str().to_owned(),
            },
            expires_nanos: expiry(self.env().now_nanos(), expires_in),
            uses_left: uses.max(1),
        };
        let hash = token.hash();
        self.change_syncgroups(move |txn| txn.put_invite(&hash, &invite))
            .await?;
        Ok(token)
    }
}

/// The publish, inside one transaction: a known name, else a new one held (invite) or proposed.
fn publish_here(txn: &mut SyncgroupTxn<'_>, request: PublishRequest) -> Result<PublishOutcome> {
    let name = request.sg.name.clone();
    if let Some(existing) = txn.find(&name)? {
        return republish(txn, existing, &request);
    }
    if let Some(binding) = txn.binding(request.sg.id)? {
        binding.check(&request.sg)?;
    }
    if txn.id_proposed_elsewhere(request.sg.id, &name)? {
        return Err(Error::Exist(format!(
            "syncgroup id {} is proposed here under another name",
            request.sg.id.to_hex()
        )));
    }
    if let Some(proposed) = txn.find_proposal(&name)? {
        if proposed.sg.id != request.sg.id {
            return Err(Error::Exist(format!(
                "syncgroup name {name} is proposed here by another syncgroup"
            )));
        }
        if proposed.publisher != request.publisher {
            return Err(Error::DupSyncgroupPublish(name.to_string()));
        }
    }
    if !txn.has_database(&request.sg.db)? {
        return Err(Error::NoExist(format!(
            "database {:?} does not exist here; its operator must create it (or mint a \
             publish invite for it) first",
            request.sg.db
        )));
    }
    let proposal = Proposal {
        sg: request.sg,
        version: request.version,
        checkpoint: request.checkpoint,
        publisher: request.publisher,
        received_nanos: txn.env().now_nanos(),
    };
    match request.invite_secret {
        Some(secret) => {
            redeem_publish_invite(txn, &secret, &proposal.sg.db)?;
            if txn.find_proposal(&name)?.is_some() {
                txn.take_proposal(&name)?;
            }
            hold(txn, proposal).map(|_| PublishOutcome::Accepted)
        }
        None => txn
            .put_proposal(&proposal)
            .map(|()| PublishOutcome::Proposed),
    }
}

/// A publish of a name this node holds: the same id only, and it changes nothing but the
/// recorded publisher.
fn republish(
    txn: &mut SyncgroupTxn<'_>,
    mut existing: SyncgroupView,
    request: &PublishRequest,
) -> Result<PublishOutcome> {
    let sg = &existing.record.sg;
    if sg.is_destroyed() {
        return Err(crate::store::destroyed_error(&existing.record));
    }
    if sg.id != request.sg.id {
        return Err(Error::Exist(format!(
            "syncgroup name {} is taken here by another syncgroup",
            sg.name
        )));
    }
    if !sg.allows(Tag::Write, &request.publisher) {
        return Err(Error::NoAccess(format!(
            "{} holds no Write capability for syncgroup {}",
            request.publisher, sg.name
        )));
    }
    match &existing.local.remote_publisher {
        Some(known) if known == &request.publisher => Ok(PublishOutcome::Accepted),
        Some(_) => Err(Error::DupSyncgroupPublish(sg.name.to_string())),
        None => {
            existing.local.remote_publisher = Some(request.publisher.clone());
            let (db, id) = (sg.db.clone(), sg.id);
            txn.put_local(&db, id, &existing.local)?;
            Ok(PublishOutcome::Accepted)
        }
    }
}

/// Holds a proposal's syncgroup as this node's own copy: provisional, pending until this node
/// reaches the publisher's checkpoint.
fn hold(txn: &mut SyncgroupTxn<'_>, proposal: Proposal) -> Result<SyncgroupView> {
    let local = LocalState {
        pending: Some(proposal.checkpoint),
        remote_publisher: Some(proposal.publisher),
        ..LocalState::default()
    };
    txn.put_provisional(proposal.sg, proposal.version, local)
}

/// Spends one use of a publish invite for database `db`.
fn redeem_publish_invite(txn: &mut SyncgroupTxn<'_>, secret: &str, db: &str) -> Result<()> {
    txn.use_invite(&hash_secret(secret), |grant| match grant {
        Grant::Publish { db: minted } if minted == db => Ok(()),
        Grant::Publish { db: minted } => Err(Error::NoAccess(format!(
            "the publish invite is for database {minted:?}, not {db:?}"
        ))),
        Grant::Join { .. } => Err(Error::NoAccess(
            "the invite is a join invite, not a publish invite".into(),
        )),
    })
    .map(drop)
}
