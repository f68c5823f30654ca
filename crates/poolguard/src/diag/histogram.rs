//! A lock-free latency histogram with bounded relative error.
//!
//! Values (nanoseconds) fall into log-linear buckets: exact below 8, then eight buckets per
//! power of two, so any reported quantile is within 12.5 % of the true value. Recording is
//! two relaxed `fetch_add`s and one `fetch_max`; the histogram never allocates after creation.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

const SUB_BITS: u32 = 3;
const SUB: usize = 1 << SUB_BITS;
/// Enough buckets for every `u64`: the largest index is `(63 - 3 + 1) * 8 + 7`.
const BUCKETS: usize = (64 - SUB_BITS as usize + 1) * SUB;

fn bucket_of(v: u64) -> usize {
    if v < SUB as u64 {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros();
    let shift = msb - SUB_BITS;
    let sub = ((v >> shift) as usize) & (SUB - 1);
    (shift as usize + 1) * SUB + sub
}

/// The largest value that falls into bucket `i` (what a quantile reports).
fn bucket_upper(i: usize) -> u64 {
    if i < SUB {
        return i as u64;
    }
    let shift = (i / SUB - 1) as u32;
    let sub = (i % SUB) as u64;
    let lower = (SUB as u64 + sub) << shift;
    lower.saturating_add((1u64 << shift) - 1)
}

/// A concurrent histogram of durations.
pub struct Histogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
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
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_ns: AtomicU64::new(0),
            max_ns: AtomicU64::new(0),
        }
    }

    /// Records one duration (saturating at `u64::MAX` nanoseconds).
    pub fn record(&self, d: Duration) {
        self.record_nanos(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Records one value in nanoseconds.
    pub fn record_nanos(&self, ns: u64) {
        self.buckets[bucket_of(ns)].fetch_add(1, Relaxed);
        self.count.fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(ns, Relaxed);
        self.max_ns.fetch_max(ns, Relaxed);
    }

    /// A consistent-enough copy for reporting (concurrent records may be half-counted).
    pub fn snapshot(&self) -> HistogramSnapshot {
        let buckets: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        HistogramSnapshot {
            count: buckets.iter().sum(),
            sum_ns: self.sum_ns.load(Relaxed),
            max_ns: self.max_ns.load(Relaxed),
            buckets,
        }
    }
}

/// A point-in-time copy of a [`Histogram`].
#[derive(Clone, PartialEq, Eq)]
pub struct HistogramSnapshot {
    count: u64,
    sum_ns: u64,
    max_ns: u64,
    buckets: Vec<u64>,
}

impl HistogramSnapshot {
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
                return Duration::from_nanos(bucket_upper(i).min(self.max_ns));
            }
        }
        self.max()
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

/// The smallest value that falls into bucket `i`.
fn bucket_lower(i: usize) -> u64 {
    if i < SUB {
        return i as u64;
    }
    let shift = (i / SUB - 1) as u32;
    (SUB as u64 + (i % SUB) as u64) << shift
}

/// One non-empty bucket of a [`HistogramSnapshot`]: every value recorded into it lies in
/// `lower..=upper`, and `upper` is at most 12.5 % above `lower`.
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
    /// replayed into another histogram (within 6.25 % of each of them).
    pub fn midpoint(&self) -> Duration {
        self.lower + (self.upper - self.lower) / 2
    }
}

impl HistogramSnapshot {
    /// The non-empty buckets, smallest values first.
    pub fn buckets(&self) -> impl Iterator<Item = Bucket> + '_ {
        self.buckets
            .iter()
            .enumerate()
            .filter(|&(_, &n)| n > 0)
            .map(|(i, &count)| Bucket {
                lower: Duration::from_nanos(bucket_lower(i)),
                upper: Duration::from_nanos(bucket_upper(i)),
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
        HistogramSnapshot {
            count: buckets.iter().sum(),
            sum_ns: self.sum_ns.saturating_sub(earlier.sum_ns),
            max_ns: self.max_ns,
            buckets,
        }
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
        assert_eq!(second.since(&second).buckets().count(), 0);
    }

    #[test]
    fn empty_is_zero() {
        let s = Histogram::new().snapshot();
        assert_eq!(s.p99(), Duration::ZERO);
        assert_eq!(s.mean(), Duration::ZERO);
    }
}
