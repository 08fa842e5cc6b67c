//! The FIB through its public API: builder edits against a model, resolution of every
//! nexthop kind and every miss, RCU publication under concurrent readers, ECMP quality,
//! memory of many small VRFs, and configuration errors.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};

use fib::{ECMP_BUCKETS, Encap, Fib, FibBuilder, HashFields, Miss, Neighbor, NeighborState, Nexthop, Resolution};
use proptest::prelude::*;
use wire::ethernet::MacAddr;
use wire::flow::FlowKey;

fn v4(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[derive(Debug, Clone)]
enum Op {
    Add(u32, bool, u128, u8, u32),
    Remove(u32, bool, u128, u8),
    Publish,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u32..3, any::<bool>(), any::<u128>(), any::<u8>(), 0u32..50).prop_map(|(v, six, a, l, n)| Op::Add(v, six, a, l, n)),
        2 => (0u32..3, any::<bool>(), any::<u128>(), any::<u8>()).prop_map(|(v, six, a, l)| Op::Remove(v, six, a, l)),
        1 => Just(Op::Publish),
    ]
}

/// Turns random bits into a clustered prefix (so routes nest, and removes hit).
fn prefix(six: bool, a: u128, l: u8) -> (IpAddr, u8) {
    if six {
        let len = l % 129;
        let a =
            ((a & 0xffff) << 64 | 0x2001_0db8u128 << 96) & (u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0));
        (IpAddr::V6(Ipv6Addr::from(a)), len)
    } else {
        let len = l % 33;
        let a = (0x0a00_0000 | (a as u32 & 0x00ff_ffff)) & (u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0));
        (IpAddr::V4(Ipv4Addr::from(a)), len)
    }
}

