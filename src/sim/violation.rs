//! What a check reports: a broken invariant, naming the node(s), row and versions involved
//! (versions as 16 hex digits, HLC readings as `wall_nanos.logical`).

use crate::clock::Hlc;
use crate::genvec::{DeviceId, Generation};
use crate::names::DbName;
use crate::sim::oracle::RowId;
use crate::store::Version;

/// A broken invariant, naming the node(s), row and versions involved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// Convergence: two live nodes sharing a scope hold different heads for a row of it.
    #[error(
        "nodes {} and {} diverged at {row}, a row they share: heads {} and {}",
        .nodes.0, .nodes.1, hex(&.heads.0), hex(&.heads.1)
    )]
    Diverged {
        nodes: (usize, usize),
        row: RowId,
        heads: (Option<Version>, Option<Version>),
    },
    /// An acknowledged write is neither the head of its row on a node that must reflect it
    /// nor reachable from that head (superseded, or linked as a conflict's loser).
    #[error(
        "node {node} lost the write {} of {row} acknowledged by node {writer} (logged as \
         {:016x}:{}; the node's knowledge covers that device up to {} there): {}",
        .version.to_hex(), .device.0, .generation, .known,
        if *.held { format!("not reachable from its head {}", hex(.head)) }
        else { "not in its DAG".to_owned() }
    )]
    WriteLost {
        node: usize,
        /// Boxed: the variant is the enum's largest.
        row: Box<RowId>,
        version: Version,
        writer: usize,
        head: Option<Version>,
        held: bool,
        device: DeviceId,
        generation: Generation,
        /// The lacking node's knowledge of `device` at the row.
        known: Generation,
    },
    /// A row's head is not the write last-writer-wins picks among the causally latest.
    #[error(
        "node {node} settled {row} on {}; last-writer-wins picks {}",
        hex(.head), .expected.to_hex()
    )]
    WrongWinner {
        node: usize,
        row: RowId,
        head: Option<Version>,
        expected: Version,
    },
    /// A row's head is a write that another required write came after.
    #[error(
        "node {node} settled {row} on {}, which the write {} came after",
        .head.to_hex(), .later.to_hex()
    )]
    CausallyLaterLost {
        node: usize,
        row: RowId,
        head: Version,
        later: Version,
    },
    /// A row shows a value although a delete no write wins over decides it.
    #[error(
        "node {node} shows {row} although the delete {} decides it (head {})",
        .delete.to_hex(), hex(.head)
    )]
    Resurrected {
        node: usize,
        row: RowId,
        delete: Version,
        head: Option<Version>,
    },
    /// A node's knowledge covers a record it does not hold.
    #[error(
        "node {node}'s knowledge of {} covers device {:016x} up to {known}, but it lacks \
         generation {generation} ({} of {}:{})",
        .db.as_str(), .device.0, .version.to_hex(), .table, .row
    )]
    KnowledgeWithoutRecord {
        node: usize,
        db: DbName,
        device: DeviceId,
        generation: Generation,
        known: Generation,
        table: String,
        row: String,
        version: Version,
    },
    /// A node's clock issued or showed a reading below an earlier one.
    #[error(
        "node {node}'s clock went back from {} to {}",
        show_hlc(.previous), show_hlc(.now)
    )]
    ClockWentBack {
        node: usize,
        previous: Hlc,
        now: Hlc,
    },
    /// A commit acknowledged a write its row does not show.
    #[error("node {node} acknowledged a write of {row} its row does not show: {detail}")]
    NotApplied {
        node: usize,
        row: RowId,
        detail: String,
    },
    /// A store could not be read.
    #[error("node {node}'s store could not be read: {error}")]
    Unreadable { node: usize, error: String },
}

impl Violation {
    pub(crate) fn unreadable(node: usize, error: crate::error::Error) -> Violation {
        Violation::Unreadable {
            node,
            error: error.to_string(),
        }
    }
}

fn hex(version: &Option<Version>) -> String {
    version.map_or_else(|| "(none)".to_owned(), Version::to_hex)
}

fn show_hlc(hlc: &Hlc) -> String {
    format!("{}.{}", hlc.wall_nanos, hlc.logical)
}
