//! goon's traffic flags: the clap arguments, their checks and conversion to a
//! [`TrafficPlan`], and the message forms (escapes, `@FILE`, markers).

use super::*;

/// goon's traffic flags (flattened into `goon`'s).
#[derive(clap::Args, Debug, Default)]
pub struct TrafficArgs {
    /// Traffic: send this after connect, repeatedly at --message-rate (needs --duration). TEXT
    /// takes the escapes \n \r \t \\ \0 \xHH; @FILE sends a regular file's bytes as they
    /// are (at most 1 MiB; a text starting with @ is written \x40...). With --ws each message
    /// is one binary data frame, and responses are the payload of the server's data frames.
    #[arg(long, value_name = "TEXT|@FILE", allow_hyphen_values = true, value_parser = parse_message)]
    pub(crate) message: Option<Payload>,
    /// Traffic: send this once on each connection as soon as it is established (before the
    /// first --message); the same forms as --message.
    #[arg(long = "first-message", value_name = "TEXT|@FILE", allow_hyphen_values = true,
          value_parser = parse_message)]
    pub(crate) first_message: Option<Payload>,
    /// Traffic: --message this many times per second on each connection, 0.001..=100000
    /// (fractions allowed). The first is due when the connection is established, the next ones
    /// 1/R apart on the connection's phase: the run's connections are spread evenly over 1/R.
    #[arg(long = "message-rate", value_name = "PER_SECOND", allow_hyphen_values = true,
          value_parser = parse_msg_rate)]
    pub(crate) message_rate: Option<f64>,
    /// Traffic: how long messages are sent, counted from the end of the dial phase (every
    /// connection dialed and resolved), 1ms..=8760h; --hold then keeps the connections open
    /// that much longer, without sending, for the last answers.
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true,
          value_parser = |s: &str| parse_duration_in(s, Duration::from_millis(1), MAX_DURATION))]
    pub(crate) duration: Option<Duration>,
    /// Traffic: a response is complete after N bytes, 1..=1073741824; each response's latency
    /// is measured from its message's intended send time.
    #[arg(long = "expect-bytes", value_name = "N", allow_hyphen_values = true, conflicts_with = "marker",
          value_parser = |s: &str| parse_int(s, 1, EXPECT_MAX))]
    pub(crate) expect_bytes: Option<u64>,
    /// Traffic: a response ends with this marker (escapes as in --message, 1..=1024 bytes);
    /// searched as the bytes arrive, nothing is buffered.
    #[arg(long, value_name = "TEXT", allow_hyphen_values = true, value_parser = parse_marker)]
    pub(crate) marker: Option<Payload>,
}

impl TrafficArgs {
    /// The flags checked against each other; `None` without any.
    pub(crate) fn plan(&self) -> Result<Option<TrafficPlan>, Error> {
        let a = self;
        let sends = a.message.is_some() || a.first_message.is_some();
        match (&a.message, a.message_rate) {
            (Some(_), None) => {
                return Err(usage(
                    "--message needs --message-rate R (messages per second per connection); to send once after connect, use --first-message".into(),
                ))
            }
            (None, Some(_)) => return Err(usage("--message-rate needs --message TEXT|@FILE (what to send)".into())),
            _ => {}
        }
        if a.message_rate.is_some() && a.duration.is_none() {
            return Err(usage("--message-rate needs --duration D (how long the messages go on)".into()));
        }
        let needs = |flag: &str, extra: &str| usage(format!("{flag} needs --message or --first-message{extra}"));
        if !sends {
            if a.duration.is_some() {
                return Err(needs(
                    "--duration",
                    " (it is the traffic phase; without traffic, --hold keeps connections open)",
                ));
            }
            if a.expect_bytes.is_some() {
                return Err(needs("--expect-bytes", " (what the responses answer)"));
            }
            if a.marker.is_some() {
                return Err(needs("--marker", " (what the responses answer)"));
            }
            return Ok(None);
        }
        let until = match (a.expect_bytes, &a.marker) {
            (Some(n), _) => Until::Bytes(n),
            (None, Some(m)) => Until::Marker(Marker::new(&m.0)),
            (None, None) => Until::Nothing,
        };
        Ok(Some(TrafficPlan {
            first_message: a.first_message.clone(),
            message: a.message.clone(),
            message_rate: a.message_rate,
            duration: a.duration.unwrap_or(Duration::ZERO),
            expect_bytes: a.expect_bytes,
            marker: a.marker.clone(),
            until,
        }))
    }
}

