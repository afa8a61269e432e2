//! Compact blocks (as BIP152, high-bandwidth mode over gossip): a block travels as its header,
//! a nonce, a 6-byte short id per transaction and the transactions the receiver is unlikely
//! to have (the coinbase). The receiver rebuilds it from its mempool, asks the peer that sent
//! it for what it lacks (`GetBlockTxs` on `/cairn/relay/1`), and falls back to the full block
//! over `/cairn/sync/1` when that fails or the rebuilt block does not match its header (a
//! short-id collision: nobody's fault, nobody penalised).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use cairn_primitives::encoding::{decode, encode};
use cairn_primitives::{Block, BlockHash, BlockHeader, Transaction, Wtxid};
use libp2p::PeerId;
use libp2p::gossipsub::MessageId;
use sha2::{Digest, Sha256};
use siphasher::sip::SipHasher24;
use tokio::sync::mpsc;
use tracing::{debug, trace};

use super::driver::Done;
use super::{RelayRequest, RelayResponse};
use crate::codec::{SyncRequest, SyncResponse};
use crate::config::BAN_THRESHOLD;
use crate::metrics::Metrics;
use crate::service::{Acceptance, NetworkEvent, NetworkHandle};
use crate::sync::ChainAccess;

/// Bytes of a short transaction id.
pub const SHORT_ID_LEN: usize = 6;
/// Most positions in one `GetBlockTxs` request.
pub const MAX_BLOCK_TXS_INDEXES: usize = 32_768;
/// Compact blocks being rebuilt at once; more are answered `Ignore` (sync fetches the block
/// if it matters).
pub const MAX_REBUILDS_IN_FLIGHT: usize = 8;
/// Smallest possible encoded transaction (version, two empty vectors, lock time): bounds the
/// transaction count a compact block may claim for a given block size.
pub const MIN_TX_SIZE: usize = 4 + 8 + 8 + 4;

/// A short transaction id: the low 48 bits of SipHash-2-4 of the wtxid, little-endian.
pub type ShortId = [u8; SHORT_ID_LEN];

/// A transaction sent whole in a compact block, at its position in the block.
#[derive(Clone, Debug, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct PrefilledTx {
    pub index: u32,
    pub tx: Transaction,
}

/// A block announced compactly on `/cairn/1/<genesis hex>/cmpctblock`.
#[derive(Clone, Debug, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct CompactBlock {
    pub header: BlockHeader,
    pub nonce: u64,
    /// One per transaction that is not prefilled, in block order.
    pub short_ids: Vec<ShortId>,
    /// Strictly ascending positions; at least the coinbase (position 0).
    pub prefilled: Vec<PrefilledTx>,
}

/// The SipHash key of a compact block: the first two little-endian `u64` of
/// `SHA256(encode(header) || nonce as u64 LE)` (BIP152, with Cairn's header encoding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShortIdKeys {
    pub k0: u64,
    pub k1: u64,
}

impl ShortIdKeys {
    pub fn new(header: &BlockHeader, nonce: u64) -> Self {
        let mut h = Sha256::new();
        h.update(encode(header));
        h.update(nonce.to_le_bytes());
        let d = h.finalize();
        let word = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&d[i..i + 8]);
            u64::from_le_bytes(b)
        };
        Self {
            k0: word(0),
            k1: word(8),
        }
    }

    /// The short id of a transaction with this wtxid.
    pub fn short_id(&self, wtxid: &Wtxid) -> ShortId {
        let h = SipHasher24::new_with_keys(self.k0, self.k1).hash(wtxid.as_bytes());
        let mut out = [0u8; SHORT_ID_LEN];
        out.copy_from_slice(&h.to_le_bytes()[..SHORT_ID_LEN]);
        out
    }
}

/// Why a compact block cannot describe any block (the sender is at fault).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed compact block: {0}")]
pub struct MalformedCompact(pub String);

