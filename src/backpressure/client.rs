//! `netforge bp client`: pushes payloads at a paced rate and samples its own sockets.
//!
//! One reactor thread owns every connection (a paced write and a sample per connection per
//! interval are cheap; thousands fit on one loop), so the samples of all connections are taken
//! in the same loop turn and the aggregate series is exact in time. The coordinator (the calling
//! thread) folds the samples into one [`Analysis`] per connection plus one for the aggregate
//! (bytes and queues summed, the smallest peer window), prints a line per `stats_interval`, and
//! renders the verdict.
//!
//! Ending a run (duration elapsed, `total` payloads written, or SIGINT/SIGTERM): no new payload
//! is started; a payload partly in the kernel is completed (bounded by [`FLUSH_TIMEOUT`]: behind
//! a zero window the rest may not fit for minutes, and such a connection is reported as cut
//! short); then the final sample is taken (bytes written, SIOCOUTQ) and the connection is closed:
//! TCP with a FIN after the queued data, waiting at most [`DRAIN_LINGER`] for the server to
//! acknowledge it, WebSocket with a Close 1000 frame, waiting at most [`CLOSE_LINGER`] for the
//! server's reply. A connection with bytes still queued after that (a slow reader may not reach
//! them for minutes) is reset with SO_LINGER 0, counted and reported, so nothing is left
//! behind for the kernel to drain after we exit.
//!
//! Exit status: 0 for a completed run whatever the verdict (the verdict is the measurement, not
//! a failure); 1 when a connection cannot be established, the configuration is wrong, or
//! nothing could be measured (every connection ended before its first sample: reset, closed,
//! the other protocol, no handshake answer), always with the reason.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use mio::net::TcpStream;
use mio::{Interest, Token};
use socket2::{Domain, Protocol as SockProtocol, Socket, Type};
use tungstenite::Message;

use super::config::{ClientConfig, Protocol};
use super::verdict::{self, Analysis, Sample};
use super::ws::{ClientHandshake, Flush, HandshakeStep, Metered, Recv, SendStatus, WsConn};
use crate::engine::coordinator::{self, Ctl, Flow, Role};
use crate::engine::{role_index, role_token, Cx, Handler, Pool, Readiness, Ready};
use crate::net::tcp_info;
use crate::sys::Signal;

/// Bytes one connection may write per wake-up before yielding to the others.
pub const WRITE_BUDGET: usize = 1 << 20;
/// Longest wait to complete a partly written payload at the end of a run.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait for the server's reply to our WebSocket Close frame.
pub const CLOSE_LINGER: Duration = Duration::from_secs(1);
/// Longest wait, after our FIN at the end of a TCP run, for the server to acknowledge what is
/// still queued. A connection with bytes still queued after it (or after [`FLUSH_TIMEOUT`] or
/// [`CLOSE_LINGER`]) is aborted with a reset (SO_LINGER 0): left to the kernel, a slow server
/// would drain it for minutes after we exit, and the next run would find it still there.
pub const DRAIN_LINGER: Duration = Duration::from_secs(1);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Server frames one connection may consume per wake-up before yielding to the others.
pub const RECV_BATCH: usize = 64;
/// Capacity of the reactor → coordinator channel.
const REPORT_QUEUE: usize = 1024;
const TIMER_PACE: u8 = 1;
const TIMER_PHASE: u8 = 2;
const TIMER_END: u8 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connecting,
    Handshake,
    Open,
    /// The run is over: complete the partial payload, then close.
    Flushing,
    /// WebSocket Close sent; waiting for the reply.
    Closing,
    /// TCP FIN sent after the last payload; waiting for the queue to be acknowledged.
    Draining,
    Done,
}

enum Io {
    Tcp(TcpStream),
    Ws(Box<WsConn<Metered<TcpStream>>>),
    None,
}

struct Conn {
    phase: Phase,
    io: Io,
    hs: Option<ClientHandshake>,
    rd: Readiness,
    /// Bytes of the current payload already written (TCP).
    off: usize,
    /// A WebSocket frame is partly in tungstenite's buffer.
    ws_pending: bool,
    payloads: u64,
    tcp_written: u64,
    eagain: u64,
    opened: Instant,
    phase_until: Option<Instant>,
    pace_armed: bool,
    /// At least one sample of this connection was taken while it was open.
    sampled: bool,
    /// TCP mode: the first bytes the server sent were looked at (an HTTP answer means the
    /// server speaks WebSocket).
    peeked: bool,
}

impl Conn {
    fn written(&self) -> u64 {
        match &self.io {
            Io::Ws(ws) => ws.get_ref().written_bytes(),
            _ => self.tcp_written,
        }
    }

