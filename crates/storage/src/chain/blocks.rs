//! Blocks: storing bodies, orphans, availability, fork choice and invalid branches.

use rayon::prelude::*;

use super::*;

/// A stored block body with its txids, on its way to being connected.
pub(super) struct Body {
    pub(super) block: Arc<Block>,
    pub(super) txids: Arc<[Txid]>,
}

/// The rules a body is checked against before it is stored: those that need only the block
/// (its header's height for the coinbase is checked after).
pub(super) enum ContextFree {
    /// The transactions are not the ones the header commits to; nothing else was checked.
    MerkleMismatch,
    /// The block's txids, or the first content rule it breaks.
    Contents(Result<Arc<[Txid]>, cairn_consensus::ConsensusError>),
}

impl ContextFree {
    fn check(block: &Block, params: &ChainParams) -> ContextFree {
        if block.compute_merkle_root() != block.header.merkle_root {
            return ContextFree::MerkleMismatch;
        }
        ContextFree::Contents(check_block_contents(block, block.hash(), params).map(Arc::from))
    }
}

impl ChainState {
    /// Accepts a block that was asked for (sync, miner, RPC): see
    /// [`ChainState::accept_block_from`] with [`BlockSource::Requested`].
    pub fn accept_block(&mut self, block: Block, now: u64) -> StorageResult<AcceptOutcome> {
        self.accept_block_from(block, now, BlockSource::Requested)
    }

    /// Accepts a block: checks everything that needs no UTXO context, stores it (headers and
    /// bodies may arrive in any order), holds it as an orphan if its parent is unknown, and moves
    /// the main chain to the valid chain with the most work, connecting and disconnecting blocks
    /// as needed. An [`BlockSource::Unrequested`] block that cannot become the tip at once is not
    /// stored ([`AcceptStatus::NotStored`]).
    ///
    /// Errors: a known-invalid block ([`StorageError::KnownInvalid`], with the cached reason), a
    /// header or body breaking a rule ([`StorageError::Consensus`]; a body rule failing on a
    /// known header marks it invalid), a body that does not match its header
    /// ([`StorageError::MutatedBlock`]: not cached, the header stays valid), a header not kept
    /// ([`StorageError::NotKept`]), storage failures. A block found invalid while connecting is
    /// `Ok` with [`AcceptStatus::Invalid`], because the chain may have changed on the way.
    pub fn accept_block_from(
        &mut self,
        block: Block,
        now: u64,
        source: BlockSource,
    ) -> StorageResult<AcceptOutcome> {
        let BatchOutcome {
            mut statuses,
            events,
        } = self.accept_blocks_from(vec![block], now, source)?;
        let status = statuses
            .pop()
            .unwrap_or_else(|| unreachable!("one status per block"))?;
        Ok(AcceptOutcome { status, events })
    }

