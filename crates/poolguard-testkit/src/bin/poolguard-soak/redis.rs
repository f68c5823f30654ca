//! The Redis side: the pool, the requests (plain, MULTI/EXEC, MULTI left open, a dirty WATCH
//! left behind, SELECT of another database, cancelled BLPOPs, panics while holding, cancelled
//! gets), the clean-session check every borrower runs first, and an admin connection.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use poolguard::conn::{ErrorClass, Manager, Pool, PooledConnection};
use poolguard_redis::redis::aio::MultiplexedConnection;
use poolguard_redis::redis::{self, AsyncConnectionConfig, Cmd, Value};
use poolguard_redis::{Error, RedisConnection, RedisManager};
use rand::rngs::StdRng;
use rand::Rng;
use tokio::time::{sleep, timeout, timeout_at, Instant};

use crate::record::{Deliberate, Outcome, Tally};
use crate::{pool_error_kind, Careless, PoolShape};

/// The soak's Redis pool.
pub type RedisPool = Pool<RedisManager>;

/// The admin connection's client name (the pool's connections have none).
pub const ADMIN_NAME: &str = "poolguard-soak-admin";

/// Dirty handovers the check can see.
pub const DIRTY_MULTI: &str = "handed over inside MULTI";
/// See [`judge_info`].
pub const DIRTY_DB: &str = "handed over with another database selected";
/// A connection whose previous borrower's blocking command is still waiting on the server:
/// the next command's answer would queue behind it.
pub const DIRTY_BLOCKED: &str = "handed over with a blocking command still pending";
/// An EXEC without a WATCH of its own came back aborted: a previous borrower's WATCH of a
/// key it then changed was still in force.
pub const DIRTY_WATCH: &str = "handed over with a stale WATCH (EXEC aborted)";
/// An answer that does not belong to the command (replies out of step).
pub const DIRTY_OUT_OF_STEP: &str = "replies out of step";

/// Builds the pool.
pub fn pool(url: &str, shape: &PoolShape) -> Result<RedisPool, String> {
    let m = RedisManager::new(url).map_err(|e| e.to_string())?;
    shape.build(m, "soak-redis")
}

/// One request's plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// PING with a token (the echo must match), SET.
    Plain,
    /// MULTI, INCR, EXPIRE, EXEC (no WATCH: a Nil answer can only be a stale WATCH).
    Exec,
    /// MULTI, INCR; then dropped.
    LeftMulti,
    /// WATCH a key, change it (so any later EXEC on this session aborts while the WATCH lasts),
    /// optionally MULTI; then dropped.
    LeftWatch { multi: bool },
    /// SELECT 1, SET there; then dropped.
    Select,
    /// BLPOP on an empty list with no server timeout, cut off by a short timeout; then dropped.
    CancelledBlpop,
    /// MULTI, then a panic while holding the connection.
    Panic,
    /// `get` under a timeout too short for it to finish, sometimes.
    CancelledGet,
}

/// Picks the next request (weights in per cent).
pub fn pick(rng: &mut StdRng) -> Op {
    match rng.random_range(0..100) {
        0..40 => Op::Plain,
        40..55 => Op::Exec,
        55..63 => Op::LeftMulti,
        63..70 => Op::LeftWatch {
            multi: rng.random_bool(0.5),
        },
        70..76 => Op::Select,
        76..86 => Op::CancelledBlpop,
        86..88 => Op::Panic,
        _ => Op::CancelledGet,
    }
}

/// Reports a command's error to the pool (a fatal one evicts the connection) and labels it
/// by class and code (or what failed).
fn report<M: RedisLike>(c: &mut Conn<M>, e: redis::RedisError) -> Outcome {
    let what = if let Some(code) = e.code() {
        code.to_owned()
    } else if e.is_timeout() {
        "timeout".to_owned()
    } else if e.is_connection_dropped() || e.is_io_error() {
        "connection dropped".to_owned()
    } else {
        format!("{:?}", e.kind())
    };
    let class = match c.report(&Error::from(e)) {
        ErrorClass::Transient => "transient",
        _ => "fatal",
    };
    Outcome::Error(format!("{class} {what}"))
}

