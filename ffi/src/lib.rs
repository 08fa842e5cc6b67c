//! The C API. A router is built (ports, VRFs, routes, nexthops including VXLAN, MPLSoUDP
//! and MPLSoGRE tunnels and ECMP, VNIs, labels, neighbours, per-workload policy rule
//! lists; each can be removed again and the change published while it runs), started
//! on in-memory ports, then driven by the embedder: push frames in, poll, pull frames out,
//! read counters, dump flows. `ffi/include/vrouter.h` is generated from this file.
//!
//! The entry points take raw pointers from C and are not `unsafe fn`: their contract
//! (valid, NUL-terminated strings; buffers of the stated length; handles from
//! `vr_router_new`) is written in the header, and C callers cannot see Rust's `unsafe`.
//!
//! Safety of the boundary: every entry point runs inside `catch_unwind`; handles are
//! checked against a registry of live routers before use, so NULL and freed handles are
//! errors, not dereferences.

#![allow(clippy::not_unsafe_ptr_arg_deref)] // C entry points: the contract is in the header.

use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, CString, c_char};
use std::net::IpAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};

use vrouter::dataplane::neigh::Lookup;
use vrouter::dataplane::pipeline::neighbor_mac;
use vrouter::dataplane::{Event, MemoryLink, PortState, Worker};
use vrouter::fib::{Encap, Fib, FibBuilder, Neighbor, NeighborState, Nexthop, OuterDscp, Prepared, Resolution};
use vrouter::flow::{FlowTableConfig, FullPolicy};
use vrouter::policy::{
    Action, AddrSet, Cidr, Direction, Endpoint, EndpointId, IcmpMatch, Policy, PolicySet, PortRange, Rule, RuleId,
    RuleList,
};
use vrouter::wire::ethernet::MacAddr;
use vrouter::{MssClamp, NodeConfig, PortConfig, PortRole, Router};

/// Result of every call.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VrResult {
    /// Success.
    VrOk = 0,
    /// A pointer argument was NULL.
    VrNullParameter = 1,
    /// The handle is not a live router (freed, or never created).
    VrStaleHandle = 2,
    /// An argument is invalid (address, prefix, MAC, port index, ...); see
    /// `vr_router_last_error`.
    VrInvalidArgument = 3,
    /// Not allowed in the router's current state (e.g. adding a port after start).
    VrInvalidState = 4,
    /// Nothing to pull.
    VrEmpty = 5,
    /// The caller's buffer is too small for the frame (it stays queued).
    VrBufferTooSmall = 6,
    /// A queue is full; the frame was not taken.
    VrFull = 7,
    /// An internal error; see `vr_router_last_error`.
    VrInternal = 8,
    /// A bug: a panic was caught at the boundary.
    VrPanic = 9,
}

/// The route an address takes and where a new flow to it goes (`vr_router_route_get`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct VrRoute {
    /// The route's prefix as text ("10.0.0.0/8"), NUL-terminated.
    pub prefix: [c_char; 64],
    /// The route's nexthop.
    pub nexthop: u32,
    /// The nexthop a new flow ends at: through ECMP groups (the member flow hash 0 picks)
    /// and VRF translations.
    pub resolved_nexthop: u32,
    /// Its egress port (for a tunnel, the underlay's); -1 for a discard or a delivery to
    /// this node.
    pub port: i32,
    /// 1 when the next hop's MAC is known (then in `mac`), 0 while it is to be resolved
    /// (the first packet asks for it).
    pub mac_known: u8,
    /// The next hop's MAC.
    pub mac: [u8; 6],
}

/// Counters of a router.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct VrStats {
    /// Frames received from all ports.
    pub rx: u64,
    /// Frames sent.
    pub tx: u64,
    /// Frames dropped (all reasons).
    pub dropped: u64,
    /// Live flow entries (each direction counts).
    pub flows: u64,
    /// Frames the router made itself (ARP requests, neighbour solicitations, fragments):
    /// rx + originated = tx + dropped once nothing is parked.
    pub originated: u64,
    /// Flow table slots: `flows / flow_capacity` is the table pressure to alert on
    /// (inserts may be refused from about 0.8).
    pub flow_capacity: u64,
    /// ICMP errors sent (time exceeded, fragmentation needed / packet too big).
    pub icmp_errors: u64,
    /// IPv4 packets split into fragments to fit their egress MTU.
    pub fragmented: u64,
    /// The fragments made beyond each split packet's first (counted in `originated` too).
    pub fragments_made: u64,
    /// TCP SYN MSS options lowered (`vr_router_set_tcp_mss_clamp`).
    pub mss_clamped: u64,
    /// Path MTUs toward tunnel ends lowered by the underlay's ICMP errors.
    pub path_mtus_learned: u64,
    /// Tunnel packets the underlay fragmented, rebuilt from their fragments.
    pub reassembled: u64,
}

/// One port's counters (`vr_router_port_stats`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct VrPortStats {
    /// Frames received on it.
    pub rx: u64,
    /// Frames sent out of it.
    pub tx: u64,
    /// Frames the kernel dropped before they reached it (with workers: its AF_XDP
    /// socket's RX ring full or fill ring empty; read every few milliseconds).
    pub kernel_dropped: u64,
    /// Its device's state: VR_PORT_UP, VR_PORT_DOWN (down, or no carrier: what is routed
    /// to it is dropped until it is up) or VR_PORT_GONE (deleted: remove the port).
    pub state: u32,
}

/// `vr_port_stats.state`: the device carries packets (or is not known otherwise).
pub const VR_PORT_UP: u32 = 0;
/// `vr_port_stats.state`: the device is down or has no carrier.
pub const VR_PORT_DOWN: u32 = 1;
/// `vr_port_stats.state`: the device is gone (deleted, or moved to another namespace).
pub const VR_PORT_GONE: u32 = 2;

/// One policy rule for `vr_router_set_policy`. Zero / NULL fields match anything.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct VrRule {
    /// Lower is evaluated first; equal priorities keep array order.
    pub priority: u32,
    /// VR_ALLOW, VR_DENY, VR_ALLOW_LOG or VR_DENY_LOG.
    pub action: u8,
    /// IP protocol number (6 TCP, 17 UDP, 132 SCTP, 1 ICMP, 58 ICMPv6); 0 = any.
    pub proto: u8,
    /// Source prefix ("10.0.0.0/8", "fd00::/64"); NULL = any.
    pub src: *const c_char,
    /// Destination prefix; NULL = any.
    pub dst: *const c_char,
    /// Source ports `src_port_min..=src_port_max` (TCP, UDP, SCTP); both 0 = any.
    pub src_port_min: u16,
    /// Last source port.
    pub src_port_max: u16,
    /// Destination ports `dst_port_min..=dst_port_max`; both 0 = any.
    pub dst_port_min: u16,
    /// Last destination port.
    pub dst_port_max: u16,
    /// Match ICMP (`proto` 1) or ICMPv6 (58) messages of type `icmp_type` alone; false =
    /// any type.
    pub match_icmp_type: bool,
    /// The ICMP type.
    pub icmp_type: u8,
    /// With `match_icmp_type`: of code `icmp_code` alone; false = any code.
    pub match_icmp_code: bool,
    /// The ICMP code.
    pub icmp_code: u8,
}

/// Rule action: allow.
pub const VR_ALLOW: u8 = 0;
/// Rule action: deny.
pub const VR_DENY: u8 = 1;
/// Rule action: allow and log.
pub const VR_ALLOW_LOG: u8 = 2;
/// Rule action: deny and log.
pub const VR_DENY_LOG: u8 = 3;
/// Policy direction: traffic arriving at the workload.
pub const VR_INGRESS: u8 = 0;
/// Policy direction: traffic the workload sends.
pub const VR_EGRESS: u8 = 1;

/// `vr_flow_options.when_full`: a full bucket pair gives up its idlest expired or closing
/// flow to the next new one (the default).
pub const VR_FULL_EVICT: u32 = 0;
/// `vr_flow_options.when_full`: new flows that find their buckets full are forwarded by
/// the slow path and not cached.
pub const VR_FULL_REFUSE: u32 = 1;

/// Flow table options for `vr_router_set_flow_options`; a zero field keeps its default.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct VrFlowOptions {
    /// Slots of 100 bytes, at most 2^30 (default 65,536 on memory ports, 1,048,576 with
    /// workers). A flow takes two (forward and reverse); inserts may be refused from
    /// about 80% full, and hits are fastest below half, so give it 2 to 4 slots per
    /// expected entry.
    pub entries: u64,
    /// VR_FULL_EVICT or VR_FULL_REFUSE.
    pub when_full: u32,
    /// Most flow entries per VRF, so one tenant cannot fill the table (0: no quota).
    pub vrf_quota: u32,
    /// Idle timeouts in seconds, at most 2^31 - 1: TCP without FIN or RST (default 7200),
    /// TCP closing (10), UDP (30), ICMP (10), other protocols (30), SCTP (210).
    /// 0: the default.
    pub tcp_established: u32,
    /// See `tcp_established`.
    pub tcp_closing: u32,
    /// See `tcp_established`.
    pub udp: u32,
    /// See `tcp_established`.
    pub icmp: u32,
    /// See `tcp_established`.
    pub other: u32,
    /// See `tcp_established`.
    pub sctp: u32,
}

/// Port kinds for `vr_router_add_port`.
pub const VR_PORT_FABRIC: u32 = 0;
/// A workload port.
pub const VR_PORT_WORKLOAD: u32 = 1;
/// Port kind: the node's own network stack, a TAP device (the exception path: traffic
/// for the node's addresses goes there, and what the host sends is routed).
pub const VR_PORT_HOST: u32 = 2;

/// An opaque router (a Rust `Box` inside): create with `vr_router_new`, release with
/// `vr_router_free`.
pub struct VrRouter {
    ports: Vec<PortConfig>,
    endpoints: Vec<IpAddr>,
    /// `vr_router_set_ipv6_zero_udp_checksum(r, 0)`.
    refuse_zero_udp_checksum6: bool,
    /// `vr_router_set_tcp_mss_clamp`.
    tcp_mss_clamp: MssClamp,
    fib: Arc<Fib>,
    routes: FibBuilder,
    running: Option<Started>,
    /// Rule lists per (workload port, egress), published by `vr_router_publish_policy`.
    policies: HashMap<(u32, bool), RuleList>,
    /// `vr_router_set_policy_log`: (denials, allowances) logged whatever the rules say.
    policy_log: (bool, bool),
    /// A frame pulled into too small a buffer, per port: returned by the next pull.
    held: Vec<Option<Vec<u8>>>,
    /// Flow table options, if `vr_router_set_flow_options` set them.
    flow_options: Option<VrFlowOptions>,
    /// Ports were added or removed after the start, not yet applied: publishing waits.
    ports_pending: bool,
    /// Ports added so far (names stay unique when ports are removed).
    ports_added: u32,
    error: CString,
}

