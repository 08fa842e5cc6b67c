//! The router's TOML configuration: ports, VRFs, nexthops (interface, tunnel, ECMP),
//! routes, neighbours, VNIs, labels, tunnel endpoints, CPUs, a kernel routing table to
//! follow. Checked as a whole before anything starts; every error names the line, the
//! field and the reason.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use serde::Deserialize;
use std::sync::Arc;
use toml::Spanned;

use crate::k8s;
use crate::kernel_routes::{KernelRoutes, PROTOCOLS, PortDevice};
use vrouter::fib::{Encap, FibBuilder, MAX_ECMP_WEIGHT, Neighbor, NeighborState, Nexthop, OuterDscp};
use vrouter::flow::{FlowTable, FlowTableConfig, FullPolicy, LiveOptions};
use vrouter::policy::k8s::{ContainerPort, check_port_name, protocol};
use vrouter::policy::{
    Action, AddrSet, Cidr, Endpoint, EndpointId, IcmpMatch, PROTO_SCTP, Policy, PolicySet, PortRange, Rule, RuleId,
    RuleList,
};
use vrouter::wire::ethernet::MacAddr;
use vrouter::{MssClamp, NodeConfig, PortConfig, PortRole};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    cpus: Vec<usize>,
    metrics: Option<Spanned<String>>,
    flows: Option<FlowsDef>,
    routing: Option<RoutingDef>,
    #[serde(default)]
    tunnel_endpoints: Vec<Spanned<String>>,
    /// `accept` (the default) or `refuse` UDP tunnel packets over IPv6 without a checksum.
    ipv6_zero_udp_checksum: Option<Spanned<String>>,
    /// `path` (the default), `off`, or a number: the MSS TCP SYNs may announce.
    tcp_mss_clamp: Option<Spanned<MssSetting>>,
    /// `none` (the default), `denied` or `all`: the flows policy decisions log, beside
    /// those of `allow-log` / `deny-log` rules.
    policy_log: Option<Spanned<String>>,
    #[serde(default)]
    vrf: Vec<Spanned<VrfDef>>,
    #[serde(default)]
    port: Vec<Spanned<PortDef>>,
    #[serde(default)]
    nexthop: Vec<Spanned<NexthopDef>>,
    #[serde(default)]
    route: Vec<Spanned<RouteDef>>,
    #[serde(default)]
    neighbor: Vec<Spanned<NeighborDef>>,
    #[serde(default)]
    vni: Vec<Spanned<VniDef>>,
    #[serde(default)]
    label: Vec<Spanned<LabelDef>>,
    #[serde(default)]
    policy: Vec<Spanned<PolicyDef>>,
    /// Kubernetes NetworkPolicy YAML files (instead of `[[policy]]`).
    #[serde(default)]
    network_policies: Vec<Spanned<String>>,
    #[serde(default)]
    namespace: Vec<Spanned<NamespaceDef>>,
    #[serde(default)]
    pod: Vec<Spanned<PodDef>>,
    #[serde(default)]
    kernel_routes: Vec<Spanned<KernelRoutesDef>>,
}

/// A `[[kernel_routes]]` table: a kernel routing table followed into a VRF.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KernelRoutesDef {
    /// A table number, `main` or `default`.
    table: Option<toml::Value>,
    #[serde(default)]
    vrf: u32,
    /// Protocol numbers or names; all when absent.
    #[serde(default)]
    protocols: Vec<toml::Value>,
}

/// The `[routing]` table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoutingDef {
    /// Spare route tables kept per family ([`vrouter::fib::Fib::set_max_spares`]).
    spare_tables: Option<usize>,
}

/// The `[flows]` table: the flow table's size, what a full table does, per-VRF quotas and
/// idle timeouts.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FlowsDef {
    entries: Option<Spanned<u64>>,
    when_full: Option<Spanned<String>>,
    vrf_quota: Option<Spanned<u64>>,
    timeouts: Option<TimeoutsDef>,
}

/// Idle timeouts in seconds, per flow class.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TimeoutsDef {
    tcp_established: Option<Spanned<u64>>,
    tcp_closing: Option<Spanned<u64>>,
    udp: Option<Spanned<u64>>,
    sctp: Option<Spanned<u64>>,
    icmp: Option<Spanned<u64>>,
    other: Option<Spanned<u64>>,
}

/// A namespace's labels, for `namespaceSelector`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NamespaceDef {
    name: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// A pod, for NetworkPolicy selectors: on this node when it names its workload port.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PodDef {
    name: String,
    #[serde(default = "default_namespace")]
    namespace: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    addresses: Vec<String>,
    port: Option<String>,
    /// Its named container ports, which NetworkPolicy `ports` may name.
    #[serde(default)]
    container_ports: Vec<ContainerPortDef>,
}

/// A named container port (`containers[].ports[]` of the pod spec).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ContainerPortDef {
    name: String,
    port: i64,
    protocol: Option<String>,
}

