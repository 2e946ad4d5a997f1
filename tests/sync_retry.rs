//! Retries and resumed catch-ups between embedded nodes on an in-memory network (issue 10,
//! items 5 and 6): a refused link is redialled with backoff, a full receiver costs its sender
//! about a page per retry rather than the backlog, and a catch-up cut halfway resumes after
//! the last page applied.

mod common;

use std::time::Duration;

use syncbase::embedded::{EmbeddedOptions, EmbeddedServer, EmbeddedStorage};
use syncbase::names::{DbName, RowKey, TableName};
use syncbase::rpc::transport::MemoryNetwork;
use syncbase::store::Mutation;
use syncbase::sync::peers::PeerStatus;
use syncbase::sync::responder::PAGE_BYTES;

use common::nodes::{link, options};
use common::{DB, eventually, on_local};

/// Writes `rows` rows of `value_bytes` each on `node`, `batch` rows per commit.
async fn write_backlog(node: &EmbeddedServer, rows: usize, value_bytes: usize, batch: usize) {
    let db = DbName::parse(DB).unwrap();
    node.node().open_database(&db).await.unwrap();
    for start in (0..rows).step_by(batch) {
        let mutations = (start..(start + batch).min(rows))
            .map(|i| Mutation::Put {
                table: TableName::parse("t").unwrap(),
                key: RowKey::parse(&format!("row{i:06}")).unwrap(),
                value: vec![(i % 251) as u8; value_bytes],
            })
            .collect();
        node.node()
            .commit(db.clone(), mutations)
            .await
            .expect("commit");
    }
}

async fn start(
    network: &MemoryNetwork,
    name: &str,
    tune: impl Fn(&mut EmbeddedOptions),
) -> EmbeddedServer {
    let mut options = options(network, name, EmbeddedStorage::Memory);
    tune(&mut options);
    EmbeddedServer::start_with(options)
        .await
        .expect("node starts")
}

fn digest(node: &EmbeddedServer) -> u64 {
    node.node()
        .store()
        .digest(&DbName::parse(DB).unwrap())
        .unwrap()
}

fn status_of(node: &EmbeddedServer, peer: &EmbeddedServer) -> PeerStatus {
    node.node()
        .peers()
        .status(peer.node().identity().fingerprint())
        .unwrap_or_default()
}

#[test]
fn a_peer_removed_on_one_side_is_redialled_with_backoff() {
    on_local(async {
        let network = MemoryNetwork::new();
        let slow_redial = |options: &mut EmbeddedOptions| {
            options.redial_max = Duration::from_secs(1);
        };
        let a = start(&network, "a", slow_redial).await;
        let b = start(&network, "b", slow_redial).await;
        link(&a, &b).await;
        write_backlog(&a, 1, 16, 1).await;
        eventually("b syncs from a", Duration::from_secs(20), || {
            status_of(&b, &a).records_received == 1
        })
        .await;
        b.node()
            .remove_peer(a.node().identity().fingerprint())
            .await
            .unwrap();
        eventually("a is refused by b", Duration::from_secs(20), || {
            status_of(&a, &b)
                .last_error
                .is_some_and(|error| error.contains("NoAccess:"))
        })
        .await;
        // Counting over a window: at a 1 s cap about 4 dials; redialling on every refusal
        // (the fault) made 15-30 a second.
        let before = network.dials("a", "b");
        tokio::time::sleep(Duration::from_secs(4)).await;
        let dials = network.dials("a", "b") - before;
        assert!(dials <= 8, "{dials} dials in 4 s to a peer that refuses");
    });
}

/// The payload bytes a status counts for one row of the backlog: table, key, value and a
/// fixed overhead (`LogRecord::payload_len`).
fn row_payload(value_bytes: usize) -> u64 {
    (1 + "row000000".len() + value_bytes + 64) as u64
}

