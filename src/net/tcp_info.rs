//! Kernel socket introspection for the backpressure lab: `TCP_INFO`, the unread and unsent queue
//! sizes (`SIOCINQ`, `SIOCOUTQ`) and the few socket options std and socket2 do not offer.
//!
//! One of the three modules with `unsafe` code (with `sys.rs` and `splice.rs`). Every unsafe
//! block is one libc call, with a `// SAFETY:` note, on a descriptor the caller lends as a
//! `BorrowedFd` (so it stays open for the call) and a buffer we own and size correctly.
//!
//! Why these numbers matter for flow control (see `backpressure`):
//! - the *receiver's* `inq` grows while the application does not read; when it reaches the
//!   receive buffer, the receiver advertises a zero window (`rcv_wnd == 0`);
//! - the *sender's* `snd_wnd` is the window the peer last advertised; at 0 the sender stops
//!   transmitting and sends window probes with exponential backoff (`backoff`, `probes`);
//! - the sender's `outq` (unacked + unsent) then fills its send buffer and `write` returns
//!   `EAGAIN`: that is backpressure arriving at the producer.
//!
//! `struct tcp_info` only ever grows at its end, so an older kernel returns a shorter struct: a
//! field is `Some` only if the length the kernel returned covers it. On non-Linux targets every
//! function returns `io::ErrorKind::Unsupported`.

use std::io;

use std::os::fd::BorrowedFd;

/// Size of the buffer handed to `getsockopt(TCP_INFO)`; larger than any 6.x `struct tcp_info`
/// the fields below need (the kernel copies `min(len, sizeof)` and reports the length).
pub const TCP_INFO_BUF_LEN: usize = 256;

/// `tcpi_state` value of an established connection (`TCP_ESTABLISHED` in the kernel).
#[cfg(test)]
pub const TCP_ESTABLISHED: u8 = 1;

/// `IP_BIND_ADDRESS_NO_PORT` (Linux ≥ 4.2): defer the source-port choice from `bind` to
/// `connect`, so many outgoing connections can share one source address.
pub const IP_BIND_ADDRESS_NO_PORT: i32 = 24;

/// `IP_LOCAL_PORT_RANGE` (Linux ≥ 6.3): this socket's own slice of `ip_local_port_range`, as
/// `lo | hi << 16`, for the port `connect` (or a port-less `bind`) picks.
pub const IP_LOCAL_PORT_RANGE: i32 = 51;

// Byte offsets of the fields we read in the kernel's `struct tcp_info` (include/uapi/linux/tcp.h).
const OFF_STATE: usize = 0;
const OFF_RETRANSMITS: usize = 2;
const OFF_PROBES: usize = 3;
const OFF_BACKOFF: usize = 4;
const OFF_RTO: usize = 8;
const OFF_SND_MSS: usize = 16;
const OFF_UNACKED: usize = 24;
const OFF_RTT: usize = 68;
const OFF_SND_CWND: usize = 80;
const OFF_TOTAL_RETRANS: usize = 100;
const OFF_BYTES_ACKED: usize = 120;
const OFF_BYTES_RECEIVED: usize = 128;
const OFF_NOTSENT_BYTES: usize = 144;
const OFF_BUSY_TIME: usize = 168;
const OFF_RWND_LIMITED: usize = 176;
const OFF_SND_WND: usize = 228;
const OFF_RCV_WND: usize = 232;

/// The shortest `struct tcp_info` we accept: everything up to and including `tcpi_snd_cwnd`
/// (present since Linux 2.6).
pub const TCP_INFO_MIN_LEN: usize = OFF_SND_CWND + 4;

