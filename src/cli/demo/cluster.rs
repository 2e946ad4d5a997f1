//! The demo's three nodes: started as embedded servers (LMDB in temporary directories, app
//! API and TLS peer listener on ephemeral loopback ports), carol's links routed through
//! [`Relay`]s, and a syncgroup created on alice and joined by bob and carol with invites
//! through the app API, the calls `syncbase sg create|invite|join` make.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::relay::Relay;
use super::show::{Show, Tone};
use crate::cli::client::open_table;
use crate::cli::output::OutputError;
use crate::config::Config;
use crate::embedded::{EmbeddedOptions, EmbeddedServer, EmbeddedStorage};
use crate::genvec::Scope;
use crate::http::HttpServer;
use crate::names::{DbName, RowKey, TableName};
use crate::rpc::client::remote_error;
use crate::rpc::syncgroup_wire::write_spec;
use crate::schema::service_capnp::{InviteLevel, service, syncgroups, table};
use crate::sync::peers::PeerConfig;
use crate::syncgroup::{Permissions, Spec, SyncgroupName};

/// The database and table the demo shares.
pub const DB: &str = "demo";
pub const TABLE: &str = "notes";

/// The longest wait for the syncgroup to form and every link to come up.
const READY_LIMIT: Duration = Duration::from_secs(30);
/// The longest pause between redials of a cut link: short, so healing shows at once.
const REDIAL_MAX: Duration = Duration::from_millis(300);

/// One demo node.
pub struct Member {
    pub name: &'static str,
    /// Its table `notes` of database `demo`, through its app API (dropped before the server).
    pub table: table::Client,
    pub server: EmbeddedServer,
}

impl Member {
    /// The row `key` of `notes` as this node holds it now (read below the app API, so the
    /// demo can poll it every millisecond without loading the node).
    pub fn read(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let (db, table) = (DbName::parse(DB)?, TableName::parse(TABLE)?);
        Ok(self
            .server
            .node()
            .store()
            .get(&db, &table, &RowKey::parse(key)?)?)
    }

    /// Puts `value` at `key` through the app API, as an app (or `syncbase put`) would.
    pub async fn put(&self, key: &str, value: &str) -> anyhow::Result<()> {
        let mut request = self.table.put_request();
        request.get().set_key(key);
        request.get().set_value(value.as_bytes());
        request.send().promise.await.map_err(remote_error)?;
        Ok(())
    }

    /// Bytes of records this node has received from its peers.
    pub fn bytes_received(&self) -> u64 {
        let peers = self.server.node().peers().list();
        peers.iter().map(|(_, status)| status.bytes_received).sum()
    }

    fn service(&self) -> &service::Client {
        self.server.service()
    }
}

/// The three nodes and carol's relays. Relays go first so they close before the nodes stop.
pub struct Cluster {
    relays: Vec<Relay>,
    pub nodes: Vec<Member>,
}

impl Cluster {
    /// Starts alice, bob and carol, routes carol's links through relays, forms the syncgroup
    /// and waits until every node holds it and every link is up; prints each step.
    pub async fn start(show: Show) -> anyhow::Result<Cluster> {
        show.heading("three nodes start (LMDB in temporary directories, loopback ports)")?;
        let mut nodes = Vec::new();
        for name in ["alice", "bob", "carol"] {
            let member = start_member(name).await?;
            show.line(&format!(
                "{}  app {}  peers {}  key {}",
                show.node(name),
                member.server.addr(),
                member.server.peer_address(),
                show.paint(
                    Tone::Dim,
                    &short(member.server.node().identity().fingerprint().as_str())
                ),
            ))?;
            nodes.push(member);
        }
        let relays = route_carol_through_relays(&nodes, show).await?;
        let cluster = Cluster { relays, nodes };
        cluster.form_syncgroup(show).await?;
        cluster.wait_until_linked().await?;
        show.line(&show.paint(
            Tone::Good,
            "every node holds the syncgroup; every link is up",
        ))?;
        Ok(cluster)
    }

    /// The node named `name`.
    pub fn node(&self, name: &str) -> &Member {
        self.nodes
            .iter()
            .find(|member| member.name == name)
            .expect("the demo's three nodes")
    }

