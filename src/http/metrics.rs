//! `/metrics`: a [`StatusReport`] in the Prometheus text format (version 0.0.4, through
//! `prometheus-client`), every family with its HELP line. Per peer (labels `peer`, the
//! fingerprint, and `address`): records and bytes each way, rounds, conflicts settled,
//! refused records, catch-ups (counters since the node started), connected and pending each
//! way (gauges). Per syncgroup (labels `syncgroup`, `database`): members, pending, proposed,
//! and the same counters summed over the peers it is shared with (a peer in two syncgroups
//! counts in both). Node-wide: proposals waiting and the store's used bytes.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::status::{PeerReport, StatusReport};

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabels {
    peer: String,
    address: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SyncgroupLabels {
    syncgroup: String,
    database: String,
}

/// A peer counter: its name (without `_total`), its help, and the figure it reads.
type Figure = (&'static str, &'static str, fn(&PeerReport) -> u64);

const COUNTERS: [Figure; 8] = [
    (
        "records_received",
        "Records received from the peer (new to this node)",
        |p| p.records_received,
    ),
    (
        "bytes_received",
        "Bytes of records received from the peer",
        |p| p.bytes_received,
    ),
    ("records_sent", "Records sent to the peer", |p| {
        p.records_sent
    }),
    ("bytes_sent", "Bytes of records sent to the peer", |p| {
        p.bytes_sent
    }),
    (
        "rounds",
        "Sync rounds with the peer that reached the end of its log",
        |p| p.rounds,
    ),
    (
        "conflicts_resolved",
        "Conflicts settled applying the peer's records",
        |p| p.conflicts_resolved,
    ),
    (
        "records_refused",
        "Records from the peer dropped: their writer held no Write permission",
        |p| p.records_refused,
    ),
    ("catch_ups", "Catch-ups by state from the peer", |p| {
        p.catch_ups
    }),
];

const GAUGES: [Figure; 3] = [
    (
        "connected",
        "1 while an outgoing session to the peer is up",
        |p| u64::from(p.connected),
    ),
    (
        "pending_in_records",
        "Log entries the peer had not examined for this node at its last push",
        |p| p.pending_in,
    ),
    (
        "pending_out_records",
        "Log entries this node has not examined for the peer yet",
        |p| p.pending_out,
    ),
];

/// Encodes `report` in the text format.
pub fn render(report: &StatusReport) -> String {
    let mut registry = Registry::with_prefix("syncbase");
    peer_metrics(&mut registry, report);
    syncgroup_metrics(&mut registry, report);
    node_metrics(&mut registry, report);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)
        .expect("writing to a String does not fail");
    text
}

fn peer_labels(peer: &PeerReport) -> PeerLabels {
    PeerLabels {
        peer: peer.fingerprint.clone(),
        address: peer.address.clone(),
    }
}

fn peer_metrics(registry: &mut Registry, report: &StatusReport) {
    for (name, help, read) in COUNTERS {
        let family = Family::<PeerLabels, Counter>::default();
        for peer in &report.peers {
            family.get_or_create(&peer_labels(peer)).inc_by(read(peer));
        }
        registry.register(format!("peer_{name}"), help, family);
    }
    for (name, help, read) in GAUGES {
        let family = Family::<PeerLabels, Gauge>::default();
        for peer in &report.peers {
            family
                .get_or_create(&peer_labels(peer))
                .set(clamp(read(peer)));
        }
        registry.register(format!("peer_{name}"), help, family);
    }
    let offsets = Family::<PeerLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    for peer in &report.peers {
        if let Some(ms) = peer.clock_offset_ms {
            offsets.get_or_create(&peer_labels(peer)).set(ms / 1e3);
        }
    }
    registry.register(
        "peer_clock_offset_seconds",
        "The peer's clock minus this node's at the latest GetTime exchange (peers measured only)",
        offsets,
    );
}

fn syncgroup_metrics(registry: &mut Registry, report: &StatusReport) {
    let members = Family::<SyncgroupLabels, Gauge>::default();
    let pending = Family::<SyncgroupLabels, Gauge>::default();
    let proposed = Family::<SyncgroupLabels, Gauge>::default();
    let counters: Vec<_> = COUNTERS
        .iter()
        .map(|_| Family::<SyncgroupLabels, Counter>::default())
        .collect();
    let pending_each_way: Vec<_> = GAUGES[1..]
        .iter()
        .map(|_| Family::<SyncgroupLabels, Gauge>::default())
        .collect();
    for sg in &report.syncgroups {
        let labels = SyncgroupLabels {
            syncgroup: sg.name.clone(),
            database: sg.database.clone(),
        };
        members
            .get_or_create(&labels)
            .set(clamp(sg.members.len() as u64));
        pending.get_or_create(&labels).set(i64::from(sg.pending));
        proposed
            .get_or_create(&labels)
            .set(i64::from(sg.status == "publish-pending"));
        let shared = report.peers.iter().filter(|peer| {
            sg.members
                .iter()
                .any(|member| !member.is_self && member.fingerprint == peer.fingerprint)
        });
        for peer in shared {
            for ((_, _, read), family) in COUNTERS.iter().zip(&counters) {
                family.get_or_create(&labels).inc_by(read(peer));
            }
            for ((_, _, read), family) in GAUGES[1..].iter().zip(&pending_each_way) {
                family.get_or_create(&labels).inc_by(clamp(read(peer)));
            }
        }
    }
    registry.register("syncgroup_members", "Members of the syncgroup", members);
    registry.register(
        "syncgroup_pending",
        "1 while this node, joined, still catches up with the syncgroup's admin",
        pending,
    );
    registry.register(
        "syncgroup_proposed",
        "1 while the syncgroup waits for its host to accept it (publish-pending)",
        proposed,
    );
    for ((name, help, _), family) in COUNTERS.iter().zip(counters) {
        let help = format!("{help}, summed over the syncgroup's members");
        registry.register(format!("syncgroup_{name}"), help, family);
    }
    for ((name, help, _), family) in GAUGES[1..].iter().zip(pending_each_way) {
        let help = format!("{help}, summed over the syncgroup's members");
        registry.register(format!("syncgroup_{name}"), help, family);
    }
}

