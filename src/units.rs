//! Human-friendly units shared by the CLI and every config file: durations such as `3s`,
//! `250ms`, `1m30s`, `1.5s`, and byte sizes such as `16KiB`, `4MB`, `65536`.
//!
//! Config keys carry their unit in the name where the value is a plain number
//! (`idle_timeout_ms = 3000`); where a key takes a string, these parsers read it. Both are strict:
//! a value they cannot read is an error naming what was expected, never a silent default.

use std::fmt::Display;
use std::time::Duration;

/// Longest duration any flag or key takes (365 days, written `8760h`): far beyond any useful
/// timeout or run, and small enough that `Instant::now() + d`, `d * connections` and the
/// millisecond/second conversions below can never overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);
/// [`MAX_DURATION`] in milliseconds, for millisecond-valued flags (`goon -s`, `goon -t`).
pub const MAX_DURATION_MS: u64 = MAX_DURATION.as_secs() * 1000;
/// Reactor threads, every role (`--threads`, `threads` in lb.toml): `0` means one per core.
pub const THREADS_MAX: u64 = 1024;
/// SO_SNDBUF / SO_RCVBUF / TCP_NOTSENT_LOWAT, every role. The kernel takes a C `int` and doubles
/// it for its bookkeeping, so anything above `i32::MAX / 2` would wrap; it also clamps the value to
/// `net.core.wmem_max` / `rmem_max`. 256 MiB is far above any useful per-socket buffer.
pub const SOCKBUF_MIN: u64 = 1024;
pub const SOCKBUF_MAX: u64 = 256 << 20;
/// Connection counts (`goon -c`, `serve --max-conns`, the proxy's `max_connections`): each
/// connection takes at least one descriptor, and no process gets more than `fs.nr_open`
/// (1,048,576 by default; 2^30 at most); 2^24 leaves room for any of them while keeping every
/// estimate (`× 2` descriptors, `× buffer size` bytes) far from overflow.
pub const CONNS_MAX: u64 = 1 << 24;

/// `v` if it lies in `min..=max`, else `"{v} is out of range {min}..={max}"`.
pub fn in_range<T: PartialOrd + Display + Copy>(v: T, min: T, max: T) -> Result<T, String> {
    if v >= min && v <= max {
        Ok(v)
    } else {
        Err(format!("{v} is out of range {min}..={max}"))
    }
}

/// A duration within `min..=max`, named in Go's notation when refused.
pub fn duration_in(v: Duration, min: Duration, max: Duration) -> Result<Duration, String> {
    if v >= min && v <= max {
        Ok(v)
    } else {
        Err(format!("{} is out of range {}..={}", go_duration(v), go_duration(min), go_duration(max)))
    }
}

/// The shortest `-i` above 0: a line (and a sample) every millisecond is already more than a
/// terminal or a file wants, and shorter ones only cost the run.
pub const INTERVAL_MIN: Duration = Duration::from_millis(1);

/// `-i` in every role: the time between status lines, as whole seconds (`1`, tcpgoon's form)
/// or a duration (`500ms`, `1m`), [`INTERVAL_MIN`] to [`MAX_DURATION`]; `0` means no periodic
/// lines.
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    parse_interval_in(s, MAX_DURATION)
}

/// [`parse_interval`] with a lower maximum (`bp client -i`: 1h). Every refusal ends with the
/// range, in both forms.
pub fn parse_interval_in(s: &str, max: Duration) -> Result<Duration, String> {
    let t = s.trim();
    let (min, secs) = (go_duration(INTERVAL_MIN), max.as_secs());
    let expected = || format!("whole seconds 0..={secs} or a duration, 0 or {min}..={}", go_duration(max));
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return match t.parse::<u64>() {
            Ok(n) if n <= max.as_secs() => Ok(Duration::from_secs(n)),
            _ => Err(format!("{t} is out of range: {}", expected())),
        };
    }
    let d = parse_duration(t).map_err(|e| format!("{e}; range: {}", expected()))?;
    if d > max || (!d.is_zero() && d < INTERVAL_MIN) {
        return Err(format!("{} is out of range: {}", go_duration(d), expected()));
    }
    Ok(d)
}

/// A size within `min..=max` (`bp server --read-size`): [`parse_bytes`], then the range; a
/// value that is no size at all (`-1`) is refused with the range too.
pub fn parse_bytes_in(s: &str, min: u64, max: u64) -> Result<u64, String> {
    let v = parse_bytes(s).map_err(|e| format!("{e}; range {min}..={max}"))?;
    in_range(v, min, max)
}

