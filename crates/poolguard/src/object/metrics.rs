//! The pool's figures as Prometheus text (metric names `poolguard_object_*`, label `pool`).

use super::stats::PoolStats;
use crate::diag::PrometheusWriter;

impl PoolStats {
    /// Appends this snapshot to a Prometheus text writer (metric names `poolguard_object_*`,
    /// label `pool`).
    pub fn write_prometheus(&self, w: &mut PrometheusWriter) {
        let pool: &[(&str, &str)] = &[("pool", &self.name)];
        w.counter("poolguard_object_gets_total", "Checkouts.", pool, self.gets);
        for (tier, v) in [
            ("local", self.hits_local),
            ("shared", self.hits_shared),
            ("victim", self.hits_victim),
        ] {
            w.counter(
                "poolguard_object_hits_total",
                "Gets served from the pool, by tier.",
                &[("pool", &self.name), ("tier", tier)],
                v,
            );
        }
        w.counter(
            "poolguard_object_misses_total",
            "Gets that called the factory.",
            pool,
            self.misses,
        );
        w.counter(
            "poolguard_object_returns_total",
            "Objects returned.",
            pool,
            self.returns,
        );
        w.counter(
            "poolguard_object_skipped_local_total",
            "Returns larger than a per-thread cell's byte share (went to the shared stacks).",
            pool,
            self.skipped_local,
        );
        let l = &self.layout;
        for (tier, objects, bytes) in [
            ("cell", usize::from(l.local_slots > 0), l.cell_bytes),
            ("shard", l.shard_objects, l.shard_bytes),
        ] {
            w.gauge(
                "poolguard_object_tier_cap_objects",
                "Objects one unit of a tier may hold (a per-thread cell, a shard).",
                &[("pool", &self.name), ("tier", tier)],
                objects as f64,
            );
            w.gauge(
                "poolguard_object_tier_cap_bytes",
                "Heap bytes one unit of a tier may hold (a per-thread cell, a shard).",
                &[("pool", &self.name), ("tier", tier)],
                bytes as f64,
            );
        }
        let d = &self.discards;
        for (reason, v) in [
            ("oversized", d.oversized),
            ("reset", d.refused_by_reset),
            ("over_cap", d.over_cap),
            ("evicted", d.evicted_by_budget),
        ] {
            w.counter(
                "poolguard_object_discards_total",
                "Objects dropped instead of kept, by reason.",
                &[("pool", &self.name), ("reason", reason)],
                v,
            );
        }
        w.counter(
            "poolguard_object_trims_total",
            "Trim cycles.",
            pool,
            self.trims,
        );
        w.counter(
            "poolguard_object_reclaim_deferred_total",
            "Freed objects dropped on the reclaimer's workers.",
            pool,
            self.reclaim_deferred,
        );
        w.counter(
            "poolguard_object_reclaim_refused_total",
            "Freed objects the reclaimer refused, dropped on the caller.",
            pool,
            self.reclaim_refused,
        );
        w.counter(
            "poolguard_object_long_holds_total",
            "Checkouts held past the threshold.",
            pool,
            self.long_holds,
        );
        w.gauge(
            "poolguard_object_held_past_threshold",
            "Checkouts held past the hold threshold right now.",
            pool,
            self.held_now_count as f64,
        );
        // Per tier only (no unlabelled total in the same family, so `sum by (pool)` is the
        // pool's total).
        for (tier, r) in self.retained_by_tier.tiers() {
            w.gauge(
                "poolguard_object_retained_objects",
                "Objects retained now, by tier.",
                &[("pool", &self.name), ("tier", tier)],
                r.objects as f64,
            );
        }
        for (tier, r) in self.retained_by_tier.tiers() {
            w.gauge(
                "poolguard_object_retained_bytes",
                "Heap bytes retained now, by tier.",
                &[("pool", &self.name), ("tier", tier)],
                r.bytes as f64,
            );
        }
        w.gauge(
            "poolguard_object_peak_bytes",
            "Most heap bytes seen retained.",
            pool,
            self.peak_bytes as f64,
        );
        w.histogram(
            "poolguard_object_trim_pause_seconds",
            "Longest lock hold of each trim cycle.",
            pool,
            &self.trim_pauses,
        );
    }
}
