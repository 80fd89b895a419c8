//! Socket-level helpers shared by every role. `tcp_info` is the only module in the crate allowed
//! to use `unsafe`: it reads kernel socket state (TCP_INFO, SIOCINQ/SIOCOUTQ) that neither std
//! nor socket2 expose, so the backpressure lab can show what the kernel is doing.

pub mod tcp_info;
