//! Listeners: one SO_REUSEPORT socket per reactor on the same address, so the kernel spreads
//! incoming connections over the reactors without a shared accept queue or lock.
//!
//! SO_REUSEPORT also lets *another process* of the same user bind the address, and the kernel
//! then splits new connections between the two without a word. So a group is exclusive unless
//! the user asks otherwise ([`Sharing::ReusePort`], the roles' `--reuse-port`):
//!
//! 1. Probe: one socket *without* SO_REUSEPORT binds the address first. The kernel refuses it
//!    (EADDRINUSE) when any socket listens on it, with or without SO_REUSEPORT. Port 0 needs no
//!    probe: the kernel picks a port nothing is bound to.
//! 2. The probe closes and the group binds with SO_REUSEPORT.
//! 3. Check: `/proc/net/tcp{,6}` must list no listening socket on the address but the group's
//!    own. This closes the window between 1 and 2: of two processes starting at once, the later
//!    one to check sees the other, so at worst both refuse, and never both run sharing.
//!
//! A refusal comes back as EADDRINUSE; [`holder`] then says, best effort and within a bounded
//! scan, which process listens there.

use std::io::{self, BufRead};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

/// Backlog asked of the kernel (capped by net.core.somaxconn).
pub const LISTEN_BACKLOG: i32 = 65_535;
/// Most bytes read from one `/proc/net/tcp*` file (a few hundred thousand sockets).
pub const PROC_NET_MAX_BYTES: u64 = 64 << 20;
/// Most processes and descriptors [`holder`] looks at, and how long it may take.
pub const HOLDER_MAX_PROCS: usize = 65_536;
pub const HOLDER_MAX_FDS: usize = 1_000_000;
/// Only an error path waits for it; a loaded machine with tens of thousands of descriptors
/// open can need more than half a second to read every link.
pub const HOLDER_BUDGET: Duration = Duration::from_secs(2);

/// Whether other processes may listen on a group's address too.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sharing {
    /// Refuse to start when another process listens there (the default).
    #[default]
    Exclusive,
    /// Join whatever listens there with SO_REUSEPORT (same user): the kernel spreads new
    /// connections over every process (`--reuse-port`, `reuse_port = true`).
    ReusePort,
}

impl Sharing {
    pub fn from_flag(reuse_port: bool) -> Sharing {
        if reuse_port {
            Sharing::ReusePort
        } else {
            Sharing::Exclusive
        }
    }
}

/// Binds `count` non-blocking SO_REUSEPORT listeners on `addr`, exclusively. Port 0 is
/// resolved by the first bind and reused for the rest, so all of them share one ephemeral port.
pub fn reuseport_group(addr: SocketAddr, count: usize, backlog: i32) -> io::Result<(SocketAddr, Vec<TcpListener>)> {
    group(addr, count, backlog, &ListenTuning::default(), Sharing::Exclusive)
}

/// Options set on each listener *before* `listen()`, so every accepted socket inherits them from
/// its first packet: SO_RCVBUF fixes the window scale the SYN-ACK advertises (setting it after
/// the handshake cannot raise the scale), and TCP_MAXSEG is the MSS the SYN-ACK announces.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListenTuning {
    pub rcvbuf: Option<usize>,
    pub mss: Option<u32>,
}

/// [`reuseport_group`] with [`ListenTuning`] applied to every listener before `listen()`, and
/// the [`Sharing`] rule of the module docs. A refusal is an EADDRINUSE error.
pub fn group(
    addr: SocketAddr,
    count: usize,
    backlog: i32,
    tuning: &ListenTuning,
    sharing: Sharing,
) -> io::Result<(SocketAddr, Vec<TcpListener>)> {
    if sharing == Sharing::Exclusive && addr.port() != 0 {
        drop(probe(addr)?);
    }
    let mut out = Vec::with_capacity(count.max(1));
    let mut bound = addr;
    for _ in 0..count.max(1) {
        let l = bind_one(bound, backlog, tuning)?;
        bound = l.local_addr()?;
        out.push(l);
    }
    if sharing == Sharing::Exclusive {
        check_alone(bound, &out)?;
    }
    Ok((bound, out))
}

/// EADDRINUSE if a socket other than `ours` listens on `bound` (step 3 of the module docs).
fn check_alone(bound: SocketAddr, ours: &[TcpListener]) -> io::Result<()> {
    let inodes: Vec<u64> = ours.iter().filter_map(|l| socket_inode(l.as_raw_fd())).collect();
    // Without /proc (or our own inodes) there is nothing to compare: the probe stands.
    if inodes.len() != ours.len() {
        return Ok(());
    }
    match proc_listeners(bound.port()).into_iter().find(|l| {
        l.addr.is_ipv4() == bound.is_ipv4() && overlaps(l.addr.ip(), bound.ip()) && !inodes.contains(&l.inode)
    }) {
        Some(other) => {
            log::debug!("bind {bound}: another listening socket (inode {}) on {}", other.inode, other.addr);
            Err(io::Error::from_raw_os_error(libc::EADDRINUSE))
        }
        None => Ok(()),
    }
}

