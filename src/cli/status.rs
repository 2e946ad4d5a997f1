//! `syncbase status`: a one-line summary of the node (identity, peers connected, syncgroups,
//! log entries pending, the last error), then each peer's sync status, the node's epochs,
//! the store's figures (from `collect`) and the proposals waiting; or all of it as one JSON
//! object (`--json`). Reads through the running node's app API; peers read as `peers` lists
//! them.

use clap::Args;
use serde_json::json;

use crate::cli::client::{Target, with_service};
use crate::cli::output::{count, json_line, outln};
use crate::cli::peers::{self, Identity};
use crate::clock::TimeSource;
use crate::rpc::client::remote_error;
use crate::schema::service_capnp::{peer_status, service};

// No doc comment: the subcommand's help is its variant's in `cli::Command`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    target: Target,
    /// One JSON object on one line: {"fingerprint", "peers_connected", "syncgroups" (those
    /// synced: not left, not lost),
    /// "pending", "last_error" (string or null), "proposals_waiting", "epochs": [string],
    /// "attention": [{"syncgroup", "lines": [string]}] (each syncgroup this node lost or whose
    /// copy is pending, with what to do, as the human output's `syncgroup NAME: ...` lines),
    /// "peers": [each as `peer list --json`, plus "connected", "last_caught_up_nanos" (Unix
    /// nanoseconds, null = never), "records_received", "bytes_received", "records_sent",
    /// "bytes_sent", "pending_in", "pending_out" (log entries), "records_refused",
    /// "clock_offset_ms" (its clock minus ours, or null if not measured yet), "last_error"
    /// (string or null)], "store": {"backend" ("lmdb" or "memory"),
    /// "file_bytes", "used_bytes", "map_bytes", "max_map_bytes" (null = unbounded),
    /// "reserve_bytes"}, "databases": [{"database",
    /// "live_rows", "live_bytes", "held_back": [{"member", "table", "prefix",
    /// "last_seen_nanos", "generations_behind"}]}]}.
    #[arg(long)]
    json: bool,
}

/// What the summary line counts.
struct Summary {
    fingerprint: String,
    peers: u64,
    connected: u64,
    syncgroups: u64,
    /// Log entries pending, either way, over every peer.
    pending: u64,
    /// The first peer's last error, with that peer's fingerprint.
    last_error: Option<(String, String)>,
}

impl Summary {
    /// "node 3f2a91c0...: 1 of 2 peers connected, 1 syncgroup, 0 log entries pending, last
    /// error none".
    fn line(&self) -> String {
        let error = match &self.last_error {
            None => "none".to_owned(),
            Some((peer, error)) => format!("{error} (peer {}...)", short(peer)),
        };
        format!(
            "node {}...: {} of {} connected, {}, {} pending, last error {error}",
            short(&self.fingerprint),
            self.connected,
            count(self.peers, "peer", "peers"),
            count(self.syncgroups, "syncgroup", "syncgroups"),
            count(self.pending, "log entry", "log entries"),
        )
    }
}

/// The first 8 hex digits of a fingerprint.
fn short(fingerprint: &str) -> &str {
    &fingerprint[..fingerprint.len().min(8)]
}

/// `status`: the summary line, then the rest (see the module doc).
pub fn run(args: &StatusArgs) -> anyhow::Result<()> {
    let json = args.json;
    with_service(&args.target, |service| async move {
        let identity = Identity::fetch(&service).await?;
        let response = peers::fetch(&service).await?;
        let peers = response.get()?.get_peers()?;
        let summary = summarise(&service, &identity, peers).await?;
        let waiting = super::proposals::fetch(&service).await?.len();
        if json {
            let mut object = json!({
                "fingerprint": summary.fingerprint,
                "peers_connected": summary.connected,
                "syncgroups": summary.syncgroups,
                "pending": summary.pending,
                "last_error": summary.last_error.as_ref().map(|(_, error)| error),
                "proposals_waiting": waiting,
                "epochs": identity.epochs,
                "attention": super::syncgroups::attention(&service)
                    .await?
                    .into_iter()
                    .map(|(syncgroup, lines)| json!({"syncgroup": syncgroup, "lines": lines}))
                    .collect::<Vec<_>>(),
                "peers": peers.iter().map(peer_json).collect::<anyhow::Result<Vec<_>>>()?,
            });
            let mut store = super::collect::store_status_json(&service).await?;
            object["store"] = store["store"].take();
            object["databases"] = store["databases"].take();
            json_line(&object)?;
            return Ok(());
        }
        outln!("{}", summary.line())?;
        for peer in peers {
            print_peer(peer)?;
        }
        super::syncgroups::print_attention(&service).await?;
        print_epochs(&identity.epochs)?;
        super::collect::print_store_status(&service).await?;
        if waiting > 0 {
            outln!(
                "proposals: {waiting} waiting (syncbase sg list; sg accept NAME or sg reject \
                 NAME)"
            )?;
        }
        Ok(())
    })
}

async fn summarise(
    service: &service::Client,
    identity: &Identity,
    peers: capnp::struct_list::Reader<'_, peer_status::Owned>,
) -> anyhow::Result<Summary> {
    let mut summary = Summary {
        fingerprint: identity.fingerprint.clone(),
        peers: peers.len().into(),
        connected: 0,
        syncgroups: syncgroups_held(service).await?,
        pending: 0,
        last_error: None,
    };
    for peer in peers {
        summary.connected += u64::from(peer.get_connected());
        summary.pending += peer.get_records_pending_in() + peer.get_records_pending_out();
        let error = peer.get_last_error()?.to_str()?;
        if summary.last_error.is_none() && !error.is_empty() {
            let fingerprint = peer.get_fingerprint()?.to_str()?.to_owned();
            summary.last_error = Some((fingerprint, error.to_owned()));
        }
    }
    Ok(summary)
}

