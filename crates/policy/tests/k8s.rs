//! NetworkPolicy semantics, from the examples in the Kubernetes documentation
//! (concepts/services-networking/network-policies).

use std::net::IpAddr;
use std::sync::Arc;

use policy::k8s::{
    self, ContainerPort, NetworkPolicy, NetworkPolicyPort, NetworkPolicyRule, Peer, PodPorts, PolicyType, PortRef,
};
use policy::*;
use wire::flow::FlowKey;

const DB: EndpointId = EndpointId(1);
const FRONTEND: EndpointId = EndpointId(2);
const OTHER: EndpointId = EndpointId(3);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn endpoints() -> Vec<(EndpointId, u32, Vec<IpAddr>)> {
    vec![
        (DB, 0, vec![ip("10.1.0.10")]),
        (FRONTEND, 0, vec![ip("10.1.0.20")]),
        (OTHER, 0, vec![ip("10.1.0.30")]),
    ]
}

fn policy(name: &str, selected: &[EndpointId]) -> NetworkPolicy {
    NetworkPolicy {
        name: name.into(),
        selected: selected.to_vec(),
        policy_types: None,
        ingress: vec![],
        egress: vec![],
    }
}

fn compile(policies: &[NetworkPolicy]) -> Policy {
    let set = k8s::compile(&endpoints(), policies, &[], &[]).unwrap();
    Policy::compile(&set, 1).unwrap().0
}

fn allowed(p: &Policy, src: &str, dst: &str, proto: u8, dport: u16) -> bool {
    let key = FlowKey::v4(src.parse().unwrap(), dst.parse().unwrap(), proto, 40000, dport);
    p.evaluate(&Fields::from_key(&key, Some((8, 0)))).allow
}

#[test]
fn unselected_endpoints_are_open() {
    let p = compile(&[]);
    assert!(allowed(&p, "10.1.0.20", "10.1.0.10", 6, 5432));
    assert!(allowed(&p, "192.0.2.1", "10.1.0.30", 17, 53));
}

#[test]
fn default_deny_all_ingress() {
    // podSelector: {}, policyTypes: [Ingress], no rules.
    let deny = NetworkPolicy {
        policy_types: Some(vec![PolicyType::Ingress]),
        ..policy("default-deny-ingress", &[DB, FRONTEND, OTHER])
    };
    let p = compile(&[deny]);
    assert!(!allowed(&p, "10.1.0.20", "10.1.0.10", 6, 80));
    assert!(!allowed(&p, "192.0.2.1", "10.1.0.30", 1, 0));
    // Egress is not isolated: traffic leaving to an outside address passes.
    assert!(allowed(&p, "10.1.0.10", "192.0.2.1", 6, 443));
}

#[test]
fn allow_all_ingress_with_an_empty_rule() {
    // ingress: [{}] selects every source and port.
    let all = NetworkPolicy {
        ingress: vec![NetworkPolicyRule::default()],
        ..policy("allow-all-ingress", &[DB])
    };
    let p = compile(&[all]);
    assert!(allowed(&p, "192.0.2.1", "10.1.0.10", 17, 9));
    assert!(allowed(&p, "192.0.2.1", "10.1.0.10", 1, 0));
}

#[test]
fn default_deny_all_egress_leaves_ingress_open() {
    let deny = NetworkPolicy {
        policy_types: Some(vec![PolicyType::Egress]),
        ..policy("default-deny-egress", &[DB])
    };
    let p = compile(&[deny]);
    assert!(!allowed(&p, "10.1.0.10", "192.0.2.1", 6, 443));
    assert!(allowed(&p, "192.0.2.1", "10.1.0.10", 6, 5432));
    assert!(p.table(DB, Direction::Ingress).is_none());
}

