//! Tunnel encapsulation into frame headroom, from headers built once per egress plan.
//!
//! Everything in a tunnel's outer headers is fixed by the plan (MACs, addresses, ports,
//! VNI or label, and for VXLAN the inner Ethernet addresses) except a few fields: the
//! lengths, the IPv4 checksum or the UDP checksum over IPv6, the UDP source port (the
//! inner flow's hash, for underlay ECMP) and the MPLS TTL. So the plan keeps the headers
//! as bytes with the sum of their fixed part, and a packet costs one copy and a few stores
//! (the "rewrite string" of VPP and the OpenContrail vRouter), not a header-by-header
//! build.
//!
//! The underlay is IPv4 or IPv6. Over IPv6 the UDP checksum is computed (RFC 8200): a
//! zero one is allowed for tunnels (RFC 6935) but receivers must opt in to it, and the
//! Linux kernel's VXLAN device drops such packets unless configured to accept them, so a
//! tunnel sends zero only when told to (`zero_udp_checksum`). The flow label carries the
//! inner flow's hash, as the UDP source port does.
//!
//! The inner packet's ECN field is copied to the outer header (RFC 6040, normal mode), so
//! that congestion the underlay marks reaches the inner packet when it is decapsulated
//! (`pipeline`), as ECN-driven transports (DCTCP in a data centre) need. The outer DSCP is
//! the tunnel's (`OuterDscp`): fixed, or the inner packet's; MPLS labels carry its class
//! selector as their traffic class.

use std::net::IpAddr;

use fib::{Encap, OuterDscp};
use wire::checksum;
use wire::ethernet::{EtherType, EthernetFrame, EthernetRepr, MacAddr};
use wire::ip::IpProtocol;
use wire::ipv4::{Ipv4Packet, Ipv4Repr};
use wire::ipv6::{Ipv6Packet, Ipv6Repr};
use wire::mpls::{MplsEntry, MplsRepr};
use wire::parse::{L3, PacketMeta};
use wire::udp::{UdpPacket, UdpRepr};
use wire::vxlan::VxlanRepr;

use crate::frames::FramePool;
use crate::port::Pkt;
use crate::stats::DropReason;

/// The outer Ethernet header.
const ETH: usize = 14;
/// The outer IP header, by family.
const IPV4: usize = 20;
const IPV6: usize = 40;
/// The longest prebuilt header: VXLAN's over IPv6, and the inner Ethernet addresses
/// after it.
const OUTER_MAX: usize = ETH + IPV6 + 16 + 12;

/// Offsets of the IPv4 header's per-packet fields.
const IPV4_TOTAL_LEN: usize = ETH + 2;
const IPV4_CHECKSUM: usize = ETH + 10;
/// Offset of the IPv6 payload length.
const IPV6_PAYLOAD_LEN: usize = ETH + 4;

