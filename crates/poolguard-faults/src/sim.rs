//! An in-process **database simulator** for the connection pool's tests, benches and lab.
//!
//! It is a simulator, not a database: a [`SimManager`] hands out [`SimConn`]s whose
//! connect, validate, query, reset and close take a configurable (tokio-clock) latency and
//! can be switched to fail, to be slow or to hang, one operation at a time
//! ([`SimManager::set`]) or at random from a seeded RNG ([`SimManager::randomize`]). A
//! database-wide *outage* makes new connects hang and existing connections go silent (a dead
//! node); *refuse* makes connects fail at once (a refused port or a wrong password);
//! *restarting* ends every open connection and makes connects fail at once with a restart
//! message that [`SimManager`]'s `Manager::is_restarting` recognises; a *failover*
//! ([`SimManager::fail_over`]) leaves every open connection on a demoted server, answering
//! [`SimError::ReadOnly`] (failover class `read-only`); a limit on connects in progress
//! ([`SimManager::max_connecting`]) refuses the rest of a connect storm. Every
//! connection's creation, close call and drop is counted, so tests can prove that none is
//! lost and each is closed once.
//!
//! Lab scenarios are written against [`Faults`] and [`Workload`] (not against the
//! simulator), so the same code can drive a real server behind a TCP fault proxy.
//!
//! All waiting uses `tokio::time`, so tests run it under a paused clock.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use poolguard::conn::{ErrorClass, Manager};

/// Fault injection that a lab scenario needs from its backend, whatever it is.
pub trait Faults: Send + Sync {
    /// `true`: the backend is down (a dead node: connects hang, existing connections go
    /// silent). `false`: it is back.
    fn set_outage(&self, down: bool);
    /// Extra latency added to every operation.
    fn set_extra_latency(&self, extra: Duration);
    /// `true`: connects fail at once with an error (refused port, wrong password).
    fn set_refuse(&self, refuse: bool);
    /// `true`: a server restart begins: open connections end, and connects fail at once with
    /// the server's restart message (what `Manager::is_restarting` recognises, such as
    /// PostgreSQL's "the database system is starting up"). `false`: it accepts again. The
    /// default, for a backend that cannot fake that message (a TCP proxy), refuses connects.
    fn set_restarting(&self, restarting: bool) {
        self.set_refuse(restarting);
    }
}

/// The unit of work a lab scenario runs on a pooled connection (a short query).
pub trait Workload: Manager {
    /// Runs one request on `conn`.
    fn work<'a>(
        &'a self,
        conn: &'a mut Self::Connection,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'a;
}

/// What one operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Behavior {
    /// Succeeds after the configured latency.
    Ok,
    /// Fails after the configured latency.
    Err,
    /// Succeeds after this extra delay.
    Slow(Duration),
    /// Never completes.
    Hang,
}

/// An operation of the simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// `Manager::connect`.
    Connect,
    /// `Manager::validate`.
    Validate,
    /// `Manager::reset`.
    Reset,
    /// `Manager::close`.
    Close,
    /// `Workload::work`.
    Query,
}

const OPS: usize = 5;

impl Op {
    fn index(self) -> usize {
        match self {
            Op::Connect => 0,
            Op::Validate => 1,
            Op::Reset => 2,
            Op::Close => 3,
            Op::Query => 4,
        }
    }
}

/// An error of the simulated backend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// Connection refused (the backend is refusing).
    #[error("connection refused (simulated)")]
    Refused,
    /// The server is restarting (as PostgreSQL's 57P03 or Redis's `LOADING`).
    #[error("the database system is starting up (simulated)")]
    Restarting,
    /// A switched-on failure of one operation.
    #[error("injected {0:?} failure (simulated)")]
    Injected(Op),
    /// The connection died in an outage.
    #[error("connection lost (simulated)")]
    ConnectionLost,
    /// A request error that leaves the connection usable.
    #[error("bad query (simulated)")]
    BadQuery,
    /// The server was demoted in a failover ([`SimManager::fail_over`]): as PostgreSQL's
    /// 25006 "cannot execute ... in a read-only transaction" or Redis's `READONLY`. Its
    /// failover class is `read-only`.
    #[error("cannot execute the request in a read-only transaction (simulated)")]
    ReadOnly,
    /// More connects in progress than the database accepts
    /// ([`SimManager::max_connecting`]), as PostgreSQL's "sorry, too many clients already".
    #[error("too many connects in progress (simulated)")]
    TooManyConnects,
}

