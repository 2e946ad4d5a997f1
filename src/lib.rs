//! syncbase: a peer-to-peer replicated key-value store served over Cap'n Proto RPC.
//!
//! Crate map (one job per module; see ARCHITECTURE.md for what each may call):
//! - [`config`]: the TOML config, its defaults and the paths derived from the data directory;
//! - [`genvec`]: device ids, generations, generation vectors, scopes and knowledge (reference §1.2, §2.7): the vocabulary below `syncgroup`, `store` and `sync`;
//! - [`names`]: validated database/table names, row keys and the size limits;
//! - [`paging`]: every streamed message's bounds in items and bytes (one helper for all streams);
//! - [`store`]: the keyspace layout on top of the `syncbase-storage` trait, and row commits;
//! - [`node`]: a node's shared state (store, client token) and the async row operations;
//! - [`token`]: the client token file and its constant-time check;
//! - [`rpc`]: the Cap'n Proto adapters, accept loop and client session;
//! - [`embedded`]: an in-process node on an ephemeral port, for tests;
//! - [`cli`]: the `syncbase` command line (serve, client verbs, benchmarks);
//! - [`schema`]: code generated from `schema/*.capnp`;
//! - [`retry`]: the capped exponential backoff of every retry loop;
//! - [`tally`]: repeated log lines, logged once then counted;
//! - [`error`]: the node's error type with stable ids;
//! - `fuzzing` (hidden): entry points for fuzz/ only.

pub mod bench;
pub mod cli;
pub mod clock;
pub mod config;
pub mod embedded;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod genvec;
pub mod identity;
pub mod names;
pub mod node;
pub mod paging;
pub mod retry;
pub mod rpc;
pub mod schema;
pub mod store;
pub mod sync;
pub mod syncgroup;
pub mod tally;
pub mod token;
