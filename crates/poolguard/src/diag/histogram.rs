//! A lock-free latency histogram with bounded relative error and exact Prometheus buckets.
//!
//! Values (nanoseconds) fall into log-linear buckets: exact below 8, then eight buckets per
//! power of two, so any reported quantile is within 12.5 % of the true value. The fixed
//! Prometheus edges [`BUCKET_EDGES`] do not line up with those bounds (they are decimal), so
//! each log-linear bucket that has an edge strictly inside it is split in two at that edge:
//! values at or below the edge go to the lower half, values above it to the upper half. Every
//! counter (a *slot*) then lies wholly between two consecutive edges, and the exported
//! cumulative buckets are sums of slots, with no approximation and no second counter.
//!
//! Recording computes the slot arithmetically (the position of the highest set bit, three
//! bits below it, and one table entry saying where the bucket's slots start and where it is
//! split) and costs two relaxed `fetch_add`s (the slot and the sum) and one relaxed load (the
//! maximum, written only when exceeded); no search, no lock, no allocation after creation.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

const SUB_BITS: u32 = 3;
const SUB: usize = 1 << SUB_BITS;
/// Enough buckets for every `u64`: the largest index is `(63 - 3 + 1) * 8 + 7`.
const BUCKETS: usize = (64 - SUB_BITS as usize + 1) * SUB;

/// The fixed histogram bucket edges (nanoseconds) every exported duration histogram uses:
/// 5 µs, 10 µs, 25 µs, 50 µs, 100 µs, 250 µs, 500 µs, 1 ms, 2.5 ms, 5 ms, 10 ms, 25 ms,
/// 50 ms, 100 ms, 250 ms, 500 ms, 1 s, 2.5 s, 5 s, 10 s, 30 s, 60 s (then `+Inf`).
pub const BUCKET_EDGES: [u64; 22] = [
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
    60_000_000_000,
];

/// The index of the first edge at or above `ns` (`BUCKET_EDGES.len()`: above every edge).
/// Used when building the tables and snapshots, never when recording.
const fn edge_of(ns: u64) -> usize {
    let mut i = 0;
    while i < BUCKET_EDGES.len() && BUCKET_EDGES[i] < ns {
        i += 1;
    }
    i
}

