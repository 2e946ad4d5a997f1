//! The sync verbs of the command line: `id` (this node's identity) and `peer add | list |
//! remove` (with their arguments, [`PeerAction`]), through the running node's app API; and
//! how a peer reads in a list or as JSON, which `status` uses too.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::bail;
use clap::{Args, Subcommand};
use serde_json::json;

use crate::cli::client::{Target, with_service};
use crate::cli::output::{Columns, count, json_line, outln, shown};
use crate::cli::reach::config_of;
use crate::genvec::Scope;
use crate::identity::{Fingerprint, NodeIdentity};
use crate::rpc::client::remote_error;
use crate::schema::service_capnp::{peer_status, service};
use crate::sync::peers::parse_scope;

// No doc comment: the subcommand's help is its variant's in `cli::Command`.
#[derive(Debug, Args)]
pub struct IdArgs {
    #[command(flatten)]
    target: Target,
    /// One JSON object: {"fingerprint": string, "peer_address": string or null, "device_id":
    /// 16 hex digits, "epochs": [string], "name": string or null (the name it shows fellow
    /// members), "role": "normal", "server" or "leaf"}; of a node not running, the
    /// fingerprint from its data directory with the others null (epochs []).
    #[arg(long)]
    json: bool,
}

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
        /// A local label for the peer, shown beside its fingerprint (at most 64 bytes).
        #[arg(long)]
        name: Option<String>,
    },
    /// List peers: fingerprint, name, address, where it comes from (the config, `peer add`,
    /// and/or N syncgroups held here it is a member of), and what it shares.
    List {
        #[command(flatten)]
        target: Target,
        /// One JSON object per peer: {"fingerprint": string, "name": string or null (its
        /// `peer add --name` label, else the name it chose), "address": string ("" if it has
        /// none), "from_config": bool, "declared": bool (by `peer add` or the config),
        /// "syncgroups": number (syncgroups held here it is a member of), "databases":
        /// [{"database": string, "scopes": [{"table": string, "prefix": string}]}]}.
        #[arg(long)]
        json: bool,
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
            name,
        } => {
            let scopes = add_scopes(prefixes, scopes)?;
            add(
                &target,
                &peer_addr,
                &fingerprint,
                &db,
                &scopes,
                name.as_deref().unwrap_or_default(),
            )
        }
        PeerAction::List { target, json } => list(&target, json),
        PeerAction::Remove {
            target,
            fingerprint,
            db,
            prefixes,
        } => remove(&target, &fingerprint, db.as_deref(), &prefixes),
    }
}

/// This node's identity, as `id` and `status` read it.
pub(super) struct Identity {
    pub fingerprint: String,
    /// "" if the node has no peer listener.
    pub peer_address: String,
    pub device_id: u64,
    pub epochs: Vec<String>,
    /// The name it shows fellow members ("" if none).
    pub name: String,
    /// `normal`, `server` or `leaf`.
    pub role: String,
}

impl Identity {
    pub(super) async fn fetch(service: &service::Client) -> anyhow::Result<Identity> {
        let response = service
            .identity_request()
            .send()
            .promise
            .await
            .map_err(remote_error)?;
        let identity = response.get()?;
        Ok(Identity {
            fingerprint: identity.get_fingerprint()?.to_str()?.to_owned(),
            peer_address: identity.get_peer_address()?.to_str()?.to_owned(),
            device_id: identity.get_device_id(),
            epochs: identity
                .get_epochs()?
                .iter()
                .map(|epoch| Ok(epoch?.to_str()?.to_owned()))
                .collect::<anyhow::Result<_>>()?,
            name: identity.get_name()?.to_str()?.to_owned(),
            role: identity.get_role()?.to_str()?.to_owned(),
        })
    }

    /// What `id` prints for its peer address: the address, or why there is none.
    fn peer_address_text(&self) -> &str {
        match (self.peer_address.as_str(), self.role.as_str()) {
            ("", "leaf") => {
                "none (a leaf: it accepts no connections and dials its syncgroups' servers)"
            }
            ("", _) => "none (serve --peer-listen ADDR)",
            (address, _) => address,
        }
    }

    pub(super) fn json(&self) -> serde_json::Value {
        json!({
            "fingerprint": self.fingerprint,
            "peer_address": (!self.peer_address.is_empty()).then_some(&self.peer_address),
            "device_id": format!("{:016x}", self.device_id),
            "epochs": self.epochs,
            "name": (!self.name.is_empty()).then_some(&self.name),
            "role": self.role,
        })
    }
}