/// A page's payload bound when rows are `value_bytes` long: the page cap plus one row.
fn page_bound(value_bytes: usize) -> u64 {
    (PAGE_BYTES + value_bytes + 1024) as u64
}

#[test]
fn a_full_receiver_is_resent_at_most_a_page_per_retry() {
    on_local(async {
        let network = MemoryNetwork::new();
        let value_bytes = 32 << 10;
        let a = start(&network, "a", |_| {}).await;
        let b = start(&network, "b", |options| {
            options.storage = EmbeddedStorage::Lmdb;
            options.map_size = 8 << 20;
            options.max_map_size = Some(8 << 20);
            options.redial_max = Duration::from_secs(2);
        })
        .await;
        // 24 MiB: three times what b can hold.
        write_backlog(&a, 768, value_bytes, 64).await;
        link(&a, &b).await;
        eventually("b's store fills up", Duration::from_secs(60), || {
            status_of(&b, &a)
                .last_error
                .is_some_and(|error| error.contains("StorageFull:"))
        })
        .await;
        let dials_before = network.dials("b", "a");
        tokio::time::sleep(Duration::from_secs(6)).await;
        let dials = network.dials("b", "a");
        let sent = status_of(&a, &b).bytes_sent;
        let applied = status_of(&b, &a).records_received * row_payload(value_bytes);
        let wasted = sent - applied;
        // Pushes are ramped (one at first, one more per acknowledgement), so when the first
        // session's page k+1 fails, at most k+1 pages past the k applied were sent; every
        // retry resumes at the failed page, whose push fails before a second is sent: waste
        // is at most k + dials pages (one page of slack added). Starting over re-sent the k
        // applied pages and the failing one on every retry: (k + 1) x dials.
        let pages_applied = applied.div_ceil(page_bound(value_bytes));
        let bound = (pages_applied + dials as u64 + 1) * page_bound(value_bytes);
        assert!(
            wasted <= bound,
            "{wasted} bytes re-sent over {dials} dials (bound {bound}); {applied} applied"
        );
        assert!(
            dials - dials_before <= 6,
            "{} dials in 6 s to a peer that fails every page",
            dials - dials_before
        );
        // b's own full store is reported as b's failure with its fix, never as the peer's
        // ("ConnFail: ... remote exception: StorageFull: ...").
        for _ in 0..40 {
            if let Some(error) = status_of(&b, &a).last_error {
                assert!(
                    error.starts_with("StorageFull:") && !error.contains("remote"),
                    "b's status says: {error}"
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}

#[test]
fn a_catch_up_cut_halfway_resumes_after_the_last_page_applied() {
    on_local(async {
        let network = MemoryNetwork::new();
        let (rows, value_bytes) = (768, 32 << 10);
        let a = start(&network, "a", |_| {}).await;
        let b = start(&network, "b", |_| {}).await;
        write_backlog(&a, rows, value_bytes, 64).await;
        link(&a, &b).await;
        let backlog = rows as u64 * row_payload(value_bytes);
        let applied = || status_of(&b, &a).records_received * row_payload(value_bytes);
        eventually(
            "b holds 60% of the backlog",
            Duration::from_secs(60),
            || applied() * 10 >= backlog * 6,
        )
        .await;
        network.set_link("a", "b", false);
        let applied_at_cut = applied();
        assert!(
            applied_at_cut < backlog,
            "the catch-up ended before the cut; the test needs a larger backlog"
        );
        network.set_link("a", "b", true);
        eventually("b holds the whole backlog", Duration::from_secs(60), || {
            digest(&b) == digest(&a)
        })
        .await;
        // Starting over re-sends everything applied before the cut (at least 60%); resuming
        // re-sends only the pages in flight at the cut (at most the 40% left).
        let wasted = status_of(&a, &b).bytes_sent - backlog;
        assert!(
            wasted < applied_at_cut,
            "{wasted} bytes re-sent after a cut at {applied_at_cut} of {backlog}"
        );
    });
}
