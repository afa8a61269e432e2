//! How long an announced transaction is left to gossip before it is fetched.
//!
//! Gossip fails in two ways, which call for opposite waits. Under load it is *slow*: many
//! announcements arrive before the transaction itself, and fetching at once would bring each
//! one twice, so the full delay applies. On a quiet network it delivers in milliseconds and
//! only *loses* the odd message: what it has not brought after a short while will not come, and
//! waiting the full delay only adds latency. The load signal is the number of transactions
//! announced to us before gossip brought them, this second or the last. Pure: the clock is
//! passed in.

use std::time::{Duration, Instant};

/// Counts transactions that became wanted, per second, and picks the fetch delay.
#[derive(Debug)]
pub struct FetchPacer {
    busy_delay: Duration,
    quiet_delay: Duration,
    quiet_max_per_sec: usize,
    /// Start of the current second, count in it, count in the second before.
    window: (Instant, usize, usize),
}

const SECOND: Duration = Duration::from_secs(1);

impl FetchPacer {
    /// `quiet_delay` is capped at `busy_delay`.
    pub fn new(
        busy_delay: Duration,
        quiet_delay: Duration,
        quiet_max_per_sec: usize,
        now: Instant,
    ) -> Self {
        Self {
            busy_delay,
            quiet_delay: quiet_delay.min(busy_delay),
            quiet_max_per_sec,
            window: (now, 0, 0),
        }
    }

    fn roll(&mut self, now: Instant) {
        let (start, this, _) = self.window;
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= 2 * SECOND {
            self.window = (now, 0, 0);
        } else if elapsed >= SECOND {
            self.window = (now, 0, this);
        }
    }

    /// A transaction was announced before gossip brought it.
    pub fn wanted(&mut self, now: Instant) {
        self.roll(now);
        self.window.1 += 1;
    }

    /// The delay for a transaction that becomes wanted now.
    pub fn delay(&mut self, now: Instant) -> Duration {
        self.roll(now);
        let (_, this, last) = self.window;
        if this.max(last) < self.quiet_max_per_sec {
            self.quiet_delay
        } else {
            self.busy_delay
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUSY: Duration = Duration::from_millis(500);
    const QUIET: Duration = Duration::from_millis(100);

    #[test]
    fn quiet_until_the_rate_reaches_the_limit_then_busy_for_the_next_second() {
        let t0 = Instant::now();
        let mut p = FetchPacer::new(BUSY, QUIET, 3, t0);
        assert_eq!(p.delay(t0), QUIET);
        for _ in 0..2 {
            p.wanted(t0);
        }
        assert_eq!(p.delay(t0), QUIET, "2 a second is below the limit of 3");
        p.wanted(t0);
        assert_eq!(p.delay(t0), BUSY);
        // The next second still remembers the busy one.
        let t1 = t0 + Duration::from_millis(1_200);
        assert_eq!(p.delay(t1), BUSY);
        // Two quiet seconds later it is quiet again.
        let t2 = t1 + Duration::from_millis(1_100);
        assert_eq!(p.delay(t2), QUIET);
    }

    #[test]
    fn a_long_gap_forgets_everything() {
        let t0 = Instant::now();
        let mut p = FetchPacer::new(BUSY, QUIET, 1, t0);
        p.wanted(t0);
        assert_eq!(p.delay(t0), BUSY);
        assert_eq!(p.delay(t0 + Duration::from_secs(5)), QUIET);
    }

    #[test]
    fn the_quiet_delay_never_exceeds_the_busy_one() {
        let t0 = Instant::now();
        let mut p = FetchPacer::new(QUIET, BUSY, 10, t0);
        assert_eq!(p.delay(t0), QUIET);
    }
}
