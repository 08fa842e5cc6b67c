//! The forwarding pipeline: what a vRouter does to every burst.
//!
//! Stages, each over the whole burst: parse (once) and classify (ARP answered, tunnels to
//! this node decapsulated into their VRF, after reassembly if the underlay fragmented them
//! ([`crate::reassembly`]), workload sources checked against spoofing) ->
//! flow lookup for the burst -> on a miss (or a flow computed from an older routing or
//! policy generation) the slow path: policy, LPM in the VRF, ECMP member by flow hash, and
//! the forward and reverse flows installed -> act: L3 rewrite (MACs, TTL, incremental
//! checksum) and encapsulation into the frame's headroom, or a drop with its reason; a
//! packet whose next hop's MAC is unknown is parked while ARP / ND resolves it ([`crate::neigh`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Instant;

use fib::{Encap, Fib, Nexthop};
use flow::{Action, FlowTable, Generations, InsertError, NewPair, Reader, Verdict as FlowVerdict};
use policy::{EndpointId, Fields, FlowDecision, Owner, Policy, PolicyStore};
use wire::arp::{ArpOperation, ArpPacket, ArpRepr};
use wire::checksum;
use wire::ethernet::{EtherType, EthernetFrame, EthernetRepr, MacAddr};
use wire::flow::FlowKey;
use wire::ip::{Fragment, IpProtocol};
use wire::ipv4::{Ipv4Packet, Ipv4Repr};
use wire::parse::{L3, PacketMeta, Tunnel, parse_into};
use wire::udp::UdpPacket;

use crate::clock::FlowClock;
use crate::decap::{TunnelId, TunnelVrfs};
use crate::egress::{FOREVER, Plan, PlanCache, UnderlayCache};
use crate::encap::{Ends, Outer, ecn_at, encapsulate};
use crate::flowlog::{FlowLog, LoggedFlow};
use crate::frag::{FragTable, Key as FragKey, Orphans, Piece, piece, split_ipv4};
use crate::frames::FramePool;
use crate::neigh::{self, LearnedMap, Lookup, NeighborCache, NeighborConfig, Parked, Resolver, Step};
use crate::pmtu::PathMtus;
use crate::port::Pkt;
use crate::reassembly::{Added, Reassembly, Release};
use crate::stats::{DropReason, Event, SharedCounters, WorkerCounters};
use crate::worker::{BURST, Emitted, Handler, Verdict};

/// What a port connects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortRole {
    /// The underlay: tunnels to and from other nodes, plain routing in `vrf`.
    Fabric {
        /// The underlay VRF.
        vrf: u32,
    },
    /// The host's own stack (a TAP device, the exception path): traffic for the node's
    /// addresses goes there; what the host sends is routed in `vrf`. Every ARP request
    /// from the host is answered (the router is its next hop for everything).
    Host {
        /// The VRF the host's traffic is routed in.
        vrf: u32,
        /// The MAC of the host side of the TAP.
        mac: MacAddr,
    },
    /// One workload (a pod or VM interface).
    Workload {
        /// The tenant VRF its traffic belongs to.
        vrf: u32,
        /// Its addresses: any other source is spoofed and dropped.
        addrs: Vec<IpAddr>,
        /// Its MAC (the control plane knows it, as OpenContrail's agent does): packets to
        /// its addresses are sent there without asking ARP / ND.
        mac: MacAddr,
        /// Gateway addresses the router answers ARP for on this port.
        gateways: Vec<IpAddr>,
    },
}

/// One port of the node, by its index in every worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConfig {
    /// Name for messages.
    pub name: String,
    /// The router's MAC on this port.
    pub mac: MacAddr,
    /// Largest IP packet the port sends.
    pub mtu: u16,
    /// The router's own addresses on this port (answered for in ARP).
    pub addrs: Vec<IpAddr>,
    /// What it connects to.
    pub role: PortRole,
    /// The 802.1Q VLAN (1-4094) of the port's frames, for a port on a trunk: received
    /// frames must carry its tag, which is taken off before anything else (others are
    /// `WrongVlan` drops), and every frame sent gets it. `None`: untagged.
    pub vlan: Option<u16>,
}

/// The node: its ports and the underlay addresses tunnels to it arrive at.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeConfig {
    /// Ports, in worker port order.
    pub ports: Vec<PortConfig>,
    /// Tunnel endpoint addresses of this node.
    pub tunnel_endpoints: Vec<IpAddr>,
    /// Whether UDP tunnel packets to it over IPv6 without a checksum (zero, as RFC 6935
    /// lets tunnels send) are refused, counted as `BadChecksum`. RFC 6936 asks that
    /// taking them be a choice; they are taken by default, as peers send them (the Linux
    /// kernel with `udp6zerocsumtx`, this router's tunnels with `zero_udp_checksum`).
    pub refuse_zero_udp_checksum6: bool,
    /// Whether the MSS option of the TCP SYNs forwarded is lowered, and to what.
    pub tcp_mss_clamp: MssClamp,
}

/// Lowering the MSS option of TCP SYNs (and SYN-ACKs): the largest segment each end of a
/// connection says it takes, which the other then sends. Lowered to what the path
/// through this node carries, neither end sends segments the path must refuse, which
/// matters where the ICMP errors of path MTU discovery are filtered on the way (the role
/// of OpenContrail's MSS adjustment and VPP's `tcp-mss-clamp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MssClamp {
    /// Left as sent.
    #[default]
    Off,
    /// To fit the path: the egress MTU, less the tunnel's headers for a packet going
    /// into one; for a SYN that came out of a tunnel, also that tunnel's (the segments
    /// it asks for come back through it); less the IP and TCP headers.
    Path,
    /// To at most this many bytes.
    Fixed(u16),
}

impl MssClamp {
    /// The MSS a SYN of this family (`v6`) leaving by a path of `mtu` bytes may announce.
    fn limit(self, mtu: u16, v6: bool) -> Option<u16> {
        match self {
            MssClamp::Off => None,
            MssClamp::Path => Some(mtu.saturating_sub(if v6 { 60 } else { 40 })),
            MssClamp::Fixed(mss) => Some(mss),
        }
    }
}

/// The state every worker shares.
#[derive(Clone)]
pub struct Tables {
    /// Routing.
    pub fib: Arc<Fib>,
    /// Policy.
    pub policy: Arc<PolicyStore>,
    /// Flows.
    pub flows: Arc<FlowTable>,
    /// The node.
    pub node: Arc<NodeConfig>,
    /// Time zero for flow timestamps (seconds since it).
    pub epoch: Instant,
    /// Capture and trace switches.
    pub taps: Arc<crate::taps::Taps>,
    /// Learned next-hop MACs.
    pub neighbors: Arc<NeighborCache>,
    /// Path MTUs toward tunnel ends, learned from the underlay.
    pub path_mtus: Arc<PathMtus>,
    /// Flows decided by rules that log ([`crate::flowlog`]), for the control plane.
    pub flow_log: Arc<FlowLog>,
}

/// The pseudo-port whose neighbour entries are VNI `vni`'s overlay MACs: the inner
/// destination MAC for a VXLAN packet of that VNI to that inner address (a VTEP's
/// forwarding entries, per VNI as EVPN's MAC/IP routes are, so tenants may share
/// addresses). Above every real port: VNIs have 24 bits.
///
/// ```
/// use dataplane::pipeline::overlay_neighbor_port;
/// assert_ne!(overlay_neighbor_port(42), overlay_neighbor_port(43));
/// assert!(overlay_neighbor_port(0) > u32::from(u16::MAX));
/// ```
pub const fn overlay_neighbor_port(vni: u32) -> u32 {
    0xff00_0000 | (vni & 0xff_ffff)
}

/// `Action::flags` bit: this entry is the reverse of the flow's first packet.
const FLAG_REVERSE: u8 = 1;
/// `Action::flags` bit: a deciding rule asked for logging.
const FLAG_LOG: u8 = 2;

