//! `/cairn/relay/1`: the repair path behind gossip, and its messages.
//!
//! Gossipsub is fast but lossy under a burst: it drops forwards from full or slow per-peer
//! queues, a verdict that comes after its message cache let go of a message is never
//! forwarded, and IHAVE/IWANT repairs only for a few heartbeats. So every transaction a node
//! accepts is also *announced* (its txid) to every peer that does not already know it, in one
//! `Inventory` per peer and [`crate::config::DEFAULT_ANNOUNCE_INTERVAL`], and a peer that lacks
//! it after [`crate::config::DEFAULT_TX_FETCH_DELAY`] (gossip had its chance; the shorter
//! [`crate::config::DEFAULT_QUIET_TX_FETCH_DELAY`] while gossip keeps up, see `pacer`) asks for it with
//! `GetTxs`, as Bitcoin's inv/getdata. A peer that connects is announced the whole pool (up to
//! [`crate::config::MAX_POOL_ANNOUNCEMENT`]), so a node that joins or reconnects gets what it
//! missed. Every queue is bounded by a named constant and every drop is counted.
//!
//! Compact blocks (`compact`) use the same protocol to fetch the transactions a receiver could
//! not find in its mempool (`GetBlockTxs`).
//!
//! One request per stream, framed as `/cairn/sync/1` (the requester writes one encoded
//! [`RelayRequest`] and closes; the responder writes one [`RelayResponse`]).

use cairn_primitives::{BlockHash, Transaction, Txid};
use libp2p::StreamProtocol;

pub mod compact;
mod driver;
mod known;
mod pacer;

pub(crate) use driver::{RelayInput, TxRelay};
pub use known::KnownIds;

/// Blocks whose compact form arrived (pushed, announced or pulled on a tip announcement) and is
/// being rebuilt and connected, each for [`crate::config::BLOCK_IN_FLIGHT_GRACE`] at most.
/// Shared by the relay task (a tip announcement of such a block does not start a sync) and
/// the sync driver (it does not download such a block in full meanwhile). Bounded by
/// [`crate::config::MAX_BLOCKS_IN_FLIGHT_TRACKED`], the oldest forgotten first.
#[derive(Debug, Default)]
pub(crate) struct BlocksInFlight(
    std::sync::Mutex<std::collections::VecDeque<(BlockHash, std::time::Instant)>>,
);

impl BlocksInFlight {
    fn entries(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::VecDeque<(BlockHash, std::time::Instant)>>
    {
        // A panic while holding this lock leaves a consistent list: keep using it.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn insert(&self, hash: BlockHash) {
        let mut e = self.entries();
        if e.len() >= crate::config::MAX_BLOCKS_IN_FLIGHT_TRACKED {
            e.pop_front();
        }
        e.push_back((hash, std::time::Instant::now()));
    }

    /// Forgets `hash`: its rebuild ended without a block, so another peer's announcement or
    /// the sync may fetch it at once instead of after the grace period.
    pub(crate) fn remove(&self, hash: &BlockHash) {
        self.entries().retain(|(h, _)| h != hash);
    }

    /// Whether `hash` arrived less than the grace period ago (older entries are dropped).
    pub(crate) fn contains(&self, hash: &BlockHash) -> bool {
        let mut e = self.entries();
        let now = std::time::Instant::now();
        while e
            .front()
            .is_some_and(|(_, at)| now.duration_since(*at) >= crate::config::BLOCK_IN_FLIGHT_GRACE)
        {
            e.pop_front();
        }
        e.iter().any(|(h, _)| h == hash)
    }
}

/// Protocol id of the relay protocol.
pub const RELAY_PROTOCOL: StreamProtocol = StreamProtocol::new("/cairn/relay/1");

/// A relay request.
#[derive(Clone, Debug, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub enum RelayRequest {
    /// "I have these transactions" (at most [`crate::config::MAX_INVENTORY_IDS`]). Answered
    /// [`RelayResponse::Ack`] at once; the receiver fetches what it lacks later.
    Inventory(Vec<Txid>),
    /// "Send me these" (at most [`crate::config::MAX_INVENTORY_IDS`]). Answered
    /// [`RelayResponse::Txs`]: those the responder has, in the order asked, within
    /// [`crate::config::MAX_TXS_RESPONSE_BYTES`].
    GetTxs(Vec<Txid>),
    /// The transactions at these positions of a block the responder announced compactly
    /// (ascending, at most [`compact::MAX_BLOCK_TXS_INDEXES`]). Answered
    /// [`RelayResponse::BlockTxs`] with all of them, or `Error`.
    GetBlockTxs { block: BlockHash, indexes: Vec<u32> },
    /// "My best block is now this" (sent to every peer when the tip changes). Answered
    /// [`RelayResponse::Ack`]. A receiver with less work that has not got the block from gossip
    /// within [`crate::config::TIP_ANNOUNCE_GRACE`] syncs with the sender.
    NewTip(crate::codec::Status),
    /// The compact form of a block the responder announced on the `blockann` topic (BIP152's
    /// low-bandwidth `getdata(CMPCT_BLOCK)`). Answered [`RelayResponse::Compact`], or `Error`
    /// when the responder does not have the block.
    GetCompact(BlockHash),
}

