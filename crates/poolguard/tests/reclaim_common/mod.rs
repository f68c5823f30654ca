//! Shared helpers of the reclaimer tests: values whose drop blocks until the test says so,
//! and values whose drop reports on a channel.
#![allow(dead_code)]

use std::time::Duration;

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use poolguard::reclaim::{Builder, Reclaimer};
use poolguard_testkit::drops::{DropCounter, Tracked};

/// A generous bound on waits for events that must happen; only reached when a test fails.
pub const EVENTUALLY: Duration = Duration::from_secs(20);

/// A builder whose watchdog never fires on its own during a test.
pub fn quiet(name: &str) -> Builder {
    Reclaimer::builder()
        .name(name)
        .slow_threshold(Duration::from_secs(1800))
        .stuck_threshold(Duration::from_secs(3600))
}

/// A value whose drop announces it started, then blocks until released.
#[derive(Debug)]
pub struct Blocker {
    started: Sender<()>,
    release: Receiver<()>,
    _tracked: Tracked<()>,
}

/// The test's side of a [`Blocker`].
#[derive(Debug)]
pub struct BlockerCtl {
    pub started: Receiver<()>,
    release: Sender<()>,
}

impl BlockerCtl {
    /// Waits until the blocker's drop has started (it is running on a worker).
    pub fn wait_started(&self) {
        self.started
            .recv_timeout(EVENTUALLY)
            .expect("the blocking drop never started");
    }

    /// Lets the blocking drop return.
    pub fn release(&self) {
        let _ = self.release.send(());
    }
}

pub fn blocker(counter: &DropCounter) -> (Blocker, BlockerCtl) {
    let (stx, srx) = bounded(1);
    let (rtx, rrx) = bounded(1);
    (
        Blocker {
            started: stx,
            release: rrx,
            _tracked: counter.track(()),
        },
        BlockerCtl {
            started: srx,
            release: rtx,
        },
    )
}

impl Drop for Blocker {
    fn drop(&mut self) {
        let _ = self.started.send(());
        let _ = self.release.recv();
    }
}

/// A value whose drop sends its id on a channel.
#[derive(Debug)]
pub struct Announce {
    pub id: u64,
    tx: Sender<u64>,
    _tracked: Tracked<()>,
}

impl Drop for Announce {
    fn drop(&mut self) {
        let _ = self.tx.send(self.id);
    }
}

/// Makes [`Announce`] values reporting to one channel.
#[derive(Debug)]
pub struct Announcer {
    pub counter: DropCounter,
    tx: Sender<u64>,
    pub rx: Receiver<u64>,
}

impl Default for Announcer {
    fn default() -> Self {
        let (tx, rx) = unbounded();
        Self {
            counter: DropCounter::new(),
            tx,
            rx,
        }
    }
}

impl Announcer {
    pub fn make(&self, id: u64) -> Announce {
        Announce {
            id,
            tx: self.tx.clone(),
            _tracked: self.counter.track(()),
        }
    }

    /// Receives `n` announcements (panics if they do not come).
    pub fn expect(&self, n: usize) -> Vec<u64> {
        (0..n)
            .map(|i| {
                self.rx
                    .recv_timeout(EVENTUALLY)
                    .unwrap_or_else(|_| panic!("only {i} of {n} drops ran"))
            })
            .collect()
    }
}
