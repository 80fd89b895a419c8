//! `lb.toml` (or the quick-start flags) → a validated [`ProxyConfig`].
//!
//! Two stages, as in sozu and ripgrep: serde reads the file into private `*File` structs that
//! mirror the TOML exactly (`deny_unknown_fields` on every table, no `flatten`), with the shared
//! value types of [`crate::config`], so a value that is no size, duration, keyword or address is
//! refused as the file is read; then `validate` turns them into the public types, applying the
//! named `DEFAULT_*` consts and refusing anything the proxy could not run with. Every error is
//! one line naming the file, the line/column where the key is written (or the end of the file,
//! for a key that is missing), and the key path
//! (`lb.toml:14:11: backend[1].address: duplicates backend[0] in group "default" ...`).
//!
//! Hostnames are resolved here, once, at load time (the reactors never block on DNS). Backends
//! are gathered into groups in order of first appearance; a listener forwards to one group.
//! [`ProxyConfig::to_toml`] writes the validated result back out (`--print-config`) with every
//! default made explicit, and that text loads back into an equal config.
//!
//! One thing a file: `types` (the validated config), `defaults` (the named defaults and bounds),
//! `file` (the serde mirror, read and written with the shared value types of [`crate::config`]),
//! `validate` (the top-level keys, timeouts and health), `topology` (listeners, backends and
//! groups), `affinity` (the `cpu_affinity` syntax), `flags` (the quick start) and `emit`
//! (`--print-config`, by serializing the file structs).

mod affinity;
mod defaults;
mod emit;
mod file;
#[cfg(test)]
mod fixtures;
mod flags;
#[cfg(test)]
mod tests;
mod topology;
mod types;
mod validate;

use std::path::Path;

pub(crate) use defaults::*;
pub(crate) use flags::from_flags;
pub(crate) use types::*;

use crate::conffile::{self, ConfigError};
use crate::config::system_resolve;
#[cfg(test)]
use crate::config::Resolver;
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
