//! Connection slots an attacker cannot take (Bitcoin Core's inbound policy, simplified).
//!
//! - Inbound connections are capped below the total ([`NetworkConfig::max_inbound`]), so the
//!   node's own dials always find a slot: identities cost nothing, so inbound peers alone must
//!   never be able to fill the node.
//! - At most `max_inbound_per_ip` inbound connections come from one IP address, except from
//!   trusted ranges (loopback by default: local test networks and the node's own tools).
//! - When the inbound slots are full, a new inbound connection evicts an inbound one: the
//!   oldest connection of each of the [`PROTECTED_NETGROUPS`] longest-present netgroups (IPv4
//!   /16, IPv6 /32) and the [`PROTECTED_BY_UPTIME`] longest-connected others are protected, then
//!   the youngest connection of the netgroup holding the most connections goes. Many identities from one network thus
//!   displace each other, not peers from elsewhere. Outbound connections are never evicted.
//!
//! Pure bookkeeping is in [`InboundTable`] (tested without sockets); [`Slots`] is the libp2p
//! behaviour around it.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::IpAddr;
use std::task::{Context, Poll};
use std::time::Instant;

use libp2p::core::transport::PortUse;
use libp2p::core::{ConnectedPoint, Endpoint};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{
    CloseConnection, ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour,
    THandler, THandlerInEvent, THandlerOutEvent, ToSwarm, dummy,
};
use libp2p::{Multiaddr, PeerId};

use crate::config::NetworkConfig;

/// Netgroups whose longest-connected inbound connection is never evicted (the netgroups
/// connected longest): peers from networks the attacker does not hold survive a flood.
pub const PROTECTED_NETGROUPS: usize = 4;
/// Further longest-connected inbound connections never evicted (an attacker churning
/// identities cannot displace peers that have been here longest).
pub const PROTECTED_BY_UPTIME: usize = 4;

/// A range of IP addresses: `addr/prefix`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpRange {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl IpRange {
    pub fn contains(&self, ip: &IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let bits = u32::from(self.prefix.min(32));
                let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
                u32::from(net) & mask == u32::from(*ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let bits = u32::from(self.prefix.min(128));
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                u128::from(net) & mask == u128::from(*ip) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for IpRange {
    type Err = String;

    /// `"10.0.0.0/8"`, `"::1/128"`, or a bare address (a range of one).
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|e| format!("{s}: {e}"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().map_err(|e| format!("{s}: {e}"))?,
            None => max,
        };
        if prefix > max {
            return Err(format!("{s}: prefix above {max}"));
        }
        Ok(IpRange { addr, prefix })
    }
}

/// The netgroup of an address: IPv4 /16, IPv6 /32 (as Bitcoin Core without an AS map).
pub fn netgroup(ip: &IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) => u64::from(u32::from(*v4) >> 16),
        IpAddr::V6(v6) => (1 << 32) | (u128::from(*v6) >> 96) as u64,
    }
}

/// The IP address of a multiaddr, if it has one.
pub fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

#[derive(Clone, Debug)]
struct Inbound {
    peer: PeerId,
    ip: Option<IpAddr>,
    since: Instant,
    trusted: bool,
}

/// The limits, from [`NetworkConfig`].
#[derive(Clone, Debug)]
pub struct SlotPolicy {
    pub max_inbound: usize,
    pub max_inbound_per_ip: usize,
    pub trusted: Vec<IpRange>,
}

impl SlotPolicy {
    pub fn from_config(config: &NetworkConfig) -> Self {
        Self {
            max_inbound: config.max_inbound() as usize,
            max_inbound_per_ip: config.max_inbound_per_ip as usize,
            trusted: config.trusted_ranges.clone(),
        }
    }

    fn is_trusted(&self, ip: Option<IpAddr>) -> bool {
        ip.is_some_and(|ip| self.trusted.iter().any(|r| r.contains(&ip)))
    }
}

/// What to do with a new inbound connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    Accept,
    /// Accept, and close this inbound connection to make room.
    AcceptEvicting(ConnectionId, PeerId),
    Refuse(String),
}

/// The established inbound connections and the admission decision (no I/O).
#[derive(Debug)]
pub struct InboundTable {
    policy: SlotPolicy,
    inbound: HashMap<ConnectionId, Inbound>,
    /// Connections being evicted (closing): they no longer hold a slot.
    evicting: Vec<ConnectionId>,
}

impl InboundTable {
    pub fn new(policy: SlotPolicy) -> Self {
        Self {
            policy,
            inbound: HashMap::new(),
            evicting: Vec::new(),
        }
    }

