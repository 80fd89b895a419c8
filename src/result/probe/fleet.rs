//! `report merge` of probe results: every shard must have probed the same idle times with the
//! same deadline and probe size (one test split over machines); the groups' counts are then
//! summed, the first loss is the earliest of the shards', and the verdict is drawn again from
//! the sums, as if one process had held every connection. A fleet where some shards probed and
//! others did not, or probed differently, is refused with one line naming the file and key.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::verdict::{verdict, Group};
use super::ProbeOutcome;
use crate::error::{ConfigError, Error};

fn key_err(path: &Path, key: &str, msg: impl Into<String>) -> Error {
    Error::Config(ConfigError::key(path, key, msg))
}

/// Each group with its idle time.
type Groups = Vec<(Duration, Group)>;

/// One shard's `probe` object read back: its groups, deadline (s), probe bytes.
fn read(path: &Path, p: &Value) -> Result<(Groups, f64, u64), Error> {
    let deadline = p
        .get("deadline_s")
        .and_then(Value::as_f64)
        .filter(|d| d.is_finite() && *d > 0.0)
        .ok_or_else(|| key_err(path, "probe.deadline_s", "missing or not a positive number"))?;
    let bytes = p
        .get("message_bytes")
        .and_then(Value::as_u64)
        .ok_or_else(|| key_err(path, "probe.message_bytes", "missing or not an integer"))?;
    let raw = p
        .get("groups")
        .and_then(Value::as_array)
        .ok_or_else(|| key_err(path, "probe.groups", "missing or not an array"))?;
    if raw.len() > super::verdict::MAX_GROUPS {
        return Err(key_err(
            path,
            "probe.groups",
            format!("{} groups, at most {}", raw.len(), super::verdict::MAX_GROUPS),
        ));
    }
    let mut groups = Vec::with_capacity(raw.len());
    for (i, g) in raw.iter().enumerate() {
        let (d, g) = Group::from_json(g).map_err(|e| {
            let (k, m) = e.split_once(": ").unwrap_or(("", &e));
            key_err(path, &format!("probe.groups[{i}].{k}"), m)
        })?;
        if groups.last().is_some_and(|(p, _): &(Duration, Group)| *p >= d) {
            return Err(key_err(path, &format!("probe.groups[{i}].idle_s"), "not above the previous group's"));
        }
        groups.push((d, g));
    }
    Ok((groups, deadline, bytes))
}

fn idle_list(g: &[(Duration, Group)]) -> String {
    g.iter().map(|(d, _)| crate::units::go_duration(*d)).collect::<Vec<_>>().join(",")
}

/// The fleet's probe from the shards' documents (`None` when no shard probed).
pub fn merge(docs: &[(&Path, &Value)]) -> Result<Option<ProbeOutcome>, Error> {
    let Some((first_path, first)) = docs.first() else { return Ok(None) };
    let Some(fp) = first.get("probe").filter(|v| !v.is_null()) else {
        if let Some((p, _)) = docs.iter().find(|(_, d)| d.get("probe").is_some_and(|v| !v.is_null())) {
            return Err(key_err(
                p,
                "probe",
                format!("an idle probe, but {} is not one; merge only shards of one test", first_path.display()),
            ));
        }
        return Ok(None);
    };
    let (mut groups, deadline, bytes) = read(first_path, fp)?;
    for (path, doc) in &docs[1..] {
        let Some(p) = doc.get("probe").filter(|v| !v.is_null()) else {
            return Err(key_err(
                path,
                "probe",
                format!("missing, but {} is an idle probe; merge only shards of one test", first_path.display()),
            ));
        };
        let (g, d, b) = read(path, p)?;
        let same_idle = g.len() == groups.len() && g.iter().zip(&groups).all(|(a, b)| a.0 == b.0);
        if !same_idle {
            return Err(key_err(
                path,
                "probe.groups",
                format!(
                    "idle times {} differ from {}'s {}; run every shard with the same --probe-idle",
                    idle_list(&g),
                    first_path.display(),
                    idle_list(&groups)
                ),
            ));
        }
        if (d - deadline).abs() > 1e-9 || b != bytes {
            return Err(key_err(
                path,
                "probe.deadline_s",
                format!(
                    "a {d}s deadline and {b}-byte probe differ from {}'s {deadline}s and {bytes}; run every shard with the same --probe-deadline and --probe-message",
                    first_path.display()
                ),
            ));
        }
        for ((_, a), (_, b)) in groups.iter_mut().zip(&g) {
            a.merge(b);
        }
    }
    let verdict = verdict(&groups);
    Ok(Some(ProbeOutcome {
        groups,
        deadline: Duration::from_secs_f64(deadline.min(1e9)),
        message_bytes: bytes as usize,
        verdict,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn probe(idle: &[u64], alive: u64, reset: u64) -> Value {
        let groups: Vec<Value> = idle
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let g = if i == 0 {
                    Group { connections: alive, established: alive, alive, ..Group::default() }
                } else {
                    Group { connections: reset, established: reset, reset, ..Group::default() }
                };
                g.to_json(Duration::from_secs(*d))
            })
            .collect();
        json!({ "probe": { "deadline_s": 5.0, "message_bytes": 1, "groups": groups } })
    }

    #[test]
    fn shards_sum_and_the_verdict_is_drawn_again() {
        let (a, b) = (probe(&[1, 3], 2, 2), probe(&[1, 3], 3, 1));
        let (pa, pb) = (Path::new("a.json"), Path::new("b.json"));
        let m = merge(&[(pa, &a), (pb, &b)]).unwrap().unwrap();
        assert_eq!((m.groups[0].1.alive, m.groups[1].1.reset, m.groups[1].1.connections), (5, 3, 3));
        assert_eq!(m.verdict.text, "a middlebox or the server resets idle connections between 1 s and 3 s");
        let plain = json!({});
        assert!(merge(&[(pa, &plain), (pb, &plain)]).unwrap().is_none());
    }

    #[test]
    fn refusals_name_the_file_and_key() {
        let (pa, pb) = (Path::new("a.json"), Path::new("b.json"));
        let plain = json!({ "probe": null });
        let e = |docs: &[(&Path, &Value)]| merge(docs).unwrap_err().to_string();
        let (p13, p12) = (probe(&[1, 3], 1, 1), probe(&[1, 2], 1, 1));
        assert_eq!(
            e(&[(pa, &plain), (pb, &p13)]),
            "b.json: probe: an idle probe, but a.json is not one; merge only shards of one test"
        );
        assert_eq!(
            e(&[(pa, &p13), (pb, &plain)]),
            "b.json: probe: missing, but a.json is an idle probe; merge only shards of one test"
        );
        assert_eq!(
            e(&[(pa, &p13), (pb, &p12)]),
            "b.json: probe.groups: idle times 1s,2s differ from a.json's 1s,3s; run every shard with the same --probe-idle"
        );
        let mut other = p13.clone();
        other["probe"]["deadline_s"] = json!(2.0);
        assert!(e(&[(pa, &p13), (pb, &other)]).starts_with("b.json: probe.deadline_s: a 2s deadline"));
        let mut bad = p13.clone();
        bad["probe"]["groups"][1]["reset"] = json!(-1);
        assert_eq!(e(&[(pa, &p13), (pb, &bad)]), "b.json: probe.groups[1].reset: missing or not an integer");
    }
}
