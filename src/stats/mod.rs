//! Stats plumbing shared by the roles: latency recorders that reactors swap out each interval
//! and the coordinator merges (no `Mutex<Histogram>` on a hot path), and their text and JSON
//! forms.

pub(crate) mod hist;
pub(crate) mod inflate;

pub use hist::Latency;

/// A count with its noun in the right number: `1 session`, `0 sessions`, `2 sessions`. Every
/// role's output goes through this for a count it prints before a noun.
pub(crate) fn counted(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    #[test]
    fn counted_nouns() {
        assert_eq!(super::counted(0u64, "session", "sessions"), "0 sessions");
        assert_eq!(super::counted(1u64, "session", "sessions"), "1 session");
        assert_eq!(super::counted(2u32, "address", "addresses"), "2 addresses");
    }
}
