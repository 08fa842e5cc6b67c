//! The pipeline on memory ports: ARP, routing between workloads, anti-spoofing, policy
//! (also a new deny cutting an established flow), VXLAN/MPLSoUDP/MPLSoGRE encapsulation and
//! decapsulation, TTL expiry, no route; every emitted frame parsed back, and decoded by
//! tshark.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use dataplane::neigh::{NeighborCache, NeighborConfig};
use dataplane::pipeline::{NodeConfig, Pipeline, PortConfig, PortRole, Tables};
use dataplane::*;
use fib::{Encap, Fib, FibBuilder, Neighbor, NeighborState, Nexthop, OuterDscp};
use flow::{FlowTable, FlowTableConfig};
use policy::{Endpoint, EndpointId, PolicySet, PolicyStore, RuleList};
use wire::arp::{ArpOperation, ArpRepr};
use wire::compose::{Header, frame};
use wire::ethernet::{EtherType, EthernetRepr, MacAddr};
use wire::ip::IpProtocol;
use wire::ipv4::Ipv4Repr;
use wire::mpls::MplsRepr;
use wire::parse::{Tunnel, parse};
use wire::udp::UdpRepr;
use wire::vxlan::VxlanRepr;

const M1: MacAddr = MacAddr([2, 0, 0, 0, 1, 1]);
const M2: MacAddr = MacAddr([2, 0, 0, 0, 2, 2]);
const MR: MacAddr = MacAddr([2, 0, 0, 0, 9, 9]);
const P0: MacAddr = MacAddr([2, 0xaa, 0, 0, 0, 0]);
const P1: MacAddr = MacAddr([2, 0xaa, 0, 0, 0, 1]);
const P2: MacAddr = MacAddr([2, 0xaa, 0, 0, 0, 2]);

fn ip4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}
fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

struct Node {
    links: Vec<Arc<MemoryLink>>,
    worker: Worker,
    fib: Arc<Fib>,
    routes: FibBuilder,
    policy: Arc<PolicyStore>,
    flows: Arc<FlowTable>,
    neighbors: Arc<NeighborCache>,
    taps: Arc<Taps>,
    flow_log: Arc<dataplane::flowlog::FlowLog>,
}

fn node() -> Node {
    node_with(NeighborConfig::default(), None)
}

/// [`node`] with these neighbour settings, its fabric port on VLAN `fabric_vlan`.
fn node_with(neighbor_config: NeighborConfig, fabric_vlan: Option<u16>) -> Node {
    node_of(neighbor_config, |cfg| cfg.ports[2].vlan = fabric_vlan)
}

/// [`node`] with these neighbour settings and its configuration changed by `tune`.
fn node_of(neighbor_config: NeighborConfig, tune: impl FnOnce(&mut NodeConfig)) -> Node {
    let fib = Arc::new(Fib::new());
    let mut b = FibBuilder::new();
    b.add_vrf(0).unwrap();
    b.add_vrf(1).unwrap();
    b.set_nexthop(1, Nexthop::Interface { port: 0, gateway: None }).unwrap();
    b.set_nexthop(2, Nexthop::Interface { port: 1, gateway: None }).unwrap();
    b.set_nexthop(4, Nexthop::Interface { port: 2, gateway: None }).unwrap();
    // Each tunnel type over an IPv4 underlay (nexthops 10-12) and an IPv6 one (13-15).
    for (first, src, dst) in [(10, "192.0.2.1", "192.0.2.2"), (13, "fd00:f::1", "fd00:f::2")] {
        let encaps = [
            Encap::Vxlan { vni: 42 },
            Encap::MplsOverUdp { label: 200 },
            Encap::MplsOverGre { label: 300 },
        ];
        for (id, encap) in (first..).zip(encaps) {
            let (src, dst) = (ip(src), ip(dst));
            let nh = Nexthop::Tunnel {
                encap,
                src,
                dst,
                underlay_vrf: 0,
                router_mac: None,
                dscp: Default::default(),
                zero_udp_checksum: false,
            };
            b.set_nexthop(id, nh).unwrap();
        }
    }
    b.add_route(1, ip("10.5.0.0"), 16, 13).unwrap();
    b.add_route(1, ip("10.4.0.0"), 16, 14).unwrap();
    b.add_route(1, ip("10.3.0.0"), 16, 15).unwrap();
    b.add_route(0, ip("fd00:f::"), 64, 4).unwrap();
    b.set_nexthop(20, Nexthop::VrfTranslate { vrf: 1 }).unwrap();
    b.add_route(1, ip("10.0.1.2"), 32, 1).unwrap();
    b.add_route(1, ip("10.0.2.2"), 32, 2).unwrap();
    b.add_route(1, ip("fd00:2::2"), 128, 2).unwrap();
    b.add_route(1, ip("10.9.0.0"), 16, 10).unwrap();
    b.add_route(1, ip("10.8.0.0"), 16, 11).unwrap();
    b.add_route(1, ip("10.7.0.0"), 16, 12).unwrap();
    b.add_route(0, ip("192.0.2.0"), 24, 4).unwrap();
    // Behind routers on the fabric whose MACs nobody configured.
    b.set_nexthop(
        30,
        Nexthop::Interface {
            port: 2,
            gateway: Some(ip("192.0.2.9")),
        },
    )
    .unwrap();
    b.set_nexthop(
        31,
        Nexthop::Interface {
            port: 2,
            gateway: Some(ip("fd00:f::9")),
        },
    )
    .unwrap();
    b.add_route(1, ip("10.6.0.0"), 16, 30).unwrap();
    b.add_route(1, ip("fd00:6::"), 32, 31).unwrap();
    b.add_route(1, ip("fd00:9::"), 32, 10).unwrap();
    b.set_vni(42, 1).unwrap();
    b.set_label(100, 20).unwrap();
    let n = |mac| Neighbor {
        mac,
        state: NeighborState::Reachable,
    };
    b.set_neighbor(0, ip("10.0.1.2"), n(M1));
    b.set_neighbor(1, ip("10.0.2.2"), n(M2));
    b.set_neighbor(2, ip("192.0.2.2"), n(MR));
    b.set_neighbor(2, ip("fd00:f::2"), n(MR));
    // The VXLAN peer's inner MAC for 10.9.0.5 in VNI 42.
    b.set_neighbor(
        dataplane::pipeline::overlay_neighbor_port(42),
        ip("10.9.0.5"),
        n(MacAddr([2, 0, 0, 0, 9, 5])),
    );
    b.set_neighbor(
        dataplane::pipeline::overlay_neighbor_port(42),
        ip("10.5.0.5"),
        n(MacAddr([2, 0, 0, 0, 9, 5])),
    );
    b.publish(&fib).unwrap();
    let workload = |name: &str, mac, gw: &str, addr: &str, wmac| PortConfig {
        name: name.into(),
        mac,
        mtu: 1500,
        addrs: vec![],
        vlan: None,
        role: PortRole::Workload {
            vrf: 1,
            addrs: vec![ip(addr)],
            mac: wmac,
            gateways: vec![ip(gw)],
        },
    };
    let mut cfg = NodeConfig {
        ports: vec![
            PortConfig {
                role: PortRole::Workload {
                    vrf: 1,
                    addrs: vec![ip("10.0.1.2"), ip("fd00:1::2")],
                    mac: M1,
                    gateways: vec![ip("10.0.1.1"), ip("fd00:1::1")],
                },
                ..workload("w1", P0, "10.0.1.1", "10.0.1.2", M1)
            },
            PortConfig {
                role: PortRole::Workload {
                    vrf: 1,
                    addrs: vec![ip("10.0.2.2"), ip("fd00:2::2")],
                    mac: M2,
                    gateways: vec![ip("10.0.2.1")],
                },
                ..workload("w2", P1, "10.0.2.1", "10.0.2.2", M2)
            },
            PortConfig {
                name: "fabric".into(),
                mac: P2,
                mtu: 1500,
                addrs: vec![ip("192.0.2.1"), ip("fd00:f::1")],
                vlan: None,
                role: PortRole::Fabric { vrf: 0 },
            },
        ],
        tunnel_endpoints: vec![ip("192.0.2.1"), ip("fd00:f::1")],
        ..Default::default()
    };
    tune(&mut cfg);
    let policy = Arc::new(PolicyStore::new());
    let flows = Arc::new(FlowTable::new(FlowTableConfig::with_capacity(4096)).unwrap());
    let tables = Tables {
        fib: fib.clone(),
        policy: policy.clone(),
        flows: flows.clone(),
        node: Arc::new(cfg),
        epoch: Instant::now(),
        taps: Default::default(),
        neighbors: Arc::new(NeighborCache::new(neighbor_config)),
        path_mtus: Default::default(),
        flow_log: Default::default(),
    };
    let (neighbors, taps, flow_log) = (tables.neighbors.clone(), tables.taps.clone(), tables.flow_log.clone());
    let links: Vec<_> = (0..3).map(|_| MemoryLink::new(256)).collect();
    let ports: Vec<Box<dyn Port>> = links
        .iter()
        .enumerate()
        .map(|(i, l)| Box::new(MemoryPort::new(&format!("p{i}"), l.clone())) as Box<dyn Port>)
        .collect();
    let umem = Arc::new(
        af_xdp::Umem::new(af_xdp::UmemConfig {
            frame_count: 256,
            ..Default::default()
        })
        .unwrap(),
    );
    let worker = Worker::new(FramePool::new(umem, 3), ports, Box::new(Pipeline::new(tables).unwrap()));
    Node {
        links,
        worker,
        fib,
        routes: b,
        policy,
        flows,
        neighbors,
        taps,
        flow_log,
    }
}

impl Node {
    /// Injects `frame` on `port`, runs the worker, returns (egress port, frame) if sent.
    fn send(&mut self, port: usize, frame: &[u8]) -> Option<(usize, Vec<u8>)> {
        assert!(self.links[port].inject(frame));
        self.worker.run_once();
        self.links
            .iter()
            .enumerate()
            .find_map(|(i, l)| l.take().map(|f| (i, f)))
    }

    /// Injects `frame` on `port`, runs the worker, returns every (egress port, frame)
    /// sent, in order.
    fn send_all(&mut self, port: usize, frame: &[u8]) -> Vec<(usize, Vec<u8>)> {
        assert!(self.links[port].inject(frame));
        self.worker.run_once();
        let mut out = Vec::new();
        for (i, l) in self.links.iter().enumerate() {
            while let Some(f) = l.take() {
                out.push((i, f));
            }
        }
        out
    }

    fn drops(&self, why: DropReason) -> u64 {
        self.worker.counters().snapshot().dropped_for(why)
    }
}

fn udp(src_mac: MacAddr, dst_mac: MacAddr, src: &str, dst: &str, sport: u16, dport: u16, ttl: u8) -> Vec<u8> {
    let mut ipr = Ipv4Repr::new(ip4(src), ip4(dst), IpProtocol::Udp);
    ipr.ttl = ttl;
    frame(
        &[
            Header::Ethernet(EthernetRepr {
                src: src_mac,
                dst: dst_mac,
                ethertype: EtherType::Ipv4,
            }),
            Header::Ipv4(ipr),
            Header::Udp(UdpRepr {
                src_port: sport,
                dst_port: dport,
            }),
        ],
        b"payload!",
    )
    .unwrap()
}

#[test]
fn arp_for_the_gateway_is_answered() {
    let mut n = node();
    let req = frame(
        &[
            Header::Ethernet(EthernetRepr {
                src: M1,
                dst: MacAddr::BROADCAST,
                ethertype: EtherType::Arp,
            }),
            Header::Arp(ArpRepr {
                operation: ArpOperation::Request,
                sender_mac: M1,
                sender_ip: ip4("10.0.1.2"),
                target_mac: MacAddr([0; 6]),
                target_ip: ip4("10.0.1.1"),
            }),
        ],
        &[],
    )
    .unwrap();
    let (port, reply) = n.send(0, &req).unwrap();
    assert_eq!(port, 0);
    let arp = ArpRepr::parse(&wire::arp::ArpPacket::new_checked(&reply[14..]).unwrap()).unwrap();
    assert_eq!(arp.operation, ArpOperation::Reply);
    assert_eq!((arp.sender_mac, arp.sender_ip), (P0, ip4("10.0.1.1")));
    assert_eq!((arp.target_mac, arp.target_ip), (M1, ip4("10.0.1.2")));
    assert_eq!(&reply[..6], &M1.0);
    // Not ours: ignored, counted.
    let mut other = req.clone();
    other[14 + 24..14 + 28].copy_from_slice(&[10, 0, 1, 77]);
    assert!(n.send(0, &other).is_none());
    assert_eq!(n.drops(DropReason::ArpIgnored), 1);
}

#[test]
fn neighbour_solicitation_for_the_gateway_is_answered() {
    use wire::icmp::IcmpPacket;
    use wire::icmpv6::Icmpv6Repr;
    use wire::ipv6::Ipv6Repr;
    let mut n = node();
    let (me, gw): (std::net::Ipv6Addr, std::net::Ipv6Addr) =
        ("fd00:1::2".parse().unwrap(), "fd00:1::1".parse().unwrap());
    let ns = |target| {
        let mut ip6 = Ipv6Repr::new(me, "ff02::1:ff00:1".parse().unwrap(), IpProtocol::Icmpv6);
        ip6.hop_limit = 255;
        frame(
            &[
                Header::Ethernet(EthernetRepr {
                    src: M1,
                    dst: MacAddr([0x33, 0x33, 0xff, 0, 0, 1]),
                    ethertype: EtherType::Ipv6,
                }),
                Header::Ipv6(ip6),
                Header::Icmpv6(Icmpv6Repr::NeighborSolicit {
                    target,
                    lladdr: Some(M1),
                }),
            ],
            &[],
        )
        .unwrap()
    };
    let (port, na) = n.send(0, &ns(gw)).unwrap();
    assert_eq!(port, 0);
    assert_eq!(&na[..12], &[M1.0, P0.0].concat()[..]);
    let m = parse(&na).unwrap();
    assert_eq!(
        (m.outer.key.src_ip(), m.outer.key.dst_ip()),
        (Some(IpAddr::V6(gw)), Some(IpAddr::V6(me)))
    );
    let icmp = IcmpPacket::new_checked(&na[usize::from(m.outer.l4)..], wire::Layer::Icmpv6).unwrap();
    let r = Icmpv6Repr::parse(&icmp, gw, me).unwrap(); // checksum verified
    assert_eq!(
        r,
        Icmpv6Repr::NeighborAdvert {
            router: true,
            solicited: true,
            override_: true,
            target: gw,
            lladdr: Some(P0)
        }
    );
    // Someone else's address: ignored, counted.
    assert!(n.send(0, &ns("fd00:1::77".parse().unwrap())).is_none());
    assert_eq!(n.drops(DropReason::ArpIgnored), 1);
}

