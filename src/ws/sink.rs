//! The target's WebSocket mode (`serve --mode ws` / `ws_discard`, and goon's built-in sink
//! with `--ws`): read one request head (at most [`crate::http::HEAD_LIMIT`] bytes, within
//! [`crate::http::HEAD_DEADLINE`] of the accept: the caller's timer), answer a valid upgrade
//! on any path with 101 and anything else with 400 (431 for a head too large), then answer
//! pings, echo each data frame as it came (same opcode and FIN bit, unmasked) or drop it, and
//! answer a close frame with one and close.
//!
//! An idle upgraded connection holds only its [`Decoder`]; what goes out (the 101, pongs,
//! echoed frames) is written through a ring borrowed from the reactor's pool for as long as it
//! has bytes, as the byte echo does. A read takes at most the ring's free room less
//! [`OUTPUT_SLACK`]: what a read produces is never more than it consumed plus one frame header
//! or one control frame, so the output always fits, and a full ring stops reading
//! (backpressure to the client).

use std::io::{self, Read, Write};

use super::frame::{self, Decoder, Event, CONTROL_FRAME_MAX, HEADER_MAX, OP_CLOSE, OP_PING};
use crate::engine::buf::Ring;
use crate::engine::pool::BufPool;
use crate::engine::{Readiness, Ready};
use crate::http::{self, HeadError, Parse, Version};

/// Room kept free in the ring beyond a read's own size (see the module comment).
pub const OUTPUT_SLACK: usize = CONTROL_FRAME_MAX + HEADER_MAX;
/// Bytes read from one connection per wake-up before yielding.
pub const READ_BUDGET: usize = 256 * 1024;

/// The sink's WebSocket counters (whole, per reactor).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SinkWsStats {
    pub upgraded: u64,
    /// Heads that were not a valid upgrade (answered 400 or 431).
    pub refused: u64,
    /// No complete head within the deadline.
    pub timeouts: u64,
    pub pings: u64,
    /// Data frames received (echoed or dropped).
    pub frames: u64,
    pub protocol_errors: u64,
}

impl SinkWsStats {
    pub fn merge(&mut self, o: &SinkWsStats) {
        self.upgraded += o.upgraded;
        self.refused += o.refused;
        self.timeouts += o.timeouts;
        self.pings += o.pings;
        self.frames += o.frames;
        self.protocol_errors += o.protocol_errors;
    }
}

/// One connection's WebSocket state.
#[derive(Debug)]
pub enum WsConn {
    /// Reading the request head; bytes kept only when it came in pieces.
    Head(Vec<u8>),
    Open(Decoder),
    /// A last response or close frame is going out; then the connection closes.
    Closing,
}

impl WsConn {
    pub fn new() -> WsConn {
        WsConn::Head(Vec::new())
    }

    /// Still waiting for the request head (the deadline applies).
    pub fn in_head(&self) -> bool {
        matches!(self, WsConn::Head(_))
    }
}

impl Default for WsConn {
    fn default() -> Self {
        WsConn::new()
    }
}

/// What the caller does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    Idle,
    More,
    Close,
}

/// Everything one step works with, borrowed from the connection and the reactor.
pub struct Io<'a, S> {
    pub sock: &'a mut S,
    pub rd: &'a mut Readiness,
    pub ring: &'a mut Option<Ring>,
    pub rings: &'a mut BufPool<Ring>,
    /// The ring's size.
    pub ring_bytes: usize,
    pub scratch: &'a mut [u8],
    pub bytes_in: &'a mut u64,
    pub bytes_out: &'a mut u64,
    pub stats: &'a mut SinkWsStats,
    /// Echo data frames (else drop them).
    pub echo: bool,
    /// `sock` is plain TCP, where a read that comes back short emptied the socket (see
    /// [`crate::engine::Ready::URGENT`] for the exception); false under TLS, which buffers.
    pub short_read_drains: bool,
}

/// Copies `b` into the ring's free space (across its wrap); false if it did not all fit.
fn push(ring: &mut Ring, mut b: &[u8]) -> bool {
    while !b.is_empty() {
        let spare = ring.spare_mut();
        if spare.is_empty() {
            return false;
        }
        let n = spare.len().min(b.len());
        spare[..n].copy_from_slice(&b[..n]);
        ring.commit(n);
        b = &b[n..];
    }
    true
}

