//! Our two-party [`capnp_rpc::VatNetwork`], used by every connection (app and peer ports, both
//! directions), in place of capnp-rpc's `twoparty` (whose model it follows): the same wire
//! format, with the limits of [`super::limits`]. Incoming frames are read incrementally
//! ([`super::frame`]) and admitted by the connection's [`ConnectionBudget`]; each outgoing
//! message is counted as queued until the write queue has written it, and while the
//! connection is over its outgoing budget no further frame is read.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use capnp::capability::Promise;
use capnp::message::{Builder, HeapAllocator, ReaderOptions};
use capnp_futures::serialize::AsOutputSegments;
use capnp_rpc::RpcSystem;
use capnp_rpc::rpc_twoparty_capnp::Side;
use futures::channel::oneshot;
use futures::{FutureExt, TryFutureExt};
use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite, BufReader, ReadHalf};
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

use crate::rpc::frame::{Frame, read_frame};
use crate::rpc::limits::{ConnectionBudget, QueuedBytes};
use crate::rpc::reader_options;

type Message = Builder<HeapAllocator>;
type Sender = capnp_futures::Sender<Queued>;
type Reader = Box<dyn AsyncBufRead + Unpin>;

/// Runs Cap'n Proto RPC over `stream` with `budget`'s limits, serving `bootstrap` to the other
/// side. The returned system must be polled (on a `LocalSet`) for the connection to work.
pub fn rpc_system<S>(
    stream: S,
    side: Side,
    bootstrap: Option<capnp::capability::Client>,
    budget: Rc<ConnectionBudget>,
) -> RpcSystem<Side>
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let (reader, writer) = tokio::io::split(stream);
    let reader: BufReader<ReadHalf<S>> = BufReader::new(reader);
    let writer: futures::io::BufWriter<Compat<_>> =
        futures::io::BufWriter::new(writer.compat_write());
    let network = Network::new(Box::new(reader), writer, side, budget);
    RpcSystem::new(Box::new(network), bootstrap)
}

/// A message in the write queue with its charge against the connection's budget; the charge
/// ends when the queue drops the message after writing it.
struct Queued {
    message: Rc<Message>,
    _charge: QueuedBytes,
}

impl AsOutputSegments for Queued {
    fn as_output_segments(&self) -> capnp::OutputSegments<'_> {
        self.message.get_segments_for_output()
    }
}

struct IncomingMessage {
    message: capnp::message::Reader<capnp::serialize::BufferSegments<Frame>>,
}

impl capnp_rpc::IncomingMessage for IncomingMessage {
    fn get_body(&self) -> capnp::Result<capnp::any_pointer::Reader<'_>> {
        self.message.get_root()
    }
}

struct OutgoingMessage {
    message: Message,
    sender: Sender,
    budget: Rc<ConnectionBudget>,
}

impl capnp_rpc::OutgoingMessage for OutgoingMessage {
    fn get_body(&mut self) -> capnp::Result<capnp::any_pointer::Builder<'_>> {
        self.message.get_root()
    }

    fn get_body_as_reader(&self) -> capnp::Result<capnp::any_pointer::Reader<'_>> {
        self.message.get_root_as_reader()
    }

    fn send(self: Box<Self>) -> (Promise<(), capnp::Error>, Rc<Message>) {
        let OutgoingMessage {
            message,
            mut sender,
            budget,
        } = *self;
        let message = Rc::new(message);
        let charge = budget.queue(message.size_in_words() * 8);
        let queued = Queued {
            message: message.clone(),
            _charge: charge,
        };
        (
            Promise::from_future(sender.send(queued).map_ok(drop)),
            message,
        )
    }

    fn take(self: Box<Self>) -> Message {
        self.message
    }

    fn size_in_words(&self) -> usize {
        self.message.size_in_words()
    }
}

struct ConnectionInner {
    /// Taken out while a read is in progress (so no borrow is held across an await).
    reader: Rc<RefCell<Option<Reader>>>,
    sender: Sender,
    side: Side,
    options: ReaderOptions,
    budget: Rc<ConnectionBudget>,
    on_disconnect: Option<oneshot::Sender<()>>,
}

