//! Resume cursors: where an interrupted catch-up starts again, so a cut, a crash or a full
//! disk costs at most one page again, never the whole backlog.
//!
//! *Responder side.* Every data page carries a **token**: the responder's device and *run*
//! (a random id drawn each time the store opens), the log position the next page starts at,
//! the (device, generation) of the last log entry before it, and a digest of the initiator's
//! device and the scopes served. It means: every entry before that position was examined for
//! this initiator and these scopes. A request carrying a token starts there
//! ([`resume_position`]) only if all of it still holds: same responder device and run, the
//! position inside the log and the entry before it unchanged, same initiator and served
//! scopes; otherwise the start falls back to the initiator's knowledge. Knowledge-based
//! filtering applies either way.
//!
//! Why the run: a store restored from a copy of itself keeps its device until a peer shows
//! it a record under one of its own generations, and appends at positions the old log had
//! used; the same records arriving again in the same order can put the same entry before a
//! token's position, so a check of the log alone takes an old token for a valid one and skips
//! the restored store's new writes (simulation seed 8184). A copy is opened anew, so its run
//! differs from every run that issued a token. The cost: a responder's restart sends an
//! interrupted catch-up again from the initiator's knowledge.
//!
//! *Initiator side.* The token is opaque; the initiator keeps one [`ResumeCursor`] per peer
//! (key `D u 0xfe <fingerprint>`), written in the same transaction as the page it came with,
//! together with the knowledge the session asked with (`asked`). The next session sends the
//! token only if its own knowledge still dominates `asked` in the same scopes: a node that
//! lowered its knowledge to fetch records again (records it refused) never skips them.
//! A page whose records were refused forgets the cursor, and [`forget_all`]
//! (`Store::forget_resume_cursors`) drops every cursor of a database, for anything else that
//! must see records again.

use serde::{Deserialize, Serialize};
use syncbase_storage::{ReadTxn, Scan, WriteTxn, prefix_end};

use crate::error::Result;
use crate::genvec::{DeviceId, Knowledge};
use crate::store::keys::DbKeys;
use crate::store::records::{LogEntry, decode, encode};
use crate::store::writer::load_state;

/// Longest token a responder makes or reads (the wire refuses longer ones).
pub const MAX_TOKEN_BYTES: usize = 128;
const TOKEN_BYTES: usize = 8 + 8 + 8 + 8 + 8 + 32;

/// The initiator's progress with one peer: the peer's last token and what it asked with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeCursor {
    pub token: Vec<u8>,
    /// The knowledge the session that received the token asked with.
    pub asked: Knowledge,
}

impl ResumeCursor {
    /// Whether a session asking with `knowledge` may resume here: same scopes, and it knows
    /// at least what the cursor's session knew in each (else records before the cursor that
    /// it now lacks would be skipped).
    pub fn valid_for(&self, knowledge: &Knowledge) -> bool {
        self.asked.len() == knowledge.len()
            && self.asked.iter().all(|(scope, asked)| {
                knowledge
                    .get(scope)
                    .is_some_and(|vector| vector.dominates(asked))
            })
    }
}

/// What an applied page does to the peer's cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CursorUpdate {
    /// Leave it.
    Keep,
    /// Replace it (the page came with a token).
    Save(ResumeCursor),
    /// Remove it (the page's records were refused: they must be fetched again).
    Forget,
}

/// The cursor kept with `peer`, if any.
pub fn load(txn: &dyn ReadTxn, keys: &DbKeys, peer: &str) -> Result<Option<ResumeCursor>> {
    txn.get(&keys.resume(peer))?
        .map(|bytes| decode(&bytes, "resume cursor"))
        .transpose()
}

/// Applies `update` to the cursor with `peer`, inside the page's transaction.
pub fn update(
    txn: &mut dyn WriteTxn,
    keys: &DbKeys,
    peer: &str,
    update: &CursorUpdate,
) -> Result<()> {
    match update {
        CursorUpdate::Keep => {}
        CursorUpdate::Save(cursor) => txn.put(&keys.resume(peer), &encode(cursor)?)?,
        CursorUpdate::Forget => {
            txn.delete(&keys.resume(peer))?;
        }
    }
    Ok(())
}

/// Removes every cursor of the database; returns how many there were.
pub fn forget_all(txn: &mut dyn WriteTxn, keys: &DbKeys) -> Result<usize> {
    let start = keys.resume_prefix();
    let end = prefix_end(&start);
    let mut found = Vec::new();
    txn.scan(&start, end.as_deref(), &mut |key, _| {
        found.push(key.to_vec());
        Ok(Scan::Continue)
    })?;
    for key in &found {
        txn.delete(key)?;
    }
    Ok(found.len())
}

/// The responder a token names: its device and the run of its store (drawn at open).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Issuer {
    pub device: DeviceId,
    pub run: u64,
}

