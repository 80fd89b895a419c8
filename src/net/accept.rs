//! `Acceptor`: one reactor's listener and the accept rules every server role shares.
//!
//! - At most [`ACCEPT_BATCH`] accepts per wake-up; with the listener still ready the token is
//!   deferred, so the rest are taken next turn (never dropped, never starving other sockets).
//! - At the role's connection cap accepting stops; it resumes below 90% of the cap (hysteresis,
//!   so a server at its limit does not flap on every close).
//! - EMFILE/ENFILE/ENOBUFS/ENOMEM pause the listener for [`ACCEPT_PAUSE`] with a reactor timer
//!   (kind [`TIMER_RESUME_ACCEPT`] on the listener's token), are counted in `pauses`, and are
//!   logged at most once per [`EXHAUSTION_LOG_EVERY`]. Nothing spins and nothing exits.
//!
//! The role drives it: `note_ready` on the listener's events, `next` in a loop to get sockets to
//! adopt, `on_timer` for its timer, `on_close` (or `resume_if`, for caps of its own) when a
//! connection ends, `pause` when it runs out of descriptors elsewhere (a backend socket), and
//! `close` to stop listening for good (draining).

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};

use crate::reactor::{Cx, Ready};

pub const ACCEPT_BATCH: usize = 256;
pub const ACCEPT_PAUSE: Duration = Duration::from_millis(50);
pub const EXHAUSTION_LOG_EVERY: Duration = Duration::from_secs(5);
/// Timer kind the acceptor arms on its own token; roles must not use it on listener tokens.
pub const TIMER_RESUME_ACCEPT: u8 = 250;

pub struct Acceptor {
    /// `None` once closed.
    listener: Option<TcpListener>,
    token: Token,
    /// How log lines name it (`the listener`, `listener main`).
    label: String,
    /// An edge said a connection is waiting and no `accept` has said WouldBlock since.
    ready: bool,
    /// Out of descriptors: waiting for the resume timer.
    paused: bool,
    /// Stopped at the role's cap: waiting to fall below 90% of it.
    at_cap: bool,
    last_log: Option<Instant>,
    /// Times accepting paused for want of descriptors or memory.
    pub pauses: u64,
}

impl Acceptor {
    pub fn new(listener: std::net::TcpListener, token: Token, label: impl Into<String>) -> Acceptor {
        Acceptor {
            listener: Some(TcpListener::from_std(listener)),
            token,
            label: label.into(),
            ready: false,
            paused: false,
            at_cap: false,
            last_log: None,
            pauses: 0,
        }
    }

    pub fn token(&self) -> Token {
        self.token
    }

    pub fn register(&mut self, registry: &Registry) -> io::Result<()> {
        match self.listener.as_mut() {
            Some(l) => registry.register(l, self.token, Interest::READABLE),
            None => Ok(()),
        }
    }

    /// Stops listening for good: new connections are refused by the kernel from now on.
    pub fn close(&mut self, registry: &Registry) {
        if let Some(mut l) = self.listener.take() {
            let _ = registry.deregister(&mut l);
        }
    }

    /// Assumes connections wait in the backlog and looks next turn (after registering late, or
    /// when a cap lifted: edges that came meanwhile were consumed).
    pub fn wake(&mut self, cx: &mut Cx) {
        self.ready = true;
        cx.defer(self.token);
    }

    /// The listener's event, or `Ready::EMPTY` for a deferred visit (keeps the current state).
    pub fn note_ready(&mut self, ready: Ready) {
        self.ready |= !ready.is_empty();
    }

    /// Handles the resume timer; false if `kind` is not the acceptor's.
    pub fn on_timer(&mut self, kind: u8) -> bool {
        if kind != TIMER_RESUME_ACCEPT {
            return false;
        }
        self.paused = false;
        // Connections may have queued while paused without a new edge: look.
        self.ready = true;
        true
    }

    /// The next connection to adopt, or `None` when there is nothing more to take this turn.
    /// `taken` counts this wake-up's accepts (start it at 0); `full` says the role's table is
    /// at its cap.
    pub fn next(&mut self, cx: &mut Cx, taken: &mut usize, full: bool) -> Option<(TcpStream, SocketAddr)> {
        if full {
            self.at_cap = true;
        }
        if self.paused || self.at_cap || !self.ready {
            return None;
        }
        loop {
            if *taken >= ACCEPT_BATCH {
                cx.defer(self.token);
                return None;
            }
            let accepted = match self.listener.as_ref() {
                Some(l) => l.accept(),
                None => return None,
            };
            match accepted {
                Ok(conn) => {
                    *taken += 1;
                    return Some(conn);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.ready = false;
                    return None;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if super::is_exhaustion(&e) => {
                    self.pause(cx, "accept", &e);
                    return None;
                }
                Err(e) => {
                    // ECONNABORTED and friends concern one connection, not the listener; they
                    // count against the batch so this loop stays bounded.
                    *taken += 1;
                    log::debug!("r{} accept: {e}", cx.id);
                }
            }
        }
    }

    /// Out of descriptors or memory on `what` (the accept itself, or a socket the role needed
    /// for a new connection): stop accepting for [`ACCEPT_PAUSE`], count it, log at most once
    /// per [`EXHAUSTION_LOG_EVERY`]. The next accept happens on the timer: never a spin.
    pub fn pause(&mut self, cx: &mut Cx, what: &str, e: &io::Error) {
        if self.paused {
            return;
        }
        self.paused = true;
        self.pauses += 1;
        if self.last_log.is_none_or(|t| cx.now.duration_since(t) >= EXHAUSTION_LOG_EVERY) {
            log::warn!(
                "r{} {what}: {e}; pausing {} for {ACCEPT_PAUSE:?} (counted as accept pauses)",
                cx.id,
                self.label
            );
            self.last_log = Some(cx.now);
        }
        cx.arm(cx.now + ACCEPT_PAUSE, self.token, TIMER_RESUME_ACCEPT);
    }

    /// A connection of the role ended; `len` and `cap` describe its table now.
    pub fn on_close(&mut self, cx: &mut Cx, len: usize, cap: usize) {
        self.resume_if(cx, len < cap * 9 / 10 + usize::from(cap < 10));
    }

    /// Resumes after a stop at the cap once `below` (the role's own "under 90% of every cap").
    pub fn resume_if(&mut self, cx: &mut Cx, below: bool) {
        if self.at_cap && below {
            self.at_cap = false;
            self.wake(cx);
        }
    }
}
