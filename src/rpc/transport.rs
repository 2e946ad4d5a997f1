//! The transport seam under peer links: real TCP, or an in-memory network of byte pipes
//! (tokio duplex streams) where tests and simulations run many nodes in one process and cut
//! and restore links between them at will. TLS and Cap'n Proto run unchanged on either.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// A byte stream a peer link runs on.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// A boxed peer byte stream.
pub type BoxIo = Box<dyn Io>;

/// Bytes buffered in each direction of an in-memory pipe.
const PIPE_BYTES: usize = 1 << 20;

/// How peers reach each other.
#[derive(Clone, Default)]
pub enum Network {
    /// TCP sockets.
    #[default]
    Tcp,
    /// In-process pipes (tests, simulation).
    Memory(MemoryNetwork),
}

/// Accepts incoming peer streams.
pub enum PeerListener {
    Tcp(tokio::net::TcpListener),
    Memory(mpsc::UnboundedReceiver<BoxIo>),
}

impl PeerListener {
    /// The next incoming stream, and the address it comes from (None on the memory network).
    pub async fn accept(&mut self) -> io::Result<(BoxIo, Option<IpAddr>)> {
        match self {
            PeerListener::Tcp(listener) => {
                let (stream, from) = listener.accept().await?;
                stream.set_nodelay(true)?;
                Ok((Box::new(stream), Some(from.ip())))
            }
            PeerListener::Memory(incoming) => match incoming.recv().await {
                Some(io) => Ok((io, None)),
                None => Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "memory network closed",
                )),
            },
        }
    }
}

impl Network {
    /// Listens at `addr` (`host:port` for TCP, port 0 picks one; any name in memory);
    /// returns the listener and the address it is reachable at.
    pub async fn bind(&self, addr: &str) -> io::Result<(PeerListener, String)> {
        match self {
            Network::Tcp => {
                let listener = tokio::net::TcpListener::bind(addr).await?;
                let bound = listener.local_addr()?.to_string();
                Ok((PeerListener::Tcp(listener), bound))
            }
            Network::Memory(network) => {
                Ok((PeerListener::Memory(network.listen(addr)?), addr.to_owned()))
            }
        }
    }

    /// Connects from `from` (the dialling node's own address, used by the memory network's
    /// link table) to `to`.
    pub async fn dial(&self, from: &str, to: &str) -> io::Result<BoxIo> {
        match self {
            Network::Tcp => {
                let stream = tokio::net::TcpStream::connect(to).await?;
                stream.set_nodelay(true)?;
                Ok(Box::new(stream))
            }
            Network::Memory(network) => network.dial(from, to),
        }
    }
}

/// An in-process network: named listeners, and links between names that can be cut (every
/// open stream on the link fails at once, new dials are refused) and restored.
#[derive(Clone, Default)]
pub struct MemoryNetwork {
    inner: Arc<Mutex<MemoryInner>>,
}

#[derive(Default)]
struct MemoryInner {
    listeners: HashMap<String, mpsc::UnboundedSender<BoxIo>>,
    down: HashSet<(String, String)>,
    links: HashMap<(String, String), CancellationToken>,
    /// Connections opened, by (from, to): tests count redials with it.
    dials: HashMap<(String, String), usize>,
}

fn link_key(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_owned(), b.to_owned())
    } else {
        (b.to_owned(), a.to_owned())
    }
}

impl MemoryNetwork {
    pub fn new() -> MemoryNetwork {
        MemoryNetwork::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn listen(&self, addr: &str) -> io::Result<mpsc::UnboundedReceiver<BoxIo>> {
        let mut inner = self.lock();
        if inner
            .listeners
            .get(addr)
            .is_some_and(|sender| !sender.is_closed())
        {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{addr} is in use"),
            ));
        }
        let (sender, receiver) = mpsc::unbounded_channel();
        inner.listeners.insert(addr.to_owned(), sender);
        Ok(receiver)
    }

    fn dial(&self, from: &str, to: &str) -> io::Result<BoxIo> {
        let mut inner = self.lock();
        let key = link_key(from, to);
        if inner.down.contains(&key) {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("link {from} - {to} is down"),
            ));
        }
        let Some(listener) = inner.listeners.get(to).cloned() else {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("nothing listens at {to}"),
            ));
        };
        *inner
            .dials
            .entry((from.to_owned(), to.to_owned()))
            .or_default() += 1;
        let cut = inner.links.entry(key).or_default().clone();
        let (near, far) = tokio::io::duplex(PIPE_BYTES);
        listener
            .send(Box::new(CuttableStream::new(far, cut.clone())))
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    format!("nothing listens at {to}"),
                )
            })?;
        Ok(Box::new(CuttableStream::new(near, cut)))
    }

    /// Connections `from` has opened to `to` so far (dials that reached a listener).
    pub fn dials(&self, from: &str, to: &str) -> usize {
        let key = (from.to_owned(), to.to_owned());
        self.lock().dials.get(&key).copied().unwrap_or(0)
    }

    /// Cuts (`up = false`) or restores the link between two addresses.
    pub fn set_link(&self, a: &str, b: &str, up: bool) {
        let mut inner = self.lock();
        let key = link_key(a, b);
        if up {
            inner.down.remove(&key);
        } else {
            inner.down.insert(key.clone());
            if let Some(token) = inner.links.remove(&key) {
                token.cancel();
            }
        }
    }
}

/// A pipe end that fails once its link is cut.
struct CuttableStream {
    inner: DuplexStream,
    cut: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl CuttableStream {
    fn new(inner: DuplexStream, cut: CancellationToken) -> CuttableStream {
        CuttableStream {
            inner,
            cut: Box::pin(cut.cancelled_owned()),
        }
    }

    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        match self.cut.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::Error::new(io::ErrorKind::ConnectionReset, "link cut")),
            Poll::Pending => Ok(()),
        }
    }
}

impl AsyncRead for CuttableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for CuttableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn memory_links_carry_bytes_and_can_be_cut_and_restored() {
        let network = MemoryNetwork::new();
        let net = Network::Memory(network.clone());
        let (mut listener, addr) = net.bind("b").await.unwrap();
        assert_eq!(addr, "b");
        let mut near = net.dial("a", "b").await.unwrap();
        let (mut far, _) = listener.accept().await.unwrap();
        near.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        far.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");

        let reader = tokio::spawn(async move { far.read(&mut buf).await });
        network.set_link("b", "a", false);
        assert!(
            reader.await.unwrap().is_err(),
            "a pending read fails when the link is cut"
        );
        assert!(near.write_all(b"x").await.is_err());
        assert!(net.dial("a", "b").await.is_err());
        network.set_link("a", "b", true);
        assert!(net.dial("a", "b").await.is_ok());
        assert!(net.dial("a", "nowhere").await.is_err());
    }
}
