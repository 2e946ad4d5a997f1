//! The simulated network: the engine's link traits (`sync::link::Dialer`, `PeerClient`,
//! `LinkDriver`) over in-process calls, with the faults a real network has. A GetDeltas call
//! runs the remote node's own responder (`sync::responder::Responder`, `sync::syncgroups::
//! respond`) as the authenticated caller, and delivers each page after a seeded delay, so the
//! same access checks, paging and live push run as over Cap'n Proto.
//!
//! Faults, all drawn from the simulation's one seeded random source:
//! - delay: every dial and every page takes `delay_ms` (uniform in a range) of virtual time;
//! - loss: a page is lost with probability `loss_per_mille`; like a TCP connection that
//!   fails, the loss breaks the connection, and the link loop dials again;
//! - partitions: [`Network::cut`] breaks every connection between two nodes and makes dials
//!   between them fail until [`Network::heal`];
//! - crashes: [`Network::remove`] takes a node off the network and breaks its connections.
//!
//! Reordering is what TCP allows: pages of one call arrive in order, calls and connections
//! interleave freely. Every connection, page and break is noted in the [`Trace`].
//!
//! Calls fail as they do over Cap'n Proto, typed: with the remote node's own error, of the
//! kind it raised (`NoAccess`, `StorageFull`, ...), or `ConnFail` when the connection broke.
//!
//! Everything here runs on one thread (`Rc`, `RefCell`) under a paused tokio clock; no
//! `RefCell` borrow is held across an `.await`.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::changes::Changes;
use crate::env::Random;
use crate::error::{Error, Result};
use crate::genvec::DeviceId;
use crate::identity::Fingerprint;
use crate::names::DbName;
use crate::store::LogRecord;
use crate::store::{Page, SyncgroupKnowledge};
use crate::sync::catchup::{StateBegin, StatePages, StateRequest, StateResponder, StateSession};
use crate::sync::host::Host;
use crate::sync::initiator::Push;
use crate::sync::link::{
    DataPages, Dialer, LinkDriver, PeerClient, SyncgroupPages, SyncgroupRequest,
};
use crate::sync::membership::{JoinReply, JoinRequest, PublishOutcome, PublishRequest};
use crate::sync::responder::{DeltaRequest, PageSink, Responder};
use crate::sync::syncgroups::{SyncgroupPage, SyncgroupSink, respond};

/// How the network misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Faults {
    /// Fewest and most virtual milliseconds a dial or a page takes.
    pub delay_ms: (u64, u64),
    /// Chance in a thousand that a page is lost (and its connection broken).
    pub loss_per_mille: u64,
}

impl Default for Faults {
    fn default() -> Faults {
        Faults {
            delay_ms: (1, 40),
            loss_per_mille: 5,
        }
    }
}

/// The running record of what happened, hashed as it goes: two runs of one seed must end
/// with the same [`Trace::digest`].
pub struct Trace {
    start: tokio::time::Instant,
    hasher: xxhash_rust::xxh3::Xxh3Default,
    events: u64,
    /// Every event as text, when asked for (`syncbase sim --trace`).
    kept: Option<Vec<String>>,
}

impl Trace {
    /// An empty trace; `keep`: also keep every event's text.
    pub fn new(keep: bool) -> Trace {
        Trace {
            start: tokio::time::Instant::now(),
            hasher: xxhash_rust::xxh3::Xxh3Default::new(),
            events: 0,
            kept: keep.then(Vec::new),
        }
    }

    /// Notes one event, stamped with the virtual time.
    pub fn note(&mut self, event: &str) {
        let millis = self.start.elapsed().as_millis();
        self.hasher.update(&millis.to_le_bytes());
        self.hasher.update(event.as_bytes());
        self.hasher.update(b"\n");
        self.events += 1;
        if let Some(kept) = &mut self.kept {
            kept.push(format!("{millis:>8} ms  {event}"));
        }
    }

    /// The events kept, if they were.
    pub fn take_kept(&mut self) -> Vec<String> {
        self.kept.take().unwrap_or_default()
    }

    /// The hash of every event so far (xxh3, 64 bits).
    pub fn digest(&self) -> u64 {
        self.hasher.digest()
    }

    /// How many events were noted.
    pub fn events(&self) -> u64 {
        self.events
    }
}

/// One simulated node as the network sees it.
struct Attached<H> {
    host: Arc<H>,
    identity: Fingerprint,
}