#[derive(Debug)]
enum Switch {
    Fixed(Behavior),
    Random { rng: fastrand::Rng, slow: Duration },
}

#[derive(Debug)]
struct Db {
    switches: Mutex<[Switch; OPS]>,
    latency: Mutex<[Duration; OPS]>,
    extra: Mutex<Duration>,
    down: AtomicBool,
    refuse: AtomicBool,
    restarting: AtomicBool,
    /// Incremented at every outage start: connections of an older epoch are dead.
    epoch: AtomicU64,
    reset_on: AtomicBool,
    attempts: AtomicU64,
    created: AtomicU64,
    dropped: AtomicU64,
    closes: AtomicU64,
    validations: AtomicU64,
    resets: AtomicU64,
    alive_max: AtomicU64,
    /// Connects in progress (from the attempt to its outcome or cancellation).
    connecting: AtomicU64,
    connecting_max: AtomicU64,
    /// Incremented at every failover: connections of an older one answer `ReadOnly`.
    failovers: AtomicU64,
    /// Connects beyond this many in progress are refused (`u64::MAX`: no limit).
    connect_limit: AtomicU64,
    refused_connects: AtomicU64,
}

/// Counts one connect in progress in [`Db::connecting`] until dropped (also when the
/// connect future is cancelled).
struct Connecting<'a>(&'a Db);

impl<'a> Connecting<'a> {
    fn start(db: &'a Db) -> Self {
        let now = db.connecting.fetch_add(1, SeqCst) + 1;
        db.connecting_max.fetch_max(now, SeqCst);
        Self(db)
    }
}

impl Drop for Connecting<'_> {
    fn drop(&mut self) {
        self.0.connecting.fetch_sub(1, SeqCst);
    }
}

/// The simulator's [`Manager`]. Cheap to clone (clones share the database).
#[derive(Debug, Clone)]
pub struct SimManager {
    db: Arc<Db>,
}

/// A simulated connection.
#[derive(Debug)]
pub struct SimConn {
    id: u64,
    epoch: u64,
    failovers: u64,
    broken: bool,
    db: Arc<Db>,
}

impl SimConn {
    /// The simulator's id for this connection (0, 1, 2... in creation order).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Marks the connection broken (`Manager::is_broken` then reports it).
    pub fn break_it(&mut self) {
        self.broken = true;
    }

    fn dead(&self) -> bool {
        self.epoch != self.db.epoch.load(SeqCst)
    }

    fn demoted(&self) -> bool {
        self.failovers != self.db.failovers.load(SeqCst)
    }
}

impl Drop for SimConn {
    fn drop(&mut self) {
        self.db.dropped.fetch_add(1, SeqCst);
    }
}

impl Default for SimManager {
    fn default() -> Self {
        Self::new()
    }
}

impl SimManager {
    /// A database where every operation succeeds at once.
    pub fn new() -> Self {
        Self {
            db: Arc::new(Db {
                switches: Mutex::new(std::array::from_fn(|_| Switch::Fixed(Behavior::Ok))),
                latency: Mutex::new([Duration::ZERO; OPS]),
                extra: Mutex::new(Duration::ZERO),
                down: AtomicBool::new(false),
                refuse: AtomicBool::new(false),
                restarting: AtomicBool::new(false),
                epoch: AtomicU64::new(0),
                reset_on: AtomicBool::new(true),
                attempts: AtomicU64::new(0),
                created: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
                closes: AtomicU64::new(0),
                validations: AtomicU64::new(0),
                resets: AtomicU64::new(0),
                alive_max: AtomicU64::new(0),
                connecting: AtomicU64::new(0),
                connecting_max: AtomicU64::new(0),
                failovers: AtomicU64::new(0),
                connect_limit: AtomicU64::new(u64::MAX),
                refused_connects: AtomicU64::new(0),
            }),
        }
    }

    /// Sets what `op` does from now on.
    pub fn set(&self, op: Op, behavior: Behavior) -> &Self {
        self.db.switches.lock()[op.index()] = Switch::Fixed(behavior);
        self
    }

    /// From now on `op` picks Ok / Err / Slow(`slow`) / Hang uniformly at random from a
    /// RNG seeded with `seed` (deterministic for a given sequence of calls).
    pub fn randomize(&self, op: Op, seed: u64, slow: Duration) -> &Self {
        self.db.switches.lock()[op.index()] = Switch::Random {
            rng: fastrand::Rng::with_seed(seed),
            slow,
        };
        self
    }

