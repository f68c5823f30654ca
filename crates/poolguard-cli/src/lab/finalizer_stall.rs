//! `finalizer-stall`: the seed's section 2.3. Go runs every finalizer on one goroutine
//! (`runfinq`); one finalizer blocked in `syscall.Read` stalls all the others and the queue
//! grows (seed: P95 0.02 ms -> 127 ms, `finq` peak 3 -> 418).
//!
//! The same workload runs through a single-worker unbounded queue built here (the `runfinq`
//! model) and through `poolguard::reclaim::Reclaimer`: first pure-compute finalizers, then a
//! stream in which some finalizers block for 100 ms in a real blocking read (a UDP socket
//! waiting for a goodbye that never comes). Latency is measured from enqueue to the end of
//! the drop; backlog is the number of finalizers enqueued whose drop has not started.

use std::net::UdpSocket;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use poolguard::diag::{Histogram, HistogramSnapshot};
use poolguard::reclaim::{Reclaimer, WatchdogEvent, WatchdogKind};

use super::report::{self, Axis, Chart, Role, Sampler, Series, Unit};
use super::{LabCtx, Table};

/// Finalizers per phase (the seed's 1000 rounds).
const ROUNDS: u64 = 1000;
/// Finalizers per phase with `--quick`.
const QUICK_ROUNDS: u64 = 300;
/// How often the backlog is sampled (on its own thread).
const SAMPLE_EVERY: Duration = Duration::from_millis(2);
/// Arrival interval of the pure-compute phase.
const COMPUTE_EVERY: Duration = Duration::from_micros(200);
/// Arrival interval of the blocking phase.
const BLOCKING_ARRIVAL: Duration = Duration::from_millis(1);
/// One finalizer in this many blocks.
const BLOCK_ONE_IN: u64 = 50;
/// How long a blocking finalizer waits in its read.
const BLOCK_FOR: Duration = Duration::from_millis(100);

/// What every finalizer reports to.
#[derive(Debug, Default)]
struct Probe {
    latency: Histogram,
    /// Enqueued, drop not started.
    backlog: AtomicI64,
    peak: AtomicI64,
}

impl Probe {
    fn enqueued(&self) {
        let now = self.backlog.fetch_add(1, Relaxed) + 1;
        self.peak.fetch_max(now, Relaxed);
    }
}

/// A value with a finalizer: either pure compute or a blocking read on its "connection".
#[derive(Debug)]
struct Finalizer {
    enqueued: Instant,
    conn: Option<UdpSocket>,
    seed: u64,
    probe: Arc<Probe>,
}

impl Finalizer {
    fn new(i: u64, blocking: bool, probe: &Arc<Probe>) -> Result<Self, String> {
        let conn = if blocking {
            let s = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("udp bind: {e}"))?;
            s.set_read_timeout(Some(BLOCK_FOR))
                .map_err(|e| format!("udp timeout: {e}"))?;
            Some(s)
        } else {
            None
        };
        probe.enqueued();
        Ok(Self {
            enqueued: Instant::now(),
            conn,
            seed: i,
            probe: Arc::clone(probe),
        })
    }
}

impl Drop for Finalizer {
    fn drop(&mut self) {
        self.probe.backlog.fetch_sub(1, Relaxed);
        match &self.conn {
            // Waits for the peer's goodbye, which never comes: a blocking syscall.
            Some(s) => {
                let mut buf = [0u8; 64];
                let _ = s.recv(&mut buf);
            }
            // A few microseconds of arithmetic.
            None => {
                let mut x = self.seed | 1;
                for _ in 0..2_000 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                }
                std::hint::black_box(x);
            }
        }
        self.probe.latency.record(self.enqueued.elapsed());
    }
}

/// Where the finalizers go.
trait Queue {
    fn push(&self, f: Finalizer);
    /// Waits until every finalizer pushed has run.
    fn drain(self: Box<Self>);
}

/// Go's `runfinq`: one consumer behind an unbounded queue.
struct RunFinQ {
    tx: mpsc::Sender<Finalizer>,
    worker: std::thread::JoinHandle<()>,
}

impl RunFinQ {
    fn new() -> Self {
        let (tx, rx) = mpsc::channel::<Finalizer>();
        let worker = std::thread::spawn(move || {
            for f in rx {
                drop(f);
            }
        });
        Self { tx, worker }
    }
}

impl Queue for RunFinQ {
    fn push(&self, f: Finalizer) {
        let _ = self.tx.send(f);
    }
    fn drain(self: Box<Self>) {
        drop(self.tx);
        let _ = self.worker.join();
    }
}

