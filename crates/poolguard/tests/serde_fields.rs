//! The JSON field names of every engine's snapshot and of a doctor finding are pinned: a
//! rename, a removal or an addition changes a list below (dashboards and scripts read them).
#![cfg(feature = "serde")]

use std::collections::BTreeSet;
use std::time::Duration;

use poolguard::conn;
use poolguard::diag::{Diagnose, Finding, Severity};
use poolguard::object;
use poolguard::reclaim::Reclaimer;
use poolguard_testkit::sim::NoopManager;
use serde_json::Value;

/// The keys of a histogram snapshot, in every engine.
const HISTOGRAM: [&str; 7] = ["count", "max", "mean", "p50", "p95", "p99", "sum"];

/// Every key path of `v`: `a`, `a.b`; array elements as `a[]` (the first one's keys); a
/// histogram (exactly the [`HISTOGRAM`] keys) as `a=histogram`, its keys not repeated.
fn paths(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) if m.keys().map(String::as_str).eq(HISTOGRAM) => {
            out.remove(prefix);
            out.insert(format!("{prefix}=histogram"));
        }
        Value::Object(m) => {
            for (k, v) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                out.insert(p.clone());
                paths(v, &p, out);
            }
        }
        Value::Array(a) => {
            if let Some(first) = a.first() {
                paths(first, &format!("{prefix}[]"), out);
            }
        }
        _ => {}
    }
}

fn keys(v: &Value) -> Vec<String> {
    let mut out = BTreeSet::new();
    paths(v, "", &mut out);
    out.into_iter().collect()
}

fn pinned(got: &[String], want: &str) {
    let want: Vec<String> = want.split_whitespace().map(str::to_owned).collect();
    assert_eq!(
        got,
        want.as_slice(),
        "field names changed; got:\n{}",
        got.join("\n")
    );
}

