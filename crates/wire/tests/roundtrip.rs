//! proptest round trips: for every header, `Repr -> emit -> parse` gives the same `Repr`;
//! for whole tunnel packets (VXLAN, MPLSoUDP, MPLSoGRE; IPv4/IPv6 outside and inside),
//! `compose::frame -> parse` recovers every header, the tunnel fields and the flow keys.
//! Plus: the one-pass parse never panics on arbitrary bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use wire::Layer;
use wire::arp::{ArpOperation, ArpPacket, ArpRepr};
use wire::compose::{self, Header};
use wire::ethernet::{EtherType, EthernetFrame, EthernetRepr, MacAddr};
use wire::flow::FlowKey;
use wire::gre::{GrePacket, GreRepr};
use wire::icmp::IcmpPacket;
use wire::icmpv4::Icmpv4Repr;
use wire::icmpv6::Icmpv6Repr;
use wire::ip::IpProtocol;
use wire::ipv4::{Ipv4Packet, Ipv4Repr};
use wire::ipv6::{Ipv6Packet, Ipv6Repr};
use wire::ipv6ext::{Ipv6ExtHeader, Ipv6ExtRepr, Ipv6FragHeader, Ipv6FragRepr};
use wire::mpls::{MplsEntry, MplsRepr};
use wire::options::HeaderOptions;
use wire::parse::{Tunnel, parse};
use wire::tcp::{TcpFlags, TcpPacket, TcpRepr};
use wire::udp::{UdpPacket, UdpRepr};
use wire::vlan::{VlanRepr, VlanTag};
use wire::vxlan::{VxlanPacket, VxlanRepr};

fn mac() -> impl Strategy<Value = MacAddr> {
    any::<[u8; 6]>().prop_map(MacAddr)
}
fn v4() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>().prop_map(Ipv4Addr::from)
}
fn v6() -> impl Strategy<Value = Ipv6Addr> {
    any::<u128>().prop_map(Ipv6Addr::from)
}
fn options() -> impl Strategy<Value = HeaderOptions> {
    (0usize..=10)
        .prop_flat_map(|words| proptest::collection::vec(any::<u8>(), words * 4))
        .prop_map(|b| HeaderOptions::new(&b).unwrap())
}
fn payload() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..80)
}

fn ipv4_repr() -> impl Strategy<Value = Ipv4Repr> {
    (
        v4(),
        v4(),
        any::<u8>(),
        any::<u8>(),
        0u8..64,
        0u8..4,
        any::<u16>(),
        any::<bool>(),
        any::<bool>(),
        0u16..8192,
        0u16..2000,
        options(),
    )
        .prop_map(
            |(src, dst, p, ttl, dscp, ecn, ident, df, mf, off, len, options)| Ipv4Repr {
                src,
                dst,
                protocol: p.into(),
                ttl,
                dscp,
                ecn,
                ident,
                dont_frag: df,
                more_frags: mf,
                frag_offset: off * 8,
                payload_len: len,
                options,
            },
        )
}

fn ipv6_repr() -> impl Strategy<Value = Ipv6Repr> {
    (
        v6(),
        v6(),
        any::<u8>(),
        any::<u8>(),
        any::<u8>(),
        0u32..(1 << 20),
        0u16..2000,
    )
        .prop_map(|(src, dst, nh, hl, tc, fl, len)| Ipv6Repr {
            src,
            dst,
            next_header: nh.into(),
            hop_limit: hl,
            traffic_class: tc,
            flow_label: fl,
            payload_len: len,
        })
}

fn tcp_repr() -> impl Strategy<Value = TcpRepr> {
    (
        any::<u16>(),
        any::<u16>(),
        any::<u32>(),
        any::<u32>(),
        0u16..512,
        any::<u16>(),
        any::<u16>(),
        options(),
    )
        .prop_map(|(sp, dp, seq, ack, flags, window, urgent, options)| TcpRepr {
            src_port: sp,
            dst_port: dp,
            seq_number: seq,
            ack_number: ack,
            flags: TcpFlags(flags),
            window,
            urgent,
            options,
        })
}

