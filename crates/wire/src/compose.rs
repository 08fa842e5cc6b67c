//! Building whole frames from a list of header representations: lengths, next-protocol
//! fields, bottom-of-stack bits and every checksum are filled in. It allocates, so it is
//! for control traffic, tests, generators and benches, not the per-packet path (which
//! rewrites and prepends in place).

use std::net::IpAddr;

use crate::arp::{ArpPacket, ArpRepr};
use crate::ethernet::{EtherType, EthernetFrame, EthernetRepr, MacAddr};
use crate::gre::GreRepr;
use crate::icmp::IcmpPacket;
use crate::icmpv4::Icmpv4Repr;
use crate::icmpv6::Icmpv6Repr;
use crate::ip::IpProtocol;
use crate::ipv4::{Ipv4Packet, Ipv4Repr};
use crate::ipv6::{Ipv6Packet, Ipv6Repr};
use crate::ipv6ext::{Ipv6ExtRepr, Ipv6FragHeader, Ipv6FragRepr};
use crate::mpls::{MplsEntry, MplsRepr};
use crate::tcp::{TcpPacket, TcpRepr};
use crate::udp::{UdpPacket, UdpRepr};
use crate::vlan::{VlanRepr, VlanTag};
use crate::vxlan::VxlanRepr;
use crate::{Error, Layer, Result};

/// One header of a frame being built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header<'a> {
    /// Ethernet II.
    Ethernet(EthernetRepr),
    /// 802.1Q tag (TPID 0x8100).
    Vlan(VlanRepr),
    /// 802.1ad tag (TPID 0x88a8).
    QinQ(VlanRepr),
    /// ARP.
    Arp(ArpRepr),
    /// IPv4.
    Ipv4(Ipv4Repr),
    /// IPv6 fixed header.
    Ipv6(Ipv6Repr),
    /// IPv6 hop-by-hop, routing or destination options header, with its kind.
    Ipv6Ext(IpProtocol, Ipv6ExtRepr<'a>),
    /// IPv6 fragment header.
    Ipv6Frag(Ipv6FragRepr),
    /// UDP.
    Udp(UdpRepr),
    /// TCP.
    Tcp(TcpRepr),
    /// ICMPv4.
    Icmpv4(Icmpv4Repr),
    /// ICMPv6.
    Icmpv6(Icmpv6Repr),
    /// One MPLS label stack entry.
    Mpls(MplsRepr),
    /// GRE.
    Gre(GreRepr),
    /// VXLAN.
    Vxlan(VxlanRepr),
}

