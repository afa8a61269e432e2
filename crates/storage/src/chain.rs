//! The chain state machine: stores headers and blocks in any order, keeps the main chain on the
//! valid chain with the most cumulative work, and applies every block connect or disconnect to
//! the UTXO set, the indexes, the tip and the UTXO digest in one atomic RocksDB batch.
//!
//! One task owns the [`ChainState`] (`&mut self` for every write); readers on other threads use
//! [`ChainReader`](crate::ChainReader) snapshots and never wait for it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_consensus::rules::header::{HeaderContext, check_header, pow_is_valid};
use cairn_consensus::{
    BlockConnect, ChainParams, ChainWork, Coin, MEDIAN_TIME_SPAN, MemoryUtxoSet, Target,
    connect_block,
};
use cairn_primitives::{
    Block, BlockHash, BlockHeader, OutPoint, Transaction, Txid, XOnlyPublicKey,
};
use rocksdb::{DB, WriteBatch, WriteOptions};

use crate::cache::UtxoCache;
use crate::config::StorageConfig;
use crate::digest::{UtxoDigest, UtxoStats};
use crate::error::{StorageError, StorageResult};
use crate::reader::ChainReader;
use crate::schema::*;
use crate::store::{cf, open_db};

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

/// What happened to a submitted block itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AcceptStatus {
    /// Stored for the first time (connected or not: see the events).
    New,
    /// Already stored; nothing changed.
    Duplicate,
    /// Its parent is unknown: held in the orphan pool until the parent arrives.
    Orphan,
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
        self.events
            .iter()
            .filter_map(|e| match e {
                ChainEvent::BlockConnected { hash, height, .. } => Some((*height, *hash)),
                _ => None,
            })
            .collect()
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

/// Blocks whose parent is unknown, bounded in count and bytes (oldest evicted first).
#[derive(Debug)]
struct OrphanPool {
    blocks: HashMap<BlockHash, (Block, usize, u64)>,
    by_parent: HashMap<BlockHash, Vec<BlockHash>>,
    order: VecDeque<(u64, BlockHash)>,
    bytes: usize,
    seq: u64,
    max_blocks: usize,
    max_bytes: usize,
}

impl OrphanPool {
    fn new(max_blocks: usize, max_bytes: usize) -> Self {
        Self {
            blocks: HashMap::new(),
            by_parent: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            seq: 0,
            max_blocks,
            max_bytes,
        }
    }

    fn contains(&self, hash: &BlockHash) -> bool {
        self.blocks.contains_key(hash)
    }

    /// Adds `block`, evicting the oldest orphans to stay within the limits. False if it can
    /// never fit.
    fn insert(&mut self, hash: BlockHash, block: Block) -> bool {
        let size = block.size();
        if self.max_blocks == 0 || size > self.max_bytes {
            return false;
        }
        while self.blocks.len() >= self.max_blocks || self.bytes + size > self.max_bytes {
            let Some((seq, oldest)) = self.order.pop_front() else {
                break;
            };
            if self.blocks.get(&oldest).is_some_and(|(_, _, s)| *s == seq) {
                self.remove(&oldest);
            }
        }
        self.seq += 1;
        self.bytes += size;
        self.by_parent
            .entry(block.header.prev_hash)
            .or_default()
            .push(hash);
        self.order.push_back((self.seq, hash));
        self.blocks.insert(hash, (block, size, self.seq));
        true
    }

    fn remove(&mut self, hash: &BlockHash) -> Option<Block> {
        let (block, size, _) = self.blocks.remove(hash)?;
        self.bytes -= size;
        if let Some(v) = self.by_parent.get_mut(&block.header.prev_hash) {
            v.retain(|h| h != hash);
            if v.is_empty() {
                self.by_parent.remove(&block.header.prev_hash);
            }
        }
        Some(block)
    }

    fn take_children(&mut self, parent: &BlockHash) -> Vec<Block> {
        let hashes = self.by_parent.remove(parent).unwrap_or_default();
        hashes
            .iter()
            .filter_map(|h| {
                let (block, size, _) = self.blocks.remove(h)?;
                self.bytes -= size;
                Some(block)
            })
            .collect()
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
    cache: UtxoCache,
    orphans: OrphanPool,
    next_seq: u64,
    /// Failure injection for tests (see [`ChainState::fail_writes_after`]); always `None`
    /// otherwise.
    fail_writes_after: std::cell::Cell<Option<u64>>,
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

/// Per-pubkey balance changes of one batch.
type BalanceDeltas = HashMap<XOnlyPublicKey, i128>;

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
        let mut state = ChainState {
            fail_writes_after: std::cell::Cell::new(None),
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
            cache: UtxoCache::new(config.utxo_cache_bytes),
            orphans: OrphanPool::new(config.orphan_max_blocks, config.orphan_max_bytes),
            next_seq: 0,
        };
        if fresh {
            state.write_genesis()?;
        }
        state.load()?;
        Ok(state)
    }

