//! The whole forwarding pipeline as a fuzz target: arbitrary frames into a node with
//! workloads (one of a smaller MTU, so packets are split), a fabric, every tunnel type, an
//! ECMP group, a next hop to resolve by ARP / ND, TCP MSS clamping and a policy, on
//! memory ports, with routes changing between frames. Nothing may panic,
//! every frame the router sends must parse, and no frame may leak.

use std::cell::RefCell;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dataplane::neigh::{NeighborCache, NeighborConfig};
use dataplane::pipeline::{NodeConfig, Pipeline, PortConfig, PortRole, Tables};
use dataplane::{FramePool, MemoryLink, MemoryPort, Port, Worker};
use fib::{Encap, Fib, FibBuilder, Nexthop, OuterDscp};
use flow::{FlowTable, FlowTableConfig};
use policy::{EndpointId, PolicySet, PolicyStore, RuleList};
use wire::Layer;
use wire::ethernet::MacAddr;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address literal")
}

/// The node under test and its links.
struct Harness {
    worker: Worker,
    links: Vec<Arc<MemoryLink>>,
    frames: u64,
    /// The routes, changed by [`Harness::churn`].
    fib: Arc<Fib>,
    routes: FibBuilder,
}

impl Harness {
    fn new() -> Harness {
        let fib = Arc::new(Fib::new());
        let mut b = FibBuilder::new();
        for vrf in [0, 1] {
            b.add_vrf(vrf).expect("vrf");
        }
        let interface = |port, gateway: Option<&str>| Nexthop::Interface {
            port,
            gateway: gateway.map(ip),
        };
        let tunnel = |encap| Nexthop::Tunnel {
            encap,
            src: ip("192.0.2.1"),
            dst: ip("192.0.2.2"),
            underlay_vrf: 0,
            router_mac: None,
            dscp: OuterDscp::Fixed(10),
            zero_udp_checksum: false,
        };
        let tunnel6 = |encap| Nexthop::Tunnel {
            encap,
            src: ip("fd00:f::1"),
            dst: ip("fd00:f::2"),
            underlay_vrf: 0,
            router_mac: None,
            dscp: OuterDscp::Inherit,
            zero_udp_checksum: false,
        };
        let nexthops = [
            (1, interface(0, None)),
            (2, interface(1, None)),
            (3, interface(2, None)),
            (4, interface(2, Some("192.0.2.9"))),
            (5, interface(2, Some("fd00:f::9"))),
            (6, interface(3, None)),
            (10, tunnel(Encap::Vxlan { vni: 42 })),
            (11, tunnel(Encap::MplsOverUdp { label: 200 })),
            (12, tunnel(Encap::MplsOverGre { label: 300 })),
            (14, tunnel6(Encap::Vxlan { vni: 42 })),
            (15, tunnel6(Encap::MplsOverUdp { label: 200 })),
            (16, tunnel6(Encap::MplsOverGre { label: 300 })),
            (20, Nexthop::VrfTranslate { vrf: 1 }),
        ];
        for (id, nh) in nexthops {
            b.set_nexthop(id, nh).expect("nexthop");
        }
        b.set_nexthop(
            13,
            Nexthop::Ecmp {
                members: vec![(1, 1), (2, 1), (10, 1)],
            },
        )
        .expect("ecmp");
        let routes = [
            (1, "10.0.1.2", 32, 1),
            (1, "fd00:1::2", 128, 1),
            (1, "10.0.2.2", 32, 2),
            (1, "fd00:2::2", 128, 2),
            (1, "10.9.0.0", 16, 10),
            (1, "fd00:9::", 32, 10),
            (1, "10.8.0.0", 16, 11),
            (1, "10.7.0.0", 16, 12),
            (1, "10.6.0.0", 16, 4),
            (1, "fd00:6::", 32, 5),
            (1, "10.96.0.0", 24, 13),
            (1, "10.5.0.0", 16, 14),
            (1, "fd00:5::", 32, 14),
            (1, "10.4.0.0", 16, 15),
            (1, "10.3.0.0", 16, 16),
            (0, "192.0.2.0", 24, 3),
            (0, "fd00:f::", 64, 3),
            (0, "0.0.0.0", 0, 4),
            (1, "198.51.100.0", 24, 6),
            (0, "198.51.100.0", 24, 6),
        ];
        for (vrf, prefix, len, nh) in routes {
            b.add_route(vrf, ip(prefix), len, nh).expect("route");
        }
        b.set_vni(42, 1).expect("vni");
        b.set_label(100, 20).expect("label");
        b.set_label(101, 2).expect("label");
        b.publish(&fib).expect("publish");
        let workload = |name: &str, mac: u8, v4: &str, v6: &str, gw4: &str, gw6: &str, mtu| PortConfig {
            name: name.into(),
            mac: MacAddr([2, 0xa, 0, 0, 0, mac]),
            mtu,
            addrs: vec![],
            vlan: None,
            role: PortRole::Workload {
                vrf: 1,
                addrs: vec![ip(v4), ip(v6)],
                mac: MacAddr([2, 0, 0, 0, mac, 2]),
                gateways: vec![ip(gw4), ip(gw6)],
            },
        };
        let mut node = NodeConfig {
            ports: vec![
                workload("w1", 1, "10.0.1.2", "fd00:1::2", "10.0.1.1", "fd00:1::1", 1500),
                // Smaller than w1's, so packets to it are split or refused.
                workload("w2", 2, "10.0.2.2", "fd00:2::2", "10.0.2.1", "fd00:2::1", 1280),
                PortConfig {
                    name: "fabric".into(),
                    mac: MacAddr([2, 0xa, 0, 0, 0, 3]),
                    mtu: 1400,
                    addrs: vec![ip("192.0.2.1"), ip("fd00:f::1")],
                    vlan: None,
                    role: PortRole::Fabric { vrf: 0 },
                },
                // A second fabric port, on VLAN 100 of a trunk.
                PortConfig {
                    name: "trunk".into(),
                    mac: MacAddr([2, 0xa, 0, 0, 0, 4]),
                    mtu: 1500,
                    addrs: vec![ip("198.51.100.1")],
                    vlan: Some(100),
                    role: PortRole::Fabric { vrf: 0 },
                },
            ],
            tunnel_endpoints: vec![ip("192.0.2.1"), ip("fd00:f::1")],
            // Every SYN's options walked.
            tcp_mss_clamp: dataplane::pipeline::MssClamp::Path,
            ..Default::default()
        };
        for w in &mut node.ports[..2] {
            if let PortRole::Workload { addrs, .. } = &mut w.role {
                addrs.push(ip("10.96.0.10"));
            }
        }
        // Both workloads own the service address 10.96.0.10 (shared: a flow's endpoint
        // for it is told by port); w2 denies UDP 53 in, w1 UDP 9 out.
        let policy = Arc::new(PolicyStore::new());
        let mut set = PolicySet::ingress_for(
            EndpointId(1),
            1,
            vec![ip("10.0.2.2"), ip("fd00:2::2"), ip("10.96.0.10")],
            RuleList::deny_port(17, 53),
        );
        set.endpoints.push(policy::Endpoint {
            id: EndpointId(2),
            vrf: 1,
            addrs: vec![ip("10.0.1.2"), ip("fd00:1::2"), ip("10.96.0.10")],
            ingress: None,
            egress: Some(Arc::new(RuleList::deny_port(17, 9))),
        });
        policy.publish(&set).expect("policy");
        let tables = Tables {
            fib: fib.clone(),
            policy,
            flows: Arc::new(FlowTable::new(FlowTableConfig::with_capacity(4096)).expect("flow table")),
            node: Arc::new(node),
            epoch: Instant::now(),
            taps: Default::default(),
            // Resolution gives up quickly so the fuzzer also walks retries and give-ups.
            neighbors: Arc::new(NeighborCache::new(NeighborConfig {
                retry: Duration::ZERO,
                tries: 2,
                ..Default::default()
            })),
            path_mtus: Default::default(),
            flow_log: Default::default(),
        };
        let links: Vec<_> = (0..4).map(|_| MemoryLink::new(256)).collect();
        let ports = links
            .iter()
            .enumerate()
            .map(|(i, l)| Box::new(MemoryPort::new(&format!("p{i}"), l.clone())) as Box<dyn Port>)
            .collect();
        let umem = af_xdp::Umem::new(af_xdp::UmemConfig {
            frame_count: 512,
            ..Default::default()
        })
        .expect("umem");
        let pool = FramePool::new(Arc::new(umem), 3);
        let frames = pool.census().total();
        let pipeline = Pipeline::new(tables).expect("flow reader");
        Harness {
            worker: Worker::new(pool, ports, Box::new(pipeline)),
            links,
            frames,
            fib,
            routes: b,
        }
    }

