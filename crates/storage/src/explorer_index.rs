//! Indexes for explorers, kept beside the chain's own: which transaction spent each output
//! (the spender index), how many transactions the main chain holds up to each height, and the
//! read side explorers page through (address history and coins by cursor, chain tips).
//!
//! The writes go into the same atomic batch that connects or disconnects a block (one call from
//! each of `ChainState::connect` and `ChainState::disconnect_tip`), so these indexes follow the
//! main chain through every reorganisation and crash exactly as the UTXO set does.
//!
//! | column family | key                          | value              |
//! |---------------|------------------------------|--------------------|
//! | `spent_by`    | encoded outpoint (36 B)      | [`Spender`]        |
//! | `chain_tx`    | main-chain height (u64 BE)   | u64 LE: transactions in blocks 1..=height |

use std::collections::HashSet;

use cairn_consensus::Coin;
use cairn_primitives::{Block, BlockHash, OutPoint, Txid, XOnlyPublicKey};
use rocksdb::{DB, Direction, IteratorMode, ReadOptions, WriteBatch};

use crate::error::{StorageError, StorageResult};
use crate::reader::ChainReader;
use crate::schema::*;
use crate::store::cf;

/// Most entries one page read returns, whatever the caller asks.
pub const MAX_PAGE_ENTRIES: usize = 1_000;
/// Most chain tips `chain_tips` reports (side branches are bounded; this bounds the answer).
pub const MAX_CHAIN_TIPS: usize = 1_000;
/// Most steps walked back from a side tip to the main chain.
pub const MAX_BRANCH_WALK: u64 = 10_000;

/// The `spent_by` value: the main-chain transaction input that spent an output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct Spender {
    pub txid: Txid,
    /// Index of the spending input.
    pub vin: u32,
    /// Height of the block holding the spending transaction.
    pub height: u64,
}

/// Position in an address's history: the block height and the transaction's index in the
/// block. A cursor made of a position stays meaningful whatever blocks come or go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HistoryPosition {
    pub height: u64,
    pub index: u32,
}

/// One entry of an address's history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressTx {
    pub txid: Txid,
    pub position: HistoryPosition,
}

/// A page of entries and whether more follow it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    pub entries: Vec<T>,
    pub more: bool,
}

/// How a chain tip relates to the main chain (Bitcoin Core's `getchaintips` statuses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TipStatus {
    Active,
    ValidFork,
    ValidHeaders,
    HeadersOnly,
    Invalid,
}

impl TipStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TipStatus::Active => "active",
            TipStatus::ValidFork => "valid-fork",
            TipStatus::ValidHeaders => "valid-headers",
            TipStatus::HeadersOnly => "headers-only",
            TipStatus::Invalid => "invalid",
        }
    }
}

/// A block without children in the block index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainTipInfo {
    pub height: u64,
    pub hash: BlockHash,
    /// Blocks from the tip down to (not including) its fork point with the main chain.
    pub branch_len: u64,
    pub status: TipStatus,
}

/// Adds (`connect`) or removes the explorer-index entries of main-chain block `block` at
/// `height` to `batch`. `before` is the `chain_tx` count at `height - 1` when the caller has it
/// (an earlier block of the same batch); otherwise it is read, committed, from the database
/// (index writers hold the index lock). Returns the count at `height` (0 on disconnect).
pub(crate) fn write_explorer_indexes(
    db: &DB,
    batch: &mut WriteBatch,
    block: &Block,
    txids: &[Txid],
    height: u64,
    connect: bool,
    before: Option<u64>,
) -> StorageResult<u64> {
    let spent_by = cf(db, CF_SPENT_BY)?;
    for (tx, txid) in block.transactions.iter().zip(txids) {
        for (vin, input) in tx.inputs.iter().enumerate() {
            let key = outpoint_key(&input.prevout);
            if connect {
                let s = Spender {
                    txid: *txid,
                    vin: vin as u32,
                    height,
                };
                batch.put_cf(spent_by, key, encode_value(&s));
            } else {
                batch.delete_cf(spent_by, key);
            }
        }
    }
    let chain_tx = cf(db, CF_CHAIN_TX)?;
    if connect {
        let before = if height <= 1 {
            0
        } else if let Some(b) = before {
            b
        } else {
            match db.get_cf(chain_tx, height_key(height - 1))? {
                Some(b) => decode_count(height - 1, &b)?,
                None => {
                    return Err(StorageError::corrupt(
                        "chain tx count",
                        height - 1,
                        "missing below a connected block",
                    ));
                }
            }
        };
        let total = before + block.transactions.len() as u64;
        batch.put_cf(chain_tx, height_key(height), total.to_le_bytes());
        Ok(total)
    } else {
        batch.delete_cf(chain_tx, height_key(height));
        Ok(0)
    }
}

