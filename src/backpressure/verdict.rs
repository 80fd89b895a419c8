//! Sans-io analysis of the client's socket samples: did backpressure reach the client?
//!
//! Every `sample_interval` the client records a [`Sample`] of its socket (cumulative bytes
//! written and `EAGAIN` count, `SIOCOUTQ`, and `TCP_INFO`'s notsent, peer window, probe backoff,
//! rwnd-limited and busy time). Each sample is classified as
//!
//! - `ZERO WINDOW (probe backoff n)`: the peer advertised a zero window (`snd_wnd == 0`); the
//!   kernel stopped sending and is probing — flow control reached this socket;
//! - `window-limited`: the peer's window, not the network, limited sending during the interval
//!   (`tcpi_rwnd_limited` grew, or more is queued than the window allows);
//! - `flowing`: neither.
//!
//! [`Analysis`] folds samples into bounded aggregates (counts, first zero window, first `EAGAIN`,
//! zero-window episodes) plus a time series for `--json` that is decimated, never grown, past
//! [`SERIES_CAP`] points, and renders the one-line verdict.

use std::fmt;
use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::net::tcp_info::TcpInfo;

/// Most points kept for the JSON time series. Past it, every other point is dropped and the
/// sampling stride doubles, so the series always spans the whole run (4096 points cover
/// 6.8 minutes at 100 ms before the first halving).
pub const SERIES_CAP: usize = 4096;

const VERDICT_PREFIX: &str = "backpressure reached the client:";
/// What a NO means when something between the client and the reader took the data: a proxy,
/// load balancer or relay whose buffers are not bounded, acknowledging whatever arrives.
pub const ABSORBING_HOP: &str =
    "a hop between this client and the reader (proxy, load balancer, relay) is absorbing the data";

fn secs<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// One observation of the client's socket. Counters are cumulative since the connection started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Sample {
    /// Time since the run started (serialized as seconds).
    #[serde(serialize_with = "secs")]
    pub t: Duration,
    /// Bytes the socket accepted from us so far.
    pub bytes_written: u64,
    /// Writes refused with `EAGAIN` so far.
    pub eagain: u64,
    /// `SIOCOUTQ`: bytes written and not yet acknowledged.
    pub outq: u32,
    /// `tcpi_notsent_bytes`: bytes written and not yet sent.
    pub notsent: Option<u32>,
    /// `tcpi_snd_wnd`: the window the peer advertised; 0 = zero window.
    pub snd_wnd: Option<u32>,
    /// `tcpi_backoff`: exponential backoff of the zero-window probe timer.
    pub backoff: u8,
    /// `tcpi_rwnd_limited`: µs spent limited by the peer's window.
    pub rwnd_limited_us: Option<u64>,
    /// `tcpi_busy_time`: µs with data in flight.
    pub busy_time_us: Option<u64>,
}

impl Sample {
    /// A sample from the client's counters and its socket's `TCP_INFO` and `SIOCOUTQ`.
    pub fn from_tcp_info(t: Duration, bytes_written: u64, eagain: u64, outq: u32, info: &TcpInfo) -> Sample {
        Sample {
            t,
            bytes_written,
            eagain,
            outq,
            notsent: info.notsent_bytes,
            snd_wnd: info.snd_wnd,
            backoff: info.backoff,
            rwnd_limited_us: info.rwnd_limited_us,
            busy_time_us: info.busy_time_us,
        }
    }
}

/// Flow-control state of one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowState {
    Flowing,
    WindowLimited,
    ZeroWindow { backoff: u8 },
}

