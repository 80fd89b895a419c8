//! [`ProxyConfig::to_toml`]: the validated config written back as TOML (`--print-config`), every
//! default explicit, in a form that loads back into an equal config.

use std::time::Duration;

use super::defaults::DEFAULT_GROUP;
use super::defaults::SYSTEM_CONGESTION;
use super::types::ProxyConfig;
use crate::net::tune::Congestion;

impl ProxyConfig {
    /// The config as TOML with every default explicit (`--print-config`); it loads back into an
    /// equal config (addresses are written resolved).
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        let mut kv = |k: &str, v: String| {
            out.push_str(k);
            out.push_str(" = ");
            out.push_str(&v);
            out.push('\n');
        };
        kv("threads", self.threads.to_string());
        kv("cpu_affinity", self.cpu_affinity.to_toml());
        kv("max_connections", self.max_connections.to_string());
        kv("balance", quote(self.balance.as_str()));
        kv("retries", self.retries.to_string());
        kv("buffer_size", quote(&format_bytes(self.buffer_bytes)));
        kv("pipe_size", quote(&format_bytes(self.pipe_bytes)));
        kv("splice", quote(self.splice.as_str()));
        kv("smart_connect", self.smart_connect.to_string());
        kv("reuse_port", self.reuse_port.to_string());
        kv("congestion", quote(congestion_str(&self.congestion)));
        kv("drain_timeout", quote(&format_duration(self.drain_timeout)));

        let t = &self.timeouts;
        out.push_str("\n[timeouts]\n");
        let mut kv = |k: &str, d: Duration| out.push_str(&format!("{k} = {}\n", quote(&format_duration(d))));
        kv("connect", t.connect);
        kv("client_idle", t.client_idle);
        kv("server_idle", t.server_idle);
        kv("client_fin", t.client_fin);
        kv("server_fin", t.server_fin);
        kv("max_lifetime", t.max_lifetime.unwrap_or(Duration::ZERO));

        let h = &self.health;
        out.push_str("\n[health]\n");
        out.push_str(&format!("enabled = {}\n", h.enabled));
        out.push_str(&format!("interval = {}\n", quote(&format_duration(h.interval))));
        out.push_str(&format!("timeout = {}\n", quote(&format_duration(h.timeout))));
        out.push_str(&format!("rise = {}\nfall = {}\n", h.rise, h.fall));
        out.push_str(&format!("jitter_pct = {}\npassive_fall = {}\n", h.jitter_pct, h.passive_fall));

        let admin = self.admin.map(|a| a.to_string()).unwrap_or_default();
        out.push_str(&format!("\n[admin]\naddress = {}\n", quote(&admin)));

        for l in &self.listeners {
            let group = self.groups.get(l.group).map_or(DEFAULT_GROUP, |g| g.name.as_str());
            out.push_str(&format!(
                "\n[[listener]]\nname = {}\naddress = {}\ngroup = {}\nmax_connections = {}\ncongestion = {}\n",
                quote(&l.name),
                quote(&l.address.to_string()),
                quote(group),
                l.max_connections,
                quote(congestion_str(&l.congestion))
            ));
        }
        for g in &self.groups {
            for b in &g.backends {
                out.push_str(&format!(
                    "\n[[backend]]\nname = {}\naddress = {}\ngroup = {}\nweight = {}\nbackup = {}\nstate = {}\n",
                    quote(&b.name),
                    quote(&b.address.to_string()),
                    quote(&g.name),
                    b.weight,
                    b.backup,
                    quote(b.state.as_str())
                ));
            }
        }
        for g in &self.groups {
            out.push_str(&format!(
                "\n[groups.{}]\nbalance = {}\ncongestion = {}\n",
                bare_or_quoted(&g.name),
                quote(g.balance.as_str()),
                quote(congestion_str(&g.congestion))
            ));
        }
        out
    }
}

pub(super) fn congestion_str(c: &Option<Congestion>) -> &str {
    c.as_ref().map_or(SYSTEM_CONGESTION, Congestion::as_str)
}

