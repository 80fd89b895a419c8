//! netforge: one engine (mio reactors + a coordinator) and three roles on it: the connection
//! stressor (`goon`), its target (`serve`), the L4 proxy (`proxy`) and the backpressure lab (`bp`).

pub mod conffile;
pub mod proxy;
pub mod units;
