//! Epoch tests on the memory backend: a store copied and put back (a restored backup) is
//! synced with a peer by hand, and the (device, generation) pairs stay unique.

use std::sync::Arc;

use syncbase_storage::{MemoryStorage, Scan};

use super::*;
use crate::genvec::Scope;

fn db() -> DbName {
    DbName::parse("db").unwrap()
}

fn open(storage: Arc<MemoryStorage>) -> Store {
    Store::open(storage, crate::env::Env::system()).unwrap()
}

fn put(store: &Store, key: &str, value: &str) {
    let mutation = Mutation::Put {
        table: TableName::parse("t").unwrap(),
        key: RowKey::parse(key).unwrap(),
        value: value.as_bytes().to_vec(),
    };
    store.create_database(&db()).unwrap();
    store.commit(&db(), &[mutation]).unwrap();
}

fn get(store: &Store, key: &str) -> Option<String> {
    let (table, key) = (TableName::parse("t").unwrap(), RowKey::parse(key).unwrap());
    let value = store.get(&db(), &table, &key).unwrap();
    value.map(|bytes| String::from_utf8(bytes).unwrap())
}

/// A byte-for-byte copy of a store's storage (a backup).
fn copy(store: &Store) -> Arc<MemoryStorage> {
    let copy = Arc::new(MemoryStorage::new());
    let mut txn = copy.write().unwrap();
    store
        .storage()
        .read()
        .unwrap()
        .scan_prefix(b"", &mut |key, value| {
            txn.put(key, value)?;
            Ok(Scan::Continue)
        })
        .unwrap();
    txn.commit().unwrap();
    copy
}

/// Pulls everything `from` has for table `t` into `to`, as a session would (one page).
fn pull(to: &Store, from: &Store) {
    let scopes = [Scope::new("t", "")];
    let own = to.state(&db()).unwrap().own_generation();
    let knowledge = to
        .knowledge(&db())
        .unwrap()
        .request_for(&scopes, to.device(), own);
    let position = from.start_position(&db(), to.device(), &knowledge).unwrap();
    let request = PageRequest {
        initiator: to.device(),
        echoes_from: 0,
        knowledge: &knowledge,
        position,
        max_records: usize::MAX,
        max_bytes: usize::MAX,
    };
    let page = from.read_page(&db(), &request).unwrap();
    assert!(page.knowledge.is_some(), "one page holds everything");
    to.create_database(&db()).unwrap();
    to.apply(&db(), from.device(), &page.records, page.knowledge.as_ref())
        .unwrap();
}

/// B writes k1, which A pulls; B is backed up; B writes k2, which A pulls; B is restored from
/// the backup (opened again) and writes k3 at the generation A holds as k2.
fn restored_pair() -> (Store, Store) {
    let a = open(Arc::new(MemoryStorage::new()));
    let b = open(Arc::new(MemoryStorage::new()));
    put(&b, "k1", "v1");
    // B has run long enough that its first run's mark point aged out: a copy of it may
    // diverge only from its next open on.
    b.retire_mark_points(&db());
    pull(&a, &b);
    let backup = copy(&b);
    put(&b, "k2", "v2");
    pull(&a, &b);
    let b = open(backup);
    put(&b, "k3", "v3");
    (a, b)
}

#[test]
fn a_restored_store_reuses_a_generation_that_the_mark_exposes() {
    let (a, b) = restored_pair();
    let me = b.device();
    let theirs = a
        .last_mark(&db(), me)
        .unwrap()
        .expect("A holds B's records");
    assert_eq!(theirs.generation, Generation::new(2));
    let ours = b
        .mark_at(&db(), me, Generation::new(2))
        .unwrap()
        .expect("B made generation 2");
    assert_ne!(ours.digest, theirs.digest, "k3 and k2 share (device, 2)");
    assert_eq!(
        b.mark_at(&db(), me, Generation::FIRST).unwrap(),
        a.mark_at(&db(), me, Generation::FIRST).unwrap()
    );
}

