//! `poolguard lab pool-abuse`: the seed's object-pool misuses and golang/go#23199, each run
//! with a naive `Mutex<Vec>` free list and with `poolguard::object::Pool`, measured by the
//! counting global allocator (bytes from the allocator, not from the pools' accounting).
//!
//! 1. long-lived objects checked out of a pool (sessions that keep a buffer for seconds);
//! 2. threads that only return objects they made themselves;
//! 3. buffers put back without reset and oversized: ten 64 MiB buffers, then a stream of
//!    1 KiB requests.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use poolguard::object::Pool;

use super::report::{self, Axis, Chart, Role, Series, Unit};
use super::{LabCtx, Recorder, Table};
use crate::alloc::{fmt_bytes, AllocMeter};

const MIB: usize = 1 << 20;

/// The naive pool: a `Mutex<Vec<T>>` free list, no reset, no caps, no trimming.
struct Naive {
    free: Mutex<Vec<Vec<u8>>>,
    gets: AtomicU64,
    hits: AtomicU64,
}

impl Naive {
    fn new() -> Self {
        Self {
            free: Mutex::new(Vec::new()),
            gets: AtomicU64::new(0),
            hits: AtomicU64::new(0),
        }
    }
    fn get(&self, make: impl FnOnce() -> Vec<u8>) -> Vec<u8> {
        self.gets.fetch_add(1, SeqCst);
        let got = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match got {
            Some(v) => {
                self.hits.fetch_add(1, SeqCst);
                v
            }
            None => make(),
        }
    }
    fn put(&self, v: Vec<u8>) {
        self.free.lock().unwrap_or_else(|e| e.into_inner()).push(v);
    }
    fn hit_rate(&self) -> f64 {
        self.hits.load(SeqCst) as f64 / self.gets.load(SeqCst).max(1) as f64
    }
}

/// One table row.
struct Row {
    pattern: &'static str,
    pool: &'static str,
    retained: [i64; 3],
    allocs_per_op: f64,
    hit_rate: f64,
    reported: String,
    /// Requests that got a previous user's data.
    stale: u64,
    /// (requests or puts so far, allocator-measured retained bytes), sampled inline into
    /// room reserved before the allocator meter starts (sampling allocates nothing).
    series: Vec<[f64; 2]>,
}

