//! VRFs, routes, nexthops, MPLS labels and VXLAN VNIs a running router takes over its
//! control socket (`vrf add|del`, `route add|del`, `nexthop add|del`, `label add|del`,
//! `vni add|del`), for route daemons, service controllers, overlay agents (which hand out
//! labels as workloads come and go, and bring tenants whose workloads live on other
//! nodes) and operators that change a few without editing and re-reading a file of
//! thousands. A command line is checked whole, then published at once: only the changed
//! prefixes are patched (microseconds in a big VRF: docs/fib.md); a changed nexthop has
//! the flows whose way passes it decided again.
//!
//! These live beside the file's. The file stays authoritative: a command may not add or
//! remove a VRF, route, label or VNI the file has, nor define a nexthop id the file uses; a
//! reload keeps the dynamic ones except those the new file takes over or leaves without a
//! VRF, port or nexthop they need, and names each one it drops. They are not written
//! anywhere: a restarted router has the file's only (a route daemon announces its own
//! again).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::config::{self, NexthopSpec, TunnelOptions};
use vrouter::dataplane::pipeline::{check_label_nexthop, overlay_neighbor_port};
use vrouter::fib::{Fib, FibBuilder, MAX_VRF, Neighbor, NeighborState, Nexthop, NexthopId, VrfId};
use vrouter::wire::ethernet::MacAddr;

/// One command of a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `route add vrf V PREFIX/LEN nexthop N`: adds the route, or changes its nexthop.
    RouteAdd {
        /// VRF, prefix and length.
        route: RouteKey,
        /// Where it goes.
        nexthop: NexthopId,
    },
    /// `route del vrf V PREFIX/LEN`.
    RouteDel(RouteKey),
    /// `nexthop add N ...`: defines the nexthop, or changes it.
    NexthopAdd {
        /// Its id, one the file does not use.
        id: NexthopId,
        /// What it is.
        nexthop: NexthopSpec,
    },
    /// `nexthop del N`, once no dynamic route, group or label uses it.
    NexthopDel(NexthopId),
    /// `label add L nexthop N`: packets arriving with MPLS label `L` are routed in the VRF
    /// nexthop `N` names (a `lookup_vrf` nexthop's, or a port nexthop's port's).
    LabelAdd {
        /// The label, one the file does not map.
        label: u32,
        /// Where its packets go.
        nexthop: NexthopId,
    },
    /// `label del L`.
    LabelDel(u32),
    /// `vni add V vrf R`: VXLAN packets of VNI `V` are routed in VRF `R`.
    VniAdd {
        /// The VNI, one the file does not map.
        vni: u32,
        /// Its VRF.
        vrf: VrfId,
    },
    /// `vni del V`.
    VniDel(u32),
    /// `vrf add V`: a VRF with no routes yet, for routes, VNIs and nexthops to use.
    VrfAdd(VrfId),
    /// `vrf del V`, once nothing dynamic uses it.
    VrfDel(VrfId),
    /// `neighbor add port NAME ADDR MAC` (a next hop's MAC, without ARP or neighbour
    /// discovery) or `neighbor add vni V ADDR MAC` (an overlay entry: VXLAN's inner
    /// destination MAC for `ADDR` in VNI `V`, as an EVPN agent learns it from a MAC/IP
    /// route).
    NeighborAdd {
        /// Its port or VNI.
        on: NeighborOn,
        /// The address.
        ip: IpAddr,
        /// Its MAC.
        mac: MacAddr,
    },
    /// `neighbor del port NAME ADDR` or `neighbor del vni V ADDR`.
    NeighborDel {
        /// Its port or VNI.
        on: NeighborOn,
        /// The address.
        ip: IpAddr,
    },
}

/// Where a neighbour entry is: on a port (by name, so that reloads that renumber ports
/// keep it), or in a VNI (an overlay entry).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum NeighborOn {
    /// On this port.
    Port(String),
    /// In this VNI.
    Vni(u32),
}

impl NeighborOn {
    /// The FIB's port number of its entries, with the ports `ports` (by number): a VNI's
    /// overlay pseudo-port, or the named port if it exists.
    fn port(&self, ports: &[String]) -> Option<u32> {
        match self {
            NeighborOn::Port(name) => port_named(ports, name),
            NeighborOn::Vni(vni) => Some(overlay_neighbor_port(*vni)),
        }
    }

    /// As the commands write it: `port NAME` or `vni V`.
    fn words(&self) -> String {
        match self {
            NeighborOn::Port(name) => format!("port {name}"),
            NeighborOn::Vni(vni) => format!("vni {vni}"),
        }
    }
}

impl std::fmt::Display for NeighborOn {
    /// As `show neighbors` writes it, after the address and MAC.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NeighborOn::Port(name) => write!(f, "on {name}"),
            NeighborOn::Vni(vni) => write!(f, "in vni {vni}"),
        }
    }
}

impl std::fmt::Display for Command {
    /// As a command line writes it: [`parse`] reads it back.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::RouteAdd {
                route: (vrf, prefix, len),
                nexthop,
            } => write!(f, "route add vrf {vrf} {prefix}/{len} nexthop {nexthop}"),
            Command::RouteDel((vrf, prefix, len)) => write!(f, "route del vrf {vrf} {prefix}/{len}"),
            Command::NexthopAdd { id, nexthop } => write!(f, "nexthop add {id} {}", nexthop.words()),
            Command::NexthopDel(id) => write!(f, "nexthop del {id}"),
            Command::LabelAdd { label, nexthop } => write!(f, "label add {label} nexthop {nexthop}"),
            Command::LabelDel(label) => write!(f, "label del {label}"),
            Command::VniAdd { vni, vrf } => write!(f, "vni add {vni} vrf {vrf}"),
            Command::VniDel(vni) => write!(f, "vni del {vni}"),
            Command::VrfAdd(vrf) => write!(f, "vrf add {vrf}"),
            Command::VrfDel(vrf) => write!(f, "vrf del {vrf}"),
            Command::NeighborAdd { on, ip, mac } => write!(f, "neighbor add {} {ip} {mac}", on.words()),
            Command::NeighborDel { on, ip } => write!(f, "neighbor del {} {ip}", on.words()),
        }
    }
}

/// A route's VRF, prefix and prefix length.
pub type RouteKey = (VrfId, IpAddr, u8);

/// The syntax, for error messages and the control socket's help.
pub const SYNTAX: &str = "route add vrf V PREFIX/LEN nexthop N | route del vrf V PREFIX/LEN | nexthop add N port NAME [gateway ADDR] | nexthop add N tunnel vxlan|mpls-udp|mpls-gre key K src ADDR dst ADDR [underlay_vrf V] [router_mac MAC] [dscp D|inherit] [udp_checksum zero|computed] | nexthop add N ecmp M[:WEIGHT],M[:WEIGHT],... | nexthop add N lookup_vrf V | nexthop add N discard | nexthop del N | label add L nexthop N | label del L | vni add V vrf R | vni del V | vrf add V | vrf del V | neighbor add port NAME|vni V ADDR MAC | neighbor del port NAME|vni V ADDR (several joined by `;` apply together, in order)";

/// Reads `route add ...; nexthop del ...; label add ...`: each command's words, in order.
pub fn parse(line: &str) -> Result<Vec<Command>, String> {
    let commands: Vec<Command> = line
        .split(';')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(parse_one)
        .collect::<Result<_, _>>()?;
    if commands.is_empty() {
        return Err(format!("no command; {SYNTAX}"));
    }
    Ok(commands)
}

fn parse_one(cmd: &str) -> Result<Command, String> {
    let words: Vec<&str> = cmd.split_whitespace().collect();
    let number = |word: &str, what: &str| -> Result<u32, String> {
        word.parse().map_err(|_| format!("`{cmd}`: `{word}` is not {what}"))
    };
    let ip = |word: &str| -> Result<IpAddr, String> {
        word.parse()
            .map_err(|_| format!("`{cmd}`: `{word}` is not an IP address"))
    };
    let key = |vrf: &str, prefix: &str| -> Result<RouteKey, String> {
        let (addr, len) = prefix
            .split_once('/')
            .ok_or_else(|| format!("`{cmd}`: `{prefix}` is not ADDRESS/LENGTH"))?;
        let len = len
            .parse()
            .map_err(|_| format!("`{cmd}`: `{len}` is not a prefix length"))?;
        Ok((number(vrf, "a VRF id")?, ip(addr)?, len))
    };
    let expected = || format!("`{cmd}`: expected {SYNTAX}");
    // Widths the headers carry, checked before anything is applied.
    let fits = |word: &str, what: &str, bits: u32| -> Result<u32, String> {
        let v = number(word, &format!("a {what}"))?;
        if v >= 1 << bits {
            return Err(format!("`{cmd}`: {what} {v} exceeds {bits} bits"));
        }
        Ok(v)
    };
    match words.as_slice() {
        ["label", "add", l, "nexthop", nh] => Ok(Command::LabelAdd {
            label: fits(l, "label", 20)?,
            nexthop: number(nh, "a nexthop id")?,
        }),
        ["label", "del", l] => Ok(Command::LabelDel(fits(l, "label", 20)?)),
        ["vni", "add", v, "vrf", vrf] => Ok(Command::VniAdd {
            vni: fits(v, "VNI", 24)?,
            vrf: number(vrf, "a VRF id")?,
        }),
        ["vni", "del", v] => Ok(Command::VniDel(fits(v, "VNI", 24)?)),
        ["vrf", "add", v] => match number(v, "a VRF id")? {
            v if v > MAX_VRF => Err(format!("`{cmd}`: VRF {v} exceeds the maximum {MAX_VRF}")),
            v => Ok(Command::VrfAdd(v)),
        },
        ["vrf", "del", v] => Ok(Command::VrfDel(number(v, "a VRF id")?)),
        ["neighbor", verb @ ("add" | "del"), kind, at, addr, mac @ ..] => {
            let on = match *kind {
                "port" => NeighborOn::Port(at.to_string()),
                "vni" => NeighborOn::Vni(fits(at, "VNI", 24)?),
                _ => return Err(expected()),
            };
            let ip = ip(addr)?;
            match (*verb, mac) {
                ("add", [mac]) => {
                    let mac = config::parse_mac(mac).map_err(|why| format!("`{cmd}`: {why}"))?;
                    Ok(Command::NeighborAdd { on, ip, mac })
                }
                ("del", []) => Ok(Command::NeighborDel { on, ip }),
                _ => Err(expected()),
            }
        }
        ["route", "add", "vrf", vrf, prefix, "nexthop", nh] => Ok(Command::RouteAdd {
            route: key(vrf, prefix)?,
            nexthop: number(nh, "a nexthop id")?,
        }),
        ["route", "del", "vrf", vrf, prefix] => Ok(Command::RouteDel(key(vrf, prefix)?)),
        ["nexthop", "del", id] => Ok(Command::NexthopDel(number(id, "a nexthop id")?)),
        ["nexthop", "add", id, spec @ ..] => {
            let id = number(id, "a nexthop id")?;
            let nexthop = match *spec {
                ["port", name] => NexthopSpec::Port {
                    name: name.into(),
                    gateway: None,
                },
                ["port", name, "gateway", gw] => NexthopSpec::Port {
                    name: name.into(),
                    gateway: Some(ip(gw)?),
                },
                ["tunnel", kind, "key", k, "src", src, "dst", dst, ref rest @ ..] => {
                    let mut o = TunnelOptions::default();
                    for option in rest.chunks(2) {
                        let bad = |field: &str, why: String| format!("`{cmd}`: {field}: {why}");
                        match *option {
                            ["underlay_vrf", vrf] => o.underlay_vrf = number(vrf, "a VRF id")?,
                            ["router_mac", mac] => {
                                o.router_mac = Some(config::parse_mac(mac).map_err(|why| bad("router_mac", why))?);
                            }
                            ["dscp", d] => o.dscp = d.parse().map_err(|why| bad("dscp", why))?,
                            ["udp_checksum", c] => {
                                o.zero_udp_checksum =
                                    config::parse_udp_checksum(c).map_err(|why| bad("udp_checksum", why))?;
                            }
                            _ => return Err(expected()),
                        }
                    }
                    let k = number(k, "a VNI or label")?;
                    let t = config::tunnel(kind, k, ip(src)?, ip(dst)?, o)
                        .map_err(|(field, why)| format!("`{cmd}`: {field}: {why}"))?;
                    NexthopSpec::Tunnel(t)
                }
                ["ecmp", members] => {
                    let m = members
                        .split(',')
                        .map(|m| {
                            let (id, w) = m.split_once(':').unwrap_or((m, "1"));
                            let w = config::weight(number(w, "a weight")?).map_err(|why| format!("`{cmd}`: {why}"))?;
                            Ok((number(id, "a nexthop id")?, w))
                        })
                        .collect::<Result<Vec<_>, String>>()?;
                    if m.len() > 255 {
                        return Err(format!("`{cmd}`: {} members (1-255 allowed)", m.len()));
                    }
                    NexthopSpec::Ecmp(m)
                }
                ["lookup_vrf", vrf] => NexthopSpec::LookupVrf(number(vrf, "a VRF id")?),
                ["discard"] => NexthopSpec::Discard,
                _ => return Err(expected()),
            };
            Ok(Command::NexthopAdd { id, nexthop })
        }
        _ => Err(expected()),
    }
}

