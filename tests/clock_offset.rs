//! Peer clock offsets (`rpc::clock`) between embedded nodes over TLS and Cap'n Proto: a node
//! whose clock runs 5 s ahead is measured so by its fellow member, whichever side dialled,
//! and the figure reaches the status report (`/status.json`'s `clock_offset_ms`).

mod common;

use std::time::Duration;

use syncbase::http::status::StatusReport;
use syncbase::rpc::transport::MemoryNetwork;
use syncbase::syncgroup::access::Level;

use common::members::{create_syncgroup, join_by_invite};
use common::nodes::start;
use common::{eventually, on_local};

const AHEAD_NANOS: i64 = 5_000_000_000;

#[test]
fn a_member_whose_clock_runs_ahead_is_measured_ahead_by_the_others() {
    on_local(async {
        let network = MemoryNetwork::new();
        let a = start(&network, "a:1").await;
        let b = start(&network, "b:1").await;
        b.node().store().clock().set_skew_nanos(AHEAD_NANOS);
        let name = create_syncgroup(&a, "sg", "t").await;
        join_by_invite(&a, &b, &name, Level::ReadWrite).await;
        let (a_id, b_id) = (
            a.node().identity().fingerprint().clone(),
            b.node().identity().fingerprint().clone(),
        );
        let offset = |node: &syncbase::embedded::EmbeddedServer, peer| {
            node.node()
                .peers()
                .status(peer)
                .and_then(|status| status.clock_offset_nanos)
        };
        let near = |measured: Option<i64>, expected: i64| {
            measured.is_some_and(|nanos| (nanos - expected).abs() < 500_000_000)
        };
        eventually("A to measure B 5 s ahead", Duration::from_secs(15), || {
            near(offset(&a, &b_id), AHEAD_NANOS)
        })
        .await;
        eventually("B to measure A 5 s behind", Duration::from_secs(15), || {
            near(offset(&b, &a_id), -AHEAD_NANOS)
        })
        .await;
        let report = StatusReport::gather(a.node()).unwrap();
        let shown = report.peers[0].clock_offset_ms.expect("measured");
        assert!((shown - 5_000.0).abs() < 500.0, "{shown} ms");
    });
}