    fn stream(&self) -> Option<&TcpStream> {
        match &self.io {
            Io::Tcp(s) => Some(s),
            Io::Ws(ws) => Some(ws.get_ref().get_ref()),
            Io::None => None,
        }
    }

    fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.stream().map(AsFd::as_fd)
    }

    fn sample(&self, t: Duration) -> Option<Sample> {
        let fd = self.fd()?;
        let info = tcp_info::tcp_info(fd).ok()?;
        let outq = tcp_info::outq(fd).unwrap_or(0);
        Some(Sample::from_tcp_info(t, self.written(), self.eagain, outq, &info))
    }
}

enum Msg {
    Samples(Vec<(usize, Sample)>),
    FirstEagain {
        conn: usize,
        bytes: u64,
        total: u64,
    },
    Failed(String),
    Done {
        finals: Vec<(usize, Sample)>,
        cut_short: u64,
        resets: u64,
        unmeasured: u64,
        why: Option<String>,
        aborted: u64,
        aborted_bytes: u64,
    },
}

pub enum ClientCmd {
    Stop,
}

struct ClientReactor {
    cfg: ClientConfig,
    target: SocketAddr,
    payload: Vec<u8>,
    start: Instant,
    conns: Vec<Conn>,
    finals: Vec<(usize, Sample)>,
    cut_short: u64,
    resets: u64,
    any_eagain: bool,
    out: Sender<Msg>,
    failed: bool,
    /// Why the first connection that ended without a single sample ended.
    unmeasured_why: Option<String>,
    /// Connections reset at the end with bytes still queued, and how many bytes.
    aborted: u64,
    aborted_bytes: u64,
}

fn dial(cfg: &ClientConfig, target: SocketAddr) -> io::Result<TcpStream> {
    let sock = Socket::new(Domain::for_address(target), Type::STREAM.nonblocking(), Some(SockProtocol::TCP))?;
    if let Some(n) = cfg.sndbuf {
        sock.set_send_buffer_size(n as usize)?;
    }
    if let Some(m) = cfg.mss {
        sock.set_mss(m)?;
    }
    sock.set_nodelay(true)?;
    if let Some(n) = cfg.notsent_lowat {
        tcp_info::set_notsent_lowat(sock.as_fd(), n)?;
    }
    match sock.connect(&target.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) || e.kind() == io::ErrorKind::WouldBlock => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(sock.into()))
}

enum Step {
    Idle,
    More,
}

/// Whether the first bytes the server sent on a raw TCP connection are an HTTP response (a
/// WebSocket server answering our payload as a malformed request). Peeks: nothing is consumed.
fn speaks_http(s: &TcpStream) -> bool {
    let mut head = [0u8; 5];
    matches!(s.peek(&mut head), Ok(n) if n >= 4 && head[..n.min(5)].starts_with(&b"HTTP/"[..n.min(5)]))
}

impl ClientReactor {
    fn fail(&mut self, why: String) {
        if !self.failed {
            self.failed = true;
            let _ = self.out.send_timeout(Msg::Failed(why), Duration::from_secs(1));
        }
        for c in &mut self.conns {
            c.phase = Phase::Done;
            c.io = Io::None;
        }
    }

    /// Connection `i` ended early for `why`; remembered as the reason the run could not measure
    /// when it was never sampled.
    fn lost(&mut self, i: usize, why: String) {
        if self.conns[i].sampled {
            log::warn!("bp client: connection {i}: {why}");
        } else {
            // Reported once, in the final lines or as the reason the run could not measure.
            log::debug!("bp client: connection {i}: {why}");
            self.unmeasured_why.get_or_insert(why);
        }
    }

    fn note_eagain(&mut self, i: usize) {
        let c = &mut self.conns[i];
        c.eagain += 1;
        if c.eagain == 1 {
            let bytes = c.written();
            let total = self.conns.iter().map(Conn::written).sum();
            let _ = self.out.try_send(Msg::FirstEagain { conn: i, bytes, total });
            self.any_eagain = true;
        }
    }

    fn drive(&mut self, cx: &mut Cx, i: usize, ready: Ready) {
        let Some(c) = self.conns.get_mut(i) else { return };
        c.rd.event |= ready;
        let step = match c.phase {
            Phase::Connecting => self.connecting(cx, i),
            Phase::Handshake => self.handshake(cx, i),
            Phase::Open | Phase::Flushing => self.write(cx, i),
            Phase::Closing => self.closing(i),
            Phase::Draining | Phase::Done => Step::Idle,
        };
        if let Step::More = step {
            cx.defer(Token(i));
        }
    }

