//! Header rules: proof of work, expected target, timestamps.

use cairn_primitives::BlockHeader;

use crate::pow::Target;
use crate::{ChainParams, ConsensusError, MAX_FUTURE_BLOCK_TIME, MEDIAN_TIME_SPAN};

/// What a header is checked against: facts about its parent's chain, gathered by the caller.
#[derive(Clone, Debug)]
pub struct HeaderContext<'a> {
    /// Height of the parent.
    pub parent_height: u64,
    /// Time of the parent.
    pub parent_time: u64,
    /// Times of up to the last [`MEDIAN_TIME_SPAN`] blocks ending at the parent, in any order.
    pub recent_times: &'a [u64],
}

/// # Consensus
/// > A header's bits must decode to a positive target no easier than the chain's easiest target,
/// > and the header's hash, read as a 256-bit big-endian number, must not exceed that target.
pub fn pow_is_valid(header: &BlockHeader, params: &ChainParams) -> Result<(), ConsensusError> {
    let hash = header.hash();
    let target = Target::from_compact(header.bits)
        .filter(|t| *t <= params.pow_limit())
        .ok_or(ConsensusError::InvalidBits {
            hash,
            bits: header.bits,
        })?;
    if !target.is_met_by(&hash) {
        return Err(ConsensusError::HighHash {
            hash,
            bits: header.bits,
        });
    }
    Ok(())
}

/// # Consensus
/// > A header's bits must equal the target the difficulty algorithm gives for its parent.
pub fn bits_are_expected(
    header: &BlockHeader,
    params: &ChainParams,
    ctx: &HeaderContext,
) -> Result<(), ConsensusError> {
    let expected = crate::difficulty::next_bits(params, ctx.parent_height, ctx.parent_time);
    if header.bits != expected {
        return Err(ConsensusError::UnexpectedBits {
            hash: header.hash(),
            found: header.bits,
            expected,
        });
    }
    Ok(())
}

/// Median of up to the last 11 block times (the median time past).
pub fn median_time_past(recent_times: &[u64]) -> u64 {
    let start = recent_times.len().saturating_sub(MEDIAN_TIME_SPAN);
    let mut times = recent_times[start..].to_vec();
    times.sort_unstable();
    times.get(times.len() / 2).copied().unwrap_or(0)
}

/// # Consensus
/// > A header's time must be strictly greater than the median time of the previous 11 blocks
/// > (fewer near genesis).
pub fn time_above_median(header: &BlockHeader, ctx: &HeaderContext) -> Result<(), ConsensusError> {
    let median = median_time_past(ctx.recent_times);
    if header.time <= median {
        return Err(ConsensusError::TimeTooOld {
            hash: header.hash(),
            time: header.time,
            median,
        });
    }
    Ok(())
}

/// # Consensus
/// > A header's time must not be more than 2 hours ahead of the validating node's clock. (This
/// > rule depends on the local clock: a header that fails it may become valid later.)
pub fn time_not_too_far_ahead(header: &BlockHeader, now: u64) -> Result<(), ConsensusError> {
    if header.time > now.saturating_add(MAX_FUTURE_BLOCK_TIME) {
        return Err(ConsensusError::TimeTooNew {
            hash: header.hash(),
            time: header.time,
            now,
            max_ahead: MAX_FUTURE_BLOCK_TIME,
        });
    }
    Ok(())
}

/// All header rules, in order, given the parent's context and the caller's clock.
pub fn check_header(
    header: &BlockHeader,
    params: &ChainParams,
    ctx: &HeaderContext,
    now: u64,
) -> Result<(), ConsensusError> {
    pow_is_valid(header, params)?;
    bits_are_expected(header, params, ctx)?;
    time_above_median(header, ctx)?;
    time_not_too_far_ahead(header, now)
}