fn icmpv4_repr() -> impl Strategy<Value = Icmpv4Repr> {
    prop_oneof![
        (any::<u16>(), any::<u16>()).prop_map(|(ident, seq_no)| Icmpv4Repr::EchoRequest { ident, seq_no }),
        (any::<u16>(), any::<u16>()).prop_map(|(ident, seq_no)| Icmpv4Repr::EchoReply { ident, seq_no }),
        (any::<u8>(), any::<u16>()).prop_map(|(code, next_hop_mtu)| Icmpv4Repr::DstUnreachable { code, next_hop_mtu }),
        any::<u8>().prop_map(|code| Icmpv4Repr::TimeExceeded { code }),
        (any::<u8>(), any::<u8>(), any::<u32>())
            .prop_filter("named types have their own variants", |(t, _, _)| ![0, 3, 8, 11]
                .contains(t))
            .prop_map(|(msg_type, code, rest)| Icmpv4Repr::Other { msg_type, code, rest }),
    ]
}

fn icmpv6_repr() -> impl Strategy<Value = Icmpv6Repr> {
    prop_oneof![
        any::<u8>().prop_map(|code| Icmpv6Repr::DstUnreachable { code }),
        any::<u32>().prop_map(|mtu| Icmpv6Repr::PacketTooBig { mtu }),
        any::<u8>().prop_map(|code| Icmpv6Repr::TimeExceeded { code }),
        (any::<u16>(), any::<u16>()).prop_map(|(ident, seq_no)| Icmpv6Repr::EchoRequest { ident, seq_no }),
        (any::<u16>(), any::<u16>()).prop_map(|(ident, seq_no)| Icmpv6Repr::EchoReply { ident, seq_no }),
        (v6(), proptest::option::of(mac())).prop_map(|(target, lladdr)| Icmpv6Repr::NeighborSolicit { target, lladdr }),
        (any::<[bool; 3]>(), v6(), proptest::option::of(mac())).prop_map(
            |([router, solicited, override_], target, lladdr)| {
                Icmpv6Repr::NeighborAdvert {
                    router,
                    solicited,
                    override_,
                    target,
                    lladdr,
                }
            }
        ),
        (any::<u8>(), any::<u8>(), any::<u32>())
            .prop_filter("named types have their own variants", |(t, _, _)| ![
                1, 2, 3, 128, 129, 135, 136
            ]
            .contains(t))
            .prop_map(|(msg_type, code, rest)| Icmpv6Repr::Other { msg_type, code, rest }),
    ]
}

fn gre_repr() -> impl Strategy<Value = GreRepr> {
    (
        any::<u16>(),
        any::<bool>(),
        proptest::option::of(any::<u32>()),
        proptest::option::of(any::<u32>()),
    )
        .prop_map(|(p, checksum, key, sequence)| GreRepr {
            protocol: p.into(),
            checksum,
            key,
            sequence,
        })
}

