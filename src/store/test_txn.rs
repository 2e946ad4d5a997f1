//! A write transaction for tests whose commit fails with a chosen storage error, writing
//! nothing: what a full map or a broken disk does to a commit.

use syncbase_storage::{ReadTxn, Result as StorageResult, StorageError, Visitor, WriteTxn};

/// Wraps `txn`; its commit fails with `error` (if any) instead of committing.
pub(crate) struct FailingCommit<'a> {
    pub txn: Box<dyn WriteTxn + 'a>,
    pub error: Option<StorageError>,
}

impl ReadTxn for FailingCommit<'_> {
    fn get(&self, key: &[u8]) -> StorageResult<Option<Vec<u8>>> {
        self.txn.get(key)
    }

    fn scan(&self, start: &[u8], end: Option<&[u8]>, visit: &mut Visitor<'_>) -> StorageResult<()> {
        self.txn.scan(start, end, visit)
    }
}

impl WriteTxn for FailingCommit<'_> {
    fn put(&mut self, key: &[u8], value: &[u8]) -> StorageResult<()> {
        self.txn.put(key, value)
    }

    fn delete(&mut self, key: &[u8]) -> StorageResult<bool> {
        self.txn.delete(key)
    }

    fn commit(self: Box<Self>) -> StorageResult<()> {
        match self.error {
            Some(error) => Err(error),
            None => self.txn.commit(),
        }
    }
}
