//! Sizes, durations, thread counts and congestion-control names as every file and flag writes
//! them. One visitor each reads a size (`65536`, `"64KiB"`) and a duration (`"100ms"`, `0`);
//! `Serialize` writes them back exactly and short (`"16KiB"`, `"1m30s"`), so a printed config
//! loads back to the same values.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::net::tune::{Congestion, SockBufs};
use crate::units::{self, parse_bytes, parse_duration};

/// A byte size: an integer (`65536`) or a string with a unit (`"64KiB"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ByteSize(pub u64);

impl From<u64> for ByteSize {
    fn from(v: u64) -> Self {
        ByteSize(v)
    }
}

impl std::str::FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<ByteSize, String> {
        parse_bytes(s).map(ByteSize)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size in bytes, e.g. 65536 or \"64KiB\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v).map(ByteSize).map_err(|_| E::custom(format!("size {v} is negative")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                parse_bytes(v).map(ByteSize).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for ByteSize {
    /// `"16KiB"`, `"4MiB"`, or a plain integer.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match format_bytes(self.0) {
            Some(text) => s.serialize_str(&text),
            None => s.serialize_u64(self.0),
        }
    }
}

/// `16KiB`, `4MiB` or `1GiB` when `n` is a whole number of one of them; `None` otherwise.
pub fn format_bytes(n: u64) -> Option<String> {
    [(30, "GiB"), (20, "MiB"), (10, "KiB")]
        .iter()
        .find(|(shift, _)| n > 0 && n % (1 << shift) == 0)
        .map(|(shift, unit)| format!("{}{unit}", n >> shift))
}

/// [`format_bytes`], or the bare number.
pub fn bytes_text(n: u64) -> String {
    format_bytes(n).unwrap_or_else(|| n.to_string())
}

/// A duration: a string with a unit (`"100ms"`, `"1m30s"`) or the integer 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Dur(pub Duration);

impl From<Duration> for Dur {
    fn from(v: Duration) -> Self {
        Dur(v)
    }
}

