//! Joining and publishing (`sync::membership`) against a node that connects and then never
//! answers: the call ends with `ConnFail:` after `CALL_TIMEOUT` instead of hanging (found by
//! a break test: `sg join` at such a node hung the CLI for good); and against one that
//! answers with its own error, which the joiner reports as the admin's, not its own.

use std::rc::Rc;
use std::sync::Arc;

use syncbase::env::{Blocking, Env, SeededRandom};
use syncbase::error::Result;
use syncbase::genvec::DeviceId;
use syncbase::identity::{Fingerprint, NodeIdentity};
use syncbase::node::{Node, NodeParts};
use syncbase::sync::catchup::{StateBegin, StatePages, StateRequest, StateSession};
use syncbase::sync::host::Host;
use syncbase::sync::link::{
    DataPages, Dialer, LinkDriver, PeerClient, SyncgroupPages, SyncgroupRequest,
};
use syncbase::sync::membership::{
    self, CALL_TIMEOUT, JoinReply, JoinRequest, PublishOutcome, PublishRequest,
};
use syncbase::sync::responder::DeltaRequest;
use syncbase::syncgroup::SyncgroupName;
use syncbase_storage::MemoryStorage;

/// A node that accepts the connection and then answers nothing.
struct Silent;

impl Dialer for Silent {
    type Client = Silent;
    type Driver = Silent;

    async fn dial(&self, _: &str, _: &Fingerprint) -> Result<(Silent, Silent)> {
        Ok((Silent, Silent))
    }
}

impl LinkDriver for Silent {
    async fn run(&mut self) -> String {
        std::future::pending().await
    }

    async fn close(self) {}
}

impl StateSession for Silent {
    async fn reconcile(&self, _: Vec<u8>) -> Result<Vec<u8>> {
        std::future::pending().await
    }

    async fn fetch<H: Host>(&self, _: Vec<[u8; 32]>, _: Rc<StatePages<H>>) -> Result<()> {
        std::future::pending().await
    }
}

impl PeerClient for Silent {
    type State = Silent;

    async fn reconcile_state(&self, _: StateRequest) -> Result<(StateBegin, Silent)> {
        std::future::pending().await
    }

    async fn get_deltas<H: Host>(&self, _: DeltaRequest, _: Rc<DataPages<H>>) -> Result<()> {
        std::future::pending().await
    }

    async fn get_syncgroup_deltas<H: Host>(
        &self,
        _: SyncgroupRequest,
        _: Rc<SyncgroupPages<H>>,
    ) -> Result<()> {
        std::future::pending().await
    }

    async fn device_info(&self) -> Result<DeviceId> {
        std::future::pending().await
    }

    async fn join_at_admin(&self, _: JoinRequest) -> Result<JoinReply> {
        std::future::pending().await
    }

    async fn publish(&self, _: PublishRequest) -> Result<PublishOutcome> {
        std::future::pending().await
    }
}

fn node() -> Arc<Node> {
    let env = Env {
        blocking: Blocking::Inline,
        random: Arc::new(SeededRandom::new(1)),
        ..Env::system()
    };
    let identity = NodeIdentity::from_seed([7; 32]).unwrap();
    let parts = NodeParts::simulated(Arc::new(MemoryStorage::new()), identity, env).unwrap();
    Arc::new(Node::assemble(parts).unwrap())
}

#[tokio::test(start_paused = true)]
async fn a_join_at_a_node_that_never_answers_fails_with_conn_fail_after_the_call_timeout() {
    let node = node();
    let admin = NodeIdentity::from_seed([8; 32]).unwrap();
    let name = SyncgroupName::parse("silent:1/sg").unwrap();
    let started = tokio::time::Instant::now();
    let join = membership::join(
        &node,
        &Silent,
        admin.fingerprint(),
        "silent:1",
        &name,
        Some("00"),
    );
    let joined = tokio::time::timeout(CALL_TIMEOUT * 2, join)
        .await
        .expect("the join still waits for an answer");
    let error = joined.expect_err("a join nobody answers");
    assert_eq!(error.id(), "ConnFail", "{error}");
    assert_eq!(started.elapsed(), CALL_TIMEOUT);
}

/// A node whose every call answers with its own full store.
struct Full;

fn full() -> syncbase::error::Error {
    syncbase::error::Error::StorageFull("the LMDB map size is exhausted".into())
}

impl Dialer for Full {
    type Client = Full;
    type Driver = Silent;

    async fn dial(&self, _: &str, _: &Fingerprint) -> Result<(Full, Silent)> {
        Ok((Full, Silent))
    }
}

impl StateSession for Full {
    async fn reconcile(&self, _: Vec<u8>) -> Result<Vec<u8>> {
        Err(full())
    }

    async fn fetch<H: Host>(&self, _: Vec<[u8; 32]>, _: Rc<StatePages<H>>) -> Result<()> {
        Err(full())
    }
}

impl PeerClient for Full {
    type State = Full;

    async fn reconcile_state(&self, _: StateRequest) -> Result<(StateBegin, Full)> {
        Err(full())
    }

    async fn get_deltas<H: Host>(&self, _: DeltaRequest, _: Rc<DataPages<H>>) -> Result<()> {
        Err(full())
    }

    async fn get_syncgroup_deltas<H: Host>(
        &self,
        _: SyncgroupRequest,
        _: Rc<SyncgroupPages<H>>,
    ) -> Result<()> {
        Err(full())
    }

    async fn device_info(&self) -> Result<DeviceId> {
        Err(full())
    }

    async fn join_at_admin(&self, _: JoinRequest) -> Result<JoinReply> {
        Err(full())
    }

    async fn publish(&self, _: PublishRequest) -> Result<PublishOutcome> {
        Err(full())
    }
}

#[tokio::test(start_paused = true)]
async fn a_join_refused_by_the_admins_full_store_says_the_admin_answered() {
    let node = node();
    let admin = NodeIdentity::from_seed([8; 32]).unwrap();
    let name = SyncgroupName::parse("full:1/sg").unwrap();
    let error = membership::join(&node, &Full, admin.fingerprint(), "full:1", &name, None)
        .await
        .expect_err("the admin's store is full");
    assert_eq!(error.id(), "StorageFull", "{error}");
    assert!(
        error
            .to_string()
            .ends_with("(answered by the admin at full:1)"),
        "not ours: {error}"
    );
}
