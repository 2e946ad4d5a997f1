//! Runs a node's network side until shutdown: the app API accept loop, the peer accept loop,
//! and the dialer that keeps one live link per configured peer (following peers added and
//! removed at run time). Cap'n Proto RPC objects are `!Send`, so every connection runs on one
//! worker of a pool of single-threaded LocalSet runtimes; the node is shared (`Send + Sync`).
//! `serve` returns once `shutdown` resolves, every connection has closed and every commit in
//! flight has finished.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use capnp_rpc::rpc_twoparty_capnp::Side;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::{LocalPoolHandle, TaskTracker};

use crate::env::OsRandom;
use crate::node::Node;
use crate::retry::Backoff;
use crate::rpc::admission::{Admission, REFUSAL_LOG_PERIOD, Slot, abort_frame};
use crate::rpc::gate::GateImpl;
use crate::rpc::limits::{ConnectionBudget, PRE_AUTH_DEADLINE};
use crate::rpc::network::rpc_system;
use crate::rpc::peer_link::{link_peer, serve_peer};
use crate::rpc::run_until_cancelled;
use crate::rpc::transport::PeerListener;
use crate::schema::service_capnp::gate;
use crate::tally::Repeats;

/// What a node listens on.
pub struct Listeners {
    /// The app API (plain TCP, meant for loopback).
    pub app: TcpListener,
    /// The TLS peer listener, if the node accepts peers.
    pub peer: Option<PeerListener>,
}

/// The tasks of a running node, and how to stop them.
#[derive(Clone)]
struct Runtime {
    node: Arc<Node>,
    pool: LocalPoolHandle,
    tasks: TaskTracker,
    cancel: CancellationToken,
}

impl Runtime {
    /// Runs a `!Send` future on a LocalSet worker, tracked for shutdown.
    fn spawn_pinned<F, Fut>(&self, make: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let handle = self.pool.spawn_pinned(make);
        self.tasks.spawn(async move {
            if let Err(error) = handle.await {
                tracing::error!(%error, "connection task failed");
            }
        });
    }
}

/// Serves the node until `shutdown` resolves.
pub async fn serve(listeners: Listeners, node: Arc<Node>, shutdown: impl Future<Output = ()>) {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let runtime = Runtime {
        node: node.clone(),
        pool: LocalPoolHandle::new(workers),
        tasks: TaskTracker::new(),
        cancel: CancellationToken::new(),
    };
    runtime
        .tasks
        .spawn(accept_apps(listeners.app, runtime.clone()));
    if let Some(peer) = listeners.peer {
        runtime.tasks.spawn(accept_peers(peer, runtime.clone()));
    }
    runtime.tasks.spawn(follow_peers(runtime.clone()));
    let (collector, stop) = (node.clone(), runtime.cancel.clone());
    runtime.tasks.spawn(async move {
        collector
            .collect_in_background(stop.cancelled_owned())
            .await;
    });
    shutdown.await;
    tracing::info!("shutting down: closing connections");
    runtime.cancel.cancel();
    runtime.tasks.close();
    runtime.tasks.wait().await;
    node.finish_writes().await;
    node.mark_clean_shutdown();
    tracing::info!("shut down");
}

async fn accept_apps(listener: TcpListener, runtime: Runtime) {
    let admission = Admission::new("app");
    let mut summaries = tokio::time::interval(REFUSAL_LOG_PERIOD);
    let mut retry = AcceptRetry::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = summaries.tick() => {
                admission.flush_refusals();
                continue;
            }
            () = runtime.cancel.cancelled() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                retry.accepted();
                let slot = match admission.admit(Some(peer.ip())) {
                    Ok(slot) => slot,
                    Err(refusal) => {
                        // Say why (an RPC Abort fits the socket buffer; never wait for it),
                        // then the stream drops here, closing the connection.
                        let _ = stream.try_write(&abort_frame(&refusal));
                        continue;
                    }
                };
                tracing::debug!(%peer, "app connection");
                let (node, cancel) = (runtime.node.clone(), runtime.cancel.clone());
                runtime.spawn_pinned(move || serve_app(stream, slot, node, cancel));
            }
            Err(error) => retry.pause_after(&error).await,
        }
    }
}

