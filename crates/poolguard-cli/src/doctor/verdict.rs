//! The verdict over a window of readings: the pools' own findings (worst severity seen, the
//! latest wording), each with the evidence the window shows (how long the pool stayed
//! exhausted, counters that rose), the anomaly rule on in-use connections, trends, and the
//! findings the doctor adds when the pools said nothing (a `/metrics`-only service).

use std::time::Duration;

use super::sample::{Conn, Figures, Object, Pool, Reading, Reclaim, Severity};

/// One reading and when it was taken (since the first).
#[derive(Debug, Clone)]
pub(crate) struct Sampled {
    pub(crate) at: Duration,
    pub(crate) reading: Reading,
}

/// One finding of the verdict.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct Finding {
    pub(crate) severity: Severity,
    pub(crate) code: String,
    pub(crate) pool: String,
    pub(crate) message: String,
    /// What the window showed, one line each.
    pub(crate) evidence: Vec<String>,
    pub(crate) fix: String,
    /// Readings in which the pool reported it (0: the doctor's own, from the figures).
    pub(crate) seen_in: usize,
}

/// The anomaly rule: over 3 consecutive readings, the standard deviation of in-use
/// connections above this share of their average.
pub(crate) const SPIKE_RATIO: f64 = 0.8;

/// The rule applies when the highest of the 3 readings uses at least this share of
/// `max_size` (and at least 2 connections): a pool jittering between 0 and 1 of 16 is idle,
/// not spiking.
pub(crate) const SPIKE_MIN_SHARE: f64 = 0.25;

/// What an evidence line is about: the codes it belongs to, and the finding the doctor adds
/// when the pool reported none of them.
struct Evidence {
    line: String,
    targets: &'static [&'static str],
    /// `(severity, code, message, fix)` when no target finding exists; `None`: then it goes
    /// to the pool's first finding, or is dropped.
    alone: Option<(Severity, &'static str, String, &'static str)>,
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// Population standard deviation and mean.
fn spread(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    (var.sqrt(), mean)
}

/// The anomaly rule over a pool's in-use readings: the 3-reading windows that trip it, and
/// the lowest and highest in-use seen in them.
pub(crate) fn in_use_spikes(in_use: &[u64], max_size: u64) -> Option<(usize, u64, u64)> {
    let floor = ((max_size as f64 * SPIKE_MIN_SHARE).ceil() as u64).max(2);
    let mut hits = 0;
    let (mut lo, mut hi) = (u64::MAX, 0);
    for w in in_use.windows(3) {
        let peak = *w.iter().max().unwrap_or(&0);
        if peak < floor {
            continue;
        }
        let xs: Vec<f64> = w.iter().map(|&x| x as f64).collect();
        let (sd, mean) = spread(&xs);
        if mean > 0.0 && sd > SPIKE_RATIO * mean {
            hits += 1;
            lo = lo.min(*w.iter().min().unwrap_or(&0));
            hi = hi.max(peak);
        }
    }
    (hits > 0).then_some((hits, lo, hi))
}