/// The shipped manager, or the careless one of the self-test.
pub trait RedisLike: Manager<Connection = RedisConnection, Error = Error> {}
impl<M: Manager<Connection = RedisConnection, Error = Error>> RedisLike for M {}

type Conn<M> = PooledConnection<M>;

async fn cmd<M: RedisLike>(
    c: &mut Conn<M>,
    cmd: &Cmd,
    deadline: Instant,
) -> Result<Value, Outcome> {
    match timeout_at(deadline, cmd.query_async::<Value>(&mut **c)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(report(c, e)),
        Err(_) => {
            c.mark_broken();
            Err(Outcome::Error("request deadline".into()))
        }
    }
}

/// Who a pooled connection is on the server: its client id and its address (the id alone
/// could name another client after a server restart; the address is unique while the pooled
/// socket is open).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// `id=`.
    pub id: i64,
    /// `addr=`.
    pub addr: String,
}

/// The server-side identity of the pool's connections (by the pool's connection id), learnt
/// from each borrower's check, so that a slow check can ask the admin about the session.
/// Bounded.
#[derive(Debug, Default)]
pub struct ClientIds(Mutex<HashMap<u64, Client>>);

const MAX_IDS: usize = 512;

impl ClientIds {
    fn get(&self, conn: u64) -> Option<Client> {
        self.0.lock().get(&conn).cloned()
    }

    fn put(&self, conn: u64, client: Client) {
        let mut m = self.0.lock();
        if m.len() >= MAX_IDS {
            m.clear();
        }
        m.insert(conn, client);
    }
}

/// Whether a `CLIENT LIST` line shows `client` blocked in a blocking command.
pub fn blocked(line: &str, client: &Client) -> bool {
    field(line, "addr") == Some(client.addr.as_str())
        && field(line, "flags").is_some_and(|f| f.contains('b'))
}

/// A field of a `CLIENT INFO` / `CLIENT LIST` line.
pub fn field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.split_whitespace().find_map(|f| {
        let (k, v) = f.split_once('=')?;
        (k == name).then_some(v)
    })
}

/// Judges the answer to `CLIENT INFO` sent as the first command of a borrow: `Ok(who)` when
/// the session is clean, else the kind of dirt.
pub fn judge_info(reply: &Value) -> Result<Client, &'static str> {
    let text = match reply {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::VerbatimString { text, .. } => text.clone(),
        Value::SimpleString(s) if s == "QUEUED" => return Err(DIRTY_MULTI),
        _ => return Err(DIRTY_OUT_OF_STEP),
    };
    let id = field(&text, "id").and_then(|v| v.parse().ok());
    let (Some(id), Some(addr)) = (id, field(&text, "addr")) else {
        return Err(DIRTY_OUT_OF_STEP);
    };
    if field(&text, "multi") != Some("-1") {
        return Err(DIRTY_MULTI);
    }
    if field(&text, "db") != Some("0") {
        return Err(DIRTY_DB);
    }
    Ok(Client {
        id,
        addr: addr.to_owned(),
    })
}

/// How long the check waits before asking the admin whether the session is blocked.
const SUSPECT_AFTER: Duration = Duration::from_millis(300);

