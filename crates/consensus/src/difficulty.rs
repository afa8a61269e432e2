//! Difficulty: ASERT (aserti3-2d, as specified for Bitcoin Cash in November 2020), anchored at
//! the genesis block, or a fixed target for dev chains.

use ruint::aliases::U256;

use crate::params::{ChainParams, DifficultyAlgorithm};
use crate::pow::Target;

/// An ASERT anchor: the reference block the exponential schedule is measured from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AsertAnchor {
    pub height: u64,
    /// Timestamp of the anchor block's parent.
    pub parent_time: i64,
    pub bits: u32,
}

/// The aserti3-2d target for the block after `prev_height`/`prev_time`.
///
/// Integer-only, so every implementation agrees bit for bit:
/// `exponent = ((prev_time - anchor.parent_time) - spacing * (prev_height - anchor.height + 1)) * 65536 / halflife`
/// (truncating division), `target = anchor_target * 2^(exponent / 65536)` with the fractional
/// part approximated by the specification's cubic polynomial, clamped to `[1, pow_limit]`.
pub fn asert_target(
    anchor: AsertAnchor,
    prev_height: u64,
    prev_time: i64,
    spacing: i64,
    halflife: i64,
    pow_limit: U256,
) -> Target {
    let anchor_target = Target::from_compact(anchor.bits).map_or(pow_limit, |t| t.0);
    let time_delta = i128::from(prev_time) - i128::from(anchor.parent_time);
    let height_delta = i128::from(prev_height) - i128::from(anchor.height);
    // i128 keeps the intermediate product exact for any timestamp a header can carry.
    let exponent =
        ((time_delta - i128::from(spacing) * (height_delta + 1)) * 65536) / i128::from(halflife);
    let mut shifts = exponent >> 16;
    let frac = (exponent & 0xffff) as u128;
    let factor: u128 = 65536
        + ((195_766_423_245_049u128 * frac
            + 971_821_376u128 * frac * frac
            + 5127u128 * frac * frac * frac
            + (1u128 << 47))
            >> 48);
    // anchor_target < 2^256 and factor < 2^17: compute in 512 bits to catch overflow exactly.
    let wide = ruint::Uint::<512, 8>::from(anchor_target) * ruint::Uint::<512, 8>::from(factor);
    shifts -= 16;
    let next: ruint::Uint<512, 8> = if shifts <= 0 {
        let s = (-shifts) as usize;
        if s >= 512 {
            ruint::Uint::ZERO
        } else {
            wide >> s
        }
    } else {
        let s = shifts as usize;
        if s >= 512 || wide.bit_len() + s > 256 {
            return Target(pow_limit);
        }
        wide << s
    };
    if next.is_zero() {
        return Target(U256::from(1u8));
    }
    if next.bit_len() > 256 {
        return Target(pow_limit);
    }
    let next = U256::from_limbs_slice(&next.as_limbs()[..4]);
    Target(next.min(pow_limit))
}

/// The compact target required of the block at `prev_height + 1`.
///
/// # Consensus
/// > The target of every block after genesis is the one the chain's difficulty algorithm gives
/// > for its parent: the easiest target when the algorithm is `none`, aserti3-2d anchored at
/// > genesis otherwise (`docs/protocol.md`, "Difficulty").
pub fn next_bits(params: &ChainParams, prev_height: u64, prev_time: u64) -> u32 {
    match params.difficulty {
        DifficultyAlgorithm::None => params.pow_limit_bits,
        DifficultyAlgorithm::Asert { halflife_secs } => {
            let anchor = AsertAnchor {
                height: 0,
                parent_time: params.genesis_time as i64 - params.block_time_secs as i64,
                bits: params.pow_limit_bits,
            };
            asert_target(
                anchor,
                prev_height,
                prev_time as i64,
                params.block_time_secs as i64,
                halflife_secs as i64,
                params.pow_limit().0,
            )
            .to_compact()
        }
    }
}
