//! Socket-buffer policy. The coordinator decides it once (from `--sndbuf/--rcvbuf`, or from a
//! memory budget split over the planned connection count) and hands it to every reactor, which
//! applies it to each socket *before* `connect`/after `accept` (the window scale is fixed at
//! the handshake, so SO_RCVBUF must be set before it).

use socket2::SockRef;

/// Smallest buffer a budget may give a socket: below this the kernel rounds up anyway.
pub const MIN_BUDGET_BUF: usize = 4096;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockBufs {
    pub sndbuf: Option<usize>,
    pub rcvbuf: Option<usize>,
}

impl SockBufs {
    /// Explicit sizes win; otherwise a budget (bytes of kernel buffer for all sockets) is
    /// split evenly over `sockets`, half to each direction; otherwise kernel defaults.
    pub fn policy(sndbuf: Option<usize>, rcvbuf: Option<usize>, budget: Option<u64>, sockets: u64) -> SockBufs {
        let per_dir = budget.map(|b| ((b / sockets.max(1) / 2) as usize).max(MIN_BUDGET_BUF));
        SockBufs { sndbuf: sndbuf.or(per_dir), rcvbuf: rcvbuf.or(per_dir) }
    }

    pub fn apply(&self, sock: SockRef<'_>) -> std::io::Result<()> {
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
    }

    #[test]
    fn apply_sets_kernel_sizes() {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        SockBufs { sndbuf: Some(16384), rcvbuf: Some(16384) }.apply(SockRef::from(&s)).unwrap();
        // Linux doubles the requested size for bookkeeping overhead.
        assert!(s.recv_buffer_size().unwrap() >= 16384);
    }
}
