//! The local write path: an app commit writes, in its one transaction, each row's new value
//! at a fresh random version, the row head, a DAG node whose parent is the previous head, a log
//! entry with this device's next generation, a change-feed entry, and the counters. There is
//! no watch log to poll: whoever waits is woken after the commit.
//!
//! Every mutation is recorded, a delete of a row this node holds no live value for included:
//! it becomes a versioned tombstone (a DAG node marked deleted, parentless if the row was
//! never seen here) that syncs and takes part in last-writer-wins like any write. Otherwise
//! a delete acknowledged here would silently lose to an earlier put from a peer it had not
//! received yet. The reply still says whether the row existed *here*.
//!
//! A write is stamped above the write it replaces: the clock's reading, or just above the
//! parent's HLC when that is later (a peer's clock more than `clock::MAX_FORWARD_DRIFT_NANOS`
//! ahead, which the clock refuses to follow). Otherwise a write made on top of a far-future
//! one sorted below it, and a concurrent write between the two in time beat it on nodes that
//! met them together but lost to its parent on nodes that resolved the parent first: nodes
//! settled on different heads for good (`sim::tests`, found by the oracle).

use crate::clock::Clock;
use crate::env::Random;
use crate::error::Result;
use crate::genvec::DeviceId;
use crate::store::Mutation;
use crate::store::records::{Change, DagNode, EntryKind, LogEntry, RowHead, Version};
use crate::store::writer::DbWriter;

/// Who is writing: this node's device id, clock, and the random source versions are drawn
/// from.
pub struct Writer<'a> {
    pub device: DeviceId,
    pub clock: &'a Clock,
    pub random: &'a dyn Random,
}

/// Applies the mutations as one app transaction; per mutation, whether its row existed.
pub fn commit(
    db: &mut DbWriter<'_>,
    writer: &Writer<'_>,
    mutations: &[Mutation],
) -> Result<Vec<bool>> {
    let batch_id = if mutations.len() > 1 {
        Version::random(writer.random)?.0
    } else {
        0
    };
    let batch_count = mutations.len() as u64;
    let batch = Batch {
        id: batch_id,
        count: batch_count,
    };
    mutations
        .iter()
        .map(|mutation| apply_one(db, writer, batch, mutation))
        .collect()
}

#[derive(Clone, Copy)]
struct Batch {
    id: u64,
    count: u64,
}

fn apply_one(
    db: &mut DbWriter<'_>,
    writer: &Writer<'_>,
    batch: Batch,
    mutation: &Mutation,
) -> Result<bool> {
    let (table, row, value) = match mutation {
        Mutation::Put { table, key, value } => (table.as_str(), key.as_str(), Some(value)),
        Mutation::Delete { table, key } => (table.as_str(), key.as_str(), None),
    };
    let head = db.head(table, row)?;
    let existed = head.as_ref().is_some_and(|head| !head.deleted);
    let parent = head.map(|head| head.version);
    let parent_hlc = match parent {
        Some(parent) => db.node(table, row, parent)?.map(|node| node.hlc),
        None => None,
    };
    let now = writer.clock.now();
    let version = Version::random(writer.random)?;
    let node = DagNode {
        parents: parent.into_iter().collect(),
        device: writer.device,
        generation: db.next_generation(),
        hlc: parent_hlc.map_or(now, |parent| now.max(parent.successor())),
        deleted: value.is_none(),
        batch_id: batch.id,
        batch_count: batch.count,
        value: value.cloned().unwrap_or_default(),
        linked: Vec::new(),
    };
    write_node(db, table, row, version, &node, writer.device)?;
    Ok(existed)
}

/// Stores a new local node and makes it the row's head (also `state`'s rewrite).
pub(super) fn write_node(
    db: &mut DbWriter<'_>,
    table: &str,
    row: &str,
    version: Version,
    node: &DagNode,
    device: DeviceId,
) -> Result<()> {
    db.put_node(table, row, version, node)?;
    let head = RowHead {
        version,
        deleted: node.deleted,
        value: node.value.clone(),
    };
    db.set_head(table, row, &head)?;
    db.append_log(&LogEntry {
        device,
        generation: node.generation,
        table: table.to_owned(),
        row: row.to_owned(),
        version,
        kind: EntryKind::Node,
        from: device,
    })?;
    db.append_change(&Change {
        table: table.to_owned(),
        row: row.to_owned(),
        version,
        deleted: node.deleted,
        from_sync: false,
    })
}