/// One open connection between two addresses.
struct Connection {
    ends: (String, String),
    /// Why it broke, once it did.
    why: Option<String>,
    /// Bumped when it breaks (waiters wake in a fixed order: `changes`).
    broken: Changes,
}

struct State<H> {
    nodes: BTreeMap<String, Attached<H>>,
    cut: BTreeSet<(String, String)>,
    connections: BTreeMap<u64, Connection>,
    next_connection: u64,
    random: Arc<dyn Random>,
    faults: Faults,
    trace: Trace,
}

/// The simulated network (cheap to clone: every clone is the same network).
pub struct Network<H> {
    state: Rc<RefCell<State<H>>>,
}

impl<H> Clone for Network<H> {
    fn clone(&self) -> Self {
        Network {
            state: self.state.clone(),
        }
    }
}

fn pair(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_owned(), b.to_owned())
    } else {
        (b.to_owned(), a.to_owned())
    }
}

impl<H: Host> Network<H> {
    /// An empty network drawing its delays and losses from `random`.
    pub fn new(random: Arc<dyn Random>, faults: Faults, keep_trace: bool) -> Network<H> {
        Network {
            state: Rc::new(RefCell::new(State {
                nodes: BTreeMap::new(),
                cut: BTreeSet::new(),
                connections: BTreeMap::new(),
                next_connection: 0,
                random,
                faults,
                trace: Trace::new(keep_trace),
            })),
        }
    }

    /// Puts a node on the network at `address`, authenticated as `identity`.
    pub fn attach(&self, address: &str, identity: Fingerprint, host: Arc<H>) {
        self.note(&format!("attach {address}"));
        self.state
            .borrow_mut()
            .nodes
            .insert(address.to_owned(), Attached { host, identity });
    }

    /// Takes the node at `address` off the network (it crashed or stopped): its connections
    /// break and dials to it fail.
    pub fn remove(&self, address: &str) {
        self.note(&format!("remove {address}"));
        self.state.borrow_mut().nodes.remove(address);
        self.break_where(
            |ends| ends.0 == address || ends.1 == address,
            "peer went away",
        );
    }

    /// Partitions `a` from `b`: their connections break, and dials between them fail.
    pub fn cut(&self, a: &str, b: &str) {
        self.note(&format!("cut {a} {b}"));
        self.state.borrow_mut().cut.insert(pair(a, b));
        let cut = pair(a, b);
        self.break_where(|ends| pair(&ends.0, &ends.1) == cut, "network partition");
    }

    /// Ends the partition between `a` and `b`.
    pub fn heal(&self, a: &str, b: &str) {
        self.note(&format!("heal {a} {b}"));
        self.state.borrow_mut().cut.remove(&pair(a, b));
    }

    /// Ends every partition.
    pub fn heal_all(&self) {
        self.note("heal all");
        self.state.borrow_mut().cut.clear();
    }

    /// Sets how the network misbehaves from now on.
    pub fn set_faults(&self, faults: Faults) {
        self.state.borrow_mut().faults = faults;
    }

    /// Notes an event in the trace.
    pub fn note(&self, event: &str) {
        self.state.borrow_mut().trace.note(event);
    }

    /// The trace's digest and event count so far.
    pub fn trace(&self) -> (u64, u64) {
        let state = self.state.borrow();
        (state.trace.digest(), state.trace.events())
    }

    /// Every event's text, if the trace kept them (taken: later calls get none).
    pub fn take_trace(&self) -> Vec<String> {
        self.state.borrow_mut().trace.take_kept()
    }

    /// A dialer for the node at `address`.
    pub fn dialer(&self, address: &str) -> SimDialer<H> {
        SimDialer {
            network: self.clone(),
            from: address.to_owned(),
        }
    }

    /// A uniform draw in `0..n` (0 when `n` is 0) from the network's random source.
    fn below(&self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        let state = self.state.borrow();
        state.random.next_u64().unwrap_or(0) % n
    }

    fn delay(&self) -> Duration {
        let (low, high) = self.state.borrow().faults.delay_ms;
        Duration::from_millis(low + self.below(high.saturating_sub(low) + 1))
    }

    fn lost(&self) -> bool {
        let chance = self.state.borrow().faults.loss_per_mille;
        self.below(1000) < chance
    }

    fn break_where(&self, matches: impl Fn(&(String, String)) -> bool, why: &str) {
        let mut state = self.state.borrow_mut();
        for connection in state.connections.values_mut() {
            if matches(&connection.ends) && connection.why.is_none() {
                connection.why = Some(why.to_owned());
                connection.broken.bump();
            }
        }
    }

