//! RFC 6455 frames, sans-io: a [`Decoder`] that is fed whatever bytes a read returned and
//! reports frames as they complete, and encoders that write a frame into a caller's buffer.
//!
//! The decoder's state is a 14-byte header buffer and a few words, so a held connection costs
//! that and nothing more. Data payloads are never stored: they are reported chunk by chunk,
//! unmasked in place in the caller's read buffer. Control payloads (at most 125 bytes) are
//! reported whole; one split over two reads is collected in a buffer allocated for that frame
//! and freed after it.

/// Frame opcodes (RFC 6455 §5.2).
pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;
/// The FIN bit of the first header byte.
pub const FIN: u8 = 0x80;
/// Largest control payload (RFC 6455 §5.5).
pub const CONTROL_MAX: usize = 125;
/// Longest frame header: 2 + 8 (64-bit length) + 4 (mask).
pub const HEADER_MAX: usize = 14;
/// Largest encoded control frame: header with mask and a full payload.
pub const CONTROL_FRAME_MAX: usize = 6 + CONTROL_MAX;

/// Which side decodes: frames from a client are masked, frames from a server are not
/// (RFC 6455 §5.1); the other kind is a protocol error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum From {
    Client,
    Server,
}

/// What the decoder found.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A data frame (text, binary or continuation) begins: its first header byte (FIN and
    /// opcode) and payload length. Its payload follows as [`Event::Data`] chunks.
    Start { first: u8, len: u64 },
    /// Payload bytes of the current data frame, unmasked.
    Data(&'a [u8]),
    /// A whole control frame (close, ping, pong) and its payload, unmasked.
    Control { opcode: u8, payload: &'a [u8] },
}

/// A frame the decoder refuses; the connection should be closed (status 1002).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// RSV bits set (no extension was negotiated).
    Reserved,
    /// An opcode RFC 6455 does not define.
    Opcode(u8),
    /// A control frame longer than 125 bytes or fragmented.
    BadControl,
    /// Masked when it must not be, or unmasked when it must be.
    Mask,
    /// A 64-bit length with its top bit set.
    Length,
    /// A continuation frame with no message to continue, or a new data message inside an
    /// unfinished one.
    Fragment,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Reserved => f.write_str("reserved bits set"),
            FrameError::Opcode(o) => write!(f, "unknown opcode {o:#x}"),
            FrameError::BadControl => f.write_str("control frame fragmented or over 125 bytes"),
            FrameError::Mask => f.write_str("wrong masking for this direction"),
            FrameError::Length => f.write_str("64-bit length with the top bit set"),
            FrameError::Fragment => f.write_str("continuation without a message, or a message inside another"),
        }
    }
}

/// The frame being read, once its header is complete.
#[derive(Clone, Copy, Debug, Default)]
struct Current {
    first: u8,
    remaining: u64,
    mask: Option<[u8; 4]>,
    /// Payload bytes unmasked so far (the mask's phase).
    done: u64,
}

/// Incremental frame decoder; see the module comment.
#[derive(Debug)]
pub struct Decoder {
    from: From,
    hdr: [u8; HEADER_MAX],
    hdr_len: u8,
    cur: Option<Current>,
    /// A control payload split over reads; allocated for that frame only.
    ctrl: Vec<u8>,
    /// A fragmented data message is open: its first frame came without FIN.
    in_message: bool,
}

fn header_len(b1: u8) -> usize {
    let ext = match b1 & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    2 + ext + if b1 & 0x80 != 0 { 4 } else { 0 }
}

impl Decoder {
    pub fn new(from: From) -> Decoder {
        Decoder { from, hdr: [0; HEADER_MAX], hdr_len: 0, cur: None, ctrl: Vec::new(), in_message: false }
    }

    /// Whether the decoder is between frames (nothing half-read).
    #[cfg(test)]
    pub fn idle(&self) -> bool {
        self.hdr_len == 0 && self.cur.is_none()
    }

