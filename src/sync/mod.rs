//! The sync engine, without Cap'n Proto (the `rpc` module adapts it to the wire, the
//! simulation runs it over its own network):
//! - `catchup`: catch-up by state after a `BehindHorizon:` refusal (negentropy), both sides;
//! - `host`: what the engine asks of the node it runs in (store, access policy, peers, commits);
//! - `link`: the link loop (dial, backoff, one live session per database) and its peer traits;
//! - `membership`: joining a syncgroup at an admin and publishing one at its host;
//! - `peers`: who this node syncs with, what it shares with each, and their status;
//! - `responder`: serving GetDeltas to a peer, including live push (the protocol is its doc);
//! - `initiator`: one database's session with a peer: the request, checks, and applying;
//! - `refused`: what a session refused, kept out of the knowledge it merges and re-examined;
//! - `reports`: the pace of a live responder's knowledge reports to its initiator;
//! - `screen`: a data page's writer check, run inside the commit that applies the page;
//! - `syncgroups`: syncgroup metadata sync, both sides.
//!
//! The write paths that keep sync metadata in the same commit as the data are in `store`.

pub mod catchup;
pub mod host;
pub mod initiator;
pub mod link;
pub mod membership;
pub mod peers;
pub mod refused;
pub mod reports;
pub mod responder;
pub mod screen;
pub mod syncgroups;
