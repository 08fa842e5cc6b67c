//! The router's configuration front ends, which read text an operator or a tenant wrote:
//! the TOML file `vrouter run` loads, Kubernetes NetworkPolicy YAML (written by any
//! namespace's owner in a shared cluster), and the control socket's `route` commands
//! (sent by route daemons).

use std::collections::BTreeMap;
use std::net::IpAddr;

use policy::k8s::ContainerPort;
use policy::{EndpointId, Policy};
use vrouter_cli::k8s::{Cluster, Pod};

/// A configuration file: refused with a message that names the file (and line), or
/// accepted, and then its routes publish and its flow table can be made.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match vrouter_cli::config::parse("fuzz.toml", text) {
        Ok(mut c) => {
            // A FIB the checks let through may still be refused (a table full), never panic.
            let _ = c.routes.publish(&fib::Fib::new());
            let flows = flow::FlowTableConfig {
                // The size is the operator's to choose; the options are what is checked.
                capacity: c.flows.capacity.min(1 << 12),
                ..c.flows
            };
            assert!(flow::FlowTable::new(flows).is_ok(), "checked flow options refused");
        }
        Err(e) => assert!(e.starts_with("fuzz.toml"), "{e}"),
    }
}

/// A `vrf`, `route`, `nexthop`, `label` and `vni` command line, written out again as
/// `show commands` does and read back as itself, against a router with VRFs
/// 0 and 1, ports `a` and `b`, nexthops 1 and 2 (discards) and 3 (a lookup in VRF 1), one
/// route, label 100 and VNI 42 of its file: refused with nothing published, or applied
/// and published, each dynamic route then held and routed, each dynamic nexthop defined,
/// each dynamic label mapped to a nexthop that delivers into a VRF and each VNI to an
/// existing VRF, each dynamic VRF published.
pub fn route_commands(data: &[u8]) {
    use dataplane::pipeline::check_label_nexthop;
    use vrouter_cli::dynamic::{self, Routing};
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(commands) = dynamic::parse(line) else {
        return;
    };
    // `show commands` writes commands out to be read back: each reads as itself.
    let written: Vec<String> = commands.iter().map(ToString::to_string).collect();
    assert_eq!(
        dynamic::parse(&written.join("; ")).as_ref(),
        Ok(&commands),
        "{written:?}"
    );
    let fib = fib::Fib::new();
    let mut b = fib::FibBuilder::new();
    for vrf in [0, 1] {
        b.add_vrf(vrf).expect("a small VRF id");
    }
    for id in [1, 2] {
        b.set_nexthop(id, fib::Nexthop::Discard).expect("a plain nexthop");
    }
    b.set_nexthop(3, fib::Nexthop::VrfTranslate { vrf: 1 })
        .expect("a lookup nexthop");
    b.add_route(1, IpAddr::from([10, 0, 1, 0]), 24, 1)
        .expect("a clean prefix");
    b.set_label(100, 3).expect("a narrow label");
    b.set_vni(42, 1).expect("a narrow VNI");
    let file_mac = wire::ethernet::MacAddr([2, 0, 0, 0, 0, 1]);
    let overlay = dataplane::pipeline::overlay_neighbor_port(42);
    let file_neighbor = fib::Neighbor {
        mac: file_mac,
        state: fib::NeighborState::Reachable,
    };
    b.set_neighbor(0, IpAddr::from([192, 0, 2, 1]), file_neighbor);
    b.set_neighbor(overlay, IpAddr::from([10, 9, 0, 5]), file_neighbor);
    let mut r = Routing::new(b, vec!["a".into(), "b".into()]);
    r.builder.publish(&fib).expect("a small FIB publishes");
    let before = fib.snapshot().generation();
    match r.apply(&commands, &fib) {
        Ok(_) => assert_eq!(fib.snapshot().generation(), before + 1),
        Err(_) => {
            assert_eq!(fib.snapshot().generation(), before, "a refused line published");
            assert_eq!((r.dynamic_count(), r.dynamic_nexthops()), (0, 0));
            assert_eq!(r.dynamic_tunnel_ids(), (0, 0));
            assert_eq!(r.dynamic_vrfs(), 0);
            assert_eq!(r.dynamic_neighbors(), 0);
        }
    }
    for line in r.nexthop_listing() {
        // "N: ... dynamic"
        let id = line.split(':').next().unwrap().parse().unwrap();
        assert!(r.builder.has_nexthop(id), "{line}");
    }
    let s = fib.snapshot();
    for line in r.listing() {
        // "vrf V PREFIX/LEN -> nexthop N dynamic": held by the builder, and the prefix's
        // own address routed (to N, or by a longer prefix).
        let w: Vec<&str> = line.split_whitespace().collect();
        let (addr, len) = w[2].split_once('/').unwrap();
        let (vrf, addr) = (w[1].parse().unwrap(), addr.parse().unwrap());
        assert_eq!(
            r.builder.route(vrf, addr, len.parse().unwrap()),
            Some(w[5].parse().unwrap()),
            "{line}"
        );
        assert!(s.lookup(vrf, addr).is_ok(), "{line}");
    }
    for line in r.label_listing().chain(r.vni_listing()) {
        // "label L -> nexthop N dynamic" or "vni V -> vrf R dynamic": published so, to a
        // nexthop or VRF that exists.
        let w: Vec<&str> = line.split_whitespace().collect();
        let (key, to): (u32, u32) = (w[1].parse().unwrap(), w[4].parse().unwrap());
        if w[0] == "label" {
            assert_eq!(s.label(key), Some(to), "{line}");
            let nh = r.builder.nexthop(to).expect("the label's nexthop");
            assert!(check_label_nexthop(nh).is_ok(), "{line}: {nh:?}");
        } else {
            assert_eq!(s.vni(key), Some(to), "{line}");
            assert!(r.builder.has_vrf(to), "{line}");
        }
    }
    for line in r.vrf_listing() {
        // "V dynamic": published.
        let vrf: u32 = line.split_whitespace().next().unwrap().parse().unwrap();
        assert!(s.vrf_ids().any(|v| v == vrf), "{line}");
    }
    for line in r.neighbor_listing() {
        // "ADDR MAC on PORT dynamic" or "ADDR MAC in vni V dynamic": published so.
        let w: Vec<&str> = line.split_whitespace().collect();
        let port = match (w[2], w[3]) {
            ("on", "a") => 0,
            ("on", "b") => 1,
            ("in", _) => dataplane::pipeline::overlay_neighbor_port(w[4].parse().unwrap()),
            _ => panic!("{line}"),
        };
        let mac = s.mac(port, w[0].parse().unwrap()).map(|m| m.to_string());
        assert_eq!(mac.as_deref(), Some(w[1]), "{line}");
    }
    // The file's own stay as they were.
    assert_eq!((s.label(100), s.vni(42)), (Some(3), Some(1)));
    assert_eq!(s.mac(0, IpAddr::from([192, 0, 2, 1])), Some(file_mac));
    assert_eq!(s.mac(overlay, IpAddr::from([10, 9, 0, 5])), Some(file_mac));
    assert!(s.vrf_ids().any(|v| v == 0) && s.vrf_ids().any(|v| v == 1));
}