    fn live(&self) -> impl Iterator<Item = (&ConnectionId, &Inbound)> {
        self.inbound
            .iter()
            .filter(|(id, _)| !self.evicting.contains(id))
    }

    /// Inbound connections holding a slot.
    pub fn len(&self) -> usize {
        self.live().count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Decides on a new inbound connection from `remote`.
    pub fn admit(&mut self, remote: &Multiaddr) -> Admission {
        let ip = ip_of(remote);
        let trusted = self.policy.is_trusted(ip);
        if !trusted && let Some(ip) = ip {
            let same_ip = self.live().filter(|(_, c)| c.ip == Some(ip)).count();
            if same_ip >= self.policy.max_inbound_per_ip {
                return Admission::Refuse(format!(
                    "{same_ip} inbound connections from {ip} already (limit {})",
                    self.policy.max_inbound_per_ip
                ));
            }
        }
        if self.len() < self.policy.max_inbound {
            return Admission::Accept;
        }
        match self.eviction_candidate() {
            Some((id, peer)) => {
                self.evicting.push(id);
                Admission::AcceptEvicting(id, peer)
            }
            None => Admission::Refuse("inbound slots full, nobody to evict".into()),
        }
    }

    /// The inbound connection to close (see the module doc); `None` if all are protected.
    fn eviction_candidate(&self) -> Option<(ConnectionId, PeerId)> {
        let group_of = |c: &Inbound| c.ip.as_ref().map_or(u64::MAX, netgroup);
        let mut candidates: Vec<(ConnectionId, &Inbound)> = self
            .live()
            .filter(|(_, c)| !c.trusted)
            .map(|(id, c)| (*id, c))
            .collect();
        candidates.sort_by_key(|(_, c)| c.since);
        // The oldest connection of each netgroup, the longest-present netgroups first.
        let mut seen = Vec::new();
        let mut protected = Vec::new();
        for (id, c) in &candidates {
            if protected.len() >= PROTECTED_NETGROUPS {
                break;
            }
            if !seen.contains(&group_of(c)) {
                seen.push(group_of(c));
                protected.push(*id);
            }
        }
        candidates.retain(|(id, _)| !protected.contains(id));
        let candidates = candidates.get(PROTECTED_BY_UPTIME..)?;
        let mut groups: HashMap<u64, Vec<(ConnectionId, &Inbound)>> = HashMap::new();
        for (id, c) in candidates {
            groups.entry(group_of(c)).or_default().push((*id, c));
        }
        let youngest = |g: &Vec<(ConnectionId, &Inbound)>| g.iter().map(|(_, c)| c.since).max();
        let (_, group) = groups.into_iter().max_by(|(_, a), (_, b)| {
            a.len()
                .cmp(&b.len())
                .then_with(|| youngest(a).cmp(&youngest(b)))
        })?;
        group
            .into_iter()
            .max_by_key(|(_, c)| c.since)
            .map(|(id, c)| (id, c.peer))
    }

    pub fn established(&mut self, id: ConnectionId, peer: PeerId, remote: &Multiaddr) {
        let ip = ip_of(remote);
        self.inbound.insert(
            id,
            Inbound {
                peer,
                ip,
                since: Instant::now(),
                trusted: self.policy.is_trusted(ip),
            },
        );
    }

    pub fn closed(&mut self, id: ConnectionId) {
        self.inbound.remove(&id);
        self.evicting.retain(|e| *e != id);
    }
}

/// What the slots behaviour reports to the swarm task.
#[derive(Debug)]
pub enum SlotEvent {
    /// An inbound peer is being disconnected to make room.
    Evicted(PeerId),
    /// A new inbound connection was refused.
    Refused(String),
}

/// The behaviour enforcing [`SlotPolicy`] on inbound connections.
pub struct Slots {
    table: InboundTable,
    actions: VecDeque<ToSwarm<SlotEvent, Infallible>>,
}

impl Slots {
    pub fn new(policy: SlotPolicy) -> Self {
        Self {
            table: InboundTable::new(policy),
            actions: VecDeque::new(),
        }
    }
}

impl NetworkBehaviour for Slots {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = SlotEvent;

    fn handle_established_inbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        _peer: PeerId,
        _local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        match self.table.admit(remote_addr) {
            Admission::Accept => Ok(dummy::ConnectionHandler),
            Admission::AcceptEvicting(id, peer) => {
                self.actions.push_back(ToSwarm::CloseConnection {
                    peer_id: peer,
                    connection: CloseConnection::One(id),
                });
                self.actions
                    .push_back(ToSwarm::GenerateEvent(SlotEvent::Evicted(peer)));
                Ok(dummy::ConnectionHandler)
            }
            Admission::Refuse(reason) => {
                self.actions
                    .push_back(ToSwarm::GenerateEvent(SlotEvent::Refused(reason.clone())));
                Err(ConnectionDenied::new(SlotsFull(reason)))
            }
        }
    }

