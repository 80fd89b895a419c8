//! `lb.toml` (or the quick-start flags) → a validated [`ProxyConfig`].
//!
//! Two stages, as in sozu and ripgrep: serde reads the file into private `*File` structs that
//! mirror the TOML exactly (`deny_unknown_fields` on every table, no `flatten`, every value kept
//! with its byte span), then `validate` turns them into the public types, applying the named
//! `DEFAULT_*` consts and refusing anything the proxy could not run with. Every error is one line
//! naming the file, the line/column when the value was written, and the key path
//! (`lb.toml:14:11: backend[1].address: duplicates backend[0] in group "default" ...`).
//!
//! Hostnames are resolved here, once, at load time (the reactors never block on DNS). Backends
//! are gathered into groups in order of first appearance; a listener forwards to one group.
//! [`ProxyConfig::to_toml`] writes the validated result back out (`--print-config`) with every
//! default made explicit, and that text loads back into an equal config.
//!
//! One thing a file: `types` (the validated config), `defaults` (the named defaults and bounds),
//! `file` (the serde mirror), `validate`, `address` (parsing and resolving), `affinity` (the
//! `cpu_affinity` syntax), `flags` (the quick
//! start) and `emit` (`--print-config`).

mod address;
mod affinity;
mod defaults;
mod emit;
mod file;
#[cfg(test)]
mod fixtures;
mod flags;
mod types;
mod validate;

use std::path::Path;

pub(crate) use defaults::*;
pub(crate) use flags::from_flags;
pub(crate) use types::*;

use crate::conffile::{self, ConfigError};
use address::system_resolve;
#[cfg(test)]
use address::Resolver;
use file::FileConfig;
use validate::{validate, Cx};

/// Reads and validates `path`, resolving hostnames with the system resolver.
pub fn load(path: &Path) -> Result<ProxyConfig, ConfigError> {
    let (file, text) = conffile::load::<FileConfig>(path)?;
    validate(file, &Cx { path, text: &text }, &mut system_resolve)
}

/// Parses and validates `text`, read from `path` (named in errors), resolving hostnames with the
/// system resolver.
#[cfg(test)]
pub fn from_str(path: &Path, text: &str) -> Result<ProxyConfig, ConfigError> {
    from_str_with(path, text, &mut system_resolve)
}

/// [`from_str`] with the hostname resolver passed in (tests use a fake one).
#[cfg(test)]
fn from_str_with(path: &Path, text: &str, resolve: Resolver<'_>) -> Result<ProxyConfig, ConfigError> {
    let file = conffile::parse::<FileConfig>(path, text)?;
    validate(file, &Cx { path, text }, resolve)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::config::fixtures::*;

    #[test]
    fn example_file_loads_with_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/lb.toml");
        let cfg = load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.source.as_deref(), Some(path.as_path()));
        // The example shows every default; only listeners and backends are examples.
        assert_eq!(cfg.threads, DEFAULT_THREADS);
        assert_eq!(cfg.max_connections, default_max_connections());
        assert_eq!(cfg.balance, DEFAULT_BALANCE);
        assert_eq!(cfg.retries, DEFAULT_RETRIES);
        assert_eq!(cfg.buffer_bytes, DEFAULT_BUFFER_BYTES);
        assert_eq!(cfg.splice, DEFAULT_SPLICE);
        assert_eq!(cfg.drain_timeout, DEFAULT_DRAIN_TIMEOUT);
        assert_eq!(cfg.timeouts, Timeouts::default());
        assert_eq!(cfg.health, HealthConfig::default());
        assert_eq!(cfg.admin, Some(DEFAULT_ADMIN_ADDRESS));
        assert_eq!(cfg.congestion, DEFAULT_CONGESTION);
        assert!(!cfg.listeners.is_empty() && !cfg.groups.is_empty());
        for l in &cfg.listeners {
            assert_eq!(l.max_connections, default_max_connections());
        }
        let b = &cfg.groups[0].backends[0];
        assert_eq!((b.weight, b.backup, b.state), (DEFAULT_WEIGHT, false, DEFAULT_STATE));
        assert_round_trip(&cfg);
    }
}