/// A started router and how packets reach it.
impl VrRouter {
    /// The node its ports, endpoints and options make.
    fn node(&self) -> NodeConfig {
        NodeConfig {
            ports: self.ports.clone(),
            tunnel_endpoints: self.endpoints.clone(),
            refuse_zero_udp_checksum6: self.refuse_zero_udp_checksum6,
            tcp_mss_clamp: self.tcp_mss_clamp,
        }
    }
}

struct Started {
    router: Router,
    mode: Mode,
}

enum Mode {
    /// In-memory ports driven by the caller (push, poll, pull).
    Memory {
        worker: Box<Worker>,
        links: Vec<Arc<MemoryLink>>,
    },
    /// Pinned workers over AF_XDP interfaces.
    Workers(Box<vrouter::Running>),
}

fn started(r: &VrRouter) -> Result<&Started, (VrResult, String)> {
    r.running
        .as_ref()
        .ok_or((VrResult::VrInvalidState, "start the router first".into()))
}

/// The caller-driven worker and its ports.
type MemoryPorts<'a> = (&'a mut Worker, &'a [Arc<MemoryLink>]);

fn memory(r: &mut VrRouter) -> Result<MemoryPorts<'_>, (VrResult, String)> {
    match r.running.as_mut().map(|s| &mut s.mode) {
        Some(Mode::Memory { worker, links }) => Ok((&mut **worker, links)),
        Some(Mode::Workers(_)) => Err((
            VrResult::VrInvalidState,
            "started with workers: packets come from the interfaces".into(),
        )),
        None => Err((VrResult::VrInvalidState, "start the router first".into())),
    }
}

static LIVE: Mutex<Option<HashSet<usize>>> = Mutex::new(None);

fn live(p: *const VrRouter) -> bool {
    LIVE.lock()
        .map(|l| l.as_ref().is_some_and(|s| s.contains(&(p as usize))))
        .unwrap_or(false)
}

/// Runs `f` on the router behind `r` with the boundary checks.
fn with(r: *mut VrRouter, f: impl FnOnce(&mut VrRouter) -> Result<(), (VrResult, String)>) -> VrResult {
    if r.is_null() {
        return VrResult::VrNullParameter;
    }
    if !live(r) {
        return VrResult::VrStaleHandle;
    }
    // SAFETY: `r` is non-null and registered as live: it came from `vr_router_new` and
    // has not been passed to `vr_router_free`; the API requires one thread at a time per
    // handle, so this is the only reference.
    let router = unsafe { &mut *r };
    match catch_unwind(AssertUnwindSafe(|| f(router))) {
        Ok(Ok(())) => VrResult::VrOk,
        Ok(Err((code, msg))) => {
            router.error = CString::new(msg.replace('\0', " ")).unwrap_or_default();
            code
        }
        Err(_) => VrResult::VrPanic,
    }
}

/// `VR_NULL_PARAMETER`, naming the pointer argument(s) that were NULL.
fn null(what: &str) -> (VrResult, String) {
    (VrResult::VrNullParameter, format!("{what} is NULL"))
}

fn bad(msg: impl Into<String>) -> (VrResult, String) {
    (VrResult::VrInvalidArgument, msg.into())
}

fn text<'a>(p: *const c_char, what: &str) -> Result<&'a str, (VrResult, String)> {
    if p.is_null() {
        return Err(null(what));
    }
    // SAFETY: the caller passes a NUL-terminated string (documented), valid for the call.
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|_| bad(format!("{what} is not UTF-8")))
}

fn addr(p: *const c_char, what: &str) -> Result<IpAddr, (VrResult, String)> {
    let s = text(p, what)?;
    s.parse().map_err(|_| bad(format!("{what} `{s}` is not an IP address")))
}

/// An address, or `None` for NULL.
fn optional_addr(p: *const c_char, what: &str) -> Result<Option<IpAddr>, (VrResult, String)> {
    if p.is_null() { Ok(None) } else { addr(p, what).map(Some) }
}

fn mac(p: *const u8) -> Result<MacAddr, (VrResult, String)> {
    if p.is_null() {
        return Err(null("mac"));
    }
    // SAFETY: the caller passes 6 readable bytes (documented).
    Ok(MacAddr(
        unsafe { std::slice::from_raw_parts(p, 6) }.try_into().expect("6 bytes"),
    ))
}

fn not_started(r: &VrRouter) -> Result<(), (VrResult, String)> {
    if r.running.is_some() {
        return Err((
            VrResult::VrInvalidState,
            "the router is started: its tunnel endpoints and flow table size are fixed (ports change by vr_router_apply_ports)".into(),
        ));
    }
    Ok(())
}

/// Refuses while ports added or removed on a started router await
/// `vr_router_apply_ports`: tables written for the new numbers must not reach workers on
/// the old ones.
fn no_ports_pending(r: &VrRouter) -> Result<(), (VrResult, String)> {
    if r.ports_pending {
        return Err((
            VrResult::VrInvalidState,
            "ports were added or removed: vr_router_apply_ports first".into(),
        ));
    }
    Ok(())
}

/// Text for a result code (static, never NULL).
#[unsafe(no_mangle)]
pub extern "C" fn vr_result_message(code: VrResult) -> *const c_char {
    let s: &'static CStr = match code {
        VrResult::VrOk => c"ok",
        VrResult::VrNullParameter => c"a pointer argument was NULL",
        VrResult::VrStaleHandle => c"not a live router handle (freed or never created)",
        VrResult::VrInvalidArgument => c"invalid argument (see vr_router_last_error)",
        VrResult::VrInvalidState => c"not allowed in the router's current state",
        VrResult::VrEmpty => c"nothing to pull",
        VrResult::VrBufferTooSmall => c"buffer too small for the frame",
        VrResult::VrFull => c"queue full",
        VrResult::VrInternal => c"internal error (see vr_router_last_error)",
        VrResult::VrPanic => c"internal bug: a panic was stopped at the API boundary",
    };
    s.as_ptr()
}

/// Creates a router. `*out` receives the handle. Release it with `vr_router_free`.
#[unsafe(no_mangle)]
pub extern "C" fn vr_router_new(out: *mut *mut VrRouter) -> VrResult {
    if out.is_null() {
        return VrResult::VrNullParameter;
    }
    catch_unwind(AssertUnwindSafe(|| {
        let mut routes = FibBuilder::new();
        routes.add_vrf(0).expect("VRF 0 is valid");
        let r = Box::into_raw(Box::new(VrRouter {
            ports: Vec::new(),
            endpoints: Vec::new(),
            refuse_zero_udp_checksum6: false,
            tcp_mss_clamp: MssClamp::Off,
            fib: Arc::new(Fib::new()),
            routes,
            running: None,
            held: Vec::new(),
            flow_options: None,
            ports_pending: false,
            ports_added: 0,
            error: CString::default(),
            policies: HashMap::new(),
            policy_log: (false, false),
        }));
        LIVE.lock()
            .expect("registry")
            .get_or_insert_with(HashSet::new)
            .insert(r as usize);
        // SAFETY: `out` is non-null (checked) and points to writable storage (documented).
        unsafe { *out = r };
        VrResult::VrOk
    }))
    .unwrap_or(VrResult::VrPanic)
}

/// Releases a router and everything it holds. NULL is ignored; a stale handle returns
/// VR_STALE_HANDLE and touches nothing.
#[unsafe(no_mangle)]
pub extern "C" fn vr_router_free(r: *mut VrRouter) -> VrResult {
    if r.is_null() {
        return VrResult::VrOk;
    }
    let removed = LIVE
        .lock()
        .map(|mut l| l.as_mut().is_some_and(|s| s.remove(&(r as usize))))
        .unwrap_or(false);
    if !removed {
        return VrResult::VrStaleHandle;
    }
    // SAFETY: `r` was live (created by `vr_router_new`, now unregistered exactly once).
    catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(r) }))).map_or(VrResult::VrPanic, |_| VrResult::VrOk)
}

/// Details of the last failed call on `r` (valid until the next call on `r`); "" if none.
#[unsafe(no_mangle)]
pub extern "C" fn vr_router_last_error(r: *const VrRouter) -> *const c_char {
    if r.is_null() || !live(r) {
        return c"not a live router handle".as_ptr();
    }
    // SAFETY: live handle (checked), read-only access.
    unsafe { (*r).error.as_ptr() }
}

/// Adds port `*index_out` (the next index: ports count from 0 in call order, less those
/// removed). `kind` is VR_PORT_FABRIC (routing in `vrf`; `addr` is the router's address
/// on it, may be NULL), VR_PORT_WORKLOAD (a workload in `vrf` owning `addr`, with MAC
/// `peer_mac`, whose gateway `gateway` the router answers for) or VR_PORT_HOST (the
/// node's own stack, one a router: fabric packets to a fabric port's address go out of
/// it to MAC `peer_mac`, the host side's; what the host sends is routed in `vrf`, every
/// ARP request of it answered; `addr` may be NULL; its device in
/// `vr_router_start_workers` is a TAP, created if missing, read and written through
/// io_uring). `mac` is the router's MAC on the port (6 bytes). Before a start, or on a
/// started router, where it is live from `vr_router_apply_ports` (a pod created).
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn vr_router_add_port(
    r: *mut VrRouter,
    kind: u32,
    vrf: u32,
    mac_: *const u8,
    addr_: *const c_char,
    peer_mac: *const u8,
    gateway: *const c_char,
    index_out: *mut u32,
) -> VrResult {
    with(r, |r| {
        if index_out.is_null() {
            return Err(null("index_out"));
        }
        let own = mac(mac_)?;
        let role = match kind {
            VR_PORT_FABRIC => PortRole::Fabric { vrf },
            VR_PORT_WORKLOAD => PortRole::Workload {
                vrf,
                addrs: vec![addr(addr_, "addr")?],
                mac: mac(peer_mac)?,
                gateways: vec![addr(gateway, "gateway")?],
            },
            VR_PORT_HOST => {
                if r.ports.iter().any(|p| matches!(p.role, PortRole::Host { .. })) {
                    return Err(bad("the router has a host port already"));
                }
                PortRole::Host {
                    vrf,
                    mac: mac(peer_mac)?,
                }
            }
            k => {
                return Err(bad(format!(
                    "kind {k} is not VR_PORT_FABRIC, VR_PORT_WORKLOAD or VR_PORT_HOST"
                )));
            }
        };
        let addrs = if kind != VR_PORT_WORKLOAD && !addr_.is_null() {
            vec![addr(addr_, "addr")?]
        } else {
            vec![]
        };
        let index = r.ports.len() as u32;
        r.ports.push(PortConfig {
            name: format!("port{}", r.ports_added),
            mac: own,
            mtu: 1500,
            addrs,
            vlan: None,
            role,
        });
        r.ports_added += 1;
        r.ports_pending = r.running.is_some();
        // SAFETY: non-null (checked), writable (documented).
        unsafe { *index_out = index };
        Ok(())
    })
}

