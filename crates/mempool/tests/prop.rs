//! Property tests: random sequences of submissions (including double spends and replacements),
//! mined templates, reorganisations and expiry. After every step the pool never holds two
//! spends of one output, never exceeds its byte limit, keeps its package aggregates exact, and
//! its template is a consensus-valid block.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use cairn_consensus::{MemoryUtxoSet, UtxoView, connect_block};
use cairn_mempool::{Mempool, MempoolConfig};
use cairn_primitives::{Block, OutPoint, Txid};
use common::*;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    /// Spend `n_in` outputs chosen from confirmed coins and pool outputs (spent or not: a
    /// spent one makes a conflict), into `n_out` outputs, paying `fee`.
    Spend {
        picks: Vec<usize>,
        n_out: usize,
        fee: u64,
        peer: bool,
    },
    /// Mine a template of at most `max_bytes`.
    Mine { max_bytes: usize },
    /// Undo the last mined block.
    Reorg,
    /// Let `secs` pass and expire.
    Expire { secs: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (prop::collection::vec(any::<usize>(), 1..3), 1usize..4, 0u64..3_000, any::<bool>())
            .prop_map(|(picks, n_out, fee, peer)| Op::Spend { picks, n_out, fee, peer }),
        1 => (200usize..3_000).prop_map(|max_bytes| Op::Mine { max_bytes }),
        1 => Just(Op::Reorg),
        1 => (0u64..200_000).prop_map(|secs| Op::Expire { secs }),
    ]
}

struct World {
    fx: Fx,
    tip: u64,
    now: u64,
    /// Mined blocks with the chain before each.
    history: Vec<(Arc<Block>, MemoryUtxoSet)>,
}

impl World {
    fn candidates(&self) -> Vec<(OutPoint, u64)> {
        let mut v: Vec<(OutPoint, u64)> = self
            .fx
            .chain
            .coins
            .iter()
            .filter(|(_, c)| c.output.pubkey == self.fx.key.public_key())
            .map(|(op, c)| (*op, c.output.value.0))
            .collect();
        for txid in self.fx.pool.txids() {
            let tx = self.fx.pool.get(&txid).unwrap();
            for (vout, o) in tx.outputs.iter().enumerate() {
                v.push((OutPoint::new(txid, vout as u32), o.value.0));
            }
        }
        v.sort();
        v
    }

    fn step(&mut self, op: &Op) {
        match op {
            Op::Spend {
                picks,
                n_out,
                fee,
                peer,
            } => {
                let cands = self.candidates();
                if cands.is_empty() {
                    return;
                }
                let mut inputs: Vec<(OutPoint, u64)> =
                    picks.iter().map(|p| cands[p % cands.len()]).collect();
                inputs.sort();
                inputs.dedup();
                let total: u64 = inputs.iter().map(|(_, v)| v).sum();
                let Some(rest) = total.checked_sub(*fee) else {
                    return;
                };
                let part = rest / *n_out as u64;
                if part == 0 {
                    return;
                }
                let mut outs = vec![part; *n_out];
                outs[0] += rest - part * *n_out as u64;
                let ops: Vec<OutPoint> = inputs.iter().map(|(o, _)| *o).collect();
                let tx = self.fx.spend(&ops, &outs);
                let source = if *peer { 5 } else { 0 };
                let _ = self
                    .fx
                    .pool
                    .accept(tx, &self.fx.chain, self.tip, self.now, source);
            }
            Op::Mine { max_bytes } => {
                let t = self.fx.pool.block_template(*max_bytes);
                assert!(t.total_bytes <= *max_bytes);
                let txs: Vec<_> = t.txs.iter().map(|t| (**t).clone()).collect();
                let block = block_at(self.tip + 1, &txs, t.total_fees.0, &self.fx.key);
                connect_block(&block, self.tip + 1, &self.fx.chain, &self.fx.params)
                    .expect("a template is a valid block");
                let before = self.fx.chain.clone();
                apply(&mut self.fx.chain, &block, self.tip + 1);
                self.tip += 1;
                self.fx
                    .pool
                    .block_connected(&block, &self.fx.chain, self.tip, self.now);
                for tx in &txs {
                    assert!(
                        !self.fx.pool.contains(&tx.txid()),
                        "a confirmed transaction left the pool"
                    );
                }
                self.history.push((Arc::new(block), before));
            }
            Op::Reorg => {
                let Some((block, before)) = self.history.pop() else {
                    return;
                };
                self.fx.chain = before;
                self.tip -= 1;
                self.fx.pool.blocks_disconnected(
                    std::slice::from_ref(&block),
                    &self.fx.chain,
                    self.tip,
                    self.now,
                );
            }
            Op::Expire { secs } => {
                self.now += secs;
                self.fx.pool.expire(self.now);
            }
        }
    }

