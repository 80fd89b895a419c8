//! Listeners: one SO_REUSEPORT socket per reactor on the same address, so the kernel spreads
//! incoming connections over the reactors without a shared accept queue or lock.

use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

/// Backlog asked of the kernel (capped by net.core.somaxconn).
pub const LISTEN_BACKLOG: i32 = 65_535;

/// Binds `count` non-blocking SO_REUSEPORT listeners on `addr`. Port 0 is resolved by the
/// first bind and reused for the rest, so all of them share one ephemeral port.
pub fn reuseport_group(addr: SocketAddr, count: usize, backlog: i32) -> io::Result<(SocketAddr, Vec<TcpListener>)> {
    reuseport_group_tuned(addr, count, backlog, &ListenTuning::default())
}

/// Options set on each listener *before* `listen()`, so every accepted socket inherits them from
/// its first packet: SO_RCVBUF fixes the window scale the SYN-ACK advertises (setting it after
/// the handshake cannot raise the scale), and TCP_MAXSEG is the MSS the SYN-ACK announces.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListenTuning {
    pub rcvbuf: Option<usize>,
    pub mss: Option<u32>,
}

/// [`reuseport_group`] with [`ListenTuning`] applied to every listener before `listen()`.
pub fn reuseport_group_tuned(
    addr: SocketAddr,
    count: usize,
    backlog: i32,
    tuning: &ListenTuning,
) -> io::Result<(SocketAddr, Vec<TcpListener>)> {
    let mut out = Vec::with_capacity(count.max(1));
    let mut bound = addr;
    for _ in 0..count.max(1) {
        let l = bind_one(bound, backlog, tuning)?;
        bound = l.local_addr()?;
        out.push(l);
    }
    Ok((bound, out))
}

fn bind_one(addr: SocketAddr, backlog: i32, tuning: &ListenTuning) -> io::Result<TcpListener> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.set_reuse_address(true)?;
    sock.set_reuse_port(true)?;
    sock.set_nonblocking(true)?;
    if let Some(n) = tuning.rcvbuf {
        sock.set_recv_buffer_size(n)?;
    }
    if let Some(m) = tuning.mss {
        sock.set_mss(m)?;
    }
    sock.bind(&addr.into())?;
    sock.listen(backlog)?;
    Ok(sock.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_shares_one_ephemeral_port() {
        let (addr, ls) = reuseport_group("127.0.0.1:0".parse().unwrap(), 3, 16).unwrap();
        assert_ne!(addr.port(), 0);
        assert_eq!(ls.len(), 3);
        for l in &ls {
            assert_eq!(l.local_addr().unwrap(), addr);
        }
        let c = std::net::TcpStream::connect(addr).unwrap();
        drop(c);
    }
}
