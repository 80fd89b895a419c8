//! goon's message traffic: what an established connection sends (`--first-message` once,
//! `--message` at `--message-rate R` per connection), how a response is recognised
//! (`--expect-bytes N` or `--marker TEXT`), and the latency of each response measured from the
//! message's **intended** send time, so a stalled server shows as latency, not as a lower rate
//! (no coordinated omission).
//!
//! Schedule: slot 0 of a connection is due at its establishment, and slot `k ≥ 1` at
//! `g + (k + s)/R`, where `g` is the last instant at or before the establishment on the
//! connection's *phase* and `s` is 1 when the establishment fell past `g` (0 when on it), so
//! slot 1 is at least a period after slot 0 ([`Flow::skip`]). The run's N connections take
//! N evenly spaced phases of one period `1/R`, handed out in an order that spreads any first
//! few ([`Phases`], [`Order`]), so N connections × R/s is a steady N·R messages a second, not
//! N at once every `1/R`. The phase comes from the
//! connection's place in the order, not from the moment it was established: a turn the loop
//! was late for during the ramp (a dial batch, a descheduled thread) does not bunch
//! connections' messages together for the rest of the run. Slots are due at their times
//! whatever the loop was doing then. The first message, when given, is sent before slot 0 and
//! is due at the establishment too. Messages go out in order; a message that could not go when
//! due (a full socket buffer, a busy loop, or the outstanding bound below)
//! goes as soon as it can, and its response's latency still counts from its slot. Responses
//! arrive in order on a byte stream, so the j-th complete response answers the j-th message:
//! a flow needs only counters, no queue of send times.
//!
//! Bound: with a response mode, at most [`OUTSTANDING_MAX`] messages per connection are sent and
//! unanswered. A slot that comes due while the bound is reached is counted as *behind* and waits
//! (the schedule is kept: it is sent, late, as soon as a response frees room, and its latency
//! counts from its slot). Without a response mode the kernel's send buffer is the only bound:
//! a peer that stops reading stops the writes (WouldBlock), and the schedule catches up once it
//! reads again. Slots due before the traffic phase ends but never sent are *unsent*; messages
//! sent and never answered by the end are *unanswered*.
//!
//! Timers: one keyed timer per connection ([`TIMER_MSG`]), armed at the connection's next slot.
//! The engine's timer heap is O(log n) per arm and fire; at 1,000 connections × 100/s that is
//! 10^5 heap operations a second, well under a millisecond of CPU each second. The poll's own
//! timeout moves in whole milliseconds, so the reactor asks the engine for its precise clock (a
//! timerfd) that wakes it at the heap's next deadline to the nanosecond.
//!
//! Every send goes through [`Wire`], so a TLS session or a WebSocket (messages as frames)
//! carries the same traffic as the plain TCP stream does. Over a byte stream [`Traffic::step`]
//! also receives through it; over a WebSocket the client's frame decoder hands the payload of
//! the server's data frames to [`Traffic::on_bytes`] (the WebSocket's `recv` has nothing).

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cli::usage;
use crate::engine::{Cx, Entry, Kind};
use crate::error::Error;
use crate::stats::Latency;
use crate::units::{parse_duration_in, parse_int, MAX_DURATION};

/// Largest `--message`/`--first-message` (text or file), 1 MiB.
pub const MESSAGE_MAX: u64 = 1 << 20;
/// Longest `--marker`, in bytes after escapes.
pub const MARKER_MAX: usize = 1024;
/// Largest `--expect-bytes`, 1 GiB.
pub const EXPECT_MAX: u64 = 1 << 30;
/// `--message-rate` per connection: 0.001..=100000 messages/s.
pub const MSG_RATE_MIN: f64 = 0.001;
pub const MSG_RATE_MAX: f64 = 100_000.0;
/// Messages sent and not yet answered per connection, at most (with a response mode).
pub const OUTSTANDING_MAX: u64 = 128;
/// Messages written to one connection per wake-up at most; more due means another turn.
pub const SEND_BATCH: u64 = 64;
/// Bytes read from one connection per wake-up.
pub const READ_BUDGET: usize = 64 * 1024;
/// The per-connection message timer (kind 0 is the dial deadline).
pub const TIMER_MSG: Kind = Kind::new(3);

pub use crate::result::traffic::{count_lines, traffic_json, PlanSummary, TrafficCounts};

mod args;
pub(crate) use args::parse_message;
pub use args::{escape, Payload, TrafficArgs};
#[cfg(test)]
use args::{parse_marker, parse_msg_rate, unescape};

/// How bytes go out and come in on an established connection: the plain TCP stream here; a
/// TLS session or a WebSocket (one message per frame) implements the same two calls.
pub trait Wire {
    /// Sends (part of) `msg`; returns how many bytes of it were taken (a framed wire takes all
    /// or fails with WouldBlock).
    fn send(&mut self, msg: &[u8]) -> io::Result<usize>;
    /// Receives payload bytes into `buf`; 0 means the peer closed.
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Whether a `recv` that filled less than its buffer emptied the socket, so that under
    /// edge-triggered polling the next bytes bring a new edge and reading again to WouldBlock
    /// is a wasted system call. True for plain TCP; not for a layer that buffers (TLS).
    fn short_read_drains(&self) -> bool {
        false
    }
}

