//! Catch-up by state end to end, over TLS and Cap'n Proto between two embedded nodes: a
//! responder that collected history refuses the initiator's GetDeltas (`BehindHorizon:`), the
//! initiator reconciles row heads with it (`reconcileState`), fetches what it lacks, and the
//! two converge, each keeping the other's writes and neither bringing back a collected delete.
//! And the link's rule against a loop: a refusal right after a catch-up that brought nothing
//! ends the link (which backs off) instead of catching up again.

mod common;

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use negentropy::{Negentropy, NegentropyStorageVector};
use syncbase::embedded::EmbeddedServer;
use syncbase::env::{Blocking, Env, SeededRandom};
use syncbase::error::{Error, Result};
use syncbase::genvec::{DeviceId, Knowledge, Scope};
use syncbase::identity::NodeIdentity;
use syncbase::names::DbName;
use syncbase::node::{Node, NodeParts};
use syncbase::rpc::transport::MemoryNetwork;
use syncbase::sync::catchup::{FRAME_LIMIT, StateBegin, StatePages, StateRequest, StateSession};
use syncbase::sync::host::Host;
use syncbase::sync::link::{
    DataPages, LinkError, PeerClient, SyncgroupPages, SyncgroupRequest, sync_over,
};
use syncbase::sync::membership::{JoinReply, JoinRequest, PublishOutcome, PublishRequest};
use syncbase::sync::peers::PeerConfig;
use syncbase::sync::responder::DeltaRequest;
use syncbase_storage::MemoryStorage;

use common::nodes::{link, start};
use common::rows::{digest, read, write};
use common::{DB, eventually, on_local};

/// A history-collection pass at `node`, which shares table `t` with no one yet: everything
/// it has seen there is collectable.
async fn collect(node: &EmbeddedServer) {
    node.node()
        .collect(&DbName::parse(DB).unwrap())
        .await
        .unwrap();
}

fn catch_ups(node: &EmbeddedServer, peer: &EmbeddedServer) -> u64 {
    let status = node
        .node()
        .peers()
        .status(peer.node().identity().fingerprint());
    status.map_or(0, |status| status.catch_ups)
}

#[test]
fn a_node_behind_a_responders_horizon_catches_up_by_state_and_converges() {
    on_local(async {
        let network = MemoryNetwork::new();
        let (a, b) = (start(&network, "a").await, start(&network, "b").await);
        write(&a, "mine", Some("written at a, never seen by b")).await;
        write(&a, "shared", Some("a's, earlier")).await;
        for key in ["k1", "k2", "gone"] {
            write(&b, key, Some("from b")).await;
        }
        write(&b, "shared", Some("b's, later")).await;
        write(&b, "gone", None).await;
        collect(&b).await;
        link(&a, &b).await;
        let what = "a caught up by state and both hold the same rows";
        // The catch-up's fetched rows land before it finishes and counts itself: wait for
        // the count too, not only for the rows (asserting on the rows alone raced the count).
        eventually(what, Duration::from_secs(15), || {
            catch_ups(&a, &b) >= 1 && read(&a, "k1").is_some() && digest(&a) == digest(&b)
        })
        .await;
        assert_eq!(catch_ups(&a, &b), 1, "a was behind b's horizon once");
        // After its catch-up a's floor is b's knowledge then (it claims what b had superseded,
        // `store::state` rule c); a session b opened before that may not cover it, and catches
        // up by state once too (a cost ARCHITECTURE.md's "Catch-up by state" names).
        assert!(catch_ups(&b, &a) <= 1, "b catches up from a at most once");
        for node in [&a, &b] {
            assert_eq!(read(node, "k2").as_deref(), Some("from b"));
            assert_eq!(read(node, "gone"), None);
            assert_eq!(read(node, "shared").as_deref(), Some("b's, later"));
            assert_eq!(
                read(node, "mine").as_deref(),
                Some("written at a, never seen by b")
            );
        }
        // Live sync goes on after the catch-up.
        write(&b, "after", Some("live")).await;
        eventually(
            "a live write after the catch-up",
            Duration::from_secs(10),
            || read(&a, "after").as_deref() == Some("live"),
        )
        .await;
    });
}

