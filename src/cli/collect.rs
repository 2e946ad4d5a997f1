//! History collection on the command line: `gc DB` (a pass now, and what it freed) and the
//! store's part of `status` (size figures, live data, and the members collection waits
//! for), through the running node's app API.

use clap::Args;
use serde_json::json;
use syncbase_storage::Usage;

use crate::cli::client::{Target, with_service};
use crate::cli::output::{count, outln};
use crate::clock::TimeSource;
use crate::rpc::client::{Collection, collect, read_usage, remote_error};
use crate::schema::service_capnp::{held_back, service};

#[derive(Debug, Args)]
pub struct GcArgs {
    #[command(flatten)]
    pub target: Target,
    /// The database to collect.
    pub db: String,
    /// Print one JSON object instead of one line per figure.
    #[arg(long)]
    pub json: bool,
}

/// `gc DB`: runs a collection pass over DB now and prints what it freed and the store's
/// size figures before and after (bytes).
pub fn gc(args: &GcArgs) -> anyhow::Result<()> {
    let done = with_service(&args.target, |service| async move {
        collect(&service, &args.db).await
    })?;
    if args.json {
        outln!("{}", gc_json(&args.db, &done))?;
        return Ok(());
    }
    let freed = done.freed;
    outln!("records {}", freed.records)?;
    outln!("versions {}", freed.versions)?;
    outln!("tombstones {}", freed.tombstones)?;
    outln!("changes {}", freed.changes)?;
    outln!("bytes {}", freed.bytes)?;
    outln!("steps {}", done.steps)?;
    let (before, after) = (done.before, done.after);
    outln!("file-bytes {} -> {}", before.file_bytes, after.file_bytes)?;
    outln!("used-bytes {} -> {}", before.used_bytes, after.used_bytes)?;
    outln!("map-bytes {} -> {}", before.map_bytes, after.map_bytes)?;
    Ok(())
}

fn gc_json(db: &str, done: &Collection) -> serde_json::Value {
    let freed = done.freed;
    json!({
        "database": db,
        "records": freed.records,
        "versions": freed.versions,
        "tombstones": freed.tombstones,
        "changes": freed.changes,
        "bytes": freed.bytes,
        "steps": done.steps,
        "before": usage_json(&done.before),
        "after": usage_json(&done.after),
    })
}

fn usage_json(usage: &Usage) -> serde_json::Value {
    json!({
        "file_bytes": usage.file_bytes,
        "used_bytes": usage.used_bytes,
        "map_bytes": usage.map_bytes,
        "max_map_bytes": usage.max_map_bytes,
        "reserve_bytes": usage.reserve_bytes,
    })
}

/// The node's `storeStatus` answer: usage, and per database live data and who holds
/// collection back.
async fn fetch_store_status(
    service: &service::Client,
) -> anyhow::Result<capnp::capability::Response<service::store_status_results::Owned>> {
    service
        .store_status_request()
        .send()
        .promise
        .await
        .map_err(remote_error)
}

/// Prints the store's size figures, then per database its live data and each member that
/// holds collection back (`status`).
pub async fn print_store_status(service: &service::Client) -> anyhow::Result<()> {
    let response = fetch_store_status(service).await?;
    let response = response.get()?;
    let usage = read_usage(response.get_usage()?);
    let max = usage
        .max_map_bytes
        .map_or_else(|| "unbounded".to_owned(), |max| max.to_string());
    if response.get_usage()?.get_backend()?.to_str()? == "memory" {
        outln!(
            "store: in memory, {} bytes used (nothing on disk: its data goes when the node stops)",
            usage.used_bytes
        )?;
    } else {
        outln!(
            "store: {} bytes on disk, {} used, map {} of at most {max} ({} kept for deletes and \
             gc)",
            usage.file_bytes,
            usage.used_bytes,
            usage.map_bytes,
            usage.reserve_bytes
        )?;
    }
    let now = crate::clock::SystemTime.now_nanos();
    for db in response.get_databases()? {
        outln!(
            "database {}: {}, {}",
            crate::cli::output::shown(db.get_database()?.to_str()?.as_bytes()),
            count(db.get_live_rows(), "live row", "live rows"),
            count(db.get_live_bytes(), "live byte", "live bytes")
        )?;
        let held = db.get_held_back()?;
        if held.is_empty() {
            outln!("  collection waits for no member")?;
        }
        for entry in held {
            outln!("  {}", held_back_line(entry, now)?)?;
        }
    }
    Ok(())
}

