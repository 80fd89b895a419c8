//! TLS shared by goon (the client side) and serve and goon's built-in sink (the server side),
//! on the reactors as they are: rustls' connections are sans-io and [`Stream`] drives one over
//! a non-blocking mio socket. No async runtime. The crypto is rustls' `ring` provider.
//!
//! Client ([`ClientOptions::config`]): verification against the system's roots
//! (rustls-native-certs, read once before any reactor starts) or `--ca FILE`, `--insecure` to
//! accept any certificate (handshake signatures are still checked: that is the protocol,
//! not the trust decision), SNI from the host name or `--sni`, `--alpn`, and session
//! resumption for `--tls-resume` (one cache per reactor, so no lock is shared between
//! reactors; off otherwise, so every handshake is a full one). Server ([`server_config`]): a
//! self-signed certificate made at start by rcgen for the listen name, or `--cert`/`--key`
//! PEM files; stateless session tickets, so resumption costs the server no memory.
//!
//! Roles never import each other: goon and serve both come here.

pub(crate) mod cause;
pub(crate) mod stream;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

pub use cause::{TlsCause, CAUSES};
pub use stream::{Handshake, Stream};

/// Sessions each reactor's resumption cache keeps (`--tls-resume`).
pub const RESUME_CACHE: usize = 4096;
/// Largest certificate, key or CA file read.
pub const MAX_PEM_BYTES: u64 = 1 << 20;
/// Longest `--alpn` protocol name (RFC 7301: 1..=255 bytes) and most names.
pub const ALPN_NAME_MAX: usize = 255;
pub const ALPN_MAX: usize = 32;
/// The report's key for handshakes where no protocol was negotiated; no `--alpn` name may
/// take it.
pub const ALPN_NONE: &str = "none";

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// goon's TLS flags, checked.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ClientOptions {
    /// `--sni`: the name sent and verified instead of the host's.
    pub sni: Option<String>,
    /// `--alpn`: protocols offered, in order.
    pub alpn: Vec<String>,
    pub insecure: bool,
    pub resume: bool,
    /// `--ca`: trust these roots instead of the system's.
    pub ca: Option<PathBuf>,
}

/// The `--alpn` flag of goon and serve, resolved: the names (none without the flag). clap has
/// already checked the value with [`parse_alpn`]; a failure here still names the flag.
pub fn alpn_flag(list: Option<&str>) -> Result<Vec<String>, crate::error::Error> {
    list.map_or(Ok(Vec::new()), |l| parse_alpn(l).map_err(|e| crate::cli::usage(format!("--alpn: {e}"))))
}

/// `--alpn h2,http/1.1` (goon's offer and serve's accepted list alike): comma-separated,
/// distinct names of 1..=255 bytes, at most [`ALPN_MAX`], none of them [`ALPN_NONE`].
pub fn parse_alpn(s: &str) -> Result<Vec<String>, String> {
    let names: Vec<String> = s.split(',').map(|p| p.trim().to_string()).collect();
    if let Some(bad) = names.iter().find(|n| n.is_empty() || n.len() > ALPN_NAME_MAX) {
        return Err(format!("{s:?}: protocol name {bad:?} must be 1..={ALPN_NAME_MAX} bytes (comma-separated list)"));
    }
    if names.len() > ALPN_MAX {
        return Err(format!("{s:?}: {} protocols, at most {ALPN_MAX}", names.len()));
    }
    if let Some((i, n)) = names.iter().enumerate().find(|(i, n)| names[..*i].contains(n)) {
        return Err(format!("{s:?}: protocol {n:?} is listed twice (again at position {})", i + 1));
    }
    if names.iter().any(|n| n == ALPN_NONE) {
        return Err(format!(
            "{s:?}: {ALPN_NONE:?} is reserved: the report counts handshakes that negotiated no protocol under it"
        ));
    }
    Ok(names)
}

/// `--sni NAME`: a DNS name or an IP address.
pub fn parse_sni(s: &str) -> Result<String, String> {
    let t = s.trim();
    ServerName::try_from(t.to_string()).map_err(|_| format!("{t:?} is not a DNS name or an IP address"))?;
    Ok(t.to_string())
}

/// The name goon verifies and sends as SNI: `--sni`, else the host as given (an IP address is
/// verified against the certificate's IP names and sends no SNI, as TLS requires).
pub fn server_name(sni: Option<&str>, host: &str) -> Result<ServerName<'static>, String> {
    let name = sni.unwrap_or(host).trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(name.to_string()).map_err(|_| {
        format!("{name:?} is not a DNS name or an IP address to verify the certificate against; give --sni NAME")
    })
}

/// Reads a PEM file whole (bounded, no blocking on a FIFO); errors name the flag and file.
fn read_pem(flag: &str, path: &Path) -> Result<Vec<u8>, String> {
    use crate::conffile::{read_regular, ReadFailure};
    read_regular(path, MAX_PEM_BYTES).map_err(|f| {
        let why = match f {
            ReadFailure::Open(e) => format!("cannot open: {e}"),
            ReadFailure::Read(e) => format!("cannot read: {e}"),
            ReadFailure::NotRegular(what) => format!("cannot read: {what}; give a regular PEM file"),
            ReadFailure::TooBig(_) => format!("larger than {} KiB; not a PEM file", MAX_PEM_BYTES >> 10),
        };
        format!("{flag} {}: {why}", path.display())
    })
}