/// One worker's pipeline.
pub struct Pipeline {
    t: Tables,
    reader: Reader<'static>,
    // Per burst slot, in arrays of the burst's size: indexes below `BURST` need no
    // bounds checks.
    metas: Box<[PacketMeta; BURST]>,
    keys: Box<[FlowKey; BURST]>,
    hashes: [u64; BURST],
    /// ICMP (type, code) of each packet that has them.
    icmp: [Option<(u8, u8)>; BURST],
    /// Per packet of the burst: the tunnel it was decapsulated from, for `trace`.
    decapped: [Tunnel; BURST],
    /// Per flow-stage index: the decision to act on, and how it was reached (for
    /// `vrouter ctl trace`). Kept here, not built per burst: a burst of a few packets
    /// would otherwise pay for filling all `BURST` of each.
    actions: [Action; BURST],
    how: [&'static str; BURST],
    /// Index into the burst of each packet that reached the flow stage.
    pending: Vec<usize>,
    /// Flows this burst creates, their keys' hashes (forward, reverse), and the
    /// flow-stage index of the packet creating each.
    new_pairs: Vec<NewPair>,
    new_hashes: Vec<[u64; 2]>,
    new_at: Vec<usize>,
    /// IPv4 fragments being followed.
    frags: FragTable,
    /// Fragments of tunnel packets to this node, held until they are whole.
    reassembly: Reassembly,
    /// Whether this burst has an ICMP error (see [`related`]), and those of its ICMP
    /// errors that belong to allowed flows: (index in the burst, action, key hash).
    icmp_errors: bool,
    related: Vec<(usize, Action, u64)>,
    /// Later fragments that came before their first, and (kept for its room) the list
    /// of those ready to follow it.
    orphans: Orphans<Orphan>,
    orphans_ready: Vec<Orphan>,
    /// The exception-path port, if the node has one: (index, host-side MAC, our MAC).
    host: Option<(u16, MacAddr, MacAddr)>,
    /// ICMP errors this worker may still send.
    icmp_limit: TokenBucket,
    /// Next hops being resolved (packets parked on them) and tunnel underlays resolved.
    egress: Egress,
    /// Fragments made in the last burst beyond each packet's first: they follow it out
    /// between bursts.
    fragments: Vec<Emitted>,
    /// Which VRF each recent tunnel's packets belong to.
    tunnel_vrfs: TunnelVrfs,
    /// When learned neighbours were last aged (seconds on the tables' clock).
    aged: u32,
    clock: FlowClock,
    /// Taken out for each burst and put back after it.
    held: Option<Held>,
    /// The worker's counters, for the [`Event`]s.
    counters: Option<SharedCounters>,
}

/// ICMP errors (time exceeded, fragmentation needed) per second per worker, and burst:
/// enough for traceroute and PMTU discovery, too few to amplify an attack.
pub const ICMP_ERRORS_PER_SEC: u32 = 100;

/// A token bucket of [`ICMP_ERRORS_PER_SEC`].
struct TokenBucket {
    tokens: u32,
    refilled: Instant,
}

impl TokenBucket {
    fn take(&mut self) -> bool {
        let elapsed = self.refilled.elapsed();
        let add = (elapsed.as_micros() as u64 * u64::from(ICMP_ERRORS_PER_SEC) / 1_000_000) as u32;
        if add > 0 {
            self.tokens = (self.tokens + add).min(ICMP_ERRORS_PER_SEC);
            self.refilled = Instant::now();
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

/// Why `act` did not forward: a plain drop, or one that deserves an ICMP error to the
/// source (sent when the rate limit allows, else counted as `why`).
enum Refused {
    Drop(DropReason),
    Icmp {
        why: DropReason,
        err: IcmpError,
    },
    /// Ready but for the next hop's MAC: park it on `port`'s resolution of `next`.
    Park {
        port: u16,
        next: IpAddr,
    },
}

/// What `act` updates per worker: next hops being resolved, tunnel underlays, and plans;
/// and where it splits a packet too big for its egress.
struct Egress {
    resolver: Resolver,
    underlay: UnderlayCache,
    plans: PlanCache,
    splits: Splits,
}

/// Where `act` splits a packet too big for its egress.
#[derive(Default)]
struct Splits {
    /// The packet being split, copied out of its frame, and its pieces beyond the first.
    scratch: Vec<u8>,
    pieces: Vec<Pkt>,
    /// The fragments `act` made in this burst beyond each packet's first (the packet
    /// itself), by the frame of that first and its next hop: ready to go out of its port,
    /// or dropped with a reason. They follow the first once its verdict is known.
    made: Vec<(u64, IpAddr, Emitted)>,
}

/// The ICMP errors the router sends, for IPv4 and IPv6 alike.
#[derive(Clone, Copy)]
enum IcmpError {
    /// TTL / hop limit expired in transit.
    TimeExceeded,
    /// Too big for the egress (after any encapsulation) and not to be fragmented:
    /// fragmentation needed / packet too big.
    TooBig { mtu: u16 },
}

/// The MAC of `ip` on `port` as forwarding finds it at `now` (seconds on the tables'
/// clock): the control plane's neighbours first, then a workload port's own MAC for the
/// workload's addresses (both [`Lookup::Known`] for good), then what was learned.
pub fn neighbor_mac(
    node: &NodeConfig,
    fib: &fib::Snapshot,
    learned: &LearnedMap,
    config: &NeighborConfig,
    port: u32,
    ip: IpAddr,
    now: u32,
) -> Lookup {
    if let Some(mac) = fib.mac(port, ip) {
        return Lookup::Known { mac, stale_at: FOREVER };
    }
    if let Some(PortRole::Workload { addrs, mac, .. }) = node.ports.get(port as usize).map(|p| &p.role)
        && addrs.contains(&ip)
    {
        return Lookup::Known {
            mac: *mac,
            stale_at: FOREVER,
        };
    }
    neigh::lookup(learned, config, port, ip, now)
}

/// What `act` reads besides the packet: the shared tables, this burst's routing and
/// learned-neighbour snapshots, the clock.
struct Ctx<'a> {
    t: &'a Tables,
    counters: Option<&'a WorkerCounters>,
    host: Option<(u16, MacAddr, MacAddr)>,
    fib: &'a fib::Snapshot,
    learned: &'a LearnedMap,
    now: u32,
}

impl Ctx<'_> {
    /// Counts `n` of `event` in the worker's counters.
    fn count(&self, event: Event, n: u64) {
        if let Some(c) = self.counters {
            c.event(event, n);
        }
    }

    /// The MAC of `ip` on `port` and until when it may be reused: the control plane's
    /// neighbours first, then a workload port's own MAC for the workload's addresses, then
    /// what was learned (a stale entry is used once, while `resolver` confirms it). `None`:
    /// to be resolved.
    fn mac(&self, resolver: &mut Resolver, port: u32, ip: IpAddr) -> Option<(MacAddr, u32)> {
        let nb = self.t.neighbors.config();
        match neighbor_mac(&self.t.node, self.fib, self.learned, nb, port, ip, self.now) {
            Lookup::Known { mac, stale_at } => Some((mac, stale_at)),
            Lookup::Stale(m) => {
                resolver.confirm(port as u16, ip, self.now);
                Some((m, self.now))
            }
            Lookup::Unknown => None,
        }
    }

    fn port(&self, port: u32) -> Result<&PortConfig, DropReason> {
        self.t.node.ports.get(port as usize).ok_or(DropReason::NoSuchPort)
    }

    /// Where packets for `dst` via `nexthop` go, and until when that answer may be reused
    /// (0: not at all).
    fn plan(&self, egress: &mut Egress, nexthop: u32, dst: IpAddr, hash: u64) -> Result<(Plan, u32), Refused> {
        let split = |m: Option<(MacAddr, u32)>| m.map_or((None, 0), |(m, until)| (Some(m), until));
        Ok(match self.fib.nexthop(nexthop).ok_or(DropReason::NoRoute)? {
            Nexthop::Discard => return Err(DropReason::Discard.into()),
            Nexthop::Receive => (Plan::Host, FOREVER),
            Nexthop::Interface { port, gateway } => {
                let next = gateway.unwrap_or(dst);
                let (mac, until) = split(self.mac(&mut egress.resolver, *port, next));
                let pc = self.port(*port)?;
                let (src_mac, mtu) = (pc.mac, pc.mtu);
                let port = *port as u16;
                (
                    Plan::Direct {
                        port,
                        next,
                        mac,
                        src_mac,
                        mtu,
                    },
                    until,
                )
            }
            Nexthop::Tunnel {
                encap,
                src,
                dst: tdst,
                underlay_vrf,
                router_mac,
                dscp,
                zero_udp_checksum,
            } => {
                let ((port, next, mac), shared) = egress.underlay.resolve(self.fib, *underlay_vrf, *tdst, hash)?;
                let (mac, until) = match mac {
                    Some(m) => (Some(m), FOREVER),
                    None => split(self.mac(&mut egress.resolver, port, next)),
                };
                // VXLAN carries the inner Ethernet header: addressed to the inner destination
                // (its overlay neighbour entry), else to the remote VTEP's router MAC.
                let inner_mac = match encap {
                    Encap::Vxlan { vni } => self.fib.mac(overlay_neighbor_port(*vni), dst).or(*router_mac),
                    _ => None,
                };
                let pc = self.port(port)?;
                let ends = Ends {
                    src: *src,
                    dst: *tdst,
                    src_mac: pc.mac,
                    // Without the next hop's MAC the packet is finished but for its first
                    // six bytes.
                    dst_mac: mac.unwrap_or(MacAddr([0; 6])),
                    inner_mac,
                    dscp: *dscp,
                    zero_udp_checksum: *zero_udp_checksum,
                };
                // The FIB refuses ends of two families.
                let outer = Outer::new(*encap, &ends).ok_or(DropReason::Unsupported)?;
                // Narrower where the underlay said so, while that holds.
                let (mtu, until) = match self.t.path_mtus.get(*tdst, self.now) {
                    Some((path, expires)) if path < pc.mtu => (path, until.min(expires)),
                    _ => (pc.mtu, until),
                };
                let plan = Plan::Encap {
                    port: port as u16,
                    next,
                    mac,
                    mtu,
                    inner_mtu: outer.inner_mtu(mtu),
                    outer,
                };
                (plan, if shared { until } else { 0 })
            }
            Nexthop::Ecmp { .. } | Nexthop::VrfTranslate { .. } => return Err(DropReason::NoRoute.into()),
        })
    }
}

impl From<DropReason> for Refused {
    fn from(why: DropReason) -> Self {
        Refused::Drop(why)
    }
}

impl Pipeline {
    /// A pipeline over `tables`; `None` if the flow table has no reader slot left.
    pub fn new(tables: Tables) -> Option<Self> {
        let host = tables.node.ports.iter().enumerate().find_map(|(i, p)| match p.role {
            PortRole::Host { mac, .. } => Some((i as u16, mac, p.mac)),
            _ => None,
        });
        Some(Pipeline {
            host,
            frags: FragTable::new(),
            reassembly: Reassembly::new(),
            orphans: Orphans::new(),
            icmp_errors: false,
            related: Vec::with_capacity(BURST),
            orphans_ready: Vec::new(),
            reader: tables.flows.shared_reader()?,
            metas: Box::new([PacketMeta::default(); BURST]),
            keys: Box::new([FlowKey::default(); BURST]),
            hashes: [0; BURST],
            icmp: [None; BURST],
            decapped: [Tunnel::None; BURST],
            actions: [Action::deny(); BURST],
            how: [""; BURST],
            pending: Vec::with_capacity(BURST),
            new_pairs: Vec::with_capacity(BURST),
            new_hashes: Vec::with_capacity(BURST),
            new_at: Vec::with_capacity(BURST),
            icmp_limit: TokenBucket {
                tokens: ICMP_ERRORS_PER_SEC,
                refilled: Instant::now(),
            },
            tunnel_vrfs: TunnelVrfs::new(),
            egress: Egress {
                resolver: Resolver::new(tables.neighbors.clone()),
                underlay: UnderlayCache::default(),
                plans: PlanCache::new(),
                splits: Splits::default(),
            },
            fragments: Vec::new(),
            aged: 0,
            clock: FlowClock::new(tables.epoch),
            held: Some(Held::new(&tables)),
            counters: None,
            t: tables,
        })
    }
}

impl Handler for Pipeline {
    fn count_into(&mut self, counters: SharedCounters) {
        self.counters = Some(counters);
    }

    /// Between bursts: newer snapshots taken, so that an idle worker lets go of replaced
    /// tables (for the FIB to reuse a big one's memory); requests (re)sent, parked
    /// packets released with the learned MAC or dropped when the next hop never answered.
    fn pending(&mut self, pool: &mut FramePool, stopping: bool, out: &mut Vec<Emitted>) {
        if let Some(held) = self.held.as_mut() {
            held.refresh(&self.t);
        }
        if !self.orphans.is_idle() {
            self.replay_orphans(pool);
            let fragments = &mut self.fragments;
            self.orphans.expire(self.clock.now(), stopping, |o| {
                fragments.push(Emitted {
                    pkt: o.pkt,
                    verdict: Verdict::Drop(DropReason::FragmentOrphan),
                    originated: false,
                })
            });
        }
        let node = &self.t.node;
        // Out of `port`, with its VLAN's tag.
        let tagged = |pool: &mut FramePool, mut pkt: Pkt, port: u16| match tag(node, pool, &mut pkt, port) {
            Ok(()) => (pkt, Verdict::Tx(port)),
            Err(why) => (pkt, Verdict::Drop(why)),
        };
        for mut e in self.fragments.drain(..) {
            if let Verdict::Tx(port) = e.verdict {
                (e.pkt, e.verdict) = tagged(pool, e.pkt, port);
            }
            out.push(e);
        }
        if !self.reassembly.is_idle() {
            let host = self.host;
            self.reassembly.release(self.clock.now(), stopping, |pkt, why| {
                let (pkt, verdict) = match why {
                    Release::Merged => (pkt, Verdict::Drop(DropReason::FragmentMerged)),
                    Release::Late => (pkt, Verdict::Drop(DropReason::ReassemblyTimeout)),
                    // As it would have gone unheld: to the host's stack.
                    Release::Pass => match to_host(host, pool, &pkt) {
                        Ok(Verdict::Tx(port)) => tagged(pool, pkt, port),
                        Ok(v) => (pkt, v),
                        Err(why) => (pkt, Verdict::Drop(why)),
                    },
                };
                out.push(Emitted {
                    pkt,
                    verdict,
                    originated: false,
                });
            });
        }
        if self.egress.resolver.is_idle() {
            return;
        }
        self.egress.resolver.poll(stopping, |step| match step {
            Step::Request { port, ip } => {
                if let Some(pkt) = request(node, pool, port, ip) {
                    let (pkt, verdict) = tagged(pool, pkt, port);
                    out.push(Emitted {
                        pkt,
                        verdict,
                        originated: true,
                    });
                }
            }
            Step::Release(mac, parked) => out.extend(parked.into_iter().map(|p| {
                pool.bytes_mut(p.pkt.addr, 6).copy_from_slice(&mac.0);
                let (pkt, verdict) = tagged(pool, p.pkt, p.port);
                Emitted {
                    pkt,
                    verdict,
                    originated: p.originated,
                }
            })),
            Step::GiveUp(parked) => out.extend(parked.into_iter().map(|p| Emitted {
                pkt: p.pkt,
                verdict: Verdict::Drop(DropReason::NeighborUnresolved),
                originated: p.originated,
            })),
        });
    }

