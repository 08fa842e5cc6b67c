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
        let code = [
            "import socket",
            "s = socket.socket()",
            "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)",
            &format!("s.bind(('0.0.0.0', {port}))"),
            "s.listen(8)",
            "while True:",
            "    c, _ = s.accept()",
            "    f = c.makefile('rwb', 0)",
            "    for l in f:",
            "        f.write(l)",
            "    c.close()",
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
