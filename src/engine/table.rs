//! The connection table: one per reactor, owned by the engine, holding every entry of the role
//! (a goon dial, a sink connection, a proxy session with its client and backend sockets, a
//! health check, ..). The role defines the entry type, an enum when it has several kinds, and
//! says through [`Entry::socket`] which sockets an entry owns.
//!
//! Tokens are the engine's: `slot | generation << 32 | socket << 56`, bit 63 clear (the waker
//! and the [`super::Handle`]s live at the top of the token space, bit 63 set). The
//! engine decodes an event's token into `(Key, socket index)` and calls the role with them; a
//! token whose generation the slot no longer carries (the entry closed, the slot perhaps reused)
//! is dropped before the role sees it. No role builds or decodes a token.
//!
//! - [`Table::adopt`] stores an entry and registers each of its sockets; when one registration
//!   fails, the ones made are undone and the entry comes back with the error: one rollback.
//! - [`Table::attach`] / [`Table::detach`] register or deregister one socket of a live entry (a
//!   proxy session's backend socket, replaced on each connect retry).
//! - [`Table::close`] detaches the entry at once (its key goes stale, its timers are cancelled)
//!   and keeps the value on a closing list until the end of the loop turn, when the engine
//!   drops it. Dropping the sockets closes their descriptors, which takes them out of the epoll
//!   set: no EPOLL_CTL_DEL per socket. Events of the same batch for the closed entry carry its
//!   old generation and are ignored.

use std::io;

use mio::event::Source;
use mio::{Interest, Registry, Token};

use super::timer::Timers;

const SLOT_BITS: u32 = 32;
const GEN_BITS: u32 = 24;
const GEN_MASK: u64 = (1 << GEN_BITS) - 1;
const SOCK_SHIFT: u32 = SLOT_BITS + GEN_BITS;
/// Sockets one entry may own (socket indices `0..MAX_SOCKETS`).
pub const MAX_SOCKETS: usize = 4;
const SOCK_MASK: u64 = MAX_SOCKETS as u64 - 1;
const NIL: u32 = u32::MAX;

/// An entry's name: its slot and the slot's generation when it was adopted. Stale once the
/// entry closes; lookups with a stale key find nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    slot: u32,
    gen: u32,
}

impl Key {
    pub(crate) fn new(slot: u32, gen: u32) -> Key {
        Key { slot, gen }
    }

    pub(crate) fn slot(self) -> u32 {
        self.slot
    }

    pub(crate) fn gen(self) -> u32 {
        self.gen
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.slot, self.gen)
    }
}

/// What the table needs of a role's entry: its sockets, by index.
pub trait Entry {
    /// Socket `i` of this entry, if it has one now. [`Table::adopt`] registers every socket
    /// `0..MAX_SOCKETS` this returns.
    fn socket(&mut self, i: usize) -> Option<&mut dyn Source>;
}

/// Roles without entries.
impl Entry for () {
    fn socket(&mut self, _: usize) -> Option<&mut dyn Source> {
        None
    }
}

/// Why [`Table::adopt`] gave the entry back.
#[derive(Debug)]
pub enum Refused {
    /// The table holds its capacity.
    Full,
    /// Registering a socket failed (every registration made was undone).
    Register(io::Error),
}

enum Slot<T> {
    Occupied { gen: u32, val: T },
    Vacant { gen: u32, next_free: u32 },
}

/// Fixed-capacity, generation-tagged storage of a reactor's entries.
pub struct Table<T> {
    slots: Vec<Slot<T>>,
    free_head: u32,
    len: usize,
    capacity: usize,
    /// Closed this turn; dropped by [`Table::end_batch`].
    closing: Vec<T>,
}

// PRIORITY: urgent data must show in the event (see `Ready::URGENT`).
const INTEREST: Interest = Interest::READABLE.add(Interest::WRITABLE).add(Interest::PRIORITY);

impl<T: Entry> Table<T> {
    pub fn new(capacity: usize) -> Table<T> {
        Table { slots: Vec::new(), free_head: NIL, len: 0, capacity: capacity.min(NIL as usize), closing: Vec::new() }
    }

