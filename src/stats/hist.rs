//! `Latency`: an HdrHistogram in microseconds (1 µs .. 60 s, 3 significant digits) plus exact
//! min/max/sum/sum-of-squares in nanoseconds (integers, so merging in any order gives the same
//! bits), so `min/avg/max/dev` match what tcpgoon prints (computed from every sample) while
//! percentiles come from the histogram. [`Latency::moments_json`] / [`Latency::from_moments_json`]
//! carry the mergeable part through JSON (docs/json-format.md §2).

use std::time::Duration;

use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;

use crate::units::go_duration;

/// Highest value the histogram tracks, in µs; larger samples saturate to it.
pub(crate) const HIST_MAX_US: u64 = 60_000_000;
pub(crate) const HIST_SIGFIG: u8 = 3;
pub(crate) const HIST_LOWEST_US: u64 = 1;
/// HdrHistogram's V2 cookies (compressed, and inside it the plain form) and header size.
const V2_DEFLATE_COOKIE: u32 = 0x1c84_9314;
const V2_COOKIE: u32 = 0x1c84_9313;
const V2_HEADER: usize = 40;
/// Most bytes a histogram of this precision inflates to (its counts take ~170 KB at most).
const MAX_INFLATED: usize = 4 << 20;

#[derive(Clone, Debug)]
pub struct Latency {
    /// Allocated on the first sample (a live histogram of this precision is ~150 KiB): a
    /// recorder that never records, or one taken and not written since, costs a few words.
    pub hist: Option<Histogram<u64>>,
    pub count: u64,
    pub min_ns: u64,
    pub max_ns: u64,
    pub sum_ns: u128,
    /// Σ ns², saturating (only past ~10^17 one-second samples).
    pub sum_sq_ns: u128,
}

impl Default for Latency {
    fn default() -> Self {
        Latency::new()
    }
}

impl Latency {
    pub(crate) fn new() -> Latency {
        Latency { hist: None, count: 0, min_ns: u64::MAX, max_ns: 0, sum_ns: 0, sum_sq_ns: 0 }
    }

    /// A histogram that grows with the largest value recorded: hdrhistogram writes every count
    /// it allocates, so one sized for 60 s from the start is ~136 KiB resident per recorder,
    /// where connect times of a few ms need ~40 KiB. The buckets depend only on the lowest
    /// value and the precision, so percentiles and merges are the same as with the fixed bound;
    /// samples are clamped to [`HIST_MAX_US`] before they are recorded, so it never grows past
    /// the fixed form's size.
    fn empty_hist() -> Histogram<u64> {
        let mut h = Histogram::new_with_bounds(HIST_LOWEST_US, 2 * HIST_LOWEST_US, HIST_SIGFIG)
            .expect("constant histogram bounds are valid");
        h.auto(true);
        h
    }

    /// The fixed-bound form ([`HIST_LOWEST_US`]..[`HIST_MAX_US`]) that the encoding's header
    /// states, whatever the recorder grew to.
    fn full_hist() -> Histogram<u64> {
        Histogram::new_with_bounds(HIST_LOWEST_US, HIST_MAX_US, HIST_SIGFIG)
            .expect("constant histogram bounds are valid")
    }

    /// The histogram, allocated now if this is the first sample.
    fn hist_mut(&mut self) -> &mut Histogram<u64> {
        self.hist.get_or_insert_with(Latency::empty_hist)
    }

