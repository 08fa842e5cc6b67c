//! End to end, real traffic: workloads in namespaces, vrouter nodes on AF_XDP, the
//! kernel's own ping, TCP, iperf3 and VXLAN device on the other side. As root.

use vrouter::DropReason;
use vrouter::fib::{Encap, FibBuilder, Nexthop};
use vrouter::lab::*;
use vrouter::policy::{Endpoint, EndpointId, PolicySet, RuleList};
use vrouter::wire::ethernet::MacAddr;
use vrouter::{MssClamp, NodeConfig, PortConfig, PortRole};

fn deny_tcp(port: u16) -> PolicySet {
    PolicySet::ingress_for(EndpointId(2), 1, vec![ip("10.0.2.2")], RuleList::deny_port(6, port))
}

/// `ping` with `args` in `ns`: whether it succeeded, and what it printed (both streams:
/// a local error goes to the second).
fn ping_with(ns: &Netns, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", ns.name(), "ping"])
        .args(args)
        .output()
        .unwrap();
    let text = [out.stdout, out.stderr].concat();
    (out.status.success(), String::from_utf8_lossy(&text).to_string())
}

/// A fabric port (underlay VRF 0) with the router's MAC `mac` and address `addr`.
fn fabric_port(mac: MacAddr, addr: &str) -> PortConfig {
    PortConfig {
        name: "fabric".into(),
        mac,
        mtu: 1500,
        addrs: vec![ip(addr)],
        vlan: None,
        role: PortRole::Fabric { vrf: 0 },
    }
}

#[test]
fn pure_l3_ping_tcp_and_policy() {
    let mut lab = L3Lab::new();
    assert!(ping(&lab.w1.ns, "10.0.2.2"), "w1 -> w2: {:?}", lab.node.stats());
    assert!(ping(&lab.w2.ns, "10.0.1.2"), "w2 -> w1");
    // IPv6: neighbour discovery for the gateway answered by vrouter, then routed.
    assert!(
        ping(&lab.w1.ns, &v6_of("10.0.2.2")),
        "w1 -> w2 over IPv6: {:?}",
        lab.node.stats()
    );
    assert!(ping(&lab.w2.ns, &v6_of("10.0.1.2")), "w2 -> w1 over IPv6");
    // TTL 1: the gateway answers "time exceeded" (what traceroute relies on).
    let (_, text) = ping_with(&lab.w1.ns, &["-c", "1", "-t", "1", "-W", "1", "10.0.2.2"]);
    assert!(
        text.contains("From 10.0.1.1") && text.contains("Time to live exceeded"),
        "{text}"
    );
    let _servers: Vec<Echo> = [5001, 5002, 5003].iter().map(|&p| Echo::start(&lab.w2.ns, p)).collect();
    let policy = lab.node.router.tables().policy.clone();
    policy.publish(&deny_tcp(5001)).unwrap();
    assert_eq!(tcp_rounds(&lab.w1.ns, "10.0.2.2", 5001, 3, &|| ()), 0, "denied port");
    assert_eq!(tcp_rounds(&lab.w1.ns, "10.0.2.2", 5002, 3, &|| ()), 3, "allowed port");
    // A new deny cuts an established connection: the first line is echoed, then the
    // operator denies 5003 and nothing more gets through.
    let got = tcp_rounds(&lab.w1.ns, "10.0.2.2", 5003, 4, &|| {
        policy.publish(&deny_tcp(5003)).unwrap();
    });
    assert_eq!(got, 1, "established connection cut by the new deny");
    assert!(lab.node.stats().dropped_for(DropReason::PolicyDenied) > 0);
    lab.node.stop().unwrap();
}