/// The documentation's `test-network-policy`: role=db pods accept TCP 6379 from
/// 172.17.0.0/16 except 172.17.1.0/24, from namespace project=myproject and from pods
/// role=frontend; they may send TCP 5978 to 10.0.0.0/24 only.
#[test]
fn the_documentation_example() {
    let myproject = Arc::new(AddrSet::from_addrs([ip("10.2.0.5"), ip("10.2.0.6")]));
    let frontend = Arc::new(AddrSet::from_addrs([ip("10.1.0.20")]));
    let np = NetworkPolicy {
        policy_types: Some(vec![PolicyType::Ingress, PolicyType::Egress]),
        ingress: vec![NetworkPolicyRule {
            peers: vec![
                Peer::IpBlock {
                    cidr: "172.17.0.0/16".parse().unwrap(),
                    except: vec!["172.17.1.0/24".parse().unwrap()],
                },
                Peer::Selected(myproject),
                Peer::Selected(frontend),
            ],
            ports: vec![NetworkPolicyPort::tcp(6379)],
        }],
        egress: vec![NetworkPolicyRule {
            peers: vec![Peer::IpBlock {
                cidr: "10.0.0.0/24".parse().unwrap(),
                except: vec![],
            }],
            ports: vec![NetworkPolicyPort::tcp(5978)],
        }],
        ..policy("test-network-policy", &[DB])
    };
    let p = compile(&[np]);
    let db = "10.1.0.10";
    assert!(allowed(&p, "172.17.5.5", db, 6, 6379));
    assert!(!allowed(&p, "172.17.1.5", db, 6, 6379), "except");
    assert!(allowed(&p, "10.2.0.6", db, 6, 6379), "namespace selector");
    assert!(allowed(&p, "10.1.0.20", db, 6, 6379), "pod selector");
    assert!(!allowed(&p, "10.1.0.30", db, 6, 6379), "unselected pod");
    assert!(!allowed(&p, "10.1.0.20", db, 6, 6380), "other port");
    assert!(!allowed(&p, "10.1.0.20", db, 17, 6379), "other protocol");
    assert!(allowed(&p, db, "10.0.0.77", 6, 5978));
    assert!(!allowed(&p, db, "10.0.1.77", 6, 5978));
    assert!(!allowed(&p, db, "10.0.0.77", 6, 5979));
    // The frontend is not selected: it may reach anything, but not DB on another port.
    assert!(allowed(&p, "10.1.0.20", "10.1.0.30", 6, 1));
}

#[test]
fn end_port_makes_a_range() {
    let np = NetworkPolicy {
        policy_types: Some(vec![PolicyType::Egress]),
        egress: vec![NetworkPolicyRule {
            peers: vec![Peer::IpBlock {
                cidr: "10.0.0.0/24".parse().unwrap(),
                except: vec![],
            }],
            ports: vec![NetworkPolicyPort {
                protocol: 6,
                port: Some(PortRef::Number(32000)),
                end_port: Some(32768),
            }],
        }],
        ..policy("multi-port-egress", &[DB])
    };
    let p = compile(&[np]);
    for (port, ok) in [
        (31999, false),
        (32000, true),
        (32500, true),
        (32768, true),
        (32769, false),
    ] {
        assert_eq!(allowed(&p, "10.1.0.10", "10.0.0.1", 6, port), ok, "port {port}");
    }
}

#[test]
fn policies_selecting_one_endpoint_are_unioned() {
    let a = NetworkPolicy {
        ingress: vec![NetworkPolicyRule {
            peers: vec![],
            ports: vec![NetworkPolicyPort::tcp(80)],
        }],
        ..policy("web", &[DB, OTHER])
    };
    let b = NetworkPolicy {
        ingress: vec![NetworkPolicyRule {
            peers: vec![],
            ports: vec![NetworkPolicyPort {
                protocol: 17,
                port: None,
                end_port: None,
            }],
        }],
        ..policy("any-udp", &[DB])
    };
    let p = compile(&[a, b]);
    assert!(allowed(&p, "192.0.2.1", "10.1.0.10", 6, 80));
    assert!(allowed(&p, "192.0.2.1", "10.1.0.10", 17, 1234));
    assert!(!allowed(&p, "192.0.2.1", "10.1.0.10", 6, 81));
    assert!(allowed(&p, "192.0.2.1", "10.1.0.30", 6, 80));
    assert!(
        !allowed(&p, "192.0.2.1", "10.1.0.30", 17, 1234),
        "OTHER is selected only by `web`"
    );
}

#[test]
fn absent_policy_types_follow_the_rules_given() {
    // No policyTypes and egress rules: both directions isolated.
    let np = NetworkPolicy {
        egress: vec![NetworkPolicyRule {
            peers: vec![],
            ports: vec![NetworkPolicyPort {
                protocol: 17,
                port: Some(PortRef::Number(53)),
                end_port: None,
            }],
        }],
        ..policy("dns-only", &[FRONTEND])
    };
    let p = compile(&[np]);
    assert!(allowed(&p, "10.1.0.20", "192.0.2.53", 17, 53));
    assert!(!allowed(&p, "10.1.0.20", "192.0.2.53", 6, 443));
    assert!(
        !allowed(&p, "192.0.2.1", "10.1.0.20", 6, 80),
        "ingress isolated with no rules"
    );
}

