//! The compiled classifier against a naive first-match linear scan, on random rule sets
//! with overlapping prefixes, port ranges, ICMP fields, VRFs, every action and tied
//! priorities. `POLICY_CASES` raises the number of rule sets (each checked with 64 packets).

use std::sync::Arc;

use policy::*;
use proptest::prelude::*;

/// Addresses come from a small universe so prefixes overlap and packets hit them.
fn v4_addr() -> impl Strategy<Value = u32> {
    (0..4u32, 0..4u32, any::<u8>()).prop_map(|(a, b, c)| 0x0a00_0000 | a << 16 | b << 8 | u32::from(c))
}

fn v6_addr() -> impl Strategy<Value = u128> {
    (0..4u128, any::<u8>()).prop_map(|(a, c)| 0xfd00u128 << 112 | a << 64 | u128::from(c))
}

fn cidr() -> impl Strategy<Value = Cidr> {
    prop_oneof![
        (v4_addr(), prop_oneof![Just(0u8), Just(8), 14..=32u8]).prop_map(|(a, l)| {
            let mask = if l == 0 { 0 } else { u32::MAX << (32 - l) };
            Cidr::new(std::net::Ipv4Addr::from(a & mask).into(), l).unwrap()
        }),
        (v6_addr(), prop_oneof![Just(0u8), Just(16), 60..=128u8]).prop_map(|(a, l)| {
            let mask = if l == 0 { 0 } else { u128::MAX << (128 - l) };
            Cidr::new(std::net::Ipv6Addr::from(a & mask).into(), l).unwrap()
        }),
    ]
}

fn addr_set() -> impl Strategy<Value = Option<Arc<AddrSet>>> {
    prop_oneof![
        2 => Just(None),
        3 => prop::collection::vec(cidr(), 1..4).prop_map(|c| Some(Arc::new(AddrSet::from_cidrs(&c)))),
    ]
}

fn port() -> impl Strategy<Value = u16> {
    prop_oneof![0..8u16, Just(80), Just(443), Just(65535), any::<u16>()]
}

fn range() -> impl Strategy<Value = Option<PortRange>> {
    prop_oneof![
        Just(None),
        (port(), port()).prop_map(|(a, b)| Some(PortRange::new(a.min(b), a.max(b)))),
    ]
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        Just(Action::Allow),
        Just(Action::Deny),
        Just(Action::AllowLog),
        Just(Action::DenyLog)
    ]
}

#[derive(Debug, Clone)]
enum L4 {
    Any,
    Proto(u8),
    Ports(u8, Option<PortRange>, Option<PortRange>),
    Icmp(u8, u8, Option<u8>),
}

fn l4() -> impl Strategy<Value = L4> {
    prop_oneof![
        Just(L4::Any),
        prop_oneof![Just(6u8), Just(17), Just(47), Just(1)].prop_map(L4::Proto),
        (prop_oneof![Just(6u8), Just(17), Just(132)], range(), range()).prop_map(|(p, s, d)| L4::Ports(p, s, d)),
        (prop_oneof![Just(1u8), Just(58)], 0..4u8, prop::option::of(0..3u8)).prop_map(|(p, t, c)| L4::Icmp(p, t, c)),
    ]
}

/// Priority, action, VRF, source, destination, L4 match.
type RawRule = (u32, Action, Option<u32>, Option<Arc<AddrSet>>, Option<Arc<AddrSet>>, L4);

fn rule() -> impl Strategy<Value = RawRule> {
    (
        0..4u32,
        action(),
        prop::option::of(0..3u32),
        addr_set(),
        addr_set(),
        l4(),
    )
}

fn rule_list() -> impl Strategy<Value = RuleList> {
    rule_list_of(0..40)
}

fn rule_list_of(len: std::ops::Range<usize>) -> impl Strategy<Value = RuleList> {
    (prop::collection::vec(rule(), len), action()).prop_map(|(rs, default)| RuleList {
        rules: rs
            .into_iter()
            .enumerate()
            .map(|(i, (priority, action, vrf, src, dst, l4))| {
                let mut r = Rule {
                    priority,
                    vrf,
                    src,
                    dst,
                    ..Rule::any(RuleId(i as u32), action)
                };
                match l4 {
                    L4::Any => {}
                    L4::Proto(p) => r.proto = Some(p),
                    L4::Ports(p, s, d) => (r.proto, r.src_ports, r.dst_ports) = (Some(p), s, d),
                    L4::Icmp(p, t, c) => (r.proto, r.icmp) = (Some(p), Some(IcmpMatch { kind: t, code: c })),
                }
                r
            })
            .collect(),
        default,
    })
}

