//! Plain-data configuration of a connection pool and its validating builder.

use std::time::Duration;

use crate::diag::validate_name;

/// A configuration the builder refused: which field, what was wrong, how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid pool config: `{field}` {problem}; fix: {fix}")]
#[non_exhaustive]
pub struct BuildError {
    /// The offending field.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: String,
    /// How to fix it.
    pub fix: &'static str,
}

/// Every tunable of a [`Pool`](super::Pool), as plain data.
///
/// Build one with [`Pool::builder`](super::Pool::builder); the builder validates it. Every
/// wait the pool performs has one of these deadlines; none of them can be infinite.
///
/// With feature `serde` it deserializes from any serde format (JSON, TOML, YAML...) or from
/// the environment (`Config::from_env`): every key is a field name below, every key is
/// optional (the default stands), durations are human strings (`"30s"`, `"250ms"`,
/// `"1h 30m"`; `"off"` or `null` for an optional one), `timeout_log_level` a level name or
/// `"off"`, `idle_order` `"lifo"` or `"fifo"`, and an unknown key is an error that names it.
/// Validation is still [`Builder::build`](super::Pool::builder)'s: pass the result to
/// [`Builder::from_config`].
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct Config {
    /// The pool's name in logs, the doctor and Prometheus (`pool="..."`). Empty (the
    /// default): a distinct generated name, the manager type's short name and a sequence number
    /// (`PostgresManager-1`); the built pool's [`config`](super::Pool::config) shows it.
    /// Otherwise 1 to [`MAX_NAME_BYTES`](crate::diag::MAX_NAME_BYTES) bytes without control
    /// characters (the rule of every pool). Two live pools under one name get a `tracing`
    /// warning: their metrics would collide.
    pub name: String,
    /// Most connections open at once (idle + in use + being opened). Default 10; 1 to
    /// [`MAX_SIZE`].
    pub max_size: usize,
    /// Idle connections kept warm by maintenance. Default 0.
    pub min_idle: usize,
    /// Longest a `get` waits in total. Default 30 s.
    #[cfg_attr(
        feature = "serde",
        serde(deserialize_with = "super::config_serde::duration")
    )]
    pub acquire_timeout: Duration,
    /// Longest one `Manager::connect` may take. Default 10 s.
    #[cfg_attr(
        feature = "serde",
        serde(deserialize_with = "super::config_serde::duration")
    )]
    pub connect_timeout: Duration,
    /// Longest one `Manager::validate` may take. Default 2 s.
    #[cfg_attr(
        feature = "serde",
        serde(deserialize_with = "super::config_serde::duration")
    )]
    pub validation_timeout: Duration,
    /// Longest one `Manager::reset` may take. Default 2 s.
    #[cfg_attr(
        feature = "serde",
        serde(deserialize_with = "super::config_serde::duration")
    )]
    pub reset_timeout: Duration,
    /// Longest one `Manager::close` may take before the connection is simply dropped. Default 5 s.
    #[cfg_attr(
        feature = "serde",
        serde(deserialize_with = "super::config_serde::duration")
    )]
    pub close_timeout: Duration,
    /// A connection idle for less than this is handed out without validation. Default 500 ms.
    #[cfg_attr(
        feature = "serde",
        serde(deserialize_with = "super::config_serde::duration")
    )]
    pub validation_bypass: Duration,
    /// Maintenance validates idle connections not checked for this long. `None` disables
    /// keepalive. Default 60 s.
    #[cfg_attr(
        feature = "serde",
        serde(deserialize_with = "super::config_serde::opt_duration")
    )]
    pub keepalive_interval: Option<Duration>,
    /// Idle connections above `min_idle` are closed after this long. `None`: never. Default 10 min.
    #[cfg_attr(
        feature = "serde",
        serde(deserialize_with = "super::config_serde::opt_duration")
    )]
    pub idle_timeout: Option<Duration>,
    /// Connections are retired (when idle or on return) after this age. `None`: never.
    /// Default 30 min.
    #[cfg_attr(
        feature = "serde",
        serde(deserialize_with = "super::config_serde::opt_duration")
    )]
    pub max_lifetime: Option<Duration>,
    /// Each connection's idle timeout and lifetime are shortened by a random fraction up to
    /// this, so connections do not expire together. Default 0.05 (up to 5 %).
    pub jitter: f64,
    /// A connection held longer than this is reported once as a leak (a `tracing` warning
    /// naming the `get` call site, counted in `stats().leaks`): while it is still out, by the
    /// next maintenance pass (so within one `maintenance_interval` of crossing it), and at the
    /// latest when it comes back ("leaked for X, now returned"). With it set, every return
    /// reads the clock once. `None`: off (default).
    #[cfg_attr(
        feature = "serde",
        serde(deserialize_with = "super::config_serde::opt_duration")
    )]
    pub leak_threshold: Option<Duration>,
    /// A connection held longer than this is abandoned by maintenance: it stops counting
    /// against `max_size` and is closed when it comes back. `None`: off (default).
    ///
    /// The trade-off (the "removeAbandoned" trap of Java pools): pools that reclaim
    /// abandoned connections *on borrow* close them under their holder, killing legitimate
    /// long transactions. poolguard never touches a held connection: it only stops counting
    /// it, so a replacement can be opened. The cost is that the backend may then see up to
    /// `max_size` + abandoned connections, and a truly leaked connection stays open until
    /// its guard is dropped. Set it well above your longest legitimate transaction.
    #[cfg_attr(
        feature = "serde",
        serde(deserialize_with = "super::config_serde::opt_duration")
    )]
    pub abandon_timeout: Option<Duration>,
    /// How long the oldest waiter may wait before returned connections are handed to
    /// waiters strictly in arrival order. Default 250 µs; `Duration::ZERO`: always strict.
    ///
    /// While the oldest waiter has waited less than this, a returned connection goes to the
    /// idle list and one waiter is woken to take it, so a caller arriving meanwhile may take
    /// it first (barging: the caller that just returned a connection gets one back without
    /// parking, which keeps a burst from turning into a convoy where every checkout waits for
    /// a task switch). Once the oldest waiter has waited this long, every return is handed
    /// to it directly and arrivals queue behind it (the FIFO guarantee), as Go's
    /// `sync.Mutex` switches to starvation mode after 1 ms. So no caller waits much longer
    /// than this budget because others barge; a larger budget favours throughput, a smaller
    /// one the latency tail. The default is below Go's because a connection is held far
    /// longer than a mutex (a query takes hundreds of microseconds or more), while breaking
    /// a convoy needs only a few task switches' worth of time.
    pub handoff_after: Duration,
    /// Most callers waiting at once; past it `get` fails at once with `Overloaded`. Default 1024.
    ///
    /// At least 1: a caller that finds no idle connection waits while one is opened, so with
    /// 0 a cold pool would refuse every `get` and never open a connection. The builder
    /// refuses 0; to fail fast rather than queue for long, use a short `acquire_timeout`.
    /// At most [`MAX_WAITERS`].
    pub max_waiters: usize,
    /// Most connections being opened at once. Default 1 (as HikariCP): surplus opens are
    /// elided because returns usually serve waiters before a new connection is ready.
    /// 1 to `max_size`.
    pub max_concurrent_opens: usize,
    /// Consecutive failed connects (errors or timeouts) and validation timeouts that open the
    /// circuit breaker (a validation *error* only evicts its connection: the backend answered).
    /// `None` disables the breaker. Default 5.
    pub breaker_threshold: Option<u32>,
    /// First wait before a half-open probe; doubles after each failed probe. Each wait is
    /// jittered (up to 50 % shorter), and while the manager reports a restart
    /// (`Manager::is_restarting`) none exceeds 100 ms. Default 25 ms: a brief outage (a
    /// restart) ends without a long backoff, while gets still fail fast in between.
    #[cfg_attr(
        feature = "serde",
        serde(deserialize_with = "super::config_serde::duration")
    )]
    pub breaker_backoff: Duration,
    /// Longest wait between half-open probes (bounds the probe rate in a long outage). Default 30 s.
    #[cfg_attr(
        feature = "serde",
        serde(deserialize_with = "super::config_serde::duration")
    )]
    pub breaker_max_backoff: Duration,
    /// How often the maintenance task runs. Default 1 s; at least
    /// [`MIN_MAINTENANCE_INTERVAL`] (10 ms), so maintenance cannot busy-loop.
    #[cfg_attr(
        feature = "serde",
        serde(deserialize_with = "super::config_serde::duration")
    )]
    pub maintenance_interval: Duration,
    /// The level of the event logged when a get hits `acquire_timeout` (target
    /// `poolguard::conn`, the timeout snapshot as text and fields); `None`: not logged.
    /// Default `DEBUG`: the same snapshot is in the returned
    /// [`Error::Timeout`](super::Error::Timeout), which the caller handles or logs; in an outage every
    /// waiter times out, so a warning per timeout would double the log without news (the
    /// breaker's warnings and `poolguard_conn_timeouts_total` tell the operator). Raise it to
    /// `WARN` when callers drop the error unlogged.
    #[cfg_attr(
        feature = "serde",
        serde(deserialize_with = "super::config_serde::level")
    )]
    pub timeout_log_level: Option<tracing::Level>,
    /// Longest one run of the `after_connect` hook may take; past it the new connection is
    /// closed and the connect counts as failed. Default 5 s.
    #[cfg_attr(
        feature = "serde",
        serde(deserialize_with = "super::config_serde::duration")
    )]
    pub after_connect_timeout: Duration,
    /// Longest one run of the `before_acquire` hook may take (never past the get's own
    /// deadline); past it the connection is closed and the next one tried. Default 2 s.
    #[cfg_attr(
        feature = "serde",
        serde(deserialize_with = "super::config_serde::duration")
    )]
    pub before_acquire_timeout: Duration,
    /// Longest one run of the `after_release` hook may take; past it the connection is
    /// closed. Default 2 s.
    #[cfg_attr(
        feature = "serde",
        serde(deserialize_with = "super::config_serde::duration")
    )]
    pub after_release_timeout: Duration,
    /// Which idle connection a `get` takes. Default [`IdleOrder::Lifo`].
    pub idle_order: IdleOrder,
    /// Automatic soft-evict on a failover signature: this many errors of one failover
    /// class ([`Manager::failover_class`](super::Manager::failover_class): PostgreSQL
    /// 57P01 `admin_shutdown` or 25006 read-only transaction, Redis `READONLY`) within
    /// [`failover_window`](Self::failover_window) retire every connection as
    /// [`Pool::soft_evict_all`](super::Pool::soft_evict_all) does (the refill paced by
    /// `max_concurrent_opens` and the breaker), once: no second one for
    /// [`failover_cooldown`](Self::failover_cooldown). The errors counted are those the pool
    /// meets: fatal ones given to `PooledConnection::report`, failed validations, connects
    /// and resets. Each trigger is counted (`stats().auto_soft_evicts`), logged as a
    /// warning and reported by the doctor (`conn.failover`). `None`: off (the default),
    /// and no error is examined. 1 to [`MAX_FAILOVER_BURST`].
    pub failover_burst: Option<u32>,
    /// The window the `failover_burst` errors must fall in. Default 10 s.
    #[cfg_attr(
        feature = "serde",
        serde(deserialize_with = "super::config_serde::duration")
    )]
    pub failover_window: Duration,
    /// After an automatic soft-evict, none again for this long (a sustained outage or a
    /// replica that keeps answering read-only does not evict in a loop). Default 60 s.
    #[cfg_attr(
        feature = "serde",
        serde(deserialize_with = "super::config_serde::duration")
    )]
    pub failover_cooldown: Duration,
    /// Longest one call of the credentials provider (see
    /// [`Builder::credentials`](super::Builder::credentials)) may take, before each connect;
    /// past it that connect fails with
    /// [`CredentialsFault::TimedOut`](super::CredentialsFault::TimedOut). Default 5 s.
    #[cfg_attr(
        feature = "serde",
        serde(deserialize_with = "super::config_serde::duration")
    )]
    pub credentials_timeout: Duration,
}

