//! Labels of live pools: distinct defaults, and a warning when two live pools share one.
//!
//! A label names a pool's metrics (`pool="..."`, `reclaimer="..."`), log lines and doctor
//! findings, so two live pools of one engine under one label make their metrics collide.
//! Every engine registers its label here when it is built and releases it when its last
//! handle is dropped; a build that takes a label already in use by a live pool of the same
//! engine logs one `tracing` warning (target `poolguard::diag::labels`). An unnamed pool gets
//! a distinct default: a short name and a sequence number (`Vec<u8>-1`, `SimManager-2`,
//! `reclaim-3`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use parking_lot::Mutex;

/// Which engine a label belongs to (labels of different engines never collide: their
/// metrics have different names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Engine {
    Object,
    Conn,
    Reclaim,
}

impl Engine {
    fn noun(self) -> &'static str {
        match self {
            Engine::Object => "object pool",
            Engine::Conn => "connection pool",
            Engine::Reclaim => "reclaimer",
        }
    }
}

/// Live pools per (engine, label).
static LIVE: Mutex<BTreeMap<(Engine, String), usize>> = Mutex::new(BTreeMap::new());
/// The last default sequence number handed out, per engine.
static SEQ: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];

/// A distinct default label: `base` and the engine's next sequence number (`base-N`).
pub(crate) fn default_label(engine: Engine, base: &str) -> String {
    let n = SEQ[engine as usize].fetch_add(1, Relaxed) + 1;
    format!("{base}-{n}")
}

/// A type name without its module paths, generics kept: `alloc::vec::Vec<u8>` -> `Vec<u8>`,
/// `a::Real<b::PgManager>` -> `Real<PgManager>`.
pub(crate) fn short_type_name(full: &str) -> String {
    let mut out = String::with_capacity(full.len());
    let mut word_start = 0;
    let mut chars = full.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ':' && chars.peek() == Some(&':') {
            chars.next();
            out.truncate(word_start);
        } else if c.is_alphanumeric() || c == '_' {
            out.push(c);
        } else {
            out.push(c);
            word_start = out.len();
        }
    }
    out
}

/// A live pool's hold on its label; dropping it releases the label.
#[derive(Debug)]
pub(crate) struct LiveLabel {
    engine: Engine,
    label: String,
}

impl LiveLabel {
    /// Registers `label` as used by one more live pool of `engine`; warns when another live
    /// pool of that engine already uses it. Dropping the guard releases it.
    pub(crate) fn register(engine: Engine, label: &str) -> Self {
        register(engine, label);
        Self {
            engine,
            label: label.to_owned(),
        }
    }
}

impl Drop for LiveLabel {
    fn drop(&mut self) {
        release(self.engine, &self.label);
    }
}

/// [`LiveLabel::register`] for an owner that releases explicitly (with [`release`]).
pub(crate) fn register(engine: Engine, label: &str) {
    let live = {
        let mut map = LIVE.lock();
        let n = map.entry((engine, label.to_owned())).or_insert(0);
        *n += 1;
        *n
    };
    if live > 1 {
        tracing::warn!(
            target: "poolguard::diag::labels",
            label,
            live,
            "{} label {label:?} is already used by another live {}: their metrics and logs collide; give each its own label",
            engine.noun(),
            engine.noun(),
        );
    }
}

/// One live pool of `engine` stopped using `label`.
pub(crate) fn release(engine: Engine, label: &str) {
    let mut map = LIVE.lock();
    let key = (engine, label.to_owned());
    if let Some(n) = map.get_mut(&key) {
        *n -= 1;
        if *n == 0 {
            map.remove(&key);
        }
    }
}

#[cfg(test)]
pub(crate) fn live(engine: Engine, label: &str) -> usize {
    LIVE.lock()
        .get(&(engine, label.to_owned()))
        .copied()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_type_names_drop_module_paths_and_keep_generics() {
        assert_eq!(short_type_name("alloc::vec::Vec<u8>"), "Vec<u8>");
        assert_eq!(
            short_type_name("a::b::Real<c::PgManager, d::X>"),
            "Real<PgManager, X>"
        );
        assert_eq!(short_type_name("u8"), "u8");
        assert_eq!(short_type_name("(a::A, &b::B)"), "(A, &B)");
    }

    #[test]
    fn defaults_are_distinct_per_engine() {
        let a = default_label(Engine::Object, "T");
        let b = default_label(Engine::Object, "T");
        assert_ne!(a, b);
        assert!(a.starts_with("T-") && b.starts_with("T-"), "{a} {b}");
    }

    #[test]
    fn registrations_count_and_release() {
        let label = "labels-unit-test";
        let a = LiveLabel::register(Engine::Conn, label);
        let b = LiveLabel::register(Engine::Conn, label);
        let other = LiveLabel::register(Engine::Object, label);
        assert_eq!(live(Engine::Conn, label), 2);
        assert_eq!(live(Engine::Object, label), 1);
        drop(a);
        assert_eq!(live(Engine::Conn, label), 1);
        drop(b);
        drop(other);
        assert_eq!(live(Engine::Conn, label), 0);
        assert!(!LIVE.lock().contains_key(&(Engine::Conn, label.to_owned())));
    }
}
