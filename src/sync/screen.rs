//! Screening a data page inside the commit that applies it: the initiator hands the host an
//! [`IncomingPage`] (the records and knowledge the responder sent, with the session's refusal
//! bookkeeping), and the host runs [`IncomingPage::screen`] inside the page's write
//! transaction with the [`WriterCheck`] read there. So the rule a record is checked against is
//! the one its commit runs under: a syncgroup change (an eject, a leave, a spec change)
//! committed before the page is seen, and none can commit between the check and the write
//! (ARCHITECTURE.md, "Who may write what", rule 2).
//!
//! What the screen does: drops the records whose writer may not have written them, notes each
//! in the session's [`Refused`], lowers the knowledge to merge below them, and forgets the
//! resume cursor on a page with refusals (so they are asked for again from knowledge). It
//! also drops a link (a resolution) whose winner this node holds neither in its store nor
//! earlier on the page: its winner was refused (its writer is not known here as a writer
//! yet), and a link cannot be applied without it; the knowledge stays below the link too, so
//! it comes again with its winner. It returns the updated bookkeeping ([`Screened`]); the
//! session keeps it once the commit succeeded.

use std::collections::BTreeSet;

use crate::error::Result;
use crate::genvec::{Knowledge, Scope};
use crate::identity::Fingerprint;
use crate::store::{
    CursorUpdate, HeldNodes, LogRecord, PageFrom, RecordContent, ScreenedPage, Version,
};
use crate::sync::host::WriterCheck;
use crate::sync::refused::Refused;

/// One data page on its way into the store, with what screening it needs.
#[derive(Debug, Clone)]
pub struct IncomingPage {
    /// The responder, as authenticated (its declared scopes count in the check).
    pub peer: Fingerprint,
    /// The records as the responder sent them (already checked for scope and origin).
    pub records: Vec<LogRecord>,
    /// The responder's knowledge, when the page ended its log.
    pub knowledge: Option<Knowledge>,
    /// The scopes the session asked for.
    pub scopes: Vec<Scope>,
    /// What the session refused before this page.
    pub refused: Refused,
    /// What to do with the resume cursor if the screen refuses none of this page's records.
    pub cursor: CursorUpdate,
    /// `Store::lowerings` when the session asked (None: not checked).
    pub asked_at: Option<u64>,
}

/// What a screen refused: the session's bookkeeping with this page's refusals noted, and the
/// records it dropped (to log and count); and the payload bytes of the records it kept.
#[derive(Debug, Clone, Default)]
pub struct Screened {
    pub refused: Refused,
    pub dropped: Vec<LogRecord>,
    /// Links held back because their winner was refused (applied once it is accepted).
    pub orphans: Vec<LogRecord>,
    pub kept_bytes: u64,
}

impl IncomingPage {
    /// Splits the page under `check` and the DAG nodes `held` (both read inside the page's
    /// transaction): the records kept, the knowledge lowered below every refusal of the
    /// session, and the cursor (forgotten if this page refused any record); and what was
    /// refused. Fails only if `held` cannot be read.
    pub fn screen(
        self,
        check: &WriterCheck,
        held: &dyn HeldNodes,
    ) -> Result<(ScreenedPage, Screened)> {
        let IncomingPage {
            peer,
            records,
            knowledge,
            scopes,
            mut refused,
            cursor,
            asked_at,
        } = self;
        let (kept, dropped): (Vec<_>, Vec<_>) = records.into_iter().partition(|record| {
            check.allows(
                record.device(),
                record.generation(),
                &record.table,
                &record.row,
            )
        });
        for record in &dropped {
            refused.note(record, &scopes, check);
        }
        // A missing winner was refused, or collected here; with no refusal in the session
        // it can only have been collected, and the link is kept (logged without a graft).
        let only_collected = refused.is_empty() && dropped.is_empty() && held.collecting()?;
        let (kept, orphans) = if only_collected {
            (kept, Vec::new())
        } else {
            without_orphan_links(kept, held)?
        };
        for record in &orphans {
            refused.note_dependent(record, &scopes);
        }
        let cursor = if dropped.is_empty() && orphans.is_empty() {
            cursor
        } else {
            CursorUpdate::Forget
        };
        let knowledge = knowledge.and_then(|knowledge| refused.lower(knowledge));
        let kept_bytes = kept.iter().map(LogRecord::payload_len).sum::<usize>() as u64;
        let page = ScreenedPage {
            records: kept,
            knowledge,
            from: PageFrom {
                peer: peer.as_str().to_owned(),
                cursor,
                asked_at,
            },
        };
        let screened = Screened {
            refused,
            dropped,
            orphans,
            kept_bytes,
        };
        Ok((page, screened))
    }
}

