//! The chain task: the single writer of chain state and of the mempool.
//!
//! It runs on its own OS thread (RocksDB writes and block validation are blocking work) and
//! takes commands from a bounded channel. Everything else (RPC handlers, the p2p event loop, the
//! miner) holds a [`ChainHandle`] and reads through [`ChainReader`] snapshots and the mempool's
//! read lock, so queries never wait behind an import. Transaction signatures are checked before
//! a transaction reaches this task ([`ChainHandle::accept_tx`]); the task only does the final
//! stateful step.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, RwLock, RwLockWriteGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use cairn_consensus::{ChainParams, SigCache};
use cairn_mempool::{Mempool, MempoolConfig, MempoolError, PeerTag, Prechecked};
use cairn_primitives::{Block, BlockHash, BlockHeader, Transaction, Txid, XOnlyPublicKey};
use cairn_rpc::Notification;
use cairn_storage::{
    AcceptStatus, BlockSource, ChainEvent, ChainReader, ChainState, StorageError, StorageResult,
};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use crate::metrics::NodeMetrics;
use crate::miner;

/// Depth of the chain task's command queue; senders wait when it is full (back-pressure).
pub const CHAIN_QUEUE_LEN: usize = 1_024;
/// Depth of the relay queue (blocks and transactions to publish); when full, relay is skipped:
/// gossip is best effort and peers catch up through sync.
pub const RELAY_QUEUE_LEN: usize = 4_096;
/// Mempool file name in the data dir.
pub const MEMPOOL_FILE: &str = "mempool.dat";
/// Txids accepted and not yet taken by the relay task for announcement. The task takes them
/// every 250 ms, so this holds far more than any burst; beyond it the oldest are dropped
/// (counted: `cairn_relay_fresh_dropped_total`), and peers then get them only from gossip or
/// the pool announcement at their next connection.
pub const FRESH_TXIDS_LEN: usize = 131_072;

/// Txids the chain task accepted, waiting to be announced to peers (see [`FRESH_TXIDS_LEN`]).
#[derive(Debug, Default)]
pub struct FreshTxids {
    queue: std::sync::Mutex<std::collections::VecDeque<Txid>>,
    /// Wakes the relay task (see `ChainAccess::fresh_signal`).
    pub signal: Arc<tokio::sync::Notify>,
}

impl FreshTxids {
    /// Adds accepted txids; returns how many old ones were dropped to make room.
    fn push(&self, txids: impl Iterator<Item = Txid>) -> usize {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let before = q.len();
        q.extend(txids);
        if q.len() > before {
            self.signal.notify_one();
        }
        let over = q.len().saturating_sub(FRESH_TXIDS_LEN);
        q.drain(..over);
        over
    }

    /// The oldest `max` txids, removed.
    pub fn take(&self, max: usize) -> Vec<Txid> {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let n = q.len().min(max);
        q.drain(..n).collect()
    }
}

/// Names a file holding a signed number of seconds added to the clock, read at every use:
/// for tests of clock skew between nodes (a test shifts one node's clock, then moves it).
/// Unset in production.
pub const CLOCK_OFFSET_FILE_ENV: &str = "CAIRN_TEST_CLOCK_OFFSET_FILE";

/// Seconds since the Unix epoch: the node's only clock; rules get it as a parameter.
pub fn now() -> u64 {
    let real = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    real.saturating_add_signed(clock_offset())
}