    pub(crate) fn record(&mut self, d: Duration) {
        let ns = d.as_nanos().min(u64::MAX as u128) as u64;
        let us = (ns / 1000).clamp(1, HIST_MAX_US);
        let h = self.hist_mut();
        // `record` grows the histogram to the value (`saturating_record` would pin it to the
        // current top instead); it can only fail if growing does, and then the top bucket holds it.
        if h.record(us).is_err() {
            h.saturating_record(us);
        }
        self.count += 1;
        self.min_ns = self.min_ns.min(ns);
        self.max_ns = self.max_ns.max(ns);
        self.sum_ns = self.sum_ns.saturating_add(ns as u128);
        self.sum_sq_ns = self.sum_sq_ns.saturating_add((ns as u128).saturating_mul(ns as u128));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Moves the contents out, leaving an empty recorder (the per-interval swap).
    pub(crate) fn take(&mut self) -> Latency {
        let mut out = Latency::new();
        std::mem::swap(self, &mut out);
        out
    }

    /// Empties the recorder, keeping its histogram's allocation (if it has one).
    pub(crate) fn clear(&mut self) {
        if let Some(h) = self.hist.as_mut() {
            h.reset();
        }
        self.count = 0;
        self.min_ns = u64::MAX;
        self.max_ns = 0;
        self.sum_ns = 0;
        self.sum_sq_ns = 0;
    }

    pub(crate) fn merge(&mut self, other: &Latency) {
        if other.count == 0 {
            return;
        }
        // Same bounds on both sides: `add` cannot fail.
        if let Some(h) = &other.hist {
            let _ = self.hist_mut().add(h);
        }
        self.count += other.count;
        self.min_ns = self.min_ns.min(other.min_ns);
        self.max_ns = self.max_ns.max(other.max_ns);
        self.sum_ns = self.sum_ns.saturating_add(other.sum_ns);
        self.sum_sq_ns = self.sum_sq_ns.saturating_add(other.sum_sq_ns);
    }

    pub(crate) fn min(&self) -> Duration {
        Duration::from_nanos(if self.count == 0 { 0 } else { self.min_ns })
    }

    pub(crate) fn max(&self) -> Duration {
        Duration::from_nanos(self.max_ns)
    }

    pub(crate) fn mean(&self) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos((self.sum_ns / self.count as u128) as u64)
    }

