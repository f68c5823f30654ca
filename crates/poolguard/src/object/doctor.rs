//! The pool's doctor: reads a stats snapshot and names the misuses it shows.

use crate::diag::{Finding, Severity};

use super::stats::{human_bytes, PoolStats};
use super::Config;

/// Below this many gets, rates are noise and no rate-based finding is made.
const MIN_GETS: u64 = 100;

pub(crate) fn diagnose(s: &PoolStats, c: &Config) -> Vec<Finding> {
    let mut out = Vec::new();
    let pool = s.name.as_str();
    if s.long_holds > 0 {
        let sites: Vec<String> = s
            .recent_long_holds
            .iter()
            .rev()
            .take(3)
            .map(|h| format!("{} held {:.1?}", h.site, h.held))
            .collect();
        out.push(Finding::new(
            Severity::Warning,
            "object.long-holds",
            pool,
            format!(
                "{} checkouts were held past {:?} (e.g. {})",
                s.long_holds,
                c.hold_threshold.unwrap_or_default(),
                sites.join("; ")
            ),
            "long-lived objects should be owned, not pooled: allocate them directly or detach() them",
        ));
    }
    if s.held_now_count > 0 {
        // Group by call site: a leak shows as one site with many checkouts still out.
        let mut sites: Vec<(
            &'static std::panic::Location<'static>,
            usize,
            std::time::Duration,
        )> = Vec::new();
        for h in &s.held_now {
            match sites.iter_mut().find(|(site, _, _)| *site == h.site) {
                Some((_, n, longest)) => {
                    *n += 1;
                    *longest = (*longest).max(h.held);
                }
                None => sites.push((h.site, 1, h.held)),
            }
        }
        let named: Vec<String> = sites
            .iter()
            .map(|(site, n, longest)| format!("{site} x{n} (longest {longest:.1?})"))
            .collect();
        out.push(Finding::new(
            Severity::Warning,
            "object.held-now",
            pool,
            format!(
                "{} checkouts are out past {:?} right now, not returned: {}",
                s.held_now_count,
                c.hold_threshold.unwrap_or_default(),
                named.join("; ")
            ),
            "an object held this long is owned, not pooled, and may never come back: allocate it directly or detach() it, and check that site for a leaked guard",
        ));
    }
    let returns = s.returns.max(1);
    if s.discards.oversized > 0 && s.discards.oversized * 100 >= returns {
        out.push(Finding::new(
            Severity::Warning,
            "object.oversized",
            pool,
            format!(
                "{} of {} returned objects exceeded max_object_bytes ({}) and were dropped",
                s.discards.oversized,
                s.returns,
                human_bytes(c.max_object_bytes)
            ),
            "callers grow pooled objects past the cap: shrink them before returning, use a separate pool for large objects, or raise max_object_bytes",
        ));
    }
    if s.discards.refused_by_reset > 0 {
        let sev = if s.discards.reset_panics > 0 {
            Severity::Warning
        } else {
            Severity::Info
        };
        out.push(Finding::new(
            sev,
            "object.reset-refused",
            pool,
            format!(
                "{} objects were refused by Recycle::reset ({} panicked)",
                s.discards.refused_by_reset, s.discards.reset_panics
            ),
            "check the Recycle implementation: a reset that refuses often makes the pool a slow allocator",
        ));
    }
    if s.gets >= MIN_GETS && s.hit_rate() < 0.5 {
        out.push(Finding::new(
            Severity::Warning,
            "object.low-hit-rate",
            pool,
            format!(
                "only {:.0}% of {} gets were served from the pool ({} factory calls)",
                s.hit_rate() * 100.0,
                s.gets,
                s.misses
            ),
            "objects are detached, dropped as oversized or over cap, or trimmed before reuse: check discards, raise max_idle, or trim less often",
        ));
    }
    if s.returns > s.gets.saturating_mul(2).max(MIN_GETS) {
        out.push(Finding::new(
            Severity::Warning,
            "object.only-puts",
            pool,
            format!(
                "{} returns for {} gets: objects made elsewhere are put into the pool faster than it hands them out",
                s.returns, s.gets
            ),
            "put() only objects that came from get(); a producer that only returns makes the pool a bounded drop site",
        ));
    }
    let l = &s.layout;
    if l.local_slots > 0 && s.skipped_local >= MIN_GETS && s.skipped_local * 2 >= returns {
        // The objects' typical size, as far as the pool can tell: what it retains now.
        let typical = s.retained_bytes.checked_div(s.retained_objects);
        let need = typical
            .map(|t| {
                format!(
                    " (cells of {} need max_idle_bytes of at least {})",
                    human_bytes(t),
                    human_bytes(t.saturating_mul(c.max_idle.min(l.local_slots.saturating_mul(4))))
                )
            })
            .unwrap_or_default();
        out.push(Finding::new(
            Severity::Warning,
            "object.local-tier-too-small",
            pool,
            format!(
                "{} of {} returns were larger than a per-thread cell's byte share ({}; {} cells, {} shards of {} objects / {}), so they skipped the per-thread tier and took a shard lock",
                s.skipped_local,
                s.returns,
                human_bytes(l.cell_bytes),
                l.local_slots,
                l.shards,
                l.shard_objects,
                human_bytes(l.shard_bytes),
            ),
            format!(
                "a cell holds max(max_idle_bytes / 4 / local_slots, max_idle_bytes / max_idle) bytes, at most max_object_bytes: raise max_idle_bytes{need}, or lower local_slots"
            ),
        ));
    }
    if s.discards.over_cap * 10 > returns && s.discards.over_cap >= MIN_GETS {
        out.push(Finding::new(
            Severity::Info,
            "object.over-cap",
            pool,
            format!(
                "{} of {} returns were refused at the caps (max_idle {}, max_idle_bytes {})",
                s.discards.over_cap,
                s.returns,
                c.max_idle,
                human_bytes(c.max_idle_bytes)
            ),
            "raise max_idle / max_idle_bytes if the refused objects are costly to rebuild",
        ));
    }
    out
}
