//! Store tests on the memory backend: row operations, and sync between two or three stores
//! by hand (read a page from one, apply it to another), without any network.

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

fn table() -> TableName {
    TableName::parse("t").unwrap()
}

fn put(key: &str, value: &[u8]) -> Mutation {
    Mutation::Put {
        table: table(),
        key: RowKey::parse(key).unwrap(),
        value: value.to_vec(),
    }
}

fn delete(key: &str) -> Mutation {
    Mutation::Delete {
        table: table(),
        key: RowKey::parse(key).unwrap(),
    }
}

fn get(store: &Store, key: &str) -> Option<Vec<u8>> {
    store
        .get(&db(), &table(), &RowKey::parse(key).unwrap())
        .unwrap()
}

const ALL: PageLimit = PageLimit {
    items: usize::MAX,
    bytes: usize::MAX,
};

/// Pulls everything `from` has for scope `t` into `to`, as one session would.
fn pull(to: &Store, from: &Store) -> Applied {
    super::test_sync::pull(to, from, &db(), &[Scope::new("t", "")])
}

#[test]
fn commits_report_which_rows_existed_and_deletes_leave_no_row() {
    let store = store();
    assert_eq!(store.commit(&db(), &[put("k", b"1")]).unwrap(), [false]);
    assert_eq!(store.commit(&db(), &[put("k", b"2")]).unwrap(), [true]);
    assert_eq!(get(&store, "k").as_deref(), Some(&b"2"[..]));
    assert_eq!(
        store.commit(&db(), &[delete("k"), delete("k")]).unwrap(),
        [true, false]
    );
    assert_eq!(get(&store, "k"), None);
    assert_eq!(store.commit(&db(), &[delete("never")]).unwrap(), [false]);
    assert_eq!(
        store.state(&db()).unwrap().own_generation(),
        Generation::new(5),
        "every delete is logged, of a row absent here too (as a tombstone)"
    );
}

#[test]
fn a_later_delete_of_a_row_never_seen_here_wins_over_an_earlier_put() {
    let (a, b) = (store(), store());
    a.commit(&db(), &[put("k2", b"from a")]).unwrap();
    assert_eq!(b.commit(&db(), &[delete("k2")]).unwrap(), [false]);
    pull(&a, &b);
    pull(&b, &a);
    assert_eq!(get(&a, "k2"), None, "b's delete came later");
    assert_eq!(get(&b, "k2"), None);
    assert_eq!(a.digest(&db()).unwrap(), b.digest(&db()).unwrap());
}

#[test]
fn a_later_delete_in_a_batch_of_a_row_never_seen_here_wins_too() {
    let (a, b) = (store(), store());
    a.commit(&db(), &[put("k2", b"from a"), put("k3", b"from a")])
        .unwrap();
    b.commit(&db(), &[put("other", b"b"), delete("k2"), delete("k3")])
        .unwrap();
    pull(&b, &a);
    pull(&a, &b);
    for store in [&a, &b] {
        assert_eq!(get(store, "k2"), None);
        assert_eq!(get(store, "k3"), None);
        assert_eq!(get(store, "other").as_deref(), Some(&b"b"[..]));
    }
    assert_eq!(a.digest(&db()).unwrap(), b.digest(&db()).unwrap());
}

#[test]
fn scans_page_in_key_order_and_skip_deleted_rows() {
    let store = store();
    let rows: Vec<_> = (0..10).map(|i| put(&format!("k{i}"), b"v")).collect();
    store.commit(&db(), &rows).unwrap();
    store.commit(&db(), &[delete("k3")]).unwrap();
    let prefix = KeyPrefix::parse("k").unwrap();
    let limit = PageLimit {
        items: 4,
        bytes: usize::MAX,
    };
    let (mut seen, mut after) = (Vec::new(), None::<String>);
    loop {
        let page = store
            .scan_page(&db(), &table(), &prefix, after.as_deref(), limit)
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.key.clone());
        seen.extend(page.into_iter().map(|row| row.key));
    }
    let expected: Vec<_> = (0..10)
        .filter(|i| *i != 3)
        .map(|i| format!("k{i}"))
        .collect();
    assert_eq!(seen, expected);
    assert_eq!(
        store
            .scan_page(&db(), &table(), &KeyPrefix::parse("z").unwrap(), None, ALL)
            .unwrap(),
        []
    );
}

