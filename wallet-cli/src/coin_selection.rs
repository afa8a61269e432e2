//! Coin selection: which spendable outputs pay `amount` plus the fee at `fee_rate`.
//!
//! 1. Branch-and-bound-lite: a bounded depth-first search for a set of inputs that needs no
//!    change output (what is left over is below the cost of a change output plus the dust
//!    threshold, and goes to the fee), preferring the fewest inputs.
//! 2. Largest-first: add the largest coins until amount + fee is covered; the remainder becomes a
//!    change output if it is at least the dust threshold, otherwise it is added to the fee.
//!
//! The fewer-input result of the two wins (ties go to the change-free one). Fees are computed
//! from the exact encoded size (`Transaction::size`, which does not depend on signature values).

use cairn_primitives::{
    Amount, OutPoint, Signature, Transaction, TxIn, TxOut, Txid, XOnlyPublicKey,
};

use crate::error::{Result, WalletError};
use crate::hd::KeyChain;

/// Most inputs one transaction may spend: 900 inputs of 100 bytes keep it under the node's
/// 100,000-byte standard size (1,000 did not).
pub const MAX_INPUTS: usize = 900;
/// Most search steps the branch-and-bound pass may take.
pub const MAX_BNB_TRIES: usize = 100_000;

/// A spendable output the wallet owns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub outpoint: OutPoint,
    pub value: Amount,
    pub chain: KeyChain,
    pub index: u32,
}

/// The outcome: inputs to spend, the fee, and the change (if any).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    pub inputs: Vec<Candidate>,
    pub fee: Amount,
    pub change: Option<Amount>,
}

/// Encoded sizes of a transaction's parts, measured on the real encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxSizes {
    pub base: u64,
    pub input: u64,
    pub output: u64,
}

impl TxSizes {
    pub fn measure() -> Self {
        let tx = |n_in: usize, n_out: usize| Transaction {
            version: Transaction::VERSION,
            inputs: vec![
                TxIn {
                    prevout: OutPoint::new(Txid::ZERO, 0),
                    signature: Signature::EMPTY
                };
                n_in
            ],
            outputs: vec![
                TxOut {
                    value: Amount::ZERO,
                    pubkey: XOnlyPublicKey([0; 32])
                };
                n_out
            ],
            lock_time: 0,
        };
        let base = tx(0, 0).size() as u64;
        Self {
            base,
            input: tx(1, 0).size() as u64 - base,
            output: tx(0, 1).size() as u64 - base,
        }
    }

    /// Size of a transaction with `n_in` inputs and `n_out` outputs.
    pub fn size(&self, n_in: usize, n_out: usize) -> u64 {
        self.base + self.input * n_in as u64 + self.output * n_out as u64
    }
}

/// Chooses inputs for paying `amount` at `fee_rate` base units per byte. Change below
/// `dust_threshold` is never created; it goes to the fee.
pub fn select_coins(
    candidates: &[Candidate],
    amount: Amount,
    fee_rate: u64,
    dust_threshold: u64,
) -> Result<Selection> {
    let sizes = TxSizes::measure();
    let rate = i128::from(fee_rate);
    let input_fee = rate * i128::from(sizes.input);
    let change_cost = rate * i128::from(sizes.output);
    // Amount + fee of a transaction with no inputs and one output, to be covered by the
    // inputs' effective values (value minus the fee its own bytes cost).
    let need = i128::from(amount.0) + rate * i128::from(sizes.size(0, 1));
    let dust = i128::from(dust_threshold);

    let mut usable: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| i128::from(c.value.0) > input_fee)
        .collect();
    usable.sort_by(|a, b| b.value.cmp(&a.value).then(a.outpoint.cmp(&b.outpoint)));
    let eff: Vec<i128> = usable
        .iter()
        .map(|c| i128::from(c.value.0) - input_fee)
        .collect();
    let total_eff: i128 = eff.iter().sum();

    if total_eff < need {
        let n = usable.len();
        let needed = i128::from(amount.0) + rate * i128::from(sizes.size(n.max(1), 1));
        let available: i128 = usable.iter().map(|c| i128::from(c.value.0)).sum();
        let coins = |v: i128| Amount(u64::try_from(v.max(0)).unwrap_or(u64::MAX)).to_coin_string();
        return Err(WalletError::InsufficientFunds {
            needed: coins(needed),
            available: coins(available),
            short: coins(needed - available),
        });
    }

    let greedy = largest_first(&eff, need);
    let bnb = branch_and_bound(&eff, need, change_cost + dust);
    let chosen = match (bnb, greedy) {
        (Some(b), Some(g)) if b.len() <= g.len() => b,
        (_, Some(g)) => g,
        (Some(b), None) => b,
        (None, None) => return Err(WalletError::TooManyInputs { limit: MAX_INPUTS }),
    };

    let inputs: Vec<Candidate> = chosen.iter().map(|&i| usable[i].clone()).collect();
    let sum_in: u64 = inputs.iter().map(|c| c.value.0).sum();
    let to_u64 = |v: i128| {
        u64::try_from(v).map_err(|_| WalletError::Other("fee arithmetic overflow".into()))
    };
    let fee_one = to_u64(rate * i128::from(sizes.size(inputs.len(), 1)))?;
    let fee_two = to_u64(rate * i128::from(sizes.size(inputs.len(), 2)))?;
    let leftover = i128::from(sum_in) - i128::from(amount.0) - i128::from(fee_two);
    let (fee, change) = if leftover >= dust && leftover > 0 {
        (fee_two, Some(Amount(to_u64(leftover)?)))
    } else {
        (to_u64(i128::from(sum_in) - i128::from(amount.0))?, None)
    };
    debug_assert!(fee >= fee_one);
    Ok(Selection {
        inputs,
        fee: Amount(fee),
        change,
    })
}