    /// A cheap cloneable reader for other threads.
    pub fn reader(&self) -> ChainReader {
        ChainReader::new(self.db.clone(), self.params.clone())
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
        let (h, m) = self.cache.hit_stats();
        (h, m, self.cache.len())
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
        self.apply_connect_to_batch(
            &db,
            &mut batch,
            &genesis,
            &[txid],
            hash,
            0,
            &delta,
            &mut stats,
            &HashMap::new(),
        )?;
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
        tracing::info!(height = tip.height, hash = %tip.hash, headers = self.index.len(), "chain state loaded");
        // A crash can leave a stored block that should have been connected: finish the job.
        let mut events = Vec::new();
        self.activate_best_chain(&mut events, &HashMap::new())?;
        Ok(())
    }

    // ---------------------------------------------------------------- headers

    /// Times of up to [`MEDIAN_TIME_SPAN`] blocks ending at `hash`, newest first.
    fn recent_times(&self, hash: &BlockHash) -> Vec<u64> {
        let mut times = Vec::with_capacity(MEDIAN_TIME_SPAN);
        let mut cur = self.index.get(hash);
        while let Some(e) = cur {
            times.push(e.header.time);
            if times.len() == MEDIAN_TIME_SPAN || e.height == 0 {
                break;
            }
            cur = self.index.get(&e.header.prev_hash);
        }
        times
    }

    /// Validates and stores a header whose parent is known. Headers of known-invalid blocks
    /// and their descendants are refused with the cached reason.
    pub fn accept_header(
        &mut self,
        header: &BlockHeader,
        now: u64,
    ) -> StorageResult<HeaderOutcome> {
        let hash = header.hash();
        if let Some(e) = self.index.get(&hash) {
            if e.status.is_invalid() {
                return Err(StorageError::KnownInvalid {
                    hash,
                    reason: e.invalid_reason.clone(),
                });
            }
            return Ok(HeaderOutcome {
                hash,
                height: e.height,
                is_new: false,
            });
        }
        let parent = self
            .index
            .get(&header.prev_hash)
            .ok_or(StorageError::UnknownParent {
                hash,
                parent: header.prev_hash,
            })?;
        if parent.status.is_invalid() {
            return Err(StorageError::KnownInvalid {
                hash,
                reason: format!(
                    "descends from invalid block {}: {}",
                    header.prev_hash, parent.invalid_reason
                ),
            });
        }
        let times = self.recent_times(&header.prev_hash);
        let ctx = HeaderContext {
            parent_height: parent.height,
            parent_time: parent.header.time,
            recent_times: &times,
        };
        check_header(header, &self.params, &ctx, now)?;
        let target = Target::from_compact(header.bits).ok_or(
            cairn_consensus::ConsensusError::InvalidBits {
                hash,
                bits: header.bits,
            },
        )?;
        let entry = IndexEntry {
            header: *header,
            height: parent.height + 1,
            work: parent.work.saturating_add(target.work()),
            status: BlockStatus::ValidHeader,
            has_body: false,
            invalid_reason: String::new(),
            seq: self.next_seq,
            available: false,
        };
        let db = self.db.clone();
        let mut batch = WriteBatch::default();
        batch.put_cf(cf(&db, CF_HEADERS)?, hash.0, encode_value(&entry.record()));
        let height = entry.height;
        let better = entry.work > self.best_header().chain_work;
        self.next_seq += 1;
        self.index.insert(hash, entry);
        let header_chain_update = if better {
            Some(self.header_chain_update(&db, &mut batch, hash)?)
        } else {
            None
        };
        if let Err(e) = self.write(batch) {
            self.index.remove(&hash);
            return Err(e);
        }
        self.children
            .entry(header.prev_hash)
            .or_default()
            .push(hash);
        if let Some(update) = header_chain_update {
            self.apply_header_chain_update(update);
        }
        Ok(HeaderOutcome {
            hash,
            height,
            is_new: true,
        })
    }