/// A peer that refuses every data session with `BehindHorizon:` and holds nothing to
/// reconcile: a catch-up from it changes nothing, so the refusal that follows must end the
/// link rather than start another catch-up (a loop of catch-ups at full speed).
struct AlwaysBehind {
    calls: Cell<u32>,
}

impl StateSession for &AlwaysBehind {
    async fn reconcile(&self, message: Vec<u8>) -> Result<Vec<u8>> {
        let mut storage = NegentropyStorageVector::new();
        storage.seal().unwrap();
        let mut negentropy = Negentropy::owned(storage, FRAME_LIMIT).unwrap();
        Ok(negentropy.reconcile(&message).unwrap())
    }

    async fn fetch<H: Host>(&self, _: Vec<[u8; 32]>, _: Rc<StatePages<H>>) -> Result<()> {
        Ok(())
    }
}

impl<'a> PeerClient for &'a AlwaysBehind {
    type State = &'a AlwaysBehind;

    async fn reconcile_state(
        &self,
        request: StateRequest,
    ) -> Result<(StateBegin, &'a AlwaysBehind)> {
        let begin = StateBegin {
            responder: DeviceId(42),
            knowledge: Knowledge::new(),
            floor: Knowledge::new(),
            scopes: request.scopes,
        };
        Ok((begin, *self))
    }

    async fn get_deltas<H: Host>(&self, _: DeltaRequest, _: Rc<DataPages<H>>) -> Result<()> {
        self.calls.set(self.calls.get() + 1);
        // As a network call would, so a runaway loop still lets the test's timeout fire.
        tokio::task::yield_now().await;
        Err(Error::BehindHorizon("collected up to 5".into()))
    }

    async fn get_syncgroup_deltas<H: Host>(
        &self,
        _: SyncgroupRequest,
        _: Rc<SyncgroupPages<H>>,
    ) -> Result<()> {
        std::future::pending().await
    }

    async fn device_info(&self) -> Result<DeviceId> {
        Ok(DeviceId(42))
    }

    async fn join_at_admin(&self, _: JoinRequest) -> Result<JoinReply> {
        std::future::pending().await
    }

    async fn publish(&self, _: PublishRequest) -> Result<PublishOutcome> {
        std::future::pending().await
    }
}

#[test]
fn a_refusal_right_after_a_catch_up_that_brought_nothing_ends_the_link() {
    on_local(async {
        let env = Env {
            blocking: Blocking::Inline,
            random: Arc::new(SeededRandom::new(1)),
            ..Env::system()
        };
        let identity = NodeIdentity::from_seed([7; 32]).unwrap();
        let parts = NodeParts::simulated(Arc::new(MemoryStorage::new()), identity, env).unwrap();
        let node = Arc::new(Node::assemble(parts).unwrap());
        let stub = NodeIdentity::from_seed([8; 32]).unwrap();
        let peer = PeerConfig::new(
            "stub:1",
            stub.fingerprint().clone(),
            DB,
            vec![Scope::new("t", "")],
        )
        .unwrap();
        node.add_peer(peer.clone()).await.unwrap();
        let behind = AlwaysBehind {
            calls: Cell::new(0),
        };
        let client = &behind;
        let link = sync_over(&node, &peer, &client);
        let ended = tokio::time::timeout(Duration::from_secs(10), link).await;
        let error = ended
            .expect("the link ends instead of catching up again and again")
            .expect_err("the link ends");
        assert!(
            matches!(&error, LinkError::Peer(Error::BehindHorizon(_))),
            "{error:?}"
        );
        assert_eq!(
            behind.calls.get(),
            2,
            "asked, caught up, asked again, ended"
        );
        let status = node.peers().status(stub.fingerprint()).unwrap_or_default();
        assert_eq!(status.catch_ups, 1);
    });
}