    fn process(&mut self, port: u16, pkts: &mut [Pkt], pool: &mut FramePool, verdicts: &mut [Verdict]) {
        assert!(
            pkts.len() <= BURST && verdicts.len() == pkts.len(),
            "a burst and its verdicts"
        );
        let mut held = self.held.take().expect("the snapshots are put back after every burst");
        held.refresh(&self.t);
        self.burst(&held, port, pkts, pool, verdicts);
        if held.node.ports.iter().any(|p| p.vlan.is_some()) {
            for (pkt, v) in pkts.iter_mut().zip(verdicts.iter_mut()) {
                if let Verdict::Tx(out) = *v
                    && let Err(why) = tag(&held.node, pool, pkt, out)
                {
                    *v = Verdict::Drop(why);
                }
            }
        }
        self.held = Some(held);
    }
}

/// A later fragment parked until its first passes: what stage 1 made of it.
struct Orphan {
    pkt: Pkt,
    port: u16,
    meta: PacketMeta,
    decapped: Tunnel,
}

/// The node configuration and the FIB and policy snapshots the bursts work with, kept
/// across bursts, so a burst changes no reference counts. The node configuration never
/// changes; for the snapshots each burst compares the published generations with the kept
/// ones (one load each) and takes new ones only when they moved, where loading them every
/// burst cost a few atomic read-modify-writes each; between bursts, so an idle worker holds
/// no superseded snapshot.
struct Held {
    node: Arc<NodeConfig>,
    fib: Arc<fib::Snapshot>,
    policy: Arc<Policy>,
}

impl Held {
    fn new(t: &Tables) -> Self {
        Held {
            node: t.node.clone(),
            fib: t.fib.snapshot(),
            policy: t.policy.load(),
        }
    }

    #[inline]
    fn refresh(&mut self, t: &Tables) {
        if self.fib.generation() != t.fib.generation() {
            self.fib = t.fib.snapshot();
        }
        if self.policy.generation() != t.policy.generation() {
            self.policy = t.policy.load();
        }
    }
}

impl Pipeline {
    /// [`Handler::process`] with the burst's snapshots.
    fn burst(&mut self, held: &Held, port: u16, pkts: &mut [Pkt], pool: &mut FramePool, verdicts: &mut [Verdict]) {
        let (node, fib) = (&*held.node, &*held.fib);
        let Some(pc) = node.ports.get(usize::from(port)) else {
            verdicts.fill(Verdict::Drop(DropReason::NoSuchPort));
            return;
        };
        // Stage 1: parse, answer ARP, decapsulate, pick the VRF.
        self.pending.clear();
        for i in 0..pkts.len() {
            match self.classify(pc, port, fib, &mut pkts[i], pool, i) {
                Ok(None) => self.pending.push(i),
                Ok(Some(v)) => verdicts[i] = v,
                Err(why) => verdicts[i] = Verdict::Drop(why),
            }
        }
        self.decide_and_act(held, pc, port, pkts, pool, verdicts);
    }

    /// Stages 2 and 3 for the packets of `pkts` that stage 1 left in `self.pending`
    /// (received on `port`, whose configuration is `pc`), their headers in `self.metas`.
    #[inline(always)]
    fn decide_and_act(
        &mut self,
        held: &Held,
        pc: &PortConfig,
        port: u16,
        pkts: &mut [Pkt],
        pool: &mut FramePool,
        verdicts: &mut [Verdict],
    ) {
        let (fib, policy) = (&*held.fib, &*held.policy);
        if self.icmp_errors {
            self.icmp_errors = false;
            self.take_related(fib, pkts, pool);
        }
        // Stage 2: flow lookup for the burst, keys and hashes gathered from the pending
        // packets' headers. Gathered here rather than as each packet is classified: by
        // now the parser's narrow stores into a key have reached the cache, so reading the
        // key whole does not stall on them.
        let n = self.pending.len();
        for (k, &i) in self.pending.iter().enumerate() {
            let key = &self.metas[i].innermost().key;
            self.hashes[k] = key.hash();
            self.keys[k] = *key;
        }
        for (j, r) in self.related.iter().enumerate() {
            self.hashes[n + j] = r.2;
        }
        let (keys, hashes) = (&*self.keys, &self.hashes);
        let mut hits = [None; BURST];
        self.reader
            .lookup_burst_counted(&keys[..n], &hashes[..n], &mut hits[..n]);
        let gens = Generations {
            route: fib.generation(),
            policy: policy.generation(),
        };
        let now = self.clock.now();
        // New flows' first route lookups, started together (a big VRF's table is tens of
        // MiB: each lookup would otherwise wait for its own miss).
        for (k, hit) in hits[..n].iter().enumerate() {
            if hit.is_none()
                && let Some(dst) = keys[k].dst_ip()
            {
                fib.prefetch(keys[k].vrf, dst);
            }
        }
        // Stage 3: decide (slow path on a miss or a stale flow), then act.
        let (actions, how) = (&mut self.actions, &mut self.how);
        for (k, hit) in hits[..n].iter().enumerate() {
            let i = self.pending[k];
            let bytes = pkts[i].len;
            let tcp = self.metas[i].innermost().tcp_flags;
            how[k] = "flow hit";
            actions[k] = match hit {
                Some(id) => {
                    let f = self.reader.flow(*id);
                    f.record(bytes, now, tcp);
                    let a = f.action();
                    let had = f.generations();
                    if had == gens || a.verdict == FlowVerdict::Hold {
                        a
                    } else if had.policy == gens.policy
                        && keys[k]
                            .dst_ip()
                            .is_some_and(|dst| fib.route_unchanged_since(had.route, keys[k].vrf, dst, a.nexthop))
                    {
                        // Only routes elsewhere changed: the same decision, now current.
                        f.set_action(a, gens);
                        how[k] = "flow hit: route changes elsewhere";
                        a
                    } else {
                        // Computed from an older routing or policy: decide again, keeping
                        // which direction this entry is.
                        let fresh = decide(
                            (policy, fib, &self.t.node),
                            &keys[k],
                            hashes[k],
                            (port, a.flags & FLAG_REVERSE != 0),
                            self.icmp[i],
                            (&self.t.flow_log, now),
                        );
                        f.set_action(fresh, gens);
                        how[k] = "flow stale: re-decided";
                        fresh
                    }
                }
                None => {
                    how[k] = "flow miss: policy + route, pair installed";
                    let tables = (policy, fib, &*self.t.node);
                    let log = (&*self.t.flow_log, now);
                    let (mut pair, rev_hash) = new_pair(tables, &keys[k], hashes[k], port, self.icmp[i], log);
                    pair.first_packet = Some((bytes, tcp));
                    self.new_pairs.push(pair);
                    self.new_hashes.push([hashes[k], rev_hash]);
                    self.new_at.push(k);
                    pair.fwd_action
                }
            };
        }
        // New flows, installed together. If the table refuses (full, quota: counted by
        // the table) the packet is still forwarded by the decision. The first packet
        // counts in its flow like every later one (written with the entry); so does a
        // second packet of the same new flow in this burst (its insert finds the first's).
        if !self.new_pairs.is_empty() {
            let (reader, metas, pending, new_at) = (&self.reader, &self.metas, &self.pending, &self.new_at);
            reader.insert_pairs_hashed(&self.new_pairs, &self.new_hashes, gens, now, |j, res| {
                let k = new_at[j];
                if let Err(InsertError::Exists) = res
                    && let Some(id) = reader.lookup(&keys[k], hashes[k])
                {
                    let i = pending[k];
                    reader.flow(id).record(pkts[i].len, now, metas[i].innermost().tcp_flags);
                }
            });
            self.new_pairs.clear();
            self.new_hashes.clear();
            self.new_at.clear();
        }
        // ICMP errors about allowed flows, decided apart: act on them with the rest.
        for (j, (i, action, _)) in self.related.drain(..).enumerate() {
            self.pending.push(i);
            (actions[n + j], how[n + j]) = (action, "ICMP error about an allowed flow");
        }
        let learned = self.t.neighbors.current();
        self.egress
            .plans
            .sync((fib.egress_generation(), self.t.path_mtus.generation()), &learned);
        let cx = Ctx {
            t: &self.t,
            counters: self.counters.as_ref().map(|c| &***c),
            host: self.host,
            fib,
            learned: &learned,
            now,
        };
        for (k, &i) in self.pending.iter().enumerate() {
            let meta = &self.metas[i];
            verdicts[i] = match act(&cx, &mut self.egress, actions[k], &mut pkts[i], pool, meta, hashes[k]) {
                Ok(v) => v,
                Err(Refused::Drop(why)) => Verdict::Drop(why),
                Err(Refused::Icmp { why, .. }) if !self.icmp_limit.take() => Verdict::Drop(why),
                Err(Refused::Icmp { why, err }) if self.decapped[i] == Tunnel::None => {
                    match icmp_error(pool, &mut pkts[i], meta, pc, port, err) {
                        Some(v) => {
                            cx.count(Event::IcmpErrors, 1);
                            v
                        }
                        None => Verdict::Drop(why),
                    }
                }
                // About a packet that came out of a tunnel: back through one.
                Err(Refused::Icmp { why, err }) => {
                    let meta = &mut self.metas[i];
                    let sent = match icmp_error_routed(&cx, &mut self.egress, pool, &mut pkts[i], meta, err) {
                        Some(Ok(v)) => v,
                        Some(Err(Refused::Park { port, next })) => {
                            park(&mut self.egress.resolver, pkts[i], port, next, now)
                        }
                        _ => Verdict::Drop(why),
                    };
                    if !matches!(sent, Verdict::Drop(_)) {
                        cx.count(Event::IcmpErrors, 1);
                        cx.count(Event::IcmpRouted, 1);
                    }
                    sent
                }
                Err(Refused::Park { port, next }) => park(&mut self.egress.resolver, pkts[i], port, next, now),
            };
        }
        if !self.egress.splits.made.is_empty() {
            fragments_follow(&mut self.egress, &mut self.fragments, pool, pkts, verdicts, now);
        }
        if now != self.aged {
            self.aged = now;
            self.t.neighbors.expire(now);
        }
        if self.t.taps.tracing() {
            self.trace(port, pkts, verdicts, &self.how[..self.pending.len()]);
        }
    }
}

impl Pipeline {
    /// One line per packet of the burst for `vrouter ctl trace`: ingress, what the
    /// packet was taken for, the flow stage's path and the outcome.
    fn trace(&self, port: u16, pkts: &[Pkt], verdicts: &[Verdict], how: &[&str]) {
        let mut k = 0;
        for (i, (p, v)) in pkts.iter().zip(verdicts).enumerate() {
            let flow_stage = self.pending.get(k) == Some(&i);
            let what = if flow_stage {
                let tunnel = match self.decapped[i] {
                    Tunnel::None => String::new(),
                    t => format!("decap {t:?}, "),
                };
                // The flow stage compacted the keys to its own order.
                let line = format!("{tunnel}{}: {}", self.keys[k], how[k]);
                k += 1;
                line
            } else {
                format!(
                    "{:?} (answered or refused before the flow stage)",
                    self.metas[i].outer.ethertype
                )
            };
            self.t
                .taps
                .record_trace(|| format!("port {port} len {}: {what} => {v:?}", p.len));
        }
    }
}

/// Reads an ICMP error to this node's tunnel endpoint (headers `h` in `frame`, from a
/// fabric port of MTU `port_mtu`, at `now`): one about a tunnel packet of ours that the
/// underlay found too big lowers the path MTU toward its far end ([`crate::pmtu`]).
#[cold]
#[inline(never)]
fn learn_path_mtu(
    t: &Tables,
    counters: Option<&WorkerCounters>,
    frame: &[u8],
    h: &wire::parse::Headers,
    (port_mtu, now): (u16, u32),
) {
    let Some(icmp) = frame.get(usize::from(h.l4)..usize::from(h.l3_end)) else {
        return;
    };
    if let Some((far, mtu)) = crate::pmtu::reported(icmp, h.l3_kind == L3::Ipv6, &t.node.tunnel_endpoints)
        && mtu < port_mtu
        && t.path_mtus.learn(far, mtu, now)
        && let Some(c) = counters
    {
        c.event(Event::PathMtuLearned, 1);
    }
}

impl Pipeline {
    /// IP fragments: the first leaves its ports, later ones take them (so they hit the
    /// first one's flow). The datagram is named by the IPv4 identification or the IPv6
    /// fragment header's. `Ok(Some(key))`: a later fragment whose first has not passed.
    fn follow_fragment(
        &mut self,
        i: usize,
        h: &wire::parse::Headers,
        pool: &mut FramePool,
        pkt: &Pkt,
    ) -> Result<Option<FragKey>, DropReason> {
        let Piece {
            ident, at, len, more, ..
        } = piece(pool.bytes_mut(pkt.addr, pkt.len as usize), h)?;
        let k = &mut self.metas[i].innermost_mut().key;
        let key = FragKey {
            vrf: k.vrf,
            src: k.src,
            dst: k.dst,
            proto: k.proto,
            ident,
        };
        if h.fragment == Fragment::First {
            self.frags.first(key, (k.src_port, k.dst_port), len);
            if !self.orphans.is_idle() {
                self.orphans.wake(&key);
            }
            return Ok(None);
        }
        let Some((sp, dp)) = self.frags.later(key, at, len, more) else {
            return Ok(Some(key));
        };
        k.src_port = sp;
        k.dst_port = dp;
        Ok(None)
    }

