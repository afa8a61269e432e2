//! The on-disk layout: column families, key encodings and stored records.
//!
//! Every value is the canonical encoding of [`cairn_primitives::encoding`]. Keys that must sort
//! (heights, address history) are big-endian, so RocksDB's byte order is chain order.
//!
//! | column family  | key                                      | value                         |
//! |----------------|------------------------------------------|-------------------------------|
//! | `headers`      | block hash                               | [`HeaderRecord`]              |
//! | `blocks`       | block hash                               | encoded [`Block`]             |
//! | `undo`         | block hash                               | encoded `BlockConnect`        |
//! | `utxo`         | encoded outpoint (36 B)                  | encoded [`Coin`]              |
//! | `height`       | main-chain height (u64 BE)               | block hash                    |
//! | `header_chain` | best-header-chain height (u64 BE)        | block hash                    |
//! | `tx`           | txid                                     | [`TxLocation`]                |
//! | `addr_tx`      | pubkey, height BE, tx index BE, txid     | empty                         |
//! | `addr_utxo`    | pubkey, encoded outpoint                 | encoded [`Coin`]              |
//! | `addr_balance` | pubkey                                   | u64                           |
//! | `spent_by`     | encoded outpoint (36 B)                  | [`crate::explorer_index::Spender`] |
//! | `chain_tx`     | main-chain height (u64 BE)               | u64: transactions in blocks 1..=height |
//! | `meta`         | `schema_version`, `genesis`, `tip`, `utxo_stats`, `best_header`, `index_tip`, `utxo_tip` | see [`MetaKey`] |

use cairn_consensus::{ChainWork, Coin};
use cairn_primitives::encoding::{decode, encode};
use cairn_primitives::{Block, BlockHash, BlockHeader, OutPoint, Txid, XOnlyPublicKey};

use crate::error::{StorageError, StorageResult};

/// Version of this layout. Bump on any incompatible change; older or newer data directories are
/// refused at open, never misread.
///
/// Version 2 added `spent_by` and `chain_tx` (explorer indexes). Version 3 added
/// `meta/index_tip` (the indexes may lag the tip) and `meta/utxo_tip` (the UTXO set may lag it,
/// in the cache); a version 2 directory is upgraded in place (both are then its tip).
pub const SCHEMA_VERSION: u32 = 3;
/// The older version [`SCHEMA_VERSION`] upgrades in place at open.
pub const UPGRADABLE_SCHEMA_VERSION: u32 = 2;

pub const CF_HEADERS: &str = "headers";
pub const CF_BLOCKS: &str = "blocks";
pub const CF_UNDO: &str = "undo";
pub const CF_UTXO: &str = "utxo";
pub const CF_HEIGHT: &str = "height";
pub const CF_HEADER_CHAIN: &str = "header_chain";
pub const CF_TX: &str = "tx";
pub const CF_ADDR_TX: &str = "addr_tx";
pub const CF_ADDR_UTXO: &str = "addr_utxo";
pub const CF_ADDR_BALANCE: &str = "addr_balance";
pub const CF_META: &str = "meta";
pub const CF_SPENT_BY: &str = "spent_by";
pub const CF_CHAIN_TX: &str = "chain_tx";

/// All column families (RocksDB's `default` is created implicitly and unused).
pub const COLUMN_FAMILIES: [&str; 13] = [
    CF_HEADERS,
    CF_BLOCKS,
    CF_UNDO,
    CF_UTXO,
    CF_HEIGHT,
    CF_HEADER_CHAIN,
    CF_TX,
    CF_ADDR_TX,
    CF_ADDR_UTXO,
    CF_ADDR_BALANCE,
    CF_META,
    CF_SPENT_BY,
    CF_CHAIN_TX,
];

/// The column families the indexes own (written with `meta/index_tip`, possibly after the
/// block's own batch): see `crate::index`.
pub const INDEX_COLUMN_FAMILIES: [&str; 6] = [
    CF_TX,
    CF_ADDR_TX,
    CF_ADDR_UTXO,
    CF_ADDR_BALANCE,
    CF_SPENT_BY,
    CF_CHAIN_TX,
];

/// Keys of the `meta` column family.
#[derive(Clone, Copy, Debug)]
pub enum MetaKey {
    /// u32: [`SCHEMA_VERSION`] of the writer.
    SchemaVersion,
    /// Block hash of the genesis the data directory was created for.
    Genesis,
    /// [`TipRecord`] of the main chain.
    Tip,
    /// [`UtxoStatsRecord`]: UTXO count, total and digest at the tip.
    UtxoStats,
    /// [`TipRecord`] of the best valid header.
    BestHeader,
    /// [`TipRecord`] of the last main-chain block the tx, address and explorer indexes cover.
    IndexTip,
    /// [`TipRecord`] of the block the `utxo` column family reflects (the last UTXO cache
    /// flush; the blocks after it are replayed from undo data at open).
    UtxoTip,
}

impl MetaKey {
    pub fn key(self) -> &'static [u8] {
        match self {
            MetaKey::SchemaVersion => b"schema_version",
            MetaKey::Genesis => b"genesis",
            MetaKey::Tip => b"tip",
            MetaKey::UtxoStats => b"utxo_stats",
            MetaKey::BestHeader => b"best_header",
            MetaKey::IndexTip => b"index_tip",
            MetaKey::UtxoTip => b"utxo_tip",
        }
    }
}

