//! Headers: validation against the parent, the block index and the best header chain.

use super::*;

impl ChainState {
    /// Times of up to [`MEDIAN_TIME_SPAN`] blocks ending at `hash`, newest first.
    pub(super) fn recent_times(&self, hash: &BlockHash) -> Vec<u64> {
        let mut times = Vec::with_capacity(MEDIAN_TIME_SPAN);
        let mut cur = self.index.get(hash);
        while let Some(e) = cur {
            times.push(e.header.time);
            if times.len() == MEDIAN_TIME_SPAN || e.height == 0 {
                break;
            }
            cur = self.index.get(&e.header.prev_hash);
        }
        times
    }

    /// Validates and stores a header whose parent is known. Headers of known-invalid blocks
    /// and their descendants are refused with the cached reason. A valid header that would not
    /// become the best header is kept only within the side-branch limits
    /// ([`StorageError::NotKept`] otherwise).
    pub fn accept_header(
        &mut self,
        header: &BlockHeader,
        now: u64,
    ) -> StorageResult<HeaderOutcome> {
        let hash = header.hash();
        if let Some(e) = self.index.get(&hash) {
            if e.status.is_invalid() {
                return Err(StorageError::KnownInvalid {
                    hash,
                    reason: e.invalid_reason.clone(),
                });
            }
            return Ok(HeaderOutcome {
                hash,
                height: e.height,
                is_new: false,
            });
        }
        let entry = self.check_new_header(header, now)?;
        if entry.work <= self.best_header().chain_work
            && let Some(reason) = self.side_header_refusal(&entry)
        {
            return Err(StorageError::NotKept { hash, reason });
        }
        self.store_header(hash, entry)
    }

    /// Why a valid header that does not extend the best header chain is not kept, if it is not:
    /// below the minimum chain work, or the side-branch headers are at their limit.
    pub(super) fn side_header_refusal(&self, entry: &IndexEntry) -> Option<String> {
        if entry.work < self.params.min_chain_work {
            return Some(format!(
                "side-branch header with chain work {} below the minimum {}",
                entry.work.to_hex(),
                self.params.min_chain_work.to_hex()
            ));
        }
        let side = self.index.len().saturating_sub(self.header_chain.len());
        if side >= MAX_SIDE_BRANCH_HEADERS {
            return Some(format!(
                "{side} side-branch headers kept already (limit {MAX_SIDE_BRANCH_HEADERS})"
            ));
        }
        None
    }

    /// Checks a header not yet in the index against its (known) parent and the clock; stores
    /// nothing. Returns the index entry it would get.
    pub(super) fn check_new_header(
        &self,
        header: &BlockHeader,
        now: u64,
    ) -> StorageResult<IndexEntry> {
        let hash = header.hash();
        let parent = self
            .index
            .get(&header.prev_hash)
            .ok_or(StorageError::UnknownParent {
                hash,
                parent: header.prev_hash,
            })?;
        if parent.status.is_invalid() {
            return Err(StorageError::KnownInvalid {
                hash,
                reason: format!(
                    "descends from invalid block {}: {}",
                    header.prev_hash, parent.invalid_reason
                ),
            });
        }
        let times = self.recent_times(&header.prev_hash);
        let ctx = HeaderContext {
            parent_height: parent.height,
            parent_time: parent.header.time,
            recent_times: &times,
        };
        check_header(header, &self.params, &ctx, now)?;
        let target = Target::from_compact(header.bits).ok_or(
            cairn_consensus::ConsensusError::InvalidBits {
                hash,
                bits: header.bits,
            },
        )?;
        Ok(IndexEntry {
            header: *header,
            height: parent.height + 1,
            work: parent.work.saturating_add(target.work()),
            status: BlockStatus::ValidHeader,
            has_body: false,
            invalid_reason: String::new(),
            seq: 0,
            available: false,
        })
    }

    /// Stores a checked header (from [`ChainState::check_new_header`]) and moves the best
    /// header chain to it if it has the most work.
    pub(super) fn store_header(
        &mut self,
        hash: BlockHash,
        mut entry: IndexEntry,
    ) -> StorageResult<HeaderOutcome> {
        let prev_hash = entry.header.prev_hash;
        entry.seq = self.next_seq;
        let db = self.db.clone();
        let mut batch = WriteBatch::default();
        batch.put_cf(cf(&db, CF_HEADERS)?, hash.0, encode_value(&entry.record()));
        let height = entry.height;
        let better = entry.work > self.best_header().chain_work;
        self.next_seq += 1;
        self.index.insert(hash, entry);
        let header_chain_update = if better {
            Some(self.header_chain_update(&db, &mut batch, hash)?)
        } else {
            None
        };
        if let Err(e) = self.write(batch) {
            self.index.remove(&hash);
            return Err(e);
        }
        self.children.entry(prev_hash).or_default().push(hash);
        if let Some(update) = header_chain_update {
            self.apply_header_chain_update(update);
        }
        Ok(HeaderOutcome {
            hash,
            height,
            is_new: true,
        })
    }

    /// Accepts headers in order (as received from a peer); stops at the first failure.
    /// Returns how many were new.
    pub fn accept_headers(&mut self, headers: &[BlockHeader], now: u64) -> StorageResult<usize> {
        let mut new = 0;
        for h in headers {
            if self.accept_header(h, now)?.is_new {
                new += 1;
            }
        }
        Ok(new)
    }

    /// Puts into `batch` the change of the best header chain to end at `best`; returns the
    /// in-memory update to apply once the batch is written.
    pub(super) fn header_chain_update(
        &self,
        db: &DB,
        batch: &mut WriteBatch,
        best: BlockHash,
    ) -> StorageResult<(usize, Vec<BlockHash>)> {
        let mut segment = Vec::new();
        let mut cur = best;
        loop {
            let e = self
                .index
                .get(&cur)
                .ok_or_else(|| StorageError::corrupt("header", cur, "missing from the index"))?;
            let h = e.height as usize;
            if self.header_chain.get(h) == Some(&cur) {
                break;
            }
            segment.push(cur);
            if e.height == 0 {
                break;
            }
            cur = e.header.prev_hash;
        }
        segment.reverse();
        let best_height = self.index.get(&best).map_or(0, |e| e.height) as usize;
        let start = best_height + 1 - segment.len();
        let hc = cf(db, CF_HEADER_CHAIN)?;
        for (i, hash) in segment.iter().enumerate() {
            batch.put_cf(hc, height_key((start + i) as u64), hash.0);
        }
        for h in best_height + 1..self.header_chain.len() {
            batch.delete_cf(hc, height_key(h as u64));
        }
        batch.put_cf(
            cf(db, CF_META)?,
            MetaKey::BestHeader.key(),
            encode_value(&TipRecord {
                height: best_height as u64,
                hash: best,
            }),
        );
        Ok((start, segment))
    }

    pub(super) fn apply_header_chain_update(&mut self, (start, segment): (usize, Vec<BlockHash>)) {
        self.header_chain.truncate(start);
        self.header_chain.extend(segment);
    }
}
