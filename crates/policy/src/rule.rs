//! The rule model both front ends (security groups, Kubernetes NetworkPolicy) produce, and
//! the checks that turn contradictory rules into errors naming the rule and the field.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use wire::flow::FlowKey;
use wire::ip::IpProtocol;

use crate::addrset::{AddrSet, addr_bits};

/// What a matching rule does. The `*Log` variants behave the same and ask the caller to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Let the flow through.
    Allow,
    /// Drop the flow.
    Deny,
    /// Allow and log.
    AllowLog,
    /// Deny and log.
    DenyLog,
}

impl std::fmt::Display for Action {
    /// As configurations write it: `allow`, `deny`, `allow-log`, `deny-log`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Action::Allow => "allow",
            Action::Deny => "deny",
            Action::AllowLog => "allow-log",
            Action::DenyLog => "deny-log",
        })
    }
}

impl Action {
    /// Whether the flow is let through.
    pub const fn allows(self) -> bool {
        matches!(self, Action::Allow | Action::AllowLog)
    }

    /// Whether the caller should log the flow.
    pub const fn logs(self) -> bool {
        matches!(self, Action::AllowLog | Action::DenyLog)
    }
}

/// Which of an endpoint's rule lists applies: traffic leaving it or arriving at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Traffic arriving at the endpoint (matched against the source as the peer).
    Ingress,
    /// Traffic leaving the endpoint.
    Egress,
}

/// An inclusive port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    /// First port.
    pub lo: u16,
    /// Last port (inclusive).
    pub hi: u16,
}

impl PortRange {
    /// One port.
    pub const fn single(port: u16) -> Self {
        PortRange { lo: port, hi: port }
    }

    /// `lo..=hi` (checked when the rule set compiles).
    pub const fn new(lo: u16, hi: u16) -> Self {
        PortRange { lo, hi }
    }
}

/// ICMP type, and optionally code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IcmpMatch {
    /// Message type.
    pub kind: u8,
    /// Message code; `None` matches every code.
    pub code: Option<u8>,
}

/// Rule identifier, unique within a [`PolicySet`](crate::PolicySet); classification reports it
/// and its hit counter is kept under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleId(pub u32);

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rule {}", self.0)
    }
}

/// One rule: every field that is `Some` must match (an `and` of fields); `None` is "any".
///
/// Port ranges need `proto` to be TCP, UDP or SCTP; `icmp` needs ICMP or ICMPv6. Addresses
/// are sets shared by `Arc`, so a large set referenced by many rules is stored once.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    /// Identifier, unique within the set.
    pub id: RuleId,
    /// Lower is evaluated first; equal priorities keep the order they were given in.
    pub priority: u32,
    /// What a match does.
    pub action: Action,
    /// Only packets in this VRF.
    pub vrf: Option<u32>,
    /// Source addresses.
    pub src: Option<Arc<AddrSet>>,
    /// Destination addresses.
    pub dst: Option<Arc<AddrSet>>,
    /// IP protocol number.
    pub proto: Option<u8>,
    /// Source ports.
    pub src_ports: Option<PortRange>,
    /// Destination ports.
    pub dst_ports: Option<PortRange>,
    /// ICMP type and code.
    pub icmp: Option<IcmpMatch>,
}

impl Rule {
    /// A rule that matches everything; set the fields that should narrow it.
    ///
    /// ```
    /// use policy::{Action, PortRange, Rule, RuleId};
    /// let r = Rule { proto: Some(6), dst_ports: Some(PortRange::new(8000, 8080)), ..Rule::any(RuleId(1), Action::Allow) };
    /// assert_eq!(r.priority, 0);
    /// ```
    pub fn any(id: RuleId, action: Action) -> Self {
        Rule {
            id,
            priority: 0,
            action,
            vrf: None,
            src: None,
            dst: None,
            proto: None,
            src_ports: None,
            dst_ports: None,
            icmp: None,
        }
    }