/// w1's policy admits TCP only, so no ICMP. Its UDP to a port w2 does not serve still
/// hears w2's kernel answer "port unreachable" (the connected socket's recv is refused),
/// as conntrack's RELATED would let it: the error is about w1's own allowed flow.
#[test]
fn icmp_errors_about_its_own_flows_reach_a_workload_that_admits_no_icmp() {
    let mut lab = L3Lab::new();
    let tcp_only = RuleList::allow_only(6);
    let w1 = PolicySet::ingress_for(EndpointId(1), 1, vec![ip("10.0.1.2")], tcp_only);
    lab.node.router.tables().policy.publish(&w1).unwrap();
    let script = "import socket\n\
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
        s.settimeout(2)\n\
        s.connect(('10.0.2.2', 9))\n\
        s.send(b'x')\n\
        try:\n    s.recv(10)\n    print('answered')\n\
        except ConnectionRefusedError:\n    print('refused')\n\
        except socket.timeout:\n    print('timeout')\n";
    let out = lab.w1.ns.exec(&["python3", "-c", script]).unwrap();
    let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(said, "refused", "{:?}", lab.node.stats());
    // A ping, which is no error, stays denied.
    assert!(!ping(&lab.w2.ns, "10.0.1.2"));
    lab.node.stop().unwrap();
}

#[test]
fn pure_l3_iperf3_both_ways() {
    let mut lab = L3Lab::new();
    for (server, client, dst) in [(&lab.w2, &lab.w1, "10.0.2.2"), (&lab.w1, &lab.w2, "10.0.1.2")] {
        let bps = iperf3(&server.ns, &client.ns, dst, 2).unwrap_or(0.0);
        assert!(bps > 1e6, "iperf3 to {dst}: {bps} bit/s");
    }
    lab.node.stop().unwrap();
}

/// Two nodes, two tenants with the same workload addresses, over `overlay` on an IPv4
/// or IPv6 underlay: each tenant reaches its own peer and nothing leaks to the other
/// tenant.
fn two_nodes(overlay: Overlay, v6: bool) {
    let mut lab = match v6 {
        false => OverlayLab::new(overlay, 2),
        true => OverlayLab::over_ipv6(overlay, 2),
    };
    let capture = Capture::start(&lab.wire, &lab.wire_a).unwrap();
    // Pings first, while nothing else moves: the other tenant's workload, which has the
    // same address on the other node, must receive nothing.
    for t in 0..2 {
        let other = &lab.b.1[1 - t];
        let dev = String::from_utf8_lossy(&other.ns.exec(&["ls", "/sys/class/net"]).unwrap().stdout)
            .split_whitespace()
            .find(|d| d.starts_with("va"))
            .unwrap()
            .to_string();
        let before = rx_packets(&other.ns, &dev);
        assert!(
            ping(&lab.a.1[t].ns, "10.2.0.2"),
            "tenant {t}: node 1 -> node 2: {:?} {:?}",
            lab.a.0.stats(),
            lab.b.0.stats()
        );
        assert!(ping(&lab.b.1[t].ns, "10.1.0.2"), "tenant {t}: node 2 -> node 1");
        assert_eq!(
            rx_packets(&other.ns, &dev),
            before,
            "nothing of tenant {t} reached the other tenant"
        );
    }
    // A TTL that runs out at node 2, after the tunnel: the time exceeded comes back
    // through the tunnel, from node 2's gateway address in the tenant's VRF.
    for t in 0..2 {
        let (_, text) = ping_with(&lab.a.1[t].ns, &["-c", "1", "-t", "2", "-W", "1", "10.2.0.2"]);
        assert!(
            text.contains("From 10.2.0.1") && text.contains("Time to live exceeded"),
            "tenant {t}: {text}"
        );
    }
    // Echoes larger than the tunnel carries, without don't-fragment, from workloads whose
    // link MTU (1500 here) does not leave room for the tunnel: the sender's kernel splits
    // them for its link, node 1 splits the first fragment again to fit the tunnel, node 2
    // sends the fragments on by the first one's decision, and the workload reassembles
    // them.
    for t in 0..2 {
        let w = &lab.a.1[t];
        w.ns.exec(&["ip", "link", "set", "dev", &w.dev, "mtu", "1500"]).unwrap();
        let big = [
            "ping", "-c", "3", "-i", "0.2", "-W", "1", "-M", "dont", "-s", "2000", "10.2.0.2",
        ];
        let out = w.ns.exec(&big);
        assert!(
            out.is_ok(),
            "tenant {t}: 2028-byte echoes: {out:?}\n{:?}\n{:?}",
            lab.a.0.stats(),
            lab.b.0.stats()
        );
    }
    for t in 0..2 {
        let _echo = Echo::start(&lab.b.1[t].ns, 7000 + t as u16);
        assert_eq!(
            tcp_rounds(&lab.a.1[t].ns, "10.2.0.2", 7000 + t as u16, 5, &|| ()),
            5,
            "tenant {t}: TCP"
        );
    }
    // Every tunnel packet on the underlay decodes cleanly in tshark, inner packet included.
    let tunnel = match overlay {
        Overlay::Vxlan => "udp:vxlan:eth:ethertype:ip:",
        Overlay::MplsUdp => "udp:mpls:ip:",
        Overlay::MplsGre => "gre:mpls:ip:",
    };
    let tunnel = format!("{}:{tunnel}", if v6 { "ipv6" } else { "ip" });
    let lines = capture.decode().unwrap();
    for line in &lines {
        let l = line.to_lowercase();
        assert!(
            !["malformed", "bad", "incorrect", "invalid"]
                .iter()
                .any(|w| l.contains(w)),
            "tshark complains: {line}"
        );
    }
    for inner in ["icmp", "tcp"] {
        let n = lines.iter().filter(|l| l.contains(&format!("{tunnel}{inner}"))).count();
        assert!(n >= 4, "{n} {tunnel}{inner} frames in {lines:#?}");
    }
    lab.a.0.stop().unwrap();
    lab.b.0.stop().unwrap();
}

