//! Per-worker counters: written by their worker alone with plain loads and stores (no
//! locked instructions on the hot path), read by anyone and summed over workers.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use crossbeam_utils::CachePadded;

/// An enum of counted things, each with a description for operators.
macro_rules! counted {
    ($(#[$what:meta])* $enum:ident { $($(#[$doc:meta])* $name:ident = $text:literal,)* }) => {
        $(#[$what])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum $enum { $($(#[$doc])* $name,)* }

        impl $enum {
            /// Every one, in counter order.
            pub const ALL: &'static [$enum] = &[$($enum::$name,)*];

            /// What it means, for operators.
            pub const fn description(self) -> &'static str {
                match self { $($enum::$name => $text,)* }
            }
        }
    };
}

counted! {
/// What the pipeline did besides forwarding or dropping a packet, counted as it happens.
Event {
    /// ICMP errors sent (time exceeded, fragmentation needed / packet too big), out of the
    /// port the packet came in on or back through a tunnel.
    IcmpErrors = "ICMP errors sent (time exceeded, fragmentation needed / packet too big)",
    /// Of those, errors about packets that came out of a tunnel, routed back through one.
    IcmpRouted = "of them, about tunnelled packets, routed back through the overlay",
    /// IPv4 packets split to fit their egress.
    Fragmented = "IPv4 packets split into fragments to fit their egress MTU",
    /// The fragments made beyond each split packet's first (counted as originated too).
    FragmentsMade = "fragments made beyond each split packet's first",
    /// MSS options of TCP SYNs lowered: once for the path out, and for a SYN out of a
    /// tunnel once more if that tunnel carries less.
    MssClamped = "TCP SYN MSS options lowered to what the path carries",
    /// Path MTUs toward a tunnel's far end learned from the underlay's ICMP errors
    /// ([`crate::pmtu`]).
    PathMtuLearned = "path MTUs toward tunnel ends lowered by the underlay's ICMP errors",
    /// Tunnel packets the underlay fragmented, rebuilt from their fragments
    /// ([`crate::reassembly`]).
    Reassembled = "tunnel packets rebuilt from the fragments the underlay split them into",
}
}

counted! {
/// Why a packet was dropped. Each reason has a counter and a description.
DropReason {
    /// The egress port's TX ring was full.
    TxRingFull = "egress TX ring full",
    /// No free frame to copy a received packet into (memory ports).
    NoFreeFrame = "no free frame",
    /// The packet does not fit in a frame after the headroom (memory ports).
    TooLong = "packet longer than a frame",
    /// The handler sent the packet to a port that does not exist.
    NoSuchPort = "egress port does not exist",
    /// The handler dropped it (reflect/forward apps: not Ethernet).
    Malformed = "malformed packet",
    /// The handler dropped it by its own decision.
    Filtered = "dropped by the packet handler",
    /// The source address is not the workload's own (anti-spoofing).
    Spoofed = "source address not owned by the workload port",
    /// No route to the destination in its VRF.
    NoRoute = "no route",
    /// The route's nexthop discards.
    Discard = "route to discard",
    /// Denied by policy.
    PolicyDenied = "denied by policy",
    /// TTL or hop limit ran out.
    TtlExpired = "TTL expired",
    /// A VXLAN packet for a VNI with no VRF.
    UnknownVni = "unknown VNI",
    /// An MPLS packet with a label that maps to nothing.
    UnknownLabel = "unknown MPLS label",
    /// Not addressed to this router (another MAC, another tunnel endpoint).
    NotForUs = "not addressed to this router",
    /// For the host's own stack, and no exception path is configured.
    ToHost = "for the host, no exception path",
    /// The packet (after any encapsulation) would exceed the egress MTU, and may not be
    /// fragmented (IPv4 with don't-fragment, all IPv6), or is an IPv4 packet whose
    /// header leaves no room to fragment it.
    TooBig = "packet exceeds the egress MTU and may not be fragmented",
    /// Not enough headroom in the frame to encapsulate.
    NoHeadroom = "no headroom to encapsulate",
    /// A header combination the pipeline does not handle (VLAN-tagged, plain GRE, tunnel
    /// ends of two families).
    Unsupported = "unsupported packet or tunnel",
    /// An ARP or neighbour packet the router does not answer.
    ArpIgnored = "ARP not for a router address",
    /// A later IP fragment whose first fragment did not pass within
    /// [`ORPHAN_SECS`](crate::ORPHAN_SECS) (or aged out, or no room was left to wait).
    FragmentOrphan = "fragment whose first fragment did not come in time",
    /// Parked while its next hop was resolved, and the next hop never answered.
    NeighborUnresolved = "next hop did not answer ARP / neighbour solicitation",
    /// Its next hop is being resolved and no room was left to park it.
    ParkFull = "no room to park while the next hop is resolved",
    /// An ARP reply or neighbour advertisement, taken in (learned or refused as unasked).
    NeighborReply = "ARP reply / neighbour advertisement consumed",
    /// Sent to a port whose device went away (deleted with its pod, before a reload
    /// removed the port).
    PortGone = "egress port's device is gone",
    /// Sent to a port whose device is down (`ip link set ... down`): dropped rather than
    /// queued to go out stale when it comes up.
    PortDown = "egress port's device is down",
    /// The kernel refused a write to the egress device (a TAP that is down).
    TxFailed = "write to the egress device failed",
    /// Received as its port was being removed, or its worker stopped: nothing
    /// processes it any more.
    PortClosing = "arrived as its port closed",
    /// Handed to the egress device, which dropped it: it has no carrier (a veth whose
    /// peer is down), or its queue was full (a veth whose peer cannot keep up).
    DeviceDropped = "egress device dropped it (no carrier, or its queue full)",
    /// A tunnel packet to this node whose outer UDP checksum is there and wrong (corrupted
    /// on the way: its VNI or label cannot be trusted).
    BadChecksum = "tunnel packet's outer UDP checksum is wrong",
    /// A tunnel packet the underlay marked congested (CE) whose inner packet is not
    /// ECN-capable: the mark cannot be passed on, so it is a drop (RFC 6040).
    EcnNotCapable = "congestion marked on a tunnel packet whose inner packet is not ECN-capable",
    /// A frame whose 802.1Q tag is not its port's VLAN: tagged on an untagged port,
    /// untagged or of another VLAN on a tagged one, or tagged twice.
    WrongVlan = "802.1Q tag is not the port's VLAN",
    /// A fragment of a tunnel packet whose bytes went into the packet rebuilt from its
    /// fragments: taken in, not lost (the rebuilt packet is counted on).
    FragmentMerged = "fragment taken into its rebuilt tunnel packet",
    /// A fragment of a tunnel packet whose other fragments did not all come in time
    /// (or its worker stopped meanwhile).
    ReassemblyTimeout = "fragment of a tunnel packet that never came whole",
}
}

/// Whether a port's device can carry packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
#[repr(u8)]
pub enum PortState {
    /// Up (or not known otherwise).
    #[default]
    Up = 0,
    /// Down: nothing is sent until it is up again.
    Down = 1,
    /// Gone (deleted, or moved to another namespace): remove the port.
    Gone = 2,
}

impl PortState {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => PortState::Down,
            2 => PortState::Gone,
            _ => PortState::Up,
        }
    }
}

