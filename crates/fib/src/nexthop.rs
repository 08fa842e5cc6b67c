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