/// Where the ICMP errors of path MTU discovery are lost (filtered here by nftables in the
/// sender's namespace), TCP segments longer than the tunnel carries vanish: a large
/// message between workloads whose links both have 1500 bytes stalls. With the nodes
/// lowering TCP SYNs' MSS to fit the tunnel, the same message goes through.
#[test]
fn mss_clamping_carries_tcp_through_a_tunnel_where_icmp_is_filtered() {
    for (clamp, through) in [(MssClamp::Off, false), (MssClamp::Path, true)] {
        let lab = OverlayLab::clamping(Overlay::Vxlan, 1, clamp);
        let (a, b) = (&lab.a.1[0], &lab.b.1[0]);
        for w in [a, b] {
            w.ns.exec(&["ip", "link", "set", "dev", &w.dev, "mtu", "1500"]).unwrap();
        }
        let filter = "add table inet f; add chain inet f in { type filter hook input priority 0; }; \
                      add rule inet f in icmp type destination-unreachable drop";
        a.ns.exec(&["nft", filter]).unwrap();
        let _echo = Echo::start(&b.ns, 7100);
        let answered = a.ns.run(|| {
            use std::io::{BufRead, BufReader, Write};
            let addr = std::net::SocketAddr::new("10.2.0.2".parse().unwrap(), 7100);
            let s = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2)).ok()?;
            s.set_read_timeout(Some(std::time::Duration::from_secs(3))).ok()?;
            (&s).write_all(&[b"x".repeat(6000), b"\n".to_vec()].concat()).ok()?;
            let mut line = String::new();
            BufReader::new(&s).read_line(&mut line).ok()?;
            Some(line.len())
        });
        assert_eq!(
            answered == Some(6001),
            through,
            "{clamp:?}: {answered:?} {:?} {:?}",
            lab.a.0.stats(),
            lab.b.0.stats()
        );
    }
}

#[test]
fn overlay_two_nodes_two_tenants_vxlan() {
    two_nodes(Overlay::Vxlan, false);
}

#[test]
fn overlay_two_nodes_two_tenants_mpls_over_udp() {
    two_nodes(Overlay::MplsUdp, false);
}

#[test]
fn overlay_two_nodes_two_tenants_mpls_over_gre() {
    two_nodes(Overlay::MplsGre, false);
}

