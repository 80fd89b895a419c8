//! The preflight: before any dial, make sure the machine can hold the run, and say plainly
//! what to change when it cannot. Printed as one short block on stderr.

use crate::stats::counted;
use crate::sys::FdLimit;

/// Descriptors the process needs beside the connections (epoll, wakers, listeners, stdio).
pub fn reserved_fds(threads: usize) -> u64 {
    32 + 8 * threads as u64
}

pub struct Preflight {
    pub lines: Vec<String>,
    /// Set when the run cannot work as asked: the run stops before dialing.
    pub refusal: Option<String>,
}

/// What the preflight looks at: the run's plan and the machine's facts.
pub struct Plan<'a> {
    pub fd: &'a FdLimit,
    /// Descriptors the connections need (2 per connection when the target is in-process).
    pub sockets: u64,
    pub threads: usize,
    pub target: &'a str,
    pub sources: usize,
    pub port_range: Option<(u32, u32)>,
    pub conntrack_max: Option<u64>,
    pub connections: u64,
    /// Reactors that each search their own slice of the port range (IP_LOCAL_PORT_RANGE);
    /// 0 = the kernel's own search.
    pub port_slices: usize,
    /// TIME_WAIT sockets on this host, and how many of them are to the target.
    pub time_wait: Option<TimeWait>,
}

/// TIME_WAIT sockets, read from `/proc/net/tcp` and `/proc/net/tcp6`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimeWait {
    pub total: u64,
    /// To the target's address and port: each holds a local port a dial to it cannot use.
    /// `None` when the table was not read: too few TIME_WAIT sockets to matter (listing
    /// `/proc/net/tcp` walks the kernel's whole socket hash, milliseconds on a busy host).
    pub to_target: Option<u64>,
}

/// `st` of a TIME_WAIT socket in `/proc/net/tcp` (`TCP_TIME_WAIT`).
const TCP_TIME_WAIT_HEX: &str = "06";

/// Counts the TIME_WAIT rows of one `/proc/net/tcp`-format table, and those whose remote end
/// is `target`. Addresses are the kernel's hex of the in-memory (network order) words.
pub fn count_time_wait(table: impl std::io::BufRead, target: std::net::SocketAddr) -> TimeWait {
    let mut tw = TimeWait { total: 0, to_target: Some(0) };
    // Line by line: a host with a million sockets has a table of ~150 MB.
    for line in table.lines().skip(1).map_while(Result::ok) {
        let mut f = line.split_whitespace();
        let (Some(_sl), Some(_local), Some(remote), Some(st)) = (f.next(), f.next(), f.next(), f.next()) else {
            continue;
        };
        if st != TCP_TIME_WAIT_HEX {
            continue;
        }
        tw.total += 1;
        if parse_proc_addr(remote) == Some(target) {
            tw.to_target = tw.to_target.map(|n| n + 1);
        }
    }
    tw
}

/// `0100007F:1F90` (IPv4) or 32 hex digits then `:port` (IPv6), as `/proc/net/tcp*` print them.
fn parse_proc_addr(text: &str) -> Option<std::net::SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |h: &str| u32::from_str_radix(h, 16).ok().map(u32::to_ne_bytes);
    let ip = match ip.len() {
        8 => std::net::IpAddr::from(word(ip)?),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[4 * i..4 * i + 4].copy_from_slice(&word(ip.get(8 * i..8 * i + 8)?)?);
            }
            std::net::IpAddr::from(b)
        }
        _ => return None,
    };
    Some(std::net::SocketAddr::new(ip, port))
}

/// The `tw` count of `/proc/net/sockstat`: TIME_WAIT sockets in this network namespace.
fn sockstat_tw(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("TCP:"))?;
    let mut f = line.split_whitespace();
    f.by_ref().find(|w| *w == "tw")?;
    f.next()?.parse().ok()
}

