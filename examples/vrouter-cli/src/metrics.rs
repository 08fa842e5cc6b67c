//! Prometheus text metrics over HTTP on a loopback address: per-worker packet counters,
//! drops by reason, flow table use and events, routing tables, learned neighbours.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use vrouter::dataplane::{Event, PortState, SharedCounters};
use vrouter::{DropReason, Tables};

use crate::ctl::{KernelRoutesSlot, Ports};
use vrouter_cli::dynamic::RouteCounters;

/// Serves `GET /metrics` on `addr` from a thread.
pub(crate) fn serve(
    addr: SocketAddr,
    tables: Tables,
    counters: Vec<SharedCounters>,
    ports: Arc<Mutex<Ports>>,
    routes: Arc<RouteCounters>,
    kernel: KernelRoutesSlot,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr)?;
    std::thread::Builder::new()
        .name("vrouter-metrics".into())
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                let now = ports.lock().map(|p| p.clone()).unwrap_or_default();
                let _ = answer(conn, &tables, &counters, &now, &routes, kernel_counts(&kernel));
            }
        })?;
    Ok(())
}

fn answer(
    mut conn: TcpStream,
    tables: &Tables,
    counters: &[SharedCounters],
    ports: &Ports,
    routes: &RouteCounters,
    kernel: Vec<(u32, u32, usize, usize)>,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut req = [0u8; 1024];
    let n = conn.read(&mut req)?;
    let ok = req[..n].starts_with(b"GET /metrics");
    let body = if ok {
        render(tables, counters, ports, routes, kernel)
    } else {
        "not found: try /metrics\n".into()
    };
    let status = if ok { "200 OK" } else { "404 Not Found" };
    write!(
        conn,
        "HTTP/1.0 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Each kernel routes follower's table, VRF, and followed and skipped prefixes.
pub(crate) fn kernel_counts(slot: &KernelRoutesSlot) -> Vec<(u32, u32, usize, usize)> {
    let followers = slot.lock().map(|f| f.clone()).unwrap_or_default();
    followers
        .iter()
        .filter_map(|f| {
            let f = f.lock().ok()?;
            let ((table, vrf), (followed, skipped)) = (f.table_and_vrf(), f.counts());
            Some((table, vrf, followed, skipped))
        })
        .collect()
}

fn render(
    tables: &Tables,
    counters: &[SharedCounters],
    ports: &Ports,
    routes: &RouteCounters,
    kernel: Vec<(u32, u32, usize, usize)>,
) -> String {
    let mut out = String::new();
    let mut family = |name: &str, help: &str, kind: &str, rows: Vec<(String, u64)>| {
        out += &format!("# HELP {name} {help}\n# TYPE {name} {kind}\n");
        for (labels, v) in rows {
            out += &format!("{name}{labels} {v}\n");
        }
    };
    let per: Vec<_> = counters.iter().map(|c| c.snapshot()).collect();
    let by_worker = |f: fn(&vrouter::Stats) -> u64| {
        per.iter()
            .enumerate()
            .map(|(i, s)| (format!("{{worker=\"{i}\"}}"), f(s)))
            .collect()
    };
    family(
        "vrouter_rx_packets_total",
        "Packets received.",
        "counter",
        by_worker(|s| s.rx),
    );
    family(
        "vrouter_tx_packets_total",
        "Packets transmitted.",
        "counter",
        by_worker(|s| s.tx),
    );
    family(
        "vrouter_originated_packets_total",
        "Packets the router made itself (ARP requests, neighbour solicitations).",
        "counter",
        by_worker(|s| s.originated),
    );
    family(
        "vrouter_empty_polls_total",
        "Polls that found no packet.",
        "counter",
        by_worker(|s| s.empty_polls),
    );
    family(
        "vrouter_fill_starved_total",
        "Times a fill ring could not be restocked.",
        "counter",
        by_worker(|s| s.fill_starved),
    );
    let total = vrouter::Stats::sum(&per);
    family(
        "vrouter_dropped_packets_total",
        "Packets dropped, by reason.",
        "counter",
        DropReason::ALL
            .iter()
            .map(|&r| (format!("{{reason=\"{r:?}\"}}"), total.dropped_for(r)))
            .collect(),
    );
    family(
        "vrouter_events_total",
        "What the pipeline did besides forwarding or dropping: ICMP errors sent, packets split, MSS lowered.",
        "counter",
        Event::ALL
            .iter()
            .map(|&e| (format!("{{event=\"{e:?}\"}}"), total.count_of(e)))
            .collect(),
    );
    let f = tables.flows.stats();
    family(
        "vrouter_flows",
        "Live flow entries (each direction counts).",
        "gauge",
        vec![(String::new(), f.entries)],
    );
    family(
        "vrouter_flow_capacity",
        "Flow table slots.",
        "gauge",
        vec![(String::new(), f.capacity)],
    );
    family(
        "vrouter_flow_events_total",
        "Flow table events, by kind: refusals (table full, a VRF's quota, no hold record) are \
         the ones to alert on; a full refusal comes when both of a key's buckets are full, \
         from about 80% of the slots.",
        "counter",
        [
            ("inserts", f.inserts),
            ("deletes", f.deletes),
            ("aged", f.aged),
            ("evictions", f.evictions),
            ("full_refusals", f.full_refusals),
            ("quota_refusals", f.quota_refusals),
            ("hold_refusals", f.hold_refusals),
            ("hold_overflows", f.hold_overflows),
        ]
        .into_iter()
        .map(|(event, v)| (format!("{{event=\"{event}\"}}"), v))
        .collect(),
    );
    if let Some(quota) = tables.flows.config().vrf_quota {
        let usage: Vec<(String, (u32, u64))> = tables
            .fib
            .snapshot()
            .vrf_ids()
            .map(|v| (format!("{{vrf=\"{v}\"}}"), tables.flows.vrf_usage(v)))
            .collect();
        family(
            "vrouter_flow_vrf_quota",
            "Most live flow entries a VRF may hold (the same for every VRF; a reload may change it).",
            "gauge",
            vec![(String::new(), u64::from(quota))],
        );
        family(
            "vrouter_vrf_flows",
            "Live flow entries per VRF, against vrouter_flow_vrf_quota.",
            "gauge",
            usage.iter().map(|(l, (n, _))| (l.clone(), u64::from(*n))).collect(),
        );
        family(
            "vrouter_vrf_flow_quota_refusals_total",
            "New flows a VRF's quota refused (forwarded by the slow path, not cached).",
            "counter",
            usage.iter().map(|(l, (_, r))| (l.clone(), *r)).collect(),
        );
    }
    let r = crate::ctl::RoutingStats::of(tables, routes);
    family(
        "vrouter_routing_generation",
        "Generation of the routing tables running (each publish, a reload say, adds one).",
        "gauge",
        vec![(String::new(), u64::from(r.generation))],
    );
    family(
        "vrouter_routes",
        "Routes in the routing tables running, every VRF and family.",
        "gauge",
        vec![(String::new(), r.routes as u64)],
    );
    family(
        "vrouter_dynamic_routes",
        "Of those, the routes added over the control socket (`route add`).",
        "gauge",
        vec![(String::new(), r.dynamic as u64)],
    );
    family(
        "vrouter_dynamic_nexthops",
        "Nexthops added over the control socket (`nexthop add`).",
        "gauge",
        vec![(String::new(), r.dynamic_nexthops as u64)],
    );
    family(
        "vrouter_dynamic_vrfs",
        "VRFs added over the control socket (`vrf add`).",
        "gauge",
        vec![(String::new(), r.dynamic_vrfs as u64)],
    );
    family(
        "vrouter_dynamic_labels",
        "MPLS labels mapped over the control socket (`label add`).",
        "gauge",
        vec![(String::new(), r.dynamic_labels as u64)],
    );
    family(
        "vrouter_dynamic_vnis",
        "VXLAN VNIs mapped over the control socket (`vni add`).",
        "gauge",
        vec![(String::new(), r.dynamic_vnis as u64)],
    );
    family(
        "vrouter_dynamic_neighbors",
        "Neighbour entries (next hops' and overlay ones) set over the control socket (`neighbor add`).",
        "gauge",
        vec![(String::new(), r.dynamic_neighbors as u64)],
    );
    if !kernel.is_empty() {
        let by_table = |pick: fn(&(u32, u32, usize, usize)) -> usize| {
            kernel
                .iter()
                .map(|k| (format!("{{table=\"{}\",vrf=\"{}\"}}", k.0, k.1), pick(k) as u64))
                .collect()
        };
        family(
            "vrouter_kernel_routes_followed",
            "Prefixes of a kernel table followed (`[[kernel_routes]]`) that are routes of the router.",
            "gauge",
            by_table(|k| k.2),
        );
        family(
            "vrouter_kernel_routes_skipped",
            "Prefixes of a kernel table followed that the router could not take (`show kernel-routes` says why).",
            "gauge",
            by_table(|k| k.3),
        );
    }
    family(
        "vrouter_route_command_lines_total",
        "`vrf`, `route`, `nexthop`, `label`, `vni` and `neighbor` lines on the control socket, by result: applied, or refused whole (unreadable, or failing a check).",
        "counter",
        vec![
            ("{result=\"applied\"}".into(), routes.applied.load(Ordering::Relaxed)),
            ("{result=\"refused\"}".into(), routes.refused.load(Ordering::Relaxed)),
        ],
    );
    family(
        "vrouter_routing_table_bytes",
        "Memory of the route tables: those running, and the spares kept for the next patches.",
        "gauge",
        vec![
            ("{tables=\"running\"}".into(), r.table_bytes as u64),
            ("{tables=\"spare\"}".into(), r.spare_bytes as u64),
        ],
    );
    family(
        "vrouter_route_misses_total",
        "Route lookups that found no way, by reason (each one's packet is dropped and counted).",
        "counter",
        vec![
            ("{reason=\"no_route\"}".into(), r.misses.0),
            ("{reason=\"unresolved_nexthop\"}".into(), r.misses.1),
            ("{reason=\"translate_loop\"}".into(), r.misses.2),
        ],
    );
    family(
        "vrouter_neighbors_learned",
        "Next-hop MACs learned by ARP / neighbour discovery.",
        "gauge",
        vec![(String::new(), tables.neighbors.snapshot().len() as u64)],
    );
    family(
        "vrouter_neighbor_table_full_total",
        "Neighbours not learned because the table was full.",
        "counter",
        vec![(String::new(), tables.neighbors.full_refusals())],
    );
    family(
        "vrouter_neighbor_learning_throttled_total",
        "Neighbour writes nobody asked for, refused over the per-second learning budget.",
        "counter",
        vec![(String::new(), tables.neighbors.throttled())],
    );
    let total = vrouter::Stats::sum(&per);
    let by_port = |v: &[u64]| {
        ports
            .node
            .ports
            .iter()
            .zip(v)
            .map(|(p, &n)| (format!("{{port=\"{}\"}}", p.name), n))
            .collect()
    };
    family(
        "vrouter_port_rx_packets_total",
        "Packets received per port (following the port when a reload renumbers it).",
        "counter",
        by_port(&total.port_rx),
    );
    family(
        "vrouter_port_tx_packets_total",
        "Packets transmitted per port (following the port when a reload renumbers it).",
        "counter",
        by_port(&total.port_tx),
    );
    family(
        "vrouter_port_kernel_dropped_packets_total",
        "Packets the kernel dropped before they reached a port (its AF_XDP socket's RX ring full or fill ring empty), read now and then.",
        "counter",
        by_port(&total.port_kernel_dropped),
    );
    let count = |state: PortState| total.port_state.iter().filter(|&&s| s == state).count() as u64;
    family(
        "vrouter_ports_device_gone",
        "Ports whose device went away (a pod deleted before its port): remove them by reload.",
        "gauge",
        vec![(String::new(), count(PortState::Gone))],
    );
    family(
        "vrouter_ports_device_down",
        "Ports whose device is down: what is routed to them is dropped until it is up.",
        "gauge",
        vec![(String::new(), count(PortState::Down))],
    );
    let rules = crate::ctl::policy_counts(&tables.policy.load(), &ports.node)
        .into_iter()
        .map(|(port, dir, d, n)| {
            let rule = d.rule.map_or("default".to_string(), |r| r.0.to_string());
            let labels = format!(
                "{{port=\"{port}\",direction=\"{dir}\",rule=\"{rule}\",action=\"{}\"}}",
                d.action
            );
            (labels, n)
        })
        .collect();
    family(
        "vrouter_flow_log_lost_total",
        "Records of flows decided by logging rules (allow-log, deny-log) lost to a full flow log.",
        "counter",
        vec![(String::new(), tables.flow_log.lost())],
    );
    family(
        "vrouter_policy_flows_total",
        "Flows each policy rule (or a list's default) decided: a new flow, or one decided again after a change.",
        "counter",
        rules,
    );
    let c = ports.changes;
    family(
        "vrouter_port_changes_total",
        "Reloads that changed ports: while the workers ran, or with them paused (the UMEMs grew).",
        "counter",
        vec![("{how=\"live\"}".into(), c.live), ("{how=\"paused\"}".into(), c.paused)],
    );
    family(
        "vrouter_port_change_stand_still_microseconds",
        "How long the last port change stood the workers still (parked between bursts, or paused).",
        "gauge",
        vec![(String::new(), c.last_stand_still.as_micros() as u64)],
    );
    out
}