/// `id`: prints the node's fingerprint, peer address and device id; when no node answers,
/// the fingerprint stored in its data directory ([`id_from_disk`]).
pub fn id(args: &IdArgs) -> anyhow::Result<()> {
    let fetched = with_service(&args.target, |service| async move {
        Identity::fetch(&service).await
    });
    let identity = match fetched {
        Err(error) if is_unreachable(&error) => return id_from_disk(args, error),
        fetched => fetched?,
    };
    if args.json {
        json_line(&identity.json())?;
        return Ok(());
    }
    outln!("fingerprint {}", identity.fingerprint)?;
    if !identity.name.is_empty() {
        outln!("name {}", shown(identity.name.as_bytes()))?;
    }
    outln!("role {}", identity.role)?;
    outln!("peer-address {}", identity.peer_address_text())?;
    outln!("device-id {:016x}", identity.device_id)?;
    for epoch in &identity.epochs {
        outln!("epoch {epoch}")?;
    }
    Ok(())
}

/// Whether `error` is a node that could not be reached (no address or token file, a refused
/// connection), as opposed to an answer from one.
fn is_unreachable(error: &anyhow::Error) -> bool {
    error
        .chain()
        .any(|cause| cause.downcast_ref::<std::io::Error>().is_some())
}

/// `id` of a stopped node: its fingerprint from `peer.crt` in its data directory (its peer
/// address and device id need it running); without one, `unreachable`, the error of the try.
fn id_from_disk(args: &IdArgs, unreachable: anyhow::Error) -> anyhow::Result<()> {
    let data_dir = config_of(&args.target)?.data_dir;
    let Some(fingerprint) = NodeIdentity::fingerprint_on_disk(&data_dir)? else {
        return Err(unreachable);
    };
    if args.json {
        json_line(&json!({
            "fingerprint": fingerprint.to_string(),
            "peer_address": null,
            "device_id": null,
            "epochs": [],
            "name": null,
            "role": null,
        }))?;
        return Ok(());
    }
    outln!("fingerprint {fingerprint}")?;
    outln!("peer-address unknown (the node is not running; read from its data directory)")?;
    Ok(())
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

/// What `peer list` tells of one peer before `peer add` changes it.
struct Known {
    address: String,
    /// Its `peer add --name` label, else the name it chose ("" if none).
    name: String,
    /// Its scopes per database, as `TABLE[/PREFIX]`.
    scopes: BTreeMap<String, BTreeSet<String>>,
}

/// Adds a peer sharing the given scopes of one database, and says what changed, in one line
/// starting with a past-tense verb: `added peer ...`, `updated peer ...: ...` (new scopes, a
/// new address, a new name) or `changed nothing: ...`.
fn add(
    target: &Target,
    address: &str,
    fingerprint: &str,
    db: &str,
    scopes: &[Scope],
    name: &str,
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
        spec.set_name(name);
        let mut list = spec.init_scopes(scopes.len() as u32);
        for (i, scope) in scopes.iter().enumerate() {
            let mut out = list.reborrow().get(i as u32);
            out.set_table(scope.table.as_str());
            out.set_prefix(scope.prefix.as_str());
        }
        request.send().promise.await.map_err(remote_error)?;
        let line = added_line(before.as_ref(), address, fingerprint, db, scopes, name);
        outln!("{line}")?;
        Ok(())
    })
}

/// `peer add`'s line, given what the node listed of the peer before (`None`: a new peer).
fn added_line(
    before: Option<&Known>,
    address: &str,
    fingerprint: &str,
    db: &str,
    scopes: &[Scope],
    name: &str,
) -> String {
    let shown_scopes: Vec<String> = scopes.iter().map(Scope::to_string).collect();
    let Some(known) = before else {
        let named = match name {
            "" => String::new(),
            name => format!(" named {}", shown(name.as_bytes())),
        };
        return format!(
            "added peer {fingerprint}{named} at {address}: database {db}: {}",
            shown_scopes.join(" ")
        );
    };
    let old = known.scopes.get(db).cloned().unwrap_or_default();
    let new: Vec<&str> = shown_scopes
        .iter()
        .filter(|s| !old.contains(*s))
        .map(String::as_str)
        .collect();
    let mut changes = Vec::new();
    if !new.is_empty() {
        changes.push(format!("database {db} now also shares {}", new.join(" ")));
    }
    if known.address != address {
        changes.push(format!("address {address} (was {})", known.address));
    }
    if !name.is_empty() && known.name != name {
        changes.push(match known.name.as_str() {
            "" => format!("named {}", shown(name.as_bytes())),
            old => format!(
                "named {} (was {})",
                shown(name.as_bytes()),
                shown(old.as_bytes())
            ),
        });
    }
    if changes.is_empty() {
        format!(
            "changed nothing: peer {fingerprint} already shares {} of database {db} at {address}",
            shown_scopes.join(" ")
        )
    } else {
        format!("updated peer {fingerprint}: {}", changes.join("; "))
    }
}

