//! The serving side of `/cairn/sync/1`: answers inbound requests from the chain.

use super::*;

/// Answers inbound requests, one at a time, on the blocking pool.
pub(crate) async fn serve<C: ChainAccess>(
    chain: Arc<C>,
    mut rx: mpsc::Receiver<ServeRequest>,
    handle: NetworkHandle,
    max_response_size: usize,
) {
    while let Some(ServeRequest {
        peer,
        request,
        channel,
    }) = rx.recv().await
    {
        let chain = chain.clone();
        let answer =
            tokio::task::spawn_blocking(move || answer(&*chain, request, max_response_size)).await;
        match answer {
            Ok(response) => handle.respond(channel, encode(&response)).await,
            Err(e) => warn!(%peer, error = %e, "serving a sync request panicked"),
        }
    }
}

/// The response to one request, within `max_response_size` bytes.
pub fn answer<C: ChainAccess + ?Sized>(
    chain: &C,
    request: SyncRequest,
    max_response_size: usize,
) -> SyncResponse {
    match request {
        SyncRequest::Status(_) => SyncResponse::Status(chain.status()),
        SyncRequest::GetHeaders { locator, max } => {
            if locator.len() > MAX_LOCATOR_LEN {
                return SyncResponse::Error(format!("locator longer than {MAX_LOCATOR_LEN}"));
            }
            let max = max.min(MAX_HEADERS_PER_REQUEST) as usize;
            let mut headers = chain.headers_after(&locator, max);
            headers.truncate(max);
            SyncResponse::Headers(headers)
        }
        SyncRequest::GetBlocks { hashes } => {
            if hashes.len() > MAX_BLOCKS_PER_REQUEST {
                return SyncResponse::Error(format!("more than {MAX_BLOCKS_PER_REQUEST} hashes"));
            }
            let mut blocks = chain.blocks(&hashes);
            // Enum tag + Vec length prefix.
            let mut size = 12;
            let mut keep = 0;
            for b in &blocks {
                size += encoded_len(b);
                if size > max_response_size {
                    break;
                }
                keep += 1;
            }
            blocks.truncate(keep);
            SyncResponse::Blocks(blocks)
        }
    }
}
