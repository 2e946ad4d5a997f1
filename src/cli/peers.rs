//! The sync verbs of the command line: `id` (this node's identity), `peer add | list |
//! remove` (with their arguments, [`PeerAction`]), and `status`, all through the running
//! node's app API.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::bail;
use clap::Subcommand;

use crate::cli::client::{Target, with_service};
use crate::cli::output::outln;
use crate::clock::TimeSource;
use crate::genvec::Scope;
use crate::identity::Fingerprint;
use crate::rpc::client::remote_error;
use crate::schema::service_capnp::peer_status;
use crate::sync::peers::{parse_scope, scope_text};

#[derive(Debug, Subcommand)]
pub enum PeerAction {
    /// Sync DB's --prefix scopes with the peer at ADDR whose identity is FINGERPRINT (from
    /// `syncbase id` on that node), and accept its connections.
    ///
    /// A scope is written as in `sg create`: TABLE (the whole table) or TABLE/PREFIX (rows of
    /// TABLE whose keys start with PREFIX), one --prefix each: `--prefix meta --prefix
    /// thumbs/2024/`. Adding a known peer again adds the new scopes (and takes the new
    /// address) and says what changed. The old form, one scope after DB, is still read; two
    /// or more are refused, as `meta thumbs/2024/` reads like one table and prefix.
    Add {
        #[command(flatten)]
        target: Target,
        /// The peer's address, HOST:PORT (its peer.addr, `syncbase id`).
        #[arg(value_name = "ADDR")]
        peer_addr: String,
        fingerprint: String,
        db: String,
        /// A shared scope, TABLE or TABLE/PREFIX (repeat for several).
        #[arg(
            long = "prefix",
            value_name = "TABLE[/PREFIX]",
            required_unless_present = "scopes"
        )]
        prefixes: Vec<String>,
        /// The old form: one scope, TABLE or TABLE/PREFIX.
        #[arg(value_name = "TABLE[/PREFIX]")]
        scopes: Vec<String>,
    },
    /// List peers.
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Stop syncing with a peer (added at run time) and refuse its connections; with DB, stop
    /// sharing only DB's --prefix scopes (all of DB without --prefix).
    ///
    /// An unknown peer or scope fails with NoExist. A peer that is also a member of one of
    /// this node's syncgroups stays a peer for that syncgroup: the command says so and fails.
    Remove {
        #[command(flatten)]
        target: Target,
        fingerprint: String,
        /// Only this database's scopes.
        db: Option<String>,
        /// A scope to stop sharing, TABLE or TABLE/PREFIX as added (repeat for several).
        #[arg(long = "prefix", value_name = "TABLE[/PREFIX]", requires = "db")]
        prefixes: Vec<String>,
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
            prefixes,
            scopes,
        } => {
            let scopes = add_scopes(prefixes, scopes)?;
            add(&target, &peer_addr, &fingerprint, &db, &scopes)
        }
        PeerAction::List { target } => list(&target, false),
        PeerAction::Remove {
            target,
            fingerprint,
            db,
            prefixes,
        } => remove(&target, &fingerprint, db.as_deref(), &prefixes),
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

/// The scopes of `peer add`: the --prefix ones, and the old form's one positional scope
/// (clap requires one or the other). Errors: `InvalidArgument:` for two or more positional
/// ones (misread as one table and prefix), naming --prefix.
fn add_scopes(prefixes: Vec<String>, positional: Vec<String>) -> anyhow::Result<Vec<Scope>> {
    if positional.len() > 1 {
        let flags: Vec<String> = positional.iter().map(|s| format!("--prefix {s}")).collect();
        bail!(
            "InvalidArgument: scopes as separate words ({}) read like one table and prefix; \
             write each with --prefix TABLE[/PREFIX]: `{}` shares each as written, while \
             `--prefix {}` is prefix {:?} of table {:?}",
            positional.join(" "),
            flags.join(" "),
            positional.join("/"),
            positional[1..].join("/"),
            positional[0]
        );
    }
    let all: Vec<String> = prefixes.into_iter().chain(positional).collect();
    Ok(parse_scopes(&all)?)
}

/// Parses `TABLE[/PREFIX]` scopes, the one syntax of `peer add`, `peer remove` and `sg
/// create`; an error names the scope once and its id once (`InvalidArgument: scope "/x":
/// ...`).
pub(super) fn parse_scopes(texts: &[String]) -> Result<Vec<Scope>, crate::error::Error> {
    texts
        .iter()
        .map(|text| parse_scope(text).map_err(|e| e.context(&format!("scope {text:?}"))))
        .collect()
}

