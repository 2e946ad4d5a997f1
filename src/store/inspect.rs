//! Read-only views of a database for checks from outside the write paths (the simulation's
//! oracle, `sim`): one row's head with its whole version DAG, the row heads under a scope,
//! every record of the log, and the clock reading the store committed. Each method is one
//! snapshot read; nothing here writes (apart from the `#[cfg(test)]` tampering helpers the
//! checks' tests use to break a store on purpose).

use std::collections::{BTreeMap, BTreeSet};

use syncbase_storage::Scan;

use crate::clock::Hlc;
use crate::error::Result;
use crate::genvec::{DeviceId, Generation, Scope};
use crate::names::DbName;
use crate::store::keys::{DbKeys, trailing_u64};
use crate::store::records::{DagNode, EntryKind, LogEntry, RowHead, Version, decode, decode_head};
use crate::store::writer::load_state;
use crate::store::{Store, text, visitor_error};

/// One row as a node holds it: its head (None if the row was never written here) and every
/// DAG node of it, by version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RowDag {
    pub head: Option<RowHead>,
    pub nodes: BTreeMap<Version, DagNode>,
}

impl RowDag {
    /// The versions `from` reaches through parents and links (`from` included, if held):
    /// what a write made on top of `from` had seen of the row. A parent whose node is gone
    /// (collected, `store::collect`) is reached but not walked past.
    pub fn reachable_from(&self, from: Version) -> BTreeSet<Version> {
        let mut seen = BTreeSet::new();
        let mut queue = vec![from];
        let mut first = true;
        while let Some(version) = queue.pop() {
            let node = self.nodes.get(&version);
            if (node.is_none() && std::mem::take(&mut first)) || !seen.insert(version) {
                continue;
            }
            first = false;
            if let Some(node) = node {
                queue.extend(node.parents.iter().chain(&node.linked).copied());
            }
        }
        seen
    }

    /// The versions the head reaches (empty if the row has no head).
    pub fn reachable(&self) -> BTreeSet<Version> {
        self.head
            .as_ref()
            .map(|head| self.reachable_from(head.version))
            .unwrap_or_default()
    }
}

/// One entry of a database's log: the record a (device, generation) names here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    pub device: DeviceId,
    pub generation: Generation,
    pub table: String,
    pub row: String,
    /// The write's version, or for a link the winner's.
    pub version: Version,
    /// For a link (a resolution), the losing heads it made parents of `version`; None for a
    /// write.
    pub link: Option<Vec<Version>>,
}

impl Store {
    /// Row `row` of `table`: its head and every DAG node stored for it, in one snapshot.
    pub fn row_dag(&self, db: &DbName, table: &str, row: &str) -> Result<RowDag> {
        let keys = DbKeys::new(db.as_str());
        let txn = self.storage.read()?;
        let stored = txn
            .get(&keys.row(table, row))?
            .map(|bytes| decode_head(&bytes))
            .transpose()?;
        let any = keys.node(table, row, Version(0));
        let prefix = &any[..any.len() - 8];
        let mut nodes = BTreeMap::new();
        txn.scan_prefix(prefix, &mut |key, value| {
            let node: DagNode = decode(value, "DAG node").map_err(visitor_error)?;
            if key.len() == prefix.len() + 8 {
                nodes.insert(Version(trailing_u64(key).unwrap_or(0)), node);
            }
            Ok(Scan::Continue)
        })?;
        // A collected head's node is kept by its row head.
        if let Some(stored) = &stored
            && let Some(node) = stored.node_at(stored.head.version)
        {
            nodes.entry(stored.head.version).or_insert(node);
        }
        let head = stored.map(|stored| stored.head);
        Ok(RowDag { head, nodes })
    }

    /// The row heads under `scope` (tombstones included), by row key, in one snapshot.
    pub fn heads_under(&self, db: &DbName, scope: &Scope) -> Result<BTreeMap<String, RowHead>> {
        let table_prefix = DbKeys::new(db.as_str()).table_prefix(&scope.table);
        let start = [table_prefix.as_slice(), scope.prefix.as_bytes()].concat();
        let mut heads = BTreeMap::new();
        self.storage
            .read()?
            .scan_prefix(&start, &mut |key, value| {
                let head: RowHead = decode(value, "row head").map_err(visitor_error)?;
                heads.insert(text(&key[table_prefix.len()..], "row key")?, head);
                Ok(Scan::Continue)
            })?;
        Ok(heads)
    }

    /// Every entry of the database's log, in log order (entries logged without an index
    /// entry, a restored writer's reused pairs, included).
    pub fn logged(&self, db: &DbName) -> Result<Vec<Logged>> {
        let prefix = DbKeys::new(db.as_str()).log_prefix();
        let mut logged = Vec::new();
        self.storage.read()?.scan_prefix(&prefix, &mut |_, value| {
            let entry: LogEntry = decode(value, "log entry").map_err(visitor_error)?;
            logged.push(Logged {
                device: entry.device,
                generation: entry.generation,
                table: entry.table,
                row: entry.row,
                version: entry.version,
                link: match entry.kind {
                    EntryKind::Node => None,
                    EntryKind::Link { parents, .. } => Some(parents),
                },
            });
            Ok(Scan::Continue)
        })?;
        Ok(logged)
    }

    /// The highest clock reading committed: any database's data commits and the stamps of
    /// the syncgroup versions it holds (an admin's later version must carry a later stamp
    /// than its earlier ones, or members keep the earlier one by last-writer-wins). A store
    /// opened on this storage issues readings above it.
    pub fn committed_hlc(&self) -> Result<Hlc> {
        let txn = self.storage.read()?;
        let mut highest = Hlc::default();
        let prefix = crate::store::keys::catalog_prefix();
        let mut names = Vec::new();
        txn.scan_prefix(&prefix, &mut |key, _| {
            names.push(text(&key[prefix.len()..], "database name")?);
            Ok(Scan::Continue)
        })?;
        for name in names {
            let state = load_state(txn.as_ref(), &DbKeys::new(&name))?;
            highest = highest.max(state.last_hlc);
            for view in crate::store::syncgroups::views(txn.as_ref(), &name)? {
                highest = highest.max(view.record.stamp.hlc);
            }
        }
        Ok(highest)
    }
}

/// Writes that break a store on purpose, for the tests of the checks that must catch them.
#[cfg(test)]
impl Store {
    /// Drops the database's mark points, as if its opens so far had aged out of the last
    /// `epoch::MARK_POINTS` (a long-lived store): the next open's point is then the lowest.
    pub(crate) fn retire_mark_points(&self, db: &DbName) {
        let mut txn = self.storage.write().unwrap();
        txn.delete(&DbKeys::new(db.as_str()).mark_points()).unwrap();
        txn.commit().unwrap();
    }

    /// Replaces a row's head as is, bypassing the write paths.
    pub(crate) fn tamper_head(&self, db: &DbName, table: &str, row: &str, head: &RowHead) {
        let keys = DbKeys::new(db.as_str());
        let mut txn = self.storage.write().unwrap();
        let bytes = crate::store::records::encode(head).unwrap();
        txn.put(&keys.row(table, row), &bytes).unwrap();
        txn.commit().unwrap();
    }
}