    /// Accepts headers in order (as received from a peer); stops at the first failure.
    /// Returns how many were new.
    pub fn accept_headers(&mut self, headers: &[BlockHeader], now: u64) -> StorageResult<usize> {
        let mut new = 0;
        for h in headers {
            if self.accept_header(h, now)?.is_new {
                new += 1;
            }
        }
        Ok(new)
    }

    /// Puts into `batch` the change of the best header chain to end at `best`; returns the
    /// in-memory update to apply once the batch is written.
    fn header_chain_update(
        &self,
        db: &DB,
        batch: &mut WriteBatch,
        best: BlockHash,
    ) -> StorageResult<(usize, Vec<BlockHash>)> {
        let mut segment = Vec::new();
        let mut cur = best;
        loop {
            let e = self
                .index
                .get(&cur)
                .ok_or_else(|| StorageError::corrupt("header", cur, "missing from the index"))?;
            let h = e.height as usize;
            if self.header_chain.get(h) == Some(&cur) {
                break;
            }
            segment.push(cur);
            if e.height == 0 {
                break;
            }
            cur = e.header.prev_hash;
        }
        segment.reverse();
        let best_height = self.index.get(&best).map_or(0, |e| e.height) as usize;
        let start = best_height + 1 - segment.len();
        let hc = cf(db, CF_HEADER_CHAIN)?;
        for (i, hash) in segment.iter().enumerate() {
            batch.put_cf(hc, height_key((start + i) as u64), hash.0);
        }
        for h in best_height + 1..self.header_chain.len() {
            batch.delete_cf(hc, height_key(h as u64));
        }
        batch.put_cf(
            cf(db, CF_META)?,
            MetaKey::BestHeader.key(),
            encode_value(&TipRecord {
                height: best_height as u64,
                hash: best,
            }),
        );
        Ok((start, segment))
    }

    fn apply_header_chain_update(&mut self, (start, segment): (usize, Vec<BlockHash>)) {
        self.header_chain.truncate(start);
        self.header_chain.extend(segment);
    }

    // ---------------------------------------------------------------- blocks

    /// Accepts a block: stores it (headers and bodies may arrive in any order), holds it as an
    /// orphan if its parent is unknown, and moves the main chain to the valid chain with the
    /// most work, connecting and disconnecting blocks as needed.
    ///
    /// Errors: a known-invalid block ([`StorageError::KnownInvalid`], with the cached reason), a
    /// header breaking a rule ([`StorageError::Consensus`]), a body that does not match its
    /// header ([`StorageError::MutatedBlock`]: not cached, the header stays valid), storage
    /// failures. A block found invalid while connecting is `Ok` with
    /// [`AcceptStatus::Invalid`], because the chain may have changed on the way.
    pub fn accept_block(&mut self, block: Block, now: u64) -> StorageResult<AcceptOutcome> {
        let hash = block.hash();
        let mut events = Vec::new();
        let status = self.accept_block_inner(hash, block, now, &mut events)?;
        if !matches!(status, AcceptStatus::New | AcceptStatus::Invalid { .. }) {
            return Ok(AcceptOutcome { status, events });
        }
        // Orphans waiting for this block (and for their own children, recursively).
        let mut queue = vec![hash];
        while let Some(parent) = queue.pop() {
            for child in self.orphans.take_children(&parent) {
                let child_hash = child.hash();
                match self.accept_block_inner(child_hash, child, now, &mut events) {
                    Ok(AcceptStatus::New) => queue.push(child_hash),
                    Ok(_) => {}
                    Err(e) => tracing::debug!(hash = %child_hash, error = %e, "orphan rejected"),
                }
            }
        }
        let tip = self.tip();
        if events.iter().any(|e| {
            matches!(
                e,
                ChainEvent::BlockConnected { .. } | ChainEvent::BlockDisconnected { .. }
            )
        }) {
            events.push(ChainEvent::TipChanged {
                hash: tip.hash,
                height: tip.height,
            });
        }
        Ok(AcceptOutcome { status, events })
    }