/// Puts port `port` on 802.1Q VLAN `vlan` (1-4094; 0: untagged again), for a port on a
/// trunk: frames it receives must carry the tag (others are `WrongVlan` drops), which
/// comes off first, and frames it sends get it. Before a start, or on a started router,
/// where it is live from `vr_router_apply_ports`.
#[unsafe(no_mangle)]
pub extern "C" fn vr_router_set_port_vlan(r: *mut VrRouter, port: u32, vlan: u16) -> VrResult {
    with(r, |r| {
        let vlan = match vlan {
            0 => None,
            1..=4094 => Some(vlan),
            _ => return Err(bad(format!("VLAN {vlan} is outside 1..=4094"))),
        };
        port_mut(&mut r.ports, port)?.vlan = vlan;
        r.ports_pending = r.running.is_some();
        Ok(())
    })
}

/// Port `port`, to change (a started router takes the change at the next
/// `vr_router_apply_ports`: set `ports_pending`).
fn port_mut(ports: &mut [PortConfig], port: u32) -> Result<&mut PortConfig, (VrResult, String)> {
    let n = ports.len();
    ports
        .get_mut(port as usize)
        .ok_or_else(|| bad(format!("no port {port} (the router has {n})")))
}

/// The addresses a port owns, and its gateways (a workload port's) or `None` (a fabric
/// or host port's: router addresses, no gateway).
fn addresses_of(p: &mut PortConfig) -> (&mut Vec<IpAddr>, Option<&mut Vec<IpAddr>>) {
    match &mut p.role {
        PortRole::Workload { addrs, gateways, .. } => (addrs, Some(gateways)),
        PortRole::Fabric { .. } | PortRole::Host { .. } => (&mut p.addrs, None),
    }
}

/// The MTUs a port may have.
const MTUS: std::ops::RangeInclusive<u16> = 576..=9000;

/// Sets port `port`'s MTU (576-9000; a port starts at 1500): the longest IP packet it
/// sends. Longer ones are split (IPv4 that may be fragmented) or answered with
/// fragmentation needed / packet too big; give a workload port its interface's MTU (1450
/// behind a VXLAN overlay, say) and a fabric port its link's. Before a start, or on a
/// started router, where it is live from `vr_router_apply_ports`.
#[unsafe(no_mangle)]
pub extern "C" fn vr_router_set_port_mtu(r: *mut VrRouter, port: u32, mtu: u16) -> VrResult {
    with(r, |r| {
        if !MTUS.contains(&mtu) {
            return Err(bad(format!("MTU {mtu} is outside 576..=9000")));
        }
        port_mut(&mut r.ports, port)?.mtu = mtu;
        r.ports_pending = r.running.is_some();
        Ok(())
    })
}

/// Gives port `port` another address, beside the one `vr_router_add_port` gave it: on a
/// workload port, an address the workload owns (its IPv6 address beside its IPv4 one,
/// or a service address its backends share), with `gateway` (may be NULL) another
/// address the router answers ARP / neighbour solicitation for there; on a fabric or
/// host port, another router address (`gateway` must be NULL). An address the port has
/// already is refused. Before a start, or on a started router, where it is live from
/// `vr_router_apply_ports`.
#[unsafe(no_mangle)]
pub extern "C" fn vr_router_add_port_address(
    r: *mut VrRouter,
    port: u32,
    address: *const c_char,
    gateway: *const c_char,
) -> VrResult {
    with(r, |r| {
        let (a, gw) = (addr(address, "address")?, optional_addr(gateway, "gateway")?);
        let (addrs, gateways) = addresses_of(port_mut(&mut r.ports, port)?);
        if addrs.contains(&a) {
            return Err(bad(format!("port {port} has {a} already")));
        }
        match (gw, gateways) {
            (None, _) => {}
            (Some(g), Some(gateways)) if !gateways.contains(&g) => gateways.push(g),
            (Some(_), Some(_)) => {}
            (Some(_), None) => return Err(bad(format!("port {port} is not a workload port: it has no gateway"))),
        }
        addrs.push(a);
        r.ports_pending = r.running.is_some();
        Ok(())
    })
}

/// Takes `address` (and `gateway`, unless NULL) back from port `port`, as
/// `vr_router_add_port_address` gave them (a backend that leaves a service, say). A
/// workload port keeps at least one address (with none, any source would pass as its
/// own): taking its last is refused, as is an address or gateway the port does not
/// have. Before a start, or on a started router, where it is live from
/// `vr_router_apply_ports`.
#[unsafe(no_mangle)]
pub extern "C" fn vr_router_remove_port_address(
    r: *mut VrRouter,
    port: u32,
    address: *const c_char,
    gateway: *const c_char,
) -> VrResult {
    with(r, |r| {
        let (a, gw) = (addr(address, "address")?, optional_addr(gateway, "gateway")?);
        let (addrs, gateways) = addresses_of(port_mut(&mut r.ports, port)?);
        let at = addrs
            .iter()
            .position(|&x| x == a)
            .ok_or_else(|| bad(format!("port {port} has no address {a}")))?;
        let gw_at = match (gw, &gateways) {
            (None, _) => None,
            (Some(g), Some(gateways)) => Some(
                gateways
                    .iter()
                    .position(|&x| x == g)
                    .ok_or_else(|| bad(format!("port {port} has no gateway {g}")))?,
            ),
            (Some(_), None) => return Err(bad(format!("port {port} is not a workload port: it has no gateway"))),
        };
        if gateways.is_some() && addrs.len() == 1 {
            return Err(bad(format!(
                "{a} is port {port}'s last address: a workload port keeps one (remove the port instead)"
            )));
        }
        addrs.remove(at);
        if let (Some(i), Some(gateways)) = (gw_at, gateways) {
            gateways.remove(i);
        }
        r.ports_pending = r.running.is_some();
        Ok(())
    })
}

/// Removes port `port` (a pod deleted); the ports after it move down one index. Its
/// nexthops become discards (give their routes other nexthops), its neighbours and policy
/// lists go; those of the ports after it move with them. Before a start, or on a started
/// router, where it is live from `vr_router_apply_ports`.
#[unsafe(no_mangle)]
pub extern "C" fn vr_router_remove_port(r: *mut VrRouter, port: u32) -> VrResult {
    with(r, |r| {
        if port as usize >= r.ports.len() {
            return Err(bad(format!("no port {port} (the router has {})", r.ports.len())));
        }
        r.ports.remove(port as usize);
        let new_port = |p: u32| match p.cmp(&port) {
            std::cmp::Ordering::Less => Some(p),
            std::cmp::Ordering::Equal => None,
            // Ports past the end (the overlay neighbours' pseudo-ports) keep theirs.
            std::cmp::Ordering::Greater if p as usize > r.ports.len() => Some(p),
            std::cmp::Ordering::Greater => Some(p - 1),
        };
        r.routes.renumber_ports(new_port);
        r.policies = std::mem::take(&mut r.policies)
            .into_iter()
            .filter_map(|((p, egress), list)| Some(((new_port(p)?, egress), list)))
            .collect();
        r.ports_pending = r.running.is_some();
        Ok(())
    })
}

/// Makes `endpoint` (an IP address of this node) a tunnel endpoint: VXLAN/MPLS packets
/// to it are decapsulated. Only before `vr_router_start`.
#[unsafe(no_mangle)]
pub extern "C" fn vr_router_add_tunnel_endpoint(r: *mut VrRouter, endpoint: *const c_char) -> VrResult {
    with(r, |r| {
        not_started(r)?;
        let a = addr(endpoint, "endpoint")?;
        r.endpoints.push(a);
        Ok(())
    })
}

/// Whether UDP tunnel packets to this node over IPv6 without a checksum (zero, RFC 6935)
/// are taken (`accept` true, the default: the Linux kernel sends them with
/// `udp6zerocsumtx`) or dropped as `BadChecksum` (false; RFC 6936 asks for the choice).
/// Only before `vr_router_start`.
#[unsafe(no_mangle)]
pub extern "C" fn vr_router_set_ipv6_zero_udp_checksum(r: *mut VrRouter, accept: bool) -> VrResult {
    with(r, |r| {
        not_started(r)?;
        r.refuse_zero_udp_checksum6 = !accept;
        Ok(())
    })
}

/// `vr_router_set_tcp_mss_clamp`'s `mss` for: lower each TCP SYN's MSS to what its path
/// through the router carries (egress MTU, less the tunnel's headers, and for a SYN
/// out of a tunnel that tunnel's).
pub const VR_MSS_CLAMP_PATH: u16 = u16::MAX;

/// Lowers the MSS option of the TCP SYNs (and SYN-ACKs) the router forwards, so that
/// neither end of a connection sends segments its path cannot carry where the ICMP
/// errors of path MTU discovery are lost: `VR_MSS_CLAMP_PATH` to what each path
/// carries, 536 to 8960 to at most that, 0 (the default) not at all. Other values are
/// VR_INVALID_ARGUMENT. Only before `vr_router_start`.
#[unsafe(no_mangle)]
pub extern "C" fn vr_router_set_tcp_mss_clamp(r: *mut VrRouter, mss: u16) -> VrResult {
    with(r, |r| {
        not_started(r)?;
        r.tcp_mss_clamp = match mss {
            0 => MssClamp::Off,
            VR_MSS_CLAMP_PATH => MssClamp::Path,
            536..=8960 => MssClamp::Fixed(mss),
            _ => return Err(bad(format!("mss {mss} is not 0, VR_MSS_CLAMP_PATH or 536..=8960"))),
        };
        Ok(())
    })
}

