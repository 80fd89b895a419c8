//! Reading TOML config files into typed structs, with errors that fit on one line and say where.
//!
//! Every config struct in netforge is `#[serde(deny_unknown_fields)]` (never `flatten`, which
//! silently disables it). Parse errors carry the file and toml's own line/column; validation
//! errors carry the file and the key path (`backend[2].address`).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// One-line config error: `FILE:LINE:COL: message` or `FILE: key.path: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: PathBuf,
    /// 1-based line and column, when the error points into the text.
    pub at: Option<(usize, usize)>,
    /// Dotted key path (`listener[0].address`), when the error concerns a key.
    pub key: Option<String>,
    pub msg: String,
}

impl ConfigError {
    /// A validation error about one key.
    pub fn key(path: &Path, key: impl Into<String>, msg: impl Into<String>) -> ConfigError {
        ConfigError { path: path.to_path_buf(), at: None, key: Some(key.into()), msg: msg.into() }
    }

    /// An error about the file as a whole (unreadable, empty of what is required).
    pub fn file(path: &Path, msg: impl Into<String>) -> ConfigError {
        ConfigError { path: path.to_path_buf(), at: None, key: None, msg: msg.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some((line, col)) = self.at {
            write!(f, ":{line}:{col}")?;
        }
        write!(f, ": ")?;
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        write!(f, "{}", self.msg)
    }
}

impl std::error::Error for ConfigError {}

/// Reads and parses `path`.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<(T, String), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::file(path, format!("cannot read: {e}")))?;
    let value = parse(path, &text)?;
    Ok((value, text))
}

/// Parses `text` (read from `path`) as TOML into `T`, mapping toml's error to one line.
pub fn parse<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let at = e.span().map(|span| line_col(text, span.start));
        // toml's message may span several lines (it adds a caret snippet in Display); the
        // `message()` accessor is the bare one-line reason.
        let msg = e.message().lines().next().unwrap_or("invalid TOML").trim().to_string();
        ConfigError { path: path.to_path_buf(), at, key: None, msg }
    })
}

/// 1-based line and column of byte offset `pos` in `text`.
pub fn line_col(text: &str, pos: usize) -> (usize, usize) {
    let pos = pos.min(text.len());
    let before = &text[..pos];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(pos, |nl| pos - nl - 1) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Demo {
        name: String,
        port: u16,
    }

    #[test]
    fn unknown_key_names_line_and_col() {
        let text = "name = \"a\"\nport = 1\nbogus = 2\n";
        let err = parse::<Demo>(Path::new("x.toml"), text).unwrap_err();
        let line = err.to_string();
        assert!(line.starts_with("x.toml:3:1: "), "{line}");
        assert!(line.contains("bogus"), "{line}");
        assert!(!line.contains('\n'), "{line}");
    }

    #[test]
    fn wrong_type_is_one_line() {
        let err = parse::<Demo>(Path::new("x.toml"), "name = \"a\"\nport = \"http\"\n").unwrap_err();
        assert_eq!(err.at.map(|a| a.0), Some(2));
        assert!(!err.to_string().contains('\n'));
    }

    #[test]
    fn key_error_display() {
        let e = ConfigError::key(Path::new("lb.toml"), "backend[1].weight", "must be > 0");
        assert_eq!(e.to_string(), "lb.toml: backend[1].weight: must be > 0");
    }
}
