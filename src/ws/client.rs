//! One client WebSocket connection on a non-blocking stream: the upgrade (request out,
//! response head in, within a deadline the caller's timer enforces), then the hold: frames read
//! and dropped, the server's pings answered, our own pings timed, a close frame answered and
//! the connection ended.
//!
//! With goon's traffic, each message goes out as one masked binary data frame
//! ([`Client::send_message`]) and the payload bytes of the server's data frames (text or
//! binary; a fragmented message's frames in order) are handed to the caller as they are
//! decoded, for response matching. What the stream did not take of a frame waits in the
//! connection's `out` buffer (allocated only while bytes wait): the rest of one data frame at
//! most, plus up to [`OUT_MAX`] bytes of control frames; a message is refused (`WouldBlock`)
//! while anything waits.
//!
//! Generic over any `Read + Write` stream that reports `WouldBlock` (a mio `TcpStream`, or a
//! TLS stream over one), driven by the caller's readiness events and timer. Nothing is buffered
//! per connection while it is held: reads land in the caller's scratch buffer and go through the
//! [`Decoder`]; the request and the response head are kept only when a write or a read came up
//! short, and only until the upgrade is decided.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use super::frame::{self, Decoder, Event, CONTROL_FRAME_MAX, FIN, HEADER_MAX, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG};
use super::handshake::{check_response, new_key, Refusal, RequestTemplate, Response, RESPONSE_HEAD_MAX};
use crate::stats::Latency;

/// Bytes read from one connection per wake-up before yielding.
pub const READ_BUDGET: usize = 64 * 1024;
/// Most unsent control-frame bytes a connection keeps (a peer that does not read); frames
/// past it are not sent (counted as `pings_unsent` for our pings).
pub const OUT_MAX: usize = 1024;
/// Distinct refusal statuses counted one by one; others go to `other`.
pub const STATUSES: usize = 8;

/// Upgrade failures by HTTP status: the first [`STATUSES`] distinct codes seen, then the rest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatusCounts {
    pub codes: [(u16, u64); STATUSES],
    pub other: u64,
}

impl StatusCounts {
    pub fn add(&mut self, code: u16, n: u64) {
        if n == 0 {
            return;
        }
        for slot in self.codes.iter_mut() {
            if slot.0 == code {
                slot.1 += n;
                return;
            }
            if slot.0 == 0 {
                *slot = (code, n);
                return;
            }
        }
        self.other += n;
    }

    pub fn merge(&mut self, o: &StatusCounts) {
        for (code, n) in o.codes.iter().filter(|c| c.0 != 0) {
            self.add(*code, *n);
        }
        self.other += o.other;
    }

    /// `(code, count)` by code, nonzero ones.
    pub fn sorted(&self) -> Vec<(u16, u64)> {
        let mut v: Vec<(u16, u64)> = self.codes.iter().copied().filter(|c| c.0 != 0 && c.1 > 0).collect();
        v.sort_unstable();
        v
    }

    pub fn total(&self) -> u64 {
        self.codes.iter().map(|c| c.1).sum::<u64>() + self.other
    }
}

/// Whole counts of a reactor's (or a run's) WebSocket connections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientCounts {
    /// Upgrade request sent, no answer yet.
    pub upgrading: u64,
    /// Upgraded and still open.
    pub upgraded: u64,
    /// Upgraded ever.
    pub upgraded_total: u64,
    /// Upgrades that failed, by cause: refused with a status, no complete answer within the
    /// deadline, the peer closed (or reset) first, an answer that is not a valid upgrade.
    pub failed_status: StatusCounts,
    pub failed_timeout: u64,
    pub failed_closed: u64,
    pub failed_bad_response: u64,
    pub pings_sent: u64,
    pub pongs: u64,
    /// Our pings whose pong had not come when the next was due, or when their connection
    /// ended before the run did.
    pub pings_unanswered: u64,
    /// Our pings sent and not yet answered (a gauge: one at most per open connection). At the
    /// run's end, `pings_sent` = `pongs` + `pings_unanswered` + this.
    pub pings_outstanding: u64,
    /// Pings not sent because the peer had not taken [`OUT_MAX`] bytes yet.
    pub pings_unsent: u64,
    /// The server's pings. The last of each read is answered, as RFC 6455 allows (a pong
    /// for only the most recent ping), while the server takes what goon sends; a server that
    /// stops reading gets no more than [`OUT_MAX`] bytes of them queued.
    pub pings_received: u64,
    /// Close frames the server sent (each answered, then the connection closed).
    pub close_frames: u64,
    /// Frames the decoder refused (the connection closed).
    pub protocol_errors: u64,
}

impl ClientCounts {
    pub fn failed(&self) -> u64 {
        self.failed_status.total() + self.failed_timeout + self.failed_closed + self.failed_bad_response
    }