/// TIME_WAIT on this host: the total from `/proc/net/sockstat` (cheap), and, only when the
/// total is above `scan_above` (the ports the run can spare), how many are to the target,
/// counted in `/proc/net/tcp` and `/proc/net/tcp6`. `None` where nothing is readable.
pub fn time_wait(target: std::net::SocketAddr, scan_above: u64) -> Option<TimeWait> {
    let total = std::fs::read_to_string("/proc/net/sockstat").ok().as_deref().and_then(sockstat_tw);
    if let Some(total) = total.filter(|t| *t <= scan_above) {
        return Some(TimeWait { total, to_target: None });
    }
    let mut out = None::<TimeWait>;
    for path in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(file) = std::fs::File::open(path) {
            let t = count_time_wait(std::io::BufReader::new(file), target);
            let o = out.get_or_insert(TimeWait { total: 0, to_target: Some(0) });
            o.total += t.total;
            o.to_target = Some(o.to_target.unwrap_or(0) + t.to_target.unwrap_or(0));
        }
    }
    out
}

/// The local ports one destination can be dialed from: each source address has the whole
/// `ip_local_port_range` (IP_BIND_ADDRESS_NO_PORT lets the kernel pick the port per 4-tuple).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ports {
    pub per_source: u64,
    pub sources: u64,
    pub total: u64,
}

/// Ports for `sources` source addresses (0 = the kernel's choice: one address).
pub fn local_ports(lo: u32, hi: u32, sources: usize) -> Ports {
    let per_source = u64::from(hi.saturating_sub(lo)) + u64::from(hi >= lo);
    let sources = sources.max(1) as u64;
    Ports { per_source, sources, total: per_source.saturating_mul(sources) }
}

