//! Sends pages to a caller-provided sink (a `-> stream` method) within the connection's limits,
//! and waits for every call's acknowledgement at the end, so a method returns only once its
//! sink has taken every page, and a sink's error reaches the sender.
//!
//! Every page goes through the same two steps, so no push can bypass the budget:
//! 1. [`WindowedPush::room`] waits for a free place in the stream's window of unacknowledged
//!    calls, then reserves the page's upper bound in the connection's
//!    [`ConnectionBudget`] (waiting while the connection has too much queued). Call it before
//!    reading the page, so pages nobody reads are never built.
//! 2. [`WindowedPush::send`] sizes the built call, shrinks the reservation to it (or grows it,
//!    for a page larger than its bound), sends it, and gives the room back: the sent call
//!    is in the write queue, which counts its real bytes until they are written.
//!
//! A *ramped* pusher ([`WindowedPush::ramped`], the data pages of `getDeltas`) starts with a
//! window of one call and widens it by one per acknowledgement up to its window, so a sink
//! that fails its first page (a receiver whose disk is full) costs the sender one page, not a
//! window of them; a sink that takes pages reaches the full window within a few round trips.
//!
//! Each pusher is also one of the connection's [`MAX_STREAMS`](crate::rpc::limits::MAX_STREAMS)
//! streams for as long as it lives.
//!
//! Callers build each page with the generated client's typed request for the sink's
//! `-> stream` method (`sink.push_request()`), so the method is named by the schema, never by
//! its ordinal. [`WindowedPush::send`] sends it as an ordinary call rather than with capnp-rpc's
//! `send_streaming`: a streaming send resolves once capnp-rpc's own flow window (64 KiB, not
//! settable on our network) has room and reports a failed call only on a later send, so it
//! could neither ramp the window per acknowledgement nor stop at the page that failed, and its
//! window would not count against the connection's budget.

use std::rc::Rc;

use capnp::capability::{Promise, Request, StreamingRequest};
use capnp::traits::Owned;
use futures::stream::FuturesOrdered;
use futures::{StreamExt, TryFutureExt};

use crate::error::Error;
use crate::rpc::limits::{ConnectionBudget, Reservation, StreamSlot};

/// Bytes of a pushed call besides its parameters (the Call message's header and framing).
pub const CALL_OVERHEAD: usize = crate::paging::MESSAGE_OVERHEAD;

/// Calls sent but not yet acknowledged, bounded by `window`, on one connection's budget.
pub struct WindowedPush {
    in_flight: FuturesOrdered<Promise<(), capnp::Error>>,
    window: usize,
    /// The window allowed now: `window`, or while ramping up, one more per acknowledgement.
    open: usize,
    budget: Rc<ConnectionBudget>,
    _stream: StreamSlot,
}

/// Room reserved for the next page of a [`WindowedPush`] (see [`WindowedPush::room`]).
pub struct PageRoom(Reservation);

impl WindowedPush {
    /// A stream on the connection whose outgoing room is `budget`, allowing `window`
    /// unacknowledged calls (at least one). Fails with `ResourceExhausted:` if the connection
    /// already runs its most streams.
    pub fn new(budget: Rc<ConnectionBudget>, window: usize) -> Result<Self, Error> {
        Ok(WindowedPush {
            in_flight: FuturesOrdered::new(),
            window: window.max(1),
            open: window.max(1),
            _stream: budget.open_stream()?,
            budget,
        })
    }

    /// As [`WindowedPush::new`], but the window opens one call at a time: one call at first,
    /// one more per acknowledged call, up to `window`.
    pub fn ramped(budget: Rc<ConnectionBudget>, window: usize) -> Result<Self, Error> {
        let mut push = WindowedPush::new(budget, window)?;
        push.open = 1;
        Ok(push)
    }

    /// Waits for a place in the window (failing with the first error an earlier call
    /// returned), then reserves `bytes` for the next page: call before reading the page, with
    /// its upper bound (page cap plus one largest item). Dropping the room gives it back.
    pub async fn room(&mut self, bytes: usize) -> capnp::Result<PageRoom> {
        self.until_window().await?;
        Ok(PageRoom(self.budget.reserve(bytes).await))
    }

    /// Sends `request` (a sink's generated `push_request()`, filled), the page built in
    /// `room`: its reservation becomes the call's encoded size (grown first if the page is
    /// larger than reserved) until the call is sent and counted by the write queue. The call is acknowledged like an
    /// ordinary call (see the module doc), and its error, if any, fails a later `room`, `send`
    /// or `finish`.
    pub async fn send<Params: Owned>(
        &mut self,
        room: PageRoom,
        request: StreamingRequest<Params>,
    ) -> capnp::Result<()> {
        let PageRoom(mut room) = room;
        let mut request = acknowledged(request);
        let bytes = encoded_size(&mut request)?;
        room.grow_to(bytes).await;
        room.shrink_to(bytes);
        // Only reached by misuse (two rooms at once): never wait here holding room otherwise.
        self.until_window().await?;
        // Sending queues the call, which counts its own bytes from then on: the room goes
        // back right after, exactly (a hand-over would leave the estimate's surplus counted).
        let sent = request.send().promise.map_ok(drop);
        drop(room);
        self.in_flight.push_back(Promise::from_future(sent));
        Ok(())
    }

    /// Waits for every call in flight to be acknowledged.
    pub async fn finish(mut self) -> capnp::Result<()> {
        while !self.in_flight.is_empty() {
            self.acknowledge_one().await?;
        }
        Ok(())
    }

    async fn until_window(&mut self) -> capnp::Result<()> {
        while self.in_flight.len() >= self.open {
            self.acknowledge_one().await?;
        }
        Ok(())
    }

    async fn acknowledge_one(&mut self) -> capnp::Result<()> {
        match self.in_flight.next().await {
            Some(result) => {
                result?;
                self.open = (self.open + 1).min(self.window);
                Ok(())
            }
            None => Ok(()),
        }
    }
}

/// `request` as an ordinary call, whose answer (empty for a `-> stream` method) acknowledges it.
fn acknowledged<Params: Owned>(
    request: StreamingRequest<Params>,
) -> Request<Params, capnp::any_pointer::Owned> {
    Request::new(request.hook)
}

/// The bytes `request` will take in the write queue: its parameters plus [`CALL_OVERHEAD`].
fn encoded_size<Params, Results>(request: &mut Request<Params, Results>) -> capnp::Result<usize> {
    let size = request.hook.get().into_reader().target_size()?;
    Ok(usize::try_from(size.word_count).unwrap_or(usize::MAX) * 8 + CALL_OVERHEAD)
}
