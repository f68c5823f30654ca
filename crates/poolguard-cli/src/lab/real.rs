//! `poolguard lab --postgres URL` / `--redis URL`: the connection scenarios against a real
//! server instead of the simulator.
//!
//! Each scenario's pool-side code is generic over [`Workload`] + [`Faults`]; here the backend
//! is [`Real`]: a poolguard-postgres or poolguard-redis manager connected through a
//! [`FaultProxy`] in front of the server, so the scenarios' faults (outage = blackhole,
//! refusal, latency) happen on real sockets. The request is `SELECT 1` or `PING`.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use poolguard::conn::{ErrorClass, Manager};
use poolguard_faults::proxy::FaultProxy;
use poolguard_faults::sim::{Faults, Workload};
use poolguard_postgres::{tokio_postgres, PostgresManager};
use poolguard_redis::{redis, RedisManager};

use super::{config_traps, conn_leak, db_outage, failover, spike, LabCtx};
use crate::redact;

/// A real backend behind a fault proxy. Clones share the manager and the proxy.
pub(crate) struct Real<M> {
    manager: Arc<M>,
    proxy: Arc<FaultProxy>,
    name: &'static str,
}

impl<M> Clone for Real<M> {
    fn clone(&self) -> Self {
        Real {
            manager: Arc::clone(&self.manager),
            proxy: Arc::clone(&self.proxy),
            name: self.name,
        }
    }
}

impl<M> fmt::Debug for Real<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Real")
            .field("backend", &self.name)
            .field("proxy", &self.proxy.addr())
            .finish()
    }
}

impl<M: Manager> Manager for Real<M> {
    type Connection = M::Connection;
    type Error = M::Error;

    fn connect(&self) -> impl std::future::Future<Output = Result<M::Connection, M::Error>> + Send {
        self.manager.connect()
    }
    fn validate(
        &self,
        conn: &mut M::Connection,
    ) -> impl std::future::Future<Output = Result<(), M::Error>> + Send {
        self.manager.validate(conn)
    }
    fn reset(
        &self,
        conn: &mut M::Connection,
    ) -> impl std::future::Future<Output = Result<(), M::Error>> + Send {
        self.manager.reset(conn)
    }
    fn needs_reset(&self, conn: &mut M::Connection) -> bool {
        self.manager.needs_reset(conn)
    }
    fn is_broken(&self, conn: &mut M::Connection) -> bool {
        self.manager.is_broken(conn)
    }
    fn classify(&self, error: &M::Error) -> ErrorClass {
        self.manager.classify(error)
    }
    fn is_restarting(&self, error: &M::Error) -> bool {
        self.manager.is_restarting(error)
    }
    fn failover_class(&self, error: &M::Error) -> Option<&'static str> {
        self.manager.failover_class(error)
    }
    fn close(&self, conn: M::Connection) -> impl std::future::Future<Output = ()> + Send {
        self.manager.close(conn)
    }
}

impl<M: Send + Sync> Faults for Real<M> {
    fn set_outage(&self, down: bool) {
        self.proxy.set_outage(down);
    }
    fn set_extra_latency(&self, extra: Duration) {
        self.proxy.set_extra_latency(extra);
    }
    fn set_refuse(&self, refuse: bool) {
        self.proxy.set_refuse(refuse);
    }
    fn set_restarting(&self, restarting: bool) {
        self.proxy.set_restarting(restarting);
    }
}

impl Workload for Real<PostgresManager> {
    async fn work<'a>(&'a self, conn: &'a mut Self::Connection) -> Result<(), Self::Error> {
        conn.simple_query("SELECT 1").await?;
        Ok(())
    }
}

impl Workload for Real<RedisManager> {
    async fn work<'a>(&'a self, conn: &'a mut Self::Connection) -> Result<(), Self::Error> {
        let _: String = redis::cmd("PING").query_async(conn).await?;
        Ok(())
    }
}

