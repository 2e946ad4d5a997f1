//! The invariants checked when faults stop, over the live nodes' stores and the oracle. Each
//! check is its own function over a [`View`] (every written row's DAG on every live node, read
//! once), and [`check_all`] runs them all, returning the first [`Violation`].
//!
//! Which nodes must reflect a write: its *reach* is the writer and every node linked to it
//! by shares whose database holds the row and whose scope covers it (records relay onward).
//! A write is *required* on the live nodes of its reach unless it was lost by restore
//! (`sim::oracle`), or its writer is down and no live node of its reach holds it (nothing
//! can have received it yet).

use std::collections::{BTreeMap, BTreeSet};

use crate::genvec::{DeviceId, Generation, Scope};
use crate::names::{DbName, RowKey, TableName};
use crate::sim::oracle::{Oracle, RowId, Write};
pub use crate::sim::violation::Violation;
use crate::store::{RowDag, Store, Version};

/// A scope of a database that a group of nodes sync among themselves (a syncgroup's
/// prefix and its members, or declared peers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    pub db: DbName,
    pub scope: Scope,
    /// The nodes (simulation indexes) sharing it.
    pub nodes: Vec<usize>,
}

/// Runs every check, in this order: knowledge (a claim without the record is what makes
/// the others fail for good, so it is named first), convergence, no write lost, the right
/// winner, no resurrection, clocks. `nodes` are the live nodes (index and store).
pub fn check_all(
    oracle: &Oracle,
    nodes: &[(usize, &Store)],
    shares: &[Share],
) -> Result<(), Violation> {
    let view = View::read(oracle, nodes, shares)?;
    check_knowledge(&view)?;
    check_convergence(&view)?;
    check_no_write_lost(&view)?;
    check_winners(&view)?;
    check_no_resurrection(&view)?;
    check_clocks(oracle)
}

/// What the checks look at: the live nodes, the shares, every written row's DAG on every
/// live node, and where each acknowledged write is required.
pub struct View<'a> {
    oracle: &'a Oracle,
    nodes: BTreeMap<usize, &'a Store>,
    shares: &'a [Share],
    dags: BTreeMap<(usize, RowId), RowDag>,
    /// Per write (index into `Oracle::writes`), the live nodes that must reflect it.
    required: Vec<BTreeSet<usize>>,
}

impl<'a> View<'a> {
    /// Reads every row the oracle saw written on every live node (one snapshot per row).
    pub fn read(
        oracle: &'a Oracle,
        nodes: &[(usize, &'a Store)],
        shares: &'a [Share],
    ) -> Result<View<'a>, Violation> {
        let nodes: BTreeMap<usize, &Store> = nodes.iter().copied().collect();
        let mut dags = BTreeMap::new();
        for (id, _) in oracle.rows() {
            for (node, store) in &nodes {
                let dag = store
                    .row_dag(&id.db, &id.table, &id.row)
                    .map_err(|error| Violation::unreadable(*node, error))?;
                dags.insert((*node, id.clone()), dag);
            }
        }
        let mut view = View {
            oracle,
            nodes,
            shares,
            dags,
            required: Vec::new(),
        };
        view.required = oracle
            .writes()
            .iter()
            .map(|write| view.required_at(write))
            .collect();
        Ok(view)
    }

    /// The writer and every node linked to it by shares covering the write's row.
    fn reach(&self, write: &Write) -> BTreeSet<usize> {
        let row = &write.row;
        let covering: Vec<&Share> = self
            .shares
            .iter()
            .filter(|share| share.db == row.db && share.scope.covers(&row.table, &row.row))
            .collect();
        let mut reach = BTreeSet::from([write.node]);
        let mut queue = vec![write.node];
        while let Some(node) = queue.pop() {
            for share in covering.iter().filter(|share| share.nodes.contains(&node)) {
                queue.extend(share.nodes.iter().filter(|other| reach.insert(**other)));
            }
        }
        reach
    }

    /// The live nodes that must reflect `write` (see the module doc).
    fn required_at(&self, write: &Write) -> BTreeSet<usize> {
        if write.lost_by_restore {
            return BTreeSet::new();
        }
        let live: BTreeSet<usize> = self
            .reach(write)
            .into_iter()
            .filter(|node| self.nodes.contains_key(node))
            .collect();
        let observable = self.nodes.contains_key(&write.node)
            || live.iter().any(|node| {
                self.dag(*node, &write.row)
                    .is_some_and(|dag| dag.nodes.contains_key(&write.version))
            });
        if observable { live } else { BTreeSet::new() }
    }

    fn dag(&self, node: usize, row: &RowId) -> Option<&RowDag> {
        self.dags.get(&(node, row.clone()))
    }

    /// The writes of `indexes` required on `node`.
    fn required_writes(&self, node: usize, indexes: &[usize]) -> Vec<&'a Write> {
        indexes
            .iter()
            .filter(|index| self.required[**index].contains(&node))
            .map(|index| &self.oracle.writes()[*index])
            .collect()
    }

