//! netforge: one engine (mio reactors + a coordinator) and three roles on it: the connection
//! stressor (`goon`), its target (`serve`), the L4 proxy (`proxy`) and the backpressure lab (`bp`).

pub mod backpressure;
pub mod conffile;
pub mod net;
pub mod units;
