//! The control socket: one command per connection, one text answer. Only root may
//! connect (the socket is created mode 0600). A client that sends garbage gets an error
//! line; one that disconnects early is simply dropped; the router keeps forwarding.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vrouter::dataplane::neigh::Lookup;
use vrouter::dataplane::pipeline::{neighbor_mac, overlay_neighbor_port};
use vrouter::dataplane::pmtu::PathMtus;
use vrouter::dataplane::{Event, PortState, SharedCounters};
use vrouter::fib::{Encap, Nexthop, Resolution};
use vrouter::flow::{FlowSnapshot, FlowTable, FullPolicy, Verdict as FlowVerdict};
use vrouter::policy::{Decision, Direction, EndpointId, Policy};
use vrouter::wire::flow::FlowKey;
use vrouter::{DropReason, NodeConfig, Stats, Tables};

use vrouter_cli::config::Listing;
use vrouter_cli::dynamic::{self, RouteCounters, Routing};
use vrouter_cli::kernel_routes::{FIRST_NEXTHOP, Follower};

/// The ports the workers run on, and their devices (replaced when a reload changes them).
#[derive(Clone, Default)]
pub(crate) struct Ports {
    pub(crate) node: NodeConfig,
    pub(crate) devices: Vec<String>,
    /// The reloads that changed ports so far.
    pub(crate) changes: ChangeCounts,
}

/// Port changes made while the workers ran, and with them paused; how long the workers
/// stood still at the last one (parked, or paused).
#[derive(Clone, Copy, Default)]
pub(crate) struct ChangeCounts {
    pub(crate) live: u64,
    pub(crate) paused: u64,
    pub(crate) last_stand_still: std::time::Duration,
}

/// What the control thread can read.
pub(crate) struct State {
    pub(crate) ports: Arc<Mutex<Ports>>,
    pub(crate) tables: Tables,
    pub(crate) counters: Vec<SharedCounters>,
    pub(crate) listing: Arc<Mutex<Listing>>,
    /// The routes, for `route add|del|get` and the dynamic ones' listing.
    pub(crate) routing: Arc<Mutex<Routing>>,
    /// How many of them are dynamic, and the `route` lines applied and refused.
    pub(crate) route_counters: Arc<RouteCounters>,
    /// The kernel routes followers' states, one per `[[kernel_routes]]` table.
    pub(crate) kernel_routes: KernelRoutesSlot,
}

/// Where the kernel routes followers' states are.
pub(crate) type KernelRoutesSlot = Arc<Mutex<Vec<Arc<Mutex<Follower>>>>>;

/// The commands, for an unknown or empty one.
fn help() -> String {
    format!(
        "commands: show ports|vrfs|routes|nexthops|labels|vnis|neighbors|kernel-routes|commands|stats|drops|events|policy|path-mtus, show routes|kernel-routes [vrf V] [within PREFIX/LEN], show flows [vrf N] [ip ADDR] [port N] [proto P] [verdict allow|deny|hold] [top N], clear flows [the same but verdict], trace N, capture PORT FILE [COUNT], route get vrf V ADDRESS, reload, and the routing commands: {}",
        dynamic::SYNTAX
    )
}

/// The longest command line read: room for a few thousand `route` commands.
const MAX_LINE: u64 = 1 << 20;

/// How long `trace` and `capture` wait for packets.
const TAP_WAIT: Duration = Duration::from_secs(5);

/// Most flows `show flows` prints.
const MAX_FLOWS: usize = 1000;

/// The routing tables at a glance, for `show stats` and the metrics.
pub(crate) struct RoutingStats {
    pub(crate) generation: u32,
    pub(crate) vrfs: usize,
    pub(crate) routes: usize,
    /// Of those, the routes added by `route add`.
    pub(crate) dynamic: usize,
    /// The nexthops added by `nexthop add`.
    pub(crate) dynamic_nexthops: usize,
    /// The labels and VNIs added by `label add` and `vni add`.
    pub(crate) dynamic_labels: usize,
    pub(crate) dynamic_vnis: usize,
    /// The VRFs added by `vrf add`.
    pub(crate) dynamic_vrfs: usize,
    /// The neighbour entries set by `neighbor add`.
    pub(crate) dynamic_neighbors: usize,
    /// The running snapshot's route tables.
    pub(crate) table_bytes: usize,
    /// Tables kept for the next patches (`Fib::spare_bytes`).
    pub(crate) spare_bytes: usize,
    /// (no route, unresolved nexthop, translate loop).
    pub(crate) misses: (u64, u64, u64),
}

impl RoutingStats {
    pub(crate) fn of(tables: &Tables, routes: &RouteCounters) -> Self {
        let s = tables.fib.snapshot();
        RoutingStats {
            generation: s.generation(),
            vrfs: s.vrf_ids().count(),
            routes: s.vrf_ids().map(|v| s.route_count(v)).sum(),
            dynamic: routes.routes.load(Ordering::Relaxed),
            dynamic_nexthops: routes.nexthops.load(Ordering::Relaxed),
            dynamic_labels: routes.labels.load(Ordering::Relaxed),
            dynamic_vnis: routes.vnis.load(Ordering::Relaxed),
            dynamic_vrfs: routes.vrfs.load(Ordering::Relaxed),
            dynamic_neighbors: routes.neighbors.load(Ordering::Relaxed),
            table_bytes: s.table_bytes(),
            spare_bytes: tables.fib.spare_bytes(),
            misses: tables.fib.stats().get(),
        }
    }
}

/// Binds `path` (replacing a stale socket) with mode 0600 and serves it on a thread.
pub(crate) fn serve(path: &str, state: State) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    std::thread::Builder::new().name("vrouter-ctl".into()).spawn(move || {
        for conn in listener.incoming().flatten() {
            let _ = handle(conn, &state);
        }
    })?;
    Ok(())
}

fn handle(conn: UnixStream, state: &State) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut line = String::new();
    // At most one line of bounded length: a client cannot make us buffer without bound.
    BufReader::new((&conn).take(MAX_LINE)).read_line(&mut line)?;
    let answer = answer(line.trim(), state);
    (&conn).write_all(answer.as_bytes())
}

