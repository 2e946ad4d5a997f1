//! `sg join`'s wait for the initial sync: polls the node (`Syncgroups.get` for the pending
//! flag, `listPeers` for each member's counters) until this node's copy of the syncgroup is
//! no longer pending and a member has sent it everything it had (its last push reached its
//! log's end after the join, and no member reports log entries still to examine for us, the
//! responder's `remaining`). On a terminal an `indicatif` bar on stderr shows records and
//! bytes received since the join from every member (a row two members send counts twice),
//! the rate and the ETA (a bar while members report entries to come, or heads left to fetch
//! in a catch-up by state; a count alone while they report none); elsewhere only the final
//! line, on stdout.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::syncgroups_of;
use crate::cli::output::{count, outln};
use crate::clock::TimeSource;
use crate::rpc::client::remote_error;
use crate::rpc::syncgroup_wire::read_syncgroup;
use crate::schema::service_capnp::service;

/// How often the node is asked.
const POLL: Duration = Duration::from_millis(200);

/// What the node's members have sent this node, summed over the syncgroup's members.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(crate) struct Counts {
    /// Records applied from the members.
    pub records: u64,
    /// Bytes of those records.
    pub bytes: u64,
    /// Members that sent at least one of them (a row two members send counts twice).
    pub senders: u64,
    /// Log entries the members had yet to examine for this node at their last push.
    pub pending_in: u64,
    /// Whether a member's last push reached its log's end after the join began.
    pub caught_up: bool,
}

/// Every peer's records and bytes received before the join, so the wait counts only what
/// came after it (a member that was a peer already has sent rows for other scopes), and the
/// time the join began (Unix nanoseconds, less a second of slack).
pub(super) struct Before {
    received: BTreeMap<String, (u64, u64)>,
    started_nanos: i64,
}

impl Before {
    /// Reads the peers' counters; call it before sending the join.
    pub(super) async fn take(service: &service::Client) -> anyhow::Result<Before> {
        let started_nanos = crate::clock::SystemTime
            .now_nanos()
            .saturating_sub(1_000_000_000);
        let response = crate::cli::peers::fetch(service).await?;
        let mut received = BTreeMap::new();
        for peer in response.get()?.get_peers()? {
            let counts = (peer.get_records_received(), peer.get_bytes_received());
            received.insert(peer.get_fingerprint()?.to_str()?.to_owned(), counts);
        }
        Ok(Before {
            received,
            started_nanos,
        })
    }
}

/// One look at the syncgroup: still pending here, and the members' counts.
struct Look {
    pending: bool,
    counts: Counts,
}

/// Percent of an initial sync done: records received of those received plus pending in, 0
/// to 100 (100 when nothing is pending).
pub(crate) fn percent_done(received: u64, pending_in: u64) -> u64 {
    let total = u128::from(received) + u128::from(pending_in);
    if total == 0 {
        return 100;
    }
    (u128::from(received) * 100 / total) as u64
}

/// Waits until the initial sync of `name`, joined after `before`, completes, then prints
/// [`completed_line`]. Fails after `timeout` naming what is still missing; the join stands
/// and the sync goes on.
pub(super) async fn wait(
    service: &service::Client,
    name: &str,
    before: &Before,
    timeout: Duration,
) -> anyhow::Result<()> {
    let me = crate::cli::peers::Identity::fetch(service)
        .await?
        .fingerprint;
    let started = Instant::now();
    let bar = progress_bar();
    let mut shown = Shown::Waiting;
    loop {
        let now = look(service, name, &me, before).await?;
        let (received, bytes) = (now.counts.records, now.counts.bytes);
        show(&bar, &mut shown, &now, received, bytes);
        if !now.pending && now.counts.caught_up && now.counts.pending_in == 0 {
            bar.finish_and_clear();
            let secs = started.elapsed().as_secs_f64();
            outln!("{}", completed_line(name, &now.counts, secs))?;
            return Ok(());
        }
        if started.elapsed() >= timeout {
            bar.abandon();
            anyhow::bail!("{}", unfinished(name, &now, timeout));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The one line a completed wait prints: `initial sync of NAME complete: received R records,
/// B bytes in S s from M members`. Records are what the members sent, summed, so with two or
/// more senders the line says a row sent by several counts once per sender.
fn completed_line(name: &str, counts: &Counts, secs: f64) -> String {
    let from = match counts.senders {
        0 => String::new(),
        1 => " from 1 member".to_owned(),
        n => format!(" from {n} members (a row sent by several counts once per sender)"),
    };
    format!(
        "initial sync of {name} complete: received {}, {} in {secs:.1} s{from}",
        count(counts.records, "record", "records"),
        count(counts.bytes, "byte", "bytes")
    )
}

/// The bar: on stderr, drawn only when stderr is a terminal (indicatif's own check).
fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    bar.set_style(waiting_style());
    bar
}

/// Before any member reported what it has to send: a spinner and what is awaited.
fn waiting_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {msg}").expect("the template is valid")
}

/// While members report entries to come: records (received of received plus pending in),
/// bytes, rate, ETA.
fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{spinner} [{bar:30}] {human_pos}/{human_len} records, {msg}, ETA {eta}",
    )
    .expect("the template is valid")
    .progress_chars("=> ")
}

/// Rows arriving with no count of what is left (no member reported one yet).
fn count_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} records received: {human_pos}, {msg}")
        .expect("the template is valid")
}

/// Which of the styles the bar shows.
#[derive(Clone, Copy, PartialEq)]
enum Shown {
    Waiting,
    Bar,
    Count,
}