    /// [`ChainState::accept_block_from`] for several blocks at once (a sync delivers them in
    /// chain order): every block is checked and stored first, then the main chain moves once,
    /// so the blocks connect through [`ChainState::connect_path`]'s pipeline instead of one at
    /// a time. One status per block, in order; a block found invalid while connecting is
    /// [`AcceptStatus::Invalid`], as are the blocks of the batch that descend from it.
    pub fn accept_blocks_from(
        &mut self,
        blocks: Vec<Block>,
        now: u64,
        source: BlockSource,
    ) -> StorageResult<BatchOutcome> {
        let mut events = Vec::new();
        let mut bodies = HashMap::new();
        let mut stored = Vec::with_capacity(blocks.len());
        // The checks that need nothing but the block (hashing every transaction) run for the
        // whole batch on every core; storing stays in order.
        let started = std::time::Instant::now();
        let checked: Vec<Option<ContextFree>> = if blocks.len() > 1 {
            let params = &self.params;
            blocks
                .par_iter()
                .map(|b| Some(ContextFree::check(b, params)))
                .collect()
        } else {
            blocks.iter().map(|_| None).collect()
        };
        self.indexes
            .timings
            .add(crate::timings::Stage::Store, started.elapsed());
        for (block, pre) in blocks.into_iter().zip(checked) {
            let hash = block.hash();
            let status = self.store_block(hash, block, pre, now, source, &mut events, &mut bodies);
            if matches!(status, Ok(AcceptStatus::New)) {
                // Orphans waiting for this block (and for their own children, recursively),
                // each judged as it arrived: a gossiped one is kept only if it can become the
                // tip.
                let mut queue = vec![hash];
                while let Some(parent) = queue.pop() {
                    for (child, child_source) in self.orphans.take_children(&parent) {
                        let child_hash = child.hash();
                        match self.store_block(
                            child_hash,
                            child,
                            None,
                            now,
                            child_source,
                            &mut events,
                            &mut bodies,
                        ) {
                            Ok(AcceptStatus::New) => queue.push(child_hash),
                            Ok(_) => {}
                            Err(e) => {
                                tracing::debug!(hash = %child_hash, error = %e, "orphan rejected")
                            }
                        }
                    }
                }
            }
            stored.push((hash, status));
        }
        if !bodies.is_empty() {
            self.activate_best_chain(&mut events, &bodies)?;
        }
        let statuses = stored
            .into_iter()
            .map(|(hash, status)| match status {
                Ok(AcceptStatus::New) => Ok(match self.index.get(&hash) {
                    Some(e) if e.status.is_invalid() => AcceptStatus::Invalid {
                        reason: e.invalid_reason.clone(),
                    },
                    _ => AcceptStatus::New,
                }),
                other => other,
            })
            .collect();
        let tip = self.tip();
        if events.iter().any(|e| {
            matches!(
                e,
                ChainEvent::BlockConnected { .. } | ChainEvent::BlockDisconnected { .. }
            )
        }) {
            events.push(ChainEvent::TipChanged {
                hash: tip.hash,
                height: tip.height,
            });
        }
        Ok(BatchOutcome { statuses, events })
    }

    /// Checks everything about `block` that needs no UTXO context and stores it (or holds it
    /// as an orphan), adding its body to `bodies` for the connect that follows. `New`: stored
    /// now; whether it connects is decided after.
    /// `pre`: its [`ContextFree`] checks when already run.
    #[allow(clippy::too_many_arguments)]
    fn store_block(
        &mut self,
        hash: BlockHash,
        block: Block,
        pre: Option<ContextFree>,
        now: u64,
        source: BlockSource,
        events: &mut Vec<ChainEvent>,
        bodies: &mut HashMap<BlockHash, Body>,
    ) -> StorageResult<AcceptStatus> {
        let started = std::time::Instant::now();
        let known = match self.index.get(&hash) {
            Some(e) if e.status.is_invalid() => {
                return Err(StorageError::KnownInvalid {
                    hash,
                    reason: e.invalid_reason.clone(),
                });
            }
            Some(e) if e.has_body => return Ok(AcceptStatus::Duplicate),
            Some(e) => Some(e.clone()),
            None => None,
        };
        if known.is_none() && !self.index.contains_key(&block.header.prev_hash) {
            if self.orphans.contains(&hash) {
                return Ok(AcceptStatus::Duplicate);
            }
            // Cheap proof of work first, so the pool costs an attacker hashing.
            pow_is_valid(&block.header, &self.params)?;
            if !self.orphans.insert(hash, block, source) {
                return Err(StorageError::MutatedBlock {
                    hash,
                    reason: "too large for the orphan pool".into(),
                });
            }
            return Ok(AcceptStatus::Orphan);
        }
        // The header: known, or checked against its parent now (stored only further down).
        let entry = match known {
            Some(e) => e,
            None => self.check_new_header(&block.header, now)?,
        };

        let pre = pre.unwrap_or_else(|| ContextFree::check(&block, &self.params));
        // The body must be the one the header commits to; a mismatch says nothing about the
        // header (anyone can pair a valid header with junk), so nothing is cached.
        let ContextFree::Contents(contents) = pre else {
            return Err(StorageError::MutatedBlock {
                hash,
                reason: "merkle root does not match the transactions".into(),
            });
        };
        // Every other rule that needs no UTXO context. The body is committed by the header, so
        // a failure condemns the block: a known header is marked invalid for good.
        let contents = contents.and_then(|txids| {
            coinbase_commits_to_height(&block, hash, entry.height).map(|()| txids)
        });
        let txids = match contents {
            Ok(txids) => txids,
            Err(e) => {
                if self.index.contains_key(&hash) {
                    self.mark_invalid(hash, e.to_string(), events)?;
                }
                return Err(StorageError::Consensus(e));
            }
        };
        if source == BlockSource::Unrequested
            && let Some(reason) = self.unrequested_refusal(&entry)
        {
            return Ok(AcceptStatus::NotStored { reason });
        }
        if !self.index.contains_key(&hash) {
            if entry.work <= self.best_header().chain_work
                && let Some(reason) = self.side_header_refusal(&entry)
            {
                return Err(StorageError::NotKept { hash, reason });
            }
            self.store_header(hash, entry)?;
        }

        let db = self.db.clone();
        let mut entry = self
            .index
            .get(&hash)
            .cloned()
            .ok_or_else(|| StorageError::corrupt("header", hash, "missing after accept"))?;
        entry.status = BlockStatus::BlockStored;
        entry.has_body = true;
        let mut batch = WriteBatch::default();
        batch.put_cf(cf(&db, CF_BLOCKS)?, hash.0, encode_value(&block));
        batch.put_cf(cf(&db, CF_HEADERS)?, hash.0, encode_value(&entry.record()));
        self.write(batch)?;
        self.index.insert(hash, entry);
        self.update_availability(hash);
        self.indexes
            .timings
            .add(crate::timings::Stage::Store, started.elapsed());

        bodies.insert(
            hash,
            Body {
                block: Arc::new(block),
                txids,
            },
        );
        Ok(AcceptStatus::New)
    }

