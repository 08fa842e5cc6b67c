//! Table-wide counters. They change on inserts, deletes and refusals, never on a lookup,
//! and each sits on its own cache line.

use crate::sync::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) inserts: CachePadded<AtomicU64>,
    pub(crate) deletes: CachePadded<AtomicU64>,
    pub(crate) evictions: CachePadded<AtomicU64>,
    pub(crate) full_refusals: CachePadded<AtomicU64>,
    pub(crate) quota_refusals: CachePadded<AtomicU64>,
    pub(crate) hold_refusals: CachePadded<AtomicU64>,
    pub(crate) hold_overflows: CachePadded<AtomicU64>,
    pub(crate) aged: CachePadded<AtomicU64>,
}

pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// A snapshot of the table's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlowTableStats {
    /// Slots in the table.
    pub capacity: u64,
    /// Live flows (each direction counts).
    pub entries: u64,
    /// Flows installed.
    pub inserts: u64,
    /// Flows removed by delete, ageing or eviction.
    pub deletes: u64,
    /// Flows evicted to make room.
    pub evictions: u64,
    /// Inserts refused because both buckets were full.
    pub full_refusals: u64,
    /// Inserts refused by a per-VRF quota.
    pub quota_refusals: u64,
    /// New held flows refused because every hold record was in use.
    pub hold_refusals: u64,
    /// Packets not parked because their flow's parking space was full.
    pub hold_overflows: u64,
    /// Flows removed by the sweeper for idleness.
    pub aged: u64,
    /// Flows currently held.
    pub held: u64,
}

impl FlowTableStats {
    /// Occupancy as a fraction of capacity: the "table pressure" operators alert on.
    pub fn occupancy(&self) -> f64 {
        self.entries as f64 / self.capacity as f64
    }
}

impl Counters {
    pub(crate) fn snapshot(&self, capacity: u64, held: u64) -> FlowTableStats {
        let g = |c: &CachePadded<AtomicU64>| c.load(Ordering::Relaxed);
        // Live flows are those installed and not yet removed. Inserts are added once per
        // call (per burst for `insert_pairs`), so while inserts and deletes race this can
        // briefly read low; at rest it is exact.
        let deletes = g(&self.deletes);
        let inserts = g(&self.inserts);
        FlowTableStats {
            capacity,
            entries: inserts.saturating_sub(deletes),
            inserts,
            deletes,
            evictions: g(&self.evictions),
            full_refusals: g(&self.full_refusals),
            quota_refusals: g(&self.quota_refusals),
            hold_refusals: g(&self.hold_refusals),
            hold_overflows: g(&self.hold_overflows),
            aged: g(&self.aged),
            held,
        }
    }
}