    /// Population standard deviation (what tcpgoon's `dev` is).
    pub(crate) fn stddev(&self) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        // n²·var = n·Σx² − (Σx)², exact in integers while it fits (always, for connect times
        // under 60 s and fewer than ~10^10 samples); f64 past that.
        let n = self.count as u128;
        let var = match (n.checked_mul(self.sum_sq_ns), self.sum_ns.checked_mul(self.sum_ns)) {
            (Some(a), Some(b)) => a.saturating_sub(b) as f64 / (n as f64 * n as f64),
            _ => {
                let mean = self.sum_ns as f64 / n as f64;
                (self.sum_sq_ns as f64 / n as f64 - mean * mean).max(0.0)
            }
        };
        Duration::from_nanos(var.sqrt().round() as u64)
    }

    /// Percentile from the histogram (µs resolution), clamped to the exact `[min, max]`: a
    /// histogram bucket reports its highest equivalent value, which can lie above the largest
    /// sample (and µs truncation below the smallest), and a p99 above the max is never true.
    pub(crate) fn percentile(&self, q: f64) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        let at = self.hist.as_ref().map_or(0, |h| h.value_at_quantile(q / 100.0));
        Duration::from_micros(at).clamp(self.min(), self.max())
    }

    /// `min/avg/max/dev` in Go's duration format.
    pub(crate) fn min_avg_max_dev(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            go_duration(self.min()),
            go_duration(self.mean()),
            go_duration(self.max()),
            go_duration(self.stddev())
        )
    }

    /// `p50/p90/p99/p99.9/max`.
    pub(crate) fn percentiles_line(&self) -> String {
        let ps: Vec<String> = [50.0, 90.0, 99.0, 99.9].iter().map(|q| go_duration(self.percentile(*q))).collect();
        format!("{}/{}", ps.join("/"), go_duration(self.max()))
    }

    /// HdrHistogram V2 (deflate) encoding in base64: the form HdrHistogram's log tools read,
    /// so results from several machines can be merged later.
    pub(crate) fn encode(&self) -> String {
        let mut buf = Vec::new();
        // The same bounds in every encoding (the decoder checks them): copy into the fixed form.
        let mut h = Latency::full_hist();
        if let Some(own) = &self.hist {
            // Within the fixed bounds (samples are clamped): `add` cannot fail.
            let _ = h.add(own);
        }
        match V2DeflateSerializer::new().serialize(&h, &mut buf) {
            Ok(_) => base64_encode(&buf),
            Err(_) => String::new(),
        }
    }

    /// The mergeable part as JSON: `{"count": 0}` when empty, else count, min_ns, max_ns,
    /// sum_ns and sum_sq_ns2 (decimal strings) and the encoded histogram.
    pub fn moments_json(&self) -> serde_json::Value {
        if self.count == 0 {
            return serde_json::json!({ "count": 0 });
        }
        serde_json::json!({
            "count": self.count,
            "min_ns": self.min_ns,
            "max_ns": self.max_ns,
            "sum_ns": self.sum_ns.to_string(),
            "sum_sq_ns2": self.sum_sq_ns.to_string(),
            "histogram_v2_deflate_base64": self.encode(),
        })
    }

    /// Reads what [`Latency::moments_json`] wrote (the whole-run objects' extra keys are
    /// ignored). The error names the key that is wrong.
    pub fn from_moments_json(v: &serde_json::Value) -> Result<Latency, String> {
        let mut l = Latency::new();
        let count = v.get("count").and_then(|c| c.as_u64()).ok_or("count: missing or not an integer")?;
        if count == 0 {
            return Ok(l);
        }
        let int = |k: &str| v.get(k).and_then(|x| x.as_u64()).ok_or(format!("{k}: missing or not an integer"));
        let big = |k: &str| {
            v.get(k)
                .and_then(|x| x.as_str())
                .and_then(|x| x.parse::<u128>().ok())
                .ok_or(format!("{k}: missing or not a decimal integer string"))
        };
        l.count = count;
        l.min_ns = int("min_ns")?;
        l.max_ns = int("max_ns")?;
        l.sum_ns = big("sum_ns")?;
        l.sum_sq_ns = big("sum_sq_ns2")?;
        if l.min_ns > l.max_ns {
            return Err("min_ns: above max_ns".into());
        }
        let text = v
            .get("histogram_v2_deflate_base64")
            .and_then(|x| x.as_str())
            .ok_or("histogram_v2_deflate_base64: missing or not a string")?;
        let h = Latency::decode_hist(text).map_err(|e| format!("histogram_v2_deflate_base64: {e}"))?;
        if h.sigfig() != HIST_SIGFIG {
            return Err(format!(
                "histogram_v2_deflate_base64: {} significant digits, this netforge records {HIST_SIGFIG}",
                h.sigfig()
            ));
        }
        if h.len() != count {
            return Err(format!("histogram_v2_deflate_base64: holds {} samples, count says {count}", h.len()));
        }
        // The exact moments must be those of the recorded values: the extremes in the
        // histogram's extreme buckets, the sum between count × min and count × max.
        let us = |ns: u64| (ns / 1000).clamp(HIST_LOWEST_US, HIST_MAX_US);
        if !h.equivalent(us(l.max_ns), h.max()) {
            return Err(format!("max_ns: {} is not the histogram's largest value (about {} us)", l.max_ns, h.max()));
        }
        if !h.equivalent(us(l.min_ns), h.min()) {
            return Err(format!("min_ns: {} is not the histogram's smallest value (about {} us)", l.min_ns, h.min()));
        }
        let (n, lo, hi) = (u128::from(count), u128::from(l.min_ns), u128::from(l.max_ns));
        if l.sum_ns < n * lo || l.sum_ns > n * hi {
            return Err(format!("sum_ns: {} is outside count x min_ns..=count x max_ns", l.sum_ns));
        }
        if (n * lo).checked_mul(lo).is_some_and(|x| l.sum_sq_ns < x)
            || (n * hi).checked_mul(hi).is_some_and(|x| l.sum_sq_ns > x)
        {
            return Err(format!("sum_sq_ns2: {} is outside count x min_ns^2..=count x max_ns^2", l.sum_sq_ns));
        }
        l.hist_mut().add(&h).map_err(|e| format!("histogram_v2_deflate_base64: {e:?}"))?;
        Ok(l)
    }

    /// The precision every histogram is recorded with (docs/json-format.md §2).
    pub fn precision_json() -> serde_json::Value {
        serde_json::json!({
            "unit": "us",
            "lowest_discernible": HIST_LOWEST_US,
            "highest_trackable": HIST_MAX_US,
            "significant_digits": HIST_SIGFIG,
        })
    }

    /// Decodes [`Latency::encode`]'s form. The input may come from any file, so it is
    /// inflated here with a size cap and its header checked (this netforge's precision, a
    /// payload length that matches the bytes) before hdrhistogram, which trusts that length,
    /// sees it.
    pub fn decode_hist(text: &str) -> Result<Histogram<u64>, String> {
        let bytes = base64_decode(text).ok_or("histogram is not valid base64")?;
        let be32 = |b: &[u8], at: usize| b.get(at..at + 4).map(|x| u32::from_be_bytes([x[0], x[1], x[2], x[3]]));
        let be64 = |b: &[u8], at: usize| b.get(at..at + 8).map(|x| u64::from_be_bytes(x.try_into().unwrap_or([0; 8])));
        if be32(&bytes, 0) != Some(V2_DEFLATE_COOKIE) {
            return Err("not an HdrHistogram V2 deflate encoding (wrong cookie)".into());
        }
        let len = be32(&bytes, 4).ok_or("histogram is truncated")? as usize;
        let zlib = bytes.get(8..8usize.saturating_add(len)).ok_or("histogram is truncated")?;
        let raw = super::inflate::zlib(zlib, MAX_INFLATED).map_err(|e| format!("histogram does not inflate: {e}"))?;
        if be32(&raw, 0) != Some(V2_COOKIE) {
            return Err("histogram does not decode: wrong inner cookie".into());
        }
        let payload = be32(&raw, 4).unwrap_or(u32::MAX) as usize;
        if raw.len() != V2_HEADER + payload {
            return Err(format!(
                "histogram does not decode: says {payload} payload bytes, holds {}",
                raw.len().saturating_sub(V2_HEADER)
            ));
        }
        let (digits, low, high) = (be32(&raw, 12), be64(&raw, 16), be64(&raw, 24));
        if (digits, low, high) != (Some(u32::from(HIST_SIGFIG)), Some(HIST_LOWEST_US), Some(HIST_MAX_US)) {
            return Err(format!(
                "precision {} significant digits, {}..{} us differs from this netforge's {HIST_SIGFIG}, {HIST_LOWEST_US}..{HIST_MAX_US}",
                digits.unwrap_or(0),
                low.unwrap_or(0),
                high.unwrap_or(0)
            ));
        }
        Deserializer::new().deserialize(&mut raw.as_slice()).map_err(|e| format!("histogram does not decode: {e:?}"))
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in text.bytes() {
        let v = B64.iter().position(|&b| b == c)? as u32;
        acc = acc << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_moments_and_merge() {
        let mut a = Latency::new();
        let mut b = Latency::new();
        for ms in [1u64, 2, 3] {
            a.record(Duration::from_millis(ms));
        }
        b.record(Duration::from_millis(6));
        a.merge(&b);
        assert_eq!(a.count, 4);
        assert_eq!(a.min(), Duration::from_millis(1));
        assert_eq!(a.max(), Duration::from_millis(6));
        assert_eq!(a.mean(), Duration::from_millis(3));
        // values 1,2,3,6 ms: variance = (4+1+0+9)/4 = 3.5 ms^2
        assert_eq!(a.stddev().as_micros(), 1870);
        assert_eq!(a.min_avg_max_dev(), "1ms/3ms/6ms/1.870829ms");
        let p50 = a.percentile(50.0).as_micros();
        assert!((1990..=2010).contains(&p50), "{p50}");
    }

    #[test]
    fn percentiles_stay_within_the_exact_min_and_max() {
        // 28.693885 ms lands in a bucket whose highest equivalent value is 28.703 ms.
        let mut a = Latency::new();
        a.record(Duration::from_nanos(1_006_327));
        a.record(Duration::from_nanos(28_693_885));
        assert!(a.hist.as_ref().unwrap().value_at_quantile(0.999) > 28_693, "the bucket's top lies above the max");
        for q in [50.0, 90.0, 99.0, 99.9, 100.0] {
            let p = a.percentile(q);
            assert!(p >= a.min() && p <= a.max(), "p{q} = {p:?} outside [{:?}, {:?}]", a.min(), a.max());
        }
        assert_eq!(a.percentile(99.9), a.max());
        assert_eq!(a.percentiles_line(), "1.006327ms/28.693885ms/28.693885ms/28.693885ms/28.693885ms");
        // Below 1 µs, truncation would put the p50 under the min.
        let mut b = Latency::new();
        b.record(Duration::from_nanos(1_500));
        assert_eq!(b.percentile(50.0), Duration::from_nanos(1_500));
        assert_eq!(Latency::new().percentile(99.0), Duration::ZERO);
    }

    #[test]
    fn take_swaps_out() {
        let mut a = Latency::new();
        a.record(Duration::from_micros(5));
        let t = a.take();
        assert_eq!((t.count, a.count), (1, 0));
        assert!(a.hist.as_ref().is_none_or(Histogram::is_empty));
        let mut c = t.clone();
        c.clear();
        assert!(c.is_empty() && c.hist.as_ref().is_none_or(Histogram::is_empty) && c.sum_ns == 0 && c.sum_sq_ns == 0);
        c.record(Duration::from_micros(7));
        assert_eq!((c.min(), c.max()), (Duration::from_micros(7), Duration::from_micros(7)), "min reset too");
    }

    #[test]
    fn histogram_round_trips_through_base64() {
        let mut a = Latency::new();
        for us in 1..=1000u64 {
            a.record(Duration::from_micros(us));
        }
        let h = Latency::decode_hist(&a.encode()).unwrap();
        assert_eq!(h.len(), 1000);
        assert_eq!(h.value_at_quantile(0.5), a.hist.as_ref().unwrap().value_at_quantile(0.5));
    }

    #[test]
    fn decoding_inflates_here_and_checks_the_header() {
        let mut rng = fastrand::Rng::with_seed(11);
        for n in [1usize, 2, 50, 5000, 100_000] {
            let mut a = Latency::new();
            for _ in 0..n {
                a.record(Duration::from_nanos(10f64.powf(2.0 + rng.f64() * 9.0) as u64));
            }
            let h = Latency::decode_hist(&a.encode()).unwrap();
            // The recorder grew only to its largest value; the decoded form has the fixed
            // bounds. hdrhistogram's `==` walks the left side's counts (with equal totals and
            // maxima, the longer side's extra counts are zero), so the shorter goes left.
            assert!(a.hist.as_ref() == Some(&h), "{n} samples");
        }
        assert!(Latency::decode_hist(&Latency::new().encode()).unwrap().is_empty());
        // Another precision is named, not decoded.
        let mut other = Histogram::<u64>::new_with_bounds(1, HIST_MAX_US, 2).unwrap();
        other.record(5).unwrap();
        let mut buf = Vec::new();
        V2DeflateSerializer::new().serialize(&other, &mut buf).unwrap();
        let e = Latency::decode_hist(&base64_encode(&buf)).unwrap_err();
        assert!(e.starts_with("precision 2 significant digits"), "{e}");
        // A forged inner payload length is refused before anything is allocated for it.
        let raw = {
            let mut r = vec![];
            r.extend_from_slice(&V2_COOKIE.to_be_bytes());
            r.extend_from_slice(&u32::MAX.to_be_bytes());
            r.extend_from_slice(&[0; 32]);
            r
        };
        let stored = {
            // zlib, one stored block holding `raw`.
            let mut z = vec![0x78, 0x01, 0x01];
            z.extend_from_slice(&(raw.len() as u16).to_le_bytes());
            z.extend_from_slice(&(!(raw.len() as u16)).to_le_bytes());
            z.extend_from_slice(&raw);
            z.extend_from_slice(&super::super::inflate::tests_adler32(&raw).to_be_bytes());
            z
        };
        let mut forged = V2_DEFLATE_COOKIE.to_be_bytes().to_vec();
        forged.extend_from_slice(&(stored.len() as u32).to_be_bytes());
        forged.extend_from_slice(&stored);
        let e = Latency::decode_hist(&base64_encode(&forged)).unwrap_err();
        assert_eq!(e, "histogram does not decode: says 4294967295 payload bytes, holds 0");
        assert!(Latency::decode_hist("AAAA").unwrap_err().contains("wrong cookie"));
        // A bomb (256 MiB of zeros in 1.7 MB) stops at the cap.
        let bomb = super::super::inflate::tests_bomb(256 << 20);
        let mut wrapped = V2_DEFLATE_COOKIE.to_be_bytes().to_vec();
        wrapped.extend_from_slice(&(bomb.len() as u32).to_be_bytes());
        wrapped.extend_from_slice(&bomb);
        let e = Latency::decode_hist(&base64_encode(&wrapped)).unwrap_err();
        assert_eq!(e, "histogram does not inflate: inflates past the size limit");
    }

    #[test]
    fn base64_known_vectors() {
        for (raw, enc) in [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foobar", "Zm9vYmFy")] {
            assert_eq!(base64_encode(raw.as_bytes()), enc);
            assert_eq!(base64_decode(enc).unwrap(), raw.as_bytes());
        }
        assert!(base64_decode("!!").is_none());
    }
}
