//! goon's TLS phase (`--tls`): after the TCP connect, a rustls handshake over the same
//! socket with its own deadline (the `--dial-timeout`, counted again from the TCP connect),
//! then the connection is held as before, reading and dropping plaintext.
//!
//! tcpgoon's counts keep their meaning: Established is the TCP connection, and a connection
//! whose handshake fails or times out is closed by goon and counts as Closed. The TLS figures
//! are counted beside them: handshakes done (full and resumed apart), the handshake latency
//! (TCP connect done → handshake done) in its own HdrHistogram, and failures by
//! [`TlsCause`]. The reactor calls [`TlsPhase::begin`] at the TCP connect, [`TlsPhase::step`]
//! on every event until it says `Ready` or `Failed`, and [`TlsPhase::fail`] at the deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, HandshakeKind};

use crate::engine::Kind;
use crate::stats::Latency;
use crate::tls::{Handshake, Stream, TlsCause, CAUSES};

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
    /// When the latest handshake was done (for handshakes/s).
    pub last_done: Option<Instant>,
}

impl Default for TlsCounts {
    fn default() -> Self {
        TlsCounts { handshaking: 0, full: 0, resumed: 0, failed: 0, failures: [0; CAUSES], last_done: None }
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
                match sock.session().and_then(|s| s.handshake_kind()) {
                    Some(HandshakeKind::Resumed) => self.counts.resumed += 1,
                    _ => self.counts.full += 1,
                }
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
