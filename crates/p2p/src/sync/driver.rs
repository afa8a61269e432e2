//! The headers-first download driver.

use super::*;

type Pending = Pin<Box<dyn Future<Output = Outcome> + Send>>;

enum Outcome {
    Status(PeerId, Result<SyncResponse, P2pError>),
    Headers(PeerId, Result<SyncResponse, P2pError>),
    Blocks(PeerId, Vec<BlockHash>, Result<SyncResponse, P2pError>),
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
    stalls: u32,
}

enum Slot {
    Pending { attempts: u32 },
    InFlight { peer: PeerId, attempts: u32 },
    Received { peer: PeerId, block: Box<Block> },
}

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
    rate: u32,
    in_flight_per_peer: usize,
    window: usize,
    max_stalls: u32,
    status_interval: Duration,
    last_status_round: Instant,
    progress: (Instant, u64),
}

impl<C: ChainAccess> SyncDriver<C> {
    pub(crate) fn new(
        chain: Arc<C>,
        handle: NetworkHandle,
        config: &NetworkConfig,
        rx: mpsc::Receiver<SyncInput>,
    ) -> Self {
        Self {
            chain,
            handle,
            rx,
            peers: HashMap::new(),
            queue: VecDeque::new(),
            slots: HashMap::new(),
            requests: FuturesUnordered::new(),
            headers_from: None,
            blocks_per_request: config.blocks_per_request,
            rate: config.sync_requests_per_second,
            in_flight_per_peer: config.requests_in_flight_per_peer,
            window: config.block_window,
            max_stalls: config.max_stalls,
            status_interval: config.status_interval,
            last_status_round: Instant::now(),
            progress: (Instant::now(), 0),
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
                _ = tick.tick() => self.on_tick(),
            }
            self.deliver().await;
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
                    },
                );
                self.ask_status(peer);
            }
            SyncInput::PeerDisconnected(peer) => self.forget(peer),
            SyncInput::PeerStatus(peer, status) => self.on_status(peer, status),
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
            if let Slot::InFlight { peer: p, attempts } = slot
                && *p == peer
            {
                *slot = Slot::Pending {
                    attempts: *attempts + 1,
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

    fn on_status(&mut self, peer: PeerId, status: Status) {
        let ours = self.chain.status();
        if let Some(p) = self.peers.get_mut(&peer) {
            if status.total_work > ours.total_work {
                p.needs_headers = true;
            }
            p.status = Some(status);
        }
    }

    fn on_tick(&mut self) {
        if self.last_status_round.elapsed() >= self.status_interval {
            self.last_status_round = Instant::now();
            let peers: Vec<PeerId> = self.peers.keys().copied().collect();
            for peer in peers {
                self.ask_status(peer);
            }
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
                    .filter_map(|p| p.status.map(|s| s.best_height))
                    .max()
                    .unwrap_or(0)
                    .saturating_sub(status.best_height);
                let eta = if rate > 0.0 {
                    behind as f64 / rate
                } else {
                    0.0
                };
                info!(
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

    fn failed(&mut self, peer: PeerId, error: &P2pError) {
        match error {
            P2pError::UnsupportedProtocol { .. } => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.speaks_sync = false;
                    p.needs_headers = false;
                }
            }
            P2pError::Request { reason, .. } if reason == "timeout" => {
                let stalled = self.peers.get_mut(&peer).is_some_and(|p| {
                    p.stalls += 1;
                    p.stalls >= self.max_stalls
                });
                if stalled {
                    info!(%peer, "dropping stalled sync peer");
                    self.forget(peer);
                    let handle = self.handle.clone();
                    tokio::spawn(async move {
                        let _ = handle.disconnect(peer).await;
                    });
                }
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
                match result {
                    Ok(SyncResponse::Headers(headers)) => self.on_headers(peer, headers).await,
                    Ok(SyncResponse::Error(_)) => {
                        if let Some(p) = self.peers.get_mut(&peer) {
                            p.needs_headers = false;
                        }
                    }
                    Ok(_) => self.misbehaved(peer, "wrong response to GetHeaders"),
                    Err(e) => {
                        if let Some(p) = self.peers.get_mut(&peer) {
                            p.needs_headers = false;
                        }
                        self.failed(peer, &e);
                    }
                }
            }
            Outcome::Blocks(peer, hashes, result) => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.in_flight = p.in_flight.saturating_sub(1);
                }
                let mut delivered = HashSet::new();
                match result {
                    Ok(SyncResponse::Blocks(blocks)) => {
                        if blocks.len() > hashes.len() {
                            self.misbehaved(peer, "more blocks than asked");
                        } else {
                            if let Some(p) = self.peers.get_mut(&peer) {
                                p.stalls = 0;
                            }
                            for block in blocks {
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
                        }
                    }
                    Ok(SyncResponse::Error(_)) => {}
                    Ok(_) => self.misbehaved(peer, "wrong response to GetBlocks"),
                    Err(e) => self.failed(peer, &e),
                }
                // Whatever this peer did not deliver goes back to the pool.
                for hash in hashes {
                    if delivered.contains(&hash) {
                        continue;
                    }
                    if let Some(slot) = self.slots.get_mut(&hash)
                        && let Slot::InFlight { peer: p, attempts } = slot
                        && *p == peer
                    {
                        *slot = Slot::Pending {
                            attempts: *attempts + 1,
                        };
                    }
                }
            }
        }
    }

    async fn on_headers(&mut self, peer: PeerId, headers: Vec<BlockHeader>) {
        let n = headers.len();
        if n > MAX_HEADERS_PER_REQUEST as usize {
            self.misbehaved(peer, "too many headers");
            return;
        }
        if n > 0
            && let Err(reason) = self.chain.submit_headers(peer, headers).await
        {
            warn!(%peer, %reason, "peer sent invalid headers");
            Metrics::inc(&self.handle.metrics_ref().invalid_messages);
            self.misbehaved(peer, &format!("invalid headers: {reason}"));
            return;
        }
        debug!(%peer, n, "headers accepted");
        if let Some(p) = self.peers.get_mut(&peer) {
            p.needs_headers = n == MAX_HEADERS_PER_REQUEST as usize;
        }
    }

    /// Hands received blocks to the node, in order, while the front of the queue is here.
    async fn deliver(&mut self) {
        while let Some(hash) = self.queue.front().copied() {
            match self.slots.get(&hash) {
                Some(Slot::Received { .. }) => {}
                Some(_) => break,
                None => {
                    self.queue.pop_front();
                    continue;
                }
            }
            self.queue.pop_front();
            let Some(Slot::Received { peer, block }) = self.slots.remove(&hash) else {
                continue;
            };
            match self.chain.submit_block(peer, *block).await {
                Ok(()) => Metrics::inc(&self.handle.metrics_ref().synced_blocks),
                Err(reason) => {
                    warn!(%peer, %hash, %reason, "peer sent an invalid block");
                    Metrics::inc(&self.handle.metrics_ref().invalid_messages);
                    self.misbehaved(peer, &format!("invalid block: {reason}"));
                    self.reset_window();
                    return;
                }
            }
        }
    }

    /// Forgets the download window; it is rebuilt from `missing_blocks`.
    fn reset_window(&mut self) {
        self.queue.clear();
        self.slots.clear();
    }

    fn schedule(&mut self) {
        let ours = self.chain.status();
        // 1. Headers, one request at a time, from the peer with the most work.
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

        // 2. Refill the download window.
        if self.queue.len() < self.window / 2 {
            let give_up = self.slots.values().any(
                |s| matches!(s, Slot::Pending { attempts } if *attempts >= MAX_BLOCK_ATTEMPTS),
            );
            if give_up {
                debug!("blocks unavailable from every peer; rebuilding the download window");
                self.reset_window();
            }
            for hash in self.chain.missing_blocks(self.window) {
                if self.queue.len() >= self.window {
                    break;
                }
                if let std::collections::hash_map::Entry::Vacant(slot) = self.slots.entry(hash) {
                    slot.insert(Slot::Pending { attempts: 0 });
                    self.queue.push_back(hash);
                }
            }
        }

        // 3. Hand pending blocks to peers ahead of us, round robin.
        let mut pending = self
            .queue
            .iter()
            .filter(|h| matches!(self.slots.get(h), Some(Slot::Pending { .. })))
            .copied()
            .collect::<Vec<_>>()
            .into_iter()
            .peekable();
        if pending.peek().is_none() {
            return;
        }
        let mut eligible: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| {
                p.speaks_sync
                    && p.status.is_some_and(|s| s.best_height > ours.best_height)
                    && p.in_flight < self.in_flight_per_peer
            })
            .map(|(id, _)| *id)
            .collect();
        while !eligible.is_empty() && pending.peek().is_some() {
            eligible.retain(|id| {
                self.peers
                    .get(id)
                    .is_some_and(|p| p.in_flight < self.in_flight_per_peer)
            });
            for peer in eligible.clone() {
                let allowed = self
                    .peers
                    .get_mut(&peer)
                    .is_some_and(|p| p.rate.allow(rate, rate));
                if !allowed {
                    eligible.retain(|id| *id != peer);
                    continue;
                }
                let batch: Vec<BlockHash> =
                    pending.by_ref().take(self.blocks_per_request).collect();
                if batch.is_empty() {
                    break;
                }
                for h in &batch {
                    if let Some(slot) = self.slots.get_mut(h) {
                        let attempts = match slot {
                            Slot::Pending { attempts } => *attempts,
                            _ => 0,
                        };
                        *slot = Slot::InFlight { peer, attempts };
                    }
                }
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.in_flight += 1;
                }
                let handle = self.handle.clone();
                let request = SyncRequest::GetBlocks {
                    hashes: batch.clone(),
                };
                self.requests.push(Box::pin(async move {
                    Outcome::Blocks(peer, batch, handle.request(peer, &request).await)
                }));
            }
        }
    }
}
