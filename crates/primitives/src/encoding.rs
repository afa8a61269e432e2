//! The one canonical encoding of every Cairn value: bincode 2.0.1 with a single fixed
//! configuration (little-endian, fixed-width integers, a size limit).
//!
//! Everything that is hashed, signed, stored or sent goes through [`encode`] and [`decode`], so
//! moving to another bincode-compatible codec touches this file only.
//!
//! Decoding is strict: the input length is checked against the limit before anything is
//! allocated, bincode's own limit bounds every length prefix it reads (a claimed `Vec` of 2^60
//! elements fails before allocation), trailing bytes are rejected, and because every field is
//! fixed-width there is exactly one encoding per value (`encode(decode(b)) == b`).

use bincode::config::{Configuration, Fixint, Limit, LittleEndian};

use crate::PrimitivesError;

/// Upper bound on any single encoded value (a block is the largest). Consensus limits are lower;
/// this is the allocation ceiling for bytes whose size we have not checked yet.
pub const MAX_ENCODED_SIZE: usize = 8 * 1024 * 1024;

type Config = Configuration<LittleEndian, Fixint, Limit<MAX_ENCODED_SIZE>>;

const fn config() -> Config {
    bincode::config::standard()
        .with_little_endian()
        .with_fixed_int_encoding()
        .with_limit::<MAX_ENCODED_SIZE>()
}

/// Types that have a canonical encoding.
pub trait Encodable: bincode::Encode + bincode::Decode<()> {}
impl<T: bincode::Encode + bincode::Decode<()>> Encodable for T {}

/// Canonical bytes of `value`.
pub fn encode<T: bincode::Encode>(value: &T) -> Vec<u8> {
    // Encoding into a Vec can only fail if a value exceeds the limit, which no valid in-memory
    // value can (the limit is far above any consensus size): that would be a broken invariant.
    bincode::encode_to_vec(value, config()).expect("in-memory values encode within the size limit")
}

/// Appends the canonical bytes of `value` to `out` (no intermediate allocation).
pub fn encode_into<T: bincode::Encode>(value: &T, out: &mut Vec<u8>) {
    struct VecWriter<'a>(&'a mut Vec<u8>);
    impl bincode::enc::write::Writer for VecWriter<'_> {
        fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
            self.0.extend_from_slice(bytes);
            Ok(())
        }
    }
    bincode::encode_into_writer(value, VecWriter(out), config())
        .expect("in-memory values encode within the size limit");
}

/// Length of the canonical encoding without allocating it.
pub fn encoded_len<T: bincode::Encode>(value: &T) -> usize {
    struct Counter(usize);
    impl bincode::enc::write::Writer for Counter {
        fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
            self.0 += bytes.len();
            Ok(())
        }
    }
    let mut c = Counter(0);
    let mut enc = bincode::enc::EncoderImpl::new(&mut c, config());
    bincode::Encode::encode(value, &mut enc)
        .expect("in-memory values encode within the size limit");
    c.0
}

/// Decodes exactly one value from `bytes`, rejecting oversized input and trailing bytes.
pub fn decode<T: bincode::Decode<()>>(bytes: &[u8]) -> Result<T, PrimitivesError> {
    decode_with_limit(bytes, MAX_ENCODED_SIZE)
}

/// As [`decode`], with a caller's limit below [`MAX_ENCODED_SIZE`] (e.g. a gossip message size).
pub fn decode_with_limit<T: bincode::Decode<()>>(
    bytes: &[u8],
    limit: usize,
) -> Result<T, PrimitivesError> {
    let limit = limit.min(MAX_ENCODED_SIZE);
    if bytes.len() > limit {
        return Err(PrimitivesError::TooLarge {
            size: bytes.len(),
            limit,
        });
    }
    let (value, read) = bincode::decode_from_slice::<T, _>(bytes, config())
        .map_err(|e| PrimitivesError::Malformed(e.to_string()))?;
    if read != bytes.len() {
        return Err(PrimitivesError::TrailingBytes(bytes.len() - read));
    }
    Ok(value)
}

/// Hex helpers for the RPC and the wallet.
pub fn decode_hex<T: bincode::Decode<()>>(s: &str) -> Result<T, PrimitivesError> {
    if s.len() / 2 > MAX_ENCODED_SIZE {
        return Err(PrimitivesError::TooLarge {
            size: s.len() / 2,
            limit: MAX_ENCODED_SIZE,
        });
    }
    let bytes = hex::decode(s).map_err(|e| PrimitivesError::Hex(e.to_string()))?;
    decode(&bytes)
}

pub fn encode_hex<T: bincode::Encode>(value: &T) -> String {
    hex::encode(encode(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_fixed_width_little_endian() {
        assert_eq!(encode(&1u32), vec![1, 0, 0, 0]);
        assert_eq!(encode(&vec![7u8]), vec![1, 0, 0, 0, 0, 0, 0, 0, 7]);
        assert_eq!(encoded_len(&vec![7u8]), 9);
    }

    #[test]
    fn trailing_bytes_rejected() {
        assert_eq!(
            decode::<u32>(&[1, 0, 0, 0, 9]),
            Err(PrimitivesError::TrailingBytes(1))
        );
    }

    #[test]
    fn huge_length_prefix_fails_before_allocation() {
        // A Vec<u64> claiming 2^62 elements: must fail on the limit, not abort on allocation.
        let mut b = (1u64 << 62).to_le_bytes().to_vec();
        b.extend_from_slice(&[0; 16]);
        assert!(matches!(
            decode::<Vec<u64>>(&b),
            Err(PrimitivesError::Malformed(_))
        ));
    }

    #[test]
    fn oversized_input_rejected_up_front() {
        let b = vec![0u8; 100];
        assert!(matches!(
            decode_with_limit::<Vec<u8>>(&b, 50),
            Err(PrimitivesError::TooLarge { .. })
        ));
    }
}
