//! The engine: a fixed pool of mio reactor threads, one per core, that owns every socket.
//!
//! One thing a file: this file (the reactor loop, [`Cx`], [`Handler`], [`Pool`]), `slab` (the
//! generation-tagged connection table), `timer` (the timer heap), `readiness` (userspace
//! readiness), `coordinator` (the calling thread's loop), `accept` (the shared [`accept::Acceptor`]
//! and [`accept::Admission`]), `buf` (the fixed [`buf::Ring`]), `pool` (the bounded per-reactor
//! [`pool::BufPool`] of rings and pipes every role borrows buffers from) and `affinity` (reactor
//! placement on CPUs).
//!
//! ```text
//!                 signals (sigwait thread)
//!                         │ crossbeam (bounded)
//!                         ▼
//!   ┌──────────────── coordinator ────────────────┐   merges per-interval stats, prints,
//!   │  Pool::send(i, Cmd) = try_send + Waker::wake │   owns the final report and the
//!   └──────┬──────────────────┬───────────────────┘   socket-buffer policy
//!          │ cmd + wake       │ cmd + wake        ▲ stats (bounded, try_send)
//!          ▼                  ▼                   │
//!   ┌─ reactor 0 ──────┐ ┌─ reactor 1 ──────┐     │
//!   │ mio::Poll        │ │ mio::Poll        │ ────┘
//!   │ Slab<Conn>       │ │ Slab<Conn>       │   each reactor: its own listener
//!   │ Timers (1 heap)  │ │ Timers (1 heap)  │   (SO_REUSEPORT), its own sockets,
//!   │ pending tokens   │ │ pending tokens   │   nothing shared but channels
//!   └──────────────────┘ └──────────────────┘
//! ```
//!
//! One loop turn: poll (timeout = 0 if tokens are pending, else the next timer deadline capped
//! at the tick) → dispatch events → serve the pending list (work left over when a per-wake-up
//! budget ran out) → fire expired timers (bounded batch) → tick (stats flush) → exit when the
//! role says it is finished. Roles plug in through [`Handler`] on the reactors and through
//! [`coordinator::Role`] on the calling thread (reports, signals, interval lines, grace deadline).

pub(crate) mod accept;
pub mod affinity;
pub(crate) mod buf;
pub(crate) mod coordinator;
pub(crate) mod pool;
pub mod readiness;
pub mod slab;
pub mod timer;

use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use mio::{Events, Poll, Registry, Token, Waker};

pub use readiness::{Readiness, Ready};
pub use slab::Slab;
pub use timer::Timers;

/// Token of each reactor's waker.
pub const WAKER: Token = Token(usize::MAX);
/// Listener `i` of a reactor uses `listener_token(i)`.
pub const MAX_LISTENERS: usize = 64;
/// Reactor-level role timers (pacing, health checks) use `role_token(i)`, below the listeners.
pub const MAX_ROLE_TOKENS: usize = 64;
/// epoll events taken per wake-up.
pub const EVENTS_CAPACITY: usize = 1024;
/// Commands drained per wake-up.
pub const COMMAND_BATCH: usize = 256;
/// Expired timers fired per loop turn; the rest wait for the next turn (poll timeout 0).
pub const TIMER_BATCH: usize = 4096;
/// Capacity of each reactor's command channel.
pub const COMMAND_QUEUE: usize = 1024;

pub fn listener_token(i: usize) -> Token {
    debug_assert!(i < MAX_LISTENERS);
    Token(usize::MAX - 1 - i)
}

pub fn listener_index(t: Token) -> Option<usize> {
    let i = usize::MAX.wrapping_sub(t.0).wrapping_sub(1);
    (i < MAX_LISTENERS).then_some(i)
}

pub fn role_token(i: usize) -> Token {
    debug_assert!(i < MAX_ROLE_TOKENS);
    Token(usize::MAX - 1 - MAX_LISTENERS - i)
}

pub fn role_index(t: Token) -> Option<usize> {
    let i = usize::MAX.wrapping_sub(t.0).wrapping_sub(1 + MAX_LISTENERS);
    (i < MAX_ROLE_TOKENS).then_some(i)
}

/// Headroom below the timer capacity at which [`purge_closed`] starts working (or a quarter of
/// the capacity, when that is smaller).
pub const TIMER_PURGE_SLACK: usize = 2048;

