//! `lb.toml` as written: serde structs that mirror the file (`deny_unknown_fields` on every
//! table, no `flatten`), read with the shared value types, so a value that is no size, duration,
//! keyword or address is refused while the file is read, at its line and column. The same
//! structs, filled from a validated config with every key explicit, are what `--print-config`
//! writes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::types::{AdminState, SpliceMode};
use crate::config::{ByteSize, Dur, HostPort};
use crate::proxy::lb::Balance;

#[derive(Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    pub(super) threads: Option<usize>,
    pub(super) cpu_affinity: Option<toml::Value>,
    pub(super) max_connections: Option<usize>,
    pub(super) balance: Option<Balance>,
    pub(super) retries: Option<u32>,
    pub(super) buffer_size: Option<ByteSize>,
    pub(super) pipe_size: Option<ByteSize>,
    pub(super) splice: Option<SpliceMode>,
    pub(super) smart_connect: Option<bool>,
    pub(super) reuse_port: Option<bool>,
    pub(super) congestion: Option<String>,
    pub(super) drain_timeout: Option<Dur>,
    pub(super) timeouts: Option<TimeoutsFile>,
    pub(super) health: Option<HealthFile>,
    pub(super) admin: Option<AdminFile>,
    #[serde(default)]
    pub(super) listener: Vec<ListenerFile>,
    #[serde(default)]
    pub(super) backend: Vec<BackendFile>,
    #[serde(default)]
    pub(super) groups: BTreeMap<String, GroupFile>,
}

#[derive(Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TimeoutsFile {
    pub(super) connect: Option<Dur>,
    pub(super) client_idle: Option<Dur>,
    pub(super) server_idle: Option<Dur>,
    pub(super) client_fin: Option<Dur>,
    pub(super) server_fin: Option<Dur>,
    pub(super) max_lifetime: Option<Dur>,
}

#[derive(Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HealthFile {
    pub(super) enabled: Option<bool>,
    pub(super) interval: Option<Dur>,
    pub(super) timeout: Option<Dur>,
    pub(super) rise: Option<u32>,
    pub(super) fall: Option<u32>,
    pub(super) jitter_pct: Option<u32>,
    pub(super) passive_fall: Option<u32>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AdminFile {
    /// `""` disables the endpoint.
    pub(super) address: Option<String>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListenerFile {
    pub(super) name: Option<String>,
    pub(super) address: HostPort,
    pub(super) group: Option<String>,
    pub(super) max_connections: Option<usize>,
    pub(super) congestion: Option<String>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BackendFile {
    pub(super) name: Option<String>,
    pub(super) address: HostPort,
    pub(super) group: Option<String>,
    pub(super) weight: Option<u32>,
    pub(super) backup: Option<bool>,
    pub(super) state: Option<AdminState>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GroupFile {
    pub(super) balance: Option<Balance>,
    pub(super) congestion: Option<String>,
}