const fn bucket_of(v: u64) -> usize {
    if v < SUB as u64 {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros();
    let shift = msb - SUB_BITS;
    let sub = ((v >> shift) as usize) & (SUB - 1);
    (shift as usize + 1) * SUB + sub
}

/// The largest value that falls into bucket `i`.
const fn bucket_upper(i: usize) -> u64 {
    if i < SUB {
        return i as u64;
    }
    let shift = (i / SUB - 1) as u32;
    let sub = (i % SUB) as u64;
    let lower = (SUB as u64 + sub) << shift;
    lower.saturating_add((1u64 << shift) - 1)
}

/// The smallest value that falls into bucket `i`.
const fn bucket_lower(i: usize) -> u64 {
    if i < SUB {
        return i as u64;
    }
    let shift = (i / SUB - 1) as u32;
    (SUB as u64 + (i % SUB) as u64) << shift
}

/// Per log-linear bucket: its first slot, and the edge it is split at (`u64::MAX` when no
/// edge lies strictly inside it). One entry, so recording reads one table line.
#[derive(Clone, Copy)]
struct Split {
    first_slot: usize,
    at: u64,
}

/// Buckets and their splits: each edge splits the bucket it falls into unless it is that
/// bucket's upper bound already. Edges are at least twice apart and a bucket spans at most
/// 12.5 %, so no bucket holds two edges.
const SPLITS: [Split; BUCKETS] = {
    let mut t = [Split {
        first_slot: 0,
        at: u64::MAX,
    }; BUCKETS];
    let mut j = 0;
    while j < BUCKET_EDGES.len() {
        let e = BUCKET_EDGES[j];
        let b = bucket_of(e);
        assert!(t[b].at == u64::MAX, "two edges in one bucket");
        if bucket_upper(b) != e {
            t[b].at = e;
        }
        j += 1;
    }
    let mut b = 0;
    let mut slot = 0;
    while b < BUCKETS {
        t[b].first_slot = slot;
        slot += if t[b].at == u64::MAX { 1 } else { 2 };
        b += 1;
    }
    t
};

/// Counters per histogram: one per bucket, plus one per split bucket.
const SLOTS: usize = {
    let last = SPLITS[BUCKETS - 1];
    last.first_slot + if last.at == u64::MAX { 1 } else { 2 }
};

/// The value range of each slot, and the edge index it counts under (`le` semantics).
#[derive(Clone, Copy)]
struct SlotInfo {
    lower: u64,
    upper: u64,
    edge: usize,
}

const SLOT_INFO: [SlotInfo; SLOTS] = {
    let mut t = [SlotInfo {
        lower: 0,
        upper: 0,
        edge: 0,
    }; SLOTS];
    let mut b = 0;
    while b < BUCKETS {
        let s = SPLITS[b];
        let (lo, hi) = (bucket_lower(b), bucket_upper(b));
        if s.at == u64::MAX {
            t[s.first_slot] = SlotInfo {
                lower: lo,
                upper: hi,
                edge: edge_of(hi),
            };
        } else {
            t[s.first_slot] = SlotInfo {
                lower: lo,
                upper: s.at,
                edge: edge_of(s.at),
            };
            t[s.first_slot + 1] = SlotInfo {
                lower: s.at + 1,
                upper: hi,
                edge: edge_of(hi),
            };
        }
        // Every value of a slot counts under the same edge.
        assert!(edge_of(t[s.first_slot].lower) == t[s.first_slot].edge);
        b += 1;
    }
    t
};

/// The slot a value is counted in: arithmetic, one table entry, no search.
#[inline]
fn slot_of(v: u64) -> usize {
    let s = SPLITS[bucket_of(v)];
    s.first_slot + usize::from(v > s.at)
}

/// A concurrent histogram of durations.
pub struct Histogram {
    /// One counter per slot (see the module docs); the count is their sum.
    slots: Box<[AtomicU64; SLOTS]>,
    sum_ns: AtomicU64,
    max_ns: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Histogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.snapshot(), f)
    }
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self {
            slots: Box::new(std::array::from_fn(|_| AtomicU64::new(0))),
            sum_ns: AtomicU64::new(0),
            max_ns: AtomicU64::new(0),
        }
    }

    /// Records one duration (saturating at `u64::MAX` nanoseconds).
    #[inline]
    pub fn record(&self, d: Duration) {
        self.record_nanos(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Records one value in nanoseconds.
    #[inline]
    pub fn record_nanos(&self, ns: u64) {
        self.slots[slot_of(ns)].fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(ns, Relaxed);
        // A new maximum is rare: read first, write (a compare-exchange loop) only then.
        if ns > self.max_ns.load(Relaxed) {
            self.max_ns.fetch_max(ns, Relaxed);
        }
    }

    /// A consistent-enough copy for reporting (concurrent records may be half-counted).
    pub fn snapshot(&self) -> HistogramSnapshot {
        let slots: Vec<u64> = self.slots.iter().map(|b| b.load(Relaxed)).collect();
        HistogramSnapshot::from_slots(slots, self.sum_ns.load(Relaxed), self.max_ns.load(Relaxed))
    }
}

/// A point-in-time copy of a [`Histogram`].
#[derive(Clone, PartialEq, Eq)]
pub struct HistogramSnapshot {
    count: u64,
    sum_ns: u64,
    max_ns: u64,
    /// Per slot.
    buckets: Vec<u64>,
    /// Per edge (not cumulative), summed from the slots.
    edges: Box<[u64; BUCKET_EDGES.len() + 1]>,
}

impl HistogramSnapshot {
    fn from_slots(buckets: Vec<u64>, sum_ns: u64, max_ns: u64) -> Self {
        let mut edges = Box::new([0u64; BUCKET_EDGES.len() + 1]);
        for (info, &n) in SLOT_INFO.iter().zip(&buckets) {
            edges[info.edge] += n;
        }
        Self {
            count: buckets.iter().sum(),
            sum_ns,
            max_ns,
            buckets,
            edges,
        }
    }

    /// How many values were recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The largest value recorded (exact).
    pub fn max(&self) -> Duration {
        Duration::from_nanos(self.max_ns)
    }

    /// The mean, or zero when empty.
    pub fn mean(&self) -> Duration {
        Duration::from_nanos(self.sum_ns.checked_div(self.count).unwrap_or(0))
    }

    /// Sum of all values.
    pub fn sum(&self) -> Duration {
        Duration::from_nanos(self.sum_ns)
    }

    /// The `q` quantile (`0.0..=1.0`, clamped), within 12.5 % above the true value and never
    /// above the recorded maximum. Zero when empty.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        let q = if q.is_nan() { 1.0 } else { q.clamp(0.0, 1.0) };
        let rank = ((q * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Duration::from_nanos(SLOT_INFO[i].upper.min(self.max_ns));
            }
        }
        self.max()
    }

    /// Values per fixed edge (not cumulative): entry `i` counts the values above
    /// `BUCKET_EDGES[i - 1]` and at most `BUCKET_EDGES[i]`; the last entry counts those
    /// above every edge. Exact.
    pub fn edge_counts(&self) -> &[u64; BUCKET_EDGES.len() + 1] {
        &self.edges
    }

    /// Median.
    pub fn p50(&self) -> Duration {
        self.quantile(0.50)
    }

    /// 95th percentile.
    pub fn p95(&self) -> Duration {
        self.quantile(0.95)
    }

    /// 99th percentile.
    pub fn p99(&self) -> Duration {
        self.quantile(0.99)
    }
}

