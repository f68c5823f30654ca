//! The one table the soak prints, and the checks that fail it.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use crate::faults::{Event, Kind};
use crate::record::Tally;
use crate::PoolShape;

/// One backend's figures.
#[derive(Debug)]
pub struct Side {
    /// "postgres" or "redis".
    pub name: &'static str,
    /// Request tasks.
    pub tasks: usize,
    /// What the requests saw.
    pub tally: Arc<Tally>,
    /// The pool's limit.
    pub max_size: usize,
    /// Its acquire timeout.
    pub acquire_timeout: Duration,
    /// The largest size sampled during the run.
    pub max_seen: usize,
    /// Samples with size above max_size.
    pub over_max_samples: u64,
    /// Idle, nothing opening/closing/waiting, breaker closed, after the run.
    pub settled: bool,
    /// The pool's sessions on the server after the run.
    pub backends_after: Result<usize, String>,
    /// The pool's size after the run.
    pub size_after: usize,
    /// Connections opened.
    pub created: u64,
    /// Connections closed (any reason).
    pub closed: u64,
    /// Closes finished.
    pub closes_done: u64,
    /// Connections the pool reported as leaked.
    pub leaks: u64,
    /// Times the breaker opened.
    pub breaker_opened: u64,
    /// Failed validations.
    pub validation_failures: u64,
    /// Failed connects.
    pub connect_failures: u64,
    /// max_size connections held at once after the run, each checked clean.
    pub all_at_once: Result<usize, String>,
    /// Leftovers planted through a careless manager that the check caught, before the run.
    pub self_test: Result<usize, String>,
}

impl Side {
    /// Figures not measured yet.
    pub fn new(name: &'static str, tasks: usize, tally: Arc<Tally>, shape: &PoolShape) -> Side {
        Side {
            name,
            tasks,
            tally,
            max_size: shape.max_size,
            acquire_timeout: shape.acquire_timeout,
            max_seen: 0,
            over_max_samples: 0,
            settled: false,
            backends_after: Err("not measured".into()),
            size_after: 0,
            created: 0,
            closed: 0,
            closes_done: 0,
            leaks: 0,
            breaker_opened: 0,
            validation_failures: 0,
            connect_failures: 0,
            all_at_once: Err("not measured".into()),
            self_test: Err("not run".into()),
        }
    }

    fn failures(&self, out: &mut Vec<String>) {
        let t = &self.tally;
        let n = self.name;
        if let Err(e) = &self.self_test {
            out.push(format!(
                "{n}: the clean-session check missed planted dirt: {e}"
            ));
        }
        let hung = t.hung.load(Relaxed);
        if hung > 0 {
            out.push(format!("{n}: {hung} hung requests"));
        }
        let dirty = t.dirty();
        if !dirty.is_empty() {
            let kinds: Vec<String> = dirty.iter().map(|(k, v)| format!("{v}x {k}")).collect();
            out.push(format!("{n}: dirty handovers ({})", kinds.join(", ")));
        }
        if self.over_max_samples > 0 || self.max_seen > self.max_size {
            out.push(format!(
                "{n}: pool size {} above max_size {} ({} samples)",
                self.max_seen, self.max_size, self.over_max_samples
            ));
        }
        if !self.settled {
            out.push(format!("{n}: the pool did not settle after the run"));
        }
        match &self.backends_after {
            Err(e) => out.push(format!("{n}: server sessions not counted: {e}")),
            Ok(b) if *b > self.max_size => out.push(format!(
                "{n}: {b} server sessions after the run, above max_size {}",
                self.max_size
            )),
            Ok(b) if *b > self.size_after => out.push(format!(
                "{n}: {b} server sessions after the run but the pool counts {} (leaked connections)",
                self.size_after
            )),
            Ok(_) => {}
        }
        if self.created != self.closed + self.size_after as u64 || self.closes_done != self.closed {
            out.push(format!(
                "{n}: connections unaccounted: opened {}, closed {} (finished {}), open {}",
                self.created, self.closed, self.closes_done, self.size_after
            ));
        }
        match &self.all_at_once {
            Ok(k) if *k == self.max_size => {}
            Ok(k) => out.push(format!(
                "{n}: only {k} of {} connections at once",
                self.max_size
            )),
            Err(e) => out.push(format!(
                "{n}: could not hold all {} connections at once: {e}",
                self.max_size
            )),
        }
        if self.leaks > 0 {
            out.push(format!(
                "{n}: {} connections reported as leaked",
                self.leaks
            ));
        }
        let panics = t.unexpected_panics.load(Relaxed);
        if panics > 0 {
            out.push(format!("{n}: {panics} unexpected panics"));
        }
    }
}