fn packet() -> impl Strategy<Value = Fields> {
    (
        0..3u32,
        prop_oneof![
            8 => v4_addr().prop_map(|a| (u128::from(a), false)),
            // The top of the space: every boundary lies at or below it.
            1 => Just((u128::from(u32::MAX), false)),
            8 => v6_addr().prop_map(|a| (a, true)),
            1 => Just((u128::MAX, true)),
        ],
        any::<bool>(),
        prop_oneof![Just(6u8), Just(17), Just(132), Just(1), Just(58), Just(47)],
        port(),
        port(),
    )
        .prop_flat_map(|(vrf, (src, v6), _, proto, a, b)| {
            let dst = if v6 {
                v6_addr().boxed()
            } else {
                v4_addr().prop_map(u128::from).boxed()
            };
            dst.prop_map(move |dst| {
                let icmp = matches!(proto, 1 | 58);
                Fields {
                    vrf,
                    src,
                    dst,
                    v6,
                    proto,
                    a: if icmp { 0 } else { a },
                    b: if icmp { ((a % 4) << 8) | (b % 3) } else { b },
                }
            })
        })
}

/// A policy set of one endpoint with `list` in direction `dir`.
fn one_endpoint(id: u32, dir: Direction, list: Arc<RuleList>) -> PolicySet {
    let (ingress, egress) = match dir {
        Direction::Ingress => (Some(list), None),
        Direction::Egress => (None, Some(list)),
    };
    PolicySet {
        endpoints: vec![Endpoint {
            id: EndpointId(id),
            vrf: 0,
            addrs: vec![],
            ingress,
            egress,
        }],
    }
}

fn naive(list: &RuleList, p: &Fields) -> Decision {
    let mut order: Vec<&Rule> = list.rules.iter().collect();
    order.sort_by_key(|r| r.priority);
    order.iter().find(|r| r.matches(p)).map_or(
        Decision {
            action: list.default,
            rule: None,
        },
        |r| Decision {
            action: r.action,
            rule: Some(r.id),
        },
    )
}

fn cases() -> u32 {
    std::env::var("POLICY_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn compiled_equals_linear_scan(list in rule_list(), pkts in prop::collection::vec(packet(), 64)) {
        check_against_scan(list, &pkts)?;
    }
}

proptest! {
    // Above 64 rules classes live in the arena; above 256 they are compressed.
    #![proptest_config(ProptestConfig { cases: cases() / 50, ..ProptestConfig::default() })]

    /// 65 to 256 rules: classes are bitmaps of two to four words in the arena.
    #[test]
    fn multiword_classes_equal_linear_scan(list in rule_list_of(65..257), pkts in prop::collection::vec(packet(), 64)) {
        check_against_scan(list, &pkts)?;
    }

    #[test]
    fn compressed_classes_equal_linear_scan(list in rule_list_of(250..400), pkts in prop::collection::vec(packet(), 64)) {
        check_against_scan(list, &pkts)?;
    }

    /// Anything at all in the rule fields: an error naming a rule, or a classifier that
    /// agrees with the scan. Never a panic.
    #[test]
    fn arbitrary_rules_error_or_agree(
        raw in prop::collection::vec((any::<Option<u8>>(), any::<Option<(u16, u16)>>(), any::<Option<(u16, u16)>>(), any::<Option<(u8, Option<u8>)>>(), action()), 0..30),
        pkts in prop::collection::vec(packet(), 16),
    ) {
        let rules = raw.into_iter().enumerate().map(|(i, (proto, s, d, icmp, action))| Rule {
            proto,
            src_ports: s.map(|(a, b)| PortRange::new(a, b)),
            dst_ports: d.map(|(a, b)| PortRange::new(a, b)),
            icmp: icmp.map(|(kind, code)| IcmpMatch { kind, code }),
            ..Rule::any(RuleId(i as u32), action)
        }).collect();
        let list = RuleList { rules, default: Action::Deny };
        let set = one_endpoint(1, Direction::Ingress, Arc::new(list.clone()));
        match Policy::compile(&set, 1) {
            Err(e) => prop_assert!(e.rule.is_some(), "{}", e),
            Ok(_) => check_against_scan(list, &pkts)?,
        }
    }
}

fn check_against_scan(list: RuleList, pkts: &[Fields]) -> Result<(), TestCaseError> {
    {
        let list = Arc::new(list);
        let set = one_endpoint(1, Direction::Ingress, list.clone());
        let (policy, _) = Policy::compile(&set, 1).unwrap();
        let table = policy.table(EndpointId(1), Direction::Ingress).unwrap();
        let mut out = vec![
            Decision {
                action: Action::Deny,
                rule: None
            };
            pkts.len()
        ];
        table.classify_burst(pkts, &mut out);
        for (p, got) in pkts.iter().zip(&out) {
            prop_assert_eq!(*got, naive(&list, p), "packet {:?}", p);
        }
        // Single-family bursts take the field-by-field path.
        for v6 in [false, true] {
            let same: Vec<Fields> = pkts.iter().filter(|p| p.v6 == v6).copied().collect();
            table.classify_burst(&same, &mut out);
            for (p, got) in same.iter().zip(&out) {
                prop_assert_eq!(*got, naive(&list, p), "packet {:?} in a one-family burst", p);
            }
        }
        // Every classification was counted exactly once.
        let counted: u64 = table.hits().map(|(_, h)| h).sum::<u64>() + table.default_hits();
        prop_assert_eq!(counted, 2 * pkts.len() as u64);
    }
    Ok(())
}