#[test]
fn trace_names_each_packet_of_a_mixed_burst() {
    let mut n = node();
    n.taps.trace(8);
    let arp = arp(ArpOperation::Request, M1, "10.0.1.2", MacAddr([0; 6]), "10.0.1.1");
    // One burst: an ARP request (answered before the flow stage), then two flows.
    for f in [
        arp,
        udp(M1, P0, "10.0.1.2", "10.0.2.2", 40000, 53, 64),
        udp(M1, P0, "10.0.1.2", "10.0.2.2", 40001, 5353, 64),
    ] {
        assert!(n.links[0].inject(&f));
    }
    n.worker.run_once();
    let lines: Vec<String> = std::iter::from_fn(|| n.taps.next_trace()).collect();
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(
        lines[0].contains("Arp (answered or refused before the flow stage)"),
        "{lines:#?}"
    );
    // Each flow line shows that packet's own key.
    assert!(
        lines[1].contains("40000") && lines[1].contains(" 53") && !lines[1].contains("40001"),
        "{lines:#?}"
    );
    assert!(lines[2].contains("40001") && lines[2].contains("5353"), "{lines:#?}");
    assert!(
        lines[1..]
            .iter()
            .all(|l| l.contains("flow miss") && l.contains("=> Tx(1)")),
        "{lines:#?}"
    );
    // The next burst of the same flows hits: nothing of the first burst's is carried over.
    n.taps.trace(8);
    for (sport, dport) in [(40000, 53), (40001, 5353)] {
        assert!(n.links[0].inject(&udp(M1, P0, "10.0.1.2", "10.0.2.2", sport, dport, 64)));
    }
    n.worker.run_once();
    let lines: Vec<String> = std::iter::from_fn(|| n.taps.next_trace()).collect();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(
        lines.iter().all(|l| l.contains("flow hit") && !l.contains("flow miss")),
        "{lines:#?}"
    );
    // A tunnel packet to this node is named with its tunnel; one that only looks like one
    // (from a workload) is not.
    n.taps.trace(2);
    assert!(n.links[2].inject(&frame(&cases_vni(42), b"x").unwrap()));
    n.worker.run_once();
    assert!(n.links[0].inject(&looks_like_vxlan()));
    n.worker.run_once();
    let lines: Vec<String> = std::iter::from_fn(|| n.taps.next_trace()).collect();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(lines[0].contains("decap Vxlan { vni: 42 }, "), "{lines:#?}");
    assert!(lines[1].contains("flow ") && !lines[1].contains("decap"), "{lines:#?}");
}

#[test]
fn routes_between_workloads_with_l3_rewrite_and_a_flow_pair() {
    let mut n = node();
    let (port, out) = n.send(0, &udp(M1, P0, "10.0.1.2", "10.0.2.2", 40000, 53, 64)).unwrap();
    assert_eq!(port, 1);
    let m = parse(&out).unwrap(); // also verifies the IPv4 checksum
    assert_eq!(&out[..12], &[M2.0, P1.0].concat()[..]);
    assert_eq!(m.outer.ttl, 63);
    assert_eq!(n.flows.stats().entries, 2, "forward and reverse installed");
    // The reply takes the reverse flow.
    let (port, back) = n.send(1, &udp(M2, P1, "10.0.2.2", "10.0.1.2", 53, 40000, 64)).unwrap();
    assert_eq!(port, 0);
    assert_eq!(&back[..6], &M1.0);
    assert_eq!(n.flows.stats().entries, 2);
    // Spoofed source from w1.
    assert!(n.send(0, &udp(M1, P0, "10.0.1.99", "10.0.2.2", 1, 2, 64)).is_none());
    assert_eq!(n.drops(DropReason::Spoofed), 1);
    // TTL 1 cannot be forwarded: the source hears why (ICMP time exceeded from its
    // gateway), quoting the packet's header.
    let (port, err) = n.send(0, &udp(M1, P0, "10.0.1.2", "10.0.2.2", 40001, 53, 1)).unwrap();
    assert_eq!(port, 0);
    let m = parse(&err).unwrap();
    assert_eq!(
        (m.outer.key.src_ip(), m.outer.key.dst_ip()),
        (Some(ip("10.0.1.1")), Some(ip("10.0.1.2")))
    );
    assert_eq!(&err[..12], &[M1.0, P0.0].concat()[..]);
    let icmp = usize::from(m.outer.l4);
    assert_eq!((err[icmp], err[icmp + 1]), (11, 0));
    assert_eq!(
        &err[icmp + 8 + 12..icmp + 8 + 20],
        &[10, 0, 1, 2, 10, 0, 2, 2],
        "quoted header"
    );
    assert_eq!(err.len(), icmp + 8 + 28);
    // No route.
    assert!(
        n.send(0, &udp(M1, P0, "10.0.1.2", "172.16.0.1", 40002, 53, 64))
            .is_none()
    );
    assert_eq!(n.drops(DropReason::NoRoute), 1);
    // Another MAC.
    assert!(n.send(0, &udp(M1, M2, "10.0.1.2", "10.0.2.2", 40003, 53, 64)).is_none());
    assert_eq!(n.drops(DropReason::NotForUs), 1);
    let s = n.worker.counters().snapshot();
    assert!(s.conserved(), "{s:?}");
    tshark_decodes(&[err], &["eth:ethertype:ip:icmp:ip:udp"]);
}

#[test]
fn an_oversized_packet_for_a_tunnel_gets_fragmentation_needed() {
    let mut n = node();
    // 1500-byte IP packet with DF into VXLAN over a 1500-byte underlay.
    let big = udp_of_len("10.9.0.5", 1500);
    let (port, err) = n.send(0, &big).unwrap();
    assert_eq!(port, 0);
    let m = parse(&err).unwrap();
    let icmp = usize::from(m.outer.l4);
    assert_eq!((err[icmp], err[icmp + 1]), (3, 4));
    assert_eq!(
        u16::from_be_bytes([err[icmp + 6], err[icmp + 7]]),
        1450,
        "next-hop MTU leaves room for VXLAN"
    );
    assert_eq!(n.drops(DropReason::TooBig), 0, "answered, not dropped");
    assert_eq!(n.worker.counters().snapshot().count_of(Event::IcmpErrors), 1);
    tshark_decodes(&[err], &["eth:ethertype:ip:icmp:ip:udp"]);
}

/// A packet too big for its egress that may be fragmented (IPv4 without don't-fragment)
/// is split as RFC 791 says: for a tunnel, the inner packet, so that each fragment is a
/// whole tunnel packet; out of a port of a smaller MTU, the packet itself. tshark
/// reassembles the fragments and finds the UDP checksum of the whole datagram good.
#[test]
fn packets_that_may_be_fragmented_are_split_to_fit_the_egress() {
    let mut n = node_of(NeighborConfig::default(), |cfg| cfg.ports[1].mtu = 1000);
    let payload: Vec<u8> = (0..3000u32).map(|i| (i * 7) as u8).collect();
    for (dst, port, mtu, inner) in [
        ("10.9.0.5", 2, 1450, "eth:ethertype:ip:udp:vxlan:eth:ethertype:ip"),
        ("10.8.0.5", 2, 1468, "eth:ethertype:ip:udp:mpls:ip"),
        ("10.7.0.5", 2, 1472, "eth:ethertype:ip:gre:mpls:ip"),
        ("10.5.0.5", 2, 1430, "eth:ethertype:ipv6:udp:vxlan:eth:ethertype:ip"),
        ("10.0.2.2", 1, 1000, "eth:ethertype:ip"),
    ] {
        let mut ipr = Ipv4Repr::new(ip4("10.0.1.2"), ip4(dst), IpProtocol::Udp);
        (ipr.ident, ipr.dont_frag) = (0x4242, false);
        let before = n.worker.counters().snapshot();
        assert!(n.links[0].inject(&udp_from_w1(ipr, &payload)));
        n.worker.run_once();
        let frames = take_all(&n, port);
        // 3028 IP bytes: the first fragment has (mtu - 20) & !7 of the 3008 payload bytes,
        // and so on.
        let per = (mtu - 20) & !7;
        assert_eq!(frames.len(), 3008usize.div_ceil(per), "{dst}");
        let mut offset = 0;
        for (k, f) in frames.iter().enumerate() {
            let m = parse(f).unwrap();
            let h = if port == 2 { &m.inner } else { &m.outer };
            let ip = &f[usize::from(h.l3)..];
            let len = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            let field = u16::from_be_bytes([ip[6], ip[7]]);
            let last = k + 1 == frames.len();
            assert!(len <= mtu, "{dst}: fragment {k} is {len} bytes");
            assert_eq!(usize::from(field & 0x1fff) * 8, offset, "{dst}: fragment {k}'s offset");
            assert_eq!(field & 0x2000 == 0, last, "{dst}: more fragments on all but the last");
            assert_eq!(
                (ip[4], ip[5], ip[8]),
                (0x42, 0x42, 63),
                "{dst}: ident kept, TTL less one"
            );
            offset += len - 20;
        }
        assert_eq!(offset, 3008, "{dst}: every payload byte once");
        let after = n.worker.counters().snapshot();
        assert_eq!(
            (after.originated - before.originated, after.tx - before.tx),
            (frames.len() as u64 - 1, frames.len() as u64),
            "{dst}: the fragments beyond the first are counted as made here"
        );
        let made = |s: &dataplane::Stats| (s.count_of(Event::Fragmented), s.count_of(Event::FragmentsMade));
        assert_eq!(
            (made(&after).0 - made(&before).0, made(&after).1 - made(&before).1),
            (1, frames.len() as u64 - 1),
            "{dst}: counted as split"
        );
        let want: Vec<String> = (0..frames.len())
            .map(|k| {
                if k + 1 == frames.len() {
                    format!("{inner}:udp:data")
                } else {
                    format!("{inner}:data")
                }
            })
            .collect();
        let want: Vec<&str> = want.iter().map(String::as_str).collect();
        let lines = tshark_decodes_with(&frames, &want, &["ip.reassembled.length"], false);
        assert!(
            lines.last().unwrap().ends_with("\t3008"),
            "{dst}: tshark reassembles the datagram: {lines:?}"
        );
    }
    assert_eq!(n.drops(DropReason::TooBig), 0);
}

/// Out of a port of a smaller MTU, a packet that may not be fragmented gets
/// "fragmentation needed" (IPv4 with don't-fragment) or "packet too big" (IPv6) with
/// that MTU, and the largest packet that fits goes through whole.
#[test]
fn a_port_of_a_smaller_mtu_answers_what_does_not_fit() {
    let mut n = node_of(NeighborConfig::default(), |cfg| cfg.ports[1].mtu = 1280);
    let (port, out) = n.send(0, &udp_of_len("10.0.2.2", 1280)).unwrap();
    assert_eq!((port, out.len()), (1, 1294));
    let (port, err) = n.send(0, &udp_of_len("10.0.2.2", 1281)).unwrap();
    assert_eq!(port, 0);
    let icmp = usize::from(parse(&err).unwrap().outer.l4);
    assert_eq!((err[icmp], err[icmp + 1]), (3, 4));
    assert_eq!(u16::from_be_bytes([err[icmp + 6], err[icmp + 7]]), 1280);
    let big6 = udp6("fd00:1::2", "fd00:2::2", 5, 64, &[0; 1300]);
    let (port, err6) = n.send(0, &big6).unwrap();
    assert_eq!(port, 0);
    let icmp = usize::from(parse(&err6).unwrap().outer.l4);
    assert_eq!(err6[icmp], 2, "packet too big");
    assert_eq!(u32::from_be_bytes(err6[icmp + 4..icmp + 8].try_into().unwrap()), 1280);
    tshark_decodes(
        &[err, err6],
        &["eth:ethertype:ip:icmp:ip:udp", "eth:ethertype:ipv6:icmpv6:ipv6:udp"],
    );
}

/// A TCP SYN, or with `ack` a SYN-ACK, from `src` to `dst` (both IPv4 or both IPv6)
/// with these options, as the headers after `link`.
fn syn(link: EthernetRepr, (src, dst): (&str, &str), ack: bool, options: &[u8]) -> Vec<Header<'static>> {
    let ip_header = match (ip(src), ip(dst)) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Header::Ipv4(Ipv4Repr::new(s, d, IpProtocol::Tcp)),
        (IpAddr::V6(s), IpAddr::V6(d)) => Header::Ipv6(wire::ipv6::Ipv6Repr::new(s, d, IpProtocol::Tcp)),
        _ => panic!("ends of two families"),
    };
    let flags = wire::tcp::TcpFlags(wire::tcp::TcpFlags::SYN | if ack { wire::tcp::TcpFlags::ACK } else { 0 });
    let tcp = wire::tcp::TcpRepr {
        src_port: 40000,
        dst_port: 80,
        seq_number: 1,
        ack_number: u32::from(ack),
        flags,
        window: 64240,
        urgent: 0,
        options: wire::options::HeaderOptions::new(options).unwrap(),
    };
    vec![Header::Ethernet(link), ip_header, Header::Tcp(tcp)]
}

/// The MSS option of a SYN, wherever it sits, and its options as sent.
const MSS_1460: [u8; 8] = [2, 4, 0x05, 0xb4, 1, 3, 3, 7];
/// The same after a NOP: the value at an odd offset of the header.
const MSS_1460_ODD: [u8; 8] = [1, 2, 4, 0x05, 0xb4, 3, 3, 7];

/// The MSS a frame's SYN announces, as tshark reads it, with its TCP checksum checked.
fn mss_seen(frames: &[Vec<u8>], protocols: &[&str]) -> Vec<u16> {
    let lines = tshark_decodes_with(
        frames,
        protocols,
        &["tcp.checksum.status", "tcp.options.mss_val"],
        false,
    );
    lines
        .iter()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f[f.len() - 2], "1", "TCP checksum good: {l}");
            f[f.len() - 1].parse().unwrap()
        })
        .collect()
}

/// With `MssClamp::Path`, a SYN's MSS is lowered to what the path carries: into VXLAN
/// (1450 inner bytes, less 40 of IPv4 and TCP), out of a port of a smaller MTU (1280,
/// less 60 for IPv6), and for a SYN-ACK that came out of a tunnel, that tunnel's. With
/// the option at an odd offset too. An MSS already lower stays, and so does every SYN
/// without clamping.
#[test]
fn syns_announce_no_more_than_the_path_carries() {
    let from_w1 = |v6: bool| EthernetRepr {
        src: M1,
        dst: P0,
        ethertype: if v6 { EtherType::Ipv6 } else { EtherType::Ipv4 },
    };
    let small = |cfg: &mut NodeConfig| cfg.ports[1].mtu = 1280;
    let mut n = node_of(NeighborConfig::default(), |cfg| {
        small(cfg);
        cfg.tcp_mss_clamp = dataplane::pipeline::MssClamp::Path;
    });
    let mut out = Vec::new();
    for options in [MSS_1460, MSS_1460_ODD] {
        let f = frame(&syn(from_w1(false), ("10.0.1.2", "10.9.0.5"), false, &options), b"").unwrap();
        out.push(n.send(0, &f).unwrap().1);
        let f = frame(&syn(from_w1(true), ("fd00:1::2", "fd00:2::2"), false, &options), b"").unwrap();
        out.push(n.send(0, &f).unwrap().1);
    }
    let low = [2, 4, 0x02, 0x18, 1, 1, 1, 0];
    let f = frame(&syn(from_w1(false), ("10.0.1.2", "10.9.0.5"), false, &low), b"").unwrap();
    out.push(n.send(0, &f).unwrap().1);
    let vxlan = "eth:ethertype:ip:udp:vxlan:eth:ethertype:ip:tcp";
    let plain6 = "eth:ethertype:ipv6:tcp";
    assert_eq!(
        mss_seen(&out, &[vxlan, plain6, vxlan, plain6, vxlan]),
        [1410, 1220, 1410, 1220, 536]
    );
    let clamped = |n: &Node| n.worker.counters().snapshot().count_of(Event::MssClamped);
    assert_eq!(clamped(&n), 4, "the MSS already low left alone, and not counted");
    // A SYN-ACK out of VXLAN (over IPv4) to w2, whose port carries 1280: the tunnel's
    // 1450 is not the least, the port's is; then with w2's port at 1500, the tunnel's.
    let inner_link = EthernetRepr {
        src: MR,
        dst: P2,
        ethertype: EtherType::Ipv4,
    };
    let mut headers = vec![Header::Vxlan(VxlanRepr { vni: 42 })];
    headers.extend(syn(inner_link, ("10.9.0.5", "10.0.2.2"), true, &MSS_1460));
    let synack = frame(&outer(headers, true), b"").unwrap();
    let (port, a) = n.send(2, &synack).unwrap();
    assert_eq!(port, 1);
    let mut wide = node_of(NeighborConfig::default(), |cfg| {
        cfg.tcp_mss_clamp = dataplane::pipeline::MssClamp::Path
    });
    let (_, b) = wide.send(2, &synack).unwrap();
    assert_eq!(mss_seen(&[a, b], &["eth:ethertype:ip:tcp"; 2]), [1240, 1410]);
    // Lowered twice on `n`: for the tunnel it came in, then for w2's port.
    assert_eq!((clamped(&n), clamped(&wide)), (6, 1), "out of the tunnel too");
    // Fixed: at most that, whatever the path; off: as sent.
    let mut fixed = node_of(NeighborConfig::default(), |cfg| {
        cfg.tcp_mss_clamp = dataplane::pipeline::MssClamp::Fixed(1200)
    });
    let mut off = node_of(NeighborConfig::default(), small);
    let f = frame(&syn(from_w1(false), ("10.0.1.2", "10.0.2.2"), false, &MSS_1460), b"").unwrap();
    let outs = [fixed.send(0, &f).unwrap().1, off.send(0, &f).unwrap().1];
    assert_eq!(mss_seen(&outs, &["eth:ethertype:ip:tcp"; 2]), [1200, 1460]);
}

