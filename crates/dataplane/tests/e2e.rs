//! End to end, real traffic: workloads in namespaces, vrouter on AF_XDP in a node
//! namespace, the kernel's own ping, TCP and VXLAN device on the other side.

use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use af_xdp::{AttachMode, SocketConfig, Umem, UmemConfig, XdpProgram};
use dataplane::pipeline::{NodeConfig, OVERLAY_NEIGHBOR_PORT, Pipeline, PortConfig, PortRole, Tables};
use dataplane::*;
use fib::{Encap, Fib, FibBuilder, Neighbor, NeighborState, Nexthop};
use flow::{FlowTable, FlowTableConfig};
use policy::{Action, Endpoint, EndpointId, PolicySet, PolicyStore, PortRange, Rule, RuleId, RuleList};
use testnet::{Netns, Veth};
use wire::ethernet::MacAddr;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn mac_str(m: MacAddr) -> String {
    m.0.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

fn set_mac(ns: &Netns, dev: &str, m: MacAddr) {
    ns.exec(&["ip", "link", "set", "dev", dev, "address", &mac_str(m)])
        .unwrap();
}

/// Workload-side veths send finished frames: XDP sees bytes, not an skb with a checksum
/// left for hardware to fill in (what CNI plugins in front of AF_XDP do too).
fn no_offloads(ns: &Netns, dev: &str) {
    ns.exec(&["ethtool", "-K", dev, "tx", "off", "tso", "off", "gso", "off"])
        .unwrap();
}

fn neighbor(mac: MacAddr) -> Neighbor {
    Neighbor {
        mac,
        state: NeighborState::Reachable,
    }
}

/// Starts one worker in `node` over AF_XDP ports on `devs` (in port order).
fn start(node: &Netns, devs: &[String], tables: Tables) -> (WorkerSet, Vec<Arc<XdpProgram>>) {
    node.run(|| {
        let progs: Vec<Arc<XdpProgram>> = devs
            .iter()
            .map(|d| Arc::new(XdpProgram::attach(d, AttachMode::Native).unwrap()))
            .collect();
        let p = progs.clone();
        let cpu = *online_cpus().last().unwrap();
        let set = WorkerSet::start(&[cpu], move |_, _| {
            let e = |e: af_xdp::Error| e.to_string();
            let umem = Arc::new(Umem::new(UmemConfig::default()).map_err(e)?);
            let pool = FramePool::new(umem, p.len());
            let mut ports: Vec<AfXdpPort> = Vec::new();
            for prog in &p {
                let port = AfXdpPort::open(&pool, prog, 0, SocketConfig::default(), ports.first()).map_err(e)?;
                ports.push(port);
            }
            let ports = ports.into_iter().map(|p| Box::new(p) as Box<dyn Port>).collect();
            let pipeline = Pipeline::new(tables.clone()).ok_or("no flow reader")?;
            Ok(Worker::new(pool, ports, Box::new(pipeline)))
        })
        .unwrap();
        (set, progs)
    })
}

fn ping(ns: &Netns, dst: &str) -> bool {
    ns.exec(&["ping", "-c", "3", "-i", "0.2", "-W", "1", dst]).is_ok()
}

/// A TCP server in `ns` on `port` that echoes each line, started as a child we own.
struct Echo(std::process::Child);

impl Echo {
    fn start(ns: &Netns, port: u16) -> Echo {
        Self::named(ns, port, "")
    }

    /// Like `start`, but each echoed line is prefixed with `name` and a space (empty: no
    /// prefix); threaded, so connections can stay open side by side.
    fn named(ns: &Netns, port: u16, name: &str) -> Echo {
        let prefix = if name.is_empty() {
            String::new()
        } else {
            format!("{name} ")
        };
        let code = [
            "import socketserver",
            "class H(socketserver.StreamRequestHandler):",
            "    def handle(self):",
            "        for l in self.rfile:",
            &format!("            self.wfile.write(b'{prefix}' + l)"),
            "socketserver.ThreadingTCPServer.allow_reuse_address = True",
            "socketserver.ThreadingTCPServer.daemon_threads = True",
            &format!("socketserver.ThreadingTCPServer(('0.0.0.0', {port}), H).serve_forever()"),
        ]
        .join("\n");
        let c = Command::new("ip")
            .args(["netns", "exec", ns.name(), "python3", "-c", &code])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Python starts slowly on a busy 2-CPU machine: wait until it listens.
        let deadline = Instant::now() + Duration::from_secs(10);
        ns.run(|| {
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(Instant::now() < deadline, "echo server on port {port} did not start");
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Echo(c)
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        let _ = self.0.kill(); // the PID we started
        let _ = self.0.wait();
    }
}

/// In `ns`: connect to dst:port, send `rounds` lines with `pause` between them (calling
/// `between` after the first), report how many echoes came back within 1 s each.
fn tcp_rounds(ns: &Netns, dst: &str, port: u16, rounds: usize, mid: &(dyn Fn() + Sync)) -> usize {
    ns.run(|| {
        use std::io::{BufRead, BufReader, Write};
        let addr = std::net::SocketAddr::new(ip(dst), port);
        let Ok(s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
            return 0;
        };
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut w = s;
        let mut ok = 0;
        for k in 0..rounds {
            if k == 1 {
                mid();
            }
            if w.write_all(format!("line {k}\n").as_bytes()).is_err() {
                break;
            }
            let mut line = String::new();
            match r.read_line(&mut line) {
                Ok(n) if n > 0 => ok += 1,
                _ => break,
            }
        }
        ok
    })
}

struct L3 {
    w1: Netns,
    w2: Netns,
    node: Netns,
    set: Option<WorkerSet>,
    _progs: Vec<Arc<XdpProgram>>,
    policy: Arc<PolicyStore>,
}

const W1: MacAddr = MacAddr([2, 0, 0, 0, 1, 2]);
const W2: MacAddr = MacAddr([2, 0, 0, 0, 2, 2]);
const G1: MacAddr = MacAddr([2, 0xa, 0, 0, 1, 1]);
const G2: MacAddr = MacAddr([2, 0xa, 0, 0, 2, 1]);

/// Two workloads routed by vrouter (the Calico model: /32 routes, proxy-ARP gateway).
fn l3_world() -> L3 {
    let (w1, w2, node) = (
        Netns::new("w1").unwrap(),
        Netns::new("w2").unwrap(),
        Netns::new("n").unwrap(),
    );
    let (v1, v2) = (Veth::new(&w1, &node, 1).unwrap(), Veth::new(&w2, &node, 1).unwrap());
    for (ns, dev, m, addr, gw) in [
        (&w1, &v1.a, W1, "10.0.1.2/24", "10.0.1.1"),
        (&w2, &v2.a, W2, "10.0.2.2/24", "10.0.2.1"),
    ] {
        set_mac(ns, dev, m);
        ns.exec(&["ip", "addr", "add", addr, "dev", dev]).unwrap();
        ns.exec(&["ip", "route", "add", "default", "via", gw]).unwrap();
        no_offloads(ns, dev);
    }
    set_mac(&node, &v1.b, G1);
    set_mac(&node, &v2.b, G2);
    let fib = Arc::new(Fib::new());
    let mut b = FibBuilder::new();
    b.add_vrf(1).unwrap();
    b.set_nexthop(1, Nexthop::Interface { port: 0, gateway: None }).unwrap();
    b.set_nexthop(2, Nexthop::Interface { port: 1, gateway: None }).unwrap();
    b.add_route(1, ip("10.0.1.2"), 32, 1).unwrap();
    b.add_route(1, ip("10.0.2.2"), 32, 2).unwrap();
    b.set_neighbor(0, ip("10.0.1.2"), neighbor(W1));
    b.set_neighbor(1, ip("10.0.2.2"), neighbor(W2));
    b.publish(&fib).unwrap();
    let port = |name: &str, mac, addr: &str, wmac, gw: &str| PortConfig {
        name: name.into(),
        mac,
        mtu: 1500,
        addrs: vec![],
        role: PortRole::Workload {
            vrf: 1,
            addrs: vec![ip(addr)],
            mac: wmac,
            gateways: vec![ip(gw)],
        },
    };
    let cfg = NodeConfig {
        ports: vec![
            port("w1", G1, "10.0.1.2", W1, "10.0.1.1"),
            port("w2", G2, "10.0.2.2", W2, "10.0.2.1"),
        ],
        tunnel_endpoints: vec![],
    };
    let policy = Arc::new(PolicyStore::new());
    let tables = Tables {
        fib,
        policy: policy.clone(),
        flows: Arc::new(FlowTable::new(FlowTableConfig::with_capacity(1 << 16)).unwrap()),
        node: Arc::new(cfg),
        epoch: Instant::now(),
    };
    let (set, progs) = start(&node, &[v1.b.clone(), v2.b.clone()], tables);
    L3 {
        w1,
        w2,
        node,
        set: Some(set),
        _progs: progs,
        policy,
    }
}

impl L3 {
    fn stop(&mut self) -> Vec<WorkerReport> {
        let r = self.set.take().unwrap().stop();
        for w in &r {
            assert!(w.frames_ok.is_ok(), "{:?}", w.frames_ok);
            assert_eq!(
                w.stats.rx,
                w.stats.tx + w.stats.dropped(),
                "packets conserved: {:?}",
                w.stats
            );
        }
        r
    }
}

fn deny_tcp(port: u16) -> PolicySet {
    let list = Arc::new(RuleList {
        rules: vec![Rule {
            proto: Some(6),
            dst_ports: Some(PortRange::single(port)),
            ..Rule::any(RuleId(1), Action::Deny)
        }],
        default: Action::Allow,
    });
    PolicySet {
        endpoints: vec![Endpoint {
            id: EndpointId(2),
            vrf: 1,
            addrs: vec![ip("10.0.2.2")],
            ingress: Some(list),
            egress: None,
        }],
    }
}

#[test]
fn pure_l3_ping_tcp_and_policy() {
    let mut w = l3_world();
    let ok = ping(&w.w1, "10.0.2.2");
    assert!(ok, "w1 -> w2: {:?}", w.set.as_ref().unwrap().stats());
    assert!(ping(&w.w2, "10.0.1.2"), "w2 -> w1");
    let _e1 = Echo::start(&w.w2, 5001);
    let _e2 = Echo::start(&w.w2, 5002);
    let _e3 = Echo::start(&w.w2, 5003);
    w.policy.publish(&deny_tcp(5001)).unwrap();
    assert_eq!(tcp_rounds(&w.w1, "10.0.2.2", 5001, 3, &|| ()), 0, "denied port");
    assert_eq!(tcp_rounds(&w.w1, "10.0.2.2", 5002, 3, &|| ()), 3, "allowed port");
    // A new deny cuts an established connection: the first line is echoed, then the
    // operator denies 5003 and nothing more gets through.
    let policy = w.policy.clone();
    let got = tcp_rounds(&w.w1, "10.0.2.2", 5003, 4, &|| {
        policy.publish(&deny_tcp(5003)).unwrap();
    });
    assert_eq!(got, 1, "established connection cut by the new deny");
    let drops: u64 = w
        .set
        .as_ref()
        .unwrap()
        .stats()
        .iter()
        .map(|s| s.dropped_for(DropReason::PolicyDenied))
        .sum();
    assert!(drops > 0);
    let _ = &w.node;
    w.stop();
}

#[test]
fn pure_l3_iperf3_both_ways() {
    if Command::new("iperf3").arg("--version").output().is_err() {
        panic!("iperf3 missing (scripts/test installs it)");
    }
    let mut w = l3_world();
    for (server, client, dst) in [(&w.w2, &w.w1, "10.0.2.2"), (&w.w1, &w.w2, "10.0.1.2")] {
        let mut s = Command::new("ip")
            .args(["netns", "exec", server.name(), "iperf3", "-s", "-1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let out = client.exec(&["iperf3", "-c", dst, "-t", "2", "-J"]);
        let _ = s.kill();
        let _ = s.wait();
        let out = out.unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let bps = text
            .split("\"sum_received\"")
            .nth(1)
            .and_then(|t| t.split("\"bits_per_second\":").nth(1))
            .and_then(|t| t.split([',', '}']).next())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        assert!(bps > 1e6, "iperf3 to {dst}: {bps} bit/s");
    }
    w.stop();
}

/// vrouter's VXLAN against a Linux kernel `vxlan` device in another namespace.
#[test]
fn vxlan_interoperates_with_the_linux_kernel() {
    let (w1, node, linux) = (
        Netns::new("w1").unwrap(),
        Netns::new("n").unwrap(),
        Netns::new("lx").unwrap(),
    );
    let v1 = Veth::new(&w1, &node, 1).unwrap();
    let u = Veth::new(&linux, &node, 1).unwrap();
    const LX: MacAddr = MacAddr([2, 0, 0, 0, 7, 7]);
    const FAB: MacAddr = MacAddr([2, 0xa, 0, 0, 9, 1]);
    const VX: MacAddr = MacAddr([2, 0, 0, 0, 9, 2]);
    set_mac(&w1, &v1.a, W1);
    no_offloads(&w1, &v1.a);
    no_offloads(&linux, &u.a);
    w1.exec(&["ip", "addr", "add", "10.0.1.2/24", "dev", &v1.a]).unwrap();
    w1.exec(&["ip", "route", "add", "default", "via", "10.0.1.1"]).unwrap();
    set_mac(&node, &v1.b, G1);
    set_mac(&node, &u.b, FAB);
    set_mac(&linux, &u.a, LX);
    linux.exec(&["ip", "addr", "add", "192.0.2.2/24", "dev", &u.a]).unwrap();
    linux
        .exec(&[
            "ip",
            "link",
            "add",
            "vxlan0",
            "type",
            "vxlan",
            "id",
            "42",
            "local",
            "192.0.2.2",
            "remote",
            "192.0.2.1",
            "dstport",
            "4789",
            "dev",
            &u.a,
        ])
        .unwrap();
    set_mac(&linux, "vxlan0", VX);
    linux
        .exec(&["ip", "addr", "add", "10.9.0.2/24", "dev", "vxlan0"])
        .unwrap();
    linux.exec(&["ip", "link", "set", "vxlan0", "up"]).unwrap();
    linux
        .exec(&["ip", "route", "add", "10.0.1.0/24", "dev", "vxlan0"])
        .unwrap();
    linux
        .exec(&[
            "ip",
            "neigh",
            "add",
            "10.0.1.2",
            "lladdr",
            &mac_str(FAB),
            "dev",
            "vxlan0",
            "nud",
            "permanent",
        ])
        .unwrap();

    let fib = Arc::new(Fib::new());
    let mut b = FibBuilder::new();
    b.add_vrf(0).unwrap();
    b.add_vrf(1).unwrap();
    b.set_nexthop(1, Nexthop::Interface { port: 0, gateway: None }).unwrap();
    b.set_nexthop(2, Nexthop::Interface { port: 1, gateway: None }).unwrap();
    b.set_nexthop(
        3,
        Nexthop::Tunnel {
            encap: Encap::Vxlan { vni: 42 },
            src: ip("192.0.2.1"),
            dst: ip("192.0.2.2"),
            underlay_vrf: 0,
        },
    )
    .unwrap();
    b.add_route(1, ip("10.0.1.2"), 32, 1).unwrap();
    b.add_route(1, ip("10.9.0.0"), 24, 3).unwrap();
    b.add_route(0, ip("192.0.2.0"), 24, 2).unwrap();
    b.set_vni(42, 1).unwrap();
    b.set_neighbor(0, ip("10.0.1.2"), neighbor(W1));
    b.set_neighbor(1, ip("192.0.2.2"), neighbor(LX));
    b.set_neighbor(OVERLAY_NEIGHBOR_PORT, ip("10.9.0.2"), neighbor(VX));
    b.publish(&fib).unwrap();
    let cfg = NodeConfig {
        ports: vec![
            PortConfig {
                name: "w1".into(),
                mac: G1,
                mtu: 1500,
                addrs: vec![],
                role: PortRole::Workload {
                    vrf: 1,
                    addrs: vec![ip("10.0.1.2")],
                    mac: W1,
                    gateways: vec![ip("10.0.1.1")],
                },
            },
            PortConfig {
                name: "fabric".into(),
                mac: FAB,
                mtu: 1500,
                addrs: vec![ip("192.0.2.1")],
                role: PortRole::Fabric { vrf: 0 },
            },
        ],
        tunnel_endpoints: vec![ip("192.0.2.1")],
    };
    let tables = Tables {
        fib,
        policy: Arc::new(PolicyStore::new()),
        flows: Arc::new(FlowTable::new(FlowTableConfig::with_capacity(1 << 16)).unwrap()),
        node: Arc::new(cfg),
        epoch: Instant::now(),
    };
    let (set, _progs) = start(&node, &[v1.b.clone(), u.b.clone()], tables);
    assert!(ping(&w1, "10.9.0.2"), "workload -> Linux VXLAN: {:?}", set.stats());
    assert!(ping(&linux, "10.0.1.2"), "Linux VXLAN -> workload");
    let _echo = Echo::start(&linux, 6000);
    assert_eq!(
        tcp_rounds(&w1, "10.9.0.2", 6000, 5, &|| ()),
        5,
        "TCP through VXLAN: {:?}",
        set.stats()
    );
    let _echo2 = Echo::start(&w1, 6001);
    assert_eq!(tcp_rounds(&linux, "10.0.1.2", 6001, 5, &|| ()), 5, "TCP the other way");
    for r in set.stop() {
        assert!(r.frames_ok.is_ok(), "{:?}", r.frames_ok);
        assert_eq!(r.stats.rx, r.stats.tx + r.stats.dropped());
    }
}

/// Which overlay the two-node tests run.
#[derive(Clone, Copy)]
enum Overlay {
    Vxlan,
    MplsUdp,
    MplsGre,
}

/// One vrouter node of the overlay tests: two tenants' workloads with the same address
/// (10.N.0.2 in VRF 1 and in VRF 2) and a fabric port.
struct OverlayNode {
    ns: Netns,
    tenants: [Netns; 2],
    devs: [String; 2],
}

fn overlay_node(n: u8, peer: u8, fabric_dev: &str, ns: Netns, overlay: Overlay) -> (OverlayNode, Tables) {
    let tenants = [Netns::new("t1").unwrap(), Netns::new("t2").unwrap()];
    let mut devs = [String::new(), String::new()];
    let mut ports = Vec::new();
    let fib = Arc::new(Fib::new());
    let mut b = FibBuilder::new();
    b.add_vrf(0).unwrap();
    let underlay = |x: u8| ip(&format!("192.0.2.{x}"));
    let fab_mac = |x: u8| MacAddr([2, 0xf, 0, 0, 0, x]);
    for (t, tenant) in tenants.iter().enumerate() {
        let vrf = t as u32 + 1;
        let v = Veth::new(tenant, &ns, 1).unwrap();
        let wmac = MacAddr([2, 0, 0, n, t as u8, 2]);
        let gmac = MacAddr([2, 0xa, 0, n, t as u8, 1]);
        set_mac(tenant, &v.a, wmac);
        set_mac(&ns, &v.b, gmac);
        no_offloads(tenant, &v.a);
        let addr = format!("10.{n}.0.2");
        tenant
            .exec(&["ip", "addr", "add", &format!("{addr}/24"), "dev", &v.a])
            .unwrap();
        tenant
            .exec(&["ip", "route", "add", "default", "via", &format!("10.{n}.0.1")])
            .unwrap();
        ports.push(PortConfig {
            name: format!("t{t}"),
            mac: gmac,
            mtu: 1500,
            addrs: vec![],
            role: PortRole::Workload {
                vrf,
                addrs: vec![ip(&addr)],
                mac: wmac,
                gateways: vec![ip(&format!("10.{n}.0.1"))],
            },
        });
        b.add_vrf(vrf).unwrap();
        let local = 10 + vrf;
        let remote = 20 + vrf;
        b.set_nexthop(
            local,
            Nexthop::Interface {
                port: t as u32,
                gateway: None,
            },
        )
        .unwrap();
        b.add_route(vrf, ip(&addr), 32, local).unwrap();
        b.set_neighbor(t as u32, ip(&addr), neighbor(wmac));
        // Tenant id in the tunnel: VNI 100+vrf, label 1000+vrf.
        let encap = match overlay {
            Overlay::Vxlan => Encap::Vxlan { vni: 100 + vrf },
            Overlay::MplsUdp => Encap::MplsOverUdp { label: 1000 + vrf },
            Overlay::MplsGre => Encap::MplsOverGre { label: 1000 + vrf },
        };
        b.set_nexthop(
            remote,
            Nexthop::Tunnel {
                encap,
                src: underlay(n),
                dst: underlay(peer),
                underlay_vrf: 0,
            },
        )
        .unwrap();
        b.add_route(vrf, ip(&format!("10.{peer}.0.2")), 32, remote).unwrap();
        b.set_vni(100 + vrf, vrf).unwrap();
        b.set_label(1000 + vrf, local).unwrap();
        // The pair lives as long as the namespaces holding its ends.
        devs[t] = v.b;
    }
    b.set_nexthop(1, Nexthop::Interface { port: 2, gateway: None }).unwrap();
    b.add_route(0, ip("192.0.2.0"), 24, 1).unwrap();
    b.set_neighbor(2, underlay(peer), neighbor(fab_mac(peer)));
    b.publish(&fib).unwrap();
    set_mac(&ns, fabric_dev, fab_mac(n));
    ports.push(PortConfig {
        name: "fabric".into(),
        mac: fab_mac(n),
        mtu: 1500,
        addrs: vec![underlay(n)],
        role: PortRole::Fabric { vrf: 0 },
    });
    let tables = Tables {
        fib,
        policy: Arc::new(PolicyStore::new()),
        flows: Arc::new(FlowTable::new(FlowTableConfig::with_capacity(1 << 16)).unwrap()),
        node: Arc::new(NodeConfig {
            ports,
            tunnel_endpoints: vec![underlay(n)],
        }),
        epoch: Instant::now(),
    };
    (OverlayNode { ns, tenants, devs }, tables)
}

fn rx_packets(ns: &Netns, dev: &str) -> u64 {
    let out = ns
        .exec(&["cat", &format!("/sys/class/net/{dev}/statistics/rx_packets")])
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Two vrouter nodes, two tenants each with the same workload addresses, over `overlay`:
/// each tenant reaches its own peer (ping and TCP both ways) and nothing leaks to the
/// other tenant.
fn two_nodes(overlay: Overlay) {
    let (na, nb) = (Netns::new("na").unwrap(), Netns::new("nb").unwrap());
    let fabric = Veth::new(&na, &nb, 1).unwrap();
    let (a, ta) = overlay_node(1, 2, &fabric.a, na, overlay);
    let (b, tb) = overlay_node(2, 1, &fabric.b, nb, overlay);
    let (sa, _pa) = start(&a.ns, &[a.devs[0].clone(), a.devs[1].clone(), fabric.a.clone()], ta);
    let (sb, _pb) = start(&b.ns, &[b.devs[0].clone(), b.devs[1].clone(), fabric.b.clone()], tb);
    let workload_dev = |ns: &Netns| {
        String::from_utf8_lossy(&ns.exec(&["ls", "/sys/class/net"]).unwrap().stdout)
            .split_whitespace()
            .find(|d| d.starts_with("va"))
            .unwrap()
            .to_string()
    };
    // Pings first, while nothing else moves: the other tenant's workload, which has the
    // same address on the other node, must receive nothing.
    for t in 0..2 {
        let other = 1 - t;
        let dev = workload_dev(&b.tenants[other]);
        let before = rx_packets(&b.tenants[other], &dev);
        assert!(
            ping(&a.tenants[t], "10.2.0.2"),
            "tenant {t}: node 1 -> node 2: {:?} {:?}",
            sa.stats(),
            sb.stats()
        );
        assert!(ping(&b.tenants[t], "10.1.0.2"), "tenant {t}: node 2 -> node 1");
        assert_eq!(
            rx_packets(&b.tenants[other], &dev),
            before,
            "nothing of tenant {t} reached tenant {other}"
        );
    }
    for t in 0..2 {
        let _echo = Echo::start(&b.tenants[t], 7000 + t as u16);
        assert_eq!(
            tcp_rounds(&a.tenants[t], "10.2.0.2", 7000 + t as u16, 5, &|| ()),
            5,
            "tenant {t}: TCP"
        );
    }
    for r in sa.stop().into_iter().chain(sb.stop()) {
        assert!(r.frames_ok.is_ok(), "{:?}", r.frames_ok);
        assert_eq!(r.stats.rx, r.stats.tx + r.stats.dropped(), "{:?}", r.stats);
    }
}

#[test]
fn overlay_two_nodes_two_tenants_vxlan() {
    two_nodes(Overlay::Vxlan);
}

#[test]
fn overlay_two_nodes_two_tenants_mpls_over_udp() {
    two_nodes(Overlay::MplsUdp);
}

#[test]
fn overlay_two_nodes_two_tenants_mpls_over_gre() {
    two_nodes(Overlay::MplsGre);
}

/// A line-based TCP client that keeps its connection: sends a line, returns the reply.
struct Conn {
    r: std::io::BufReader<std::net::TcpStream>,
    w: std::net::TcpStream,
}

impl Conn {
    fn open(ns: &Netns, dst: &str, port: u16) -> Option<Conn> {
        ns.run(|| {
            let s =
                std::net::TcpStream::connect_timeout(&std::net::SocketAddr::new(ip(dst), port), Duration::from_secs(2))
                    .ok()?;
            s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
            Some(Conn {
                r: std::io::BufReader::new(s.try_clone().unwrap()),
                w: s,
            })
        })
    }

    /// The backend name that answered, or `None` if the connection no longer works.
    fn ask(&mut self) -> Option<String> {
        use std::io::{BufRead, Write};
        self.w.write_all(b"hello\n").ok()?;
        let mut line = String::new();
        match self.r.read_line(&mut line) {
            Ok(n) if n > 0 => line.split_whitespace().next().map(str::to_string),
            _ => None,
        }
    }
}

/// A service address routed to an ECMP group of three backends (kube-proxy's job done by
/// routing): connections spread over all three, each stays on one backend, and removing
/// a backend moves only the connections it had.
#[test]
fn services_by_ecmp_spread_and_stick() {
    const VIP: &str = "10.96.0.10";
    let client = Netns::new("c").unwrap();
    let node = Netns::new("n").unwrap();
    let backends: Vec<Netns> = (0..3).map(|_| Netns::new("b").unwrap()).collect();
    let mut devs = Vec::new();
    let mut ports = Vec::new();
    let fib = Arc::new(Fib::new());
    let mut b = FibBuilder::new();
    b.add_vrf(1).unwrap();
    let all: Vec<(&Netns, String)> = std::iter::once((&client, "10.0.1.2".to_string()))
        .chain(
            backends
                .iter()
                .enumerate()
                .map(|(i, ns)| (ns, format!("10.0.3.{}", i + 1))),
        )
        .collect();
    for (i, (ns, addr)) in all.iter().enumerate() {
        let v = Veth::new(ns, &node, 1).unwrap();
        let wmac = MacAddr([2, 0, 0, 3, i as u8, 2]);
        let gmac = MacAddr([2, 0xa, 0, 3, i as u8, 1]);
        set_mac(ns, &v.a, wmac);
        set_mac(&node, &v.b, gmac);
        no_offloads(ns, &v.a);
        let gw = if i == 0 { "10.0.1.1" } else { "10.0.3.254" };
        ns.exec(&["ip", "addr", "add", &format!("{addr}/24"), "dev", &v.a])
            .unwrap();
        ns.exec(&["ip", "route", "add", "default", "via", gw]).unwrap();
        let mut owned = vec![ip(addr)];
        if i > 0 {
            // Every backend owns the service address (the OpenContrail ECMP service model).
            ns.exec(&["ip", "addr", "add", &format!("{VIP}/32"), "dev", &v.a])
                .unwrap();
            owned.push(ip(VIP));
            b.set_neighbor(i as u32, ip(VIP), neighbor(wmac));
        }
        b.set_nexthop(
            10 + i as u32,
            Nexthop::Interface {
                port: i as u32,
                gateway: None,
            },
        )
        .unwrap();
        b.add_route(1, ip(addr), 32, 10 + i as u32).unwrap();
        b.set_neighbor(i as u32, ip(addr), neighbor(wmac));
        ports.push(PortConfig {
            name: format!("p{i}"),
            mac: gmac,
            mtu: 1500,
            addrs: vec![],
            role: PortRole::Workload {
                vrf: 1,
                addrs: owned,
                mac: wmac,
                gateways: vec![ip(gw)],
            },
        });
        devs.push(v.b);
    }
    let group = |members: &[u32]| Nexthop::Ecmp {
        members: members.iter().map(|&m| (m, 1)).collect(),
    };
    b.set_nexthop(50, group(&[11, 12, 13])).unwrap();
    b.add_route(1, ip(VIP), 32, 50).unwrap();
    b.publish(&fib).unwrap();
    let tables = Tables {
        fib: fib.clone(),
        policy: Arc::new(PolicyStore::new()),
        flows: Arc::new(FlowTable::new(FlowTableConfig::with_capacity(1 << 16)).unwrap()),
        node: Arc::new(NodeConfig {
            ports,
            tunnel_endpoints: vec![],
        }),
        epoch: Instant::now(),
    };
    let (set, _progs) = start(&node, &devs, tables);
    let _servers: Vec<Echo> = backends
        .iter()
        .enumerate()
        .map(|(i, ns)| Echo::named(ns, 8080, &format!("b{i}")))
        .collect();

    // Many short connections: all three backends serve, each connection one backend.
    let mut served = std::collections::HashMap::new();
    for _ in 0..30 {
        let mut c = Conn::open(&client, VIP, 8080).expect("connect to the service");
        let first = c.ask().expect("answered");
        for _ in 0..3 {
            assert_eq!(
                c.ask().as_deref(),
                Some(first.as_str()),
                "a connection stays on its backend"
            );
        }
        *served.entry(first).or_insert(0) += 1;
    }
    assert_eq!(served.len(), 3, "connections spread over all backends: {served:?}");

    // Long-lived connections, then backend 2 leaves the group.
    let mut open: Vec<(Conn, String)> = Vec::new();
    while open.len() < 12 {
        let mut c = Conn::open(&client, VIP, 8080).unwrap();
        let who = c.ask().unwrap();
        open.push((c, who));
    }
    assert!(
        open.iter().any(|(_, w)| w == "b2"),
        "some connection on the backend that leaves"
    );
    b.set_nexthop(50, group(&[11, 12])).unwrap();
    b.publish(&fib).unwrap();
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
    let mut fresh = Conn::open(&client, VIP, 8080).unwrap();
    assert_ne!(fresh.ask().as_deref(), Some("b2"));
    drop(open);
    for r in set.stop() {
        assert!(r.frames_ok.is_ok(), "{:?}", r.frames_ok);
        assert_eq!(r.stats.rx, r.stats.tx + r.stats.dropped());
    }
}