#[test]
fn selected_peer_and_both_ends_are_checked() {
    // DB ingress allows only FRONTEND; FRONTEND egress allows only DB:5432.
    let fe = Arc::new(AddrSet::from_addrs([ip("10.1.0.20")]));
    let db = Arc::new(AddrSet::from_addrs([ip("10.1.0.10")]));
    let a = NetworkPolicy {
        ingress: vec![NetworkPolicyRule {
            peers: vec![Peer::Selected(fe)],
            ports: vec![],
        }],
        ..policy("db-from-frontend", &[DB])
    };
    let b = NetworkPolicy {
        policy_types: Some(vec![PolicyType::Egress]),
        egress: vec![NetworkPolicyRule {
            peers: vec![Peer::Selected(db)],
            ports: vec![NetworkPolicyPort::tcp(5432)],
        }],
        ..policy("frontend-to-db", &[FRONTEND])
    };
    let p = compile(&[a, b]);
    assert!(allowed(&p, "10.1.0.20", "10.1.0.10", 6, 5432));
    assert!(!allowed(&p, "10.1.0.20", "10.1.0.10", 6, 22), "egress of the frontend");
    assert!(!allowed(&p, "10.1.0.30", "10.1.0.10", 6, 5432), "ingress of the db");
}

#[test]
fn bad_policies_are_rejected_with_the_field() {
    let bad_end = NetworkPolicy {
        ingress: vec![NetworkPolicyRule {
            peers: vec![],
            ports: vec![NetworkPolicyPort {
                protocol: 6,
                port: Some(PortRef::Number(90)),
                end_port: Some(80),
            }],
        }],
        ..policy("p1", &[DB])
    };
    let e = k8s::compile(&endpoints(), &[bad_end], &[], &[]).unwrap_err();
    assert_eq!(e.field, "ports.endPort");
    assert_eq!(
        e.to_string(),
        "field `ports.endPort`: policy `p1` ingress[0]: port 0: endPort 80 is below port 90"
    );

    let outside = NetworkPolicy {
        egress: vec![NetworkPolicyRule {
            peers: vec![Peer::IpBlock {
                cidr: "10.0.0.0/24".parse().unwrap(),
                except: vec!["10.0.1.0/24".parse().unwrap()],
            }],
            ports: vec![],
        }],
        ..policy("p2", &[DB])
    };
    let e = k8s::compile(&endpoints(), &[outside], &[], &[]).unwrap_err();
    assert!(
        e.to_string()
            .contains("policy `p2` egress[0]: peer 0: 10.0.1.0/24 is not inside 10.0.0.0/24"),
        "{e}"
    );

    let proto = NetworkPolicy {
        ingress: vec![NetworkPolicyRule {
            peers: vec![],
            ports: vec![NetworkPolicyPort {
                protocol: 1,
                port: None,
                end_port: None,
            }],
        }],
        ..policy("p3", &[DB])
    };
    assert_eq!(
        k8s::compile(&endpoints(), &[proto], &[], &[]).unwrap_err().field,
        "ports.protocol"
    );
    assert_eq!(k8s::protocol("SCTP"), Some(132));
    assert_eq!(k8s::protocol("ICMP"), None);
}

#[test]
fn except_covering_the_block_leaves_a_rule_that_never_matches() {
    let np = NetworkPolicy {
        ingress: vec![NetworkPolicyRule {
            peers: vec![Peer::IpBlock {
                cidr: "10.9.0.0/16".parse().unwrap(),
                except: vec!["10.9.0.0/16".parse().unwrap()],
            }],
            ports: vec![],
        }],
        ..policy("nothing", &[DB])
    };
    let set = k8s::compile(&endpoints(), &[np], &[], &[]).unwrap();
    let (p, warnings) = Policy::compile(&set, 1).unwrap();
    assert_eq!(warnings.len(), 1);
    assert!(!allowed(&p, "10.9.1.1", "10.1.0.10", 6, 80));
}

