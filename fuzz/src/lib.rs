//! The bodies of the fuzz targets. Each takes arbitrary bytes, must not panic, and checks
//! what must hold for any input: a parsed value re-emits to bytes that parse to the same
//! value, the one-pass parse's offsets lie inside the frame, and a refused configuration
//! says where.
//!
//! The binaries in `fuzz_targets/` call these under libFuzzer; `tests/replay.rs` calls
//! them on the committed corpus so plain `cargo test` keeps the targets honest.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use wire::Layer;

mod c_api;
mod config;
mod pipeline;
pub use c_api::c_api;
pub use config::{config, kernel_routes, netpol, route_commands};
pub use pipeline::pipeline;
use wire::arp::{ArpPacket, ArpRepr};
use wire::ethernet::{EthernetFrame, EthernetRepr};
use wire::gre::{GrePacket, GreRepr};
use wire::icmp::IcmpPacket;
use wire::icmpv4::Icmpv4Repr;
use wire::icmpv6::Icmpv6Repr;
use wire::ip::IpProtocol;
use wire::ipv4::{Ipv4Packet, Ipv4Repr};
use wire::ipv6::{Ipv6Packet, Ipv6Repr};
use wire::ipv6ext::{self, Ipv6ExtHeader, Ipv6ExtRepr, Ipv6FragHeader, Ipv6FragRepr};
use wire::mpls::{self, MplsEntry, MplsRepr};
use wire::parse::{ABSENT, Headers, parse, parse_general};
use wire::sctp::SctpPacket;
use wire::tcp::{TcpPacket, TcpRepr};
use wire::udp::{UdpPacket, UdpRepr};
use wire::vlan::{VlanRepr, VlanTag};
use wire::vxlan::{VxlanPacket, VxlanRepr};

/// A target body: arbitrary bytes in, panics on a broken invariant.
pub type Target = fn(&[u8]);

/// Every target, by name, for the corpus replay.
pub const TARGETS: &[(&str, Target)] = &[
    ("pipeline", pipeline),
    ("packet", packet),
    ("ethernet", ethernet),
    ("vlan", vlan),
    ("arp", arp),
    ("ipv4", ipv4),
    ("ipv6", ipv6),
    ("ipv6_ext", ipv6_ext),
    ("udp", udp),
    ("tcp", tcp),
    ("sctp", sctp),
    ("icmpv4", icmpv4),
    ("icmpv6", icmpv6),
    ("mpls", mpls),
    ("gre", gre),
    ("vxlan", vxlan),
    ("config", config),
    ("netpol", netpol),
    ("route_commands", route_commands),
    ("kernel_routes", kernel_routes),
    ("c_api", c_api),
];

const V4: (IpAddr, IpAddr) = (
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
);
const V6: (Ipv6Addr, Ipv6Addr) = (
    Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1),
    Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2),
);

fn check_headers(h: &Headers, len: usize) {
    for off in [h.l2, h.l3, h.l4, h.payload, h.payload_end, h.l3_end] {
        assert!(
            off == ABSENT || usize::from(off) <= len,
            "offset {off} past frame of {len}"
        );
    }
    if h.l4 != ABSENT {
        assert!(h.l3 < h.l4 && h.l4 <= h.payload && h.payload <= h.payload_end);
        assert!(h.payload_end <= h.l3_end);
    }
}

/// The one-pass parse; its fast path answers as the general walk does, error or not.
pub fn packet(data: &[u8]) {
    let parsed = parse(data);
    assert_eq!(parsed, parse_general(data), "fast path and general walk disagree");
    if let Ok(m) = parsed {
        check_headers(&m.outer, data.len());
        if m.tunnel != wire::parse::Tunnel::None {
            check_headers(&m.inner, data.len());
            assert!(m.inner.l3 >= m.outer.payload);
        }
    }
}

/// Emits `repr` into a zeroed buffer with `tail` after the header, then re-parses it.
fn reparse<R: PartialEq + core::fmt::Debug>(
    repr: R,
    len: usize,
    tail: &[u8],
    emit: impl Fn(&mut [u8]),
    parse: impl Fn(&[u8]) -> Option<R>,
) {
    let mut buf = vec![0u8; len + tail.len()];
    buf[len..].copy_from_slice(tail);
    emit(&mut buf);
    assert_eq!(parse(&buf), Some(repr));
}

/// Ethernet II.
pub fn ethernet(data: &[u8]) {
    let Ok(f) = EthernetFrame::new_checked(data) else {
        return;
    };
    let Ok(r) = EthernetRepr::parse(&f) else { return };
    let parse = |b: &[u8]| EthernetRepr::parse(&EthernetFrame::new_checked(b).ok()?).ok();
    reparse(
        r,
        r.buffer_len(),
        f.payload(),
        |b| r.emit(&mut EthernetFrame::new_unchecked(b)),
        parse,
    );
}

