//! Applying records from a peer (the initiator's receive step, reference §2.4-2.6), inside one
//! write transaction: each new record is logged under its origin's (device, generation) so it
//! relays onward, its DAG node or link is grafted, and then every touched object is resolved:
//! one head moves the row (fast-forward); several heads are a conflict, settled by the
//! [`Resolver`] the caller passes (last-writer-wins by default, `store::resolve`) with a link
//! record naming the losers, written at this device's next generation so every node converges
//! on the same head.
//!
//! Records already logged (same device and generation) are skipped, so a page applied twice
//! changes nothing: an interrupted round can fetch again safely. A write under a logged pair
//! whose version this node lacks (its writer's store was restored and reused the pair) is
//! grafted without a log entry, so no write is lost on the nodes that see both.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{Error, Result};
use crate::genvec::DeviceId;
use crate::store::dag::common_ancestor;
use crate::store::local::Writer;
use crate::store::records::{
    Change, DagNode, EntryKind, LogEntry, LogRecord, RecordContent, RowHead, Version,
};
use crate::store::resolve::{Conflict, Decision, Head, Resolver};
use crate::store::writer::DbWriter;

/// What applying a page did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Records new to this node.
    pub records: u64,
    /// Records it already had.
    pub duplicates: u64,
    /// Conflicts resolved here, one per object whose heads diverged.
    pub resolutions: Vec<Resolution>,
}

/// One conflict (reference §2.5) and how the resolver settled it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    pub table: String,
    pub row: String,
    /// The head this node had before the page (None if the object was new here).
    pub local: Option<Version>,
    /// The heads the page brought (one, or more if several peers' writes arrived at once).
    pub remote: Vec<Version>,
    /// The nearest common ancestor of the two heads in conflict (the local head, if it still
    /// is one, and the first remote head), if they share history.
    pub ancestor: Option<Version>,
    /// The head kept; the others became its parents through a link record.
    pub winner: Version,
}

/// An event on one object during this page, in log order.
enum Graft {
    Node {
        version: Version,
        parents: Vec<Version>,
    },
    Link {
        parents: Vec<Version>,
    },
    /// A node this node already held under another (device, generation): the same write
    /// logged again by its writer's new epoch; it moves nothing.
    Known,
}

/// Applies `records`, received from peer `from`, then resolves every object they touched,
/// each conflict by `resolver`.
pub fn apply(
    db: &mut DbWriter<'_>,
    writer: &Writer<'_>,
    resolver: &dyn Resolver,
    from: DeviceId,
    records: &[LogRecord],
) -> Result<Applied> {
    let mut applied = Applied::default();
    let mut touched: BTreeMap<(String, String), Vec<Graft>> = BTreeMap::new();
    let floor = db.floor()?;
    for record in records {
        let reused = db.has_record(record.device(), record.generation())?;
        if (reused && !is_unknown_write(db, record)?) || (!reused && collected(&floor, record)) {
            applied.duplicates += 1;
            continue;
        }
        writer.clock.observe(record.hlc());
        let graft = if reused {
            graft_reused_pair(db, record, from)?
        } else {
            store_record(db, record, from, !floor.is_empty())?
        };
        touched
            .entry((record.table.clone(), record.row.clone()))
            .or_default()
            .push(graft);
        applied.records += 1;
    }
    for ((table, row), grafts) in touched {
        if let Some(resolution) = resolve(db, writer, resolver, &table, &row, &grafts)? {
            applied.resolutions.push(resolution);
        }
    }
    Ok(applied)
}

/// Whether `record`, which the log does not hold, is one this node held and collected: the
/// collection floor covers it (the floor never passes this node's knowledge, so a record
/// under it was seen here). Applying it again would bring a superseded write back as a head.
fn collected(floor: &crate::genvec::Knowledge, record: &LogRecord) -> bool {
    floor.known_gen(&record.table, &record.row, record.device()) >= record.generation()
}

/// Whether `record`, whose (device, generation) the log already holds, is a write this node
/// lacks: its writer reused the pair (a restored store, before its epoch), so it is another
/// record than the one logged.
fn is_unknown_write(db: &DbWriter<'_>, record: &LogRecord) -> Result<bool> {
    Ok(matches!(record.content, RecordContent::Node(_))
        && db
            .node(&record.table, &record.row, record.version)?
            .is_none())
}

