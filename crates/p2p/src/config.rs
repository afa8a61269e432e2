//! Network configuration. Every limit is a named constant with a default, overridable here.

use std::path::PathBuf;
use std::time::Duration;

use cairn_primitives::BlockHash;
use cairn_primitives::encoding::MAX_ENCODED_SIZE;
use libp2p::Multiaddr;

/// Default TCP port of the P2P service.
pub const DEFAULT_P2P_PORT: u16 = 9645;
/// File name of the persistent node key inside the data directory.
pub const NODE_KEY_FILE: &str = "p2p_key";
/// Established connections, all peers together.
pub const DEFAULT_MAX_PEERS: u32 = 50;
/// Connection slots kept for the node's own dials: inbound peers get at most
/// `max_peers - min(outbound_reserved, max_peers / 2)` ([`NetworkConfig::max_inbound`]).
pub const DEFAULT_OUTBOUND_RESERVED: u32 = 10;
/// Inbound connections from one IP address (outside the trusted ranges).
pub const DEFAULT_MAX_INBOUND_PER_IP: u32 = 4;
/// Ranges exempt from the per-IP inbound limit: loopback (local test networks, the node's own
/// tools).
pub const DEFAULT_TRUSTED_RANGES: [&str; 2] = ["127.0.0.0/8", "::1/128"];
/// Connections being set up (each direction).
pub const DEFAULT_MAX_PENDING: u32 = 32;
/// Established connections to one peer.
pub const DEFAULT_MAX_CONNECTIONS_PER_PEER: u32 = 2;
/// Below this many connected peers, discovered peers and bootnodes are dialled.
pub const DEFAULT_TARGET_PEERS: usize = 8;
/// How long a banned peer is refused.
pub const DEFAULT_BAN_DURATION: Duration = Duration::from_secs(3600);
/// Misbehaviour points at which a peer is banned (a malformed message is worth this much).
pub const BAN_THRESHOLD: u32 = 100;
/// Largest gossiped transaction (its canonical encoding).
pub const DEFAULT_MAX_TX_SIZE: usize = 256 * 1024;
/// Largest gossiped block (its canonical encoding).
pub const DEFAULT_MAX_BLOCK_SIZE: usize = 4 * 1024 * 1024;
/// Room for gossipsub's protobuf framing around one payload.
pub const GOSSIP_FRAME_OVERHEAD: usize = 16 * 1024;
/// Largest sync request (a locator or a list of hashes).
pub const DEFAULT_MAX_SYNC_REQUEST_SIZE: usize = 64 * 1024;
/// Largest sync response (a batch of headers or blocks).
pub const DEFAULT_MAX_SYNC_RESPONSE_SIZE: usize = MAX_ENCODED_SIZE;
/// Most headers in one `Headers` response.
pub const MAX_HEADERS_PER_REQUEST: u32 = 2000;
/// Most hashes in one block locator.
pub const MAX_LOCATOR_LEN: usize = 64;
/// Most hashes in one `GetBlocks` request (served); the driver asks for fewer.
pub const MAX_BLOCKS_PER_REQUEST: usize = 128;
/// Blocks the sync driver asks one peer for in one request.
pub const DEFAULT_BLOCKS_PER_REQUEST: usize = 64;
/// Bytes of blocks the sync driver asks one peer for in one request (sized from the average
/// block seen; half the response limit, so a whole answer fits even if blocks grow).
pub const DEFAULT_REQUEST_BYTES: usize = DEFAULT_MAX_SYNC_RESPONSE_SIZE / 2;
/// Requests in flight to one peer from the sync driver.
pub const DEFAULT_REQUESTS_IN_FLIGHT_PER_PEER: usize = 4;
/// Blocks downloaded ahead of the chain tip (the download window).
pub const DEFAULT_BLOCK_WINDOW: usize = 1024;
/// Bytes of blocks (as sent) the download window may hold: with large blocks it holds fewer
/// than [`DEFAULT_BLOCK_WINDOW`], so the memory a sync keeps for blocks waiting their turn does
/// not grow with the block size (1,024 blocks of 1 MB would be over 1 GB decoded). Decoded,
/// blocks take about twice their size as sent; 1,024 of the benchmark's 200-transaction
/// blocks (~41 kB) fit, so the window is unchanged for them.
pub const DEFAULT_BLOCK_WINDOW_BYTES: usize = 48 * 1024 * 1024;
/// Timeout of one sync request.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Timeouts after which a peer is dropped as stalled.
pub const DEFAULT_MAX_STALLS: u32 = 2;
/// How often the driver re-asks every peer for its status (self-healing sync).
pub const DEFAULT_STATUS_INTERVAL: Duration = Duration::from_secs(5);
/// Sustained inbound sync requests per peer per second.
pub const DEFAULT_REQUESTS_PER_SECOND: u32 = 200;
/// Burst of inbound sync requests per peer.
pub const DEFAULT_REQUEST_BURST: u32 = 400;
/// Requests per second our sync driver sends one peer: three quarters of the default inbound
/// limit, so an honest Cairn node never trips a peer's rate limit.
pub const DEFAULT_SYNC_REQUESTS_PER_SECOND: u32 = DEFAULT_REQUESTS_PER_SECOND * 3 / 4;
/// Commands queued from handles to the swarm task.
pub const DEFAULT_COMMAND_QUEUE: usize = 1024;
/// Events queued from the service to the node (gossip waiting for validation included).
pub const DEFAULT_EVENT_QUEUE: usize = 1024;
/// Inbound sync requests queued for serving.
pub const DEFAULT_SERVE_QUEUE: usize = 64;
/// Inbound sync requests answered at once (at most one per peer).
pub const DEFAULT_SERVE_WORKERS: usize = 4;
/// Inbound sync requests one peer may have waiting; beyond, it is answered `Error("busy")`.
pub const DEFAULT_SERVE_QUEUE_PER_PEER: usize = 16;
/// Messages queued from the swarm task to the sync driver.
pub const DEFAULT_SYNC_QUEUE: usize = 1024;
/// Connections with no protocol activity are closed after this.
pub const DEFAULT_IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(600);
/// First and largest delay between redials of a bootnode.
pub const BOOTNODE_BACKOFF_MIN: Duration = Duration::from_secs(1);
pub const BOOTNODE_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Kademlia random walk period.
pub const DEFAULT_DISCOVERY_INTERVAL: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------- transaction relay repair
// `/cairn/relay/1` (see `relay` and docs/protocol.md §8.6): announcements peers can ask for.