/// 802.1Q / 802.1ad tags.
pub fn vlan(data: &[u8]) {
    let Ok(t) = VlanTag::new_checked(data) else { return };
    let Ok(r) = VlanRepr::parse(&t) else { return };
    let parse = |b: &[u8]| VlanRepr::parse(&VlanTag::new_checked(b).ok()?).ok();
    reparse(
        r,
        r.buffer_len(),
        &[],
        |b| r.emit(&mut VlanTag::new_unchecked(b)),
        parse,
    );
}

/// ARP.
pub fn arp(data: &[u8]) {
    let Ok(p) = ArpPacket::new_checked(data) else { return };
    let Ok(r) = ArpRepr::parse(&p) else { return };
    let parse = |b: &[u8]| ArpRepr::parse(&ArpPacket::new_checked(b).ok()?).ok();
    reparse(
        r,
        r.buffer_len(),
        &[],
        |b| r.emit(&mut ArpPacket::new_unchecked(b)),
        parse,
    );
}

/// IPv4.
pub fn ipv4(data: &[u8]) {
    let Ok(p) = Ipv4Packet::new_checked(data) else { return };
    let Ok(r) = Ipv4Repr::parse(&p) else { return };
    let parse = |b: &[u8]| Ipv4Repr::parse(&Ipv4Packet::new_checked(b).ok()?).ok();
    reparse(
        r,
        r.buffer_len(),
        p.payload(),
        |b| r.emit(&mut Ipv4Packet::new_unchecked(b)).unwrap(),
        parse,
    );
}

/// IPv6 fixed header.
pub fn ipv6(data: &[u8]) {
    let Ok(p) = Ipv6Packet::new_checked(data) else { return };
    let Ok(r) = Ipv6Repr::parse(&p) else { return };
    let _ = ipv6ext::walk(p.payload(), p.next_header());
    let parse = |b: &[u8]| Ipv6Repr::parse(&Ipv6Packet::new_checked(b).ok()?).ok();
    reparse(
        r,
        r.buffer_len(),
        p.payload(),
        |b| r.emit(&mut Ipv6Packet::new_unchecked(b)),
        parse,
    );
}

/// IPv6 extension headers: the first byte picks the chain's first header type.
pub fn ipv6_ext(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    if let Ok(w) = ipv6ext::walk(rest, IpProtocol::from(first)) {
        assert!(w.offset <= rest.len());
        assert!(usize::from(w.count) <= ipv6ext::MAX_EXT_HEADERS);
        // What names the fragment header: the first byte of the header before it, or
        // the fixed header (here: `first`).
        if w.fragment_end != 0 {
            let names = w.fragment_after.map_or(first, |at| rest[at]);
            assert_eq!(IpProtocol::from(names), IpProtocol::Ipv6Frag);
            assert!(w.fragment_after.is_none_or(|at| at + 8 <= w.fragment_end - 8));
        }
    }
    if let Ok(h) = Ipv6ExtHeader::new_checked(rest) {
        let r = Ipv6ExtRepr::parse(&h).unwrap();
        let mut out = vec![0u8; r.buffer_len()];
        r.emit(&mut out).unwrap();
        assert_eq!(&out[..], &rest[..h.header_len()]);
    }
    if let Ok(h) = Ipv6FragHeader::new_checked(rest) {
        let r = Ipv6FragRepr::parse(&h).unwrap();
        let parse = |b: &[u8]| Ipv6FragRepr::parse(&Ipv6FragHeader::new_checked(b).ok()?).ok();
        reparse(
            r,
            r.buffer_len(),
            &[],
            |b| r.emit(&mut Ipv6FragHeader::new_unchecked(b)),
            parse,
        );
    }
}

/// UDP (checksummed over a fixed IPv4 pseudo-header).
pub fn udp(data: &[u8]) {
    let Ok(p) = UdpPacket::new_checked(data) else { return };
    let Ok(r) = UdpRepr::parse(&p, V4.0, V4.1) else { return };
    let parse = |b: &[u8]| UdpRepr::parse(&UdpPacket::new_checked(b).ok()?, V4.0, V4.1).ok();
    let emit = |b: &mut [u8]| {
        let mut u = UdpPacket::new_unchecked(b);
        r.emit(&mut u, p.payload().len()).unwrap();
        u.fill_checksum(V4.0, V4.1);
    };
    reparse(r, r.buffer_len(), p.payload(), emit, parse);
}

/// TCP (checksummed over a fixed IPv4 pseudo-header).
pub fn tcp(data: &[u8]) {
    let Ok(p) = TcpPacket::new_checked(data) else { return };
    let Ok(r) = TcpRepr::parse(&p, V4.0, V4.1) else { return };
    let parse = |b: &[u8]| TcpRepr::parse(&TcpPacket::new_checked(b).ok()?, V4.0, V4.1).ok();
    let emit = |b: &mut [u8]| {
        let mut t = TcpPacket::new_unchecked(b);
        r.emit(&mut t);
        t.fill_checksum(V4.0, V4.1);
    };
    reparse(r, r.buffer_len(), p.payload(), emit, parse);
}