    fn connecting(&mut self, cx: &mut Cx, i: usize) -> Step {
        let c = &mut self.conns[i];
        let Io::Tcp(s) = &c.io else { return Step::Idle };
        if !c.rd.event.intersects(Ready::WRITABLE | Ready::ERROR | Ready::HUP) {
            return Step::Idle;
        }
        match crate::net::connect::check(s) {
            crate::net::connect::DialState::Pending => Step::Idle,
            crate::net::connect::DialState::Failed(e) if crate::net::connect::completed_before(s, &e) => {
                self.fail(format!(
                    "connect {}: the server accepted the connection and reset it at once ({e}): nothing to measure",
                    self.target
                ));
                Step::Idle
            }
            crate::net::connect::DialState::Failed(e) => {
                self.fail(format!("connect {}: {e}", self.target));
                Step::Idle
            }
            crate::net::connect::DialState::Connected => {
                match self.cfg.protocol {
                    Protocol::Tcp => {
                        c.phase_until = None;
                        c.phase = Phase::Open;
                        c.opened = cx.now;
                    }
                    Protocol::Websocket => {
                        c.phase = Phase::Handshake;
                        c.hs = Some(ClientHandshake::new(&self.cfg.server.authority(), &self.cfg.path));
                    }
                }
                Step::More
            }
        }
    }

    fn handshake(&mut self, cx: &mut Cx, i: usize) -> Step {
        let c = &mut self.conns[i];
        let (Io::Tcp(s), Some(hs)) = (&mut c.io, c.hs.as_mut()) else { return Step::Idle };
        match hs.advance(s) {
            HandshakeStep::NotNow => Step::Idle,
            HandshakeStep::Failed(why) => {
                let hint = if why.starts_with("malformed response") {
                    " (the answer is not HTTP: a raw TCP server? use --protocol tcp)"
                } else {
                    ""
                };
                self.fail(format!("WebSocket handshake with {}: {why}{hint}", self.target));
                Step::Idle
            }
            HandshakeStep::Done { leftover } => {
                // Frames that came in the same read as the 101 are already in user space, where
                // no edge will announce them (this visit may even be a deferred one that saw no
                // READABLE at all): read them as if the socket had signalled.
                if !leftover.is_empty() {
                    c.rd.event |= Ready::READABLE;
                }
                c.hs = None;
                c.phase_until = None;
                let Io::Tcp(s) = std::mem::replace(&mut c.io, Io::None) else { return Step::Idle };
                c.io = Io::Ws(Box::new(WsConn::client(Metered::new(s), leftover, self.cfg.ws_limits())));
                c.phase = Phase::Open;
                c.opened = cx.now;
                Step::More
            }
        }
    }

    /// Paced payload writes (Open), or completing the last payload (Flushing).
    fn write(&mut self, cx: &mut Cx, i: usize) -> Step {
        let rate = self.cfg.rate;
        let total = self.cfg.total;
        let budget = WRITE_BUDGET;
        // Server frames (Close, Ping) and resets.
        let c = &mut self.conns[i];
        let mut more_frames = false;
        if let Io::Ws(ws) = &mut c.io {
            if c.rd.event.intersects(Ready::READABLE | Ready::HUP | Ready::ERROR) {
                // Frames past the batch wait in tungstenite's buffer, where no edge announces
                // them: come back to them after the others had their turn.
                more_frames = true;
                for _ in 0..RECV_BATCH {
                    match ws.recv() {
                        Recv::Message(_) => {}
                        Recv::NotNow => {
                            c.rd.event.remove(Ready::READABLE | Ready::HUP);
                            more_frames = false;
                            break;
                        }
                        Recv::Closed(why) => {
                            self.resets += u64::from(why.by_peer());
                            self.lost(i, why.describe("this client", "the server"));
                            self.end_conn(cx, i);
                            return Step::Idle;
                        }
                    }
                }
            }
        }
        if let Io::Tcp(s) = &c.io {
            if !c.peeked && c.rd.event.intersects(Ready::READABLE | Ready::HUP | Ready::ERROR) {
                c.peeked = true;
                if speaks_http(s) {
                    self.fail(format!(
                        "{}: the server answered with HTTP: it speaks WebSocket (or HTTP), not raw TCP; use --protocol websocket",
                        self.target
                    ));
                    return Step::Idle;
                }
            }
        }
        let step = self.write_payloads(cx, i, budget, rate, total);
        match step {
            Step::Idle if more_frames && self.conns[i].phase != Phase::Done => Step::More,
            step => step,
        }
    }

