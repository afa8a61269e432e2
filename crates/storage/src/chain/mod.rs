//! The chain state machine: stores headers and blocks in any order, keeps the main chain on the
//! valid chain with the most cumulative work, and applies every block connect or disconnect to
//! the UTXO set, the indexes, the tip and the UTXO digest in one atomic RocksDB batch.
//!
//! One task owns the [`ChainState`] (`&mut self` for every write); readers on other threads use
//! [`ChainReader`](crate::ChainReader) snapshots and never wait for it.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use cairn_consensus::rules::block::{check_block_contents, coinbase_commits_to_height};
use cairn_consensus::rules::header::{HeaderContext, check_header, pow_is_valid};
use cairn_consensus::{
    BlockConnect, ChainParams, ChainWork, Coin, InputsChecked, MEDIAN_TIME_SPAN, MemoryUtxoSet,
    SigCache, Target, check_signatures, connect_inputs,
};
use cairn_primitives::{Block, BlockHash, BlockHeader, OutPoint, Transaction, Txid};
use rocksdb::{DB, WriteBatch, WriteOptions};

use crate::cache::UtxoCache;
use crate::config::{MAX_SIDE_BRANCH_HEADERS, StorageConfig};
use crate::digest::{UtxoDigest, UtxoStats};
use crate::error::{StorageError, StorageResult};
use crate::index::{self, IndexProgress, IndexShared, IndexWriter};
use crate::reader::ChainReader;
use crate::schema::*;
use crate::store::{cf, open_db};
use crate::timings::ConnectTimingsSnapshot;

mod blocks;
mod connect;
mod headers;
mod orphans;

use orphans::OrphanPool;

/// A chain event, in the order it happened, for the mempool, the RPC subscriptions and the log.
#[derive(Clone, Debug)]
pub enum ChainEvent {
    /// `block` was connected to the main chain at `height`.
    BlockConnected {
        hash: BlockHash,
        height: u64,
        block: Arc<Block>,
    },
    /// `block` was disconnected from the main chain (a reorganisation); its non-coinbase
    /// transactions may go back to the mempool.
    BlockDisconnected {
        hash: BlockHash,
        height: u64,
        block: Arc<Block>,
    },
    /// A block failed validation while being connected; it and its descendants are marked
    /// invalid and never tried again.
    BlockInvalid { hash: BlockHash, reason: String },
    /// The main-chain tip moved (reported once per accepted block, after the other events).
    TipChanged { hash: BlockHash, height: u64 },
}

/// Whether a block was asked for: decides if a block that cannot become the tip is stored (as
/// Bitcoin Core's `AcceptBlock` with `fRequested`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockSource {
    /// Made here (miner, RPC) or downloaded for a validated header (sync): stored if it passes
    /// every check that needs no UTXO context.
    Requested,
    /// Pushed by a peer (gossip): stored only if, besides passing those checks, its parent's
    /// body is here, it carries more work than the tip and at least the minimum chain work.
    Unrequested,
}

/// What happened to a submitted block itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AcceptStatus {
    /// Stored for the first time (connected or not: see the events).
    New,
    /// Already stored; nothing changed.
    Duplicate,
    /// Its parent is unknown: held in the orphan pool until the parent arrives.
    Orphan,
    /// Valid as far as checked but not stored: an unrequested block that cannot become the tip
    /// now (see [`BlockSource::Unrequested`]). Fetch it by sync if it turns out to matter.
    NotStored { reason: String },
    /// Stored, then found invalid when connected (marked invalid; see `BlockInvalid` events).
    Invalid { reason: String },
}

/// The result of [`ChainState::accept_block`].
#[derive(Clone, Debug)]
pub struct AcceptOutcome {
    pub status: AcceptStatus,
    /// Everything that happened to the chain, in order (including orphans this block unlocked).
    pub events: Vec<ChainEvent>,
}

/// The result of [`ChainState::accept_blocks_from`].
#[derive(Debug)]
pub struct BatchOutcome {
    /// One per block given, in the same order.
    pub statuses: Vec<StorageResult<AcceptStatus>>,
    /// Everything that happened to the chain, in order.
    pub events: Vec<ChainEvent>,
}