fn covers(net: IpAddr, len: u8, a: IpAddr) -> bool {
    match (net, a) {
        (IpAddr::V4(n), IpAddr::V4(a)) => len == 0 || (u32::from(n) ^ u32::from(a)) >> (32 - u32::from(len)) == 0,
        (IpAddr::V6(n), IpAddr::V6(a)) => len == 0 || (u128::from(n) ^ u128::from(a)) >> (128 - u32::from(len)) == 0,
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn builder_matches_model(ops in proptest::collection::vec(op(), 1..120), probes in proptest::collection::vec((any::<bool>(), any::<u128>()), 40)) {
        let fib = Fib::new();
        let mut b = FibBuilder::new();
        for v in 0..3 {
            b.add_vrf(v).unwrap();
        }
        // The model: what was published, per VRF.
        let mut pending: BTreeMap<(u32, IpAddr, u8), u32> = BTreeMap::new();
        let mut published = pending.clone();
        for op in ops {
            match op {
                Op::Add(v, six, a, l, nh) => {
                    let (net, len) = prefix(six, a, l);
                    b.add_route(v, net, len, nh).unwrap();
                    pending.insert((v, net, len), nh);
                }
                Op::Remove(v, six, a, l) => {
                    let (net, len) = prefix(six, a, l);
                    prop_assert_eq!(b.remove_route(v, net, len), pending.remove(&(v, net, len)).is_some());
                }
                Op::Publish => {
                    b.publish(&fib).unwrap();
                    published = pending.clone();
                }
            }
            // Readers see exactly the last published batch.
            let snap = fib.snapshot();
            for &(six, bits) in &probes {
                let (addr, _) = prefix(six, bits, 128);
                for v in 0..3 {
                    let want = published
                        .iter()
                        .filter(|((pv, net, len), _)| *pv == v && covers(*net, *len, addr))
                        .max_by_key(|((_, _, len), _)| *len)
                        .map(|(_, nh)| *nh);
                    let got = snap.lookup(v, addr).ok();
                    prop_assert_eq!(got, want, "vrf {} addr {}", v, addr);
                }
            }
        }
    }
}

#[test]
fn resolution_of_every_nexthop_kind() {
    let fib = Fib::new();
    let mut b = FibBuilder::new();
    for v in [0, 1, 2, 3] {
        b.add_vrf(v).unwrap();
    }
    let mac = MacAddr([2, 0, 0, 0, 0, 9]);
    b.set_nexthop(
        1,
        Nexthop::Interface {
            port: 3,
            gateway: Some(v4("192.0.2.1")),
        },
    )
    .unwrap();
    b.set_nexthop(2, Nexthop::Discard).unwrap();
    b.set_nexthop(3, Nexthop::Receive).unwrap();
    b.set_nexthop(4, Nexthop::VrfTranslate { vrf: 0 }).unwrap();
    b.set_nexthop(
        5,
        Nexthop::Tunnel {
            encap: Encap::MplsOverUdp { label: 100 },
            src: v4("192.0.2.10"),
            dst: v4("198.51.100.7"),
            underlay_vrf: 0,
            router_mac: None,
            dscp: Default::default(),
            zero_udp_checksum: false,
        },
    )
    .unwrap();
    b.set_nexthop(6, Nexthop::Interface { port: 4, gateway: None }).unwrap();
    b.set_nexthop(
        7,
        Nexthop::Ecmp {
            members: vec![(1, 1), (6, 1)],
        },
    )
    .unwrap();
    b.set_nexthop(8, Nexthop::VrfTranslate { vrf: 3 }).unwrap();
    // Tunnels whose underlay has no route, or ends in the router itself.
    for (id, outer) in [(9, "11.0.0.1"), (10, "10.2.0.1")] {
        let t = Nexthop::Tunnel {
            encap: Encap::Vxlan { vni: 7 },
            src: v4("192.0.2.10"),
            dst: v4(outer),
            underlay_vrf: 1,
            router_mac: None,
            dscp: Default::default(),
            zero_udp_checksum: false,
        };
        b.set_nexthop(id, t).unwrap();
    }
    b.set_neighbor(
        3,
        v4("192.0.2.1"),
        Neighbor {
            mac,
            state: NeighborState::Reachable,
        },
    );
    b.set_neighbor(
        4,
        v4("10.9.0.5"),
        Neighbor {
            mac,
            state: NeighborState::Incomplete,
        },
    );
    b.add_route(0, v4("0.0.0.0"), 0, 1).unwrap();
    b.add_route(0, v4("10.9.0.0"), 16, 6).unwrap();
    b.add_route(1, v4("10.1.0.0"), 16, 2).unwrap();
    b.add_route(1, v4("10.2.0.1"), 32, 3).unwrap();
    b.add_route(1, v4("10.3.0.0"), 16, 4).unwrap();
    b.add_route(1, v4("10.4.0.0"), 16, 5).unwrap();
    b.add_route(1, v4("10.5.0.0"), 16, 7).unwrap();
    b.add_route(1, v4("10.6.0.0"), 16, 99).unwrap();
    b.add_route(1, v4("10.7.0.0"), 16, 9).unwrap();
    b.add_route(1, v4("10.8.0.0"), 16, 10).unwrap();
    b.add_route(2, v4("0.0.0.0"), 0, 8).unwrap();
    b.add_route(3, v4("0.0.0.0"), 0, 8).unwrap();
    b.set_label(100, 3).unwrap();
    b.set_vni(5001, 1).unwrap();
    assert_eq!(b.publish(&fib).unwrap(), 1);
    let s = fib.snapshot();
    let r = |vrf, a| s.resolve(vrf, v4(a), 0x1234_5678_9abc_def0);
    assert_eq!(r(1, "10.1.2.3").unwrap().resolution, Resolution::Discard);
    assert_eq!(r(1, "10.2.0.1").unwrap().resolution, Resolution::Receive);
    assert_eq!(
        r(1, "10.3.0.1").unwrap().resolution,
        Resolution::Interface {
            port: 3,
            next_hop: v4("192.0.2.1"),
            mac: Some(mac)
        }
    );
    assert_eq!(
        r(1, "10.4.0.1").unwrap().resolution,
        Resolution::Tunnel {
            encap: Encap::MplsOverUdp { label: 100 },
            src: v4("192.0.2.10"),
            dst: v4("198.51.100.7"),
            port: 3,
            next_hop: v4("192.0.2.1"),
            mac: Some(mac)
        }
    );
    // An incomplete neighbour is a usable route with no MAC yet.
    assert_eq!(
        s.resolve(0, v4("10.9.0.5"), 0).unwrap().resolution,
        Resolution::Interface {
            port: 4,
            next_hop: v4("10.9.0.5"),
            mac: None
        }
    );
    assert_eq!(r(1, "10.6.0.1"), Err(Miss::UnresolvedNexthop(99)));
    assert_eq!(r(1, "11.0.0.1"), Err(Miss::NoRoute));
    assert_eq!(r(9, "10.1.0.1"), Err(Miss::NoVrf));
    assert_eq!(r(2, "1.2.3.4"), Err(Miss::TranslateLoop));
    assert_eq!(
        (s.label(100), s.label(101), s.vni(5001), s.vni(1)),
        (Some(3), None, Some(1), None)
    );
    assert_eq!(
        fib.stats().get(),
        (2, 1, 1),
        "no route, unresolved nexthop, translate loop"
    );
    // ECMP: members chosen by hash; both appear over many flows.
    let mut seen = std::collections::BTreeSet::new();
    for h in 0..64u64 {
        let res = s
            .resolve(1, v4("10.5.0.1"), h.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .unwrap();
        assert!(res.by_hash, "an ECMP pick depends on the flow");
        seen.insert((res.nexthop, res.ecmp_member));
    }
    assert!(
        !s.resolve(0, v4("10.9.0.5"), 0).unwrap().by_hash,
        "a plain route does not"
    );
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec![(1, 0), (6, 1)]);
    // `route` (flow setup) is `resolve` without the neighbours: the same nexthop, member
    // and misses, a tunnel's underlay included.
    assert_eq!(r(1, "10.7.0.1"), Err(Miss::NoRoute));
    assert_eq!(r(1, "10.8.0.1"), Err(Miss::UnresolvedNexthop(10)));
    let probes = [
        "10.1.2.3", "10.2.0.1", "10.3.0.1", "10.4.0.1", "10.5.0.1", "10.6.0.1", "10.7.0.1", "10.8.0.1", "10.9.0.5",
        "11.0.0.1", "1.2.3.4",
    ];
    for vrf in [0, 1, 2, 3, 9] {
        for a in probes {
            for h in [0u64, 7, 0x1234_5678_9abc_def0, u64::MAX] {
                let full = s.resolve(vrf, v4(a), h).map(|r| (r.nexthop, r.ecmp_member, r.by_hash));
                let route = s.route(vrf, v4(a), h).map(|r| (r.nexthop, r.ecmp_member, r.by_hash));
                assert_eq!(route, full, "vrf {vrf} {a} hash {h:#x}");
            }
        }
    }
}

#[test]
fn a_snapshot_lists_its_vrfs() {
    let fib = Fib::new();
    let mut b = FibBuilder::new();
    for v in [7, 0, 300] {
        b.add_vrf(v).unwrap();
    }
    b.publish(&fib).unwrap();
    assert_eq!(fib.snapshot().vrf_ids().collect::<Vec<_>>(), [0, 7, 300]);
}

#[test]
fn bad_changes_name_what_is_wrong() {
    let mut b = FibBuilder::new();
    b.add_vrf(1).unwrap();
    let e = b.add_route(1, v4("10.0.0.1"), 8, 1).unwrap_err();
    assert_eq!(e.what, "route");
    assert!(e.detail.contains("10.0.0.1/8") && e.detail.contains("host bits"), "{e}");
    assert!(
        b.add_route(1, v4("10.0.0.0"), 33, 1)
            .unwrap_err()
            .detail
            .contains("above 32")
    );
    assert!(
        b.add_route(2, v4("10.0.0.0"), 8, 1)
            .unwrap_err()
            .detail
            .contains("VRF 2")
    );
    assert_eq!(b.set_label(1 << 20, 1).unwrap_err().what, "label");
    assert_eq!(b.set_vni(1 << 24, 1).unwrap_err().what, "vni");
    b.set_nexthop(1, Nexthop::Ecmp { members: vec![(2, 1)] }).unwrap();
    assert!(
        b.set_nexthop(3, Nexthop::Ecmp { members: vec![(1, 1)] })
            .unwrap_err()
            .detail
            .contains("itself an ECMP")
    );
    assert!(b.set_nexthop(4, Nexthop::Ecmp { members: vec![] }).is_err());
}

#[test]
fn readers_never_see_half_a_batch() {
    batches_under_readers(false, 300);
}

/// The same with VRF 1 big in both families, so that each batch patches a spare table:
/// one a reader still held would show it half written.
#[test]
fn readers_never_see_half_a_patch() {
    batches_under_readers(true, 60);
}

/// Publishes `generations` batches, each pointing 64 IPv4 and 64 IPv6 routes at nexthop
/// `g`, while two threads read: every snapshot a reader takes must have all of them at
/// its own generation.
fn batches_under_readers(big: bool, generations: u32) {
    let fib = Fib::new();
    let mut b = FibBuilder::new();
    b.add_vrf(1).unwrap();
    let prefixes: Vec<(IpAddr, u8)> = (0..64u32)
        .flat_map(|i| {
            [
                (IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + (i << 8))), 24),
                (
                    IpAddr::V6(Ipv6Addr::from((0x2001_0db8u128 << 96) | (u128::from(i) << 80))),
                    48,
                ),
            ]
        })
        .collect();
    if big {
        // Others, to make the tables big: patched, not compiled.
        for i in 0..2100u32 {
            b.add_route(1, IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + (i << 8))), 24, 0)
                .unwrap();
            b.add_route(
                1,
                IpAddr::V6(Ipv6Addr::from(0xfd00u128 << 112 | u128::from(i) << 80)),
                48,
                0,
            )
            .unwrap();
        }
    }
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                let mut last = 0;
                let mut checks = 0u64;
                while !stop.load(Ordering::Relaxed) || checks == 0 {
                    let published = fib.generation();
                    let snap = fib.snapshot();
                    let g = snap.generation();
                    assert!(g >= published, "a published generation's snapshot is loaded");
                    assert!(g >= last, "generation went backwards");
                    last = g;
                    if g == 0 {
                        continue;
                    }
                    // Every route of batch g points to nexthop g: a torn read would mix them.
                    for &(p, _) in &prefixes {
                        assert_eq!(snap.lookup(1, p), Ok(g), "generation {g}, {p}");
                    }
                    checks += 1;
                }
            });
        }
        for g in 1..=generations {
            for &(p, len) in &prefixes {
                b.add_route(1, p, len, g).unwrap();
            }
            assert_eq!(b.publish(&fib).unwrap(), g);
        }
        stop.store(true, Ordering::Relaxed);
    });
    if big {
        fib.reap();
        assert!(
            fib.spare_bytes() >= 64 << 20,
            "spares kept once no reader holds a table"
        );
    }
}