/// Room for the inline samples of one row.
const SERIES_ROOM: usize = 256;

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// Pattern 1: every 20th request opens a "session" that keeps its buffer for 400 requests
/// (400 ms of simulated time: requests advance a manual clock by 1 ms).
fn long_lived(out: &Recorder, rows: &mut Vec<Row>) -> Result<(), String> {
    const OPS: u64 = 40_000;
    const HOLD: usize = 400;
    out.say(format!("  [1/3] long-lived objects: {OPS} requests, every 20th keeps its buffer for {HOLD} requests"));
    for naive in [true, false] {
        let mut series = Vec::with_capacity(SERIES_ROOM);
        let meter = AllocMeter::start();
        let now = Arc::new(AtomicU64::new(0));
        let clock = {
            let now = Arc::clone(&now);
            move || Duration::from_millis(now.load(SeqCst))
        };
        let pg = Pool::builder(|| Vec::<u8>::with_capacity(4096))
            .name("session-bufs")
            .hold_threshold(Duration::from_millis(100))
            .clock(clock)
            .build()
            .map_err(|e| e.to_string())?;
        let np = Naive::new();
        let mut sessions_pg = std::collections::VecDeque::new();
        let mut sessions_np = std::collections::VecDeque::new();
        let before = meter.delta().allocations;
        for i in 0..OPS {
            if i % 500 == 0 {
                series.push([i as f64, meter.delta().net_bytes as f64]);
            }
            now.fetch_add(1, SeqCst);
            if naive {
                let mut b = np.get(|| Vec::with_capacity(4096));
                b.clear();
                b.extend_from_slice(&[1u8; 512]);
                if i % 20 == 0 {
                    sessions_np.push_back(b);
                } else {
                    np.put(b);
                }
                if sessions_np.len() > HOLD / 20 {
                    if let Some(s) = sessions_np.pop_front() {
                        np.put(s);
                    }
                }
            } else {
                let mut b = pg.get(); // the call site hold tracking reports
                b.extend_from_slice(&[1u8; 512]);
                if i % 20 == 0 {
                    sessions_pg.push_back(b);
                } else {
                    drop(b);
                }
                if sessions_pg.len() > HOLD / 20 {
                    sessions_pg.pop_front();
                }
            }
        }
        let allocs = (meter.delta().allocations - before) as f64 / OPS as f64;
        // Live hold tracking: the sessions still out past the threshold, before they end.
        let held_now = pg.long_holds().len();
        sessions_pg.clear();
        sessions_np.clear();
        let mut retained = [0i64; 3];
        for (cycle, r) in retained.iter_mut().enumerate() {
            if cycle > 0 && !naive {
                let _ = pg.trim();
            }
            *r = meter.delta().net_bytes;
            series.push([OPS as f64, *r as f64]);
        }
        let (hit, reported) = if naive {
            (np.hit_rate(), "nothing".to_string())
        } else {
            let s = pg.stats();
            let site = s
                .recent_long_holds
                .last()
                .map(|h| format!(" at {}", h.site))
                .unwrap_or_default();
            (
                s.hit_rate(),
                format!(
                    "{} long holds (>100ms){site}, {held_now} seen still out",
                    s.long_holds
                ),
            )
        };
        rows.push(Row {
            pattern: "1 long-lived objects",
            pool: if naive {
                "naive Mutex<Vec>"
            } else {
                "poolguard"
            },
            retained,
            allocs_per_op: allocs,
            hit_rate: hit,
            reported,
            stale: 0,
            series,
        });
        drop(sessions_pg);
    }
    Ok(())
}

/// Pattern 2: four threads that only put buffers they made themselves (the seed's
/// goroutines that keep putting), 2000 x 8 KiB each.
fn only_returns(out: &Recorder, rows: &mut Vec<Row>) -> Result<(), String> {
    const PER: usize = 2_000;
    out.say(format!(
        "  [2/3] threads that only return: 4 threads x {PER} puts of 8 KiB buffers"
    ));
    for naive in [true, false] {
        let series = Mutex::new(Vec::with_capacity(SERIES_ROOM));
        let meter = AllocMeter::start();
        let pg = Pool::builder(|| Vec::<u8>::with_capacity(8192))
            .name("put-only")
            .max_idle_bytes(4 * MIB)
            .build()
            .map_err(|e| e.to_string())?;
        let np = Naive::new();
        let before = meter.delta().allocations;
        std::thread::scope(|s| {
            for t in 0..4 {
                let (np, pg, meter, series) = (&np, &pg, &meter, &series);
                s.spawn(move || {
                    for i in 0..PER {
                        // The first thread samples (x: puts by all four, approximately).
                        if t == 0 && i % 50 == 0 {
                            if let Ok(mut v) = series.lock() {
                                v.push([(4 * i) as f64, meter.delta().net_bytes as f64]);
                            }
                        }
                        let v = Vec::<u8>::with_capacity(8192);
                        if naive {
                            np.put(v);
                        } else {
                            let _ = pg.put(v);
                        }
                    }
                });
            }
        });
        let ops = (4 * PER) as f64;
        let allocs = (meter.delta().allocations - before) as f64 / ops;
        let mut series = series.into_inner().unwrap_or_else(|e| e.into_inner());
        let mut retained = [0i64; 3];
        for (cycle, r) in retained.iter_mut().enumerate() {
            if cycle > 0 && !naive {
                let _ = pg.trim();
            }
            *r = meter.delta().net_bytes;
            series.push([ops, *r as f64]);
        }
        let s = pg.stats();
        rows.push(Row {
            pattern: "2 threads only return",
            pool: if naive {
                "naive Mutex<Vec>"
            } else {
                "poolguard"
            },
            retained,
            allocs_per_op: allocs,
            hit_rate: f64::NAN,
            reported: if naive {
                "nothing".into()
            } else {
                format!(
                    "{} over-cap discards, {} budget cycles, doctor: {}",
                    s.discards.over_cap,
                    s.recent_trims
                        .iter()
                        .filter(|t| t.cause == poolguard::object::TrimCause::Budget)
                        .count(),
                    pg.doctor()
                        .iter()
                        .map(|f| f.code)
                        .collect::<Vec<_>>()
                        .join(",")
                )
            },
            stale: 0,
            series,
        });
    }
    Ok(())
}

