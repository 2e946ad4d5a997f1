//! The oracle: what a run promised, kept beside the nodes so `sim::check` can hold them to
//! it. The simulation tells it every acknowledged write (right after the commit returned
//! Ok), every clock reading, and every restart and restore; it records per row every write
//! with what the store assigned it (version, HLC, device and generation) and its causal
//! context, and notes a clock that went back as soon as it sees it.
//!
//! Rule for restores: a node restored from an older copy of its store loses, by design, the
//! writes its copy lacks. An acknowledged write is *lost by restore* (and no longer checked)
//! only if the store replaced held it and neither the restored copy nor any other node's
//! store (down nodes' included) held it at the restore: a write another node had received
//! must survive, since that node relays it back. A node that can no longer read a table
//! (it left, was ejected, or a restore took it back to before it joined) cannot get back its
//! own writes of that table a restore took from it: they are lost by restore too
//! ([`Oracle::cut_off`]). Only a node that shares a write's table relays it: a write whose
//! only holders stopped sharing its table (they left or were ejected) is lost by restore as
//! well ([`Oracle::stranded`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::clock::Hlc;
use crate::genvec::{DeviceId, Generation};
use crate::names::DbName;
use crate::sim::check::Violation;
use crate::store::{Mutation, RowDag, Store, Version};

/// One row of one database.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RowId {
    pub db: DbName,
    pub table: String,
    pub row: String,
}

/// Shows `db/table:row`.
impl fmt::Display for RowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}:{}", self.db.as_str(), self.table, self.row)
    }
}

/// An acknowledged write, as the store assigned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// The node (the simulation's index) that acknowledged it.
    pub node: usize,
    pub row: RowId,
    /// The value put; None for a delete (a tombstone).
    pub value: Option<Vec<u8>>,
    pub version: Version,
    pub hlc: Hlc,
    /// The (device, generation) the write was logged under when acknowledged.
    pub device: DeviceId,
    pub generation: Generation,
    /// The row's head on the writing node when it wrote (the write's DAG parent).
    pub parent: Option<Version>,
    /// Causal context: every version of the row the writer had seen, i.e. what its parent
    /// reaches through parents and links. A write in it came before this one.
    pub context: BTreeSet<Version>,
    /// Lost by a restore of every store that held it (see the module doc); not checked.
    pub lost_by_restore: bool,
}

impl Write {
    /// Whether the write is a delete.
    pub fn is_delete(&self) -> bool {
        self.value.is_none()
    }

    /// One line for the trace: row, put or delete, version, parent, (device, generation).
    pub fn describe(&self) -> String {
        let kind = if self.is_delete() { "delete" } else { "put" };
        let parent = self.parent.map_or("(none)".to_owned(), Version::to_hex);
        format!(
            "{}:{} {kind} {} on {parent} as {:016x}:{}",
            self.row.table,
            self.row.row,
            self.version.to_hex(),
            self.device.0,
            self.generation.get()
        )
    }

    /// Whether this write wins over `other` by the conflict rule: a causally later write
    /// always wins (it saw `other`), a causally earlier one never does, and concurrent writes
    /// go to the later (HLC, version), last-writer-wins as `store::resolve::LastWriterWins` picks.
    pub fn beats(&self, other: &Write) -> bool {
        if self.context.contains(&other.version) {
            return true;
        }
        if other.context.contains(&self.version) {
            return false;
        }
        (self.hlc, self.version) > (other.hlc, other.version)
    }
}

/// What a run promised: every acknowledged write, and each node's clock floor.
#[derive(Debug, Default)]
pub struct Oracle {
    writes: Vec<Write>,
    /// Indexes into `writes`, per row, in acknowledgement order.
    rows: BTreeMap<RowId, Vec<usize>>,
    /// Per node, the last clock reading seen (or the floor a restart set).
    clocks: BTreeMap<usize, Hlc>,
    /// The first clock that went back.
    clock_violation: Option<Violation>,
}

impl Oracle {
    /// An oracle that has seen nothing.
    pub fn new() -> Oracle {
        Oracle::default()
    }

    /// Records the writes `store` (node `node`'s) just acknowledged: call it right after
    /// `store.commit(db, mutations)` returned Ok, before anything else touches the store. It
    /// reads each row back (`Store::row_dag`): the head is the batch's last mutation of the
    /// row, each earlier one its parent. Fails with `NotApplied` if a row does not show its
    /// mutation, with `ClockWentBack` if a write's HLC is not above the node's last reading,
    /// with `Unreadable` on a storage error.
    pub fn acknowledged(
        &mut self,
        node: usize,
        store: &Store,
        db: &DbName,
        mutations: &[Mutation],
    ) -> Result<Vec<String>, Violation> {
        let mut by_row: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
        for (index, mutation) in mutations.iter().enumerate() {
            by_row.entry(mutation.row()).or_default().push(index);
        }
        let mut assigned: BTreeMap<usize, Write> = BTreeMap::new();
        for ((table, row), indexes) in by_row {
            let id = RowId {
                db: db.clone(),
                table: table.to_owned(),
                row: row.to_owned(),
            };
            let dag = store
                .row_dag(db, table, row)
                .map_err(|error| Violation::unreadable(node, error))?;
            let mut version = dag.head.as_ref().map(|head| head.version);
            for index in indexes.into_iter().rev() {
                let write = read_back(node, store, &id, &dag, version, &mutations[index])?;
                version = write.parent;
                assigned.insert(index, write);
            }
        }
        let floor = self.clocks.get(&node).copied();
        let mut described = Vec::with_capacity(assigned.len());
        for mut write in assigned.into_values() {
            described.push(write.describe());
            self.write_above(node, floor, write.hlc)?;
            self.widen_context(&mut write);
            self.rows
                .entry(write.row.clone())
                .or_default()
                .push(self.writes.len());
            self.writes.push(write);
        }
        Ok(described)
    }

