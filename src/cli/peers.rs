//! The sync verbs of the command line: `id` (this node's identity), `peer add | list |
//! remove` (with their arguments, [`PeerAction`]), and `status`, all through the running
//! node's app API.

use anyhow::Context;
use clap::Subcommand;

use crate::cli::client::{Target, with_service};
use crate::cli::output::outln;
use crate::clock::TimeSource;
use crate::rpc::client::remote_error;
use crate::schema::service_capnp::peer_status;
use crate::sync::peers::parse_scope;

#[derive(Debug, Subcommand)]
pub enum PeerAction {
    /// Sync DB's scopes with the peer at ADDR whose identity is FINGERPRINT (from `syncbase
    /// id` on that node), and accept its connections. Scopes are TABLE or TABLE/PREFIX.
    Add {
        #[command(flatten)]
        target: Target,
        #[arg(value_name = "ADDR")]
        peer_addr: String,
        fingerprint: String,
        db: String,
        #[arg(required = true, value_name = "TABLE[/PREFIX]")]
        scopes: Vec<String>,
        /// A local label for the peer, shown beside its fingerprint (at most 64 bytes).
        #[arg(long)]
        name: Option<String>,
    },
    /// List peers.
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Stop syncing with a peer (added at run time) and refuse its connections.
    Remove {
        #[command(flatten)]
        target: Target,
        fingerprint: String,
    },
}

/// `peer ...`: runs one peer action.
pub fn run(action: PeerAction) -> anyhow::Result<()> {
    match action {
        PeerAction::Add {
            target,
            peer_addr,
            fingerprint,
            db,
            scopes,
            name,
        } => add(
            &target,
            &peer_addr,
            &fingerprint,
            &db,
            &scopes,
            name.as_deref().unwrap_or_default(),
        ),
        PeerAction::List { target } => list(&target, false),
        PeerAction::Remove {
            target,
            fingerprint,
        } => remove(&target, &fingerprint),
    }
}

/// Prints the node's fingerprint, peer address and device id.
pub fn id(target: &Target) -> anyhow::Result<()> {
    with_service(target, |service| async move {
        let response = service
            .identity_request()
            .send()
            .promise
            .await
            .map_err(remote_error)?;
        let identity = response.get()?;
        outln!("fingerprint {}", identity.get_fingerprint()?.to_str()?)?;
        let address = identity.get_peer_address()?.to_str()?;
        outln!(
            "peer-address {}",
            if address.is_empty() {
                "none (serve --peer-listen ADDR)"
            } else {
                address
            }
        )?;
        outln!("device-id {:016x}", identity.get_device_id())?;
        for epoch in identity.get_epochs()? {
            outln!("epoch {}", epoch?.to_str()?)?;
        }
        Ok(())
    })
}

