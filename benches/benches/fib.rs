#![allow(missing_docs)] // criterion_group! generates an undocumented public function.

//! Longest-prefix match at 1K, 100K and 1M IPv4 prefixes and 100K IPv6 prefixes (a
//! BGP-like length mix), with uniform and skewed destinations, versus poptrie,
//! prefix-trie and ip_network_table on the same prefixes and addresses, in one run; plus
//! the random-read floor over a buffer as large as our table (on huge pages, as our big
//! IPv4 table is). Build time, memory, the route update rate and the publish time of
//! small batches of changes are printed to stderr.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fib::{Fib, FibBuilder};
use ip_network_table::IpNetworkTable;
use ipnet::{Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;

const BURST: usize = 64;

use vrouter_benches::Rng;

fn mask4(a: u32, len: u8) -> u32 {
    if len == 0 { 0 } else { a & (u32::MAX << (32 - len)) }
}

fn mask6(a: u128, len: u8) -> u128 {
    if len == 0 { 0 } else { a & (u128::MAX << (128 - len)) }
}

/// BGP-like IPv4 lengths: mostly /24, then /22-/23, /16-/21, few shorter or longer.
fn v4_prefixes(n: usize, rng: &mut Rng) -> Vec<(u32, u8, u32)> {
    let lens = [
        (24, 580),
        (23, 80),
        (22, 100),
        (21, 50),
        (20, 50),
        (19, 40),
        (18, 20),
        (17, 15),
        (16, 25),
        (12, 10),
        (8, 2),
        (28, 8),
    ];
    distinct_prefixes(n, &lens, rng, |r, len| mask4(r.next_u64() as u32, len))
}

/// IPv6: prefixes inside 2,000 provider blocks (/32s), mostly /48, some /32-/44 and /56-/64.
fn v6_prefixes(n: usize, rng: &mut Rng) -> Vec<(u128, u8, u32)> {
    // Provider blocks: /32s inside 2000::/3.
    let blocks: Vec<u128> = (0..2000)
        .map(|_| (0x2000_0000u128 | (u128::from(rng.next_u64()) & 0x1fff_ffff)) << 96)
        .collect();
    let lens = [
        (48, 55),
        (32, 10),
        (40, 8),
        (44, 10),
        (36, 3),
        (29, 2),
        (56, 6),
        (64, 6),
    ];
    distinct_prefixes(n, &lens, rng, |r, len| {
        let block = blocks[(r.next_u64() % 2000) as usize];
        // Random bits below the block's /32.
        mask6(block | ((u128::from(r.next_u64()) << 32) & ((1u128 << 96) - 1)), len)
    })
}

/// `n` distinct prefixes with lengths drawn from `lens` (length, weight) and networks from
/// `net`; nexthop ids cycle through 4,096.
fn distinct_prefixes<A: Copy + Eq + std::hash::Hash>(
    n: usize,
    lens: &[(u8, u32)],
    rng: &mut Rng,
    net: impl Fn(&mut Rng, u8) -> A,
) -> Vec<(A, u8, u32)> {
    let total: u32 = lens.iter().map(|l| l.1).sum();
    let mut seen = std::collections::HashSet::new();
    let mut v = Vec::with_capacity(n);
    while v.len() < n {
        let mut pick = (rng.next_u64() % u64::from(total)) as u32;
        let len = lens
            .iter()
            .find(|l| {
                pick < l.1 || {
                    pick -= l.1;
                    false
                }
            })
            .map_or(lens[0].0, |l| l.0);
        let a = net(rng, len);
        if seen.insert((a, len)) {
            v.push((a, len, v.len() as u32 % 4096));
        }
    }
    v
}

/// Uniform: any address inside a random prefix. Skewed: 90% inside 1% of the prefixes.
fn destinations<A: Copy>(
    prefixes: &[(A, u8, u32)],
    skewed: bool,
    rng: &mut Rng,
    fill: impl Fn(A, u8, u64) -> A,
) -> Vec<A> {
    (0..1 << 16)
        .map(|_| {
            let hot = prefixes.len().div_ceil(100);
            let i = if skewed && !rng.next_u64().is_multiple_of(10) {
                rng.next_u64() as usize % hot
            } else {
                rng.next_u64() as usize % prefixes.len()
            };
            let (net, len, _) = prefixes[i];
            fill(net, len, rng.next_u64())
        })
        .collect()
}

/// Our burst lookup: destinations in, nexthops out.
type BurstLookup<'a, A> = &'a dyn Fn(&[A], &mut [Option<u32>]);
/// A peer's lookups over a burst ([`each`]), summed so none is optimised away.
type PeerBurst<'a, A> = &'a dyn Fn(&[A]) -> u32;

/// A peer's per-address lookup run over a burst, compiled together (one dynamic call per
/// burst, as ours has, not one per address).
fn each<A: Copy>(lookup: impl Fn(A) -> u32) -> impl Fn(&[A]) -> u32 {
    move |d| d.iter().map(|&a| lookup(a)).fold(0, u32::wrapping_add)
}

/// One comparison group: our burst lookup and each peer's per-address lookup ([`each`])
/// over the same destinations, plus (optionally) the random-read floor for `floor_bytes`.
fn run_group<A: Copy>(
    c: &mut Criterion,
    name: &str,
    d: &[A],
    ours: BurstLookup<'_, A>,
    peers: &[(&str, PeerBurst<'_, A>)],
    floor_bytes: Option<usize>,
) {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(BURST as u64));
    g.bench_function("vrouter_fib_burst", |bch| {
        let mut out = [None; BURST];
        let mut i = 0;
        bch.iter(|| {
            i = (i + BURST) % (d.len() - BURST);
            ours(&d[i..i + BURST], &mut out);
            black_box(out[0])
        })
    });
    for (peer, lookup) in peers {
        g.bench_function(*peer, |bch| {
            let mut i = 0;
            bch.iter(|| {
                i = (i + BURST) % (d.len() - BURST);
                lookup(&d[i..i + BURST])
            })
        });
    }
    if let Some(bytes) = floor_bytes {
        let words = (bytes / 8).max(1024);
        // On huge pages, as the DIR-24-8 table is: the floor is the memory's, not page walks'.
        let mut buf = vrouter_benches::advised_buffer(words * 8, true);
        for (i, w) in buf.iter_mut().enumerate() {
            *w = i as u64;
        }
        let mut rng = Rng(0x5eed);
        let idx: Vec<usize> = (0..1 << 16).map(|_| rng.next_u64() as usize % words).collect();
        g.bench_function("random_read_floor", |bch| {
            let mut i = 0;
            bch.iter(|| {
                i = (i + BURST) % (idx.len() - BURST);
                idx[i..i + BURST].iter().map(|&j| buf[j]).fold(0, u64::wrapping_add)
            })
        });
    }
    g.finish();
}

/// The routes of `prefixes` of length `len`, as the builder takes them.
fn of_length<A: Copy>(prefixes: &[(A, u8, u32)], len: u8, ip: impl Fn(A) -> IpAddr) -> Vec<(IpAddr, u8, u32)> {
    prefixes
        .iter()
        .filter(|p| p.1 == len)
        .map(|&(net, len, nh)| (ip(net), len, nh))
        .collect()
}

/// Batches into a built table, as a routing daemon sends them (and, the biggest, as a
/// peer's session reset does): existing prefixes of the commonest length given another
/// nexthop, five publishes per batch size. A big VRF's
/// table is patched under them; a shorter prefix's change repaints all it spans. The
/// first publishes write fresh memory (the caller holds the first table), later ones
/// write into the table two publishes back, which nothing holds any more.
fn time_publishes(b: &mut FibBuilder, fib: &Fib, what: &str, commonest: &[(IpAddr, u8, u32)]) {
    for batch in [1usize, 100, 4096, 16384, 65536] {
        let batch = batch.min(commonest.len());
        let mut times = Vec::new();
        for round in 1..=5 {
            let t0 = Instant::now();
            for &(net, len, nh) in commonest.iter().step_by(commonest.len() / batch).take(batch) {
                b.add_route(0, net, len, nh + round).unwrap();
            }
            b.publish(fib).unwrap();
            times.push(format!("{:.2}", t0.elapsed().as_secs_f64() * 1e3));
        }
        eprintln!("{what}: {batch} changed, publishes {} ms", times.join(" "));
    }
    // A routing daemon's stream of single updates, each published on its own, timed in
    // the steady state: after the two publishes that find no predecessor to patch (the
    // last batch may have compiled its table whole).
    for &(net, len, nh) in &commonest[..2] {
        b.add_route(0, net, len, nh + 8).unwrap();
        b.publish(fib).unwrap();
    }
    let n = 2000.min(commonest.len());
    let t0 = Instant::now();
    for &(net, len, nh) in commonest.iter().step_by(commonest.len() / n).take(n) {
        b.add_route(0, net, len, nh + 7).unwrap();
        b.publish(fib).unwrap();
    }
    let each = t0.elapsed().as_secs_f64() / n as f64;
    eprintln!(
        "{what}: {n} single-route publishes, {:.1} us each ({:.0} publishes/s)",
        each * 1e6,
        1.0 / each
    );
}

fn bench_v4(c: &mut Criterion, n: usize) {
    let mut rng = Rng(0x1234_5678_9abc_def1 ^ n as u64);
    let prefixes = v4_prefixes(n, &mut rng);
    let fib = Fib::new();
    let mut b = FibBuilder::new();
    b.add_vrf(0).unwrap();
    let t0 = Instant::now();
    for &(net, len, nh) in &prefixes {
        b.add_route(0, IpAddr::V4(Ipv4Addr::from(net)), len, nh).unwrap();
    }
    b.publish(&fib).unwrap();
    let build = t0.elapsed();
    let snap = fib.snapshot();
    let bytes = snap.table_bytes();
    eprintln!(
        "ipv4 {n} prefixes: build+publish {:.0} ms ({:.0} routes/s), {} KiB ({:.1} B/prefix)",
        build.as_secs_f64() * 1e3,
        n as f64 / build.as_secs_f64(),
        bytes / 1024,
        bytes as f64 / n as f64
    );
    let slash24 = of_length(&prefixes, 24, |a| IpAddr::V4(Ipv4Addr::from(a)));
    time_publishes(&mut b, &fib, &format!("ipv4 {n} prefixes"), &slash24);
    // Bulk construction: poptrie rebuilds its arrays on every single insert.
    let pop: poptrie::Poptrie<(u32, u8), u32> = prefixes.iter().map(|&(net, len, nh)| ((net, len), nh)).collect();
    let mut pt: PrefixMap<Ipv4Net, u32> = PrefixMap::new();
    let mut int = IpNetworkTable::new();
    for &(net, len, nh) in &prefixes {
        pt.insert(Ipv4Net::new(Ipv4Addr::from(net), len).unwrap(), nh);
        int.insert(ip_network::Ipv4Network::new(Ipv4Addr::from(net), len).unwrap(), nh);
    }
    for skewed in [false, true] {
        let dsts = destinations(&prefixes, skewed, &mut rng, |net, len, r| {
            net | (r as u32 & !mask4(u32::MAX, len))
        });
        // Every contender agrees on every destination.
        for &d in dsts.iter().take(2000) {
            let ours = snap.lookup(0, IpAddr::V4(Ipv4Addr::from(d))).ok();
            assert_eq!(ours, pop.lookup(d).copied());
            assert_eq!(
                ours,
                pt.get_lpm(&Ipv4Net::new(Ipv4Addr::from(d), 32).unwrap()).map(|x| *x.1)
            );
        }
        let name = format!("lpm_v4_{n}_{}", if skewed { "skewed" } else { "uniform" });
        run_group(
            c,
            &name,
            &dsts,
            &|a, out| snap.lookup_v4_burst(0, a, out),
            &[
                ("poptrie", &each(|a| pop.lookup(a).copied().unwrap_or(0))),
                (
                    "prefix_trie",
                    &each(|a| {
                        pt.get_lpm(&Ipv4Net::new(Ipv4Addr::from(a), 32).unwrap())
                            .map_or(0, |x| *x.1)
                    }),
                ),
                (
                    "ip_network_table",
                    &each(|a| int.longest_match(Ipv4Addr::from(a)).map_or(0, |x| *x.1)),
                ),
            ],
            (!skewed).then_some(bytes),
        );
    }
}

fn bench_v6(c: &mut Criterion) {
    let n = 100_000;
    let mut rng = Rng(0x0bad_cafe_f00d_1234);
    let prefixes = v6_prefixes(n, &mut rng);
    let fib = Fib::new();
    let mut b = FibBuilder::new();
    b.add_vrf(0).unwrap();
    let t0 = Instant::now();
    for &(net, len, nh) in &prefixes {
        b.add_route(0, IpAddr::V6(Ipv6Addr::from(net)), len, nh).unwrap();
    }
    b.publish(&fib).unwrap();
    let build = t0.elapsed();
    let snap = fib.snapshot();
    let bytes = snap.table_bytes();
    eprintln!(
        "ipv6 {n} prefixes: build+publish {:.0} ms, {} KiB ({:.1} B/prefix)",
        build.as_secs_f64() * 1e3,
        bytes / 1024,
        bytes as f64 / n as f64
    );
    let slash48 = of_length(&prefixes, 48, |a| IpAddr::V6(Ipv6Addr::from(a)));
    time_publishes(&mut b, &fib, &format!("ipv6 {n} prefixes"), &slash48);
    let pop: poptrie::Poptrie<(u128, u8), u32> = prefixes.iter().map(|&(net, len, nh)| ((net, len), nh)).collect();
    let mut pt: PrefixMap<Ipv6Net, u32> = PrefixMap::new();
    let mut int = IpNetworkTable::new();
    for &(net, len, nh) in &prefixes {
        pt.insert(Ipv6Net::new(Ipv6Addr::from(net), len).unwrap(), nh);
        int.insert(ip_network::Ipv6Network::new(Ipv6Addr::from(net), len).unwrap(), nh);
    }
    let d = destinations(&prefixes, false, &mut rng, |net, len, r| {
        net | ((u128::from(r) * 0x1_0000_0001) & !mask6(u128::MAX, len))
    });
    for &a in d.iter().take(2000) {
        let ours = snap.lookup(0, IpAddr::V6(Ipv6Addr::from(a))).ok();
        assert_eq!(
            ours,
            pt.get_lpm(&Ipv6Net::new(Ipv6Addr::from(a), 128).unwrap()).map(|x| *x.1)
        );
    }
    run_group(
        c,
        "lpm_v6_100000_uniform",
        &d,
        &|a, out| snap.lookup_v6_burst(0, a, out),
        &[
            ("poptrie", &each(|a| pop.lookup(a).copied().unwrap_or(0))),
            (
                "prefix_trie",
                &each(|a| {
                    pt.get_lpm(&Ipv6Net::new(Ipv6Addr::from(a), 128).unwrap())
                        .map_or(0, |x| *x.1)
                }),
            ),
            (
                "ip_network_table",
                &each(|a| int.longest_match(Ipv6Addr::from(a)).map_or(0, |x| *x.1)),
            ),
        ],
        Some(bytes),
    );
}

fn bench_fib(c: &mut Criterion) {
    for n in [1_000, 100_000, 1_000_000] {
        bench_v4(c, n);
    }
    bench_v6(c);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench_fib
}
criterion_main!(benches);
