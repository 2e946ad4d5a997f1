//! `syncbase bench disk` (B7, disk per synced record): node A takes N records (16-byte keys,
//! 100-byte values, commits of 1,000), an empty node B syncs them from A (both durable LMDB,
//! linked as `bench sync` links them), then B's store is measured: its `data.mdb` file size
//! per record, and, once B is stopped, the pages its LMDB environment uses (file pages less
//! its free list, read by opening the file read-only with `lmdb-rkv`), which is what history
//! collection lowers even though an LMDB file never shrinks. B is measured twice: after the
//! sync (its storage's usage, read live), and after a history-collection pass run through
//! the app API (`Service.collect`, what `syncbase gc` calls). The comparator, in the same
//! run: a raw `lmdb-rkv` environment holding the same keys and values (durable puts in
//! transactions of 1,000). One JSON line with bytes per record before and after
//! collection, the ratios to raw LMDB and to the payload, what collection freed, and B7's
//! targets (before: the file against the payload; after: the pages used against raw
//! LMDB's, since collection frees pages and the file keeps its size).

use std::path::{Path, PathBuf};
use std::time::Duration;

use lmdb::{EnvironmentFlags, Transaction, WriteFlags};
use serde_json::json;

use super::records;
use super::sync::{
    BATCH, DB, KEY_BYTES, VALUE_BYTES, add_peer, lmdb_file_bytes, on_local, peer_addr, preload,
    raw_env, start_node, target, wait_synced,
};
use crate::cli::output::outln;
use crate::embedded::EmbeddedServer;
use crate::rpc::client::collect;
use crate::store::Collected;

/// B7: disk <= 2.5 x the key and value bytes before collection.
const MAX_VS_PAYLOAD_BEFORE_COLLECTION: f64 = 2.5;
/// Issue 12: disk per synced record <= 1.5 x raw LMDB's after collection.
const MAX_VS_RAW_AFTER_COLLECTION: f64 = 1.5;

/// The disk benchmark's settings.
pub struct DiskBench {
    pub records: usize,
}

/// B's store, measured.
struct Synced {
    /// A's data file size after taking the records.
    writer_file: u64,
    /// B's data file and used pages after the sync, before collection.
    before: Size,
    /// B's data file size after collection.
    file: u64,
    /// Bytes of the pages B's environment uses after collection, if its file could be read
    /// after B stopped.
    used: Option<u64>,
    /// Where B's bytes go after collection, per key kind ([`key_kinds`]).
    kinds: Option<serde_json::Value>,
    /// What collection freed on B.
    freed: Collected,
}

impl DiskBench {
    pub fn run(&self) -> anyhow::Result<()> {
        let line = self.measure()?;
        outln!("{line}")?;
        Ok(())
    }

    /// Runs the benchmark and returns its JSON line.
    pub fn measure(&self) -> anyhow::Result<serde_json::Value> {
        anyhow::ensure!(self.records >= 1, "bench disk needs --records >= 1");
        let n = self.records;
        let data = records(n, VALUE_BYTES);
        let raw = raw_lmdb(&data)?;
        let synced = on_local(sync_to_fresh_node(&data))?;
        let per_record = |bytes: u64| bytes as f64 / n as f64;
        let payload = (KEY_BYTES + VALUE_BYTES) as f64;
        let ratio = synced.file as f64 / raw.file as f64;
        let vs_payload = per_record(synced.file) / payload;
        let before_vs_payload = per_record(synced.before.file) / payload;
        let used_ratio = synced.used.map(|used| used as f64 / raw.used as f64);
        let mut targets = serde_json::Map::new();
        let before = target(before_vs_payload, MAX_VS_PAYLOAD_BEFORE_COLLECTION, true);
        targets.insert("before_collection_vs_payload".into(), before);
        if let Some(used_ratio) = used_ratio {
            let after = target(used_ratio, MAX_VS_RAW_AFTER_COLLECTION, true);
            targets.insert("after_collection_used_vs_raw_lmdb_used".into(), after);
        }
        let freed = synced.freed;
        Ok(json!({
            "bench": "disk",
            "records": n,
            "durable": true,
            "key_bytes": KEY_BYTES,
            "value_bytes": VALUE_BYTES,
            "writer_store_bytes_per_record": per_record(synced.writer_file),
            "before_collection": {
                "synced_store_bytes_per_record": per_record(synced.before.file),
                "synced_used_bytes_per_record": per_record(synced.before.used),
                "ratio_vs_raw_lmdb": synced.before.file as f64 / raw.file as f64,
                "used_ratio_vs_raw_lmdb": synced.before.used as f64 / raw.used as f64,
                "store_vs_payload": before_vs_payload,
            },
            "synced_store_bytes_per_record": per_record(synced.file),
            "synced_used_bytes_per_record": synced.used.map(per_record),
            "raw_lmdb_bytes_per_record": per_record(raw.file),
            "raw_lmdb_used_bytes_per_record": per_record(raw.used),
            "ratio_vs_raw_lmdb": ratio,
            "used_ratio_vs_raw_lmdb": used_ratio,
            "store_vs_payload": vs_payload,
            "collected": true,
            "freed": {
                "records": freed.records,
                "versions": freed.versions,
                "tombstones": freed.tombstones,
                "changes": freed.changes,
                "bytes": freed.bytes,
            },
            "store_bytes_source": "size of data.mdb; used: its pages less LMDB's free list",
            "key_kinds_after_collection": synced.kinds,
            "targets": targets,
        }))
    }
}