/// The token for a page that ends before log `position`, served to `initiator` for the
/// scopes of `served`.
pub fn token(
    txn: &dyn ReadTxn,
    keys: &DbKeys,
    me: Issuer,
    initiator: DeviceId,
    served: &Knowledge,
    position: u64,
) -> Result<Vec<u8>> {
    let last = entry_before(txn, keys, position)?;
    let mut token = Vec::with_capacity(TOKEN_BYTES);
    token.extend_from_slice(&me.device.0.to_be_bytes());
    token.extend_from_slice(&me.run.to_be_bytes());
    token.extend_from_slice(&position.to_be_bytes());
    token.extend_from_slice(&last.0.to_be_bytes());
    token.extend_from_slice(&last.1.to_be_bytes());
    token.extend_from_slice(&scopes_digest(initiator, served));
    Ok(token)
}

/// Where a request carrying `token` may start, if the token is still valid here (see the
/// module doc); None means: start from the initiator's knowledge.
pub fn resume_position(
    txn: &dyn ReadTxn,
    keys: &DbKeys,
    me: Issuer,
    initiator: DeviceId,
    served: &Knowledge,
    token: &[u8],
) -> Result<Option<u64>> {
    if token.len() != TOKEN_BYTES {
        return Ok(None);
    }
    let word =
        |i: usize| u64::from_be_bytes(token[i * 8..i * 8 + 8].try_into().unwrap_or_default());
    let (device, run, position, last) = (word(0), word(1), word(2), (word(3), word(4)));
    if device != me.device.0 || run != me.run || token[40..] != scopes_digest(initiator, served) {
        return Ok(None);
    }
    if position > load_state(txn, keys)?.next_position {
        return Ok(None);
    }
    Ok((entry_before(txn, keys, position)? == last).then_some(position))
}

/// The (device, generation) of the log entry just before `position`; (0, 0) at the start.
fn entry_before(txn: &dyn ReadTxn, keys: &DbKeys, position: u64) -> Result<(u64, u64)> {
    let Some(before) = position.checked_sub(1) else {
        return Ok((0, 0));
    };
    match txn.get(&keys.log(before))? {
        Some(bytes) => {
            let entry: LogEntry = decode(&bytes, "log entry")?;
            Ok((entry.device.0, entry.generation.get()))
        }
        None => Ok((u64::MAX, u64::MAX)),
    }
}