    fn accept_block_inner(
        &mut self,
        hash: BlockHash,
        block: Block,
        now: u64,
        events: &mut Vec<ChainEvent>,
    ) -> StorageResult<AcceptStatus> {
        if let Some(e) = self.index.get(&hash) {
            if e.status.is_invalid() {
                return Err(StorageError::KnownInvalid {
                    hash,
                    reason: e.invalid_reason.clone(),
                });
            }
            if e.has_body {
                return Ok(AcceptStatus::Duplicate);
            }
        } else if !self.index.contains_key(&block.header.prev_hash) {
            if self.orphans.contains(&hash) {
                return Ok(AcceptStatus::Duplicate);
            }
            // Cheap proof of work first, so the pool costs an attacker hashing.
            pow_is_valid(&block.header, &self.params)?;
            if !self.orphans.insert(hash, block) {
                return Err(StorageError::MutatedBlock {
                    hash,
                    reason: "too large for the orphan pool".into(),
                });
            }
            return Ok(AcceptStatus::Orphan);
        } else {
            self.accept_header(&block.header, now)?;
        }

        // The body must be the one the header commits to; a mismatch says nothing about the
        // header (anyone can pair a valid header with junk), so nothing is cached.
        let size = block.size();
        if size > self.params.max_block_size {
            return Err(StorageError::MutatedBlock {
                hash,
                reason: format!("{size} bytes, above the limit"),
            });
        }
        if block.compute_merkle_root() != block.header.merkle_root {
            return Err(StorageError::MutatedBlock {
                hash,
                reason: "merkle root does not match the transactions".into(),
            });
        }

        let db = self.db.clone();
        let mut entry = self
            .index
            .get(&hash)
            .cloned()
            .ok_or_else(|| StorageError::corrupt("header", hash, "missing after accept"))?;
        entry.status = BlockStatus::BlockStored;
        entry.has_body = true;
        let mut batch = WriteBatch::default();
        batch.put_cf(cf(&db, CF_BLOCKS)?, hash.0, encode_value(&block));
        batch.put_cf(cf(&db, CF_HEADERS)?, hash.0, encode_value(&entry.record()));
        self.write(batch)?;
        self.index.insert(hash, entry);
        self.update_availability(hash);

        let mut bodies = HashMap::new();
        bodies.insert(hash, Arc::new(block));
        self.activate_best_chain(events, &bodies)?;
        Ok(match self.index.get(&hash) {
            Some(e) if e.status.is_invalid() => AcceptStatus::Invalid {
                reason: e.invalid_reason.clone(),
            },
            _ => AcceptStatus::New,
        })
    }

    /// After `hash`'s body is stored: marks it and its stored descendants available if its
    /// parent is, and updates the candidate leaves.
    fn update_availability(&mut self, hash: BlockHash) {
        let Some(e) = self.index.get(&hash) else {
            return;
        };
        let parent_available = e.height == 0
            || self
                .index
                .get(&e.header.prev_hash)
                .is_some_and(|p| p.available);
        if !parent_available || !e.has_body || e.status.is_invalid() {
            return;
        }
        let parent = e.header.prev_hash;
        self.candidates.remove(&parent);
        let mut stack = vec![hash];
        while let Some(h) = stack.pop() {
            let Some(e) = self.index.get_mut(&h) else {
                continue;
            };
            e.available = true;
            let mut has_available_child = false;
            for c in self.children.get(&h).cloned().unwrap_or_default() {
                if let Some(ce) = self.index.get(&c)
                    && ce.has_body
                    && !ce.status.is_invalid()
                {
                    has_available_child = true;
                    stack.push(c);
                }
            }
            if !has_available_child {
                self.candidates.insert(h);
            }
        }
    }

    /// The candidate with the most work; on a tie, the current tip, then the first seen.
    fn best_candidate(&self) -> Option<BlockHash> {
        let tip = self.tip();
        let mut best: Option<(&BlockHash, &IndexEntry)> = None;
        for h in &self.candidates {
            let Some(e) = self.index.get(h) else { continue };
            best = match best {
                None => Some((h, e)),
                Some((bh, be)) => {
                    let better = e.work > be.work
                        || (e.work == be.work
                            && *bh != tip.hash
                            && (*h == tip.hash || e.seq < be.seq));
                    if better { Some((h, e)) } else { Some((bh, be)) }
                }
            };
        }
        best.map(|(h, _)| *h)
    }

