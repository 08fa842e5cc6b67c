//! Cross-check against scapy: frames scapy built with random field values must parse, and
//! every field must equal scapy's own decoding of the same bytes; truncated frames must be
//! errors; fuzzed frames must not panic.

mod common;

use std::net::IpAddr;
use std::path::Path;
use std::process::Command;

use common::{Fields, hex, python, run, unhex};
use wire::arp::{ArpPacket, ArpRepr};
use wire::ethernet::{EthernetFrame, EthernetRepr};
use wire::gre::{GrePacket, GreRepr};
use wire::icmp::IcmpPacket;
use wire::icmpv4::Icmpv4Repr;
use wire::icmpv6::Icmpv6Repr;
use wire::ip::{Fragment, IpProtocol};
use wire::ipv4::{Ipv4Packet, Ipv4Repr};
use wire::ipv6::{Ipv6Packet, Ipv6Repr};
use wire::ipv6ext::{Ipv6ExtHeader, Ipv6FragHeader, is_extension};
use wire::mpls::MplsEntry;
use wire::parse::{ABSENT, Headers, L3, Tunnel, parse};
use wire::sctp::SctpPacket;
use wire::tcp::{TcpPacket, TcpRepr};
use wire::udp::{UdpPacket, UdpRepr};
use wire::vlan::VlanTag;
use wire::{Layer, Result};

fn put(f: &mut Fields, key: String, v: impl ToString) {
    f.insert(key, v.to_string());
}

