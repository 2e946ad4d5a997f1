//! The Cap'n Proto face of a node: thin adapters that decode arguments, call [`crate::node`],
//! and fill results. No storage or sync logic lives here.
//!
//! - `server`: the accept loop; each connection's RPC system runs on a pinned LocalSet worker;
//! - `gate`: the bootstrap `Gate` and its token check;
//! - `service`: `Service`, `Database` and `Table`;
//! - `push`: sending batches to a caller's sink capability with a bounded window;
//! - `client`: dialling a node and logging in (CLI, tests, benchmarks).

pub mod admin;
pub mod client;
pub mod gate;
pub mod peer;
pub mod peer_link;
pub mod push;
pub mod server;
pub mod service;
pub mod tls;
pub mod transport;
pub mod watch;
pub mod wire;

/// Largest incoming message, in 8-byte words (64 MiB). Bigger messages drop the connection,
/// so every API keeps its messages well under it (values are at most 4 MiB, scans page).
pub const MAX_MESSAGE_WORDS: usize = 8 << 20;
/// Deepest struct nesting accepted in an incoming message.
pub const MAX_NESTING: i32 = 64;

/// The reader limits every connection, server or client, applies to incoming messages.
pub fn reader_options() -> capnp::message::ReaderOptions {
    let mut options = capnp::message::ReaderOptions::new();
    options
        .traversal_limit_in_words(Some(MAX_MESSAGE_WORDS))
        .nesting_limit(MAX_NESTING);
    options
}