/// How many VRFs, routes, nexthops, labels and VNIs are dynamic, and how many command lines
/// were applied and refused.
#[derive(Debug, Default)]
pub struct RouteCounters {
    /// Dynamic routes now.
    pub routes: AtomicUsize,
    /// Dynamic nexthops now.
    pub nexthops: AtomicUsize,
    /// Dynamic labels now.
    pub labels: AtomicUsize,
    /// Dynamic VNIs now.
    pub vnis: AtomicUsize,
    /// Dynamic VRFs now.
    pub vrfs: AtomicUsize,
    /// Dynamic neighbour entries now.
    pub neighbors: AtomicUsize,
    /// Lines applied.
    pub applied: AtomicU64,
    /// Lines refused: unreadable, or failing a check (nothing of them applied).
    pub refused: AtomicU64,
}

impl RouteCounters {
    /// Counts a line applied, or refused.
    pub fn line(&self, applied: bool) {
        let c = if applied { &self.applied } else { &self.refused };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// What was added by command.
#[derive(Debug, Clone, Default, PartialEq)]
struct Dynamic {
    /// Routes, with their nexthops.
    routes: BTreeMap<RouteKey, NexthopId>,
    nexthops: BTreeMap<NexthopId, NexthopSpec>,
    /// Labels, with their nexthops.
    labels: BTreeMap<u32, NexthopId>,
    /// VNIs, with their VRFs.
    vnis: BTreeMap<u32, VrfId>,
    vrfs: BTreeSet<VrfId>,
    /// Neighbour entries, with their MACs.
    neighbors: BTreeMap<(NeighborOn, IpAddr), MacAddr>,
}

/// Dynamic VRFs, routes, nexthops, labels and VNIs put aside by [`Routing::saved`].
pub struct Saved(Dynamic);

/// The router's routing state: the builder all publishes go through (the file's VRFs,
/// routes, nexthops, labels and VNIs and the dynamic ones), and which are dynamic.
#[derive(Default)]
pub struct Routing {
    /// What is published.
    pub builder: FibBuilder,
    /// What of it was added by command.
    dynamic: Dynamic,
    /// The ports' names by number, for nexthops that name theirs.
    ports: Vec<String>,
    /// Their counts and the lines applied, for readers that must not wait for a reload
    /// holding the state.
    counters: Arc<RouteCounters>,
}

/// What one line changed.
#[derive(Default)]
struct Tally {
    routes_added: usize,
    routes_removed: usize,
    nexthops_set: usize,
    nexthops_removed: usize,
    labels_set: usize,
    labels_removed: usize,
    vnis_set: usize,
    vnis_removed: usize,
    vrfs_added: usize,
    vrfs_removed: usize,
    neighbors_set: usize,
    neighbors_removed: usize,
}

/// The number of the port named `name` among `ports`.
fn port_named(ports: &[String], name: &str) -> Option<u32> {
    ports.iter().position(|p| p == name).map(|i| i as u32)
}

/// A neighbour entry the control plane vouches for.
fn reachable(mac: MacAddr) -> Neighbor {
    Neighbor {
        mac,
        state: NeighborState::Reachable,
    }
}

fn is_group(n: &Nexthop) -> bool {
    matches!(n, Nexthop::Ecmp { .. })
}

/// Why `del` command `what` found no dynamic `kind` to remove: the file `files` (says what
/// it does with it), or nothing at all.
fn not_dynamic(what: &str, files: Option<&str>, kind: &str) -> String {
    match files {
        Some(does) => format!("{what}: the config file {does}; change it there"),
        None => format!("{what}: no such dynamic {kind}"),
    }
}

/// A dynamic ECMP group among `dynamic` that holds nexthop `id`, if one does.
fn holder(dynamic: &BTreeMap<NexthopId, NexthopSpec>, id: NexthopId) -> Option<NexthopId> {
    dynamic
        .iter()
        .find(|(_, s)| matches!(s, NexthopSpec::Ecmp(m) if m.iter().any(|x| x.0 == id)))
        .map(|(&g, _)| g)
}

/// Something dynamic in `d` that needs VRF `vrf`, named, if anything does.
fn user_of(d: &Dynamic, vrf: VrfId) -> Option<String> {
    if let Some((_, prefix, len)) = d.routes.keys().find(|k| k.0 == vrf) {
        return Some(format!("route vrf {vrf} {prefix}/{len}"));
    }
    if let Some(v) = d.vnis.iter().find(|(_, r)| **r == vrf).map(|(v, _)| v) {
        return Some(format!("VNI {v}"));
    }
    d.nexthops
        .iter()
        .find(|(_, spec)| match spec {
            NexthopSpec::LookupVrf(v) => *v == vrf,
            NexthopSpec::Tunnel(Nexthop::Tunnel { underlay_vrf, .. }) => *underlay_vrf == vrf,
            _ => false,
        })
        .map(|(id, _)| format!("nexthop {id}"))
}

impl Routing {
    /// Starts from a file's routes and nexthops (`ports`: its ports' names by number),
    /// with no dynamic ones.
    pub fn new(builder: FibBuilder, ports: Vec<String>) -> Self {
        Routing {
            builder,
            ports,
            ..Routing::default()
        }
    }

    /// How many routes are dynamic.
    pub fn dynamic_count(&self) -> usize {
        self.dynamic.routes.len()
    }

    /// How many nexthops are dynamic.
    pub fn dynamic_nexthops(&self) -> usize {
        self.dynamic.nexthops.len()
    }

    /// How many labels and VNIs are dynamic.
    pub fn dynamic_tunnel_ids(&self) -> (usize, usize) {
        (self.dynamic.labels.len(), self.dynamic.vnis.len())
    }

    /// How many VRFs are dynamic.
    pub fn dynamic_vrfs(&self) -> usize {
        self.dynamic.vrfs.len()
    }

    /// How many neighbour entries are dynamic.
    pub fn dynamic_neighbors(&self) -> usize {
        self.dynamic.neighbors.len()
    }

    /// The counters, kept current without the state's lock (statistics and metrics read
    /// them while a reload holds the lock).
    pub fn counters(&self) -> Arc<RouteCounters> {
        self.counters.clone()
    }

    fn counted(&mut self) {
        let (d, c) = (&self.dynamic, &self.counters);
        c.routes.store(d.routes.len(), Ordering::Relaxed);
        c.nexthops.store(d.nexthops.len(), Ordering::Relaxed);
        c.labels.store(d.labels.len(), Ordering::Relaxed);
        c.vnis.store(d.vnis.len(), Ordering::Relaxed);
        c.vrfs.store(d.vrfs.len(), Ordering::Relaxed);
        c.neighbors.store(d.neighbors.len(), Ordering::Relaxed);
    }

    fn port_index(&self, name: &str) -> Option<u32> {
        port_named(&self.ports, name)
    }

    /// The FIB's port number of neighbour entries `on` (a VNI's overlay pseudo-port), if
    /// its port exists.
    fn neighbor_port(&self, on: &NeighborOn) -> Option<u32> {
        on.port(&self.ports)
    }

    /// Checks every command against the state (and the commands before it), then applies
    /// them all and publishes once; on any error nothing changes. Returns the status line.
    /// Counted as a line applied or refused.
    pub fn apply(&mut self, commands: &[Command], fib: &Fib) -> Result<String, String> {
        let applied = self.apply_checked(commands, fib);
        self.counters.line(applied.is_ok());
        applied
    }

    fn apply_checked(&mut self, commands: &[Command], fib: &Fib) -> Result<String, String> {
        let mut d = self.dynamic.clone();
        let mut n = Tally::default();
        // The routes the line names: only they are compared below, so a line costs its
        // own length in a big dynamic table, not the table's.
        let mut touched = BTreeSet::new();
        for c in commands {
            match c {
                &Command::RouteAdd {
                    route: (vrf, prefix, len),
                    nexthop,
                } => {
                    let what = format!("route add vrf {vrf} {prefix}/{len}");
                    FibBuilder::check_prefix(vrf, prefix, len).map_err(|e| format!("{what}: {e}"))?;
                    if !self.vrf_exists(&d, vrf) {
                        return Err(format!("{what}: vrf: VRF {vrf} does not exist"));
                    }
                    if self.kind(&d.nexthops, nexthop).is_none() {
                        return Err(format!("{what}: nexthop {nexthop} is not defined"));
                    }
                    if self.file_routes((vrf, prefix, len)) {
                        return Err(format!("{what}: the config file routes this prefix; change it there"));
                    }
                    d.routes.insert((vrf, prefix, len), nexthop);
                    touched.insert((vrf, prefix, len));
                    n.routes_added += 1;
                }
                &Command::RouteDel(key @ (vrf, prefix, len)) => {
                    let what = format!("route del vrf {vrf} {prefix}/{len}");
                    if d.routes.remove(&key).is_none() {
                        let files = self.file_routes(key).then_some("routes this prefix");
                        return Err(not_dynamic(&what, files, "route"));
                    }
                    touched.insert(key);
                    n.routes_removed += 1;
                }
                Command::NexthopAdd { id, nexthop } => {
                    let what = format!("nexthop add {id}");
                    if self.file_defines(*id) {
                        return Err(format!("{what}: the config file defines this nexthop; change it there"));
                    }
                    self.check(&d, *id, nexthop).map_err(|e| format!("{what}: {e}"))?;
                    if let Some(l) = d.labels.iter().find(|(_, nh)| **nh == *id).map(|(l, _)| l) {
                        let built = nexthop.build(|name| self.port_index(name))?;
                        check_label_nexthop(&built).map_err(|e| format!("{what}: label {l} goes to it, and {e}"))?;
                    }
                    d.nexthops.insert(*id, nexthop.clone());
                    n.nexthops_set += 1;
                }
                &Command::NexthopDel(id) => {
                    let what = format!("nexthop del {id}");
                    if d.nexthops.remove(&id).is_none() {
                        let files = self.file_defines(id).then_some("defines this nexthop");
                        return Err(not_dynamic(&what, files, "nexthop"));
                    }
                    if let Some((vrf, prefix, len)) = d.routes.iter().find(|(_, nh)| **nh == id).map(|(k, _)| k) {
                        return Err(format!("{what}: route vrf {vrf} {prefix}/{len} goes to it"));
                    }
                    if let Some(g) = holder(&d.nexthops, id) {
                        return Err(format!("{what}: ECMP group {g} holds it"));
                    }
                    if let Some(l) = d.labels.iter().find(|(_, nh)| **nh == id).map(|(l, _)| l) {
                        return Err(format!("{what}: label {l} goes to it"));
                    }
                    n.nexthops_removed += 1;
                }
                &Command::LabelAdd { label, nexthop } => {
                    let what = format!("label add {label}");
                    if self.file_labels(label) {
                        return Err(format!("{what}: the config file maps this label; change it there"));
                    }
                    let target = match d.nexthops.get(&nexthop) {
                        Some(spec) => Some(spec.build(|name| self.port_index(name))?),
                        None if self.file_defines(nexthop) => self.builder.nexthop(nexthop).cloned(),
                        None => None,
                    };
                    let target = target.ok_or_else(|| format!("{what}: nexthop {nexthop} is not defined"))?;
                    check_label_nexthop(&target).map_err(|e| format!("{what}: {e}"))?;
                    d.labels.insert(label, nexthop);
                    n.labels_set += 1;
                }
                &Command::LabelDel(label) => {
                    if d.labels.remove(&label).is_none() {
                        let files = self.file_labels(label).then_some("maps this label");
                        return Err(not_dynamic(&format!("label del {label}"), files, "label"));
                    }
                    n.labels_removed += 1;
                }
                &Command::VniAdd { vni, vrf } => {
                    let what = format!("vni add {vni}");
                    if self.file_vnis(vni) {
                        return Err(format!("{what}: the config file maps this VNI; change it there"));
                    }
                    if !self.vrf_exists(&d, vrf) {
                        return Err(format!("{what}: VRF {vrf} does not exist"));
                    }
                    d.vnis.insert(vni, vrf);
                    n.vnis_set += 1;
                }
                &Command::VniDel(vni) => {
                    if d.vnis.remove(&vni).is_none() {
                        let files = self.file_vnis(vni).then_some("maps this VNI");
                        return Err(not_dynamic(&format!("vni del {vni}"), files, "VNI"));
                    }
                    n.vnis_removed += 1;
                }
                &Command::VrfAdd(vrf) => {
                    if self.file_vrfs(vrf) {
                        return Err(format!(
                            "vrf add {vrf}: the config file defines this VRF; change it there"
                        ));
                    }
                    d.vrfs.insert(vrf);
                    n.vrfs_added += 1;
                }
                &Command::VrfDel(vrf) => {
                    let what = format!("vrf del {vrf}");
                    if !d.vrfs.remove(&vrf) {
                        let files = self.file_vrfs(vrf).then_some("defines this VRF");
                        return Err(not_dynamic(&what, files, "VRF"));
                    }
                    if let Some(user) = user_of(&d, vrf) {
                        return Err(format!("{what}: {user} uses it"));
                    }
                    n.vrfs_removed += 1;
                }
                Command::NeighborAdd { on, ip, mac } => {
                    let what = format!("neighbor add {} {ip}", on.words());
                    if let NeighborOn::Port(name) = on
                        && self.port_index(name).is_none()
                    {
                        return Err(format!("{what}: no port named `{name}`"));
                    }
                    if self.file_neighbors(on, *ip) {
                        return Err(format!("{what}: the config file sets this neighbour; change it there"));
                    }
                    d.neighbors.insert((on.clone(), *ip), *mac);
                    n.neighbors_set += 1;
                }
                Command::NeighborDel { on, ip } => {
                    if d.neighbors.remove(&(on.clone(), *ip)).is_none() {
                        let files = self.file_neighbors(on, *ip).then_some("sets this neighbour");
                        return Err(not_dynamic(
                            &format!("neighbor del {} {ip}", on.words()),
                            files,
                            "neighbour",
                        ));
                    }
                    n.neighbors_removed += 1;
                }
            }
        }
        let old = &self.dynamic;
        for &vrf in d.vrfs.difference(&old.vrfs) {
            self.builder.add_vrf(vrf).map_err(|e| e.to_string())?;
        }
        for key @ &(vrf, prefix, len) in &touched {
            if old.routes.contains_key(key) && !d.routes.contains_key(key) {
                self.builder.remove_route(vrf, prefix, len);
            }
        }
        for label in old.labels.keys().filter(|l| !d.labels.contains_key(l)) {
            self.builder.remove_label(*label);
        }
        for vni in old.vnis.keys().filter(|v| !d.vnis.contains_key(v)) {
            self.builder.remove_vni(*vni);
        }
        for (on, ip) in old.neighbors.keys().filter(|k| !d.neighbors.contains_key(k)) {
            if let Some(port) = self.neighbor_port(on) {
                self.builder.remove_neighbor(port, *ip);
            }
        }
        for (key @ (on, ip), &mac) in &d.neighbors {
            if let Some(port) = self.neighbor_port(on)
                && old.neighbors.get(key) != Some(&mac)
            {
                self.builder.set_neighbor(port, *ip, reachable(mac));
            }
        }
        // Members before the groups that hold them.
        for groups in [false, true] {
            for (&id, spec) in &d.nexthops {
                if matches!(spec, NexthopSpec::Ecmp(_)) == groups && old.nexthops.get(&id) != Some(spec) {
                    let nh = spec.build(|name| self.port_index(name))?;
                    self.builder
                        .set_nexthop(id, nh)
                        .map_err(|e| format!("nexthop add {id}: {e}"))?;
                }
            }
        }
        for key @ &(vrf, prefix, len) in &touched {
            if let Some(&nexthop) = d.routes.get(key)
                && old.routes.get(key) != Some(&nexthop)
            {
                self.builder
                    .add_route(vrf, prefix, len, nexthop)
                    .map_err(|e| format!("route add: {e}"))?;
            }
        }
        // Widths were checked when the line was read.
        for (&label, &nexthop) in &d.labels {
            if old.labels.get(&label) != Some(&nexthop) {
                self.builder.set_label(label, nexthop).map_err(|e| e.to_string())?;
            }
        }
        for (&vni, &vrf) in &d.vnis {
            if old.vnis.get(&vni) != Some(&vrf) {
                self.builder.set_vni(vni, vrf).map_err(|e| e.to_string())?;
            }
        }
        for id in old.nexthops.keys() {
            if !d.nexthops.contains_key(id) {
                self.builder.remove_nexthop(*id);
            }
        }
        // Last: nothing dynamic is left in them (checked above).
        for &vrf in old.vrfs.difference(&d.vrfs) {
            self.builder.remove_vrf(vrf);
        }
        self.dynamic = d;
        self.counted();
        let g = self.builder.publish(fib).map_err(|e| e.to_string())?;
        let d = &self.dynamic;
        let mut status = format!(
            "routing generation {g}: {} added, {} removed; {} dynamic routes; nexthops {} set, {} removed; {} dynamic nexthops",
            n.routes_added,
            n.routes_removed,
            d.routes.len(),
            n.nexthops_set,
            n.nexthops_removed,
            d.nexthops.len()
        );
        if n.labels_set + n.labels_removed + n.vnis_set + n.vnis_removed > 0 {
            status += &format!(
                "; labels {} set, {} removed; {} dynamic labels; vnis {} set, {} removed; {} dynamic vnis",
                n.labels_set,
                n.labels_removed,
                d.labels.len(),
                n.vnis_set,
                n.vnis_removed,
                d.vnis.len()
            );
        }
        // What the line did to VRFs and to neighbours, where it touched them.
        let mut tell = |what: &str, verb: &str, (done, removed): (usize, usize), now: usize| {
            if done + removed > 0 {
                status += &format!("; {what} {done} {verb}, {removed} removed; {now} dynamic {what}");
            }
        };
        tell("vrfs", "added", (n.vrfs_added, n.vrfs_removed), d.vrfs.len());
        tell(
            "neighbors",
            "set",
            (n.neighbors_set, n.neighbors_removed),
            d.neighbors.len(),
        );
        Ok(status)
    }

    /// Whether VRF `vrf` exists with the dynamic state `d`: the file's, or added by
    /// command (and not removed).
    fn vrf_exists(&self, d: &Dynamic, vrf: VrfId) -> bool {
        d.vrfs.contains(&vrf) || self.file_vrfs(vrf)
    }

    /// Whether `vrf` is one of the file's (in the builder, not dynamic).
    fn file_vrfs(&self, vrf: VrfId) -> bool {
        !self.dynamic.vrfs.contains(&vrf) && self.builder.has_vrf(vrf)
    }

    /// Whether `label` is one of the file's (in the builder, not dynamic).
    fn file_labels(&self, label: u32) -> bool {
        !self.dynamic.labels.contains_key(&label) && self.builder.label(label).is_some()
    }

    /// Whether the neighbour entry of `ip` `on` a port or VNI is one of the file's (in the
    /// builder, not dynamic).
    fn file_neighbors(&self, on: &NeighborOn, ip: IpAddr) -> bool {
        !self.dynamic.neighbors.contains_key(&(on.clone(), ip))
            && self
                .neighbor_port(on)
                .is_some_and(|port| self.builder.neighbor(port, ip).is_some())
    }

    /// Whether `vni` is one of the file's (in the builder, not dynamic).
    fn file_vnis(&self, vni: u32) -> bool {
        !self.dynamic.vnis.contains_key(&vni) && self.builder.vni(vni).is_some()
    }

    /// Whether nexthop `id` is one of the file's (in the builder, not dynamic).
    fn file_defines(&self, id: NexthopId) -> bool {
        !self.dynamic.nexthops.contains_key(&id) && self.builder.has_nexthop(id)
    }

    /// Whether `id` is defined with the dynamic nexthops `dynamic` (`Some(true)`: an ECMP
    /// group), or not (`None`).
    fn kind(&self, dynamic: &BTreeMap<NexthopId, NexthopSpec>, id: NexthopId) -> Option<bool> {
        match dynamic.get(&id) {
            Some(spec) => Some(matches!(spec, NexthopSpec::Ecmp(_))),
            None if self.file_defines(id) => self.builder.nexthop(id).map(is_group),
            None => None,
        }
    }

    /// Why `spec` may not be nexthop `id` with the dynamic state `d`, if not.
    fn check(&self, d: &Dynamic, id: NexthopId, spec: &NexthopSpec) -> Result<(), String> {
        let dynamic = &d.nexthops;
        match spec {
            NexthopSpec::Port { .. } => {
                spec.build(|name| self.port_index(name))?;
            }
            NexthopSpec::Tunnel(Nexthop::Tunnel { underlay_vrf, .. }) if !self.vrf_exists(d, *underlay_vrf) => {
                return Err(format!("underlay VRF {underlay_vrf} does not exist"));
            }
            NexthopSpec::LookupVrf(vrf) if !self.vrf_exists(d, *vrf) => {
                return Err(format!("VRF {vrf} does not exist"));
            }
            NexthopSpec::Ecmp(members) => {
                for &(m, _) in members {
                    match self.kind(dynamic, m) {
                        _ if m == id => return Err("a group may not hold itself".into()),
                        None => return Err(format!("member {m} is not defined")),
                        Some(true) => return Err(format!("member {m} is itself an ECMP group")),
                        Some(false) => {}
                    }
                }
                if let Some(g) = holder(dynamic, id) {
                    return Err(format!("ECMP group {g} holds it, and a group may not hold a group"));
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Whether the route for `key` is one of the file's (in the builder, not dynamic).
    pub fn file_routes(&self, (vrf, prefix, len): RouteKey) -> bool {
        !self.dynamic.routes.contains_key(&(vrf, prefix, len)) && self.builder.route(vrf, prefix, len).is_some()
    }

    /// Takes a reloaded file's VRFs, routes, nexthops, labels and VNIs (`ports`: its ports'
    /// names by number), with the dynamic ones the file leaves room for, into the builder
    /// (nothing is published). Returns why each dropped one went.
    pub fn take_file(&mut self, mut file: FibBuilder, ports: Vec<String>) -> Vec<String> {
        self.ports = ports;
        let mut dropped = Vec::new();
        // VRFs first: what else is dynamic may be in them.
        self.dynamic.vrfs.retain(|&vrf| {
            if file.has_vrf(vrf) {
                dropped.push(format!("dynamic VRF {vrf} dropped: the file defines it now"));
                return false;
            }
            file.add_vrf(vrf).is_ok()
        });
        let mut kept = BTreeMap::new();
        // Members before the groups that hold them.
        for groups in [false, true] {
            for (&id, spec) in &self.dynamic.nexthops {
                if matches!(spec, NexthopSpec::Ecmp(_)) != groups {
                    continue;
                }
                let set = if file.has_nexthop(id) {
                    Err("the file defines it now".to_string())
                } else {
                    self.reloaded(&file, spec)
                        .and_then(|nh| file.set_nexthop(id, nh).map_err(|e| e.to_string()))
                };
                match set {
                    Ok(()) => {
                        kept.insert(id, spec.clone());
                    }
                    Err(why) => dropped.push(format!("dynamic nexthop {id} dropped: {why}")),
                }
            }
        }
        self.dynamic.nexthops = kept;
        self.dynamic.routes.retain(|&(vrf, prefix, len), &mut nexthop| {
            let why = if file.route(vrf, prefix, len).is_some() {
                Some("the file routes it now".to_string())
            } else if !file.has_nexthop(nexthop) {
                Some(format!("nexthop {nexthop} is gone"))
            } else {
                file.add_route(vrf, prefix, len, nexthop).err().map(|e| e.to_string())
            };
            if let Some(why) = &why {
                dropped.push(format!("dynamic route vrf {vrf} {prefix}/{len} dropped: {why}"));
            }
            why.is_none()
        });
        self.dynamic.labels.retain(|&label, &mut nexthop| {
            let why = if file.label(label).is_some() {
                Some("the file maps it now".to_string())
            } else if let Some(nh) = file.nexthop(nexthop) {
                check_label_nexthop(nh)
                    .map_err(|e| format!("nexthop {nexthop}: {e}"))
                    .and_then(|()| file.set_label(label, nexthop).map_err(|e| e.to_string()))
                    .err()
            } else {
                Some(format!("nexthop {nexthop} is gone"))
            };
            if let Some(why) = &why {
                dropped.push(format!("dynamic label {label} dropped: {why}"));
            }
            why.is_none()
        });
        self.dynamic.vnis.retain(|&vni, &mut vrf| {
            let why = if file.vni(vni).is_some() {
                Some("the file maps it now".to_string())
            } else if !file.has_vrf(vrf) {
                Some(format!("VRF {vrf} is gone"))
            } else {
                file.set_vni(vni, vrf).err().map(|e| e.to_string())
            };
            if let Some(why) = &why {
                dropped.push(format!("dynamic VNI {vni} dropped: {why}"));
            }
            why.is_none()
        });
        let ports = &self.ports;
        self.dynamic.neighbors.retain(|(on, ip), &mut mac| {
            let why = match on.port(ports) {
                None => Some(format!("{} is gone", on.words())),
                Some(port) if file.neighbor(port, *ip).is_some() => Some("the file sets it now".to_string()),
                Some(port) => {
                    file.set_neighbor(port, *ip, reachable(mac));
                    None
                }
            };
            if let Some(why) = &why {
                dropped.push(format!("dynamic neighbour {ip} {on} dropped: {why}"));
            }
            why.is_none()
        });
        self.builder.replace_with(file);
        self.counted();
        dropped
    }

    /// `spec` as a reloaded `file` has room for it: its port, underlay VRF and members
    /// there.
    fn reloaded(&self, file: &FibBuilder, spec: &NexthopSpec) -> Result<Nexthop, String> {
        let gone = |members: &[(NexthopId, u32)]| members.iter().find(|&&(m, _)| !file.has_nexthop(m)).map(|m| m.0);
        match spec {
            NexthopSpec::Tunnel(Nexthop::Tunnel { underlay_vrf, .. }) if !file.has_vrf(*underlay_vrf) => {
                Err(format!("underlay VRF {underlay_vrf} is gone"))
            }
            NexthopSpec::LookupVrf(vrf) if !file.has_vrf(*vrf) => Err(format!("VRF {vrf} is gone")),
            NexthopSpec::Ecmp(members) if let Some(m) = gone(members) => Err(format!("member {m} is gone")),
            _ => spec.build(|name| self.port_index(name)),
        }
    }

    /// The route `dst` takes in `vrf` (`route get`): the longest prefix holding it, its
    /// nexthop, and whether it was added by command.
    pub fn route_for(&self, vrf: VrfId, dst: IpAddr) -> Option<(RouteKey, NexthopId, bool)> {
        let (prefix, len, nexthop) = self.builder.longest_match(vrf, dst)?;
        let key = (vrf, prefix, len);
        Some((key, nexthop, self.dynamic.routes.contains_key(&key)))
    }

    /// The dynamic state as the commands that make it again, in an order one line of
    /// them applies in (VRFs, nexthops with members before groups, routes, labels, VNIs,
    /// neighbours): `show commands`, to save it and replay it into a restarted router.
    /// Nexthops `keep` refuses are left out, with the routes, groups and labels that use
    /// them (the kernel routes follower's, which it makes again itself).
    pub fn commands(&self, keep: impl Fn(NexthopId) -> bool) -> Vec<Command> {
        let d = &self.dynamic;
        let kept = |id: &NexthopId| {
            keep(*id) && !matches!(d.nexthops.get(id), Some(NexthopSpec::Ecmp(m)) if m.iter().any(|x| !keep(x.0)))
        };
        let mut out: Vec<Command> = d.vrfs.iter().map(|&v| Command::VrfAdd(v)).collect();
        for groups in [false, true] {
            out.extend(
                d.nexthops
                    .iter()
                    .filter(|(id, spec)| matches!(spec, NexthopSpec::Ecmp(_)) == groups && kept(id))
                    .map(|(&id, spec)| Command::NexthopAdd {
                        id,
                        nexthop: spec.clone(),
                    }),
            );
        }
        out.extend(
            d.routes
                .iter()
                .filter(|(_, nh)| kept(nh))
                .map(|(&route, &nexthop)| Command::RouteAdd { route, nexthop }),
        );
        out.extend(
            d.labels
                .iter()
                .filter(|(_, nh)| kept(nh))
                .map(|(&label, &nexthop)| Command::LabelAdd { label, nexthop }),
        );
        out.extend(d.vnis.iter().map(|(&vni, &vrf)| Command::VniAdd { vni, vrf }));
        out.extend(d.neighbors.iter().map(|((on, ip), &mac)| Command::NeighborAdd {
            on: on.clone(),
            ip: *ip,
            mac,
        }));
        out
    }

    /// The nexthop of dynamic route `key`, if there is one.
    pub fn dynamic_route(&self, key: RouteKey) -> Option<NexthopId> {
        self.dynamic.routes.get(&key).copied()
    }

    /// The dynamic VRFs, routes, nexthops, labels and VNIs as they are, for
    /// [`Routing::restore`].
    pub fn saved(&self) -> Saved {
        Saved(self.dynamic.clone())
    }

    /// Makes `saved` the dynamic VRFs, routes, nexthops, labels and VNIs again, for when the file
    /// that dropped some is given up (its ports did not start): the next
    /// [`Routing::take_file`] takes them.
    pub fn restore(&mut self, saved: Saved) {
        self.dynamic = saved.0;
        self.counted();
    }

    /// `show routes` lines for the dynamic routes.
    pub fn listing(&self) -> impl Iterator<Item = String> + '_ {
        self.dynamic
            .routes
            .iter()
            .map(|((vrf, prefix, len), nh)| format!("vrf {vrf} {prefix}/{len} -> nexthop {nh} dynamic"))
    }

    /// `show nexthops` lines for the dynamic nexthops.
    pub fn nexthop_listing(&self) -> impl Iterator<Item = String> + '_ {
        self.dynamic
            .nexthops
            .iter()
            .map(|(&id, spec)| format!("{} dynamic", spec.describe(id)))
    }

    /// `show labels` lines for the dynamic labels.
    pub fn label_listing(&self) -> impl Iterator<Item = String> + '_ {
        self.dynamic
            .labels
            .iter()
            .map(|(l, nh)| format!("label {l} -> nexthop {nh} dynamic"))
    }

    /// `show vrfs` lines for the dynamic VRFs.
    pub fn vrf_listing(&self) -> impl Iterator<Item = String> + '_ {
        self.dynamic.vrfs.iter().map(|v| format!("{v} dynamic"))
    }

    /// `show neighbors` lines for the dynamic neighbour entries.
    pub fn neighbor_listing(&self) -> impl Iterator<Item = String> + '_ {
        self.dynamic
            .neighbors
            .iter()
            .map(|((on, ip), mac)| format!("{ip} {mac} {on} dynamic"))
    }

    /// `show vnis` lines for the dynamic VNIs.
    pub fn vni_listing(&self) -> impl Iterator<Item = String> + '_ {
        self.dynamic
            .vnis
            .iter()
            .map(|(v, vrf)| format!("vni {v} -> vrf {vrf} dynamic"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vrouter::fib::{Nexthop, OuterDscp};

    /// VRFs 0 and 1, nexthops 1 and 2, and the file's route 10.0.1.0/24 -> 1 in VRF 1.
    fn file() -> FibBuilder {
        let mut b = FibBuilder::new();
        b.add_vrf(0).unwrap();
        b.add_vrf(1).unwrap();
        for id in [1, 2] {
            b.set_nexthop(id, Nexthop::Discard).unwrap();
        }
        b.add_route(1, "10.0.1.0".parse().unwrap(), 24, 1).unwrap();
        b
    }

    /// The ports `a` and `b`.
    fn ports() -> Vec<String> {
        vec!["a".into(), "b".into()]
    }

    fn started() -> (Routing, Fib) {
        let fib = Fib::new();
        let mut r = Routing::new(file(), ports());
        r.builder.publish(&fib).unwrap();
        (r, fib)
    }

    fn run(r: &mut Routing, fib: &Fib, line: &str) -> Result<String, String> {
        r.apply(&parse(line)?, fib)
    }

    /// Each line is refused by `apply` with a message holding its text, and changes
    /// nothing: no publish, the same dynamic routes, nexthops, labels and VNIs.
    fn refused_whole(r: &mut Routing, fib: &Fib, cases: &[(&str, &str)]) {
        let (g, before) = (fib.snapshot().generation(), r.dynamic.clone());
        for &(line, says) in cases {
            let e = run(r, fib, line).unwrap_err();
            assert!(e.contains(says), "{line}: {e}");
            assert_eq!(fib.snapshot().generation(), g, "{line}: nothing published");
            assert_eq!(r.dynamic, before, "{line}");
        }
    }

    /// Each line is refused by `parse`, with a message holding its text.
    fn refused(cases: &[(&str, &str)]) {
        for &(line, says) in cases {
            let e = parse(line).unwrap_err();
            assert!(e.contains(says), "{line}: {e}");
        }
    }

    fn lookup(fib: &Fib, vrf: VrfId, ip: &str) -> Option<NexthopId> {
        fib.snapshot().lookup(vrf, ip.parse().unwrap()).ok()
    }

    #[test]
    fn parses_commands_and_names_what_is_wrong() {
        assert_eq!(
            parse("route add vrf 1 10.9.0.0/16 nexthop 2 ; route del vrf 0 2001:db8::/32;").unwrap(),
            vec![
                Command::RouteAdd {
                    route: (1, "10.9.0.0".parse().unwrap(), 16),
                    nexthop: 2
                },
                Command::RouteDel((0, "2001:db8::".parse().unwrap(), 32)),
            ]
        );
        refused(&[
            ("route add vrf x 10.0.0.0/8 nexthop 1", "`x` is not a VRF id"),
            ("route add vrf 1 10.0.0.0 nexthop 1", "is not ADDRESS/LENGTH"),
            ("route add vrf 1 10.0.0.256/8 nexthop 1", "is not an IP address"),
            ("route add vrf 1 10.0.0.0/999 nexthop 1", "`999` is not a prefix length"),
            ("route add vrf 1 10.0.0.0/8 nexthop -1", "`-1` is not a nexthop id"),
            ("route add vrf 1 10.0.0.0/8", "expected route add"),
            ("route flap", "expected route add"),
            (" ; ", "no command"),
        ]);
    }

    #[test]
    fn commands_route_at_once_and_take_only_dynamic_routes_back() {
        let (mut r, fib) = started();
        assert_eq!(lookup(&fib, 1, "10.9.1.1"), None);
        let line = run(
            &mut r,
            &fib,
            "route add vrf 1 10.9.0.0/16 nexthop 2; route add vrf 1 2001:db8::/32 nexthop 1",
        )
        .unwrap();
        assert!(line.contains("2 added, 0 removed; 2 dynamic routes;"), "{line}");
        assert_eq!(lookup(&fib, 1, "10.9.1.1"), Some(2));
        assert_eq!(lookup(&fib, 1, "2001:db8::1"), Some(1));
        // A second add changes the nexthop.
        run(&mut r, &fib, "route add vrf 1 10.9.0.0/16 nexthop 1").unwrap();
        assert_eq!(lookup(&fib, 1, "10.9.1.1"), Some(1));
        assert_eq!(
            r.listing().collect::<Vec<_>>(),
            [
                "vrf 1 10.9.0.0/16 -> nexthop 1 dynamic",
                "vrf 1 2001:db8::/32 -> nexthop 1 dynamic"
            ]
        );
        assert_eq!(
            r.route_for(1, "10.9.3.4".parse().unwrap()),
            Some(((1, "10.9.0.0".parse().unwrap(), 16), 1, true))
        );
        assert_eq!(
            r.route_for(1, "10.0.1.9".parse().unwrap()),
            Some(((1, "10.0.1.0".parse().unwrap(), 24), 1, false)),
            "the file's route"
        );
        assert_eq!(r.route_for(0, "10.9.3.4".parse().unwrap()), None);
        run(&mut r, &fib, "route del vrf 1 10.9.0.0/16").unwrap();
        assert_eq!(lookup(&fib, 1, "10.9.1.1"), None);
        assert_eq!(lookup(&fib, 1, "10.0.1.1"), Some(1), "the file's route stays");
        assert_eq!(r.dynamic_count(), 1);
        let c = r.counters();
        assert_eq!(c.routes.load(Ordering::Relaxed), 1);
        assert_eq!(c.applied.load(Ordering::Relaxed), 3);
        assert_eq!(c.refused.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_batch_with_one_bad_command_changes_nothing() {
        let (mut r, fib) = started();
        refused_whole(
            &mut r,
            &fib,
            &[
                (
                    "route add vrf 1 10.9.0.0/16 nexthop 2; route add vrf 7 10.8.0.0/16 nexthop 2",
                    "VRF 7 does not exist",
                ),
                (
                    "route add vrf 1 10.9.0.0/16 nexthop 2; route add vrf 1 10.8.0.0/16 nexthop 9",
                    "nexthop 9 is not defined",
                ),
                (
                    "route add vrf 1 10.9.0.0/16 nexthop 2; route add vrf 1 10.8.0.1/16 nexthop 2",
                    "host bits set",
                ),
                (
                    "route add vrf 1 10.9.0.0/16 nexthop 2; route add vrf 1 10.0.0.0/33 nexthop 2",
                    "length above 32",
                ),
                (
                    "route add vrf 1 10.0.1.0/24 nexthop 2",
                    "the config file routes this prefix",
                ),
                ("route del vrf 1 10.0.1.0/24", "the config file routes this prefix"),
                (
                    "route add vrf 1 10.9.0.0/16 nexthop 2; route del vrf 1 10.7.0.0/16",
                    "no such dynamic route",
                ),
                (
                    "route add vrf 1 10.9.0.0/16 nexthop 2; route del vrf 1 10.9.0.0/16; route del vrf 1 10.9.0.0/16",
                    "no such dynamic route",
                ),
            ],
        );
        assert_eq!(lookup(&fib, 1, "10.9.0.1"), None);
        // Added and removed in one line: published, and gone.
        let line = run(
            &mut r,
            &fib,
            "route add vrf 1 10.9.0.0/16 nexthop 2; route del vrf 1 10.9.0.0/16",
        )
        .unwrap();
        assert!(line.contains("1 added, 1 removed; 0 dynamic routes;"), "{line}");
        assert_eq!(lookup(&fib, 1, "10.9.0.1"), None);
        let c = r.counters();
        assert_eq!(
            (c.applied.load(Ordering::Relaxed), c.refused.load(Ordering::Relaxed)),
            (1, 8)
        );
    }

    #[test]
    fn reloads_keep_dynamic_routes_the_file_leaves_room_for() {
        let (mut r, fib) = started();
        run(
            &mut r,
            &fib,
            "route add vrf 1 10.9.0.0/16 nexthop 2; route add vrf 1 10.8.0.0/16 nexthop 1; route add vrf 0 10.7.0.0/16 nexthop 2; route add vrf 1 10.6.0.0/16 nexthop 1",
        )
        .unwrap();
        // The new file routes 10.8.0.0/16 itself, has no nexthop 2 and no VRF 0 routes of
        // its own; 10.6.0.0/16 stays.
        let mut f = FibBuilder::new();
        f.add_vrf(1).unwrap();
        f.set_nexthop(1, Nexthop::Discard).unwrap();
        f.set_nexthop(3, Nexthop::Discard).unwrap();
        f.add_route(1, "10.8.0.0".parse().unwrap(), 16, 3).unwrap();
        let mut dropped = r.take_file(f, ports());
        dropped.sort();
        assert_eq!(
            dropped,
            [
                "dynamic route vrf 0 10.7.0.0/16 dropped: nexthop 2 is gone",
                "dynamic route vrf 1 10.8.0.0/16 dropped: the file routes it now",
                "dynamic route vrf 1 10.9.0.0/16 dropped: nexthop 2 is gone",
            ]
        );
        r.builder.publish(&fib).unwrap();
        assert_eq!(lookup(&fib, 1, "10.6.0.1"), Some(1));
        assert_eq!(lookup(&fib, 1, "10.8.0.1"), Some(3));
        assert_eq!(lookup(&fib, 1, "10.9.0.1"), None);
        assert_eq!(
            r.listing().collect::<Vec<_>>(),
            ["vrf 1 10.6.0.0/16 -> nexthop 1 dynamic"]
        );
        // 10.8.0.0/16 is the file's now: commands may not touch it.
        assert!(run(&mut r, &fib, "route del vrf 1 10.8.0.0/16").is_err());
        // A file given up: what it dropped comes back with the file before it.
        let saved = r.saved();
        let mut empty = FibBuilder::new();
        empty.add_vrf(1).unwrap();
        assert_eq!(r.take_file(empty, ports()).len(), 1);
        r.restore(saved);
        let mut f = FibBuilder::new();
        f.add_vrf(1).unwrap();
        f.set_nexthop(1, Nexthop::Discard).unwrap();
        assert!(r.take_file(f, ports()).is_empty());
        r.builder.publish(&fib).unwrap();
        assert_eq!(lookup(&fib, 1, "10.6.0.1"), Some(1));
        // A file without VRF 1 takes the last one.
        let mut f = FibBuilder::new();
        f.add_vrf(0).unwrap();
        f.set_nexthop(1, Nexthop::Discard).unwrap();
        let dropped = r.take_file(f, ports());
        assert_eq!(dropped.len(), 1);
        assert!(dropped[0].contains("VRF 1 does not exist"), "{dropped:?}");
        assert_eq!(r.dynamic_count(), 0);
        assert_eq!(r.counters().routes.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn parses_nexthop_commands_and_names_what_is_wrong() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            parse("nexthop add 5 port a gateway 10.0.0.1; nexthop add 6 tunnel mpls-gre key 17 src 192.0.2.1 dst 192.0.2.2 underlay_vrf 1 dscp 46; nexthop add 7 ecmp 5,6:3; nexthop add 8 discard; nexthop del 9; nexthop add 10 lookup_vrf 2; nexthop add 11 tunnel vxlan key 5 src fd00::1 dst fd00::2 router_mac 02:00:00:00:07:07 dscp inherit underlay_vrf 1 udp_checksum zero")
                .unwrap(),
            vec![
                Command::NexthopAdd {
                    id: 5,
                    nexthop: NexthopSpec::Port {
                        name: "a".into(),
                        gateway: Some(ip("10.0.0.1"))
                    }
                },
                Command::NexthopAdd {
                    id: 6,
                    nexthop: NexthopSpec::Tunnel(Nexthop::Tunnel {
                        encap: vrouter::fib::Encap::MplsOverGre { label: 17 },
                        src: ip("192.0.2.1"),
                        dst: ip("192.0.2.2"),
                        underlay_vrf: 1,
                        router_mac: None,
                        dscp: OuterDscp::Fixed(46),
                        zero_udp_checksum: false,
                    })
                },
                Command::NexthopAdd {
                    id: 7,
                    nexthop: NexthopSpec::Ecmp(vec![(5, 1), (6, 3)])
                },
                Command::NexthopAdd {
                    id: 8,
                    nexthop: NexthopSpec::Discard
                },
                Command::NexthopDel(9),
                Command::NexthopAdd {
                    id: 10,
                    nexthop: NexthopSpec::LookupVrf(2)
                },
                Command::NexthopAdd {
                    id: 11,
                    nexthop: NexthopSpec::Tunnel(Nexthop::Tunnel {
                        encap: vrouter::fib::Encap::Vxlan { vni: 5 },
                        src: ip("fd00::1"),
                        dst: ip("fd00::2"),
                        underlay_vrf: 1,
                        router_mac: Some(vrouter::wire::ethernet::MacAddr([2, 0, 0, 0, 7, 7])),
                        dscp: OuterDscp::Inherit,
                        zero_udp_checksum: true,
                    })
                },
            ]
        );
        let many = (0..256).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
        refused(&[
            ("nexthop add x discard", "`x` is not a nexthop id"),
            ("nexthop add 5 port", "expected route add"),
            ("nexthop add 5 port a gateway nowhere", "`nowhere` is not an IP address"),
            (
                "nexthop add 5 tunnel geneve key 1 src 192.0.2.1 dst 192.0.2.2",
                "tunnel: `geneve` is not vxlan, mpls-udp or mpls-gre",
            ),
            (
                "nexthop add 5 tunnel vxlan key 16777216 src 192.0.2.1 dst 192.0.2.2",
                "key: VNI 16777216 exceeds 24 bits",
            ),
            (
                "nexthop add 5 tunnel vxlan key 1 src 192.0.2.1 dst 2001:db8::2",
                "dst: 2001:db8::2 is not of the family of src 192.0.2.1",
            ),
            (
                "nexthop add 5 tunnel vxlan key 1 src 192.0.2.1 dst 192.0.2.2 underlay 1",
                "expected route add",
            ),
            (
                "nexthop add 5 tunnel vxlan key 1 src 192.0.2.1 dst 192.0.2.2 router_mac 02:00",
                "`02:00` is not a MAC address",
            ),
            (
                "nexthop add 5 tunnel mpls-udp key 1 src 192.0.2.1 dst 192.0.2.2 router_mac 02:00:00:00:07:07",
                "router_mac: only a vxlan tunnel carries an inner Ethernet header, not mpls-udp",
            ),
            (
                "nexthop add 5 tunnel vxlan key 1 src 192.0.2.1 dst 192.0.2.2 router_mac",
                "expected route add",
            ),
            (
                "nexthop add 5 tunnel vxlan key 1 src 192.0.2.1 dst 192.0.2.2 udp_checksum zero",
                "udp_checksum: over IPv4 a tunnel's UDP checksum is zero anyway",
            ),
            (
                "nexthop add 5 tunnel mpls-gre key 1 src fd00::1 dst fd00::2 udp_checksum zero",
                "udp_checksum: an mpls-gre tunnel has no UDP checksum",
            ),
            (
                "nexthop add 5 tunnel vxlan key 1 src fd00::1 dst fd00::2 udp_checksum none",
                "udp_checksum: `none` is not zero or computed",
            ),
            (
                "nexthop add 5 tunnel vxlan key 1 src 192.0.2.1 dst 192.0.2.2 dscp 64",
                "dscp: `64` is not `inherit` or a DSCP 0-63",
            ),
            ("nexthop add 5 ecmp 1,,2", "`` is not a nexthop id"),
            ("nexthop add 5 ecmp 1:0,2", "weight 0 is outside 1..=256"),
            ("nexthop add 5 ecmp 1:257", "weight 257 is outside 1..=256"),
            ("nexthop add 5 ecmp 1:x", "`x` is not a weight"),
            ("nexthop add 5 lookup_vrf", "expected route add"),
            (&*format!("nexthop add 5 ecmp {many}"), "256 members (1-255 allowed)"),
            ("nexthop del", "expected route add"),
        ]);
    }

    #[test]
    fn nexthops_by_command_carry_routes_and_are_refused_whole() {
        let (mut r, fib) = started();
        let line = run(
            &mut r,
            &fib,
            "nexthop add 5 port b; nexthop add 6 tunnel vxlan key 9 src 192.0.2.1 dst 192.0.2.2; nexthop add 7 ecmp 5,1; route add vrf 1 10.9.0.0/16 nexthop 7; route add vrf 1 10.8.0.0/16 nexthop 6",
        )
        .unwrap();
        assert!(
            line.ends_with("2 added, 0 removed; 2 dynamic routes; nexthops 3 set, 0 removed; 3 dynamic nexthops"),
            "{line}"
        );
        assert_eq!(
            r.builder.nexthop(5),
            Some(&Nexthop::Interface { port: 1, gateway: None })
        );
        assert_eq!(lookup(&fib, 1, "10.9.1.1"), Some(7));
        let s = fib.snapshot();
        let members: std::collections::BTreeSet<_> = (0..64)
            .map(|h| {
                s.resolve_uncounted(1, "10.9.1.1".parse().unwrap(), h << 40)
                    .unwrap()
                    .nexthop
            })
            .collect();
        assert_eq!(members, [1, 5].into(), "flows spread over both members");
        assert_eq!(
            r.nexthop_listing().collect::<Vec<_>>(),
            [
                "5: port b dynamic",
                "6: tunnel vxlan key 9 src 192.0.2.1 dst 192.0.2.2 dynamic",
                "7: ecmp 5,1 dynamic"
            ]
        );
        refused_whole(
            &mut r,
            &fib,
            &[
                (
                    "nexthop add 1 discard",
                    "nexthop add 1: the config file defines this nexthop",
                ),
                ("nexthop del 2", "nexthop del 2: the config file defines this nexthop"),
                ("nexthop del 8", "no such dynamic nexthop"),
                ("nexthop add 8 port c", "nexthop add 8: no port named `c`"),
                (
                    "nexthop add 8 tunnel vxlan key 1 src 192.0.2.1 dst 192.0.2.2 underlay_vrf 4",
                    "underlay VRF 4 does not exist",
                ),
                ("nexthop add 8 ecmp 5,9", "member 9 is not defined"),
                ("nexthop add 8 ecmp 5,7", "member 7 is itself an ECMP group"),
                ("nexthop add 8 ecmp 5,8", "a group may not hold itself"),
                ("nexthop add 5 ecmp 1,2", "ECMP group 7 holds it"),
                ("nexthop del 6", "route vrf 1 10.8.0.0/16 goes to it"),
                ("nexthop del 5", "ECMP group 7 holds it"),
                (
                    "nexthop add 8 discard; nexthop del 8; route add vrf 1 10.7.0.0/16 nexthop 8",
                    "nexthop 8 is not defined",
                ),
            ],
        );
        assert_eq!(r.dynamic_nexthops(), 3);
        // Re-weighted: three flows in four to 5. Then 1 leaves the group.
        run(&mut r, &fib, "nexthop add 7 ecmp 5:3,1").unwrap();
        let s = fib.snapshot();
        let to_5 = (0..4096)
            .filter(|&h| {
                s.resolve_uncounted(1, "10.9.1.1".parse().unwrap(), h << 40)
                    .unwrap()
                    .nexthop
                    == 5
            })
            .count();
        assert_eq!(to_5, 3072, "buckets in proportion to the weights");
        run(&mut r, &fib, "nexthop add 7 ecmp 5,2").unwrap();
        let s = fib.snapshot();
        assert!((0..64).all(|h| {
            s.resolve_uncounted(1, "10.9.1.1".parse().unwrap(), h << 40)
                .unwrap()
                .nexthop
                != 1
        }));
        // VRF 0 leaks into VRF 1 for 10.0.1.0/24 (the file's route there, to nexthop 1).
        run(
            &mut r,
            &fib,
            "nexthop add 20 lookup_vrf 1; route add vrf 0 10.0.0.0/8 nexthop 20",
        )
        .unwrap();
        let s = fib.snapshot();
        assert_eq!(
            s.resolve_uncounted(0, "10.0.1.7".parse().unwrap(), 0).unwrap().nexthop,
            1
        );
        run(&mut r, &fib, "route del vrf 0 10.0.0.0/8; nexthop del 20").unwrap();
        // Withdrawn in order: routes first, groups, members.
        let line = run(
            &mut r,
            &fib,
            "route del vrf 1 10.9.0.0/16; route del vrf 1 10.8.0.0/16; nexthop del 7; nexthop del 6; nexthop del 5",
        )
        .unwrap();
        assert!(
            line.ends_with("nexthops 0 set, 3 removed; 0 dynamic nexthops"),
            "{line}"
        );
        assert!(!r.builder.has_nexthop(5) && !r.builder.has_nexthop(7));
        assert_eq!(r.counters().nexthops.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn reloads_keep_dynamic_nexthops_on_their_ports_by_name() {
        let (mut r, fib) = started();
        run(
            &mut r,
            &fib,
            "nexthop add 5 port b; nexthop add 6 port a; nexthop add 7 ecmp 5,1; nexthop add 8 tunnel vxlan key 9 src 192.0.2.1 dst 192.0.2.2 underlay_vrf 1; nexthop add 9 discard; nexthop add 10 lookup_vrf 1; route add vrf 1 10.9.0.0/16 nexthop 7; route add vrf 1 10.6.0.0/16 nexthop 6",
        )
        .unwrap();
        let saved = r.saved();
        // Ports renumbered (b first), `a` gone; nexthop 9 the file's now; VRF 1 kept, with
        // nexthop 1.
        let mut f = FibBuilder::new();
        f.add_vrf(1).unwrap();
        f.set_nexthop(1, Nexthop::Discard).unwrap();
        f.set_nexthop(9, Nexthop::Discard).unwrap();
        let mut dropped = r.take_file(f, vec!["b".into(), "c".into()]);
        dropped.sort();
        assert_eq!(
            dropped,
            [
                "dynamic nexthop 6 dropped: no port named `a`",
                "dynamic nexthop 9 dropped: the file defines it now",
                "dynamic route vrf 1 10.6.0.0/16 dropped: nexthop 6 is gone",
            ]
        );
        assert_eq!(
            r.builder.nexthop(5),
            Some(&Nexthop::Interface { port: 0, gateway: None })
        );
        r.builder.publish(&fib).unwrap();
        assert_eq!(lookup(&fib, 1, "10.9.0.1"), Some(7));
        assert_eq!(r.dynamic_nexthops(), 4);
        // A file without port `b` and VRF 1's underlay: the group loses its member and
        // goes, and its route with it.
        let mut f = FibBuilder::new();
        f.add_vrf(1).unwrap();
        f.set_nexthop(1, Nexthop::Discard).unwrap();
        let mut dropped = r.take_file(f, vec!["c".into()]);
        dropped.sort();
        assert_eq!(
            dropped,
            [
                "dynamic nexthop 5 dropped: no port named `b`",
                "dynamic nexthop 7 dropped: member 5 is gone",
                "dynamic route vrf 1 10.9.0.0/16 dropped: nexthop 7 is gone",
            ]
        );
        let mut f = FibBuilder::new();
        f.add_vrf(0).unwrap();
        let dropped = r.take_file(f, vec![]);
        assert_eq!(
            dropped,
            [
                "dynamic nexthop 8 dropped: underlay VRF 1 is gone",
                "dynamic nexthop 10 dropped: VRF 1 is gone"
            ]
        );
        // The first file given up: everything comes back with the file before it.
        r.restore(saved);
        assert!(r.take_file(file(), ports()).is_empty());
        r.builder.publish(&fib).unwrap();
        assert_eq!(lookup(&fib, 1, "10.6.0.1"), Some(6));
        assert_eq!(
            r.builder.nexthop(6),
            Some(&Nexthop::Interface { port: 0, gateway: None })
        );
        assert_eq!((r.dynamic_count(), r.dynamic_nexthops()), (2, 6));
    }

    #[test]
    fn parses_neighbor_commands_and_names_what_is_wrong() {
        let (ip, mac) = (|s: &str| s.parse::<IpAddr>().unwrap(), MacAddr([2, 0, 0, 0, 7, 5]));
        assert_eq!(
            parse("neighbor add vni 42 10.7.0.5 02:00:00:00:07:05; neighbor add port a fd00::9 02:00:00:00:07:05; neighbor del vni 42 10.7.0.5; neighbor del port a fd00::9")
                .unwrap(),
            vec![
                Command::NeighborAdd {
                    on: NeighborOn::Vni(42),
                    ip: ip("10.7.0.5"),
                    mac
                },
                Command::NeighborAdd {
                    on: NeighborOn::Port("a".into()),
                    ip: ip("fd00::9"),
                    mac
                },
                Command::NeighborDel {
                    on: NeighborOn::Vni(42),
                    ip: ip("10.7.0.5")
                },
                Command::NeighborDel {
                    on: NeighborOn::Port("a".into()),
                    ip: ip("fd00::9")
                },
            ]
        );
        refused(&[
            (
                "neighbor add vni 16777216 10.7.0.5 02:00:00:00:07:05",
                "VNI 16777216 exceeds 24 bits",
            ),
            ("neighbor add vni 42 10.7.0.5 02:00", "`02:00` is not a MAC address"),
            (
                "neighbor add vni 42 10.7.0.x 02:00:00:00:07:05",
                "`10.7.0.x` is not an IP address",
            ),
            ("neighbor add vni 42 10.7.0.5", "expected route add"),
            ("neighbor add vrf 1 10.7.0.5 02:00:00:00:07:05", "expected route add"),
            ("neighbor del vni 42 10.7.0.5 02:00:00:00:07:05", "expected route add"),
        ]);
    }

    /// Overlay and port neighbours by command, published at once; the file's stay its own.
    #[test]
    fn neighbors_by_command_are_set_at_once_and_refused_whole() {
        let (mut r, fib) = started();
        let mac = |vni, ip: &str| {
            fib.snapshot()
                .mac(overlay_neighbor_port(vni), ip.parse().unwrap())
                .map(|m| m.to_string())
        };
        let on_b = |ip: &str| fib.snapshot().mac(1, ip.parse().unwrap()).map(|m| m.to_string());
        let line = run(
            &mut r,
            &fib,
            "neighbor add vni 42 10.7.0.5 02:00:00:00:42:05; neighbor add vni 43 10.7.0.5 02:00:00:00:43:05; neighbor add port b 192.0.2.9 02:00:00:00:00:09",
        )
        .unwrap();
        assert!(
            line.ends_with("; neighbors 3 set, 0 removed; 3 dynamic neighbors"),
            "{line}"
        );
        assert_eq!(mac(42, "10.7.0.5").as_deref(), Some("02:00:00:00:42:05"));
        assert_eq!(mac(43, "10.7.0.5").as_deref(), Some("02:00:00:00:43:05"));
        assert_eq!(on_b("192.0.2.9").as_deref(), Some("02:00:00:00:00:09"));
        assert_eq!(r.counters().neighbors.load(Ordering::Relaxed), 3);
        let mut listed: Vec<String> = r.neighbor_listing().collect();
        listed.sort();
        assert_eq!(listed[0], "10.7.0.5 02:00:00:00:42:05 in vni 42 dynamic");
        assert_eq!(listed[2], "192.0.2.9 02:00:00:00:00:09 on b dynamic");
        // The file's neighbour is its own.
        let mut f = file();
        f.set_neighbor(0, "192.0.2.1".parse().unwrap(), reachable(MacAddr([2, 0, 0, 0, 0, 1])));
        assert!(r.take_file(f, ports()).is_empty());
        r.builder.publish(&fib).unwrap();
        refused_whole(
            &mut r,
            &fib,
            &[
                (
                    "neighbor del vni 42 10.7.0.5; neighbor add port c 192.0.2.9 02:00:00:00:00:09",
                    "neighbor add port c 192.0.2.9: no port named `c`",
                ),
                (
                    "neighbor add port a 192.0.2.1 02:00:00:00:00:02",
                    "the config file sets this neighbour; change it there",
                ),
                ("neighbor del port a 192.0.2.1", "the config file sets this neighbour"),
                ("neighbor del vni 44 10.7.0.5", "no such dynamic neighbour"),
            ],
        );
        // Moved: a new MAC, then gone.
        run(&mut r, &fib, "neighbor add vni 42 10.7.0.5 02:00:00:00:42:06").unwrap();
        assert_eq!(mac(42, "10.7.0.5").as_deref(), Some("02:00:00:00:42:06"));
        let line = run(
            &mut r,
            &fib,
            "neighbor del vni 42 10.7.0.5; neighbor del port b 192.0.2.9",
        )
        .unwrap();
        assert!(
            line.ends_with("; neighbors 0 set, 2 removed; 1 dynamic neighbors"),
            "{line}"
        );
        assert_eq!(mac(42, "10.7.0.5"), None);
        assert_eq!(on_b("192.0.2.9"), None);
        assert_eq!(
            mac(43, "10.7.0.5").as_deref(),
            Some("02:00:00:00:43:05"),
            "the other VNI's stays"
        );
    }

    /// Reloads keep dynamic neighbours on their ports by name, and overlay ones, unless
    /// the file sets them now or their port is gone.
    #[test]
    fn reloads_keep_dynamic_neighbors_by_port_name() {
        let (mut r, fib) = started();
        run(
            &mut r,
            &fib,
            "neighbor add port b 192.0.2.9 02:00:00:00:00:09; neighbor add port a 192.0.2.8 02:00:00:00:00:08; neighbor add vni 42 10.7.0.5 02:00:00:00:42:05; neighbor add vni 43 10.7.0.6 02:00:00:00:43:06",
        )
        .unwrap();
        // `b` is port 0 now, `a` gone; the file sets VNI 43's entry itself.
        let mut f = file();
        let vni43 = overlay_neighbor_port(43);
        f.set_neighbor(
            vni43,
            "10.7.0.6".parse().unwrap(),
            reachable(MacAddr([2, 0, 0, 0, 0x43, 0x60])),
        );
        let mut dropped = r.take_file(f, vec!["b".into(), "c".into()]);
        dropped.sort();
        assert_eq!(
            dropped,
            [
                "dynamic neighbour 10.7.0.6 in vni 43 dropped: the file sets it now",
                "dynamic neighbour 192.0.2.8 on a dropped: port a is gone",
            ]
        );
        r.builder.publish(&fib).unwrap();
        let snap = fib.snapshot();
        let at = |port, ip: &str| snap.mac(port, ip.parse().unwrap()).map(|m| m.to_string());
        assert_eq!(at(0, "192.0.2.9").as_deref(), Some("02:00:00:00:00:09"), "followed b");
        assert_eq!(at(1, "192.0.2.9"), None);
        assert_eq!(
            at(overlay_neighbor_port(42), "10.7.0.5").as_deref(),
            Some("02:00:00:00:42:05")
        );
        assert_eq!(
            at(vni43, "10.7.0.6").as_deref(),
            Some("02:00:00:00:43:60"),
            "the file's"
        );
        assert_eq!(r.dynamic_neighbors(), 2);
    }

    #[test]
    fn parses_label_and_vni_commands_and_names_what_is_wrong() {
        assert_eq!(
            parse("label add 1048575 nexthop 2; label del 16; vni add 16777215 vrf 1; vni del 7").unwrap(),
            vec![
                Command::LabelAdd {
                    label: 1048575,
                    nexthop: 2
                },
                Command::LabelDel(16),
                Command::VniAdd { vni: 16777215, vrf: 1 },
                Command::VniDel(7),
            ]
        );
        refused(&[
            ("label add 1048576 nexthop 2", "label 1048576 exceeds 20 bits"),
            ("label del 1048576", "label 1048576 exceeds 20 bits"),
            ("vni add 16777216 vrf 1", "VNI 16777216 exceeds 24 bits"),
            ("label add x nexthop 2", "`x` is not a label"),
            ("vni add 5 vrf y", "`y` is not a VRF id"),
            ("label add 5", "expected route add"),
            ("vni add 5 nexthop 1", "expected route add"),
        ]);
    }

    /// The file's nexthops 3 (a lookup in VRF 1) and 4 (port `a`), label 100 -> nexthop 3
    /// and VNI 42 -> VRF 1.
    fn started_with_tunnel_ids() -> (Routing, Fib) {
        let fib = Fib::new();
        let mut f = file();
        f.set_nexthop(3, Nexthop::VrfTranslate { vrf: 1 }).unwrap();
        f.set_nexthop(4, Nexthop::Interface { port: 0, gateway: None }).unwrap();
        f.set_label(100, 3).unwrap();
        f.set_vni(42, 1).unwrap();
        let mut r = Routing::new(f, ports());
        r.builder.publish(&fib).unwrap();
        (r, fib)
    }

    #[test]
    fn labels_and_vnis_by_command_map_at_once_and_are_refused_whole() {
        let (mut r, fib) = started_with_tunnel_ids();
        let line = run(
            &mut r,
            &fib,
            "nexthop add 9 lookup_vrf 1; label add 200 nexthop 9; vni add 43 vrf 0; label add 201 nexthop 4",
        )
        .unwrap();
        assert!(
            line.ends_with("labels 2 set, 0 removed; 2 dynamic labels; vnis 1 set, 0 removed; 1 dynamic vnis"),
            "{line}"
        );
        let s = fib.snapshot();
        assert_eq!((s.label(200), s.label(201), s.label(100)), (Some(9), Some(4), Some(3)));
        assert_eq!((s.vni(43), s.vni(42)), (Some(0), Some(1)));
        assert_eq!(r.dynamic_tunnel_ids(), (2, 1));
        assert_eq!(
            r.label_listing().chain(r.vni_listing()).collect::<Vec<_>>(),
            [
                "label 200 -> nexthop 9 dynamic",
                "label 201 -> nexthop 4 dynamic",
                "vni 43 -> vrf 0 dynamic"
            ]
        );
        let undeliverable = "a label delivers into a VRF, named by a `lookup_vrf` or `port` nexthop, not by";
        refused_whole(
            &mut r,
            &fib,
            &[
                (
                    "label add 100 nexthop 4",
                    "label add 100: the config file maps this label; change it there",
                ),
                (
                    "label del 100",
                    "label del 100: the config file maps this label; change it there",
                ),
                ("label add 300 nexthop 77", "label add 300: nexthop 77 is not defined"),
                (
                    "label add 300 nexthop 2",
                    &format!("label add 300: {undeliverable} a discard one"),
                ),
                (
                    "nexthop add 10 ecmp 4,9; label add 300 nexthop 10",
                    &format!("label add 300: {undeliverable} an ECMP group one"),
                ),
                (
                    "nexthop add 9 discard",
                    &format!("nexthop add 9: label 200 goes to it, and {undeliverable}"),
                ),
                ("label del 300", "label del 300: no such dynamic label"),
                (
                    "vni add 42 vrf 0",
                    "vni add 42: the config file maps this VNI; change it there",
                ),
                (
                    "vni del 42",
                    "vni del 42: the config file maps this VNI; change it there",
                ),
                ("vni add 44 vrf 5", "vni add 44: VRF 5 does not exist"),
                ("vni del 44", "vni del 44: no such dynamic VNI"),
                ("nexthop del 9", "nexthop del 9: label 200 goes to it"),
                // The label is remapped first, but the last command fails: nothing changes.
                (
                    "label add 200 nexthop 3; nexthop del 9; vni del 43; vni del 43",
                    "vni del 43: no such dynamic VNI",
                ),
            ],
        );
        // Remapped and removed in one line, in order.
        let line = run(
            &mut r,
            &fib,
            "label add 200 nexthop 3; nexthop del 9; label del 201; vni add 43 vrf 1; vni del 43",
        )
        .unwrap();
        assert!(
            line.contains(
                "0 dynamic nexthops; labels 1 set, 1 removed; 1 dynamic labels; vnis 1 set, 1 removed; 0 dynamic vnis"
            ),
            "{line}"
        );
        let s = fib.snapshot();
        assert_eq!((s.label(200), s.label(201), s.vni(43)), (Some(3), None, None));
        assert_eq!(r.counters().labels.load(Ordering::Relaxed), 1);
        assert_eq!(r.counters().vnis.load(Ordering::Relaxed), 0);
        // Route and nexthop lines say nothing of labels.
        let line = run(&mut r, &fib, "route add vrf 1 10.9.0.0/16 nexthop 2").unwrap();
        assert!(!line.contains("labels"), "{line}");
    }

    #[test]
    fn reloads_keep_dynamic_labels_and_vnis_the_file_leaves_room_for() {
        let (mut r, fib) = started_with_tunnel_ids();
        run(
            &mut r,
            &fib,
            "nexthop add 9 lookup_vrf 0; label add 200 nexthop 4; label add 201 nexthop 3; label add 202 nexthop 3; label add 203 nexthop 9; vni add 43 vrf 0; vni add 44 vrf 1; vni add 45 vrf 1",
        )
        .unwrap();
        // The new file maps label 202 and VNI 45 itself, has nexthop 4 as a discard, and
        // no VRF 0 (so no dynamic nexthop 9 either).
        let mut f = FibBuilder::new();
        f.add_vrf(1).unwrap();
        f.set_nexthop(3, Nexthop::VrfTranslate { vrf: 1 }).unwrap();
        f.set_nexthop(4, Nexthop::Discard).unwrap();
        f.set_label(202, 3).unwrap();
        f.set_vni(45, 1).unwrap();
        let mut dropped = r.take_file(f, ports());
        dropped.sort();
        assert_eq!(
            dropped,
            [
                "dynamic VNI 43 dropped: VRF 0 is gone",
                "dynamic VNI 45 dropped: the file maps it now",
                "dynamic label 200 dropped: nexthop 4: a label delivers into a VRF, named by a `lookup_vrf` or `port` nexthop, not by a discard one",
                "dynamic label 202 dropped: the file maps it now",
                "dynamic label 203 dropped: nexthop 9 is gone",
                "dynamic nexthop 9 dropped: VRF 0 is gone",
            ]
        );
        r.builder.publish(&fib).unwrap();
        let s = fib.snapshot();
        assert_eq!(
            (s.label(200), s.label(201), s.label(202), s.label(203)),
            (None, Some(3), Some(3), None)
        );
        assert_eq!((s.vni(43), s.vni(44), s.vni(45)), (None, Some(1), Some(1)));
        assert_eq!(r.dynamic_tunnel_ids(), (1, 1));
        assert!(
            run(&mut r, &fib, "label del 202")
                .unwrap_err()
                .contains("the config file maps this label")
        );
        // A file given up: what it dropped comes back with the file before it.
        let saved = r.saved();
        assert_eq!(r.take_file(FibBuilder::new(), ports()).len(), 2);
        r.restore(saved);
        assert_eq!(r.dynamic_tunnel_ids(), (1, 1));
        assert_eq!(r.counters().labels.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_tenant_by_command_vrf_first_and_withdrawn_in_reverse() {
        let (mut r, fib) = started();
        refused(&[
            ("vrf add 1048576", "VRF 1048576 exceeds the maximum 1048575"),
            ("vrf add x", "`x` is not a VRF id"),
            ("vrf del", "expected route add"),
        ]);
        // A VRF, a route in it, a VNI and a label into it, in one line.
        let line = run(
            &mut r,
            &fib,
            "vrf add 7; nexthop add 70 lookup_vrf 7; route add vrf 7 10.7.0.0/16 nexthop 1; vni add 7007 vrf 7; label add 7007 nexthop 70",
        )
        .unwrap();
        assert!(line.ends_with("; vrfs 1 added, 0 removed; 1 dynamic vrfs"), "{line}");
        assert_eq!(lookup(&fib, 7, "10.7.1.1"), Some(1));
        assert_eq!(fib.snapshot().vni(7007), Some(7));
        assert_eq!(r.vrf_listing().collect::<Vec<_>>(), ["7 dynamic"]);
        assert_eq!(r.counters().vrfs.load(Ordering::Relaxed), 1);
        refused_whole(
            &mut r,
            &fib,
            &[
                (
                    "vrf add 1",
                    "vrf add 1: the config file defines this VRF; change it there",
                ),
                (
                    "vrf del 1",
                    "vrf del 1: the config file defines this VRF; change it there",
                ),
                ("vrf del 8", "vrf del 8: no such dynamic VRF"),
                ("vrf del 7", "vrf del 7: route vrf 7 10.7.0.0/16 uses it"),
                ("route del vrf 7 10.7.0.0/16; vrf del 7", "vrf del 7: VNI 7007 uses it"),
                (
                    "route del vrf 7 10.7.0.0/16; vni del 7007; vrf del 7",
                    "vrf del 7: nexthop 70 uses it",
                ),
                // Gone earlier in the line: nothing may use it after.
                (
                    "vrf add 8; vrf del 8; route add vrf 8 10.8.0.0/16 nexthop 1",
                    "VRF 8 does not exist",
                ),
                ("vrf add 8; vrf del 8; vni add 8008 vrf 8", "VRF 8 does not exist"),
                (
                    "vrf add 8; vrf del 8; nexthop add 80 lookup_vrf 8",
                    "VRF 8 does not exist",
                ),
                ("route add vrf 9 10.9.0.0/16 nexthop 1", "VRF 9 does not exist"),
            ],
        );
        // Withdrawn in reverse, in one line.
        let line = run(
            &mut r,
            &fib,
            "label del 7007; nexthop del 70; vni del 7007; route del vrf 7 10.7.0.0/16; vrf del 7",
        )
        .unwrap();
        assert!(line.ends_with("; vrfs 0 added, 1 removed; 0 dynamic vrfs"), "{line}");
        assert!(!fib.snapshot().vrf_ids().any(|v| v == 7));
        assert_eq!(r.dynamic_vrfs(), 0);
    }

    #[test]
    fn reloads_keep_dynamic_vrfs_and_what_is_in_them() {
        let (mut r, fib) = started();
        run(
            &mut r,
            &fib,
            "vrf add 7; vrf add 8; route add vrf 7 10.7.0.0/16 nexthop 1; route add vrf 8 10.8.0.0/16 nexthop 1",
        )
        .unwrap();
        // The new file defines VRF 8 itself (empty): its dynamic route stays, the VRF
        // is the file's now.
        let mut f = file();
        f.add_vrf(8).unwrap();
        assert_eq!(
            r.take_file(f, ports()),
            ["dynamic VRF 8 dropped: the file defines it now"]
        );
        r.builder.publish(&fib).unwrap();
        assert_eq!(lookup(&fib, 7, "10.7.1.1"), Some(1));
        assert_eq!(lookup(&fib, 8, "10.8.1.1"), Some(1));
        assert_eq!(r.vrf_listing().collect::<Vec<_>>(), ["7 dynamic"]);
        assert!(
            run(&mut r, &fib, "vrf del 8")
                .unwrap_err()
                .contains("the config file defines this VRF")
        );
    }

    /// `show commands` makes the dynamic state again: written out, read back and applied
    /// to a router started from the same file, every kind of command gives the same
    /// dynamic VRFs, routes, nexthops, labels, VNIs and neighbours. Nexthops left out
    /// take what uses them along.
    #[test]
    fn the_commands_written_out_make_the_same_state_again() {
        let (mut r, fib) = started();
        let line = "vrf add 5; \
            nexthop add 10 port a; nexthop add 11 port b gateway fd00::9; \
            nexthop add 12 tunnel vxlan key 42 src 192.0.2.1 dst 192.0.2.2 router_mac 02:00:00:00:07:07 dscp inherit; \
            nexthop add 13 tunnel mpls-udp key 300 src fd00::1 dst fd00::2 underlay_vrf 5 dscp 46 udp_checksum zero; \
            nexthop add 14 tunnel mpls-gre key 301 src 192.0.2.1 dst 192.0.2.3; \
            nexthop add 15 ecmp 10:3,12; nexthop add 16 lookup_vrf 5; nexthop add 17 discard; \
            nexthop add 2147483648 port a; nexthop add 18 ecmp 10,2147483648; \
            route add vrf 1 10.9.0.0/16 nexthop 15; route add vrf 5 2001:db8::/32 nexthop 13; \
            route add vrf 1 10.8.0.0/16 nexthop 2147483648; route add vrf 1 10.7.0.0/16 nexthop 18; \
            label add 3000 nexthop 16; vni add 5005 vrf 5; \
            neighbor add port b 10.0.2.9 02:00:00:00:02:09; neighbor add vni 42 10.9.0.5 02:00:00:00:09:05";
        run(&mut r, &fib, line).unwrap();
        let all: Vec<String> = r.commands(|_| true).iter().map(ToString::to_string).collect();
        assert!(all.contains(&"nexthop add 15 ecmp 10:3,12".to_string()), "{all:#?}");
        assert!(
            all.contains(&"nexthop add 13 tunnel mpls-udp key 300 src fd00::1 dst fd00::2 underlay_vrf 5 dscp 46 udp_checksum zero".to_string()),
            "{all:#?}"
        );
        let (mut again, fib2) = started();
        run(&mut again, &fib2, &all.join("; ")).unwrap();
        assert!(again.dynamic == r.dynamic, "the same state again");
        // Without the follower's ids: its nexthop, the group holding it and the routes
        // through them stay out; the rest is there.
        let own: Vec<String> = r.commands(|id| id < 1 << 31).iter().map(ToString::to_string).collect();
        assert_eq!(own.len(), all.len() - 4, "{own:#?}");
        assert!(
            own.iter()
                .all(|c| !c.contains("2147483648") && !c.contains("nexthop add 18") && !c.contains("10.7.0.0"))
        );
        let (mut partly, fib3) = started();
        run(&mut partly, &fib3, &own.join("; ")).unwrap();
        assert_eq!(partly.dynamic_count(), r.dynamic_count() - 2);
    }
}