    /// Checks the rule against itself: contradictions are errors, emptiness is a warning
    /// (the rule is kept out of the classifier, which cannot change any verdict).
    pub(crate) fn check(&self) -> Result<Option<PolicyError>, PolicyError> {
        let err = |field: &'static str, reason: String| PolicyError {
            rule: Some(self.id),
            field,
            reason,
        };
        for (field, r) in [("src_ports", self.src_ports), ("dst_ports", self.dst_ports)] {
            if let Some(r) = r {
                if r.lo > r.hi {
                    return Err(err(field, format!("range low {} is above high {}", r.lo, r.hi)));
                }
                if !self.proto.is_some_and(has_ports) {
                    return Err(err(
                        field,
                        "ports need `proto` to be TCP (6), UDP (17) or SCTP (132)".into(),
                    ));
                }
            }
        }
        if self.icmp.is_some() && !self.proto.is_some_and(is_icmp) {
            return Err(err(
                "icmp",
                "ICMP type/code needs `proto` ICMP (1) or ICMPv6 (58)".into(),
            ));
        }
        for (field, set) in [("src", &self.src), ("dst", &self.dst)] {
            if set.as_ref().is_some_and(|s| s.is_empty()) {
                return Ok(Some(err(
                    field,
                    "the address set is empty: the rule can never match".into(),
                )));
            }
        }
        if let (Some(s), Some(d)) = (&self.src, &self.dst) {
            let shared = (s.has_family(false) && d.has_family(false)) || (s.has_family(true) && d.has_family(true));
            if !shared {
                return Ok(Some(err(
                    "dst",
                    "source and destination sets share no address family: the rule can never match".into(),
                )));
            }
        }
        Ok(None)
    }

    /// Whether the rule can match packets of this family at all.
    pub(crate) fn admits_family(&self, v6: bool) -> bool {
        [&self.src, &self.dst].into_iter().flatten().all(|s| s.has_family(v6))
    }

    /// The naive test, field by field: the reference the compiled classifier is checked
    /// against.
    pub fn matches(&self, p: &Fields) -> bool {
        let addr_ok = |set: &Option<Arc<AddrSet>>, a: u128| {
            set.as_ref().is_none_or(|s| {
                if p.v6 {
                    s.v6.iter().any(|&(lo, hi)| (lo..=hi).contains(&a))
                } else {
                    s.v4.iter()
                        .any(|&(lo, hi)| (u128::from(lo)..=u128::from(hi)).contains(&a))
                }
            })
        };
        let port_ok = |r: Option<PortRange>, x: u16| r.is_none_or(|r| (r.lo..=r.hi).contains(&x));
        self.vrf.is_none_or(|v| v == p.vrf)
            && self.proto.is_none_or(|x| x == p.proto)
            && addr_ok(&self.src, p.src)
            && addr_ok(&self.dst, p.dst)
            && port_ok(self.src_ports, p.a)
            && port_ok(self.dst_ports, p.b)
            && self
                .icmp
                .is_none_or(|m| m.kind == (p.b >> 8) as u8 && m.code.is_none_or(|c| c == p.b as u8))
    }
}

fn has_ports(proto: u8) -> bool {
    matches!(
        IpProtocol::from(proto),
        IpProtocol::Tcp | IpProtocol::Udp | IpProtocol::Sctp
    )
}

fn is_icmp(proto: u8) -> bool {
    matches!(IpProtocol::from(proto), IpProtocol::Icmp | IpProtocol::Icmpv6)
}

/// SCTP's protocol number (NetworkPolicy allows it).
pub const PROTO_SCTP: u8 = 132;

/// What a rule set matches on, taken from a packet.
///
/// `a`/`b` are the source/destination ports for TCP, UDP and SCTP; for ICMP and ICMPv6 `a`
/// is 0 and `b` is `type << 8 | code`; 0 for other protocols. Rules constrain ports only
/// together with a port protocol and ICMP fields only with an ICMP protocol, so the two
/// uses never mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Fields {
    /// VRF of the packet.
    pub vrf: u32,
    /// Source address (IPv4 in the low 32 bits).
    pub src: u128,
    /// Destination address.
    pub dst: u128,
    /// IPv6 (`true`) or IPv4.
    pub v6: bool,
    /// IP protocol.
    pub proto: u8,
    /// Source port.
    pub a: u16,
    /// Destination port, or ICMP `type << 8 | code`.
    pub b: u16,
}

