//! Parsing arbitrary text as an amount never panics; a parsed amount formats and parses back.
#![no_main]

use cairn_primitives::Amount;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|s: &str| {
    if let Ok(a) = Amount::parse_coins(s) {
        assert_eq!(Amount::parse_coins(&a.to_coin_string()), Ok(a));
    }
});