impl CompactBlock {
    /// The compact form of `block`, with the coinbase prefilled.
    pub fn from_block(block: &Block, nonce: u64) -> Self {
        let keys = ShortIdKeys::new(&block.header, nonce);
        let mut prefilled = Vec::new();
        let mut short_ids = Vec::with_capacity(block.transactions.len());
        for (i, tx) in block.transactions.iter().enumerate() {
            if i == 0 {
                prefilled.push(PrefilledTx {
                    index: 0,
                    tx: tx.clone(),
                });
            } else {
                short_ids.push(keys.short_id(&tx.wtxid()));
            }
        }
        Self {
            header: block.header,
            nonce,
            short_ids,
            prefilled,
        }
    }

    pub fn tx_count(&self) -> usize {
        self.short_ids.len() + self.prefilled.len()
    }

    /// Checks what needs no mempool: the coinbase is prefilled, positions ascend and fall
    /// inside the block, and the transaction count fits a block of `max_block_size`.
    pub fn check(&self, max_block_size: usize) -> Result<(), MalformedCompact> {
        let count = self.tx_count();
        if count > max_block_size / MIN_TX_SIZE {
            return Err(MalformedCompact(format!(
                "{count} transactions cannot fit a block"
            )));
        }
        if self.prefilled.first().is_none_or(|p| p.index != 0) {
            return Err(MalformedCompact("coinbase not prefilled".into()));
        }
        let mut last: Option<u32> = None;
        for p in &self.prefilled {
            if last.is_some_and(|l| p.index <= l) || p.index as usize >= count {
                return Err(MalformedCompact(format!(
                    "prefilled position {} out of order or range",
                    p.index
                )));
            }
            last = Some(p.index);
        }
        Ok(())
    }
}

/// A block being rebuilt: every position, filled or not, and which short id each empty one
/// waits for.
#[derive(Debug)]
pub struct PartialBlock {
    pub header: BlockHeader,
    pub slots: Vec<Option<Transaction>>,
    /// Short id -> position, for the empty positions.
    pub wanted: HashMap<u64, usize>,
    pub keys: ShortIdKeys,
}

/// A short id as the `u64` the lookup tables use.
pub fn short_id_key(id: &ShortId) -> u64 {
    let mut b = [0u8; 8];
    b[..SHORT_ID_LEN].copy_from_slice(id);
    u64::from_le_bytes(b)
}

impl PartialBlock {
    /// Lays out the prefilled transactions. `None` when two transactions share a short id
    /// (the block cannot be rebuilt from ids: fetch it whole).
    pub fn new(compact: CompactBlock) -> Option<Self> {
        let count = compact.tx_count();
        let mut slots: Vec<Option<Transaction>> = vec![None; count];
        for p in compact.prefilled {
            let slot = slots.get_mut(p.index as usize)?;
            *slot = Some(p.tx);
        }
        let mut wanted = HashMap::with_capacity(compact.short_ids.len());
        let mut ids = compact.short_ids.iter();
        for (i, slot) in slots.iter().enumerate() {
            if slot.is_some() {
                continue;
            }
            let id = ids.next()?;
            if wanted.insert(short_id_key(id), i).is_some() {
                return None;
            }
        }
        Some(Self {
            keys: ShortIdKeys::new(&compact.header, compact.nonce),
            header: compact.header,
            slots,
            wanted,
        })
    }

    /// Fills positions from candidates (mempool transactions) whose short id matches.
    pub fn fill(&mut self, found: Vec<(usize, Transaction)>) {
        for (i, tx) in found {
            if let Some(slot) = self.slots.get_mut(i)
                && slot.is_none()
            {
                *slot = Some(tx);
            }
        }
    }

    /// Empty positions, ascending.
    pub fn missing(&self) -> Vec<u32> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_none())
            .map(|(i, _)| i as u32)
            .collect()
    }

    /// The block, if every position is filled and the transactions match the header's merkle
    /// root (otherwise a short id matched the wrong transaction).
    pub fn finish(self) -> Option<Block> {
        let transactions: Option<Vec<Transaction>> = self.slots.into_iter().collect();
        let block = Block {
            header: self.header,
            transactions: transactions?,
        };
        (block.compute_merkle_root() == block.header.merkle_root).then_some(block)
    }
}

