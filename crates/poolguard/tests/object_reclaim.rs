//! The object pool hands what it frees to a reclaimer (issue 3 item 7): trimmed batches and
//! oversized returns are dropped on a reclaimer worker, exactly once, also when the
//! reclaimer's queue is full (then on the caller, counted).

mod reclaim_common;

use std::sync::Arc;

use parking_lot::Mutex;
use poolguard::object::{Pool, Recycle};
use poolguard::reclaim::{Reclaimer, WhenFull};
use poolguard_testkit::drops::{DropCounter, Tracked};
use reclaim_common::{blocker, quiet, EVENTUALLY};

/// Names of the threads that dropped objects, in drop order.
type Seen = Arc<Mutex<Vec<String>>>;

struct Obj {
    _t: Tracked<()>,
    bytes: usize,
    seen: Seen,
    /// Panic in `drop` (after recording it).
    boom: bool,
}

impl Drop for Obj {
    fn drop(&mut self) {
        let name = std::thread::current()
            .name()
            .unwrap_or("<unnamed>")
            .to_string();
        self.seen.lock().push(name);
        if self.boom && !std::thread::panicking() {
            panic!("a pooled object's drop failed");
        }
    }
}

impl Recycle for Obj {
    fn reset(&mut self) -> bool {
        true
    }
    fn heap_bytes(&self) -> usize {
        self.bytes
    }
}

fn pool(c: &DropCounter, seen: &Seen, r: &Reclaimer, bytes: usize) -> Pool<Obj> {
    let (c, seen) = (c.clone(), Arc::clone(seen));
    Pool::builder(move || Obj {
        _t: c.track(()),
        bytes,
        seen: Arc::clone(&seen),
        boom: false,
    })
    .local_slots(8)
    .shards(4)
    .max_object_bytes(1024)
    .reclaimer(r.clone())
    .build()
    .expect("valid")
}

/// Checks out `n` objects at once and returns them all, so the pool retains `n`.
fn fill(p: &Pool<Obj>, n: usize) {
    let held: Vec<_> = (0..n).map(|_| p.get()).collect();
    drop(held);
}

#[test]
fn trimmed_objects_are_dropped_on_a_reclaimer_worker_once_as_one_job() {
    let r = quiet("obj-rc").workers(2).build().unwrap();
    let (c, seen) = (DropCounter::new(), Seen::default());
    let p = pool(&c, &seen, &r, 100);
    fill(&p, 20);
    assert_eq!(p.stats().retained_objects, 20);
    assert_eq!(p.trim().deferred, 0, "the first cycle only demotes");
    let t = p.trim();
    assert_eq!((t.freed, t.deferred), (20, 20));
    assert!(t.to_string().contains("20 deferred"), "{t}");
    r.flush(EVENTUALLY).unwrap();
    assert_eq!((c.created(), c.dropped()), (20, 20));
    let names = seen.lock().clone();
    assert_eq!(names.len(), 20, "each object dropped exactly once");
    assert!(
        names.iter().all(|n| n.starts_with("obj-rc-w")),
        "dropped off the reclaimer: {names:?}"
    );
    let s = p.stats();
    assert_eq!((s.reclaim_deferred, s.reclaim_refused), (20, 0));
    let rs = r.stats();
    assert_eq!(rs.completed, 1, "the freed batch is one job");
    let label = std::any::type_name::<Obj>();
    assert!(
        rs.labels.iter().any(|l| l.label == label),
        "labelled {label}"
    );
    drop(p);
    assert_eq!(c.alive(), 0);
}

#[test]
fn an_oversized_return_is_dropped_on_the_reclaimer() {
    let r = quiet("obj-rc-big").workers(1).build().unwrap();
    let (c, seen) = (DropCounter::new(), Seen::default());
    let p = pool(&c, &seen, &r, 4096);
    drop(p.get());
    let s = p.stats();
    assert_eq!((s.discards.oversized, s.reclaim_deferred), (1, 1));
    r.flush(EVENTUALLY).unwrap();
    assert_eq!(c.dropped(), 1);
    assert_eq!(seen.lock().as_slice(), ["obj-rc-big-w0"]);
    // put() still hands an oversized object back to its caller.
    let o = p.get().detach();
    let back = p.put(o).expect_err("oversized");
    assert!(back.object.is_some());
    assert_eq!(p.stats().reclaim_deferred, 1);
}

