//! Loading arbitrary bytes as a mempool file never panics: it is an error or a list of
//! transactions.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("cairn-fuzz-mempool-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("mempool.dat");
    if std::fs::write(&path, data).is_ok() {
        let _ = cairn_mempool::Mempool::load(&path);
    }
});
