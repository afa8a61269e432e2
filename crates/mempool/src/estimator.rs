//! Fee estimation, simple enough to explain in three lines:
//!
//! 1. never below the pool's own minimum (min relay fee, or the rolling minimum when full);
//! 2. if the pool holds more than `target` blocks' worth of transactions, the fee rate a
//!    transaction needs to be within the first `target` blocks of it (ancestor fee rate order);
//! 3. if recent blocks were full, the median of the lowest fee rate they confirmed: what it
//!    took to get in lately.

use std::collections::VecDeque;

/// Blocks remembered by the estimator.
pub const FEE_HISTORY_BLOCKS: usize = 24;
/// A block is "full" when it used this share of its size limit (percent).
pub const FULL_BLOCK_PERCENT: usize = 90;

/// What one block told us about fees.
#[derive(Clone, Copy, Debug)]
pub struct BlockFees {
    /// Lowest fee rate (base units per byte) among the pool transactions it confirmed.
    pub min_rate: Option<u64>,
    pub full: bool,
}

#[derive(Debug, Default)]
pub struct Estimator {
    recent: VecDeque<BlockFees>,
}

impl Estimator {
    pub fn record(&mut self, b: BlockFees) {
        if self.recent.len() == FEE_HISTORY_BLOCKS {
            self.recent.pop_front();
        }
        self.recent.push_back(b);
    }

    /// Rule 3: median lowest confirmed rate of the recent full blocks (0 if none was full).
    pub fn recent_full_rate(&self) -> u64 {
        let mut rates: Vec<u64> = self
            .recent
            .iter()
            .filter(|b| b.full)
            .filter_map(|b| b.min_rate)
            .collect();
        if rates.is_empty() {
            return 0;
        }
        rates.sort_unstable();
        rates[rates.len() / 2]
    }
}
