//! The headers-first download driver.
//!
//! It trusts what it validated, not what peers claim: a peer is asked for a block only at or
//! below the height it has *proven* (headers it served that the node validated, or an
//! announced best block that is a validated header on our best header chain). An answer that
//! brings nothing (empty, short, `Error`, or a timeout) is a stall; the blocks go back to the
//! pool marked to be tried with another peer first, and nothing other peers have in flight is
//! touched. A peer that stalls `max_stalls` times in a row is disconnected.

use super::*;

type Pending = Pin<Box<dyn Future<Output = Outcome> + Send>>;
/// A batch handed to the chain: each block's peer, hash and result, in order, and the
/// download window's generation when it was handed over.
type Submit = Pin<Box<dyn Future<Output = Submitted> + Send>>;

struct Submitted {
    generation: u64,
    results: Vec<(PeerId, BlockHash, Result<(), Refusal>)>,
}

enum Outcome {
    Status(PeerId, Result<SyncResponse, P2pError>),
    Headers(PeerId, Result<SyncResponse, P2pError>),
    /// With the window's generation when asked (see [`SyncDriver::reset_window`]).
    Blocks(PeerId, Vec<BlockHash>, u64, Result<SyncResponse, P2pError>),
}

struct SyncPeer {
    /// Our own throttle, below the peer's inbound limit.
    rate: RateLimit,
    status: Option<Status>,
    /// `false` once the peer proved not to speak the sync protocol.
    speaks_sync: bool,
    status_in_flight: bool,
    needs_headers: bool,
    in_flight: usize,
    /// Answers in a row that brought nothing.
    stalls: u32,
    /// Highest height of our best header chain the peer has shown it has (see the module doc).
    proven_height: u64,
    /// When the peer last asked for our status (its request carries its own): our next ask
    /// skips it if that was within `status_interval`, so each pair exchanges one status per
    /// interval, not two.
    asked_us: Option<Instant>,
    /// When we next ask for its status: each peer on its own timer, phases spread at random
    /// over the interval, so the exchanges with 19 peers do not all land in the same second
    /// (on the 20-host testnet a synchronised round added ~15 kB to a host's block window).
    next_status: Instant,
}

enum Slot {
    /// Waiting for a peer; `avoid` is the last peer that failed to deliver it.
    Pending {
        height: u64,
        attempts: u32,
        avoid: Option<PeerId>,
    },
    InFlight {
        height: u64,
        peer: PeerId,
        attempts: u32,
    },
    Received {
        peer: PeerId,
        block: Box<Block>,
    },
}

/// Weight of the newest block in the running average of block sizes (requests are sized in
/// bytes from it).
const BLOCK_SIZE_AVERAGE_WEIGHT: f64 = 0.2;

/// The headers-first download driver (one task).
pub(crate) struct SyncDriver<C> {
    chain: Arc<C>,
    handle: NetworkHandle,
    rx: mpsc::Receiver<SyncInput>,
    peers: HashMap<PeerId, SyncPeer>,
    queue: VecDeque<BlockHash>,
    slots: HashMap<BlockHash, Slot>,
    requests: FuturesUnordered<Pending>,
    headers_from: Option<PeerId>,
    blocks_per_request: usize,
    request_bytes: usize,
    response_budget: usize,
    /// Running average of the encoded size of received blocks (`None` before the first).
    average_block_size: Option<f64>,
    rate: u32,
    in_flight_per_peer: usize,
    window: usize,
    /// Bytes of blocks the window may hold (see [`Self::window_blocks`]).
    window_bytes: usize,
    max_stalls: u32,
    status_interval: Duration,
    progress: (Instant, u64),
    /// Blocks whose compact form is being rebuilt by the relay task: not downloaded in full
    /// meanwhile (they come back from `missing_blocks` if the rebuild fails).
    blocks_in_flight: Arc<crate::relay::BlocksInFlight>,
    /// Batches handed to the chain and not answered yet, oldest first. At most
    /// [`MAX_SUBMITS_IN_FLIGHT`], so the chain has the next batch at hand when it finishes
    /// one, and the driver goes on downloading meanwhile (except while it hands the chain
    /// headers: that call waits its turn behind the batches). A batch reaches the chain when its
    /// future first runs, which `FuturesOrdered` does in the order they were pushed; were a
    /// later batch to arrive first, the chain would store its bodies (their headers are
    /// known) and connect them once their parents came: order costs speed, not validity (at
    /// worst, a block found invalid only when connected would go without its sender's ban).
    submits: futures::stream::FuturesOrdered<Submit>,
    /// Blocks in those batches: not stored yet, so still named by `missing_blocks`, but not
    /// to be downloaded again.
    submitting: HashSet<BlockHash>,
    /// Bumped when the window is reset after an invalid block. Answers to batches handed over
    /// before that punish nobody: their blocks mostly descend from the invalid one, whoever
    /// sent them (not when the invalid one was a body that did not match its valid header;
    /// a bad block of another peer in such a batch is refused but goes unpunished). Answers to
    /// block requests sent before it are not stalls.
    generation: u64,
}

