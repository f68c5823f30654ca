//! The [`metrics`] facade: a [`MetricsBridge`] copies the figures of every engine in a
//! [`Registry`] into the recorder the service installed (Prometheus, OpenTelemetry, StatsD,
//! whatever exporter it uses), on a tick.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use poolguard::diag::Registry;
//!
//! let registry = Registry::new();
//! # let pool = poolguard::object::Pool::builder(String::new).build()?;
//! registry.register(&pool);
//! let _bridge = registry.spawn_metrics_bridge(Duration::from_secs(1))?; // stops when dropped
//! # Ok(()) }
//! ```
//!
//! # Names
//!
//! A connection pool reports under OpenTelemetry's database-client semantic conventions,
//! every series with the attribute `db.client.connection.pool.name`:
//!
//! | name | instrument | what |
//! | --- | --- | --- |
//! | `db.client.connection.count` | gauge, `db.client.connection.state` = `idle` \| `used` | idle connections; connections checked out (abandoned and opening ones are not counted) |
//! | `db.client.connection.max` | gauge | `max_size` (as resized) |
//! | `db.client.connection.idle.min` | gauge | `min_idle` |
//! | `db.client.connection.pending_requests` | gauge | callers waiting in `get` |
//! | `db.client.connection.timeouts` | counter | gets that hit the acquire timeout |
//! | `db.client.connection.wait_time` | histogram, seconds | time a get waited for a connection (gets that waited and got one) |
//! | `db.client.connection.use_time` | histogram, seconds | time a connection was held (sampled, see below) |
//! | `db.client.connection.create_time` | histogram, seconds | every connect, inline or in the background, success or failure |
//!
//! `db.client.connection.idle.max` is not reported: the pool has no idle ceiling of its own
//! (idle connections are bounded by `max_size` and closed by `idle_timeout`).
//!
//! An object pool reports `poolguard.object.*` (attribute `poolguard.pool.name`): counters
//! `gets`, `hits` (attribute `tier` = `local` | `shared` | `victim`), `misses`, `returns`,
//! `discards` (attribute `reason` = `oversized` | `reset` | `over_cap` | `evicted`), `trims`,
//! `long_holds`; gauges `retained.objects`, `retained.bytes` (both by `tier`),
//! `held_past_threshold`; the
//! histogram `trim_pause` (seconds). A reclaimer reports `poolguard.reclaim.*` (attribute
//! `poolguard.reclaimer.name`): gauges `queued`, `running`, `threads`, `closes_in_flight`;
//! counters `deferred`, `completed`, `inline_drops`, `handed_back`, `slow`, `stuck`,
//! `panicked`; histograms `queue_wait` and `run_time` (seconds).
//!
//! # Cost
//!
//! Nothing on the engines' own paths: they keep counting into their own atomics as they
//! always do, and the bridge reads them once per tick through their ordinary
//! `status`/`stats` calls (a connection pool's state lock is taken once, briefly). Per tick
//! and engine, the bridge looks up a few dozen metric handles in the recorder and replays
//! each histogram's new values bucket by bucket: at most one `record_many` call per non-empty
//! bucket of the interval (a few dozen at most), never one call per recorded value.
//!
//! # Accuracy
//!
//! * Counters are increased by what the engine counted since the previous tick, so they stay
//!   monotonic across a pool rebuilt under the same name.
//! * Histograms are replayed from the engine's log-linear buckets: each value is reported as
//!   the middle of its bucket, within 6.25 % of the value recorded (buckets span 12.5 %);
//!   the recorder's sum is the sum of those middles. Counts are exact, and no bucket
//!   straddles an edge of [`BUCKET_EDGES`](super::BUCKET_EDGES), so a recorder whose
//!   histogram buckets are those edges (in seconds) counts every replayed value in the same
//!   bucket as the pool's own Prometheus text does.
//! * `use_time` is sampled by the pool: the 1st, 9th, 17th... use of each connection is
//!   timed, so its count is about an eighth of the checkouts (the distribution is unbiased
//!   as long as a connection's uses are alike).
//! * Gauges are the value at the tick; anything shorter than the period can be missed.
//! * Two engines registered under the same name and kind report into the same series.

use std::collections::HashMap;
use std::time::Duration;

use metrics::{Label, Unit};

use super::registry::{Facts, Registry};
use super::{HistogramSnapshot, Snapshot};

/// The attribute that names a connection pool (OpenTelemetry's).
pub const CONN_POOL_NAME: &str = "db.client.connection.pool.name";
/// The attribute that names an object pool.
pub const OBJECT_POOL_NAME: &str = "poolguard.pool.name";
/// The attribute that names a reclaimer.
pub const RECLAIMER_NAME: &str = "poolguard.reclaimer.name";

