//! Issue 12's full-store recovery, on a node as an app runs it: an embedded LMDB node whose
//! store may hold at most 8 MiB is filled with small rows until a put of one row fails
//! `StorageFull:`; members' knowledge reports still land; then deletes of half the rows succeed (singly and in batches: each adds a
//! tombstone, its DAG node and log entry, more than the small value it frees, so they use
//! the reserve ordinary writes leave, and once that is used up a delete collects the
//! history of the earlier ones and goes on: `Node::delete_collecting`), a collection pass
//! on demand (`Node::collect_now`, what `syncbase gc DB` runs) frees the rest, and puts
//! succeed again: no restart, no config change.

mod common;

use common::on_local;
use syncbase::embedded::{EmbeddedOptions, EmbeddedServer, EmbeddedStorage};
use syncbase::error::Error;
use syncbase::genvec::Knowledge;
use syncbase::names::{DbName, RowKey, TableName};
use syncbase::node::Node;
use syncbase::store::Mutation;

const VALUE_BYTES: usize = 100;
/// Rows per batch when filling and deleting in bulk.
const BATCH: usize = 500;
/// Deletes made one commit each; the rest of the half go in batches.
const SINGLE_DELETES: usize = 100;

fn put(key: &str) -> Mutation {
    Mutation::Put {
        table: TableName::parse("t").unwrap(),
        key: RowKey::parse(key).unwrap(),
        value: vec![b'v'; VALUE_BYTES],
    }
}

fn delete(key: &str) -> Mutation {
    Mutation::Delete {
        table: TableName::parse("t").unwrap(),
        key: RowKey::parse(key).unwrap(),
    }
}

fn key(i: usize) -> String {
    format!("k{i:05}")
}

/// Puts rows from `key(from)` on, `batch` a commit, until a commit fails; returns how many
/// rows were written and the failure.
async fn fill(node: &Node, db: &DbName, from: usize, batch: usize) -> (usize, Error) {
    let mut next = from;
    loop {
        let rows = (next..next + batch).map(|i| put(&key(i))).collect();
        if let Err(error) = node.commit(db.clone(), rows).await {
            return (next - from, error);
        }
        next += batch;
    }
}

#[test]
fn a_node_filled_to_its_maximum_takes_deletes_collects_and_writes_again() {
    on_local(async {
        let mut options = EmbeddedOptions::new(EmbeddedStorage::Lmdb);
        options.map_size = 1 << 20;
        options.max_map_size = Some(8 << 20);
        let server = EmbeddedServer::start_with(options).await.unwrap();
        let node = server.node();
        let db = DbName::parse("db").unwrap();
        node.open_database(&db).await.unwrap();

        let (bulk, _) = fill(node, &db, 0, BATCH).await;
        let (single, full) = fill(node, &db, bulk, 1).await;
        let rows = bulk + single;
        assert!(
            matches!(full, Error::StorageFull(_)),
            "puts end with StorageFull: {full}"
        );
        assert!(
            rows >= 5_000,
            "8 MiB less a 1 MiB reserve holds {rows} rows"
        );

        // Members' knowledge reports, what lets collection advance, still land (200 of
        // them, so that they need pages the ordinary writes left none of).
        for member in 0..200 {
            node.store()
                .note_member_knowledge(&db, &format!("{member:064x}"), &Knowledge::new())
                .expect("a report of a member's knowledge may use the reserve");
        }

        let half = rows / 2;
        for i in 0..SINGLE_DELETES {
            let existed = node.commit(db.clone(), vec![delete(&key(i))]).await;
            assert_eq!(existed.unwrap(), vec![true], "single delete {i} succeeds");
        }
        for start in (SINGLE_DELETES..half).step_by(BATCH) {
            let batch: Vec<Mutation> = (start..half.min(start + BATCH))
                .map(|i| delete(&key(i)))
                .collect();
            let existed = node.commit(db.clone(), batch).await;
            assert!(existed.unwrap().iter().all(|existed| *existed));
        }

        let done = node.collect_now(&db).await.unwrap();
        let freed = done.pass.collected;
        assert!(
            freed.records > 0 && freed.bytes > 0,
            "the deletes' log entries go, each tombstone left as one key (the deleted rows' \
             older versions went while the deletes made room): {freed:?}"
        );
        let live = node.store().live_data(&db).unwrap();
        assert_eq!(live.rows as usize, rows - half, "every delete took effect");
        assert!(
            done.after.used_bytes < done.before.used_bytes,
            "the store's used bytes fall: {:?} -> {:?}",
            done.before,
            done.after
        );

        let (written, _) = fill(node, &db, rows + 1, BATCH).await;
        assert!(
            written >= half / 2,
            "after collection puts succeed again: {written} rows fit, {half} were deleted"
        );
        assert!(node.store().usage().unwrap().map_bytes <= 8 << 20);
    });
}