/// The store's part of `status --json`: {"store": usage, "databases": [{"database",
/// "live_rows", "live_bytes", "held_back": [{"member", "table", "prefix", "last_seen_nanos",
/// "generations_behind"}]}]}.
pub async fn store_status_json(service: &service::Client) -> anyhow::Result<serde_json::Value> {
    let response = fetch_store_status(service).await?;
    let response = response.get()?;
    let mut databases = Vec::new();
    for db in response.get_databases()? {
        let mut held_back = Vec::new();
        for entry in db.get_held_back()? {
            let scope = entry.get_scope()?;
            held_back.push(json!({
                "member": entry.get_member()?.to_str()?,
                "table": scope.get_table()?.to_str()?,
                "prefix": scope.get_prefix()?.to_str()?,
                "last_seen_nanos": entry.get_last_seen_nanos(),
                "generations_behind": entry.get_generations_behind(),
            }));
        }
        databases.push(json!({
            "database": db.get_database()?.to_str()?,
            "live_rows": db.get_live_rows(),
            "live_bytes": db.get_live_bytes(),
            "held_back": held_back,
        }));
    }
    let mut store = usage_json(&read_usage(response.get_usage()?));
    store["backend"] = json!(response.get_usage()?.get_backend()?.to_str()?);
    Ok(json!({
        "store": store,
        "databases": databases,
    }))
}

/// "member 3f2a91c0... last seen 3.0 days ago holds back collection of t/: 120 generations
/// of the database behind (most on device ...: 118)". Generations count the commits of each
/// device in the whole database that this node holds and the member's report lacks, not
/// only the scope's (a generation vector does not say which scope a commit touched), and
/// the line says so.
fn held_back_line(entry: held_back::Reader<'_>, now: i64) -> anyhow::Result<String> {
    let member = entry.get_member()?.to_str()?;
    let scope = entry.get_scope()?;
    let scope = format!(
        "{}/{}",
        scope.get_table()?.to_str()?,
        scope.get_prefix()?.to_str()?
    );
    let short = &member[..member.len().min(8)];
    let behind = entry.get_generations_behind();
    let generations = if behind == 1 {
        "generation"
    } else {
        "generations"
    };
    Ok(match entry.get_last_seen_nanos() {
        0 => format!(
            "member {short}... never reported: holds back collection of {scope} \
             ({behind} {generations} of the database held here)"
        ),
        seen => format!(
            "member {short}... last seen {} ago holds back collection of {scope}: \
             {behind} {generations} of the database behind (most on device {:016x}: {})",
            ago(now.saturating_sub(seen)),
            entry.get_most_behind_device(),
            entry.get_most_behind_generations()
        ),
    })
}

/// A duration in nanoseconds, in the largest unit that keeps it at least 1.
pub(crate) fn ago(nanos: i64) -> String {
    let seconds = nanos as f64 / 1e9;
    match seconds {
        s if s >= 86_400.0 => format!("{:.1} days", s / 86_400.0),
        s if s >= 3_600.0 => format!("{:.1} hours", s / 3_600.0),
        s if s >= 60.0 => format!("{:.1} minutes", s / 60.0),
        s => format!("{s:.1} s"),
    }
}

#[cfg(test)]
mod tests {
    use super::{ago, held_back_line};
    use crate::schema::service_capnp::held_back;

    #[test]
    fn a_prefix_members_lag_is_shown_as_the_databases_generations() {
        let mut message = capnp::message::Builder::new_default();
        let mut entry = message.init_root::<held_back::Builder<'_>>();
        entry.set_member("ab".repeat(32));
        entry.set_last_seen_nanos(1_000_000_000);
        entry.set_generations_behind(12);
        entry.set_most_behind_device(7);
        entry.set_most_behind_generations(10);
        let mut scope = entry.reborrow().init_scope();
        scope.set_table("t");
        scope.set_prefix("a");
        let line = held_back_line(entry.into_reader(), 3_000_000_000).unwrap();
        assert_eq!(
            line,
            "member abababab... last seen 2.0 s ago holds back collection of t/a: 12 \
             generations of the database behind (most on device 0000000000000007: 10)"
        );
    }

    #[test]
    fn ago_picks_the_largest_unit() {
        assert_eq!(ago(3 * 86_400 * 1_000_000_000), "3.0 days");
        assert_eq!(ago(90 * 60 * 1_000_000_000), "1.5 hours");
        assert_eq!(ago(2_500_000_000), "2.5 s");
    }
}
