//! `lb.toml` as written: serde structs that mirror the file (`deny_unknown_fields` on every
//! table, no `flatten`), every value kept with its span so validation errors can point at it.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{Deserializer, Visitor};
use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    pub(super) threads: Option<Spanned<usize>>,
    pub(super) cpu_affinity: Option<Spanned<toml::Value>>,
    pub(super) max_connections: Option<Spanned<usize>>,
    pub(super) balance: Option<Spanned<String>>,
    pub(super) retries: Option<Spanned<u32>>,
    pub(super) buffer_size: Option<Spanned<Text>>,
    pub(super) pipe_size: Option<Spanned<Text>>,
    pub(super) splice: Option<Spanned<String>>,
    pub(super) smart_connect: Option<bool>,
    pub(super) reuse_port: Option<bool>,
    pub(super) congestion: Option<Spanned<String>>,
    pub(super) drain_timeout: Option<Spanned<Text>>,
    pub(super) timeouts: Option<TimeoutsFile>,
    pub(super) health: Option<HealthFile>,
    pub(super) admin: Option<AdminFile>,
    #[serde(default)]
    pub(super) listener: Vec<ListenerFile>,
    #[serde(default)]
    pub(super) backend: Vec<BackendFile>,
    #[serde(default)]
    pub(super) groups: BTreeMap<String, Spanned<GroupFile>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TimeoutsFile {
    pub(super) connect: Option<Spanned<Text>>,
    pub(super) client_idle: Option<Spanned<Text>>,
    pub(super) server_idle: Option<Spanned<Text>>,
    pub(super) client_fin: Option<Spanned<Text>>,
    pub(super) server_fin: Option<Spanned<Text>>,
    pub(super) max_lifetime: Option<Spanned<Text>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HealthFile {
    pub(super) enabled: Option<bool>,
    pub(super) interval: Option<Spanned<Text>>,
    pub(super) timeout: Option<Spanned<Text>>,
    pub(super) rise: Option<Spanned<u32>>,
    pub(super) fall: Option<Spanned<u32>>,
    pub(super) jitter_pct: Option<Spanned<u32>>,
    pub(super) passive_fall: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AdminFile {
    pub(super) address: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListenerFile {
    pub(super) name: Option<Spanned<String>>,
    pub(super) address: Spanned<String>,
    pub(super) group: Option<Spanned<String>>,
    pub(super) max_connections: Option<Spanned<usize>>,
    pub(super) congestion: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BackendFile {
    pub(super) name: Option<Spanned<String>>,
    pub(super) address: Spanned<String>,
    pub(super) group: Option<Spanned<String>>,
    pub(super) weight: Option<Spanned<u32>>,
    pub(super) backup: Option<bool>,
    pub(super) state: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GroupFile {
    pub(super) balance: Option<Spanned<String>>,
    pub(super) congestion: Option<Spanned<String>>,
}

/// A duration or size as written: a string (`"3s"`, `"16KiB"`) or an integer (`0`, `65536`),
/// parsed by `units` during validation so the error names the key.
pub(super) struct Text(pub(super) String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Text, D::Error> {
        struct TextVisitor;
        impl Visitor<'_> for TextVisitor {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string such as \"3s\" or \"16KiB\", or an integer")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
        }
        d.deserialize_any(TextVisitor)
    }
}
