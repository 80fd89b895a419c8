//! `Acceptor`: one reactor's listener and the accept rules every server role shares.
//!
//! - At most [`ACCEPT_BATCH`] accepts per wake-up; with the listener still ready its handle is
//!   deferred, so the rest are taken next turn (never dropped, never starving other sockets).
//! - The connection limit is the process's, not a reactor's share: every accept first takes a
//!   [`Slot`] of the role's [`Admission`], shared by all its reactors, and the connection keeps
//!   it until it is dropped. At the limit no reactor accepts: clients wait in the kernel's
//!   backlog, never accepted and then ignored. A reactor that found no slot marks itself
//!   waiting; the close that frees a slot wakes every waiting reactor through its `mio::Waker`
//!   (the reactor then calls the role's `on_wake`, which calls [`Acceptor::on_wake`]), so the
//!   backlog of whichever listener the kernel chose is served at once. No timer, no spin.
//! - EMFILE/ENFILE/ENOBUFS/ENOMEM pause the listener for [`ACCEPT_PAUSE`] with a reactor timer
//!   (kind [`TIMER_RESUME_ACCEPT`] of the listener's handle), are counted in `pauses`, and are
//!   logged at most once per [`EXHAUSTION_LOG_EVERY`]. Nothing spins and nothing exits.
//!
//! The role drives it: `note_ready` on the listener's events, `next` in a loop to get sockets to
//! adopt (each with its slot, to keep with the connection), `on_timer` for its timer, `on_wake`
//! from its handler's `on_wake`, `pause` when it runs out of descriptors elsewhere (a backend
//! socket), and `close` to stop listening for good (draining).

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Waker};

use super::{Cx, Entry, Handle, Kind, Ready};

pub const ACCEPT_BATCH: usize = 256;
pub const ACCEPT_PAUSE: Duration = Duration::from_millis(50);
pub const EXHAUSTION_LOG_EVERY: Duration = Duration::from_secs(5);
/// Timer kind the acceptor arms on its own handle.
pub const TIMER_RESUME_ACCEPT: Kind = Kind::new(0);

/// A connection limit shared by the reactors of a role: at most `cap` [`Slot`]s exist at once,
/// and a slot of an admission with a parent holds one of the parent's too (a proxy listener's
/// cap inside the global one).
///
/// Waking: a reactor that finds no slot sets its `waiting` flag and tries once more; a release
/// that leaves the count below the cap (it was at the cap: the first release after a failed try
/// always is) clears the flags and wakes those reactors. Flag-then-retry against
/// release-then-scan, all SeqCst: either the retry sees the free slot or the scan sees the flag.
pub struct Admission {
    cap: usize,
    open: AtomicUsize,
    /// Slots holding an accepted connection ([`Slot::hold`]), and the most of them at once.
    held: AtomicUsize,
    peak: AtomicUsize,
    parent: Option<Arc<Admission>>,
    waiting: Box<[AtomicBool]>,
    /// Reactor `i`'s waker; set once the reactors run ([`Admission::set_wakers`]).
    wakers: OnceLock<Vec<Arc<Waker>>>,
}

