//! I/O path and whole-pipeline benchmark on veth, as root: the same generator (ours, AF_XDP
//! TX pinned to one CPU; then `trafgen` if installed) feeds 64-byte UDP frames (256 flows)
//! into a DUT namespace set up, in one run: an XDP_DROP program (the ceiling), our AF_XDP
//! RX, reflect and port-to-port forward, the full vrouter pipeline routing (pure L3) and
//! VXLAN-encapsulating (one worker on the other CPU), and the kernel doing the same:
//! forwarding through the router namespace and through a `vxlan` device, each also with
//! RPS moving its work to the other CPU.
//!
//! `cargo run --release -p dataplane --example xdp_bench [SECONDS] [ROUNDS]`: with ROUNDS,
//! every row is measured once per round, ratios are taken within each round, and each cell
//! is the median (and range) over the rounds: a slow spell of this VM then weighs on one
//! sample instead of the whole table.
//!
//! Topology: gen --v1-- dut --v2-- sink (XDP_DROP on the sink, so delivering costs nothing).

use std::os::unix::process::CommandExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use af_xdp::{AttachMode, SocketConfig, Umem, UmemConfig, XdpDrop, XdpProgram, XskSocket, ZeroCopy};
use dataplane::pipeline::{NodeConfig, Pipeline, PortConfig, PortRole, Tables};
use dataplane::*;
use fib::{Encap, Fib, FibBuilder, Neighbor, NeighborState, Nexthop};
use testnet::{Netns, Veth};

const GEN_MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];
const DUT1_MAC: [u8; 6] = [2, 0, 0, 0, 1, 2];
const DUT2_MAC: [u8; 6] = [2, 0, 0, 0, 2, 2];
const SINK_MAC: [u8; 6] = [2, 0, 0, 0, 2, 1];

fn mac(m: [u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// 64-byte frame on the wire (60 + FCS): UDP 10.1.0.1 -> 10.2.0.2, routed by the DUT.
fn frame(src_port: u16) -> Vec<u8> {
    let mut f = testnet::udp_frame(GEN_MAC, DUT1_MAC, 0, 60);
    f[26..30].copy_from_slice(&[10, 1, 0, 1]);
    f[30..34].copy_from_slice(&[10, 2, 0, 2]);
    f[24..26].copy_from_slice(&[0, 0]);
    let mut sum = 0u32;
    for c in f[14..34].chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    f[24..26].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    f[34..36].copy_from_slice(&src_port.to_be_bytes());
    f
}

/// Our generator: AF_XDP TX (copy mode) on `ifname`, pinned to `cpu`, until `stop`.
fn xsk_generator(ifname: &str, cpu: usize, stop: &AtomicBool, sent: &AtomicU64) {
    pin_current_thread(cpu).unwrap();
    let umem = Arc::new(
        Umem::new(UmemConfig {
            frame_count: 4096,
            ..Default::default()
        })
        .unwrap(),
    );
    let cfg = SocketConfig {
        zero_copy: ZeroCopy::Off,
        ..Default::default()
    };
    // The previous run's socket is released asynchronously: retry while the queue is busy.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut sock = loop {
        match XskSocket::new(&umem, ifname, 0, cfg, None) {
            Ok(s) => break s,
            Err(af_xdp::Error::Sys { source, .. })
                if source.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) => panic!("generator: {e}"),
        }
    };
    let mut free: Vec<u64> = Vec::new();
    for i in 0..4096 {
        let a = umem.frame_addr(i);
        let f = frame(40000 + (i % 256) as u16);
        // SAFETY: the frames are not on any ring yet.
        unsafe { umem.bytes_mut(a, f.len()) }.unwrap().copy_from_slice(&f);
        free.push(a);
    }
    let mut descs = Vec::with_capacity(64);
    let mut comp = [0u64; 256];
    while !stop.load(Ordering::Relaxed) {
        let n = sock.comp.pop(&mut comp);
        free.extend_from_slice(&comp[..n]);
        sent.fetch_add(n as u64, Ordering::Relaxed);
        descs.clear();
        descs.extend(free.iter().rev().take(64).map(|&addr| af_xdp::Desc {
            addr,
            len: 60,
            options: 0,
        }));
        let pushed = sock.tx.push(&descs);
        free.truncate(free.len() - pushed);
        let _ = sock.kick_tx();
    }
}