/// Sets the flow table's options (`vr_flow_options`; zero fields keep their defaults).
/// Before `vr_router_start` or `vr_router_start_workers` every field applies. On a started
/// router `when_full`, `vrf_quota` and the timeouts apply at once (new timeouts to flows
/// already installed too); `entries` must then be 0, the value the router started with or
/// its slots (`vr_router_get_flow_options`), and a quota can be changed or removed (0)
/// but not added to a router started without one (VR_INVALID_STATE, nothing changed).
#[unsafe(no_mangle)]
pub extern "C" fn vr_router_set_flow_options(r: *mut VrRouter, options: *const VrFlowOptions) -> VrResult {
    with(r, |r| {
        if options.is_null() {
            return Err(null("options"));
        }
        // SAFETY: non-null (checked), a readable vr_flow_options (documented).
        let mut o = unsafe { *options };
        if o.entries > 1 << 30 {
            return Err(bad(format!("flow options: `entries` {} is above 2^30", o.entries)));
        }
        if o.when_full > VR_FULL_REFUSE {
            return Err(bad(format!(
                "flow options: `when_full` {} is neither VR_FULL_EVICT nor VR_FULL_REFUSE",
                o.when_full
            )));
        }
        for (name, t) in [
            ("tcp_established", o.tcp_established),
            ("tcp_closing", o.tcp_closing),
            ("udp", o.udp),
            ("icmp", o.icmp),
            ("other", o.other),
            ("sctp", o.sctp),
        ] {
            if t > i32::MAX as u32 {
                return Err(bad(format!("flow options: `{name}` {t} is above 2^31 - 1 seconds")));
            }
        }
        if let Some(started) = &r.running {
            let table = &started.router.tables().flows;
            let asked = r.flow_options.unwrap_or_default().entries;
            // What it was given, or what it made of that (`vr_router_get_flow_options`).
            if ![0, asked, table.capacity() as u64].contains(&o.entries) {
                return Err((
                    VrResult::VrInvalidState,
                    format!(
                        "flow options: `entries` is fixed once the router is started (it has {} slots)",
                        table.capacity()
                    ),
                ));
            }
            o.entries = asked;
            table
                .set_live_options(flow_table(&o, table.capacity()).live_options())
                .map_err(|e| {
                    (
                        VrResult::VrInvalidState,
                        format!("flow options: `{}` {}", e.field, e.reason),
                    )
                })?;
        }
        r.flow_options = Some(o);
        Ok(())
    })
}

/// The flow table `o` describes, `entries` slots unless it sets its own.
fn flow_table(o: &VrFlowOptions, entries: usize) -> FlowTableConfig {
    let or = |v: u32, default: u32| if v == 0 { default } else { v };
    let mut cfg = FlowTableConfig::with_capacity(if o.entries == 0 { entries } else { o.entries as usize });
    if o.when_full == VR_FULL_REFUSE {
        cfg.full_policy = FullPolicy::Refuse;
    }
    if o.vrf_quota != 0 {
        cfg.vrf_quota = Some(o.vrf_quota);
        // Every VRF id (below 65536) counted on its own.
        cfg.quota_vrfs = 1 << 16;
    }
    let t = &mut cfg.timeouts;
    t.tcp_established = or(o.tcp_established, t.tcp_established);
    t.tcp_closing = or(o.tcp_closing, t.tcp_closing);
    t.udp = or(o.udp, t.udp);
    t.icmp = or(o.icmp, t.icmp);
    t.other = or(o.other, t.other);
    t.sctp = or(o.sctp, t.sctp);
    cfg
}

/// Adds a VRF (id below 65536).
#[unsafe(no_mangle)]
pub extern "C" fn vr_router_add_vrf(r: *mut VrRouter, vrf: u32) -> VrResult {
    with(r, |r| r.routes.add_vrf(vrf).map_err(|e| bad(e.to_string())))
}

/// Removes VRF `vrf` and its routes (live at the next `vr_router_publish`);
/// VR_INVALID_ARGUMENT if there is none.
#[unsafe(no_mangle)]
pub extern "C" fn vr_router_remove_vrf(r: *mut VrRouter, vrf: u32) -> VrResult {
    with(r, |r| present(r.routes.remove_vrf(vrf), || format!("no VRF {vrf}")))
}

/// A C prefix ("10.0.0.0/8", "fd00::/64") as address and length.
fn prefix(prefix: *const c_char) -> Result<(IpAddr, u8), (VrResult, String)> {
    let p = text(prefix, "prefix")?;
    let (a, l) = p
        .split_once('/')
        .ok_or_else(|| bad(format!("prefix `{p}` is not ADDRESS/LENGTH")))?;
    let a: IpAddr = a.parse().map_err(|_| bad(format!("prefix `{p}`: not an address")))?;
    let l: u8 = l.parse().map_err(|_| bad(format!("prefix `{p}`: bad length")))?;
    Ok((a, l))
}

/// `Ok` if the thing to remove was there, else VR_INVALID_ARGUMENT saying `what`.
fn present(removed: bool, what: impl FnOnce() -> String) -> Result<(), (VrResult, String)> {
    if removed { Ok(()) } else { Err(bad(what())) }
}

/// Adds or replaces the route `prefix` ("10.0.0.0/8", "fd00::/64") in `vrf` to `nexthop`.
#[unsafe(no_mangle)]
pub extern "C" fn vr_router_add_route(r: *mut VrRouter, vrf: u32, prefix: *const c_char, nexthop: u32) -> VrResult {
    with(r, |r| {
        let (a, l) = self::prefix(prefix)?;
        r.routes.add_route(vrf, a, l, nexthop).map_err(|e| bad(e.to_string()))
    })
}

/// Withdraws the route `prefix` from `vrf` (live at the next `vr_router_publish`: flows
/// using it are re-decided on their next packet); VR_INVALID_ARGUMENT if `vrf` has no
/// such route.
#[unsafe(no_mangle)]
pub extern "C" fn vr_router_remove_route(r: *mut VrRouter, vrf: u32, prefix: *const c_char) -> VrResult {
    with(r, |r| {
        let (a, l) = self::prefix(prefix)?;
        present(r.routes.remove_route(vrf, a, l), || {
            format!("no route {a}/{l} in VRF {vrf}")
        })
    })
}

/// Removes nexthop `id` (routes still pointing at it then drop their packets, counted,
/// until given another); VR_INVALID_ARGUMENT if there is none.
#[unsafe(no_mangle)]
pub extern "C" fn vr_router_remove_nexthop(r: *mut VrRouter, id: u32) -> VrResult {
    with(r, |r| {
        present(r.routes.remove_nexthop(id), || format!("no nexthop {id}"))
    })
}

/// Defines nexthop `id`: out of `port` (to the destination itself, or to `gateway` if not
/// NULL).
#[unsafe(no_mangle)]
pub extern "C" fn vr_router_set_nexthop_port(r: *mut VrRouter, id: u32, port: u32, gateway: *const c_char) -> VrResult {
    with(r, |r| {
        let gateway = optional_addr(gateway, "gateway")?;
        r.routes
            .set_nexthop(id, Nexthop::Interface { port, gateway })
            .map_err(|e| bad(e.to_string()))
    })
}

/// Tunnel kinds for `vr_router_set_nexthop_tunnel`.
pub const VR_TUNNEL_VXLAN: u32 = 0;
/// MPLS over UDP (label).
pub const VR_TUNNEL_MPLS_UDP: u32 = 1;
/// MPLS over GRE (label).
pub const VR_TUNNEL_MPLS_GRE: u32 = 2;

/// Defines nexthop `id`: encapsulate (`kind` VR_TUNNEL_*, `key` = VNI or MPLS label) from
/// `src` to `dst` (both IPv4 or both IPv6), the outer packet routed in `underlay_vrf`.
#[unsafe(no_mangle)]
pub extern "C" fn vr_router_set_nexthop_tunnel(
    r: *mut VrRouter,
    id: u32,
    kind: u32,
    key: u32,
    src: *const c_char,
    dst: *const c_char,
    underlay_vrf: u32,
) -> VrResult {
    with(r, |r| {
        let encap = match kind {
            VR_TUNNEL_VXLAN => Encap::Vxlan { vni: key },
            VR_TUNNEL_MPLS_UDP => Encap::MplsOverUdp { label: key },
            VR_TUNNEL_MPLS_GRE => Encap::MplsOverGre { label: key },
            k => return Err(bad(format!("tunnel kind {k} is not a VR_TUNNEL_* value"))),
        };
        let (src, dst) = (addr(src, "src")?, addr(dst, "dst")?);
        let nh = Nexthop::Tunnel {
            encap,
            src,
            dst,
            underlay_vrf,
            router_mac: None,
            dscp: OuterDscp::default(),
            zero_udp_checksum: false,
        };
        r.routes.set_nexthop(id, nh).map_err(|e| bad(e.to_string()))
    })
}

/// Gives VXLAN tunnel nexthop `id` (defined before) the remote VTEP's router MAC (6
/// bytes): the inner destination MAC of its packets where no overlay neighbour names the
/// inner destination's, as a Linux VXLAN device needs (EVPN's router MAC, RFC 9135).
/// NULL clears it. VR_INVALID_ARGUMENT if `id` is not a VXLAN tunnel.
#[unsafe(no_mangle)]
pub extern "C" fn vr_router_set_nexthop_router_mac(r: *mut VrRouter, id: u32, mac_: *const u8) -> VrResult {
    with(r, |r| {
        let mac = if mac_.is_null() { None } else { Some(mac(mac_)?) };
        edit_tunnel(r, id, |nh| {
            if let Nexthop::Tunnel { router_mac, .. } = nh {
                *router_mac = mac;
            }
        })
    })
}

/// `vr_router_set_nexthop_dscp`: the outer DSCP is the inner packet's.
pub const VR_DSCP_INHERIT: i32 = -1;

/// Sets the DSCP of tunnel nexthop `id`'s outer header (defined before; 0 until set): a
/// code point 0-63 on every packet, which keeps tenants' marks out of the underlay, or
/// VR_DSCP_INHERIT, the inner packet's. MPLS labels carry its top three bits as their
/// traffic class. VR_INVALID_ARGUMENT if `id` is not a tunnel or `dscp` is neither.
#[unsafe(no_mangle)]
pub extern "C" fn vr_router_set_nexthop_dscp(r: *mut VrRouter, id: u32, dscp: i32) -> VrResult {
    with(r, |r| {
        let d = match dscp {
            VR_DSCP_INHERIT => OuterDscp::Inherit,
            0..=63 => OuterDscp::Fixed(dscp as u8),
            _ => return Err(bad(format!("DSCP {dscp} is not 0-63 or VR_DSCP_INHERIT"))),
        };
        edit_tunnel(r, id, |nh| {
            if let Nexthop::Tunnel { dscp, .. } = nh {
                *dscp = d;
            }
        })
    })
}

