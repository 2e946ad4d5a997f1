//! Sends batches to a caller-provided sink (a `-> stream` method) with at most a fixed number
//! of calls in flight, and waits for every call's acknowledgement at the end, so a method
//! returns only once its sink has taken every batch, and a sink's error reaches the sender.

use capnp::capability::{FromTypelessPipeline, Promise, Request};
use capnp::traits::{Owned, Pipelined};
use futures::stream::FuturesOrdered;
use futures::{StreamExt, TryFutureExt};

/// Calls sent but not yet acknowledged, bounded by `window`.
pub struct WindowedPush {
    in_flight: FuturesOrdered<Promise<(), capnp::Error>>,
    window: usize,
}

impl WindowedPush {
    /// A pusher allowing `window` unacknowledged calls (at least one).
    pub fn new(window: usize) -> Self {
        WindowedPush {
            in_flight: FuturesOrdered::new(),
            window: window.max(1),
        }
    }

    /// Sends `request`, first waiting for room in the window. Fails with the first error any
    /// earlier call returned.
    pub async fn send<Params, Results>(
        &mut self,
        request: Request<Params, Results>,
    ) -> capnp::Result<()>
    where
        Params: Owned,
        Results: Pipelined + Owned + Unpin + 'static,
        <Results as Pipelined>::Pipeline: FromTypelessPipeline,
    {
        while self.in_flight.len() >= self.window {
            self.acknowledge_one().await?;
        }
        self.in_flight
            .push_back(Promise::from_future(request.send().promise.map_ok(drop)));
        Ok(())
    }

    /// Waits for every call in flight to be acknowledged.
    pub async fn finish(mut self) -> capnp::Result<()> {
        while !self.in_flight.is_empty() {
            self.acknowledge_one().await?;
        }
        Ok(())
    }

    async fn acknowledge_one(&mut self) -> capnp::Result<()> {
        match self.in_flight.next().await {
            Some(result) => result,
            None => Ok(()),
        }
    }
}