    fn write_payloads(&mut self, cx: &mut Cx, i: usize, mut budget: usize, rate: u64, total: u64) -> Step {
        loop {
            let c = &mut self.conns[i];
            let partial = c.off > 0 || c.ws_pending;
            if !partial {
                // Between payloads: may we start another?
                if c.phase == Phase::Flushing || (total > 0 && c.payloads >= total) {
                    self.finish(cx, i);
                    return Step::Idle;
                }
                if rate > 0 {
                    let due = (cx.now.saturating_duration_since(c.opened).as_secs_f64() * rate as f64) as u64 + 1;
                    if c.payloads >= due {
                        if !c.pace_armed {
                            let at = c.opened + Duration::from_secs_f64(c.payloads as f64 / rate as f64);
                            c.pace_armed = cx.arm(at.max(cx.now), Token(i), TIMER_PACE);
                        }
                        return Step::Idle;
                    }
                }
                if budget == 0 {
                    return Step::More;
                }
            }
            if !c.rd.event.intersects(Ready::WRITABLE | Ready::ERROR) {
                return Step::Idle;
            }
            let blocked = match &mut c.io {
                Io::Tcp(s) => match io::Write::write(s, &self.payload[c.off..]) {
                    Ok(n) => {
                        c.tcp_written += n as u64;
                        c.off += n;
                        budget = budget.saturating_sub(n);
                        if c.off == self.payload.len() {
                            c.off = 0;
                            c.payloads += 1;
                        }
                        false
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => true,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => false,
                    Err(e) => {
                        if !c.peeked && speaks_http(s) {
                            self.fail(format!(
                                "{}: the server answered with HTTP and closed: it speaks WebSocket (or HTTP), not raw TCP; use --protocol websocket",
                                self.target
                            ));
                            return Step::Idle;
                        }
                        self.resets += 1;
                        self.lost(i, format!("the server ended the connection (write: {e})"));
                        self.end_conn(cx, i);
                        return Step::Idle;
                    }
                },
                Io::Ws(ws) => {
                    let status = if c.ws_pending {
                        match ws.flush() {
                            Flush::Done => SendStatus::Sent,
                            Flush::NotNow => SendStatus::Queued,
                            Flush::Closed(c) => SendStatus::Closed(c),
                        }
                    } else {
                        budget = budget.saturating_sub(self.payload.len());
                        ws.send(Message::Binary(self.payload.clone()))
                    };
                    match status {
                        SendStatus::Sent => {
                            c.ws_pending = false;
                            c.payloads += 1;
                            false
                        }
                        SendStatus::Queued | SendStatus::Full(_) => {
                            c.ws_pending = true;
                            true
                        }
                        SendStatus::Closed(why) => {
                            self.resets += u64::from(why.by_peer());
                            self.lost(i, why.describe("this client", "the server"));
                            self.end_conn(cx, i);
                            return Step::Idle;
                        }
                    }
                }
                Io::None => return Step::Idle,
            };
            if blocked {
                self.conns[i].rd.event.remove(Ready::WRITABLE);
                self.note_eagain(i);
                return Step::Idle;
            }
        }
    }

    /// Writing is over for connection `i`: final sample, then close.
    fn finish(&mut self, cx: &mut Cx, i: usize) {
        let t = cx.now.saturating_duration_since(self.start);
        let c = &mut self.conns[i];
        if let Some(s) = c.sample(t) {
            c.sampled = true;
            self.finals.push((i, s));
        }
        match &mut c.io {
            Io::Ws(ws) if !c.ws_pending => {
                let _ = ws.close(1000, "done");
                c.phase = Phase::Closing;
                c.phase_until = Some(cx.now + CLOSE_LINGER);
                cx.arm(cx.now + CLOSE_LINGER, Token(i), TIMER_PHASE);
                cx.defer(Token(i));
            }
            Io::Tcp(s) => {
                // FIN after the queue; the reset comes if the server does not take it in time.
                let _ = s.shutdown(std::net::Shutdown::Write);
                c.phase = Phase::Draining;
                c.phase_until = Some(cx.now + DRAIN_LINGER);
                cx.arm(cx.now + DRAIN_LINGER, Token(i), TIMER_PHASE);
            }
            _ => self.end_conn(cx, i),
        }
    }

    /// The run is over for connection `i`: close it, with a reset when bytes are still queued
    /// (see [`DRAIN_LINGER`]), and count that.
    fn abort_or_close(&mut self, i: usize) {
        let c = &mut self.conns[i];
        let queued = c.fd().map_or(0, |fd| tcp_info::outq(fd).unwrap_or(0));
        if queued > 0 {
            if let Some(s) = c.stream() {
                let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
            }
            self.aborted += 1;
            self.aborted_bytes += u64::from(queued);
            log::debug!("bp client: connection {i}: reset at the end with {queued} B still queued");
        }
        c.io = Io::None;
        c.phase = Phase::Done;
    }

    fn end_conn(&mut self, _cx: &mut Cx, i: usize) {
        let c = &mut self.conns[i];
        if let Io::Tcp(s) = &c.io {
            let _ = s.shutdown(std::net::Shutdown::Write);
        }
        c.io = Io::None;
        c.phase = Phase::Done;
    }

    fn closing(&mut self, i: usize) -> Step {
        let c = &mut self.conns[i];
        let Io::Ws(ws) = &mut c.io else {
            c.phase = Phase::Done;
            return Step::Idle;
        };
        if let Flush::Closed(_) = ws.flush() {
            c.io = Io::None;
            c.phase = Phase::Done;
            return Step::Idle;
        }
        for _ in 0..64 {
            match ws.recv() {
                Recv::Message(_) => {}
                Recv::NotNow => return Step::Idle,
                Recv::Closed(_) => {
                    c.io = Io::None;
                    c.phase = Phase::Done;
                    return Step::Idle;
                }
            }
        }
        Step::More
    }

    /// Ends the run for every open connection.
    fn end_run(&mut self, cx: &mut Cx) {
        for i in 0..self.conns.len() {
            let c = &mut self.conns[i];
            match c.phase {
                Phase::Open => {
                    c.phase = Phase::Flushing;
                    c.phase_until = Some(cx.now + FLUSH_TIMEOUT);
                    cx.arm(cx.now + FLUSH_TIMEOUT, Token(i), TIMER_PHASE);
                    cx.defer(Token(i));
                }
                Phase::Connecting | Phase::Handshake => {
                    let why = if c.phase == Phase::Connecting {
                        format!("not connected to {} when the run ended", self.target)
                    } else {
                        no_handshake_answer(self.target, "when the run ended")
                    };
                    c.io = Io::None;
                    c.phase = Phase::Done;
                    self.lost(i, why);
                }
                _ => {}
            }
        }
    }
}

impl Handler for ClientReactor {
    type Cmd = ClientCmd;

