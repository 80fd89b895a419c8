//! Integration tests: the real binary over real sockets on loopback, every wait bounded.

mod bp;
mod bp_peers;
mod goon;
mod proxy;
mod serve;
mod util;