/// An underlay router's ICMP error to this node's tunnel endpoint about a tunnel packet
/// from `src` to the far end (VXLAN over IPv4 to 192.0.2.2, over IPv6 to fd00:f::2): too
/// big for a link of `mtu` bytes.
fn too_big_for_the_underlay(src: &str, mtu: u16) -> Vec<u8> {
    let v6 = src.contains(':');
    let (router, far) = if v6 {
        ("fd00:f::fe", "fd00:f::2")
    } else {
        ("192.0.2.254", "192.0.2.2")
    };
    let proto = if v6 { IpProtocol::Icmpv6 } else { IpProtocol::Icmp };
    let link = EthernetRepr {
        src: MR,
        dst: P2,
        ethertype: if v6 { EtherType::Ipv6 } else { EtherType::Ipv4 },
    };
    // The quoted tunnel packet: its outer IP header and the start of its UDP header.
    let quoted = frame(
        &[
            Header::Ethernet(link),
            match (ip(src), ip(far)) {
                (IpAddr::V4(s), IpAddr::V4(d)) => Header::Ipv4(Ipv4Repr::new(s, d, IpProtocol::Udp)),
                (IpAddr::V6(s), IpAddr::V6(d)) => Header::Ipv6(wire::ipv6::Ipv6Repr::new(s, d, IpProtocol::Udp)),
                _ => unreachable!(),
            },
            Header::Udp(UdpRepr {
                src_port: 50000,
                dst_port: 4789,
            }),
        ],
        &[0; 64],
    )
    .unwrap()[14..]
        .to_vec();
    let mut icmp = vec![0u8; 8];
    icmp.extend_from_slice(&quoted[..if v6 { 1232 } else { 28 }.min(quoted.len())]);
    let (ours, theirs) = (ip(if v6 { "fd00:f::1" } else { "192.0.2.1" }), ip(router));
    match (theirs, ours) {
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let msg = wire::icmpv6::Icmpv6Repr::PacketTooBig { mtu: u32::from(mtu) };
            msg.emit(&mut wire::icmp::IcmpPacket::new_unchecked(&mut icmp[..]), s, d);
        }
        _ => {
            icmp[..2].copy_from_slice(&[3, 4]);
            icmp[6..8].copy_from_slice(&mtu.to_be_bytes());
            let c = wire::checksum::checksum(&icmp);
            icmp[2..4].copy_from_slice(&c.to_be_bytes());
        }
    }
    let ip_header = match (theirs, ours) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Header::Ipv4(Ipv4Repr::new(s, d, proto)),
        (IpAddr::V6(s), IpAddr::V6(d)) => Header::Ipv6(wire::ipv6::Ipv6Repr::new(s, d, proto)),
        _ => unreachable!(),
    };
    frame(&[Header::Ethernet(link), ip_header], &icmp).unwrap()
}

/// The underlay says a tunnel's path is narrower than the fabric port: from then on
/// tunnels to that far end carry less, and packets for it are refused with the smaller
/// MTU (or split). Errors about packets that are not this node's, or reporting less than
/// the family's minimum, change nothing.
#[test]
fn the_underlay_lowers_a_tunnels_path_mtu() {
    let mut n = node();
    let learned = |n: &Node| n.worker.counters().snapshot().count_of(Event::PathMtuLearned);
    let fits = |n: &mut Node, dst: &str, len: usize| n.send(0, &udp_of_len(dst, len)).unwrap().0 == 2;
    assert!(fits(&mut n, "10.9.0.5", 1400));
    for (src, mtu) in [("192.0.2.77", 1400), ("192.0.2.1", 500), ("fd00:f::1", 1200)] {
        assert_eq!(n.send(2, &too_big_for_the_underlay(src, mtu)), None, "to the host");
    }
    assert_eq!(learned(&n), 0);
    assert!(fits(&mut n, "10.9.0.5", 1400), "nothing learned");
    n.send(2, &too_big_for_the_underlay("192.0.2.1", 1400));
    n.send(2, &too_big_for_the_underlay("fd00:f::1", 1400));
    assert_eq!(learned(&n), 2);
    let mut errors = Vec::new();
    // VXLAN over IPv4 leaves 1350 of 1400, over IPv6 1330; MPLSoUDP over IPv4 1368.
    for (dst, inner) in [("10.9.0.5", 1350), ("10.5.0.5", 1330), ("10.8.0.5", 1368)] {
        assert!(fits(&mut n, dst, inner), "{dst}: {inner} bytes still fit");
        let (port, err) = n.send(0, &udp_of_len(dst, inner + 1)).unwrap();
        assert_eq!(port, 0, "{dst}: one byte more is refused");
        let icmp = usize::from(parse(&err).unwrap().outer.l4);
        assert_eq!(
            u16::from_be_bytes([err[icmp + 6], err[icmp + 7]]),
            inner as u16,
            "{dst}"
        );
        errors.push(err);
    }
    tshark_decodes(&errors, &["eth:ethertype:ip:icmp:ip:udp"; 3]);
}

/// A UDP packet from w1 to `dst`, don't-fragment set, `ip_len` bytes long from its IP
/// header on.
fn udp_of_len(dst: &str, ip_len: usize) -> Vec<u8> {
    let mut ipr = Ipv4Repr::new(ip4("10.0.1.2"), ip4(dst), IpProtocol::Udp);
    ipr.dont_frag = true;
    udp_from_w1(ipr, &vec![0u8; ip_len - 28])
}

/// A UDP packet (ports 1 -> 2) from w1 to its gateway, with the IPv4 header `ipr`.
fn udp_from_w1(ipr: Ipv4Repr, payload: &[u8]) -> Vec<u8> {
    let headers = [
        Header::Ethernet(EthernetRepr {
            src: M1,
            dst: P0,
            ethertype: EtherType::Ipv4,
        }),
        Header::Ipv4(ipr),
        Header::Udp(UdpRepr {
            src_port: 1,
            dst_port: 2,
        }),
    ];
    frame(&headers, payload).unwrap()
}

/// The MTU an error reports is the largest inner packet that fits: that size goes
/// through, one byte more is refused. MPLS drops the inner Ethernet header (the whole
/// 1500 minus IP, UDP and label: 1468), VXLAN carries it, and an IPv6 underlay takes 20
/// bytes more.
#[test]
fn the_reported_mtu_is_the_largest_packet_the_tunnel_carries() {
    let mut n = node();
    for (dst, fits) in [
        ("10.9.0.5", 1450),
        ("10.8.0.5", 1468),
        ("10.7.0.5", 1472),
        ("10.5.0.5", 1430),
        ("10.4.0.5", 1448),
        ("10.3.0.5", 1452),
    ] {
        let (port, out) = n.send(0, &udp_of_len(dst, fits)).unwrap();
        assert_eq!(
            (port, out.len()),
            (2, 1514),
            "{dst}: {fits} bytes fit the 1500-byte underlay"
        );
        let (port, err) = n.send(0, &udp_of_len(dst, fits + 1)).unwrap();
        assert_eq!(port, 0, "{dst}: one byte more is refused");
        let icmp = usize::from(parse(&err).unwrap().outer.l4);
        assert_eq!(
            (
                (err[icmp], err[icmp + 1]),
                u16::from_be_bytes([err[icmp + 6], err[icmp + 7]])
            ),
            ((3, 4), fits as u16),
            "{dst}"
        );
    }
}

#[test]
fn a_route_change_elsewhere_leaves_established_flows_decided() {
    let mut n = node();
    let pkt = udp(M1, P0, "10.0.1.2", "10.0.2.2", 40000, 53, 64);
    assert_eq!(n.send(0, &pkt).unwrap().0, 1);
    let how = |n: &mut Node| {
        n.taps.trace(1);
        let sent = n.send(0, &pkt).map(|s| s.0);
        (sent, n.taps.next_trace().unwrap_or_default())
    };
    // Routes the flow does not use, in its VRF and in another: no new decision.
    n.routes.add_route(1, ip("10.0.9.0"), 24, 1).unwrap();
    n.routes.add_route(0, ip("198.51.100.0"), 24, 3).unwrap();
    n.routes.publish(&n.fib).unwrap();
    let (sent, line) = how(&mut n);
    assert_eq!(sent, Some(1));
    assert!(line.contains("flow hit: route changes elsewhere"), "{line}");
    let (_, line) = how(&mut n);
    assert!(
        line.contains("flow hit") && !line.contains("elsewhere"),
        "current again: {line}"
    );
    // A prefix holding its destination: decided again.
    n.routes.add_route(1, ip("10.0.2.0"), 24, 2).unwrap();
    n.routes.publish(&n.fib).unwrap();
    let (sent, line) = how(&mut n);
    assert_eq!(sent, Some(1));
    assert!(line.contains("flow stale: re-decided"), "{line}");
    // A nexthop the flow's way does not pass (a service's group, say): no new decision.
    n.routes.set_nexthop(7, Nexthop::Discard).unwrap();
    n.routes.publish(&n.fib).unwrap();
    let (sent, line) = how(&mut n);
    assert_eq!(sent, Some(1));
    assert!(line.contains("flow hit: route changes elsewhere"), "{line}");
    // Its own nexthop redefined, a discard now: decided again, and dropped.
    n.routes.set_nexthop(2, Nexthop::Discard).unwrap();
    n.routes.publish(&n.fib).unwrap();
    let (sent, line) = how(&mut n);
    assert_eq!(sent, None);
    assert!(line.contains("flow stale: re-decided"), "{line}");
}

#[test]
fn a_route_change_moves_an_established_flow_on_its_next_packet() {
    let mut n = node();
    let pkt = udp(M1, P0, "10.0.1.2", "10.0.2.2", 40000, 53, 64);
    assert_eq!(n.send(0, &pkt).unwrap().0, 1);
    // 10.0.2.2 moves behind the VXLAN tunnel (a live migration, say).
    n.routes.add_route(1, ip("10.0.2.2"), 32, 10).unwrap();
    n.routes.publish(&n.fib).unwrap();
    let (port, out) = n.send(0, &pkt).unwrap();
    assert_eq!(port, 2);
    assert_eq!(parse(&out).unwrap().tunnel, Tunnel::Vxlan { vni: 42 });
    assert_eq!(n.flows.stats().entries, 2, "the same flow, re-decided");
}

#[test]
fn an_idle_worker_lets_go_of_replaced_tables() {
    let mut n = node();
    let pkt = udp(M1, P0, "10.0.1.2", "10.0.2.2", 40000, 53, 64);
    assert_eq!(n.send(0, &pkt).unwrap().0, 1);
    n.routes.add_route(1, ip("10.0.2.2"), 32, 10).unwrap();
    n.routes.publish(&n.fib).unwrap();
    n.policy.publish(&deny_udp_port(9)).unwrap();
    assert_eq!(n.fib.reap(), 1, "the worker holds the snapshot of its last burst");
    assert_eq!(n.policy.reap(), 1);
    n.worker.run_once();
    assert_eq!(n.fib.reap(), 0, "let go after a pass without packets");
    assert_eq!(n.policy.reap(), 0);
}

fn deny_udp_port(port: u16) -> PolicySet {
    PolicySet::ingress_for(
        EndpointId(2),
        1,
        vec![ip("10.0.2.2"), ip("fd00:2::2")],
        RuleList::deny_port(17, port),
    )
}

/// An ICMP error from w2 to w1 quoting the packet `quoted` (an IPv4 packet from w1).
fn icmp_error_to_w1(kind: (u8, u8), quoted: &[u8]) -> Vec<u8> {
    let mut icmp = vec![kind.0, kind.1, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&quoted[..28]);
    let c = wire::checksum::checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let eth = Header::Ethernet(EthernetRepr {
        src: M2,
        dst: P1,
        ethertype: EtherType::Ipv4,
    });
    let ip = Header::Ipv4(Ipv4Repr::new(ip4("10.0.2.2"), ip4("10.0.1.2"), IpProtocol::Icmp));
    frame(&[eth, ip], &icmp).unwrap()
}

/// w1 admits UDP only: no ICMP. An ICMP error about one of its own allowed flows still
/// reaches it (conntrack's RELATED), and one about a packet of no flow does not.
#[test]
fn icmp_errors_about_an_allowed_flow_pass_where_icmp_is_denied() {
    let mut n = node();
    let udp_only = RuleList::allow_only(17);
    n.policy
        .publish(&PolicySet::ingress_for(
            EndpointId(1),
            1,
            vec![ip("10.0.1.2")],
            udp_only,
        ))
        .unwrap();
    let sent = udp(M1, P0, "10.0.1.2", "10.0.2.2", 1000, 5353, 64);
    assert_eq!(n.send(0, &sent).map(|o| o.0), Some(1));
    // The datagram as w2 got it (TTL one less, checksum changed): what w2 quotes.
    let unreachable = (3, 3);
    let got = n.send(
        1,
        &icmp_error_to_w1(unreachable, &udp(M2, P1, "10.0.1.2", "10.0.2.2", 1000, 5353, 63)[14..]),
    );
    let (port, err) = got.unwrap_or_else(|| panic!("{:?}", n.worker.counters().snapshot()));
    assert_eq!(port, 0);
    assert_eq!(&err[..6], &M1.0);
    assert_eq!(err[34], 3, "the port unreachable, as sent");
    // About a datagram w1 never sent (another port): policy decides, and denies.
    let never = udp(M1, P0, "10.0.1.2", "10.0.2.2", 1000, 7777, 63);
    assert!(n.send(1, &icmp_error_to_w1(unreachable, &never[14..])).is_none());
    assert_eq!(n.drops(DropReason::PolicyDenied), 1);
    // And ICMP that is no error (an echo request) stays denied.
    let ping = frame(
        &[
            Header::Ethernet(EthernetRepr {
                src: M2,
                dst: P1,
                ethertype: EtherType::Ipv4,
            }),
            Header::Ipv4(Ipv4Repr::new(ip4("10.0.2.2"), ip4("10.0.1.2"), IpProtocol::Icmp)),
        ],
        &[8, 0, 0xf7, 0xfe, 0, 1, 0, 0],
    )
    .unwrap();
    assert!(n.send(1, &ping).is_none());
    assert_eq!(n.drops(DropReason::PolicyDenied), 2);
}

