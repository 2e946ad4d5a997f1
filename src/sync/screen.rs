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
//! returns the updated bookkeeping ([`Screened`]); the session keeps it once the commit
//! succeeded.

use crate::genvec::{Knowledge, Scope};
use crate::identity::Fingerprint;
use crate::store::{CursorUpdate, LogRecord, PageFrom, ScreenedPage};
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
    pub kept_bytes: u64,
}

impl IncomingPage {
    /// Splits the page under `check` (read inside the page's transaction): the records kept,
    /// the knowledge lowered below every refusal of the session, and the cursor (forgotten if
    /// this page refused any record); and what was refused.
    pub fn screen(self, check: &WriterCheck) -> (ScreenedPage, Screened) {
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
        let cursor = if dropped.is_empty() {
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
            kept_bytes,
        };
        (page, screened)
    }
}
