//! Loading arbitrary text as a genesis file never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|s: &str| {
    let _ = cairn_consensus::ChainParams::from_genesis_json(s);
});