fn default_namespace() -> String {
    "default".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyDef {
    endpoint: String,
    direction: String,
    #[serde(default = "allow")]
    default: String,
    #[serde(default)]
    rule: Vec<RuleDef>,
}

fn allow() -> String {
    "allow".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDef {
    #[serde(default)]
    priority: u32,
    action: String,
    proto: Option<String>,
    src_ports: Option<String>,
    dst_ports: Option<String>,
    #[serde(default)]
    src: Vec<String>,
    #[serde(default)]
    dst: Vec<String>,
    icmp_type: Option<u8>,
    icmp_code: Option<u8>,
}

/// `tcp_mss_clamp`: a word or a number.
#[derive(Deserialize)]
#[serde(untagged)]
enum MssSetting {
    Word(String),
    Bytes(i64),
}

/// The MSS values `tcp_mss_clamp` may fix: from IPv4's default (RFC 879) to a jumbo frame's.
const MSS_VALUES: std::ops::RangeInclusive<i64> = 536..=8960;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VrfDef {
    id: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PortDef {
    name: String,
    device: String,
    kind: String,
    vrf: u32,
    mac: String,
    mtu: Option<u16>,
    #[serde(default)]
    addresses: Vec<String>,
    workload_mac: Option<String>,
    #[serde(default)]
    workload_addresses: Vec<String>,
    #[serde(default)]
    gateways: Vec<String>,
    host_mac: Option<String>,
    /// The 802.1Q VLAN of the port's frames (1-4094), for a port on a trunk.
    vlan: Option<u16>,
}

/// A port's MTU when neither the file nor its device says.
const DEFAULT_MTU: u16 = 1500;
/// The MTUs a port may have.
const MTUS: std::ops::RangeInclusive<u16> = 576..=9000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NexthopDef {
    id: u32,
    port: Option<String>,
    gateway: Option<String>,
    tunnel: Option<String>,
    key: Option<u32>,
    src: Option<String>,
    dst: Option<String>,
    #[serde(default)]
    underlay_vrf: u32,
    router_mac: Option<String>,
    /// `inherit` or a code point 0-63.
    dscp: Option<toml::Value>,
    /// `zero` or `computed` (the default).
    udp_checksum: Option<String>,
    ecmp: Option<Vec<u32>>,
    weights: Option<Vec<u32>>,
    lookup_vrf: Option<u32>,
    #[serde(default)]
    discard: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteDef {
    vrf: u32,
    prefix: String,
    nexthop: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NeighborDef {
    /// The port the neighbour is on, or (exactly one of the two) the VNI it is an overlay
    /// entry of: VXLAN's inner destination MAC for `ip` in that VNI.
    port: Option<String>,
    vni: Option<u32>,
    ip: String,
    mac: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VniDef {
    vni: u32,
    vrf: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LabelDef {
    label: u32,
    nexthop: u32,
}

/// Flow table slots without `[flows] entries`: 2^20, about 100 MB, about 400K flows (a
/// flow is two entries; inserts may be refused from about 80% of the slots).
const DEFAULT_FLOW_ENTRIES: usize = 1 << 20;
/// The flow table's own limit.
const MAX_FLOW_ENTRIES: u64 = 1 << 30;

/// A checked configuration, ready to start.
pub struct Config {
    /// The node's ports and tunnel endpoints.
    pub node: NodeConfig,
    /// Interface (or TAP) name per port, in order.
    pub devices: Vec<String>,
    /// Worker CPUs (empty: all).
    pub cpus: Vec<usize>,
    /// The routing state, checked, to publish.
    pub routes: FibBuilder,
    /// Readable listings of what was configured, for `vrouter ctl show`.
    pub listing: Listing,
    /// Where to serve Prometheus metrics (a loopback address), if anywhere.
    pub metrics: Option<std::net::SocketAddr>,
    /// The flow table: slots (a flow takes two: forward and reverse), full policy, per-VRF
    /// quota, idle timeouts.
    pub flows: FlowTableConfig,
    /// Per-workload policies (an endpoint per workload port; no `[[policy]]`: all open).
    pub policy: PolicySet,
    /// Spare route tables kept per family, for route changes to patch into (`None`: one
    /// per big table running).
    pub spare_tables: Option<usize>,
    /// Kernel routing tables to follow, each into a VRF of its own
    /// ([`crate::kernel_routes`]).
    pub kernel_routes: Vec<KernelRoutes>,
    /// Per port: whether the file gave its MTU (else it is its device's, once
    /// [`Config::take_device_mtus`] has read them).
    mtu_given: Vec<bool>,
}

impl Config {
    /// Gives each port without an `mtu` in the file its device's (`mtu_of`), where the
    /// device exists and its MTU is one a port may have. A port whose `mtu` is above its
    /// device's would have the device drop what the router sends it between the two:
    /// a warning for each, to log.
    pub fn take_device_mtus(&mut self, mtu_of: impl Fn(&str) -> Option<u16>) -> Vec<String> {
        let mut warnings = Vec::new();
        for ((p, device), given) in self.node.ports.iter_mut().zip(&self.devices).zip(&self.mtu_given) {
            match mtu_of(device) {
                Some(m) if !given && MTUS.contains(&m) => p.mtu = m,
                Some(m) if *given && p.mtu > m => warnings.push(format!(
                    "port {}: mtu {} is above its device {device}'s {m}: the device drops longer packets (lower `mtu`, or leave it out to take the device's)",
                    p.name, p.mtu
                )),
                _ => {}
            }
        }
        warnings
    }

    /// The ports' names by number, for the nexthops commands add ([`crate::dynamic`]).
    pub fn port_names(&self) -> Vec<String> {
        self.node.ports.iter().map(|p| p.name.clone()).collect()
    }

    /// The ports with their devices, for the kernel routes follower.
    pub fn port_devices(&self) -> Vec<PortDevice> {
        self.node
            .ports
            .iter()
            .zip(&self.devices)
            .map(|(p, d)| PortDevice {
                name: p.name.clone(),
                device: d.clone(),
                host: matches!(p.role, PortRole::Host { .. }),
            })
            .collect()
    }
}

/// `show vrfs|routes|nexthops|neighbors|labels|vnis` text, one line per item.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// One line per VRF.
    pub vrfs: Vec<String>,
    /// One line per route.
    pub routes: Vec<String>,
    /// One line per nexthop.
    pub nexthops: Vec<String>,
    /// One line per configured neighbour.
    pub neighbors: Vec<String>,
    /// One line per MPLS label.
    pub labels: Vec<String>,
    /// One line per VXLAN VNI.
    pub vnis: Vec<String>,
    /// Where each NetworkPolicy rule id came from (`db ingress[0]`, `the node`); empty
    /// for `[[policy]]` lists, whose rules are numbered by their place in the list.
    pub rule_origins: std::collections::BTreeMap<u32, String>,
}

struct Ctx<'a> {
    text: &'a str,
    path: &'a str,
}

impl Ctx<'_> {
    fn line(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())].matches('\n').count() + 1
    }

    fn err(&self, at: usize, what: &str, field: &str, reason: impl std::fmt::Display) -> String {
        format!("{}:{}: {what}: field `{field}`: {reason}", self.path, self.line(at))
    }
}

/// A nexthop as the file or a `nexthop add` command gives it: an interface by its port's
/// name, which a reload that renumbers the ports keeps it on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NexthopSpec {
    /// Out of the port named, to `gateway` or (without) straight to the destination.
    Port {
        /// The port's name.
        name: String,
        /// The next-hop router, if not on-link.
        gateway: Option<IpAddr>,
    },
    /// A tunnel, checked when read ([`tunnel`]).
    Tunnel(Nexthop),
    /// ECMP over these nexthops, with their weights.
    Ecmp(Vec<(u32, u32)>),
    /// Look the destination up again in this VRF (route leaking: a tenant's route into
    /// a shared services VRF, say).
    LookupVrf(u32),
    /// Drop.
    Discard,
}

/// Checks an ECMP member's weight: 1 to [`MAX_ECMP_WEIGHT`] (the builder refuses others;
/// this names the field).
pub fn weight(w: u32) -> Result<u32, String> {
    if (1..=MAX_ECMP_WEIGHT).contains(&w) {
        Ok(w)
    } else {
        Err(format!("weight {w} is outside 1..={MAX_ECMP_WEIGHT}"))
    }
}

impl NexthopSpec {
    /// The nexthop, its port found by `port_index`; `no port named ...` if not.
    pub fn build(&self, port_index: impl Fn(&str) -> Option<u32>) -> Result<Nexthop, String> {
        Ok(match self {
            NexthopSpec::Port { name, gateway } => Nexthop::Interface {
                port: port_index(name).ok_or_else(|| format!("no port named `{name}`"))?,
                gateway: *gateway,
            },
            NexthopSpec::Tunnel(t) => t.clone(),
            NexthopSpec::Ecmp(m) => Nexthop::Ecmp { members: m.clone() },
            NexthopSpec::LookupVrf(vrf) => Nexthop::VrfTranslate { vrf: *vrf },
            NexthopSpec::Discard => Nexthop::Discard,
        })
    }

    /// `show nexthops`' line for nexthop `id`: the id, then [`NexthopSpec::words`].
    pub fn describe(&self, id: u32) -> String {
        format!("{id}: {}", self.words())
    }

    /// As a `nexthop add N ...` command writes it (what `dynamic::parse` reads back).
    pub fn words(&self) -> String {
        match self {
            NexthopSpec::Port { name, gateway } => {
                format!(
                    "port {name}{}",
                    gateway.map_or(String::new(), |g| format!(" gateway {g}"))
                )
            }
            NexthopSpec::Tunnel(Nexthop::Tunnel {
                encap,
                src,
                dst,
                underlay_vrf,
                router_mac,
                dscp,
                zero_udp_checksum,
            }) => {
                let (kind, key) = match *encap {
                    Encap::Vxlan { vni } => ("vxlan", vni),
                    Encap::MplsOverUdp { label } => ("mpls-udp", label),
                    Encap::MplsOverGre { label } => ("mpls-gre", label),
                };
                let mut words = format!("tunnel {kind} key {key} src {src} dst {dst}");
                if *underlay_vrf != 0 {
                    words += &format!(" underlay_vrf {underlay_vrf}");
                }
                if let Some(m) = router_mac {
                    words += &format!(" router_mac {m}");
                }
                if *dscp != OuterDscp::Fixed(0) {
                    words += &format!(" dscp {dscp}");
                }
                if *zero_udp_checksum {
                    words += " udp_checksum zero";
                }
                words
            }
            NexthopSpec::Tunnel(other) => format!("{other:?}"),
            NexthopSpec::Ecmp(m) => {
                let members: Vec<String> = m
                    .iter()
                    .map(|&(id, w)| if w == 1 { id.to_string() } else { format!("{id}:{w}") })
                    .collect();
                format!("ecmp {}", members.join(","))
            }
            NexthopSpec::LookupVrf(vrf) => format!("lookup_vrf {vrf}"),
            NexthopSpec::Discard => "discard".into(),
        }
    }
}

/// A tunnel nexthop's optional settings, as the file's fields and the command's words
/// name them.
#[derive(Debug, Clone, Copy, Default)]
pub struct TunnelOptions {
    /// Where the outer destination is routed.
    pub underlay_vrf: u32,
    /// VXLAN: the remote VTEP's MAC for the inner header.
    pub router_mac: Option<MacAddr>,
    /// The outer header's DSCP.
    pub dscp: OuterDscp,
    /// Over IPv6, a zero UDP checksum (`udp_checksum zero`).
    pub zero_udp_checksum: bool,
}

/// `udp_checksum`'s value: `zero` (true) or `computed`.
pub(crate) fn parse_udp_checksum(s: &str) -> Result<bool, String> {
    match s {
        "zero" => Ok(true),
        "computed" => Ok(false),
        _ => Err(format!("`{s}` is not zero or computed")),
    }
}

/// A tunnel nexthop, as the file's `tunnel` tables and the `nexthop add` command give it:
/// `kind` is vxlan, mpls-udp or mpls-gre, `key` its VNI or label. On error, the field at
/// fault and why.
pub fn tunnel(
    kind: &str,
    key: u32,
    src: IpAddr,
    dst: IpAddr,
    options: TunnelOptions,
) -> Result<Nexthop, (&'static str, String)> {
    let TunnelOptions {
        underlay_vrf,
        router_mac,
        dscp,
        zero_udp_checksum,
    } = options;
    let encap = match kind {
        "vxlan" => Encap::Vxlan { vni: key },
        "mpls-udp" => Encap::MplsOverUdp { label: key },
        "mpls-gre" => Encap::MplsOverGre { label: key },
        other => return Err(("tunnel", format!("`{other}` is not vxlan, mpls-udp or mpls-gre"))),
    };
    encap.check().map_err(|r| ("key", r))?;
    if src.is_ipv4() != dst.is_ipv4() {
        return Err(("dst", format!("{dst} is not of the family of src {src}")));
    }
    if router_mac.is_some() && kind != "vxlan" {
        return Err((
            "router_mac",
            format!("only a vxlan tunnel carries an inner Ethernet header, not {kind}"),
        ));
    }
    if zero_udp_checksum && kind == "mpls-gre" {
        return Err(("udp_checksum", "an mpls-gre tunnel has no UDP checksum".into()));
    }
    if zero_udp_checksum && src.is_ipv4() {
        return Err((
            "udp_checksum",
            "over IPv4 a tunnel's UDP checksum is zero anyway".into(),
        ));
    }
    Ok(Nexthop::Tunnel {
        encap,
        src,
        dst,
        underlay_vrf,
        router_mac,
        dscp,
        zero_udp_checksum,
    })
}

fn parse_ip(s: &str) -> Result<IpAddr, String> {
    s.parse().map_err(|_| format!("`{s}` is not an IP address"))
}

pub(crate) fn parse_mac(s: &str) -> Result<MacAddr, String> {
    let parts: Vec<u8> = s
        .split(':')
        .map(|p| u8::from_str_radix(p, 16))
        .collect::<Result<_, _>>()
        .map_err(|_| format!("`{s}` is not a MAC address"))?;
    let a: [u8; 6] = parts
        .try_into()
        .map_err(|_| format!("`{s}` is not a MAC address (six hex bytes)"))?;
    Ok(MacAddr(a))
}

/// Reads and checks `text` (from `path`, for messages).
pub fn parse(path: &str, text: &str) -> Result<Config, String> {
    let cx = Ctx { text, path };
    let f: File = toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(0, |s| cx.line(s.start));
        format!("{path}:{line}: {}", e.message())
    })?;
    let mut b = FibBuilder::new();
    b.add_vrf(0).expect("VRF 0");
    for v in &f.vrf {
        if v.get_ref().id != 0 {
            b.add_vrf(v.get_ref().id)
                .map_err(|e| cx.err(v.span().start, "vrf", "id", e))?;
        }
    }
    let mut ports = Vec::new();
    let mut devices = Vec::new();
    let mut mtu_given = Vec::new();
    let mut index: HashMap<String, u32> = HashMap::new();
    for (i, sp) in f.port.iter().enumerate() {
        let (p, at) = (sp.get_ref(), sp.span().start);
        let what = format!("port `{}`", p.name);
        let e = |field: &str, reason: String| cx.err(at, &what, field, reason);
        if index.insert(p.name.clone(), i as u32).is_some() {
            return Err(e("name", "defined twice".into()));
        }
        if devices.contains(&p.device) {
            return Err(e("device", format!("`{}` is used by another port", p.device)));
        }
        let ips = |field: &str, v: &[String]| {
            v.iter()
                .map(|s| parse_ip(s).map_err(|r| e(field, r)))
                .collect::<Result<Vec<_>, _>>()
        };
        let role = match p.kind.as_str() {
            "fabric" => PortRole::Fabric { vrf: p.vrf },
            "workload" => {
                let mac = p
                    .workload_mac
                    .as_deref()
                    .ok_or_else(|| e("workload_mac", "required for a workload port".into()))?;
                if p.workload_addresses.is_empty() {
                    return Err(e(
                        "workload_addresses",
                        "a workload port needs the workload's addresses".into(),
                    ));
                }
                PortRole::Workload {
                    vrf: p.vrf,
                    addrs: ips("workload_addresses", &p.workload_addresses)?,
                    mac: parse_mac(mac).map_err(|r| e("workload_mac", r))?,
                    gateways: ips("gateways", &p.gateways)?,
                }
            }
            "host" => PortRole::Host {
                vrf: p.vrf,
                mac: parse_mac(
                    p.host_mac
                        .as_deref()
                        .ok_or_else(|| e("host_mac", "required for a host port".into()))?,
                )
                .map_err(|r| e("host_mac", r))?,
            },
            other => return Err(e("kind", format!("`{other}` is not fabric, workload or host"))),
        };
        if let (PortRole::Host { .. }, Some(first)) = (
            &role,
            ports
                .iter()
                .find(|q: &&PortConfig| matches!(q.role, PortRole::Host { .. })),
        ) {
            return Err(e(
                "kind",
                format!(
                    "a second host port: the router has one exception path (`{}`)",
                    first.name
                ),
            ));
        }
        if p.vrf != 0 && !f.vrf.iter().any(|v| v.get_ref().id == p.vrf) {
            return Err(e("vrf", format!("VRF {} is not defined in a [[vrf]] table", p.vrf)));
        }
        if let Some(m) = p.mtu
            && !MTUS.contains(&m)
        {
            return Err(e("mtu", format!("{m} is outside 576..=9000")));
        }
        if let Some(v) = p.vlan
            && !(1..=4094).contains(&v)
        {
            return Err(e("vlan", format!("{v} is outside 1..=4094")));
        }
        ports.push(PortConfig {
            name: p.name.clone(),
            mac: parse_mac(&p.mac).map_err(|r| e("mac", r))?,
            mtu: p.mtu.unwrap_or(DEFAULT_MTU),
            addrs: ips("addresses", &p.addresses)?,
            vlan: p.vlan,
            role,
        });
        devices.push(p.device.clone());
        mtu_given.push(p.mtu.is_some());
    }
    if ports.is_empty() {
        return Err(format!("{path}: no [[port]] defined"));
    }
    let port_of = |name: &str, at: usize, what: &str| {
        index
            .get(name)
            .copied()
            .ok_or_else(|| cx.err(at, what, "port", format!("no port named `{name}`")))
    };
    let mut ids = HashMap::new();
    let mut described = Vec::with_capacity(f.nexthop.len());
    for sp in &f.nexthop {
        let (n, at) = (sp.get_ref(), sp.span().start);
        let what = format!("nexthop {}", n.id);
        let e = |field: &str, reason: String| cx.err(at, &what, field, reason);
        if ids.insert(n.id, ()).is_some() {
            return Err(e("id", "defined twice".into()));
        }
        let kinds = [
            n.port.is_some(),
            n.tunnel.is_some(),
            n.ecmp.is_some(),
            n.lookup_vrf.is_some(),
            n.discard,
        ]
        .iter()
        .filter(|&&k| k)
        .count();
        if kinds != 1 {
            return Err(e(
                "port",
                "exactly one of `port`, `tunnel`, `ecmp`, `lookup_vrf`, `discard` must be given".into(),
            ));
        }
        if n.weights.is_some() && n.ecmp.is_none() {
            return Err(e("weights", "only an `ecmp` group has weights".into()));
        }
        if n.router_mac.is_some() && n.tunnel.is_none() {
            return Err(e("router_mac", "only a vxlan `tunnel` has a router MAC".into()));
        }
        if n.dscp.is_some() && n.tunnel.is_none() {
            return Err(e("dscp", "only a `tunnel` has an outer DSCP".into()));
        }
        if n.udp_checksum.is_some() && n.tunnel.is_none() {
            return Err(e("udp_checksum", "only a `tunnel` has a UDP checksum".into()));
        }
        let spec = if let Some(port) = &n.port {
            let gateway = n
                .gateway
                .as_deref()
                .map(parse_ip)
                .transpose()
                .map_err(|r| e("gateway", r))?;
            NexthopSpec::Port {
                name: port.clone(),
                gateway,
            }
        } else if let Some(t) = &n.tunnel {
            let key = n
                .key
                .ok_or_else(|| e("key", "a tunnel needs `key` (VNI or MPLS label)".into()))?;
            let end = |field: &'static str, v: &Option<String>| {
                parse_ip(
                    v.as_deref()
                        .ok_or_else(|| e(field, format!("a tunnel needs `{field}`")))?,
                )
                .map_err(|r| e(field, r))
            };
            let (src, dst) = (end("src", &n.src)?, end("dst", &n.dst)?);
            if !b.has_vrf(n.underlay_vrf) {
                return Err(e(
                    "underlay_vrf",
                    format!("VRF {} is not defined in a [[vrf]] table", n.underlay_vrf),
                ));
            }
            let router_mac = n
                .router_mac
                .as_deref()
                .map(parse_mac)
                .transpose()
                .map_err(|r| e("router_mac", r))?;
            let dscp = match &n.dscp {
                None => OuterDscp::default(),
                Some(toml::Value::String(s)) => s.parse().map_err(|r| e("dscp", r))?,
                Some(toml::Value::Integer(i)) => i.to_string().parse().map_err(|r| e("dscp", r))?,
                Some(other) => return Err(e("dscp", format!("`{other}` is not `inherit` or a DSCP 0-63"))),
            };
            let zero_udp_checksum = n
                .udp_checksum
                .as_deref()
                .map(parse_udp_checksum)
                .transpose()
                .map_err(|r| e("udp_checksum", r))?
                .unwrap_or(false);
            let options = TunnelOptions {
                underlay_vrf: n.underlay_vrf,
                router_mac,
                dscp,
                zero_udp_checksum,
            };
            NexthopSpec::Tunnel(tunnel(t, key, src, dst, options).map_err(|(field, r)| e(field, r))?)
        } else if let Some(m) = &n.ecmp {
            let weights = match &n.weights {
                None => vec![1; m.len()],
                Some(w) if w.len() == m.len() => w
                    .iter()
                    .map(|&w| weight(w))
                    .collect::<Result<_, _>>()
                    .map_err(|r| e("weights", r))?,
                Some(w) => return Err(e("weights", format!("{} weights for {} members", w.len(), m.len()))),
            };
            NexthopSpec::Ecmp(m.iter().copied().zip(weights).collect())
        } else if let Some(vrf) = n.lookup_vrf {
            if !b.has_vrf(vrf) {
                return Err(e("lookup_vrf", format!("VRF {vrf} is not defined in a [[vrf]] table")));
            }
            NexthopSpec::LookupVrf(vrf)
        } else {
            NexthopSpec::Discard
        };
        let nh = spec.build(|name| index.get(name).copied()).map_err(|r| e("port", r))?;
        let field = if n.ecmp.is_some() { "ecmp" } else { "id" };
        b.set_nexthop(n.id, nh).map_err(|r| e(field, r.to_string()))?;
        described.push(spec.describe(n.id));
    }
    // Checked once all are defined: a group may come before its members (the builder
    // refuses groups in groups, whichever comes first).
    for sp in &f.nexthop {
        let Some(m) = &sp.get_ref().ecmp else { continue };
        if let Some(missing) = m.iter().find(|x| !ids.contains_key(x)) {
            return Err(cx.err(
                sp.span().start,
                &format!("nexthop {}", sp.get_ref().id),
                "ecmp",
                format!("member {missing} is not defined"),
            ));
        }
    }
    for sp in &f.route {
        let (r, at) = (sp.get_ref(), sp.span().start);
        let what = format!("route {} in VRF {}", r.prefix, r.vrf);
        if !ids.contains_key(&r.nexthop) {
            return Err(cx.err(at, &what, "nexthop", format!("nexthop {} is not defined", r.nexthop)));
        }
        let (a, l) = r
            .prefix
            .split_once('/')
            .ok_or_else(|| cx.err(at, &what, "prefix", "not ADDRESS/LENGTH"))?;
        let a = parse_ip(a).map_err(|x| cx.err(at, &what, "prefix", x))?;
        let l: u8 = l.parse().map_err(|_| cx.err(at, &what, "prefix", "bad length"))?;
        b.add_route(r.vrf, a, l, r.nexthop)
            .map_err(|x| cx.err(at, &what, "prefix", x))?;
    }
    for sp in &f.neighbor {
        let (n, at) = (sp.get_ref(), sp.span().start);
        let what = format!("neighbor {}", n.ip);
        let mac = parse_mac(&n.mac).map_err(|x| cx.err(at, &what, "mac", x))?;
        let ip = parse_ip(&n.ip).map_err(|x| cx.err(at, &what, "ip", x))?;
        let port = match (&n.port, n.vni) {
            (Some(p), None) => port_of(p, at, &what)?,
            (None, Some(vni)) if vni < 1 << 24 => vrouter::dataplane::pipeline::overlay_neighbor_port(vni),
            (None, Some(vni)) => return Err(cx.err(at, &what, "vni", format!("{vni} exceeds 24 bits"))),
            _ => return Err(cx.err(at, &what, "port", "give exactly one of `port` and `vni`")),
        };
        b.set_neighbor(
            port,
            ip,
            Neighbor {
                mac,
                state: NeighborState::Reachable,
            },
        );
    }
    for sp in &f.vni {
        let v = sp.get_ref();
        b.set_vni(v.vni, v.vrf)
            .map_err(|x| cx.err(sp.span().start, &format!("vni {}", v.vni), "vrf", x))?;
    }
    for sp in &f.label {
        let l = sp.get_ref();
        if !ids.contains_key(&l.nexthop) {
            return Err(cx.err(
                sp.span().start,
                &format!("label {}", l.label),
                "nexthop",
                format!("nexthop {} is not defined", l.nexthop),
            ));
        }
        if let Some(nh) = b.nexthop(l.nexthop) {
            vrouter::dataplane::pipeline::check_label_nexthop(nh)
                .map_err(|x| cx.err(sp.span().start, &format!("label {}", l.label), "nexthop", x))?;
        }
        b.set_label(l.label, l.nexthop)
            .map_err(|x| cx.err(sp.span().start, &format!("label {}", l.label), "label", x))?;
    }
    let tunnel_endpoints = f
        .tunnel_endpoints
        .iter()
        .map(|s| parse_ip(s.get_ref()).map_err(|x| cx.err(s.span().start, "tunnel_endpoints", "tunnel_endpoints", x)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut listing = Listing {
        vrfs: std::iter::once("0".to_string())
            .chain(f.vrf.iter().map(|v| v.get_ref().id.to_string()))
            .collect(),
        routes: f
            .route
            .iter()
            .map(|r| r.get_ref())
            .map(|r| format!("vrf {} {} -> nexthop {}", r.vrf, r.prefix, r.nexthop))
            .collect(),
        nexthops: described,
        neighbors: f
            .neighbor
            .iter()
            .map(|n| n.get_ref())
            .map(|n| match (&n.port, n.vni) {
                (Some(p), _) => format!("{} {} on {p}", n.ip, n.mac),
                (_, vni) => format!("{} {} in vni {}", n.ip, n.mac, vni.unwrap_or_default()),
            })
            .collect(),
        labels: f
            .label
            .iter()
            .map(|l| l.get_ref())
            .map(|l| format!("label {} -> nexthop {}", l.label, l.nexthop))
            .collect(),
        vnis: f
            .vni
            .iter()
            .map(|v| v.get_ref())
            .map(|v| format!("vni {} -> vrf {}", v.vni, v.vrf))
            .collect(),
        rule_origins: Default::default(),
    };
    let (policy, origins) = policies(&cx, &f, &ports, &tunnel_endpoints)?;
    let policy = match f.policy_log.as_ref().map(|l| (l.get_ref().as_str(), l.span().start)) {
        None | Some(("none", _)) => policy,
        Some(("denied", _)) => policy.with_logging(true, false),
        Some(("all", _)) => policy.with_logging(true, true),
        Some((other, at)) => {
            return Err(cx.err(
                at,
                "policy_log",
                "policy_log",
                format!("`{other}` is not none, denied or all"),
            ));
        }
    };
    listing.rule_origins = origins.into_iter().map(|(id, o)| (id.0, o)).collect();
    own_address_for_policy(&cx, &f, &policy)?;
    let metrics = match &f.metrics {
        None => None,
        Some(m) => {
            let bad = |why: String| cx.err(m.span().start, "metrics", "metrics", why);
            let a: std::net::SocketAddr = m
                .get_ref()
                .parse()
                .map_err(|_| bad(format!("`{}` is not ADDRESS:PORT", m.get_ref())))?;
            if !a.ip().is_loopback() {
                return Err(bad(format!(
                    "{a} is not a loopback address (metrics are not served off the box)"
                )));
            }
            Some(a)
        }
    };
    let flows = flow_table(&cx, f.flows.as_ref())?;
    let refuse_zero_udp_checksum6 = match &f.ipv6_zero_udp_checksum {
        None => false,
        Some(v) => match v.get_ref().as_str() {
            "accept" => false,
            "refuse" => true,
            other => {
                return Err(cx.err(
                    v.span().start,
                    "ipv6_zero_udp_checksum",
                    "ipv6_zero_udp_checksum",
                    format!("`{other}` is not accept or refuse"),
                ));
            }
        },
    };
    let tcp_mss_clamp = match &f.tcp_mss_clamp {
        None => MssClamp::Path,
        Some(v) => match v.get_ref() {
            MssSetting::Word(w) if w == "path" => MssClamp::Path,
            MssSetting::Word(w) if w == "off" => MssClamp::Off,
            MssSetting::Bytes(n) if MSS_VALUES.contains(n) => MssClamp::Fixed(*n as u16),
            other => {
                let what = match other {
                    MssSetting::Word(w) => format!("`{w}`"),
                    MssSetting::Bytes(n) => n.to_string(),
                };
                return Err(cx.err(
                    v.span().start,
                    "tcp_mss_clamp",
                    "tcp_mss_clamp",
                    format!("{what} is not path, off or an MSS in 536..=8960"),
                ));
            }
        },
    };
    let mut kernel_routes: Vec<KernelRoutes> = Vec::new();
    for def in &f.kernel_routes {
        let k = kernel_routes_of(&cx, def, &f.vrf)?;
        let e = |field: &str, why: String| cx.err(def.span().start, "kernel_routes", field, why);
        if kernel_routes.iter().any(|o| o.table == k.table) {
            return Err(e("table", format!("table {} is followed already", k.table)));
        }
        if let Some(o) = kernel_routes.iter().find(|o| o.vrf == k.vrf) {
            return Err(e(
                "vrf",
                format!("VRF {} follows table {} already (one table a VRF)", k.vrf, o.table),
            ));
        }
        kernel_routes.push(k);
    }
    Ok(Config {
        node: NodeConfig {
            ports,
            tunnel_endpoints,
            refuse_zero_udp_checksum6,
            tcp_mss_clamp,
        },
        devices,
        cpus: f.cpus,
        routes: b,
        listing,
        metrics,
        flows,
        policy,
        spare_tables: f.routing.and_then(|r| r.spare_tables),
        kernel_routes,
        mtu_given,
    })
}

/// A `[[kernel_routes]]` table, each field checked.
fn kernel_routes_of(
    cx: &Ctx<'_>,
    def: &Spanned<KernelRoutesDef>,
    vrfs: &[Spanned<VrfDef>],
) -> Result<KernelRoutes, String> {
    let e = |field: &str, why: String| cx.err(def.span().start, "kernel_routes", field, why);
    let k = def.get_ref();
    let table = match &k.table {
        None => 254,
        Some(toml::Value::String(s)) if s == "main" => 254,
        Some(toml::Value::String(s)) if s == "default" => 253,
        Some(toml::Value::Integer(n)) if (1..=i64::from(u32::MAX)).contains(n) && *n != 255 => *n as u32,
        Some(toml::Value::Integer(255)) => {
            return Err(e(
                "table",
                "255 is the `local` table (the node's own addresses): not routes to follow".into(),
            ));
        }
        Some(v) => {
            return Err(e(
                "table",
                format!("{v} is not a table number (1 and up), `main` or `default`"),
            ));
        }
    };
    if k.vrf != 0 && !vrfs.iter().any(|v| v.get_ref().id == k.vrf) {
        return Err(e("vrf", format!("VRF {} is not defined in a [[vrf]] table", k.vrf)));
    }
    let protocols = k
        .protocols
        .iter()
        .map(|p| match p {
            toml::Value::Integer(n) if (0..=255).contains(n) => Ok(*n as u8),
            toml::Value::String(name) => PROTOCOLS
                .iter()
                .find(|(known, _)| known == name)
                .map(|&(_, n)| n)
                .ok_or_else(|| {
                    e(
                        "protocols",
                        format!("`{name}` is not a protocol this knows (give its number)"),
                    )
                }),
            v => Err(e("protocols", format!("{v} is not a protocol number (0-255) or name"))),
        })
        .collect::<Result<_, _>>()?;
    Ok(KernelRoutes {
        table,
        vrf: k.vrf,
        protocols,
    })
}

/// The flow table's options from `[flows]`, each checked with its line and field named.
fn flow_table(cx: &Ctx<'_>, def: Option<&FlowsDef>) -> Result<FlowTableConfig, String> {
    let mut cfg = FlowTableConfig::with_capacity(DEFAULT_FLOW_ENTRIES);
    let Some(def) = def else {
        return Ok(cfg);
    };
    let bad = |v: &Spanned<u64>, field: &str, why: &str| {
        cx.err(v.span().start, "flows", field, format!("{} {why}", v.get_ref()))
    };
    let within = |v: &Spanned<u64>, field: &str, max: u64, why: &str| {
        if (1..=max).contains(v.get_ref()) {
            Ok(*v.get_ref())
        } else {
            Err(bad(v, field, why))
        }
    };
    if let Some(n) = &def.entries {
        cfg.capacity = within(n, "entries", MAX_FLOW_ENTRIES, "is not between 1 and 2^30")? as usize;
    }
    if let Some(w) = &def.when_full {
        cfg.full_policy = match w.get_ref().as_str() {
            "evict" => FullPolicy::EvictExpiredOrClosing,
            "refuse" => FullPolicy::Refuse,
            other => {
                return Err(cx.err(
                    w.span().start,
                    "flows",
                    "when_full",
                    format!("`{other}` is not evict (an expired or closing flow of the two buckets) or refuse"),
                ));
            }
        };
    }
    if let Some(q) = &def.vrf_quota {
        cfg.vrf_quota = Some(within(q, "vrf_quota", u64::from(u32::MAX), "is not between 1 and 2^32 - 1")? as u32);
        // Every VRF id (below 65536) counted on its own.
        cfg.quota_vrfs = 1 << 16;
    }
    if let Some(t) = &def.timeouts {
        let max = i32::MAX as u64;
        for (v, field, slot) in [
            (
                &t.tcp_established,
                "timeouts.tcp_established",
                &mut cfg.timeouts.tcp_established,
            ),
            (&t.tcp_closing, "timeouts.tcp_closing", &mut cfg.timeouts.tcp_closing),
            (&t.udp, "timeouts.udp", &mut cfg.timeouts.udp),
            (&t.sctp, "timeouts.sctp", &mut cfg.timeouts.sctp),
            (&t.icmp, "timeouts.icmp", &mut cfg.timeouts.icmp),
            (&t.other, "timeouts.other", &mut cfg.timeouts.other),
        ] {
            if let Some(v) = v {
                *slot = within(v, field, max, "is not between 1 and 2^31 - 1 seconds")? as u32;
            }
        }
    }
    Ok(cfg)
}

/// Applies a reloaded `[flows]` table to the running flow table: `when_full`, the timeouts
/// and a changed or removed `vrf_quota` take effect at once; what needs a restart (a new
/// `entries`, a quota where the table started without one) keeps its running value and is
/// named in the returned notes.
pub fn reload_flows(table: &FlowTable, started: &FlowTableConfig, new: &FlowTableConfig) -> Vec<String> {
    let mut notes = Vec::new();
    if new.capacity != started.capacity {
        notes.push(format!(
            "flows.entries {} needs a restart: the table keeps {} slots",
            new.capacity,
            table.capacity()
        ));
    }
    let live = new.live_options();
    if let Err(e) = table.set_live_options(live) {
        notes.push(format!("flows.{} needs a restart: it {}", e.field, e.reason));
        // The only refusal is a quota added; the other options still apply.
        let _ = table.set_live_options(LiveOptions {
            vrf_quota: None,
            ..live
        });
    }
    notes
}

fn action(s: &str) -> Result<Action, String> {
    Ok(match s {
        "allow" => Action::Allow,
        "deny" => Action::Deny,
        "allow-log" => Action::AllowLog,
        "deny-log" => Action::DenyLog,
        o => return Err(format!("`{o}` is not allow, deny, allow-log or deny-log")),
    })
}

/// A protocol by name (`tcp`, `udp`, `icmp`, `icmpv6`, `sctp`) or number.
pub fn proto(s: &str) -> Result<u8, String> {
    Ok(match s {
        "tcp" => 6,
        "udp" => 17,
        "icmp" => 1,
        "icmpv6" => 58,
        "sctp" => PROTO_SCTP,
        o => o
            .parse()
            .map_err(|_| format!("`{o}` is not tcp, udp, icmp, icmpv6, sctp or a protocol number"))?,
    })
}

fn port_range(s: &str) -> Result<PortRange, String> {
    let bad = || format!("`{s}` is not PORT or LOW-HIGH");
    match s.split_once('-') {
        Some((a, b)) => Ok(PortRange::new(
            a.trim().parse().map_err(|_| bad())?,
            b.trim().parse().map_err(|_| bad())?,
        )),
        None => Ok(PortRange::single(s.trim().parse().map_err(|_| bad())?)),
    }
}

fn cidrs(v: &[String]) -> Result<Option<Arc<AddrSet>>, String> {
    if v.is_empty() {
        return Ok(None);
    }
    let c = v
        .iter()
        .map(|c| c.parse::<Cidr>().map_err(|e| format!("`{c}`: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(Arc::new(AddrSet::from_cidrs(&c))))
}

/// Builds the policy set: one endpoint per workload port (its addresses, in its VRF),
/// with the `[[policy]]` lists that name it; rules are checked by the policy compiler
/// and its errors are reported at the policy's line.
/// The policy set, and where each NetworkPolicy rule came from (none for `[[policy]]`).
fn policies(
    cx: &Ctx<'_>,
    f: &File,
    ports: &[PortConfig],
    tunnel_endpoints: &[IpAddr],
) -> Result<(PolicySet, BTreeMap<RuleId, String>), String> {
    if !f.network_policies.is_empty() {
        if let Some(p) = f.policy.first() {
            return Err(cx.err(
                p.span().start,
                "policy",
                "policy",
                "`[[policy]]` and `network_policies` cannot be mixed: use one",
            ));
        }
        return network_policies(cx, f, ports, tunnel_endpoints);
    }
    let mut lists: HashMap<(String, bool), (usize, RuleList)> = HashMap::new();
    for sp in &f.policy {
        let (p, at) = (sp.get_ref(), sp.span().start);
        let what = format!("policy for `{}`", p.endpoint);
        let e = |field: &str, why: String| cx.err(at, &what, field, why);
        let port = ports
            .iter()
            .find(|q| q.name == p.endpoint)
            .ok_or_else(|| e("endpoint", format!("no port named `{}`", p.endpoint)))?;
        if !matches!(port.role, PortRole::Workload { .. }) {
            return Err(e("endpoint", "policies apply to workload ports".into()));
        }
        let egress = match p.direction.as_str() {
            "ingress" => false,
            "egress" => true,
            o => return Err(e("direction", format!("`{o}` is not ingress or egress"))),
        };
        let mut rules = Vec::new();
        for (i, r) in p.rule.iter().enumerate() {
            let re = |field: &str, why: String| e(&format!("rule[{i}].{field}"), why);
            let icmp = r.icmp_type.map(|kind| IcmpMatch {
                kind,
                code: r.icmp_code,
            });
            rules.push(Rule {
                id: RuleId(i as u32 + 1),
                priority: r.priority,
                action: action(&r.action).map_err(|w| re("action", w))?,
                vrf: None,
                src: cidrs(&r.src).map_err(|w| re("src", w))?,
                dst: cidrs(&r.dst).map_err(|w| re("dst", w))?,
                proto: r.proto.as_deref().map(proto).transpose().map_err(|w| re("proto", w))?,
                src_ports: r
                    .src_ports
                    .as_deref()
                    .map(port_range)
                    .transpose()
                    .map_err(|w| re("src_ports", w))?,
                dst_ports: r
                    .dst_ports
                    .as_deref()
                    .map(port_range)
                    .transpose()
                    .map_err(|w| re("dst_ports", w))?,
                icmp,
            });
        }
        let list = RuleList {
            rules,
            default: action(&p.default).map_err(|w| e("default", w))?,
        };
        // The compiler's own checks (port ranges, protocol/port combinations), per list.
        list.check().map_err(|err| {
            e(
                &format!("rule[{}].{}", err.rule.map_or(0, |r| r.0 - 1), err.field),
                err.reason,
            )
        })?;
        if lists.insert((p.endpoint.clone(), egress), (at, list)).is_some() {
            return Err(e(
                "direction",
                format!("a second {} policy for the same endpoint", p.direction),
            ));
        }
    }
    let mut endpoints = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        if let PortRole::Workload { vrf, addrs, .. } = &port.role {
            let take = |egress| {
                lists
                    .get(&(port.name.clone(), egress))
                    .map(|(_, l)| Arc::new(l.clone()))
            };
            endpoints.push(Endpoint {
                id: EndpointId(i as u32),
                vrf: *vrf,
                addrs: addrs.clone(),
                ingress: take(false),
                egress: take(true),
            });
        }
    }
    Ok((PolicySet { endpoints }, BTreeMap::new()))
}

/// Refuses a workload port with policy lists whose every address another workload also
/// owns (a service address alone): the dataplane tells a shared address's flows apart by
/// the port's own addresses, so such a port's lists could never apply.
fn own_address_for_policy(cx: &Ctx<'_>, f: &File, set: &PolicySet) -> Result<(), String> {
    let Some(ep) = set.policed_without_own_address() else {
        return Ok(());
    };
    let Some(sp) = f.port.get(ep.id.0 as usize) else {
        return Ok(());
    };
    Err(cx.err(
        sp.span().start,
        &format!("port `{}`", sp.get_ref().name),
        "workload_addresses",
        "every address is another workload's too (a service address): its policy needs an address of its own to tell its flows apart",
    ))
}

/// Builds the policy set from Kubernetes NetworkPolicy YAML: the `[[pod]]` and
/// `[[namespace]]` tables are what selectors resolve against; every workload port is an
/// endpoint, as with `[[policy]]`. The node's own addresses (its fabric and host ports',
/// its tunnel endpoints: what its stack sends from) always reach its pods and are reached
/// by them, as Kubernetes requires (the kubelet's probes).
fn network_policies(
    cx: &Ctx<'_>,
    f: &File,
    ports: &[PortConfig],
    tunnel_endpoints: &[IpAddr],
) -> Result<(PolicySet, BTreeMap<RuleId, String>), String> {
    let mut cluster = k8s::Cluster::default();
    for sp in &f.namespace {
        let n = sp.get_ref();
        if cluster.namespaces.insert(n.name.clone(), n.labels.clone()).is_some() {
            let what = format!("namespace `{}`", n.name);
            return Err(cx.err(sp.span().start, &what, "name", "defined twice"));
        }
    }
    let mut on_ports = HashMap::new();
    for sp in &f.pod {
        let (p, at) = (sp.get_ref(), sp.span().start);
        let what = format!("pod `{}`", p.name);
        let e = |field: &str, why: String| cx.err(at, &what, field, why);
        let mut addrs = p
            .addresses
            .iter()
            .map(|a| parse_ip(a))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|w| e("addresses", w))?;
        let endpoint = match &p.port {
            None => None,
            Some(name) => {
                let (i, port) = ports
                    .iter()
                    .enumerate()
                    .find(|(_, q)| &q.name == name)
                    .ok_or_else(|| e("port", format!("no port named `{name}`")))?;
                let PortRole::Workload { addrs: owned, .. } = &port.role else {
                    return Err(e("port", format!("`{name}` is not a workload port")));
                };
                if let Some(other) = on_ports.insert(i, p.name.clone()) {
                    return Err(e("port", format!("`{name}` already belongs to pod `{other}`")));
                }
                if addrs.is_empty() {
                    addrs = owned.clone();
                }
                Some(EndpointId(i as u32))
            }
        };
        if addrs.is_empty() {
            return Err(e("addresses", "a pod without a `port` needs its addresses".into()));
        }
        let mut named: Vec<ContainerPort> = Vec::new();
        for (i, c) in p.container_ports.iter().enumerate() {
            let e = |field: &str, why: String| e(&format!("container_ports[{i}].{field}"), why);
            check_port_name(&c.name).map_err(|w| e("name", w))?;
            if named.iter().any(|n| n.name == c.name) {
                return Err(e("name", format!("`{}` is named twice", c.name)));
            }
            let name = c.protocol.as_deref().unwrap_or("TCP");
            named.push(ContainerPort {
                name: c.name.clone(),
                protocol: protocol(name).ok_or_else(|| e("protocol", format!("`{name}` is not TCP, UDP or SCTP")))?,
                port: u16::try_from(c.port)
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| e("port", format!("{} is not a port (1-65535)", c.port)))?,
            });
        }
        cluster.pods.push(k8s::Pod {
            namespace: p.namespace.clone(),
            labels: p.labels.clone(),
            addrs,
            endpoint,
            named_ports: named,
        });
    }
    let dir = std::path::Path::new(cx.path)
        .parent()
        .unwrap_or(std::path::Path::new(""));
    let mut policies = Vec::new();
    for sp in &f.network_policies {
        let (file, at) = (sp.get_ref(), sp.span().start);
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path).map_err(|err| {
            cx.err(
                at,
                "network_policies",
                "network_policies",
                format!("`{}`: {err}", path.display()),
            )
        })?;
        let read = k8s::read(&path.display().to_string(), &text, &cluster)
            .map_err(|err| format!("{}:{}: {err}", cx.path, cx.line(at)))?;
        policies.extend(read);
    }
    let endpoints: Vec<_> = ports
        .iter()
        .enumerate()
        .filter_map(|(i, port)| match &port.role {
            PortRole::Workload { vrf, addrs, .. } => Some((EndpointId(i as u32), *vrf, addrs.clone())),
            _ => None,
        })
        .collect();
    let at = f.network_policies[0].span().start;
    let mut node: Vec<IpAddr> = ports
        .iter()
        .filter(|p| matches!(p.role, PortRole::Fabric { .. } | PortRole::Host { .. }))
        .flat_map(|p| p.addrs.iter().copied())
        .chain(tunnel_endpoints.iter().copied())
        .collect();
    node.sort_unstable();
    node.dedup();
    let (set, origins) =
        vrouter::policy::k8s::compile_with_origins(&endpoints, &policies, &cluster.named_ports(), &node)
            .map_err(|err| format!("{}:{}: network_policies: {err}", cx.path, cx.line(at)))?;
    Policy::compile(&set, 0).map_err(|err| format!("{}:{}: network_policies: {err}", cx.path, cx.line(at)))?;
    Ok((set, origins))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use vrouter::flow::Timeouts;

    /// Values that probe the checks: out of range, of the wrong type, malformed.
    const ODD_VALUES: &[&str] = &[
        "0",
        "-1",
        "65536",
        "4294967295",
        "4294967296",
        "99999999999999999999",
        "1.5",
        "true",
        "\"\"",
        "\"x\"",
        "\"10.0.0.0/33\"",
        "\"10.0.0.1/8\"",
        "\"::/129\"",
        "\"fe80::1%eth0\"",
        "\"256.1.1.1\"",
        "\"02:00:00:00:00\"",
        "\"ff:ff:ff:ff:ff:ff\"",
        "\"0.0.0.0\"",
        "\"1-0\"",
        "\"65535-65536\"",
        "[]",
        "[0, 0]",
        "[\"\"]",
        "{}",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// GOOD and a `[flows]` table with some values replaced by odd ones is refused with
        /// a message naming a line, or accepted and publishable, and never panics.
        #[test]
        fn odd_values_are_refused_or_accepted_never_a_panic(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), 0..ODD_VALUES.len()), 1..4)
        ) {
            let flows = "[flows]\nentries = 65536\nwhen_full = \"refuse\"\nvrf_quota = 1000\ntimeouts = { udp = 30 }\n";
            let mut lines: Vec<String> = GOOD.lines().chain(flows.lines()).map(str::to_string).collect();
            let assignments: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].contains(" = ")).collect();
            for (at, v) in edits {
                let i = assignments[at.index(assignments.len())];
                let key = lines[i].split(" = ").next().unwrap().to_string();
                lines[i] = format!("{key} = {}", ODD_VALUES[v]);
            }
            match parse("odd.toml", &lines.join("\n")) {
                Ok(mut c) => {
                    let _ = c.routes.publish(&vrouter::fib::Fib::new());
                    // What the checks let through, the flow table takes.
                    prop_assert!(vrouter::flow::FlowTable::new(c.flows).is_ok());
                }
                Err(e) => prop_assert!(e.starts_with("odd.toml:"), "{e}"),
            }
        }
    }

    const GOOD: &str = r#"
