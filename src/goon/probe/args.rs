//! `--probe-idle` and its companions: parsed and checked here, each refusal one line naming
//! the flag.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use crate::goon::traffic::escape;
use crate::result::probe::verdict::MAX_GROUPS;
use crate::units::{go_duration, parse_duration_in, parse_int};

/// The longest idle time `--probe-idle` takes.
pub const PROBE_IDLE_MAX: Duration = Duration::from_secs(24 * 3600);
/// The shortest.
pub const PROBE_IDLE_MIN: Duration = Duration::from_millis(1);
/// `--probe-deadline`'s default and range.
pub const PROBE_DEADLINE_DEFAULT: Duration = Duration::from_secs(5);
pub const PROBE_DEADLINE_MIN: Duration = Duration::from_millis(100);
pub const PROBE_DEADLINE_MAX: Duration = Duration::from_secs(600);
/// `--probe-message` at most this many bytes (it must fit an idle socket's send buffer).
pub const PROBE_MESSAGE_MAX: usize = 4096;
/// The default probe: one line feed (an HTTP server ignores an empty line before a request).
pub const PROBE_MESSAGE_DEFAULT: &[u8] = b"\n";
/// `--probe-group` at most this many connections per group.
pub const PROBE_GROUP_MAX: u64 = 1 << 20;

#[derive(Args, Debug, Default)]
pub struct ProbeArgs {
    /// Idle-timeout discovery: hold one group of connections idle for each duration in LIST
    /// (e.g. 30s,60s,120s,350s,600s; 1 to 32 distinct durations, each 1ms..=24h, in any order),
    /// then send a probe on each and classify it: alive (answered or acknowledged by the peer's
    /// TCP), reset (RST), closed (FIN) or dropped silently (never acknowledged within
    /// --probe-deadline); prints per-group counts and a verdict. --connections are split over
    /// the groups (or see --probe-group). Without HOST PORT the built-in sink echoes. Not with
    /// --hold, --tls, --ws, --message or --first-message.
    #[arg(long = "probe-idle", value_name = "LIST", value_parser = parse_idle_list, conflicts_with_all = ["hold", "tls", "ws", "message", "first_message"])]
    pub(crate) probe_idle: Option<IdleList>,
    /// Connections per --probe-idle group, 1..=1048576 (replaces --connections: N × groups in all).
    #[arg(long = "probe-group", value_name = "N", requires = "probe_idle", conflicts_with = "connections",
          value_parser = |s: &str| parse_int(s, 1, PROBE_GROUP_MAX))]
    pub(crate) probe_group: Option<u64>,
    /// How long a probe may go unacknowledged before its connection counts as silently
    /// dropped, 100ms..=10m [default: 5s]. Give the path a few retransmission timeouts (the
    /// first is at least 200 ms).
    #[arg(long = "probe-deadline", value_name = "DURATION", requires = "probe_idle",
          value_parser = |s: &str| parse_duration_in(s, PROBE_DEADLINE_MIN, PROBE_DEADLINE_MAX))]
    pub(crate) probe_deadline: Option<Duration>,
    /// The probe's bytes, 1..=4096: TEXT with the escapes \n \r \t \\ \0 \xHH, or @FILE (a regular
    /// file's bytes as they are; a text starting with @ is written \x40...), as --message takes
    /// them [default: "\n", one line feed].
    #[arg(long = "probe-message", value_name = "TEXT|@FILE", requires = "probe_idle", value_parser = parse_message)]
    pub(crate) probe_message: Option<Message>,
}

/// `--probe-idle`'s durations (a newtype: clap reads `Option<Vec<_>>` as a repeated flag).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdleList(pub Vec<Duration>);

/// `--probe-message`'s bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message(pub Vec<u8>);

/// The probe as it will run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ProbeConfig {
    /// Sorted, distinct.
    #[serde(serialize_with = "durations")]
    pub idle: Vec<Duration>,
    /// This process's connections per group, in `idle`'s order.
    pub per_group: Vec<u64>,
    #[serde(serialize_with = "crate::config::duration")]
    pub deadline: Duration,
    #[serde(serialize_with = "message")]
    pub message: Arc<[u8]>,
}

fn durations<S: serde::Serializer>(d: &[Duration], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(d.iter().map(|d| go_duration(*d)))
}

fn message<S: serde::Serializer>(m: &Arc<[u8]>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&escape(m))
}

/// `--probe-idle`: comma-separated durations, sorted; duplicates, zero and too many refused.
pub(crate) fn parse_idle_list(s: &str) -> Result<IdleList, String> {
    let mut out = Vec::new();
    for (i, part) in s.split(',').enumerate() {
        let t = part.trim();
        if t.is_empty() {
            return Err(format!(
                "{s:?}: item {} is empty (give durations separated by commas, like 30s,60s,120s)",
                i + 1
            ));
        }
        let d = parse_duration_in(t, PROBE_IDLE_MIN, PROBE_IDLE_MAX).map_err(|e| format!("{t:?}: {e}"))?;
        out.push(d);
    }
    if out.len() > MAX_GROUPS {
        return Err(format!("{} durations, at most {MAX_GROUPS}", out.len()));
    }
    out.sort_unstable();
    if let Some(w) = out.windows(2).find(|w| w[0] == w[1]) {
        return Err(format!("{} is given twice", go_duration(w[0])));
    }
    Ok(IdleList(out))
}