#[test]
fn a_small_discard_is_not_worth_a_job() {
    let r = quiet("obj-rc-small").workers(1).build().unwrap();
    let (c, seen) = (DropCounter::new(), Seen::default());
    let (counter, s2) = (c.clone(), Arc::clone(&seen));
    let p = Pool::builder(move || Obj {
        _t: counter.track(()),
        bytes: 10,
        seen: Arc::clone(&s2),
        boom: false,
    })
    .max_idle(1)
    .local_slots(0)
    .shards(1)
    .reclaimer(r.clone())
    .build()
    .unwrap();
    // Returned over the cap: dropped right here (a queue push would cost more).
    fill(&p, 2);
    assert_eq!(c.dropped(), 1);
    let s = p.stats();
    assert_eq!((s.discards.over_cap, s.reclaim_deferred), (1, 0));
    assert_eq!(r.stats().deferred, 0);
}

fn full_queue_drops_the_trim_on_the_caller(policy: WhenFull, name: &str) {
    let r = quiet(name)
        .workers(1)
        .max_threads(1)
        .capacity(1)
        .when_full(policy)
        .build()
        .unwrap();
    let (c, seen) = (DropCounter::new(), Seen::default());
    let p = pool(&c, &seen, &r, 100);
    fill(&p, 10);
    p.trim();
    // Occupy the only worker, then the only queue slot.
    let other = DropCounter::new();
    let (b, ctl) = blocker(&other);
    assert!(r.defer(b).is_queued());
    ctl.wait_started();
    assert!(r.defer(other.track(())).is_queued());

    let t = p.trim();
    assert_eq!((t.freed, t.deferred), (10, 0));
    // Dropped during the trim, on this thread, while the worker is still blocked.
    assert_eq!(c.dropped(), 10);
    let here = std::thread::current().name().map(str::to_string);
    assert!(
        seen.lock().iter().all(|n| Some(n) == here.as_ref()),
        "{:?}",
        seen.lock()
    );
    let s = p.stats();
    assert_eq!((s.reclaim_deferred, s.reclaim_refused), (0, 10));

    ctl.release();
    r.flush(EVENTUALLY).unwrap();
    assert_eq!((c.created(), c.dropped()), (10, 10), "exactly once");
    assert_eq!(other.alive(), 0);
    assert_eq!(seen.lock().len(), 10);
}

#[test]
fn a_full_reclaimer_queue_drops_the_trim_inline_exactly_once() {
    full_queue_drops_the_trim_on_the_caller(WhenFull::DropInline, "obj-rc-full");
}

#[test]
fn a_handed_back_batch_is_dropped_inline_exactly_once() {
    full_queue_drops_the_trim_on_the_caller(WhenFull::HandBack, "obj-rc-back");
}

#[test]
fn a_shut_down_reclaimer_loses_nothing() {
    let r = quiet("obj-rc-shut").workers(1).build().unwrap();
    let (c, seen) = (DropCounter::new(), Seen::default());
    let p = pool(&c, &seen, &r, 100);
    fill(&p, 5);
    p.trim();
    r.shutdown(EVENTUALLY);
    let t = p.trim();
    assert_eq!((t.freed, t.deferred), (5, 0));
    assert_eq!(c.dropped(), 5);
    assert_eq!(p.stats().reclaim_refused, 5);
}

#[test]
fn a_panicking_drop_in_a_refused_batch_is_contained() {
    let r = quiet("obj-rc-boom").workers(1).build().unwrap();
    let (c, seen) = (DropCounter::new(), Seen::default());
    let p = pool(&c, &seen, &r, 100);
    let mut held: Vec<_> = (0..4).map(|_| p.get()).collect();
    held[1].boom = true;
    drop(held);
    p.trim();
    r.shutdown(EVENTUALLY); // refuses from now on: the batch is dropped on this thread
    let t = p.trim();
    assert_eq!((t.freed, t.deferred), (4, 0));
    // The panic stopped neither the trim nor the drops of the other objects.
    assert_eq!((c.created(), c.dropped()), (4, 4));
    assert_eq!(p.stats().reclaim_refused, 4);
    drop(p.get());
}
