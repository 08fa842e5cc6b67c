#![allow(missing_docs)] // criterion_group! generates an undocumented public function.

//! One-pass parse versus etherparse's `SlicedPacket` (and bare smoltcp views) on the
//! same frames, in the same run. etherparse has no MPLS, GRE or VXLAN: for tunnels it
//! slices the outer packet, and the inner one is sliced again from the offset our
//! parser found, which is the least work a user of it would do.

use std::hint::black_box;

use criterion::{Criterion, criterion_group};
use etherparse::SlicedPacket;
use smoltcp::wire::{EthernetFrame, Ipv4Packet, UdpPacket};
use vrouter_benches::frames;
use wire::parse::{PacketMeta, Tunnel, parse, parse_into};

fn bench_parse(c: &mut Criterion) {
    for (name, frame) in frames() {
        let meta = parse(&frame).expect("benchmark frame parses");
        let mut g = c.benchmark_group(format!("parse/{name}"));
        // The pipeline's form: parse into a reused metadata slot.
        let mut slot = PacketMeta::default();
        g.bench_function("vrouter_wire", |b| b.iter(|| ours(black_box(&frame), &mut slot)));
        match meta.tunnel {
            Tunnel::None => {
                g.bench_function("etherparse_sliced", |b| {
                    b.iter(|| SlicedPacket::from_ethernet(black_box(&frame)).is_ok())
                });
            }
            Tunnel::Vxlan { .. } => {
                let inner = usize::from(meta.inner.l2);
                g.bench_function("etherparse_sliced_outer_inner", |b| {
                    b.iter(|| {
                        let f = black_box(&frame);
                        SlicedPacket::from_ethernet(f).is_ok() && SlicedPacket::from_ethernet(&f[inner..]).is_ok()
                    })
                });
            }
            _ => {
                let inner = usize::from(meta.inner.l3);
                g.bench_function("etherparse_sliced_outer_inner", |b| {
                    b.iter(|| {
                        let f = black_box(&frame);
                        SlicedPacket::from_ethernet(f).is_ok() && SlicedPacket::from_ip(&f[inner..]).is_ok()
                    })
                });
            }
        }
        if name == "udp4" {
            g.bench_function("smoltcp_three_views", |b| b.iter(|| smoltcp_views(black_box(&frame))));
        }
        g.finish();
    }
}

/// Our one-pass parse into a reused slot, as the `vrouter_wire` bench runs it. Inlined
/// into the bench loop, as the pipeline inlines it into its per-burst loop and as the
/// compiler inlines [`smoltcp_views`] (both are forced, so neither depends on its choice).
/// Each parser's result escapes through `black_box` and nothing else reads it: the
/// metadata here (so every field must be written), the port and the `Option` there.
#[inline(always)]
fn ours(frame: &[u8], slot: &mut PacketMeta) -> bool {
    let ok = parse_into(frame, slot).is_ok();
    black_box(&*slot);
    ok
}

/// Three bare smoltcp views (Ethernet, IPv4, UDP) that extract nothing but the port.
#[inline(always)]
fn smoltcp_views(f: &[u8]) -> Option<u16> {
    let e = EthernetFrame::new_checked(f).ok()?;
    let ip = Ipv4Packet::new_checked(e.payload()).ok()?;
    UdpPacket::new_checked(ip.payload()).ok().map(|u| u.dst_port())
}

/// `VR_PARSE_COUNT=frame,parser,n` (parser `vrouter` or `smoltcp`): parses that frame n
/// times, prints the wall time per parse and exits. For instruction counts under
/// callgrind (the difference of two counts, n and 0, over n is the parser's instructions
/// per frame, loop included) and for short interleaved rounds (`scripts/parse-rounds`).
fn count(spec: &str) {
    let [name, parser, n] = spec.split(',').collect::<Vec<_>>()[..] else {
        panic!("VR_PARSE_COUNT=frame,parser,n");
    };
    let n: usize = n.parse().expect("a number of parses");
    let frame = frames()
        .into_iter()
        .find_map(|(f, bytes)| (f == name).then_some(bytes))
        .expect("a frame of vrouter_benches::frames()");
    let mut slot = PacketMeta::default();
    let start = std::time::Instant::now();
    let ok = match parser {
        "vrouter" => (0..n).filter(|_| ours(black_box(&frame), &mut slot)).count(),
        "smoltcp" => (0..n)
            .filter(|_| black_box(smoltcp_views(black_box(&frame))).is_some())
            .count(),
        _ => panic!("parser vrouter or smoltcp, not {parser}"),
    };
    let ns = start.elapsed().as_nanos() as f64 / n.max(1) as f64;
    assert_eq!(ok, n, "every parse succeeds");
    println!("{name},{parser} {ns:.2} ns per frame");
}

criterion_group!(benches, bench_parse);

fn main() {
    if let Ok(spec) = std::env::var("VR_PARSE_COUNT") {
        count(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