    /// Parks packet `i` of the burst, received on `port`: a later fragment whose first
    /// has not passed (datagram `key`). `FragmentOrphan` if no room is left.
    #[cold]
    #[inline(never)]
    fn park_orphan(&mut self, i: usize, port: u16, pkt: &Pkt, key: FragKey) -> Result<Option<Verdict>, DropReason> {
        let orphan = Orphan {
            pkt: *pkt,
            port,
            meta: self.metas[i],
            decapped: self.decapped[i],
        };
        match self.orphans.park(key, self.clock.now(), orphan) {
            Ok(()) => Ok(Some(Verdict::Keep)),
            Err(_) => Err(DropReason::FragmentOrphan),
        }
    }

    /// Takes out of `self.pending` the ICMP errors about packets of flows allowed in the
    /// direction quoted, into `self.related` with their actions ([`related`]); stage 3
    /// acts on them after the others are decided.
    #[cold]
    #[inline(never)]
    fn take_related(&mut self, fib: &fib::Snapshot, pkts: &[Pkt], pool: &mut FramePool) {
        let mut k = 0;
        while k < self.pending.len() {
            let i = self.pending[k];
            let key = self.metas[i].innermost().key;
            let hash = key.hash();
            match related(
                &self.reader,
                fib,
                (&key, hash),
                self.icmp[i],
                &pkts[i],
                pool,
                &self.metas[i],
            ) {
                Some(action) => {
                    self.related.push((i, action, hash));
                    self.pending.remove(k);
                }
                None => k += 1,
            }
        }
    }

    /// Between bursts: the parked later fragments whose first has passed go through the
    /// flow stage as that first did, in bursts by the port they came in on, and follow
    /// the last burst out (`self.fragments`).
    #[cold]
    #[inline(never)]
    fn replay_orphans(&mut self, pool: &mut FramePool) {
        let mut ready = std::mem::take(&mut self.orphans_ready);
        self.orphans.take_ready(&mut ready);
        if ready.is_empty() {
            self.orphans_ready = ready;
            return;
        }
        let mut held = self.held.take().expect("the snapshots are put back after every burst");
        held.refresh(&self.t);
        ready.sort_by_key(|o| o.port);
        let mut pkts = [Pkt::default(); BURST];
        let mut verdicts = [Verdict::Drop(DropReason::FragmentOrphan); BURST];
        for same_port in ready.chunk_by(|a, b| a.port == b.port) {
            for chunk in same_port.chunks(BURST) {
                let port = chunk[0].port;
                let n = chunk.len();
                self.pending.clear();
                for (k, o) in chunk.iter().enumerate() {
                    (pkts[k], self.metas[k], self.decapped[k], self.icmp[k]) = (o.pkt, o.meta, o.decapped, None);
                    verdicts[k] = Verdict::Drop(DropReason::FragmentOrphan);
                    let h = *self.metas[k].innermost();
                    if let Ok(None) = self.follow_fragment(k, &h, pool, &pkts[k]) {
                        self.pending.push(k);
                    }
                }
                match held.node.ports.get(usize::from(port)) {
                    Some(pc) => self.decide_and_act(&held, pc, port, &mut pkts[..n], pool, &mut verdicts[..n]),
                    None => verdicts[..n].fill(Verdict::Drop(DropReason::NoSuchPort)),
                }
                for k in 0..n {
                    // Kept: parked again, on its next hop.
                    if verdicts[k] != Verdict::Keep {
                        self.fragments.push(Emitted {
                            pkt: pkts[k],
                            verdict: verdicts[k],
                            originated: false,
                        });
                    }
                }
            }
        }
        self.held = Some(held);
        ready.clear();
        self.orphans_ready = ready;
    }

    /// A fragment that came in on a fabric port, parsed into `self.metas[i]`: held if it
    /// may belong to a tunnel packet to this node, until its datagram is whole
    /// ([`crate::reassembly`]); `Pass` if not.
    #[cold]
    #[inline(never)]
    fn reassemble(&mut self, pc: &PortConfig, pkt: &mut Pkt, pool: &mut FramePool, i: usize) -> Added {
        let o = self.metas[i].outer;
        let to_us = o
            .key
            .dst_ip()
            .is_some_and(|d| self.t.node.tunnel_endpoints.contains(&d));
        if !to_us || !matches!(o.l4_proto, IpProtocol::Udp | IpProtocol::Gre) || pool.bytes_mut(pkt.addr, 6) != pc.mac.0
        {
            return Added::Pass;
        }
        let added = self.reassembly.add(pool, pkt, &o, self.clock.now());
        if added == Added::Whole
            && let Some(c) = &self.counters
        {
            c.event(Event::Reassembled, 1);
        }
        added
    }

