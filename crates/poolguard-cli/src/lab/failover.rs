//! `failover`: a fleet of pools soft-evicting at once (every service's pools after a
//! database failover), under load, paced (`max_concurrent_opens` small, breaker on) against
//! unpaced (`max_concurrent_opens = max_size`, no breaker): the peak of connects in progress
//! at the database, connects it refused, time until every pool is full again, and the gets
//! that failed or were slow meanwhile.
//!
//! The pool-side code is generic over [`Workload`]; the run function picks the simulator (a
//! database that takes 50 ms per connect and refuses connects beyond 32 in progress, as a
//! server short of backends or a proxy's accept queue does), `--postgres` the real server.
//! The fleet's connects are counted by a wrapper around the manager ([`Counted`]), so the
//! figure is the database's view of every pool together.
//!
//! Connections held at the evict are replaced when they come back: at once for a caller
//! waiting, otherwise by the next maintenance pass (100 ms here) for `min_idle`, so "full
//! again" includes up to a pass or two.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use poolguard::conn::{ErrorClass, Manager, Pool};
use poolguard::diag::{Histogram, HistogramSnapshot};
use poolguard_faults::sim::{Op, SimManager, Workload};

use super::report::{self, Axis, Chart, Role, Sampler, Series, Unit};
use super::{LabCtx, Recorder, Table};

/// How often the fleet is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(5);
/// A get that waited longer than this is counted as slow.
const SLOW: Duration = Duration::from_millis(100);
/// Callers per pool, each looping get → request → 5 ms pause.
const CALLERS: usize = 4;

/// The fleet's shape and the two pool settings compared.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fleet {
    pub(crate) pools: usize,
    /// `max_size` and `min_idle` of every pool.
    pub(crate) size: usize,
    /// `max_concurrent_opens` of the paced pools.
    pub(crate) paced_opens: usize,
}

/// A manager that counts the connects in progress across every pool built on its clones.
#[derive(Debug)]
pub(crate) struct Counted<M> {
    inner: M,
    c: Arc<Counters>,
}

impl<M: Clone> Clone for Counted<M> {
    fn clone(&self) -> Self {
        Counted {
            inner: self.inner.clone(),
            c: Arc::clone(&self.c),
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    connecting: AtomicU64,
    peak: AtomicU64,
    failed: AtomicU64,
}

/// One connect in progress, until dropped (also when the connect is cancelled).
struct InFlight<'a>(&'a Counters);

impl<'a> InFlight<'a> {
    fn start(c: &'a Counters) -> Self {
        let now = c.connecting.fetch_add(1, SeqCst) + 1;
        c.peak.fetch_max(now, SeqCst);
        Self(c)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.connecting.fetch_sub(1, SeqCst);
    }
}

impl<M> Counted<M> {
    pub(crate) fn new(inner: M) -> Self {
        Self {
            inner,
            c: Arc::default(),
        }
    }

    fn connecting(&self) -> u64 {
        self.c.connecting.load(SeqCst)
    }

    /// Starts a new peak measurement from the connects in progress now.
    fn reset_peak(&self) {
        self.c.peak.store(self.connecting(), SeqCst);
        self.c.failed.store(0, SeqCst);
    }
}

impl<M: Manager> Manager for Counted<M> {
    type Connection = M::Connection;
    type Error = M::Error;

    async fn connect(&self) -> Result<M::Connection, M::Error> {
        let _in_flight = InFlight::start(&self.c);
        let r = self.inner.connect().await;
        if r.is_err() {
            self.c.failed.fetch_add(1, SeqCst);
        }
        r
    }
    fn validate(
        &self,
        conn: &mut M::Connection,
    ) -> impl Future<Output = Result<(), M::Error>> + Send {
        self.inner.validate(conn)
    }
    fn reset(&self, conn: &mut M::Connection) -> impl Future<Output = Result<(), M::Error>> + Send {
        self.inner.reset(conn)
    }
    fn needs_reset(&self, conn: &mut M::Connection) -> bool {
        self.inner.needs_reset(conn)
    }
    fn is_broken(&self, conn: &mut M::Connection) -> bool {
        self.inner.is_broken(conn)
    }
    fn classify(&self, error: &M::Error) -> ErrorClass {
        self.inner.classify(error)
    }
    fn is_restarting(&self, error: &M::Error) -> bool {
        self.inner.is_restarting(error)
    }
    fn failover_class(&self, error: &M::Error) -> Option<&'static str> {
        self.inner.failover_class(error)
    }
    fn close(&self, conn: M::Connection) -> impl Future<Output = ()> + Send {
        self.inner.close(conn)
    }
}