/// Counters of one worker.
pub struct WorkerCounters {
    /// Packets received.
    pub rx: AtomicU64,
    /// Packets sent: handed to the kernel and completed (AF_XDP: taken off the
    /// completion ring), or handed to a queue or write (other ports).
    pub tx: AtomicU64,
    /// Packets the worker made itself (ARP requests, neighbour solicitations, the
    /// fragments of a packet split for its egress beyond the first).
    pub originated: AtomicU64,
    /// Polls of all ports that found nothing.
    pub empty_polls: AtomicU64,
    /// Times a fill ring could not be topped up because no frame was free.
    pub fill_starved: AtomicU64,
    /// Bursts processed.
    pub bursts: AtomicU64,
    /// Each port's [`PortState`] (the first [`COUNTED_PORTS`]).
    pub port_state: [AtomicU8; COUNTED_PORTS],
    /// Packets received per port (the first [`COUNTED_PORTS`]).
    pub port_rx: [AtomicU64; COUNTED_PORTS],
    /// Packets sent per port, as [`WorkerCounters::tx`] (the first [`COUNTED_PORTS`]).
    pub port_tx: [AtomicU64; COUNTED_PORTS],
    /// Packets the kernel dropped before they reached each port (the first
    /// [`COUNTED_PORTS`]): an AF_XDP socket's RX ring full or fill ring empty, invalid
    /// descriptors; read from the socket now and then.
    pub port_kernel_dropped: [AtomicU64; COUNTED_PORTS],
    drops: [AtomicU64; DropReason::ALL.len()],
    events: [AtomicU64; Event::ALL.len()],
}