tunnel_endpoints = ["192.0.2.1"]

[[vrf]]
id = 1

[[port]]
name = "fabric"
device = "eth1"
kind = "fabric"
vrf = 0
mac = "02:0a:00:00:00:01"
addresses = ["192.0.2.1"]

[[port]]
name = "pod1"
device = "veth-pod1"
kind = "workload"
vrf = 1
mac = "02:0a:00:00:01:01"
workload_mac = "02:00:00:00:01:02"
workload_addresses = ["10.0.1.2"]
gateways = ["10.0.1.1"]

[[nexthop]]
id = 1
port = "pod1"

[[nexthop]]
id = 2
port = "fabric"

[[nexthop]]
id = 3
tunnel = "vxlan"
key = 42
src = "192.0.2.1"
dst = "192.0.2.2"

[[route]]
vrf = 1
prefix = "10.0.1.2/32"
nexthop = 1

[[route]]
vrf = 1
prefix = "10.9.0.0/16"
nexthop = 3

[[route]]
vrf = 0
prefix = "192.0.2.0/24"
nexthop = 2

[[neighbor]]
port = "fabric"
ip = "192.0.2.2"
mac = "02:00:00:00:09:09"

[[vni]]
vni = 42
vrf = 1

[[policy]]
endpoint = "pod1"
direction = "ingress"
default = "allow"
[[policy.rule]]
action = "deny-log"
proto = "tcp"
dst_ports = "22"
src = ["10.0.0.0/8"]
"#;

    /// Two workloads owning one service address: policed, each by its own address; a
    /// policed port with no address of its own is refused.
    #[test]
    fn a_policed_port_needs_an_address_of_its_own() {
        let pod2 = "[[port]]\nname = \"pod2\"\ndevice = \"veth-pod2\"\nkind = \"workload\"\nvrf = 1\nmac = \"02:0a:00:00:02:01\"\nworkload_mac = \"02:00:00:00:02:02\"\nworkload_addresses = [\"10.0.2.2\", \"10.96.0.10\"]\n\n[[nexthop]]\nid = 1\n";
        let both = GOOD.replacen("[[nexthop]]\nid = 1\n", pod2, 1).replace(
            "workload_addresses = [\"10.0.1.2\"]",
            "workload_addresses = [\"10.0.1.2\", \"10.96.0.10\"]",
        );
        let c = parse("good.toml", &both).unwrap();
        let (p, _) = vrouter::policy::Policy::compile(&c.policy, 1).unwrap();
        assert_eq!(
            p.owner(1, "10.96.0.10".parse().unwrap()),
            vrouter::policy::Owner::Shared
        );
        let alone = both.replace("[\"10.0.1.2\", \"10.96.0.10\"]", "[\"10.96.0.10\"]");
        let e = parse("good.toml", &alone).err().expect("refused");
        assert!(
            e.starts_with("good.toml:")
                && e.contains("port `pod1`: field `workload_addresses`: every address is another workload's too"),
            "{e}"
        );
        // Without a policy of its own, such a port is only routed.
        let unpoliced = alone.replace("endpoint = \"pod1\"", "endpoint = \"pod2\"");
        assert!(parse("good.toml", &unpoliced).is_ok());
    }

    #[test]
    fn weighted_groups_and_vrf_lookups_are_read() {
        let text = GOOD.replacen("port = \"fabric\"", "ecmp = [1, 3]\nweights = [3, 1]", 1)
            + "\n[[nexthop]]\nid = 5\nlookup_vrf = 1\n";
        let c = parse("good.toml", &text).unwrap();
        assert_eq!(
            c.routes.nexthop(2),
            Some(&Nexthop::Ecmp {
                members: vec![(1, 3), (3, 1)]
            })
        );
        assert_eq!(c.routes.nexthop(5), Some(&Nexthop::VrfTranslate { vrf: 1 }));
        assert!(c.listing.nexthops.contains(&"2: ecmp 1:3,3".to_string()));
        assert!(c.listing.nexthops.contains(&"5: lookup_vrf 1".to_string()));
    }

    #[test]
    fn a_port_on_a_vlan_is_read() {
        let text = GOOD.replacen(
            "kind = \"fabric\"\nvrf = 0\n",
            "kind = \"fabric\"\nvrf = 0\nvlan = 100\n",
            1,
        );
        let c = parse("good.toml", &text).unwrap();
        let vlans: Vec<_> = c.node.ports.iter().map(|p| (p.name.as_str(), p.vlan)).collect();
        assert_eq!(vlans[0], ("fabric", Some(100)));
        assert!(vlans[1..].iter().all(|v| v.1.is_none()), "{vlans:?}");
    }

    /// A `[[neighbor]]` with a VNI is an overlay entry of that VNI: two tenants' entries
    /// for one inner address stay apart.
    #[test]
    fn overlay_neighbors_are_read_per_vni() {
        let entry = |vni: u32, mac: &str| format!("\n[[neighbor]]\nvni = {vni}\nip = \"10.9.0.5\"\nmac = \"{mac}\"\n");
        let text = format!(
            "{GOOD}{}{}",
            entry(42, "02:00:00:00:42:05"),
            entry(43, "02:00:00:00:43:05")
        );
        let mut c = parse("good.toml", &text).unwrap();
        let fib = vrouter::fib::Fib::new();
        c.routes.publish(&fib).unwrap();
        let fib = fib.snapshot();
        let at = |vni| {
            fib.mac(
                vrouter::dataplane::pipeline::overlay_neighbor_port(vni),
                "10.9.0.5".parse().unwrap(),
            )
        };
        assert_eq!(at(42), Some(parse_mac("02:00:00:00:42:05").unwrap()));
        assert_eq!(at(43), Some(parse_mac("02:00:00:00:43:05").unwrap()));
        assert_eq!(at(44), None);
        assert!(
            c.listing
                .neighbors
                .contains(&"10.9.0.5 02:00:00:00:43:05 in vni 43".to_string()),
            "{:?}",
            c.listing.neighbors
        );
    }

    #[test]
    fn a_reload_changes_what_a_running_flow_table_can_change() {
        let flows = |extra: &str| parse("good.toml", &format!("{GOOD}[flows]\n{extra}")).unwrap().flows;
        let started = flows("entries = 3000\n");
        let table = FlowTable::new(started.clone()).unwrap();
        let new = flows("entries = 6000\nwhen_full = \"refuse\"\nvrf_quota = 10\ntimeouts = { udp = 90 }\n");
        let notes = reload_flows(&table, &started, &new);
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert_eq!(
            notes[0],
            "flows.entries 6000 needs a restart: the table keeps 3000 slots"
        );
        assert!(
            notes[1].starts_with("flows.vrf_quota needs a restart: it cannot be added"),
            "{notes:?}"
        );
        let now = table.config();
        assert_eq!(
            (now.capacity, now.full_policy, now.vrf_quota, now.timeouts.udp),
            (3000, FullPolicy::Refuse, None, 90),
            "the rest applied"
        );

        // Started with a quota, a reload changes it, or lifts it, with nothing to note.
        let started = flows("entries = 3000\nvrf_quota = 100\n");
        let table = FlowTable::new(started.clone()).unwrap();
        assert!(reload_flows(&table, &started, &flows("entries = 3000\nvrf_quota = 10\n")).is_empty());
        assert_eq!(table.config().vrf_quota, Some(10));
        assert!(reload_flows(&table, &started, &flows("entries = 3000\n")).is_empty());
        assert_eq!(table.config().vrf_quota, None);
    }

    #[test]
    fn ports_without_an_mtu_take_their_devices_and_one_above_it_is_warned_of() {
        let device = |d: &str| match d {
            "eth1" => Some(9000),
            "veth-pod1" => Some(1450),
            _ => None,
        };
        let mut c = parse("good.toml", GOOD).unwrap();
        assert_eq!(c.node.ports[1].mtu, 1500, "before the devices are read");
        assert!(c.take_device_mtus(device).is_empty());
        assert_eq!((c.node.ports[0].mtu, c.node.ports[1].mtu), (9000, 1450));
        // Given: kept, and above the device's, warned of.
        let text = GOOD.replace("name = \"pod1\"", "name = \"pod1\"\nmtu = 1500");
        let mut c = parse("good.toml", &text).unwrap();
        let warnings = c.take_device_mtus(device);
        assert_eq!(c.node.ports[1].mtu, 1500);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].starts_with("port pod1: mtu 1500 is above its device veth-pod1's 1450"));
        // No device (a TAP made at start), or an MTU no port may have: the default.
        let mut c = parse("good.toml", GOOD).unwrap();
        c.take_device_mtus(|d| (d == "eth1").then_some(65535));
        assert_eq!((c.node.ports[0].mtu, c.node.ports[1].mtu), (1500, 1500));
    }

    #[test]
    fn a_good_config_builds_the_node() {
        use vrouter::fib::Fib;
        let mut c = parse("good.toml", GOOD).unwrap();
        assert_eq!(c.devices, ["eth1", "veth-pod1"]);
        assert_eq!(c.flows, FlowTableConfig::with_capacity(1 << 20), "the defaults");
        let flows = "[flows]\nentries = 4000000\nwhen_full = \"refuse\"\nvrf_quota = 50000\n\
                     timeouts = { tcp_established = 3600, udp = 60 }\n";
        let f = parse("good.toml", &format!("{GOOD}{flows}")).unwrap().flows;
        assert_eq!(
            (f.capacity, f.full_policy, f.vrf_quota),
            (4_000_000, FullPolicy::Refuse, Some(50_000))
        );
        assert_eq!((f.timeouts.tcp_established, f.timeouts.udp), (3600, 60));
        assert_eq!(
            f.timeouts.tcp_closing,
            Timeouts::default().tcp_closing,
            "unset: the default"
        );
        assert!(vrouter::flow::FlowTable::new(f).is_ok());
        assert_eq!(c.node.ports.len(), 2);
        let fib = Fib::new();
        c.routes.publish(&fib).unwrap();
        let snap = fib.snapshot();
        assert!(snap.resolve(1, "10.9.1.1".parse().unwrap(), 0).is_ok());
        assert_eq!(snap.vni(42), Some(1));
        // A VXLAN tunnel to a Linux VTEP names the VTEP's MAC for the inner header.
        let routed = GOOD.replacen("key = 42", "key = 42\nrouter_mac = \"02:00:00:00:07:07\"", 1);
        let r = parse("good.toml", &routed).unwrap().routes;
        assert!(
            matches!(r.nexthop(3), Some(Nexthop::Tunnel { router_mac: Some(m), .. }) if m.0 == [2, 0, 0, 0, 7, 7]),
            "{:?}",
            r.nexthop(3)
        );
        // A tunnel's outer DSCP: the inner packet's, or fixed.
        for (line, want) in [
            ("dscp = \"inherit\"", OuterDscp::Inherit),
            ("dscp = 46", OuterDscp::Fixed(46)),
        ] {
            let c = parse("good.toml", &GOOD.replacen("key = 42", &format!("key = 42\n{line}"), 1)).unwrap();
            assert!(
                matches!(c.routes.nexthop(3), Some(Nexthop::Tunnel { dscp, .. }) if *dscp == want),
                "{line}: {:?}",
                c.routes.nexthop(3)
            );
            let shown = format!(" dscp {want}");
            assert!(
                c.listing.nexthops.iter().any(|l| l.ends_with(&shown)),
                "{:?}",
                c.listing.nexthops
            );
        }
        // Over IPv6, a tunnel may send a zero UDP checksum.
        let v6 = GOOD.replacen("src = \"192.0.2.1\"", "src = \"fd00::1\"", 1).replacen(
            "dst = \"192.0.2.2\"",
            "dst = \"fd00::2\"\nudp_checksum = \"zero\"",
            1,
        );
        let c = parse("good.toml", &v6).unwrap();
        assert!(
            matches!(
                c.routes.nexthop(3),
                Some(Nexthop::Tunnel {
                    zero_udp_checksum: true,
                    ..
                })
            ),
            "{:?}",
            c.routes.nexthop(3)
        );
        assert!(
            c.listing.nexthops.iter().any(|l| l.ends_with(" udp_checksum zero")),
            "{:?}",
            c.listing.nexthops
        );
        // The workload is an endpoint with the ingress list.
        let (p, _) = vrouter::policy::Policy::compile(&c.policy, 1).unwrap();
        let key =
            vrouter::wire::flow::FlowKey::v4("10.1.0.1".parse().unwrap(), "10.0.1.2".parse().unwrap(), 6, 40000, 22)
                .with_vrf(1);
        let d = p.evaluate(&vrouter::policy::Fields::from_key(&key, None));
        assert!(!d.allow && d.log);
    }

    /// The configuration reference in docs/operator.md is a config that checks.
    #[test]
    fn the_operator_guides_reference_checks() {
        let doc = include_str!("../../../docs/operator.md");
        let at = doc.find("## Configuration reference").expect("the section");
        let sample = doc[at..]
            .split("```toml\n")
            .nth(1)
            .and_then(|b| b.split("```").next())
            .expect("its block");
        let c = parse("operator.md", sample).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.flows.vrf_quota, Some(200_000), "the [flows] table was read");
        assert_eq!(c.spare_tables, Some(1), "the [routing] table was read");
        let without = sample.replace("[routing]\nspare_tables = 1", "");
        assert_eq!(parse("operator.md", &without).unwrap().spare_tables, None);
        let e = parse("operator.md", &sample.replace("spare_tables = 1", "spare_tables = -1"))
            .err()
            .unwrap();
        assert!(e.starts_with("operator.md:") && e.contains("usize"), "{e}");
        let e = parse("operator.md", &sample.replace("spare_tables = 1", "spares = 1"))
            .err()
            .unwrap();
        assert!(e.contains("unknown field `spares`"), "{e}");
    }

    #[test]
    fn bad_configs_name_line_field_and_reason() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "kind = \"fabric\"\nvrf = 0\nmac",
                "kind = \"fabrik\"\nvrf = 0\nmac",
                "good.toml:7: port `fabric`: field `kind`: `fabrik` is not fabric, workload or host",
            ),
            (
                "kind = \"fabric\"\nvrf = 0\n",
                "kind = \"fabric\"\nvrf = 0\nvlan = 4095\n",
                "good.toml:7: port `fabric`: field `vlan`: 4095 is outside 1..=4094",
            ),
            (
                "port = \"pod1\"",
                "port = \"pod9\"",
                "good.toml:25: nexthop 1: field `port`: no port named `pod9`",
            ),
            (
                "prefix = \"10.9.0.0/16\"",
                "prefix = \"10.9.0.1/16\"",
                "good.toml:45: route 10.9.0.1/16 in VRF 1: field `prefix`: route: 10.9.0.1/16 in VRF 1: host bits set",
            ),
            (
                "nexthop = 3",
                "nexthop = 7",
                "good.toml:45: route 10.9.0.0/16 in VRF 1: field `nexthop`: nexthop 7 is not defined",
            ),
            (
                "mac = \"02:00:00:00:09:09\"",
                "mac = \"02:00:00:00:09\"",
                "good.toml:55: neighbor 192.0.2.2: field `mac`: `02:00:00:00:09` is not a MAC address (six hex bytes)",
            ),
            (
                "port = \"fabric\"\nip = \"192.0.2.2\"",
                "port = \"fabric\"\nvni = 42\nip = \"192.0.2.2\"",
                "good.toml:55: neighbor 192.0.2.2: field `port`: give exactly one of `port` and `vni`",
            ),
            (
                "port = \"fabric\"\nip = \"192.0.2.2\"",
                "vni = 16777216\nip = \"192.0.2.2\"",
                "good.toml:55: neighbor 192.0.2.2: field `vni`: 16777216 exceeds 24 bits",
            ),
            (
                "tunnel = \"vxlan\"",
                "tunnel = \"geneve\"",
                "good.toml:33: nexthop 3: field `tunnel`: `geneve` is not vxlan, mpls-udp or mpls-gre",
            ),
            (
                "port = \"fabric\"",
                "ecmp = [1, 3]\nweights = [1]",
                "good.toml:29: nexthop 2: field `weights`: 1 weights for 2 members",
            ),
            (
                "port = \"fabric\"",
                "ecmp = [1, 3]\nweights = [0, 1]",
                "good.toml:29: nexthop 2: field `weights`: weight 0 is outside 1..=256",
            ),
            (
                "port = \"pod1\"",
                "port = \"pod1\"\nweights = [2]",
                "good.toml:25: nexthop 1: field `weights`: only an `ecmp` group has weights",
            ),
            (
                "port = \"fabric\"",
                "ecmp = [1, 4]\n\n[[nexthop]]\nid = 4\necmp = [1, 3]",
                "good.toml:33: nexthop 4: field `ecmp`: nexthop: ECMP group 4: it is a member of ECMP group 2, which may not hold a group",
            ),
            (
                "port = \"fabric\"",
                "lookup_vrf = 3",
                "good.toml:29: nexthop 2: field `lookup_vrf`: VRF 3 is not defined in a [[vrf]] table",
            ),
            (
                "key = 42",
                "key = 16777216",
                "good.toml:33: nexthop 3: field `key`: VNI 16777216 exceeds 24 bits",
            ),
            (
                "dst = \"192.0.2.2\"",
                "dst = \"2001:db8::2\"",
                "good.toml:33: nexthop 3: field `dst`: 2001:db8::2 is not of the family of src 192.0.2.1",
            ),
            (
                "[[vni]]",
                "[[label]]\nlabel = 100\nnexthop = 3\n\n[[vni]]",
                "good.toml:60: label 100: field `nexthop`: a label delivers into a VRF, named by a `lookup_vrf` or `port` nexthop, not by a tunnel one",
            ),
            (
                "key = 42",
                "key = 42\nrouter_mac = \"02:00:00:00:07\"",
                "good.toml:33: nexthop 3: field `router_mac`: `02:00:00:00:07` is not a MAC address (six hex bytes)",
            ),
            (
                "tunnel = \"vxlan\"",
                "tunnel = \"mpls-gre\"\nrouter_mac = \"02:00:00:00:07:07\"",
                "good.toml:33: nexthop 3: field `router_mac`: only a vxlan tunnel carries an inner Ethernet header, not mpls-gre",
            ),
            (
                "port = \"fabric\"",
                "port = \"fabric\"\nrouter_mac = \"02:00:00:00:07:07\"",
                "good.toml:29: nexthop 2: field `router_mac`: only a vxlan `tunnel` has a router MAC",
            ),
            (
                "key = 42",
                "key = 42\nudp_checksum = \"zero\"",
                "good.toml:33: nexthop 3: field `udp_checksum`: over IPv4 a tunnel's UDP checksum is zero anyway",
            ),
            (
                "key = 42",
                "key = 42\nudp_checksum = \"off\"",
                "good.toml:33: nexthop 3: field `udp_checksum`: `off` is not zero or computed",
            ),
            (
                "port = \"fabric\"",
                "port = \"fabric\"\nudp_checksum = \"zero\"",
                "good.toml:29: nexthop 2: field `udp_checksum`: only a `tunnel` has a UDP checksum",
            ),
            (
                "key = 42",
                "key = 42\ndscp = 64",
                "good.toml:33: nexthop 3: field `dscp`: `64` is not `inherit` or a DSCP 0-63",
            ),
            (
                "key = 42",
                "key = 42\ndscp = \"copy\"",
                "good.toml:33: nexthop 3: field `dscp`: `copy` is not `inherit` or a DSCP 0-63",
            ),
            (
                "port = \"fabric\"",
                "port = \"fabric\"\ndscp = 46",
                "good.toml:29: nexthop 2: field `dscp`: only a `tunnel` has an outer DSCP",
            ),
            (
                "key = 42",
                "key = 42\nunderlay_vrf = 5",
                "good.toml:33: nexthop 3: field `underlay_vrf`: VRF 5 is not defined in a [[vrf]] table",
            ),
            (
                "name = \"pod1\"",
                "name = \"fabric\"",
                "good.toml:15: port `fabric`: field `name`: defined twice",
            ),
            (
                "vrf = 1\nmac = \"02:0a:00:00:01:01\"",
                "vrf = 5\nmac = \"02:0a:00:00:01:01\"",
                "good.toml:15: port `pod1`: field `vrf`: VRF 5 is not defined in a [[vrf]] table",
            ),
            (
                "workload_mac = \"02:00:00:00:01:02\"\n",
                "",
                "good.toml:15: port `pod1`: field `workload_mac`: required for a workload port",
            ),
            ("id = 3\n", "id = 3\nbogus = 1\n", "good.toml:35: unknown field `bogus`"),
            ("[[vni]]", "[[vni]", "good.toml:60: unclosed array table"),
            (
                "tunnel_endpoints",
                "metrics = \"0.0.0.0:9469\"\ntunnel_endpoints",
                "good.toml:2: metrics: field `metrics`: 0.0.0.0:9469 is not a loopback address",
            ),
            (
                "[[vni]]",
                "[flows]\nentries = 0\n[[vni]]",
                "good.toml:61: flows: field `entries`: 0 is not between 1 and 2^30",
            ),
            (
                "[[vni]]",
                "[flows]\nentries = -5\n[[vni]]",
                "good.toml:61: invalid value",
            ),
            (
                "[[vni]]",
                "[flows]\nwhen_full = \"drop\"\n[[vni]]",
                "good.toml:61: flows: field `when_full`: `drop` is not evict",
            ),
            (
                "[[vni]]",
                "[flows]\nvrf_quota = 0\n[[vni]]",
                "good.toml:61: flows: field `vrf_quota`: 0 is not between 1",
            ),
            (
                "[[vni]]",
                "[flows]\ntimeouts = { udp = 0 }\n[[vni]]",
                "good.toml:61: flows: field `timeouts.udp`: 0 is not between 1 and 2^31 - 1 seconds",
            ),
            (
                "[[vni]]",
                "[flows]\ntimeouts = { tcp = 5 }\n[[vni]]",
                "good.toml:61: unknown field `tcp`",
            ),
            (
                "[[port]]\nname = \"pod1\"",
                "[[port]]\nname = \"vhost0\"\ndevice = \"vhost0\"\nkind = \"host\"\nvrf = 0\nmac = \"02:0a:00:00:00:02\"\nhost_mac = \"02:00:00:00:00:55\"\n\n[[port]]\nname = \"vhost1\"\ndevice = \"vhost1\"\nkind = \"host\"\nvrf = 0\nmac = \"02:0a:00:00:00:03\"\nhost_mac = \"02:00:00:00:00:56\"\n\n[[port]]\nname = \"pod1\"",
                "good.toml:23: port `vhost1`: field `kind`: a second host port: the router has one exception path (`vhost0`)",
            ),
        ];
        for (from, to, want) in cases {
            assert!(GOOD.contains(from), "{from}");
            let bad = GOOD.replacen(from, to, 1);
            let e = parse("good.toml", &bad)
                .err()
                .unwrap_or_else(|| panic!("{to}: accepted"));
            assert!(e.starts_with(want), "for `{to}`:\n got: {e}\nwant: {want}");
        }
    }

    /// GOOD with its `[[policy]]` replaced by NetworkPolicy YAML in a temporary directory.
    fn with_yaml(extra: &str, yaml: &str) -> Result<Config, String> {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("vrouter-k8s-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("netpol.yaml"), yaml).unwrap();
        let toml = GOOD[..GOOD.find("[[policy]]").unwrap()].replace(
            "tunnel_endpoints = [\"192.0.2.1\"]",
            "tunnel_endpoints = [\"192.0.2.1\"]\nnetwork_policies = [\"netpol.yaml\"]",
        ) + extra;
        let path = dir.join("router.toml");
        let r = parse(path.to_str().unwrap(), &toml);
        std::fs::remove_dir_all(&dir).unwrap();
        r
    }

    const PODS: &str = r#"
[[namespace]]
name = "ops"
labels = { team = "ops" }

[[pod]]
name = "db-0"
namespace = "prod"
labels = { app = "db" }
port = "pod1"

[[pod]]
name = "web-7"
namespace = "prod"
labels = { app = "web" }
addresses = ["10.9.0.7"]
"#;

    const NETPOL: &str = r#"apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: db, namespace: prod }
spec:
  podSelector: { matchLabels: { app: db } }
  ingress:
    - from: [{ podSelector: { matchLabels: { app: web } } }]
      ports: [{ port: 5432 }]
"#;

    /// `policy_log` turns the policy's decisions into logging ones: denials, or all.
    #[test]
    fn policy_log_logs_what_it_names() {
        let lists = |line: &str| {
            parse("good.toml", &format!("{line}\n{GOOD}")).map(|c| {
                let l = c.policy.endpoints[0].ingress.clone().expect("pod1's ingress list");
                (l.rules[0].action, l.default)
            })
        };
        // GOOD's one list: a deny-log rule and an allowing default.
        assert_eq!(lists(""), Ok((Action::DenyLog, Action::Allow)));
        assert_eq!(lists("policy_log = \"none\""), Ok((Action::DenyLog, Action::Allow)));
        assert_eq!(lists("policy_log = \"denied\""), Ok((Action::DenyLog, Action::Allow)));
        assert_eq!(lists("policy_log = \"all\""), Ok((Action::DenyLog, Action::AllowLog)));
        let e = lists("policy_log = \"some\"").unwrap_err();
        assert_eq!(
            e,
            "good.toml:1: policy_log: field `policy_log`: `some` is not none, denied or all"
        );
        // A list's denying default logs too.
        let c = parse(
            "good.toml",
            &format!("policy_log = \"denied\"\n{}", &GOOD[..GOOD.find("[[policy]]").unwrap()]).replace(
                "[[vrf]]",
                "[[policy]]\nendpoint = \"pod1\"\ndirection = \"egress\"\ndefault = \"deny\"\n\n[[vrf]]",
            ),
        )
        .unwrap();
        let egress = c.policy.endpoints[0].egress.clone().unwrap();
        assert_eq!(egress.default, Action::DenyLog);
    }

    #[test]
    fn tcp_mss_clamp_is_path_off_or_a_number() {
        let clamp = |line: &str| parse("good.toml", &format!("{line}\n{GOOD}")).map(|c| c.node.tcp_mss_clamp);
        assert_eq!(clamp(""), Ok(MssClamp::Path), "the default");
        assert_eq!(clamp("tcp_mss_clamp = \"off\""), Ok(MssClamp::Off));
        assert_eq!(clamp("tcp_mss_clamp = \"path\""), Ok(MssClamp::Path));
        assert_eq!(clamp("tcp_mss_clamp = 1360"), Ok(MssClamp::Fixed(1360)));
        for (line, says) in [
            (
                "tcp_mss_clamp = \"auto\"",
                "`auto` is not path, off or an MSS in 536..=8960",
            ),
            ("tcp_mss_clamp = 100", "100 is not path, off or an MSS in 536..=8960"),
            (
                "tcp_mss_clamp = 70000",
                "70000 is not path, off or an MSS in 536..=8960",
            ),
        ] {
            assert_eq!(
                clamp(line).unwrap_err(),
                format!("good.toml:1: tcp_mss_clamp: field `tcp_mss_clamp`: {says}")
            );
        }
    }

    #[test]
    fn zero_udp_checksums_over_ipv6_are_taken_unless_refused() {
        assert!(!parse("good.toml", GOOD).unwrap().node.refuse_zero_udp_checksum6);
        let with = |v: &str| format!("ipv6_zero_udp_checksum = \"{v}\"\n{GOOD}");
        assert!(
            !parse("good.toml", &with("accept"))
                .unwrap()
                .node
                .refuse_zero_udp_checksum6
        );
        assert!(
            parse("good.toml", &with("refuse"))
                .unwrap()
                .node
                .refuse_zero_udp_checksum6
        );
        let e = parse("good.toml", &with("maybe")).err().unwrap();
        assert_eq!(
            e,
            "good.toml:1: ipv6_zero_udp_checksum: field `ipv6_zero_udp_checksum`: `maybe` is not accept or refuse"
        );
    }

    #[test]
    fn kernel_routes_name_a_table_a_vrf_and_protocols() {
        let with = |tables: &[&str]| {
            let tables: String = tables.iter().map(|t| format!("\n[[kernel_routes]]\n{t}\n")).collect();
            format!("{GOOD}{tables}")
        };
        let c = parse(
            "good.toml",
            &with(&["vrf = 1\nprotocols = [\"bird\", 4, \"zebra\"]", "table = 100"]),
        )
        .unwrap();
        assert_eq!(
            c.kernel_routes,
            [
                KernelRoutes {
                    table: 254,
                    vrf: 1,
                    protocols: vec![12, 4, 11]
                },
                KernelRoutes {
                    table: 100,
                    vrf: 0,
                    protocols: vec![]
                }
            ]
        );
        assert_eq!(parse("good.toml", GOOD).unwrap().kernel_routes, []);
        let ports = parse("good.toml", GOOD).unwrap().port_devices();
        assert!(ports.iter().all(|p| !p.host) && ports[0].device == "eth1", "{ports:?}");
        for (tables, says) in [
            (&["table = 255"][..], "field `table`: 255 is the `local` table"),
            (&["table = 0"], "field `table`: 0 is not a table number"),
            (&["table = \"mine\""], "field `table`: \"mine\" is not a table number"),
            (&["vrf = 7"], "field `vrf`: VRF 7 is not defined in a [[vrf]] table"),
            (
                &["protocols = [\"egp\"]"],
                "field `protocols`: `egp` is not a protocol this knows",
            ),
            (
                &["protocols = [256]"],
                "field `protocols`: 256 is not a protocol number",
            ),
            (&["tables = 1"], "unknown field `tables`"),
            (
                &["vrf = 1", "table = \"main\""],
                "field `table`: table 254 is followed already",
            ),
            (
                &["vrf = 1", "table = 100\nvrf = 1"],
                "field `vrf`: VRF 1 follows table 254 already",
            ),
        ] {
            let e = parse("good.toml", &with(tables)).err().unwrap();
            assert!(e.contains(says) && e.starts_with("good.toml:"), "{tables:?}: {e}");
        }
    }

    #[test]
    fn network_policy_yaml_resolves_against_the_pods_of_the_config() {
        let c = with_yaml(PODS, NETPOL).unwrap();
        let (p, _) = vrouter::policy::Policy::compile(&c.policy, 1).unwrap();
        let verdict = |src: &str, port| {
            let key =
                vrouter::wire::flow::FlowKey::v4(src.parse().unwrap(), "10.0.1.2".parse().unwrap(), 6, 40000, port)
                    .with_vrf(1);
            p.evaluate(&vrouter::policy::Fields::from_key(&key, None)).allow
        };
        assert!(verdict("10.9.0.7", 5432), "the remote web pod reaches the database");
        assert!(!verdict("10.9.0.7", 22));
        assert!(!verdict("10.9.0.8", 5432), "an address that is no web pod");
        assert!(
            verdict("192.0.2.1", 22),
            "the node itself (its tunnel endpoint), always"
        );
        // Where each rule came from, for `show policy`; `[[policy]]` lists have none.
        let origins = BTreeMap::from([(0, "the node".to_string()), (1, "db ingress[0]".to_string())]);
        assert_eq!(c.listing.rule_origins, origins);
        assert!(parse("good.toml", GOOD).unwrap().listing.rule_origins.is_empty());
    }

    #[test]
    fn a_named_port_in_the_yaml_is_the_pods_container_port() {
        let pods = PODS.replace(
            "port = \"pod1\"",
            "port = \"pod1\"\ncontainer_ports = [{ name = \"postgres\", port = 6432 }, { name = \"dns\", port = 53, protocol = \"UDP\" }]",
        );
        let c = with_yaml(&pods, &NETPOL.replace("5432", "postgres")).unwrap();
        let (p, _) = vrouter::policy::Policy::compile(&c.policy, 1).unwrap();
        let verdict = |proto, port| {
            let (src, dst) = ("10.9.0.7".parse().unwrap(), "10.0.1.2".parse().unwrap());
            let key = vrouter::wire::flow::FlowKey::v4(src, dst, proto, 40000, port).with_vrf(1);
            p.evaluate(&vrouter::policy::Fields::from_key(&key, None)).allow
        };
        assert!(verdict(6, 6432), "db-0's postgres");
        assert!(!verdict(6, 5432), "the usual number is not db-0's");
        assert!(!verdict(17, 6432), "postgres is TCP");
    }

    #[test]
    fn bad_pods_and_yaml_name_their_place() {
        let cases = [
            (
                PODS.replace("port = \"pod1\"", "port = \"pod9\""),
                NETPOL.to_string(),
                "pod `db-0`: field `port`: no port named `pod9`",
            ),
            (
                PODS.replace("port = \"pod1\"", "port = \"fabric\""),
                NETPOL.to_string(),
                "field `port`: `fabric` is not a workload port",
            ),
            (
                PODS.replace("addresses = [\"10.9.0.7\"]", ""),
                NETPOL.to_string(),
                "pod `web-7`: field `addresses`: a pod without a `port` needs its addresses",
            ),
            (
                PODS.replace("addresses = [\"10.9.0.7\"]", "addresses = [\"10.9.0\"]"),
                NETPOL.to_string(),
                "pod `web-7`: field `addresses`: `10.9.0` is not an IP address",
            ),
            (
                format!("{PODS}\n[[namespace]]\nname = \"ops\"\n"),
                NETPOL.to_string(),
                "namespace `ops`: field `name`: defined twice",
            ),
            (
                PODS.to_string(),
                NETPOL.replace("5432", "Postgres"),
                "netpol.yaml: NetworkPolicy `db`: field `spec.ingress[0].ports[0].port`: `Postgres` is not a port name",
            ),
            (
                PODS.replace(
                    "port = \"pod1\"",
                    "port = \"pod1\"\ncontainer_ports = [{ name = \"pg_1\", port = 1 }]",
                ),
                NETPOL.to_string(),
                "pod `db-0`: field `container_ports[0].name`: `pg_1` is not a port name: it takes only a-z, 0-9 and -",
            ),
            (
                PODS.replace(
                    "port = \"pod1\"",
                    "port = \"pod1\"\ncontainer_ports = [{ name = \"pg\", port = 1 }, { name = \"pg\", port = 2 }]",
                ),
                NETPOL.to_string(),
                "pod `db-0`: field `container_ports[1].name`: `pg` is named twice",
            ),
            (
                PODS.replace(
                    "port = \"pod1\"",
                    "port = \"pod1\"\ncontainer_ports = [{ name = \"pg\", port = 0 }]",
                ),
                NETPOL.to_string(),
                "pod `db-0`: field `container_ports[0].port`: 0 is not a port (1-65535)",
            ),
            (
                PODS.replace(
                    "port = \"pod1\"",
                    "port = \"pod1\"\ncontainer_ports = [{ name = \"pg\", port = 1, protocol = \"udp\" }]",
                ),
                NETPOL.to_string(),
                "pod `db-0`: field `container_ports[0].protocol`: `udp` is not TCP, UDP or SCTP",
            ),
            (
                PODS.to_string(),
                NETPOL
                    .replace("ingress:", "ingress:\n  - from: [")
                    .replace("kind", "kind:"),
                "netpol.yaml: document 1: ",
            ),
            (
                format!("{PODS}\n[[policy]]\nendpoint = \"pod1\"\ndirection = \"ingress\"\n"),
                NETPOL.to_string(),
                "`[[policy]]` and `network_policies` cannot be mixed",
            ),
        ];
        for (pods, yaml, want) in cases {
            let e = with_yaml(&pods, &yaml)
                .err()
                .unwrap_or_else(|| panic!("accepted: {want}"));
            assert!(e.contains("router.toml:"), "{e}");
            assert!(e.contains(want), "got: {e}\nwant: {want}");
        }
        // A missing file is named.
        let e = parse(
            "/nonexistent/router.toml",
            &GOOD[..GOOD.find("[[policy]]").unwrap()].replace(
                "tunnel_endpoints = [\"192.0.2.1\"]",
                "tunnel_endpoints = [\"192.0.2.1\"]\nnetwork_policies = [\"gone.yaml\"]",
            ),
        )
        .err()
        .unwrap();
        assert!(e.contains("`/nonexistent/gone.yaml`: No such file"), "{e}");
    }
}
