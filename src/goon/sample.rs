//! goon's per-interval samples (`--json`, `--json-stream`, `--html`) and the `--json-stream`
//! writer, closed by the coordinator in the parent module (and by the idle probe's).

use super::*;

/// `--json-stream`'s writer: one line per event, flushed; after a write error it warns once
/// and stops (the run goes on, and ends with [`Stream::failure`] as its error).
pub(crate) struct Stream {
    pub(crate) w: Box<dyn Write + Send>,
    pub(crate) what: String,
    /// The first write error's kind and text.
    pub(crate) failed: Option<(std::io::ErrorKind, String)>,
    pub(crate) cfg: GoonConfig,
    pub(crate) host_name: String,
}

impl Stream {
    pub(crate) fn open(to: &StreamTo, cfg: &GoonConfig) -> Result<Stream, Error> {
        let (w, what): (Box<dyn Write + Send>, String) = match to {
            StreamTo::Stdout => (Box::new(std::io::stdout()), "-".into()),
            StreamTo::File(p) => {
                let f = std::fs::File::create(p)
                    .map_err(|e| Error::Usage(format!("--json-stream {}: cannot create: {e}", p.display())))?;
                (Box::new(std::io::BufWriter::new(f)), p.display().to_string())
            }
        };
        Ok(Stream { w, what, failed: None, cfg: cfg.clone(), host_name: crate::sys::host_name() })
    }

    pub(crate) fn interval(&mut self, s: &Sample, ws: Option<serde_json::Value>) {
        let mut v = report::stream_interval(&self.cfg, &self.host_name, s);
        if let (Some(w), Some(m)) = (ws, v.as_object_mut()) {
            m.insert("websocket".into(), w);
        }
        self.event(&v);
    }

    pub(crate) fn event(&mut self, v: &serde_json::Value) {
        if self.failed.is_some() {
            return;
        }
        let mut line = serde_json::to_string(v).unwrap_or_else(|_| "{}".into());
        line.push('\n');
        if let Err(e) = self.w.write_all(line.as_bytes()).and_then(|_| self.w.flush()) {
            log::warn!("goon: --json-stream {}: cannot write ({e}); no more events are written", self.what);
            self.failed = Some((e.kind(), e.to_string()));
        }
    }

    /// The stream's write error, for the end of the run: the events after it are missing.
    /// A reader that closed its pipe (`--json-stream - | head`) chose to stop; that is none.
    pub(crate) fn failure(&self) -> Option<Error> {
        match &self.failed {
            Some((kind, why)) if *kind != std::io::ErrorKind::BrokenPipe => Some(Error::Output(format!(
                "--json-stream {}: cannot write: {why}; the events after it are missing",
                self.what
            ))),
            _ => None,
        }
    }
}

/// The per-interval samples: interval latencies merged as updates arrive, state deltas against
/// the last sample, the interval's peak from [`Concurrency`].
pub(crate) struct Sampler {
    pub(crate) every: Duration,
    pub(crate) next: Instant,
    /// Index of the next sample in base intervals.
    pub(crate) next_index: u64,
    pub(crate) last_end: Duration,
    pub(crate) prev: Counts,
    pub(crate) connect: Latency,
    pub(crate) fail: Latency,
    /// `--tls`: samples carry the interval's handshakes.
    pub(crate) tls: bool,
    pub(crate) tls_handshake: Latency,
    /// `--alpn`: the protocols offered (empty without it): samples count handshakes by them.
    pub(crate) alpn: Vec<String>,
    /// The interval's response latencies; `traffic`: the run has traffic flags.
    pub(crate) response: Latency,
    pub(crate) traffic: bool,
    pub(crate) buf: SampleBuf,
    pub(crate) concurrency: Arc<Concurrency>,
    pub(crate) stream: Option<Stream>,
    /// Something reads the samples (`--json`, `--json-stream`, `--html`). Without a reader no
    /// interval latency is merged or encoded: a plain run carries none of their memory.
    pub(crate) keep: bool,
    /// `--ws`: the interval's upgrade times and ping round trips.
    pub(crate) ws: Option<ws::WsLatencies>,
}