    fn check_invariants(&self) {
        let pool = &self.fx.pool;
        let ids = pool.txids();
        let txs: HashMap<Txid, _> = ids.iter().map(|t| (*t, pool.get(t).unwrap())).collect();

        // No two spends of one output; every input exists (chain or pool) and is unspent in
        // the chain when it is a confirmed coin.
        let mut spent = HashSet::new();
        for tx in txs.values() {
            for i in &tx.inputs {
                assert!(
                    spent.insert(i.prevout),
                    "two pool transactions spend {}",
                    i.prevout
                );
                let from_pool = txs
                    .get(&i.prevout.txid)
                    .is_some_and(|p| (i.prevout.vout as usize) < p.outputs.len());
                assert!(
                    from_pool || self.fx.chain.coin(&i.prevout).is_some(),
                    "input {} exists",
                    i.prevout
                );
            }
        }
        // The byte limit and the byte count.
        let info = pool.info();
        assert!(
            info.usage <= info.max_bytes,
            "usage {} above {}",
            info.usage,
            info.max_bytes
        );
        assert_eq!(info.bytes, txs.values().map(|t| t.size()).sum::<usize>());
        assert_eq!(info.size, txs.len());

        // Parents before children in `txids`, and exact package aggregates.
        let pos: HashMap<Txid, usize> = ids.iter().enumerate().map(|(i, t)| (*t, i)).collect();
        let parents = |t: &Txid| -> Vec<Txid> {
            let mut p: Vec<Txid> = txs[t]
                .inputs
                .iter()
                .map(|i| i.prevout.txid)
                .filter(|p| txs.contains_key(p))
                .collect();
            p.sort();
            p.dedup();
            p
        };
        let mut ancestors: HashMap<Txid, HashSet<Txid>> = HashMap::new();
        for t in &ids {
            let mut set = HashSet::new();
            for p in parents(t) {
                assert!(pos[&p] < pos[t], "parent after child");
                set.insert(p);
                set.extend(ancestors[&p].iter().copied());
            }
            ancestors.insert(*t, set);
        }
        for t in &ids {
            let e = pool.entry(t).unwrap();
            let anc = &ancestors[t];
            assert_eq!(e.ancestor_count, anc.len() + 1, "ancestor count of {t}");
            let anc_size: usize = anc.iter().map(|a| txs[a].size()).sum::<usize>() + txs[t].size();
            assert_eq!(e.ancestor_size, anc_size);
            let anc_fees: u64 = anc
                .iter()
                .map(|a| pool.entry(a).unwrap().fee.0)
                .sum::<u64>()
                + e.fee.0;
            assert_eq!(e.ancestor_fees.0, anc_fees);
            let desc: Vec<&Txid> = ids.iter().filter(|d| ancestors[*d].contains(t)).collect();
            assert_eq!(
                e.descendant_count,
                desc.len() + 1,
                "descendant count of {t}"
            );
            let desc_size: usize =
                desc.iter().map(|d| txs[*d].size()).sum::<usize>() + txs[t].size();
            assert_eq!(e.descendant_size, desc_size);
            assert!(e.ancestor_count <= pool.config().max_ancestors);
            assert!(e.descendant_count <= pool.config().max_descendants);
        }

        // A full-size template is a valid block.
        let t = pool.block_template(self.fx.params.max_block_size - 1_000);
        let block_txs: Vec<_> = t.txs.iter().map(|t| (**t).clone()).collect();
        let block = block_at(self.tip + 1, &block_txs, t.total_fees.0, &self.fx.key);
        let delta = connect_block(&block, self.tip + 1, &self.fx.chain, &self.fx.params)
            .expect("template is valid");
        assert_eq!(delta.fees, t.total_fees);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn pool_invariants_hold_under_random_operations(ops in prop::collection::vec(op(), 1..60)) {
        // A pool small enough that eviction happens.
        let probe = Fx::new(1, MempoolConfig::default());
        let mut p = Fx::new(1, MempoolConfig::default());
        p.accept(&probe.pay(probe.coins[0], COIN_VALUE, 1_000)).unwrap();
        let per_tx = p.pool.info().usage;
        let config = MempoolConfig { max_bytes: per_tx * 12, max_ancestors: 6, max_descendants: 6, ..MempoolConfig::default() };
        let mut fx = Fx::new(8, config.clone());
        fx.pool = Mempool::new(fx.params.clone(), config);
        let mut world = World { fx, tip: TIP, now: NOW, history: Vec::new() };
        for op in &ops {
            world.step(op);
            world.check_invariants();
        }
    }
}