    /// Stage 1 for one packet. `Ok(None)`: it goes on to the flow stage, its key (VRF
    /// set) in its innermost headers.
    fn classify(
        &mut self,
        pc: &PortConfig,
        port: u16,
        fib: &fib::Snapshot,
        pkt: &mut Pkt,
        pool: &mut FramePool,
        i: usize,
    ) -> Result<Option<Verdict>, DropReason> {
        if let Some(vid) = pc.vlan {
            untag(pool, pkt, vid)?;
        }
        // Parsed once, or twice for the tunnel packet a fragment completes.
        let (frame, meta) = loop {
            let frame = pool.bytes_mut(pkt.addr, pkt.len as usize);
            let meta = &mut self.metas[i];
            if let Err(e) = parse_into(frame, meta)
                && !plain_after_all(&e, meta, &self.t.node.tunnel_endpoints)
            {
                return Err(DropReason::Malformed);
            }
            if meta.outer.vlans > 0 {
                return Err(DropReason::WrongVlan);
            }
            if meta.outer.fragment == Fragment::Whole || !matches!(pc.role, PortRole::Fabric { .. }) {
                break (frame, meta);
            }
            match self.reassemble(pc, pkt, pool, i) {
                Added::Held => return Ok(Some(Verdict::Keep)),
                Added::Whole => continue,
                Added::Pass => break (pool.bytes_mut(pkt.addr, pkt.len as usize), &mut self.metas[i]),
            }
        };
        let eth = EthernetFrame::new_unchecked(&frame[..]);
        if meta.outer.ethertype == EtherType::Arp {
            let now = self.clock.now();
            return answer_arp(&self.t.neighbors, pc, frame, port, now).map(Some);
        }
        if meta.outer.l4_proto == IpProtocol::Icmpv6
            && meta.tunnel == Tunnel::None
            && matches!(
                frame.get(usize::from(meta.outer.l4)),
                Some(&(wire::icmpv6::TYPE_NEIGHBOR_SOLICIT | wire::icmpv6::TYPE_NEIGHBOR_ADVERT))
            )
        {
            let now = self.clock.now();
            return neighbor_discovery(&self.t.neighbors, pc, frame, &meta.outer, pkt, port, now).map(Some);
        }
        let host = self.host;
        let dst_mac = eth.dst_addr();
        if dst_mac != pc.mac && !dst_mac.is_multicast() {
            return Err(DropReason::NotForUs);
        }
        let seen = meta.tunnel;
        // The longest inner packet the tunnel it came in carries, if it came in one.
        let mut tunnel_mtu = None;
        let vrf = match &pc.role {
            PortRole::Workload { vrf, addrs, .. } => {
                if !addrs.is_empty() && !meta.outer.key.src_ip().is_some_and(|s| addrs.contains(&s)) {
                    return Err(DropReason::Spoofed);
                }
                *vrf
            }
            PortRole::Host { vrf, .. } => *vrf,
            PortRole::Fabric { vrf } => {
                let to_us = meta
                    .outer
                    .key
                    .dst_ip()
                    .is_some_and(|d| self.t.node.tunnel_endpoints.contains(&d));
                if to_us && matches!(meta.tunnel, Tunnel::Vxlan { .. } | Tunnel::MplsOverUdp { .. }) {
                    check_outer_udp(frame, &meta.outer, self.t.node.refuse_zero_udp_checksum6)?;
                }
                if to_us
                    && meta.tunnel == Tunnel::None
                    && matches!(meta.outer.l4_proto, IpProtocol::Icmp | IpProtocol::Icmpv6)
                {
                    let counters = self.counters.as_ref().map(|c| &***c);
                    learn_path_mtu(&self.t, counters, frame, &meta.outer, (pc.mtu, self.clock.now()));
                }
                if to_us && meta.tunnel != Tunnel::None {
                    propagate_ecn(frame, &meta.outer, &meta.inner)?;
                    tunnel_mtu = Some(pc.mtu.saturating_sub(meta.inner.l3 - meta.outer.l3));
                }
                match (meta.tunnel, to_us) {
                    (Tunnel::None, _) if meta.outer.key.dst_ip().is_some_and(|d| pc.addrs.contains(&d)) => {
                        return to_host(host, pool, pkt).map(Some);
                    }
                    (Tunnel::None, _) | (_, false) => *vrf,
                    (Tunnel::Vxlan { vni }, true) => {
                        let vrf = self
                            .tunnel_vrfs
                            .get(fib.egress_generation(), TunnelId::Vni(vni), || fib.vni(vni))
                            .ok_or(DropReason::UnknownVni)?;
                        // The inner Ethernet frame becomes the packet.
                        let off = u32::from(meta.inner.l2);
                        pkt.addr += u64::from(off);
                        pkt.len = u32::from(meta.outer.l3_end) - off;
                        if !meta.decapsulate(meta.inner.l2) {
                            return Err(DropReason::Malformed);
                        }
                        vrf
                    }
                    (Tunnel::MplsOverUdp { top, .. } | Tunnel::MplsOverGre { top, .. }, true) => {
                        let vrf = self
                            .tunnel_vrfs
                            .get(fib.egress_generation(), TunnelId::Label(top.label), || {
                                label_vrf(fib, &self.t.node, top.label)
                            })
                            .ok_or(DropReason::UnknownLabel)?;
                        // The inner IP packet gets an Ethernet header where the label was.
                        let l3 = u32::from(meta.inner.l3);
                        let ethertype = if meta.inner.l3_kind == L3::Ipv6 {
                            EtherType::Ipv6
                        } else {
                            EtherType::Ipv4
                        };
                        pkt.addr += u64::from(l3 - 14);
                        pkt.len = u32::from(meta.outer.l3_end) - (l3 - 14);
                        let f = pool.bytes_mut(pkt.addr, 14);
                        EthernetRepr {
                            src: MacAddr([0; 6]),
                            dst: pc.mac,
                            ethertype,
                        }
                        .emit(&mut EthernetFrame::new_unchecked(f));
                        if !meta.decapsulate(meta.inner.l3 - 14) {
                            return Err(DropReason::Malformed);
                        }
                        vrf
                    }
                    (Tunnel::Gre { .. }, true) => return Err(DropReason::Unsupported),
                }
            }
        };
        // Decapsulated or not, the packet is plain from here: one that only looks like a
        // tunnel (from a workload, or through this node to another endpoint) is routed,
        // policed and rewritten by its own headers, never by what it carries.
        // (Decapsulation left none.)
        self.decapped[i] = if meta.tunnel == Tunnel::None {
            seen
        } else {
            Tunnel::None
        };
        meta.tunnel = Tunnel::None;
        let h = meta.innermost_mut();
        if h.l3_kind == L3::None {
            return Err(DropReason::Unsupported);
        }
        h.key.vrf = vrf;
        if let Some(mtu) = tunnel_mtu
            && h.tcp_flags & TCP_SYN != 0
            && self.t.node.tcp_mss_clamp == MssClamp::Path
            && clamp_mss(MssClamp::Path, pool.bytes_mut(pkt.addr, pkt.len as usize), h, mtu)
            && let Some(c) = &self.counters
        {
            c.event(Event::MssClamped, 1);
        }
        let (l4_proto, l4) = (h.l4_proto, h.l4);
        if h.fragment != Fragment::Whole {
            let h = *h;
            if let Some(key) = self.follow_fragment(i, &h, pool, pkt)? {
                return self.park_orphan(i, port, pkt, key);
            }
        }
        self.icmp[i] = None;
        if matches!(l4_proto, IpProtocol::Icmp | IpProtocol::Icmpv6) && l4 != wire::parse::ABSENT {
            let f = pool.bytes_mut(pkt.addr, pkt.len as usize);
            let l4 = usize::from(l4);
            self.icmp[i] = f.get(l4..l4 + 2).map(|b| (b[0], b[1]));
            self.icmp_errors |= self.icmp[i].is_some_and(|(t, _)| icmp_error_type(t, l4_proto == IpProtocol::Icmpv6));
        }
        Ok(None)
    }
}

/// Whether a frame that did not parse is a plain UDP packet after all: one to a tunnel
/// port whose own headers parsed but whose payload is no tunnel (an application of a
/// workload's on that port), unless it came to this node's tunnel endpoint, where it is a
/// broken tunnel packet. If so, `meta` is made to say so.
fn plain_after_all(e: &wire::Error, meta: &mut PacketMeta, endpoints: &[IpAddr]) -> bool {
    let o = &meta.outer;
    let tunnel_port =
        o.l4_proto == IpProtocol::Udp && matches!(o.key.dst_port, wire::udp::PORT_VXLAN | wire::udp::PORT_MPLS);
    // Errors of the VXLAN header, the label stack or the packet inside come only after
    // the outer headers are whole.
    let in_payload = e.inner || matches!(e.layer, wire::Layer::Vxlan | wire::Layer::Mpls);
    let plain = tunnel_port && in_payload && !o.key.dst_ip().is_some_and(|d| endpoints.contains(&d));
    if plain {
        meta.tunnel = Tunnel::None;
    }
    plain
}

/// The 802.1Q tag's Ethernet type.
const TPID: [u8; 2] = [0x81, 0x00];

/// Takes VLAN `vid`'s tag off `pkt` (the MACs move up four bytes); `WrongVlan` if the
/// frame does not carry it.
fn untag(pool: &mut FramePool, pkt: &mut Pkt, vid: u16) -> Result<(), DropReason> {
    let f = pool.bytes_mut(pkt.addr, pkt.len as usize);
    if f.len() < 18 || f[12..14] != TPID || u16::from_be_bytes([f[14], f[15]]) & 0xfff != vid {
        return Err(DropReason::WrongVlan);
    }
    f.copy_within(..12, 4);
    pkt.addr += 4;
    pkt.len -= 4;
    Ok(())
}

/// Puts port `port`'s 802.1Q tag on `pkt` (in its headroom: the MACs move down four
/// bytes), if the port has a VLAN. Its priority (802.1p) is the IP packet's class
/// selector, the DSCP's top three bits, as switches on a trunk expect; 0 for the rest.
fn tag(node: &NodeConfig, pool: &mut FramePool, pkt: &mut Pkt, port: u16) -> Result<(), DropReason> {
    let Some(vid) = node.ports.get(usize::from(port)).and_then(|p| p.vlan) else {
        return Ok(());
    };
    let addr = pool.before(pkt.addr, 4).ok_or(DropReason::NoHeadroom)?;
    let f = pool.bytes_mut(addr, pkt.len as usize + 4);
    f.copy_within(4..16, 0);
    // The IP header follows the tag: its first two bytes hold IPv6's traffic class, the
    // second IPv4's TOS.
    let class_selector = match (&f[16..18], f.get(18..20)) {
        ([0x08, 0x00], Some(ip)) => ip[1] >> 5,
        ([0x86, 0xdd], Some(ip)) => (ip[0] & 0xf) >> 1,
        _ => 0,
    };
    f[12..14].copy_from_slice(&TPID);
    f[14..16].copy_from_slice(&(u16::from(class_selector) << 13 | vid).to_be_bytes());
    pkt.addr = addr;
    pkt.len += 4;
    Ok(())
}

/// A UDP tunnel packet's outer checksum, where the sender gave one, verified: a wrong one
/// is `BadChecksum`. A zero one (none) is taken over IPv6 too, as RFC 6935 lets tunnel
/// endpoints do (and the Linux kernel's VXLAN device does when told to): UDP tunnels over
/// IPv6 are often sent without, and the inner packet carries its own checksums. With
/// `refuse_zero6` a zero one over IPv6 is `BadChecksum` (RFC 6936).
fn check_outer_udp(frame: &[u8], outer: &wire::parse::Headers, refuse_zero6: bool) -> Result<(), DropReason> {
    let (Some(src), Some(dst)) = (outer.key.src_ip(), outer.key.dst_ip()) else {
        return Ok(());
    };
    // The parser found the UDP header and its length within the IP packet; checked again
    // here, as fuzzing builds skip the verification that would read past a bad length.
    let udp = frame
        .get(usize::from(outer.l4)..usize::from(outer.l3_end))
        .and_then(|seg| UdpPacket::new_checked(seg).ok())
        .ok_or(DropReason::Malformed)?;
    let ok = match udp.checksum() {
        0 => !(refuse_zero6 && src.is_ipv6()),
        _ => udp.verify_checksum(src, dst),
    };
    if ok { Ok(()) } else { Err(DropReason::BadChecksum) }
}

/// The congestion the underlay marked on a tunnel packet, carried into the inner packet on
/// decapsulation (RFC 6040): outer CE makes an ECN-capable inner packet CE, and ECT(1)
/// outside an ECT(0) inner one makes it ECT(1). Outer CE on an inner packet that is not
/// ECN-capable cannot be passed on, so it is dropped (`EcnNotCapable`), as the RFC asks:
/// the drop is the congestion signal such a packet's sender understands.
fn propagate_ecn(
    frame: &mut [u8],
    outer: &wire::parse::Headers,
    inner: &wire::parse::Headers,
) -> Result<(), DropReason> {
    const NOT_ECT: u8 = 0;
    const ECT1: u8 = 1;
    const ECT0: u8 = 2;
    const CE: u8 = 3;
    let (l3, kind) = (usize::from(inner.l3), inner.l3_kind);
    let was = ecn_at(frame, l3, kind);
    let now = match (was, ecn_at(frame, usize::from(outer.l3), outer.l3_kind)) {
        (NOT_ECT, CE) => return Err(DropReason::EcnNotCapable),
        (NOT_ECT, _) | (CE, _) => return Ok(()),
        (_, CE) => CE,
        (ECT0, ECT1) => ECT1,
        _ => return Ok(()),
    };
    match kind {
        L3::Ipv4 => {
            let ip = frame.get_mut(l3..l3 + 12).ok_or(DropReason::Malformed)?;
            let old = u16::from_be_bytes([ip[0], ip[1]]);
            ip[1] = ip[1] & !3 | now;
            let c = checksum::update_u16(
                u16::from_be_bytes([ip[10], ip[11]]),
                old,
                u16::from_be_bytes([ip[0], ip[1]]),
            );
            ip[10..12].copy_from_slice(&c.to_be_bytes());
        }
        L3::Ipv6 => {
            let b = frame.get_mut(l3 + 1).ok_or(DropReason::Malformed)?;
            *b = *b & !0x30 | now << 4;
        }
        // `ecn_at` saw an ECN-capable packet: IPv4 or IPv6.
        _ => {}
    }
    Ok(())
}

/// The SYN flag of TCP's flags byte.
const TCP_SYN: u8 = 0x02;

/// Lowers the MSS option of the TCP SYN whose headers are `h` in `frame` to what `clamp`
/// allows on a path of `mtu` bytes, if it announces more; the checksum follows. Whether
/// it did. Fragments are left alone (a later one has no TCP header).
#[cold]
#[inline(never)]
fn clamp_mss(clamp: MssClamp, frame: &mut [u8], h: &wire::parse::Headers, mtu: u16) -> bool {
    let Some(mss) = clamp.limit(mtu, h.l3_kind == L3::Ipv6) else {
        return false;
    };
    if h.fragment != Fragment::Whole || h.l4_proto != IpProtocol::Tcp {
        return false;
    }
    let Some(tcp) = frame.get_mut(usize::from(h.l4)..usize::from(h.payload)) else {
        return false;
    };
    let mut at = 20;
    while let Some(&kind) = tcp.get(at) {
        match kind {
            0 => return false,
            1 => at += 1,
            _ => {
                let len = usize::from(*tcp.get(at + 1).unwrap_or(&0));
                let Some(option) = tcp.get(at..at + len).filter(|_| len >= 2) else {
                    return false;
                };
                if kind == 2 && len == 4 {
                    let old = u16::from_be_bytes([option[2], option[3]]);
                    if old <= mss {
                        return false;
                    }
                    tcp[at + 2..at + 4].copy_from_slice(&mss.to_be_bytes());
                    // The checksum sums 16-bit words from the header's start: a value at an
                    // odd offset straddles two, its bytes in swapped places.
                    let (was, now) = if at % 2 == 0 {
                        (old, mss)
                    } else {
                        (old.swap_bytes(), mss.swap_bytes())
                    };
                    let c = u16::from_be_bytes([tcp[16], tcp[17]]);
                    tcp[16..18].copy_from_slice(&checksum::update_u16(c, was, now).to_be_bytes());
                    return true;
                }
                at += len;
            }
        }
    }
    false
}

/// What the slow path decides by: policy, routes, and the node's ports.
type Deciders<'a> = (&'a Policy, &'a fib::Snapshot, &'a NodeConfig);

/// Decides a new flow (its first packet came in by port `from`) and its reverse
/// (installed for the whole burst at once).
/// Policy is evaluated once, on this first direction: the reply's evaluation would judge
/// the same original direction. Also returns the reverse key's hash.
fn new_pair(
    (policy, fib, node): Deciders,
    key: &FlowKey,
    hash: u64,
    from: u16,
    icmp: Option<(u8, u8)>,
    log: (&FlowLog, u32),
) -> (NewPair, u64) {
    let f = Fields::from_key(key, icmp);
    let (src, dst) = policy.owners(&f);
    let src = endpoint(policy, node, key.vrf, src, || Some(from));
    let dst = endpoint(policy, node, key.vrf, dst, || leaves_by(fib, key, hash));
    let verdict = policy.evaluate_endpoints(src, dst, &f);
    if verdict.log {
        log_decision(log, key, (src, dst), &verdict);
    }
    let fwd = routed(fib, key, hash, false, &verdict);
    let rkey = key.reversed();
    let rev_hash = rkey.hash();
    // The reply inherits the verdict (and a missing route); it keeps its own route.
    let rev = if fwd.verdict == FlowVerdict::Allow {
        routed(fib, &rkey, rev_hash, true, &verdict)
    } else {
        Action {
            flags: fwd.flags | FLAG_REVERSE,
            ..fwd
        }
    };
    let pair = NewPair {
        fwd: *key,
        rev: rkey,
        fwd_action: fwd,
        rev_action: rev,
        first_packet: None,
    };
    (pair, rev_hash)
}

/// Puts into `log`, at `now`, that a rule that logs decided the flow `key` (its first
/// packet's direction) from endpoint `src` to `dst`.
#[cold]
#[inline(never)]
fn log_decision(
    (log, now): (&FlowLog, u32),
    key: &FlowKey,
    (src, dst): (Option<EndpointId>, Option<EndpointId>),
    verdict: &FlowDecision,
) {
    log.push(LoggedFlow {
        at: now,
        key: *key,
        allowed: verdict.allow,
        egress: src.zip(verdict.egress),
        ingress: dst.zip(verdict.ingress),
    });
}

/// Whether an MPLS label may map to `nh`: a label's packets are delivered into a VRF, which
/// only a VRF-translate (`lookup_vrf`) or an interface (`port`) nexthop names (see
/// `label_vrf`); any other kind would have them all dropped as `UnknownLabel`. For control
/// planes, to refuse such a mapping when it is given.
pub fn check_label_nexthop(nh: &Nexthop) -> Result<(), String> {
    let kind = match nh {
        Nexthop::VrfTranslate { .. } | Nexthop::Interface { .. } => return Ok(()),
        Nexthop::Tunnel { .. } => "a tunnel",
        Nexthop::Ecmp { .. } => "an ECMP group",
        Nexthop::Discard => "a discard",
        Nexthop::Receive => "a receive",
    };
    Err(format!(
        "a label delivers into a VRF, named by a `lookup_vrf` or `port` nexthop, not by {kind} one"
    ))
}

/// The VRF an MPLS label delivers into: a VRF-translate nexthop names it; an interface
/// nexthop to a workload port means that port's VRF.
fn label_vrf(fib: &fib::Snapshot, node: &NodeConfig, label: u32) -> Option<u32> {
    match fib.nexthop(fib.label(label)?)? {
        Nexthop::VrfTranslate { vrf } => Some(*vrf),
        Nexthop::Interface { port, .. } => match &node.ports.get(*port as usize)?.role {
            PortRole::Workload { vrf, .. } | PortRole::Fabric { vrf } | PortRole::Host { vrf, .. } => Some(*vrf),
        },
        _ => None,
    }
}

/// The ICMP message an echo is answered with, and back (policy judges a flow by its
/// first direction's message).
fn reply_of((t, c): (u8, u8)) -> (u8, u8) {
    match t {
        8 => (0, c),
        0 => (8, c),
        128 => (129, c),
        129 => (128, c),
        _ => (t, c),
    }
}

/// Policy and route for one direction of a flow, whose packet came in by port `from`.
/// `reverse`: `key` is the reply direction, so policy is evaluated on the original
/// direction (`icmp` is this direction's ICMP type and code), whose source is where the
/// reply leaves and whose destination is where it came in.
fn decide(
    (policy, fib, node): Deciders,
    key: &FlowKey,
    hash: u64,
    (from, reverse): (u16, bool),
    icmp: Option<(u8, u8)>,
    log: (&FlowLog, u32),
) -> Action {
    let (original, icmp) = if reverse {
        (key.reversed(), icmp.map(reply_of))
    } else {
        (*key, icmp)
    };
    let f = Fields::from_key(&original, icmp);
    let ((s, d), vrf) = (policy.owners(&f), key.vrf);
    let (src, dst) = if reverse {
        let src = endpoint(policy, node, vrf, s, || leaves_by(fib, key, hash));
        (src, endpoint(policy, node, vrf, d, || Some(from)))
    } else {
        let dst = endpoint(policy, node, vrf, d, || leaves_by(fib, key, hash));
        (endpoint(policy, node, vrf, s, || Some(from)), dst)
    };
    let verdict = policy.evaluate_endpoints(src, dst, &f);
    if verdict.log {
        log_decision(log, &original, (src, dst), &verdict);
    }
    routed(fib, key, hash, reverse, &verdict)
}

/// The policy endpoint of a flow's source or destination address, of `owner`: the one
/// owner; for an address several endpoints share (a service address its backends all
/// own), the endpoint of the workload port the flow comes in by or leaves by (`port`,
/// asked only then), found by that port's own addresses. `None`: no endpoint here (the
/// far side's node polices its own).
fn endpoint(
    policy: &Policy,
    node: &NodeConfig,
    vrf: u32,
    owner: Owner,
    port: impl FnOnce() -> Option<u16>,
) -> Option<EndpointId> {
    match owner {
        Owner::One(ep) => Some(ep),
        Owner::Nobody => None,
        Owner::Shared => {
            let PortRole::Workload { addrs, .. } = &node.ports.get(usize::from(port()?))?.role else {
                return None;
            };
            addrs.iter().find_map(|a| policy.endpoint_of(vrf, *a))
        }
    }
}

/// The port a flow's packets leave by, when its route ends at one of this node's ports.
fn leaves_by(fib: &fib::Snapshot, key: &FlowKey, hash: u64) -> Option<u16> {
    let r = fib.route(key.vrf, key.dst_ip()?, hash).ok()?;
    match fib.nexthop(r.nexthop)? {
        Nexthop::Interface { port, .. } => u16::try_from(*port).ok(),
        _ => None,
    }
}

/// An ICMP error (`icmp`: its type and code) whose quoted packet belongs to a flow
/// allowed in the direction quoted passes as part of that flow, whatever the policy says
/// of ICMP (conntrack's RELATED): the action for `key` (hashing to the given value),
/// routed by its own destination and installing no flow. `None` for any other packet,
/// which the flow stage decides as usual. Without it, a workload whose policy admits no
/// ICMP would never hear "fragmentation needed" (path MTU discovery) or "port
/// unreachable" about its own connections.
#[cold]
#[inline(never)]
fn related(
    reader: &Reader<'static>,
    fib: &fib::Snapshot,
    (key, hash): (&FlowKey, u64),
    icmp: Option<(u8, u8)>,
    pkt: &Pkt,
    pool: &mut FramePool,
    meta: &PacketMeta,
) -> Option<Action> {
    let (t, _) = icmp?;
    let v6 = key.proto == 58;
    if !icmp_error_type(t, v6) {
        return None;
    }
    let h = meta.innermost();
    let frame = pool.bytes_mut(pkt.addr, pkt.len as usize);
    let quoted = quoted_key(frame.get(usize::from(h.l4)..usize::from(h.l3_end))?, v6, key.vrf)?;
    // The quoted packet was sent by the one the error goes to.
    if quoted.src != key.dst {
        return None;
    }
    let id = reader.lookup(&quoted, quoted.hash())?;
    if reader.flow(id).action().verdict != FlowVerdict::Allow {
        return None;
    }
    let allowed = FlowDecision {
        allow: true,
        log: false,
        egress: None,
        ingress: None,
        generation: 0,
    };
    Some(routed(fib, key, hash, false, &allowed))
}

/// Whether ICMP (ICMPv6 if `v6`) type `t` is an error about a packet that it quotes.
fn icmp_error_type(t: u8, v6: bool) -> bool {
    if v6 {
        matches!(t, 1..=4)
    } else {
        matches!(t, 3 | 4 | 11 | 12)
    }
}

/// The flow key, in `vrf`, of the packet an ICMP error message `icmp` (ICMPv6 if `v6`)
/// quotes: TCP, UDP and SCTP by their ports, ICMP echoes by their identifier, anything else
/// without ports. `None` if the quote is too short for that, or is of a later fragment
/// (which has no ports).
fn quoted_key(icmp: &[u8], v6: bool, vrf: u32) -> Option<FlowKey> {
    let ip = icmp.get(8..)?;
    let (mut key, l4) = if v6 {
        let h = ip.get(..40)?;
        let walk = wire::ipv6ext::walk(&ip[40..], h[6].into()).ok()?;
        if walk.fragment == Fragment::Later {
            return None;
        }
        let addr = |at: usize| Ipv6Addr::from(<[u8; 16]>::try_from(&h[at..at + 16]).expect("16 bytes"));
        let key = FlowKey::v6(addr(8), addr(24), walk.protocol.into(), 0, 0);
        (key, ip.get(40 + walk.offset..)?)
    } else {
        let h = ip.get(..20)?;
        if u16::from_be_bytes([h[6], h[7]]) & 0x1fff != 0 {
            return None;
        }
        let addr = |at: usize| Ipv4Addr::new(h[at], h[at + 1], h[at + 2], h[at + 3]);
        let key = FlowKey::v4(addr(12), addr(16), h[9], 0, 0);
        (key, ip.get(usize::from(h[0] & 0xf) * 4..)?)
    };
    let word = |at: usize| Some(u16::from_be_bytes(l4.get(at..at + 2)?.try_into().ok()?));
    let echo = if v6 { [128, 129] } else { [8, 0] };
    (key.src_port, key.dst_port) = match key.proto {
        6 | 17 | 132 => (word(0)?, word(2)?),
        1 | 58 if echo.contains(l4.first()?) => (word(4)?, word(4)?),
        _ => (0, 0),
    };
    key.vrf = vrf;
    Some(key)
}

/// The action for one direction of a flow (`reverse`: the reply direction) under a
/// policy verdict: its route if allowed.
fn routed(fib: &fib::Snapshot, key: &FlowKey, hash: u64, reverse: bool, verdict: &FlowDecision) -> Action {
    let mut flags = if reverse { FLAG_REVERSE } else { 0 };
    if verdict.log {
        flags |= FLAG_LOG;
    }
    if !verdict.allow {
        return Action {
            flags,
            ..Action::deny()
        };
    }
    let Some(dst) = key.dst_ip() else {
        return Action {
            flags,
            ..Action::deny()
        };
    };
    match fib.route(key.vrf, dst, hash) {
        Ok(r) => Action {
            verdict: FlowVerdict::Allow,
            nexthop: r.nexthop,
            ecmp_member: r.ecmp_member,
            flags,
        },
        // No route: cached as a drop marked with nexthop `u32::MAX` (counted as "no
        // route", not as policy), re-decided when the routing generation changes.
        Err(_) => Action {
            verdict: FlowVerdict::Deny,
            nexthop: u32::MAX,
            ecmp_member: 0,
            flags,
        },
    }
}

/// The rewrite that finishes a packet on its way out: its MACs (the egress port's as the
/// source), or an encapsulation within the egress port's MTU.
enum Finish<'p> {
    /// MACs rewritten, from this one.
    Macs(MacAddr),
    /// Encapsulated, then out of a port of this MTU.
    Encap(&'p Outer, u16),
}

impl Finish<'_> {
    /// Puts the link header (and tunnel) on `pkt`, L3 rewritten, to go to `mac`: without
    /// it, the packet is finished but for its first six bytes.
    fn apply(
        &self,
        pool: &mut FramePool,
        pkt: &mut Pkt,
        mac: Option<MacAddr>,
        hash: u64,
        meta: &PacketMeta,
    ) -> Result<(), DropReason> {
        match self {
            Finish::Macs(src_mac) => {
                set_macs(pool.bytes_mut(pkt.addr, 12), mac, *src_mac);
                Ok(())
            }
            Finish::Encap(outer, mtu) => encapsulate(pool, pkt, outer, *mtu, hash, meta),
        }
    }
}