    /// A ping in flight will get no pong counted: the next came due, or its connection ended.
    fn ping_unanswered(&mut self) {
        self.pings_unanswered += 1;
        self.pings_outstanding -= 1;
    }

    pub fn merge(&mut self, o: &ClientCounts) {
        self.upgrading += o.upgrading;
        self.upgraded += o.upgraded;
        self.upgraded_total += o.upgraded_total;
        self.failed_status.merge(&o.failed_status);
        self.failed_timeout += o.failed_timeout;
        self.failed_closed += o.failed_closed;
        self.failed_bad_response += o.failed_bad_response;
        self.pings_sent += o.pings_sent;
        self.pongs += o.pongs;
        self.pings_unanswered += o.pings_unanswered;
        self.pings_outstanding += o.pings_outstanding;
        self.pings_unsent += o.pings_unsent;
        self.pings_received += o.pings_received;
        self.close_frames += o.close_frames;
        self.protocol_errors += o.protocol_errors;
    }
}

/// What a reactor's WebSocket connections measured: counts plus the latencies since the last
/// swap.
#[derive(Debug, Default)]
pub struct ClientStats {
    pub counts: ClientCounts,
    /// Upgrade request sent (TCP connect done, or the TLS handshake with wss) → 101 received.
    pub upgrade: Latency,
    /// Ping sent → its pong received.
    pub ping: Latency,
}

/// The run's WebSocket settings.
#[derive(Clone, Debug)]
pub struct ClientPlan {
    pub template: RequestTemplate,
    /// Upgrade deadline, from the TCP connect.
    pub timeout: Duration,
    /// `--ws-ping`.
    pub ping: Option<Duration>,
}

struct Upgrade {
    key: [u8; 24],
    since: Instant,
    /// What of the request the stream has not taken yet.
    unsent: Vec<u8>,
    /// A response head that came in pieces.
    head: Vec<u8>,
}

/// A held connection: decoder, the outstanding ping, unsent control frames.
struct Open {
    dec: Decoder,
    ping: Option<(u32, Instant)>,
    /// The instant the caller's pings keep the period from ([`Client::set_ping_grid`]).
    ping_grid: Option<Instant>,
    seq: u32,
    out: Vec<u8>,
    /// How many bytes at the start of `out` are the rest of a data frame (control frames
    /// queue behind it, [`OUT_MAX`] bytes of them at most).
    data: usize,
}

/// Bytes masked and written per step by [`Client::send_message`] (a stack buffer).
const SEND_CHUNK: usize = 8 * 1024;

enum Phase {
    Upgrading(Box<Upgrade>),
    Open(Open),
    /// Counted as ended (failed or closed); the caller closes the socket.
    Done,
}

/// One connection; see the module comment.
pub struct Client(Phase);

/// How [`Client::on_ready`] may end its reads of an open connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edge {
    /// A short read ends them: a readable edge of plain TCP without a hang-up or urgent data
    /// ([`crate::engine::Ready::short_read_ends_edge`]), where a read that fills less than the
    /// buffer has emptied the socket and the next bytes bring a new edge.
    ShortReadEnds,
    /// Until `WouldBlock` (TLS, which buffers records; a hang-up; work deferred from a turn).
    Drain,
}

/// What the caller does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Wait for the next event or timer.
    Idle,
    /// The read budget ran out with data left: call again next turn.
    More,
    /// Upgraded now: arm the ping timer (the deadline timer is no longer needed) and call
    /// again next turn (more frames may be waiting).
    Upgraded,
    /// Close the socket (already counted).
    Close,
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

impl Client {
    /// The TCP connect completed at `now`: sends the upgrade request. Arm the deadline at
    /// `now + plan.timeout`.
    pub fn start<S: Write>(s: &mut S, plan: &ClientPlan, now: Instant, st: &mut ClientStats) -> (Client, Step) {
        let key = new_key();
        let req = plan.template.request(&key);
        st.counts.upgrading += 1;
        let mut c =
            Client(Phase::Upgrading(Box::new(Upgrade { key, since: now, unsent: Vec::new(), head: Vec::new() })));
        let sent = match write_some(s, &req) {
            Ok(n) => n,
            Err(_) => return (c.end_upgrade(st, Fail::Closed), Step::Close),
        };
        if let Phase::Upgrading(u) = &mut c.0 {
            if sent < req.len() {
                u.unsent = req[sent..].to_vec();
            }
        }
        (c, Step::Idle)
    }

    pub fn is_open(&self) -> bool {
        matches!(self.0, Phase::Open(_))
    }

    /// Once open: the caller pings at `at + k × period` (k ≥ 1), and keeps `at` here.
    pub fn set_ping_grid(&mut self, at: Instant) {
        if let Phase::Open(o) = &mut self.0 {
            o.ping_grid = Some(at);
        }
    }

    /// What [`Client::set_ping_grid`] kept, once open.
    pub fn ping_grid(&self) -> Option<Instant> {
        match &self.0 {
            Phase::Open(o) => o.ping_grid,
            _ => None,
        }
    }

