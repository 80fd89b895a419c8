//! The named defaults and bounds of every `lb.toml` key and quick-start flag.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use super::types::{AdminState, SpliceMode};
use crate::net::tune::Congestion;
use crate::proxy::lb::Balance;

/// Reactor threads; 0 = one per core (`available_parallelism()`).
pub const DEFAULT_THREADS: usize = 0;
/// Upper bound on `threads`.
pub const MAX_THREADS: usize = crate::units::THREADS_MAX as usize;
/// Global cap on client sessions (and default per-listener cap).
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// `max_connections` when the file (or the quick start) does not set it:
/// [`DEFAULT_MAX_CONNECTIONS`], or what the (raised) open-file limit allows at two descriptors
/// per session past [`crate::sys::FD_RESERVE`], whichever is lower.
pub fn default_max_connections() -> usize {
    let fit = (crate::sys::open_file_limit().saturating_sub(crate::sys::FD_RESERVE) / 2).max(1);
    DEFAULT_MAX_CONNECTIONS.min(usize::try_from(fit).unwrap_or(usize::MAX))
}
/// Global default algorithm, used by groups without a `[groups.NAME] balance`.
pub const DEFAULT_BALANCE: Balance = Balance::P2c;
/// Other backends tried after a connect failure.
pub const DEFAULT_RETRIES: u32 = 2;
/// Most retries after a failed connect (each on another backend where there is one).
pub const MAX_RETRIES: u32 = 100;
/// Most sessions, globally or per listener: the range shared with `serve --max-conns`.
pub const MAX_CONNECTIONS: usize = crate::units::CONNS_MAX as usize;
/// Most consecutive checks in `health.rise`, `health.fall` and `health.passive_fall`.
pub const MAX_HEALTH_COUNT: u32 = 1000;
/// Ring size per direction per session.
pub const DEFAULT_BUFFER_BYTES: usize = 16 << 10;
/// Smallest accepted `buffer_size`.
pub const MIN_BUFFER_BYTES: usize = 1 << 10;
/// Largest accepted `buffer_size`.
pub const MAX_BUFFER_BYTES: usize = 16 << 20;
/// Requested capacity of each splice pipe. 256 KiB (4× the kernel's default pipe) lets one
/// splice(2) pair move 64 pages: on loopback a single bulk stream went from ~20 to ~24 Gbit/s
/// and from ~0.25 to ~0.16 CPU s/GB against 64 KiB. Smaller pipes cost more CPU per byte.
pub const DEFAULT_PIPE_BYTES: usize = 256 << 10;
/// Smallest accepted `pipe_size` (one page).
pub const MIN_PIPE_BYTES: usize = 4 << 10;
/// Largest accepted `pipe_size`.
pub const MAX_PIPE_BYTES: usize = 16 << 20;
/// splice(2) use.
pub const DEFAULT_SPLICE: SpliceMode = SpliceMode::Auto;
/// Send the client's first bytes with the backend handshake's last ACK.
pub const DEFAULT_SMART_CONNECT: bool = true;
/// TCP congestion control of the proxy's sockets; `None` keeps the kernel's default.
pub const DEFAULT_CONGESTION: Option<Congestion> = None;
/// Listeners refuse an address another process listens on (see `crate::net::listen`).
pub const DEFAULT_REUSE_PORT: bool = false;
/// Graceful shutdown budget; 0 = close every session at once.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Backend connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Client side idle timeout.
pub const DEFAULT_CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Server side idle timeout.
pub const DEFAULT_SERVER_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// After the client half-closed, how long the server → client direction may go on.
pub const DEFAULT_CLIENT_FIN_TIMEOUT: Duration = Duration::from_secs(30);
/// After the server half-closed, how long the client → server direction may go on.
pub const DEFAULT_SERVER_FIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Session lifetime cap; `None` (written `"0"`) = unlimited.
pub const DEFAULT_MAX_LIFETIME: Option<Duration> = None;
/// Active health checks on.
pub const DEFAULT_HEALTH_ENABLED: bool = true;
/// Time between two health checks of one backend.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(2);
/// Health-check connect timeout.
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
/// Consecutive successful checks that bring a backend up.
pub const DEFAULT_HEALTH_RISE: u32 = 2;
/// Consecutive failed checks that take a backend down.
pub const DEFAULT_HEALTH_FALL: u32 = 3;
/// Random ± percent applied to each health interval, so checks do not march in step.
pub const DEFAULT_HEALTH_JITTER_PCT: u32 = 10;
/// Upper bound on `health.jitter_pct`.
pub const MAX_HEALTH_JITTER_PCT: u32 = 50;
/// Consecutive connect failures on live traffic that take a backend down; 0 = off.
pub const DEFAULT_PASSIVE_FALL: u32 = 3;
/// Prometheus `/metrics` listener when `[admin]` is omitted.
pub const DEFAULT_ADMIN_ADDRESS: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9100));
/// Group of a listener or backend that names none.
pub const DEFAULT_GROUP: &str = "default";
/// Backend weight.
pub const DEFAULT_WEIGHT: u32 = 1;
/// Upper bound on a backend weight.
pub const MAX_WEIGHT: u32 = 256;
/// Backend admin state.
pub const DEFAULT_STATE: AdminState = AdminState::Ready;
/// Prefix of a listener's default name (`listener0`, `listener1`, ...).
pub const DEFAULT_LISTENER_NAME_PREFIX: &str = "listener";