impl<M: Workload> Workload for Counted<M> {
    fn work<'a>(
        &'a self,
        conn: &'a mut M::Connection,
    ) -> impl Future<Output = Result<(), M::Error>> + Send + 'a {
        self.inner.work(conn)
    }
}

/// One fleet's figures.
#[derive(Debug, Clone)]
pub(crate) struct Figures {
    pub(crate) label: String,
    pub(crate) paced: bool,
    /// `max_concurrent_opens` of each pool.
    pub(crate) opens: usize,
    pub(crate) pools: usize,
    /// Most connects in progress at once at the database, fleet-wide, after the evict.
    pub(crate) peak: u64,
    /// Connects that failed (refused) after the evict.
    pub(crate) failed_connects: u64,
    /// From the evict until every pool had opened its `size` new connections.
    pub(crate) refill: Option<Duration>,
    pub(crate) gets: u64,
    pub(crate) failed_gets: u64,
    pub(crate) slow_gets: u64,
    pub(crate) get_time: HistogramSnapshot,
    /// (seconds since the evict, (connects in progress, connections open fleet-wide)).
    samples: Vec<(f64, (u64, usize))>,
}

impl Figures {
    fn cells(&self) -> Vec<String> {
        vec![
            self.label.clone(),
            format!("{} x {}", self.pools, self.opens),
            self.peak.to_string(),
            self.failed_connects.to_string(),
            self.refill
                .map_or_else(|| "not within the run".into(), |d| format!("{d:.1?}")),
            format!("{} of {}", self.failed_gets, self.gets),
            format!("{} of {}", self.slow_gets, self.gets),
            format!("{:.1?}", self.get_time.p99()),
        ]
    }
}

/// The verdict: the paced fleet (the first paced row) against the unpaced one.
pub(crate) fn verdict(rows: &[Figures]) -> String {
    let (Some(p), Some(n)) = (
        rows.iter().find(|r| r.paced),
        rows.iter().find(|r| !r.paced),
    ) else {
        return "no paced and unpaced fleet to compare".into();
    };
    let bound = (p.opens * p.pools) as u64;
    let refill = |r: &Figures| {
        r.refill.map_or_else(
            || "not refilled within the run".into(),
            |d| format!("full again in {d:.1?}"),
        )
    };
    format!(
        "paced: at most {} connects at once across {} pools ({} the bound of {} x {} = {bound}), {} refused, {} failed gets, {}; unpaced: {} at once ({} the paced peak), {} refused by the database, {} failed gets, {}",
        p.peak,
        p.pools,
        if p.peak <= bound { "within" } else { "ABOVE" },
        p.opens,
        p.pools,
        p.failed_connects,
        p.failed_gets,
        refill(p),
        n.peak,
        report::times(n.peak as f64, p.peak.max(1) as f64),
        n.failed_connects,
        n.failed_gets,
        refill(n),
    )
}

