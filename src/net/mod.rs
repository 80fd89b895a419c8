//! Socket construction shared by every role: SO_REUSEPORT listeners, non-blocking dials with
//! source binding, the socket-buffer policy the coordinator hands to reactors, and (in
//! `tcp_info`) the kernel socket state the backpressure lab shows: TCP_INFO, SIOCINQ/SIOCOUTQ; and (in `splice`) the
//! kernel pipes the proxy forwards through without copying.

pub(crate) mod connect;
pub(crate) mod listen;
pub(crate) mod sockopt;
pub(crate) mod splice;
pub(crate) mod tcp_info;
pub mod tune;

use std::io;

/// Coarse cause of a socket failure, for counters and reports (no allocation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Cause {
    Refused,
    Timeout,
    Reset,
    NoPorts,
    NoFds,
    Unreachable,
    Other,
}

impl Cause {
    pub const ALL: [Cause; 7] =
        [Cause::Refused, Cause::Timeout, Cause::Reset, Cause::NoPorts, Cause::NoFds, Cause::Unreachable, Cause::Other];

    pub fn from_io(e: &io::Error) -> Cause {
        match e.raw_os_error() {
            Some(libc::ECONNREFUSED) => Cause::Refused,
            Some(libc::ETIMEDOUT) => Cause::Timeout,
            Some(libc::ECONNRESET) | Some(libc::ECONNABORTED) | Some(libc::EPIPE) => Cause::Reset,
            Some(libc::EADDRNOTAVAIL) | Some(libc::EADDRINUSE) => Cause::NoPorts,
            Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) | Some(libc::ENOMEM) => Cause::NoFds,
            Some(libc::ENETUNREACH) | Some(libc::EHOSTUNREACH) | Some(libc::ENETDOWN) => Cause::Unreachable,
            _ => match e.kind() {
                io::ErrorKind::ConnectionRefused => Cause::Refused,
                io::ErrorKind::TimedOut => Cause::Timeout,
                io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => Cause::Reset,
                _ => Cause::Other,
            },
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            Cause::Refused => "refused",
            Cause::Timeout => "timeout",
            Cause::Reset => "reset",
            Cause::NoPorts => "no_ports",
            Cause::NoFds => "no_fds",
            Cause::Unreachable => "unreachable",
            Cause::Other => "other",
        }
    }
}

/// True for the errors that mean "this process (or the system) is out of descriptors/memory":
/// an accept loop must pause, not spin.
pub(crate) fn is_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) | Some(libc::ENOMEM))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_from_errno() {
        let cases = [
            (libc::ECONNREFUSED, Cause::Refused),
            (libc::ETIMEDOUT, Cause::Timeout),
            (libc::ECONNRESET, Cause::Reset),
            (libc::EADDRNOTAVAIL, Cause::NoPorts),
            (libc::EMFILE, Cause::NoFds),
            (libc::ENETUNREACH, Cause::Unreachable),
            (libc::EINVAL, Cause::Other),
        ];
        for (errno, cause) in cases {
            assert_eq!(Cause::from_io(&io::Error::from_raw_os_error(errno)), cause);
        }
        assert!(is_exhaustion(&io::Error::from_raw_os_error(libc::ENFILE)));
        assert!(!is_exhaustion(&io::Error::from_raw_os_error(libc::ECONNRESET)));
        assert_eq!(Cause::ALL.iter().map(|c| c.index()).collect::<Vec<_>>(), (0..7).collect::<Vec<_>>());
    }
}
