//! Generation vectors and knowledge (reference §1.2, §2.3, §2.7): [`DeviceId`] and
//! [`Generation`], the per-scope vector [`GenVector`] (V2015 `PrefixGenVector`) with its
//! comparison and merge, the data [`Scope`] (a table and a row-key prefix) with its wire form,
//! and [`Knowledge`] (V2015 `GenVector`: scope -> vector), with the rules the sync engine needs:
//! the bound a node knows for a scope, the vectors an initiator sends, the merge of a
//! responder's knowledge after a round, and the per-record filter. Pure data, no I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Bound;

use serde::{Deserialize, Serialize};

/// The byte joining a scope's table and prefix in its wire form; it never occurs in UTF-8.
const SEPARATOR: u8 = 0xfe;

/// A node's persistent random 64-bit device id (never 0). Its low 48 bits are the node's
/// *lineage*, kept by every epoch (a move to a fresh device id after a restore or copy, see
/// `store::epoch`), which draws only new high [`EPOCH_BITS`] bits; syncgroups bind a member
/// to the lineage of the device it joined with, so its records stay its own across epochs.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct DeviceId(pub u64);

/// The high bits of a device id that an epoch changes.
pub const EPOCH_BITS: u32 = 16;

/// The bits of a device id every epoch keeps.
const LINEAGE_MASK: u64 = u64::MAX >> EPOCH_BITS;

impl DeviceId {
    /// The bits every epoch of this node's device id shares.
    pub fn lineage(self) -> u64 {
        self.0 & LINEAGE_MASK
    }

    /// Whether `other` is this device or another epoch of the same node.
    pub fn same_lineage(self, other: DeviceId) -> bool {
        self.lineage() == other.lineage()
    }

    /// The device id of the same lineage with `epoch` as its high bits.
    pub fn with_epoch(self, epoch: u16) -> DeviceId {
        DeviceId(self.lineage() | (u64::from(epoch) << (64 - EPOCH_BITS)))
    }
}

/// A generation number of one device in one database: the device's count of the records it
/// made there (its first is 1; [`Generation::NONE`], 0, means "none yet"). A distinct type so
/// a generation is never taken for a log position, a version, a count or a device id; it
/// becomes a `u64` only at the storage key and wire edges ([`Generation::get`],
/// [`Generation::new`]). Stored and sent as a plain `u64` (serde transparent), so encodings
/// are those of the former `u64` alias.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Generation(u64);

impl Generation {
    /// No generation: a device that has made no record (a vector's missing entry).
    pub const NONE: Generation = Generation(0);
    /// A device's first generation.
    pub const FIRST: Generation = Generation(1);
    /// The highest generation: "no bound".
    pub const MAX: Generation = Generation(u64::MAX);

    /// The generation numbered `value`, as read from a storage key or the wire.
    pub const fn new(value: u64) -> Generation {
        Generation(value)
    }

    /// The number, for a storage key or the wire.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// Whether this is [`Generation::NONE`].
    pub const fn is_none(self) -> bool {
        self.0 == 0
    }

    /// The generation after this one (saturates at [`Generation::MAX`], never wraps to
    /// `NONE`; 2^64 records are out of reach).
    pub const fn next(self) -> Generation {
        Generation(self.0.saturating_add(1))
    }

    /// The generation before this one ([`Generation::NONE`] stays `NONE`).
    pub const fn previous(self) -> Generation {
        Generation(self.0.saturating_sub(1))
    }
}

/// Shows the number, e.g. `7`.
impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// V2015 `PrefixGenVector`: device -> highest generation known. A missing device counts as 0;
/// entries equal to 0 are never stored (so equal vectors have equal maps).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "BTreeMap<DeviceId, Generation>")]
pub struct GenVector(BTreeMap<DeviceId, Generation>);

/// Result of comparing two vectors (reference `Compare`: 0, -1, +1, +2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VectorOrder {
    /// Every entry is equal (reference 0).
    Equal,
    /// No entry is greater and at least one is smaller (reference -1).
    Less,
    /// No entry is smaller and at least one is greater (reference +1).
    Greater,
    /// Some entry is smaller and another greater: not comparable (reference +2).
    Concurrent,
}

impl VectorOrder {
    /// The order seen from the other side: `a.compare(b)` is `b.compare(a).reverse()`.
    pub fn reverse(self) -> VectorOrder {
        match self {
            VectorOrder::Less => VectorOrder::Greater,
            VectorOrder::Greater => VectorOrder::Less,
            other => other,
        }
    }
}

impl GenVector {
    /// An empty vector: every device at [`Generation::NONE`].
    pub fn new() -> Self {
        GenVector(BTreeMap::new())
    }

    /// The generation known for `device` ([`Generation::NONE`] if none).
    pub fn get(&self, device: DeviceId) -> Generation {
        self.0.get(&device).copied().unwrap_or_default()
    }

    /// Sets the generation of `device`; [`Generation::NONE`] removes its entry.
    pub fn set(&mut self, device: DeviceId, generation: Generation) {
        if generation.is_none() {
            self.0.remove(&device);
        } else {
            self.0.insert(device, generation);
        }
    }