/// Exact and short: `5m`, `1m30s`, `1s500ms`, `0`; [`units::parse_duration`] reads it back.
pub(super) fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0".into();
    }
    let secs = d.as_secs();
    let nanos = u64::from(d.subsec_nanos());
    let parts = [
        (secs / 3600, "h"),
        (secs / 60 % 60, "m"),
        (secs % 60, "s"),
        (nanos / 1_000_000, "ms"),
        (nanos / 1_000 % 1_000, "us"),
        (nanos % 1_000, "ns"),
    ];
    parts.iter().filter(|(n, _)| *n > 0).map(|(n, unit)| format!("{n}{unit}")).collect()
}

/// `16KiB`, `4MiB`, or plain bytes.
pub(super) fn format_bytes(n: usize) -> String {
    if n > 0 && n % (1 << 20) == 0 {
        format!("{}MiB", n >> 20)
    } else if n > 0 && n % (1 << 10) == 0 {
        format!("{}KiB", n >> 10)
    } else {
        n.to_string()
    }
}

/// A TOML basic string.
pub(super) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A TOML key: bare when it can be, else quoted.
pub(super) fn bare_or_quoted(key: &str) -> String {
    if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        key.to_string()
    } else {
        quote(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::affinity::CpuAffinity;
    use crate::proxy::config::fixtures::*;
    use crate::proxy::config::flags::from_flags_with;
    use crate::units;

    #[test]
    fn to_toml_round_trips() {
        assert_round_trip(&parse(MIN).unwrap());
        assert_round_trip(&parse(FULL).unwrap());
        // A CPU list: the CPUs this process may use, last first.
        let mut cpus = crate::sys::allowed_cpus().unwrap();
        cpus.reverse();
        let list = cpus.iter().map(usize::to_string).collect::<Vec<_>>().join(", ");
        let pinned = parse(&format!("cpu_affinity = [{list}]\n{MIN}")).unwrap();
        assert_eq!(pinned.cpu_affinity, CpuAffinity::Cpus(cpus));
        assert_round_trip(&pinned);
        let odd = format!(
            "{}[[backend]]\naddress = \"127.0.0.1:1\"\nname = \"q\\\"uote\\\\ tab\\t\"\ngroup = \"my group.v2\"\n\
             [groups.\"my group.v2\"]\nbalance = \"random\"\n",
            MIN.replace("listener]]\n", "listener]]\ngroup = \"my group.v2\"\n")
        );
        let cfg = parse(&odd).unwrap();
        assert_eq!(cfg.groups[1].name, "my group.v2");
        assert_eq!(cfg.groups[1].backends[0].name, "q\"uote\\ tab\t");
        assert_round_trip(&cfg);
        let flags = from_flags_with(
            "127.0.0.1:4000",
            "rr",
            Duration::from_millis(1500),
            &["127.0.0.1:8001".into()],
            &mut fake_resolve,
        );
        assert_round_trip(&flags.unwrap());
    }

    #[test]
    fn durations_and_sizes_format_exactly() {
        let durations = [
            (Duration::ZERO, "0"),
            (Duration::from_secs(300), "5m"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(3600 + 2), "1h2s"),
            (Duration::from_millis(1500), "1s500ms"),
            (Duration::from_nanos(1_001_001), "1ms1us1ns"),
            (Duration::from_secs(100 * 3600), "100h"),
        ];
        for (d, want) in durations {
            assert_eq!(format_duration(d), want);
            assert_eq!(units::parse_duration(want), Ok(d), "{want}");
        }
        let sizes = [(16 << 10, "16KiB"), (4 << 20, "4MiB"), (1536, "1536"), (1025, "1025"), (3 << 10, "3KiB")];
        for (n, want) in sizes {
            assert_eq!(format_bytes(n), want);
            assert_eq!(units::parse_bytes(want), Ok(n as u64), "{want}");
        }
    }
}