fn answer(cmd: &str, s: &State) -> String {
    let words: Vec<&str> = cmd.split_whitespace().collect();
    let ports = s.ports.lock().map(|p| p.clone()).unwrap_or_default();
    let lines: Vec<String> = match words.as_slice() {
        ["show", "ports"] => {
            let t = Stats::sum(&s.counters.iter().map(|c| c.snapshot()).collect::<Vec<_>>());
            ports
                .node
                .ports
                .iter()
                .zip(&ports.devices)
                .enumerate()
                .map(|(i, (p, d))| {
                    let state = match t.port_state.get(i) {
                        Some(PortState::Gone) => " DEVICE GONE",
                        Some(PortState::Down) => " DEVICE DOWN",
                        _ => "",
                    };
                    let count = |v: &[u64]| v.get(i).map_or("-".into(), u64::to_string);
                    format!(
                        "{i} {} dev {d}{} mac {} mtu {} rx {} tx {} kernel-dropped {} {:?}{state}",
                        p.name,
                        p.vlan.map_or(String::new(), |v| format!(" vlan {v}")),
                        p.mac,
                        p.mtu,
                        count(&t.port_rx),
                        count(&t.port_tx),
                        count(&t.port_kernel_dropped),
                        p.role
                    )
                })
                .collect()
        }
        ["show", "vrfs"] => listed(s, |l| &l.vrfs, |r| r.vrf_listing().collect()),
        ["show", "routes", filter @ ..] => match RouteFilter::parse(filter) {
            Ok(f) => show_routes(s, &f),
            Err(e) => vec![format!("error: {e}")],
        },
        ["show", "nexthops"] => listed(s, |l| &l.nexthops, |r| r.nexthop_listing().collect()),
        ["show", "labels"] => listed(s, |l| &l.labels, |r| r.label_listing().collect()),
        ["show", "vnis"] => listed(s, |l| &l.vnis, |r| r.vni_listing().collect()),
        ["show", "neighbors"] => {
            let mut v: Vec<String> = s
                .listing
                .lock()
                .map(|l| l.neighbors.iter().map(|n| format!("{n} static")).collect())
                .unwrap_or_default();
            if let Ok(r) = s.routing.lock() {
                v.extend(r.neighbor_listing());
            }
            let now = s.tables.epoch.elapsed().as_secs() as u32;
            let learned = s.tables.neighbors.snapshot();
            let mut learned: Vec<_> = learned.iter().collect();
            learned.sort_by_key(|(k, _)| **k);
            v.extend(learned.into_iter().map(|((port, ip), l)| {
                let port = ports.node.ports.get(*port as usize).map_or("?", |p| p.name.as_str());
                format!("{ip} {} on {port} learned {}s ago", l.mac, now.saturating_sub(l.at))
            }));
            v
        }
        ["show", "commands"] => match s.routing.lock() {
            Ok(r) => r
                .commands(|id| id < FIRST_NEXTHOP)
                .iter()
                .map(ToString::to_string)
                .collect(),
            Err(_) => vec!["error: the routing state is poisoned".into()],
        },
        ["show", "kernel-routes", filter @ ..] => match RouteFilter::parse(filter) {
            Ok(f) => show_kernel_routes(s, &f),
            Err(e) => vec![format!("error: {}", e.replace("show routes", "show kernel-routes"))],
        },
        ["show", "stats"] => {
            let per: Vec<Stats> = s.counters.iter().map(|c| c.snapshot()).collect();
            let t = Stats::sum(&per);
            let f = s.tables.flows.stats();
            let mut v = vec![format!(
                "total rx {} tx {} dropped {} flows {} of {}",
                t.rx,
                t.tx,
                t.dropped(),
                f.entries,
                f.capacity
            )];
            v.push(format!(
                "events: icmp errors {} (routed back through a tunnel {}) split {} (fragments made {}) mss lowered {} path mtus learned {} tunnel packets reassembled {}",
                t.count_of(Event::IcmpErrors),
                t.count_of(Event::IcmpRouted),
                t.count_of(Event::Fragmented),
                t.count_of(Event::FragmentsMade),
                t.count_of(Event::MssClamped),
                t.count_of(Event::PathMtuLearned),
                t.count_of(Event::Reassembled)
            ));
            v.push(format!(
                "flow table: inserts {} aged {} evicted {} refused: full {} quota {} hold {}",
                f.inserts, f.aged, f.evictions, f.full_refusals, f.quota_refusals, f.hold_refusals
            ));
            let cfg = s.tables.flows.config();
            let o = cfg.timeouts;
            v.push(format!(
                "flow settings: when full {} quota {} timeouts (s) tcp {} closing {} udp {} sctp {} icmp {} other {}",
                match cfg.full_policy {
                    FullPolicy::Refuse => "refuse",
                    FullPolicy::EvictExpiredOrClosing => "evict",
                },
                cfg.vrf_quota.map_or("none".into(), |q| q.to_string()),
                o.tcp_established,
                o.tcp_closing,
                o.udp,
                o.sctp,
                o.icmp,
                o.other
            ));
            let r = RoutingStats::of(&s.tables, &s.route_counters);
            v.push(format!(
                "routing: generation {} vrfs {} ({} dynamic) routes {} ({} dynamic) dynamic nexthops {} labels {} vnis {} neighbors {} tables {} KiB spares {} KiB misses: no route {} unresolved nexthop {} translate loop {}",
                r.generation,
                r.vrfs,
                r.dynamic_vrfs,
                r.routes,
                r.dynamic,
                r.dynamic_nexthops,
                r.dynamic_labels,
                r.dynamic_vnis,
                r.dynamic_neighbors,
                r.table_bytes.div_ceil(1024),
                r.spare_bytes.div_ceil(1024),
                r.misses.0,
                r.misses.1,
                r.misses.2
            ));
            v.extend(crate::metrics::kernel_counts(&s.kernel_routes).into_iter().map(
                |(table, vrf, followed, skipped)| {
                    format!("kernel routes: table {table} -> vrf {vrf}: {followed} followed, {skipped} skipped")
                },
            ));
            if let Some(quota) = cfg.vrf_quota {
                v.extend(s.tables.fib.snapshot().vrf_ids().map(|vrf| {
                    let (n, refused) = s.tables.flows.vrf_usage(vrf);
                    format!("vrf {vrf} flows {n} of quota {quota}, refused {refused}")
                }));
            }
            if let Ok(p) = s.ports.lock() {
                let c = p.changes;
                v.push(format!(
                    "port changes: {} while the workers ran, {} with them paused; the last stood them still {:.1} ms",
                    c.live,
                    c.paused,
                    c.last_stand_still.as_secs_f64() * 1e3
                ));
            }
            v.extend(per.iter().enumerate().map(|(i, w)| {
                format!(
                    "worker {i} rx {} tx {} dropped {} bursts {} empty_polls {} fill_starved {}",
                    w.rx,
                    w.tx,
                    w.dropped(),
                    w.bursts,
                    w.empty_polls,
                    w.fill_starved
                )
            }));
            v
        }
        ["show", "drops"] => {
            let t = Stats::sum(&s.counters.iter().map(|c| c.snapshot()).collect::<Vec<_>>());
            counted(DropReason::ALL, |r| (t.dropped_for(r), r.description()))
        }
        ["show", "policy"] => {
            let origins = s.listing.lock().map(|l| l.rule_origins.clone()).unwrap_or_default();
            policy_lines(&s.tables.policy.load(), &ports.node, &origins)
        }
        ["show", "path-mtus"] => path_mtu_lines(&s.tables.path_mtus, s.tables.epoch.elapsed().as_secs() as u32),
        ["show", "events"] => {
            let t = Stats::sum(&s.counters.iter().map(|c| c.snapshot()).collect::<Vec<_>>());
            counted(Event::ALL, |e| (t.count_of(e), e.description()))
        }
        ["show", "flows", filter @ .., "top", n] => match (FlowFilter::parse(filter), n.parse::<usize>()) {
            (Err(e), _) => vec![format!("error: {e}")],
            (Ok(f), Ok(n)) if (1..=MAX_FLOWS).contains(&n) => show_flows(&s.tables.flows, &f, n, true),
            _ => vec![format!("error: `top N` takes a flow count 1..={MAX_FLOWS}")],
        },
        ["show", "flows", filter @ ..] => match FlowFilter::parse(filter) {
            Ok(filter) => show_flows(&s.tables.flows, &filter, MAX_FLOWS, false),
            Err(e) => vec![format!("error: {e}")],
        },
        ["clear", "flows", filter @ ..] => match FlowFilter::parse(filter) {
            Ok(filter) => clear_flows(&s.tables.flows, &filter),
            Err(e) => vec![format!("error: {}", e.replace("show flows", "clear flows"))],
        },
        ["trace", n] => match n.parse::<u32>() {
            Ok(n) if n > 0 && n <= crate::vrouter_taps_max() => trace(s, n),
            _ => vec![format!(
                "error: `trace N` takes a packet count 1..={}",
                crate::vrouter_taps_max()
            )],
        },
        ["capture", port, file] => capture(s, &ports.node, port, file, 100),
        ["capture", port, file, count] => match count.parse::<usize>() {
            Ok(c) if c > 0 && c <= crate::vrouter_taps_max() as usize => capture(s, &ports.node, port, file, c),
            _ => vec![format!("error: COUNT must be 1..={}", crate::vrouter_taps_max())],
        },
        ["route", "get", rest @ ..] => match rest {
            ["vrf", vrf, addr] => route_get(s, &ports.node, vrf, addr),
            _ => vec!["error: expected `route get vrf V ADDRESS`".into()],
        },
        ["route" | "nexthop" | "label" | "vni" | "vrf" | "neighbor", ..] => match dynamic::parse(cmd) {
            Err(e) => {
                s.route_counters.line(false);
                vec![format!("error: {e}")]
            }
            Ok(commands) => match s.routing.lock() {
                Ok(mut r) => match r.apply(&commands, &s.tables.fib) {
                    Ok(line) => {
                        tracing::info!(
                            commands = commands.len(),
                            dynamic = r.dynamic_count(),
                            dynamic_nexthops = r.dynamic_nexthops(),
                            dynamic_labels = r.dynamic_tunnel_ids().0,
                            dynamic_vnis = r.dynamic_tunnel_ids().1,
                            dynamic_vrfs = r.dynamic_vrfs(),
                            dynamic_neighbors = r.dynamic_neighbors(),
                            "routes changed"
                        );
                        vec![line]
                    }
                    Err(e) => vec![format!("error: {e}; nothing changed")],
                },
                Err(_) => {
                    s.route_counters.line(false);
                    vec!["error: the routing state is poisoned".into()]
                }
            },
        },
        ["reload"] => {
            // The main thread reloads on SIGHUP: the same path as `kill -HUP`.
            // SAFETY: signalling our own process.
            unsafe { libc::kill(libc::getpid(), libc::SIGHUP) };
            vec!["reload requested (see the router's output)".into()]
        }
        [] => vec![format!("error: empty command; {}", help())],
        _ => vec![format!("error: unknown command `{cmd}`; {}", help())],
    };
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// The file's lines of a listing (`file`), then the dynamic ones (`dynamic`).
fn listed(
    s: &State,
    file: impl Fn(&Listing) -> &Vec<String>,
    dynamic: impl Fn(&Routing) -> Vec<String>,
) -> Vec<String> {
    let mut v = s.listing.lock().map(|l| file(&l).clone()).unwrap_or_default();
    if let Ok(r) = s.routing.lock() {
        v.extend(dynamic(&r));
    }
    v
}

/// `show routes [vrf V] [within PREFIX/LEN]`: the file's routes, then the dynamic ones,
/// of every VRF or `vrf`, and of every prefix or those inside `within` (a big table's
/// corner: what a route daemon announced for one site, say).
fn show_routes(s: &State, f: &RouteFilter) -> Vec<String> {
    let mut v = s.listing.lock().map(|l| l.routes.clone()).unwrap_or_default();
    if let Ok(r) = s.routing.lock() {
        v.extend(r.listing());
    }
    v.retain(|line| f.matches(line));
    v
}

/// `show kernel-routes [vrf V] [within PREFIX/LEN]`: per table followed (into `vrf`),
/// its summary, then its prefixes (inside `within`).
fn show_kernel_routes(s: &State, f: &RouteFilter) -> Vec<String> {
    let followers = s.kernel_routes.lock().map(|f| f.clone()).unwrap_or_default();
    if followers.is_empty() {
        return vec!["no kernel table is followed (the config has no [[kernel_routes]] table)".into()];
    }
    let mut out = Vec::new();
    for follower in followers {
        let Ok(follower) = follower.lock() else {
            out.push("error: the kernel routes state is poisoned".into());
            continue;
        };
        if f.vrf.is_some_and(|v| v != follower.table_and_vrf().1) {
            continue;
        }
        let mut lines = follower.listing().into_iter();
        out.extend(lines.next());
        out.extend(lines.filter(|l| f.holds(l.split_whitespace().next().unwrap_or_default())));
    }
    out
}

/// What `show routes` lists.
#[derive(Debug, Default, PartialEq, Eq)]
struct RouteFilter {
    vrf: Option<u32>,
    within: Option<(IpAddr, u8)>,
}

/// `addr` with all but its first `len` bits cleared.
fn masked(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => IpAddr::V4((u32::from(a) & u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)).into()),
        IpAddr::V6(a) => IpAddr::V6((u128::from(a) & u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)).into()),
    }
}

