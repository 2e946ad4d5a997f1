//! Fuzz target: `syncbase::fuzzing::syncgroup_page` on arbitrary bytes (see its docs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = syncbase::fuzzing::syncgroup_page(data);
});
