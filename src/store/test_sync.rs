//! Syncing stores by hand, for tests: one initiator's session against one responder, page by
//! page, without a network (the store's own `start_position`, `read_page` and `apply`).

use crate::genvec::Scope;
use crate::names::DbName;
use crate::store::{Applied, PageRequest, Store};

/// Pulls everything `from` holds of `db` under `scopes` into `to`, in pages of three records,
/// as one session would; returns what was applied, summed.
pub(crate) fn pull(to: &Store, from: &Store, db: &DbName, scopes: &[Scope]) -> Applied {
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
        let applied = to
            .apply(db, from.device(), &page.records, page.knowledge.as_ref())
            .unwrap();
        total.records += applied.records;
        total.duplicates += applied.duplicates;
        total.resolutions.extend(applied.resolutions);
        if page.knowledge.is_some() {
            return total;
        }
    }
}
