//! How a pool's caps are split between its tiers, computed once when the pool is built.
//!
//! The split is what lets the hot path keep the hard caps without a global counter: each
//! per-thread cell and each shard owns a fixed share of `max_idle` and `max_idle_bytes`, and
//! the shares add up to at most the caps.

use super::config::Config;

/// The caps of each tier, as split from a [`Config`] when the pool is built (see
/// [`Pool::layout`](super::Pool::layout) and [`PoolStats::layout`](super::PoolStats::layout)).
///
/// The formula, with `slots = min(local_slots, max_idle / 2)`:
///
/// * **per-thread cells**: `slots` cells of one object each, of at most
///   `cell_bytes = min(max_object_bytes, max(max_idle_bytes / 4 / slots, max_idle_bytes / max_idle))`
///   heap bytes. A cell gets a quarter of the byte budget shared between the cells, or its
///   object's fair share of the budget (`max_idle_bytes / max_idle`), whichever is larger, so
///   a small budget still lets the cells hold objects of the budget's average size. The
///   cells together never take more than half the budget.
/// * **shards**: the rest, `shared_objects = max_idle - slots` objects and
///   `shared_bytes = max_idle_bytes - slots * cell_bytes` bytes, split evenly over
///   `shards = min(config shards, shared_objects, max(1, shared_bytes / max_object_bytes))`
///   stacks (remainders go to the first ones). Fewer shards than asked when the budget is
///   small: each shard's byte share then still holds an object of `max_object_bytes`
///   (unless the whole shared budget cannot), instead of every shard refusing it.
///
/// Hence retained ≤ `max_idle` objects and ≤ `max_idle_bytes` bytes on all tiers together.
/// A returned object larger than `cell_bytes` skips the per-thread tier (counted in
/// [`PoolStats::skipped_local`](super::PoolStats::skipped_local)); one larger than a shard's
/// byte share is refused by that shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Layout {
    /// Per-thread cells (one object each); 0 when the per-thread tier is off.
    pub local_slots: usize,
    /// Largest object a per-thread cell may hold, in heap bytes (0 when there are no cells).
    pub cell_bytes: usize,
    /// Shared stacks.
    pub shards: usize,
    /// Objects one shard may hold, both generations together (the first
    /// `shared_objects % shards` shards hold one more).
    pub shard_objects: usize,
    /// Heap bytes one shard may hold (the first `shared_bytes % shards` shards one more).
    pub shard_bytes: usize,
    /// Objects all shards together may hold.
    pub shared_objects: usize,
    /// Heap bytes all shards together may hold.
    pub shared_bytes: usize,
}

impl Layout {
    /// The split of a valid configuration (one that [`Config::validate`] accepts).
    pub fn of(c: &Config) -> Self {
        let max_idle = c.max_idle.max(1);
        let slots = c.local_slots.min(max_idle / 2);
        let cell_bytes = (c.max_idle_bytes / 4)
            .checked_div(slots)
            .map_or(0, |quarter_share| {
                c.max_object_bytes
                    .min(quarter_share.max(c.max_idle_bytes / max_idle))
            });
        let shared_objects = max_idle - slots;
        // slots * cell_bytes <= max(max_idle_bytes / 4, slots * max_idle_bytes / max_idle)
        // <= max_idle_bytes / 2: no overflow, and the shards keep at least half the budget.
        let shared_bytes = c.max_idle_bytes - slots * cell_bytes;
        let by_bytes = shared_bytes
            .checked_div(c.max_object_bytes)
            .map_or(usize::MAX, |n| n.max(1));
        let shards = c.shards.clamp(1, shared_objects.min(by_bytes).max(1));
        Self {
            local_slots: slots,
            cell_bytes,
            shards,
            shard_objects: shared_objects / shards,
            shard_bytes: shared_bytes / shards,
            shared_objects,
            shared_bytes,
        }
    }

