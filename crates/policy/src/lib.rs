//! Micro-segmentation: which workload may talk to which, on which ports.
//!
//! * **Rule model** ([`Rule`], [`RuleList`], [`Endpoint`]): each endpoint has an ingress and
//!   an egress list; a rule matches any combination of VRF, source/destination address sets,
//!   protocol, port ranges and ICMP type/code, and allows or denies (optionally asking to
//!   log). Lower priority numbers are evaluated first, ties in list order, first match wins,
//!   else the list's default. A direction without a list is open.
//! * **Kubernetes NetworkPolicy** ([`k8s`]) lowers to the same model.
//! * **Compiler** ([`Policy::compile`]): every list becomes a field-partitioned bit-vector
//!   classifier (`docs/policy.md`); lookup cost is a few binary searches and a few words of
//!   bitmap, growing with the logarithm of the rule count.
//! * **Stateful contract** ([`Policy::evaluate`]): a new flow is decided once against the
//!   source endpoint's egress and the destination endpoint's ingress; its reverse direction
//!   inherits the verdict; the decision carries the snapshot generation, and a flow holding
//!   an older generation is re-evaluated on its next packet.
//!
//! ```
//! use std::sync::Arc;
//! use policy::*;
//!
//! let clients = Arc::new(AddrSet::from_cidrs(&["10.0.1.0/24".parse().unwrap()]));
//! let db = Arc::new(RuleList {
//!     rules: vec![
//!         Rule { priority: 10, src: Some(clients), proto: Some(6), dst_ports: Some(PortRange::single(5432)), ..Rule::any(RuleId(1), Action::Allow) },
//!         Rule { priority: 20, proto: Some(6), ..Rule::any(RuleId(2), Action::DenyLog) },
//!     ],
//!     default: Action::Allow,
//! });
//! let set = PolicySet { endpoints: vec![Endpoint { id: EndpointId(7), vrf: 0, addrs: vec![], ingress: Some(db), egress: None }] };
//! let (policy, _warnings) = Policy::compile(&set, 1).unwrap();
//! let table = policy.table(EndpointId(7), Direction::Ingress).unwrap();
//!
//! let key = |src: &str, port| wire::flow::FlowKey::v4(src.parse().unwrap(), "10.0.9.9".parse().unwrap(), 6, 40000, port);
//! let pkts = [Fields::from_key(&key("10.0.1.5", 5432), None), Fields::from_key(&key("10.0.2.5", 5432), None)];
//! let mut out = [Decision { action: Action::Deny, rule: None }; 2];
//! table.classify_burst(&pkts, &mut out);
//! assert_eq!(out[0], Decision { action: Action::Allow, rule: Some(RuleId(1)) });
//! assert_eq!(out[1], Decision { action: Action::DenyLog, rule: Some(RuleId(2)) });
//! ```

mod addrset;
mod classify;
mod counters;
pub mod k8s;
mod policy;
mod rule;

pub use addrset::{AddrSet, Cidr, CidrError};
pub use policy::{
    Decision, Endpoint, EndpointId, FlowDecision, Owner, Policy, PolicySet, PolicyStore, RuleList, RuleTable,
};
pub use rule::{Action, Direction, Fields, IcmpMatch, PROTO_SCTP, PolicyError, PortRange, Rule, RuleId};