/// Keeps a write whose (device, generation) names another record here (its writer's store
/// was restored and reused the pair): its DAG node is grafted so no write is lost, and it is
/// logged at the next position without taking the pair's index entry, so this node relays it
/// too (a node holding it must pass it on: the node it came from may be gone).
fn graft_reused_pair(db: &mut DbWriter<'_>, record: &LogRecord, from: DeviceId) -> Result<Graft> {
    let RecordContent::Node(node) = &record.content else {
        return Err(Error::Internal("only a write is grafted unlogged".into()));
    };
    tracing::warn!(
        table = %record.table,
        row = %record.row,
        device = format!("{:016x}", record.device().0),
        generation = record.generation().get(),
        "a write reuses a (device, generation) this node holds for another record (its \
         writer's store was restored); kept and relayed beside it"
    );
    db.put_node(&record.table, &record.row, record.version, node)?;
    db.append_log_unindexed(&LogEntry {
        device: record.device(),
        generation: record.generation(),
        table: record.table.clone(),
        row: record.row.clone(),
        version: record.version,
        kind: EntryKind::Node,
        from,
    })?;
    Ok(Graft::Node {
        version: record.version,
        parents: node.parents.clone(),
    })
}

/// Logs one record and stores its DAG node. A link's target must already be known, unless
/// this node collects history (`collecting`): then a link whose target is gone names a
/// version superseded and collected here, and is logged (so it relays) without a graft.
fn store_record(
    db: &mut DbWriter<'_>,
    record: &LogRecord,
    from: DeviceId,
    collecting: bool,
) -> Result<Graft> {
    let (table, row, version) = (record.table.as_str(), record.row.as_str(), record.version);
    let (kind, graft) = match &record.content {
        RecordContent::Node(node) => {
            let graft = if db.node(table, row, version)?.is_none() {
                db.put_node(table, row, version, node)?;
                Graft::Node {
                    version,
                    parents: node.parents.clone(),
                }
            } else {
                Graft::Known
            };
            (EntryKind::Node, graft)
        }
        RecordContent::Link { parents, hlc, .. } => {
            let kind = EntryKind::Link {
                parents: parents.clone(),
                hlc: *hlc,
            };
            if db.node(table, row, version)?.is_none() {
                if !collecting {
                    return Err(Error::invalid(format!(
                        "link record for {} names version {} that was never sent",
                        crate::names::row_text(table, row),
                        version.to_hex()
                    )));
                }
                (kind, Graft::Known)
            } else {
                add_links(db, table, row, version, parents)?;
                (
                    kind,
                    Graft::Link {
                        parents: parents.clone(),
                    },
                )
            }
        }
    };
    db.append_log(&LogEntry {
        device: record.device(),
        generation: record.generation(),
        table: table.to_owned(),
        row: row.to_owned(),
        version,
        kind,
        from,
    })?;
    Ok(graft)
}

/// Settles one object's heads after this page's grafts; describes the conflict if there was
/// one.
fn resolve(
    db: &mut DbWriter<'_>,
    writer: &Writer<'_>,
    resolver: &dyn Resolver,
    table: &str,
    row: &str,
    grafts: &[Graft],
) -> Result<Option<Resolution>> {
    let local = db.head(table, row)?.map(|head| head.version);
    let heads = heads_after(local, grafts);
    let resolution = match heads.len() {
        0 => return Ok(None),
        1 => None,
        _ => Some(settle_conflict(db, resolver, table, row, local, &heads)?),
    };
    let winner = match &resolution {
        Some(resolution) => {
            let losers = heads
                .iter()
                .copied()
                .filter(|version| *version != resolution.winner)
                .collect();
            write_link(db, writer, table, row, resolution.winner, losers)?;
            resolution.winner
        }
        None => *heads.first().expect("one head"),
    };
    if local != Some(winner) {
        move_head(db, table, row, winner)?;
    }
    Ok(resolution)
}

/// The conflict's sides, their nearest common ancestor, and the head `resolver` keeps.
fn settle_conflict(
    db: &DbWriter<'_>,
    resolver: &dyn Resolver,
    table: &str,
    row: &str,
    local: Option<Version>,
    heads: &BTreeSet<Version>,
) -> Result<Resolution> {
    let remote: Vec<Version> = heads
        .iter()
        .copied()
        .filter(|version| Some(*version) != local)
        .collect();
    let (first, second) = match local.filter(|local| heads.contains(local)) {
        Some(local) => (local, remote[0]),
        None => (remote[0], remote[1]),
    };
    let ancestor = common_ancestor(db, table, row, first, second)?;
    let conflict = Conflict {
        table: table.to_owned(),
        row: row.to_owned(),
        heads: heads
            .iter()
            .map(|version| head_of(db, table, row, *version))
            .collect::<Result<_>>()?,
        ancestor: match ancestor {
            Some(version) => held_head(db, table, row, version)?,
            None => None,
        },
    };
    let winner = match resolver.resolve(&conflict)? {
        Decision::Winner(winner) if heads.contains(&winner) => winner,
        Decision::Winner(other) => {
            return Err(Error::Internal(format!(
                "resolver {} picked version {} of {}, not one of its heads",
                resolver.name(),
                other.to_hex(),
                crate::names::row_text(table, row)
            )));
        }
    };
    Ok(Resolution {
        table: conflict.table,
        row: conflict.row,
        local,
        remote,
        ancestor,
        winner,
    })
}

