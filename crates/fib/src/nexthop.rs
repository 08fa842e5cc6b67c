//! Nexthops (shared by routes, referenced by id) and neighbours.

use std::net::IpAddr;

use wire::ethernet::MacAddr;

/// A routing instance id.
pub type VrfId = u32;
/// A nexthop id, chosen by the control plane.
pub type NexthopId = u32;

/// The encapsulation of a tunnel nexthop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encap {
    /// VXLAN with this VNI.
    Vxlan {
        /// VXLAN network identifier.
        vni: u32,
    },
    /// MPLS over UDP (RFC 7510) with this label.
    MplsOverUdp {
        /// Label the remote node decapsulates on.
        label: u32,
    },
    /// MPLS over GRE with this label.
    MplsOverGre {
        /// Label the remote node decapsulates on.
        label: u32,
    },
}

impl Encap {
    /// Whether the VNI or label fits its header (24 and 20 bits); if not, why.
    pub fn check(&self) -> Result<(), String> {
        match *self {
            Encap::Vxlan { vni } if vni >= 1 << 24 => Err(format!("VNI {vni} exceeds 24 bits")),
            Encap::MplsOverUdp { label } | Encap::MplsOverGre { label } if label >= 1 << 20 => {
                Err(format!("label {label} exceeds 20 bits"))
            }
            _ => Ok(()),
        }
    }
}

/// The DSCP of a tunnel's outer IP header (RFC 2983's two models). The ECN field is the
/// inner packet's either way (RFC 6040), and MPLS tunnels put the DSCP's top three bits
/// (its class selector) in the label's traffic class.
///
/// ```
/// use fib::OuterDscp;
/// assert_eq!("inherit".parse(), Ok(OuterDscp::Inherit));
/// assert_eq!("46".parse(), Ok(OuterDscp::Fixed(46)));
/// assert!("64".parse::<OuterDscp>().is_err());
/// assert_eq!(OuterDscp::Fixed(46).to_string(), "46");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OuterDscp {
    /// This code point (0-63) on every packet: the pipe model, where the underlay's
    /// marking is the operator's and tenants' marks stay inside. 0 by default.
    Fixed(u8),
    /// The inner packet's: the uniform model, where tenants' marks reach the underlay's
    /// queues.
    Inherit,
}

impl Default for OuterDscp {
    fn default() -> Self {
        OuterDscp::Fixed(0)
    }
}

impl std::fmt::Display for OuterDscp {
    /// `inherit` or the code point, as the configuration file and commands write it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OuterDscp::Fixed(d) => write!(f, "{d}"),
            OuterDscp::Inherit => f.write_str("inherit"),
        }
    }
}

impl std::str::FromStr for OuterDscp {
    type Err = String;

    /// `inherit`, or a code point 0-63.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "inherit" => Ok(OuterDscp::Inherit),
            _ => match s.parse::<u8>() {
                Ok(d) if d < 64 => Ok(OuterDscp::Fixed(d)),
                _ => Err(format!("`{s}` is not `inherit` or a DSCP 0-63")),
            },
        }
    }
}

/// Where a route sends packets.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Nexthop {
    /// Drop.
    Discard,
    /// For this node (the host stack).
    Receive,
    /// Out of a port, to `gateway` or (if `None`) directly to the packet's destination; the
    /// MAC comes from the neighbour table.
    Interface {
        /// Egress port.
        port: u32,
        /// Next-hop router, if not on-link.
        gateway: Option<IpAddr>,
    },
    /// Encapsulate towards another node; the outer packet is routed in `underlay_vrf`.
    Tunnel {
        /// Encapsulation and its label or VNI.
        encap: Encap,
        /// Outer source (this node's tunnel endpoint).
        src: IpAddr,
        /// Outer destination (the remote endpoint).
        dst: IpAddr,
        /// VRF in which the outer destination is routed (the underlay).
        underlay_vrf: VrfId,
        /// VXLAN: the inner destination MAC of packets into this tunnel, the remote VTEP's
        /// router MAC (EVPN's, RFC 9135), where no overlay neighbour entry gives the inner
        /// destination's own. `None`: the inner Ethernet addresses stay as they came,
        /// which a peer vrouter accepts and a Linux VXLAN device does not.
        router_mac: Option<MacAddr>,
        /// The outer header's DSCP.
        dscp: OuterDscp,
        /// Over an IPv6 underlay, send the UDP tunnels' checksum as zero (RFC 6935)
        /// instead of summing every packet: for receivers that opt in to it, as vrouter
        /// does and a Linux VXLAN device with `udp6zerocsumrx`. Over IPv4 it is zero
        /// anyway; MPLSoGRE has none.
        zero_udp_checksum: bool,
    },
    /// Equal-cost (weighted) multipath over other nexthops (not ECMP themselves).
    Ecmp {
        /// Member nexthop ids with weights (at most 255 members).
        members: Vec<(NexthopId, u32)>,
    },
    /// Look the destination up again in another VRF.
    VrfTranslate {
        /// Target VRF.
        vrf: VrfId,
    },
}

/// Reachability of a neighbour entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NeighborState {
    /// Resolution in progress; no MAC yet.
    Incomplete,
    /// Confirmed recently.
    Reachable,
    /// Usable but due for re-confirmation.
    Stale,
}

/// A neighbour (ARP / ND) entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Neighbor {
    /// Link-layer address (meaningless while `Incomplete`).
    pub mac: MacAddr,
    /// State.
    pub state: NeighborState,
}
