//! Quiescent-state-based reclamation: a deleted slot is stamped with an epoch and reused
//! only when every online reader has announced a later one, i.e. has passed a point where
//! it holds no flow ids.

use crate::sync::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;

/// A reader slot that no thread holds.
const OFFLINE: u64 = u64::MAX;
/// Epoch stamps are kept in 30 bits of a slot word and compared with wrapping arithmetic.
pub(crate) const STAMP_BITS: u32 = 30;
const STAMP_MASK: u64 = (1 << STAMP_BITS) - 1;

pub(crate) struct Epochs {
    global: CachePadded<AtomicU64>,
    readers: Box<[CachePadded<AtomicU64>]>,
    /// Minimum announced epoch, cached; recomputed when a reuse check fails.
    safe: CachePadded<AtomicU64>,
}

impl Epochs {
    pub(crate) fn new(max_readers: usize) -> Self {
        Epochs {
            global: CachePadded::new(AtomicU64::new(1)),
            readers: (0..max_readers)
                .map(|_| CachePadded::new(AtomicU64::new(OFFLINE)))
                .collect(),
            safe: CachePadded::new(AtomicU64::new(1)),
        }
    }

    /// Claims a reader slot; `None` when all are taken.
    pub(crate) fn register(&self) -> Option<usize> {
        let now = self.global.load(Ordering::Acquire);
        self.readers.iter().position(|r| {
            r.compare_exchange(OFFLINE, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        })
    }

    pub(crate) fn unregister(&self, id: usize) {
        self.readers[id].store(OFFLINE, Ordering::Release);
    }

    /// The reader holds no references from before this call.
    #[inline]
    pub(crate) fn quiescent(&self, id: usize) {
        let now = self.global.load(Ordering::Acquire);
        self.readers[id].store(now, Ordering::Release);
    }

    /// A fresh stamp for a slot being retired (after it was made unreachable).
    pub(crate) fn retire_stamp(&self) -> u32 {
        (self.global.fetch_add(1, Ordering::AcqRel) & STAMP_MASK) as u32
    }

    /// True when a slot retired with `stamp` can be reused.
    pub(crate) fn reusable(&self, stamp: u32) -> bool {
        if Self::after(self.safe.load(Ordering::Acquire), stamp) {
            return true;
        }
        let min = self.recompute_safe();
        Self::after(min, stamp)
    }

    fn recompute_safe(&self) -> u64 {
        let mut min = self.global.load(Ordering::Acquire);
        for r in self.readers.iter() {
            let e = r.load(Ordering::Acquire);
            if e != OFFLINE {
                min = min.min(e);
            }
        }
        self.safe.fetch_max(min, Ordering::AcqRel).max(min)
    }

    /// `epoch` is strictly later than `stamp`, modulo 2^30 (stamps older than 2^29
    /// retirements are turned into empty slots by the sweeper long before).
    fn after(epoch: u64, stamp: u32) -> bool {
        let d = (epoch.wrapping_sub(u64::from(stamp))) & STAMP_MASK;
        d != 0 && d < 1 << (STAMP_BITS - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retired_slot_waits_for_every_online_reader() {
        let e = Epochs::new(4);
        let a = e.register().unwrap();
        let b = e.register().unwrap();
        let stamp = e.retire_stamp();
        assert!(!e.reusable(stamp));
        e.quiescent(a);
        assert!(!e.reusable(stamp), "reader b has not passed a quiescent point");
        e.quiescent(b);
        assert!(e.reusable(stamp));
        // An offline reader does not hold anything back.
        let s2 = e.retire_stamp();
        e.unregister(b);
        e.quiescent(a);
        assert!(e.reusable(s2));
    }

    #[test]
    fn registration_is_bounded() {
        let e = Epochs::new(2);
        assert!(e.register().is_some() && e.register().is_some());
        assert!(e.register().is_none());
    }
}
