//! The engine: a fixed pool of mio reactor threads, one per core, that owns every socket.
//!
//! One thing a file: this file (the reactor loop, [`Cx`], [`Handler`], [`Pool`], [`Handle`]),
//! `table` (the generation-tagged connection table and its tokens), `timer` (timers keyed by
//! owner and kind), `clock` (the timerfd that fires them to the nanosecond, on request), `stamp`
//! (8-byte instants for per-connection state), `readiness` (userspace readiness),
//! `coordinator` (the calling thread's loop), `accept` (the shared [`accept::Acceptor`] and
//! [`accept::Admission`]), `buf` (the fixed [`buf::Ring`]), `pool` (the bounded per-reactor
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
//!   │ Table<Entry>     │ │ Table<Entry>     │   each reactor: its own listener
//!   │ Timers (indexed) │ │ Timers (indexed) │   (SO_REUSEPORT), its own sockets,
//!   │ pending tokens   │ │ pending tokens   │   nothing shared but channels
//!   └──────────────────┘ └──────────────────┘
//! ```
//!
//! One loop turn: poll (timeout = 0 if tokens are pending, else the next timer deadline capped
//! at the tick; with [`Cx::precise_timers`], a timerfd armed for that deadline wakes it) →
//! dispatch events → serve the pending list (work left over when a per-wake-up budget ran out)
//! → fire expired timers (bounded batch) → tick (stats flush) → drop the entries closed during
//! the turn → exit when the role says it is finished. Roles plug in through
//! [`Handler`] on the reactors and through [`coordinator::Role`] on the calling thread (reports,
//! signals, interval lines, grace deadline).
//!
//! Tokens are the engine's alone. A role's sockets are entries of the reactor's [`Table`] (its
//! own entry type, an enum when it has several kinds), and its listeners and clocks are
//! [`Handle`]s from [`Cx::handle`]. The loop decodes each event's token and calls
//! `on_ready(key, socket, ready)` or `on_handle(handle, ready)`, and each expired timer as
//! `on_timer(key, kind)` or `on_handle_timer(handle, kind)`; an event or timer of an entry that
//! closed never reaches the role. The waker is `Token(usize::MAX)`, handles sit just below it,
//! entries' tokens have the top bit clear.

pub(crate) mod accept;
pub mod affinity;
pub(crate) mod buf;
pub(crate) mod clock;
pub(crate) mod coordinator;
pub(crate) mod pool;
pub mod readiness;
pub(crate) mod stamp;
pub mod table;
pub mod timer;

use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use mio::{Events, Poll, Registry, Token, Waker};

pub use readiness::{Readiness, Ready};
pub(crate) use stamp::{Stamp, StateStamp};
pub use table::{Entry, Key, Refused, Table};
pub use timer::{Kind, Owner, Timers};

/// Token of each reactor's waker (handles sit just below it).
pub const WAKER: Token = Token(usize::MAX);
/// epoll events taken per wake-up.
pub const EVENTS_CAPACITY: usize = 1024;
/// Commands drained per wake-up.
pub const COMMAND_BATCH: usize = 256;
/// Expired timers fired per loop turn; the rest wait for the next turn (poll timeout 0).
pub const TIMER_BATCH: usize = 4096;
/// Capacity of each reactor's command channel.
pub const COMMAND_QUEUE: usize = 1024;

/// Role handles a reactor may allocate (listeners, pacing clocks, drain deadlines).
pub const MAX_HANDLES: usize = 128;

/// A role-level source of events and timers that is not a table entry: a listener, a clock.
/// Allocated by the engine ([`Cx::handle`]); its token sits at the top of the token space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Handle(u16);

impl Handle {
    pub(crate) fn new(i: usize) -> Handle {
        debug_assert!(i < MAX_HANDLES);
        Handle(i as u16)
    }

    pub(crate) fn index(self) -> usize {
        self.0 as usize
    }

    /// The token a listener registered under this handle carries.
    pub(crate) fn token(self) -> Token {
        Token(usize::MAX - 1 - self.0 as usize)
    }

