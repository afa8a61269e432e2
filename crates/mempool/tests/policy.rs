//! Each mempool rule with a case that passes and a case that violates it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use cairn_consensus::{ConsensusError, connect_block};
use cairn_mempool::{MempoolConfig, MempoolError};
use cairn_primitives::{OutPoint, Signature};
use common::*;

fn cfg() -> MempoolConfig {
    MempoolConfig::default()
}

fn out(tx: &cairn_primitives::Transaction, vout: u32) -> OutPoint {
    OutPoint::new(tx.txid(), vout)
}

// ------------------------------------------------------------------ validity

#[test]
fn valid_transaction_is_accepted_and_reported() {
    let mut fx = Fx::new(1, cfg());
    let tx = fx.pay(fx.coins[0], COIN_VALUE, 1_000);
    let o = fx.accept(&tx).unwrap();
    assert_eq!(o.accepted.len(), 1);
    assert_eq!(o.accepted[0].txid, tx.txid());
    assert_eq!(o.accepted[0].fee.0, 1_000);
    assert!(fx.pool.contains(&tx.txid()));
    assert_eq!(fx.pool.spender_of(&fx.coins[0]), Some(tx.txid()));
    assert_eq!(fx.pool.info().bytes, tx.size());
    assert!(matches!(
        fx.accept(&tx),
        Err(MempoolError::AlreadyInPool { .. })
    ));
}

#[test]
fn a_pooled_transaction_is_refused_before_any_check() {
    let mut fx = Fx::new(1, cfg());
    let tx = fx.pay(fx.coins[0], COIN_VALUE, 1_000);
    fx.accept(&tx).unwrap();
    let sigs = cairn_consensus::SigCache::new();
    let pooled = |t: &cairn_primitives::Txid| fx.pool.contains(t);
    let e = cairn_mempool::precheck_cached(
        tx.clone(),
        &fx.chain,
        &fx.params,
        &cfg(),
        Some(&sigs),
        pooled,
    )
    .unwrap_err();
    assert!(matches!(e, MempoolError::AlreadyInPool { txid } if txid == tx.txid()));
    assert_eq!(
        (sigs.stats(), sigs.reused()),
        ((0, 0), 0),
        "no signature looked at"
    );
    // Not pooled: checked, its signature verified into the cache.
    let other = fx.pay(fx.coins[0], COIN_VALUE, 2_000);
    cairn_mempool::precheck_cached(other, &fx.chain, &fx.params, &cfg(), Some(&sigs), pooled)
        .unwrap();
    assert_eq!(sigs.stats(), (1, 0));
}

#[test]
fn bad_signature_is_a_consensus_failure() {
    let mut fx = Fx::new(1, cfg());
    let mut tx = fx.pay(fx.coins[0], COIN_VALUE, 1_000);
    tx.inputs[0].signature = Signature([7; 64]);
    let e = fx.accept(&tx).unwrap_err();
    assert!(matches!(
        e,
        MempoolError::Consensus(ConsensusError::InvalidSignature { .. })
    ));
    assert!(!e.is_policy());
    assert!(fx.pool.is_empty());
}

#[test]
fn signature_over_an_unconfirmed_parent_is_checked_too() {
    let mut fx = Fx::new(1, cfg());
    let parent = fx.pay(fx.coins[0], COIN_VALUE, 1_000);
    fx.accept(&parent).unwrap();
    let mut child = fx.pay(out(&parent, 0), COIN_VALUE - 1_000, 1_000);
    child.inputs[0].signature = Signature([9; 64]);
    assert!(matches!(
        fx.accept(&child),
        Err(MempoolError::Consensus(
            ConsensusError::InvalidSignature { .. }
        ))
    ));
    assert_eq!(fx.pool.len(), 1);
}

#[test]
fn spending_more_than_the_inputs_is_refused() {
    let mut fx = Fx::new(1, cfg());
    let tx = fx.spend(&[fx.coins[0]], &[COIN_VALUE + 1]);
    assert!(matches!(
        fx.accept(&tx),
        Err(MempoolError::Consensus(ConsensusError::NegativeFee { .. }))
    ));
}

// ------------------------------------------------------------------ policy