/// Addresses the Ethernet frame `f` from `src` to `dst`, or leaves its destination zero
/// until the next hop's MAC is known.
#[inline(always)]
fn set_macs(f: &mut [u8], dst: Option<MacAddr>, src: MacAddr) {
    let mut eth = EthernetFrame::new_unchecked(f);
    eth.set_dst_addr(dst.unwrap_or(MacAddr([0; 6])));
    eth.set_src_addr(src);
}

/// Stage 4 for one packet. A packet split into fragments leaves all but the first in
/// `egress.splits.made`, each to go where the first goes. Inlined into the burst's loop,
/// as it is most of it (called as a function it cost some 100 instructions a packet).
#[inline(always)]
fn act(
    cx: &Ctx<'_>,
    egress: &mut Egress,
    a: Action,
    pkt: &mut Pkt,
    pool: &mut FramePool,
    meta: &PacketMeta,
    hash: u64,
) -> Result<Verdict, Refused> {
    match a.verdict {
        FlowVerdict::Deny if a.nexthop == u32::MAX => return Err(DropReason::NoRoute.into()),
        FlowVerdict::Deny | FlowVerdict::Hold => return Err(DropReason::PolicyDenied.into()),
        FlowVerdict::Allow => {}
    }
    let h = meta.innermost();
    let fresh;
    let plan = match egress.plans.get(a.nexthop, &h.key, cx.now) {
        Some(p) => p,
        None => {
            let dst = h.key.dst_ip().ok_or(DropReason::Unsupported)?;
            let until;
            (fresh, until) = cx.plan(egress, a.nexthop, dst, hash)?;
            egress.plans.put(a.nexthop, &h.key, fresh, until, cx.now);
            &fresh
        }
    };
    // Read through the reference: copying the whole plan out cost a few instructions.
    // `limit`: the longest IP packet that goes out whole.
    let (port, next, mac, limit, finish) = match plan {
        Plan::Host => return to_host(cx.host, pool, pkt).map_err(Refused::Drop),
        Plan::Direct {
            port,
            next,
            mac,
            src_mac,
            mtu,
        } => (*port, next, *mac, *mtu, Finish::Macs(*src_mac)),
        Plan::Encap {
            outer,
            port,
            next,
            mac,
            mtu,
            inner_mtu,
        } => (*port, next, *mac, *inner_mtu, Finish::Encap(outer, *mtu)),
    };
    // L3 rewrite of the (inner) packet: TTL and checksum.
    let l3 = usize::from(h.l3);
    let frame = pool.bytes_mut(pkt.addr, pkt.len as usize);
    let expired = Refused::Icmp {
        why: DropReason::TtlExpired,
        err: IcmpError::TimeExceeded,
    };
    match h.l3_kind {
        L3::Ipv4 => {
            let ip = frame.get_mut(l3..l3 + 20).ok_or(DropReason::Malformed)?;
            if ip[8] <= 1 {
                return Err(expired);
            }
            ip[8] -= 1;
            let c = checksum::ttl_decremented(u16::from_be_bytes([ip[10], ip[11]]));
            ip[10..12].copy_from_slice(&c.to_be_bytes());
        }
        L3::Ipv6 => {
            let hop_limit = frame.get_mut(l3 + 7).ok_or(DropReason::Malformed)?;
            if *hop_limit <= 1 {
                return Err(expired);
            }
            *hop_limit -= 1;
        }
        _ => return Err(DropReason::Unsupported.into()),
    }
    if h.tcp_flags & TCP_SYN != 0 && clamp_mss(cx.t.node.tcp_mss_clamp, frame, h, limit) {
        cx.count(Event::MssClamped, 1);
    }
    let frame = if pkt.len as usize - l3 > usize::from(limit) {
        // "Fragmentation needed" / "packet too big" for IPv4 with don't-fragment and all
        // IPv6 (routers never fragment it); other IPv4 is split.
        if h.l3_kind == L3::Ipv6 || frame[l3 + 6] & 0x40 != 0 {
            return Err(Refused::Icmp {
                why: DropReason::TooBig,
                err: IcmpError::TooBig { mtu: limit },
            });
        }
        let how = (&finish, mac, port, *next);
        let made = split(&mut egress.splits, pool, pkt, meta, how, limit, hash)?;
        cx.count(Event::Fragmented, 1);
        cx.count(Event::FragmentsMade, made);
        pool.bytes_mut(pkt.addr, pkt.len as usize)
    } else {
        // As borrowed above: a second borrow of the pool costs its checks again.
        frame
    };
    match finish {
        Finish::Macs(src_mac) => set_macs(frame, mac, src_mac),
        Finish::Encap(outer, mtu) => encapsulate(pool, pkt, outer, mtu, hash, meta)?,
    }
    match mac {
        Some(_) => Ok(Verdict::Tx(port)),
        None => Err(Refused::Park { port, next: *next }),
    }
}

