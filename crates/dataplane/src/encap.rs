//! Tunnel encapsulation into frame headroom, from headers built once per egress plan.
//!
//! Everything in a tunnel's outer headers is fixed by the plan (MACs, addresses, ports,
//! VNI or label, and for VXLAN the inner Ethernet addresses) except a few fields: the
//! lengths, the IPv4 checksum, the UDP source port (the inner flow's hash, for underlay
//! ECMP) and the MPLS TTL. So the plan keeps the headers as bytes with the IPv4 header's
//! checksum sum, and a packet costs one copy and a few stores (the "rewrite string" of
//! VPP and the OpenContrail vRouter), not a header-by-header build.

use std::net::Ipv4Addr;

use fib::Encap;
use wire::checksum;
use wire::ethernet::{EtherType, EthernetFrame, EthernetRepr, MacAddr};
use wire::ip::IpProtocol;
use wire::ipv4::{Ipv4Packet, Ipv4Repr};
use wire::mpls::{MplsEntry, MplsRepr};
use wire::parse::PacketMeta;
use wire::udp::{UdpPacket, UdpRepr};
use wire::vxlan::VxlanRepr;

use crate::frames::FramePool;
use crate::port::Pkt;
use crate::stats::DropReason;

/// VXLAN outer headers: Ethernet, IPv4, UDP, VXLAN.
pub(crate) const VXLAN_OVERHEAD: usize = 14 + 20 + 8 + 8;
/// MPLSoUDP outer headers replacing the inner Ethernet: Ethernet, IPv4, UDP, one label.
pub(crate) const MPLS_UDP_OVERHEAD: usize = 14 + 20 + 8 + 4;
/// MPLSoGRE outer headers replacing the inner Ethernet: Ethernet, IPv4, GRE, one label.
pub(crate) const MPLS_GRE_OVERHEAD: usize = 14 + 20 + 4 + 4;
/// The longest prebuilt header: VXLAN's, and the inner Ethernet addresses after it.
const OUTER_MAX: usize = VXLAN_OVERHEAD + 12;

/// Offsets of the per-packet fields.
const IP_TOTAL_LEN: usize = 16;
const IP_CHECKSUM: usize = 24;
const UDP_SRC_PORT: usize = 34;
const UDP_LEN: usize = 38;

/// Bytes an encapsulation adds in front of the inner IP packet (the inner Ethernet header
/// for VXLAN counts, as it is carried).
pub(crate) fn overhead_for(encap: Encap) -> usize {
    match encap {
        Encap::Vxlan { .. } => VXLAN_OVERHEAD,
        Encap::MplsOverUdp { .. } => MPLS_UDP_OVERHEAD,
        Encap::MplsOverGre { .. } => MPLS_GRE_OVERHEAD,
    }
}

/// A tunnel's outer headers, built once per plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outer {
    encap: Encap,
    /// The headers; for VXLAN with a known inner destination, its inner Ethernet addresses
    /// follow them.
    bytes: [u8; OUTER_MAX],
    /// How many of `bytes` a packet gets.
    len: u8,
    /// Ones-complement sum of the IPv4 header with total length and checksum zero.
    ip_sum: u32,
}

/// Who the outer headers come from and go to.
pub(crate) struct Ends {
    /// Underlay source and destination (the tunnel endpoints).
    pub(crate) src: Ipv4Addr,
    pub(crate) dst: Ipv4Addr,
    /// The egress port's MAC and the underlay next hop's (zero until resolved).
    pub(crate) src_mac: MacAddr,
    pub(crate) dst_mac: MacAddr,
    /// VXLAN: the inner destination's MAC, written with the egress port's MAC as the
    /// inner source. `None` leaves the inner Ethernet addresses as they came.
    pub(crate) inner_mac: Option<MacAddr>,
}

