//! The `Recycle` contract: reset in place, decide whether to keep, report heap bytes.
//!
//! The pool calls [`Recycle::reset`] on every object that comes back (a dropped guard or a
//! [`put`](super::Pool::put)) *before* it is retained, so a pooled object never carries the
//! previous user's data, and then [`Recycle::heap_bytes`] to charge it against the pool's byte
//! caps. Both run outside every lock of the pool.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, Hash};
use std::mem::size_of;

/// An object that can be reset for reuse and reports the heap memory it holds.
///
/// Implement it for your own scratch types; the implementations below cover the usual
/// buffers. [`reset`](Recycle::reset) should clear the contents but keep the capacity (that is what pooling
/// saves); returning `false` tells the pool to drop the object instead of keeping it.
///
/// ```
/// use poolguard::object::Recycle;
///
/// struct Encoder { out: Vec<u8>, depth: usize }
///
/// impl Recycle for Encoder {
///     fn reset(&mut self) -> bool {
///         self.depth = 0;
///         self.out.reset()
///     }
///     fn heap_bytes(&self) -> usize {
///         self.out.heap_bytes()
///     }
/// }
/// ```
pub trait Recycle {
    /// Resets the object in place for its next user. Returns whether it is worth keeping.
    ///
    /// A panic here is caught by the pool: the object is dropped and counted as a
    /// refused-by-reset discard; the pool stays usable and its accounting exact.
    fn reset(&mut self) -> bool;

    /// Heap bytes this object holds (its capacity, not its length), as charged against
    /// `max_object_bytes` and `max_idle_bytes`. An estimate is fine; it must be cheap.
    fn heap_bytes(&self) -> usize;
}

impl<T> Recycle for Vec<T> {
    fn reset(&mut self) -> bool {
        self.clear();
        true
    }
    fn heap_bytes(&self) -> usize {
        self.capacity().saturating_mul(size_of::<T>())
    }
}

impl Recycle for String {
    fn reset(&mut self) -> bool {
        self.clear();
        true
    }
    fn heap_bytes(&self) -> usize {
        self.capacity()
    }
}

impl<T> Recycle for VecDeque<T> {
    fn reset(&mut self) -> bool {
        self.clear();
        true
    }
    fn heap_bytes(&self) -> usize {
        self.capacity().saturating_mul(size_of::<T>())
    }
}

/// Bytes of a swiss table with `capacity` slots of `slot` bytes: the slots plus one control
/// byte each (an estimate: the table rounds buckets up to a power of two).
fn table_bytes(capacity: usize, slot: usize) -> usize {
    if capacity == 0 {
        return 0;
    }
    capacity.saturating_mul(slot.saturating_add(1))
}

impl<K: Eq + Hash, V, S: BuildHasher> Recycle for HashMap<K, V, S> {
    fn reset(&mut self) -> bool {
        self.clear();
        true
    }
    fn heap_bytes(&self) -> usize {
        table_bytes(self.capacity(), size_of::<(K, V)>())
    }
}

impl<K: Eq + Hash, S: BuildHasher> Recycle for HashSet<K, S> {
    fn reset(&mut self) -> bool {
        self.clear();
        true
    }
    fn heap_bytes(&self) -> usize {
        table_bytes(self.capacity(), size_of::<K>())
    }
}

/// A `BTreeMap` keeps no capacity when cleared, so pooling one saves only its own header;
/// it is implemented so that structures holding one can be pooled as a whole.
impl<K, V> Recycle for BTreeMap<K, V> {
    fn reset(&mut self) -> bool {
        self.clear();
        true
    }
    fn heap_bytes(&self) -> usize {
        self.len().saturating_mul(size_of::<(K, V)>())
    }
}

impl<T: Recycle + ?Sized> Recycle for Box<T> {
    fn reset(&mut self) -> bool {
        (**self).reset()
    }
    fn heap_bytes(&self) -> usize {
        std::mem::size_of_val::<T>(self).saturating_add((**self).heap_bytes())
    }
}

#[cfg(feature = "bytes")]
impl Recycle for bytes::BytesMut {
    fn reset(&mut self) -> bool {
        self.clear();
        true
    }
    fn heap_bytes(&self) -> usize {
        self.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vec_keeps_capacity_and_reports_bytes() {
        let mut v: Vec<u32> = Vec::with_capacity(100);
        v.extend(0..50);
        assert!(v.reset());
        assert!(v.is_empty());
        assert_eq!(v.heap_bytes(), v.capacity() * 4);
        assert!(v.capacity() >= 100);
    }

    #[test]
    fn maps_and_sets_clear() {
        let mut m: HashMap<u64, u64> = (0..10).map(|i| (i, i)).collect();
        assert!(m.heap_bytes() >= 10 * 16);
        assert!(m.reset());
        assert!(m.is_empty());
        assert!(m.heap_bytes() > 0, "capacity survives the reset");
        let mut s: HashSet<u8> = HashSet::new();
        assert_eq!(s.heap_bytes(), 0);
        s.insert(1);
        assert!(s.reset() && s.is_empty());
        let mut b: BTreeMap<u8, u8> = [(1, 2)].into_iter().collect();
        assert!(b.reset() && b.is_empty());
        assert_eq!(b.heap_bytes(), 0);
        let mut d: VecDeque<u16> = VecDeque::with_capacity(8);
        d.push_back(1);
        assert!(d.reset() && d.is_empty());
        assert!(d.heap_bytes() >= 16);
        let mut st = String::with_capacity(33);
        st.push('x');
        assert!(st.reset() && st.is_empty());
        assert!(st.heap_bytes() >= 33);
    }

    #[test]
    fn boxed_delegates() {
        let mut b: Box<Vec<u8>> = Box::new(Vec::with_capacity(64));
        b.push(1);
        assert!(b.reset());
        assert!(b.is_empty());
        assert_eq!(b.heap_bytes(), size_of::<Vec<u8>>() + b.capacity());
    }

    #[cfg(feature = "bytes")]
    #[test]
    fn bytes_mut() {
        let mut b = bytes::BytesMut::with_capacity(128);
        b.extend_from_slice(b"abc");
        assert!(b.reset());
        assert!(b.is_empty());
        assert!(b.heap_bytes() >= 128);
    }
}
