//! Addresses as files and flags write them: `host:port`, `ip:port`, `[v6]:port`. One parser
//! ([`HostPort::parse`]) for every role, one literal-only form ([`parse_ip_port`]) for what is
//! bound, and one resolver, called once at load time (the reactors never block on DNS).

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, ToSocketAddrs};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;

/// Examples named when an address is refused.
const EXAMPLES: &str = "e.g. 127.0.0.1:8080, [::1]:8080, example.com:443";

/// A `host:port` as written: the host a name or an IP literal (IPv6 without brackets), not yet
/// resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// Host name or IP literal, IPv6 without brackets.
    pub host: String,
    pub port: u16,
}

impl HostPort {
    /// Parses `host:port`, `1.2.3.4:port` or `[::1]:port` of a peer to connect to (port 0
    /// refused). Every refusal is one line naming what is wrong.
    pub fn parse(text: &str) -> Result<HostPort, String> {
        let hp = HostPort::parse_any_port(text)?;
        if hp.port == 0 {
            return Err(format!("{:?} has port 0, which cannot be connected to", text.trim()));
        }
        Ok(hp)
    }

    /// [`HostPort::parse`] with port 0 allowed (a listener's "any free port"; the caller says
    /// where it is refused).
    pub fn parse_any_port(text: &str) -> Result<HostPort, String> {
        let t = text.trim();
        if let Ok(a) = t.parse::<SocketAddr>() {
            return Ok(HostPort { host: a.ip().to_string(), port: a.port() });
        }
        let not = |why: String| format!("{t:?} is not HOST:PORT: {why} ({EXAMPLES})");
        if t.is_empty() {
            return Err(not("empty address".into()));
        }
        let port_of =
            |p: &str| p.parse::<u16>().map_err(|_| not(format!("bad port {p:?} (expected a number in 0..=65535)")));
        if let Some(rest) = t.strip_prefix('[') {
            let Some((ip, port)) = rest.split_once("]:") else {
                return Err(not("no port after the IPv6 address".into()));
            };
            if ip.parse::<Ipv6Addr>().is_err() {
                return Err(not(format!("{ip:?} is not an IPv6 address")));
            }
            // A valid IPv6 address and port would have parsed above.
            return Err(port_of(port).err().unwrap_or_else(|| not("bad address".into())));
        }
        let Some((host, port)) = t.rsplit_once(':') else {
            return Err(not("no port".into()));
        };
        if host.contains(':') {
            return Err(format!("{t:?}: write IPv6 addresses in brackets, e.g. [::1]:8080"));
        }
        let port = port_of(port)?;
        if host.is_empty() {
            return Err(not("no host".into()));
        }
        if host.chars().all(|c| c.is_ascii_digit() || c == '.') {
            return Err(not(format!("{host:?} is not an IPv4 address")));
        }
        let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
        if host.len() > 253 || !host.chars().all(valid) {
            return Err(not(format!("{host:?} is not a valid host name")));
        }
        Ok(HostPort { host: host.to_string(), port })
    }

    /// The address, resolving a host name through `resolve`.
    pub fn resolve(&self, resolve: Resolver<'_>) -> Result<SocketAddr, String> {
        let a = match self.host.parse::<IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, self.port),
            Err(_) => resolve(&self.host, self.port)
                .map_err(|e| format!("cannot resolve {:?}: {e} (check the name, or use an IP address)", self.host))?,
        };
        unicast(a)
    }

    /// The value for an HTTP `Host` header (brackets around IPv6 literals).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.authority())
    }
}

impl From<SocketAddr> for HostPort {
    fn from(a: SocketAddr) -> Self {
        HostPort { host: a.ip().to_string(), port: a.port() }
    }
}

impl<'de> Deserialize<'de> for HostPort {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<HostPort, D::Error> {
        let s = String::deserialize(d)?;
        HostPort::parse_any_port(&s).map_err(serde::de::Error::custom)
    }
}

impl Serialize for HostPort {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.authority())
    }
}

