//! The demo's scenes, in order: writes flowing between the three nodes with each delivery's
//! latency; a partition (carol cut off) with writes on both sides and one row written on
//! both; the heal, with the held-back writes arriving and every node holding the same
//! winner; more writes; and the summary line (records, bytes synced, p50/p95 latency).
//!
//! A delivery is timed from just before the put on the writer to the first moment the row
//! holds the written value on the receiver, polled every millisecond.

use std::time::{Duration, Instant};

use anyhow::bail;

use super::cluster::{Cluster, Member};
use super::show::{Latencies, Show, Tone, bytes, millis};
use crate::cli::output::outln;

/// How often a receiver's row is read while a delivery is timed.
const POLL: Duration = Duration::from_millis(1);
/// How long a delivery may take on a healthy link before the demo reports it missing.
const DELIVERY_LIMIT: Duration = Duration::from_secs(5);
/// Pause between two writes of the flowing scenes.
const WRITE_GAP: Duration = Duration::from_millis(350);
/// The longest wait for the partitioned nodes to agree after the heal.
const HEAL_LIMIT: Duration = Duration::from_secs(20);

/// The row written on both sides of the partition: alice's value, then carol's
/// `CONCURRENT_GAP` later.
const ALICE_COLOR: &str = "blue (alice)";
const CAROL_COLOR: &str = "green (carol)";
const CONCURRENT_GAP: Duration = Duration::from_millis(20);

/// What the scenes measured.
#[derive(Default)]
struct Tally {
    records: u64,
    latencies: Latencies,
    next_key: u32,
}

/// Runs every scene; the flowing ones fill about `pace` in all.
pub async fn run(cluster: &Cluster, show: Show, pace: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut tally = Tally::default();
    show.heading("writes flow: each put, and when it reached the other two")?;
    flow(cluster, show, &mut tally, start + pace.mul_f64(0.4)).await?;
    let hold = pace.mul_f64(0.15).max(Duration::from_secs(1));
    partition(cluster, show, &mut tally, hold).await?;
    heal(cluster, show).await?;
    show.heading("writes flow again")?;
    flow(cluster, show, &mut tally, start + pace).await?;
    summary(cluster, show, &tally)
}

/// Writes in turn on alice, bob and carol until `until`, timing each delivery.
async fn flow(
    cluster: &Cluster,
    show: Show,
    tally: &mut Tally,
    until: Instant,
) -> anyhow::Result<()> {
    let mut writer = 0;
    loop {
        let member = &cluster.nodes[writer % cluster.nodes.len()];
        tally.next_key += 1;
        let key = format!("k{}", tally.next_key);
        let value = format!("note {} from {}", tally.next_key, member.name);
        write_and_time(cluster, show, tally, member, &key, &value, DELIVERY_LIMIT).await?;
        writer += 1;
        if Instant::now() + WRITE_GAP >= until {
            return Ok(());
        }
        tokio::time::sleep(WRITE_GAP).await;
    }
}

/// Puts `value` at `key` on `writer`, then prints when each other node held it (or that it
/// did not within `limit`); delivered latencies go to the tally.
async fn write_and_time(
    cluster: &Cluster,
    show: Show,
    tally: &mut Tally,
    writer: &Member,
    key: &str,
    value: &str,
    limit: Duration,
) -> anyhow::Result<()> {
    let started = Instant::now();
    writer.put(key, value).await?;
    tally.records += 1;
    let receivers: Vec<&Member> = cluster
        .nodes
        .iter()
        .filter(|member| member.name != writer.name)
        .collect();
    let arrivals = arrivals(&receivers, key, value, started, limit).await?;
    let mut reached = Vec::new();
    for (member, arrival) in receivers.iter().zip(arrivals) {
        reached.push(match arrival {
            Some(latency) => {
                tally.latencies.record(latency);
                format!(
                    "{} {}",
                    member.name,
                    show.paint(Tone::Good, &millis(latency))
                )
            }
            None => format!("{} {}", member.name, show.paint(Tone::Bad, "not reached")),
        });
    }
    let put = format!("put {key:<4} = {:<22}", format!("{value:?}"));
    show.line(&format!(
        "{}  {put} -> {}",
        show.node(writer.name),
        reached.join(", ")
    ))?;
    Ok(())
}

