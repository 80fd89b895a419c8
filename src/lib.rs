//! netforge: one engine (mio reactors + a coordinator) and the roles on it: the connection
//! stressor (`goon`), its target (`serve`), the L4 proxy (`proxy`) and the backpressure lab (`bp`).
//! README.md's Architecture section draws the layers, the threads and how a role plugs in.
//!
//! Only what the binary, the integration tests and the benches use is `pub`; everything else is
//! `pub(crate)`, so the dead-code lint sees all of it.
//!
//! `unsafe` lives in three modules (`sys`, `net::tcp_info`, `net::splice`), one libc call per
//! block, each block with a `// SAFETY:` note (enforced below); descriptors are passed as
//! `BorrowedFd`, never as raw integers.

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod app;
pub(crate) mod backpressure;
pub mod cli;
pub(crate) mod conffile;
pub(crate) mod config;
pub(crate) mod engine;
pub mod error;
pub(crate) mod goon;
pub(crate) mod http;
pub mod net;
pub(crate) mod proxy;
pub mod report;
pub(crate) mod result;
pub(crate) mod serve;
pub mod stats;
pub mod sys;
pub(crate) mod target;
pub(crate) mod tls;
pub(crate) mod units;
pub(crate) mod wallclock;
pub(crate) mod ws;