/// Our reading of one level (outer or inner) of a frame, keyed as frames.py keys scapy's.
fn describe_level(frame: &[u8], h: &Headers, p: &str, f: &mut Fields) -> Result<()> {
    if h.l2 != ABSENT {
        let l2 = usize::from(h.l2);
        let eth = EthernetRepr::parse(&EthernetFrame::new_checked(&frame[l2..])?)?;
        put(f, format!("{p}.eth.src"), eth.src);
        put(f, format!("{p}.eth.dst"), eth.dst);
        let mut vids = Vec::new();
        for i in 0..usize::from(h.vlans) {
            let tag = VlanTag::new_checked(&frame[l2 + 14 + 4 * i..])?;
            if i == 0 {
                put(f, format!("{p}.vlan.pcp"), tag.pcp());
            }
            vids.push(tag.vid().to_string());
        }
        if !vids.is_empty() {
            put(f, format!("{p}.vlan.vids"), vids.join(","));
        }
    }
    let l3 = usize::from(h.l3);
    let (src, dst): (IpAddr, IpAddr) = match h.l3_kind {
        L3::Arp => {
            let a = ArpRepr::parse(&ArpPacket::new_checked(&frame[l3..])?)?;
            put(f, format!("{p}.arp.op"), u16::from(a.operation));
            put(f, format!("{p}.arp.psrc"), a.sender_ip);
            put(f, format!("{p}.arp.pdst"), a.target_ip);
            put(f, format!("{p}.arp.hwsrc"), a.sender_mac);
            put(f, format!("{p}.arp.hwdst"), a.target_mac);
            return Ok(());
        }
        L3::Ipv4 => {
            let r = Ipv4Repr::parse(&Ipv4Packet::new_checked(&frame[l3..])?)?;
            put(f, format!("{p}.ip.src"), r.src);
            put(f, format!("{p}.ip.dst"), r.dst);
            put(f, format!("{p}.ip.ttl"), r.ttl);
            put(f, format!("{p}.ip.proto"), u8::from(r.protocol));
            put(f, format!("{p}.ip.len"), r.buffer_len() + usize::from(r.payload_len));
            put(f, format!("{p}.ip.id"), r.ident);
            put(f, format!("{p}.ip.df"), u8::from(r.dont_frag));
            put(f, format!("{p}.ip.mf"), u8::from(r.more_frags));
            put(f, format!("{p}.ip.frag"), r.frag_offset);
            put(f, format!("{p}.ip.tos"), (r.dscp << 2) | r.ecn);
            put(f, format!("{p}.ip.ihl"), r.buffer_len() / 4);
            (r.src.into(), r.dst.into())
        }
        L3::Ipv6 => {
            let pkt = Ipv6Packet::new_checked(&frame[l3..])?;
            let r = Ipv6Repr::parse(&pkt)?;
            put(f, format!("{p}.ip6.src"), hex(&r.src.octets()));
            put(f, format!("{p}.ip6.dst"), hex(&r.dst.octets()));
            put(f, format!("{p}.ip.ttl"), r.hop_limit);
            put(f, format!("{p}.ip6.plen"), r.payload_len);
            put(f, format!("{p}.ip6.tc"), r.traffic_class);
            put(f, format!("{p}.ip6.fl"), r.flow_label);
            put(f, format!("{p}.ip.proto"), u8::from(h.l4_proto));
            // Find the fragment header, if any, by walking the chain with the views.
            let (mut nh, mut at) = (r.next_header, 0usize);
            while is_extension(nh) {
                let rest = &pkt.payload()[at..];
                if nh == IpProtocol::Ipv6Frag {
                    let fh = Ipv6FragHeader::new_checked(rest)?;
                    put(f, format!("{p}.frag.offset"), fh.frag_offset());
                    put(f, format!("{p}.frag.m"), u8::from(fh.more_frags()));
                    put(f, format!("{p}.frag.id"), fh.ident());
                    nh = fh.next_header();
                    at += 8;
                } else {
                    let eh = Ipv6ExtHeader::new_checked(rest)?;
                    nh = eh.next_header();
                    at += eh.header_len();
                }
                if h.fragment == Fragment::Later {
                    break;
                }
            }
            (r.src.into(), r.dst.into())
        }
        _ => return Ok(()),
    };
    if h.l4 == ABSENT {
        return Ok(());
    }
    let seg = &frame[usize::from(h.l4)..usize::from(h.l3_end)];
    match h.l4_proto {
        IpProtocol::Udp if h.fragment == Fragment::First => {
            // Its checksum covers fragments not here.
            let u = UdpPacket::new_checked_header(seg)?;
            put(f, format!("{p}.l4.sport"), u.src_port());
            put(f, format!("{p}.l4.dport"), u.dst_port());
        }
        IpProtocol::Udp => {
            let r = UdpRepr::parse(&UdpPacket::new_checked(seg)?, src, dst)?;
            put(f, format!("{p}.l4.sport"), r.src_port);
            put(f, format!("{p}.l4.dport"), r.dst_port);
        }
        IpProtocol::Tcp if h.fragment == Fragment::First => {
            let t = TcpPacket::new_checked(seg)?;
            put(f, format!("{p}.l4.sport"), t.src_port());
            put(f, format!("{p}.l4.dport"), t.dst_port());
            put(f, format!("{p}.tcp.flags"), t.flags().0);
            put(f, format!("{p}.tcp.seq"), t.seq_number());
            put(f, format!("{p}.tcp.ack"), t.ack_number());
            put(f, format!("{p}.tcp.window"), t.window());
        }
        IpProtocol::Tcp => {
            let r = TcpRepr::parse(&TcpPacket::new_checked(seg)?, src, dst)?;
            put(f, format!("{p}.l4.sport"), r.src_port);
            put(f, format!("{p}.l4.dport"), r.dst_port);
            put(f, format!("{p}.tcp.flags"), r.flags.0);
            put(f, format!("{p}.tcp.seq"), r.seq_number);
            put(f, format!("{p}.tcp.ack"), r.ack_number);
            put(f, format!("{p}.tcp.window"), r.window);
        }
        IpProtocol::Sctp => {
            // The ports as the flow key has them: they are what SCTP is parsed for.
            put(f, format!("{p}.l4.sport"), h.key.src_port);
            put(f, format!("{p}.l4.dport"), h.key.dst_port);
            put(
                f,
                format!("{p}.sctp.tag"),
                SctpPacket::new_checked(seg)?.verification_tag(),
            );
            put(f, format!("{p}.sctp.closing"), h.tcp_flags);
        }
        IpProtocol::Icmp => {
            let r = Icmpv4Repr::parse(&IcmpPacket::new_checked(seg, Layer::Icmpv4)?)?;
            let (t, code, _) = r.fields();
            put(f, format!("{p}.icmp.type"), t);
            put(f, format!("{p}.icmp.code"), code);
            match r {
                Icmpv4Repr::EchoRequest { ident, .. } | Icmpv4Repr::EchoReply { ident, .. } => {
                    put(f, format!("{p}.icmp.id"), ident)
                }
                Icmpv4Repr::DstUnreachable { code: 4, next_hop_mtu } => put(f, format!("{p}.icmp.mtu"), next_hop_mtu),
                _ => {}
            }
        }
        IpProtocol::Icmpv6 => {
            let (IpAddr::V6(s6), IpAddr::V6(d6)) = (src, dst) else {
                unreachable!()
            };
            let icmp = IcmpPacket::new_checked(seg, Layer::Icmpv6)?;
            let r = Icmpv6Repr::parse(&icmp, s6, d6)?;
            put(f, format!("{p}.icmp.type"), icmp.msg_type());
            match r {
                Icmpv6Repr::EchoRequest { ident, .. } | Icmpv6Repr::EchoReply { ident, .. } => {
                    put(f, format!("{p}.icmp.code"), icmp.code());
                    put(f, format!("{p}.icmp.id"), ident);
                }
                Icmpv6Repr::PacketTooBig { mtu } => {
                    put(f, format!("{p}.icmp.code"), icmp.code());
                    put(f, format!("{p}.icmp.mtu"), mtu);
                }
                Icmpv6Repr::TimeExceeded { code } => put(f, format!("{p}.icmp.code"), code),
                Icmpv6Repr::NeighborSolicit { target, lladdr } => {
                    put(f, format!("{p}.nd.target"), hex(&target.octets()));
                    if let Some(mac) = lladdr {
                        put(f, format!("{p}.nd.lladdr"), mac);
                    }
                }
                Icmpv6Repr::NeighborAdvert {
                    router,
                    solicited,
                    override_,
                    target,
                    lladdr,
                } => {
                    put(f, format!("{p}.nd.target"), hex(&target.octets()));
                    put(
                        f,
                        format!("{p}.nd.flags"),
                        u8::from(router) * 4 + u8::from(solicited) * 2 + u8::from(override_),
                    );
                    if let Some(mac) = lladdr {
                        put(f, format!("{p}.nd.lladdr"), mac);
                    }
                }
                // Anything else only occurs in fuzzed frames; record the code so a
                // well-formed frame decoded this way would show up as a mismatch.
                _ => put(f, format!("{p}.icmp.code"), icmp.code()),
            }
        }
        _ => {}
    }
    Ok(())
}