    fn of(t: Token, allocated: usize) -> Option<Handle> {
        let i = usize::MAX.wrapping_sub(t.0).wrapping_sub(1);
        (i < allocated).then_some(Handle(i as u16))
    }
}

/// What a role sees of its reactor during a callback.
pub struct Cx<'a, E = ()> {
    /// Index of this reactor in the pool.
    pub id: usize,
    pub registry: &'a Registry,
    /// The reactor's entries (see [`table`]).
    pub table: &'a mut Table<E>,
    /// Timers keyed by (entry or handle, kind) (see [`timer`]).
    pub timers: &'a mut Timers,
    /// Loop time, read once per turn.
    pub now: Instant,
    pending: &'a mut Vec<Token>,
    handles: &'a mut usize,
    clock: &'a mut Option<clock::Clock>,
}

impl<E: Entry> Cx<'_, E> {
    /// Asks for `on_ready(key, 0, EMPTY)` again next turn: a budget ran out with work left.
    pub fn defer(&mut self, key: Key) {
        self.pending.push(table::token(key, 0));
    }

    /// Asks for `on_handle(h, EMPTY)` again next turn.
    pub fn defer_handle(&mut self, h: Handle) {
        self.pending.push(h.token());
    }

    /// A new handle of this reactor; at most [`MAX_HANDLES`] (allocate them in `on_start`).
    pub fn handle(&mut self) -> io::Result<Handle> {
        if *self.handles >= MAX_HANDLES {
            return Err(io::Error::other(format!("more than {MAX_HANDLES} handles on reactor {}", self.id)));
        }
        *self.handles += 1;
        Ok(Handle::new(*self.handles - 1))
    }

    /// Timers of this reactor fire to the nanosecond from now on, not in the poll's whole
    /// milliseconds: a timerfd (one more handle) wakes the poll at the next deadline. For a
    /// role that measures how late it acts. Asking again changes nothing.
    pub fn precise_timers(&mut self) -> io::Result<()> {
        if self.clock.is_none() {
            let h = self.handle()?;
            *self.clock = Some(clock::Clock::new(self.registry, h)?);
        }
        Ok(())
    }

    /// Stores `val` in the table and registers its sockets; see [`Table::adopt`].
    pub fn adopt(&mut self, val: E) -> Result<Key, (E, Refused)> {
        self.table.adopt(self.registry, val)
    }

    /// Closes entry `key` and cancels its timers; see [`Table::close`].
    pub fn close(&mut self, key: Key) -> Option<&mut E> {
        self.table.close(self.timers, key)
    }

    /// Sets (owner, kind) to fire at `at`; an entry that is no longer live arms nothing.
    pub fn arm(&mut self, owner: impl Into<Owner>, kind: Kind, at: Instant) {
        let owner = owner.into();
        if let Owner::Entry(k) = owner {
            if self.table.get(k).is_none() {
                return;
            }
        }
        self.timers.arm(owner, kind, at);
    }
}

