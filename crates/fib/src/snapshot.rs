//! An immutable, complete view of all forwarding state, and the atomically swapped
//! pointer workers read it through.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use arc_swap::ArcSwap;
use wire::ethernet::MacAddr;

use crate::dir248::Dir248;
use crate::ecmp::EcmpGroup;
use crate::lpm::{BigTable, Lpm, Lpm4, Lpm6};
use crate::nexthop::{Encap, Neighbor, NeighborState, Nexthop, NexthopId, VrfId};
use crate::prefix::Addr;
use crate::recent::Recent;
use crate::trie6::Trie6;

/// The tables' hash maps: keys are small ids and addresses looked up per packet, so a
/// fast hasher (ahash) rather than SipHash.
pub(crate) type Map<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;

/// Deepest chain of VRF translations followed before giving up.
pub const MAX_TRANSLATE_DEPTH: usize = 4;

pub(crate) struct VrfTables {
    pub(crate) v4: Lpm4,
    pub(crate) v6: Lpm6,
    pub(crate) routes: usize,
}

pub(crate) enum Compiled {
    Plain(Nexthop),
    Ecmp(EcmpGroup),
}

/// Why a destination could not be resolved. Each is counted in [`FibStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    /// No VRF with this id.
    NoVrf,
    /// No route covers the destination.
    NoRoute,
    /// The route points at a nexthop id that is not defined.
    UnresolvedNexthop(NexthopId),
    /// VRF translations chained deeper than [`MAX_TRANSLATE_DEPTH`] (a loop).
    TranslateLoop,
}

/// Where a packet goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Drop.
    Discard,
    /// Deliver to this node.
    Receive,
    /// Send out of `port` to `next_hop` (`mac` is `None` while the neighbour is unknown
    /// or incomplete: resolve it and park the packet).
    Interface {
        /// Egress port.
        port: u32,
        /// The IP whose MAC is needed.
        next_hop: IpAddr,
        /// Its MAC, if resolved.
        mac: Option<MacAddr>,
    },
    /// Encapsulate; the underlay resolution says where the outer packet goes.
    Tunnel {
        /// Encapsulation.
        encap: Encap,
        /// Outer source.
        src: IpAddr,
        /// Outer destination.
        dst: IpAddr,
        /// Egress port of the outer packet.
        port: u32,
        /// Next hop of the outer packet.
        next_hop: IpAddr,
        /// Its MAC, if resolved.
        mac: Option<MacAddr>,
    },
}

/// A resolution and the choices that led to it, to cache in a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    /// The final (non-ECMP, non-translate) nexthop.
    pub nexthop: NexthopId,
    /// ECMP member index chosen (0 without ECMP).
    pub ecmp_member: u8,
    /// Whether the flow hash picked an ECMP member on the way (here or in a tunnel's
    /// underlay): then another flow to the same destination may resolve differently.
    pub by_hash: bool,
    /// What to do.
    pub resolution: Resolution,
}

/// Where a flow goes, without the neighbour: what [`Snapshot::route`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The final (non-ECMP, non-translate) nexthop.
    pub nexthop: NexthopId,
    /// ECMP member index chosen (0 without ECMP).
    pub ecmp_member: u8,
    /// Whether the flow hash picked an ECMP member on the way (here or in a tunnel's
    /// underlay).
    pub by_hash: bool,
}

/// Counters of a FIB, shared by all its snapshots.
#[derive(Debug, Default)]
pub struct FibStats {
    pub(crate) no_route: AtomicU64,
    pub(crate) unresolved_nexthop: AtomicU64,
    pub(crate) translate_loop: AtomicU64,
}

impl FibStats {
    /// (no route, unresolved nexthop, translate loop) counts. A neighbour not in the table
    /// is not a miss here: the dataplane may know it (learned) or resolve it.
    pub fn get(&self) -> (u64, u64, u64) {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        (g(&self.no_route), g(&self.unresolved_nexthop), g(&self.translate_loop))
    }
}