pub fn check(plan: &Plan) -> Preflight {
    let Plan { fd, sockets, threads, target, sources, port_range, conntrack_max, connections, port_slices, time_wait } =
        *plan;
    let mut lines = Vec::new();
    let need = sockets.saturating_add(reserved_fds(threads));
    let raised = if fd.before < fd.soft {
        format!("soft limit raised {} -> {}", fd.before, fd.soft)
    } else {
        format!("soft limit {}", fd.soft)
    };
    lines.push(format!("open files: {raised} (hard {}); this run needs about {need}", fd.hard));
    let mut refusal = None;
    if need > fd.soft {
        refusal = Some(format!(
            "this run needs about {need} open files but this process may open {} (hard limit {}). Raise the hard limit and retry: \
             `ulimit -Hn {want} && ulimit -n {want}` in the shell (as root, or via /etc/security/limits.conf), \
             `LimitNOFILE={want}` in a systemd unit, `--ulimit nofile={want}:{want}` for docker run",
            fd.soft,
            fd.hard,
            want = (need + 1024).next_power_of_two().max(need + 1024)
        ));
    }
    if let Some((lo, hi)) = port_range {
        let ports = local_ports(lo, hi, sources);
        lines.push(format!(
            "local ports: {} per source address ({lo}-{hi}) x {} = {} for {target}",
            ports.per_source,
            counted(ports.sources, "source address", "source addresses"),
            ports.total
        ));
        if connections > ports.total {
            // Each connection to one destination needs its own (source address, port) pair: past
            // this count every further dial would fail with EADDRNOTAVAIL after the kernel has
            // searched the whole range, slowly, so the run stops here instead.
            let short = format!(
                "{connections} connections to {target} need {connections} local ports but {} {} only {} ({lo}-{hi} each); \
                 use at least {} source addresses (--source-ip, e.g. 127.0.0.2-127.0.0.9 on loopback: {} ports each), \
                 widen net.ipv4.ip_local_port_range, or ask for at most {}",
                counted(ports.sources, "source address", "source addresses"),
                if ports.sources == 1 { "has" } else { "have" },
                ports.total,
                connections.div_ceil(ports.per_source.max(1)),
                ports.per_source,
                counted(ports.total, "connection", "connections")
            );
            refusal = Some(match refusal {
                Some(fds) => format!("{short}; also {fds}"),
                None => short,
            });
        }
        if port_slices > 0 {
            lines.push(format!(
                "source ports: each of the {} searches its own {} of them (IP_LOCAL_PORT_RANGE)",
                counted(port_slices as u64, "reactor", "reactors"),
                ports.per_source / port_slices as u64
            ));
        } else {
            let per_source = connections.div_ceil(ports.sources);
            let half = ports.per_source / 2;
            let warn = if per_source > half {
                format!(
                    "; WARNING: {per_source} connections per source address is past half the range ({half}), where each \
                     connect() walks every even port first and the run slows to seconds: spread with --source-ip"
                )
            } else {
                String::new()
            };
            lines.push(format!("source ports: the kernel's search (no IP_LOCAL_PORT_RANGE: Linux < 6.3){warn}"));
        }
        if let Some(tw) = time_wait {
            let to = tw.to_target.unwrap_or(tw.total);
            let warn = if to.saturating_add(connections) > ports.total {
                format!(
                    "; WARNING: with {connections} new connections that is more than the {} local ports for {target}: \
                     dials wait for TIME_WAIT to expire (or for net.ipv4.tcp_tw_reuse) or fail with EADDRNOTAVAIL; \
                     add source addresses (--source-ip) or use --linger-rst",
                    ports.total
                )
            } else {
                String::new()
            };
            lines.push(match tw.to_target {
                Some(n) => {
                    format!("TIME_WAIT: {n} to {target}, {} on this host{warn}", counted(tw.total, "socket", "sockets"))
                }
                None => format!("TIME_WAIT: {} on this host{warn}", counted(tw.total, "socket", "sockets")),
            });
        }
    }
    if let Some(max) = conntrack_max {
        if max < connections {
            lines.push(format!(
                "WARNING: nf_conntrack_max is {max}, below {connections}: a stateful firewall on this host may drop the excess \
                 (sysctl -w net.netfilter.nf_conntrack_max={})",
                connections.saturating_mul(2)
            ));
        } else {
            lines.push(format!("conntrack: nf_conntrack_max {max}"));
        }
    }
    Preflight { lines, refusal }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fd(soft: u64, hard: u64) -> FdLimit {
        FdLimit { before: 1024, soft, hard }
    }

    #[test]
    fn refuses_above_the_limit_and_names_the_fix() {
        let t = "127.0.0.1:80";
        let fd = fd(20_000, 20_000);
        let p = check(&Plan {
            fd: &fd,
            sockets: 30_000,
            threads: 2,
            target: t,
            sources: 1,
            port_range: Some((32768, 60999)),
            conntrack_max: None,
            connections: 30_000,
            port_slices: 2,
            time_wait: None,
        });
        let r = p.refusal.unwrap();
        assert!(r.contains("30048") && r.contains("ulimit") && r.contains("LimitNOFILE"), "{r}");
        // 30,000 > 28,232 ports of one source: the same line says so, with the fix.
        assert!(r.contains("need 30000 local ports") && r.contains("at least 2 source addresses"), "{r}");
        assert!(!r.contains('\n'), "one line: {r}");
    }

    fn ports_plan<'a>(fd: &'a FdLimit, connections: u64, sources: usize) -> Plan<'a> {
        Plan {
            fd,
            sockets: connections,
            threads: 2,
            target: "127.0.0.1:80",
            sources,
            port_range: Some((32768, 60999)),
            conntrack_max: None,
            connections,
            port_slices: 2,
            time_wait: None,
        }
    }

    #[test]
    fn port_arithmetic() {
        assert_eq!(local_ports(32768, 60999, 0), Ports { per_source: 28232, sources: 1, total: 28232 });
        assert_eq!(local_ports(32768, 60999, 1).total, 28232);
        assert_eq!(local_ports(32768, 60999, 8).total, 8 * 28232);
        assert_eq!(local_ports(1024, 65535, 2).total, 2 * 64512);
        assert_eq!(local_ports(5000, 5000, 3).total, 3, "a one-port range");
        assert_eq!(local_ports(6000, 5000, 3).total, 0, "an inverted range has no port");
        assert_eq!(local_ports(0, u32::MAX, 4096).per_source, 1 << 32, "no overflow");
    }

    #[test]
    fn refuses_more_connections_than_local_ports() {
        let fd = fd(1 << 20, 1 << 20);
        // Exactly the range fits; one more does not.
        assert!(check(&ports_plan(&fd, 28232, 0)).refusal.is_none());
        let r = check(&ports_plan(&fd, 28233, 0)).refusal.expect("one port short");
        assert!(r.starts_with("28233 connections to 127.0.0.1:80 need 28233 local ports"), "{r}");
        assert!(r.contains("1 source address has only 28232 (32768-60999 each)"), "{r}");
        assert!(r.contains("at least 2 source addresses") && r.contains("at most 28232 connections"), "{r}");
        assert!(!r.contains("open files"), "the descriptors suffice: {r}");
        // Each source address adds a whole range.
        assert!(check(&ports_plan(&fd, 50_000, 2)).refusal.is_none());
        let r = check(&ports_plan(&fd, 100_000, 3)).refusal.expect("3 x 28232 < 100000");
        assert!(r.contains("3 source addresses have only 84696") && r.contains("at least 4 source addresses"), "{r}");
        // Without a readable range nothing is claimed.
        let mut p = ports_plan(&fd, 100_000, 0);
        p.port_range = None;
        assert!(check(&p).refusal.is_none());
    }

    #[test]
    fn passes_within_limits() {
        let t = "127.0.0.1:80";
        let fd = fd(20_000, 20_000);
        let p = check(&Plan {
            fd: &fd,
            sockets: 1000,
            threads: 2,
            target: t,
            sources: 2,
            port_range: Some((32768, 60999)),
            conntrack_max: Some(262_144),
            connections: 1000,
            port_slices: 2,
            time_wait: Some(TimeWait { total: 7, to_target: Some(3) }),
        });
        assert!(p.refusal.is_none());
        assert!(p.lines.iter().all(|l| !l.contains("WARNING")), "{:?}", p.lines);
        assert_eq!(
            p.lines[1],
            "local ports: 28232 per source address (32768-60999) x 2 source addresses = 56464 for 127.0.0.1:80"
        );
        assert_eq!(
            p.lines[2],
            "source ports: each of the 2 reactors searches its own 14116 of them (IP_LOCAL_PORT_RANGE)"
        );
        assert_eq!(p.lines[3], "TIME_WAIT: 3 to 127.0.0.1:80, 7 sockets on this host");
    }

    #[test]
    fn time_wait_rows_are_counted_and_matched_to_the_target() {
        let table =
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
             0: 0100007F:9C40 0100007F:1F90 06 00000000:00000000 03:00001000 00000000     0        0 0\n\
             1: 0100007F:9C41 0100007F:1F90 06 00000000:00000000 03:00001000 00000000     0        0 0\n\
             2: 0100007F:9C42 0200007F:1F90 06 00000000:00000000 03:00001000 00000000     0        0 0\n\
             3: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1\n";
        let t = count_time_wait(table.as_bytes(), "127.0.0.1:8080".parse().unwrap());
        assert_eq!(t, TimeWait { total: 3, to_target: Some(2) });
        let v6 = "header\n 0: 00000000000000000000000001000000:9C40 00000000000000000000000001000000:1F90 06 x\n";
        assert_eq!(
            count_time_wait(v6.as_bytes(), "[::1]:8080".parse().unwrap()),
            TimeWait { total: 1, to_target: Some(1) }
        );
    }

    #[test]
    fn few_time_wait_sockets_are_only_counted() {
        assert_eq!(sockstat_tw("sockets: used 23\nTCP: inuse 1 orphan 0 tw 14062 alloc 1 mem 2\n"), Some(14062));
        assert_eq!(sockstat_tw("TCP: inuse 1\n"), None);
        let fd = fd(1 << 20, 1 << 20);
        let mut p = ports_plan(&fd, 1000, 1);
        p.time_wait = Some(TimeWait { total: 12, to_target: None });
        let lines = check(&p).lines;
        assert!(lines.contains(&"TIME_WAIT: 12 sockets on this host".to_string()), "{lines:?}");
    }

    #[test]
    fn crowded_source_and_no_port_slices_are_warned_about() {
        let fd = fd(1 << 20, 1 << 20);
        let mut p = ports_plan(&fd, 19_000, 1);
        p.port_slices = 0;
        p.time_wait = Some(TimeWait { total: 20_000, to_target: Some(14_000) });
        let lines = check(&p).lines;
        let src = lines.iter().find(|l| l.starts_with("source ports:")).unwrap();
        assert!(src.contains("WARNING: 19000 connections per source address is past half the range (14116)"), "{src}");
        let tw = lines.iter().find(|l| l.starts_with("TIME_WAIT:")).unwrap();
        assert!(tw.starts_with("TIME_WAIT: 14000 to 127.0.0.1:80, 20000 sockets on this host; WARNING"), "{tw}");
        // Two source addresses: both fit.
        let mut p = ports_plan(&fd, 19_000, 2);
        p.port_slices = 0;
        p.time_wait = Some(TimeWait { total: 20_000, to_target: Some(14_000) });
        assert!(check(&p).lines.iter().all(|l| !l.contains("WARNING")), "{:?}", check(&p).lines);
    }
}
