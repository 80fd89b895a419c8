//! Backend choice for the L4 proxy, sans-io: given a snapshot of the backends of one group
//! ([`Candidate`]s), a [`Picker`] returns the index of the backend a new session should go to.
//!
//! Why sans-io: the reactor owns sockets, health state and session counts; the picker only sees
//! numbers, so every algorithm is tested deterministically with a seeded `fastrand::Rng` and no
//! sockets. Each reactor owns its own `Picker` (no sharing, no locks); round-robin state is
//! therefore per reactor, which is what nginx and HAProxy do with several workers too.
//!
//! Eligibility, the same for every algorithm: a backend is a candidate when it is `usable`
//! (health up and admin state `ready`), has `weight > 0`, and is not in `exclude` (already tried
//! by this session, on a connect retry). Backups are candidates only when no non-backup backend
//! is. Nothing eligible means `None`: the caller refuses the session and counts it.
//!
//! Loads compare as `active / weight` without floats: `a.active * b.weight` vs
//! `b.active * a.weight` in `u64` (both factors fit in 32 bits, so the product cannot overflow).
//! A pick never allocates unless the group grew beyond the size given to [`Picker::new`] /
//! [`Picker::resize`].

use std::cmp::Ordering;

crate::keyword! {
    /// Load-balancing algorithm of a backend group.
    pub enum Balance("balance algorithm") {
        /// Weighted random.
        Random = "random",
        /// Power of two choices: two distinct weighted random draws, the less loaded one wins.
        P2c = "p2c",
        /// Smooth weighted round-robin (nginx's algorithm).
        RoundRobin = "round_robin" | "roundrobin" | "rr",
        /// Fewest live sessions per unit of weight; random among equals.
        LeastConn = "least_conn" | "leastconn",
    }
}

/// What the picker knows about one backend at the moment of a pick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Health up and admin state `ready`.
    pub usable: bool,
    /// Relative share of new sessions; 0 = never picked.
    pub weight: u32,
    /// Only used when no non-backup backend is eligible.
    pub backup: bool,
    /// Live sessions on this backend (as seen by this reactor).
    pub active: u32,
}

/// Per-reactor, per-group picking state: the smooth weighted round-robin `current` weights.
#[derive(Clone, Debug, Default)]
pub struct Picker {
    /// nginx's `current_weight` per backend; bounded by the group's total weight in magnitude.
    current: Vec<i64>,
}

/// Which backends are eligible for this pick.
#[derive(Clone, Copy)]
struct Tier<'a> {
    backups: bool,
    exclude: &'a [bool],
}

impl Tier<'_> {
    fn admits(&self, i: usize, c: &Candidate) -> bool {
        c.usable && c.weight > 0 && c.backup == self.backups && !self.exclude.get(i).copied().unwrap_or(false)
    }
}

impl Picker {
    /// State for a group of `n_backends`.
    pub fn new(n_backends: usize) -> Self {
        Picker { current: vec![0; n_backends] }
    }

    /// Adapts to a group of `n` backends: existing round-robin state is kept, new backends start
    /// at zero, removed ones are forgotten.
    #[cfg(test)]
    pub fn resize(&mut self, n: usize) {
        self.current.resize(n, 0);
    }

    /// Picks a backend among `c` with `algo`, skipping indices where `exclude` is true (missing
    /// entries count as false). Returns `None` when no backend is eligible.
    pub fn pick(&mut self, algo: Balance, c: &[Candidate], exclude: &[bool], rng: &mut fastrand::Rng) -> Option<usize> {
        let primary = Tier { backups: false, exclude };
        let tier = if c.iter().enumerate().any(|(i, x)| primary.admits(i, x)) {
            primary
        } else {
            let backup = Tier { backups: true, exclude };
            if !c.iter().enumerate().any(|(i, x)| backup.admits(i, x)) {
                return None;
            }
            backup
        };
        match algo {
            Balance::Random => weighted_draw(c, tier, None, rng),
            Balance::P2c => {
                let a = weighted_draw(c, tier, None, rng)?;
                match weighted_draw(c, tier, Some(a), rng) {
                    None => Some(a),
                    Some(b) => match compare_load(&c[a], &c[b]) {
                        Ordering::Less => Some(a),
                        Ordering::Greater => Some(b),
                        Ordering::Equal => Some(if rng.bool() { a } else { b }),
                    },
                }
            }
            Balance::RoundRobin => self.smooth_round_robin(c, tier),
            Balance::LeastConn => least_loaded(c, tier, rng),
        }
    }