/// Finds, among `candidates`, the transactions a partial block waits for: position ->
/// transaction. A short id matched by two different transactions is left empty (asked for).
/// The node calls it over its mempool and the transactions it recently let go.
pub fn match_short_ids<'a>(
    keys: &ShortIdKeys,
    wanted: &HashMap<u64, usize>,
    candidates: impl Iterator<Item = &'a Transaction>,
) -> Vec<(usize, Transaction)> {
    let mut found: HashMap<usize, (Wtxid, &'a Transaction)> = HashMap::new();
    let mut ambiguous = Vec::new();
    for tx in candidates {
        let wtxid = tx.wtxid();
        let Some(&pos) = wanted.get(&short_id_key(&keys.short_id(&wtxid))) else {
            continue;
        };
        match found.get(&pos) {
            Some((w, _)) if *w != wtxid => ambiguous.push(pos),
            Some(_) => {}
            None => {
                found.insert(pos, (wtxid, tx));
            }
        }
    }
    for pos in ambiguous {
        found.remove(&pos);
    }
    found
        .into_iter()
        .map(|(pos, (_, tx))| (pos, tx.clone()))
        .collect()
}

/// The encoded answer to `GetBlockTxs`: the asked positions of a stored block, all of them.
pub(crate) fn answer_block_txs<C: ChainAccess + ?Sized>(
    chain: &C,
    request: RelayRequest,
) -> Vec<u8> {
    let error = |m: &str| encode(&RelayResponse::Error(m.into()));
    let RelayRequest::GetBlockTxs { block, indexes } = request else {
        return error("not a GetBlockTxs request");
    };
    if indexes.len() > MAX_BLOCK_TXS_INDEXES {
        return error("too many positions");
    }
    let Some(bytes) = chain.block_bytes(&[block], usize::MAX).into_iter().next() else {
        return error("unknown block");
    };
    let Ok(full) = decode::<Block>(&bytes) else {
        return error("stored block unreadable");
    };
    let mut txs = Vec::with_capacity(indexes.len());
    for i in indexes {
        match full.transactions.get(i as usize) {
            Some(tx) => txs.push(tx.clone()),
            None => return error("position out of range"),
        }
    }
    encode(&RelayResponse::BlockTxs { block, txs })
}

/// Compact blocks kept encoded for `GetCompact` answers (the latest blocks peers pull).
pub const MAX_CACHED_COMPACT_BLOCKS: usize = 8;

/// A random nonce for a compact block's short-id key (BIP152: so a collision cannot be
/// engineered ahead of the announcement). From the OS; a clock-derived value if it fails.
pub(crate) fn random_nonce() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::getrandom(&mut b).is_err() {
        return std::time::SystemTime::now()
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
    }
    u64::from_le_bytes(b)
}

/// Encoded `RelayResponse::Compact` answers for the latest blocks asked, so a block pulled by
/// every neighbour is decoded and hashed once (one nonce per block, as one BIP152
/// announcement).
#[derive(Debug, Default)]
pub(crate) struct CompactCache {
    entries: std::collections::VecDeque<(BlockHash, Arc<Vec<u8>>)>,
}