/// Copies the figures of every engine in a [`Registry`] into the installed [`metrics`]
/// recorder, one [`tick`](Self::tick) at a time. See the [module docs](self) for the
/// names, the cost and the accuracy.
///
/// On tokio, [`Registry::spawn_metrics_bridge`] ticks one for you; elsewhere, call `tick`
/// from a thread or timer of your own.
#[derive(Debug)]
pub struct MetricsBridge {
    registry: Registry,
    /// What each live engine had counted at the previous tick, by registration.
    memory: HashMap<u64, Memory>,
}

/// One engine's totals at the previous tick, in the order the bridge emits them.
#[derive(Debug, Default)]
struct Memory {
    counters: Vec<u64>,
    histograms: Vec<HistogramSnapshot>,
}

impl Registry {
    /// A bridge from this registry to the installed [`metrics`] recorder; call its
    /// [`tick`](MetricsBridge::tick) periodically.
    pub fn metrics_bridge(&self) -> MetricsBridge {
        MetricsBridge {
            registry: self.clone(),
            memory: HashMap::new(),
        }
    }
}

impl MetricsBridge {
    /// Reads every live engine and reports it: gauges set, counters increased by what was
    /// counted since the previous tick, histograms fed what was recorded since then. An
    /// engine that is gone is no longer reported (its series keep their last values in the
    /// recorder, as the recorder chooses).
    // With no engine compiled in, a `Snapshot` cannot exist and the loop body never runs.
    #[cfg_attr(
        not(any(feature = "reclaim", feature = "conn")),
        allow(unreachable_code, unused_mut)
    )]
    pub fn tick(&mut self) {
        describe();
        let live = self.registry.live();
        let mut memory = HashMap::with_capacity(live.len());
        for l in &live {
            let mut mem = self.memory.remove(&l.id).unwrap_or_default();
            let mut e = Emit {
                labels: Vec::new(),
                mem: &mut mem,
                counter: 0,
                histogram: 0,
            };
            e.engine(l.engine.name(), l.engine.snapshot(), l.facts);
            memory.insert(l.id, mem);
        }
        // Engines gone since the previous tick are forgotten here.
        self.memory = memory;
    }
}

/// Emits one engine's figures, pairing each counter and histogram with its previous value
/// by position (an engine's kind fixes what it emits, in a fixed order).
struct Emit<'a> {
    labels: Vec<Label>,
    mem: &'a mut Memory,
    counter: usize,
    histogram: usize,
}