/// Which idle connection a `get` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
#[non_exhaustive]
pub enum IdleOrder {
    /// The most recently returned (the default): a few connections stay busy and the
    /// others age out after `idle_timeout`, so the pool shrinks to what the load needs.
    #[default]
    Lifo,
    /// The least recently returned: use spreads over every idle connection (each one
    /// stays warm, e.g. behind a load balancer that counts requests per connection), and
    /// the pool rarely shrinks below what a burst opened.
    Fifo,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            name: String::new(),
            max_size: 10,
            min_idle: 0,
            acquire_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            validation_timeout: Duration::from_secs(2),
            reset_timeout: Duration::from_secs(2),
            close_timeout: Duration::from_secs(5),
            validation_bypass: Duration::from_millis(500),
            keepalive_interval: Some(Duration::from_secs(60)),
            idle_timeout: Some(Duration::from_secs(600)),
            max_lifetime: Some(Duration::from_secs(1800)),
            jitter: 0.05,
            leak_threshold: None,
            abandon_timeout: None,
            handoff_after: Duration::from_micros(250),
            max_waiters: 1024,
            max_concurrent_opens: 1,
            breaker_threshold: Some(5),
            breaker_backoff: Duration::from_millis(25),
            breaker_max_backoff: Duration::from_secs(30),
            maintenance_interval: Duration::from_secs(1),
            timeout_log_level: Some(tracing::Level::DEBUG),
            idle_order: IdleOrder::Lifo,
            after_connect_timeout: Duration::from_secs(5),
            before_acquire_timeout: Duration::from_secs(2),
            after_release_timeout: Duration::from_secs(2),
            failover_burst: None,
            failover_window: Duration::from_secs(10),
            failover_cooldown: Duration::from_secs(60),
            credentials_timeout: Duration::from_secs(5),
        }
    }
}

