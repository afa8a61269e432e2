//! The node's side of the network: the [`ChainAccess`] the p2p service syncs through, the loop
//! that answers gossip with validation verdicts, and the relay of locally created blocks and
//! transactions.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cairn_consensus::ConsensusError;
use cairn_mempool::{MempoolError, PeerTag};
use cairn_p2p::relay::compact::{ShortIdKeys, match_short_ids};
use cairn_p2p::{Acceptance, ChainAccess, NetworkEvent, NetworkHandle, PeerId, Refusal, Status};
use cairn_primitives::encoding::encode;
use cairn_primitives::{Block, BlockHash, BlockHeader, Transaction, Txid};
use tokio::sync::{Semaphore, mpsc};
use tracing::{debug, info, warn};

use crate::chain::{BlockFate, ChainHandle, HeadersRefused, Origin, Relay};

/// Gossiped transactions checked at once (each takes a blocking-pool thread for its
/// signatures); more wait, and the p2p event queue behind them is bounded.
pub const MAX_CONCURRENT_TX_CHECKS: usize = 64;
/// How often the best height reported by peers is refreshed.
const PEER_HEIGHT_INTERVAL: Duration = Duration::from_secs(5);

/// Sync access to the chain for the p2p service.
pub struct NodeChain {
    pub chain: ChainHandle,
}

fn logged<T: Default>(what: &str, r: Result<T, cairn_storage::StorageError>) -> T {
    r.unwrap_or_else(|e| {
        warn!(error = %e, "{what} failed");
        T::default()
    })
}

impl ChainAccess for NodeChain {
    fn status(&self) -> Status {
        let params = &self.chain.params;
        match self.chain.reader.tip_info() {
            Ok(t) => Status {
                genesis: params.genesis_hash(),
                best_height: t.height,
                best_hash: t.hash,
                total_work: t.chain_work.to_be_bytes(),
            },
            Err(e) => {
                warn!(error = %e, "reading the tip failed");
                Status {
                    genesis: params.genesis_hash(),
                    best_height: 0,
                    best_hash: params.genesis_hash(),
                    total_work: [0; 32],
                }
            }
        }
    }

    fn locator(&self) -> Vec<BlockHash> {
        logged("building a locator", self.chain.reader.locator())
    }

    fn headers_after(&self, locator: &[BlockHash], max: usize) -> Vec<BlockHeader> {
        logged(
            "serving headers",
            self.chain.reader.headers_after(locator, max),
        )
    }

    fn block_bytes(&self, hashes: &[BlockHash], budget: usize) -> Vec<Vec<u8>> {
        // Stored bytes are the canonical encoding: sent as they are, reading stops at the budget.
        let mut out = Vec::new();
        let mut total = 0;
        for h in hashes {
            let Some(bytes) = self.chain.reader.block_bytes(h).ok().flatten() else {
                continue;
            };
            total += bytes.len();
            if total > budget {
                break;
            }
            out.push(bytes);
        }
        out
    }

    fn missing_blocks(&self, max: usize) -> Vec<BlockHash> {
        logged(
            "listing missing blocks",
            self.chain.reader.missing_blocks(max),
        )
    }

    fn header_position(&self, hash: &BlockHash) -> Option<(u64, bool)> {
        logged("reading a header", self.chain.reader.header_position(hash))
    }

    async fn submit_headers(
        &self,
        _peer: PeerId,
        headers: Vec<BlockHeader>,
    ) -> Result<(), Refusal> {
        self.chain
            .submit_headers(headers)
            .await
            .map_err(|e| match e {
                HeadersRefused::Invalid(reason) => Refusal::Invalid(reason),
                HeadersRefused::Later(reason) => Refusal::Later(reason),
            })
    }

    async fn submit_block(&self, _peer: PeerId, block: Block) -> Result<(), Refusal> {
        sync_refusal(self.chain.submit_block_fate(block, Origin::Sync).await)
    }

    async fn submit_blocks(&self, blocks: Vec<(PeerId, Block)>) -> Vec<Result<(), Refusal>> {
        let blocks = blocks.into_iter().map(|(_, b)| b).collect();
        self.chain
            .submit_sync_blocks(blocks)
            .await
            .into_iter()
            .map(sync_refusal)
            .collect()
    }

    fn has_tx(&self, txid: &Txid) -> bool {
        self.pool().knows(txid)
    }

    fn fresh_txids(&self, max: usize) -> Vec<Txid> {
        self.chain.fresh.take(max)
    }

    fn fresh_signal(&self) -> Option<Arc<tokio::sync::Notify>> {
        Some(Arc::clone(&self.chain.fresh.signal))
    }