/// `ip:port`, `[v6]:port` or `host:port` (resolved through `resolve`).
pub fn parse_address(text: &str, resolve: Resolver<'_>) -> Result<SocketAddr, String> {
    HostPort::parse_any_port(text)?.resolve(resolve)
}

/// `ip:port` or `[v6]:port`, no name: what a server binds.
pub fn parse_ip_port(text: &str) -> Result<SocketAddr, String> {
    let t = text.trim();
    let a: SocketAddr = t
        .parse()
        .map_err(|_| format!("{t:?} is not IP:PORT (e.g. 127.0.0.1:8080, [::]:8080); host names are not resolved"))?;
    unicast(a).map_err(|e| format!("{t:?}: {e}"))
}

/// TCP needs a unicast address: a multicast or the broadcast one is refused.
fn unicast(a: SocketAddr) -> Result<SocketAddr, String> {
    let broadcast = matches!(a.ip(), IpAddr::V4(v4) if v4.is_broadcast());
    if a.ip().is_multicast() || broadcast {
        return Err(format!("{} is a multicast or broadcast address; TCP needs a unicast one", a.ip()));
    }
    Ok(a)
}

/// `host` without the brackets around an IPv6 literal; unbalanced or stray brackets are refused.
fn unbracket(host: &str) -> Result<&str, String> {
    let inner = match host.strip_prefix('[') {
        Some(rest) => rest.strip_suffix(']').ok_or_else(|| format!("{host:?}: a '[' without its ']'"))?,
        None => host,
    };
    if inner.contains(['[', ']']) {
        return Err(format!("{host:?}: brackets go only around a whole IPv6 address ([::1])"));
    }
    Ok(inner)
}

/// Resolves `host` (not an IP literal) and `port` to one address.
pub type Resolver<'r> = &'r mut dyn FnMut(&str, u16) -> Result<SocketAddr, String>;

/// The first address the system resolver returns for `host` (brackets allowed around an IPv6
/// literal; an IP literal needs no lookup), in its RFC 6724 order. Blocking: load time only.
fn lookup(host: &str, port: u16) -> io::Result<SocketAddr> {
    let bare = unbracket(host).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let mut addrs = (bare, port).to_socket_addrs()?;
    addrs.next().ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "the name has no addresses"))
}

/// [`lookup`] as a [`Resolver`].
pub fn system_resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    lookup(host, port).map_err(|e| e.to_string())
}