/// The same over IPv6: w1 admits UDP only, and hears w2's "destination unreachable"
/// (port unreachable) about its own allowed datagram, whose quote is read past the IPv6
/// header.
#[test]
fn icmpv6_errors_about_an_allowed_flow_pass_where_icmp_is_denied() {
    let mut n = node();
    let udp_only = RuleList::allow_only(17);
    let w1 = PolicySet::ingress_for(EndpointId(1), 1, vec![ip("10.0.1.2"), ip("fd00:1::2")], udp_only);
    n.policy.publish(&w1).unwrap();
    // The node routes w1's IPv4 address only; its IPv6 one too, here.
    n.routes.add_route(1, ip("fd00:1::2"), 128, 1).unwrap();
    n.routes.publish(&n.fib).unwrap();
    let sent = udp6("fd00:1::2", "fd00:2::2", 1000, 64, b"question");
    assert_eq!(n.send(0, &sent).map(|o| o.0), Some(1));
    let error = |quoted: &[u8]| {
        let (src, dst) = ("fd00:2::2".parse().unwrap(), "fd00:1::2".parse().unwrap());
        let mut icmp = vec![1, 4, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(quoted);
        let pseudo = wire::checksum::pseudo_header_v6(src, dst, 58, icmp.len() as u32);
        let c = wire::checksum::finish(wire::checksum::combine(&[pseudo, wire::checksum::sum(&icmp)]));
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        let eth = Header::Ethernet(EthernetRepr {
            src: M2,
            dst: P1,
            ethertype: EtherType::Ipv6,
        });
        let ip = Header::Ipv6(wire::ipv6::Ipv6Repr::new(src, dst, IpProtocol::Icmpv6));
        frame(&[eth, ip], &icmp).unwrap()
    };
    let (port, _) = n
        .send(1, &error(&sent[14..]))
        .unwrap_or_else(|| panic!("{:?}", n.worker.counters().snapshot()));
    assert_eq!(port, 0);
    // About a datagram from another source port: none of w1's flows.
    let other = udp6("fd00:1::2", "fd00:2::2", 1001, 64, b"question");
    assert!(n.send(1, &error(&other[14..])).is_none());
    assert_eq!(n.drops(DropReason::PolicyDenied), 1);
}

/// A service address (10.96.0.10) that w2 and a backend elsewhere both own, routed to w2.
/// Its backends' policies apply to it as to their own addresses: w2's ingress list denies
/// UDP 53 and its egress list UDP 9, judged by the port a flow leaves by or comes in by,
/// as the address alone cannot tell the backends apart. A new policy cuts a service flow
/// in both directions on its next packet.
#[test]
fn a_service_address_its_backends_share_is_policed_as_each_backends_own() {
    const VIP: &str = "10.96.0.10";
    let mut n = node_of(NeighborConfig::default(), |cfg| {
        if let PortRole::Workload { addrs, .. } = &mut cfg.ports[1].role {
            addrs.push(ip(VIP));
        }
    });
    n.routes.add_route(1, ip(VIP), 32, 2).unwrap();
    n.routes.publish(&n.fib).unwrap();
    let w2 = |ingress_deny: u16| Endpoint {
        id: EndpointId(2),
        vrf: 1,
        addrs: vec![ip("10.0.2.2"), ip(VIP)],
        ingress: Some(Arc::new(RuleList::deny_port(17, ingress_deny))),
        egress: Some(Arc::new(RuleList::deny_port(17, 9))),
    };
    let elsewhere = Endpoint {
        id: EndpointId(3),
        vrf: 1,
        addrs: vec![ip("10.3.0.3"), ip(VIP)],
        ingress: None,
        egress: None,
    };
    let set = |deny| PolicySet {
        endpoints: vec![w2(deny), elsewhere.clone()],
    };
    n.policy.publish(&set(53)).unwrap();
    assert!(
        n.send(0, &udp(M1, P0, "10.0.1.2", VIP, 40000, 53, 64)).is_none(),
        "w2 denies 53"
    );
    assert_eq!(n.drops(DropReason::PolicyDenied), 1);
    let to_vip = udp(M1, P0, "10.0.1.2", VIP, 40000, 5353, 64);
    let from_vip = udp(M2, P1, VIP, "10.0.1.2", 5353, 40000, 64);
    assert_eq!(n.send(0, &to_vip).map(|o| o.0), Some(1), "w2 admits 5353");
    assert_eq!(n.send(1, &from_vip).map(|o| o.0), Some(0), "and its reply");
    // From the shared address, w2's own egress list.
    assert!(
        n.send(1, &udp(M2, P1, VIP, "10.0.1.2", 5353, 9, 64)).is_none(),
        "w2 may not send to 9"
    );
    assert_eq!(n.drops(DropReason::PolicyDenied), 2);
    // w2 now denies 5353: the flow is decided again on its next packet, either way.
    n.policy.publish(&set(5353)).unwrap();
    assert!(n.send(1, &from_vip).is_none(), "the reply, re-decided");
    assert!(n.send(0, &to_vip).is_none(), "the request, re-decided");
    assert_eq!(n.drops(DropReason::PolicyDenied), 4);
}

/// An SCTP INIT packet: common header (verification tag and checksum zero: the router
/// reads neither) and an INIT chunk.
fn sctp(src_mac: MacAddr, dst_mac: MacAddr, ends: (&str, &str), sport: u16, dport: u16) -> Vec<u8> {
    let init = [
        1, 0, 0, 20, 0x12, 0x34, 0x56, 0x78, 0, 1, 0, 0, 0, 10, 0, 10, 0, 0, 0, 1,
    ];
    sctp_chunk((src_mac, dst_mac), ends, (sport, dport), &init)
}

/// An SCTP packet carrying `chunk`.
fn sctp_chunk(
    (src_mac, dst_mac): (MacAddr, MacAddr),
    (src, dst): (&str, &str),
    (sport, dport): (u16, u16),
    chunk: &[u8],
) -> Vec<u8> {
    let mut s = [sport.to_be_bytes(), dport.to_be_bytes()].concat();
    s.extend([0; 8]);
    s.extend(chunk);
    let eth = Header::Ethernet(EthernetRepr {
        src: src_mac,
        dst: dst_mac,
        ethertype: EtherType::Ipv4,
    });
    frame(
        &[eth, Header::Ipv4(Ipv4Repr::new(ip4(src), ip4(dst), IpProtocol::Sctp))],
        &s,
    )
    .unwrap()
}

/// SCTP associations are flows by their ports: w2 denies SCTP to port 38413 only, w1
/// admits SCTP only. An association to 38412 passes and its replies ride the flow back;
/// one to 38413 is denied; a second association between the same hosts is a flow of its
/// own; and an ICMP error quoting an association's packet reaches w1 (RELATED), while
/// one quoting no association does not.
#[test]
fn sctp_associations_are_flows_by_their_ports() {
    let mut n = node();
    let mut set = PolicySet::ingress_for(EndpointId(2), 1, vec![ip("10.0.2.2")], RuleList::deny_port(132, 38413));
    let w1 = PolicySet::ingress_for(EndpointId(1), 1, vec![ip("10.0.1.2")], RuleList::allow_only(132));
    set.endpoints.extend(w1.endpoints);
    n.policy.publish(&set).unwrap();
    let (there, back) = (("10.0.1.2", "10.0.2.2"), ("10.0.2.2", "10.0.1.2"));
    let (port, got) = n.send(0, &sctp(M1, P0, there, 5000, 38412)).expect("to 38412");
    assert_eq!(port, 1);
    assert_eq!(
        n.send(1, &sctp(M2, P1, back, 38412, 5000)).map(|o| o.0),
        Some(0),
        "the reply"
    );
    assert!(n.send(0, &sctp(M1, P0, there, 5000, 38413)).is_none());
    assert_eq!(n.drops(DropReason::PolicyDenied), 1);
    let before = n.flows.stats().entries;
    assert_eq!(n.send(0, &sctp(M1, P0, there, 5001, 38412)).map(|o| o.0), Some(1));
    assert_eq!(
        n.flows.stats().entries,
        before + 2,
        "another association, another flow pair"
    );
    let unreachable = (3, 3);
    let (port, _) = n
        .send(1, &icmp_error_to_w1(unreachable, &got[14..]))
        .unwrap_or_else(|| panic!("{:?}", n.worker.counters().snapshot()));
    assert_eq!(port, 0);
    let stray = sctp(M1, P0, there, 5002, 38412);
    assert!(n.send(1, &icmp_error_to_w1(unreachable, &stray[14..])).is_none());
    assert_eq!(n.drops(DropReason::PolicyDenied), 2);
    // w2 aborts the association: its flow is closing, aged as a closed TCP connection.
    let abort = sctp_chunk((M2, P1), back, (38412, 5000), &[6, 0, 0, 4]);
    assert_eq!(n.send(1, &abort).map(|o| o.0), Some(0));
    let r = n.flows.reader().unwrap();
    let key = wire::flow::FlowKey::v4(ip4("10.0.2.2"), ip4("10.0.1.2"), 132, 38412, 5000).with_vrf(1);
    let id = r.lookup(&key, key.hash()).expect("the association's reply flow");
    assert_eq!(r.flow(id).tcp_flags() & 0x04, 0x04, "ABORT seen, as TCP's RST");
}

#[test]
fn policy_denies_and_a_new_deny_cuts_an_established_flow() {
    let mut n = node();
    n.policy.publish(&deny_udp_port(53)).unwrap();
    assert!(n.send(0, &udp(M1, P0, "10.0.1.2", "10.0.2.2", 40000, 53, 64)).is_none());
    assert_eq!(n.drops(DropReason::PolicyDenied), 1);
    assert!(
        n.send(0, &udp(M1, P0, "10.0.1.2", "10.0.2.2", 40000, 5353, 64))
            .is_some()
    );
    // The established 5353 flow and its replies pass ...
    assert!(
        n.send(1, &udp(M2, P1, "10.0.2.2", "10.0.1.2", 5353, 40000, 64))
            .is_some()
    );
    // ... until the operator denies 5353: the very next packet is dropped, both ways.
    n.policy.publish(&deny_udp_port(5353)).unwrap();
    assert!(
        n.send(0, &udp(M1, P0, "10.0.1.2", "10.0.2.2", 40000, 5353, 64))
            .is_none()
    );
    assert!(
        n.send(1, &udp(M2, P1, "10.0.2.2", "10.0.1.2", 5353, 40000, 64))
            .is_none()
    );
    assert_eq!(n.drops(DropReason::PolicyDenied), 3);
    // And port 53 is open again.
    assert!(n.send(0, &udp(M1, P0, "10.0.1.2", "10.0.2.2", 40000, 53, 64)).is_some());
}

/// Rules that log: each decision one makes (a new flow, or one decided again after a
/// change) is one record in the flow log, with the flow, the verdict and the rule; never
/// one per packet, and none for a decision of a rule or default that does not log.
#[test]
fn rules_that_log_put_each_of_their_decisions_in_the_flow_log() {
    use policy::{Action, PortRange, Rule, RuleId};
    let mut n = node();
    let udp_to = |port, id, action| Rule {
        proto: Some(17),
        dst_ports: Some(PortRange::single(port)),
        ..Rule::any(RuleId(id), action)
    };
    let list = RuleList {
        rules: vec![udp_to(53, 4, Action::DenyLog), udp_to(5353, 5, Action::AllowLog)],
        default: Action::Allow,
    };
    let set = PolicySet::ingress_for(EndpointId(2), 1, vec![ip("10.0.2.2")], list);
    n.policy.publish(&set).unwrap();
    let to_w2 = |dport| udp(M1, P0, "10.0.1.2", "10.0.2.2", 40000, dport, 64);
    for dport in [53, 53, 5353, 5353, 80] {
        n.send(0, &to_w2(dport));
    }
    let records: Vec<_> = std::iter::from_fn(|| n.flow_log.pop()).collect();
    let line = |r: &dataplane::flowlog::LoggedFlow| r.to_string();
    assert_eq!(records.len(), 2, "{:?}", records.iter().map(line).collect::<Vec<_>>());
    let (denied, allowed) = (&records[0], &records[1]);
    assert_eq!((denied.key.dst_port, denied.allowed), (53, false));
    assert!(
        line(denied).ends_with(" denied: ingress of endpoint 2 rule 4 deny-log"),
        "{}",
        line(denied)
    );
    assert_eq!((allowed.key.dst_port, allowed.allowed), (5353, true));
    assert!(
        line(allowed).ends_with(" allowed: ingress of endpoint 2 rule 5 allow-log"),
        "{}",
        line(allowed)
    );
    // Published again, the policy decides the 5353 flow again on its next packet: logged
    // again, once.
    n.policy.publish(&set).unwrap();
    n.send(0, &to_w2(5353));
    n.send(0, &to_w2(5353));
    let again: Vec<_> = std::iter::from_fn(|| n.flow_log.pop()).collect();
    assert_eq!(again.iter().map(|r| r.key.dst_port).collect::<Vec<_>>(), [5353]);
    assert_eq!(n.flow_log.lost(), 0);
}

/// Sends a packet from w1 to each of `dsts` (routed into VXLAN, MPLSoUDP and MPLSoGRE
/// tunnels from `src` to `dst`) and checks what comes out on the fabric, tshark included.
fn encapsulates_into_each_tunnel_type_between(dsts: [&str; 3], (src, dst): (&str, &str)) {
    let mut n = node();
    let mut frames = Vec::new();
    for (inner_dst, want) in dsts.into_iter().zip(["vxlan", "mpls-udp", "mpls-gre"]) {
        let (port, out) = n.send(0, &udp(M1, P0, "10.0.1.2", inner_dst, 40000, 7777, 64)).unwrap();
        assert_eq!(port, 2, "{want}");
        let m = parse(&out).unwrap();
        assert_eq!(&out[..12], &[MR.0, P2.0].concat()[..]);
        assert_eq!(
            (m.outer.key.src_ip(), m.outer.key.dst_ip()),
            (Some(ip(src)), Some(ip(dst)))
        );
        match (want, m.tunnel) {
            ("vxlan", Tunnel::Vxlan { vni: 42 }) => {}
            ("mpls-udp", Tunnel::MplsOverUdp { top, .. }) => assert_eq!((top.label, top.bottom), (200, true)),
            ("mpls-gre", Tunnel::MplsOverGre { top, .. }) => assert_eq!(top.label, 300),
            (w, t) => panic!("{w}: {t:?}"),
        }
        assert_eq!(m.inner.key.dst_ip(), Some(ip(inner_dst)));
        if want == "vxlan" {
            let inner = usize::from(m.inner.l2);
            assert_eq!(
                &out[inner..inner + 12],
                &[[2, 0, 0, 0, 9, 5], P2.0].concat()[..],
                "inner MACs"
            );
        }
        assert_eq!(m.inner.ttl, 63);
        if want != "mpls-gre" {
            assert!(m.outer.key.src_port >= 49152, "entropy source port");
        }
        frames.push(out);
    }
    let v6 = ip(src).is_ipv6();
    let outer = if v6 { "ipv6" } else { "ip" };
    let lines = tshark_decodes(
        &frames,
        &[
            &format!("{outer}:udp:vxlan:eth:ethertype:ip:udp"),
            &format!("{outer}:udp:mpls:ip:udp"),
            &format!("{outer}:gre:mpls:ip:udp"),
        ],
    );
    // The outer UDP checksum, first of the UDP statuses: none over IPv4, good over IPv6.
    for line in &lines[..2] {
        let outer_udp = line.split('\t').nth(4).and_then(|s| s.split(',').next());
        assert_eq!(outer_udp, Some(if v6 { "1" } else { "3" }), "{line}");
    }
}

#[test]
fn encapsulates_into_each_tunnel_type() {
    encapsulates_into_each_tunnel_type_between(["10.9.0.5", "10.8.0.5", "10.7.0.5"], ("192.0.2.1", "192.0.2.2"));
}

/// Over IPv6 the UDP tunnels carry a computed checksum, which tshark verifies.
#[test]
fn encapsulates_into_each_tunnel_type_over_an_ipv6_underlay() {
    encapsulates_into_each_tunnel_type_between(["10.5.0.5", "10.4.0.5", "10.3.0.5"], ("fd00:f::1", "fd00:f::2"));
}

/// Told to, UDP tunnels over IPv6 send a zero checksum (RFC 6935) and sum nothing.
#[test]
fn ipv6_udp_tunnels_send_a_zero_checksum_when_told_to() {
    let mut n = node();
    for id in [13, 14] {
        let mut nh = n.routes.nexthop(id).unwrap().clone();
        if let Nexthop::Tunnel { zero_udp_checksum, .. } = &mut nh {
            *zero_udp_checksum = true;
        }
        n.routes.set_nexthop(id, nh).unwrap();
    }
    n.routes.publish(&n.fib).unwrap();
    let frames: Vec<_> = ["10.5.0.5", "10.4.0.5"]
        .iter()
        .map(|dst| {
            let (_, out) = n.send(0, &udp(M1, P0, "10.0.1.2", dst, 40000, 7777, 64)).unwrap();
            // The outer UDP header follows 14 bytes of Ethernet and 40 of IPv6.
            assert_eq!(&out[54 + 6..54 + 8], &[0, 0], "{dst}: zero UDP checksum");
            out
        })
        .collect();
    let lines = tshark_decodes_with(&frames, &["ipv6:udp:vxlan", "ipv6:udp:mpls"], &["udp.checksum"], true);
    for line in &lines {
        let outer = line.rsplit('\t').next().and_then(|c| c.split(',').next());
        assert_eq!(outer, Some("0x0000"), "{line}");
    }
}

/// A workload's UDP packet to a tunnel port (VXLAN's 4789) whose payload is a well-formed
/// tunnel packet to elsewhere is a plain packet: routed, policed and rewritten by its own
/// headers, not by the packet it carries (which would let a workload pick its route and
/// the policy that judges it).
#[test]
fn a_packet_that_only_looks_like_a_tunnel_goes_by_its_own_headers() {
    let mut n = node();
    let sent = looks_like_vxlan();
    let (port, out) = n.send(0, &sent).unwrap();
    assert_eq!(port, 1, "to w2, its own destination");
    assert_eq!(out[14 + 8], 63, "its own TTL decremented");
    assert_eq!(&out[34..], &sent[34..], "what it carries untouched");
}

/// A workload's UDP packet to a tunnel port whose payload is no tunnel at all is
/// delivered as any other; the same to this node's tunnel endpoint is a broken tunnel
/// packet, a counted drop.
#[test]
fn a_udp_packet_to_a_tunnel_port_that_carries_no_tunnel_is_plain() {
    let mut n = node();
    for dport in [wire::udp::PORT_VXLAN, wire::udp::PORT_MPLS] {
        // Its payload, `payload!`, is neither a VXLAN header (no I flag) nor a label stack
        // (no bottom of stack).
        let app = udp(M1, P0, "10.0.1.2", "10.0.2.2", 40000, dport, 64);
        let (port, out) = n.send(0, &app).unwrap();
        assert_eq!((port, &out[34..]), (1, &app[34..]), "to w2, as it came: port {dport}");
    }
    let broken = frame(&outer(vec![Header::Vxlan(VxlanRepr { vni: 42 })], true), b"hi").unwrap();
    assert!(n.send(2, &broken).is_none());
    assert_eq!(n.drops(DropReason::Malformed), 1);
}

/// w1's UDP packet to w2's VXLAN port, carrying a VXLAN packet to 10.9.0.5 (a tunnel
/// route's destination).
fn looks_like_vxlan() -> Vec<u8> {
    let inner = [
        Header::Vxlan(VxlanRepr { vni: 42 }),
        Header::Ethernet(EthernetRepr {
            src: M1,
            dst: P2,
            ethertype: EtherType::Ipv4,
        }),
        Header::Ipv4(Ipv4Repr::new(ip4("10.0.1.2"), ip4("10.9.0.5"), IpProtocol::Udp)),
        Header::Udp(UdpRepr {
            src_port: 1,
            dst_port: 2,
        }),
    ];
    let outer = [
        Header::Ethernet(EthernetRepr {
            src: M1,
            dst: P0,
            ethertype: EtherType::Ipv4,
        }),
        Header::Ipv4(Ipv4Repr::new(ip4("10.0.1.2"), ip4("10.0.2.2"), IpProtocol::Udp)),
        Header::Udp(UdpRepr {
            src_port: 40000,
            dst_port: wire::udp::PORT_VXLAN,
        }),
    ];
    frame(&[&outer[..], &inner[..]].concat(), b"x").unwrap()
}

/// `f` with an 802.1Q tag for VLAN `vid` after its MACs.
fn tagged(f: &[u8], vid: u16) -> Vec<u8> {
    [&f[..12], &[0x81, 0x00], &vid.to_be_bytes(), &f[12..]].concat()
}

/// A fabric port on VLAN 100 of a trunk: what it receives must carry the tag, which comes
/// off before anything else; everything it sends (tunnel packets, ARP answers and
/// requests, packets released once their next hop answers) carries it. tshark reads them.
#[test]
fn a_port_on_a_vlan_takes_its_tag_off_and_puts_it_on() {
    const GW: MacAddr = MacAddr([2, 0, 0, 0, 0x99, 9]);
    const TAG: [u8; 4] = [0x81, 0, 0, 100];
    let mut n = node_with(NeighborConfig::default(), Some(100));
    let (port, tunnelled) = n
        .send(0, &udp(M1, P0, "10.0.1.2", "10.9.0.5", 40000, 7777, 64))
        .unwrap();
    assert_eq!((port, &tunnelled[12..16]), (2, &TAG[..]));
    let vxlan = frame(&cases_vni(42), b"x").unwrap();
    let (port, inner) = n.send(2, &tagged(&vxlan, 100)).unwrap();
    assert_eq!(
        (port, &inner[12..14]),
        (1, &[0x08, 0x00][..]),
        "untagged to the workload"
    );
    // Untagged, of another VLAN, tagged twice; tagged on an untagged port.
    assert!(n.send(2, &vxlan).is_none());
    assert!(n.send(2, &tagged(&vxlan, 200)).is_none());
    assert!(n.send(2, &tagged(&tagged(&vxlan, 100), 100)).is_none());
    let to_w2 = udp(M1, P0, "10.0.1.2", "10.0.2.2", 40000, 7777, 64);
    assert!(n.send(0, &tagged(&to_w2, 100)).is_none());
    assert_eq!(n.drops(DropReason::WrongVlan), 4);
    let ask = arp(ArpOperation::Request, MR, "192.0.2.2", MacAddr([0; 6]), "192.0.2.1");
    let (port, answer) = n.send(2, &tagged(&ask, 100)).unwrap();
    assert_eq!((port, &answer[12..16]), (2, &TAG[..]));
    // An unknown next hop: the request goes out tagged, and so does the packet it held,
    // with its DSCP's class selector as the tag's priority (expedited forwarding: 5).
    let mut ef = Ipv4Repr::new(ip4("10.0.1.2"), ip4("10.6.0.1"), IpProtocol::Udp);
    ef.dscp = 46;
    let (port, request) = n.send(0, &udp_from_w1(ef, b"ef")).unwrap();
    assert_eq!((port, &request[12..16]), (2, &TAG[..]));
    let reply = arp(ArpOperation::Reply, GW, "192.0.2.9", P2, "192.0.2.1");
    let (port, released) = n.send(2, &tagged(&reply, 100)).unwrap();
    assert_eq!(
        (port, &released[..6], &released[12..16]),
        (2, &GW.0[..], &[0x81, 0, 0xa0, 100][..])
    );
    let lines = tshark_decodes_with(
        &[tunnelled, answer, request, released],
        &[
            "eth:ethertype:vlan:ethertype:ip:udp:vxlan",
            "eth:ethertype:vlan:ethertype:arp",
            "eth:ethertype:vlan:ethertype:arp",
            "eth:ethertype:vlan:ethertype:ip:udp",
        ],
        &["vlan.id", "vlan.priority"],
        false,
    );
    let tags: Vec<_> = lines.iter().map(|l| l.rsplitn(3, '\t').collect::<Vec<_>>()).collect();
    let tags: Vec<_> = tags.iter().map(|t| (t[1], t[0])).collect();
    assert_eq!(
        tags,
        [("100", "0"), ("100", "0"), ("100", "0"), ("100", "5")],
        "{lines:?}"
    );
    let r = n.worker.finish();
    r.frames_ok.unwrap();
    assert!(r.stats.conserved(), "{:?}", r.stats);
}

/// ECN crosses the tunnel (RFC 6040): the inner field is copied to the outer header on
/// encapsulation, over either family, checksums kept right.
#[test]
fn encapsulation_copies_the_inner_ecn_to_the_outer_header() {
    let mut n = node();
    let mut frames = Vec::new();
    for (dst, v6) in [
        ("10.9.0.5", false),
        ("10.7.0.5", false),
        ("10.5.0.5", true),
        ("10.3.0.5", true),
    ] {
        let mut ipr = Ipv4Repr::new(ip4("10.0.1.2"), ip4(dst), IpProtocol::Udp);
        ipr.ecn = 2;
        let (_, out) = n.send(0, &udp_from_w1(ipr, b"ect0")).unwrap();
        let outer_ecn = if v6 { out[15] >> 4 & 3 } else { out[15] & 3 };
        assert_eq!(outer_ecn, 2, "{dst}: ECT(0) outside too");
        // The DSCP: IPv6's traffic class spans the first two bytes, IPv4's TOS is the second.
        let outer_dscp = if v6 {
            (out[14] & 0xf) << 2 | out[15] >> 6
        } else {
            out[15] >> 2
        };
        assert_eq!(outer_dscp, 0, "{dst}: DSCP 0");
        frames.push(out);
    }
    tshark_decodes(&frames, &["vxlan", "gre:mpls", "vxlan", "gre:mpls"]);
}

/// The outer DSCP is the tunnel's: 0 by default, a fixed code point, or the inner one;
/// MPLS labels carry its class selector as their traffic class. The inner DSCP and the
/// ECN copy are kept, the IPv4 checksum right (tshark reads and checks each).
#[test]
fn encapsulation_sets_the_tunnels_outer_dscp() {
    let mut n = node();
    // Expedited forwarding (46), ECT(0), to each tunnel type over each family.
    let dsts = ["10.9.0.5", "10.8.0.5", "10.7.0.5", "10.5.0.5", "10.4.0.5", "10.3.0.5"];
    for (dscp, outer) in [
        (OuterDscp::default(), 0),
        (OuterDscp::Inherit, 46),
        (OuterDscp::Fixed(10), 10),
    ] {
        for id in 10..16 {
            let mut nh = n.routes.nexthop(id).unwrap().clone();
            if let Nexthop::Tunnel { dscp: d, .. } = &mut nh {
                *d = dscp;
            }
            n.routes.set_nexthop(id, nh).unwrap();
        }
        n.routes.publish(&n.fib).unwrap();
        let frames: Vec<_> = dsts
            .iter()
            .map(|dst| {
                let mut ipr = Ipv4Repr::new(ip4("10.0.1.2"), ip4(dst), IpProtocol::Udp);
                (ipr.dscp, ipr.ecn) = (46, 2);
                n.send(0, &udp_from_w1(ipr, b"ef")).unwrap().1
            })
            .collect();
        let lines = tshark_decodes_with(
            &frames,
            &[
                "ip:udp:vxlan",
                "ip:udp:mpls",
                "ip:gre:mpls",
                "ipv6:udp:vxlan",
                "ipv6:udp:mpls",
                "ipv6:gre:mpls",
            ],
            &[
                "ip.dsfield.dscp",
                "ipv6.tclass.dscp",
                "ip.dsfield.ecn",
                "ipv6.tclass.ecn",
                "mpls.exp",
            ],
            false,
        );
        for (line, dst) in lines.iter().zip(dsts) {
            let v: Vec<&str> = line.split('\t').skip(5).collect();
            let (v4_dscp, v6_dscp, v4_ecn, v6_ecn) = (v[0], v[1], v[2], v[3]);
            let v6 = !v6_dscp.is_empty();
            // IPv4 fields list the outer header's value, then the inner one's.
            let want_dscp = if v6 { "46".to_string() } else { format!("{outer},46") };
            assert_eq!(v4_dscp, want_dscp, "{dscp:?} to {dst}: {line}");
            let want_ecn = if v6 { "2" } else { "2,2" };
            assert_eq!(v4_ecn, want_ecn, "{dscp:?} to {dst}: {line}");
            if v6 {
                assert_eq!(
                    (v6_dscp, v6_ecn),
                    (outer.to_string().as_str(), "2"),
                    "{dscp:?} to {dst}: {line}"
                );
            }
            let mpls = line.contains("mpls");
            let want_tc = if mpls { (outer >> 3).to_string() } else { String::new() };
            assert_eq!(v[4], want_tc, "{dscp:?} to {dst}: the label's traffic class: {line}");
        }
    }
}

fn vxlan_with_ecn(ends: (&str, &str), outer: u8, inner: u8) -> Vec<u8> {
    let mut headers = outer_from(ends, cases_vni(42)[3..].to_vec(), true);
    for h in &mut headers {
        if let Header::Ipv4(r) = h {
            r.ecn = if r.dst == ip4("10.0.2.2") { inner } else { outer };
        }
        if let Header::Ipv6(r) = h {
            r.traffic_class = outer;
        }
    }
    frame(&headers, b"inner").unwrap()
}

/// ECN crosses back on decapsulation (RFC 6040): outer CE marks an ECN-capable inner
/// packet CE (its checksum kept right) and drops one that is not ECN-capable, as its
/// sender understands only a drop; outer ECT(1) over inner ECT(0) gives ECT(1); the rest
/// leave the inner field as it was.
#[test]
fn decapsulation_carries_congestion_marks_into_the_inner_packet() {
    let mut n = node();
    let mut frames = Vec::new();
    for ends in [("192.0.2.2", "192.0.2.1"), ("fd00:f::2", "fd00:f::1")] {
        for (outer, inner, now) in [
            (3, 2, Some(3)),
            (3, 1, Some(3)),
            (3, 3, Some(3)),
            (3, 0, None),
            (1, 2, Some(1)),
            (2, 1, Some(1)),
            (2, 0, Some(0)),
            (0, 2, Some(2)),
        ] {
            let out = n.send(2, &vxlan_with_ecn(ends, outer, inner)).map(|(_, f)| f);
            match now {
                None => assert!(out.is_none(), "{ends:?} outer {outer} inner {inner}: dropped"),
                Some(ecn) => {
                    let out = out.unwrap_or_else(|| panic!("{ends:?} outer {outer} inner {inner}"));
                    // Parsing verifies the IPv4 header checksum.
                    assert!(parse(&out).is_ok(), "{ends:?} outer {outer} inner {inner}: checksum");
                    assert_eq!(out[15] & 3, ecn, "{ends:?} outer {outer} inner {inner}");
                    frames.push(out);
                }
            }
        }
    }
    assert_eq!(n.drops(DropReason::EcnNotCapable), 2);
    let want = vec!["eth:ethertype:ip:udp"; frames.len()];
    tshark_decodes(&frames, &want);
}

/// Over IPv6 the flow label carries the inner flow's hash (RFC 6438): the same for every
/// packet of a flow, another for another flow, so IPv6 routers spread tunnels over their
/// ECMP paths, GRE ones (no UDP ports) included.
#[test]
fn the_ipv6_flow_label_follows_the_inner_flow() {
    let mut n = node();
    let mut label = |sport| {
        let (_, out) = n
            .send(0, &udp(M1, P0, "10.0.1.2", "10.3.0.5", sport, 7777, 64))
            .unwrap();
        let word = u32::from_be_bytes(out[14..18].try_into().unwrap());
        assert_eq!(word >> 20, 0x600, "version 6, traffic class 0");
        word & 0xf_ffff
    };
    let (a, b) = (label(40000), label(40001));
    assert_eq!(label(40000), a, "the same flow, the same label");
    assert_ne!(a, b, "another flow, another label");
    assert_ne!(a, 0);
}

/// VXLAN's inner destination MAC: the inner destination's overlay neighbour entry in the
/// tunnel's VNI where there is one, else the tunnel's router MAC (a Linux VTEP's device),
/// else as it came.
#[test]
fn vxlan_addresses_the_inner_frame_to_the_overlay_neighbour_or_the_router_mac() {
    const VTEP: MacAddr = MacAddr([2, 0, 0, 0, 7, 7]);
    const OTHER: MacAddr = MacAddr([2, 0, 0, 0, 9, 0x43]);
    let mut n = node();
    let inner_dst = |n: &mut Node, dst: &str| {
        let (_, out) = n.send(0, &udp(M1, P0, "10.0.1.2", dst, 40000, 7777, 64)).unwrap();
        let inner = usize::from(parse(&out).unwrap().inner.l2);
        MacAddr(out[inner..inner + 6].try_into().unwrap())
    };
    assert_eq!(inner_dst(&mut n, "10.9.0.6"), P0, "as it came: no entry, no router MAC");
    let tunnel = |vni| Nexthop::Tunnel {
        encap: Encap::Vxlan { vni },
        src: ip("192.0.2.1"),
        dst: ip("192.0.2.2"),
        underlay_vrf: 0,
        router_mac: Some(VTEP),
        dscp: Default::default(),
        zero_udp_checksum: false,
    };
    n.routes.set_nexthop(10, tunnel(42)).unwrap();
    n.routes.publish(&n.fib).unwrap();
    assert_eq!(inner_dst(&mut n, "10.9.0.6"), VTEP);
    assert_eq!(
        inner_dst(&mut n, "10.9.0.5"),
        MacAddr([2, 0, 0, 0, 9, 5]),
        "the neighbour entry first"
    );
    // Another tenant's VNI: the same inner address is another workload, and VNI 42's
    // entry is not its.
    n.routes.set_nexthop(10, tunnel(43)).unwrap();
    n.routes.publish(&n.fib).unwrap();
    assert_eq!(inner_dst(&mut n, "10.9.0.5"), VTEP, "not VNI 42's entry");
    n.routes.set_neighbor(
        dataplane::pipeline::overlay_neighbor_port(43),
        ip("10.9.0.5"),
        Neighbor {
            mac: OTHER,
            state: NeighborState::Reachable,
        },
    );
    n.routes.publish(&n.fib).unwrap();
    assert_eq!(inner_dst(&mut n, "10.9.0.5"), OTHER);
}

#[test]
fn a_changed_underlay_takes_effect_on_the_next_tunnelled_packet() {
    const MOVED: MacAddr = MacAddr([2, 0, 0, 0, 9, 0x42]);
    let mut n = node();
    let pkt = udp(M1, P0, "10.0.1.2", "10.9.0.5", 40000, 7777, 64);
    assert_eq!(&n.send(0, &pkt).unwrap().1[..6], &MR.0, "the underlay next hop's MAC");
    // The peer's underlay address moves to another MAC, then behind an unresolved router.
    n.routes.set_neighbor(
        2,
        ip("192.0.2.2"),
        Neighbor {
            mac: MOVED,
            state: NeighborState::Reachable,
        },
    );
    n.routes.publish(&n.fib).unwrap();
    assert_eq!(&n.send(0, &pkt).unwrap().1[..6], &MOVED.0);
    n.routes
        .set_nexthop(
            4,
            Nexthop::Interface {
                port: 2,
                gateway: Some(ip("192.0.2.9")),
            },
        )
        .unwrap();
    n.routes.publish(&n.fib).unwrap();
    let (port, req) = n.send(0, &pkt).unwrap();
    let arp = ArpRepr::parse(&wire::arp::ArpPacket::new_checked(&req[14..]).unwrap()).unwrap();
    assert_eq!(
        (port, arp.target_ip),
        (2, ip4("192.0.2.9")),
        "the tunnel now waits for the new next hop"
    );
}

fn outer(headers_after_udp: Vec<Header<'static>>, proto_udp: bool) -> Vec<Header<'static>> {
    outer_from(("192.0.2.2", "192.0.2.1"), headers_after_udp, proto_udp)
}

/// A tunnel packet from `src` to `dst` (both IPv4 or both IPv6) on the fabric.
fn outer_from(
    (src, dst): (&str, &str),
    headers_after_udp: Vec<Header<'static>>,
    proto_udp: bool,
) -> Vec<Header<'static>> {
    let proto = if proto_udp { IpProtocol::Udp } else { IpProtocol::Gre };
    let (ethertype, ip_header) = match (ip(src), ip(dst)) {
        (IpAddr::V4(s), IpAddr::V4(d)) => (EtherType::Ipv4, Header::Ipv4(Ipv4Repr::new(s, d, proto))),
        (IpAddr::V6(s), IpAddr::V6(d)) => (EtherType::Ipv6, Header::Ipv6(wire::ipv6::Ipv6Repr::new(s, d, proto))),
        _ => panic!("ends of two families"),
    };
    let mut h = vec![
        Header::Ethernet(EthernetRepr {
            src: MR,
            dst: P2,
            ethertype,
        }),
        ip_header,
    ];
    if proto_udp {
        h.push(Header::Udp(UdpRepr {
            src_port: 50000,
            dst_port: if matches!(headers_after_udp[0], Header::Vxlan(_)) {
                4789
            } else {
                6635
            },
        }));
    }
    h.extend(headers_after_udp);
    h
}

/// One tunnel packet of each type from `ends` (remote, local) to this node, carrying
/// UDP from 10.9.0.5 to w2 (10.0.2.2) with `ttl`.
fn tunnel_packets(ends: (&str, &str), ttl: u8) -> [(&'static str, Vec<Header<'static>>); 3] {
    let inner = Ipv4Repr::new(ip4("10.9.0.5"), ip4("10.0.2.2"), IpProtocol::Udp);
    let inner_ip = Header::Ipv4(Ipv4Repr { ttl, ..inner });
    let inner_udp = Header::Udp(UdpRepr {
        src_port: 1000,
        dst_port: 2000,
    });
    let mpls = Header::Mpls(MplsRepr {
        label: 100,
        tc: 0,
        bottom: true,
        ttl: 64,
    });
    [
        (
            "vxlan",
            outer_from(
                ends,
                vec![
                    Header::Vxlan(VxlanRepr { vni: 42 }),
                    Header::Ethernet(EthernetRepr {
                        src: MR,
                        dst: P2,
                        ethertype: EtherType::Ipv4,
                    }),
                    inner_ip,
                    inner_udp,
                ],
                true,
            ),
        ),
        ("mpls-udp", outer_from(ends, vec![mpls, inner_ip, inner_udp], true)),
        (
            "mpls-gre",
            outer_from(
                ends,
                vec![
                    Header::Gre(wire::gre::GreRepr {
                        protocol: EtherType::MplsUnicast,
                        checksum: false,
                        key: None,
                        sequence: None,
                    }),
                    mpls,
                    inner_ip,
                    inner_udp,
                ],
                false,
            ),
        ),
    ]
}

/// Tunnel packets from `ends` (remote, local) to this node, one of each type, arrive on
/// the fabric and come out of w2 decapsulated. With their inner TTL run out, the time
/// exceeded error goes back to the source through the tunnel its route takes, from the
/// VRF's gateway address, never out of the fabric port as it is (it would carry a
/// tenant's addresses into the underlay).
fn decapsulates_each_tunnel_type_into_its_vrf_between(ends: (&str, &str)) {
    let mut n = node();
    let cases = |ttl| tunnel_packets(ends, ttl);
    for (name, headers) in cases(64) {
        let f = frame(&headers, b"inner").unwrap();
        let (port, out) = n
            .send(2, &f)
            .unwrap_or_else(|| panic!("{name}: dropped {:?}", n.worker.counters().snapshot()));
        assert_eq!(port, 1, "{name}");
        let m = parse(&out).unwrap();
        assert_eq!(m.tunnel, Tunnel::None, "{name}");
        assert_eq!(&out[..12], &[M2.0, P1.0].concat()[..], "{name}");
        assert_eq!(m.outer.key.dst_ip(), Some(ip("10.0.2.2")));
        assert_eq!(&out[out.len() - 5..], b"inner");
    }
    let mut errors = Vec::new();
    for (name, headers) in cases(1) {
        let f = frame(&headers, b"inner").unwrap();
        let (port, out) = n.send(2, &f).unwrap_or_else(|| panic!("{name}: no error sent"));
        assert_eq!(port, 2, "{name}");
        let m = parse(&out).unwrap();
        // 10.9.0.5's route in VRF 1 is VXLAN over IPv4, whichever way it came.
        assert_eq!(m.tunnel, Tunnel::Vxlan { vni: 42 }, "{name}");
        assert_eq!(m.outer.key.dst_ip(), Some(ip("192.0.2.2")), "{name}");
        assert_eq!(
            (m.inner.key.src_ip(), m.inner.key.dst_ip()),
            (Some(ip("10.0.1.1")), Some(ip("10.9.0.5"))),
            "{name}: from the VRF's gateway address to the source"
        );
        assert_eq!(out[usize::from(m.inner.l4)], 11, "{name}: time exceeded");
        errors.push(out);
    }
    assert_eq!(n.drops(DropReason::TtlExpired), 0);
    let s = n.worker.counters().snapshot();
    assert_eq!((s.count_of(Event::IcmpErrors), s.count_of(Event::IcmpRouted)), (3, 3));
    tshark_decodes(&errors, &["eth:ethertype:ip:udp:vxlan:eth:ethertype:ip:icmp:ip:udp"; 3]);
}

/// `frame` split by scapy (an implementation not ours) into fragments of at most `size`
/// bytes of IP payload; an IPv6 packet gets a fragment header behind its fixed one, or
/// behind a hop-by-hop header with `hop_by_hop` (which every fragment then carries).
fn scapy_fragments(frame: &[u8], size: usize, hop_by_hop: bool) -> Vec<Vec<u8>> {
    const SCRIPT: &str = r#"
import sys
from scapy.all import Ether, IPv6, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, fragment, fragment6, raw
p = Ether(bytes.fromhex(sys.argv[1]))
size = int(sys.argv[2])
if IPv6 in p:
    ip = p[IPv6].copy()
    rest = ip.payload.copy()
    ip.remove_payload()
    head = IPv6ExtHdrFragment(id=0x5678)
    ip.nh = 44
    if sys.argv[3] == "1":
        head = IPv6ExtHdrHopByHop() / head
        ip.nh = 0
    frags = [Ether(src=p.src, dst=p.dst) / f for f in fragment6(ip / head / rest, size + 48 + len(head) - 8)]
else:
    frags = fragment(p, fragsize=size)
for f in frags:
    print(raw(f).hex())
"#;
    let python = std::env::var("SCAPY_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into());
    let hex: String = frame.iter().map(|b| format!("{b:02x}")).collect();
    let out = std::process::Command::new(python)
        .args([
            "-c",
            SCRIPT,
            &hex,
            &size.to_string(),
            if hop_by_hop { "1" } else { "0" },
        ])
        .output()
        .expect("python3 with scapy (scripts/test installs it)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            (0..l.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&l[i..i + 2], 16).unwrap())
                .collect()
        })
        .collect()
}

/// Tunnel packets that a peer's stack or an underlay router fragmented come out of w2
/// whole, every type over either underlay (IPv6 also with a hop-by-hop header before the
/// fragment header), their fragments arriving last first in bursts of their own. Each
/// fragment taken in is counted, and each packet rebuilt. A fragment whose datagram never
/// comes whole is let go, counted, when the worker stops.
#[test]
fn tunnel_packets_fragmented_in_the_underlay_are_put_back_together() {
    let mut n = node();
    let payload: Vec<u8> = (0..1200).map(|i| i as u8).collect();
    let (mut packets, mut fragments) = (0, 0);
    let (v4, v6) = (("192.0.2.2", "192.0.2.1"), ("fd00:f::2", "fd00:f::1"));
    for (ends, hop_by_hop) in [(v4, false), (v6, false), (v6, true)] {
        for (name, headers) in tunnel_packets(ends, 64) {
            let name = format!("{name} over {}{}", ends.0, if hop_by_hop { ", hop-by-hop" } else { "" });
            let mut frags = scapy_fragments(&frame(&headers, &payload).unwrap(), 512, hop_by_hop);
            assert_eq!(frags.len(), 3, "{name}");
            frags.reverse();
            for f in &frags[..2] {
                assert!(n.send(2, f).is_none(), "{name}: held");
            }
            let (port, out) = n
                .send(2, &frags[2])
                .unwrap_or_else(|| panic!("{name}: {:?}", n.worker.counters().snapshot()));
            assert_eq!(port, 1, "{name}");
            let m = parse(&out).unwrap();
            assert_eq!((m.tunnel, m.outer.key.dst_ip()), (Tunnel::None, Some(ip("10.0.2.2"))));
            assert_eq!(&out[out.len() - payload.len()..], &payload[..], "{name}");
            packets += 1;
            fragments += frags.len() as u64;
        }
    }
    let s = n.worker.counters().snapshot();
    assert_eq!(s.count_of(Event::Reassembled), packets);
    assert_eq!(s.dropped_for(DropReason::FragmentMerged), fragments - packets);
    assert_eq!(s.dropped(), fragments - packets, "{s:?}");
    let (_, headers) = &tunnel_packets(("192.0.2.2", "192.0.2.1"), 64)[0];
    let lone = &scapy_fragments(&frame(headers, &payload).unwrap(), 512, false)[0];
    assert!(n.send(2, lone).is_none());
    let report = n.worker.finish();
    assert_eq!(report.stats.dropped_for(DropReason::ReassemblyTimeout), 1);
    assert!(report.stats.conserved(), "{:?}", report.stats);
    report.frames_ok.unwrap();
}

#[test]
fn decapsulates_each_tunnel_type_into_its_vrf() {
    decapsulates_each_tunnel_type_into_its_vrf_between(("192.0.2.2", "192.0.2.1"));
    let mut n = node();
    // An unknown VNI is dropped and counted, every time.
    let bad = frame(&cases_vni(43), b"x").unwrap();
    assert!(n.send(2, &bad).is_none());
    assert!(n.send(2, &bad).is_none());
    assert_eq!(n.drops(DropReason::UnknownVni), 2);
}

#[test]
fn decapsulates_each_tunnel_type_over_an_ipv6_underlay() {
    decapsulates_each_tunnel_type_into_its_vrf_between(("fd00:f::2", "fd00:f::1"));
}

/// A UDP tunnel packet whose outer checksum is there and wrong was corrupted on the way
/// (its VNI with it, perhaps): dropped and counted, over either family. Without a checksum
/// (zero) it is taken, over IPv6 too (RFC 6935).
#[test]
fn a_wrong_outer_udp_checksum_is_dropped_and_none_is_taken() {
    let mut n = node();
    for ends in [("192.0.2.2", "192.0.2.1"), ("fd00:f::2", "fd00:f::1")] {
        // The VXLAN header on, from `ends`.
        let good = frame(&outer_from(ends, cases_vni(42)[3..].to_vec(), true), b"inner").unwrap();
        let m = parse(&good).unwrap();
        let sum_at = usize::from(m.outer.l4) + 6;
        assert_ne!(
            &good[sum_at..sum_at + 2],
            &[0, 0],
            "{ends:?}: the builder gave a checksum"
        );
        // The last payload byte changed, the checksum left: wrong.
        let mut bad = good.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(n.send(2, &bad).is_none(), "{ends:?}");
        // Then no checksum at all: taken.
        let mut none = bad.clone();
        none[sum_at..sum_at + 2].fill(0);
        assert_eq!(n.send(2, &none).map(|(port, _)| port), Some(1), "{ends:?}");
        assert_eq!(n.send(2, &good).map(|(port, _)| port), Some(1), "{ends:?}");
    }
    assert_eq!(n.drops(DropReason::BadChecksum), 2);
}

/// Told to (RFC 6936), the node refuses UDP tunnel packets over IPv6 without a checksum,
/// as `BadChecksum`; over IPv4 no checksum stays the sender's choice.
#[test]
fn a_node_can_refuse_ipv6_tunnel_packets_without_a_udp_checksum() {
    let mut n = node_of(NeighborConfig::default(), |cfg| cfg.refuse_zero_udp_checksum6 = true);
    for (ends, taken) in [(("192.0.2.2", "192.0.2.1"), true), (("fd00:f::2", "fd00:f::1"), false)] {
        let good = frame(&outer_from(ends, cases_vni(42)[3..].to_vec(), true), b"inner").unwrap();
        let sum_at = usize::from(parse(&good).unwrap().outer.l4) + 6;
        let mut none = good.clone();
        none[sum_at..sum_at + 2].fill(0);
        assert_eq!(n.send(2, &none).is_some(), taken, "{ends:?}");
        assert_eq!(
            n.send(2, &good).map(|(port, _)| port),
            Some(1),
            "{ends:?}: with a checksum"
        );
    }
    assert_eq!(n.drops(DropReason::BadChecksum), 1);
}

/// Workers remember which VRF a label or VNI names; a republished FIB that moves them is
/// followed from the next packet.
#[test]
fn a_label_or_vni_moved_to_another_vrf_takes_effect_on_the_next_packet() {
    let mut n = node();
    let mpls = Header::Mpls(MplsRepr {
        label: 100,
        tc: 0,
        bottom: true,
        ttl: 64,
    });
    let inner = |dport| {
        vec![
            Header::Ipv4(Ipv4Repr::new(ip4("10.9.0.5"), ip4("10.0.2.2"), IpProtocol::Udp)),
            Header::Udp(UdpRepr {
                src_port: 1000,
                dst_port: dport,
            }),
        ]
    };
    let labelled = |dport| frame(&outer([vec![mpls], inner(dport)].concat(), true), b"x").unwrap();
    let vxlan = |dport| {
        let eth = Header::Ethernet(EthernetRepr {
            src: MR,
            dst: P2,
            ethertype: EtherType::Ipv4,
        });
        let headers = [vec![Header::Vxlan(VxlanRepr { vni: 42 }), eth], inner(dport)].concat();
        frame(&outer(headers, true), b"x").unwrap()
    };
    assert_eq!(n.send(2, &labelled(2000)).map(|(port, _)| port), Some(1));
    assert_eq!(n.send(2, &vxlan(2000)).map(|(port, _)| port), Some(1));
    // Label 100 and VNI 42 now name VRF 0, which has no route to 10.0.2.2.
    n.routes.set_nexthop(21, Nexthop::VrfTranslate { vrf: 0 }).unwrap();
    n.routes.set_label(100, 21).unwrap();
    n.routes.set_vni(42, 0).unwrap();
    n.routes.publish(&n.fib).unwrap();
    // New flows (other ports), so the answer comes from the VRF, not a cached flow.
    assert!(n.send(2, &labelled(2001)).is_none());
    assert!(n.send(2, &vxlan(2001)).is_none());
    assert_eq!(n.drops(DropReason::NoRoute), 2);
}

fn cases_vni(vni: u32) -> Vec<Header<'static>> {
    outer(
        vec![
            Header::Vxlan(VxlanRepr { vni }),
            Header::Ethernet(EthernetRepr {
                src: MR,
                dst: P2,
                ethertype: EtherType::Ipv4,
            }),
            Header::Ipv4(Ipv4Repr::new(ip4("10.9.0.5"), ip4("10.0.2.2"), IpProtocol::Udp)),
            Header::Udp(UdpRepr {
                src_port: 1,
                dst_port: 2,
            }),
        ],
        true,
    )
}