struct World {
    sender: Netns,
    dut: Netns,
    sink: Netns,
    v1: Veth,
    v2: Veth,
}

impl World {
    fn new() -> World {
        let (sender, dut, sink) = (
            Netns::new("gen").unwrap(),
            Netns::new("dut").unwrap(),
            Netns::new("snk").unwrap(),
        );
        let v1 = Veth::new(&sender, &dut, 1).unwrap();
        let v2 = Veth::new(&sink, &dut, 1).unwrap();
        for (ns, dev, m) in [
            (&sender, &v1.a, GEN_MAC),
            (&dut, &v1.b, DUT1_MAC),
            (&dut, &v2.b, DUT2_MAC),
            (&sink, &v2.a, SINK_MAC),
        ] {
            ns.exec(&["ip", "link", "set", "dev", dev, "address", &mac(m)]).unwrap();
        }
        dut.exec(&["ip", "addr", "add", "10.1.0.254/24", "dev", &v1.b]).unwrap();
        dut.exec(&["ip", "addr", "add", "10.2.0.254/24", "dev", &v2.b]).unwrap();
        dut.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]).unwrap();
        dut.exec(&[
            "ip",
            "neigh",
            "add",
            "10.2.0.2",
            "lladdr",
            &mac(SINK_MAC),
            "dev",
            &v2.b,
            "nud",
            "permanent",
        ])
        .unwrap();
        World {
            sender,
            dut,
            sink,
            v1,
            v2,
        }
    }

    /// Routes 10.2.0.2 into a kernel `vxlan` device (VNI 42, 192.0.2.1 -> 192.0.2.2 over
    /// the sink link) until the guard drops.
    fn kernel_vxlan(&self) -> KernelVxlan<'_> {
        let dev = &self.v2.b;
        let sh = |c: &str| self.dut.exec(&["sh", "-c", c]).unwrap();
        sh(&format!(
            "ip addr add 192.0.2.1/24 dev {dev} && ip neigh replace 192.0.2.2 lladdr {sink} dev {dev} nud permanent && \
             ip link add vxb0 type vxlan id 42 local 192.0.2.1 remote 192.0.2.2 dstport 4789 dev {dev} && \
             ip link set vxb0 up && ip route add 10.2.0.2/32 dev vxb0 && \
             ip neigh replace 10.2.0.2 lladdr {sink} dev vxb0 nud permanent",
            sink = mac(SINK_MAC)
        ));
        KernelVxlan(self)
    }

    fn counter(&self, ns: &Netns, dev: &str, name: &str) -> u64 {
        let out = ns
            .exec(&["cat", &format!("/sys/class/net/{dev}/statistics/{name}")])
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    }
}

/// The kernel VXLAN set-up of [`World::kernel_vxlan`]; removed on drop.
struct KernelVxlan<'a>(&'a World);

