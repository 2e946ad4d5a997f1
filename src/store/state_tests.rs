//! The rules of catch-up by state (`store::state`), each pinned on memory stores synced by
//! hand: the responder collects everything it has seen (a cut of its own knowledge, as a
//! node whose members all reported would), and the exchange is the set difference of the
//! two stores' items, which is what negentropy finds (`sync::catchup` runs the real one).

use std::collections::BTreeSet;
use std::sync::Arc;

use syncbase_storage::MemoryStorage;

use super::*;
use crate::genvec::Scope;

fn store() -> Store {
    Store::open(Arc::new(MemoryStorage::new()), crate::env::Env::system()).unwrap()
}

fn db() -> DbName {
    DbName::parse("db").unwrap()
}

fn scopes() -> Vec<Scope> {
    vec![Scope::new("t", "")]
}

fn put(store: &Store, key: &str, value: &[u8]) {
    let mutation = Mutation::Put {
        table: TableName::parse("t").unwrap(),
        key: RowKey::parse(key).unwrap(),
        value: value.to_vec(),
    };
    store.commit(&db(), &[mutation]).unwrap();
}

fn delete(store: &Store, key: &str) {
    let mutation = Mutation::Delete {
        table: TableName::parse("t").unwrap(),
        key: RowKey::parse(key).unwrap(),
    };
    store.commit(&db(), &[mutation]).unwrap();
}

fn get(store: &Store, key: &str) -> Option<Vec<u8>> {
    let (table, key) = (TableName::parse("t").unwrap(), RowKey::parse(key).unwrap());
    store.get(&db(), &table, &key).unwrap()
}

fn head(store: &Store, key: &str) -> Option<RowHead> {
    store.row_dag(&db(), "t", key).unwrap().head
}

fn pull(to: &Store, from: &Store) -> Applied {
    super::test_sync::pull(to, from, &db(), &scopes())
}

/// A whole collection pass at `store` under a cut of everything it has seen of table `t`.
fn collect(store: &Store) {
    let mut seen = store.knowledge(&db()).unwrap().bound_for(&scopes()[0]);
    seen.raise(store.device(), store.state(&db()).unwrap().own_generation());
    let mut cut = crate::store::collect::Cut::default();
    cut.shared.insert(scopes()[0].clone(), seen);
    let mut cursor = CollectCursor::default();
    while !cursor.done {
        cursor = store.collect_step(&db(), &cut, cursor, 1000).unwrap().0;
    }
}

/// One catch-up of `to` from `from` by state: the items only `from` holds are fetched and
/// applied in one page, then the rows only `to` holds settled and `from`'s knowledge and
/// floor merged. Returns what it did and how many heads were fetched.
fn catch_up(to: &Store, from: &Store) -> (StateApplied, usize) {
    let snapshot = from.state_snapshot(&db(), &scopes()).unwrap();
    let mine = to.state_items(&db(), &scopes()).unwrap();
    let theirs: BTreeSet<_> = snapshot.items.iter().map(|item| item.id).collect();
    let ours: BTreeSet<_> = mine.iter().map(|item| item.id).collect();
    let need: Vec<(String, String)> = snapshot
        .items
        .iter()
        .filter(|item| !ours.contains(&item.id))
        .map(|item| (item.table.clone(), item.row.clone()))
        .collect();
    let records = from.head_records(&db(), &need).unwrap();
    let page = StateStep::Page {
        from: from.device(),
        records,
        knowledge: snapshot.knowledge.clone(),
    };
    let mut applied = to
        .apply_state(&db(), &LastWriterWins, &page, |_| |_: &LogRecord| true)
        .unwrap();
    let fetched: BTreeSet<_> = need.iter().cloned().collect();
    let rows = mine
        .iter()
        .filter(|item| !theirs.contains(&item.id))
        .map(|item| (item.table.clone(), item.row.clone()))
        .filter(|row| !fetched.contains(row))
        .collect();
    let finish = StateStep::Finish {
        peer: "peer".into(),
        rows,
        knowledge: snapshot.knowledge,
        floor: snapshot.floor,
    };
    applied.add(
        to.apply_state(&db(), &LastWriterWins, &finish, |_| |_: &LogRecord| true)
            .unwrap(),
    );
    (applied, need.len())
}

