//! The object-pool and reclaimer scenarios, live. As in `conn.rs`, lines marked
//! `// live-site: NAME` are the call sites the doctor must name.

use std::sync::mpsc;
use std::time::Duration;

use poolguard::diag::Registry;
use poolguard::object::Pool;
use poolguard::reclaim::Reclaimer;

use super::Ready;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// `put-only`: a producer puts 8 KiB buffers it made itself; nobody gets.
pub(crate) async fn put_only(registry: Registry, mut ready: Ready) -> Result<(), String> {
    let pool = Pool::builder(|| Vec::<u8>::with_capacity(8192))
        .name("put-only")
        .max_idle_bytes(4 << 20)
        .build()
        .map_err(|e| e.to_string())?;
    registry.register(&pool);
    loop {
        for _ in 0..64 {
            let _ = pool.put(Vec::<u8>::with_capacity(8192));
        }
        let s = pool.stats();
        if !ready.is_set() && s.returns > 256 {
            ready.set(format!("{} puts for {} gets", s.returns, s.gets));
        }
        tokio::time::sleep(ms(10)).await;
    }
}

/// `oversized`: each request grows its pooled buffer to 1 MiB before returning it; the pool
/// keeps objects up to its 64 KiB default cap.
pub(crate) async fn oversized(registry: Registry, mut ready: Ready) -> Result<(), String> {
    let pool = Pool::builder(|| Vec::<u8>::with_capacity(1024))
        .name("bufs-64k-cap")
        .build()
        .map_err(|e| e.to_string())?;
    registry.register(&pool);
    loop {
        {
            let mut b = pool.get();
            b.resize(1 << 20, 0);
        }
        let s = pool.stats();
        if !ready.is_set() && s.discards.oversized >= 10 {
            ready.set(format!(
                "{} of {} returned buffers dropped as oversized",
                s.discards.oversized, s.returns
            ));
        }
        tokio::time::sleep(ms(10)).await;
    }
}

/// `long-holds`: sessions hold pooled buffers for 400 ms (the hold threshold is 200 ms).
pub(crate) async fn long_holds(registry: Registry, mut ready: Ready) -> Result<(), String> {
    let pool = Pool::builder(|| Vec::<u8>::with_capacity(4096))
        .name("session-bufs")
        .hold_threshold(ms(200))
        .build()
        .map_err(|e| e.to_string())?;
    registry.register(&pool);
    loop {
        {
            let mut b = pool.get(); // live-site: long-hold
            b.extend_from_slice(b"session state");
            tokio::time::sleep(ms(400)).await;
        }
        let s = pool.stats();
        if !ready.is_set() && s.long_holds >= 2 {
            ready.set(format!("{} checkouts held past 200 ms", s.long_holds));
        }
    }
}

/// A value whose drop blocks until its scenario ends (the sender is dropped).
struct Blocking(mpsc::Receiver<()>);

impl Drop for Blocking {
    fn drop(&mut self) {
        // Blocks this reclaimer worker: a finalizer waiting on something that never comes.
        let _ = self.0.recv();
    }
}

/// `finalizer-stall`: one drop blocks forever on a reclaimer worker while quick drops keep
/// coming; the watchdog names it stuck.
pub(crate) async fn finalizer_stall(registry: Registry, mut ready: Ready) -> Result<(), String> {
    let reclaimer = Reclaimer::builder()
        .name("finalizers")
        .workers(2)
        .slow_threshold(ms(100))
        .stuck_threshold(ms(300))
        .shutdown_timeout(ms(200))
        .build()
        .map_err(|e| e.to_string())?;
    registry.register(&reclaimer);
    // Released (dropped) when this driver ends.
    let (_release, blocked) = mpsc::channel::<()>();
    let _ = reclaimer.defer_labelled("socket-close", Blocking(blocked));
    loop {
        for _ in 0..10 {
            let _ = reclaimer.defer_labelled("buffer", vec![0u8; 4096]);
        }
        let s = reclaimer.stats();
        if !ready.is_set() && s.running_slow.iter().any(|j| j.stuck) {
            ready.set(format!(
                "a drop is stuck on a worker; {} quick drops completed",
                s.completed
            ));
        }
        tokio::time::sleep(ms(10)).await;
    }
}
