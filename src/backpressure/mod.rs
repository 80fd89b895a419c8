//! The TCP backpressure lab (`netforge bp server|client`), a re-creation of go-backpressure.
//!
//! The server is a deliberately slow reader: it reads `read_size` bytes, then waits `read_delay`
//! (a reactor timer) before the next read. Its receive buffer fills, its advertised window drops
//! to zero, and — if nothing in between absorbs the data — the client's send buffer fills and its
//! writes start failing with `EAGAIN`. The client samples its own socket to show, live and as a
//! final verdict, whether that backpressure reached it; the server samples its side for a live
//! dashboard in the browser. Behind a proxy or load balancer the verdict tells whether the
//! "slow down" made it through.
//!
//! This module holds the self-contained parts, each sans-io or a thin wrapper, each unit-tested;
//! the reactor integration lives elsewhere:
//!
//! - [`config`]: `bp-server.toml` / `bp-client.toml`, `PORT`, flag overrides, validation;
//! - [`http`]: the request head of the server's WebSocket mode (pages and upgrades);
//! - [`ws`]: tungstenite over non-blocking streams, error mapping, client handshake, read budget;
//! - [`verdict`]: classification of the client's samples and the verdict line;
//! - [`web`]: the dashboard and browser-client pages and the dashboard's sample message.
//!
//! ## Dashboard sample stream (`ws://HOST/samples`)
//!
//! The server sends one JSON text message per connection per `sample_interval` for each
//! connection something happened on since its last sample, and one per 3 s for idle ones
//! ([`web::DashboardSample`]; see `server::IDLE_RESAMPLE`):
//!
//! ```text
//! {"conn":7,"peer":"127.0.0.1:54321","t":1.25,"read_bytes":12288,"inq":131072,"rcv_wnd":0}
//!
//! conn        u64          server-side connection id (stable for the connection's life)
//! peer        string       the client's address and port, as the server accepted it
//! t           f64          seconds since the connection was accepted
//! read_bytes  u64          bytes the server application has read so far (cumulative)
//! inq         u32          SIOCINQ: bytes received by the kernel and not yet read
//! rcv_wnd     u32 | null   tcpi_rcv_wnd: window last advertised to the client; 0 = zero window;
//!                          null where the kernel (< 6.2) does not report it
//! ```
//!
//! The dashboard derives the server's read rate from `read_bytes` and the arrival rate at the
//! server's kernel from `read_bytes + inq`. (The sender's own view, its send buffer and window,
//! is the client's to report: `bp client` prints it, the browser client shows its
//! `bufferedAmount`.)

pub(crate) mod args;
pub mod client;
pub mod config;
pub mod http;
pub mod server;
pub mod verdict;
pub mod web;
pub mod ws;
