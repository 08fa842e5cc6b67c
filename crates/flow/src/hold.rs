//! Packets parked on held flows while the slow path decides.
//!
//! A held flow owns one record: a count word (generation, closed bit, count) and up to
//! [`MAX_PARKED`] tokens (frame ids). Parking is a compare-and-swap on the count; resolving
//! closes the record and drains it. The generation in the count word, also kept in the
//! flow entry, stops a late parker from landing in a record reused by another flow.

use crate::sync::{AtomicU32, AtomicU64, Ordering};

use crossbeam_queue::ArrayQueue;

/// Most packets a held flow can park.
pub const MAX_PARKED: usize = 8;

const CLOSED: u32 = 1 << 15;
const COUNT_MASK: u32 = CLOSED - 1;
const WRITTEN: u64 = 1 << 32;

/// Outcome of parking a packet on a held flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParkResult {
    /// The packet is parked; it comes back from `resolve` (or from the sweeper as dropped).
    Parked,
    /// The flow's parking space is full (counted); the caller keeps the packet (drops it).
    Overflow,
    /// The flow is no longer held: look at its action and forward the packet now.
    Resolved,
}

struct Record {
    /// generation << 16 | closed | count
    state: AtomicU32,
    tokens: [AtomicU64; MAX_PARKED],
}

pub(crate) struct HoldPool {
    records: Box<[Record]>,
    free: ArrayQueue<u16>,
    per_flow: u32,
}

/// A held flow's claim on a record: index and generation, as stored in the flow entry.
pub(crate) type Ticket = u32;

impl HoldPool {
    pub(crate) fn new(max_held: usize, per_flow: usize) -> Self {
        let free = ArrayQueue::new(max_held);
        for i in 0..max_held {
            // Capacity equals the number pushed.
            let _ = free.push(i as u16);
        }
        HoldPool {
            records: (0..max_held)
                .map(|_| Record {
                    state: AtomicU32::new(CLOSED),
                    tokens: Default::default(),
                })
                .collect(),
            free,
            per_flow: per_flow as u32,
        }
    }

    /// Takes a record; `None` when every record is in use.
    pub(crate) fn acquire(&self) -> Option<Ticket> {
        let i = self.free.pop()?;
        let r = &self.records[usize::from(i)];
        // 15 bits: a ticket fits the 31 bits a flow entry keeps it in.
        let generation = (r.state.load(Ordering::Acquire) >> 16).wrapping_add(1) & 0x7fff;
        r.state.store(generation << 16, Ordering::Release);
        Some(generation << 16 | u32::from(i))
    }

    pub(crate) fn park(&self, ticket: Ticket, token: u32) -> ParkResult {
        let (r, generation) = self.record(ticket);
        let mut s = r.state.load(Ordering::Acquire);
        loop {
            if s >> 16 != generation || s & CLOSED != 0 {
                return ParkResult::Resolved;
            }
            let n = s & COUNT_MASK;
            if n >= self.per_flow {
                return ParkResult::Overflow;
            }
            match r
                .state
                .compare_exchange_weak(s, s + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    r.tokens[n as usize].store(WRITTEN | u64::from(token), Ordering::Release);
                    return ParkResult::Parked;
                }
                Err(now) => s = now,
            }
        }
    }

    /// Closes the record, hands every parked token to `out`, and frees the record.
    pub(crate) fn release(&self, ticket: Ticket, out: &mut impl FnMut(u32)) -> usize {
        let (r, generation) = self.record(ticket);
        let s = r.state.fetch_or(CLOSED, Ordering::AcqRel);
        if s >> 16 != generation || s & CLOSED != 0 {
            return 0; // already released
        }
        let n = (s & COUNT_MASK) as usize;
        for slot in &r.tokens[..n] {
            // A parker that won the count CAS stores its token right after; wait for it.
            let t = loop {
                let t = slot.swap(0, Ordering::AcqRel);
                if t & WRITTEN != 0 {
                    break t;
                }
                crate::sync::spin();
            };
            out(t as u32);
        }
        // The record index came from this pool, so there is room to return it.
        let _ = self.free.push((ticket & 0xffff) as u16);
        n
    }

    pub(crate) fn in_use(&self) -> usize {
        self.records.len() - self.free.len()
    }

    fn record(&self, ticket: Ticket) -> (&Record, u32) {
        (&self.records[(ticket & 0xffff) as usize], ticket >> 16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn park_overflow_release() {
        let pool = HoldPool::new(2, 3);
        let t = pool.acquire().unwrap();
        for tok in 10..13 {
            assert_eq!(pool.park(t, tok), ParkResult::Parked);
        }
        assert_eq!(pool.park(t, 99), ParkResult::Overflow);
        let mut got = Vec::new();
        assert_eq!(pool.release(t, &mut |x| got.push(x)), 3);
        assert_eq!(got, vec![10, 11, 12]);
        assert_eq!(pool.park(t, 5), ParkResult::Resolved);
        assert_eq!(pool.release(t, &mut |_| panic!("released twice")), 0);
    }

    #[test]
    fn pool_is_bounded_and_records_are_reused_safely() {
        let pool = HoldPool::new(1, 2);
        let t1 = pool.acquire().unwrap();
        assert!(pool.acquire().is_none());
        pool.release(t1, &mut |_| {});
        let t2 = pool.acquire().unwrap();
        assert_ne!(t1, t2, "a new generation");
        // A late parker with the old ticket does not land in the new flow's record.
        assert_eq!(pool.park(t1, 1), ParkResult::Resolved);
        assert_eq!(pool.park(t2, 2), ParkResult::Parked);
        assert_eq!(pool.in_use(), 1);
    }
}