impl Header<'_> {
    fn len(&self) -> usize {
        match self {
            Header::Ethernet(r) => r.buffer_len(),
            Header::Vlan(r) | Header::QinQ(r) => r.buffer_len(),
            Header::Arp(r) => r.buffer_len(),
            Header::Ipv4(r) => r.buffer_len(),
            Header::Ipv6(r) => r.buffer_len(),
            Header::Ipv6Ext(_, r) => r.buffer_len(),
            Header::Ipv6Frag(r) => r.buffer_len(),
            Header::Udp(r) => r.buffer_len(),
            Header::Tcp(r) => r.buffer_len(),
            Header::Icmpv4(r) => r.buffer_len(),
            Header::Icmpv6(r) => r.buffer_len(),
            Header::Mpls(r) => r.buffer_len(),
            Header::Gre(r) => r.buffer_len(),
            Header::Vxlan(r) => r.buffer_len(),
        }
    }

    /// The EtherType that announces this header, if it has one.
    fn ethertype(&self) -> Option<EtherType> {
        Some(match self {
            Header::Ethernet(_) => EtherType::TransparentEthernet,
            Header::Vlan(_) => EtherType::Vlan,
            Header::QinQ(_) => EtherType::QinQ,
            Header::Arp(_) => EtherType::Arp,
            Header::Ipv4(_) => EtherType::Ipv4,
            Header::Ipv6(_) => EtherType::Ipv6,
            Header::Mpls(_) => EtherType::MplsUnicast,
            _ => return None,
        })
    }

    /// The IP protocol number that announces this header, if it has one.
    fn protocol(&self) -> Option<IpProtocol> {
        Some(match self {
            Header::Ipv4(_) => IpProtocol::IpIp,
            Header::Ipv6(_) => IpProtocol::Ipv6,
            Header::Ipv6Ext(kind, _) => *kind,
            Header::Ipv6Frag(_) => IpProtocol::Ipv6Frag,
            Header::Udp(_) => IpProtocol::Udp,
            Header::Tcp(_) => IpProtocol::Tcp,
            Header::Icmpv4(_) => IpProtocol::Icmp,
            Header::Icmpv6(_) => IpProtocol::Icmpv6,
            Header::Gre(_) => IpProtocol::Gre,
            _ => return None,
        })
    }

    /// Points this header's next-protocol field at `next`.
    fn link_to(&mut self, next: Option<&Header<'_>>) {
        let (et, proto) = (next.and_then(Header::ethertype), next.and_then(Header::protocol));
        match self {
            Header::Ethernet(r) => r.ethertype = et.unwrap_or(r.ethertype),
            Header::Vlan(r) | Header::QinQ(r) => r.ethertype = et.unwrap_or(r.ethertype),
            Header::Gre(r) => r.protocol = et.unwrap_or(r.protocol),
            Header::Ipv4(r) => r.protocol = proto.unwrap_or(r.protocol),
            Header::Ipv6(r) => r.next_header = proto.unwrap_or(r.next_header),
            Header::Ipv6Ext(_, r) => r.next_header = proto.unwrap_or(r.next_header),
            Header::Ipv6Frag(r) => r.next_header = proto.unwrap_or(r.next_header),
            Header::Mpls(r) => r.bottom = !matches!(next, Some(Header::Mpls(_))),
            _ => {}
        }
    }
}

