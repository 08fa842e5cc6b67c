//! Namespace labs: small networks of Linux network namespaces with vrouter nodes and
//! workloads, built with real veth pairs and removed when dropped. The `vrouter demo`
//! command and the end-to-end tests run on them. Needs root.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use af_xdp::AttachMode;
use fib::{Encap, Fib, FibBuilder, Neighbor, NeighborState, Nexthop};
pub use testnet::{Netns, Reaped, Veth, is_root};
use wire::ethernet::MacAddr;

use crate::{MssClamp, NodeConfig, PortConfig, PortRole, Router, Running, Stats};

/// Parses an address literal.
pub fn ip(s: &str) -> IpAddr {
    s.parse().expect("address literal")
}

fn mac_str(m: MacAddr) -> String {
    m.0.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// Sets an interface's MAC.
pub fn set_mac(ns: &Netns, dev: &str, m: MacAddr) {
    ns.exec(&["ip", "link", "set", "dev", dev, "address", &mac_str(m)])
        .expect("set MAC");
}

/// Workload-side veths send finished frames: XDP sees bytes, not an skb with a checksum
/// left for hardware to fill in (what CNI plugins in front of AF_XDP do too).
pub fn no_offloads(ns: &Netns, dev: &str) {
    ns.exec(&["ethtool", "-K", dev, "tx", "off", "tso", "off", "gso", "off"])
        .expect("ethtool (apt install ethtool)");
}

/// A reachable neighbour entry.
pub fn neighbor(mac: MacAddr) -> Neighbor {
    Neighbor {
        mac,
        state: NeighborState::Reachable,
    }
}

/// Gives `dev` in `ns` the address `addr/len`; an IPv6 one turns IPv6 on for the device
/// ([`Netns::new`] turns it off) and skips duplicate address detection, so it is usable at
/// once.
pub fn add_address(ns: &Netns, dev: &str, addr: &str, len: u8) {
    if ip(addr).is_ipv6() {
        ns.exec(&["sysctl", "-qw", &format!("net.ipv6.conf.{dev}.disable_ipv6=0")])
            .expect("ipv6 on");
    }
    ns.exec(&["ip", "addr", "add", &format!("{addr}/{len}"), "dev", dev, "nodad"])
        .expect("address");
}

/// `ping -c 3` succeeds.
pub fn ping(ns: &Netns, dst: &str) -> bool {
    ping_rtt(ns, dst, 3).is_some()
}

/// Average round-trip time in ms of `count` pings, if all came back.
pub fn ping_rtt(ns: &Netns, dst: &str, count: u32) -> Option<f64> {
    let out = ns
        .exec(&["ping", "-c", &count.to_string(), "-i", "0.2", "-W", "1", dst])
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.contains("min/avg/max"))?
        .split('=')
        .nth(1)?
        .split('/')
        .nth(1)?
        .trim()
        .parse()
        .ok()
}