    /// A readiness event (any): writes what is pending, reads what there is.
    /// `on_data` gets the payload bytes of the server's data frames, in order.
    pub fn on_ready<S: Read + Write>(
        &mut self,
        s: &mut S,
        edge: Edge,
        scratch: &mut [u8],
        now: Instant,
        st: &mut ClientStats,
        on_data: &mut dyn FnMut(&[u8]),
    ) -> Step {
        match &mut self.0 {
            Phase::Upgrading(_) => self.upgrade(s, scratch, now, st, on_data),
            Phase::Open(_) => self.hold(s, edge, scratch, now, st, READ_BUDGET, on_data),
            Phase::Done => Step::Close,
        }
    }

    /// The caller's timer: the upgrade deadline, or the next ping.
    pub fn on_timer<S: Write>(&mut self, s: &mut S, now: Instant, st: &mut ClientStats) -> Step {
        match &mut self.0 {
            Phase::Upgrading(_) => {
                let _ = self.end_upgrade(st, Fail::Timeout);
                Step::Close
            }
            Phase::Open(o) => {
                if o.ping.take().is_some() {
                    st.counts.ping_unanswered();
                }
                o.seq = o.seq.wrapping_add(1);
                let mut f = [0u8; CONTROL_FRAME_MAX];
                let n = frame::control(&mut f, OP_PING, &o.seq.to_be_bytes(), Some(frame::mask_key()));
                match o.send(s, &f[..n]) {
                    Ok(true) => {
                        st.counts.pings_sent += 1;
                        st.counts.pings_outstanding += 1;
                        o.ping = Some((o.seq, now));
                        Step::Idle
                    }
                    Ok(false) => {
                        st.counts.pings_unsent += 1;
                        Step::Idle
                    }
                    Err(_) => self.end(st),
                }
            }
            Phase::Done => Step::Close,
        }
    }

    /// The socket is being closed for a reason the client did not see (the caller's own
    /// close, a dial-level failure): an upgrade in progress counts as failed, closed.
    pub fn gone(&mut self, st: &mut ClientStats) {
        match self.0 {
            Phase::Upgrading(_) => {
                let _ = self.end_upgrade(st, Fail::Closed);
            }
            Phase::Open(_) => {
                let _ = self.end(st);
            }
            Phase::Done => {}
        }
    }

    fn end_upgrade(&mut self, st: &mut ClientStats, f: Fail) -> Client {
        if matches!(self.0, Phase::Upgrading(_)) {
            st.counts.upgrading -= 1;
            match f {
                Fail::Timeout => st.counts.failed_timeout += 1,
                Fail::Closed => st.counts.failed_closed += 1,
                Fail::Bad => st.counts.failed_bad_response += 1,
                Fail::Status(code) => st.counts.failed_status.add(code, 1),
            }
        }
        self.0 = Phase::Done;
        Client(Phase::Done)
    }

    /// An open connection ends.
    fn end(&mut self, st: &mut ClientStats) -> Step {
        if let Phase::Open(o) = &self.0 {
            st.counts.upgraded -= 1;
            if o.ping.is_some() {
                st.counts.ping_unanswered();
            }
        }
        self.0 = Phase::Done;
        Step::Close
    }

