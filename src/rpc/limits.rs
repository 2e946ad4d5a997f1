//! The memory a connection may make the node hold, and the budgets that enforce it.
//!
//! - **Before authentication** (app port: until `Gate.login` succeeds; peer port: until the
//!   TLS handshake and the acceptance byte are done) a connection may send messages of at most
//!   [`PRE_AUTH_MESSAGE_BYTES`]; a larger frame is not read until login succeeds, and a
//!   connection not authenticated within [`PRE_AUTH_DEADLINE`] is dropped.
//! - **Incoming**, every frame is read as its bytes arrive (never allocated from the size its
//!   header announces). A frame over [`SMALL_MESSAGE_BYTES`] first takes its whole size from the
//!   node-wide [`NodeBudget`] ([`NODE_INCOMING_BYTES`]), so admitted frames can always finish
//!   and free their share (no deadlock), and a full budget stops reading large frames
//!   (backpressure). A frame whose bytes stop for [`READ_STALL`] drops its connection. On the
//!   peer port only members (Read in a held syncgroup, or declared peers) may send frames over
//!   [`SMALL_MESSAGE_BYTES`] ([`ConnectionBudget::restrict_large_frames`]): anyone with a key
//!   passes TLS, and strangers must not hold the node-wide budget. The app and peer ports
//!   draw on separate pools, and a peer identity reads one large frame at a time across its
//!   connections ([`NodeBudget::identity_gate`]), so a trickling member holds at most one
//!   maximal message of the peer pool and never stalls an app's writes.
//! - **Outgoing**, each connection counts the bytes it has queued but not yet written
//!   ([`ConnectionBudget`]); past [`OUTGOING_BYTES`] (or with [`MAX_WAITING_CALLS`] calls
//!   waiting for room) it stops reading the peer's calls until the queue drains, and methods that
//!   make large answers wait for room first ([`ConnectionBudget::reserve`]). A connection whose
//!   queue stays over budget without any byte written for [`WRITE_STALL`] is dropped. All
//!   connections together may queue [`NODE_OUTGOING_BYTES`]; past it, every connection with
//!   more than [`SMALL_QUEUE_BYTES`] queued stops reading too.
//! - **Pushes** (scan pages, watch changes, `getDeltas` pages: calls the node makes on a
//!   caller's sink) take the same room as answers: `rpc::push::WindowedPush` reserves each
//!   page's upper bound before reading it, so a sink that never acknowledges, or a peer that
//!   reads nothing, holds at most the connection's budget. A connection may run at most
//!   [`MAX_STREAMS`] such streams at once ([`ConnectionBudget::open_stream`]); a further one
//!   fails with `ResourceExhausted:`.
//!
//! Connection counts are capped by [`super::admission`].

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::error::Error;
use crate::identity::Fingerprint;
use crate::rpc::MAX_MESSAGE_WORDS;

/// Largest message a connection may send before it authenticates: 64 KiB (a login or a TLS
/// handshake message fits many times over).
pub const PRE_AUTH_MESSAGE_BYTES: usize = 64 << 10;
/// Time a connection has to authenticate (app: log in; peer: finish TLS) before it is dropped.
pub const PRE_AUTH_DEADLINE: Duration = Duration::from_secs(10);
/// Largest message after authentication, in bytes (64 MiB, `rpc::MAX_MESSAGE_WORDS`).
pub const MAX_MESSAGE_BYTES: usize = MAX_MESSAGE_WORDS * 8;
/// Frames up to this size (64 KiB) are read without taking from the node-wide budget: they
/// are bounded by the connection caps, and ordinary calls never wait behind large uploads.
pub const SMALL_MESSAGE_BYTES: usize = 64 << 10;
/// Bytes of partly read large frames the whole node may hold: 256 MiB (four maximal
/// messages at once).
pub const NODE_INCOMING_BYTES: usize = 256 << 20;
/// A frame whose next bytes take longer than this (30 s) to arrive drops its connection,
/// so a stalled sender holds its share of [`NODE_INCOMING_BYTES`] for at most this long.
pub const READ_STALL: Duration = Duration::from_secs(30);
/// Bytes a connection may have queued for sending (or reserved for answers being built) before
/// the node stops reading its calls: 16 MiB.
pub const OUTGOING_BYTES: usize = 16 << 20;
/// Calls of one connection that may wait for outgoing room before the node stops reading more.
pub const MAX_WAITING_CALLS: usize = 64;
/// A connection whose outgoing queue stays over budget with nothing written for this long (60
/// s) is dropped: its reader is gone or refuses to read.
pub const WRITE_STALL: Duration = Duration::from_secs(60);

