//! The peers this node was connected to, saved in its data dir (`peers.txt`) so that after a
//! restart, even a `kill -9`, it dials them at once instead of waiting for its bootnodes and
//! discovery, as Bitcoin Core's `peers.dat` and `anchors.dat`. Measured on the 20-host testnet
//! before it: hosts killed together with both seeds formed an island among themselves and
//! reached the network's tip only 13–18 s after their restart, when the survivors' next
//! discovery walk dialled them.
//!
//! The file is one multiaddr ending in `/p2p/<peer id>` per line, most recent last, at most
//! [`MAX_SAVED_PEERS`] peers and [`MAX_PEERS_FILE_BYTES`]; a line that does not parse is skipped
//! (counted in a warning), never fatal. It is written atomically (temporary file, rename) at
//! most every [`SAVE_INTERVAL`] while it changes, and at shutdown.

use std::collections::VecDeque;
use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use tracing::{debug, warn};

/// The file's name in the data dir.
pub const PEERS_FILE: &str = "peers.txt";
/// Peers remembered (each with up to [`MAX_ADDRS_PER_PEER`] addresses).
pub const MAX_SAVED_PEERS: usize = 64;
/// Addresses remembered per peer (what identify reported it listens on).
pub const MAX_ADDRS_PER_PEER: usize = 2;
/// Bytes of the file read at start; beyond, ignored.
pub const MAX_PEERS_FILE_BYTES: u64 = 64 * 1024;
/// Most recent saved peers dialled at start.
pub const MAX_STARTUP_DIALS: usize = 16;
/// Least time between two writes while the set changes.
pub const SAVE_INTERVAL: Duration = Duration::from_secs(10);

/// Recently connected peers and where they listen, bounded, oldest forgotten first.
#[derive(Debug)]
pub struct AddrBook {
    path: Option<PathBuf>,
    /// (peer, its addresses with `/p2p/<peer>`), most recent last.
    peers: VecDeque<(PeerId, Vec<Multiaddr>)>,
    dirty: bool,
    last_save: Option<Instant>,
}

/// `addr` with `/p2p/<peer>` at the end (once).
fn with_peer(addr: &Multiaddr, peer: PeerId) -> Multiaddr {
    let plain: Multiaddr = addr
        .iter()
        .filter(|p| !matches!(p, Protocol::P2p(_)))
        .collect();
    plain.with(Protocol::P2p(peer))
}

/// An address worth dialling later: not 0.0.0.0 or `::`.
fn dialable(addr: &Multiaddr) -> bool {
    !addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_unspecified(),
        Protocol::Ip6(ip) => ip.is_unspecified(),
        _ => false,
    })
}

fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        Protocol::P2p(peer) => Some(peer),
        _ => None,
    })
}