/// What is known about a block with a valid header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub enum BlockStatus {
    /// The header passed the header rules; the body has not been stored.
    ValidHeader,
    /// The body is stored (it matches the header's merkle root) but was never connected.
    BlockStored,
    /// The block was connected once: its transactions are valid on its parent. It may be off
    /// the main chain now (after a reorganisation).
    ConnectedValid,
    /// Connecting the block failed a consensus rule.
    Invalid,
    /// An ancestor is invalid.
    InvalidAncestor,
}

impl BlockStatus {
    pub fn is_invalid(self) -> bool {
        matches!(self, BlockStatus::Invalid | BlockStatus::InvalidAncestor)
    }
    pub fn has_body(self) -> bool {
        matches!(self, BlockStatus::BlockStored | BlockStatus::ConnectedValid)
    }
}

/// The `headers` value.
#[derive(Clone, Debug, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct HeaderRecord {
    pub header: BlockHeader,
    pub height: u64,
    /// Cumulative work, big-endian.
    pub chain_work: [u8; 32],
    pub status: BlockStatus,
    /// Whether the body is in `blocks` (also true for an invalid block whose body we stored).
    pub has_body: bool,
    /// Why the block is invalid (empty otherwise).
    pub invalid_reason: String,
}

impl HeaderRecord {
    pub fn work(&self) -> ChainWork {
        ChainWork::from_be_bytes(self.chain_work)
    }
}

/// A (height, hash) pair stored in `meta`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct TipRecord {
    pub height: u64,
    pub hash: BlockHash,
}

/// The `utxo_stats` meta value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, bincode::Encode, bincode::Decode)]
pub struct UtxoStatsRecord {
    pub txouts: u64,
    pub total_amount: u64,
    pub digest: [u8; 32],
}

/// The `tx` value: where a confirmed transaction is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct TxLocation {
    pub block_hash: BlockHash,
    pub height: u64,
    /// Position in the block (0 is the coinbase).
    pub index: u32,
}

/// Height key: big-endian so keys sort by height.
pub fn height_key(height: u64) -> [u8; 8] {
    height.to_be_bytes()
}

pub fn decode_height_key(key: &[u8]) -> StorageResult<u64> {
    let b: [u8; 8] = key
        .try_into()
        .map_err(|_| StorageError::corrupt("height key", hex(key), "not 8 bytes"))?;
    Ok(u64::from_be_bytes(b))
}

/// Encoded outpoint: txid then vout (LE, as the canonical encoding).
pub fn outpoint_key(op: &OutPoint) -> [u8; 36] {
    let mut k = [0u8; 36];
    k[..32].copy_from_slice(&op.txid.0);
    k[32..].copy_from_slice(&op.vout.to_le_bytes());
    k
}

pub fn decode_outpoint_key(key: &[u8]) -> StorageResult<OutPoint> {
    if key.len() != 36 {
        return Err(StorageError::corrupt(
            "outpoint key",
            hex(key),
            "not 36 bytes",
        ));
    }
    let mut txid = [0u8; 32];
    txid.copy_from_slice(&key[..32]);
    let mut vout = [0u8; 4];
    vout.copy_from_slice(&key[32..]);
    Ok(OutPoint::new(Txid(txid), u32::from_le_bytes(vout)))
}

/// `addr_tx` key: history of `pubkey` in chain order.
pub fn addr_tx_key(pubkey: &XOnlyPublicKey, height: u64, index: u32, txid: &Txid) -> [u8; 76] {
    let mut k = [0u8; 76];
    k[..32].copy_from_slice(&pubkey.0);
    k[32..40].copy_from_slice(&height.to_be_bytes());
    k[40..44].copy_from_slice(&index.to_be_bytes());
    k[44..].copy_from_slice(&txid.0);
    k
}

pub fn decode_addr_tx_txid(key: &[u8]) -> StorageResult<Txid> {
    if key.len() != 76 {
        return Err(StorageError::corrupt(
            "address history key",
            hex(key),
            "not 76 bytes",
        ));
    }
    let mut t = [0u8; 32];
    t.copy_from_slice(&key[44..]);
    Ok(Txid(t))
}

/// `addr_utxo` key.
pub fn addr_utxo_key(pubkey: &XOnlyPublicKey, op: &OutPoint) -> [u8; 68] {
    let mut k = [0u8; 68];
    k[..32].copy_from_slice(&pubkey.0);
    k[32..].copy_from_slice(&outpoint_key(op));
    k
}

/// Decodes a stored value, turning failure into [`StorageError::Corrupt`] naming what and where.
pub fn decode_value<T: bincode::Decode<()>>(
    what: &'static str,
    location: impl std::fmt::Display,
    bytes: &[u8],
) -> StorageResult<T> {
    decode(bytes).map_err(|e| StorageError::corrupt(what, location, e))
}

pub fn encode_value<T: bincode::Encode>(value: &T) -> Vec<u8> {
    encode(value)
}

/// Decodes a stored block hash.
pub fn decode_hash(
    what: &'static str,
    location: impl std::fmt::Display,
    bytes: &[u8],
) -> StorageResult<BlockHash> {
    BlockHash::from_slice(bytes).map_err(|e| StorageError::corrupt(what, location, e))
}

pub fn decode_block(hash: &BlockHash, bytes: &[u8]) -> StorageResult<Block> {
    decode_value("block", hash, bytes)
}

pub fn decode_coin(op: &OutPoint, bytes: &[u8]) -> StorageResult<Coin> {
    decode_value("coin", op, bytes)
}

pub fn decode_balance(pubkey: &XOnlyPublicKey, bytes: &[u8]) -> StorageResult<u64> {
    let b: [u8; 8] = bytes
        .try_into()
        .map_err(|_| StorageError::corrupt("address balance", pubkey.to_hex(), "not 8 bytes"))?;
    Ok(u64::from_le_bytes(b))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