/// Largest relay request (an inventory of txids or a list of indexes).
pub const MAX_RELAY_REQUEST_SIZE: usize = 256 * 1024;
/// Most txids in one `Inventory` or `GetTxs` request (32 bytes each: 128 KiB).
pub const MAX_INVENTORY_IDS: usize = 4_096;
/// Bytes of transactions in one `Txs` answer; what does not fit is left out (asked again).
pub const MAX_TXS_RESPONSE_BYTES: usize = 2 * 1024 * 1024;
/// How often fresh txids are announced to every peer (a trickle: one message per peer and
/// interval, whatever the number of transactions).
pub const DEFAULT_ANNOUNCE_INTERVAL: Duration = Duration::from_millis(250);
/// How long an announced transaction is left to gossip before it is fetched while gossip runs
/// behind the announcements (only while gossip carries transactions at all: see
/// `relay::pacer`). Short: nodes gossip only while few transactions arrive, so a late gossip
/// copy is cheap, and a transaction its sender did not gossip must not wait long (500 ms gave
/// p99 904 ms at 300 tx/s on the 20-host testnet, 100 ms 398 ms).
pub const DEFAULT_TX_FETCH_DELAY: Duration = Duration::from_millis(100);
/// The fetch delay while gossip keeps up (see `relay::pacer`): it then delivers in
/// milliseconds, and what it has not brought by this time it has most likely lost (50 ms:
/// p99 95 ms at 50 tx/s; 100 ms: 141 ms).
pub const DEFAULT_QUIET_TX_FETCH_DELAY: Duration = Duration::from_millis(50);
/// The network counts as quiet (see `relay::pacer`) while, over the last one to two seconds,
/// fewer than this many announced transactions arrived by gossip within the quiet delay
/// (gossip running behind the announcements: 52 a second per host at 300 tx/s on the 20-host
/// testnet, 0.3 at 50 tx/s) ...
pub const QUIET_MAX_BROUGHT: usize = 20;
/// ... and fewer than this many were still missing then (~450 a second per host in a
/// 10,000-transaction burst; a stretch of lost gossip on a quiet network is tens).
pub const QUIET_MAX_MISSING: usize = 100;
/// A node stops publishing the transactions it accepts on gossip once it accepted this many
/// over the current and the previous quarter-second (between 80 and 160 a second), leaving
/// them to the announcements, and starts again below half of it (see
/// `relay::pacer::GossipLoad`).
pub const TX_GOSSIP_MAX_ACCEPTED: usize = 40;
/// Recent blocks remembered as announced to us by gossip (their announcement is forwarded to
/// our mesh, so `NewTip` skips it).
pub const MAX_GOSSIP_ANNOUNCED_TRACKED: usize = 16;
/// Inventory requests in flight to one peer; more announcements wait in its outbox.
pub const MAX_INVENTORIES_IN_FLIGHT: usize = 2;
/// `GetTxs` requests in flight to one peer.
pub const MAX_TX_FETCHES_IN_FLIGHT: usize = 2;
/// Txids waiting to be announced to one peer; beyond, the newest are dropped (counted).
pub const MAX_OUTBOX_PER_PEER: usize = 32_768;
/// Txids remembered per peer as known to it (announced either way), oldest forgotten first.
/// Forgetting one costs at most a redundant announcement.
pub const MAX_KNOWN_PER_PEER: usize = 32_768;
/// Transactions announced to us, missing, and not fetched yet; beyond, announcements are
/// dropped (counted) until fetches drain it.
pub const MAX_WANTED_TXS: usize = 100_000;
/// Peers remembered as able to serve one wanted transaction (asked in turn on failure).
pub const MAX_ANNOUNCERS_PER_TX: usize = 4;
/// Txids of the pool announced to a peer when it connects (so a node that joins or
/// reconnects gets what it missed), at most.
pub const MAX_POOL_ANNOUNCEMENT: usize = 32_768;
/// Messages queued from the swarm task to the relay task.
pub const DEFAULT_RELAY_QUEUE: usize = 1024;
/// How long a node that heard of a better tip waits for gossip to bring the block before it
/// syncs with the announcer: gossip (compact) usually delivers within it, and a sync at once
/// would download the full block a second time.
pub const TIP_ANNOUNCE_GRACE: Duration = Duration::from_secs(1);
/// Peers outside its announcement mesh that a node sends `NewTip` to, chosen at random, after
/// connecting a block it accepted from gossip (its mesh gets the forwarded announcement; the
/// others get it from their own meshes, so this is only a backup against lost gossip).
pub const NEW_TIP_BACKUP_PEERS: usize = 3;
/// Tip announcements waiting out their grace period, at most (the newest replace the oldest).
pub const MAX_PENDING_TIPS: usize = 64;
/// A block whose compact form (pushed or announced) is being rebuilt and connected is not
/// also synced on a peer's tip announcement for this long: under load a rebuild and connect
/// take longer than [`TIP_ANNOUNCE_GRACE`], and the sync would download the full block again
/// (measured: 1 MB per host per block on the 20-host harness).
pub const BLOCK_IN_FLIGHT_GRACE: Duration = Duration::from_secs(10);
/// Blocks tracked as in flight at once (the oldest is forgotten first).
pub const MAX_BLOCKS_IN_FLIGHT_TRACKED: usize = 64;
/// Period of the relay task's timer (announcement rounds, fetch scheduling).
pub const RELAY_TICK: Duration = Duration::from_millis(50);