/// Decodes a message given on the command line: `\n \r \t \\ \0 \xHH`; anything else after a
/// backslash is an error naming its byte offset.
pub fn unescape(s: &str) -> Result<Vec<u8>, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let at = i;
        let c = *b.get(i + 1).ok_or_else(|| format!("a lone \\ at byte {at} ends the text (write \\\\ for one)"))?;
        i += 2;
        out.push(match c {
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'\\' => b'\\',
            b'0' => 0,
            b'x' => {
                let hex = b.get(i..i + 2).and_then(|h| std::str::from_utf8(h).ok());
                let v = hex
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("\\x at byte {at} needs two hex digits (\\x0a)"))?;
                i += 2;
                v
            }
            _ => {
                let shown = s[at..].chars().take(2).collect::<String>();
                return Err(format!("{shown} at byte {at} is not an escape (\\n \\r \\t \\\\ \\0 \\xHH)"));
            }
        });
    }
    Ok(out)
}

/// A message argument: `@FILE` (its bytes as they are, a regular file of at most
/// [`MESSAGE_MAX`]) or text with escapes. Empty messages are refused.
pub fn parse_message(s: &str) -> Result<Payload, String> {
    let bytes = match s.strip_prefix('@') {
        Some("") => return Err("@ needs a file name after it (@FILE), or write \\x40 for the byte @".into()),
        Some(path) => read_message_file(Path::new(path))?,
        None => unescape(s)?,
    };
    if bytes.is_empty() {
        return Err("the message is empty".into());
    }
    if bytes.len() as u64 > MESSAGE_MAX {
        return Err(format!("{} bytes, more than the {} KiB allowed", bytes.len(), MESSAGE_MAX >> 10));
    }
    Ok(Payload(bytes))
}

fn read_message_file(path: &Path) -> Result<Vec<u8>, String> {
    use crate::conffile::{read_regular, ReadFailure};
    read_regular(path, MESSAGE_MAX).map_err(|f| {
        let p = path.display();
        match f {
            ReadFailure::Open(e) => format!("{p}: cannot open: {e}"),
            ReadFailure::Read(e) => format!("{p}: cannot read: {e}"),
            ReadFailure::NotRegular(what) => format!("{p}: {what}; a message file must be a regular file"),
            ReadFailure::TooBig(n) => format!("{p}: {n} bytes, more than the {} KiB allowed", MESSAGE_MAX >> 10),
        }
    })
}

/// `--marker`: text with escapes, 1..=[`MARKER_MAX`] bytes.
pub fn parse_marker(s: &str) -> Result<Payload, String> {
    let bytes = unescape(s)?;
    if bytes.is_empty() || bytes.len() > MARKER_MAX {
        return Err(format!("{} bytes; a marker is 1..={MARKER_MAX} bytes", bytes.len()));
    }
    Ok(Payload(bytes))
}

/// `--message-rate`: messages per second per connection.
pub fn parse_msg_rate(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let v: f64 = t
        .parse()
        .map_err(|_| format!("{t:?} is not a number of messages per second in {MSG_RATE_MIN}..={MSG_RATE_MAX}"))?;
    if !(v.is_finite() && (MSG_RATE_MIN..=MSG_RATE_MAX).contains(&v)) {
        return Err(format!("{t} is out of range {MSG_RATE_MIN}..={MSG_RATE_MAX} messages per second"));
    }
    Ok(v)
}

/// Bytes from the command line (a message or a marker).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payload(pub Vec<u8>);

impl serde::Serialize for Payload {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&escape(&self.0))
    }
}

/// The inverse of [`unescape`] for printing: printable ASCII as is, the rest escaped.
pub fn escape(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len());
    for (i, &c) in b.iter().enumerate() {
        match c {
            // A leading @ would read back as @FILE.
            b'@' if i == 0 => s.push_str("\\x40"),
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            b'\t' => s.push_str("\\t"),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(c as char),
            _ => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    s
}