/// Draws one look; `shown` is the style the bar has, changed when the look needs another.
fn show(bar: &ProgressBar, shown: &mut Shown, look: &Look, received: u64, bytes: u64) {
    let pending_in = look.counts.pending_in;
    let wanted = match (received + pending_in, pending_in) {
        (0, _) => Shown::Waiting,
        (_, 0) => Shown::Count,
        _ => Shown::Bar,
    };
    if wanted != *shown {
        bar.set_style(match wanted {
            Shown::Waiting => waiting_style(),
            Shown::Bar => bar_style(),
            Shown::Count => count_style(),
        });
        *shown = wanted;
    }
    if wanted == Shown::Waiting {
        bar.set_message(if look.pending {
            "catching up with the admin's view of the syncgroup"
        } else {
            "waiting for a member to send its rows"
        });
    } else {
        bar.set_length(received + pending_in);
        bar.set_position(received);
        let secs = bar.elapsed().as_secs_f64().max(0.001);
        bar.set_message(format!(
            "{} ({:.0} records/s)",
            HumanBytes(bytes),
            received as f64 / secs
        ));
    }
    bar.tick();
}

/// The timeout's message: what the wait still lacked.
fn unfinished(name: &str, look: &Look, timeout: Duration) -> String {
    let missing = if look.pending {
        "this node's copy is still pending (catching up with an admin's view of it)".to_owned()
    } else if look.counts.pending_in > 0 {
        format!(
            "{} log entries still to come ({}% done)",
            look.counts.pending_in,
            percent_done(look.counts.records, look.counts.pending_in)
        )
    } else {
        "no member has sent it its rows yet (is one reachable? `syncbase status`)".to_owned()
    };
    format!(
        "joined {name}, but its initial sync did not complete within {} s: {missing}; it goes \
         on in the background (`syncbase status`; `sg join --no-wait` does not wait)",
        timeout.as_secs()
    )
}

/// Asks the node whether `name` is pending here and sums its other members' peer counters
/// since `before`.
async fn look(
    service: &service::Client,
    name: &str,
    me: &str,
    before: &Before,
) -> anyhow::Result<Look> {
    let mut request = syncgroups_of(service).get_request();
    request.get().set_name(name);
    let response = request.send().promise.await.map_err(remote_error)?;
    let info = response.get()?.get_sg()?;
    let sg = read_syncgroup(info.get_sg()?)?;
    let members: BTreeSet<String> = sg
        .joiners
        .keys()
        .map(|member| member.to_string())
        .filter(|member| member != me)
        .collect();
    let response = crate::cli::peers::fetch(service).await?;
    let mut counts = Counts::default();
    for peer in response.get()?.get_peers()? {
        let fingerprint = peer.get_fingerprint()?.to_str()?;
        if !members.contains(fingerprint) {
            continue;
        }
        let (records, bytes) = before
            .received
            .get(fingerprint)
            .copied()
            .unwrap_or_default();
        let sent = peer.get_records_received().saturating_sub(records);
        counts.records += sent;
        counts.senders += u64::from(sent > 0);
        counts.bytes += peer.get_bytes_received().saturating_sub(bytes);
        counts.pending_in += peer.get_records_pending_in();
        counts.caught_up |= peer.get_last_success_nanos() >= before.started_nanos;
    }
    Ok(Look {
        pending: info.get_pending(),
        counts,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Counts, Look, completed_line, percent_done, unfinished};

    #[test]
    fn the_completed_line_says_records_are_counted_per_sending_member() {
        let counts = |records, senders| Counts {
            records,
            bytes: 10,
            senders,
            ..Counts::default()
        };
        assert_eq!(
            completed_line("h:1/g", &counts(0, 0), 0.04),
            "initial sync of h:1/g complete: received 0 records, 10 bytes in 0.0 s"
        );
        assert_eq!(
            completed_line("h:1/g", &counts(1, 1), 1.0),
            "initial sync of h:1/g complete: received 1 record, 10 bytes in 1.0 s from 1 member"
        );
        let two = completed_line("h:1/g", &counts(604, 2), 2.0);
        assert!(
            two.ends_with(
                "received 604 records, 10 bytes in 2.0 s from 2 members (a row sent by several \
                 counts once per sender)"
            ),
            "{two}"
        );
        assert_eq!(two.lines().count(), 1);
    }

    #[test]
    fn a_timeout_names_what_the_initial_sync_still_lacks() {
        let look = |pending, pending_in| Look {
            pending,
            counts: Counts {
                records: 30,
                pending_in,
                ..Counts::default()
            },
        };
        let timeout = Duration::from_secs(5);
        let pending = unfinished("h:1/g", &look(true, 0), timeout);
        assert!(
            pending.contains("within 5 s: this node's copy is still pending"),
            "{pending}"
        );
        let behind = unfinished("h:1/g", &look(false, 10), timeout);
        assert!(
            behind.contains("10 log entries still to come (75% done)"),
            "{behind}"
        );
        let silent = unfinished("h:1/g", &look(false, 0), timeout);
        assert!(silent.contains("no member has sent"), "{silent}");
    }

    #[test]
    fn percent_done_counts_received_of_received_plus_pending() {
        assert_eq!(percent_done(0, 0), 100);
        assert_eq!(percent_done(0, 10), 0);
        assert_eq!(percent_done(25, 75), 25);
        assert_eq!(percent_done(99, 1), 99);
        assert_eq!(percent_done(u64::MAX, 1), 99);
    }
}
