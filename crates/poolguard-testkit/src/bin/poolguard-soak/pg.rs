//! The PostgreSQL side: the pool, the requests (plain, committed, left open inside BEGIN,
//! aborted transactions, cancelled queries, panics while holding, cancelled gets), the
//! clean-session check every borrower runs first, and an admin connection.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use poolguard::conn::{ErrorClass, Manager, Pool, PooledConnection};
use poolguard_postgres::tokio_postgres::error::SqlState;
use poolguard_postgres::tokio_postgres::{self, Client, NoTls, SimpleQueryMessage};
use poolguard_postgres::{Error, PgConnection, PostgresManager};
use rand::rngs::StdRng;
use rand::Rng;
use tokio::task::JoinHandle;
use tokio::time::{timeout, timeout_at, Instant};

use crate::record::{Deliberate, Outcome, Tally};
use crate::{pool_error_kind, Careless, PoolShape};

/// The pooled connections' `application_name`, to count them in `pg_stat_activity`.
pub const APP: &str = "poolguard-soak";
const ADMIN_APP: &str = "poolguard-soak-admin";

/// The soak's PostgreSQL pool.
pub type PgPool = Pool<PostgresManager>;

/// Dirty handovers the check can see.
pub const DIRTY_OPEN_TX: &str = "handed over inside an open transaction";
/// See [`check`].
pub const DIRTY_FAILED_TX: &str = "handed over inside a failed transaction";
/// See [`check`].
pub const DIRTY_GUC: &str = "previous borrower's SET still in force";

/// Builds the pool.
pub fn pool(url: &str, shape: &PoolShape) -> Result<PgPool, String> {
    let m = PostgresManager::builder(url)
        .application_name(APP)
        .build()
        .map_err(|e| e.to_string())?;
    shape.build(m, "soak-pg")
}

/// One request's plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// A plain query.
    Plain,
    /// BEGIN, SET LOCAL, a query, COMMIT.
    Commit,
    /// BEGIN, SET (session-level, undone only by the rollback), a query; then dropped.
    LeftOpen,
    /// BEGIN, a failing statement (the transaction is now failed); then dropped.
    FailedTx,
    /// A query cut off by a short timeout (optionally inside BEGIN + SET); then dropped with
    /// the answer still on its way.
    CancelledQuery { in_tx: bool },
    /// BEGIN, SET, then a panic while holding the connection.
    Panic,
    /// `get` under a timeout too short for it to finish, sometimes.
    CancelledGet,
}

/// Picks the next request (weights in per cent).
pub fn pick(rng: &mut StdRng) -> Op {
    match rng.random_range(0..100) {
        0..40 => Op::Plain,
        40..55 => Op::Commit,
        55..67 => Op::LeftOpen,
        67..73 => Op::FailedTx,
        73..85 => Op::CancelledQuery {
            in_tx: rng.random_bool(0.5),
        },
        85..87 => Op::Panic,
        _ => Op::CancelledGet,
    }
}

/// The error label of a backend error: class and SQLSTATE (or what failed).
fn backend_kind(class: ErrorClass, e: &Error) -> String {
    let class = match class {
        ErrorClass::Transient => "transient",
        _ => "fatal",
    };
    let what = match (e.code(), e) {
        (Some(code), _) => code.code().to_owned(),
        (None, Error::Postgres(pe)) if pe.is_closed() => "connection closed".to_owned(),
        (None, _) => "i/o or protocol".to_owned(),
    };
    format!("{class} {what}")
}

/// The shipped manager, or the careless one of the self-test.
pub trait PgLike: Manager<Connection = PgConnection, Error = Error> {}
impl<M: Manager<Connection = PgConnection, Error = Error>> PgLike for M {}

type Conn<M> = PooledConnection<M>;

/// Runs `sql` under the request's deadline; a backend error is reported to the pool (a fatal
/// one evicts the connection), a deadline marks the connection broken.
async fn q<M: PgLike>(
    c: &mut Conn<M>,
    sql: &str,
    deadline: Instant,
) -> Result<Vec<SimpleQueryMessage>, Outcome> {
    match timeout_at(deadline, c.simple_query(sql)).await {
        Ok(Ok(rows)) => Ok(rows),
        Ok(Err(e)) => {
            let e = Error::from(e);
            let class = c.report(&e);
            Err(Outcome::Error(backend_kind(class, &e)))
        }
        Err(_) => {
            c.mark_broken();
            Err(Outcome::Error("request deadline".into()))
        }
    }
}

