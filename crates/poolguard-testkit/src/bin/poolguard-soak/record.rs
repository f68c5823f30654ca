//! What the request tasks saw: outcomes by kind, latency against the deadline, hung requests,
//! dirty handovers. Fixed-size state (counters, a histogram, small maps), so a long soak does
//! not grow the very memory it measures.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use poolguard::diag::Histogram;
use rand::rngs::StdRng;
use rand::Rng;
use tokio::task::JoinError;
use tokio::time::{sleep, timeout, timeout_at, Instant};

/// The payload of a deliberate panic while holding a connection (the panic hook stays quiet
/// about it, and the tally tells it from a real one).
#[derive(Debug)]
pub struct Deliberate;

/// How one request ended (when it ended at all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done as intended.
    Ok,
    /// A deliberate error came back as intended (`SELECT 1/0`).
    Expected,
    /// The request cut its own `get` off (a timeout around it), as planned.
    CancelledGet,
    /// The request cut its own command off (a query or a `BLPOP` under a short timeout).
    CancelledCommand,
    /// A failure; the label names the pool error phase or the backend error class.
    Error(String),
    /// The connection handed to this request still carried the previous borrower's session
    /// state; the label says which.
    Dirty(&'static str),
}

impl Outcome {
    /// A short description for the report.
    pub fn describe(&self) -> String {
        match self {
            Outcome::Error(kind) => format!("error: {kind}"),
            Outcome::Dirty(kind) => format!("dirty: {kind}"),
            other => format!("{other:?}"),
        }
    }
}

/// Where errors are told apart from expected fault fallout: a backend's faults in progress and
/// when the last one ended.
#[derive(Debug)]
pub struct FaultClock {
    origin: Instant,
    active: AtomicUsize,
    last_end_ms: AtomicU64,
    margin: Duration,
}

impl FaultClock {
    /// A clock whose faults count as settled `margin` after they end.
    pub fn new(margin: Duration) -> Self {
        FaultClock {
            origin: Instant::now(),
            active: AtomicUsize::new(0),
            last_end_ms: AtomicU64::new(0),
            margin,
        }
    }

    /// A fault starts.
    pub fn begin(&self) {
        self.active.fetch_add(1, Relaxed);
    }

    /// The fault is lifted.
    pub fn end(&self) {
        // +1: 0 means "no fault has ended yet".
        let ms = self.origin.elapsed().as_millis() as u64 + 1;
        self.last_end_ms.fetch_max(ms, Relaxed);
        self.active.fetch_sub(1, Relaxed);
    }

    /// No fault is in progress and the last ended more than the margin ago (or none ran).
    pub fn quiet(&self) -> bool {
        if self.active.load(Relaxed) > 0 {
            return false;
        }
        let last = self.last_end_ms.load(Relaxed);
        last == 0 || self.origin.elapsed() > Duration::from_millis(last - 1) + self.margin
    }
}

/// Counters of one backend's requests.
#[derive(Debug, Default)]
pub struct Tally {
    /// Requests started.
    pub requests: AtomicU64,
    /// [`Outcome::Ok`].
    pub ok: AtomicU64,
    /// [`Outcome::Expected`].
    pub expected: AtomicU64,
    /// [`Outcome::CancelledGet`].
    pub cancelled_gets: AtomicU64,
    /// [`Outcome::CancelledCommand`].
    pub cancelled_commands: AtomicU64,
    /// Requests aborted (tokio `abort`) at a random point.
    pub aborted: AtomicU64,
    /// Deliberate panics while holding a connection.
    pub panicked: AtomicU64,
    /// Panics that were not deliberate (a bug in the driver or below it).
    pub unexpected_panics: AtomicU64,
    /// Requests not finished by deadline + grace (cut off by the driver).
    pub hung: AtomicU64,
    /// Requests that finished more than [`LATE_SLOP`] after their deadline (but within the
    /// grace).
    pub late: AtomicU64,
    /// Errors while no fault was in progress or settling on this backend.
    pub errors_outside_faults: AtomicU64,
    /// Latency of the requests that ended [`Outcome::Ok`].
    pub ok_latency: Histogram,
    /// The slowest finished request of any outcome (ns; aborted ones excluded).
    pub max_latency_ns: AtomicU64,
    /// The slowest `get` (ns), to compare with `acquire_timeout`.
    pub max_get_ns: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
    dirty: Mutex<BTreeMap<&'static str, u64>>,
    notes: Mutex<Vec<String>>,
}

/// A request that fails at its deadline is reported a moment after it; later than this
/// counts as late.
pub const LATE_SLOP: Duration = Duration::from_millis(100);