/// Pattern 3 (golang/go#23199): ten 64 MiB buffers put back without reset, then a stream of
/// 1 KiB requests. poolguard twice: with its default 64 KiB object cap, and with a cap large
/// enough to accept them (then the two generations free them).
fn oversized(out: &Recorder, rows: &mut Vec<Row>) -> Result<(), String> {
    const STREAM: u64 = 30_000;
    out.say(format!("  [3/3] #23199: ten 64 MiB buffers returned, then {STREAM} requests of 1 KiB, a trim every third"));
    for variant in 0..3 {
        let mut series = Vec::with_capacity(SERIES_ROOM);
        let meter = AllocMeter::start();
        let np = Naive::new();
        let pg = match variant {
            1 => Pool::builder(|| Vec::<u8>::with_capacity(1024)).name("bufs-64k-cap"),
            _ => Pool::builder(|| Vec::<u8>::with_capacity(1024))
                .name("bufs-128m-cap")
                .max_object_bytes(128 * MIB)
                .max_idle_bytes(1024 * MIB),
        }
        .build()
        .map_err(|e| e.to_string())?;
        // Ten big requests, their buffers returned dirty (the naive pool does not reset).
        let bigs: Vec<Vec<u8>> = (0..10)
            .map(|_| {
                let mut v = Vec::<u8>::with_capacity(64 * MIB);
                v.extend_from_slice(b"previous user's data");
                v
            })
            .collect();
        for v in bigs {
            if variant == 0 {
                np.put(v);
            } else {
                let _ = pg.put(v);
            }
        }
        let before = meter.delta().allocations;
        let mut stale = 0u64;
        let mut retained = [0i64; 3];
        for (phase, r) in retained.iter_mut().enumerate() {
            if phase > 0 && variant != 0 {
                let _ = pg.trim();
            }
            for i in 0..STREAM / 3 {
                if i % 500 == 0 {
                    let done = phase as u64 * (STREAM / 3) + i;
                    series.push([done as f64, meter.delta().net_bytes as f64]);
                }
                if variant == 0 {
                    let mut b = np.get(|| Vec::with_capacity(1024));
                    if !b.is_empty() {
                        stale += 1;
                    }
                    b.truncate(0);
                    b.extend_from_slice(&[2u8; 1024]);
                    np.put(b);
                } else {
                    let mut b = pg.get();
                    if !b.is_empty() {
                        stale += 1;
                    }
                    b.extend_from_slice(&[2u8; 1024]);
                }
            }
            *r = meter.delta().net_bytes;
        }
        series.push([STREAM as f64, retained[2] as f64]);
        let allocs = (meter.delta().allocations - before) as f64 / STREAM as f64;
        let s = pg.stats();
        let (pool, hit, reported) = match variant {
            0 => (
                "naive Mutex<Vec>",
                np.hit_rate(),
                format!("nothing ({stale} requests saw stale data)"),
            ),
            1 => (
                "poolguard (64 KiB object cap)",
                s.hit_rate(),
                format!(
                    "{} oversized discards, {stale} stale reads",
                    s.discards.oversized
                ),
            ),
            _ => (
                "poolguard (128 MiB object cap)",
                s.hit_rate(),
                format!("freed {} objs by trims, {stale} stale reads", s.trim_freed),
            ),
        };
        rows.push(Row {
            pattern: "3 #23199 oversized, no reset",
            pool,
            retained,
            allocs_per_op: allocs,
            hit_rate: hit,
            reported,
            stale,
            series,
        });
    }
    Ok(())
}