impl Sampler {
    pub(crate) fn new(
        cfg: &GoonConfig,
        started: Instant,
        every: Duration,
        concurrency: Arc<Concurrency>,
        stream: Option<Stream>,
    ) -> Sampler {
        Sampler {
            every,
            next: started + every,
            next_index: 0,
            last_end: Duration::ZERO,
            prev: Counts::default(),
            connect: Latency::new(),
            fail: Latency::new(),
            tls: cfg.tls.is_some(),
            tls_handshake: Latency::new(),
            alpn: cfg.tls.as_ref().map(|t| t.options.alpn.clone()).unwrap_or_default(),
            response: Latency::new(),
            traffic: cfg.traffic.is_some(),
            buf: SampleBuf::default(),
            concurrency,
            keep: cfg.json.is_some() || stream.is_some() || cfg.html.is_some(),
            ws: cfg.ws.as_ref().map(|_| ws::WsLatencies::default()),
            stream,
        }
    }

    /// Adds a reactor's latencies to the current interval (the whole-run totals are the
    /// coordinator's). Nothing when no one reads the samples.
    pub(crate) fn merge(&mut self, connect: Option<&Latency>, fail: Option<&Latency>, more: [Option<&Latency>; 2]) {
        if !self.keep {
            return;
        }
        let [tls_handshake, response] = more;
        for (into, l) in [
            (&mut self.connect, connect),
            (&mut self.fail, fail),
            (&mut self.tls_handshake, tls_handshake),
            (&mut self.response, response),
        ] {
            if let Some(l) = l {
                into.merge(l);
            }
        }
    }

    /// Closes the current interval at `elapsed` (for the last one, `last` = true, the run's end).
    pub(crate) fn close(&mut self, c: &Counts, total: u64, elapsed: Duration, last: bool) {
        let index = if last {
            self.next_index
        } else {
            // A coordinator late past several boundaries closes one sample for all of them.
            (elapsed.as_nanos() / self.every.as_nanos().max(1)).saturating_sub(1).max(self.next_index as u128) as u64
        };
        if self.keep {
            self.push(c, total, index, elapsed);
        }
        self.prev = *c;
        self.last_end = elapsed;
        self.next_index = index + 1;
        let now = Instant::now();
        if self.next <= now {
            self.next = crate::engine::coordinator::after(self.next, self.every, now);
        }
    }

    pub(crate) fn push(&mut self, c: &Counts, total: u64, index: u64, elapsed: Duration) {
        let mut errors = [0u64; 7];
        for (i, e) in errors.iter_mut().enumerate() {
            *e = c.errors[i] - self.prev.errors[i].min(c.errors[i]);
        }
        let s = Sample {
            index,
            t_start_s: self.last_end.as_secs_f64(),
            t_end_s: elapsed.as_secs_f64(),
            end_unix_s: crate::wallclock::unix_secs(SystemTime::now()),
            state: State {
                dialing: c.dialing,
                established: c.established,
                closed: c.closed,
                error: c.error,
                not_initiated: total - c.dialed.min(total),
            },
            established_peak: self.concurrency.take_interval_peak().max(c.established),
            dials: c.dialed.saturating_sub(self.prev.dialed),
            established_new: c.established_total.saturating_sub(self.prev.established_total),
            closed_new: c.closed.saturating_sub(self.prev.closed),
            errors,
            connect: self.connect.moments_json(),
            fail: self.fail.moments_json(),
            tls: self.tls.then(|| crate::result::sample::SampleTls {
                full: c.tls.full.saturating_sub(self.prev.tls.full),
                resumed: c.tls.resumed.saturating_sub(self.prev.tls.resumed),
                failed: c.tls.failed.saturating_sub(self.prev.tls.failed),
                handshake: self.tls_handshake.moments_json(),
                alpn: (!self.alpn.is_empty()).then(|| {
                    let delta: Vec<u64> =
                        c.tls.alpn.iter().zip(self.prev.tls.alpn.iter()).map(|(a, b)| a.saturating_sub(*b)).collect();
                    crate::result::tls::AlpnTally::from_slots(&self.alpn, &delta)
                }),
            }),
            traffic: self.traffic.then(|| TrafficSample::delta(&c.traffic, &self.prev.traffic, &self.response)),
            ws: self.ws.as_ref().map(|l| SampleWs::delta(&c.ws, &self.prev.ws, l)),
        };
        self.connect.clear();
        self.fail.clear();
        self.tls_handshake.clear();
        self.response.clear();
        if let Some(st) = self.stream.as_mut() {
            st.interval(&s, s.ws.as_ref().map(SampleWs::to_json));
        }
        if let Some(l) = self.ws.as_mut() {
            *l = ws::WsLatencies::default();
        }
        self.buf.push(s);
    }
}