/// One published generation of all forwarding state. Immutable: workers hold it for a
/// burst and never see a later change half-applied.
pub struct Snapshot {
    pub(crate) generation: u32,
    pub(crate) vrfs: Vec<Option<Arc<VrfTables>>>,
    pub(crate) nexthops: Arc<Map<NexthopId, Compiled>>,
    pub(crate) labels: Arc<Map<u32, NexthopId>>,
    pub(crate) vnis: Arc<Map<u32, VrfId>>,
    pub(crate) neighbors: Arc<Map<(u32, IpAddr), Neighbor>>,
    pub(crate) stats: Arc<FibStats>,
    /// What the last publishes changed.
    pub(crate) recent: Recent,
    /// See [`Snapshot::egress_generation`].
    pub(crate) egress_generation: u32,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Snapshot {
    /// Generation number (starts at 1, +1 per publish): flows cache it and are
    /// re-evaluated when it changes.
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// The generation of the last publish that may have changed what a nexthop resolves
    /// to: its definition, labels, VNIs, neighbours, the route to a tunnel's far end (or a
    /// publish by another builder). Caches of nexthops' egress (MACs, ports, tunnel
    /// headers, underlay next hops) stay valid while it stays the same, however many
    /// routes change.
    pub fn egress_generation(&self) -> u32 {
        self.egress_generation
    }

    /// Whether [`route`](Self::route) for `dst` in `vrf` answers now what it answered in
    /// generation `since`'s snapshot, where it gave final nexthop `decided`, known with
    /// little looking: true only if this snapshot remembers every publish since (the last
    /// 32) and none of them changed a prefix holding `dst` in `vrf`, labels, VNIs,
    /// neighbours or a VRF a nexthop looks up in, nor a nexthop on the way: the route's
    /// (looked up again only when nexthops changed) or `decided`. A way through a VRF translation or a tunnel counts any nexthop
    /// change as on it. A flow cached under
    /// `since` then needs no new decision: a service's ECMP group changing its backends
    /// leaves the flows of other routes alone. `false` means "decide again", not
    /// "changed".
    pub fn route_unchanged_since(&self, since: u32, vrf: VrfId, dst: IpAddr, decided: NexthopId) -> bool {
        // The route's nexthop, found at the first changed nexthop: `None` when the way
        // cannot be told (a translation, a tunnel, a route not ending at `decided`).
        let mut route: Option<Option<NexthopId>> = None;
        self.recent
            .unchanged_since(self.generation, since, vrf, dst, |changed| {
                match route.get_or_insert_with(|| self.plain_way(vrf, dst, decided)) {
                    Some(r) => changed == decided || changed == *r,
                    None => true,
                }
            })
    }

    /// The nexthop of the route to `dst` in `vrf` if the way ends at plain nexthop
    /// `decided` through it alone, or through its ECMP group of plain members (whose
    /// other members' changes leave the group's buckets as they were); `None` if the way
    /// passes a translation or a tunnel, or does not end at `decided`.
    fn plain_way(&self, vrf: VrfId, dst: IpAddr, decided: NexthopId) -> Option<NexthopId> {
        let plain = |id: &NexthopId| {
            matches!(
                self.nexthops.get(id),
                Some(Compiled::Plain(
                    Nexthop::Interface { .. } | Nexthop::Discard | Nexthop::Receive
                ))
            )
        };
        if !plain(&decided) {
            return None;
        }
        let route = self.lookup(vrf, dst).ok()?;
        let through = match self.nexthops.get(&route)? {
            Compiled::Plain(_) => route == decided,
            Compiled::Ecmp(g) => g.members.iter().all(|m| plain(&m.0)) && g.members.iter().any(|m| m.0 == decided),
        };
        through.then_some(route)
    }

    fn vrf(&self, vrf: VrfId) -> Option<&VrfTables> {
        self.vrfs.get(vrf as usize)?.as_deref()
    }

    /// Longest-prefix match: the nexthop id of the best route to `dst` in `vrf`.
    #[inline]
    pub fn lookup(&self, vrf: VrfId, dst: IpAddr) -> Result<NexthopId, Miss> {
        let t = self.vrf(vrf).ok_or(Miss::NoVrf)?;
        let hit = match dst {
            IpAddr::V4(a) => t.v4.lookup(a.into()),
            IpAddr::V6(a) => t.v6.lookup(a.into()),
        };
        hit.ok_or(Miss::NoRoute)
    }

    /// Starts loading what a lookup of `dst` in `vrf` reads first (a big table's line; a
    /// small table stays in cache): issued for every new flow of a burst before any is
    /// decided, the lookups' misses overlap instead of coming one after another.
    #[inline]
    pub fn prefetch(&self, vrf: VrfId, dst: IpAddr) {
        if let Some(t) = self.vrf(vrf) {
            match dst {
                IpAddr::V4(a) => t.v4.prefetch(a.into()),
                IpAddr::V6(a) => t.v6.prefetch(a.into()),
            }
        }
    }

    /// Looks up a burst of IPv4 destinations in one VRF (prefetching across the burst).
    pub fn lookup_v4_burst(&self, vrf: VrfId, dsts: &[u32], out: &mut [Option<NexthopId>]) {
        match self.vrf(vrf) {
            Some(t) => t.v4.lookup_burst(dsts, out),
            None => out.iter_mut().for_each(|o| *o = None),
        }
    }

    /// Looks up a burst of IPv6 destinations in one VRF (level by level, prefetching).
    pub fn lookup_v6_burst(&self, vrf: VrfId, dsts: &[u128], out: &mut [Option<NexthopId>]) {
        match self.vrf(vrf) {
            Some(t) => t.v6.lookup_burst(dsts, out),
            None => out.iter_mut().for_each(|o| *o = None),
        }
    }

    /// Full resolution for a new flow: route lookup, VRF translations, the ECMP member
    /// for `flow_hash`, and the neighbour (for tunnels, the underlay's). Misses are
    /// counted.
    pub fn resolve(&self, vrf: VrfId, dst: IpAddr, flow_hash: u64) -> Result<Resolved, Miss> {
        self.counted(self.resolve_inner(vrf, dst, flow_hash))
    }

    /// [`Snapshot::resolve`] without counting a miss: for diagnostics (an operator's
    /// `route get`), which are not traffic.
    pub fn resolve_uncounted(&self, vrf: VrfId, dst: IpAddr, flow_hash: u64) -> Result<Resolved, Miss> {
        self.resolve_inner(vrf, dst, flow_hash)
    }

    /// What a flow caches: [`Snapshot::resolve`] without the neighbour lookups (a tunnel's
    /// underlay is still checked to be routable), for the flow-setup path that keeps only
    /// the nexthop and the ECMP member. Misses are counted.
    pub fn route(&self, vrf: VrfId, dst: IpAddr, flow_hash: u64) -> Result<Route, Miss> {
        self.counted(self.route_checked(vrf, dst, flow_hash))
    }

    fn counted<T>(&self, r: Result<T, Miss>) -> Result<T, Miss> {
        match r {
            Err(Miss::NoRoute | Miss::NoVrf) => bump(&self.stats.no_route),
            Err(Miss::UnresolvedNexthop(_)) => bump(&self.stats.unresolved_nexthop),
            Err(Miss::TranslateLoop) => bump(&self.stats.translate_loop),
            Ok(_) => {}
        }
        r
    }

    fn route_checked(&self, vrf: VrfId, dst: IpAddr, flow_hash: u64) -> Result<Route, Miss> {
        let (mut route, nh) = self.route_inner(vrf, dst, flow_hash)?;
        if let &Nexthop::Tunnel {
            dst: outer,
            underlay_vrf,
            ..
        } = nh
        {
            let (under, unh) = self.route_inner(underlay_vrf, outer, flow_hash)?;
            if !matches!(unh, Nexthop::Interface { .. }) {
                return Err(Miss::UnresolvedNexthop(route.nexthop));
            }
            route.by_hash |= under.by_hash;
        }
        Ok(route)
    }

    /// Route lookup, VRF translations and the ECMP member: the final nexthop (never a
    /// translation or a group).
    fn route_inner(&self, mut vrf: VrfId, dst: IpAddr, flow_hash: u64) -> Result<(Route, &Nexthop), Miss> {
        for _ in 0..MAX_TRANSLATE_DEPTH {
            let mut id = self.lookup(vrf, dst)?;
            let mut member = 0u8;
            let mut nh = self.nexthops.get(&id).ok_or(Miss::UnresolvedNexthop(id))?;
            let mut by_hash = false;
            if let Compiled::Ecmp(g) = nh {
                by_hash = true;
                let m = g.pick(flow_hash);
                member = m as u8;
                id = g.members[m].0;
                nh = self.nexthops.get(&id).ok_or(Miss::UnresolvedNexthop(id))?;
            }
            let Compiled::Plain(nh) = nh else {
                return Err(Miss::UnresolvedNexthop(id));
            };
            match nh {
                &Nexthop::VrfTranslate { vrf: to } => vrf = to,
                Nexthop::Ecmp { .. } => return Err(Miss::UnresolvedNexthop(id)),
                _ => {
                    let route = Route {
                        nexthop: id,
                        ecmp_member: member,
                        by_hash,
                    };
                    return Ok((route, nh));
                }
            }
        }
        Err(Miss::TranslateLoop)
    }

    fn resolve_inner(&self, vrf: VrfId, dst: IpAddr, flow_hash: u64) -> Result<Resolved, Miss> {
        let (route, nh) = self.route_inner(vrf, dst, flow_hash)?;
        let mut by_hash = route.by_hash;
        let resolution = match nh {
            Nexthop::Discard => Resolution::Discard,
            Nexthop::Receive => Resolution::Receive,
            &Nexthop::Interface { port, gateway } => {
                let next_hop = gateway.unwrap_or(dst);
                Resolution::Interface {
                    port,
                    next_hop,
                    mac: self.mac(port, next_hop),
                }
            }
            &Nexthop::Tunnel {
                encap,
                src,
                dst: outer,
                underlay_vrf,
                ..
            } => {
                let under = self.resolve_inner(underlay_vrf, outer, flow_hash)?;
                by_hash |= under.by_hash;
                match under.resolution {
                    Resolution::Interface { port, next_hop, mac } => Resolution::Tunnel {
                        encap,
                        src,
                        dst: outer,
                        port,
                        next_hop,
                        mac,
                    },
                    // A tunnel whose underlay is not a plain interface is not forwardable.
                    _ => return Err(Miss::UnresolvedNexthop(route.nexthop)),
                }
            }
            // `route_inner` never ends on these.
            Nexthop::VrfTranslate { .. } | Nexthop::Ecmp { .. } => return Err(Miss::UnresolvedNexthop(route.nexthop)),
        };
        Ok(Resolved {
            nexthop: route.nexthop,
            ecmp_member: route.ecmp_member,
            by_hash,
            resolution,
        })
    }

    /// The MAC of a usable neighbour.
    pub fn mac(&self, port: u32, ip: IpAddr) -> Option<MacAddr> {
        self.neighbors
            .get(&(port, ip))
            .filter(|n| n.state != NeighborState::Incomplete)
            .map(|n| n.mac)
    }

    /// A neighbour entry in any state.
    pub fn neighbor(&self, port: u32, ip: IpAddr) -> Option<Neighbor> {
        self.neighbors.get(&(port, ip)).copied()
    }

    /// The nexthop an incoming MPLS label maps to (MPLSoUDP / MPLSoGRE decapsulation).
    pub fn label(&self, label: u32) -> Option<NexthopId> {
        self.labels.get(&label).copied()
    }

    /// The VRF a VXLAN VNI maps to.
    pub fn vni(&self, vni: u32) -> Option<VrfId> {
        self.vnis.get(&vni).copied()
    }

    /// A nexthop's definition (ECMP groups report `None`: resolve picks a member).
    pub fn nexthop(&self, id: NexthopId) -> Option<&Nexthop> {
        match self.nexthops.get(&id)? {
            Compiled::Plain(n) => Some(n),
            Compiled::Ecmp(_) => None,
        }
    }

    /// The VRFs this snapshot routes, in id order.
    pub fn vrf_ids(&self) -> impl Iterator<Item = VrfId> + '_ {
        self.vrfs
            .iter()
            .enumerate()
            .filter_map(|(id, t)| t.as_ref().map(|_| id as VrfId))
    }