impl fmt::Debug for HistogramSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HistogramSnapshot")
            .field("count", &self.count)
            .field("p50", &self.p50())
            .field("p95", &self.p95())
            .field("p99", &self.p99())
            .field("max", &self.max())
            .finish()
    }
}

impl fmt::Display for HistogramSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "n={} p50={:?} p95={:?} p99={:?} max={:?}",
            self.count,
            self.p50(),
            self.p95(),
            self.p99(),
            self.max()
        )
    }
}

/// One non-empty bucket of a [`HistogramSnapshot`]: every value recorded into it lies in
/// `lower..=upper`, `upper` is at most 12.5 % above `lower`, and no edge of
/// [`BUCKET_EDGES`] lies between them (`lower..=upper` is within one exported bucket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Bucket {
    /// The smallest value the bucket holds.
    pub lower: Duration,
    /// The largest value the bucket holds.
    pub upper: Duration,
    /// How many values were recorded into it.
    pub count: u64,
}

impl Bucket {
    /// The middle of the bucket: the value that stands for all of its values when they are
    /// replayed into another histogram (within 6.25 % of each of them, and in the same
    /// bucket of [`BUCKET_EDGES`] as each of them).
    pub fn midpoint(&self) -> Duration {
        self.lower + (self.upper - self.lower) / 2
    }
}