/// Makes IPv6 UDP tunnel nexthop `id` (defined before) send a zero UDP checksum (RFC
/// 6935) when `zero` is true, for receivers that accept one (vrouter does; a Linux VXLAN
/// device with `udp6zerocsumrx`), or compute it (the default). VR_INVALID_ARGUMENT if `id`
/// is not a tunnel, or is MPLSoGRE or over IPv4 (no checksum to leave out).
#[unsafe(no_mangle)]
pub extern "C" fn vr_router_set_nexthop_zero_udp_checksum(r: *mut VrRouter, id: u32, zero: bool) -> VrResult {
    with(r, |r| {
        edit_tunnel(r, id, |nh| {
            if let Nexthop::Tunnel { zero_udp_checksum, .. } = nh {
                *zero_udp_checksum = zero;
            }
        })
    })
}

/// Changes tunnel nexthop `id` by `edit`, checked as a new definition.
fn edit_tunnel(r: &mut VrRouter, id: u32, edit: impl FnOnce(&mut Nexthop)) -> Result<(), (VrResult, String)> {
    let mut nh = match r.routes.nexthop(id) {
        Some(nh @ Nexthop::Tunnel { .. }) => nh.clone(),
        _ => return Err(bad(format!("nexthop {id} is not a tunnel"))),
    };
    edit(&mut nh);
    r.routes.set_nexthop(id, nh).map_err(|e| bad(e.to_string()))
}

/// Defines nexthop `id` as equal-cost multipath over `count` member nexthops (weight 1
/// each; flows stick to their member).
#[unsafe(no_mangle)]
pub extern "C" fn vr_router_set_nexthop_ecmp(r: *mut VrRouter, id: u32, members: *const u32, count: u32) -> VrResult {
    with(r, |r| set_ecmp(r, id, members, None, count))
}

/// Defines nexthop `id` as weighted multipath: member `members[i]` takes a share of the
/// flows in proportion to `weights[i]` (1 to 256), `count` of each; flows stick to their
/// member.
#[unsafe(no_mangle)]
pub extern "C" fn vr_router_set_nexthop_ecmp_weighted(
    r: *mut VrRouter,
    id: u32,
    members: *const u32,
    weights: *const u32,
    count: u32,
) -> VrResult {
    with(r, |r| {
        if weights.is_null() {
            return Err(null("weights"));
        }
        set_ecmp(r, id, members, Some(weights), count)
    })
}

/// [`vr_router_set_nexthop_ecmp`], with weights if given (non-NULL).
fn set_ecmp(
    r: &mut VrRouter,
    id: u32,
    members: *const u32,
    weights: Option<*const u32>,
    count: u32,
) -> Result<(), (VrResult, String)> {
    if members.is_null() {
        return Err(null("members"));
    }
    // SAFETY: `count` readable u32s at `members`, and at `weights` when given (documented).
    let m = unsafe { std::slice::from_raw_parts(members, count as usize) };
    let w = match weights {
        // SAFETY: as above.
        Some(w) => unsafe { std::slice::from_raw_parts(w, count as usize) },
        None => &[],
    };
    let nh = Nexthop::Ecmp {
        members: m
            .iter()
            .enumerate()
            .map(|(i, &x)| (x, w.get(i).copied().unwrap_or(1)))
            .collect(),
    };
    r.routes.set_nexthop(id, nh).map_err(|e| bad(e.to_string()))
}

/// Defines nexthop `id` as a second lookup of the destination in `vrf` (route leaking: a
/// tenant's route into a shared services VRF, say).
#[unsafe(no_mangle)]
pub extern "C" fn vr_router_set_nexthop_lookup_vrf(r: *mut VrRouter, id: u32, vrf: u32) -> VrResult {
    with(r, |r| {
        r.routes
            .set_nexthop(id, Nexthop::VrfTranslate { vrf })
            .map_err(|e| bad(e.to_string()))
    })
}

/// Maps an incoming VXLAN `vni` to `vrf`.
#[unsafe(no_mangle)]
pub extern "C" fn vr_router_set_vni(r: *mut VrRouter, vni: u32, vrf: u32) -> VrResult {
    with(r, |r| r.routes.set_vni(vni, vrf).map_err(|e| bad(e.to_string())))
}

/// Maps an incoming MPLS `label` to `nexthop`.
#[unsafe(no_mangle)]
pub extern "C" fn vr_router_set_label(r: *mut VrRouter, label: u32, nexthop: u32) -> VrResult {
    with(r, |r| {
        r.routes.set_label(label, nexthop).map_err(|e| bad(e.to_string()))
    })
}

/// Unmaps VNI `vni` (its packets are then dropped, counted); VR_INVALID_ARGUMENT if it
/// was not mapped.
#[unsafe(no_mangle)]
pub extern "C" fn vr_router_remove_vni(r: *mut VrRouter, vni: u32) -> VrResult {
    with(r, |r| {
        present(r.routes.remove_vni(vni), || format!("VNI {vni} is not mapped"))
    })
}

/// Unmaps MPLS label `label` (its packets are then dropped, counted); VR_INVALID_ARGUMENT
/// if it was not mapped.
#[unsafe(no_mangle)]
pub extern "C" fn vr_router_remove_label(r: *mut VrRouter, label: u32) -> VrResult {
    with(r, |r| {
        present(r.routes.remove_label(label), || format!("label {label} is not mapped"))
    })
}

/// The MAC (6 bytes) of `ip` on `port`.
#[unsafe(no_mangle)]
pub extern "C" fn vr_router_set_neighbor(r: *mut VrRouter, port: u32, ip: *const c_char, mac_: *const u8) -> VrResult {
    with(r, |r| {
        let n = Neighbor {
            mac: mac(mac_)?,
            state: NeighborState::Reachable,
        };
        r.routes.set_neighbor(port, addr(ip, "ip")?, n);
        Ok(())
    })
}

/// Forgets the MAC of `ip` on `port` given by `vr_router_set_neighbor` (the router then
/// resolves it by ARP or neighbour discovery); VR_INVALID_ARGUMENT if none was given.
#[unsafe(no_mangle)]
pub extern "C" fn vr_router_remove_neighbor(r: *mut VrRouter, port: u32, ip: *const c_char) -> VrResult {
    with(r, |r| {
        let ip = addr(ip, "ip")?;
        present(r.routes.remove_neighbor(port, ip), || {
            format!("no neighbour {ip} on port {port}")
        })
    })
}

/// The MAC (6 bytes) VXLAN packets of VNI `vni` to inner address `ip` are addressed to
/// (an overlay neighbour, per VNI as EVPN's MAC/IP routes are: tenants may share inner
/// addresses). It comes before the tunnel nexthop's router MAC. VR_INVALID_ARGUMENT if
/// `vni` exceeds 24 bits.
#[unsafe(no_mangle)]
pub extern "C" fn vr_router_set_overlay_neighbor(
    r: *mut VrRouter,
    vni: u32,
    ip: *const c_char,
    mac_: *const u8,
) -> VrResult {
    with(r, |r| {
        let n = Neighbor {
            mac: mac(mac_)?,
            state: NeighborState::Reachable,
        };
        r.routes.set_neighbor(overlay_port(vni)?, addr(ip, "ip")?, n);
        Ok(())
    })
}

/// Forgets VNI `vni`'s overlay neighbour `ip`; VR_INVALID_ARGUMENT if there was none.
#[unsafe(no_mangle)]
pub extern "C" fn vr_router_remove_overlay_neighbor(r: *mut VrRouter, vni: u32, ip: *const c_char) -> VrResult {
    with(r, |r| {
        let ip = addr(ip, "ip")?;
        present(r.routes.remove_neighbor(overlay_port(vni)?, ip), || {
            format!("no overlay neighbour {ip} in VNI {vni}")
        })
    })
}

/// VNI `vni`'s overlay neighbour pseudo-port.
fn overlay_port(vni: u32) -> Result<u32, (VrResult, String)> {
    if vni >= 1 << 24 {
        return Err(bad(format!("VNI {vni} exceeds 24 bits")));
    }
    Ok(vrouter::dataplane::pipeline::overlay_neighbor_port(vni))
}

/// Makes the routes, nexthops, labels, VNIs and neighbours set so far live (atomically;
/// flows computed before are re-decided on their next packet). VR_INVALID_STATE while
/// ports added or removed wait for `vr_router_apply_ports`, which publishes them.
#[unsafe(no_mangle)]
pub extern "C" fn vr_router_publish(r: *mut VrRouter) -> VrResult {
    with(r, |r| {
        no_ports_pending(r)?;
        r.routes.publish(&r.fib).map(|_| ()).map_err(|e| bad(e.to_string()))
    })
}

fn action(a: u8) -> Result<Action, (VrResult, String)> {
    Ok(match a {
        VR_ALLOW => Action::Allow,
        VR_DENY => Action::Deny,
        VR_ALLOW_LOG => Action::AllowLog,
        VR_DENY_LOG => Action::DenyLog,
        o => {
            return Err(bad(format!(
                "action {o} is not VR_ALLOW, VR_DENY, VR_ALLOW_LOG or VR_DENY_LOG"
            )));
        }
    })
}

/// Reads one C rule; errors name the rule (index from 0) and field.
fn rule(i: usize, c: &VrRule) -> Result<Rule, (VrResult, String)> {
    let at = |field: &str, (code, why): (VrResult, String)| (code, format!("rules[{i}].{field}: {why}"));
    let prefix = |p: *const c_char, field: &str| -> Result<Option<Arc<AddrSet>>, (VrResult, String)> {
        if p.is_null() {
            return Ok(None);
        }
        let s = text(p, field).map_err(|e| at(field, e))?;
        let c: Cidr = s.parse().map_err(|e| at(field, bad(format!("`{s}`: {e}"))))?;
        Ok(Some(Arc::new(AddrSet::from_cidrs(&[c]))))
    };
    let ports = |lo: u16, hi: u16| (lo, hi) != (0, 0);
    Ok(Rule {
        id: RuleId(i as u32 + 1),
        priority: c.priority,
        action: action(c.action).map_err(|e| at("action", e))?,
        vrf: None,
        src: prefix(c.src, "src")?,
        dst: prefix(c.dst, "dst")?,
        proto: (c.proto != 0).then_some(c.proto),
        src_ports: ports(c.src_port_min, c.src_port_max).then(|| PortRange::new(c.src_port_min, c.src_port_max)),
        dst_ports: ports(c.dst_port_min, c.dst_port_max).then(|| PortRange::new(c.dst_port_min, c.dst_port_max)),
        icmp: match (c.match_icmp_type, c.match_icmp_code) {
            (false, false) => None,
            (false, true) => return Err(bad(format!("rules[{i}].icmp_code: a code needs match_icmp_type"))),
            (true, code) => Some(IcmpMatch {
                kind: c.icmp_type,
                code: code.then_some(c.icmp_code),
            }),
        },
    })
}

