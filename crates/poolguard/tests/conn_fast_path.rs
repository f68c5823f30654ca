//! The checkout and return fast paths hand over to the full flows without changing what
//! a get or a return does: each `Manager` check runs once per checkout and per return, a
//! dead idle connection is skipped, and a zero `get_timeout` still takes (after validating)
//! the stale idle connection its first pass finds.

use std::io;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use poolguard::conn::{Manager, Pool};
use tokio::time::sleep;

#[derive(Clone, Default)]
struct Counting {
    next: Arc<AtomicU32>,
    /// `is_broken` answers true for this connection id (0: none).
    dead: Arc<AtomicU32>,
    is_broken: Arc<AtomicUsize>,
    needs_reset: Arc<AtomicUsize>,
    validations: Arc<AtomicUsize>,
}

impl Manager for Counting {
    type Connection = u32;
    type Error = io::Error;
    async fn connect(&self) -> Result<u32, io::Error> {
        Ok(self.next.fetch_add(1, SeqCst) + 1)
    }
    async fn validate(&self, _: &mut u32) -> Result<(), io::Error> {
        self.validations.fetch_add(1, SeqCst);
        Ok(())
    }
    fn is_broken(&self, c: &mut u32) -> bool {
        self.is_broken.fetch_add(1, SeqCst);
        *c == self.dead.load(SeqCst)
    }
    fn needs_reset(&self, _: &mut u32) -> bool {
        self.needs_reset.fetch_add(1, SeqCst);
        false
    }
}

#[tokio::test(start_paused = true)]
async fn each_manager_check_runs_once_per_checkout_and_per_return() {
    let m = Counting::default();
    let p = Pool::builder(m.clone()).max_size(2).build().expect("valid");
    let n = 20; // more than the hold-time sampling period: sampled and unsampled returns
    for _ in 0..n {
        let c = p.get().await.expect("get");
        drop(c);
    }
    // The first get opened its connection (no checkout check); every later one took it idle.
    assert_eq!(m.is_broken.load(SeqCst), (n - 1) + n);
    assert_eq!(m.needs_reset.load(SeqCst), n);
    assert_eq!(p.stats().gets, n as u64);
    // A connection marked broken: one `is_broken` on its return, no `needs_reset`, closed.
    let mut c = p.get().await.expect("get");
    c.mark_broken();
    drop(c);
    assert_eq!(m.is_broken.load(SeqCst), (n - 1) + n + 1);
    assert_eq!(m.needs_reset.load(SeqCst), n);
    assert_eq!(p.status().size, 0);
}

#[tokio::test(start_paused = true)]
async fn a_dead_idle_connection_is_closed_and_the_next_idle_one_taken() {
    let m = Counting::default();
    let p = Pool::builder(m.clone()).max_size(2).build().expect("valid");
    let (a, b) = (p.get().await.expect("a"), p.get().await.expect("b"));
    let (ida, idb) = (*a, *b);
    drop(a);
    drop(b); // LIFO: `b` is taken first
    m.dead.store(idb, SeqCst);
    let c = p.get().await.expect("the other idle one");
    assert_eq!(*c, ida);
    assert_eq!(p.status().size, 1, "the dead one left the pool");
    assert_eq!(m.next.load(SeqCst), 2, "no connect was needed");
    assert_eq!(p.stats().gets, 3, "the retry is the same get");
}

#[tokio::test(start_paused = true)]
async fn a_zero_get_timeout_validates_and_takes_a_stale_idle_connection() {
    let m = Counting::default();
    let p = Pool::builder(m.clone())
        .max_size(1)
        .keepalive_interval(None)
        .build()
        .expect("valid");
    drop(p.get().await.expect("open one"));
    sleep(Duration::from_secs(1)).await; // past the validation bypass
    let c = p
        .get_timeout(Duration::ZERO)
        .await
        .expect("the first pass is not late");
    assert_eq!(m.validations.load(SeqCst), 1);
    drop(c);
    // Fresh again: taken without validating.
    let c = p.get_timeout(Duration::ZERO).await.expect("idle");
    assert_eq!(m.validations.load(SeqCst), 1);
    drop(c);
}

#[tokio::test(start_paused = true)]
async fn the_get_future_is_small_and_the_full_loop_still_serves_waiters() {
    let m = Counting::default();
    let p = Pool::builder(m.clone()).max_size(1).build().expect("valid");
    // The common get moves no large state machine around: the full loop (waiting,
    // validation, hooks) lives behind a box that only those gets allocate.
    let fut = p.get();
    assert!(
        std::mem::size_of_val(&fut) <= 64,
        "get's future is {} bytes",
        std::mem::size_of_val(&fut)
    );
    let held = fut.await.expect("opens one");
    // None idle: this get continues in the full loop and is served by the return.
    let waiter = p.get();
    tokio::pin!(waiter);
    assert!(futures_poll_once(&mut waiter).await.is_none(), "it waits");
    drop(held);
    let c = waiter.await.expect("handed the returned connection");
    assert_eq!(*c, 1);
    assert_eq!(p.stats().gets, 2);
}

/// Polls `f` once (`None`: still pending).
async fn futures_poll_once<F: std::future::Future + Unpin>(f: &mut F) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match std::pin::Pin::new(&mut *f).poll(cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        })
    })
    .await
}