    fn break_connection(&self, id: u64, why: &str) {
        self.note(&format!("break {id}: {why}"));
        if let Some(connection) = self.state.borrow_mut().connections.get_mut(&id)
            && connection.why.is_none()
        {
            connection.why = Some(why.to_owned());
            connection.broken.bump();
        }
    }

    /// Resolves with why connection `id` broke (at once if it is gone).
    async fn broken(&self, id: u64) -> String {
        loop {
            let mut waiter = {
                let state = self.state.borrow();
                let Some(connection) = state.connections.get(&id) else {
                    return "connection closed".to_owned();
                };
                if let Some(why) = &connection.why {
                    return why.clone();
                }
                connection.broken.subscribe()
            };
            if waiter.changed().await.is_err() {
                return "connection closed".to_owned();
            }
        }
    }

    /// Opens a connection from `from` to `to`, which must be up, reachable and authenticate
    /// as `expected`.
    fn connect(&self, from: &str, to: &str, expected: &Fingerprint) -> Result<SimLink<H>> {
        let mut state = self.state.borrow_mut();
        let reachable = state.nodes.contains_key(from) && !state.cut.contains(&pair(from, to));
        let (Some(caller), Some(remote), true) = (
            state.nodes.get(from).map(|node| node.identity.clone()),
            state.nodes.get(to),
            reachable,
        ) else {
            return Err(Error::ConnFail(format!("no route from {from} to {to}")));
        };
        if &remote.identity != expected {
            return Err(Error::ConnFail(format!(
                "{to} authenticated as {}, not {expected}",
                remote.identity
            )));
        }
        let remote = remote.host.clone();
        let id = state.next_connection;
        state.next_connection += 1;
        state.connections.insert(
            id,
            Connection {
                ends: (from.to_owned(), to.to_owned()),
                why: None,
                broken: Changes::new(),
            },
        );
        Ok(SimLink {
            network: self.clone(),
            id,
            caller,
            remote,
        })
    }

    fn close(&self, id: u64) {
        self.state.borrow_mut().connections.remove(&id);
    }
}

/// Dials from one simulated node.
pub struct SimDialer<H> {
    network: Network<H>,
    from: String,
}

/// One end of a simulated connection: the caller's identity and the node called.
pub struct SimLink<H> {
    network: Network<H>,
    id: u64,
    caller: Fingerprint,
    remote: Arc<H>,
}

/// Keeps a simulated connection; ends when it breaks.
pub struct SimDriver<H> {
    network: Network<H>,
    id: u64,
}

impl<H: Host> Dialer for SimDialer<H> {
    type Client = SimLink<H>;
    type Driver = SimDriver<H>;

    async fn dial(
        &self,
        address: &str,
        fingerprint: &Fingerprint,
    ) -> Result<(SimLink<H>, SimDriver<H>)> {
        tokio::time::sleep(self.network.delay()).await;
        let link = self.network.connect(&self.from, address, fingerprint);
        match &link {
            Ok(link) => self
                .network
                .note(&format!("connect {} {} -> {address}", link.id, self.from)),
            Err(error) => self
                .network
                .note(&format!("dial {} -> {address}: {error}", self.from)),
        }
        let link = link?;
        let driver = SimDriver {
            network: self.network.clone(),
            id: link.id,
        };
        Ok((link, driver))
    }
}

impl<H: Host> LinkDriver for SimDriver<H> {
    async fn run(&mut self) -> String {
        self.network.broken(self.id).await
    }

    /// Closing takes a network delay, as a real close handshake does (a Cap'n Proto
    /// connection waits up to a second for its peer), so a link replaced meanwhile can come up
    /// before the old one is gone.
    async fn close(self) {
        tokio::time::sleep(self.network.delay()).await;
        self.network.close(self.id);
    }
}

impl<H: Host> PeerClient for SimLink<H> {
    type State = SimState<H>;

    async fn reconcile_state(&self, request: StateRequest) -> Result<(StateBegin, SimState<H>)> {
        let what = format!("reconcileState {}", request.db.as_str());
        let (remote, caller) = (self.remote.clone(), self.caller.clone());
        let opened = async move { StateResponder::begin(remote, caller, request) };
        let (begin, responder) = self.call(&what, opened).await?;
        let state = SimState {
            network: self.network.clone(),
            id: self.id,
            responder,
        };
        Ok((begin, state))
    }

