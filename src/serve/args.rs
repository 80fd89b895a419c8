//! `netforge serve`'s flags and their translation into [`ServeConfig`]. Values are checked here
//! and refused with one line naming the flag.

use std::time::Duration;

use clap::Args;

use crate::cli::usage;
use crate::config::{parse_ip_port, resolve_threads as threads};
use crate::error::Error;
use crate::net::tune::SockBufs;
use crate::serve::ServeConfig;
use crate::target::Mode;
use crate::tls::ServerCert;
use crate::units::{self, parse_int, parse_sockbuf, parse_threads, CONNS_MAX};

#[derive(Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port, printed on the first line).
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:8080")]
    pub(crate) listen: String,
    /// What to do with each connection.
    #[arg(long, default_value_t = Mode::Hold)]
    pub(crate) mode: Mode,
    /// Most connections held at once, 1..=16777216, counted over all reactors; beyond it clients
    /// wait in the kernel's listen backlog until one closes [default: 100000, or the open-file
    /// limit minus 64 when that is lower].
    #[arg(long = "max-conns", value_name = "N", allow_hyphen_values = true,
          value_parser = |s: &str| parse_int(s, 1, CONNS_MAX).map(|n| n as usize))]
    pub(crate) max_conns: Option<usize>,
    /// Reactor threads, 0..=1024, 0 = one per core [default: 0].
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = parse_threads)]
    pub(crate) threads: Option<usize>,
    /// Time between stats lines: whole seconds or a duration (500ms), 1ms to 365 days;
    /// 0 = no status lines, only the final report (the same in goon, serve and bp client).
    #[arg(short = 'i', long, value_name = "SECONDS", allow_hyphen_values = true, default_value = "1",
          value_parser = units::parse_interval)]
    pub(crate) interval: Duration,
    /// SO_SNDBUF for accepted sockets: 1KiB..=256MiB, or 0 for the kernel's default [default: 0].
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true, value_parser = parse_sockbuf)]
    pub(crate) sndbuf: Option<u64>,
    /// SO_RCVBUF for accepted sockets: 1KiB..=256MiB, or 0 for the kernel's default [default: 0].
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true, value_parser = parse_sockbuf)]
    pub(crate) rcvbuf: Option<u64>,
    /// Share the --listen address with other processes listening on it with SO_REUSEPORT (the
    /// kernel spreads new connections over all of them). Without it, an address another
    /// process listens on is refused.
    #[arg(long)]
    pub(crate) reuse_port: bool,
    /// Serve TLS on every connection (rustls; the modes then see plaintext): with a
    /// self-signed certificate made at start for the --listen address and `localhost`, or with
    /// --cert/--key.
    #[arg(long)]
    pub(crate) tls: bool,
    /// The certificate chain (PEM) for --tls, leaf first; needs --key.
    #[arg(long, value_name = "FILE", requires = "tls", requires = "key")]
    pub(crate) cert: Option<std::path::PathBuf>,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1) for --tls; needs --cert.
    #[arg(long, value_name = "FILE", requires = "tls", requires = "cert")]
    pub(crate) key: Option<std::path::PathBuf>,
    /// ALPN protocols --tls accepts, comma-separated, in the server's order of preference
    /// (e.g. h2,http/1.1): distinct names of 1..=255 bytes, at most 32, not `none`. A client
    /// that offers ALPN but none of these is refused with the no_application_protocol alert;
    /// one that offers no ALPN is served without a protocol. Without it any client is served
    /// and no protocol is negotiated.
    #[arg(long, value_name = "LIST", requires = "tls",
          value_parser = |s: &str| crate::tls::parse_alpn(s).map(|_| s.to_string()))]
    pub(crate) alpn: Option<String>,
    /// Print the resolved configuration (flags and defaults, threads and buffer sizes as they
    /// will run) as TOML and exit.
    #[arg(long)]
    pub(crate) print_config: bool,
}

pub(crate) fn serve_config(a: &ServeArgs) -> Result<ServeConfig, Error> {
    let listen = parse_ip_port(&a.listen).map_err(|e| usage(format!("--listen: {e}")))?;
    // The flags' parsers already checked every range.
    let max_conns = a.max_conns.unwrap_or_else(crate::serve::default_max_conns);
    let sockbuf = |v: Option<u64>| v.and_then(|v| units::sockbuf(v).ok().flatten()).map(|b| b as usize);
    let tls = match (a.tls, &a.cert, &a.key) {
        (false, _, _) => None,
        (true, Some(cert), Some(key)) => Some(ServerCert::Files { cert: cert.clone(), key: key.clone() }),
        (true, _, _) => Some(ServerCert::self_signed_for(listen.ip())),
    };
    let alpn = crate::tls::alpn_flag(a.alpn.as_deref())?;
    let tls_config = tls.as_ref().map(|c| crate::tls::server_config(c, &alpn)).transpose().map_err(usage)?;
    Ok(ServeConfig {
        alpn,
        tls,
        tls_config,
        listen,
        mode: a.mode,
        max_conns,
        threads: threads(a.threads),
        interval: a.interval,
        bufs: SockBufs { sndbuf: sockbuf(a.sndbuf), rcvbuf: sockbuf(a.rcvbuf) },
        reuse_port: a.reuse_port,
    })
}