/// The subset of `struct tcp_info` the lab shows. Optional fields are `None` when the running
/// kernel's struct is too short to contain them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpInfo {
    /// `tcpi_state`: 1 = ESTABLISHED (`TCP_ESTABLISHED` in the kernel).
    pub state: u8,
    /// `tcpi_retransmits`: retransmissions of the oldest unacknowledged segment since it was
    /// last acknowledged (0 again once an ACK arrives).
    pub retransmits: u8,
    /// Unanswered zero-window probes (or keepalives) sent.
    pub probes: u8,
    /// Exponential backoff of the retransmit / persist timer.
    pub backoff: u8,
    /// Smoothed round-trip time, µs.
    pub rtt_us: u32,
    /// The retransmission timeout now, µs.
    pub rto_us: u32,
    /// Segments sent and not yet acknowledged (`tcpi_unacked`).
    pub unacked: u32,
    /// Sender maximum segment size, bytes.
    pub snd_mss: u32,
    /// Congestion window, segments.
    pub snd_cwnd: u32,
    /// Segments retransmitted over the connection's life (`tcpi_total_retrans`, Linux 2.6.33+).
    pub total_retrans: Option<u32>,
    /// Bytes written by the application but not yet sent (Linux 4.6+).
    pub notsent_bytes: Option<u32>,
    /// Time with data in flight or queued, µs (Linux 4.10+).
    pub busy_time_us: Option<u64>,
    /// Time the sender was limited by the peer's receive window, µs (Linux 4.10+).
    pub rwnd_limited_us: Option<u64>,
    /// Bytes acknowledged by the peer (Linux 4.1+).
    pub bytes_acked: Option<u64>,
    /// Bytes received from the peer, read or not (Linux 4.1+).
    pub bytes_received: Option<u64>,
    /// The window the peer last advertised to us, bytes (Linux 5.4+). 0 = zero window.
    pub snd_wnd: Option<u32>,
    /// The window we last advertised to the peer, bytes (Linux 6.2+).
    pub rcv_wnd: Option<u32>,
}

fn field<const N: usize>(buf: &[u8], off: usize) -> Option<[u8; N]> {
    buf.get(off..off.checked_add(N)?)?.try_into().ok()
}

fn u8_at(buf: &[u8], off: usize) -> Option<u8> {
    buf.get(off).copied()
}

fn u32_at(buf: &[u8], off: usize) -> Option<u32> {
    field::<4>(buf, off).map(u32::from_ne_bytes)
}

fn u64_at(buf: &[u8], off: usize) -> Option<u64> {
    field::<8>(buf, off).map(u64::from_ne_bytes)
}

/// Decodes the first `buf.len()` bytes the kernel returned for `TCP_INFO`. Fields the buffer
/// does not cover are `None` (optional fields) or 0 (the always-present ones, for a buffer
/// shorter than [`TCP_INFO_MIN_LEN`], which [`tcp_info`] refuses before calling this).
pub fn parse(buf: &[u8]) -> TcpInfo {
    TcpInfo {
        state: u8_at(buf, OFF_STATE).unwrap_or(0),
        retransmits: u8_at(buf, OFF_RETRANSMITS).unwrap_or(0),
        probes: u8_at(buf, OFF_PROBES).unwrap_or(0),
        backoff: u8_at(buf, OFF_BACKOFF).unwrap_or(0),
        rtt_us: u32_at(buf, OFF_RTT).unwrap_or(0),
        rto_us: u32_at(buf, OFF_RTO).unwrap_or(0),
        unacked: u32_at(buf, OFF_UNACKED).unwrap_or(0),
        total_retrans: u32_at(buf, OFF_TOTAL_RETRANS),
        snd_mss: u32_at(buf, OFF_SND_MSS).unwrap_or(0),
        snd_cwnd: u32_at(buf, OFF_SND_CWND).unwrap_or(0),
        notsent_bytes: u32_at(buf, OFF_NOTSENT_BYTES),
        busy_time_us: u64_at(buf, OFF_BUSY_TIME),
        rwnd_limited_us: u64_at(buf, OFF_RWND_LIMITED),
        bytes_acked: u64_at(buf, OFF_BYTES_ACKED),
        bytes_received: u64_at(buf, OFF_BYTES_RECEIVED),
        snd_wnd: u32_at(buf, OFF_SND_WND),
        rcv_wnd: u32_at(buf, OFF_RCV_WND),
    }
}

