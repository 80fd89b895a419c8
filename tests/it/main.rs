//! Integration tests: the real binary over real sockets on loopback, every wait bounded.

mod bp;
mod goon;
mod proxy;
mod proxy_admin;
mod serve;
mod util;
