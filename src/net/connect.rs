//! Non-blocking dials. Buffers are sized before `connect` (the window scale is negotiated in
//! the SYN), the source address is bound with IP_BIND_ADDRESS_NO_PORT when one is given, the
//! source port is searched in the dialer's own slice of `ip_local_port_range` where one is given
//! (IP_LOCAL_PORT_RANGE), and the result is a mio stream whose completion is read on the first
//! WRITABLE edge with `take_error()` then `peer_addr()`.
//!
//! Why the slice: without IP_LOCAL_PORT_RANGE, Linux's `connect` tries the *even* ports of the
//! range first. Once one source address holds more connections to one destination than there
//! are even ports (half the range: 14,116 of 32768-60999), or TIME_WAIT sockets fill them, every
//! further `connect` walks all the even ports before it tries an odd one, and 19,000 connections
//! from one address take seconds instead of under one. With a per-socket range the kernel walks
//! the slice port by port from where the last search ended, so the cost stays flat.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;

use socket2::{Domain, Protocol, Socket, Type};

use super::tune::{Congestion, SockBufs};

/// Options applied to every dialed socket.
#[derive(Clone, Copy, Debug, Default)]
pub struct DialOpts {
    pub bufs: SockBufs,
    pub nodelay: bool,
    /// Close with RST instead of FIN (SO_LINGER 0): no TIME_WAIT left behind.
    pub linger_rst: bool,
    /// TCP_QUICKACK off before `connect`: the kernel holds the handshake's last ACK (up to
    /// 200 ms) for the first data segment to carry it. Only for a caller with bytes to send at
    /// once; a server that speaks first would wait for that ACK.
    pub delay_ack: bool,
    /// TCP_CONGESTION for this socket; `None` = the kernel's default.
    pub congestion: Option<Congestion>,
    /// This dialer's slice of `ip_local_port_range` (IP_LOCAL_PORT_RANGE, Linux ≥ 6.3), or
    /// `None` for the kernel's search. Only set where [`local_port_range_works`] said yes.
    pub port_range: Option<(u16, u16)>,
    /// TCP_MAXSEG before `connect` (the MSS announced in the SYN); `None` = the route's.
    pub mss: Option<u32>,
    /// TCP_NOTSENT_LOWAT: how many unsent bytes may wait in the send queue before the socket
    /// stops being writable; `None` = the system's.
    pub notsent_lowat: Option<u32>,
}

/// Whether this kernel takes IP_LOCAL_PORT_RANGE (Linux ≥ 6.3): one probe socket.
pub fn local_port_range_works() -> bool {
    let Ok(sock) = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)) else { return false };
    super::tcp_info::set_local_port_range(sock.as_fd(), 32768, 60999).is_ok()
}

/// Splits the ephemeral range `lo..=hi` into `n` disjoint, contiguous slices, one per dialer,
/// so dialers never search the same ports. `None` when a slice would hold fewer than 2 ports
/// or the range does not fit in u16.
pub fn port_slices(lo: u32, hi: u32, n: usize) -> Option<Vec<(u16, u16)>> {
    let (lo, hi) = (u16::try_from(lo).ok()?, u16::try_from(hi).ok()?);
    let n = u32::try_from(n.max(1)).ok()?;
    let width = (u32::from(hi).checked_sub(u32::from(lo))? + 1) / n;
    if width < 2 {
        return None;
    }
    Some(
        (0..n)
            .map(|i| {
                let a = u32::from(lo) + i * width;
                // The last slice takes the remainder.
                let b = if i + 1 == n { u32::from(hi) } else { a + width - 1 };
                (a as u16, b as u16)
            })
            .collect(),
    )
}

