//! One proxied session: a client socket and a backend socket on the same reactor, two fixed
//! [`Ring`]s (client→backend and backend→client, `buffer_bytes` each, allocated when the session
//! starts and never grown).
//!
//! ```text
//!   accept ──► Connecting ──(check: connected)──► Piping ──(both directions shut)──► closed
//!                 │  ▲                               │
//!     refused /   │  │ retry on another backend      │ EOF on one side: once that direction's
//!     timeout     ▼  │ (exclude tried, ≤ retries)     │ ring is flushed, shutdown(Write) on the
//!              next backend                           │ other socket; the other direction goes
//!                                                     │ on until its own EOF or the fin timeout
//!                                                     ▼
//!                                     error / RST on either side: close both, SO_LINGER 0 on
//!                                     the survivor so the reset propagates
//! ```
//!
//! Backpressure: a direction reads its source only while its ring has room. A full ring means no
//! read, so the kernel receive buffer fills, the TCP window closes and the sender blocks. The
//! "interest" of each socket is therefore implied by the rings (read interest = ring not full,
//! write interest = ring not empty); the `event` bits of [`Readiness`] are OR-ed from edges and
//! cleared only on `WouldBlock`, as the engine requires.

use std::io::{self, ErrorKind};
use std::net::Shutdown;
use std::time::Instant;

use mio::net::TcpStream;

use crate::buf::Ring;
use crate::reactor::{Readiness, Ready};

/// Why a session ended. `Copy`, counted per cause, never allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// Both directions finished with FIN.
    Done,
    ClientReset,
    ServerReset,
    /// Every backend tried refused (or failed) the connect.
    ConnectFailed,
    ConnectTimeout,
    /// No usable backend in the group.
    NoBackend,
    ClientIdle,
    ServerIdle,
    /// A half-closed session did not finish within client_fin/server_fin.
    FinTimeout,
    Lifetime,
    /// Cut at the end of the drain timeout, or by a second signal.
    Shutdown,
}

impl CloseReason {
    pub const ALL: [CloseReason; 11] = [
        CloseReason::Done,
        CloseReason::ClientReset,
        CloseReason::ServerReset,
        CloseReason::ConnectFailed,
        CloseReason::ConnectTimeout,
        CloseReason::NoBackend,
        CloseReason::ClientIdle,
        CloseReason::ServerIdle,
        CloseReason::FinTimeout,
        CloseReason::Lifetime,
        CloseReason::Shutdown,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            CloseReason::Done => "done",
            CloseReason::ClientReset => "client_reset",
            CloseReason::ServerReset => "server_reset",
            CloseReason::ConnectFailed => "connect_failed",
            CloseReason::ConnectTimeout => "connect_timeout",
            CloseReason::NoBackend => "no_backend",
            CloseReason::ClientIdle => "client_idle",
            CloseReason::ServerIdle => "server_idle",
            CloseReason::FinTimeout => "fin_timeout",
            CloseReason::Lifetime => "lifetime",
            CloseReason::Shutdown => "shutdown",
        }
    }

    /// Whether the other socket should be reset (SO_LINGER 0) rather than closed with FIN.
    pub fn resets(self) -> bool {
        !matches!(self, CloseReason::Done)
    }
}

/// Bytes a session may read per wake-up (both directions together) before it yields.
pub const READ_BUDGET: usize = 256 * 1024;

/// One direction: `src` is read into `ring`, `ring` is written to `dst`.
#[derive(Default)]
pub struct Flow {
    /// `src` returned EOF.
    pub eof: bool,
    /// `shutdown(Write)` was sent to `dst` (EOF forwarded after the ring drained).
    pub shut: bool,
    /// When `eof` was seen.
    pub eof_at: Option<Instant>,
}

/// Outcome of a pump.
#[derive(Debug, PartialEq, Eq)]
pub enum Pump {
    /// Waiting for edges.
    Idle,
    /// The read budget ran out with work left: defer the session.
    More,
    /// Both directions are shut: close normally.
    Done,
    Close(CloseReason),
}

/// Byte counts moved by one pump.
#[derive(Default, Clone, Copy, Debug)]
pub struct Moved {
    pub client_to_server: u64,
    pub server_to_client: u64,
    /// Any byte read from or written to the client / the server.
    pub client_active: bool,
    pub server_active: bool,
}

pub struct Pipe {
    pub client: TcpStream,
    pub crd: Readiness,
    pub server: TcpStream,
    pub srd: Readiness,
    pub up: Ring,
    pub down: Ring,
    pub c2s: Flow,
    pub s2c: Flow,
}

enum Side {
    Client,
    Server,
}

