//! A TCP relay the demo puts in front of a node's peer listener so it can partition that
//! link for real: while the relay is up it forwards each accepted connection, byte for byte,
//! to its target (the TLS and Cap'n Proto inside pass through untouched); [`Relay::cut`]
//! closes every forwarded connection and refuses new ones until [`Relay::restore`]. Both
//! nodes see what a network partition shows them: reset connections and failed redials.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// A running relay to one address; dropping it stops it and closes its connections.
pub struct Relay {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: CancellationToken,
}

struct State {
    up: bool,
    /// Cancelled to close every connection forwarded since the last cut.
    open: CancellationToken,
}

impl Relay {
    /// Listens on an ephemeral loopback port and forwards to `target`. Call inside a tokio
    /// runtime; the accept loop runs on it until the relay is dropped.
    pub async fn start(target: SocketAddr) -> anyhow::Result<Relay> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding a relay port")?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State {
            up: true,
            open: CancellationToken::new(),
        }));
        let stop = CancellationToken::new();
        tokio::spawn(accept_loop(listener, target, state.clone(), stop.clone()));
        Ok(Relay { addr, state, stop })
    }

    /// The address peers dial to reach the target through this relay.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every forwarded connection and refuses new ones.
    pub fn cut(&self) {
        let mut state = lock(&self.state);
        state.up = false;
        state.open.cancel();
        state.open = CancellationToken::new();
    }

    /// Forwards new connections again.
    pub fn restore(&self) {
        lock(&self.state).up = true;
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.cancel();
        lock(&self.state).open.cancel();
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            biased;
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((inbound, _)) = accepted else {
            continue;
        };
        let open = {
            let state = lock(&state);
            // A cut link refuses: the connection is closed at once, unread.
            state.up.then(|| state.open.clone())
        };
        if let Some(open) = open {
            tokio::spawn(forward(inbound, target, open));
        }
    }
}

/// Copies bytes both ways between `inbound` and a new connection to `target` until either
/// side closes or the relay cuts it.
async fn forward(mut inbound: TcpStream, target: SocketAddr, open: CancellationToken) {
    let Ok(mut outbound) = TcpStream::connect(target).await else {
        return;
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    tokio::select! {
        biased;
        () = open.cancelled() => {}
        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// An echo server on an ephemeral port.
    async fn echo() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut read, mut write) = stream.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        addr
    }

    async fn round_trip(stream: &mut TcpStream) -> std::io::Result<[u8; 4]> {
        stream.write_all(b"ping").await?;
        let mut answer = [0; 4];
        stream.read_exact(&mut answer).await?;
        Ok(answer)
    }

    #[tokio::test]
    async fn a_cut_closes_open_connections_refuses_new_ones_and_a_restore_forwards_again() {
        let relay = Relay::start(echo().await).await.unwrap();
        let mut open = TcpStream::connect(relay.addr()).await.unwrap();
        assert_eq!(&round_trip(&mut open).await.unwrap(), b"ping");

        relay.cut();
        assert!(
            round_trip(&mut open).await.is_err(),
            "an open connection is closed"
        );
        let mut refused = TcpStream::connect(relay.addr()).await.unwrap();
        assert!(
            round_trip(&mut refused).await.is_err(),
            "a new one is refused"
        );

        relay.restore();
        let mut again = TcpStream::connect(relay.addr()).await.unwrap();
        assert_eq!(&round_trip(&mut again).await.unwrap(), b"ping");
    }
}
