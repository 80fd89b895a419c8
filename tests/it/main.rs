//! Integration tests: the real binary over real sockets on loopback, every wait bounded.

mod bp;
mod goon;
mod limits;
mod listen;
mod proxy;
mod serve;
mod util;