impl AddrBook {
    /// The book saved at `path` (empty without a path or a file). `own` is skipped.
    pub fn load(path: Option<PathBuf>, own: PeerId) -> Self {
        let mut book = Self {
            path,
            peers: VecDeque::new(),
            dirty: false,
            last_save: None,
        };
        let Some(p) = &book.path else {
            return book;
        };
        let mut text = String::new();
        match std::fs::File::open(p) {
            Ok(f) => {
                if let Err(e) = f.take(MAX_PEERS_FILE_BYTES).read_to_string(&mut text) {
                    warn!(path = %p.display(), error = %e, "cannot read the saved peers; starting without them");
                    return book;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return book,
            Err(e) => {
                warn!(path = %p.display(), error = %e, "cannot open the saved peers; starting without them");
                return book;
            }
        }
        let mut skipped = 0usize;
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let parsed = line
                .parse::<Multiaddr>()
                .ok()
                .and_then(|a| peer_of(&a).map(|peer| (peer, a)));
            match parsed {
                Some((peer, addr)) if peer != own && dialable(&addr) => book.add(peer, addr),
                _ => skipped += 1,
            }
        }
        if skipped > 0 {
            warn!(path = %book.path_display(), skipped, "saved peers: lines skipped (not a multiaddr with /p2p/<id>)");
        }
        book.dirty = false;
        book
    }

    fn path_display(&self) -> String {
        self.path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    }

    fn add(&mut self, peer: PeerId, addr: Multiaddr) {
        let mut addrs = match self.peers.iter().position(|(p, _)| *p == peer) {
            Some(i) => self.peers.remove(i).map(|(_, a)| a).unwrap_or_default(),
            None => Vec::new(),
        };
        addrs.retain(|a| *a != addr);
        addrs.push(addr);
        if addrs.len() > MAX_ADDRS_PER_PEER {
            addrs.remove(0);
        }
        self.peers.push_back((peer, addrs));
        if self.peers.len() > MAX_SAVED_PEERS {
            self.peers.pop_front();
        }
        self.dirty = true;
    }

    /// `peer` is connected and listens on `addr`.
    pub fn seen(&mut self, peer: PeerId, addr: &Multiaddr) {
        if dialable(addr) {
            self.add(peer, with_peer(addr, peer));
        }
    }

    /// The most recent peers' addresses, to dial at start.
    pub fn startup_dials(&self) -> Vec<Multiaddr> {
        self.peers
            .iter()
            .rev()
            .take(MAX_STARTUP_DIALS)
            .flat_map(|(_, a)| a.iter().cloned())
            .collect()
    }

    /// Writes the book if it changed and the last write is [`SAVE_INTERVAL`] old.
    pub fn maybe_save(&mut self, now: Instant) {
        if self.dirty && self.last_save.is_none_or(|t| now >= t + SAVE_INTERVAL) {
            self.save(now);
        }
    }

    /// Writes the book now (temporary file, then rename). A failure is logged, never fatal.
    pub fn save(&mut self, now: Instant) {
        let Some(path) = &self.path else {
            return;
        };
        self.last_save = Some(now);
        self.dirty = false;
        let mut text = String::new();
        for (_, addrs) in &self.peers {
            for a in addrs {
                text.push_str(&a.to_string());
                text.push('\n');
            }
        }
        let tmp = path.with_extension("tmp");
        let written = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path));
        match written {
            Ok(()) => debug!(path = %path.display(), peers = self.peers.len(), "saved peers"),
            Err(e) => warn!(path = %path.display(), error = %e, "cannot save the peers"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(i: u8) -> Multiaddr {
        format!("/ip4/198.18.0.{i}/tcp/9645")
            .parse()
            .unwrap_or_else(|_| Multiaddr::empty())
    }

    #[test]
    fn saved_peers_load_back_most_recent_first_and_bad_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let path = dir.path().join("peers.txt");
        let own = PeerId::random();
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut book = AddrBook::load(Some(path.clone()), own);
        assert!(book.startup_dials().is_empty());
        book.seen(a, &addr(1));
        book.seen(b, &addr(2));
        book.seen(own, &addr(3));
        book.seen(
            a,
            &"/ip4/0.0.0.0/tcp/1"
                .parse()
                .unwrap_or_else(|_| Multiaddr::empty()),
        );
        book.save(Instant::now());
        // A damaged line and our own id are skipped, the rest loads.
        let mut text = std::fs::read_to_string(&path).unwrap_or_default();
        text.push_str("not an address\n/ip4/1.2.3.4/tcp/5\n");
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write: {e}"));
        let loaded = AddrBook::load(Some(path), own);
        let dials = loaded.startup_dials();
        assert_eq!(
            dials,
            vec![
                with_peer(&addr(3), own),
                with_peer(&addr(2), b),
                with_peer(&addr(1), a)
            ]
            .into_iter()
            .filter(|d| peer_of(d) != Some(own))
            .collect::<Vec<_>>()
        );
    }

    #[test]
    fn the_book_is_bounded_and_saves_at_most_every_interval() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let path = dir.path().join("peers.txt");
        let mut book = AddrBook::load(Some(path.clone()), PeerId::random());
        for i in 0..(MAX_SAVED_PEERS + 10) {
            book.seen(PeerId::random(), &addr((i % 250) as u8));
        }
        assert_eq!(book.peers.len(), MAX_SAVED_PEERS);
        assert_eq!(book.startup_dials().len(), MAX_STARTUP_DIALS);
        let t0 = Instant::now();
        book.maybe_save(t0);
        assert!(path.exists());
        std::fs::remove_file(&path).unwrap_or_else(|e| panic!("remove: {e}"));
        book.seen(PeerId::random(), &addr(1));
        book.maybe_save(t0 + Duration::from_secs(1));
        assert!(!path.exists(), "saved again within the interval");
        book.maybe_save(t0 + SAVE_INTERVAL);
        assert!(path.exists());
    }
}