/// `--probe-message`: text with escapes or `@FILE`, read as `--message` reads it (one decoder,
/// one set of words), then held to [`PROBE_MESSAGE_MAX`].
pub(crate) fn parse_message(s: &str) -> Result<Message, String> {
    let bytes = crate::goon::traffic::parse_message(s)?.0;
    if bytes.len() > PROBE_MESSAGE_MAX {
        return Err(format!("{} bytes; a probe is 1..={PROBE_MESSAGE_MAX} bytes", bytes.len()));
    }
    Ok(Message(bytes))
}

/// The probe of this process: `connections` (its share, when sharded) split over the groups,
/// or `--probe-group` each. `None` without `--probe-idle`.
pub(crate) fn probe_config(a: &ProbeArgs, connections: u64) -> Result<Option<ProbeConfig>, String> {
    let Some(IdleList(idle)) = a.probe_idle.clone() else { return Ok(None) };
    let per_group = match a.probe_group {
        Some(n) => vec![n; idle.len()],
        None if connections < idle.len() as u64 => {
            return Err(format!(
            "--probe-idle: {} connections cannot fill {} groups (give --connections at least {}, or --probe-group N)",
            connections,
            idle.len(),
            idle.len()
        ))
        }
        None => crate::goon::shares(connections, idle.len()),
    };
    Ok(Some(ProbeConfig {
        idle,
        per_group,
        deadline: a.probe_deadline.unwrap_or(PROBE_DEADLINE_DEFAULT),
        message: a.probe_message.clone().map_or_else(|| PROBE_MESSAGE_DEFAULT.to_vec(), |m| m.0).into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_lists() {
        let ms = Duration::from_millis;
        assert_eq!(parse_idle_list("3s,1s").unwrap().0, vec![ms(1000), ms(3000)]);
        assert_eq!(parse_idle_list(" 350s , 30s,2m").unwrap().0, vec![ms(30_000), ms(120_000), ms(350_000)]);
        for (bad, why) in [
            ("", "item 1 is empty"),
            ("1s,,2s", "item 2 is empty"),
            ("1s,0s", "\"0s\": "),
            ("1s,25h", "\"25h\": "),
            ("1s,x", "\"x\": "),
            ("2s,1s,2s", "2s is given twice"),
        ] {
            let e = parse_idle_list(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
        let many: Vec<String> = (1..=33).map(|i| format!("{i}s")).collect();
        assert_eq!(parse_idle_list(&many.join(",")).unwrap_err(), "33 durations, at most 32");
        assert_eq!(parse_idle_list(&many[..32].join(",")).unwrap().0.len(), 32);
    }

    #[test]
    fn messages() {
        assert_eq!(parse_message("ping\\r\\n").unwrap().0, b"ping\r\n");
        assert_eq!(parse_message("\\x00\\xff\\\\\\t\\0").unwrap().0, b"\x00\xff\\\t\x00");
        for bad in ["", "\\q", "\\x4", "\\xzz", "a\\"] {
            assert!(parse_message(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_message(&"a".repeat(4097)).unwrap_err(), "4097 bytes; a probe is 1..=4096 bytes");
        // The words are --message's: the same decoder.
        assert_eq!(parse_message("\\q").unwrap_err(), "\\q at byte 0 is not an escape (\\n \\r \\t \\\\ \\0 \\xHH)");
        assert_eq!(escape(b"a\n\x01\\"), "a\\n\\x01\\\\");
        for m in [&b"a\n\x01\\ \r"[..], b"@not a file", b"x@"] {
            assert_eq!(parse_message(&escape(m)).unwrap().0, m, "{m:?}");
        }
        // @FILE: a regular file's bytes, bounded.
        let dir = std::env::temp_dir().join(format!("netforge-probe-msg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (small, big) = (dir.join("small"), dir.join("big"));
        std::fs::write(&small, b"HEAD / HTTP/1.0\r\n\r\n").unwrap();
        std::fs::write(&big, vec![b'x'; 5000]).unwrap();
        assert_eq!(parse_message(&format!("@{}", small.display())).unwrap().0, b"HEAD / HTTP/1.0\r\n\r\n");
        assert_eq!(parse_message(&format!("@{}", big.display())).unwrap_err(), "5000 bytes; a probe is 1..=4096 bytes");
        assert!(parse_message("@/nonexistent/netforge").unwrap_err().contains("cannot open"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn groups_split_connections() {
        let a = ProbeArgs {
            probe_idle: Some(IdleList(vec![Duration::from_secs(1), Duration::from_secs(2)])),
            ..Default::default()
        };
        let p = probe_config(&a, 5).unwrap().unwrap();
        assert_eq!((p.per_group, p.deadline, &*p.message), (vec![3, 2], PROBE_DEADLINE_DEFAULT, &b"\n"[..]));
        assert_eq!(
            probe_config(&a, 1).unwrap_err(),
            "--probe-idle: 1 connections cannot fill 2 groups (give --connections at least 2, or --probe-group N)"
        );
        let a = ProbeArgs { probe_group: Some(7), ..a };
        assert_eq!(probe_config(&a, 1).unwrap().unwrap().per_group, vec![7, 7]);
        assert!(probe_config(&ProbeArgs::default(), 10).unwrap().is_none());
    }
}