    /// Sets the base latency of `op`.
    pub fn latency(&self, op: Op, latency: Duration) -> &Self {
        self.db.latency.lock()[op.index()] = latency;
        self
    }

    /// Whether the pool should run `reset` on return (default true).
    pub fn with_reset(&self, on: bool) -> &Self {
        self.db.reset_on.store(on, SeqCst);
        self
    }

    /// Connect attempts so far.
    pub fn attempts(&self) -> u64 {
        self.db.attempts.load(SeqCst)
    }

    /// Connections created so far.
    pub fn created(&self) -> u64 {
        self.db.created.load(SeqCst)
    }

    /// Connections dropped so far.
    pub fn dropped(&self) -> u64 {
        self.db.dropped.load(SeqCst)
    }

    /// Connections alive (`created - dropped`).
    pub fn alive(&self) -> u64 {
        self.created() - self.dropped()
    }

    /// The most connections ever alive at once.
    pub fn alive_max(&self) -> u64 {
        self.db.alive_max.load(SeqCst)
    }

    /// Connects in progress right now (the database's view: every pool sharing this
    /// simulator together).
    pub fn connecting(&self) -> u64 {
        self.db.connecting.load(SeqCst)
    }

    /// The most connects ever in progress at once (a connect storm shows here).
    pub fn connecting_max(&self) -> u64 {
        self.db.connecting_max.load(SeqCst)
    }

    /// Starts a new measurement of [`connecting_max`](Self::connecting_max) from the
    /// connects in progress now.
    pub fn reset_connecting_max(&self) {
        self.db
            .connecting_max
            .store(self.db.connecting.load(SeqCst), SeqCst);
    }

    /// A failover: the server every open connection reaches is demoted, so their
    /// validations and queries answer [`SimError::ReadOnly`] (whose failover class is
    /// `read-only`); connections opened afterwards reach the new primary and work.
    pub fn fail_over(&self) {
        self.db.failovers.fetch_add(1, SeqCst);
    }

    /// The database accepts at most `limit` connects in progress at once; more are
    /// refused at once with [`SimError::TooManyConnects`] (`None`: no limit, the default).
    pub fn max_connecting(&self, limit: Option<u64>) -> &Self {
        self.db
            .connect_limit
            .store(limit.unwrap_or(u64::MAX), SeqCst);
        self
    }

    /// Connects refused by [`max_connecting`](Self::max_connecting) so far.
    pub fn refused_connects(&self) -> u64 {
        self.db.refused_connects.load(SeqCst)
    }

    /// `Manager::close` calls so far.
    pub fn closes(&self) -> u64 {
        self.db.closes.load(SeqCst)
    }

    /// `Manager::validate` calls so far.
    pub fn validations(&self) -> u64 {
        self.db.validations.load(SeqCst)
    }

    /// `Manager::reset` calls so far.
    pub fn resets(&self) -> u64 {
        self.db.resets.load(SeqCst)
    }

    fn behavior(&self, op: Op) -> Behavior {
        match &mut self.db.switches.lock()[op.index()] {
            Switch::Fixed(b) => *b,
            Switch::Random { rng, slow } => match rng.u8(0..4) {
                0 => Behavior::Ok,
                1 => Behavior::Err,
                2 => Behavior::Slow(*slow),
                _ => Behavior::Hang,
            },
        }
    }

    fn delay(&self, op: Op) -> Duration {
        self.db.latency.lock()[op.index()].saturating_add(*self.db.extra.lock())
    }

    /// Runs `op`'s latency and switch; `Ok` means it may proceed.
    async fn step(&self, op: Op) -> Result<(), SimError> {
        let b = self.behavior(op);
        let d = self.delay(op);
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
        match b {
            Behavior::Ok => Ok(()),
            Behavior::Err => Err(SimError::Injected(op)),
            Behavior::Slow(extra) => {
                tokio::time::sleep(extra).await;
                Ok(())
            }
            Behavior::Hang => std::future::pending().await,
        }
    }

    async fn silent_if_dead(&self, conn: &SimConn) -> Result<(), SimError> {
        if conn.dead() {
            if self.db.down.load(SeqCst) {
                // A dead node: no answer, ever.
                std::future::pending::<()>().await;
            }
            return Err(SimError::ConnectionLost);
        }
        Ok(())
    }
}

