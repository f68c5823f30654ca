//! The watchdog: reports slow jobs while they run, retires and replaces stuck workers.
//!
//! # Stuck-worker policy: replace, within a hard thread limit
//!
//! A thread blocked inside a `Drop` cannot be interrupted from safe Rust, so "replacing" a
//! stuck worker necessarily means starting another thread while the stuck one finishes its
//! job. The watchdog therefore *retires* the stuck worker (it exits as soon as its job
//! returns and never takes another) and starts a replacement, so the number of workers that
//! drain the queue stays at `workers`. `max_threads` bounds the threads alive at once,
//! stuck ones included: a drop that never returns costs one thread each, up to the limit,
//! and never an unbounded number.
//!
//! Growing the pool instead (keeping the stuck thread as a worker) would leave the extra
//! thread behind after the stall and, when several jobs stall, would let the healthy
//! capacity drift with no owner deciding it. Replacement keeps the steady state exactly as
//! configured and makes the cost of a stall visible (`live_threads` above `workers`).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::queue::Shared;
use super::stats::{WatchdogEvent, WatchdogKind};
use super::worker;

/// Spawns the watchdog thread.
pub(crate) fn spawn(shared: &Arc<Shared>) -> std::io::Result<()> {
    let s = Arc::clone(shared);
    let h = std::thread::Builder::new()
        .name(format!("{}-watchdog", shared.cfg.name))
        .spawn(move || run(&s))?;
    shared.threads.lock().push((None, h));
    Ok(())
}

fn run(shared: &Arc<Shared>) {
    let period = shared.cfg.watchdog_period();
    let (slow, stuck) = (shared.cfg.slow_threshold, shared.cfg.stuck_threshold);
    let mut events = Vec::new();
    let mut to_spawn = Vec::new();
    loop {
        {
            let mut st = shared.state.lock();
            if st.stopping {
                return;
            }
            if st.slots.iter().all(|s| s.running.is_none()) {
                // Nothing to watch: park until a worker starts a job, exits, or shutdown.
                st.watchdog_parked = true;
                shared.watchdog_wake.wait(&mut st);
                st.watchdog_parked = false;
            } else {
                // Woken early only by shutdown or a worker exit; both are re-checked below.
                let _ = shared
                    .watchdog_wake
                    .wait_until(&mut st, crate::deadline::after(period));
            }
            if st.stopping {
                return;
            }
            let now = shared.now();
            let mut newly_stuck = 0;
            for (id, slot) in st.slots.iter_mut().enumerate() {
                let Some(r) = slot.running.as_mut() else {
                    continue;
                };
                let elapsed = now.saturating_duration_since(r.started);
                if elapsed >= slow && !r.slow_reported {
                    r.slow_reported = true;
                    events.push((WatchdogKind::Slow, r.label, id, elapsed));
                }
                if elapsed >= stuck && !r.stuck {
                    r.stuck = true;
                    slot.retired = true;
                    newly_stuck += 1;
                    events.push((
                        WatchdogKind::Stuck { replaced: false },
                        r.label,
                        id,
                        elapsed,
                    ));
                }
            }
            // Keep `workers` healthy workers, never more than `max_threads` threads.
            let mut missing = shared.cfg.workers.saturating_sub(st.healthy());
            while missing > 0 && st.live_threads < shared.cfg.max_threads {
                to_spawn.push(worker::reserve_slot(&mut st));
                missing -= 1;
            }
            let refused = newly_stuck.min(missing);
            let mut replaced = newly_stuck - refused;
            for e in events.iter_mut() {
                if let WatchdogKind::Stuck { replaced: r } = &mut e.0 {
                    if replaced > 0 {
                        *r = true;
                        replaced -= 1;
                    }
                }
            }
            let c = &shared.counters;
            c.replacements_refused.fetch_add(refused as u64, Relaxed);
        }
        for id in to_spawn.drain(..) {
            match worker::spawn(shared, id) {
                Ok(()) => {
                    shared.counters.replaced.fetch_add(1, Relaxed);
                }
                Err(e) => {
                    tracing::error!(reclaimer = %shared.cfg.name, error = %e,
                        "could not start a replacement worker");
                }
            }
        }
        for (kind, label, worker, elapsed) in events.drain(..) {
            report(shared, kind, label, worker, elapsed);
        }
    }
}

fn report(
    shared: &Shared,
    kind: WatchdogKind,
    label: &'static str,
    worker: usize,
    elapsed: std::time::Duration,
) {
    let c = &shared.counters;
    let cell = c.labels.get(label);
    match kind {
        WatchdogKind::Slow => {
            c.slow.fetch_add(1, Relaxed);
            cell.slow.fetch_add(1, Relaxed);
            tracing::warn!(reclaimer = %shared.cfg.name, job_label = label, worker, elapsed_s = elapsed.as_secs_f64(),
                "deferred drop is slow and still running");
        }
        WatchdogKind::Stuck { replaced } => {
            c.stuck.fetch_add(1, Relaxed);
            cell.stuck.fetch_add(1, Relaxed);
            tracing::warn!(reclaimer = %shared.cfg.name, job_label = label, worker, elapsed_s = elapsed.as_secs_f64(), replaced,
                "deferred drop is stuck; its worker is retired");
        }
    }
    if let Some(hook) = &shared.cfg.on_watchdog {
        let event = WatchdogEvent {
            reclaimer: shared.cfg.name.clone(),
            kind,
            label,
            worker,
            elapsed,
        };
        // A panicking hook must not take the watchdog down with it.
        if catch_unwind(AssertUnwindSafe(|| hook(&event))).is_err() {
            tracing::error!(reclaimer = %shared.cfg.name, "the on_watchdog hook panicked");
        }
    }
}