/// The longest duration any setting accepts: one year. Longer ones are refused by
/// [`Config::validate`], so that `now + duration` can never overflow the clock.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 86_400);

/// The largest `max_size` accepted: 10 000 connections. Databases refuse far fewer (a
/// PostgreSQL server defaults to 100); a larger figure is a typo or an unbounded intent.
pub const MAX_SIZE: usize = 10_000;

/// The largest `failover_burst` accepted: 1000 errors (the pool keeps the times of up to
/// that many recent errors per class).
pub const MAX_FAILOVER_BURST: u32 = 1000;

/// The largest `max_waiters` accepted: 1 048 576 callers queued at once.
pub const MAX_WAITERS: usize = 1 << 20;

/// The shortest `maintenance_interval` accepted: 10 ms. A pass scans every holder and idle
/// connection under the pool's lock; run more often, it burns a core and contends with `get`.
pub const MIN_MAINTENANCE_INTERVAL: Duration = Duration::from_millis(10);

fn refuse(field: &'static str, problem: String, fix: &'static str) -> Result<(), BuildError> {
    Err(BuildError {
        field,
        problem,
        fix,
    })
}

/// A required duration (a timeout): the rules and errors of [`Config::validate`], for the
/// run-time setters.
pub(crate) fn check_required(field: &'static str, d: Duration) -> Result<(), BuildError> {
    if d.is_zero() {
        return refuse(
            field,
            "is zero, so every such operation would fail at once".into(),
            "use a positive duration (timeouts cannot be infinite either)",
        );
    }
    check_max(field, Some(d))
}