/// Flows moved when one member leaves, and the chi-squared of the spread, for 2..64
/// members: printed for docs/PERFORMANCE.md, bounded here.
#[test]
fn ecmp_resilience_and_balance() {
    let flows: Vec<FlowKey> = (0..100_000u32)
        .map(|i| {
            FlowKey::v4(
                Ipv4Addr::from(0x0a00_0000 + i),
                Ipv4Addr::new(10, 255, 0, 1),
                6,
                (i % 60000) as u16 + 1024,
                443,
            )
        })
        .collect();
    let fields = HashFields::default();
    let hashes: Vec<u64> = flows.iter().map(|k| fields.hash(k)).collect();
    eprintln!("| members | flows moved on removal | ideal 1/N | chi-squared | df |");
    for n in [2u32, 3, 4, 8, 16, 32, 64] {
        let fib = Fib::new();
        let mut b = FibBuilder::new();
        b.add_vrf(0).unwrap();
        for m in 0..n {
            b.set_nexthop(100 + m, Nexthop::Interface { port: m, gateway: None })
                .unwrap();
        }
        b.set_nexthop(
            1,
            Nexthop::Ecmp {
                members: (0..n).map(|m| (100 + m, 1)).collect(),
            },
        )
        .unwrap();
        b.add_route(0, v4("0.0.0.0"), 0, 1).unwrap();
        b.publish(&fib).unwrap();
        let before: Vec<u32> = hashes
            .iter()
            .map(|&h| fib.snapshot().resolve(0, v4("1.1.1.1"), h).unwrap().nexthop)
            .collect();
        let mut counts = vec![0f64; n as usize];
        for &nh in &before {
            counts[(nh - 100) as usize] += 1.0;
        }
        let expected = flows.len() as f64 / f64::from(n);
        let chi2: f64 = counts.iter().map(|c| (c - expected).powi(2) / expected).sum();
        // Remove the last member.
        b.set_nexthop(
            1,
            Nexthop::Ecmp {
                members: (0..n - 1).map(|m| (100 + m, 1)).collect(),
            },
        )
        .unwrap();
        b.publish(&fib).unwrap();
        let snap = fib.snapshot();
        let mut moved = 0;
        for (i, &h) in hashes.iter().enumerate() {
            let after = snap.resolve(0, v4("1.1.1.1"), h).unwrap().nexthop;
            if after != before[i] {
                assert_eq!(before[i], 100 + n - 1, "a flow of a remaining member moved");
                moved += 1;
            }
        }
        let frac = moved as f64 / flows.len() as f64;
        eprintln!(
            "| {n} | {frac:.4} | {:.4} | {chi2:.1} | {} |",
            1.0 / f64::from(n),
            n - 1
        );
        assert!(
            (frac - 1.0 / f64::from(n)).abs() < 0.25 / f64::from(n),
            "moved {frac} of flows with {n} members"
        );
        // df = n-1; 99.99th percentile is below df + 9*sqrt(2 df) + 10 for these df.
        let df = f64::from(n - 1);
        assert!(
            chi2 < df + 9.0 * (2.0 * df).sqrt() + 10.0,
            "chi2 {chi2} for {n} members"
        );
    }
    assert_eq!(ECMP_BUCKETS % 64, 0);
}