async fn check<M: RedisLike>(
    c: &mut Conn<M>,
    ids: &ClientIds,
    admin: &RedisAdmin,
    deadline: Instant,
) -> Result<(), Outcome> {
    let conn_id = c.id();
    let known = ids.get(conn_id);
    let info = redis::cmd("CLIENT").arg("INFO").clone();
    // None: the session was seen blocked by someone else's command.
    let answer = {
        let fut = timeout_at(deadline, info.query_async::<Value>(&mut **c));
        tokio::pin!(fut);
        let first = tokio::select! {
            r = &mut fut => Some(r),
            _ = sleep(SUSPECT_AFTER) => None,
        };
        match first {
            Some(r) => Some(r),
            None => {
                // Slow: a stalled server, or a session still busy with a previous command.
                let is_blocked = match &known {
                    Some(who) => timeout_at(deadline, admin.client_line(who.id))
                        .await
                        .is_ok_and(|line| line.is_ok_and(|l| blocked(&l, who))),
                    None => false,
                };
                if is_blocked {
                    None
                } else {
                    Some(fut.await)
                }
            }
        }
    };
    match answer {
        None => {
            c.mark_broken();
            Err(Outcome::Dirty(DIRTY_BLOCKED))
        }
        Some(Err(_)) => {
            c.mark_broken();
            Err(Outcome::Error("request deadline".into()))
        }
        Some(Ok(Err(e))) => Err(report(c, e)),
        Some(Ok(Ok(v))) => match judge_info(&v) {
            Ok(client) => {
                ids.put(conn_id, client);
                Ok(())
            }
            Err(kind) => {
                c.mark_broken();
                Err(Outcome::Dirty(kind))
            }
        },
    }
}

/// One request. `token` is echoed by PING; `task` names the request's own keys.
#[allow(clippy::too_many_arguments)]
pub async fn request(
    pool: RedisPool,
    tally: Arc<Tally>,
    ids: Arc<ClientIds>,
    admin: Arc<RedisAdmin>,
    op: Op,
    cut: Duration,
    token: u64,
    task: usize,
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
    if let Err(o) = check(&mut c, &ids, &admin, deadline).await {
        return o;
    }
    match run(&mut c, op, cut, token, task, deadline).await {
        Ok(o) | Err(o) => o,
    }
}

async fn run<M: RedisLike>(
    c: &mut Conn<M>,
    op: Op,
    cut: Duration,
    token: u64,
    task: usize,
    deadline: Instant,
) -> Result<Outcome, Outcome> {
    let key = |what: &str| format!("soak:{what}:{task}");
    match op {
        Op::Plain => {
            let echo = cmd(c, redis::cmd("PING").arg(token), deadline).await?;
            if echo != Value::BulkString(token.to_string().into_bytes()) {
                c.mark_broken();
                return Err(Outcome::Dirty(DIRTY_OUT_OF_STEP));
            }
            cmd(
                c,
                redis::cmd("SET").arg(key("k")).arg(token).arg("EX").arg(60),
                deadline,
            )
            .await?;
        }
        Op::Exec => {
            cmd(c, &redis::cmd("MULTI"), deadline).await?;
            cmd(c, redis::cmd("INCR").arg(key("c")), deadline).await?;
            cmd(c, redis::cmd("EXPIRE").arg(key("c")).arg(60), deadline).await?;
            match cmd(c, &redis::cmd("EXEC"), deadline).await? {
                Value::Array(v) if v.len() == 2 => {}
                Value::Nil => {
                    c.mark_broken();
                    return Err(Outcome::Dirty(DIRTY_WATCH));
                }
                _ => {
                    c.mark_broken();
                    return Err(Outcome::Dirty(DIRTY_OUT_OF_STEP));
                }
            }
        }
        Op::LeftMulti => {
            cmd(c, &redis::cmd("MULTI"), deadline).await?;
            cmd(c, redis::cmd("INCR").arg(key("c")), deadline).await?;
        }
        Op::LeftWatch { multi } => {
            cmd(c, redis::cmd("WATCH").arg(key("w")), deadline).await?;
            cmd(
                c,
                redis::cmd("SET").arg(key("w")).arg(token).arg("EX").arg(60),
                deadline,
            )
            .await?;
            if multi {
                cmd(c, &redis::cmd("MULTI"), deadline).await?;
            }
        }
        Op::Select => {
            cmd(c, redis::cmd("SELECT").arg(1), deadline).await?;
            cmd(
                c,
                redis::cmd("SET")
                    .arg(key("db1"))
                    .arg(token)
                    .arg("EX")
                    .arg(60),
                deadline,
            )
            .await?;
        }
        Op::CancelledBlpop => {
            let blpop = redis::cmd("BLPOP").arg(key("empty")).arg(0).clone();
            return match timeout(cut, blpop.query_async::<Value>(&mut **c)).await {
                Err(_) => Ok(Outcome::CancelledCommand),
                Ok(Ok(_)) => Err(Outcome::Error("BLPOP on an empty list answered".into())),
                Ok(Err(e)) => Err(report(c, e)),
            };
        }
        Op::Panic => {
            cmd(c, &redis::cmd("MULTI"), deadline).await?;
            std::panic::panic_any(Deliberate);
        }
        Op::CancelledGet => unreachable!("handled before the get"),
    }
    Ok(Outcome::Ok)
}