/// Bytes all connections of the node together may have queued for sending: 256 MiB. Past
/// it, every connection with more than [`SMALL_QUEUE_BYTES`] queued stops reading calls until
/// its queue drains, so many connections that each stay under [`OUTGOING_BYTES`] cannot add
/// up to gigabytes.
pub const NODE_OUTGOING_BYTES: usize = 256 << 20;
/// A connection with at most this much queued (64 KiB) keeps reading even when the node is
/// over [`NODE_OUTGOING_BYTES`], so clients that read their answers are never held up by
/// those that do not.
pub const SMALL_QUEUE_BYTES: usize = 64 << 10;

/// Streams (watches, scans in progress, `getDeltas` calls: methods that push pages to the
/// caller's sink) one connection may run at once: 64. Each stream's pushes share the
/// connection's [`OUTGOING_BYTES`], so this bounds the streams' own state and how many wait
/// for room ([`MAX_WAITING_CALLS`]), not their pages.
pub const MAX_STREAMS: usize = 64;
/// Streams one peer connection may run at once: 1,024. A peer syncing with a node opens two
/// per shared database (data and syncgroup metadata), so [`MAX_STREAMS`] would cap the
/// databases two nodes can share at 32.
pub const MAX_PEER_STREAMS: usize = 1024;

/// The node-wide budgets (cheap to clone; one per node): bytes of partly read large frames
/// (one pool for the app port, one for the peer port, so peers never stall an app's writes),
/// the bytes all connections have queued for sending, and on the peer port one large frame at
/// a time per identity (so one member trickling large frames holds at most one maximal
/// message of its port's pool).
#[derive(Clone, Debug)]
pub struct NodeBudget {
    bytes: Arc<Semaphore>,
    peer_bytes: Arc<Semaphore>,
    outgoing: Arc<AtomicUsize>,
    outgoing_limit: usize,
    identities: Arc<Mutex<HashMap<Fingerprint, Arc<Semaphore>>>>,
}

impl Default for NodeBudget {
    fn default() -> Self {
        NodeBudget::new(NODE_INCOMING_BYTES)
    }
}

impl NodeBudget {
    /// An incoming budget of `bytes`, and the default outgoing one.
    pub fn new(bytes: usize) -> Self {
        NodeBudget::with_outgoing(bytes, NODE_OUTGOING_BYTES)
    }

    /// An incoming budget of `incoming` bytes and an outgoing one of `outgoing` bytes.
    pub fn with_outgoing(incoming: usize, outgoing: usize) -> Self {
        NodeBudget {
            bytes: Arc::new(Semaphore::new(incoming)),
            peer_bytes: Arc::new(Semaphore::new(incoming)),
            outgoing: Arc::new(AtomicUsize::new(0)),
            outgoing_limit: outgoing,
            identities: Arc::default(),
        }
    }

    /// The same budgets with the peer port's pool of incoming bytes in place of the app
    /// port's: what peer connections (accepted or dialled) take large frames from.
    pub fn peer_port(&self) -> NodeBudget {
        NodeBudget {
            bytes: self.peer_bytes.clone(),
            peer_bytes: self.peer_bytes.clone(),
            ..self.clone()
        }
    }

    /// The gate letting one peer identity read one large frame at a time, across all its
    /// connections (given back, and forgotten, once none of them holds it).
    pub fn identity_gate(&self, peer: &Fingerprint) -> Arc<Semaphore> {
        let mut gates = self
            .identities
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        gates.retain(|_, gate| Arc::strong_count(gate) > 1);
        gates
            .entry(peer.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(1)))
            .clone()
    }

    /// Bytes all connections have queued or reserved for sending.
    pub fn outgoing(&self) -> usize {
        self.outgoing.load(Ordering::Relaxed)
    }

    fn outgoing_over(&self) -> bool {
        self.outgoing() > self.outgoing_limit
    }

    fn add_outgoing(&self, bytes: usize) {
        self.outgoing.fetch_add(bytes, Ordering::Relaxed);
    }

    fn sub_outgoing(&self, bytes: usize) {
        self.outgoing.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Bytes not taken by frames being read.
    pub fn available(&self) -> usize {
        self.bytes.available_permits()
    }

    /// Takes `bytes` (at most `u32::MAX`), waiting for them to be free; given back when the
    /// permit drops.
    async fn take(&self, bytes: usize) -> capnp::Result<OwnedSemaphorePermit> {
        let bytes = u32::try_from(bytes).map_err(|_| too_large(bytes, MAX_MESSAGE_BYTES))?;
        self.bytes
            .clone()
            .acquire_many_owned(bytes)
            .await
            .map_err(|_| capnp::Error::failed("the incoming budget is closed".into()))
    }
}