    /// The writes of a row that count on `node`: the required ones, and every other
    /// acknowledged write the node holds or collected (one it need not have received, e.g.
    /// by a member that left since, still takes part in conflict resolution once it
    /// arrived). A write lost by restore counts only if held: a floor raised by a catch-up
    /// by state covers what the responder knew, which may be such a write the node never
    /// got.
    fn counted_writes(&self, node: usize, id: &RowId, indexes: &[usize]) -> Vec<&'a Write> {
        let held = self.dag(node, id);
        let floor = self.nodes[&node].floor(&id.db).unwrap_or_default();
        indexes
            .iter()
            .filter(|index| {
                let write = &self.oracle.writes()[**index];
                self.required[**index].contains(&node)
                    || held.is_some_and(|dag| dag.nodes.contains_key(&write.version))
                    || (!write.lost_by_restore
                        && floor.known_gen(&id.table, &id.row, write.device) >= write.generation)
            })
            .map(|index| &self.oracle.writes()[*index])
            .collect()
    }
}

/// Convergence: every live node of a share holds the same row heads (tombstones included)
/// under its scope as the share's first live node.
pub fn check_convergence(view: &View<'_>) -> Result<(), Violation> {
    for share in view.shares {
        let mut live = share
            .nodes
            .iter()
            .filter_map(|node| Some((*node, *view.nodes.get(node)?)));
        let Some((first, store)) = live.next() else {
            continue;
        };
        let heads = |node: usize, store: &Store| {
            store
                .heads_under(&share.db, &share.scope)
                .map_err(|error| Violation::unreadable(node, error))
        };
        let expected = heads(first, store)?;
        for (node, store) in live {
            let got = heads(node, store)?;
            let rows: BTreeSet<&String> = expected.keys().chain(got.keys()).collect();
            let differs = rows
                .into_iter()
                .find(|row| !same_state(expected.get(*row), got.get(*row)));
            if let Some(row) = differs {
                return Err(Violation::Diverged {
                    nodes: (first, node),
                    row: RowId {
                        db: share.db.clone(),
                        table: share.scope.table.clone(),
                        row: row.clone(),
                    },
                    heads: (
                        expected.get(row).map(|head| head.version),
                        got.get(row).map(|head| head.version),
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Whether two nodes' heads of a row show the same state: the same head, or no live row on
/// either (a tombstone one node still holds and another collected, `store::collect`).
fn same_state(a: Option<&crate::store::RowHead>, b: Option<&crate::store::RowHead>) -> bool {
    let gone = |head: Option<&crate::store::RowHead>| head.is_none_or(|head| head.deleted);
    a == b || (gone(a) && gone(b))
}

/// Whether `node` collected the record (`device`, `generation`) of a row: its collection
/// floor covers it (`store::collect`), so its absence from the DAG is no loss (the head it
/// was superseded by is judged by `check_winners`).
fn collected(
    view: &View<'_>,
    node: usize,
    row: &RowId,
    device: DeviceId,
    generation: Generation,
) -> Result<bool, Violation> {
    let floor = view.nodes[&node]
        .floor(&row.db)
        .map_err(|error| Violation::unreadable(node, error))?;
    Ok(floor.known_gen(&row.table, &row.row, device) >= generation)
}

/// Whether a write that wins over `write` (it saw it, or is concurrent and later by
/// last-writer-wins) is the node's head, reachable from it, or collected there: the DAG may
/// no longer show `write` (collection removes superseded versions and collected tombstones;
/// a catch-up by state brings only heads), but what superseded it is accounted for.
fn superseded_here(
    view: &View<'_>,
    node: usize,
    dag: &RowDag,
    write: &Write,
) -> Result<bool, Violation> {
    let reachable = dag.reachable();
    for index in view
        .oracle
        .rows()
        .find(|(id, _)| **id == write.row)
        .map_or(&[][..], |(_, i)| i)
    {
        let later = &view.oracle.writes()[*index];
        if later.version == write.version || !later.beats(write) {
            continue;
        }
        if reachable.contains(&later.version)
            || collected(view, node, &later.row, later.device, later.generation)?
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// No acknowledged write lost: on every node that must reflect it, a write is the row's head
/// or reachable from it through parents (superseded) or links (lost to a concurrent write;
/// `check_winners` judges the winner), or was collected there.
pub fn check_no_write_lost(view: &View<'_>) -> Result<(), Violation> {
    for (index, write) in view.oracle.writes().iter().enumerate() {
        for node in &view.required[index] {
            let Some(dag) = view.dag(*node, &write.row) else {
                continue;
            };
            if !dag.reachable().contains(&write.version)
                && !collected(view, *node, &write.row, write.device, write.generation)?
                && !superseded_here(view, *node, dag, write)?
            {
                let knowledge = view.nodes[node]
                    .knowledge(&write.row.db)
                    .map_err(|error| Violation::unreadable(*node, error))?;
                return Err(Violation::WriteLost {
                    node: *node,
                    row: Box::new(write.row.clone()),
                    version: write.version,
                    writer: write.node,
                    head: dag.head.as_ref().map(|head| head.version),
                    held: dag.nodes.contains_key(&write.version),
                    device: write.device,
                    generation: write.generation,
                    known: knowledge.known_gen(&write.row.table, &write.row.row, write.device),
                });
            }
        }
    }
    Ok(())
}

/// The right winner: on every live node, a row's head is the write last-writer-wins picks
/// among the required writes no other required write came after (or, for a delete the node
/// collected, no row); a head that a required write came after is `CausallyLaterLost`.
pub fn check_winners(view: &View<'_>) -> Result<(), Violation> {
    for (id, indexes) in view.oracle.rows() {
        for node in view.nodes.keys() {
            let writes = view.counted_writes(*node, id, indexes);
            let latest = writes
                .iter()
                .filter(|write| !writes.iter().any(|o| o.context.contains(&write.version)));
            let Some(expected) = latest.max_by_key(|write| (write.hlc, write.version)) else {
                continue;
            };
            let head = view
                .dag(*node, id)
                .and_then(|dag| dag.head.as_ref())
                .map(|head| head.version);
            if head == Some(expected.version)
                || (head.is_none()
                    && expected.is_delete()
                    && collected(view, *node, id, expected.device, expected.generation)?)
            {
                continue;
            }
            let later = head.and_then(|head| {
                let later = writes.iter().find(|o| o.context.contains(&head))?;
                Some((head, later.version))
            });
            return Err(match later {
                Some((head, later)) => Violation::CausallyLaterLost {
                    node: *node,
                    row: id.clone(),
                    head,
                    later,
                },
                None => Violation::WrongWinner {
                    node: *node,
                    row: id.clone(),
                    head,
                    expected: expected.version,
                },
            });
        }
    }
    Ok(())
}

/// No resurrection: a row a node shows (`Store::get`) is not decided by a delete: its head is
/// not a delete, and it wins over every required delete of the row (a causally later write,
/// or a concurrent one with a later (HLC, version)).
pub fn check_no_resurrection(view: &View<'_>) -> Result<(), Violation> {
    for (id, indexes) in view.oracle.rows() {
        for (node, store) in &view.nodes {
            let writes = view.required_writes(*node, indexes);
            let Some(dag) = view.dag(*node, id) else {
                continue;
            };
            if visible(store, id).map_err(|error| Violation::unreadable(*node, error))? {
                let head = dag.head.as_ref().map(|head| head.version);
                let head_write = head.and_then(|version| view.oracle.write(id, version));
                let head_node = head.and_then(|version| dag.nodes.get(&version));
                let deciding_delete = match (head_write, head_node) {
                    (Some(write), _) if write.is_delete() => Some(write.version),
                    (_, Some(node)) if node.deleted => head,
                    _ => writes
                        .iter()
                        .filter(|write| write.is_delete())
                        .find(|delete| !head_write.is_some_and(|head| head.beats(delete)))
                        .map(|delete| delete.version),
                };
                if let Some(delete) = deciding_delete {
                    return Err(Violation::Resurrected {
                        node: *node,
                        row: id.clone(),
                        delete,
                        head,
                    });
                }
            }
        }
    }
    Ok(())
}

/// Whether the app sees a value at the row.
fn visible(store: &Store, id: &RowId) -> crate::error::Result<bool> {
    let table = TableName::parse(&id.table)?;
    let key = RowKey::parse(&id.row)?;
    Ok(store.get(&id.db, &table, &key)?.is_some())
}

/// A record some node logged or the oracle saw acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Record {
    device: DeviceId,
    generation: Generation,
    table: String,
    row: String,
    version: Version,
    /// A link's losers; None for a write.
    link: Option<Vec<Version>>,
}

/// Knowledge never claims a record the node does not hold: for every record (the oracle's
/// acknowledged writes not lost by restore, and every entry of every live node's log) whose
/// (device, generation) a live node's knowledge covers at its row, that node holds it: the
/// write's DAG node, or for a link the winner's node with every loser among its parents.
pub fn check_knowledge(view: &View<'_>) -> Result<(), Violation> {
    let dbs: BTreeSet<&DbName> = view.oracle.rows().map(|(id, _)| &id.db).collect();
    for db in dbs {
        let records = records(view, db)?;
        for (node, store) in &view.nodes {
            let knowledge = store
                .knowledge(db)
                .map_err(|error| Violation::unreadable(*node, error))?;
            // Links this node logged: held even where their winner was collected here.
            let links: BTreeSet<(DeviceId, Generation)> = store
                .logged(db)
                .map_err(|error| Violation::unreadable(*node, error))?
                .into_iter()
                .filter(|entry| entry.link.is_some())
                .map(|entry| (entry.device, entry.generation))
                .collect();
            for record in &records {
                let known = knowledge.known_gen(&record.table, &record.row, record.device);
                if known < record.generation || holds(view, *node, store, db, record)? {
                    continue;
                }
                if record.link.is_some() && links.contains(&(record.device, record.generation)) {
                    continue;
                }
                let row = RowId {
                    db: db.clone(),
                    table: record.table.clone(),
                    row: record.row.clone(),
                };
                if collected(view, *node, &row, record.device, record.generation)? {
                    continue;
                }
                // A version the head reaches through parents was held and superseded here: a
                // collected head (one row-head key) replaced by a later write leaves no node
                // for a second pair of the same version (an epoch's relog) that arrived since.
                if record.link.is_none() && reaches(view, *node, store, &row, record.version)? {
                    continue;
                }
                return Err(Violation::KnowledgeWithoutRecord {
                    node: *node,
                    db: db.clone(),
                    device: record.device,
                    generation: record.generation,
                    known,
                    table: record.table.clone(),
                    row: record.row.clone(),
                    version: record.version,
                });
            }
        }
    }
    Ok(())
}

/// Every record of `db`: the oracle's writes not lost by restore and every live log's entries.
fn records(view: &View<'_>, db: &DbName) -> Result<BTreeSet<Record>, Violation> {
    let mut records: BTreeSet<Record> = view
        .oracle
        .writes()
        .iter()
        .filter(|write| write.row.db == *db && !write.lost_by_restore)
        .map(|write| Record {
            device: write.device,
            generation: write.generation,
            table: write.row.table.clone(),
            row: write.row.row.clone(),
            version: write.version,
            link: None,
        })
        .collect();
    for (node, store) in &view.nodes {
        let logged = store
            .logged(db)
            .map_err(|error| Violation::unreadable(*node, error))?;
        records.extend(logged.into_iter().map(|entry| Record {
            device: entry.device,
            generation: entry.generation,
            table: entry.table,
            row: entry.row,
            version: entry.version,
            link: entry.link,
        }));
    }
    Ok(records)
}

/// Whether `node` holds `record` (its row read from the view, or from the store if the oracle
/// never saw it written).
/// Whether `row`'s head on `node` reaches `version` through parents and links.
fn reaches(
    view: &View<'_>,
    node: usize,
    store: &Store,
    row: &RowId,
    version: Version,
) -> Result<bool, Violation> {
    if let Some(dag) = view.dag(node, row) {
        return Ok(dag.reachable().contains(&version));
    }
    let dag = store
        .row_dag(&row.db, &row.table, &row.row)
        .map_err(|error| Violation::unreadable(node, error))?;
    Ok(dag.reachable().contains(&version))
}

fn holds(
    view: &View<'_>,
    node: usize,
    store: &Store,
    db: &DbName,
    record: &Record,
) -> Result<bool, Violation> {
    let id = RowId {
        db: db.clone(),
        table: record.table.clone(),
        row: record.row.clone(),
    };
    let read;
    let dag = match view.dag(node, &id) {
        Some(dag) => dag,
        None => {
            read = store
                .row_dag(db, &record.table, &record.row)
                .map_err(|error| Violation::unreadable(node, error))?;
            &read
        }
    };
    let Some(dag_node) = dag.nodes.get(&record.version) else {
        return Ok(false);
    };
    Ok(record.link.as_ref().is_none_or(|losers| {
        losers
            .iter()
            .all(|loser| dag_node.parents.contains(loser) || dag_node.linked.contains(loser))
    }))
}

/// HLC never goes backwards: the first reading the oracle saw go back, if any.
pub fn check_clocks(oracle: &Oracle) -> Result<(), Violation> {
    match oracle.clock_violation() {
        Some(violation) => Err(violation.clone()),
        None => Ok(()),
    }
}