/// What every borrower runs first: the session must be outside any transaction (`now()` is
/// the transaction's start, so it equals `statement_timestamp()` only in a fresh implicit
/// one; inside a failed transaction the statement itself is refused) and carry no setting a
/// previous borrower made inside a transaction it left open.
pub const CHECK_SQL: &str = "SELECT now() = statement_timestamp(), coalesce(current_setting('poolguard.soak_dirty', true), '')";

/// Judges the check's answer (its two columns): `Some(kind)` when the session is dirty.
pub fn judge(fresh: Option<&str>, setting: Option<&str>) -> Option<&'static str> {
    if fresh != Some("t") {
        return Some(DIRTY_OPEN_TX);
    }
    if !setting.unwrap_or("").is_empty() {
        return Some(DIRTY_GUC);
    }
    None
}

fn first_row(rows: &[SimpleQueryMessage]) -> Option<&tokio_postgres::SimpleQueryRow> {
    rows.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => Some(r),
        _ => None,
    })
}

async fn check<M: PgLike>(c: &mut Conn<M>, deadline: Instant) -> Result<(), Outcome> {
    match timeout_at(deadline, c.simple_query(CHECK_SQL)).await {
        Ok(Ok(rows)) => {
            let Some(row) = first_row(&rows) else {
                return Err(Outcome::Error("the check returned no row".into()));
            };
            match judge(row.get(0), row.get(1)) {
                None => Ok(()),
                Some(kind) => {
                    c.mark_broken();
                    Err(Outcome::Dirty(kind))
                }
            }
        }
        Ok(Err(e)) if e.code() == Some(&SqlState::IN_FAILED_SQL_TRANSACTION) => {
            c.mark_broken();
            Err(Outcome::Dirty(DIRTY_FAILED_TX))
        }
        Ok(Err(e)) => {
            let e = Error::from(e);
            let class = c.report(&e);
            Err(Outcome::Error(backend_kind(class, &e)))
        }
        Err(_) => {
            c.mark_broken();
            Err(Outcome::Error("request deadline".into()))
        }
    }
}

/// One request. `cut` is how long a cancelled get or query is given.
pub async fn request(
    pool: PgPool,
    tally: Arc<Tally>,
    op: Op,
    cut: Duration,
    deadline: Instant,
) -> Outcome {
    if op == Op::CancelledGet {
        return match timeout(cut, pool.get()).await {
            Err(_) => Outcome::CancelledGet,
            Ok(Ok(_conn)) => Outcome::Ok,
            Ok(Err(e)) => Outcome::Error(pool_error_kind(&e)),
        };
    }
    let t0 = Instant::now();
    let got = pool.get().await;
    tally.note_get(t0.elapsed());
    let mut c = match got {
        Ok(c) => c,
        Err(e) => return Outcome::Error(pool_error_kind(&e)),
    };
    match run(&mut c, op, cut, deadline).await {
        Ok(o) | Err(o) => o,
    }
}