fn decode_count(height: u64, bytes: &[u8]) -> StorageResult<u64> {
    let b: [u8; 8] = bytes
        .try_into()
        .map_err(|_| StorageError::corrupt("chain tx count", height, "not 8 bytes"))?;
    Ok(u64::from_le_bytes(b))
}

/// `addr_tx` key prefix of a position (pubkey, height BE, index BE).
fn position_prefix(pubkey: &XOnlyPublicKey, p: HistoryPosition) -> [u8; 44] {
    let mut k = [0u8; 44];
    k[..32].copy_from_slice(&pubkey.0);
    k[32..40].copy_from_slice(&p.height.to_be_bytes());
    k[40..44].copy_from_slice(&p.index.to_be_bytes());
    k
}

fn decode_position(key: &[u8]) -> StorageResult<HistoryPosition> {
    if key.len() != 76 {
        return Err(StorageError::corrupt(
            "address history key",
            key.len(),
            "not 76 bytes",
        ));
    }
    let mut h = [0u8; 8];
    h.copy_from_slice(&key[32..40]);
    let mut i = [0u8; 4];
    i.copy_from_slice(&key[40..44]);
    Ok(HistoryPosition {
        height: u64::from_be_bytes(h),
        index: u32::from_be_bytes(i),
    })
}