/// Closed connections leave their timer entries in the heap (lazy cancel) until the deadline,
/// which may be minutes away (idle timeouts): under connection churn they would fill it and
/// new connections would run without timers. When the heap is within [`TIMER_PURGE_SLACK`] of
/// its capacity (a quarter of it for small heaps), this drops the entries of `slab`'s connections that are gone (the generation
/// check tells); other tokens' entries stay. Returns how many were dropped.
pub fn purge_closed<T>(timers: &mut Timers, slab: &Slab<T>) -> usize {
    let slack = TIMER_PURGE_SLACK.min(timers.capacity() / 4);
    if timers.len() + slack < timers.capacity() {
        return 0;
    }
    let before = timers.len();
    timers.retain(|tok, _| !slab.owns(tok) || slab.get(tok).is_some());
    before - timers.len()
}

/// What a role sees of its reactor during a callback.
pub struct Cx<'a> {
    /// Index of this reactor in the pool.
    pub id: usize,
    pub registry: &'a Registry,
    pub timers: &'a mut Timers,
    /// Loop time, read once per turn.
    pub now: Instant,
    pending: &'a mut Vec<Token>,
}

impl Cx<'_> {
    /// Asks for `on_ready(token, EMPTY)` again next turn: a budget ran out with work left.
    pub fn defer(&mut self, token: Token) {
        self.pending.push(token);
    }

    /// Arms a timer; a full heap is a role bug, logged once per call site and reported.
    pub fn arm(&mut self, at: Instant, token: Token, kind: u8) -> bool {
        match self.timers.arm(at, token, kind) {
            Ok(()) => true,
            Err(_) => {
                log::error!(
                    "r{} timer heap full ({} entries): timer for {:?} dropped",
                    self.id,
                    self.timers.len(),
                    token
                );
                false
            }
        }
    }
}

/// A role's per-reactor state. One value per reactor thread, moved there at spawn.
pub trait Handler: Send + 'static {
    /// Commands the coordinator sends this reactor.
    type Cmd: Send + 'static;

    /// Runs on the reactor thread before the first poll: register listeners, arm timers.
    fn on_start(&mut self, cx: &mut Cx) -> io::Result<()>;
    /// Readiness for `token`, or `Ready::EMPTY` when the token was deferred.
    fn on_ready(&mut self, cx: &mut Cx, token: Token, ready: Ready);
    /// A timer armed with `Cx::arm` expired.
    fn on_timer(&mut self, cx: &mut Cx, token: Token, kind: u8);
    fn on_command(&mut self, cx: &mut Cx, cmd: Self::Cmd);
    /// Called every tick (stats flush, sweeps).
    fn on_tick(&mut self, cx: &mut Cx);
    /// The reactor's waker fired (commands, or a connection slot freed on another reactor:
    /// see [`accept::Admission`]). Acceptors stopped at a limit look again.
    fn on_wake(&mut self, _cx: &mut Cx) {}
    /// When true after a loop turn, the reactor calls `on_exit` and the thread ends.
    fn finished(&self) -> bool;
    /// Last call on the reactor thread: flush final stats.
    fn on_exit(&mut self, cx: &mut Cx);
}

/// Sending side of one reactor: a bounded channel plus its waker.
pub struct ReactorHandle<C> {
    tx: Sender<C>,
    waker: Arc<Waker>,
}

impl<C> Clone for ReactorHandle<C> {
    fn clone(&self) -> Self {
        ReactorHandle { tx: self.tx.clone(), waker: self.waker.clone() }
    }
}

impl<C> ReactorHandle<C> {
    /// Never blocks: a full queue hands the command back.
    pub fn send(&self, cmd: C) -> Result<(), C> {
        match self.tx.try_send(cmd) {
            Ok(()) => {
                let _ = self.waker.wake();
                Ok(())
            }
            Err(TrySendError::Full(c)) | Err(TrySendError::Disconnected(c)) => Err(c),
        }
    }
}

/// A pin the kernel refused: (reactor, CPU, error).
pub type RefusedPin = (usize, usize, io::Error);

/// The running reactors of one role.
pub struct Pool<C> {
    pub handles: Vec<ReactorHandle<C>>,
    threads: Vec<JoinHandle<()>>,
}