    /// Takes node `node`'s clock reading after a step (`store.clock().last()`): a reading
    /// below the previous one is `ClockWentBack` (also kept for `check::check_all`).
    pub fn observe_clock(&mut self, node: usize, hlc: Hlc) -> Result<(), Violation> {
        self.clock_step(node, hlc)
    }

    /// Node `node` restarted on the storage it had (a crash and restart): its clock need only
    /// stay above what the store committed (readings never committed, such as a time answer
    /// to a peer, are gone with the process).
    pub fn restarted(&mut self, node: usize, store: &Store) -> Result<(), Violation> {
        let floor = store
            .committed_hlc()
            .map_err(|error| Violation::unreadable(node, error))?;
        self.clocks.insert(node, floor);
        Ok(())
    }

    /// Node `node`'s store `before` is replaced by an older copy, `after`: call it before
    /// dropping `before`, with `others` every other node's store whose storage survives (down
    /// nodes included) and `relays`, whether another node can serve a table's rows back (it
    /// shares the table: a node outside a syncgroup holding its rows relays none of them).
    /// Marks lost by restore each write `before` held that neither `after` nor any of
    /// `others` that relays its table holds (the module doc's rule) and sets the node's clock
    /// floor as [`Oracle::restarted`] does for `after`. Returns how many writes it marked.
    pub fn restored(
        &mut self,
        node: usize,
        before: &Store,
        after: &Store,
        others: &[(usize, &Store)],
        relays: &dyn Fn(usize, &str) -> bool,
    ) -> Result<usize, Violation> {
        let mut lost = Vec::new();
        for (id, indexes) in &self.rows {
            let held = Held::read(node, before, id)?;
            let candidates: Vec<usize> = indexes
                .iter()
                .copied()
                .filter(|index| {
                    let write = &self.writes[*index];
                    !write.lost_by_restore && held.holds(write)
                })
                .collect();
            if candidates.is_empty() {
                continue;
            }
            let mut survivors = vec![Held::read(node, after, id)?];
            for (other, store) in others.iter().filter(|(other, _)| relays(*other, &id.table)) {
                survivors.push(Held::read(*other, store, id)?);
            }
            lost.extend(candidates.into_iter().filter(|index| {
                let write = &self.writes[*index];
                survivors.iter().all(|held| !held.holds(write))
            }));
        }
        for index in &lost {
            self.writes[*index].lost_by_restore = true;
        }
        self.restarted(node, after)?;
        Ok(lost.len())
    }

    /// Node `node` can no longer read `table`: it left or was ejected, or was restored from a
    /// copy of its store that predates its join or its leaving. Its writes of `table` that
    /// its store lacks now (lost by a restore) cannot come back to it, since no peer serves
    /// that table to it any more: marks them lost by restore (the other nodes that hold them
    /// are still held to convergence and the right winner). Returns how many it marked.
    pub fn cut_off(&mut self, node: usize, after: &Store, table: &str) -> Result<usize, Violation> {
        let mut lost = Vec::new();
        for (id, indexes) in &self.rows {
            if id.table != table {
                continue;
            }
            let held = Held::read(node, after, id)?;
            lost.extend(indexes.iter().copied().filter(|index| {
                let write = &self.writes[*index];
                write.node == node && !write.lost_by_restore && !held.holds(write)
            }));
        }
        for index in &lost {
            self.writes[*index].lost_by_restore = true;
        }
        Ok(lost.len())
    }

    /// A node stopped sharing `table` (it left or was ejected): marks lost by restore every
    /// write of `table` that none of `sharing` (the stores of the nodes that still share it,
    /// down ones included) holds. Its writer lost it to a restore and only the node that
    /// stopped held it, so nothing can bring it to the nodes that share the table. Returns
    /// how many it marked.
    pub fn stranded(
        &mut self,
        table: &str,
        sharing: &[(usize, &Store)],
    ) -> Result<usize, Violation> {
        let mut lost = Vec::new();
        for (id, indexes) in &self.rows {
            if id.table != table {
                continue;
            }
            let mut held = Vec::new();
            for (node, store) in sharing {
                held.push(Held::read(*node, store, id)?);
            }
            lost.extend(indexes.iter().copied().filter(|index| {
                let write = &self.writes[*index];
                !write.lost_by_restore && held.iter().all(|held| !held.holds(write))
            }));
        }
        for index in &lost {
            self.writes[*index].lost_by_restore = true;
        }
        Ok(lost.len())
    }