impl BatchOutcome {
    /// Hashes and heights of the blocks connected, in order.
    pub fn connected(&self) -> Vec<(u64, BlockHash)> {
        connected_in(&self.events)
    }
}

fn connected_in(events: &[ChainEvent]) -> Vec<(u64, BlockHash)> {
    events
        .iter()
        .filter_map(|e| match e {
            ChainEvent::BlockConnected { hash, height, .. } => Some((*height, *hash)),
            _ => None,
        })
        .collect()
}

impl AcceptOutcome {
    /// The new tip, if it changed.
    pub fn new_tip(&self) -> Option<(u64, BlockHash)> {
        self.events.iter().rev().find_map(|e| match e {
            ChainEvent::TipChanged { hash, height } => Some((*height, *hash)),
            _ => None,
        })
    }
    /// Hashes and heights of the blocks connected.
    pub fn connected(&self) -> Vec<(u64, BlockHash)> {
        connected_in(&self.events)
    }
    /// Hashes and heights of the blocks disconnected.
    pub fn disconnected(&self) -> Vec<(u64, BlockHash)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                ChainEvent::BlockDisconnected { hash, height, .. } => Some((*height, *hash)),
                _ => None,
            })
            .collect()
    }
}

/// The result of [`ChainState::accept_header`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderOutcome {
    pub hash: BlockHash,
    pub height: u64,
    /// False if the header was already known.
    pub is_new: bool,
}

/// Height, hash and cumulative work of a block (the tip or the best header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainTip {
    pub height: u64,
    pub hash: BlockHash,
    pub chain_work: ChainWork,
}

/// One block index entry, kept in memory for every known header (as Bitcoin Core's
/// `CBlockIndex`).
#[derive(Clone, Debug)]
struct IndexEntry {
    header: BlockHeader,
    height: u64,
    work: ChainWork,
    status: BlockStatus,
    has_body: bool,
    invalid_reason: String,
    /// Arrival order, to prefer the first-seen chain among equal work.
    seq: u64,
    /// The body and all bodies down to the main chain are stored and none is known invalid.
    available: bool,
}

impl IndexEntry {
    fn record(&self) -> HeaderRecord {
        HeaderRecord {
            header: self.header,
            height: self.height,
            chain_work: self.work.to_be_bytes(),
            status: self.status,
            has_body: self.has_body,
            invalid_reason: self.invalid_reason.clone(),
        }
    }
}

/// Why connecting a block failed.
enum ConnectFailure {
    /// The block breaks a consensus rule: mark it invalid.
    Invalid(String),
    /// Storage failed: stop.
    Storage(StorageError),
}

impl From<StorageError> for ConnectFailure {
    fn from(e: StorageError) -> Self {
        ConnectFailure::Storage(e)
    }
}

/// The chain state: block index, main chain, UTXO set (cache + RocksDB), orphan pool.
pub struct ChainState {
    db: Arc<DB>,
    params: Arc<ChainParams>,
    dir: PathBuf,
    write_opts: WriteOptions,
    index: HashMap<BlockHash, IndexEntry>,
    children: HashMap<BlockHash, Vec<BlockHash>>,
    /// Main chain by height.
    main_chain: Vec<BlockHash>,
    /// Best valid header chain by height.
    header_chain: Vec<BlockHash>,
    /// Available blocks without an available child: where the best chain can end.
    candidates: HashSet<BlockHash>,
    stats: UtxoDigest,
    /// The UTXO working set (shared with readers; see [`crate::cache`]).
    cache: Arc<RwLock<UtxoCache>>,
    /// The block the UTXO column family reflects (`meta/utxo_tip`).
    utxo_tip: TipRecord,
    /// Blocks connected since the last UTXO flush.
    blocks_since_flush: u64,
    /// See [`StorageConfig::utxo_flush_batch_bytes`].
    flush_batch_bytes: usize,
    /// `open` finished: the in-memory state (tips, cache) matches the database. A state that
    /// failed to load is never flushed (it could record a wrong `utxo_tip`).
    loaded: bool,
    /// Signatures checked ahead of the connect (see [`cairn_consensus::SigCache`]).
    sig_cache: Option<Arc<SigCache>>,
    orphans: OrphanPool,
    next_seq: u64,
    /// The index tip, the lock ordering index and chain commits, and connect timings.
    indexes: Arc<IndexShared>,
    /// The background indexer thread (joined on drop).
    indexer: Option<std::thread::JoinHandle<()>>,
    /// Failure injection for tests (see [`ChainState::fail_writes_after`]); always `None`
    /// otherwise.
    fail_writes_after: std::cell::Cell<Option<u64>>,
    /// See [`StorageConfig::tip_indexes_inline`].
    tip_indexes_inline: bool,
}

