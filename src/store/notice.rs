//! Epoch notices: a node that moved to an epoch (`store::epoch`) announces, per database, the
//! device it left and the *safe point* below which that device's records are its own; a peer
//! that takes the notice lowers its knowledge of the old device to the safe point in every
//! scope and forgets its resume cursors, so its next sessions fetch the old device's records
//! above it again from every peer (a record under a pair it already logged for another
//! record is grafted, `store::apply`: both writes are kept). Without it, a third node that
//! took the restored node's post-restore record under a reused pair claims that pair and
//! never asks for the original.
//!
//! From then on, on the node that made the epoch and on every node that took its notice, the
//! knowledge merged from peers is *capped*: knowledge of a device left at an epoch never
//! rises above its safe point ([`cap`]), since above it a pair may name two records and a
//! peer that holds one of them claims the pair as well (a peer that took the reused pair's
//! other record would otherwise raise the knowledge again before the original arrived).
//! Every session keeps asking for those few records; duplicates are skipped.
//!
//! The rule: a notice can only *lower* knowledge, only of a device of the announcer's own
//! lineage (never of this node's own lineage), and is taken once: the notices taken are kept
//! per database (`D a`) and written in the same transaction as the lowering; a notice whose
//! device was already lowered to its safe point or below is not taken again, and at most
//! [`MAX_TAKEN_PER_LINEAGE`] are taken per lineage, so a peer cannot force re-fetches at will.
//! A node keeps its own last [`MAX_NOTICES`] announcements per database (`D e`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use syncbase_storage::{ReadTxn, WriteTxn};

use crate::error::Result;
use crate::genvec::{DeviceId, Generation, Knowledge};
use crate::store::keys::DbKeys;
use crate::store::records::{decode, encode};
use crate::store::resume;
use crate::store::writer::load_knowledge;

/// The most notices a node announces (its latest epochs), and a page may carry.
pub const MAX_NOTICES: usize = 16;

/// The most notices taken from one lineage per database; later ones are ignored.
pub const MAX_TAKEN_PER_LINEAGE: usize = 64;

/// A device left at an epoch, and the generation up to which its records are the announcer's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    pub old: DeviceId,
    pub safe: Generation,
}

/// What taking a page's notices did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Taken {
    /// The notices taken now (not before).
    pub notices: Vec<Notice>,
    /// Whether any knowledge was lowered (sessions asked before must not merge knowledge).
    pub lowered: bool,
}

/// This node's announcements for the database, oldest first.
pub fn announced(txn: &dyn ReadTxn, keys: &DbKeys) -> Result<Vec<Notice>> {
    load(txn, &keys.announced_notices(), "announced epoch notices")
}

/// Adds an announcement (at an epoch), keeping the latest [`MAX_NOTICES`].
pub fn announce(txn: &mut dyn WriteTxn, keys: &DbKeys, notice: Notice) -> Result<()> {
    let mut notices = announced(&*txn, keys)?;
    notices.push(notice);
    let excess = notices.len().saturating_sub(MAX_NOTICES);
    notices.drain(..excess);
    txn.put(&keys.announced_notices(), &encode(&notices)?)?;
    Ok(())
}

/// The notices taken from peers in the database.
pub fn taken(txn: &dyn ReadTxn, keys: &DbKeys) -> Result<Vec<Notice>> {
    load(txn, &keys.taken_notices(), "taken epoch notices")
}

fn load(txn: &dyn ReadTxn, key: &[u8], what: &str) -> Result<Vec<Notice>> {
    match txn.get(key)? {
        Some(bytes) => decode(&bytes, what),
        None => Ok(Vec::new()),
    }
}

/// The safe point of every device left at an epoch, announced here or taken from a peer
/// (the lowest one known per device).
pub fn caps(txn: &dyn ReadTxn, keys: &DbKeys) -> Result<BTreeMap<DeviceId, Generation>> {
    let mut caps = BTreeMap::new();
    for notice in announced(txn, keys)?.into_iter().chain(taken(txn, keys)?) {
        let cap = caps.entry(notice.old).or_insert(notice.safe);
        *cap = (*cap).min(notice.safe);
    }
    Ok(caps)
}