/// BLAKE3 of the initiator's device and the served scopes, in order.
fn scopes_digest(initiator: DeviceId, served: &Knowledge) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&initiator.0.to_be_bytes());
    for (scope, _) in served.iter() {
        let bytes = scope.to_bytes();
        hasher.update(&(bytes.len() as u64).to_be_bytes());
        hasher.update(&bytes);
    }
    *hasher.finalize().as_bytes()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use syncbase_storage::MemoryStorage;

    use super::*;
    use crate::genvec::{GenVector, Generation, Scope};
    use crate::names::{DbName, RowKey, TableName};
    use crate::store::{Mutation, PageRequest, Store};

    fn store() -> Store {
        Store::open(Arc::new(MemoryStorage::new()), crate::env::Env::system()).unwrap()
    }

    fn db() -> DbName {
        DbName::parse("db").unwrap()
    }

    fn write_rows(store: &Store, count: usize) {
        for i in 0..count {
            let put = Mutation::Put {
                table: TableName::parse("t").unwrap(),
                key: RowKey::parse(&format!("k{i:03}")).unwrap(),
                value: vec![1; 8],
            };
            store.commit(&db(), &[put]).unwrap();
        }
    }

    fn asked(to: &Store) -> Knowledge {
        let own = to.state(&db()).unwrap().own_generation();
        to.knowledge(&db())
            .unwrap()
            .request_for(&[Scope::new("t", "")], to.device(), own)
    }

    /// Pulls pages of three records from `from` into `to`, starting at `position`, keeping
    /// the cursor with each page; stops after `pages` pages (or at the log's end). Returns
    /// the records sent.
    fn pull_pages(to: &Store, from: &Store, position: u64, pages: usize) -> usize {
        let knowledge = asked(to);
        let mut position = position;
        let mut sent = 0;
        for _ in 0..pages {
            let request = PageRequest {
                initiator: to.device(),
                echoes_from: 0,
                knowledge: &knowledge,
                position,
                max_records: 3,
                max_bytes: usize::MAX,
            };
            let page = from.read_page(&db(), &request).unwrap();
            position = page.next_position;
            sent += page.records.len();
            let token = from
                .resume_token(&db(), to.device(), &knowledge, position)
                .unwrap();
            let cursor = CursorUpdate::Save(ResumeCursor {
                token,
                asked: knowledge.clone(),
            });
            to.apply_page(
                &db(),
                from.device(),
                &page.records,
                page.knowledge.as_ref(),
                "peer",
                &cursor,
            )
            .unwrap();
            if page.knowledge.is_some() {
                break;
            }
        }
        sent
    }

    /// Where a new session of `to` with `from` starts, as the responder decides.
    fn start(to: &Store, from: &Store) -> u64 {
        let knowledge = asked(to);
        let by_knowledge = from.start_position(&db(), to.device(), &knowledge).unwrap();
        let cursor = to.resume_cursor(&db(), "peer").unwrap();
        let token = cursor.filter(|c| c.valid_for(&knowledge)).map(|c| c.token);
        let resumed = token.and_then(|token| {
            from.resume_position(&db(), to.device(), &knowledge, &token)
                .unwrap()
        });
        resumed.map_or(by_knowledge, |p| p.max(by_knowledge))
    }

    #[test]
    fn an_interrupted_catch_up_resumes_after_the_last_page_applied() {
        let (a, b) = (store(), store());
        write_rows(&a, 10);
        b.create_database(&db()).unwrap();
        assert_eq!(pull_pages(&b, &a, 0, 2), 6);
        // The cut: a new session starts where the second page ended, not at the start.
        let position = start(&b, &a);
        assert_eq!(position, 6);
        assert_eq!(pull_pages(&b, &a, position, 10), 4);
        assert_eq!(a.digest(&db()).unwrap(), b.digest(&db()).unwrap());
    }

    #[test]
    fn a_store_opened_on_a_copy_refuses_the_tokens_its_original_issued() {
        let storage = Arc::new(MemoryStorage::new());
        let a = Store::open(storage.clone(), crate::env::Env::system()).unwrap();
        let b = store();
        write_rows(&a, 5);
        let knowledge = asked(&b);
        let token = a.resume_token(&db(), b.device(), &knowledge, 3).unwrap();
        let at = |store: &Store| {
            store
                .resume_position(&db(), b.device(), &knowledge, &token)
                .unwrap()
        };
        assert_eq!(at(&a), Some(3));
        // Same device, same log: only the run tells a restored copy from the original.
        let copy = Store::open(Arc::new(storage.copy()), crate::env::Env::system()).unwrap();
        assert_eq!(copy.device(), a.device());
        assert_eq!(at(&copy), None);
    }

    #[test]
    fn a_token_is_refused_for_another_initiator_other_scopes_or_a_changed_log() {
        let (a, b) = (store(), store());
        write_rows(&a, 5);
        let knowledge = asked(&b);
        let token = a.resume_token(&db(), b.device(), &knowledge, 3).unwrap();
        let at = |initiator: DeviceId, served: &Knowledge, token: &[u8]| {
            a.resume_position(&db(), initiator, served, token).unwrap()
        };
        assert_eq!(at(b.device(), &knowledge, &token), Some(3));
        assert_eq!(at(DeviceId(b.device().0 ^ 1), &knowledge, &token), None);
        let mut other = Knowledge::new();
        other.insert(Scope::new("t", "k0"), GenVector::new());
        assert_eq!(at(b.device(), &other, &token), None);
        // Another responder's token, a position past the log's end, another entry before it.
        let c = store();
        write_rows(&c, 5);
        let foreign = c.resume_token(&db(), b.device(), &knowledge, 3).unwrap();
        assert_eq!(at(b.device(), &knowledge, &foreign), None);
        let mut beyond = token.clone();
        beyond[16..24].copy_from_slice(&99u64.to_be_bytes());
        assert_eq!(at(b.device(), &knowledge, &beyond), None);
        let mut rewritten = token.clone();
        rewritten[32..40].copy_from_slice(&77u64.to_be_bytes());
        assert_eq!(at(b.device(), &knowledge, &rewritten), None);
        assert_eq!(at(b.device(), &knowledge, &token[..10]), None);
    }

    #[test]
    fn a_cursor_is_not_used_once_knowledge_is_lowered_or_the_scopes_change() {
        let scope = Scope::new("t", "");
        let knowing = |generation: u64| {
            let mut knowledge = Knowledge::new();
            knowledge.insert(
                scope.clone(),
                [(DeviceId(7), Generation::new(generation))]
                    .into_iter()
                    .collect(),
            );
            knowledge
        };
        let cursor = ResumeCursor {
            token: vec![1],
            asked: knowing(5),
        };
        assert!(cursor.valid_for(&knowing(5)));
        assert!(cursor.valid_for(&knowing(6)));
        assert!(
            !cursor.valid_for(&knowing(4)),
            "a record it lacks would be skipped"
        );
        let mut wider = knowing(5);
        wider.insert(Scope::new("u", ""), GenVector::new());
        assert!(!cursor.valid_for(&wider));
    }

    #[test]
    fn forgetting_resume_cursors_makes_the_next_session_start_from_knowledge() {
        let (a, b) = (store(), store());
        write_rows(&a, 10);
        b.create_database(&db()).unwrap();
        pull_pages(&b, &a, 0, 2);
        assert_eq!(b.forget_resume_cursors(&db()).unwrap(), 1);
        assert_eq!(b.resume_cursor(&db(), "peer").unwrap(), None);
        assert_eq!(start(&b, &a), 0);
    }

    #[test]
    fn a_page_with_refused_records_forgets_the_cursor() {
        let (a, b) = (store(), store());
        write_rows(&a, 10);
        b.create_database(&db()).unwrap();
        pull_pages(&b, &a, 0, 2);
        b.apply_page(&db(), a.device(), &[], None, "peer", &CursorUpdate::Forget)
            .unwrap();
        assert_eq!(b.resume_cursor(&db(), "peer").unwrap(), None);
    }
}
