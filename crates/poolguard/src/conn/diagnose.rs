//! [`Diagnose`] for the connection pool, over its public methods; and,
//! with the `serde` feature, `Serialize` for its status and totals (the field names of the
//! Rust types, durations in seconds, `closed` as a map from close reason to count).

use super::{Manager, Pool};
use crate::diag::{Diagnose, Finding, Kind, PrometheusWriter, Snapshot};

impl<M: Manager> Diagnose for Pool<M> {
    fn name(&self) -> String {
        self.config().name.clone()
    }
    fn kind(&self) -> Kind {
        Kind::ConnectionPool
    }
    fn snapshot(&self) -> Snapshot {
        Snapshot::ConnectionPool {
            status: self.status(),
            stats: self.stats(),
            holders: self.holders(),
        }
    }
    fn findings(&self) -> Vec<Finding> {
        self.doctor()
    }
    fn write_metrics(&self, w: &mut PrometheusWriter) {
        self.write_prometheus(w);
    }
}

#[cfg(feature = "serde")]
mod ser {
    use serde::ser::{SerializeMap, SerializeStruct};
    use serde::{Serialize, Serializer};

    use crate::conn::{
        BreakerState, CloseReason, Holder, HookName, HookStats, StatsSnapshot, Status,
    };

    /// `{"site": "file:line:column", "held": seconds, "leaked": bool}`.
    impl Serialize for Holder {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut st = s.serialize_struct("Holder", 3)?;
            st.serialize_field("site", &format_args!("{}", self.site))?;
            st.serialize_field("held", &self.held.as_secs_f64())?;
            st.serialize_field("leaked", &self.leaked)?;
            st.end()
        }
    }

    impl Serialize for BreakerState {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_str(self)
        }
    }

    impl Serialize for Status {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut st = s.serialize_struct("Status", 12)?;
            st.serialize_field("size", &self.size)?;
            st.serialize_field("max_size", &self.max_size)?;
            st.serialize_field("idle", &self.idle)?;
            st.serialize_field("in_use", &self.in_use)?;
            st.serialize_field("opening", &self.opening)?;
            st.serialize_field("waiters", &self.waiters)?;
            st.serialize_field("abandoned", &self.abandoned)?;
            st.serialize_field("closing", &self.closing)?;
            st.serialize_field("breaker", &self.breaker)?;
            st.serialize_field("closed", &self.closed)?;
            st.serialize_field("paused", &self.paused)?;
            st.serialize_field("last_error", &self.last_error)?;
            st.end()
        }
    }

    /// `closed` as `{reason: count}`.
    struct Closed<'a>(&'a StatsSnapshot);

    impl Serialize for Closed<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut m = s.serialize_map(Some(CloseReason::ALL.len()))?;
            for r in CloseReason::ALL {
                m.serialize_entry(r.as_str(), &self.0.closed_by(r))?;
            }
            m.end()
        }
    }

    /// `hooks` as `{hook: {runs, refused, panicked, timed_out}}`.
    struct Hooks<'a>(&'a StatsSnapshot);

    impl Serialize for Hooks<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut m = s.serialize_map(Some(HookName::ALL.len()))?;
            for h in HookName::ALL {
                m.serialize_entry(h.as_str(), &HookCounts(self.0.hook(h)))?;
            }
            m.end()
        }
    }

    struct HookCounts(HookStats);

    impl Serialize for HookCounts {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut st = s.serialize_struct("HookStats", 4)?;
            st.serialize_field("runs", &self.0.runs)?;
            st.serialize_field("refused", &self.0.refused)?;
            st.serialize_field("panicked", &self.0.panicked)?;
            st.serialize_field("timed_out", &self.0.timed_out)?;
            st.end()
        }
    }

    impl Serialize for StatsSnapshot {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut st = s.serialize_struct("StatsSnapshot", 40)?;
            st.serialize_field("gets", &self.gets)?;
            st.serialize_field("waited", &self.waited)?;
            st.serialize_field("waited_saturated", &self.waited_saturated)?;
            st.serialize_field("waited_cold", &self.waited_cold)?;
            st.serialize_field("waited_growing", &self.waited_growing)?;
            st.serialize_field("nested_acquires", &self.nested_acquires)?;
            st.serialize_field("timed_out", &self.timed_out)?;
            st.serialize_field("overloaded", &self.overloaded)?;
            st.serialize_field("unavailable", &self.unavailable)?;
            st.serialize_field("created", &self.created)?;
            st.serialize_field("connect_failures", &self.connect_failures)?;
            st.serialize_field("validations", &self.validations)?;
            st.serialize_field("validation_failures", &self.validation_failures)?;
            st.serialize_field("validation_timeouts", &self.validation_timeouts)?;
            st.serialize_field("resets", &self.resets)?;
            st.serialize_field("leaks", &self.leaks)?;
            st.serialize_field("unleaked", &self.unleaked)?;
            st.serialize_field("abandoned", &self.abandoned)?;
            st.serialize_field("close_timeouts", &self.close_timeouts)?;
            st.serialize_field("closes_done", &self.closes_done)?;
            st.serialize_field("breaker_opened", &self.breaker_opened)?;
            st.serialize_field("paused_refused", &self.paused_refused)?;
            st.serialize_field("soft_evictions", &self.soft_evictions)?;
            st.serialize_field("auto_soft_evicts", &self.auto_soft_evicts)?;
            st.serialize_field("closed", &Closed(self))?;
            st.serialize_field("hooks", &Hooks(self))?;
            st.serialize_field("detached", &self.detached)?;
            st.serialize_field("would_block", &self.would_block)?;
            st.serialize_field("credentials_calls", &self.credentials_calls)?;
            st.serialize_field("credentials_failures", &self.credentials_failures)?;
            st.serialize_field("rotations", &self.rotations)?;
            st.serialize_field("rotation_probe_failures", &self.rotation_probe_failures)?;
            st.serialize_field("auth_failures", &self.auth_failures)?;
            st.serialize_field("wait_time", &self.wait_time)?;
            st.serialize_field("hold_time", &self.hold_time)?;
            st.serialize_field("queue_time", &self.queue_time)?;
            st.serialize_field("checkout_validation_time", &self.checkout_validation_time)?;
            st.serialize_field("connect_time", &self.connect_time)?;
            st.serialize_field("validation_time", &self.validation_time)?;
            st.serialize_field("reset_time", &self.reset_time)?;
            st.end()
        }
    }
}