impl<C: Send + 'static> Pool<C> {
    /// Starts one reactor per handler. `tick` is the period of `on_tick`.
    pub fn spawn<H: Handler<Cmd = C>>(name: &str, handlers: Vec<H>, tick: Duration) -> io::Result<Pool<C>> {
        Self::spawn_pinned(name, handlers, tick, None).map(|(pool, _)| pool)
    }

    /// [`Pool::spawn`], reactor `i` pinned to `cpus[i]` (see [`affinity`]). Each reactor pins
    /// itself before its first poll and reports back, so every pin holds when this returns; the
    /// second value lists the pins the kernel refused (those reactors run unpinned).
    pub fn spawn_pinned<H: Handler<Cmd = C>>(
        name: &str,
        handlers: Vec<H>,
        tick: Duration,
        cpus: Option<&[usize]>,
    ) -> io::Result<(Pool<C>, Vec<RefusedPin>)> {
        let mut handles = Vec::with_capacity(handlers.len());
        let mut threads = Vec::with_capacity(handlers.len());
        let mut refused = Vec::new();
        for (id, handler) in handlers.into_iter().enumerate() {
            let poll = Poll::new()?;
            let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
            let (tx, rx) = crossbeam_channel::bounded(COMMAND_QUEUE);
            let cpu = cpus.and_then(|c| c.get(id).copied());
            let (pinned_tx, pinned_rx) = crossbeam_channel::bounded::<io::Result<()>>(1);
            let thread = std::thread::Builder::new().name(format!("{name}-r{id}")).spawn(move || {
                if let Some(cpu) = cpu {
                    let _ = pinned_tx.send(crate::sys::pin_thread(cpu));
                }
                drop(pinned_tx);
                run(id, poll, rx, handler, tick)
            })?;
            if let Some(cpu) = cpu {
                // The first thing the thread does; a thread that died first counts as refused.
                let r = pinned_rx.recv().unwrap_or_else(|_| Err(io::Error::other("reactor thread ended")));
                if let Err(e) = r {
                    refused.push((id, cpu, e));
                }
            }
            handles.push(ReactorHandle { tx, waker });
            threads.push(thread);
        }
        Ok((Pool { handles, threads }, refused))
    }

    /// Reactor `i`'s waker at index `i` (for [`accept::Admission::set_wakers`]).
    pub fn wakers(&self) -> Vec<Arc<Waker>> {
        self.handles.iter().map(|h| h.waker.clone()).collect()
    }

    /// Sends `make(i)` to every reactor; returns how many queues were full.
    pub fn broadcast(&self, mut make: impl FnMut(usize) -> C) -> usize {
        self.handles.iter().enumerate().filter(|(i, h)| h.send(make(*i)).is_err()).count()
    }

    /// Waits for every reactor thread to end.
    pub fn join(self) {
        for t in self.threads {
            // A panicking reactor already ended the process through the panic hook.
            let _ = t.join();
        }
    }
}

/// Runs `handler` as reactor `id` on the calling thread until it finishes: a role's side loop
/// that takes no commands (the proxy's admin endpoint), on a thread the role already owns.
pub fn run_here<H: Handler>(id: usize, handler: H, tick: Duration) -> io::Result<()> {
    let poll = Poll::new()?;
    // No sender ever sends: nothing registers a waker, so the channel is never looked at.
    let (_commands, rx) = crossbeam_channel::bounded::<H::Cmd>(1);
    run(id, poll, rx, handler, tick);
    Ok(())
}

/// Serves at most `COMMAND_BATCH` commands; more waiting means another turn (deferred waker).
fn drain_commands<H: Handler>(rx: &Receiver<H::Cmd>, handler: &mut H, cx: &mut Cx) {
    for cmd in rx.try_iter().take(COMMAND_BATCH) {
        handler.on_command(cx, cmd);
    }
    if !rx.is_empty() {
        cx.defer(WAKER);
    }
}

