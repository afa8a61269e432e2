//! A WebSocket subscriber per host: `subscribe_newblocks` and `subscribe_newtransactions` over
//! the control network, each notification stamped when its bytes arrive and recorded in
//! [`Events`]. A small RFC 6455 client (text frames, unmasked from the server, pings answered)
//! on a blocking socket, one thread per host: enough for 50 hosts, no extra dependency.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::events::Events;
use crate::host::basic_auth;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a reader wakes without data to check whether it should stop.
const READ_TICK: Duration = Duration::from_millis(200);
/// Largest handshake answer and largest frame accepted (notifications are a few hundred bytes).
const MAX_HANDSHAKE: usize = 8 * 1024;
const MAX_FRAME: usize = 1024 * 1024;
/// Bytes read from the socket at once.
const READ_CHUNK: usize = 64 * 1024;
/// Client frames are masked (RFC 6455 5.3); the key need not be secret here.
const MASK: [u8; 4] = [0x1d, 0x5e, 0xa2, 0x07];

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xa;

/// A running subscriber; dropping it stops the thread.
pub struct Subscriber {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Subscriber {
    /// Connects, subscribes to both notifications, and starts recording for host `index`.
    pub fn start(
        index: usize,
        addr: SocketAddr,
        credentials: Option<&str>,
        events: Arc<Events>,
    ) -> Result<Subscriber> {
        let mut stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
            .with_context(|| format!("WebSocket connect to {addr}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(CONNECT_TIMEOUT))?;
        let auth = credentials
            .map(|c| format!("Authorization: {}\r\n", basic_auth(c)))
            .unwrap_or_default();
        write!(
            stream,
            "GET / HTTP/1.1\r\nHost: {addr}\r\n{auth}Upgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )?;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte)?;
            head.push(byte[0]);
            if head.len() > MAX_HANDSHAKE {
                bail!("WebSocket handshake answer too long from {addr}");
            }
        }
        let head = String::from_utf8_lossy(&head);
        if !head.starts_with("HTTP/1.1 101") {
            bail!("WebSocket upgrade refused by {addr}: {}", head.trim());
        }
        for (id, method) in [(1, "subscribe_newblocks"), (2, "subscribe_newtransactions")] {
            let req = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": []});
            send_frame(&mut stream, OP_TEXT, req.to_string().as_bytes())?;
        }
        stream.set_read_timeout(Some(READ_TICK))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name(format!("ws-{index}"))
            .spawn(move || {
                if let Err(e) = read_loop(index, stream, &events, &stop2)
                    && !stop2.load(Ordering::Relaxed)
                {
                    events.lost(format!("host {index}: subscription ended: {e:#}"));
                }
            })?;
        Ok(Subscriber {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops recording (before the host is stopped on purpose: its end is not a loss).
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.halt();
    }
}

fn send_frame(stream: &mut TcpStream, opcode: u8, payload: &[u8]) -> Result<()> {
    let mut frame = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n <= 0xffff => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&MASK);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    stream.write_all(&frame)?;
    Ok(())
}

/// A complete frame at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
struct Frame {
    fin: bool,
    opcode: u8,
    /// Where the payload is in the buffer.
    payload: std::ops::Range<usize>,
    /// Bytes of the whole frame.
    len: usize,
}

/// The frame at the start of `buf`, if it is complete.
fn parse_frame(buf: &[u8]) -> Result<Option<Frame>> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let fin = buf[0] & 0x80 != 0;
    let opcode = buf[0] & 0x0f;
    let masked = buf[1] & 0x80 != 0;
    let (len, mut header) = match buf[1] & 0x7f {
        126 => {
            let Some(b) = buf.get(2..4) else {
                return Ok(None);
            };
            (u64::from(u16::from_be_bytes([b[0], b[1]])), 4)
        }
        127 => {
            let Some(b) = buf.get(2..10) else {
                return Ok(None);
            };
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            (u64::from_be_bytes(a), 10)
        }
        n => (u64::from(n), 2),
    };
    if masked {
        // A server never masks (RFC 6455 5.1).
        bail!("masked frame from the server");
    }
    let len = usize::try_from(len).ok().filter(|l| *l <= MAX_FRAME);
    let Some(len) = len else {
        bail!("WebSocket frame above {MAX_FRAME} bytes");
    };
    let start = header;
    header += len;
    if buf.len() < header {
        return Ok(None);
    }
    Ok(Some(Frame {
        fin,
        opcode,
        payload: start..start + len,
        len: header,
    }))
}

fn read_loop(
    index: usize,
    mut stream: TcpStream,
    events: &Events,
    stop: &AtomicBool,
) -> Result<()> {
    let mut buf: Vec<u8> = Vec::new();
    let mut message: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; READ_CHUNK];
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let n = match stream.read(&mut chunk) {
            Ok(0) => bail!("closed by the node"),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        // One stamp per read: every frame in these bytes had arrived by now.
        let at = Instant::now();
        buf.extend_from_slice(&chunk[..n]);
        let mut used = 0;
        while let Some(Frame {
            fin,
            opcode,
            payload,
            len,
        }) = parse_frame(&buf[used..])?
        {
            let payload = &buf[used + payload.start..used + payload.end];
            match opcode {
                OP_TEXT | OP_CONTINUATION => {
                    message.extend_from_slice(payload);
                    if message.len() > MAX_FRAME {
                        bail!("WebSocket message above {MAX_FRAME} bytes");
                    }
                    if fin {
                        record(index, &message, events, at);
                        message.clear();
                    }
                }
                OP_PING => send_frame(&mut stream, OP_PONG, payload)?,
                OP_CLOSE => bail!("close frame from the node"),
                _ => {}
            }
            used += len;
        }
        buf.drain(..used);
    }
}

fn record(index: usize, text: &[u8], events: &Events, at: Instant) {
    let Ok(v) = serde_json::from_slice::<Value>(text) else {
        events.lost(format!("host {index}: a notification is not JSON"));
        return;
    };
    if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
        events.lost(format!("host {index}: subscription refused: {err}"));
        return;
    }
    if let Some(err) = v["params"].get("error").filter(|e| !e.is_null()) {
        events.lost(format!(
            "host {index}: subscription ended by the node: {err}"
        ));
        return;
    }
    let r = &v["params"]["result"];
    match v["method"].as_str() {
        Some("newtransactions") => {
            if let Some(txid) = r["txid"].as_str() {
                events.tx(index, txid.to_string(), at);
            }
        }
        Some("newblocks") => {
            if let Some(hash) = r["hash"].as_str() {
                events.block(index, hash.to_string(), at);
            }
        }
        // Answers to the subscribe calls (the subscription ids).
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscription_ended_by_the_node_is_recorded_as_lost() {
        let events = Events::new(2);
        let at = Instant::now();
        let ok = br#"{"jsonrpc":"2.0","method":"newtransactions","params":{"subscription":"a","result":{"txid":"ab"}}}"#;
        record(1, ok, &events, at);
        let ended = br#"{"jsonrpc":"2.0","method":"newtransactions","params":{"subscription":"a","error":"subscriber too slow: 9 notifications dropped; subscribe again"}}"#;
        record(1, ended, &events, at);
        let o = events.lock();
        assert_eq!(o.txs["ab"][1], Some(at));
        assert_eq!(o.lost.len(), 1, "{:?}", o.lost);
        assert!(o.lost[0].contains("host 1") && o.lost[0].contains("too slow"));
    }

    #[test]
    fn frames_are_parsed_only_when_complete() -> Result<()> {
        let mut f = vec![0x81, 126, 0x00, 0xc8];
        f.extend(std::iter::repeat_n(b'x', 200));
        assert!(parse_frame(&f[..3])?.is_none());
        assert!(parse_frame(&f[..100])?.is_none());
        let frame = parse_frame(&f)?;
        assert_eq!(
            frame,
            Some(Frame {
                fin: true,
                opcode: OP_TEXT,
                payload: 4..204,
                len: 204
            })
        );
        assert!(parse_frame(&[0x81, 0x85, 1, 2, 3, 4, 0]).is_err(), "masked");
        Ok(())
    }
}