/// Configuration of the network service.
#[derive(Clone, Debug)]
pub struct NetworkConfig {
    /// Addresses to listen on (port 0 picks a free port; `listen_addrs()` reports the real one).
    pub listen_addrs: Vec<Multiaddr>,
    /// Peers dialled at start and re-dialled with backoff when the peer count drops. The
    /// `/p2p/<peer id>` suffix is optional.
    pub bootnodes: Vec<Multiaddr>,
    /// Where the persistent node key (`<data_dir>/p2p_key`) and the peers saved for the next
    /// start (`<data_dir>/peers.txt`) live. `None`: an ephemeral key, nothing saved.
    pub data_dir: Option<PathBuf>,
    /// Hash of the genesis block: names the gossip topics and must match at the handshake.
    pub genesis: BlockHash,
    /// Discover peers on the LAN with mDNS (devnets).
    pub mdns: bool,
    pub max_peers: u32,
    /// Slots inbound peers can never take (see [`NetworkConfig::max_inbound`]).
    pub outbound_reserved: u32,
    pub max_inbound_per_ip: u32,
    /// Inbound connections from these ranges skip the per-IP limit and are never evicted.
    pub trusted_ranges: Vec<crate::slots::IpRange>,
    pub max_pending: u32,
    pub max_connections_per_peer: u32,
    pub target_peers: usize,
    pub ban_duration: Duration,
    pub max_tx_size: usize,
    pub max_block_size: usize,
    pub max_sync_request_size: usize,
    pub max_sync_response_size: usize,
    pub blocks_per_request: usize,
    /// Bytes of blocks asked for in one request (the count comes from the average block size).
    pub request_bytes: usize,
    pub requests_in_flight_per_peer: usize,
    pub block_window: usize,
    /// See [`DEFAULT_BLOCK_WINDOW_BYTES`].
    pub block_window_bytes: usize,
    pub request_timeout: Duration,
    pub max_stalls: u32,
    pub status_interval: Duration,
    pub requests_per_second: u32,
    pub request_burst: u32,
    /// Outbound sync requests per peer per second (the driver's own throttle).
    pub sync_requests_per_second: u32,
    pub command_queue: usize,
    pub event_queue: usize,
    pub serve_queue: usize,
    pub serve_workers: usize,
    pub serve_queue_per_peer: usize,
    pub sync_queue: usize,
    pub idle_connection_timeout: Duration,
    pub discovery_interval: Duration,
    /// Announce transactions over `/cairn/relay/1` and fetch what peers announce (the repair
    /// path behind gossip). Off only to measure gossip alone.
    pub tx_announcements: bool,
    pub announce_interval: Duration,
    pub tx_fetch_delay: Duration,
    /// The fetch delay while quiet (see [`DEFAULT_QUIET_TX_FETCH_DELAY`]); never above
    /// `tx_fetch_delay`.
    pub tx_fetch_delay_quiet: Duration,
    pub relay_queue: usize,
    /// Publish blocks compactly on the `cmpctblock` topic (full blocks still go to peers that
    /// do not take compact blocks). Off: full blocks only, as before (to compare).
    pub compact_blocks: bool,
    /// Gossipsub v1.2 IDONTWANT for messages above 1 kB. Off only to measure its effect.
    pub idontwant: bool,
    /// With `compact_blocks`: announce blocks by header on the `blockann` topic and let each
    /// receiver pull the compact block from one announcer (`GetCompact`, BIP152's
    /// low-bandwidth mode), instead of pushing the compact block on `cmpctblock` to every mesh
    /// peer. Off: compact blocks pushed on gossip (to compare).
    pub block_announcements: bool,
}