    async fn get_deltas<I: Host>(
        &self,
        request: DeltaRequest,
        pages: Rc<DataPages<I>>,
    ) -> Result<()> {
        let responder = Responder::new(self.remote.clone(), self.caller.clone());
        let mut sink = DataSink {
            link: self,
            pages,
            device: self.remote.store().device().0,
        };
        tokio::select! {
            biased;
            why = self.network.broken(self.id) => Err(disconnected(&why)),
            ended = responder.run(&request, &mut sink) => ended,
        }
    }

    async fn get_syncgroup_deltas<I: Host>(
        &self,
        request: SyncgroupRequest,
        pages: Rc<SyncgroupPages<I>>,
    ) -> Result<()> {
        let mut sink = MetadataSink { link: self, pages };
        let SyncgroupRequest {
            db,
            knowledge,
            live,
            ..
        } = request;
        tokio::select! {
            biased;
            why = self.network.broken(self.id) => Err(disconnected(&why)),
            ended = serve_metadata(&*self.remote, &self.caller, &db, knowledge, live, &mut sink) => ended,
        }
    }

    async fn device_info(&self) -> Result<DeviceId> {
        let remote = self.remote.clone();
        self.call("deviceInfo", async move { Ok(remote.store().device()) })
            .await
    }

    async fn join_at_admin(&self, request: JoinRequest) -> Result<JoinReply> {
        let what = format!("join {}", request.name);
        let joined = self.remote.join_at_admin(
            self.caller.clone(),
            request.name,
            request.info,
            request.invite_secret,
        );
        self.call(&what, joined).await
    }

    async fn publish(&self, request: PublishRequest) -> Result<PublishOutcome> {
        let what = format!("publish {}", request.sg.name);
        let request = PublishRequest {
            publisher: self.caller.clone(),
            ..request
        };
        self.call(&what, self.remote.accept_publish(request)).await
    }
}

impl<H: Host> SimLink<H> {
    /// Runs a one-off call at the remote node: the request and the answer each cross the
    /// network (delayed, or lost with the connection), the call itself runs there as the
    /// authenticated caller.
    async fn call<T>(&self, what: &str, call: impl Future<Output = Result<T>>) -> Result<T> {
        let exchange = async {
            self.carry(format!("call {what}")).await?;
            let answer = call.await;
            self.carry(format!(
                "answer {what}: {}",
                answer
                    .as_ref()
                    .map_or_else(ToString::to_string, |_| "ok".to_owned())
            ))
            .await?;
            answer
        };
        tokio::select! {
            biased;
            why = self.network.broken(self.id) => Err(disconnected(&why)),
            answer = exchange => answer,
        }
    }
}

/// What a call on a broken connection fails with, as a real transport's does: `ConnFail`.
fn disconnected(why: &str) -> Error {
    Error::ConnFail(format!("Disconnected: {why}"))
}

async fn serve_metadata<H: Host>(
    remote: &H,
    caller: &Fingerprint,
    db: &DbName,
    knowledge: SyncgroupKnowledge,
    live: bool,
    sink: &mut impl SyncgroupSink,
) -> Result<()> {
    respond(remote, caller, db, knowledge, live, sink).await
}

impl<H: Host> SimLink<H> {
    /// Carries one page: after the network's delay, or lost (the connection breaks).
    async fn carry(&self, what: String) -> Result<()> {
        carry(&self.network, self.id, what).await
    }
}

/// Carries one message on connection `id`: after the network's delay, or lost (the
/// connection breaks).
async fn carry<H: Host>(network: &Network<H>, id: u64, what: String) -> Result<()> {
    tokio::time::sleep(network.delay()).await;
    if network.lost() {
        network.break_connection(id, "a page was lost");
        return Err(disconnected("a page was lost"));
    }
    network.note(&format!("deliver {id} {what}"));
    Ok(())
}

/// A catch-up-by-state session at a simulated node: its own responder side, each message
/// and page carried (delayed, or lost with the connection).
pub struct SimState<H: Host> {
    network: Network<H>,
    id: u64,
    responder: StateResponder<H>,
}