/// Writes the frames to a pcap and checks tshark decodes every layer without complaint;
/// returns tshark's line per frame (protocols, expert messages, then the IP, ICMPv6 and
/// UDP checksum statuses).
fn tshark_decodes(frames: &[Vec<u8>], want: &[&str]) -> Vec<String> {
    tshark_decodes_with(frames, want, &[], false)
}

/// As [`tshark_decodes`], with tshark's values of `fields` at the end of each line.
/// `zero_v6_udp`: the outer UDP checksum is zero over IPv6 by choice (RFC 6935), which
/// tshark, going by RFC 8200 alone, flags as illegal; it must, and nothing else.
fn tshark_decodes_with(frames: &[Vec<u8>], want: &[&str], fields: &[&str], zero_v6_udp: bool) -> Vec<String> {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("vr-pipeline-{}-{n}.pcap", std::process::id()));
    let mut pcap = Vec::new();
    pcap.extend_from_slice(&0xa1b2c3d4u32.to_le_bytes());
    pcap.extend_from_slice(&2u16.to_le_bytes());
    pcap.extend_from_slice(&4u16.to_le_bytes());
    pcap.extend_from_slice(&[0; 8]);
    pcap.extend_from_slice(&65535u32.to_le_bytes());
    pcap.extend_from_slice(&1u32.to_le_bytes());
    for f in frames {
        pcap.extend_from_slice(&[0; 8]);
        pcap.extend_from_slice(&(f.len() as u32).to_le_bytes());
        pcap.extend_from_slice(&(f.len() as u32).to_le_bytes());
        pcap.extend_from_slice(f);
    }
    std::fs::write(&path, pcap).unwrap();
    let out = std::process::Command::new("tshark")
        .args([
            "-r",
            path.to_str().unwrap(),
            "-d",
            "udp.port==6635,mpls",
            "-T",
            "fields",
            "-e",
            "frame.protocols",
            "-e",
            "_ws.expert.message",
            "-e",
            "ip.checksum.status",
            "-e",
            "icmpv6.checksum.status",
            "-e",
            "udp.checksum.status",
        ])
        .args(fields.iter().flat_map(|f| ["-e", f]))
        .args(["-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE"])
        .args(["-o", "tcp.check_checksum:TRUE"])
        .output()
        .expect("tshark installed (scripts/test installs it)");
    let _ = std::fs::remove_file(&path);
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.len(),
        frames.len(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (line, want) in lines.iter().zip(want) {
        assert!(line.contains(want), "{line} lacks {want}");
        assert!(!line.to_lowercase().contains("malformed"), "{line}");
        let columns: Vec<&str> = line.split('\t').collect();
        let mut udp = columns[4].split(',');
        if zero_v6_udp {
            assert_eq!(udp.next(), Some("4"), "the outer UDP checksum flagged: {line}");
            assert_eq!(columns[1], "Illegal checksum value (0)", "{line}");
        }
        let statuses = columns[2].split(',').chain(columns[3].split(',')).chain(udp);
        // UDP checksums may be left zero over IPv4 (3: none; over IPv6 it is flagged)
        // and cannot be checked in the part of a packet an ICMP error quotes (2).
        assert!(
            statuses.filter(|s| !s.is_empty()).all(|s| ["1", "2", "3"].contains(&s)),
            "checksums (1 = good, 2 = unchecked, 3 = none): {line}"
        );
    }
    lines.iter().map(|l| l.to_string()).collect()
}