/// Thousands of rules: the summary words span more than one 64-word block.
#[test]
fn large_rule_sets_match_linear_scan() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let rules = prop::collection::vec(rule(), 5000..5001);
    for _ in 0..3 {
        let raw = rules.new_tree(&mut runner).unwrap().current();
        let list = rule_list().new_tree(&mut runner).unwrap().current();
        // Reuse the generator's lowering by building a list with the big rule vector.
        let big = RuleList {
            rules: raw
                .into_iter()
                .enumerate()
                .map(|(i, (priority, action, vrf, src, dst, _))| Rule {
                    priority: priority * 1000 + (i as u32 % 997),
                    vrf,
                    src,
                    dst,
                    proto: Some(6),
                    dst_ports: Some(PortRange::new(i as u16 % 1000, i as u16 % 1000 + 20)),
                    ..Rule::any(RuleId(i as u32), action)
                })
                .chain(list.rules.into_iter().map(|mut r| {
                    r.id = RuleId(r.id.0 + 10_000);
                    r
                }))
                .collect(),
            default: list.default,
        };
        let big = Arc::new(big);
        let set = one_endpoint(1, Direction::Egress, big.clone());
        let (policy, _) = Policy::compile(&set, 1).unwrap();
        let table = policy.table(EndpointId(1), Direction::Egress).unwrap();
        for _ in 0..2000 {
            let p = packet().new_tree(&mut runner).unwrap().current();
            assert_eq!(table.classify(&p), naive(&big, &p), "packet {p:?}");
        }
    }
}

#[test]
fn errors_name_rule_and_field_and_nothing_is_published() {
    let bad = Arc::new(RuleList {
        rules: vec![
            Rule::any(RuleId(1), Action::Allow),
            Rule {
                proto: Some(17),
                src_ports: Some(PortRange::new(10, 9)),
                ..Rule::any(RuleId(2), Action::Deny)
            },
        ],
        default: Action::Allow,
    });
    let set = one_endpoint(3, Direction::Ingress, bad);
    let store = PolicyStore::new();
    let e = store.publish(&set).err().unwrap();
    assert_eq!(e.to_string(), "rule 2: field `src_ports`: range low 10 is above high 9");
    assert_eq!((store.load().generation(), store.generation()), (0, 0));

    let dup = Arc::new(RuleList {
        rules: vec![Rule::any(RuleId(1), Action::Allow), Rule::any(RuleId(1), Action::Deny)],
        default: Action::Allow,
    });
    let set = one_endpoint(3, Direction::Ingress, dup);
    assert_eq!(store.publish(&set).err().unwrap().field, "id");

    let a: std::net::IpAddr = "10.0.0.1".parse().unwrap();
    let ep = |id| Endpoint {
        id: EndpointId(id),
        vrf: 4,
        addrs: vec![a],
        ingress: None,
        egress: None,
    };
    // An address two endpoints own (a service's, on its backends) is shared, not refused.
    let (p, _) = Policy::compile(
        &PolicySet {
            endpoints: vec![ep(1), ep(2), Endpoint { vrf: 5, ..ep(3) }],
        },
        1,
    )
    .unwrap();
    assert_eq!(
        (p.owner(4, a), p.owner(5, a)),
        (Owner::Shared, Owner::One(EndpointId(3)))
    );
    assert_eq!(p.endpoint_of(4, a), None);
    let e = store
        .publish(&PolicySet {
            endpoints: vec![ep(1), Endpoint { addrs: vec![], ..ep(1) }],
        })
        .err()
        .unwrap();
    assert!(e.to_string().contains("endpoint 1 is defined twice"), "{e}");
    // Refused sets published nothing; the next good one is what workers are told of.
    assert_eq!(store.generation(), 0);
    let (g, _) = store.publish(&PolicySet { endpoints: vec![ep(1)] }).unwrap();
    assert!(g > 0);
    assert_eq!((store.generation(), store.load().generation()), (g, g));
}