#[test]
fn many_small_vrfs_cost_kilobytes() {
    let fib = Fib::new();
    let mut b = FibBuilder::new();
    b.set_nexthop(1, Nexthop::Discard).unwrap();
    for vrf in 1..=4096u32 {
        b.add_vrf(vrf).unwrap();
        for i in 0..100u32 {
            // Each tenant's subnets: a /24 each, each to its own nexthop, inside its own /16.
            let net = 0x0a00_0000 | (vrf % 256) << 16 | i << 8;
            b.add_route(vrf, IpAddr::V4(Ipv4Addr::from(net)), 24, i + 1).unwrap();
        }
    }
    b.publish(&fib).unwrap();
    let s = fib.snapshot();
    let bytes = s.table_bytes();
    eprintln!(
        "4096 VRFs x 100 routes: {} KiB of tables, {:.1} bytes per route",
        bytes / 1024,
        bytes as f64 / 409_600.0
    );
    assert!(bytes < 64 << 20, "{bytes} bytes");
    assert_eq!(s.lookup(4096, v4("10.0.99.7")), Ok(100));
    assert_eq!(s.route_count(17), 100);
}

/// A big VRF (DIR-24-8) takes route changes by patching the last snapshot's table: rounds
/// of additions, renumberings and removals, each published and checked against a model,
/// and a publish by another builder in between, after which nothing of its table is kept.
#[test]
fn a_big_vrf_patched_route_by_route_answers_like_a_rebuild() {
    let mask = |len: u8| u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    // A route in 10/8 from random bits.
    let route = |bits: u64| {
        let len = 8 + (bits % 25) as u8;
        let net = (0x0a00_0000 | (bits >> 8) as u32 & 0x00ff_ffff) & mask(len);
        (net, len, (bits >> 40) as u32 % 500)
    };
    let fib = Fib::new();
    let mut b = FibBuilder::new();
    b.add_vrf(1).unwrap();
    let mut model: BTreeMap<(u32, u8), u32> = BTreeMap::new();
    while model.len() < 3000 {
        let (net, len, nh) = route(next());
        b.add_route(1, IpAddr::V4(Ipv4Addr::from(net)), len, nh).unwrap();
        model.insert((net, len), nh);
    }
    b.publish(&fib).unwrap();
    let check = |model: &BTreeMap<(u32, u8), u32>, probes: &[u32]| {
        let snap = fib.snapshot();
        for &a in probes {
            let want = (0..=32u8).rev().find_map(|l| model.get(&(a & mask(l), l)).copied());
            assert_eq!(
                snap.lookup(1, IpAddr::V4(Ipv4Addr::from(a))).ok(),
                want,
                "{}",
                Ipv4Addr::from(a)
            );
        }
    };
    for round in 0..4 {
        let mut edited = Vec::new();
        for i in 0..40 {
            let (net, len) = if i % 3 == 2 {
                // Remove an existing route.
                let &(net, len) = model.keys().nth(next() as usize % model.len()).unwrap();
                assert!(b.remove_route(1, IpAddr::V4(Ipv4Addr::from(net)), len));
                model.remove(&(net, len));
                (net, len)
            } else {
                let (net, len, nh) = route(next());
                b.add_route(1, IpAddr::V4(Ipv4Addr::from(net)), len, nh).unwrap();
                model.insert((net, len), nh + round);
                b.add_route(1, IpAddr::V4(Ipv4Addr::from(net)), len, nh + round)
                    .unwrap();
                (net, len)
            };
            edited.extend([
                net,
                net | !mask(len),
                (net | !mask(len)).wrapping_add(1),
                net.wrapping_sub(1),
            ]);
        }
        b.publish(&fib).unwrap();
        let random: Vec<u32> = (0..2000).map(|_| 0x0a00_0000 | (next() as u32 & 0x00ff_ffff)).collect();
        check(&model, &edited);
        check(&model, &random);
    }
    // Another builder publishes its own VRF 1; this builder's next publish must build
    // from its own routes, not patch the other's table.
    let mut other = FibBuilder::new();
    other.add_vrf(1).unwrap();
    other.add_route(1, v4("10.0.0.0"), 8, 999).unwrap();
    // Big too, so that it would be patched if taken for ours.
    for i in 0..2100u32 {
        other
            .add_route(1, IpAddr::V4(Ipv4Addr::from(0x0a80_0000 + (i << 8))), 24, 998)
            .unwrap();
    }
    other.publish(&fib).unwrap();
    let (net, len, nh) = route(next());
    b.add_route(1, IpAddr::V4(Ipv4Addr::from(net)), len, nh).unwrap();
    model.insert((net, len), nh);
    b.publish(&fib).unwrap();
    let probes: Vec<u32> = (0..3000).map(|_| 0x0a00_0000 | (next() as u32 & 0x00ff_ffff)).collect();
    check(&model, &probes);
    // A VRF removed and made again in one batch is built from its new routes alone.
    b.remove_vrf(1);
    b.add_vrf(1).unwrap();
    model.clear();
    while model.len() < 2100 {
        // /24 and longer only: a patch under them alone would leave the old routes' /24s.
        let (net, len, nh) = route(next());
        let len = len.max(24);
        b.add_route(1, IpAddr::V4(Ipv4Addr::from(net & mask(len))), len, nh)
            .unwrap();
        model.insert((net & mask(len), len), nh);
    }
    b.publish(&fib).unwrap();
    check(&model, &probes);
}

