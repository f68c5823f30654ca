//! `poolguard-soak`: the driver of `scripts/soak.sh`. Runs PostgreSQL and Redis request tasks
//! through poolguard's pool with the shipped managers, against the soak's own real servers,
//! while injecting faults into those servers at seeded random times; then checks that nothing
//! hung, no session was handed over dirty, nothing leaked and the pools never grew past
//! `max_size`, and prints one table. Exits 1 when a check fails, 2 when it cannot run.
#![forbid(unsafe_code)]

mod faults;
mod pg;
mod record;
mod redis;
mod report;

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use poolguard::conn::{BreakerState, Error as PoolError, Manager, Pool};
use poolguard_postgres::tokio_postgres;
use poolguard_redis::redis as redis_rs;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::{sleep, timeout, Instant};

use crate::faults::{Kind, Schedule, Targets};
use crate::record::{Deliberate, FaultClock, Limits, Tally};
use crate::report::{Report, Side};

/// The mixed fault soak against real PostgreSQL and Redis servers (see scripts/soak.sh, which
/// creates the private servers this needs and passes these arguments).
#[derive(Debug, Parser)]
#[command(name = "poolguard-soak")]
struct Args {
    /// How long to run the load.
    #[arg(long, default_value_t = 1.0)]
    minutes: f64,
    /// Seed of every random choice (requests, abort points, fault times).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// PostgreSQL connection string of the soak's own server.
    #[arg(long)]
    pg: String,
    /// `<version>/<cluster>` of that server, for `pg_ctlcluster ... restart`.
    #[arg(long)]
    pg_cluster: String,
    /// Its `postmaster.pid` (for SIGSTOP/SIGCONT).
    #[arg(long)]
    pg_pidfile: std::path::PathBuf,
    /// Redis URL of the soak's own server.
    #[arg(long)]
    redis: String,
    /// Its config file (to start it again after the crash fault).
    #[arg(long)]
    redis_conf: std::path::PathBuf,
    /// Its pid file.
    #[arg(long)]
    redis_pidfile: std::path::PathBuf,
    /// PostgreSQL request tasks.
    #[arg(long, default_value_t = 64)]
    pg_tasks: usize,
    /// Redis request tasks.
    #[arg(long, default_value_t = 32)]
    redis_tasks: usize,
    /// The PostgreSQL pool's max_size.
    #[arg(long, default_value_t = 16)]
    pg_max: usize,
    /// The Redis pool's max_size.
    #[arg(long, default_value_t = 8)]
    redis_max: usize,
    /// Run the load without injecting server faults (the in-process ones still happen).
    #[arg(long)]
    no_faults: bool,
    /// Most RSS growth from the end of the warm-up to the end of the run, in MiB.
    #[arg(long, default_value_t = 16)]
    max_rss_growth_mib: u64,
}

/// The pool settings both pools share (sizes apart).
#[derive(Debug, Clone, Copy)]
pub struct PoolShape {
    max_size: usize,
    min_idle: usize,
    acquire_timeout: Duration,
}

/// A held connection beyond this is reported by the pool as a leak (no request holds one
/// nearly that long).
const LEAK_THRESHOLD: Duration = Duration::from_secs(10);

impl PoolShape {
    fn build<M: Manager>(&self, manager: M, label: &str) -> Result<Pool<M>, String> {
        Pool::builder(manager)
            .name(label)
            .max_size(self.max_size)
            .min_idle(self.min_idle)
            .acquire_timeout(self.acquire_timeout)
            .connect_timeout(Duration::from_secs(1))
            .validation_timeout(Duration::from_millis(500))
            .reset_timeout(Duration::from_secs(1))
            .close_timeout(Duration::from_secs(2))
            .breaker_threshold(Some(3))
            .breaker_backoff(Duration::from_millis(200))
            .breaker_max_backoff(Duration::from_secs(1))
            .maintenance_interval(Duration::from_millis(100))
            .leak_threshold(Some(LEAK_THRESHOLD))
            .build()
            .map_err(|e| e.to_string())
    }
}

/// A manager that never resets a returned connection and never evicts one: the defect the
/// clean-session checks exist to catch. Only the self-test uses it, to prove they do.
#[derive(Debug)]
pub struct Careless<M>(pub M);

impl<M: Manager> Manager for Careless<M> {
    type Connection = M::Connection;
    type Error = M::Error;

    fn connect(&self) -> impl std::future::Future<Output = Result<M::Connection, M::Error>> + Send {
        self.0.connect()
    }