impl Faults for SimManager {
    fn set_outage(&self, down: bool) {
        if down && !self.db.down.swap(true, SeqCst) {
            self.db.epoch.fetch_add(1, SeqCst);
        } else if !down {
            self.db.down.store(false, SeqCst);
        }
    }

    fn set_extra_latency(&self, extra: Duration) {
        *self.db.extra.lock() = extra;
    }

    fn set_refuse(&self, refuse: bool) {
        self.db.refuse.store(refuse, SeqCst);
    }

    fn set_restarting(&self, restarting: bool) {
        if restarting && !self.db.restarting.swap(true, SeqCst) {
            // Every open connection ends (and answers at once: the node is not dead).
            self.db.epoch.fetch_add(1, SeqCst);
        } else if !restarting {
            self.db.restarting.store(false, SeqCst);
        }
    }
}

impl Manager for SimManager {
    type Connection = SimConn;
    type Error = SimError;

    async fn connect(&self) -> Result<SimConn, SimError> {
        self.db.attempts.fetch_add(1, SeqCst);
        let _connecting = Connecting::start(&self.db);
        if self.db.connecting.load(SeqCst) > self.db.connect_limit.load(SeqCst) {
            self.db.refused_connects.fetch_add(1, SeqCst);
            return Err(SimError::TooManyConnects);
        }
        if self.db.refuse.load(SeqCst) {
            return Err(SimError::Refused);
        }
        if self.db.restarting.load(SeqCst) {
            return Err(SimError::Restarting);
        }
        if self.db.down.load(SeqCst) {
            std::future::pending::<()>().await;
        }
        self.step(Op::Connect).await?;
        let id = self.db.created.fetch_add(1, SeqCst);
        let alive = id + 1 - self.db.dropped.load(SeqCst);
        self.db.alive_max.fetch_max(alive, SeqCst);
        Ok(SimConn {
            id,
            epoch: self.db.epoch.load(SeqCst),
            failovers: self.db.failovers.load(SeqCst),
            broken: false,
            db: Arc::clone(&self.db),
        })
    }

    async fn validate(&self, conn: &mut SimConn) -> Result<(), SimError> {
        self.db.validations.fetch_add(1, SeqCst);
        self.silent_if_dead(conn).await?;
        self.step(Op::Validate).await?;
        if conn.demoted() {
            return Err(SimError::ReadOnly);
        }
        Ok(())
    }

    async fn reset(&self, conn: &mut SimConn) -> Result<(), SimError> {
        self.db.resets.fetch_add(1, SeqCst);
        self.silent_if_dead(conn).await?;
        self.step(Op::Reset).await
    }

    fn needs_reset(&self, _conn: &mut SimConn) -> bool {
        self.db.reset_on.load(SeqCst)
    }

    fn is_broken(&self, conn: &mut SimConn) -> bool {
        conn.broken
    }

    fn classify(&self, error: &SimError) -> ErrorClass {
        match error {
            SimError::BadQuery => ErrorClass::Transient,
            _ => ErrorClass::Fatal,
        }
    }

    fn is_restarting(&self, error: &SimError) -> bool {
        matches!(error, SimError::Restarting)
    }

    fn failover_class(&self, error: &SimError) -> Option<&'static str> {
        matches!(error, SimError::ReadOnly).then_some("read-only")
    }

    async fn close(&self, conn: SimConn) {
        self.db.closes.fetch_add(1, SeqCst);
        let _ = self.step(Op::Close).await;
        drop(conn);
    }
}

impl Workload for SimManager {
    async fn work<'a>(&'a self, conn: &'a mut SimConn) -> Result<(), SimError> {
        if let Err(e) = self.silent_if_dead(conn).await {
            conn.broken = true;
            return Err(e);
        }
        self.step(Op::Query).await?;
        if conn.demoted() {
            return Err(SimError::ReadOnly);
        }
        Ok(())
    }
}

/// A manager whose every operation succeeds at once and does nothing: for benchmarks.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopManager;

impl Manager for NoopManager {
    type Connection = ();
    type Error = std::io::Error;

    async fn connect(&self) -> Result<(), std::io::Error> {
        Ok(())
    }

    async fn validate(&self, _conn: &mut ()) -> Result<(), std::io::Error> {
        Ok(())
    }

    fn needs_reset(&self, _conn: &mut ()) -> bool {
        false
    }
}
