//! Syncing stores by hand, for tests: one initiator's session against one responder, page by
//! page, without a network (the store's own `start_position`, `read_page` and `apply`).

use crate::genvec::Scope;
use crate::names::DbName;
use crate::store::{Applied, CursorUpdate, LastWriterWins, PageFrom, PageRequest, Resolver, Store};

/// Pulls everything `from` holds of `db` under `scopes` into `to`, in pages of three records,
/// as one session would; returns what was applied, summed. Conflicts: last-writer-wins.
pub(crate) fn pull(to: &Store, from: &Store, db: &DbName, scopes: &[Scope]) -> Applied {
    pull_resolved(to, from, db, scopes, &LastWriterWins)
}

/// [`pull`], settling conflicts by `resolver`.
pub(crate) fn pull_resolved(
    to: &Store,
    from: &Store,
    db: &DbName,
    scopes: &[Scope],
    resolver: &dyn Resolver,
) -> Applied {
    let keep = PageFrom {
        peer: String::new(),
        cursor: CursorUpdate::Keep,
        asked_at: None,
    };
    let own = to.state(db).unwrap().own_generation();
    let knowledge = to
        .knowledge(db)
        .unwrap()
        .request_for(scopes, to.device(), own);
    let mut position = from.start_position(db, to.device(), &knowledge).unwrap();
    let mut total = Applied::default();
    loop {
        let request = PageRequest {
            initiator: to.device(),
            echoes_from: 0,
            knowledge: &knowledge,
            position,
            max_records: 3,
            max_bytes: usize::MAX,
        };
        let page = from.read_page(db, &request).unwrap();
        position = page.next_position;
        let (records, knowledge) = (&page.records, page.knowledge.as_ref());
        let applied = to
            .apply_session_page(db, from.device(), resolver, records, knowledge, &keep)
            .unwrap();
        total.records += applied.records;
        total.duplicates += applied.duplicates;
        total.resolutions.extend(applied.resolutions);
        if page.knowledge.is_some() {
            return total;
        }
    }
}