fn run<H: Handler>(id: usize, mut poll: Poll, rx: Receiver<H::Cmd>, mut handler: H, tick: Duration) {
    let mut events = Events::with_capacity(EVENTS_CAPACITY);
    let mut timers = Timers::new(1 << 16);
    let mut pending: Vec<Token> = Vec::new();
    let mut batch: Vec<Token> = Vec::new();
    let mut now = Instant::now();
    let mut next_tick = now + tick;
    {
        let mut cx = Cx { id, registry: poll.registry(), timers: &mut timers, now, pending: &mut pending };
        if let Err(e) = handler.on_start(&mut cx) {
            log::error!("reactor {id} failed to start: {e}");
            handler.on_exit(&mut cx);
            return;
        }
    }
    loop {
        let timeout = if pending.is_empty() {
            timers.timeout(now, next_tick.saturating_duration_since(now))
        } else {
            Duration::ZERO
        };
        if let Err(e) = poll.poll(&mut events, Some(timeout)) {
            if e.kind() != io::ErrorKind::Interrupted {
                log::error!("reactor {id}: poll failed: {e}");
                break;
            }
        }
        now = Instant::now();
        let mut cx = Cx { id, registry: poll.registry(), timers: &mut timers, now, pending: &mut pending };
        for ev in events.iter() {
            let token = ev.token();
            if token == WAKER {
                drain_commands(&rx, &mut handler, &mut cx);
                handler.on_wake(&mut cx);
            } else {
                handler.on_ready(&mut cx, token, Ready::from_event(ev));
            }
        }
        // Serve work left over from earlier budgets. Deduplicate: a token may have been
        // deferred twice (once from an event, once from the previous pending pass).
        std::mem::swap(cx.pending, &mut batch);
        batch.sort_unstable();
        batch.dedup();
        for token in batch.drain(..) {
            if token == WAKER {
                drain_commands(&rx, &mut handler, &mut cx);
            } else {
                handler.on_ready(&mut cx, token, Ready::EMPTY);
            }
        }
        for _ in 0..TIMER_BATCH {
            match cx.timers.pop_expired(now) {
                Some((token, kind)) => handler.on_timer(&mut cx, token, kind),
                None => break,
            }
        }
        if now >= next_tick {
            handler.on_tick(&mut cx);
            next_tick = now + tick;
        }
        if handler.finished() {
            handler.on_exit(&mut cx);
            return;
        }
    }
    let mut cx = Cx { id, registry: poll.registry(), timers: &mut timers, now, pending: &mut pending };
    handler.on_exit(&mut cx);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purge_drops_only_closed_connections_entries() {
        let now = Instant::now();
        let mut slab: Slab<u8> = Slab::new(4, 16, 16);
        let mut timers = Timers::new(3);
        let live = slab.insert(1).unwrap();
        let dead = slab.insert(2).unwrap();
        slab.remove(dead);
        timers.arm(now, live, 0).unwrap();
        timers.arm(now, dead, 0).unwrap();
        timers.arm(now, role_token(0), 0).unwrap();
        assert_eq!(purge_closed(&mut timers, &slab), 1);
        assert_eq!(timers.len(), 2);
        let fired: Vec<Token> = std::iter::from_fn(|| timers.pop_expired(now)).map(|(t, _)| t).collect();
        assert!(fired.contains(&live) && fired.contains(&role_token(0)) && !fired.contains(&dead));
    }

    #[test]
    fn reserved_tokens_do_not_overlap() {
        assert_eq!(listener_index(listener_token(0)), Some(0));
        assert_eq!(listener_index(listener_token(MAX_LISTENERS - 1)), Some(MAX_LISTENERS - 1));
        assert_eq!(role_index(role_token(3)), Some(3));
        assert_eq!(listener_index(role_token(0)), None);
        assert_eq!(role_index(listener_token(0)), None);
        assert_eq!(listener_index(WAKER), None);
        assert_eq!(role_index(WAKER), None);
        assert_eq!(slab::tag_of(role_token(MAX_ROLE_TOKENS - 1)), None);
    }

    /// A handler that counts ticks and timer firings and finishes on command.
    struct Probe {
        done: bool,
        fired: u32,
        out: Sender<&'static str>,
    }

    impl Handler for Probe {
        type Cmd = &'static str;
        fn on_start(&mut self, cx: &mut Cx) -> io::Result<()> {
            cx.arm(cx.now + Duration::from_millis(5), role_token(0), 1);
            Ok(())
        }
        fn on_ready(&mut self, _: &mut Cx, _: Token, _: Ready) {}
        fn on_timer(&mut self, _: &mut Cx, token: Token, kind: u8) {
            assert_eq!((token, kind), (role_token(0), 1));
            self.fired += 1;
            let _ = self.out.send("timer");
        }
        fn on_command(&mut self, _: &mut Cx, cmd: &'static str) {
            if cmd == "stop" {
                self.done = true;
            }
        }
        fn on_tick(&mut self, _: &mut Cx) {}
        fn finished(&self) -> bool {
            self.done
        }
        fn on_exit(&mut self, _: &mut Cx) {
            let _ = self.out.send("exit");
        }
    }

    #[test]
    fn timers_fire_and_commands_wake_the_reactor() {
        let (tx, rx) = crossbeam_channel::bounded(8);
        let pool = Pool::spawn("t", vec![Probe { done: false, fired: 0, out: tx }], Duration::from_secs(3600)).unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok("timer"));
        // The tick is an hour away: only the waker can end this poll.
        assert_eq!(pool.broadcast(|_| "stop"), 0);
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok("exit"));
        pool.join();
    }
}