/// Starts a non-blocking connect to `target`, from `source` if given.
/// `Ok` means the handshake is under way (or done); errors are immediate failures
/// (no ports, no fds, unreachable).
pub fn dial(target: SocketAddr, source: Option<IpAddr>, opts: &DialOpts) -> io::Result<mio::net::TcpStream> {
    let sock = Socket::new(Domain::for_address(target), Type::STREAM.nonblocking(), Some(Protocol::TCP))?;
    opts.bufs.apply(&sock)?;
    if let Some(m) = opts.mss {
        sock.set_mss(m)?;
    }
    if opts.nodelay {
        sock.set_nodelay(true)?;
    }
    if let Some(n) = opts.notsent_lowat {
        super::tcp_info::set_notsent_lowat(sock.as_fd(), n)?;
    }
    if opts.linger_rst {
        sock.set_linger(Some(std::time::Duration::ZERO))?;
    }
    if let Some(c) = opts.congestion {
        c.apply(&sock)?;
    }
    if opts.delay_ack {
        super::tcp_info::set_quickack(sock.as_fd(), false)?;
    }
    if let Some((lo, hi)) = opts.port_range {
        super::tcp_info::set_local_port_range(sock.as_fd(), lo, hi)?;
    }
    if let Some(ip) = source {
        super::tcp_info::set_bind_address_no_port(sock.as_fd(), true)?;
        sock.bind(&SocketAddr::new(ip, 0).into())?;
    }
    match sock.connect(&target.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        Err(e) => return Err(e),
    }
    Ok(mio::net::TcpStream::from_std(sock.into()))
}

/// Outcome of checking a dialing socket on a WRITABLE/ERROR edge.
#[derive(Debug)]
pub enum DialState {
    Connected,
    /// Spurious wake-up: still in progress.
    Pending,
    Failed(io::Error),
}

/// The mio-documented completion check: a pending error fails the dial; otherwise a peer
/// address means connected, and `NotConnected` means the handshake is still under way.
pub fn check(stream: &mio::net::TcpStream) -> DialState {
    match stream.take_error() {
        Ok(Some(e)) | Err(e) => DialState::Failed(e),
        Ok(None) => match stream.peer_addr() {
            Ok(_) => DialState::Connected,
            Err(e) if e.kind() == io::ErrorKind::NotConnected || e.raw_os_error() == Some(libc::ENOTCONN) => {
                DialState::Pending
            }
            Err(e) => DialState::Failed(e),
        },
    }
}

/// Whether a dial that `check` reported as `Failed(err)` had completed its handshake before the
/// error: the peer accepted and then reset (or closed and reset) before this side looked. Such a
/// connection was established, and what the peer did next ends it; it is not a failed dial.
///
/// The kernel reports a reset of a socket still in SYN_SENT as `ECONNREFUSED`, and a reset
/// after the handshake as `ECONNRESET` (`EPIPE` after the peer's FIN). Where `TCP_INFO` has
/// `tcpi_bytes_acked` (Linux 4.1+), the peer's acknowledgement of our SYN (1 byte) is the
/// evidence; otherwise the errno is.
pub fn completed_before(stream: &mio::net::TcpStream, err: &io::Error) -> bool {
    if !matches!(err.raw_os_error(), Some(libc::ECONNRESET) | Some(libc::EPIPE)) {
        return false;
    }
    match super::tcp_info::tcp_info(stream.as_fd()).map(|i| i.bytes_acked) {
        Ok(Some(acked)) => acked >= 1,
        _ => true,
    }
}

/// Parses `--source-ip` values: an address, a CIDR (`127.0.0.0/30`, network and broadcast
/// excluded for prefixes < 31), or an inclusive range (`127.0.0.2-127.0.0.9`). At most
/// `MAX_SOURCE_IPS` addresses in all.
pub fn parse_sources(specs: &[String]) -> Result<Vec<IpAddr>, String> {
    let mut out = Vec::new();
    for spec in specs {
        // An empty item (`--source-ip ""`, `a,,b`, a trailing comma) is a typo, not "none".
        if spec.split(',').any(|s| s.trim().is_empty()) {
            return Err(format!("--source-ip {spec:?}: an empty address in the list"));
        }
        for part in spec.split(',').map(str::trim) {
            expand_source(part, &mut out)?;
            if out.len() > MAX_SOURCE_IPS {
                return Err(format!("--source-ip: more than {MAX_SOURCE_IPS} addresses"));
            }
        }
    }
    Ok(out)
}

pub const MAX_SOURCE_IPS: usize = 4096;

