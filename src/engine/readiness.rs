//! Userspace readiness, as mio's edge-triggered epoll requires.
//!
//! Sockets are registered once for `READABLE | WRITABLE | PRIORITY` (EPOLLPRI, so that urgent
//! data always shows as URGENT). Each edge is OR-ed into `event`; a role acts on the bits of
//! `event` its buffers allow (no reading into a full ring, no writing from an empty one). `event`
//! bits are cleared only when a syscall says `WouldBlock` ([`Readiness::read_drained`] for a
//! read), or, for READABLE on plain TCP, when a read came back shorter than it asked
//! ([`Readiness::short_read`]): that read emptied the socket, and the next bytes bring a new
//! edge. Not under a hang-up or an error (the read goes on to the 0 or the error), nor while
//! URGENT is set (a read stops at the urgent mark with bytes behind it, and no new edge comes
//! for them).
//! Nothing is reregistered and no edge is lost: work left when a per-wake-up budget ran out
//! stays in `event`, and the entry is queued on the reactor's pending list ([`super::Cx::defer`]).

use std::ops::{BitAnd, BitOr, BitOrAssign};

#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Ready(u8);

impl Ready {
    pub const EMPTY: Ready = Ready(0);
    pub const READABLE: Ready = Ready(1);
    pub const WRITABLE: Ready = Ready(2);
    /// The peer closed its write side or the connection ended (EPOLLRDHUP/EPOLLHUP).
    pub const HUP: Ready = Ready(4);
    /// EPOLLERR: a pending socket error (read it with `take_error`).
    pub const ERROR: Ready = Ready(8);
    /// EPOLLPRI: TCP urgent data is queued. A read stops at the urgent mark with bytes still
    /// behind it, so a short read proves nothing while this is set (it is also a reason to
    /// read).
    pub const URGENT: Ready = Ready(16);
    /// Every edge: for a caller that must ask the socket itself rather than trust an event.
    /// Not URGENT, which says something about the data, not about an edge: only EPOLLPRI sets it.
    pub const ALL: Ready = Ready(15);

    pub fn from_event(ev: &mio::event::Event) -> Ready {
        let mut r = Ready::EMPTY;
        if ev.is_readable() {
            r |= Ready::READABLE;
        }
        if ev.is_writable() {
            r |= Ready::WRITABLE;
        }
        if ev.is_read_closed() || ev.is_write_closed() {
            // A hang-up is also a reason to read: the read returns 0 or the error.
            r |= Ready::HUP | Ready::READABLE;
        }
        if ev.is_priority() {
            r |= Ready::URGENT | Ready::READABLE;
        }
        if ev.is_error() {
            r |= Ready::ERROR | Ready::READABLE | Ready::WRITABLE;
        }
        r
    }

    /// Whether a read that came back short may end this readable edge on a socket where a short
    /// read empties it ([`Readiness::short_read`]): not with a hang-up or an error pending (the
    /// read must reach the 0 or the error), nor urgent data (the read stopped at its mark).
    pub fn short_read_ends_edge(self) -> bool {
        !self.intersects(Ready::HUP | Ready::ERROR | Ready::URGENT)
    }

    pub fn contains(self, other: Ready) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn intersects(self, other: Ready) -> bool {
        self.0 & other.0 != 0
    }

    pub fn remove(&mut self, other: Ready) {
        self.0 &= !other.0;
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl BitOr for Ready {
    type Output = Ready;
    fn bitor(self, rhs: Ready) -> Ready {
        Ready(self.0 | rhs.0)
    }
}

impl BitOrAssign for Ready {
    fn bitor_assign(&mut self, rhs: Ready) {
        self.0 |= rhs.0;
    }
}

impl BitAnd for Ready {
    type Output = Ready;
    fn bitand(self, rhs: Ready) -> Ready {
        Ready(self.0 & rhs.0)
    }
}

impl std::fmt::Debug for Ready {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = [(1, "R"), (2, "W"), (4, "HUP"), (8, "ERR"), (16, "URG")];
        let parts: Vec<&str> = names.iter().filter(|(b, _)| self.0 & b != 0).map(|(_, n)| *n).collect();
        write!(f, "Ready({})", parts.join("|"))
    }
}

/// Edge state of one socket: what the kernel has signalled and no syscall has yet refuted.
/// A connection acts on `event` and clears bits on `WouldBlock` (READABLE also on a short read,
/// as the module says).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Readiness {
    pub event: Ready,
}

impl Readiness {
    /// A read said `WouldBlock`: nothing is left to read, no hang-up and no urgent data are
    /// pending until the next edge.
    pub fn read_drained(&mut self) {
        self.event.remove(Ready::READABLE | Ready::HUP | Ready::URGENT);
    }

    /// A read of `n` bytes that asked for `asked`: on a socket where a short read empties it
    /// (`plain`: plain TCP; not TLS, which buffers records) and when
    /// [`Ready::short_read_ends_edge`], a short read clears READABLE, so no further read is made
    /// just to hear WouldBlock. True when it did.
    pub fn short_read(&mut self, n: usize, asked: usize, plain: bool) -> bool {
        if plain && n < asked && self.event.short_read_ends_edge() {
            self.event.remove(Ready::READABLE);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_bits_and_names() {
        let mut r = Readiness::default();
        r.event |= Ready::WRITABLE | Ready::READABLE;
        r.event.remove(Ready::READABLE);
        assert_eq!(r.event, Ready::WRITABLE);
        assert!(Ready::ALL.contains(Ready::HUP | Ready::ERROR));
        assert_eq!(format!("{:?}", Ready::READABLE | Ready::HUP), "Ready(R|HUP)");
    }
}