#[test]
fn an_epoch_relogs_own_records_above_the_safe_point_and_both_stores_converge() {
    let (a, b) = restored_pair();
    let old = b.device();
    let epoch = b
        .start_epoch(
            old,
            "test: a clash".into(),
            Some((&db(), Generation::new(2))),
        )
        .unwrap()
        .expect("an epoch starts");
    assert_eq!((epoch.replaced, epoch.device), (old, b.device()));
    assert_ne!(b.device(), old);
    assert_eq!(epoch.relogged, 1, "k3, above the safe point 1");
    assert!(
        b.mark_at(&db(), old, Generation::new(2)).unwrap().is_none(),
        "(old, 2) dropped"
    );
    assert_eq!(b.epochs().unwrap(), vec![epoch]);

    pull(&b, &a);
    pull(&a, &b);
    for store in [&a, &b] {
        assert_eq!(get(store, "k1").as_deref(), Some("v1"));
        assert_eq!(get(store, "k2").as_deref(), Some("v2"));
        assert_eq!(get(store, "k3").as_deref(), Some("v3"));
    }
    assert_eq!(a.digest(&db()).unwrap(), b.digest(&db()).unwrap());
    assert_eq!(
        a.last_mark(&db(), old).unwrap(),
        b.last_mark(&db(), old).unwrap(),
        "both hold A's k2 as (old, 2)"
    );
}

#[test]
fn new_writes_take_the_fresh_device_and_old_records_stay_valid() {
    let a = open(Arc::new(MemoryStorage::new()));
    let storage = Arc::new(MemoryStorage::new());
    let first = open(storage.clone());
    put(&first, "k1", "v1");
    first.retire_mark_points(&db());
    let b = open(storage);
    let old = b.device();
    b.start_epoch(old, "test".into(), None).unwrap().unwrap();
    assert_eq!(
        b.epochs().unwrap()[0].relogged,
        0,
        "nothing above the open point"
    );
    put(&b, "k2", "v2");
    let new = b.device();
    assert_eq!(
        b.mark_at(&db(), new, Generation::new(2))
            .unwrap()
            .map(|m| m.generation),
        Some(Generation::new(2))
    );
    pull(&a, &b);
    assert_eq!(get(&a, "k1").as_deref(), Some("v1"));
    assert_eq!(get(&a, "k2").as_deref(), Some("v2"));
    assert!(a.last_mark(&db(), old).unwrap().is_some());
    assert!(a.last_mark(&db(), new).unwrap().is_some());
}

#[test]
fn records_written_since_the_store_was_opened_are_logged_again() {
    let b = open(Arc::new(MemoryStorage::new()));
    put(&b, "k1", "v1");
    let old = b.device();
    let epoch = b.start_epoch(old, "test".into(), None).unwrap().unwrap();
    assert_eq!(
        epoch.relogged, 1,
        "k1 may clash: it was written since the open"
    );
    assert!(b.mark_at(&db(), old, Generation::FIRST).unwrap().is_none());
    assert!(
        b.mark_at(&db(), b.device(), Generation::new(2))
            .unwrap()
            .is_some()
    );
    assert_eq!(get(&b, "k1").as_deref(), Some("v1"));
}

#[test]
fn a_copy_taken_before_any_reopen_relogs_from_the_databases_first_generation() {
    // Written in the store's first run: the database did not exist when the store opened.
    let b = open(Arc::new(MemoryStorage::new()));
    put(&b, "k1", "v1");
    put(&b, "k2", "v2");
    assert_eq!(
        b.mark_points(&db()).unwrap(),
        [Generation::FIRST],
        "a new database marks its first generation"
    );
    // Restored from that copy: peers may hold other records under any generation since 1.
    let restored = open(copy(&b));
    put(&restored, "k3", "v3");
    let epoch = restored
        .start_epoch(restored.device(), "a clash".into(), None)
        .unwrap()
        .unwrap();
    assert_eq!(
        epoch.relogged, 3,
        "k1, k2 and k3, not only what the last run wrote"
    );
}

#[test]
fn a_store_lacking_the_record_at_a_mark_point_reports_the_next_one_it_holds() {
    // B writes s:x (generation 1), then t:k (generation 2); C shares only table t with B.
    let (b, c) = (
        open(Arc::new(MemoryStorage::new())),
        open(Arc::new(MemoryStorage::new())),
    );
    b.create_database(&db()).unwrap();
    let other = Mutation::Put {
        table: TableName::parse("s").unwrap(),
        key: RowKey::parse("x").unwrap(),
        value: b"s".to_vec(),
    };
    b.commit(&db(), &[other]).unwrap();
    put(&b, "k", "t");
    pull(&c, &b);
    let me = b.device();
    assert!(c.mark_at(&db(), me, Generation::FIRST).unwrap().is_none());
    let reported = c
        .mark_from(&db(), me, Generation::FIRST)
        .unwrap()
        .expect("C holds B's generation 2");
    assert_eq!(
        Some(reported),
        b.mark_at(&db(), me, Generation::new(2)).unwrap(),
        "what B compares with its own record at 2: a restored B that made another one \
         there sees the clash"
    );
}