    fn pool_txids(&self, max: usize) -> Vec<Txid> {
        let mut ids = self.pool().txids();
        ids.truncate(max);
        ids
    }

    fn tx_bytes(&self, txids: &[Txid], budget: usize) -> Vec<Vec<u8>> {
        let txs: Vec<Arc<Transaction>> = {
            let pool = self.pool();
            txids.iter().filter_map(|t| pool.get(t)).collect()
        };
        let mut out = Vec::with_capacity(txs.len());
        let mut total = 0;
        for bytes in txs.iter().map(|t| encode(&**t)) {
            total += bytes.len();
            if total > budget {
                break;
            }
            out.push(bytes);
        }
        out
    }

    /// A transaction a peer announced and sent: accepted as a gossiped one (not published
    /// again on gossip; the announcements carry it on).
    async fn submit_tx(&self, peer: PeerId, tx: Transaction) -> Result<(), Refusal> {
        match self
            .chain
            .accept_tx(tx, Origin::Gossip, peer_tag(&peer))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if tx_acceptance(&e) == Acceptance::Reject => {
                Err(Refusal::Invalid(e.to_string()))
            }
            Err(e) => Err(Refusal::Later(e.to_string())),
        }
    }

    fn txs_by_short_id(
        &self,
        keys: &ShortIdKeys,
        wanted: &HashMap<u64, usize>,
    ) -> Vec<(usize, Transaction)> {
        let pool = self.pool();
        match_short_ids(keys, wanted, pool.transactions())
    }
}

impl NodeChain {
    fn pool(&self) -> std::sync::RwLockReadGuard<'_, cairn_mempool::Mempool> {
        self.chain.mempool.read().unwrap_or_else(|p| p.into_inner())
    }
}

/// A stable small tag for a peer (the mempool's orphan pool counts per source).
pub fn peer_tag(peer: &PeerId) -> PeerTag {
    let mut h = DefaultHasher::new();
    peer.hash(&mut h);
    // 0 is the local RPC.
    h.finish().max(1)
}

/// The verdict gossip gets for a refused transaction: only a consensus failure that is the
/// sender's fault is `Reject` (penalised); races, policy and missing parents are `Ignore`.
fn tx_acceptance(e: &MempoolError) -> Acceptance {
    match e {
        MempoolError::Consensus(ConsensusError::MissingInput { .. }) => Acceptance::Ignore,
        MempoolError::Consensus(ConsensusError::ImmatureCoinbaseSpend { .. }) => Acceptance::Ignore,
        MempoolError::Consensus(ConsensusError::NotFinal { .. }) => Acceptance::Ignore,
        MempoolError::Consensus(_) => Acceptance::Reject,
        _ => Acceptance::Ignore,
    }
}

/// The verdict gossip gets for a block. Only a block we connected is relayed: one stored on a
/// side branch may still fail when connected, and a relay must never carry what could get its
/// honest relayer penalised. Only a rule independent of our clock earns `Reject`.
async fn block_acceptance(
    net: &NetworkHandle,
    source: PeerId,
    hash: BlockHash,
    fate: BlockFate,
) -> Acceptance {
    match fate {
        BlockFate::Connected => Acceptance::Accept,
        BlockFate::Stored | BlockFate::Duplicate => Acceptance::Ignore,
        BlockFate::TooNew(reason) => {
            info!(%hash, %source, %reason, "block ahead of our clock ignored; sync retries it later");
            Acceptance::Ignore
        }
        BlockFate::NotStored(reason) => {
            debug!(%hash, %source, %reason, "gossiped block not stored");
            let _ = net.sync_with(source).await;
            Acceptance::Ignore
        }
        BlockFate::Orphan => {
            let _ = net.sync_with(source).await;
            Acceptance::Ignore
        }
        BlockFate::Invalid(reason) => {
            warn!(%hash, %source, %reason, "invalid block from gossip");
            Acceptance::Reject
        }
        // Not relayed (we could not check it), not held against the peer.
        BlockFate::Failed(_) => Acceptance::Ignore,
    }
}

