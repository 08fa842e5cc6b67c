#![allow(missing_docs)] // criterion_group! generates an undocumented public function.

//! Burst classification at 10, 100, 1K and 10K rules (a security-group-like mix: mostly
//! /32 sources and small prefixes with single ports or port ranges, a few wide rules at
//! the end), compiled classifier versus the naive first-match linear scan on the same
//! rules and packets, in one run. Compile time and classifier memory go to stderr.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use policy::{
    Action, AddrSet, Cidr, Decision, Direction, Endpoint, EndpointId, Fields, IcmpMatch, Policy, PolicySet,
    PolicyStore, PortRange, Rule, RuleId, RuleList,
};

const BURST: usize = 64;

use vrouter_benches::Rng;

fn set(cidrs: &[(u32, u8)]) -> Arc<AddrSet> {
    let c: Vec<Cidr> = cidrs
        .iter()
        .map(|&(a, l)| Cidr::new(std::net::Ipv4Addr::from(a).into(), l).unwrap())
        .collect();
    Arc::new(AddrSet::from_cidrs(&c))
}

fn host(rng: &mut Rng) -> u32 {
    0x0a00_0000 | rng.below(1 << 20) as u32
}

const WIDE: usize = 6;

/// `n` rules: 70% single hosts, 25% /24-/28 subnets, each with a TCP/UDP destination port
/// or range; the last few are wide (any source, a protocol or a well-known port).
fn rules(n: usize, rng: &mut Rng) -> Vec<Rule> {
    let narrow = n.saturating_sub(WIDE);
    let mut out = Vec::with_capacity(n);
    for i in 0..narrow {
        let src = if rng.below(100) < 70 {
            set(&[(host(rng), 32)])
        } else {
            let len = 24 + rng.below(5) as u8;
            set(&[(host(rng) & (u32::MAX << (32 - len)), len)])
        };
        let lo = [22u16, 80, 443, 5432, 6379, 8000][rng.below(6) as usize];
        let ports = if rng.below(4) == 0 {
            PortRange::new(lo, lo + rng.below(100) as u16)
        } else {
            PortRange::single(lo)
        };
        out.push(Rule {
            priority: 100,
            src: Some(src),
            dst: (rng.below(3) == 0).then(|| set(&[(0x0a80_0000 | (rng.below(1 << 16) as u32) << 8, 24)])),
            proto: Some(if rng.below(5) == 0 { 17 } else { 6 }),
            dst_ports: Some(ports),
            action: if rng.below(10) == 0 {
                Action::DenyLog
            } else {
                Action::Allow
            },
            ..Rule::any(RuleId(i as u32), Action::Allow)
        });
    }
    let wide = [
        Rule {
            proto: Some(6),
            dst_ports: Some(PortRange::single(23)),
            ..Rule::any(RuleId(0), Action::DenyLog)
        },
        Rule {
            proto: Some(1),
            icmp: Some(IcmpMatch { kind: 8, code: None }),
            ..Rule::any(RuleId(0), Action::Allow)
        },
        Rule {
            src: Some(set(&[(0x0a00_0000, 8)])),
            proto: Some(17),
            dst_ports: Some(PortRange::single(53)),
            ..Rule::any(RuleId(0), Action::Allow)
        },
        Rule {
            proto: Some(6),
            dst_ports: Some(PortRange::new(30000, 32767)),
            ..Rule::any(RuleId(0), Action::Allow)
        },
        Rule {
            src: Some(set(&[(0xc0a8_0000, 16)])),
            ..Rule::any(RuleId(0), Action::Deny)
        },
        Rule {
            proto: Some(17),
            dst_ports: Some(PortRange::new(1, 1023)),
            ..Rule::any(RuleId(0), Action::Deny)
        },
    ];
    for (j, mut r) in wide.into_iter().take(n - narrow).enumerate() {
        r.id = RuleId((narrow + j) as u32);
        r.priority = 200;
        out.push(r);
    }
    out
}