/// An optional duration (`None`: off): the rules and errors of [`Config::validate`].
pub(crate) fn check_optional(field: &'static str, d: Option<Duration>) -> Result<(), BuildError> {
    if d.is_some_and(|d| d.is_zero()) {
        return refuse(
            field,
            "is zero".into(),
            "use None to disable it, or a positive duration",
        );
    }
    check_max(field, d)
}

fn check_max(field: &'static str, d: Option<Duration>) -> Result<(), BuildError> {
    match d.filter(|d| *d > MAX_DURATION) {
        Some(d) => refuse(
            field,
            format!("({d:?}) is longer than {} days, the longest duration the pool accepts (deadlines that far away overflow the clock)", MAX_DURATION.as_secs() / 86_400),
            "use at most 365 days; for \"never\", use None where the setting is optional",
        ),
        None => Ok(()),
    }
}

/// `min_idle` against `max_size`: the rule and error of [`Config::validate`].
pub(crate) fn check_min_idle(min_idle: usize, max_size: usize) -> Result<(), BuildError> {
    if min_idle > max_size {
        return refuse(
            "min_idle",
            format!("({min_idle}) exceeds max_size ({max_size})"),
            "lower min_idle or raise max_size",
        );
    }
    Ok(())
}

impl Config {
    /// Checks every rule; the error says what was wrong and how to fix it.
    pub fn validate(&self) -> Result<(), BuildError> {
        let bad = |field: &'static str, problem: String, fix: &'static str| {
            Err(BuildError {
                field,
                problem,
                fix,
            })
        };
        if !self.name.is_empty() {
            if let Err(e) = validate_name(&self.name) {
                return bad(
                    "name",
                    format!("({:?}) breaks the naming rule: {e}", self.name),
                    "use a short printable name such as \"pg-main\" (the rule of every pool and reclaimer)",
                );
            }
        }
        if self.max_size == 0 {
            return bad(
                "max_size",
                "is 0, so no connection could ever be handed out".into(),
                "set max_size to at least 1",
            );
        }
        if self.max_size > MAX_SIZE {
            return bad(
                "max_size",
                format!("({}) is above the limit of {MAX_SIZE} connections", self.max_size),
                "size the pool to what the database accepts (a few per core of the server is typical)",
            );
        }
        if self.max_waiters > MAX_WAITERS {
            return bad(
                "max_waiters",
                format!("({}) is above the limit of {MAX_WAITERS}", self.max_waiters),
                "shed load sooner: a queue that long only makes callers time out later",
            );
        }
        if self.max_concurrent_opens > self.max_size {
            return bad(
                "max_concurrent_opens",
                format!(
                    "({}) exceeds max_size ({}): no more than max_size connections can ever be opening",
                    self.max_concurrent_opens, self.max_size
                ),
                "lower max_concurrent_opens (default 1) or raise max_size",
            );
        }
        if self.min_idle > self.max_size {
            return bad(
                "min_idle",
                format!("({}) exceeds max_size ({})", self.min_idle, self.max_size),
                "lower min_idle or raise max_size",
            );
        }
        for (field, d) in [
            ("acquire_timeout", self.acquire_timeout),
            ("connect_timeout", self.connect_timeout),
            ("validation_timeout", self.validation_timeout),
            ("reset_timeout", self.reset_timeout),
            ("close_timeout", self.close_timeout),
            ("maintenance_interval", self.maintenance_interval),
            ("breaker_backoff", self.breaker_backoff),
            ("after_connect_timeout", self.after_connect_timeout),
            ("before_acquire_timeout", self.before_acquire_timeout),
            ("after_release_timeout", self.after_release_timeout),
            ("failover_window", self.failover_window),
            ("failover_cooldown", self.failover_cooldown),
            ("credentials_timeout", self.credentials_timeout),
        ] {
            if d.is_zero() {
                return bad(
                    field,
                    "is zero, so every such operation would fail at once".into(),
                    "use a positive duration (timeouts cannot be infinite either)",
                );
            }
        }
        if self.maintenance_interval < MIN_MAINTENANCE_INTERVAL {
            return bad(
                "maintenance_interval",
                format!(
                    "({:?}) is below the floor of {:?}: maintenance would run back to back, burning a core and contending with get for the pool's lock",
                    self.maintenance_interval, MIN_MAINTENANCE_INTERVAL
                ),
                "use at least 10 ms (MIN_MAINTENANCE_INTERVAL); the default is 1 s",
            );
        }
        if self.breaker_max_backoff < self.breaker_backoff {
            return bad(
                "breaker_max_backoff",
                format!(
                    "({:?}) is below breaker_backoff ({:?})",
                    self.breaker_max_backoff, self.breaker_backoff
                ),
                "set breaker_max_backoff >= breaker_backoff",
            );
        }
        if !(0.0..0.5).contains(&self.jitter) {
            return bad(
                "jitter",
                format!("({}) is outside 0.0..0.5", self.jitter),
                "use a fraction such as 0.05 (connections expire up to 5 % early)",
            );
        }
        if self.max_concurrent_opens == 0 {
            return bad(
                "max_concurrent_opens",
                "is 0, so no connection could ever be opened".into(),
                "set it to at least 1",
            );
        }
        if self.max_waiters == 0 {
            return bad(
                "max_waiters",
                "is 0, so a get that finds no idle connection is refused as overloaded before any connection is opened: a cold pool would never serve".into(),
                "set max_waiters to at least 1 (default 1024); to fail fast instead of queueing, set a short acquire_timeout",
            );
        }
        if self.breaker_threshold == Some(0) {
            return bad(
                "breaker_threshold",
                "is 0, so the breaker would open before any failure".into(),
                "use None to disable the breaker, or at least 1",
            );
        }
        for (field, d) in [
            ("idle_timeout", self.idle_timeout),
            ("max_lifetime", self.max_lifetime),
            ("keepalive_interval", self.keepalive_interval),
            ("leak_threshold", self.leak_threshold),
            ("abandon_timeout", self.abandon_timeout),
        ] {
            if d.is_some_and(|d| d.is_zero()) {
                return bad(
                    field,
                    "is zero".into(),
                    "use None to disable it, or a positive duration",
                );
            }
        }
        let all = [
            ("acquire_timeout", Some(self.acquire_timeout)),
            ("connect_timeout", Some(self.connect_timeout)),
            ("validation_timeout", Some(self.validation_timeout)),
            ("reset_timeout", Some(self.reset_timeout)),
            ("close_timeout", Some(self.close_timeout)),
            ("validation_bypass", Some(self.validation_bypass)),
            ("handoff_after", Some(self.handoff_after)),
            ("maintenance_interval", Some(self.maintenance_interval)),
            ("breaker_backoff", Some(self.breaker_backoff)),
            ("breaker_max_backoff", Some(self.breaker_max_backoff)),
            ("idle_timeout", self.idle_timeout),
            ("max_lifetime", self.max_lifetime),
            ("keepalive_interval", self.keepalive_interval),
            ("leak_threshold", self.leak_threshold),
            ("abandon_timeout", self.abandon_timeout),
            ("after_connect_timeout", Some(self.after_connect_timeout)),
            ("before_acquire_timeout", Some(self.before_acquire_timeout)),
            ("after_release_timeout", Some(self.after_release_timeout)),
            ("failover_window", Some(self.failover_window)),
            ("failover_cooldown", Some(self.failover_cooldown)),
            ("credentials_timeout", Some(self.credentials_timeout)),
        ];
        for (field, d) in all {
            if let Some(d) = d.filter(|d| *d > MAX_DURATION) {
                return bad(
                    field,
                    format!("({d:?}) is longer than {} days, the longest duration the pool accepts (deadlines that far away overflow the clock)", MAX_DURATION.as_secs() / 86_400),
                    "use at most 365 days; for \"never\", use None where the setting is optional",
                );
            }
        }
        if let Some(burst) = self.failover_burst {
            if burst == 0 || burst > MAX_FAILOVER_BURST {
                return bad(
                    "failover_burst",
                    format!("({burst}) is outside 1..={MAX_FAILOVER_BURST}"),
                    "use None to turn automatic soft-evict off, or a small count such as 5 (errors of one failover class within failover_window)",
                );
            }
        }
        if let (Some(leak), Some(abandon)) = (self.leak_threshold, self.abandon_timeout) {
            if abandon < leak {
                return bad(
                    "abandon_timeout",
                    format!("({abandon:?}) is below leak_threshold ({leak:?})"),
                    "abandon only connections already reported as leaks: raise abandon_timeout",
                );
            }
        }
        Ok(())
    }
}