#[test]
fn databases_are_listed_in_name_order() {
    let store = store();
    for name in ["zeta", "alpha"] {
        store
            .create_database(&DbName::parse(name).unwrap())
            .unwrap();
    }
    assert!(
        store
            .has_database(&DbName::parse("alpha").unwrap())
            .unwrap()
    );
    assert_eq!(store.list_databases().unwrap(), ["alpha", "zeta"]);
}

#[test]
fn records_flow_one_way_and_a_second_pull_sends_nothing() {
    let (a, b) = (store(), store());
    a.commit(&db(), &[put("x", b"1"), put("y", b"2")]).unwrap();
    a.commit(&db(), &[delete("y")]).unwrap();
    assert_eq!(pull(&b, &a).records, 3);
    assert_eq!(get(&b, "x").as_deref(), Some(&b"1"[..]));
    assert_eq!(get(&b, "y"), None);
    assert_eq!(a.digest(&db()).unwrap(), b.digest(&db()).unwrap());
    let again = pull(&b, &a);
    assert_eq!(
        (again.records, again.duplicates),
        (0, 0),
        "knowledge stops a resend"
    );
    assert_eq!(
        pull(&a, &b).records,
        0,
        "a node's own records never come back"
    );
}

#[test]
fn applying_a_page_twice_changes_nothing() {
    let (a, b) = (store(), store());
    a.commit(&db(), &[put("x", b"1")]).unwrap();
    let knowledge =
        Knowledge::new().request_for(&[Scope::new("t", "")], b.device(), Generation::NONE);
    let request = PageRequest {
        initiator: b.device(),
        echoes_from: 0,
        knowledge: &knowledge,
        position: 0,
        max_records: 10,
        max_bytes: usize::MAX,
    };
    let page = a.read_page(&db(), &request).unwrap();
    assert_eq!(
        b.apply(&db(), a.device(), &page.records, None)
            .unwrap()
            .records,
        1
    );
    let before = b.digest(&db()).unwrap();
    assert_eq!(
        b.apply(&db(), a.device(), &page.records, None)
            .unwrap()
            .duplicates,
        1
    );
    assert_eq!(b.digest(&db()).unwrap(), before);
}

#[test]
fn concurrent_writes_converge_on_the_later_one_and_the_loser_stays_in_the_dag() {
    let (a, b) = (store(), store());
    a.commit(&db(), &[put("k", b"from a")]).unwrap();
    b.commit(&db(), &[put("k", b"from b")]).unwrap();
    let resolutions = pull(&a, &b).resolutions;
    assert_eq!(resolutions.len(), 1);
    assert_eq!(
        resolutions[0].ancestor, None,
        "two first writes share no history"
    );
    assert_eq!(
        get(&a, "k").as_deref(),
        Some(&b"from b"[..]),
        "b wrote last"
    );
    pull(&b, &a);
    assert_eq!(get(&b, "k").as_deref(), Some(&b"from b"[..]));
    assert_eq!(a.digest(&db()).unwrap(), b.digest(&db()).unwrap());
    let loser = a.state(&db()).unwrap();
    assert_eq!(
        loser.own_generation(),
        Generation::new(2),
        "a logged its write and the link that resolved it"
    );
}

/// The opposite of last-writer-wins, for tests: the earliest (HLC, version) wins. It notes
/// the conflicts it settled.
#[derive(Default)]
struct FirstWriterWins {
    seen: std::sync::Mutex<Vec<Conflict>>,
}

impl Resolver for FirstWriterWins {
    fn name(&self) -> &'static str {
        "first-writer-wins"
    }

    fn resolve(&self, conflict: &Conflict) -> Result<Decision> {
        self.seen.lock().unwrap().push(conflict.clone());
        let first = conflict.heads.iter().min_by_key(|h| (h.hlc, h.version));
        Ok(Decision::Winner(
            first.expect("a conflict has heads").version,
        ))
    }
}

