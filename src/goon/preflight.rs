//! The preflight: before any dial, make sure the machine can hold the run, and say plainly
//! what to change when it cannot. Printed as one short block on stderr.

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
}

pub fn check(plan: &Plan) -> Preflight {
    let Plan { fd, sockets, threads, target, sources, port_range, conntrack_max, connections } = *plan;
    let mut lines = Vec::new();
    let need = sockets + reserved_fds(threads);
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
    let sources = sources.max(1) as u64;
    if let Some((lo, hi)) = port_range {
        let per = (hi - lo + 1) as u64;
        lines.push(format!(
            "local ports: {per} per source address ({lo}-{hi}) x {sources} source address(es) = {} for {target}",
            per * sources
        ));
        if connections > per * sources {
            lines.push(format!(
                "WARNING: {connections} connections to one destination need more than {} local ports: add source addresses \
                 (--source-ip 127.0.0.2-127.0.0.9 on loopback; each adds {per}) or widen net.ipv4.ip_local_port_range",
                per * sources
            ));
        }
    }
    if let Some(max) = conntrack_max {
        if max < connections {
            lines.push(format!(
                "WARNING: nf_conntrack_max is {max}, below {connections}: a stateful firewall on this host may drop the excess \
                 (sysctl -w net.netfilter.nf_conntrack_max={})",
                connections * 2
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
        });
        let r = p.refusal.unwrap();
        assert!(r.contains("30048") && r.contains("ulimit") && r.contains("LimitNOFILE"), "{r}");
        assert!(p.lines.iter().any(|l| l.contains("WARNING") && l.contains("--source-ip")));
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
        });
        assert!(p.refusal.is_none());
        assert!(p.lines.iter().all(|l| !l.contains("WARNING")), "{:?}", p.lines);
        assert!(p.lines[1].contains("56464"), "{:?}", p.lines);
    }
}