/// The tunnel's own headers after the outer IP header: UDP and VXLAN, UDP and one label,
/// or GRE and one label.
fn tunnel_len(encap: Encap) -> usize {
    match encap {
        Encap::Vxlan { .. } => 8 + 8,
        Encap::MplsOverUdp { .. } => 8 + 4,
        Encap::MplsOverGre { .. } => 4 + 4,
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
    /// Where the tunnel's headers start: after an IPv4 header (34) or an IPv6 one (54).
    l4: u8,
    /// Over IPv4, the ones-complement sum of the IPv4 header with total length and
    /// checksum zero; over IPv6, that of the UDP pseudo-header without its length.
    sum: u32,
    /// The outer traffic class (DSCP and ECN) is the inner one's bits under `tc_keep`
    /// (the ECN field, and the DSCP when inherited) with `tc_set` (a fixed DSCP).
    tc_keep: u8,
    tc_set: u8,
    /// Whether packets get a UDP checksum: over IPv6, unless the tunnel sends zero.
    udp_sum: bool,
}

/// Who the outer headers come from and go to.
pub(crate) struct Ends {
    /// Underlay source and destination (the tunnel endpoints), of one family.
    pub(crate) src: IpAddr,
    pub(crate) dst: IpAddr,
    /// The egress port's MAC and the underlay next hop's (zero until resolved).
    pub(crate) src_mac: MacAddr,
    pub(crate) dst_mac: MacAddr,
    /// VXLAN: the inner destination's MAC, written with the egress port's MAC as the
    /// inner source. `None` leaves the inner Ethernet addresses as they came.
    pub(crate) inner_mac: Option<MacAddr>,
    /// The outer DSCP.
    pub(crate) dscp: OuterDscp,
    /// Over IPv6, a zero UDP checksum instead of a computed one.
    pub(crate) zero_udp_checksum: bool,
}

impl Outer {
    /// Builds the headers of `encap` between `ends`; `None` if the ends are of two
    /// families.
    pub(crate) fn new(encap: Encap, ends: &Ends) -> Option<Self> {
        let mut b = [0u8; OUTER_MAX];
        let proto = match encap {
            Encap::Vxlan { .. } | Encap::MplsOverUdp { .. } => IpProtocol::Udp,
            Encap::MplsOverGre { .. } => IpProtocol::Gre,
        };
        // Each emitter below writes a fixed-size header into a slice of exactly its size,
        // so none of them can fail.
        let (ethertype, l4, sum) = match (ends.src, ends.dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                let at = &mut b[ETH..ETH + IPV4];
                let emitted = Ipv4Repr::new(src, dst, proto).emit(&mut Ipv4Packet::new_unchecked(&mut *at));
                debug_assert!(emitted.is_ok());
                // Length and checksum go in per packet.
                at[2..4].fill(0);
                at[10..12].fill(0);
                (EtherType::Ipv4, ETH + IPV4, checksum::sum(at))
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                Ipv6Repr::new(src, dst, proto).emit(&mut Ipv6Packet::new_unchecked(&mut b[ETH..ETH + IPV6]));
                let pseudo = checksum::pseudo_header_v6(src, dst, proto.into(), 0);
                (EtherType::Ipv6, ETH + IPV6, pseudo)
            }
            _ => return None,
        };
        EthernetRepr {
            src: ends.src_mac,
            dst: ends.dst_mac,
            ethertype,
        }
        .emit(&mut EthernetFrame::new_unchecked(&mut b[..ETH]));
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
            // Length and checksum go in per packet (the checksum stays zero over IPv4:
            // RFC 7348, RFC 7510).
            at[4..8].fill(0);
        };
        let end = l4 + tunnel_len(encap);
        let mut len = end;
        match encap {
            Encap::Vxlan { vni } => {
                udp(wire::udp::PORT_VXLAN, &mut b[l4..l4 + 8]);
                let e = VxlanRepr { vni }.emit(&mut b[l4 + 8..end]);
                debug_assert!(e.is_ok());
                if let Some(inner) = ends.inner_mac {
                    let mut eth = EthernetFrame::new_unchecked(&mut b[end..end + 12]);
                    eth.set_dst_addr(inner);
                    eth.set_src_addr(ends.src_mac);
                    len = end + 12;
                }
            }
            Encap::MplsOverUdp { label: l } => {
                udp(wire::udp::PORT_MPLS, &mut b[l4..l4 + 8]);
                label(l, &mut b[l4 + 8..end]);
            }
            Encap::MplsOverGre { label: l } => {
                b[l4 + 2..l4 + 4].copy_from_slice(&u16::from(EtherType::MplsUnicast).to_be_bytes());
                label(l, &mut b[l4 + 4..end]);
            }
        }
        let (tc_keep, tc_set) = match ends.dscp {
            OuterDscp::Fixed(d) => (3, d << 2),
            OuterDscp::Inherit => (0xff, 0),
        };
        Some(Outer {
            encap,
            bytes: b,
            len: len as u8,
            l4: l4 as u8,
            sum,
            tc_keep,
            tc_set,
            udp_sum: l4 == ETH + IPV6 && !matches!(encap, Encap::MplsOverGre { .. }) && !ends.zero_udp_checksum,
        })
    }

    /// Bytes these headers add in front of the inner IP packet (the inner Ethernet header
    /// for VXLAN counts, as it is carried).
    pub(crate) fn overhead(&self) -> usize {
        usize::from(self.l4) + tunnel_len(self.encap)
    }

    /// The longest inner IP packet these headers carry within an underlay MTU of `mtu`.
    pub(crate) fn inner_mtu(&self, mtu: u16) -> u16 {
        // The outer IP packet holds the inner one after the outer IP and tunnel headers,
        // and for VXLAN after the inner Ethernet header too.
        let inner_eth = if matches!(self.encap, Encap::Vxlan { .. }) {
            14
        } else {
            0
        };
        mtu.saturating_sub((self.overhead() - ETH + inner_eth) as u16)
    }
}