#[test]
fn an_epoch_for_a_device_already_replaced_is_not_started_twice() {
    let b = open(Arc::new(MemoryStorage::new()));
    let old = b.device();
    assert!(b.start_epoch(old, "first".into(), None).unwrap().is_some());
    assert!(b.start_epoch(old, "second".into(), None).unwrap().is_none());
    assert_eq!(b.epochs().unwrap().len(), 1);
}

#[test]
fn the_device_id_of_an_epoch_survives_a_reopen() {
    let storage = Arc::new(MemoryStorage::new());
    let b = open(storage.clone());
    b.start_epoch(b.device(), "test".into(), None).unwrap();
    let device = b.device();
    drop(b);
    assert_eq!(open(storage).device(), device);
}

#[test]
fn a_write_under_a_pair_held_for_another_record_is_kept_not_dropped() {
    let (a, b) = restored_pair();
    // C learns k1 and k3 from the restored B (k3 under B's (device, 2)), then is handed A's
    // k2, which names the same pair.
    let c = open(Arc::new(MemoryStorage::new()));
    pull(&c, &b);
    assert_eq!(get(&c, "k3").as_deref(), Some("v3"));
    let mut nothing_known = crate::genvec::Knowledge::new();
    nothing_known.insert(Scope::new("t", ""), Default::default());
    let request = PageRequest {
        initiator: c.device(),
        echoes_from: 0,
        knowledge: &nothing_known,
        position: 0,
        max_records: usize::MAX,
        max_bytes: usize::MAX,
    };
    let page = a.read_page(&db(), &request).unwrap();
    let applied = c.apply(&db(), a.device(), &page.records, None).unwrap();
    assert_eq!(applied.records, 1, "k2 is new here: {applied:?}");
    assert_eq!(applied.duplicates, 1, "k1 is the same record");
    assert_eq!(get(&c, "k2").as_deref(), Some("v2"));
    assert_eq!(get(&c, "k3").as_deref(), Some("v3"));
    let again = c.apply(&db(), a.device(), &page.records, None).unwrap();
    assert_eq!(again.duplicates, 2, "a second time changes nothing");
}

/// The restored pair after B's epoch (clash at 2), and C, which took k1 and B's k3 under the
/// reused pair (B's old device, 2) before B's epoch and never saw A's k2.
fn third_store_after_the_epoch() -> (Store, Store, Store, DeviceId) {
    let (a, b) = restored_pair();
    let c = open(Arc::new(MemoryStorage::new()));
    pull(&c, &b);
    let old = b.device();
    b.start_epoch(
        old,
        "test: a clash".into(),
        Some((&db(), Generation::new(2))),
    )
    .unwrap()
    .unwrap();
    (a, b, c, old)
}

#[test]
fn an_epoch_announces_the_old_device_and_the_safe_point_of_each_database() {
    let (_a, b, _c, old) = third_store_after_the_epoch();
    assert_eq!(
        b.announced_notices(&db()).unwrap(),
        vec![Notice {
            old,
            safe: Generation::FIRST
        }]
    );
}

#[test]
fn a_third_store_that_took_the_reused_pair_fetches_the_original_once_it_takes_the_notice() {
    let (a, b, c, old) = third_store_after_the_epoch();
    pull(&c, &a);
    assert_eq!(
        get(&c, "k2"),
        None,
        "C claims (old, 2) and never asks for k2"
    );
    let notices = b.announced_notices(&db()).unwrap();
    let before = c.lowerings();
    let taken = c.take_notices(&db(), b.device(), &notices).unwrap();
    assert_eq!(taken.notices, notices);
    assert!(taken.lowered);
    assert_eq!(c.lowerings(), before + 2);
    assert_eq!(c.knowledge(&db()).unwrap().max_gen(old), Generation::FIRST);
    pull(&c, &a);
    pull(&c, &b);
    for key in ["k1", "k2", "k3"] {
        assert!(get(&c, key).is_some(), "C holds {key}");
    }
}

