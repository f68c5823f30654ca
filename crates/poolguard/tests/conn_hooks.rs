//! Lifecycle hooks: `after_connect`, `before_acquire`, `after_release`; each bounded by its
//! own timeout, a failure closes its connection, a panic or a hang is contained, counted in
//! stats and Prometheus, and named by the doctor.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use poolguard::conn::{
    CloseReason, Error, HookError, HookFault, HookFuture, HookName, Pool, PooledConnection,
};
use poolguard_testkit::sim::{Op, SimConn, SimManager};
use tokio::time::sleep;

/// What a test hook does on its next run.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Ok,
    Refuse,
    Panic,
    Hang,
    Slow(Duration),
}

#[derive(Clone)]
struct Switch {
    mode: Arc<Mutex<Mode>>,
    runs: Arc<AtomicUsize>,
    /// Connection ids the hook saw, in order.
    seen: Arc<Mutex<Vec<u64>>>,
}

impl Switch {
    fn new(mode: Mode) -> Self {
        Self {
            mode: Arc::new(Mutex::new(mode)),
            runs: Arc::new(AtomicUsize::new(0)),
            seen: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn runs(&self) -> usize {
        self.runs.load(SeqCst)
    }

    fn hook(&self) -> impl Fn(&mut SimConn) -> HookFuture<'_> + Send + Sync + 'static {
        let me = self.clone();
        move |conn: &mut SimConn| {
            let me = me.clone();
            Box::pin(async move {
                me.runs.fetch_add(1, SeqCst);
                me.seen.lock().unwrap().push(conn.id());
                let mode = *me.mode.lock().unwrap();
                match mode {
                    Mode::Ok => Ok(()),
                    Mode::Refuse => Err(HookError::new("refused by the test")),
                    Mode::Panic => panic!("hook panicked on purpose"),
                    Mode::Hang => std::future::pending().await,
                    Mode::Slow(d) => {
                        sleep(d).await;
                        Ok(())
                    }
                }
            })
        }
    }
}

fn settle() -> impl std::future::Future<Output = ()> {
    sleep(Duration::from_millis(50))
}

#[tokio::test(start_paused = true)]
async fn after_connect_runs_once_per_new_connection() {
    let m = SimManager::new();
    m.with_reset(false);
    let h = Switch::new(Mode::Ok);
    let p = Pool::builder(m.clone())
        .max_size(2)
        .after_connect(h.hook())
        .build()
        .expect("valid");
    for _ in 0..5 {
        drop(p.get().await.expect("get"));
    }
    let (a, b) = (p.get().await.expect("a"), p.get().await.expect("b"));
    drop((a, b));
    assert_eq!(h.runs(), 2, "two connections were opened, each hooked once");
    assert_eq!(m.created(), 2);
    let t = p.stats();
    assert_eq!(t.hook(HookName::AfterConnect).runs, 2);
    assert_eq!(t.hook(HookName::AfterConnect).faults(), 0);
    assert_eq!(t.connect_failures, 0);
}

#[tokio::test(start_paused = true)]
async fn a_failing_after_connect_discards_the_connection_and_counts_as_a_connect_failure() {
    let m = SimManager::new();
    let h = Switch::new(Mode::Refuse);
    let p = Pool::builder(m.clone())
        .max_size(2)
        .breaker_threshold(Some(2))
        .after_connect(h.hook())
        .build()
        .expect("valid");
    let e = p.get().await.expect_err("the hook refuses");
    match &e {
        Error::Hook(f) => {
            assert_eq!(f.hook, HookName::AfterConnect);
            assert_eq!(
                f.fault,
                HookFault::Refused(HookError::new("refused by the test"))
            );
        }
        other => panic!("expected a hook error, got {other:?}"),
    }
    assert_eq!(e.code(), "hook");
    assert!(e.to_string().contains("after_connect"), "{e}");
    settle().await;
    let t = p.stats();
    assert_eq!(t.connect_failures, 1);
    assert_eq!(t.created, 1, "the connection was opened...");
    assert_eq!(t.closed_by(CloseReason::Hook), 1, "...and closed");
    assert_eq!(m.alive(), 0);
    assert_eq!(p.status().size, 0, "its place was released");
    // A second failure opens the breaker (threshold 2): the hook counts for it.
    let _ = p.get().await;
    assert_eq!(p.stats().breaker_opened, 1);
    assert!(matches!(p.get().await, Err(Error::Unavailable { .. })));
    // The doctor names the failing connects and the hook.
    let text = format!("{:?}", p.doctor());
    assert!(text.contains("after_connect"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn a_panicking_or_hanging_after_connect_is_contained_and_reported() {
    let m = SimManager::new();
    let h = Switch::new(Mode::Panic);
    let p = Pool::builder(m.clone())
        .max_size(1)
        .breaker_threshold(None)
        .after_connect_timeout(Duration::from_millis(200))
        .after_connect(h.hook())
        .build()
        .expect("valid");
    match p.get().await {
        Err(Error::Hook(f)) => {
            assert!(
                matches!(&f.fault, HookFault::Panicked(msg) if msg.contains("on purpose")),
                "{f:?}"
            );
        }
        other => panic!("expected a contained panic, got {other:?}"),
    }
    h.set(Mode::Hang);
    let start = tokio::time::Instant::now();
    match p.get().await {
        Err(Error::Hook(f)) => {
            assert_eq!(f.fault, HookFault::TimedOut(Duration::from_millis(200)))
        }
        other => panic!("expected a hook timeout, got {other:?}"),
    }
    assert!(start.elapsed() >= Duration::from_millis(200));
    settle().await;
    let hs = p.stats().hook(HookName::AfterConnect);
    assert_eq!((hs.runs, hs.panicked, hs.timed_out), (2, 1, 1));
    assert_eq!(m.alive(), 0, "both connections closed");
    let findings = p.doctor();
    let f = findings
        .iter()
        .find(|f| f.code == "conn.hook-faults")
        .expect("a hook-faults finding");
    assert!(
        f.message
            .contains("after_connect panicked 1 and timed out 1 times"),
        "{f:?}"
    );
    // Healthy again: the pool serves.
    h.set(Mode::Ok);
    assert!(p.get().await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn before_acquire_rejections_close_the_connection_and_try_the_next_one() {
    let m = SimManager::new();
    m.with_reset(false);
    // Connects take time: a hook that refuses everything churns at the backend's pace.
    m.latency(Op::Connect, Duration::from_millis(10));
    let h = Switch::new(Mode::Ok);
    let p = Pool::builder(m.clone())
        .max_size(3)
        .max_concurrent_opens(3)
        .min_idle(3)
        .before_acquire(h.hook())
        .build()
        .expect("valid");
    p.ready(Duration::from_secs(1)).await.expect("warm");
    h.set(Mode::Refuse);
    // Every idle connection is refused in turn, then the get waits for a new one, which is
    // refused too... until the get's deadline.
    let got = p.get_timeout(Duration::from_millis(300)).await;
    assert!(matches!(got, Err(Error::Timeout(_))), "{got:?}");
    settle().await;
    let t = p.stats();
    assert!(t.hook(HookName::BeforeAcquire).refused >= 3, "{t:?}");
    assert_eq!(
        t.closed_by(CloseReason::Hook),
        t.hook(HookName::BeforeAcquire).refused,
        "each refused connection closed"
    );
    // The hook sees each connection once: none was handed out twice.
    let seen = h.seen.lock().unwrap().clone();
    let mut dedup = seen.clone();
    dedup.dedup();
    assert_eq!(seen, dedup);
    h.set(Mode::Ok);
    let c = p.get().await.expect("accepted");
    assert!(!c.is_marked_broken());
}

#[tokio::test(start_paused = true)]
async fn a_hanging_before_acquire_is_cut_at_its_timeout_and_the_next_connection_tried() {
    let m = SimManager::new();
    m.with_reset(false);
    let h = Switch::new(Mode::Hang);
    let p = Pool::builder(m.clone())
        .max_size(2)
        .before_acquire_timeout(Duration::from_millis(100))
        .acquire_timeout(Duration::from_secs(5))
        .before_acquire(h.hook())
        .build()
        .expect("valid");
    // The hook hangs on the first connection only.
    let h2 = h.clone();
    let flip = tokio::spawn(async move {
        while h2.runs() == 0 {
            tokio::task::yield_now().await;
        }
        h2.set(Mode::Ok);
    });
    let c = p.get().await.expect("the second connection is accepted");
    flip.await.unwrap();
    assert_eq!(h.runs(), 2);
    let hs = p.stats().hook(HookName::BeforeAcquire);
    assert_eq!((hs.timed_out, hs.panicked), (1, 0));
    drop(c);
    settle().await;
    assert_eq!(p.stats().closed_by(CloseReason::Hook), 1);
    assert!(p.doctor().iter().any(|f| f.code == "conn.hook-faults"));
}

#[tokio::test(start_paused = true)]
async fn a_before_acquire_cut_by_the_gets_deadline_is_not_blamed_on_the_hook() {
    let m = SimManager::new();
    let h = Switch::new(Mode::Slow(Duration::from_secs(1)));
    let p = Pool::builder(m.clone())
        .max_size(1)
        .before_acquire(h.hook())
        .build()
        .expect("valid");
    let got = p.get_timeout(Duration::from_millis(100)).await;
    assert!(matches!(got, Err(Error::Timeout(_))), "{got:?}");
    settle().await;
    let hs = p.stats().hook(HookName::BeforeAcquire);
    assert_eq!((hs.runs, hs.timed_out), (1, 0), "{hs:?}");
    assert_eq!(m.alive(), 0, "the half-hooked connection was closed");
    assert_eq!(p.status().size, 0);
}

#[tokio::test(start_paused = true)]
async fn after_release_keeps_or_closes_and_contains_panics() {
    let m = SimManager::new();
    m.with_reset(true);
    let h = Switch::new(Mode::Ok);
    let p = Pool::builder(m.clone())
        .max_size(1)
        .after_release(h.hook())
        .build()
        .expect("valid");
    let c = p.get().await.expect("get");
    let first = c.id();
    drop(c);
    settle().await;
    assert_eq!(h.runs(), 1);
    assert_eq!(m.resets(), 1, "the reset still runs after the hook");
    let c = p.get().await.expect("get");
    assert_eq!(c.id(), first, "kept");
    h.set(Mode::Refuse);
    drop(c);
    settle().await;
    assert_eq!(p.status().size, 0, "closed instead of kept");
    let c: PooledConnection<_> = p.get().await.expect("a new one");
    assert_ne!(c.id(), first);
    h.set(Mode::Panic);
    drop(c);
    settle().await;
    assert_eq!(p.status().size, 0);
    let t = p.stats();
    let hs = t.hook(HookName::AfterRelease);
    assert_eq!((hs.runs, hs.refused, hs.panicked), (3, 1, 1));
    assert_eq!(t.closed_by(CloseReason::Hook), 2);
    assert_eq!(m.alive(), 0);
    // Not run when the pool is closed: the connection is simply closed.
    let c = p.get().await.expect("get");
    p.close();
    drop(c);
    assert!(p.wait_closed(Duration::from_secs(1)).await);
    assert_eq!(p.stats().hook(HookName::AfterRelease).runs, 3);
}

#[tokio::test(start_paused = true)]
async fn hook_counters_are_exported_and_timeouts_validated() {
    let m = SimManager::new();
    let p = Pool::builder(m.clone())
        .name("hooked")
        .before_acquire(Switch::new(Mode::Ok).hook())
        .build()
        .expect("valid");
    drop(p.get().await.expect("get"));
    let text = p.prometheus();
    assert!(
        text.contains(r#"poolguard_conn_hook_runs_total{pool="hooked",hook="before_acquire"} 1"#),
        "{text}"
    );
    assert!(text.contains(
        r#"poolguard_conn_hook_failures_total{pool="hooked",hook="after_connect",outcome="panicked"} 0"#
    ));
    assert!(text.contains(r#"poolguard_conn_closed_total{pool="hooked",reason="hook"} 0"#));
    for (field, b) in [
        (
            "after_connect_timeout",
            Pool::builder(SimManager::new()).after_connect_timeout(Duration::ZERO),
        ),
        (
            "before_acquire_timeout",
            Pool::builder(SimManager::new()).before_acquire_timeout(Duration::ZERO),
        ),
        (
            "after_release_timeout",
            Pool::builder(SimManager::new())
                .after_release_timeout(Duration::from_secs(400 * 86_400)),
        ),
    ] {
        let e = b.build().expect_err("refused");
        assert_eq!(e.field, field, "{e}");
    }
}
