#![allow(missing_docs)] // criterion_group! generates an undocumented public function.

//! The forwarding pipeline in memory, one core, bursts of 64 handed straight to the
//! handler (no port copies): L3 forward on a flow hit with 1K and 1M active flows, VXLAN
//! encapsulation on a hit (over IPv4, and over IPv6 with and without a UDP checksum), MPLSoUDP decapsulation on a hit, and
//! the flow-miss path (flow setup: policy, LPM, ECMP, a forward/reverse pair installed).
//! Each burst first rewrites the 64 frames (the pipeline edits packets in place), which is
//! included: one cached template per case with each flow's ports and checksums written in.
//! The setup rate and the 1- vs 2-worker hit rate are printed to stderr.

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group};
use dataplane::pipeline::{NodeConfig, Pipeline, PortConfig, PortRole, Tables};
use dataplane::{BURST, FramePool, Handler, Pkt, Verdict};
use fib::{Encap, Fib, FibBuilder, Neighbor, NeighborState, Nexthop};
use flow::{FlowTable, FlowTableConfig};
use policy::PolicyStore;
use wire::compose::{Header, frame};
use wire::ethernet::{EtherType, EthernetRepr, MacAddr};
use wire::ip::IpProtocol;
use wire::ipv4::Ipv4Repr;
use wire::mpls::MplsRepr;
use wire::udp::UdpRepr;

const W1: MacAddr = MacAddr([2, 0, 0, 0, 1, 1]);
const P0: MacAddr = MacAddr([2, 0xa, 0, 0, 0, 0]);
const P2: MacAddr = MacAddr([2, 0xa, 0, 0, 0, 2]);
const PEER: MacAddr = MacAddr([2, 0, 0, 0, 9, 9]);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn tables(flows: usize) -> Tables {
    tables_and_routes(flows).0
}

/// A change made before each burst of a churn case, given a nexthop id to use.
type Change = dyn Fn(&mut FibBuilder, u32);