#[test]
fn minimum_relay_fee() {
    let mut fx = Fx::new(2, cfg());
    let probe = fx.pay(fx.coins[0], COIN_VALUE, 1);
    let size = probe.size() as u64;
    let exact = fx.pay(fx.coins[0], COIN_VALUE, size);
    fx.accept(&exact).unwrap();
    let short = fx.pay(fx.coins[1], COIN_VALUE, size - 1);
    let e = fx.accept(&short).unwrap_err();
    assert!(matches!(e, MempoolError::FeeTooLow { .. }), "{e}");
    assert!(e.is_policy());
}

#[test]
fn maximum_transaction_size() {
    let mut fx = Fx::new(3, cfg());
    let small = fx.pay(fx.coins[0], COIN_VALUE, 1_000);
    let limit = small.size();
    fx.pool = cairn_mempool::Mempool::new(
        fx.params.clone(),
        MempoolConfig {
            max_tx_size: limit,
            ..cfg()
        },
    );
    fx.accept(&small).unwrap();
    let big = fx.spend(
        &[fx.coins[1], fx.coins[2]],
        &[COIN_VALUE, COIN_VALUE - 10_000],
    );
    assert!(big.size() > limit);
    let e = fx.accept(&big).unwrap_err();
    assert!(
        matches!(e, MempoolError::TooLarge { limit: l, .. } if l == limit),
        "{e}"
    );
}

#[test]
fn dust_outputs_are_refused() {
    let mut fx = Fx::new(2, cfg());
    let t = cfg().dust_threshold.0;
    let ok = fx.spend(&[fx.coins[0]], &[t, COIN_VALUE - t - 1_000]);
    fx.accept(&ok).unwrap();
    let dust = fx.spend(&[fx.coins[1]], &[t - 1, COIN_VALUE - t - 1_000]);
    assert!(matches!(
        fx.accept(&dust),
        Err(MempoolError::Dust { vout: 0, .. })
    ));
}

#[test]
fn test_accept_changes_nothing() {
    let fx = Fx::new(1, cfg());
    let tx = fx.pay(fx.coins[0], COIN_VALUE, 1_000);
    let r = fx.pool.test_accept(&tx, &fx.chain, TIP, NOW).unwrap();
    assert_eq!(r.txid, tx.txid());
    assert_eq!(r.fee.0, 1_000);
    assert!(fx.pool.is_empty());
}

// ------------------------------------------------------------------ unconfirmed parents, limits

#[test]
fn child_may_spend_an_unconfirmed_parent() {
    let mut fx = Fx::new(1, cfg());
    let parent = fx.pay(fx.coins[0], COIN_VALUE, 1_000);
    let child = fx.pay(out(&parent, 0), COIN_VALUE - 1_000, 2_000);
    fx.accept(&parent).unwrap();
    fx.accept(&child).unwrap();
    let pe = fx.pool.entry(&parent.txid()).unwrap();
    let ce = fx.pool.entry(&child.txid()).unwrap();
    assert_eq!(pe.descendant_count, 2);
    assert_eq!(pe.descendant_fees.0, 3_000);
    assert_eq!(ce.ancestor_count, 2);
    assert_eq!(ce.ancestor_size, parent.size() + child.size());
    assert_eq!(ce.depends, vec![parent.txid()]);
    assert_eq!(pe.spent_by, vec![child.txid()]);
    assert_eq!(fx.pool.txids(), vec![parent.txid(), child.txid()]);
}

/// A chain of `n` transactions from one confirmed coin, each paying `fee`.
fn chain_of(fx: &Fx, coin: OutPoint, n: usize, fee: u64) -> Vec<cairn_primitives::Transaction> {
    let mut v = Vec::new();
    let (mut input, mut value) = (coin, COIN_VALUE);
    for _ in 0..n {
        let tx = fx.pay(input, value, fee);
        input = out(&tx, 0);
        value -= fee;
        v.push(tx);
    }
    v
}

#[test]
fn ancestor_count_limit() {
    let mut fx = Fx::new(1, cfg());
    let txs = chain_of(&fx, fx.coins[0], 26, 1_000);
    for tx in &txs[..25] {
        fx.accept(tx).unwrap();
    }
    let e = fx.accept(&txs[25]).unwrap_err();
    assert!(
        matches!(
            e,
            MempoolError::TooManyAncestors {
                count: 26,
                limit: 25
            }
        ),
        "{e}"
    );
    assert_eq!(fx.pool.len(), 25);
}