impl std::str::FromStr for Dur {
    type Err = String;
    fn from_str(s: &str) -> Result<Dur, String> {
        parse_duration(s).map(Dur)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string, e.g. \"100ms\" or \"5s\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dur, E> {
                match v {
                    0 => Ok(Dur(Duration::ZERO)),
                    _ => Err(E::custom(format!("duration {v} needs a unit: write it as a string, e.g. \"{v}ms\""))),
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dur, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Dur, E> {
                parse_duration(v).map(Dur).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Dur {
    /// Exact and short: `"5m"`, `"1m30s"`, `"1s500ms"`, `"0"`.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(self.0))
    }
}

/// Exact and short: `5m`, `1m30s`, `1s500ms`, `0`; [`units::parse_duration`] reads it back.
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0".into();
    }
    let secs = d.as_secs();
    let nanos = u64::from(d.subsec_nanos());
    let parts = [
        (secs / 3600, "h"),
        (secs / 60 % 60, "m"),
        (secs % 60, "s"),
        (nanos / 1_000_000, "ms"),
        (nanos / 1_000 % 1_000, "us"),
        (nanos % 1_000, "ns"),
    ];
    parts.iter().filter(|(n, _)| *n > 0).map(|(n, unit)| format!("{n}{unit}")).collect()
}

/// A resolved config as TOML, for `--print-config` (ending in a newline).
pub fn to_toml(value: &impl Serialize) -> String {
    // Every config's keys are strings and its values serializable: this cannot fail.
    let mut text = toml::to_string(value).unwrap_or_else(|e| format!("# cannot write the config as TOML: {e}"));
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

/// Writes a `Duration` field as [`Dur`] does (`#[serde(serialize_with = "config::duration")]`).
pub fn duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    Dur(*d).serialize(s)
}

/// Writes socket-buffer sizes as `sndbuf` and `rcvbuf` sizes, 0 for the kernel's default.
pub fn sockbufs<S: Serializer>(b: &SockBufs, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeStruct;
    let size = |v: Option<usize>| ByteSize(v.map_or(0, |n| n as u64));
    let mut st = s.serialize_struct("SockBufs", 2)?;
    st.serialize_field("sndbuf", &size(b.sndbuf))?;
    st.serialize_field("rcvbuf", &size(b.rcvbuf))?;
    st.end()
}

/// Reactor threads as every role runs them: `0` (or none given) is one per core, and never
/// more than [`units::THREADS_MAX`].
pub fn resolve_threads(n: Option<usize>) -> usize {
    n.filter(|n| *n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .min(units::THREADS_MAX as usize)
}

/// How a congestion-control key or flag spells "the kernel's default".
pub const SYSTEM_CONGESTION: &str = "system";

/// A congestion-control name (`congestion`, `--congestion`): "system" (the kernel's default,
/// `None`) or an algorithm this kernel has and this user may set.
pub fn parse_congestion(name: &str) -> Result<Option<Congestion>, String> {
    match name.trim() {
        SYSTEM_CONGESTION => Ok(None),
        n => Congestion::probe(n).map(Some),
    }
}

/// The name [`parse_congestion`] reads back.
pub fn congestion_name(c: &Option<Congestion>) -> &str {
    c.as_ref().map_or(SYSTEM_CONGESTION, Congestion::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, Serialize, PartialEq)]
    struct T {
        size: ByteSize,
        wait: Dur,
    }

    #[test]
    fn sizes_and_durations_round_trip() {
        let durations = [
            (Duration::ZERO, "0"),
            (Duration::from_secs(300), "5m"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(3600 + 2), "1h2s"),
            (Duration::from_millis(1500), "1s500ms"),
            (Duration::from_nanos(1_001_001), "1ms1us1ns"),
            (Duration::from_secs(100 * 3600), "100h"),
        ];
        for (d, want) in durations {
            assert_eq!(format_duration(d), want);
            assert_eq!(units::parse_duration(want), Ok(d), "{want}");
        }
        let sizes = [(16 << 10, "16KiB"), (4 << 20, "4MiB"), (1536, "1536"), (1025, "1025"), (3 << 10, "3KiB")];
        for (n, want) in sizes {
            assert_eq!(bytes_text(n), want);
            assert_eq!(units::parse_bytes(want), Ok(n), "{want}");
        }
        for (size, wait) in
            [(0, Duration::ZERO), (1025, Duration::from_millis(1500)), (2 << 30, Duration::from_secs(7))]
        {
            let t = T { size: ByteSize(size), wait: Dur(wait) };
            let text = toml::to_string(&t).unwrap();
            assert_eq!(toml::from_str::<T>(&text).unwrap(), t, "{text}");
        }
    }

    #[test]
    fn files_write_sizes_and_durations_either_way() {
        let t: T = toml::from_str("size = \"64KiB\"\nwait = 0\n").unwrap();
        assert_eq!(t, T { size: ByteSize(65536), wait: Dur(Duration::ZERO) });
        let t: T = toml::from_str("size = 100\nwait = \"1m30s\"\n").unwrap();
        assert_eq!(t, T { size: ByteSize(100), wait: Dur(Duration::from_secs(90)) });
        let err = |text: &str| toml::from_str::<T>(text).unwrap_err().message().to_string();
        assert_eq!(err("size = -1\nwait = 0\n"), "size -1 is negative");
        assert!(err("size = 1\nwait = 100\n").starts_with("duration 100 needs a unit"));
    }

    #[test]
    fn threads_resolve_to_the_cores_when_zero() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()).min(1024);
        assert_eq!(resolve_threads(None), cores);
        assert_eq!(resolve_threads(Some(0)), cores);
        assert_eq!(resolve_threads(Some(3)), 3);
    }
}