/// Runs iperf3 for `secs` from `client` to a one-shot server in `server`; bits/s received.
pub fn iperf3(server: &Netns, client: &Netns, dst: &str, secs: u32) -> Option<f64> {
    let mut s = Command::new("ip")
        .args(["netns", "exec", server.name(), "iperf3", "-s", "-1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    std::thread::sleep(Duration::from_millis(300));
    let out = client.exec(&["iperf3", "-c", dst, "-t", &secs.to_string(), "-J"]);
    let _ = s.kill(); // the PID we started
    let _ = s.wait();
    let text = String::from_utf8_lossy(&out.ok()?.stdout).to_string();
    text.split("\"sum_received\"")
        .nth(1)?
        .split("\"bits_per_second\":")
        .nth(1)?
        .split([',', '}'])
        .next()?
        .trim()
        .parse()
        .ok()
}

/// A `tcpdump` capture of one interface in a namespace, to a pcap file: what the wire
/// carried, read back by a decoder we did not write. Stopped (and the file removed) on drop.
pub struct Capture {
    child: Child,
    path: std::path::PathBuf,
}

impl Capture {
    /// Starts capturing `dev` in `ns`; returns once tcpdump listens.
    pub fn start(ns: &Netns, dev: &str) -> Result<Capture, String> {
        let path = std::env::temp_dir().join(format!("{}.pcap", testnet::unique("cap")));
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns.name(),
                "tcpdump",
                "--immediate-mode",
                "-p",
                "-U",
                "-n",
                "-i",
                dev,
                "-w",
            ])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("tcpdump: {e}"))?;
        let stderr = child.stderr.take().ok_or("tcpdump stderr")?;
        let mut cap = Capture { child, path };
        let mut line = String::new();
        BufReader::new(stderr)
            .read_line(&mut line)
            .map_err(|e| format!("tcpdump: {e}"))?;
        if !line.contains("listening") {
            let _ = cap.child.kill();
            return Err(format!("tcpdump did not start: {line}"));
        }
        Ok(cap)
    }

    /// Stops the capture and decodes it with tshark (MPLS recognised on UDP 6635, UDP
    /// checksums verified): one line per frame, its protocol stack, then any expert
    /// message (a malformed packet or a bad checksum says so there).
    pub fn decode(mut self) -> Result<Vec<String>, String> {
        // Immediate mode hands each packet to tcpdump as it arrives; a moment lets the last
        // ones reach the file before tcpdump is asked to stop.
        std::thread::sleep(Duration::from_millis(200));
        // SAFETY: kill(2) on the PID of a child we spawned and have not reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let _ = self.child.wait();
        let out = Command::new("tshark")
            .arg("-r")
            .arg(&self.path)
            .args([
                "-d",
                "udp.port==6635,mpls",
                "-o",
                "udp.check_checksum:TRUE",
                "-T",
                "fields",
            ])
            .args(["-e", "frame.protocols", "-e", "_ws.expert.message"])
            .output()
            .map_err(|e| format!("tshark: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into());
        }
        Ok(String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect())
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Packets `dev` in `ns` has received.
pub fn rx_packets(ns: &Netns, dev: &str) -> u64 {
    let out = ns
        .exec(&["cat", &format!("/sys/class/net/{dev}/statistics/rx_packets")])
        .expect("counter");
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("number")
}

/// A TCP line-echo server in a namespace (a child process we own, killed on drop).
pub struct Echo {
    _server: Reaped,
}

impl Echo {
    /// Echoes each line on `port`.
    pub fn start(ns: &Netns, port: u16) -> Echo {
        Self::named(ns, port, "")
    }

    /// Echoes each line prefixed with `name` and a space (empty: no prefix); threaded, so
    /// connections can stay open side by side.
    pub fn named(ns: &Netns, port: u16, name: &str) -> Echo {
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
            .expect("python3");
        // Python starts slowly on a busy machine: wait until it listens.
        let deadline = Instant::now() + Duration::from_secs(10);
        ns.run(|| {
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(Instant::now() < deadline, "echo server on port {port} did not start");
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Echo { _server: Reaped(c) }
    }
}

/// A line-based TCP client that keeps its connection.
pub struct Conn {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Conn {
    /// Connects from inside `ns`.
    pub fn open(ns: &Netns, dst: &str, port: u16) -> Option<Conn> {
        ns.run(|| {
            let s = TcpStream::connect_timeout(&SocketAddr::new(ip(dst), port), Duration::from_secs(2)).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
            Some(Conn {
                r: BufReader::new(s.try_clone().ok()?),
                w: s,
            })
        })
    }

    /// Sends a line; the first word of the reply (a [`Echo::named`] server's name, or
    /// the echoed word), or `None` if the connection stopped working.
    pub fn ask(&mut self) -> Option<String> {
        self.w.write_all(b"hello\n").ok()?;
        let mut line = String::new();
        match self.r.read_line(&mut line) {
            Ok(n) if n > 0 => line.split_whitespace().next().map(str::to_string),
            _ => None,
        }
    }
}

/// Opens a connection from `ns`, asks `rounds` times (calling `mid` after the first) and
/// returns how many answers came back before the first failure.
pub fn tcp_rounds(ns: &Netns, dst: &str, port: u16, rounds: usize, mid: &dyn Fn()) -> usize {
    let Some(mut c) = Conn::open(ns, dst, port) else {
        return 0;
    };
    let mut ok = 0;
    for k in 0..rounds {
        if k == 1 {
            mid();
        }
        if c.ask().is_none() {
            break;
        }
        ok += 1;
    }
    ok
}

/// A workload namespace attached to a vrouter node.
pub struct Workload {
    /// Its namespace.
    pub ns: Netns,
    /// Its address.
    pub addr: String,
    /// The node-side device (a vrouter port).
    pub port_dev: String,
    /// Its own device, in its namespace.
    pub dev: String,
}

/// The IPv6 twin of a lab IPv4 address: `a.b.c.d` -> `fd00:a:b:c::d` (hex).
pub fn v6_of(v4: &str) -> String {
    let o: Vec<u8> = v4.split('.').map(|x| x.parse().expect("IPv4 literal")).collect();
    format!("fd00:{:x}:{:x}:{:x}::{:x}", o[0], o[1], o[2], o[3])
}

/// Wires a new workload namespace to `node`: address `addr/24` (plus `extra` /32
/// addresses it also owns) with gateway `gw`, and their IPv6 twins (`v6_of`, /64), MACs chosen from `id`; adds its host route
/// (nexthop `1000 + port`) and neighbour entries in `vrf` to `fib`; returns it with its
/// port config.
#[allow(clippy::too_many_arguments)]
pub fn workload(
    node: &Netns,
    tag: &str,
    id: u8,
    vrf: u32,
    addr: &str,
    gw: &str,
    port: u32,
    fib: &mut FibBuilder,
    extra: &[&str],
) -> (Workload, PortConfig) {
    let ns = Netns::new(tag).expect("namespace");
    let v = Veth::new(&ns, node, 1).expect("veth");
    let wmac = MacAddr([2, 0, 0, id, 0, 2]);
    let gmac = MacAddr([2, 0xa, 0, id, 0, 1]);
    set_mac(&ns, &v.a, wmac);
    set_mac(node, &v.b, gmac);
    no_offloads(&ns, &v.a);
    ns.exec(&["ip", "addr", "add", &format!("{addr}/24"), "dev", &v.a])
        .expect("address");
    ns.exec(&["ip", "route", "add", "default", "via", gw]).expect("route");
    // IPv6 too, mirroring the IPv4 plan (see `v6_of`).
    let (addr6, gw6) = (v6_of(addr), v6_of(gw));
    add_address(&ns, &v.a, &addr6, 64);
    ns.exec(&["ip", "-6", "route", "add", "default", "via", &gw6, "dev", &v.a])
        .expect("route");
    fib.add_route(vrf, ip(&addr6), 128, 1000 + port).expect("route");
    let mut owned = vec![ip(addr), ip(&addr6)];
    for x in extra {
        ns.exec(&["ip", "addr", "add", &format!("{x}/32"), "dev", &v.a])
            .expect("address");
        owned.push(ip(x));
    }
    let nh = 1000 + port;
    fib.set_nexthop(nh, Nexthop::Interface { port, gateway: None })
        .expect("nexthop");
    fib.add_route(vrf, ip(addr), 32, nh).expect("route");
    let pc = PortConfig {
        name: format!("{tag}{id}"),
        mac: gmac,
        mtu: 1500,
        addrs: vec![],
        vlan: None,
        role: PortRole::Workload {
            vrf,
            addrs: owned,
            mac: wmac,
            gateways: vec![ip(gw), ip(&gw6)],
        },
    };
    (
        Workload {
            ns,
            addr: addr.into(),
            port_dev: v.b,
            dev: v.a,
        },
        pc,
    )
}

/// A running vrouter node: its namespace, router, routes and workers.
pub struct Node {
    /// The node namespace (holds the vrouter ports).
    pub ns: Netns,
    /// The router (tables for live changes).
    pub router: Router,
    /// The FIB the router reads.
    pub fib: Arc<Fib>,
    /// The builder the FIB was published from (edit and publish again).
    pub routes: FibBuilder,
    /// The workers.
    pub running: Option<Running>,
}

impl Node {
    /// Publishes `routes` and starts one worker in `ns` for `node` over `devs` (one per
    /// port, in order), on the `cpu`-th online CPU counted from the last (wrapping).
    pub fn start(ns: Netns, node: NodeConfig, devs: &[String], mut routes: FibBuilder, cpu: usize) -> Node {
        let fib = Arc::new(Fib::new());
        routes.publish(&fib).expect("publish");
        let router = Router::new(node, fib.clone(), 1 << 16).expect("router");
        let cpus = dataplane::online_cpus();
        let cpu = cpus[cpus.len() - 1 - cpu % cpus.len()];
        let running = ns
            .run(|| router.start_af_xdp(devs, &[cpu], AttachMode::Native))
            .expect("start");
        Node {
            ns,
            router,
            fib,
            routes,
            running: Some(running),
        }
    }

    /// Counters summed over workers.
    pub fn stats(&self) -> Stats {
        Stats::sum(&self.running.as_ref().map_or_else(Vec::new, |r| r.stats()))
    }

    /// Stops the workers and checks each conserved packets and frames.
    pub fn stop(&mut self) -> Result<Stats, String> {
        let reports = self.running.take().map_or_else(Vec::new, |r| r.stop());
        for r in &reports {
            r.frames_ok.clone()?;
            if !r.stats.conserved() {
                return Err(format!("packets not conserved: {:?}", r.stats));
            }
        }
        Ok(Stats::sum(reports.iter().map(|r| &r.stats)))
    }
}

/// The Linux kernel doing vrouter's job, for comparison in the same run: two workloads
/// routed by a router namespace, or by two nodes over a kernel `vxlan` device.
pub struct KernelLab {
    /// The client workload (10.1.0.2).
    pub w1: Netns,
    /// The server workload (10.2.0.2).
    pub w2: Netns,
    /// The router or node namespaces (kept until the lab drops).
    pub nodes: Vec<Netns>,
}

impl KernelLab {
    /// `w1 -- router -- w2`, IPv4 forwarding in the router. `offloads`: leave TSO/GSO and
    /// checksum offload on every veth (the kernel's best case), else turn them off (what
    /// the AF_XDP path sees).
    pub fn routed(offloads: bool) -> KernelLab {
        let router = Netns::new("kr").expect("namespace");
        router
            .exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])
            .expect("forwarding");
        let w1 = Self::attach(&router, "10.1.0", offloads, 1500);
        let w2 = Self::attach(&router, "10.2.0", offloads, 1500);
        KernelLab {
            w1,
            w2,
            nodes: vec![router],
        }
    }

    /// `w1 -- node A ==vxlan 42 over an underlay veth== node B -- w2`, workload MTU 1450 as
    /// in the vrouter overlay labs.
    pub fn vxlan(offloads: bool) -> KernelLab {
        let (a, b) = (
            Netns::new("ka").expect("namespace"),
            Netns::new("kb").expect("namespace"),
        );
        let u = Veth::new(&a, &b, 1).expect("veth");
        // (node, underlay device, its address, the peer's, its tunnel address, the peer's
        // tunnel address, the peer's workload subnet)
        for (ns, dev, me, peer, tunnel, via, remote) in [
            (
                &a,
                &u.a,
                "192.0.2.1",
                "192.0.2.2",
                "10.255.0.1",
                "10.255.0.2",
                "10.2.0.0/24",
            ),
            (
                &b,
                &u.b,
                "192.0.2.2",
                "192.0.2.1",
                "10.255.0.2",
                "10.255.0.1",
                "10.1.0.0/24",
            ),
        ] {
            Self::offloads(ns, dev, offloads);
            let script = format!(
                "sysctl -qw net.ipv4.ip_forward=1 && ip addr add {me}/24 dev {dev} && \
                 ip link add vx0 type vxlan id 42 local {me} remote {peer} dstport 4789 dev {dev} && \
                 ip addr add {tunnel}/30 dev vx0 && ip link set vx0 up && ip route add {remote} via {via}"
            );
            ns.exec(&["sh", "-c", &script]).expect("kernel VXLAN");
        }
        let w1 = Self::attach(&a, "10.1.0", offloads, 1450);
        let w2 = Self::attach(&b, "10.2.0", offloads, 1450);
        KernelLab {
            w1,
            w2,
            nodes: vec![a, b],
        }
    }

    fn offloads(ns: &Netns, dev: &str, on: bool) {
        if !on {
            no_offloads(ns, dev);
        }
    }

    /// A workload `{net}.2/24` behind `node` (gateway `{net}.1`), both veth ends with the
    /// offload choice.
    fn attach(node: &Netns, net: &str, offloads: bool, mtu: u32) -> Netns {
        let w = Netns::new("kw").expect("namespace");
        let v = Veth::new(&w, node, 1).expect("veth");
        Self::offloads(&w, &v.a, offloads);
        Self::offloads(node, &v.b, offloads);
        let mtu = mtu.to_string();
        w.exec(&["ip", "link", "set", "dev", &v.a, "mtu", &mtu]).expect("mtu");
        w.exec(&["ip", "addr", "add", &format!("{net}.2/24"), "dev", &v.a])
            .expect("address");
        w.exec(&["ip", "route", "add", "default", "via", &format!("{net}.1")])
            .expect("route");
        node.exec(&["ip", "addr", "add", &format!("{net}.1/24"), "dev", &v.b])
            .expect("address");
        w
    }
}

/// Two workloads on one node, routed by /32 routes with a proxy-ARP gateway: the
/// Calico model.
pub struct L3Lab {
    /// First workload (10.0.1.2).
    pub w1: Workload,
    /// Second workload (10.0.2.2).
    pub w2: Workload,
    /// The node.
    pub node: Node,
}

impl L3Lab {
    /// Builds and starts it.
    pub fn new() -> L3Lab {
        let ns = Netns::new("n").expect("namespace");
        let mut b = FibBuilder::new();
        b.add_vrf(1).expect("vrf");
        let (w1, p1) = workload(&ns, "w", 1, 1, "10.0.1.2", "10.0.1.1", 0, &mut b, &[]);
        let (w2, p2) = workload(&ns, "w", 2, 1, "10.0.2.2", "10.0.2.1", 1, &mut b, &[]);
        let devs = [w1.port_dev.clone(), w2.port_dev.clone()];
        let node = Node::start(
            ns,
            NodeConfig {
                ports: vec![p1, p2],
                ..Default::default()
            },
            &devs,
            b,
            0,
        );
        L3Lab { w1, w2, node }
    }
}

impl Default for L3Lab {
    fn default() -> Self {
        Self::new()
    }
}

/// MTU of overlay workloads: 1500 minus the largest encapsulation (VXLAN, 50 bytes over
/// IPv4; 20 more over IPv6).
pub const OVERLAY_WORKLOAD_MTU: u16 = 1450;

/// Which tunnel an overlay lab uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlay {
    /// VXLAN, VNI 100 + VRF.
    Vxlan,
    /// MPLS over UDP, label 1000 + VRF.
    MplsUdp,
    /// MPLS over GRE, label 1000 + VRF.
    MplsGre,
}

impl Overlay {
    /// All three.
    pub const ALL: [Overlay; 3] = [Overlay::Vxlan, Overlay::MplsUdp, Overlay::MplsGre];

    /// Display name.
    pub fn name(self) -> &'static str {
        match self {
            Overlay::Vxlan => "VXLAN",
            Overlay::MplsUdp => "MPLSoUDP",
            Overlay::MplsGre => "MPLSoGRE",
        }
    }

    fn encap(self, vrf: u32) -> Encap {
        match self {
            Overlay::Vxlan => Encap::Vxlan { vni: 100 + vrf },
            Overlay::MplsUdp => Encap::MplsOverUdp { label: 1000 + vrf },
            Overlay::MplsGre => Encap::MplsOverGre { label: 1000 + vrf },
        }
    }
}

/// Two vrouter nodes over an underlay veth, each with one workload per tenant; tenants
/// (VRF 1 and 2) use the same addresses (10.N.0.2 on node N): the OpenContrail model.
pub struct OverlayLab {
    /// Node 1 and its workloads per tenant.
    pub a: (Node, Vec<Workload>),
    /// Node 2 and its workloads per tenant.
    pub b: (Node, Vec<Workload>),
    /// The underlay: a namespace with a Linux bridge (the switch) and a link from each
    /// node; `wire_a` is the switch's end of node 1's link, where a capture sees
    /// everything node 1 sends and receives (AF_XDP bypasses captures on the node's own
    /// end).
    pub wire: Netns,
    /// The switch port facing node 1.
    pub wire_a: String,
}

impl OverlayLab {
    /// Builds and starts it with `tenants` (1 or 2) tenants, over an IPv4 underlay
    /// (192.0.2.N), the nodes lowering TCP SYNs' MSS to fit the tunnel (as `vrouter run`
    /// does by default).
    pub fn new(overlay: Overlay, tenants: u32) -> OverlayLab {
        Self::build(overlay, tenants, false, MssClamp::Path)
    }

    /// The same over an IPv6 underlay (fd00:f::N).
    pub fn over_ipv6(overlay: Overlay, tenants: u32) -> OverlayLab {
        Self::build(overlay, tenants, true, MssClamp::Path)
    }

    /// [`OverlayLab::new`] with the nodes' MSS clamping as given.
    pub fn clamping(overlay: Overlay, tenants: u32, tcp_mss_clamp: MssClamp) -> OverlayLab {
        Self::build(overlay, tenants, false, tcp_mss_clamp)
    }

    fn build(overlay: Overlay, tenants: u32, v6: bool, tcp_mss_clamp: MssClamp) -> OverlayLab {
        let (na, nb) = (
            Netns::new("na").expect("namespace"),
            Netns::new("nb").expect("namespace"),
        );
        let wire = Netns::new("sw").expect("namespace");
        let (la, lb) = (
            Veth::new(&na, &wire, 1).expect("veth"),
            Veth::new(&nb, &wire, 1).expect("veth"),
        );
        wire.exec(&["ip", "link", "add", "br0", "type", "bridge"])
            .expect("bridge");
        for port in [&la.b, &lb.b] {
            wire.exec(&["ip", "link", "set", port, "master", "br0"])
                .expect("bridge port");
        }
        wire.exec(&["ip", "link", "set", "br0", "up"]).expect("bridge up");
        let a = Self::node(na, (1, 2), &la.a, overlay, tenants, (v6, tcp_mss_clamp));
        let b = Self::node(nb, (2, 1), &lb.a, overlay, tenants, (v6, tcp_mss_clamp));
        OverlayLab {
            a,
            b,
            wire,
            wire_a: la.b,
        }
    }

    /// Node `n` of the two, the other being `peer`, with its options: an IPv6 underlay,
    /// the MSS clamping.
    fn node(
        ns: Netns,
        (n, peer): (u8, u8),
        fabric_dev: &str,
        overlay: Overlay,
        tenants: u32,
        (v6, tcp_mss_clamp): (bool, MssClamp),
    ) -> (Node, Vec<Workload>) {
        let underlay = |x: u8| match v6 {
            false => ip(&format!("192.0.2.{x}")),
            true => ip(&format!("fd00:f::{x}")),
        };
        let workload_mtu = OVERLAY_WORKLOAD_MTU - if v6 { 20 } else { 0 };
        let fab_mac = |x: u8| MacAddr([2, 0xf, 0, 0, 0, x]);
        let mut b = FibBuilder::new();
        b.add_vrf(0).expect("vrf");
        let mut ports = Vec::new();
        let mut loads = Vec::new();
        for vrf in 1..=tenants {
            b.add_vrf(vrf).expect("vrf");
            let port = vrf - 1;
            let (w, pc) = workload(
                &ns,
                "t",
                n * 10 + vrf as u8,
                vrf,
                &format!("10.{n}.0.2"),
                &format!("10.{n}.0.1"),
                port,
                &mut b,
                &[],
            );
            // Room for the tunnel headers inside the underlay's 1500 bytes, as overlay
            // CNIs configure their workloads.
            w.ns.exec(&["ip", "link", "set", "dev", &w.dev, "mtu", &workload_mtu.to_string()])
                .expect("mtu");
            // The router sends the workload nothing longer (a veth drops what exceeds its
            // MTU), splitting what may be split.
            let pc = PortConfig {
                mtu: workload_mtu,
                ..pc
            };
            let remote = 20 + vrf;
            b.set_nexthop(
                remote,
                Nexthop::Tunnel {
                    encap: overlay.encap(vrf),
                    src: underlay(n),
                    dst: underlay(peer),
                    underlay_vrf: 0,
                    router_mac: None,
                    dscp: Default::default(),
                    zero_udp_checksum: false,
                },
            )
            .expect("nexthop");
            b.add_route(vrf, ip(&format!("10.{peer}.0.2")), 32, remote)
                .expect("route");
            b.set_vni(100 + vrf, vrf).expect("vni");
            b.set_label(1000 + vrf, 1000 + port).expect("label");
            ports.push(pc);
            loads.push(w);
        }
        let fabric_port = tenants;
        b.set_nexthop(
            1,
            Nexthop::Interface {
                port: fabric_port,
                gateway: None,
            },
        )
        .expect("nexthop");
        match v6 {
            false => b.add_route(0, ip("192.0.2.0"), 24, 1),
            true => b.add_route(0, ip("fd00:f::"), 64, 1),
        }
        .expect("route");
        set_mac(&ns, fabric_dev, fab_mac(n));
        ports.push(PortConfig {
            name: "fabric".into(),
            mac: fab_mac(n),
            mtu: 1500,
            addrs: vec![underlay(n)],
            vlan: None,
            role: PortRole::Fabric { vrf: 0 },
        });
        let mut devs: Vec<String> = loads.iter().map(|w| w.port_dev.clone()).collect();
        devs.push(fabric_dev.to_string());
        // Each node on its own CPU where there are two.
        (
            Node::start(
                ns,
                NodeConfig {
                    ports,
                    tunnel_endpoints: vec![underlay(n)],
                    tcp_mss_clamp,
                    ..Default::default()
                },
                &devs,
                b,
                usize::from(n - 1),
            ),
            loads,
        )
    }
}

/// A client and three backends on one node; the service address is routed to an ECMP
/// group of the backends, each of which owns it: services without kube-proxy.
pub struct ServiceLab {
    /// The client workload.
    pub client: Workload,
    /// The backends, each running an [`Echo::named`] server `b0`..`b2` on [`SERVICE_PORT`].
    pub backends: Vec<Workload>,
    /// The node.
    pub node: Node,
    _servers: Vec<Echo>,
}

/// The service address.
pub const SERVICE_VIP: &str = "10.96.0.10";
/// The service port.
pub const SERVICE_PORT: u16 = 8080;
/// The ECMP nexthop id of the service.
pub const SERVICE_NEXTHOP: u32 = 50;

impl ServiceLab {
    /// Builds and starts it.
    pub fn new() -> ServiceLab {
        let ns = Netns::new("n").expect("namespace");
        let mut b = FibBuilder::new();
        b.add_vrf(1).expect("vrf");
        let (client, pc) = workload(&ns, "c", 1, 1, "10.0.1.2", "10.0.1.1", 0, &mut b, &[]);
        let mut ports = vec![pc];
        let mut backends = Vec::new();
        for i in 0..3u32 {
            let (w, pc) = workload(
                &ns,
                "b",
                10 + i as u8,
                1,
                &format!("10.0.3.{}", i + 1),
                "10.0.3.254",
                i + 1,
                &mut b,
                &[SERVICE_VIP],
            );
            ports.push(pc);
            backends.push(w);
        }
        b.set_nexthop(SERVICE_NEXTHOP, Self::group(&[0, 1, 2])).expect("ecmp");
        b.add_route(1, ip(SERVICE_VIP), 32, SERVICE_NEXTHOP).expect("route");
        let devs: Vec<String> = std::iter::once(&client)
            .chain(&backends)
            .map(|w| w.port_dev.clone())
            .collect();
        let node = Node::start(
            ns,
            NodeConfig {
                ports,
                ..Default::default()
            },
            &devs,
            b,
            0,
        );
        let servers = backends
            .iter()
            .enumerate()
            .map(|(i, w)| Echo::named(&w.ns, SERVICE_PORT, &format!("b{i}")))
            .collect();
        ServiceLab {
            client,
            backends,
            node,
            _servers: servers,
        }
    }

    /// The ECMP nexthop over the given backends (by index).
    pub fn group(backends: &[u32]) -> Nexthop {
        Nexthop::Ecmp {
            members: backends.iter().map(|&i| (1000 + i + 1, 1)).collect(),
        }
    }

    /// Opens `n` connections to the service; how many each backend served, checking
    /// that every connection stays on one backend for three more requests.
    pub fn spread(&self, n: usize) -> Result<HashMap<String, usize>, String> {
        let mut served = HashMap::new();
        for _ in 0..n {
            let mut c = Conn::open(&self.client.ns, SERVICE_VIP, SERVICE_PORT).ok_or("connect to the service")?;
            let first = c.ask().ok_or("no answer")?;
            for _ in 0..3 {
                if c.ask().as_deref() != Some(first.as_str()) {
                    return Err(format!("a connection to {first} moved"));
                }
            }
            *served.entry(first).or_insert(0) += 1;
        }
        Ok(served)
    }
}

impl Default for ServiceLab {
    fn default() -> Self {
        Self::new()
    }
}
