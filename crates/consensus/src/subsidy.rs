//! The block subsidy schedule.

use cairn_primitives::Amount;

use crate::ChainParams;

/// The new coins a block at `height` may create.
///
/// # Consensus
/// > The subsidy at height h is `initial_subsidy >> (h / halving_interval)`, and zero once the
/// > shift reaches 64 (`docs/protocol.md`, "Subsidy").
pub fn block_subsidy(params: &ChainParams, height: u64) -> Amount {
    let halvings = height / params.halving_interval;
    if halvings >= 64 {
        return Amount::ZERO;
    }
    Amount(params.initial_subsidy.0 >> halvings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_on_schedule() {
        let p = ChainParams::devnet();
        let i = p.halving_interval;
        assert_eq!(block_subsidy(&p, 0), p.initial_subsidy);
        assert_eq!(block_subsidy(&p, i - 1), p.initial_subsidy);
        assert_eq!(block_subsidy(&p, i), Amount(p.initial_subsidy.0 / 2));
        assert_eq!(block_subsidy(&p, i * 64), Amount::ZERO);
        assert_eq!(block_subsidy(&p, u64::MAX), Amount::ZERO);
    }
}