    /// Decodes `data` (unmasking it in place), calling `on` for each event in order.
    pub fn feed(&mut self, mut data: &mut [u8], on: &mut dyn FnMut(Event<'_>)) -> Result<(), FrameError> {
        while !data.is_empty() || self.cur.is_some_and(|c| c.remaining == 0) {
            let Some(mut cur) = self.cur else {
                // Header: collect bytes until its length is known and reached.
                let need = if self.hdr_len < 2 { 2 } else { header_len(self.hdr[1]) };
                let have = self.hdr_len as usize;
                let take = (need - have).min(data.len());
                self.hdr[have..have + take].copy_from_slice(&data[..take]);
                self.hdr_len += take as u8;
                data = &mut data[take..];
                if (self.hdr_len as usize) < need {
                    continue;
                }
                if need == 2 {
                    self.check_first_two()?;
                    if header_len(self.hdr[1]) > 2 {
                        continue;
                    }
                }
                self.cur = Some(self.parse_header()?);
                self.hdr_len = 0;
                let c = self.cur.unwrap_or_default();
                if c.first & 0x08 == 0 {
                    self.in_message = c.first & FIN == 0;
                    on(Event::Start { first: c.first, len: c.remaining });
                }
                continue;
            };
            let take = cur.remaining.min(data.len() as u64) as usize;
            let (chunk, rest) = std::mem::take(&mut data).split_at_mut(take);
            data = rest;
            if let Some(m) = cur.mask {
                for (i, b) in chunk.iter_mut().enumerate() {
                    *b ^= m[((cur.done as usize) + i) & 3];
                }
            }
            cur.remaining -= take as u64;
            cur.done += take as u64;
            let opcode = cur.first & 0x0f;
            let control = opcode & 0x08 != 0;
            if !control {
                if !chunk.is_empty() {
                    on(Event::Data(chunk));
                }
            } else if cur.remaining == 0 && self.ctrl.is_empty() {
                on(Event::Control { opcode, payload: chunk });
            } else {
                self.ctrl.extend_from_slice(chunk);
                if cur.remaining == 0 {
                    // Taken, so the buffer's memory goes with the frame.
                    let b = std::mem::take(&mut self.ctrl);
                    on(Event::Control { opcode, payload: &b });
                }
            }
            self.cur = if cur.remaining == 0 { None } else { Some(cur) };
        }
        Ok(())
    }

    fn check_first_two(&self) -> Result<(), FrameError> {
        let (b0, b1) = (self.hdr[0], self.hdr[1]);
        if b0 & 0x70 != 0 {
            return Err(FrameError::Reserved);
        }
        let opcode = b0 & 0x0f;
        match opcode {
            // RFC 6455 5.4: continuations only inside a message, a new message only outside.
            OP_CONT if !self.in_message => return Err(FrameError::Fragment),
            OP_TEXT | OP_BINARY if self.in_message => return Err(FrameError::Fragment),
            OP_CONT | OP_TEXT | OP_BINARY => {}
            OP_CLOSE | OP_PING | OP_PONG => {
                if b0 & FIN == 0 || (b1 & 0x7f) as usize > CONTROL_MAX {
                    return Err(FrameError::BadControl);
                }
            }
            o => return Err(FrameError::Opcode(o)),
        }
        let masked = b1 & 0x80 != 0;
        if masked != (self.from == From::Client) {
            return Err(FrameError::Mask);
        }
        Ok(())
    }

    fn parse_header(&self) -> Result<Current, FrameError> {
        let h = &self.hdr;
        let (len, at) = match h[1] & 0x7f {
            126 => (u64::from(u16::from_be_bytes([h[2], h[3]])), 4),
            127 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&h[2..10]);
                let v = u64::from_be_bytes(b);
                if v >> 63 != 0 {
                    return Err(FrameError::Length);
                }
                (v, 10)
            }
            n => (u64::from(n), 2),
        };
        let mask = (h[1] & 0x80 != 0).then(|| [h[at], h[at + 1], h[at + 2], h[at + 3]]);
        Ok(Current { first: h[0], remaining: len, mask, done: 0 })
    }
}

/// Writes a frame header into `out` (at least [`HEADER_MAX`] bytes); returns its length.
pub fn header(out: &mut [u8], first: u8, len: u64, mask: Option<[u8; 4]>) -> usize {
    let m = if mask.is_some() { 0x80 } else { 0 };
    out[0] = first;
    let mut at = if len < 126 {
        out[1] = m | len as u8;
        2
    } else if len <= u64::from(u16::MAX) {
        out[1] = m | 126;
        out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        out[1] = m | 127;
        out[2..10].copy_from_slice(&len.to_be_bytes());
        10
    };
    if let Some(k) = mask {
        out[at..at + 4].copy_from_slice(&k);
        at += 4;
    }
    at
}