/// Builds a [`Pool`](super::Pool): set what you need, then [`build`](Builder::build).
#[must_use = "a builder does nothing until `build()` is called"]
pub struct Builder<M: super::Manager> {
    pub(crate) manager: M,
    pub(crate) config: Config,
    pub(crate) hooks: super::hooks::Hooks<M::Connection>,
}

impl<M: super::Manager> std::fmt::Debug for Builder<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("manager", &std::any::type_name::<M>())
            .field("config", &self.config)
            .field("hooks", &self.hooks.names())
            .finish()
    }
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty),* $(,)?) => {
        $(
            $(#[$doc])*
            pub fn $name(mut self, value: $ty) -> Self {
                self.config.$name = value;
                self
            }
        )*
    };
}

impl<M: super::Manager> Builder<M> {
    pub(crate) fn new(manager: M) -> Self {
        Self {
            manager,
            config: Config::default(),
            hooks: super::hooks::Hooks::default(),
        }
    }

    /// A builder for `manager` with a whole configuration (one read from a file or the
    /// environment, say); [`build`](Self::build) validates it as any other, and the
    /// setters can still adjust it.
    pub fn from_config(manager: M, config: Config) -> Self {
        Self {
            manager,
            config,
            hooks: super::hooks::Hooks::default(),
        }
    }