#[test]
fn overlay_two_nodes_two_tenants_vxlan_over_ipv6() {
    two_nodes(Overlay::Vxlan, true);
}

#[test]
fn overlay_two_nodes_two_tenants_mpls_over_udp_over_ipv6() {
    two_nodes(Overlay::MplsUdp, true);
}

#[test]
fn overlay_two_nodes_two_tenants_mpls_over_gre_over_ipv6() {
    two_nodes(Overlay::MplsGre, true);
}

/// A Linux kernel VXLAN device (VNI 42, MAC `02:00:00:00:09:02`) in `linux`, between the
/// underlay addresses `(local, remote)`, with `options` added: 10.9.0.2/24 on it, and
/// vrouter's workload 10.0.1.2 behind it at vrouter's fabric MAC. Not bound to an
/// underlay device, so its MTU may be set above what the underlay carries.
fn linux_vtep(linux: &Netns, (local, remote): (&str, &str), options: &[&str]) {
    let mut add = vec![
        "ip", "link", "add", "vxlan0", "type", "vxlan", "id", "42", "local", local, "remote", remote, "dstport", "4789",
    ];
    add.extend(options);
    let out = linux.exec(&add).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    set_mac(linux, "vxlan0", MacAddr([2, 0, 0, 0, 9, 2]));
    for cmd in [
        &["ip", "addr", "add", "10.9.0.2/24", "dev", "vxlan0"][..],
        &["ip", "link", "set", "vxlan0", "up"],
        &["ip", "route", "add", "10.0.1.0/24", "dev", "vxlan0"],
        &[
            "ip",
            "neigh",
            "add",
            "10.0.1.2",
            "lladdr",
            "02:0a:00:00:09:01",
            "dev",
            "vxlan0",
            "nud",
            "permanent",
        ],
    ] {
        linux.exec(cmd).unwrap();
    }
}