/// Sets the rule list of workload port `port` for `direction` (VR_INGRESS or VR_EGRESS):
/// `count` rules from `rules` (first match wins, by priority then order), then
/// `default_action` for what matches none. Replaces that port and direction's previous
/// list; `count` 0 with VR_ALLOW as default opens it again. Checked now (bad prefixes,
/// port ranges, ports without TCP/UDP/SCTP are VR_INVALID_ARGUMENT naming the rule and
/// field); live from the next `vr_router_publish_policy` (or `vr_router_start`). Strings
/// are copied. A workload port without a list for a direction is open in it.
#[unsafe(no_mangle)]
pub extern "C" fn vr_router_set_policy(
    r: *mut VrRouter,
    port: u32,
    direction: u8,
    rules: *const VrRule,
    count: u32,
    default_action: u8,
) -> VrResult {
    with(r, |r| {
        if !matches!(
            r.ports.get(port as usize).map(|p| &p.role),
            Some(PortRole::Workload { .. })
        ) {
            return Err(bad(format!("port {port} is not a workload port")));
        }
        let egress = match direction {
            VR_INGRESS => false,
            VR_EGRESS => true,
            d => return Err(bad(format!("direction {d} is not VR_INGRESS or VR_EGRESS"))),
        };
        if rules.is_null() && count > 0 {
            return Err(null("rules"));
        }
        let given: &[VrRule] = if count == 0 {
            &[]
        } else {
            // SAFETY: non-null (checked) and `count` readable rules (documented).
            unsafe { std::slice::from_raw_parts(rules, count as usize) }
        };
        let list = RuleList {
            rules: given
                .iter()
                .enumerate()
                .map(|(i, c)| rule(i, c))
                .collect::<Result<_, _>>()?,
            default: action(default_action).map_err(|(c, w)| (c, format!("default_action: {w}")))?,
        };
        list.check().map_err(|e| match e.rule {
            Some(id) => bad(format!("rules[{}].{}: {}", id.0 - 1, e.field, e.reason)),
            None => bad(e.to_string()),
        })?;
        if list.rules.is_empty() && list.default == Action::Allow {
            r.policies.remove(&(port, egress));
        } else {
            r.policies.insert((port, egress), list);
        }
        Ok(())
    })
}

/// `vr_router_set_policy_log`: only what rules with a logging action decide is logged.
pub const VR_POLICY_LOG_NONE: u32 = 0;
/// `vr_router_set_policy_log`: every flow a list refuses is logged too.
pub const VR_POLICY_LOG_DENIED: u32 = 1;
/// `vr_router_set_policy_log`: every flow a list decides is logged.
pub const VR_POLICY_LOG_ALL: u32 = 2;

/// Which policy decisions go to the flow log (`vr_router_flow_log`) beside those of
/// `VR_ALLOW_LOG` / `VR_DENY_LOG` rules: `VR_POLICY_LOG_NONE` (the default),
/// `VR_POLICY_LOG_DENIED` (every refused flow, as if each deny said `VR_DENY_LOG`) or
/// `VR_POLICY_LOG_ALL`. Live from the next `vr_router_publish_policy` (or start).
#[unsafe(no_mangle)]
pub extern "C" fn vr_router_set_policy_log(r: *mut VrRouter, what: u32) -> VrResult {
    with(r, |r| {
        r.policy_log = match what {
            VR_POLICY_LOG_NONE => (false, false),
            VR_POLICY_LOG_DENIED => (true, false),
            VR_POLICY_LOG_ALL => (true, true),
            _ => {
                return Err(bad(format!(
                    "policy log {what} is not VR_POLICY_LOG_NONE, VR_POLICY_LOG_DENIED or VR_POLICY_LOG_ALL"
                )));
            }
        };
        Ok(())
    })
}

/// The policy set of the lists given so far: one endpoint per workload port. Refuses a
/// port with lists whose every address another workload port has too (a service address
/// alone): the pipeline tells a shared address's flows apart by the port's own addresses,
/// so those lists could never apply.
fn policy_set(r: &VrRouter) -> Result<PolicySet, (VrResult, String)> {
    let endpoints = r
        .ports
        .iter()
        .enumerate()
        .filter_map(|(i, p)| match &p.role {
            PortRole::Workload { vrf, addrs, .. } => {
                let list = |egress| r.policies.get(&(i as u32, egress)).cloned().map(Arc::new);
                Some(Endpoint {
                    id: EndpointId(i as u32),
                    vrf: *vrf,
                    addrs: addrs.clone(),
                    ingress: list(false),
                    egress: list(true),
                })
            }
            _ => None,
        })
        .collect();
    let set = match r.policy_log {
        (false, false) => PolicySet { endpoints },
        (denied, allowed) => PolicySet { endpoints }.with_logging(denied, allowed),
    };
    if let Some(ep) = set.policed_without_own_address() {
        return Err(bad(format!(
            "port {}: every address is another workload port's too (a service address): its policy lists need an address of its own to tell its flows apart",
            ep.id.0
        )));
    }
    Ok(set)
}

/// Makes the policy lists set so far live, atomically: new flows are decided by them and
/// established flows are re-decided on their next packet (a new deny cuts them).
/// VR_INVALID_STATE while ports wait for `vr_router_apply_ports`, as for routes.
/// VR_INVALID_ARGUMENT, naming the port, for lists on a workload port whose every
/// address another workload port has too (a service address alone: the pipeline tells a
/// shared address's flows apart by the port's own addresses, so they could never apply);
/// the starts and `vr_router_apply_ports` refuse them alike.
#[unsafe(no_mangle)]
pub extern "C" fn vr_router_publish_policy(r: *mut VrRouter) -> VrResult {
    with(r, |r| {
        no_ports_pending(r)?;
        let set = policy_set(r)?;
        started(r)?
            .router
            .tables()
            .policy
            .publish(&set)
            .map(|_| ())
            .map_err(|e| bad(e.to_string()))
    })
}

/// Publishes the routes and starts the router on in-memory ports (one per added port).
/// Drive it with vr_router_push / vr_router_poll / vr_router_pull from one thread.
#[unsafe(no_mangle)]
pub extern "C" fn vr_router_start(r: *mut VrRouter) -> VrResult {
    with(r, |r| {
        not_started(r)?;
        if r.ports.is_empty() {
            return Err((VrResult::VrInvalidState, "add ports first".into()));
        }
        let policy = policy_set(r)?;
        r.routes.publish(&r.fib).map_err(|e| bad(e.to_string()))?;
        let node = r.node();
        let router = Router::with_flow_table(
            node,
            r.fib.clone(),
            flow_table(&r.flow_options.unwrap_or_default(), 1 << 16),
        )
        .map_err(|e| (VrResult::VrInternal, e))?;
        router
            .tables()
            .policy
            .publish(&policy)
            .map_err(|e| bad(e.to_string()))?;
        let (worker, links) = router.memory_worker(1024).map_err(|e| (VrResult::VrInternal, e))?;
        r.held = vec![None; links.len()];
        r.running = Some(Started {
            router,
            mode: Mode::Memory {
                worker: Box::new(worker),
                links,
            },
        });
        Ok(())
    })
}

fn link(r: &mut VrRouter, port: u32) -> Result<Arc<MemoryLink>, (VrResult, String)> {
    let (_, links) = memory(r)?;
    links
        .get(port as usize)
        .cloned()
        .ok_or_else(|| bad(format!("no port {port}")))
}

/// The `n` device names at `devices`.
fn device_names(devices: *const *const c_char, n: u32) -> Result<Vec<String>, (VrResult, String)> {
    if devices.is_null() {
        return Err(null("devices"));
    }
    // SAFETY: non-null (checked), `n` readable pointers (documented by the callers).
    let devs = unsafe { std::slice::from_raw_parts(devices, n as usize) };
    devs.iter().map(|&d| text(d, "device").map(str::to_string)).collect()
}

/// Publishes the routes and starts one pinned worker per CPU of `cpus` (`n_cpus` entries;
/// 0 = all CPUs) over the interfaces `devices` (`n_devices` NUL-terminated names, one per
/// added port, in order), attaching the XDP program (native, generic as a fallback), in
/// the calling thread's network namespace. Needs root (CAP_NET_ADMIN, CAP_BPF,
/// CAP_NET_RAW). Packets then come from the interfaces; push/poll/pull do not apply.
#[unsafe(no_mangle)]
pub extern "C" fn vr_router_start_workers(
    r: *mut VrRouter,
    devices: *const *const c_char,
    n_devices: u32,
    cpus: *const u32,
    n_cpus: u32,
) -> VrResult {
    with(r, |r| {
        not_started(r)?;
        if cpus.is_null() && n_cpus > 0 {
            return Err(null("cpus"));
        }
        let devs = device_names(devices, n_devices)?;
        let cpus = if n_cpus == 0 {
            &[][..]
        } else {
            // SAFETY: non-null (checked) and `n_cpus` readable u32s at `cpus` (documented).
            unsafe { std::slice::from_raw_parts(cpus, n_cpus as usize) }
        };
        let cpus: Vec<usize> = cpus.iter().map(|&c| c as usize).collect();
        let policy = policy_set(r)?;
        r.routes.publish(&r.fib).map_err(|e| bad(e.to_string()))?;
        let node = r.node();
        let router = Router::with_flow_table(
            node,
            r.fib.clone(),
            flow_table(&r.flow_options.unwrap_or_default(), 1 << 20),
        )
        .map_err(|e| (VrResult::VrInternal, e))?;
        router
            .tables()
            .policy
            .publish(&policy)
            .map_err(|e| bad(e.to_string()))?;
        let running = router
            .start_af_xdp(&devs, &cpus, vrouter::af_xdp::AttachMode::Auto)
            .map_err(|e| (VrResult::VrInternal, e))?;
        r.running = Some(Started {
            router,
            mode: Mode::Workers(Box::new(running)),
        });
        Ok(())
    })
}