impl Outer {
    /// Builds the headers of `encap` between `ends`.
    pub(crate) fn new(encap: Encap, ends: &Ends) -> Self {
        let overhead = overhead_for(encap);
        let mut b = [0u8; OUTER_MAX];
        // Each emitter below writes a fixed-size header into a slice of exactly its size,
        // so none of them can fail.
        EthernetRepr {
            src: ends.src_mac,
            dst: ends.dst_mac,
            ethertype: EtherType::Ipv4,
        }
        .emit(&mut EthernetFrame::new_unchecked(&mut b[..14]));
        let proto = match encap {
            Encap::Vxlan { .. } | Encap::MplsOverUdp { .. } => IpProtocol::Udp,
            Encap::MplsOverGre { .. } => IpProtocol::Gre,
        };
        let emitted = Ipv4Repr::new(ends.src, ends.dst, proto).emit(&mut Ipv4Packet::new_unchecked(&mut b[14..34]));
        debug_assert!(emitted.is_ok());
        b[IP_TOTAL_LEN..IP_TOTAL_LEN + 2].fill(0);
        b[IP_CHECKSUM..IP_CHECKSUM + 2].fill(0);
        let ip_sum = checksum::sum(&b[14..34]);
        let label = |label, at: &mut [u8]| {
            let e = MplsRepr {
                label,
                tc: 0,
                bottom: true,
                ttl: 0,
            }
            .emit(&mut MplsEntry::new_unchecked(at));
            debug_assert!(e.is_ok());
        };
        let udp = |dst_port, at: &mut [u8]| {
            let e = UdpRepr { src_port: 0, dst_port }.emit(&mut UdpPacket::new_unchecked(&mut *at), 0);
            debug_assert!(e.is_ok());
            // The length goes in per packet; the checksum stays zero (RFC 7348, RFC 7510).
            at[4..8].fill(0);
        };
        let mut len = overhead;
        match encap {
            Encap::Vxlan { vni } => {
                udp(wire::udp::PORT_VXLAN, &mut b[34..42]);
                let e = VxlanRepr { vni }.emit(&mut b[42..50]);
                debug_assert!(e.is_ok());
                if let Some(inner) = ends.inner_mac {
                    let mut eth = EthernetFrame::new_unchecked(&mut b[VXLAN_OVERHEAD..OUTER_MAX]);
                    eth.set_dst_addr(inner);
                    eth.set_src_addr(ends.src_mac);
                    len = OUTER_MAX;
                }
            }
            Encap::MplsOverUdp { label: l } => {
                udp(wire::udp::PORT_MPLS, &mut b[34..42]);
                label(l, &mut b[42..46]);
            }
            Encap::MplsOverGre { label: l } => {
                b[36..38].copy_from_slice(&u16::from(EtherType::MplsUnicast).to_be_bytes());
                label(l, &mut b[38..42]);
            }
        }
        Outer {
            encap,
            bytes: b,
            len: len as u8,
            ip_sum,
        }
    }

    /// Bytes these headers add in front of the inner IP packet.
    pub(crate) fn overhead(&self) -> usize {
        overhead_for(self.encap)
    }
}