    /// Publishes one route change picked by `what`: a /24 inside 10.9.0.0/16 (VXLAN)
    /// toggled to MPLSoUDP, so flows beside it keep their decisions and flows under it
    /// are re-decided; or w2's host route moved between its port and MPLSoGRE.
    fn churn(&mut self, what: u8) {
        let b = &mut self.routes;
        if what & 0x40 == 0 {
            let prefix = IpAddr::from([10, 9, (what >> 2) & 0xf, 0]);
            if !b.remove_route(1, prefix, 24) {
                b.add_route(1, prefix, 24, 11).expect("route");
            }
        } else {
            let now = b.route(1, ip("10.0.2.2"), 32);
            b.add_route(1, ip("10.0.2.2"), 32, if now == Some(2) { 12 } else { 2 })
                .expect("route");
        }
        b.publish(&self.fib).expect("publish");
    }

    fn run(&mut self, port: usize, frame: &[u8]) {
        if !self.links[port].inject(frame) {
            return;
        }
        self.worker.run_once();
        for link in &self.links {
            while let Some(out) = link.take() {
                if let Err(e) = wire::parse::parse(&out) {
                    // A packet that only looks like a tunnel (UDP to a tunnel port, GRE:
                    // from a workload, or decapsulated) is forwarded as it came; its own
                    // headers must parse, what it carries need not.
                    let tunnel_like = e.inner || matches!(e.layer, Layer::Vxlan | Layer::Mpls | Layer::Gre);
                    let l3 = if out.get(12..14) == Some(&[0x81, 0][..]) {
                        18
                    } else {
                        14
                    };
                    if !tunnel_like || wire::parse::parse_ip(&out[l3.min(out.len())..]).is_err() {
                        panic!("vrouter sent a frame that does not parse ({e}): {out:02x?}");
                    }
                }
            }
        }
        let census = self.worker.pool().census();
        assert_eq!(census.total(), self.frames, "frames leaked or duplicated: {census:?}");
        self.worker.pool().verify().expect("frame accounting");
    }
}

thread_local! {
    static HARNESS: RefCell<Option<Harness>> = const { RefCell::new(None) };
}

/// Target `pipeline`: the first byte picks the ingress port (workload 1, workload 2,
/// fabric, the trunk port on VLAN 100; its low two bits) and, with its top bit set, a route change published before
/// the frame (`Harness::churn`); the rest is the frame. The node lives across inputs,
/// so flows, learned neighbours and parked packets carry over as they would in a running
/// router.
pub fn pipeline(data: &[u8]) {
    let Some((&which, frame)) = data.split_first() else {
        return;
    };
    HARNESS.with(|h| {
        let mut h = h.borrow_mut();
        let h = h.get_or_insert_with(Harness::new);
        if which & 0x80 != 0 {
            h.churn(which);
        }
        h.run(usize::from(which & 3), frame)
    });
}