/// A bound, non-listening socket without SO_REUSEPORT: the kernel's own answer to "does anyone
/// listen here?". SO_REUSEADDR keeps TIME_WAIT leftovers of an earlier run from counting.
fn probe(addr: SocketAddr) -> io::Result<Socket> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.set_reuse_address(true)?;
    sock.bind(&addr.into())?;
    Ok(sock)
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

/// Whether two bound IPs of one family can receive the same connection.
fn overlaps(a: IpAddr, b: IpAddr) -> bool {
    a == b || a.is_unspecified() || b.is_unspecified()
}

/// The inode of socket descriptor `fd` (as `/proc/net/tcp` lists it).
fn socket_inode(fd: i32) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
    parse_socket_link(link.to_str()?)
}

fn parse_socket_link(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

/// A listening TCP socket from `/proc/net/tcp{,6}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcListener {
    pub addr: SocketAddr,
    pub uid: u32,
    pub inode: u64,
}

/// Listening sockets on `port` in this network namespace (empty when /proc cannot tell).
pub fn proc_listeners(port: u16) -> Vec<ProcListener> {
    let mut out = Vec::new();
    for path in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(f) = std::fs::File::open(path) else { continue };
        let r = io::BufReader::new(io::Read::take(f, PROC_NET_MAX_BYTES));
        for line in r.lines().skip(1) {
            let Ok(line) = line else { break };
            if let Some(l) = parse_proc_line(&line).filter(|l| l.addr.port() == port) {
                out.push(l);
            }
        }
    }
    out
}

/// One `/proc/net/tcp*` row, if it is a listening socket:
/// `sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...`, addresses as the kernel's
/// in-memory words in hex (so `to_ne_bytes` gives network order) and the port in host order.
fn parse_proc_line(line: &str) -> Option<ProcListener> {
    let f: Vec<&str> = line.split_whitespace().take(10).collect();
    if f.len() < 10 || f[3] != "0A" {
        return None;
    }
    let (ip, port) = f[1].split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(u32::from_str_radix(ip, 16).ok()?.to_ne_bytes())),
        32 => {
            let mut b = [0u8; 16];
            for (i, chunk) in b.chunks_mut(4).enumerate() {
                let w = u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16).ok()?;
                chunk.copy_from_slice(&w.to_ne_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return None,
    };
    Some(ProcListener { addr: SocketAddr::new(ip, port), uid: f[7].parse().ok()?, inode: f[9].parse().ok()? })
}

/// Says what listens on `addr`, for an EADDRINUSE message: `pid 1234 (netforge)`, or the
/// socket's owner uid when the process is not visible. Best effort: `None` when /proc cannot
/// tell; the scan of `/proc/*/fd` is bounded by [`HOLDER_MAX_PROCS`], [`HOLDER_MAX_FDS`] and
/// [`HOLDER_BUDGET`].
pub fn holder(addr: SocketAddr) -> Option<String> {
    let found = proc_listeners(addr.port());
    // Same family first; a dual-stack [::] socket also takes IPv4 connections.
    let l = found
        .iter()
        .find(|l| l.addr.is_ipv4() == addr.is_ipv4() && overlaps(l.addr.ip(), addr.ip()))
        .or_else(|| found.iter().find(|l| l.addr.ip().is_unspecified()))?;
    let who = match find_pid(l.inode) {
        Found::Pid(pid) if pid == std::process::id() => "this process".to_string(),
        Found::Pid(pid) => {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            format!("pid {pid} ({})", comm.trim())
        }
        Found::NotVisible => format!("a process of uid {} not visible to this user", l.uid),
        Found::CutShort => format!("a process of uid {} (the search of /proc for its pid was cut short)", l.uid),
    };
    Some(format!("{who} listens on {}", l.addr))
}

/// What the scan of `/proc/*/fd` for a socket inode found.
#[derive(Debug, PartialEq, Eq)]
enum Found {
    Pid(u32),
    /// Every process this user may look at was searched: the holder is not among them.
    NotVisible,
    /// A bound ran out first: the holder may well be visible, it was not reached.
    CutShort,
}

fn find_pid(inode: u64) -> Found {
    find_pid_within(inode, HOLDER_BUDGET, HOLDER_MAX_FDS)
}