/// A role's per-reactor state. One value per reactor thread, moved there at spawn.
pub trait Handler: Send + 'static {
    /// Commands the coordinator sends this reactor.
    type Cmd: Send + 'static;
    /// What the reactor's table holds (an enum when the role has several kinds of entries).
    type Entry: Entry;

    /// Runs on the reactor thread before the first poll: size the table, allocate handles,
    /// register listeners, arm timers.
    fn on_start(&mut self, cx: &mut Cx<Self::Entry>) -> io::Result<()>;
    /// Readiness for socket `sock` of entry `key`, or `Ready::EMPTY` (socket 0) when the entry
    /// was deferred. Never called for a closed entry.
    fn on_ready(&mut self, _cx: &mut Cx<Self::Entry>, _key: Key, _sock: usize, _ready: Ready) {}
    /// Readiness for a listener registered under handle `h`, or `Ready::EMPTY` when deferred.
    fn on_handle(&mut self, _cx: &mut Cx<Self::Entry>, _h: Handle, _ready: Ready) {}
    /// Timer `kind` of entry `key` expired.
    fn on_timer(&mut self, _cx: &mut Cx<Self::Entry>, _key: Key, _kind: Kind) {}
    /// Timer `kind` of handle `h` expired.
    fn on_handle_timer(&mut self, _cx: &mut Cx<Self::Entry>, _h: Handle, _kind: Kind) {}
    fn on_command(&mut self, cx: &mut Cx<Self::Entry>, cmd: Self::Cmd);
    /// Called every tick (stats flush, sweeps).
    fn on_tick(&mut self, cx: &mut Cx<Self::Entry>);
    /// The reactor's waker fired (commands, or a connection slot freed on another reactor:
    /// see [`accept::Admission`]). Acceptors stopped at a limit look again.
    fn on_wake(&mut self, _cx: &mut Cx<Self::Entry>) {}
    /// When true after a loop turn, the reactor calls `on_exit` and the thread ends.
    fn finished(&self) -> bool;
    /// Last call on the reactor thread: flush final stats.
    fn on_exit(&mut self, cx: &mut Cx<Self::Entry>);
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
fn drain_commands<H: Handler>(rx: &Receiver<H::Cmd>, handler: &mut H, cx: &mut Cx<H::Entry>) {
    for cmd in rx.try_iter().take(COMMAND_BATCH) {
        handler.on_command(cx, cmd);
    }
    if !rx.is_empty() {
        cx.pending.push(WAKER);
    }
}

/// Routes one token: an entry of the table, or a handle. Stale tokens (an entry closed, its
/// slot perhaps reused) and unknown ones end here.
fn dispatch<H: Handler>(handler: &mut H, cx: &mut Cx<H::Entry>, token: Token, ready: Ready) {
    if let Some((key, sock)) = table::decode(token) {
        if cx.table.get(key).is_some() {
            handler.on_ready(cx, key, sock, ready);
        }
    } else if let Some(h) = Handle::of(token, *cx.handles) {
        match cx.clock.as_mut() {
            Some(c) if c.handle() == h => c.fired(),
            _ => handler.on_handle(cx, h, ready),
        }
    }
}

/// Fires at most `TIMER_BATCH` expired timers.
fn fire_timers<H: Handler>(handler: &mut H, cx: &mut Cx<H::Entry>, now: Instant) {
    for _ in 0..TIMER_BATCH {
        match cx.timers.pop_expired(now) {
            Some((timer::Fired::Slot(slot, gen), kind)) => {
                let key = Key::new(slot, gen);
                if cx.table.get(key).is_some() {
                    handler.on_timer(cx, key, kind);
                }
            }
            Some((timer::Fired::Handle(h), kind)) => handler.on_handle_timer(cx, h, kind),
            None => break,
        }
    }
}