impl Wire for mio::net::TcpStream {
    fn send(&mut self, msg: &[u8]) -> io::Result<usize> {
        self.write(msg)
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read(buf)
    }

    fn short_read_drains(&self) -> bool {
        true
    }
}

/// Plain TCP, or plaintext inside TLS (`--tls`): a byte stream either way.
impl Wire for crate::tls::Stream {
    fn send(&mut self, msg: &[u8]) -> io::Result<usize> {
        self.write(msg)
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read(buf)
    }

    fn short_read_drains(&self) -> bool {
        !self.is_tls()
    }
}

/// A marker with its KMP failure table: the search keeps one integer per connection (how much
/// of the marker the last bytes matched), never the response's bytes.
#[derive(Clone, Debug)]
pub struct Marker {
    bytes: Box<[u8]>,
    fail: Box<[usize]>,
}

impl Marker {
    pub fn new(bytes: &[u8]) -> Marker {
        let mut fail = vec![0usize; bytes.len()];
        let mut k = 0;
        for i in 1..bytes.len() {
            while k > 0 && bytes[i] != bytes[k] {
                k = fail[k - 1];
            }
            if bytes[i] == bytes[k] {
                k += 1;
            }
            fail[i] = k;
        }
        Marker { bytes: bytes.into(), fail: fail.into() }
    }

    /// Advances `matched` by one byte; true when the marker is complete (then `matched` is 0:
    /// markers do not overlap).
    fn step(&self, matched: &mut usize, c: u8) -> bool {
        let mut k = *matched;
        while k > 0 && self.bytes[k] != c {
            k = self.fail[k - 1];
        }
        if self.bytes[k] == c {
            k += 1;
        }
        if k == self.bytes.len() {
            *matched = 0;
            return true;
        }
        *matched = k;
        false
    }
}

/// When a response is complete.
#[derive(Clone, Debug)]
pub enum Until {
    /// No response mode: bytes down are counted, no latency.
    Nothing,
    /// After this many bytes.
    Bytes(u64),
    /// At the end of this marker.
    Marker(Marker),
}

/// The traffic flags, resolved.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TrafficPlan {
    pub first_message: Option<Payload>,
    pub message: Option<Payload>,
    /// Messages per second per connection (with `message`).
    pub message_rate: Option<f64>,
    /// The traffic phase, from the end of the dial phase; `--hold` follows it.
    #[serde(serialize_with = "crate::config::duration")]
    pub duration: Duration,
    pub expect_bytes: Option<u64>,
    pub marker: Option<Payload>,
    #[serde(skip)]
    pub until: Until,
}

impl TrafficPlan {
    pub fn measures(&self) -> bool {
        !matches!(self.until, Until::Nothing)
    }
}

impl TrafficPlan {
    /// The plan as `--json` records it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "first_message_bytes": self.first_message.as_ref().map(|m| m.0.len()),
            "message_bytes": self.message.as_ref().map(|m| m.0.len()),
            "message_rate_per_s": self.message_rate,
            "duration_s": self.duration.as_secs_f64(),
            "expect_bytes": self.expect_bytes,
            "marker": self.marker.as_ref().map(|m| escape(&m.0)),
            "outstanding_max": OUTSTANDING_MAX,
        })
    }

    /// One line saying what each connection sends and how responses end.
    pub fn describe(&self, connections: u64) -> String {
        let message = self.message.as_ref().zip(self.message_rate).map(|(m, r)| (m.0.len() as u64, r));
        PlanSummary {
            first_bytes: self.first_message.as_ref().map(|f| f.0.len() as u64),
            message,
            duration: self.duration,
            expect_bytes: self.expect_bytes,
            marker: self.marker.as_ref().map(|m| escape(&m.0)),
        }
        .line(connections)
    }
}

/// The final block's traffic lines (after tcpgoon's).
pub fn report_lines(plan: &TrafficPlan, c: &TrafficCounts, response: &Latency, connections: u64) -> String {
    let mut t = plan.describe(connections);
    t.push('\n');
    t.push_str(&count_lines(c, response, plan.message_rate, plan.measures(), connections));
    t
}

/// `--json`'s `traffic` object: the plan, the counts, the rates and the response times.
pub fn report_json(plan: &TrafficPlan, c: &TrafficCounts, response: &Latency, connections: u64) -> serde_json::Value {
    traffic_json(plan.to_json(), plan.message_rate, c, response, connections)
}

/// Where a reactor's connections put their periodic work (message slots, WebSocket pings)
/// within a period: a connection takes a place `v` in `0..share` from an [`Order`], and its
/// phase is `((v·reactors + reactor) mod N) / N` of the period after `base`, an instant common to
/// the run. With the run's N connections dealt out evenly ([`super::shares`]) the N phases
/// are N equal steps of the period, reactors interleaved.
#[derive(Clone, Copy, Debug)]
pub struct Phases {
    pub base: Instant,
    pub reactor: u64,
    pub reactors: u64,
    /// This reactor's share of the connections.
    pub share: u64,
    /// The run's (or shard's) connections, N.
    pub connections: u64,
}