impl Admission {
    /// A limit of `cap` connections (at least 1) over `reactors` reactors.
    pub fn new(cap: usize, reactors: usize, parent: Option<Arc<Admission>>) -> Arc<Admission> {
        Arc::new(Admission {
            cap: cap.max(1),
            open: AtomicUsize::new(0),
            held: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            parent,
            waiting: (0..reactors.max(1)).map(|_| AtomicBool::new(false)).collect(),
            wakers: OnceLock::new(),
        })
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Slots held now.
    pub fn open(&self) -> usize {
        self.open.load(SeqCst)
    }

    /// Gives reactor `i` its waker (`wakers[i]`), then wakes whoever started waiting before.
    pub fn set_wakers(&self, wakers: Vec<Arc<Waker>>) {
        let _ = self.wakers.set(wakers);
        self.wake_waiting();
        if let Some(p) = &self.parent {
            p.set_wakers(self.wakers.get().cloned().unwrap_or_default());
        }
    }

    /// A slot of this admission and of its parent, or `None` when either is at its cap.
    pub fn try_admit(self: &Arc<Self>) -> Option<Reservation> {
        if !self.take() {
            return None;
        }
        if let Some(p) = &self.parent {
            if !p.take() {
                self.give();
                return None;
            }
        }
        Some(Reservation { gate: Some(self.clone()) })
    }

    /// Reactor `id` found no slot: the next release wakes it.
    pub fn wait(&self, id: usize) {
        if let Some(f) = self.waiting.get(id) {
            f.store(true, SeqCst);
        }
        if let Some(p) = &self.parent {
            p.wait(id);
        }
    }

    fn take(&self) -> bool {
        self.open.fetch_update(SeqCst, SeqCst, |n| (n < self.cap).then_some(n + 1)).is_ok()
    }

    /// The most accepted connections held at once so far, over every reactor: exact, unlike a
    /// maximum of sampled counts, which misses a connection opened and closed between two
    /// samples (slots taken for an accept that found nothing are not counted).
    pub fn peak(&self) -> usize {
        self.peak.load(SeqCst)
    }

    fn give(&self) {
        if self.open.fetch_sub(1, SeqCst) == self.cap {
            self.wake_waiting();
        }
    }

    fn wake_waiting(&self) {
        let Some(wakers) = self.wakers.get() else { return };
        for (flag, w) in self.waiting.iter().zip(wakers) {
            if flag.load(SeqCst) && flag.swap(false, SeqCst) {
                let _ = w.wake();
            }
        }
    }
}

/// A place taken under an [`Admission`]'s cap (and its parent's) before the accept that may
/// fill it; dropped unused (the accept found nothing), it gives the place back.
pub struct Reservation {
    /// `None` once [`Reservation::hold`] moved it into a [`Slot`].
    gate: Option<Arc<Admission>>,
}

impl Reservation {
    /// The place now holds an accepted connection: counted towards [`Admission::peak`].
    pub fn hold(mut self) -> Slot {
        let gate = self.gate.take().expect("a reservation is held once");
        let n = gate.held.fetch_add(1, SeqCst) + 1;
        gate.peak.fetch_max(n, SeqCst);
        Slot { gate }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(g) = self.gate.take() {
            g.release();
        }
    }
}

/// One admitted connection's place under its [`Admission`]'s cap, 8 bytes (every connection
/// holds one); dropping it frees the place (and the parent's), waking reactors that wait.
pub struct Slot {
    gate: Arc<Admission>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.gate.held.fetch_sub(1, SeqCst);
        self.gate.release();
    }
}

impl Admission {
    /// Gives a place back to this admission and its parent.
    fn release(&self) {
        self.give();
        if let Some(p) = &self.parent {
            p.give();
        }
    }
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Slot({}/{})", self.gate.open(), self.gate.cap)
    }
}

pub struct Acceptor {
    /// `None` once closed.
    listener: Option<TcpListener>,
    /// The engine's name for it, allocated when it first registers.
    handle: Option<Handle>,
    /// How log lines name it (`the listener`, `listener main`).
    label: String,
    /// An edge said a connection is waiting and no `accept` has said WouldBlock since.
    ready: bool,
    /// Out of descriptors: waiting for the resume timer.
    paused: bool,
    /// The connection limit every accept takes a slot of.
    gate: Arc<Admission>,
    /// Found no slot: waiting for a release to wake the reactor ([`Acceptor::on_wake`]).
    at_cap: bool,
    last_log: Option<Instant>,
    /// Times accepting paused for want of descriptors or memory.
    pub pauses: u64,
}

impl Acceptor {
    pub fn new(listener: std::net::TcpListener, label: impl Into<String>, gate: Arc<Admission>) -> Acceptor {
        Acceptor {
            listener: Some(TcpListener::from_std(listener)),
            handle: None,
            label: label.into(),
            ready: false,
            paused: false,
            gate,
            at_cap: false,
            last_log: None,
            pauses: 0,
        }
    }

    /// Its handle, once registered: events and timers of the listener come to the role's
    /// `on_handle` / `on_handle_timer` under it.
    pub fn handle(&self) -> Option<Handle> {
        self.handle
    }

