//! Addresses: bech32m (BIP350) of the 32-byte x-only key, with the chain's human-readable
//! prefix from genesis.json. A typo is caught by the checksum; a wrong network by the prefix.

use bech32::primitives::decode::{CheckedHrpstring, CheckedHrpstringError, ChecksumError};
use bech32::{Bech32m, Hrp};
use thiserror::Error;

use crate::keys::XOnlyPublicKey;

/// Why a string is not a valid address; each cause is distinct so users get a precise message.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Bech32mError {
    #[error("address is for another network: expected prefix {expected:?}, found {found:?}")]
    WrongPrefix { expected: String, found: String },
    #[error("bad checksum (a typo in the address?)")]
    BadChecksum,
    #[error("wrong length: an address carries {expected} bytes, this one {got}")]
    WrongLength { expected: usize, got: usize },
    #[error("not a bech32m string: {0}")]
    Malformed(String),
    #[error("invalid address prefix {0:?}")]
    InvalidPrefix(String),
}

/// Checks a bech32m string (checksum, characters, case, length) and returns its prefix and
/// 5-bit data part converted to bytes.
pub fn decode_bech32m(s: &str) -> Result<(String, Vec<u8>), Bech32mError> {
    let checked = CheckedHrpstring::new::<Bech32m>(s).map_err(|e| match e {
        CheckedHrpstringError::Checksum(ChecksumError::InvalidResidue) => Bech32mError::BadChecksum,
        other => Bech32mError::Malformed(other.to_string()),
    })?;
    Ok((checked.hrp().to_lowercase(), checked.byte_iter().collect()))
}

/// A Cairn address: a network prefix and the key it pays.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Address {
    pub pubkey: XOnlyPublicKey,
}

impl Address {
    pub fn new(pubkey: XOnlyPublicKey) -> Self {
        Self { pubkey }
    }

    /// Encodes with `prefix` (lower case).
    pub fn encode(&self, prefix: &str) -> Result<String, Bech32mError> {
        let hrp =
            Hrp::parse(prefix).map_err(|_| Bech32mError::InvalidPrefix(prefix.to_string()))?;
        bech32::encode_lower::<Bech32m>(hrp, &self.pubkey.0)
            .map_err(|e| Bech32mError::Malformed(e.to_string()))
    }

    /// Parses an address that must carry `expected_prefix`.
    pub fn parse(s: &str, expected_prefix: &str) -> Result<Address, Bech32mError> {
        let (prefix, data) = decode_bech32m(s)?;
        if prefix != expected_prefix.to_lowercase() {
            return Err(Bech32mError::WrongPrefix {
                expected: expected_prefix.to_string(),
                found: prefix,
            });
        }
        let key: [u8; 32] = data
            .as_slice()
            .try_into()
            .map_err(|_| Bech32mError::WrongLength {
                expected: 32,
                got: data.len(),
            })?;
        let addr = Address::new(XOnlyPublicKey(key));
        // The 5-bit data carries 4 padding bits; only the zero padding is canonical, so that
        // one key has exactly one address string.
        if addr.encode(&prefix)? != s.to_lowercase() {
            return Err(Bech32mError::Malformed("non-zero padding bits".into()));
        }
        Ok(addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// BIP350's published bech32m vectors (tests/vectors/bip350-bech32m.json, extracted from
    /// bip-0350.mediawiki in github.com/bitcoin/bips at 7fe0b034ec967b52a5a28276419117326df93263).
    #[test]
    fn bip350_bech32m_vectors() {
        let v: serde_json::Value =
            serde_json::from_str(include_str!("../tests/vectors/bip350-bech32m.json")).unwrap();
        let valid = v["valid_bech32m"].as_array().unwrap();
        for s in valid {
            let s = s.as_str().unwrap();
            assert!(
                CheckedHrpstring::new::<Bech32m>(s).is_ok(),
                "valid vector rejected: {s}"
            );
        }
        let invalid = v["invalid_bech32m"].as_array().unwrap();
        for item in invalid {
            let s = item["string"].as_str().unwrap();
            assert!(
                decode_bech32m(s).is_err(),
                "invalid vector accepted: {s:?} ({})",
                item["reason"]
            );
        }
        // Segwit addresses are valid bech32m strings too (whatever their prefix).
        for item in v["valid_addresses"].as_array().unwrap() {
            let s = item["address"].as_str().unwrap();
            let is_m = CheckedHrpstring::new::<Bech32m>(s).is_ok();
            // BIP350 lists v0 addresses (bech32, not bech32m) among the valid ones; only v1+ are m.
            let script = item["scriptpubkey_hex"].as_str().unwrap();
            assert_eq!(is_m, !script.starts_with("00"), "{s}");
        }
        assert_eq!(valid.len(), 7);
        assert_eq!(invalid.len(), 14);
    }

    #[test]
    fn round_trip_and_distinct_errors() {
        let a = Address::new(XOnlyPublicKey([0x42; 32]));
        let s = a.encode("cairn").unwrap();
        assert!(s.starts_with("cairn1"));
        assert_eq!(Address::parse(&s, "cairn").unwrap(), a);
        assert_eq!(Address::parse(&s.to_uppercase(), "cairn").unwrap(), a);

        assert!(matches!(
            Address::parse(&s, "tcairn"),
            Err(Bech32mError::WrongPrefix { .. })
        ));

        // Flip one data character: the checksum catches it.
        let mut chars: Vec<char> = s.chars().collect();
        let i = 10;
        chars[i] = if chars[i] == 'q' { 'p' } else { 'q' };
        let typo: String = chars.into_iter().collect();
        assert_eq!(
            Address::parse(&typo, "cairn"),
            Err(Bech32mError::BadChecksum)
        );

        let short =
            bech32::encode_lower::<Bech32m>(Hrp::parse("cairn").unwrap(), &[1u8; 20]).unwrap();
        assert_eq!(
            Address::parse(&short, "cairn"),
            Err(Bech32mError::WrongLength {
                expected: 32,
                got: 20
            })
        );

        // Same data under the bech32 (not m) checksum is a checksum failure.
        let old = bech32::encode_lower::<bech32::Bech32>(Hrp::parse("cairn").unwrap(), &[0x42; 32])
            .unwrap();
        assert_eq!(
            Address::parse(&old, "cairn"),
            Err(Bech32mError::BadChecksum)
        );
    }
}