/// The syncgroups this node syncs, in every database: held, not left, not lost (destroyed,
/// ejected, Read revoked: those are the attention lines), so the count agrees with the peers
/// they make.
async fn syncgroups_held(service: &service::Client) -> anyhow::Result<u64> {
    let mut request = super::syncgroups::syncgroups_of(service).list_request();
    request.get().set_database("");
    let response = request.send().promise.await.map_err(remote_error)?;
    let list = response.get()?.get_syncgroups()?;
    let mut live = 0;
    for info in list.iter() {
        if !info.get_left() && info.get_removed()?.is_empty() {
            live += 1;
        }
    }
    Ok(live)
}

/// Says whether this node ever moved to a new device id, and the last time why.
fn print_epochs(epochs: &[String]) -> anyhow::Result<()> {
    if let Some(last) = epochs.last() {
        outln!(
            "epochs: {} (the store was found restored or copied; last {last})",
            epochs.len()
        )?;
    }
    Ok(())
}

/// A peer's block: its fingerprint, address and origin, what it shares, its sync status.
fn print_peer(peer: peer_status::Reader<'_>) -> anyhow::Result<()> {
    let origin = if peer.get_from_config() {
        " (config)"
    } else {
        ""
    };
    let name = match peer.get_name()?.to_str()? {
        "" => String::new(),
        name => format!(" ({})", crate::cli::output::shown(name.as_bytes())),
    };
    outln!(
        "{}{name} {}{origin}",
        peer.get_fingerprint()?.to_str()?,
        peers::address(peer)?
    )?;
    for share in peers::shares(peer)? {
        outln!("  database {share}")?;
    }
    outln!(
        "  connected: {}",
        if peer.get_connected() { "yes" } else { "no" }
    )?;
    let last = peer.get_last_success_nanos();
    if last > 0 {
        let ago = crate::clock::SystemTime.now_nanos().saturating_sub(last) as f64 / 1e9;
        outln!("  last caught up: {ago:.1} s ago")?;
    } else {
        outln!("  last caught up: never")?;
    }
    if last == 0 && peer.get_records_pending_in() > 0 {
        let (received, pending) = (peer.get_records_received(), peer.get_records_pending_in());
        let done = super::syncgroups::percent_done(received, pending);
        outln!(
            "  initial sync: {done}% done ({received} of {})",
            count(received + pending, "record", "records")
        )?;
    }
    outln!(
        "  received: {}, {}; pending in: {}",
        count(peer.get_records_received(), "record", "records"),
        count(peer.get_bytes_received(), "byte", "bytes"),
        count(peer.get_records_pending_in(), "log entry", "log entries")
    )?;
    outln!(
        "  sent: {}, {}; pending out: {}",
        count(peer.get_records_sent(), "record", "records"),
        count(peer.get_bytes_sent(), "byte", "bytes"),
        count(peer.get_records_pending_out(), "log entry", "log entries")
    )?;
    if peer.get_clock_measured() {
        outln!(
            "  clock offset: {:+.1} ms (its clock minus ours; round trip {:.1} ms)",
            peer.get_clock_offset_nanos() as f64 / 1e6,
            peer.get_clock_rtt_nanos() as f64 / 1e6
        )?;
    }
    let refused = peer.get_records_refused();
    if refused > 0 {
        outln!(
            "  refused: {} (their writer held no Write permission)",
            count(refused, "record", "records")
        )?;
    }
    let error = peer.get_last_error()?.to_str()?;
    if !error.is_empty() {
        outln!("  last error: {error}")?;
    }
    Ok(())
}

/// A peer as `status --json` prints it: `peer list --json`'s fields and its sync status.
fn peer_json(peer: peer_status::Reader<'_>) -> anyhow::Result<serde_json::Value> {
    let mut object = peers::peer_json(peer)?;
    let error = peer.get_last_error()?.to_str()?;
    let status = json!({
        "connected": peer.get_connected(),
        "last_caught_up_nanos": Some(peer.get_last_success_nanos()).filter(|&nanos| nanos > 0),
        "records_received": peer.get_records_received(),
        "bytes_received": peer.get_bytes_received(),
        "records_sent": peer.get_records_sent(),
        "bytes_sent": peer.get_bytes_sent(),
        "pending_in": peer.get_records_pending_in(),
        "pending_out": peer.get_records_pending_out(),
        "records_refused": peer.get_records_refused(),
        "clock_offset_ms": peer
            .get_clock_measured()
            .then(|| peer.get_clock_offset_nanos() as f64 / 1e6),
        "last_error": (!error.is_empty()).then_some(error),
    });
    if let (Some(object), serde_json::Value::Object(status)) = (object.as_object_mut(), status) {
        object.extend(status);
    }
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::Summary;

    #[test]
    fn the_summary_line_counts_in_words_that_agree_with_their_numbers() {
        let mut summary = Summary {
            fingerprint: "ab12cd34".repeat(8),
            peers: 2,
            connected: 1,
            syncgroups: 1,
            pending: 0,
            last_error: None,
        };
        assert_eq!(
            summary.line(),
            "node ab12cd34...: 1 of 2 peers connected, 1 syncgroup, 0 log entries pending, \
             last error none"
        );
        summary.peers = 1;
        summary.syncgroups = 2;
        summary.pending = 1;
        summary.last_error = Some(("ef".repeat(32), "ConnFail: refused".into()));
        assert_eq!(
            summary.line(),
            "node ab12cd34...: 1 of 1 peer connected, 2 syncgroups, 1 log entry pending, last \
             error ConnFail: refused (peer efefefef...)"
        );
    }
}