impl NetworkConfig {
    /// Defaults for a chain with this genesis hash.
    pub fn new(genesis: BlockHash) -> Self {
        Self {
            listen_addrs: vec![default_listen_addr()],
            bootnodes: Vec::new(),
            data_dir: None,
            genesis,
            mdns: false,
            max_peers: DEFAULT_MAX_PEERS,
            outbound_reserved: DEFAULT_OUTBOUND_RESERVED,
            max_inbound_per_ip: DEFAULT_MAX_INBOUND_PER_IP,
            trusted_ranges: DEFAULT_TRUSTED_RANGES
                .iter()
                .filter_map(|r| r.parse().ok())
                .collect(),
            max_pending: DEFAULT_MAX_PENDING,
            max_connections_per_peer: DEFAULT_MAX_CONNECTIONS_PER_PEER,
            target_peers: DEFAULT_TARGET_PEERS,
            ban_duration: DEFAULT_BAN_DURATION,
            max_tx_size: DEFAULT_MAX_TX_SIZE,
            max_block_size: DEFAULT_MAX_BLOCK_SIZE,
            max_sync_request_size: DEFAULT_MAX_SYNC_REQUEST_SIZE,
            max_sync_response_size: DEFAULT_MAX_SYNC_RESPONSE_SIZE,
            blocks_per_request: DEFAULT_BLOCKS_PER_REQUEST,
            request_bytes: DEFAULT_REQUEST_BYTES,
            requests_in_flight_per_peer: DEFAULT_REQUESTS_IN_FLIGHT_PER_PEER,
            block_window: DEFAULT_BLOCK_WINDOW,
            block_window_bytes: DEFAULT_BLOCK_WINDOW_BYTES,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_stalls: DEFAULT_MAX_STALLS,
            status_interval: DEFAULT_STATUS_INTERVAL,
            requests_per_second: DEFAULT_REQUESTS_PER_SECOND,
            request_burst: DEFAULT_REQUEST_BURST,
            sync_requests_per_second: DEFAULT_SYNC_REQUESTS_PER_SECOND,
            command_queue: DEFAULT_COMMAND_QUEUE,
            event_queue: DEFAULT_EVENT_QUEUE,
            serve_queue: DEFAULT_SERVE_QUEUE,
            serve_workers: DEFAULT_SERVE_WORKERS,
            serve_queue_per_peer: DEFAULT_SERVE_QUEUE_PER_PEER,
            sync_queue: DEFAULT_SYNC_QUEUE,
            idle_connection_timeout: DEFAULT_IDLE_CONNECTION_TIMEOUT,
            discovery_interval: DEFAULT_DISCOVERY_INTERVAL,
            tx_announcements: true,
            announce_interval: DEFAULT_ANNOUNCE_INTERVAL,
            tx_fetch_delay: DEFAULT_TX_FETCH_DELAY,
            tx_fetch_delay_quiet: DEFAULT_QUIET_TX_FETCH_DELAY,
            relay_queue: DEFAULT_RELAY_QUEUE,
            compact_blocks: true,
            idontwant: true,
            block_announcements: true,
        }
    }