/// How long the lab waits for a server to accept a connection, or to answer the first
/// handshake, before it says the server is unreachable.
const REACH_TIMEOUT: Duration = Duration::from_secs(5);

fn resolve(flag: &str, host: &str, port: u16) -> Result<SocketAddr, String> {
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("{flag}: cannot resolve {host}:{port}: {e}"))?
        .next()
        .ok_or_else(|| format!("{flag}: {host}:{port} resolves to nothing"))
}

/// Fails with the server's own address and the OS's reason when nothing answers there, before
/// a proxy is put in front of it (through the proxy, a refusal would read as a reset of the
/// proxy's port).
async fn probe(flag: &str, addr: SocketAddr) -> Result<(), String> {
    match tokio::time::timeout(REACH_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("{flag}: cannot connect to {addr}: {e}")),
        Err(_) => Err(format!(
            "{flag}: no answer from {addr} within {REACH_TIMEOUT:?}"
        )),
    }
}

/// One connection through `manager`, within [`REACH_TIMEOUT`]: fails now, with the server's
/// own words (a wrong password, an unknown database), rather than in the middle of a scenario.
async fn first_connect<M: Manager>(flag: &str, manager: &M, addr: SocketAddr) -> Result<(), String>
where
    M::Error: fmt::Display,
{
    match tokio::time::timeout(REACH_TIMEOUT, manager.connect()).await {
        Ok(Ok(conn)) => {
            manager.close(conn).await;
            Ok(())
        }
        Ok(Err(e)) => Err(format!("{flag}: {e}")),
        Err(_) => Err(format!(
            "{flag}: {addr} accepted the connection but did not finish the handshake within {REACH_TIMEOUT:?}"
        )),
    }
}

/// `--postgres`, checked before anything runs: it parsed, names one TCP server and a user.
#[derive(Clone)]
pub(crate) struct PostgresArg {
    config: tokio_postgres::Config,
    /// Where to connect: `hostaddr` when given, else `host`.
    host: String,
    port: u16,
    /// The argument with its password hidden, for every message.
    shown: String,
}

impl fmt::Debug for PostgresArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PostgresArg").field(&self.shown).finish()
    }
}

impl PostgresArg {
    /// Checks `--postgres` without connecting anywhere; the error is a usage error.
    pub(crate) fn parse(arg: &str) -> Result<Self, String> {
        use tokio_postgres::config::Host;
        let shown = redact::connection_string(arg);
        let bad = |why: String| format!("--postgres `{shown}`: {why}");
        let config: tokio_postgres::Config = arg.parse().map_err(|e: tokio_postgres::Error| {
            let e = match std::error::Error::source(&e) {
                Some(why) => format!("{e}: {why}"),
                None => e.to_string(),
            };
            bad(format!(
                "not a PostgreSQL connection string ({e}); use e.g. \
                 `host=127.0.0.1 user=postgres dbname=test` or `postgres://postgres@127.0.0.1/test`"
            ))
        })?;
        let (hosts, addrs, ports) = (
            config.get_hosts(),
            config.get_hostaddrs(),
            config.get_ports(),
        );
        if hosts.len() > 1 || addrs.len() > 1 || ports.len() > 1 {
            return Err(bad(
                "names more than one server; the lab puts one fault proxy in front of one \
                 server, so give a single host (and port)"
                    .into(),
            ));
        }
        let host =
            match (addrs.first(), hosts.first()) {
                (Some(addr), _) => addr.to_string(),
                (None, Some(Host::Tcp(h))) => h.clone(),
                (None, Some(Host::Unix(_))) => return Err(bad(
                    "names a Unix socket; the lab's fault proxy needs a TCP host (host=127.0.0.1)"
                        .into(),
                )),
                (None, None) => {
                    return Err(bad(
                        "names no host; add host=... (or use a postgres://host/... URL)".into(),
                    ))
                }
            };
        // The builder's own checks (a user, sslmode the lab can honour), on the real address.
        PostgresManager::builder_from_config(config.clone())
            .build()
            .map_err(|e| bad(e.to_string()))?;
        Ok(PostgresArg {
            port: ports.first().copied().unwrap_or(5432),
            config,
            host,
            shown,
        })
    }