    /// Registers the listener under a handle of this reactor (allocated on the first call).
    pub fn register<E: Entry>(&mut self, cx: &mut Cx<E>) -> io::Result<()> {
        let h = match self.handle {
            Some(h) => h,
            None => *self.handle.insert(cx.handle()?),
        };
        match self.listener.as_mut() {
            Some(l) => cx.registry.register(l, h.token(), Interest::READABLE),
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
    pub fn wake<E: Entry>(&mut self, cx: &mut Cx<E>) {
        self.ready = true;
        if let Some(h) = self.handle {
            cx.defer_handle(h);
        }
    }

    /// The listener's event, or `Ready::EMPTY` for a deferred visit (keeps the current state).
    pub fn note_ready(&mut self, ready: Ready) {
        self.ready |= !ready.is_empty();
    }

    /// Handles the resume timer; false if `kind` is not the acceptor's.
    pub fn on_timer(&mut self, kind: Kind) -> bool {
        if kind != TIMER_RESUME_ACCEPT {
            return false;
        }
        self.paused = false;
        // Connections may have queued while paused without a new edge: look.
        self.ready = true;
        true
    }

    /// The next connection to adopt with its slot (keep it as long as the connection), or
    /// `None` when there is nothing more to take this turn. `taken` counts this wake-up's
    /// accepts (start it at 0).
    pub fn next<E: Entry>(&mut self, cx: &mut Cx<E>, taken: &mut usize) -> Option<(TcpStream, SocketAddr, Slot)> {
        if self.paused || self.at_cap || !self.ready || self.listener.is_none() {
            return None;
        }
        loop {
            if *taken >= ACCEPT_BATCH {
                self.wake(cx);
                return None;
            }
            let slot = match self.gate.try_admit() {
                Some(s) => s,
                None => {
                    // At the limit: ask to be woken, then look once more (a release may have
                    // come between the two; see `Admission`).
                    self.gate.wait(cx.id);
                    match self.gate.try_admit() {
                        Some(s) => s,
                        None => {
                            self.at_cap = true;
                            return None;
                        }
                    }
                }
            };
            let accepted = match self.listener.as_ref() {
                Some(l) => l.accept(),
                None => return None,
            };
            match accepted {
                Ok((sock, peer)) => {
                    *taken += 1;
                    return Some((sock, peer, slot.hold()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.ready = false;
                    return None;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if crate::net::is_exhaustion(&e) => {
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
    pub fn pause<E: Entry>(&mut self, cx: &mut Cx<E>, what: &str, e: &io::Error) {
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
        if let Some(h) = self.handle {
            cx.arm(h, TIMER_RESUME_ACCEPT, cx.now + ACCEPT_PAUSE);
        }
    }

    /// The reactor was woken (a slot may have been freed, on any reactor): a listener stopped
    /// at the limit looks again next turn.
    pub fn on_wake<E: Entry>(&mut self, cx: &mut Cx<E>) {
        if self.at_cap {
            self.at_cap = false;
            self.wake(cx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::Token;

    #[test]
    fn slots_are_bounded_by_the_cap_and_the_parent() {
        let global = Admission::new(3, 2, None);
        let a = Admission::new(2, 2, Some(global.clone()));
        let b = Admission::new(2, 2, Some(global.clone()));
        let a1 = a.try_admit().unwrap();
        let _a2 = a.try_admit().unwrap();
        assert!(a.try_admit().is_none(), "listener cap");
        let b1 = b.try_admit().unwrap();
        assert!(b.try_admit().is_none(), "global cap");
        assert_eq!((global.open(), a.open(), b.open()), (3, 2, 1));
        drop(a1);
        assert_eq!((global.open(), a.open()), (2, 1));
        let _b2 = b.try_admit().unwrap();
        drop(b1);
        assert_eq!(global.open(), 2);
    }

    #[test]
    fn a_release_wakes_the_reactors_that_wait() {
        let mut poll = mio::Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), Token(7)).unwrap());
        let gate = Admission::new(1, 2, None);
        let held = gate.try_admit().unwrap();
        assert!(gate.try_admit().is_none());
        let other = mio::Poll::new().unwrap();
        let mut events = mio::Events::with_capacity(4);
        // Wakers arrive after the reactors start; a flag set before then gets its wake then.
        gate.wait(1);
        gate.set_wakers(vec![Arc::new(Waker::new(other.registry(), Token(1)).unwrap()), waker]);
        poll.poll(&mut events, Some(Duration::from_secs(5))).unwrap();
        assert_eq!(events.iter().map(|e| e.token()).collect::<Vec<_>>(), vec![Token(7)]);
        gate.wait(1);
        poll.poll(&mut events, Some(Duration::ZERO)).unwrap();
        assert!(events.is_empty(), "nothing freed yet");
        drop(held);
        poll.poll(&mut events, Some(Duration::from_secs(5))).unwrap();
        assert_eq!(events.iter().map(|e| e.token()).collect::<Vec<_>>(), vec![Token(7)]);
        // The flag is cleared: the next release does not wake again.
        let again = gate.try_admit().unwrap();
        drop(again);
        poll.poll(&mut events, Some(Duration::ZERO)).unwrap();
        assert!(events.is_empty());
    }
}