/// Applies the ports added, changed and removed since the start. On memory ports pass
/// NULL, 0: the routes and policy lists are published and the ports kept (changed or
/// not) keep their queued frames and counters; a new port starts empty. On a router
/// started with workers, pass `devices` (`n_devices` names, one per port, in order); the
/// change is made while the workers run: the new ports' sockets are opened, then the workers stand still between two bursts (a
/// millisecond or so; packets wait in their rings) while the routes and policy lists are
/// published, and go on with the new ports, the same sockets for the ports kept, the same
/// flow table and counters (flows are re-decided on their next packet; learned neighbours
/// follow their port). XDP stays attached to devices still in use. A device that does not
/// exist, or a socket that cannot be opened, is refused (VR_INVALID_ARGUMENT) with the
/// old ports still running. Only when the workers' frame memory is too small for the new
/// port count (more than 8 ports on memory sized for 2) do the workers pause instead, for
/// tens of milliseconds; if they then fail to start on the new ports, the router is
/// stopped (VR_INTERNAL with the reason) and can be started again.
#[unsafe(no_mangle)]
pub extern "C" fn vr_router_apply_ports(r: *mut VrRouter, devices: *const *const c_char, n_devices: u32) -> VrResult {
    with(r, |r| {
        let (policy, node) = (policy_set(r)?, r.node());
        if let Some(Started {
            router,
            mode: Mode::Memory { worker, links },
        }) = r.running.as_mut()
        {
            if n_devices != 0 {
                return Err(bad("memory ports have no devices: pass NULL, 0"));
            }
            let new = router.with_ports(node);
            publish_tables(&mut r.routes, &r.fib, &new, &policy).map_err(bad)?;
            let ports = new
                .change_memory_ports(worker, router, links)
                .map_err(|e| (VrResult::VrInternal, e))?;
            let mut held = std::mem::take(&mut r.held);
            (*links, r.held) = ports
                .into_iter()
                .map(|(l, old)| (l, old.and_then(|i| held.get_mut(i)?.take())))
                .unzip();
            *router = new;
            r.ports_pending = false;
            return Ok(());
        }
        let Some(Started {
            router,
            mode: Mode::Workers(running),
        }) = r.running.as_mut()
        else {
            return Err((VrResult::VrInvalidState, "not started with workers".into()));
        };
        let devs = device_names(devices, n_devices)?;
        if devs.len() != r.ports.len() {
            return Err(bad(format!("{} devices for {} ports", devs.len(), r.ports.len())));
        }
        let router = router.with_ports(node);
        let (routes, fib) = (&mut r.routes, &r.fib);
        // Compiled while the workers run: only the swap happens while they are parked.
        let staged = stage_tables(routes, fib, &router, &policy).map_err(bad)?;
        match running.change_ports(&router, &devs, || install_tables(routes, fib, &router, staged)) {
            Ok(_) => {
                r.ports_pending = false;
                if let Some(s) = r.running.as_mut() {
                    s.router = router;
                }
                return Ok(());
            }
            Err(vrouter::ChangeError::Refused(e)) => return Err(bad(e)),
            Err(vrouter::ChangeError::NeedsPause(_)) => {}
        }
        // While the workers run: a missing device is refused before anything pauses, and
        // the tables are compiled.
        running.attach_ahead(&router, &devs).map_err(bad)?;
        let staged = stage_tables(&r.routes, &r.fib, &router, &policy).map_err(bad)?;
        let Some(Started {
            mode: Mode::Workers(running),
            ..
        }) = r.running.take()
        else {
            unreachable!("matched above");
        };
        let (paused, reports) = (*running).pause();
        let frames = reports.into_iter().try_for_each(|rep| rep.frames_ok);
        r.ports_pending = false;
        let published = install_tables(&mut r.routes, &r.fib, &router, staged);
        let running = published.and_then(|_| paused.resume(&router, &devs).map_err(|(_, e)| e));
        match running {
            Ok(running) => {
                r.running = Some(Started {
                    router,
                    mode: Mode::Workers(Box::new(running)),
                });
                frames.map_err(|e| (VrResult::VrInternal, format!("frame accounting at the pause: {e}")))
            }
            Err(e) => Err((
                VrResult::VrInternal,
                format!("the workers did not start on the new ports: {e}; the router is stopped"),
            )),
        }
    })
}

/// Publishes the routes and the policy lists (for new port numbers, at a port change).
fn publish_tables(routes: &mut FibBuilder, fib: &Fib, router: &Router, policy: &PolicySet) -> Result<(), String> {
    let staged = stage_tables(routes, fib, router, policy)?;
    install_tables(routes, fib, router, staged)
}

/// The routes and policy lists compiled, not yet visible: the slow half of
/// [`publish_tables`], done while the workers run.
fn stage_tables(
    routes: &FibBuilder,
    fib: &Fib,
    router: &Router,
    policy: &PolicySet,
) -> Result<(Prepared, Policy), String> {
    let (policy, _) = router.tables().policy.prepare(policy).map_err(|e| e.to_string())?;
    Ok((routes.prepare(fib), policy))
}

/// Swaps in what [`stage_tables`] compiled: quick, for the workers may stand still.
fn install_tables(
    routes: &mut FibBuilder,
    fib: &Fib,
    router: &Router,
    (tables, policy): (Prepared, Policy),
) -> Result<(), String> {
    routes.install(fib, tables).map_err(|e| e.to_string())?;
    router.tables().policy.install(policy);
    Ok(())
}

/// Stops the router (workers stop and XDP is detached; memory ports are dropped). It can
/// be started again.
#[unsafe(no_mangle)]
pub extern "C" fn vr_router_stop(r: *mut VrRouter) -> VrResult {
    with(r, |r| {
        r.ports_pending = false;
        let s = r
            .running
            .take()
            .ok_or((VrResult::VrInvalidState, "not started".into()))?;
        if let Mode::Workers(running) = s.mode {
            for rep in (*running).stop() {
                rep.frames_ok
                    .map_err(|e| (VrResult::VrInternal, format!("frame accounting: {e}")))?;
            }
        }
        Ok(())
    })
}

/// Queues a frame (`len` bytes at `data`, copied) as received on `port`.
#[unsafe(no_mangle)]
pub extern "C" fn vr_router_push(r: *mut VrRouter, port: u32, data: *const u8, len: usize) -> VrResult {
    with(r, |r| {
        if data.is_null() {
            return Err(null("data"));
        }
        // SAFETY: `len` readable bytes at `data` (documented).
        let frame = unsafe { std::slice::from_raw_parts(data, len) };
        if link(r, port)?.inject(frame) {
            Ok(())
        } else {
            Err((VrResult::VrFull, format!("port {port} input queue full")))
        }
    })
}