impl CompactCache {
    /// The encoded answer to `GetCompact(hash)`: from the cache, else built from the stored
    /// block (then cached); `Error` when the block is not stored.
    pub(crate) fn answer<C: ChainAccess + ?Sized>(
        &mut self,
        chain: &C,
        hash: BlockHash,
    ) -> (Arc<Vec<u8>>, bool) {
        if let Some((_, frame)) = self.entries.iter().find(|(h, _)| *h == hash) {
            return (Arc::clone(frame), true);
        }
        let block = chain
            .block_bytes(&[hash], usize::MAX)
            .into_iter()
            .next()
            .and_then(|bytes| decode::<Block>(&bytes).ok());
        let Some(block) = block else {
            return (
                Arc::new(encode(&RelayResponse::Error("unknown block".into()))),
                false,
            );
        };
        let frame = Arc::new(encode(&RelayResponse::Compact(CompactBlock::from_block(
            &block,
            random_nonce(),
        ))));
        if self.entries.len() >= MAX_CACHED_COMPACT_BLOCKS {
            self.entries.pop_front();
        }
        self.entries.push_back((hash, Arc::clone(&frame)));
        (frame, true)
    }
}

/// What a rebuild starts from: a compact block pushed on gossip, an announced header whose
/// compact block is pulled from the announcer first, or a peer's new tip (`NewTip`, one block
/// ahead of ours) whose compact block is pulled from that peer.
pub(crate) enum RebuildFrom {
    Pushed(Box<CompactBlock>),
    Announced(BlockHeader),
    Tip(BlockHash),
}

/// Answers the gossip message that brought a block `Ignore` (nothing when it came otherwise).
async fn ignore(net: &NetworkHandle, msg_id: Option<MessageId>, source: PeerId) {
    if let Some(id) = msg_id {
        let _ = net.report_validation(id, source, Acceptance::Ignore).await;
    }
}

/// Starts rebuild jobs, at most [`MAX_REBUILDS_IN_FLIGHT`] at once.
#[derive(Debug)]
pub(crate) struct Rebuilder {
    in_flight: Arc<AtomicUsize>,
    max_block_size: usize,
}

/// Decrements the in-flight count when a job ends, however it ends.
struct Slot(Arc<AtomicUsize>);
impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Rebuilder {
    pub(crate) fn new(max_block_size: usize) -> Self {
        Self {
            in_flight: Arc::default(),
            max_block_size,
        }
    }

    pub(crate) fn start<C: ChainAccess>(
        &self,
        chain: Arc<C>,
        net: NetworkHandle,
        events: mpsc::Sender<NetworkEvent>,
        from: RebuildFrom,
        source: PeerId,
        msg_id: Option<MessageId>,
    ) -> Pin<Box<dyn Future<Output = Done> + Send>> {
        if self.in_flight.fetch_add(1, Ordering::Relaxed) >= MAX_REBUILDS_IN_FLIGHT {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            let hash = match &from {
                RebuildFrom::Pushed(c) => c.header.hash(),
                RebuildFrom::Announced(header) => header.hash(),
                RebuildFrom::Tip(hash) => *hash,
            };
            return Box::pin(async move {
                Metrics::inc(&net.metrics_ref().compact_dropped);
                debug!(%source, "compact block dropped: too many rebuilds in flight");
                ignore(&net, msg_id, source).await;
                Done::GaveUp(hash)
            });
        }
        let slot = Slot(Arc::clone(&self.in_flight));
        let max_block_size = self.max_block_size;
        Box::pin(async move {
            let _slot = slot;
            let started = Instant::now();
            let (hash, compact) = match from {
                RebuildFrom::Pushed(c) => (c.header.hash(), Some(*c)),
                RebuildFrom::Announced(header) => {
                    let hash = header.hash();
                    if chain.status().best_hash == hash {
                        // Our own tip (a late copy of what we relayed): nothing to fetch.
                        ignore(&net, msg_id, source).await;
                        return Done::Rebuilt;
                    }
                    (hash, pull(&net, source, hash, max_block_size).await)
                }
                RebuildFrom::Tip(hash) => (hash, pull(&net, source, hash, max_block_size).await),
            };
            let rebuilt = match compact {
                Some(c) => rebuild(&chain, &net, c, source).await,
                None => None,
            };
            let block = match rebuilt {
                Some(block) => Some(block),
                None => fetch_full(&net, source, hash).await,
            };
            let Some(block) = block else {
                Metrics::inc(&net.metrics_ref().compact_failed);
                debug!(%hash, %source, "compact block could not be rebuilt nor fetched");
                ignore(&net, msg_id, source).await;
                return Done::GaveUp(hash);
            };
            trace!(%hash, ms = started.elapsed().as_millis() as u64, "compact block rebuilt");
            let Some(msg_id) = msg_id else {
                // From a tip announcement: no gossip message to judge. Submitted as a block
                // of the sync protocol (its header first), so it is connected before we
                // announce it in turn; peers that take only full blocks get it in full.
                submit_pulled(&*chain, &net, source, block).await;
                return Done::Rebuilt;
            };
            let event = NetworkEvent::Block {
                block,
                source,
                msg_id: msg_id.clone(),
            };
            if events.send(event).await.is_err() {
                ignore(&net, Some(msg_id), source).await;
            }
            Done::Rebuilt
        })
    }
}

