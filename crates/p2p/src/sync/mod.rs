//! Headers-first block download and the serving side of `/cairn/sync/1`.
//!
//! The driver never judges a header or a block: it hands them to the node through
//! [`ChainAccess`], and an [`Refusal::Invalid`] there is what makes it ban the peer that sent
//! them ([`Refusal::Later`], such as a time ahead of our clock, punishes nobody).
//!
//! How it runs, per connected peer that speaks the sync protocol:
//! 1. **Handshake**: on connection both sides send `Status`; a different genesis is banned by
//!    the swarm task. Status is re-asked every `status_interval`, so a node that missed
//!    gossip notices it is behind and heals itself; each peer has its own timer (phases spread
//!    over the interval), and a peer that asked us within the interval is skipped (its
//!    request carried its status), so each pair exchanges one per interval.
//! 2. **Headers**: while some peer claims more work than our best block chain, the best such
//!    peer is asked for headers after our locator (at most [`MAX_HEADERS_PER_REQUEST`]), one
//!    request at a time; a full batch is followed by another request.
//! 3. **Bodies**: [`ChainAccess::missing_blocks`] names bodies to fetch (lowest first). A
//!    peer is asked only for blocks up to the height it *proved* (validated headers it served,
//!    or an announced best block that is a validated header on our best header chain), never
//!    what it claims; requests are sized in bytes (`request_bytes` at the average block size),
//!    at most `requests_in_flight_per_peer` per peer, within a window of `block_window` blocks.
//!    An answer that brings nothing (timeout, `Error`, empty or short) is a stall: its blocks
//!    go back to the pool for another peer first, without touching other peers' requests, and
//!    a peer that stalls `max_stalls` times in a row is disconnected. Blocks are handed to the
//!    node strictly in the order `missing_blocks` gave them (parents first), in batches, the
//!    next batch handed over before the chain answered the last one, so the chain does not
//!    wait for the driver between batches; the driver goes on downloading while the chain
//!    connects (headers it hands the chain wait their turn behind those batches).
//!
//! Serving ([`serve`]) answers peers concurrently with a fair share each, sending blocks as
//! stored bytes within the response's byte budget.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_primitives::encoding::{encode, encoded_len};
use cairn_primitives::{Block, BlockHash, BlockHeader, Transaction, Txid};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use libp2p::PeerId;
use libp2p::request_response::ResponseChannel;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::P2pError;
use crate::codec::{Frame, Status, SyncRequest, SyncResponse};
use crate::config::{
    MAX_BLOCKS_PER_REQUEST, MAX_HEADERS_PER_REQUEST, MAX_LOCATOR_LEN, NetworkConfig,
};
use crate::metrics::Metrics;
use crate::relay::compact::ShortIdKeys;
use crate::service::{NetworkHandle, RateLimit};

mod driver;
mod serve;

pub(crate) use driver::SyncDriver;
pub use serve::answer;
pub(crate) use serve::serve;