impl WindowState {
    /// Classifies `cur`, comparing its counters with the previous sample (`None` for the first
    /// sample: counters start at zero when the connection does).
    pub fn classify(prev: Option<&Sample>, cur: &Sample) -> WindowState {
        if cur.snd_wnd == Some(0) {
            return WindowState::ZeroWindow { backoff: cur.backoff };
        }
        let before = prev.map_or(Some(0), |p| p.rwnd_limited_us);
        let rwnd_grew = matches!((before, cur.rwnd_limited_us), (Some(b), Some(c)) if c > b);
        let over_window = matches!(cur.snd_wnd, Some(w) if cur.outq > 0 && cur.outq >= w);
        if rwnd_grew || over_window {
            WindowState::WindowLimited
        } else {
            WindowState::Flowing
        }
    }

    /// Short machine name, as in the JSON series.
    pub fn as_str(self) -> &'static str {
        match self {
            WindowState::Flowing => "flowing",
            WindowState::WindowLimited => "window-limited",
            WindowState::ZeroWindow { .. } => "zero-window",
        }
    }
}

impl fmt::Display for WindowState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WindowState::ZeroWindow { backoff } => {
                write!(f, "ZERO WINDOW (probe backoff {backoff})")
            }
            other => f.write_str(other.as_str()),
        }
    }
}

impl Serialize for WindowState {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One point of the JSON time series: a sample and its state, in one flat object.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    #[serde(flatten)]
    pub sample: Sample,
    pub state: WindowState,
}

/// Zero-window episodes: runs of consecutive zero-window samples. An episode lasts from its
/// first zero sample to the first sample after it with an open window (or to the last sample,
/// for one still open at the end).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Episodes {
    pub count: u64,
    pub min_s: f64,
    pub avg_s: f64,
    pub max_s: f64,
    /// True when the last episode was still going at the last sample.
    pub open_at_end: bool,
}

/// Aggregate results, also part of the JSON report.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    pub samples: u64,
    pub zero_window_samples: u64,
    pub window_limited_samples: u64,
    /// `zero_window_samples / samples` (0 without samples).
    pub zero_window_fraction: f64,
    /// Seconds at the first zero-window sample.
    pub first_zero_window_s: Option<f64>,
    /// Bytes written before the first `EAGAIN` (exact when the client reported it, otherwise
    /// the byte count of the first sample that had seen one).
    pub first_eagain_after_bytes: Option<u64>,
    pub bytes_written: u64,
    pub eagain: u64,
    pub max_backoff: u8,
    pub episodes: Episodes,
}

/// The JSON document `--json` prints.
#[derive(Debug, Serialize)]
pub struct Report<'a> {
    pub verdict: String,
    pub summary: Summary,
    /// Samples between consecutive series points (doubles each time the series is decimated).
    pub series_stride: u64,
    pub series: &'a [Point],
}

/// Folds samples into bounded aggregates and a capped series.
#[derive(Debug, Clone)]
pub struct Analysis {
    samples: u64,
    zero: u64,
    limited: u64,
    first_zero: Option<Duration>,
    first_eagain_exact: Option<u64>,
    first_eagain_sampled: Option<u64>,
    max_backoff: u8,
    prev: Option<Sample>,
    episode_start: Option<Duration>,
    episodes: EpisodeAcc,
    series: Vec<Point>,
    series_cap: usize,
    stride: u64,
}

impl Default for Analysis {
    fn default() -> Self {
        Analysis::new()
    }
}

impl Analysis {
    pub fn new() -> Self {
        Analysis::with_series_cap(SERIES_CAP)
    }

    /// An analysis whose series keeps at most `cap` points (at least 2).
    pub fn with_series_cap(cap: usize) -> Self {
        let series_cap = cap.max(2);
        Analysis {
            samples: 0,
            zero: 0,
            limited: 0,
            first_zero: None,
            first_eagain_exact: None,
            first_eagain_sampled: None,
            max_backoff: 0,
            prev: None,
            episode_start: None,
            episodes: EpisodeAcc::default(),
            series: Vec::with_capacity(series_cap),
            series_cap,
            stride: 1,
        }
    }

