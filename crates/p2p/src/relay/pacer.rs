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
//! late or very many are missing, quiet otherwise.
//!
//! All of that applies only while gossip carries transactions at all. Between Cairn nodes it
//! does not under load (they then publish on gossip only for peers that lack the relay
//! protocol), so once announcements have kept arriving for [`GOSSIP_SILENT_AFTER`] with no
//! gossiped transaction, an announced transaction is fetched at once: waiting would only add
//! latency. After a pause in the announcements that count starts again: the first
//! transactions after a quiet spell usually come by gossip, and fetching them at once would
//! bring them twice. Pure: the clock is passed in.

use std::time::{Duration, Instant};

/// Gossip counts as silent when announcements arrived for this long (with no longer gap)
/// and no gossiped transaction did: announced transactions are then fetched at once.
pub const GOSSIP_SILENT_AFTER: Duration = Duration::from_millis(500);

/// The delays, and the brought/missing counts of this second and the last.
#[derive(Debug)]
pub struct FetchPacer {
    /// Gossiped transactions received so far (the service's counter).
    gossip_received: u64,
    /// The last announcement, and the first one since gossip last brought a transaction (or
    /// since the last pause in announcements).
    last_announcement: Option<Instant>,
    unanswered_since: Option<Instant>,
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
            gossip_received: 0,
            last_announcement: None,
            unanswered_since: None,
            busy_delay,
            quiet_delay: quiet_delay.min(busy_delay),
            quiet_max_brought,
            quiet_max_missing,
            window: (now, (0, 0), (0, 0)),
        }
    }

    /// An announcement arrived at `now`; `gossip_received` is the count of gossiped
    /// transactions received so far.
    pub fn announced(&mut self, now: Instant, gossip_received: u64) {
        let pause = self
            .last_announcement
            .is_none_or(|t| now.saturating_duration_since(t) > GOSSIP_SILENT_AFTER);
        self.last_announcement = Some(now);
        if gossip_received != self.gossip_received {
            self.gossip_received = gossip_received;
            self.unanswered_since = None;
        } else if pause || self.unanswered_since.is_none() {
            self.unanswered_since = Some(now);
        }
    }

    /// Whether announcements have kept arriving without gossip (see [`GOSSIP_SILENT_AFTER`]).
    pub fn gossip_silent(&self, now: Instant) -> bool {
        self.unanswered_since
            .is_some_and(|at| now.saturating_duration_since(at) >= GOSSIP_SILENT_AFTER)
    }

    /// When a transaction that becomes wanted at `now` is first looked at.
    pub fn quiet_deadline(&self, now: Instant) -> Instant {
        if self.gossip_silent(now) {
            return now;
        }
        now + self.quiet_delay
    }

    /// When it is fetched even while busy.
    pub fn busy_deadline(&self, now: Instant) -> Instant {
        if self.gossip_silent(now) {
            return now;
        }
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
        if self.gossip_silent(now) {
            return true;
        }
        let (_, this, last) = self.rolled(now);
        this.0 + last.0 < self.quiet_max_brought && this.1 + last.1 < self.quiet_max_missing
    }
}

/// Whether this node publishes the transactions it accepts on gossip, from how many it
/// accepted over the current and the previous bucket (a quarter of a second each). While few
/// arrive, gossip is the fastest path (a transaction reaches every mempool of the 20-host
/// testnet in ~10 ms, p99 ~150 ms at 50 tx/s; announcements wait for the announce interval at
/// every hop). Under load the same copies cost every node twice (each transaction reached
/// every node by gossip after its fetch) and gossip falls behind the announcements anyway, so
/// above the limit only announcements carry them. The buckets are short so that a node stops
/// gossiping within a fraction of a second of a burst's start. It starts again only below
/// half the limit: a rate near the limit would otherwise switch back and forth, and each
/// switch leaves receivers waiting for gossip that does not come (100 tx/s, at the limit
/// without this: p50 230 ms, worse than either mode). Pure: the clock is passed in.
#[derive(Debug)]
pub struct GossipLoad {
    /// Start of the current bucket, then the accepted count in it and in the one before.
    window: (Instant, usize, usize),
    max: usize,
    on: bool,
}

/// One bucket of [`GossipLoad`].
pub const GOSSIP_LOAD_BUCKET: Duration = Duration::from_millis(250);

impl GossipLoad {
    /// Gossip while fewer than `max` were accepted over this bucket and the last.
    pub fn new(max: usize, now: Instant) -> Self {
        Self {
            window: (now, 0, 0),
            max,
            on: true,
        }
    }

    /// The window as of `now`: (start, this bucket, the one before).
    fn rolled(&self, now: Instant) -> (Instant, usize, usize) {
        let (start, this, _) = self.window;
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= 2 * GOSSIP_LOAD_BUCKET {
            (now, 0, 0)
        } else if elapsed >= GOSSIP_LOAD_BUCKET {
            (now, 0, this)
        } else {
            self.window
        }
    }

