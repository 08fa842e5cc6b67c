//! The control plane's side: an editable copy of the state, and `publish`, which
//! compiles what changed into a new snapshot and swaps it in atomically.

use std::collections::{BTreeMap, BTreeSet};

use crate::snapshot::Map;
use std::net::IpAddr;
use std::sync::Arc;

use crate::FibError;
use crate::ecmp::{EcmpGroup, MAX_ECMP_WEIGHT};
use crate::lpm::{BigTable, Lpm, SMALL_TABLE_ROUTES};
use crate::nexthop::{Neighbor, Nexthop, NexthopId, VrfId};
use crate::prefix::{Addr, Route};
use crate::recent::{Changed, Prefix, VrfChange};
use crate::snapshot::{Compiled, Fib, Snapshot, VrfTables};

/// Highest VRF id accepted (VRF tables are indexed by id).
pub const MAX_VRF: VrfId = (1 << 20) - 1;

#[derive(Default)]
struct VrfRoutes {
    v4: BTreeMap<(u32, u8), NexthopId>,
    v6: BTreeMap<(u128, u8), NexthopId>,
}

/// Edits forwarding state and publishes it. Changes are invisible to readers until
/// [`publish`](Self::publish), which applies the whole batch at once.
///
/// ```
/// use std::net::IpAddr;
/// use fib::{Fib, FibBuilder, Nexthop};
/// let fib = Fib::new();
/// let mut b = FibBuilder::new();
/// b.add_vrf(1).unwrap();
/// b.set_nexthop(10, Nexthop::Interface { port: 0, gateway: Some("192.0.2.1".parse().unwrap()) }).unwrap();
/// b.add_route(1, "10.0.0.0".parse().unwrap(), 8, 10).unwrap();
/// assert_eq!(b.publish(&fib).unwrap(), 1);
/// assert_eq!(fib.snapshot().lookup(1, "10.1.2.3".parse().unwrap()), Ok(10));
/// ```
#[derive(Default)]
pub struct FibBuilder {
    vrfs: BTreeMap<VrfId, VrfRoutes>,
    nexthops: BTreeMap<NexthopId, Nexthop>,
    labels: Map<u32, NexthopId>,
    vnis: Map<u32, VrfId>,
    neighbors: Map<(u32, IpAddr), Neighbor>,
    dirty_vrfs: BTreeSet<VrfId>,
    dirty_nexthops: bool,
    /// The nexthops defined, redefined or removed since the last publish; `None`: too
    /// many, or not known one by one (ports renumbered).
    changed_nexthops: Option<BTreeSet<NexthopId>>,
    dirty_labels: bool,
    dirty_vnis: bool,
    dirty_neighbors: bool,
    /// Compiled ECMP groups of the last publish, so the next keeps their buckets.
    ecmp: Map<NexthopId, EcmpGroup>,
    /// What changed per VRF since the last publish, per family.
    v4_changes: Changes<u32>,
    v6_changes: Changes<u128>,
    /// The generation of this builder's last publish: only a snapshot it made itself is
    /// patched (another builder may have published in between).
    published: Option<u32>,
    /// Edits so far: [`FibBuilder::install`] refuses tables prepared before the last.
    edits: u64,
    /// The VRFs the published nexthops look up in.
    looked_up_in: LookedUpIn,
}

/// The VRFs nexthops look up in, besides the one a route is in: a change there moves
/// routes elsewhere.
#[derive(Default)]
struct LookedUpIn {
    /// Tunnels' far ends, by the VRF they are routed in.
    far_ends: BTreeMap<VrfId, Vec<IpAddr>>,
    /// VRFs translated into.
    translated: BTreeSet<VrfId>,
}

impl LookedUpIn {
    fn of(nexthops: &BTreeMap<NexthopId, Nexthop>) -> Self {
        let mut l = LookedUpIn::default();
        for nh in nexthops.values() {
            match nh {
                Nexthop::Tunnel { dst, underlay_vrf, .. } => l.far_ends.entry(*underlay_vrf).or_default().push(*dst),
                Nexthop::VrfTranslate { vrf } => {
                    l.translated.insert(*vrf);
                }
                _ => {}
            }
        }
        l
    }
}

/// Changed prefixes (weighted by [`weight`]) for which a big table is patched whatever
/// its size.
const PATCH_MIN: usize = 4096;

/// Most changed prefixes (weighted) a big table of `routes` routes is patched under: past
/// them a compile is quicker. Measured on this VM (docs/PERFORMANCE.md, sixteenth
/// session): patching a 1M-route IPv4 table under a sixteenth of its routes' /24s cost
/// what compiling it whole does (DIR-24-8 compiles at about 100 ns a route), a 100K-prefix
/// IPv6 trie under half of its /48s (the trie compiles at about 1.5 us a prefix).
fn patch_bound<A: Addr>(routes: usize) -> usize {
    PATCH_MIN.max(routes / if A::BITS == 32 { 16 } else { 2 })
}

/// What patching under a prefix of length `len` costs, in prefixes of the commonest
/// length (/24, /48): a shorter one repaints all it spans and every route inside.
fn weight<A: Addr>(len: u8) -> usize {
    let leaf = if A::BITS == 32 { 24 } else { 48 };
    1 + (1usize << (leaf - len.min(leaf))) / 256
}

/// The prefixes of one family added, changed or removed per VRF since the last publish:
/// a big table is patched under them instead of built again.
#[derive(Default)]
struct Changes<A> {
    prefixes: BTreeMap<VrfId, (Vec<(A, u8)>, usize)>,
    /// VRFs removed, or changed in too many prefixes to patch: built afresh.
    whole: BTreeSet<VrfId>,
}

impl<A: Addr> Changes<A> {
    /// Notes a prefix to patch under in a VRF of `routes` routes; past the patch's
    /// bound ([`patch_bound`]) the VRF is built afresh instead, and its list dropped.
    fn note(&mut self, vrf: VrfId, prefix: (A, u8), routes: usize) {
        if self.whole.contains(&vrf) {
            return;
        }
        let (list, cost) = self.prefixes.entry(vrf).or_default();
        list.push(prefix);
        *cost += weight::<A>(prefix.1);
        if *cost > patch_bound::<A>(routes) {
            self.rebuild(vrf);
        }
    }

    fn rebuild(&mut self, vrf: VrfId) {
        self.prefixes.remove(&vrf);
        self.whole.insert(vrf);
    }

    /// The prefixes to patch `vrf`'s table under, or `None` if it is to be built whole.
    fn patch(&self, vrf: VrfId) -> Option<Vec<(A, u8)>> {
        if self.whole.contains(&vrf) {
            return None;
        }
        let mut list = self.prefixes.get(&vrf).map(|p| p.0.clone()).unwrap_or_default();
        list.sort_unstable();
        list.dedup();
        Some(list)
    }

    fn clear(&mut self) {
        self.prefixes.clear();
        self.whole.clear();
    }
}