/// Checks that each source address is one this machine can send from (a bind to it, port
/// left to the connect): otherwise every dial would fail alike, as a port shortage.
pub fn check_local_sources(ips: &[IpAddr]) -> Result<(), String> {
    for ip in ips {
        let sock = Socket::new(Domain::for_address(SocketAddr::new(*ip, 0)), Type::STREAM, None)
            .map_err(|e| format!("--source-ip {ip}: cannot make a socket to check it: {e}"))?;
        let _ = super::tcp_info::set_bind_address_no_port(sock.as_fd(), true);
        if let Err(e) = sock.bind(&SocketAddr::new(*ip, 0).into()) {
            let why = if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) {
                "not an address of this machine".to_string()
            } else {
                e.to_string()
            };
            return Err(format!("--source-ip {ip}: cannot send from it: {why}"));
        }
    }
    Ok(())
}

fn expand_source(spec: &str, out: &mut Vec<IpAddr>) -> Result<(), String> {
    let bad = |why: &str| format!("--source-ip {spec:?}: {why}");
    if let Some((lo, hi)) = spec.split_once('-').filter(|_| !spec.contains('/')) {
        let lo: IpAddr = lo.trim().parse().map_err(|_| bad("bad start address"))?;
        let hi: IpAddr = hi.trim().parse().map_err(|_| bad("bad end address"))?;
        match (lo, hi) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let (a, b) = (u32::from(a), u32::from(b));
                if b < a {
                    return Err(bad("range end is below its start"));
                }
                if (b - a) as usize >= MAX_SOURCE_IPS {
                    return Err(bad(&format!(
                        "range of {} addresses is too large (at most {MAX_SOURCE_IPS})",
                        u64::from(b - a) + 1
                    )));
                }
                out.extend((a..=b).map(|n| IpAddr::V4(n.into())));
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let (a, b) = (u128::from(a), u128::from(b));
                if b < a {
                    return Err(bad("range end is below its start"));
                }
                if b - a >= MAX_SOURCE_IPS as u128 {
                    let n = (b - a).saturating_add(1);
                    return Err(bad(&format!("range of {n} addresses is too large (at most {MAX_SOURCE_IPS})")));
                }
                out.extend((a..=b).map(|n| IpAddr::V6(n.into())));
            }
            _ => return Err(bad("start and end are of different families")),
        }
        return Ok(());
    }
    if let Some((ip, len)) = spec.split_once('/') {
        let ip: IpAddr = ip.parse().map_err(|_| bad("bad network address"))?;
        let len: u32 = len.parse().map_err(|_| bad("bad prefix length"))?;
        match ip {
            IpAddr::V4(v4) => {
                if !(20..=32).contains(&len) {
                    return Err(bad("IPv4 prefix must be /20 to /32"));
                }
                let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                let net = u32::from(v4) & mask;
                let size = 1u64 << (32 - len);
                let (first, last) =
                    if len >= 31 { (net, net + (size - 1) as u32) } else { (net + 1, net + (size - 2) as u32) };
                out.extend((first..=last).map(|n| IpAddr::V4(n.into())));
            }
            IpAddr::V6(v6) => {
                if !(116..=128).contains(&len) {
                    return Err(bad("IPv6 prefix must be /116 to /128"));
                }
                let mask = u128::MAX << (128 - len);
                let net = u128::from(v6) & mask;
                let size = 1u128 << (128 - len);
                out.extend((net..net + size).map(|n| IpAddr::V6(n.into())));
            }
        }
        return Ok(());
    }
    out.push(spec.parse().map_err(|_| bad("not an IP address, CIDR or range"))?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_expand() {
        let ips = parse_sources(&["127.0.0.2-127.0.0.4".into(), "127.0.1.0/30".into(), "::1".into()]).unwrap();
        let want: Vec<IpAddr> = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.1.1", "127.0.1.2", "::1"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(ips, want);
        assert_eq!(parse_sources(&["127.0.0.5/32".into()]).unwrap().len(), 1);
        for bad in ["nope", "127.0.0.9-127.0.0.1", "127.0.0.1-::1", "10.0.0.0/8", "127.0.0.1/40", "", ",", "127.0.0.1,"]
        {
            assert!(parse_sources(&[bad.into()]).is_err(), "{bad}");
        }
        assert_eq!(parse_sources(&["".into()]).unwrap_err(), "--source-ip \"\": an empty address in the list");
        check_local_sources(&["127.0.0.1".parse().unwrap(), "127.0.0.9".parse().unwrap()]).unwrap();
        // 192.0.2.1 (TEST-NET-1) is no address of this machine, unless the kernel binds any.
        let nonlocal = std::fs::read_to_string("/proc/sys/net/ipv4/ip_nonlocal_bind").is_ok_and(|v| v.trim() != "0");
        if !nonlocal {
            let e = check_local_sources(&["192.0.2.1".parse().unwrap()]).unwrap_err();
            assert_eq!(e, "--source-ip 192.0.2.1: cannot send from it: not an address of this machine");
        }
        // A prefix with a minus sign is a bad prefix, not a bad range.
        let e = parse_sources(&["127.0.0.1/-1".into()]).unwrap_err();
        assert!(!e.contains("start address"), "{e}");
    }

    #[test]
    fn a_source_range_over_the_limit_names_its_size_and_the_limit() {
        assert_eq!(parse_sources(&["10.0.0.0-10.0.15.255".into()]).unwrap().len(), MAX_SOURCE_IPS);
        let err = parse_sources(&["10.0.0.0-10.0.16.0".into()]).unwrap_err();
        assert_eq!(err, "--source-ip \"10.0.0.0-10.0.16.0\": range of 4097 addresses is too large (at most 4096)");
        let err = parse_sources(&["0.0.0.0-255.255.255.255".into()]).unwrap_err();
        assert!(err.contains("range of 4294967296 addresses"), "{err}");
        let err = parse_sources(&["::-ffff::".into()]).unwrap_err();
        assert!(err.ends_with(&format!("is too large (at most {MAX_SOURCE_IPS})")), "{err}");
    }

    #[test]
    fn port_slices_are_disjoint_and_cover_the_range() {
        let s = port_slices(32768, 60999, 2).unwrap();
        assert_eq!(s, vec![(32768, 46883), (46884, 60999)]);
        let s = port_slices(32768, 60999, 3).unwrap();
        assert_eq!(s.first().unwrap().0, 32768);
        assert_eq!(s.last().unwrap().1, 60999);
        for w in s.windows(2) {
            assert_eq!(w[0].1 + 1, w[1].0, "contiguous: {s:?}");
        }
        assert_eq!(port_slices(1024, 65535, 1).unwrap(), vec![(1024, 65535)]);
        assert_eq!(port_slices(5000, 5002, 2), None, "slices of one port");
        assert_eq!(port_slices(6000, 5000, 1), None, "inverted range");
        assert_eq!(port_slices(1024, 70000, 2), None, "past u16");
    }

    #[test]
    fn dial_refused_is_reported_on_the_socket() {
        // Bind, learn the port, close: nothing listens there now.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let target: SocketAddr = ([127, 0, 0, 1], port).into();
        let s = dial(target, Some("127.0.0.1".parse().unwrap()), &DialOpts::default()).unwrap();
        let mut poll = mio::Poll::new().unwrap();
        let mut s = s;
        poll.registry().register(&mut s, mio::Token(0), mio::Interest::WRITABLE).unwrap();
        let mut events = mio::Events::with_capacity(4);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            poll.poll(&mut events, Some(std::time::Duration::from_millis(100))).unwrap();
            match check(&s) {
                DialState::Failed(e) => {
                    assert_eq!(crate::net::Cause::from_io(&e), crate::net::Cause::Refused);
                    assert!(!completed_before(&s, &e), "a refused dial never completed");
                    break;
                }
                DialState::Pending => assert!(std::time::Instant::now() < deadline, "no result"),
                DialState::Connected => panic!("connected to a closed port"),
            }
        }
    }

    #[test]
    fn reset_after_accept_is_a_completed_handshake() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut s = dial(l.local_addr().unwrap(), None, &DialOpts::default()).unwrap();
        let (a, _) = l.accept().unwrap();
        super::super::sockopt::reset_on_close(&a).unwrap();
        drop(a);
        let mut poll = mio::Poll::new().unwrap();
        poll.registry().register(&mut s, mio::Token(0), mio::Interest::READABLE).unwrap();
        let mut events = mio::Events::with_capacity(4);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        // Wait for the reset to land before the first look, as it does under load.
        while !events.iter().any(|e| e.is_read_closed() || e.is_error()) {
            assert!(std::time::Instant::now() < deadline, "no reset seen");
            poll.poll(&mut events, Some(std::time::Duration::from_millis(100))).unwrap();
        }
        match check(&s) {
            DialState::Failed(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::ECONNRESET));
                assert!(completed_before(&s, &e));
            }
            other => panic!("expected the reset, got {other:?}"),
        }
    }
}