impl ChainReader {
    fn snapshot_opts<'a>(&self, snap: &'a rocksdb::Snapshot<'a>) -> ReadOptions {
        let mut o = ReadOptions::default();
        o.set_snapshot(snap);
        o
    }

    /// For each outpoint, the main-chain input that spent it (`None`: unspent on the main
    /// chain, or never existed).
    pub fn spenders(&self, outpoints: &[OutPoint]) -> StorageResult<Vec<Option<Spender>>> {
        let db = self.db();
        let snap = self.indexed_snapshot()?;
        let spent_by = cf(db, CF_SPENT_BY)?;
        let keys: Vec<[u8; 36]> = outpoints.iter().map(outpoint_key).collect();
        let results = snap.multi_get_cf(keys.iter().map(|k| (spent_by, k)));
        let mut out = Vec::with_capacity(outpoints.len());
        for (op, r) in outpoints.iter().zip(results) {
            out.push(
                r?.map(|b| decode_value::<Spender>("spender", op, &b))
                    .transpose()?,
            );
        }
        Ok(out)
    }

    /// Transactions in main-chain blocks 0..=`height` (genesis included), `None` above the tip.
    pub fn chain_tx_count(&self, height: u64) -> StorageResult<Option<u64>> {
        let db = self.db();
        let snap = self.indexed_snapshot()?;
        let genesis_txs = self.params().genesis_block().transactions.len() as u64;
        if height == 0 {
            return Ok(Some(genesis_txs));
        }
        match snap.get_cf(cf(db, CF_CHAIN_TX)?, height_key(height))? {
            Some(b) => Ok(Some(genesis_txs + decode_count(height, &b)?)),
            None => Ok(None),
        }
    }

    /// Up to `limit` (at most [`MAX_PAGE_ENTRIES`]) main-chain transactions of `pubkey`
    /// strictly after `after` in the order asked (oldest first, or newest first).
    pub fn address_txs_page(
        &self,
        pubkey: &XOnlyPublicKey,
        after: Option<HistoryPosition>,
        limit: usize,
        newest_first: bool,
    ) -> StorageResult<Page<AddressTx>> {
        let limit = limit.clamp(1, MAX_PAGE_ENTRIES);
        let db = self.db();
        let snap = self.indexed_snapshot()?;
        let start: Vec<u8> = match (after, newest_first) {
            // RocksDB's reverse seek lands on the last key <= the target; a 44-byte prefix
            // sorts before every 76-byte key it starts, so the position itself is excluded.
            (Some(p), true) => position_prefix(pubkey, p).to_vec(),
            (None, true) => {
                let mut k = pubkey.0.to_vec();
                k.extend_from_slice(&[0xff; 44]);
                k
            }
            // Forward: seek to the first key after every key of the position.
            (Some(p), false) => {
                let mut k = position_prefix(pubkey, p).to_vec();
                k.extend_from_slice(&[0xff; 33]);
                k
            }
            (None, false) => pubkey.0.to_vec(),
        };
        let dir = if newest_first {
            Direction::Reverse
        } else {
            Direction::Forward
        };
        let it = db.iterator_cf_opt(
            cf(db, CF_ADDR_TX)?,
            self.snapshot_opts(&snap),
            IteratorMode::From(&start, dir),
        );
        let mut entries = Vec::new();
        for item in it {
            let (k, _) = item?;
            if !k.starts_with(&pubkey.0) {
                break;
            }
            if entries.len() == limit {
                return Ok(Page {
                    entries,
                    more: true,
                });
            }
            entries.push(AddressTx {
                txid: decode_addr_tx_txid(&k)?,
                position: decode_position(&k)?,
            });
        }
        Ok(Page {
            entries,
            more: false,
        })
    }

    /// Up to `limit` (at most [`MAX_PAGE_ENTRIES`]) unspent outputs paying `pubkey`, in
    /// outpoint order, strictly after `after`.
    pub fn address_utxos_page(
        &self,
        pubkey: &XOnlyPublicKey,
        after: Option<OutPoint>,
        limit: usize,
    ) -> StorageResult<Page<(OutPoint, Coin)>> {
        let limit = limit.clamp(1, MAX_PAGE_ENTRIES);
        let db = self.db();
        let snap = self.indexed_snapshot()?;
        let start: Vec<u8> = match after {
            Some(op) => addr_utxo_key(pubkey, &op).to_vec(),
            None => pubkey.0.to_vec(),
        };
        let it = db.iterator_cf_opt(
            cf(db, CF_ADDR_UTXO)?,
            self.snapshot_opts(&snap),
            IteratorMode::From(&start, Direction::Forward),
        );
        let mut entries = Vec::new();
        for item in it {
            let (k, v) = item?;
            if !k.starts_with(&pubkey.0) {
                break;
            }
            if after.is_some() && *k == start[..] {
                continue;
            }
            if entries.len() == limit {
                return Ok(Page {
                    entries,
                    more: true,
                });
            }
            let op = decode_outpoint_key(&k[32..])?;
            entries.push((op, decode_coin(&op, &v)?));
        }
        Ok(Page {
            entries,
            more: false,
        })
    }

    /// Every block of the index without children (at most [`MAX_CHAIN_TIPS`], highest first),
    /// the main-chain tip first. Scans the header index: cost grows with the number of headers
    /// (tens of milliseconds for 100,000), as explorers call it rarely.
    pub fn chain_tips(&self) -> StorageResult<Vec<ChainTipInfo>> {
        let db = self.db();
        let snap = db.snapshot();
        let headers = cf(db, CF_HEADERS)?;
        let mut parents: HashSet<BlockHash> = HashSet::new();
        let mut all: Vec<(BlockHash, HeaderRecord)> = Vec::new();
        for item in db.iterator_cf_opt(headers, self.snapshot_opts(&snap), IteratorMode::Start) {
            let (k, v) = item?;
            let hash = decode_hash("header key", "headers", &k)?;
            let r: HeaderRecord = decode_value("header record", hash, &v)?;
            if r.height > 0 {
                parents.insert(r.header.prev_hash);
            }
            all.push((hash, r));
        }
        let height_cf = cf(db, CF_HEIGHT)?;
        let main_at = |h: u64| -> StorageResult<Option<BlockHash>> {
            snap.get_cf(height_cf, height_key(h))?
                .map(|b| decode_hash("block hash", h, &b))
                .transpose()
        };
        let by_hash: std::collections::HashMap<BlockHash, &HeaderRecord> =
            all.iter().map(|(h, r)| (*h, r)).collect();
        let mut tips = Vec::new();
        for (hash, r) in all.iter().filter(|(h, _)| !parents.contains(h)) {
            let mut branch_len = 0;
            let mut cur: (BlockHash, &HeaderRecord) = (*hash, r);
            while main_at(cur.1.height)? != Some(cur.0) && branch_len < MAX_BRANCH_WALK {
                branch_len += 1;
                let parent = cur.1.header.prev_hash;
                match by_hash.get(&parent) {
                    Some(p) => cur = (parent, *p),
                    None => break,
                }
            }
            let status = if branch_len == 0 {
                TipStatus::Active
            } else if r.status.is_invalid() {
                TipStatus::Invalid
            } else if r.status == BlockStatus::ConnectedValid {
                TipStatus::ValidFork
            } else if r.has_body {
                TipStatus::ValidHeaders
            } else {
                TipStatus::HeadersOnly
            };
            tips.push(ChainTipInfo {
                height: r.height,
                hash: *hash,
                branch_len,
                status,
            });
        }
        tips.sort_by_key(|t| (t.status != TipStatus::Active, std::cmp::Reverse(t.height)));
        tips.truncate(MAX_CHAIN_TIPS);
        Ok(tips)
    }
}
