//! The top-level error. Only `main` prints it and maps it to an exit status; every message names
//! the action and the object (`bind 127.0.0.1:80: permission denied`) and fits on one line.

use std::fmt;
use std::io;
use std::net::SocketAddr;

use crate::conffile::ConfigError;

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
    Bind {
        addr: SocketAddr,
        source: io::Error,
    },
    Io(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(e) => write!(f, "{e}"),
            Error::Usage(m) => write!(f, "{m}"),
            Error::Preflight(m) => write!(f, "{m}"),
            Error::Resolve { host, source } => write!(f, "cannot resolve host {host:?}: {source}"),
            Error::Bind { addr, source } => write!(f, "bind {addr}: {source}"),
            Error::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Config(e) => Some(e),
            Error::Resolve { source, .. } | Error::Bind { source, .. } => Some(source),
            Error::Io(e) => Some(e),
            Error::Usage(_) | Error::Preflight(_) => None,
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
