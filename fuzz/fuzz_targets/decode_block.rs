//! Decoding arbitrary bytes as a Block never panics; accepted bytes are canonical.
#![no_main]

use cairn_primitives::encoding::{decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = decode::<cairn_primitives::Block>(data) {
        assert_eq!(encode(&v), data, "accepted bytes must re-encode identically");
    }
});