impl Drop for ConnectionInner {
    fn drop(&mut self) {
        if let Some(fulfiller) = self.on_disconnect.take() {
            let _ = fulfiller.send(());
        }
    }
}

struct Connection {
    inner: Rc<RefCell<ConnectionInner>>,
}

impl capnp_rpc::Connection<Side> for Connection {
    fn get_peer_vat_id(&self) -> Side {
        self.inner.borrow().side
    }

    fn new_outgoing_message(
        &mut self,
        first_segment_words: u32,
    ) -> Box<dyn capnp_rpc::OutgoingMessage> {
        let inner = self.inner.borrow();
        Box::new(OutgoingMessage {
            message: Builder::new(HeapAllocator::new().first_segment_words(first_segment_words)),
            sender: inner.sender.clone(),
            budget: inner.budget.clone(),
        })
    }

    fn receive_incoming_message(
        &mut self,
    ) -> Promise<Option<Box<dyn capnp_rpc::IncomingMessage>>, capnp::Error> {
        let inner = self.inner.borrow();
        let (slot, budget, options) = (inner.reader.clone(), inner.budget.clone(), inner.options);
        let Some(mut reader) = slot.borrow_mut().take() else {
            return Promise::err(capnp::Error::failed(
                "a second read started before the first ended".into(),
            ));
        };
        Promise::from_future(async move {
            budget.until_readable().await?;
            let frame = read_frame(&mut reader, &budget).await?;
            *slot.borrow_mut() = Some(reader);
            let Some(frame) = frame else { return Ok(None) };
            let message = frame.into_message(options)?;
            Ok(Some(
                Box::new(IncomingMessage { message }) as Box<dyn capnp_rpc::IncomingMessage>
            ))
        })
    }

    fn shutdown(&mut self, result: capnp::Result<()>) -> Promise<(), capnp::Error> {
        let mut sender = self.inner.borrow().sender.clone();
        Promise::from_future(sender.terminate(result))
    }
}

/// A vat network of two parties, one connection (like `capnp_rpc::twoparty::VatNetwork`).
struct Network {
    connection: Option<Connection>,
    weak_inner: Weak<RefCell<ConnectionInner>>,
    driver: futures::future::Shared<Promise<(), capnp::Error>>,
    side: Side,
}

impl Network {
    fn new<W>(reader: Reader, writer: W, side: Side, budget: Rc<ConnectionBudget>) -> Network
    where
        W: futures::AsyncWrite + Unpin + 'static,
    {
        let (on_disconnect, disconnected) = oneshot::channel();
        let (sender, queue) = capnp_futures::write_queue(writer);
        // Wait for the disconnect even if the queue fails, as twoparty does.
        let driver = Promise::from_future(
            queue.then(move |written| disconnected.then(move |_| futures::future::ready(written))),
        )
        .shared();
        let inner = Rc::new(RefCell::new(ConnectionInner {
            reader: Rc::new(RefCell::new(Some(reader))),
            sender,
            side,
            options: reader_options(),
            budget,
            on_disconnect: Some(on_disconnect),
        }));
        Network {
            weak_inner: Rc::downgrade(&inner),
            connection: Some(Connection { inner }),
            driver,
            side,
        }
    }
}

impl capnp_rpc::VatNetwork<Side> for Network {
    fn connect(&mut self, host_id: Side) -> Option<Box<dyn capnp_rpc::Connection<Side>>> {
        if host_id == self.side {
            return None;
        }
        // As in twoparty: only the bootstrap right after creation connects.
        let inner = self
            .weak_inner
            .upgrade()
            .expect("connect() called on a disconnected network");
        Some(Box::new(Connection { inner }))
    }

    fn accept(&mut self) -> Promise<Box<dyn capnp_rpc::Connection<Side>>, capnp::Error> {
        match self.connection.take() {
            Some(connection) => Promise::ok(Box::new(connection) as Box<_>),
            None => Promise::from_future(futures::future::pending()),
        }
    }

    fn drive_until_shutdown(&mut self) -> Promise<(), capnp::Error> {
        Promise::from_future(self.driver.clone())
    }
}
