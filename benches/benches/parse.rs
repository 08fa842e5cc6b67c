#![allow(missing_docs)] // criterion_group! generates an undocumented public function.

//! One-pass parse versus etherparse's `SlicedPacket` (and bare smoltcp views) on the
//! same frames, in the same run. etherparse has no MPLS, GRE or VXLAN: for tunnels it
//! slices the outer packet, and the inner one is sliced again from the offset our
//! parser found, which is the least work a user of it would do.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
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
        g.bench_function("vrouter_wire", |b| {
            b.iter(|| {
                parse_into(black_box(&frame), &mut slot).is_ok() && black_box(&slot).innermost().key.dst_port != 0
            })
        });
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
            g.bench_function("smoltcp_three_views", |b| {
                b.iter(|| {
                    let f = black_box(&frame[..]);
                    let e = EthernetFrame::new_checked(f).ok()?;
                    let ip = Ipv4Packet::new_checked(e.payload()).ok()?;
                    UdpPacket::new_checked(ip.payload()).ok().map(|u| u.dst_port())
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench_parse);
criterion_main!(benches);