    /// `n` more transactions were accepted at `now`. Returns whether to publish on gossip.
    pub fn accepted(&mut self, now: Instant, n: usize) -> bool {
        self.window = self.rolled(now);
        self.window.1 += n;
        let recent = self.window.1 + self.window.2;
        if self.on && recent >= self.max {
            self.on = false;
        } else if !self.on && recent < self.max / 2 {
            self.on = true;
        }
        self.on
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUSY: Duration = Duration::from_millis(500);
    const QUIET: Duration = Duration::from_millis(100);

    /// A pacer that has just seen a gossiped transaction.
    fn pacer(t0: Instant) -> FetchPacer {
        let mut p = FetchPacer::new(BUSY, QUIET, (20, 100), t0);
        p.announced(t0, 1);
        p
    }

    #[test]
    fn gossip_while_few_are_accepted() {
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let mut g = GossipLoad::new(100, t0);
        assert!(g.accepted(t0, 60));
        assert!(g.accepted(t0 + ms(200), 39), "99 over the window");
        // The next bucket: the last one's 99 still count.
        assert!(!g.accepted(t0 + ms(300), 1), "100 over two buckets");
        assert!(!g.accepted(t0 + ms(540), 0));
        // Back on only below half the limit: 49 over two buckets, not 50.
        assert!(!g.accepted(t0 + ms(560), 49), "1 + 49 = 50");
        assert!(g.accepted(t0 + ms(810), 0), "49 left");
        // Near the limit it stays on ...
        assert!(g.accepted(t0 + ms(1_100), 99));
        // ... and once off, stays off at rates between half the limit and the limit.
        assert!(!g.accepted(t0 + ms(1_200), 1));
        for i in 0..8u64 {
            assert!(
                !g.accepted(t0 + ms(1_400 + 250 * i), 30),
                "60 over two buckets"
            );
        }
        assert!(g.accepted(t0 + Duration::from_secs(10), 0));
    }

    #[test]
    fn without_gossip_announced_transactions_are_fetched_at_once() {
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let mut p = FetchPacer::new(BUSY, QUIET, (20, 100), t0);
        // Announcements start after a quiet spell: gossip gets its delay at first.
        p.announced(t0, 0);
        assert!(!p.gossip_silent(t0));
        assert_eq!(p.quiet_deadline(t0), t0 + QUIET);
        // They keep coming and gossip brings nothing: silent, fetched at once.
        let t1 = t0 + ms(300);
        p.announced(t1, 0);
        let t2 = t0 + GOSSIP_SILENT_AFTER;
        p.announced(t2, 0);
        assert!(p.gossip_silent(t2));
        assert_eq!(p.quiet_deadline(t2), t2);
        assert_eq!(p.busy_deadline(t2), t2);
        // Very many missing would mean "busy" if gossip were carrying them: it is not.
        for _ in 0..1_000 {
            assert!(p.looked_at(t2, false));
        }
        // A gossiped transaction arrives: the delays apply again ...
        let t3 = t2 + ms(10);
        p.announced(t3, 1);
        assert!(!p.gossip_silent(t3));
        assert_eq!(p.quiet_deadline(t3), t3 + QUIET);
        assert_eq!(p.busy_deadline(t3), t3 + BUSY);
        // ... until announcements have again come for the whole period without gossip.
        p.announced(t3 + ms(100), 1);
        assert!(!p.gossip_silent(t3 + ms(100) + GOSSIP_SILENT_AFTER - ms(1)));
        assert!(p.gossip_silent(t3 + ms(100) + GOSSIP_SILENT_AFTER));
        // A pause in the announcements starts the count again.
        let t4 = t3 + ms(100) + GOSSIP_SILENT_AFTER * 4;
        p.announced(t4, 1);
        assert!(
            !p.gossip_silent(t4),
            "the first after a pause may come by gossip"
        );
        assert!(p.gossip_silent(t4 + GOSSIP_SILENT_AFTER));
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
        p.announced(t1, 2);
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
        // Gossip keeps bringing transactions throughout.
        let t1 = t0 + Duration::from_millis(1_500);
        p.announced(t1, 2);
        assert!(!p.quiet(t1), "last second still counts");
        let t2 = t0 + Duration::from_secs(10);
        p.announced(t2, 3);
        assert!(p.quiet(t2), "long gone");
        // Rolled by a look 1.5 s on: the old second is now "last", then dropped a second later.
        let mut p = pacer(t0);
        for _ in 0..20 {
            p.looked_at(t0, true);
        }
        p.announced(t1, 2);
        assert!(!p.looked_at(t1, false));
        let t3 = t0 + Duration::from_millis(2_600);
        p.announced(t3, 3);
        assert!(p.quiet(t3));
    }

    #[test]
    fn deadlines_and_the_cap() {
        let t0 = Instant::now();
        let p = pacer(t0);
        assert_eq!(p.quiet_deadline(t0), t0 + QUIET);
        assert_eq!(p.busy_deadline(t0), t0 + BUSY);
        let mut capped = FetchPacer::new(QUIET, BUSY, (20, 100), t0);
        capped.announced(t0, 1);
        assert_eq!(capped.quiet_deadline(t0), t0 + QUIET);
        assert_eq!(capped.busy_deadline(t0), t0 + QUIET);
    }
}