impl Drop for ChainState {
    fn drop(&mut self) {
        // Nothing is lost without it (the next open replays from undo data); it only saves
        // that work.
        if self.loaded
            && let Err(e) = self.flush_utxos(false)
        {
            tracing::warn!(error = %e, "could not flush the UTXO cache at shutdown");
        }
        self.indexes.lock().stop = true;
        self.indexes.notify();
        if let Some(t) = self.indexer.take() {
            // The indexer finishes its current batch (or drops it) and exits.
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for ChainState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainState")
            .field("dir", &self.dir)
            .field("tip", &self.tip())
            .field("headers", &self.index.len())
            .finish_non_exhaustive()
    }
}

impl ChainState {
    /// Opens the chain in `dir` (creating it with `params`' genesis if empty). Refuses a data
    /// directory of another schema version or another chain.
    pub fn open(
        dir: impl AsRef<Path>,
        params: ChainParams,
        config: StorageConfig,
    ) -> StorageResult<ChainState> {
        let dir = dir.as_ref().to_path_buf();
        let (db, fresh) = open_db(&dir, &config)?;
        let mut write_opts = WriteOptions::default();
        write_opts.set_sync(config.sync_writes);
        // Replaced by the stored tips in `load`, before anything reads them.
        let placeholder = TipRecord {
            height: 0,
            hash: BlockHash::ZERO,
        };
        let mut state = ChainState {
            fail_writes_after: std::cell::Cell::new(None),
            tip_indexes_inline: config.tip_indexes_inline,
            flush_batch_bytes: config.utxo_flush_batch_bytes.max(1),
            db: Arc::new(db),
            params: Arc::new(params),
            dir,
            write_opts,
            index: HashMap::new(),
            children: HashMap::new(),
            main_chain: Vec::new(),
            header_chain: Vec::new(),
            candidates: HashSet::new(),
            stats: UtxoDigest::default(),
            cache: Arc::new(RwLock::new(UtxoCache::new(config.utxo_cache_bytes))),
            utxo_tip: placeholder,
            blocks_since_flush: 0,
            loaded: false,
            sig_cache: None,
            orphans: OrphanPool::new(config.orphan_max_blocks, config.orphan_max_bytes),
            next_seq: 0,
            indexes: Arc::new(IndexShared::new(placeholder, placeholder)),
            indexer: None,
        };
        if fresh {
            state.write_genesis()?;
        }
        state.load()?;
        state.loaded = true;
        state.indexer = Some(
            index::indexer::spawn(state.db.clone(), state.indexes.clone())
                .map_err(|e| StorageError::corrupt("indexer thread", "spawn", e.to_string()))?,
        );
        Ok(state)
    }

    /// A cheap cloneable reader for other threads.
    pub fn reader(&self) -> ChainReader {
        ChainReader::new(
            self.db.clone(),
            self.params.clone(),
            self.indexes.clone(),
            self.cache.clone(),
        )
    }

    /// Connects skip the signatures `cache` holds (filled by mempool acceptance).
    pub fn set_sig_cache(&mut self, cache: Arc<SigCache>) {
        self.sig_cache = Some(cache);
    }

    /// How far the transaction and address indexes are.
    pub fn index_progress(&self) -> IndexProgress {
        self.indexes.progress()
    }

    /// Where block-connect time went since the chain was opened.
    pub fn connect_timings(&self) -> ConnectTimingsSnapshot {
        self.indexes.timings.snapshot()
    }

    pub fn params(&self) -> &ChainParams {
        &self.params
    }