    fn validate(
        &self,
        conn: &mut M::Connection,
    ) -> impl std::future::Future<Output = Result<(), M::Error>> + Send {
        self.0.validate(conn)
    }

    fn needs_reset(&self, _conn: &mut M::Connection) -> bool {
        false
    }

    fn is_broken(&self, _conn: &mut M::Connection) -> bool {
        false
    }

    fn classify(&self, error: &M::Error) -> poolguard::conn::ErrorClass {
        self.0.classify(error)
    }

    fn close(&self, conn: M::Connection) -> impl std::future::Future<Output = ()> + Send {
        self.0.close(conn)
    }
}

/// A pool error's label: the phase it failed in.
pub fn pool_error_kind<E: std::error::Error + 'static>(e: &PoolError<E>) -> String {
    match e {
        PoolError::Timeout(_) => "get: acquire timeout".into(),
        PoolError::PhaseTimeout { phase, .. } => format!("get: {phase} timeout"),
        PoolError::Backend { phase, .. } => format!("get: {phase} error"),
        PoolError::Unavailable { .. } => "get: unavailable (breaker open)".into(),
        PoolError::Overloaded { .. } => "get: overloaded".into(),
        PoolError::Closed => "get: pool closed".into(),
        _ => "get: other".into(),
    }
}

const REQUEST_DEADLINE: Duration = Duration::from_secs(4);
const GRACE: Duration = Duration::from_secs(2);
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);
const WARM_UP: Duration = Duration::from_secs(5);
/// No fault in the last stretch, so the pools can settle before the checks.
const QUIET_TAIL: Duration = Duration::from_secs(8);
/// The shortest run in which every kind of fault surely fits between the warm-up and the
/// quiet tail (the longest gaps and faults, back to back).
const MIN_RUN: Duration = Duration::from_secs(40);
/// After a fault is lifted, errors are still its fallout for this long.
const FAULT_MARGIN: Duration = Duration::from_secs(5);

fn limits() -> Limits {
    Limits {
        deadline: REQUEST_DEADLINE,
        grace: GRACE,
        abort_per_mille: 60,
        abort_within: Duration::from_millis(5),
        pace: Duration::from_millis(20),
    }
}

/// Refuses anything but a private server on 127.0.0.1 (the shared ones on 5432 and 6379 must
/// never be restarted, frozen or killed).
fn guard_targets(args: &Args) -> Result<u16, String> {
    let pg = tokio_postgres::Config::from_str(&args.pg).map_err(|e| format!("--pg: {e}"))?;
    let pg_port = pg.get_ports().first().copied().unwrap_or(5432);
    let pg_local = pg.get_hosts().iter().all(|h| match h {
        tokio_postgres::config::Host::Tcp(h) => h == "127.0.0.1" || h == "localhost",
        _ => false,
    });
    let client =
        redis_rs::Client::open(args.redis.as_str()).map_err(|e| format!("--redis: {e}"))?;
    let (redis_host, redis_port) = match client.get_connection_info().addr() {
        redis_rs::ConnectionAddr::Tcp(h, p) => (h.clone(), *p),
        other => {
            return Err(format!(
                "--redis: {other:?} is not a TCP address on 127.0.0.1"
            ))
        }
    };
    if !pg_local || !(redis_host == "127.0.0.1" || redis_host == "localhost") {
        return Err("the soak only talks to servers on 127.0.0.1".into());
    }
    if !args.no_faults && (pg_port == 5432 || redis_port == 6379) {
        return Err(format!(
            "refusing to inject faults into port {}: that is a shared server; give the soak its own (scripts/soak.sh does)",
            if pg_port == 5432 { 5432 } else { 6379 }
        ));
    }
    Ok(redis_port)
}

/// This process's resident set size, in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Samples both pools' status until stopped: the largest size seen and how many samples
/// were above max_size.
#[derive(Debug, Default)]
struct Sampled {
    samples: AtomicU64,
    pg_max: AtomicUsize,
    pg_over: AtomicU64,
    redis_max: AtomicUsize,
    redis_over: AtomicU64,
}