/// Holds `n` connections at once and runs the clean-session check and a PING on each: how
/// many passed, or what went wrong first.
pub async fn all_at_once(
    pool: &RedisPool,
    ids: &ClientIds,
    admin: &RedisAdmin,
    n: usize,
) -> Result<usize, String> {
    let mut held = Vec::new();
    for _ in 0..n {
        held.push(pool.get().await.map_err(|e| e.to_string())?);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    for c in &mut held {
        check(c, ids, admin, deadline)
            .await
            .map_err(|o| o.describe())?;
        cmd(c, &redis::cmd("PING"), deadline)
            .await
            .map_err(|o| o.describe())?;
    }
    Ok(held.len())
}

/// Proves the clean-session check can fail: through a pool whose manager skips every reset
/// ([`Careless`]), plants each kind of leftover the soak looks for (MULTI, SELECT, a dirty
/// WATCH, a cut-off BLPOP) and expects it named, then expects a clean session to pass.
/// Returns how many cases passed.
pub async fn self_test(url: &str, admin: &RedisAdmin) -> Result<usize, String> {
    let pool = Pool::builder(Careless(RedisManager::new(url).map_err(|e| e.to_string())?))
        .name("soak-redis-canary")
        .max_size(1)
        // No validation between the planting and the check: it could evict the evidence.
        .validation_bypass(Duration::from_secs(60))
        .keepalive_interval(None)
        .acquire_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| e.to_string())?;
    let ids = ClientIds::default();
    let limit = Duration::from_secs(5);
    let key = "soak:canary";
    let cases = [
        ("MULTI", DIRTY_MULTI),
        ("SELECT 1", DIRTY_DB),
        ("WATCH + SET of the watched key", DIRTY_WATCH),
        ("a BLPOP cut off while blocked", DIRTY_BLOCKED),
    ];
    for (i, (what, want)) in cases.iter().enumerate() {
        {
            let mut c = pool.get().await.map_err(|e| e.to_string())?;
            // A clean check first, so the session's client id is known.
            check(&mut c, &ids, admin, Instant::now() + limit)
                .await
                .map_err(|o| format!("a clean session failed the check: {}", o.describe()))?;
            let deadline = Instant::now() + limit;
            let planted = match i {
                0 => cmd(&mut c, &redis::cmd("MULTI"), deadline).await.map(drop),
                1 => cmd(&mut c, redis::cmd("SELECT").arg(1), deadline)
                    .await
                    .map(drop),
                2 => match cmd(&mut c, redis::cmd("WATCH").arg(key), deadline).await {
                    Ok(_) => cmd(
                        &mut c,
                        redis::cmd("SET").arg(key).arg(1).arg("EX").arg(60),
                        deadline,
                    )
                    .await
                    .map(drop),
                    Err(e) => Err(e),
                },
                _ => {
                    // Cut off once the server shows the session blocked in it (not after a
                    // fixed time, which a loaded machine could outrun).
                    let who = ids
                        .get(c.id())
                        .ok_or("the clean check did not record the session")?;
                    let blpop = redis::cmd("BLPOP").arg("soak:canary:empty").arg(0).clone();
                    let fut = blpop.query_async::<Value>(&mut *c);
                    tokio::pin!(fut);
                    let t0 = Instant::now();
                    loop {
                        tokio::select! {
                            _ = &mut fut => return Err("BLPOP on an empty list answered".into()),
                            _ = sleep(Duration::from_millis(20)) => {}
                        }
                        if admin
                            .client_line(who.id)
                            .await
                            .is_ok_and(|l| blocked(&l, &who))
                        {
                            break;
                        }
                        if t0.elapsed() > limit {
                            return Err("the planted BLPOP never showed as blocked".into());
                        }
                    }
                    Ok(())
                }
            };
            planted.map_err(|o| format!("planting {what}: {}", o.describe()))?;
        }
        let mut c = pool.get().await.map_err(|e| e.to_string())?;
        let deadline = Instant::now() + limit;
        let verdict = match check(&mut c, &ids, admin, deadline).await {
            Ok(()) if *want == DIRTY_WATCH => {
                run(&mut c, Op::Exec, limit, 0, usize::MAX, deadline).await
            }
            Ok(()) => Ok(Outcome::Ok),
            Err(o) => Err(o),
        };
        match verdict {
            Err(Outcome::Dirty(kind)) if kind == *want => {}
            other => {
                return Err(format!(
                    "after {what} the check said {other:?}, not {want:?}"
                ))
            }
        }
    }
    pool.close();
    pool.wait_closed(limit).await;
    Ok(cases.len())
}