#[test]
fn stores_settle_a_conflict_by_the_resolver_they_are_given() {
    let (a, b) = (store(), store());
    a.commit(&db(), &[put("k", b"from a")]).unwrap();
    b.commit(&db(), &[put("k", b"from b")]).unwrap();
    let (scopes, resolver) = ([Scope::new("t", "")], FirstWriterWins::default());
    let pull = |to: &Store, from: &Store| {
        super::test_sync::pull_resolved(to, from, &db(), &scopes, &resolver)
    };
    let winner = pull(&a, &b).resolutions[0].winner;
    pull(&b, &a);
    let seen = resolver.seen.lock().unwrap().clone();
    assert_eq!(
        seen.len(),
        1,
        "b takes a's link: no conflict left to settle"
    );
    let lww = LastWriterWins.resolve(&seen[0]).unwrap();
    assert_ne!(lww, Decision::Winner(winner), "the two rules disagree here");
    let value = seen[0].heads.iter().find(|h| h.version == winner).unwrap();
    for store in [&a, &b] {
        assert_eq!(head(store, "k"), winner);
        assert_eq!(get(store, "k"), value.value);
    }
    assert_eq!(a.digest(&db()).unwrap(), b.digest(&db()).unwrap());
}

#[test]
fn a_resolver_is_given_every_head_and_their_ancestor_with_values_and_tombstones() {
    let (a, b) = (store(), store());
    a.commit(&db(), &[put("k", b"base")]).unwrap();
    pull(&b, &a);
    a.commit(&db(), &[put("k", b"a1")]).unwrap();
    b.commit(&db(), &[delete("k")]).unwrap();
    let (from_a, from_b) = (head(&a, "k"), head(&b, "k"));
    let (scopes, resolver) = ([Scope::new("t", "")], FirstWriterWins::default());
    super::test_sync::pull_resolved(&a, &b, &db(), &scopes, &resolver);
    let seen = resolver.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let mut heads: Vec<_> = seen[0]
        .heads
        .iter()
        .map(|h| (h.version, h.device, h.value.clone()))
        .collect();
    heads.sort();
    let mut expected = vec![
        (from_a, a.device(), Some(b"a1".to_vec())),
        (from_b, b.device(), None),
    ];
    expected.sort();
    assert_eq!(heads, expected, "b's delete is a tombstone");
    let ancestor = seen[0]
        .ancestor
        .as_ref()
        .expect("both wrote on top of base");
    assert_eq!(ancestor.value.as_deref(), Some(&b"base"[..]));
    assert_eq!(ancestor.device, a.device());
}

/// A broken rule, for tests: it names a version that is none of the heads.
struct PicksNoHead;

impl Resolver for PicksNoHead {
    fn name(&self) -> &'static str {
        "picks-no-head"
    }

    fn resolve(&self, _: &Conflict) -> Result<Decision> {
        Ok(Decision::Winner(Version(0)))
    }
}

#[test]
fn a_resolver_picking_no_head_fails_the_page_and_commits_nothing() {
    let (a, b) = (store(), store());
    a.commit(&db(), &[put("k", b"from a")]).unwrap();
    b.commit(&db(), &[put("k", b"from b")]).unwrap();
    let before = a.digest(&db()).unwrap();
    let knowledge = a.knowledge(&db()).unwrap();
    let request = PageRequest {
        initiator: a.device(),
        echoes_from: 0,
        knowledge: &knowledge.request_for(&[Scope::new("t", "")], a.device(), Generation::FIRST),
        position: 0,
        max_records: 10,
        max_bytes: usize::MAX,
    };
    let page = b.read_page(&db(), &request).unwrap();
    let keep = PageFrom {
        peer: String::new(),
        cursor: CursorUpdate::Keep,
        asked_at: None,
    };
    let error = a
        .apply_session_page(&db(), b.device(), &PicksNoHead, &page.records, None, &keep)
        .unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("Internal: resolver picks-no-head"),
        "{error}"
    );
    assert_eq!(a.digest(&db()).unwrap(), before);
}