/// Resolves a target host given on the command line (goon's HOST, bp client's server) once,
/// before any reactor runs.
pub fn resolve(host: &str, port: u16) -> Result<SocketAddr, Error> {
    let bare = unbracket(host).map_err(Error::Usage)?;
    if bare.is_empty() {
        return Err(Error::Usage("empty host".into()));
    }
    // A config's addresses are checked once, in HostPort::resolve; a command line's here.
    lookup(bare, port)
        .and_then(|a| unicast(a).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e)))
        .map_err(|source| Error::Resolve { host: bare.into(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(host: &str, port: u16) -> Result<SocketAddr, String> {
        match host {
            "localhost" => Ok(SocketAddr::from(([127, 0, 0, 1], port))),
            _ => Err("Name or service not known".into()),
        }
    }

    #[test]
    fn one_parser_for_every_form() {
        let hp = HostPort::parse_any_port(" 0.0.0.0:0 ").unwrap();
        assert_eq!((hp.host.as_str(), hp.port), ("0.0.0.0", 0));
        let bad = [
            ("", "empty address"),
            ("localhost", "no port"),
            (":80", "no host"),
            ("[::1]", "no port after the IPv6 address"),
            ("[zz]:80", "\"zz\" is not an IPv6 address"),
            ("::1:80", "\"::1:80\": write IPv6 addresses in brackets"),
            ("1.2.3:80", "\"1.2.3\" is not an IPv4 address"),
            ("host name:80", "not a valid host name"),
            ("a/b:80", "not a valid host name"),
            ("h:-1", "bad port \"-1\""),
            ("h:99999", "bad port \"99999\""),
        ];
        assert_eq!(HostPort::parse("h:0").unwrap_err(), "\"h:0\" has port 0, which cannot be connected to");
        for (text, want) in bad {
            let e = HostPort::parse(text).unwrap_err();
            assert!(e.contains(want) && !e.contains('\n'), "{text:?}: {e}");
        }
        let hp = HostPort::parse("localhost:1").unwrap();
        assert_eq!(hp.resolve(&mut fake), Ok(SocketAddr::from(([127, 0, 0, 1], 1))));
        let e = HostPort::parse("nosuch.invalid:1").unwrap().resolve(&mut fake).unwrap_err();
        assert!(e.starts_with("cannot resolve \"nosuch.invalid\": Name or service not known"), "{e}");
        assert_eq!(parse_ip_port("[::1]:9"), Ok("[::1]:9".parse().unwrap()));
        assert!(parse_ip_port("localhost:80").unwrap_err().ends_with("host names are not resolved"));
    }

    #[test]
    fn host_port_forms() {
        let ok = [
            ("127.0.0.1:8080", "127.0.0.1", 8080, "127.0.0.1:8080"),
            ("[::1]:80", "::1", 80, "[::1]:80"),
            ("lb.example.com:443", "lb.example.com", 443, "lb.example.com:443"),
        ];
        for (text, host, port, authority) in ok {
            let hp = HostPort::parse(text).unwrap();
            assert_eq!((hp.host.as_str(), hp.port, hp.authority()), (host, port, authority.to_string()));
        }
        for bad in ["", ":80", "host", "host:0", "host:99999", "[::1:80", "[nope]:80", "a b:80", "a/b:80"] {
            assert!(HostPort::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn addresses() {
        let v4 = |a: [u8; 4], port: u16| SocketAddr::from((a, port));
        let good: &[(&str, SocketAddr)] = &[
            ("127.0.0.1:80", v4([127, 0, 0, 1], 80)),
            (" 10.1.2.3:65535 ", v4([10, 1, 2, 3], 65535)),
            ("[::1]:8001", SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 8001)),
            ("localhost:1", v4([127, 0, 0, 1], 1)),
            ("0.0.0.0:0", SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0)),
        ];
        for (text, want) in good {
            assert_eq!(parse_address(text, &mut fake), Ok(*want), "{text}");
        }
        for bad in ["", "localhost", ":80", "[::1]", "[zz]:80", "::1:80", "1.2.3:80", "host name:80", "h:-1", "h:http"]
        {
            assert!(parse_address(bad, &mut fake).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn v6_literals_resolve_without_dns() {
        assert_eq!(resolve("::1", 80).unwrap(), "[::1]:80".parse().unwrap());
        assert_eq!(resolve("[::1]", 80).unwrap(), "[::1]:80".parse().unwrap());
        assert!(resolve("", 80).is_err());
    }
}

#[cfg(test)]
mod unicast_tests {
    use super::*;

    /// TCP addresses are unicast, and brackets balance: every parser refuses the rest.
    #[test]
    fn multicast_broadcast_and_stray_brackets_are_refused() {
        for bad in ["224.0.0.1:80", "239.1.1.1:0", "255.255.255.255:80", "[ff02::1]:80"] {
            assert!(parse_ip_port(bad).unwrap_err().contains("TCP needs a unicast one"), "{bad}");
            let e = parse_address(bad, &mut |_, _| Err("no lookup".into())).unwrap_err();
            assert!(e.contains("TCP needs a unicast one"), "{bad}: {e}");
        }
        assert!(parse_ip_port("127.0.0.1:80").is_ok() && parse_ip_port("[::1]:0").is_ok());
        assert!(resolve("[::1", 80).unwrap_err().to_string().contains("a '[' without its ']'"));
        assert!(resolve("::1]", 80).unwrap_err().to_string().contains("brackets go only around"));
        assert!(resolve("224.0.0.1", 80).unwrap_err().to_string().contains("unicast"));
        assert_eq!(resolve("[::1]", 80).unwrap(), "[::1]:80".parse().unwrap());
        assert_eq!(resolve("127.0.0.1", 80).unwrap(), "127.0.0.1:80".parse().unwrap());
    }
}