/// vrouter's VXLAN against a Linux kernel `vxlan` device in another namespace, over an
/// IPv4 or an IPv6 underlay (where the kernel drops packets without a UDP checksum). The
/// device takes only inner frames to its own MAC: over IPv4 vrouter finds it in an
/// overlay neighbour entry for the workload behind it, over IPv6 as the tunnel's router
/// MAC. `zero`: over IPv6, both ends send a zero UDP checksum (RFC 6935; the device with
/// `udp6zerocsumtx udp6zerocsumrx`).
fn kernel_vxlan(v6: bool, zero: bool) {
    const LX: MacAddr = MacAddr([2, 0, 0, 0, 7, 7]);
    const FAB: MacAddr = MacAddr([2, 0xa, 0, 0, 9, 1]);
    const VX: MacAddr = MacAddr([2, 0, 0, 0, 9, 2]);
    let (here, there, net, len) = match v6 {
        false => ("192.0.2.1", "192.0.2.2", "192.0.2.0", 24),
        true => ("fd00:f::1", "fd00:f::2", "fd00:f::", 64),
    };
    let (node, linux) = (Netns::new("n").unwrap(), Netns::new("lx").unwrap());
    let mut b = FibBuilder::new();
    b.add_vrf(0).unwrap();
    b.add_vrf(1).unwrap();
    let (w1, p0) = workload(&node, "w", 1, 1, "10.0.1.2", "10.0.1.1", 0, &mut b, &[]);
    let u = Veth::new(&linux, &node, 1).unwrap();
    set_mac(&node, &u.b, FAB);
    set_mac(&linux, &u.a, LX);
    no_offloads(&linux, &u.a);
    add_address(&linux, &u.a, there, len);
    let zero_checksums: &[&str] = if zero {
        &["udp6zerocsumtx", "udp6zerocsumrx"]
    } else {
        &[]
    };
    linux_vtep(&linux, (there, here), zero_checksums);
    b.set_nexthop(2, Nexthop::Interface { port: 1, gateway: None }).unwrap();
    b.set_nexthop(
        3,
        Nexthop::Tunnel {
            encap: Encap::Vxlan { vni: 42 },
            src: ip(here),
            dst: ip(there),
            underlay_vrf: 0,
            router_mac: v6.then_some(VX),
            dscp: Default::default(),
            zero_udp_checksum: zero,
        },
    )
    .unwrap();
    b.add_route(1, ip("10.9.0.0"), 24, 3).unwrap();
    b.add_route(0, ip(net), len, 2).unwrap();
    b.set_vni(42, 1).unwrap();
    if !v6 {
        b.set_neighbor(
            vrouter::dataplane::pipeline::overlay_neighbor_port(42),
            ip("10.9.0.2"),
            neighbor(VX),
        );
    }
    let fabric = fabric_port(FAB, here);
    let config = NodeConfig {
        ports: vec![p0, fabric],
        tunnel_endpoints: vec![ip(here)],
        ..Default::default()
    };
    let mut n = Node::start(node, config, &[w1.port_dev.clone(), u.b.clone()], b, 0);
    assert!(ping(&w1.ns, "10.9.0.2"), "workload -> Linux VXLAN: {:?}", n.stats());
    // The Linux VTEP's underlay MAC was not configured: vrouter asked for it by ARP or
    // neighbour solicitation.
    let learned = n.router.tables().neighbors.snapshot();
    assert_eq!(learned.get(&(1, ip(there))).map(|l| l.mac), Some(LX));
    assert!(ping(&linux, "10.0.1.2"), "Linux VXLAN -> workload");
    let _echo = Echo::start(&linux, 6000);
    assert_eq!(tcp_rounds(&w1.ns, "10.9.0.2", 6000, 5, &|| ()), 5, "TCP through VXLAN");
    let _echo2 = Echo::start(&w1.ns, 6001);
    assert_eq!(tcp_rounds(&linux, "10.0.1.2", 6001, 5, &|| ()), 5, "TCP the other way");
    // Larger than the tunnel carries, without don't-fragment: vrouter splits the inner
    // packets to fit it, the Linux VTEP's stack reassembles them, and the fragments its
    // device makes of the replies come back through vrouter.
    let big = [
        "ping", "-c", "3", "-i", "0.2", "-W", "1", "-M", "dont", "-s", "2000", "10.9.0.2",
    ];
    let out = w1.ns.exec(&big);
    assert!(out.is_ok(), "2028-byte echoes: {out:?} {:?}", n.stats());
    n.stop().unwrap();
}

/// vrouter's VXLAN tunnel to a Linux VTEP across a Linux router: vrouter, its link to the
/// router (whose side of it carries `near` bytes, as vrouter's fabric port is told), the
/// router, and its link to the VTEP (both ends carrying `far`). vrouter's workload
/// 10.0.1.2 is `w`; the VTEP's address in the overlay is 10.9.0.2.
struct Routed {
    n: Node,
    w: Workload,
    _links: [Veth; 2],
    _router: Netns,
    linux: Netns,
}