/// Puts `outer` in front of the packet, in the frame's headroom (no payload copy). For
/// MPLS the inner Ethernet header is dropped; the label's TTL is the inner one, less one.
/// `hash` (the inner flow's) becomes the UDP source port. A result longer than `mtu` (IP
/// bytes) is refused, and so is a frame without the headroom.
pub(crate) fn encapsulate(
    pool: &mut FramePool,
    pkt: &mut Pkt,
    outer: &Outer,
    mtu: u16,
    hash: u64,
    meta: &PacketMeta,
) -> Result<(), DropReason> {
    let h = meta.innermost();
    let overhead = outer.overhead();
    // VXLAN carries the inner Ethernet frame; MPLS carries the IP packet.
    let keep_from = match outer.encap {
        Encap::Vxlan { .. } => 0,
        Encap::MplsOverUdp { .. } | Encap::MplsOverGre { .. } => u32::from(h.l3),
    };
    let inner_len = pkt.len - keep_from;
    let new_addr = (pkt.addr + u64::from(keep_from))
        .checked_sub(overhead as u64)
        .ok_or(DropReason::NoHeadroom)?;
    if pool.frame_base(new_addr) != pool.frame_base(pkt.addr) || new_addr < pool.frame_base(pkt.addr) {
        return Err(DropReason::NoHeadroom);
    }
    let total = overhead as u32 + inner_len;
    let ip_len = total - 14;
    if ip_len > u32::from(mtu) {
        return Err(DropReason::TooBig);
    }
    // Within the MTU, so within 16 bits.
    let ip_len = ip_len as u16;
    pkt.addr = new_addr;
    pkt.len = total;
    let len = usize::from(outer.len);
    let f = pool.bytes_mut(pkt.addr, len);
    f.copy_from_slice(&outer.bytes[..len]);
    f[IP_TOTAL_LEN..IP_TOTAL_LEN + 2].copy_from_slice(&ip_len.to_be_bytes());
    let c = checksum::finish(outer.ip_sum + u32::from(ip_len));
    f[IP_CHECKSUM..IP_CHECKSUM + 2].copy_from_slice(&c.to_be_bytes());
    let udp = |f: &mut [u8]| {
        // Underlay ECMP entropy: the source port follows the inner flow.
        let sport = 49152 | (hash as u16 & 0x3fff);
        f[UDP_SRC_PORT..UDP_SRC_PORT + 2].copy_from_slice(&sport.to_be_bytes());
        f[UDP_LEN..UDP_LEN + 2].copy_from_slice(&(ip_len - 20).to_be_bytes());
    };
    let inner_ttl = h.ttl.saturating_sub(1).max(1);
    match outer.encap {
        Encap::Vxlan { .. } => udp(f),
        Encap::MplsOverUdp { .. } => {
            udp(f);
            f[MPLS_UDP_OVERHEAD - 1] = inner_ttl;
        }
        Encap::MplsOverGre { .. } => f[MPLS_GRE_OVERHEAD - 1] = inner_ttl,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ends(inner_mac: Option<MacAddr>) -> Ends {
        Ends {
            src: Ipv4Addr::new(192, 0, 2, 1),
            dst: Ipv4Addr::new(192, 0, 2, 2),
            src_mac: MacAddr([2, 0, 0, 0, 0, 1]),
            dst_mac: MacAddr([2, 0, 0, 0, 0, 2]),
            inner_mac,
        }
    }

    /// The prebuilt IPv4 header, once a length is written in, is what the emitter builds
    /// for that length, checksum included, for every length a frame can have.
    #[test]
    fn the_checksum_sum_gives_the_emitters_checksum_at_every_length() {
        for encap in [
            Encap::Vxlan { vni: 42 },
            Encap::MplsOverUdp { label: 1000 },
            Encap::MplsOverGre { label: 1000 },
        ] {
            let o = Outer::new(encap, &ends(None));
            for ip_len in (20..=u16::MAX).step_by(7) {
                let mut want = [0u8; 20];
                let proto = if matches!(encap, Encap::MplsOverGre { .. }) {
                    IpProtocol::Gre
                } else {
                    IpProtocol::Udp
                };
                let mut repr = Ipv4Repr::new(ends(None).src, ends(None).dst, proto);
                repr.payload_len = ip_len - 20;
                repr.emit(&mut Ipv4Packet::new_unchecked(&mut want[..])).unwrap();
                let mut got = [0u8; 20];
                got.copy_from_slice(&o.bytes[14..34]);
                got[2..4].copy_from_slice(&ip_len.to_be_bytes());
                got[10..12].copy_from_slice(&checksum::finish(o.ip_sum + u32::from(ip_len)).to_be_bytes());
                assert_eq!(got, want, "{encap:?} length {ip_len}");
            }
        }
    }

    #[test]
    fn vxlan_carries_the_inner_addresses_only_when_known() {
        let known = Outer::new(Encap::Vxlan { vni: 7 }, &ends(Some(MacAddr([2, 0, 0, 0, 9, 9]))));
        assert_eq!(usize::from(known.len), VXLAN_OVERHEAD + 12);
        assert_eq!(known.bytes[VXLAN_OVERHEAD..VXLAN_OVERHEAD + 6], [2, 0, 0, 0, 9, 9]);
        assert_eq!(known.bytes[VXLAN_OVERHEAD + 6..], [2, 0, 0, 0, 0, 1]);
        let unknown = Outer::new(Encap::Vxlan { vni: 7 }, &ends(None));
        assert_eq!(usize::from(unknown.len), VXLAN_OVERHEAD);
    }
}