#[tokio::test]
async fn snapshot_and_finding_field_names_are_pinned() {
    let o = object::Pool::builder(Vec::<u8>::new)
        .name("serde-fields-object")
        .build()
        .expect("object pool");
    drop(o.get());
    let _ = o.trim();
    let r = Reclaimer::builder()
        .name("serde-fields-reclaim")
        .build()
        .expect("reclaimer");
    r.defer_labelled("buffers", vec![0u8; 16]);
    r.flush(Duration::from_secs(10)).expect("flushed");
    let c = conn::Pool::builder(NoopManager)
        .name("serde-fields-conn")
        .build()
        .expect("conn pool");
    drop(c.get().await.expect("a connection"));
    // One connection still out, so its holder entry is pinned too.
    let _held = c.get().await.expect("a connection");

    let json = |d: &dyn Diagnose| serde_json::to_value(d.snapshot()).expect("serializes");
    pinned(
        &keys(&json(&o)),
        "
        object_pool
        object_pool.detached
        object_pool.discards
        object_pool.discards.evicted_by_budget
        object_pool.discards.over_cap
        object_pool.discards.oversized
        object_pool.discards.refused_by_reset
        object_pool.discards.reset_panics
        object_pool.gets
        object_pool.held_now
        object_pool.held_now_count
        object_pool.hits_local
        object_pool.hits_shared
        object_pool.hits_victim
        object_pool.layout
        object_pool.layout.cell_bytes
        object_pool.layout.local_slots
        object_pool.layout.shard_bytes
        object_pool.layout.shard_objects
        object_pool.layout.shards
        object_pool.layout.shared_bytes
        object_pool.layout.shared_objects
        object_pool.long_holds
        object_pool.misses
        object_pool.name
        object_pool.peak_bytes
        object_pool.peak_objects
        object_pool.recent_long_holds
        object_pool.recent_trims
        object_pool.recent_trims[].after
        object_pool.recent_trims[].before
        object_pool.recent_trims[].cause
        object_pool.recent_trims[].cycle
        object_pool.recent_trims[].deferred
        object_pool.recent_trims[].freed
        object_pool.recent_trims[].freed_bytes
        object_pool.recent_trims[].max_pause
        object_pool.recent_trims[].pool
        object_pool.recent_trims[].took
        object_pool.reclaim_deferred
        object_pool.reclaim_refused
        object_pool.retained_by_tier
        object_pool.retained_by_tier.local
        object_pool.retained_by_tier.local.bytes
        object_pool.retained_by_tier.local.objects
        object_pool.retained_by_tier.shared
        object_pool.retained_by_tier.shared.bytes
        object_pool.retained_by_tier.shared.objects
        object_pool.retained_by_tier.victim
        object_pool.retained_by_tier.victim.bytes
        object_pool.retained_by_tier.victim.objects
        object_pool.retained_bytes
        object_pool.retained_objects
        object_pool.returns
        object_pool.skipped_local
        object_pool.trim_freed
        object_pool.trim_pauses=histogram
        object_pool.trims
        object_pool.type_name
        ",
    );
    pinned(
        &keys(&json(&r)),
        "
        reclaimer
        reclaimer.capacity
        reclaimer.closes_cancelled
        reclaimer.closes_completed
        reclaimer.closes_in_flight
        reclaimer.closes_started
        reclaimer.closes_timed_out
        reclaimer.completed
        reclaimer.deferred
        reclaimer.handed_back
        reclaimer.inline_drops
        reclaimer.labels
        reclaimer.labels[].closes_timed_out
        reclaimer.labels[].completed
        reclaimer.labels[].handed_back
        reclaimer.labels[].inline_drops
        reclaimer.labels[].label
        reclaimer.labels[].panicked
        reclaimer.labels[].peak_queued
        reclaimer.labels[].queue_wait=histogram
        reclaimer.labels[].queued
        reclaimer.labels[].run_time=histogram
        reclaimer.labels[].slow
        reclaimer.labels[].stuck
        reclaimer.live_threads
        reclaimer.name
        reclaimer.panicked
        reclaimer.peak_queued
        reclaimer.queue_wait=histogram
        reclaimer.queued
        reclaimer.replacements_refused
        reclaimer.run_time=histogram
        reclaimer.running
        reclaimer.running_slow
        reclaimer.shutdown
        reclaimer.slow
        reclaimer.spawn_failures
        reclaimer.stuck
        reclaimer.waiting_flushes
        reclaimer.workers_replaced
        ",
    );
    pinned(
        &keys(&json(&c)),
        "
        connection_pool
        connection_pool.holders
        connection_pool.holders[].held
        connection_pool.holders[].leaked
        connection_pool.holders[].site
        connection_pool.stats
        connection_pool.stats.abandoned
        connection_pool.stats.auth_failures
        connection_pool.stats.auto_soft_evicts
        connection_pool.stats.breaker_opened
        connection_pool.stats.checkout_validation_time=histogram
        connection_pool.stats.close_timeouts
        connection_pool.stats.closed
        connection_pool.stats.closed.abandoned
        connection_pool.stats.closed.broken
        connection_pool.stats.closed.evicted
        connection_pool.stats.closed.hook
        connection_pool.stats.closed.idle
        connection_pool.stats.closed.lifetime
        connection_pool.stats.closed.pool_closed
        connection_pool.stats.closed.reset
        connection_pool.stats.closed.rotated
        connection_pool.stats.closed.surplus
        connection_pool.stats.closed.validation
        connection_pool.stats.closes_done
        connection_pool.stats.connect_failures
        connection_pool.stats.connect_time=histogram
        connection_pool.stats.created
        connection_pool.stats.credentials_calls
        connection_pool.stats.credentials_failures
        connection_pool.stats.detached
        connection_pool.stats.gets
        connection_pool.stats.hold_time=histogram
        connection_pool.stats.hooks
        connection_pool.stats.hooks.after_connect
        connection_pool.stats.hooks.after_connect.panicked
        connection_pool.stats.hooks.after_connect.refused
        connection_pool.stats.hooks.after_connect.runs
        connection_pool.stats.hooks.after_connect.timed_out
        connection_pool.stats.hooks.after_release
        connection_pool.stats.hooks.after_release.panicked
        connection_pool.stats.hooks.after_release.refused
        connection_pool.stats.hooks.after_release.runs
        connection_pool.stats.hooks.after_release.timed_out
        connection_pool.stats.hooks.before_acquire
        connection_pool.stats.hooks.before_acquire.panicked
        connection_pool.stats.hooks.before_acquire.refused
        connection_pool.stats.hooks.before_acquire.runs
        connection_pool.stats.hooks.before_acquire.timed_out
        connection_pool.stats.leaks
        connection_pool.stats.nested_acquires
        connection_pool.stats.overloaded
        connection_pool.stats.paused_refused
        connection_pool.stats.queue_time=histogram
        connection_pool.stats.reset_time=histogram
        connection_pool.stats.resets
        connection_pool.stats.rotation_probe_failures
        connection_pool.stats.rotations
        connection_pool.stats.soft_evictions
        connection_pool.stats.timed_out
        connection_pool.stats.unavailable
        connection_pool.stats.unleaked
        connection_pool.stats.validation_failures
        connection_pool.stats.validation_time=histogram
        connection_pool.stats.validation_timeouts
        connection_pool.stats.validations
        connection_pool.stats.wait_time=histogram
        connection_pool.stats.waited
        connection_pool.stats.waited_cold
        connection_pool.stats.waited_growing
        connection_pool.stats.waited_saturated
        connection_pool.stats.would_block
        connection_pool.status
        connection_pool.status.abandoned
        connection_pool.status.breaker
        connection_pool.status.closed
        connection_pool.status.closing
        connection_pool.status.idle
        connection_pool.status.in_use
        connection_pool.status.last_error
        connection_pool.status.max_size
        connection_pool.status.opening
        connection_pool.status.paused
        connection_pool.status.size
        connection_pool.status.waiters
        ",
    );
    let f = Finding::new(Severity::Warning, "x.code", "p", "message", "fix");
    pinned(
        &keys(&serde_json::to_value(&f).expect("serializes")),
        "
        code
        fix
        message
        pool
        severity
        ",
    );
    // A histogram's own keys (every `=histogram` above), durations in seconds.
    let h = &json(&c)["connection_pool"]["stats"]["connect_time"];
    let hk: Vec<&str> = h
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(hk, HISTOGRAM);
    assert!(h["sum"].is_f64() && h["count"].is_u64(), "{h}");
}