/// A VRF's table of one family: `prev`, the big table of this builder's last snapshot,
/// patched under `changes` (into the memory of the table `spare` gives for it, if any),
/// or compiled whole.
fn compile<A: Addr, B: BigTable<A>>(
    prev: Option<&Lpm<A, B>>,
    routes: &BTreeMap<(A, u8), NexthopId>,
    changes: Option<Vec<(A, u8)>>,
    spare: impl FnOnce(&B) -> Option<B>,
) -> Lpm<A, B> {
    match (prev, changes) {
        (Some(Lpm::Big(t)), Some(changes)) if routes.len() > SMALL_TABLE_ROUTES => {
            Lpm::Big(t.patched(routes, &changes, spare(t)))
        }
        _ => Lpm::build(&routes_of(routes)),
    }
}

/// A fresh copy of a map if it changed, else the previous snapshot's, shared.
fn pick<K: Clone, V: Clone>(dirty: bool, mine: &Map<K, V>, theirs: &Arc<Map<K, V>>) -> Arc<Map<K, V>> {
    if dirty { Arc::new(mine.clone()) } else { theirs.clone() }
}

/// The keys whose entries differ between two maps (added, removed or changed): routes
/// renumbered, nexthops redefined.
fn changed_keys<K: Ord + Copy, V: PartialEq>(old: &BTreeMap<K, V>, new: &BTreeMap<K, V>) -> Vec<K> {
    let mut keys: Vec<K> = old
        .iter()
        .filter(|(k, v)| new.get(k) != Some(v))
        .map(|(k, _)| *k)
        .collect();
    keys.extend(new.keys().filter(|k| !old.contains_key(k)));
    keys
}

/// A family's routes as the table builders take them.
fn routes_of<A: Addr>(routes: &BTreeMap<(A, u8), NexthopId>) -> Vec<Route<A>> {
    routes
        .iter()
        .map(|(&(net, len), &nexthop)| Route { net, len, nexthop })
        .collect()
}

/// The longest of `routes`' prefixes holding `a`, by a walk over the prefix lengths.
fn longest<A: Addr>(routes: &BTreeMap<(A, u8), NexthopId>, a: A) -> Option<(A, u8, NexthopId)> {
    (0..=A::BITS).rev().find_map(|len| {
        let p = a.network(len);
        routes.get(&(p, len)).map(|&nh| (p, len, nh))
    })
}

fn split(addr: IpAddr) -> Result<(Option<u32>, Option<u128>), FibError> {
    Ok(match addr {
        IpAddr::V4(a) => (Some(a.into()), None),
        IpAddr::V6(a) => (None, Some(a.into())),
    })
}

