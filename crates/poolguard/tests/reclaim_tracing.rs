//! The watchdog's reports reach `tracing` as warnings naming the job (one test per binary:
//! it installs the process-wide subscriber the watchdog thread logs to).

mod reclaim_common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::unbounded;
use poolguard::reclaim::{Reclaimer, WatchdogKind};
use poolguard_testkit::drops::DropCounter;
use reclaim_common::{blocker, EVENTUALLY};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn slow_and_stuck_jobs_are_logged_as_warnings_with_their_label() {
    let out = Captured::default();
    let writer = out.clone();
    tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .init();
    let (tx, rx) = unbounded();
    let r = Reclaimer::builder()
        .name("traced")
        .workers(1)
        .slow_threshold(Duration::from_millis(1))
        .stuck_threshold(Duration::from_millis(4))
        .on_watchdog(move |e| {
            let _ = tx.send(e.kind);
        })
        .build()
        .unwrap();
    let counter = DropCounter::new();
    let (v, ctl) = blocker(&counter);
    r.defer_labelled("traced-goodbye", v);
    ctl.wait_started();
    // The hook runs after the warning is logged: once it reported "stuck", both are written.
    while !matches!(
        rx.recv_timeout(EVENTUALLY).expect("no watchdog report"),
        WatchdogKind::Stuck { .. }
    ) {}
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let slow = text
        .lines()
        .find(|l| l.contains("deferred drop is slow"))
        .unwrap_or_else(|| panic!("no slow warning in:\n{text}"));
    assert!(
        slow.contains("WARN") && slow.contains("job_label=\"traced-goodbye\""),
        "{slow}"
    );
    assert!(slow.contains("reclaimer=traced"), "{slow}");
    assert!(text.contains("deferred drop is stuck"), "{text}");
    ctl.release();
    r.flush(EVENTUALLY).unwrap();
}