impl<H: Host> StateSession for SimState<H> {
    async fn reconcile(&self, message: Vec<u8>) -> Result<Vec<u8>> {
        let exchange = async {
            carry(
                &self.network,
                self.id,
                format!("reconcile {} bytes", message.len()),
            )
            .await?;
            let answer = self.responder.reconcile(&message)?;
            carry(
                &self.network,
                self.id,
                format!("answer {} bytes", answer.len()),
            )
            .await?;
            Ok(answer)
        };
        tokio::select! {
            biased;
            why = self.network.broken(self.id) => Err(disconnected(&why)),
            answer = exchange => answer,
        }
    }

    async fn fetch<I: Host>(&self, ids: Vec<[u8; 32]>, pages: Rc<StatePages<I>>) -> Result<()> {
        let serve = async {
            carry(&self.network, self.id, format!("fetch {} ids", ids.len())).await?;
            let rows = self.responder.rows_for(&ids)?;
            let mut from = 0;
            while from < rows.len() {
                let (records, next) = self.responder.page(&rows, from)?;
                from = next;
                carry(&self.network, self.id, state_page(&records)).await?;
                pages.push(Ok(records)).await?;
            }
            Ok(())
        };
        tokio::select! {
            biased;
            why = self.network.broken(self.id) => Err(disconnected(&why)),
            served = serve => served,
        }
    }
}

/// How a fetched page shows in the trace.
fn state_page(records: &[LogRecord]) -> String {
    format!(
        "state {} records {:?}",
        records.len(),
        records
            .iter()
            .map(|record| (record.device().0, record.generation()))
            .collect::<Vec<_>>()
    )
}

/// The responder's data pages, carried to the initiator's [`DataPages`].
struct DataSink<'a, H, I: Host> {
    link: &'a SimLink<H>,
    pages: Rc<DataPages<I>>,
    device: u64,
}

impl<H: Host, I: Host> PageSink for DataSink<'_, H, I> {
    type Room = ();

    async fn room(&mut self) -> Result<()> {
        Ok(())
    }

    async fn send(&mut self, (): (), page: Page) -> Result<()> {
        let what = format!(
            "data {} records {:?} knowledge {:?}",
            page.records.len(),
            page.records
                .iter()
                .map(|record| (record.device().0, record.generation()))
                .collect::<Vec<_>>(),
            page.knowledge
        );
        self.link.carry(what).await?;
        let push = Push {
            records: page.records,
            knowledge: page.knowledge,
            remaining: page.remaining,
            responder: crate::genvec::DeviceId(self.device),
            resume: Some(page.resume),
            marks: page.initiator_marks,
            notices: page.notices,
        };
        self.pages.push(Ok(push)).await
    }
}

/// The responder's syncgroup pages, carried to the initiator's [`SyncgroupPages`].
struct MetadataSink<'a, H, I: Host> {
    link: &'a SimLink<H>,
    pages: Rc<SyncgroupPages<I>>,
}

impl<H: Host, I: Host> SyncgroupSink for MetadataSink<'_, H, I> {
    type Room = ();

    async fn room(&mut self) -> Result<()> {
        Ok(())
    }

    async fn send(&mut self, (): (), page: SyncgroupPage) -> Result<()> {
        let what = format!(
            "syncgroups {} knowledge {:?} more {}",
            page.records.len(),
            page.knowledge,
            page.more
        );
        self.link.carry(what).await?;
        self.pages.push(Ok(page)).await
    }
}

#[cfg(test)]
mod tests {
    use crate::clock::ManualTime;
    use crate::env::{Blocking, Env, SeededRandom};
    use crate::genvec::Scope;
    use crate::identity::NodeIdentity;
    use crate::node::{Node, NodeParts};
    use crate::sync::initiator::Session;
    use crate::sync::peers::PeerConfig;
    use syncbase_storage::MemoryStorage;

    use super::*;

    fn node(seed: u8) -> Arc<Node> {
        let mut env = Env::seeded(u64::from(seed), Arc::new(ManualTime::new(1_000_000_000)));
        env.blocking = Blocking::Inline;
        let identity = NodeIdentity::from_seed([seed; 32]).unwrap();
        let parts = NodeParts::simulated(Arc::new(MemoryStorage::new()), identity, env).unwrap();
        let node = Arc::new(Node::assemble(parts).unwrap());
        node.store()
            .create_database(&DbName::parse("db").unwrap())
            .unwrap();
        node
    }

    /// A's data GetDeltas call to B over `link`, as the link loop sends it.
    async fn get_deltas(a: &Arc<Node>, b: &Node, link: &SimLink<Node>) -> Result<()> {
        let session = Rc::new(Session::new(
            a.clone(),
            b.identity().fingerprint().clone(),
            DbName::parse("db").unwrap(),
            vec![Scope::new("t", "")],
        ));
        let request = session.request()?;
        link.get_deltas(request, Rc::new(DataPages::new(session)))
            .await
    }

