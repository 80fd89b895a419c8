//! Socket-buffer policy. The coordinator decides it once (from `--sndbuf/--rcvbuf`, or from a
//! memory budget split over the planned connection count) and hands it to every reactor, which
//! applies it to each socket *before* `connect`/after `accept` (the window scale is fixed at
//! the handshake, so SO_RCVBUF must be set before it).

use std::os::fd::AsFd;

use socket2::SockRef;

/// A TCP congestion-control algorithm (TCP_CONGESTION) for the sockets of one side of the
/// proxy; `None` where one is expected leaves the kernel's default
/// (`net.ipv4.tcp_congestion_control`). Copy, so dial options stay Copy.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Congestion {
    name: [u8; Congestion::MAX_LEN],
    len: u8,
}

impl Congestion {
    /// TCP_CA_NAME_MAX (16) less the terminating NUL.
    pub(crate) const MAX_LEN: usize = 15;

    /// Checks `name` against the kernel by setting it on a throwaway socket, so a name the
    /// kernel lacks or this user may not use is refused at load time, not on every socket.
    pub fn probe(name: &str) -> Result<Congestion, String> {
        let bytes = name.as_bytes();
        if bytes.is_empty()
            || bytes.len() > Self::MAX_LEN
            || !bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
        {
            return Err(format!(
                "{name:?} is not a congestion-control name (lower-case letters, digits and _, at most {} \
                 characters, e.g. \"cubic\"; \"system\" keeps the kernel's default)",
                Self::MAX_LEN
            ));
        }
        let mut c = Congestion { name: [0; Self::MAX_LEN], len: bytes.len() as u8 };
        c.name[..bytes.len()].copy_from_slice(bytes);
        // An IPv6-only host has no AF_INET sockets.
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .or_else(|_| socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::STREAM, None))
            .map_err(|e| format!("cannot check {name:?}: socket: {e}"))?;
        match c.apply(&sock) {
            Ok(()) => Ok(c),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Err(format!(
                "{name:?} is not a congestion control this kernel has (available: {}; a module may need loading: \
                 modprobe tcp_{name})",
                sysctl_list("tcp_available_congestion_control")
            )),
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => Err(format!(
                "{name:?} is not allowed for this user (allowed: {}; run with CAP_NET_ADMIN, or add it \
                 to net.ipv4.tcp_allowed_congestion_control)",
                sysctl_list("tcp_allowed_congestion_control")
            )),
            Err(e) => Err(format!("{name:?}: TCP_CONGESTION: {e}")),
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        // Built from a checked ASCII &str.
        std::str::from_utf8(&self.name[..usize::from(self.len)]).unwrap_or("")
    }

    /// Sets TCP_CONGESTION on `sock` (a listener passes it on to every accepted socket).
    #[cfg(target_os = "linux")]
    pub(crate) fn apply(&self, sock: &impl AsFd) -> std::io::Result<()> {
        SockRef::from(sock).set_tcp_congestion(&self.name[..usize::from(self.len)])
    }

    #[cfg(not(target_os = "linux"))]
    pub(crate) fn apply(&self, _sock: &impl AsFd) -> std::io::Result<()> {
        Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "TCP_CONGESTION is Linux-only here"))
    }
}

impl std::fmt::Debug for Congestion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Congestion({:?})", self.as_str())
    }
}

/// A space-separated list from /proc/sys/net/ipv4, for error messages.
fn sysctl_list(name: &str) -> String {
    std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string())
}

/// Smallest buffer a budget may give a socket: below this the kernel rounds up anyway.
pub(crate) const MIN_BUDGET_BUF: usize = 4096;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SockBufs {
    pub sndbuf: Option<usize>,
    pub rcvbuf: Option<usize>,
}

impl SockBufs {
    /// Explicit sizes win; otherwise a budget (bytes of kernel buffer for all sockets) is
    /// split evenly over `sockets`, half to each direction; otherwise kernel defaults.
    pub(crate) fn policy(sndbuf: Option<usize>, rcvbuf: Option<usize>, budget: Option<u64>, sockets: u64) -> SockBufs {
        // Capped at the shared SO_*BUF maximum: the kernel takes a C int (see units::SOCKBUF_MAX).
        let per_dir = budget
            .map(|b| (b / sockets.max(1) / 2).min(crate::units::SOCKBUF_MAX) as usize)
            .map(|b| b.max(MIN_BUDGET_BUF));
        SockBufs { sndbuf: sndbuf.or(per_dir), rcvbuf: rcvbuf.or(per_dir) }
    }

    pub(crate) fn apply(&self, sock: &impl AsFd) -> std::io::Result<()> {
        let sock = SockRef::from(sock);
        if let Some(n) = self.sndbuf {
            sock.set_send_buffer_size(n)?;
        }
        if let Some(n) = self.rcvbuf {
            sock.set_recv_buffer_size(n)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_sizes_win_over_budget() {
        let p = SockBufs::policy(Some(8192), None, Some(1 << 30), 1000);
        assert_eq!(p.sndbuf, Some(8192));
        assert_eq!(p.rcvbuf, Some((1 << 30) / 1000 / 2));
        assert_eq!(SockBufs::policy(None, None, None, 10), SockBufs::default());
        assert_eq!(SockBufs::policy(None, None, Some(1000), 1000).rcvbuf, Some(MIN_BUDGET_BUF));
        // A budget far above what one socket can take is capped at the int-safe maximum (1 TiB
        // over 2 sockets used to reach setsockopt as a wrapped int).
        let p = SockBufs::policy(None, None, Some(1 << 40), 2);
        assert_eq!(p.sndbuf, Some(crate::units::SOCKBUF_MAX as usize));
    }

    #[test]
    fn congestion_probe_accepts_reno_and_names_what_is_wrong() {
        // reno is built into every Linux kernel and always allowed.
        let c = Congestion::probe("reno").unwrap();
        assert_eq!(c.as_str(), "reno");
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        c.apply(&s).unwrap();
        assert!(s.tcp_congestion().unwrap().starts_with(b"reno\0"));
        let e = Congestion::probe("nosuchcc").unwrap_err();
        assert!(e.contains("not a congestion control this kernel has") && e.contains("reno"), "{e}");
        for bad in ["", "Cubic", "a b", "sixteen_chars_xx"] {
            let e = Congestion::probe(bad).unwrap_err();
            assert!(e.contains("not a congestion-control name"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn apply_sets_kernel_sizes() {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        SockBufs { sndbuf: Some(16384), rcvbuf: Some(16384) }.apply(&s).unwrap();
        // Linux doubles the requested size for bookkeeping overhead.
        assert!(s.recv_buffer_size().unwrap() >= 16384);
    }
}