/// Adds a peer sharing the given scopes of one database, and says what changed: a new peer,
/// scopes added to a known one, its new address, or nothing.
fn add(
    target: &Target,
    address: &str,
    fingerprint: &str,
    db: &str,
    scopes: &[Scope],
) -> anyhow::Result<()> {
    let address = crate::address::check(address)?;
    let fingerprint = Fingerprint::parse(fingerprint).map_err(|e| e.context("fingerprint"))?;
    let fingerprint = fingerprint.as_str();
    with_service(target, |service| async move {
        let before = find_peer(&service, fingerprint).await?;
        let mut request = service.add_peer_request();
        let mut spec = request.get().init_peer();
        spec.set_address(address);
        spec.set_fingerprint(fingerprint);
        spec.set_database(db);
        let mut list = spec.init_scopes(scopes.len() as u32);
        for (i, scope) in scopes.iter().enumerate() {
            let mut out = list.reborrow().get(i as u32);
            out.set_table(scope.table.as_str());
            out.set_prefix(scope.prefix.as_str());
        }
        request.send().promise.await.map_err(remote_error)?;
        let shown: Vec<String> = scopes.iter().map(scope_text).collect();
        let Some((old_address, old_scopes)) = before else {
            outln!(
                "added peer {fingerprint} at {address}: database {db}: {}",
                shown.join(" ")
            )?;
            return Ok(());
        };
        let old: BTreeSet<String> = old_scopes.get(db).cloned().unwrap_or_default();
        let new: Vec<&String> = shown.iter().filter(|s| !old.contains(*s)).collect();
        let mut changes = Vec::new();
        if !new.is_empty() {
            let new: Vec<&str> = new.iter().map(|s| s.as_str()).collect();
            changes.push(format!("database {db} now also shares {}", new.join(" ")));
        }
        if old_address != address {
            changes.push(format!("address {address} (was {old_address})"));
        }
        if changes.is_empty() {
            outln!(
                "peer {fingerprint} unchanged: it already shares {} of database {db} at {address}",
                shown.join(" ")
            )?;
        } else {
            outln!("peer {fingerprint} (known): {}", changes.join("; "))?;
        }
        Ok(())
    })
}

/// A peer's address and scopes per database (as `TABLE[/PREFIX]`), if this node lists it.
async fn find_peer(
    service: &crate::schema::service_capnp::service::Client,
    fingerprint: &str,
) -> anyhow::Result<Option<(String, BTreeMap<String, BTreeSet<String>>)>> {
    let response = service
        .list_peers_request()
        .send()
        .promise
        .await
        .map_err(remote_error)?;
    for peer in response.get()?.get_peers()? {
        if peer.get_fingerprint()?.to_str()? != fingerprint {
            continue;
        }
        let mut databases = BTreeMap::new();
        for db in peer.get_databases()? {
            let scopes: &mut BTreeSet<String> = databases
                .entry(db.get_database()?.to_str()?.to_owned())
                .or_default();
            for scope in db.get_scopes()? {
                let table = scope.get_table()?.to_str()?;
                let prefix = scope.get_prefix()?.to_str()?;
                scopes.insert(scope_text(&Scope::new(table, prefix)));
            }
        }
        return Ok(Some((peer.get_address()?.to_str()?.to_owned(), databases)));
    }
    Ok(None)
}

/// Removes a peer added at run time, or some of its scopes; fails with `NoExist:` for an
/// unknown peer, and with `BadState:` when the peer stays as a syncgroup member.
fn remove(
    target: &Target,
    fingerprint: &str,
    db: Option<&str>,
    prefixes: &[String],
) -> anyhow::Result<()> {
    let scopes = parse_scopes(prefixes)?;
    with_service(target, |service| async move {
        let mut request = service.remove_peer_request();
        request.get().set_fingerprint(fingerprint);
        if let Some(db) = db {
            request.get().set_database(db);
            let mut list = request.get().init_scopes(scopes.len() as u32);
            for (i, scope) in scopes.iter().enumerate() {
                let mut out = list.reborrow().get(i as u32);
                out.set_table(scope.table.as_str());
                out.set_prefix(scope.prefix.as_str());
            }
        }
        let response = request.send().promise.await.map_err(remote_error)?;
        if !response.get()?.get_existed() {
            bail!("NoExist: no peer {fingerprint} here (`syncbase peer list` lists them)");
        }
        if let Some(db) = db {
            let what: Vec<String> = scopes.iter().map(scope_text).collect();
            let what = if what.is_empty() {
                "every scope".to_owned()
            } else {
                what.join(" ")
            };
            outln!("peer {fingerprint}: stopped sharing {what} of database {db}")?;
            return Ok(());
        }
        if find_peer(&service, fingerprint).await?.is_some() {
            bail!(
                "BadState: removed what `peer add` declared for {fingerprint}, but it stays a \
                 peer: it is a member of a syncgroup this node belongs to (`syncbase sg list`), \
                 whose prefixes it keeps syncing; to stop that, eject it (`syncbase sg eject \
                 NAME {fingerprint}` on an admin) or leave the syncgroup (`syncbase sg leave \
                 NAME`)"
            );
        }
        outln!("removed peer {fingerprint}")?;
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
    outln!("{} {address}{origin}", peer.get_fingerprint()?.to_str()?)?;
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