    fn on_start(&mut self, cx: &mut Cx) -> io::Result<()> {
        cx.timers.set_capacity(self.cfg.connections * 4 + 16);
        for i in 0..self.cfg.connections {
            let mut s = match dial(&self.cfg, self.target) {
                Ok(s) => s,
                Err(e) => {
                    self.fail(format!("connect {}: {e}", self.target));
                    return Ok(());
                }
            };
            cx.registry.register(&mut s, Token(i), Interest::READABLE | Interest::WRITABLE)?;
            self.conns.push(Conn {
                phase: Phase::Connecting,
                io: Io::Tcp(s),
                hs: None,
                rd: Readiness::default(),
                off: 0,
                ws_pending: false,
                payloads: 0,
                tcp_written: 0,
                eagain: 0,
                opened: cx.now,
                phase_until: Some(cx.now + CONNECT_TIMEOUT),
                pace_armed: false,
                sampled: false,
                peeked: false,
            });
            cx.arm(cx.now + CONNECT_TIMEOUT, Token(i), TIMER_PHASE);
        }
        if let Some(d) = self.cfg.duration {
            cx.arm(self.start + d, role_token(0), TIMER_END);
        }
        Ok(())
    }

    fn on_ready(&mut self, cx: &mut Cx, token: Token, ready: Ready) {
        if token.0 < self.conns.len() {
            self.drive(cx, token.0, ready);
        }
    }

    fn on_timer(&mut self, cx: &mut Cx, token: Token, kind: u8) {
        if role_index(token) == Some(0) && kind == TIMER_END {
            self.end_run(cx);
            return;
        }
        let i = token.0;
        let Some(c) = self.conns.get_mut(i) else { return };
        match kind {
            TIMER_PACE => {
                c.pace_armed = false;
                self.drive(cx, i, Ready::EMPTY);
            }
            TIMER_PHASE => {
                let Some(until) = c.phase_until else { return };
                if cx.now < until {
                    return;
                }
                c.phase_until = None;
                match c.phase {
                    Phase::Connecting => {
                        self.fail(format!("connect {}: no connection within {CONNECT_TIMEOUT:?}", self.target));
                    }
                    Phase::Handshake => {
                        let why = no_handshake_answer(self.target, &format!("within {CONNECT_TIMEOUT:?}"));
                        self.fail(why);
                    }
                    Phase::Flushing => {
                        // The last payload did not fit in time: sample and drop it unfinished.
                        self.cut_short += 1;
                        let t = cx.now.saturating_duration_since(self.start);
                        if let Some(s) = c.sample(t) {
                            self.finals.push((i, s));
                        }
                        self.abort_or_close(i);
                    }
                    Phase::Closing | Phase::Draining => self.abort_or_close(i),
                    _ => {}
                }
            }
            _ => {}
        }
    }