/// An IPv4 fragment of a UDP datagram from w1 to w2: the first carries the UDP header.
fn fragment(ident: u16, first: bool, dport: u16) -> Vec<u8> {
    let mut ipr = Ipv4Repr::new(ip4("10.0.1.2"), ip4("10.0.2.2"), IpProtocol::Udp);
    ipr.ident = ident;
    ipr.dont_frag = false;
    ipr.more_frags = first;
    ipr.frag_offset = if first { 0 } else { 64 };
    let eth = Header::Ethernet(EthernetRepr {
        src: M1,
        dst: P0,
        ethertype: EtherType::Ipv4,
    });
    if first {
        frame(
            &[
                eth,
                Header::Ipv4(ipr),
                Header::Udp(UdpRepr {
                    src_port: 40000,
                    dst_port: dport,
                }),
            ],
            &[7u8; 56],
        )
        .unwrap()
    } else {
        frame(&[eth, Header::Ipv4(ipr)], &[9u8; 40]).unwrap()
    }
}

#[test]
fn later_fragments_follow_their_first_fragments_decision() {
    let mut n = node();
    n.policy.publish(&deny_udp_port(53)).unwrap();
    // Allowed datagram: both fragments forwarded to w2.
    assert_eq!(n.send(0, &fragment(1, true, 5353)).map(|o| o.0), Some(1));
    let (port, later) = n.send(0, &fragment(1, false, 5353)).unwrap();
    assert_eq!(port, 1);
    assert_eq!(&later[later.len() - 40..], &[9u8; 40]);
    // Denied datagram: the later fragment, which has no ports, is denied too.
    assert!(n.send(0, &fragment(2, true, 53)).is_none());
    assert!(n.send(0, &fragment(2, false, 53)).is_none());
    assert_eq!(n.drops(DropReason::PolicyDenied), 2);
    // A later fragment before its first: parked, and sent right after the first, on
    // its decision.
    assert!(n.send(0, &fragment(3, false, 5353)).is_none());
    let out = n.send_all(0, &fragment(3, true, 5353));
    assert_eq!(out.len(), 2, "the first and the fragment that waited for it");
    assert!(out.iter().all(|(port, _)| *port == 1));
    assert_eq!(&out[1].1[out[1].1.len() - 40..], &[9u8; 40]);
    // The same, denied: the parked fragment is denied with its first.
    assert!(n.send(0, &fragment(4, false, 53)).is_none());
    assert!(n.send_all(0, &fragment(4, true, 53)).is_empty());
    assert_eq!(n.drops(DropReason::PolicyDenied), 4);
    // A later fragment whose first never comes; and a repeat of datagram 1's last
    // fragment, which ended its datagram: both wait, then go as orphans.
    assert!(n.send(0, &fragment(5, false, 5353)).is_none());
    assert!(n.send(0, &fragment(1, false, 5353)).is_none());
    assert_eq!(n.drops(DropReason::FragmentOrphan), 0);
    let report = n.worker.finish();
    assert_eq!(report.stats.dropped_for(DropReason::FragmentOrphan), 2);
    assert!(report.stats.conserved(), "{:?}", report.stats);
}