#[test]
fn a_record_relays_through_a_middle_node() {
    let (a, b, c) = (store(), store(), store());
    a.commit(&db(), &[put("k", b"v")]).unwrap();
    pull(&b, &a);
    assert_eq!(pull(&c, &b).records, 1);
    assert_eq!(get(&c, "k").as_deref(), Some(&b"v"[..]));
    assert_eq!(
        pull(&b, &c).records,
        0,
        "c does not send b what came from b"
    );
}

#[test]
fn a_record_logged_after_a_later_generation_of_its_device_is_still_sent() {
    // a writes s:k (generation 1) then t:k (generation 2); b takes table t first and table s
    // later (a syncgroup joined), so b logs generation 2 before generation 1.
    let (a, b, c) = (store(), store(), store());
    let other = Mutation::Put {
        table: TableName::parse("s").unwrap(),
        key: RowKey::parse("k").unwrap(),
        value: b"s".to_vec(),
    };
    a.commit(&db(), &[other]).unwrap();
    a.commit(&db(), &[put("k", b"t")]).unwrap();
    let t = [Scope::new("t", "")];
    assert_eq!(super::test_sync::pull(&b, &a, &db(), &t).records, 1);
    let s = [Scope::new("s", "")];
    assert_eq!(super::test_sync::pull(&b, &a, &db(), &s).records, 1);
    assert_eq!(
        super::test_sync::pull(&c, &b, &db(), &t).records,
        1,
        "c, knowing nothing of a, gets a's generation 2 though b logged generation 1 after it"
    );
    assert_eq!(get(&c, "k").as_deref(), Some(&b"t"[..]));
}

fn head(store: &Store, key: &str) -> Version {
    let key = DbKeys::new("db").row("t", key);
    let bytes = store.storage.read().unwrap().get(&key).unwrap().unwrap();
    decode::<RowHead>(&bytes, "row head").unwrap().version
}

#[test]
fn a_conflict_names_both_heads_and_their_nearest_common_ancestor() {
    let (a, b) = (store(), store());
    a.commit(&db(), &[put("k", b"base")]).unwrap();
    pull(&b, &a);
    let base = head(&a, "k");
    a.commit(&db(), &[put("k", b"a1")]).unwrap();
    a.commit(&db(), &[put("k", b"a2")]).unwrap();
    b.commit(&db(), &[put("k", b"b1")]).unwrap();
    let (local, remote) = (head(&a, "k"), head(&b, "k"));
    let resolutions = pull(&a, &b).resolutions;
    assert_eq!(resolutions.len(), 1);
    let resolution = &resolutions[0];
    assert_eq!(
        (resolution.local, resolution.remote.as_slice()),
        (Some(local), &[remote][..])
    );
    assert_eq!(resolution.ancestor, Some(base));
    assert_eq!(resolution.winner, remote, "b wrote last");
    pull(&b, &a);
    assert_eq!(a.digest(&db()).unwrap(), b.digest(&db()).unwrap());

    a.commit(&db(), &[put("k", b"after the merge, on a")])
        .unwrap();
    b.commit(&db(), &[put("k", b"after the merge, on b")])
        .unwrap();
    let resolutions = pull(&a, &b).resolutions;
    assert_eq!(
        resolutions[0].ancestor,
        Some(remote),
        "both wrote on top of the merged head"
    );
}

#[test]
fn a_conflict_whose_common_ancestor_never_came_here_is_still_resolved() {
    let (a, b, c) = (store(), store(), store());
    a.commit(&db(), &[put("k", b"base")]).unwrap();
    pull(&b, &a);
    let base = head(&a, "k");
    a.commit(&db(), &[put("k", b"a1")]).unwrap();
    b.commit(&db(), &[put("k", b"b1")]).unwrap();
    // c gets both children of `base` but not `base` itself (as a node that met the row
    // through two peers, each page without the parent, would).
    let children = |from: &Store| {
        let knowledge =
            Knowledge::new().request_for(&[Scope::new("t", "")], c.device(), Generation::NONE);
        let request = PageRequest {
            initiator: c.device(),
            echoes_from: 0,
            knowledge: &knowledge,
            position: 0,
            max_records: 10,
            max_bytes: usize::MAX,
        };
        let mut records = from.read_page(&db(), &request).unwrap().records;
        records.retain(|record| record.version != base);
        records
    };
    c.apply(&db(), a.device(), &children(&a), None).unwrap();
    let applied = c.apply(&db(), b.device(), &children(&b), None).unwrap();
    assert_eq!(applied.resolutions.len(), 1);
    assert_eq!(applied.resolutions[0].ancestor, Some(base));
    pull(&a, &c);
    pull(&b, &c);
    pull(&a, &b);
    assert_eq!(a.digest(&db()).unwrap(), c.digest(&db()).unwrap());
    assert_eq!(b.digest(&db()).unwrap(), c.digest(&db()).unwrap());
}