/// Builds a frame from `headers` followed by `payload`.
///
/// Next-protocol fields (EtherType, IP protocol, GRE protocol, MPLS bottom-of-stack) are
/// set from the following header where it has one; lengths and checksums are computed.
/// L4 checksums use the nearest enclosing IP header.
pub fn frame(headers: &[Header<'_>], payload: &[u8]) -> Result<Vec<u8>> {
    let mut hs: Vec<Header<'_>> = headers.to_vec();
    for i in 0..hs.len() {
        let next = hs.get(i + 1).copied();
        hs[i].link_to(next.as_ref());
    }
    let mut offsets = Vec::with_capacity(hs.len());
    let mut total = 0;
    for h in &hs {
        offsets.push(total);
        total += h.len();
    }
    let headers_len = total;
    total += payload.len();
    let mut buf = vec![0u8; total];
    buf[headers_len..].copy_from_slice(payload);
    for i in (0..hs.len()).rev() {
        let at = offsets[i];
        let rest = total - at - hs[i].len();
        let addrs = enclosing_ip(&hs[..i]);
        emit_one(&hs[i], &mut buf[at..], rest, addrs)?;
    }
    Ok(buf)
}

fn enclosing_ip(before: &[Header<'_>]) -> Option<(IpAddr, IpAddr)> {
    before.iter().rev().find_map(|h| match h {
        Header::Ipv4(r) => Some((r.src.into(), r.dst.into())),
        Header::Ipv6(r) => Some((r.src.into(), r.dst.into())),
        _ => None,
    })
}

fn emit_one(h: &Header<'_>, buf: &mut [u8], rest: usize, addrs: Option<(IpAddr, IpAddr)>) -> Result<()> {
    let need_ip = |layer| addrs.ok_or(Error::invalid(layer, "pseudo_header"));
    match *h {
        Header::Ethernet(r) => r.emit(&mut EthernetFrame::new_unchecked(buf)),
        Header::Vlan(r) | Header::QinQ(r) => r.emit(&mut VlanTag::new_unchecked(buf)),
        Header::Arp(r) => r.emit(&mut ArpPacket::new_unchecked(buf)),
        Header::Ipv4(mut r) => {
            r.payload_len = u16::try_from(rest).map_err(|_| Error::invalid(Layer::Ipv4, "total_length"))?;
            r.emit(&mut Ipv4Packet::new_unchecked(buf))?;
        }
        Header::Ipv6(mut r) => {
            r.payload_len = u16::try_from(rest).map_err(|_| Error::invalid(Layer::Ipv6, "payload_length"))?;
            r.emit(&mut Ipv6Packet::new_unchecked(buf));
        }
        Header::Ipv6Ext(_, r) => r.emit(buf)?,
        Header::Ipv6Frag(r) => r.emit(&mut Ipv6FragHeader::new_unchecked(buf)),
        Header::Udp(r) => {
            let (s, d) = need_ip(Layer::Udp)?;
            let mut p = UdpPacket::new_unchecked(buf);
            r.emit(&mut p, rest)?;
            p.fill_checksum(s, d);
        }
        Header::Tcp(r) => {
            let (s, d) = need_ip(Layer::Tcp)?;
            let mut p = TcpPacket::new_unchecked(buf);
            r.emit(&mut p);
            p.fill_checksum(s, d);
        }
        Header::Icmpv4(r) => r.emit(&mut IcmpPacket::new_unchecked(buf)),
        Header::Icmpv6(r) => match need_ip(Layer::Icmpv6)? {
            (IpAddr::V6(s), IpAddr::V6(d)) => r.emit(&mut IcmpPacket::new_unchecked(buf), s, d),
            _ => return Err(Error::invalid(Layer::Icmpv6, "pseudo_header")),
        },
        Header::Mpls(r) => r.emit(&mut MplsEntry::new_unchecked(buf))?,
        Header::Gre(r) => r.emit(buf)?,
        Header::Vxlan(r) => r.emit(buf)?,
    }
    Ok(())
}

/// A header for either family, from a pair of addresses of the same family (`None` for
/// a mixed pair): [`Ipv4Repr::new`] or [`Ipv6Repr::new`] with `protocol`.
pub fn ip_header(src: IpAddr, dst: IpAddr, protocol: IpProtocol) -> Option<Header<'static>> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Some(Header::Ipv4(Ipv4Repr::new(s, d, protocol))),
        (IpAddr::V6(s), IpAddr::V6(d)) => Some(Header::Ipv6(Ipv6Repr::new(s, d, protocol))),
        _ => None,
    }
}

/// A sample VXLAN frame (UDP/IPv4 inside VXLAN 5001 inside UDP/IPv4), for examples,
/// tests and benchmarks.
pub fn example_vxlan_frame() -> Vec<u8> {
    let eth = |src: u8, dst: u8| {
        Header::Ethernet(EthernetRepr {
            src: MacAddr([2, 0, 0, 0, 0, src]),
            dst: MacAddr([2, 0, 0, 0, 0, dst]),
            ethertype: EtherType::Ipv4,
        })
    };
    let ip = |src: [u8; 4], dst: [u8; 4]| Header::Ipv4(Ipv4Repr::new(src.into(), dst.into(), IpProtocol::Udp));
    let headers = [
        eth(1, 2),
        ip([192, 0, 2, 1], [192, 0, 2, 2]),
        Header::Udp(UdpRepr {
            src_port: 49152,
            dst_port: crate::udp::PORT_VXLAN,
        }),
        Header::Vxlan(VxlanRepr { vni: 5001 }),
        eth(3, 4),
        ip([10, 0, 0, 1], [10, 0, 0, 2]),
        Header::Udp(UdpRepr {
            src_port: 1111,
            dst_port: 2222,
        }),
    ];
    // The headers above are all valid, so building cannot fail.
    frame(&headers, &[0xab; 18]).unwrap_or_default()
}