/// One connection's limits: whether it has authenticated, and the bytes it has queued for
/// sending. Shared (`Rc`) by the connection's network and the services that make large answers.
pub struct ConnectionBudget {
    incoming: NodeBudget,
    authenticated: Cell<bool>,
    auth: Notify,
    on_authenticated: RefCell<Option<Box<dyn FnOnce()>>>,
    /// Bytes handed to the write queue and not yet written.
    queued: Cell<usize>,
    /// Bytes reserved by answers being built.
    reserved: Cell<usize>,
    /// Reservations of answers that have been built and are about to be queued, oldest
    /// first: the next message queued releases the oldest whole, whatever its own size, so a
    /// reservation larger than its message never leaves a remainder counted (issue 12's soak:
    /// remainders of every pushed page piled up until the connection had no room left).
    handed_over: RefCell<VecDeque<usize>>,
    waiting: Cell<usize>,
    room: Notify,
    /// Whether the other side may send frames over [`SMALL_MESSAGE_BYTES`] (None: yes). On
    /// the peer port only members may: anyone with a key passes TLS, and a stranger
    /// trickling large frames would otherwise hold the node-wide incoming budget.
    large_frames: RefCell<Option<Box<dyn Fn() -> bool>>>,
    /// The peer identity's gate: one large frame at a time across its connections.
    identity_gate: RefCell<Option<Arc<Semaphore>>>,
    /// Streams running, and how many may ([`MAX_STREAMS`], [`MAX_PEER_STREAMS`]).
    streams: Cell<usize>,
    max_streams: Cell<usize>,
}

impl ConnectionBudget {
    /// A connection that has not authenticated yet; `on_authenticated` runs once when it does
    /// (it releases the connection's pre-authentication slot).
    pub fn pre_auth(incoming: NodeBudget, on_authenticated: Box<dyn FnOnce()>) -> Rc<Self> {
        Rc::new(Self::with(incoming, false, Some(on_authenticated)))
    }

    /// A connection that authenticated before its first message (TLS peers, dialled nodes).
    pub fn authenticated(incoming: NodeBudget) -> Rc<Self> {
        Rc::new(Self::with(incoming, true, None))
    }

    fn with(
        incoming: NodeBudget,
        authenticated: bool,
        on_authenticated: Option<Box<dyn FnOnce()>>,
    ) -> Self {
        ConnectionBudget {
            incoming,
            authenticated: Cell::new(authenticated),
            auth: Notify::new(),
            on_authenticated: RefCell::new(on_authenticated),
            queued: Cell::new(0),
            reserved: Cell::new(0),
            handed_over: RefCell::new(VecDeque::new()),
            waiting: Cell::new(0),
            room: Notify::new(),
            large_frames: RefCell::new(None),
            identity_gate: RefCell::new(None),
            streams: Cell::new(0),
            max_streams: Cell::new(MAX_STREAMS),
        }
    }

    /// From now on, frames over [`SMALL_MESSAGE_BYTES`] are admitted only while `allowed()`
    /// says so (asked once per such frame); others fail with `ResourceExhausted:`, which
    /// ends the connection.
    pub fn restrict_large_frames(&self, allowed: Box<dyn Fn() -> bool>) {
        *self.large_frames.borrow_mut() = Some(allowed);
    }

    /// From now on, a large frame first waits for `gate` (one large frame at a time for the
    /// peer identity behind it, [`NodeBudget::identity_gate`]).
    pub fn one_large_frame_at_a_time(&self, gate: Arc<Semaphore>) {
        *self.identity_gate.borrow_mut() = Some(gate);
    }

