//! Benchmarks run by `syncbase bench` (`storage`; `sync latency|bulk|noop`; `abuse`; `soak`;
//! `disk`): each measures ours and its comparator in the same run (`abuse`: a client under
//! attack beside the same client without; `soak` and `disk`: raw LMDB holding the same rows) and prints one JSON object per line. Shared here: the data set
//! generator, the repetition statistics, and opening a database and a table through an
//! embedded node's app session. Results go to stdout through `cli::output` (a closed stdout
//! ends the run quietly); `println!` is denied here.

#![deny(clippy::print_stdout)]

pub mod abuse;
pub mod disk;
pub mod soak;
pub mod storage;
pub mod sync;

use std::time::Instant;

use crate::embedded::EmbeddedServer;
use crate::rpc::client::remote_error;
use crate::schema::service_capnp::{database, table};

/// Database `name` through `server`'s logged-in app session.
pub async fn app_database(server: &EmbeddedServer, name: &str) -> anyhow::Result<database::Client> {
    let mut request = server.service().database_request();
    request.get().set_name(name);
    Ok(request
        .send()
        .promise
        .await
        .map_err(remote_error)?
        .get()?
        .get_db()?)
}

/// Table `name` of `db`.
pub async fn app_table(db: &database::Client, name: &str) -> anyhow::Result<table::Client> {
    let mut request = db.table_request();
    request.get().set_name(name);
    Ok(request
        .send()
        .promise
        .await
        .map_err(remote_error)?
        .get()?
        .get_table()?)
}

/// `count` records with 16-byte hex keys in a scattered order and `value_len`-byte random
/// values, the same for every run with the same arguments.
pub fn records(count: usize, value_len: usize) -> Vec<(String, Vec<u8>)> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..count as u64)
        .map(|i| {
            let key = format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&i.to_le_bytes()));
            let value = (0..value_len).map(|_| next_byte(&mut state)).collect();
            (key, value)
        })
        .collect()
}

fn next_byte(state: &mut u64) -> u8 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    (*state >> 56) as u8
}

/// Median, min and max of repeated rates.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Stats {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Stats {
    pub fn of(mut samples: Vec<f64>) -> Stats {
        samples.sort_by(f64::total_cmp);
        Stats {
            median: samples[samples.len() / 2],
            min: samples[0],
            max: samples[samples.len() - 1],
        }
    }
}

/// Operations per second of `ops` operations that started at `start`.
pub fn rate(ops: usize, start: Instant) -> f64 {
    ops as f64 / start.elapsed().as_secs_f64()
}