/// A plain connection outside the pool (named [`ADMIN_NAME`]) for faults and session
/// checks; reconnects after a kill or crash.
#[derive(Debug)]
pub struct RedisAdmin {
    client: redis::Client,
    conn: Mutex<Option<MultiplexedConnection>>,
}

impl RedisAdmin {
    /// An admin for `url` (not connected yet).
    pub fn new(url: &str) -> Result<Self, String> {
        Ok(RedisAdmin {
            client: redis::Client::open(url)
                .map_err(|e| format!("{}: {e}", poolguard_redis::redact_url(url)))?,
            conn: Mutex::new(None),
        })
    }

    async fn connect(&self, limit: Duration) -> Result<MultiplexedConnection, String> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(None)
            .set_response_timeout(None);
        let mut conn = timeout(
            limit,
            self.client
                .get_multiplexed_async_connection_with_config(&config),
        )
        .await
        .map_err(|_| format!("no Redis connection within {limit:?}"))?
        .map_err(|e| format!("cannot connect to Redis: {e}"))?;
        timeout(
            limit,
            redis::cmd("CLIENT")
                .arg("SETNAME")
                .arg(ADMIN_NAME)
                .query_async::<()>(&mut conn),
        )
        .await
        .map_err(|_| "CLIENT SETNAME: no answer".to_owned())?
        .map_err(|e| format!("CLIENT SETNAME: {e}"))?;
        Ok(conn)
    }

    /// Runs `cmd` within `limit`, connecting first if needed; any failure drops the
    /// connection (a timed-out answer would arrive later, out of step). A cached connection
    /// that fails at once (the server was restarted since) is replaced and the command sent
    /// again, once.
    pub async fn query(&self, cmd: &Cmd, limit: Duration) -> Result<Value, String> {
        let cached = self.conn.lock().clone();
        let fresh = cached.is_none();
        let mut conn = match cached {
            Some(c) => c,
            None => {
                let c = self.connect(limit).await?;
                *self.conn.lock() = Some(c.clone());
                c
            }
        };
        match timeout(limit, cmd.query_async::<Value>(&mut conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                *self.conn.lock() = None;
                if !fresh && (e.is_io_error() || e.is_connection_dropped()) {
                    return Box::pin(self.query(cmd, limit)).await;
                }
                Err(e.to_string())
            }
            Err(_) => {
                *self.conn.lock() = None;
                Err(format!("no answer within {limit:?}"))
            }
        }
    }

    async fn text(&self, cmd: &Cmd, limit: Duration) -> Result<String, String> {
        match self.query(cmd, limit).await? {
            Value::BulkString(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
            Value::VerbatimString { text, .. } => Ok(text),
            Value::SimpleString(s) => Ok(s),
            other => Err(format!("unexpected answer {other:?}")),
        }
    }

    /// The `CLIENT LIST` line of client `id` (empty when there is none).
    pub async fn client_line(&self, id: i64) -> Result<String, String> {
        self.text(
            redis::cmd("CLIENT").arg("LIST").arg("ID").arg(id),
            Duration::from_secs(1),
        )
        .await
    }

    /// The pool's connections on the server (normal clients other than the admin).
    pub async fn pool_clients(&self) -> Result<usize, String> {
        let list = self
            .text(
                redis::cmd("CLIENT").arg("LIST").arg("TYPE").arg("normal"),
                Duration::from_secs(5),
            )
            .await?;
        Ok(list
            .lines()
            .filter(|l| !l.trim().is_empty() && field(l, "name") != Some(ADMIN_NAME))
            .count())
    }

    /// Drops the connection.
    pub fn close(&self) {
        *self.conn.lock() = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLEAN: &str = "id=8 addr=127.0.0.1:42960 laddr=127.0.0.1:6379 fd=8 name= age=0 idle=0 flags=N db=0 sub=0 psub=0 ssub=0 multi=-1 qbuf=26 cmd=client|info user=default redir=-1 resp=2";

    #[test]
    fn the_check_accepts_a_clean_session_and_names_each_leftover() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let me = Client {
            id: 8,
            addr: "127.0.0.1:42960".into(),
        };
        assert_eq!(judge_info(&bulk(CLEAN)), Ok(me.clone()));
        assert!(!blocked(CLEAN, &me));
        assert!(blocked(&CLEAN.replace("flags=N", "flags=b"), &me));
        let other = Client {
            id: 8,
            addr: "127.0.0.1:1".into(),
        };
        assert!(
            !blocked(&CLEAN.replace("flags=N", "flags=b"), &other),
            "the same id at another address is another client"
        );
        assert_eq!(
            judge_info(&bulk(&CLEAN.replace("db=0", "db=1"))),
            Err(DIRTY_DB)
        );
        assert_eq!(
            judge_info(&bulk(&CLEAN.replace("multi=-1", "multi=0"))),
            Err(DIRTY_MULTI)
        );
        assert_eq!(
            judge_info(&Value::SimpleString("QUEUED".into())),
            Err(DIRTY_MULTI)
        );
        assert_eq!(judge_info(&Value::Okay), Err(DIRTY_OUT_OF_STEP));
        assert_eq!(judge_info(&bulk("PONG")), Err(DIRTY_OUT_OF_STEP));
    }

    #[test]
    fn fields_are_matched_whole() {
        assert_eq!(field(CLEAN, "db"), Some("0"));
        assert_eq!(field(CLEAN, "name"), Some(""));
        assert_eq!(field("id=1 psub=3 sub=2", "sub"), Some("2"));
        assert_eq!(field(CLEAN, "watch"), None);
    }

    #[test]
    fn the_mix_has_every_op() {
        use rand::SeedableRng;
        let mut rng = StdRng::seed_from_u64(7);
        let ops: Vec<Op> = (0..2000).map(|_| pick(&mut rng)).collect();
        for want in [
            Op::Plain,
            Op::Exec,
            Op::LeftMulti,
            Op::LeftWatch { multi: true },
            Op::LeftWatch { multi: false },
            Op::Select,
            Op::CancelledBlpop,
            Op::Panic,
            Op::CancelledGet,
        ] {
            assert!(ops.contains(&want), "{want:?} never picked");
        }
    }
}
