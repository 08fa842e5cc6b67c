//! Per-worker memory of where packets go, so a flow hit does not repeat the control
//! plane's hash lookups for every packet.
//!
//! A flow caches its nexthop id; turning that into an egress port and MACs takes a nexthop
//! lookup, a neighbour lookup (two for VXLAN: the underlay next hop and the inner
//! destination) and, for tunnels, an underlay route. These answers change only when the
//! FIB is republished or the learned-neighbour table changes, so each worker keeps them
//! and drops them all when either does. A learned MAC is kept only until it is due for
//! confirmation, so the refresh request still goes out on time.

use std::net::IpAddr;
use std::sync::Arc;

use fib::Resolution;
use wire::ethernet::MacAddr;
use wire::flow::FlowKey;

use crate::encap::Outer;
use crate::neigh::LearnedMap;
use crate::stats::DropReason;

/// Where a packet goes once decided. `next` is the IP whose MAC `mac` is, or is to be
/// resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    /// To the host's own stack (the exception path).
    Host,
    /// Out of `port` (whose MAC is `src_mac` and MTU `mtu`) to `mac`, as is (L3
    /// rewritten).
    Direct {
        port: u16,
        next: IpAddr,
        mac: Option<MacAddr>,
        src_mac: MacAddr,
        mtu: u16,
    },
    /// Encapsulated in `outer` (which holds `mac`, or zeros until it is known), then out
    /// of `port`, whose MTU is `mtu`, which leaves `inner_mtu` bytes for the packet.
    Encap {
        outer: Outer,
        port: u16,
        next: IpAddr,
        mac: Option<MacAddr>,
        mtu: u16,
        inner_mtu: u16,
    },
}

/// A plan that never goes stale by age (static neighbours, configured MACs): valid until
/// the FIB or the learned table changes.
pub(crate) const FOREVER: u32 = u32::MAX;

/// Plans by (nexthop, destination); direct-mapped, a collision replaces.
pub(crate) struct PlanCache {
    /// The FIB's egress generation and the path MTUs' the plans were made with.
    generations: (u32, u32),
    /// The learned table the plans were made with (held, so its address cannot be reused
    /// by a newer table while it is compared against).
    learned: Option<Arc<LearnedMap>>,
    slots: Box<[Option<Entry>]>,
}

/// Keyed by the destination as flow keys hold it (family and 16 address bytes), so a hit
/// compares bytes without building an `IpAddr`.
#[derive(Clone, Copy)]
struct Entry {
    nexthop: u32,
    family: u8,
    dst: [u8; 16],
    /// Reusable while the tables' clock is below this (seconds).
    until: u32,
    plan: Plan,
}

const PLAN_BITS: u32 = 8;

impl PlanCache {
    pub(crate) fn new() -> Self {
        PlanCache {
            generations: (0, 0),
            learned: None,
            slots: vec![None; 1 << PLAN_BITS].into(),
        }
    }

    /// Once per burst: forgets everything if what nexthops resolve to may have changed (the
    /// FIB's egress generation, with the path MTUs' generation in `generations`) or the
    /// learned table did.
    #[inline]
    pub(crate) fn sync(&mut self, generations: (u32, u32), learned: &Arc<LearnedMap>) {
        let same = self.learned.as_ref().is_some_and(|l| Arc::ptr_eq(l, learned));
        if !same || self.generations != generations {
            self.slots.fill(None);
            self.generations = generations;
            self.learned = Some(Arc::clone(learned));
        }
    }

    #[inline]
    fn slot(nexthop: u32, to: &FlowKey) -> usize {
        let d = u128::from_le_bytes(to.dst);
        let d = (d as u64) ^ (d >> 64) as u64;
        ((d ^ u64::from(nexthop) << 32).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - PLAN_BITS)) as usize
    }

    /// The plan for the destination of flow `to` via `nexthop`, if kept and still fresh
    /// at `now`.
    #[inline]
    pub(crate) fn get(&self, nexthop: u32, to: &FlowKey, now: u32) -> Option<&Plan> {
        match &self.slots[Self::slot(nexthop, to)] {
            Some(e) if e.nexthop == nexthop && e.dst == to.dst && e.family == to.family && now < e.until => {
                Some(&e.plan)
            }
            _ => None,
        }
    }

    /// Keeps `plan` while the clock is below `until` (nothing kept if it already is not).
    pub(crate) fn put(&mut self, nexthop: u32, to: &FlowKey, plan: Plan, until: u32, now: u32) {
        if now < until {
            self.slots[Self::slot(nexthop, to)] = Some(Entry {
                nexthop,
                family: to.family,
                dst: to.dst,
                until,
                plan,
            });
        }
    }
}