fn measure(out: &Recorder) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    out.step("1/3 long-lived objects");
    long_lived(out, &mut rows)?;
    out.step("2/3 threads that only return");
    only_returns(out, &mut rows)?;
    out.step("3/3 oversized buffers, no reset");
    oversized(out, &mut rows)?;
    Ok(rows)
}

/// The verdict: per pattern, what the naive pool and the best poolguard row retain after two
/// trims, and the stale reads.
fn verdict(rows: &[Row]) -> String {
    let mut parts = Vec::new();
    for (prefix, what) in [('1', "long-lived"), ('2', "put-only"), ('3', "oversized")] {
        let of = |naive: bool| {
            rows.iter()
                .filter(|r| r.pattern.starts_with(prefix))
                .filter(|r| r.pool.starts_with("naive") == naive)
                .min_by_key(|r| r.retained[2])
        };
        if let (Some(n), Some(p)) = (of(true), of(false)) {
            parts.push(format!(
                "{what} {} vs {} ({})",
                fmt_bytes(p.retained[2]),
                fmt_bytes(n.retained[2]),
                report::times(n.retained[2] as f64, p.retained[2].max(1) as f64)
            ));
        }
    }
    let stale = |naive: bool| {
        rows.iter()
            .filter(|r| r.pool.starts_with("naive") == naive)
            .map(|r| r.stale)
            .sum::<u64>()
    };
    format!(
        "after two trims poolguard retains (vs the naive pool): {}; stale reads: {} with poolguard, {} naive",
        parts.join(", "),
        stale(false),
        stale(true)
    )
}

fn charts(out: &Recorder, rows: &[Row]) {
    for (prefix, title, x) in [
        (
            '1',
            "retained bytes: long-lived objects (then two trims)",
            "requests",
        ),
        (
            '2',
            "retained bytes: threads that only return (then two trims)",
            "puts (all threads)",
        ),
        (
            '3',
            "retained bytes: oversized buffers returned, then 1 KiB requests (a trim every third)",
            "requests",
        ),
    ] {
        let mut c = Chart::new(
            title,
            Axis::new(x, Unit::Count),
            Axis::new("retained (allocator)", Unit::Bytes),
        );
        for r in rows.iter().filter(|r| r.pattern.starts_with(prefix)) {
            let role = if r.pool.starts_with("naive") {
                Role::Naive
            } else {
                Role::Poolguard
            };
            c = c.series(Series::new(r.pool, role, r.series.clone()));
        }
        out.chart(c);
    }
}

pub(crate) fn run(ctx: &LabCtx) -> Result<(), String> {
    let out = &ctx.out;
    let rows = measure(out)?;
    let mut t = Table::new([
        "pattern",
        "pool",
        "retained now",
        "after 1 trim",
        "after 2 trims",
        "allocs/op",
        "hit rate",
        "what the pool reported",
    ]);
    for r in &rows {
        t.row([
            r.pattern.to_string(),
            r.pool.to_string(),
            fmt_bytes(r.retained[0]),
            fmt_bytes(r.retained[1]),
            fmt_bytes(r.retained[2]),
            format!("{:.3}", r.allocs_per_op),
            if r.hit_rate.is_nan() {
                "-".into()
            } else {
                pct(r.hit_rate)
            },
            r.reported.clone(),
        ]);
    }
    out.table(&t, verdict(&rows));
    charts(out, &rows);
    out.say("  retained = bytes still allocated (allocator-measured) that the scenario does not hold; the naive pool never trims.");
    out.step("trim offload to a reclaimer");
    let o = trim_offload()?;
    out.say(format!(
        "  trims freeing {} touched {} MiB buffers cost the trimming thread {:?} without a reclaimer, {:?} with one ({} objs deferred to its workers, {} refused)",
        o.objects, OFFLOAD_MIB, o.inline, o.deferred_took, o.deferred, o.refused
    ));
    Ok(())
}