/// Builds a fleet on `backend`, loads it, soft-evicts every pool at once and measures.
pub(crate) async fn fleet<M>(
    backend: Counted<M>,
    label: &str,
    shape: Fleet,
    paced: bool,
    run_for: Duration,
) -> Result<Figures, String>
where
    M: Manager + Workload + Clone,
{
    let opens = if paced { shape.paced_opens } else { shape.size };
    let mut pools = Vec::new();
    for i in 0..shape.pools {
        let b = Pool::builder(backend.clone())
            .name(format!("{label}-{i}"))
            .max_size(shape.size)
            .min_idle(shape.size)
            .max_concurrent_opens(opens)
            .acquire_timeout(Duration::from_secs(2))
            .maintenance_interval(Duration::from_millis(100));
        let b = if paced { b } else { b.breaker_threshold(None) };
        pools.push(b.build().map_err(|e| e.to_string())?);
    }
    let warm = Instant::now() + Duration::from_secs(10);
    while pools.iter().any(|p| p.status().idle < shape.size) {
        if Instant::now() > warm {
            return Err(format!("{label}: the fleet did not warm up within 10 s"));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Load: every pool busy while it rolls over.
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let get_time = Arc::new(Histogram::new());
    let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
    let mut callers = Vec::new();
    for p in &pools {
        for _ in 0..CALLERS {
            let (p, backend) = (p.clone(), backend.clone());
            let (stop, measuring) = (Arc::clone(&stop), Arc::clone(&measuring));
            let (get_time, counts) = (Arc::clone(&get_time), Arc::clone(&counts));
            callers.push(tokio::spawn(async move {
                while !stop.load(SeqCst) {
                    let t = Instant::now();
                    let got = p.get().await;
                    let waited = t.elapsed();
                    let on = measuring.load(SeqCst);
                    if on {
                        counts[0].fetch_add(1, SeqCst);
                        get_time.record(waited);
                        if waited > SLOW {
                            counts[2].fetch_add(1, SeqCst);
                        }
                    }
                    match got {
                        Ok(mut c) => {
                            if let Err(e) = backend.work(&mut c).await {
                                c.report(&e);
                            }
                        }
                        Err(_) if on => {
                            counts[1].fetch_add(1, SeqCst);
                        }
                        Err(_) => {}
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }));
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let created0: Vec<u64> = pools.iter().map(|p| p.stats().created).collect();
    let sampled = pools.clone();
    let counter = backend.clone();
    let size = shape.size as u64;
    let sampler = Sampler::start(SAMPLE_EVERY, 2048, move || {
        let open: usize = sampled
            .iter()
            .map(|p| {
                let s = p.status();
                s.size - s.opening
            })
            .sum();
        let refilled = sampled
            .iter()
            .zip(&created0)
            .all(|(p, c0)| p.stats().created - c0 >= size && p.status().opening == 0);
        (counter.connecting(), open, refilled)
    });
    backend.reset_peak();
    measuring.store(true, SeqCst);
    let evict = Instant::now();
    for p in &pools {
        p.soft_evict_all();
    }
    tokio::time::sleep(run_for).await;
    measuring.store(false, SeqCst);
    let peak = backend.c.peak.load(SeqCst);
    let failed_connects = backend.c.failed.load(SeqCst);
    stop.store(true, SeqCst);
    for c in callers {
        let _ = c.await;
    }
    let offset = evict.duration_since(sampler.started()).as_secs_f64();
    let raw = sampler.stop();
    let refill = raw
        .iter()
        .find(|(t, (_, _, done))| *t >= offset && *done)
        .map(|(t, _)| Duration::from_secs_f64(t - offset));
    for p in &pools {
        p.close();
    }
    Ok(Figures {
        label: label.to_owned(),
        paced,
        opens,
        pools: shape.pools,
        peak,
        failed_connects,
        refill,
        gets: counts[0].load(SeqCst),
        failed_gets: counts[1].load(SeqCst),
        slow_gets: counts[2].load(SeqCst),
        get_time: get_time.snapshot(),
        samples: raw
            .into_iter()
            .map(|(t, (c, open, _))| (t - offset, (c, open)))
            .collect(),
    })
}

/// Runs the paced and the unpaced fleet, one after the other, each on a fresh backend from
/// `backend`, and records the table, its verdict and the charts.
pub(crate) async fn table<M, F, Fut>(
    out: &Recorder,
    title: &str,
    backend: F,
    shape: Fleet,
    run_for: Duration,
) -> Result<Vec<Figures>, String>
where
    M: Manager + Workload + Clone,
    F: Fn() -> Fut,
    Fut: Future<Output = Result<M, String>>,
{
    let mut t = Table::new([
        title,
        "pools x opens",
        "peak connects at once",
        "connects failed",
        "all pools full again",
        "failed gets",
        "gets > 100 ms",
        "get p99",
    ]);
    let rows = [
        (
            format!(
                "paced (max_concurrent_opens {}, breaker on)",
                shape.paced_opens
            ),
            true,
        ),
        (
            format!(
                "unpaced (max_concurrent_opens {} = max_size, no breaker)",
                shape.size
            ),
            false,
        ),
    ];
    let mut done = Vec::new();
    for (label, paced) in rows {
        out.step(format!("failover: {label}"));
        let f = fleet(
            Counted::new(backend().await?),
            &label,
            shape,
            paced,
            run_for,
        )
        .await?;
        t.row(f.cells());
        done.push(f);
    }
    out.table(&t, verdict(&done));
    let role = |f: &Figures| {
        if f.paced {
            Role::Poolguard
        } else {
            Role::Naive
        }
    };
    let x = || Axis::new("time since every pool soft-evicted", Unit::Seconds);
    let mut connecting = Chart::new(
        "connects in progress at the database (whole fleet)",
        x(),
        Axis::new("connects", Unit::Count),
    );
    let mut open = Chart::new(
        "connections open (whole fleet)",
        x(),
        Axis::new("connections", Unit::Count),
    );
    for f in &done {
        connecting = connecting.series(Series::new(
            &f.label,
            role(f),
            report::points(&f.samples, 0.0, |s| s.0 as f64),
        ));
        open = open.series(Series::new(
            &f.label,
            role(f),
            report::points(&f.samples, 0.0, |s| s.1 as f64),
        ));
    }
    out.chart(connecting.mark(0.0, "soft-evict"));
    out.chart(open.mark(0.0, "soft-evict"));
    let dists: Vec<(&str, Role, &HistogramSnapshot)> = done
        .iter()
        .map(|f| (f.label.as_str(), role(f), &f.get_time))
        .collect();
    out.chart(report::latency_chart(
        "get latency during the rollover",
        &dists,
    ));
    Ok(done)
}

/// The simulated fleet: 8 pools of 10, a database taking 50 ms per connect and refusing
/// connects beyond 32 in progress.
pub(crate) const SIM_FLEET: Fleet = Fleet {
    pools: 8,
    size: 10,
    paced_opens: 2,
};

/// The fleet against a real server: 4 pools of 5 (20 connections, well inside a default
/// `max_connections` of 100 that other clients share).
pub(crate) const REAL_FLEET: Fleet = Fleet {
    pools: 4,
    size: 5,
    paced_opens: 1,
};

/// The simulated database's limit on connects in progress.
const SIM_CONNECT_LIMIT: u64 = 32;

pub(crate) fn run_for(quick: bool) -> Duration {
    if quick {
        Duration::from_millis(1500)
    } else {
        Duration::from_secs(3)
    }
}

pub(crate) fn run(ctx: &LabCtx) -> Result<(), String> {
    let rt = super::runtime()?;
    let sim = || async {
        let sim = SimManager::new();
        sim.latency(Op::Connect, Duration::from_millis(50))
            .latency(Op::Query, Duration::from_millis(2))
            .max_connecting(Some(SIM_CONNECT_LIMIT))
            .with_reset(false);
        Ok::<_, String>(sim)
    };
    rt.block_on(table(
        &ctx.out,
        "fleet of 8 x 10 (simulated db: connect 50 ms, at most 32 connects in progress)",
        sim,
        SIM_FLEET,
        run_for(ctx.quick),
    ))?;
    ctx.out.say(
        "the same rollover a failover causes when failover_burst is on: every pool sees the signature and soft-evicts",
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(paced: bool, opens: usize, peak: u64, failed: u64, refill_ms: Option<u64>) -> Figures {
        Figures {
            label: if paced { "paced" } else { "unpaced" }.into(),
            paced,
            opens,
            pools: 8,
            peak,
            failed_connects: failed,
            refill: refill_ms.map(Duration::from_millis),
            gets: 100,
            failed_gets: failed / 2,
            slow_gets: 0,
            get_time: Histogram::new().snapshot(),
            samples: Vec::new(),
        }
    }

    /// The verdict is computed from the figures: the paced peak against its bound and the
    /// unpaced fleet.
    #[test]
    fn the_failover_verdict_compares_peaks_refusals_and_refill() {
        let v = verdict(&[row(true, 2, 16, 0, Some(260)), row(false, 10, 80, 48, None)]);
        assert!(
            v.starts_with("paced: at most 16 connects at once across 8 pools (within the bound of 2 x 8 = 16)"),
            "{v}"
        );
        assert!(
            v.contains("0 refused, 0 failed gets, full again in 260.0ms"),
            "{v}"
        );
        assert!(v.contains("unpaced: 80 at once (5.0x the paced peak), 48 refused by the database, 24 failed gets, not refilled within the run"), "{v}");
        let v = verdict(&[row(true, 2, 17, 0, Some(1)), row(false, 10, 20, 0, Some(1))]);
        assert!(v.contains("ABOVE the bound"), "{v}");
        assert!(verdict(&[row(true, 2, 1, 0, None)]).starts_with("no paced"));
    }
}