async fn wait_settled<M: Manager>(pool: &Pool<M>, limit: Duration) -> bool {
    let t0 = Instant::now();
    loop {
        let s = pool.status();
        if s.in_use == 0
            && s.opening == 0
            && s.waiters == 0
            && s.closing == 0
            && s.breaker == BreakerState::Closed
            && s.size >= pool.config().min_idle
        {
            return true;
        }
        if t0.elapsed() > limit {
            eprintln!(
                "soak: {} did not settle within {limit:?}: {s:?}",
                pool.config().name
            );
            return false;
        }
        sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `count` until it is at most `want` (server-side sessions end a moment after the
/// pool closes them), for at most `limit`; returns the last count.
async fn settle_count<F, Fut>(
    limit: Duration,
    want: impl Fn() -> usize,
    mut count: F,
) -> Result<usize, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<usize, String>>,
{
    let t0 = Instant::now();
    loop {
        let n = count().await;
        match &n {
            Ok(n) if *n <= want() => return Ok(*n),
            _ if t0.elapsed() > limit => return n,
            _ => sleep(Duration::from_millis(100)).await,
        }
    }
}

fn side_accounting<M: Manager>(pool: &Pool<M>, side: &mut Side) {
    let stats = pool.stats();
    let status = pool.status();
    side.size_after = status.size;
    side.created = stats.created;
    side.closed = stats.closed_total();
    side.closes_done = stats.closes_done;
    side.leaks = stats.leaks;
    side.breaker_opened = stats.breaker_opened;
    side.validation_failures = stats.validation_failures;
    side.connect_failures = stats.connect_failures;
}

async fn soak(args: Args) -> Result<Report, String> {
    let redis_port = guard_targets(&args)?;
    let total = Duration::try_from_secs_f64(args.minutes * 60.0)
        .map_err(|_| format!("--minutes {} is not a duration", args.minutes))?;
    if total < MIN_RUN {
        return Err(format!(
            "--minutes {} is too short: every kind of fault must fit, which takes {MIN_RUN:?}; pass at least {:.2}",
            args.minutes,
            MIN_RUN.as_secs_f64() / 60.0
        ));
    }

    let pg_admin = Arc::new(pg::PgAdmin::new(&args.pg));
    let redis_admin = Arc::new(redis::RedisAdmin::new(&args.redis)?);
    // Fail loudly, naming the server, when it is not there.
    pg_admin.query("SELECT 1", Duration::from_secs(10)).await?;
    redis_admin
        .query(&redis_rs::cmd("PING"), Duration::from_secs(10))
        .await
        .map_err(|e| format!("Redis at {}: {e}", poolguard_redis::redact_url(&args.redis)))?;

    // The checks must be able to fail: plant each leftover through a careless manager first.
    let canary = (
        pg::self_test(&args.pg).await,
        redis::self_test(&args.redis, &redis_admin).await,
    );
    eprintln!(
        "soak: check self-test: postgres {:?}, redis {:?}",
        canary.0, canary.1
    );

    let pg_shape = PoolShape {
        max_size: args.pg_max,
        min_idle: 4.min(args.pg_max),
        acquire_timeout: ACQUIRE_TIMEOUT,
    };
    let redis_shape = PoolShape {
        max_size: args.redis_max,
        min_idle: 2.min(args.redis_max),
        acquire_timeout: ACQUIRE_TIMEOUT,
    };
    let pg_pool = pg::pool(&args.pg, &pg_shape)?;
    let redis_pool = redis::pool(&args.redis, &redis_shape)?;
    if !(wait_settled(&pg_pool, Duration::from_secs(10)).await
        && wait_settled(&redis_pool, Duration::from_secs(10)).await)
    {
        return Err("the pools did not warm up (min_idle connections) within 10 s".into());
    }

    let origin = Instant::now();
    let end = origin + total;
    let stop = Arc::new(AtomicBool::new(false));
    let sampled = Arc::new(Sampled::default());
    let sampler = {
        let (pg_pool, redis_pool, stop, sampled) = (
            pg_pool.clone(),
            redis_pool.clone(),
            Arc::clone(&stop),
            Arc::clone(&sampled),
        );
        tokio::spawn(async move {
            while !stop.load(Relaxed) {
                let (p, r) = (pg_pool.status(), redis_pool.status());
                sampled.samples.fetch_add(1, Relaxed);
                sampled.pg_max.fetch_max(p.size, Relaxed);
                sampled.redis_max.fetch_max(r.size, Relaxed);
                if p.size > p.max_size {
                    sampled.pg_over.fetch_add(1, Relaxed);
                }
                if r.size > r.max_size {
                    sampled.redis_over.fetch_add(1, Relaxed);
                }
                sleep(Duration::from_millis(10)).await;
            }
        })
    };

    let pg_clock = Arc::new(FaultClock::new(FAULT_MARGIN));
    let redis_clock = Arc::new(FaultClock::new(FAULT_MARGIN));
    let pg_tally = Arc::new(Tally::default());
    let redis_tally = Arc::new(Tally::default());
    let ids = Arc::new(redis::ClientIds::default());
    let mut workers = Vec::new();
    let seed_of = |i: u64| {
        args.seed
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(i)
    };
    for i in 0..args.pg_tasks {
        let (pool, tally) = (pg_pool.clone(), Arc::clone(&pg_tally));
        let request = move |rng: &mut StdRng, deadline| {
            let op = pg::pick(rng);
            let cut = match op {
                pg::Op::CancelledGet => Duration::from_micros(rng.random_range(50..3000)),
                _ => Duration::from_millis(rng.random_range(1..80)),
            };
            pg::request(pool.clone(), Arc::clone(&tally), op, cut, deadline)
        };
        workers.push(tokio::spawn(record::worker(
            StdRng::seed_from_u64(seed_of(i as u64)),
            end,
            limits(),
            Arc::clone(&pg_tally),
            Arc::clone(&pg_clock),
            format!("pg task {i}"),
            request,
        )));
    }
    for i in 0..args.redis_tasks {
        let (pool, tally, ids, admin) = (
            redis_pool.clone(),
            Arc::clone(&redis_tally),
            Arc::clone(&ids),
            Arc::clone(&redis_admin),
        );
        let request = move |rng: &mut StdRng, deadline| {
            let op = redis::pick(rng);
            let cut = match op {
                redis::Op::CancelledGet => Duration::from_micros(rng.random_range(50..3000)),
                _ => Duration::from_millis(rng.random_range(5..60)),
            };
            let token = rng.random::<u64>();
            redis::request(
                pool.clone(),
                Arc::clone(&tally),
                Arc::clone(&ids),
                Arc::clone(&admin),
                op,
                cut,
                token,
                i,
                deadline,
            )
        };
        workers.push(tokio::spawn(record::worker(
            StdRng::seed_from_u64(seed_of(10_000 + i as u64)),
            end,
            limits(),
            Arc::clone(&redis_tally),
            Arc::clone(&redis_clock),
            format!("redis task {i}"),
            request,
        )));
    }

    let fault_log = Arc::new(faults::Log::default());
    let targets = Arc::new(Targets {
        pg_cluster: args.pg_cluster.clone(),
        pg_pidfile: args.pg_pidfile.clone(),
        redis_conf: args.redis_conf.clone(),
        redis_pidfile: args.redis_pidfile.clone(),
        redis_port,
        redis_admin: Arc::clone(&redis_admin),
    });
    let mut schedulers = Vec::new();
    if !args.no_faults {
        let stop_by = end - QUIET_TAIL;
        let pg_plan = Schedule {
            start: origin + WARM_UP,
            stop_by,
            gap: (Duration::from_secs(2), Duration::from_secs(5)),
            longest: Duration::from_secs(5),
        };
        let redis_plan = Schedule {
            gap: (Duration::from_secs(2), Duration::from_secs(4)),
            ..pg_plan
        };
        for (kinds, plan, clock, salt) in [
            (vec![Kind::PgRestart, Kind::PgFreeze], pg_plan, &pg_clock, 1),
            (
                vec![Kind::RedisKill, Kind::RedisCrash, Kind::RedisSleep],
                redis_plan,
                &redis_clock,
                2,
            ),
        ] {
            schedulers.push(tokio::spawn(faults::run_schedule(
                kinds,
                StdRng::seed_from_u64(seed_of(1_000_000 + salt)),
                plan,
                origin,
                Arc::clone(&targets),
                Arc::clone(clock),
                Arc::clone(&fault_log),
            )));
        }
    }

    sleep(WARM_UP).await;
    let rss_start = rss_kib();
    eprintln!("soak: warm-up done, RSS {rss_start} KiB; load runs until +{total:?}");

    let mut notes = Vec::new();
    let join_limit = REQUEST_DEADLINE + GRACE * 3;
    sleep(end.saturating_duration_since(Instant::now())).await;
    for w in workers {
        if timeout(join_limit, w).await.is_err() {
            notes.push(format!(
                "a worker did not stop within {join_limit:?} of the end"
            ));
        }
    }
    for s in schedulers {
        if timeout(Duration::from_secs(90), s).await.is_err() {
            notes.push("a fault scheduler did not finish within 90 s".into());
        }
    }
    stop.store(true, Relaxed);
    let _ = sampler.await;
    eprintln!("soak: load stopped; settling");

    let mut pg_side = Side::new("postgres", args.pg_tasks, Arc::clone(&pg_tally), &pg_shape);
    let mut redis_side = Side::new(
        "redis",
        args.redis_tasks,
        Arc::clone(&redis_tally),
        &redis_shape,
    );
    (pg_side.self_test, redis_side.self_test) = canary;
    pg_side.max_seen = sampled.pg_max.load(Relaxed);
    pg_side.over_max_samples = sampled.pg_over.load(Relaxed);
    redis_side.max_seen = sampled.redis_max.load(Relaxed);
    redis_side.over_max_samples = sampled.redis_over.load(Relaxed);
    pg_side.settled = wait_settled(&pg_pool, Duration::from_secs(20)).await;
    redis_side.settled = wait_settled(&redis_pool, Duration::from_secs(20)).await;
    let rss_end = rss_kib();

    pg_side.backends_after = settle_count(
        Duration::from_secs(10),
        || pg_pool.status().size,
        || pg_admin.backends(),
    )
    .await;
    redis_side.backends_after = settle_count(
        Duration::from_secs(10),
        || redis_pool.status().size,
        || redis_admin.pool_clients(),
    )
    .await;
    side_accounting(&pg_pool, &mut pg_side);
    side_accounting(&redis_pool, &mut redis_side);
    pg_side.all_at_once = pg::all_at_once(&pg_pool, args.pg_max).await;
    redis_side.all_at_once =
        redis::all_at_once(&redis_pool, &ids, &redis_admin, args.redis_max).await;

    pg_pool.close();
    redis_pool.close();
    let closed = pg_pool.wait_closed(Duration::from_secs(10)).await
        & redis_pool.wait_closed(Duration::from_secs(10)).await;
    if !closed {
        notes.push("the pools did not finish closing within 10 s".into());
    }
    drop((pg_pool, redis_pool));
    pg_admin.close();
    redis_admin.close();
    drop(targets);
    let metrics = tokio::runtime::Handle::current().metrics();
    let t0 = Instant::now();
    while metrics.num_alive_tasks() > 0 && t0.elapsed() < Duration::from_secs(5) {
        sleep(Duration::from_millis(20)).await;
    }

    Ok(Report {
        minutes: args.minutes,
        seed: args.seed,
        faults_enabled: !args.no_faults,
        sides: [pg_side, redis_side],
        faults: fault_log.events(),
        rss_start_kib: rss_start,
        rss_end_kib: rss_end,
        rss_limit_kib: args.max_rss_growth_mib * 1024,
        tasks_left: metrics.num_alive_tasks(),
        samples: sampled.samples.load(Relaxed),
        notes,
    })
}

fn main() {
    let args = Args::parse();
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !info.payload().is::<Deliberate>() {
            default_hook(info);
        }
    }));
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("soak: cannot start the runtime: {e}");
            std::process::exit(2);
        }
    };
    match rt.block_on(soak(args)) {
        Ok(report) => {
            print!("{}", report.table());
            let failed = report.failures();
            if failed.is_empty() {
                println!("RESULT: PASS");
            } else {
                println!("RESULT: FAIL: {}", failed.join("; "));
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("soak: cannot run: {e}");
            std::process::exit(2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(pg: &str, redis: &str, extra: &[&str]) -> Args {
        let mut argv = vec![
            "poolguard-soak",
            "--pg",
            pg,
            "--pg-cluster",
            "15/poolguard-soak",
            "--pg-pidfile",
            "/nonexistent",
            "--redis",
            redis,
            "--redis-conf",
            "/nonexistent",
            "--redis-pidfile",
            "/nonexistent",
        ];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv).unwrap()
    }

    const PG: &str = "host=127.0.0.1 port=5450 user=postgres dbname=soak";
    const REDIS: &str = "redis://127.0.0.1:6390/0";

    #[test]
    fn private_servers_on_loopback_are_accepted() {
        assert_eq!(guard_targets(&args(PG, REDIS, &[])), Ok(6390));
    }

    #[test]
    fn the_shared_servers_are_refused_for_faults() {
        let shared_pg = "host=127.0.0.1 port=5432 user=postgres dbname=test";
        let e = guard_targets(&args(shared_pg, REDIS, &[])).unwrap_err();
        assert!(
            e.contains("port 5432") && e.contains("shared server"),
            "{e}"
        );
        let e = guard_targets(&args(PG, "redis://127.0.0.1:6379/0", &[])).unwrap_err();
        assert!(e.contains("port 6379"), "{e}");
        // Without faults the load alone may run anywhere on loopback.
        assert!(guard_targets(&args(shared_pg, REDIS, &["--no-faults"])).is_ok());
    }

    #[test]
    fn other_hosts_are_refused() {
        let e =
            guard_targets(&args("host=10.0.0.1 port=5450 user=postgres", REDIS, &[])).unwrap_err();
        assert!(e.contains("127.0.0.1"), "{e}");
    }
}