/// A later fragment that comes out of a VXLAN tunnel before its first waits for it in the
/// tunnel's VRF (where 10.0.2.2 is w2; the fabric's VRF has no route there), and follows
/// it to w2.
#[test]
fn a_fragment_out_of_a_tunnel_waits_for_its_first_in_the_tunnels_vrf() {
    let mut n = node();
    let in_vxlan = |first: bool| {
        let mut inner = Ipv4Repr::new(ip4("10.9.0.5"), ip4("10.0.2.2"), IpProtocol::Udp);
        (inner.ident, inner.dont_frag, inner.more_frags) = (77, false, first);
        inner.frag_offset = if first { 0 } else { 64 };
        let mut headers = vec![
            Header::Vxlan(VxlanRepr { vni: 42 }),
            Header::Ethernet(EthernetRepr {
                src: MR,
                dst: P2,
                ethertype: EtherType::Ipv4,
            }),
            Header::Ipv4(inner),
        ];
        let payload: &[u8] = if first {
            headers.push(Header::Udp(UdpRepr {
                src_port: 1000,
                dst_port: 2000,
            }));
            &[7; 56]
        } else {
            &[9; 40]
        };
        frame(&outer(headers, true), payload).unwrap()
    };
    assert!(n.send(2, &in_vxlan(false)).is_none(), "waits");
    let out = n.send_all(2, &in_vxlan(true));
    assert_eq!(out.len(), 2, "{:?}", n.worker.counters().snapshot());
    for (port, f) in &out {
        assert_eq!(*port, 1);
        let m = parse(f).unwrap();
        assert_eq!(m.outer.key.dst_ip(), Some(ip("10.0.2.2")));
    }
    assert_eq!(&out[1].1[out[1].1.len() - 40..], &[9u8; 40]);
    let report = n.worker.finish();
    assert_eq!(report.stats.dropped(), 0, "{:?}", report.stats);
    assert!(report.stats.conserved());
}

/// An IPv6 fragment of a UDP datagram from w1 to w2: the first carries the UDP header.
fn fragment6(ident: u32, first: bool, dport: u16) -> Vec<u8> {
    use wire::ipv6ext::Ipv6FragRepr;
    let ipr = wire::ipv6::Ipv6Repr::new(
        "fd00:1::2".parse().unwrap(),
        "fd00:2::2".parse().unwrap(),
        IpProtocol::Ipv6Frag,
    );
    let frag = Ipv6FragRepr {
        next_header: IpProtocol::Udp,
        frag_offset: if first { 0 } else { 64 },
        more_frags: first,
        ident,
    };
    let eth = Header::Ethernet(EthernetRepr {
        src: M1,
        dst: P0,
        ethertype: EtherType::Ipv6,
    });
    if first {
        let udp = Header::Udp(UdpRepr {
            src_port: 40000,
            dst_port: dport,
        });
        frame(&[eth, Header::Ipv6(ipr), Header::Ipv6Frag(frag), udp], &[7u8; 56]).unwrap()
    } else {
        frame(&[eth, Header::Ipv6(ipr), Header::Ipv6Frag(frag)], &[9u8; 40]).unwrap()
    }
}

#[test]
fn later_ipv6_fragments_follow_their_first_fragments_decision() {
    let mut n = node();
    n.policy.publish(&deny_udp_port(53)).unwrap();
    let big = 0x8000_0001; // identifications are 32 bits in IPv6
    assert_eq!(n.send(0, &fragment6(big, true, 5353)).map(|o| o.0), Some(1));
    let (port, later) = n.send(0, &fragment6(big, false, 5353)).unwrap();
    assert_eq!(port, 1);
    assert_eq!(&later[..6], &M2.0);
    assert_eq!(&later[later.len() - 40..], &[9u8; 40]);
    // Same low 16 bits, another datagram: not confused with the first.
    assert!(n.send(0, &fragment6(1, false, 5353)).is_none());
    assert!(n.send(0, &fragment6(2, true, 53)).is_none());
    assert!(n.send(0, &fragment6(2, false, 53)).is_none());
    assert_eq!(n.drops(DropReason::PolicyDenied), 2);
    assert!(
        n.send(0, &fragment6(big, false, 5353)).is_none(),
        "ended by the last fragment"
    );
    // Before its first, a later fragment waits for it.
    assert!(n.send(0, &fragment6(3, false, 5353)).is_none());
    assert_eq!(n.send_all(0, &fragment6(3, true, 5353)).len(), 2);
    let report = n.worker.finish();
    assert_eq!(report.stats.dropped_for(DropReason::FragmentOrphan), 2);
    assert!(report.stats.conserved(), "{:?}", report.stats);
}

