//! The top-level error. Only `main` prints it and maps it to an exit status; every message names
//! the action and the object (`bind 127.0.0.1:80: permission denied`) and fits on one line.

use std::fmt;
use std::io;
use std::net::SocketAddr;

pub use crate::conffile::{ConfigError, FLAGS_LABEL};

#[derive(Debug)]
pub enum Error {
    /// A config file is wrong (file, line/column or key path inside).
    Config(ConfigError),
    /// A command-line value is wrong; printed with the usage line.
    Usage(String),
    /// The run cannot start on this machine as configured (fd limit, ports).
    Preflight(String),
    Resolve {
        host: String,
        source: io::Error,
    },
    /// A listening socket could not be bound. `key` names where the address came from
    /// (`--listen`, `lb.toml: listener[0].address`); `holder` says what listens there already
    /// (EADDRINUSE only, when the system can tell); `share` is how the role shares an address
    /// on purpose (`None` where it cannot).
    Bind {
        key: String,
        addr: SocketAddr,
        source: io::Error,
        holder: Option<String>,
        share: Option<&'static str>,
    },
    /// A result file (or stream) could not be written, after the run itself ran: no usage
    /// line, the flag and the file are in the text.
    Output(String),
    Io(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(e) => write!(f, "{e}"),
            Error::Usage(m) => write!(f, "{m}"),
            Error::Preflight(m) | Error::Output(m) => write!(f, "{m}"),
            Error::Resolve { host, source } => write!(f, "cannot resolve host {host:?}: {source}"),
            Error::Bind { key, addr, source, holder, share } if source.kind() == io::ErrorKind::AddrInUse => {
                write!(f, "{key}: {addr} is already in use")?;
                if let Some(h) = holder {
                    write!(f, " ({h})")?;
                }
                write!(f, "; choose another address or stop that process")?;
                if let Some(s) = share {
                    write!(f, ", or {s} to share it on purpose")?;
                }
                Ok(())
            }
            Error::Bind { key, addr, source, .. } => write!(f, "{key}: bind {addr}: {source}"),
            Error::Io(e) => write!(f, "{e}"),
        }
    }
}

impl Error {
    /// A bind failure of the address `key` names; finds the holder of an address in use.
    pub fn bind(key: impl Into<String>, addr: SocketAddr, source: io::Error, share: Option<&'static str>) -> Error {
        let holder = if source.kind() == io::ErrorKind::AddrInUse { crate::net::listen::holder(addr) } else { None };
        Error::Bind { key: key.into(), addr, source, holder, share }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Config(e) => Some(e),
            Error::Resolve { source, .. } | Error::Bind { source, .. } => Some(source),
            Error::Io(e) => Some(e),
            Error::Usage(_) | Error::Preflight(_) | Error::Output(_) => None,
        }
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Error::Config(e)
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}