impl Drop for KernelVxlan<'_> {
    fn drop(&mut self) {
        let w = self.0;
        let _ = w.dut.exec(&["ip", "link", "del", "vxb0"]);
        let _ = w.dut.exec(&["ip", "addr", "del", "192.0.2.1/24", "dev", &w.v2.b]);
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Gen {
    Ours,
    Trafgen,
}

/// Runs the generator for warm-up + `secs`; `measure` returns the DUT's count, read at
/// both ends of the window. Returns (generator Mpps, DUT Mpps). trafgen sometimes quits
/// at start ("Flushing TX_RING failed") when the link pushes back: it gets a second try.
fn run(w: &World, g: Gen, secs: f64, measure: &dyn Fn() -> u64) -> (f64, f64) {
    match run_once(w, g, secs, measure) {
        (0.0, _) if g == Gen::Trafgen => run_once(w, g, secs, measure),
        r => r,
    }
}

fn run_once(w: &World, g: Gen, secs: f64, measure: &dyn Fn() -> u64) -> (f64, f64) {
    let stop = AtomicBool::new(false);
    let sent = AtomicU64::new(0);
    let gen_tx = || w.counter(&w.sender, &w.v1.a, "tx_packets");
    let conf = std::env::temp_dir().join(format!("vr-trafgen-{}.cfg", std::process::id()));
    let rates = std::thread::scope(|s| {
        let mut child = None;
        match g {
            Gen::Ours => {
                s.spawn(|| {
                    w.sender.enter().unwrap();
                    xsk_generator(&w.v1.a, 0, &stop, &sent)
                });
            }
            Gen::Trafgen => {
                let bytes: Vec<String> = frame(40000).iter().map(|b| format!("{b:#04x}")).collect();
                std::fs::write(&conf, format!("{{ {} }}\n", bytes.join(", "))).unwrap();
                child = Some(
                    std::process::Command::new("ip")
                        .args(["netns", "exec", w.sender.name(), "trafgen", "--dev", &w.v1.a, "--conf"])
                        .arg(&conf)
                        .args(["--cpus", "1", "-q"])
                        // trafgen forks a sender per CPU: a group of its own lets the stop
                        // reach that child too, which otherwise outlives the row.
                        .process_group(0)
                        .stdout(std::process::Stdio::null())
                        .stderr(std::fs::File::create(conf.with_extension("err")).unwrap())
                        .spawn()
                        .unwrap(),
                );
            }
        }
        std::thread::sleep(Duration::from_millis(700));
        let (g0, d0, t0) = (gen_tx(), measure(), Instant::now());
        std::thread::sleep(Duration::from_secs_f64(secs));
        let (g1, d1, dt) = (gen_tx(), measure(), t0.elapsed().as_secs_f64());
        stop.store(true, Ordering::Relaxed);
        if let Some(c) = child {
            stop_group(c);
        }
        ((g1 - g0) as f64 / dt / 1e6, (d1 - d0) as f64 / dt / 1e6)
    });
    if g == Gen::Trafgen {
        // trafgen's messages stay behind only when it failed (the table points at them).
        let _ = std::fs::remove_file(&conf);
        if rates.0 > 0.0 {
            let _ = std::fs::remove_file(conf.with_extension("err"));
        }
    }
    rates
}

/// Stops the process group we started for `c` (trafgen and the sender it forked): SIGINT
/// so trafgen tears down its ring, SIGKILL if the group outlives a grace period.
fn stop_group(mut c: std::process::Child) {
    let group = -(c.id() as libc::pid_t);
    // SAFETY: signalling the process group whose leader we spawned; no memory involved.
    unsafe { libc::kill(group, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(3);
    // SAFETY: signal 0 only asks whether any member of our group is still alive.
    while unsafe { libc::kill(group, 0) } == 0 && Instant::now() < deadline {
        let _ = c.try_wait();
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: as above; the group is ours.
    unsafe { libc::kill(group, libc::SIGKILL) };
    let _ = c.wait();
}

struct DropAll;
impl Handler for DropAll {
    fn process(&mut self, _: u16, pkts: &mut [Pkt], _: &mut FramePool, v: &mut [Verdict]) {
        v[..pkts.len()].fill(Verdict::Drop(DropReason::Filtered));
    }
}

/// `VR_THREADED_NAPI=1`: the DUT ports' NAPI polls (where XDP runs and copy-mode AF_XDP
/// copies) move from the sender's softirq to kernel threads pinned to the worker's CPU.
fn threaded_napi(w: &World, devs: &[&str]) {
    if std::env::var_os("VR_THREADED_NAPI").is_none() {
        return;
    }
    for dev in devs {
        let knob = format!("echo 1 > /sys/class/net/{dev}/threaded");
        if let Err(e) = w.dut.exec(&["sh", "-c", &knob]) {
            eprintln!("threaded NAPI on {dev}: {e}");
        }
    }
    // The threads are named napi/<dev>-<id>; pin each to cpu1 (the worker's).
    let out = std::process::Command::new("ps")
        .args(["-e", "-o", "pid=,comm="])
        .output()
        .unwrap();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut f = line.split_whitespace();
        let (Some(pid), Some(comm)) = (f.next(), f.next()) else {
            continue;
        };
        if devs.iter().any(|d| comm.starts_with(&format!("napi/{d}"))) {
            let _ = std::process::Command::new("taskset").args(["-pc", "1", pid]).output();
            eprintln!("pinned {comm} ({pid}) to cpu1");
        }
    }
}

/// How the DUT's XDP programs attach: native, or with `VR_GENERIC_RPS=1` generic with RPS
/// steering the DUT port's receive to cpu1 (the worker's), so that XDP and the copy into
/// the UMEM run there and not in the sender's softirq.
fn dut_mode(w: &World) -> AttachMode {
    let generic = std::env::var_os("VR_GENERIC_RPS").is_some();
    let knob = format!(
        "echo {} > /sys/class/net/{}/queues/rx-0/rps_cpus",
        if generic { 2 } else { 0 },
        w.v1.b
    );
    w.dut.exec(&["sh", "-c", &knob]).unwrap();
    if generic {
        AttachMode::Generic
    } else {
        AttachMode::Native
    }
}

/// `VR_BUSY_POLL=1`: preferred busy polling on the DUT sockets and devices.
fn busy_poll() -> bool {
    std::env::var_os("VR_BUSY_POLL").is_some()
}

/// Makes a worker's handler (called on the worker's thread).
type MakeHandler = Arc<dyn Fn() -> Box<dyn Handler> + Send + Sync>;

/// vrouter's tables for the DUT: both ports in the underlay VRF 0; 10.2.0.2 reached directly
/// out of port 1 (pure L3) or through a VXLAN tunnel 192.0.2.1 -> 192.0.2.2 whose underlay
/// next hop is the sink. All neighbours configured, no policy (everything allowed).
fn pipeline_tables(vxlan: bool) -> Tables {
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    let fib = Arc::new(Fib::new());
    let mut b = FibBuilder::new();
    b.add_vrf(0).unwrap();
    b.set_nexthop(1, Nexthop::Interface { port: 1, gateway: None }).unwrap();
    b.set_nexthop(
        2,
        Nexthop::Tunnel {
            encap: Encap::Vxlan { vni: 42 },
            src: ip("192.0.2.1"),
            dst: ip("192.0.2.2"),
            underlay_vrf: 0,
            router_mac: None,
            dscp: Default::default(),
            zero_udp_checksum: false,
        },
    )
    .unwrap();
    b.add_route(0, ip("10.2.0.0"), 24, if vxlan { 2 } else { 1 }).unwrap();
    b.add_route(0, ip("192.0.2.0"), 24, 1).unwrap();
    let sink = Neighbor {
        mac: wire::ethernet::MacAddr(SINK_MAC),
        state: NeighborState::Reachable,
    };
    b.set_neighbor(1, ip("10.2.0.2"), sink);
    b.set_neighbor(1, ip("192.0.2.2"), sink);
    b.publish(&fib).unwrap();
    let port = |name: &str, m, addrs| PortConfig {
        name: name.into(),
        mac: wire::ethernet::MacAddr(m),
        mtu: 1500,
        addrs,
        vlan: None,
        role: PortRole::Fabric { vrf: 0 },
    };
    Tables {
        fib,
        policy: Arc::new(policy::PolicyStore::new()),
        flows: Arc::new(flow::FlowTable::new(flow::FlowTableConfig::with_capacity(1 << 16)).unwrap()),
        node: Arc::new(NodeConfig {
            ports: vec![
                port("in", DUT1_MAC, vec![]),
                port("out", DUT2_MAC, vec![ip("192.0.2.1")]),
            ],
            tunnel_endpoints: vec![ip("192.0.2.1")],
            ..Default::default()
        }),
        epoch: Instant::now(),
        taps: Default::default(),
        neighbors: Default::default(),
        path_mtus: Default::default(),
        flow_log: Default::default(),
    }
}

fn workers(w: &World, forward: bool, handler: MakeHandler) -> (WorkerSet, Vec<XdpProgram>) {
    let cfg = SocketConfig {
        busy_poll_budget: if busy_poll() { 64 } else { 0 },
        ..SocketConfig::default()
    };
    if busy_poll() {
        for dev in [&w.v1.b, &w.v2.b] {
            let knobs = format!(
                "echo 2 > /sys/class/net/{dev}/napi_defer_hard_irqs; echo 200000 > /sys/class/net/{dev}/gro_flush_timeout"
            );
            w.dut.exec(&["sh", "-c", &knobs]).unwrap();
        }
    }
    let mode = dut_mode(w);
    w.dut.run(|| {
        let p1 = Arc::new(XdpProgram::attach(&w.v1.b, mode).unwrap());
        let p2 = forward.then(|| Arc::new(XdpProgram::attach(&w.v2.b, mode).unwrap()));
        let (q1, q2) = (p1.clone(), p2.clone());
        let set = WorkerSet::start(&[1], move |_, _| {
            let umem = Arc::new(Umem::new(UmemConfig::default()).map_err(|e| e.to_string())?);
            let pool = FramePool::new(umem, if q2.is_some() { 2 } else { 1 });
            let a = AfXdpPort::open(&pool, &q1, 0, cfg, None).map_err(|e| e.to_string())?;
            let mut ports: Vec<Box<dyn Port>> = Vec::new();
            if let Some(q2) = &q2 {
                let b = AfXdpPort::open(&pool, q2, 0, cfg, Some(&a)).map_err(|e| e.to_string())?;
                ports.push(Box::new(a));
                ports.push(Box::new(b));
            } else {
                ports.push(Box::new(a));
            }
            Ok(Worker::new(pool, ports, handler()))
        })
        .unwrap();
        let devs = [w.v1.b.as_str(), w.v2.b.as_str()];
        threaded_napi(w, &devs[..if forward { 2 } else { 1 }]);
        let progs = [Arc::try_unwrap(p1).ok()].into_iter().flatten();
        (set, progs.chain(p2.and_then(|p| Arc::try_unwrap(p).ok())).collect())
    })
}

/// One measurement of every row for generator `g`: (row, generator Mpps, DUT Mpps).
fn measure_rows(w: &World, g: Gen, secs: f64) -> Vec<(&'static str, f64, f64)> {
    let mut rows: Vec<(&'static str, f64, f64)> = Vec::new();
    // The ceiling: XDP_DROP on the DUT's port.
    {
        let mode = dut_mode(w);
        let _d = w.dut.run(|| XdpDrop::attach(&w.v1.b, mode).unwrap());
        let (gm, dm) = run(w, g, secs, &|| w.counter(&w.dut, &w.v1.b, "rx_packets"));
        rows.push(("XDP_DROP", gm, dm));
    }
    let pipeline = |vxlan| -> MakeHandler {
        let tables = pipeline_tables(vxlan);
        Arc::new(move || Box::new(Pipeline::new(tables.clone()).expect("flow reader")) as Box<dyn Handler>)
    };
    let cases: [(&'static str, bool, MakeHandler); 5] = [
        ("AF_XDP RX (drop all)", false, Arc::new(|| Box::new(DropAll))),
        ("AF_XDP reflect", false, Arc::new(|| Box::new(apps::Reflect))),
        (
            "AF_XDP port-to-port",
            true,
            Arc::new(|| Box::new(apps::Forward { peer: vec![1, 0] })),
        ),
        ("vrouter pipeline, pure L3", true, pipeline(false)),
        ("vrouter pipeline, VXLAN encap", true, pipeline(true)),
    ];
    for (name, fwd, h) in cases {
        let (set, progs) = workers(w, fwd, h);
        let count = |s: &WorkerSet| {
            let t = Stats::sum(&s.stats());
            if name.contains("RX") { t.rx } else { t.tx }
        };
        let (gm, dm) = run(w, g, secs, &|| count(&set));
        let reports = set.stop();
        for r in &reports {
            assert!(r.frames_ok.is_ok(), "{:?}", r.frames_ok);
        }
        drop(progs);
        rows.push((name, gm, dm));
    }
    let fwd = |w: &World| w.counter(&w.dut, &w.v2.b, "tx_packets");
    let rps = |on: bool| {
        let cpus = if on { 2 } else { 0 };
        let knob = format!("echo {cpus} > /sys/class/net/{}/queues/rx-0/rps_cpus", w.v1.b);
        w.dut.exec(&["sh", "-c", &knob]).unwrap();
    };
    for (name, vxlan) in [
        ("kernel forwarding", false),
        ("kernel forwarding + RPS", false),
        ("kernel VXLAN encap", true),
        ("kernel VXLAN encap + RPS", true),
    ] {
        rps(name.ends_with("RPS"));
        let _tunnel = vxlan.then(|| w.kernel_vxlan());
        let (gm, dm) = run(w, g, secs, &|| fwd(w));
        rows.push((name, gm, dm));
    }
    rps(false);
    rows
}

/// Each row's ratios within one round: to XDP_DROP, to the kernel doing the same job (VXLAN
/// rows to its VXLAN) and to that kernel with RPS. NaN where either side's generator failed.
fn round_ratios(rows: &[(&str, f64, f64)]) -> Vec<[f64; 3]> {
    let dut = |n: &str| rows.iter().find(|r| r.0 == n && r.1 > 0.0).map_or(f64::NAN, |r| r.2);
    rows.iter()
        .map(|&(name, gm, dm)| {
            let dm = if gm > 0.0 { dm } else { f64::NAN };
            let (kernel, rps) = if name.contains("VXLAN") {
                ("kernel VXLAN encap", "kernel VXLAN encap + RPS")
            } else {
                ("kernel forwarding", "kernel forwarding + RPS")
            };
            [dm / dut("XDP_DROP"), dm / dut(kernel), dm / dut(rps)]
        })
        .collect()
}

/// Median and range of the finite values, e.g. "0.93 (0.66-1.03)"; "-" if there are none.
fn summary(mut v: Vec<f64>, digits: usize) -> String {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return "-".into();
    }
    v.sort_by(f64::total_cmp);
    let m = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    if v.len() == 1 {
        format!("{m:.digits$}")
    } else {
        format!("{m:.digits$} ({:.digits$}-{:.digits$})", v[0], v[v.len() - 1])
    }
}

fn main() {
    testnet::require_root();
    let arg = |i: usize| std::env::args().nth(i).and_then(|s| s.parse::<f64>().ok());
    let secs = arg(1).unwrap_or(3.0);
    let rounds = arg(2).map_or(1, |r| r.max(1.0) as usize);
    let w = World::new();
    let _sink = w.sink.run(|| XdpDrop::attach(&w.v2.a, AttachMode::Native).unwrap());
    let gens: Vec<Gen> = if std::process::Command::new("trafgen").arg("--version").output().is_ok() {
        vec![Gen::Ours, Gen::Trafgen]
    } else {
        eprintln!("trafgen not installed (apt install netsniff-ng): only our generator");
        vec![Gen::Ours]
    };
    if rounds > 1 {
        println!("{rounds} rounds of every row; each cell: median (min-max); ratios are per round");
    }
    println!("| generator | DUT | generator Mpps | DUT Mpps | vs XDP_DROP | vs kernel | vs kernel+RPS |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    for g in gens {
        let gname = if g == Gen::Ours { "ours (AF_XDP TX)" } else { "trafgen" };
        let all: Vec<_> = (0..rounds).map(|_| measure_rows(&w, g, secs)).collect();
        let ratios: Vec<_> = all.iter().map(|rows| round_ratios(rows)).collect();
        for (i, (name, ..)) in all[0].iter().enumerate() {
            // A failed generator measured 0: its rounds count as missing.
            let column =
                |f: &dyn Fn(usize) -> f64| -> Vec<f64> { (0..rounds).filter(|&r| all[r][i].1 > 0.0).map(f).collect() };
            let gm = column(&|r| all[r][i].1);
            if gm.is_empty() {
                println!(
                    "| {gname} | {name} | generator failed (see {}) | | | | |",
                    std::env::temp_dir().display()
                );
                continue;
            }
            let cells: Vec<String> = (0..3).map(|k| summary(column(&|r| ratios[r][i][k]), 2)).collect();
            println!(
                "| {gname} | {name} | {} | {} | {} | {} | {} |",
                summary(gm, 3),
                summary(column(&|r| all[r][i].2), 3),
                cells[0],
                cells[1],
                cells[2]
            );
        }
    }
}
