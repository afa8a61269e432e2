//! The built-in miner: block assembly (coinbase + mempool template), the proof-of-work search,
//! and the loop that keeps a fresh template while the tip or the pool changes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cairn_consensus::{ChainParams, Target, subsidy::block_subsidy};
use cairn_mempool::Mempool;
use cairn_primitives::encoding::encoded_len;
use cairn_primitives::{Amount, Block, BlockHeader, Transaction, TxOut, XOnlyPublicKey};
use cairn_storage::BlockTemplateContext;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::chain::{BlockVerdict, ChainHandle, Origin};

/// Hashes between checks of the stop flag.
const STOP_CHECK_INTERVAL: u64 = 4_096;
/// Bytes kept free in a template for the header, the coinbase and the block's length prefixes.
const TEMPLATE_RESERVED_BYTES: usize = 1_000;
/// A template older than this is rebuilt, so new transactions get in.
const TEMPLATE_REFRESH: Duration = Duration::from_secs(5);
/// Wait after a failure before trying again.
const RETRY_DELAY: Duration = Duration::from_secs(1);

/// A block paying subsidy + fees to `pubkey`, on top of the tip described by `ctx`, with the
/// mempool's best transactions. The nonce is left at zero.
pub fn assemble(
    ctx: &BlockTemplateContext,
    pool: &Mempool,
    params: &ChainParams,
    pubkey: XOnlyPublicKey,
    now: u64,
) -> Block {
    let budget = params
        .max_block_size
        .saturating_sub(TEMPLATE_RESERVED_BYTES);
    let template = pool.block_template(budget);
    let reward = block_subsidy(params, ctx.height)
        .checked_add(template.total_fees)
        .unwrap_or(Amount::ZERO);
    let coinbase = Transaction {
        version: Transaction::VERSION,
        inputs: vec![],
        outputs: vec![TxOut {
            value: reward,
            pubkey,
        }],
        // Consensus: a coinbase's lock time is its block's height (unique txids).
        lock_time: ctx.height as u32,
    };
    let mut transactions = Vec::with_capacity(template.txs.len() + 1);
    transactions.push(coinbase);
    transactions.extend(template.txs.iter().map(|t| (**t).clone()));
    let mut block = Block {
        header: BlockHeader {
            version: BlockHeader::VERSION,
            prev_hash: ctx.prev_hash,
            merkle_root: Default::default(),
            time: now.max(ctx.min_time),
            bits: ctx.bits,
            nonce: 0,
        },
        transactions,
    };
    block.header.merkle_root = block.compute_merkle_root();
    debug_assert!(encoded_len(&block) <= params.max_block_size);
    block
}

/// Searches nonces for `block` until its hash meets its target or `stop` is set.
pub fn solve(mut block: Block, threads: usize, stop: &Arc<AtomicBool>) -> Option<Block> {
    let target = Target::from_compact(block.header.bits)?;
    block.header = grind(block.header, target, threads, stop)?;
    Some(block)
}

/// Searches nonces for `header` on `threads` threads (interleaved nonces) until one meets
/// `target`, `stop` is set, or the nonce space is exhausted.
pub fn grind(
    header: BlockHeader,
    target: Target,
    threads: usize,
    stop: &Arc<AtomicBool>,
) -> Option<BlockHeader> {
    let threads = threads.max(1) as u64;
    let found = AtomicBool::new(false);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let found = &found;
                s.spawn(move || {
                    let mut h = header;
                    let mut nonce = t;
                    let mut since_check = 0u64;
                    loop {
                        h.nonce = nonce;
                        if target.is_met_by(&h.hash()) {
                            found.store(true, Ordering::Relaxed);
                            return Some(h);
                        }
                        since_check += 1;
                        if since_check >= STOP_CHECK_INTERVAL {
                            since_check = 0;
                            if stop.load(Ordering::Relaxed) || found.load(Ordering::Relaxed) {
                                return None;
                            }
                        }
                        nonce = nonce.checked_add(threads)?;
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().ok().flatten())
            .next()
    })
}

/// Mines forever (until `shutdown` is set): fresh template, grind until solved or the tip
/// changes or the template is stale, submit. On a dev chain blocks are paced to the genesis
/// block time, since the proof of work there is trivial.
pub async fn run(
    chain: ChainHandle,
    pubkey: XOnlyPublicKey,
    threads: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    let dev = chain.params.is_dev_chain();
    let block_time = Duration::from_secs(chain.params.block_time_secs.max(1));
    let mut tip_rx = chain.tip.clone();
    info!(threads, dev, "miner started");
    // Shutdown is a signal, not a flag polled between sleeps: `cairnd --dev` must stop at once.
    while !*shutdown.borrow() {
        if dev {
            tokio::select! {
                _ = tokio::time::sleep(block_time) => {}
                _ = shutdown.changed() => break,
            }
        }
        let template = match chain.template(pubkey).await {
            Ok(t) => t,
            Err(e) => {
                warn!(error = %e, "no block template");
                tokio::time::sleep(RETRY_DELAY).await;
                continue;
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        let grinding = {
            let stop = Arc::clone(&stop);
            tokio::task::spawn_blocking(move || solve(template, threads, &stop))
        };
        // Stop the search when the tip moves, the template is stale, or we shut down.
        let watcher = {
            let stop = Arc::clone(&stop);
            let mut shutdown = shutdown.clone();
            let mut tip_rx = tip_rx.clone();
            tokio::spawn(async move {
                let deadline = tokio::time::Instant::now() + TEMPLATE_REFRESH;
                tokio::select! {
                    _ = tip_rx.changed() => {}
                    _ = tokio::time::sleep_until(deadline) => {}
                    _ = shutdown.changed() => {}
                }
                stop.store(true, Ordering::Relaxed);
            })
        };
        let solved = grinding.await.ok().flatten();
        watcher.abort();
        tip_rx.borrow_and_update();
        if let Some(block) = solved {
            let (hash, height) = (
                block.hash(),
                chain.reader.tip().map(|t| t.0 + 1).unwrap_or(0),
            );
            match chain.submit_block(block, Origin::Local).await {
                BlockVerdict::Accepted => info!(%hash, height, "mined a block"),
                other => warn!(%hash, ?other, "mined block not accepted"),
            }
        }
    }
    info!("miner stopped");
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_primitives::{BlockHash, MerkleRoot};

    fn header(bits: u32) -> BlockHeader {
        BlockHeader {
            version: 1,
            prev_hash: BlockHash::ZERO,
            merkle_root: MerkleRoot::ZERO,
            time: 1,
            bits,
            nonce: 0,
        }
    }

    #[test]
    fn finds_a_nonce_for_an_easy_target() {
        let target = Target::from_compact(0x1f00ffff).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let solved = grind(header(0x1f00ffff), target, 2, &stop).unwrap();
        assert!(target.is_met_by(&solved.hash()));
    }

    #[test]
    fn stops_when_told() {
        let target = Target::from_compact(0x03000001).unwrap();
        let stop = Arc::new(AtomicBool::new(true));
        assert!(grind(header(0x03000001), target, 1, &stop).is_none());
    }
}