/// SCTP's common header: the view takes any 12 bytes or more; carried in an IPv4 packet,
/// the one-pass parse puts the view's ports in the flow key and its closing flags in the
/// headers, and refuses what the view refuses.
pub fn sctp(data: &[u8]) {
    let data = &data[..data.len().min(1400)];
    let ip = Ipv4Repr::new(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2), IpProtocol::Sctp);
    let eth = EthernetRepr {
        src: wire::ethernet::MacAddr([2, 0, 0, 0, 0, 1]),
        dst: wire::ethernet::MacAddr([2, 0, 0, 0, 0, 2]),
        ethertype: wire::ethernet::EtherType::Ipv4,
    };
    let frame = wire::compose::frame(
        &[wire::compose::Header::Ethernet(eth), wire::compose::Header::Ipv4(ip)],
        data,
    )
    .expect("an IPv4 packet of at most 1420 bytes");
    let parsed = parse(&frame);
    match SctpPacket::new_checked(data) {
        Ok(p) => {
            let outer = parsed.expect("a packet whose SCTP header the view reads").outer;
            assert_eq!((outer.key.src_port, outer.key.dst_port), (p.src_port(), p.dst_port()));
            assert_eq!(outer.tcp_flags, p.closing_flags());
            assert!(data.len() >= wire::sctp::HEADER_LEN);
        }
        Err(e) => {
            assert!(data.len() < wire::sctp::HEADER_LEN, "{e}");
            assert!(parsed.is_err(), "a packet too short for SCTP's header parsed");
        }
    }
}

/// ICMPv4.
pub fn icmpv4(data: &[u8]) {
    let Ok(p) = IcmpPacket::new_checked(data, Layer::Icmpv4) else {
        return;
    };
    let Ok(r) = Icmpv4Repr::parse(&p) else { return };
    let parse = |b: &[u8]| Icmpv4Repr::parse(&IcmpPacket::new_checked(b, Layer::Icmpv4).ok()?).ok();
    reparse(
        r,
        r.buffer_len(),
        p.payload(),
        |b| r.emit(&mut IcmpPacket::new_unchecked(b)),
        parse,
    );
}

/// ICMPv6 including neighbour discovery (link-local pseudo-header).
pub fn icmpv6(data: &[u8]) {
    let Ok(p) = IcmpPacket::new_checked(data, Layer::Icmpv6) else {
        return;
    };
    let Ok(r) = Icmpv6Repr::parse(&p, V6.0, V6.1) else {
        return;
    };
    let parse = |b: &[u8]| Icmpv6Repr::parse(&IcmpPacket::new_checked(b, Layer::Icmpv6).ok()?, V6.0, V6.1).ok();
    // ND messages re-emit only the options the repr keeps; other bodies ride along.
    let tail = if r.buffer_len() > wire::icmp::HEADER_LEN {
        &[][..]
    } else {
        p.payload()
    };
    reparse(
        r,
        r.buffer_len(),
        tail,
        |b| r.emit(&mut IcmpPacket::new_unchecked(b), V6.0, V6.1),
        parse,
    );
}

/// MPLS entries and stacks.
pub fn mpls(data: &[u8]) {
    if let Ok(s) = mpls::walk_stack(data) {
        assert!(s.payload_offset <= data.len() && usize::from(s.depth) <= mpls::MAX_STACK_DEPTH);
    }
    let Ok(e) = MplsEntry::new_checked(data) else { return };
    let r = MplsRepr::parse(&e).unwrap();
    let parse = |b: &[u8]| MplsRepr::parse(&MplsEntry::new_checked(b).ok()?).ok();
    reparse(
        r,
        r.buffer_len(),
        &[],
        |b| r.emit(&mut MplsEntry::new_unchecked(b)).unwrap(),
        parse,
    );
}

/// GRE.
pub fn gre(data: &[u8]) {
    let Ok(p) = GrePacket::new_checked(data) else { return };
    let Ok(r) = GreRepr::parse(&p) else { return };
    let parse = |b: &[u8]| GreRepr::parse(&GrePacket::new_checked(b).ok()?).ok();
    reparse(r, r.buffer_len(), p.payload(), |b| r.emit(b).unwrap(), parse);
}

/// VXLAN.
pub fn vxlan(data: &[u8]) {
    let Ok(p) = VxlanPacket::new_checked(data) else { return };
    let Ok(r) = VxlanRepr::parse(&p) else { return };
    let parse = |b: &[u8]| VxlanRepr::parse(&VxlanPacket::new_checked(b).ok()?).ok();
    reparse(r, r.buffer_len(), &[], |b| r.emit(b).unwrap(), parse);
}
