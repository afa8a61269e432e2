//! What the nodes report about themselves: every host's WebSocket notifications
//! (`newtransactions`: a transaction entered its mempool; `newblocks`: it connected a block),
//! each stamped on arrival with the harness's clock. All hosts run on this machine and share
//! that clock, so the spread of one transaction's or block's stamps across hosts is its
//! propagation time (plus the notification's trip over the idle control network, well under a
//! millisecond, and the scheduling delay of a loaded machine: the load is reported beside the
//! numbers).
//!
//! Waiting uses a condition variable woken by every notification: nothing here polls the nodes.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

/// A block as the hosts reported it.
#[derive(Clone, Debug)]
pub struct BlockSeen {
    /// When each host connected it.
    pub at: Vec<Option<Instant>>,
}

#[derive(Default)]
pub struct Observations {
    slots: usize,
    /// txid -> when each host accepted it into its mempool.
    pub txs: HashMap<String, Vec<Option<Instant>>>,
    /// block hash -> when each host connected it.
    pub blocks: HashMap<String, BlockSeen>,
    /// Subscriptions that ended while the host was meant to be up (a lagging subscriber's
    /// subscription is ended by the node with an error notification: its later events would be
    /// missing).
    pub lost: Vec<String>,
}

impl Observations {
    /// Whether every host in `hosts` accepted `txid`.
    pub fn tx_everywhere(&self, txid: &str, hosts: &[usize]) -> bool {
        self.txs.get(txid).is_some_and(|at| {
            hosts
                .iter()
                .all(|h| at.get(*h).is_some_and(Option::is_some))
        })
    }

    pub fn block_everywhere(&self, hash: &str, hosts: &[usize]) -> bool {
        self.blocks.get(hash).is_some_and(|b| {
            hosts
                .iter()
                .all(|h| b.at.get(*h).is_some_and(Option::is_some))
        })
    }

    /// First and last stamp of `at` over `hosts`, if every one of them has a stamp.
    pub fn spread(at: &[Option<Instant>], hosts: &[usize]) -> Option<(Instant, Instant)> {
        let mut first: Option<Instant> = None;
        let mut last: Option<Instant> = None;
        for h in hosts {
            let t = (*at.get(*h)?)?;
            first = Some(first.map_or(t, |f| f.min(t)));
            last = Some(last.map_or(t, |l| l.max(t)));
        }
        Some((first?, last?))
    }
}

pub struct Events {
    obs: Mutex<Observations>,
    changed: Condvar,
    /// One instant and the wall-clock time at that instant, to place nodes' log timestamps
    /// on the harness's clock.
    origin: (Instant, SystemTime),
}

impl Events {
    /// Room for `slots` hosts (indexes 0..slots).
    pub fn new(slots: usize) -> Events {
        Events {
            obs: Mutex::new(Observations {
                slots,
                ..Default::default()
            }),
            changed: Condvar::new(),
            origin: (Instant::now(), SystemTime::now()),
        }
    }

    /// The instant of a wall-clock time (a node's log timestamp).
    pub fn instant_of(&self, wall: SystemTime) -> Option<Instant> {
        let (i0, w0) = self.origin;
        match wall.duration_since(w0) {
            Ok(after) => i0.checked_add(after),
            Err(e) => i0.checked_sub(e.duration()),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, Observations> {
        self.obs.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn tx(&self, host: usize, txid: String, at: Instant) {
        let mut o = self.lock();
        let slots = o.slots;
        let entry = o.txs.entry(txid).or_insert_with(|| vec![None; slots]);
        if let Some(s) = entry.get_mut(host) {
            // The first acceptance counts; a later one (after a reorganisation) is not a
            // propagation.
            s.get_or_insert(at);
        }
        drop(o);
        self.changed.notify_all();
    }

    pub fn block(&self, host: usize, hash: String, at: Instant) {
        let mut o = self.lock();
        let slots = o.slots;
        let entry = o.blocks.entry(hash).or_insert_with(|| BlockSeen {
            at: vec![None; slots],
        });
        if let Some(s) = entry.at.get_mut(host) {
            s.get_or_insert(at);
        }
        drop(o);
        self.changed.notify_all();
    }

    /// Forgets every stamp of `host` (a fresh node in a reused slot).
    pub fn reset_host(&self, host: usize) {
        let mut o = self.lock();
        for at in o.txs.values_mut() {
            if let Some(s) = at.get_mut(host) {
                *s = None;
            }
        }
        for b in o.blocks.values_mut() {
            if let Some(s) = b.at.get_mut(host) {
                *s = None;
            }
        }
    }

    pub fn lost(&self, what: String) {
        self.lock().lost.push(what);
        self.changed.notify_all();
    }

    /// Waits until `done` holds or `timeout` passes; returns whether it held.
    pub fn wait(&self, timeout: Duration, mut done: impl FnMut(&Observations) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut o = self.lock();
        loop {
            if done(&o) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            o = self
                .changed
                .wait_timeout(o, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_needs_every_host_and_keeps_the_first_stamp() {
        let e = Events::new(3);
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(5);
        let t2 = t0 + Duration::from_millis(9);
        e.tx(0, "a".into(), t1);
        e.tx(1, "a".into(), t0);
        e.tx(0, "a".into(), t2); // later duplicate: ignored
        let o = e.lock();
        let at = &o.txs["a"];
        assert_eq!(Observations::spread(at, &[0, 1]), Some((t0, t1)));
        assert_eq!(Observations::spread(at, &[0, 1, 2]), None);
        assert!(o.tx_everywhere("a", &[0, 1]));
        assert!(!o.tx_everywhere("a", &[2]));
    }

    #[test]
    fn wait_returns_false_at_the_deadline_and_true_when_woken() {
        let e = std::sync::Arc::new(Events::new(1));
        assert!(!e.wait(Duration::from_millis(20), |o| o.blocks.contains_key("b")));
        let e2 = std::sync::Arc::clone(&e);
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            e2.block(0, "b".into(), Instant::now());
        });
        assert!(e.wait(Duration::from_secs(5), |o| o.blocks.contains_key("b")));
        assert!(t.join().is_ok());
    }
}
