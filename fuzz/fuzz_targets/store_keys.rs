//! Fuzz target: the storage key encodings. Raw bytes go to the key decoding the store does
//! (`syncbase::fuzzing::store_key_bytes`); the same bytes, read as structured key parts,
//! must round-trip encode -> decode (`syncbase::fuzzing::store_keys_round_trip`).
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use syncbase::fuzzing::{KeyParts, store_key_bytes, store_keys_round_trip};

#[derive(Debug, Arbitrary)]
struct Parts {
    db: String,
    table: String,
    row: String,
    version: u64,
    position: u64,
    device: u64,
    generation: u64,
    sequence: u64,
    syncgroup: u64,
    other: u64,
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    store_key_bytes(data);
    if let Ok(parts) = Parts::arbitrary_take_rest(Unstructured::new(data)) {
        store_keys_round_trip(&KeyParts {
            db: parts.db,
            table: parts.table,
            row: parts.row,
            version: parts.version,
            position: parts.position,
            device: parts.device,
            generation: parts.generation,
            sequence: parts.sequence,
            syncgroup: parts.syncgroup,
            other: parts.other,
        });
    }
});