    /// Routes in a VRF (both families).
    pub fn route_count(&self, vrf: VrfId) -> usize {
        self.vrf(vrf).map_or(0, |t| t.routes)
    }

    /// Bytes of the compiled route tables of every VRF.
    pub fn table_bytes(&self) -> usize {
        self.vrfs
            .iter()
            .flatten()
            .map(|t| t.v4.bytes() + t.v6.bytes() + core::mem::size_of::<VrfTables>())
            .sum()
    }
}

/// The published FIB: an atomically swapped snapshot pointer. Readers never block; a
/// snapshot is freed when the last reader drops it.
pub struct Fib {
    pub(crate) current: ArcSwap<Snapshot>,
    /// The generation of `current`, stored after it (the newest when publishes race).
    pub(crate) published: AtomicU32,
    pub(crate) stats: Arc<FibStats>,
    /// Snapshots replaced while readers may hold them still: freed by [`Fib::reap`] on the
    /// publisher's thread once no reader does, so that a worker letting go of one never
    /// frees a big table (unmapping tens of MiB) between two bursts.
    retired: Mutex<Vec<Arc<Snapshot>>>,
    /// Big tables of reaped snapshots, at most one per big table running: the next patch
    /// of a VRF writes into one rather than into fresh memory (docs/fib.md).
    spares: Mutex<(Spares<Dir248>, Spares<Trie6>)>,
    /// At most this many spares per family ([`Fib::set_max_spares`]).
    max_spares: AtomicUsize,
}

