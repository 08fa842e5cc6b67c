//! NetworkPolicy lowered and compiled, against a direct reading of the Kubernetes
//! semantics, on random pods (with random named ports) and random policies: every
//! connection between the pods, the node and an outside address, over TCP and UDP to a
//! few ports, gets the verdict the semantics give.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use policy::k8s::{
    self, ContainerPort, NetworkPolicy, NetworkPolicyPort, NetworkPolicyRule, Peer, PodPorts, PolicyType, PortRef,
};
use policy::*;
use proptest::prelude::*;
use wire::flow::FlowKey;

/// Pods 0-3 are on this node (endpoints 1-4), 4-6 elsewhere; 7 stands for an address
/// that is no pod, 8 for the node's own.
const PODS: usize = 7;
const NODE: usize = 8;
const NAMES: [&str; 2] = ["web", "api"];
const NUMBERS: [u16; 3] = [80, 81, 82];

fn addr(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, i as u8 + 1))
}

fn local(i: usize) -> Option<EndpointId> {
    (i < 4).then(|| EndpointId(i as u32 + 1))
}

fn proto() -> impl Strategy<Value = u8> {
    prop_oneof![Just(6u8), Just(17)]
}

/// Each pod gives each name at most one number and protocol.
fn pod_ports() -> impl Strategy<Value = Vec<PodPorts>> {
    prop::collection::vec(
        prop::collection::vec(prop::option::of((proto(), prop::sample::select(&NUMBERS[..]))), 2),
        PODS,
    )
    .prop_map(|pods| {
        pods.into_iter()
            .enumerate()
            .map(|(i, named)| PodPorts {
                endpoint: local(i),
                addrs: vec![addr(i)],
                ports: named
                    .into_iter()
                    .zip(NAMES)
                    .filter_map(|(p, name)| {
                        p.map(|(protocol, port)| ContainerPort {
                            name: name.into(),
                            protocol,
                            port,
                        })
                    })
                    .collect(),
            })
            .collect()
    })
}

fn pod_set() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0..=PODS, 0..4)
}

fn peer() -> impl Strategy<Value = Peer> {
    prop_oneof![
        pod_set().prop_map(|s| Peer::Selected(Arc::new(AddrSet::from_addrs(s.into_iter().map(addr))))),
        // 10.0.0.0/29 holds pods 0-6; /30 pods 0-2, /31 pods 0 and 1 (less 10.0.0.1 = pod 0).
        (prop_oneof![Just(29u8), Just(30), Just(31)], any::<bool>()).prop_map(|(len, except)| Peer::IpBlock {
            cidr: Cidr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0)), len).unwrap(),
            except: if except { vec![Cidr::host(addr(0))] } else { vec![] },
        }),
    ]
}

fn port() -> impl Strategy<Value = NetworkPolicyPort> {
    (
        proto(),
        prop_oneof![
            Just(None),
            prop::sample::select(&NUMBERS[..]).prop_map(|n| Some(PortRef::Number(n))),
            prop::sample::select(&NAMES[..]).prop_map(|n| Some(PortRef::Name(n.into()))),
        ],
    )
        .prop_map(|(protocol, port)| NetworkPolicyPort {
            protocol,
            port,
            end_port: None,
        })
}

fn rule() -> impl Strategy<Value = NetworkPolicyRule> {
    (prop::collection::vec(peer(), 0..3), prop::collection::vec(port(), 0..3))
        .prop_map(|(peers, ports)| NetworkPolicyRule { peers, ports })
}

fn network_policy() -> impl Strategy<Value = NetworkPolicy> {
    (
        prop::collection::vec(0..4usize, 0..4),
        prop_oneof![
            Just(None),
            Just(Some(vec![PolicyType::Ingress])),
            Just(Some(vec![PolicyType::Egress])),
            Just(Some(vec![PolicyType::Ingress, PolicyType::Egress])),
        ],
        prop::collection::vec(rule(), 0..3),
        prop::collection::vec(rule(), 0..3),
    )
        .prop_map(|(selected, policy_types, ingress, egress)| NetworkPolicy {
            name: "p".into(),
            selected: selected.into_iter().filter_map(local).collect(),
            policy_types,
            ingress,
            egress,
        })
}

