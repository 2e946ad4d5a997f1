//! The store's format version and the upgrade of data written by older builds. Records are
//! postcard, which is not self-describing: a field added to a stored struct makes every record
//! written before unreadable (`#[serde(default)]` does not help: postcard reads the next bytes
//! as the new field). So the layout of everything stored is versioned as a whole: the version
//! sits at `i 0xfe format` (a big-endian u32); a store with data and no version key is format
//! 1, the layout before members, declared peers and local states carried names and removals (or
//! format 2 from the builds between that change and the key: the step from 1 leaves records
//! already in format 2). [`prepare`] runs before a store is used: a fresh store is stamped
//! [`CURRENT`]; an older one is upgraded in place, in one write transaction (each changed
//! record decoded with a private copy of its old layout, `format::v1`, and re-encoded in the
//! current one; rows are untouched), logging `upgraded store format N -> M`; a newer one is
//! refused with `BadState:` naming the store, its format and this build's, and nothing in it is
//! changed.
//!
//! **The rule for every later change.** A change to a stored layout (a field added, removed,
//! reordered or retyped in any type the storage key layout names, or in a type nested in one; a
//! variant removed or reordered) bumps [`CURRENT`] and adds a step to `STEPS` that rewrites the
//! records written in the old layout, with the old types copied privately into a module beside
//! this one (`v1` is the first). Steps run in a chain inside one transaction, so each writes
//! its own target format's layout: at the bump, the step before switches its targets from the
//! current types to the new module's copies. Appending a variant at an enum's end keeps old
//! bytes decodable, so its step rewrites nothing (`|_| Ok(0)`), but it is a bump all the same:
//! an older build would read the new variant as a corrupt record, where the bump makes it
//! refuse the store at open with the message above. The golden test (`format::golden`) pins the
//! encoding of a sample of every stored type, every variant of every stored enum included,
//! against `tests/fixtures/store-format/vN.txt` for the current N, so a layout change without a
//! bump fails it; a bump adds the next file, and no existing file is ever edited.

mod v1;

#[cfg(test)]
mod golden;

use syncbase_storage::{ReadTxn, Scan, Storage, WriteTxn, retry_full};

use crate::error::{Error, Result};
use crate::store::keys;

/// This build's store format: what it writes and the newest it reads.
pub const CURRENT: u32 = 3;

/// The format of a store that has data and no version key (written before versions existed).
pub const UNVERSIONED: u32 = 1;

/// One upgrade step: rewrites the records of format N into format N + 1 inside the upgrade's
/// transaction; returns how many records it rewrote.
type Step = fn(&mut dyn WriteTxn) -> Result<usize>;

/// `STEPS[i]` upgrades format `i + 1` to `i + 2`: one step per format before [`CURRENT`].
const STEPS: [Step; (CURRENT - 1) as usize] = [v1::upgrade, destroyed_status];

/// Format 2 -> 3: `syncgroup::Status` gained `Destroyed` at its end (`sg destroy`). Records of
/// format 2 decode as they are, so nothing is rewritten; the bump makes a format-2 build
/// refuse a store that may hold a destroyed syncgroup instead of reading it as corrupt.
fn destroyed_status(_: &mut dyn WriteTxn) -> Result<usize> {
    Ok(0)
}

/// What a store's format key and contents say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// Nothing stored yet: it is stamped [`CURRENT`].
    Fresh,
    /// Data in format N (a store with data and no version key is [`UNVERSIONED`]).
    At(u32),
}

/// The format of the store `txn` reads. Errors: the storage's, `Internal: corrupt store
/// format version` if the key holds anything but 4 bytes.
pub fn found(txn: &dyn ReadTxn) -> Result<Found> {
    match txn.get(&keys::format_version())? {
        Some(bytes) => match <[u8; 4]>::try_from(bytes.as_slice()) {
            Ok(be) => Ok(Found::At(u32::from_be_bytes(be))),
            Err(_) => Err(Error::Internal(format!(
                "corrupt store format version: {} bytes, expected 4",
                bytes.len()
            ))),
        },
        None if holds_anything(txn)? => Ok(Found::At(UNVERSIONED)),
        None => Ok(Found::Fresh),
    }
}

/// Readies the store for this build, before anything else reads it: stamps a fresh store
/// [`CURRENT`], upgrades an older one in place in one transaction and logs
/// `upgraded store format N -> M` (tracing info), and leaves a current one alone. `place`
/// names the store in errors (`the data directory "DIR"`). Returns the format found.
/// Errors: `BadState:` for a store newer than this build (nothing changed), `Internal:
/// corrupt ...` for a record in neither its old layout nor the next one, the
/// storage's (a full store is retried once, as every write path does).
pub fn prepare(storage: &dyn Storage, place: &str) -> Result<Found> {
    let seen = found(storage.read()?.as_ref())?;
    match seen {
        Found::At(CURRENT) => return Ok(seen),
        Found::At(newer) if newer > CURRENT => return Err(too_new(place, newer)),
        _ => {}
    }
    retry_full(
        || upgrade_once(storage, place),
        |error| matches!(error, Error::StorageFull(_)),
    )
}

/// One attempt at [`prepare`]'s write: reads the format again inside the transaction (a
/// store is opened once, but the read above was another snapshot).
fn upgrade_once(storage: &dyn Storage, place: &str) -> Result<Found> {
    let mut txn = storage.write()?;
    let seen = found(txn.as_ref())?;
    let from = match seen {
        Found::Fresh => CURRENT,
        Found::At(version) if version > CURRENT => return Err(too_new(place, version)),
        Found::At(version) => version.max(UNVERSIONED),
    };
    let mut rewritten = 0;
    for step in &STEPS[(from - UNVERSIONED) as usize..] {
        rewritten += step(txn.as_mut())?;
    }
    txn.put(&keys::format_version(), &CURRENT.to_be_bytes())?;
    txn.commit()?;
    if let Found::At(old) = seen {
        tracing::info!(
            records = rewritten,
            "upgraded store format {old} -> {CURRENT}"
        );
    }
    Ok(seen)
}