    /// A configuration for tests: listens on 127.0.0.1 with an OS-chosen port, ephemeral key.
    pub fn local(genesis: BlockHash) -> Self {
        let mut c = Self::new(genesis);
        c.listen_addrs = vec![
            "/ip4/127.0.0.1/tcp/0"
                .parse()
                .unwrap_or_else(|_| default_listen_addr()),
        ];
        c
    }

    /// Inbound connections allowed: the total less the reserved outbound slots (at most half
    /// the total is reserved, so a small `max_peers` still accepts inbound peers).
    pub fn max_inbound(&self) -> u32 {
        self.max_peers - self.outbound_reserved.min(self.max_peers / 2)
    }

    /// Checks that the limits are usable.
    pub fn validate(&self) -> Result<(), crate::P2pError> {
        let err = |m: &str| Err(crate::P2pError::Config(m.to_string()));
        if self.max_block_size > MAX_ENCODED_SIZE || self.max_block_size == 0 {
            return err("need 0 < max_block_size <= MAX_ENCODED_SIZE");
        }
        if self.max_tx_size == 0 {
            return err("max_tx_size must be positive");
        }
        if self.max_sync_response_size > MAX_ENCODED_SIZE {
            return err("max_sync_response_size above MAX_ENCODED_SIZE");
        }
        if self.blocks_per_request == 0 || self.blocks_per_request > MAX_BLOCKS_PER_REQUEST {
            return err("blocks_per_request must be in 1..=MAX_BLOCKS_PER_REQUEST");
        }
        if self.request_bytes == 0 || self.request_bytes > self.max_sync_response_size {
            return err("request_bytes must be in 1..=max_sync_response_size");
        }
        if self.requests_in_flight_per_peer == 0
            || self.block_window == 0
            || self.block_window_bytes == 0
        {
            return err(
                "requests_in_flight_per_peer, block_window and block_window_bytes must be positive",
            );
        }
        if self.command_queue == 0
            || self.event_queue == 0
            || self.serve_queue == 0
            || self.serve_workers == 0
            || self.serve_queue_per_peer == 0
            || self.sync_queue == 0
            || self.relay_queue == 0
        {
            return err("queue lengths must be positive");
        }
        if self.requests_per_second == 0
            || self.request_burst == 0
            || self.sync_requests_per_second == 0
        {
            return err("request rate limits must be positive");
        }
        Ok(())
    }