impl Emit<'_> {
    fn labels(&self, extra: Option<(&'static str, &'static str)>) -> Vec<Label> {
        let mut l = self.labels.clone();
        if let Some((k, v)) = extra {
            l.push(Label::new(k, v));
        }
        l
    }

    fn gauge(&self, name: &'static str, extra: Option<(&'static str, &'static str)>, v: usize) {
        metrics::gauge!(name, self.labels(extra)).set(v as f64);
    }

    fn counter(
        &mut self,
        name: &'static str,
        extra: Option<(&'static str, &'static str)>,
        total: u64,
    ) {
        let i = self.counter;
        self.counter += 1;
        if self.mem.counters.len() <= i {
            self.mem.counters.resize(i + 1, 0);
        }
        let delta = total.saturating_sub(self.mem.counters[i]);
        self.mem.counters[i] = total.max(self.mem.counters[i]);
        // Registered even with nothing new, so the series exists from the first tick on.
        metrics::counter!(name, self.labels(extra)).increment(delta);
    }

    fn histogram(&mut self, name: &'static str, now: &HistogramSnapshot) {
        let i = self.histogram;
        self.histogram += 1;
        let h = metrics::histogram!(name, self.labels(None));
        let new = match self.mem.histograms.get(i) {
            Some(before) => now.since(before),
            None => now.clone(),
        };
        for b in new.buckets() {
            h.record_many(
                b.midpoint().as_secs_f64(),
                usize::try_from(b.count).unwrap_or(usize::MAX),
            );
        }
        if self.mem.histograms.len() <= i {
            self.mem.histograms.push(now.clone());
        } else {
            self.mem.histograms[i] = now.clone();
        }
    }

    #[allow(unused_variables)]
    fn engine(&mut self, name: String, snapshot: Snapshot, facts: Facts) {
        match snapshot {
            #[cfg(feature = "conn")]
            Snapshot::ConnectionPool { status, stats, .. } => {
                self.labels = vec![Label::new(CONN_POOL_NAME, name)];
                let state = "db.client.connection.state";
                self.gauge(
                    "db.client.connection.count",
                    Some((state, "idle")),
                    status.idle,
                );
                self.gauge(
                    "db.client.connection.count",
                    Some((state, "used")),
                    status.in_use,
                );
                self.gauge("db.client.connection.max", None, status.max_size);
                if let Some(min) = facts.min_idle {
                    self.gauge("db.client.connection.idle.min", None, min);
                }
                self.gauge(
                    "db.client.connection.pending_requests",
                    None,
                    status.waiters,
                );
                self.counter("db.client.connection.timeouts", None, stats.timed_out);
                self.histogram("db.client.connection.wait_time", &stats.wait_time);
                self.histogram("db.client.connection.use_time", &stats.hold_time);
                self.histogram("db.client.connection.create_time", &stats.connect_time);
            }
            #[cfg(feature = "object")]
            Snapshot::ObjectPool(s) => {
                self.labels = vec![Label::new(OBJECT_POOL_NAME, name)];
                self.counter("poolguard.object.gets", None, s.gets);
                for (tier, n) in [
                    ("local", s.hits_local),
                    ("shared", s.hits_shared),
                    ("victim", s.hits_victim),
                ] {
                    self.counter("poolguard.object.hits", Some(("tier", tier)), n);
                }
                self.counter("poolguard.object.misses", None, s.misses);
                self.counter("poolguard.object.returns", None, s.returns);
                let d = &s.discards;
                for (reason, n) in [
                    ("oversized", d.oversized),
                    ("reset", d.refused_by_reset),
                    ("over_cap", d.over_cap),
                    ("evicted", d.evicted_by_budget),
                ] {
                    self.counter("poolguard.object.discards", Some(("reason", reason)), n);
                }
                self.counter("poolguard.object.trims", None, s.trims);
                self.counter("poolguard.object.long_holds", None, s.long_holds);
                for (tier, r) in s.retained_by_tier.tiers() {
                    let tier = Some(("tier", tier));
                    self.gauge("poolguard.object.retained.objects", tier, r.objects);
                    self.gauge("poolguard.object.retained.bytes", tier, r.bytes);
                }
                self.gauge(
                    "poolguard.object.held_past_threshold",
                    None,
                    s.held_now_count,
                );
                self.histogram("poolguard.object.trim_pause", &s.trim_pauses);
            }
            #[cfg(feature = "reclaim")]
            Snapshot::Reclaimer(s) => {
                self.labels = vec![Label::new(RECLAIMER_NAME, name)];
                self.gauge("poolguard.reclaim.queued", None, s.queued);
                self.gauge("poolguard.reclaim.running", None, s.running);
                self.gauge("poolguard.reclaim.threads", None, s.live_threads);
                self.gauge(
                    "poolguard.reclaim.closes_in_flight",
                    None,
                    s.closes_in_flight,
                );
                for (n, v) in [
                    ("poolguard.reclaim.deferred", s.deferred),
                    ("poolguard.reclaim.completed", s.completed),
                    ("poolguard.reclaim.inline_drops", s.inline_drops),
                    ("poolguard.reclaim.handed_back", s.handed_back),
                    ("poolguard.reclaim.slow", s.slow),
                    ("poolguard.reclaim.stuck", s.stuck),
                    ("poolguard.reclaim.panicked", s.panicked),
                ] {
                    self.counter(n, None, v);
                }
                self.histogram("poolguard.reclaim.queue_wait", &s.queue_wait);
                self.histogram("poolguard.reclaim.run_time", &s.run_time);
            }
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }
}

