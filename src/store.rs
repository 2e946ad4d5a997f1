//! The keyspace layout on top of [`Storage`], and the row operations the app API needs: each
//! a single storage transaction, blocking (callers run writes off the async threads).
//!
//! Layout (parts joined by the byte `0xfe`, which never occurs in UTF-8):
//! - `c 0xfe db 0xfe <db>` -> empty: the catalog of databases;
//! - `d 0xfe <db> 0xfe r 0xfe <table> 0xfe <row key>` -> the row's value.
//!
//! Every database's keys share the prefix `d 0xfe <db> 0xfe`, so later per-database records
//! (sync log, DAG, knowledge) live beside its rows under other third parts.

use std::sync::Arc;

use syncbase_storage::{Scan, Storage, WriteTxn, prefix_end};

use crate::error::{Error, Result};
use crate::names::{DbName, KeyPrefix, RowKey, TableName};

/// The separator between the parts of a storage key.
pub const SEP: u8 = 0xfe;

/// One change in an atomic commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    Put {
        table: TableName,
        key: RowKey,
        value: Vec<u8>,
    },
    Delete {
        table: TableName,
        key: RowKey,
    },
}

/// How much one scan page may hold.
#[derive(Debug, Clone, Copy)]
pub struct PageLimit {
    pub rows: usize,
    pub bytes: usize,
}

/// A row read back from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub key: String,
    pub value: Vec<u8>,
}

/// Row storage for every database of a node.
pub struct Store {
    storage: Arc<dyn Storage>,
}

impl Store {
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        Store { storage }
    }

    /// The storage backend's name.
    pub fn backend(&self) -> &'static str {
        self.storage.backend()
    }

    /// Whether the database was ever created.
    pub fn has_database(&self, db: &DbName) -> Result<bool> {
        Ok(self.storage.read()?.get(&catalog_key(db))?.is_some())
    }

    /// Records the database in the catalog (idempotent).
    pub fn create_database(&self, db: &DbName) -> Result<()> {
        let mut txn = self.storage.write()?;
        txn.put(&catalog_key(db), b"")?;
        txn.commit()?;
        Ok(())
    }

    /// Every database in the catalog, in name order.
    pub fn list_databases(&self) -> Result<Vec<String>> {
        let prefix = catalog_key_prefix();
        let mut names = Vec::new();
        self.storage.read()?.scan_prefix(&prefix, &mut |key, _| {
            names.push(decode_text(&key[prefix.len()..], "database name")?);
            Ok(Scan::Continue)
        })?;
        Ok(names)
    }

    /// The value of one row.
    pub fn get(&self, db: &DbName, table: &TableName, key: &RowKey) -> Result<Option<Vec<u8>>> {
        Ok(self.storage.read()?.get(&row_key(db, table, key))?)
    }

    /// Applies every mutation in one transaction, all or nothing. Returns, per mutation,
    /// whether its key held a value before it.
    pub fn commit(&self, db: &DbName, mutations: &[Mutation]) -> Result<Vec<bool>> {
        let mut txn = self.storage.write()?;
        let existed = apply(txn.as_mut(), db, mutations)?;
        txn.commit()?;
        Ok(existed)
    }

    /// Up to `limit` rows of `table` whose keys start with `prefix`, in key order, starting
    /// after `after` when given. An empty page means the scan is done.
    pub fn scan_page(
        &self,
        db: &DbName,
        table: &TableName,
        prefix: &KeyPrefix,
        after: Option<&str>,
        limit: PageLimit,
    ) -> Result<Vec<Row>> {
        let table_prefix = table_prefix(db, table);
        let mut start = [table_prefix.as_slice(), prefix.as_str().as_bytes()].concat();
        let end = prefix_end(&start);
        if let Some(after) = after {
            start = [table_prefix.as_slice(), after.as_bytes(), &[0]].concat();
        }
        let mut rows = Vec::new();
        let mut bytes = 0;
        self.storage
            .read()?
            .scan(&start, end.as_deref(), &mut |key, value| {
                let key = decode_text(&key[table_prefix.len()..], "row key")?;
                bytes += key.len() + value.len();
                rows.push(Row {
                    key,
                    value: value.to_vec(),
                });
                let full = rows.len() >= limit.rows || bytes >= limit.bytes;
                Ok(if full { Scan::Stop } else { Scan::Continue })
            })?;
        Ok(rows)
    }
}

fn apply(txn: &mut dyn WriteTxn, db: &DbName, mutations: &[Mutation]) -> Result<Vec<bool>> {
    mutations
        .iter()
        .map(|mutation| match mutation {
            Mutation::Put { table, key, value } => {
                let storage_key = row_key(db, table, key);
                let existed = txn.get(&storage_key)?.is_some();
                txn.put(&storage_key, value)?;
                Ok(existed)
            }
            Mutation::Delete { table, key } => Ok(txn.delete(&row_key(db, table, key))?),
        })
        .collect()
}

