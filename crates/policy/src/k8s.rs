//! Kubernetes NetworkPolicy as a front end: policies whose selectors the control plane has
//! already resolved (to endpoints and address sets) become per-endpoint rule lists.
//!
//! The mapping (docs/policy.md lists the cases):
//! * an endpoint selected by no policy for a direction is open in that direction;
//! * selected by at least one policy whose `policyTypes` include the direction, it is
//!   isolated there: default deny, and the allow rules of all those policies, unioned;
//! * `policyTypes` absent means Ingress, plus Egress if the policy has egress rules;
//! * a rule allows traffic whose peer is in any of its peers (none = all peers) *and* whose
//!   port matches any of its ports (none = all ports and protocols);
//! * `ipBlock` is `cidr` minus every `except`; a pod/namespace selector peer is the address
//!   set the caller resolved it to;
//! * a port without `port` matches the whole protocol; `endPort` makes a range;
//! * traffic between an endpoint and its node (`node`: the addresses the node's own stack
//!   sends from, as the kubelet's probes do) is always allowed, as Kubernetes requires;
//! * a named port is the number of the container port of that name and protocol: on an
//!   ingress rule that of the selected endpoint itself (so endpoints of one policy may
//!   differ), on an egress rule that of each destination pod (one rule per number, to the
//!   pods that have it); a pod without the name is not matched by the entry, and an
//!   address that is no known pod never is.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use crate::addrset::{AddrSet, Cidr};
use crate::policy::{Endpoint, EndpointId, PolicySet, RuleList};
use crate::rule::{Action, PROTO_SCTP, PolicyError, PortRange, Rule, RuleId};

/// A NetworkPolicy with its selectors resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkPolicy {
    /// `metadata.name` (used in error messages).
    pub name: String,
    /// Endpoints its `podSelector` selects.
    pub selected: Vec<EndpointId>,
    /// `spec.policyTypes`; `None` when the field is absent.
    pub policy_types: Option<Vec<PolicyType>>,
    /// `spec.ingress`.
    pub ingress: Vec<NetworkPolicyRule>,
    /// `spec.egress`.
    pub egress: Vec<NetworkPolicyRule>,
}

/// A `policyTypes` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyType {
    /// `Ingress`.
    Ingress,
    /// `Egress`.
    Egress,
}

/// One ingress (`from`) or egress (`to`) rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkPolicyRule {
    /// `from` / `to`; empty matches every peer.
    pub peers: Vec<Peer>,
    /// `ports`; empty matches every port and protocol.
    pub ports: Vec<NetworkPolicyPort>,
}

/// A `from`/`to` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// A `podSelector`/`namespaceSelector` resolved by the caller to addresses.
    Selected(Arc<AddrSet>),
    /// `ipBlock`.
    IpBlock {
        /// `cidr`.
        cidr: Cidr,
        /// `except`: must lie inside `cidr`.
        except: Vec<Cidr>,
    },
}

/// A `ports` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkPolicyPort {
    /// `protocol` (TCP when absent): 6, 17 or 132.
    pub protocol: u8,
    /// `port`; `None` = every port of the protocol.
    pub port: Option<PortRef>,
    /// `endPort`: the range `port..=end_port` (a numeric `port` only).
    pub end_port: Option<u16>,
}

/// A `port` value: a number, or the name of a container port ([`PodPorts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortRef {
    /// A port number.
    Number(u16),
    /// A container port's name, resolved against the pods' [`ContainerPort`]s.
    Name(String),
}

impl NetworkPolicyPort {
    /// A TCP port.
    pub const fn tcp(port: u16) -> Self {
        NetworkPolicyPort {
            protocol: 6,
            port: Some(PortRef::Number(port)),
            end_port: None,
        }
    }

    /// A TCP port by its container port name.
    pub fn tcp_named(name: &str) -> Self {
        NetworkPolicyPort {
            protocol: 6,
            port: Some(PortRef::Name(name.into())),
            end_port: None,
        }
    }
}

/// A named container port (`containers[].ports[]` with a `name`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ContainerPort {
    /// `name`: an IANA service name ([`check_port_name`]), unique in its pod.
    pub name: String,
    /// `protocol`: 6, 17 or 132.
    pub protocol: u8,
    /// `containerPort`.
    pub port: u16,
}