/// The peer as this node lists it, if it does.
async fn find_peer(
    service: &crate::schema::service_capnp::service::Client,
    fingerprint: &str,
) -> anyhow::Result<Option<Known>> {
    let response = fetch(service).await?;
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
                scopes.insert(Scope::new(table, prefix).to_string());
            }
        }
        return Ok(Some(Known {
            address: peer.get_address()?.to_str()?.to_owned(),
            name: peer.get_name()?.to_str()?.to_owned(),
            scopes: databases,
        }));
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
    // Checked and printed in its one spelling (lower-case hex), whatever case was given.
    let fingerprint = Fingerprint::parse(fingerprint)
        .map_err(|e| e.context("fingerprint"))?
        .to_string();
    let fingerprint = fingerprint.as_str();
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
            let what: Vec<String> = scopes.iter().map(Scope::to_string).collect();
            let what = match what.len() {
                0 => "every scope".to_owned(),
                1 => format!("scope {}", what[0]),
                _ => format!("scopes {}", what.join(" ")),
            };
            outln!("removed {what} of database {db} from peer {fingerprint}")?;
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

/// `peer list`: one aligned row per peer under a header, or one JSON object per peer.
fn list(target: &Target, json: bool) -> anyhow::Result<()> {
    with_service(target, |service| async move {
        let response = fetch(&service).await?;
        let peers = response.get()?.get_peers()?;
        if json {
            for peer in peers {
                json_line(&peer_json(peer)?)?;
            }
            return Ok(());
        }
        if peers.is_empty() {
            outln!("no peers (add one with `syncbase peer add`)")?;
            return Ok(());
        }
        let mut columns = Columns::default();
        columns.row(["PEER", "NAME", "ADDRESS", "FROM", "SHARES"]);
        for peer in peers {
            columns.row([
                peer.get_fingerprint()?.to_str()?.to_owned(),
                name_or_dash(peer)?,
                address(peer)?.to_owned(),
                from(peer),
                shares(peer)?.join("; "),
            ]);
        }
        columns.print("")?;
        Ok(())
    })
}

/// The node's peers and their sync status.
pub(super) async fn fetch(
    service: &service::Client,
) -> anyhow::Result<capnp::capability::Response<service::list_peers_results::Owned>> {
    service
        .list_peers_request()
        .send()
        .promise
        .await
        .map_err(remote_error)
}

/// Whether two scopes share rows: the same table, one prefix starting with the other.
fn overlap(a: &Scope, b: &Scope) -> bool {
    a.table == b.table && (a.prefix.starts_with(&b.prefix) || b.prefix.starts_with(&a.prefix))
}

/// The declared peers (config file or `peer add`) of this node that share rows of `db` under
/// `prefixes`, one phrase each (`NAME FINGERPRINT (t/p)`), or only `peer` if given: rows a
/// syncgroup no longer shares keep syncing with them (README, "Peers"), which `sg eject`,
/// `sg revoke` and a lost syncgroup's lines say.
pub(crate) async fn declared_sharing(
    service: &service::Client,
    db: &str,
    prefixes: &[Scope],
    peer: Option<&str>,
) -> anyhow::Result<Vec<String>> {
    let response = fetch(service).await?;
    let mut sharing = Vec::new();
    for status in response.get()?.get_peers()? {
        let fingerprint = status.get_fingerprint()?.to_str()?;
        if !status.get_declared() || peer.is_some_and(|peer| peer != fingerprint) {
            continue;
        }
        let mut scopes = Vec::new();
        for shared in status.get_databases()? {
            if shared.get_database()?.to_str()? != db {
                continue;
            }
            for scope in shared.get_scopes()? {
                let scope = Scope::new(scope.get_table()?.to_str()?, scope.get_prefix()?.to_str()?);
                if prefixes.iter().any(|prefix| overlap(prefix, &scope)) {
                    scopes.push(scope.to_string());
                }
            }
        }
        if !scopes.is_empty() {
            let name = match status.get_name()?.to_str()? {
                "" => String::new(),
                name => format!("{} ", shown(name.as_bytes())),
            };
            sharing.push(format!("{name}{fingerprint} ({})", scopes.join(" ")));
        }
    }
    Ok(sharing)
}

/// The peer's name (its `peer add --name` label, else the name it chose), escaped as
/// [`shown`] escapes it (it may come from the peer), or `-`.
pub(super) fn name_or_dash(peer: peer_status::Reader<'_>) -> anyhow::Result<String> {
    Ok(match peer.get_name()?.to_str()? {
        "" => "-".to_owned(),
        name => shown(name.as_bytes()),
    })
}

