//! syncbase: a peer-to-peer replicated key-value store served over Cap'n Proto RPC.
//!
//! Crate map (one job per module, in the order of the layers; ARCHITECTURE.md says what each
//! may call):
//! - [`error`]: the node's error type, each message starting with its stable id;
//! - [`address`]: the one `HOST:PORT` parser (names resolve, IPv6 in brackets), one error;
//! - [`names`]: validated database/table names, row keys and prefixes, and the size limits;
//! - [`paging`]: every streamed message's bounds in items and bytes (one helper for all streams);
//! - [`clock`]: the hybrid logical clock (wall time + logical counter) and its time source;
//! - [`env`]: the time and random sources a node is opened with (the engine uses no others);
//! - [`identity`]: a node's TLS key and certificate, fingerprints, and the secret-file rule;
//! - [`genvec`]: the engine's vocabulary: device ids, generations, vectors, scopes, knowledge;
//! - [`syncgroup`]: what a syncgroup is and its rules (spec, access, names, invites, versions);
//! - [`store`]: a node's databases on `syncbase-storage`: app writes, peers' records, the log;
//! - [`sync`]: the sync protocol without Cap'n Proto: peers, sessions, the link loop;
//! - [`node`]: a node's shared state (store, token, identity, peers) and its async operations;
//! - [`config`]: the TOML config, its defaults and the paths derived from the data directory;
//! - [`token`]: the client token file and its constant-time check;
//! - [`retry`]: the capped exponential backoff of every retry loop;
//! - [`tally`]: repeated log lines, logged once then counted;
//! - [`changes`]: the change feeds (commits, peers) whose waiters wake in a fixed order;
//! - [`schema`]: code generated from `schema/*.capnp`;
//! - [`rpc`]: everything Cap'n Proto: app and peer adapters, connections, limits, TLS, client;
//! - [`http`]: the live status page, `/status.json` and Prometheus `/metrics` (`serve --http`);
//! - [`embedded`]: an in-process node on an ephemeral port, for tests;
//! - [`sim`]: the deterministic simulation: seeded runs of many nodes with faults, and their checks;
//! - [`cli`]: the `syncbase` command line (serve, client verbs, benchmarks, the simulation);
//! - [`bench`]: the benchmarks (storage, sync, abuse) behind `syncbase bench`;
//! - [`fuzzing`]: entry points for fuzz/ only (hidden from the docs).

pub mod address;
pub mod bench;
pub mod changes;
pub mod cli;
pub mod clock;
pub mod config;
pub mod embedded;
pub mod env;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod genvec;
pub mod http;
pub mod identity;
pub mod names;
pub mod node;
pub mod paging;
pub mod retry;
pub mod rpc;
pub mod schema;
pub mod sim;
pub mod store;
pub mod sync;
pub mod syncgroup;
pub mod tally;
pub mod token;
