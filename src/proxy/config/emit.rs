//! [`ProxyConfig::to_toml`]: the validated config written back as TOML (`--print-config`), every
//! default explicit, by serializing the file's own structs, so it loads back into an equal
//! config.

use std::collections::BTreeMap;

use super::file::*;
use super::types::ProxyConfig;
use crate::config::{congestion_name, ByteSize, Dur, HostPort};
use crate::engine::affinity::CpuAffinity;

impl ProxyConfig {
    /// The config as TOML with every default explicit (`--print-config`); it loads back into an
    /// equal config (addresses are written resolved).
    pub fn to_toml(&self) -> String {
        crate::config::to_toml(&self.to_file())
    }

    /// The file that reads back as this config, every key written.
    fn to_file(&self) -> FileConfig {
        let congestion = |c| Some(congestion_name(c).to_string());
        let t = &self.timeouts;
        let h = &self.health;
        FileConfig {
            threads: Some(self.threads),
            cpu_affinity: Some(match &self.cpu_affinity {
                CpuAffinity::Off => toml::Value::String("off".into()),
                CpuAffinity::Auto => toml::Value::String("auto".into()),
                CpuAffinity::Cpus(v) => toml::Value::Array(v.iter().map(|&c| toml::Value::Integer(c as i64)).collect()),
            }),
            max_connections: Some(self.max_connections),
            balance: Some(self.balance),
            retries: Some(self.retries),
            buffer_size: Some(ByteSize(self.buffer_bytes as u64)),
            pipe_size: Some(ByteSize(self.pipe_bytes as u64)),
            splice: Some(self.splice),
            smart_connect: Some(self.smart_connect),
            reuse_port: Some(self.reuse_port),
            congestion: congestion(&self.congestion),
            drain_timeout: Some(Dur(self.drain_timeout)),
            timeouts: Some(TimeoutsFile {
                connect: Some(Dur(t.connect)),
                client_idle: Some(Dur(t.client_idle)),
                server_idle: Some(Dur(t.server_idle)),
                client_fin: Some(Dur(t.client_fin)),
                server_fin: Some(Dur(t.server_fin)),
                max_lifetime: Some(Dur(t.max_lifetime.unwrap_or_default())),
            }),
            health: Some(HealthFile {
                enabled: Some(h.enabled),
                interval: Some(Dur(h.interval)),
                timeout: Some(Dur(h.timeout)),
                rise: Some(h.rise),
                fall: Some(h.fall),
                jitter_pct: Some(h.jitter_pct),
                passive_fall: Some(h.passive_fall),
            }),
            admin: Some(AdminFile { address: Some(self.admin.map(|a| a.to_string()).unwrap_or_default()) }),
            listener: self
                .listeners
                .iter()
                .map(|l| ListenerFile {
                    name: Some(l.name.clone()),
                    address: HostPort::from(l.address),
                    group: self.groups.get(l.group).map(|g| g.name.clone()),
                    max_connections: Some(l.max_connections),
                    congestion: congestion(&l.congestion),
                })
                .collect(),
            backend: self
                .groups
                .iter()
                .flat_map(|g| {
                    g.backends.iter().map(|b| BackendFile {
                        name: Some(b.name.clone()),
                        address: HostPort::from(b.address),
                        group: Some(g.name.clone()),
                        weight: Some(b.weight),
                        backup: Some(b.backup),
                        state: Some(b.state),
                    })
                })
                .collect(),
            groups: self
                .groups
                .iter()
                .map(|g| {
                    (g.name.clone(), GroupFile { balance: Some(g.balance), congestion: congestion(&g.congestion) })
                })
                .collect::<BTreeMap<_, _>>(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::config::fixtures::*;
    use crate::proxy::config::flags::from_flags_with;
    use std::time::Duration;

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
}