#[test]
fn never_matching_rules_are_dropped_with_a_warning() {
    let empty = Arc::new(AddrSet::new());
    let list = Arc::new(RuleList {
        rules: vec![
            Rule {
                src: Some(empty),
                ..Rule::any(RuleId(9), Action::Deny)
            },
            Rule::any(RuleId(10), Action::Allow),
        ],
        default: Action::Deny,
    });
    let set = one_endpoint(1, Direction::Ingress, list);
    let (p, warnings) = Policy::compile(&set, 1).unwrap();
    assert_eq!(warnings.len(), 1);
    assert_eq!((warnings[0].rule, warnings[0].field), (Some(RuleId(9)), "src"));
    let t = p.table(EndpointId(1), Direction::Ingress).unwrap();
    assert_eq!(t.len(), 1);
    assert_eq!(t.classify(&Fields::default()).rule, Some(RuleId(10)));
}

/// A prepared policy is current only once installed, and never replaces one prepared
/// after it.
#[test]
fn prepared_policies_install_in_order() {
    let store = PolicyStore::new();
    let rules = |action| {
        Arc::new(RuleList {
            rules: vec![],
            default: action,
        })
    };
    let (deny, _) = store
        .prepare(&one_endpoint(3, Direction::Ingress, rules(Action::Deny)))
        .unwrap();
    assert_eq!(store.generation(), 0, "prepared, not published");
    let (allow, _) = store
        .prepare(&one_endpoint(3, Direction::Ingress, rules(Action::Allow)))
        .unwrap();
    let (g_deny, g_allow) = (deny.generation(), allow.generation());
    assert!(g_allow > g_deny);
    assert_eq!(store.install(allow), Some(g_allow));
    assert_eq!(store.install(deny), None, "older than the current one");
    assert_eq!((store.load().generation(), store.generation()), (g_allow, g_allow));
}

/// A worker that lets go of a replaced policy does not free it: `reap` does.
#[test]
fn replaced_policies_are_freed_by_reap_not_by_their_last_reader() {
    let store = PolicyStore::new();
    let held = store.load();
    let weak = Arc::downgrade(&held);
    store.publish(&PolicySet::default()).unwrap();
    assert_eq!(store.reap(), 1);
    drop(held);
    assert!(weak.upgrade().is_some(), "not freed by the reader");
    assert_eq!(store.reap(), 0);
    assert!(weak.upgrade().is_none(), "freed by reap");
}

/// A republished set compiles only the lists it did not have last time: lists rebuilt
/// with the same rules keep their table (and hit counters); a changed one is compiled,
/// its warnings reported again, and decides by its new rules.
#[test]
fn a_republished_set_compiles_only_the_lists_that_changed() {
    let list = |port: u16, with_dead_rule: bool| {
        let mut rules = vec![Rule {
            proto: Some(6),
            dst_ports: Some(PortRange::new(port, port)),
            ..Rule::any(RuleId(1), Action::Allow)
        }];
        if with_dead_rule {
            rules.push(Rule {
                src: Some(Arc::new(AddrSet::new())),
                ..Rule::any(RuleId(2), Action::Deny)
            });
        }
        Arc::new(RuleList {
            rules,
            default: Action::Deny,
        })
    };
    // Each call builds every list afresh, as a reload reading a file does.
    let set = |second_port: u16| PolicySet {
        endpoints: (1..=3u32)
            .map(|id| Endpoint {
                id: EndpointId(id),
                vrf: 0,
                addrs: vec![],
                ingress: Some(list(if id == 2 { second_port } else { 80 }, id == 3)),
                egress: None,
            })
            .collect(),
    };
    let store = PolicyStore::new();
    let (_, warnings) = store.publish(&set(443)).unwrap();
    assert_eq!(warnings.len(), 1, "endpoint 3's dead rule");
    let before = store.load();
    let tcp_to = |port: u16| Fields {
        proto: 6,
        b: port,
        ..Fields::default()
    };
    let t = |p: &Policy, id: u32| p.table(EndpointId(id), Direction::Ingress).unwrap() as *const RuleTable;
    before
        .table(EndpointId(1), Direction::Ingress)
        .unwrap()
        .classify(&tcp_to(80));
    let (_, warnings) = store.publish(&set(8443)).unwrap();
    assert_eq!(warnings.len(), 1, "reported again, though not compiled again");
    let after = store.load();
    assert_eq!(t(&after, 1), t(&before, 1), "unchanged: the same table");
    assert_eq!(t(&after, 3), t(&before, 3));
    assert_ne!(t(&after, 2), t(&before, 2), "changed: compiled");
    let one = after.table(EndpointId(1), Direction::Ingress).unwrap();
    assert_eq!(
        one.hits().find(|&(r, _)| r == RuleId(1)),
        Some((RuleId(1), 1)),
        "counted before, kept"
    );
    let two = after.table(EndpointId(2), Direction::Ingress).unwrap();
    assert_eq!(two.classify(&tcp_to(8443)).rule, Some(RuleId(1)));
    assert_eq!(two.classify(&tcp_to(443)).rule, None);
}