async fn run<M: PgLike>(
    c: &mut Conn<M>,
    op: Op,
    cut: Duration,
    deadline: Instant,
) -> Result<Outcome, Outcome> {
    check(c, deadline).await?;
    match op {
        Op::Plain => {
            q(c, "SELECT count(*) FROM generate_series(1, 100)", deadline).await?;
        }
        Op::Commit => {
            q(c, "BEGIN", deadline).await?;
            q(c, "SET LOCAL poolguard.soak_local = 'x'", deadline).await?;
            q(c, "SELECT 1", deadline).await?;
            q(c, "COMMIT", deadline).await?;
        }
        Op::LeftOpen => {
            q(c, "BEGIN", deadline).await?;
            q(c, "SET poolguard.soak_dirty = 'left-open'", deadline).await?;
            q(c, "SELECT 1", deadline).await?;
        }
        Op::FailedTx => {
            q(c, "BEGIN", deadline).await?;
            match timeout_at(deadline, c.simple_query("SELECT 1/0")).await {
                Ok(Err(e)) if e.code() == Some(&SqlState::DIVISION_BY_ZERO) => {
                    return Ok(Outcome::Expected)
                }
                Ok(Err(e)) => {
                    let e = Error::from(e);
                    let class = c.report(&e);
                    return Err(Outcome::Error(backend_kind(class, &e)));
                }
                Ok(Ok(_)) => return Err(Outcome::Error("1/0 did not fail".into())),
                Err(_) => {
                    c.mark_broken();
                    return Err(Outcome::Error("request deadline".into()));
                }
            }
        }
        Op::CancelledQuery { in_tx } => {
            if in_tx {
                q(c, "BEGIN", deadline).await?;
                q(c, "SET poolguard.soak_dirty = 'cancelled'", deadline).await?;
            }
            let sleep = c.simple_query("SELECT pg_sleep(0.05)");
            return match timeout(cut, sleep).await {
                Err(_) => Ok(Outcome::CancelledCommand),
                Ok(Ok(_)) => Ok(Outcome::Ok),
                Ok(Err(e)) => {
                    let e = Error::from(e);
                    let class = c.report(&e);
                    Err(Outcome::Error(backend_kind(class, &e)))
                }
            };
        }
        Op::Panic => {
            q(c, "BEGIN", deadline).await?;
            q(c, "SET poolguard.soak_dirty = 'panicked'", deadline).await?;
            std::panic::panic_any(Deliberate);
        }
        Op::CancelledGet => unreachable!("handled before the get"),
    }
    Ok(Outcome::Ok)
}

/// Holds `n` connections at once and runs the clean-session check on each: how many passed,
/// or what went wrong first.
pub async fn all_at_once(pool: &PgPool, n: usize) -> Result<usize, String> {
    let mut held = Vec::new();
    for _ in 0..n {
        held.push(pool.get().await.map_err(|e| e.to_string())?);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    for c in &mut held {
        check(c, deadline).await.map_err(|o| o.describe())?;
    }
    Ok(held.len())
}

/// The pooled connections of the self-test (not counted as the soak's backends).
const CANARY_APP: &str = "poolguard-soak-canary";

/// Proves the clean-session check can fail: through a pool whose manager skips every reset
/// ([`Careless`]), plants each kind of leftover the check looks for and expects it named, then
/// expects a clean session to pass. Returns how many cases passed.
pub async fn self_test(url: &str) -> Result<usize, String> {
    let m = PostgresManager::builder(url)
        .application_name(CANARY_APP)
        .build()
        .map_err(|e| e.to_string())?;
    let pool = Pool::builder(Careless(m))
        .name("soak-pg-canary")
        .max_size(1)
        // No validation between the planting and the check: it could evict the evidence.
        .validation_bypass(Duration::from_secs(60))
        .keepalive_interval(None)
        .acquire_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| e.to_string())?;
    let limit = Duration::from_secs(5);
    let plants: [(&[&str], &str); 3] = [
        (
            &["BEGIN", "SET poolguard.soak_dirty = 'canary'"],
            DIRTY_OPEN_TX,
        ),
        (
            &["BEGIN", "SET poolguard.soak_dirty = 'canary'", "COMMIT"],
            DIRTY_GUC,
        ),
        (&["BEGIN", "SELECT 1/0"], DIRTY_FAILED_TX),
    ];
    for (sql, want) in plants {
        {
            let c = pool.get().await.map_err(|e| e.to_string())?;
            for s in sql {
                // The planted error of SELECT 1/0 is the point.
                let _ = timeout(limit, c.simple_query(s)).await;
            }
        }
        let mut c = pool.get().await.map_err(|e| e.to_string())?;
        match check(&mut c, Instant::now() + limit).await {
            Err(Outcome::Dirty(kind)) if kind == want => {}
            other => {
                return Err(format!(
                    "after {sql:?} the check said {other:?}, not {want:?}"
                ))
            }
        }
    }
    let mut c = pool.get().await.map_err(|e| e.to_string())?;
    check(&mut c, Instant::now() + limit)
        .await
        .map_err(|o| format!("a clean session failed the check: {}", o.describe()))?;
    drop(c);
    pool.close();
    pool.wait_closed(limit).await;
    Ok(plants.len() + 1)
}

/// A plain connection outside the pool, for counting the pool's backends; reconnects after
/// a restart.
#[derive(Debug)]
pub struct PgAdmin {
    url: String,
    target: String,
    client: Mutex<Option<(Arc<Client>, Arc<AbortOnDrop>)>>,
}