    /// The main-chain tip.
    pub fn tip(&self) -> ChainTip {
        self.end_of(&self.main_chain)
    }

    /// The best valid header (for sync progress: the tip follows it as bodies arrive).
    pub fn best_header(&self) -> ChainTip {
        self.end_of(&self.header_chain)
    }

    /// The last entry of a chain by height, with its height and work.
    fn end_of(&self, chain: &[BlockHash]) -> ChainTip {
        let hash = chain.last().copied().unwrap_or(BlockHash::ZERO);
        let (height, work) = self
            .index
            .get(&hash)
            .map_or((0, ChainWork::ZERO), |e| (e.height, e.work));
        ChainTip {
            height,
            hash,
            chain_work: work,
        }
    }

    /// The main-chain block at `height`.
    pub fn block_hash(&self, height: u64) -> Option<BlockHash> {
        usize::try_from(height)
            .ok()
            .and_then(|h| self.main_chain.get(h))
            .copied()
    }

    /// UTXO count, total and digest at the tip.
    pub fn utxo_stats(&self) -> UtxoStats {
        let tip = self.tip();
        UtxoStats {
            height: tip.height,
            best_hash: tip.hash,
            txouts: self.stats.txouts,
            total_amount: cairn_primitives::Amount(self.stats.total_amount),
            digest: self.stats.digest,
        }
    }

    /// Blocks and bytes held in the orphan pool.
    pub fn orphan_pool_size(&self) -> (usize, usize) {
        (self.orphans.blocks.len(), self.orphans.bytes)
    }

    /// (hits, misses, entries) of the UTXO cache.
    pub fn cache_stats(&self) -> (u64, u64, usize) {
        let cache = read_lock(&self.cache);
        let (h, m) = cache.hit_stats();
        (h, m, cache.len())
    }

    /// Whether a block (header) is known and invalid, with the cached reason.
    pub fn invalid_reason(&self, hash: &BlockHash) -> Option<&str> {
        self.index
            .get(hash)
            .filter(|e| e.status.is_invalid())
            .map(|e| e.invalid_reason.as_str())
    }

    /// Whether the header is known (stored), whatever its status.
    pub fn has_header(&self, hash: &BlockHash) -> bool {
        self.index.contains_key(hash)
    }

    /// Whether the body is stored.
    pub fn has_block(&self, hash: &BlockHash) -> bool {
        self.index.get(hash).is_some_and(|e| e.has_body) || self.orphans.contains(hash)
    }

    fn write(&self, batch: WriteBatch) -> StorageResult<()> {
        if let Some(n) = self.fail_writes_after.get() {
            if n == 0 {
                return Err(StorageError::Corrupt {
                    what: "write",
                    location: "test hook".into(),
                    detail: "injected write failure (as from a full disk)".into(),
                });
            }
            self.fail_writes_after.set(Some(n - 1));
        }
        self.db.write_opt(batch, &self.write_opts)?;
        Ok(())
    }

    /// Test hook: holds the background indexer (`true`) or lets it run, to observe a node
    /// whose indexes lag its tip.
    #[cfg(any(test, feature = "test-utils"))]
    pub fn pause_indexer(&self, paused: bool) {
        self.indexes.lock().paused = paused;
        self.indexes.notify();
    }

    /// Test hook: after `n` more successful writes every write fails, as on a full disk
    /// (`None` restores normal writes).
    #[cfg(any(test, feature = "test-utils"))]
    pub fn fail_writes_after(&self, n: Option<u64>) {
        self.fail_writes_after.set(n);
    }

    // ---------------------------------------------------------------- open