    /// Resolves the server and connects to it once, directly (no proxy).
    pub(crate) async fn reach(self) -> Result<Postgres, String> {
        let upstream = resolve("--postgres", &self.host, self.port)?;
        probe("--postgres", upstream).await?;
        let direct = PostgresManager::builder_from_config(self.config.clone())
            .build()
            .map_err(|e| format!("--postgres: {e}"))?;
        first_connect("--postgres", &direct, upstream).await?;
        Ok(Postgres {
            arg: self,
            upstream,
        })
    }
}

/// A reachable `--postgres` server.
#[derive(Debug, Clone)]
pub(crate) struct Postgres {
    arg: PostgresArg,
    upstream: SocketAddr,
}

impl Postgres {
    /// The user's settings with the server replaced by `proxy`, and nothing else: the host,
    /// `hostaddr` and port lists are rebuilt (tokio-postgres's `host()` and `port()` append
    /// to them, so setting them on the user's config would leave the real server in the list
    /// and connections could bypass the proxy).
    fn through(&self, proxy: SocketAddr) -> tokio_postgres::Config {
        let c = &self.arg.config;
        let mut p = tokio_postgres::Config::new();
        p.host(proxy.ip().to_string())
            .port(proxy.port())
            .ssl_mode(c.get_ssl_mode())
            .ssl_negotiation(c.get_ssl_negotiation())
            .keepalives(c.get_keepalives())
            .keepalives_idle(c.get_keepalives_idle())
            .target_session_attrs(c.get_target_session_attrs())
            .channel_binding(c.get_channel_binding())
            .load_balance_hosts(c.get_load_balance_hosts());
        if let Some(v) = c.get_user() {
            p.user(v);
        }
        if let Some(v) = c.get_password() {
            p.password(v);
        }
        if let Some(v) = c.get_dbname() {
            p.dbname(v);
        }
        if let Some(v) = c.get_options() {
            p.options(v);
        }
        p.application_name(c.get_application_name().unwrap_or("poolguard-lab"));
        if let Some(v) = c.get_connect_timeout() {
            p.connect_timeout(*v);
        }
        if let Some(v) = c.get_tcp_user_timeout() {
            p.tcp_user_timeout(*v);
        }
        if let Some(v) = c.get_keepalives_interval() {
            p.keepalives_interval(v);
        }
        if let Some(v) = c.get_keepalives_retries() {
            p.keepalives_retries(v);
        }
        p
    }
}

/// A PostgreSQL backend behind a new fault proxy.
pub(crate) async fn postgres(pg: &Postgres) -> Result<Real<PostgresManager>, String> {
    let proxy = FaultProxy::start(pg.upstream)
        .await
        .map_err(|e| e.to_string())?;
    let manager = PostgresManager::builder_from_config(pg.through(proxy.addr()))
        .build()
        .map_err(|e| format!("--postgres: {e}"))?;
    first_connect("--postgres", &manager, proxy.addr()).await?;
    Ok(Real {
        manager: Arc::new(manager),
        proxy: Arc::new(proxy),
        name: "postgres",
    })
}

/// `--redis`, checked before anything runs: it parsed and names a plain TCP server.
#[derive(Clone)]
pub(crate) struct RedisArg {
    info: redis::ConnectionInfo,
    host: String,
    port: u16,
    /// The argument with its password hidden, for every message.
    shown: String,
}

impl fmt::Debug for RedisArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RedisArg").field(&self.shown).finish()
    }
}