/// Aborts the admin connection's task when the last handle goes.
#[derive(Debug)]
pub struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Where a connection string points (`host:port`, ...), for messages: never the string
/// itself, which may hold a password.
pub fn describe(url: &str) -> String {
    let Ok(cfg) = tokio_postgres::Config::from_str(url) else {
        return "(an unparsable connection string)".into();
    };
    let ports = cfg.get_ports();
    let hosts: Vec<String> = cfg
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match h {
                tokio_postgres::config::Host::Tcp(h) => format!("{h}:{port}"),
                tokio_postgres::config::Host::Unix(p) => format!("{}:{port}", p.display()),
            }
        })
        .collect();
    hosts.join(",")
}

impl PgAdmin {
    /// An admin for `url` (not connected yet).
    pub fn new(url: &str) -> Self {
        PgAdmin {
            url: format!("{url} application_name={ADMIN_APP}"),
            target: describe(url),
            client: Mutex::new(None),
        }
    }

    /// Runs `sql` within `limit`, connecting first if needed.
    pub async fn query(
        &self,
        sql: &str,
        limit: Duration,
    ) -> Result<Vec<SimpleQueryMessage>, String> {
        let cached = self.client.lock().clone();
        let (client, task) = match cached {
            Some((c, t)) if !c.is_closed() => (c, t),
            _ => {
                let (client, connection) =
                    timeout(limit, tokio_postgres::connect(&self.url, NoTls))
                        .await
                        .map_err(|_| {
                            format!(
                                "no PostgreSQL connection to {} within {limit:?}",
                                self.target
                            )
                        })?
                        .map_err(|e| {
                            format!("cannot connect to PostgreSQL at {}: {e}", self.target)
                        })?;
                let task = tokio::spawn(async move {
                    let _ = connection.await;
                });
                let pair = (Arc::new(client), Arc::new(AbortOnDrop(task)));
                *self.client.lock() = Some(pair.clone());
                pair
            }
        };
        let _task = task;
        match timeout(limit, client.simple_query(sql)).await {
            Ok(Ok(rows)) => Ok(rows),
            Ok(Err(e)) => {
                *self.client.lock() = None;
                Err(format!("{sql}: {e}"))
            }
            Err(_) => {
                *self.client.lock() = None;
                Err(format!("{sql}: no answer within {limit:?}"))
            }
        }
    }

    /// The first column of the first row as a number.
    pub async fn count(&self, sql: &str, limit: Duration) -> Result<usize, String> {
        let rows = self.query(sql, limit).await?;
        first_row(&rows)
            .and_then(|r| r.get(0)?.parse().ok())
            .ok_or_else(|| format!("{sql}: no number in the answer"))
    }

    /// The pool's backends (sessions with the soak's `application_name`).
    pub async fn backends(&self) -> Result<usize, String> {
        self.count(
            &format!("SELECT count(*) FROM pg_stat_activity WHERE application_name = '{APP}'"),
            Duration::from_secs(5),
        )
        .await
    }

    /// Drops the connection (and aborts its task).
    pub fn close(&self) {
        *self.client.lock() = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_server_not_the_password() {
        let d = describe("host=127.0.0.1 port=5450 user=soak password=s3cret dbname=soak");
        assert_eq!(d, "127.0.0.1:5450");
        assert!(!describe("host=x password=s3cret port=").contains("s3cret"));
    }

    #[test]
    fn the_check_tells_each_leftover_apart() {
        assert_eq!(judge(Some("t"), Some("")), None);
        assert_eq!(judge(Some("t"), None), None);
        assert_eq!(judge(Some("f"), Some("")), Some(DIRTY_OPEN_TX));
        assert_eq!(judge(Some("t"), Some("left-open")), Some(DIRTY_GUC));
    }

    #[test]
    fn the_mix_has_every_op() {
        use rand::SeedableRng;
        let mut rng = StdRng::seed_from_u64(7);
        let ops: Vec<Op> = (0..2000).map(|_| pick(&mut rng)).collect();
        for want in [
            Op::Plain,
            Op::Commit,
            Op::LeftOpen,
            Op::FailedTx,
            Op::CancelledQuery { in_tx: true },
            Op::CancelledQuery { in_tx: false },
            Op::Panic,
            Op::CancelledGet,
        ] {
            assert!(ops.contains(&want), "{want:?} never picked");
        }
    }
}
