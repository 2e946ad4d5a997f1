//! The attacker's side of `bench abuse` and `tests/abuse.rs`: connections that try to make a
//! node hold memory. Each attack opens its connections (from source addresses 127.0.0.2 to
//! 127.0.0.254 when the node is on loopback, so they look like many clients), leaves them
//! stalled, and reports how many the node closed. Loopback only: the bench and the tests aim
//! it at their own node.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::identity::{Fingerprint, NodeIdentity};
use crate::rpc::frame::read_frame;
use crate::rpc::limits::{ConnectionBudget, NodeBudget};
use crate::rpc::tls::TlsConnector;
use crate::rpc::transport::BoxIo;

use super::raw;

/// A Cap'n Proto frame header announcing one segment of 0x780000 words: 60 MiB.
pub const HEADER_60_MIB: [u8; 8] = [0, 0, 0, 0, 0, 0, 0x78, 0];

/// How the node is attacked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Attack {
    /// App port, before login: a 60 MiB frame header, then silence.
    AppPreAuth,
    /// App port, logged in (with the token): a 60 MiB frame header, then silence.
    AppPostAuth,
    /// Peer port, before TLS: a 60 MiB frame header, then silence.
    PeerPreAuth,
    /// Peer port, after a TLS handshake with a fresh self-signed identity per connection: a 60
    /// MiB frame header, then silence.
    PeerPostAuth,
    /// App port, logged in: pipelined `Table.get` calls for a large value, no answer read.
    UnreadAnswers,
}

/// What the attacker aims at.
#[derive(Clone, Debug)]
pub struct Target {
    pub app: SocketAddr,
    /// The peer listener (needed by the peer attacks).
    pub peer: Option<SocketAddr>,
    /// The node's fingerprint (needed by `PeerPostAuth`).
    pub fingerprint: Option<Fingerprint>,
    /// The client token (needed by the logged-in attacks).
    pub token: String,
    /// The row `UnreadAnswers` gets: database, table, key.
    pub row: (String, String, String),
}

/// An attack in place: its connections stay open until this drops.
pub struct Attacking {
    held: Vec<BoxIo>,
    writers: Vec<tokio::task::AbortHandle>,
    /// Connections attempted.
    pub attempted: usize,
    /// Connections the node refused or closed (counted after a short settling pause).
    pub closed_by_node: usize,
}

impl Attacking {
    /// Connections the node still holds open.
    pub fn open(&self) -> usize {
        self.held.len() + self.writers.len()
    }
}

impl Drop for Attacking {
    fn drop(&mut self) {
        for writer in &self.writers {
            writer.abort();
        }
    }
}

/// Connection setups in flight at once.
const PARALLEL: usize = 16;
/// Pause after setting up, before counting the connections the node closed.
const SETTLE: Duration = Duration::from_millis(500);

/// Opens `connections` attacking connections (`UnreadAnswers`: one, sending `gets` calls) and
/// leaves them stalled.
pub async fn launch(
    attack: Attack,
    target: &Target,
    connections: usize,
    gets: usize,
) -> anyhow::Result<Attacking> {
    if attack == Attack::UnreadAnswers {
        return unread_answers(target, gets).await;
    }
    let opened: Vec<Option<BoxIo>> = futures::stream::iter(0..connections)
        .map(|i| async move { open(attack, target, i).await.ok() })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    tokio::time::sleep(SETTLE).await;
    let mut held = Vec::new();
    for mut io in opened.into_iter().flatten() {
        if still_open(&mut io).await {
            held.push(io);
        }
    }
    Ok(Attacking {
        closed_by_node: connections - held.len(),
        held,
        writers: Vec::new(),
        attempted: connections,
    })
}

/// One attacking connection, its 60 MiB header sent.
async fn open(attack: Attack, target: &Target, i: usize) -> anyhow::Result<BoxIo> {
    let peer = || target.peer.context("the peer attacks need a peer address");
    let mut io: BoxIo = match attack {
        Attack::AppPreAuth => Box::new(dial(target.app, i).await?),
        Attack::AppPostAuth => {
            let mut tcp = tokio::io::BufReader::new(dial(target.app, i).await?);
            tcp.write_all(&raw::login(&target.token)?).await?;
            // The answers to the bootstrap and the login: logged in.
            let budget = ConnectionBudget::authenticated(NodeBudget::default());
            for _ in 0..2 {
                read_frame(&mut tcp, &budget)
                    .await?
                    .context("the node closed the connection")?;
            }
            Box::new(tcp)
        }
        Attack::PeerPreAuth => Box::new(dial(peer()?, i).await?),
        Attack::PeerPostAuth => {
            let fingerprint = target.fingerprint.as_ref().context("no fingerprint")?;
            let tcp = dial(peer()?, i).await?;
            let identity = NodeIdentity::generate()?;
            let link = TlsConnector::new(&identity)?
                .connect(tcp, fingerprint)
                .await?;
            Box::new(link.stream)
        }
        Attack::UnreadAnswers => anyhow::bail!("not a header attack"),
    };
    io.write_all(&HEADER_60_MIB).await?;
    io.flush().await?;
    Ok(io)
}

/// Whether the node has not closed `io` (reading what it sent, e.g. answers to a login).
async fn still_open(io: &mut BoxIo) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_millis(20), io.read(&mut buf)).await {
            Err(_) => return true,
            Ok(Ok(0) | Err(_)) => return false,
            Ok(Ok(_)) => {}
        }
    }
}

/// One logged-in connection sending `gets` pipelined `Table.get` calls, never reading.
async fn unread_answers(target: &Target, gets: usize) -> anyhow::Result<Attacking> {
    let (db, table, key) = &target.row;
    let mut tcp = dial(target.app, 0).await?;
    let calls = raw::pipelined_gets(&target.token, db, table, key, gets)?;
    // The node stops reading once its answers pile up, so this write may never finish: it
    // runs in the background, holding the connection until the attack drops.
    let writer = tokio::spawn(async move {
        let _ = tcp.write_all(&calls).await;
        std::future::pending::<()>().await;
        drop(tcp);
    });
    Ok(Attacking {
        held: Vec::new(),
        writers: vec![writer.abort_handle()],
        attempted: 1,
        closed_by_node: 0,
    })
}

/// A TCP connection to `to`, from 127.0.0.(2 + i % 253) if `to` is on loopback.
async fn dial(to: SocketAddr, i: usize) -> anyhow::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if to.ip().is_loopback() {
        let last = 2 + (i % 253) as u8;
        socket.bind(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)),
            0,
        ))?;
    }
    let stream = socket.connect(to).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}
