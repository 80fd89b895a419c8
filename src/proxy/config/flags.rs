//! The quick-start flags (`--laddr`, `--lb`, `--timeout`, backends) → a [`ProxyConfig`]: the
//! flags are checked here, each refusal naming its flag, then written into the file's own
//! structs and validated as a file is, so the quick start takes every default the file would.

use std::path::Path;
use std::time::Duration;

use super::defaults::*;
use super::file::*;
use super::types::*;
use super::validate::{validate, Cx};
use crate::config::{parse_address, system_resolve, Dur, HostPort, Resolver};
use crate::proxy::lb::Balance;

/// The quick-start interface: `netforge proxy --laddr ADDR --lb ALGO --timeout DUR BACKEND...`.
/// `timeout` is the backend connect timeout; everything else takes its default. One listener
/// (`listener0`) forwards to one group (`default`) of weight-1 backends named as written.
pub fn from_flags(laddr: &str, lb: &str, timeout: Duration, backends: &[String]) -> Result<ProxyConfig, String> {
    from_flags_with(laddr, lb, timeout, backends, &mut system_resolve)
}

pub(super) fn from_flags_with(
    laddr: &str,
    lb: &str,
    timeout: Duration,
    backends: &[String],
    resolve: Resolver<'_>,
) -> Result<ProxyConfig, String> {
    // An address equal to the admin address (the default one, or --admin) is refused once
    // --admin is applied (`proxy::args::proxy_config`).
    let address = parse_address(laddr, resolve).map_err(|e| format!("--laddr: {e}"))?;
    let balance: Balance = lb.parse().map_err(|e| format!("--lb: {e}"))?;
    if timeout.is_zero() {
        return Err("--timeout: must be > 0 (e.g. 3s)".into());
    }
    if backends.is_empty() {
        return Err("no backend given (list them after the flags, e.g. 127.0.0.1:8001 127.0.0.1:8002)".into());
    }
    let mut list: Vec<BackendFile> = Vec::with_capacity(backends.len());
    let mut seen: std::collections::HashMap<std::net::SocketAddr, usize> = std::collections::HashMap::new();
    for (i, text) in backends.iter().enumerate() {
        let addr = parse_address(text, resolve).map_err(|e| format!("backend {}: {e}", i + 1))?;
        if addr.port() == 0 {
            return Err(format!("backend {}: {text:?} has port 0, which cannot be connected to", i + 1));
        }
        if super::topology::reaches(addr, address) {
            return Err(format!("backend {}: {text:?} is --laddr {address} itself: a forwarding loop", i + 1));
        }
        if let Some(j) = seen.insert(super::topology::as_dialed(addr), i) {
            return Err(format!("backend {}: {text:?} duplicates backend {} (list each backend once)", i + 1, j + 1));
        }
        list.push(BackendFile {
            name: Some(text.trim().to_string()),
            address: HostPort::from(addr),
            group: None,
            weight: None,
            backup: None,
            state: None,
        });
    }
    let file = FileConfig {
        balance: Some(balance),
        timeouts: Some(TimeoutsFile { connect: Some(Dur(timeout)), ..TimeoutsFile::default() }),
        // Checked against the listener once --admin is known.
        admin: Some(AdminFile { address: Some(String::new()) }),
        listener: vec![ListenerFile {
            name: None,
            address: HostPort::from(address),
            group: None,
            max_connections: None,
            congestion: None,
        }],
        backend: list,
        ..FileConfig::default()
    };
    let cx = Cx { path: Path::new(crate::conffile::FLAGS_LABEL), text: "" };
    let mut cfg = validate(file, &cx, resolve).map_err(|e| e.to_string())?;
    cfg.source = None;
    cfg.admin = Some(DEFAULT_ADMIN_ADDRESS);
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::config::fixtures::*;
    use std::net::SocketAddr;

    #[test]
    fn flags() {
        let b = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<String>>();
        let secs = Duration::from_secs;
        let ok = from_flags_with(
            "127.0.0.1:4000",
            "P2C",
            secs(3),
            &b(&["127.0.0.1:8001", "localhost:8002"]),
            &mut fake_resolve,
        )
        .unwrap();
        assert_eq!(ok.source, None);
        assert_eq!(ok.balance, Balance::P2c);
        assert_eq!(ok.timeouts.connect, secs(3));
        assert_eq!(ok.listeners[0].address, v4([127, 0, 0, 1], 4000));
        let g = &ok.groups[0];
        assert_eq!((g.name.as_str(), g.balance), (DEFAULT_GROUP, Balance::P2c));
        let got: Vec<(&str, SocketAddr)> = g.backends.iter().map(|x| (x.name.as_str(), x.address)).collect();
        assert_eq!(
            got,
            vec![("127.0.0.1:8001", v4([127, 0, 0, 1], 8001)), ("localhost:8002", v4([127, 0, 0, 1], 8002))]
        );

        // (laddr, lb, timeout, backends, fragment of the error)
        let bad: &[(&str, &str, Duration, &[&str], &str)] = &[
            ("127.0.0.1", "p2c", secs(3), &["127.0.0.1:8001"], "--laddr"),
            ("127.0.0.1:4000", "fastest", secs(3), &["127.0.0.1:8001"], "--lb"),
            ("127.0.0.1:4000", "p2c", Duration::ZERO, &["127.0.0.1:8001"], "--timeout"),
            ("127.0.0.1:4000", "p2c", secs(3), &[], "no backend"),
            ("127.0.0.1:4000", "p2c", secs(3), &["127.0.0.1:8001", "nosuch.invalid:1"], "backend 2"),
            ("127.0.0.1:4000", "p2c", secs(3), &["127.0.0.1:0"], "port 0"),
            ("127.0.0.1:4000", "p2c", secs(3), &["127.0.0.1:8001", "localhost:8001"], "duplicates backend 1"),
            (
                "127.0.0.1:4000",
                "p2c",
                secs(3),
                &["127.0.0.1:8001", "localhost:4000"],
                "backend 2: \"localhost:4000\" is --laddr",
            ),
            ("0.0.0.0:4000", "p2c", secs(3), &["127.0.0.1:4000"], "a forwarding loop"),
        ];
        for (laddr, lb, timeout, backends, want) in bad {
            let err = from_flags_with(laddr, lb, *timeout, &b(backends), &mut fake_resolve).unwrap_err();
            assert!(err.contains(want) && !err.contains('\n'), "{err:?} lacks {want:?}");
        }
    }
}