    /// Records the exact byte count at the first `EAGAIN` (the client calls this once, when its
    /// first write is refused); later calls are ignored.
    pub fn note_first_eagain(&mut self, bytes_written: u64) {
        self.first_eagain_exact.get_or_insert(bytes_written);
    }

    /// Adds a sample (samples must come in time order) and returns its state.
    pub fn push(&mut self, s: Sample) -> WindowState {
        let state = WindowState::classify(self.prev.as_ref(), &s);
        let index = self.samples;
        self.samples += 1;
        match state {
            WindowState::ZeroWindow { backoff } => {
                self.zero += 1;
                self.max_backoff = self.max_backoff.max(backoff);
                self.first_zero.get_or_insert(s.t);
                self.episode_start.get_or_insert(s.t);
            }
            WindowState::WindowLimited | WindowState::Flowing => {
                if state == WindowState::WindowLimited {
                    self.limited += 1;
                }
                if let Some(start) = self.episode_start.take() {
                    self.episodes.end(s.t.saturating_sub(start));
                }
            }
        }
        if s.eagain > 0 {
            self.first_eagain_sampled.get_or_insert(s.bytes_written);
        }
        if index % self.stride == 0 {
            if self.series.len() == self.series_cap {
                // Keep points 0, 2, 4, ...: their indices are multiples of the doubled stride.
                let mut i = 0;
                self.series.retain(|_| {
                    i += 1;
                    i % 2 == 1
                });
                self.stride *= 2;
            }
            if index % self.stride == 0 {
                self.series.push(Point { sample: s, state });
            }
        }
        self.prev = Some(s);
        state
    }

    /// The time series kept so far (at most the cap).
    #[cfg(test)]
    pub fn series(&self) -> &[Point] {
        &self.series
    }

    pub fn summary(&self) -> Summary {
        // Close a still-open episode at the last sample, on a copy.
        let mut closed = self.episodes;
        let open_at_end = self.episode_start.is_some();
        if let (Some(start), Some(last)) = (self.episode_start, self.prev.as_ref()) {
            closed.end(last.t.saturating_sub(start));
        }
        let last = self.prev.unwrap_or_default();
        Summary {
            samples: self.samples,
            zero_window_samples: self.zero,
            window_limited_samples: self.limited,
            zero_window_fraction: if self.samples == 0 { 0.0 } else { self.zero as f64 / self.samples as f64 },
            first_zero_window_s: self.first_zero.map(|t| t.as_secs_f64()),
            first_eagain_after_bytes: self.first_eagain_exact.or(self.first_eagain_sampled),
            bytes_written: last.bytes_written,
            eagain: last.eagain,
            max_backoff: self.max_backoff,
            episodes: closed.stats(open_at_end),
        }
    }

    /// The one-line verdict (see the module docs and the tests for its exact forms).
    pub fn verdict(&self) -> String {
        let s = self.summary();
        if s.samples == 0 {
            return format!("{VERDICT_PREFIX} NO — no samples were taken");
        }
        let blocked = s.first_eagain_after_bytes.map(mb);
        if let Some(first) = s.first_zero_window_s {
            let tail = match blocked {
                Some(b) => format!("first EAGAIN after {b}"),
                None => "writes never blocked".to_string(),
            };
            return format!(
                "{VERDICT_PREFIX} YES — zero window in {} of samples from t={first:.2} s, {tail}",
                percent(s.zero_window_samples, s.samples)
            );
        }
        let n = s.samples;
        let plural = if n == 1 { "" } else { "s" };
        match blocked {
            Some(b) => format!(
                "{VERDICT_PREFIX} NO — writes blocked (EAGAIN after {b}) but the window never reached zero in {n} sample{plural}: {ABSORBING_HOP}"
            ),
            None => {
                let limited = match s.window_limited_samples {
                    0 => String::new(),
                    l => format!(" (window-limited in {l})"),
                };
                // The client cannot tell a reader that keeps up from a hop that buffers
                // everything (both accept every byte at once); the server's own zero-window
                // count can, so the verdict names the hop and says which number decides.
                format!(
                    "{VERDICT_PREFIX} NO — window never reached zero in {n} sample{plural}{limited}; writes never blocked. \
                     If the server saw its window at zero (its `zero rcv_wnd samples` > 0), {ABSORBING_HOP}; \
                     if not, the reader kept up"
                )
            }
        }
    }