    /// Sets the hard bound (roles call this in `on_start`, once they know their budget) and
    /// allocates `reserve` slots up front.
    pub fn set_capacity(&mut self, capacity: usize, reserve: usize) {
        self.capacity = capacity.min(NIL as usize);
        self.slots.reserve(reserve.min(self.capacity).saturating_sub(self.slots.len()));
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn is_full(&self) -> bool {
        self.len >= self.capacity
    }

    /// Stores `val` and registers its sockets (READABLE | WRITABLE, once; see `readiness`). On
    /// failure nothing stays registered or stored and `val` comes back.
    pub fn adopt(&mut self, registry: &Registry, mut val: T) -> Result<Key, (T, Refused)> {
        if self.len >= self.capacity {
            return Err((val, Refused::Full));
        }
        let (slot, gen) = match self.free_head {
            NIL => (self.slots.len() as u32, 0),
            slot => match self.slots[slot as usize] {
                Slot::Vacant { gen, .. } => (slot, gen),
                Slot::Occupied { .. } => unreachable!("free list points at an occupied slot"),
            },
        };
        let key = Key { slot, gen };
        for i in 0..MAX_SOCKETS {
            let Some(s) = val.socket(i) else { continue };
            if let Err(e) = registry.register(s, token(key, i), INTEREST) {
                for j in 0..i {
                    if let Some(s) = val.socket(j) {
                        let _ = registry.deregister(s);
                    }
                }
                return Err((val, Refused::Register(e)));
            }
        }
        if slot as usize == self.slots.len() {
            self.slots.push(Slot::Occupied { gen, val });
        } else {
            if let Slot::Vacant { next_free, .. } = self.slots[slot as usize] {
                self.free_head = next_free;
            }
            self.slots[slot as usize] = Slot::Occupied { gen, val };
        }
        self.len += 1;
        Ok(key)
    }

    /// Registers socket `i` of live entry `key` (a socket put into the entry after adopt).
    pub fn attach(&mut self, registry: &Registry, key: Key, i: usize) -> io::Result<()> {
        let s = self.get_mut(key).and_then(|v| v.socket(i)).ok_or_else(|| io::Error::other("no such socket"))?;
        registry.register(s, token(key, i), INTEREST)
    }

    /// Deregisters socket `i` of live entry `key` (before the entry drops or replaces it).
    pub fn detach(&mut self, registry: &Registry, key: Key, i: usize) {
        if let Some(s) = self.get_mut(key).and_then(|v| v.socket(i)) {
            let _ = registry.deregister(s);
        }
    }

    pub fn get(&self, key: Key) -> Option<&T> {
        match self.slots.get(key.slot as usize)? {
            Slot::Occupied { gen, val } if *gen == key.gen => Some(val),
            _ => None,
        }
    }

    pub fn get_mut(&mut self, key: Key) -> Option<&mut T> {
        match self.slots.get_mut(key.slot as usize)? {
            Slot::Occupied { gen, val } if *gen == key.gen => Some(val),
            _ => None,
        }
    }

    /// Closes entry `key`: its key goes stale now, its timers are cancelled, and the value
    /// stays on the closing list (returned here for the role's last look) until the end of
    /// the loop turn. A stale key closes nothing.
    pub fn close(&mut self, timers: &mut Timers, key: Key) -> Option<&mut T> {
        match self.slots.get(key.slot as usize) {
            Some(Slot::Occupied { gen, .. }) if *gen == key.gen => {}
            _ => return None,
        }
        let next_gen = (key.gen + 1) & GEN_MASK as u32;
        let vacant = Slot::Vacant { gen: next_gen, next_free: self.free_head };
        let Slot::Occupied { val, .. } = std::mem::replace(&mut self.slots[key.slot as usize], vacant) else {
            return None;
        };
        self.free_head = key.slot;
        self.len -= 1;
        timers.cancel_entry(key);
        self.closing.push(val);
        self.closing.last_mut()
    }

    /// Keys of every live entry (shutdown sweeps).
    pub fn keys(&self) -> Vec<Key> {
        self.iter().map(|(k, _)| k).collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = (Key, &T)> {
        self.slots.iter().enumerate().filter_map(|(slot, s)| match s {
            Slot::Occupied { gen, val } => Some((Key { slot: slot as u32, gen: *gen }, val)),
            Slot::Vacant { .. } => None,
        })
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (Key, &mut T)> {
        self.slots.iter_mut().enumerate().filter_map(|(slot, s)| match s {
            Slot::Occupied { gen, val } => Some((Key { slot: slot as u32, gen: *gen }, val)),
            Slot::Vacant { .. } => None,
        })
    }

    /// The end of a loop turn: drops the entries closed during it.
    pub(crate) fn end_batch(&mut self) {
        self.closing.clear();
    }

    #[cfg(test)]
    fn closing(&self) -> usize {
        self.closing.len()
    }
}

/// The token of socket `i` of entry `key`.
pub(crate) fn token(key: Key, i: usize) -> Token {
    Token(
        (key.slot as u64 | ((key.gen as u64 & GEN_MASK) << SLOT_BITS) | ((i as u64 & SOCK_MASK) << SOCK_SHIFT))
            as usize,
    )
}

/// An event token's entry and socket index, or `None` for the engine's own tokens.
pub(crate) fn decode(t: Token) -> Option<(Key, usize)> {
    let raw = t.0 as u64;
    if raw >> 63 != 0 || raw >> (SOCK_SHIFT + 2) != 0 {
        return None;
    }
    let key = Key { slot: (raw & 0xFFFF_FFFF) as u32, gen: ((raw >> SLOT_BITS) & GEN_MASK) as u32 };
    Some((key, ((raw >> SOCK_SHIFT) & SOCK_MASK) as usize))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::timer::Kind;
    use mio::net::TcpStream;
    use std::time::{Duration, Instant};

    /// A test entry with up to two sockets.
    #[derive(Debug)]
    struct Two(Option<TcpStream>, Option<TcpStream>);

    impl Entry for Two {
        fn socket(&mut self, i: usize) -> Option<&mut dyn Source> {
            match i {
                0 => self.0.as_mut().map(|s| s as &mut dyn Source),
                1 => self.1.as_mut().map(|s| s as &mut dyn Source),
                _ => None,
            }
        }
    }

    impl Entry for u32 {
        fn socket(&mut self, _: usize) -> Option<&mut dyn Source> {
            None
        }
    }

    fn pair(l: &std::net::TcpListener) -> (TcpStream, std::net::TcpStream) {
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (a, _) = l.accept().unwrap();
        c.set_nonblocking(true).unwrap();
        (TcpStream::from_std(c), a)
    }

    #[test]
    fn stale_keys_find_nothing_after_close_and_reuse() {
        let poll = mio::Poll::new().unwrap();
        let mut timers = Timers::new();
        let mut t: Table<u32> = Table::new(4);
        let a = t.adopt(poll.registry(), 1).unwrap();
        assert_eq!(t.get(a), Some(&1));
        assert_eq!(t.close(&mut timers, a).copied(), Some(1));
        assert_eq!(t.get(a), None);
        assert!(t.close(&mut timers, a).is_none(), "a stale key closes nothing");
        let b = t.adopt(poll.registry(), 2).unwrap();
        assert_eq!(a.slot, b.slot, "the slot is reused");
        assert_ne!(a, b, "under a new generation");
        assert_eq!(t.get(a), None);
        assert_eq!(t.get(b), Some(&2));
        assert_eq!(decode(token(b, 1)), Some((b, 1)));
        assert_ne!(decode(token(a, 0)).map(|(k, _)| k), Some(b));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn capacity_is_a_hard_bound() {
        let poll = mio::Poll::new().unwrap();
        let mut t: Table<u32> = Table::new(2);
        t.adopt(poll.registry(), 1).unwrap();
        t.adopt(poll.registry(), 2).unwrap();
        assert!(matches!(t.adopt(poll.registry(), 3), Err((3, Refused::Full))));
        assert!(t.is_full());
    }

    #[test]
    fn engine_tokens_are_not_entries() {
        assert_eq!(decode(Token(usize::MAX)), None);
        assert_eq!(decode(Token(usize::MAX - 70)), None);
        let k = Key { slot: u32::MAX - 1, gen: GEN_MASK as u32 };
        assert_eq!(decode(token(k, MAX_SOCKETS - 1)), Some((k, MAX_SOCKETS - 1)));
    }

    #[test]
    fn generations_wrap_without_panicking() {
        let poll = mio::Poll::new().unwrap();
        let mut timers = Timers::new();
        let mut t: Table<u32> = Table::new(1);
        let mut last = t.adopt(poll.registry(), 0).unwrap();
        for i in 0..(1u32 << GEN_BITS) + 3 {
            t.close(&mut timers, last).unwrap();
            t.end_batch();
            last = t.adopt(poll.registry(), i).unwrap();
        }
        assert_eq!(t.get(last), Some(&((1u32 << GEN_BITS) + 2)));
    }

    #[test]
    fn a_failed_registration_rolls_back_the_ones_made() {
        let poll = mio::Poll::new().unwrap();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (a, _pa) = pair(&l);
        let (mut b, _pb) = pair(&l);
        // Socket 1 is already registered elsewhere in this poll: its registration fails.
        poll.registry().register(&mut b, Token(1 << 62), Interest::READABLE).unwrap();
        let mut t: Table<Two> = Table::new(4);
        let (mut back, why) = t.adopt(poll.registry(), Two(Some(a), Some(b))).unwrap_err();
        assert!(matches!(why, Refused::Register(_)));
        assert!(t.is_empty());
        // Socket 0 was deregistered: it registers again without EEXIST.
        let s0 = back.0.as_mut().unwrap();
        poll.registry().register(s0, Token(7), Interest::READABLE).unwrap();
    }

    #[test]
    fn multi_socket_entries_get_one_token_per_socket() {
        let mut poll = mio::Poll::new().unwrap();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (a, mut pa) = pair(&l);
        let (b, mut pb) = pair(&l);
        let mut t: Table<Two> = Table::new(4);
        let key = t.adopt(poll.registry(), Two(Some(a), None)).unwrap();
        t.get_mut(key).unwrap().1 = Some(b);
        t.attach(poll.registry(), key, 1).unwrap();
        use std::io::Write;
        pb.write_all(b"x").unwrap();
        let mut events = mio::Events::with_capacity(8);
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut seen = Vec::new();
        while !seen.contains(&(key, 1)) {
            assert!(Instant::now() < deadline, "no event for socket 1");
            poll.poll(&mut events, Some(Duration::from_millis(100))).unwrap();
            seen.extend(events.iter().filter(|e| e.is_readable()).filter_map(|e| decode(e.token())));
        }
        assert!(!seen.contains(&(key, 0)), "socket 0 has nothing to read");
        // Replace socket 1 (a connect retry): detach, swap, attach under the same token.
        t.detach(poll.registry(), key, 1);
        let (c, _pc) = pair(&l);
        t.get_mut(key).unwrap().1 = Some(c);
        t.attach(poll.registry(), key, 1).unwrap();
        pa.write_all(b"y").unwrap();
        let mut got0 = false;
        while !got0 {
            assert!(Instant::now() < deadline, "no event for socket 0");
            poll.poll(&mut events, Some(Duration::from_millis(100))).unwrap();
            got0 = events.iter().any(|e| decode(e.token()) == Some((key, 0)));
        }
    }

    #[test]
    fn close_detaches_now_drops_at_the_end_of_the_batch_and_cancels_timers() {
        let poll = mio::Poll::new().unwrap();
        let std_l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (a, mut peer) = pair(&std_l);
        let mut timers = Timers::new();
        let mut t: Table<Two> = Table::new(4);
        let key = t.adopt(poll.registry(), Two(Some(a), None)).unwrap();
        let now = Instant::now();
        timers.arm(key, Kind::new(0), now);
        timers.arm(key, Kind::new(3), now);
        assert!(t.close(&mut timers, key).is_some());
        assert!(t.get(key).is_none(), "stale at once: later events of the batch are ignored");
        assert_eq!(timers.len(), 0, "every kind of its timers is cancelled");
        assert_eq!(t.closing(), 1);
        // Still open until the end of the batch: the peer sees no EOF yet.
        peer.set_nonblocking(true).unwrap();
        use std::io::Read;
        let mut buf = [0u8; 1];
        assert_eq!(peer.read(&mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        t.end_batch();
        assert_eq!(t.closing(), 0);
        peer.set_nonblocking(false).unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(peer.read(&mut buf).unwrap(), 0, "dropped at the end of the batch: EOF");
    }
}
