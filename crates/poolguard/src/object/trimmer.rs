//! The background trimmer: an explicit handle owning one thread that runs a trim cycle every
//! interval. No hidden threads: nothing runs unless a `Trimmer` exists, and dropping the
//! handle stops and joins the thread. The thread holds only a weak reference, so a pool
//! dropped first is freed at once and the thread exits at its next tick.

use std::fmt;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::sync::pl::{Condvar, Mutex};
use crossbeam_channel::{bounded, RecvTimeoutError, Sender};

use super::{Pool, Recycle};

/// The shortest interval a [`Trimmer`] runs at: 10 ms. A shorter one (zero included) is
/// raised to it, so a trimmer never busy-loops; [`Trimmer::interval`] tells the interval in
/// force.
pub const MIN_TRIM_INTERVAL: Duration = Duration::from_millis(10);

/// Runs [`Pool::trim`] every interval on its own thread until dropped.
///
/// ```
/// use std::time::Duration;
/// use poolguard::object::Pool;
///
/// let pool = Pool::builder(String::new).build()?;
/// let trimmer = pool.trimmer(Duration::from_secs(1));
/// // ... the pool frees what stays unused for two seconds ...
/// drop(trimmer); // stops and joins the thread
/// # Ok::<(), poolguard::object::BuildError>(())
/// ```
pub struct Trimmer {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
    cycles: Arc<(Mutex<u64>, Condvar)>,
    interval: Duration,
}

impl fmt::Debug for Trimmer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trimmer")
            .field("interval", &self.interval)
            .field("cycles", &self.cycles())
            .finish()
    }
}

impl Trimmer {
    /// The interval in force: the one asked for, raised to [`MIN_TRIM_INTERVAL`] if shorter.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Cycles run so far by this trimmer.
    pub fn cycles(&self) -> u64 {
        *self.cycles.0.lock()
    }

    /// Blocks until this trimmer has run at least `n` cycles or `timeout` passes; returns
    /// whether it got there.
    pub fn wait_for_cycles(&self, n: u64, timeout: Duration) -> bool {
        let deadline = crate::deadline::after(timeout);
        let (m, cv) = &*self.cycles;
        let mut done = m.lock();
        while *done < n {
            if cv.wait_until(&mut done, deadline).timed_out() {
                return *done >= n;
            }
        }
        true
    }
}

impl Drop for Trimmer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Trimmer {
    /// Starts the thread (see `Pool::trimmer`).
    pub(super) fn start<T: Recycle + Send + 'static>(pool: &Pool<T>, interval: Duration) -> Self {
        let interval = if interval < MIN_TRIM_INTERVAL {
            tracing::warn!(
                target: "poolguard::object::trim",
                pool = %pool.name(),
                asked_s = interval.as_secs_f64(),
                used_s = MIN_TRIM_INTERVAL.as_secs_f64(),
                "trim interval below the floor: raised to it"
            );
            MIN_TRIM_INTERVAL
        } else {
            interval
        };
        let (stop, stopped) = bounded::<()>(0);
        let weak = pool.downgrade();
        let cycles = Arc::new((Mutex::new(0u64), Condvar::new()));
        let counter = Arc::clone(&cycles);
        let thread = std::thread::Builder::new()
            .name(format!("poolguard-trim-{}", pool.name()))
            .spawn(move || loop {
                match stopped.recv_timeout(interval) {
                    Err(RecvTimeoutError::Timeout) => {}
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                }
                let Some(pool) = Pool::upgrade(&weak) else {
                    return;
                };
                let _ = pool.trim_background();
                drop(pool);
                let (m, cv) = &*counter;
                *m.lock() += 1;
                cv.notify_all();
            })
            .map_err(|e| tracing::error!(target: "poolguard::object::trim", pool = %pool.name(), error = %e, "could not start the trimmer thread"))
            .ok();
        Trimmer {
            stop: Some(stop),
            thread,
            cycles,
            interval,
        }
    }
}
