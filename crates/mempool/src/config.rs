use cairn_primitives::Amount;

/// Default pool limit: 300 MB of estimated memory (Bitcoin Core's `-maxmempool`).
pub const DEFAULT_MAX_BYTES: usize = 300_000_000;
/// Default minimum relay fee rate, base units per byte.
pub const DEFAULT_MIN_RELAY_FEE_RATE: u64 = 1;
/// Outputs below this many base units are dust: spending them would cost more than they hold
/// (an input is about 100 bytes; at a few units per byte that is several hundred units).
pub const DEFAULT_DUST_THRESHOLD: Amount = Amount(546);
/// Largest transaction relayed (consensus allows up to the block size).
pub const DEFAULT_MAX_TX_SIZE: usize = 100_000;
/// Ancestor/descendant limits, counts including the transaction itself (Bitcoin Core's).
pub const DEFAULT_MAX_ANCESTORS: usize = 25;
pub const DEFAULT_MAX_ANCESTOR_BYTES: usize = 101_000;
pub const DEFAULT_MAX_DESCENDANTS: usize = 25;
pub const DEFAULT_MAX_DESCENDANT_BYTES: usize = 101_000;
/// Most transactions one replacement may evict (Bitcoin Core's rule 5).
pub const DEFAULT_MAX_REPLACEMENTS: usize = 100;
/// Transactions leave the pool after two weeks unconfirmed (Bitcoin Core's `-mempoolexpiry`).
pub const DEFAULT_EXPIRY_SECS: u64 = 14 * 24 * 60 * 60;
/// Orphan pool: count, bytes, share of one peer, lifetime.
pub const DEFAULT_ORPHAN_MAX_COUNT: usize = 100;
pub const DEFAULT_ORPHAN_MAX_BYTES: usize = 5_000_000;
pub const DEFAULT_ORPHAN_MAX_PER_PEER: usize = 20;
pub const DEFAULT_ORPHAN_EXPIRY_SECS: u64 = 20 * 60;
/// The rolling minimum fee rate halves every this many seconds once the pool has room again.
pub const DEFAULT_MIN_FEE_HALFLIFE_SECS: u64 = 12 * 60 * 60;

/// Mempool policy and limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MempoolConfig {
    pub max_bytes: usize,
    pub min_relay_fee_rate: u64,
    pub dust_threshold: Amount,
    pub max_tx_size: usize,
    pub max_ancestors: usize,
    pub max_ancestor_bytes: usize,
    pub max_descendants: usize,
    pub max_descendant_bytes: usize,
    pub max_replacements: usize,
    pub expiry_secs: u64,
    pub orphan_max_count: usize,
    pub orphan_max_bytes: usize,
    pub orphan_max_per_peer: usize,
    pub orphan_expiry_secs: u64,
    pub min_fee_halflife_secs: u64,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_MAX_BYTES,
            min_relay_fee_rate: DEFAULT_MIN_RELAY_FEE_RATE,
            dust_threshold: DEFAULT_DUST_THRESHOLD,
            max_tx_size: DEFAULT_MAX_TX_SIZE,
            max_ancestors: DEFAULT_MAX_ANCESTORS,
            max_ancestor_bytes: DEFAULT_MAX_ANCESTOR_BYTES,
            max_descendants: DEFAULT_MAX_DESCENDANTS,
            max_descendant_bytes: DEFAULT_MAX_DESCENDANT_BYTES,
            max_replacements: DEFAULT_MAX_REPLACEMENTS,
            expiry_secs: DEFAULT_EXPIRY_SECS,
            orphan_max_count: DEFAULT_ORPHAN_MAX_COUNT,
            orphan_max_bytes: DEFAULT_ORPHAN_MAX_BYTES,
            orphan_max_per_peer: DEFAULT_ORPHAN_MAX_PER_PEER,
            orphan_expiry_secs: DEFAULT_ORPHAN_EXPIRY_SECS,
            min_fee_halflife_secs: DEFAULT_MIN_FEE_HALFLIFE_SECS,
        }
    }
}
