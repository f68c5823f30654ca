//! The metric reference: every Prometheus family the pools export, its type and labels.
//!
//! Alert rules and dashboards can rely on these names; a rename is a breaking change.
//!
//! # Format
//!
//! Prometheus text exposition 0.0.4 (serve it with [`CONTENT_TYPE`](super::CONTENT_TYPE)):
//! one `# HELP` and one `# TYPE` line per family, every series of a family together, whatever
//! number of pools of whatever kind one [`PrometheusWriter`](super::PrometheusWriter) (or
//! [`render`](super::render)) takes.
//!
//! Durations are histograms in seconds: cumulative `_bucket{le="..."}`, `_sum` and `_count`,
//! with the fixed buckets [`BUCKET_EDGES`](super::BUCKET_EDGES):
//! 0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
//! 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, `+Inf`. The bucket counts are exact:
//! the log-linear buckets the quantiles come from are split at every edge that falls inside
//! one, so each counter lies wholly within one exported bucket (an observation equal to an
//! edge is counted in that edge's bucket).
//!
//! Labels: every series carries `pool="<name>"` (object and connection pools) or
//! `reclaimer="<name>"`, the name given to the builder (or the distinct default). No label
//! is named `job` or `instance` (Prometheus' target labels), `le` (except on buckets) or
//! `quantile`.
//!
//! # Connection pool (`poolguard_conn_*`, label `pool`)
//!
//! Gauges:
//!
//! | family | meaning |
//! |---|---|
//! | `poolguard_conn_size` | connections counted against `max_size` (idle, in use, opening) |
//! | `poolguard_conn_max_size` | the `max_size` limit |
//! | `poolguard_conn_min_idle` | the `min_idle` setting |
//! | `poolguard_conn_idle` | idle connections |
//! | `poolguard_conn_in_use` | checked-out connections (abandoned ones excluded) |
//! | `poolguard_conn_opening` | connections being opened |
//! | `poolguard_conn_waiters` | callers waiting in `get` |
//! | `poolguard_conn_abandoned` | abandoned connections still held |
//! | `poolguard_conn_paused` | 1 while the pool is paused (gets wait for resume or fail fast), else 0 |
//! | `poolguard_conn_breaker_state{state="closed\|open\|half_open"}` | 1 for the current state, 0 for the others |
//!
//! Counters:
//!
//! | family | meaning |
//! |---|---|
//! | `poolguard_conn_gets_total` | calls to `get` |
//! | `poolguard_conn_waited_total` | gets that waited |
//! | `poolguard_conn_waited_saturated_total` | gets that waited with `size` at `max_size` |
//! | `poolguard_conn_waited_cold_total` | gets that waited on an empty pool or one below `min_idle` |
//! | `poolguard_conn_waited_growing_total` | gets that waited for a new connection while the pool had room |
//! | `poolguard_conn_nested_acquires_total` | gets that waited while their own task already held a connection of this pool (a nested acquire) |
//! | `poolguard_conn_timeouts_total` | gets that hit the acquire timeout |
//! | `poolguard_conn_overloaded_total` | gets refused past `max_waiters` |
//! | `poolguard_conn_unavailable_total` | gets refused by the open breaker |
//! | `poolguard_conn_created_total` | connections opened |
//! | `poolguard_conn_connect_failures_total` | connects that failed or timed out |
//! | `poolguard_conn_validations_total` | validations run (checkout and keepalive) |
//! | `poolguard_conn_validation_failures_total` | validations that failed or timed out |
//! | `poolguard_conn_validation_timeouts_total` | validations that timed out (also counted as failures) |
//! | `poolguard_conn_resets_total` | resets run on return |
//! | `poolguard_conn_breaker_opens_total` | times the breaker opened |
//! | `poolguard_conn_closed_total{reason}` | connections closed, by reason: `broken`, `validation`, `reset`, `idle`, `lifetime`, `abandoned`, `surplus`, `pool_closed`, `evicted`, `hook`, `rotated` |
//! | `poolguard_conn_leaks_total` | connections reported as leaked |
//! | `poolguard_conn_unleaks_total` | leaked connections that came back later |
//! | `poolguard_conn_paused_refused_total` | gets refused at once because the pool was paused in fail-fast mode |
//! | `poolguard_conn_soft_evictions_total` | soft-evicts: calls to `soft_evict_all` and the automatic ones |
//! | `poolguard_conn_auto_soft_evictions_total` | automatic soft-evicts on a failover signature (`failover_burst`) |
//! | `poolguard_conn_detached_total` | connections taken out of the pool for good (`detach`) |
//! | `poolguard_conn_would_block_total` | `try_get` calls that found no idle connection |
//! | `poolguard_conn_credentials_calls_total` | calls to the credentials provider (one per connect) |
//! | `poolguard_conn_credentials_failures_total` | credentials provider calls that failed, panicked or timed out |
//! | `poolguard_conn_credential_rotations_total` | credential rotations proven by a probe connect |
//! | `poolguard_conn_rotation_probe_failures_total` | probe connects with changed credentials that failed (the old ones stayed in use) |
//! | `poolguard_conn_auth_failures_total` | connects that failed on authentication |
//! | `poolguard_conn_hook_runs_total{hook}` | lifecycle hook runs, by hook: `after_connect`, `before_acquire`, `after_release` |
//! | `poolguard_conn_hook_failures_total{hook,outcome}` | hook runs that failed and closed their connection, by hook and `outcome`: `refused` (the hook returned an error), `panicked`, `timed_out` |
//!
//! Histograms (seconds):
//!
//! | family | meaning |
//! |---|---|
//! | `poolguard_conn_acquire_seconds{phase="queue\|validate"}` | time a get spent per phase: queued for a connection (handed over by a return, or by a connect the pool started for it), validating an idle connection on checkout |
//! | `poolguard_conn_wait_seconds` | total time a get waited (gets that waited) |
//! | `poolguard_conn_hold_seconds` | time a connection was held by the caller (sampled uses) |
//! | `poolguard_conn_connect_seconds` | every connect, success or failure |
//! | `poolguard_conn_validation_seconds` | every validation, success or failure |
//! | `poolguard_conn_reset_seconds` | every reset, success or failure |
//!
//! Connects and resets never run on a get's own path: connects are background tasks a
//! waiting get is handed the result of (its time is in phase `queue`, the connect itself in
//! `poolguard_conn_connect_seconds`), and resets run after a return, before the connection is
//! idle again. So `phase` has the values `queue` and `validate` only.
//!
//! # Object pool (`poolguard_object_*`, label `pool`)
//!
//! Counters: `poolguard_object_gets_total`, `poolguard_object_hits_total{tier="local|shared|victim"}`,
//! `poolguard_object_misses_total`, `poolguard_object_returns_total`,
//! `poolguard_object_discards_total{reason="oversized|reset|over_cap|evicted"}`,
//! `poolguard_object_trims_total`, `poolguard_object_long_holds_total`,
//! `poolguard_object_skipped_local_total`, `poolguard_object_reclaim_deferred_total`,
//! `poolguard_object_reclaim_refused_total`.
//!
//! Gauges: `poolguard_object_retained_objects{tier="local|shared|victim"}`,
//! `poolguard_object_retained_bytes{tier="local|shared|victim"}` (one series per tier and no
//! unlabelled total, so `sum by (pool)` is the whole pool: `local` is the per-thread cells,
//! `shared` the shared stacks' primary generation, `victim` the generation the next trim
//! cycle frees), `poolguard_object_peak_bytes`, `poolguard_object_tier_cap_objects{tier="cell|shard"}`,
//! `poolguard_object_tier_cap_bytes{tier="cell|shard"}`, `poolguard_object_held_past_threshold`.
//!
//! Histograms (seconds): `poolguard_object_trim_pause_seconds` (the longest lock hold of each
//! trim cycle).
//!
//! # Reclaimer (`poolguard_reclaim_*`, label `reclaimer`)
//!
//! Gauges: `poolguard_reclaim_queued`, `poolguard_reclaim_queued_peak`,
//! `poolguard_reclaim_running`, `poolguard_reclaim_threads`,
//! `poolguard_reclaim_closes_in_flight`.
//!
//! Counters: `poolguard_reclaim_deferred_total`, `poolguard_reclaim_completed_total`,
//! `poolguard_reclaim_inline_drops_total`, `poolguard_reclaim_handed_back_total`,
//! `poolguard_reclaim_slow_total`, `poolguard_reclaim_stuck_total`,
//! `poolguard_reclaim_workers_replaced_total`, `poolguard_reclaim_closes_timed_out_total`.
//!
//! Histograms (seconds), per job label (`job_label="<label>"`: the label given to
//! `defer_labelled` or `close_async`, the value's type name for plain `defer`):
//! `poolguard_reclaim_queue_wait_seconds` (defer to drop start),
//! `poolguard_reclaim_run_seconds` (the drop or close itself).