/// A pod's named ports, for the named `ports` entries of policies: of the endpoints
/// here for ingress rules, of any pod a policy may send to for egress rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodPorts {
    /// The endpoint, for a pod on this node.
    pub endpoint: Option<EndpointId>,
    /// Its addresses.
    pub addrs: Vec<IpAddr>,
    /// Its named container ports.
    pub ports: Vec<ContainerPort>,
}

impl PodPorts {
    fn number(&self, name: &str, protocol: u8) -> Option<u16> {
        self.ports
            .iter()
            .find(|c| c.name == name && c.protocol == protocol)
            .map(|c| c.port)
    }
}

/// Checks a port name as Kubernetes does (`IANA_SVC_NAME`): 1-15 characters of `a-z`,
/// `0-9` and `-`, at least one letter, no `-` at either end or twice in a row.
///
/// ```
/// assert!(policy::k8s::check_port_name("http-alt").is_ok());
/// assert!(policy::k8s::check_port_name("HTTP").is_err());
/// ```
pub fn check_port_name(name: &str) -> Result<(), String> {
    let why = if name.is_empty() || name.len() > 15 {
        "needs 1-15 characters"
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        "takes only a-z, 0-9 and -"
    } else if !name.bytes().any(|b| b.is_ascii_lowercase()) {
        "needs a letter"
    } else if name.starts_with('-') || name.ends_with('-') || name.contains("--") {
        "has a - at an end or two in a row"
    } else {
        return Ok(());
    };
    Err(format!("`{name}` is not a port name: it {why}"))
}

/// Parses a `protocol` value.
pub fn protocol(name: &str) -> Option<u8> {
    match name {
        "TCP" => Some(6),
        "UDP" => Some(17),
        "SCTP" => Some(PROTO_SCTP),
        _ => None,
    }
}

/// Builds the per-endpoint rule lists for `endpoints` (id, VRF, addresses) under `policies`,
/// with the named ports of `pods` (none needed when no policy names a port), on a node
/// whose own stack sends from `node`.
///
/// Rule ids count up from 1 in the order policies and their rules are given; rule 0 of an
/// isolated list allows the node's traffic. Errors name the policy, the rule and the
/// field.
pub fn compile(
    endpoints: &[(EndpointId, u32, Vec<IpAddr>)],
    policies: &[NetworkPolicy],
    pods: &[PodPorts],
    node: &[IpAddr],
) -> Result<PolicySet, PolicyError> {
    compile_with_origins(endpoints, policies, pods, node).map(|(set, _)| set)
}