/// The semantics, read directly: whether `rule` of a policy on `own` lets traffic with
/// `peer` pass to `dst` (the pod whose named ports count) over `proto` to `dport`.
fn rule_matches(pods: &[PodPorts], rule: &NetworkPolicyRule, peer: usize, dst: usize, proto: u8, dport: u16) -> bool {
    let peer_ok = rule.peers.is_empty()
        || rule.peers.iter().any(|p| match p {
            Peer::Selected(s) => s.contains(addr(peer)),
            Peer::IpBlock { cidr, except } => {
                let inside = |c: &Cidr| AddrSet::from_cidrs(&[*c]).contains(addr(peer));
                inside(cidr) && !except.iter().any(inside)
            }
        });
    let port_ok = rule.ports.is_empty()
        || rule.ports.iter().any(|p| {
            p.protocol == proto
                && match &p.port {
                    None => true,
                    Some(PortRef::Number(n)) => *n == dport,
                    Some(PortRef::Name(name)) => pods.get(dst).is_some_and(|pod| {
                        pod.ports
                            .iter()
                            .any(|c| &c.name == name && c.protocol == proto && c.port == dport)
                    }),
                }
        });
    peer_ok && port_ok
}

fn isolates(p: &NetworkPolicy, dir: PolicyType) -> bool {
    match &p.policy_types {
        Some(t) => t.contains(&dir),
        None => dir == PolicyType::Ingress || !p.egress.is_empty(),
    }
}

/// Whether `dir` lets the connection through at `own` (the pod whose policies count).
fn direction_allows(
    pods: &[PodPorts],
    policies: &[NetworkPolicy],
    dir: PolicyType,
    src: usize,
    dst: usize,
    proto: u8,
    dport: u16,
) -> bool {
    let own = if dir == PolicyType::Ingress { dst } else { src };
    let Some(ep) = local(own) else { return true };
    let mine: Vec<&NetworkPolicy> = policies
        .iter()
        .filter(|p| p.selected.contains(&ep) && isolates(p, dir))
        .collect();
    if mine.is_empty() {
        return true;
    }
    let peer = if dir == PolicyType::Ingress { src } else { dst };
    // Traffic with the pod's own node is always allowed.
    if peer == NODE {
        return true;
    }
    mine.iter().any(|p| {
        let rules = if dir == PolicyType::Ingress {
            &p.ingress
        } else {
            &p.egress
        };
        rules.iter().any(|r| rule_matches(pods, r, peer, dst, proto, dport))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn verdicts_follow_the_semantics(
        pods in pod_ports(),
        policies in prop::collection::vec(network_policy(), 0..4),
    ) {
        let endpoints: Vec<_> = (0..4).map(|i| (local(i).unwrap(), 0, vec![addr(i)])).collect();
        let set = k8s::compile(&endpoints, &policies, &pods, &[addr(NODE)]).unwrap();
        let (compiled, _) = Policy::compile(&set, 1).unwrap();
        for src in 0..=NODE {
            for dst in (0..=NODE).filter(|&d| d != src) {
                for proto in [6u8, 17] {
                    for dport in NUMBERS {
                        let (IpAddr::V4(s), IpAddr::V4(d)) = (addr(src), addr(dst)) else { unreachable!() };
                        let key = FlowKey::v4(s, d, proto, 40000, dport);
                        let got = compiled.evaluate(&Fields::from_key(&key, None)).allow;
                        let want = [PolicyType::Egress, PolicyType::Ingress]
                            .iter()
                            .all(|&dir| direction_allows(&pods, &policies, dir, src, dst, proto, dport));
                        prop_assert_eq!(got, want, "{} -> {}:{}/{}", addr(src), addr(dst), dport, proto);
                    }
                }
            }
        }
    }
}
