//! Proof of work: compact targets (Bitcoin's `nBits`), the hash-below-target check and chain work.

use cairn_primitives::BlockHash;
use ruint::aliases::U256;

/// A 256-bit proof-of-work target. A header is valid when its hash, read as a big-endian
/// number, is at most the target.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct Target(pub U256);

impl Target {
    /// Decodes a compact target. `None` for a negative, overflowing or zero target.
    pub fn from_compact(bits: u32) -> Option<Target> {
        let size = (bits >> 24) as usize;
        let mut word = bits & 0x007f_ffff;
        if bits & 0x0080_0000 != 0 && word != 0 {
            return None; // negative
        }
        let value = if size <= 3 {
            word >>= 8 * (3 - size);
            U256::from(word)
        } else {
            U256::from(word).checked_shl(8 * (size - 3))?
        };
        // Bitcoin's overflow rule: the mantissa must fit in 256 bits after shifting.
        if word != 0 && size > 34 {
            return None;
        }
        if value.is_zero() {
            return None;
        }
        Some(Target(value))
    }

    /// Encodes as compact bits (rounding down, as Bitcoin's `GetCompact`).
    pub fn to_compact(self) -> u32 {
        let mut size = self.0.bit_len().div_ceil(8);
        let mut compact: u32 = if size <= 3 {
            (self.0.saturating_to::<u64>() << (8 * (3 - size))) as u32
        } else {
            (self.0 >> (8 * (size - 3))).saturating_to::<u64>() as u32
        };
        if compact & 0x0080_0000 != 0 {
            compact >>= 8;
            size += 1;
        }
        compact | ((size as u32) << 24)
    }

    /// Whether `hash` meets this target.
    pub fn is_met_by(&self, hash: &BlockHash) -> bool {
        U256::from_be_bytes(hash.0) <= self.0
    }

    /// Expected number of hashes to meet this target: `2^256 / (target + 1)`.
    pub fn work(&self) -> ChainWork {
        // 2^256 / (t+1) == (!t / (t+1)) + 1, which stays within 256 bits.
        let t = self.0;
        if t == U256::MAX {
            return ChainWork(U256::from(1u8));
        }
        ChainWork((!t / (t + U256::from(1u8))) + U256::from(1u8))
    }

    /// Difficulty relative to `easiest` (1.0 at the easiest target), for display only.
    pub fn difficulty(&self, easiest: Target) -> f64 {
        u256_to_f64(easiest.0) / u256_to_f64(self.0)
    }
}

fn u256_to_f64(v: U256) -> f64 {
    v.as_limbs().iter().rev().fold(0.0, |acc, &limb| {
        acc * 18_446_744_073_709_551_616.0 + limb as f64
    })
}

/// Cumulative proof of work of a chain; fork choice picks the most.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Default)]
pub struct ChainWork(pub U256);

impl ChainWork {
    pub const ZERO: ChainWork = ChainWork(U256::ZERO);

    pub fn saturating_add(self, other: ChainWork) -> ChainWork {
        ChainWork(self.0.saturating_add(other.0))
    }
    pub fn to_be_bytes(self) -> [u8; 32] {
        self.0.to_be_bytes()
    }
    pub fn from_be_bytes(b: [u8; 32]) -> ChainWork {
        ChainWork(U256::from_be_bytes(b))
    }
    pub fn to_hex(self) -> String {
        hex_be(&self.to_be_bytes())
    }
}

fn hex_be(b: &[u8; 32]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_round_trips_bitcoin_values() {
        for bits in [
            0x1d00ffffu32,
            0x207fffff,
            0x1b0404cb,
            0x03123456,
            0x1e0fffff,
        ] {
            let t = Target::from_compact(bits).unwrap();
            assert_eq!(t.to_compact(), bits, "{bits:#x}");
        }
        // Bitcoin: 0x1d00ffff is 0x00000000ffff0000....
        let t = Target::from_compact(0x1d00ffff).unwrap();
        let b = t.0.to_be_bytes::<32>();
        assert_eq!(&b[..6], &[0, 0, 0, 0, 0xff, 0xff]);
    }

    #[test]
    fn invalid_compacts_rejected() {
        assert_eq!(Target::from_compact(0x04923456), None); // negative
        assert_eq!(Target::from_compact(0xff123456), None); // overflow
        assert_eq!(Target::from_compact(0x00000000), None); // zero
        assert_eq!(Target::from_compact(0x01003456), None); // rounds to zero
    }

    #[test]
    fn work_of_bitcoin_genesis_target() {
        // Bitcoin's genesis work is 0x100010001.
        let w = Target::from_compact(0x1d00ffff).unwrap().work();
        assert_eq!(w.0, U256::from(0x1_0001_0001u64));
    }

    #[test]
    fn easier_target_is_less_work() {
        let easy = Target::from_compact(0x207fffff).unwrap();
        let hard = Target::from_compact(0x1d00ffff).unwrap();
        assert!(easy.work() < hard.work());
        assert!(
            (hard.difficulty(easy) - (easy.0 / hard.0).saturating_to::<u64>() as f64).abs()
                / hard.difficulty(easy)
                < 1e-3
        );
    }
}