impl RedisArg {
    /// Checks `--redis` without connecting anywhere; the error is a usage error.
    pub(crate) fn parse(arg: &str) -> Result<Self, String> {
        use redis::IntoConnectionInfo;
        let shown = redact::connection_string(arg);
        let bad = |why: String| format!("--redis `{shown}`: {why}");
        let info = arg.into_connection_info().map_err(|e| {
            bad(format!(
                "not a Redis URL ({e}); use e.g. `redis://127.0.0.1:6379/0`"
            ))
        })?;
        let (host, port) = match info.addr() {
            redis::ConnectionAddr::Tcp(h, p) => (h.clone(), *p),
            redis::ConnectionAddr::TcpTls { .. } => {
                return Err(bad(
                    "is a TLS address (rediss://); the lab supports plain redis:// only".into(),
                ))
            }
            _ => {
                return Err(bad(
                    "is not a TCP address; the lab's fault proxy needs redis://host:port".into(),
                ))
            }
        };
        RedisManager::new(info.clone()).map_err(|e| bad(e.to_string()))?;
        Ok(RedisArg {
            info,
            host,
            port,
            shown,
        })
    }

    /// Resolves the server and connects to it once, directly (no proxy).
    pub(crate) async fn reach(self) -> Result<Redis, String> {
        let upstream = resolve("--redis", &self.host, self.port)?;
        probe("--redis", upstream).await?;
        let direct = RedisManager::new(self.info.clone()).map_err(|e| format!("--redis: {e}"))?;
        first_connect("--redis", &direct, upstream).await?;
        Ok(Redis {
            arg: self,
            upstream,
        })
    }
}

/// A reachable `--redis` server.
#[derive(Debug, Clone)]
pub(crate) struct Redis {
    arg: RedisArg,
    upstream: SocketAddr,
}

/// A Redis backend behind a new fault proxy.
pub(crate) async fn redis(r: &Redis) -> Result<Real<RedisManager>, String> {
    let proxy = FaultProxy::start(r.upstream)
        .await
        .map_err(|e| e.to_string())?;
    let info = r.arg.info.clone().set_addr(redis::ConnectionAddr::Tcp(
        proxy.addr().ip().to_string(),
        proxy.addr().port(),
    ));
    let manager = RedisManager::new(info).map_err(|e| format!("--redis: {e}"))?;
    first_connect("--redis", &manager, proxy.addr()).await?;
    Ok(Real {
        manager: Arc::new(manager),
        proxy: Arc::new(proxy),
        name: "redis",
    })
}

/// Whether scenario `name` runs against `--postgres` / `--redis` when they are given.
pub(crate) fn is_connection_scenario(name: &str) -> bool {
    matches!(
        name,
        "conn-leak" | "db-outage" | "spike" | "failover" | "config-traps"
    )
}

/// Runs scenario `name` against every real backend given on the command line; `None` when
/// `name` is not a connection scenario (the caller runs it as usual).
pub(crate) fn run(name: &str, ctx: &LabCtx) -> Option<Result<(), String>> {
    if !is_connection_scenario(name) {
        return None;
    }
    let rt = match super::runtime() {
        Ok(rt) => rt,
        Err(e) => return Some(Err(e)),
    };
    Some(rt.block_on(async {
        if let Some(pg) = &ctx.postgres {
            ctx.out.say(format!(
                "--- against PostgreSQL ({}), through a fault proxy; request: SELECT 1",
                pg.arg.shown
            ));
            ctx.out.section(Some("PostgreSQL".into()));
            run_on(ctx, name, || postgres(pg)).await?;
        }
        if let Some(r) = &ctx.redis {
            ctx.out.say(format!(
                "--- against Redis ({}), through a fault proxy; request: PING",
                r.arg.shown
            ));
            ctx.out.section(Some("Redis".into()));
            run_on(ctx, name, || redis(r)).await?;
        }
        Ok(())
    }))
}