    fn write_genesis(&mut self) -> StorageResult<()> {
        let db = self.db.clone();
        let genesis = self.params.genesis_block().clone();
        let hash = genesis.hash();
        let work = Target::from_compact(genesis.header.bits).map_or(ChainWork::ZERO, |t| t.work());
        let mut batch = WriteBatch::default();
        batch.put_cf(
            cf(&db, CF_META)?,
            MetaKey::SchemaVersion.key(),
            SCHEMA_VERSION.to_le_bytes(),
        );
        batch.put_cf(cf(&db, CF_META)?, MetaKey::Genesis.key(), hash.0);
        let record = HeaderRecord {
            header: genesis.header,
            height: 0,
            chain_work: work.to_be_bytes(),
            status: BlockStatus::ConnectedValid,
            has_body: true,
            invalid_reason: String::new(),
        };
        batch.put_cf(cf(&db, CF_HEADERS)?, hash.0, encode_value(&record));
        batch.put_cf(cf(&db, CF_BLOCKS)?, hash.0, encode_value(&genesis));
        batch.put_cf(cf(&db, CF_HEADER_CHAIN)?, height_key(0), hash.0);
        batch.put_cf(
            cf(&db, CF_META)?,
            MetaKey::BestHeader.key(),
            encode_value(&TipRecord { height: 0, hash }),
        );
        // Genesis outputs are ordinary (non-coinbase) coins at height 0: spendable at once.
        let coinbase = &genesis.transactions[0];
        let txid = coinbase.txid();
        let created: Vec<(OutPoint, Coin)> = coinbase
            .outputs
            .iter()
            .enumerate()
            .map(|(vout, out)| {
                (
                    OutPoint::new(txid, vout as u32),
                    Coin {
                        output: *out,
                        height: 0,
                        coinbase: false,
                    },
                )
            })
            .collect();
        let delta = BlockConnect {
            spent: vec![],
            created,
            fees: cairn_primitives::Amount::ZERO,
        };
        let mut stats = UtxoDigest::default();
        self.write_chain_connect(&db, &mut batch, hash, 0, &delta, &mut stats, true)?;
        let mut writer = IndexWriter::new(&db);
        writer.connect(&mut batch, &genesis, &[txid], hash, 0, &delta)?;
        writer.finish(&mut batch, TipRecord { height: 0, hash })?;
        self.write(batch)?;
        tracing::info!(%hash, dir = %self.dir.display(), "created a new chain database");
        Ok(())
    }

