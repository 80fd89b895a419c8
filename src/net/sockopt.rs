//! Options set on a socket that already exists: reset on close, TCP_NODELAY, SO_INCOMING_CPU.
//! Roles set socket options through here and the rest of `net` (`connect` before a dial,
//! `tune` for buffers and congestion control, `listen` for listeners, `tcp_info` for what
//! socket2 lacks); none of them calls socket2 itself.

use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use socket2::SockRef;

/// SO_LINGER 0: closing `s` sends RST instead of FIN and leaves no TIME_WAIT behind.
pub fn reset_on_close(s: &impl AsFd) -> io::Result<()> {
    SockRef::from(s).set_linger(Some(Duration::ZERO))
}

/// TCP_NODELAY on. On a listener, Linux copies it to every accepted socket.
pub fn set_nodelay(s: &impl AsFd) -> io::Result<()> {
    SockRef::from(s).set_nodelay(true)
}

/// SO_INCOMING_CPU: a listener in a SO_REUSEPORT group takes the connections whose SYN `cpu`
/// handled (Linux 6.1 and later; older kernels pick by hash).
pub fn set_incoming_cpu(s: &impl AsFd, cpu: usize) -> io::Result<()> {
    SockRef::from(s).set_cpu_affinity(cpu)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{ErrorKind, Read};
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn a_reset_on_close_socket_resets_its_peer() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut b, _) = l.accept().unwrap();
        reset_on_close(&a).unwrap();
        set_nodelay(&a).unwrap();
        assert!(SockRef::from(&a).nodelay().unwrap());
        drop(a);
        b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 1];
        let e = b.read(&mut buf).expect_err("a reset, not an EOF");
        assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}");
    }
}