/// The refusal of a store written by a newer build.
fn too_new(place: &str, version: u32) -> Error {
    Error::BadState(format!(
        "{place} holds store format {version}, newer than this build's format {CURRENT}: it was \
         written by a newer build of syncbase. Run that build (or a newer one) on it; this \
         build changed nothing in it"
    ))
}

/// Whether any key is stored.
fn holds_anything(txn: &dyn ReadTxn) -> Result<bool> {
    let mut any = false;
    txn.scan(b"", None, &mut |_, _| {
        any = true;
        Ok(Scan::Stop)
    })?;
    Ok(any)
}

/// Every stored `(key, value)` under `prefix`.
fn entries(txn: &dyn ReadTxn, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut found = Vec::new();
    txn.scan_prefix(prefix, &mut |key, value| {
        found.push((key.to_vec(), value.to_vec()));
        Ok(Scan::Continue)
    })?;
    Ok(found)
}

/// A record's value in layout `T` if it is exactly that: it decodes with no byte left over
/// and encodes back to the same bytes (so a record of another layout that happens to decode
/// is not taken for this one).
fn exactly<T>(bytes: &[u8]) -> Option<T>
where
    T: serde::de::DeserializeOwned + serde::Serialize,
{
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((value, [])) => {
            let again = crate::store::records::encode(&value).ok()?;
            (again == bytes).then_some(value)
        }
        _ => None,
    }
}

/// Rewrites every record under `prefix` that is in the old layout `Old` as `upgrade` of it,
/// in the layout `New` of format `from + 1`, and leaves those already in `New` (an
/// unversioned store written by a build that already had format `from + 1`'s layout but no
/// format key: builds from 6dee37c until the key). Returns how many it rewrote; `Internal:
/// corrupt WHAT (format N)` for a record in neither layout.
fn rewrite<Old, New>(
    txn: &mut dyn WriteTxn,
    prefix: &[u8],
    what: &str,
    from: u32,
    upgrade: impl Fn(Old) -> New,
) -> Result<usize>
where
    Old: serde::de::DeserializeOwned + serde::Serialize,
    New: serde::de::DeserializeOwned + serde::Serialize,
{
    let mut rewritten = 0;
    for (key, value) in entries(txn, prefix)? {
        if let Some(old) = exactly::<Old>(&value) {
            txn.put(&key, &crate::store::records::encode(&upgrade(old))?)?;
            rewritten += 1;
        } else if exactly::<New>(&value).is_none() {
            return Err(Error::Internal(format!(
                "corrupt {what}: in neither the layout of format {from} nor that of format {}",
                from + 1
            )));
        }
    }
    Ok(rewritten)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use syncbase_storage::MemoryStorage;

    use super::*;

    #[test]
    fn a_fresh_store_is_stamped_current() {
        let storage = MemoryStorage::new();
        assert_eq!(prepare(&storage, "this store").unwrap(), Found::Fresh);
        assert_eq!(
            found(storage.read().unwrap().as_ref()).unwrap(),
            Found::At(CURRENT)
        );
    }

    #[test]
    fn a_store_with_data_and_no_version_is_format_1_and_is_upgraded() {
        let storage = MemoryStorage::new();
        let mut txn = storage.write().unwrap();
        txn.put(&keys::device_id(), &[7]).unwrap();
        txn.commit().unwrap();
        assert_eq!(
            found(storage.read().unwrap().as_ref()).unwrap(),
            Found::At(UNVERSIONED)
        );
        assert_eq!(prepare(&storage, "this store").unwrap(), Found::At(1));
        assert_eq!(
            found(storage.read().unwrap().as_ref()).unwrap(),
            Found::At(CURRENT)
        );
        assert_eq!(prepare(&storage, "this store").unwrap(), Found::At(CURRENT));
    }

    #[test]
    fn a_newer_store_is_refused_naming_it_and_both_formats_and_left_alone() {
        let storage = MemoryStorage::new();
        let mut txn = storage.write().unwrap();
        txn.put(&keys::format_version(), &(CURRENT + 1).to_be_bytes())
            .unwrap();
        txn.commit().unwrap();
        let error = prepare(&storage, "the data directory \"/d\"")
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("BadState: "), "{error}");
        assert!(!error.contains("corrupt"), "{error}");
        for part in [
            "the data directory \"/d\"",
            &format!("format {}", CURRENT + 1),
            &format!("this build's format {CURRENT}"),
            "newer build",
        ] {
            assert!(error.contains(part), "{part:?} missing: {error}");
        }
        assert_eq!(
            found(storage.read().unwrap().as_ref()).unwrap(),
            Found::At(CURRENT + 1)
        );
    }

    #[test]
    fn a_store_opens_at_the_current_format() {
        let storage = Arc::new(MemoryStorage::new());
        let _store = crate::store::Store::open(storage.clone(), crate::env::Env::system()).unwrap();
        assert_eq!(
            found(storage.read().unwrap().as_ref()).unwrap(),
            Found::At(CURRENT)
        );
    }

    #[test]
    fn every_format_before_the_current_has_a_step() {
        assert_eq!(STEPS.len() as u32, CURRENT - UNVERSIONED);
    }
}
