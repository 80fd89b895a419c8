//! Integration tests: the real binary over real sockets on loopback, every wait bounded.

mod bp;
mod bp_peers;
mod deploy;
mod goon;
mod limits;
mod listen;
mod proxy;
mod proxy_admin;
mod proxy_reload;
mod report_html;
mod serve;
mod util;