    /// Moves the main chain to the best available valid chain.
    fn activate_best_chain(
        &mut self,
        events: &mut Vec<ChainEvent>,
        bodies: &HashMap<BlockHash, Arc<Block>>,
    ) -> StorageResult<()> {
        loop {
            let Some(best) = self.best_candidate() else {
                return Ok(());
            };
            let tip = self.tip();
            let best_work = self.index.get(&best).map_or(ChainWork::ZERO, |e| e.work);
            if best == tip.hash || best_work <= tip.chain_work {
                return Ok(());
            }
            // Path from the fork point (exclusive) up to `best`.
            let mut path = Vec::new();
            let mut cur = best;
            loop {
                let e = self.index.get(&cur).ok_or_else(|| {
                    StorageError::corrupt("header", cur, "missing from the index")
                })?;
                if self.main_chain.get(e.height as usize) == Some(&cur) {
                    break;
                }
                path.push(cur);
                cur = e.header.prev_hash;
            }
            path.reverse();
            let fork_height = self.index.get(&cur).map_or(0, |e| e.height);
            if path.len() > 1 || self.tip().height != fork_height {
                tracing::info!(from = %tip.hash, to = %best, fork_height, depth = tip.height - fork_height, "switching to the chain with more work");
            }
            while self.tip().height > fork_height {
                self.disconnect_tip(events)?;
            }
            for hash in path {
                match self.connect(hash, events, bodies) {
                    Ok(()) => {}
                    Err(ConnectFailure::Invalid(reason)) => {
                        tracing::warn!(%hash, %reason, "block is invalid");
                        self.mark_invalid(hash, reason, events)?;
                        break;
                    }
                    Err(ConnectFailure::Storage(e)) => return Err(e),
                }
            }
        }
    }

    fn load_block(&self, hash: &BlockHash) -> StorageResult<Block> {
        let bytes = self
            .db
            .get_cf(cf(&self.db, CF_BLOCKS)?, hash.0)?
            .ok_or_else(|| StorageError::corrupt("block", hash, "body missing"))?;
        decode_block(hash, &bytes)
    }

    /// Prefetches the coins `block` spends (cache, then one `multi_get`) into a memory view.
    fn prefetch_inputs(&mut self, block: &Block) -> StorageResult<MemoryUtxoSet> {
        let mut view = MemoryUtxoSet::new();
        let mut missing: Vec<OutPoint> = Vec::new();
        for tx in block.transactions.iter().skip(1) {
            for input in &tx.inputs {
                match self.cache.get(&input.prevout) {
                    Some(c) => view.insert(input.prevout, c),
                    None => missing.push(input.prevout),
                }
            }
        }
        if !missing.is_empty() {
            let utxo = cf(&self.db, CF_UTXO)?;
            let keys: Vec<[u8; 36]> = missing.iter().map(outpoint_key).collect();
            let results = self.db.multi_get_cf(keys.iter().map(|k| (utxo, k)));
            for (op, r) in missing.iter().zip(results) {
                if let Some(bytes) = r? {
                    view.insert(*op, decode_coin(op, &bytes)?);
                }
            }
        }
        Ok(view)
    }

    /// Connects the block `hash` (whose parent is the tip) in one atomic batch.
    fn connect(
        &mut self,
        hash: BlockHash,
        events: &mut Vec<ChainEvent>,
        bodies: &HashMap<BlockHash, Arc<Block>>,
    ) -> Result<(), ConnectFailure> {
        let entry = self
            .index
            .get(&hash)
            .cloned()
            .ok_or_else(|| StorageError::corrupt("header", hash, "missing from the index"))?;
        debug_assert_eq!(Some(&entry.header.prev_hash), self.main_chain.last());
        let block = match bodies.get(&hash) {
            Some(b) => b.clone(),
            None => Arc::new(self.load_block(&hash)?),
        };
        let view = self.prefetch_inputs(&block)?;
        let delta = connect_block(&block, entry.height, &view, &self.params)
            .map_err(|e| ConnectFailure::Invalid(e.to_string()))?;
        let txids: Vec<Txid> = block.transactions.iter().map(Transaction::txid).collect();

        let db = self.db.clone();
        let mut batch = WriteBatch::default();
        let mut stats = self.stats;
        self.apply_connect_to_batch(
            &db,
            &mut batch,
            &block,
            &txids,
            hash,
            entry.height,
            &delta,
            &mut stats,
            &view.coins,
        )?;
        let mut new_entry = entry.clone();
        new_entry.status = BlockStatus::ConnectedValid;
        batch.put_cf(
            cf(&db, CF_HEADERS).map_err(ConnectFailure::Storage)?,
            hash.0,
            encode_value(&new_entry.record()),
        );
        self.write(batch)?;

        // Committed: now the in-memory state follows.
        self.stats = stats;
        self.main_chain.push(hash);
        self.index.insert(hash, new_entry);
        for (op, _) in &delta.spent {
            self.cache.remove(op);
        }
        for (op, coin) in &delta.created {
            self.cache.insert(*op, *coin);
        }
        tracing::debug!(height = entry.height, %hash, txs = block.transactions.len(), "block connected");
        events.push(ChainEvent::BlockConnected {
            hash,
            height: entry.height,
            block,
        });
        Ok(())
    }