    /// The `--json` document.
    pub fn report(&self) -> Report<'_> {
        Report { verdict: self.verdict(), summary: self.summary(), series_stride: self.stride, series: &self.series }
    }
}

/// Running episode statistics (`min` is meaningless while `count` is 0).
#[derive(Debug, Clone, Copy, Default)]
struct EpisodeAcc {
    count: u64,
    min: Duration,
    max: Duration,
    total: Duration,
}

impl EpisodeAcc {
    fn end(&mut self, d: Duration) {
        self.min = if self.count == 0 { d } else { self.min.min(d) };
        self.count += 1;
        self.max = self.max.max(d);
        self.total += d;
    }

    fn stats(&self, open_at_end: bool) -> Episodes {
        if self.count == 0 {
            return Episodes::default();
        }
        Episodes {
            count: self.count,
            min_s: self.min.as_secs_f64(),
            avg_s: self.total.as_secs_f64() / self.count as f64,
            max_s: self.max.as_secs_f64(),
            open_at_end,
        }
    }
}

/// `4.1 MB` (decimal megabytes, one decimal).
fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// `87%`, never rounding a partial share to `0%` or `100%`.
fn percent(part: u64, whole: u64) -> String {
    let p = (part as f64 * 100.0 / whole as f64).round() as u64;
    match p {
        0 if part > 0 => "<1%".to_string(),
        100 if part < whole => ">99%".to_string(),
        p => format!("{p}%"),
    }
}