/// [`tables`] and the builder of their routes, to publish changes.
fn tables_and_routes(flows: usize) -> (Tables, FibBuilder) {
    let fib = Arc::new(Fib::new());
    let mut b = FibBuilder::new();
    b.add_vrf(0).unwrap();
    b.add_vrf(1).unwrap();
    b.set_nexthop(1, Nexthop::Interface { port: 0, gateway: None }).unwrap();
    b.set_nexthop(2, Nexthop::Interface { port: 1, gateway: None }).unwrap();
    b.set_nexthop(3, Nexthop::Interface { port: 2, gateway: None }).unwrap();
    b.set_nexthop(
        4,
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
    b.set_nexthop(5, Nexthop::VrfTranslate { vrf: 1 }).unwrap();
    // The same VXLAN tunnel over an IPv6 underlay, with a computed UDP checksum (6) and a
    // zero one (7).
    for (id, zero_udp_checksum) in [(6, false), (7, true)] {
        let nh = Nexthop::Tunnel {
            encap: Encap::Vxlan { vni: 42 },
            src: ip("fd00:f::1"),
            dst: ip("fd00:f::2"),
            underlay_vrf: 0,
            router_mac: None,
            dscp: Default::default(),
            zero_udp_checksum,
        };
        b.set_nexthop(id, nh).unwrap();
    }
    b.add_route(1, ip("10.0.1.0"), 24, 1).unwrap();
    b.add_route(1, ip("10.0.2.0"), 24, 2).unwrap();
    b.add_route(1, ip("10.9.0.0"), 16, 4).unwrap();
    b.add_route(1, ip("10.8.0.0"), 16, 6).unwrap();
    b.add_route(1, ip("10.7.0.0"), 16, 7).unwrap();
    b.add_route(0, ip("192.0.2.0"), 24, 3).unwrap();
    b.add_route(0, ip("fd00:f::"), 64, 3).unwrap();
    b.set_label(100, 5).unwrap();
    let n = |mac| Neighbor {
        mac,
        state: NeighborState::Reachable,
    };
    for i in 0..=255u8 {
        b.set_neighbor(0, ip(&format!("10.0.1.{i}")), n(W1));
        b.set_neighbor(1, ip(&format!("10.0.2.{i}")), n(W1));
    }
    b.set_neighbor(2, ip("192.0.2.2"), n(PEER));
    b.set_neighbor(2, ip("fd00:f::2"), n(PEER));
    b.publish(&fib).unwrap();
    let wl = |name: &str, mac| PortConfig {
        name: name.into(),
        mac,
        mtu: 1500,
        addrs: vec![],
        vlan: None,
        role: PortRole::Workload {
            vrf: 1,
            addrs: vec![],
            mac: W1,
            gateways: vec![],
        },
    };
    let node = NodeConfig {
        ports: vec![
            wl("w1", P0),
            wl("w2", MacAddr([2, 0xa, 0, 0, 0, 1])),
            PortConfig {
                name: "fabric".into(),
                mac: P2,
                mtu: 9000,
                addrs: vec![ip("192.0.2.1")],
                vlan: None,
                role: PortRole::Fabric { vrf: 0 },
            },
        ],
        tunnel_endpoints: vec![ip("192.0.2.1")],
        ..Default::default()
    };
    // 8 slots per flow (4 per entry: each flow is a forward and a reverse entry), a quarter
    // load, the table size earlier runs measured (a power of two of buckets then); fuller
    // tables hit slower (docs/flow.md).
    let mut cfg = FlowTableConfig::with_capacity((flows * 8).max(8192));
    cfg.max_readers = 8;
    let t = Tables {
        fib,
        policy: Arc::new(PolicyStore::new()),
        flows: Arc::new(FlowTable::new(cfg).unwrap()),
        node: Arc::new(node),
        epoch: Instant::now(),
        taps: Default::default(),
        neighbors: Default::default(),
        path_mtus: Default::default(),
        flow_log: Default::default(),
    };
    (t, b)
}

/// A UDP packet from 10.0.1.x to `dst`, flow `i` (ports and the source's last byte vary).
fn l3(i: u32, dst: &str) -> Vec<u8> {
    let src = format!("10.0.1.{}", i >> 24);
    frame(
        &[
            Header::Ethernet(EthernetRepr {
                src: W1,
                dst: P0,
                ethertype: EtherType::Ipv4,
            }),
            Header::Ipv4(Ipv4Repr::new(
                src.parse().unwrap(),
                dst.parse().unwrap(),
                IpProtocol::Udp,
            )),
            Header::Udp(UdpRepr {
                src_port: (i & 0xffff) as u16,
                dst_port: 1000 + ((i >> 16) & 0xff) as u16,
            }),
        ],
        &[0u8; 18],
    )
    .unwrap()
}

fn mpls_udp(i: u32) -> Vec<u8> {
    frame(
        &[
            Header::Ethernet(EthernetRepr {
                src: PEER,
                dst: P2,
                ethertype: EtherType::Ipv4,
            }),
            Header::Ipv4(Ipv4Repr::new(
                "192.0.2.2".parse().unwrap(),
                "192.0.2.1".parse().unwrap(),
                IpProtocol::Udp,
            )),
            Header::Udp(UdpRepr {
                src_port: 50000,
                dst_port: 6635,
            }),
            Header::Mpls(MplsRepr {
                label: 100,
                tc: 0,
                bottom: true,
                ttl: 64,
            }),
            Header::Ipv4(Ipv4Repr::new(
                "10.9.0.1".parse().unwrap(),
                "10.0.2.2".parse().unwrap(),
                IpProtocol::Udp,
            )),
            Header::Udp(UdpRepr {
                src_port: (i & 0xffff) as u16,
                dst_port: 1000 + ((i >> 16) & 0xff) as u16,
            }),
        ],
        &[0u8; 18],
    )
    .unwrap()
}

/// A pipeline, a pool and 64 frames it holds.
struct Rig {
    pipe: Pipeline,
    pool: FramePool,
    frames: Vec<u64>,
    pkts: Vec<Pkt>,
    verdicts: Vec<Verdict>,
}

impl Rig {
    fn new(t: &Tables) -> Rig {
        let umem = Arc::new(
            af_xdp::Umem::new(af_xdp::UmemConfig {
                frame_count: 256,
                ..Default::default()
            })
            .unwrap(),
        );
        let mut pool = FramePool::new(umem, 3);
        let frames = (0..BURST).map(|_| pool.alloc().unwrap()).collect();
        Rig {
            pipe: Pipeline::new(t.clone()).unwrap(),
            pool,
            frames,
            pkts: vec![Pkt::default(); BURST],
            verdicts: vec![Verdict::Tx(0); BURST],
        }
    }

    /// Loads the frames of `flows` (at most a burst) and runs them through the pipeline on
    /// `port`; how many were forwarded.
    fn run(&mut self, port: u16, frames: &FlowFrames, flows: &[usize]) -> usize {
        self.load(frames, flows);
        let n = flows.len();
        self.pipe
            .process(port, &mut self.pkts[..n], &mut self.pool, &mut self.verdicts[..n]);
        self.verdicts[..n]
            .iter()
            .filter(|v| matches!(v, Verdict::Tx(_)))
            .count()
    }

    /// Writes the frames of `flows` into the burst's frames: the harness's share of `run`.
    fn load(&mut self, frames: &FlowFrames, flows: &[usize]) {
        let head = u64::from(self.pool.headroom());
        let len = frames.template.len();
        for (k, &i) in flows.iter().enumerate() {
            let addr = self.frames[k] + head;
            frames.write(i, self.pool.bytes_mut(addr, len));
            self.pkts[k] = Pkt { addr, len: len as u32 };
        }
    }
}

/// The frames of many flows, kept as one template and each flow's few differing bytes
/// (ports and checksums). Loading a burst reads the same cached template whatever the
/// number of flows, as a NIC's frames arrive whatever the flow table holds: a million
/// separately allocated frames made the harness's own cache misses part of the 1M-flow
/// figure.
struct FlowFrames {
    template: Vec<u8>,
    /// Offsets at which some flow's frame differs from the template.
    at: Vec<usize>,
    /// Flow i's bytes at those offsets: `bytes[i * at.len()..][..at.len()]`.
    bytes: Vec<u8>,
    flows: usize,
}

impl FlowFrames {
    /// Frames `make(0..n)`, which must share one length.
    fn new(n: u32, make: impl Fn(u32) -> Vec<u8>) -> FlowFrames {
        let all: Vec<Vec<u8>> = (0..n).map(make).collect();
        let template = all[0].clone();
        assert!(all.iter().all(|f| f.len() == template.len()), "one frame length");
        let at: Vec<usize> = (0..template.len())
            .filter(|&p| all.iter().any(|f| f[p] != template[p]))
            .collect();
        let bytes = all.iter().flat_map(|f| at.iter().map(|&p| f[p])).collect();
        let frames = FlowFrames {
            template,
            at,
            bytes,
            flows: all.len(),
        };
        let mut out = vec![0; frames.template.len()];
        for (i, f) in all.iter().enumerate() {
            frames.write(i, &mut out);
            assert_eq!(&out, f, "flow {i}'s frame rebuilt");
        }
        frames
    }

    fn write(&self, i: usize, out: &mut [u8]) {
        out.copy_from_slice(&self.template);
        let k = self.at.len();
        for (&p, &b) in self.at.iter().zip(&self.bytes[i * k..(i + 1) * k]) {
            out[p] = b;
        }
    }
}

/// Installs `n` flows built by `make` (run on `port`) and returns their frames.
fn install(rig: &mut Rig, port: u16, n: u32, make: impl Fn(u32) -> Vec<u8>) -> FlowFrames {
    let frames = FlowFrames::new(n, make);
    let all: Vec<usize> = (0..frames.flows).collect();
    for chunk in all.chunks(BURST) {
        let sent = rig.run(port, &frames, chunk);
        assert_eq!(sent, chunk.len(), "every packet forwarded");
    }
    frames
}

/// Bursts of `flows` in a scattered order through `rig` on `port`; with `only_load`, just
/// the frame loading every case includes (the harness's cost, to read the others by).
fn bench_hits(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    rig: &mut Rig,
    port: u16,
    flows: &FlowFrames,
    only_load: bool,
) {
    let mut walk = Walk::default();
    g.bench_function(name, |b| {
        b.iter(|| {
            let burst = walk.next(flows.flows);
            if only_load {
                rig.load(flows, &burst);
                black_box(&rig.pkts);
                return 0;
            }
            black_box(rig.run(port, flows, &burst))
        })
    });
}

/// A scattered walk over the flows, burst by burst.
struct Walk {
    at: usize,
    stride: usize,
}

impl Default for Walk {
    fn default() -> Self {
        Walk { at: 0, stride: 0x9e37 }
    }
}

impl Walk {
    /// The next burst's flow indexes: the same walk as `at = (at + stride) % flows`, one
    /// division per burst.
    fn next(&mut self, flows: usize) -> [usize; BURST] {
        let step = self.stride % flows;
        let mut burst = [0; BURST];
        for slot in burst.iter_mut() {
            self.at += step;
            if self.at >= flows {
                self.at -= flows;
            }
            *slot = self.at;
        }
        self.stride = self.stride.wrapping_add(2) | 1;
        burst
    }
}

/// The hit cases without criterion: `VR_PIPELINE_COUNT=case,bursts[,size]` with case `l3`,
/// `vxlan`, `vxlan6` (over IPv6), `vxlan6_zero` (with a zero UDP checksum) or `mpls` (1K
/// flows), `l3_1m` (1M flows), `load` (the L3 case's frame loading
/// alone, the harness's share of every case) or `setup` (every packet a new flow, the miss
/// path) sets up that case, runs that many bursts of `size` packets (default 64; the hit
/// cases only: what a worker polling a lightly loaded port sees) and prints their wall time
/// per packet. For instruction counts under callgrind
/// (`scripts/pipeline-instructions`), and for many short interleaved timings
/// (`scripts/pipeline-rounds`): on a machine whose speed moves from one second to the
/// next, the fastest of many short rounds says more than one long one.
fn count(spec: &str) {
    let mut fields = spec.split(',');
    let (case, bursts) = (
        fields.next().unwrap_or_default(),
        fields.next().expect("VR_PIPELINE_COUNT=case,bursts"),
    );
    let bursts: usize = bursts.parse().expect("a number of bursts");
    let size: usize = fields.next().map_or(BURST, |s| s.parse().expect("a burst size"));
    assert!((1..=BURST).contains(&size), "a burst size of 1 to {BURST}");
    if case == "setup" {
        return count_setup(bursts);
    }
    let (port, dst, n): (u16, Option<&str>, u32) = match case {
        "l3" | "load" => (0, Some("10.0.2.2"), 1000),
        "l3_1m" => (0, Some("10.0.2.2"), 1_000_000),
        "vxlan" => (0, Some("10.9.0.5"), 1000),
        "vxlan6" => (0, Some("10.8.0.5"), 1000),
        "vxlan6_zero" => (0, Some("10.7.0.5"), 1000),
        "mpls" => (2, None, 1000),
        _ => panic!("case l3, l3_1m, vxlan, vxlan6, vxlan6_zero, mpls, load or setup, not {case}"),
    };
    let t = tables(n as usize);
    let mut rig = Rig::new(&t);
    let flows = match dst {
        Some(d) => install(&mut rig, port, n, |i| l3(i, d)),
        None => install(&mut rig, port, n, mpls_udp),
    };
    let mut walk = Walk::default();
    let start = Instant::now();
    for _ in 0..bursts {
        let burst = &walk.next(flows.flows)[..size];
        if case == "load" {
            rig.load(&flows, burst);
            black_box(&rig.pkts);
        } else {
            black_box(rig.run(port, &flows, burst));
        }
    }
    if bursts > 0 {
        let ns = start.elapsed().as_nanos() as f64 / (bursts * size) as f64;
        println!("{case} {ns:.1} ns per packet");
    }
}

/// The `setup` case of [`count`]: `bursts` bursts of new flows (at most
/// [`SETUP_FLOWS`] / 64) into an empty table sized for 1M flows.
fn count_setup(bursts: usize) {
    assert!(
        bursts * BURST <= SETUP_FLOWS,
        "at most {} bursts of new flows",
        SETUP_FLOWS / BURST
    );
    let fresh = FlowFrames::new(SETUP_FLOWS as u32, |i| l3(i, "10.0.2.2"));
    let t = tables(1 << 20);
    let mut rig = Rig::new(&t);
    let order: Vec<usize> = (0..bursts * BURST).collect();
    let start = Instant::now();
    for burst in order.chunks(BURST) {
        black_box(rig.run(0, &fresh, burst));
    }
    if bursts > 0 {
        let ns = start.elapsed().as_nanos() as f64 / (bursts * BURST) as f64;
        println!("setup {ns:.1} ns per packet");
    }
}

/// New flows the `setup` count case has frames for.
const SETUP_FLOWS: usize = 1 << 17;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(BURST as u64));
    for (label, n) in [("1k", 1_000u32), ("1m", 1_000_000)] {
        let t = tables(n as usize);
        let mut rig = Rig::new(&t);
        let t0 = Instant::now();
        let flows = install(&mut rig, 0, n, |i| l3(i, "10.0.2.2"));
        eprintln!(
            "pipeline: installed {n} flow pairs in {:?} ({:.2} M new flows/s incl. packets)",
            t0.elapsed(),
            n as f64 / t0.elapsed().as_secs_f64() / 1e6
        );
        bench_hits(&mut g, &format!("l3_forward_hit/{label}"), &mut rig, 0, &flows, false);
        if n == 1_000 {
            bench_hits(&mut g, "harness_frame_load/1k", &mut rig, 0, &flows, true);
        }
    }
    {
        let t = tables(1000);
        let mut rig = Rig::new(&t);
        let flows = install(&mut rig, 0, 1000, |i| l3(i, "10.9.0.5"));
        bench_hits(&mut g, "vxlan_encap_hit/1k", &mut rig, 0, &flows, false);
        let t = tables(1000);
        let mut rig = Rig::new(&t);
        let flows = install(&mut rig, 0, 1000, |i| l3(i, "10.8.0.5"));
        bench_hits(&mut g, "vxlan_over_ipv6_encap_hit/1k", &mut rig, 0, &flows, false);
        let t = tables(1000);
        let mut rig = Rig::new(&t);
        let flows = install(&mut rig, 0, 1000, |i| l3(i, "10.7.0.5"));
        bench_hits(
            &mut g,
            "vxlan_over_ipv6_zero_checksum_encap_hit/1k",
            &mut rig,
            0,
            &flows,
            false,
        );
        let t = tables(1000);
        let mut rig = Rig::new(&t);
        let flows = install(&mut rig, 2, 1000, mpls_udp);
        bench_hits(&mut g, "mplsoudp_decap_hit/1k", &mut rig, 2, &flows, false);
    }
    // Route churn: a route published before every burst (untimed), beside the flows'
    // destination (each flow finds its decision still current) or holding it (each flow
    // is decided again); or a nexthop no flow's way passes redefined (a service's group
    // changing its backends, say: each flow finds its decision still current).
    {
        let (t, mut b) = tables_and_routes(1000);
        let mut rig = Rig::new(&t);
        let flows = install(&mut rig, 0, 1000, |i| l3(i, "10.0.2.2"));
        let route = |prefix: &'static str| {
            move |b: &mut FibBuilder, nexthop: u32| b.add_route(1, ip(prefix), 24, nexthop).unwrap()
        };
        let unused_nexthop =
            |b: &mut FibBuilder, port: u32| b.set_nexthop(40, Nexthop::Interface { port, gateway: None }).unwrap();
        let changes: [(&str, &Change); 3] = [
            ("l3_hit_after_publish_beside/1k", &route("10.0.3.0")),
            ("l3_hit_after_publish_holding/1k", &route("10.0.2.0")),
            ("l3_hit_after_nexthop_change_beside/1k", &unused_nexthop),
        ];
        for (name, change) in changes {
            let mut walk = Walk::default();
            let mut nexthop = 2;
            g.bench_function(name, |bench| {
                bench.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        nexthop = 5 - nexthop;
                        change(&mut b, nexthop);
                        b.publish(&t.fib).unwrap();
                        let burst = walk.next(flows.flows);
                        let t0 = Instant::now();
                        black_box(rig.run(0, &flows, &burst));
                        total += t0.elapsed();
                    }
                    total
                })
            });
        }
    }
    // The same churn beside the flows, published by a thread on the other CPU, as a
    // control plane does, while this one (pinned) forwards: what a publish costs the
    // worker without the publish's own work on its core.
    if dataplane::online_cpus().len() >= 2 {
        let (t, mut b) = tables_and_routes(1000);
        let mut rig = Rig::new(&t);
        let flows = install(&mut rig, 0, 1000, |i| l3(i, "10.0.2.2"));
        let fib = t.fib.clone();
        // Publishes asked for and made; both sides spin (a worker polls, it does not
        // sleep), u64::MAX asks the publisher to stop.
        let (asked, made) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let publisher = {
            let (asked, made) = (asked.clone(), made.clone());
            std::thread::spawn(move || {
                let _ = dataplane::pin_current_thread(dataplane::online_cpus()[1]);
                let mut nexthop = 2;
                loop {
                    let n = asked.load(Ordering::Acquire);
                    if n == u64::MAX {
                        break;
                    }
                    if n == made.load(Ordering::Relaxed) {
                        std::hint::spin_loop();
                        continue;
                    }
                    nexthop = 5 - nexthop;
                    b.add_route(1, ip("10.0.3.0"), 24, nexthop).unwrap();
                    b.publish(&fib).unwrap();
                    made.store(n, Ordering::Release);
                }
            })
        };
        let affinity = Affinity::pin(dataplane::online_cpus()[0]);
        let mut walk = Walk::default();
        g.bench_function("l3_hit_after_publish_beside_other_cpu/1k", |bench| {
            bench.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let n = asked.fetch_add(1, Ordering::AcqRel) + 1;
                    while made.load(Ordering::Acquire) != n {
                        std::hint::spin_loop();
                    }
                    let burst = walk.next(flows.flows);
                    let t0 = Instant::now();
                    black_box(rig.run(0, &flows, &burst));
                    total += t0.elapsed();
                }
                total
            })
        });
        drop(affinity);
        asked.store(u64::MAX, Ordering::Release);
        publisher.join().unwrap();
    }
    // The miss path: every packet a new flow (policy, LPM, pair insert), back to back, into
    // tables that live across samples (as a router's do) and are refilled from empty
    // (untimed) after 1M flows.
    let fresh = FlowFrames::new(1 << 20, |i| l3(i, "10.0.2.2"));
    bench_setup(&mut g, "flow_setup_miss", || tables(1 << 20), &fresh);
    // The same into a VRF of 1M /24 routes (a full table's size), each flow to another
    // of them: the route lookups miss the cache as a router's do.
    let spread = FlowFrames::new(1 << 20, |i| {
        let a = 0x4000_0000u32 | ((i.wrapping_mul(0x9e37_79b1) >> 12) << 8) | 1;
        l3(i, &std::net::Ipv4Addr::from(a).to_string())
    });
    bench_setup(&mut g, "flow_setup_miss_1m_routes", big_fib_tables, &spread);
    g.finish();
    two_workers();
}