/// Everything: the (at most [`MAX_INPUTS`]) largest coins worth spending at `fee_rate`, paying
/// their sum minus the fee to one output, no change. `send --all`, and how a wallet with too many
/// small coins consolidates them (repeat while coins remain).
pub fn sweep(
    candidates: &[Candidate],
    fee_rate: u64,
    dust_threshold: u64,
) -> Result<(Selection, Amount)> {
    let sizes = TxSizes::measure();
    let rate = i128::from(fee_rate);
    let input_fee = rate * i128::from(sizes.input);
    let mut usable: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| i128::from(c.value.0) > input_fee)
        .collect();
    usable.sort_by(|a, b| b.value.cmp(&a.value).then(a.outpoint.cmp(&b.outpoint)));
    usable.truncate(MAX_INPUTS);
    let inputs: Vec<Candidate> = usable.into_iter().cloned().collect();
    let sum_in: i128 = inputs.iter().map(|c| i128::from(c.value.0)).sum();
    let fee = rate * i128::from(sizes.size(inputs.len(), 1));
    let amount = sum_in - fee;
    if inputs.is_empty() || amount < i128::from(dust_threshold) {
        let coins = |v: i128| Amount(u64::try_from(v.max(0)).unwrap_or(u64::MAX)).to_coin_string();
        return Err(WalletError::InsufficientFunds {
            needed: coins(fee + i128::from(dust_threshold)),
            available: coins(sum_in),
            short: coins(fee + i128::from(dust_threshold) - sum_in),
        });
    }
    let to_u64 = |v: i128| {
        u64::try_from(v).map_err(|_| WalletError::Other("fee arithmetic overflow".into()))
    };
    Ok((
        Selection {
            inputs,
            fee: Amount(to_u64(fee)?),
            change: None,
        },
        Amount(to_u64(amount)?),
    ))
}

/// Largest-first: stops as soon as amount + fee is covered.
fn largest_first(eff: &[i128], need: i128) -> Option<Vec<usize>> {
    let mut sum = 0;
    for (i, e) in eff.iter().enumerate().take(MAX_INPUTS) {
        sum += e;
        if sum >= need {
            return Some((0..=i).collect());
        }
    }
    None
}

