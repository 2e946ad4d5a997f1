//! `syncbase bench storage`: put and get throughput through the app RPC against an embedded
//! node (memory and durable LMDB), at batches of 1 and 1,000, beside raw `lmdb-rkv` doing the
//! same puts and gets on the same data in the same run. One JSON line per (backend, op,
//! batch) with our rate, the raw LMDB rate and their ratio.
//!
//! A put batch of 1 is one `Table.put` call (one durable commit); a put batch of 1,000 is one
//! `Database.batch` call. A get batch of 1 is one `Table.get` awaited before the next; a get
//! batch of 1,000 is 1,000 pipelined `Table.get` calls awaited together.

use crate::cli::output::{OutputError, outln};
use std::time::Instant;

use anyhow::bail;
use futures::future::try_join_all;
use lmdb::{Transaction, WriteFlags};
use serde_json::json;

use super::{Stats, rate, records};
use crate::embedded::{EmbeddedServer, EmbeddedStorage};
use crate::rpc::client::remote_error;
use crate::schema::service_capnp::{database, table};

const VALUE_BYTES: usize = 100;
const BATCHES: [usize; 2] = [1, 1000];

/// The storage benchmark's settings.
pub struct StorageBench {
    pub records: usize,
    pub repeat: usize,
}

type Records = [(String, Vec<u8>)];

impl StorageBench {
    pub fn run(&self) -> anyhow::Result<()> {
        if self.repeat == 0 || self.records < 1000 {
            bail!("bench storage needs --repeat >= 1 and --records >= 1000");
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let local = tokio::task::LocalSet::new();
        local.block_on(&runtime, async {
            for batch in BATCHES {
                let data = records(self.records_for(batch), VALUE_BYTES);
                let raw = self.raw_lmdb(&data, batch)?;
                for storage in [EmbeddedStorage::Memory, EmbeddedStorage::Lmdb] {
                    let ours = self.through_rpc(storage, &data, batch).await?;
                    print_lines(storage, batch, data.len(), ours, raw)?;
                }
            }
            anyhow::Ok(())
        })
    }

    fn records_for(&self, batch: usize) -> usize {
        if batch == 1 {
            self.records / 10
        } else {
            self.records
        }
    }

    /// (put, get) rates through the RPC, each repeated on a fresh node.
    async fn through_rpc(
        &self,
        storage: EmbeddedStorage,
        data: &Records,
        batch: usize,
    ) -> anyhow::Result<(Stats, Stats)> {
        let (mut puts, mut gets) = (Vec::new(), Vec::new());
        for _ in 0..self.repeat {
            let server = EmbeddedServer::start(storage).await?;
            let db = super::app_database(&server, "bench").await?;
            let table = super::app_table(&db, "t").await?;
            let start = Instant::now();
            put_all(&db, &table, data, batch).await?;
            puts.push(rate(data.len(), start));
            let start = Instant::now();
            get_all(&table, data, batch).await?;
            gets.push(rate(data.len(), start));
        }
        Ok((Stats::of(puts), Stats::of(gets)))
    }

    /// (put, get) rates of raw lmdb-rkv: durable, one transaction per batch.
    fn raw_lmdb(&self, data: &Records, batch: usize) -> anyhow::Result<(Stats, Stats)> {
        let (mut puts, mut gets) = (Vec::new(), Vec::new());
        for _ in 0..self.repeat {
            let dir = tempfile::tempdir()?;
            let env = lmdb::Environment::new()
                .set_map_size(1 << 30)
                .open(dir.path())?;
            let db = env.open_db(None)?;
            let start = Instant::now();
            for chunk in data.chunks(batch) {
                let mut txn = env.begin_rw_txn()?;
                for (key, value) in chunk {
                    txn.put(db, key, value, WriteFlags::empty())?;
                }
                txn.commit()?;
            }
            puts.push(rate(data.len(), start));
            let start = Instant::now();
            for chunk in data.chunks(batch) {
                let txn = env.begin_ro_txn()?;
                for (key, value) in chunk {
                    let stored = txn.get(db, key)?;
                    anyhow::ensure!(
                        stored == value.as_slice(),
                        "raw lmdb read back a wrong value"
                    );
                }
            }
            gets.push(rate(data.len(), start));
        }
        Ok((Stats::of(puts), Stats::of(gets)))
    }
}

async fn put_all(
    db: &database::Client,
    table: &table::Client,
    data: &Records,
    batch: usize,
) -> anyhow::Result<()> {
    for chunk in data.chunks(batch) {
        if batch == 1 {
            let (key, value) = &chunk[0];
            let mut request = table.put_request();
            request.get().set_key(key);
            request.get().set_value(value);
            request.send().promise.await.map_err(remote_error)?;
            continue;
        }
        let mut request = db.batch_request();
        let mut ops = request.get().init_ops(chunk.len() as u32);
        for (i, (key, value)) in chunk.iter().enumerate() {
            let mut op = ops.reborrow().get(i as u32);
            op.set_table("t");
            op.set_key(key);
            op.set_put(value);
        }
        request.send().promise.await.map_err(remote_error)?;
    }
    Ok(())
}

async fn get_all(table: &table::Client, data: &Records, batch: usize) -> anyhow::Result<()> {
    for chunk in data.chunks(batch) {
        let calls = chunk.iter().map(|(key, _)| {
            let mut request = table.get_request();
            request.get().set_key(key);
            request.send().promise
        });
        let responses = try_join_all(calls).await.map_err(remote_error)?;
        for (response, (key, value)) in responses.iter().zip(chunk) {
            let stored = response.get()?.get_value()?;
            anyhow::ensure!(
                stored == value.as_slice(),
                "read back a wrong value for {key}"
            );
        }
    }
    Ok(())
}

fn print_lines(
    storage: EmbeddedStorage,
    batch: usize,
    records: usize,
    ours: (Stats, Stats),
    raw: (Stats, Stats),
) -> Result<(), OutputError> {
    let backend = match storage {
        EmbeddedStorage::Memory => "memory",
        EmbeddedStorage::Lmdb => "lmdb",
    };
    for (op, ours, raw) in [("put", ours.0, raw.0), ("get", ours.1, raw.1)] {
        let line = json!({
            "bench": "storage",
            "backend": backend,
            "durable": storage == EmbeddedStorage::Lmdb,
            "op": op,
            "batch": batch,
            "records": records,
            "value_bytes": VALUE_BYTES,
            "ops_per_sec": ours,
            "raw_lmdb_ops_per_sec": raw,
            "ratio_vs_raw_lmdb": ours.median / raw.median,
        });
        outln!("{line}")?;
    }
    Ok(())
}