/// A duration within `min..=max` (`proxy --timeout`, `bp client --duration`): [`parse_duration`],
/// then the range; a value that is no duration at all (`-1s`) is refused with the range too.
pub fn parse_duration_in(s: &str, min: Duration, max: Duration) -> Result<Duration, String> {
    let v = parse_duration(s).map_err(|e| format!("{e}; range {}..={}", go_duration(min), go_duration(max)))?;
    duration_in(v, min, max)
}

/// A decimal integer within `min..=max` (no sign, no unit), for flags that take a count.
pub fn parse_int(s: &str, min: u64, max: u64) -> Result<u64, String> {
    let t = s.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{t:?} is not a whole number in {min}..={max}"));
    }
    // All digits: the only failure left is overflow.
    let v: u64 = t.parse().map_err(|_| format!("{t} is out of range {min}..={max}"))?;
    in_range(v, min, max)
}

/// `--threads` in every role: 0 (one per core) to [`THREADS_MAX`].
pub fn parse_threads(s: &str) -> Result<usize, String> {
    parse_int(s, 0, THREADS_MAX).map(|n| n as usize).map_err(|e| format!("{e} (0 = one per core)"))
}

/// A socket-buffer size (`SO_SNDBUF`, `SO_RCVBUF`): 0 (the kernel's default, nothing set) or
/// [`SOCKBUF_MIN`]..=[`SOCKBUF_MAX`]. `None` for 0.
pub fn sockbuf(v: u64) -> Result<Option<u32>, String> {
    match v {
        0 => Ok(None),
        // SOCKBUF_MAX < u32::MAX, so the narrowing never truncates.
        n => in_range(n, SOCKBUF_MIN, SOCKBUF_MAX)
            .map(|n| Some(n as u32))
            .map_err(|e| format!("{e}, or 0 for the kernel's default")),
    }
}

/// `--sndbuf` / `--rcvbuf` as written: a size with a unit, checked by [`sockbuf`].
pub fn parse_sockbuf(s: &str) -> Result<u64, String> {
    let v = parse_bytes(s)
        .map_err(|e| format!("{e}; range {SOCKBUF_MIN}..={SOCKBUF_MAX}, or 0 for the kernel's default"))?;
    sockbuf(v)?;
    Ok(v)
}

/// Parses `1h2m3s`, `3s`, `250ms`, `10us`/`10µs`, `1.5s`, `2m`, or a bare `0`.
/// A bare non-zero number is refused: the unit must be explicit.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    if text.is_empty() {
        return Err("empty duration (expected e.g. 3s, 250ms, 1m30s)".into());
    }
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    // Exact decimal arithmetic: a float would round `0.4ns` to a silent 0 and lose digits of
    // long values; a part finer than the nanosecond is refused instead.
    let max_ns = MAX_DURATION.as_nanos();
    let too_long = || format!("duration {text:?} is above the maximum 8760h (365 days)");
    let mut total_ns: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_len == 0 {
            return Err(format!("bad duration {text:?} (expected e.g. 3s, 250ms, 1m30s)"));
        }
        let (whole, frac) = rest[..num_len].split_once('.').unwrap_or((&rest[..num_len], ""));
        if frac.contains('.') || (whole.is_empty() && frac.is_empty()) {
            return Err(format!("bad number in duration {text:?}"));
        }
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit_ns: u128 = match &rest[..unit_len] {
            "h" => 3_600_000_000_000,
            "m" => 60_000_000_000,
            "s" => 1_000_000_000,
            "ms" => 1_000_000,
            "us" | "µs" => 1_000,
            "ns" => 1,
            "" => return Err(format!("duration {text:?} needs a unit (h, m, s, ms, us, ns)")),
            other => return Err(format!("unknown unit {other:?} in duration {text:?} (use h, m, s, ms, us, ns)")),
        };
        rest = &rest[unit_len..];
        // More than 20 whole digits is past the maximum in any unit; u128 holds the rest.
        let whole = whole.trim_start_matches('0');
        if whole.len() > 20 {
            return Err(too_long());
        }
        let whole_ns = whole.parse::<u128>().unwrap_or(0) * unit_ns;
        let frac = frac.trim_end_matches('0');
        let frac_ns = if frac.is_empty() {
            0
        } else {
            // A unit has at most 13 digits of nanoseconds: a longer fraction cannot be whole.
            let scale = 10u128.checked_pow(frac.len() as u32).filter(|_| frac.len() <= 24);
            let digits = frac.parse::<u128>().ok();
            match (scale, digits) {
                (Some(scale), Some(d)) if (d * unit_ns) % scale == 0 => d * unit_ns / scale,
                _ => return Err(format!("duration {text:?} has a part finer than 1ns, its resolution")),
            }
        };
        total_ns += whole_ns + frac_ns;
        if total_ns > max_ns {
            return Err(too_long());
        }
    }
    Ok(Duration::from_nanos(total_ns as u64))
}