impl RouteFilter {
    fn parse(words: &[&str]) -> Result<Self, String> {
        let mut f = RouteFilter::default();
        for pair in words.chunks(2) {
            match pair {
                ["vrf", v] => f.vrf = Some(v.parse().map_err(|_| format!("`{v}` is not a VRF id"))?),
                ["within", p] => {
                    let bad = || format!("`{p}` is not PREFIX/LEN");
                    let (ip, len) = p.split_once('/').ok_or_else(bad)?;
                    let (ip, len): (IpAddr, u8) = (ip.parse().map_err(|_| bad())?, len.parse().map_err(|_| bad())?);
                    if len > if ip.is_ipv4() { 32 } else { 128 } {
                        return Err(bad());
                    }
                    f.within = Some((masked(ip, len), len));
                }
                _ => return Err("expected `show routes [vrf V] [within PREFIX/LEN]`".into()),
            }
        }
        Ok(f)
    }

    /// Whether a `show routes` line (`vrf V PREFIX/LEN -> ...`) is one to list.
    fn matches(&self, line: &str) -> bool {
        let mut words = line.split_whitespace().skip(1);
        let vrf = words.next().and_then(|v| v.parse::<u32>().ok());
        self.vrf.is_none_or(|v| vrf == Some(v)) && self.holds(words.next().unwrap_or_default())
    }