/// Named ports of the pods in the named-port tests: db serves `http` on 8080 and `dns` on
/// UDP 53, frontend `http` on 80, other names nothing; two remote pods serve `http` on
/// 8443 and 80.
fn named_pods() -> Vec<PodPorts> {
    let pod = |endpoint: Option<EndpointId>, addr: &str, ports: &[(&str, u8, u16)]| PodPorts {
        endpoint,
        addrs: vec![ip(addr)],
        ports: ports
            .iter()
            .map(|&(name, protocol, port)| ContainerPort {
                name: name.into(),
                protocol,
                port,
            })
            .collect(),
    };
    vec![
        pod(Some(DB), "10.1.0.10", &[("http", 6, 8080), ("dns", 17, 53)]),
        pod(Some(FRONTEND), "10.1.0.20", &[("http", 6, 80)]),
        pod(Some(OTHER), "10.1.0.30", &[]),
        pod(None, "10.9.0.5", &[("http", 6, 8443)]),
        pod(None, "10.9.0.6", &[("http", 6, 80)]),
    ]
}

fn compile_named(policies: &[NetworkPolicy]) -> Policy {
    let set = k8s::compile(&endpoints(), policies, &named_pods(), &[]).unwrap();
    Policy::compile(&set, 1).unwrap().0
}

#[test]
fn an_ingress_named_port_is_each_selected_pods_own_number() {
    let np = NetworkPolicy {
        ingress: vec![NetworkPolicyRule {
            peers: vec![],
            ports: vec![
                NetworkPolicyPort::tcp_named("http"),
                NetworkPolicyPort {
                    protocol: 17,
                    ..NetworkPolicyPort::tcp_named("dns")
                },
            ],
        }],
        ..policy("web", &[DB, FRONTEND, OTHER])
    };
    let p = compile_named(&[np]);
    let client = "192.0.2.1";
    assert!(allowed(&p, client, "10.1.0.10", 6, 8080), "db's http");
    assert!(
        !allowed(&p, client, "10.1.0.10", 6, 80),
        "frontend's number is not db's"
    );
    assert!(allowed(&p, client, "10.1.0.20", 6, 80), "frontend's http");
    assert!(
        !allowed(&p, client, "10.1.0.20", 6, 8080),
        "db's number is not frontend's"
    );
    assert!(allowed(&p, client, "10.1.0.10", 17, 53), "db's dns, over UDP");
    assert!(!allowed(&p, client, "10.1.0.10", 6, 53), "dns is a UDP port");
    assert!(!allowed(&p, client, "10.1.0.20", 17, 53), "frontend has no dns");
    for port in [53, 80, 8080] {
        assert!(
            !allowed(&p, client, "10.1.0.30", 6, port),
            "other names no port: isolated"
        );
    }
}

#[test]
fn an_egress_named_port_is_each_destination_pods_own_number() {
    let to_some = NetworkPolicy {
        policy_types: Some(vec![PolicyType::Egress]),
        egress: vec![NetworkPolicyRule {
            peers: vec![Peer::Selected(Arc::new(AddrSet::from_addrs([
                ip("10.1.0.10"),
                ip("10.9.0.5"),
            ])))],
            ports: vec![NetworkPolicyPort::tcp_named("http")],
        }],
        ..policy("to-some", &[FRONTEND])
    };
    let p = compile_named(&[to_some]);
    let me = "10.1.0.20";
    assert!(allowed(&p, me, "10.1.0.10", 6, 8080));
    assert!(!allowed(&p, me, "10.1.0.10", 6, 80), "the number of another pod");
    assert!(allowed(&p, me, "10.9.0.5", 6, 8443));
    assert!(!allowed(&p, me, "10.9.0.6", 6, 80), "a pod with the name, not a peer");
    let to_any = NetworkPolicy {
        policy_types: Some(vec![PolicyType::Egress]),
        egress: vec![NetworkPolicyRule {
            peers: vec![],
            ports: vec![NetworkPolicyPort::tcp_named("http")],
        }],
        ..policy("to-any", &[FRONTEND])
    };
    let p = compile_named(&[to_any]);
    assert!(allowed(&p, me, "10.9.0.6", 6, 80));
    assert!(allowed(&p, me, "10.9.0.5", 6, 8443));
    assert!(!allowed(&p, me, "10.9.0.5", 6, 80), "10.9.0.6's number, not 10.9.0.5's");
    assert!(!allowed(&p, me, "192.0.2.1", 6, 80), "no pod, so no named port");
    assert!(!allowed(&p, me, "10.1.0.30", 6, 80), "a pod without the name");
}

