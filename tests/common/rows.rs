//! Rows of table `t` of the test database, written and read on an embedded node directly
//! (below the app API), a digest of every row, and the seeded generator of the randomised
//! tests.

use syncbase::embedded::EmbeddedServer;
use syncbase::error::Error;
use syncbase::names::{DbName, RowKey, TableName};
use syncbase::store::Mutation;

use super::DB;

/// Puts `value` at `key` of table `t` (None: deletes it), opening the database first;
/// whether the row existed, or the node's error.
pub async fn commit(node: &EmbeddedServer, key: &str, value: Option<&str>) -> Result<bool, Error> {
    let (table, key) = (TableName::parse("t").unwrap(), RowKey::parse(key).unwrap());
    let mutation = match value {
        Some(value) => Mutation::Put {
            table,
            key,
            value: value.as_bytes().to_vec(),
        },
        None => Mutation::Delete { table, key },
    };
    let db = DbName::parse(DB).unwrap();
    node.node().open_database(&db).await?;
    Ok(node.node().commit(db, vec![mutation]).await?[0])
}

/// [`commit`], which must succeed.
pub async fn write(node: &EmbeddedServer, key: &str, value: Option<&str>) {
    commit(node, key, value).await.expect("commit");
}

/// The value at `key` of table `t`, as text.
pub fn read(node: &EmbeddedServer, key: &str) -> Option<String> {
    let (db, table) = (DbName::parse(DB).unwrap(), TableName::parse("t").unwrap());
    let value = node
        .node()
        .store()
        .get(&db, &table, &RowKey::parse(key).unwrap())
        .unwrap();
    value.map(|bytes| String::from_utf8(bytes).unwrap())
}

/// A digest of every row of the test database.
pub fn digest(node: &EmbeddedServer) -> u64 {
    node.node()
        .store()
        .digest(&DbName::parse(DB).unwrap())
        .unwrap()
}

/// A small deterministic generator (xorshift), so a failing seed replays its script.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