/// Keeps `knowledge` of each device left at an epoch at or below its safe point, in every
/// scope: above it, a (device, generation) pair may name two records, and a peer's claim to
/// hold it says nothing of which one, so this node keeps asking every peer for them.
pub fn cap(caps: &BTreeMap<DeviceId, Generation>, knowledge: &mut Knowledge) {
    if caps.is_empty() {
        return;
    }
    let scopes: Vec<_> = knowledge.iter().map(|(scope, _)| scope.clone()).collect();
    for scope in scopes {
        let Some(vector) = knowledge.get(&scope) else {
            continue;
        };
        let mut vector = vector.clone();
        let mut lowered = false;
        for (device, safe) in caps {
            if vector.get(*device) > *safe {
                vector.set(*device, *safe);
                lowered = true;
            }
        }
        if lowered {
            knowledge.insert(scope, vector);
        }
    }
}

/// Whether a notice from `announcer` may be taken by node `me` at all: it names another
/// device of the announcer's lineage, not of ours.
pub fn admissible(notice: &Notice, announcer: DeviceId, me: DeviceId) -> bool {
    notice.old.0 != 0
        && notice.old != announcer
        && notice.old.same_lineage(announcer)
        && !notice.old.same_lineage(me)
}

/// Takes `announcer`'s notices for the database (see the module doc) inside `txn`: lowers the
/// knowledge of each new one's device to its safe point in every scope, forgets the resume
/// cursors if any knowledge was lowered, and remembers the notices taken.
pub fn take(
    txn: &mut dyn WriteTxn,
    keys: &DbKeys,
    (announcer, me): (DeviceId, DeviceId),
    notices: &[Notice],
) -> Result<Taken> {
    let mut kept = taken(&*txn, keys)?;
    let mut knowledge = load_knowledge(&*txn, keys)?;
    let mut outcome = Taken::default();
    for notice in notices.iter().take(MAX_NOTICES) {
        if !takable(&kept, notice, (announcer, me)) {
            continue;
        }
        let before = knowledge.clone();
        cap(&BTreeMap::from([(notice.old, notice.safe)]), &mut knowledge);
        outcome.lowered |= knowledge != before;
        kept.push(*notice);
        outcome.notices.push(*notice);
    }
    if outcome.notices.is_empty() {
        return Ok(outcome);
    }
    if outcome.lowered {
        txn.put(&keys.knowledge(), &encode(&knowledge)?)?;
        resume::forget_all(txn, keys)?;
    }
    txn.put(&keys.taken_notices(), &encode(&kept)?)?;
    Ok(outcome)
}

/// Whether any of `announcer`'s notices would be taken now (a read, so a session with a peer
/// whose notices were all taken before writes nothing).
pub fn any_takable(
    txn: &dyn ReadTxn,
    keys: &DbKeys,
    (announcer, me): (DeviceId, DeviceId),
    notices: &[Notice],
) -> Result<bool> {
    if !notices.iter().any(|n| admissible(n, announcer, me)) {
        return Ok(false);
    }
    let kept = taken(txn, keys)?;
    Ok(notices
        .iter()
        .take(MAX_NOTICES)
        .any(|notice| takable(&kept, notice, (announcer, me))))
}

/// Whether `notice` may be taken given the notices `kept` so far: admissible, lowering its
/// device further than every notice taken for it before, and within its lineage's quota.
fn takable(kept: &[Notice], notice: &Notice, (announcer, me): (DeviceId, DeviceId)) -> bool {
    if !admissible(notice, announcer, me) {
        return false;
    }
    let lower = kept
        .iter()
        .filter(|t| t.old == notice.old)
        .all(|t| notice.safe < t.safe);
    let lineage = notice.old.lineage();
    let quota = kept.iter().filter(|t| t.old.lineage() == lineage).count();
    if lower && quota >= MAX_TAKEN_PER_LINEAGE {
        // At debug: the announcer repeats its notices at every session.
        tracing::debug!(
            device = format!("{:016x}", notice.old.0),
            "ignored an epoch notice: this lineage announced {MAX_TAKEN_PER_LINEAGE} already"
        );
        return false;
    }
    lower
}