/// Serves the connection until it would block, the budget runs out, or it is to be closed.
pub fn step<S: Read + Write>(ws: &mut WsConn, io: &mut Io<'_, S>) -> Next {
    let mut budget = READ_BUDGET;
    loop {
        let mut progressed = false;
        if let Some(ring) = io.ring.as_mut() {
            if io.rd.event.contains(Ready::WRITABLE) && !ring.is_empty() {
                match ring.write_to(io.sock) {
                    Ok(n) => {
                        *io.bytes_out += n as u64;
                        progressed = n > 0;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => io.rd.event.remove(Ready::WRITABLE),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return Next::Close,
                }
            }
            if ring.is_empty() {
                if let Some(r) = io.ring.take() {
                    io.rings.give(r);
                }
            }
        }
        if matches!(ws, WsConn::Closing) {
            return if io.ring.is_none() { Next::Close } else { Next::Idle };
        }
        if budget == 0 {
            return Next::More;
        }
        if io.rd.event.intersects(Ready::READABLE | Ready::HUP | Ready::ERROR) {
            match read_some(ws, io) {
                Ok((0, _)) => {
                    // The peer's FIN: what is left to send goes first.
                    *ws = WsConn::Closing;
                    progressed = true;
                }
                Ok((n, asked)) => {
                    budget = budget.saturating_sub(n);
                    progressed = true;
                    // A short read emptied a plain socket: wait for the next edge.
                    io.rd.short_read(n, asked, io.short_read_drains);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => io.rd.read_drained(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // No ring to write through: leave the bytes in the kernel until one is free.
                Err(e) if e.kind() == io::ErrorKind::OutOfMemory => {}
                Err(_) => return Next::Close,
            }
        }
        if !progressed {
            return Next::Idle;
        }
    }
}

/// Takes a ring when there is none; `OutOfMemory` when the pool is at its bound.
fn ring_for<'r>(ring: &'r mut Option<Ring>, rings: &mut BufPool<Ring>) -> io::Result<&'r mut Ring> {
    if ring.is_none() {
        if !rings.can_take() {
            return Err(io::ErrorKind::OutOfMemory.into());
        }
        *ring = Some(rings.take()?);
    }
    ring.as_mut().ok_or_else(|| io::ErrorKind::OutOfMemory.into())
}

/// One read and what it leads to: the bytes read and how many it asked for; `Ok((0, _))` is
/// the peer's FIN, `WouldBlock` also when the ring has no room for what a read could produce
/// (backpressure).
fn read_some<S: Read + Write>(ws: &mut WsConn, io: &mut Io<'_, S>) -> io::Result<(usize, usize)> {
    let free = io.ring_bytes - io.ring.as_ref().map_or(0, Ring::len);
    if free <= OUTPUT_SLACK {
        // Wait for the socket to take some: the WRITABLE edge runs the step again.
        return Err(io::ErrorKind::OutOfMemory.into());
    }
    ring_for(io.ring, io.rings)?;
    let room = (free - OUTPUT_SLACK).min(io.scratch.len());
    match ws {
        WsConn::Head(kept) => {
            let room = room.min(http::HEAD_LIMIT.saturating_sub(kept.len()).max(1));
            let n = io.sock.read(&mut io.scratch[..room])?;
            if n == 0 {
                return Ok((0, room));
            }
            *io.bytes_in += n as u64;
            let from_scratch = kept.is_empty();
            if !from_scratch {
                kept.extend_from_slice(&io.scratch[..n]);
            }
            let data: &[u8] = if from_scratch { &io.scratch[..n] } else { kept };
            let (reply, rest): (Vec<u8>, Option<Vec<u8>>) = match http::parse_head(data, http::HEAD_LIMIT) {
                Parse::Partial => {
                    if from_scratch {
                        *ws = WsConn::Head(io.scratch[..n].to_vec());
                    }
                    return Ok((n, room));
                }
                Parse::Complete(h) => match h.websocket_key {
                    Some(key) => (http::upgrade_response(key), Some(data[h.consumed..].to_vec())),
                    None => (refusal(400, "not a WebSocket upgrade request\n"), None),
                },
                Parse::Error(HeadError::TooLarge | HeadError::TooManyHeaders) => {
                    (refusal(431, "request head too large\n"), None)
                }
                Parse::Error(_) => (refusal(400, "malformed request head\n"), None),
            };
            let ring = ring_for(io.ring, io.rings)?;
            let fits = push(ring, &reply);
            match rest {
                Some(mut rest) if fits => {
                    io.stats.upgraded += 1;
                    *ws = WsConn::Open(Decoder::new(frame::From::Client));
                    if !rest.is_empty() {
                        frames(ws, io, &mut rest);
                    }
                }
                _ => {
                    io.stats.refused += 1;
                    *ws = WsConn::Closing;
                }
            }
            Ok((n, room))
        }
        WsConn::Open(_) => {
            let n = io.sock.read(&mut io.scratch[..room])?;
            if n == 0 {
                return Ok((0, room));
            }
            *io.bytes_in += n as u64;
            // The scratch buffer is borrowed from io for the decode: move it out for the call.
            let scratch = std::mem::take(&mut io.scratch);
            frames(ws, io, &mut scratch[..n]);
            io.scratch = scratch;
            Ok((n, room))
        }
        WsConn::Closing => Err(io::ErrorKind::WouldBlock.into()),
    }
}

fn refusal(status: u16, body: &str) -> Vec<u8> {
    http::response(Version::Http11, status, "text/plain", &[], body.as_bytes())
}

/// Decodes client frames, writing replies and echoes into the ring (which has room: see the
/// module comment).
fn frames<S>(ws: &mut WsConn, io: &mut Io<'_, S>, data: &mut [u8]) {
    let WsConn::Open(dec) = ws else { return };
    let Some(ring) = io.ring.as_mut() else { return };
    let (echo, st) = (io.echo, &mut *io.stats);
    let mut fits = true;
    let mut closing = false;
    let mut hdr = [0u8; HEADER_MAX];
    let mut ctl = [0u8; CONTROL_FRAME_MAX];
    let r = dec.feed(data, &mut |e| match e {
        Event::Start { first, len } => {
            st.frames += 1;
            if echo {
                let n = frame::header(&mut hdr, first, len, None);
                fits &= push(ring, &hdr[..n]);
            }
        }
        Event::Data(b) if echo => fits &= push(ring, b),
        Event::Control { opcode: OP_PING, payload } if !closing => {
            st.pings += 1;
            let n = frame::control(&mut ctl, frame::OP_PONG, payload, None);
            fits &= push(ring, &ctl[..n]);
        }
        Event::Control { opcode: OP_CLOSE, payload } if !closing => {
            // RFC 6455 5.5.1 and 7.4: an empty close is answered 1000; a code is echoed when it
            // is one a peer may send, else (a 1-byte body, a reserved code) 1002.
            let code = match payload {
                [] => 1000,
                [a, b, ..] if sendable_close_code(u16::from_be_bytes([*a, *b])) => u16::from_be_bytes([*a, *b]),
                _ => {
                    st.protocol_errors += 1;
                    1002
                }
            };
            let n = frame::control(&mut ctl, OP_CLOSE, &code.to_be_bytes(), None);
            fits &= push(ring, &ctl[..n]);
            closing = true;
        }
        _ => {}
    });
    if r.is_err() || !fits {
        st.protocol_errors += u64::from(r.is_err());
        let n = frame::control(&mut ctl, OP_CLOSE, &1002u16.to_be_bytes(), None);
        let _ = push(ring, &ctl[..n]);
        closing = true;
    }
    if closing {
        *ws = WsConn::Closing;
    }
}

/// A close code a peer may send (RFC 6455 7.4.1, 7.4.2 and the IANA registry): 1000-1003,
/// 1007-1014, or 3000-4999 (registered and private); never 1004-1006, 1015 or below 1000.
fn sendable_close_code(c: u16) -> bool {
    matches!(c, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Mem {
        input: Vec<u8>,
        at: usize,
        output: Vec<u8>,
    }

    impl Read for Mem {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            if self.at == self.input.len() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = b.len().min(self.input.len() - self.at);
            b[..n].copy_from_slice(&self.input[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    impl Write for Mem {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.output.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn run(input: &[u8], echo: bool) -> (Next, Vec<u8>, SinkWsStats, bool) {
        let mut sock = Mem { input: input.to_vec(), at: 0, output: Vec::new() };
        let mut rd = Readiness { event: Ready::READABLE | Ready::WRITABLE };
        let mut ring = None;
        let mut rings = BufPool::new(1024, 4, 4);
        let mut scratch = vec![0u8; 4096];
        let (mut bi, mut bo) = (0, 0);
        let mut stats = SinkWsStats::default();
        let mut ws = WsConn::new();
        let mut io = Io {
            sock: &mut sock,
            rd: &mut rd,
            ring: &mut ring,
            rings: &mut rings,
            ring_bytes: 1024,
            scratch: &mut scratch,
            bytes_in: &mut bi,
            bytes_out: &mut bo,
            stats: &mut stats,
            echo,
            short_read_drains: false,
        };
        let next = step(&mut ws, &mut io);
        let open = matches!(ws, WsConn::Open(_));
        assert!(ring.is_none(), "the ring goes back once empty");
        (next, sock.output, stats, open)
    }

    const REQ: &[u8] = b"GET /any HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

    #[test]
    fn upgrade_echo_ping_close() {
        let mut input = REQ.to_vec();
        // Masked "Hello", masked ping "p", then a close 1000.
        input.extend_from_slice(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
        input.extend_from_slice(&[0x89, 0x81, 0, 0, 0, 0, b'p']);
        let (next, out, st, open) = run(&input, true);
        assert_eq!((next, open), (Next::Idle, true));
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"), "{text}");
        assert!(text.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
        let head = text.find("\r\n\r\n").unwrap() + 4;
        assert_eq!(&out[head..], &[0x81, 0x05, b'H', b'e', b'l', b'l', b'o', 0x8A, 0x01, b'p']);
        assert_eq!((st.upgraded, st.frames, st.pings), (1, 1, 1));
        // Discard: the ping is still answered, the message is not echoed; a close ends it.
        input.extend_from_slice(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8]);
        let (next, out, _, _) = run(&input, false);
        assert_eq!(next, Next::Close);
        let head = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert_eq!(&out[head..], &[0x8A, 0x01, b'p', 0x88, 0x02, 0x03, 0xe8]);
    }

    #[test]
    fn refusals() {
        let (next, out, st, _) = run(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", true);
        assert_eq!(next, Next::Close);
        assert!(out.starts_with(b"HTTP/1.1 400 Bad Request\r\n"));
        assert_eq!((st.refused, st.upgraded), (1, 0));
        let (next, out, _, _) = run(b"\x16\x03\x01garbage\r\n\r\n", true);
        assert_eq!(next, Next::Close);
        assert!(out.starts_with(b"HTTP/1.1 400"));
        // Unmasked client frame: a protocol error, closed with 1002.
        let mut input = REQ.to_vec();
        input.extend_from_slice(&[0x81, 0x01, b'x']);
        let (next, out, st, _) = run(&input, true);
        assert_eq!((next, st.protocol_errors), (Next::Close, 1));
        assert!(out.ends_with(&[0x88, 0x02, 0x03, 0xea]));
        // A close with a 1-byte body, or with a code no peer may send (0, 1005), is answered
        // 1002; a valid code (4000) is echoed.
        for (body, answer) in
            [(&[0x03][..], 1002u16), (&[0, 0][..], 1002), (&[0x03, 0xed][..], 1002), (&[0x0f, 0xa0][..], 4000)]
        {
            let mut input = REQ.to_vec();
            input.extend_from_slice(&[0x88, 0x80 | body.len() as u8, 0, 0, 0, 0]);
            input.extend_from_slice(body);
            let (next, out, _, _) = run(&input, true);
            assert_eq!(next, Next::Close, "{body:?}");
            let a = answer.to_be_bytes();
            assert!(out.ends_with(&[0x88, 0x02, a[0], a[1]]), "{body:?} answered {:?}", &out[out.len() - 4..]);
        }
        // A continuation frame with no message to continue: 1002, nothing echoed.
        let mut input = REQ.to_vec();
        input.extend_from_slice(&[0x80, 0x81, 0, 0, 0, 0, b'x']);
        let (next, out, st, _) = run(&input, true);
        assert_eq!((next, st.protocol_errors), (Next::Close, 1));
        assert!(out.ends_with(&[0x88, 0x02, 0x03, 0xea]));
    }

    #[test]
    fn a_head_in_pieces_is_kept_until_complete() {
        let mut sock = Mem { input: REQ[..20].to_vec(), at: 0, output: Vec::new() };
        let mut rd = Readiness { event: Ready::READABLE | Ready::WRITABLE };
        let (mut ring, mut rings, mut scratch) = (None, BufPool::new(1024, 4, 4), vec![0u8; 4096]);
        let (mut bi, mut bo, mut stats) = (0, 0, SinkWsStats::default());
        let mut ws = WsConn::new();
        let mut io = Io {
            sock: &mut sock,
            rd: &mut rd,
            ring: &mut ring,
            rings: &mut rings,
            ring_bytes: 1024,
            scratch: &mut scratch,
            bytes_in: &mut bi,
            bytes_out: &mut bo,
            stats: &mut stats,
            echo: true,
            short_read_drains: false,
        };
        assert_eq!(step(&mut ws, &mut io), Next::Idle);
        assert!(ws.in_head());
        io.sock.input.extend_from_slice(&REQ[20..]);
        io.rd.event = Ready::READABLE | Ready::WRITABLE;
        assert_eq!(step(&mut ws, &mut io), Next::Idle);
        assert!(matches!(ws, WsConn::Open(_)));
        assert!(sock.output.starts_with(b"HTTP/1.1 101"));
    }
}