#[test]
fn ancestor_size_limit() {
    let mut fx = Fx::new(1, cfg());
    let txs = chain_of(&fx, fx.coins[0], 4, 1_000);
    let limit = txs[0].size() * 3 + 10;
    let config = MempoolConfig {
        max_ancestor_bytes: limit,
        max_descendant_bytes: 1_000_000,
        ..cfg()
    };
    fx.pool = cairn_mempool::Mempool::new(fx.params.clone(), config);
    for tx in &txs[..3] {
        fx.accept(tx).unwrap();
    }
    assert!(matches!(
        fx.accept(&txs[3]),
        Err(MempoolError::AncestorsTooLarge { .. })
    ));
}

#[test]
fn descendant_count_limit() {
    let mut fx = Fx::new(1, cfg());
    // One parent with 30 outputs; each child spends one of them.
    let values: Vec<u64> = (0..30).map(|_| COIN_VALUE / 30 - 1_000).collect();
    let parent = fx.spend(&[fx.coins[0]], &values);
    fx.accept(&parent).unwrap();
    for vout in 0..24 {
        let c = fx.pay(out(&parent, vout), values[0], 1_000);
        fx.accept(&c).unwrap();
    }
    let c = fx.pay(out(&parent, 24), values[0], 1_000);
    let e = fx.accept(&c).unwrap_err();
    assert!(
        matches!(
            e,
            MempoolError::TooManyDescendants {
                count: 26,
                limit: 25,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn descendant_size_limit() {
    let mut fx = Fx::new(1, cfg());
    let values: Vec<u64> = (0..4).map(|_| COIN_VALUE / 4 - 1_000).collect();
    let parent = fx.spend(&[fx.coins[0]], &values);
    let child_size = fx.pay(out(&parent, 0), values[0], 1_000).size();
    let config = MempoolConfig {
        max_descendant_bytes: parent.size() + 2 * child_size,
        ..cfg()
    };
    fx.pool = cairn_mempool::Mempool::new(fx.params.clone(), config);
    fx.accept(&parent).unwrap();
    for vout in 0..2 {
        fx.accept(&fx.pay(out(&parent, vout), values[0], 1_000))
            .unwrap();
    }
    assert!(matches!(
        fx.accept(&fx.pay(out(&parent, 2), values[0], 1_000)),
        Err(MempoolError::DescendantsTooLarge { .. })
    ));
}

// ------------------------------------------------------------------ conflicts and replacement

#[test]
fn conflict_without_better_fee_is_refused() {
    let mut fx = Fx::new(1, cfg());
    let a = fx.pay(fx.coins[0], COIN_VALUE, 1_000);
    let b = fx.pay(fx.coins[0], COIN_VALUE, 1_000 - 1);
    fx.accept(&a).unwrap();
    let e = fx.accept(&b).unwrap_err();
    assert!(matches!(e, MempoolError::Replacement { .. }), "{e}");
    assert!(fx.pool.contains(&a.txid()) && !fx.pool.contains(&b.txid()));
}

#[test]
fn replacement_with_higher_fee_evicts_the_original_and_its_descendants() {
    let mut fx = Fx::new(1, cfg());
    let a = fx.pay(fx.coins[0], COIN_VALUE, 1_000);
    let a_child = fx.pay(out(&a, 0), COIN_VALUE - 1_000, 1_000);
    fx.accept(&a).unwrap();
    fx.accept(&a_child).unwrap();
    // Must beat both the rate of each replaced tx and their total fee, plus its own relay.
    let b = fx.pay(fx.coins[0], COIN_VALUE, 5_000);
    let o = fx.accept(&b).unwrap();
    let mut replaced = o.replaced.clone();
    replaced.sort();
    let mut want = vec![a.txid(), a_child.txid()];
    want.sort();
    assert_eq!(replaced, want);
    assert_eq!(fx.pool.txids(), vec![b.txid()]);
    assert_eq!(fx.pool.info().bytes, b.size());
}

#[test]
fn replacement_must_pay_for_its_own_relay() {
    let mut fx = Fx::new(1, cfg());
    let a = fx.pay(fx.coins[0], COIN_VALUE, 10_000);
    fx.accept(&a).unwrap();
    // Higher rate and fee, but the extra is less than its own size at the relay rate.
    let b = fx.pay(fx.coins[0], COIN_VALUE, 10_001);
    let e = fx.accept(&b).unwrap_err();
    assert!(e.to_string().contains("own relay"), "{e}");
    let c = fx.pay(fx.coins[0], COIN_VALUE, 10_000 + b.size() as u64);
    fx.accept(&c).unwrap();
}

#[test]
fn replacement_may_not_evict_too_many() {
    let config = MempoolConfig {
        max_replacements: 3,
        ..cfg()
    };
    let mut fx = Fx::new(1, config);
    let txs = chain_of(&fx, fx.coins[0], 4, 1_000);
    for tx in &txs {
        fx.accept(tx).unwrap();
    }
    let b = fx.pay(fx.coins[0], COIN_VALUE, 100_000);
    assert!(matches!(
        fx.accept(&b),
        Err(MempoolError::TooManyReplacements { count: 4, limit: 3 })
    ));
    assert_eq!(fx.pool.len(), 4);
}

#[test]
fn replacement_may_not_spend_what_it_replaces() {
    let mut fx = Fx::new(2, cfg());
    let a = fx.spend(&[fx.coins[0]], &[COIN_VALUE / 2, COIN_VALUE / 2 - 1_000]);
    fx.accept(&a).unwrap();
    // Spends coins[0] again (conflict with a) and a's output: it would depend on what it evicts.
    let b = fx.spend(&[fx.coins[0], out(&a, 0)], &[COIN_VALUE]);
    let e = fx.accept(&b).unwrap_err();
    assert!(matches!(e, MempoolError::Replacement { .. }), "{e}");
}

// ------------------------------------------------------------------ orphans

#[test]
fn orphan_waits_for_its_parent_and_is_retried() {
    let mut fx = Fx::new(1, cfg());
    let parent = fx.pay(fx.coins[0], COIN_VALUE, 1_000);
    let child = fx.pay(out(&parent, 0), COIN_VALUE - 1_000, 1_000);
    assert!(matches!(
        fx.accept_from(&child, 7),
        Err(MempoolError::MissingInputs { .. })
    ));
    assert_eq!(fx.pool.orphan_count(), 1);
    let o = fx.accept_from(&parent, 8).unwrap();
    let got: Vec<_> = o.accepted.iter().map(|a| a.txid).collect();
    assert_eq!(got, vec![parent.txid(), child.txid()]);
    assert_eq!(fx.pool.orphan_count(), 0);
}

#[test]
fn local_submissions_with_missing_inputs_are_not_kept() {
    let mut fx = Fx::new(1, cfg());
    let parent = fx.pay(fx.coins[0], COIN_VALUE, 1_000);
    let child = fx.pay(out(&parent, 0), COIN_VALUE - 1_000, 1_000);
    assert!(fx.accept(&child).is_err());
    assert_eq!(fx.pool.orphan_count(), 0);
}

#[test]
fn orphan_pool_is_bounded_in_count_per_peer_and_time() {
    let config = MempoolConfig {
        orphan_max_count: 5,
        orphan_max_per_peer: 3,
        ..cfg()
    };
    let mut fx = Fx::new(0, config);
    let missing = |i: u64| {
        OutPoint::new(
            cairn_primitives::Txid(cairn_primitives::sha256(&(1_000_000 + i).to_le_bytes())),
            0,
        )
    };
    // Peer 1 sends 10 orphans: it keeps only its 3 newest.
    for i in 0..10 {
        let tx = fx.pay(missing(i), COIN_VALUE, 1_000);
        let _ = fx.pool.accept(tx, &fx.chain, TIP, NOW + i, 1);
    }
    assert_eq!(fx.pool.orphan_count(), 3);
    // Three more peers: the pool stays at 5.
    for peer in 2..5u64 {
        let tx = fx.pay(missing(100 + peer), COIN_VALUE, 1_000);
        let _ = fx.pool.accept(tx, &fx.chain, TIP, NOW + 20, peer);
    }
    assert_eq!(fx.pool.orphan_count(), 5);
    // Orphans expire.
    fx.pool.expire(NOW + 20 + cfg().orphan_expiry_secs + 1);
    assert_eq!(fx.pool.orphan_count(), 0);
}

// ------------------------------------------------------------------ size limit and expiry

#[test]
fn full_pool_evicts_lowest_fee_rate_and_raises_its_minimum() {
    let mut fx = Fx::new(40, cfg());
    // Measure the usage of one transaction, then size the pool for 10.
    let probe = fx.pay(fx.coins[0], COIN_VALUE, 1_000);
    fx.accept(&probe).unwrap();
    let per_tx = fx.pool.info().usage;
    let config = MempoolConfig {
        max_bytes: per_tx * 10,
        ..cfg()
    };
    fx.pool = cairn_mempool::Mempool::new(fx.params.clone(), config);
    // 10 txs with fees 1000, 2000, ... fill it; an 11th at a higher rate evicts the cheapest.
    let txs: Vec<_> = (0..11)
        .map(|i| fx.pay(fx.coins[i], COIN_VALUE, 1_000 * (i as u64 + 1)))
        .collect();
    for tx in &txs[..10] {
        fx.accept(tx).unwrap();
    }
    assert_eq!(fx.pool.len(), 10);
    fx.accept(&txs[10]).unwrap();
    assert_eq!(fx.pool.len(), 10);
    assert!(!fx.pool.contains(&txs[0].txid()), "lowest fee rate evicted");
    assert!(fx.pool.info().usage <= per_tx * 10);
    let min = fx.pool.min_fee_rate(NOW);
    assert!(min > cfg().min_relay_fee_rate, "minimum rose to {min}");
    // A transaction below the new minimum is refused outright.
    let cheap = fx.pay(fx.coins[20], COIN_VALUE, probe.size() as u64 * (min - 1));
    assert!(matches!(
        fx.accept(&cheap),
        Err(MempoolError::PoolMinFeeNotMet { .. })
    ));
    // The minimum decays back once time passes.
    let later = NOW + 64 * cfg().min_fee_halflife_secs;
    assert_eq!(fx.pool.min_fee_rate(later), cfg().min_relay_fee_rate);
}

#[test]
fn transactions_expire_with_their_descendants() {
    let mut fx = Fx::new(2, cfg());
    let parent = fx.pay(fx.coins[0], COIN_VALUE, 1_000);
    let child = fx.pay(out(&parent, 0), COIN_VALUE - 1_000, 1_000);
    fx.accept(&parent).unwrap();
    fx.pool
        .accept(child.clone(), &fx.chain, TIP, NOW + 1_000, 0)
        .unwrap();
    let young = fx.pay(fx.coins[1], COIN_VALUE, 1_000);
    fx.pool
        .accept(young.clone(), &fx.chain, TIP, NOW + 1_000, 0)
        .unwrap();
    assert!(fx.pool.expire(NOW + cfg().expiry_secs).is_empty());
    let mut gone = fx.pool.expire(NOW + cfg().expiry_secs + 1);
    gone.sort();
    let mut want = vec![parent.txid(), child.txid()];
    want.sort();
    assert_eq!(gone, want);
    assert_eq!(fx.pool.txids(), vec![young.txid()]);
}

// ------------------------------------------------------------------ chain events

#[test]
fn block_connected_removes_confirmed_and_conflicting() {
    let mut fx = Fx::new(3, cfg());
    let a = fx.pay(fx.coins[0], COIN_VALUE, 1_000);
    let a_child = fx.pay(out(&a, 0), COIN_VALUE - 1_000, 1_000);
    let b = fx.pay(fx.coins[1], COIN_VALUE, 1_000);
    let b_child = fx.pay(out(&b, 0), COIN_VALUE - 1_000, 1_000);
    let keep = fx.pay(fx.coins[2], COIN_VALUE, 1_000);
    for tx in [&a, &a_child, &b, &b_child, &keep] {
        fx.accept(tx).unwrap();
    }
    // The block confirms `a` and a double spend of `b`'s coin.
    let b_conflict = fx.pay(fx.coins[1], COIN_VALUE, 500);
    let block = fx.block(&[a.clone(), b_conflict], 1_500);
    connect_block(&block, TIP + 1, &fx.chain, &fx.params).unwrap();
    apply(&mut fx.chain, &block, TIP + 1);
    let removed = fx.pool.block_connected(&block, &fx.chain, TIP + 1, NOW);
    assert_eq!(removed.len(), 3, "a, b and b's child");
    let mut left = fx.pool.txids();
    left.sort();
    let mut want = vec![a_child.txid(), keep.txid()];
    want.sort();
    assert_eq!(left, want);
    // a's child now has no pool ancestor.
    let e = fx.pool.entry(&a_child.txid()).unwrap();
    assert_eq!(e.ancestor_count, 1);
    assert_eq!(e.ancestor_size, a_child.size());
    assert!(e.depends.is_empty());
    assert_eq!(fx.pool.info().bytes, a_child.size() + keep.size());
}

#[test]
fn disconnected_block_puts_its_transactions_back_in_order() {
    let mut fx = Fx::new(2, cfg());
    let before = fx.chain.clone();
    let parent = fx.pay(fx.coins[0], COIN_VALUE, 1_000);
    let child = fx.pay(out(&parent, 0), COIN_VALUE - 1_000, 1_000);
    let grandchild = fx.pay(out(&child, 0), COIN_VALUE - 2_000, 1_000);
    let block = Arc::new(fx.block(&[parent.clone(), child.clone()], 2_000));
    apply(&mut fx.chain, &block, TIP + 1);
    fx.pool
        .accept(grandchild.clone(), &fx.chain, TIP + 1, NOW, 0)
        .unwrap();
    // The block goes away: the chain is back to `before`.
    fx.chain = before;
    fx.pool
        .blocks_disconnected(std::slice::from_ref(&block), &fx.chain, TIP, NOW);
    assert_eq!(
        fx.pool.txids(),
        vec![parent.txid(), child.txid(), grandchild.txid()]
    );
    assert_eq!(fx.pool.entry(&grandchild.txid()).unwrap().ancestor_count, 3);
}

#[test]
fn disconnected_transactions_that_are_no_longer_valid_are_dropped() {
    let mut fx = Fx::new(1, cfg());
    let tx = fx.pay(fx.coins[0], COIN_VALUE, 1_000);
    let block = Arc::new(fx.block(std::slice::from_ref(&tx), 1_000));
    // The new branch spent the coin differently: the old transaction is now a double spend.
    let other = fx.pay(fx.coins[0], COIN_VALUE, 2_000);
    let other_block = fx.block(&[other], 2_000);
    apply(&mut fx.chain, &other_block, TIP + 1);
    fx.pool
        .blocks_disconnected(std::slice::from_ref(&block), &fx.chain, TIP + 1, NOW);
    assert!(fx.pool.is_empty());
}

// ------------------------------------------------------------------ templates and fees

#[test]
fn template_lets_a_child_pay_for_its_parent() {
    let mut fx = Fx::new(3, cfg());
    // The parent pays only the minimum relay fee; its child pays a lot.
    let pf = fx.pay(fx.coins[0], COIN_VALUE, 1).size() as u64;
    let parent = fx.pay(fx.coins[0], COIN_VALUE, pf);
    let child = fx.pay(out(&parent, 0), COIN_VALUE - pf, 50_000);
    let medium = fx.pay(fx.coins[1], COIN_VALUE, 5_000);
    for tx in [&parent, &child, &medium] {
        fx.accept(tx).unwrap();
    }
    // Room for two transactions only: the parent+child package (rate ~25k/tx) beats `medium`.
    let t = fx.pool.block_template(parent.size() + child.size());
    let got: Vec<_> = t.txs.iter().map(|t| t.txid()).collect();
    assert_eq!(got, vec![parent.txid(), child.txid()]);
    assert_eq!(t.total_fees.0, pf + 50_000);
    // With room for all, every transaction is in, parents first.
    let t = fx.pool.block_template(1_000_000);
    assert_eq!(t.txs.len(), 3);
    let pos = |id| t.txs.iter().position(|t| t.txid() == id).unwrap();
    assert!(pos(parent.txid()) < pos(child.txid()));
    let txs: Vec<_> = t.txs.iter().map(|t| (**t).clone()).collect();
    let block = fx.block(&txs, t.total_fees.0);
    let delta = connect_block(&block, TIP + 1, &fx.chain, &fx.params).unwrap();
    assert_eq!(delta.fees, t.total_fees);
}

#[test]
fn template_respects_the_size_limit() {
    let mut fx = Fx::new(50, cfg());
    for i in 0..50 {
        fx.accept(&fx.pay(fx.coins[i], COIN_VALUE, 1_000 + i as u64))
            .unwrap();
    }
    let one = fx.pool.get(&fx.pool.txids()[0]).unwrap().size();
    let t = fx.pool.block_template(one * 10 + one / 2);
    assert_eq!(t.txs.len(), 10);
    assert!(t.total_bytes <= one * 10 + one / 2);
    // The ten best fee rates.
    let min_fee = t
        .txs
        .iter()
        .map(|tx| fx.pool.entry(&tx.txid()).unwrap().fee.0)
        .min()
        .unwrap();
    assert_eq!(min_fee, 1_040);
}

#[test]
fn fee_estimate_is_the_floor_on_an_empty_pool_and_rises_when_it_is_crowded() {
    let mut fx = Fx::new(60, cfg());
    assert_eq!(fx.pool.estimate_fee(1), cfg().min_relay_fee_rate);
    // Shrink the block so 60 transactions are more than two blocks' worth.
    let size = fx.pay(fx.coins[0], COIN_VALUE, 1_000).size();
    fx.params.max_block_size = size * 20;
    fx.pool = cairn_mempool::Mempool::new(fx.params.clone(), cfg());
    for i in 0..60 {
        fx.accept(&fx.pay(fx.coins[i], COIN_VALUE, size as u64 * (1 + i as u64)))
            .unwrap();
    }
    let next_block = fx.pool.estimate_fee(1);
    let in_three = fx.pool.estimate_fee(3);
    assert!(next_block > 40, "the 20 best pay 41..60/byte: {next_block}");
    assert!(next_block > in_three, "{next_block} vs {in_three}");
    assert_eq!(
        in_three,
        cfg().min_relay_fee_rate,
        "three blocks hold all 60"
    );
}

// ------------------------------------------------------------------ persistence and address view

#[test]
fn pool_file_round_trips_parents_first() {
    let mut fx = Fx::new(1, cfg());
    let txs = chain_of(&fx, fx.coins[0], 5, 1_000);
    for tx in &txs {
        fx.accept(tx).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mempool.dat");
    fx.pool.save(&path).unwrap();
    let loaded = cairn_mempool::Mempool::load(&path).unwrap();
    assert_eq!(loaded, txs);
    let mut again = cairn_mempool::Mempool::new(fx.params.clone(), cfg());
    for tx in loaded {
        again.accept(tx, &fx.chain, TIP, NOW, 0).unwrap();
    }
    assert_eq!(again.txids(), fx.pool.txids());

    // A damaged file is an error, never a partial pool.
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes.truncate(n - 3);
    std::fs::write(&path, &bytes).unwrap();
    assert!(cairn_mempool::Mempool::load(&path).is_err());
    std::fs::write(&path, b"not a pool file").unwrap();
    assert!(cairn_mempool::Mempool::load(&path).is_err());
}

#[test]
fn address_activity_sees_pool_receipts_and_spends() {
    let mut fx = Fx::new(1, cfg());
    let tx = fx.pay(fx.coins[0], COIN_VALUE, 1_000);
    fx.accept(&tx).unwrap();
    let act = fx.pool.address_activity(&fx.key.public_key(), &fx.chain);
    assert_eq!(act.txids, vec![tx.txid()]);
    assert_eq!(act.received.len(), 1);
    assert_eq!(act.received[0].1.value.0, COIN_VALUE - 1_000);
    assert_eq!(
        act.spent,
        vec![(fx.coins[0], cairn_primitives::Amount(COIN_VALUE))]
    );
    let stranger = cairn_primitives::SecretKey::from_bytes([3; 32]).unwrap();
    assert!(
        fx.pool
            .address_activity(&stranger.public_key(), &fx.chain)
            .txids
            .is_empty()
    );
}