fn conn_evidence(series: &[(Duration, &Conn)]) -> Vec<Evidence> {
    let mut out = Vec::new();
    let (first, last) = (series[0].1, series[series.len() - 1].1);
    let n = series.len();
    let max = last.max_size;
    // Exhaustion: every place in use.
    let exhausted: Vec<bool> = series
        .iter()
        .map(|(_, c)| c.max_size > 0 && c.in_use >= c.max_size)
        .collect();
    let k = exhausted.iter().filter(|&&e| e).count();
    if k > 0 {
        // The longest run of consecutive exhausted readings, and the callers waiting then.
        let (mut best, mut best_waiters) = (Duration::ZERO, 0);
        let mut i = 0;
        while i < n {
            if !exhausted[i] {
                i += 1;
                continue;
            }
            let start = i;
            let mut waiters = 0;
            while i < n && exhausted[i] {
                waiters = waiters.max(series[i].1.waiters);
                i += 1;
            }
            let d = series[i - 1].0 - series[start].0;
            if d >= best {
                best = d;
                best_waiters = waiters;
            }
        }
        let all_waiters = series.iter().map(|(_, c)| c.waiters).max().unwrap_or(0);
        let line = format!(
            "in use at max {max}/{max} in {k} of {n} readings (for {} in a row) while up to {} callers waited ({all_waiters} at most over the window)",
            secs(best),
            best_waiters
        );
        out.push(Evidence {
            line: line.clone(),
            targets: &[
                "conn.nested-acquire",
                "conn.leak",
                "conn.saturated",
                "conn.acquire-timeouts",
            ],
            alone: (k * 2 >= n).then(|| {
                (
                    Severity::Warning,
                    "doctor.exhausted",
                    "every connection was in use in most readings, and the pool named no cause".to_owned(),
                    "find what holds the connections (leaks, long holds, a task taking two) before raising max_size",
                )
            }),
        });
    }
    let rose = |f: fn(&Conn) -> u64| f(last).saturating_sub(f(first));
    let d = rose(|c| c.timed_out);
    if d > 0 {
        out.push(Evidence {
            line: format!(
                "timeouts rising: +{d} acquire timeouts in the window ({} -> {})",
                first.timed_out, last.timed_out
            ),
            targets: &["conn.acquire-timeouts"],
            alone: Some((
                Severity::Warning,
                "doctor.timeouts-rising",
                format!("{d} gets timed out waiting for a connection during the window"),
                "look at what holds the connections (leaks, long holds) or why connects fail",
            )),
        });
    }
    let d = rose(|c| c.leaks);
    let out_now = last.leaks.saturating_sub(last.unleaked);
    if d > 0 || out_now > 0 {
        out.push(Evidence {
            line: format!(
                "leak count {} ({} -> {}); {out_now} leaked connections still out at the end",
                if d > 0 { "rising" } else { "steady" },
                first.leaks,
                last.leaks
            ),
            targets: &["conn.leak"],
            alone: Some((
                Severity::Critical,
                "doctor.leaks",
                format!(
                    "{out_now} connections reported as leaked are still out ({} leaks in total)",
                    last.leaks
                ),
                "return the connection on every path (drop the guard)",
            )),
        });
    }
    let d = rose(|c| c.nested_acquires);
    if d > 0 {
        out.push(Evidence {
            line: format!(
                "nested acquires rising: +{d} in the window ({} -> {})",
                first.nested_acquires, last.nested_acquires
            ),
            targets: &["conn.nested-acquire"],
            alone: Some((
                Severity::Critical,
                "doctor.nested-acquire",
                format!("{d} gets waited for a second connection while their task held one"),
                "pass the held connection down instead of taking a second from the same pool",
            )),
        });
    }
    let open = series
        .iter()
        .filter(|(_, c)| c.breaker == "open" || c.breaker == "half-open")
        .count();
    let failed = rose(|c| c.connect_failures);
    let fast = rose(|c| c.unavailable);
    if open > 0 || failed > 0 {
        out.push(Evidence {
            line: format!(
                "breaker open or half-open in {open} of {n} readings; +{failed} connect failures and +{fast} gets failed fast in the window"
            ),
            targets: &["conn.breaker-open", "conn.connect-failures"],
            alone: Some((
                if open > 0 { Severity::Critical } else { Severity::Warning },
                "doctor.backend-failing",
                format!("{failed} connects failed during the window; the breaker was open in {open} of {n} readings"),
                "restore the backend; check the pool's last error",
            )),
        });
    }
    // Held by callers: in use, and abandoned but not yet returned.
    let in_use: Vec<u64> = series
        .iter()
        .map(|(_, c)| c.in_use + c.held_abandoned)
        .collect();
    if let Some((hits, lo, hi)) = in_use_spikes(&in_use, max) {
        out.push(Evidence {
            line: format!(
                "in use jumped between {lo} and {hi} of {max} ({hits} runs of 3 readings with a standard deviation above {:.0} % of their average)",
                SPIKE_RATIO * 100.0
            ),
            targets: &[],
            alone: Some((
                Severity::Warning,
                "doctor.in-use-spike",
                format!("demand spikes: in use swings between {lo} and {hi} of {max} connections within 3 readings ({hits} times in the window)"),
                "size min_idle for the burst (connections ready before it comes), or smooth the burst upstream (a queue, a rate limit); check what sends requests in bursts",
            )),
        });
    }
    out
}