/// The router's address of the family `v6` on port `pc`: its own, or a gateway a
/// workload uses.
fn own_address(pc: &PortConfig, v6: bool) -> Option<IpAddr> {
    let gateways = match &pc.role {
        PortRole::Workload { gateways, .. } => &gateways[..],
        PortRole::Fabric { .. } | PortRole::Host { .. } => &[],
    };
    pc.addrs.iter().chain(gateways).copied().find(|a| a.is_ipv6() == v6)
}

/// Parks `pkt`, received and ready but for the MAC of `next`, on `port`'s resolution of
/// it: kept, or dropped when there is no room.
fn park(resolver: &mut Resolver, pkt: Pkt, port: u16, next: IpAddr, now: u32) -> Verdict {
    let p = Parked {
        pkt,
        port,
        originated: false,
    };
    match resolver.park(next, p, now) {
        Ok(()) => Verdict::Keep,
        Err(_) => Verdict::Drop(DropReason::ParkFull),
    }
}

/// The fragments `act` made beyond each packet's first go where the first goes (its
/// verdict among `verdicts`): out of its port (into `out`, sent after the burst), parked
/// with it, or dropped with it.
#[cold]
#[inline(never)]
fn fragments_follow(
    egress: &mut Egress,
    out: &mut Vec<Emitted>,
    pool: &FramePool,
    pkts: &[Pkt],
    verdicts: &[Verdict],
    now: u32,
) {
    for (first, next, mut e) in egress.splits.made.drain(..) {
        let of_first = pkts
            .iter()
            .position(|p| pool.frame_base(p.addr) == first)
            .map(|i| verdicts[i]);
        match (of_first, e.verdict) {
            (_, Verdict::Drop(_)) | (Some(Verdict::Tx(_)), _) => {}
            (Some(Verdict::Keep), Verdict::Tx(port)) => {
                let p = Parked {
                    pkt: e.pkt,
                    port,
                    originated: true,
                };
                match egress.resolver.park(next, p, now) {
                    Ok(()) => continue,
                    Err(_) => e.verdict = Verdict::Drop(DropReason::ParkFull),
                }
            }
            (Some(Verdict::Drop(why)), _) => e.verdict = Verdict::Drop(why),
            _ => e.verdict = Verdict::Drop(DropReason::Filtered),
        }
        out.push(e);
    }
}