#[test]
fn a_page_keeps_an_app_batch_whole() {
    let (a, b) = (store(), store());
    a.commit(&db(), &[put("solo", b"1")]).unwrap();
    let batch: Vec<_> = (0..5).map(|i| put(&format!("b{i}"), b"v")).collect();
    a.commit(&db(), &batch).unwrap();
    a.commit(&db(), &[put("after", b"2")]).unwrap();
    let knowledge =
        Knowledge::new().request_for(&[Scope::new("t", "")], b.device(), Generation::NONE);
    let request = PageRequest {
        initiator: b.device(),
        echoes_from: 0,
        knowledge: &knowledge,
        position: 0,
        max_records: 2,
        max_bytes: usize::MAX,
    };
    let first = a.read_page(&db(), &request).unwrap();
    let rows: Vec<_> = first
        .records
        .iter()
        .map(|record| record.row.as_str())
        .collect();
    assert_eq!(
        rows,
        ["solo", "b0", "b1", "b2", "b3", "b4"],
        "the batch is not split"
    );
    let request = PageRequest {
        position: first.next_position,
        ..request
    };
    let second = a.read_page(&db(), &request).unwrap();
    let rows: Vec<_> = second
        .records
        .iter()
        .map(|record| record.row.as_str())
        .collect();
    assert_eq!(rows, ["after"]);
    assert!(second.knowledge.is_some());
}

/// Reads the whole feed of table `t` from `from` in pages of `limit`; returns every page.
fn feed_pages(store: &Store, from: u64, limit: PageLimit) -> Vec<FeedPage> {
    let (mut pages, mut from) = (Vec::new(), from);
    let prefix = KeyPrefix::parse("").unwrap();
    loop {
        let page = store
            .read_changes(&db(), from, Some(&table()), &prefix, limit)
            .unwrap();
        assert!(page.next >= from);
        from = page.next;
        let done = !page.full;
        pages.push(page);
        if done {
            return pages;
        }
    }
}

#[test]
fn feed_pages_stop_at_their_byte_cap_without_skipping_or_repeating_a_change() {
    let store = store();
    let other = |key: &str| Mutation::Put {
        table: TableName::parse("other").unwrap(),
        key: RowKey::parse(key).unwrap(),
        value: vec![1; 900],
    };
    store.commit(&db(), &[put("a", &[1; 300])]).unwrap();
    store
        .commit(&db(), &[other("x"), put("b", &[2; 300])])
        .unwrap();
    store.commit(&db(), &[put("huge", &[3; 2000])]).unwrap();
    store
        .commit(&db(), &[delete("a"), put("c", &[4; 10])])
        .unwrap();
    store.commit(&db(), &[other("y")]).unwrap();
    let whole = feed_pages(&store, 0, ALL);
    assert_eq!(whole.len(), 1);
    let expected: Vec<_> = whole[0]
        .items
        .iter()
        .map(|item| (item.sequence, item.change.row.clone()))
        .collect();
    assert_eq!(expected.len(), 5, "{expected:?}");

    let capped = PageLimit {
        items: usize::MAX,
        bytes: 500,
    };
    let pages = feed_pages(&store, 0, capped);
    let got: Vec<_> = pages
        .iter()
        .flat_map(|page| page.items.iter())
        .map(|item| (item.sequence, item.change.row.clone()))
        .collect();
    assert_eq!(got, expected, "every change once, in order");
    for page in &pages {
        let bytes: usize = page
            .items
            .iter()
            .map(|item| item.change.row.len() + item.value.len())
            .sum();
        let last = page
            .items
            .last()
            .map_or(0, |i| i.change.row.len() + i.value.len());
        assert!(
            bytes - last < 500,
            "only the last item crosses the cap: {bytes}"
        );
    }
    let huge = pages
        .iter()
        .find(|page| page.items.iter().any(|item| item.change.row == "huge"))
        .unwrap();
    assert_eq!(huge.items.len(), 1, "an item over the cap goes alone");
    assert!(pages.len() >= 3, "the cap split the feed: {}", pages.len());

    // Resuming from any page's `next` reads exactly what follows it.
    for (i, page) in pages.iter().enumerate() {
        let rest: Vec<_> = feed_pages(&store, page.next, ALL)
            .into_iter()
            .flat_map(|page| page.items)
            .map(|item| (item.sequence, item.change.row))
            .collect();
        let after: usize = pages[..=i].iter().map(|page| page.items.len()).sum();
        assert_eq!(rest, expected[after..], "resuming after page {i}");
    }
}