fn object_evidence(series: &[(Duration, &Object)]) -> Vec<Evidence> {
    // Retained bytes at each reading where a trim ran since the one before.
    let mut at_trims = vec![series[0].1.retained_bytes];
    for w in series.windows(2) {
        if w[1].1.trims > w[0].1.trims {
            at_trims.push(w[1].1.retained_bytes);
        }
    }
    let growing = at_trims.len() >= 3 && at_trims.windows(2).all(|w| w[1] > w[0]);
    if !growing {
        return Vec::new();
    }
    let (a, b) = (at_trims[0], at_trims[at_trims.len() - 1]);
    let line = format!(
        "retained bytes grew across {} trims: {a} -> {b} bytes",
        at_trims.len() - 1
    );
    vec![Evidence {
        line: line.clone(),
        targets: &["object.oversized", "object.only-puts", "object.over-cap"],
        alone: Some((
            Severity::Warning,
            "doctor.retained-growing",
            line,
            "trims do not bring memory back: cap max_object_bytes and max_idle_bytes, and return only objects that came from the pool",
        )),
    }]
}

fn reclaim_evidence(series: &[(Duration, &Reclaim)]) -> Vec<Evidence> {
    let mut out = Vec::new();
    let (first, last) = (series[0].1, series[series.len() - 1].1);
    if last.queued > first.queued && series.windows(2).all(|w| w[1].1.queued >= w[0].1.queued) {
        out.push(Evidence {
            line: format!(
                "backlog growing: {} -> {} queued drops",
                first.queued, last.queued
            ),
            targets: &[
                "reclaim.stuck-now",
                "reclaim.slow-now",
                "reclaim.slow-drops",
                "reclaim.queue-full",
            ],
            alone: Some((
                Severity::Warning,
                "doctor.backlog-growing",
                format!(
                    "the reclaimer's queue grew from {} to {} over the window",
                    first.queued, last.queued
                ),
                "find the slow drop (per-label run times) and move its I/O to close_async",
            )),
        });
    }
    if last.stuck > 0 {
        out.push(Evidence {
            line: format!(
                "{} drops stuck so far ({} running now)",
                last.stuck, last.running
            ),
            targets: &["reclaim.stuck-now", "reclaim.slow-drops"],
            alone: Some((
                Severity::Critical,
                "doctor.stuck-drops",
                format!("{} drops got stuck on the reclaimer's workers", last.stuck),
                "a drop must not wait on I/O: send goodbyes through close_async with a timeout",
            )),
        });
    }
    out
}