    #[tokio::test(start_paused = true)]
    async fn calls_fail_with_the_responders_kind_or_conn_fail_when_the_connection_breaks() {
        let no_loss = Faults {
            loss_per_mille: 0,
            ..Faults::default()
        };
        let network = Network::new(Arc::new(SeededRandom::new(1)), no_loss, false);
        let (a, b) = (node(1), node(2));
        network.attach("a", a.identity().fingerprint().clone(), a.clone());
        network.attach("b", b.identity().fingerprint().clone(), b.clone());
        let dialer = network.dialer("a");
        let (link, _driver) = dialer.dial("b", b.identity().fingerprint()).await.unwrap();
        // B shares nothing with A: its responder refuses the session.
        let refused = get_deltas(&a, &b, &link).await;
        assert!(matches!(refused, Err(Error::NoAccess(_))), "{refused:?}");
        // Once B shares the table, the live call holds until the network cuts it.
        let peer = PeerConfig::new(
            "a",
            a.identity().fingerprint().clone(),
            "db",
            vec![Scope::new("t", "")],
        )
        .unwrap();
        b.add_peer(peer).await.unwrap();
        let cut = async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            network.cut("a", "b");
            std::future::pending::<()>().await
        };
        let broken = tokio::select! {
            biased;
            broken = get_deltas(&a, &b, &link) => broken,
            () = cut => unreachable!(),
        };
        assert!(matches!(broken, Err(Error::ConnFail(_))), "{broken:?}");
    }

    /// Makes `node` share table `t` of `db` with `peer` as a declared peer.
    async fn declare(node: &Node, peer: &Node, address: &str) {
        let fingerprint = peer.identity().fingerprint().clone();
        let config = PeerConfig::new(address, fingerprint, "db", vec![Scope::new("t", "")]);
        node.add_peer(config.unwrap()).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_catch_up_by_state_runs_over_the_simulated_link_and_breaks_with_it() {
        let no_loss = Faults {
            loss_per_mille: 0,
            ..Faults::default()
        };
        let network = Network::new(Arc::new(SeededRandom::new(1)), no_loss, true);
        let (a, b) = (node(1), node(2));
        network.attach("a", a.identity().fingerprint().clone(), a.clone());
        network.attach("b", b.identity().fingerprint().clone(), b.clone());
        declare(&a, &b, "b").await;
        declare(&b, &a, "a").await;
        let db = DbName::parse("db").unwrap();
        let scopes = vec![Scope::new("t", "")];
        let rows: Vec<crate::store::Mutation> = (0..50)
            .map(|i| crate::store::Mutation::Put {
                table: crate::names::TableName::parse("t").unwrap(),
                key: crate::names::RowKey::parse(&format!("k{i}")).unwrap(),
                value: vec![i],
            })
            .collect();
        b.store().commit(&db, &rows).unwrap();
        let (link, _driver) = network
            .dialer("a")
            .dial("b", b.identity().fingerprint())
            .await
            .unwrap();
        let request = StateRequest {
            db: db.clone(),
            scopes: scopes.clone(),
        };
        let peer = b.identity().fingerprint().clone();
        let done = crate::sync::catchup::catch_up(
            &a,
            &peer,
            request.clone(),
            link.reconcile_state(request.clone()),
        )
        .await
        .unwrap_or_else(|error| panic!("{error:?}"));
        assert_eq!((done.records, done.applied.heads_taken), (50, 50));
        assert_eq!(
            a.store().state_items(&db, &scopes).unwrap(),
            b.store().state_items(&db, &scopes).unwrap()
        );
        assert!(
            network
                .take_trace()
                .iter()
                .any(|event| event.contains("state 50 records"))
        );
        // A cut connection fails the catch-up with ConnFail, as a real one does.
        let (link, _driver) = network
            .dialer("a")
            .dial("b", b.identity().fingerprint())
            .await
            .unwrap();
        network.cut("a", "b");
        let broken = crate::sync::catchup::catch_up(
            &a,
            &peer,
            request.clone(),
            link.reconcile_state(request),
        )
        .await;
        assert!(
            matches!(
                broken,
                Err(crate::sync::catchup::CatchUpError::Peer(Error::ConnFail(_)))
            ),
            "{broken:?}"
        );
    }
}
