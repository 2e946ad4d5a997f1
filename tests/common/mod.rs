//! Helpers shared by the integration tests: a current-thread runtime with a `LocalSet` for
//! the `!Send` Cap'n Proto clients, polling until a condition holds, app-API calls over
//! Cap'n Proto (`app`, with the app's syncgroup calls), typed calls on the peer API
//! (`peer_client`, made by the bare peers of `peer`), embedded nodes linked on an in-memory network (`nodes`), rows written
//! below the app API and the randomised tests' generator (`rows`), syncgroup joins, stops and
//! data-directory copies (`members`), and the `syncbase serve` child process the CLI tests
//! drive (`process`).

// Each test crate compiles this module but uses only part of it.
#![allow(dead_code)]

pub mod app;
pub mod members;
pub mod nodes;
pub mod peer;
pub mod peer_client;
pub mod process;
pub mod rows;

use std::future::Future;
use std::time::{Duration, Instant};

/// The database the tests use.
pub const DB: &str = "db";

/// Runs `body` to completion on a current-thread runtime, inside a `LocalSet` so it may spawn
/// local tasks.
/// A loopback address (`127.0.0.1:PORT`) where nothing listens now: for a node's `--http` or
/// fixed `--listen`, or for an address that must refuse connections. (Another process may
/// take the port meanwhile; the tests accept that small risk.)
pub fn free_loopback_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

pub fn on_local<F: Future<Output = ()>>(body: F) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio::task::LocalSet::new().block_on(&runtime, body);
}

/// Waits until `done` holds, failing the test after `limit`.
pub async fn eventually(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
