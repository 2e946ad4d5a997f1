//! The sync verbs of the command line: `id` (this node's identity) and `peer add | list |
//! remove` (with their arguments, [`PeerAction`]), through the running node's app API; and
//! how a peer reads in a list or as JSON, which `status` uses too.

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::json;

use crate::cli::client::{Target, config_of, with_service};
use crate::cli::output::{Columns, json_line, outln};
use crate::identity::NodeIdentity;
use crate::rpc::client::remote_error;
use crate::schema::service_capnp::{peer_status, service};
use crate::sync::peers::parse_scope;

// No doc comment: the subcommand's help is its variant's in `cli::Command`.
#[derive(Debug, Args)]
pub struct IdArgs {
    #[command(flatten)]
    target: Target,
    /// One JSON object: {"fingerprint": string, "peer_address": string or null, "device_id":
    /// 16 hex digits, "epochs": [string]}; of a node not running, the fingerprint from its
    /// data directory with "peer_address" and "device_id" null.
    #[arg(long)]
    json: bool,
}

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
    /// List peers: fingerprint, address, where it was declared (config or `peer add`), and
    /// what it shares.
    List {
        #[command(flatten)]
        target: Target,
        /// One JSON object per peer: {"fingerprint": string, "name": string or null (its
        /// `peer add --name` label, else the name it chose), "address": string ("" if it has
        /// none), "from_config": bool, "databases": [{"database": string, "scopes":
        /// [{"table": string, "prefix": string}]}]}.
        #[arg(long)]
        json: bool,
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
        PeerAction::List { target, json } => list(&target, json),
        PeerAction::Remove {
            target,
            fingerprint,
        } => remove(&target, &fingerprint),
    }
}

/// This node's identity, as `id` and `status` read it.
pub(super) struct Identity {
    pub fingerprint: String,
    /// "" if the node has no peer listener.
    pub peer_address: String,
    pub device_id: u64,
    pub epochs: Vec<String>,
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
        })
    }

    pub(super) fn json(&self) -> serde_json::Value {
        json!({
            "fingerprint": self.fingerprint,
            "peer_address": (!self.peer_address.is_empty()).then_some(&self.peer_address),
            "device_id": format!("{:016x}", self.device_id),
            "epochs": self.epochs,
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
    let address = match identity.peer_address.as_str() {
        "" => "none (serve --peer-listen ADDR)",
        address => address,
    };
    outln!("peer-address {address}")?;
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
        }))?;
        return Ok(());
    }
    outln!("fingerprint {fingerprint}")?;
    outln!("peer-address unknown (the node is not running; read from its data directory)")?;
    Ok(())
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
        if response.get()?.get_existed() {
            outln!("removed peer {fingerprint}")?;
        } else {
            outln!("absent")?;
        }
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
                name_or_dash(peer)?.to_owned(),
                address(peer)?.to_owned(),
                from(peer).to_owned(),
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

/// The peer's name (its `peer add --name` label, else the name it chose), or `-`.
pub(super) fn name_or_dash<'a>(peer: peer_status::Reader<'a>) -> anyhow::Result<&'a str> {
    Ok(match peer.get_name()?.to_str()? {
        "" => "-",
        name => name,
    })
}

/// The peer's address, or what happens without one.
pub(super) fn address<'a>(peer: peer_status::Reader<'a>) -> anyhow::Result<&'a str> {
    Ok(match peer.get_address()?.to_str()? {
        "" => "(none: synced when it connects)",
        address => address,
    })
}

/// Where the peer was declared: the config file or `peer add`.
pub(super) fn from(peer: peer_status::Reader<'_>) -> &'static str {
    if peer.get_from_config() {
        "config"
    } else {
        "peer add"
    }
}

/// What the peer shares, one `DB: TABLE/PREFIX ...` entry per database.
pub(super) fn shares(peer: peer_status::Reader<'_>) -> anyhow::Result<Vec<String>> {
    let mut shares = Vec::new();
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
        shares.push(format!(
            "{}: {}",
            db.get_database()?.to_str()?,
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
        "databases": databases,
    }))
}
