//! Instruction-count driver for `scripts/instructions.sh`: runs one hot path N times.
//!
//! `instr object N` — object pool round trip (4 KiB `Vec<u8>`: get, push one byte, return).
//! `instr conn N`   — connection checkout cycle (no-op manager, pool of 10, one task).
//! `instr floor N`  — the floor: the same round trip on a raw thread-local free list of
//!                    boxed buffers (no caps, no stats, not shareable).
//!
//! Compiled against whichever poolguard revision the script points it at, so it uses only
//! API that every compared revision has.

use std::cell::RefCell;
use std::hint::black_box;
use std::io;

thread_local! {
    static FREE: RefCell<Vec<Box<Vec<u8>>>> = const { RefCell::new(Vec::new()) };
}

struct Noop;

impl poolguard::conn::Manager for Noop {
    type Connection = ();
    type Error = io::Error;
    async fn connect(&self) -> Result<(), io::Error> {
        Ok(())
    }
    async fn validate(&self, _: &mut ()) -> Result<(), io::Error> {
        Ok(())
    }
    fn needs_reset(&self, _: &mut ()) -> bool {
        false
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let what = args.next().unwrap_or_default();
    let n: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    match what.as_str() {
        "object" => {
            let pool = poolguard::object::Pool::builder(|| Vec::<u8>::with_capacity(4096))
                .build()
                .expect("valid config");
            for _ in 0..n {
                let mut v = pool.get();
                v.push(1);
                black_box(&mut *v);
            }
        }
        "floor" => {
            for _ in 0..n {
                let mut v = match FREE.with(|f| f.borrow_mut().pop()) {
                    Some(v) => v,
                    None => Box::new(Vec::<u8>::with_capacity(4096)),
                };
                v.push(1);
                black_box(&mut *v);
                v.clear();
                FREE.with(|f| f.borrow_mut().push(v));
            }
        }
        "conn" => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let pool = poolguard::conn::Pool::builder(Noop)
                    .max_size(10)
                    .build()
                    .expect("valid config");
                for _ in 0..n {
                    let c = pool.get().await.expect("noop connect");
                    black_box(&c);
                    drop(c);
                }
            });
        }
        other => {
            eprintln!("usage: instr object|floor|conn N (got {other:?})");
            std::process::exit(2);
        }
    }
}