    /// Raises the generation of `device` to at least `generation` (never lowers it).
    pub fn raise(&mut self, device: DeviceId, generation: Generation) {
        if generation > self.get(device) {
            self.0.insert(device, generation);
        }
    }

    /// Element-wise max with `other`: afterwards this vector dominates both.
    pub fn merge(&mut self, other: &GenVector) {
        for (device, generation) in other.iter() {
            self.raise(device, generation);
        }
    }

    /// The stored (non-zero) entries, in device order.
    pub fn iter(&self) -> impl Iterator<Item = (DeviceId, Generation)> + '_ {
        self.0
            .iter()
            .map(|(device, generation)| (*device, *generation))
    }

    /// Whether every device is at 0.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The number of devices with a non-zero generation.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Compares two vectors entry by entry, a missing entry counting as 0 (reference §1.2).
    pub fn compare(&self, other: &GenVector) -> VectorOrder {
        let devices: BTreeSet<DeviceId> = self.0.keys().chain(other.0.keys()).copied().collect();
        let mut less = false;
        let mut greater = false;
        for device in devices {
            let (mine, theirs) = (self.get(device), other.get(device));
            less |= mine < theirs;
            greater |= mine > theirs;
        }
        match (less, greater) {
            (false, false) => VectorOrder::Equal,
            (true, false) => VectorOrder::Less,
            (false, true) => VectorOrder::Greater,
            (true, true) => VectorOrder::Concurrent,
        }
    }

    /// The element-wise minimum: what both vectors know (a device missing from either is
    /// dropped, as known up to nothing).
    pub fn meet(&self, other: &GenVector) -> GenVector {
        self.iter()
            .map(|(device, generation)| (device, generation.min(other.get(device))))
            .collect()
    }

    /// Whether this vector knows at least everything `other` knows (compare is Equal or Greater).
    pub fn dominates(&self, other: &GenVector) -> bool {
        other
            .iter()
            .all(|(device, generation)| self.get(device) >= generation)
    }
}

/// Builds a vector from entries; zeros are dropped and a repeated device keeps its highest
/// generation.
impl FromIterator<(DeviceId, Generation)> for GenVector {
    fn from_iter<I: IntoIterator<Item = (DeviceId, Generation)>>(entries: I) -> Self {
        let mut vector = GenVector::new();
        for (device, generation) in entries {
            vector.raise(device, generation);
        }
        vector
    }
}

/// Builds a vector from a map, dropping zero entries (used when deserialising, so a decoded
/// vector keeps the no-zeros invariant).
impl From<BTreeMap<DeviceId, Generation>> for GenVector {
    fn from(map: BTreeMap<DeviceId, Generation>) -> Self {
        map.into_iter().collect()
    }
}

/// A data scope: a table and a row-key prefix ("" = whole table). Ordered by (table, prefix).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Scope {
    /// The table the scope lies in.
    pub table: String,
    /// The row-key prefix; "" covers the whole table.
    pub prefix: String,
}

/// Why bytes are not the wire form of a [`Scope`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// No 0xfe byte separates the table from the prefix.
    #[error("scope key has no 0xfe separator between table and prefix")]
    MissingSeparator,
    /// More than one 0xfe byte.
    #[error("scope key has {0} 0xfe separators, expected exactly one")]
    ExtraSeparator(usize),
    /// The table part is empty.
    #[error("scope key has an empty table name")]
    EmptyTable,
    /// A part is not UTF-8.
    #[error("scope key's {part} is not valid UTF-8")]
    NotUtf8 {
        /// Which part: "table" or "prefix".
        part: &'static str,
    },
}

impl Scope {
    /// A scope of `table` rows whose keys start with `prefix`.
    pub fn new(table: impl Into<String>, prefix: impl Into<String>) -> Self {
        Scope {
            table: table.into(),
            prefix: prefix.into(),
        }
    }

    /// Whether the row `row` of `table` lies in this scope.
    pub fn covers(&self, table: &str, row: &str) -> bool {
        self.table == table && row.starts_with(&self.prefix)
    }

    /// Whether every row of `inner` lies in this scope (a scope contains itself).
    pub fn contains(&self, inner: &Scope) -> bool {
        self.table == inner.table && inner.prefix.starts_with(&self.prefix)
    }

    /// The wire form: table, 0xfe, prefix (reference §1.2).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.table.len() + 1 + self.prefix.len());
        bytes.extend_from_slice(self.table.as_bytes());
        bytes.push(SEPARATOR);
        bytes.extend_from_slice(self.prefix.as_bytes());
        bytes
    }

    /// Parses the wire form: exactly one 0xfe, both parts UTF-8, a non-empty table.
    pub fn from_bytes(bytes: &[u8]) -> Result<Scope, ScopeError> {
        let separators = bytes.iter().filter(|&&byte| byte == SEPARATOR).count();
        if separators > 1 {
            return Err(ScopeError::ExtraSeparator(separators));
        }
        let (table, prefix) = bytes
            .iter()
            .position(|&byte| byte == SEPARATOR)
            .map(|at| (&bytes[..at], &bytes[at + 1..]))
            .ok_or(ScopeError::MissingSeparator)?;
        if table.is_empty() {
            return Err(ScopeError::EmptyTable);
        }
        Ok(Scope::new(utf8(table, "table")?, utf8(prefix, "prefix")?))
    }

    /// The whole-table scope of this scope's table: the first key any scope of it can have.
    fn table_start(&self) -> Scope {
        Scope::new(self.table.clone(), "")
    }
}