/// Human name of a `tcpi_state` value (for logs and the live view).
#[cfg(test)]
pub fn state_name(state: u8) -> &'static str {
    match state {
        1 => "ESTABLISHED",
        2 => "SYN_SENT",
        3 => "SYN_RECV",
        4 => "FIN_WAIT1",
        5 => "FIN_WAIT2",
        6 => "TIME_WAIT",
        7 => "CLOSE",
        8 => "CLOSE_WAIT",
        9 => "LAST_ACK",
        10 => "LISTEN",
        11 => "CLOSING",
        _ => "UNKNOWN",
    }
}

/// Reads `TCP_INFO` for the TCP socket `fd`.
pub fn tcp_info(fd: BorrowedFd<'_>) -> io::Result<TcpInfo> {
    sys::tcp_info(fd)
}

/// Bytes received and not yet read by the application (`SIOCINQ`, a.k.a. `FIONREAD`).
pub fn inq(fd: BorrowedFd<'_>) -> io::Result<u32> {
    sys::inq(fd)
}

/// Bytes in the send queue: written by the application and not yet acknowledged by the peer,
/// sent or not (`SIOCOUTQ`, a.k.a. `TIOCOUTQ`).
pub fn outq(fd: BorrowedFd<'_>) -> io::Result<u32> {
    sys::outq(fd)
}

/// Sets `TCP_NOTSENT_LOWAT`: the socket reports writable only while fewer than `bytes` are
/// unsent, which keeps the queue of stale data in the kernel small.
pub fn set_notsent_lowat(fd: BorrowedFd<'_>, bytes: u32) -> io::Result<()> {
    let value =
        i32::try_from(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "notsent_lowat too large"))?;
    sys::set_int(fd, Opt::NotsentLowat, value)
}

/// Reads back `TCP_NOTSENT_LOWAT` (the kernel's default is "unlimited", `u32::MAX`).
#[cfg(test)]
pub fn notsent_lowat(fd: BorrowedFd<'_>) -> io::Result<u32> {
    // The kernel stores it as an unsigned int and returns it bit for bit.
    sys::get_int(fd, Opt::NotsentLowat).map(|v| v as u32)
}

/// Sets `IP_BIND_ADDRESS_NO_PORT` (see [`IP_BIND_ADDRESS_NO_PORT`]); call before `bind`.
pub fn set_bind_address_no_port(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    sys::set_int(fd, Opt::BindAddressNoPort, i32::from(on))
}

/// Sets `IP_LOCAL_PORT_RANGE` to `lo..=hi`: the kernel then searches only those ports for this
/// socket, one after another (without the option it tries the even ports of the whole range
/// first). Fails with `ENOPROTOOPT` before Linux 6.3.
pub fn set_local_port_range(fd: BorrowedFd<'_>, lo: u16, hi: u16) -> io::Result<()> {
    sys::set_int(fd, Opt::LocalPortRange, (u32::from(lo) | u32::from(hi) << 16) as i32)
}

/// Sets `TCP_QUICKACK`: acknowledge at once instead of delaying ACKs (the kernel clears it
/// again on its own, so callers re-arm it after reads when they need it).
pub fn set_quickack(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    sys::set_int(fd, Opt::QuickAck, i32::from(on))
}

/// The integer socket options this module sets or reads.
#[derive(Clone, Copy)]
enum Opt {
    NotsentLowat,
    BindAddressNoPort,
    LocalPortRange,
    QuickAck,
}

#[cfg(target_os = "linux")]
mod sys {
    use super::{parse, Opt, TcpInfo, TCP_INFO_BUF_LEN, TCP_INFO_MIN_LEN};
    use std::io;
    use std::mem::size_of;
    use std::os::fd::{AsRawFd, BorrowedFd};

    impl Opt {
        fn level_name(self) -> (libc::c_int, libc::c_int) {
            match self {
                Opt::NotsentLowat => (libc::IPPROTO_TCP, libc::TCP_NOTSENT_LOWAT),
                Opt::BindAddressNoPort => (libc::IPPROTO_IP, super::IP_BIND_ADDRESS_NO_PORT),
                Opt::LocalPortRange => (libc::IPPROTO_IP, super::IP_LOCAL_PORT_RANGE),
                Opt::QuickAck => (libc::IPPROTO_TCP, libc::TCP_QUICKACK),
            }
        }
    }