    /// Whether `prefix` (`ADDRESS/LEN`) lies inside `within`, if that is given.
    fn holds(&self, prefix: &str) -> bool {
        let parsed = prefix
            .split_once('/')
            .and_then(|(ip, len)| Some((ip.parse::<IpAddr>().ok()?, len.parse::<u8>().ok()?)));
        self.within.is_none_or(|(net, n)| {
            parsed.is_some_and(|(ip, len)| ip.is_ipv4() == net.is_ipv4() && len >= n && masked(ip, n) == net)
        })
    }
}

/// `route get vrf V ADDRESS`: the route `addr` takes in `vrf`, and where a new flow to it
/// goes (for flow hash 0 where ECMP picks by hash). Misses are not counted.
fn route_get(s: &State, node: &NodeConfig, vrf: &str, addr: &str) -> Vec<String> {
    let (Ok(vrf), Ok(dst)) = (vrf.parse::<u32>(), addr.parse::<IpAddr>()) else {
        return vec!["error: `route get vrf V ADDRESS` takes a VRF id and an IP address".into()];
    };
    let matched = s.routing.lock().ok().and_then(|r| r.route_for(vrf, dst));
    let Some(((_, prefix, len), nexthop, dynamic)) = matched else {
        return vec![format!("vrf {vrf} {dst}: no route")];
    };
    let port = |p: u32| {
        node.ports
            .get(p as usize)
            .map_or_else(|| format!("port {p}"), |c| c.name.clone())
    };
    let fib = s.tables.fib.snapshot();
    let (learned, now) = (s.tables.neighbors.snapshot(), s.tables.epoch.elapsed().as_secs() as u32);
    // As forwarding finds it (`port`'s learned entries, a workload's own MAC).
    let mac = |p: u32, ip: IpAddr| match neighbor_mac(node, &fib, &learned, s.tables.neighbors.config(), p, ip, now) {
        Lookup::Known { mac, .. } => mac.to_string(),
        Lookup::Stale(mac) => format!("{mac} (stale: confirmed by the next packet)"),
        Lookup::Unknown => "unresolved (asked for by the first packet)".into(),
    };
    let resolved = match fib.resolve_uncounted(vrf, dst, 0) {
        Err(miss) => format!("does not resolve: {miss:?}"),
        Ok(r) => {
            let how = match r.resolution {
                Resolution::Discard => "discard".to_string(),
                Resolution::Receive => "to this node".to_string(),
                Resolution::Interface { port: p, next_hop, .. } => {
                    format!("out of {} to {next_hop}, MAC {}", port(p), mac(p, next_hop))
                }
                Resolution::Tunnel {
                    encap,
                    src,
                    dst: outer,
                    port: p,
                    next_hop,
                    ..
                } => {
                    // VXLAN's inner destination MAC, as the pipeline picks it.
                    let inner = match encap {
                        Encap::Vxlan { vni } => {
                            let router_mac = match fib.nexthop(r.nexthop) {
                                Some(Nexthop::Tunnel { router_mac, .. }) => *router_mac,
                                _ => None,
                            };
                            match (fib.mac(overlay_neighbor_port(vni), dst), router_mac) {
                                (Some(m), _) => format!(", inner MAC {m} (overlay neighbour)"),
                                (None, Some(m)) => format!(", inner MAC {m} (router MAC)"),
                                (None, None) => ", inner MACs as they came".to_string(),
                            }
                        }
                        _ => String::new(),
                    };
                    format!(
                        "{encap:?} {src} -> {outer}, out of {} to {next_hop}, MAC {}{inner}",
                        port(p),
                        mac(p, next_hop)
                    )
                }
            };
            let ecmp = if r.by_hash {
                " (ECMP: each flow picks a member by its hash; this is hash 0's)"
            } else {
                ""
            };
            format!("resolves to nexthop {}: {how}{ecmp}", r.nexthop)
        }
    };
    vec![
        format!(
            "vrf {vrf} {dst}: route {prefix}/{len} -> nexthop {nexthop}{}",
            if dynamic { " dynamic" } else { "" }
        ),
        resolved,
    ]
}

/// Each rule list's decisions (rules in evaluation order, then the default) with the
/// flows each decided, by port name and direction, for the ports that have lists.
pub(crate) fn policy_counts<'a>(policy: &Policy, node: &'a NodeConfig) -> Vec<(&'a str, &'static str, Decision, u64)> {
    let mut out = Vec::new();
    for (i, port) in node.ports.iter().enumerate() {
        for (dir, name) in [(Direction::Ingress, "ingress"), (Direction::Egress, "egress")] {
            if let Some(t) = policy.table(EndpointId(i as u32), dir) {
                out.extend(t.counted().map(|(d, n)| (port.name.as_str(), name, d, n)));
            }
        }
    }
    out
}

/// Rule `id` as operators read it: `rule 3`, with where it came from when `origins`
/// knows (a NetworkPolicy's: `rule 3 (db ingress[0])`).
pub(crate) fn rule_name(id: u32, origins: &BTreeMap<u32, String>) -> String {
    match origins.get(&id) {
        Some(o) => format!("rule {id} ({o})"),
        None => format!("rule {id}"),
    }
}

/// `show policy`: a line per workload port and direction with a rule list, each rule (in
/// evaluation order, with where it came from when `origins` knows) and the default with
/// the flows it decided (a new flow, or one decided again after a change, counts once),
/// or a line saying there is none.
fn policy_lines(policy: &Policy, node: &NodeConfig, origins: &BTreeMap<u32, String>) -> Vec<String> {
    let mut lines: Vec<(String, Vec<String>)> = Vec::new();
    for (port, dir, d, n) in policy_counts(policy, node) {
        let head = format!("{port} {dir}");
        if lines.last().is_none_or(|(h, _)| *h != head) {
            lines.push((head, Vec::new()));
        }
        let item = match d.rule {
            Some(r) => format!("{} {} {n}", rule_name(r.0, origins), d.action),
            None => format!("default {} {n}", d.action),
        };
        lines.last_mut().expect("pushed above").1.push(item);
    }
    if lines.is_empty() {
        return vec!["no policy: every workload port is open".into()];
    }
    lines
        .into_iter()
        .map(|(h, items)| format!("{h}: {}", items.join(", ")))
        .collect()
}

/// `show path-mtus`: a line per tunnel far end whose path MTU the underlay lowered, then
/// how many there are.
fn path_mtu_lines(path_mtus: &PathMtus, now: u32) -> Vec<String> {
    let mut v: Vec<String> = (path_mtus.list(now).iter())
        .map(|(far, mtu, left)| format!("{far} mtu {mtu} for {left} s more"))
        .collect();
    v.push(format!(
        "{} tunnel far ends with a path MTU learned from the underlay",
        v.len()
    ));
    v
}