fn utf8(bytes: &[u8], part: &'static str) -> Result<String, ScopeError> {
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|_| ScopeError::NotUtf8 { part })
}

/// Shows `table:prefix`, e.g. `photos:2024/` (a `/` would be ambiguous with row keys).
/// `TABLE` for a whole table, `TABLE/PREFIX` otherwise: the form `--prefix` takes
/// (`sync::peers::parse_scope` reads it back), in messages and logs as on the command line.
impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "{}", self.table)
        } else {
            write!(f, "{}/{}", self.table, self.prefix)
        }
    }
}

/// V2015 `GenVector`: scope -> vector; a node's knowledge of one database.
///
/// Knowledge of a scope is knowledge of every row in it, so a scope's vector also bounds what
/// the node knows of every scope nested inside it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Knowledge(BTreeMap<Scope, GenVector>);

impl Knowledge {
    /// No knowledge at all.
    pub fn new() -> Self {
        Knowledge(BTreeMap::new())
    }

    /// The vector stored for exactly `scope`.
    pub fn get(&self, scope: &Scope) -> Option<&GenVector> {
        self.0.get(scope)
    }

    /// Stores `vector` for `scope`, replacing any previous one.
    pub fn insert(&mut self, scope: Scope, vector: GenVector) {
        self.0.insert(scope, vector);
    }

    /// The stored scopes and their vectors, in scope order.
    pub fn iter(&self) -> impl Iterator<Item = (&Scope, &GenVector)> {
        self.0.iter()
    }

    /// Whether no scope is stored.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The number of stored scopes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The vector that bounds what this node knows under `scope`: the vector of the deepest
    /// stored scope that contains `scope` (itself if stored), or empty if none does.
    pub fn bound_for(&self, scope: &Scope) -> GenVector {
        // A containing scope's prefix is a prefix of `scope.prefix`, so it sorts between the
        // table's start and `scope`; the deepest one is the last such.
        self.0
            .range(scope.table_start()..=scope.clone())
            .rev()
            .find(|(stored, _)| stored.contains(scope))
            .map(|(_, vector)| vector.clone())
            .unwrap_or_default()
    }

