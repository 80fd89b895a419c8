//! Stats plumbing shared by the roles: latency recorders that reactors swap out each interval
//! and the coordinator merges (no `Mutex<Histogram>` on a hot path), and their text and JSON
//! forms.

pub mod hist;

pub use hist::Latency;