impl Fields {
    /// From a flow key; `icmp` is the ICMP (type, code) when the key is ICMP (the flow key
    /// holds the echo identifier in place of ports, which policy does not match on).
    ///
    /// ```
    /// use policy::Fields;
    /// use wire::flow::FlowKey;
    /// let k = FlowKey::v4("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap(), 6, 40000, 80).with_vrf(3);
    /// let f = Fields::from_key(&k, None);
    /// assert_eq!((f.vrf, f.proto, f.a, f.b), (3, 6, 40000, 80));
    /// ```
    pub fn from_key(key: &FlowKey, icmp: Option<(u8, u8)>) -> Self {
        let (src, dst) = (key.src_ip(), key.dst_ip());
        let (a, b) = if is_icmp(key.proto) {
            icmp.map_or((0, 0), |(t, c)| (0, u16::from(t) << 8 | u16::from(c)))
        } else if has_ports(key.proto) {
            (key.src_port, key.dst_port)
        } else {
            (0, 0)
        };
        Fields {
            vrf: key.vrf,
            src: src.map_or(0, addr_bits),
            dst: dst.map_or(0, addr_bits),
            v6: matches!(src, Some(IpAddr::V6(_))),
            proto: key.proto,
            a,
            b,
        }
    }

    /// The fields of the reply direction.
    pub fn reversed(&self) -> Self {
        let icmp = is_icmp(self.proto);
        Fields {
            src: self.dst,
            dst: self.src,
            a: if icmp { 0 } else { self.b },
            b: if icmp { self.b } else { self.a },
            ..*self
        }
    }
}

/// A rule set that cannot be compiled, or a warning about a rule that was left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// The rule at fault, when the problem is in one rule.
    pub rule: Option<RuleId>,
    /// The field at fault.
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.rule {
            Some(r) => write!(f, "{r}: field `{}`: {}", self.field, self.reason),
            None => write!(f, "field `{}`: {}", self.field, self.reason),
        }
    }
}

impl std::error::Error for PolicyError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(id: u32) -> Rule {
        Rule {
            proto: Some(6),
            ..Rule::any(RuleId(id), Action::Allow)
        }
    }

    #[test]
    fn contradictions_are_errors_naming_rule_and_field() {
        let r = Rule {
            dst_ports: Some(PortRange::new(90, 80)),
            ..tcp(4)
        };
        let e = r.check().unwrap_err();
        assert_eq!((e.rule, e.field), (Some(RuleId(4)), "dst_ports"));
        assert_eq!(
            e.to_string(),
            "rule 4: field `dst_ports`: range low 90 is above high 80"
        );

        let r = Rule {
            src_ports: Some(PortRange::single(1)),
            ..Rule::any(RuleId(5), Action::Deny)
        };
        assert_eq!(r.check().unwrap_err().field, "src_ports");
        let r = Rule {
            icmp: Some(IcmpMatch { kind: 8, code: None }),
            ..tcp(6)
        };
        assert_eq!(r.check().unwrap_err().field, "icmp");
    }

    #[test]
    fn never_matching_rules_are_warnings() {
        let r = Rule {
            src: Some(Arc::new(AddrSet::new())),
            ..tcp(1)
        };
        assert_eq!(r.check().unwrap().unwrap().field, "src");
        let v4 = AddrSet::from_cidrs(&["10.0.0.0/8".parse().unwrap()]);
        let v6 = AddrSet::from_cidrs(&["fd00::/8".parse().unwrap()]);
        let r = Rule {
            src: Some(Arc::new(v4)),
            dst: Some(Arc::new(v6)),
            ..tcp(2)
        };
        assert_eq!(r.check().unwrap().unwrap().field, "dst");
        assert_eq!(tcp(3).check(), Ok(None));
    }

    #[test]
    fn fields_from_icmp_key_use_type_and_code() {
        let k = FlowKey::v6("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap(), 58, 77, 77);
        let f = Fields::from_key(&k, Some((128, 0)));
        assert_eq!((f.v6, f.a, f.b), (true, 0, 128 << 8));
        let r = f.reversed();
        assert_eq!((r.src, r.dst, r.b), (f.dst, f.src, 128 << 8));
        let gre = FlowKey::v4("1.1.1.1".parse().unwrap(), "2.2.2.2".parse().unwrap(), 47, 5, 5);
        assert_eq!(Fields::from_key(&gre, None).a, 0);
    }
}