/// Tables prepared are invisible until installed; an edit or another publish in between
/// makes the install refuse (nothing lost: the next publish has every change).
#[test]
fn prepared_tables_show_only_when_installed_and_never_stale() {
    let fib = Fib::new();
    let mut b = FibBuilder::new();
    b.add_vrf(1).unwrap();
    b.set_nexthop(10, Nexthop::Discard).unwrap();
    b.set_nexthop(11, Nexthop::Receive).unwrap();
    b.add_route(1, v4("10.0.0.0"), 8, 10).unwrap();
    assert_eq!(b.publish(&fib).unwrap(), 1);

    b.add_route(1, v4("10.1.0.0"), 16, 11).unwrap();
    let p = b.prepare(&fib);
    assert_eq!(fib.snapshot().lookup(1, v4("10.1.2.3")), Ok(10), "not yet");
    assert_eq!(b.install(&fib, p).unwrap(), 2);
    assert_eq!(fib.snapshot().lookup(1, v4("10.1.2.3")), Ok(11));

    // An edit after the prepare: installing would drop it.
    b.add_route(1, v4("10.2.0.0"), 16, 11).unwrap();
    let p = b.prepare(&fib);
    b.add_route(1, v4("10.3.0.0"), 16, 11).unwrap();
    let e = b.install(&fib, p).unwrap_err();
    assert!(e.to_string().contains("prepare them again"), "{e}");
    assert_eq!(fib.snapshot().generation(), 2);

    // Another publish after the prepare: installing would undo it.
    let p = b.prepare(&fib);
    let mut other = FibBuilder::new();
    other.add_vrf(2).unwrap();
    other.publish(&fib).unwrap();
    assert!(b.install(&fib, p).is_err());

    // Prepared and dropped: the next publish still has every change.
    drop(b.prepare(&fib));
    b.publish(&fib).unwrap();
    let s = fib.snapshot();
    for a in ["10.2.0.1", "10.3.0.1"] {
        assert_eq!(s.lookup(1, v4(a)), Ok(11), "{a}");
    }
}