/// Rebuilds from the mempool, asking `source` for what is missing; `None` when the full block
/// is needed (duplicate short ids, a failed round trip, a merkle mismatch).
async fn rebuild<C: ChainAccess>(
    chain: &Arc<C>,
    net: &NetworkHandle,
    compact: CompactBlock,
    source: PeerId,
) -> Option<Block> {
    let m = net.metrics_ref();
    let hash = compact.header.hash();
    let Some(mut partial) = PartialBlock::new(compact) else {
        Metrics::inc(&m.compact_collisions);
        debug!(%hash, "short ids collide within the block; fetching it whole");
        return None;
    };
    let (keys, wanted) = (partial.keys, std::mem::take(&mut partial.wanted));
    let c = Arc::clone(chain);
    // The lookup walks the mempool: off the async workers.
    let found = tokio::task::spawn_blocking(move || c.txs_by_short_id(&keys, &wanted))
        .await
        .ok()?;
    partial.fill(found);
    let missing = partial.missing();
    if missing.is_empty() {
        Metrics::inc(&m.compact_rebuilt);
    } else {
        Metrics::inc(&m.compact_round_trips);
        Metrics::add(&m.compact_txs_requested, missing.len());
        let request = RelayRequest::GetBlockTxs {
            block: hash,
            indexes: missing.clone(),
        };
        match net.relay_request(source, &request).await {
            Ok(RelayResponse::BlockTxs { block, txs })
                if block == hash && txs.len() == missing.len() =>
            {
                partial.fill(missing.iter().map(|i| *i as usize).zip(txs).collect());
            }
            other => {
                debug!(%hash, %source, answer = ?other.map(|_| ()), "missing block transactions not received");
                return None;
            }
        }
    }
    let block = partial.finish();
    if block.is_none() {
        Metrics::inc(&m.compact_collisions);
        debug!(%hash, "rebuilt block does not match its merkle root (short-id collision); fetching it whole");
    }
    block
}

/// A block rebuilt from a tip announcement: its header, then the block, through the chain's
/// sync entry points (every rule checked, as a block asked for over sync). A refusal is
/// logged; nobody is banned here (the sync protocol judges the peer when it syncs).
async fn submit_pulled<C: ChainAccess>(
    chain: &C,
    net: &NetworkHandle,
    source: PeerId,
    block: Block,
) {
    let hash = block.hash();
    if let Err(e) = chain.submit_headers(source, vec![block.header]).await {
        debug!(%hash, %source, error = ?e, "header of a pulled tip refused");
        return;
    }
    let kept = Arc::new(block.clone());
    match chain.submit_block(source, block).await {
        Ok(()) => net.relay_block_to_full_block_peers(kept).await,
        Err(e) => debug!(%hash, %source, error = ?e, "pulled tip refused"),
    }
}

