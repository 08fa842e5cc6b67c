//! Per-rule hit counters that cost a plain load and store per hit.
//!
//! A locked read-modify-write per classified packet would cost more than the lookup and,
//! being a full barrier on x86, stop a burst's lookups from overlapping. Instead each thread
//! claims one of [`SLOTS`] slots for its lifetime and owns a private array of counters per
//! table in that slot, which it alone writes. Single writer, so `load + 1 -> store` is
//! exact; readers sum the slots with relaxed loads (a u64 atomic never tears). A slot is
//! released when its thread exits (`Release`) and claimed by the next thread (`Acquire`),
//! so the new owner continues from the old owner's last count. Threads beyond the 64th
//! share one array with `fetch_add`.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Threads with private counters.
pub(crate) const SLOTS: usize = 64;

static TAKEN: AtomicU64 = AtomicU64::new(0);

struct Slot(Option<usize>);

impl Slot {
    fn claim() -> Slot {
        let mut taken = TAKEN.load(Ordering::Relaxed);
        while taken != u64::MAX {
            let i = (!taken).trailing_zeros();
            match TAKEN.compare_exchange_weak(taken, taken | 1 << i, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return Slot(Some(i as usize)),
                Err(now) => taken = now,
            }
        }
        Slot(None)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(i) = self.0 {
            TAKEN.fetch_and(!(1 << i), Ordering::Release);
        }
    }
}

thread_local! {
    static SLOT: Slot = Slot::claim();
}

fn my_slot() -> Option<usize> {
    // During thread teardown the slot may already be gone: count through the shared array.
    SLOT.try_with(|s| s.0).ok().flatten()
}

/// `len` counters, kept per thread slot.
pub(crate) struct HitCounters {
    len: usize,
    owned: Box<[OnceLock<Box<[AtomicU64]>>]>,
    shared: Box<[AtomicU64]>,
}

fn zeros(len: usize) -> Box<[AtomicU64]> {
    (0..len).map(|_| AtomicU64::new(0)).collect()
}

impl HitCounters {
    pub(crate) fn new(len: usize) -> Self {
        HitCounters {
            len,
            owned: (0..SLOTS).map(|_| OnceLock::new()).collect(),
            shared: zeros(len),
        }
    }

    /// The calling thread's view; take it once per burst.
    #[inline]
    pub(crate) fn local(&self) -> Local<'_> {
        match my_slot() {
            Some(i) => Local::Owned(self.owned[i].get_or_init(|| zeros(self.len))),
            None => Local::Shared(&self.shared),
        }
    }

    /// Sum over all threads.
    pub(crate) fn get(&self, i: usize) -> u64 {
        let owned: u64 = self
            .owned
            .iter()
            .filter_map(|o| o.get())
            .map(|c| c[i].load(Ordering::Relaxed))
            .sum();
        owned + self.shared[i].load(Ordering::Relaxed)
    }
}

/// One thread's counters.
pub(crate) enum Local<'a> {
    /// Written only by this thread.
    Owned(&'a [AtomicU64]),
    /// Shared by threads that found no free slot.
    Shared(&'a [AtomicU64]),
}

impl Local<'_> {
    #[inline]
    pub(crate) fn bump(&self, i: usize) {
        match self {
            Local::Owned(c) => c[i].store(c[i].load(Ordering::Relaxed) + 1, Ordering::Relaxed),
            Local::Shared(c) => {
                c[i].fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_many_threads_are_exact() {
        let c = HitCounters::new(3);
        // More threads than slots, several rounds so slots are released and reclaimed.
        for _ in 0..3 {
            std::thread::scope(|s| {
                for t in 0..(SLOTS + 8) {
                    let c = &c;
                    s.spawn(move || {
                        let l = c.local();
                        for _ in 0..1000 {
                            l.bump(t % 3);
                        }
                    });
                }
            });
        }
        let total: u64 = (0..3).map(|i| c.get(i)).sum();
        assert_eq!(total, 3 * (SLOTS as u64 + 8) * 1000);
        assert!(c.get(0) >= 3 * 1000 * (SLOTS as u64 / 3));
    }
}