/// The peer's address, or what happens without one.
pub(super) fn address<'a>(peer: peer_status::Reader<'a>) -> anyhow::Result<&'a str> {
    Ok(match peer.get_address()?.to_str()? {
        "" => "(none: synced when it connects)",
        address => address,
    })
}

/// Where the peer comes from: the config file or `peer add`, and/or the syncgroups held here
/// that it is a member of (then `peer remove` cannot drop it: `sg eject` or `sg leave` can).
pub(super) fn from(peer: peer_status::Reader<'_>) -> String {
    let declared = match (peer.get_declared(), peer.get_from_config()) {
        (true, true) => Some("config"),
        (true, false) => Some("peer add"),
        (false, _) => None,
    };
    let syncgroups = match peer.get_syncgroups() {
        0 => None,
        n => Some(count(u64::from(n), "syncgroup", "syncgroups")),
    };
    match (declared, syncgroups) {
        (Some(declared), Some(syncgroups)) => format!("{declared}, {syncgroups}"),
        (Some(declared), None) => declared.to_owned(),
        (None, Some(syncgroups)) => syncgroups,
        (None, None) => "-".to_owned(),
    }
}

/// What the peer shares, one `DB: TABLE[/PREFIX] ...` entry per database (its name escaped
/// as [`shown`] escapes it: a data directory from an older build may hold any name), each
/// scope as `--prefix` takes it.
pub(super) fn shares(peer: peer_status::Reader<'_>) -> anyhow::Result<Vec<String>> {
    let mut shares = Vec::new();
    for db in peer.get_databases()? {
        let scopes: Vec<String> = db
            .get_scopes()?
            .iter()
            .map(|scope| {
                let (table, prefix) = (scope.get_table()?.to_str()?, scope.get_prefix()?.to_str()?);
                Ok(Scope::new(table, prefix).to_string())
            })
            .collect::<anyhow::Result<_>>()?;
        shares.push(format!(
            "{}: {}",
            shown(db.get_database()?.to_str()?.as_bytes()),
            scopes.join(" ")
        ));
    }
    Ok(shares)
}

/// A peer as `peer list --json` prints it (`status --json` adds its sync status).
pub(super) fn peer_json(peer: peer_status::Reader<'_>) -> anyhow::Result<serde_json::Value> {
    let mut databases = Vec::new();
    for db in peer.get_databases()? {
        let mut scopes = Vec::new();
        for scope in db.get_scopes()? {
            scopes.push(json!({
                "table": scope.get_table()?.to_str()?,
                "prefix": scope.get_prefix()?.to_str()?,
            }));
        }
        databases.push(json!({"database": db.get_database()?.to_str()?, "scopes": scopes}));
    }
    Ok(json!({
        "fingerprint": peer.get_fingerprint()?.to_str()?,
        "name": Some(peer.get_name()?.to_str()?).filter(|name| !name.is_empty()),
        "address": peer.get_address()?.to_str()?,
        "from_config": peer.get_from_config(),
        "declared": peer.get_declared(),
        "syncgroups": peer.get_syncgroups(),
        "databases": databases,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(name: &str) -> Known {
        Known {
            address: "h:1".into(),
            name: name.into(),
            scopes: BTreeMap::from([("db".into(), BTreeSet::from(["t".into()]))]),
        }
    }

    fn line(before: Option<&Known>, address: &str, scopes: &[&str], name: &str) -> String {
        let scopes: Vec<Scope> = scopes.iter().map(|s| Scope::new(*s, "")).collect();
        added_line(before, address, "fp", "db", &scopes, name)
    }

    #[test]
    fn every_peer_add_line_starts_with_a_past_tense_verb() {
        assert_eq!(
            line(None, "h:1", &["t"], "dee"),
            "added peer fp named dee at h:1: database db: t"
        );
        assert_eq!(
            line(Some(&known("")), "h:1", &["t"], ""),
            "changed nothing: peer fp already shares t of database db at h:1"
        );
        assert_eq!(
            line(Some(&known("")), "h:2", &["t", "u"], ""),
            "updated peer fp: database db now also shares u; address h:2 (was h:1)"
        );
    }

    #[test]
    fn a_name_given_on_a_re_add_is_mentioned() {
        assert_eq!(
            line(Some(&known("")), "h:1", &["t"], "dee"),
            "updated peer fp: named dee"
        );
        assert_eq!(
            line(Some(&known("old")), "h:1", &["t"], "dee"),
            "updated peer fp: named dee (was old)"
        );
        assert!(line(Some(&known("dee")), "h:1", &["t"], "dee").starts_with("changed nothing"));
    }
}