    /// The problems of this split for objects of up to `max_object_bytes`: a tier whose
    /// share cannot hold one such object. Each says what happens and how to fix it.
    pub(crate) fn warnings(&self, max_object_bytes: usize) -> Vec<String> {
        let mut out = Vec::new();
        if self.local_slots > 0 && self.cell_bytes < max_object_bytes {
            out.push(format!(
                "each of the {} per-thread cells holds an object of at most {} bytes (max_object_bytes is {}): larger returns skip the per-thread tier; raise max_idle_bytes, lower local_slots, or set max_object_bytes to the size of your objects",
                self.local_slots, self.cell_bytes, max_object_bytes
            ));
        }
        if self.shard_bytes < max_object_bytes {
            out.push(format!(
                "each of the {} shards holds at most {} bytes (max_object_bytes is {}): larger objects are refused even when the pool is empty; raise max_idle_bytes or lower max_object_bytes",
                self.shards, self.shard_bytes, max_object_bytes
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(max_idle: usize, bytes: usize, object: usize, shards: usize, slots: usize) -> Config {
        Config {
            max_idle,
            max_idle_bytes: bytes,
            max_object_bytes: object,
            shards,
            local_slots: slots,
            ..Config::default()
        }
    }

    /// The sum of every tier's share, with the remainders given to the first shards.
    fn total(l: &Layout) -> (usize, usize) {
        (
            l.local_slots + l.shared_objects,
            l.local_slots * l.cell_bytes + l.shared_bytes,
        )
    }

    #[test]
    fn a_small_byte_cap_still_lets_the_cells_hold_average_objects() {
        // 16 objects in 64 KiB: 4 KiB each on average. A quarter shared by 8 cells would be
        // 2 KiB, too small for 4 KiB buffers; the object's fair share is 4 KiB.
        let l = Layout::of(&config(16, 64 << 10, 64 << 10, 8, 8));
        assert_eq!((l.local_slots, l.cell_bytes), (8, 4 << 10));
        // The shards get the other half, in one stack (two would each hold 16 KiB, below
        // max_object_bytes).
        assert_eq!((l.shared_objects, l.shared_bytes), (8, 32 << 10));
        assert_eq!((l.shards, l.shard_objects, l.shard_bytes), (1, 8, 32 << 10));
        assert_eq!(total(&l), (16, 64 << 10));
    }

    #[test]
    fn the_defaults_split_as_before() {
        let c = Config {
            shards: 8,
            local_slots: 32,
            ..Config::default()
        };
        let l = Layout::of(&c);
        assert_eq!(l.local_slots, 32);
        assert_eq!(
            l.cell_bytes, c.max_object_bytes,
            "64 KiB each, as quarter/slots allows"
        );
        assert_eq!(l.shards, 8);
        assert_eq!(l.shard_objects, (1024 - 32) / 8);
        assert_eq!(l.shared_bytes, (64 << 20) - 32 * (64 << 10));
        assert!(l.warnings(c.max_object_bytes).is_empty());
    }

    #[test]
    fn slots_never_take_more_than_half_the_objects_and_bytes() {
        let l = Layout::of(&config(3, 1000, 1000, 4, 100));
        assert_eq!(l.local_slots, 1);
        assert_eq!(
            l.cell_bytes, 333,
            "the fair share of 1000 bytes over 3 objects"
        );
        let l = Layout::of(&config(1, 1000, 1000, 4, 100));
        assert_eq!((l.local_slots, l.cell_bytes, l.shards), (0, 0, 1));
    }

    #[test]
    fn warnings_name_a_tier_that_cannot_hold_one_object() {
        let l = Layout::of(&config(16, 64 << 10, 64 << 10, 8, 8));
        let w = l.warnings(64 << 10);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].contains("per-thread cells holds an object of at most 4096 bytes"),
            "{w:?}"
        );
        assert!(w[1].contains("1 shards holds at most 32768 bytes"), "{w:?}");
        // With max_object_bytes set to the objects' size, the same budget is fine.
        let l = Layout::of(&config(16, 64 << 10, 4 << 10, 8, 8));
        assert!(l.warnings(4 << 10).is_empty(), "{:?}", l.warnings(4 << 10));
        assert_eq!(l.shards, 8);
    }

    #[test]
    fn shares_never_exceed_the_caps() {
        let sizes = [
            0usize,
            1,
            2,
            3,
            7,
            16,
            100,
            1000,
            4096,
            65_536,
            1 << 30,
            usize::MAX,
        ];
        for &max_idle in &[1usize, 2, 3, 5, 16, 1024, 1 << 24] {
            for &bytes in &sizes {
                for &object in &sizes {
                    if object > bytes {
                        continue; // refused by validate()
                    }
                    for &(shards, slots) in &[(1, 0), (1, 1), (4, 8), (64, 256), (1024, 4096)] {
                        let l = Layout::of(&config(max_idle, bytes, object, shards, slots));
                        let (objs, b) = total(&l);
                        assert!(objs <= max_idle && b <= bytes, "{l:?}");
                        assert!(l.cell_bytes <= object);
                        assert!(l.shards >= 1 && l.shards <= shards);
                        assert!(l.shard_objects >= 1, "every shard holds an object: {l:?}");
                    }
                }
            }
        }
    }
}
