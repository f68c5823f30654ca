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
use poolguard_postgres::{tokio_postgres, PostgresManager};
use poolguard_redis::{redis, RedisManager};
use poolguard_testkit::proxy::FaultProxy;
use poolguard_testkit::sim::{Faults, Workload};

use super::{config_traps, conn_leak, db_outage, spike, LabCtx, Table};

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

fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}:{port}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host}:{port} resolves to nothing"))
}

/// Fails with the server's own address and the OS's reason when nothing answers there, before
/// a proxy is put in front of it (through the proxy, a refusal would read as a reset of the
/// proxy's port).
async fn probe(flag: &str, addr: SocketAddr) -> Result<(), String> {
    match tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("{flag}: cannot connect to {addr}: {e}")),
        Err(_) => Err(format!("{flag}: no answer from {addr} within 5 s")),
    }
}

/// A PostgreSQL backend behind a new fault proxy.
pub(crate) async fn postgres(url: &str) -> Result<Real<PostgresManager>, String> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| format!("--postgres `{url}`: {e}"))?;
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => return Err("--postgres needs a TCP host (host=...), not a Unix socket".into()),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let upstream = resolve(&host, port)?;
    probe("--postgres", upstream).await?;
    let proxy = FaultProxy::start(upstream)
        .await
        .map_err(|e| e.to_string())?;
    config.host("127.0.0.1").port(proxy.addr().port());
    if config.get_application_name().is_none() {
        config.application_name("poolguard-lab");
    }
    let manager = PostgresManager::builder_from_config(config)
        .build()
        .map_err(|e| e.to_string())?;
    // Fail now, with the server's own words, rather than in the middle of a scenario.
    manager
        .connect()
        .await
        .map_err(|e| format!("--postgres: {e}"))?;
    Ok(Real {
        manager: Arc::new(manager),
        proxy: Arc::new(proxy),
        name: "postgres",
    })
}

/// A Redis backend behind a new fault proxy.
pub(crate) async fn redis(url: &str) -> Result<Real<RedisManager>, String> {
    use redis::IntoConnectionInfo;
    let info = url
        .into_connection_info()
        .map_err(|e| format!("--redis `{url}`: {e}"))?;
    let (host, port) = match info.addr() {
        redis::ConnectionAddr::Tcp(h, p) => (h.clone(), *p),
        other => {
            return Err(format!(
                "--redis needs a redis:// TCP address, got {other:?}"
            ))
        }
    };
    let upstream = resolve(&host, port)?;
    probe("--redis", upstream).await?;
    let proxy = FaultProxy::start(upstream)
        .await
        .map_err(|e| e.to_string())?;
    let info = info.set_addr(redis::ConnectionAddr::Tcp(
        "127.0.0.1".into(),
        proxy.addr().port(),
    ));
    let manager = RedisManager::new(info).map_err(|e| e.to_string())?;
    manager
        .connect()
        .await
        .map_err(|e| format!("--redis: {e}"))?;
    Ok(Real {
        manager: Arc::new(manager),
        proxy: Arc::new(proxy),
        name: "redis",
    })
}

/// Runs scenario `name` against every real backend given on the command line; `None` when
/// `name` is not a connection scenario (the caller runs it as usual).
pub(crate) fn run(name: &str, ctx: &LabCtx) -> Option<Result<(), String>> {
    if !matches!(name, "conn-leak" | "db-outage" | "spike" | "config-traps") {
        return None;
    }
    let rt = match super::runtime() {
        Ok(rt) => rt,
        Err(e) => return Some(Err(e)),
    };
    Some(rt.block_on(async {
        if let Some(url) = &ctx.postgres {
            println!("--- against PostgreSQL ({url}), through a fault proxy; request: SELECT 1");
            run_on(name, || postgres(url)).await?;
        }
        if let Some(url) = &ctx.redis {
            println!("--- against Redis ({url}), through a fault proxy; request: PING");
            run_on(name, || redis(url)).await?;
        }
        Ok(())
    }))
}

/// Runs one scenario; each pool gets a fresh backend (and proxy) from `backend`, so the two
/// pools a table compares can run side by side (their faults are their own proxy's).
async fn run_on<M, F, Fut>(name: &str, backend: F) -> Result<(), String>
where
    M: Manager + Workload + Faults + Clone,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<M, String>>,
{
    match name {
        "conn-leak" => conn_leak::scenario(backend().await?).await?.print(),
        "db-outage" => db_outage::tables(backend, "proxy blackhole", false).await?,
        "spike" => {
            let mut t = Table::new([
                "pool (real server, its own connect latency)",
                "connections at end",
                "opened by spike",
                "request p50",
                "request p99",
                "all served in",
                "failed",
            ]);
            // Side by side would double the load on the server's connect path and skew the
            // figures this table compares; the rows are short, so they run one after the other.
            for (label, opens) in [
                ("poolguard (max_concurrent_opens 1, default)", 1),
                ("open one per waiter (max_concurrent_opens 50)", 50),
            ] {
                t.row(spike::spike(backend().await?, label, opens).await);
            }
            t.print();
        }
        "config-traps" => {
            let mut t = Table::new([
                "1. burst of 10 after 1.2 s idle",
                "idle at burst",
                "connects in burst",
                "request p50",
                "request p99",
            ]);
            let (a, b) = tokio::join!(
                async { config_traps::cold_start(backend().await?, 0).await },
                async { config_traps::cold_start(backend().await?, 5).await }
            );
            t.row(a?);
            t.row(b?);
            t.print();
            let mut t = Table::new([
                "2. first get after the node died (blackhole)",
                "caller got an answer after",
                "answer",
            ]);
            let (a, b) = tokio::join!(
                async { config_traps::dead_node(backend().await?, Duration::from_secs(3)).await },
                async {
                    config_traps::dead_node(backend().await?, Duration::from_millis(100)).await
                }
            );
            t.row(a?);
            t.row(b?);
            t.print();
            let mut t = Table::new([
                "3. 1.5 s transaction, abandon at 0.5 s, pool of 2",
                "long transaction",
                "other requests served",
                "abandoned by maintenance",
            ]);
            let (a, b) = tokio::join!(
                async { config_traps::long_transaction(backend().await?, true).await },
                async { config_traps::long_transaction(backend().await?, false).await }
            );
            t.row(a?);
            t.row(b?);
            t.print();
        }
        _ => {}
    }
    Ok(())
}