/// Most notes (hung requests, unexpected panics) kept for the report.
const MAX_NOTES: usize = 8;

impl Tally {
    /// Records how long a `get` took.
    pub fn note_get(&self, took: Duration) {
        self.max_get_ns.fetch_max(took.as_nanos() as u64, Relaxed);
    }

    /// Keeps a short note for the report (bounded).
    pub fn note(&self, text: String) {
        let mut n = self.notes.lock();
        if n.len() < MAX_NOTES {
            n.push(text);
        }
    }

    /// Errors by kind.
    pub fn errors(&self) -> BTreeMap<String, u64> {
        self.errors.lock().clone()
    }

    /// Dirty handovers by kind.
    pub fn dirty(&self) -> BTreeMap<&'static str, u64> {
        self.dirty.lock().clone()
    }

    /// Every dirty handover.
    pub fn dirty_total(&self) -> u64 {
        self.dirty.lock().values().sum()
    }

    /// The notes kept.
    pub fn notes(&self) -> Vec<String> {
        self.notes.lock().clone()
    }

    /// Records a finished request. Returns whether it was an error (the worker then paces).
    pub fn finish(
        &self,
        outcome: Outcome,
        latency: Duration,
        deadline: Duration,
        quiet: bool,
    ) -> bool {
        self.max_latency_ns
            .fetch_max(latency.as_nanos() as u64, Relaxed);
        if latency > deadline + LATE_SLOP {
            self.late.fetch_add(1, Relaxed);
        }
        match outcome {
            Outcome::Ok => {
                self.ok_latency.record(latency);
                self.ok.fetch_add(1, Relaxed)
            }
            Outcome::Expected => self.expected.fetch_add(1, Relaxed),
            Outcome::CancelledGet => self.cancelled_gets.fetch_add(1, Relaxed),
            Outcome::CancelledCommand => self.cancelled_commands.fetch_add(1, Relaxed),
            Outcome::Error(kind) => {
                if quiet {
                    self.errors_outside_faults.fetch_add(1, Relaxed);
                    self.note(format!("error outside any fault window: {kind}"));
                }
                *self.errors.lock().entry(kind).or_insert(0) += 1;
                return true;
            }
            Outcome::Dirty(kind) => {
                *self.dirty.lock().entry(kind).or_insert(0) += 1;
                return true;
            }
        };
        false
    }

    /// Records a request task that ended in a panic.
    pub fn panic(&self, e: JoinError) {
        match e.try_into_panic() {
            Ok(payload) if payload.is::<Deliberate>() => {
                self.panicked.fetch_add(1, Relaxed);
            }
            Ok(payload) => {
                self.unexpected_panics.fetch_add(1, Relaxed);
                let text = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "(non-string payload)".into());
                self.note(format!("unexpected panic: {text}"));
            }
            Err(_) => {
                // Cancelled without our abort: the runtime is shutting down.
            }
        }
    }
}

/// How every request of a worker is bounded and perturbed.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Each request's deadline, from its start.
    pub deadline: Duration,
    /// A request not finished by deadline + grace counts as hung.
    pub grace: Duration,
    /// Requests aborted at a random point, per mille.
    pub abort_per_mille: u32,
    /// Latest abort point, from the request's start.
    pub abort_within: Duration,
    /// Pause after an error, so an open breaker is not hammered in a busy loop.
    pub pace: Duration,
}

