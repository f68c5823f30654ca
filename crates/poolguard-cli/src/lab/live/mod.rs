//! `poolguard lab --serve`: one lab scenario's pools run live and continuously, registered in
//! one [`Registry`] served by the diagnostics endpoint (the dashboard, `/pools`, `/metrics`),
//! so the dashboard and `poolguard doctor` can be watched and tested against each failure.
//!
//! Protocol on stdout (for people and tests): the first line is `serving http://ADDR/`;
//! the line `ready: NAME: ...` follows once the scenario's fault is established (the pools
//! show it from then on); the process stops on Ctrl-C, at end of input (unless stdin is
//! `/dev/null`), or after `--for`.

mod conn;
mod objects;

use std::future::Future;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::process::ExitCode;
use std::time::Duration;

use poolguard::diag::Registry;
use tokio::sync::oneshot;

/// Tells the world, once, that the scenario's fault is established.
pub(crate) struct Ready {
    name: &'static str,
    tx: Option<oneshot::Sender<String>>,
}

impl Ready {
    /// Marks the scenario ready (`what`: the state reached); later calls do nothing.
    pub(crate) fn set(&mut self, what: impl Into<String>) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(what.into());
        }
    }

    /// Whether [`set`](Self::set) was called.
    pub(crate) fn is_set(&self) -> bool {
        self.tx.is_none()
    }
}

type Driver = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// One live scenario: what it runs and what the doctor should name first.
pub(crate) struct LiveScenario {
    pub(crate) name: &'static str,
    pub(crate) about: &'static str,
    /// The finding code the doctor names first (`-`: none, the healthy control).
    pub(crate) cause: &'static str,
    start: fn(Registry, Ready) -> Driver,
}

/// Every live scenario, in `--list` order.
pub(crate) const LIVE: &[LiveScenario] = &[
    LiveScenario {
        name: "healthy",
        about: "the control: a warm connection pool under steady load and an object pool used as meant",
        cause: "-",
        start: |r, ready| Box::pin(conn::healthy(r, ready)),
    },
    LiveScenario {
        name: "conn-leak",
        about: "every 5th request keeps its connection: the pool runs dry; the leak names the site",
        cause: "conn.leak",
        start: |r, ready| Box::pin(conn::leak(r, ready)),
    },
    LiveScenario {
        name: "db-outage",
        about: "the database goes down under load and stays down; the breaker opens",
        cause: "conn.breaker-open",
        start: |r, ready| Box::pin(conn::outage(r, ready, true)),
    },
    LiveScenario {
        name: "db-outage-no-breaker",
        about: "the same outage with the breaker off: every get waits for a connect that fails",
        cause: "conn.connect-failures",
        start: |r, ready| Box::pin(conn::outage(r, ready, false)),
    },
    LiveScenario {
        name: "spike",
        about: "bursts of 16 requests after quiet periods: in use jumps from the warm 2 to 16",
        cause: "doctor.in-use-spike",
        start: |r, ready| Box::pin(conn::spike(r, ready)),
    },
    LiveScenario {
        name: "trap-min-idle-0",
        about: "min_idle 0 with a short idle timeout: every burst after a pause waits for connects",
        cause: "conn.cold-start",
        start: |r, ready| Box::pin(conn::min_idle_zero(r, ready)),
    },
    LiveScenario {
        name: "trap-abandon",
        about: "abandon_timeout shorter than a legitimate transaction: long transactions lose their slots",
        cause: "conn.abandon-on",
        start: |r, ready| Box::pin(conn::abandon(r, ready)),
    },
    LiveScenario {
        name: "trap-validation-timeout",
        about: "validation_timeout as long as acquire_timeout, then the node dies: every caller waits out a validation and times out",
        cause: "conn.slow-validation",
        start: |r, ready| Box::pin(conn::slow_validation(r, ready)),
    },
    LiveScenario {
        name: "nested-acquire",
        about: "each task holds a connection and takes a second from the same pool of 3: deadlock until the acquire timeout",
        cause: "conn.nested-acquire",
        start: |r, ready| Box::pin(conn::nested(r, ready)),
    },
    LiveScenario {
        name: "put-only",
        about: "a producer that only puts buffers it made itself into an object pool",
        cause: "object.only-puts",
        start: |r, ready| Box::pin(objects::put_only(r, ready)),
    },
    LiveScenario {
        name: "oversized",
        about: "requests grow pooled buffers to 1 MiB before returning them (golang/go#23199)",
        cause: "object.oversized",
        start: |r, ready| Box::pin(objects::oversized(r, ready)),
    },
    LiveScenario {
        name: "long-holds",
        about: "pooled buffers held for 400 ms by sessions (long-lived objects in a pool)",
        cause: "object.long-holds",
        start: |r, ready| Box::pin(objects::long_holds(r, ready)),
    },
    LiveScenario {
        name: "finalizer-stall",
        about: "one drop blocks forever on a reclaimer worker while quick drops keep coming",
        cause: "reclaim.stuck-now",
        start: |r, ready| Box::pin(objects::finalizer_stall(r, ready)),
    },
];