    /// Writes into `batch` everything connecting `block` changes: UTXOs, undo data, tx and
    /// address indexes, height index, tip and UTXO stats.
    #[allow(clippy::too_many_arguments)]
    fn apply_connect_to_batch(
        &self,
        db: &DB,
        batch: &mut WriteBatch,
        block: &Block,
        txids: &[Txid],
        hash: BlockHash,
        height: u64,
        delta: &BlockConnect,
        stats: &mut UtxoDigest,
        prior_coins: &HashMap<OutPoint, Coin>,
    ) -> StorageResult<()> {
        let utxo = cf(db, CF_UTXO)?;
        let addr_utxo = cf(db, CF_ADDR_UTXO)?;
        let mut deltas = BalanceDeltas::new();
        for (op, coin) in &delta.spent {
            batch.delete_cf(utxo, outpoint_key(op));
            batch.delete_cf(addr_utxo, addr_utxo_key(&coin.output.pubkey, op));
            stats
                .remove(op, coin)
                .ok_or_else(|| StorageError::corrupt("utxo stats", hash, "underflow spending"))?;
            *deltas.entry(coin.output.pubkey).or_default() -= i128::from(coin.output.value.0);
        }
        for (op, coin) in &delta.created {
            let value = encode_value(coin);
            batch.put_cf(utxo, outpoint_key(op), &value);
            batch.put_cf(addr_utxo, addr_utxo_key(&coin.output.pubkey, op), &value);
            stats
                .add(op, coin)
                .ok_or_else(|| StorageError::corrupt("utxo stats", hash, "overflow"))?;
            *deltas.entry(coin.output.pubkey).or_default() += i128::from(coin.output.value.0);
        }
        self.write_balances(db, batch, &deltas, hash)?;
        self.write_tx_indexes(
            db,
            batch,
            block,
            txids,
            hash,
            height,
            |op| prior_coins.get(op).copied(),
            true,
        )?;
        crate::explorer_index::write_explorer_indexes(db, batch, block, txids, height, true)?;
        batch.put_cf(cf(db, CF_UNDO)?, hash.0, encode_value(delta));
        batch.put_cf(cf(db, CF_HEIGHT)?, height_key(height), hash.0);
        batch.put_cf(
            cf(db, CF_META)?,
            MetaKey::Tip.key(),
            encode_value(&TipRecord { height, hash }),
        );
        batch.put_cf(
            cf(db, CF_META)?,
            MetaKey::UtxoStats.key(),
            encode_value(&stats.to_record()),
        );
        Ok(())
    }

    /// Adds (`connect`) or removes the tx-index and address-history entries of `block`.
    /// `prior_coin` finds the coin an input spends when it predates the block.
    #[allow(clippy::too_many_arguments)]
    fn write_tx_indexes(
        &self,
        db: &DB,
        batch: &mut WriteBatch,
        block: &Block,
        txids: &[Txid],
        hash: BlockHash,
        height: u64,
        prior_coin: impl Fn(&OutPoint) -> Option<Coin>,
        connect: bool,
    ) -> StorageResult<()> {
        let tx_cf = cf(db, CF_TX)?;
        let addr_tx = cf(db, CF_ADDR_TX)?;
        let position: HashMap<Txid, usize> =
            txids.iter().enumerate().map(|(i, t)| (*t, i)).collect();
        let mut keys: Vec<XOnlyPublicKey> = Vec::new();
        for (i, (tx, txid)) in block.transactions.iter().zip(txids).enumerate() {
            if connect {
                let loc = TxLocation {
                    block_hash: hash,
                    height,
                    index: i as u32,
                };
                batch.put_cf(tx_cf, txid.0, encode_value(&loc));
            } else {
                batch.delete_cf(tx_cf, txid.0);
            }
            keys.clear();
            keys.extend(tx.outputs.iter().map(|o| o.pubkey));
            for input in &tx.inputs {
                let pubkey = match prior_coin(&input.prevout) {
                    Some(c) => c.output.pubkey,
                    None => position
                        .get(&input.prevout.txid)
                        .and_then(|j| {
                            block.transactions[*j]
                                .outputs
                                .get(input.prevout.vout as usize)
                        })
                        .map(|o| o.pubkey)
                        .ok_or_else(|| {
                            StorageError::corrupt(
                                "spent coin",
                                input.prevout,
                                "neither in the undo data nor in the block",
                            )
                        })?,
                };
                keys.push(pubkey);
            }
            keys.sort_unstable();
            keys.dedup();
            for k in &keys {
                let key = addr_tx_key(k, height, i as u32, txid);
                if connect {
                    batch.put_cf(addr_tx, key, []);
                } else {
                    batch.delete_cf(addr_tx, key);
                }
            }
        }
        Ok(())
    }

