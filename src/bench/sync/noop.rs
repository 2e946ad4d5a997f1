//! `syncbase bench sync noop` (B5a): A and B in sync on N records. B removes A as a peer
//! (its link to A closes, and so does A's link to B, which B stops serving) and adds it back;
//! from the add until B's status for A shows a sync that reached A's log end
//! (`last_success_nanos` set again), plus the trailing acknowledgements, the proxy in front of
//! A counts B's link's bytes; A's re-dialled link to B is reported beside it. The new connection's traffic is split into
//! flights (maximal runs in one direction, as the proxy read them); a round trip is a flight
//! from B answered by one from A. The comparator is a TLS connect that does nothing (B's
//! identity to A through the same proxy): its bytes and round trips until `connect` returns
//! are the handshake's share, so the sync's own share is the difference.

use crate::cli::output::outln;
use std::time::{Duration, Instant};

use serde_json::json;

use super::proxy::{Proxy, ProxyHost};
use super::proxy::{Traffic, describe, flights, round_trips};
use super::{Link, VALUE_BYTES, ms, on_local, preload, start_node, status, target, wait_until};
use crate::bench::{Stats, records};
use crate::embedded::EmbeddedServer;
use crate::rpc::tls::TlsConnector;

/// Targets (B5a).
const MAX_BYTES: f64 = 500.0;
const MAX_ROUND_TRIPS: f64 = 1.0;

/// The no-op resync benchmark's settings.
pub struct NoopBench {
    /// Records A and B hold in sync.
    pub records: usize,
    /// Disconnect/reconnect cycles; the median is reported with min and max.
    pub repeat: usize,
}

/// One reconnect.
struct Cycle {
    /// Through the proxy B dials (B's restored link to A).
    b_link_bytes: u64,
    /// Through the proxy A dials (A's link to B, which B ended and A re-dialled).
    a_link_bytes: u64,
    teardown_bytes: u64,
    b_millis: f64,
    both_millis: f64,
    b_flights: Vec<(bool, u64)>,
    /// The last new connection A made (earlier ones were refused while B did not know A).
    a_flights: Vec<(bool, u64)>,
    b_connections: u64,
    a_connections: u64,
    records_received: u64,
}

/// One do-nothing TLS connect: the handshake (until `connect` returned, which includes the
/// server's acceptance byte) and the close after it.
struct Connect {
    handshake_bytes: u64,
    handshake_flights: Vec<(bool, u64)>,
    close_bytes: u64,
}

impl NoopBench {
    pub fn run(&self) -> anyhow::Result<()> {
        outln!("{}", self.measure()?)?;
        Ok(())
    }

    /// Runs the benchmark; one JSON object.
    pub fn measure(&self) -> anyhow::Result<serde_json::Value> {
        anyhow::ensure!(
            self.repeat >= 1 && self.records >= 1,
            "bench sync noop needs --records >= 1 and --repeat >= 1"
        );
        let host = ProxyHost::new()?;
        let data = records(self.records, VALUE_BYTES);
        on_local(async {
            let (a, b) = (start_node().await?, start_node().await?);
            preload(&a, &data).await?;
            let link = Link::new(&host, &a, &b).await?;
            let limit = Duration::from_secs(60 + self.records as u64 / 2000);
            super::wait_synced(&a, &b, self.records as u64, limit).await?;
            link.settled_bytes().await;
            let (mut cycles, mut connects) = (Vec::new(), Vec::new());
            for _ in 0..self.repeat {
                connects.push(tls_connect(&b, &a, &link.to_a).await?);
                cycles.push(reconnect(&a, &b, &link).await?);
            }
            Ok(self.line(&cycles, &connects))
        })
    }

    fn line(&self, cycles: &[Cycle], connects: &[Connect]) -> serde_json::Value {
        let stats = |value: &dyn Fn(&Cycle) -> f64| Stats::of(cycles.iter().map(value).collect());
        let tls = Stats::of(connects.iter().map(|c| c.handshake_bytes as f64).collect());
        let tls_trips = Stats::of(
            connects
                .iter()
                .map(|c| round_trips(&c.handshake_flights) as f64)
                .collect(),
        );
        let b_bytes = stats(&|c| c.b_link_bytes as f64);
        let b_trips = stats(&|c| round_trips(&c.b_flights) as f64);
        let a_trips = stats(&|c| round_trips(&c.a_flights) as f64);
        let sync_bytes = b_bytes.median - tls.median;
        let sync_trips = b_trips.median - tls_trips.median;
        let first = &cycles[0];
        json!({
            "bench": "sync-noop",
            "records": self.records,
            "repeat": self.repeat,
            "durable": true,
            "wire_bytes": b_bytes,
            "round_trips": b_trips,
            "resync_ms": stats(&|c| c.b_millis),
            "flights_first_cycle": describe(&first.b_flights),
            "wire_bytes_beyond_tls_handshake": sync_bytes,
            "round_trips_beyond_tls_handshake": sync_trips,
            "tls_handshake_bytes": tls,
            "tls_handshake_round_trips": tls_trips,
            "tls_handshake_flights": describe(&connects[0].handshake_flights),
            "tls_close_bytes": Stats::of(connects.iter().map(|c| c.close_bytes as f64).collect()),
            "b_new_connections": stats(&|c| c.b_connections as f64),
            "reverse_link": {
                "wire_bytes": stats(&|c| c.a_link_bytes as f64),
                "new_connections": stats(&|c| c.a_connections as f64),
                "round_trips_last_connection": a_trips,
                "flights_last_connection_first_cycle": describe(&first.a_flights),
                "both_synced_ms": stats(&|c| c.both_millis),
            },
            "both_links_wire_bytes": stats(&|c| (c.b_link_bytes + c.a_link_bytes) as f64),
            "teardown_bytes_before_cycle": stats(&|c| c.teardown_bytes as f64),
            "records_received": cycles.iter().map(|c| c.records_received).max(),
            "note": "B drops A and adds it back. wire_bytes and round_trips are B's restored link (B dials A), from B's add until B's status for A shows a completed sync; removing A also ends A's link to B (B stops serving it), so reverse_link is A re-dialling B (including dials refused while B did not know A), until A's status for B shows a new completed sync. The TLS handshake is a connect that does nothing (B's identity to A through the same proxy, until connect returns, including the server's acceptance byte). Round trips are flights from the dialler answered by flights from the listener, as the proxy read them (TCP's own handshake is not seen).",
            "targets": {
                "wire_bytes": target(b_bytes.median, MAX_BYTES, true),
                "wire_bytes_beyond_tls_handshake": target(sync_bytes, MAX_BYTES, true),
                "round_trips_beyond_tls_handshake": target(sync_trips, MAX_ROUND_TRIPS, true),
            },
        })
    }
}