/// NetworkPolicy YAML against a small cluster: refused with a message naming the file,
/// or read, and then it compiles into a policy set and a classifier (or is refused
/// there with an error).
pub fn netpol(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let c = cluster();
    match vrouter_cli::k8s::read("fuzz.yaml", text, &c) {
        Ok(policies) => {
            if let Ok(set) = policy::k8s::compile(
                &c.local_endpoints(1),
                &policies,
                &c.named_ports(),
                &[IpAddr::from([192, 0, 2, 1])],
            ) {
                let _ = Policy::compile(&set, 1);
            }
        }
        Err(e) => assert!(e.starts_with("fuzz.yaml"), "{e}"),
    }
}

/// Pods in three namespaces, two of them on this node, with named ports (`http` on a
/// different number in each).
fn cluster() -> Cluster {
    let pod = |ns: &str, labels: &[(&str, &str)], addr: &str, endpoint: Option<u32>, http: u16| Pod {
        namespace: ns.into(),
        labels: labels.iter().map(|&(k, v)| (k.into(), v.into())).collect(),
        addrs: vec![addr.parse::<IpAddr>().expect("a test address")],
        endpoint: endpoint.map(EndpointId),
        named_ports: vec![ContainerPort {
            name: "http".into(),
            protocol: 6,
            port: http,
        }],
    };
    Cluster {
        pods: vec![
            pod("prod", &[("app", "db")], "10.0.1.2", Some(1), 8080),
            pod("prod", &[("app", "web")], "10.0.2.2", Some(2), 80),
            pod("ops", &[("app", "prometheus")], "fd00::3", None, 9090),
        ],
        namespaces: BTreeMap::from([("ops".into(), BTreeMap::from([("team".into(), "ops".into())]))]),
    }
}

/// A datagram of rtnetlink route, nexthop object and link messages (a dump or changes, as
/// the kernel sends them): refused with a reason, or read; then each route and object is
/// taken by a kernel routes follower
/// of table 254 into VRF 1, against a router with ports `a` and `b` on interfaces 1 and
/// 2: every route it counts as followed is a dynamic route of the router, and nothing
/// else is.
pub fn kernel_routes(data: &[u8]) {
    use vrouter_cli::dynamic::Routing;
    use vrouter_cli::kernel_routes::{Follower, KernelRoutes, PortDevice};
    use vrouter_cli::netlink::{Message, parse};
    let Ok(messages) = parse(data) else {
        return;
    };
    let fib = fib::Fib::new();
    let mut b = fib::FibBuilder::new();
    b.add_vrf(1).expect("a small VRF id");
    b.set_nexthop(1, fib::Nexthop::Discard).expect("a plain nexthop");
    b.add_route(1, IpAddr::from([10, 0, 1, 0]), 24, 1)
        .expect("a clean prefix");
    let mut r = Routing::new(b, vec!["a".into(), "b".into()]);
    r.builder.publish(&fib).expect("a small FIB publishes");
    let ports = ["a", "b"]
        .map(|p| PortDevice {
            name: p.into(),
            device: format!("dev-{p}"),
            host: false,
        })
        .to_vec();
    let cfg = KernelRoutes {
        table: 254,
        vrf: 1,
        protocols: vec![],
    };
    let mut f = Follower::new(cfg, ports);
    let mut keys = Vec::new();
    for m in messages {
        match m {
            Message::Route(route) => keys.extend(f.note(route)),
            Message::Nexthop(object) => keys.extend(f.note_object(object)),
            _ => {}
        }
    }
    let dev_of = |i: u32| {
        ["dev-a", "dev-b"]
            .get(i.wrapping_sub(1) as usize)
            .map(|d| d.to_string())
    };
    f.reconcile(&keys, &mut r, &fib, &dev_of);
    assert_eq!(f.counts().0, r.dynamic_count(), "{:?}", f.listing());
}