    fn on_command(&mut self, cx: &mut Cx, cmd: ClientCmd) {
        match cmd {
            ClientCmd::Stop => self.end_run(cx),
        }
    }

    fn on_tick(&mut self, cx: &mut Cx) {
        let t = cx.now.saturating_duration_since(self.start);
        let samples: Vec<(usize, Sample)> = self
            .conns
            .iter_mut()
            .enumerate()
            .filter(|(_, c)| matches!(c.phase, Phase::Open | Phase::Flushing))
            .filter_map(|(i, c)| {
                let s = c.sample(t)?;
                c.sampled = true;
                Some((i, s))
            })
            .collect();
        if !samples.is_empty() {
            let _ = self.out.try_send(Msg::Samples(samples));
        }
        // Draining connections whose queue the server has acknowledged: a plain close.
        for c in self.conns.iter_mut().filter(|c| c.phase == Phase::Draining) {
            if c.fd().is_some_and(|fd| tcp_info::outq(fd).is_ok_and(|q| q == 0)) {
                c.io = Io::None;
                c.phase = Phase::Done;
            }
        }
    }

    fn finished(&self) -> bool {
        self.failed || self.conns.iter().all(|c| c.phase == Phase::Done)
    }

    fn on_exit(&mut self, _cx: &mut Cx) {
        if self.failed {
            return;
        }
        let unmeasured = self.conns.iter().filter(|c| !c.sampled).count() as u64;
        let why = self.unmeasured_why.take();
        if unmeasured == self.conns.len() as u64 {
            // Not one sample: there is no measurement to give a verdict on.
            let why = why.unwrap_or_else(|| "the connections ended before the first sample".into());
            let msg = Msg::Failed(format!("bp client: could not measure: {why}"));
            let _ = self.out.send_timeout(msg, Duration::from_secs(1));
            return;
        }
        let finals = std::mem::take(&mut self.finals);
        let msg = Msg::Done {
            finals,
            cut_short: self.cut_short,
            resets: self.resets,
            unmeasured,
            why,
            aborted: self.aborted,
            aborted_bytes: self.aborted_bytes,
        };
        let _ = self.out.send_timeout(msg, Duration::from_secs(1));
    }
}

/// Why a WebSocket handshake got no answer: most often the server is a raw TCP one (it reads
/// the upgrade request as payload and never answers).
fn no_handshake_answer(target: SocketAddr, when: &str) -> String {
    format!(
        "WebSocket handshake with {target}: no answer {when} (a raw TCP server, such as bp server --protocol tcp, never answers; use --protocol tcp)"
    )
}

/// Sums the connections' samples taken in one loop turn: bytes, EAGAINs and queues add up, the
/// window is the smallest (one zero-window connection makes the aggregate zero), times are µs sums.
fn aggregate(samples: &[(usize, Sample)]) -> Option<Sample> {
    let first = samples.first()?.1;
    let mut a = Sample { t: first.t, ..Sample::default() };
    let add = |x: Option<u64>, y: Option<u64>| match (x, y) {
        (Some(x), Some(y)) => Some(x + y),
        (x, y) => x.or(y),
    };
    for (_, s) in samples {
        a.t = a.t.max(s.t);
        a.bytes_written += s.bytes_written;
        a.eagain += s.eagain;
        a.outq = a.outq.saturating_add(s.outq);
        a.notsent = add(a.notsent.map(u64::from), s.notsent.map(u64::from)).map(|v| v.min(u64::from(u32::MAX)) as u32);
        a.snd_wnd = match (a.snd_wnd, s.snd_wnd) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        };
        a.backoff = a.backoff.max(s.backoff);
        a.rwnd_limited_us = add(a.rwnd_limited_us, s.rwnd_limited_us);
        a.busy_time_us = add(a.busy_time_us, s.busy_time_us);
    }
    Some(a)
}

/// Runs the client to the end of its duration or total (or SIGINT/SIGTERM).
/// Where a run's result goes besides the text on `out` (`--json`, `--html`).
#[derive(Debug, Default)]
pub struct Outputs {
    pub json: Option<PathBuf>,
    pub html: Option<PathBuf>,
}