    fn large_frames_allowed(&self) -> bool {
        self.large_frames
            .borrow()
            .as_ref()
            .is_none_or(|allowed| allowed())
    }

    /// Marks the connection authenticated: larger messages may come in from now on.
    pub fn authenticate(&self) {
        self.authenticated.set(true);
        let release = self.on_authenticated.borrow_mut().take();
        if let Some(release) = release {
            release();
        }
        self.auth.notify_waiters();
    }

    pub fn is_authenticated(&self) -> bool {
        self.authenticated.get()
    }

    /// Resolves once the connection has authenticated.
    pub async fn until_authenticated(&self) {
        loop {
            let notified = self.auth.notified();
            if self.is_authenticated() {
                return;
            }
            notified.await;
        }
    }

    /// Admits an incoming frame of `bytes` (segment table included): fails with
    /// `ResourceExhausted:` over [`MAX_MESSAGE_BYTES`]; before authentication waits for it if
    /// the frame is over [`PRE_AUTH_MESSAGE_BYTES`]; takes a large frame's bytes from the node
    /// budget (the permit gives them back when the frame is complete).
    pub async fn admit_frame(&self, bytes: usize) -> capnp::Result<Option<FramePermit>> {
        if bytes > MAX_MESSAGE_BYTES {
            return Err(too_large(bytes, MAX_MESSAGE_BYTES));
        }
        if bytes > PRE_AUTH_MESSAGE_BYTES {
            self.until_authenticated().await;
        }
        if bytes <= SMALL_MESSAGE_BYTES {
            return Ok(None);
        }
        if !self.large_frames_allowed() {
            return Err(Error::ResourceExhausted(format!(
                "a message of {bytes} bytes: messages over {SMALL_MESSAGE_BYTES} bytes are \
                 taken only from members of a syncgroup here or declared peers"
            ))
            .into());
        }
        let gate = self.identity_gate.borrow().clone();
        let turn =
            match gate {
                Some(gate) => Some(gate.acquire_owned().await.map_err(|_| {
                    capnp::Error::failed("the identity's frame gate is closed".into())
                })?),
                None => None,
            };
        let bytes = self.incoming.take(bytes).await?;
        Ok(Some(FramePermit { _turn: turn, bytes }))
    }

    /// Counts `bytes` as queued until the returned charge drops (when the write queue has
    /// written or discarded the message), and releases the oldest reservation handed over by
    /// an answer, whole: the answer is this message or one queued soon after, which counts
    /// its own bytes. One message releases one reservation, so handed-over room never
    /// outlives the messages that follow it, whatever the estimates were.
    pub fn queue(self: &Rc<Self>, bytes: usize) -> QueuedBytes {
        let released = self.handed_over.borrow_mut().pop_front().unwrap_or(0);
        self.reserved.set(self.reserved.get() - released);
        self.queued.set(self.queued.get() + bytes);
        self.incoming.add_outgoing(bytes);
        self.incoming.sub_outgoing(released);
        if released > 0 {
            self.room.notify_waiters();
        }
        QueuedBytes {
            budget: self.clone(),
            bytes,
        }
    }

    /// Bytes queued and not yet written.
    pub fn queued(&self) -> usize {
        self.queued.get()
    }

    /// Bytes queued or reserved.
    fn committed(&self) -> usize {
        self.queued.get() + self.reserved.get()
    }

    /// Whether the node should stop reading this connection's calls: too much to send (on
    /// this connection, or on all together while this one has more than a little queued), or
    /// too many calls waiting for room.
    pub fn over_budget(&self) -> bool {
        let committed = self.committed();
        committed > OUTGOING_BYTES
            || (committed > SMALL_QUEUE_BYTES && self.incoming.outgoing_over())
            || self.waiting.get() >= MAX_WAITING_CALLS
    }

    /// Waits until the connection is back under budget. Fails with `ResourceExhausted:` if
    /// nothing moves for [`WRITE_STALL`] (the other side reads none of our answers).
    pub async fn until_readable(&self) -> capnp::Result<()> {
        loop {
            let notified = self.room.notified();
            if !self.over_budget() {
                return Ok(());
            }
            if tokio::time::timeout(WRITE_STALL, notified).await.is_err() {
                return Err(Error::ResourceExhausted(format!(
                    "the other side read none of {} queued bytes for {WRITE_STALL:?}",
                    self.queued()
                ))
                .into());
            }
        }
    }