fn udp6(src: &str, dst: &str, sport: u16, hop_limit: u8, payload: &[u8]) -> Vec<u8> {
    let mut ipr = wire::ipv6::Ipv6Repr::new(src.parse().unwrap(), dst.parse().unwrap(), IpProtocol::Udp);
    ipr.hop_limit = hop_limit;
    frame(
        &[
            Header::Ethernet(EthernetRepr {
                src: M1,
                dst: P0,
                ethertype: EtherType::Ipv6,
            }),
            Header::Ipv6(ipr),
            Header::Udp(UdpRepr {
                src_port: sport,
                dst_port: 5000,
            }),
        ],
        payload,
    )
    .unwrap()
}

fn arp(op: ArpOperation, sender_mac: MacAddr, sender: &str, target_mac: MacAddr, target: &str) -> Vec<u8> {
    frame(
        &[
            Header::Ethernet(EthernetRepr {
                src: sender_mac,
                dst: if op == ArpOperation::Request {
                    MacAddr::BROADCAST
                } else {
                    target_mac
                },
                ethertype: EtherType::Arp,
            }),
            Header::Arp(ArpRepr {
                operation: op,
                sender_mac,
                sender_ip: ip4(sender),
                target_mac,
                target_ip: ip4(target),
            }),
        ],
        &[],
    )
    .unwrap()
}

/// Every frame waiting on `port`'s link.
fn take_all(n: &Node, port: usize) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| n.links[port].take()).collect()
}

#[test]
fn an_unknown_next_hop_is_resolved_by_arp_while_its_packets_wait() {
    const GW: MacAddr = MacAddr([2, 0, 0, 0, 0x99, 9]);
    let mut n = node();
    let pkt = |sport| udp(M1, P0, "10.0.1.2", "10.6.0.1", sport, 5000, 64);
    // The first packet is parked and the router asks for the gateway's MAC.
    let (port, req) = n.send(0, &pkt(1000)).unwrap();
    assert_eq!(port, 2);
    let a = ArpRepr::parse(&wire::arp::ArpPacket::new_checked(&req[14..]).unwrap()).unwrap();
    assert_eq!(&req[..6], &MacAddr::BROADCAST.0);
    assert_eq!(a.operation, ArpOperation::Request);
    assert_eq!(
        (a.sender_mac, a.sender_ip, a.target_ip),
        (P2, ip4("192.0.2.1"), ip4("192.0.2.9"))
    );
    // Three more wait with it (four per next hop), the fifth is refused; no second request
    // before the retry time.
    for sport in 1001..1005 {
        assert!(n.send(0, &pkt(sport)).is_none());
    }
    assert_eq!(n.drops(DropReason::ParkFull), 1);
    // An unasked reply about another address is not learned.
    assert!(
        n.send(2, &arp(ArpOperation::Reply, GW, "192.0.2.77", P2, "192.0.2.1"))
            .is_none()
    );
    assert!(n.neighbors.snapshot().is_empty());
    // The answer releases the four, in order, to the learned MAC.
    assert!(n.links[2].inject(&arp(ArpOperation::Reply, GW, "192.0.2.9", P2, "192.0.2.1")));
    n.worker.run_once();
    let out = take_all(&n, 2);
    assert_eq!(out.len(), 4);
    for (f, sport) in out.iter().zip(1000u16..) {
        assert_eq!(&f[..12], &[GW.0, P2.0].concat()[..]);
        let m = parse(f).unwrap();
        assert_eq!((m.outer.key.src_port, m.outer.ttl), (sport, 63));
    }
    assert_eq!(n.drops(DropReason::NeighborReply), 2);
    // Later packets go straight out.
    let (port, f) = n.send(0, &pkt(1000)).unwrap();
    assert_eq!((port, &f[..6]), (2, &GW.0[..]));
    tshark_decodes(&[req, f], &["eth:ethertype:arp", "eth:ethertype:ip:udp"]);
    let r = n.worker.finish();
    r.frames_ok.unwrap();
    assert!(r.stats.conserved(), "{:?}", r.stats);
    assert_eq!(r.stats.originated, 1);
}

/// The fragments of a packet whose next hop is being resolved wait with it, and go out
/// together when the answer comes, counted as made here: every packet accounted for.
#[test]
fn fragments_wait_for_their_next_hop_together() {
    const GW: MacAddr = MacAddr([2, 0, 0, 0, 0x99, 9]);
    let mut n = node();
    let mut ipr = Ipv4Repr::new(ip4("10.0.1.2"), ip4("10.6.0.1"), IpProtocol::Udp);
    ipr.dont_frag = false;
    let (port, req) = n.send(0, &udp_from_w1(ipr, &[5; 2000])).unwrap();
    assert_eq!((port, &req[12..14]), (2, &[8, 6][..]), "an ARP request, nothing else");
    assert!(take_all(&n, 2).is_empty());
    assert!(n.links[2].inject(&arp(ArpOperation::Reply, GW, "192.0.2.9", P2, "192.0.2.1")));
    n.worker.run_once();
    let out = take_all(&n, 2);
    assert_eq!(out.len(), 2, "2008 bytes of UDP in two fragments");
    for f in &out {
        assert_eq!(&f[..12], &[GW.0, P2.0].concat()[..]);
    }
    tshark_decodes_with(
        &out,
        &["eth:ethertype:ip:data", "eth:ethertype:ip:udp:data"],
        &[],
        false,
    );
    let r = n.worker.finish();
    r.frames_ok.unwrap();
    assert!(r.stats.conserved(), "{:?}", r.stats);
    assert_eq!(r.stats.originated, 2, "the request and the second fragment");
}

#[test]
fn an_unknown_ipv6_next_hop_is_resolved_by_neighbour_solicitation() {
    use wire::icmp::IcmpPacket;
    use wire::icmpv6::Icmpv6Repr;
    const GW: MacAddr = MacAddr([2, 0, 0, 0, 0x99, 6]);
    let mut n = node();
    let (port, ns) = n.send(0, &udp6("fd00:1::2", "fd00:6::1", 1000, 64, b"x")).unwrap();
    assert_eq!(port, 2);
    let m = parse(&ns).unwrap();
    let (me, group): (std::net::Ipv6Addr, std::net::Ipv6Addr) =
        ("fd00:f::1".parse().unwrap(), "ff02::1:ff00:9".parse().unwrap());
    assert_eq!(&ns[..6], &[0x33, 0x33, 0xff, 0, 0, 9]);
    let icmp = IcmpPacket::new_checked(&ns[usize::from(m.outer.l4)..], wire::Layer::Icmpv6).unwrap();
    let target = "fd00:f::9".parse().unwrap();
    assert_eq!(
        Icmpv6Repr::parse(&icmp, me, group).unwrap(),
        Icmpv6Repr::NeighborSolicit {
            target,
            lladdr: Some(P2)
        }
    );
    // The advertisement releases the packet.
    let mut ip6 = wire::ipv6::Ipv6Repr::new(target, me, IpProtocol::Icmpv6);
    ip6.hop_limit = 255;
    let na = frame(
        &[
            Header::Ethernet(EthernetRepr {
                src: GW,
                dst: P2,
                ethertype: EtherType::Ipv6,
            }),
            Header::Ipv6(ip6),
            Header::Icmpv6(Icmpv6Repr::NeighborAdvert {
                router: true,
                solicited: true,
                override_: true,
                target,
                lladdr: Some(GW),
            }),
        ],
        &[],
    )
    .unwrap();
    let (port, f) = n.send(2, &na).unwrap();
    assert_eq!((port, &f[..12]), (2, &[GW.0, P2.0].concat()[..]));
    assert_eq!(parse(&f).unwrap().outer.ttl, 63, "hop limit decremented");
    tshark_decodes(&[ns, f], &["eth:ethertype:ipv6:icmpv6", "eth:ethertype:ipv6:udp"]);
}

#[test]
fn a_next_hop_that_never_answers_costs_its_parked_packets_after_the_last_try() {
    let mut n = node_with(
        NeighborConfig {
            retry: std::time::Duration::from_millis(20),
            tries: 2,
            ..Default::default()
        },
        None,
    );
    assert!(n.links[0].inject(&udp(M1, P0, "10.0.1.2", "10.6.0.1", 1, 2, 64)));
    let start = Instant::now();
    let mut requests = 0;
    while n.drops(DropReason::NeighborUnresolved) == 0 && start.elapsed().as_secs() < 5 {
        n.worker.run_once();
        requests += take_all(&n, 2).len();
    }
    assert_eq!((requests, n.drops(DropReason::NeighborUnresolved)), (2, 1));
    let r = n.worker.finish();
    r.frames_ok.unwrap();
    assert!(r.stats.conserved(), "{:?}", r.stats);
}

#[test]
fn stopping_drops_what_is_parked_and_loses_no_frame() {
    let mut n = node();
    assert!(n.send(0, &udp(M1, P0, "10.0.1.2", "10.6.0.1", 1, 2, 64)).is_some());
    let r = n.worker.finish();
    r.frames_ok.unwrap();
    assert_eq!(r.stats.dropped_for(DropReason::NeighborUnresolved), 1);
    assert!(r.stats.conserved(), "{:?}", r.stats);
}

#[test]
fn learning_is_guarded_per_port_role() {
    const X: MacAddr = MacAddr([2, 0, 0, 0, 0x77, 7]);
    let mut n = node();
    // A fabric host asking for the router's address is learned (it will be answered).
    assert!(
        n.send(
            2,
            &arp(ArpOperation::Request, X, "192.0.2.50", MacAddr([0; 6]), "192.0.2.1")
        )
        .is_some()
    );
    // A workload cannot teach the router someone else's address.
    assert!(
        n.send(
            0,
            &arp(ArpOperation::Request, X, "10.0.2.2", MacAddr([0; 6]), "10.0.1.1")
        )
        .is_some()
    );
    // Nor can a gratuitous reply on the fabric.
    assert!(
        n.send(
            2,
            &arp(ArpOperation::Reply, X, "192.0.2.51", MacAddr::BROADCAST, "192.0.2.51")
        )
        .is_none()
    );
    let learned: Vec<_> = n.neighbors.snapshot().keys().copied().collect();
    assert_eq!(learned, [(2, ip("192.0.2.50"))]);
}

#[test]
fn a_flood_of_arp_requests_is_answered_but_learned_only_within_the_budget() {
    let mut n = node_with(
        NeighborConfig {
            learn_per_sec: 8,
            ..Default::default()
        },
        None,
    );
    let hosts = 200u32;
    for h in 0..hosts {
        let sender = format!("192.0.2.{}", 10 + h % 240);
        let mac = MacAddr([2, 0, 0, 1, (h >> 8) as u8, h as u8]);
        let (port, reply) = n
            .send(
                2,
                &arp(ArpOperation::Request, mac, &sender, MacAddr([0; 6]), "192.0.2.1"),
            )
            .expect("every request for the router's address is answered");
        assert_eq!((port, &reply[..6]), (2, &mac.0[..]));
    }
    // The test may straddle a second of the tables' clock: at most two seconds' budgets.
    let learned = n.neighbors.snapshot().len() as u64;
    assert!((8..=16).contains(&learned), "{learned} learned");
    assert_eq!(n.neighbors.throttled(), u64::from(hosts) - learned);
}

#[test]
fn ipv6_errors_time_exceeded_and_packet_too_big() {
    use wire::icmp::IcmpPacket;
    use wire::icmpv6::Icmpv6Repr;
    let mut n = node();
    let (me, gw): (std::net::Ipv6Addr, std::net::Ipv6Addr) =
        ("fd00:1::2".parse().unwrap(), "fd00:1::1".parse().unwrap());
    let check = |f: &[u8], want: Icmpv6Repr, quoted: usize| {
        assert_eq!(&f[..12], &[M1.0, P0.0].concat()[..]);
        let m = parse(f).unwrap();
        assert_eq!(
            (m.outer.key.src_ip(), m.outer.key.dst_ip()),
            (Some(IpAddr::V6(gw)), Some(IpAddr::V6(me)))
        );
        let icmp = IcmpPacket::new_checked(&f[usize::from(m.outer.l4)..], wire::Layer::Icmpv6).unwrap();
        assert_eq!(Icmpv6Repr::parse(&icmp, gw, me).unwrap(), want);
        assert_eq!(f.len(), 14 + 40 + 8 + quoted);
    };
    let expiring = udp6("fd00:1::2", "fd00:6::1", 7, 1, b"abc");
    let (port, te) = n.send(0, &expiring).unwrap();
    assert_eq!(port, 0);
    check(&te, Icmpv6Repr::TimeExceeded { code: 0 }, expiring.len() - 14);
    assert_eq!(&te[62..], &expiring[14..], "the whole packet quoted");
    // 1500 bytes into VXLAN over a 1500-byte underlay: too big, quoted up to 1280 bytes.
    let big = udp6("fd00:1::2", "fd00:9::5", 8, 64, &[0u8; 1452]);
    let (port, ptb) = n.send(0, &big).unwrap();
    assert_eq!(port, 0);
    check(&ptb, Icmpv6Repr::PacketTooBig { mtu: 1450 }, 1280 - 48);
    tshark_decodes(
        &[te, ptb],
        &["eth:ethertype:ipv6:icmpv6:ipv6:udp", "eth:ethertype:ipv6:icmpv6:ipv6"],
    );
}

/// An IPv4 route through an IPv6 next hop (RFC 5549/8950, as BGP unnumbered fabrics
/// announce them: a link-local address on the port): forwarded to that neighbour's MAC,
/// and with the neighbour unknown, resolved by neighbour discovery (not ARP).
#[test]
fn an_ipv4_route_through_an_ipv6_next_hop_goes_to_its_mac() {
    let mut n = node();
    let gw = ip("fe80::2");
    n.routes
        .set_nexthop(
            40,
            Nexthop::Interface {
                port: 1,
                gateway: Some(gw),
            },
        )
        .unwrap();
    n.routes.add_route(1, ip("10.20.0.0"), 16, 40).unwrap();
    n.routes.set_neighbor(
        1,
        gw,
        Neighbor {
            mac: M2,
            state: NeighborState::Reachable,
        },
    );
    n.routes.publish(&n.fib).unwrap();
    let (port, out) = n.send(0, &udp(M1, P0, "10.0.1.2", "10.20.0.5", 40000, 53, 64)).unwrap();
    assert_eq!(port, 1);
    assert_eq!(&out[0..6], &M2.0, "to the IPv6 next hop's MAC");
    assert_eq!(&out[12..14], &[0x08, 0x00], "still IPv4");
    // Another IPv6 next hop, not known yet: a neighbour solicitation for it goes out.
    let unknown = ip("fe80::3");
    n.routes
        .set_nexthop(
            40,
            Nexthop::Interface {
                port: 1,
                gateway: Some(unknown),
            },
        )
        .unwrap();
    n.routes.publish(&n.fib).unwrap();
    let (port, ns) = n.send(0, &udp(M1, P0, "10.0.1.2", "10.20.0.5", 40001, 53, 64)).unwrap();
    assert_eq!((port, &ns[12..14]), (1, &[0x86, 0xdd][..]), "IPv6 out of w2's port");
    assert_eq!((ns[20], ns[54]), (58, 135), "ICMPv6 neighbour solicitation");
    assert_eq!(
        &ns[62..78],
        &"fe80::3".parse::<std::net::Ipv6Addr>().unwrap().octets(),
        "for the next hop"
    );
}
