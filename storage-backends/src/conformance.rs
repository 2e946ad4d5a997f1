//! The storage conformance suite: one body per property of the [`Storage`] contract, run
//! unchanged against every backend.
//!
//! Each property is a `pub fn name(store: &dyn Storage)` that expects a fresh, empty store
//! and panics with a message naming what broke. [`PROPERTIES`] lists them all;
//! [`run_all`] runs each on a fresh store; [`conformance_tests!`](crate::conformance_tests)
//! turns them into one `#[test]` per property for a backend:
//!
//! ```
//! // In a test file: `memory::put_get_overwrite_delete`, `memory::model_based`, ...
//! syncbase_storage::conformance_tests!(memory, || {
//!     (std::sync::Arc::new(syncbase_storage::MemoryStorage::new()), ())
//! });
//! # fn main() {}
//! ```
//!
//! The factory returns `(store, guard)`: `store` is any smart pointer to a backend
//! (`Arc<MemoryStorage>`, `Box<dyn Storage>`, ...), `guard` anything that must outlive it,
//! such as the temporary directory of an LMDB store. The store is dropped before the guard.
//! The suite uses only `std`, so it compiles into the library.
//!
//! The properties of a bounded store ([`BOUNDED`]) need a store opened with given
//! [`Limits`](crate::Limits): [`run_bounded`] runs each with a factory given them.

mod basic;
mod concurrency;
mod model;
mod room;
mod scans;

use std::ops::Deref;

pub use basic::{
    backend_name_is_registered, dropped_write_leaves_nothing, empty_key_and_value,
    error_mid_transaction_leaves_nothing, key_length_limit, large_values, put_get_overwrite_delete,
    write_reads_own_writes,
};
pub use concurrency::{
    concurrent_writers_serialise, readers_keep_their_snapshot, uncommitted_writes_are_invisible,
};
pub use model::model_based;
pub use room::{
    a_full_store_frees_and_writes_again, bounded_limits, freeing_writes_are_write_transactions,
    usage_follows_writes_and_deletes,
};
pub use scans::{prefix_scans, scan_boundaries, scan_stop_and_visitor_error};

use crate::{ReadTxn, Result, Scan, Storage};

/// A conformance property: panics if `store` (fresh and empty) breaks it.
pub type Property = fn(&dyn Storage);

/// Defines `$crate::conformance_tests!`'s test module or the [`PROPERTIES`] table from
/// the one list of property names, so the two cannot drift apart.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_properties {
    ($($what:tt)*) => {
        $crate::__conformance_expand! {
            [$($what)*]
            put_get_overwrite_delete
            key_length_limit
            empty_key_and_value
            large_values
            dropped_write_leaves_nothing
            error_mid_transaction_leaves_nothing
            write_reads_own_writes
            scan_boundaries
            prefix_scans
            scan_stop_and_visitor_error
            readers_keep_their_snapshot
            uncommitted_writes_are_invisible
            concurrent_writers_serialise
            model_based
            backend_name_is_registered
            usage_follows_writes_and_deletes
            freeing_writes_are_write_transactions
        }
    };
}

/// The properties of a store opened with [`bounded_limits`], with their names.
pub const BOUNDED: &[(&str, Property)] = &[(
    "a_full_store_frees_and_writes_again",
    a_full_store_frees_and_writes_again,
)];

/// Expands the property list for `__conformance_properties!`.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_expand {
    ([tests $module:ident, $factory:expr] $($property:ident)*) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;

            $(
                #[test]
                fn $property() {
                    $crate::conformance::run_one($factory, $crate::conformance::$property);
                }
            )*
        }
    };
    ([table] $($property:ident)*) => {
        /// Every property with its name, in the order [`run_all`] runs them.
        pub const PROPERTIES: &[(&str, Property)] = &[$((stringify!($property), $property)),*];
    };
}

/// Expands to `mod $module { ... }` holding one `#[test]` per conformance property; each
/// test calls `$factory` (a closure returning a fresh `(store, guard)`, see the
/// [module docs](crate::conformance)) and checks the property on that store.
///
/// The factory expression is evaluated inside the new module, which glob-imports its
/// parent (`use super::*`). Put `#[cfg(test)]` on the invocation inside library code.
#[macro_export]
macro_rules! conformance_tests {
    ($module:ident, $factory:expr $(,)?) => {
        $crate::__conformance_properties!(tests $module, $factory);
    };
}