    /// Why an unrequested block (already checked) is not stored, if it is not: it could not
    /// become the tip now. Its parent's body must be here, and it must carry more work than
    /// the tip and at least the minimum chain work. Otherwise a peer could make us store blocks
    /// no chain will ever use (a child of genesis needs only the easiest proof of work).
    fn unrequested_refusal(&self, entry: &IndexEntry) -> Option<String> {
        let tip = self.tip();
        if entry.work <= tip.chain_work {
            return Some(format!(
                "unrequested block with chain work {} not above the tip's {}",
                entry.work.to_hex(),
                tip.chain_work.to_hex()
            ));
        }
        if entry.work < self.params.min_chain_work {
            return Some(format!(
                "unrequested block with chain work {} below the minimum {}",
                entry.work.to_hex(),
                self.params.min_chain_work.to_hex()
            ));
        }
        if !self
            .index
            .get(&entry.header.prev_hash)
            .is_some_and(|p| p.available)
        {
            return Some("unrequested block whose parent's body is not here".into());
        }
        None
    }

    /// After `hash`'s body is stored: marks it and its stored descendants available if its
    /// parent is, and updates the candidate leaves.
    pub(super) fn update_availability(&mut self, hash: BlockHash) {
        let Some(e) = self.index.get(&hash) else {
            return;
        };
        let parent_available = e.height == 0
            || self
                .index
                .get(&e.header.prev_hash)
                .is_some_and(|p| p.available);
        if !parent_available || !e.has_body || e.status.is_invalid() {
            return;
        }
        let parent = e.header.prev_hash;
        self.candidates.remove(&parent);
        let mut stack = vec![hash];
        while let Some(h) = stack.pop() {
            let Some(e) = self.index.get_mut(&h) else {
                continue;
            };
            e.available = true;
            let mut has_available_child = false;
            for c in self.children.get(&h).cloned().unwrap_or_default() {
                if let Some(ce) = self.index.get(&c)
                    && ce.has_body
                    && !ce.status.is_invalid()
                {
                    has_available_child = true;
                    stack.push(c);
                }
            }
            if !has_available_child {
                self.candidates.insert(h);
            }
        }
    }

    /// The candidate with the most work; on a tie, the current tip, then the first seen.
    pub(super) fn best_candidate(&self) -> Option<BlockHash> {
        let tip = self.tip();
        let mut best: Option<(&BlockHash, &IndexEntry)> = None;
        for h in &self.candidates {
            let Some(e) = self.index.get(h) else { continue };
            best = match best {
                None => Some((h, e)),
                Some((bh, be)) => {
                    let better = e.work > be.work
                        || (e.work == be.work
                            && *bh != tip.hash
                            && (*h == tip.hash || e.seq < be.seq));
                    if better { Some((h, e)) } else { Some((bh, be)) }
                }
            };
        }
        best.map(|(h, _)| *h)
    }