fn node_metrics(registry: &mut Registry, report: &StatusReport) {
    let proposals = Gauge::<i64>::default();
    proposals.set(clamp(report.proposals.len() as u64));
    registry.register(
        "proposals_waiting",
        "Syncgroups proposed to this host waiting for `syncbase sg accept`",
        proposals,
    );
    let used = Gauge::<i64>::default();
    used.set(clamp(report.node.store_used_bytes));
    registry.register("store_used_bytes", "Bytes the store uses", used);
    let waiting = Gauge::<i64>::default();
    waiting.set(clamp(report.conflicts.waiting));
    registry.register(
        "conflicts_waiting",
        "Conflicts waiting for an app to settle them (0: last writer wins settles each as it arrives)",
        waiting,
    );
}

/// A count as a gauge's i64 (saturating).
fn clamp(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::status::{
        ConflictReport, MemberReport, NodeReport, ScopeReport, SyncgroupReport, TransferReport,
    };

    fn peer(fingerprint: &str, records_received: u64) -> PeerReport {
        PeerReport {
            fingerprint: fingerprint.into(),
            name: None,
            address: "127.0.0.1:7701".into(),
            from_config: false,
            declared: true,
            syncgroups: 0,
            databases: vec![],
            connected: true,
            last_caught_up_nanos: None,
            records_received,
            bytes_received: 10 * records_received,
            records_sent: 1,
            bytes_sent: 2,
            pending_in: 3,
            pending_out: 4,
            records_refused: 5,
            rounds: 6,
            conflicts_resolved: 7,
            catch_ups: 0,
            last_error: None,
            clock_offset_ms: Some(-12.5),
        }
    }

    fn member(fingerprint: &str, is_self: bool) -> MemberReport {
        MemberReport {
            fingerprint: fingerprint.into(),
            name: None,
            address: String::new(),
            server: false,
            level: "read".into(),
            is_self,
        }
    }

    fn report() -> StatusReport {
        StatusReport {
            node: NodeReport {
                name: None,
                fingerprint: "aa".into(),
                device: "0000000000000001".into(),
                peer_address: String::new(),
                backend: "memory".into(),
                store_used_bytes: 4096,
                now_nanos: 0,
            },
            // "cc" is a peer but no member of the syncgroup: not in its sums.
            peers: vec![peer("bb", 2), peer("cc", 100)],
            syncgroups: vec![SyncgroupReport {
                name: "h:1/sg".into(),
                id: "0000000000000002".into(),
                database: "db".into(),
                status: "running".into(),
                removed: None,
                removed_by: None,
                removed_at_nanos: None,
                pending: true,
                left: false,
                level: "admin".into(),
                prefixes: vec![ScopeReport {
                    table: "t".into(),
                    prefix: String::new(),
                }],
                members: vec![member("aa", true), member("bb", false)],
            }],
            proposals: vec![],
            conflicts: ConflictReport {
                waiting: 0,
                resolved: 14,
                rule: String::new(),
            },
            transfers: TransferReport {
                supported: false,
                note: String::new(),
            },
        }
    }

    #[test]
    fn every_family_has_help_and_peers_and_syncgroups_carry_their_figures() {
        let text = render(&report());
        let families: Vec<&str> = text
            .lines()
            .filter_map(|line| line.strip_prefix("# TYPE "))
            .collect();
        assert_eq!(
            families.len(),
            12 + 13 + 3,
            "peer, syncgroup, node families:\n{text}"
        );
        for family in families {
            let name = family.split(' ').next().unwrap();
            assert!(
                text.contains(&format!("# HELP {name} ")),
                "{name} has no HELP"
            );
        }
        for line in [
            r#"syncbase_peer_records_received_total{peer="bb",address="127.0.0.1:7701"} 2"#,
            r#"syncbase_peer_bytes_received_total{peer="cc",address="127.0.0.1:7701"} 1000"#,
            r#"syncbase_peer_pending_out_records{peer="bb",address="127.0.0.1:7701"} 4"#,
            r#"syncbase_peer_clock_offset_seconds{peer="bb",address="127.0.0.1:7701"} -0.0125"#,
            r#"syncbase_syncgroup_members{syncgroup="h:1/sg",database="db"} 2"#,
            r#"syncbase_syncgroup_pending{syncgroup="h:1/sg",database="db"} 1"#,
            r#"syncbase_syncgroup_records_received_total{syncgroup="h:1/sg",database="db"} 2"#,
            r#"syncbase_syncgroup_conflicts_resolved_total{syncgroup="h:1/sg",database="db"} 7"#,
            r#"syncbase_syncgroup_pending_in_records{syncgroup="h:1/sg",database="db"} 3"#,
            "syncbase_store_used_bytes 4096",
            "syncbase_conflicts_waiting 0",
        ] {
            assert!(
                text.lines().any(|sample| sample == line),
                "{line} missing:\n{text}"
            );
        }
    }
}