pub fn run(
    cfg: &ClientConfig,
    target: SocketAddr,
    outputs: Outputs,
    signals: &Receiver<Signal>,
    out: &mut dyn Write,
) -> Result<(), crate::error::Error> {
    let (tx, rx) = crossbeam_channel::bounded::<Msg>(REPORT_QUEUE);
    let start = Instant::now();
    let reactor = ClientReactor {
        cfg: cfg.clone(),
        target,
        payload: (0..cfg.payload_size).map(|i| b'a' + (i % 26) as u8).collect(),
        start,
        conns: Vec::with_capacity(cfg.connections),
        finals: Vec::with_capacity(cfg.connections),
        cut_short: 0,
        resets: 0,
        any_eagain: false,
        out: tx,
        failed: false,
        unmeasured_why: None,
        aborted: 0,
        aborted_bytes: 0,
    };
    let pool = Pool::spawn("bp-client", vec![reactor], cfg.sample_interval).map_err(crate::error::Error::Io)?;
    let _ = writeln!(
        out,
        "netforge bp client: {} to {} ({target}), {}, {} B payloads at {}",
        cfg.protocol,
        cfg.server,
        crate::stats::counted(cfg.connections as u64, "connection", "connections"),
        cfg.payload_size,
        if cfg.rate == 0 { "full speed".to_string() } else { format!("{}/s", cfg.rate) }
    );
    let _ = out.flush();
    let cap = (verdict::SERIES_CAP / cfg.connections).max(64);
    let mut role = Coordinated {
        pool,
        stats_interval: cfg.stats_interval,
        per: (0..cfg.connections).map(|_| Analysis::with_series_cap(cap)).collect(),
        agg: Analysis::new(),
        last_line: None,
        next_line: cfg.stats_interval,
        end: None,
    };
    coordinator::run(&mut role, &rx, signals, out);
    let Coordinated { pool, mut per, mut agg, end, .. } = role;
    let (finals, cut_short, resets, unmeasured, unmeasured_why, aborted, aborted_bytes) = match end {
        Some(Msg::Done { finals, cut_short, resets, unmeasured, why, aborted, aborted_bytes }) => {
            (finals, cut_short, resets, unmeasured, why, aborted, aborted_bytes)
        }
        Some(Msg::Failed(why)) => {
            pool.join();
            return Err(crate::error::Error::Io(io::Error::other(why)));
        }
        _ => {
            pool.join();
            return Err(crate::error::Error::Io(io::Error::other("bp client: the reactor ended without a report")));
        }
    };
    pool.join();
    for (i, s) in &finals {
        per[*i].push(*s);
    }
    let final_agg = aggregate(&finals);
    if let Some(a) = final_agg {
        agg.push(a);
    }
    let summary = agg.summary();
    let verdict_line = agg.verdict();
    let (bytes_written, outq) = final_agg.map_or((0, 0), |a| (a.bytes_written, u64::from(a.outq)));
    let _ = writeln!(out, "--- netforge bp client statistics ---");
    let _ = writeln!(out, "{verdict_line}");
    let _ = writeln!(out, "final: bytes written {bytes_written}, unacknowledged (SIOCOUTQ) {outq}");
    match summary.first_eagain_after_bytes {
        Some(b) => {
            let _ = writeln!(out, "bytes absorbed before backpressure (first EAGAIN): {b}");
        }
        None => {
            let _ = writeln!(out, "bytes absorbed before backpressure: all {bytes_written} (writes never blocked)");
        }
    }
    let e = summary.episodes;
    let _ = writeln!(
        out,
        "zero-window episodes: {} (min {:.2} s, avg {:.2} s, max {:.2} s{}), max probe backoff {}",
        e.count,
        e.min_s,
        e.avg_s,
        e.max_s,
        if e.open_at_end { ", one open at the end" } else { "" },
        summary.max_backoff
    );
    if cut_short > 0 || resets > 0 {
        let _ = writeln!(out, "connections cut short at the end: {cut_short}, closed by the server: {resets}");
    }
    if aborted > 0 {
        let _ = writeln!(
            out,
            "connections reset at the end: {aborted} ({aborted_bytes} B still queued that the server had not acknowledged; \
             a reset instead of a FIN, so the server does not drain them after this run)"
        );
    }
    if unmeasured > 0 {
        let _ = writeln!(
            out,
            "connections never measured: {unmeasured} of {} ({})",
            cfg.connections,
            unmeasured_why.as_deref().unwrap_or("ended before the first sample")
        );
    }
    let _ = out.flush();
    if outputs.json.is_some() || outputs.html.is_some() {
        let mut doc = serde_json::to_value(agg.report()).unwrap_or_default();
        if let Some(map) = doc.as_object_mut() {
            let conns: Vec<serde_json::Value> =
                per.iter().map(|a| serde_json::to_value(a.report()).unwrap_or_default()).collect();
            map.insert("connections".into(), conns.into());
            map.insert(
                "final".into(),
                serde_json::json!({
                    "bytes_written": bytes_written,
                    "outq": outq,
                    "cut_short": cut_short,
                    "resets": resets,
                    "aborted": aborted,
                    "aborted_bytes": aborted_bytes,
                }),
            );
        }
        if let Some(path) = &outputs.json {
            let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
            std::fs::write(path, text).map_err(|e| {
                crate::error::Error::Io(io::Error::new(e.kind(), format!("write {}: {e}", path.display())))
            })?;
        }
        if let Some(path) = &outputs.html {
            crate::html_report::write_for_run(path, "this run", doc)?;
        }
    }
    Ok(())
}