/// The test clock offset (see [`CLOCK_OFFSET_FILE_ENV`]); 0 when unset or unreadable.
fn clock_offset() -> i64 {
    static PATH: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    PATH.get_or_init(|| std::env::var_os(CLOCK_OFFSET_FILE_ENV).map(PathBuf::from))
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Where a block or transaction came from (decides who relays it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// RPC, miner, mempool file: we publish it ourselves.
    Local,
    /// Gossip: gossipsub forwards it once we answer Accept.
    Gossip,
    /// The sync protocol: not relayed (peers have it or will sync it).
    Sync,
}

/// What became of a submitted block, in the detail gossip and sync need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlockFate {
    /// Connected to the main chain: fully valid, worth relaying.
    Connected,
    /// Stored, valid as far as checked, not connected (a side branch, or waiting for parents).
    Stored,
    /// Valid as far as checked but not kept (unrequested and unable to become the tip, or over
    /// the side-branch limits): not relayed, nobody's fault.
    NotStored(String),
    /// Its time is too far ahead of our clock: may be valid later; never punished.
    TooNew(String),
    Duplicate,
    /// Parent unknown: held in the orphan pool; a sync is needed.
    Orphan,
    /// Breaks a rule that does not depend on our clock.
    Invalid(String),
    /// Our side failed (a database error, the chain task stopped): says nothing about the
    /// block, so it is never held against the peer that sent it; a sync asks again later.
    Failed(String),
}

impl From<BlockFate> for BlockVerdict {
    fn from(f: BlockFate) -> Self {
        match f {
            BlockFate::Connected | BlockFate::Stored => BlockVerdict::Accepted,
            BlockFate::NotStored(_) | BlockFate::Orphan => BlockVerdict::Orphan,
            BlockFate::Duplicate => BlockVerdict::Duplicate,
            BlockFate::TooNew(r) | BlockFate::Invalid(r) | BlockFate::Failed(r) => {
                BlockVerdict::Invalid(r)
            }
        }
    }
}

/// What a storage error says about the block it came from: the peer's fault only for a rule the
/// block breaks; a failure of our own database is nobody's verdict on the block.
pub(crate) fn error_fate(e: StorageError) -> BlockFate {
    match e {
        StorageError::KnownInvalid { reason, .. } => BlockFate::Invalid(reason),
        StorageError::Consensus(e) if e.depends_on_clock() => BlockFate::TooNew(e.to_string()),
        StorageError::NotKept { reason, .. } => BlockFate::NotStored(reason),
        e @ (StorageError::Consensus(_)
        | StorageError::MutatedBlock { .. }
        | StorageError::UnknownParent { .. }) => BlockFate::Invalid(e.to_string()),
        e @ (StorageError::Db(_)
        | StorageError::Corrupt { .. }
        | StorageError::SchemaMismatch { .. }
        | StorageError::IndexBehind { .. }
        | StorageError::IndexFailed { .. }
        | StorageError::WrongChain { .. }
        | StorageError::NotFound(_)) => BlockFate::Failed(format!("storage error: {e}")),
    }
}

/// The result of submitting a block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlockVerdict {
    /// Stored and valid (connected, or on a side branch).
    Accepted,
    Duplicate,
    /// Parent unknown: held in the orphan pool; a sync is needed.
    Orphan,
    Invalid(String),
}

/// Why headers from a peer were refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeadersRefused {
    /// A header breaks a rule that does not depend on our clock: the peer is at fault.
    Invalid(String),
    /// Too far ahead of our clock, or not kept (limits), or the chain task is gone: nobody's
    /// fault; the headers may be asked again later.
    Later(String),
}

/// Sorts a storage error on headers into fault or no fault.
fn headers_refused(e: &StorageError) -> HeadersRefused {
    match e {
        StorageError::Consensus(c) if c.depends_on_clock() => HeadersRefused::Later(e.to_string()),
        StorageError::NotKept { .. } => HeadersRefused::Later(e.to_string()),
        StorageError::Consensus(_)
        | StorageError::KnownInvalid { .. }
        | StorageError::UnknownParent { .. }
        | StorageError::MutatedBlock { .. } => HeadersRefused::Invalid(e.to_string()),
        other => HeadersRefused::Later(other.to_string()),
    }
}

/// What the relay task publishes.
#[derive(Debug)]
pub enum Relay {
    Tx(Arc<Transaction>),
    Block(Arc<Block>),
}

