//! A counting TCP proxy for the sync benchmarks: it sits in front of a node's peer listener,
//! forwards bytes both ways unchanged (TLS passes through it), and counts them per direction.
//! It also logs every read (connection, direction, size) so a benchmark can split one
//! connection's traffic into flights (maximal runs in one direction) and count round trips.
//!
//! The proxies run on a runtime of their own (one worker thread), so forwarding never waits
//! for the benchmark harness or a node.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Reads logged per proxy at most (a bulk run of 1M records stays far below it).
const MAX_EVENTS: usize = 1 << 20;

/// The runtime the proxies run on. Dropping it stops every proxy and connection.
pub struct ProxyHost {
    runtime: Option<tokio::runtime::Runtime>,
}

impl ProxyHost {
    pub fn new() -> anyhow::Result<ProxyHost> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("bench-proxy")
            .enable_all()
            .build()
            .context("starting the proxy runtime")?;
        Ok(ProxyHost {
            runtime: Some(runtime),
        })
    }

    /// A proxy on an ephemeral loopback port forwarding every connection to `target`.
    pub fn proxy(&self, target: SocketAddr) -> anyhow::Result<Proxy> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding a proxy")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let traffic = Arc::new(Traffic::default());
        let counted = traffic.clone();
        let runtime = self.runtime.as_ref().expect("the runtime lives until drop");
        let task = runtime.spawn(async move {
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => listener,
                Err(error) => return eprintln!("proxy listener: {error}"),
            };
            while let Ok((inbound, _)) = listener.accept().await {
                let id = counted.connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(forward(inbound, target, counted.clone(), id));
            }
        });
        Ok(Proxy {
            addr,
            traffic,
            task,
        })
    }
}

impl Drop for ProxyHost {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// One proxy: its address (give it to the dialling node as the peer's address) and counters.
pub struct Proxy {
    pub addr: SocketAddr,
    pub traffic: Arc<Traffic>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One read the proxy forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// The connection's number (in accept order, from 0).
    pub connection: u64,
    /// From the dialling side to the listening side.
    pub up: bool,
    pub bytes: u64,
}

/// A proxy's byte counts and read log.
#[derive(Default)]
pub struct Traffic {
    up: AtomicU64,
    down: AtomicU64,
    connections: AtomicU64,
    open: AtomicU64,
    events: Mutex<Vec<Event>>,
}

impl Traffic {
    /// Bytes forwarded so far, both directions summed.
    pub fn bytes(&self) -> u64 {
        self.up.load(Ordering::SeqCst) + self.down.load(Ordering::SeqCst)
    }

    /// Bytes forwarded so far from the dialling side to the listening side.
    pub fn up(&self) -> u64 {
        self.up.load(Ordering::SeqCst)
    }

    /// Bytes forwarded so far from the listening side to the dialling side.
    pub fn down(&self) -> u64 {
        self.down.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }

    /// Connections still open (either direction still forwarding).
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::SeqCst)
    }

    /// The logged reads of connections numbered `from` or later.
    pub fn events_since(&self, from: u64) -> Vec<Event> {
        self.lock()
            .iter()
            .filter(|event| event.connection >= from)
            .copied()
            .collect()
    }

    fn count(&self, connection: u64, up: bool, bytes: usize) {
        let counter = if up { &self.up } else { &self.down };
        counter.fetch_add(bytes as u64, Ordering::SeqCst);
        let mut events = self.lock();
        if events.len() < MAX_EVENTS {
            events.push(Event {
                connection,
                up,
                bytes: bytes as u64,
            });
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Event>> {
        self.events.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

async fn forward(inbound: TcpStream, target: SocketAddr, traffic: Arc<Traffic>, id: u64) {
    let outbound = match TcpStream::connect(target).await {
        Ok(stream) => stream,
        Err(error) => return eprintln!("proxy: connecting to {target}: {error}"),
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    traffic.open.fetch_add(1, Ordering::SeqCst);
    let (in_read, in_write) = inbound.into_split();
    let (out_read, out_write) = outbound.into_split();
    tokio::join!(
        pump(in_read, out_write, &traffic, id, true),
        pump(out_read, in_write, &traffic, id, false),
    );
    traffic.open.fetch_sub(1, Ordering::SeqCst);
}

/// Copies one direction until end of stream or an error, then half-closes the other side.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    traffic: &Traffic,
    id: u64,
    up: bool,
) {
    let mut buffer = vec![0u8; 64 << 10];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        traffic.count(id, up, read);
        if to.write_all(&buffer[..read]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// A connection's traffic as flights: maximal runs of reads in one direction, as (up, bytes).
pub fn flights(events: &[Event], connection: u64) -> Vec<(bool, u64)> {
    let mut flights: Vec<(bool, u64)> = Vec::new();
    for event in events.iter().filter(|event| event.connection == connection) {
        match flights.last_mut() {
            Some((up, bytes)) if *up == event.up => *bytes += event.bytes,
            _ => flights.push((event.up, event.bytes)),
        }
    }
    flights
}

/// Round trips in a connection's flights: each flight from the dialler answered by one from
/// the listener.
pub fn round_trips(flights: &[(bool, u64)]) -> usize {
    flights
        .windows(2)
        .filter(|pair| pair[0].0 && !pair[1].0)
        .count()
}

/// Flights written compactly: `>517` from the dialler, `<1234` from the listener.
pub fn describe(flights: &[(bool, u64)]) -> Vec<String> {
    flights
        .iter()
        .map(|(up, bytes)| format!("{}{bytes}", if *up { '>' } else { '<' }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flights_group_runs_and_round_trips_count_answered_requests() {
        let event = |connection, up, bytes| Event {
            connection,
            up,
            bytes,
        };
        let events = [
            event(0, true, 10),
            event(1, true, 99),
            event(0, true, 5),
            event(0, false, 20),
            event(0, false, 1),
            event(0, true, 7),
            event(0, false, 3),
            event(0, true, 2),
        ];
        let flights = flights(&events, 0);
        assert_eq!(
            flights,
            vec![(true, 15), (false, 21), (true, 7), (false, 3), (true, 2)]
        );
        assert_eq!(round_trips(&flights), 2);
        assert_eq!(describe(&flights[..2]), vec![">15", "<21"]);
    }

    #[test]
    fn the_proxy_forwards_and_counts_both_directions() {
        let host = ProxyHost::new().unwrap();
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target = server.local_addr().unwrap();
        let echo = std::thread::spawn(move || {
            use std::io::{Read, Write};
            let (mut stream, _) = server.accept().unwrap();
            let mut buffer = [0u8; 5];
            stream.read_exact(&mut buffer).unwrap();
            stream.write_all(b"pong!!").unwrap();
        });
        let proxy = host.proxy(target).unwrap();
        {
            use std::io::{Read, Write};
            let mut client = std::net::TcpStream::connect(proxy.addr).unwrap();
            client.write_all(b"ping!").unwrap();
            let mut buffer = [0u8; 6];
            client.read_exact(&mut buffer).unwrap();
            assert_eq!(&buffer, b"pong!!");
        }
        echo.join().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while proxy.traffic.open() > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(proxy.traffic.bytes(), 11);
        assert_eq!(proxy.traffic.connections(), 1);
        let flights = flights(&proxy.traffic.events_since(0), 0);
        assert_eq!(flights, vec![(true, 5), (false, 6)]);
    }
}