#[test]
fn feed_pages_look_at_no_more_changes_than_their_row_cap() {
    let store = store();
    for i in 0..5 {
        store.commit(&db(), &[put(&format!("k{i}"), b"v")]).unwrap();
    }
    let limit = PageLimit {
        items: 2,
        bytes: usize::MAX,
    };
    let pages = feed_pages(&store, 0, limit);
    let sizes: Vec<_> = pages.iter().map(|page| page.items.len()).collect();
    assert_eq!(sizes, [2, 2, 1]);
    assert!(pages[..2].iter().all(|page| page.full));
}

/// Puts of `count` rows named `{name}{i}`, each `bytes` long in all (table, key and value).
fn sized_puts(name: &str, count: usize, bytes: usize) -> Vec<Mutation> {
    (0..count)
        .map(|i| {
            let key = format!("{name}{i:0>4}");
            put(&key, &vec![1; bytes - key.len() - table().as_str().len()])
        })
        .collect()
}

#[test]
fn a_page_never_splits_the_largest_legal_batch_and_stays_within_its_bound() {
    let (a, b) = (store(), store());
    a.commit(&db(), &sized_puts("x", 1, 1 << 20)).unwrap();
    let each = crate::names::MAX_BATCH_BYTES / 5;
    let batch = sized_puts("b", 5, each);
    a.commit(&db(), &batch).unwrap();
    a.commit(&db(), &sized_puts("y", 1, 1 << 20)).unwrap();
    let scopes = [Scope::new("t", "")];
    let knowledge = b
        .knowledge(&db())
        .unwrap()
        .request_for(&scopes, b.device(), Generation::NONE);
    let mut position = 0;
    let mut pages = Vec::new();
    loop {
        let request = PageRequest {
            initiator: b.device(),
            echoes_from: 0,
            knowledge: &knowledge,
            position,
            max_records: crate::paging::DATA.limit.items,
            max_bytes: crate::paging::DATA.limit.bytes,
        };
        let page = a.read_page(&db(), &request).unwrap();
        position = page.next_position;
        let rows: Vec<_> = page.records.iter().map(|r| r.row.clone()).collect();
        let bytes: usize = page.records.iter().map(LogRecord::payload_len).sum();
        assert!(bytes <= crate::paging::DATA.max_payload());
        pages.push(rows);
        if page.knowledge.is_some() {
            break;
        }
    }
    let whole = pages
        .iter()
        .find(|rows| rows.iter().any(|row| row.starts_with('b')))
        .unwrap();
    assert_eq!(
        whole.iter().filter(|row| row.starts_with('b')).count(),
        5,
        "the batch is in one page: {pages:?}"
    );
}

#[test]
fn a_batch_over_the_byte_limit_fails_naming_the_limit_and_writes_nothing() {
    let store = store();
    let each = crate::names::MAX_BATCH_BYTES / 4 + 1;
    let error = store.commit(&db(), &sized_puts("b", 4, each)).unwrap_err();
    assert_eq!(error.id(), "InvalidArgument");
    assert!(error.to_string().contains("MAX_BATCH_BYTES"), "{error}");
    assert_eq!(get(&store, "b0000"), None);
    assert_eq!(
        store.state(&db()).unwrap().own_generation(),
        Generation::NONE
    );
    let legal = sized_puts("c", 4, crate::names::MAX_BATCH_BYTES / 4);
    store.commit(&db(), &legal).unwrap();
}

