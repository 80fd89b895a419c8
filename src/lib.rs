//! netforge: one engine (mio reactors + a coordinator) and the roles on it: the connection
//! stressor (`goon`), its target (`serve`), the L4 proxy (`proxy`) and the backpressure lab (`bp`).

pub mod app;
pub mod backpressure;
pub mod buf;
pub mod cli;
pub mod conffile;
pub mod error;
pub mod goon;
pub mod http;
pub mod net;
pub mod proxy;
pub mod reactor;
pub mod serve;
pub mod stats;
pub mod sys;
pub mod units;