/// Where a tunnel's outer packets go: egress port, next hop, and its MAC if configured.
pub(crate) type Underlay = (u32, IpAddr, Option<MacAddr>);

/// Tunnel destinations one worker keeps resolved.
const UNDERLAY_CACHE: usize = 16;

/// Tunnel underlay resolutions reused across packets while the FIB's egress generation
/// stays (route changes away from tunnels' far ends keep it): every
/// packet into a tunnel would otherwise repeat the same LPM and nexthop lookups for the
/// tunnel's destination. Resolutions the flow hash picked (an ECMP underlay) are not kept.
#[derive(Default)]
pub(crate) struct UnderlayCache {
    generation: u32,
    /// (underlay VRF, tunnel destination) -> where its packets go.
    entries: Vec<((u32, IpAddr), Underlay)>,
    /// The entry the next insert replaces once full.
    next: usize,
}

impl UnderlayCache {
    /// Where packets to `dst` in `vrf` go, and whether that holds for every flow (`false`:
    /// an ECMP member picked by this flow's hash).
    pub(crate) fn resolve(
        &mut self,
        fib: &fib::Snapshot,
        vrf: u32,
        dst: IpAddr,
        hash: u64,
    ) -> Result<(Underlay, bool), DropReason> {
        if self.generation != fib.egress_generation() {
            self.entries.clear();
            self.generation = fib.egress_generation();
        }
        if let Some((_, hit)) = self.entries.iter().find(|(k, _)| *k == (vrf, dst)) {
            return Ok((*hit, true));
        }
        let r = fib.resolve(vrf, dst, hash).map_err(|_| DropReason::NoRoute)?;
        let Resolution::Interface { port, next_hop, mac } = r.resolution else {
            return Err(DropReason::Unsupported);
        };
        let entry = ((vrf, dst), (port, next_hop, mac));
        if !r.by_hash {
            if self.entries.len() < UNDERLAY_CACHE {
                self.entries.push(entry);
            } else {
                self.entries[self.next] = entry;
                self.next = (self.next + 1) % UNDERLAY_CACHE;
            }
        }
        Ok((entry.1, !r.by_hash))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A flow to `dst`.
    fn to(dst: &str) -> FlowKey {
        match ip(dst) {
            IpAddr::V4(d) => FlowKey::v4(std::net::Ipv4Addr::UNSPECIFIED, d, 17, 1, 2),
            IpAddr::V6(d) => FlowKey::v6(std::net::Ipv6Addr::UNSPECIFIED, d, 17, 1, 2),
        }
    }

    fn direct(port: u16) -> Plan {
        Plan::Direct {
            port,
            next: ip("10.0.0.1"),
            mac: Some(MacAddr([2, 0, 0, 0, 0, 1])),
            src_mac: MacAddr([2, 0, 0, 0, 0, 2]),
            mtu: 1500,
        }
    }

    #[test]
    fn plans_are_kept_until_their_age_or_a_table_change() {
        let learned = Arc::new(LearnedMap::default());
        let mut c = PlanCache::new();
        c.sync((1, 0), &learned);
        c.put(7, &to("10.0.0.1"), direct(1), 60, 10);
        c.put(7, &to("fd00::1"), direct(2), FOREVER, 10);
        assert_eq!(c.get(7, &to("10.0.0.1"), 59), Some(&direct(1)));
        assert_eq!(c.get(7, &to("10.0.0.1"), 60), None, "due for confirmation");
        assert_eq!(c.get(8, &to("10.0.0.1"), 10), None, "another nexthop");
        assert_eq!(c.get(7, &to("10.0.0.2"), 10), None, "another destination");
        assert_eq!(c.get(7, &to("fd00::1"), 1 << 30), Some(&direct(2)));
        // Already stale: not kept.
        c.put(9, &to("10.0.0.9"), direct(3), 10, 10);
        assert_eq!(c.get(9, &to("10.0.0.9"), 10), None);

        c.sync((1, 0), &learned);
        assert_eq!(c.get(7, &to("fd00::1"), 10), Some(&direct(2)), "nothing changed");
        c.sync((2, 0), &learned);
        assert_eq!(c.get(7, &to("fd00::1"), 10), None, "FIB republished");
        c.put(7, &to("fd00::1"), direct(2), FOREVER, 10);
        // An equal but different table (a neighbour was learned and expired again).
        c.sync((2, 0), &Arc::new(LearnedMap::default()));
        assert_eq!(c.get(7, &to("fd00::1"), 10), None, "learned table replaced");
    }
}