    fn load(&mut self) -> StorageResult<()> {
        let db = self.db.clone();
        let meta = cf(&db, CF_META)?;
        let genesis = self.params.genesis_hash();
        let stored = db
            .get_cf(meta, MetaKey::Genesis.key())?
            .ok_or_else(|| StorageError::corrupt("genesis hash", "meta", "missing"))?;
        let stored = decode_hash("genesis hash", "meta", &stored)?;
        if stored != genesis {
            return Err(StorageError::WrongChain {
                dir: self.dir.display().to_string(),
                found: stored,
                expected: genesis,
            });
        }
        // Block index.
        let mut entries: Vec<(BlockHash, HeaderRecord)> = Vec::new();
        for item in db.iterator_cf(cf(&db, CF_HEADERS)?, rocksdb::IteratorMode::Start) {
            let (k, v) = item?;
            let hash = decode_hash("header key", "headers", &k)?;
            let record: HeaderRecord = decode_value("header record", hash, &v)?;
            entries.push((hash, record));
        }
        entries.sort_by_key(|(_, r)| r.height);
        for (hash, r) in entries {
            let seq = self.next_seq;
            self.next_seq += 1;
            if r.height > 0 {
                let parent = self.index.get(&r.header.prev_hash).ok_or_else(|| {
                    StorageError::corrupt("header", hash, "parent header missing")
                })?;
                if parent.height + 1 != r.height {
                    return Err(StorageError::corrupt(
                        "header",
                        hash,
                        "height is not parent height + 1",
                    ));
                }
                self.children
                    .entry(r.header.prev_hash)
                    .or_default()
                    .push(hash);
            }
            let available = r.has_body
                && !r.status.is_invalid()
                && (r.height == 0
                    || self
                        .index
                        .get(&r.header.prev_hash)
                        .is_some_and(|p| p.available));
            self.index.insert(
                hash,
                IndexEntry {
                    header: r.header,
                    height: r.height,
                    work: r.work(),
                    status: r.status,
                    has_body: r.has_body,
                    invalid_reason: r.invalid_reason,
                    seq,
                    available,
                },
            );
        }
        if !self.index.contains_key(&genesis) {
            return Err(StorageError::corrupt(
                "header",
                genesis,
                "genesis header missing",
            ));
        }
        for (hash, e) in &self.index {
            let has_available_child = self.children.get(hash).is_some_and(|c| {
                c.iter()
                    .any(|c| self.index.get(c).is_some_and(|e| e.available))
            });
            if e.available && !has_available_child {
                self.candidates.insert(*hash);
            }
        }
        self.main_chain = load_chain(&db, CF_HEIGHT)?;
        self.header_chain = load_chain(&db, CF_HEADER_CHAIN)?;
        let tip: TipRecord = decode_value(
            "tip",
            "meta",
            &db.get_cf(meta, MetaKey::Tip.key())?
                .ok_or_else(|| StorageError::corrupt("tip", "meta", "missing"))?,
        )?;
        if self.main_chain.last() != Some(&tip.hash)
            || self.main_chain.len() as u64 != tip.height + 1
        {
            return Err(StorageError::corrupt(
                "tip",
                "meta",
                "does not match the height index",
            ));
        }
        for (h, hash) in self.main_chain.iter().enumerate() {
            if self.index.get(hash).map(|e| e.height) != Some(h as u64) {
                return Err(StorageError::corrupt(
                    "height index",
                    h,
                    "names a block not at that height",
                ));
            }
        }
        let stats: UtxoStatsRecord = decode_value(
            "utxo stats",
            "meta",
            &db.get_cf(meta, MetaKey::UtxoStats.key())?
                .ok_or_else(|| StorageError::corrupt("utxo stats", "meta", "missing"))?,
        )?;
        self.stats = UtxoDigest::from_record(stats);
        let index_tip: TipRecord = decode_value(
            "index tip",
            "meta",
            &db.get_cf(meta, MetaKey::IndexTip.key())?
                .ok_or_else(|| StorageError::corrupt("index tip", "meta", "missing"))?,
        )?;
        if self.block_hash(index_tip.height) != Some(index_tip.hash) {
            return Err(StorageError::corrupt(
                "index tip",
                "meta",
                "not on the main chain",
            ));
        }
        {
            let mut ix = self.indexes.lock();
            ix.index_tip = index_tip;
            ix.chain_tip = tip;
        }
        self.utxo_tip = decode_value(
            "utxo tip",
            "meta",
            &db.get_cf(meta, MetaKey::UtxoTip.key())?
                .ok_or_else(|| StorageError::corrupt("utxo tip", "meta", "missing"))?,
        )?;
        self.replay_unflushed()?;
        if index_tip != tip {
            tracing::info!(
                indexed = index_tip.height,
                tip = tip.height,
                "the transaction and address indexes are behind the tip; catching up in the background"
            );
        }
        tracing::info!(height = tip.height, hash = %tip.hash, headers = self.index.len(), "chain state loaded");
        // A crash can leave a stored block that should have been connected: finish the job.
        let mut events = Vec::new();
        self.activate_best_chain(&mut events, &HashMap::new())?;
        Ok(())
    }
}

/// The cache lock for reading. A poisoned lock means a writer panicked (a broken invariant);
/// the cache is then still a subset of what a replay would rebuild, so reads go on.
pub(crate) fn read_lock(c: &RwLock<UtxoCache>) -> RwLockReadGuard<'_, UtxoCache> {
    c.read().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn write_lock(c: &RwLock<UtxoCache>) -> RwLockWriteGuard<'_, UtxoCache> {
    c.write().unwrap_or_else(|p| p.into_inner())
}

/// Loads a height -> hash column family as a contiguous vector.
fn load_chain(db: &DB, name: &'static str) -> StorageResult<Vec<BlockHash>> {
    let mut chain = Vec::new();
    for item in db.iterator_cf(cf(db, name)?, rocksdb::IteratorMode::Start) {
        let (k, v) = item?;
        let h = decode_height_key(&k)?;
        if h != chain.len() as u64 {
            return Err(StorageError::corrupt(
                "height index",
                name,
                format!("gap before height {h}"),
            ));
        }
        chain.push(decode_hash("block hash", format!("{name} {h}"), &v)?);
    }
    if chain.is_empty() {
        return Err(StorageError::corrupt("height index", name, "empty"));
    }
    Ok(chain)
}