/// Splits `records` into those to apply and the links whose winner is neither in `held` nor
/// a write kept earlier on the page.
fn without_orphan_links(
    records: Vec<LogRecord>,
    held: &dyn HeldNodes,
) -> Result<(Vec<LogRecord>, Vec<LogRecord>)> {
    let mut written: BTreeSet<(String, String, Version)> = BTreeSet::new();
    let (mut kept, mut orphans) = (Vec::new(), Vec::new());
    for record in records {
        let key = (record.table.clone(), record.row.clone(), record.version);
        match &record.content {
            RecordContent::Node(_) => {
                written.insert(key);
                kept.push(record);
            }
            RecordContent::Link { .. } => {
                if written.contains(&key) || held.holds(&key.0, &key.1, key.2)? {
                    kept.push(record);
                } else {
                    orphans.push(record);
                }
            }
        }
    }
    Ok((kept, orphans))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Hlc;
    use crate::genvec::{DeviceId, GenVector, Generation};
    use crate::store::DagNode;

    const WRITER: DeviceId = DeviceId(1);
    const RESOLVER: DeviceId = DeviceId(2);

    /// Holds version 7 of every row.
    struct HoldsSeven;

    impl HeldNodes for HoldsSeven {
        fn holds(&self, _: &str, _: &str, version: Version) -> Result<bool> {
            Ok(version == Version(7))
        }

        fn collecting(&self) -> Result<bool> {
            Ok(false)
        }
    }

    fn write(generation: u64, version: u64) -> LogRecord {
        LogRecord {
            table: "t".into(),
            row: "k".into(),
            version: Version(version),
            content: RecordContent::Node(DagNode {
                parents: Vec::new(),
                device: WRITER,
                generation: Generation::new(generation),
                hlc: Hlc::default(),
                deleted: false,
                batch_id: 0,
                batch_count: 0,
                value: b"v".to_vec(),
                linked: Vec::new(),
            }),
        }
    }

    fn link(generation: u64, winner: u64) -> LogRecord {
        LogRecord {
            table: "t".into(),
            row: "k".into(),
            version: Version(winner),
            content: RecordContent::Link {
                device: RESOLVER,
                generation: Generation::new(generation),
                parents: vec![Version(100 + generation)],
                hlc: Hlc::default(),
            },
        }
    }

    fn peer() -> Fingerprint {
        Fingerprint::parse(&"e".repeat(64)).unwrap()
    }

    #[test]
    fn a_link_whose_winner_is_neither_held_nor_on_the_page_is_held_back_below_the_knowledge() {
        let scope = Scope::new("t", "");
        let mut knowledge = Knowledge::new();
        let vector: GenVector = [(WRITER, Generation::FIRST), (RESOLVER, Generation::new(3))]
            .into_iter()
            .collect();
        knowledge.insert(scope.clone(), vector);
        let page = IncomingPage {
            peer: peer(),
            // A write, a link to it, a link to a held version, a link to neither.
            records: vec![write(1, 5), link(1, 5), link(2, 7), link(3, 9)],
            knowledge: Some(knowledge),
            scopes: vec![scope.clone()],
            refused: Refused::new(),
            cursor: CursorUpdate::Keep,
            asked_at: None,
        };
        // Declared with the whole table: every writer may write there.
        let check = WriterCheck::new(peer(), Vec::new(), vec![scope.clone()]);
        let (page, screened) = page.screen(&check, &HoldsSeven).unwrap();
        let kept: Vec<u64> = page
            .records
            .iter()
            .map(|record| record.generation().get())
            .collect();
        assert_eq!(
            kept,
            [1, 1, 2],
            "the write and the two links whose winner is known"
        );
        assert_eq!(screened.orphans.len(), 1);
        assert!(screened.dropped.is_empty());
        let merged = page.knowledge.expect("knowledge to merge");
        assert_eq!(
            merged.get(&scope).unwrap().get(RESOLVER),
            Generation::new(2),
            "below the held-back link, so it comes again"
        );
        assert_eq!(page.from.cursor, CursorUpdate::Forget);
        assert!(
            !screened.refused.permitted_by(&check),
            "no re-issue on the link's own writer: its winner's refusal decides"
        );
    }
}
