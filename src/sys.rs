//! What the OS says and does that std and socket2 do not cover: the open-file limit, signal
//! delivery to one thread, `IP_BIND_ADDRESS_NO_PORT`, CPU affinity, a nanosecond timer fd, and
//! the /proc facts the preflight reads.
//!
//! Every `unsafe` block here wraps one libc call on plain integers or on a zeroed, correctly
//! sized struct; each carries a SAFETY note.

use std::io;

/// Soft/hard `RLIMIT_NOFILE` before and after [`raise_nofile`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdLimit {
    pub before: u64,
    pub soft: u64,
    pub hard: u64,
}

/// Raises the soft open-file limit to the hard limit.
#[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every target
pub fn raise_nofile() -> io::Result<FdLimit> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is a valid, writable rlimit struct for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let before = lim.rlim_cur as u64;
    if lim.rlim_cur < lim.rlim_max {
        let want = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
        // SAFETY: `want` is a valid rlimit struct; setrlimit only reads it.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    Ok(FdLimit { before, soft: lim.rlim_cur as u64, hard: lim.rlim_max as u64 })
}

/// Descriptors a server keeps beside its connections (listeners, epoll, wakers, stdio, the
/// admin endpoint); default limits leave this many of the open-file limit free.
pub(crate) const FD_RESERVE: u64 = 64;

/// The soft open-file limit netforge runs with: raised to the hard limit first (as every role
/// does before it starts). Default connection limits derive from it, so that a default start
/// fits whatever limit the machine has.
pub(crate) fn open_file_limit() -> u64 {
    raise_nofile().map_or(u64::MAX, |l| l.soft)
}

/// Descriptor slots reserved up front at most ([`reserve_fd_table`]) for a role whose count is
/// only a ceiling (a server's connection limit): 131,072 slots are 1 MiB of kernel memory.
pub(crate) const FD_TABLE_CEILING: u64 = 1 << 17;

/// Grows the process's descriptor table to hold at least `want` descriptors (bounded by the
/// soft open-file limit); [`fd_table_size`] reads the size it has.
///
/// Linux grows the table by doubling as descriptors are opened, and in a process with more
/// than one thread each doubling waits for an RCU grace period (`synchronize_rcu` in
/// `expand_fdtable`) in the thread that opened the descriptor: 6-15 ms each on a 2-core VM,
/// at 256, 512, 1,024 ... open descriptors, during which that reactor serves nothing. Grown
/// once here, before any other thread starts, the table never doubles under load. Best effort:
/// an error leaves the table to grow as before.
pub(crate) fn reserve_fd_table(want: u64, limit: &FdLimit) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let top = want.min(limit.soft);
    if top > 64 {
        let target = libc::c_int::try_from(top - 1).unwrap_or(libc::c_int::MAX);
        let null = std::fs::File::open("/dev/null")?;
        // SAFETY: F_DUPFD_CLOEXEC on a descriptor this function owns; the copy it returns is
        // closed at once and never used.
        let copy = unsafe { libc::fcntl(null.as_raw_fd(), libc::F_DUPFD_CLOEXEC, target) };
        if copy < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `copy` is the descriptor fcntl just returned; nothing else holds it.
        unsafe { libc::close(copy) };
    }
    Ok(())
}

/// `FDSize` of /proc/self/status: the slots the descriptor table has now.
pub(crate) fn fd_table_size() -> io::Result<u64> {
    let text = std::fs::read_to_string("/proc/self/status")?;
    text.lines()
        .find_map(|l| l.strip_prefix("FDSize:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| io::Error::other("no FDSize line in /proc/self/status"))
}

/// Signals netforge handles. They are blocked in every thread and taken by one `sigwait` thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Signal {
    Interrupt,
    Terminate,
    Hangup,
    User1,
}

const HANDLED: [(libc::c_int, Signal); 4] = [
    (libc::SIGINT, Signal::Interrupt),
    (libc::SIGTERM, Signal::Terminate),
    (libc::SIGHUP, Signal::Hangup),
    (libc::SIGUSR1, Signal::User1),
];

/// Blocks SIGINT, SIGTERM, SIGHUP and SIGUSR1 in the calling thread (call it from `main` before
/// any other thread starts, so every thread inherits the mask) and starts a thread that
/// `sigwait`s for them and forwards each on the returned bounded channel. No handler runs in
/// signal context, and nothing polls.
pub(crate) fn route_signals() -> io::Result<crossbeam_channel::Receiver<Signal>> {
    // SAFETY: `set` is a zeroed sigset_t initialised by sigemptyset before use; the calls only
    // touch that struct and the thread's own mask.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for (sig, _) in HANDLED {
            libc::sigaddset(&mut set, sig);
        }
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        set
    };
    let (tx, rx) = crossbeam_channel::bounded(16);
    std::thread::Builder::new().name("signals".into()).spawn(move || loop {
        let mut sig: libc::c_int = 0;
        // SAFETY: `set` is the initialised set from above; `sig` is a valid out-pointer.
        let rc = unsafe { libc::sigwait(&set, &mut sig) };
        if rc != 0 {
            continue;
        }
        if let Some((_, s)) = HANDLED.iter().find(|(n, _)| *n == sig) {
            // Full queue: the coordinator has many unread signals already; dropping is fine.
            let _ = tx.try_send(*s);
        }
    })?;
    Ok(rx)
}