    /// Reads the balances `deltas` touch (the database is current: this task is the only
    /// writer) and writes the new ones; a zero balance is deleted.
    fn write_balances(
        &self,
        db: &DB,
        batch: &mut WriteBatch,
        deltas: &BalanceDeltas,
        hash: BlockHash,
    ) -> StorageResult<()> {
        let bal = cf(db, CF_ADDR_BALANCE)?;
        let keys: Vec<(&XOnlyPublicKey, &i128)> = deltas.iter().filter(|(_, d)| **d != 0).collect();
        let current = db.multi_get_cf(keys.iter().map(|(k, _)| (bal, k.0)));
        for ((pubkey, d), cur) in keys.iter().zip(current) {
            let old = match cur? {
                Some(b) => decode_balance(pubkey, &b)?,
                None => 0,
            };
            let new = i128::from(old) + **d;
            let new = u64::try_from(new).map_err(|_| {
                StorageError::corrupt(
                    "address balance",
                    pubkey.to_hex(),
                    format!("{old} + {d} out of range at block {hash}"),
                )
            })?;
            if new == 0 {
                batch.delete_cf(bal, pubkey.0);
            } else {
                batch.put_cf(bal, pubkey.0, new.to_le_bytes());
            }
        }
        Ok(())
    }

    /// Disconnects the tip in one atomic batch, restoring the coins it spent from undo data.
    fn disconnect_tip(&mut self, events: &mut Vec<ChainEvent>) -> StorageResult<()> {
        let tip = self.tip();
        if tip.height == 0 {
            return Err(StorageError::corrupt(
                "chain",
                tip.hash,
                "asked to disconnect genesis",
            ));
        }
        let db = self.db.clone();
        let entry = self
            .index
            .get(&tip.hash)
            .cloned()
            .ok_or_else(|| StorageError::corrupt("header", tip.hash, "missing"))?;
        let block = self.load_block(&tip.hash)?;
        let undo_bytes = db
            .get_cf(cf(&db, CF_UNDO)?, tip.hash.0)?
            .ok_or_else(|| StorageError::corrupt("undo data", tip.hash, "missing"))?;
        let delta: BlockConnect = decode_value("undo data", tip.hash, &undo_bytes)?;
        let txids: Vec<Txid> = block.transactions.iter().map(Transaction::txid).collect();

        let mut batch = WriteBatch::default();
        let mut stats = self.stats;
        let utxo = cf(&db, CF_UTXO)?;
        let addr_utxo = cf(&db, CF_ADDR_UTXO)?;
        let mut deltas = BalanceDeltas::new();
        for (op, coin) in &delta.created {
            batch.delete_cf(utxo, outpoint_key(op));
            batch.delete_cf(addr_utxo, addr_utxo_key(&coin.output.pubkey, op));
            stats
                .remove(op, coin)
                .ok_or_else(|| StorageError::corrupt("utxo stats", tip.hash, "underflow"))?;
            *deltas.entry(coin.output.pubkey).or_default() -= i128::from(coin.output.value.0);
        }
        for (op, coin) in &delta.spent {
            let value = encode_value(coin);
            batch.put_cf(utxo, outpoint_key(op), &value);
            batch.put_cf(addr_utxo, addr_utxo_key(&coin.output.pubkey, op), &value);
            stats
                .add(op, coin)
                .ok_or_else(|| StorageError::corrupt("utxo stats", tip.hash, "overflow"))?;
            *deltas.entry(coin.output.pubkey).or_default() += i128::from(coin.output.value.0);
        }
        self.write_balances(&db, &mut batch, &deltas, tip.hash)?;
        let spent: HashMap<OutPoint, Coin> = delta.spent.iter().copied().collect();
        self.write_tx_indexes(
            &db,
            &mut batch,
            &block,
            &txids,
            tip.hash,
            tip.height,
            |op| spent.get(op).copied(),
            false,
        )?;
        let parent = TipRecord {
            height: tip.height - 1,
            hash: entry.header.prev_hash,
        };
        crate::explorer_index::write_explorer_indexes(
            &db, &mut batch, &block, &txids, tip.height, false,
        )?;
        batch.delete_cf(cf(&db, CF_HEIGHT)?, height_key(tip.height));
        batch.put_cf(cf(&db, CF_META)?, MetaKey::Tip.key(), encode_value(&parent));
        batch.put_cf(
            cf(&db, CF_META)?,
            MetaKey::UtxoStats.key(),
            encode_value(&stats.to_record()),
        );
        self.write(batch)?;

        self.stats = stats;
        self.main_chain.pop();
        for (op, _) in &delta.created {
            self.cache.remove(op);
        }
        for (op, coin) in &delta.spent {
            self.cache.insert(*op, *coin);
        }
        tracing::debug!(height = tip.height, hash = %tip.hash, "block disconnected");
        events.push(ChainEvent::BlockDisconnected {
            hash: tip.hash,
            height: tip.height,
            block: Arc::new(block),
        });
        Ok(())
    }