    /// Largest gossiped transaction accepted: `max_tx_size`, or less on a chain whose blocks are
    /// smaller (a transaction never exceeds its block).
    pub fn gossip_tx_limit(&self) -> usize {
        self.max_tx_size.min(self.max_block_size)
    }

    /// Gossip topic for transactions: `/cairn/1/<genesis hex>/tx`.
    pub fn tx_topic(&self) -> String {
        format!("/cairn/1/{}/tx", self.genesis.to_hex())
    }

    /// Gossip topic for blocks: `/cairn/1/<genesis hex>/block`.
    pub fn block_topic(&self) -> String {
        format!("/cairn/1/{}/block", self.genesis.to_hex())
    }

    /// Gossip topic for block announcements (a header each): `/cairn/1/<genesis hex>/blockann`.
    pub fn block_announce_topic(&self) -> String {
        format!("/cairn/1/{}/blockann", self.genesis.to_hex())
    }

    /// Gossip topic for compact blocks: `/cairn/1/<genesis hex>/cmpctblock`.
    pub fn compact_block_topic(&self) -> String {
        format!("/cairn/1/{}/cmpctblock", self.genesis.to_hex())
    }
}

/// `/ip4/0.0.0.0/tcp/9645`.
pub fn default_listen_addr() -> Multiaddr {
    Multiaddr::empty()
        .with(libp2p::multiaddr::Protocol::Ip4(
            std::net::Ipv4Addr::UNSPECIFIED,
        ))
        .with(libp2p::multiaddr::Protocol::Tcp(DEFAULT_P2P_PORT))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chain whose blocks are smaller than the default gossip transaction limit: the limits
    /// follow the chain instead of refusing to start (a genesis may set 1,000 bytes).
    #[test]
    fn small_blocks_shrink_the_transaction_limit() {
        let mut c = NetworkConfig::new(BlockHash::ZERO);
        c.max_block_size = 100_000;
        assert!(c.validate().is_ok());
        assert_eq!(c.gossip_tx_limit(), 100_000);
        c.max_block_size = 1_000;
        assert!(c.validate().is_ok());
        assert_eq!(c.gossip_tx_limit(), 1_000);
        c.max_block_size = DEFAULT_MAX_BLOCK_SIZE;
        assert_eq!(c.gossip_tx_limit(), DEFAULT_MAX_TX_SIZE);
    }

    #[test]
    fn inbound_is_capped_below_the_total() {
        let mut c = NetworkConfig::new(BlockHash::ZERO);
        assert_eq!(
            c.max_inbound(),
            DEFAULT_MAX_PEERS - DEFAULT_OUTBOUND_RESERVED
        );
        c.max_peers = 8;
        assert_eq!(c.max_inbound(), 4, "at most half reserved");
    }
}
