//! goon's TLS phase (`--tls`): after the TCP connect, a rustls handshake over the same
//! socket with its own deadline (the `--dial-timeout`, counted again from the TCP connect),
//! then the connection is held as before, reading and dropping plaintext.
//!
//! tcpgoon's counts keep their meaning: Established is the TCP connection, and a connection
//! whose handshake fails or times out is closed by goon and counts as Closed. The TLS figures
//! are counted beside them: handshakes done (full and resumed apart), the handshake latency
//! (TCP connect done → handshake done) in its own HdrHistogram, and failures by
//! [`TlsCause`]; with `--alpn`, handshakes per negotiated protocol ([`alpn_slot`]: a slot in
//! the reactor's counts, taken at the handshake's end, so a held connection stores nothing
//! for it). The reactor calls [`TlsPhase::begin`] at the TCP connect, [`TlsPhase::step`]
//! on every event until it says `Ready` or `Failed`, and [`TlsPhase::fail`] at the deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, HandshakeKind};

use crate::engine::Kind;
use crate::stats::Latency;
use crate::tls::{Handshake, Stream, TlsCause, ALPN_MAX, CAUSES};

/// Slots of [`TlsCounts::alpn`]: `none`, then one per protocol offered.
pub const ALPN_SLOTS: usize = ALPN_MAX + 1;

/// The slot a done handshake counts under: 0 when no protocol was negotiated, `i + 1` when
/// it was the `i`-th offered. rustls fails a handshake whose server picks a protocol not
/// offered, so the last arm is unreachable in practice; it counts as `none` rather than
/// storing the server's bytes.
pub fn alpn_slot(offered: &[Vec<u8>], negotiated: Option<&[u8]>) -> usize {
    match negotiated {
        None => 0,
        Some(p) => offered.iter().take(ALPN_MAX).position(|o| o.as_slice() == p).map_or(0, |i| i + 1),
    }
}

/// The handshake's deadline (the dial's own timer, kind 0, was cancelled at the connect).
pub const TIMER_TLS: Kind = Kind::new(1);

/// Whole TLS counts of a reactor (or of the run), as [`super::reactor::Counts`] carries them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlsCounts {
    /// Handshakes started and not yet done, failed or timed out.
    pub handshaking: u64,
    pub full: u64,
    pub resumed: u64,
    pub failed: u64,
    pub failures: [u64; CAUSES],
    /// Handshakes done by negotiated protocol, by [`alpn_slot`] (all in slot 0 without `--alpn`).
    pub alpn: [u64; ALPN_SLOTS],
    /// When the latest handshake was done (for handshakes/s).
    pub last_done: Option<Instant>,
}

impl Default for TlsCounts {
    fn default() -> Self {
        TlsCounts {
            handshaking: 0,
            full: 0,
            resumed: 0,
            failed: 0,
            failures: [0; CAUSES],
            alpn: [0; ALPN_SLOTS],
            last_done: None,
        }
    }
}

impl TlsCounts {
    pub fn merge(&mut self, o: &TlsCounts) {
        self.handshaking += o.handshaking;
        self.full += o.full;
        self.resumed += o.resumed;
        self.failed += o.failed;
        for (a, b) in self.failures.iter_mut().zip(o.failures.iter()) {
            *a += b;
        }
        for (a, b) in self.alpn.iter_mut().zip(o.alpn.iter()) {
            *a += b;
        }
        self.last_done = self.last_done.max(o.last_done);
    }
}

/// What every reactor's TLS phase needs.
#[derive(Clone, Debug)]
pub struct TlsPlan {
    pub config: Arc<ClientConfig>,
    pub name: ServerName<'static>,
    pub timeout: Duration,
}

/// What the reactor does after a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Handshaking: wait for the next event.
    Wait,
    /// Done (counted): hold the connection.
    Ready,
    /// Failed (counted): close the connection.
    Failed,
}

/// One reactor's TLS phase: its configuration, counts and handshake latencies.
pub struct TlsPhase {
    plan: TlsPlan,
    pub counts: TlsCounts,
    latency: Latency,
}

impl TlsPhase {
    pub fn new(plan: TlsPlan) -> TlsPhase {
        TlsPhase { plan, counts: TlsCounts::default(), latency: Latency::new() }
    }

    /// TCP connected: queues the ClientHello on `sock` and returns the handshake's deadline.
    /// A session that cannot be made leaves the stream plain, and the first step fails it.
    pub fn begin(&mut self, sock: &mut Stream, now: Instant) -> Instant {
        self.counts.handshaking += 1;
        if let Err(e) = sock.start_client(self.plan.config.clone(), self.plan.name.clone()) {
            log::debug!("tls: cannot start a handshake: {e}");
        }
        now + self.plan.timeout
    }

    /// Drives the handshake begun at `since` as far as the socket allows.
    pub fn step(&mut self, sock: &mut Stream, since: Instant, now: Instant) -> Step {
        if !sock.is_tls() {
            self.fail(TlsCause::Other);
            return Step::Failed;
        }
        match sock.handshake() {
            Ok(Handshake::Pending) => Step::Wait,
            Ok(Handshake::Done) => {
                self.counts.handshaking -= 1;
                let session = sock.session();
                match session.and_then(|s| s.handshake_kind()) {
                    Some(HandshakeKind::Resumed) => self.counts.resumed += 1,
                    _ => self.counts.full += 1,
                }
                let negotiated = session.and_then(|s| s.alpn_protocol());
                self.counts.alpn[alpn_slot(&self.plan.config.alpn_protocols, negotiated)] += 1;
                self.counts.last_done = Some(now);
                self.latency.record(now.saturating_duration_since(since));
                Step::Ready
            }
            Err(f) => {
                let cause = TlsCause::from_failure(&f);
                log::debug!("tls: handshake failed: {} ({f:?})", cause.name());
                self.fail(cause);
                Step::Failed
            }
        }
    }

    /// A handshake ended unfinished (its deadline, or a failure found by [`TlsPhase::step`]).
    pub fn fail(&mut self, cause: TlsCause) {
        self.counts.handshaking = self.counts.handshaking.saturating_sub(1);
        self.counts.failed += 1;
        self.counts.failures[cause.index()] += 1;
    }

    /// The handshake latencies since the last call (the per-interval swap).
    pub fn take_latency(&mut self) -> Option<Latency> {
        (!self.latency.is_empty()).then(|| self.latency.take())
    }

    /// Latencies a full channel did not take, put back.
    pub fn put_back(&mut self, l: &Latency) {
        self.latency.merge(l);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpn_slots_index_the_offer() {
        let offered = [b"h2".to_vec(), b"http/1.1".to_vec()];
        assert_eq!(alpn_slot(&offered, None), 0);
        assert_eq!(alpn_slot(&offered, Some(b"h2")), 1);
        assert_eq!(alpn_slot(&offered, Some(b"http/1.1")), 2);
        assert_eq!(alpn_slot(&offered, Some(b"spdy/3")), 0, "never offered: no slot of its own");
        assert_eq!(alpn_slot(&[], Some(b"h2")), 0);
        let most: Vec<Vec<u8>> = (0..ALPN_MAX).map(|i| format!("p{i}").into_bytes()).collect();
        assert_eq!(alpn_slot(&most, Some(format!("p{}", ALPN_MAX - 1).as_bytes())), ALPN_SLOTS - 1);
        let mut a = TlsCounts::default();
        a.alpn[1] = 3;
        let mut b = TlsCounts::default();
        b.alpn[1] = 2;
        b.alpn[0] = 1;
        a.merge(&b);
        assert_eq!(&a.alpn[..3], &[1, 5, 0]);
    }
}
