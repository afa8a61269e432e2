//! The connect pipeline (`ChainState::accept_blocks_from`): a batch of blocks connects exactly
//! as the same blocks one at a time, and a block that fails stops the batch at itself, whether
//! it fails on its signatures (checked while the next block is prepared) or on its coins
//! (found while the block before it is still being checked).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use cairn_consensus::ChainParams;
use cairn_primitives::{Block, OutPoint};
use cairn_storage::test_utils::{TEST_FEE, TEST_NOW, TestChain};
use cairn_storage::{
    AcceptStatus, BlockSource, BlockStatus, ChainEvent, ChainState, StorageConfig,
};
use common::{check_consistency, temp};

fn open(dir: &std::path::Path) -> ChainState {
    ChainState::open(dir, ChainParams::devnet(), StorageConfig::default()).unwrap()
}

fn one_by_one(blocks: &[Block]) -> (tempfile::TempDir, ChainState) {
    let dir = temp();
    let mut state = open(dir.path());
    for b in blocks {
        state.accept_block(b.clone(), TEST_NOW).unwrap();
    }
    (dir, state)
}

/// Outputs of `block`'s payments (not its coinbase), for the next block to spend.
fn payment_outputs(block: &Block) -> Vec<OutPoint> {
    block
        .transactions
        .iter()
        .skip(1)
        .flat_map(|t| {
            let txid = t.txid();
            (0..t.outputs.len() as u32).map(move |v| OutPoint::new(txid, v))
        })
        .collect()
}

/// Blocks each of which spends outputs the block before it created (while their value lasts): the next block's coins
/// are found only in the changes of a block that is not committed yet.
fn chained_blocks(chain: &mut TestChain, n: usize) -> Vec<Block> {
    let mut blocks = vec![chain.mine(3)];
    let mut chained = 0;
    for _ in 1..n {
        let outs = payment_outputs(blocks.last().unwrap());
        let mut txs: Vec<_> = outs
            .into_iter()
            .take(2)
            .filter_map(|op| chain.payment(op))
            .collect();
        chained += usize::from(!txs.is_empty());
        // Chained payments halve their value each block; older coins keep the chain going.
        txs.extend(chain.payments(2));
        assert!(!txs.is_empty());
        blocks.push(chain.mine_with(txs));
    }
    assert!(
        chained >= n / 2,
        "only {chained} of {n} blocks spend their parent's outputs"
    );
    blocks
}

#[test]
fn a_batch_connects_exactly_as_the_blocks_one_at_a_time() {
    let mut chain = TestChain::new(ChainParams::devnet());
    let blocks = chained_blocks(&mut chain, 40);
    let dir = temp();
    let mut state = open(dir.path());
    let mut connected = 0;
    for batch in blocks.chunks(16) {
        let out = state
            .accept_blocks_from(batch.to_vec(), TEST_NOW, BlockSource::Requested)
            .unwrap();
        assert_eq!(out.statuses.len(), batch.len());
        for s in &out.statuses {
            assert_eq!(*s.as_ref().unwrap(), AcceptStatus::New);
        }
        let hashes: Vec<_> = out.connected().into_iter().map(|(_, h)| h).collect();
        assert_eq!(
            hashes,
            batch.iter().map(Block::hash).collect::<Vec<_>>(),
            "connected in order"
        );
        connected += hashes.len();
    }
    assert_eq!(connected, 40);
    let (_d, reference) = one_by_one(&blocks);
    assert_eq!(state.tip().hash, blocks[39].hash());
    assert_eq!(state.tip(), reference.tip());
    assert_eq!(state.utxo_stats(), reference.utxo_stats());
    check_consistency(&state.reader(), &chain);
    // And after a restart (the UTXO cache rebuilt from what was written).
    drop(state);
    let state = open(dir.path());
    assert_eq!(state.utxo_stats(), reference.utxo_stats());
    check_consistency(&state.reader(), &chain);
}

#[test]
fn a_bad_signature_stops_the_batch_at_its_block() {
    let mut chain = TestChain::new(ChainParams::devnet());
    let good = chained_blocks(&mut chain, 3);
    let bad = chain.mine_invalid_signature();
    let after = [chain.mine(1), chain.mine(1)];
    let mut batch = good.clone();
    batch.push(bad.clone());
    batch.extend(after.iter().cloned());

    let dir = temp();
    let mut state = open(dir.path());
    let out = state
        .accept_blocks_from(batch, TEST_NOW, BlockSource::Requested)
        .unwrap();
    let statuses: Vec<_> = out.statuses.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        statuses[..3],
        [AcceptStatus::New, AcceptStatus::New, AcceptStatus::New]
    );
    for s in &statuses[3..] {
        assert!(matches!(s, AcceptStatus::Invalid { .. }), "{s:?}");
    }
    assert!(out.events.iter().any(
        |e| matches!(e, ChainEvent::BlockInvalid { hash, reason } if *hash == bad.hash() && reason.contains("signature"))
    ));
    let (_d, reference) = one_by_one(&good);
    assert_eq!(state.tip(), reference.tip());
    assert_eq!(state.utxo_stats(), reference.utxo_stats());
    let r = state.reader();
    assert_eq!(
        r.header_info(&bad.hash()).unwrap().unwrap().status,
        BlockStatus::Invalid
    );
    for b in &after {
        assert_eq!(
            r.header_info(&b.hash()).unwrap().unwrap().status,
            BlockStatus::InvalidAncestor
        );
    }
    // Nothing of the bad block reached the UTXO set: the coin it tried to spend is unspent.
    let spent_by_bad = bad.transactions[1].inputs[0].prevout;
    assert!(r.coin(&spent_by_bad).unwrap().is_some());
}

#[test]
fn a_block_spending_what_the_block_before_it_spent_is_invalid_and_that_block_stays() {
    let mut chain = TestChain::new(ChainParams::devnet());
    let first = chain.mine(2);
    let (coin, _) = chain.spendable()[0];
    // Two different payments of one coin: the first mined, the second in the next block.
    let pay = chain.payment(coin).unwrap();
    let again = chain.payment(coin).unwrap();
    assert_ne!(pay.txid(), again.txid());
    let spends = chain.mine_with(vec![pay]);
    let double = chain.builder().fees(TEST_FEE).transaction(again).build();

    let dir = temp();
    let mut state = open(dir.path());
    let out = state
        .accept_blocks_from(
            vec![first.clone(), spends.clone(), double.clone()],
            TEST_NOW,
            BlockSource::Requested,
        )
        .unwrap();
    let statuses: Vec<_> = out.statuses.into_iter().map(Result::unwrap).collect();
    assert_eq!(statuses[..2], [AcceptStatus::New, AcceptStatus::New]);
    assert!(
        matches!(&statuses[2], AcceptStatus::Invalid { reason } if reason.contains("missing")
            || reason.contains("spent") || reason.contains("unknown")),
        "{:?}",
        statuses[2]
    );
    assert_eq!(state.tip().hash, spends.hash());
    let (_d, reference) = one_by_one(&[first, spends]);
    assert_eq!(state.utxo_stats(), reference.utxo_stats());
    assert_eq!(
        state
            .reader()
            .header_info(&double.hash())
            .unwrap()
            .unwrap()
            .status,
        BlockStatus::Invalid
    );
}
