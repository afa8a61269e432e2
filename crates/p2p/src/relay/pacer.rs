//! How long an announced transaction is left to gossip before it is fetched.
//!
//! Gossip fails in two ways, which call for opposite waits. Under load it is *slow*: many
//! transactions are still on their way when their announcements arrive, and fetching them
//! early would bring each one twice, so the full (busy) delay applies. On a quiet network it
//! delivers in milliseconds and only *loses* the odd message: what it has not brought after a
//! short while will not come, and waiting the full delay only adds latency.
//!
//! The signal is measured where the decision is made: every wanted transaction is looked at
//! when its quiet delay is over and counted as brought (gossip delivered it meanwhile: gossip
//! runs behind the announcements) or missing. The counts over the last one to two seconds, not
//! their share, separate the regimes. Per host on the 20-host testnet: at 50 tx/s 0.3 a second
//! brought and 0.3 missing (the missing ones were lost: 82 % were then fetched); at 300 tx/s 52
//! brought and 12 missing (three quarters of those gossip then brought before the busy delay);
//! in a 10,000-transaction burst 5 brought and ~450 missing. So: busy while many are brought
//! late or very many are missing, quiet otherwise. Pure: the clock is passed in.

use std::time::{Duration, Instant};

/// The delays, and the brought/missing counts of this second and the last.
#[derive(Debug)]
pub struct FetchPacer {
    busy_delay: Duration,
    quiet_delay: Duration,
    /// Quiet while fewer than this many were brought within their quiet delay (gossip behind
    /// the announcements) over this second and the last ...
    quiet_max_brought: usize,
    /// ... and fewer than this many were still missing then.
    quiet_max_missing: usize,
    /// Start of the current second, then (brought, missing) in it and in the second before.
    window: (Instant, (usize, usize), (usize, usize)),
}

const SECOND: Duration = Duration::from_secs(1);

impl FetchPacer {
    /// `quiet_delay` is capped at `busy_delay`.
    pub fn new(
        busy_delay: Duration,
        quiet_delay: Duration,
        (quiet_max_brought, quiet_max_missing): (usize, usize),
        now: Instant,
    ) -> Self {
        Self {
            busy_delay,
            quiet_delay: quiet_delay.min(busy_delay),
            quiet_max_brought,
            quiet_max_missing,
            window: (now, (0, 0), (0, 0)),
        }
    }

    /// When a transaction that becomes wanted at `now` is first looked at.
    pub fn quiet_deadline(&self, now: Instant) -> Instant {
        now + self.quiet_delay
    }

    /// When it is fetched even while busy.
    pub fn busy_deadline(&self, now: Instant) -> Instant {
        now + self.busy_delay
    }

    /// The window as of `now`.
    fn rolled(&self, now: Instant) -> (Instant, (usize, usize), (usize, usize)) {
        let (start, this, _) = self.window;
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= 2 * SECOND {
            (now, (0, 0), (0, 0))
        } else if elapsed >= SECOND {
            (now, (0, 0), this)
        } else {
            self.window
        }
    }

    /// A wanted transaction reached its quiet deadline: `brought` if gossip delivered it by
    /// then. Returns whether to fetch a missing one now (the network is quiet) rather than at
    /// its busy deadline.
    pub fn looked_at(&mut self, now: Instant, brought: bool) -> bool {
        self.window = self.rolled(now);
        let this = &mut self.window.1;
        if brought {
            this.0 += 1;
        } else {
            this.1 += 1;
        }
        self.quiet(now)
    }

    /// Whether gossip has kept up lately: few wanted transactions brought late, and not very
    /// many missing.
    pub fn quiet(&self, now: Instant) -> bool {
        let (_, this, last) = self.rolled(now);
        this.0 + last.0 < self.quiet_max_brought && this.1 + last.1 < self.quiet_max_missing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUSY: Duration = Duration::from_millis(500);
    const QUIET: Duration = Duration::from_millis(100);

    fn pacer(t0: Instant) -> FetchPacer {
        FetchPacer::new(BUSY, QUIET, (20, 100), t0)
    }

    #[test]
    fn lost_ones_keep_it_quiet_late_ones_make_it_busy() {
        let t0 = Instant::now();
        let mut p = pacer(t0);
        // A stretch of lost gossip (missing, none brought late): still quiet, fetch at once.
        for _ in 0..99 {
            assert!(p.looked_at(t0, false));
        }
        // Very many missing: gossip is not losing them, it is far behind.
        assert!(!p.looked_at(t0, false));
        let t1 = t0 + Duration::from_secs(5);
        assert!(p.quiet(t1));
        // Gossip running behind the announcements: brought, but late.
        for _ in 0..19 {
            assert!(p.looked_at(t1, true));
        }
        assert!(!p.looked_at(t1, true));
    }

    #[test]
    fn the_window_remembers_one_second_back_then_forgets() {
        let t0 = Instant::now();
        let mut p = pacer(t0);
        for _ in 0..20 {
            p.looked_at(t0, true);
        }
        assert!(!p.quiet(t0));
        assert!(
            !p.quiet(t0 + Duration::from_millis(1_500)),
            "last second still counts"
        );
        assert!(p.quiet(t0 + Duration::from_secs(10)), "long gone");
        // Rolled by a look 1.5 s on: the old second is now "last", then dropped a second later.
        assert!(!p.looked_at(t0 + Duration::from_millis(1_500), false));
        assert!(p.quiet(t0 + Duration::from_millis(2_600)));
    }

    #[test]
    fn deadlines_and_the_cap() {
        let t0 = Instant::now();
        let p = pacer(t0);
        assert_eq!(p.quiet_deadline(t0), t0 + QUIET);
        assert_eq!(p.busy_deadline(t0), t0 + BUSY);
        let capped = FetchPacer::new(QUIET, BUSY, (20, 100), t0);
        assert_eq!(capped.quiet_deadline(t0), t0 + QUIET);
    }
}