/// `--serve ADDR`: a socket address, or a bare port (on loopback).
pub(crate) fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    }
    if let Some(port) = s.strip_prefix("localhost:") {
        if let Ok(port) = port.parse::<u16>() {
            return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
        }
    }
    s.parse().map_err(|_| {
        format!("`--serve {s}`: not an address; give IP:PORT (e.g. 127.0.0.1:0, port 0 picks a free one) or a port")
    })
}

/// Whether stdin is `/dev/null` (a background job's): its end of input is not a stop signal.
fn stdin_is_null() -> bool {
    std::fs::canonicalize("/proc/self/fd/0")
        .map(|p| p == std::path::Path::new("/dev/null"))
        .unwrap_or(false)
}

/// Runs scenario `name` live on `addr` until Ctrl-C, end of input or `limit`.
pub(crate) fn run(addr: SocketAddr, name: &str, limit: Option<Duration>) -> ExitCode {
    let Some(sc) = LIVE.iter().find(|s| s.name == name) else {
        let known: Vec<&str> = LIVE.iter().map(|s| s.name).collect();
        eprintln!(
            "poolguard lab --serve: unknown scenario `{}`; live scenarios: {}",
            crate::redact::connection_string(name),
            known.join(", ")
        );
        return ExitCode::from(2);
    };
    let rt = match super::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("poolguard lab --serve: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = rt.block_on(serve(addr, sc, limit));
    // Drivers may have blocking threads (a stalled finalizer): do not wait for them.
    rt.shutdown_timeout(Duration::from_secs(1));
    code
}

async fn serve(addr: SocketAddr, sc: &LiveScenario, limit: Option<Duration>) -> ExitCode {
    let registry = Registry::new();
    let server = match poolguard_http::Server::bind(addr, registry.clone()).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("poolguard lab --serve: {e}");
            return ExitCode::FAILURE;
        }
    };
    let bound = server.local_addr();
    println!("serving http://{bound}/");
    if !is_loopback(bound.ip()) {
        eprintln!(
            "poolguard lab --serve: listening on {bound}, reachable from other machines (the pools' figures carry no secrets)"
        );
    }
    // End of input (a closed pipe, Ctrl-D) stops the run: read stdin on its own thread.
    let (eof_tx, eof_rx) = oneshot::channel::<()>();
    if !stdin_is_null() {
        std::thread::spawn(move || {
            let mut sink = [0u8; 256];
            let mut stdin = std::io::stdin();
            while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
            let _ = eof_tx.send(());
        });
    } else {
        // Keep the sender: never fires.
        std::mem::forget(eof_tx);
    }
    let (ready_tx, ready_rx) = oneshot::channel();
    let ready = Ready {
        name: sc.name,
        tx: Some(ready_tx),
    };
    let driver = tokio::spawn((sc.start)(registry, ready));
    let name = sc.name;
    let announce = async move {
        if let Ok(what) = ready_rx.await {
            println!("ready: {name}: {what}");
        }
        std::future::pending::<()>().await;
    };
    let stop = async {
        match limit {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    let mut driver = driver;
    let outcome = tokio::select! {
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = eof_rx => Ok(()),
        _ = stop => Ok(()),
        _ = announce => Ok(()),
        r = &mut driver => match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(format!("the scenario's task failed: {e}")),
        },
    };
    driver.abort();
    server.shutdown(Duration::from_secs(1)).await;
    match outcome {
        Ok(()) => {
            println!("stopped: {name}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("poolguard lab --serve: {name}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    ip.is_loopback()
}

impl std::fmt::Debug for Ready {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ready")
            .field("scenario", &self.name)
            .field("set", &self.is_set())
            .finish()
    }
}