/// The order in which a reactor hands out the places `0..share`: bit-reversed over the next
/// power of two, skipping values past the share (0, 4, 2, 1, 3 for a share of 5), so the
/// first k connections up (a ramp still dialing, a run where some fail) are already spread
/// over the whole period, within 2× of even, and all of them are exactly even. Past the share
/// it starts again.
#[derive(Clone, Debug)]
pub struct Order {
    share: u64,
    bits: u32,
    cursor: u64,
}

impl Order {
    pub fn new(share: u64) -> Order {
        let share = share.max(1);
        Order { share, bits: u64::BITS - (share - 1).leading_zeros(), cursor: 0 }
    }

    /// The next place.
    pub fn next(&mut self) -> u64 {
        if self.bits == 0 {
            return 0;
        }
        let mask = u64::MAX >> (u64::BITS - self.bits);
        loop {
            let v = self.cursor.reverse_bits() >> (u64::BITS - self.bits);
            self.cursor = (self.cursor + 1) & mask;
            // At most half the values of a power of two lie past the share: two tries on average.
            if v < self.share {
                return v;
            }
        }
    }
}

impl Phases {
    /// How far past the last instant of place `v`'s phase `now` is, in ns: in `0..period_ns`.
    pub fn lead(&self, v: u64, now: Instant, period_ns: f64) -> u64 {
        // Place v of reactor r is the run's connection v·T + r: with the shares dealt out as
        // `shares` does, these are exactly 0..N, N equal steps even when N is not a multiple of T.
        let i = v.wrapping_mul(self.reactors.max(1)).wrapping_add(self.reactor);
        let n = self.connections.max(self.share).max(1);
        let phase = period_ns * (i % n) as f64 / n as f64;
        let since = now.saturating_duration_since(self.base).as_nanos() as f64;
        let lead = (since - phase).rem_euclid(period_ns);
        // `rem_euclid` can round up to the period itself; an instant of the phase is then `now`.
        if lead >= period_ns {
            0
        } else {
            lead as u64
        }
    }

    /// The last instant of place `v`'s phase at or before `now` (`now` itself when that
    /// would lie before the clock's origin).
    pub fn grid(&self, v: u64, now: Instant, period: Duration) -> Instant {
        self.grid_ns(v, now, period.as_nanos() as f64)
    }

    /// [`Phases::grid`] for a period in (fractional) nanoseconds.
    fn grid_ns(&self, v: u64, now: Instant, period_ns: f64) -> Instant {
        if period_ns < 1.0 {
            return now;
        }
        now.checked_sub(Duration::from_nanos(self.lead(v, now, period_ns))).unwrap_or(now)
    }
}

/// One connection's place in its schedule.
#[derive(Debug)]
pub struct Flow {
    /// The grid point of the connection's phase at or before its establishment: slot k ≥ 1 is
    /// due `(k + skip)/R` after it, `skip` 1 when the establishment fell past it (see
    /// [`Flow::skip`]).
    start: Instant,
    /// From `start` to the establishment, where slot 0 (and the first message) is due, in ns
    /// (less than one period).
    lead: u64,
    /// Messages written whole (index of the one being written; with a first message, index 0
    /// is it and index i ≥ 1 is slot i − 1).
    next: u64,
    /// Bytes of message `next` written so far.
    offset: usize,
    /// Messages that came due so far (counted in `scheduled`).
    due: u64,
    /// Messages up to this index were counted as behind.
    behind_mark: u64,
    answered: u64,
    /// Bytes of the current response (Bytes), or marker bytes matched (Marker).
    got: u64,
}

impl Flow {
    /// Grid points skipped before slot 1: one when the establishment fell past `start`, so
    /// slot 1 is the first point at least a whole period after slot 0 (on the very next point
    /// it could follow slot 0 by a nanosecond, and a server that reads one request at a time
    /// would queue it behind slot 0's).
    fn skip(&self) -> u64 {
        u64::from(self.lead > 0)
    }
}

/// What the reactor does after [`Traffic::step`].
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Still open: arm the message timer at `arm`; `more`: call again next turn (a budget ran
    /// out with work left).
    Open { arm: Option<Instant>, more: bool },
    /// The peer closed or reset it.
    Closed,
}

/// How [`Traffic::step`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recv {
    /// Not at all: a timer fired.
    No,
    /// A readable edge without a hang-up or urgent data: a short read ends it where the wire
    /// allows.
    Edge,
    /// Until WouldBlock: a hang-up (the read must reach the 0 or the error), urgent data (a
    /// read stops at its mark), or work deferred from an earlier turn (no new edge will come
    /// for it).
    Drain,
}

/// A reactor's traffic: the plan, the end of the traffic phase once known, its counts and the
/// latency recorder (swapped out at each report).
pub struct Traffic {
    plan: Arc<TrafficPlan>,
    first: u64,
    period_ns: Option<f64>,
    until: Option<Instant>,
    /// Without it (unit tests, single flows) every flow's phase is its establishment.
    phases: Option<(Phases, Order)>,
    pub counts: TrafficCounts,
    pub latency: Latency,
}

impl Traffic {
    pub fn new(plan: Arc<TrafficPlan>) -> Traffic {
        let first = u64::from(plan.first_message.is_some());
        let period_ns = plan.message.as_ref().and(plan.message_rate).map(|r| 1e9 / r);
        Traffic {
            plan,
            first,
            period_ns,
            until: None,
            phases: None,
            counts: TrafficCounts::default(),
            latency: Latency::new(),
        }
    }