    /// Stored scopes nested under `scope` (including `scope` itself if stored).
    pub fn nested_under<'a>(
        &'a self,
        scope: &'a Scope,
    ) -> impl Iterator<Item = (&'a Scope, &'a GenVector)> + 'a {
        // Scopes whose prefix starts with `scope.prefix` sort contiguously from `scope` on.
        self.0
            .range((Bound::Included(scope), Bound::Unbounded))
            .take_while(move |(stored, _)| scope.contains(stored))
    }

    /// The knowledge an initiator sends for the scopes it syncs (reference §2.4 step 5): for
    /// each requested scope P: P -> bound_for(P) merged with {self_device: self_gen}, plus
    /// every stored scope nested under P with its vector also raised by
    /// {self_device: self_gen}.
    ///
    /// With `self_gen` at [`Generation::NONE`] (nothing written yet) no self entry appears,
    /// since a vector never stores zeros.
    pub fn request_for(
        &self,
        scopes: &[Scope],
        self_device: DeviceId,
        self_gen: Generation,
    ) -> Knowledge {
        let mut request = Knowledge::new();
        for scope in scopes {
            let mut bound = self.bound_for(scope);
            bound.raise(self_device, self_gen);
            request.insert(scope.clone(), bound);
            for (nested, vector) in self.nested_under(scope) {
                let mut vector = vector.clone();
                vector.raise(self_device, self_gen);
                request.insert(nested.clone(), vector);
            }
        }
        request
    }

    /// Merges a responder's knowledge after a round (reference §2.7): for each scope R in
    /// `response`, element-wise max of R's vector into every stored scope nested under R, and
    /// R is added (starting from bound_for(R), then merged) if it is missing.
    ///
    /// A node that lacks R but stores an ancestor scope A (containing R) already knows at
    /// least A's vector for every row of R, so a newly added R starts from bound_for(R), not
    /// from empty: its vector is bound_for(R) merged with the response vector. Response
    /// scopes are taken outermost first (scope order), so an added R also reflects a
    /// response scope containing it. The self entry is left as it is; removing it (§2.7) is
    /// the caller's job.
    pub fn merge_response(&mut self, response: &Knowledge) {
        for (scope, vector) in response.iter() {
            if !self.0.contains_key(scope) {
                let bound = self.bound_for(scope);
                self.0.insert(scope.clone(), bound);
            }
            self.0
                .range_mut(scope.clone()..)
                .take_while(|(stored, _)| scope.contains(stored))
                .for_each(|(_, stored)| stored.merge(vector));
        }
    }

    /// The highest generation known for `device` over the scopes covering (table, row): the
    /// max of get(device) over every stored scope that covers the row. Used to filter records.
    pub fn known_gen(&self, table: &str, row: &str, device: DeviceId) -> Generation {
        // A covering scope's prefix is a prefix of `row`, so it sorts at or before (table, row).
        let start = Scope::new(table, "");
        let end = Scope::new(table, row);
        self.0
            .range(start..=end)
            .filter(|(scope, _)| scope.covers(table, row))
            .map(|(_, vector)| vector.get(device))
            .max()
            .unwrap_or_default()
    }

    /// The first scope of `asked` (with the device, what `asked` knows of it and the
    /// floor's generation) where this knowledge, taken as a collection floor, is above what
    /// `asked` knows. None when `asked` covers the floor everywhere. Each floor vector is
    /// held against what `asked` knows of the rows it covers: a floor stored under a nested
    /// scope against `asked`'s deepest scope containing it, so an initiator that asks for a
    /// table and, apart, for a prefix of it (a declared peer and a syncgroup) is covered
    /// under the prefix by what it knows there (issue 12's break test: two peers sharing a
    /// table refused each other for ever once a prefix's history was collected).
    pub fn first_above(
        &self,
        asked: &Knowledge,
    ) -> Option<(Scope, DeviceId, Generation, Generation)> {
        asked.iter().find_map(|(scope, known)| {
            let nested = self
                .nested_under(scope)
                .map(|(under, floor)| (floor.clone(), asked.bound_for(under)));
            std::iter::once((self.bound_for(scope), known.clone()))
                .chain(nested)
                .find_map(|(floor, known)| {
                    floor
                        .iter()
                        .find(|(device, generation)| known.get(*device) < *generation)
                        .map(|(device, generation)| {
                            (scope.clone(), device, known.get(device), generation)
                        })
                })
        })
    }

    /// The highest generation of `device` any scope knows.
    pub fn max_gen(&self, device: DeviceId) -> Generation {
        self.0
            .values()
            .map(|vector| vector.get(device))
            .max()
            .unwrap_or_default()
    }

    /// Every device mentioned anywhere.
    pub fn devices(&self) -> BTreeSet<DeviceId> {
        self.0
            .values()
            .flat_map(|vector| vector.iter().map(|(device, _)| device))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const A: DeviceId = DeviceId(1);
    const B: DeviceId = DeviceId(2);
    const C: DeviceId = DeviceId(3);
    const D: DeviceId = DeviceId(4);
    const ME: DeviceId = DeviceId(9);

    /// A generation in a test: `g(3)`.
    fn g(number: u64) -> Generation {
        Generation::new(number)
    }

    fn vector(entries: &[(DeviceId, u64)]) -> GenVector {
        entries
            .iter()
            .map(|&(device, number)| (device, g(number)))
            .collect()
    }

    fn scope(table: &str, prefix: &str) -> Scope {
        Scope::new(table, prefix)
    }

    fn knowledge(entries: &[(Scope, GenVector)]) -> Knowledge {
        let mut knowledge = Knowledge::new();
        for (scope, vector) in entries {
            knowledge.insert(scope.clone(), vector.clone());
        }
        knowledge
    }

    // ---- Generation ----

    #[test]
    fn the_meet_of_two_vectors_keeps_what_both_know() {
        let a: GenVector = [(A, Generation::new(3)), (B, Generation::new(9))]
            .into_iter()
            .collect();
        let b: GenVector = [(B, Generation::new(4))].into_iter().collect();
        let meet: GenVector = [(B, Generation::new(4))].into_iter().collect();
        assert_eq!(a.meet(&b), meet);
        assert_eq!(b.meet(&a), meet);
    }

    #[test]
    fn a_floor_under_a_nested_scope_is_above_knowledge_of_the_outer_scope() {
        let mut floor = Knowledge::new();
        floor.insert(
            Scope::new("t", "a"),
            [(B, Generation::new(7))].into_iter().collect(),
        );
        let mut asked = Knowledge::new();
        asked.insert(
            Scope::new("t", ""),
            [(B, Generation::new(5))].into_iter().collect(),
        );
        assert_eq!(
            floor.first_above(&asked),
            Some((
                Scope::new("t", ""),
                B,
                Generation::new(5),
                Generation::new(7)
            ))
        );
        asked.insert(
            Scope::new("t", ""),
            [(B, Generation::new(7))].into_iter().collect(),
        );
        assert_eq!(floor.first_above(&asked), None);
    }

    #[test]
    fn a_floor_under_a_nested_scope_is_covered_by_knowledge_of_that_scope() {
        let mut floor = Knowledge::new();
        floor.insert(
            Scope::new("t", "a"),
            [(B, Generation::new(7))].into_iter().collect(),
        );
        let mut asked = Knowledge::new();
        asked.insert(
            Scope::new("t", ""),
            [(B, Generation::new(0))].into_iter().collect(),
        );
        asked.insert(
            Scope::new("t", "a"),
            [(B, Generation::new(7))].into_iter().collect(),
        );
        assert_eq!(
            floor.first_above(&asked),
            None,
            "t:a covers the rows under it"
        );
        asked.insert(
            Scope::new("t", "a"),
            [(B, Generation::new(6))].into_iter().collect(),
        );
        assert_eq!(
            floor
                .first_above(&asked)
                .map(|(_, _, known, at)| (known, at)),
            Some((Generation::new(6), Generation::new(7)))
        );
    }

    #[test]
    fn a_generation_steps_without_wrapping() {
        assert_eq!(Generation::NONE.next(), Generation::FIRST);
        assert_eq!(g(7).next(), g(8));
        assert_eq!(g(7).previous(), g(6));
        assert_eq!(Generation::FIRST.previous(), Generation::NONE);
        assert_eq!(Generation::NONE.previous(), Generation::NONE);
        assert_eq!(Generation::MAX.next(), Generation::MAX);
        assert!(Generation::NONE.is_none() && !Generation::FIRST.is_none());
        assert_eq!(Generation::default(), Generation::NONE);
        assert_eq!(g(300).get(), 300);
        assert_eq!(g(300).to_string(), "300");
        assert!(g(2) < g(10), "ordered by number");
    }

    #[test]
    fn a_generation_encodes_as_its_number() {
        let encoded = postcard::to_stdvec(&g(300)).expect("encode");
        assert_eq!(encoded, postcard::to_stdvec(&300u64).expect("encode"));
        assert_eq!(postcard::from_bytes::<Generation>(&encoded), Ok(g(300)));
    }

    // ---- GenVector ----

    #[test]
    fn missing_entries_count_as_zero() {
        let mut zero = GenVector::new();
        zero.set(A, g(0));
        assert_eq!(zero, GenVector::new());
        assert_eq!(vector(&[(A, 0)]), GenVector::new());
        assert_eq!(
            vector(&[(A, 0)]).compare(&GenVector::new()),
            VectorOrder::Equal
        );
        assert_eq!(GenVector::new().get(A), g(0));
    }

    #[test]
    fn empty_vectors_are_equal() {
        assert_eq!(
            GenVector::new().compare(&GenVector::new()),
            VectorOrder::Equal
        );
        assert!(GenVector::new().dominates(&GenVector::new()));
    }

    #[test]
    fn reference_diff_example_is_concurrent() {
        let init = vector(&[(A, 10), (B, 5), (C, 1)]);
        let resp = vector(&[(A, 5), (B, 10), (D, 2)]);
        assert_eq!(init.compare(&resp), VectorOrder::Concurrent);
        assert_eq!(resp.compare(&init), VectorOrder::Concurrent);
        assert!(!init.dominates(&resp));
    }

    #[test]
    fn compare_less_and_greater() {
        let small = vector(&[(A, 1)]);
        let big = vector(&[(A, 2), (B, 1)]);
        assert_eq!(small.compare(&big), VectorOrder::Less);
        assert_eq!(big.compare(&small), VectorOrder::Greater);
        assert!(big.dominates(&small));
        assert!(!small.dominates(&big));
        assert_eq!(GenVector::new().compare(&small), VectorOrder::Less);
    }

    #[test]
    fn set_raise_and_merge() {
        let mut v = GenVector::new();
        v.set(A, g(5));
        v.raise(A, g(3));
        assert_eq!(v.get(A), g(5));
        v.raise(A, g(7));
        assert_eq!(v.get(A), g(7));
        v.set(A, g(2));
        assert_eq!(v.get(A), g(2));
        v.set(A, g(0));
        assert!(v.is_empty());

        let mut left = vector(&[(A, 10), (B, 5), (C, 1)]);
        left.merge(&vector(&[(A, 5), (B, 10), (D, 2)]));
        assert_eq!(left, vector(&[(A, 10), (B, 10), (C, 1), (D, 2)]));
        assert_eq!(left.len(), 4);
        assert_eq!(
            left.iter().collect::<Vec<_>>(),
            vec![(A, g(10)), (B, g(10)), (C, g(1)), (D, g(2))]
        );
    }

    #[test]
    fn from_iter_keeps_highest_and_drops_zeros() {
        let v = vector(&[(A, 3), (A, 1), (B, 0)]);
        assert_eq!(v.iter().collect::<Vec<_>>(), vec![(A, g(3))]);
        let from_map = GenVector::from(BTreeMap::from([(A, g(0)), (B, g(4))]));
        assert_eq!(from_map, vector(&[(B, 4)]));
    }

    #[test]
    fn decoding_drops_zero_entries() {
        let raw: BTreeMap<DeviceId, Generation> = BTreeMap::from([(A, g(0)), (B, g(4))]);
        let bytes = postcard::to_stdvec(&raw).expect("encode");
        let decoded: GenVector = postcard::from_bytes(&bytes).expect("decode");
        assert_eq!(decoded, vector(&[(B, 4)]));
    }

    #[test]
    fn knowledge_postcard_round_trip() {
        let k = knowledge(&[
            (scope("t", ""), vector(&[(A, 1)])),
            (scope("t", "a"), vector(&[(A, 2), (B, 3)])),
        ]);
        let bytes = postcard::to_stdvec(&k).expect("encode");
        let decoded: Knowledge = postcard::from_bytes(&bytes).expect("decode");
        assert_eq!(decoded, k);
    }

    // ---- Scope ----

    #[test]
    fn scope_covers_and_contains() {
        let photos = scope("photos", "2024/");
        assert!(photos.covers("photos", "2024/01.jpg"));
        assert!(photos.covers("photos", "2024/"));
        assert!(!photos.covers("photos", "2023/01.jpg"));
        assert!(!photos.covers("videos", "2024/01.jpg"));
        assert!(scope("photos", "").covers("photos", "anything"));

        assert!(photos.contains(&photos));
        assert!(photos.contains(&scope("photos", "2024/06")));
        assert!(!photos.contains(&scope("photos", "2024")));
        assert!(!photos.contains(&scope("videos", "2024/")));
        assert!(scope("photos", "").contains(&photos));
    }

    #[test]
    fn scope_wire_form() {
        let photos = scope("photos", "2024/");
        assert_eq!(photos.to_bytes(), b"photos\xfe2024/".to_vec());
        assert_eq!(Scope::from_bytes(&photos.to_bytes()), Ok(photos));
        assert_eq!(Scope::from_bytes(b"t\xfe"), Ok(scope("t", "")));
    }

    #[test]
    fn scope_wire_form_errors() {
        assert_eq!(
            Scope::from_bytes(b"photos"),
            Err(ScopeError::MissingSeparator)
        );
        assert_eq!(
            Scope::from_bytes(b"a\xfeb\xfec"),
            Err(ScopeError::ExtraSeparator(2))
        );
        assert_eq!(Scope::from_bytes(b"\xfeabc"), Err(ScopeError::EmptyTable));
        assert_eq!(
            Scope::from_bytes(b"\xff\xfeabc"),
            Err(ScopeError::NotUtf8 { part: "table" })
        );
        assert_eq!(
            Scope::from_bytes(b"t\xfe\xc3"),
            Err(ScopeError::NotUtf8 { part: "prefix" })
        );
        let message = ScopeError::NotUtf8 { part: "prefix" }.to_string();
        assert!(message.contains("prefix"), "{message}");
    }

    #[test]
    fn scope_display_and_order() {
        assert_eq!(scope("photos", "2024/").to_string(), "photos/2024/");
        assert_eq!(scope("photos", "").to_string(), "photos");
        assert!(scope("a", "z") < scope("b", ""));
        assert!(scope("a", "") < scope("a", "a"));
    }

    // ---- Knowledge ----

    #[test]
    fn knowledge_basics() {
        let mut k = Knowledge::new();
        assert!(k.is_empty());
        k.insert(scope("t", ""), vector(&[(A, 1)]));
        k.insert(scope("t", ""), vector(&[(A, 2)]));
        assert_eq!(k.len(), 1);
        assert_eq!(k.get(&scope("t", "")), Some(&vector(&[(A, 2)])));
        assert_eq!(k.get(&scope("t", "x")), None);
        assert_eq!(k.iter().count(), 1);
    }

    #[test]
    fn bound_for_picks_the_deepest_container() {
        let k = knowledge(&[
            (scope("t", ""), vector(&[(A, 1)])),
            (scope("t", "a"), vector(&[(A, 2)])),
            (scope("t", "ab"), vector(&[(A, 3)])),
            (scope("t", "ac"), vector(&[(A, 4)])),
            (scope("u", "abc"), vector(&[(A, 5)])),
        ]);
        assert_eq!(k.bound_for(&scope("t", "ab")), vector(&[(A, 3)]));
        assert_eq!(k.bound_for(&scope("t", "abz")), vector(&[(A, 3)]));
        assert_eq!(k.bound_for(&scope("t", "aa")), vector(&[(A, 2)]));
        assert_eq!(k.bound_for(&scope("t", "b")), vector(&[(A, 1)]));
        assert_eq!(k.bound_for(&scope("u", "ab")), GenVector::new());
        assert_eq!(k.bound_for(&scope("v", "")), GenVector::new());
    }

    #[test]
    fn nested_under_lists_scope_and_descendants() {
        let k = knowledge(&[
            (scope("t", ""), vector(&[(A, 1)])),
            (scope("t", "a"), vector(&[(A, 2)])),
            (scope("t", "ab"), vector(&[(A, 3)])),
            (scope("t", "b"), vector(&[(A, 4)])),
            (scope("u", "a"), vector(&[(A, 5)])),
        ]);
        let under_a = scope("t", "a");
        let nested: Vec<&Scope> = k.nested_under(&under_a).map(|(s, _)| s).collect();
        assert_eq!(nested, vec![&scope("t", "a"), &scope("t", "ab")]);
        let whole = scope("t", "");
        assert_eq!(k.nested_under(&whole).count(), 4);
        let missing = scope("t", "c");
        assert_eq!(k.nested_under(&missing).count(), 0);
    }

    #[test]
    fn an_epoch_keeps_a_devices_lineage_and_changes_its_id() {
        let device = DeviceId(0xabcd_1234_5678_9abc);
        let next = device.with_epoch(7);
        assert_eq!(next, DeviceId(0x0007_1234_5678_9abc));
        assert!(next.same_lineage(device) && next != device);
        assert!(
            !DeviceId(1).same_lineage(DeviceId(2)),
            "small test ids stay distinct"
        );
    }

    #[test]
    fn request_for_sends_bound_and_nested_scopes() {
        let k = knowledge(&[
            (scope("t", ""), vector(&[(A, 1)])),
            (scope("t", "ab"), vector(&[(A, 3), (ME, 2)])),
            (scope("t", "b"), vector(&[(B, 4)])),
        ]);
        let request = k.request_for(&[scope("t", "a"), scope("u", "")], ME, g(7));
        let expected = knowledge(&[
            (scope("t", "a"), vector(&[(A, 1), (ME, 7)])),
            (scope("t", "ab"), vector(&[(A, 3), (ME, 7)])),
            (scope("u", ""), vector(&[(ME, 7)])),
        ]);
        assert_eq!(request, expected);
    }

    #[test]
    fn merge_response_raises_nested_and_adds_missing_from_bound() {
        let mut k = knowledge(&[
            (scope("t", ""), vector(&[(A, 5), (B, 1)])),
            (scope("t", "ab"), vector(&[(A, 7)])),
            (scope("t", "b"), vector(&[(C, 9)])),
        ]);
        let response = knowledge(&[(scope("t", "a"), vector(&[(A, 6), (B, 2), (D, 1)]))]);
        k.merge_response(&response);
        let expected = knowledge(&[
            (scope("t", ""), vector(&[(A, 5), (B, 1)])),
            // Added: bound_for(t:a) = t:'s vector, merged with the response.
            (scope("t", "a"), vector(&[(A, 6), (B, 2), (D, 1)])),
            (scope("t", "ab"), vector(&[(A, 7), (B, 2), (D, 1)])),
            (scope("t", "b"), vector(&[(C, 9)])),
        ]);
        assert_eq!(k, expected);
    }

    #[test]
    fn merge_response_added_scope_keeps_ancestor_knowledge() {
        let mut k = knowledge(&[(scope("t", ""), vector(&[(A, 10)]))]);
        k.merge_response(&knowledge(&[(scope("t", "x"), vector(&[(B, 3)]))]));
        assert_eq!(k.get(&scope("t", "x")), Some(&vector(&[(A, 10), (B, 3)])));
        assert_eq!(k.get(&scope("t", "")), Some(&vector(&[(A, 10)])));
    }

    #[test]
    fn known_gen_takes_max_over_covering_scopes() {
        let k = knowledge(&[
            (scope("t", ""), vector(&[(A, 5)])),
            (scope("t", "a"), vector(&[(A, 3), (B, 2)])),
            (scope("t", "ab"), vector(&[(B, 8)])),
            (scope("t", "b"), vector(&[(A, 9)])),
        ]);
        assert_eq!(k.known_gen("t", "abc", A), g(5));
        assert_eq!(k.known_gen("t", "abc", B), g(8));
        assert_eq!(k.known_gen("t", "ac", B), g(2));
        assert_eq!(k.known_gen("t", "b1", A), g(9));
        assert_eq!(k.known_gen("t", "c", A), g(5));
        assert_eq!(k.known_gen("u", "abc", A), g(0));
        assert_eq!(k.known_gen("t", "abc", C), g(0));
    }

    #[test]
    fn devices_lists_every_device() {
        let k = knowledge(&[
            (scope("t", ""), vector(&[(A, 5)])),
            (scope("u", "a"), vector(&[(B, 3), (C, 2)])),
        ]);
        assert_eq!(k.devices(), BTreeSet::from([A, B, C]));
        assert!(Knowledge::new().devices().is_empty());
    }

    // ---- properties ----

    fn any_vector() -> impl Strategy<Value = GenVector> {
        prop::collection::vec((1u64..=6, 0u64..=20), 0..=5).prop_map(|entries| {
            entries
                .into_iter()
                .map(|(d, n)| (DeviceId(d), g(n)))
                .collect()
        })
    }

    fn any_scope() -> impl Strategy<Value = Scope> {
        ("[tu]", "[ab]{0,3}").prop_map(|(table, prefix)| Scope::new(table, prefix))
    }

    fn any_knowledge() -> impl Strategy<Value = Knowledge> {
        prop::collection::vec((any_scope(), any_vector()), 0..=6)
            .prop_map(|entries| knowledge(&entries))
    }

    fn all_devices(vectors: &[&GenVector]) -> BTreeSet<DeviceId> {
        vectors
            .iter()
            .flat_map(|v| v.iter().map(|(device, _)| device))
            .collect()
    }

    fn pointwise(a: &GenVector, b: &GenVector) -> VectorOrder {
        let devices = all_devices(&[a, b]);
        let le = devices.iter().all(|&d| a.get(d) <= b.get(d));
        let ge = devices.iter().all(|&d| a.get(d) >= b.get(d));
        match (le, ge) {
            (true, true) => VectorOrder::Equal,
            (true, false) => VectorOrder::Less,
            (false, true) => VectorOrder::Greater,
            (false, false) => VectorOrder::Concurrent,
        }
    }

    fn merged(a: &GenVector, b: &GenVector) -> GenVector {
        let mut out = a.clone();
        out.merge(b);
        out
    }

    proptest! {
        #[test]
        fn compare_is_mirrored(a in any_vector(), b in any_vector()) {
            prop_assert_eq!(a.compare(&b), b.compare(&a).reverse());
        }

        #[test]
        fn compare_with_self_is_equal(a in any_vector()) {
            prop_assert_eq!(a.compare(&a), VectorOrder::Equal);
        }

        #[test]
        fn compare_agrees_with_pointwise(a in any_vector(), b in any_vector()) {
            prop_assert_eq!(a.compare(&b), pointwise(&a, &b));
            let dominates = matches!(a.compare(&b), VectorOrder::Equal | VectorOrder::Greater);
            prop_assert_eq!(a.dominates(&b), dominates);
            prop_assert_eq!(a.compare(&b) == VectorOrder::Equal, a == b);
        }

        #[test]
        fn merge_is_the_least_upper_bound(a in any_vector(), b in any_vector()) {
            let m = merged(&a, &b);
            prop_assert!(m.dominates(&a));
            prop_assert!(m.dominates(&b));
            for d in all_devices(&[&a, &b, &m]) {
                prop_assert_eq!(m.get(d), a.get(d).max(b.get(d)));
            }
            prop_assert!(m.iter().all(|(_, generation)| !generation.is_none()));
        }

        #[test]
        fn merge_is_commutative_associative_idempotent(
            a in any_vector(), b in any_vector(), c in any_vector()
        ) {
            prop_assert_eq!(merged(&a, &b), merged(&b, &a));
            prop_assert_eq!(merged(&merged(&a, &b), &c), merged(&a, &merged(&b, &c)));
            prop_assert_eq!(merged(&a, &a), a.clone());
        }

        #[test]
        fn merge_response_dominates_old_and_response(
            local in any_knowledge(), response in any_knowledge()
        ) {
            let mut after = local.clone();
            after.merge_response(&response);
            for (scope, vector) in after.iter() {
                prop_assert!(vector.dominates(&local.bound_for(scope)), "{} lost knowledge", scope);
                for (outer, remote) in response.iter().filter(|(r, _)| r.contains(scope)) {
                    prop_assert!(vector.dominates(remote), "{} misses {}", scope, outer);
                }
            }
            for (scope, _) in local.iter().chain(response.iter()) {
                prop_assert!(after.get(scope).is_some(), "{} missing", scope);
            }
        }

        #[test]
        fn request_for_covers_every_requested_scope(
            local in any_knowledge(),
            scopes in prop::collection::vec(any_scope(), 0..=4),
            self_gen in 1u64..=20,
        ) {
            let request = local.request_for(&scopes, ME, g(self_gen));
            for scope in &scopes {
                let sent = request.get(scope);
                prop_assert!(sent.is_some(), "{} not sent", scope);
                if let Some(sent) = sent {
                    prop_assert!(sent.get(ME) >= g(self_gen));
                    prop_assert!(sent.dominates(&local.bound_for(scope)));
                }
            }
            for (scope, vector) in request.iter() {
                prop_assert!(vector.get(ME) >= g(self_gen));
                prop_assert!(scopes.iter().any(|p| p.contains(scope)));
            }
        }

        #[test]
        fn known_gen_matches_a_linear_scan(
            k in any_knowledge(), table in "[tu]", row in "[ab]{0,4}", device in 1u64..=6
        ) {
            let expected = k
                .iter()
                .filter(|(s, _)| s.covers(&table, &row))
                .map(|(_, v)| v.get(DeviceId(device)))
                .max()
                .unwrap_or(g(0));
            prop_assert_eq!(k.known_gen(&table, &row, DeviceId(device)), expected);
        }

        #[test]
        fn bound_and_nested_match_a_linear_scan(k in any_knowledge(), s in any_scope()) {
            let deepest = k
                .iter()
                .filter(|(stored, _)| stored.contains(&s))
                .max_by_key(|(stored, _)| stored.prefix.len())
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            prop_assert_eq!(k.bound_for(&s), deepest);
            let nested: Vec<&Scope> = k.nested_under(&s).map(|(n, _)| n).collect();
            let expected: Vec<&Scope> =
                k.iter().map(|(n, _)| n).filter(|n| s.contains(n)).collect();
            prop_assert_eq!(nested, expected);
        }

        #[test]
        fn scope_bytes_round_trip(table in "\\PC{1,12}", prefix in "\\PC{0,12}") {
            let scope = Scope::new(table, prefix);
            prop_assert_eq!(Scope::from_bytes(&scope.to_bytes()), Ok(scope));
        }
    }
}