fn routed_linux_vtep(near: u16, far: u16) -> Routed {
    const FAB: MacAddr = MacAddr([2, 0xa, 0, 0, 9, 1]);
    const VX: MacAddr = MacAddr([2, 0, 0, 0, 9, 2]);
    let (node, router, linux) = (
        Netns::new("n").unwrap(),
        Netns::new("rt").unwrap(),
        Netns::new("lx").unwrap(),
    );
    let mut b = FibBuilder::new();
    b.add_vrf(0).unwrap();
    b.add_vrf(1).unwrap();
    let (w, p0) = workload(&node, "w", 1, 1, "10.0.1.2", "10.0.1.1", 0, &mut b, &[]);
    let (near_link, far_link) = (
        Veth::new(&router, &node, 1).unwrap(),
        Veth::new(&linux, &router, 1).unwrap(),
    );
    set_mac(&node, &near_link.b, FAB);
    for (ns, dev) in [(&router, &near_link.a), (&router, &far_link.b), (&linux, &far_link.a)] {
        no_offloads(ns, dev);
    }
    add_address(&router, &near_link.a, "192.0.2.254", 24);
    add_address(&router, &far_link.b, "198.51.100.254", 24);
    add_address(&linux, &far_link.a, "198.51.100.2", 24);
    for (ns, dev, mtu) in [
        (&router, &near_link.a, near),
        (&router, &far_link.b, far),
        (&linux, &far_link.a, far),
    ] {
        ns.exec(&["ip", "link", "set", "dev", dev, "mtu", &mtu.to_string()])
            .unwrap();
    }
    router.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]).unwrap();
    linux
        .exec(&["ip", "route", "add", "192.0.2.0/24", "via", "198.51.100.254"])
        .unwrap();
    linux_vtep(&linux, ("198.51.100.2", "192.0.2.1"), &[]);
    let via_router = Nexthop::Interface {
        port: 1,
        gateway: Some(ip("192.0.2.254")),
    };
    b.set_nexthop(2, via_router).unwrap();
    b.add_route(0, ip("198.51.100.0"), 24, 2).unwrap();
    let tunnel = Nexthop::Tunnel {
        encap: Encap::Vxlan { vni: 42 },
        src: ip("192.0.2.1"),
        dst: ip("198.51.100.2"),
        underlay_vrf: 0,
        router_mac: None,
        dscp: Default::default(),
        zero_udp_checksum: false,
    };
    b.set_nexthop(3, tunnel).unwrap();
    b.add_route(1, ip("10.9.0.0"), 24, 3).unwrap();
    b.set_vni(42, 1).unwrap();
    let overlay = vrouter::dataplane::pipeline::overlay_neighbor_port(42);
    b.set_neighbor(overlay, ip("10.9.0.2"), neighbor(VX));
    let fabric = PortConfig {
        mtu: near,
        ..fabric_port(FAB, "192.0.2.1")
    };
    let config = NodeConfig {
        ports: vec![p0, fabric],
        tunnel_endpoints: vec![ip("192.0.2.1")],
        ..Default::default()
    };
    let n = Node::start(node, config, &[w.port_dev.clone(), near_link.b.clone()], b, 0);
    assert!(
        ping(&w.ns, "10.9.0.2"),
        "workload -> Linux VXLAN through the router: {:?}",
        n.stats()
    );
    Routed {
        n,
        w,
        _links: [near_link, far_link],
        _router: router,
        linux,
    }
}

/// A narrower link in the underlay: vrouter's VXLAN tunnel to a Linux VTEP crosses a
/// Linux router whose far link carries 1400 bytes. The router answers a tunnel packet too
/// big for it with "fragmentation needed" to vrouter's tunnel endpoint; vrouter lowers the
/// tunnel's path MTU and from then on answers the workload's don't-fragment packets with
/// the MTU the tunnel has left (1350), and the workload's smaller ones get through.
#[test]
fn an_underlay_router_lowers_a_tunnels_path_mtu() {
    // Bound whole: its namespaces and links live as long as it does.
    let mut r = routed_linux_vtep(1500, 1400);
    let (n, w) = (&mut r.n, &r.w);
    let echo = |size: &str| {
        let args = ["-c", "3", "-i", "0.3", "-W", "1", "-M", "do", "-s", size, "10.9.0.2"];
        ping_with(&w.ns, &args)
    };
    // 1428 bytes fit the tunnel as vrouter first sees it (1450 inner), not the router's
    // far link: the first is lost, and the router's error teaches vrouter, whose own
    // error reaches the workload for the next.
    let (ok, big) = echo("1400");
    assert!(!ok && big.contains("mtu = 1350"), "{big}\n{:?}", n.stats());
    let (ok, small) = echo("1300");
    assert!(ok, "1328 bytes fit the narrower path: {small}");
    assert_eq!(n.stats().count_of(vrouter::dataplane::Event::PathMtuLearned), 1);
    n.stop().unwrap();
}

