//! LMDB transactions behind the [`ReadTxn`] / [`WriteTxn`] traits, and the cursor scan they
//! share.
//!
//! Reads and scans are written once over `lmdb::Transaction`, so the write transaction
//! reads its own writes through the same code (LMDB does that natively). A write
//! transaction that hits an LMDB error (notably `MDB_MAP_FULL`) is unusable from then on —
//! LMDB refuses further work in it — so it remembers the error, repeats it on every later
//! call including `commit`, and is rolled back when dropped. Every write error keeps its
//! kind (`Room::error`): a full map or a full disk is never a generic backend error.
//!
//! Each transaction holds a gate [`Pass`] declared after the LMDB transaction, so the
//! transaction ends (commits or aborts) before the pass is returned and a resize can run.

use ::lmdb::{Cursor, RoCursor, RoTransaction, RwTransaction, Transaction, WriteFlags};

use super::gate::Pass;
use super::{Dbs, Room, backend_error};
use crate::{MAX_KEY_LEN, ReadTxn, Result, Scan, Visitor, WriteTxn, check_key_len};

/// A read-only snapshot transaction.
pub(super) struct LmdbRead<'env> {
    txn: RoTransaction<'env>,
    dbs: Dbs,
    _pass: Pass<'env>,
}

impl<'env> LmdbRead<'env> {
    pub(super) fn new(txn: RoTransaction<'env>, dbs: Dbs, pass: Pass<'env>) -> Self {
        Self {
            txn,
            dbs,
            _pass: pass,
        }
    }
}

impl ReadTxn for LmdbRead<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        get(&self.txn, self.dbs, key)
    }

    fn scan(&self, start: &[u8], end: Option<&[u8]>, visit: &mut Visitor<'_>) -> Result<()> {
        scan(&self.txn, self.dbs, start, end, visit)
    }
}

/// The environment's write transaction; aborted on drop unless committed.
pub(super) struct LmdbWrite<'env> {
    txn: RwTransaction<'env>,
    dbs: Dbs,
    room: Room<'env>,
    /// The LMDB error that broke this transaction, if one did.
    failed: Option<::lmdb::Error>,
    _pass: Pass<'env>,
}

impl<'env> LmdbWrite<'env> {
    pub(super) fn new(
        txn: RwTransaction<'env>,
        dbs: Dbs,
        room: Room<'env>,
        pass: Pass<'env>,
    ) -> Self {
        Self {
            txn,
            dbs,
            room,
            failed: None,
            _pass: pass,
        }
    }

    /// Fails if an earlier error broke the transaction.
    fn ensure_usable(&self) -> Result<()> {
        match self.failed {
            Some(err) => Err(self.room.error(
                "the write transaction failed earlier and is rolled back",
                err,
            )),
            None => Ok(()),
        }
    }

    /// Records that `err` broke the transaction during `context`, and reports it.
    fn fail(&mut self, context: &str, err: ::lmdb::Error) -> crate::StorageError {
        self.failed = Some(err);
        self.room.error(context, err)
    }
}

impl ReadTxn for LmdbWrite<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.ensure_usable()?;
        get(&self.txn, self.dbs, key)
    }

    fn scan(&self, start: &[u8], end: Option<&[u8]>, visit: &mut Visitor<'_>) -> Result<()> {
        self.ensure_usable()?;
        scan(&self.txn, self.dbs, start, end, visit)
    }
}

impl WriteTxn for LmdbWrite<'_> {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        check_key_len(key)?;
        self.ensure_usable()?;
        let (db, key) = self.dbs.locate(key);
        match self.txn.put(db, &key, &value, WriteFlags::empty()) {
            Ok(()) => Ok(()),
            Err(err) => Err(self.fail("put", err)),
        }
    }

    fn delete(&mut self, key: &[u8]) -> Result<bool> {
        self.ensure_usable()?;
        if key.len() > MAX_KEY_LEN {
            return Ok(false);
        }
        let (db, key) = self.dbs.locate(key);
        match self.txn.del(db, &key, None) {
            Ok(()) => Ok(true),
            Err(::lmdb::Error::NotFound) => Ok(false),
            Err(err) => Err(self.fail("delete", err)),
        }
    }

    fn commit(self: Box<Self>) -> Result<()> {
        // On an early return the transaction is dropped, which aborts it.
        self.ensure_usable()?;
        let room = self.room;
        self.txn.commit().map_err(|err| room.error("commit", err))?;
        room.map.committed(false);
        Ok(())
    }
}

/// The value at `key`, copied out of the map.
fn get<T: Transaction>(txn: &T, dbs: Dbs, key: &[u8]) -> Result<Option<Vec<u8>>> {
    if key.len() > MAX_KEY_LEN {
        // LMDB rejects such a key outright; it cannot have been stored.
        return Ok(None);
    }
    let (db, key) = dbs.locate(key);
    match txn.get(db, &key) {
        Ok(value) => Ok(Some(value.to_vec())),
        Err(::lmdb::Error::NotFound) => Ok(None),
        Err(err) => Err(backend_error("get", err)),
    }
}

/// Visits `[start, end)` in key order: the empty key first (if in range), then `kv`.
fn scan<T: Transaction>(
    txn: &T,
    dbs: Dbs,
    start: &[u8],
    end: Option<&[u8]>,
    visit: &mut Visitor<'_>,
) -> Result<()> {
    if end.is_some_and(|end| end <= start) {
        return Ok(());
    }
    if start.is_empty()
        && let Some(value) = get(txn, dbs, &[])?
        && visit(&[], &value)? == Scan::Stop
    {
        return Ok(());
    }
    scan_kv(txn, dbs, start, end, visit)
}

/// Visits the non-empty keys in `[start, end)` with a cursor.
fn scan_kv<T: Transaction>(
    txn: &T,
    dbs: Dbs,
    start: &[u8],
    end: Option<&[u8]>,
    visit: &mut Visitor<'_>,
) -> Result<()> {
    let mut cursor = txn
        .open_ro_cursor(dbs.kv)
        .map_err(|err| backend_error("opening a scan cursor", err))?;
    for entry in seek(&mut cursor, start) {
        let (key, value) = entry.map_err(|err| backend_error("scan", err))?;
        if key < start {
            // Only the truncated seek key itself (see `seek`) can land here.
            continue;
        }
        if end.is_some_and(|end| key >= end) {
            break;
        }
        if visit(key, value)? == Scan::Stop {
            break;
        }
    }
    Ok(())
}

/// Positions `cursor` at the first key `>= start`, or at a key just below it.
///
/// LMDB cannot seek to an empty key or to one longer than its key limit. An empty `start`
/// means the first entry. A longer `start` is cut to [`MAX_KEY_LEN`] bytes: every stored key
/// `>=` the cut one is `>= start`, except the cut key itself, which the caller skips.
fn seek<'txn>(cursor: &mut RoCursor<'txn>, start: &[u8]) -> ::lmdb::Iter<'txn> {
    if start.is_empty() {
        cursor.iter_start()
    } else {
        cursor.iter_from(&start[..start.len().min(MAX_KEY_LEN)])
    }
}