fn describe(frame: &[u8]) -> Result<Fields> {
    let m = parse(frame)?;
    let mut f = Fields::new();
    describe_level(frame, &m.outer, "o", &mut f)?;
    let gre = |f: &mut Fields| -> Result<()> {
        let g = GreRepr::parse(&GrePacket::new_checked(
            &frame[usize::from(m.outer.l4)..usize::from(m.outer.l3_end)],
        )?)?;
        put(f, "t.gre.proto".into(), u16::from(g.protocol));
        put(f, "t.gre.key".into(), g.key.map_or("none".into(), |k| k.to_string()));
        put(
            f,
            "t.gre.seq".into(),
            g.sequence.map_or("none".into(), |k| k.to_string()),
        );
        put(f, "t.gre.csum".into(), u8::from(g.checksum));
        Ok(())
    };
    let labels = |f: &mut Fields, depth: u8| -> Result<()> {
        let start = usize::from(m.outer.payload);
        let mut v = Vec::new();
        for i in 0..usize::from(depth) {
            v.push(MplsEntry::new_checked(&frame[start + 4 * i..])?.label().to_string());
        }
        put(f, "t.labels".into(), v.join(","));
        Ok(())
    };
    match m.tunnel {
        Tunnel::None => return Ok(f),
        Tunnel::Vxlan { vni } => {
            put(&mut f, "t.kind".into(), "vxlan");
            put(&mut f, "t.vni".into(), vni);
        }
        Tunnel::MplsOverUdp { depth, .. } => {
            put(&mut f, "t.kind".into(), "mpls_udp");
            labels(&mut f, depth)?;
        }
        Tunnel::MplsOverGre { depth, .. } => {
            put(&mut f, "t.kind".into(), "mpls_gre");
            gre(&mut f)?;
            labels(&mut f, depth)?;
        }
        Tunnel::Gre { .. } => {
            put(&mut f, "t.kind".into(), "gre");
            gre(&mut f)?;
        }
    }
    describe_level(frame, &m.inner, "i", &mut f)?;
    Ok(f)
}

#[test]
fn agrees_with_scapy() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scapy/frames.py");
    let out = run(Command::new(python()).arg(script).args(["7", "130", "600"]));
    let (mut good, mut errors, mut fuzzed) = (0, 0, 0);
    let mut kinds = std::collections::BTreeSet::new();
    for line in out.lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        let [kind, expect, hexframe, fields] = cols[..] else {
            panic!("bad line {line}")
        };
        let frame = unhex(hexframe);
        match expect {
            "ok" => {
                let theirs: Fields = fields
                    .split(';')
                    .filter(|kv| !kv.is_empty())
                    .map(|kv| {
                        let (k, v) = kv.split_once('=').unwrap();
                        (k.to_string(), v.to_string())
                    })
                    .collect();
                let ours = describe(&frame).unwrap_or_else(|e| panic!("{kind}: {e}\nframe {hexframe}"));
                assert_eq!(ours, theirs, "{kind}: frame {hexframe}");
                kinds.insert(kind.to_string());
                good += 1;
            }
            "error" => {
                assert!(parse(&frame).is_err(), "{kind}: truncated frame parsed: {hexframe}");
                errors += 1;
            }
            _ => {
                let _ = parse(&frame).map(|_| describe(&frame));
                fuzzed += 1;
            }
        }
    }
    assert!(good >= 2000, "only {good} well-formed frames");
    assert!(errors + fuzzed >= 500, "only {} malformed frames", errors + fuzzed);
    assert_eq!(kinds.len(), 17, "kinds seen: {kinds:?}");
    eprintln!(
        "scapy: {good} frames agree over {} kinds; {errors} truncated rejected; {fuzzed} fuzzed survived",
        kinds.len()
    );
}
