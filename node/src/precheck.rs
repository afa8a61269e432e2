//! The sync pre-checker: one thread that checks the signatures of blocks the sync has received
//! but not yet submitted (they wait for their parents), so the chain task's connect finds them
//! in the signature cache. On a 2-core machine the connect leaves a core idle while it fetches
//! coins, builds and writes its batch; this thread fills it with the next blocks' signatures.
//!
//! Best effort: a block whose coins are not known yet (they are created by a block not yet
//! connected) keeps those signatures for the connect; a full queue drops the block. Nothing
//! here can make an invalid signature pass: only verified triples enter the cache.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use cairn_consensus::SigCache;
use cairn_primitives::Block;
use cairn_storage::ChainReader;
use tracing::debug;

/// Blocks waiting for the pre-checker; more are not pre-checked.
pub const PRECHECK_QUEUE_BLOCKS: usize = 16;

/// The handle the sync side uses: hands a received block to the pre-checker thread.
#[derive(Clone)]
pub struct Prechecker {
    tx: SyncSender<Arc<Block>>,
}

impl Prechecker {
    /// Starts the thread; it ends when every handle is dropped.
    pub fn spawn(reader: ChainReader, cache: Arc<SigCache>) -> std::io::Result<Prechecker> {
        let (tx, rx) = sync_channel(PRECHECK_QUEUE_BLOCKS);
        std::thread::Builder::new()
            .name("precheck".into())
            .spawn(move || run(&reader, &cache, &rx))?;
        Ok(Prechecker { tx })
    }

    pub fn submit(&self, block: &Block) {
        match self.tx.try_send(Arc::new(block.clone())) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => debug!("pre-check queue full; the connect checks it"),
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

fn run(reader: &ChainReader, cache: &SigCache, rx: &Receiver<Arc<Block>>) {
    let genesis = reader.params().genesis_hash();
    while let Ok(block) = rx.recv() {
        // A block the chain task has reached is checked there: doing it here too would only
        // repeat the work on the core the connect is using.
        let height = match reader.header_info(&block.hash()) {
            Ok(Some(h)) => h.height,
            _ => continue,
        };
        let tip = reader.tip().map_or(0, |(h, _)| h);
        if height <= tip + 1 {
            continue;
        }
        let outpoints: Vec<_> = block
            .transactions
            .iter()
            .skip(1)
            .flat_map(|t| t.inputs.iter().map(|i| i.prevout))
            .collect();
        // One snapshot for the whole block; a read error only means nothing is pre-checked.
        let Ok((_, coins)) = reader.coins_at_tip(&outpoints) else {
            continue;
        };
        let found: std::collections::HashMap<_, _> = outpoints
            .iter()
            .zip(coins)
            .filter_map(|(op, c)| c.map(|c| (*op, c)))
            .collect();
        let n = cache.precheck_block(&block, &genesis, |op| found.get(op).copied());
        debug!(hash = %block.hash(), signatures = n, "pre-checked");
    }
}