/// A reader that lets go of a replaced snapshot does not free it (a worker must never
/// unmap a big table between bursts): `reap`, on the publisher's side, does.
#[test]
fn replaced_snapshots_are_freed_by_reap_not_by_their_last_reader() {
    let fib = Fib::new();
    let mut b = FibBuilder::new();
    b.add_vrf(1).unwrap();
    b.publish(&fib).unwrap();
    let held = fib.snapshot();
    let weak = std::sync::Arc::downgrade(&held);
    b.add_vrf(2).unwrap();
    b.publish(&fib).unwrap();
    assert_eq!(fib.reap(), 1, "a reader holds the replaced snapshot");
    drop(held);
    assert!(weak.upgrade().is_some(), "not freed by the reader");
    assert_eq!(fib.reap(), 0);
    assert!(weak.upgrade().is_none(), "freed by reap");
}

/// An edit for the route-unchanged property: a route added or removed, a nexthop
/// redefined (kind: interface, tunnel over VRF 0, translate into VRF 2, ECMP, discard),
/// a publish, or a publish by another builder.
#[derive(Debug, Clone)]
enum Edit {
    Route(Op),
    /// Nexthop `id` redefined as kind `k`; with `true`, alone in its publish.
    Nexthop(u32, u8, bool),
    Foreign,
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        8 => op().prop_map(Edit::Route),
        3 => (0u32..8, 0u8..8, any::<bool>()).prop_map(|(id, kind, alone)| Edit::Nexthop(id, kind, alone)),
        1 => Just(Edit::Foreign),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// `route_unchanged_since` is sound: whenever a snapshot says a destination's route
    /// is unchanged since an older generation, the older snapshot routes it the same way;
    /// so is `egress_generation`: while it stays, nexthops resolve the same way.
    #[test]
    fn a_route_said_unchanged_is_unchanged(
        edits in proptest::collection::vec(edit(), 1..100),
        probes in proptest::collection::vec((0u32..3, any::<bool>(), any::<u128>(), any::<u64>()), 40),
    ) {
        let fib = Fib::new();
        let mut b = FibBuilder::new();
        for vrf in 0..3 {
            b.add_vrf(vrf).unwrap();
        }
        for id in 0..20 {
            b.set_nexthop(id, Nexthop::Interface { port: id, gateway: None }).unwrap();
        }
        b.publish(&fib).unwrap();
        let mut snapshots = vec![fib.snapshot()];
        for e in edits {
            match e {
                Edit::Route(Op::Add(vrf, six, a, l, nh)) => {
                    // Few nexthops, so that redefining one moves routes probed.
                    let (net, len) = prefix(six, a, l);
                    b.add_route(vrf, net, len, nh % 8).unwrap();
                }
                Edit::Route(Op::Remove(vrf, six, a, l)) => {
                    let (net, len) = prefix(six, a, l);
                    b.remove_route(vrf, net, len);
                }
                Edit::Nexthop(id, kind, alone) => {
                    if alone {
                        b.publish(&fib).unwrap();
                        snapshots.push(fib.snapshot());
                    }
                    let nh = match kind {
                        0 => Nexthop::Interface { port: id + 1, gateway: None },
                        1 => Nexthop::Tunnel {
                            encap: Encap::Vxlan { vni: 7 },
                            src: v4("192.0.2.1"),
                            dst: v4("10.0.0.9"),
                            underlay_vrf: 0,
                            router_mac: None,
                            dscp: Default::default(),
                            zero_udp_checksum: false,
                        },
                        2 => Nexthop::VrfTranslate { vrf: 2 },
                        3 => Nexthop::Ecmp { members: vec![(id + 10, 1), (id + 11, 2)] },
                        // Groups that change members and weights under their routes.
                        4 => Nexthop::Ecmp { members: vec![(id + 10, 1), (id + 12, 1), (id + 9, 3)] },
                        5 => Nexthop::Interface { port: id + 7, gateway: None },
                        // A member that may be a translation (or is refused if a group).
                        6 => Nexthop::Ecmp { members: vec![(id + 10, 1), ((id + 1) % 8, 1)] },
                        _ => Nexthop::Discard,
                    };
                    // An ECMP member that is itself ECMP is refused: nothing changes.
                    let _ = b.set_nexthop(id, nh);
                    if alone {
                        b.publish(&fib).unwrap();
                        snapshots.push(fib.snapshot());
                    }
                }
                Edit::Foreign => {
                    let mut other = FibBuilder::new();
                    other.add_vrf(1).unwrap();
                    other.add_route(1, v4("10.0.0.0"), 8, 3).unwrap();
                    other.publish(&fib).unwrap();
                    snapshots.push(fib.snapshot());
                    continue;
                }
                Edit::Route(Op::Publish) => {}
            }
            if matches!(e, Edit::Route(Op::Publish)) {
                b.publish(&fib).unwrap();
                snapshots.push(fib.snapshot());
            }
        }
        for (i, old) in snapshots.iter().enumerate() {
            for new in &snapshots[i..] {
                // The same egress generation: every nexthop resolves as it did, the
                // tunnel's far end included.
                if old.egress_generation() == new.egress_generation() {
                    for id in 0..20 {
                        prop_assert_eq!(old.nexthop(id), new.nexthop(id), "nexthop {}", id);
                    }
                    let far = v4("10.0.0.9");
                    if (0..20).any(|id| matches!(new.nexthop(id), Some(Nexthop::Tunnel { .. }))) {
                        prop_assert_eq!(old.route(0, far, 0), new.route(0, far, 0), "the tunnel's far end");
                    }
                }
                for &(vrf, six, a, hash) in &probes {
                    let (dst, _) = prefix(six, a, 255);
                    let decided = old.route(vrf, dst, hash).map_or(u32::MAX, |r| r.nexthop);
                    if new.route_unchanged_since(old.generation(), vrf, dst, decided) {
                        prop_assert_eq!(
                            old.route(vrf, dst, hash),
                            new.route(vrf, dst, hash),
                            "{} in VRF {} said unchanged from generation {} to {}",
                            dst, vrf, old.generation(), new.generation()
                        );
                    }
                }
            }
        }
    }
}