/// Received blocks handed to the chain in one [`ChainAccess::submit_blocks`] call, at most: enough
/// for its pipeline to overlap the blocks' work, few enough that the chain task, which does
/// nothing else meanwhile, answers gossip and RPC soon (a batch of 200-transaction blocks takes
/// ~0.1 s to connect on two cores).
pub const MAX_SUBMIT_BATCH_BLOCKS: usize = 16;
/// Batches handed to the chain and not answered yet, at most: two, so the chain starts the
/// next one as soon as it finishes one, instead of waiting for the driver to hear back.
pub const MAX_SUBMITS_IN_FLIGHT: usize = 2;
/// Times one block may fail to arrive before it leaves the download window (other blocks stay;
/// it comes back from [`ChainAccess::missing_blocks`] if still missing).
pub const MAX_BLOCK_ATTEMPTS: u32 = 8;
/// Interval between sync progress log lines.
pub const PROGRESS_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// What the network needs from the chain. The node implements it (over its storage and its
/// chain task); `cairn-p2p` calls it and knows nothing else about consensus or storage.
///
/// The synchronous methods are called from async tasks: they must be quick reads (a RocksDB
/// snapshot, an in-memory index), never wait behind a block import. The serving methods are run
/// on tokio's blocking pool.
pub trait ChainAccess: Send + Sync + 'static {
    /// The tip of the best *fully validated block* chain: genesis hash, height, tip hash and
    /// cumulative work (big-endian). Sent to every peer at the handshake.
    fn status(&self) -> Status;

    /// Block locator of the best *header* chain (which may run ahead of the block chain during
    /// sync): tip first, then back by 1, 2, 4, 8 ... and genesis last; at most
    /// [`MAX_LOCATOR_LEN`] hashes.
    fn locator(&self) -> Vec<BlockHash>;

    /// Serving. Headers of the best *block* chain following the first hash of `locator` that is
    /// on that chain (after genesis if none is), in chain order, at most `max`.
    fn headers_after(&self, locator: &[BlockHash], max: usize) -> Vec<BlockHeader>;

    /// Serving. The stored encodings of the named blocks, in the order asked, unknown hashes
    /// skipped, stopping before the total would exceed `budget` bytes (so no more is read than
    /// is sent). The bytes are sent as they are: they must be canonical block encodings.
    fn block_bytes(&self, hashes: &[BlockHash], budget: usize) -> Vec<Vec<u8>>;

    /// Hashes of blocks whose header is known and valid, on the best header chain, but whose
    /// body is not stored yet: lowest height first, at most `max`.
    fn missing_blocks(&self, max: usize) -> Vec<BlockHash>;

    /// Height of a known, valid header, and whether it is on the best header chain (`None`:
    /// unknown or invalid). The driver asks a peer for blocks only up to the height of a
    /// header the peer showed it has, judged by this, never by what the peer claims.
    fn header_position(&self, hash: &BlockHash) -> Option<(u64, bool)>;

    /// Headers from `peer`, in chain order, each the child of the previous one (the first one
    /// the child of a known header). Already known headers must be accepted (`Ok`).
    /// [`Refusal::Invalid`] (bad PoW, unknown parent, wrong target, broken chain ...) gets the
    /// peer banned; [`Refusal::Later`] (a time ahead of our clock, a limit) punishes nobody and
    /// the headers are asked for again later.
    fn submit_headers(
        &self,
        peer: PeerId,
        headers: Vec<BlockHeader>,
    ) -> impl Future<Output = Result<(), Refusal>> + Send;

    /// A block body from `peer`, in the order of [`ChainAccess::missing_blocks`] (parents
    /// first). An already known block must be accepted (`Ok`). [`Refusal::Invalid`] (the
    /// header is unknown or the block breaks a rule) gets the peer banned.
    fn submit_block(
        &self,
        peer: PeerId,
        block: Block,
    ) -> impl Future<Output = Result<(), Refusal>> + Send;

    /// Several block bodies, each with the peer it came from, in the order of
    /// [`ChainAccess::missing_blocks`] (parents first): one result per block, in the same order,
    /// as [`ChainAccess::submit_block`] would give. A chain that connects a run of blocks
    /// faster than one at a time (overlapping one block's signature checks with the next one's
    /// coin reads) implements it; the default submits them one by one.
    fn submit_blocks(
        &self,
        blocks: Vec<(PeerId, Block)>,
    ) -> impl Future<Output = Vec<Result<(), Refusal>>> + Send {
        async move {
            let mut results = Vec::with_capacity(blocks.len());
            for (peer, block) in blocks {
                results.push(self.submit_block(peer, block).await);
            }
            results
        }
    }

    // ------------------------------------------------------------ transaction relay
    // The defaults describe a node without a mempool (a test chain, a light relay): it
    // announces nothing and fetches nothing.

    /// Relay. Whether the mempool holds this transaction (or it was just confirmed): a quick
    /// read, called for every announced txid.
    fn has_tx(&self, _txid: &Txid) -> bool {
        true
    }

    /// Relay. Txids the node accepted into its mempool since the last call (any origin),
    /// oldest first, at most `max`; the rest are returned by the next call. The relay task
    /// announces them to every peer.
    fn fresh_txids(&self, _max: usize) -> Vec<Txid> {
        Vec::new()
    }

    /// Relay. Woken when fresh txids are waiting, so they are announced at once rather than
    /// at the next tick (`None`: only at ticks).
    fn fresh_signal(&self) -> Option<Arc<tokio::sync::Notify>> {
        None
    }

    /// Relay. Txids of the mempool, parents before children, at most `max`: announced to a
    /// peer when it connects.
    fn pool_txids(&self, _max: usize) -> Vec<Txid> {
        Vec::new()
    }

    /// Relay. Canonical encodings of these mempool transactions, in the order asked, unknown
    /// ones skipped, stopping before the total would exceed `budget` bytes.
    fn tx_bytes(&self, _txids: &[Txid], _budget: usize) -> Vec<Vec<u8>> {
        Vec::new()
    }

    /// Relay. A transaction fetched from `peer` (it announced it). [`Refusal::Invalid`] (it
    /// breaks a consensus rule) costs the peer misbehaviour points; policy refusals and races
    /// must be [`Refusal::Later`].
    fn submit_tx(
        &self,
        _peer: PeerId,
        _tx: Transaction,
    ) -> impl Future<Output = Result<(), Refusal>> + Send {
        async { Err(Refusal::Later("no mempool".into())) }
    }

    /// Compact blocks. The mempool transactions (and recently evicted or orphaned ones the node
    /// still holds) whose short id under `keys` is in `wanted`, as `(position, transaction)`;
    /// see [`crate::relay::compact::match_short_ids`]. Runs on the blocking pool.
    fn txs_by_short_id(
        &self,
        _keys: &ShortIdKeys,
        _wanted: &HashMap<u64, usize>,
    ) -> Vec<(usize, Transaction)> {
        Vec::new()
    }
}

/// Why the node refused headers or a block a peer sent over sync.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Breaks a rule: the peer is banned.
    Invalid(String),
    /// Not now (a time ahead of our clock, a storage limit): nobody is punished, and the data is
    /// asked for again later (the periodic status round notices the peer is still ahead).
    Later(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Invalid(r) => write!(f, "invalid: {r}"),
            Refusal::Later(r) => write!(f, "not now: {r}"),
        }
    }
}

/// An inbound request waiting to be served.
pub(crate) struct ServeRequest {
    pub peer: PeerId,
    pub request: SyncRequest,
    pub channel: ResponseChannel<Frame>,
}

/// What the swarm task tells the sync driver.
#[derive(Debug)]
pub(crate) enum SyncInput {
    PeerConnected(PeerId),
    PeerDisconnected(PeerId),
    PeerStatus(PeerId, Status),
    SyncWith(PeerId),
}
