//! Addresses as written (`ip:port`, `[v6]:port`, `host:port`), hostnames resolved once, at load
//! time.

use std::net::{Ipv6Addr, SocketAddr, ToSocketAddrs};

/// Resolves `host` (not an IP literal) and `port` to one address.
pub(super) type Resolver<'r> = &'r mut dyn FnMut(&str, u16) -> Result<SocketAddr, String>;

/// The first address the system resolver returns (its RFC 6724 order). Blocking: load time only.
pub(super) fn system_resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    let mut addrs = (host, port).to_socket_addrs().map_err(|e| e.to_string())?;
    addrs.next().ok_or_else(|| "the name has no addresses".to_string())
}

/// `ip:port`, `[v6]:port` or `host:port` (resolved through `resolve`).
pub(super) fn parse_address(text: &str, resolve: Resolver<'_>) -> Result<SocketAddr, String> {
    let t = text.trim();
    if let Ok(a) = t.parse::<SocketAddr>() {
        return Ok(a);
    }
    const EXPECTED: &str = "expected host:port, ip:port or [v6]:port";
    if t.is_empty() {
        return Err(format!("empty address ({EXPECTED})"));
    }
    let port_of = |p: &str| {
        p.parse::<u16>().map_err(|_| format!("bad port {p:?} in address {t:?} (expected a number in 0..=65535)"))
    };
    if let Some(rest) = t.strip_prefix('[') {
        let Some((ip, port)) = rest.split_once("]:") else {
            return Err(format!("bad address {t:?}: no port after the IPv6 address ({EXPECTED})"));
        };
        if ip.parse::<Ipv6Addr>().is_err() {
            return Err(format!("bad address {t:?}: {ip:?} is not an IPv6 address ({EXPECTED})"));
        }
        return Err(port_of(port).err().unwrap_or_else(|| format!("bad address {t:?} ({EXPECTED})")));
    }
    let Some((host, port)) = t.rsplit_once(':') else {
        return Err(format!("bad address {t:?}: no port ({EXPECTED})"));
    };
    if host.contains(':') {
        return Err(format!("bad address {t:?}: write an IPv6 address in brackets, as [::1]:8001"));
    }
    let port = port_of(port)?;
    if host.is_empty() {
        return Err(format!("bad address {t:?}: no host ({EXPECTED})"));
    }
    if host.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(format!("bad address {t:?}: {host:?} is not an IPv4 address"));
    }
    if !host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_') {
        return Err(format!("bad address {t:?}: {host:?} is not a valid host name ({EXPECTED})"));
    }
    resolve(host, port).map_err(|e| format!("cannot resolve {host:?}: {e} (check the name, or use an IP address)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::config::fixtures::*;
    use crate::proxy::config::from_str;
    use std::net::{IpAddr, Ipv4Addr};
    use std::path::Path;

    #[test]
    fn addresses() {
        let good: &[(&str, SocketAddr)] = &[
            ("127.0.0.1:80", v4([127, 0, 0, 1], 80)),
            (" 10.1.2.3:65535 ", v4([10, 1, 2, 3], 65535)),
            ("[::1]:8001", SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 8001)),
            ("localhost:1", v4([127, 0, 0, 1], 1)),
            ("0.0.0.0:0", SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)),
        ];
        for (text, want) in good {
            assert_eq!(parse_address(text, &mut fake_resolve), Ok(*want), "{text}");
        }
        for bad in ["", "localhost", ":80", "[::1]", "[zz]:80", "::1:80", "1.2.3:80", "host name:80", "h:-1", "h:http"]
        {
            assert!(parse_address(bad, &mut fake_resolve).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn system_resolver_reads_localhost() {
        let text = MIN.replace("127.0.0.1:8001", "localhost:8001");
        let cfg = from_str(Path::new("lb.toml"), &text).unwrap();
        let b = &cfg.groups[0].backends[0];
        assert!(b.address.ip().is_loopback() && b.address.port() == 8001, "{b:?}");
        assert_eq!(b.name, "localhost:8001");
    }
}