/// Answers gossip: every transaction and block is validated by the chain task and the verdict
/// reported, so gossipsub relays only what is valid.
pub async fn handle_events(
    chain: ChainHandle,
    net: NetworkHandle,
    mut events: mpsc::Receiver<NetworkEvent>,
) {
    let checks = Arc::new(Semaphore::new(MAX_CONCURRENT_TX_CHECKS));
    while let Some(event) = events.recv().await {
        match event {
            NetworkEvent::Transaction { tx, source, msg_id } => {
                let Ok(permit) = Arc::clone(&checks).acquire_owned().await else {
                    break;
                };
                let (chain, net) = (chain.clone(), net.clone());
                tokio::spawn(async move {
                    let txid = tx.txid();
                    let verdict = match chain.accept_tx(tx, Origin::Gossip, peer_tag(&source)).await
                    {
                        Ok(_) => Acceptance::Accept,
                        Err(e) => {
                            debug!(%txid, %source, error = %e, "gossiped transaction refused");
                            tx_acceptance(&e)
                        }
                    };
                    let _ = net.report_validation(msg_id, source, verdict).await;
                    drop(permit);
                });
            }
            NetworkEvent::Block {
                block,
                source,
                msg_id,
            } => {
                let hash = block.hash();
                // Kept for peers that take only full blocks (the gossip message that brought it
                // may have been compact).
                let kept = Arc::new(block.clone());
                let acceptance = block_acceptance(
                    &net,
                    source,
                    hash,
                    chain.submit_block_fate(block, Origin::Gossip).await,
                )
                .await;
                let _ = net.report_validation(msg_id, source, acceptance).await;
                if acceptance == Acceptance::Accept {
                    net.relay_block_to_full_block_peers(kept).await;
                }
            }
            NetworkEvent::PeerConnected {
                peer,
                address,
                direction,
            } => info!(%peer, %address, ?direction, "peer connected"),
            NetworkEvent::PeerDisconnected { peer } => info!(%peer, "peer disconnected"),
        }
    }
}

/// Publishes what the chain task asks to relay.
pub async fn relay(net: NetworkHandle, mut queue: mpsc::Receiver<Relay>) {
    while let Some(r) = queue.recv().await {
        let result = match &r {
            // Peers that speak the relay protocol get it by announcement (the relay task).
            Relay::Tx(_) if !net.tx_gossip_wanted() => Ok(()),
            Relay::Tx(tx) => net.publish_tx(tx).await.map(|_| ()),
            Relay::Block(b) => net.publish_block(b).await.map(|_| ()),
        };
        // No peers yet, or a duplicate: nothing to do, peers sync what they miss.
        if let Err(e) = result {
            debug!(error = %e, "relay skipped");
        }
    }
}

/// Keeps the best height peers report, for sync progress.
pub async fn track_peer_heights(net: NetworkHandle, best: Arc<AtomicU64>) {
    let mut tick = tokio::time::interval(PEER_HEIGHT_INTERVAL);
    loop {
        tick.tick().await;
        let h = net
            .peers()
            .await
            .iter()
            .filter_map(|p| p.status.as_ref().map(|s| s.best_height))
            .max()
            .unwrap_or(0);
        best.store(h, Ordering::Relaxed);
    }
}

/// What a synced block's fate means to the peer that sent it.
fn sync_refusal(fate: BlockFate) -> Result<(), Refusal> {
    match fate {
        BlockFate::Invalid(reason) => Err(Refusal::Invalid(reason)),
        BlockFate::TooNew(reason) | BlockFate::NotStored(reason) | BlockFate::Failed(reason) => {
            Err(Refusal::Later(reason))
        }
        BlockFate::Connected | BlockFate::Stored | BlockFate::Duplicate | BlockFate::Orphan => {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use cairn_primitives::BlockHash;
    use cairn_storage::StorageError;

    use super::*;
    use crate::chain::error_fate;

    /// A synced block's refusal as the sync driver sees it, from the storage error behind it.
    fn refusal_of(e: StorageError) -> Result<(), Refusal> {
        sync_refusal(error_fate(e))
    }

    #[test]
    fn our_database_failing_is_not_the_peers_fault() {
        for e in [
            StorageError::Corrupt {
                what: "utxo",
                location: "height 7".into(),
                detail: "short value".into(),
            },
            StorageError::NotFound("block body".into()),
            StorageError::IndexFailed {
                indexed: 3,
                reason: "disk".into(),
            },
        ] {
            assert!(
                matches!(refusal_of(e), Err(Refusal::Later(r)) if r.starts_with("storage error")),
                "a local failure must be retried, never punished"
            );
        }
    }

    #[test]
    fn a_block_breaking_a_rule_is() {
        let e = StorageError::MutatedBlock {
            hash: BlockHash([1; 32]),
            reason: "merkle root".into(),
        };
        assert!(matches!(refusal_of(e), Err(Refusal::Invalid(_))));
        let e = StorageError::KnownInvalid {
            hash: BlockHash([2; 32]),
            reason: "bad signature".into(),
        };
        assert!(matches!(refusal_of(e), Err(Refusal::Invalid(r)) if r == "bad signature"));
    }
}
