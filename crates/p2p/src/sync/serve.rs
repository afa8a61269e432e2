//! The serving side of `/cairn/sync/1`: answers inbound requests from the chain.
//!
//! Requests wait in one queue per peer (at most `serve_queue_per_peer`; beyond it the peer is
//! answered `Error("busy")`). Up to `serve_workers` requests are answered at once on the
//! blocking pool, at most one per peer, peers taken round robin: a peer that floods us gets
//! one worker's share, never the whole server.
//!
//! Blocks are served as the bytes stored, never decoded and re-encoded, and reading stops at
//! the response's byte budget.

use tokio::task::JoinSet;

use super::*;

/// Enum tag (`u32`) + vector length (`u64`) in front of the blocks of a `Blocks` response.
const BLOCKS_RESPONSE_PREFIX: usize = 12;
/// Variant index of [`SyncResponse::Blocks`] in the canonical encoding.
const BLOCKS_VARIANT: u32 = 2;

/// Serves inbound requests with a fair share per peer (see the module doc).
pub(crate) async fn serve<C: ChainAccess>(
    chain: Arc<C>,
    mut rx: mpsc::Receiver<ServeRequest>,
    handle: NetworkHandle,
    max_response_size: usize,
    workers: usize,
    per_peer_queue: usize,
) {
    let mut queues: HashMap<PeerId, VecDeque<ServeRequest>> = HashMap::new();
    // Peers with queued requests and none being answered, in turn order.
    let mut turn: VecDeque<PeerId> = VecDeque::new();
    // Peers with a request being answered (one each at most).
    let mut in_service: HashMap<tokio::task::Id, PeerId> = HashMap::new();
    let mut running: JoinSet<(PeerId, ResponseChannel<Frame>, Vec<u8>)> = JoinSet::new();
    let mut open = true;
    while open || !running.is_empty() {
        while running.len() < workers
            && let Some(peer) = turn.pop_front()
        {
            let Some(ServeRequest {
                request, channel, ..
            }) = queues.get_mut(&peer).and_then(VecDeque::pop_front)
            else {
                continue;
            };
            let chain = chain.clone();
            let task = running.spawn_blocking(move || {
                (peer, channel, answer(&*chain, request, max_response_size))
            });
            in_service.insert(task.id(), peer);
        }
        tokio::select! {
            req = rx.recv(), if open => match req {
                None => open = false,
                Some(req) => {
                    let peer = req.peer;
                    let queue = queues.entry(peer).or_default();
                    if queue.len() >= per_peer_queue {
                        let busy = encode(&SyncResponse::Error("busy".into()));
                        handle.respond(req.channel, busy).await;
                        continue;
                    }
                    queue.push_back(req);
                    if !in_service.values().any(|p| *p == peer) && !turn.contains(&peer) {
                        turn.push_back(peer);
                    }
                }
            },
            Some(done) = running.join_next_with_id(), if !running.is_empty() => {
                let (id, answered) = match done {
                    Ok((id, (_, channel, frame))) => (id, Some((channel, frame))),
                    Err(e) => {
                        warn!(error = %e, "serving a sync request panicked");
                        (e.id(), None)
                    }
                };
                let Some(peer) = in_service.remove(&id) else {
                    continue;
                };
                if let Some((channel, frame)) = answered {
                    handle.respond(channel, frame).await;
                }
                match queues.get(&peer) {
                    Some(q) if !q.is_empty() => turn.push_back(peer),
                    _ => {
                        queues.remove(&peer);
                    }
                }
            }
        }
    }
}

/// The encoded response to one request, within `max_response_size` bytes.
pub fn answer<C: ChainAccess + ?Sized>(
    chain: &C,
    request: SyncRequest,
    max_response_size: usize,
) -> Vec<u8> {
    match request {
        SyncRequest::Status(_) => encode(&SyncResponse::Status(chain.status())),
        SyncRequest::GetHeaders { locator, max } => {
            if locator.len() > MAX_LOCATOR_LEN {
                return encode(&SyncResponse::Error(format!(
                    "locator longer than {MAX_LOCATOR_LEN}"
                )));
            }
            let max = max.min(MAX_HEADERS_PER_REQUEST) as usize;
            let mut headers = chain.headers_after(&locator, max);
            headers.truncate(max);
            encode(&SyncResponse::Headers(headers))
        }
        SyncRequest::GetBlocks { hashes } => {
            if hashes.len() > MAX_BLOCKS_PER_REQUEST {
                return encode(&SyncResponse::Error(format!(
                    "more than {MAX_BLOCKS_PER_REQUEST} hashes"
                )));
            }
            let budget = max_response_size.saturating_sub(BLOCKS_RESPONSE_PREFIX);
            let blocks = chain.block_bytes(&hashes, budget);
            blocks_response(&blocks)
        }
    }
}

/// The canonical encoding of `SyncResponse::Blocks` around already encoded blocks.
fn blocks_response(blocks: &[Vec<u8>]) -> Vec<u8> {
    let len = blocks.iter().map(Vec::len).sum::<usize>();
    let mut out = Vec::with_capacity(BLOCKS_RESPONSE_PREFIX + len);
    out.extend_from_slice(&BLOCKS_VARIANT.to_le_bytes());
    out.extend_from_slice(&(blocks.len() as u64).to_le_bytes());
    for b in blocks {
        out.extend_from_slice(b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_response_is_the_canonical_encoding() {
        let chain = crate::test_utils::MemoryChain::new(1);
        let blocks = chain.mine(3);
        let raw: Vec<Vec<u8>> = blocks.iter().map(encode).collect();
        assert_eq!(blocks_response(&raw), encode(&SyncResponse::Blocks(blocks)));
        assert_eq!(blocks_response(&[]), encode(&SyncResponse::Blocks(vec![])));
    }
}