/// Bounded depth-first search (values sorted descending) for the fewest inputs whose
/// effective sum lies in `[need, need + window)`: no change output needed.
fn branch_and_bound(eff: &[i128], need: i128, window: i128) -> Option<Vec<usize>> {
    let mut suffix = vec![0i128; eff.len() + 1];
    for i in (0..eff.len()).rev() {
        suffix[i] = suffix[i + 1] + eff[i];
    }
    let mut best: Option<Vec<usize>> = None;
    let mut path = Vec::new();
    let mut tries = 0usize;
    #[allow(clippy::too_many_arguments)]
    fn dfs(
        eff: &[i128],
        suffix: &[i128],
        i: usize,
        sum: i128,
        need: i128,
        window: i128,
        path: &mut Vec<usize>,
        best: &mut Option<Vec<usize>>,
        tries: &mut usize,
    ) {
        *tries += 1;
        if *tries > MAX_BNB_TRIES || path.len() > MAX_INPUTS {
            return;
        }
        if sum >= need {
            if sum < need + window && best.as_ref().is_none_or(|b| path.len() < b.len()) {
                *best = Some(path.clone());
            }
            return;
        }
        if i >= eff.len() || sum + suffix[i] < need {
            return;
        }
        // No improvement possible once the path is as long as the best.
        if best.as_ref().is_some_and(|b| path.len() + 1 >= b.len()) {
            return;
        }
        path.push(i);
        dfs(
            eff,
            suffix,
            i + 1,
            sum + eff[i],
            need,
            window,
            path,
            best,
            tries,
        );
        path.pop();
        dfs(eff, suffix, i + 1, sum, need, window, path, best, tries);
    }
    dfs(
        eff, &suffix, 0, 0, need, window, &mut path, &mut best, &mut tries,
    );
    best
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests fail loudly on purpose
mod tests {
    use super::*;

    fn coin(n: u8, value: u64) -> Candidate {
        Candidate {
            outpoint: OutPoint::new(Txid([n; 32]), 0),
            value: Amount(value),
            chain: KeyChain::Receive,
            index: 0,
        }
    }

    fn sizes() -> TxSizes {
        TxSizes::measure()
    }

    #[test]
    fn sizes_match_the_encoding() {
        let s = sizes();
        assert_eq!((s.base, s.input, s.output), (24, 100, 40));
    }

    #[test]
    fn exact_match_needs_no_change() {
        let rate = 2;
        let fee = rate * sizes().size(1, 1);
        let coins = [coin(1, 5_000_000), coin(2, 1_000_000 + fee), coin(3, 200)];
        let s = select_coins(&coins, Amount(1_000_000), rate, 546).unwrap();
        assert_eq!(s.inputs, vec![coins[1].clone()]);
        assert_eq!(s.change, None);
        assert_eq!(s.fee, Amount(fee));
    }

    #[test]
    fn change_above_dust_is_returned() {
        let rate = 1;
        let coins = [coin(1, 10_000_000)];
        let s = select_coins(&coins, Amount(1_000_000), rate, 546).unwrap();
        let fee = sizes().size(1, 2);
        assert_eq!(s.fee, Amount(fee));
        assert_eq!(s.change, Some(Amount(10_000_000 - 1_000_000 - fee)));
    }

    #[test]
    fn dust_change_is_folded_into_the_fee() {
        let rate = 1;
        let fee_one = sizes().size(1, 1);
        // 100 base units would be left over: below dust, so it goes to the fee.
        let coins = [coin(1, 1_000_000 + fee_one + 100)];
        let s = select_coins(&coins, Amount(1_000_000), rate, 546).unwrap();
        assert_eq!(s.change, None);
        assert_eq!(s.fee, Amount(fee_one + 100));
    }

    #[test]
    fn prefers_fewest_inputs() {
        let coins: Vec<Candidate> = (1..=10)
            .map(|i| coin(i, 100_000))
            .chain([coin(99, 5_000_000)])
            .collect();
        let s = select_coins(&coins, Amount(400_000), 1, 546).unwrap();
        assert_eq!(s.inputs.len(), 1);
        assert_eq!(s.inputs[0].value, Amount(5_000_000));
    }

    #[test]
    fn insufficient_funds_says_how_much_is_short() {
        let coins = [coin(1, 100_000_000), coin(2, 50_000_000)];
        let err = select_coins(&coins, Amount(200_000_000), 1, 546).unwrap_err();
        let fee = sizes().size(2, 1);
        match err {
            WalletError::InsufficientFunds {
                needed,
                available,
                short,
            } => {
                assert_eq!(needed, Amount(200_000_000 + fee).to_coin_string());
                assert_eq!(available, "1.50000000");
                assert_eq!(short, Amount(50_000_000 + fee).to_coin_string());
            }
            other => panic!("{other:?}"),
        }
        assert!(select_coins(&[], Amount(1), 1, 546).is_err());
    }

    #[test]
    fn fee_always_covers_the_rate() {
        for amount in [1u64, 999, 50_000, 1_234_567, 9_999_000] {
            let coins: Vec<Candidate> = (1..=6)
                .map(|i| coin(i, 1_000_000 * u64::from(i) + 777))
                .collect();
            let s = select_coins(&coins, Amount(amount), 3, 546).unwrap();
            let n_out = 1 + usize::from(s.change.is_some());
            assert!(s.fee.0 >= 3 * sizes().size(s.inputs.len(), n_out));
            let sum: u64 = s.inputs.iter().map(|c| c.value.0).sum();
            assert_eq!(sum, amount + s.fee.0 + s.change.map_or(0, |c| c.0));
            if let Some(c) = s.change {
                assert!(c.0 >= 546);
            }
        }
    }

    #[test]
    fn sweep_spends_everything_worth_spending_without_change() {
        let cands: Vec<Candidate> = (0..5u8)
            .map(|i| Candidate {
                outpoint: OutPoint::new(Txid::from_byte_array([i; 32]), 0),
                value: Amount(10_000 * (u64::from(i) + 1)),
                chain: KeyChain::Receive,
                index: 0,
            })
            .collect();
        let (sel, amount) = sweep(&cands, 1, 500).unwrap();
        assert_eq!(sel.inputs.len(), 5);
        assert!(sel.change.is_none());
        let total: u64 = cands.iter().map(|c| c.value.0).sum();
        assert_eq!(amount.0 + sel.fee.0, total);
        assert_eq!(sel.fee.0, TxSizes::measure().size(5, 1));
        // Too little to pay for itself: refused, not a dust output.
        assert!(sweep(&cands[..1], 10, 9_000).is_err());
        assert!(sweep(&[], 1, 1).is_err());
    }
}