pub enum ChainCommand {
    SubmitBlock {
        block: Box<Block>,
        origin: Origin,
        reply: oneshot::Sender<BlockFate>,
    },
    /// Blocks from a sync, in chain order: connected through one pipeline.
    SubmitSyncBlocks {
        blocks: Vec<Block>,
        reply: oneshot::Sender<Vec<BlockFate>>,
    },
    SubmitHeaders {
        headers: Vec<BlockHeader>,
        reply: oneshot::Sender<Result<(), HeadersRefused>>,
    },
    AcceptTx {
        checked: Box<Prechecked>,
        origin: Origin,
        source: PeerTag,
        reply: oneshot::Sender<Result<u64, MempoolError>>,
    },
    /// A block template paying `pubkey`, not yet solved (the miner grinds it outside the task).
    Template {
        pubkey: XOnlyPublicKey,
        reply: oneshot::Sender<Result<Block, String>>,
    },
    /// Mines `count` blocks at once (dev chains, where the proof of work is trivial).
    Generate {
        count: u32,
        pubkey: XOnlyPublicKey,
        reply: oneshot::Sender<Result<Vec<BlockHash>, String>>,
    },
    /// Drops expired transactions.
    Expire,
    /// Saves the mempool and stops the task (RocksDB closes when the state drops).
    Shutdown { reply: oneshot::Sender<()> },
}

/// Cloneable access to the chain task.
#[derive(Clone)]
pub struct ChainHandle {
    tx: mpsc::Sender<ChainCommand>,
    pub reader: ChainReader,
    pub mempool: Arc<RwLock<Mempool>>,
    pub mempool_config: Arc<MempoolConfig>,
    pub params: Arc<ChainParams>,
    pub tip: watch::Receiver<(u64, BlockHash)>,
    /// Accepted txids for the relay task to announce.
    pub fresh: Arc<FreshTxids>,
    /// Signatures verified at acceptance, so the block that confirms them skips them.
    pub sig_cache: Arc<SigCache>,
}

const STOPPED: &str = "the chain task has stopped";

impl ChainHandle {
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> ChainCommand,
    ) -> Result<T, String> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| STOPPED.to_string())?;
        rx.await.map_err(|_| STOPPED.to_string())
    }

    pub async fn submit_block(&self, block: Block, origin: Origin) -> BlockVerdict {
        self.submit_block_fate(block, origin).await.into()
    }

    /// [`ChainHandle::submit_block`] with the detail gossip and sync need.
    pub async fn submit_block_fate(&self, block: Block, origin: Origin) -> BlockFate {
        self.ask(|reply| ChainCommand::SubmitBlock {
            block: Box::new(block),
            origin,
            reply,
        })
        .await
        .unwrap_or_else(BlockFate::Failed)
    }

    /// Blocks from a sync, in chain order: one fate per block. The chain stores them all, then
    /// connects them through its pipeline (one block's signatures checked while the next one's
    /// coins are read); see `ChainState::accept_blocks_from`.
    pub async fn submit_sync_blocks(&self, blocks: Vec<Block>) -> Vec<BlockFate> {
        let n = blocks.len();
        self.ask(|reply| ChainCommand::SubmitSyncBlocks { blocks, reply })
            .await
            .unwrap_or_else(|stopped| vec![BlockFate::Failed(stopped); n])
    }

    pub async fn submit_headers(&self, headers: Vec<BlockHeader>) -> Result<(), HeadersRefused> {
        self.ask(|reply| ChainCommand::SubmitHeaders { headers, reply })
            .await
            .map_err(HeadersRefused::Later)?
    }

    pub async fn template(&self, pubkey: XOnlyPublicKey) -> Result<Block, String> {
        self.ask(|reply| ChainCommand::Template { pubkey, reply })
            .await?
    }

    pub async fn generate(
        &self,
        count: u32,
        pubkey: XOnlyPublicKey,
    ) -> Result<Vec<BlockHash>, String> {
        self.ask(|reply| ChainCommand::Generate {
            count,
            pubkey,
            reply,
        })
        .await?
    }

    pub async fn expire(&self) {
        let _ = self.tx.send(ChainCommand::Expire).await;
    }

    pub async fn shutdown(&self) {
        let _ = self.ask(|reply| ChainCommand::Shutdown { reply }).await;
    }

    /// Checks `tx` (context-free rules and every signature whose coin is confirmed) on the
    /// blocking pool against a chain snapshot, in parallel with other calls, then hands it to
    /// the chain task for the final stateful step. Returns the fee.
    pub async fn accept_tx(
        &self,
        tx: Transaction,
        origin: Origin,
        source: PeerTag,
    ) -> Result<u64, MempoolError> {
        let pool = Arc::clone(&self.mempool);
        let pooled = move |txid: &Txid| {
            pool.read()
                .unwrap_or_else(|p| p.into_inner())
                .contains(txid)
        };
        // A small transaction's precheck (a few point reads and signature checks, well under
        // 100 µs) runs on this worker: handing it to the blocking pool costs a thread switch
        // each way, which measured as more than the work. Larger ones go to the blocking pool.
        let checked = if tx.inputs.len() <= PRECHECK_INLINE_MAX_INPUTS {
            cairn_mempool::precheck_cached(
                tx,
                &self.reader,
                &self.params,
                &self.mempool_config,
                Some(&self.sig_cache),
                pooled,
            )?
        } else {
            let reader = self.reader.clone();
            let params = Arc::clone(&self.params);
            let config = Arc::clone(&self.mempool_config);
            let sigs = Arc::clone(&self.sig_cache);
            tokio::task::spawn_blocking(move || {
                cairn_mempool::precheck_cached(tx, &reader, &params, &config, Some(&sigs), pooled)
            })
            .await
            .map_err(|e| MempoolError::Internal(e.to_string()))??
        };
        // Yield once before the hand-off. In an RPC batch, whose calls are polled together,
        // every precheck then runs before any hand-off, and the hand-offs reach the chain task
        // back to back: its thread wakes about once per batch, not once per transaction (a
        // wake-up, a futex call and an inter-processor interrupt, cost as much as the rest of the
        // acceptance outside the signature checks).
        tokio::task::yield_now().await;
        let (reply, rx) = oneshot::channel();
        let cmd = ChainCommand::AcceptTx {
            checked: Box::new(checked),
            origin,
            source,
            reply,
        };
        self.tx
            .send(cmd)
            .await
            .map_err(|_| MempoolError::Internal(STOPPED.into()))?;
        rx.await
            .map_err(|_| MempoolError::Internal(STOPPED.into()))?
    }
}