fn read_certs(flag: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read_pem(flag, path)?;
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
    match certs {
        Ok(c) if !c.is_empty() => Ok(c),
        Ok(_) => Err(format!("{flag} {}: no PEM certificate (BEGIN CERTIFICATE) in it", path.display())),
        Err(e) => Err(format!("{flag} {}: not valid PEM: {e}", path.display())),
    }
}

impl ClientOptions {
    /// The client configuration every reactor starts from (resumption off; see
    /// [`for_reactor`]). Reads the roots: blocking, so before the reactors start.
    pub fn config(&self) -> Result<Arc<ClientConfig>, String> {
        self.config_trusting(None)
    }

    /// [`ClientOptions::config`], trusting only `root` when it is given (goon's built-in sink's
    /// own certificate).
    pub fn config_trusting(&self, root: Option<&CertificateDer<'static>>) -> Result<Arc<ClientConfig>, String> {
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("--tls: {e}"))?;
        let mut cfg = if self.insecure {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(AcceptAny(provider))).with_no_client_auth()
        } else {
            let mut roots = RootCertStore::empty();
            match &self.ca {
                None if root.is_some() => {
                    roots.add_parsable_certificates(root.cloned());
                }
                Some(path) => {
                    let (added, _) = roots.add_parsable_certificates(read_certs("--ca", path)?);
                    if added == 0 {
                        return Err(format!("--ca {}: no usable CA certificate in it", path.display()));
                    }
                }
                None => {
                    let found = rustls_native_certs::load_native_certs();
                    let (added, _) = roots.add_parsable_certificates(found.certs);
                    if added == 0 {
                        let why = found.errors.first().map_or(String::new(), |e| format!(" ({e})"));
                        return Err(format!(
                            "--tls: no trusted root certificates found on this system{why}; give --ca FILE or --insecure"
                        ));
                    }
                }
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        };
        cfg.alpn_protocols = self.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        cfg.resumption = Resumption::disabled();
        Ok(Arc::new(cfg))
    }
}

/// One reactor's configuration: `base` itself, or with `--tls-resume` a copy with its own
/// session cache (the reactor's connections resume each other's sessions, and no cache lock
/// is shared between reactors).
pub fn for_reactor(base: &Arc<ClientConfig>, resume: bool) -> Arc<ClientConfig> {
    if !resume {
        return base.clone();
    }
    let mut cfg = (**base).clone();
    cfg.resumption = Resumption::in_memory_sessions(RESUME_CACHE);
    Arc::new(cfg)
}

/// Accepts any certificate (`--insecure`); the handshake's signatures are still verified
/// with the provider's algorithms, so the peer must hold the key of what it presented.
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Where the server's certificate comes from.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerCert {
    /// Made at start by rcgen, self-signed, for these names (DNS names and IP addresses).
    SelfSigned(Vec<String>),
    /// `--cert FILE --key FILE`.
    Files { cert: PathBuf, key: PathBuf },
}

impl ServerCert {
    /// A self-signed certificate for a listen address: its IP (the unspecified address adds
    /// 127.0.0.1 and ::1), and `localhost`.
    pub fn self_signed_for(listen: std::net::IpAddr) -> ServerCert {
        let mut names = vec!["localhost".to_string()];
        if listen.is_unspecified() {
            names.extend(["127.0.0.1".to_string(), "::1".to_string()]);
        } else {
            names.push(listen.to_string());
        }
        ServerCert::SelfSigned(names)
    }
}

/// The server configuration: its certificate (made or read), stateless tickets, and the ALPN
/// protocols it accepts, in its order of preference. With `alpn` empty any client is served
/// and no protocol is negotiated; otherwise a client that offers ALPN but none of `alpn` is
/// refused with the `no_application_protocol` alert (a client that offers no ALPN at all is
/// served without a protocol, as RFC 7301 has it).
pub fn server_config(cert: &ServerCert, alpn: &[String]) -> Result<Arc<ServerConfig>, String> {
    server_config_and_chain(cert, alpn).map(|(c, _)| c)
}