#[test]
fn a_node_holding_both_records_of_a_reused_pair_relays_both() {
    let (a, b, c, _old) = third_store_after_the_epoch();
    let notices = b.announced_notices(&db()).unwrap();
    c.take_notices(&db(), b.device(), &notices).unwrap();
    pull(&c, &a);
    pull(&c, &b);
    // A fresh node that syncs only with C (A, which held k2 first, may be gone).
    let d = open(Arc::new(MemoryStorage::new()));
    pull(&d, &c);
    for key in ["k1", "k2", "k3"] {
        assert!(get(&d, key).is_some(), "D holds {key} from C alone");
    }
}

#[test]
fn a_notice_from_a_responder_of_another_lineage_is_ignored() {
    let (a, b, c, old) = third_store_after_the_epoch();
    let notices = b.announced_notices(&db()).unwrap();
    let knowledge = c.knowledge(&db()).unwrap();
    let taken = c.take_notices(&db(), a.device(), &notices).unwrap();
    assert_eq!(taken, Taken::default(), "A may not speak for B's lineage");
    let announcer = DeviceId(old.0 ^ 1).with_epoch(9);
    assert!(!announcer.same_lineage(old));
    assert_eq!(
        c.take_notices(&db(), announcer, &notices).unwrap(),
        Taken::default()
    );
    assert_eq!(c.knowledge(&db()).unwrap(), knowledge);
    assert!(c.taken_notices(&db()).unwrap().is_empty());
}

#[test]
fn a_notice_naming_the_announcer_itself_or_this_stores_lineage_is_ignored() {
    let (_a, b, c, _old) = third_store_after_the_epoch();
    let itself = Notice {
        old: b.device(),
        safe: Generation::NONE,
    };
    assert_eq!(
        c.take_notices(&db(), b.device(), &[itself]).unwrap(),
        Taken::default()
    );
    let ours = Notice {
        old: c.device(),
        safe: Generation::NONE,
    };
    let copy_of_c = c.device().with_epoch(7);
    assert_ne!(copy_of_c, c.device());
    assert_eq!(
        c.take_notices(&db(), copy_of_c, &[ours]).unwrap(),
        Taken::default()
    );
}

#[test]
fn a_notice_is_taken_once_only_lowers_and_forgets_the_resume_cursors() {
    let (a, b, c, old) = third_store_after_the_epoch();
    let asked = c.knowledge(&db()).unwrap();
    let mut grown = asked.clone();
    let mut vector = grown.bound_for(&Scope::new("t", ""));
    vector.set(DeviceId(12345), Generation::FIRST);
    grown.insert(Scope::new("t", ""), vector);
    let cursor = CursorUpdate::Save(ResumeCursor {
        token: vec![1],
        asked,
    });
    c.apply_page(&db(), a.device(), &[], Some(&grown), "peer", &cursor)
        .unwrap();
    assert!(c.resume_cursor(&db(), "peer").unwrap().is_some());
    let notices = b.announced_notices(&db()).unwrap();
    assert!(c.take_notices(&db(), b.device(), &notices).unwrap().lowered);
    assert!(
        c.resume_cursor(&db(), "peer").unwrap().is_none(),
        "cursors forgotten"
    );
    pull(&c, &a);
    assert_eq!(get(&c, "k2").as_deref(), Some("v2"));
    let lowerings = c.lowerings();
    let again = c.take_notices(&db(), b.device(), &notices).unwrap();
    assert_eq!(again, Taken::default(), "taken once");
    assert_eq!(c.lowerings(), lowerings);
    let higher = Notice {
        old,
        safe: Generation::new(5),
    };
    let taken = c.take_notices(&db(), b.device(), &[higher]).unwrap();
    assert!(taken.notices.is_empty(), "not lower than the one taken");
    let lower = Notice {
        old,
        safe: Generation::NONE,
    };
    let taken = c.take_notices(&db(), b.device(), &[lower]).unwrap();
    assert_eq!(taken.notices, vec![lower], "a lower safe point is new");
    assert_eq!(c.knowledge(&db()).unwrap().max_gen(old), Generation::NONE);
    assert_eq!(c.lowerings(), lowerings + 2);
}