/// The compact form of an announced block, from its announcer (`GetCompact`). `None` when it
/// does not come (the caller fetches the full block); an answer that is not a well-formed
/// compact block of the block asked is the announcer's fault (ban, as malformed gossip).
async fn pull(
    net: &NetworkHandle,
    source: PeerId,
    hash: BlockHash,
    max_block_size: usize,
) -> Option<CompactBlock> {
    let m = net.metrics_ref();
    match net
        .relay_request(source, &RelayRequest::GetCompact(hash))
        .await
    {
        Ok(RelayResponse::Compact(c)) => {
            if c.header.hash() != hash {
                Metrics::inc(&m.invalid_messages);
                net.penalise(
                    source,
                    BAN_THRESHOLD,
                    "GetCompact answered with another block",
                )
                .await;
                return None;
            }
            if let Err(e) = c.check(max_block_size) {
                Metrics::inc(&m.invalid_messages);
                net.penalise(source, BAN_THRESHOLD, &e.to_string()).await;
                return None;
            }
            Metrics::inc(&m.compact_pulled);
            Metrics::inc(&m.compact_received);
            Some(c)
        }
        other => {
            Metrics::inc(&m.compact_pull_failed);
            debug!(%hash, %source, answer = ?other.map(|_| ()), "announced compact block not received");
            None
        }
    }
}

