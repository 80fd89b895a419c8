//! Which CPU each reactor runs on: the placement policy, the plan it gives for a number of
//! reactors, and the listener steering that follows from it (the proxy's `cpu_affinity`; its
//! syntax is read in `proxy::config::affinity`).
//!
//! Pinned reactors keep a connection's kernel work and its reactor on one CPU: the proxy also
//! sets `SO_INCOMING_CPU` on each reactor's listener to that reactor's CPU, and since Linux 6.1
//! an `SO_REUSEPORT` group hands a new connection to the listener whose CPU took its SYN. On
//! loopback that is the CPU of the connecting process, so a client, the proxy's reactor and the
//! wake-ups between them stay on one core instead of bouncing between two.

use crate::sys;

/// How reactors are placed on CPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum CpuAffinity {
    /// No pinning: the scheduler places the threads, and the kernel's hash spreads new
    /// connections over the listeners. The default: steering by CPU piles every connection onto
    /// one reactor when one CPU takes every SYN (a single-queue NIC without RPS, one
    /// single-threaded client on the same host), so it is for hosts known to spread them.
    #[default]
    Off,
    /// One reactor per CPU when there are exactly as many reactors as CPUs this process may
    /// use (a VM, a cpuset container, `taskset`); otherwise no pinning.
    Auto,
    /// Reactor `i` on CPU `cpus[i % len]`.
    Cpus(Vec<usize>),
}

/// Where the reactors go, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// One CPU per reactor; `None` = not pinned.
    pub cpus: Option<Vec<usize>>,
    /// One line for the start-up banner.
    pub summary: String,
}

impl CpuAffinity {
    /// The value as TOML (`"auto"`, `"off"`, `[0, 1]`).
    pub fn to_toml(&self) -> String {
        match self {
            CpuAffinity::Off => "\"off\"".into(),
            CpuAffinity::Auto => "\"auto\"".into(),
            CpuAffinity::Cpus(v) => {
                format!("[{}]", v.iter().map(usize::to_string).collect::<Vec<_>>().join(", "))
            }
        }
    }

    /// [`CpuAffinity::plan`] against the CPUs this process may use, read only when pinning
    /// may happen; a failure to read them is named in the summary.
    pub fn place(&self, threads: usize) -> Plan {
        if *self == CpuAffinity::Off {
            return self.plan(threads, &[]);
        }
        match sys::allowed_cpus() {
            Ok(allowed) => self.plan(threads, &allowed),
            Err(e) => Plan { cpus: None, summary: format!("reactors not pinned: sched_getaffinity: {e}") },
        }
    }

    /// The CPU of each of `threads` reactors, given the CPUs this process may use.
    pub fn plan(&self, threads: usize, allowed: &[usize]) -> Plan {
        match self {
            CpuAffinity::Off => Plan { cpus: None, summary: "reactors not pinned (cpu_affinity = \"off\")".into() },
            CpuAffinity::Auto if threads == allowed.len() => Plan {
                cpus: Some(allowed.to_vec()),
                summary: format!("reactors pinned to CPUs {}, one each (cpu_affinity = \"auto\")", sys::format_cpus(allowed)),
            },
            CpuAffinity::Auto => Plan {
                cpus: None,
                summary: format!(
                    "reactors not pinned: {threads} reactors on {} ({}); \"auto\" pins only one reactor per CPU (cpu_affinity = \"auto\")",
                    crate::stats::counted(allowed.len() as u64, "allowed CPU", "allowed CPUs"),
                    sys::format_cpus(allowed)
                ),
            },
            CpuAffinity::Cpus(list) => {
                let cpus: Vec<usize> = (0..threads).map(|i| list[i % list.len()]).collect();
                let summary = format!("reactors pinned to CPUs {} (cpu_affinity = {})", sys::format_cpus(&cpus), self.to_toml());
                Plan { cpus: Some(cpus), summary }
            }
        }
    }
}

impl Plan {
    /// The CPU each of `threads` reactors' listeners steer by (SO_INCOMING_CPU): its own, but
    /// only where no other reactor runs on that CPU, since two listeners with one value would
    /// split that CPU's connections unevenly between them.
    pub fn steering(&self, threads: usize) -> Vec<Option<usize>> {
        match &self.cpus {
            Some(cpus) => cpus.iter().map(|c| (cpus.iter().filter(|x| *x == c).count() == 1).then_some(*c)).collect(),
            None => vec![None; threads],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_pins_only_one_reactor_per_allowed_cpu() {
        let p = CpuAffinity::Auto.plan(2, &[2, 5]);
        assert_eq!(p.cpus, Some(vec![2, 5]));
        assert!(p.summary.contains("pinned to CPUs 2,5"), "{}", p.summary);
        for threads in [1, 3] {
            let p = CpuAffinity::Auto.plan(threads, &[2, 5]);
            assert_eq!(p.cpus, None);
            assert!(p.summary.contains("not pinned"), "{}", p.summary);
        }
        assert_eq!(CpuAffinity::Off.plan(2, &[0, 1]).cpus, None);
    }

    #[test]
    fn a_list_wraps_around_the_reactors() {
        let p = CpuAffinity::Cpus(vec![3, 1]).plan(5, &[0, 1, 2, 3]);
        assert_eq!(p.cpus, Some(vec![3, 1, 3, 1, 3]));
        assert!(p.summary.contains("CPUs 1,3") && p.summary.contains("[3, 1]"), "{}", p.summary);
        assert_eq!(CpuAffinity::Cpus(vec![0, 2]).to_toml(), "[0, 2]");
        assert_eq!(CpuAffinity::Auto.to_toml(), "\"auto\"");
    }
}