/// The findings over the window, most urgent first (ties keep the pools' order, each pool's
/// own findings before the doctor's).
pub(crate) fn judge(samples: &[Sampled]) -> Vec<Finding> {
    // Pools by (kind, name), in order of first appearance.
    let mut keys: Vec<(String, String)> = Vec::new();
    for s in samples {
        for p in &s.reading.pools {
            let k = (p.kind.clone(), p.name.clone());
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
    }
    let mut all = Vec::new();
    for (kind, name) in keys {
        let series: Vec<(Duration, &Pool)> = samples
            .iter()
            .filter_map(|s| {
                s.reading
                    .pools
                    .iter()
                    .find(|p| p.kind == kind && p.name == name)
                    .map(|p| (s.at, p))
            })
            .collect();
        // The pool's own findings: worst severity seen, the latest wording.
        let mut mine: Vec<Finding> = Vec::new();
        for (_, p) in &series {
            for f in &p.findings {
                match mine.iter_mut().find(|m| m.code == f.code) {
                    Some(m) => {
                        m.severity = m.severity.max(f.severity);
                        m.message.clone_from(&f.message);
                        m.fix.clone_from(&f.fix);
                        m.seen_in += 1;
                    }
                    None => mine.push(Finding {
                        severity: f.severity,
                        code: f.code.clone(),
                        pool: name.clone(),
                        message: f.message.clone(),
                        evidence: Vec::new(),
                        fix: f.fix.clone(),
                        seen_in: 1,
                    }),
                }
            }
        }
        mine.sort_by_key(|f| std::cmp::Reverse(f.severity));
        let evidence = match &series[0].1.figures {
            Figures::Conn(_) => {
                let s: Vec<(Duration, &Conn)> = series
                    .iter()
                    .filter_map(|(at, p)| match &p.figures {
                        Figures::Conn(c) => Some((*at, c)),
                        _ => None,
                    })
                    .collect();
                conn_evidence(&s)
            }
            Figures::Object(_) => {
                let s: Vec<(Duration, &Object)> = series
                    .iter()
                    .filter_map(|(at, p)| match &p.figures {
                        Figures::Object(o) => Some((*at, o)),
                        _ => None,
                    })
                    .collect();
                object_evidence(&s)
            }
            Figures::Reclaim(_) => {
                let s: Vec<(Duration, &Reclaim)> = series
                    .iter()
                    .filter_map(|(at, p)| match &p.figures {
                        Figures::Reclaim(r) => Some((*at, r)),
                        _ => None,
                    })
                    .collect();
                reclaim_evidence(&s)
            }
            Figures::Other => Vec::new(),
        };
        let mut added: Vec<Finding> = Vec::new();
        for e in evidence {
            if let Some(f) = mine
                .iter_mut()
                .find(|f| e.targets.contains(&f.code.as_str()))
            {
                f.evidence.push(e.line);
            } else if let Some((severity, code, message, fix)) = e.alone {
                added.push(Finding {
                    severity,
                    code: code.to_owned(),
                    pool: name.clone(),
                    message,
                    evidence: vec![e.line],
                    fix: fix.to_owned(),
                    seen_in: 0,
                });
            } else if let Some(f) = mine.first_mut() {
                f.evidence.push(e.line);
            }
        }
        all.extend(mine);
        all.extend(added);
    }
    // Stable: equal severities keep the order above.
    all.sort_by_key(|f| std::cmp::Reverse(f.severity));
    all
}

/// The exit code for a verdict: 0 healthy (nothing above info), 1 warnings, 2 critical.
pub(crate) fn exit_code(findings: &[Finding]) -> u8 {
    match findings.iter().map(|f| f.severity).max() {
        Some(Severity::Critical) => 2,
        Some(Severity::Warning) => 1,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::super::sample::{PoolFinding, Reading};
    use super::*;

    fn conn(name: &str, c: Conn, findings: Vec<PoolFinding>) -> Pool {
        Pool {
            name: name.into(),
            kind: "connection_pool".into(),
            figures: Figures::Conn(c),
            findings,
        }
    }

    fn at(i: u64, pools: Vec<Pool>) -> Sampled {
        Sampled {
            at: Duration::from_millis(250 * i),
            reading: Reading { pools },
        }
    }

    fn finding(sev: Severity, code: &str) -> PoolFinding {
        PoolFinding {
            severity: sev,
            code: code.into(),
            message: format!("{code} message"),
            fix: "fix it".into(),
        }
    }

    #[test]
    fn the_anomaly_rule_needs_a_swing_above_80_percent_of_the_average() {
        // [0, 0, 12]: sd 5.66 > 0.8 * 4.
        assert_eq!(in_use_spikes(&[0, 0, 12], 16), Some((1, 0, 12)));
        // [0, 12, 12]: sd 5.66 < 0.8 * 8: a plateau, not a spike.
        assert_eq!(in_use_spikes(&[0, 12, 12], 16), None);
        // Steady load.
        assert_eq!(in_use_spikes(&[8, 9, 8, 7, 8], 16), None);
        // Jitter between 0 and 1 of 16 is an idle pool.
        assert_eq!(in_use_spikes(&[0, 1, 0, 0, 1], 16), None);
    }

    #[test]
    fn exhaustion_and_rising_counters_become_evidence_of_the_pools_finding() {
        let leak = || vec![finding(Severity::Critical, "conn.leak")];
        let c = |i: u64| Conn {
            size: 4,
            max_size: 4,
            in_use: 4,
            waiters: i,
            timed_out: i,
            leaks: 4 + i / 2,
            breaker: "closed".into(),
            ..Conn::default()
        };
        let samples: Vec<Sampled> = (0..5)
            .map(|i| {
                at(
                    i,
                    vec![conn(
                        "db",
                        c(i),
                        if i == 0 {
                            vec![finding(Severity::Warning, "conn.acquire-timeouts")]
                        } else {
                            leak()
                        },
                    )],
                )
            })
            .collect();
        let v = judge(&samples);
        assert_eq!(v[0].code, "conn.leak");
        assert_eq!(v[0].seen_in, 4);
        assert!(
            v[0].evidence[0].starts_with("in use at max 4/4 in 5 of 5 readings (for 1.0 s in a row) while up to 4 callers waited"),
            "{:?}",
            v[0].evidence
        );
        assert!(v[0]
            .evidence
            .iter()
            .any(|e| e.contains("leak count rising")));
        assert_eq!(v[1].code, "conn.acquire-timeouts");
        assert!(v[1].evidence[0].contains("+4 acquire timeouts"));
        assert_eq!(exit_code(&v), 2);
    }

    #[test]
    fn a_pool_that_said_nothing_gets_the_doctors_own_findings() {
        // The /metrics path: figures only.
        let samples: Vec<Sampled> = (0..4)
            .map(|i| {
                at(
                    i,
                    vec![conn(
                        "db",
                        Conn {
                            max_size: 10,
                            in_use: if i == 2 { 8 } else { 0 },
                            breaker: "closed".into(),
                            ..Conn::default()
                        },
                        vec![],
                    )],
                )
            })
            .collect();
        let v = judge(&samples);
        assert_eq!(v.len(), 1, "{v:#?}");
        assert_eq!(v[0].code, "doctor.in-use-spike");
        assert_eq!(exit_code(&v), 1);
    }

    #[test]
    fn healthy_readings_give_no_finding_and_exit_0() {
        let samples: Vec<Sampled> = (0..8)
            .map(|i| {
                at(
                    i,
                    vec![conn(
                        "db",
                        Conn {
                            size: 8,
                            max_size: 16,
                            in_use: 7 + i % 2,
                            idle: 1,
                            gets: 100 * i,
                            breaker: "closed".into(),
                            ..Conn::default()
                        },
                        vec![],
                    )],
                )
            })
            .collect();
        let v = judge(&samples);
        assert!(v.is_empty(), "{v:#?}");
        assert_eq!(exit_code(&v), 0);
    }

    #[test]
    fn retained_bytes_growing_across_trims_is_a_trend() {
        let o = |trims, bytes| Pool {
            name: "bufs".into(),
            kind: "object_pool".into(),
            figures: Figures::Object(Object {
                retained_bytes: bytes,
                trims,
                ..Object::default()
            }),
            findings: vec![],
        };
        let grow: Vec<Sampled> = [(0, 10), (1, 20), (1, 25), (2, 40)]
            .iter()
            .enumerate()
            .map(|(i, &(t, b))| at(i as u64, vec![o(t, b)]))
            .collect();
        let v = judge(&grow);
        assert_eq!(v[0].code, "doctor.retained-growing");
        assert!(
            v[0].message.contains("across 2 trims: 10 -> 40"),
            "{}",
            v[0].message
        );
        let flat: Vec<Sampled> = [(0, 10), (1, 20), (2, 15)]
            .iter()
            .enumerate()
            .map(|(i, &(t, b))| at(i as u64, vec![o(t, b)]))
            .collect();
        assert!(judge(&flat).is_empty());
    }
}