    /// Spreads this reactor's flows over the period as `phases` says.
    pub fn with_phases(mut self, phases: Phases) -> Traffic {
        self.phases = Some((phases, Order::new(phases.share)));
        self
    }

    /// Asks the engine for timers to the nanosecond (see [`crate::engine::Cx::precise_timers`]):
    /// a message sent up to a millisecond after its slot would be measured as that much latency.
    /// Without a timerfd (an old kernel) timers keep the poll's millisecond steps.
    pub fn start<E: Entry>(&mut self, cx: &mut Cx<E>) {
        if let Err(e) = cx.precise_timers() {
            log::debug!("r{} goon traffic: no timerfd ({e}); message timers in millisecond steps", cx.id);
        }
    }

    /// The traffic phase ends at `at`: slots due at or after it are not sent.
    pub fn end_at(&mut self, at: Instant) {
        self.until = Some(at);
    }

    /// A connection was established at `now`: its schedule starts.
    pub fn flow(&mut self, now: Instant) -> Flow {
        let start = match (self.period_ns, self.phases.as_mut()) {
            (Some(p), Some((ph, order))) => ph.grid_ns(order.next(), now, p),
            _ => now,
        };
        self.counts.flows += 1;
        let lead = now.duration_since(start).as_nanos() as u64;
        Flow { start, lead, next: 0, offset: 0, due: 0, behind_mark: 0, answered: 0, got: 0 }
    }

    /// Slot `k`'s offset from the flow's grid point, in ns (rounded, so it is the same every
    /// time).
    fn slot_ns(&self, k: u64) -> u64 {
        self.period_ns.map_or(0, |p| (k as f64 * p).round().min(u64::MAX as f64) as u64)
    }

    /// Slots with `slot_ns(k) <= t_ns` (consistent with `slot_ns`, whatever the rounding).
    fn slots_by(&self, t_ns: u64) -> u64 {
        let Some(p) = self.period_ns else { return 0 };
        let mut k = (t_ns as f64 / p).floor().min(u64::MAX as f64 / 2.0) as u64;
        while k > 0 && self.slot_ns(k) > t_ns {
            k -= 1;
        }
        while self.slot_ns(k + 1) <= t_ns {
            k += 1;
        }
        k + 1
    }

    /// Message `i`'s intended send time.
    pub fn intended(&self, flow: &Flow, i: u64) -> Instant {
        if i <= self.first {
            return flow.start + Duration::from_nanos(flow.lead);
        }
        flow.start + Duration::from_nanos(self.slot_ns(i - self.first + flow.skip()))
    }

    /// Slots of `flow` due by `t_ns` after its grid point: slot 0 (at the establishment, due
    /// from the start) and each slot k ≥ 1 at `(k + skip)` periods.
    fn slots_due(&self, flow: &Flow, t_ns: u64) -> u64 {
        match self.slots_by(t_ns) {
            0 => 0,
            s => 1 + (s - 1).saturating_sub(flow.skip()),
        }
    }

    /// Messages due at `now`: those whose intended time is at or before `now` and before the
    /// end of the traffic phase (the end is exclusive). Slot 0 stands at the grid point before
    /// the establishment in the count (both are due by the time the flow exists).
    fn due_at(&self, flow: &Flow, now: Instant) -> u64 {
        let ns = |i: Instant| i.saturating_duration_since(flow.start).as_nanos().min(u64::MAX as u128) as u64;
        let slots = match self.until {
            Some(u) if u <= flow.start + Duration::from_nanos(flow.lead) => return 0,
            Some(u) if now >= u => self.slots_due(flow, ns(u).saturating_sub(1)),
            _ => self.slots_due(flow, ns(now)),
        };
        self.first + slots
    }

    fn message_of(plan: &TrafficPlan, first: u64, i: u64) -> &[u8] {
        let p = if i < first { &plan.first_message } else { &plan.message };
        p.as_ref().map_or(&[], |m| &m.0)
    }