/// The traffic class (IPv4's TOS: DSCP and ECN) of the IP header at `l3` of `f` (`kind`:
/// its family), 0 for anything else.
fn traffic_class_at(f: &[u8], l3: usize, kind: L3) -> u8 {
    match kind {
        L3::Ipv4 => f.get(l3 + 1).copied().unwrap_or(0),
        L3::Ipv6 => f.get(l3..l3 + 2).map_or(0, |b| b[0] << 4 | b[1] >> 4),
        _ => 0,
    }
}

/// The ECN field of the IP header at `l3` of `f` (`kind`: its family), 0 (not
/// ECN-capable) for anything else.
pub(crate) fn ecn_at(f: &[u8], l3: usize, kind: L3) -> u8 {
    traffic_class_at(f, l3, kind) & 3
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
    let new_addr = pool
        .before(pkt.addr + u64::from(keep_from), overhead as u64)
        .ok_or(DropReason::NoHeadroom)?;
    let total = overhead as u32 + inner_len;
    let ip_len = total - ETH as u32;
    if ip_len > u32::from(mtu) {
        return Err(DropReason::TooBig);
    }
    // Within the MTU, so within 16 bits.
    let ip_len = ip_len as u16;
    pkt.addr = new_addr;
    pkt.len = total;
    let len = usize::from(outer.len);
    let l4 = usize::from(outer.l4);
    let v6 = l4 == ETH + IPV6;
    let f = pool.bytes_mut(pkt.addr, total as usize);
    // Read before the headers go on: for MPLS they overwrite the inner Ethernet header,
    // never the inner IP header.
    let inner_tc = traffic_class_at(f, overhead + usize::from(h.l3) - keep_from as usize, h.l3_kind);
    let tc = inner_tc & outer.tc_keep | outer.tc_set;
    f[..len].copy_from_slice(&outer.bytes[..len]);
    if v6 {
        // Underlay ECMP entropy in the flow label too (RFC 6438): the one field a GRE
        // tunnel has for it, and one IPv6 routers hash on.
        let label = 6 << 28 | u32::from(tc) << 20 | (hash >> 20) as u32 & 0xf_ffff;
        f[ETH..ETH + 4].copy_from_slice(&label.to_be_bytes());
        f[IPV6_PAYLOAD_LEN..IPV6_PAYLOAD_LEN + 2].copy_from_slice(&(ip_len - IPV6 as u16).to_be_bytes());
    } else {
        // The TOS byte is the low half of the header's first word.
        f[ETH + 1] = tc;
        f[IPV4_TOTAL_LEN..IPV4_TOTAL_LEN + 2].copy_from_slice(&ip_len.to_be_bytes());
        let c = checksum::finish(outer.sum + u32::from(ip_len) + u32::from(tc));
        f[IPV4_CHECKSUM..IPV4_CHECKSUM + 2].copy_from_slice(&c.to_be_bytes());
    }
    let udp_len = ip_len - (l4 - ETH) as u16;
    let udp = |f: &mut [u8]| {
        // Underlay ECMP entropy: the source port follows the inner flow.
        let sport = 49152 | (hash as u16 & 0x3fff);
        f[l4..l4 + 2].copy_from_slice(&sport.to_be_bytes());
        f[l4 + 4..l4 + 6].copy_from_slice(&udp_len.to_be_bytes());
    };
    if !matches!(outer.encap, Encap::MplsOverGre { .. }) {
        udp(f);
    }
    if !matches!(outer.encap, Encap::Vxlan { .. }) {
        // The label's traffic class (bits 3-1 of its third byte, zero in the prebuilt
        // one) is the outer DSCP's class selector; its TTL the inner one, less one.
        f[overhead - 2] |= (tc >> 5) << 1;
        f[overhead - 1] = h.ttl.saturating_sub(1).max(1);
    }
    if outer.udp_sum {
        // The pseudo-header's length, then the segment with the checksum field still zero.
        let c = checksum::finish(checksum::combine(&[
            outer.sum,
            u32::from(udp_len),
            checksum::sum(&f[l4..]),
        ]));
        // A computed zero is sent as all ones (RFC 768): zero means "no checksum".
        let c = if c == 0 { 0xffff } else { c };
        f[l4 + 6..l4 + 8].copy_from_slice(&c.to_be_bytes());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ends(inner_mac: Option<MacAddr>) -> Ends {
        Ends {
            src: "192.0.2.1".parse().unwrap(),
            dst: "192.0.2.2".parse().unwrap(),
            src_mac: MacAddr([2, 0, 0, 0, 0, 1]),
            dst_mac: MacAddr([2, 0, 0, 0, 0, 2]),
            inner_mac,
            dscp: OuterDscp::default(),
            zero_udp_checksum: false,
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
            let o = Outer::new(encap, &ends(None)).unwrap();
            for ip_len in (20..=u16::MAX).step_by(7) {
                let mut want = [0u8; 20];
                let proto = if matches!(encap, Encap::MplsOverGre { .. }) {
                    IpProtocol::Gre
                } else {
                    IpProtocol::Udp
                };
                let mut repr = Ipv4Repr::new([192, 0, 2, 1].into(), [192, 0, 2, 2].into(), proto);
                repr.payload_len = ip_len - 20;
                repr.emit(&mut Ipv4Packet::new_unchecked(&mut want[..])).unwrap();
                let mut got = [0u8; 20];
                got.copy_from_slice(&o.bytes[14..34]);
                got[2..4].copy_from_slice(&ip_len.to_be_bytes());
                got[10..12].copy_from_slice(&checksum::finish(o.sum + u32::from(ip_len)).to_be_bytes());
                assert_eq!(got, want, "{encap:?} length {ip_len}");
            }
        }
    }

    #[test]
    fn vxlan_carries_the_inner_addresses_only_when_known() {
        let known = Outer::new(Encap::Vxlan { vni: 7 }, &ends(Some(MacAddr([2, 0, 0, 0, 9, 9])))).unwrap();
        assert_eq!(usize::from(known.len), 50 + 12);
        assert_eq!(known.bytes[50..56], [2, 0, 0, 0, 9, 9]);
        assert_eq!(known.bytes[56..62], [2, 0, 0, 0, 0, 1]);
        let unknown = Outer::new(Encap::Vxlan { vni: 7 }, &ends(None)).unwrap();
        assert_eq!(usize::from(unknown.len), 50);
    }

    /// Header sizes by RFC 7348 (VXLAN), RFC 7510 (MPLS over UDP) and RFC 4023 (MPLS over
    /// GRE), over each underlay family; what an MTU leaves the inner packet.
    #[test]
    fn overheads_and_inner_mtus_per_underlay_family() {
        let v6 = |mut e: Ends| {
            e.src = "2001:db8::1".parse().unwrap();
            e.dst = "2001:db8::2".parse().unwrap();
            e
        };
        for (encap, v4_overhead, v4_inner) in [
            (Encap::Vxlan { vni: 1 }, 50, 1450),
            (Encap::MplsOverUdp { label: 16 }, 46, 1468),
            (Encap::MplsOverGre { label: 16 }, 42, 1472),
        ] {
            let o4 = Outer::new(encap, &ends(None)).unwrap();
            let o6 = Outer::new(encap, &v6(ends(None))).unwrap();
            assert_eq!(
                (o4.overhead(), o4.inner_mtu(1500)),
                (v4_overhead, v4_inner),
                "{encap:?}"
            );
            assert_eq!(
                (o6.overhead(), o6.inner_mtu(1500)),
                (v4_overhead + 20, v4_inner - 20),
                "{encap:?}"
            );
            assert_eq!(o6.bytes[12..14], [0x86, 0xdd], "{encap:?}");
        }
        let mut mixed = ends(None);
        mixed.dst = "2001:db8::2".parse().unwrap();
        assert!(Outer::new(Encap::Vxlan { vni: 1 }, &mixed).is_none());
    }
}