fn catalog_key_prefix() -> Vec<u8> {
    [b"c".as_slice(), &[SEP], b"db", &[SEP]].concat()
}

fn catalog_key(db: &DbName) -> Vec<u8> {
    [catalog_key_prefix().as_slice(), db.as_str().as_bytes()].concat()
}

fn table_prefix(db: &DbName, table: &TableName) -> Vec<u8> {
    let (db, table) = (db.as_str().as_bytes(), table.as_str().as_bytes());
    [
        b"d".as_slice(),
        &[SEP],
        db,
        &[SEP],
        b"r",
        &[SEP],
        table,
        &[SEP],
    ]
    .concat()
}

fn row_key(db: &DbName, table: &TableName, key: &RowKey) -> Vec<u8> {
    [table_prefix(db, table).as_slice(), key.as_str().as_bytes()].concat()
}

fn decode_text(bytes: &[u8], what: &str) -> syncbase_storage::Result<String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| {
        syncbase_storage::StorageError::Visitor(
            Error::Internal(format!("corrupt record: {what} is not UTF-8")).to_string(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use syncbase_storage::MemoryStorage;

    fn store() -> Store {
        Store::new(Arc::new(MemoryStorage::new()))
    }

    fn put(table: &str, key: &str, value: &[u8]) -> Mutation {
        Mutation::Put {
            table: TableName::parse(table).unwrap(),
            key: RowKey::parse(key).unwrap(),
            value: value.to_vec(),
        }
    }

    fn names(db: &str, table: &str) -> (DbName, TableName) {
        (DbName::parse(db).unwrap(), TableName::parse(table).unwrap())
    }

    const ALL: PageLimit = PageLimit {
        rows: usize::MAX,
        bytes: usize::MAX,
    };

    #[test]
    fn commit_reports_which_keys_existed() {
        let store = store();
        let (db, table) = names("db", "t");
        let key = RowKey::parse("k").unwrap();
        assert_eq!(store.commit(&db, &[put("t", "k", b"1")]).unwrap(), [false]);
        assert_eq!(store.commit(&db, &[put("t", "k", b"2")]).unwrap(), [true]);
        assert_eq!(
            store.get(&db, &table, &key).unwrap().as_deref(),
            Some(&b"2"[..])
        );
        let delete = Mutation::Delete {
            table: table.clone(),
            key: key.clone(),
        };
        assert_eq!(
            store.commit(&db, &[delete.clone(), delete]).unwrap(),
            [true, false]
        );
        assert_eq!(store.get(&db, &table, &key).unwrap(), None);
    }

    #[test]
    fn scans_stay_inside_their_table_and_prefix() {
        let store = store();
        let (db, table) = names("db", "t");
        let rows = [
            put("t", "a", b"1"),
            put("t", "b/1", b"2"),
            put("t", "b/2", b"3"),
            put("t2", "b/3", b"x"),
        ];
        store.commit(&db, &rows).unwrap();
        store
            .commit(&DbName::parse("db2").unwrap(), &[put("t", "b/4", b"y")])
            .unwrap();
        let page = store
            .scan_page(&db, &table, &KeyPrefix::parse("b/").unwrap(), None, ALL)
            .unwrap();
        let keys: Vec<_> = page.iter().map(|row| row.key.as_str()).collect();
        assert_eq!(keys, ["b/1", "b/2"]);
        let all = store
            .scan_page(&db, &table, &KeyPrefix::parse("").unwrap(), None, ALL)
            .unwrap();
        assert_eq!(all.len(), 3);
    }

    #[test]
    fn scan_pages_resume_after_the_last_key() {
        let store = store();
        let (db, table) = names("db", "t");
        let rows: Vec<_> = (0..10).map(|i| put("t", &format!("k{i}"), b"v")).collect();
        store.commit(&db, &rows).unwrap();
        let prefix = KeyPrefix::parse("k").unwrap();
        let limit = PageLimit {
            rows: 4,
            bytes: usize::MAX,
        };
        let (mut seen, mut after) = (Vec::new(), None::<String>);
        loop {
            let page = store
                .scan_page(&db, &table, &prefix, after.as_deref(), limit)
                .unwrap();
            let Some(last) = page.last() else { break };
            after = Some(last.key.clone());
            seen.extend(page.into_iter().map(|row| row.key));
        }
        let expected: Vec<_> = (0..10).map(|i| format!("k{i}")).collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn databases_are_listed_in_name_order() {
        let store = store();
        for name in ["zeta", "alpha"] {
            store
                .create_database(&DbName::parse(name).unwrap())
                .unwrap();
        }
        assert!(
            store
                .has_database(&DbName::parse("alpha").unwrap())
                .unwrap()
        );
        assert!(!store.has_database(&DbName::parse("beta").unwrap()).unwrap());
        assert_eq!(store.list_databases().unwrap(), ["alpha", "zeta"]);
    }
}
