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
//! * a port without `port` matches the whole protocol; `endPort` makes a range.

use std::collections::BTreeMap;
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

/// A `ports` entry. Named ports must be resolved to numbers by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetworkPolicyPort {
    /// `protocol` (TCP when absent): 6, 17 or 132.
    pub protocol: u8,
    /// `port`; `None` = every port of the protocol.
    pub port: Option<u16>,
    /// `endPort`: the range `port..=end_port`.
    pub end_port: Option<u16>,
}

impl NetworkPolicyPort {
    /// A TCP port.
    pub const fn tcp(port: u16) -> Self {
        NetworkPolicyPort {
            protocol: 6,
            port: Some(port),
            end_port: None,
        }
    }
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

/// Builds the per-endpoint rule lists for `endpoints` (id, VRF, addresses) under `policies`.
///
/// Rule ids count up from 1 in the order policies and their rules are given. Errors name
/// the policy, the rule and the field.
pub fn compile(
    endpoints: &[(EndpointId, u32, Vec<std::net::IpAddr>)],
    policies: &[NetworkPolicy],
) -> Result<PolicySet, PolicyError> {
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
                out.extend(lower_rule(p, field, i, r, dir, &mut next_id)?);
            }
            Ok::<_, PolicyError>(Some(out))
        };
        per_policy.push((
            lower(PolicyType::Ingress, &p.ingress, "ingress")?,
            lower(PolicyType::Egress, &p.egress, "egress")?,
        ));
    }
    // Endpoints selected by the same policies share one list (compiled once).
    let mut shared: BTreeMap<(Vec<usize>, bool), Arc<RuleList>> = BTreeMap::new();
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
        let list = shared.entry((mine.clone(), egress)).or_insert_with(|| {
            let rules = mine
                .iter()
                .flat_map(|&i| {
                    let (ing, eg) = &per_policy[i];
                    if egress { eg } else { ing }.iter().flatten().cloned()
                })
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
    Ok(PolicySet { endpoints })
}

fn lower_rule(
    p: &NetworkPolicy,
    field: &'static str,
    index: usize,
    r: &NetworkPolicyRule,
    dir: PolicyType,
    next_id: &mut u32,
) -> Result<Vec<Rule>, PolicyError> {
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
    let mut ports: Vec<(Option<u8>, Option<PortRange>)> = Vec::new();
    for (j, port) in r.ports.iter().enumerate() {
        if !matches!(port.protocol, 6 | 17 | PROTO_SCTP) {
            return Err(err(
                "ports.protocol",
                format!("port {j}: protocol {} is not TCP, UDP or SCTP", port.protocol),
            ));
        }
        let range = match (port.port, port.end_port) {
            (None, None) => None,
            (None, Some(_)) => return Err(err("ports.endPort", format!("port {j}: endPort needs port"))),
            (Some(a), None) => Some(PortRange::single(a)),
            (Some(a), Some(b)) if b < a => {
                return Err(err("ports.endPort", format!("port {j}: endPort {b} is below port {a}")));
            }
            (Some(a), Some(b)) => Some(PortRange::new(a, b)),
        };
        ports.push((Some(port.protocol), range));
    }
    if ports.is_empty() {
        ports.push((None, None));
    }
    Ok(ports
        .into_iter()
        .map(|(proto, dst_ports)| {
            let id = RuleId(*next_id);
            *next_id += 1;
            let (src, dst) = match dir {
                PolicyType::Ingress => (peers.clone(), None),
                PolicyType::Egress => (None, peers.clone()),
            };
            Rule {
                src,
                dst,
                proto,
                dst_ports,
                ..Rule::any(id, Action::Allow)
            }
        })
        .collect())
}