/// [`compile`], and where each rule id came from, for operators reading rule counters:
/// `db ingress[0]` (policy `db`, its first ingress rule; a rule with several ports or a
/// named port may lower to several ids), `the node` for rule 0.
///
/// ```
/// use policy::k8s::{NetworkPolicy, NetworkPolicyRule, PolicyType, compile_with_origins};
/// use policy::{EndpointId, RuleId};
/// let db = NetworkPolicy {
///     name: "db".into(),
///     selected: vec![EndpointId(1)],
///     policy_types: Some(vec![PolicyType::Ingress]),
///     ingress: vec![NetworkPolicyRule::default()],
///     egress: vec![],
/// };
/// let endpoints = [(EndpointId(1), 0, vec!["10.0.0.2".parse().unwrap()])];
/// let (_, origins) = compile_with_origins(&endpoints, &[db], &[], &["192.0.2.1".parse().unwrap()]).unwrap();
/// assert_eq!(origins[&RuleId(0)], "the node");
/// assert_eq!(origins[&RuleId(1)], "db ingress[0]");
/// ```
pub fn compile_with_origins(
    endpoints: &[(EndpointId, u32, Vec<IpAddr>)],
    policies: &[NetworkPolicy],
    pods: &[PodPorts],
    node: &[IpAddr],
) -> Result<(PolicySet, BTreeMap<RuleId, String>), PolicyError> {
    let node = (!node.is_empty()).then(|| Arc::new(AddrSet::from_addrs(node.iter().copied())));
    // Per policy: its ingress and egress allow rules (or None when it does not isolate).
    let mut next_id = 1u32;
    let mut per_policy = Vec::with_capacity(policies.len());
    for p in policies {
        let types = p.policy_types.clone().unwrap_or_else(|| {
            let mut t = vec![PolicyType::Ingress];
            if !p.egress.is_empty() {
                t.push(PolicyType::Egress);
            }
            t
        });
        let mut lower = |dir: PolicyType, rules: &[NetworkPolicyRule], field: &'static str| {
            if !types.contains(&dir) {
                return Ok(None);
            }
            let mut out = Vec::new();
            for (i, r) in rules.iter().enumerate() {
                out.extend(lower_rule(p, field, i, r, dir, pods, &mut next_id)?);
            }
            Ok::<_, PolicyError>(Some(out))
        };
        per_policy.push((
            lower(PolicyType::Ingress, &p.ingress, "ingress")?,
            lower(PolicyType::Egress, &p.egress, "egress")?,
        ));
    }
    // Endpoints selected by the same policies share one list (compiled once); where
    // those name ports in ingress rules, only endpoints whose named ports are alike.
    type Sharers<'a> = (Vec<usize>, bool, &'a [ContainerPort]);
    let mut shared: BTreeMap<Sharers<'_>, Arc<RuleList>> = BTreeMap::new();
    let by_endpoint: BTreeMap<EndpointId, &PodPorts> = pods.iter().filter_map(|p| Some((p.endpoint?, p))).collect();
    let mut list_for = |ep: EndpointId, egress: bool| {
        let mine: Vec<usize> = policies
            .iter()
            .enumerate()
            .filter(|(i, p)| {
                p.selected.contains(&ep) && {
                    let (ing, eg) = &per_policy[*i];
                    if egress { eg.is_some() } else { ing.is_some() }
                }
            })
            .map(|(i, _)| i)
            .collect();
        if mine.is_empty() {
            return None;
        }
        let own = by_endpoint.get(&ep).copied();
        let names = !egress
            && mine
                .iter()
                .any(|&i| per_policy[i].0.iter().flatten().any(|l| l.named.is_some()));
        let named: &[ContainerPort] = match own {
            Some(p) if names => &p.ports,
            _ => &[],
        };
        let list = shared.entry((mine.clone(), egress, named)).or_insert_with(|| {
            let from_node = node.as_ref().map(|n| {
                let (src, dst) = if egress {
                    (None, Some(n.clone()))
                } else {
                    (Some(n.clone()), None)
                };
                Rule {
                    src,
                    dst,
                    ..Rule::any(RuleId(0), Action::Allow)
                }
            });
            let rules = from_node
                .into_iter()
                .chain(
                    mine.iter()
                        .flat_map(|&i| {
                            let (ing, eg) = &per_policy[i];
                            if egress { eg } else { ing }.iter().flatten()
                        })
                        .filter_map(|l| match &l.named {
                            None => Some(l.rule.clone()),
                            Some(name) => own.and_then(|p| p.number(name, l.rule.proto?)).map(|n| Rule {
                                dst_ports: Some(PortRange::single(n)),
                                ..l.rule.clone()
                            }),
                        }),
                )
                .collect();
            Arc::new(RuleList {
                rules,
                default: Action::Deny,
            })
        });
        Some(list.clone())
    };
    let endpoints = endpoints
        .iter()
        .map(|(id, vrf, addrs)| Endpoint {
            id: *id,
            vrf: *vrf,
            addrs: addrs.clone(),
            ingress: list_for(*id, false),
            egress: list_for(*id, true),
        })
        .collect();
    let mut origins: BTreeMap<RuleId, String> = per_policy
        .iter()
        .flat_map(|(ing, eg)| ing.iter().chain(eg).flatten())
        .map(|l| (l.rule.id, l.origin.clone()))
        .collect();
    if node.is_some() {
        origins.insert(RuleId(0), "the node".into());
    }
    Ok((PolicySet { endpoints }, origins))
}

/// A lowered rule. One with a named port (only on ingress rules) is finished per endpoint,
/// with that endpoint's number for the name; without it, the endpoint has no such rule.
struct Lowered {
    rule: Rule,
    named: Option<String>,
    /// The policy and rule it came from: `db ingress[0]`.
    origin: String,
}