async fn accept_peers(mut listener: PeerListener, runtime: Runtime) {
    let admission = Admission::new("peer");
    let mut summaries = tokio::time::interval(REFUSAL_LOG_PERIOD);
    let mut retry = AcceptRetry::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = summaries.tick() => {
                admission.flush_refusals();
                continue;
            }
            () = runtime.cancel.cancelled() => return,
        };
        match accepted {
            Ok((io, from)) => {
                retry.accepted();
                let Ok(slot) = admission.admit(from) else {
                    continue;
                };
                let (node, cancel) = (runtime.node.clone(), runtime.cancel.clone());
                runtime.spawn_pinned(move || serve_peer(io, slot, node, cancel));
            }
            Err(error) => retry.pause_after(&error).await,
        }
    }
}

/// The retry rule of an accept loop: a failed accept (out of file descriptors, say) waits a
/// capped exponential backoff, reset by the next accepted connection, and the same failure
/// repeated is logged once, then with its count.
struct AcceptRetry {
    backoff: Backoff,
    repeats: Repeats,
}

impl AcceptRetry {
    fn new() -> AcceptRetry {
        AcceptRetry {
            backoff: Backoff::new(
                Duration::from_millis(50),
                Duration::from_secs(2),
                Arc::new(OsRandom),
            ),
            repeats: Repeats::new(Duration::from_secs(60)),
        }
    }

    fn accepted(&mut self) {
        self.backoff.progress();
        if let Some(line) = self.repeats.flush() {
            tracing::warn!("{line}");
        }
    }

    async fn pause_after(&mut self, error: &std::io::Error) {
        for line in self.repeats.note(&format!("accept failed: {error}")) {
            tracing::warn!("{line}");
        }
        tokio::time::sleep(self.backoff.fail()).await;
    }
}

/// Keeps one link task per configured peer (`sync::link::follow_peers`), each on a
/// LocalSet worker.
async fn follow_peers(runtime: Runtime) {
    let node = runtime.node.clone();
    let cancel = runtime.cancel.clone();
    let spawner = runtime.clone();
    crate::sync::link::follow_peers(
        node,
        move |peer, link| {
            let node = spawner.node.clone();
            spawner.spawn_pinned(move || link_peer(node, peer, link));
        },
        cancel,
    )
    .await;
}

/// Runs one app connection's RPC system until the client hangs up or the node stops; drops it
/// if it has not logged in within [`PRE_AUTH_DEADLINE`].
async fn serve_app(stream: TcpStream, mut slot: Slot, node: Arc<Node>, cancel: CancellationToken) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "set_nodelay failed");
    }
    let pre_auth = slot.take_pre_auth();
    let budget =
        ConnectionBudget::pre_auth(node.node_budget().clone(), Box::new(move || drop(pre_auth)));
    let gate = GateImpl::new(node, budget.clone(), slot.admission());
    let gate: gate::Client = capnp_rpc::new_client(gate);
    let rpc_system = rpc_system(stream, Side::Server, Some(gate.client), budget.clone());
    // Cancels the connection (cleanly) if it has not logged in in time.
    let stop = cancel.child_token();
    let watchdog = async {
        let logged_in = budget.until_authenticated();
        if tokio::time::timeout(PRE_AUTH_DEADLINE, logged_in)
            .await
            .is_err()
        {
            tracing::debug!("dropping an app connection that did not log in in time");
            stop.cancel();
        }
        std::future::pending::<std::convert::Infallible>().await
    };
    let ended = tokio::select! {
        ended = run_until_cancelled(rpc_system, &stop) => ended,
        never = watchdog => match never {},
    };
    if let Err(error) = ended {
        tracing::debug!(%error, "app connection ended");
    }
    drop(slot);
}