fn find_pid_within(inode: u64, budget: Duration, max_fds: usize) -> Found {
    let deadline = Instant::now() + budget;
    let mut fds = 0usize;
    let Ok(procs) = std::fs::read_dir("/proc") else { return Found::NotVisible };
    for (n, entry) in procs.flatten().enumerate() {
        if n >= HOLDER_MAX_PROCS {
            return Found::CutShort;
        }
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { continue };
        for fd in dir.flatten() {
            fds += 1;
            if fds > max_fds || Instant::now() > deadline {
                return Found::CutShort;
            }
            let link = std::fs::read_link(fd.path()).ok();
            if link.as_ref().and_then(|l| l.to_str()).and_then(parse_socket_link) == Some(inode) {
                return Found::Pid(pid);
            }
        }
    }
    Found::NotVisible
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

    #[test]
    fn an_address_another_group_listens_on_is_refused_unless_shared() {
        let (addr, _first) = reuseport_group("127.0.0.1:0".parse().unwrap(), 2, 16).unwrap();
        let e = group(addr, 2, 16, &ListenTuning::default(), Sharing::Exclusive).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        // The wildcard address overlaps 127.0.0.1.
        let any = SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), addr.port());
        assert_eq!(
            group(any, 1, 16, &ListenTuning::default(), Sharing::Exclusive).unwrap_err().kind(),
            io::ErrorKind::AddrInUse
        );
        let (again, shared) = group(addr, 2, 16, &ListenTuning::default(), Sharing::ReusePort).unwrap();
        assert_eq!((again, shared.len()), (addr, 2));
        let who = holder(addr).expect("/proc names the listener");
        assert!(who.starts_with("this process listens on 127.0.0.1:"), "{who}");
    }

    #[test]
    fn a_group_that_joined_after_the_probe_is_found() {
        // Two groups sharing by SO_REUSEPORT, as when a second process binds between the
        // first one's probe and its group: each finds the other.
        let (addr, a) =
            group("127.0.0.1:0".parse().unwrap(), 2, 16, &ListenTuning::default(), Sharing::ReusePort).unwrap();
        check_alone(addr, &a).unwrap();
        let (_, b) = group(addr, 1, 16, &ListenTuning::default(), Sharing::ReusePort).unwrap();
        assert_eq!(check_alone(addr, &a).unwrap_err().kind(), io::ErrorKind::AddrInUse);
        assert_eq!(check_alone(addr, &b).unwrap_err().kind(), io::ErrorKind::AddrInUse);
        drop(b);
        check_alone(addr, &a).unwrap();
    }

    #[test]
    fn a_plain_listener_is_refused_too() {
        let plain = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = plain.local_addr().unwrap();
        assert_eq!(reuseport_group(addr, 2, 16).unwrap_err().kind(), io::ErrorKind::AddrInUse);
        assert_eq!(
            group(addr, 2, 16, &ListenTuning::default(), Sharing::ReusePort).unwrap_err().kind(),
            io::ErrorKind::AddrInUse
        );
    }

    #[test]
    fn a_scan_that_runs_out_of_its_bounds_says_so_instead_of_not_visible() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let inode = socket_inode(std::os::fd::AsRawFd::as_raw_fd(&l)).expect("a socket inode");
        assert_eq!(find_pid_within(inode, Duration::from_secs(10), HOLDER_MAX_FDS), Found::Pid(std::process::id()));
        assert_eq!(find_pid_within(inode, Duration::from_secs(10), 0), Found::CutShort);
        assert_eq!(find_pid_within(inode, Duration::ZERO, HOLDER_MAX_FDS), Found::CutShort);
        // No descriptor has inode 0: every process searched, none holds it.
        assert_eq!(find_pid_within(0, Duration::from_secs(10), HOLDER_MAX_FDS), Found::NotVisible);
    }

    #[test]
    fn proc_rows_parse() {
        let v4 = "   1: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 424242 1 0000000000000000 100 0 0 10 0";
        assert_eq!(
            parse_proc_line(v4),
            Some(ProcListener { addr: "127.0.0.1:8080".parse().unwrap(), uid: 1000, inode: 424242 })
        );
        let v6 = "   0: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 7 1 0000000000000000 100 0 0 10 0";
        assert_eq!(parse_proc_line(v6).map(|l| l.addr), Some("[::1]:80".parse().unwrap()));
        let established = v4.replace(" 0A ", " 01 ");
        assert_eq!(parse_proc_line(&established), None);
        assert_eq!(parse_proc_line("garbage"), None);
        assert_eq!(parse_socket_link("socket:[99]"), Some(99));
        assert_eq!(parse_socket_link("pipe:[99]"), None);
    }
}