/// Transactions with at most this many inputs are prechecked on the calling async worker.
pub const PRECHECK_INLINE_MAX_INPUTS: usize = 4;

/// The task's state.
struct ChainTask {
    state: ChainState,
    reader: ChainReader,
    mempool: Arc<RwLock<Mempool>>,
    params: Arc<ChainParams>,
    notifications: broadcast::Sender<Notification>,
    relay: mpsc::Sender<Relay>,
    fresh: Arc<FreshTxids>,
    tip: watch::Sender<(u64, BlockHash)>,
    metrics: Arc<NodeMetrics>,
    mempool_file: PathBuf,
}

/// Everything the chain task needs to start.
pub struct ChainTaskParts {
    pub state: ChainState,
    pub mempool_config: MempoolConfig,
    pub notifications: broadcast::Sender<Notification>,
    pub metrics: Arc<NodeMetrics>,
    pub datadir: PathBuf,
    /// Shared with the chain state's connects (see `cairn_consensus::SigCache`).
    pub sig_cache: Arc<SigCache>,
}

/// Starts the chain task on its own thread. Returns the handle, the relay queue and the thread.
pub fn spawn(
    parts: ChainTaskParts,
) -> std::io::Result<(
    ChainHandle,
    mpsc::Receiver<Relay>,
    std::thread::JoinHandle<()>,
)> {
    let params = Arc::new(parts.state.params().clone());
    let reader = parts.state.reader();
    let mempool = Arc::new(RwLock::new(Mempool::new(
        (*params).clone(),
        parts.mempool_config.clone(),
    )));
    let tip = parts.state.tip();
    let (tip_tx, tip_rx) = watch::channel((tip.height, tip.hash));
    let (cmd_tx, mut cmd_rx) = mpsc::channel(CHAIN_QUEUE_LEN);
    let (relay_tx, relay_rx) = mpsc::channel(RELAY_QUEUE_LEN);
    let fresh = Arc::new(FreshTxids::default());
    let handle = ChainHandle {
        tx: cmd_tx,
        reader: reader.clone(),
        mempool: Arc::clone(&mempool),
        mempool_config: Arc::new(parts.mempool_config),
        fresh: Arc::clone(&fresh),
        params: Arc::clone(&params),
        tip: tip_rx,
        sig_cache: parts.sig_cache,
    };
    let mut task = ChainTask {
        state: parts.state,
        reader,
        mempool,
        params,
        notifications: parts.notifications,
        relay: relay_tx,
        fresh,
        tip: tip_tx,
        metrics: parts.metrics,
        mempool_file: parts.datadir.join(MEMPOOL_FILE),
    };
    let thread = std::thread::Builder::new()
        .name("chain".into())
        .spawn(move || {
            task.load_mempool();
            while let Some(cmd) = cmd_rx.blocking_recv() {
                if let ChainCommand::Shutdown { reply } = cmd {
                    task.save_mempool();
                    drop(task);
                    let _ = reply.send(());
                    return;
                }
                task.handle(cmd);
            }
            task.save_mempool();
        })?;
    Ok((handle, relay_rx, thread))
}

