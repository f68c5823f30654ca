//! The connection pool's doctor: reads the pool's status, totals and breaker and names the
//! trouble and misuse they show. `Pool::doctor` appends the manager's own findings.

use std::time::Duration;

use tokio::time::Instant;

use super::breaker::BreakerState;
use super::engine::Shared;
use super::stats::{CloseReason, StatsSnapshot, Status};
use super::Manager;
use crate::diag::{Finding, Severity};

/// The pool's own findings from `s` and `t` (read just before), the breaker's failure
/// counts and, when leaks are outstanding, the leaked holders' call sites.
pub(crate) fn diagnose<M: Manager>(
    shared: &Shared<M>,
    s: &Status,
    t: &StatsSnapshot,
) -> Vec<Finding> {
    let cfg = &shared.cfg;
    let label = cfg.name.clone();
    let mut out = Vec::new();
    let (last, failing, noted, min_idle, paused, nested, failover) = {
        let st = shared.lock();
        (
            st.breaker.last_text.clone(),
            st.breaker.failures,
            st.breaker.noted,
            st.min_idle(),
            st.paused(),
            st.nested.pairs(),
            st.failover.as_ref().and_then(|w| {
                w.last
                    .clone()
                    .map(|t| (t, w.in_cooldown, w.window(), w.cooldown()))
            }),
        )
    };
    let (auth_failing, probe_fault, provider_fault, probe_failures) = {
        let st = shared.lock();
        (
            st.auth_failing,
            st.rotation.probe_fault.clone(),
            st.rotation.provider_fault.clone(),
            st.rotation.probe_failures,
        )
    };
    let provider = shared.hooks.credentials.is_some();
    // First: authentication failures that opened the breaker are the cause of everything
    // the other findings would show (fast failures, timeouts, an empty pool).
    if auth_failing && s.breaker != BreakerState::Closed {
        let fix = if provider {
            "the database refuses the credentials: check what the credentials provider returns (its source, the role or user it names), whether a rotation changed the password on the server before the provider saw it, and the role's password or ACL on the server"
        } else {
            "the database refuses the configured user and password: check the role's password (or the ACL user) on the server and the manager's configuration, or set a credentials provider that follows rotations"
        };
        out.push(Finding::new(
            Severity::Critical,
            "conn.auth-failures",
            &label,
            format!(
                "authentication failures opened the breaker ({} connects refused on authentication in total, {failing} consecutive failures); last error: {}",
                t.auth_failures,
                last.as_deref().unwrap_or("none")
            ),
            fix,
        ));
    }
    if let Some(fault) = &provider_fault {
        out.push(Finding::new(
            Severity::Warning,
            "conn.credentials-provider",
            &label,
            format!(
                "the credentials provider failed {} times in {} calls (each failed its connect); last: {fault}",
                t.credentials_failures, t.credentials_calls
            ),
            "fix the provider's source (secrets manager, token service) or raise credentials_timeout if it is only slow",
        ));
    }
    if let Some(fault) = &probe_fault {
        out.push(Finding::new(
            Severity::Warning,
            "conn.credentials-rotation",
            &label,
            format!(
                "the credentials provider returned new credentials, but the probe connect with them failed {probe_failures} times in a row ({} in total), so the pool keeps using the previous ones; last probe error: {fault}",
                t.rotation_probe_failures
            ),
            "make the server accept the new credentials (finish the rotation: ALTER ROLE ... PASSWORD, ACL SETUSER), or have the provider return the current ones; the pool probes again with a backoff",
        ));
    }
    // First: a nested acquire is the cause of the waits and timeouts it produces.
    if t.nested_acquires > 0 {
        let exhausted = s.idle == 0 && s.size >= s.max_size;
        let pairs: Vec<String> = nested
            .iter()
            .map(|p| {
                format!(
                    "held at {} while waiting at {} ({} times)",
                    p.held, p.waiting, p.count
                )
            })
            .collect();
        out.push(Finding::new(
            if exhausted {
                Severity::Critical
            } else {
                Severity::Warning
            },
            "conn.nested-acquire",
            &label,
            format!(
                "{} gets waited for a second connection while their own task held one of this pool: {}; with {} such tasks each holding one the pool deadlocks until acquire_timeout (now {} of {} in use, {} waiting, {} gets timed out)",
                t.nested_acquires,
                pairs.join("; "),
                s.max_size,
                s.in_use,
                s.max_size,
                s.waiters,
                t.timed_out
            ),
            "pass the connection (or transaction) the task already holds down to the code that needs one, instead of taking a second from the same pool; if a separate transaction is required, take it from a pool of its own or take both connections before using either",
        ));
    }
    let acquire_timeout = shared.acquire_timeout();
    // A validation timeout that can eat half of a caller's budget: against a dead node each
    // checkout waits it out before the pool can try anything else, so the callers time out
    // (or the breaker opens) because of the setting. Named before what it causes.
    if t.validation_timeouts > 0 && cfg.validation_timeout * 2 >= acquire_timeout {
        out.push(Finding::new(
            Severity::Critical,
            "conn.slow-validation",
            &label,
            format!(
                "{} validations timed out, and validation_timeout ({:?}) is {} of acquire_timeout ({acquire_timeout:?}): a checkout that meets a dead connection waits out the validation before it can try another one or fail, so callers hang instead of getting an answer ({} gets timed out, {} connects failed)",
                t.validation_timeouts,
                cfg.validation_timeout,
                if cfg.validation_timeout >= acquire_timeout {
                    "at least all".to_owned()
                } else {
                    format!(
                        "{:.0} %",
                        100.0 * cfg.validation_timeout.as_secs_f64()
                            / acquire_timeout.as_secs_f64().max(f64::MIN_POSITIVE)
                    )
                },
                t.timed_out,
                t.connect_failures,
            ),
            "set validation_timeout to a few times a normal validation (1 s is plenty for SELECT 1 or PING), well under acquire_timeout, so a dead node costs a caller one short wait and the breaker can open",
        ));
    }
    if let Some(p) = paused {
        let paused_for = Instant::now().saturating_duration_since(p.since);
        if s.waiters > 0 && paused_for > acquire_timeout {
            out.push(Finding::new(
                Severity::Warning,
                "conn.paused",
                &label,
                format!(
                    "the pool has been paused ({:?}) for {paused_for:.1?}, longer than acquire_timeout ({acquire_timeout:?}), with {} callers waiting: each of them will time out before it is served",
                    p.mode, s.waiters
                ),
                "resume the pool (Pool::resume) once the switchover is done, or pause with PauseMode::FailFast so callers fail at once instead of timing out",
            ));
        }
    }
    if let Some((f, in_cooldown, window, cooldown)) = failover {
        let ago = Instant::now().saturating_duration_since(f.at);
        out.push(Finding::new(
            Severity::Warning,
            "conn.failover",
            &label,
            format!(
                "failover signature: {} `{}` errors within {:.1?} (failover_burst {} in failover_window {window:?}; the last one met in {}) {ago:.1?} ago soft-evicted every connection; {} automatic soft-evicts so far; {in_cooldown} more such errors met during a cooldown ({cooldown:?})",
                f.count,
                f.class,
                f.within,
                cfg.failover_burst.unwrap_or_default(),
                f.phase,
                t.auto_soft_evicts,
            ),
            "the database failed over or a server was shut down or demoted: make sure new connections reach the new primary (a name or proxy that follows failovers; for PostgreSQL target_session_attrs=read-write); the pool replaced its connections, paced by max_concurrent_opens",
        ));
    }
    if s.breaker == BreakerState::Closed && (failing > 0 || noted > 0) {
        // Failing now, the breaker not (yet) open: say so before it opens, or when it is off.
        let breaker = match cfg.breaker_threshold {
            Some(n) => format!("the breaker opens after {n} consecutive failures"),
            None => "the breaker is off, so gets keep waiting for connects".to_owned(),
        };
        out.push(Finding::new(
            if s.idle + s.in_use == 0 {
                Severity::Critical
            } else {
                Severity::Warning
            },
            "conn.connect-failures",
            &label,
            format!(
                "{failing} consecutive connect failures (or validation timeouts) and {noted} failed validations since the last success ({} connects and {} validations failed in total, {} connections open); {breaker}; last error: {}",
                t.connect_failures,
                t.validation_failures,
                s.idle + s.in_use,
                last.as_deref().unwrap_or("none")
            ),
            "fix what the last error names (credentials, address, database name, server health)",
        ));
    }
    if s.breaker != BreakerState::Closed {
        out.push(Finding::new(
            Severity::Critical,
            "conn.breaker-open",
            &label,
            format!(
                "the breaker is {} after repeated failures; last error: {}",
                s.breaker,
                last.as_deref().unwrap_or("none")
            ),
            "restore the backend (gets fail fast until a probe succeeds)",
        ));
    }
    if t.leaks > t.unleaked {
        let holders = shared.timeout_snapshot(Instant::now(), Duration::ZERO);
        let sites: Vec<String> = holders
            .longest_holders
            .iter()
            .filter(|h| h.leaked)
            .map(|h| h.to_string())
            .collect();
        out.push(Finding::new(
            Severity::Critical,
            "conn.leak",
            &label,
            format!(
                "{} connection(s) held past leak_threshold and not returned: {}",
                t.leaks - t.unleaked,
                sites.join(", ")
            ),
            "return the connection on every path (drop the guard; avoid holding it across slow awaits)",
        ));
    }
    let faults: Vec<String> = super::hooks::HookName::ALL
        .into_iter()
        .filter(|h| t.hook(*h).faults() > 0)
        .map(|h| {
            let hs = t.hook(h);
            format!(
                "{h} panicked {} and timed out {} times in {} runs",
                hs.panicked, hs.timed_out, hs.runs
            )
        })
        .collect();
    if !faults.is_empty() {
        let last = shared.lock().hook_fault.clone();
        out.push(Finding::new(
            Severity::Warning,
            "conn.hook-faults",
            &label,
            format!(
                "lifecycle hooks failed (contained: each closed its connection): {}; last: {}",
                faults.join("; "),
                last.as_deref().unwrap_or("none")
            ),
            "fix the hook: it must not panic and must finish within its timeout (after_connect_timeout, before_acquire_timeout, after_release_timeout)",
        ));
    }
    if t.timed_out > 0 {
        out.push(Finding::new(
            Severity::Warning,
            "conn.acquire-timeouts",
            &label,
            format!("{} of {} gets timed out waiting", t.timed_out, t.gets),
            "look at the timeout errors' snapshots: leaks, long holders, a slow backend, or a max_size too small",
        ));
    }
    if t.overloaded > 0 {
        out.push(Finding::new(
            Severity::Warning,
            "conn.overloaded",
            &label,
            format!(
                "{} gets refused past max_waiters ({})",
                t.overloaded, cfg.max_waiters
            ),
            "add capacity or shed load upstream",
        ));
    }
    // Waits, by what the pool looked like when they queued. A share above 5 % (at max
    // size) or 10 % (cold, growing) of all gets is worth a finding.
    if t.waited_saturated > 0 && t.waited_saturated * 20 > t.gets {
        out.push(Finding::new(
            Severity::Warning,
            "conn.saturated",
            &label,
            format!(
                "{} of {} gets waited with all {} connections in use (size = max_size); wait p99 {:.1?}, hold p99 {:.1?}, {} timed out",
                t.waited_saturated,
                t.gets,
                s.max_size,
                t.wait_time.p99(),
                t.hold_time.p99(),
                t.timed_out
            ),
            "raise max_size if the backend has room for more connections, or hold each connection for less time (no slow work, no unrelated awaits while holding it)",
        ));
    }
    if t.waited_cold > 0 && t.waited_cold * 10 > t.gets {
        let (message, fix) = if min_idle == 0 {
            (
                format!(
                    "{} of {} gets waited for a connect on an empty pool, and min_idle is 0",
                    t.waited_cold, t.gets
                ),
                "set min_idle so maintenance keeps connections warm",
            )
        } else {
            (
                format!(
                    "{} of {} gets waited while the pool held fewer than min_idle ({}) connections; {} closed so far ({} idle, {} lifetime, {} broken), {} connects failed",
                    t.waited_cold,
                    t.gets,
                    min_idle,
                    t.closed_total(),
                    t.closed_by(CloseReason::Idle),
                    t.closed_by(CloseReason::Lifetime),
                    t.closed_by(CloseReason::Broken),
                    t.connect_failures
                ),
                "let the pool warm up before it takes traffic (min_idle connections are opened at build); if it keeps falling below min_idle, look at why connections close and why connects fail",
            )
        };
        out.push(Finding::new(
            Severity::Info,
            "conn.cold-start",
            &label,
            message,
            fix,
        ));
    }
    if t.waited_growing > 0 && t.waited_growing * 10 > t.gets {
        out.push(Finding::new(
            Severity::Info,
            "conn.waits-for-connect",
            &label,
            format!(
                "{} of {} gets waited for a new connection while the pool had room (size between min_idle {} and max_size {}); {} opened, {} closed",
                t.waited_growing,
                t.gets,
                min_idle,
                s.max_size,
                t.created,
                t.closed_total()
            ),
            format!(
                "raise min_idle toward the usual demand so connections are ready; if connections close soon after use, fix that (see closed-by reasons); max_concurrent_opens ({}) bounds how fast the pool grows",
                cfg.max_concurrent_opens
            ),
        ));
    }
    if cfg.abandon_timeout.is_some() {
        out.push(Finding::new(
            // Once a transaction has lost its slot, it costs capacity: worth a warning.
            if t.abandoned > 0 {
                Severity::Warning
            } else {
                Severity::Info
            },
            "conn.abandon-on",
            &label,
            format!(
                "abandon_timeout {:?}: a longer transaction loses its connection's slot ({} abandoned so far)",
                cfg.abandon_timeout.unwrap_or_default(),
                t.abandoned
            ),
            "keep it well above your longest legitimate transaction",
        ));
    }
    if t.close_timeouts > 0 {
        out.push(Finding::new(
            Severity::Warning,
            "conn.close-timeouts",
            &label,
            format!("{} closes exceeded close_timeout", t.close_timeouts),
            "the backend is slow to say goodbye; check the network",
        ));
    }
    out
}