/// Adds a peer sharing the given scopes of one database.
fn add(
    target: &Target,
    address: &str,
    fingerprint: &str,
    db: &str,
    scopes: &[String],
    name: &str,
) -> anyhow::Result<()> {
    let scopes = scopes
        .iter()
        .map(|scope| parse_scope(scope).with_context(|| format!("scope {scope:?}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    with_service(target, |service| async move {
        let mut request = service.add_peer_request();
        let mut spec = request.get().init_peer();
        spec.set_address(address);
        spec.set_fingerprint(fingerprint);
        spec.set_database(db);
        spec.set_name(name);
        let mut list = spec.init_scopes(scopes.len() as u32);
        for (i, scope) in scopes.iter().enumerate() {
            let mut out = list.reborrow().get(i as u32);
            out.set_table(scope.table.as_str());
            out.set_prefix(scope.prefix.as_str());
        }
        request.send().promise.await.map_err(remote_error)?;
        outln!("added peer {fingerprint}")?;
        Ok(())
    })
}

/// Removes a peer added at run time.
fn remove(target: &Target, fingerprint: &str) -> anyhow::Result<()> {
    with_service(target, |service| async move {
        let mut request = service.remove_peer_request();
        request.get().set_fingerprint(fingerprint);
        let response = request.send().promise.await.map_err(remote_error)?;
        outln!(
            "{}",
            if response.get()?.get_existed() {
                "removed"
            } else {
                "absent"
            }
        )?;
        Ok(())
    })
}

/// Lists peers; `verbose` (`status`) adds the sync status of each, and how many syncgroups
/// other nodes proposed here wait for `sg accept`.
pub fn list(target: &Target, verbose: bool) -> anyhow::Result<()> {
    with_service(target, |service| async move {
        let response = service
            .list_peers_request()
            .send()
            .promise
            .await
            .map_err(remote_error)?;
        let peers = response.get()?.get_peers()?;
        if peers.is_empty() {
            outln!("no peers (add one with `syncbase peer add`)")?;
        }
        for peer in peers {
            print_peer(peer, verbose)?;
        }
        if verbose {
            super::syncgroups::print_attention(&service).await?;
            print_epochs(&service).await?;
            super::collect::print_store_status(&service).await?;
            let waiting = super::proposals::fetch(&service).await?.len();
            if waiting > 0 {
                outln!(
                    "proposals: {waiting} waiting (syncbase sg list; sg accept NAME or sg reject \
                     NAME)"
                )?;
            }
        }
        Ok(())
    })
}

/// Says whether this node ever moved to a new device id, and the last time why.
async fn print_epochs(
    service: &crate::schema::service_capnp::service::Client,
) -> anyhow::Result<()> {
    let response = service
        .identity_request()
        .send()
        .promise
        .await
        .map_err(remote_error)?;
    let epochs = response.get()?.get_epochs()?;
    if let Some(last) = epochs.iter().last() {
        outln!(
            "epochs: {} (the store was found restored or copied; last {})",
            epochs.len(),
            last?.to_str()?
        )?;
    }
    Ok(())
}

fn print_peer(peer: peer_status::Reader<'_>, verbose: bool) -> anyhow::Result<()> {
    let origin = if peer.get_from_config() {
        " (config)"
    } else {
        ""
    };
    let address = match peer.get_address()?.to_str()? {
        "" => "(no address: synced when it connects)",
        address => address,
    };
    let name = match peer.get_name()?.to_str()? {
        "" => String::new(),
        name => format!(" ({name})"),
    };
    outln!(
        "{}{name} {address}{origin}",
        peer.get_fingerprint()?.to_str()?
    )?;
    for db in peer.get_databases()? {
        let scopes: Vec<String> = db
            .get_scopes()?
            .iter()
            .map(|scope| {
                Ok(format!(
                    "{}/{}",
                    scope.get_table()?.to_str()?,
                    scope.get_prefix()?.to_str()?
                ))
            })
            .collect::<anyhow::Result<_>>()?;
        outln!(
            "  database {}: {}",
            db.get_database()?.to_str()?,
            scopes.join(" ")
        )?;
    }
    if verbose {
        print_status(peer)?;
    }
    Ok(())
}

fn print_status(peer: peer_status::Reader<'_>) -> anyhow::Result<()> {
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
    outln!(
        "  received: {} records, {} bytes; pending in: {} log entries",
        peer.get_records_received(),
        peer.get_bytes_received(),
        peer.get_records_pending_in()
    )?;
    outln!(
        "  sent: {} records, {} bytes; pending out: {} log entries",
        peer.get_records_sent(),
        peer.get_bytes_sent(),
        peer.get_records_pending_out()
    )?;
    let refused = peer.get_records_refused();
    if refused > 0 {
        outln!("  refused: {refused} records (their writer held no Write permission)")?;
    }
    let error = peer.get_last_error()?.to_str()?;
    if !error.is_empty() {
        outln!("  last error: {error}")?;
    }
    Ok(())
}