/// One worker: until `end`, asks `request` for the next request (bounded by the deadline it
/// is given), runs it as its own task (so it can be aborted or panic), and records how it
/// ended. A request not done by deadline + grace is counted as hung and aborted.
pub async fn worker<F, Fut>(
    mut rng: StdRng,
    end: Instant,
    limits: Limits,
    tally: Arc<Tally>,
    clock: Arc<FaultClock>,
    name: String,
    mut request: F,
) where
    F: FnMut(&mut StdRng, Instant) -> Fut,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    while Instant::now() < end {
        let t0 = Instant::now();
        let deadline = t0 + limits.deadline;
        let abort_after = (rng.random_range(0..1000) < limits.abort_per_mille).then(|| {
            Duration::from_micros(rng.random_range(0..limits.abort_within.as_micros() as u64))
        });
        let fut = request(&mut rng, deadline);
        tally.requests.fetch_add(1, Relaxed);
        let mut task = tokio::spawn(fut);
        let result = match abort_after {
            Some(after) => {
                tokio::select! {
                    r = &mut task => Some(r),
                    _ = sleep(after) => {
                        task.abort();
                        match timeout(limits.grace, &mut task).await {
                            Ok(Err(e)) if e.is_cancelled() => {
                                tally.aborted.fetch_add(1, Relaxed);
                                None
                            }
                            // Finished (or panicked) just before the abort took effect.
                            Ok(r) => Some(r),
                            Err(_) => {
                                tally.hung.fetch_add(1, Relaxed);
                                tally.note(format!("{name}: an aborted request did not end within {:?}", limits.grace));
                                None
                            }
                        }
                    }
                }
            }
            None => match timeout_at(deadline + limits.grace, &mut task).await {
                Ok(r) => Some(r),
                Err(_) => {
                    tally.hung.fetch_add(1, Relaxed);
                    tally.note(format!(
                        "{name}: a request started {:.1?} before the end of the run was still running {:?} later",
                        end.saturating_duration_since(t0),
                        limits.deadline + limits.grace
                    ));
                    task.abort();
                    let _ = timeout(limits.grace, &mut task).await;
                    None
                }
            },
        };
        let failed = match result {
            Some(Ok(outcome)) => {
                tally.finish(outcome, t0.elapsed(), limits.deadline, clock.quiet())
            }
            Some(Err(e)) if e.is_panic() => {
                tally.panic(e);
                false
            }
            Some(Err(_)) | None => false,
        };
        if failed {
            sleep(limits.pace).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn limits() -> Limits {
        Limits {
            deadline: Duration::from_millis(100),
            grace: Duration::from_millis(500),
            abort_per_mille: 0,
            abort_within: Duration::from_millis(1),
            pace: Duration::ZERO,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_past_deadline_and_grace_counts_as_hung_and_is_aborted() {
        let tally = Arc::new(Tally::default());
        let clock = Arc::new(FaultClock::new(Duration::ZERO));
        let dropped = Arc::new(AtomicU64::new(0));
        struct OnDrop(Arc<AtomicU64>);
        impl Drop for OnDrop {
            fn drop(&mut self) {
                self.0.fetch_add(1, Relaxed);
            }
        }
        let d = Arc::clone(&dropped);
        let end = Instant::now() + Duration::from_millis(1);
        worker(
            StdRng::seed_from_u64(1),
            end,
            limits(),
            Arc::clone(&tally),
            clock,
            "t".into(),
            move |_, _| {
                let guard = OnDrop(Arc::clone(&d));
                async move {
                    let _guard = guard;
                    std::future::pending::<()>().await;
                    Outcome::Ok
                }
            },
        )
        .await;
        assert_eq!(tally.hung.load(Relaxed), 1);
        assert_eq!(tally.ok.load(Relaxed), 0);
        assert_eq!(dropped.load(Relaxed), 1, "the hung request was aborted");
    }

    #[tokio::test(start_paused = true)]
    async fn late_errors_dirty_and_deliberate_panics_are_told_apart() {
        let tally = Arc::new(Tally::default());
        let clock = Arc::new(FaultClock::new(Duration::ZERO));
        let end = Instant::now() + Duration::from_millis(1);
        let mut n = 0;
        // Each worker run issues requests until `end`; paused time only moves when the
        // requests sleep, so these five run in the first millisecond... except the late one.
        worker(
            StdRng::seed_from_u64(2),
            end,
            limits(),
            Arc::clone(&tally),
            Arc::clone(&clock),
            "t".into(),
            move |_, _| {
                n += 1;
                let i = n;
                async move {
                    match i {
                        1 => Outcome::Error("pg: fatal 57P01".into()),
                        2 => Outcome::Dirty("pg: open transaction"),
                        3 => std::panic::panic_any(Deliberate),
                        4 => {
                            sleep(Duration::from_millis(250)).await;
                            Outcome::Ok
                        }
                        _ => Outcome::Ok,
                    }
                }
            },
        )
        .await;
        assert_eq!(tally.errors().get("pg: fatal 57P01"), Some(&1));
        assert_eq!(tally.errors_outside_faults.load(Relaxed), 1);
        assert_eq!(tally.dirty_total(), 1);
        assert_eq!(tally.panicked.load(Relaxed), 1);
        assert_eq!(tally.unexpected_panics.load(Relaxed), 0);
        assert_eq!(
            tally.late.load(Relaxed),
            1,
            "250 ms against a 100 ms deadline (+ 100 ms slop)"
        );
        assert_eq!(tally.hung.load(Relaxed), 0);
        assert_eq!(tally.ok.load(Relaxed), 1);
    }

    #[test]
    fn errors_during_a_fault_or_its_margin_are_not_quiet() {
        let clock = FaultClock::new(Duration::from_secs(3600));
        assert!(clock.quiet());
        clock.begin();
        assert!(!clock.quiet());
        clock.end();
        assert!(!clock.quiet(), "within the margin after the fault");
    }
}