/// Big tables of one family no reader holds, the newest first.
pub(crate) struct Spares<T>(Vec<T>);

impl<T> Default for Spares<T> {
    fn default() -> Self {
        Spares(Vec::new())
    }
}

impl<T> Spares<T> {
    /// Keeps `t`, in front of the older ones.
    fn keep(&mut self, t: T) {
        self.0.insert(0, t);
    }

    /// Gives up all but the newest `n`.
    fn beyond(&mut self, n: usize) -> Vec<T> {
        self.0.split_off(n.min(self.0.len()))
    }

    /// A spare for a patch of `base`: its predecessor if kept, else any.
    pub(crate) fn take<A: Addr>(&mut self, base: &T) -> Option<T>
    where
        T: BigTable<A>,
    {
        let i = self
            .0
            .iter()
            .position(|t| base.lineage().is_parent(t.lineage()))
            .or_else(|| self.0.len().checked_sub(1))?;
        Some(self.0.swap_remove(i))
    }
}

impl Fib {
    /// An empty FIB (generation 0, no VRFs).
    pub fn new() -> Self {
        let stats = Arc::new(FibStats::default());
        let empty = Snapshot {
            generation: 0,
            vrfs: Vec::new(),
            nexthops: Arc::default(),
            labels: Arc::default(),
            vnis: Arc::default(),
            neighbors: Arc::default(),
            stats: stats.clone(),
            recent: Recent::default(),
            egress_generation: 0,
        };
        Fib {
            current: ArcSwap::from_pointee(empty),
            published: AtomicU32::new(0),
            stats,
            retired: Mutex::default(),
            spares: Mutex::default(),
            max_spares: AtomicUsize::new(usize::MAX),
        }
    }

