//! Model test: whatever sequence of gets, returns, puts, detaches and trims, the objects the
//! pool retains never exceed `max_idle` or `max_idle_bytes`, and every object is dropped
//! exactly once, also after the pool itself is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use poolguard::object::{Pool, PoolGuard, Recycle};
use poolguard_testkit::drops::{DropCounter, Tracked};
use proptest::prelude::*;

/// Live objects by id with their reported bytes (removed on drop).
type Registry = Arc<Mutex<HashMap<u64, usize>>>;

struct Obj {
    id: u64,
    bytes: usize,
    grow_to: usize,
    reg: Registry,
    _t: Tracked<()>,
}

impl Drop for Obj {
    fn drop(&mut self) {
        let removed = self.reg.lock().expect("registry").remove(&self.id);
        assert!(removed.is_some(), "object {} dropped twice", self.id);
    }
}

impl Recycle for Obj {
    fn reset(&mut self) -> bool {
        // A user grew it: the new size is what is charged from now on.
        if self.grow_to > 0 {
            self.bytes = self.grow_to;
            self.grow_to = 0;
            self.reg
                .lock()
                .expect("registry")
                .insert(self.id, self.bytes);
        }
        true
    }
    fn heap_bytes(&self) -> usize {
        self.bytes
    }
}

#[derive(Debug, Clone)]
enum Op {
    Get,
    Return(usize),
    Grow(usize, usize),
    Detach(usize),
    Put(usize),
    Trim,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Get),
        3 => (0..16usize).prop_map(Op::Return),
        1 => (0..16usize, 1..3000usize).prop_map(|(i, b)| Op::Grow(i, b)),
        1 => (0..16usize).prop_map(Op::Detach),
        2 => (1..3000usize).prop_map(Op::Put),
        1 => Just(Op::Trim),
    ]
}

struct Maker {
    next: Mutex<u64>,
    reg: Registry,
    drops: DropCounter,
}

impl Maker {
    fn make(&self, bytes: usize) -> Obj {
        let mut n = self.next.lock().expect("id");
        *n += 1;
        self.reg.lock().expect("registry").insert(*n, bytes);
        Obj {
            id: *n,
            bytes,
            grow_to: 0,
            reg: Arc::clone(&self.reg),
            _t: self.drops.track(()),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn retained_never_exceeds_caps_and_every_object_drops_once(
        ops in proptest::collection::vec(op(), 1..200),
        max_idle in 1..12usize,
        shards in 1..4usize,
        slots in 0..4usize,
    ) {
        let maker = Arc::new(Maker {
            next: Mutex::new(0),
            reg: Arc::new(Mutex::new(HashMap::new())),
            drops: DropCounter::new(),
        });
        let (max_bytes, max_obj) = (8_000usize, 2_500usize);
        let pool = {
            let m = Arc::clone(&maker);
            Pool::builder(move || m.make(100))
                .max_idle(max_idle)
                .max_idle_bytes(max_bytes)
                .max_object_bytes(max_obj)
                .shards(shards)
                .local_slots(slots)
                .build()
                .expect("valid")
        };
        let mut held: Vec<PoolGuard<'_, Obj>> = Vec::new();
        let mut detached: Vec<Obj> = Vec::new();
        for op in ops {
            match op {
                Op::Get => held.push(pool.get()),
                Op::Return(i) if !held.is_empty() => {
                    let i = i % held.len();
                    drop(held.swap_remove(i));
                }
                Op::Grow(i, b) if !held.is_empty() => {
                    let i = i % held.len();
                    held[i].grow_to = b;
                }
                Op::Detach(i) if !held.is_empty() => {
                    let i = i % held.len();
                    detached.push(held.swap_remove(i).detach());
                }
                Op::Put(b) => {
                    if let Err(r) = pool.put(maker.make(b)) {
                        drop(r.object);
                    }
                }
                Op::Trim => { let _ = pool.trim(); }
                _ => {}
            }
            // What the pool retains = live objects that nobody holds.
            let outside: Vec<u64> = held.iter().map(|g| g.id).chain(detached.iter().map(|o| o.id)).collect();
            let reg = maker.reg.lock().expect("registry");
            let retained: Vec<usize> = reg
                .iter()
                .filter(|(id, _)| !outside.contains(id))
                .map(|(_, b)| *b)
                .collect();
            prop_assert!(retained.len() <= max_idle, "{} objects > max_idle {}", retained.len(), max_idle);
            let bytes: usize = retained.iter().sum();
            prop_assert!(bytes <= max_bytes, "{} bytes > {}", bytes, max_bytes);
            prop_assert!(retained.iter().all(|&b| b <= max_obj));
        }
        drop(held);
        drop(pool);
        prop_assert_eq!(maker.drops.alive() as usize, detached.len());
        drop(detached);
        prop_assert_eq!(maker.drops.alive(), 0);
        prop_assert!(maker.reg.lock().expect("registry").is_empty());
    }
}
