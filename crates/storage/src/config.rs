//! Storage limits and RocksDB tuning, each a named constant with a default.

/// Default size of the in-memory UTXO cache (like Bitcoin Core's `-dbcache`): the UTXO changes
/// of recent blocks are held there and written at flushes.
pub const DEFAULT_UTXO_CACHE_BYTES: usize = 256 * 1024 * 1024;
/// Most blocks connected between two UTXO cache flushes, whatever the cache's fill: bounds the
/// blocks replayed from undo data after a crash.
pub const UTXO_FLUSH_MAX_BLOCKS: u64 = 2_000;
/// Default bytes of UTXO changes written in one RocksDB batch at a flush (as Bitcoin Core's
/// `-dbbatchsize`, half its 16 MiB): a flush of a full cache is written in chunks, so it never
/// holds a copy of the whole cache's changes in memory (about 90 bytes per changed coin; ~90 MB
/// for a full 256 MiB cache). A flush also holds up to this many bytes of changes copied out
/// to be sorted (see `ChainState::flush_utxos`), so it holds about twice this at once.
pub const DEFAULT_UTXO_FLUSH_BATCH_BYTES: usize = 8 * 1024 * 1024;
/// Default number of blocks the orphan pool holds (blocks whose parent is unknown).
pub const DEFAULT_ORPHAN_MAX_BLOCKS: usize = 100;
/// Default total bytes of the blocks the orphan pool holds.
pub const DEFAULT_ORPHAN_MAX_BYTES: usize = 64 * 1024 * 1024;
/// Most headers kept off the best header chain (side branches). A header with more work than
/// the best one is always kept; beyond this limit other valid headers are not stored.
pub const MAX_SIDE_BRANCH_HEADERS: usize = 10_000;
/// Default RocksDB limit on open files.
pub const DEFAULT_MAX_OPEN_FILES: i32 = 512;
/// Default RocksDB memtable size per column family.
pub const DEFAULT_WRITE_BUFFER_BYTES: usize = 32 * 1024 * 1024;
/// Default bytes of all column families' memtables together (RocksDB's
/// `db_write_buffer_size`).
pub const DEFAULT_TOTAL_WRITE_BUFFER_BYTES: usize = 96 * 1024 * 1024;
/// Default size of RocksDB's block cache (shared by all column families).
pub const DEFAULT_BLOCK_CACHE_BYTES: usize = 64 * 1024 * 1024;
/// Most headers [`crate::ChainReader::headers_after`] returns in one call.
pub const MAX_HEADERS_PER_REQUEST: usize = 2_000;
/// Most hashes [`crate::ChainReader::missing_blocks`] returns in one call.
pub const MAX_MISSING_BLOCKS_PER_REQUEST: usize = 1_024;
/// Most best-header-chain entries [`crate::ChainReader::missing_blocks`] scans per call.
pub const MAX_MISSING_BLOCKS_SCAN: u64 = 100_000;
/// A block connected more than this many blocks below the best header is part of a sync: its
/// index entries are left to the background indexer instead of its own batch.
pub const INLINE_INDEX_MAX_BEHIND: u64 = 24;
/// The background indexer waits while a sync connects blocks, until the sync has been idle
/// this long (or reaches the best header).
pub const SYNC_IDLE_GRACE: std::time::Duration = std::time::Duration::from_millis(250);
/// Most blocks the background indexer writes in one batch.
pub const MAX_INDEX_BATCH_BLOCKS: u64 = 64;
/// Most transactions the background indexer writes in one batch. Small: RocksDB queues writers,
/// so while an index batch is written the chain task's next block write waits behind it
/// (measured with 20,000: block write 3.2 ms instead of 1.4 ms per 200-tx block).
pub const MAX_INDEX_BATCH_TXS: usize = 1_000;
/// How long a read that needs the indexes waits for them to reach the tip before it reports
/// that they are behind.
pub const INDEX_READ_WAIT: std::time::Duration = std::time::Duration::from_secs(3);
/// Number of most recent hashes a block locator lists one by one before spacing them out.
pub const LOCATOR_DENSE_ENTRIES: usize = 10;

/// Everything about storage that an operator may tune.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageConfig {
    /// Bytes of UTXOs kept in memory; 0 disables the cache (every input is read from RocksDB).
    pub utxo_cache_bytes: usize,
    /// Bytes of UTXO changes per RocksDB batch at a flush (see
    /// [`DEFAULT_UTXO_FLUSH_BATCH_BYTES`]); the last batch also records the block the UTXO set
    /// then reflects.
    pub utxo_flush_batch_bytes: usize,
    /// Most blocks with an unknown parent kept while waiting for the parent.
    pub orphan_max_blocks: usize,
    /// Most bytes of such blocks.
    pub orphan_max_bytes: usize,
    /// RocksDB `max_open_files` (-1: unlimited).
    pub max_open_files: i32,
    /// RocksDB memtable size per column family.
    pub write_buffer_bytes: usize,
    /// Bytes of all column families' memtables together (each is also bounded by
    /// `write_buffer_bytes`).
    pub total_write_buffer_bytes: usize,
    /// RocksDB block cache size, shared by all column families.
    pub block_cache_bytes: usize,
    /// fsync the write-ahead log on every block connect/disconnect. Off by default: RocksDB
    /// batches are atomic in the WAL either way, so a killed process (kill -9) always reopens
    /// consistently; syncing additionally protects the last blocks against power loss, at the
    /// price of one fsync per block.
    pub sync_writes: bool,
    /// Write a block's index entries (tx, address, balance, spender, counts) in the block's own
    /// batch when it is connected at the tip. Off by default: the background indexer writes
    /// them just after, at low CPU priority, so a block is relayed as soon as its UTXO changes
    /// are committed (as Bitcoin Core's `BaseIndex` follows the chain off the connect path).
    /// Reads that need an index wait for it either way ([`INDEX_READ_WAIT`]).
    pub tip_indexes_inline: bool,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            utxo_cache_bytes: DEFAULT_UTXO_CACHE_BYTES,
            utxo_flush_batch_bytes: DEFAULT_UTXO_FLUSH_BATCH_BYTES,
            orphan_max_blocks: DEFAULT_ORPHAN_MAX_BLOCKS,
            orphan_max_bytes: DEFAULT_ORPHAN_MAX_BYTES,
            max_open_files: DEFAULT_MAX_OPEN_FILES,
            write_buffer_bytes: DEFAULT_WRITE_BUFFER_BYTES,
            total_write_buffer_bytes: DEFAULT_TOTAL_WRITE_BUFFER_BYTES,
            block_cache_bytes: DEFAULT_BLOCK_CACHE_BYTES,
            sync_writes: false,
            tip_indexes_inline: false,
        }
    }
}