    /// 8-byte aligned so the kernel's u64 fields never straddle an odd address (we decode
    /// with `from_ne_bytes` anyway, so alignment is belt and braces).
    #[repr(C, align(8))]
    struct InfoBuf([u8; TCP_INFO_BUF_LEN]);

    pub fn tcp_info(fd: BorrowedFd<'_>) -> io::Result<TcpInfo> {
        let mut buf = InfoBuf([0u8; TCP_INFO_BUF_LEN]);
        let mut len = TCP_INFO_BUF_LEN as libc::socklen_t;
        // SAFETY: `buf` is a live, writable TCP_INFO_BUF_LEN-byte buffer and `len` holds exactly
        // that size, so the kernel writes at most `len` bytes into it and stores the length it
        // wrote back into `len`. An invalid or non-TCP `fd` makes the call fail with -1/errno.
        let rc = unsafe {
            libc::getsockopt(fd.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_INFO, buf.0.as_mut_ptr().cast(), &mut len)
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        let len = (len as usize).min(TCP_INFO_BUF_LEN);
        if len < TCP_INFO_MIN_LEN {
            return Err(io::Error::new(io::ErrorKind::Unsupported, format!("TCP_INFO returned only {len} bytes")));
        }
        Ok(parse(&buf.0[..len]))
    }

    fn ioctl_int(fd: BorrowedFd<'_>, request: libc::Ioctl) -> io::Result<u32> {
        let mut value: libc::c_int = 0;
        // SAFETY: SIOCINQ and SIOCOUTQ take a pointer to one `int` which the kernel fills;
        // `value` is a live, writable c_int for the duration of the call.
        let rc = unsafe { libc::ioctl(fd.as_raw_fd(), request, &mut value as *mut libc::c_int) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // Queue sizes are never negative; clamp rather than trust it blindly.
        Ok(value.max(0) as u32)
    }

    pub fn inq(fd: BorrowedFd<'_>) -> io::Result<u32> {
        ioctl_int(fd, libc::FIONREAD)
    }

    pub fn outq(fd: BorrowedFd<'_>) -> io::Result<u32> {
        ioctl_int(fd, libc::TIOCOUTQ)
    }

    pub fn set_int(fd: BorrowedFd<'_>, opt: Opt, value: i32) -> io::Result<()> {
        let (level, name) = opt.level_name();
        let value: libc::c_int = value;
        // SAFETY: `value` is a live c_int and the length passed is exactly its size; the kernel
        // only reads from the pointer.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                level,
                name,
                (&value as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    #[cfg(test)]
    pub fn get_int(fd: BorrowedFd<'_>, opt: Opt) -> io::Result<i32> {
        let (level, name) = opt.level_name();
        let mut value: libc::c_int = 0;
        let mut len = size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `value` is a live, writable c_int and `len` is its exact size, so the kernel
        // writes at most that many bytes and reports the length in `len`.
        let rc =
            unsafe { libc::getsockopt(fd.as_raw_fd(), level, name, (&mut value as *mut libc::c_int).cast(), &mut len) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(value)
    }
}

#[cfg(not(target_os = "linux"))]
mod sys {
    use super::{Opt, TcpInfo};
    use std::io;
    use std::os::fd::BorrowedFd;

    fn unsupported<T>() -> io::Result<T> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "TCP introspection needs Linux"))
    }

    pub fn tcp_info(_fd: BorrowedFd<'_>) -> io::Result<TcpInfo> {
        unsupported()
    }

    pub fn inq(_fd: BorrowedFd<'_>) -> io::Result<u32> {
        unsupported()
    }

    pub fn outq(_fd: BorrowedFd<'_>) -> io::Result<u32> {
        unsupported()
    }

    pub fn set_int(_fd: BorrowedFd<'_>, _opt: Opt, _value: i32) -> io::Result<()> {
        unsupported()
    }

    #[cfg(test)]
    pub fn get_int(_fd: BorrowedFd<'_>, _opt: Opt) -> io::Result<i32> {
        unsupported()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic `struct tcp_info` with a distinct value in every field we decode.
    fn synthetic() -> [u8; TCP_INFO_BUF_LEN] {
        let mut b = [0u8; TCP_INFO_BUF_LEN];
        b[OFF_STATE] = 1;
        b[OFF_RETRANSMITS] = 2;
        b[OFF_PROBES] = 3;
        b[OFF_RTO..OFF_RTO + 4].copy_from_slice(&204_000u32.to_ne_bytes());
        b[OFF_UNACKED..OFF_UNACKED + 4].copy_from_slice(&1u32.to_ne_bytes());
        b[OFF_TOTAL_RETRANS..OFF_TOTAL_RETRANS + 4].copy_from_slice(&6u32.to_ne_bytes());
        b[OFF_BACKOFF] = 5;
        b[OFF_SND_MSS..OFF_SND_MSS + 4].copy_from_slice(&1460u32.to_ne_bytes());
        b[OFF_RTT..OFF_RTT + 4].copy_from_slice(&250u32.to_ne_bytes());
        b[OFF_SND_CWND..OFF_SND_CWND + 4].copy_from_slice(&10u32.to_ne_bytes());
        b[OFF_BYTES_ACKED..OFF_BYTES_ACKED + 8].copy_from_slice(&(5u64 << 32).to_ne_bytes());
        b[OFF_BYTES_RECEIVED..OFF_BYTES_RECEIVED + 8].copy_from_slice(&77u64.to_ne_bytes());
        b[OFF_NOTSENT_BYTES..OFF_NOTSENT_BYTES + 4].copy_from_slice(&4096u32.to_ne_bytes());
        b[OFF_BUSY_TIME..OFF_BUSY_TIME + 8].copy_from_slice(&1_000_000u64.to_ne_bytes());
        b[OFF_RWND_LIMITED..OFF_RWND_LIMITED + 8].copy_from_slice(&600_000u64.to_ne_bytes());
        b[OFF_SND_WND..OFF_SND_WND + 4].copy_from_slice(&0u32.to_ne_bytes());
        b[OFF_RCV_WND..OFF_RCV_WND + 4].copy_from_slice(&65535u32.to_ne_bytes());
        b
    }

    #[test]
    fn parse_full_struct() {
        let info = parse(&synthetic());
        assert_eq!(
            info,
            TcpInfo {
                state: 1,
                retransmits: 2,
                probes: 3,
                backoff: 5,
                rtt_us: 250,
                rto_us: 204_000,
                unacked: 1,
                total_retrans: Some(6),
                snd_mss: 1460,
                snd_cwnd: 10,
                notsent_bytes: Some(4096),
                busy_time_us: Some(1_000_000),
                rwnd_limited_us: Some(600_000),
                bytes_acked: Some(5 << 32),
                bytes_received: Some(77),
                snd_wnd: Some(0),
                rcv_wnd: Some(65535),
            }
        );
    }

    #[test]
    fn parse_respects_returned_length() {
        let full = synthetic();
        // (returned length, which optional fields must be present), oldest kernels first.
        type Present = (bool, bool, bool, bool, bool);
        let cases: [(usize, Present); 8] = [
            (TCP_INFO_MIN_LEN, (false, false, false, false, false)),
            (104, (false, false, false, false, false)), // 3.x: ends at total_retrans
            (136, (true, false, false, false, false)),  // bytes_acked/received (4.1)
            (160, (true, true, false, false, false)),   // notsent_bytes (4.6)
            (184, (true, true, true, false, false)),    // busy/rwnd_limited (4.10)
            (232, (true, true, true, true, false)),     // snd_wnd (5.4)
            (236, (true, true, true, true, true)),      // rcv_wnd (6.2)
            (TCP_INFO_BUF_LEN, (true, true, true, true, true)),
        ];
        for (len, (acked, notsent, busy, snd_wnd, rcv_wnd)) in cases {
            let info = parse(&full[..len]);
            assert_eq!(info.state, 1, "len {len}");
            assert_eq!(info.snd_cwnd, 10, "len {len}");
            assert_eq!((info.retransmits, info.unacked, info.rto_us), (2, 1, 204_000), "len {len}");
            assert_eq!(info.total_retrans.is_some(), len >= 104, "len {len}");
            assert_eq!(info.bytes_acked.is_some(), acked, "len {len}");
            assert_eq!(info.bytes_received.is_some(), acked, "len {len}");
            assert_eq!(info.notsent_bytes.is_some(), notsent, "len {len}");
            assert_eq!(info.busy_time_us.is_some(), busy, "len {len}");
            assert_eq!(info.rwnd_limited_us.is_some(), busy, "len {len}");
            assert_eq!(info.snd_wnd.is_some(), snd_wnd, "len {len}");
            assert_eq!(info.rcv_wnd.is_some(), rcv_wnd, "len {len}");
        }
        // A field cut in half is absent, not half-read.
        assert_eq!(parse(&full[..OFF_RCV_WND + 2]).rcv_wnd, None);
        assert_eq!(parse(&[]), TcpInfo::default());
    }

    #[test]
    fn state_names() {
        assert_eq!(state_name(TCP_ESTABLISHED), "ESTABLISHED");
        assert_eq!(state_name(8), "CLOSE_WAIT");
        assert_eq!(state_name(200), "UNKNOWN");
    }

    #[cfg(target_os = "linux")]
    mod linux {
        use super::super::*;
        use std::io::{Read, Write};
        use std::net::{SocketAddr, TcpListener, TcpStream};
        use std::os::fd::AsFd;
        use std::time::{Duration, Instant};

        const DEADLINE: Duration = Duration::from_secs(2);
        const IO_TIMEOUT: Duration = Duration::from_secs(2);

        /// Polls `cond` every millisecond until it holds or the deadline passes; returns the
        /// last value seen so a failing assertion can show it.
        fn eventually<T>(mut probe: impl FnMut() -> T, cond: impl Fn(&T) -> bool) -> T {
            let end = Instant::now() + DEADLINE;
            loop {
                let value = probe();
                if cond(&value) || Instant::now() >= end {
                    return value;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }

        /// A connected loopback pair (client, accepted server side), both with I/O timeouts.
        fn pair_from(listener: &TcpListener) -> (TcpStream, TcpStream) {
            let addr = listener.local_addr().unwrap();
            let client = TcpStream::connect(addr).unwrap();
            let (server, _) = listener.accept().unwrap();
            for s in [&client, &server] {
                s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
            }
            (client, server)
        }

        fn pair() -> (TcpStream, TcpStream) {
            pair_from(&TcpListener::bind("127.0.0.1:0").unwrap())
        }

        #[test]
        fn inq_and_outq_count_unread_bytes() {
            let (mut client, server) = pair();
            const N: usize = 10_000;
            client.write_all(&[7u8; N]).unwrap();
            let unread = eventually(|| inq(server.as_fd()).unwrap(), |&n| n as usize == N);
            assert_eq!(unread as usize, N, "peer's unread queue");
            // Loopback ACKs at once: everything written is acknowledged, nothing queued.
            let queued = eventually(|| outq(client.as_fd()).unwrap(), |&n| n == 0);
            assert_eq!(queued, 0, "sender's unacked+unsent queue");
            assert_eq!(inq(client.as_fd()).unwrap(), 0);
        }

        #[test]
        fn tcp_info_on_established_socket() {
            let (mut client, mut server) = pair();
            let info = tcp_info(client.as_fd()).unwrap();
            assert_eq!(info.state, TCP_ESTABLISHED);
            assert!(info.snd_mss > 0 && info.snd_cwnd > 0, "{info:?}");
            // Every field of a 6.x kernel is present.
            assert!(info.rcv_wnd.is_some() && info.snd_wnd.is_some() && info.busy_time_us.is_some(), "{info:?}");
            // The counters include the SYN's sequence number on some paths, so compare deltas.
            let acked0 = info.bytes_acked.unwrap();
            let received0 = tcp_info(server.as_fd()).unwrap().bytes_received.unwrap();
            client.write_all(b"ping").unwrap();
            let mut got = [0u8; 4];
            server.read_exact(&mut got).unwrap();
            let acked = eventually(|| tcp_info(client.as_fd()).unwrap().bytes_acked, |a| *a == Some(acked0 + 4));
            assert_eq!(acked, Some(acked0 + 4));
            assert_eq!(tcp_info(server.as_fd()).unwrap().bytes_received, Some(received0 + 4));
        }

        #[test]
        fn bad_descriptor_is_an_error_not_a_crash() {
            // A `BorrowedFd` is always open, so the bad descriptor is one that is no socket.
            let null = std::fs::File::open("/dev/null").unwrap();
            let fd = null.as_fd();
            assert!(tcp_info(fd).is_err());
            assert!(inq(fd).is_err());
            assert!(outq(fd).is_err());
            assert!(set_quickack(fd, true).is_err());
            // A UDP socket has no TCP_INFO.
            let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            assert!(tcp_info(udp.as_fd()).is_err());
        }

        #[test]
        fn socket_options_round_trip() {
            let (client, _server) = pair();
            let fd = client.as_fd();
            set_notsent_lowat(fd, 16_384).unwrap();
            assert_eq!(notsent_lowat(fd).unwrap(), 16_384);
            set_quickack(fd, true).unwrap();
            let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            set_bind_address_no_port(sock.as_fd(), true).unwrap();
            assert_eq!(sys::get_int(sock.as_fd(), Opt::BindAddressNoPort).unwrap(), 1);
            set_bind_address_no_port(sock.as_fd(), false).unwrap();
            assert_eq!(sys::get_int(sock.as_fd(), Opt::BindAddressNoPort).unwrap(), 0);
            assert!(set_notsent_lowat(fd, u32::MAX).is_err());
        }

        /// The lab's premise, end to end in the kernel: a reader that never reads, behind a
        /// small receive buffer, makes the sender see a zero window and blocked writes.
        #[test]
        fn a_reader_that_stops_reading_closes_the_window() {
            use socket2::{Domain, Socket, Type};
            let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
            listener.set_recv_buffer_size(64 * 1024).unwrap(); // inherited by accepted sockets
            let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
            listener.bind(&addr.into()).unwrap();
            listener.listen(8).unwrap();
            let listener: TcpListener = listener.into();
            let (mut client, server) = pair_from(&listener);
            client.set_nonblocking(true).unwrap();

            let chunk = [0u8; 16 * 1024];
            let mut written = 0usize;
            let mut eagain = 0u32;
            let (info, eagain) = eventually(
                || {
                    // Push until the socket refuses; bounded by the deadline loop around us.
                    for _ in 0..64 {
                        match client.write(&chunk) {
                            Ok(n) => written += n,
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                                eagain += 1;
                                break;
                            }
                            Err(e) => panic!("write: {e}"),
                        }
                    }
                    (tcp_info(client.as_fd()).unwrap(), eagain)
                },
                |(i, eagain)| i.snd_wnd == Some(0) && *eagain > 0,
            );
            assert_eq!(info.snd_wnd, Some(0), "sender never saw a zero window: {info:?}, wrote {written}");
            assert!(eagain > 0, "writes never blocked after {written} bytes");
            let rcv = tcp_info(server.as_fd()).unwrap();
            assert_eq!(rcv.rcv_wnd, Some(0), "receiver did not advertise zero: {rcv:?}");
            // Every byte written is either unread at the peer or still queued here (a pending
            // delayed ACK can count a byte on both sides for a moment, hence the wait).
            let (unread, queued) = eventually(
                || (inq(server.as_fd()).unwrap() as usize, outq(client.as_fd()).unwrap() as usize),
                |&(u, q)| u + q == written,
            );
            assert!(unread > 0 && queued > 0, "unread {unread}, queued {queued}");
            assert_eq!(unread + queued, written);
        }
    }
}