#[test]
fn a_lineage_gets_only_so_many_notices_taken() {
    let (_a, b, c, old) = third_store_after_the_epoch();
    let limit = MAX_TAKEN_PER_LINEAGE as u64;
    for safe in (1..=limit + 1).rev() {
        let notice = Notice {
            old,
            safe: Generation::new(safe),
        };
        let taken = c.take_notices(&db(), b.device(), &[notice]).unwrap();
        assert_eq!(
            taken.notices.len(),
            usize::from(safe > 1),
            "safe point {safe}"
        );
    }
    assert_eq!(c.taken_notices(&db()).unwrap().len(), limit as usize);
}

#[test]
fn a_page_of_a_session_that_asked_before_a_lowering_merges_no_knowledge() {
    let (a, b, c, old) = third_store_after_the_epoch();
    let asked_at = c.lowerings();
    let scopes = [Scope::new("t", "")];
    let known = c.knowledge(&db()).unwrap();
    let request = known.request_for(&scopes, c.device(), Generation::NONE);
    let notices = b.announced_notices(&db()).unwrap();
    c.take_notices(&db(), b.device(), &notices).unwrap();
    // A's page for the request asked before the notice: it skips k2 and claims (old, 2).
    let position = a.start_position(&db(), c.device(), &request).unwrap();
    let page = a
        .read_page(
            &db(),
            &PageRequest {
                initiator: c.device(),
                echoes_from: 0,
                knowledge: &request,
                position,
                max_records: usize::MAX,
                max_bytes: usize::MAX,
            },
        )
        .unwrap();
    let save = CursorUpdate::Save(ResumeCursor {
        token: vec![1],
        asked: request.clone(),
    });
    let from = PageFrom {
        peer: "a".into(),
        cursor: save,
        asked_at: Some(asked_at),
    };
    c.apply_session_page(
        &db(),
        a.device(),
        &LastWriterWins,
        &page.records,
        page.knowledge.as_ref(),
        &from,
    )
    .unwrap();
    assert_eq!(
        c.knowledge(&db()).unwrap().max_gen(old),
        Generation::FIRST,
        "not merged"
    );
    assert!(c.resume_cursor(&db(), "a").unwrap().is_none(), "not saved");
}

#[test]
fn knowledge_of_a_device_left_at_an_epoch_never_rises_above_its_safe_point() {
    let (a, b, c, old) = third_store_after_the_epoch();
    let notices = b.announced_notices(&db()).unwrap();
    c.take_notices(&db(), b.device(), &notices).unwrap();
    // A claims (old, 2) for k2 and C's copy of k3 claims it too: neither raises B's or C's
    // knowledge of the old device, so both keep asking every peer for its records above 1.
    for (to, from) in [(&b, &a), (&b, &c), (&c, &a), (&c, &b)] {
        pull(to, from);
        assert_eq!(to.knowledge(&db()).unwrap().max_gen(old), Generation::FIRST);
    }
    for store in [&b, &c] {
        for key in ["k1", "k2", "k3"] {
            assert!(get(store, key).is_some(), "{key}");
        }
    }
}

/// Found by a break test: B restored from a backup after C collected B's later records, then
/// B wrote as many records again as it lost, so no count showed the reuse, and C held no log
/// entry at B's mark point to compare. C reports the last mark it keeps instead.
#[test]
fn a_responder_that_collected_the_records_at_a_mark_point_reports_its_last_mark() {
    let (b, c) = (
        open(Arc::new(MemoryStorage::new())),
        open(Arc::new(MemoryStorage::new())),
    );
    b.create_database(&db()).unwrap();
    for value in ["1", "2", "3"] {
        put(&b, "k", value);
    }
    pull(&c, &b);
    let me = b.device();
    let mut seen = c.knowledge(&db()).unwrap().bound_for(&Scope::new("t", ""));
    seen.raise(c.device(), c.state(&db()).unwrap().own_generation());
    let mut cut = crate::store::Cut::default();
    cut.shared.insert(Scope::new("t", ""), seen);
    let mut cursor = crate::store::CollectCursor::default();
    while !cursor.done {
        cursor = c.collect_step(&db(), &cut, cursor, 1_000).unwrap().0;
    }
    assert!(
        c.mark_at(&db(), me, Generation::FIRST).unwrap().is_none(),
        "collected"
    );
    assert_eq!(
        c.mark_from(&db(), me, Generation::FIRST).unwrap(),
        b.mark_at(&db(), me, Generation::new(3)).unwrap(),
        "the last mark C keeps, which B compares with its own record at 3"
    );
    assert_eq!(c.mark_from(&db(), me, Generation::new(4)).unwrap(), None);
}