__conformance_properties!(table);

/// Anything a factory's store can point to: a backend type or `dyn Storage`.
pub trait AsStorage {
    /// `self` as a trait object.
    fn as_storage(&self) -> &dyn Storage;
}

impl<T: Storage> AsStorage for T {
    fn as_storage(&self) -> &dyn Storage {
        self
    }
}

impl AsStorage for dyn Storage {
    fn as_storage(&self) -> &dyn Storage {
        self
    }
}

/// Checks `property` on a fresh store from `factory`, then drops the store and then the
/// guard.
pub fn run_one<S, G>(factory: impl FnOnce() -> (S, G), property: Property)
where
    S: Deref,
    S::Target: AsStorage,
{
    let (store, guard) = factory();
    property(store.as_storage());
    drop(store);
    drop(guard);
}

/// Checks every property in [`PROPERTIES`], each on a fresh store from `factory`.
pub fn run_all<S, G>(factory: impl Fn() -> (S, G))
where
    S: Deref,
    S::Target: AsStorage,
{
    for (_name, property) in PROPERTIES {
        run_one(&factory, *property);
    }
}

/// Checks every property in [`BOUNDED`], each on a fresh store from `factory`, which is
/// given [`bounded_limits`] and must open the store with them.
pub fn run_bounded<S, G>(factory: impl Fn(crate::Limits) -> (S, G))
where
    S: Deref,
    S::Target: AsStorage,
{
    for (name, property) in BOUNDED {
        eprintln!("bounded property {name}");
        run_one(|| factory(bounded_limits()), *property);
    }
}

/// An owned `(key, value)` pair, as scans are collected for comparison.
type Entry = (Vec<u8>, Vec<u8>);

/// `result`'s value, or a panic saying what failed and why.
fn ok<T>(result: Result<T>, what: &str) -> T {
    result.unwrap_or_else(|err| panic!("{what}: unexpected error: {err}"))
}

/// Commits one write transaction putting `entries`.
fn commit_puts(store: &dyn Storage, entries: &[(&[u8], &[u8])]) {
    let mut txn = ok(store.write(), "begin write");
    for (key, value) in entries {
        ok(txn.put(key, value), &format!("put {key:x?}"));
    }
    ok(txn.commit(), "commit");
}

/// The value at `key` in a fresh read transaction.
fn read_value(store: &dyn Storage, key: &[u8]) -> Option<Vec<u8>> {
    let txn = ok(store.read(), "begin read");
    ok(txn.get(key), &format!("get {key:x?}"))
}

/// Every entry of `txn` in `[start, end)`, in scan order.
fn collect<T: ReadTxn + ?Sized>(txn: &T, start: &[u8], end: Option<&[u8]>) -> Vec<Entry> {
    let mut entries = Vec::new();
    let scanned = txn.scan(start, end, &mut |key, value| {
        entries.push((key.to_vec(), value.to_vec()));
        Ok(Scan::Continue)
    });
    ok(scanned, &format!("scan from {start:x?} to {end:x?}"));
    entries
}

/// Every entry of `txn` whose key starts with `prefix`, in scan order.
fn collect_prefix<T: ReadTxn + ?Sized>(txn: &T, prefix: &[u8]) -> Vec<Entry> {
    let mut entries = Vec::new();
    let scanned = txn.scan_prefix(prefix, &mut |key, value| {
        entries.push((key.to_vec(), value.to_vec()));
        Ok(Scan::Continue)
    });
    ok(scanned, &format!("scan prefix {prefix:x?}"));
    entries
}

/// Every entry of the store, read through a fresh read transaction.
fn all_entries(store: &dyn Storage) -> Vec<Entry> {
    let txn = ok(store.read(), "begin read");
    collect(&*txn, &[], None)
}

/// Owned copies of `(key, value)` pairs, for comparing against scans.
fn owned(entries: &[(&[u8], &[u8])]) -> Vec<Entry> {
    entries
        .iter()
        .map(|(key, value)| (key.to_vec(), value.to_vec()))
        .collect()
}