/// Waits until `proxy` has no open connection beyond `keep`, then settles.
async fn closed_down_to(proxy: &Proxy, keep: u64) -> anyhow::Result<()> {
    let traffic: &Traffic = &proxy.traffic;
    wait_until(
        "the old connection to close",
        Duration::from_secs(10),
        Duration::from_millis(5),
        || traffic.open() <= keep,
    )
    .await
}

/// A TLS connect from B's identity to A through the proxy, closed at once.
async fn tls_connect(
    b: &EmbeddedServer,
    a: &EmbeddedServer,
    to_a: &Proxy,
) -> anyhow::Result<Connect> {
    let (open, first, before) = (
        to_a.traffic.open(),
        to_a.traffic.connections(),
        to_a.traffic.bytes(),
    );
    let io = tokio::net::TcpStream::connect(to_a.addr).await?;
    io.set_nodelay(true)?;
    let connector = TlsConnector::new(b.node().identity())?;
    let mut link = connector
        .connect(io, a.node().identity().fingerprint())
        .await?;
    let handshake_bytes = to_a.traffic.bytes() - before;
    let handshake_flights = flights(&to_a.traffic.events_since(first), first);
    tokio::io::AsyncWriteExt::shutdown(&mut link.stream).await?;
    drop(link);
    closed_down_to(to_a, open).await?;
    Ok(Connect {
        handshake_bytes,
        handshake_flights,
        close_bytes: to_a.traffic.bytes() - before - handshake_bytes,
    })
}

/// B drops A and adds it back; counts what it takes until B has synced with A again (B's
/// link), and until A's link to B (which B ended when it dropped A) has synced again too.
async fn reconnect(a: &EmbeddedServer, b: &EmbeddedServer, link: &Link) -> anyhow::Result<Cycle> {
    let fingerprint = a.node().identity().fingerprint().clone();
    let a_synced_before = status(a, b).last_success_nanos;
    let teardown_from = link.bytes();
    let open = link.to_a.traffic.open();
    anyhow::ensure!(
        b.node().remove_peer(&fingerprint).await?,
        "A was not B's peer"
    );
    closed_down_to(&link.to_a, open.saturating_sub(1)).await?;
    let before = link.settled_bytes().await;
    let (before_b, before_a) = (link.to_a.traffic.bytes(), link.to_b.traffic.bytes());
    let (first_b, first_a) = (
        link.to_a.traffic.connections(),
        link.to_b.traffic.connections(),
    );
    let start = Instant::now();
    super::add_peer(b, a, link.to_a.addr).await?;
    let b_synced = || status(b, a).last_success_nanos > 0;
    let limit = Duration::from_secs(20);
    let every = Duration::from_millis(1);
    wait_until("B to sync with A again", limit, every, b_synced).await?;
    let b_millis = ms(start.elapsed());
    let a_synced = || status(a, b).last_success_nanos > a_synced_before;
    wait_until("A to sync with B again", limit, every, a_synced).await?;
    let both_millis = ms(start.elapsed());
    link.settled_bytes().await;
    let a_events = link.to_b.traffic.events_since(first_a);
    let a_connections = link.to_b.traffic.connections() - first_a;
    Ok(Cycle {
        b_link_bytes: link.to_a.traffic.bytes() - before_b,
        a_link_bytes: link.to_b.traffic.bytes() - before_a,
        teardown_bytes: before - teardown_from,
        b_millis,
        both_millis,
        b_flights: flights(&link.to_a.traffic.events_since(first_b), first_b),
        a_flights: flights(&a_events, first_a + a_connections.saturating_sub(1)),
        b_connections: link.to_a.traffic.connections() - first_b,
        a_connections,
        records_received: status(b, a).records_received + status(a, b).records_received,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_noop_run_reports_every_field() {
        let line = NoopBench {
            records: 300,
            repeat: 2,
        }
        .measure()
        .unwrap();
        assert_eq!(line["bench"], "sync-noop");
        assert_eq!(line["records_received"], 0);
        assert_eq!(line["b_new_connections"]["max"], 1.0);
        assert!(line["wire_bytes"]["median"].as_f64().unwrap() > 0.0);
        assert!(line["tls_handshake_bytes"]["median"].as_f64().unwrap() > 0.0);
        assert!(line["round_trips_beyond_tls_handshake"].as_f64().unwrap() >= 1.0);
    }
}