/// Runs one scenario; each pool gets a fresh backend (and proxy) from `backend`, so the two
/// pools a table compares can run side by side (their faults are their own proxy's).
async fn run_on<M, F, Fut>(ctx: &LabCtx, name: &str, backend: F) -> Result<(), String>
where
    M: Manager + Workload + Faults + Clone,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<M, String>>,
{
    let out = &ctx.out;
    match name {
        "conn-leak" => conn_leak::scenario(out, backend().await?).await?,
        "db-outage" => db_outage::tables(out, ctx.quick, backend, "proxy blackhole", false).await?,
        // Side by side would double the load on the server's connect path and skew the
        // figures this table compares; the rows are short, so they run one after the other.
        "spike" => {
            spike::table(
                out,
                "pool (real server, its own connect latency)",
                backend,
                &[
                    ("poolguard (max_concurrent_opens 1, default)", 1),
                    ("open one per waiter (max_concurrent_opens 50)", 50),
                ],
            )
            .await?
        }
        "failover" => {
            failover::table(
                out,
                "fleet of 4 x 5 (real server, its own connect latency)",
                backend,
                failover::REAL_FLEET,
                failover::run_for(ctx.quick),
            )
            .await?;
        }
        "config-traps" => {
            config_traps::tables(out, &backend, &backend, ["", " (blackhole)"]).await?
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn through(arg: &str) -> tokio_postgres::Config {
        let pg = Postgres {
            arg: PostgresArg::parse(arg).expect("a valid --postgres"),
            upstream: "127.0.0.1:5432".parse().unwrap(),
        };
        pg.through("127.0.0.1:40000".parse().unwrap())
    }

    /// The proxy is the only server left, whatever the user's string named (a port, a
    /// hostaddr), and every other setting is kept.
    #[test]
    fn through_the_proxy_replaces_host_hostaddr_and_port() {
        use tokio_postgres::config::Host;
        for arg in [
            "host=db.invalid port=5433 hostaddr=127.0.0.9 user=u password=S3cret dbname=d \
             connect_timeout=7 application_name=mine options=-cfoo=bar keepalives_idle=30",
            "postgres://u:S3cret@db.invalid:5433/d?connect_timeout=7&application_name=mine\
             &options=-cfoo%3Dbar&keepalives_idle=30",
        ] {
            let c = through(arg);
            assert_eq!(c.get_hosts(), [Host::Tcp("127.0.0.1".into())], "{arg}");
            assert_eq!(c.get_ports(), [40000], "{arg}");
            assert!(c.get_hostaddrs().is_empty(), "{arg}");
            assert_eq!(c.get_user(), Some("u"));
            assert_eq!(c.get_password(), Some(&b"S3cret"[..]));
            assert_eq!(c.get_dbname(), Some("d"));
            assert_eq!(c.get_application_name(), Some("mine"));
            assert_eq!(c.get_options(), Some("-cfoo=bar"));
            assert_eq!(c.get_connect_timeout(), Some(&Duration::from_secs(7)));
            assert_eq!(c.get_keepalives_idle(), Duration::from_secs(30));
        }
        let c = through("host=127.0.0.1 user=u");
        assert_eq!(c.get_application_name(), Some("poolguard-lab"));
    }

    #[test]
    fn postgres_args_the_lab_cannot_proxy_are_usage_errors() {
        for (arg, says) in [
            ("garbage", "not a PostgreSQL connection string"),
            ("host=a,b user=u", "more than one server"),
            ("host=a port=1,2 user=u", "more than one server"),
            ("host=/run/postgresql user=u", "Unix socket"),
            ("user=u", "no host"),
            ("host=a", "no user"),
        ] {
            let e = PostgresArg::parse(arg).expect_err(arg);
            assert!(e.contains(says), "{arg}: {e}");
            assert!(e.starts_with("--postgres `"), "{arg}: {e}");
        }
    }

    #[test]
    fn redis_args_the_lab_cannot_proxy_are_usage_errors() {
        for (arg, says) in [
            ("garbage", "not a Redis URL"),
            ("redis+unix:///tmp/r.sock", "not a TCP address"),
        ] {
            let e = RedisArg::parse(arg).expect_err(arg);
            assert!(e.contains(says), "{arg}: {e}");
        }
    }
}