impl Queue for Reclaimer {
    fn push(&self, f: Finalizer) {
        let label = if f.conn.is_some() {
            "lab::BlockingReadFinalizer"
        } else {
            "lab::ComputeFinalizer"
        };
        self.defer_labelled(label, f);
    }
    fn drain(self: Box<Self>) {
        let _ = self.flush(Duration::from_secs(60));
    }
}

struct Outcome {
    latency: HistogramSnapshot,
    peak: i64,
    /// (seconds since the first finalizer, backlog).
    backlog: Vec<(f64, i64)>,
}

/// Feeds `rounds` finalizers at `every`, one in `block_one_in` blocking (0: none).
fn feed(
    q: Box<dyn Queue>,
    rounds: u64,
    every: Duration,
    block_one_in: u64,
) -> Result<Outcome, String> {
    let probe = Arc::new(Probe::default());
    let sampled = Arc::clone(&probe);
    let sampler = Sampler::start(SAMPLE_EVERY, 4096, move || sampled.backlog.load(Relaxed));
    let start = Instant::now();
    for i in 0..rounds {
        let due = start + every * (i as u32);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let blocking = block_one_in > 0 && i % block_one_in == block_one_in / 2;
        q.push(Finalizer::new(i, blocking, &probe)?);
    }
    q.drain();
    let offset = start.duration_since(sampler.started()).as_secs_f64();
    let backlog = sampler
        .stop()
        .into_iter()
        .map(|(t, v)| (t - offset, v))
        .collect();
    Ok(Outcome {
        latency: probe.latency.snapshot(),
        peak: probe.peak.load(Relaxed),
        backlog,
    })
}