    /// nginx `ngx_http_upstream_get_peer`: every eligible backend gains its weight, the largest
    /// `current` wins (first on ties) and pays back the total. Weights {5,1,1} give `a a b a c a a`.
    fn smooth_round_robin(&mut self, c: &[Candidate], tier: Tier<'_>) -> Option<usize> {
        if self.current.len() < c.len() {
            self.current.resize(c.len(), 0);
        }
        let mut total: i64 = 0;
        let mut best: Option<usize> = None;
        for (i, cand) in c.iter().enumerate() {
            if !tier.admits(i, cand) {
                continue;
            }
            let w = i64::from(cand.weight);
            self.current[i] += w;
            total += w;
            if best.is_none_or(|b| self.current[i] > self.current[b]) {
                best = Some(i);
            }
        }
        let b = best?;
        self.current[b] -= total;
        Some(b)
    }
}

/// `a.active / a.weight` compared with `b.active / b.weight`, as cross products (weights are > 0
/// for eligible backends).
fn compare_load(a: &Candidate, b: &Candidate) -> Ordering {
    let lhs = u64::from(a.active) * u64::from(b.weight);
    let rhs = u64::from(b.active) * u64::from(a.weight);
    lhs.cmp(&rhs)
}

/// One weighted random draw among eligible backends, leaving out `skip`.
fn weighted_draw(c: &[Candidate], tier: Tier<'_>, skip: Option<usize>, rng: &mut fastrand::Rng) -> Option<usize> {
    let admitted = |i: usize, x: &Candidate| tier.admits(i, x) && skip != Some(i);
    let total: u64 = c.iter().enumerate().filter(|&(i, x)| admitted(i, x)).map(|(_, x)| u64::from(x.weight)).sum();
    if total == 0 {
        return None;
    }
    let mut r = rng.u64(0..total);
    for (i, x) in c.iter().enumerate() {
        if !admitted(i, x) {
            continue;
        }
        let w = u64::from(x.weight);
        if r < w {
            return Some(i);
        }
        r -= w;
    }
    None
}