/// For each receiver, how long after `started` it first held `value` at `key`; None if it
/// did not within `limit`.
async fn arrivals(
    receivers: &[&Member],
    key: &str,
    value: &str,
    started: Instant,
    limit: Duration,
) -> anyhow::Result<Vec<Option<Duration>>> {
    let mut arrived = vec![None; receivers.len()];
    while arrived.iter().any(Option::is_none) && started.elapsed() < limit {
        for (member, arrival) in receivers.iter().zip(arrived.iter_mut()) {
            if arrival.is_none() && member.read(key)?.as_deref() == Some(value.as_bytes()) {
                *arrival = Some(started.elapsed());
            }
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(arrived)
}

/// Cuts carol off, writes on both sides (one row on both), and shows that nothing crosses
/// for `hold`.
async fn partition(
    cluster: &Cluster,
    show: Show,
    tally: &mut Tally,
    hold: Duration,
) -> anyhow::Result<()> {
    show.heading("partition: carol's relays are cut; alice and bob still reach each other")?;
    cluster.set_carol_linked(false);
    let (alice, carol) = (cluster.node("alice"), cluster.node("carol"));
    let limit = hold / 2;
    write_and_time(
        cluster,
        show,
        tally,
        alice,
        "p1",
        "alice, carol away",
        limit,
    )
    .await?;
    write_and_time(cluster, show, tally, carol, "p2", "carol, cut off", limit).await?;
    show.line(&show.paint(
        Tone::Dim,
        "the same row, written on both sides of the partition:",
    ))?;
    alice.put("color", ALICE_COLOR).await?;
    tokio::time::sleep(CONCURRENT_GAP).await;
    carol.put("color", CAROL_COLOR).await?;
    tally.records += 2;
    // bob's side of the partition shows alice's value once it got there.
    let bob = [cluster.node("bob")];
    arrivals(&bob, "color", ALICE_COLOR, Instant::now(), DELIVERY_LIMIT).await?;
    print_row(cluster, show, "color")
}

/// Restores carol's links, shows when the partition's writes arrived, and that every node
/// holds the same value of the row written on both sides.
async fn heal(cluster: &Cluster, show: Show) -> anyhow::Result<()> {
    show.heading("heal: carol's relays forward again; the nodes catch up")?;
    cluster.set_carol_linked(true);
    let healed = Instant::now();
    let (alice, bob, carol) = (
        cluster.node("alice"),
        cluster.node("bob"),
        cluster.node("carol"),
    );
    for (member, key) in [(carol, "p1"), (alice, "p2"), (bob, "p2")] {
        let writer = if key == "p1" { alice } else { carol };
        let value = writer.read(key)?.unwrap_or_default();
        let value = String::from_utf8_lossy(&value);
        match arrivals(&[member], key, &value, healed, HEAL_LIMIT).await?[0] {
            Some(after) => show.line(&format!(
                "{}  has {key} ({}'s) {} after the heal",
                show.node(member.name),
                writer.name,
                show.paint(Tone::Good, &millis(after)),
            ))?,
            None => bail!(
                "{} did not receive {key} within {HEAL_LIMIT:?} of the heal",
                member.name
            ),
        }
    }
    let winner = agreed_value(cluster, "color", healed).await?;
    print_row(cluster, show, "color")?;
    let reason = match winner.as_str() {
        CAROL_COLOR => format!(
            "carol's put, made {} after alice's, carries the higher stamp",
            millis(CONCURRENT_GAP)
        ),
        ALICE_COLOR => "alice's put carries the higher stamp (carol's clock is behind)".into(),
        other => bail!("the nodes agree on {other:?}, which neither side wrote"),
    };
    show.line(&show.paint(
        Tone::Good,
        &format!("same winner on all three nodes: {winner:?}"),
    ))?;
    show.line(&format!(
        "why: last-writer-wins on the hybrid logical clock (wall time + counter): {reason};"
    ))?;
    show.line("     every node compares the same stamps, so all pick the same winner unasked")?;
    show.line("     (the losing write stays in the row's version history)")?;
    Ok(())
}

/// Waits until every node holds the same value at `key`, and returns it.
async fn agreed_value(cluster: &Cluster, key: &str, since: Instant) -> anyhow::Result<String> {
    loop {
        let values = cluster
            .nodes
            .iter()
            .map(|member| member.read(key))
            .collect::<anyhow::Result<Vec<_>>>()?;
        if let Some(Some(first)) = values.first()
            && values.iter().all(|value| value.as_ref() == Some(first))
        {
            return Ok(String::from_utf8_lossy(first).into_owned());
        }
        if since.elapsed() > HEAL_LIMIT {
            bail!("the nodes still disagree on {key:?} {HEAL_LIMIT:?} after the heal: {values:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// One line: each node's value at `key`.
fn print_row(cluster: &Cluster, show: Show, key: &str) -> anyhow::Result<()> {
    let mut held = Vec::new();
    for member in &cluster.nodes {
        let value = member.read(key)?.unwrap_or_default();
        held.push(format!(
            "{} {:?}",
            member.name,
            String::from_utf8_lossy(&value)
        ));
    }
    show.line(&format!("{key}: {}", held.join(", ")))?;
    Ok(())
}

/// The closing line: records written, bytes the nodes received over sync, latency figures.
fn summary(cluster: &Cluster, show: Show, tally: &Tally) -> anyhow::Result<()> {
    let synced: u64 = cluster.nodes.iter().map(Member::bytes_received).sum();
    let figure = |p| tally.latencies.percentile(p).map_or("-".into(), millis);
    outln!()?;
    outln!(
        "{} {} records written, {} received over sync, {} deliveries timed: latency p50 {}, p95 {}",
        show.paint(Tone::Heading, "summary:"),
        tally.records,
        bytes(synced),
        tally.latencies.len(),
        figure(50),
        figure(95),
    )?;
    Ok(())
}