fn opt(v: Option<u32>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// One live line per stats interval: the application's write rate since `prev` (the sample of
/// the previous line; `None` for the first line: since the start), i.e. bytes `write(2)`
/// accepted per second, what the client handed the kernel and not what crossed the wire; then
/// the current window, queues and state:
/// `t=   1.00s  app_write=    2.10 MB/s  snd_wnd=       0  outq=  1048576  notsent=  1048576  ZERO WINDOW (probe backoff 1)`
pub fn interval_line(prev: Option<&Sample>, cur: &Sample, state: WindowState) -> String {
    let (t0, b0) = prev.map_or((Duration::ZERO, 0), |p| (p.t, p.bytes_written));
    let dt = cur.t.saturating_sub(t0).as_secs_f64();
    let rate = if dt > 0.0 { cur.bytes_written.saturating_sub(b0) as f64 / dt / 1e6 } else { 0.0 };
    format!(
        "t={:>7.2}s  app_write={:>8.2} MB/s  snd_wnd={:>8}  outq={:>9}  notsent={:>9}  {state}",
        cur.t.as_secs_f64(),
        rate,
        opt(cur.snd_wnd),
        cur.outq,
        opt(cur.notsent)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    /// A sample at `t_ms` with the fields a case cares about.
    fn sample(t_ms: u64, bytes: u64, eagain: u64, snd_wnd: u32, outq: u32, rwnd_us: u64) -> Sample {
        Sample {
            t: ms(t_ms),
            bytes_written: bytes,
            eagain,
            outq,
            notsent: Some(outq / 2),
            snd_wnd: Some(snd_wnd),
            backoff: 0,
            rwnd_limited_us: Some(rwnd_us),
            busy_time_us: Some(t_ms * 1000),
        }
    }

    #[test]
    fn classification() {
        let base = sample(100, 1000, 0, 65535, 1000, 0);
        let cases: &[(&str, Option<Sample>, Sample, WindowState)] = &[
            ("open window, nothing queued", None, base, WindowState::Flowing),
            (
                "zero window",
                Some(base),
                Sample { snd_wnd: Some(0), backoff: 3, ..base },
                WindowState::ZeroWindow { backoff: 3 },
            ),
            ("rwnd_limited grew", Some(base), Sample { rwnd_limited_us: Some(5), ..base }, WindowState::WindowLimited),
            (
                "rwnd_limited unchanged",
                Some(Sample { rwnd_limited_us: Some(5), ..base }),
                Sample { rwnd_limited_us: Some(5), ..base },
                WindowState::Flowing,
            ),
            (
                "first sample already limited",
                None,
                Sample { rwnd_limited_us: Some(5), ..base },
                WindowState::WindowLimited,
            ),
            ("queue at the window", Some(base), Sample { outq: 65535, ..base }, WindowState::WindowLimited),
            ("queue under the window", Some(base), Sample { outq: 65534, ..base }, WindowState::Flowing),
            (
                "old kernel: no window fields",
                Some(base),
                Sample { snd_wnd: None, rwnd_limited_us: None, ..base },
                WindowState::Flowing,
            ),
        ];
        for (name, prev, cur, want) in cases {
            assert_eq!(WindowState::classify(prev.as_ref(), cur), *want, "{name}");
        }
        assert_eq!(WindowState::ZeroWindow { backoff: 2 }.to_string(), "ZERO WINDOW (probe backoff 2)");
        assert_eq!(WindowState::WindowLimited.to_string(), "window-limited");
        assert_eq!(WindowState::Flowing.to_string(), "flowing");
    }

    /// (snd_wnd per sample at 100 ms steps, eagain from sample index, exact EAGAIN bytes) → verdict.
    #[test]
    fn verdicts() {
        type Case = (&'static [u32], Option<usize>, Option<u64>, &'static str);
        let cases: &[Case] = &[
            (&[], None, None, "backpressure reached the client: NO — no samples were taken"),
            (
                &[65535, 65535, 0, 0, 0, 0, 0, 0],
                Some(5),
                None,
                "backpressure reached the client: YES — zero window in 75% of samples from t=0.30 s, first EAGAIN after 6.0 MB",
            ),
            (
                &[65535, 65535, 0, 0, 0, 0, 0, 0],
                Some(5),
                Some(4_100_000),
                "backpressure reached the client: YES — zero window in 75% of samples from t=0.30 s, first EAGAIN after 4.1 MB",
            ),
            (
                &[65535, 0, 65535],
                None,
                None,
                "backpressure reached the client: YES — zero window in 33% of samples from t=0.20 s, writes never blocked",
            ),
            (
                &[65535, 65535, 65535, 65535],
                Some(2),
                Some(12_000_000),
                "backpressure reached the client: NO — writes blocked (EAGAIN after 12.0 MB) but the window never reached zero in 4 samples: a hop between this client and the reader (proxy, load balancer, relay) is absorbing the data",
            ),
            (
                &[65535; 50],
                None,
                None,
                "backpressure reached the client: NO — window never reached zero in 50 samples; writes never blocked. If the server saw its window at zero (its `zero rcv_wnd samples` > 0), a hop between this client and the reader (proxy, load balancer, relay) is absorbing the data; if not, the reader kept up",
            ),
            (&[65535], None, None, "backpressure reached the client: NO — window never reached zero in 1 sample; writes never blocked. If the server saw its window at zero (its `zero rcv_wnd samples` > 0), a hop between this client and the reader (proxy, load balancer, relay) is absorbing the data; if not, the reader kept up"),
        ];
        for (windows, eagain_from, exact, want) in cases {
            let mut a = Analysis::new();
            if let Some(b) = exact {
                a.note_first_eagain(*b);
            }
            for (i, &w) in windows.iter().enumerate() {
                let eagain = eagain_from.map_or(0, |from| if i >= from { (i - from + 1) as u64 } else { 0 });
                a.push(sample(100 * (i as u64 + 1), 1_000_000 * (i as u64 + 1), eagain, w, 1000, 0));
            }
            assert_eq!(a.verdict(), *want);
        }
    }

    #[test]
    fn window_limited_runs_are_mentioned_when_the_window_never_closed() {
        let mut a = Analysis::new();
        for i in 0..10u64 {
            a.push(sample(100 * (i + 1), 1000 * i, 0, 65535, 1000, 1000 * i));
        }
        assert_eq!(
            a.verdict(),
            "backpressure reached the client: NO — window never reached zero in 10 samples (window-limited in 9); writes never blocked. If the server saw its window at zero (its `zero rcv_wnd samples` > 0), a hop between this client and the reader (proxy, load balancer, relay) is absorbing the data; if not, the reader kept up"
        );
    }

    /// A run whose writes never blocked and whose window never closed (what a client sees behind
    /// an unbounded relay, and also against a fast reader) names the absorbing hop and the
    /// server-side number that tells the two apart.
    #[test]
    fn no_without_pushback_names_the_absorbing_hop() {
        let mut a = Analysis::new();
        for i in 0..20u64 {
            a.push(sample(100 * (i + 1), 2_000_000 * (i + 1), 0, 4_000_000, 0, 0));
        }
        let v = a.verdict();
        assert!(v.starts_with("backpressure reached the client: NO — window never reached zero in 20 samples;"), "{v}");
        assert!(v.contains(ABSORBING_HOP), "{v}");
        assert!(v.contains("zero rcv_wnd samples"), "names the server's counter: {v}");
        assert!(!v.contains('\n'), "one line: {v}");
    }

    #[test]
    fn percentages_never_round_to_the_extremes() {
        let cases = [
            (0, 10, "0%"),
            (1, 1000, "<1%"),
            (999, 1000, ">99%"),
            (1000, 1000, "100%"),
            (87, 100, "87%"),
            (2, 3, "67%"),
        ];
        for (part, whole, want) in cases {
            assert_eq!(percent(part, whole), want, "{part}/{whole}");
        }
    }

    #[test]
    fn episodes_and_summary() {
        // Zero windows at 200-300 ms (ends at 400), 600 ms (ends at 700) and 900-1000 ms (open).
        let windows = [1, 1, 0, 0, 1, 1, 0, 1, 1, 0, 0];
        let mut a = Analysis::new();
        for (i, &w) in windows.iter().enumerate() {
            let i = i as u64;
            let mut s = sample(100 * i, 1000 * i, u64::from(i >= 4), w, 10, 0);
            s.backoff = if w == 0 { i as u8 } else { 0 };
            a.push(s);
        }
        let s = a.summary();
        assert_eq!((s.samples, s.zero_window_samples), (11, 5));
        assert_eq!(s.first_zero_window_s, Some(0.2));
        assert_eq!(s.first_eagain_after_bytes, Some(4000), "bytes of the first sample that saw EAGAIN");
        assert_eq!((s.bytes_written, s.eagain, s.max_backoff), (10_000, 1, 10));
        let e = s.episodes;
        assert_eq!((e.count, e.open_at_end), (3, true));
        assert!((e.min_s - 0.1).abs() < 1e-9 && (e.max_s - 0.2).abs() < 1e-9, "{e:?}");
        assert!((e.avg_s - 0.4 / 3.0).abs() < 1e-9, "{e:?}");
        // Summaries do not disturb the running analysis.
        assert_eq!(a.summary(), s);
        a.push(sample(1100, 11_000, 1, 1, 10, 0));
        let e = a.summary().episodes;
        assert_eq!((e.count, e.open_at_end), (3, false));
        assert!((e.max_s - 0.2).abs() < 1e-9);
    }

    #[test]
    fn series_is_bounded_and_spans_the_run() {
        let cap = 64;
        let mut a = Analysis::with_series_cap(cap);
        let n = 10_000u64;
        for i in 0..n {
            a.push(sample(100 * i, i, 0, 65535, 0, 0));
            assert!(a.series().len() <= cap);
        }
        let series = a.series();
        let stride = a.report().series_stride;
        assert!(stride.is_power_of_two() && stride >= n / cap as u64, "stride {stride}");
        assert_eq!(series[0].sample.t, Duration::ZERO);
        assert!(series.len() > cap / 2, "{} points", series.len());
        // Evenly spaced by the stride, ending within one stride of the last sample.
        for w in series.windows(2) {
            assert_eq!(w[1].sample.bytes_written - w[0].sample.bytes_written, stride);
        }
        assert!(n - 1 - series[series.len() - 1].sample.bytes_written < stride);
        assert_eq!(a.summary().samples, n, "aggregates are exact regardless of the cap");
    }

    #[test]
    fn interval_lines() {
        let prev = sample(1000, 1_000_000, 0, 65535, 0, 0);
        let cur = Sample { snd_wnd: Some(0), backoff: 2, ..sample(2000, 3_100_000, 4, 0, 2_000_000, 0) };
        let state = WindowState::classify(Some(&prev), &cur);
        assert_eq!(
            interval_line(Some(&prev), &cur, state),
            "t=   2.00s  app_write=    2.10 MB/s  snd_wnd=       0  outq=  2000000  notsent=  1000000  ZERO WINDOW (probe backoff 2)"
        );
        let first = Sample { notsent: None, snd_wnd: None, ..sample(500, 1_000_000, 0, 0, 0, 0) };
        assert_eq!(
            interval_line(None, &first, WindowState::Flowing),
            "t=   0.50s  app_write=    2.00 MB/s  snd_wnd=       -  outq=        0  notsent=        -  flowing"
        );
        let same_time = interval_line(Some(&prev), &prev, WindowState::Flowing);
        assert!(same_time.contains("    0.00 MB/s"), "{same_time}");
    }

    #[test]
    fn json_report_shape() {
        let mut a = Analysis::new();
        a.push(sample(100, 10, 0, 65535, 0, 0));
        a.push(Sample { backoff: 1, ..sample(200, 20, 1, 0, 5, 0) });
        let v = serde_json::to_value(a.report()).unwrap();
        assert_eq!(v["verdict"], a.verdict());
        assert_eq!(v["summary"]["samples"], 2);
        assert_eq!(v["summary"]["first_zero_window_s"], 0.2);
        assert_eq!(v["summary"]["episodes"]["count"], 1);
        assert_eq!(v["series_stride"], 1);
        let p = &v["series"][1];
        assert_eq!(p["t"], 0.2);
        assert_eq!(p["state"], "zero-window");
        assert_eq!(p["snd_wnd"], 0);
        assert_eq!(p["backoff"], 1);
        assert_eq!(v["series"][0]["state"], "flowing");
        let s = serde_json::to_value(sample(1500, 1, 2, 3, 4, 5)).unwrap();
        assert_eq!(s["t"], 1.5);
        assert_eq!(s["rwnd_limited_us"], 5);
    }

    #[test]
    fn sample_from_tcp_info() {
        let info = TcpInfo {
            backoff: 4,
            notsent_bytes: Some(7),
            snd_wnd: Some(0),
            rwnd_limited_us: Some(9),
            busy_time_us: Some(11),
            ..TcpInfo::default()
        };
        let s = Sample::from_tcp_info(ms(300), 100, 2, 50, &info);
        assert_eq!(
            s,
            Sample {
                t: ms(300),
                bytes_written: 100,
                eagain: 2,
                outq: 50,
                notsent: Some(7),
                snd_wnd: Some(0),
                backoff: 4,
                rwnd_limited_us: Some(9),
                busy_time_us: Some(11),
            }
        );
    }
}
