//! A database's tables and their live data, read from the row heads: the one rule for what
//! counts as live (a row head that is not a tombstone; its bytes are its table's name, its
//! key and its value), used both per table ([`Store::tables`], `syncbase ls`) and per
//! database ([`Store::live_data`], `syncbase status`), so the two never disagree.
//!
//! Tables are implicit (a put creates one), so a table is listed while it has a live row: a
//! table whose rows were all deleted holds only tombstones and is not listed, as `scan` shows
//! it empty. Row heads sit at `D r 0xfe <table> 0xfe <row>`, so each table's heads are one run
//! of keys (no table name holds `0xfe`); one snapshot scan visits them run after run, without
//! copying a value (each head is decoded borrowing its bytes). Cost, for N row heads
//! (tombstones included) in T tables: O(N) time, O(T) memory.

use serde::Deserialize;
use syncbase_storage::Scan;

use crate::error::{Error, Result};
use crate::names::DbName;
use crate::store::keys::{DbKeys, SEP};
use crate::store::records::Version;
use crate::store::{LiveData, Store, text, visitor_error};

/// One table of a database and its live data ([`Store::tables`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableData {
    /// The table's name.
    pub name: String,
    /// Its rows that are not deleted, and their tables', keys' and values' bytes.
    pub live: LiveData,
}

/// A stored `RowHead` read in place: the same fields in the same order (postcard encodes a
/// struct as its fields in order), the value borrowed, so counting copies no value.
#[derive(Deserialize)]
struct HeadView<'a> {
    #[allow(dead_code)] // Read past to reach the flag; its order is the encoding's.
    version: Version,
    deleted: bool,
    value: &'a [u8],
}

impl Store {
    /// The tables of `db` that hold at least one live row, in name order, each with its
    /// live rows and bytes (per row: the table name's, key's and value's bytes, as
    /// [`Store::live_data`] counts them). One snapshot scan over the database's row heads,
    /// tombstones included: O(N) time in the row heads, O(T) memory in the tables, no value
    /// copied. Errors: `Internal:` for a row head that does not decode.
    pub fn tables(&self, db: &DbName) -> Result<Vec<TableData>> {
        let mut tables: Vec<TableData> = Vec::new();
        self.visit_live_rows(db, &mut |table, bytes| {
            match tables.last_mut() {
                Some(last) if last.name.as_bytes() == table => {
                    last.live.rows += 1;
                    last.live.bytes += bytes;
                }
                _ => tables.push(TableData {
                    name: text(table, "table name")?,
                    live: LiveData { rows: 1, bytes },
                }),
            }
            Ok(())
        })?;
        // Heads sort by `<table> 0xfe`, so "ab" sorts before "a" (b < 0xfe): sort by name.
        tables.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(tables)
    }

    /// The live data of `db`: its rows that are not deleted, and the sum of their tables',
    /// keys' and values' bytes; the sum of [`Store::tables`]' figures. One snapshot scan
    /// over every row head of the database (tombstones included): its cost grows with the
    /// number of rows, not with history.
    pub fn live_data(&self, db: &DbName) -> Result<LiveData> {
        let mut live = LiveData::default();
        self.visit_live_rows(db, &mut |_, bytes| {
            live.rows += 1;
            live.bytes += bytes;
            Ok(())
        })?;
        Ok(live)
    }