fn reclaimer(
    name: &str,
    workers: usize,
    events: &Arc<Mutex<Vec<WatchdogEvent>>>,
) -> Result<Reclaimer, String> {
    let ev = Arc::clone(events);
    Reclaimer::builder()
        .name(name)
        .workers(workers)
        .max_threads(workers + 6)
        .capacity(4096)
        .slow_threshold(Duration::from_millis(20))
        .stuck_threshold(Duration::from_millis(50))
        .on_watchdog(move |e| {
            if let Ok(mut v) = ev.lock() {
                v.push(e.clone());
            }
        })
        .build()
        .map_err(|e| e.to_string())
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

pub(crate) fn run(ctx: &LabCtx) -> Result<(), String> {
    let out = &ctx.out;
    let rounds = if ctx.quick { QUICK_ROUNDS } else { ROUNDS };
    out.say(format!(
        "{rounds} pure-compute finalizers (one every {COMPUTE_EVERY:?}), then {rounds} \
         finalizers (one every {BLOCKING_ARRIVAL:?}) of which one in {BLOCK_ONE_IN} blocks \
         {BLOCK_FOR:?} in a UDP read.\nScaled down from the Go reproduction (where every finalizer called \
         syscall.Read) so that the single-worker queue finishes in seconds: {} blocking \
         finalizers = {:?} of blocking per queue.",
        rounds / BLOCK_ONE_IN,
        BLOCK_FOR * (rounds / BLOCK_ONE_IN) as u32
    ));
    let events = Arc::new(Mutex::new(Vec::new()));
    let mut table = Table::new([
        "workload",
        "queue",
        "P95 enqueue->drop",
        "P99",
        "max",
        "peak backlog",
    ]);
    let mut stats = Vec::new();
    let mut figures: Vec<(&str, &str, Outcome)> = Vec::new();
    for (workload, every, block) in [
        ("pure compute", COMPUTE_EVERY, 0),
        ("blocking read", BLOCKING_ARRIVAL, BLOCK_ONE_IN),
    ] {
        let rows: [(&str, Box<dyn Queue>, Option<Reclaimer>); 3] = {
            let one = reclaimer("finq-1w", 1, &events)?;
            let four = reclaimer("finq-4w", 4, &events)?;
            [
                (
                    "runfinq (1 worker, unbounded)",
                    Box::new(RunFinQ::new()),
                    None,
                ),
                (
                    "reclaimer 1 worker + watchdog",
                    Box::new(one.clone()),
                    Some(one),
                ),
                (
                    "reclaimer 4 workers + watchdog",
                    Box::new(four.clone()),
                    Some(four),
                ),
            ]
        };
        for (name, q, handle) in rows {
            out.step(format!("{workload}: {name}"));
            let o = feed(q, rounds, every, block)?;
            table.row([
                workload.to_owned(),
                name.to_owned(),
                ms(o.latency.p95()),
                ms(o.latency.p99()),
                ms(o.latency.max()),
                o.peak.to_string(),
            ]);
            figures.push((workload, name, o));
            if let Some(h) = handle {
                if block > 0 {
                    stats.push(h.stats());
                }
            }
        }
    }
    out.table(&table, verdict(&figures));
    charts(out, &figures);
    out.say(format!(
        "(P99 and max of the blocking workload include the blocking finalizers' own {BLOCK_FOR:?}; \
         backlog = enqueued, drop not started)"
    ));

    out.say("\nreclaimer figures in the blocking phase:");
    for s in &stats {
        let blocking = s
            .labels
            .iter()
            .find(|l| l.label == "lab::BlockingReadFinalizer");
        out.say(format!(
            "  {}: completed {}, inline drops {}, slow {}, stuck {}, workers replaced {}, \
             queue wait p95 {}, blocking run time p50 {}",
            s.name,
            s.completed,
            s.inline_drops,
            s.slow,
            s.stuck,
            s.workers_replaced,
            ms(s.queue_wait.p95()),
            blocking.map_or("-".into(), |l| ms(l.run_time.p50())),
        ));
    }
    let events = events.lock().map_err(|_| "watchdog log poisoned")?;
    out.say(format!(
        "\nwatchdog reports ({} in all; the first two of each reclaimer):",
        events.len()
    ));
    let firsts = ["finq-1w", "finq-4w"]
        .into_iter()
        .flat_map(|n| events.iter().filter(move |e| e.reclaimer == n).take(2));
    for e in firsts {
        let what = match e.kind {
            WatchdogKind::Slow => "slow, still running".to_owned(),
            WatchdogKind::Stuck { replaced } => {
                format!("stuck, worker retired, replacement started: {replaced}")
            }
            _ => "other".to_owned(),
        };
        out.say(format!(
            "  [{}] worker {} running `{}` for {}: {what}",
            e.reclaimer,
            e.worker,
            e.label,
            ms(e.elapsed)
        ));
    }
    if !events
        .iter()
        .any(|e| e.label == "lab::BlockingReadFinalizer")
    {
        return Err("the watchdog never named the blocking finalizer".into());
    }
    Ok(())
}

/// The table's verdict: in the blocking workload, the single-worker queue against the
/// reclaimer with the most workers (the last row).
fn verdict(rows: &[(&str, &str, Outcome)]) -> String {
    let blocking: Vec<&(&str, &str, Outcome)> =
        rows.iter().filter(|r| r.0 == "blocking read").collect();
    let compute = rows.iter().find(|r| r.0 == "pure compute");
    let (Some(finq), Some(best), Some(compute)) = (blocking.first(), blocking.last(), compute)
    else {
        return "not enough rows to compare".into();
    };
    format!(
        "one blocking finalizer in {BLOCK_ONE_IN}: runfinq's P95 went from {} to {} and its \
         backlog peaked at {}; the {} kept P95 at {} ({} lower) with a peak backlog of {}",
        ms(compute.2.latency.p95()),
        ms(finq.2.latency.p95()),
        finq.2.peak,
        best.1,
        ms(best.2.latency.p95()),
        report::times(
            finq.2.latency.p95().as_secs_f64(),
            best.2.latency.p95().as_secs_f64()
        ),
        best.2.peak
    )
}

fn charts(out: &super::Recorder, rows: &[(&str, &str, Outcome)]) {
    let role = |name: &str| {
        if name.starts_with("runfinq") {
            Role::Naive
        } else {
            Role::Poolguard
        }
    };
    for workload in ["blocking read", "pure compute"] {
        let mut c = Chart::new(
            format!("finalizer backlog over time ({workload})"),
            Axis::new("time since the first finalizer", Unit::Seconds),
            Axis::new("enqueued, drop not started", Unit::Count),
        );
        for (_, name, o) in rows.iter().filter(|r| r.0 == workload) {
            c = c.series(Series::new(
                *name,
                role(name),
                report::points(&o.backlog, 0.0, |v| *v as f64),
            ));
        }
        out.chart(c);
    }
    let dists: Vec<(&str, Role, &HistogramSnapshot)> = rows
        .iter()
        .filter(|r| r.0 == "blocking read")
        .map(|(_, name, o)| (*name, role(name), &o.latency))
        .collect();
    out.chart(report::latency_chart(
        "enqueue -> drop latency (blocking read)",
        &dists,
    ));
}
