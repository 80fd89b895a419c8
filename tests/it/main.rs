//! Integration tests: the real binary over real sockets on loopback, every wait bounded.

mod bp;
mod bp_peers;
mod config_errors;
mod deploy;
mod fdtable;
mod goon;
mod limits;
mod listen;
mod print_config;
mod probe;
mod proxy;
mod proxy_admin;
mod proxy_reload;
mod report;
mod report_html;
mod serve;
mod tls;
mod traffic;
mod util;
mod ws;