fn lower_rule(
    p: &NetworkPolicy,
    field: &'static str,
    index: usize,
    r: &NetworkPolicyRule,
    dir: PolicyType,
    pods: &[PodPorts],
    next_id: &mut u32,
) -> Result<Vec<Lowered>, PolicyError> {
    let err = |sub: &'static str, reason: String| PolicyError {
        rule: None,
        field: sub,
        reason: format!("policy `{}` {field}[{index}]: {reason}", p.name),
    };
    let peers = if r.peers.is_empty() {
        None
    } else {
        let mut set = AddrSet::new();
        for (j, peer) in r.peers.iter().enumerate() {
            let s = match peer {
                Peer::Selected(s) => (**s).clone(),
                Peer::IpBlock { cidr, except } => {
                    let block = AddrSet::from_cidrs(&[*cidr]);
                    let ex = AddrSet::from_cidrs(except);
                    if let Some(bad) = except.iter().find(|e| !block.is_superset(&AddrSet::from_cidrs(&[**e]))) {
                        return Err(err("ipBlock.except", format!("peer {j}: {bad} is not inside {cidr}")));
                    }
                    block.difference(&ex)
                }
            };
            set = set.union(&s);
        }
        Some(Arc::new(set))
    };
    let mut out = Vec::new();
    let mut push =
        |proto: Option<u8>, dst_ports: Option<PortRange>, to: &Option<Arc<AddrSet>>, named: Option<String>| {
            let id = RuleId(*next_id);
            *next_id += 1;
            let (src, dst) = match dir {
                PolicyType::Ingress => (peers.clone(), None),
                PolicyType::Egress => (None, to.clone()),
            };
            let rule = Rule {
                src,
                dst,
                proto,
                dst_ports,
                ..Rule::any(id, Action::Allow)
            };
            let origin = format!("{} {field}[{index}]", p.name);
            out.push(Lowered { rule, named, origin });
        };
    for (j, port) in r.ports.iter().enumerate() {
        if !matches!(port.protocol, 6 | 17 | PROTO_SCTP) {
            return Err(err(
                "ports.protocol",
                format!("port {j}: protocol {} is not TCP, UDP or SCTP", port.protocol),
            ));
        }
        let proto = Some(port.protocol);
        let range = match (&port.port, port.end_port) {
            (None, None) => None,
            (None, Some(_)) => return Err(err("ports.endPort", format!("port {j}: endPort needs port"))),
            (Some(PortRef::Name(_)), Some(_)) => {
                return Err(err("ports.endPort", format!("port {j}: endPort needs a numeric port")));
            }
            (Some(PortRef::Number(a)), None) => Some(PortRange::single(*a)),
            (Some(PortRef::Number(a)), Some(b)) if b < *a => {
                return Err(err("ports.endPort", format!("port {j}: endPort {b} is below port {a}")));
            }
            (Some(PortRef::Number(a)), Some(b)) => Some(PortRange::new(*a, b)),
            (Some(PortRef::Name(name)), None) => {
                check_port_name(name).map_err(|why| err("ports.port", format!("port {j}: {why}")))?;
                if dir == PolicyType::Ingress {
                    push(proto, None, &None, Some(name.clone()));
                } else {
                    // One rule per number the destination pods give the name.
                    let mut by_number: BTreeMap<u16, Vec<IpAddr>> = BTreeMap::new();
                    for pod in pods {
                        if let Some(n) = pod.number(name, port.protocol) {
                            let to = pod
                                .addrs
                                .iter()
                                .filter(|a| peers.as_ref().is_none_or(|s| s.contains(**a)));
                            by_number.entry(n).or_default().extend(to);
                        }
                    }
                    for (n, addrs) in by_number.into_iter().filter(|(_, a)| !a.is_empty()) {
                        let to = Some(Arc::new(AddrSet::from_addrs(addrs)));
                        push(proto, Some(PortRange::single(n)), &to, None);
                    }
                }
                continue;
            }
        };
        push(proto, range, &peers, None);
    }
    if r.ports.is_empty() {
        push(None, None, &peers, None);
    }
    Ok(out)
}