impl ChainTask {
    fn pool(&self) -> RwLockWriteGuard<'_, Mempool> {
        self.mempool.write().unwrap_or_else(|p| p.into_inner())
    }

    fn handle(&mut self, cmd: ChainCommand) {
        match cmd {
            ChainCommand::SubmitBlock {
                block,
                origin,
                reply,
            } => {
                let _ = reply.send(self.submit_block_fate(*block, origin));
            }
            ChainCommand::SubmitSyncBlocks { blocks, reply } => {
                let _ = reply.send(self.submit_sync_blocks(blocks));
            }
            ChainCommand::SubmitHeaders { headers, reply } => {
                let r = self
                    .state
                    .accept_headers(&headers, now())
                    .map(|_| ())
                    .map_err(|e| headers_refused(&e));
                let _ = reply.send(r);
            }
            ChainCommand::AcceptTx {
                checked,
                origin,
                source,
                reply,
            } => {
                let _ = reply.send(self.accept_tx(*checked, origin, source));
            }
            ChainCommand::Template { pubkey, reply } => {
                let r = self.template(pubkey);
                let _ = reply.send(r);
            }
            ChainCommand::Generate {
                count,
                pubkey,
                reply,
            } => {
                let _ = reply.send(self.generate(count, pubkey));
            }
            ChainCommand::Expire => {
                let gone = self.pool().expire(now());
                if !gone.is_empty() {
                    info!(count = gone.len(), "expired mempool transactions");
                }
            }
            ChainCommand::Shutdown { .. } => unreachable!("handled by the loop"),
        }
    }

    fn template(&self, pubkey: XOnlyPublicKey) -> Result<Block, String> {
        let ctx = self
            .reader
            .block_template_context()
            .map_err(|e| e.to_string())?;
        let pool = self.mempool.read().unwrap_or_else(|p| p.into_inner());
        Ok(miner::assemble(&ctx, &pool, &self.params, pubkey, now()))
    }

    fn generate(&mut self, count: u32, pubkey: XOnlyPublicKey) -> Result<Vec<BlockHash>, String> {
        let mut hashes = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let template = self.template(pubkey)?;
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let block =
                miner::solve(template, 1, &stop).ok_or("no nonce found for the template")?;
            let hash = block.hash();
            match self.submit_block(block, Origin::Local) {
                BlockVerdict::Accepted => hashes.push(hash),
                other => return Err(format!("mined block {hash} was not accepted: {other:?}")),
            }
        }
        Ok(hashes)
    }

    fn submit_block(&mut self, block: Block, origin: Origin) -> BlockVerdict {
        self.submit_block_fate(block, origin).into()
    }

    fn submit_block_fate(&mut self, block: Block, origin: Origin) -> BlockFate {
        let hash = block.hash();
        // Only a block made here is relayed from here: copy only that one (a 1 MB block costs
        // a copy per block otherwise, on the sync path too).
        let to_relay = (origin == Origin::Local).then(|| Arc::new(block.clone()));
        // Gossip pushes blocks nobody asked for: they are kept only if they can become the tip.
        let source = match origin {
            Origin::Gossip => BlockSource::Unrequested,
            Origin::Local | Origin::Sync => BlockSource::Requested,
        };
        let outcome = match self.state.accept_block_from(block, now(), source) {
            Ok(o) => o,
            Err(e) => return self.refused(e),
        };
        self.apply_events(&outcome.events);
        if matches!(outcome.status, AcceptStatus::New)
            && let Some(block) = to_relay
        {
            self.relay_local(Relay::Block(block));
        }
        let connected = outcome.connected().iter().any(|(_, h)| *h == hash);
        self.fate(Ok(outcome.status), connected)
    }

    fn submit_sync_blocks(&mut self, blocks: Vec<Block>) -> Vec<BlockFate> {
        let hashes: Vec<BlockHash> = blocks.iter().map(Block::hash).collect();
        let outcome = match self
            .state
            .accept_blocks_from(blocks, now(), BlockSource::Requested)
        {
            Ok(o) => o,
            Err(e) => {
                let fate = self.refused(e);
                return vec![fate; hashes.len()];
            }
        };
        self.apply_events(&outcome.events);
        let connected: HashSet<BlockHash> =
            outcome.connected().into_iter().map(|(_, h)| h).collect();
        outcome
            .statuses
            .into_iter()
            .zip(&hashes)
            .map(|(status, hash)| self.fate(status, connected.contains(hash)))
            .collect()
    }

    /// A block's fate from its status (`connected`: it is among the blocks connected).
    fn fate(&self, status: StorageResult<AcceptStatus>, connected: bool) -> BlockFate {
        match status {
            Err(e) => self.refused(e),
            Ok(AcceptStatus::New) => {
                NodeMetrics::inc(&self.metrics.blocks_validated);
                if connected {
                    BlockFate::Connected
                } else {
                    BlockFate::Stored
                }
            }
            Ok(AcceptStatus::Duplicate) => BlockFate::Duplicate,
            Ok(AcceptStatus::Orphan) => BlockFate::Orphan,
            Ok(AcceptStatus::NotStored { reason }) => BlockFate::NotStored(reason),
            Ok(AcceptStatus::Invalid { reason }) => {
                NodeMetrics::inc(&self.metrics.blocks_rejected);
                BlockFate::Invalid(reason)
            }
        }
    }

    /// A block refused before it was stored, sorted into fault or no fault.
    fn refused(&self, e: StorageError) -> BlockFate {
        // A block already known invalid was counted when it was found so.
        let known = matches!(e, StorageError::KnownInvalid { .. });
        let fate = error_fate(e);
        match &fate {
            BlockFate::Invalid(_) if !known => NodeMetrics::inc(&self.metrics.blocks_rejected),
            BlockFate::Failed(reason) => warn!(%reason, "storing or connecting a block failed"),
            _ => {}
        }
        fate
    }

    /// Brings the mempool, the subscribers and the tip watchers up to date with what the
    /// chain did. Disconnections come first in the event list of a reorganisation; their
    /// transactions are re-validated against the final chain, then the connected blocks remove
    /// what they confirm or conflict with.
    fn apply_events(&mut self, events: &[ChainEvent]) {
        let t = now();
        let Ok((height, _)) = self.reader.tip() else {
            return;
        };
        // A reorganisation reports its disconnects newest first, before its connects. The pool
        // takes them back oldest first, in one pass, so a child is re-added after its parent.
        let mut disconnected: Vec<Arc<Block>> = Vec::new();
        for e in events {
            if let ChainEvent::BlockDisconnected {
                hash,
                height: h,
                block,
            } = e
            {
                info!(%hash, height = h, "block disconnected");
                disconnected.push(Arc::clone(block));
            }
        }
        if !disconnected.is_empty() {
            disconnected.reverse();
            let reader = self.reader.clone();
            self.pool()
                .blocks_disconnected(&disconnected, &reader, height, t);
        }
        for e in events {
            match e {
                ChainEvent::BlockDisconnected { .. } => {}
                ChainEvent::BlockConnected {
                    hash,
                    height: h,
                    block,
                } => {
                    debug!(%hash, height = h, txs = block.transactions.len(), "block connected");
                    let reader = self.reader.clone();
                    self.pool().block_connected(block, &reader, *h, t);
                    let _ = self.notifications.send(Notification::NewBlock {
                        hash: *hash,
                        height: *h,
                        time: block.header.time,
                        ntx: block.transactions.len(),
                    });
                }
                ChainEvent::BlockInvalid { hash, reason } => warn!(%hash, %reason, "block invalid"),
                ChainEvent::TipChanged { hash, height } => {
                    // While syncing, the progress line (every few seconds) reports the height;
                    // a line per block would bury everything else.
                    let syncing = self.reader.best_header().is_ok_and(|h| h.height > *height);
                    if syncing {
                        debug!(%hash, height, "new tip");
                    } else {
                        info!(%hash, height, "new tip");
                    }
                    self.tip.send_replace((*height, *hash));
                }
            }
        }
    }

    fn accept_tx(
        &mut self,
        checked: Prechecked,
        origin: Origin,
        source: PeerTag,
    ) -> Result<u64, MempoolError> {
        let (height, _) = self
            .reader
            .tip()
            .map_err(|e| MempoolError::Internal(e.to_string()))?;
        let reader = self.reader.clone();
        let outcome = self
            .pool()
            .accept_prechecked(checked, &reader, height, now(), source);
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                NodeMetrics::inc(&self.metrics.txs_rejected);
                return Err(e);
            }
        };
        let mut fee = 0;
        for (i, acc) in outcome.accepted.iter().enumerate() {
            NodeMetrics::inc(&self.metrics.txs_accepted);
            if i == 0 {
                fee = acc.fee.0;
            }
            let _ = self.notifications.send(Notification::NewTransaction {
                txid: acc.txid,
                size: acc.size,
                fee: acc.fee.0,
            });
            // The first is the submitted one (gossip relays it on Accept); the others are
            // orphans it unlocked, which were never relayed.
            if i > 0 || origin == Origin::Local {
                self.relay_local(Relay::Tx(Arc::clone(&acc.tx)));
            }
        }
        let dropped = self.fresh.push(outcome.accepted.iter().map(|acc| acc.txid));
        if dropped > 0 {
            NodeMetrics::add(&self.metrics.fresh_txids_dropped, dropped);
            debug!(dropped, "announcement queue full; oldest txids dropped");
        }
        Ok(fee)
    }

    /// Hands a local block or transaction to the relay task. A full queue drops it (counted,
    /// logged): the block reaches peers through their sync, the transaction through the
    /// announcements (every accepted txid is announced, this queue or not).
    fn relay_local(&self, r: Relay) {
        if self.relay.try_send(r).is_err() {
            NodeMetrics::inc(&self.metrics.relay_queue_full);
            debug!("relay queue full; local publish skipped");
        }
    }

    fn load_mempool(&mut self) {
        let txs = match Mempool::load(&self.mempool_file) {
            Ok(t) => t,
            Err(MempoolError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => {
                warn!(error = %e, file = %self.mempool_file.display(), "mempool file unreadable; starting empty");
                return;
            }
        };
        let Ok((height, _)) = self.reader.tip() else {
            return;
        };
        let (mut ok, total) = (0, txs.len());
        for tx in txs {
            let reader = self.reader.clone();
            if self.pool().accept(tx, &reader, height, now(), 0).is_ok() {
                ok += 1;
            }
        }
        info!(loaded = ok, of = total, "mempool reloaded");
    }

    fn save_mempool(&self) {
        let pool = self.mempool.read().unwrap_or_else(|p| p.into_inner());
        match pool.save(&self.mempool_file) {
            Ok(()) => {
                info!(txs = pool.info().size, file = %self.mempool_file.display(), "mempool saved")
            }
            Err(e) => warn!(error = %e, "saving the mempool failed"),
        }
    }
}