/// [`server_config`] and the certificate chain it presents.
pub fn server_config_and_chain(
    cert: &ServerCert,
    alpn: &[String],
) -> Result<(Arc<ServerConfig>, Vec<CertificateDer<'static>>), String> {
    let (chain, key): (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) = match cert {
        ServerCert::SelfSigned(names) => {
            let made = rcgen::generate_simple_self_signed(names.clone())
                .map_err(|e| format!("--tls: cannot make a self-signed certificate: {e}"))?;
            let key = PrivateKeyDer::try_from(made.key_pair.serialize_der())
                .map_err(|e| format!("--tls: the generated key: {e}"))?;
            (vec![made.cert.der().clone()], key)
        }
        ServerCert::Files { cert, key } => {
            let chain = read_certs("--cert", cert)?;
            let pem = read_pem("--key", key)?;
            let k = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
                rustls::pki_types::pem::Error::NoItemsFound => {
                    format!("--key {}: no PEM private key (BEGIN PRIVATE KEY) in it", key.display())
                }
                e => format!("--key {}: not a valid PEM private key: {e}", key.display()),
            })?;
            (chain, k)
        }
    };
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("--tls: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain.clone(), key)
        .map_err(|e| match cert {
            ServerCert::Files { cert, key } => match e {
                rustls::Error::InconsistentKeys(_) => format!(
                    "--cert {} / --key {}: the private key does not belong to the certificate",
                    cert.display(),
                    key.display()
                ),
                // rustls words a certificate it cannot parse as a peer's.
                rustls::Error::InvalidCertificate(c) => {
                    format!("--cert {}: the certificate does not parse ({c:?})", cert.display())
                }
                e => format!("--cert {} / --key {}: {e}", cert.display(), key.display()),
            },
            ServerCert::SelfSigned(_) => format!("--tls: {e}"),
        })?;
    cfg.ticketer = rustls::crypto::ring::Ticketer::new().map_err(|e| format!("--tls: session tickets: {e}"))?;
    cfg.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Ok((Arc::new(cfg), chain))
}

/// A server-side TLS counter pair, for serve's lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerTlsStats {
    /// Handshakes completed.
    pub handshakes: u64,
    /// Connections that ended before their handshake completed (a TLS error, EOF, reset).
    pub failed: u64,
}

impl ServerTlsStats {
    pub fn merge(&mut self, o: &ServerTlsStats) {
        self.handshakes += o.handshakes;
        self.failed += o.failed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpn_lists() {
        assert_eq!(parse_alpn("h2,http/1.1").unwrap(), ["h2", "http/1.1"]);
        assert_eq!(parse_alpn(" h2 ").unwrap(), ["h2"]);
        for bad in ["", "h2,", ",h2", "a,,b"] {
            assert!(parse_alpn(bad).unwrap_err().contains("must be 1..=255 bytes"), "{bad:?}");
        }
        assert!(parse_alpn(&"x".repeat(256)).is_err());
        let many: Vec<String> = (0..33).map(|i| format!("p{i}")).collect();
        assert!(parse_alpn(&many.join(",")).unwrap_err().contains("at most 32"));
        assert_eq!(parse_alpn(&many[..32].join(",")).unwrap().len(), 32);
        let e = parse_alpn("h2,http/1.1,h2").unwrap_err();
        assert!(e.contains("protocol \"h2\" is listed twice (again at position 3)"), "{e}");
        assert!(parse_alpn("h2,none").unwrap_err().contains("\"none\" is reserved"));
        assert_eq!(parse_alpn("None").unwrap(), ["None"], "ALPN names are case-sensitive bytes");
    }

    #[test]
    fn names() {
        assert_eq!(parse_sni("example.com").unwrap(), "example.com");
        assert!(parse_sni("bad name!").is_err());
        assert!(matches!(server_name(None, "127.0.0.1").unwrap(), ServerName::IpAddress(_)));
        assert!(matches!(server_name(None, "[::1]").unwrap(), ServerName::IpAddress(_)));
        assert!(matches!(server_name(Some("a.example"), "127.0.0.1").unwrap(), ServerName::DnsName(_)));
        assert!(server_name(None, "not a name").unwrap_err().contains("give --sni NAME"));
    }

    #[test]
    fn server_config_errors_name_the_flag_and_file() {
        let dir = std::env::temp_dir().join(format!("netforge-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "hello\n").unwrap();
        let missing = dir.join("missing.pem");
        let files = |c: &Path, k: &Path| ServerCert::Files { cert: c.to_path_buf(), key: k.to_path_buf() };
        let e = server_config(&files(&missing, &junk), &[]).unwrap_err();
        assert!(e.starts_with(&format!("--cert {}: cannot open", missing.display())), "{e}");
        let e = server_config(&files(&junk, &junk), &[]).unwrap_err();
        assert!(e.starts_with(&format!("--cert {}: no PEM certificate", junk.display())), "{e}");
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let cert = dir.join("cert.pem");
        std::fs::write(&cert, made.cert.pem()).unwrap();
        let e = server_config(&files(&cert, &junk), &[]).unwrap_err();
        assert!(e.starts_with(&format!("--key {}: no PEM private key", junk.display())), "{e}");
        let key = dir.join("key.pem");
        std::fs::write(&key, made.key_pair.serialize_pem()).unwrap();
        assert!(server_config(&files(&cert, &key), &[]).is_ok());
        let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let other_key = dir.join("other.pem");
        std::fs::write(&other_key, other.key_pair.serialize_pem()).unwrap();
        let e = server_config(&files(&cert, &other_key), &[]).unwrap_err();
        assert!(e.starts_with("--cert "), "{e}");
        let alpn = ["h2".to_string(), "http/1.1".to_string()];
        let c = server_config(&ServerCert::self_signed_for([127, 0, 0, 1].into()), &alpn).unwrap();
        assert_eq!(c.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