fn run<H: Handler>(id: usize, mut poll: Poll, rx: Receiver<H::Cmd>, mut handler: H, tick: Duration) {
    let mut events = Events::with_capacity(EVENTS_CAPACITY);
    let mut table: Table<H::Entry> = Table::new(0);
    let mut timers = Timers::new();
    let mut handles = 0;
    let mut clock = None;
    let mut pending: Vec<Token> = Vec::new();
    let mut batch: Vec<Token> = Vec::new();
    let mut now = Instant::now();
    let mut next_tick = now + tick;
    macro_rules! cx {
        () => {
            Cx {
                id,
                registry: poll.registry(),
                table: &mut table,
                timers: &mut timers,
                now,
                pending: &mut pending,
                handles: &mut handles,
                clock: &mut clock,
            }
        };
    }
    {
        let mut cx = cx!();
        if let Err(e) = handler.on_start(&mut cx) {
            log::error!("reactor {id} failed to start: {e}");
            handler.on_exit(&mut cx);
            return;
        }
    }
    loop {
        // The turn's handlers took time: decide the sleep from the clock as it is now. A
        // deadline already past is served by a poll that does not sleep, not by the clock.
        now = Instant::now();
        let timeout = if pending.is_empty() {
            timers.timeout(now, next_tick.saturating_duration_since(now))
        } else {
            Duration::ZERO
        };
        if let Some(c) = clock.as_mut().filter(|_| !timeout.is_zero()) {
            c.sync(&timers, now);
        }
        if let Err(e) = poll.poll(&mut events, Some(timeout)) {
            if e.kind() != io::ErrorKind::Interrupted {
                log::error!("reactor {id}: poll failed: {e}");
                break;
            }
        }
        now = Instant::now();
        let mut cx = cx!();
        for ev in events.iter() {
            let token = ev.token();
            if token == WAKER {
                drain_commands(&rx, &mut handler, &mut cx);
                handler.on_wake(&mut cx);
            } else {
                dispatch(&mut handler, &mut cx, token, Ready::from_event(ev));
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
                dispatch(&mut handler, &mut cx, token, Ready::EMPTY);
            }
        }
        // Deadlines that came due while the events were served fire in this turn too.
        now = Instant::now();
        cx.now = now;
        fire_timers(&mut handler, &mut cx, now);
        if now >= next_tick {
            handler.on_tick(&mut cx);
            next_tick = now + tick;
        }
        if handler.finished() {
            handler.on_exit(&mut cx);
            cx.table.end_batch();
            return;
        }
        cx.table.end_batch();
    }
    let mut cx = cx!();
    handler.on_exit(&mut cx);
    cx.table.end_batch();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A handler that counts ticks and timer firings and finishes on command.
    struct Probe {
        clock: Option<Handle>,
        /// Asks for [`Cx::precise_timers`] first.
        precise: bool,
        done: bool,
        fired: u32,
        out: Sender<&'static str>,
    }

    impl Handler for Probe {
        type Cmd = &'static str;
        type Entry = ();
        fn on_start(&mut self, cx: &mut Cx) -> io::Result<()> {
            if self.precise {
                cx.precise_timers()?;
                cx.precise_timers()?;
            }
            let h = cx.handle()?;
            self.clock = Some(h);
            cx.arm(h, Kind::new(1), cx.now + Duration::from_millis(5));
            Ok(())
        }
        fn on_handle(&mut self, _: &mut Cx, _: Handle, _: Ready) {
            // The engine's clock is its own: its wake-ups never reach the role.
            let _ = self.out.send("handle");
        }
        fn on_handle_timer(&mut self, _: &mut Cx, h: Handle, kind: Kind) {
            assert_eq!((Some(h), kind), (self.clock, Kind::new(1)));
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
        for precise in [false, true] {
            let (tx, rx) = crossbeam_channel::bounded(8);
            let probe = Probe { clock: None, precise, done: false, fired: 0, out: tx };
            let pool = Pool::spawn("t", vec![probe], Duration::from_secs(3600)).unwrap();
            assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok("timer"), "precise {precise}");
            // The tick is an hour away: only the waker can end this poll.
            assert_eq!(pool.broadcast(|_| "stop"), 0);
            assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok("exit"), "precise {precise}");
            pool.join();
        }
    }

    /// An entry owning one socket.
    struct Sock(mio::net::TcpStream);

    impl Entry for Sock {
        fn socket(&mut self, i: usize) -> Option<&mut dyn mio::event::Source> {
            (i == 0).then_some(&mut self.0 as &mut dyn mio::event::Source)
        }
    }

    /// Adopts two readable sockets; the first event it sees closes the other entry.
    struct Closer {
        socks: Vec<mio::net::TcpStream>,
        keys: Vec<Key>,
        seen: Vec<Key>,
        done: bool,
        out: Sender<(Vec<Key>, Vec<Key>)>,
    }

    impl Handler for Closer {
        type Cmd = ();
        type Entry = Sock;
        fn on_start(&mut self, cx: &mut Cx<Sock>) -> io::Result<()> {
            cx.table.set_capacity(2, 2);
            for s in self.socks.drain(..) {
                let key = cx.adopt(Sock(s)).map_err(|_| io::Error::other("adopt"))?;
                self.keys.push(key);
            }
            Ok(())
        }
        fn on_ready(&mut self, cx: &mut Cx<Sock>, key: Key, _: usize, _: Ready) {
            self.seen.push(key);
            for k in self.keys.clone() {
                if k != key {
                    assert!(cx.close(k).is_some());
                }
            }
            self.done = true;
        }
        fn on_command(&mut self, _: &mut Cx<Sock>, _: ()) {}
        fn on_tick(&mut self, _: &mut Cx<Sock>) {}
        fn finished(&self) -> bool {
            self.done
        }
        fn on_exit(&mut self, _: &mut Cx<Sock>) {
            let _ = self.out.send((self.keys.clone(), self.seen.clone()));
        }
    }

    #[test]
    fn an_event_later_in_the_batch_for_a_closed_entry_never_reaches_the_role() {
        use std::io::Write;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut socks = Vec::new();
        let mut peers = Vec::new();
        for _ in 0..2 {
            let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
            let (mut a, _) = l.accept().unwrap();
            // Readable before the reactor's first poll: both edges come in one batch.
            a.write_all(b"x").unwrap();
            c.set_nonblocking(true).unwrap();
            socks.push(mio::net::TcpStream::from_std(c));
            peers.push(a);
        }
        let (tx, rx) = crossbeam_channel::bounded(1);
        let h = Closer { socks, keys: Vec::new(), seen: Vec::new(), done: false, out: tx };
        let pool = Pool::spawn("t", vec![h], Duration::from_secs(3600)).unwrap();
        let (keys, seen) = rx.recv_timeout(Duration::from_secs(5)).expect("the reactor ends after one event");
        assert_eq!(keys.len(), 2);
        assert_eq!(seen.len(), 1, "the closed entry's event was dropped: {seen:?}");
        pool.join();
    }

    /// An entry without sockets (a timer owner).
    struct Bare;

    impl Entry for Bare {
        fn socket(&mut self, _: usize) -> Option<&mut dyn mio::event::Source> {
            None
        }
    }

    /// Arms more expired timers than one turn fires; notes the count at each turn's end.
    struct Batch {
        fired: usize,
        turns: std::cell::RefCell<Vec<usize>>,
        out: Sender<Vec<usize>>,
    }

    const BATCH_TIMERS: usize = TIMER_BATCH + 10;

    impl Handler for Batch {
        type Cmd = ();
        type Entry = Bare;
        fn on_start(&mut self, cx: &mut Cx<Bare>) -> io::Result<()> {
            cx.table.set_capacity(BATCH_TIMERS, BATCH_TIMERS);
            for _ in 0..BATCH_TIMERS {
                let key = cx.adopt(Bare).map_err(|_| io::Error::other("adopt"))?;
                cx.arm(key, Kind::new(2), cx.now);
            }
            Ok(())
        }
        fn on_timer(&mut self, cx: &mut Cx<Bare>, key: Key, kind: Kind) {
            assert_eq!(kind, Kind::new(2));
            self.fired += 1;
            cx.close(key);
        }
        fn on_command(&mut self, _: &mut Cx<Bare>, _: ()) {}
        fn on_tick(&mut self, _: &mut Cx<Bare>) {}
        fn finished(&self) -> bool {
            self.turns.borrow_mut().push(self.fired);
            self.fired == BATCH_TIMERS
        }
        fn on_exit(&mut self, _: &mut Cx<Bare>) {
            let _ = self.out.send(self.turns.borrow().clone());
        }
    }

    #[test]
    fn one_turn_fires_at_most_a_batch_of_timers_and_the_next_the_rest() {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let h = Batch { fired: 0, turns: Default::default(), out: tx };
        let pool = Pool::spawn("t", vec![h], Duration::from_secs(3600)).unwrap();
        let turns = rx.recv_timeout(Duration::from_secs(5)).expect("every timer fires");
        let firing: Vec<usize> = turns.into_iter().filter(|n| *n > 0).collect();
        assert_eq!(firing, vec![TIMER_BATCH, BATCH_TIMERS]);
        pool.join();
    }
}