/// A head as a resolver sees it (its DAG node's HLC, writer and value or tombstone).
fn head_of(db: &DbWriter<'_>, table: &str, row: &str, version: Version) -> Result<Head> {
    held_head(db, table, row, version)?.ok_or_else(|| missing(table, row, version))
}

/// [`head_of`] for a version this node may not hold: an ancestor search can end on a parent
/// both heads name whose own record never reached this node (None then).
fn held_head(db: &DbWriter<'_>, table: &str, row: &str, version: Version) -> Result<Option<Head>> {
    Ok(db.node(table, row, version)?.map(|node| Head {
        version,
        hlc: node.hlc,
        device: node.device,
        value: (!node.deleted).then_some(node.value),
    }))
}

/// The object's heads: the old head, minus every version a graft names as a parent, plus
/// every new node.
fn heads_after(old_head: Option<Version>, grafts: &[Graft]) -> BTreeSet<Version> {
    let mut heads: BTreeSet<Version> = old_head.into_iter().collect();
    for graft in grafts {
        match graft {
            Graft::Node { version, parents } => {
                parents.iter().for_each(|parent| {
                    heads.remove(parent);
                });
                heads.insert(*version);
            }
            Graft::Link { parents } => parents.iter().for_each(|parent| {
                heads.remove(parent);
            }),
            Graft::Known => {}
        }
    }
    heads
}

fn known_node(db: &DbWriter<'_>, table: &str, row: &str, version: Version) -> Result<DagNode> {
    db.node(table, row, version)?
        .ok_or_else(|| missing(table, row, version))
}

fn missing(table: &str, row: &str, version: Version) -> Error {
    Error::Internal(format!(
        "DAG of {} lacks version {}",
        crate::names::row_text(table, row),
        version.to_hex()
    ))
}

/// Records the resolution as a link at this device's next generation, so it syncs onward.
fn write_link(
    db: &mut DbWriter<'_>,
    writer: &Writer<'_>,
    table: &str,
    row: &str,
    winner: Version,
    losers: Vec<Version>,
) -> Result<()> {
    add_links(db, table, row, winner, &losers)?;
    let generation = db.next_generation();
    db.append_log(&LogEntry {
        device: writer.device,
        generation,
        table: table.to_owned(),
        row: row.to_owned(),
        version: winner,
        kind: EntryKind::Link {
            parents: losers,
            hlc: writer.clock.now(),
        },
        from: writer.device,
    })?;
    Ok(())
}

/// Records that `parents` became parents of `version` (for later ancestor searches).
fn add_links(
    db: &mut DbWriter<'_>,
    table: &str,
    row: &str,
    version: Version,
    parents: &[Version],
) -> Result<()> {
    let mut node = known_node(db, table, row, version)?;
    let before = node.linked.len();
    for parent in parents {
        if !node.linked.contains(parent) && !node.parents.contains(parent) {
            node.linked.push(*parent);
        }
    }
    if node.linked.len() != before {
        db.update_node(table, row, version, &node)?;
    }
    Ok(())
}

/// Makes `version` the row's current state and tells watchers.
fn move_head(db: &mut DbWriter<'_>, table: &str, row: &str, version: Version) -> Result<()> {
    let node = known_node(db, table, row, version)?;
    let head = RowHead {
        version,
        deleted: node.deleted,
        value: node.value,
    };
    db.set_head(table, row, &head)?;
    db.append_change(&Change {
        table: table.to_owned(),
        row: row.to_owned(),
        version,
        deleted: head.deleted,
        from_sync: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(n: u64) -> Version {
        Version(n)
    }

    #[test]
    fn a_child_of_the_head_fast_forwards() {
        let grafts = [Graft::Node {
            version: v(2),
            parents: vec![v(1)],
        }];
        assert_eq!(heads_after(Some(v(1)), &grafts), BTreeSet::from([v(2)]));
    }

    #[test]
    fn a_sibling_of_the_head_is_a_conflict_until_a_link_covers_it() {
        let mut grafts = vec![Graft::Node {
            version: v(3),
            parents: vec![v(1)],
        }];
        assert_eq!(
            heads_after(Some(v(2)), &grafts),
            BTreeSet::from([v(2), v(3)])
        );
        grafts.push(Graft::Link {
            parents: vec![v(2)],
        });
        assert_eq!(heads_after(Some(v(2)), &grafts), BTreeSet::from([v(3)]));
    }

    #[test]
    fn a_write_relogged_by_a_new_epoch_moves_no_head() {
        let grafts = [Graft::Known];
        assert_eq!(heads_after(Some(v(5)), &grafts), BTreeSet::from([v(5)]));
    }

    #[test]
    fn a_first_write_from_a_peer_becomes_the_head() {
        let grafts = [Graft::Node {
            version: v(9),
            parents: vec![],
        }];
        assert_eq!(heads_after(None, &grafts), BTreeSet::from([v(9)]));
    }
}