/// Everything the table shows.
#[derive(Debug)]
pub struct Report {
    /// Requested duration.
    pub minutes: f64,
    /// The seed.
    pub seed: u64,
    /// Whether server faults were injected.
    pub faults_enabled: bool,
    /// PostgreSQL, then Redis.
    pub sides: [Side; 2],
    /// The faults injected.
    pub faults: Vec<Event>,
    /// RSS after the warm-up.
    pub rss_start_kib: u64,
    /// RSS after the run (pools settled).
    pub rss_end_kib: u64,
    /// Most growth allowed.
    pub rss_limit_kib: u64,
    /// Tasks still alive after the pools were closed and dropped.
    pub tasks_left: usize,
    /// Status samples taken.
    pub samples: u64,
    /// Problems of the run itself (workers that did not stop, ...).
    pub notes: Vec<String>,
}

/// A duration for the table: ms below a second, else s.
fn d(x: Duration) -> String {
    if x < Duration::from_secs(1) {
        format!("{:.1} ms", x.as_secs_f64() * 1e3)
    } else {
        format!("{:.2} s", x.as_secs_f64())
    }
}

fn verdict(ok: bool) -> String {
    if ok { "PASS" } else { "FAIL" }.to_owned()
}

const ALL_KINDS: [Kind; 5] = [
    Kind::PgRestart,
    Kind::PgFreeze,
    Kind::RedisKill,
    Kind::RedisCrash,
    Kind::RedisSleep,
];