/// Ports with counters of their own in each worker: more than the 110 pods Kubernetes
/// runs on a node by default.
pub const COUNTED_PORTS: usize = 256;

impl Default for WorkerCounters {
    fn default() -> Self {
        fn zeros<const N: usize>() -> [AtomicU64; N] {
            std::array::from_fn(|_| AtomicU64::new(0))
        }
        WorkerCounters {
            rx: AtomicU64::new(0),
            tx: AtomicU64::new(0),
            originated: AtomicU64::new(0),
            empty_polls: AtomicU64::new(0),
            fill_starved: AtomicU64::new(0),
            bursts: AtomicU64::new(0),
            port_state: std::array::from_fn(|_| AtomicU8::new(0)),
            port_rx: zeros(),
            port_tx: zeros(),
            port_kernel_dropped: zeros(),
            drops: zeros(),
            events: zeros(),
        }
    }
}

impl WorkerCounters {
    /// Adds `n`; only the owning worker calls this.
    #[inline]
    pub fn add(c: &AtomicU64, n: u64) {
        c.store(c.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }

    /// Adds `n` to port `port`'s counter in `per_port` (nothing past [`COUNTED_PORTS`]);
    /// only the owning worker calls this.
    #[inline]
    pub fn add_port(per_port: &[AtomicU64; COUNTED_PORTS], port: usize, n: u64) {
        if let Some(c) = per_port.get(port) {
            Self::add(c, n);
        }
    }

    /// Counts `n` packets sent on port `port`; only the owning worker's ports call this.
    #[inline]
    pub fn sent(&self, port: u16, n: u64) {
        Self::add(&self.tx, n);
        Self::add_port(&self.port_tx, usize::from(port), n);
    }

    /// Counts `n` packets the kernel dropped before they reached port `port`; only the
    /// owning worker calls this.
    pub fn kernel_dropped(&self, port: u16, n: u64) {
        Self::add_port(&self.port_kernel_dropped, usize::from(port), n);
    }

    /// Counts `n` packets received on port `port` as it closed, and dropped for that.
    pub fn closing(&self, port: u16, n: u64) {
        if n > 0 {
            Self::add(&self.rx, n);
            Self::add_port(&self.port_rx, usize::from(port), n);
            self.dropped(DropReason::PortClosing, n);
        }
    }

    /// Starts the per-port counters and states afresh, for a worker whose ports are
    /// others (a pause and resume); before that worker runs.
    pub fn reset_ports(&self) {
        for g in &self.port_state {
            g.store(0, Ordering::Relaxed);
        }
        for c in self
            .port_rx
            .iter()
            .chain(&self.port_tx)
            .chain(&self.port_kernel_dropped)
        {
            c.store(0, Ordering::Relaxed);
        }
    }

    /// Moves the per-port counters and states along with a port change:
    /// `old_of[new]` is the old index of the port now at `new` (`None`: a new port,
    /// counted from zero). Only the owning worker calls this, between bursts.
    pub fn renumber_ports(&self, old_of: &[Option<u16>]) {
        let moved = |old: &[u64]| -> Vec<u64> {
            (0..COUNTED_PORTS)
                .map(|new| {
                    let o = old_of.get(new).copied().flatten().map(usize::from);
                    o.and_then(|o| old.get(o).copied()).unwrap_or(0)
                })
                .collect()
        };
        for per_port in [&self.port_rx, &self.port_tx, &self.port_kernel_dropped] {
            let now = moved(&per_port.iter().map(|c| c.load(Ordering::Relaxed)).collect::<Vec<_>>());
            for (c, v) in per_port.iter().zip(now) {
                c.store(v, Ordering::Relaxed);
            }
        }
        let states: Vec<u64> = self
            .port_state
            .iter()
            .map(|g| u64::from(g.load(Ordering::Relaxed)))
            .collect();
        for (g, v) in self.port_state.iter().zip(moved(&states)) {
            g.store(v as u8, Ordering::Relaxed);
        }
    }

    /// Records port `port`'s state (not shown past [`COUNTED_PORTS`]); only the owning
    /// worker calls this.
    pub fn set_state(&self, port: u16, state: PortState) {
        if let Some(g) = self.port_state.get(usize::from(port)) {
            g.store(state as u8, Ordering::Relaxed);
        }
    }

    /// Counts `n` drops for `why`; only the owning worker calls this.
    #[inline]
    pub fn dropped(&self, why: DropReason, n: u64) {
        Self::add(&self.drops[why as usize], n);
    }

    /// Counts `n` of `event`; only the owning worker calls this.
    #[inline]
    pub fn event(&self, event: Event, n: u64) {
        Self::add(&self.events[event as usize], n);
    }

    /// A consistent-enough copy for reporting.
    pub fn snapshot(&self) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            rx: get(&self.rx),
            tx: get(&self.tx),
            originated: get(&self.originated),
            empty_polls: get(&self.empty_polls),
            fill_starved: get(&self.fill_starved),
            bursts: get(&self.bursts),
            port_state: self
                .port_state
                .iter()
                .map(|g| PortState::from_u8(g.load(Ordering::Relaxed)))
                .collect(),
            port_rx: self.port_rx.iter().map(get).collect(),
            port_tx: self.port_tx.iter().map(get).collect(),
            port_kernel_dropped: self.port_kernel_dropped.iter().map(get).collect(),
            drops: DropReason::ALL
                .iter()
                .map(|&r| (r, get(&self.drops[r as usize])))
                .collect(),
            events: Event::ALL.iter().map(|&e| (e, get(&self.events[e as usize]))).collect(),
        }
    }
}