    fn handle_established_outbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        _peer: PeerId,
        _addr: &Multiaddr,
        _role_override: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionEstablished(e) => {
                if let ConnectedPoint::Listener { send_back_addr, .. } = e.endpoint {
                    self.table
                        .established(e.connection_id, e.peer_id, send_back_addr);
                }
            }
            FromSwarm::ConnectionClosed(ConnectionClosed { connection_id, .. }) => {
                self.table.closed(connection_id);
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _peer: PeerId,
        _id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        libp2p::core::util::unreachable(event)
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<SlotEvent, THandlerInEvent<Self>>> {
        match self.actions.pop_front() {
            Some(action) => Poll::Ready(action),
            None => Poll::Pending,
        }
    }
}

/// Why an inbound connection was denied.
#[derive(Debug)]
struct SlotsFull(String);

impl std::fmt::Display for SlotsFull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "inbound connection refused: {}", self.0)
    }
}

impl std::error::Error for SlotsFull {}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(ip: &str) -> Multiaddr {
        format!("/ip4/{ip}/tcp/1000").parse().expect("multiaddr")
    }

    fn table(max_inbound: usize, per_ip: usize, trusted: &[&str]) -> InboundTable {
        InboundTable::new(SlotPolicy {
            max_inbound,
            max_inbound_per_ip: per_ip,
            trusted: trusted.iter().map(|t| t.parse().expect("range")).collect(),
        })
    }

    fn connect(t: &mut InboundTable, n: usize, ip: &str) -> Vec<Admission> {
        (0..n)
            .map(|_| {
                let a = t.admit(&addr(ip));
                if !matches!(a, Admission::Refuse(_)) {
                    t.established(
                        ConnectionId::new_unchecked(rand_id()),
                        PeerId::random(),
                        &addr(ip),
                    );
                }
                if let Admission::AcceptEvicting(id, _) = a {
                    t.closed(id);
                }
                a
            })
            .collect()
    }

    fn rand_id() -> usize {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(1);
        NEXT.fetch_add(1, Ordering::Relaxed)
    }

    #[test]
    fn ranges_parse_and_match() {
        let r: IpRange = "10.1.0.0/16".parse().expect("range");
        assert!(r.contains(&"10.1.200.3".parse().expect("ip")));
        assert!(!r.contains(&"10.2.0.1".parse().expect("ip")));
        let one: IpRange = "::1".parse().expect("range");
        assert!(one.contains(&"::1".parse().expect("ip")));
        assert!("1.2.3.4/33".parse::<IpRange>().is_err());
        let all: IpRange = "0.0.0.0/0".parse().expect("range");
        assert!(all.contains(&"8.8.8.8".parse().expect("ip")));
    }

    #[test]
    fn per_ip_limit_spares_trusted_ranges() {
        let mut t = table(100, 3, &["127.0.0.0/8"]);
        let from_one_host = connect(&mut t, 10, "203.0.113.7");
        assert_eq!(
            from_one_host
                .iter()
                .filter(|a| **a == Admission::Accept)
                .count(),
            3
        );
        let local = connect(&mut t, 10, "127.0.0.1");
        assert!(local.iter().all(|a| *a == Admission::Accept));
    }

    #[test]
    fn full_inbound_evicts_from_the_biggest_netgroup() {
        let mut t = table(12, 100, &[]);
        let flood_ip = "10.9.0.1";
        connect(&mut t, 4, flood_ip);
        // Honest peers from four other networks.
        for ip in ["198.51.100.1", "192.0.2.1", "203.0.113.1", "100.64.0.1"] {
            connect(&mut t, 1, ip);
        }
        // Many more identities from the flooding network.
        let flood = connect(&mut t, 40, flood_ip);
        assert_eq!(t.len(), 12, "never above the inbound cap");
        let evictions = flood
            .iter()
            .filter(|a| matches!(a, Admission::AcceptEvicting(..)))
            .count();
        assert!(evictions >= 36, "{evictions}");
        // Every eviction hit the flooding netgroup: the honest peers are all still here.
        let flood_group = netgroup(&flood_ip.parse().expect("ip"));
        let honest = t
            .live()
            .filter(|(_, c)| c.ip.is_some_and(|ip| netgroup(&ip) != flood_group))
            .count();
        assert_eq!(honest, 4);
    }
}
