//! What the OS says and does that std and socket2 do not cover: the open-file limit, signal
//! delivery to one thread, `IP_BIND_ADDRESS_NO_PORT`, and the /proc facts the preflight reads.
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

/// Sets the soft open-file limit (tests use it to provoke EMFILE in a child process).
#[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every target
pub fn set_nofile_soft(soft: u64) -> io::Result<()> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: as in `raise_nofile`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    lim.rlim_cur = soft.min(lim.rlim_max as u64) as libc::rlim_t;
    // SAFETY: as in `raise_nofile`.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Signals netforge handles. They are blocked in every thread and taken by one `sigwait` thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
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
pub fn route_signals() -> io::Result<crossbeam_channel::Receiver<Signal>> {
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

/// Sends `signal` to this process (tests and the self-stop path use it).
pub fn raise(signal: Signal) {
    let sig = HANDLED.iter().find(|(_, s)| *s == signal).map_or(libc::SIGTERM, |(n, _)| *n);
    // SAFETY: kill on our own pid with a valid signal number has no memory effects.
    unsafe {
        libc::kill(libc::getpid(), sig);
    }
}

/// `net.ipv4.ip_local_port_range` as (low, high), if readable.
pub fn local_port_range() -> Option<(u32, u32)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut it = text.split_whitespace().map(|s| s.parse::<u32>());
    match (it.next(), it.next()) {
        (Some(Ok(lo)), Some(Ok(hi))) if hi >= lo => Some((lo, hi)),
        _ => None,
    }
}

/// `net.netfilter.nf_conntrack_max`, when conntrack is loaded.
pub fn conntrack_max() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_max").ok()?.trim().parse().ok()
}

/// (VmRSS, VmHWM) of this process in KiB.
pub fn rss_kib() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<u64> {
        text.lines().find(|l| l.starts_with(name))?.split_whitespace().nth(1)?.parse().ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
