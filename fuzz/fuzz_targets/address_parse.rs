//! Parsing arbitrary text as an address never panics; a parsed address re-encodes to the input.
#![no_main]

use cairn_primitives::Address;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|s: &str| {
    if let Ok(a) = Address::parse(s, "cdev") {
        assert_eq!(a.encode("cdev").ok().as_deref(), Some(s.to_lowercase().as_str()));
    }
});