    /// Reserves room for an answer of up to `bytes`, waiting while the connection has more than
    /// [`OUTGOING_BYTES`] queued or reserved (an answer bigger than the budget waits for an
    /// empty queue). Call before reading what the answer will carry.
    pub async fn reserve(self: &Rc<Self>, bytes: usize) -> Reservation {
        {
            // A guard, not a counter decremented after the loop: a call given up while it
            // waits (its future dropped) must stop counting as waiting.
            let _waiting = Waiting::new(self);
            loop {
                let notified = self.room.notified();
                let committed = self.committed();
                let node_full = committed > SMALL_QUEUE_BYTES && self.incoming.outgoing_over();
                if committed == 0 || (committed + bytes <= OUTGOING_BYTES && !node_full) {
                    break;
                }
                notified.await;
            }
        }
        self.reserved.set(self.reserved.get() + bytes);
        self.incoming.add_outgoing(bytes);
        Reservation {
            budget: self.clone(),
            bytes,
        }
    }

    fn release(&self, bytes: usize) {
        self.reserved.set(self.reserved.get() - bytes);
        self.incoming.sub_outgoing(bytes);
        self.room.notify_waiters();
    }
}

impl ConnectionBudget {
    /// Lets this connection run `streams` streams at once instead of [`MAX_STREAMS`].
    pub fn allow_streams(&self, streams: usize) {
        self.max_streams.set(streams);
    }

    /// Counts a new stream (a method pushing pages to the caller's sink) until the returned
    /// slot drops; fails with `ResourceExhausted:` if the connection already runs the most it
    /// may ([`MAX_STREAMS`], or what [`ConnectionBudget::allow_streams`] set).
    pub fn open_stream(self: &Rc<Self>) -> Result<StreamSlot, Error> {
        let running = self.streams.get();
        if running >= self.max_streams.get() {
            return Err(Error::ResourceExhausted(format!(
                "this connection already runs {running} streams (watches, scans, getDeltas), \
                 the most one connection may; end one first"
            )));
        }
        self.streams.set(running + 1);
        Ok(StreamSlot {
            budget: self.clone(),
        })
    }

    /// Streams running on this connection.
    pub fn streams(&self) -> usize {
        self.streams.get()
    }
}

/// One running stream's place under [`MAX_STREAMS`]; given back when dropped.
pub struct StreamSlot {
    budget: Rc<ConnectionBudget>,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let streams = &self.budget.streams;
        streams.set(streams.get() - 1);
    }
}

/// Counts a call as waiting for room until dropped (also when its future is dropped).
struct Waiting<'a>(&'a ConnectionBudget);

impl<'a> Waiting<'a> {
    fn new(budget: &'a ConnectionBudget) -> Self {
        budget.waiting.set(budget.waiting.get() + 1);
        Waiting(budget)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.set(self.0.waiting.get() - 1);
    }
}

/// A large frame's admission: its bytes from the port's pool, and its identity's turn (on
/// the peer port); both given back when the frame is complete (dropped).
#[derive(Debug)]
pub struct FramePermit {
    _turn: Option<OwnedSemaphorePermit>,
    bytes: OwnedSemaphorePermit,
}

impl FramePermit {
    /// Bytes it holds of the port's pool.
    pub fn bytes(&self) -> usize {
        self.bytes.num_permits()
    }
}

/// Bytes of one message in the write queue; counted until dropped.
pub struct QueuedBytes {
    budget: Rc<ConnectionBudget>,
    bytes: usize,
}

impl Drop for QueuedBytes {
    fn drop(&mut self) {
        let budget = &self.budget;
        budget.queued.set(budget.queued.get() - self.bytes);
        budget.incoming.sub_outgoing(self.bytes);
        budget.room.notify_waiters();
    }
}

/// Room reserved for an answer being built. Dropping it gives the room back (the call failed);
/// [`Reservation::hand_over`] keeps it counted until the answer is queued.
pub struct Reservation {
    budget: Rc<ConnectionBudget>,
    bytes: usize,
}

impl Reservation {
    /// Gives back what the answer will not need: it carries `bytes` (at most the reservation).
    pub fn shrink_to(&mut self, bytes: usize) {
        let freed = self.bytes.saturating_sub(bytes);
        self.bytes -= freed;
        if freed > 0 {
            self.budget.release(freed);
        }
    }