/// [`split_ipv4`] for `act`, out of its line, into pieces of `mtu` bytes: those beyond
/// the first finished (the finish, the next hop's MAC, the egress port, the next hop),
/// into `splits.made`. Returns how many those are.
#[cold]
#[inline(never)]
fn split(
    splits: &mut Splits,
    pool: &mut FramePool,
    pkt: &mut Pkt,
    meta: &PacketMeta,
    (finish, mac, port, next): (&Finish<'_>, Option<MacAddr>, u16, IpAddr),
    mtu: u16,
    hash: u64,
) -> Result<u64, DropReason> {
    let l3 = usize::from(meta.innermost().l3);
    split_ipv4(pool, pkt, l3, mtu, &mut splits.scratch, &mut splits.pieces)?;
    let first = pool.frame_base(pkt.addr);
    let made = splits.pieces.len() as u64;
    for mut p in splits.pieces.drain(..) {
        let verdict = match finish.apply(pool, &mut p, mac, hash, meta) {
            Ok(()) => Verdict::Tx(port),
            Err(why) => Verdict::Drop(why),
        };
        let e = Emitted {
            pkt: p,
            verdict,
            originated: true,
        };
        splits.made.push((first, next, e));
    }
    Ok(made)
}

/// Turns the packet, in place, into an ICMP error to its source, sent back out of the port
/// it came in on, from the router's address on that port ([`write_icmp_error`]). `None`
/// when it cannot be built (no router address of that family on the port, no headroom).
fn icmp_error(
    pool: &mut FramePool,
    pkt: &mut Pkt,
    meta: &PacketMeta,
    pc: &PortConfig,
    port: u16,
    err: IcmpError,
) -> Option<Verdict> {
    let own = own_address(pc, meta.outer.l3_kind == L3::Ipv6)?;
    write_icmp_error(pool, pkt, meta, own, pc.mac, err)?;
    Some(Verdict::Tx(port))
}

/// Turns a packet that came out of a tunnel, in place, into an ICMP error to its source,
/// and routes that back like any packet of its VRF (through the tunnel it came by, as a
/// rule): from the router's address in that VRF (a gateway of one of its workloads, for
/// traceroute to name). `None` when the VRF has no such address or no route back.
fn icmp_error_routed(
    cx: &Ctx<'_>,
    egress: &mut Egress,
    pool: &mut FramePool,
    pkt: &mut Pkt,
    meta: &mut PacketMeta,
    err: IcmpError,
) -> Option<Result<Verdict, Refused>> {
    let vrf = meta.outer.key.vrf;
    let v6 = meta.outer.l3_kind == L3::Ipv6;
    let own = cx.t.node.ports.iter().find_map(|pc| match pc.role {
        PortRole::Workload { vrf: v, .. } | PortRole::Host { vrf: v, .. } if v == vrf => own_address(pc, v6),
        _ => None,
    })?;
    write_icmp_error(pool, pkt, meta, own, MacAddr([0; 6]), err)?;
    parse_into(pool.bytes_mut(pkt.addr, pkt.len as usize), meta).ok()?;
    let key = &mut meta.outer.key;
    key.vrf = vrf;
    let hash = key.hash();
    let route = cx.fib.route(vrf, key.dst_ip()?, hash).ok()?;
    let a = Action {
        verdict: FlowVerdict::Allow,
        nexthop: route.nexthop,
        ecmp_member: route.ecmp_member,
        flags: 0,
    };
    Some(act(cx, egress, a, pkt, pool, meta, hash))
}

/// Writes the ICMP error `err` about the packet in place of it, to its source: Ethernet
/// (from `src_mac`, to the packet's source MAC), IP from `own`, the ICMP header, then the
/// quoted original packet — its IP header and 8 bytes for IPv4 (RFC 792), as much as fits
/// in 1280 bytes for IPv6 (RFC 4443). `None` when it cannot be built (`own` of the other
/// family, no headroom).
fn write_icmp_error(
    pool: &mut FramePool,
    pkt: &mut Pkt,
    meta: &PacketMeta,
    own: IpAddr,
    src_mac: MacAddr,
    err: IcmpError,
) -> Option<()> {
    let h = &meta.outer;
    let v6 = match h.l3_kind {
        L3::Ipv4 => false,
        L3::Ipv6 => true,
        _ => return None,
    };
    let l3 = usize::from(h.l3);
    let ip_len = if v6 { 40 } else { 20 };
    let head = 14 + ip_len + 8;
    let (orig_src, dst_mac, quote) = {
        let f = pool.bytes_mut(pkt.addr, pkt.len as usize);
        let rest = f.len() - l3;
        let quote = if v6 {
            rest.min(1280 - 48)
        } else {
            (usize::from(f[l3] & 0xf) * 4 + 8).min(rest)
        };
        let src = if v6 {
            IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&f[l3 + 8..l3 + 24]).ok()?))
        } else {
            IpAddr::V4(Ipv4Addr::new(f[l3 + 12], f[l3 + 13], f[l3 + 14], f[l3 + 15]))
        };
        (src, MacAddr(f[6..12].try_into().ok()?), quote)
    };
    let start = (pkt.addr + l3 as u64).checked_sub(head as u64)?;
    if pool.frame_base(start) != pool.frame_base(pkt.addr) {
        return None;
    }
    pkt.addr = start;
    pkt.len = (head + quote) as u32;
    let f = pool.bytes_mut(pkt.addr, pkt.len as usize);
    EthernetRepr {
        src: src_mac,
        dst: dst_mac,
        ethertype: if v6 { EtherType::Ipv6 } else { EtherType::Ipv4 },
    }
    .emit(&mut EthernetFrame::new_unchecked(&mut f[..14]));
    let icmp_at = 14 + ip_len;
    match (own, orig_src) {
        (IpAddr::V4(own), IpAddr::V4(to)) => {
            let mut ip = Ipv4Repr::new(own, to, IpProtocol::Icmp);
            ip.dont_frag = false;
            ip.payload_len = (8 + quote) as u16;
            ip.emit(&mut Ipv4Packet::new_unchecked(&mut f[14..icmp_at])).ok()?;
            let (kind, code, mtu) = match err {
                IcmpError::TimeExceeded => (wire::icmpv4::TYPE_TIME_EXCEEDED, 0, 0),
                IcmpError::TooBig { mtu } => (wire::icmpv4::TYPE_DST_UNREACHABLE, wire::icmpv4::CODE_FRAG_NEEDED, mtu),
            };
            f[icmp_at..icmp_at + 8].copy_from_slice(&[kind, code, 0, 0, 0, 0, 0, 0]);
            f[icmp_at + 6..icmp_at + 8].copy_from_slice(&mtu.to_be_bytes());
            let c = checksum::checksum(&f[icmp_at..]);
            f[icmp_at + 2..icmp_at + 4].copy_from_slice(&c.to_be_bytes());
        }
        (IpAddr::V6(own), IpAddr::V6(to)) => {
            use wire::icmp::IcmpPacket;
            use wire::icmpv6::Icmpv6Repr;
            use wire::ipv6::{Ipv6Packet, Ipv6Repr};
            let mut ip = Ipv6Repr::new(own, to, IpProtocol::Icmpv6);
            ip.payload_len = (8 + quote) as u16;
            ip.emit(&mut Ipv6Packet::new_unchecked(&mut f[14..icmp_at]));
            let msg = match err {
                IcmpError::TimeExceeded => Icmpv6Repr::TimeExceeded { code: 0 },
                IcmpError::TooBig { mtu } => Icmpv6Repr::PacketTooBig { mtu: u32::from(mtu) },
            };
            msg.emit(&mut IcmpPacket::new_unchecked(&mut f[icmp_at..]), own, to);
        }
        _ => return None,
    }
    Some(())
}

/// Builds the ARP request or neighbour solicitation for `ip` out of `port` in a fresh
/// frame, from the port's own (or gateway) address of that family.
fn request(node: &NodeConfig, pool: &mut FramePool, port: u16, ip: IpAddr) -> Option<Pkt> {
    let pc = node.ports.get(usize::from(port))?;
    let gateways = match &pc.role {
        PortRole::Workload { gateways, .. } => &gateways[..],
        _ => &[],
    };
    let mut own = pc.addrs.iter().chain(gateways);
    let base = pool.alloc()?;
    let addr = base + u64::from(pool.headroom());
    let f = pool.bytes_mut(addr, 128);
    let len = match ip {
        IpAddr::V4(t) => {
            let src = own.find_map(|a| match a {
                IpAddr::V4(a) => Some(*a),
                IpAddr::V6(_) => None,
            });
            neigh::arp_request(f, pc.mac, src, t)
        }
        IpAddr::V6(t) => {
            let src = own.find_map(|a| match a {
                IpAddr::V6(a) => Some(*a),
                IpAddr::V4(_) => None,
            });
            neigh::ns_request(f, pc.mac, src, t)
        }
    };
    Some(Pkt { addr, len: len as u32 })
}

/// Hands a packet for the node itself to the host's stack through the exception port.
fn to_host(host: Option<(u16, MacAddr, MacAddr)>, pool: &mut FramePool, pkt: &Pkt) -> Result<Verdict, DropReason> {
    let (port, host_mac, our_mac) = host.ok_or(DropReason::ToHost)?;
    let f = pool.bytes_mut(pkt.addr, 14);
    let mut eth = EthernetFrame::new_unchecked(&mut f[..]);
    eth.set_dst_addr(host_mac);
    eth.set_src_addr(our_mac);
    Ok(Verdict::Tx(port))
}

/// Whether the router answers address resolution for `ip` on this port: its own
/// addresses, a workload's gateways, anything the host asks for.
fn answers_for(pc: &PortConfig, ip: IpAddr) -> bool {
    pc.addrs.contains(&ip)
        || matches!(&pc.role, PortRole::Workload { gateways, .. } if gateways.contains(&ip))
        || matches!(pc.role, PortRole::Host { .. })
}

/// Learns `ip` -> `mac` heard on `port` when the port's role allows it: a workload's own
/// addresses only; on other ports what someone asked for, refreshes, and (`asked_us`)
/// senders of requests for the router's addresses.
fn learn(nb: &NeighborCache, pc: &PortConfig, port: u16, ip: IpAddr, mac: MacAddr, asked_us: bool, now: u32) {
    if ip.is_unspecified() || mac.is_multicast() {
        return;
    }
    let allowed = match &pc.role {
        PortRole::Workload { addrs, .. } => addrs.contains(&ip),
        PortRole::Host { .. } => true,
        PortRole::Fabric { .. } => asked_us || nb.expected(u32::from(port), ip),
    };
    if allowed {
        nb.learn(u32::from(port), ip, mac, now);
    }
}

/// Neighbour discovery: an advertisement is learned from (when allowed) and consumed; a
/// solicitation for one of the port's addresses or gateways is learned from and answered
/// with an advertisement, in place (the same 86 bytes: Ethernet, IPv6, NA with the target
/// link-layer address option).
fn neighbor_discovery(
    nb: &NeighborCache,
    pc: &PortConfig,
    frame: &mut [u8],
    h: &wire::parse::Headers,
    pkt: &mut Pkt,
    port: u16,
    now: u32,
) -> Result<Verdict, DropReason> {
    use wire::icmp::IcmpPacket;
    use wire::icmpv6::Icmpv6Repr;
    use wire::ipv6::{Ipv6Packet, Ipv6Repr};
    let (l3, l4, end) = (usize::from(h.l3), usize::from(h.l4), usize::from(h.payload_end));
    let (Some(IpAddr::V6(src)), Some(IpAddr::V6(dst))) = (h.key.src_ip(), h.key.dst_ip()) else {
        return Err(DropReason::Malformed);
    };
    let icmp = IcmpPacket::new_checked(&frame[l4..end], wire::Layer::Icmpv6).map_err(|_| DropReason::Malformed)?;
    let eth_src = EthernetFrame::new_unchecked(&frame[..]).src_addr();
    let (target, lladdr) = match Icmpv6Repr::parse(&icmp, src, dst).map_err(|_| DropReason::Malformed)? {
        Icmpv6Repr::NeighborSolicit { target, lladdr } => (target, lladdr),
        Icmpv6Repr::NeighborAdvert { target, lladdr, .. } => {
            let mac = lladdr.unwrap_or(eth_src);
            learn(nb, pc, port, IpAddr::V6(target), mac, false, now);
            return Err(DropReason::NeighborReply);
        }
        _ => return Err(DropReason::Malformed),
    };
    if !answers_for(pc, IpAddr::V6(target)) {
        return Err(DropReason::ArpIgnored);
    }
    if let Some(mac) = lladdr {
        learn(nb, pc, port, IpAddr::V6(src), mac, true, now);
    }
    let unspecified = src.is_unspecified();
    let to = if unspecified {
        "ff02::1".parse().expect("all-nodes")
    } else {
        src
    };
    let na = Icmpv6Repr::NeighborAdvert {
        router: true,
        solicited: !unspecified,
        override_: true,
        target,
        lladdr: Some(pc.mac),
    };
    let len = l3 + 40 + na.buffer_len();
    if frame.len() < len {
        return Err(DropReason::Malformed);
    }
    let dst_mac = if unspecified {
        MacAddr([0x33, 0x33, 0, 0, 0, 1])
    } else {
        lladdr.unwrap_or(eth_src)
    };
    EthernetRepr {
        src: pc.mac,
        dst: dst_mac,
        ethertype: EtherType::Ipv6,
    }
    .emit(&mut EthernetFrame::new_unchecked(&mut frame[..14]));
    let mut ip = Ipv6Repr::new(target, to, IpProtocol::Icmpv6);
    ip.hop_limit = 255;
    ip.payload_len = na.buffer_len() as u16;
    ip.emit(&mut Ipv6Packet::new_unchecked(&mut frame[l3..l3 + 40]));
    na.emit(&mut IcmpPacket::new_unchecked(&mut frame[l3 + 40..len]), target, to);
    pkt.len = len as u32;
    Ok(Verdict::Tx(port))
}

/// ARP: the sender is learned from (when allowed); a request for one of the port's
/// addresses or gateways is answered in place, a reply consumed.
fn answer_arp(
    nb: &NeighborCache,
    pc: &PortConfig,
    frame: &mut [u8],
    port: u16,
    now: u32,
) -> Result<Verdict, DropReason> {
    let req = ArpRepr::parse(&ArpPacket::new_checked(&frame[14..]).map_err(|_| DropReason::Malformed)?)
        .map_err(|_| DropReason::Malformed)?;
    let for_us = answers_for(pc, IpAddr::V4(req.target_ip));
    let request = req.operation == ArpOperation::Request;
    learn(
        nb,
        pc,
        port,
        IpAddr::V4(req.sender_ip),
        req.sender_mac,
        request && for_us,
        now,
    );
    if !request {
        return Err(DropReason::NeighborReply);
    }
    if !for_us {
        return Err(DropReason::ArpIgnored);
    }
    let reply = ArpRepr {
        operation: ArpOperation::Reply,
        sender_mac: pc.mac,
        sender_ip: req.target_ip,
        target_mac: req.sender_mac,
        target_ip: req.sender_ip,
    };
    EthernetRepr {
        src: pc.mac,
        dst: req.sender_mac,
        ethertype: EtherType::Arp,
    }
    .emit(&mut EthernetFrame::new_unchecked(&mut frame[..14]));
    reply.emit(&mut ArpPacket::new_unchecked(&mut frame[14..]));
    Ok(Verdict::Tx(port))
}