    /// Makes `snapshot` current and keeps the one it replaces for [`Fib::reap`].
    pub(crate) fn replace(&self, snapshot: Snapshot) {
        let generation = snapshot.generation;
        let old = self.current.swap(Arc::new(snapshot));
        // Release, after the store: a worker that sees this generation loads a snapshot at
        // least as new.
        self.published.fetch_max(generation, Ordering::Release);
        self.retired.lock().unwrap_or_else(PoisonError::into_inner).push(old);
        self.reap();
    }

    /// Frees the replaced snapshots no reader holds any more (a worker takes the new one
    /// at its next burst, or its next pass when idle). Publishing calls it; call it now
    /// and then besides (a `vrouter::Running` does every second) to give memory back
    /// sooner. Their big tables are kept, one per big table running, for the next
    /// patches to write into. Returns how many replaced snapshots are still held.
    pub fn reap(&self) -> usize {
        let mut retired = self.retired.lock().unwrap_or_else(PoisonError::into_inner);
        let freed: Vec<Arc<Snapshot>> = retired.extract_if(.., |s| Arc::strong_count(s) == 1).collect();
        let held = retired.len();
        drop(retired);
        let max = self.max_spares.load(Ordering::Relaxed);
        let mut wanted = (0, 0);
        for t in self.current.load().vrfs.iter().flatten() {
            wanted.0 += usize::from(matches!(t.v4, Lpm::Big(_)));
            wanted.1 += usize::from(matches!(t.v6, Lpm::Big(_)));
        }
        let wanted = (wanted.0.min(max), wanted.1.min(max));
        // Oldest first, each kept in front: the newest end up first, and stay.
        let tables: Vec<VrfTables> = freed
            .into_iter()
            .filter_map(|s| Arc::try_unwrap(s).ok())
            .flat_map(|s| s.vrfs)
            .flatten()
            .filter_map(|t| Arc::try_unwrap(t).ok())
            .collect();
        let mut spares = self.spares();
        for t in tables {
            if let Lpm::Big(d) = t.v4 {
                spares.0.keep(d);
            }
            if let Lpm::Big(d) = t.v6 {
                spares.1.keep(d);
            }
        }
        // Freed once the lock is released: a patch waiting for a spare does not wait
        // for tens of MiB to be unmapped.
        let unwanted = (spares.0.beyond(wanted.0), spares.1.beyond(wanted.1));
        drop(spares);
        drop(unwanted);
        held
    }

