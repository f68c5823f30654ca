//! Real pools of every kind in the states the dashboard must show: an exhausted connection
//! pool with a waiter and a leaking holder, a connection pool whose backend is down (breaker
//! open) and whose name and error carry a password, an object pool after trims, a reclaimer
//! running a slow job.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use poolguard::conn::{self, Manager, PooledConnection};
use poolguard::diag::Registry;
use poolguard::object;
use poolguard::reclaim::Reclaimer;
use poolguard_testkit::sim::NoopManager;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The password that must never show.
pub const SECRET: &str = "hunter2";

/// A backend that is down, and says so with its connection string (password included).
#[derive(Debug, Clone, Copy)]
pub struct Chatty;

impl Manager for Chatty {
    type Connection = ();
    type Error = std::io::Error;

    async fn connect(&self) -> Result<(), std::io::Error> {
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            format!(
                "cannot reach postgres://billing:{SECRET}@10.0.0.7/billing (password={SECRET})"
            ),
        ))
    }

    async fn validate(&self, _conn: &mut ()) -> Result<(), std::io::Error> {
        Ok(())
    }
}

/// Waits for `cond` to hold, checking every 10 ms for at most 10 s (then panics naming `what`).
pub async fn until<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let wait = async {
        while !cond().await {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .is_err()
    {
        panic!("waited 10 s for {what}");
    }
}

/// The job a slow reclaimer runs: its drop blocks until released.
pub struct Blocker(pub std::sync::mpsc::Receiver<()>);

impl Drop for Blocker {
    fn drop(&mut self) {
        let _ = self.0.recv_timeout(Duration::from_secs(30));
    }
}

pub struct Scene {
    pub registry: Registry,
    pub orders: conn::Pool<NoopManager>,
    pub held: Vec<PooledConnection<NoopManager>>,
    pub waiter: JoinHandle<()>,
    pub billing: conn::Pool<Chatty>,
    pub buffers: object::Pool<Vec<u8>>,
    pub drops: Reclaimer,
    release: Option<std::sync::mpsc::Sender<()>>,
}

pub const ORDERS: &str = "orders-db";
pub const BILLING: &str = "billing password=hunter2";
pub const BUFFERS: &str = "http-buffers";
pub const DROPS: &str = "row-drops";
pub const SLOW_JOB: &str = "big-cache";

impl Scene {
    /// Builds every pool, registers it, and drives it into the state described above.
    pub async fn build() -> Scene {
        let registry = Registry::new();

        let orders = conn::Pool::builder(NoopManager)
            .name(ORDERS)
            .max_size(2)
            .acquire_timeout(Duration::from_secs(60))
            .leak_threshold(Some(Duration::from_millis(200)))
            .maintenance_interval(Duration::from_millis(50))
            .build()
            .expect("orders pool");
        registry.register(&orders);
        let held = vec![
            orders.get().await.expect("first"),
            orders.get().await.expect("second"),
        ];
        let waiting = orders.clone();
        let waiter = tokio::spawn(async move {
            if let Ok(c) = waiting.get().await {
                // Hold the handed-over connection until the task is aborted.
                let _c = c;
                std::future::pending::<()>().await;
            }
        });
        until("the waiter to queue", || async {
            orders.status().waiters == 1
        })
        .await;
        until("the holders to be reported as leaks", || async {
            orders.stats().leaks >= 2
        })
        .await;

        let billing = conn::Pool::builder(Chatty)
            .name(BILLING)
            .max_size(2)
            .acquire_timeout(Duration::from_millis(200))
            .breaker_threshold(Some(1))
            .breaker_backoff(Duration::from_secs(60))
            .breaker_max_backoff(Duration::from_secs(60))
            .build()
            .expect("billing pool");
        registry.register(&billing);
        let _ = billing.get().await;
        until("the breaker to open", || async {
            billing.status().breaker == conn::BreakerState::Open
        })
        .await;

        let buffers = object::Pool::builder(Vec::<u8>::new)
            .name(BUFFERS)
            .max_idle(64)
            .build()
            .expect("buffers pool");
        registry.register(&buffers);
        let mut out: Vec<_> = (0..24).map(|_| buffers.get()).collect();
        for (i, b) in out.iter_mut().enumerate() {
            b.reserve(4096 * (i + 1));
        }
        drop(out);
        for _ in 0..6 {
            drop(buffers.get());
        }
        buffers.trim();
        buffers.trim();

        let (events, mut slow) = mpsc::unbounded_channel();
        let drops = Reclaimer::builder()
            .name(DROPS)
            .workers(1)
            .slow_threshold(Duration::from_millis(20))
            .stuck_threshold(Duration::from_secs(60))
            .on_watchdog(move |e| {
                let _ = events.send(e.label);
            })
            .build()
            .expect("reclaimer");
        registry.register(&drops);
        let (release, blocked) = std::sync::mpsc::channel();
        drop(drops.defer_labelled(SLOW_JOB, Blocker(blocked)));
        for _ in 0..5 {
            drop(drops.defer(vec![0u8; 1024]));
        }
        let label = tokio::time::timeout(Duration::from_secs(10), slow.recv())
            .await
            .expect("the watchdog reports the slow job within 10 s");
        assert_eq!(label, Some(SLOW_JOB));

        Scene {
            registry,
            orders,
            held,
            waiter,
            billing,
            buffers,
            drops,
            release: Some(release),
        }
    }

    /// Lets the slow job finish.
    pub fn release_slow_job(&mut self) {
        if let Some(r) = self.release.take() {
            let _ = r.send(());
        }
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        self.release_slow_job();
        self.waiter.abort();
    }
}