    fn upgrade<S: Read + Write>(
        &mut self,
        s: &mut S,
        scratch: &mut [u8],
        now: Instant,
        st: &mut ClientStats,
        on_data: &mut dyn FnMut(&[u8]),
    ) -> Step {
        let Phase::Upgrading(u) = &mut self.0 else { return Step::Idle };
        if !u.unsent.is_empty() {
            match write_some(s, &u.unsent) {
                Ok(n) => {
                    u.unsent.drain(..n);
                    if !u.unsent.is_empty() {
                        return Step::Idle;
                    }
                    u.unsent = Vec::new();
                }
                Err(_) => {
                    let _ = self.end_upgrade(st, Fail::Closed);
                    return Step::Close;
                }
            }
        }
        loop {
            let Phase::Upgrading(u) = &mut self.0 else { return Step::Idle };
            let room = RESPONSE_HEAD_MAX.saturating_sub(u.head.len()).max(1).min(scratch.len());
            let n = match s.read(&mut scratch[..room]) {
                Ok(0) => {
                    let _ = self.end_upgrade(st, Fail::Closed);
                    return Step::Close;
                }
                Ok(n) => n,
                Err(e) if would_block(&e) => return Step::Idle,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    let _ = self.end_upgrade(st, Fail::Closed);
                    return Step::Close;
                }
            };
            // The head usually arrives in one read: parse it where it landed.
            let verdict = if u.head.is_empty() {
                check_response(&scratch[..n], &u.key)
            } else {
                u.head.extend_from_slice(&scratch[..n]);
                check_response(&u.head, &u.key)
            };
            match verdict {
                Response::Partial => {
                    if u.head.is_empty() {
                        u.head.extend_from_slice(&scratch[..n]);
                    }
                }
                Response::Refused(Refusal::Status(code)) => {
                    let _ = self.end_upgrade(st, Fail::Status(code));
                    return Step::Close;
                }
                Response::Refused(Refusal::Bad(why)) => {
                    log::debug!("websocket upgrade: bad response: {why}");
                    let _ = self.end_upgrade(st, Fail::Bad);
                    return Step::Close;
                }
                Response::Accepted { head_len } => {
                    st.upgrade.record(now.saturating_duration_since(u.since));
                    st.counts.upgrading -= 1;
                    st.counts.upgraded += 1;
                    st.counts.upgraded_total += 1;
                    // Frames that came with the head: decode them from scratch.
                    let mut rest: Vec<u8> =
                        if u.head.is_empty() { scratch[head_len..n].to_vec() } else { u.head[head_len..].to_vec() };
                    self.0 = Phase::Open(Open {
                        dec: Decoder::new(frame::From::Server),
                        ping: None,
                        ping_grid: None,
                        seq: 0,
                        out: Vec::new(),
                        data: 0,
                    });
                    if !rest.is_empty() {
                        if let Some(step) = self.frames(s, &mut rest, now, st, on_data) {
                            return step;
                        }
                    }
                    // More may be waiting: the caller comes back (`Step::Upgraded`).
                    return Step::Upgraded;
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn hold<S: Read + Write>(
        &mut self,
        s: &mut S,
        edge: Edge,
        scratch: &mut [u8],
        now: Instant,
        st: &mut ClientStats,
        mut budget: usize,
        on_data: &mut dyn FnMut(&[u8]),
    ) -> Step {
        if let Phase::Open(o) = &mut self.0 {
            if o.flush(s).is_err() {
                return self.end(st);
            }
        }
        loop {
            let n = match s.read(scratch) {
                Ok(0) => return self.end(st),
                Ok(n) => n,
                Err(e) if would_block(&e) => return Step::Idle,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return self.end(st),
            };
            let short = n < scratch.len();
            if let Some(step) = self.frames(s, &mut scratch[..n], now, st, on_data) {
                return step;
            }
            if short && edge == Edge::ShortReadEnds {
                return Step::Idle;
            }
            budget = budget.saturating_sub(n);
            if budget == 0 {
                return Step::More;
            }
        }
    }

    /// Decodes `data`; `Some` when the connection must end.
    fn frames<S: Write>(
        &mut self,
        s: &mut S,
        data: &mut [u8],
        now: Instant,
        st: &mut ClientStats,
        on_data: &mut dyn FnMut(&[u8]),
    ) -> Option<Step> {
        let Phase::Open(o) = &mut self.0 else { return Some(Step::Close) };
        let mut ping_reply: Option<([u8; frame::CONTROL_MAX], usize)> = None;
        let mut close: Option<[u8; 2]> = None;
        let (outstanding, c) = (o.ping, &mut st.counts);
        let mut answered = false;
        let r = o.dec.feed(data, &mut |e| match e {
            Event::Control { opcode: OP_PING, payload } => {
                c.pings_received += 1;
                let mut b = [0u8; frame::CONTROL_MAX];
                b[..payload.len()].copy_from_slice(payload);
                ping_reply = Some((b, payload.len()));
            }
            Event::Control { opcode: OP_PONG, payload } => {
                if let Some((seq, at)) = outstanding.filter(|(seq, _)| payload == seq.to_be_bytes()) {
                    let _ = seq;
                    if !answered {
                        c.pongs += 1;
                        st.ping.record(now.saturating_duration_since(at));
                        answered = true;
                    }
                }
            }
            Event::Data(b) => on_data(b),
            Event::Control { opcode: OP_CLOSE, payload } if close.is_none() => {
                c.close_frames += 1;
                close = Some(if payload.len() >= 2 { [payload[0], payload[1]] } else { 1000u16.to_be_bytes() });
            }
            _ => {}
        });
        if answered {
            o.ping = None;
            st.counts.pings_outstanding -= 1;
        }
        if r.is_err() {
            st.counts.protocol_errors += 1;
            let mut f = [0u8; CONTROL_FRAME_MAX];
            let n = frame::control(&mut f, OP_CLOSE, &1002u16.to_be_bytes(), Some(frame::mask_key()));
            let _ = o.send(s, &f[..n]);
            return Some(self.end(st));
        }
        let mut f = [0u8; CONTROL_FRAME_MAX];
        if let Some((b, len)) = ping_reply {
            let n = frame::control(&mut f, OP_PONG, &b[..len], Some(frame::mask_key()));
            if o.send(s, &f[..n]).is_err() {
                return Some(self.end(st));
            }
        }
        if let Some(code) = close {
            let n = frame::control(&mut f, OP_CLOSE, &code, Some(frame::mask_key()));
            let _ = o.send(s, &f[..n]);
            return Some(self.end(st));
        }
        None
    }

    /// Sends `msg` as one masked binary data frame; returns its length (the payload bytes),
    /// or `WouldBlock` while earlier bytes still wait (nothing of `msg` is taken then). What
    /// the stream does not take now waits in the connection's `out` buffer and goes on its
    /// next readiness event. `NotConnected` before the upgrade or after the end.
    pub fn send_message<S: Write>(&mut self, s: &mut S, msg: &[u8]) -> io::Result<usize> {
        let Phase::Open(o) = &mut self.0 else { return Err(io::ErrorKind::NotConnected.into()) };
        o.flush(s)?;
        if !o.out.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let key = frame::mask_key();
        let mut buf = [0u8; SEND_CHUNK];
        let mut len = frame::header(&mut buf, FIN | OP_BINARY, msg.len() as u64, Some(key));
        let mut at = 0;
        loop {
            let take = (msg.len() - at).min(SEND_CHUNK - len);
            mask_into(&mut buf[len..len + take], &msg[at..at + take], key, at);
            len += take;
            at += take;
            let n = write_some(s, &buf[..len])?;
            if n < len {
                // The stream is full: the rest of the frame waits, masked, in `out`.
                o.out.reserve_exact(len - n + msg.len() - at);
                o.out.extend_from_slice(&buf[n..len]);
                let from = o.out.len();
                o.out.resize(from + msg.len() - at, 0);
                mask_into(&mut o.out[from..], &msg[at..], key, at);
                o.data = o.out.len();
                return Ok(msg.len());
            }
            if at == msg.len() {
                return Ok(msg.len());
            }
            len = 0;
        }
    }
}

/// `src` masked with `key` into `dst` (same length); `phase` is `src`'s offset in the payload.
fn mask_into(dst: &mut [u8], src: &[u8], key: [u8; 4], phase: usize) {
    for (i, (d, b)) in dst.iter_mut().zip(src).enumerate() {
        *d = b ^ key[(phase + i) & 3];
    }
}

impl Open {
    /// Sends a control `frame` after what waits; false when it was dropped for want of room
    /// (more than [`OUT_MAX`] bytes of control frames waiting).
    fn send<S: Write>(&mut self, s: &mut S, frame: &[u8]) -> io::Result<bool> {
        self.flush(s)?;
        if !self.out.is_empty() {
            if self.out.len() - self.data + frame.len() > OUT_MAX {
                return Ok(false);
            }
            self.out.extend_from_slice(frame);
            return Ok(true);
        }
        let n = write_some(s, frame)?;
        if n < frame.len() {
            self.out.extend_from_slice(&frame[n..]);
        }
        Ok(true)
    }

    /// Writes what waits; the buffer's memory goes once it is empty.
    fn flush<S: Write>(&mut self, s: &mut S) -> io::Result<()> {
        if !self.out.is_empty() {
            let n = write_some(s, &self.out)?;
            self.out.drain(..n);
            self.data = self.data.saturating_sub(n);
            if self.out.is_empty() {
                self.out = Vec::new();
            }
        }
        Ok(())
    }
}

const _: () = assert!(SEND_CHUNK > HEADER_MAX);

#[derive(Clone, Copy, Debug)]
enum Fail {
    Timeout,
    Closed,
    Bad,
    Status(u16),
}

/// Writes as much of `b` as the stream takes now (0 on `WouldBlock`).
fn write_some<S: Write>(s: &mut S, b: &[u8]) -> io::Result<usize> {
    let mut sent = 0;
    while sent < b.len() {
        match s.write(&b[sent..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => sent += n,
            Err(e) if would_block(&e) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if sent > 0 {
        s.flush()?;
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An in-memory stream: reads from `input` (then WouldBlock, or EOF when `eof`), writes to
    /// `output`, taking at most `take` bytes per write.
    struct Mem {
        input: Vec<u8>,
        at: usize,
        eof: bool,
        output: Vec<u8>,
        take: usize,
    }

    impl Read for Mem {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            if self.at == self.input.len() {
                return if self.eof { Ok(0) } else { Err(io::ErrorKind::WouldBlock.into()) };
            }
            let n = b.len().min(self.input.len() - self.at);
            b[..n].copy_from_slice(&self.input[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    impl Write for Mem {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if self.take == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = b.len().min(self.take);
            self.output.extend_from_slice(&b[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn plan(ping: Option<Duration>) -> ClientPlan {
        ClientPlan { template: RequestTemplate::new("/", "h:1", &[]), timeout: Duration::from_secs(1), ping }
    }

    fn key_of(req: &[u8]) -> String {
        let t = String::from_utf8_lossy(req);
        t.split("Sec-WebSocket-Key: ").nth(1).unwrap()[..24].to_string()
    }

    #[test]
    fn upgrade_hold_ping_and_close() {
        let mut s = Mem { input: Vec::new(), at: 0, eof: false, output: Vec::new(), take: 7 };
        let mut st = ClientStats::default();
        let t0 = Instant::now();
        let mut scratch = vec![0u8; 4096];
        let (mut c, step) = Client::start(&mut s, &plan(None), t0, &mut st);
        assert_eq!((step, st.counts.upgrading), (Step::Idle, 1));
        // The stream took 7 bytes at a time: the rest goes out on later events.
        s.take = usize::MAX;
        assert_eq!(c.on_ready(&mut s, Edge::Drain, &mut scratch, t0, &mut st, &mut |_| {}), Step::Idle);
        assert!(s.output.ends_with(b"\r\n\r\n"));
        let key = key_of(&s.output);
        // The 101 in two pieces, with a server ping right behind it.
        let mut resp = crate::http::upgrade_response(&key);
        resp.extend_from_slice(&[0x89, 0x02, b'h', b'i']);
        s.input = resp[..10].to_vec();
        assert_eq!(c.on_ready(&mut s, Edge::Drain, &mut scratch, t0, &mut st, &mut |_| {}), Step::Idle);
        s.input.extend_from_slice(&resp[10..]);
        s.output.clear();
        let t1 = t0 + Duration::from_millis(3);
        assert_eq!(c.on_ready(&mut s, Edge::Drain, &mut scratch, t1, &mut st, &mut |_| {}), Step::Upgraded);
        assert_eq!((st.counts.upgrading, st.counts.upgraded, st.counts.upgraded_total), (0, 1, 1));
        assert_eq!(st.upgrade.count, 1);
        assert_eq!(st.upgrade.max_ns, 3_000_000);
        // The ping was answered with a masked pong carrying its payload.
        let mut out = s.output.clone();
        let mut d = Decoder::new(frame::From::Client);
        let mut got = Vec::new();
        d.feed(&mut out, &mut |e| {
            if let Event::Control { opcode, payload } = e {
                got.push((opcode, payload.to_vec()));
            }
        })
        .unwrap();
        assert_eq!(got, vec![(OP_PONG, b"hi".to_vec())]);
        // Our ping, its pong 2 ms later; a stale pong after it is not counted.
        s.output.clear();
        assert_eq!(c.on_timer(&mut s, t1, &mut st), Step::Idle);
        assert_eq!(st.counts.pings_sent, 1);
        let mut out = s.output.clone();
        let mut payload = Vec::new();
        Decoder::new(frame::From::Client)
            .feed(&mut out, &mut |e| {
                if let Event::Control { payload: p, .. } = e {
                    payload = p.to_vec();
                }
            })
            .unwrap();
        let mut pong = vec![0x8A, payload.len() as u8];
        pong.extend_from_slice(&payload);
        s.input.extend_from_slice(&pong);
        s.input.extend_from_slice(&pong);
        assert_eq!(
            c.on_ready(&mut s, Edge::Drain, &mut scratch, t1 + Duration::from_millis(2), &mut st, &mut |_| {}),
            Step::Idle
        );
        assert_eq!((st.counts.pongs, st.ping.count, st.ping.max_ns), (1, 1, 2_000_000));
        // A ping not answered before the next one is counted.
        c.on_timer(&mut s, t1, &mut st);
        c.on_timer(&mut s, t1, &mut st);
        assert_eq!((st.counts.pings_sent, st.counts.pings_unanswered), (3, 1));
        // The third is in flight: every ping sent is answered, unanswered or outstanding.
        assert_eq!(st.counts.pings_outstanding, 1);
        // A close frame: answered, the connection ends, and the ping in flight with it.
        s.input.extend_from_slice(&[0x88, 0x02, 0x03, 0xe8]);
        assert_eq!(c.on_ready(&mut s, Edge::Drain, &mut scratch, t1, &mut st, &mut |_| {}), Step::Close);
        assert_eq!((st.counts.upgraded, st.counts.close_frames), (0, 1));
        assert_eq!((st.counts.pings_unanswered, st.counts.pings_outstanding), (2, 0));
        c.gone(&mut st);
        assert_eq!(st.counts.upgraded, 0, "counted once");
        assert_eq!((st.counts.pings_unanswered, st.counts.pings_outstanding), (2, 0), "counted once");
    }

    /// A client upgraded over `s` (which takes everything while upgrading).
    fn upgraded(s: &mut Mem, st: &mut ClientStats) -> Client {
        let t0 = Instant::now();
        let mut scratch = vec![0u8; 4096];
        let (mut c, _) = Client::start(s, &plan(None), t0, st);
        s.input = crate::http::upgrade_response(&key_of(&s.output));
        assert_eq!(c.on_ready(s, Edge::Drain, &mut scratch, t0, st, &mut |_| {}), Step::Upgraded);
        s.output.clear();
        c
    }

    /// Every client frame in `bytes`: (first header byte, unmasked payload).
    fn client_frames(bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut b = bytes.to_vec();
        let mut out: Vec<(u8, Vec<u8>)> = Vec::new();
        let mut d = Decoder::new(frame::From::Client);
        d.feed(&mut b, &mut |e| match e {
            Event::Start { first, .. } => out.push((first, Vec::new())),
            Event::Data(p) => out.last_mut().unwrap().1.extend_from_slice(p),
            Event::Control { opcode, payload } => out.push((FIN | opcode, payload.to_vec())),
        })
        .unwrap();
        assert!(d.idle(), "whole frames only");
        out
    }

    /// `Mem` that takes at most `left` bytes in all, then blocks.
    struct Budget {
        m: Mem,
        left: usize,
    }

    impl Read for Budget {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            self.m.read(b)
        }
    }

    impl Write for Budget {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let n = self.m.write(&b[..b.len().min(self.left)])?;
            if n == 0 && !b.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.left -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Counts the reads made of `m`.
    struct Counted {
        m: Mem,
        reads: usize,
    }

    impl Read for Counted {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            self.reads += 1;
            self.m.read(b)
        }
    }

    impl Write for Counted {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.m.write(b)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_short_read_ends_a_plain_edge_and_a_drain_reads_to_would_block() {
        let mut m = Mem { input: Vec::new(), at: 0, eof: false, output: Vec::new(), take: usize::MAX };
        let mut st = ClientStats::default();
        let mut c = upgraded(&mut m, &mut st);
        let mut s = Counted { m, reads: 0 };
        let mut scratch = vec![0u8; 4096];
        let t = Instant::now();
        let two_frames = [&[FIN | OP_BINARY, 3][..], b"abc", &[FIN | OP_BINARY, 2], b"de"].concat();
        for (edge, reads) in [(Edge::ShortReadEnds, 1), (Edge::Drain, 2)] {
            s.m.input.extend_from_slice(&two_frames);
            s.reads = 0;
            let mut got = Vec::new();
            assert_eq!(
                c.on_ready(&mut s, edge, &mut scratch, t, &mut st, &mut |b| got.extend_from_slice(b)),
                Step::Idle
            );
            assert_eq!((got.as_slice(), s.reads), (&b"abcde"[..], reads), "{edge:?}");
        }
        // A read that fills the buffer is not short: the next one is made.
        s.m.input.extend_from_slice(&[&[FIN | OP_BINARY, 126, 0x10, 0x00][..], &[7u8; 4096]].concat());
        s.reads = 0;
        let mut got = 0;
        assert_eq!(
            c.on_ready(&mut s, Edge::ShortReadEnds, &mut scratch, t, &mut st, &mut |b| got += b.len()),
            Step::Idle
        );
        assert_eq!((got, s.reads), (4096, 2));
    }

    #[test]
    fn a_message_split_over_partial_writes_resumes() {
        let mut m = Mem { input: Vec::new(), at: 0, eof: false, output: Vec::new(), take: usize::MAX };
        let mut st = ClientStats::default();
        let mut c = upgraded(&mut m, &mut st);
        let mut s = Budget { m, left: 5_000 };
        let mut scratch = vec![0u8; 4096];
        let t = Instant::now();
        // 20 000 bytes: more than one stack chunk. The stream takes 5 000 bytes, then nothing.
        let msg: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(c.send_message(&mut s, &msg).unwrap(), msg.len(), "taken whole");
        assert_eq!(s.m.output.len(), 5_000);
        assert_eq!(c.send_message(&mut s, b"next").unwrap_err().kind(), io::ErrorKind::WouldBlock);
        // A ping meanwhile queues behind the frame (control frames never split a data frame).
        assert_eq!(c.on_timer(&mut s, t, &mut st), Step::Idle);
        assert_eq!(st.counts.pings_sent, 1);
        let Phase::Open(o) = &c.0 else { panic!() };
        assert!(o.out.len() < msg.len() + 64, "the rest of one frame and a ping wait: {}", o.out.len());
        // The stream takes 7 bytes per write and 700 per event now: the waiting bytes go on
        // readiness events.
        s.m.take = 7;
        for _ in 0..10_000 {
            if matches!(&c.0, Phase::Open(o) if o.out.is_empty()) {
                break;
            }
            s.left = 700;
            assert_eq!(c.on_ready(&mut s, Edge::Drain, &mut scratch, t, &mut st, &mut |_| {}), Step::Idle);
        }
        let Phase::Open(o) = &c.0 else { panic!() };
        assert_eq!((o.out.capacity(), o.data), (0, 0), "the buffer's memory goes once it is empty");
        s.left = usize::MAX;
        assert_eq!(c.send_message(&mut s, b"next").unwrap(), 4);
        let frames = client_frames(&s.m.output);
        assert_eq!(frames.len(), 3, "message, ping, message");
        assert_eq!(frames[0], (FIN | OP_BINARY, msg));
        assert_eq!(frames[1].0, FIN | OP_PING);
        assert_eq!(frames[2], (FIN | OP_BINARY, b"next".to_vec()));
    }

    #[test]
    fn a_response_split_over_frames_and_reads_is_matched() {
        use crate::goon::traffic::{Payload, Traffic, TrafficPlan, Until};
        let mut s = Mem { input: Vec::new(), at: 0, eof: false, output: Vec::new(), take: usize::MAX };
        let mut st = ClientStats::default();
        let mut c = upgraded(&mut s, &mut st);
        let plan = TrafficPlan {
            first_message: Some(Payload(b"hello".to_vec())),
            message: None,
            message_rate: None,
            duration: Duration::from_secs(1),
            expect_bytes: Some(5),
            marker: None,
            until: Until::Bytes(5),
        };
        let mut t = Traffic::new(std::sync::Arc::new(plan));
        let t0 = Instant::now();
        let mut flow = t.flow(t0);
        let mut wire = crate::goon::ws::WsWire { client: &mut c, sock: &mut s };
        t.pump(&mut flow, &mut wire, t0).unwrap();
        assert_eq!((t.counts.sent, t.counts.bytes_up), (1, 5), "payload bytes up");
        assert_eq!(client_frames(&s.output), vec![(FIN | OP_BINARY, b"hello".to_vec())]);
        // The echo as a fragmented message: "he" (binary, no FIN), a ping between the
        // fragments, "llo" (continuation, FIN); the bytes arrive 3 at a time.
        let mut echo = vec![OP_BINARY, 2, b'h', b'e', FIN | OP_PING, 1, b'p', FIN, 3, b'l', b'l', b'o'];
        let mut scratch = vec![0u8; 3];
        let mut pieces = 0;
        for chunk in echo.chunks_mut(3) {
            s.input.extend_from_slice(chunk);
            let step =
                c.on_ready(&mut s, Edge::Drain, &mut scratch, t0, &mut st, &mut |b| t.on_bytes(&mut flow, b, t0));
            assert_eq!(step, Step::Idle);
            pieces += 1;
            if pieces < 4 {
                assert_eq!(t.counts.responses, 0, "not complete before its last byte");
            }
        }
        assert_eq!((t.counts.responses, t.counts.bytes_down, t.counts.unmatched), (1, 5, 0));
        assert_eq!(st.counts.pings_received, 1, "the ping between fragments was answered");
    }

    #[test]
    fn failures_by_cause() {
        let t0 = Instant::now();
        let mut scratch = vec![0u8; 4096];
        let mut st = ClientStats::default();
        let mut s = Mem { input: Vec::new(), at: 0, eof: false, output: Vec::new(), take: usize::MAX };
        let (mut c, _) = Client::start(&mut s, &plan(None), t0, &mut st);
        s.input = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec();
        assert_eq!(c.on_ready(&mut s, Edge::Drain, &mut scratch, t0, &mut st, &mut |_| {}), Step::Close);
        let mut s = Mem { input: Vec::new(), at: 0, eof: false, output: Vec::new(), take: usize::MAX };
        let (mut c, _) = Client::start(&mut s, &plan(None), t0, &mut st);
        assert_eq!(c.on_timer(&mut s, t0, &mut st), Step::Close);
        c.gone(&mut st);
        let mut s = Mem { input: Vec::new(), at: 0, eof: true, output: Vec::new(), take: usize::MAX };
        let (mut c, _) = Client::start(&mut s, &plan(None), t0, &mut st);
        assert_eq!(c.on_ready(&mut s, Edge::Drain, &mut scratch, t0, &mut st, &mut |_| {}), Step::Close);
        let mut s = Mem { input: b"garbage\r\n\r\n".to_vec(), at: 0, eof: false, output: Vec::new(), take: usize::MAX };
        let (mut c, _) = Client::start(&mut s, &plan(None), t0, &mut st);
        assert_eq!(c.on_ready(&mut s, Edge::Drain, &mut scratch, t0, &mut st, &mut |_| {}), Step::Close);
        let (mut c, _) = Client::start(&mut s, &plan(None), t0, &mut st);
        c.gone(&mut st);
        let k = st.counts;
        assert_eq!(k.failed_status.sorted(), vec![(404, 1)]);
        assert_eq!((k.failed_timeout, k.failed_closed, k.failed_bad_response, k.upgrading), (1, 2, 1, 0));
        assert_eq!(k.failed(), 5);
    }

    #[test]
    fn status_counts_merge_by_code() {
        let mut a = StatusCounts::default();
        a.add(403, 2);
        a.add(404, 1);
        let mut b = StatusCounts::default();
        b.add(404, 5);
        b.add(500, 1);
        a.merge(&b);
        assert_eq!(a.sorted(), vec![(403, 2), (404, 6), (500, 1)]);
        for code in 200..220 {
            a.add(code, 1);
        }
        assert_eq!(a.total(), 9 + 20);
        assert_eq!(a.other, 20 - (STATUSES as u64 - 3));
    }
}
