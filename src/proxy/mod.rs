//! `netforge proxy`: an L4 (TCP) proxy and load balancer on the shared mio reactors.
//!
//! The pure parts live here and are tested without sockets: `config` turns `lb.toml` or the
//! quick-start flags into a validated [`config::ProxyConfig`], and `lb` picks a backend for each
//! new session from a snapshot of the group's health, weights and live session counts.

pub mod config;
pub mod lb;