    /// Calls `visit(table, bytes)` for every live row head of `db` in key order (a table's
    /// heads one after another), `bytes` being the row's table name, key and value lengths.
    fn visit_live_rows(
        &self,
        db: &DbName,
        visit: &mut dyn FnMut(&[u8], u64) -> syncbase_storage::Result<()>,
    ) -> Result<()> {
        let prefix = DbKeys::new(db.as_str()).table_prefix("");
        // `D r 0xfe`: every table's row heads.
        let rows_prefix = &prefix[..prefix.len() - 1];
        self.storage
            .read()?
            .scan_prefix(rows_prefix, &mut |key, value| {
                let head: HeadView<'_> = postcard::from_bytes(value).map_err(|e| {
                    visitor_error(Error::Internal(format!("corrupt row head: {e}")))
                })?;
                if head.deleted {
                    return Ok(Scan::Continue);
                }
                let name_and_row = &key[rows_prefix.len()..];
                let table_len = name_and_row
                    .iter()
                    .position(|&byte| byte == SEP)
                    .ok_or_else(|| visitor_error(Error::Internal("corrupt row key".into())))?;
                // The table and key, less the separator between them.
                let bytes = (name_and_row.len() - 1 + head.value.len()) as u64;
                visit(&name_and_row[..table_len], bytes)?;
                Ok(Scan::Continue)
            })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use syncbase_storage::MemoryStorage;

    use super::*;
    use crate::names::{RowKey, TableName};
    use crate::store::Mutation;
    use crate::store::records::{RowHead, encode};

    fn store() -> Store {
        Store::open(Arc::new(MemoryStorage::new()), crate::env::Env::system()).unwrap()
    }

    fn db() -> DbName {
        DbName::parse("db").unwrap()
    }

    fn put(table: &str, key: &str, value: &[u8]) -> Mutation {
        Mutation::Put {
            table: TableName::parse(table).unwrap(),
            key: RowKey::parse(key).unwrap(),
            value: value.to_vec(),
        }
    }

    fn delete(table: &str, key: &str) -> Mutation {
        Mutation::Delete {
            table: TableName::parse(table).unwrap(),
            key: RowKey::parse(key).unwrap(),
        }
    }

    fn listed(store: &Store) -> Vec<(String, u64, u64)> {
        store
            .tables(&db())
            .unwrap()
            .into_iter()
            .map(|t| (t.name, t.live.rows, t.live.bytes))
            .collect()
    }

    #[test]
    fn tables_are_listed_by_name_with_live_rows_and_bytes_and_sum_to_live_data() {
        let store = store();
        // "ab" is a prefix-sharing neighbour of "a" whose heads sort before a's; "a b",
        // " lead", "\"q", "þ" (bytes c3 be) and "ÿ" (c3 bf) are odd but valid names.
        let names = ["a", "ab", "a b", " lead", "\"q", "þ", "ÿ", "gone"];
        let mut batch = Vec::new();
        for name in names {
            batch.push(put(name, "k1", b"12345"));
            batch.push(put(name, "k2", b"x"));
        }
        batch.push(put("a", "k3", b""));
        store.commit(&db(), &batch).unwrap();
        store
            .commit(
                &db(),
                &[
                    delete("gone", "k1"),
                    delete("gone", "k2"),
                    delete("ab", "k2"),
                    delete("a", "never-written"),
                ],
            )
            .unwrap();

        let row =
            |table: &str, key: &str, value: &str| (table.len() + key.len() + value.len()) as u64;
        let two = |t: &str| row(t, "k1", "12345") + row(t, "k2", "x");
        assert_eq!(
            listed(&store),
            [
                (" lead".to_owned(), 2, two(" lead")),
                ("\"q".to_owned(), 2, two("\"q")),
                ("a".to_owned(), 3, two("a") + row("a", "k3", "")),
                ("a b".to_owned(), 2, two("a b")),
                ("ab".to_owned(), 1, row("ab", "k1", "12345")),
                ("þ".to_owned(), 2, two("þ")),
                ("ÿ".to_owned(), 2, two("ÿ")),
            ],
            "\"gone\" holds only tombstones and is not listed"
        );
        let live = store.live_data(&db()).unwrap();
        let tables = store.tables(&db()).unwrap();
        assert_eq!(live.rows, tables.iter().map(|t| t.live.rows).sum::<u64>());
        assert_eq!(live.bytes, tables.iter().map(|t| t.live.bytes).sum::<u64>());
        assert_eq!(live.rows, 14);
    }

    #[test]
    fn a_table_written_again_after_its_rows_were_deleted_is_listed_again() {
        let store = store();
        store.commit(&db(), &[put("t", "k", b"v")]).unwrap();
        store.commit(&db(), &[delete("t", "k")]).unwrap();
        assert!(listed(&store).is_empty());
        store.commit(&db(), &[put("t", "k", b"w")]).unwrap();
        assert_eq!(listed(&store), [("t".to_owned(), 1, 3)]);
    }

    #[test]
    fn collected_heads_count_as_before_collection() {
        use crate::genvec::Scope;
        use crate::store::{CollectCursor, Cut};
        let store = store();
        store
            .commit(&db(), &[put("t", "k", b"1"), put("u", "k", b"1")])
            .unwrap();
        store
            .commit(&db(), &[put("t", "k", b"22"), delete("u", "k")])
            .unwrap();
        let before = listed(&store);
        assert_eq!(before, [("t".to_owned(), 1, 4)]);
        let mut cut = Cut::default();
        for table in ["t", "u"] {
            let scope = Scope::new(table, "");
            let mut seen = store.knowledge(&db()).unwrap().bound_for(&scope);
            seen.raise(store.device(), store.state(&db()).unwrap().own_generation());
            cut.shared.insert(scope, seen);
        }
        let mut cursor = CollectCursor::default();
        let mut removed = 0;
        while !cursor.done {
            let (next, collected) = store.collect_step(&db(), &cut, cursor, 1_000).unwrap();
            removed += collected.records;
            cursor = next;
        }
        assert!(
            removed > 0,
            "the heads' records were collected into the row heads"
        );
        assert_eq!(listed(&store), before);
    }

    #[test]
    fn a_database_with_no_rows_has_no_tables_and_no_live_data() {
        let store = store();
        store.create_database(&db()).unwrap();
        assert!(store.tables(&db()).unwrap().is_empty());
        assert_eq!(store.live_data(&db()).unwrap(), LiveData::default());
    }

    #[test]
    fn the_head_view_reads_a_stored_row_head_and_a_collected_ones() {
        let head = RowHead {
            version: Version(u64::MAX),
            deleted: false,
            value: vec![7; 300],
        };
        let mut bytes = encode(&head).unwrap();
        let view: HeadView<'_> = postcard::from_bytes(&bytes).unwrap();
        assert!(!view.deleted);
        assert_eq!(view.value, head.value.as_slice());
        // A collected head's bytes go on after the row head (format byte 1, its node).
        bytes.extend_from_slice(&[1, 0, 0]);
        let view: HeadView<'_> = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(view.value.len(), 300);
        let tombstone = encode(&RowHead {
            version: Version(1),
            deleted: true,
            value: Vec::new(),
        })
        .unwrap();
        assert!(
            postcard::from_bytes::<HeadView<'_>>(&tombstone)
                .unwrap()
                .deleted
        );
    }
}