impl<C: ChainAccess> SyncDriver<C> {
    pub(crate) fn new(
        chain: Arc<C>,
        handle: NetworkHandle,
        config: &NetworkConfig,
        rx: mpsc::Receiver<SyncInput>,
        blocks_in_flight: Arc<crate::relay::BlocksInFlight>,
    ) -> Self {
        Self {
            blocks_in_flight,
            chain,
            handle,
            rx,
            peers: HashMap::new(),
            queue: VecDeque::new(),
            slots: HashMap::new(),
            requests: FuturesUnordered::new(),
            headers_from: None,
            blocks_per_request: config.blocks_per_request,
            request_bytes: config.request_bytes,
            response_budget: config.max_sync_response_size,
            average_block_size: None,
            rate: config.sync_requests_per_second,
            in_flight_per_peer: config.requests_in_flight_per_peer,
            window: config.block_window,
            window_bytes: config.block_window_bytes,
            max_stalls: config.max_stalls,
            status_interval: config.status_interval,
            progress: (Instant::now(), 0),
            submits: futures::stream::FuturesOrdered::new(),
            submitting: HashSet::new(),
            generation: 0,
        }
    }

    pub(crate) async fn run(mut self) {
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                input = self.rx.recv() => match input {
                    Some(input) => self.on_input(input),
                    None => break,
                },
                Some(outcome) = self.requests.next(), if !self.requests.is_empty() => {
                    self.on_outcome(outcome).await;
                }
                Some(submitted) = self.submits.next(), if !self.submits.is_empty() => {
                    self.on_submitted(submitted);
                }
                _ = tick.tick() => self.on_tick(),
            }
            self.deliver();
            self.schedule();
        }
        debug!("sync driver stopped");
    }

    fn on_input(&mut self, input: SyncInput) {
        match input {
            SyncInput::PeerConnected(peer) => {
                self.peers.insert(
                    peer,
                    SyncPeer {
                        rate: RateLimit::full(self.rate),
                        status: None,
                        speaks_sync: true,
                        status_in_flight: false,
                        needs_headers: false,
                        in_flight: 0,
                        stalls: 0,
                        proven_height: 0,
                        asked_us: None,
                        next_status: Instant::now() + self.status_phase(&peer),
                    },
                );
                self.ask_status(peer);
            }
            SyncInput::PeerDisconnected(peer) => self.forget(peer),
            SyncInput::PeerStatus(peer, status) => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.asked_us = Some(Instant::now());
                }
                self.on_status(peer, status);
            }
            SyncInput::SyncWith(peer) => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.needs_headers = p.speaks_sync;
                }
                self.ask_status(peer);
            }
        }
    }

    fn forget(&mut self, peer: PeerId) {
        self.peers.remove(&peer);
        if self.headers_from == Some(peer) {
            self.headers_from = None;
        }
        for slot in self.slots.values_mut() {
            if let Slot::InFlight {
                height,
                peer: p,
                attempts,
            } = slot
                && *p == peer
            {
                *slot = Slot::Pending {
                    height: *height,
                    attempts: *attempts + 1,
                    avoid: Some(peer),
                };
            }
        }
    }

    fn ask_status(&mut self, peer: PeerId) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if !p.speaks_sync || p.status_in_flight {
            return;
        }
        p.status_in_flight = true;
        let request = SyncRequest::Status(self.chain.status());
        let handle = self.handle.clone();
        self.requests.push(Box::pin(async move {
            Outcome::Status(peer, handle.request(peer, &request).await)
        }));
    }

    /// Height of `hash` if it is a validated header on our best header chain.
    fn proven(&self, hash: &BlockHash) -> Option<u64> {
        self.chain
            .header_position(hash)
            .and_then(|(height, on_best)| on_best.then_some(height))
    }

    fn on_status(&mut self, peer: PeerId, status: Status) {
        let ours = self.chain.status();
        let proven = self.proven(&status.best_hash);
        if let Some(p) = self.peers.get_mut(&peer) {
            if status.total_work > ours.total_work {
                p.needs_headers = true;
            }
            if let Some(h) = proven {
                p.proven_height = p.proven_height.max(h);
            }
            p.status = Some(status);
        }
    }

    /// A random point in the status interval (first ask after the handshake's).
    fn status_phase(&self, peer: &PeerId) -> Duration {
        let r =
            std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), peer);
        self.status_interval.mul_f64((r % 1_000) as f64 / 1_000.0)
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        let interval = self.status_interval;
        let mut due = Vec::new();
        for (id, p) in &mut self.peers {
            if p.next_status <= now {
                p.next_status = now + interval;
                if p.asked_us.is_none_or(|t| now.duration_since(t) >= interval) {
                    due.push(*id);
                }
            }
        }
        for peer in due {
            self.ask_status(peer);
        }
        let (since, count) = self.progress;
        if since.elapsed() >= PROGRESS_LOG_INTERVAL {
            let now = self.handle.metrics().synced_blocks;
            if now > count {
                let rate = (now - count) as f64 / since.elapsed().as_secs_f64();
                let status = self.chain.status();
                let behind = self
                    .peers
                    .values()
                    .map(|p| p.proven_height)
                    .max()
                    .unwrap_or(0)
                    .saturating_sub(status.best_height);
                let eta = if rate > 0.0 {
                    behind as f64 / rate
                } else {
                    0.0
                };
                debug!(
                    height = status.best_height,
                    blocks_per_sec = format!("{rate:.0}"),
                    eta_secs = format!("{eta:.0}"),
                    "syncing"
                );
            }
            self.progress = (Instant::now(), now);
        }
    }

    /// Handles a protocol failure: a peer that answered with the wrong kind of response.
    fn misbehaved(&mut self, peer: PeerId, reason: &str) {
        let handle = self.handle.clone();
        let reason = reason.to_string();
        self.forget(peer);
        tokio::spawn(async move {
            let _ = handle.ban(peer, reason).await;
        });
    }

    /// Counts an answer that brought nothing; at `max_stalls` in a row the peer is dropped.
    fn stalled(&mut self, peer: PeerId, why: &str) {
        let dropped = self.peers.get_mut(&peer).is_some_and(|p| {
            p.stalls += 1;
            p.stalls >= self.max_stalls
        });
        debug!(%peer, why, "sync peer stalled");
        if dropped {
            info!(%peer, why, "dropping stalled sync peer");
            Metrics::inc(&self.handle.metrics_ref().stalled_peers);
            self.forget(peer);
            let handle = self.handle.clone();
            tokio::spawn(async move {
                let _ = handle.disconnect(peer).await;
            });
        }
    }

    fn failed(&mut self, peer: PeerId, error: &P2pError) {
        match error {
            P2pError::UnsupportedProtocol { .. } => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.speaks_sync = false;
                    p.needs_headers = false;
                }
            }
            P2pError::Request { reason, .. } if reason == "timeout" => {
                self.stalled(peer, "request timed out");
            }
            P2pError::ServiceStopped => {}
            _ => debug!(%peer, %error, "sync request failed"),
        }
    }

    async fn on_outcome(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Status(peer, result) => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.status_in_flight = false;
                }
                match result {
                    Ok(SyncResponse::Status(s)) => self.on_status(peer, s),
                    Ok(SyncResponse::Error(_)) => {}
                    Ok(_) => self.misbehaved(peer, "wrong response to Status"),
                    Err(e) => self.failed(peer, &e),
                }
            }
            Outcome::Headers(peer, result) => {
                self.headers_from = None;
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.needs_headers = false;
                }
                match result {
                    Ok(SyncResponse::Headers(headers)) => self.on_headers(peer, headers).await,
                    Ok(SyncResponse::Error(_)) => {
                        self.stalled(peer, "answered GetHeaders with Error")
                    }
                    Ok(_) => self.misbehaved(peer, "wrong response to GetHeaders"),
                    Err(e) => self.failed(peer, &e),
                }
            }
            Outcome::Blocks(peer, hashes, generation, result) => {
                self.on_blocks(peer, hashes, generation, result)
            }
        }
    }

    fn on_blocks(
        &mut self,
        peer: PeerId,
        hashes: Vec<BlockHash>,
        generation: u64,
        result: Result<SyncResponse, P2pError>,
    ) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.in_flight = p.in_flight.saturating_sub(1);
        }
        if generation != self.generation {
            // Asked before the window was reset: its slots are gone, so what came back matches
            // none of them. Not a stall: the peer answered what it was asked, and counting it
            // would drop honest peers after every invalid block. A failed request or a wrong
            // answer still counts.
            match result {
                Ok(SyncResponse::Blocks(blocks)) if blocks.len() > hashes.len() => {
                    self.misbehaved(peer, "more blocks than asked");
                }
                Ok(SyncResponse::Blocks(_) | SyncResponse::Error(_)) => {}
                Ok(_) => self.misbehaved(peer, "wrong response to GetBlocks"),
                Err(e) => self.failed(peer, &e),
            }
            return;
        }
        let mut delivered = HashSet::new();
        let mut failed = false;
        match result {
            Ok(SyncResponse::Blocks(blocks)) if blocks.len() > hashes.len() => {
                self.misbehaved(peer, "more blocks than asked");
                failed = true;
            }
            Ok(SyncResponse::Blocks(blocks)) => {
                let mut bytes = 0;
                for block in blocks {
                    let size = encoded_len(&block);
                    bytes += size;
                    self.average_block_size = Some(match self.average_block_size {
                        None => size as f64,
                        Some(avg) => {
                            avg * (1.0 - BLOCK_SIZE_AVERAGE_WEIGHT)
                                + size as f64 * BLOCK_SIZE_AVERAGE_WEIGHT
                        }
                    });
                    let hash = block.hash();
                    if let Some(slot) = self.slots.get_mut(&hash)
                        && matches!(slot, Slot::InFlight { peer: p, .. } if *p == peer)
                    {
                        *slot = Slot::Received {
                            peer,
                            block: Box::new(block),
                        };
                        delivered.insert(hash);
                    }
                }
                // A server stops at its byte budget: a prefix that filled half of it is honest.
                let cut_by_budget = !delivered.is_empty() && bytes >= self.response_budget / 2;
                if delivered.len() == hashes.len() || cut_by_budget {
                    if let Some(p) = self.peers.get_mut(&peer) {
                        p.stalls = 0;
                    }
                } else {
                    failed = true;
                    let why = format!(
                        "answered GetBlocks with {} of {} blocks",
                        delivered.len(),
                        hashes.len()
                    );
                    self.stalled(peer, &why);
                }
            }
            Ok(SyncResponse::Error(_)) => {
                failed = true;
                self.stalled(peer, "answered GetBlocks with Error");
            }
            Ok(_) => {
                failed = true;
                self.misbehaved(peer, "wrong response to GetBlocks");
            }
            Err(e) => {
                failed = true;
                self.failed(peer, &e);
            }
        }
        // Whatever this peer did not deliver goes back to the pool, to another peer first.
        // Other peers' slots are untouched.
        for hash in hashes {
            if delivered.contains(&hash) {
                continue;
            }
            let Some(slot) = self.slots.get_mut(&hash) else {
                continue;
            };
            let Slot::InFlight {
                height,
                peer: p,
                attempts,
            } = *slot
            else {
                continue;
            };
            if p != peer {
                continue;
            }
            let attempts = if failed { attempts + 1 } else { attempts };
            if attempts >= MAX_BLOCK_ATTEMPTS {
                // Forget this block only; it comes back from `missing_blocks` if still missing.
                self.slots.remove(&hash);
                self.queue.retain(|h| *h != hash);
                continue;
            }
            *slot = Slot::Pending {
                height,
                attempts,
                avoid: failed.then_some(peer),
            };
        }
    }

    async fn on_headers(&mut self, peer: PeerId, headers: Vec<BlockHeader>) {
        let n = headers.len();
        if n > MAX_HEADERS_PER_REQUEST as usize {
            self.misbehaved(peer, "too many headers");
            return;
        }
        let Some(last) = headers.last().map(BlockHeader::hash) else {
            // Nothing after our locator. Fine if we know the peer's best block already; a
            // peer claiming more work on a chain we do not know and sending nothing stalls.
            let claim = self.peers.get(&peer).and_then(|p| p.status);
            let ours = self.chain.status();
            if let Some(s) = claim
                && s.total_work > ours.total_work
                && self.chain.header_position(&s.best_hash).is_none()
            {
                self.stalled(peer, "claims more work but sent no headers");
            }
            return;
        };
        match self.chain.submit_headers(peer, headers).await {
            Ok(()) => {}
            Err(Refusal::Invalid(reason)) => {
                warn!(%peer, %reason, "peer sent invalid headers");
                Metrics::inc(&self.handle.metrics_ref().invalid_messages);
                self.misbehaved(peer, &format!("invalid headers: {reason}"));
                return;
            }
            Err(Refusal::Later(reason)) => {
                // Not the peer's fault (our clock is behind, or a limit): asked again at the
                // next status round if the peer is still ahead.
                info!(%peer, %reason, "headers not accepted now; retrying later");
                return;
            }
        }
        debug!(%peer, n, "headers accepted");
        let proven = self.proven(&last);
        if let Some(p) = self.peers.get_mut(&peer) {
            p.stalls = 0;
            if let Some(h) = proven {
                p.proven_height = p.proven_height.max(h);
            }
            p.needs_headers = n == MAX_HEADERS_PER_REQUEST as usize;
        }
        // Other peers whose announced best block these headers made known can serve too.
        let announced: Vec<(PeerId, BlockHash)> = self
            .peers
            .iter()
            .filter_map(|(id, p)| p.status.map(|s| (*id, s.best_hash)))
            .collect();
        for (id, best) in announced {
            if let Some(h) = self.proven(&best)
                && let Some(p) = self.peers.get_mut(&id)
            {
                p.proven_height = p.proven_height.max(h);
            }
        }
    }

    /// Hands received blocks to the node, in order, while the front of the queue is here: up
    /// to [`MAX_SUBMIT_BATCH_BLOCKS`] in one call, so the chain can pipeline their connects,
    /// and up to [`MAX_SUBMITS_IN_FLIGHT`] calls at once. It does not wait for the answers
    /// ([`SyncDriver::on_submitted`]): downloads go on while the chain connects.
    fn deliver(&mut self) {
        while self.submits.len() < MAX_SUBMITS_IN_FLIGHT {
            let mut ready = Vec::new();
            let mut sent: Vec<(PeerId, BlockHash)> = Vec::new();
            while ready.len() < MAX_SUBMIT_BATCH_BLOCKS
                && let Some(hash) = self.queue.front().copied()
            {
                match self.slots.get(&hash) {
                    Some(Slot::Received { .. }) => {}
                    Some(_) => break,
                    None => {
                        self.queue.pop_front();
                        continue;
                    }
                }
                self.queue.pop_front();
                if let Some(Slot::Received { peer, block }) = self.slots.remove(&hash) {
                    ready.push((peer, *block));
                    sent.push((peer, hash));
                }
            }
            if ready.is_empty() {
                return;
            }
            self.submitting.extend(sent.iter().map(|(_, hash)| *hash));
            let chain = Arc::clone(&self.chain);
            let generation = self.generation;
            self.submits.push_back(Box::pin(async move {
                let results = chain.submit_blocks(ready).await;
                // One result per block is the contract; a block without one is treated as
                // refused for now, so it leaves `submitting` and is asked for again.
                let results = results.into_iter().map(Some).chain(std::iter::repeat(None));
                Submitted {
                    generation,
                    results: sent
                        .into_iter()
                        .zip(results)
                        .map(|((peer, hash), result)| {
                            let result = result.unwrap_or_else(|| {
                                Err(Refusal::Later("the chain gave no answer for it".into()))
                            });
                            (peer, hash, result)
                        })
                        .collect(),
                }
            }));
        }
    }

    /// The chain's answer to a batch: a block it refused as invalid gets its peer banned and
    /// the window reset (everything after it descends from it); one refused for now comes back
    /// from `missing_blocks`.
    fn on_submitted(&mut self, submitted: Submitted) {
        for (peer, hash, result) in submitted.results {
            self.submitting.remove(&hash);
            // Reset by an earlier answer, or by an earlier block of this one.
            let current = submitted.generation == self.generation;
            match result {
                Ok(()) => Metrics::inc(&self.handle.metrics_ref().synced_blocks),
                Err(Refusal::Later(reason)) => {
                    debug!(%peer, %hash, %reason, "synced block not accepted now");
                }
                Err(Refusal::Invalid(reason)) if current => {
                    warn!(%peer, %hash, %reason, "peer sent an invalid block");
                    Metrics::inc(&self.handle.metrics_ref().invalid_messages);
                    self.misbehaved(peer, &format!("invalid block: {reason}"));
                    self.reset_window();
                }
                Err(Refusal::Invalid(reason)) => {
                    debug!(%peer, %hash, %reason, "block after an invalid one refused");
                }
            }
        }
    }

    /// Forgets the download window; it is rebuilt from `missing_blocks`. Batches already
    /// handed to the chain are answered later, under the old generation.
    fn reset_window(&mut self) {
        self.queue.clear();
        self.slots.clear();
        self.generation += 1;
    }

    /// Blocks the download window holds: `window`, or fewer when that many blocks of the
    /// average size seen so far would pass `window_bytes` (at least one).
    fn window_blocks(&self) -> usize {
        match self.average_block_size {
            Some(avg) if avg >= 1.0 => {
                ((self.window_bytes as f64 / avg) as usize).clamp(1, self.window)
            }
            _ => self.window,
        }
    }

    /// Blocks to ask one peer for at once: as many as fit in `request_bytes` at the average
    /// block size seen so far, within `1..=blocks_per_request`.
    fn blocks_per_request(&self) -> usize {
        match self.average_block_size {
            Some(avg) if avg >= 1.0 => {
                ((self.request_bytes as f64 / avg) as usize).clamp(1, self.blocks_per_request)
            }
            _ => self.blocks_per_request,
        }
    }

    fn schedule(&mut self) {
        let ours = self.chain.status();
        // 1. Headers, one request at a time, from the peer claiming the most work.
        let rate = self.rate;
        if self.headers_from.is_none()
            && let Some((&peer, p)) = self
                .peers
                .iter_mut()
                .filter(|(_, p)| p.speaks_sync && p.needs_headers)
                .max_by_key(|(_, p)| p.status.map(|s| s.total_work))
            && p.rate.allow(rate, rate)
        {
            self.headers_from = Some(peer);
            let request = SyncRequest::GetHeaders {
                locator: self.chain.locator(),
                max: MAX_HEADERS_PER_REQUEST,
            };
            let handle = self.handle.clone();
            self.requests.push(Box::pin(async move {
                Outcome::Headers(peer, handle.request(peer, &request).await)
            }));
        }

        // 2. Refill the download window; pending blocks no longer missing leave it.
        let window = self.window_blocks();
        if self.queue.len() < window / 2 {
            let missing = self.chain.missing_blocks(window);
            let still: HashSet<&BlockHash> = missing.iter().collect();
            let slots = &mut self.slots;
            self.queue.retain(|h| match slots.get(h) {
                Some(Slot::Pending { .. }) if !still.contains(h) => {
                    slots.remove(h);
                    false
                }
                Some(_) => true,
                None => false,
            });
            for hash in &missing {
                if self.queue.len() >= window {
                    break;
                }
                if self.slots.contains_key(hash)
                    || self.submitting.contains(hash)
                    || self.blocks_in_flight.contains(hash)
                {
                    continue;
                }
                let Some((height, _)) = self.chain.header_position(hash) else {
                    continue;
                };
                self.slots.insert(
                    *hash,
                    Slot::Pending {
                        height,
                        attempts: 0,
                        avoid: None,
                    },
                );
                self.queue.push_back(*hash);
            }
        }

        // 3. Hand pending blocks to peers that proved they have them, round robin; only
        // those within the window's front (the queue may be longer than the window once the
        // average block size says fewer blocks fit).
        let mut pending: Vec<(BlockHash, u64, Option<PeerId>)> = self
            .queue
            .iter()
            .take(window)
            .filter_map(|h| match self.slots.get(h) {
                Some(Slot::Pending { height, avoid, .. }) => Some((*h, *height, *avoid)),
                _ => None,
            })
            .collect();
        if pending.is_empty() {
            return;
        }
        let mut eligible: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| {
                p.speaks_sync
                    && p.proven_height > ours.best_height
                    && p.in_flight < self.in_flight_per_peer
            })
            .map(|(id, _)| *id)
            .collect();
        // A block one peer failed goes to another peer first, if another can serve it.
        let proven: Vec<(PeerId, u64)> = eligible
            .iter()
            .filter_map(|id| self.peers.get(id).map(|p| (*id, p.proven_height)))
            .collect();
        let per_request = self.blocks_per_request();
        while !eligible.is_empty() && !pending.is_empty() {
            let mut progress = false;
            for peer in eligible.clone() {
                let Some(p) = self.peers.get_mut(&peer) else {
                    continue;
                };
                if p.in_flight >= self.in_flight_per_peer || !p.rate.allow(rate, rate) {
                    eligible.retain(|id| *id != peer);
                    continue;
                }
                let peer_height = p.proven_height;
                let mut batch = Vec::new();
                pending.retain(|(hash, height, avoid)| {
                    let someone_else = || {
                        proven
                            .iter()
                            .any(|(q, qh)| *q != peer && Some(*q) != *avoid && *qh >= *height)
                    };
                    let take = batch.len() < per_request
                        && *height <= peer_height
                        && (*avoid != Some(peer) || !someone_else());
                    if take {
                        batch.push((*hash, *height));
                    }
                    !take
                });
                if batch.is_empty() {
                    eligible.retain(|id| *id != peer);
                    continue;
                }
                progress = true;
                p.in_flight += 1;
                for (h, height) in &batch {
                    if let Some(slot) = self.slots.get_mut(h) {
                        let attempts = match slot {
                            Slot::Pending { attempts, .. } => *attempts,
                            _ => 0,
                        };
                        *slot = Slot::InFlight {
                            height: *height,
                            peer,
                            attempts,
                        };
                    }
                }
                let hashes: Vec<BlockHash> = batch.into_iter().map(|(h, _)| h).collect();
                let handle = self.handle.clone();
                let request = SyncRequest::GetBlocks {
                    hashes: hashes.clone(),
                };
                let generation = self.generation;
                self.requests.push(Box::pin(async move {
                    let result = handle.request(peer, &request).await;
                    Outcome::Blocks(peer, hashes, generation, result)
                }));
            }
            if !progress {
                break;
            }
        }
    }
}