    /// Cuts carol off (`up = false`) or lets her links come back.
    pub fn set_carol_linked(&self, up: bool) {
        for relay in &self.relays {
            if up { relay.restore() } else { relay.cut() }
        }
    }

    /// Creates the syncgroup on alice, then invites and joins bob and carol.
    async fn form_syncgroup(&self, show: Show) -> anyhow::Result<()> {
        let alice = self.node("alice");
        let name = SyncgroupName::parse(&format!("{}/{DB}", alice.server.peer_address()))?;
        show.heading(&format!(
            "alice creates syncgroup {name}, sharing table {TABLE}"
        ))?;
        create(alice.service(), name.as_str()).await?;
        for member in ["bob", "carol"] {
            let invite = invite(alice.service(), name.as_str()).await?;
            show.line(&format!(
                "{}  mints an invite   {}",
                show.node("alice"),
                show.paint(Tone::Dim, &printable_invite(&invite)),
            ))?;
            join(self.node(member).service(), &invite).await?;
            show.line(&format!("{}  joins with it", show.node(member)))?;
        }
        Ok(())
    }

    /// Waits until every node lists three members, none pending, and is connected to both
    /// others.
    async fn wait_until_linked(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_LIMIT;
        while !self.linked()? {
            if Instant::now() > deadline {
                bail!("the syncgroup did not form within {READY_LIMIT:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    fn linked(&self) -> anyhow::Result<bool> {
        for member in &self.nodes {
            let node = member.server.node();
            let views = node.list_syncgroups(Some(&DbName::parse(DB)?))?;
            let formed = views
                .iter()
                .any(|view| view.record.sg.joiners.len() == 3 && view.local.pending.is_none());
            let peers = node.peers().list();
            let connected = peers
                .iter()
                .filter(|(config, status)| status.connected && !config.syncgroups.is_empty())
                .count();
            if !formed || connected < 2 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// With `--keep`: the CLI lines that reach each node, each working as pasted.
    pub fn print_cli_lines(&self, show: Show, pages: &[SocketAddr]) -> Result<(), OutputError> {
        show.heading(
            "the nodes keep running: reach them with the CLI or their status pages (Ctrl-C \
             stops them)",
        )?;
        let exe = std::env::current_exe()
            .map(|path| path.display().to_string())
            .unwrap_or_else(|_| "syncbase".into());
        for (i, member) in self.nodes.iter().enumerate() {
            show.line(&show.node(member.name))?;
            if let Some(page) = pages.get(i) {
                show.line(&format!(
                    "  status page: http://{page}/ (metrics: /metrics)"
                ))?;
            }
            for verb in [
                &["get", DB, TABLE, "color"][..],
                &["scan", DB, TABLE],
                &["status"],
            ] {
                show.line(&format!("  {}", cli_line(&exe, member, verb)))?;
            }
        }
        Ok(())
    }
}

impl Cluster {
    /// Serves each node's status page and `/metrics` on a loopback port of its own, until
    /// the process ends; returns their addresses, in the nodes' order.
    pub async fn serve_pages(&self) -> anyhow::Result<Vec<SocketAddr>> {
        let mut pages = Vec::new();
        for member in &self.nodes {
            let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
            let server = HttpServer::bind(loopback, member.server.node().clone()).await?;
            pages.push(server.local_addr());
            tokio::spawn(server.serve(std::future::pending()));
        }
        Ok(pages)
    }
}

/// `EXE VERB --addr ADDR --token-file FILE ARGS...` for `member`, quoted for a POSIX shell.
fn cli_line(exe: &str, member: &Member, verb: &[&str]) -> String {
    let token = Config {
        data_dir: member.server.data_dir().to_path_buf(),
        ..Config::default()
    }
    .token_path();
    let (addr, token) = (
        member.server.addr().to_string(),
        token.display().to_string(),
    );
    let mut words = vec![exe, verb[0], "--addr", &addr, "--token-file", &token];
    words.extend(&verb[1..]);
    shlex::try_join(words.iter().copied()).unwrap_or_else(|_| words.join(" "))
}

/// Starts one node on LMDB in a temporary directory, with a loopback peer listener.
async fn start_member(name: &'static str) -> anyhow::Result<Member> {
    let options = EmbeddedOptions {
        peer_listen: Some("127.0.0.1:0".into()),
        redial_max: REDIAL_MAX,
        // What fellow members show beside its fingerprint (`--keep`'s `status`, `sg show`).
        name: Some(name.to_owned()),
        ..EmbeddedOptions::new(EmbeddedStorage::Lmdb)
    };
    let server = EmbeddedServer::start_with(options)
        .await
        .with_context(|| format!("starting node {name}"))?;
    let table = open_table(server.service(), DB, TABLE).await?;
    Ok(Member {
        name,
        table,
        server,
    })
}

/// Puts a relay in front of carol's peer listener (alice and bob dial it) and one in front
/// of each of alice's and bob's (carol dials those), declared as each side's address of the
/// other with the call `syncbase peer add` makes; the syncgroup's members are the same peers,
/// so their links take these addresses (a declared address wins).
async fn route_carol_through_relays(nodes: &[Member], show: Show) -> anyhow::Result<Vec<Relay>> {
    let [alice, bob, carol] = nodes else {
        bail!("the demo runs three nodes");
    };
    let mut relays = Vec::new();
    let to_carol = Relay::start(carol.server.peer_address().parse()?).await?;
    for (from, to, relay_addr) in [
        (alice, carol, to_carol.addr()),
        (bob, carol, to_carol.addr()),
    ] {
        declare(from, to, &relay_addr.to_string()).await?;
    }
    relays.push(to_carol);
    for other in [alice, bob] {
        let relay = Relay::start(other.server.peer_address().parse()?).await?;
        declare(carol, other, &relay.addr().to_string()).await?;
        relays.push(relay);
    }
    show.line("carol's links run through TCP relays the demo can cut")?;
    Ok(relays)
}

/// `from` declares `to` as a peer reached at `address`, sharing table `notes`.
async fn declare(from: &Member, to: &Member, address: &str) -> anyhow::Result<()> {
    let fingerprint = to.server.node().identity().fingerprint().clone();
    let peer = PeerConfig::new(address, fingerprint, DB, vec![Scope::new(TABLE, "")])?;
    from.server.node().add_peer(peer).await?;
    Ok(())
}

fn syncgroups_of(service: &service::Client) -> syncgroups::Client {
    service
        .syncgroups_request()
        .send()
        .pipeline
        .get_syncgroups()
}

/// `sg create`: the syncgroup `name` sharing all of table `notes`, its creator its admin.
async fn create(service: &service::Client, name: &str) -> anyhow::Result<()> {
    let spec = Spec {
        description: "syncbase demo".into(),
        perms: Permissions::default(),
        prefixes: vec![Scope::new(TABLE, "")],
        mount_tables: Vec::new(),
        is_private: false,
    };
    let mut request = syncgroups_of(service).create_request();
    request.get().set_database(DB);
    request.get().set_name(name);
    write_spec(&spec, request.get().init_spec());
    request.send().promise.await.map_err(remote_error)?;
    Ok(())
}

/// `sg invite --level read-write --expires 600`: a one-use invite token.
async fn invite(service: &service::Client, name: &str) -> anyhow::Result<String> {
    let mut request = syncgroups_of(service).invite_request();
    request.get().set_name(name);
    request.get().set_level(InviteLevel::ReadWrite);
    request.get().set_expires_in_seconds(600);
    request.get().set_uses(1);
    let response = request.send().promise.await.map_err(remote_error)?;
    Ok(response.get()?.get_token()?.to_str()?.to_owned())
}

/// `sg join INVITE`.
async fn join(service: &service::Client, invite: &str) -> anyhow::Result<()> {
    let mut request = syncgroups_of(service).join_request();
    request.get().set_invite(invite);
    request.send().promise.await.map_err(remote_error)?;
    Ok(())
}

/// An invite as the demo prints it: the admin's fingerprint shortened, the secret hidden.
fn printable_invite(invite: &str) -> String {
    let public = invite.split('#').next().unwrap_or_default();
    match public
        .strip_prefix("syncbase://")
        .and_then(|rest| rest.split_once('@'))
    {
        Some((fingerprint, route)) => format!("syncbase://{}@{route}#<secret>", short(fingerprint)),
        None => "<invite>".into(),
    }
}

/// The first 12 hex digits of a fingerprint.
fn short(fingerprint: &str) -> String {
    format!("{}…", &fingerprint[..12.min(fingerprint.len())])
}