/// A relay response.
#[derive(Clone, Debug, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub enum RelayResponse {
    Ack,
    Txs(Vec<Transaction>),
    BlockTxs {
        block: BlockHash,
        txs: Vec<Transaction>,
    },
    /// Understood but not served (busy, unknown block ...). Nobody is penalised for it.
    Error(String),
    /// Answers `GetCompact`.
    Compact(compact::CompactBlock),
}

/// Enum tag (`u32`) + vector length (`u64`) in front of the transactions of a `Txs` response.
pub(crate) const TXS_RESPONSE_PREFIX: usize = 12;
/// Variant index of [`RelayResponse::Txs`] in the canonical encoding.
const TXS_VARIANT: u32 = 1;

/// The canonical encoding of `RelayResponse::Txs` around already encoded transactions.
pub(crate) fn txs_response(txs: &[Vec<u8>]) -> Vec<u8> {
    let len = txs.iter().map(Vec::len).sum::<usize>();
    let mut out = Vec::with_capacity(TXS_RESPONSE_PREFIX + len);
    out.extend_from_slice(&TXS_VARIANT.to_le_bytes());
    out.extend_from_slice(&(txs.len() as u64).to_le_bytes());
    for t in txs {
        out.extend_from_slice(t);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_primitives::encoding::{decode, encode};

    #[test]
    fn txs_response_is_the_canonical_encoding() {
        let txs = vec![
            crate::test_utils::coinbase(1),
            crate::test_utils::coinbase(2),
        ];
        let raw: Vec<Vec<u8>> = txs.iter().map(encode).collect();
        assert_eq!(txs_response(&raw), encode(&RelayResponse::Txs(txs)));
        assert_eq!(txs_response(&[]), encode(&RelayResponse::Txs(vec![])));
    }

    #[test]
    fn blocks_in_flight_are_bounded() {
        let f = BlocksInFlight::default();
        let hash = |n: u8| BlockHash::from_byte_array([n; 32]);
        f.insert(hash(0));
        assert!(f.contains(&hash(0)));
        assert!(!f.contains(&hash(1)));
        for n in 1..=crate::config::MAX_BLOCKS_IN_FLIGHT_TRACKED as u8 {
            f.insert(hash(n));
        }
        assert!(!f.contains(&hash(0)), "the oldest is forgotten first");
        assert!(f.contains(&hash(1)));
    }

    #[test]
    fn requests_round_trip() {
        let r = RelayRequest::GetBlockTxs {
            block: BlockHash::ZERO,
            indexes: vec![1, 5],
        };
        assert_eq!(decode::<RelayRequest>(&encode(&r)), Ok(r));
    }
}