    /// Bytes reserved.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Grows the reservation to `bytes` (an answer turned out bigger than its upper bound,
    /// e.g. a sync page keeping an app batch whole), waiting like [`ConnectionBudget::reserve`]
    /// for the extra room; with nothing else queued or reserved it goes alone. Does nothing if
    /// `bytes` is not more than already reserved.
    pub async fn grow_to(&mut self, bytes: usize) {
        let Some(extra) = bytes.checked_sub(self.bytes).filter(|&extra| extra > 0) else {
            return;
        };
        let budget = self.budget.clone();
        {
            let _waiting = Waiting::new(&budget);
            loop {
                let notified = budget.room.notified();
                let committed = budget.committed();
                let others = committed - self.bytes;
                let node_full = committed > SMALL_QUEUE_BYTES && budget.incoming.outgoing_over();
                if others == 0 || (committed + extra <= OUTGOING_BYTES && !node_full) {
                    break;
                }
                notified.await;
            }
        }
        budget.reserved.set(budget.reserved.get() + extra);
        budget.incoming.add_outgoing(extra);
        self.bytes += extra;
    }

    /// The answer is built and capnp-rpc queues it later: its bytes stay reserved until the
    /// next message queued on this connection releases them ([`ConnectionBudget::queue`]).
    /// A call sent by this node is queued as it is sent: drop its reservation right after
    /// sending instead.
    pub fn hand_over(mut self) {
        let budget = &self.budget;
        budget.handed_over.borrow_mut().push_back(self.bytes);
        self.bytes = 0;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.budget.release(self.bytes);
        }
    }
}