/// A store's size: its data file and the pages it uses, in bytes.
struct Size {
    file: u64,
    used: u64,
}

/// Raw `lmdb-rkv` holding `data`: durable puts in transactions of [`BATCH`], as A takes them.
fn raw_lmdb(data: &[(String, Vec<u8>)]) -> anyhow::Result<Size> {
    let (dir, env, db) = raw_env()?;
    for chunk in data.chunks(BATCH) {
        let mut txn = env.begin_rw_txn()?;
        for (key, value) in chunk {
            txn.put(db, key, value, WriteFlags::empty())?;
        }
        txn.commit()?;
    }
    let used = used_pages_bytes(&env)?;
    drop(env);
    let file = lmdb_file_bytes(dir.path());
    Ok(Size { file, used })
}

/// Preloads `data` on a fresh A, syncs it to a fresh B, measures B, collects B's history
/// through its app session, and measures both stores.
async fn sync_to_fresh_node(data: &[(String, Vec<u8>)]) -> anyhow::Result<Synced> {
    let a = start_node().await?;
    preload(&a, data).await?;
    let b = start_node().await?;
    // Each declares the other: a node serves only its declared peers (or members).
    add_peer(&b, &a, peer_addr(&a)?).await?;
    add_peer(&a, &b, peer_addr(&b)?).await?;
    let limit = Duration::from_secs(60 + data.len() as u64 / 2000);
    wait_synced(&a, &b, data.len() as u64, limit).await?;
    let usage = b.node().store().usage()?;
    let before = Size {
        file: usage.file_bytes,
        used: usage.used_bytes,
    };
    let freed = collect_history(&b).await?;
    let writer_file = lmdb_file_bytes(&a.data_dir().join("lmdb"));
    drop(a);
    let (kept, dir) = keep_data_dir(b)?;
    let file = lmdb_file_bytes(&dir);
    let used = used_bytes(&dir);
    let kinds = key_kinds(&dir, data.len());
    drop(kept);
    Ok(Synced {
        writer_file,
        before,
        file,
        used,
        kinds,
        freed,
    })
}

/// Runs a history-collection pass over the bench database on `node` through its app
/// session (`Service.collect`, as `syncbase gc` does); what it freed.
async fn collect_history(node: &EmbeddedServer) -> anyhow::Result<Collected> {
    Ok(collect(node.service(), DB).await?.freed)
}

/// Stops `node` and hands back a directory holding its final data file (the node's own
/// directory is removed with it): a hard link to the file, or a copy where links fail.
fn keep_data_dir(node: EmbeddedServer) -> anyhow::Result<(tempfile::TempDir, PathBuf)> {
    let file = node.data_dir().join("lmdb").join("data.mdb");
    let kept = tempfile::tempdir()?;
    let dir = kept.path().to_path_buf();
    if std::fs::hard_link(&file, dir.join("data.mdb")).is_err() {
        std::fs::copy(&file, dir.join("data.mdb"))?;
    }
    drop(node);
    Ok((kept, dir))
}

/// Bytes of the pages the LMDB environment in `dir` uses, opened read-only. None if it
/// cannot be opened.
fn used_bytes(dir: &Path) -> Option<u64> {
    let env = lmdb::Environment::new()
        .set_flags(EnvironmentFlags::READ_ONLY | EnvironmentFlags::NO_LOCK)
        .open(dir)
        .ok()?;
    used_pages_bytes(&env).ok()
}