/// Flow setup: bursts of `frames`' flows, each new, through a pipeline over `make()`'s
/// tables, made afresh (untimed) once every flow was installed.
fn bench_setup(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    make: impl Fn() -> Tables,
    frames: &FlowFrames,
) {
    let order: Vec<usize> = (0..frames.flows).collect();
    let mut bursts = order.chunks(BURST).cycle();
    let mut t = make();
    let mut rig = Rig::new(&t);
    let mut installed = 0;
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                if installed == frames.flows {
                    t = make();
                    rig = Rig::new(&t);
                    installed = 0;
                }
                let burst = bursts.next().expect("cycles");
                installed += burst.len();
                let s = Instant::now();
                black_box(rig.run(0, frames, burst));
                total += s.elapsed();
            }
            total
        })
    });
}

/// [`tables`] for 1M flows, with VRF 1 holding 1M more routes: the /24s of 64.0.0.0/4,
/// through a gateway on w2.
fn big_fib_tables() -> Tables {
    let (t, mut b) = tables_and_routes(1 << 20);
    b.set_nexthop(
        6,
        Nexthop::Interface {
            port: 1,
            gateway: Some(ip("10.0.2.5")),
        },
    )
    .unwrap();
    for i in 0..1u32 << 20 {
        b.add_route(1, std::net::Ipv4Addr::from(0x4000_0000 | (i << 8)).into(), 24, 6)
            .unwrap();
    }
    b.publish(&t.fib).unwrap();
    t
}