/// Processes everything queued (one burst per port per pass, until idle). `*processed`
/// (may be NULL) receives the number of frames handled.
#[unsafe(no_mangle)]
pub extern "C" fn vr_router_poll(r: *mut VrRouter, processed: *mut u64) -> VrResult {
    with(r, |r| {
        let (worker, _) = memory(r)?;
        let mut total = 0u64;
        loop {
            let n = worker.run_once();
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        if !processed.is_null() {
            // SAFETY: non-null, writable (documented).
            unsafe { *processed = total };
        }
        Ok(())
    })
}

/// Takes the next frame sent out of `port` into `buf` (`cap` bytes); `*len` receives its
/// length. VR_EMPTY if none; VR_BUFFER_TOO_SMALL (and `*len` = needed) if it does not fit.
#[unsafe(no_mangle)]
pub extern "C" fn vr_router_pull(r: *mut VrRouter, port: u32, buf: *mut u8, cap: usize, len: *mut usize) -> VrResult {
    with(r, |r| {
        if buf.is_null() || len.is_null() {
            return Err(null("buf or len"));
        }
        let l = link(r, port)?;
        let Some(frame) = r.held[port as usize].take().or_else(|| l.take()) else {
            return Err((VrResult::VrEmpty, String::new()));
        };
        // SAFETY: `len` is non-null and writable (documented).
        unsafe { *len = frame.len() };
        if frame.len() > cap {
            let need = frame.len();
            r.held[port as usize] = Some(frame);
            return Err((VrResult::VrBufferTooSmall, format!("the frame needs {need} bytes")));
        }
        // SAFETY: `cap >= frame.len()` writable bytes at `buf` (documented).
        unsafe { std::ptr::copy_nonoverlapping(frame.as_ptr(), buf, frame.len()) };
        Ok(())
    })
}

/// The route `address` takes in `vrf` and where a new flow to it goes, into `*out`: the
/// longest prefix holding it among the routes as edited, and the way out through the
/// tables as last published (publish first for both to agree); the MAC as forwarding
/// finds it (configured, a workload's own, or learned once started). VR_INVALID_ARGUMENT
/// when no route holds the address or its nexthop does not resolve, naming which. Not
/// counted as a route miss.
#[unsafe(no_mangle)]
pub extern "C" fn vr_router_route_get(
    r: *mut VrRouter,
    vrf: u32,
    address: *const c_char,
    out: *mut VrRoute,
) -> VrResult {
    with(r, |r| {
        if out.is_null() {
            return Err(null("out"));
        }
        let dst = self::addr(address, "address")?;
        let (prefix, len, nexthop) = r
            .routes
            .longest_match(vrf, dst)
            .ok_or_else(|| bad(format!("no route holds {dst} in VRF {vrf}")))?;
        let fib = r.fib.snapshot();
        let resolved = fib
            .resolve_uncounted(vrf, dst, 0)
            .map_err(|m| bad(format!("{prefix}/{len} in VRF {vrf} does not resolve: {m:?}")))?;
        let (port, next_hop) = match resolved.resolution {
            Resolution::Interface { port, next_hop, .. } | Resolution::Tunnel { port, next_hop, .. } => {
                (port as i32, Some((port, next_hop)))
            }
            Resolution::Discard | Resolution::Receive => (-1, None),
        };
        let node = r.node();
        let mac = next_hop.and_then(|(p, ip)| {
            let (learned, config, now) = match r.running.as_ref() {
                Some(st) => {
                    let t = st.router.tables();
                    (
                        t.neighbors.snapshot(),
                        *t.neighbors.config(),
                        t.epoch.elapsed().as_secs() as u32,
                    )
                }
                None => (Default::default(), Default::default(), 0),
            };
            match neighbor_mac(&node, &fib, &learned, &config, p, ip, now) {
                Lookup::Known { mac, .. } | Lookup::Stale(mac) => Some(mac),
                Lookup::Unknown => None,
            }
        });
        let mut text = [0 as c_char; 64];
        for (t, b) in text.iter_mut().zip(format!("{prefix}/{len}").bytes()) {
            *t = b as c_char;
        }
        let route = VrRoute {
            prefix: text,
            nexthop,
            resolved_nexthop: resolved.nexthop,
            port,
            mac_known: u8::from(mac.is_some()),
            mac: mac.map_or([0; 6], |m| m.0),
        };
        // SAFETY: non-null, writable (documented).
        unsafe { *out = route };
        Ok(())
    })
}

/// Current counters.
#[unsafe(no_mangle)]
pub extern "C" fn vr_router_stats(r: *mut VrRouter, out: *mut VrStats) -> VrResult {
    with(r, |r| {
        if out.is_null() {
            return Err(null("out"));
        }
        let st = started(r)?;
        let s = counters(st);
        let flows = st.router.tables().flows.stats();
        let st = VrStats {
            rx: s.rx,
            tx: s.tx,
            dropped: s.dropped(),
            flows: flows.entries,
            originated: s.originated,
            flow_capacity: flows.capacity,
            icmp_errors: s.count_of(Event::IcmpErrors),
            fragmented: s.count_of(Event::Fragmented),
            fragments_made: s.count_of(Event::FragmentsMade),
            mss_clamped: s.count_of(Event::MssClamped),
            path_mtus_learned: s.count_of(Event::PathMtuLearned),
            reassembled: s.count_of(Event::Reassembled),
        };
        // SAFETY: non-null, writable (documented).
        unsafe { *out = st };
        Ok(())
    })
}

/// The started router's counters, its workers' summed.
fn counters(st: &Started) -> vrouter::Stats {
    match &st.mode {
        Mode::Memory { worker, .. } => worker.counters().snapshot(),
        Mode::Workers(running) => vrouter::Stats::sum(&running.stats()),
    }
}

/// Port `port`'s counters and its device's state into `*out` (all workers summed; the
/// first 256 ports are counted). A port added since the last `vr_router_apply_ports`
/// counts nothing yet.
#[unsafe(no_mangle)]
pub extern "C" fn vr_router_port_stats(r: *mut VrRouter, port: u32, out: *mut VrPortStats) -> VrResult {
    with(r, |r| {
        if out.is_null() {
            return Err(null("out"));
        }
        let n = r.ports.len();
        if port as usize >= n.min(vrouter::dataplane::COUNTED_PORTS) {
            return Err(bad(format!(
                "no counted port {port} (the router has {n}; the first 256 are counted)"
            )));
        }
        let s = counters(started(r)?);
        let i = port as usize;
        let st = VrPortStats {
            rx: s.port_rx.get(i).copied().unwrap_or(0),
            tx: s.port_tx.get(i).copied().unwrap_or(0),
            kernel_dropped: s.port_kernel_dropped.get(i).copied().unwrap_or(0),
            state: match s.port_state.get(i).copied().unwrap_or_default() {
                PortState::Up => VR_PORT_UP,
                PortState::Down => VR_PORT_DOWN,
                PortState::Gone => VR_PORT_GONE,
            },
        };
        // SAFETY: non-null (checked), writable (documented).
        unsafe { *out = st };
        Ok(())
    })
}

/// A VRF's live flow entries (`*flows`) and the new flows its quota refused (`*refused`);
/// both 0 when no `vrf_quota` was set.
#[unsafe(no_mangle)]
pub extern "C" fn vr_router_vrf_flows(r: *mut VrRouter, vrf: u32, flows: *mut u64, refused: *mut u64) -> VrResult {
    with(r, |r| {
        if flows.is_null() || refused.is_null() {
            return Err(null("flows or refused"));
        }
        let (n, q) = started(r)?.router.tables().flows.vrf_usage(vrf);
        // SAFETY: both non-null (checked), writable (documented).
        unsafe {
            *flows = u64::from(n);
            *refused = q;
        }
        Ok(())
    })
}

/// The started router's flow table options as they are now, `entries` its slots (for
/// checking what `vr_router_set_flow_options` applied).
#[unsafe(no_mangle)]
pub extern "C" fn vr_router_get_flow_options(r: *mut VrRouter, options: *mut VrFlowOptions) -> VrResult {
    with(r, |r| {
        if options.is_null() {
            return Err(null("options"));
        }
        let table = &started(r)?.router.tables().flows;
        let cfg = table.config();
        let t = cfg.timeouts;
        let o = VrFlowOptions {
            entries: table.capacity() as u64,
            when_full: match cfg.full_policy {
                FullPolicy::Refuse => VR_FULL_REFUSE,
                FullPolicy::EvictExpiredOrClosing => VR_FULL_EVICT,
            },
            vrf_quota: cfg.vrf_quota.unwrap_or(0),
            tcp_established: t.tcp_established,
            tcp_closing: t.tcp_closing,
            udp: t.udp,
            icmp: t.icmp,
            other: t.other,
            sctp: t.sctp,
        };
        // SAFETY: non-null (checked), writable (documented).
        unsafe { *options = o };
        Ok(())
    })
}

/// `vr_router_clear_flows`: every VRF.
pub const VR_ALL_VRFS: u32 = u32::MAX;

/// Deletes the flows of `vrf` (VR_ALL_VRFS: every flow), each with its reverse, so their
/// next packets are decided afresh by policy and routing; `*cleared` gets the entries
/// deleted (a pair is two). Flows still held for their first packet are left.
#[unsafe(no_mangle)]
pub extern "C" fn vr_router_clear_flows(r: *mut VrRouter, vrf: u32, cleared: *mut u64) -> VrResult {
    with(r, |r| {
        if cleared.is_null() {
            return Err(null("cleared"));
        }
        let mut reader = started(r)?
            .router
            .tables()
            .flows
            .reader()
            .ok_or((VrResult::VrInternal, "no flow reader slot".into()))?;
        let (n, _held) = reader.delete_where(|k| vrf == VR_ALL_VRFS || k.vrf == vrf);
        // SAFETY: non-null (checked), writable (documented).
        unsafe { *cleared = n as u64 };
        Ok(())
    })
}

/// Takes the flows that rules with a logging action (`VR_ALLOW_LOG`, `VR_DENY_LOG`)
/// decided since the last call, oldest first: `cb(ctx, line)` once each (the line valid
/// only during the call: the flow, `allowed` or `denied`, and each list's decision, as
/// in `vrf 1 10.0.1.2 40000 -> 10.0.2.2 53 proto 17 denied: ingress of port 1 rule 1
/// deny-log`). `*lost` (may be NULL) gets the records lost so far to a full log (4096
/// are kept): call it often enough.
#[unsafe(no_mangle)]
pub extern "C" fn vr_router_flow_log(
    r: *mut VrRouter,
    cb: Option<extern "C" fn(*mut std::ffi::c_void, *const c_char)>,
    ctx: *mut std::ffi::c_void,
    lost: *mut u64,
) -> VrResult {
    with(r, |r| {
        let cb = cb.ok_or(null("cb"))?;
        let log = &started(r)?.router.tables().flow_log;
        while let Some(record) = log.pop() {
            let line = record.describe(|ep| format!("port {}", ep.0), vrouter::dataplane::flowlog::rule_number);
            if let Ok(c) = CString::new(line) {
                cb(ctx, c.as_ptr());
            }
        }
        if !lost.is_null() {
            // SAFETY: non-null, writable (documented).
            unsafe { *lost = log.lost() };
        }
        Ok(())
    })
}

/// `rule` of `vr_router_policy_flows`'s callback for a list's default.
pub const VR_RULE_DEFAULT: i64 = -1;

/// Calls `cb(ctx, port, direction, rule, action, flows)` for each decision of each
/// workload port's rule lists as last published: each rule in evaluation order (`rule`
/// is its index in the array given to `vr_router_set_policy`, plus one), then the
/// default (`VR_RULE_DEFAULT`), with its action (`VR_ALLOW`, ...) and the flows it
/// decided (a new flow, or one decided again after a change, counts once): which rule
/// stops a flow.
#[unsafe(no_mangle)]
pub extern "C" fn vr_router_policy_flows(
    r: *mut VrRouter,
    cb: Option<extern "C" fn(*mut std::ffi::c_void, u32, u8, i64, u8, u64)>,
    ctx: *mut std::ffi::c_void,
) -> VrResult {
    with(r, |r| {
        let cb = cb.ok_or(null("cb"))?;
        let policy = started(r)?.router.tables().policy.load();
        for port in 0..r.ports.len() as u32 {
            for (dir, code) in [(Direction::Ingress, VR_INGRESS), (Direction::Egress, VR_EGRESS)] {
                let Some(t) = policy.table(EndpointId(port), dir) else {
                    continue;
                };
                for (d, n) in t.counted() {
                    let rule = d.rule.map_or(VR_RULE_DEFAULT, |id| i64::from(id.0));
                    let action = match d.action {
                        Action::Allow => VR_ALLOW,
                        Action::Deny => VR_DENY,
                        Action::AllowLog => VR_ALLOW_LOG,
                        Action::DenyLog => VR_DENY_LOG,
                    };
                    cb(ctx, port, code, rule, action, n);
                }
            }
        }
        Ok(())
    })
}

/// Calls `cb(ctx, name, description, count)` once per drop reason, in a fixed order,
/// with the packets dropped for it so far (all workers summed): `name` as `vrouter ctl
/// show drops` prints it ("Spoofed", "PolicyDenied", ...), `description` a sentence for
/// operators; both valid only during the call. Every reason comes, dropped for or not.
#[unsafe(no_mangle)]
pub extern "C" fn vr_router_drops(
    r: *mut VrRouter,
    cb: Option<extern "C" fn(*mut std::ffi::c_void, *const c_char, *const c_char, u64)>,
    ctx: *mut std::ffi::c_void,
) -> VrResult {
    with(r, |r| {
        let cb = cb.ok_or(null("cb"))?;
        let s = counters(started(r)?);
        for &reason in vrouter::DropReason::ALL {
            let (name, what) = (CString::new(format!("{reason:?}")), CString::new(reason.description()));
            if let (Ok(name), Ok(what)) = (name, what) {
                cb(ctx, name.as_ptr(), what.as_ptr(), s.dropped_for(reason));
            }
        }
        Ok(())
    })
}

/// Calls `cb(ctx, line)` once per live flow with a one-line text description (valid only
/// during the call).
#[unsafe(no_mangle)]
pub extern "C" fn vr_router_dump_flows(
    r: *mut VrRouter,
    cb: Option<extern "C" fn(*mut std::ffi::c_void, *const c_char)>,
    ctx: *mut std::ffi::c_void,
) -> VrResult {
    with(r, |r| {
        let cb = cb.ok_or(null("cb"))?;
        let router = &started(r)?.router;
        let reader = router
            .tables()
            .flows
            .reader()
            .ok_or((VrResult::VrInternal, "no flow reader slot".into()))?;
        reader.for_each(|f| {
            let line = format!("{} {:?} packets {}", f.key, f.action.verdict, f.packets);
            if let Ok(c) = CString::new(line) {
                cb(ctx, c.as_ptr());
            }
        });
        Ok(())
    })
}