#[test]
fn a_named_port_nobody_has_allows_nothing() {
    let np = NetworkPolicy {
        policy_types: Some(vec![PolicyType::Ingress, PolicyType::Egress]),
        ingress: vec![NetworkPolicyRule {
            peers: vec![],
            ports: vec![NetworkPolicyPort::tcp_named("metrics")],
        }],
        egress: vec![NetworkPolicyRule {
            peers: vec![],
            ports: vec![NetworkPolicyPort::tcp_named("metrics")],
        }],
        ..policy("metrics", &[DB])
    };
    let set = k8s::compile(&endpoints(), &[np], &named_pods(), &[]).unwrap();
    let (p, warnings) = Policy::compile(&set, 1).unwrap();
    assert!(
        warnings.is_empty(),
        "no rule that can never match is made: {warnings:?}"
    );
    assert!(!allowed(&p, "192.0.2.1", "10.1.0.10", 6, 8080));
    assert!(!allowed(&p, "10.1.0.10", "10.9.0.5", 6, 8443));
}

#[test]
fn named_ports_with_an_end_port_or_a_bad_name_are_refused() {
    let cases = [
        (
            NetworkPolicyPort {
                end_port: Some(90),
                ..NetworkPolicyPort::tcp_named("http")
            },
            "ports.endPort",
            "endPort needs a numeric port",
        ),
        (
            NetworkPolicyPort::tcp_named("HTTP"),
            "ports.port",
            "`HTTP` is not a port name",
        ),
        (
            NetworkPolicyPort::tcp_named("web--ui"),
            "ports.port",
            "`web--ui` is not a port name",
        ),
        (
            NetworkPolicyPort::tcp_named("8080x8080x8080x8"),
            "ports.port",
            "needs 1-15",
        ),
    ];
    for (port, field, reason) in cases {
        let np = NetworkPolicy {
            ingress: vec![NetworkPolicyRule {
                peers: vec![],
                ports: vec![port],
            }],
            ..policy("bad", &[DB])
        };
        let e = k8s::compile(&endpoints(), &[np], &named_pods(), &[]).unwrap_err();
        assert_eq!(e.field, field);
        assert!(
            e.reason.contains("policy `bad` ingress[0]") && e.reason.contains(reason),
            "{e}"
        );
    }
}

#[test]
fn endpoints_share_a_list_unless_a_named_port_sets_them_apart() {
    let rule = |port| NetworkPolicyRule {
        peers: vec![],
        ports: vec![port],
    };
    let lists = |port| {
        let np = NetworkPolicy {
            ingress: vec![rule(port)],
            ..policy("p", &[DB, FRONTEND])
        };
        let set = k8s::compile(&endpoints(), &[np], &named_pods(), &[]).unwrap();
        let of = |id| {
            set.endpoints
                .iter()
                .find(|e| e.id == id)
                .unwrap()
                .ingress
                .clone()
                .unwrap()
        };
        (of(DB), of(FRONTEND))
    };
    let (db, frontend) = lists(NetworkPolicyPort::tcp(443));
    assert!(Arc::ptr_eq(&db, &frontend), "numbers only: one list for both");
    let (db, frontend) = lists(NetworkPolicyPort::tcp_named("http"));
    assert!(!Arc::ptr_eq(&db, &frontend), "http is 8080 at db, 80 at frontend");
}

#[test]
fn the_node_always_reaches_its_pods_and_is_reached_by_them() {
    let deny = NetworkPolicy {
        policy_types: Some(vec![PolicyType::Ingress, PolicyType::Egress]),
        ..policy("default-deny", &[DB])
    };
    let node = ip("192.0.2.1");
    let set = k8s::compile(&endpoints(), &[deny], &[], &[node]).unwrap();
    let p = Policy::compile(&set, 1).unwrap().0;
    assert!(allowed(&p, "192.0.2.1", "10.1.0.10", 6, 10250), "the kubelet's probe");
    assert!(
        allowed(&p, "10.1.0.10", "192.0.2.1", 17, 53),
        "to a service on the node"
    );
    assert!(!allowed(&p, "192.0.2.2", "10.1.0.10", 6, 10250), "another address");
    assert!(!allowed(&p, "10.1.0.10", "192.0.2.2", 17, 53));
    let db = set.endpoints.iter().find(|e| e.id == DB).unwrap();
    assert_eq!(
        db.ingress.as_ref().unwrap().rules[0].id,
        RuleId(0),
        "rule 0 is the node's"
    );
}
