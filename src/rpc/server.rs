//! The app API's accept loop. Cap'n Proto RPC objects are `!Send`, so every connection's RPC
//! system runs on one worker of a pool of single-threaded LocalSet runtimes; the node itself
//! is shared (`Send + Sync`). `serve` returns once `shutdown` resolves, every connection has
//! closed and every commit in flight has finished.

use std::future::Future;
use std::sync::Arc;

use capnp_rpc::{RpcSystem, rpc_twoparty_capnp, twoparty};
use futures::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::compat::TokioAsyncReadCompatExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::{LocalPoolHandle, TaskTracker};

use crate::node::Node;
use crate::rpc::gate::GateImpl;
use crate::rpc::reader_options;
use crate::schema::service_capnp::gate;

/// Serves the app API on `listener` until `shutdown` resolves.
pub async fn serve(listener: TcpListener, node: Arc<Node>, shutdown: impl Future<Output = ()>) {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let pool = LocalPoolHandle::new(workers);
    let connections = TaskTracker::new();
    let cancel = CancellationToken::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tracing::debug!(%peer, "app connection");
                    let (node, cancel) = (node.clone(), cancel.clone());
                    let connection = pool.spawn_pinned(move || serve_connection(stream, node, cancel));
                    connections.spawn(async move {
                        if let Err(error) = connection.await {
                            tracing::error!(%error, "app connection task failed");
                        }
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
        }
    }
    tracing::info!("shutting down: closing connections");
    drop(listener);
    cancel.cancel();
    connections.close();
    connections.wait().await;
    node.finish_writes().await;
    tracing::info!("shut down");
}

/// Runs one connection's RPC system until the peer hangs up or the server shuts down.
async fn serve_connection(stream: TcpStream, node: Arc<Node>, cancel: CancellationToken) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "set_nodelay failed");
    }
    let (reader, writer) = stream.compat().split();
    let network = twoparty::VatNetwork::new(
        futures::io::BufReader::new(reader),
        futures::io::BufWriter::new(writer),
        rpc_twoparty_capnp::Side::Server,
        reader_options(),
    );
    let gate: gate::Client = capnp_rpc::new_client(GateImpl::new(node));
    let rpc_system = RpcSystem::new(Box::new(network), Some(gate.client));
    tokio::select! {
        result = rpc_system => {
            if let Err(error) = result {
                tracing::debug!(%error, "app connection ended");
            }
        }
        () = cancel.cancelled() => {}
    }
}
