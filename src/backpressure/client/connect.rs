//! Opening a connection: the non-blocking dial with the socket options, the connect check, the
//! WebSocket handshake, and telling a server of the other protocol by its answer.

use std::io;
use std::net::SocketAddr;

use mio::net::TcpStream;

use super::reactor::CCx;
use super::{conn, ClientReactor, Io, Phase, Step};
use crate::backpressure::config::{ClientConfig, Protocol};
use crate::backpressure::ws::{ClientHandshake, HandshakeStep, Metered, WsConn};
use crate::engine::Ready;
use crate::net::connect::DialOpts;
use crate::net::tune::SockBufs;

pub(super) fn dial(cfg: &ClientConfig, target: SocketAddr) -> io::Result<TcpStream> {
    let opts = DialOpts {
        bufs: SockBufs { sndbuf: cfg.sndbuf.map(|n| n as usize), rcvbuf: None },
        nodelay: true,
        mss: cfg.mss,
        notsent_lowat: cfg.notsent_lowat,
        ..DialOpts::default()
    };
    crate::net::connect::dial(target, None, &opts)
}

/// Whether the first bytes the server sent on a raw TCP connection are an HTTP response (a
/// WebSocket server answering our payload as a malformed request). Peeks: nothing is consumed.
pub(super) fn speaks_http(s: &TcpStream) -> bool {
    let mut head = [0u8; 5];
    matches!(s.peek(&mut head), Ok(n) if n >= 4 && head[..n.min(5)].starts_with(&b"HTTP/"[..n.min(5)]))
}

impl ClientReactor {
    pub(super) fn connecting(&mut self, cx: &mut CCx, i: usize) -> Step {
        let Some(c) = conn(cx.table, &self.keys, i) else { return Step::Idle };
        let Io::Tcp(s) = &c.io else { return Step::Idle };
        if !c.rd.event.intersects(Ready::WRITABLE | Ready::ERROR | Ready::HUP) {
            return Step::Idle;
        }
        match crate::net::connect::check(s) {
            crate::net::connect::DialState::Pending => Step::Idle,
            crate::net::connect::DialState::Failed(e) if crate::net::connect::completed_before(s, &e) => {
                self.fail(
                    cx,
                    format!(
                        "connect {}: the server accepted the connection and reset it at once ({e}): nothing to measure",
                        self.target
                    ),
                );
                Step::Idle
            }
            crate::net::connect::DialState::Failed(e) => {
                self.fail(cx, format!("connect {}: {e}", self.target));
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

    pub(super) fn handshake(&mut self, cx: &mut CCx, i: usize) -> Step {
        let Some(c) = conn(cx.table, &self.keys, i) else { return Step::Idle };
        let (Io::Tcp(s), Some(hs)) = (&mut c.io, c.hs.as_mut()) else { return Step::Idle };
        match hs.advance(s) {
            HandshakeStep::NotNow => Step::Idle,
            HandshakeStep::Failed(why) => {
                let hint = if why.starts_with("malformed response") {
                    " (the answer is not HTTP: a raw TCP server? use --protocol tcp)"
                } else {
                    ""
                };
                self.fail(cx, format!("WebSocket handshake with {}: {why}{hint}", self.target));
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
}

/// Why a WebSocket handshake got no answer: most often the server is a raw TCP one (it reads
/// the upgrade request as payload and never answers).
pub(super) fn no_handshake_answer(target: SocketAddr, when: &str) -> String {
    format!(
        "WebSocket handshake with {target}: no answer {when} (a raw TCP server, such as bp server --protocol tcp, never answers; use --protocol tcp)"
    )
}