#[test]
fn a_row_deleted_at_the_responder_is_deleted_at_the_initiator_by_the_kept_tombstone() {
    let (a, r) = (store(), store());
    put(&r, "gone", b"1");
    put(&r, "kept", b"2");
    pull(&a, &r);
    delete(&r, "gone");
    collect(&r);
    let tombstone = head(&r, "gone").expect("collection keeps a tombstone head");
    assert!(tombstone.deleted);
    let (applied, fetched) = catch_up(&a, &r);
    assert_eq!(
        (fetched, applied.heads_taken, applied.removed),
        (1, 1, 0),
        "{applied:?}"
    );
    assert_eq!(get(&a, "gone"), None);
    assert_eq!(head(&a, "gone"), Some(tombstone));
    assert_eq!(get(&a, "kept").as_deref(), Some(&b"2"[..]));
    assert_eq!(
        a.floor(&db()).unwrap(),
        r.floor(&db()).unwrap(),
        "the floor is raised"
    );
    // Idempotent: a second run finds nothing to do.
    let (again, fetched) = catch_up(&a, &r);
    assert_eq!((again, fetched), (StateApplied::default(), 0));
}

#[test]
fn a_write_the_responder_never_saw_survives_and_reaches_it() {
    let (a, r) = (store(), store());
    put(&r, "old", b"1");
    put(&r, "gone", b"x");
    pull(&a, &r);
    put(&a, "new", b"only at a");
    put(&a, "old", b"2 at a");
    delete(&r, "gone");
    collect(&r);
    let (applied, _) = catch_up(&a, &r);
    assert_eq!(applied.removed, 0, "{applied:?}");
    assert_eq!(get(&a, "gone"), None);
    assert_eq!(get(&a, "new").as_deref(), Some(&b"only at a"[..]));
    assert_eq!(get(&a, "old").as_deref(), Some(&b"2 at a"[..]));
    pull(&r, &a);
    assert_eq!(get(&r, "new").as_deref(), Some(&b"only at a"[..]));
    assert_eq!(get(&r, "old").as_deref(), Some(&b"2 at a"[..]));
    assert_eq!(head(&r, "new"), head(&a, "new"));
}

#[test]
fn a_write_made_while_away_settles_against_a_collected_delete_by_last_writer_wins_everywhere() {
    let (a, r, c) = (store(), store(), store());
    put(&r, "deleted later", b"1");
    put(&r, "written later", b"1");
    pull(&a, &r);
    pull(&c, &r);
    // A, away, writes one row before R deletes it and the other after R deleted it; C takes
    // both deletes; R collects everything it has seen.
    put(
        &a,
        "deleted later",
        b"written while away, before the delete",
    );
    delete(&r, "deleted later");
    delete(&r, "written later");
    pull(&c, &r);
    put(&a, "written later", b"written while away, after the delete");
    collect(&r);
    catch_up(&a, &r);
    assert_eq!(get(&a, "deleted later"), None, "the later delete wins");
    let value = Some(b"written while away, after the delete".to_vec());
    assert_eq!(get(&a, "written later"), value, "the later write wins");
    // Every node settles the same way, the one that collected and the one that did not.
    pull(&r, &a);
    pull(&c, &a);
    for key in ["deleted later", "written later"] {
        assert_eq!(head(&r, key), head(&a, key), "{key}");
        assert_eq!(head(&c, key), head(&a, key), "{key}");
    }
}

#[test]
fn a_head_the_responder_superseded_is_replaced_and_one_it_never_saw_is_resolved() {
    let (a, r) = (store(), store());
    put(&r, "plain", b"1");
    put(&r, "both", b"1");
    pull(&a, &r);
    put(&r, "plain", b"2 at r");
    put(&a, "both", b"a's");
    put(&r, "both", b"r's, later");
    collect(&r);
    let (applied, fetched) = catch_up(&a, &r);
    assert_eq!(fetched, 2);
    assert_eq!(
        (applied.heads_taken, applied.grafted),
        (1, 1),
        "{applied:?}"
    );
    assert_eq!(applied.resolutions.len(), 1);
    assert_eq!(get(&a, "plain").as_deref(), Some(&b"2 at r"[..]));
    assert_eq!(get(&a, "both").as_deref(), Some(&b"r's, later"[..]));
    // The resolution's link record reaches R by the log and they agree.
    pull(&r, &a);
    assert_eq!(head(&r, "both"), head(&a, "both"));
}

#[test]
fn an_identical_row_costs_no_fetch() {
    let (a, r) = (store(), store());
    for key in ["a", "b", "c"] {
        put(&r, key, b"same");
    }
    delete(&r, "c");
    pull(&a, &r);
    collect(&r);
    let (applied, fetched) = catch_up(&a, &r);
    assert_eq!(fetched, 0);
    assert_eq!(applied, StateApplied::default());
    assert_eq!(
        a.state_items(&db(), &scopes()).unwrap().len(),
        3,
        "tombstones are items too"
    );
}