    /// Every acknowledged write, in acknowledgement order.
    pub fn writes(&self) -> &[Write] {
        &self.writes
    }

    /// Every row written, with its writes' indexes into [`Oracle::writes`].
    pub fn rows(&self) -> impl Iterator<Item = (&RowId, &[usize])> {
        self.rows
            .iter()
            .map(|(id, indexes)| (id, indexes.as_slice()))
    }

    /// The acknowledged write of `row` at `version`, if any.
    pub fn write(&self, row: &RowId, version: Version) -> Option<&Write> {
        self.rows
            .get(row)?
            .iter()
            .map(|index| &self.writes[*index])
            .find(|write| write.version == version)
    }

    /// The first clock that went back, if one did.
    pub fn clock_violation(&self) -> Option<&Violation> {
        self.clock_violation.as_ref()
    }

    /// Checks a reading against the node's floor and raises the floor.
    fn clock_step(&mut self, node: usize, hlc: Hlc) -> Result<(), Violation> {
        let previous = self.clocks.get(&node).copied();
        self.clocks
            .insert(node, previous.map_or(hlc, |previous| previous.max(hlc)));
        match previous {
            Some(previous) if hlc < previous => Err(self.went_back(node, previous, hlc)),
            _ => Ok(()),
        }
    }

    /// Checks that a new write's HLC is above the node's floor before its commit. It does not
    /// raise the floor: a write on top of one from a clock far ahead is stamped above its
    /// parent, not by the clock (`store::local`); the next `observe_clock` raises the floor.
    fn write_above(&mut self, node: usize, floor: Option<Hlc>, hlc: Hlc) -> Result<(), Violation> {
        match floor {
            Some(floor) if hlc <= floor => Err(self.went_back(node, floor, hlc)),
            _ => Ok(()),
        }
    }

    /// Notes the first clock that went back.
    fn went_back(&mut self, node: usize, previous: Hlc, now: Hlc) -> Violation {
        let violation = Violation::ClockWentBack {
            node,
            previous,
            now,
        };
        self.clock_violation
            .get_or_insert_with(|| violation.clone());
        violation
    }
}

impl Oracle {
    /// Adds to a write's context the contexts of the writes in it: what its writer had seen
    /// of the row though the DAG no longer shows it (history collection removes superseded
    /// versions, `store::collect`, and a catch-up by state brings only heads).
    fn widen_context(&self, write: &mut Write) {
        let seen: Vec<Version> = write.context.iter().copied().collect();
        for version in seen {
            if let Some(earlier) = self.write(&write.row, version) {
                write.context.extend(earlier.context.iter().copied());
            }
        }
    }
}

/// The write `mutation` made, read back from the row's DAG at `version` (the head for the
/// batch's last mutation of the row, else the parent of the next one).
fn read_back(
    node: usize,
    store: &Store,
    id: &RowId,
    dag: &RowDag,
    version: Option<Version>,
    mutation: &Mutation,
) -> Result<Write, Violation> {
    let not_applied = |detail: String| Violation::NotApplied {
        node,
        row: id.clone(),
        detail,
    };
    let version = version.ok_or_else(|| not_applied("the row has no head".into()))?;
    let dag_node = dag
        .nodes
        .get(&version)
        .ok_or_else(|| not_applied(format!("no DAG node at {}", version.to_hex())))?;
    let value = match mutation {
        Mutation::Put { value, .. } => Some(value.clone()),
        Mutation::Delete { .. } => None,
    };
    let shows = match &value {
        Some(value) => !dag_node.deleted && dag_node.value == *value,
        None => dag_node.deleted,
    };
    if !shows || dag_node.device != store.device() {
        return Err(not_applied(format!(
            "{} is another write",
            version.to_hex()
        )));
    }
    let parent = dag_node.parents.first().copied();
    Ok(Write {
        node,
        row: id.clone(),
        value,
        version,
        hlc: dag_node.hlc,
        device: dag_node.device,
        generation: dag_node.generation,
        parent,
        context: parent.map(|p| dag.reachable_from(p)).unwrap_or_default(),
        lost_by_restore: false,
    })
}

/// What one store holds of a row, for deciding which writes a restore lost: the versions its
/// DAG shows, and its collection floor (a write collected there was held there: collection
/// removes only what every member counted had).
struct Held {
    dag: crate::store::RowDag,
    floor: crate::genvec::Knowledge,
}

impl Held {
    fn read(node: usize, store: &Store, id: &RowId) -> Result<Held, Violation> {
        let unreadable = |error| Violation::unreadable(node, error);
        Ok(Held {
            dag: store
                .row_dag(&id.db, &id.table, &id.row)
                .map_err(unreadable)?,
            floor: store.floor(&id.db).map_err(unreadable)?,
        })
    }

    fn holds(&self, write: &Write) -> bool {
        self.dag.nodes.contains_key(&write.version)
            || self
                .floor
                .known_gen(&write.row.table, &write.row.row, write.device)
                >= write.generation
    }
}