/// Half the packets come from a rule's source and port (a hit somewhere in the list), half
/// are random (mostly falling through to the wide rules or the default).
fn packets(rules: &[Rule], rng: &mut Rng) -> Vec<Fields> {
    (0..4096)
        .map(|_| {
            let r = &rules[rng.below(rules.len() as u64) as usize];
            let hit = rng.below(2) == 0;
            let src = match (&r.src, hit) {
                (Some(s), true) => u32::from(s.v4_ranges().next().unwrap().0),
                _ => host(rng),
            };
            let (proto, b) = match (r.proto, r.dst_ports, hit) {
                (Some(p), Some(pr), true) => (p, pr.lo),
                _ => ([6u8, 17, 1][rng.below(3) as usize], rng.below(65536) as u16),
            };
            let dst = match (&r.dst, hit) {
                (Some(d), true) => u32::from(d.v4_ranges().next().unwrap().0) + 7,
                _ => 0x0a80_0000 | rng.below(1 << 24) as u32,
            };
            Fields {
                vrf: 0,
                src: src.into(),
                dst: dst.into(),
                v6: false,
                proto,
                a: 40000,
                b,
            }
        })
        .collect()
}

fn linear(sorted: &[Rule], default: Action, p: &Fields) -> Decision {
    sorted.iter().find(|r| r.matches(p)).map_or(
        Decision {
            action: default,
            rule: None,
        },
        |r| Decision {
            action: r.action,
            rule: Some(r.id),
        },
    )
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("policy");
    g.throughput(Throughput::Elements(BURST as u64));
    for n in [10usize, 100, 1_000, 10_000] {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ n as u64);
        let list = Arc::new(RuleList {
            rules: rules(n, &mut rng),
            default: Action::Deny,
        });
        let set = PolicySet {
            endpoints: vec![Endpoint {
                id: EndpointId(1),
                vrf: 0,
                addrs: vec![],
                ingress: Some(list.clone()),
                egress: None,
            }],
        };
        let t = Instant::now();
        let (policy, warnings) = Policy::compile(&set, 1).unwrap();
        let took = t.elapsed();
        assert!(warnings.is_empty());
        let table = policy.table(EndpointId(1), Direction::Ingress).unwrap();
        eprintln!(
            "policy {n} rules: compiled in {took:?}, classifier {} KiB",
            table.bytes() / 1024
        );
        // A reload that rebuilds every list and changes another endpoint's: the store
        // compiles only that one.
        let store = PolicyStore::new();
        let with_small = |default| {
            let mut s = set.clone();
            s.endpoints[0].ingress = Some(Arc::new((*list).clone()));
            s.endpoints.push(Endpoint {
                id: EndpointId(2),
                vrf: 0,
                addrs: vec![],
                ingress: Some(Arc::new(RuleList { rules: vec![], default })),
                egress: None,
            });
            s
        };
        store.publish(&with_small(Action::Deny)).unwrap();
        let t = Instant::now();
        store.publish(&with_small(Action::Allow)).unwrap();
        eprintln!(
            "policy {n} rules: republished with only another endpoint's list changed in {:?}",
            t.elapsed()
        );
        let pkts = packets(&list.rules, &mut rng);
        let mut sorted = list.rules.clone();
        sorted.sort_by_key(|r| r.priority);
        // Same answers, or the comparison is meaningless.
        for p in &pkts {
            assert_eq!(table.classify(p), linear(&sorted, list.default, p));
        }
        let mut out = vec![
            Decision {
                action: Action::Deny,
                rule: None
            };
            BURST
        ];
        let mut i = 0;
        g.bench_function(format!("compiled/{n}"), |b| {
            b.iter(|| {
                i = (i + BURST) % pkts.len();
                table.classify_burst(black_box(&pkts[i..i + BURST]), &mut out);
                black_box(&out);
            })
        });
        if n <= 1_000 {
            g.bench_function(format!("linear/{n}"), |b| {
                b.iter(|| {
                    i = (i + BURST) % pkts.len();
                    for (p, o) in pkts[i..i + BURST].iter().zip(out.iter_mut()) {
                        *o = linear(&sorted, list.default, black_box(p));
                    }
                    black_box(&out);
                })
            });
        }
    }
    g.finish();
    let mut g = c.benchmark_group("policy_linear_10k");
    g.throughput(Throughput::Elements(BURST as u64));
    g.sample_size(10);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ 10_000);
    let list = rules(10_000, &mut rng);
    let pkts = packets(&list, &mut rng);
    let mut i = 0;
    let mut out = vec![
        Decision {
            action: Action::Deny,
            rule: None
        };
        BURST
    ];
    g.bench_function("linear/10000", |b| {
        b.iter(|| {
            i = (i + BURST) % pkts.len();
            for (p, o) in pkts[i..i + BURST].iter().zip(out.iter_mut()) {
                *o = linear(&list, Action::Deny, black_box(p));
            }
            black_box(&out);
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
