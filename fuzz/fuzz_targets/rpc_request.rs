//! Any request body goes through the RPC's request handling (JSON-RPC 1.0 upgrade, batch
//! classification, every typed parameter getter) without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cairn_rpc::fuzz::request(data);
});