/// One line per counted thing: its name, its count and what it means (`of`).
fn counted<T: Copy + std::fmt::Debug>(all: &[T], of: impl Fn(T) -> (u64, &'static str)) -> Vec<String> {
    all.iter()
        .map(|&x| {
            let (n, what) = of(x);
            format!("{:<16} {n:>12}  {what}", format!("{x:?}"))
        })
        .collect()
}

/// The live flows that match `filter`, a line each: the first `max` found, or with
/// `most_bytes` the `max` that carried the most bytes, most first; and a last line saying
/// how many matched if that is more.
fn show_flows(table: &FlowTable, filter: &FlowFilter, max: usize, most_bytes: bool) -> Vec<String> {
    let Some(reader) = table.reader() else {
        return vec!["error: no flow reader slot free".into()];
    };
    let (mut kept, mut matching) = (Vec::new(), 0usize);
    let biggest_first = |v: &mut Vec<FlowSnapshot>| {
        v.sort_unstable_by_key(|f| std::cmp::Reverse(f.bytes));
        v.truncate(max);
    };
    reader.for_each(|f| {
        if !filter.matches_flow(&f) {
            return;
        }
        matching += 1;
        if most_bytes {
            kept.push(f);
            // Bounded memory over a table of millions: cut back to the biggest now and then.
            if kept.len() >= 2 * max {
                biggest_first(&mut kept);
            }
        } else if kept.len() < max {
            kept.push(f);
        }
    });
    if most_bytes {
        biggest_first(&mut kept);
    }
    let mut v: Vec<String> = kept
        .iter()
        .map(|f| {
            format!(
                "{} {:?} packets {} bytes {}",
                f.key, f.action.verdict, f.packets, f.bytes
            )
        })
        .collect();
    if matching > v.len() {
        v.push(format!(
            "({} of {matching} matching flows shown{}; narrow with vrf, ip, port, proto, verdict)",
            v.len(),
            if most_bytes { ", the most bytes first" } else { "" }
        ));
    }
    v
}

/// Deletes the flows that match `filter`, each with its reverse, so their next packets are
/// decided afresh; held flows are left ([`vrouter::flow::Reader::delete_where`]).
fn clear_flows(table: &FlowTable, filter: &FlowFilter) -> Vec<String> {
    if filter.verdict.is_some() {
        return vec!["error: `clear flows` takes no verdict: it deletes by key (vrf, ip, port, proto)".into()];
    }
    let Some(mut reader) = table.reader() else {
        return vec!["error: no flow reader slot free".into()];
    };
    let (cleared, held) = reader.delete_where(|k| filter.matches(k));
    vec![format!(
        "cleared {cleared} flow entries (a pair is two); {held} held flows left"
    )]
}

/// Which flows `show flows` lists and `clear flows` deletes: each given field must match,
/// an address or a port on either side.
#[derive(Debug, Default, PartialEq)]
struct FlowFilter {
    vrf: Option<u32>,
    ip: Option<IpAddr>,
    port: Option<u16>,
    proto: Option<u8>,
    /// What the flow's cached decision is (`show flows` only: `clear flows` deletes by
    /// key).
    verdict: Option<FlowVerdict>,
}

impl FlowFilter {
    /// `[vrf N] [ip ADDR] [port N] [proto tcp|udp|icmp|icmpv6|sctp|N] [verdict
    /// allow|deny|hold]`, in any order.
    fn parse(words: &[&str]) -> Result<FlowFilter, String> {
        const USAGE: &str =
            "`show flows [vrf N] [ip ADDR] [port N] [proto tcp|udp|icmp|icmpv6|sctp|N] [verdict allow|deny|hold]`";
        let mut f = FlowFilter::default();
        for pair in words.chunks(2) {
            let [field, value] = pair else {
                return Err(format!("`{}` needs a value: {USAGE}", pair[0]));
            };
            let bad = || format!("`{field} {value}`: not a valid {field}: {USAGE}");
            let taken = match *field {
                "vrf" => f.vrf.replace(value.parse().map_err(|_| bad())?).is_some(),
                "ip" => f.ip.replace(value.parse().map_err(|_| bad())?).is_some(),
                "port" => f.port.replace(value.parse().map_err(|_| bad())?).is_some(),
                "proto" => f
                    .proto
                    .replace(vrouter_cli::config::proto(value).map_err(|_| bad())?)
                    .is_some(),
                "verdict" => {
                    let v = match *value {
                        "allow" => FlowVerdict::Allow,
                        "deny" => FlowVerdict::Deny,
                        "hold" => FlowVerdict::Hold,
                        _ => return Err(bad()),
                    };
                    f.verdict.replace(v).is_some()
                }
                _ => return Err(format!("unknown filter `{field}`: {USAGE}")),
            };
            if taken {
                return Err(format!("`{field}` given twice: {USAGE}"));
            }
        }
        Ok(f)
    }

    /// Whether a flow matches: its key, and its cached verdict when the filter names one.
    fn matches_flow(&self, f: &FlowSnapshot) -> bool {
        self.matches(&f.key) && self.verdict.is_none_or(|v| f.action.verdict == v)
    }

    fn matches(&self, k: &FlowKey) -> bool {
        self.vrf.is_none_or(|v| k.vrf == v)
            && self.proto.is_none_or(|p| k.proto == p)
            && self.port.is_none_or(|p| k.src_port == p || k.dst_port == p)
            && self.ip.is_none_or(|a| k.src_ip() == Some(a) || k.dst_ip() == Some(a))
    }
}

/// `vrouter ctl`: sends `cmd` to the socket and prints the answer.
pub(crate) fn client(path: &str, cmd: &str) -> Result<String, String> {
    let mut s =
        UnixStream::connect(path).map_err(|e| format!("{path}: {e} (is `vrouter run` running, and are you root?)"))?;
    s.write_all(format!("{cmd}\n").as_bytes()).map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// Traces the next `n` packets through the pipeline, waiting up to [`TAP_WAIT`].
fn trace(s: &State, n: u32) -> Vec<String> {
    let taps = &s.tables.taps;
    while taps.next_trace().is_some() {}
    taps.trace(n);
    let deadline = std::time::Instant::now() + TAP_WAIT;
    let mut lines = Vec::new();
    while lines.len() < n as usize && std::time::Instant::now() < deadline {
        match taps.next_trace() {
            Some(l) => lines.push(l),
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    taps.trace(0);
    if lines.is_empty() {
        lines.push(format!("no packets in {}s", TAP_WAIT.as_secs()));
    }
    lines
}

/// Captures up to `count` frames received on `port` (a name or index) into a pcap file.
fn capture(s: &State, node: &NodeConfig, port: &str, file: &str, count: usize) -> Vec<String> {
    let index = node
        .ports
        .iter()
        .position(|p| p.name == port)
        .or_else(|| port.parse().ok().filter(|&i: &usize| i < node.ports.len()));
    let Some(index) = index else {
        return vec![format!("error: no port `{port}`")];
    };
    let taps = &s.tables.taps;
    while taps.next_frame().is_some() {}
    taps.capture(Some(index as u16));
    let deadline = std::time::Instant::now() + TAP_WAIT;
    let mut frames = Vec::new();
    while frames.len() < count && std::time::Instant::now() < deadline {
        match taps.next_frame() {
            Some((_, f)) => frames.push(f),
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    taps.capture(None);
    match write_pcap(file, &frames) {
        Ok(()) => vec![format!(
            "captured {} frames from {} to {file}",
            frames.len(),
            node.ports[index].name
        )],
        Err(e) => vec![format!("error: writing {file}: {e}")],
    }
}

/// A classic pcap file (microsecond timestamps of the write, Ethernet link type).
fn write_pcap(path: &str, frames: &[Vec<u8>]) -> std::io::Result<()> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    for f in frames {
        out.extend_from_slice(&(now.as_secs() as u32).to_le_bytes());
        out.extend_from_slice(&now.subsec_micros().to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
    }
    std::fs::write(path, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Any words after `show flows` give a filter or an error naming the usage, never a
        /// panic; a filter that parses matches a flow exactly when each of its fields does.
        #[test]
        fn any_filter_words_parse_or_are_refused(
            words in proptest::collection::vec(
                prop_oneof![
                    Just("vrf".to_string()), Just("ip".to_string()), Just("port".to_string()),
                    Just("proto".to_string()), Just("tcp".to_string()), Just("10.0.0.4".to_string()),
                    Just("verdict".to_string()), Just("deny".to_string()), Just("allow".to_string()),
                    "[0-9]{1,6}", "\\PC{0,8}",
                ],
                0..7,
            ),
            n in 0u8..8,
            port in 0u16..3,
        ) {
            let words: Vec<&str> = words.iter().map(String::as_str).collect();
            match FlowFilter::parse(&words) {
                Err(e) => prop_assert!(e.contains("show flows [vrf N]"), "{}", e),
                Ok(f) => {
                    let k = FlowKey::v4(Ipv4Addr::new(10, 0, 0, n), Ipv4Addr::new(10, 9, 9, 9), 6, port, 53).with_vrf(u32::from(n));
                    let want = f.vrf.is_none_or(|v| v == u32::from(n))
                        && f.ip.is_none_or(|a| a == IpAddr::from([10, 0, 0, n]) || a == IpAddr::from([10, 9, 9, 9]))
                        && f.port.is_none_or(|p| p == port || p == 53)
                        && f.proto.is_none_or(|p| p == 6);
                    prop_assert_eq!(f.matches(&k), want);
                    // A denied flow of that key: the verdict filter too.
                    let flow = FlowSnapshot {
                        index: 0,
                        key: k,
                        action: vrouter::flow::Action::deny(),
                        generations: Default::default(),
                        packets: 0,
                        bytes: 0,
                        last_seen: 0,
                        reverse: None,
                        tcp_flags: 0,
                    };
                    prop_assert_eq!(f.matches_flow(&flow), want && f.verdict.is_none_or(|v| v == FlowVerdict::Deny));
                }
            }
        }
    }

    #[test]
    fn show_path_mtus_lists_what_holds() {
        let p = PathMtus::default();
        assert_eq!(
            path_mtu_lines(&p, 5),
            ["0 tunnel far ends with a path MTU learned from the underlay"]
        );
        assert!(p.learn(IpAddr::from([192, 0, 2, 9]), 1400, 5));
        assert!(p.learn("fd00:f::2".parse().unwrap(), 1300, 100));
        assert_eq!(
            path_mtu_lines(&p, 200),
            [
                "192.0.2.9 mtu 1400 for 405 s more",
                "fd00:f::2 mtu 1300 for 500 s more",
                "2 tunnel far ends with a path MTU learned from the underlay"
            ]
        );
        assert_eq!(path_mtu_lines(&p, 605).len(), 2, "the first expired");
    }

    /// Workload port `name` of 10.0.I.2 in VRF 1.
    fn workload(name: &str, i: u8) -> vrouter::PortConfig {
        use vrouter::wire::ethernet::MacAddr;
        vrouter::PortConfig {
            name: name.into(),
            mac: MacAddr([2, 0xa, 0, 0, 0, i]),
            mtu: 1500,
            addrs: vec![],
            vlan: None,
            role: vrouter::PortRole::Workload {
                vrf: 1,
                addrs: vec![IpAddr::from([10, 0, i, 2])],
                mac: MacAddr([2, 0, 0, 0, i, 2]),
                gateways: vec![],
            },
        }
    }

    /// `show policy`: each list's rules and default with the flows each decided, for the
    /// ports that have lists; a line saying so when none has.
    #[test]
    fn show_policy_counts_what_each_rule_decided() {
        use vrouter::policy::{Endpoint, Fields, PolicySet, RuleList};
        let node = NodeConfig {
            ports: vec![workload("w1", 1), workload("w2", 2)],
            ..Default::default()
        };
        let (open, _) = Policy::compile(&PolicySet::default(), 1).unwrap();
        let none = BTreeMap::new();
        assert_eq!(
            policy_lines(&open, &node, &none),
            ["no policy: every workload port is open"]
        );
        let set = PolicySet {
            endpoints: vec![Endpoint {
                id: EndpointId(1),
                vrf: 1,
                addrs: vec![IpAddr::from([10, 0, 2, 2])],
                ingress: Some(std::sync::Arc::new(RuleList::deny_port(6, 22))),
                egress: Some(std::sync::Arc::new(RuleList::allow_only(17))),
            }],
        };
        let (p, _) = Policy::compile(&set, 2).unwrap();
        let tcp = |dport| Fields {
            vrf: 1,
            src: 0x0a00_0102,
            dst: 0x0a00_0202,
            v6: false,
            proto: 6,
            a: 40000,
            b: dport,
        };
        let ingress = p.table(EndpointId(1), Direction::Ingress).unwrap();
        for dport in [22, 80, 443] {
            ingress.classify(&tcp(dport));
        }
        assert_eq!(
            policy_lines(&p, &node, &none),
            [
                "w2 ingress: rule 1 deny 1, default allow 2",
                "w2 egress: rule 1 allow 0, default deny 0"
            ]
        );
        // A NetworkPolicy's rules say where they came from.
        let origins = BTreeMap::from([(1, "db ingress[0]".to_string())]);
        assert_eq!(
            policy_lines(&p, &node, &origins)[0],
            "w2 ingress: rule 1 (db ingress[0]) deny 1, default allow 2"
        );
    }

    /// `route get` through an interface, a VXLAN tunnel, an ECMP group, a VRF translation,
    /// and a route that does not resolve; none counted as a miss.
    #[test]
    fn route_get_names_the_route_and_the_way_out() {
        use vrouter::fib::{Fib, FibBuilder};
        use vrouter::wire::ethernet::MacAddr;
        use vrouter::{PortConfig, PortRole, Router};
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let fabric = PortConfig {
            name: "fabric".into(),
            mac: MacAddr([2, 0xa, 0, 0, 0, 3]),
            mtu: 1500,
            addrs: vec![ip("192.0.2.1")],
            vlan: None,
            role: PortRole::Fabric { vrf: 0 },
        };
        let node = NodeConfig {
            ports: vec![workload("w1", 1), workload("w2", 2), fabric],
            tunnel_endpoints: vec![ip("192.0.2.1")],
            ..Default::default()
        };
        let mut b = FibBuilder::new();
        for vrf in [0, 1, 2] {
            b.add_vrf(vrf).unwrap();
        }
        let nexthops = [
            (1, Nexthop::Interface { port: 0, gateway: None }),
            (2, Nexthop::Interface { port: 1, gateway: None }),
            (
                3,
                Nexthop::Interface {
                    port: 2,
                    gateway: Some(ip("192.0.2.9")),
                },
            ),
            (
                10,
                Nexthop::Tunnel {
                    encap: Encap::Vxlan { vni: 42 },
                    src: ip("192.0.2.1"),
                    dst: ip("192.0.2.2"),
                    underlay_vrf: 0,
                    router_mac: None,
                    dscp: Default::default(),
                    zero_udp_checksum: false,
                },
            ),
            (
                13,
                Nexthop::Ecmp {
                    members: vec![(1, 1), (2, 1)],
                },
            ),
            (20, Nexthop::VrfTranslate { vrf: 1 }),
        ];
        for (id, nh) in nexthops {
            b.set_nexthop(id, nh).unwrap();
        }
        let routes = [
            (1, "10.0.2.2", 32, 2),
            (1, "10.9.0.0", 16, 10),
            (1, "10.96.0.0", 24, 13),
            (1, "10.5.0.0", 16, 9),
            (0, "192.0.2.0", 24, 3),
            (2, "0.0.0.0", 0, 20),
        ];
        for (vrf, prefix, len, nh) in routes {
            b.add_route(vrf, ip(prefix), len, nh).unwrap();
        }
        let fib = std::sync::Arc::new(Fib::new());
        b.publish(&fib).unwrap();
        let router = Router::new(node.clone(), fib.clone(), 1000).unwrap();
        let state = State {
            ports: Arc::new(Mutex::new(Ports {
                node,
                devices: vec![],
                changes: Default::default(),
            })),
            tables: router.tables().clone(),
            counters: vec![],
            listing: Default::default(),
            route_counters: Arc::default(),
            kernel_routes: Arc::default(),
            routing: Arc::new(Mutex::new(Routing::new(
                b,
                vec!["w1".into(), "w2".into(), "fabric".into()],
            ))),
        };
        let get = |what: &str| answer(&format!("route get {what}"), &state);
        assert_eq!(
            get("vrf 1 10.0.2.2"),
            "vrf 1 10.0.2.2: route 10.0.2.2/32 -> nexthop 2\nresolves to nexthop 2: out of w2 to 10.0.2.2, MAC 02:00:00:00:02:02\n"
        );
        assert_eq!(
            get("vrf 1 10.9.7.7"),
            "vrf 1 10.9.7.7: route 10.9.0.0/16 -> nexthop 10\nresolves to nexthop 10: Vxlan { vni: 42 } 192.0.2.1 -> 192.0.2.2, out of fabric to 192.0.2.9, MAC unresolved (asked for by the first packet), inner MACs as they came\n"
        );
        let ecmp = get("vrf 1 10.96.0.10");
        assert!(
            ecmp.starts_with("vrf 1 10.96.0.10: route 10.96.0.0/24 -> nexthop 13\nresolves to nexthop "),
            "{ecmp}"
        );
        assert!(
            ecmp.ends_with(" (ECMP: each flow picks a member by its hash; this is hash 0's)\n"),
            "{ecmp}"
        );
        assert_eq!(
            get("vrf 2 10.0.2.2"),
            "vrf 2 10.0.2.2: route 0.0.0.0/0 -> nexthop 20\nresolves to nexthop 2: out of w2 to 10.0.2.2, MAC 02:00:00:00:02:02\n",
            "translated into VRF 1"
        );
        assert_eq!(
            get("vrf 1 10.5.1.1"),
            "vrf 1 10.5.1.1: route 10.5.0.0/16 -> nexthop 9\ndoes not resolve: UnresolvedNexthop(9)\n"
        );
        assert_eq!(get("vrf 1 10.4.0.1"), "vrf 1 10.4.0.1: no route\n");
        assert_eq!(get("vrf 7 10.4.0.1"), "vrf 7 10.4.0.1: no route\n");
        assert!(get("vrf 1 nonsense").starts_with("error: "));
        assert_eq!(get("10.0.2.2"), "error: expected `route get vrf V ADDRESS`\n");
        assert_eq!(fib.stats().get(), (0, 0, 0), "diagnostics count no misses");

        // Nexthop 9 defined by command, its port named: the route to it resolves.
        let out = answer(
            "nexthop add 9 port fabric gateway 192.0.2.9; nexthop add 31 ecmp 9,2",
            &state,
        );
        assert!(
            out.ends_with("nexthops 2 set, 0 removed; 2 dynamic nexthops\n"),
            "{out}"
        );
        assert_eq!(
            get("vrf 1 10.5.1.1"),
            "vrf 1 10.5.1.1: route 10.5.0.0/16 -> nexthop 9\nresolves to nexthop 9: out of fabric to 192.0.2.9, MAC unresolved (asked for by the first packet)\n"
        );
        let listed = answer("show nexthops", &state);
        assert_eq!(
            listed,
            "9: port fabric gateway 192.0.2.9 dynamic\n31: ecmp 9,2 dynamic\n"
        );
        let out = answer("nexthop del 9", &state);
        assert_eq!(out, "error: nexthop del 9: ECMP group 31 holds it; nothing changed\n");
        let out = answer("nexthop add 2 discard", &state);
        assert!(out.contains("the config file defines this nexthop"), "{out}");

        // `show routes` filtered: by VRF, and to the prefixes inside one.
        let out = answer(
            "route add vrf 1 10.7.0.0/16 nexthop 9; route add vrf 1 10.7.3.0/24 nexthop 9; route add vrf 1 10.8.0.0/24 nexthop 9; route add vrf 2 10.7.1.0/24 nexthop 9; route add vrf 1 2001:db8:7::/48 nexthop 9",
            &state,
        );
        assert!(out.contains("5 added"), "{out}");
        let show = |what: &str| answer(&format!("show routes {what}"), &state);
        assert_eq!(
            show("vrf 1 within 10.7.0.0/16"),
            "vrf 1 10.7.0.0/16 -> nexthop 9 dynamic\nvrf 1 10.7.3.0/24 -> nexthop 9 dynamic\n"
        );
        assert_eq!(
            show("within 10.7.3.9/24"),
            "vrf 1 10.7.3.0/24 -> nexthop 9 dynamic\n",
            "host bits ignored"
        );
        assert_eq!(
            show("within 10.7.0.0/17 vrf 2"),
            "vrf 2 10.7.1.0/24 -> nexthop 9 dynamic\n"
        );
        assert_eq!(
            show("within 2001:db8::/32"),
            "vrf 1 2001:db8:7::/48 -> nexthop 9 dynamic\n"
        );
        assert_eq!(
            show("within 0.0.0.0/0").lines().count(),
            4,
            "every IPv4 route, none of IPv6"
        );
        assert_eq!(show("vrf 2"), "vrf 2 10.7.1.0/24 -> nexthop 9 dynamic\n");
        for (bad, says) in [
            ("within 10.7.0.0", "`10.7.0.0` is not PREFIX/LEN"),
            ("within 10.7.0.0/33", "`10.7.0.0/33` is not PREFIX/LEN"),
            ("vrf x", "`x` is not a VRF id"),
            ("vrf", "expected `show routes [vrf V] [within PREFIX/LEN]`"),
        ] {
            assert_eq!(show(bad), format!("error: {says}\n"), "{bad}");
        }
    }

    #[test]
    fn flow_filters_parse_and_match_either_side() {
        let k = FlowKey::v4(Ipv4Addr::new(10, 0, 1, 2), Ipv4Addr::new(10, 0, 2, 2), 6, 40000, 443).with_vrf(3);
        let f = |words: &str| FlowFilter::parse(&words.split_whitespace().collect::<Vec<_>>());
        let matches = |words: &str| f(words).unwrap().matches(&k);
        assert_eq!(f("").unwrap(), FlowFilter::default());
        assert!(matches(""));
        for hit in [
            "vrf 3",
            "ip 10.0.2.2",
            "ip 10.0.1.2",
            "port 443",
            "port 40000",
            "proto tcp",
            "proto 6",
        ] {
            assert!(matches(hit), "{hit}");
        }
        for miss in [
            "vrf 4",
            "ip 10.0.2.3",
            "ip ::1",
            "port 80",
            "proto udp",
            "vrf 3 port 80",
        ] {
            assert!(!matches(miss), "{miss}");
        }
        assert!(
            matches("proto tcp vrf 3 ip 10.0.2.2 port 443"),
            "every field, any order"
        );
        assert_eq!(f("proto sctp").map(|f| f.proto), Ok(Some(132)));
        for (bad, why) in [
            ("vrf", "`vrf` needs a value"),
            ("vrf x", "`vrf x`: not a valid vrf"),
            ("ip 10.0.0", "`ip 10.0.0`: not a valid ip"),
            ("port 70000", "`port 70000`: not a valid port"),
            ("proto egp", "`proto egp`: not a valid proto"),
            ("host 1", "unknown filter `host`"),
            ("vrf 1 vrf 2", "`vrf` given twice"),
        ] {
            let e = f(bad).unwrap_err();
            assert!(e.starts_with(why) && e.contains("show flows [vrf N]"), "{bad}: {e}");
        }
    }

    /// A UDP flow from 10.0.0.`n` in VRF 1.
    fn key(n: u8) -> FlowKey {
        FlowKey::v4(Ipv4Addr::new(10, 0, 0, n), Ipv4Addr::new(10, 9, 9, 9), 17, 1000, 53).with_vrf(1)
    }

    /// A table holding the pairs of keys 0 to 4.
    fn five_pairs() -> FlowTable {
        use vrouter::flow::{Action, FlowTableConfig, Generations};
        let table = FlowTable::new(FlowTableConfig::with_capacity(1000)).unwrap();
        let r = table.reader().unwrap();
        for n in 0..5 {
            let allow = Action::allow(1);
            r.insert_pair(&key(n), &key(n).reversed(), allow, allow, Generations::default(), 0)
                .unwrap();
        }
        drop(r);
        table
    }

    #[test]
    fn show_flows_lists_the_matching_flows_up_to_its_limit() {
        let table = five_pairs();
        let all = FlowFilter::default();
        assert_eq!(
            show_flows(&table, &all, 100, false).len(),
            10,
            "five pairs, no count line"
        );
        let some = show_flows(&table, &all, 3, false);
        assert_eq!(some.len(), 4);
        assert_eq!(
            some[3],
            "(3 of 10 matching flows shown; narrow with vrf, ip, port, proto, verdict)"
        );
        // By verdict: the five pairs allow; none denies.
        let verdict = |v| FlowFilter {
            verdict: Some(v),
            ..FlowFilter::default()
        };
        assert_eq!(show_flows(&table, &verdict(FlowVerdict::Allow), 100, false).len(), 10);
        assert!(show_flows(&table, &verdict(FlowVerdict::Deny), 100, false).is_empty());
        assert!(clear_flows(&table, &verdict(FlowVerdict::Deny))[0].starts_with("error: "));
        let one = FlowFilter {
            ip: Some("10.0.0.4".parse().unwrap()),
            ..FlowFilter::default()
        };
        let lines = show_flows(&table, &one, 100, false);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines.iter().all(|l| l.contains("10.0.0.4") && l.contains("Allow")),
            "{lines:?}"
        );
    }

    #[test]
    fn show_flows_top_lists_the_most_bytes_first() {
        let table = five_pairs();
        let r = table.reader().unwrap();
        for (n, bytes, packets) in [(2, 1000, 3), (4, 500, 1), (1, 200, 1)] {
            let id = r.lookup(&key(n), key(n).hash()).unwrap();
            for _ in 0..packets {
                r.flow(id).record(bytes, 0, 0);
            }
        }
        drop(r);
        let top = show_flows(&table, &FlowFilter::default(), 2, true);
        assert_eq!(top.len(), 3, "{top:?}");
        assert!(
            top[0].contains("10.0.0.2 ") && top[0].ends_with("bytes 3000"),
            "{top:?}"
        );
        assert!(top[1].contains("10.0.0.4 ") && top[1].ends_with("bytes 500"), "{top:?}");
        assert_eq!(
            top[2],
            "(2 of 10 matching flows shown, the most bytes first; narrow with vrf, ip, port, proto, verdict)"
        );
        // Past the cut-back point (twice the count kept), still the biggest.
        let one = show_flows(&table, &FlowFilter::default(), 1, true);
        assert!(one[0].ends_with("bytes 3000"), "{one:?}");
    }

    #[test]
    fn clear_flows_deletes_the_matching_pairs_and_leaves_held_flows() {
        let table = five_pairs();
        table.reader().unwrap().insert_held(&key(9), 0).unwrap();
        let one = FlowFilter {
            ip: Some("10.0.0.4".parse().unwrap()),
            ..FlowFilter::default()
        };
        assert_eq!(
            clear_flows(&table, &one),
            ["cleared 2 flow entries (a pair is two); 0 held flows left"]
        );
        assert_eq!(table.stats().entries, 9);
        assert_eq!(
            clear_flows(&table, &FlowFilter::default()),
            ["cleared 8 flow entries (a pair is two); 1 held flows left"]
        );
        assert_eq!(
            show_flows(&table, &FlowFilter::default(), 100, false).len(),
            1,
            "the held flow"
        );
    }
}