/// Adds `b` to `a` element by element, growing `a` to `b`'s length.
fn add_each(a: &mut Vec<u64>, b: &[u64]) {
    if a.len() < b.len() {
        a.resize(b.len(), 0);
    }
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

/// A worker's counters padded to their own cache lines.
pub type SharedCounters = std::sync::Arc<CachePadded<WorkerCounters>>;

/// Counter values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Packets received.
    pub rx: u64,
    /// Packets transmitted.
    pub tx: u64,
    /// Packets the router made itself (ARP requests, neighbour solicitations, fragments).
    pub originated: u64,
    /// Empty polls.
    pub empty_polls: u64,
    /// Fill-ring starvation events.
    pub fill_starved: u64,
    /// Bursts processed.
    pub bursts: u64,
    /// Each port's state, by port index (the first [`COUNTED_PORTS`]; summed over
    /// workers: the worst any of them saw).
    pub port_state: Vec<PortState>,
    /// Packets received per port, by port index (the first [`COUNTED_PORTS`]).
    pub port_rx: Vec<u64>,
    /// Packets transmitted per port, by port index (the first [`COUNTED_PORTS`]).
    pub port_tx: Vec<u64>,
    /// Packets the kernel dropped before they reached each port, by port index (the
    /// first [`COUNTED_PORTS`]; not in [`Stats::dropped`]: they never reached a worker).
    pub port_kernel_dropped: Vec<u64>,
    /// Drops per reason.
    pub drops: Vec<(DropReason, u64)>,
    /// Counts per event.
    pub events: Vec<(Event, u64)>,
}

impl Stats {
    /// All drops.
    pub fn dropped(&self) -> u64 {
        self.drops.iter().map(|d| d.1).sum()
    }

    /// Whether every packet is accounted for: each received or originated one was sent or
    /// dropped with a reason (true of a stopped worker; a running one may hold some).
    pub fn conserved(&self) -> bool {
        self.rx + self.originated == self.tx + self.dropped()
    }

    /// Drops for one reason.
    pub fn dropped_for(&self, why: DropReason) -> u64 {
        self.drops.iter().find(|d| d.0 == why).map_or(0, |d| d.1)
    }

    /// How many of one event.
    pub fn count_of(&self, event: Event) -> u64 {
        self.events.iter().find(|e| e.0 == event).map_or(0, |e| e.1)
    }

