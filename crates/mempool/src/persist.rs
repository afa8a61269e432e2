//! The pool file: `CAIRNMP1`, a count (u64 LE), then each transaction as a length (u32 LE) and
//! its canonical encoding, parents before children. Written to a temporary file and renamed,
//! so a crash leaves the old file or the new one, never half of one.

use std::io::{Read, Write};
use std::path::Path;

use cairn_primitives::Transaction;
use cairn_primitives::encoding::{MAX_ENCODED_SIZE, decode, encode};

use crate::MempoolError;

pub const MAGIC: &[u8; 8] = b"CAIRNMP1";
/// Largest pool file read (a full 300 MB pool fits well within it).
pub const MAX_FILE_BYTES: u64 = 2 * 1024 * 1024 * 1024;

pub fn save(path: &Path, txs: &[&Transaction]) -> Result<(), MempoolError> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        f.write_all(MAGIC)?;
        f.write_all(&(txs.len() as u64).to_le_bytes())?;
        for tx in txs {
            let bytes = encode(*tx);
            f.write_all(&(bytes.len() as u32).to_le_bytes())?;
            f.write_all(&bytes)?;
        }
        let f = f
            .into_inner()
            .map_err(|e| MempoolError::Io(e.into_error()))?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(())
}

pub fn load(path: &Path) -> Result<Vec<Transaction>, MempoolError> {
    let f = std::fs::File::open(path)?;
    let mut data = Vec::new();
    f.take(MAX_FILE_BYTES + 1).read_to_end(&mut data)?;
    if data.len() as u64 > MAX_FILE_BYTES {
        return Err(MempoolError::Corrupt(format!(
            "larger than {MAX_FILE_BYTES} bytes"
        )));
    }
    let corrupt = |m: &str| MempoolError::Corrupt(m.to_string());
    if data.get(..8) != Some(MAGIC.as_slice()) {
        return Err(corrupt("not a Cairn mempool file (bad magic)"));
    }
    let count = u64::from_le_bytes(
        data.get(8..16)
            .ok_or_else(|| corrupt("truncated header"))?
            .try_into()
            .map_err(|_| corrupt("header"))?,
    );
    let mut pos = 16usize;
    // Each record takes at least 4 bytes: a count beyond that is a lie, not an allocation.
    let mut txs = Vec::with_capacity((count as usize).min((data.len() - pos) / 4));
    for i in 0..count {
        let len_bytes = data
            .get(pos..pos + 4)
            .ok_or_else(|| corrupt("truncated record length"))?;
        let len = u32::from_le_bytes(len_bytes.try_into().map_err(|_| corrupt("length"))?) as usize;
        pos += 4;
        if len > MAX_ENCODED_SIZE {
            return Err(MempoolError::Corrupt(format!("record {i} is {len} bytes")));
        }
        let bytes = data
            .get(pos..pos + len)
            .ok_or_else(|| corrupt("truncated record"))?;
        txs.push(decode(bytes).map_err(|e| MempoolError::Corrupt(format!("record {i}: {e}")))?);
        pos += len;
    }
    if pos != data.len() {
        return Err(corrupt("trailing bytes"));
    }
    Ok(txs)
}