/// This thread pinned to one CPU until dropped, when it gets its former CPUs back (the
/// benches after it run where they did).
struct Affinity(libc::cpu_set_t);

impl Affinity {
    fn pin(cpu: usize) -> Affinity {
        // SAFETY: a zeroed cpu_set_t is a valid (empty) set; sched_getaffinity fills it for
        // this thread (pid 0) and writes at most its size.
        let mut former: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut former) };
        let _ = dataplane::pin_current_thread(cpu);
        Affinity(former)
    }
}

impl Drop for Affinity {
    fn drop(&mut self) {
        // SAFETY: restores the set sched_getaffinity gave, for this thread only.
        unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &self.0) };
    }
}

/// Hit rate with one and with two workers sharing the flow table (1K flows each), in
/// alternating one-second rounds: this VM's speed moves from second to second, and a
/// single long run of each let a change between them decide the ratio.
fn two_workers() {
    let t = tables(2000);
    let run = |workers: u32| {
        let stop = Instant::now() + Duration::from_secs(1);
        std::thread::scope(|s| {
            let hs: Vec<_> = (0..workers)
                .map(|w| {
                    let t = t.clone();
                    s.spawn(move || {
                        let _ = dataplane::pin_current_thread(w as usize % dataplane::online_cpus().len());
                        let mut rig = Rig::new(&t);
                        let flows = install(&mut rig, 0, 1000, |i| l3(i + w * 1000, "10.0.2.2"));
                        let order: Vec<usize> = (0..flows.flows).collect();
                        let mut pkts = 0u64;
                        let start = Instant::now();
                        let mut at = 0;
                        while Instant::now() < stop {
                            let burst = &order[at..at + BURST];
                            at = (at + BURST) % (order.len() - BURST);
                            pkts += rig.run(0, &flows, burst) as u64;
                        }
                        pkts as f64 / start.elapsed().as_secs_f64()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum::<f64>()
        })
    };
    let (mut one, mut two) = (Vec::new(), Vec::new());
    for _ in 0..WORKER_ROUNDS {
        one.push(run(1));
        two.push(run(2));
    }
    let ratios: Vec<String> = one.iter().zip(&two).map(|(a, b)| format!("{:.2}", b / a)).collect();
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (one, two) = (median(&mut one), median(&mut two));
    eprintln!(
        "pipeline l3 hit, 1K flows, medians of {WORKER_ROUNDS} alternating rounds: 1 worker {:.2} Mpps, \
         2 workers {:.2} Mpps ({:.2}x; per round {})",
        one / 1e6,
        two / 1e6,
        two / one,
        ratios.join(" ")
    );
}

/// Rounds of each worker count in [`two_workers`].
const WORKER_ROUNDS: usize = 5;

criterion_group!(benches, bench);

fn main() {
    if let Ok(spec) = std::env::var("VR_PIPELINE_COUNT") {
        count(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