    /// Marks `hash` invalid and its descendants invalid-ancestor, for good.
    fn mark_invalid(
        &mut self,
        hash: BlockHash,
        reason: String,
        events: &mut Vec<ChainEvent>,
    ) -> StorageResult<()> {
        let db = self.db.clone();
        let headers = cf(&db, CF_HEADERS)?;
        let mut batch = WriteBatch::default();
        let mut updated: Vec<(BlockHash, IndexEntry)> = Vec::new();
        let mut stack = vec![(hash, BlockStatus::Invalid, reason.clone())];
        while let Some((h, status, why)) = stack.pop() {
            let Some(mut e) = self.index.get(&h).cloned() else {
                continue;
            };
            e.status = status;
            e.invalid_reason = why;
            e.available = false;
            batch.put_cf(headers, h.0, encode_value(&e.record()));
            for c in self.children.get(&h).cloned().unwrap_or_default() {
                stack.push((
                    c,
                    BlockStatus::InvalidAncestor,
                    format!("descends from invalid block {hash}: {reason}"),
                ));
            }
            updated.push((h, e));
        }
        // The best header may have been on the invalid branch.
        let best_header_invalid = updated
            .iter()
            .any(|(h, _)| Some(h) == self.header_chain.last());
        let saved: Vec<(BlockHash, IndexEntry)> = updated
            .iter()
            .filter_map(|(h, _)| self.index.get(h).map(|e| (*h, e.clone())))
            .collect();
        for (h, e) in &updated {
            self.index.insert(*h, e.clone());
        }
        let header_update = if best_header_invalid {
            let best = self
                .index
                .iter()
                .filter(|(_, e)| !e.status.is_invalid())
                .max_by(|a, b| a.1.work.cmp(&b.1.work).then(b.1.seq.cmp(&a.1.seq)))
                .map(|(h, _)| *h)
                .unwrap_or(self.params.genesis_hash());
            Some(self.header_chain_update(&db, &mut batch, best)?)
        } else {
            None
        };
        if let Err(e) = self.write(batch) {
            for (h, e) in saved {
                self.index.insert(h, e);
            }
            return Err(e);
        }
        for (h, _) in &updated {
            self.candidates.remove(h);
        }
        if let Some(update) = header_update {
            self.apply_header_chain_update(update);
        }
        // The parent may be a leaf again.
        if let Some(parent) = self.index.get(&hash).map(|e| e.header.prev_hash) {
            let parent_available = self.index.get(&parent).is_some_and(|p| p.available);
            let other_child = self.children.get(&parent).is_some_and(|c| {
                c.iter()
                    .any(|c| self.index.get(c).is_some_and(|e| e.available))
            });
            if parent_available && !other_child {
                self.candidates.insert(parent);
            }
        }
        events.push(ChainEvent::BlockInvalid { hash, reason });
        Ok(())
    }
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