/// Minimum `active / weight`; ties broken uniformly at random by reservoir sampling (no scratch).
fn least_loaded(c: &[Candidate], tier: Tier<'_>, rng: &mut fastrand::Rng) -> Option<usize> {
    let mut best: Option<usize> = None;
    let mut ties: usize = 0;
    for (i, x) in c.iter().enumerate() {
        if !tier.admits(i, x) {
            continue;
        }
        match best.map(|b| compare_load(x, &c[b])) {
            None | Some(Ordering::Less) => {
                best = Some(i);
                ties = 1;
            }
            Some(Ordering::Equal) => {
                ties += 1;
                if rng.usize(0..ties) == 0 {
                    best = Some(i);
                }
            }
            Some(Ordering::Greater) => {}
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: u64 = 0x6e65_7466_6f72_6765;
    const PICKS: usize = 10_000;

    fn up(weight: u32) -> Candidate {
        Candidate { usable: true, weight, backup: false, active: 0 }
    }

    fn counts(algo: Balance, c: &[Candidate], exclude: &[bool]) -> Vec<usize> {
        let mut picker = Picker::new(c.len());
        let mut rng = fastrand::Rng::with_seed(SEED);
        let mut n = vec![0; c.len()];
        for _ in 0..PICKS {
            let i = picker.pick(algo, c, exclude, &mut rng).expect("a candidate is eligible");
            n[i] += 1;
        }
        n
    }

    /// Picks with sessions that never end: each pick adds to `active`, as live traffic would.
    fn counts_with_load(algo: Balance, c: &[Candidate]) -> Vec<usize> {
        let mut c = c.to_vec();
        let mut picker = Picker::new(c.len());
        let mut rng = fastrand::Rng::with_seed(SEED);
        let mut n = vec![0; c.len()];
        for _ in 0..PICKS {
            let i = picker.pick(algo, &c, &[], &mut rng).expect("a candidate is eligible");
            n[i] += 1;
            c[i].active += 1;
        }
        n
    }

    fn pct(n: usize) -> f64 {
        n as f64 * 100.0 / PICKS as f64
    }

    #[test]
    fn balance_names() {
        let cases = [
            ("random", Some(Balance::Random)),
            ("RANDOM", Some(Balance::Random)),
            ("p2c", Some(Balance::P2c)),
            ("P2C", Some(Balance::P2c)),
            ("round_robin", Some(Balance::RoundRobin)),
            ("roundrobin", Some(Balance::RoundRobin)),
            ("Round-Robin", Some(Balance::RoundRobin)),
            ("rr", Some(Balance::RoundRobin)),
            ("least_conn", Some(Balance::LeastConn)),
            ("LeastConn", Some(Balance::LeastConn)),
            ("leastconn", Some(Balance::LeastConn)),
            ("", None),
            ("fastest", None),
            ("p3c", None),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<Balance>().ok(), want, "{text:?}");
        }
        for b in Balance::ALL {
            assert_eq!(b.to_string().parse::<Balance>(), Ok(b));
            assert_eq!(b.to_string(), b.to_string().to_lowercase());
        }
        let err = "fastest".parse::<Balance>().unwrap_err().to_string();
        assert!(err.contains("\"fastest\"") && err.contains("least_conn"), "{err}");
    }

    #[test]
    fn weighted_distributions() {
        // (algo, weights, per-backend [lo, hi] percent), 10k picks without load feedback.
        type Case = (Balance, &'static [u32], &'static [(f64, f64)]);
        let cases: &[Case] = &[
            (Balance::Random, &[1, 3], &[(20.0, 30.0), (70.0, 80.0)]),
            (Balance::Random, &[1, 1, 2], &[(20.0, 30.0), (20.0, 30.0), (45.0, 55.0)]),
            (Balance::RoundRobin, &[1, 3], &[(25.0, 25.0), (75.0, 75.0)]),
            (Balance::RoundRobin, &[5, 1, 1], &[(71.0, 72.0), (14.0, 15.0), (14.0, 15.0)]),
            (Balance::Random, &[0, 1], &[(0.0, 0.0), (100.0, 100.0)]),
            (Balance::LeastConn, &[1, 1, 1], &[(30.0, 37.0), (30.0, 37.0), (30.0, 37.0)]),
        ];
        for (algo, weights, want) in cases {
            let c: Vec<Candidate> = weights.iter().map(|&w| up(w)).collect();
            let n = counts(*algo, &c, &[]);
            for (i, (lo, hi)) in want.iter().enumerate() {
                let p = pct(n[i]);
                assert!(p >= *lo && p <= *hi, "{algo} weights {weights:?}: backend {i} got {p}% ({n:?})");
            }
        }
    }

    #[test]
    fn load_feedback_respects_weights() {
        // With sessions piling up, every algorithm spreads them in proportion to weight.
        for algo in Balance::ALL {
            let n = counts_with_load(algo, &[up(1), up(3)]);
            let p = pct(n[0]);
            assert!((20.0..=30.0).contains(&p), "{algo}: backend 0 got {p}% ({n:?})");
        }
    }

    #[test]
    fn p2c_two_backends() {
        // Two eligible backends: both are always drawn, so the less loaded always wins...
        let c = [Candidate { active: 5, ..up(1) }, Candidate { active: 1, ..up(1) }];
        assert_eq!(counts(Balance::P2c, &c, &[]), vec![0, PICKS]);
        // ...per unit of weight: 5/10 < 1/1.
        let c = [Candidate { active: 5, ..up(10) }, Candidate { active: 1, ..up(1) }];
        assert_eq!(counts(Balance::P2c, &c, &[]), vec![PICKS, 0]);
        // Equal load: a random tie-break, never one backend drawn twice (which would skew it).
        let n = counts(Balance::P2c, &[up(1), up(1)], &[]);
        assert!((45.0..=55.0).contains(&pct(n[0])), "{n:?}");
    }

    #[test]
    fn p2c_avoids_the_most_loaded() {
        // Of three, the most loaded can only win if drawn with itself, which distinct draws forbid.
        let c = [up(1), Candidate { active: 100, ..up(1) }, up(1)];
        let n = counts(Balance::P2c, &c, &[]);
        assert_eq!(n[1], 0, "{n:?}");
    }

    #[test]
    fn least_conn_prefers_lowest_ratio() {
        let cases: &[(&[(u32, u32)], usize)] = &[
            (&[(1, 3), (1, 2), (1, 5)], 1),
            (&[(1, 1), (2, 1)], 1), // 1/2 < 1/1
            (&[(4, 0), (1, 1)], 0),
            (&[(1, 7), (3, 20), (256, 1800)], 1), // 7 > 6.67 < 7.03,
        ];
        for (spec, want) in cases {
            let c: Vec<Candidate> = spec.iter().map(|&(w, a)| Candidate { active: a, ..up(w) }).collect();
            assert_eq!(counts(Balance::LeastConn, &c, &[])[*want], PICKS, "{spec:?}");
        }
    }

    #[test]
    fn round_robin_matches_nginx_sequence() {
        let c = [up(5), up(1), up(1)];
        let mut picker = Picker::new(3);
        let mut rng = fastrand::Rng::with_seed(SEED);
        let seq: String = (0..14)
            .map(|_| match picker.pick(Balance::RoundRobin, &c, &[], &mut rng) {
                Some(0) => 'a',
                Some(1) => 'b',
                Some(2) => 'c',
                other => panic!("unexpected pick {other:?}"),
            })
            .collect();
        assert_eq!(seq, "aabacaaaabacaa");
    }

    #[test]
    fn exclusions_respected() {
        let c = [up(1), up(1), up(1)];
        for algo in Balance::ALL {
            let n = counts(algo, &c, &[true, false]);
            assert_eq!(n[0], 0, "{algo}: {n:?}");
            assert!(n[1] > 0 && n[2] > 0, "{algo}: {n:?}");
            let n = counts(algo, &c, &[true, false, true]);
            assert_eq!(n, vec![0, PICKS, 0], "{algo}");
        }
    }

    #[test]
    fn backups_only_when_no_primary() {
        let backup = Candidate { backup: true, ..up(1) };
        let down = Candidate { usable: false, ..up(1) };
        // (candidates, exclude, index that must get every pick)
        let cases: &[(&[Candidate], &[bool], usize)] = &[
            (&[up(1), backup], &[], 0),
            (&[backup, up(1)], &[], 1),
            (&[down, backup], &[], 1),
            (&[up(0), backup], &[], 1),
            (&[up(1), backup], &[true], 1),
            (&[down, backup, Candidate { usable: false, ..backup }], &[], 1),
        ];
        for algo in Balance::ALL {
            for (c, exclude, want) in cases {
                let n = counts(algo, c, exclude);
                assert_eq!(n[*want], PICKS, "{algo} {c:?} exclude {exclude:?}: {n:?}");
            }
        }
    }

    #[test]
    fn none_when_nothing_eligible() {
        let down = Candidate { usable: false, ..up(1) };
        let cases: &[(&[Candidate], &[bool])] = &[
            (&[], &[]),
            (&[down, Candidate { backup: true, ..down }], &[]),
            (&[up(0), Candidate { backup: true, ..up(0) }], &[]),
            (&[up(1), Candidate { backup: true, ..up(1) }], &[true, true]),
        ];
        let mut rng = fastrand::Rng::with_seed(SEED);
        for algo in Balance::ALL {
            for (c, exclude) in cases {
                let mut picker = Picker::new(c.len());
                assert_eq!(picker.pick(algo, c, exclude, &mut rng), None, "{algo} {c:?} {exclude:?}");
            }
        }
    }

    #[test]
    fn single_candidate_and_growth() {
        let mut rng = fastrand::Rng::with_seed(SEED);
        for algo in Balance::ALL {
            // A picker sized for fewer backends than it is given still works.
            let mut picker = Picker::new(0);
            let c = [Candidate { usable: false, ..up(1) }, up(7)];
            for _ in 0..10 {
                assert_eq!(picker.pick(algo, &c, &[], &mut rng), Some(1), "{algo}");
            }
            picker.resize(1);
            assert_eq!(picker.pick(algo, &c, &[], &mut rng), Some(1), "{algo}");
        }
    }
}