/// The full block from `source` over the sync protocol.
async fn fetch_full(net: &NetworkHandle, source: PeerId, hash: BlockHash) -> Option<Block> {
    Metrics::inc(&net.metrics_ref().compact_full_fallbacks);
    let request = SyncRequest::GetBlocks { hashes: vec![hash] };
    match net.request(source, &request).await {
        Ok(SyncResponse::Blocks(blocks)) => blocks.into_iter().find(|b| b.hash() == hash),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_utils::{child_block, genesis_block};
    use cairn_primitives::{Amount, TxOut, XOnlyPublicKey};

    fn tx(n: u32) -> Transaction {
        Transaction {
            version: Transaction::VERSION,
            inputs: Vec::new(),
            outputs: vec![TxOut {
                value: Amount(u64::from(n)),
                pubkey: XOnlyPublicKey([7; 32]),
            }],
            lock_time: n,
        }
    }

    /// SipHash-2-4 reference vector (Aumasson & Bernstein, the paper's appendix and the
    /// reference implementation's `vectors.h`): key 00..0f, message 00..0e.
    #[test]
    fn siphash_matches_the_reference_vector() {
        let k0 = u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]);
        let k1 = u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]);
        let msg: Vec<u8> = (0u8..15).collect();
        let h = SipHasher24::new_with_keys(k0, k1).hash(&msg);
        assert_eq!(h, 0xa129_ca61_49be_45e5);
        // Empty message, same key: the vector's first line, 310e0edd47db6f72 read LE.
        let empty = SipHasher24::new_with_keys(k0, k1).hash(&[]);
        assert_eq!(
            empty.to_le_bytes(),
            [0x31, 0x0e, 0x0e, 0xdd, 0x47, 0xdb, 0x6f, 0x72]
        );
    }

    fn block_with(n: u32) -> Block {
        let g = genesis_block(1);
        child_block(&g.header, 1, 0, (1..=n).map(tx).collect())
    }

    #[test]
    fn rebuilds_from_the_pool_with_nothing_missing() {
        let block = block_with(50);
        let compact = CompactBlock::from_block(&block, 42);
        assert!(compact.check(1_000_000).is_ok());
        assert_eq!(compact.short_ids.len(), 50);
        let mut partial = PartialBlock::new(compact).expect("no collision");
        let pool: Vec<Transaction> = (1..=60).map(tx).collect();
        let found = match_short_ids(&partial.keys, &partial.wanted, pool.iter());
        partial.fill(found);
        assert!(partial.missing().is_empty());
        assert_eq!(partial.finish(), Some(block));
    }

    #[test]
    fn missing_positions_are_reported_and_filled() {
        let block = block_with(10);
        let mut partial = PartialBlock::new(CompactBlock::from_block(&block, 1)).expect("ok");
        let pool: Vec<Transaction> = [1, 2, 3, 5, 8].into_iter().map(tx).collect();
        let found = match_short_ids(&partial.keys, &partial.wanted, pool.iter());
        partial.fill(found);
        assert_eq!(partial.missing(), vec![4, 6, 7, 9, 10]);
        let rest = [4, 6, 7, 9, 10]
            .into_iter()
            .map(|i| (i as usize, tx(i)))
            .collect();
        partial.fill(rest);
        assert_eq!(partial.finish(), Some(block));
    }

    #[test]
    fn a_wrong_transaction_fails_the_merkle_check() {
        let block = block_with(3);
        let mut partial = PartialBlock::new(CompactBlock::from_block(&block, 9)).expect("ok");
        // As if a colliding pool transaction had matched position 2.
        partial.fill(vec![(1, tx(1)), (2, tx(99)), (3, tx(3))]);
        assert!(partial.missing().is_empty());
        assert_eq!(partial.finish(), None);
    }

    #[test]
    fn duplicate_short_ids_in_the_block_need_the_full_block() {
        let block = block_with(3);
        let mut compact = CompactBlock::from_block(&block, 9);
        compact.short_ids[1] = compact.short_ids[0];
        assert!(PartialBlock::new(compact).is_none());
    }

    #[test]
    fn malformed_compact_blocks_are_refused() {
        let block = block_with(3);
        let good = CompactBlock::from_block(&block, 9);
        let mut no_coinbase = good.clone();
        no_coinbase.prefilled.clear();
        assert!(no_coinbase.check(1_000_000).is_err());
        let mut out_of_range = good.clone();
        out_of_range.prefilled.push(PrefilledTx {
            index: 9,
            tx: tx(1),
        });
        assert!(out_of_range.check(1_000_000).is_err());
        let mut huge = good;
        huge.short_ids = vec![[0; 6]; 1_000_000];
        assert!(huge.check(1_000_000).is_err());
    }

    #[test]
    fn get_compact_answers_a_stored_block_with_one_nonce_and_errors_otherwise() {
        let chain = crate::test_utils::MemoryChain::new(1);
        let block = chain.mine_with((1..=20).map(tx).collect());
        let mut cache = CompactCache::default();
        let (first, served) = cache.answer(&chain, block.hash());
        assert!(served);
        let Ok(RelayResponse::Compact(c)) = decode::<RelayResponse>(&first) else {
            panic!("not a Compact answer");
        };
        assert_eq!(c.header, block.header);
        assert_eq!(c.tx_count(), block.transactions.len());
        let mut partial = PartialBlock::new(c).expect("no collision");
        let found = match_short_ids(&partial.keys, &partial.wanted, block.transactions.iter());
        partial.fill(found);
        assert_eq!(partial.finish(), Some(block.clone()), "rebuilds the block");
        // Every peer asking for this block gets the same bytes (one nonce per block).
        let (again, _) = cache.answer(&chain, block.hash());
        assert_eq!(first, again);
        let (unknown, served) = cache.answer(&chain, BlockHash::from_byte_array([9; 32]));
        assert!(!served);
        assert!(matches!(
            decode::<RelayResponse>(&unknown),
            Ok(RelayResponse::Error(_))
        ));
    }

    #[test]
    fn get_compact_cache_is_bounded() {
        let chain = crate::test_utils::MemoryChain::new(1);
        let mut cache = CompactCache::default();
        for n in 0..(MAX_CACHED_COMPACT_BLOCKS as u32 + 3) {
            let block = chain.mine_with(vec![tx(100 + n)]);
            assert!(cache.answer(&chain, block.hash()).1);
        }
        assert_eq!(cache.entries.len(), MAX_CACHED_COMPACT_BLOCKS);
    }

    #[test]
    fn nonce_changes_every_short_id() {
        let block = block_with(5);
        let a = CompactBlock::from_block(&block, 1);
        let b = CompactBlock::from_block(&block, 2);
        assert!(a.short_ids.iter().zip(&b.short_ids).all(|(x, y)| x != y));
    }
}
