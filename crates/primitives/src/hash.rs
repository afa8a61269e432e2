//! SHA-256 based hashes and the newtypes that keep them apart.
//!
//! Hashes display as plain hex of their bytes in order (no Bitcoin-style byte reversal): what
//! you see in the RPC is what is in the encoding.

use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

use crate::PrimitivesError;

/// Single SHA-256.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// SHA-256 of SHA-256, as Bitcoin uses for ids and proof of work.
pub fn double_sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(Sha256::digest(data)).into()
}

/// BIP340 tagged hash: `SHA256(SHA256(tag) || SHA256(tag) || data...)`.
///
/// Every hash with a different purpose gets its own tag, so a value hashed for one purpose can
/// never be presented as another (domain separation).
pub fn tagged_hash(tag: &str, parts: &[&[u8]]) -> [u8; 32] {
    finish(tag_prefix(tag), parts)
}

/// The hasher after `SHA256(tag) || SHA256(tag)`: one 64-byte SHA-256 block.
fn tag_prefix(tag: &str) -> Sha256 {
    let tag_hash = Sha256::digest(tag.as_bytes());
    let mut h = Sha256::new();
    h.update(tag_hash);
    h.update(tag_hash);
    h
}

fn finish(mut h: Sha256, parts: &[&[u8]]) -> [u8; 32] {
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// A tag whose prefix is hashed once: [`Tag::hash`] equals [`tagged_hash`] with the same tag,
/// two SHA-256 compressions cheaper (the tag's hash and the prefix block). For the hashes
/// computed for every transaction: signature messages and merkle nodes.
pub struct Tag {
    name: &'static str,
    prefix: std::sync::OnceLock<Sha256>,
}

impl Tag {
    pub const fn new(name: &'static str) -> Tag {
        Tag {
            name,
            prefix: std::sync::OnceLock::new(),
        }
    }

    pub fn hash(&self, parts: &[&[u8]]) -> [u8; 32] {
        let prefix = self.prefix.get_or_init(|| tag_prefix(self.name));
        finish(prefix.clone(), parts)
    }
}

macro_rules! hash_newtype {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default,
                 bincode::Encode, bincode::Decode)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            pub const ZERO: Self = Self([0u8; 32]);
            pub const fn from_byte_array(b: [u8; 32]) -> Self { Self(b) }
            pub const fn to_byte_array(self) -> [u8; 32] { self.0 }
            pub const fn as_bytes(&self) -> &[u8; 32] { &self.0 }
            pub fn from_slice(s: &[u8]) -> Result<Self, PrimitivesError> {
                let b: [u8; 32] = s.try_into().map_err(|_| PrimitivesError::Length { expected: 32, got: s.len() })?;
                Ok(Self(b))
            }
            pub fn to_hex(&self) -> String { hex::encode(self.0) }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(&hex::encode(self.0)) }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), hex::encode(self.0))
            }
        }
        impl FromStr for $name {
            type Err = PrimitivesError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                if s.len() != 64 {
                    return Err(PrimitivesError::Length { expected: 32, got: s.len() / 2 });
                }
                let mut b = [0u8; 32];
                hex::decode_to_slice(s, &mut b).map_err(|e| PrimitivesError::Hex(e.to_string()))?;
                Ok(Self(b))
            }
        }
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_hex())
            }
        }
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

hash_newtype!(
    /// A generic 32-byte hash (merkle nodes, digests).
    Hash256
);
hash_newtype!(
    /// Transaction id: double SHA-256 of the transaction *without* its signatures.
    Txid
);
hash_newtype!(
    /// Witness transaction id: double SHA-256 of the full transaction, signatures included.
    Wtxid
);
hash_newtype!(
    /// Block id: double SHA-256 of the encoded header.
    BlockHash
);
hash_newtype!(
    /// Root of a block's transaction merkle tree (over wtxids).
    MerkleRoot
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_known_value() {
        assert_eq!(
            hex::encode(sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn hex_round_trip_and_errors() {
        let h = Txid([7u8; 32]);
        assert_eq!(h.to_string().parse::<Txid>().unwrap(), h);
        assert!(matches!(
            "00".parse::<Txid>(),
            Err(PrimitivesError::Length { .. })
        ));
        let bad = "zz".repeat(32);
        assert!(matches!(bad.parse::<Txid>(), Err(PrimitivesError::Hex(_))));
    }

    #[test]
    fn a_tag_hashes_as_tagged_hash() {
        static T: Tag = Tag::new("cairn/test");
        for parts in [
            &[][..],
            &[&b"x"[..]][..],
            &[&[7u8; 32][..], &[9u8; 40][..]][..],
        ] {
            assert_eq!(T.hash(parts), tagged_hash("cairn/test", parts));
            assert_ne!(T.hash(parts), tagged_hash("cairn/other", parts));
        }
    }

    #[test]
    fn tagged_hash_separates_domains() {
        assert_ne!(tagged_hash("a", &[b"x"]), tagged_hash("b", &[b"x"]));
        assert_eq!(tagged_hash("a", &[b"x", b"y"]), tagged_hash("a", &[b"xy"]));
    }
}