/// The other way, through the same kind of router, whose link to vrouter is now the
/// narrower one: the Linux VTEP's tunnel packets leave it whole and without
/// don't-fragment (its default), and the router fragments them. vrouter puts each one
/// back together before it decapsulates it; its replies it splits to fit that link.
#[test]
fn tunnel_packets_an_underlay_router_fragmented_are_put_back_together() {
    let mut r = routed_linux_vtep(1400, 1500);
    let n = &mut r.n;
    let big = ["-c", "3", "-i", "0.3", "-W", "1", "-M", "do", "-s", "1400", "10.0.1.2"];
    let (ok, text) = ping_with(&r.linux, &big);
    assert!(ok, "1428-byte echoes from the Linux VTEP: {text}\n{:?}", n.stats());
    let s = n.stats();
    let rebuilt = s.count_of(vrouter::dataplane::Event::Reassembled);
    assert!(rebuilt >= 3, "{rebuilt} tunnel packets rebuilt: {s:?}");
    assert!(s.dropped_for(DropReason::FragmentMerged) >= rebuilt);
    assert_eq!(s.dropped_for(DropReason::ReassemblyTimeout), 0);
    n.stop().unwrap();
}

#[test]
fn vxlan_interoperates_with_the_linux_kernel() {
    kernel_vxlan(false, false);
}

#[test]
fn vxlan_over_ipv6_interoperates_with_the_linux_kernel() {
    kernel_vxlan(true, false);
}

#[test]
fn vxlan_over_ipv6_with_zero_udp_checksums_interoperates_with_the_linux_kernel() {
    kernel_vxlan(true, true);
}

/// A service address routed to an ECMP group of three backends: connections spread over
/// all three, each stays on one backend, and removing a backend leaves the others'
/// connections where they are.
#[test]
fn services_by_ecmp_spread_and_stick() {
    let mut lab = ServiceLab::new();
    let served = lab.spread(30).unwrap();
    assert_eq!(served.len(), 3, "connections spread over all backends: {served:?}");
    // Open connections until at least three sit on the backend that leaves and three
    // on the others (bounded: a fair hash gets there in about a dozen).
    let mut open: Vec<(Conn, String)> = Vec::new();
    let on_b2 = |open: &[(Conn, String)]| open.iter().filter(|(_, w)| w == "b2").count();
    while (on_b2(&open) < 3 || open.len() - on_b2(&open) < 3) && open.len() < 60 {
        let mut c = Conn::open(&lab.client.ns, SERVICE_VIP, SERVICE_PORT).expect("connect to the service");
        let who = c.ask().expect("an answer from the service");
        open.push((c, who));
    }
    assert!(
        on_b2(&open) >= 3,
        "connections on the backend that leaves: {}",
        on_b2(&open)
    );
    lab.node
        .routes
        .set_nexthop(SERVICE_NEXTHOP, ServiceLab::group(&[0, 1]))
        .unwrap();
    lab.node.routes.publish(&lab.node.fib).unwrap();
    for (c, who) in &mut open {
        let now = c.ask();
        if who != "b2" {
            assert_eq!(
                now.as_deref(),
                Some(who.as_str()),
                "connections on remaining backends stay put"
            );
        } else {
            assert_ne!(now.as_deref(), Some("b2"), "the removed backend gets nothing new");
        }
    }
    drop(open);
    assert!(!lab.spread(6).unwrap().contains_key("b2"));
    lab.node.stop().unwrap();
}