/// Units and descriptions, for recorders that show them (HELP lines, units in names).
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    #[cfg(feature = "conn")]
    {
        describe_gauge!(
            "db.client.connection.count",
            Unit::Count,
            "Connections in each state (idle, used)."
        );
        describe_gauge!(
            "db.client.connection.max",
            Unit::Count,
            "The most connections the pool may hold."
        );
        describe_gauge!(
            "db.client.connection.idle.min",
            Unit::Count,
            "The idle connections the pool keeps ready."
        );
        describe_gauge!(
            "db.client.connection.pending_requests",
            Unit::Count,
            "Callers waiting for a connection."
        );
        describe_counter!(
            "db.client.connection.timeouts",
            Unit::Count,
            "Gets that hit the acquire timeout."
        );
        describe_histogram!(
            "db.client.connection.wait_time",
            Unit::Seconds,
            "Time a get waited for a connection."
        );
        describe_histogram!(
            "db.client.connection.create_time",
            Unit::Seconds,
            "Time a connect took (every connect, inline or in the background)."
        );
        describe_histogram!(
            "db.client.connection.use_time",
            Unit::Seconds,
            "Time a connection was held (sampled: every 8th use of each connection)."
        );
    }
    #[cfg(feature = "object")]
    {
        describe_counter!("poolguard.object.gets", Unit::Count, "Checkouts.");
        describe_counter!(
            "poolguard.object.hits",
            Unit::Count,
            "Checkouts served from the pool, by tier."
        );
        describe_counter!(
            "poolguard.object.misses",
            Unit::Count,
            "Checkouts that called the factory."
        );
        describe_counter!(
            "poolguard.object.returns",
            Unit::Count,
            "Objects that came back."
        );
        describe_counter!(
            "poolguard.object.discards",
            Unit::Count,
            "Objects dropped instead of kept, by reason."
        );
        describe_counter!("poolguard.object.trims", Unit::Count, "Trim cycles run.");
        describe_counter!(
            "poolguard.object.long_holds",
            Unit::Count,
            "Checkouts held past the hold threshold."
        );
        describe_gauge!(
            "poolguard.object.retained.objects",
            Unit::Count,
            "Objects retained, by tier."
        );
        describe_gauge!(
            "poolguard.object.retained.bytes",
            Unit::Bytes,
            "Heap bytes retained, by tier."
        );
        describe_gauge!(
            "poolguard.object.held_past_threshold",
            Unit::Count,
            "Checkouts held past the threshold now."
        );
        describe_histogram!(
            "poolguard.object.trim_pause",
            Unit::Seconds,
            "Lock hold time of trim cycles."
        );
    }
    #[cfg(feature = "reclaim")]
    {
        describe_gauge!(
            "poolguard.reclaim.queued",
            Unit::Count,
            "Drops waiting in the queue."
        );
        describe_gauge!(
            "poolguard.reclaim.running",
            Unit::Count,
            "Drops running on workers."
        );
        describe_gauge!(
            "poolguard.reclaim.threads",
            Unit::Count,
            "Worker threads alive."
        );
        describe_gauge!(
            "poolguard.reclaim.closes_in_flight",
            Unit::Count,
            "Async closes running."
        );
        describe_counter!(
            "poolguard.reclaim.deferred",
            Unit::Count,
            "Values accepted into the queue."
        );
        describe_counter!(
            "poolguard.reclaim.completed",
            Unit::Count,
            "Drops completed on workers."
        );
        describe_counter!(
            "poolguard.reclaim.inline_drops",
            Unit::Count,
            "Values dropped on the caller's thread."
        );
        describe_counter!(
            "poolguard.reclaim.handed_back",
            Unit::Count,
            "Values handed back to the caller."
        );
        describe_counter!("poolguard.reclaim.slow", Unit::Count, "Jobs reported slow.");
        describe_counter!(
            "poolguard.reclaim.stuck",
            Unit::Count,
            "Jobs reported stuck."
        );
        describe_counter!(
            "poolguard.reclaim.panicked",
            Unit::Count,
            "Drops that panicked."
        );
        describe_histogram!(
            "poolguard.reclaim.queue_wait",
            Unit::Seconds,
            "Time from defer to the start of the drop."
        );
        describe_histogram!(
            "poolguard.reclaim.run_time",
            Unit::Seconds,
            "Run time of drops and closes."
        );
    }
}

/// Why [`Registry::spawn_metrics_bridge`] could not start.
#[cfg(feature = "tokio")]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BridgeError {
    /// Called outside a tokio runtime.
    #[error("no tokio runtime is running: call spawn_metrics_bridge from inside one, or tick a MetricsBridge yourself")]
    NoRuntime,
    /// A zero period.
    #[error("the metrics bridge's period is zero: give it a period such as one second")]
    ZeroPeriod,
}

/// The task of [`Registry::spawn_metrics_bridge`]: dropping it (or [`stop`](Self::stop))
/// stops the ticks.
#[cfg(feature = "tokio")]
#[derive(Debug)]
#[must_use = "the bridge stops when this handle is dropped"]
pub struct BridgeTask {
    task: tokio::task::AbortHandle,
}

#[cfg(feature = "tokio")]
impl BridgeTask {
    /// Stops the ticks (the same as dropping the handle).
    pub fn stop(self) {}
}

#[cfg(feature = "tokio")]
impl Drop for BridgeTask {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(feature = "tokio")]
impl Registry {
    /// Spawns a task on the current tokio runtime that ticks a [`MetricsBridge`] every
    /// `period` (the first tick right away), into the global [`metrics`] recorder, until the
    /// returned handle is dropped. A late tick is not made up for.
    ///
    /// # Errors
    /// [`BridgeError::NoRuntime`] outside a tokio runtime; [`BridgeError::ZeroPeriod`].
    pub fn spawn_metrics_bridge(&self, period: Duration) -> Result<BridgeTask, BridgeError> {
        if period.is_zero() {
            return Err(BridgeError::ZeroPeriod);
        }
        let rt = tokio::runtime::Handle::try_current().map_err(|_| BridgeError::NoRuntime)?;
        let mut bridge = self.metrics_bridge();
        let task = rt.spawn(async move {
            let mut every = tokio::time::interval(period);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                bridge.tick();
            }
        });
        Ok(BridgeTask {
            task: task.abort_handle(),
        })
    }
}