/// `net.ipv4.ip_local_port_range` as (low, high), if readable.
pub(crate) fn local_port_range() -> Option<(u32, u32)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut it = text.split_whitespace().map(|s| s.parse::<u32>());
    match (it.next(), it.next()) {
        (Some(Ok(lo)), Some(Ok(hi))) if hi >= lo => Some((lo, hi)),
        _ => None,
    }
}

/// `net.netfilter.nf_conntrack_max`, when conntrack is loaded.
pub(crate) fn conntrack_max() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_max").ok()?.trim().parse().ok()
}

/// (VmRSS, VmHWM) of this process in KiB.
pub(crate) fn rss_kib() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<u64> {
        text.lines().find(|l| l.starts_with(name))?.split_whitespace().nth(1)?.parse().ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Largest CPU number a `cpu_set_t` can name (`CPU_SETSIZE`).
pub(crate) const MAX_CPU: usize = 1023;

/// The CPUs the calling thread may run on (`sched_getaffinity`), ascending: the process's set
/// when called from a thread that was never pinned (netforge pins only reactor threads). A
/// cpuset of a container or a `taskset` shows here; a CPU quota (`--cpus`) does not. Hosts
/// with more than 1024 CPUs get EINVAL (a fixed `cpu_set_t`).
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: an all-zero cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a writable cpu_set_t of the size passed.
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: CPU_ISSET only reads `set`; every index is below CPU_SETSIZE.
    Ok((0..=MAX_CPU).filter(|&c| unsafe { libc::CPU_ISSET(c, &set) }).collect())
}

/// Pins the calling thread to one CPU.
pub fn pin_thread(cpu: usize) -> io::Result<()> {
    if cpu > MAX_CPU {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("CPU {cpu} is above {MAX_CPU}")));
    }
    // SAFETY: an all-zero cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes bit `cpu` of `set`, and `cpu` is below CPU_SETSIZE (checked above).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size passed; pid 0 is the calling thread.
    if unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `0-3,6`: a CPU list as the kernel writes one (`Cpus_allowed_list`), from any order.
pub fn format_cpus(cpus: &[usize]) -> String {
    let mut v = cpus.to_vec();
    v.sort_unstable();
    v.dedup();
    let mut out = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
            j += 1;
        }
        out.push(if j == i { v[i].to_string() } else { format!("{}-{}", v[i], v[j]) });
        i = j + 1;
    }
    out.join(",")
}

/// A non-blocking CLOCK_MONOTONIC timerfd: one wake-up at a nanosecond instant, readable in
/// epoll when it expires (epoll's own timeout moves in whole milliseconds, rounded up).
pub(crate) struct TimerFd {
    fd: std::os::fd::OwnedFd,
}

