//! Conflict resolution (reference §2.5): the [`Resolver`] trait, which picks the head an
//! object keeps when a page leaves it with several, and [`LastWriterWins`], the default rule.
//! `store::apply` builds the [`Conflict`] (the heads and their nearest common ancestor, read
//! from the DAG) inside the page's write transaction, asks the resolver given to the apply
//! path, and writes the [`Decision`] as a link record that syncs onward.
//!
//! Rule: **a resolver is deterministic**. Every node that meets the same conflict must pick
//! the same winner, whatever the order the heads arrive in and whichever head is its own, or
//! the nodes' link records name different winners and they never converge. A causally later
//! write never reaches a resolver: it is a child of the write it replaced, so the DAG makes it
//! the only head. Calls `clock`, `genvec`, `error` and `store::records` only.

use crate::clock::Hlc;
use crate::error::{Error, Result};
use crate::genvec::DeviceId;
use crate::store::records::Version;

/// One version of an object as a resolver sees it: a head in conflict, or their ancestor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub version: Version,
    /// When its writer wrote it (the writer's HLC).
    pub hlc: Hlc,
    /// The device that wrote it.
    pub device: DeviceId,
    /// Its value; None for a tombstone (a delete).
    pub value: Option<Vec<u8>>,
}

/// An object left with two or more heads after a page was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub table: String,
    pub row: String,
    /// The heads, in no meaningful order (two or more).
    pub heads: Vec<Head>,
    /// The nearest common ancestor of two of the heads (this node's head, if it still is one,
    /// and the first head the page brought), if they share history, the search found it and
    /// this node holds it (a head's parent may be a version whose record never came here).
    pub ancestor: Option<Head>,
}

/// What a resolver decided. App-resolved conflicts (DESIGN.md: the app hands its node a
/// resolver receiving the local, remote and ancestor values) will add a variant that keeps
/// the heads pending until the app answers; the apply path matches this exhaustively, so that
/// variant cannot be added without handling it there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Keep this head; the others become its parents through a link record.
    Winner(Version),
}

/// Picks the head a conflicted object keeps. Runs inside the write transaction applying a
/// page (so it must not block on anything but its own computation) and must be
/// deterministic (see the module doc). `Send + Sync`: a node shares it with the threads its
/// commits run on.
pub trait Resolver: Send + Sync {
    /// Its name, for logs ("last-writer-wins").
    fn name(&self) -> &'static str;

    /// The decision for `conflict`. A `Winner` must be one of `conflict.heads` (the apply
    /// path refuses any other with `Internal:`). Errors: `Internal:` for a conflict with no
    /// heads.
    fn resolve(&self, conflict: &Conflict) -> Result<Decision>;
}

/// The default rule: the head with the latest HLC wins, ties to the larger version. A
/// tombstone competes like any write, so a delete wins over a concurrent earlier put.
#[derive(Debug, Clone, Copy, Default)]
pub struct LastWriterWins;

impl Resolver for LastWriterWins {
    fn name(&self) -> &'static str {
        "last-writer-wins"
    }

    fn resolve(&self, conflict: &Conflict) -> Result<Decision> {
        conflict
            .heads
            .iter()
            .max_by_key(|head| (head.hlc, head.version))
            .map(|head| Decision::Winner(head.version))
            .ok_or_else(|| Error::Internal("conflict with no heads".into()))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn head(version: u64, wall_nanos: i64, logical: u32) -> Head {
        Head {
            version: Version(version),
            hlc: Hlc {
                wall_nanos,
                logical,
            },
            device: DeviceId(version),
            value: Some(vec![version as u8]),
        }
    }

    fn conflict(heads: Vec<Head>) -> Conflict {
        Conflict {
            table: "t".into(),
            row: "k".into(),
            heads,
            ancestor: None,
        }
    }

    fn lww(heads: Vec<Head>) -> Decision {
        LastWriterWins.resolve(&conflict(heads)).unwrap()
    }

    #[test]
    fn last_writer_wins_picks_the_latest_hlc() {
        let heads = vec![head(9, 100, 0), head(1, 200, 0), head(5, 150, 7)];
        assert_eq!(lww(heads), Decision::Winner(Version(1)));
    }

    #[test]
    fn last_writer_wins_orders_by_the_logical_counter_within_a_nanosecond() {
        let heads = vec![head(9, 100, 0), head(1, 100, 1)];
        assert_eq!(lww(heads), Decision::Winner(Version(1)));
    }

    #[test]
    fn last_writer_wins_breaks_an_hlc_tie_by_the_larger_version() {
        let heads = vec![head(3, 100, 0), head(8, 100, 0), head(5, 100, 0)];
        assert_eq!(lww(heads), Decision::Winner(Version(8)));
    }

    #[test]
    fn last_writer_wins_lets_a_later_delete_win() {
        let mut delete = head(1, 200, 0);
        delete.value = None;
        assert_eq!(
            lww(vec![head(9, 100, 0), delete]),
            Decision::Winner(Version(1))
        );
    }

    #[test]
    fn last_writer_wins_ignores_the_ancestor() {
        let mut with_ancestor = conflict(vec![head(2, 100, 0), head(3, 50, 0)]);
        with_ancestor.ancestor = Some(head(1, 10_000, 0));
        assert_eq!(
            LastWriterWins.resolve(&with_ancestor).unwrap(),
            Decision::Winner(Version(2))
        );
    }

    #[test]
    fn a_conflict_with_no_heads_is_an_internal_error() {
        let error = LastWriterWins.resolve(&conflict(Vec::new())).unwrap_err();
        assert!(error.to_string().starts_with("Internal:"), "{error}");
    }

    /// Two to six heads with few distinct clock readings (so ties happen) and distinct
    /// versions (a version is unique per object), with a permutation of them.
    fn heads_and_permutation() -> impl Strategy<Value = (Vec<Head>, Vec<Head>)> {
        proptest::collection::btree_map(1u64..64, (0i64..3, 0u32..2), 2..=6)
            .prop_map(|heads| {
                heads
                    .into_iter()
                    .map(|(version, (wall, logical))| head(version, wall, logical))
                    .collect::<Vec<_>>()
            })
            .prop_flat_map(|heads| {
                let shuffled = Just(heads.clone()).prop_shuffle();
                (Just(heads), shuffled)
            })
    }

    proptest! {
        /// Every node must pick the same winner from the same conflict, whatever order its
        /// heads arrived in.
        #[test]
        fn last_writer_wins_picks_the_same_head_in_any_order(
            (heads, permuted) in heads_and_permutation()
        ) {
            let expected = heads.iter().map(|h| (h.hlc, h.version)).max().unwrap().1;
            prop_assert_eq!(lww(heads), Decision::Winner(expected));
            prop_assert_eq!(lww(permuted), Decision::Winner(expected));
        }
    }
}