/// A syncgroup of `db()` named `h:1/{suffix}` whose version's wire estimate is about
/// `bytes` (its members make it large).
fn large_syncgroup(id: u64, suffix: &str, bytes: usize) -> crate::syncgroup::Syncgroup {
    use crate::identity::Fingerprint;
    use crate::syncgroup::{MemberInfo, Permissions, Spec, Status, Syncgroup, SyncgroupId};
    let fingerprint = |i: usize| Fingerprint::parse(&format!("{i:0>64x}")).unwrap();
    let member = MemberInfo {
        sync_priority: 0,
        is_server: false,
        device: DeviceId(1),
        address: String::new(),
        name: String::new(),
    };
    Syncgroup {
        id: SyncgroupId(id),
        name: crate::syncgroup::SyncgroupName::parse(&format!("h:1/{suffix}")).unwrap(),
        spec_version: "1".into(),
        spec: Spec {
            description: String::new(),
            perms: Permissions::only(&fingerprint(0)),
            prefixes: vec![Scope::new("t", suffix)],
            mount_tables: vec![],
            is_private: false,
        },
        creator: fingerprint(0),
        db: db().as_str().into(),
        status: Status::Running,
        joiners: (0..bytes / 2 / 70)
            .map(|i| (fingerprint(i), member.clone()))
            .collect(),
        former_writers: Default::default(),
        former_lineages: Default::default(),
    }
}

#[test]
fn syncgroup_pages_hold_what_fits_and_claim_knowledge_only_of_what_they_settle() {
    use crate::syncgroup::{LocalState, SyncgroupId};
    let store = store();
    let each = crate::paging::SYNCGROUPS.limit.bytes * 2 / 5;
    store
        .syncgroup_txn(|txn| {
            for (id, suffix) in [(1, "a"), (2, "b"), (3, "c")] {
                txn.write_version(large_syncgroup(id, suffix, each), LocalState::default())?;
            }
            Ok(())
        })
        .unwrap();
    let mut wanted: SyncgroupKnowledge = (1..=3)
        .map(|id| (SyncgroupId(id), Default::default()))
        .collect();
    let first = store.syncgroup_deltas(&db(), &wanted).unwrap();
    assert!(
        first.more,
        "three versions of 2/5 MiB do not fit one 1 MiB page"
    );
    let sent: Vec<_> = first.records.iter().map(|record| record.sg.id).collect();
    assert_eq!(sent, [SyncgroupId(1), SyncgroupId(2)]);
    let claimed: Vec<_> = first.knowledge.keys().copied().collect();
    assert_eq!(claimed, sent, "no knowledge of the version left out");
    for (id, vector) in &first.knowledge {
        wanted.get_mut(id).unwrap().merge(vector);
    }
    let second = store.syncgroup_deltas(&db(), &wanted).unwrap();
    assert!(!second.more);
    let sent: Vec<_> = second.records.iter().map(|record| record.sg.id).collect();
    assert_eq!(sent, [SyncgroupId(3)]);
    assert_eq!(second.knowledge.len(), 3);
}

#[test]
fn a_pages_knowledge_is_kept_as_the_members_report_though_it_adds_nothing_here() {
    let (a, b, c) = (store(), store(), store());
    c.commit(&db(), &[put("k", b"from c")]).unwrap();
    pull(&a, &c);
    pull(&b, &c);
    let reported = b.knowledge(&db()).unwrap();
    a.apply_page(
        &db(),
        b.device(),
        &[],
        Some(&reported),
        "b",
        &CursorUpdate::Keep,
    )
    .unwrap();
    let reports = a.member_report(&db(), "b").unwrap();
    let last = reports.reports.last().map(|report| &report.knowledge);
    assert_eq!(last, Some(&reported), "b's knowledge is its report");
}
