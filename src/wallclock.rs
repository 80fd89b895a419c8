//! Wall-clock instants as text: RFC 3339 (`2026-12-01T14:00:00Z`, `2026-12-01T15:00:00.25+01:00`)
//! and Unix seconds (`1764597600`, `1764597600.25`), parsed and written by hand (a civil-date
//! conversion is forty lines; no date crate needed).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse: (year, month, day) of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Seconds since the Unix epoch as a float (negative before 1970).
pub fn unix_secs(t: SystemTime) -> f64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// RFC 3339 in UTC with microseconds: `2026-12-01T14:00:00.000211Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let (secs, micros) = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_micros()),
        Err(_) => (0, 0),
    };
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!("{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z", s / 3600, s / 60 % 60, s % 60)
}

/// Writes an optional instant as RFC 3339 (for `--print-config`); `None` is left out.
pub fn serialize_opt<S: serde::Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&rfc3339(*t)),
        None => s.serialize_none(),
    }
}

/// Parses `--start-at`'s value: RFC 3339 with `Z` or a `±HH:MM` offset (fraction of a second
/// optional, `T`, `t` or a space between date and time), or Unix seconds (fraction optional).
pub fn parse_instant(text: &str) -> Result<SystemTime, String> {
    let t = text.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return parse_unix(t);
    }
    parse_rfc3339(t)
}

fn parse_unix(t: &str) -> Result<SystemTime, String> {
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    if whole.is_empty() || frac.contains('.') || (t.contains('.') && frac.is_empty()) {
        return Err(format!("{t:?} is not Unix seconds (digits, optionally .fraction)"));
    }
    let secs: u64 = whole.parse().map_err(|_| format!("{t:?}: Unix seconds out of range"))?;
    if secs > 253_402_300_799 {
        return Err(format!("{t:?}: Unix seconds past the year 9999"));
    }
    Ok(UNIX_EPOCH + Duration::from_secs(secs) + fraction(frac))
}

/// Nanoseconds of a decimal fraction's digits (beyond nine digits ignored).
fn fraction(digits: &str) -> Duration {
    let mut ns = 0u32;
    for (i, b) in digits.bytes().take(9).enumerate() {
        ns += u32::from(b - b'0') * 10u32.pow(8 - i as u32);
    }
    Duration::from_nanos(u64::from(ns))
}