impl TimerFd {
    pub(crate) fn new() -> io::Result<TimerFd> {
        use std::os::fd::FromRawFd;
        // SAFETY: plain integer arguments; a valid descriptor or -1 comes back.
        let fd = unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned by nothing else.
        Ok(TimerFd { fd: unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) } })
    }

    pub(crate) fn raw(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.fd.as_raw_fd()
    }

    /// Fires once, `after` from now (at least 1 ns: zero would disarm it); `None` disarms.
    pub(crate) fn set(&self, after: Option<std::time::Duration>) -> io::Result<()> {
        let ts = |d: std::time::Duration| libc::timespec {
            tv_sec: d.as_secs().min(i32::MAX as u64) as libc::time_t,
            tv_nsec: d.subsec_nanos() as libc::c_long,
        };
        let value = after.map_or(ts(std::time::Duration::ZERO), |d| ts(d.max(std::time::Duration::from_nanos(1))));
        let spec = libc::itimerspec { it_interval: ts(std::time::Duration::ZERO), it_value: value };
        // SAFETY: `spec` is a valid itimerspec; the old value is not asked for (null).
        let rc = unsafe { libc::timerfd_settime(self.raw(), 0, &spec, std::ptr::null_mut()) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// `gethostname()`, or `"unknown"`.
pub(crate) fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&c| c == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).into_owned();
    if name.is_empty() {
        "unknown".into()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn timer_fd_gives_an_edge_per_expiry_without_being_read() {
        use mio::{unix::SourceFd, Events, Interest, Poll, Token};
        use std::time::{Duration, Instant};
        let t = TimerFd::new().unwrap();
        let mut poll = Poll::new().unwrap();
        poll.registry().register(&mut SourceFd(&t.raw()), Token(1), Interest::READABLE).unwrap();
        let mut events = Events::with_capacity(4);
        // Edge-triggered, never read: each expiry must still be an event of its own.
        for round in 0..3 {
            let at = Instant::now();
            t.set(Some(Duration::from_micros(300))).unwrap();
            let deadline = at + Duration::from_secs(5);
            loop {
                poll.poll(&mut events, Some(deadline.saturating_duration_since(Instant::now()))).unwrap();
                if events.iter().any(|e| e.token() == Token(1)) {
                    break;
                }
                assert!(Instant::now() < deadline, "round {round}: no edge for the expiry");
            }
            assert!(at.elapsed() >= Duration::from_micros(300), "round {round}: fired early");
        }
        // Re-arming resets the unread count: armed far out, the fd is not readable.
        t.set(Some(Duration::from_secs(60))).unwrap();
        let mut pfd = libc::pollfd { fd: t.raw(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        assert_eq!(unsafe { libc::poll(&mut pfd, 1, 20) }, 0);
        t.set(None).unwrap();
    }

    #[test]
    fn a_reserved_descriptor_table_holds_its_descriptors_without_growing() {
        let lim = raise_nofile().unwrap();
        let want = 12_000.min(lim.soft);
        // Another thread shares the table, as a role's reactors do.
        let (stop, parked) = crossbeam_channel::bounded::<()>(0);
        let other = std::thread::spawn(move || parked.recv());
        reserve_fd_table(want, &lim).unwrap();
        let size = fd_table_size().unwrap();
        assert!(size >= want, "table of {size} slots for {want}");
        // The slot used to grow the table is closed again: the next descriptor is a low one.
        let probe = std::fs::File::open("/dev/null").unwrap();
        assert!((probe.as_raw_fd() as u64) < want - 1, "fd {} kept the top slot", probe.as_raw_fd());
        let held: Vec<_> = (0..1000.min(want / 2)).map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
        assert_eq!(fd_table_size().unwrap(), size, "{} more descriptors grew the table", held.len());
        drop(stop);
        let _ = other.join();
        // Nothing to grow: a want of at most 64 slots, or a limit below the table it has.
        reserve_fd_table(10, &lim).unwrap();
        assert!(fd_table_size().unwrap() >= size);
        let tiny = FdLimit { before: 50, soft: 50, hard: 50 };
        reserve_fd_table(u64::MAX, &tiny).unwrap();
        assert!(fd_table_size().unwrap() >= size);
    }

    #[test]
    fn nofile_soft_reaches_hard() {
        let lim = raise_nofile().unwrap();
        assert_eq!(lim.soft, lim.hard);
        assert!(lim.before <= lim.soft);
    }

    #[test]
    fn proc_facts_parse_here() {
        if let Some((lo, hi)) = local_port_range() {
            assert!(lo <= hi);
        }
        let (rss, hwm) = rss_kib().unwrap();
        assert!(rss > 0 && hwm >= rss);
    }

    #[test]
    fn cpu_lists_are_written_as_ranges() {
        assert_eq!(format_cpus(&[]), "");
        assert_eq!(format_cpus(&[3]), "3");
        assert_eq!(format_cpus(&[0, 1, 2, 3]), "0-3");
        assert_eq!(format_cpus(&[6, 0, 2, 1, 1]), "0-2,6");
        assert_eq!(format_cpus(&[0, 2, 4, 5]), "0,2,4-5");
    }

    #[test]
    fn allowed_cpus_match_proc_and_a_pinned_thread_sees_one() {
        let all = allowed_cpus().unwrap();
        assert!(!all.is_empty());
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).unwrap();
        assert_eq!(format_cpus(&all), line.trim());
        let last = *all.last().unwrap();
        let seen = std::thread::spawn(move || {
            pin_thread(last).unwrap();
            allowed_cpus().unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(seen, vec![last]);
        assert!(pin_thread(MAX_CPU + 1).is_err());
        // The pin was the spawned thread's own: this one still has every CPU.
        assert_eq!(allowed_cpus().unwrap(), all);
    }
}