/// Moves bytes in one direction as far as the edges, the ring and the budget allow.
/// Returns whether anything happened.
#[allow(clippy::too_many_arguments)]
fn flow(
    src: &mut TcpStream,
    srd: &mut Readiness,
    dst: &mut TcpStream,
    drd: &mut Readiness,
    ring: &mut Ring,
    f: &mut Flow,
    budget: &mut usize,
    moved: &mut u64,
    now: Instant,
    src_side: Side,
) -> Result<(bool, bool, bool), CloseReason> {
    let (src_reset, dst_reset) = match src_side {
        Side::Client => (CloseReason::ClientReset, CloseReason::ServerReset),
        Side::Server => (CloseReason::ServerReset, CloseReason::ClientReset),
    };
    let mut progressed = false;
    let (mut src_act, mut dst_act) = (false, false);
    // Write first: it frees ring space for the read below.
    if !ring.is_empty() && drd.event.contains(Ready::WRITABLE) {
        match ring.write_to(dst) {
            Ok(n) => {
                *moved += n as u64;
                progressed |= n > 0;
                dst_act = true;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => drd.event.remove(Ready::WRITABLE),
            Err(e) if e.kind() == ErrorKind::Interrupted => progressed = true,
            Err(_) => return Err(dst_reset),
        }
    }
    if f.eof && ring.is_empty() && !f.shut {
        // Our FIN follows the peer's only after every byte before it went out.
        f.shut = true;
        progressed = true;
        if let Err(e) = dst.shutdown(Shutdown::Write) {
            if e.kind() != ErrorKind::NotConnected {
                return Err(dst_reset);
            }
        }
    }
    if !f.eof && !ring.is_full() && *budget > 0 && srd.event.intersects(Ready::READABLE | Ready::HUP | Ready::ERROR) {
        match ring.read_from(src) {
            Ok(0) => {
                f.eof = true;
                f.eof_at = Some(now);
                progressed = true;
                src_act = true;
            }
            Ok(n) => {
                *budget = budget.saturating_sub(n);
                progressed = true;
                src_act = true;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => srd.event.remove(Ready::READABLE | Ready::HUP),
            Err(e) if e.kind() == ErrorKind::Interrupted => progressed = true,
            Err(_) => return Err(src_reset),
        }
    }
    Ok((progressed, src_act, dst_act))
}

impl Pipe {
    pub fn new(client: TcpStream, crd: Readiness, server: TcpStream, srd: Readiness, ring_bytes: usize) -> Pipe {
        Pipe {
            client,
            crd,
            server,
            srd,
            up: Ring::new(ring_bytes),
            down: Ring::new(ring_bytes),
            c2s: Flow::default(),
            s2c: Flow::default(),
        }
    }

    /// Moves bytes both ways until nothing moves, the budget is spent, or an error ends it.
    pub fn pump(&mut self, now: Instant, moved: &mut Moved) -> Pump {
        let mut budget = READ_BUDGET;
        loop {
            let up = flow(
                &mut self.client,
                &mut self.crd,
                &mut self.server,
                &mut self.srd,
                &mut self.up,
                &mut self.c2s,
                &mut budget,
                &mut moved.client_to_server,
                now,
                Side::Client,
            );
            let (p1, ca, sa) = match up {
                Ok(v) => v,
                Err(r) => return Pump::Close(r),
            };
            moved.client_active |= ca;
            moved.server_active |= sa;
            let down = flow(
                &mut self.server,
                &mut self.srd,
                &mut self.client,
                &mut self.crd,
                &mut self.down,
                &mut self.s2c,
                &mut budget,
                &mut moved.server_to_client,
                now,
                Side::Server,
            );
            let (p2, sa, ca) = match down {
                Ok(v) => v,
                Err(r) => return Pump::Close(r),
            };
            moved.client_active |= ca;
            moved.server_active |= sa;
            if self.c2s.shut && self.s2c.shut {
                return Pump::Done;
            }
            if !(p1 || p2) {
                return Pump::Idle;
            }
            if budget == 0 {
                return Pump::More;
            }
        }
    }

    /// Bytes buffered in user space (both rings).
    pub fn buffered(&self) -> usize {
        self.up.len() + self.down.len()
    }
}

/// Sets SO_LINGER 0 so that dropping `s` sends RST instead of FIN.
pub fn reset_on_close(s: &TcpStream) {
    let _ = socket2::SockRef::from(s).set_linger(Some(std::time::Duration::ZERO));
}

/// Maps a failed connect to the passive-health cause shown in logs.
pub fn connect_cause(e: &io::Error) -> crate::net::Cause {
    crate::net::Cause::from_io(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn pair() -> (std::net::TcpStream, TcpStream) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        b.set_nonblocking(true).unwrap();
        (a, TcpStream::from_std(b))
    }

    /// Drives a pipe by hand (all edges assumed) and checks half-close forwarding order.
    #[test]
    fn half_close_is_forwarded_after_the_bytes() {
        let (mut c_peer, c) = pair();
        let (mut s_peer, s) = pair();
        let all = Readiness { event: Ready::ALL, interest: Ready::ALL };
        let mut p = Pipe::new(c, all, s, all, 1024);
        c_peer.write_all(&[5u8; 3000]).unwrap();
        c_peer.shutdown(Shutdown::Write).unwrap();
        s_peer.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        let mut got = Vec::new();
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        let mut buf = [0u8; 4096];
        loop {
            p.crd.event = Ready::ALL;
            p.srd.event = Ready::ALL;
            let mut m = Moved::default();
            let r = p.pump(Instant::now(), &mut m);
            assert!(!matches!(r, Pump::Close(_)), "{r:?}");
            if p.c2s.shut {
                break;
            }
            s_peer.set_nonblocking(true).unwrap();
            if let Ok(n) = s_peer.read(&mut buf) {
                got.extend_from_slice(&buf[..n]);
            }
            assert!(Instant::now() < deadline);
        }
        s_peer.set_nonblocking(false).unwrap();
        s_peer.read_to_end(&mut got).unwrap();
        assert_eq!(got.len(), 3000);
        assert!(!p.s2c.shut, "the other direction stays open");
    }
}
