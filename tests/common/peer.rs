//! A bare peer built from the library for capability tests: its own TLS identity, dialling an
//! embedded node's peer listener on a `MemoryNetwork`, holding the `Sync` capability the node
//! hands that identity. Calls return the stable id of their outcome (`ok`, `NoAccess`, ...).

use std::rc::Rc;

use capnp_rpc::{RpcSystem, rpc_twoparty_capnp, twoparty};
use futures::AsyncReadExt;
use tokio_util::compat::TokioAsyncReadCompatExt;

use super::peer_client::PeerCalls;
use syncbase::embedded::EmbeddedServer;
use syncbase::identity::NodeIdentity;
use syncbase::rpc::client::error_message;
use syncbase::rpc::tls::TlsConnector;
use syncbase::rpc::transport::{MemoryNetwork, Network};
use syncbase::schema::sync_capnp::{delta_sink, sync};

/// A peer with its own identity and a link to one node.
pub struct BarePeer {
    pub identity: NodeIdentity,
    pub sync: sync::Client,
}

impl BarePeer {
    /// Dials `node` from address `from` as a fresh identity (must run inside a `LocalSet`).
    pub async fn connect(network: &MemoryNetwork, from: &str, node: &EmbeddedServer) -> BarePeer {
        let identity = NodeIdentity::generate().unwrap();
        let io = Network::Memory(network.clone())
            .dial(from, &node.peer_address())
            .await
            .unwrap();
        let link = TlsConnector::new(&identity)
            .unwrap()
            .connect(io, node.node().identity().fingerprint())
            .await
            .unwrap();
        let (reader, writer) = link.stream.compat().split();
        let network = twoparty::VatNetwork::new(
            futures::io::BufReader::new(reader),
            futures::io::BufWriter::new(writer),
            rpc_twoparty_capnp::Side::Client,
            syncbase::rpc::reader_options(),
        );
        let mut rpc_system = RpcSystem::new(Box::new(network), None);
        let sync: sync::Client = rpc_system.bootstrap(rpc_twoparty_capnp::Side::Server);
        tokio::task::spawn_local(rpc_system);
        BarePeer { identity, sync }
    }

    /// This peer's identity as text.
    pub fn fingerprint(&self) -> String {
        self.identity.fingerprint().to_string()
    }

    /// Typed calls on this peer's `Sync` capability.
    pub fn calls(&self) -> PeerCalls<'_> {
        PeerCalls::new(&self.sync)
    }
}

/// The stable id of a call's outcome: `ok`, or the text before the first colon of the error.
pub fn outcome<T>(result: Result<T, capnp::Error>) -> String {
    match result {
        Ok(_) => "ok".to_owned(),
        Err(error) => error_message(&error)
            .split_once(':')
            .map_or("?", |(id, _)| id)
            .to_owned(),
    }
}

/// A `DeltaSink` that takes every push.
pub struct AcceptingSink;

impl delta_sink::Server for AcceptingSink {
    async fn push(self: Rc<Self>, _: delta_sink::PushParams) -> capnp::Result<()> {
        Ok(())
    }
}

/// A fresh [`AcceptingSink`] capability.
pub fn accepting_sink() -> delta_sink::Client {
    capnp_rpc::new_client(AcceptingSink)
}