/// Parses a byte size: `65536`, `64KiB`, `64k`, `4MiB`, `4MB`, `1GiB`, `1TiB` (K/M/G/T are
/// powers of 1024; `KB`/`MB`/`GB`/`TB` are powers of 1000, as on a disk label).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let text = s.trim();
    let num_len = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    if num_len == 0 {
        return Err(format!("bad size {text:?} (expected e.g. 65536, 64KiB, 4MiB)"));
    }
    let value: u64 = text[..num_len].parse().map_err(|_| format!("size {text:?} is too large"))?;
    let mult: u64 = match text[num_len..].trim() {
        "" | "B" | "b" => 1,
        "k" | "K" | "KiB" | "kiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "T" | "TiB" => 1 << 40,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        other => {
            return Err(format!("unknown unit {other:?} in size {text:?} (use B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)"))
        }
    };
    value.checked_mul(mult).ok_or_else(|| format!("size {text:?} is too large"))
}

/// Formats a duration the way Go's `time.Duration.String()` does (`49.892ms`, `319µs`, `1.5s`,
/// `2m3.5s`), so goon's report reads exactly like tcpgoon's.
pub fn go_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".into();
    }
    if ns < 1_000 {
        return format!("{ns}ns");
    }
    if ns < 1_000_000 {
        return format!("{}µs", trim_frac(ns, 1_000));
    }
    if ns < 1_000_000_000 {
        return format!("{}ms", trim_frac(ns, 1_000_000));
    }
    let mut out = String::new();
    let secs_total = ns / 1_000_000_000;
    let h = secs_total / 3600;
    let m = (secs_total / 60) % 60;
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    let sub_minute_ns = ns - (h * 3600 + m * 60) * 1_000_000_000;
    out.push_str(&format!("{}s", trim_frac(sub_minute_ns, 1_000_000_000)));
    out
}