    /// Sum over workers.
    pub fn sum<'a>(all: impl IntoIterator<Item = &'a Stats>) -> Stats {
        let mut t = Stats {
            drops: DropReason::ALL.iter().map(|&r| (r, 0)).collect(),
            events: Event::ALL.iter().map(|&e| (e, 0)).collect(),
            ..Stats::default()
        };
        for s in all {
            t.rx += s.rx;
            t.tx += s.tx;
            t.originated += s.originated;
            t.empty_polls += s.empty_polls;
            t.fill_starved += s.fill_starved;
            t.bursts += s.bursts;
            if t.port_state.len() < s.port_state.len() {
                t.port_state.resize(s.port_state.len(), PortState::Up);
            }
            for (a, &b) in t.port_state.iter_mut().zip(&s.port_state) {
                *a = (*a).max(b);
            }
            add_each(&mut t.port_rx, &s.port_rx);
            add_each(&mut t.port_tx, &s.port_tx);
            add_each(&mut t.port_kernel_dropped, &s.port_kernel_dropped);
            for (a, b) in t.drops.iter_mut().zip(&s.drops) {
                a.1 += b.1;
            }
            for (a, b) in t.events.iter_mut().zip(&s.events) {
                a.1 += b.1;
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_port_counts_follow_their_port_through_a_change() {
        let c = WorkerCounters::default();
        for (port, n) in [(0, 10), (1, 20), (2, 30)] {
            WorkerCounters::add_port(&c.port_rx, port, n);
            WorkerCounters::add_port(&c.port_tx, port, n + 1);
            c.kernel_dropped(port as u16, n + 2);
        }
        c.set_state(2, PortState::Gone);
        c.set_state(0, PortState::Down);
        // Port 1 leaves; port 2 becomes 0, port 0 becomes 1, a new port is 2.
        c.renumber_ports(&[Some(2), Some(0), None]);
        let s = c.snapshot();
        assert_eq!(&s.port_rx[..4], &[30, 10, 0, 0]);
        assert_eq!(&s.port_tx[..4], &[31, 11, 0, 0]);
        assert_eq!(&s.port_kernel_dropped[..4], &[32, 12, 0, 0]);
        use PortState::*;
        assert_eq!(
            &s.port_state[..4],
            &[Gone, Down, Up, Up],
            "the states moved with their ports"
        );
        // Summed over workers, the worst state wins.
        let other = WorkerCounters::default();
        other.set_state(1, Gone);
        assert_eq!(&Stats::sum([&s, &other.snapshot()]).port_state[..3], &[Gone, Gone, Up]);
        // A node's 200th pod is counted too; past the counted ports nothing is, and
        // nothing breaks.
        WorkerCounters::add_port(&c.port_rx, 199, 5);
        c.set_state(199, Gone);
        WorkerCounters::add_port(&c.port_rx, COUNTED_PORTS, 5);
        c.set_state(COUNTED_PORTS as u16, Gone);
        let s = c.snapshot();
        assert_eq!((s.port_rx[199], s.port_state[199]), (5, Gone));
        assert_eq!(s.port_rx.len(), COUNTED_PORTS);
    }

    #[test]
    fn every_event_has_a_counter_and_a_description_and_sums_over_workers() {
        let c = WorkerCounters::default();
        for (i, &e) in Event::ALL.iter().enumerate() {
            assert_eq!(e as usize, i);
            assert!(!e.description().is_empty());
            c.event(e, i as u64 + 1);
        }
        let s = c.snapshot();
        let last = *Event::ALL.last().unwrap();
        assert_eq!(s.count_of(last), Event::ALL.len() as u64);
        assert_eq!(Stats::sum([&s, &s]).count_of(Event::IcmpErrors), 2);
    }

    #[test]
    fn every_reason_has_a_counter_and_a_description() {
        let c = WorkerCounters::default();
        for (i, &r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r as usize, i);
            assert!(!r.description().is_empty());
            c.dropped(r, i as u64 + 1);
        }
        let s = c.snapshot();
        assert_eq!(s.dropped_for(DropReason::TxRingFull), 1);
        assert_eq!(Stats::sum([&s, &s]).dropped(), 2 * s.dropped());
    }
}
