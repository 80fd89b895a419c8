//! Idle probes in the result format (`goon --probe-idle`, docs/json-format.md §4.1): the
//! per-group counts and the verdict (`verdict.rs`, with the sans-io classification goon's probe
//! reactor uses), the outcome as text and JSON (here), and the fleet merge (`fleet.rs`), so
//! that goon writes and `report merge` reads the same definitions.

pub mod fleet;
pub mod verdict;

use std::time::Duration;

use serde_json::{json, Value};

use verdict::{verdict, Group, Verdict};

/// What the probe found: each group with its idle time, and the verdict.
#[derive(Clone, Debug)]
pub struct ProbeOutcome {
    pub groups: Vec<(Duration, Group)>,
    pub deadline: Duration,
    pub message_bytes: usize,
    pub verdict: Verdict,
}

impl ProbeOutcome {
    /// The outcome of groups probed for `idle` (a group that never reported counts as empty).
    pub fn new(idle: &[Duration], deadline: Duration, message_bytes: usize, groups: &[Group]) -> ProbeOutcome {
        let groups: Vec<(Duration, Group)> =
            idle.iter().copied().zip(groups.iter().copied().chain(std::iter::repeat(Group::default()))).collect();
        let verdict = verdict(&groups);
        ProbeOutcome { groups, deadline, message_bytes, verdict }
    }

    /// The lines after tcpgoon's block.
    pub fn text(&self) -> String {
        let mut t = format!(
            "--- idle probe ({} {}, deadline {}) ---\n",
            self.message_bytes,
            if self.message_bytes == 1 { "byte" } else { "bytes" },
            crate::units::go_duration(self.deadline)
        );
        for (d, g) in &self.groups {
            t.push_str(&g.line(*d));
            t.push('\n');
        }
        t.push_str(&format!("Verdict: {}\n", self.verdict.text));
        t
    }

    /// The `probe` object of the JSON result (docs/json-format.md §4.1).
    pub fn to_json(&self) -> Value {
        json!({
            "idle_s": self.groups.iter().map(|(d, _)| d.as_secs_f64()).collect::<Vec<_>>(),
            "deadline_s": self.deadline.as_secs_f64(),
            "message_bytes": self.message_bytes,
            "groups": self.groups.iter().map(|(d, g)| g.to_json(*d)).collect::<Vec<_>>(),
            "verdict": self.verdict.to_json(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn outcome_text_and_json() {
        let idle = [Duration::from_secs(1), Duration::from_secs(3)];
        let alive = Group { connections: 2, established: 2, alive: 2, ..Group::default() };
        let reset = Group { connections: 2, established: 2, reset: 2, ..Group::default() };
        let o = ProbeOutcome::new(&idle, Duration::from_secs(2), 1, &[alive, reset]);
        assert_eq!(
            o.text(),
            "--- idle probe (1 byte, deadline 2s) ---\n\
             Idle 1s: 2 of 2 probed: 2 alive (0 answered, 2 acknowledged), 0 reset, 0 closed (FIN), 0 dropped silently\n\
             Idle 3s: 2 of 2 probed: 0 alive (0 answered, 0 acknowledged), 2 reset, 0 closed (FIN), 0 dropped silently\n\
             Verdict: a middlebox or the server resets idle connections between 1 s and 3 s\n"
        );
        let j = o.to_json();
        assert_eq!(j["idle_s"], json!([1.0, 3.0]));
        assert_eq!(j["groups"][1]["reset"], 2);
        assert_eq!(j["verdict"]["kind"], "reset");
        assert_eq!(j["verdict"]["lower_s"], 1.0);
        // Fewer groups reported than configured (interrupted before a reactor reported).
        let o = ProbeOutcome::new(&idle, Duration::from_secs(2), 1, &[]);
        assert_eq!(o.groups.len(), 2);
        assert_eq!(o.verdict.kind, "inconclusive");
    }
}