    /// Keeps at most `n` spare tables per family from the next [`reap`](Self::reap) on
    /// (default: one per big table running, the fastest). Each costs what its table does
    /// (64 MiB for IPv4): with fewer, a patch whose VRF finds no spare copies its table
    /// into one another VRF left, or into fresh memory; 0 keeps none.
    ///
    /// ```
    /// let fib = fib::Fib::new();
    /// fib.set_max_spares(0);
    /// fib.reap();
    /// assert_eq!(fib.spare_bytes(), 0);
    /// ```
    pub fn set_max_spares(&self, n: usize) {
        self.max_spares.store(n, Ordering::Relaxed);
    }

    /// The memory the spare tables take.
    pub fn spare_bytes(&self) -> usize {
        let spares = self.spares();
        spares.0.0.iter().map(BigTable::bytes).sum::<usize>() + spares.1.0.iter().map(BigTable::bytes).sum::<usize>()
    }

    /// The spare big tables (IPv4, IPv6), for patches to take from.
    pub(crate) fn spares(&self) -> MutexGuard<'_, (Spares<Dir248>, Spares<Trie6>)> {
        self.spares.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The generation of the snapshot most recently published: a worker that keeps a
    /// snapshot across bursts compares its generation with this (one load) to know when to
    /// take a new one.
    #[inline]
    pub fn generation(&self) -> u32 {
        self.published.load(Ordering::Acquire)
    }

    /// The current snapshot; hold it for a burst, then drop it.
    #[inline]
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Miss counters.
    pub fn stats(&self) -> &FibStats {
        &self.stats
    }
}

impl Default for Fib {
    fn default() -> Self {
        Fib::new()
    }
}