fn ip_pair() -> impl Strategy<Value = (IpAddr, IpAddr)> {
    prop_oneof![
        (v4(), v4()).prop_map(|(s, d)| (IpAddr::V4(s), IpAddr::V4(d))),
        (v6(), v6()).prop_map(|(s, d)| (IpAddr::V6(s), IpAddr::V6(d))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn ethernet_vlan_arp((src, dst, et) in (mac(), mac(), any::<u16>()),
                         (pcp, dei, vid) in (0u8..8, any::<bool>(), 0u16..4095),
                         (op, smac, sip, tmac, tip) in (any::<u16>(), mac(), v4(), mac(), v4())) {
        let e = EthernetRepr { src, dst, ethertype: et.into() };
        let mut b = [0u8; 14];
        e.emit(&mut EthernetFrame::new_unchecked(&mut b[..]));
        prop_assert_eq!(EthernetRepr::parse(&EthernetFrame::new_checked(&b[..]).unwrap()).unwrap(), e);

        let v = VlanRepr { pcp, dei, vid, ethertype: et.into() };
        let mut b = [0u8; 4];
        v.emit(&mut VlanTag::new_unchecked(&mut b[..]));
        prop_assert_eq!(VlanRepr::parse(&VlanTag::new_checked(&b[..]).unwrap()).unwrap(), v);

        let a = ArpRepr { operation: ArpOperation::from(op), sender_mac: smac, sender_ip: sip, target_mac: tmac, target_ip: tip };
        let mut b = [0u8; 28];
        a.emit(&mut ArpPacket::new_unchecked(&mut b[..]));
        prop_assert_eq!(ArpRepr::parse(&ArpPacket::new_checked(&b[..]).unwrap()).unwrap(), a);
    }

    #[test]
    fn ipv4(r in ipv4_repr()) {
        let mut b = vec![0u8; r.buffer_len() + usize::from(r.payload_len)];
        r.emit(&mut Ipv4Packet::new_unchecked(&mut b[..])).unwrap();
        prop_assert_eq!(Ipv4Repr::parse(&Ipv4Packet::new_checked(&b[..]).unwrap()).unwrap(), r);
    }

    #[test]
    fn ipv6_and_extensions(r in ipv6_repr(), nh in any::<u8>(), words in 1usize..5, fill in any::<u8>(),
                           (off, mf, ident) in (0u16..8192, any::<bool>(), any::<u32>())) {
        let mut b = vec![0u8; 40 + usize::from(r.payload_len)];
        r.emit(&mut Ipv6Packet::new_unchecked(&mut b[..]));
        prop_assert_eq!(Ipv6Repr::parse(&Ipv6Packet::new_checked(&b[..]).unwrap()).unwrap(), r);

        let data = vec![fill; words * 8 - 2];
        let e = Ipv6ExtRepr { next_header: nh.into(), data: &data };
        let mut b = vec![0u8; e.buffer_len()];
        e.emit(&mut b).unwrap();
        let h = Ipv6ExtHeader::new_checked(&b[..]).unwrap();
        prop_assert_eq!(Ipv6ExtRepr::parse(&h).unwrap(), e);

        let f = Ipv6FragRepr { next_header: nh.into(), frag_offset: off * 8, more_frags: mf, ident };
        let mut b = [0u8; 8];
        f.emit(&mut Ipv6FragHeader::new_unchecked(&mut b[..]));
        prop_assert_eq!(Ipv6FragRepr::parse(&Ipv6FragHeader::new_checked(&b[..]).unwrap()).unwrap(), f);
    }

    #[test]
    fn udp_tcp((s, d) in ip_pair(), sp in any::<u16>(), dp in any::<u16>(), t in tcp_repr(), data in payload()) {
        let u = UdpRepr { src_port: sp, dst_port: dp };
        let mut b = vec![0u8; 8 + data.len()];
        b[8..].copy_from_slice(&data);
        let mut p = UdpPacket::new_unchecked(&mut b[..]);
        u.emit(&mut p, data.len()).unwrap();
        p.fill_checksum(s, d);
        let p = UdpPacket::new_checked(&b[..]).unwrap();
        prop_assert_eq!(UdpRepr::parse(&p, s, d).unwrap(), u);
        prop_assert_eq!(p.payload(), &data[..]);

        let mut b = vec![0u8; t.buffer_len() + data.len()];
        b[t.buffer_len()..].copy_from_slice(&data);
        let mut p = TcpPacket::new_unchecked(&mut b[..]);
        t.emit(&mut p);
        p.fill_checksum(s, d);
        let p = TcpPacket::new_checked(&b[..]).unwrap();
        prop_assert_eq!(TcpRepr::parse(&p, s, d).unwrap(), t);
        prop_assert_eq!(p.payload(), &data[..]);
    }

    #[test]
    fn icmp(r4 in icmpv4_repr(), r6 in icmpv6_repr(), s in v6(), d in v6(), data in payload()) {
        let mut b = vec![0u8; 8 + data.len()];
        b[8..].copy_from_slice(&data);
        r4.emit(&mut IcmpPacket::new_unchecked(&mut b[..]));
        prop_assert_eq!(Icmpv4Repr::parse(&IcmpPacket::new_checked(&b[..], Layer::Icmpv4).unwrap()).unwrap(), r4);

        let mut b = vec![0u8; r6.buffer_len()];
        r6.emit(&mut IcmpPacket::new_unchecked(&mut b[..]), s, d);
        prop_assert_eq!(Icmpv6Repr::parse(&IcmpPacket::new_checked(&b[..], Layer::Icmpv6).unwrap(), s, d).unwrap(), r6);
    }

    #[test]
    fn mpls_gre_vxlan((label, tc, bottom, ttl) in (0u32..(1 << 20), 0u8..8, any::<bool>(), any::<u8>()),
                      g in gre_repr(), vni in 0u32..(1 << 24), data in payload()) {
        let m = MplsRepr { label, tc, bottom, ttl };
        let mut b = [0u8; 4];
        m.emit(&mut MplsEntry::new_unchecked(&mut b[..])).unwrap();
        prop_assert_eq!(MplsRepr::parse(&MplsEntry::new_checked(&b[..]).unwrap()).unwrap(), m);

        let mut b = vec![0u8; g.buffer_len() + data.len()];
        b[g.buffer_len()..].copy_from_slice(&data);
        g.emit(&mut b).unwrap();
        let p = GrePacket::new_checked(&b[..]).unwrap();
        prop_assert_eq!(GreRepr::parse(&p).unwrap(), g);
        prop_assert_eq!(p.payload(), &data[..]);

        let v = VxlanRepr { vni };
        let mut b = [0u8; 8];
        v.emit(&mut b).unwrap();
        prop_assert_eq!(VxlanRepr::parse(&VxlanPacket::new_checked(&b[..]).unwrap()).unwrap(), v);
    }

    #[test]
    fn whole_tunnel_packets(kind in 0u8..3, outer in ip_pair(), inner in ip_pair(), labels in 1usize..4,
                            vni in 0u32..(1 << 24), label in 16u32..(1 << 20), key in proptest::option::of(any::<u32>()),
                            sport in any::<u16>(), dport in any::<u16>(), tcp in any::<bool>(), data in payload(),
                            macs in (mac(), mac())) {
        let ip = |(s, d): (IpAddr, IpAddr)| compose::ip_header(s, d, IpProtocol::Udp).unwrap();
        let eth = Header::Ethernet(EthernetRepr { src: macs.0, dst: macs.1, ethertype: EtherType::Ipv4 });
        let mut hs = vec![eth, ip(outer)];
        match kind {
            0 => {
                hs.push(Header::Udp(UdpRepr { src_port: 50000, dst_port: 4789 }));
                hs.push(Header::Vxlan(VxlanRepr { vni }));
                hs.push(eth);
            }
            1 => hs.push(Header::Udp(UdpRepr { src_port: 50000, dst_port: 6635 })),
            _ => hs.push(Header::Gre(GreRepr { protocol: EtherType::MplsUnicast, checksum: true, key, sequence: None })),
        }
        if kind != 0 {
            for i in 0..labels {
                hs.push(Header::Mpls(MplsRepr { label: label + i as u32, tc: 1, bottom: false, ttl: 9 }));
            }
        }
        hs.push(ip(inner));
        let t = TcpRepr { src_port: sport, dst_port: dport, seq_number: 1, ack_number: 2, flags: TcpFlags(TcpFlags::ACK),
                          window: 1000, urgent: 0, options: HeaderOptions::default() };
        hs.push(if tcp { Header::Tcp(t) } else { Header::Udp(UdpRepr { src_port: sport, dst_port: dport }) });
        let frame = compose::frame(&hs, &data).unwrap();

        let m = parse(&frame).unwrap();
        let proto = if tcp { 6 } else { 17 };
        let expected_key = match inner {
            (IpAddr::V4(s), IpAddr::V4(d)) => FlowKey::v4(s, d, proto, sport, dport),
            (IpAddr::V6(s), IpAddr::V6(d)) => FlowKey::v6(s, d, proto, sport, dport),
            _ => unreachable!(),
        };
        prop_assert_eq!(m.inner.key, expected_key);
        prop_assert_eq!(m.outer.key.src_ip(), Some(outer.0));
        prop_assert_eq!(usize::from(m.inner.payload_end), frame.len());
        prop_assert_eq!(&frame[usize::from(m.inner.payload)..], &data[..]);
        match (kind, m.tunnel) {
            (0, Tunnel::Vxlan { vni: v }) => prop_assert_eq!(v, vni),
            (1, Tunnel::MplsOverUdp { top, depth }) => {
                prop_assert_eq!((top.label, usize::from(depth)), (label, labels));
            }
            (2, Tunnel::MplsOverGre { top, depth, key: k }) => {
                prop_assert_eq!((top.label, usize::from(depth), k), (label, labels, key));
            }
            other => prop_assert!(false, "kind {} parsed as {:?}", kind, other),
        }
        // Every inner L4 checksum verifies with the inner addresses.
        let seg = &frame[usize::from(m.inner.l4)..];
        if tcp {
            prop_assert_eq!(TcpRepr::parse(&TcpPacket::new_checked(seg).unwrap(), inner.0, inner.1).unwrap(), t);
        } else {
            prop_assert!(UdpRepr::parse(&UdpPacket::new_checked(seg).unwrap(), inner.0, inner.1).is_ok());
        }
    }

    #[test]
    fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse(&bytes);
    }

    #[test]
    fn parse_never_panics_on_corrupted_tunnels(at in 0usize..120, value in any::<u8>(), cut in 0usize..200) {
        let mut frame = compose::example_vxlan_frame();
        let i = at % frame.len();
        frame[i] = value;
        frame.truncate(cut.min(frame.len()));
        let _ = parse(&frame);
    }
}
