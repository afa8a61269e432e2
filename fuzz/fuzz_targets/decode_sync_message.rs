//! Decoding arbitrary bytes as a sync request or response never panics; accepted bytes are
//! canonical.
#![no_main]

use cairn_p2p::{SyncRequest, SyncResponse};
use cairn_primitives::encoding::{decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = decode::<SyncRequest>(data) {
        assert_eq!(encode(&v), data);
    }
    if let Ok(v) = decode::<SyncResponse>(data) {
        assert_eq!(encode(&v), data);
    }
});