/// The coordinator's side of `bp client`: per-connection and aggregate analysis, interval
/// lines on the samples' own clock, until the reactor's last message.
struct Coordinated {
    pool: Pool<ClientCmd>,
    stats_interval: Duration,
    per: Vec<Analysis>,
    agg: Analysis,
    last_line: Option<Sample>,
    next_line: Duration,
    /// `Done` or `Failed`, once it arrives.
    end: Option<Msg>,
}

impl Role for Coordinated {
    type Report = Msg;

    // Only the reactor's messages and signals move this loop.
    const MAX_WAIT: Duration = Duration::from_secs(3600);

    fn on_report(&mut self, msg: Msg, _ctl: &mut Ctl, out: &mut dyn Write) -> Flow {
        match msg {
            Msg::Samples(samples) => {
                for (i, s) in &samples {
                    self.per[*i].push(*s);
                }
                if let Some(a) = aggregate(&samples) {
                    let state = self.agg.push(a);
                    // stats_interval 0: no periodic lines (as `-i 0` in every role).
                    if !self.stats_interval.is_zero() && a.t >= self.next_line {
                        let _ = writeln!(out, "{}", verdict::interval_line(self.last_line.as_ref(), &a, state));
                        let _ = out.flush();
                        self.last_line = Some(a);
                        self.next_line += self.stats_interval;
                    }
                }
                Flow::Continue
            }
            Msg::FirstEagain { conn, bytes, total } => {
                self.per[conn].note_first_eagain(bytes);
                self.agg.note_first_eagain(total);
                Flow::Continue
            }
            end @ (Msg::Failed(_) | Msg::Done { .. }) => {
                self.end = Some(end);
                Flow::Exit
            }
        }
    }

    fn on_turn(&mut self, _now: Instant, _ctl: &mut Ctl, _out: &mut dyn Write) -> Flow {
        Flow::Continue
    }

    fn on_stop(&mut self, ctl: &mut Ctl) {
        // No deadline: the reactor ends its connections and reports.
        self.pool.broadcast(|_| ClientCmd::Stop);
        ctl.stop(None);
    }

    fn on_stop_again(&mut self, _ctl: &mut Ctl) -> Flow {
        Flow::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t_ms: u64, bytes: u64, outq: u32, wnd: Option<u32>, backoff: u8) -> Sample {
        Sample {
            t: Duration::from_millis(t_ms),
            bytes_written: bytes,
            eagain: 1,
            outq,
            notsent: Some(outq),
            snd_wnd: wnd,
            backoff,
            rwnd_limited_us: Some(10),
            busy_time_us: None,
        }
    }

    #[test]
    fn aggregate_sums_queues_and_keeps_the_smallest_window() {
        assert_eq!(aggregate(&[]), None);
        let a = aggregate(&[(0, s(100, 1000, 10, Some(500), 0)), (1, s(101, 2000, 20, Some(0), 3))]).unwrap();
        assert_eq!(a.t, Duration::from_millis(101));
        assert_eq!((a.bytes_written, a.eagain, a.outq, a.notsent), (3000, 2, 30, Some(30)));
        assert_eq!((a.snd_wnd, a.backoff), (Some(0), 3));
        assert_eq!((a.rwnd_limited_us, a.busy_time_us), (Some(20), None));
        // A kernel without snd_wnd on one side: the known value wins.
        let b = aggregate(&[(0, s(0, 1, 1, None, 0)), (1, s(0, 1, 1, Some(7), 0))]).unwrap();
        assert_eq!(b.snd_wnd, Some(7));
    }
}