    /// Reads what the peer sent (bounded), matches responses, then sends what is due. `read`
    /// says how: not at all for a timer, which brings no bytes; for a readable edge without a
    /// hang-up, until a short read where the wire allows it ([`Wire::short_read_drains`]), else
    /// until WouldBlock.
    pub fn step<W: Wire>(
        &mut self,
        flow: &mut Flow,
        wire: &mut W,
        scratch: &mut [u8],
        now: Instant,
        read: Recv,
    ) -> Step {
        // The loop's time was read before this turn's events were served: a response read now
        // is timed now, never earlier than it arrived.
        let now = Instant::now().max(now);
        let mut budget = READ_BUDGET;
        let mut more = false;
        if read != Recv::No {
            let short_stops = read == Recv::Edge && wire.short_read_drains();
            loop {
                match wire.recv(scratch) {
                    Ok(0) => return Step::Closed,
                    Ok(n) if short_stops && n < scratch.len() => {
                        self.on_bytes(flow, &scratch[..n], now);
                        break;
                    }
                    Ok(n) => {
                        self.on_bytes(flow, &scratch[..n], now);
                        budget = budget.saturating_sub(n);
                        if budget == 0 {
                            more = true;
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return Step::Closed,
                }
            }
        }
        match self.pump(flow, wire, now) {
            Ok((arm, m)) => Step::Open { arm, more: more || m },
            Err(_) => Step::Closed,
        }
    }

    /// Counts `data` down and completes the responses in it.
    pub fn on_bytes(&mut self, flow: &mut Flow, data: &[u8], now: Instant) {
        self.counts.bytes_down += data.len() as u64;
        let plan = self.plan.clone();
        match &plan.until {
            Until::Nothing => {}
            Until::Bytes(n) => {
                let n = *n;
                let mut rest = data.len() as u64;
                while rest > 0 {
                    let take = (n - flow.got).min(rest);
                    flow.got += take;
                    rest -= take;
                    if flow.got == n {
                        flow.got = 0;
                        self.complete(flow, now);
                    }
                }
            }
            Until::Marker(m) => {
                let mut matched = flow.got as usize;
                for &c in data {
                    if m.step(&mut matched, c) {
                        self.complete(flow, now);
                    }
                }
                flow.got = matched as u64;
            }
        }
    }

    fn complete(&mut self, flow: &mut Flow, now: Instant) {
        if flow.answered >= flow.next {
            self.counts.unmatched += 1;
            return;
        }
        let at = self.intended(flow, flow.answered);
        self.latency.record(now.saturating_duration_since(at));
        self.counts.responses += 1;
        if flow.answered < self.first {
            self.counts.first_responses += 1;
        }
        flow.answered += 1;
    }

    /// Sends the messages that are due (at most [`SEND_BATCH`]); returns when the message timer
    /// should fire next and whether work is left for another turn.
    pub fn pump<W: Wire>(
        &mut self,
        flow: &mut Flow,
        wire: &mut W,
        now: Instant,
    ) -> io::Result<(Option<Instant>, bool)> {
        let due = self.due_at(flow, now);
        if due > flow.due {
            let new_first = self.first.saturating_sub(flow.due).min(due - flow.due);
            self.counts.scheduled += due - flow.due;
            self.counts.slots += due - flow.due - new_first;
            flow.due = due;
        }
        let measures = self.plan.measures();
        let mut batch = 0;
        let mut more = false;
        let plan = self.plan.clone();
        while flow.next < flow.due {
            if measures && flow.next - flow.answered >= OUTSTANDING_MAX {
                let from = flow.behind_mark.max(flow.next);
                if flow.due > from {
                    self.counts.behind += flow.due - from;
                    flow.behind_mark = flow.due;
                }
                break;
            }
            if batch == SEND_BATCH {
                more = true;
                break;
            }
            let msg = Self::message_of(&plan, self.first, flow.next);
            match wire.send(&msg[flow.offset..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.counts.bytes_up += n as u64;
                    flow.offset += n;
                    if flow.offset >= msg.len() {
                        flow.offset = 0;
                        if flow.next < self.first {
                            self.counts.first_sent += 1;
                        }
                        flow.next += 1;
                        self.counts.sent += 1;
                        batch += 1;
                    }
                }
                // The WRITABLE edge (or the next slot's timer) tries again.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        // The next slot not yet due; none past the end of the traffic phase.
        let arm = self.period_ns.and_then(|_| {
            let at = self.intended(flow, flow.due);
            self.until.is_none_or(|u| at < u).then_some(at)
        });
        Ok((arm, more))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(unescape("hi").unwrap(), b"hi");
        assert_eq!(unescape(r"a\nb\r\t\\\0\x41\xff").unwrap(), b"a\nb\r\t\\\0A\xff");
        assert_eq!(unescape("GET / HTTP/1.1\\r\\n\\r\\n").unwrap(), b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(unescape(r"\q").unwrap_err(), r"\q at byte 0 is not an escape (\n \r \t \\ \0 \xHH)");
        assert_eq!(unescape(r"ab\").unwrap_err(), r"a lone \ at byte 2 ends the text (write \\ for one)");
        assert_eq!(unescape(r"\x4").unwrap_err(), r"\x at byte 0 needs two hex digits (\x0a)");
        assert_eq!(unescape(r"\xzz").unwrap_err(), r"\x at byte 0 needs two hex digits (\x0a)");
        assert!(unescape("é\\é").unwrap_err().starts_with("\\é at byte 2"), "a multi-byte char is shown whole");
        // What --print-config writes reads back, a leading @ too (it would be @FILE as it is).
        for m in [&b"@x"[..], b"x@", b"\x00\n\\"] {
            assert_eq!(parse_message(&escape(m)).unwrap().0, m, "{m:?}");
            assert_eq!(unescape(&escape(m)).unwrap(), m, "{m:?}");
        }
        for b in [&b"hi\r\n\0\xff\\x"[..], b"", b"\t \x7f"] {
            assert_eq!(unescape(&escape(b)).unwrap(), b, "{b:?}");
        }
        assert_eq!(parse_message("").unwrap_err(), "the message is empty");
        assert_eq!(parse_marker("").unwrap_err(), "0 bytes; a marker is 1..=1024 bytes");
        assert!(parse_message("@/nonexistent/x").unwrap_err().starts_with("/nonexistent/x: cannot open"));
        assert!(parse_message("@/").unwrap_err().contains("a directory"));
        assert!(parse_msg_rate("0").is_err() && parse_msg_rate("nan").is_err() && parse_msg_rate("1e6").is_err());
        assert_eq!(parse_msg_rate("0.5").unwrap(), 0.5);
    }

    #[test]
    fn marker_search_is_incremental() {
        let m = Marker::new(b"abab");
        let mut k = 0;
        let hits: Vec<bool> = b"abaababab".iter().map(|c| m.step(&mut k, *c)).collect();
        // "aba" then "ababab": one complete marker ending at index 6; none overlapping it.
        assert_eq!(hits.iter().filter(|h| **h).count(), 1);
        assert!(hits[6]);
        let m = Marker::new(b"\r\n\r\n");
        let mut k = 0;
        let split = [&b"HTTP/1.1 200 OK\r\n\r"[..], b"\n", b"x\r\n\r\n"];
        let n: usize = split.iter().map(|part| part.iter().filter(|c| m.step(&mut k, **c)).count()).sum();
        assert_eq!(n, 2, "found across read boundaries");
    }

    struct Fake {
        /// Bytes the wire accepts before WouldBlock.
        room: usize,
        up: Vec<u8>,
        down: Vec<u8>,
    }

    impl Wire for Fake {
        fn send(&mut self, msg: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = msg.len().min(self.room);
            self.room -= n;
            self.up.extend_from_slice(&msg[..n]);
            Ok(n)
        }

        fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.down.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = self.down.len().min(buf.len());
            buf[..n].copy_from_slice(&self.down[..n]);
            self.down.drain(..n);
            Ok(n)
        }
    }

    fn plan(first: Option<&[u8]>, rate: Option<f64>, until: Until) -> Arc<TrafficPlan> {
        Arc::new(TrafficPlan {
            first_message: first.map(|f| Payload(f.to_vec())),
            message: rate.map(|_| Payload(b"ping".to_vec())),
            message_rate: rate,
            duration: Duration::from_secs(1),
            expect_bytes: None,
            marker: None,
            until,
        })
    }

    #[test]
    fn slots_are_at_k_over_r_from_establishment() {
        let mut t = Traffic::new(plan(None, Some(3.0), Until::Nothing));
        let t0 = Instant::now();
        let f = t.flow(t0);
        // 3/s: slots at 0, 333.333333ms, 666.666667ms, 1s, ...
        assert_eq!(t.intended(&f, 0), t0);
        assert_eq!(t.intended(&f, 1), t0 + Duration::from_nanos(333_333_333));
        assert_eq!(t.intended(&f, 3), t0 + Duration::from_secs(1));
        for k in 0..10_000u64 {
            let at = t.slot_ns(k);
            assert_eq!(t.slots_by(at), k + 1, "slot {k} is due at its own time");
            if at > 0 {
                assert_eq!(t.slots_by(at - 1), k, "and not a nanosecond before");
            }
        }
        assert_eq!(t.due_at(&f, t0 + Duration::from_millis(999)), 3);
        t.end_at(t0 + Duration::from_secs(1));
        assert_eq!(t.due_at(&f, t0 + Duration::from_secs(5)), 3, "the end is exclusive");
        let mut t = Traffic::new(plan(Some(b"hello"), Some(0.5), Until::Nothing));
        let f = t.flow(t0);
        assert_eq!(t.intended(&f, 0), t0, "the first message is due at establishment");
        assert_eq!(t.intended(&f, 1), t0, "and slot 0 with it");
        assert_eq!(t.intended(&f, 2), t0 + Duration::from_secs(2));
    }

    #[test]
    fn connections_established_together_are_spread_over_the_period() {
        // 10/s: period 100 ms; 4 connections over 2 reactors, all established at one instant.
        let base = Instant::now();
        let at = base + Duration::from_millis(1_007);
        let mut slot1 = Vec::new();
        for reactor in 0..2 {
            let phases = Phases { base, reactor, reactors: 2, share: 2, connections: 4 };
            let mut t = Traffic::new(plan(None, Some(10.0), Until::Nothing)).with_phases(phases);
            for _ in 0..2 {
                let f = t.flow(at);
                assert_eq!(t.intended(&f, 0), at, "slot 0 is due at the establishment");
                let s1 = t.intended(&f, 1);
                // Slot 1 is the first point of the phase at least a period after slot 0: a
                // connection's messages are never scheduled closer than 1/R.
                assert!(
                    s1 >= at + Duration::from_millis(100) && s1 < at + Duration::from_millis(200),
                    "slot 1 between one and two periods after slot 0"
                );
                assert_eq!(t.intended(&f, 2), s1 + Duration::from_millis(100));
                assert_eq!(t.due_at(&f, at), 1, "only slot 0 is due at once");
                assert_eq!(t.due_at(&f, s1 - Duration::from_nanos(1)), 1);
                assert_eq!(t.due_at(&f, s1), 2);
                slot1.push(s1.duration_since(base).as_millis() % 100);
            }
        }
        // Places 0 and 1 of each reactor's 2, reactor 1 half a step later: 0, 50 (reactor 0),
        // 25, 75 (reactor 1).
        assert_eq!(slot1, [0, 50, 25, 75]);
        // A phase that falls exactly on the establishment puts slot 1 a whole period later.
        let phases = Phases { base, reactor: 0, reactors: 1, share: 1, connections: 1 };
        let mut t = Traffic::new(plan(Some(b"hi"), Some(10.0), Until::Nothing)).with_phases(phases);
        let on = base + Duration::from_millis(300);
        let f = t.flow(on);
        assert_eq!((t.intended(&f, 0), t.intended(&f, 1)), (on, on), "first message and slot 0");
        assert_eq!(t.intended(&f, 2), on + Duration::from_millis(100));
        // The end of the traffic phase is exclusive, counted from the establishment for slot 0.
        // Established at 1.007 s on the phase of 0 ms: slot 1 skips 1.1 s (7 ms short of a
        // period after slot 0) and lies at 1.2 s.
        let mut t = Traffic::new(plan(None, Some(10.0), Until::Nothing)).with_phases(phases);
        let f = t.flow(at);
        assert_eq!(t.intended(&f, 1), base + Duration::from_millis(1_200));
        assert_eq!(t.intended(&f, 2), base + Duration::from_millis(1_300));
        t.end_at(at);
        assert_eq!(t.due_at(&f, at + Duration::from_secs(1)), 0, "ended at the establishment");
        t.end_at(at + Duration::from_millis(193));
        assert_eq!(t.due_at(&f, at + Duration::from_secs(1)), 1, "slot 1 at 1.2 s is past the end");
        t.end_at(at + Duration::from_millis(194));
        assert_eq!(t.due_at(&f, at + Duration::from_secs(1)), 2, "slot 1 is at 1.2 s, before the end");
        assert_eq!(t.due_at(&f, base + Duration::from_millis(1_199)), 1, "not yet at 1.199 s");
        assert_eq!(t.due_at(&f, base + Duration::from_millis(1_200)), 2);
    }

    #[test]
    fn a_phase_grid_is_the_last_instant_of_the_phase_at_or_before_now() {
        let base = Instant::now();
        // Reactor 1 of 2 with 7 places: place v at (v + 1/2)/7 of 700 ms, 100v + 50 ms.
        let phases = Phases { base, reactor: 1, reactors: 2, share: 7, connections: 14 };
        let p = Duration::from_millis(700);
        for (v, now_ms) in [(0u64, 0u64), (0, 49), (0, 50), (1, 5_000), (2, 701), (6, 123_456)] {
            let now = base + Duration::from_millis(now_ms);
            let g = phases.grid(v, now, p);
            assert!(g <= now && now - g < p, "v {v} at {now_ms} ms: within one period before now");
            let back = (now_ms as i64 - (v as i64) * 100 - 50).rem_euclid(700);
            assert_eq!(now - g, Duration::from_millis(back as u64), "v {v} at {now_ms} ms");
        }
        assert_eq!(phases.grid(3, base, Duration::ZERO), base, "no period: now itself");
    }

    #[test]
    fn the_order_spreads_every_prefix_and_hands_out_each_place_once() {
        let take = |share: u64, n: usize| {
            let mut o = Order::new(share);
            (0..n).map(|_| o.next()).collect::<Vec<_>>()
        };
        assert_eq!(take(5, 7), [0, 4, 2, 1, 3, 0, 4], "bit-reversed below 5, then again");
        assert_eq!(take(1, 3), [0, 0, 0]);
        assert_eq!(take(0, 2), [0, 0], "a share of 0 is one place");
        assert_eq!(take(8, 8), [0, 4, 2, 6, 1, 5, 3, 7]);
        for share in [2u64, 3, 7, 100, 1000, 1023, 1024, 1025] {
            let all = take(share, share as usize);
            let mut sorted = all.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..share).collect::<Vec<_>>(), "share {share}: each place once");
            // Any first k places: no gap (circular) wider than twice the even one, share / k.
            for k in [2usize, 3, 5, 10, 33, (share / 2) as usize] {
                let k = k.min(share as usize);
                let mut p = all[..k].to_vec();
                p.sort_unstable();
                let widest = p.windows(2).map(|w| w[1] - w[0]).chain([p[0] + share - p[k - 1]]).max().unwrap();
                assert!(widest * k as u64 <= 2 * share, "share {share}, first {k}: gap {widest}");
            }
        }
    }

    #[test]
    fn late_messages_count_from_their_slot() {
        let mut t = Traffic::new(plan(None, Some(10.0), Until::Bytes(4)));
        let t0 = Instant::now();
        let mut f = t.flow(t0);
        let mut w = Fake { room: usize::MAX, up: Vec::new(), down: Vec::new() };
        // The loop only gets to this connection 1 s late: 11 slots (0..=1000 ms) are due.
        let late = t0 + Duration::from_secs(1);
        let (arm, more) = t.pump(&mut f, &mut w, late).unwrap();
        assert_eq!((t.counts.scheduled, t.counts.sent, more), (11, 11, false));
        assert_eq!(arm, Some(t0 + Duration::from_millis(1100)));
        // All answered at once, at 1 s: slot k waited 1 s − k·100 ms.
        w.down = vec![b'x'; 44];
        let mut scratch = [0u8; 16];
        assert_eq!(t.step(&mut f, &mut w, &mut scratch, late, Recv::Drain), Step::Open { arm, more: false });
        assert_eq!(t.counts.responses, 11);
        assert_eq!(t.latency.max(), Duration::from_secs(1), "slot 0's latency counts from t0");
        assert_eq!(t.latency.min(), Duration::ZERO, "slot 10 was due at 1 s");
        assert_eq!(t.counts.unanswered(), 0);
    }

    /// A [`Fake`] that counts its reads and drains on a short read, as plain TCP does.
    struct Counting {
        inner: Fake,
        recvs: usize,
    }

    impl Wire for Counting {
        fn send(&mut self, msg: &[u8]) -> io::Result<usize> {
            self.inner.send(msg)
        }

        fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.recvs += 1;
            self.inner.recv(buf)
        }

        fn short_read_drains(&self) -> bool {
            true
        }
    }

    #[test]
    fn an_edge_ends_at_a_short_read_and_a_hang_up_or_deferred_turn_reads_to_would_block() {
        let mut t = Traffic::new(plan(None, Some(10.0), Until::Bytes(5)));
        let t0 = Instant::now();
        let mut f = t.flow(t0);
        let mut w = Counting { inner: Fake { room: usize::MAX, up: Vec::new(), down: Vec::new() }, recvs: 0 };
        let _ = t.pump(&mut f, &mut w, t0).unwrap();
        let mut scratch = [0u8; 16];
        w.inner.down = b"ping\n".to_vec();
        let _ = t.step(&mut f, &mut w, &mut scratch, t0, Recv::Edge);
        assert_eq!((w.recvs, t.counts.responses), (1, 1), "a short read ends the edge's reading");
        // A full buffer is no proof of an empty socket: read on.
        w.inner.down = vec![b'x'; 20];
        w.recvs = 0;
        let _ = t.step(&mut f, &mut w, &mut scratch, t0, Recv::Edge);
        assert_eq!(w.recvs, 2, "16 bytes, then the short 4");
        w.inner.down = b"a".to_vec();
        w.recvs = 0;
        let _ = t.step(&mut f, &mut w, &mut scratch, t0, Recv::Drain);
        assert_eq!(w.recvs, 2, "drain reads until WouldBlock");
        w.recvs = 0;
        let _ = t.step(&mut f, &mut w, &mut scratch, t0, Recv::No);
        assert_eq!(w.recvs, 0, "a timer reads nothing");
        // The real wires: plain TCP drains on a short read; the trait's default does not.
        assert!(!w.inner.short_read_drains());
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let s = mio::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        assert!(s.short_read_drains());
        assert!(crate::tls::Stream::plain(s).short_read_drains());
    }

    #[test]
    fn outstanding_bound_counts_behind_and_keeps_the_schedule() {
        let mut t = Traffic::new(plan(None, Some(1000.0), Until::Bytes(1)));
        let t0 = Instant::now();
        let mut f = t.flow(t0);
        let mut w = Fake { room: usize::MAX, up: Vec::new(), down: Vec::new() };
        let mut now = t0;
        // 300 ms of 1000/s with no answer: 301 due, 128 sent, 173 behind; pumps are bounded.
        for _ in 0..1000 {
            let (arm, more) = t.pump(&mut f, &mut w, now).unwrap();
            if !more {
                match arm {
                    Some(a) if a <= t0 + Duration::from_millis(300) => now = a,
                    _ => break,
                }
            }
        }
        assert_eq!(t.counts.scheduled, 301);
        assert_eq!(t.counts.sent, OUTSTANDING_MAX);
        assert_eq!(t.counts.behind, 301 - OUTSTANDING_MAX);
        assert_eq!(w.up.len() as u64, OUTSTANDING_MAX * 4);
        // The server answers everything at 300 ms: the late slots go out, in order.
        w.down = vec![b'y'; OUTSTANDING_MAX as usize];
        let mut scratch = [0u8; 1024];
        let _ = t.step(&mut f, &mut w, &mut scratch, now, Recv::Drain);
        assert_eq!(t.counts.responses, OUTSTANDING_MAX);
        assert_eq!(t.counts.sent, OUTSTANDING_MAX + SEND_BATCH, "late slots are sent as soon as there is room");
    }

    #[test]
    fn partial_writes_resume_and_the_end_stops_sending() {
        let mut t = Traffic::new(plan(Some(b"hello"), Some(100.0), Until::Nothing));
        let t0 = Instant::now();
        let mut f = t.flow(t0);
        let mut w = Fake { room: 7, up: Vec::new(), down: Vec::new() };
        let _ = t.pump(&mut f, &mut w, t0).unwrap();
        assert_eq!((t.counts.sent, t.counts.first_sent, t.counts.bytes_up), (1, 1, 7));
        w.room = 100;
        let _ = t.pump(&mut f, &mut w, t0).unwrap();
        assert_eq!(w.up, b"helloping");
        t.end_at(t0 + Duration::from_millis(50));
        let (arm, _) = t.pump(&mut f, &mut w, t0 + Duration::from_secs(1)).unwrap();
        assert_eq!(arm, None, "no timer past the end");
        assert_eq!((t.counts.scheduled, t.counts.slots, t.counts.sent), (6, 5, 6), "slots at 0..=40 ms");
        assert_eq!(t.counts.achieved(100.0), Some((100.0, 0.0)));
    }
}
