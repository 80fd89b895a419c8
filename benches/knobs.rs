//! The benches' environment knobs, read one way everywhere.
//!
//! A bench is configured by environment variables (`cargo bench` passes no arguments of its
//! own), and a typo there used to cost a whole run: a value that did not parse was replaced by
//! the default, one out of range was clamped, an unknown name in a selector list was ignored.
//! Here a bad value prints one line naming the knob, the value and what is allowed, and the bench
//! exits with status 2 before any work starts; every bench reads all its knobs first thing in
//! `main`. An unset knob keeps its default. A set but empty value is a bad value too (it is
//! more often a script's missing variable than a wish for the default).
//!
//! Not a bench itself: each bench that uses it includes it with `#[path = "knobs.rs"] mod knobs;`
//! (`autobenches = false` in Cargo.toml keeps cargo from building it alone).

#![allow(dead_code)]

use std::fmt::Display;
use std::ops::RangeInclusive;
use std::str::FromStr;

/// Prints `NAME: "value" <why>` and exits with status 2 (the usage-error status of netforge).
fn bad(name: &str, value: &str, why: impl Display) -> ! {
    eprintln!("{name}: {value:?} {why}");
    std::process::exit(2)
}

/// The knob's value: `None` when unset; a value that is not UTF-8 is a bad value.
pub fn raw(name: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(v) => Some(v),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(v)) => bad(name, &v.to_string_lossy(), "is not UTF-8"),
    }
}

fn parse_in<T>(name: &str, full: &str, item: &str, range: &RangeInclusive<T>) -> T
where
    T: FromStr + PartialOrd + Display,
{
    match item.trim().parse::<T>() {
        Ok(v) if range.contains(&v) => v,
        _ => {
            let what = format!("is not a number in {}..={}", range.start(), range.end());
            if item == full {
                bad(name, full, what)
            } else {
                bad(name, full, format_args!("has {:?}, which {what}", item.trim()))
            }
        }
    }
}

/// A number in `range` (inclusive), `default` when unset.
pub fn num<T>(name: &str, range: RangeInclusive<T>, default: T) -> T
where
    T: FromStr + PartialOrd + Display,
{
    match raw(name) {
        None => default,
        Some(v) => parse_in(name, &v, &v, &range),
    }
}

/// A comma list of numbers, each in `range`; `default` when unset. An empty item is an error.
pub fn nums<T>(name: &str, range: RangeInclusive<T>, default: &[T]) -> Vec<T>
where
    T: FromStr + PartialOrd + Display + Copy,
{
    match raw(name) {
        None => default.to_vec(),
        Some(v) => v.split(',').map(|item| parse_in(name, &v, item, &range)).collect(),
    }
}

/// A comma list of words, each one of `known`; `None` when unset. Items are trimmed; an empty
/// item (or an empty value) is an error.
pub fn words(name: &str, known: &[&str]) -> Option<Vec<String>> {
    let v = raw(name)?;
    let mut out = Vec::new();
    for item in v.split(',').map(str::trim) {
        if !known.contains(&item) {
            if item.is_empty() {
                bad(name, &v, format_args!("has an empty item; a comma list of {}", known.join(", ")))
            }
            bad(name, &v, format_args!("has unknown part {item:?}; one of {}", known.join(", ")))
        }
        out.push(item.to_string());
    }
    Some(out)
}

/// One word of `known`, `default` when unset.
pub fn word<'a>(name: &str, known: &[&'a str], default: &'a str) -> &'a str {
    match raw(name) {
        None => default,
        Some(v) => match known.iter().find(|k| **k == v.trim()) {
            Some(k) => k,
            None => bad(name, &v, format_args!("is not one of {}", known.join(", "))),
        },
    }
}

/// An on/off switch, `true` (on) when unset: `NAME=off` turns it off, `NAME=on` is the default.
pub fn on(name: &str) -> bool {
    word(name, &["on", "off"], "on") == "on"
}

/// `NETFORGE_BIN_BASE`: another netforge binary to run beside this build; `None` when unset,
/// an error when it names no file.
pub fn bin_base() -> Option<String> {
    const NAME: &str = "NETFORGE_BIN_BASE";
    let p = raw(NAME)?;
    if !std::path::Path::new(&p).is_file() {
        bad(NAME, &p, "is not a file (a netforge binary to compare with)")
    }
    Some(p)
}