impl Report {
    /// Every failed check, as one line each; empty when the soak passed.
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        for s in &self.sides {
            s.failures(&mut out);
        }
        let growth = self.rss_end_kib.saturating_sub(self.rss_start_kib);
        if growth > self.rss_limit_kib {
            out.push(format!(
                "RSS grew {} KiB after the warm-up (limit {} KiB)",
                growth, self.rss_limit_kib
            ));
        }
        if self.tasks_left > 0 {
            out.push(format!(
                "{} tasks still alive after the pools closed",
                self.tasks_left
            ));
        }
        for e in &self.faults {
            if let Err(why) = &e.result {
                out.push(format!("fault {} at +{:.1?} failed: {why}", e.kind, e.at));
            }
        }
        if self.faults_enabled {
            for k in ALL_KINDS {
                if !self.faults.iter().any(|e| e.kind == k) {
                    out.push(format!("fault {k} never ran (run longer)"));
                }
            }
        }
        out.extend(self.notes.iter().cloned());
        out
    }

    /// The table.
    pub fn table(&self) -> String {
        let [pg, rd] = &self.sides;
        let mut rows: Vec<[String; 4]> = Vec::new();
        let mut row = |label: &str, a: String, b: String, v: String| {
            rows.push([label.to_owned(), a, b, v]);
        };
        let both = |f: &dyn Fn(&Side) -> String| (f(pg), f(rd));
        let c = |f: fn(&Tally) -> u64| move |s: &Side| f(&s.tally).to_string();

        let (a, b) = both(&|s| format!("{} tasks, max_size {}", s.tasks, s.max_size));
        row("load", a, b, String::new());
        let (a, b) = both(&c(|t| t.requests.load(Relaxed)));
        row("requests", a, b, String::new());
        let (a, b) = both(&c(|t| t.ok.load(Relaxed)));
        row("  ok", a, b, String::new());
        let (a, b) = both(&c(|t| t.expected.load(Relaxed)));
        row("  deliberate error, answered", a, b, String::new());
        let (a, b) = both(&|s| {
            format!(
                "{} / {}",
                s.tally.cancelled_gets.load(Relaxed),
                s.tally.cancelled_commands.load(Relaxed)
            )
        });
        row("  cancelled get / command", a, b, String::new());
        let (a, b) = both(&c(|t| t.aborted.load(Relaxed)));
        row("  aborted at a random point", a, b, String::new());
        let (a, b) = both(&c(|t| t.panicked.load(Relaxed)));
        row("  panicked while holding", a, b, String::new());
        let (pe, re) = (pg.tally.errors(), rd.tally.errors());
        let (a, b) = both(&|s| s.tally.errors().values().sum::<u64>().to_string());
        row("  errors", a, b, String::new());
        let kinds: BTreeSet<&String> = pe.keys().chain(re.keys()).collect();
        for k in kinds {
            let get = |m: &std::collections::BTreeMap<String, u64>| {
                m.get(k).copied().unwrap_or(0).to_string()
            };
            row(&format!("    {k}"), get(&pe), get(&re), String::new());
        }
        let (a, b) = both(&c(|t| t.errors_outside_faults.load(Relaxed)));
        row("    of them outside fault windows", a, b, String::new());
        let hung_ok = pg.tally.hung.load(Relaxed) == 0 && rd.tally.hung.load(Relaxed) == 0;
        let (a, b) = both(&c(|t| t.hung.load(Relaxed)));
        row("hung (past deadline + grace)", a, b, verdict(hung_ok));
        let (a, b) = both(&|s| {
            let h = s.tally.ok_latency.snapshot();
            format!("{} / {} / {}", d(h.p50()), d(h.p99()), d(h.max()))
        });
        row(
            "latency of ok requests p50 / p99 / max",
            a,
            b,
            String::new(),
        );
        let (a, b) = both(&|s| {
            format!(
                "{} / {}",
                d(Duration::from_nanos(s.tally.max_latency_ns.load(Relaxed))),
                d(crate::REQUEST_DEADLINE)
            )
        });
        row("max latency, any outcome / deadline", a, b, String::new());
        let (a, b) = both(&c(|t| t.late.load(Relaxed)));
        row("late (> deadline + 100 ms, < grace)", a, b, String::new());
        let (a, b) = both(&|s| {
            format!(
                "{} / {}",
                d(Duration::from_nanos(s.tally.max_get_ns.load(Relaxed))),
                d(s.acquire_timeout)
            )
        });
        row("slowest get / acquire_timeout", a, b, String::new());
        let (a, b) = both(&|s| match &s.self_test {
            Ok(k) => format!("{k} caught"),
            Err(_) => "missed (see RESULT)".into(),
        });
        row(
            "check self-test: planted leftovers",
            a,
            b,
            verdict(pg.self_test.is_ok() && rd.self_test.is_ok()),
        );
        let dirty_ok = pg.tally.dirty_total() == 0 && rd.tally.dirty_total() == 0;
        let (a, b) = both(&|s| s.tally.dirty_total().to_string());
        row("sessions handed over dirty", a, b, verdict(dirty_ok));
        let (pd, rdd) = (pg.tally.dirty(), rd.tally.dirty());
        let dkinds: BTreeSet<&&str> = pd.keys().chain(rdd.keys()).collect();
        for k in dkinds {
            let get = |m: &std::collections::BTreeMap<&'static str, u64>| {
                m.get(*k).copied().unwrap_or(0).to_string()
            };
            row(&format!("  {k}"), get(&pd), get(&rdd), String::new());
        }
        let size_ok = |s: &Side| s.over_max_samples == 0 && s.max_seen <= s.max_size;
        let (a, b) = both(&|s| format!("{} / {}", s.max_seen, s.max_size));
        row(
            &format!("largest size sampled / max ({} samples)", self.samples),
            a,
            b,
            verdict(size_ok(pg) && size_ok(rd)),
        );
        let backends_ok =
            |s: &Side| matches!(s.backends_after, Ok(n) if n <= s.max_size && n <= s.size_after);
        let (a, b) = both(&|s| match &s.backends_after {
            Ok(n) => format!("{n} / {} (pool {})", s.max_size, s.size_after),
            Err(e) => format!("? ({e})"),
        });
        row(
            "server sessions after / max",
            a,
            b,
            verdict(backends_ok(pg) && backends_ok(rd)),
        );
        let acct_ok =
            |s: &Side| s.created == s.closed + s.size_after as u64 && s.closes_done == s.closed;
        let (a, b) = both(&|s| format!("{} = {} + {}", s.created, s.closed, s.size_after));
        row(
            "connections opened = closed + open",
            a,
            b,
            verdict(acct_ok(pg) && acct_ok(rd)),
        );
        let (a, b) = both(&|s| {
            format!(
                "{} / {} / {}",
                s.breaker_opened, s.connect_failures, s.validation_failures
            )
        });
        row(
            "breaker opened / connect / validate fail",
            a,
            b,
            String::new(),
        );
        let settled_ok = pg.settled && rd.settled;
        let (a, b) = both(&|s| if s.settled { "yes".into() } else { "no".into() });
        row("settled after the run", a, b, verdict(settled_ok));
        let all_ok = |s: &Side| matches!(s.all_at_once, Ok(n) if n == s.max_size);
        let (a, b) = both(&|s| match &s.all_at_once {
            Ok(n) => format!("{n} / {}", s.max_size),
            Err(_) => "no (see RESULT)".into(),
        });
        row(
            "max_size connections at once, clean",
            a,
            b,
            verdict(all_ok(pg) && all_ok(rd)),
        );
        let (a, b) = both(&|s| s.leaks.to_string());
        row(
            "leaks reported (held > 10 s)",
            a,
            b,
            verdict(pg.leaks == 0 && rd.leaks == 0),
        );
        let (a, b) = both(&c(|t| t.unexpected_panics.load(Relaxed)));
        let panics_ok = pg.tally.unexpected_panics.load(Relaxed) == 0
            && rd.tally.unexpected_panics.load(Relaxed) == 0;
        row("unexpected panics", a, b, verdict(panics_ok));
        let growth = self.rss_end_kib as i64 - self.rss_start_kib as i64;
        row(
            "RSS after warm-up -> end (process)",
            format!(
                "{:.1} -> {:.1} MiB ({:+.1})",
                self.rss_start_kib as f64 / 1024.0,
                self.rss_end_kib as f64 / 1024.0,
                growth as f64 / 1024.0
            ),
            format!("limit +{} MiB", self.rss_limit_kib / 1024),
            verdict(growth <= self.rss_limit_kib as i64),
        );
        row(
            "tasks alive after close (process)",
            self.tasks_left.to_string(),
            String::new(),
            verdict(self.tasks_left == 0),
        );
        if self.faults_enabled {
            for k in ALL_KINDS {
                let of: Vec<&Event> = self.faults.iter().filter(|e| e.kind == k).collect();
                let failed = of.iter().filter(|e| e.result.is_err()).count();
                let slowest = of.iter().map(|e| e.took).max().unwrap_or_default();
                let text = format!("{}x, longest {}", of.len(), d(slowest));
                let (a, b) = match k {
                    Kind::PgRestart | Kind::PgFreeze => (text, String::new()),
                    _ => (String::new(), text),
                };
                row(
                    &format!("fault: {k}"),
                    a,
                    b,
                    verdict(!of.is_empty() && failed == 0),
                );
            }
        } else {
            row("faults", "off".into(), "off".into(), String::new());
        }

        let widths: Vec<usize> = (0..4)
            .map(|i| {
                rows.iter()
                    .map(|r| r[i].chars().count())
                    .max()
                    .unwrap_or(0)
                    .max(["", "postgres", "redis", "check"][i].len())
            })
            .collect();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "poolguard soak: {} min, seed {}, request deadline {} + grace {}",
            self.minutes,
            self.seed,
            d(crate::REQUEST_DEADLINE),
            d(crate::GRACE)
        );
        let line = |out: &mut String, r: [&str; 4]| {
            let text = format!(
                "{:<w0$}  {:>w1$}  {:>w2$}  {}",
                r[0],
                r[1],
                r[2],
                r[3],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2]
            );
            let _ = writeln!(out, "{}", text.trim_end());
        };
        line(&mut out, ["", "postgres", "redis", "check"]);
        for r in &rows {
            line(&mut out, [&r[0], &r[1], &r[2], &r[3]]);
        }
        for s in &self.sides {
            for n in s.tally.notes() {
                let _ = writeln!(out, "note ({}): {n}", s.name);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::Event;
    use crate::record::Outcome;

    fn clean_side(name: &'static str) -> Side {
        let shape = PoolShape {
            max_size: 4,
            min_idle: 1,
            acquire_timeout: Duration::from_secs(2),
        };
        let mut s = Side::new(name, 2, Arc::new(Tally::default()), &shape);
        s.max_seen = 4;
        s.settled = true;
        s.backends_after = Ok(2);
        s.size_after = 2;
        s.created = 10;
        s.closed = 8;
        s.closes_done = 8;
        s.all_at_once = Ok(4);
        s.self_test = Ok(4);
        s
    }

    fn clean() -> Report {
        let faults = ALL_KINDS
            .iter()
            .map(|&kind| Event {
                kind,
                at: Duration::from_secs(6),
                took: Duration::from_secs(1),
                result: Ok("done".into()),
            })
            .collect();
        Report {
            minutes: 1.0,
            seed: 1,
            faults_enabled: true,
            sides: [clean_side("postgres"), clean_side("redis")],
            faults,
            rss_start_kib: 10_000,
            rss_end_kib: 11_000,
            rss_limit_kib: 32 * 1024,
            tasks_left: 0,
            samples: 100,
            notes: Vec::new(),
        }
    }

    #[test]
    fn a_clean_run_passes_and_its_table_says_so() {
        let r = clean();
        assert_eq!(r.failures(), Vec::<String>::new());
        let t = r.table();
        assert!(!t.contains("FAIL"), "{t}");
        assert!(t.contains("sessions handed over dirty"), "{t}");
    }

    #[test]
    fn each_broken_promise_fails_the_run_by_name() {
        type Breaker = fn(&mut Report);
        let cases: [(Breaker, &str); 13] = [
            (
                |r| r.sides[0].self_test = Err("x".into()),
                "postgres: the clean-session check missed",
            ),
            (
                |r| {
                    r.sides[1].tally.hung.fetch_add(1, Relaxed);
                },
                "redis: 1 hung requests",
            ),
            (
                |r| {
                    r.sides[1].tally.finish(
                        Outcome::Dirty("handed over with a blocking command still pending"),
                        Duration::ZERO,
                        Duration::from_secs(1),
                        true,
                    );
                },
                "redis: dirty handovers (1x handed over with a blocking command still pending)",
            ),
            (
                |r| r.sides[0].max_seen = 5,
                "postgres: pool size 5 above max_size 4",
            ),
            (
                |r| r.sides[0].over_max_samples = 1,
                "postgres: pool size 4 above max_size 4 (1 samples)",
            ),
            (|r| r.sides[0].backends_after = Ok(5), "above max_size 4"),
            (
                |r| r.sides[0].backends_after = Ok(3),
                "the pool counts 2 (leaked connections)",
            ),
            (
                |r| r.sides[1].created = 11,
                "redis: connections unaccounted",
            ),
            (|r| r.sides[1].all_at_once = Ok(3), "redis: only 3 of 4"),
            (
                |r| r.sides[0].leaks = 1,
                "postgres: 1 connections reported as leaked",
            ),
            (|r| r.rss_end_kib = 10_000 + 33 * 1024, "RSS grew"),
            (|r| r.tasks_left = 3, "3 tasks still alive"),
            (
                |r| {
                    r.faults.retain(|e| e.kind != Kind::RedisCrash);
                },
                "never ran",
            ),
        ];
        for (breaker, expect) in cases {
            let mut r = clean();
            breaker(&mut r);
            let f = r.failures();
            assert!(
                f.iter().any(|l| l.contains(expect)),
                "expected a failure containing {expect:?}, got {f:?}"
            );
            assert!(r.table().contains("FAIL"), "the table marks it: {expect}");
        }
    }
}