/// A whole control frame (FIN set) into `out`; the payload is cut at [`CONTROL_MAX`] bytes and
/// masked with `mask` when given. Returns the frame's length.
pub fn control(out: &mut [u8; CONTROL_FRAME_MAX], opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> usize {
    let p = &payload[..payload.len().min(CONTROL_MAX)];
    let at = header(out, FIN | opcode, p.len() as u64, mask);
    out[at..at + p.len()].copy_from_slice(p);
    if let Some(k) = mask {
        for (i, b) in out[at..at + p.len()].iter_mut().enumerate() {
            *b ^= k[i & 3];
        }
    }
    at + p.len()
}

/// A random masking key (RFC 6455 §5.3 asks for an unpredictable one).
pub fn mask_key() -> [u8; 4] {
    fastrand::u32(..).to_ne_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every event of `bytes` fed in pieces of `step` bytes, as owned values.
    fn decode(from: From, bytes: &[u8], step: usize) -> Result<Vec<(u8, Vec<u8>)>, FrameError> {
        let mut d = Decoder::new(from);
        let mut out: Vec<(u8, Vec<u8>)> = Vec::new();
        let mut buf = bytes.to_vec();
        for piece in buf.chunks_mut(step.max(1)) {
            d.feed(piece, &mut |e| match e {
                Event::Start { first, .. } => out.push((first, Vec::new())),
                Event::Data(b) => out.last_mut().expect("data after start").1.extend_from_slice(b),
                Event::Control { opcode, payload } => out.push((FIN | opcode, payload.to_vec())),
            })?;
        }
        assert!(d.idle(), "whole frames leave the decoder idle");
        Ok(out)
    }

    fn frame(first: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut h = [0u8; HEADER_MAX];
        let n = header(&mut h, first, payload.len() as u64, mask);
        let mut v = h[..n].to_vec();
        let mut p = payload.to_vec();
        if let Some(k) = mask {
            for (i, b) in p.iter_mut().enumerate() {
                *b ^= k[i & 3];
            }
        }
        v.extend(p);
        v
    }

    #[test]
    fn rfc_examples() {
        // RFC 6455 §5.7: an unmasked "Hello" and a masked one.
        let plain = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        let masked = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        for step in [1, 2, 3, 100] {
            assert_eq!(decode(From::Server, &plain, step).unwrap(), vec![(0x81, b"Hello".to_vec())]);
            assert_eq!(decode(From::Client, &masked, step).unwrap(), vec![(0x81, b"Hello".to_vec())]);
        }
        assert_eq!(frame(0x81, b"Hello", Some([0x37, 0xfa, 0x21, 0x3d])), masked);
        // Fragmented "Hel" + "lo", and an unmasked ping "Hello".
        let frag = [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f];
        assert_eq!(decode(From::Server, &frag, 1).unwrap(), vec![(0x01, b"Hel".to_vec()), (0x80, b"lo".to_vec())]);
        let ping = [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        assert_eq!(decode(From::Server, &ping, 4).unwrap(), vec![(0x89, b"Hello".to_vec())]);
    }

    #[test]
    fn lengths_round_trip_in_any_split() {
        for len in [0usize, 1, 125, 126, 127, 65_535, 65_536, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            for mask in [None, Some([1, 2, 3, 4])] {
                let from = if mask.is_some() { From::Client } else { From::Server };
                let mut bytes = frame(FIN | OP_BINARY, &payload, mask);
                bytes.extend(frame(FIN | OP_PONG, b"xy", mask));
                for step in [1, 5, 13, 4096, usize::MAX] {
                    if len > 1000 && step < 13 {
                        continue;
                    }
                    let got = decode(from, &bytes, step).unwrap();
                    assert_eq!(
                        got,
                        vec![(FIN | OP_BINARY, payload.clone()), (FIN | OP_PONG, b"xy".to_vec())],
                        "{len} {step}"
                    );
                }
            }
        }
    }

    #[test]
    fn refusals() {
        let k = Some([9, 9, 9, 9]);
        assert_eq!(decode(From::Server, &frame(0x81, b"x", k), 100), Err(FrameError::Mask));
        assert_eq!(decode(From::Client, &frame(0x81, b"x", None), 100), Err(FrameError::Mask));
        assert_eq!(decode(From::Server, &[0xC1, 0x00], 100), Err(FrameError::Reserved));
        assert_eq!(decode(From::Server, &[0x83, 0x00], 100), Err(FrameError::Opcode(3)));
        assert_eq!(decode(From::Server, &[0x09, 0x00], 100), Err(FrameError::BadControl), "fragmented ping");
        assert_eq!(decode(From::Server, &[0x89, 126, 0, 200], 100), Err(FrameError::BadControl));
        let mut big = vec![0x82, 127];
        big.extend((1u64 << 63).to_be_bytes());
        assert_eq!(decode(From::Server, &big, 100), Err(FrameError::Length));
        // RFC 6455 5.4: a continuation with no message open, and a new message inside one.
        assert_eq!(decode(From::Server, &[0x80, 0x00], 100), Err(FrameError::Fragment));
        assert_eq!(decode(From::Server, &[0x01, 0x01, b'a', 0x81, 0x00], 100), Err(FrameError::Fragment));
        // A ping between the fragments is fine, and after the final fragment a new message is.
        let ok = [0x01, 0x01, b'a', 0x89, 0x00, 0x80, 0x01, b'b', 0x82, 0x00];
        assert_eq!(decode(From::Server, &ok, 1).unwrap().len(), 4);
    }

    #[test]
    fn control_frames_are_cut_and_masked() {
        let mut out = [0u8; CONTROL_FRAME_MAX];
        let n = control(&mut out, OP_PING, &[7u8; 300], Some([1, 2, 3, 4]));
        assert_eq!(n, CONTROL_FRAME_MAX);
        assert_eq!(decode(From::Client, &out[..n], 7).unwrap(), vec![(FIN | OP_PING, vec![7u8; 125])]);
        let n = control(&mut out, OP_CLOSE, &1000u16.to_be_bytes(), None);
        assert_eq!(&out[..n], &[0x88, 2, 0x03, 0xe8]);
    }
}