impl FibBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        FibBuilder::default()
    }

    /// Creates a VRF (idempotent).
    pub fn add_vrf(&mut self, vrf: VrfId) -> Result<(), FibError> {
        if vrf > MAX_VRF {
            return Err(FibError::new("vrf", format!("{vrf} exceeds the maximum {MAX_VRF}")));
        }
        self.vrfs.entry(vrf).or_default();
        self.dirty_vrfs.insert(vrf);
        self.edits += 1;
        Ok(())
    }

    /// Removes a VRF and its routes; `false` if there was none.
    pub fn remove_vrf(&mut self, vrf: VrfId) -> bool {
        let removed = self.vrfs.remove(&vrf).is_some();
        if removed {
            self.dirty_vrfs.insert(vrf);
            self.edits += 1;
            self.v4_changes.rebuild(vrf);
            self.v6_changes.rebuild(vrf);
        }
        removed
    }

    fn routes(&mut self, vrf: VrfId) -> Result<&mut VrfRoutes, FibError> {
        self.dirty_vrfs.insert(vrf);
        self.edits += 1;
        self.vrfs
            .get_mut(&vrf)
            .ok_or_else(|| FibError::new("vrf", format!("VRF {vrf} does not exist")))
    }

    /// Whether `prefix/len` could be routed in `vrf`: the VRF exists, the length fits the
    /// family and host bits are clear (`10.0.0.1/8` is rejected, naming the route: a typo
    /// in a prefix should not silently route something else). For a control plane that
    /// checks a batch before it edits anything.
    pub fn check_route(&self, vrf: VrfId, prefix: IpAddr, len: u8) -> Result<(), FibError> {
        Self::check_prefix(vrf, prefix, len)?;
        if !self.vrfs.contains_key(&vrf) {
            return Err(FibError::new("vrf", format!("VRF {vrf} does not exist")));
        }
        Ok(())
    }

    /// The part of [`check_route`](Self::check_route) that does not ask whether `vrf`
    /// exists: for a control plane whose batch may add the VRF first.
    pub fn check_prefix(vrf: VrfId, prefix: IpAddr, len: u8) -> Result<(), FibError> {
        let bad = |what: &str| FibError::new("route", format!("{prefix}/{len} in VRF {vrf}: {what}"));
        let host_bits_clear = match split(prefix)? {
            (Some(a), _) if len <= 32 => a.network(len) == a,
            (_, Some(a)) if len <= 128 => a.network(len) == a,
            _ => {
                return Err(bad(if prefix.is_ipv4() {
                    "length above 32"
                } else {
                    "length above 128"
                }));
            }
        };
        if !host_bits_clear {
            return Err(bad("host bits set"));
        }
        Ok(())
    }

    /// Adds or replaces a route, checked as [`check_route`](Self::check_route) does.
    pub fn add_route(&mut self, vrf: VrfId, prefix: IpAddr, len: u8, nexthop: NexthopId) -> Result<(), FibError> {
        self.check_route(vrf, prefix, len)?;
        match split(prefix)? {
            (Some(a), _) => {
                let r = &mut self.routes(vrf)?.v4;
                r.insert((a, len), nexthop);
                let n = r.len();
                self.v4_changes.note(vrf, (a, len), n);
            }
            (_, Some(a)) => {
                let r = &mut self.routes(vrf)?.v6;
                r.insert((a, len), nexthop);
                let n = r.len();
                self.v6_changes.note(vrf, (a, len), n);
            }
            _ => unreachable!("split returns one family"),
        }
        Ok(())
    }

    /// The nexthop of the route for exactly `prefix/len` in `vrf`, if there is one.
    pub fn route(&self, vrf: VrfId, prefix: IpAddr, len: u8) -> Option<NexthopId> {
        let r = self.vrfs.get(&vrf)?;
        match prefix {
            IpAddr::V4(a) => r.v4.get(&(a.into(), len)).copied(),
            IpAddr::V6(a) => r.v6.get(&(a.into(), len)).copied(),
        }
    }

    /// The longest prefix holding `dst` in `vrf`, with its length and nexthop: what a
    /// publish would route `dst` by, for diagnostics (a walk over the prefix lengths, not
    /// the compiled tables).
    pub fn longest_match(&self, vrf: VrfId, dst: IpAddr) -> Option<(IpAddr, u8, NexthopId)> {
        let r = self.vrfs.get(&vrf)?;
        match dst {
            IpAddr::V4(a) => longest(&r.v4, u32::from(a)).map(|(p, l, nh)| (std::net::Ipv4Addr::from(p).into(), l, nh)),
            IpAddr::V6(a) => {
                longest(&r.v6, u128::from(a)).map(|(p, l, nh)| (std::net::Ipv6Addr::from(p).into(), l, nh))
            }
        }
    }

    /// Whether nexthop `id` is defined.
    pub fn has_nexthop(&self, id: NexthopId) -> bool {
        self.nexthops.contains_key(&id)
    }

    /// Nexthop `id` as defined, if it is.
    pub fn nexthop(&self, id: NexthopId) -> Option<&Nexthop> {
        self.nexthops.get(&id)
    }

    /// Whether VRF `vrf` exists.
    pub fn has_vrf(&self, vrf: VrfId) -> bool {
        self.vrfs.contains_key(&vrf)
    }

    /// Removes a route; `false` if it was not there.
    pub fn remove_route(&mut self, vrf: VrfId, prefix: IpAddr, len: u8) -> bool {
        let Ok(r) = self.routes(vrf) else { return false };
        match prefix {
            IpAddr::V4(a) => {
                let removed = r.v4.remove(&(a.into(), len)).is_some();
                let n = r.v4.len();
                if removed {
                    self.v4_changes.note(vrf, (a.into(), len), n);
                }
                removed
            }
            IpAddr::V6(a) => {
                let removed = r.v6.remove(&(a.into(), len)).is_some();
                let n = r.v6.len();
                if removed {
                    self.v6_changes.note(vrf, (a.into(), len), n);
                }
                removed
            }
        }
    }

    /// Defines or replaces a nexthop. ECMP groups may not contain ECMP groups (nor a
    /// group's member become one) and have 1 to 255 members, weighted 1 to
    /// [`MAX_ECMP_WEIGHT`]. A tunnel's VNI must fit 24 bits and its label 20 (the headers
    /// would carry another), and its two ends be of one family.
    pub fn set_nexthop(&mut self, id: NexthopId, nh: Nexthop) -> Result<(), FibError> {
        if let Nexthop::Tunnel {
            encap,
            src,
            dst,
            router_mac,
            dscp,
            zero_udp_checksum,
            ..
        } = &nh
        {
            let bad = |detail: String| FibError::new("nexthop", format!("tunnel {id}: {detail}"));
            encap.check().map_err(bad)?;
            if src.is_ipv4() != dst.is_ipv4() {
                return Err(bad(format!("{src} -> {dst}: the ends are of two families")));
            }
            if router_mac.is_some() && !matches!(encap, crate::Encap::Vxlan { .. }) {
                return Err(bad(
                    "a router MAC is for VXLAN: MPLS carries no inner Ethernet header".into()
                ));
            }
            if let crate::OuterDscp::Fixed(d @ 64..) = dscp {
                return Err(bad(format!("DSCP {d} exceeds 6 bits")));
            }
            if *zero_udp_checksum && (src.is_ipv4() || matches!(encap, crate::Encap::MplsOverGre { .. })) {
                return Err(bad(
                    "a zero UDP checksum is for UDP tunnels over IPv6: over IPv4 it is zero anyway, and GRE has none"
                        .into(),
                ));
            }
        }
        if let Nexthop::Ecmp { members } = &nh {
            if members.is_empty() || members.len() > 255 {
                return Err(FibError::new(
                    "nexthop",
                    format!("ECMP group {id}: {} members (1-255 allowed)", members.len()),
                ));
            }
            if let Some((m, w)) = members.iter().find(|(_, w)| !(1..=MAX_ECMP_WEIGHT).contains(w)) {
                return Err(FibError::new(
                    "nexthop",
                    format!("ECMP group {id}: member {m} weight {w} is outside 1..={MAX_ECMP_WEIGHT}"),
                ));
            }
            if let Some((m, _)) = members
                .iter()
                .find(|(m, _)| matches!(self.nexthops.get(m), Some(Nexthop::Ecmp { .. })))
            {
                return Err(FibError::new(
                    "nexthop",
                    format!("ECMP group {id}: member {m} is itself an ECMP group"),
                ));
            }
            if let Some(g) = self.nexthops.iter().find_map(|(&g, nh)| match nh {
                Nexthop::Ecmp { members } if g != id && members.iter().any(|m| m.0 == id) => Some(g),
                _ => None,
            }) {
                return Err(FibError::new(
                    "nexthop",
                    format!("ECMP group {id}: it is a member of ECMP group {g}, which may not hold a group"),
                ));
            }
        }
        self.nexthops.insert(id, nh);
        self.dirty_nexthops = true;
        self.nexthop_changed(id);
        self.edits += 1;
        Ok(())
    }

    /// Removes a nexthop; routes still pointing at it resolve to a counted
    /// `Miss::UnresolvedNexthop`; `false` if there was none.
    pub fn remove_nexthop(&mut self, id: NexthopId) -> bool {
        let removed = self.nexthops.remove(&id).is_some();
        if removed {
            self.dirty_nexthops = true;
            self.nexthop_changed(id);
        }
        self.edits += 1;
        removed
    }

    /// Maps an incoming MPLS label to a nexthop.
    pub fn set_label(&mut self, label: u32, nexthop: NexthopId) -> Result<(), FibError> {
        if label >= 1 << 20 {
            return Err(FibError::new("label", format!("{label} exceeds 20 bits")));
        }
        self.labels.insert(label, nexthop);
        self.dirty_labels = true;
        self.edits += 1;
        Ok(())
    }

    /// Unmaps an incoming MPLS label (its packets are then dropped, counted); `false` if
    /// it was not mapped.
    pub fn remove_label(&mut self, label: u32) -> bool {
        let removed = self.labels.remove(&label).is_some();
        self.dirty_labels |= removed;
        self.edits += 1;
        removed
    }

    /// The nexthop incoming MPLS label `label` maps to, if it is mapped.
    pub fn label(&self, label: u32) -> Option<NexthopId> {
        self.labels.get(&label).copied()
    }

    /// The VRF VXLAN VNI `vni` maps to, if it is mapped.
    pub fn vni(&self, vni: u32) -> Option<VrfId> {
        self.vnis.get(&vni).copied()
    }

    /// Maps a VXLAN VNI to a VRF.
    pub fn set_vni(&mut self, vni: u32, vrf: VrfId) -> Result<(), FibError> {
        if vni >= 1 << 24 {
            return Err(FibError::new("vni", format!("{vni} exceeds 24 bits")));
        }
        self.vnis.insert(vni, vrf);
        self.dirty_vnis = true;
        self.edits += 1;
        Ok(())
    }

    /// Unmaps a VXLAN VNI (its packets are then dropped, counted); `false` if it was not
    /// mapped.
    pub fn remove_vni(&mut self, vni: u32) -> bool {
        let removed = self.vnis.remove(&vni).is_some();
        self.dirty_vnis |= removed;
        self.edits += 1;
        removed
    }

    /// Adds or updates a neighbour.
    pub fn set_neighbor(&mut self, port: u32, ip: IpAddr, neighbor: Neighbor) {
        self.neighbors.insert((port, ip), neighbor);
        self.dirty_neighbors = true;
        self.edits += 1;
    }

    /// The neighbour entry of `ip` on `port`, if one was set.
    pub fn neighbor(&self, port: u32, ip: IpAddr) -> Option<Neighbor> {
        self.neighbors.get(&(port, ip)).copied()
    }

    /// Removes a neighbour; `false` if there was none.
    pub fn remove_neighbor(&mut self, port: u32, ip: IpAddr) -> bool {
        let removed = self.neighbors.remove(&(port, ip)).is_some();
        self.dirty_neighbors |= removed;
        self.edits += 1;
        removed
    }

    /// Follows a change of the node's port numbers (`new_port(old)`; `None`: the port is
    /// gone): interface nexthops move with their port, and those of a port gone become
    /// [`Nexthop::Discard`] (their routes drop until given another nexthop); neighbours move
    /// with their port or go with it.
    pub fn renumber_ports(&mut self, new_port: impl Fn(u32) -> Option<u32>) {
        for nh in self.nexthops.values_mut() {
            if let Nexthop::Interface { port, .. } = nh {
                match new_port(*port) {
                    Some(p) if p == *port => continue,
                    Some(p) => *port = p,
                    None => *nh = Nexthop::Discard,
                }
                self.dirty_nexthops = true;
                self.changed_nexthops = None;
                self.edits += 1;
            }
        }
        if self.neighbors.keys().any(|&(port, _)| new_port(port) != Some(port)) {
            self.neighbors = self
                .neighbors
                .iter()
                .filter_map(|(&(port, ip), n)| Some(((new_port(port)?, ip), *n)))
                .collect();
            self.dirty_neighbors = true;
            self.edits += 1;
        }
    }

    /// Takes `new`'s routes, nexthops, labels, VNIs and neighbours as this builder's,
    /// marking only what differs: the next [`publish`](Self::publish) then compiles only the
    /// VRFs whose routes changed (patching big tables under the changed prefixes) and
    /// shares the rest with the running snapshot. For a reload that re-reads a whole
    /// configuration into a fresh builder.
    pub fn replace_with(&mut self, new: FibBuilder) {
        let gone: Vec<VrfId> = self
            .vrfs
            .keys()
            .filter(|id| !new.vrfs.contains_key(id))
            .copied()
            .collect();
        for id in gone {
            self.remove_vrf(id);
        }
        for (id, routes) in new.vrfs {
            let Some(old) = self.vrfs.get(&id) else {
                self.vrfs.insert(id, routes);
                self.dirty_vrfs.insert(id);
                self.edits += 1;
                continue;
            };
            let (v4, v6) = (changed_keys(&old.v4, &routes.v4), changed_keys(&old.v6, &routes.v6));
            if !v4.is_empty() || !v6.is_empty() {
                self.dirty_vrfs.insert(id);
                self.edits += 1;
            }
            for prefix in v4 {
                self.v4_changes.note(id, prefix, routes.v4.len());
            }
            for prefix in v6 {
                self.v6_changes.note(id, prefix, routes.v6.len());
            }
            self.vrfs.insert(id, routes);
        }
        let changed: Vec<NexthopId> = changed_keys(&self.nexthops, &new.nexthops);
        for &id in &changed {
            self.nexthop_changed(id);
        }
        self.dirty_nexthops |= !changed.is_empty();
        self.edits += 1;
        self.nexthops = new.nexthops;
        self.dirty_labels |= self.labels != new.labels;
        self.edits += 1;
        self.labels = new.labels;
        self.dirty_vnis |= self.vnis != new.vnis;
        self.edits += 1;
        self.vnis = new.vnis;
        self.dirty_neighbors |= self.neighbors != new.neighbors;
        self.edits += 1;
        self.neighbors = new.neighbors;
    }

    /// Compiles what changed since the last publish into a new snapshot (sharing every
    /// unchanged VRF table and map with the previous one) and swaps it in. Returns the new
    /// generation. If another builder published since, everything this builder holds is
    /// compiled: a publish makes the FIB what the builder holds. [`prepare`](Self::prepare) and [`install`](Self::install) are its two
    /// halves.
    pub fn publish(&mut self, fib: &Fib) -> Result<u32, FibError> {
        let p = self.prepare(fib);
        self.install(fib, p)
    }

    /// Compiles what changed since the last publish, as [`publish`](Self::publish) does,
    /// without showing it to readers yet: the slow half, done while the workers run when
    /// the swap must happen while they stand still (a live port change). Changes nothing
    /// readers see (it reaps, and takes spare tables to patch into); dropping the result
    /// forgets it.
    pub fn prepare(&self, fib: &Fib) -> Prepared {
        // Frees what the workers have let go of, keeping big tables to patch into.
        fib.reap();
        let prev = fib.snapshot();
        // Another builder published since this one's last publish: what runs is not what
        // this builder's changes are relative to, so all of it is compiled (a publish
        // makes the FIB what this builder holds).
        let foreign = self.published != Some(prev.generation);
        let dirty: BTreeSet<VrfId> = if foreign {
            self.vrfs.keys().copied().chain(prev.vrf_ids()).collect()
        } else {
            self.dirty_vrfs.clone()
        };
        let mut vrfs = prev.vrfs.clone();
        for &id in &dirty {
            let slot = id as usize;
            if vrfs.len() <= slot {
                vrfs.resize(slot + 1, None);
            }
            // The tables this VRF had in this builder's last snapshot, to patch.
            let mine = prev.vrfs.get(slot).and_then(Option::as_ref).filter(|_| !foreign);
            vrfs[slot] = self.vrfs.get(&id).map(|r| {
                let (v4, v6) = (mine.map(|t| &t.v4), mine.map(|t| &t.v6));
                Arc::new(VrfTables {
                    v4: compile(v4, &r.v4, self.v4_changes.patch(id), |t| fib.spares().0.take(t)),
                    v6: compile(v6, &r.v6, self.v6_changes.patch(id), |t| fib.spares().1.take(t)),
                    routes: r.v4.len() + r.v6.len(),
                })
            });
        }
        while vrfs.last().is_some_and(Option::is_none) {
            vrfs.pop();
        }
        let (nexthops, ecmp) = if self.dirty_nexthops || foreign {
            let mut compiled = Map::with_capacity_and_hasher(self.nexthops.len(), Default::default());
            let mut groups = Map::default();
            for (&id, nh) in &self.nexthops {
                let c = match nh {
                    Nexthop::Ecmp { members } => {
                        let g = EcmpGroup::build(members, self.ecmp.get(&id));
                        groups.insert(id, g.clone());
                        Compiled::Ecmp(g)
                    }
                    other => Compiled::Plain(other.clone()),
                };
                compiled.insert(id, c);
            }
            (Arc::new(compiled), Some(groups))
        } else {
            (prev.nexthops.clone(), None)
        };
        let changes = self.changes(&prev);
        // Nexthops' egress is cached apart from flows: any nexthop change redoes it.
        let egress_generation = if changes.is_some() && !self.dirty_nexthops {
            prev.egress_generation
        } else {
            prev.generation.wrapping_add(1)
        };
        Prepared {
            base: prev.generation,
            edits: self.edits,
            snapshot: Snapshot {
                generation: prev.generation.wrapping_add(1),
                vrfs,
                nexthops,
                labels: pick(self.dirty_labels || foreign, &self.labels, &prev.labels),
                vnis: pick(self.dirty_vnis || foreign, &self.vnis, &prev.vnis),
                neighbors: pick(self.dirty_neighbors || foreign, &self.neighbors, &prev.neighbors),
                stats: fib.stats.clone(),
                recent: prev.recent.then(prev.generation.wrapping_add(1), changes),
                egress_generation,
            },
            ecmp,
        }
    }

    /// What this publish changes over `prev` for cached routes: the VRFs whose routes
    /// changed and the prefixes, and the nexthops changed, or `None` if anything may have
    /// (labels, VNIs or neighbours changed, routes and nexthops both, too many nexthops,
    /// a VRF a nexthop looks up in changed, or `prev` is not this builder's last
    /// snapshot, which the change lists are relative to).
    fn changes(&self, prev: &Snapshot) -> Option<Changed> {
        if self.published != Some(prev.generation) || self.dirty_labels || self.dirty_vnis || self.dirty_neighbors {
            return None;
        }
        if self.dirty_nexthops {
            // Alone, so that the looked-up-in VRFs below are the last publish's.
            let ids = self.changed_nexthops.as_ref().filter(|_| self.dirty_vrfs.is_empty())?;
            return Some((Vec::new(), ids.iter().copied().collect()));
        }
        // The nexthops are those of the last publish (else `dirty_nexthops`).
        let LookedUpIn { far_ends, translated } = &self.looked_up_in;
        let mut changes = Vec::with_capacity(self.dirty_vrfs.len());
        for &id in &self.dirty_vrfs {
            let existed = prev.vrfs.get(id as usize).is_some_and(Option::is_some);
            let prefixes: Option<Vec<Prefix>> = match (
                existed && self.vrfs.contains_key(&id),
                self.v4_changes.patch(id),
                self.v6_changes.patch(id),
            ) {
                (true, Some(v4), Some(v6)) => Some(
                    v4.into_iter()
                        .map(|(a, l)| Prefix::new(IpAddr::V4(a.into()), l))
                        .chain(v6.into_iter().map(|(a, l)| Prefix::new(IpAddr::V6(a.into()), l)))
                        .collect(),
                ),
                _ => None,
            };
            // The route to a tunnel's far end moves every flow through it: in its underlay
            // VRF, or in any VRF a translation leads into (the underlay's route may).
            let moved = |far: &IpAddr| prefixes.as_ref().is_none_or(|p| p.iter().any(|p| p.contains(*far)));
            let every_vrf = translated.contains(&id);
            let mut ends = far_ends.get(&id).into_iter().flatten();
            if ends.any(moved) || every_vrf && far_ends.values().flatten().any(moved) {
                return None;
            }
            changes.push(VrfChange {
                vrf: id,
                prefixes,
                every_vrf,
            });
        }
        Some((changes, Vec::new()))
    }

    /// Notes nexthop `id` changed; past [`crate::recent::LISTED`] of them, they are no
    /// longer told apart.
    fn nexthop_changed(&mut self, id: NexthopId) {
        if let Some(ids) = &mut self.changed_nexthops {
            ids.insert(id);
            if ids.len() > crate::recent::LISTED {
                self.changed_nexthops = None;
            }
        }
    }

    /// Swaps in what [`prepare`](Self::prepare) compiled: quick, whatever the tables'
    /// size. Refused if anything was published since (the snapshot would undo it; prepare
    /// again), or if the builder changed since (its changes would be lost).
    pub fn install(&mut self, fib: &Fib, p: Prepared) -> Result<u32, FibError> {
        if fib.snapshot().generation != p.base || self.edits != p.edits {
            return Err(FibError::new(
                "publish",
                "the tables changed since they were prepared: prepare them again".into(),
            ));
        }
        let generation = p.snapshot.generation;
        fib.replace(p.snapshot);
        if let Some(groups) = p.ecmp {
            // Compiled anew: the nexthops changed, or another builder published.
            self.ecmp = groups;
            self.looked_up_in = LookedUpIn::of(&self.nexthops);
        }
        self.dirty_vrfs.clear();
        self.v4_changes.clear();
        self.v6_changes.clear();
        self.published = Some(generation);
        self.dirty_nexthops = false;
        self.changed_nexthops = Some(BTreeSet::new());
        self.dirty_labels = false;
        self.dirty_vnis = false;
        self.dirty_neighbors = false;
        Ok(generation)
    }
}