const OFFLOAD_MIB: usize = 16;

/// What a trim costs the thread that runs it, with and without a reclaimer.
#[derive(Debug)]
struct Offload {
    objects: usize,
    inline: Duration,
    deferred_took: Duration,
    deferred: usize,
    refused: u64,
}

/// Pattern 3's big buffers, touched (so freeing them returns real pages), freed by two trims:
/// once dropped on the trimming thread, once handed to a reclaimer.
fn trim_offload() -> Result<Offload, String> {
    const N: usize = 8;
    let reclaimer = poolguard::reclaim::Reclaimer::builder()
        .name("lab-reclaim")
        .workers(1)
        .build()
        .map_err(|e| e.to_string())?;
    let mut took = [Duration::ZERO; 2];
    let mut deferred = 0;
    let mut refused = 0;
    for (with, t) in took.iter_mut().enumerate() {
        let b = Pool::builder(|| Vec::<u8>::with_capacity(1024))
            .name("big-bufs")
            .max_object_bytes(OFFLOAD_MIB * MIB)
            .max_idle_bytes(N * OFFLOAD_MIB * MIB)
            .shards(1)
            .local_slots(0);
        let pg = if with == 1 {
            b.reclaimer(reclaimer.clone())
        } else {
            b
        }
        .build()
        .map_err(|e| e.to_string())?;
        for _ in 0..N {
            let _ = pg.put(vec![7u8; OFFLOAD_MIB * MIB]);
        }
        let _ = pg.trim();
        let trace = pg.trim();
        *t = trace.took;
        if with == 1 {
            deferred = trace.deferred;
            refused = pg.stats().reclaim_refused;
        }
    }
    reclaimer
        .flush(Duration::from_secs(30))
        .map_err(|e| e.to_string())?;
    Ok(Offload {
        objects: N,
        inline: took[0],
        deferred_took: took[1],
        deferred,
        refused,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scenario runs and poolguard reports each misuse. (Allocator figures are not
    /// asserted: other tests of this binary allocate concurrently in the same process.)
    /// With a reclaimer, the trim hands all its big buffers over (timings are not asserted).
    #[test]
    fn trim_offload_defers_every_big_buffer() {
        let o = trim_offload().expect("runs");
        assert_eq!((o.objects, o.deferred, o.refused), (8, 8, 0));
    }

    #[test]
    fn pool_abuse_reports_each_misuse() {
        let out = Recorder::silent();
        let rows = measure(&out).expect("scenario runs");
        assert_eq!(rows.len(), 7);
        let pg: Vec<&Row> = rows
            .iter()
            .filter(|r| r.pool.starts_with("poolguard"))
            .collect();
        assert!(pg[0].reported.contains("long holds"), "{}", pg[0].reported);
        assert!(!pg[0].reported.starts_with("0 "), "{}", pg[0].reported);
        assert!(
            pg[0].reported.contains("pool_abuse.rs"),
            "site: {}",
            pg[0].reported
        );
        assert!(
            pg[1].reported.contains("object.only-puts"),
            "{}",
            pg[1].reported
        );
        assert!(
            pg[2].reported.starts_with("10 oversized"),
            "{}",
            pg[2].reported
        );
        assert!(
            pg[3].reported.starts_with("freed 9 objs"),
            "{}",
            pg[3].reported
        );
        let naive3 = rows
            .iter()
            .find(|r| r.pattern.starts_with('3') && r.pool.starts_with("naive"));
        assert!(naive3
            .expect("row")
            .reported
            .contains("30000 requests saw stale data"));
    }
}
