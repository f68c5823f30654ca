//! The maintenance task: owned by the pool, holds only a weak reference to it, and stops
//! when the pool is closed or dropped.
//!
//! Each pass, under one short lock: leak and abandon scans over the holders; retirement of
//! idle connections past their (jittered) lifetime, or idle timeout while above `min_idle`;
//! selection of idle connections due for keepalive validation; retirement of idle
//! connections opened with rotated-out credentials (paced, with their replacements); opens
//! for `min_idle` and breaker probes. The slow parts (closes, validations, connects) then run on their own
//! bounded tasks, so a hanging backend never stalls maintenance.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};

use tokio::time::{Instant, MissedTickBehavior};

use super::cancel::Detached;
use super::engine::Shared;
use super::stats::CloseReason;
use super::Manager;

pub(crate) fn spawn<M: Manager>(shared: &Arc<Shared<M>>) {
    let weak: Weak<Shared<M>> = Arc::downgrade(shared);
    let shutdown = Arc::clone(&shared.shutdown);
    let period = shared.cfg.maintenance_interval;
    shared.rt.spawn(async move {
        let mut tick = tokio::time::interval_at(crate::deadline::after_tokio(period), period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let stop = shutdown.notified();
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop => {}
            }
            let Some(shared) = weak.upgrade() else {
                return;
            };
            if shared.lock().is_closed() {
                tracing::debug!(pool = %shared.cfg.name, "maintenance stopped");
                return;
            }
            run_pass(&shared, Instant::now());
        }
    });
}

/// One maintenance pass, run by the maintenance task every `maintenance_interval`.
pub(crate) fn run_pass<M: Manager>(shared: &Arc<Shared<M>>, now: Instant) {
    let cfg = &shared.cfg;
    let (scan, retire, keepalive, opens) = {
        let mut st = shared.lock();
        st.coarse = st.coarse.max(now);
        if st.is_closed() {
            return;
        }
        let scan = st.scan_holders(now, cfg.leak_threshold, cfg.abandon_timeout);
        let min_idle = st.min_idle();
        let (mut retire, keepalive) = st.retire_idle(now, min_idle, shared.bypass);
        // Old-credential connections that came back idle since the last retirement.
        retire.extend(
            st.retire_old_idle()
                .into_iter()
                .map(|c| (c, CloseReason::Rotated)),
        );
        shared.begin_closes(retire.len());
        let opens = shared.plan(&mut st, now, min_idle);
        (scan, retire, keepalive, opens)
    };
    for (site, held) in &scan.leaks {
        shared.stats.leaks.fetch_add(1, Relaxed);
        let threshold = cfg.leak_threshold.unwrap_or_default();
        tracing::warn!(pool = %cfg.name, %site, held_s = held.as_secs_f64(), threshold_s = threshold.as_secs_f64(), "connection leak: held {held:.1?} so far, past leak_threshold ({threshold:?}), still out");
    }
    for (site, held) in &scan.abandoned {
        shared.stats.abandoned.fetch_add(1, Relaxed);
        tracing::warn!(pool = %cfg.name, %site, held_s = held.as_secs_f64(), "connection abandoned: no longer counted against max_size; it will be closed when it comes back");
    }
    for (c, reason) in retire {
        shared.close_conn(c, reason);
    }
    for c in keepalive {
        let mut d = Detached::new(Arc::clone(shared), c, CloseReason::Validation);
        let s = Arc::clone(shared);
        shared.rt.spawn(async move {
            if s.check(&mut d, s.cfg.validation_timeout).await {
                let now = Instant::now();
                let mut conn = d.take();
                conn.checked_at(now, s.bypass);
                s.deliver(conn, now);
            }
        });
    }
    shared.spawn_opens(opens);
}