fn too_large(bytes: usize, limit: usize) -> capnp::Error {
    Error::ResourceExhausted(format!(
        "a message of {bytes} bytes is over the limit of {limit} bytes"
    ))
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget() -> Rc<ConnectionBudget> {
        ConnectionBudget::authenticated(NodeBudget::new(1 << 20))
    }

    #[test]
    fn a_peer_connection_may_run_more_streams_than_an_app_connection() {
        let budget = budget();
        let app: Vec<_> = (0..MAX_STREAMS)
            .map(|_| budget.open_stream().unwrap())
            .collect();
        assert!(budget.open_stream().is_err());
        budget.allow_streams(MAX_PEER_STREAMS);
        let more: Vec<_> = (MAX_STREAMS..MAX_PEER_STREAMS)
            .map(|_| budget.open_stream().unwrap())
            .collect();
        let error = budget.open_stream().err().unwrap();
        assert_eq!(error.id(), "ResourceExhausted", "{error}");
        drop((app, more));
        assert_eq!(budget.streams(), 0);
    }

    #[tokio::test]
    async fn one_peer_identity_reads_one_large_frame_at_a_time_from_the_peer_pool() {
        let node = NodeBudget::new(1 << 20);
        let peer = Fingerprint::parse(&"ab".repeat(32)).unwrap();
        let connection = || {
            let budget = ConnectionBudget::authenticated(node.peer_port());
            budget.one_large_frame_at_a_time(node.identity_gate(&peer));
            budget
        };
        let (first, second) = (connection(), connection());
        let held = first.admit_frame(256 << 10).await.unwrap();
        // The identity's second connection waits for the first frame, whatever the pool has.
        let waiting = tokio::time::timeout(Duration::from_millis(50), second.admit_frame(1 << 17));
        assert!(
            waiting.await.is_err(),
            "a second large frame of one identity waited"
        );
        // The app port's pool is untouched by peers.
        assert_eq!(node.available(), 1 << 20);
        assert_eq!(node.peer_port().available(), (1 << 20) - (256 << 10));
        drop(held);
        let next = second.admit_frame(1 << 17).await.unwrap();
        assert_eq!(next.map(|permit| permit.bytes()), Some(1 << 17));
        // Another identity is never held up by this one.
        let other = ConnectionBudget::authenticated(node.peer_port());
        other.one_large_frame_at_a_time(
            node.identity_gate(&Fingerprint::parse(&"cd".repeat(32)).unwrap()),
        );
        assert!(other.admit_frame(1 << 17).await.unwrap().is_some());
    }

    #[test]
    fn connections_together_stay_within_the_node_outgoing_budget() {
        let node = NodeBudget::with_outgoing(1 << 20, 1 << 20);
        let (hog, reader) = (
            ConnectionBudget::authenticated(node.clone()),
            ConnectionBudget::authenticated(node.clone()),
        );
        let hogged = hog.queue(2 << 20);
        assert_eq!(node.outgoing(), 2 << 20);
        // The node is over its budget: a connection with more than a little queued stops...
        assert!(hog.over_budget(), "over the node budget with 2 MiB queued");
        let little = reader.queue(SMALL_QUEUE_BYTES);
        assert!(
            !reader.over_budget(),
            "a reader with little queued keeps reading"
        );
        let more = reader.queue(1);
        assert!(reader.over_budget());
        // ...until the hog's queue is written.
        drop(hogged);
        assert!(!reader.over_budget());
        drop((little, more));
        assert_eq!(node.outgoing(), 0);
    }

    #[test]
    fn queued_bytes_count_until_written() {
        let budget = budget();
        let first = budget.queue(OUTGOING_BYTES);
        assert!(!budget.over_budget(), "exactly the budget still reads");
        let second = budget.queue(1);
        assert!(budget.over_budget());
        drop(first);
        assert_eq!(budget.queued(), 1);
        assert!(!budget.over_budget());
        drop(second);
        assert_eq!(budget.queued(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_waits_for_room_and_its_reservation_passes_to_the_queue() {
        let budget = budget();
        let queued = budget.queue(OUTGOING_BYTES - 10);
        let mut waiting = Box::pin(budget.reserve(100));
        assert!(futures::poll!(waiting.as_mut()).is_pending());
        assert_eq!(budget.waiting.get(), 1);
        drop(queued);
        let mut reservation = waiting.await;
        assert_eq!(budget.committed(), 100);
        reservation.shrink_to(40);
        assert_eq!(budget.committed(), 40);
        reservation.hand_over();
        assert_eq!(budget.committed(), 40, "handed over, still counted");
        let answer = budget.queue(50);
        assert_eq!(
            (budget.queued(), budget.committed()),
            (50, 50),
            "the queued answer took the reservation over"
        );
        drop(answer);
        assert_eq!(budget.committed(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn answers_smaller_than_their_handed_over_room_leave_nothing_counted() {
        // Each answer's estimate is 8,900 bytes over its real message: remainders that were
        // kept counted filled the connection's budget after a few thousand answers, and a
        // connection with no room left stopped sending for good (issue 12's soak).
        let budget = budget();
        for _ in 0..1_500 {
            let mut room = budget.reserve(10_000).await;
            room.shrink_to(9_000);
            room.hand_over();
            drop(budget.queue(100));
        }
        assert_eq!(budget.committed(), 0);
        assert!(!budget.over_budget());
    }

    #[tokio::test(start_paused = true)]
    async fn a_reserve_given_up_stops_counting_as_waiting() {
        let budget = budget();
        let full = budget.queue(OUTGOING_BYTES);
        let mut waiter = Box::pin(budget.reserve(1));
        assert!(futures::poll!(waiter.as_mut()).is_pending());
        assert_eq!(budget.waiting.get(), 1);
        drop(waiter);
        assert_eq!(budget.waiting.get(), 0, "a cancelled call no longer waits");
        drop(full);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_reservation_gives_its_room_back() {
        let budget = budget();
        let reservation = budget.reserve(OUTGOING_BYTES).await;
        let mut second = Box::pin(budget.reserve(1));
        assert!(futures::poll!(second.as_mut()).is_pending());
        drop(reservation);
        drop(second.await);
        assert_eq!(budget.committed(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_bigger_than_the_budget_goes_alone() {
        let budget = budget();
        let big = budget.reserve(2 * OUTGOING_BYTES).await;
        assert!(budget.over_budget());
        drop(big);
    }

    #[tokio::test(start_paused = true)]
    async fn too_many_waiting_calls_stop_reading() {
        let budget = budget();
        let _full = budget.queue(OUTGOING_BYTES);
        let mut waiters: Vec<_> = (0..MAX_WAITING_CALLS)
            .map(|_| Box::pin(budget.reserve(1)))
            .collect();
        for waiter in &mut waiters {
            assert!(futures::poll!(waiter.as_mut()).is_pending());
        }
        assert!(budget.over_budget());
    }

    #[tokio::test(start_paused = true)]
    async fn a_queue_nobody_reads_fails_after_the_write_stall() {
        let budget = budget();
        let _stuck = budget.queue(OUTGOING_BYTES + 1);
        let error = budget.until_readable().await.unwrap_err();
        assert!(error.extra.starts_with("ResourceExhausted: "), "{error:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn before_login_a_large_frame_waits_for_authentication() {
        let released = Rc::new(Cell::new(false));
        let flag = released.clone();
        let budget =
            ConnectionBudget::pre_auth(NodeBudget::new(1 << 20), Box::new(move || flag.set(true)));
        assert!(budget.admit_frame(100).await.unwrap().is_none());
        let mut large = Box::pin(budget.admit_frame(PRE_AUTH_MESSAGE_BYTES + 8));
        assert!(futures::poll!(large.as_mut()).is_pending());
        budget.authenticate();
        assert!(released.get(), "the pre-auth slot was released");
        let permit = large
            .await
            .unwrap()
            .expect("a large frame takes from the node budget");
        assert_eq!(permit.bytes(), PRE_AUTH_MESSAGE_BYTES + 8);
    }

    #[tokio::test(start_paused = true)]
    async fn large_frames_share_the_node_budget() {
        let incoming = NodeBudget::new(1 << 20);
        let budget = ConnectionBudget::authenticated(incoming.clone());
        let first = budget.admit_frame(600 << 10).await.unwrap();
        assert_eq!(incoming.available(), (1 << 20) - (600 << 10));
        let mut second = Box::pin(budget.admit_frame(600 << 10));
        assert!(futures::poll!(second.as_mut()).is_pending(), "backpressure");
        drop(first);
        assert!(second.await.unwrap().is_some());
        let error = budget.admit_frame(MAX_MESSAGE_BYTES + 8).await.unwrap_err();
        assert!(error.extra.starts_with("ResourceExhausted: "), "{error:?}");
    }

    #[test]
    fn streams_past_the_cap_are_refused_until_one_ends() {
        let budget = budget();
        let mut slots: Vec<_> = (0..MAX_STREAMS)
            .map(|_| budget.open_stream().unwrap())
            .collect();
        assert_eq!(budget.streams(), MAX_STREAMS);
        let refused = budget.open_stream().err().expect("over the cap");
        assert!(
            refused.to_string().starts_with("ResourceExhausted: "),
            "{refused}"
        );
        slots.pop();
        let again = budget.open_stream().unwrap();
        assert_eq!(budget.streams(), MAX_STREAMS);
        drop((slots, again));
        assert_eq!(budget.streams(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reservation_grows_when_there_is_room() {
        let budget = budget();
        let mut room = budget.reserve(100).await;
        room.grow_to(1000).await;
        assert_eq!((room.bytes(), budget.committed()), (1000, 1000));
        room.grow_to(10).await;
        assert_eq!(room.bytes(), 1000, "growing never shrinks");
        drop(room);
        assert_eq!(budget.committed(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_growing_reservation_waits_for_others_and_then_goes_alone() {
        let budget = budget();
        let queued = budget.queue(OUTGOING_BYTES / 2);
        let mut room = budget.reserve(OUTGOING_BYTES / 4).await;
        let mut growing = Box::pin(room.grow_to(2 * OUTGOING_BYTES));
        assert!(futures::poll!(growing.as_mut()).is_pending());
        assert_eq!(budget.waiting.get(), 1);
        drop(queued);
        growing.await;
        assert_eq!(budget.waiting.get(), 0);
        assert_eq!(
            budget.committed(),
            2 * OUTGOING_BYTES,
            "bigger than the budget, alone"
        );
        room.shrink_to(40);
        room.hand_over();
        let page = budget.queue(40);
        assert_eq!(
            budget.committed(),
            40,
            "the queued page took the reservation over"
        );
        drop(page);
        assert_eq!(budget.committed(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_grow_given_up_stops_counting_as_waiting() {
        let budget = budget();
        let _queued = budget.queue(OUTGOING_BYTES);
        let mut room = budget.reserve(0).await;
        {
            let mut growing = Box::pin(room.grow_to(10));
            assert!(futures::poll!(growing.as_mut()).is_pending());
            assert_eq!(budget.waiting.get(), 1);
        }
        assert_eq!(budget.waiting.get(), 0);
        assert_eq!(room.bytes(), 0);
    }
}