    /// Moves the main chain to the best available valid chain.
    pub(super) fn activate_best_chain(
        &mut self,
        events: &mut Vec<ChainEvent>,
        bodies: &HashMap<BlockHash, Body>,
    ) -> StorageResult<()> {
        loop {
            let Some(best) = self.best_candidate() else {
                return Ok(());
            };
            let tip = self.tip();
            let best_work = self.index.get(&best).map_or(ChainWork::ZERO, |e| e.work);
            if best == tip.hash || best_work <= tip.chain_work {
                return Ok(());
            }
            // Path from the fork point (exclusive) up to `best`.
            let mut path = Vec::new();
            let mut cur = best;
            loop {
                let e = self.index.get(&cur).ok_or_else(|| {
                    StorageError::corrupt("header", cur, "missing from the index")
                })?;
                if self.main_chain.get(e.height as usize) == Some(&cur) {
                    break;
                }
                path.push(cur);
                cur = e.header.prev_hash;
            }
            path.reverse();
            let fork_height = self.index.get(&cur).map_or(0, |e| e.height);
            // Extending the tip (a finished sync) is not a switch; disconnecting blocks is.
            if self.tip().height != fork_height {
                tracing::info!(from = %tip.hash, to = %best, fork_height, depth = tip.height - fork_height, "switching to the chain with more work");
            }
            while self.tip().height > fork_height {
                self.disconnect_tip(events)?;
            }
            self.connect_path(&path, events, bodies)?;
        }
    }

    /// Marks `hash` invalid and its descendants invalid-ancestor, for good.
    pub(super) fn mark_invalid(
        &mut self,
        hash: BlockHash,
        reason: String,
        events: &mut Vec<ChainEvent>,
    ) -> StorageResult<()> {
        let db = self.db.clone();
        let headers = cf(&db, CF_HEADERS)?;
        let mut batch = WriteBatch::default();
        let mut updated: Vec<(BlockHash, IndexEntry)> = Vec::new();
        let mut stack = vec![(hash, BlockStatus::Invalid, reason.clone())];
        while let Some((h, status, why)) = stack.pop() {
            let Some(mut e) = self.index.get(&h).cloned() else {
                continue;
            };
            e.status = status;
            e.invalid_reason = why;
            e.available = false;
            batch.put_cf(headers, h.0, encode_value(&e.record()));
            for c in self.children.get(&h).cloned().unwrap_or_default() {
                stack.push((
                    c,
                    BlockStatus::InvalidAncestor,
                    format!("descends from invalid block {hash}: {reason}"),
                ));
            }
            updated.push((h, e));
        }
        // The best header may have been on the invalid branch.
        let best_header_invalid = updated
            .iter()
            .any(|(h, _)| Some(h) == self.header_chain.last());
        let saved: Vec<(BlockHash, IndexEntry)> = updated
            .iter()
            .filter_map(|(h, _)| self.index.get(h).map(|e| (*h, e.clone())))
            .collect();
        for (h, e) in &updated {
            self.index.insert(*h, e.clone());
        }
        let header_update = if best_header_invalid {
            let best = self
                .index
                .iter()
                .filter(|(_, e)| !e.status.is_invalid())
                .max_by(|a, b| a.1.work.cmp(&b.1.work).then(b.1.seq.cmp(&a.1.seq)))
                .map(|(h, _)| *h)
                .unwrap_or(self.params.genesis_hash());
            Some(self.header_chain_update(&db, &mut batch, best)?)
        } else {
            None
        };
        if let Err(e) = self.write(batch) {
            for (h, e) in saved {
                self.index.insert(h, e);
            }
            return Err(e);
        }
        for (h, _) in &updated {
            self.candidates.remove(h);
        }
        if let Some(update) = header_update {
            self.apply_header_chain_update(update);
        }
        // The parent may be a leaf again.
        if let Some(parent) = self.index.get(&hash).map(|e| e.header.prev_hash) {
            let parent_available = self.index.get(&parent).is_some_and(|p| p.available);
            let other_child = self.children.get(&parent).is_some_and(|c| {
                c.iter()
                    .any(|c| self.index.get(c).is_some_and(|e| e.available))
            });
            if parent_available && !other_child {
                self.candidates.insert(parent);
            }
        }
        events.push(ChainEvent::BlockInvalid { hash, reason });
        Ok(())
    }
}
