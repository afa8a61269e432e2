//! The sync protocol `/cairn/sync/1`: its messages and their wire codec.
//!
//! One request per stream: the requester writes the canonical encoding of one [`SyncRequest`]
//! and closes its write side; the responder writes the canonical encoding of one
//! [`SyncResponse`] and closes. There is no framing beyond the stream itself. Each side reads
//! at most its configured limit plus one byte: a longer message is an error before any decoding.
//! The codec moves bytes only; the swarm task decodes them (with
//! [`cairn_primitives::encoding::decode_with_limit`]) so that it knows which peer to penalise.

use std::io;

use cairn_primitives::{Block, BlockHash, BlockHeader};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;

/// Protocol id of the sync protocol.
pub const SYNC_PROTOCOL: StreamProtocol = StreamProtocol::new("/cairn/sync/1");

/// A node's view of its chain, exchanged on every new connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct Status {
    pub genesis: BlockHash,
    pub best_height: u64,
    pub best_hash: BlockHash,
    /// Cumulative work of the best chain, a big-endian 256-bit integer (so `>` on the array is
    /// `>` on the number).
    pub total_work: [u8; 32],
}

/// A sync request.
#[derive(Clone, Debug, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub enum SyncRequest {
    /// "Here is mine, what is yours?" Answered with [`SyncResponse::Status`].
    Status(Status),
    /// Headers of the responder's best chain following the first locator hash it knows
    /// (genesis if none), at most `max` (capped at [`crate::config::MAX_HEADERS_PER_REQUEST`]).
    GetHeaders { locator: Vec<BlockHash>, max: u32 },
    /// Bodies of these blocks, in the order asked, unknown ones skipped.
    GetBlocks { hashes: Vec<BlockHash> },
}

/// A sync response.
#[derive(Clone, Debug, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub enum SyncResponse {
    Status(Status),
    Headers(Vec<BlockHeader>),
    Blocks(Vec<Block>),
    /// The request was understood but not served (busy, bad locator, ...).
    Error(String),
}

/// Encoded bytes of one request or response, size-checked but not decoded.
///
/// `oversized` marks an inbound request that went over the limit (its bytes are dropped): the
/// codec reports it as a value because libp2p does not surface request read errors, and the
/// service must know whom to penalise.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Frame {
    pub bytes: Vec<u8>,
    pub oversized: bool,
}

impl Frame {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self {
            bytes,
            oversized: false,
        }
    }
}

/// Size-limited byte codec for [`SYNC_PROTOCOL`].
#[derive(Clone, Debug)]
pub struct SyncCodec {
    pub max_request_size: usize,
    pub max_response_size: usize,
}

/// Marker in the `io::Error` of an over-limit message, so the service can penalise it.
pub const OVERSIZED: &str = "cairn sync message above the size limit";

async fn read_limited<T: AsyncRead + Unpin + Send>(io: &mut T, limit: usize) -> io::Result<Frame> {
    let mut buf = Vec::new();
    io.take(limit as u64 + 1).read_to_end(&mut buf).await?;
    if buf.len() > limit {
        return Err(io::Error::new(io::ErrorKind::InvalidData, OVERSIZED));
    }
    if buf.is_empty() {
        // The other side closed without writing (it dropped the request): no message, no fault.
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "empty sync message",
        ));
    }
    Ok(Frame::new(buf))
}

async fn write_limited<T: AsyncWrite + Unpin + Send>(
    io: &mut T,
    frame: Frame,
    limit: usize,
) -> io::Result<()> {
    if frame.bytes.len() > limit {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, OVERSIZED));
    }
    io.write_all(&frame.bytes).await?;
    io.close().await
}

#[async_trait::async_trait]
impl libp2p::request_response::Codec for SyncCodec {
    type Protocol = StreamProtocol;
    type Request = Frame;
    type Response = Frame;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Frame>
    where
        T: AsyncRead + Unpin + Send,
    {
        match read_limited(io, self.max_request_size).await {
            Err(e) if is_oversized(&e) => Ok(Frame {
                bytes: Vec::new(),
                oversized: true,
            }),
            other => other,
        }
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Frame>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_limited(io, self.max_response_size).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Frame,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        // Requests are written unchecked against our own *read* limit: a peer's limit may differ.
        write_limited(io, req, usize::MAX).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Frame,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_limited(io, res, self.max_response_size).await
    }
}

/// Whether an I/O error is the codec's "message too large".
pub(crate) fn is_oversized(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::InvalidData && e.to_string().contains(OVERSIZED)
}

/// Cumulative work as a big-endian 256-bit integer from a `u128` (tests, simple chains).
pub fn work_from_u128(w: u128) -> [u8; 32] {
    let mut out = [0u8; 32];
    out[16..].copy_from_slice(&w.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_primitives::encoding::{decode, encode};

    #[test]
    fn requests_round_trip() {
        let r = SyncRequest::GetHeaders {
            locator: vec![BlockHash::ZERO],
            max: 7,
        };
        assert_eq!(decode::<SyncRequest>(&encode(&r)), Ok(r));
    }

    #[test]
    fn work_compares_as_numbers() {
        assert!(work_from_u128(256) > work_from_u128(255));
    }

    #[test]
    fn oversized_frame_rejected_before_decoding() {
        futures::executor::block_on(async {
            let mut input = futures::io::Cursor::new(vec![0u8; 11]);
            let e = read_limited(&mut input, 10).await.err();
            assert!(e.as_ref().is_some_and(is_oversized), "{e:?}");
            let mut ok = futures::io::Cursor::new(vec![0u8; 10]);
            assert_eq!(
                read_limited(&mut ok, 10).await.ok(),
                Some(Frame::new(vec![0; 10]))
            );
        });
    }
}