/// A backend's policy holds for the connections its service's hash sends it: with b1
/// denying the service port, connections to the service address reach b0 and b2 and
/// never b1, whose share is refused, counted.
#[test]
fn a_backend_that_denies_the_service_port_gets_none_of_its_connections() {
    let mut lab = ServiceLab::new();
    let backend = |i: u32| Endpoint {
        id: EndpointId(i + 1),
        vrf: 1,
        addrs: vec![ip(&format!("10.0.3.{}", i + 1)), ip(SERVICE_VIP)],
        ingress: (i == 1).then(|| std::sync::Arc::new(RuleList::deny_port(6, SERVICE_PORT))),
        egress: None,
    };
    let set = PolicySet {
        endpoints: (0..3).map(backend).collect(),
    };
    lab.node.router.tables().policy.publish(&set).unwrap();
    // Until each backend has had connections (bounded: a fair hash gets there in about
    // a dozen).
    let (mut served, mut refused) = (std::collections::HashMap::new(), 0);
    for _ in 0..40 {
        match Conn::open(&lab.client.ns, SERVICE_VIP, SERVICE_PORT).and_then(|mut c| c.ask()) {
            Some(who) => *served.entry(who).or_insert(0) += 1,
            None => refused += 1,
        }
        if refused >= 2 && served.len() >= 2 {
            break;
        }
    }
    assert!(!served.contains_key("b1"), "b1 denies the service port: {served:?}");
    assert!(served.contains_key("b0") && served.contains_key("b2"), "{served:?}");
    assert!(refused > 0, "the hash sends b1 its share, which is refused");
    let stats = lab.node.stop().unwrap();
    assert!(stats.dropped_for(DropReason::PolicyDenied) >= refused, "{stats:?}");
}

/// The exception path: the node's own address lives on a TAP device in the node's host
/// stack (OpenContrail's vhost0); a peer on the fabric reaches it through vrouter, and
/// the host's answers go back out through the TAP and vrouter.
#[test]
fn the_host_stack_is_reached_through_the_tap() {
    const PEER: MacAddr = MacAddr([2, 0, 0, 0, 8, 2]);
    const FAB: MacAddr = MacAddr([2, 0xa, 0, 0, 8, 1]);
    const HOST: MacAddr = MacAddr([2, 0, 0, 0, 8, 0x55]);
    const TAPSIDE: MacAddr = MacAddr([2, 0xa, 0, 0, 8, 0x56]);
    let (node, peer) = (Netns::new("n").unwrap(), Netns::new("p").unwrap());
    let v = Veth::new(&peer, &node, 1).unwrap();
    set_mac(&peer, &v.a, PEER);
    set_mac(&node, &v.b, FAB);
    no_offloads(&peer, &v.a);
    peer.exec(&["ip", "addr", "add", "192.0.2.2/24", "dev", &v.a]).unwrap();
    let mut b = FibBuilder::new();
    b.add_vrf(0).unwrap();
    b.set_nexthop(1, Nexthop::Interface { port: 0, gateway: None }).unwrap();
    b.add_route(0, ip("192.0.2.0"), 24, 1).unwrap();
    let tap = testnet::unique("vh");
    let ports = vec![
        fabric_port(FAB, "192.0.2.1"),
        PortConfig {
            name: tap.clone(),
            mac: TAPSIDE,
            mtu: 1500,
            addrs: vec![],
            vlan: None,
            role: PortRole::Host { vrf: 0, mac: HOST },
        },
    ];
    let config = NodeConfig {
        ports,
        ..Default::default()
    };
    let mut n = Node::start(node, config, &[v.b.clone(), tap.clone()], b, 0);
    // The host side of the TAP carries the node's address.
    set_mac(&n.ns, &tap, HOST);
    no_offloads(&n.ns, &tap);
    n.ns.exec(&["ip", "addr", "add", "192.0.2.1/24", "dev", &tap]).unwrap();
    n.ns.exec(&["ip", "link", "set", &tap, "up"]).unwrap();
    assert!(
        ping(&peer, "192.0.2.1"),
        "peer -> node's host stack through the TAP: {:?}",
        n.stats()
    );
    assert!(ping(&n.ns, "192.0.2.2"), "node's host stack -> peer");
    let learned = n.router.tables().neighbors.snapshot();
    assert_eq!(
        learned.get(&(0, ip("192.0.2.2"))).map(|l| l.mac),
        Some(PEER),
        "learned by ARP"
    );
    let _echo = Echo::start(&n.ns, 2222);
    assert_eq!(
        tcp_rounds(&peer, "192.0.2.1", 2222, 3, &|| ()),
        3,
        "TCP to the host stack"
    );
    n.stop().unwrap();
}