fn parse_rfc3339(t: &str) -> Result<SystemTime, String> {
    let bad = |why: &str| {
        format!("{t:?} is not an RFC 3339 time (like 2026-12-01T14:00:00Z or 2026-12-01T15:00:00.5+01:00) or Unix seconds: {why}")
    };
    let b = t.as_bytes();
    let num = |from: usize, len: usize| -> Option<u32> {
        let s = b.get(from..from + len)?;
        s.iter().all(u8::is_ascii_digit).then(|| s.iter().fold(0u32, |a, d| a * 10 + u32::from(d - b'0')))
    };
    let sep = |at: usize, ok: &[u8]| b.get(at).is_some_and(|c| ok.contains(c));
    if b.len() < 20 || !sep(4, b"-") || !sep(7, b"-") || !sep(10, b"Tt ") || !sep(13, b":") || !sep(16, b":") {
        return Err(bad("expected YYYY-MM-DDTHH:MM:SS then Z or an offset"));
    }
    let (y, mo, d) = match (num(0, 4), num(5, 2), num(8, 2)) {
        (Some(y), Some(mo), Some(d)) => (i64::from(y), mo, d),
        _ => return Err(bad("the date is not digits")),
    };
    let (h, mi, s) = match (num(11, 2), num(14, 2), num(17, 2)) {
        (Some(h), Some(mi), Some(s)) => (h, mi, s),
        _ => return Err(bad("the time is not digits")),
    };
    if !(1..=12).contains(&mo) {
        return Err(bad(&format!("month {mo} is not 1-12")));
    }
    if d == 0 || d > days_in_month(y, mo) {
        return Err(bad(&format!("day {d} is not in {y:04}-{mo:02}")));
    }
    // 60 is a leap second; it is read as the first second of the next minute.
    if h > 23 || mi > 59 || s > 60 {
        return Err(bad("hour, minute or second out of range"));
    }
    let mut i = 19;
    let mut frac = Duration::ZERO;
    if b[i] == b'.' {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return Err(bad("no digits after the decimal point"));
        }
        frac = fraction(&t[start..i]);
    }
    let offset_s: i64 = match &b[i..] {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), ..] => {
            let (oh, om) = match (num(i + 1, 2), sep(i + 3, b":"), num(i + 4, 2)) {
                (Some(oh), true, Some(om)) if b.len() == i + 6 => (oh, om),
                _ => return Err(bad("the offset must be +HH:MM or -HH:MM")),
            };
            if oh > 23 || om > 59 {
                return Err(bad("offset out of range"));
            }
            let o = i64::from(oh * 3600 + om * 60);
            if *sign == b'-' {
                -o
            } else {
                o
            }
        }
        [] => return Err(bad("missing Z or an offset (+HH:MM) at the end")),
        _ => return Err(bad("unexpected text after the seconds")),
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + i64::from(h * 3600 + mi * 60 + s) - offset_s;
    if secs < 0 {
        return Err(bad("before 1970"));
    }
    Ok(UNIX_EPOCH + Duration::from_secs(secs as u64) + frac)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, nanos: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_nanos(nanos)
    }

    #[test]
    fn rfc3339_with_zulu_offsets_and_fractions() {
        assert_eq!(parse_instant("1970-01-01T00:00:00Z").unwrap(), UNIX_EPOCH);
        assert_eq!(parse_instant("2026-12-01T14:00:00Z").unwrap(), at(1_796_133_600, 0));
        assert_eq!(parse_instant("2026-12-01T15:00:00+01:00").unwrap(), at(1_796_133_600, 0));
        assert_eq!(parse_instant("2026-12-01T08:30:00-05:30").unwrap(), at(1_796_133_600, 0));
        assert_eq!(parse_instant("2026-12-01t14:00:00.25z").unwrap(), at(1_796_133_600, 250_000_000));
        assert_eq!(parse_instant("2026-12-01 14:00:00.000000001Z").unwrap(), at(1_796_133_600, 1));
        assert_eq!(parse_instant("2000-02-29T00:00:00Z").unwrap(), at(951_782_400, 0));
        assert_eq!(parse_instant("2016-12-31T23:59:60Z").unwrap(), at(1_483_228_800, 0), "leap second");
    }

    #[test]
    fn unix_seconds() {
        assert_eq!(parse_instant("1796133600").unwrap(), at(1_796_133_600, 0));
        assert_eq!(parse_instant(" 1796133600.5 ").unwrap(), at(1_796_133_600, 500_000_000));
        assert_eq!(parse_instant("0.000001").unwrap(), at(0, 1000));
    }

    #[test]
    fn refusals_say_why() {
        for (bad, why) in [
            ("", "expected"),
            ("2026-12-01T14:00:00", "then Z or an offset"),
            ("2026-13-01T14:00:00Z", "month 13"),
            ("2026-02-29T14:00:00Z", "day 29"),
            ("2026-12-01T24:00:00Z", "out of range"),
            ("2026-12-01T14:00:00.Z", "no digits"),
            ("2026-12-01T14:00:00+0100", "+HH:MM"),
            ("2026-12-01T14:00:00+01:00x", "+HH:MM"),
            ("2026-12-01T14:00:00 UTC", "unexpected"),
            ("tomorrow", "expected"),
            ("12.5.5", "Unix seconds"),
            ("99999999999999999999", "out of range"),
            ("1.", "Unix seconds"),
        ] {
            let e = parse_instant(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn formats_back_in_utc() {
        assert_eq!(rfc3339(at(1_796_133_600, 211_000)), "2026-12-01T14:00:00.000211Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        // Round trip over a spread of days, leap years included.
        for days in (0..40_000i64).step_by(37) {
            let t = at(days as u64 * 86_400 + 3_723, 5_000);
            assert_eq!(parse_instant(&rfc3339(t)).unwrap(), t, "{}", rfc3339(t));
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(unix_secs(at(1, 500_000_000)), 1.5);
    }
}