/// `value / unit` printed with up to 9 fraction digits and trailing zeros removed (Go's rule).
fn trim_frac(value: u128, unit: u128) -> String {
    let whole = value / unit;
    let frac = value % unit;
    if frac == 0 {
        return whole.to_string();
    }
    let width = unit.ilog10() as usize;
    let digits = format!("{frac:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        let cases = [
            ("3s", Duration::from_secs(3)),
            ("250ms", Duration::from_millis(250)),
            ("1m30s", Duration::from_secs(90)),
            ("1.5s", Duration::from_millis(1500)),
            ("10us", Duration::from_micros(10)),
            ("10µs", Duration::from_micros(10)),
            ("1h", Duration::from_secs(3600)),
            ("0", Duration::ZERO),
            ("0.5us", Duration::from_nanos(500)),
            (".5s", Duration::from_millis(500)),
            ("2.s", Duration::from_secs(2)),
            ("1.000000001s", Duration::from_nanos(1_000_000_001)),
            ("0.000000000000000000000000000h", Duration::ZERO),
            ("1.50000000000000000000000000000s", Duration::from_millis(1500)),
            ("8759h59m59.999999999s", MAX_DURATION - Duration::from_nanos(1)),
            ("00000000000000000000000000001ns", Duration::from_nanos(1)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text).unwrap(), want, "{text}");
        }
        assert_eq!(parse_duration("8760h").unwrap(), MAX_DURATION);
        for bad in
            ["", "3", "s", "3x", "1.2.3s", "-1s", "8761h", "999999999h", "1e308s", "NaN", "inf", "nans", ".s", "1..s"]
        {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
        // Finer than the nanosecond is refused, not rounded (0.4ns would otherwise be 0: off).
        for fine in ["0.5ns", "0.4ns", "1.0000000001s", "1.5us1.0001ns", "0.0000000000000000000000001h"] {
            let e = parse_duration(fine).unwrap_err();
            assert!(e.ends_with("has a part finer than 1ns, its resolution"), "{fine}: {e}");
        }
    }

    #[test]
    fn ranges_are_checked_and_named() {
        assert_eq!(parse_int("0", 0, 5), Ok(0));
        assert_eq!(parse_int("18446744073709551615", 0, 5).unwrap_err(), "18446744073709551615 is out of range 0..=5");
        assert_eq!(parse_int("99999999999999999999", 0, 5).unwrap_err(), "99999999999999999999 is out of range 0..=5");
        for bad in ["-1", "1e3", "NaN", "", "+1", "1.5"] {
            assert!(parse_int(bad, 0, 5).is_err(), "{bad}");
        }
        assert_eq!(parse_threads("1024"), Ok(1024));
        assert!(parse_threads("1025").unwrap_err().contains("0..=1024"));
        assert_eq!(sockbuf(0), Ok(None));
        assert_eq!(sockbuf(4096), Ok(Some(4096)));
        // 3 GiB and 4 GiB used to reach the kernel as a negative int and as 0.
        for bad in [1, 1023, 3 << 30, 4 << 30, u64::MAX] {
            assert!(sockbuf(bad).is_err(), "{bad}");
        }
        assert!(parse_sockbuf("4GiB").is_err());
        assert!(duration_in(Duration::from_secs(2), Duration::ZERO, Duration::from_secs(1)).is_err());
    }

    #[test]
    fn intervals_are_seconds_or_durations() {
        assert_eq!(parse_interval("0"), Ok(Duration::ZERO));
        assert_eq!(parse_interval("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_interval("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_interval("31536000"), Ok(MAX_DURATION));
        assert_eq!(parse_interval("1ms"), Ok(INTERVAL_MIN));
        assert_eq!(parse_interval("0s"), Ok(Duration::ZERO));
        for bad in [
            "-1",
            "31536001",
            "18446744073709551615",
            "9223372036854775807",
            "1e-300",
            "NaN",
            "999999999h",
            "1ns",
            "999us",
        ] {
            let e = parse_interval(bad).unwrap_err();
            assert!(e.ends_with("whole seconds 0..=31536000 or a duration, 0 or 1ms..=8760h0m0s"), "{bad}: {e}");
        }
        let hour = Duration::from_secs(3600);
        assert_eq!(parse_interval_in("3600", hour), Ok(hour));
        assert_eq!(parse_interval_in("1h", hour), Ok(hour));
        for bad in ["3601", "61m", "-1", "8760h"] {
            let e = parse_interval_in(bad, hour).unwrap_err();
            assert!(e.ends_with("whole seconds 0..=3600 or a duration, 0 or 1ms..=1h0m0s"), "{bad}: {e}");
        }
    }

    /// A size or duration that is no number at all, or out of range, is refused naming the range.
    #[test]
    fn ranged_sizes_and_durations_name_their_range() {
        assert_eq!(parse_bytes_in("1KiB", 1, 1 << 20), Ok(1024));
        for bad in ["0", "-1", "2MiB", "1e308", "18446744073709551616"] {
            let e = parse_bytes_in(bad, 1, 1 << 20).unwrap_err();
            assert!(e.contains("1..=1048576"), "{bad}: {e}");
        }
        for bad in ["-1", "1e308", "4GiB"] {
            let e = parse_sockbuf(bad).unwrap_err();
            assert!(e.contains("1024..=268435456"), "{bad}: {e}");
        }
        let (lo, hi) = (Duration::from_millis(10), Duration::from_secs(3600));
        assert_eq!(parse_duration_in("10ms", lo, hi), Ok(lo));
        for bad in ["0", "1ms", "-1s", "2h", "NaNs", "1e308s", "999999999h"] {
            let e = parse_duration_in(bad, lo, hi).unwrap_err();
            assert!(e.contains("10ms..=1h0m0s"), "{bad}: {e}");
        }
    }

    #[test]
    fn bytes_parse() {
        assert_eq!(parse_bytes("65536").unwrap(), 65536);
        assert_eq!(parse_bytes("64KiB").unwrap(), 65536);
        assert_eq!(parse_bytes("64k").unwrap(), 65536);
        assert_eq!(parse_bytes("4MiB").unwrap(), 4 << 20);
        assert_eq!(parse_bytes("4MB").unwrap(), 4_000_000);
        assert!(parse_bytes("4XB").is_err());
        assert!(parse_bytes("KiB").is_err());
        assert!(parse_bytes("99999999999999999999GiB").is_err());
    }

    #[test]
    fn go_format_matches_go() {
        let cases = [
            (Duration::from_nanos(0), "0s"),
            (Duration::from_nanos(999), "999ns"),
            (Duration::from_micros(319), "319µs"),
            (Duration::from_nanos(24_300), "24.3µs"),
            (Duration::from_nanos(49_892_000), "49.892ms"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_secs(1), "1s"),
            (Duration::from_millis(123_500), "2m3.5s"),
            (Duration::from_secs(3600 + 2), "1h0m2s"),
        ];
        for (d, want) in cases {
            assert_eq!(go_duration(d), want);
        }
    }
}