    /// Replaces the whole configuration.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Sets the name used in logs, the doctor and Prometheus (default: the manager type's
    /// short name and a sequence number, distinct for every pool).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    setters! {
        /// See [`Config::max_size`].
        max_size: usize,
        /// See [`Config::min_idle`].
        min_idle: usize,
        /// See [`Config::acquire_timeout`].
        acquire_timeout: Duration,
        /// See [`Config::connect_timeout`].
        connect_timeout: Duration,
        /// See [`Config::validation_timeout`].
        validation_timeout: Duration,
        /// See [`Config::reset_timeout`].
        reset_timeout: Duration,
        /// See [`Config::close_timeout`].
        close_timeout: Duration,
        /// See [`Config::validation_bypass`].
        validation_bypass: Duration,
        /// See [`Config::keepalive_interval`].
        keepalive_interval: Option<Duration>,
        /// See [`Config::idle_timeout`].
        idle_timeout: Option<Duration>,
        /// See [`Config::max_lifetime`].
        max_lifetime: Option<Duration>,
        /// See [`Config::jitter`].
        jitter: f64,
        /// See [`Config::leak_threshold`].
        leak_threshold: Option<Duration>,
        /// See [`Config::abandon_timeout`].
        abandon_timeout: Option<Duration>,
        /// See [`Config::handoff_after`].
        handoff_after: Duration,
        /// See [`Config::max_waiters`].
        max_waiters: usize,
        /// See [`Config::max_concurrent_opens`].
        max_concurrent_opens: usize,
        /// See [`Config::breaker_threshold`].
        breaker_threshold: Option<u32>,
        /// See [`Config::breaker_backoff`].
        breaker_backoff: Duration,
        /// See [`Config::breaker_max_backoff`].
        breaker_max_backoff: Duration,
        /// See [`Config::maintenance_interval`].
        maintenance_interval: Duration,
        /// See [`Config::timeout_log_level`].
        timeout_log_level: Option<tracing::Level>,
        /// See [`Config::idle_order`].
        idle_order: IdleOrder,
        /// See [`Config::after_connect_timeout`].
        after_connect_timeout: Duration,
        /// See [`Config::before_acquire_timeout`].
        before_acquire_timeout: Duration,
        /// See [`Config::after_release_timeout`].
        after_release_timeout: Duration,
        /// See [`Config::failover_burst`].
        failover_burst: Option<u32>,
        /// See [`Config::failover_window`].
        failover_window: Duration,
        /// See [`Config::failover_cooldown`].
        failover_cooldown: Duration,
        /// See [`Config::credentials_timeout`].
        credentials_timeout: Duration,
    }
}