/// Tables compiled by [`FibBuilder::prepare`], not yet visible to readers.
pub struct Prepared {
    /// The generation they were compiled over.
    base: u32,
    /// The builder's edits they include.
    edits: u64,
    snapshot: Snapshot,
    /// The ECMP groups' new buckets, if nexthops changed.
    ecmp: Option<Map<NexthopId, EcmpGroup>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nexthop::Encap;
    use std::net::Ipv4Addr;

    fn v4(a: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(a))
    }

    /// 2001:db8:`i`::, the `i`th /48 of VRF 1.
    fn v6(i: u32) -> IpAddr {
        IpAddr::V6(((0x2001_0db8u128 << 96) | (u128::from(i) << 80)).into())
    }

    /// A builder with VRF 1 big (3,000 /24s and 3,000 /48s), VRF 2 small, and `extra`
    /// routes in VRF 1.
    fn config(extra: &[(u32, u8, NexthopId)]) -> FibBuilder {
        let mut b = FibBuilder::new();
        b.add_vrf(1).unwrap();
        b.add_vrf(2).unwrap();
        for i in 0..3000u32 {
            b.add_route(1, v4(0x0a00_0000 + (i << 8)), 24, i % 7).unwrap();
            b.add_route(1, v6(i), 48, i % 7).unwrap();
        }
        b.add_route(2, v4(0xc0a8_0000), 16, 5).unwrap();
        for &(a, len, nh) in extra {
            b.add_route(1, v4(a), len, nh).unwrap();
        }
        b
    }

    #[test]
    fn big_tables_take_bigger_patches_and_short_prefixes_weigh_more() {
        assert_eq!(
            [24, 28, 16, 8].map(weight::<u32>),
            [1, 1, 2, 257],
            "in /24s spanned, and one for the change"
        );
        assert_eq!([48, 64, 40, 32].map(weight::<u128>), [1, 1, 2, 257]);
        let patched_after = |routes: usize, len: u8, n: u32| {
            let mut c = Changes::<u32>::default();
            for i in 0..n {
                c.note(1, (i << 8, len), routes);
            }
            c.patch(1).map(|p| p.len())
        };
        assert_eq!(patched_after(10_000, 24, 4096), Some(4096));
        assert_eq!(patched_after(10_000, 24, 4097), None, "past the minimum");
        assert_eq!(patched_after(1_000_000, 24, 62_500), Some(62_500), "a sixteenth");
        assert_eq!(patched_after(1_000_000, 24, 62_501), None);
        assert_eq!(patched_after(10_000, 8, 15), Some(15));
        assert_eq!(patched_after(10_000, 8, 16), None, "sixteen /8s span 4,112 /24s");
        let mut c = Changes::<u128>::default();
        for i in 0..50_000u128 {
            c.note(1, (i << 80, 48), 100_000);
        }
        assert!(c.patch(1).is_some(), "an IPv6 trie takes half its routes");
        c.note(1, (1 << 80, 48), 100_000);
        assert!(c.patch(1).is_none());
    }

    #[test]
    fn tunnels_whose_headers_cannot_carry_them_are_refused() {
        let mut b = FibBuilder::new();
        let tunnel = |encap, dst: &str| Nexthop::Tunnel {
            encap,
            src: v4(0xc000_0201),
            dst: dst.parse().unwrap(),
            underlay_vrf: 0,
            router_mac: None,
            dscp: Default::default(),
            zero_udp_checksum: false,
        };
        let routed = |encap| Nexthop::Tunnel {
            encap,
            src: v4(0xc000_0201),
            dst: v4(0xc000_0202),
            underlay_vrf: 0,
            router_mac: Some(wire::ethernet::MacAddr([2, 0, 0, 0, 0, 1])),
            dscp: Default::default(),
            zero_udp_checksum: false,
        };
        let options = |dscp, zero_udp_checksum| Nexthop::Tunnel {
            encap: Encap::Vxlan { vni: 7 },
            src: v4(0xc000_0201),
            dst: v4(0xc000_0202),
            underlay_vrf: 0,
            router_mac: None,
            dscp,
            zero_udp_checksum,
        };
        for (nh, says) in [
            (
                tunnel(Encap::Vxlan { vni: 1 << 24 }, "192.0.2.2"),
                "VNI 16777216 exceeds 24 bits",
            ),
            (
                tunnel(Encap::MplsOverUdp { label: 1 << 20 }, "192.0.2.2"),
                "label 1048576 exceeds 20 bits",
            ),
            (
                tunnel(Encap::MplsOverGre { label: 1 << 20 }, "192.0.2.2"),
                "label 1048576 exceeds 20 bits",
            ),
            (tunnel(Encap::Vxlan { vni: 7 }, "2001:db8::2"), "two families"),
            (routed(Encap::MplsOverUdp { label: 7 }), "a router MAC is for VXLAN"),
            (routed(Encap::MplsOverGre { label: 7 }), "a router MAC is for VXLAN"),
            (options(crate::OuterDscp::Fixed(64), false), "DSCP 64 exceeds 6 bits"),
            (
                options(Default::default(), true),
                "a zero UDP checksum is for UDP tunnels over IPv6",
            ),
        ] {
            let e = b.set_nexthop(4, nh).unwrap_err().to_string();
            assert!(e.contains(says) && e.contains("tunnel 4"), "{e}");
            assert!(!b.has_nexthop(4));
        }
        let widest = tunnel(Encap::Vxlan { vni: (1 << 24) - 1 }, "192.0.2.2");
        b.set_nexthop(4, widest.clone()).unwrap();
        assert_eq!(b.nexthop(4), Some(&widest));
        b.set_nexthop(5, tunnel(Encap::MplsOverGre { label: (1 << 20) - 1 }, "192.0.2.2"))
            .unwrap();
        b.set_nexthop(6, routed(Encap::Vxlan { vni: 7 })).unwrap();
    }

    #[test]
    fn ecmp_weights_outside_their_range_are_refused() {
        let mut b = FibBuilder::new();
        b.set_nexthop(1, Nexthop::Discard).unwrap();
        b.set_nexthop(2, Nexthop::Discard).unwrap();
        for w in [0, MAX_ECMP_WEIGHT + 1] {
            let e = b
                .set_nexthop(
                    3,
                    Nexthop::Ecmp {
                        members: vec![(1, 1), (2, w)],
                    },
                )
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("member 2 weight {w} is outside 1..=256")), "{e}");
        }
        b.set_nexthop(
            3,
            Nexthop::Ecmp {
                members: vec![(1, MAX_ECMP_WEIGHT), (2, 1)],
            },
        )
        .unwrap();
        // A member may not become a group afterwards either.
        let e = b
            .set_nexthop(2, Nexthop::Ecmp { members: vec![(1, 1)] })
            .unwrap_err()
            .to_string();
        assert!(e.contains("ECMP group 2: it is a member of ECMP group 3"), "{e}");
        assert_eq!(b.nexthop(2), Some(&Nexthop::Discard));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// The builder's own longest match agrees with the compiled tables, both families.
        #[test]
        fn longest_match_agrees_with_the_published_tables(
            routes in proptest::collection::vec((proptest::prelude::any::<u32>(), 0u8..=32, 1u32..9), 0..40),
            probes in proptest::collection::vec(proptest::prelude::any::<u32>(), 32),
        ) {
            let fib = Fib::new();
            let mut b = FibBuilder::new();
            b.add_vrf(1).unwrap();
            for nh in 1..9 {
                b.set_nexthop(nh, Nexthop::Discard).unwrap();
            }
            for &(a, len, nh) in &routes {
                b.add_route(1, v4(a.network(len)), len, nh).unwrap();
                // The same bits as a /(len+96) in IPv6.
                let a6 = (u128::from(a) << 96).network(len + 96);
                b.add_route(1, IpAddr::V6(a6.into()), len + 96, nh).unwrap();
            }
            b.publish(&fib).unwrap();
            let s = fib.snapshot();
            for &p in probes.iter().chain(routes.iter().map(|r| &r.0)) {
                for dst in [v4(p), IpAddr::V6((u128::from(p) << 96).into())] {
                    let m = b.longest_match(1, dst);
                    proptest::prop_assert_eq!(m.map(|(_, _, nh)| nh), s.lookup(1, dst).ok(), "{}", dst);
                    if let Some((prefix, len, _)) = m {
                        proptest::prop_assert_eq!(b.route(1, prefix, len), m.map(|(_, _, nh)| nh));
                    }
                }
            }
        }
    }

    #[test]
    fn renumbered_ports_move_nexthops_and_neighbours_and_gone_ports_discard() {
        use crate::nexthop::NeighborState;
        let fib = Fib::new();
        let mut b = FibBuilder::new();
        b.add_vrf(1).unwrap();
        for port in 0..3u32 {
            b.set_nexthop(port + 1, Nexthop::Interface { port, gateway: None })
                .unwrap();
            b.add_route(1, v4(0x0a00_0000 + (port << 8)), 24, port + 1).unwrap();
            let n = Neighbor {
                mac: wire::ethernet::MacAddr([2, 0, 0, 0, 0, port as u8]),
                state: NeighborState::Reachable,
            };
            b.set_neighbor(port, v4(0x0a00_0002 + (port << 8)), n);
        }
        b.publish(&fib).unwrap();
        // Port 1 removed: port 2 becomes 1.
        b.renumber_ports(|p| match p {
            0 => Some(0),
            1 => None,
            p => Some(p - 1),
        });
        b.publish(&fib).unwrap();
        let s = fib.snapshot();
        assert_eq!(s.nexthop(1), Some(&Nexthop::Interface { port: 0, gateway: None }));
        assert_eq!(s.nexthop(2), Some(&Nexthop::Discard));
        assert_eq!(s.nexthop(3), Some(&Nexthop::Interface { port: 1, gateway: None }));
        assert!(s.mac(0, v4(0x0a00_0002)).is_some());
        assert_eq!(
            s.mac(1, v4(0x0a00_0202)),
            Some(wire::ethernet::MacAddr([2, 0, 0, 0, 0, 2])),
            "port 2's neighbour now on port 1"
        );
        assert!(
            s.mac(1, v4(0x0a00_0102)).is_none(),
            "the removed port's neighbour is gone"
        );
        assert!(s.mac(2, v4(0x0a00_0202)).is_none());
    }

    #[test]
    fn patches_write_into_tables_no_reader_holds_and_never_into_held_ones() {
        let fib = Fib::new();
        let mut b = config(&[]);
        b.publish(&fib).unwrap();
        let first_level = |s: &Snapshot| match &**s.vrfs[1].as_ref().expect("VRF 1") {
            VrfTables {
                v4: Lpm::Big(d),
                v6: Lpm::Big(t),
                ..
            } => (d.first_level(), t.first_level()),
            _ => panic!("VRF 1 is big in both families"),
        };
        // In the /48s, the address ending in 1.
        let host6 = |i: u32| match v6(i) {
            IpAddr::V6(a) => IpAddr::V6((u128::from(a) | 1).into()),
            IpAddr::V4(_) => unreachable!(),
        };
        let change = |b: &mut FibBuilder, fib: &Fib, i: u32| {
            b.add_route(1, v4(0x0a00_0000 + (i << 8)), 24, 100 + i).unwrap();
            b.add_route(1, v6(i), 48, 200 + i).unwrap();
            b.publish(fib).unwrap();
            let s = fib.snapshot();
            for j in 0..=i {
                assert_eq!(
                    s.lookup(1, v4(0x0a00_0001 + (j << 8))),
                    Ok(100 + j),
                    "change {j} after {i}"
                );
                assert_eq!(s.lookup(1, host6(j)), Ok(200 + j), "change {j} after {i}");
            }
            assert_eq!(s.lookup(1, v4(0x0a00_0001 + ((i + 1) << 8))), Ok((i + 1) % 7));
            assert_eq!(s.lookup(1, host6(i + 1)), Ok((i + 1) % 7));
            first_level(&s)
        };
        // Nothing holds the replaced tables: after the first patch, two tables per
        // family take turns.
        let seen: Vec<_> = (0..4).map(|i| change(&mut b, &fib, i)).collect();
        assert_ne!(seen[0], seen[1]);
        assert_eq!((seen[2], seen[3]), (seen[0], seen[1]), "memory reused");
        // A reader holds the running table: the next patches leave it alone.
        let held = fib.snapshot();
        let mine = first_level(&held);
        for i in 4..7 {
            assert_ne!(change(&mut b, &fib, i), mine);
        }
        assert_eq!(
            held.lookup(1, v4(0x0a00_0401)),
            Ok(4),
            "the held table unchanged: /24 number 4 has nexthop 4 % 7"
        );
        assert_eq!(held.lookup(1, v4(0x0a00_0301)), Ok(103));
        assert_eq!(held.lookup(1, host6(4)), Ok(4));
        assert_eq!(held.lookup(1, host6(3)), Ok(203));
        drop(held);
        // A removal, then a reload of the first configuration, noted as seven changes.
        assert!(b.remove_route(1, v6(5), 48));
        b.publish(&fib).unwrap();
        assert_eq!(fib.snapshot().lookup(1, host6(5)), Err(crate::Miss::NoRoute));
        assert_eq!(fib.snapshot().lookup(1, host6(6)), Ok(206));
        b.replace_with(config(&[]));
        assert_eq!(b.v6_changes.patch(1).map(|p| p.len()), Some(7), "the 7 /48s changed");
        b.publish(&fib).unwrap();
        for i in 0..8 {
            assert_eq!(fib.snapshot().lookup(1, host6(i)), Ok(i % 7), "/48 number {i}");
        }
    }

    #[test]
    fn spares_cost_one_table_per_big_table_and_can_be_capped() {
        let fib = Fib::new();
        let mut b = config(&[]);
        b.publish(&fib).unwrap();
        for i in 0..3 {
            b.add_route(1, v4(0x0a00_0000 + (i << 8)), 24, 100 + i).unwrap();
            b.add_route(1, v6(i), 48, 200 + i).unwrap();
            b.publish(&fib).unwrap();
        }
        let snapshot = fib.snapshot();
        let big = snapshot.vrfs[1].as_ref().unwrap();
        assert!(big.v4.bytes() >= 64 << 20);
        assert_eq!(
            fib.spare_bytes(),
            big.v4.bytes() + big.v6.bytes(),
            "one spare per family of VRF 1"
        );
        drop(snapshot);
        fib.set_max_spares(0);
        fib.reap();
        assert_eq!(fib.spare_bytes(), 0);
        b.add_route(1, v4(0x0a00_0300), 24, 103).unwrap();
        b.publish(&fib).unwrap();
        assert_eq!(fib.spare_bytes(), 0, "none kept");
        assert_eq!(fib.snapshot().lookup(1, v4(0x0a00_0301)), Ok(103));
    }

    /// A FIB and a builder with VRFs 0, 1 and 2.
    fn three_vrfs() -> (Fib, FibBuilder) {
        let mut b = FibBuilder::new();
        for vrf in 0..3 {
            b.add_vrf(vrf).unwrap();
        }
        (Fib::new(), b)
    }

    #[test]
    fn a_nexthop_change_moves_only_the_flows_whose_way_it_is_on() {
        let (fib, mut b) = three_vrfs();
        let port = |port| Nexthop::Interface { port, gateway: None };
        b.set_nexthop(4, port(0)).unwrap();
        b.set_nexthop(6, port(1)).unwrap();
        b.set_nexthop(
            5,
            Nexthop::Ecmp {
                members: vec![(4, 1), (6, 1)],
            },
        )
        .unwrap();
        b.set_nexthop(7, Nexthop::VrfTranslate { vrf: 2 }).unwrap();
        b.set_nexthop(
            1,
            Nexthop::Tunnel {
                encap: crate::nexthop::Encap::Vxlan { vni: 5 },
                src: v4(0xc000_0201),
                dst: v4(0xc000_0209),
                underlay_vrf: 0,
                router_mac: None,
                dscp: Default::default(),
                zero_udp_checksum: false,
            },
        )
        .unwrap();
        b.add_route(0, v4(0xc000_0200), 24, 4).unwrap();
        for (net, nh) in [(0x0a01_0000, 4), (0x0a02_0000, 5), (0x0a03_0000, 7), (0x0a04_0000, 1)] {
            b.add_route(1, v4(net), 16, nh).unwrap();
        }
        b.add_route(2, v4(0x0a03_0000), 16, 4).unwrap();
        b.publish(&fib).unwrap();
        // Flows of VRF 1: (destination, the final nexthop they were given).
        let flows = [
            (v4(0x0a01_0001), 4), // plain
            (v4(0x0a02_0001), 4), // ECMP group 5, member 4
            (v4(0x0a02_0002), 6), // ECMP group 5, member 6
            (v4(0x0a03_0001), 4), // through VRF 2
            (v4(0x0a04_0001), 1), // a tunnel
        ];
        let unchanged = |b: &mut FibBuilder, change: &dyn Fn(&mut FibBuilder)| {
            let (since, egress) = (fib.generation(), fib.snapshot().egress_generation());
            change(b);
            b.publish(&fib).unwrap();
            let s = fib.snapshot();
            assert_ne!(s.egress_generation(), egress, "the nexthops' egress is redone");
            flows.map(|(dst, decided)| s.route_unchanged_since(since, 1, dst, decided))
        };
        // Member 6 moves to another port: its flows (the group's buckets stay), and
        // those whose way cannot be told.
        assert_eq!(
            unchanged(&mut b, &|b| b.set_nexthop(6, port(2)).unwrap()),
            [true, true, false, false, false]
        );
        // The group gains a member: every flow of its route.
        let grown = |b: &mut FibBuilder| {
            b.set_nexthop(8, port(3)).unwrap();
            let members = vec![(4, 1), (6, 1), (8, 1)];
            b.set_nexthop(5, Nexthop::Ecmp { members }).unwrap();
        };
        assert_eq!(unchanged(&mut b, &grown), [true, false, false, false, false]);
        // A nexthop nothing uses.
        assert_eq!(
            unchanged(&mut b, &|b| b.set_nexthop(9, port(3)).unwrap()),
            [true, true, true, false, false]
        );
        // Nexthops and routes in one publish: everything.
        assert_eq!(
            unchanged(&mut b, &|b| {
                b.set_nexthop(9, port(4)).unwrap();
                b.add_route(1, v4(0x0a09_0000), 16, 9).unwrap();
            }),
            [false; 5]
        );
        // Two publishes back, through a nexthop change and a route change elsewhere.
        let since = fib.generation();
        b.set_nexthop(9, port(5)).unwrap();
        b.publish(&fib).unwrap();
        b.add_route(1, v4(0x0a08_0000), 16, 9).unwrap();
        b.publish(&fib).unwrap();
        let s = fib.snapshot();
        assert!(s.route_unchanged_since(since, 1, v4(0x0a01_0001), 4));
        assert!(!s.route_unchanged_since(since, 1, v4(0x0a08_0001), 9));
    }

    #[test]
    fn routes_through_tunnels_and_translations_follow_the_vrfs_they_look_up_in() {
        let (fib, mut b) = three_vrfs();
        let tunnel = Nexthop::Tunnel {
            encap: crate::nexthop::Encap::Vxlan { vni: 5 },
            src: v4(0xc000_0201),
            dst: v4(0xc000_0209),
            underlay_vrf: 0,
            router_mac: None,
            dscp: Default::default(),
            zero_udp_checksum: false,
        };
        b.set_nexthop(1, tunnel).unwrap();
        b.set_nexthop(2, Nexthop::VrfTranslate { vrf: 2 }).unwrap();
        b.set_nexthop(3, Nexthop::Discard).unwrap();
        b.add_route(0, v4(0xc000_0200), 24, 3).unwrap();
        b.add_route(1, v4(0x0a01_0000), 16, 1).unwrap();
        b.add_route(1, v4(0x0a02_0000), 16, 2).unwrap();
        b.add_route(2, v4(0x0a02_0000), 24, 3).unwrap();
        b.publish(&fib).unwrap();
        let (via_tunnel, translated) = (v4(0x0a01_0001), v4(0x0a02_0001));
        // (VRF, prefix) changed, then whether each flow of VRF 1 is known unchanged.
        let cases = [
            ((0, 0xc633_6400, 24), true, true),   // 198.51.100.0/24 in the underlay
            ((0, 0xc000_0200, 24), false, false), // the tunnel's far end: every flow
            ((2, 0x0a03_0000, 16), true, true),   // beside the translated address
            ((2, 0x0a02_0000, 16), true, false),  // holding it
            ((1, 0x0a01_0000, 24), false, true),  // in the flow's own VRF
        ];
        for ((vrf, net, len), tunnel_same, translated_same) in cases {
            let since = fib.generation();
            b.add_route(vrf, v4(net), len, 3).unwrap();
            b.publish(&fib).unwrap();
            let s = fib.snapshot();
            assert_eq!(
                (
                    s.route_unchanged_since(since, 1, via_tunnel, 1),
                    s.route_unchanged_since(since, 1, translated, 3)
                ),
                (tunnel_same, translated_same),
                "{net:#x}/{len} in VRF {vrf}"
            );
        }
    }

    #[test]
    fn a_replaced_configuration_recompiles_only_what_changed() {
        let fib = Fib::new();
        let mut running = config(&[]);
        running.publish(&fib).unwrap();
        let before = fib.snapshot();
        // A reload: one route more in VRF 1, VRF 2 as it was, VRF 3 new.
        let mut new = config(&[(0x0b00_0000, 8, 42)]);
        new.add_vrf(3).unwrap();
        new.add_route(3, v4(0), 0, 9).unwrap();
        running.replace_with(new);
        running.publish(&fib).unwrap();
        let after = fib.snapshot();
        let table = |s: &Snapshot, vrf: usize| s.vrfs[vrf].clone().unwrap();
        assert!(
            Arc::ptr_eq(&table(&before, 2), &table(&after, 2)),
            "VRF 2 shared, not rebuilt"
        );
        assert!(!Arc::ptr_eq(&table(&before, 1), &table(&after, 1)));
        assert!(after.nexthops.is_empty() && Arc::ptr_eq(&before.nexthops, &after.nexthops));
        assert_eq!(after.lookup(1, v4(0x0b01_0203)), Ok(42));
        assert_eq!(after.lookup(1, v4(0x0a00_0501)), Ok(5));
        assert_eq!(after.lookup(2, v4(0xc0a8_0101)), Ok(5));
        assert_eq!(after.lookup(3, v4(0x0102_0304)), Ok(9));

        // Another reload without VRF 3 and without the /8: both gone.
        running.replace_with(config(&[]));
        running.publish(&fib).unwrap();
        let last = fib.snapshot();
        assert!(last.lookup(1, v4(0x0b01_0203)).is_err());
        assert!(last.lookup(3, v4(0x0102_0304)).is_err());
        assert!(Arc::ptr_eq(&table(&before, 2), &table(&last, 2)));
    }
}