/// Where the bytes of the LMDB environment in `dir` go, per key kind (`D r`, `D n`, `D o`,
/// ... of the store's key layout, the letter after a database's prefix; other keys by their
/// first letter): entries, key and value bytes, and leaf bytes (key + value + LMDB's 8-byte
/// node header and 2-byte slot, rounded to even), per record of `records`. The rest of the
/// used pages is page slack, branch pages and the free list's own pages. None if the file
/// cannot be read.
fn key_kinds(dir: &Path, records: usize) -> Option<serde_json::Value> {
    let env = lmdb::Environment::new()
        .set_flags(EnvironmentFlags::READ_ONLY | EnvironmentFlags::NO_LOCK)
        .set_max_dbs(4)
        .open(dir)
        .ok()?;
    let db = env.open_db(Some("kv")).ok()?;
    let txn = env.begin_ro_txn().ok()?;
    let mut cursor = txn.open_ro_cursor(db).ok()?;
    let mut kinds: std::collections::BTreeMap<String, [u64; 4]> = Default::default();
    for item in lmdb::Cursor::iter_start(&mut cursor) {
        let (key, value) = item.ok()?;
        let kind = match key.split(|b| *b == 0xfe).collect::<Vec<_>>()[..] {
            [b"d", _, kind, ..] if !kind.is_empty() => format!("D {}", char::from(kind[0])),
            _ => char::from(key.first().copied().unwrap_or(b'?')).to_string(),
        };
        let entry = kinds.entry(kind).or_default();
        let leaf = (key.len() + value.len() + 10).next_multiple_of(2);
        entry[0] += 1;
        entry[1] += key.len() as u64;
        entry[2] += value.len() as u64;
        entry[3] += leaf as u64;
    }
    let per_record = |bytes: u64| bytes as f64 / records as f64;
    let kinds: serde_json::Map<String, serde_json::Value> = kinds
        .into_iter()
        .map(|(kind, [keys, key, value, leaf])| {
            let figures = json!({
                "entries": keys,
                "key_bytes_per_record": per_record(key),
                "value_bytes_per_record": per_record(value),
                "leaf_bytes_per_record": per_record(leaf),
            });
            (kind, figures)
        })
        .collect();
    Some(kinds.into())
}

/// (last page + 1 - pages on the free list) x page size.
fn used_pages_bytes(env: &lmdb::Environment) -> lmdb::Result<u64> {
    let pages = env.info()?.last_pgno() as u64 + 1 - env.freelist()? as u64;
    Ok(pages * u64::from(env.stat()?.page_size()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_disk_run_reports_every_figure() {
        let line = DiskBench { records: 2000 }.measure().unwrap();
        assert_eq!(line["bench"], "disk");
        let raw = line["raw_lmdb_bytes_per_record"].as_f64().unwrap();
        let ours = line["synced_store_bytes_per_record"].as_f64().unwrap();
        let used = line["synced_used_bytes_per_record"].as_f64().unwrap();
        assert!(raw > 116.0 && ours > raw, "raw {raw}, ours {ours}");
        assert!(used > 0.0 && used <= ours, "used {used}, file {ours}");
        assert!(line["writer_store_bytes_per_record"].as_f64().unwrap() > raw);
        let raw_used = line["raw_lmdb_used_bytes_per_record"].as_f64().unwrap();
        assert!(
            raw_used > 116.0 && raw_used <= raw,
            "raw used {raw_used}, file {raw}"
        );
        assert_eq!(line["collected"], true);
        assert!(line["freed"]["records"].is_u64(), "{line}");
        let before = line["before_collection"]["synced_used_bytes_per_record"]
            .as_f64()
            .unwrap();
        assert!(
            used <= before,
            "collection never adds pages: {before} -> {used}"
        );
        let kinds = &line["key_kinds_after_collection"];
        assert_eq!(kinds["D r"]["entries"], 2000, "{kinds}");
        for gone in ["D n", "D o", "D l"] {
            assert!(
                kinds[gone].is_null(),
                "a collected head keeps no {gone}: {kinds}"
            );
        }
        assert!(line["targets"]["before_collection_vs_payload"]["pass"].is_boolean());
        assert!(line["targets"]["after_collection_used_vs_raw_lmdb_used"]["pass"].is_boolean());
    }

    #[test]
    fn used_bytes_leave_out_the_free_list() {
        let dir = tempfile::tempdir().unwrap();
        {
            let env = lmdb::Environment::new().open(dir.path()).unwrap();
            let db = env.open_db(None).unwrap();
            let mut write = env.begin_rw_txn().unwrap();
            for (key, value) in &records(3000, 100) {
                write.put(db, key, value, WriteFlags::empty()).unwrap();
            }
            write.commit().unwrap();
            let full = used_pages_bytes(&env).unwrap();
            assert!(full >= 3000 * 116, "{full}");
            let mut write = env.begin_rw_txn().unwrap();
            write.clear_db(db).unwrap();
            write.commit().unwrap();
        }
        let used = used_bytes(dir.path()).unwrap();
        assert!(used < lmdb_file_bytes(dir.path()) / 4, "{used}");
    }
}