impl HistogramSnapshot {
    /// The non-empty buckets, smallest values first.
    pub fn buckets(&self) -> impl Iterator<Item = Bucket> + '_ {
        self.buckets
            .iter()
            .zip(SLOT_INFO.iter())
            .filter(|&(&n, _)| n > 0)
            .map(|(&count, info)| Bucket {
                lower: Duration::from_nanos(info.lower),
                upper: Duration::from_nanos(info.upper),
                count,
            })
    }

    /// What was recorded between `earlier` (a snapshot of the same histogram) and this
    /// one: bucket by bucket differences, their count and sum. The maximum is this
    /// snapshot's (the histogram keeps no maximum per interval).
    pub fn since(&self, earlier: &HistogramSnapshot) -> HistogramSnapshot {
        let buckets: Vec<u64> = self
            .buckets
            .iter()
            .zip(earlier.buckets.iter().chain(std::iter::repeat(&0)))
            .map(|(now, then)| now.saturating_sub(*then))
            .collect();
        HistogramSnapshot::from_slots(
            buckets,
            self.sum_ns.saturating_sub(earlier.sum_ns),
            self.max_ns,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_cover_their_values() {
        let mut last = 0;
        for v in (0..10_000u64).chain([u64::MAX / 3, u64::MAX - 1, u64::MAX]) {
            let b = bucket_of(v);
            assert!(b >= last || v > 10_000, "bucket order broke at {v}");
            assert!(
                bucket_upper(b) >= v,
                "value {v} above its bucket's upper bound"
            );
            if b > 0 {
                assert!(bucket_upper(b - 1) < v, "value {v} fits an earlier bucket");
            }
            last = b;
        }
        assert!(bucket_of(u64::MAX) < BUCKETS);
    }

    #[test]
    fn quantiles_within_relative_error() {
        let h = Histogram::new();
        for v in 1..=1000u64 {
            h.record_nanos(v * 1000);
        }
        let s = h.snapshot();
        assert_eq!(s.count(), 1000);
        for (q, exact) in [(0.5, 500_000u64), (0.95, 950_000), (0.99, 990_000)] {
            let got = s.quantile(q).as_nanos() as u64;
            assert!(got >= exact, "q{q}: {got} below {exact}");
            assert!(
                got as f64 <= exact as f64 * 1.125,
                "q{q}: {got} too far above {exact}"
            );
        }
        assert_eq!(s.max(), Duration::from_micros(1000));
        assert_eq!(s.quantile(1.0), s.max());
    }

    #[test]
    fn a_value_on_an_edge_is_in_that_edges_bucket_and_one_above_is_not() {
        for (i, &edge) in BUCKET_EDGES.iter().enumerate() {
            let h = Histogram::new();
            h.record_nanos(edge);
            h.record_nanos(edge + 1);
            let e = h.snapshot();
            let e = e.edge_counts();
            assert_eq!(e[i], 1, "value {edge} not counted at its own edge");
            assert_eq!(e[i + 1], 1, "value {} counted at or below {edge}", edge + 1);
            assert_eq!(e.iter().sum::<u64>(), 2);
        }
        let h = Histogram::new();
        h.record_nanos(0);
        h.record(Duration::from_secs(3600));
        let s = h.snapshot();
        assert_eq!(s.edge_counts()[0], 1);
        assert_eq!(s.edge_counts()[BUCKET_EDGES.len()], 1);
    }

    #[test]
    fn buckets_and_deltas() {
        let h = Histogram::new();
        h.record_nanos(3);
        h.record_nanos(1000);
        h.record_nanos(1001);
        let first = h.snapshot();
        let b: Vec<Bucket> = first.buckets().collect();
        assert_eq!(b.len(), 2, "{b:?}");
        assert_eq!(
            (b[0].lower, b[0].upper, b[0].count),
            (Duration::from_nanos(3), Duration::from_nanos(3), 1)
        );
        assert!(
            b[1].lower <= Duration::from_nanos(1000) && b[1].upper >= Duration::from_nanos(1001)
        );
        assert_eq!(b[1].count, 2);
        for i in 0..BUCKETS {
            assert_eq!(bucket_of(bucket_lower(i)), i);
            assert_eq!(bucket_of(bucket_upper(i)), i);
        }
        h.record_nanos(5_000_000);
        let second = h.snapshot();
        let d = second.since(&first);
        assert_eq!(d.count(), 1);
        assert_eq!(d.sum(), Duration::from_nanos(5_000_000));
        let only: Vec<Bucket> = d.buckets().collect();
        assert_eq!(only.len(), 1);
        let mid = only[0].midpoint().as_nanos() as f64;
        assert!((mid - 5e6).abs() <= 5e6 * 0.0625, "{mid}");
        assert_eq!(second.since(&second).count(), 0);
        assert_eq!(d.edge_counts().iter().sum::<u64>(), 1);
        assert_eq!(d.edge_counts()[9], 1, "5 ms is at the 5 ms edge");
        assert_eq!(second.since(&second).buckets().count(), 0);
    }

    #[test]
    fn every_value_lands_in_a_slot_that_covers_it_and_its_edge() {
        let mut values: Vec<u64> = (0..20_000u64).collect();
        for &e in &BUCKET_EDGES {
            values.extend([e - 1, e, e + 1]);
        }
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..100_000 {
            // xorshift: values spread over every magnitude
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            values.push(x >> (x % 64));
        }
        values.extend([u64::MAX / 3, u64::MAX - 1, u64::MAX]);
        for v in values {
            let s = slot_of(v);
            let info = SLOT_INFO[s];
            assert!(info.lower <= v && v <= info.upper, "{v} outside slot {s}");
            assert_eq!(info.edge, edge_of(v), "{v} counted under the wrong edge");
            let width = (info.upper - info.lower) as f64;
            assert!(
                width <= info.lower as f64 * 0.125 + 1.0,
                "slot {s} too wide"
            );
        }
    }

    #[test]
    fn replayed_midpoints_land_under_the_same_edges() {
        let h = Histogram::new();
        for (i, v) in [1u64, 4_999, 5_000, 5_001, 9_999, 10_000, 249_999, 250_001]
            .into_iter()
            .chain((1..2_000u64).map(|i| i * 7_919))
            .enumerate()
        {
            for _ in 0..=(i % 3) {
                h.record_nanos(v);
            }
        }
        let s = h.snapshot();
        let replay = Histogram::new();
        for b in s.buckets() {
            for _ in 0..b.count {
                replay.record(b.midpoint());
            }
        }
        assert_eq!(replay.snapshot().edge_counts(), s.edge_counts());
        assert_eq!(replay.snapshot().count(), s.count());
    }

    #[test]
    fn empty_is_zero() {
        let s = Histogram::new().snapshot();
        assert_eq!(s.p99(), Duration::ZERO);
        assert_eq!(s.mean(), Duration::ZERO);
    }
}
