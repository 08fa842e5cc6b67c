//! The one-pass parse the forwarding pipeline runs once per packet.
//!
//! It walks Ethernet, up to two VLAN tags, IPv4 or IPv6 (extension headers included)
//! and the L4 header, and when the packet is a VXLAN (UDP 4789), MPLS-over-UDP (UDP 6635)
//! or GRE tunnel packet, the tunnel header and the inner packet the same way. It records
//! offsets, protocols, fragment state and the flow key in a [`PacketMeta`]; it does not
//! allocate and does not panic. It verifies IPv4 header checksums (cheap, and RFC 1812
//! requires it of routers) but not L4 checksums, which forwarding does not need.
//!
//! The common frame (untagged Ethernet; IPv4 without options, not fragmented, or IPv6
//! without extension headers; UDP, TCP or GRE) takes a straight-line fast path that
//! checks exactly what the general walk checks; any other frame, or one the fast path
//! doubts, goes the general way. A property test holds the two to the same answers.
//!
//! ```
//! use wire::parse::{parse, Tunnel};
//! # let frame = wire::compose::example_vxlan_frame();
//! let meta = parse(&frame).unwrap();
//! if let Tunnel::Vxlan { vni } = meta.tunnel {
//!     println!("VNI {vni}, inner flow {:?}", meta.inner.key);
//! }
//! ```

use crate::ethernet::{self, EtherType, EthernetFrame};
use crate::flow::{FAMILY_V4, FAMILY_V6, FlowKey};
use crate::gre::GrePacket;
use crate::icmp::IcmpPacket;
use crate::ip::{Fragment, IpProtocol};
use crate::ipv4::Ipv4Packet;
use crate::ipv6::{self, Ipv6Packet};
use crate::mpls::{self, MplsRepr};
use crate::sctp::{self, SctpPacket};
use crate::tcp::TcpPacket;
use crate::udp::{self, UdpPacket};
use crate::vlan::{self, VlanTag};
use crate::vxlan::{self, VxlanPacket};
use crate::{Error, Layer, Reason, Result, arp, icmpv4, icmpv6};

/// Offset meaning "this layer is absent".
pub const ABSENT: u16 = u16::MAX;
/// Most VLAN tags walked (an 802.1ad S-tag and an 802.1Q C-tag).
pub const MAX_VLAN_TAGS: u8 = 2;
/// Longest frame the parser accepts (offsets are 16-bit).
pub const MAX_FRAME_LEN: usize = ABSENT as usize - 1;

/// The network layer found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum L3 {
    /// Nothing parsed (yet).
    #[default]
    None,
    /// IPv4.
    Ipv4,
    /// IPv6.
    Ipv6,
    /// ARP.
    Arp,
    /// An EtherType this crate does not parse; see [`Headers::ethertype`].
    Other,
}

/// Offsets and fields of one packet (the outer one, or the one inside a tunnel).
/// Offsets are from the start of the frame; [`ABSENT`] marks a missing layer.
///
/// The field order is chosen (hence `repr(C)`): fields the fast path writes as constants
/// sit next to each other, so writing a parsed packet takes a few wide stores.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headers {
    /// The flow key (VRF 0).
    pub key: FlowKey,
    /// Ethernet header (absent for the IP packet inside MPLS or L3 GRE).
    pub l2: u16,
    /// Network header.
    pub l3: u16,
    /// Transport (or GRE, ICMP) header; absent for later fragments and non-IP.
    pub l4: u16,
    /// First byte after the L4 header.
    pub payload: u16,
    /// VLAN id of the outermost tag (0 if untagged).
    pub vlan_id: u16,
    /// Number of VLAN tags.
    pub vlans: u8,
    /// Network layer kind.
    pub l3_kind: L3,
    /// Fragment state.
    pub fragment: Fragment,
    /// TCP control bits FIN..CWR; for SCTP, RST when the first chunk is an ABORT and FIN
    /// when it is a SHUTDOWN COMPLETE, so that an association's end closes its flow as a
    /// connection's does (0 for other protocols).
    pub tcp_flags: u8,
    /// Upper-layer protocol (after IPv6 extension headers).
    pub l4_proto: IpProtocol,
    /// EtherType after any VLAN tags.
    pub ethertype: EtherType,
    /// End of the L4 payload (UDP length, else the IP packet's end).
    pub payload_end: u16,
    /// End of the IP packet (Ethernet padding lies beyond).
    pub l3_end: u16,
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
}

impl Default for Headers {
    fn default() -> Self {
        Headers {
            l2: ABSENT,
            l3: ABSENT,
            l4: ABSENT,
            payload: ABSENT,
            payload_end: ABSENT,
            l3_end: ABSENT,
            ethertype: EtherType::Unknown(0),
            vlan_id: 0,
            vlans: 0,
            l3_kind: L3::None,
            l4_proto: IpProtocol::Unknown(255),
            fragment: Fragment::Whole,
            tcp_flags: 0,
            ttl: 0,
            key: FlowKey::default(),
        }
    }
}

/// The tunnel a packet arrived in, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tunnel {
    /// Not a tunnel packet.
    #[default]
    None,
    /// VXLAN; the inner packet starts with Ethernet.
    Vxlan {
        /// VXLAN network identifier.
        vni: u32,
    },
    /// MPLS over UDP (RFC 7510); the inner packet starts with IP.
    MplsOverUdp {
        /// Top label stack entry.
        top: MplsRepr,
        /// Labels in the stack.
        depth: u8,
    },
    /// MPLS over GRE; the inner packet starts with IP.
    MplsOverGre {
        /// Top label stack entry.
        top: MplsRepr,
        /// Labels in the stack.
        depth: u8,
        /// GRE key, if present.
        key: Option<u32>,
    },
    /// GRE carrying IPv4, IPv6 or Ethernet (0x6558) directly.
    Gre {
        /// Payload protocol type.
        protocol: EtherType,
        /// GRE key, if present.
        key: Option<u32>,
    },
}

/// Everything the pipeline learns from one pass over a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PacketMeta {
    /// The packet as received.
    pub outer: Headers,
    /// The tunnel it came in, if any.
    pub tunnel: Tunnel,
    /// The packet inside the tunnel; meaningful only when `tunnel` is not `None`.
    pub inner: Headers,
}

impl PacketMeta {
    /// The headers forwarding acts on: the inner packet of a tunnel, else the outer.
    #[inline]
    pub fn innermost(&self) -> &Headers {
        if self.tunnel == Tunnel::None {
            &self.outer
        } else {
            &self.inner
        }
    }

    /// [`innermost`](Self::innermost), to change (the pipeline sets the flow key's VRF).
    #[inline]
    pub fn innermost_mut(&mut self) -> &mut Headers {
        if self.tunnel == Tunnel::None {
            &mut self.outer
        } else {
            &mut self.inner
        }
    }

    /// Decapsulation without a second parse: the inner packet becomes the packet, in a
    /// frame that now starts `start` bytes into the old one with an Ethernet header:
    /// VXLAN's own inner one, or for an IP payload one the caller wrote in the 14 bytes
    /// before the IP header. Offsets move by `start`; the result equals a parse of the new
    /// frame, except that a tunnel inside the inner packet stays a plain packet here.
    ///
    /// Returns `false` and changes nothing if there is no tunnel or `start` is not where
    /// that header begins.
    #[must_use]
    pub fn decapsulate(&mut self, start: u16) -> bool {
        let h = &self.inner;
        let header = if h.l2 == ABSENT {
            h.l3.checked_sub(ethernet::HEADER_LEN as u16)
        } else {
            Some(h.l2)
        };
        if self.tunnel == Tunnel::None || header != Some(start) {
            return false;
        }
        let mut h = *h;
        if h.l2 == ABSENT {
            h.ethertype = if h.l3_kind == L3::Ipv6 {
                EtherType::Ipv6
            } else {
                EtherType::Ipv4
            };
        }
        for o in [&mut h.l3, &mut h.l4, &mut h.payload, &mut h.payload_end, &mut h.l3_end] {
            if *o != ABSENT {
                *o -= start;
            }
        }
        h.l2 = 0;
        self.outer = h;
        self.tunnel = Tunnel::None;
        true
    }
}

/// Parses an Ethernet frame in one pass. See the [module docs](self).
#[inline]
pub fn parse(frame: &[u8]) -> Result<PacketMeta> {
    let mut meta = PacketMeta::default();
    parse_into(frame, &mut meta)?;
    Ok(meta)
}

/// Parses an Ethernet frame into `meta`, overwriting it. This is the hot-path form: the
/// pipeline keeps one `PacketMeta` per burst slot, so nothing is copied. `meta.inner` is
/// only written when a tunnel is found.
///
/// Inlined into the caller is only the fast path's straight line for a plain frame;
/// tunnels and every other frame continue out of line.
#[inline(always)]
pub fn parse_into(frame: &[u8], meta: &mut PacketMeta) -> Result<()> {
    if (FAST_FIXED + ethernet::HEADER_LEN..=MAX_FRAME_LEN).contains(&frame.len())
        && let Some(tunnel) = fast_ethernet(frame, 0, &mut meta.outer)
    {
        meta.tunnel = Tunnel::None;
        return if tunnel {
            parse_tunnel(frame, meta, true)
        } else {
            Ok(())
        };
    }
    parse_walk(frame, meta, true)
}

/// [`parse`] without the fast path: every layer, inner packets too, takes the general
/// walk. The reference the fast path is held to (a property test and the `packet` fuzz
/// target compare the two); slower, not for the hot path.
///
/// ```
/// use wire::parse::{parse, parse_general};
/// # let frame = wire::compose::example_vxlan_frame();
/// assert_eq!(parse(&frame), parse_general(&frame));
/// ```
pub fn parse_general(frame: &[u8]) -> Result<PacketMeta> {
    let mut meta = PacketMeta::default();
    parse_walk(frame, &mut meta, false)?;
    Ok(meta)
}

/// The general walk of the outer packet; `fast`: inner packets may take the fast path.
#[inline(never)]
fn parse_walk(frame: &[u8], meta: &mut PacketMeta, fast: bool) -> Result<()> {
    if frame.len() > MAX_FRAME_LEN {
        return Err(Error::unsupported(Layer::Ethernet, "length"));
    }
    meta.tunnel = Tunnel::None;
    meta.outer = Headers::default();
    parse_ethernet(frame, 0, &mut meta.outer)?;
    parse_tunnel(frame, meta, fast)
}

/// Bytes from the IPv4 header on that the fast path reads before it looks at lengths: an
/// option-less header and the first 8 bytes of UDP, TCP or GRE. A frame too short to hold
/// them goes the general way (real frames are at least 60 bytes).
const FAST_FIXED: usize = 28;

/// The fast path for untagged Ethernet + IPv4 or IPv6 at `at`: fills `h` and says
/// whether the packet may be a tunnel (GRE, or UDP to the VXLAN or MPLS port), or leaves
/// `h` alone and says `None` for anything else.
#[inline(always)]
fn fast_ethernet(buf: &[u8], at: usize, h: &mut Headers) -> Option<bool> {
    let l3 = at + ethernet::HEADER_LEN;
    let fixed: &[u8; ethernet::HEADER_LEN + FAST_FIXED] = buf.get(at..l3 + FAST_FIXED)?.try_into().ok()?;
    let (eth, ip) = fixed.split_first_chunk::<{ ethernet::HEADER_LEN }>()?;
    // Compared as stored (little-endian loads): one load and compare each.
    let ethertype = u16::from_le_bytes([eth[12], eth[13]]);
    if ethertype == u16::from_le_bytes([0x08, 0x00]) {
        fast_ipv4(buf, (off16(at), EtherType::Ipv4), l3, ip.try_into().ok()?, h)
    } else if ethertype == u16::from_le_bytes([0x86, 0xdd]) {
        fast_ipv6(buf, (off16(at), EtherType::Ipv6), l3, h)
    } else {
        std::hint::cold_path();
        None
    }
}

/// [`fast_ethernet`] for an IPv4 packet at `l3` (inside MPLS; IPv6 there takes the
/// general walk); whether it may be a tunnel does not matter there (a tunnel inside a
/// tunnel stays a plain packet).
#[inline(always)]
fn fast_ip(buf: &[u8], l3: usize, h: &mut Headers) -> bool {
    let fixed = buf.get(l3..l3 + FAST_FIXED).and_then(|b| b.try_into().ok());
    let link = (ABSENT, EtherType::Unknown(0));
    fixed.and_then(|f| fast_ipv4(buf, link, l3, f, h)).is_some()
}

/// The fast path for IPv4 without options, not fragmented, carrying UDP, TCP or GRE, at
/// `l3` (`fixed`: its header and the next 8 bytes; `link`: the Ethernet header's offset
/// and EtherType, or none): the same checks as the general walk (lengths, header
/// checksum, UDP length, TCP data offset, GRE flags and optional fields), in a straight
/// line, then fills `h` and says whether the packet may be a tunnel. `None` (with `h`
/// untouched) sends the packet the general way, which also names any error.
#[inline(always)]
fn fast_ipv4(buf: &[u8], link: (u16, EtherType), l3: usize, fixed: &[u8; FAST_FIXED], h: &mut Headers) -> Option<bool> {
    let (ip, l4_start) = fixed.split_first_chunk::<20>()?;
    let l4_start: &[u8; 8] = l4_start.try_into().ok()?;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let l4 = l3 + 20;
    // Version 4 with a 20-byte header; whole (no offset, no more-fragments); a total
    // length of at least the header and within the frame: one unsigned comparison (a
    // total below 20 wraps to far more than the frame holds after the header; the caller
    // has checked that the frame holds `fixed`).
    let seg_len = total.wrapping_sub(20);
    if seg_len > buf.len().wrapping_sub(l4) {
        return None;
    }
    // From the L4 length, as the L4 checks use it: one value fewer to keep.
    let end = l4 + seg_len;
    // Version and IHL (byte 0) and the fragment offset and more-fragments flag (the low
    // 14 bits of bytes 6-7) in one masked comparison of the header's first eight bytes.
    let first = u64::from_le_bytes(*ip.first_chunk::<8>()?);
    if first & 0xff3f_0000_0000_00ff != 0x45 {
        return None;
    }
    if !(cfg!(fuzzing) || crate::checksum::ipv4_header_valid(ip)) {
        return None;
    }
    let at = FastIp {
        link,
        header: ip,
        l3_kind: L3::Ipv4,
        span: (l3, l4, end),
    };
    fast_l4(buf, ip[9], l4_start, &at, h)
}

/// The fast path for IPv6 at `l3` with UDP, TCP or GRE right after the fixed header (no
/// extension headers): as [`fast_ipv4`], with the general walk's IPv6 checks.
#[inline(always)]
fn fast_ipv6(buf: &[u8], link: (u16, EtherType), l3: usize, h: &mut Headers) -> Option<bool> {
    let fixed: &[u8; ipv6::HEADER_LEN + 8] = buf.get(l3..l3 + ipv6::HEADER_LEN + 8)?.try_into().ok()?;
    let (ip, l4_start) = fixed.split_first_chunk::<{ ipv6::HEADER_LEN }>()?;
    let payload_len = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    let l4 = l3 + ipv6::HEADER_LEN;
    // Version 6; the payload within the frame (which holds `fixed`, so no underflow).
    if ip[0] >> 4 != 6 || payload_len > buf.len() - l4 {
        return None;
    }
    let at = FastIp {
        link,
        header: ip,
        l3_kind: L3::Ipv6,
        span: (l3, l4, l4 + payload_len),
    };
    fast_l4(buf, ip[6], l4_start.try_into().ok()?, &at, h)
}

/// What the fast path knows once past the IP header.
struct FastIp<'a> {
    /// The Ethernet header's offset and the EtherType, or none.
    link: (u16, EtherType),
    /// The IP header: 20 bytes for IPv4, 40 for IPv6.
    header: &'a [u8],
    l3_kind: L3,
    /// The IP header, the L4 header and the IP packet's end.
    span: (usize, usize, usize),
}

impl FastIp<'_> {
    /// The flow key with `ports` (source in the low half). Read from the header where
    /// it is written, not carried from the checks before (fewer values live at once).
    #[inline(always)]
    fn key(&self, ports: u32) -> FlowKey {
        let h = self.header;
        let ports = u64::from(ports);
        if self.l3_kind == L3::Ipv4 {
            let word = |at: usize| u64::from(u32::from_le_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]));
            let last = u64::from(h[9]) | u64::from(FAMILY_V4) << 8;
            FlowKey::from_words([word(12), 0, word(16), 0, ports, last])
        } else {
            let word = |at: usize| u64::from_le_bytes(h[at..at + 8].try_into().unwrap_or_default());
            let last = u64::from(h[6]) | u64::from(FAMILY_V6) << 8;
            FlowKey::from_words([word(8), word(16), word(24), word(32), ports, last])
        }
    }

    /// TTL or hop limit.
    #[inline(always)]
    fn ttl(&self) -> u8 {
        self.header[if self.l3_kind == L3::Ipv4 { 8 } else { 7 }]
    }
}

/// The fast path's L4 step for IP protocol `proto` (`first`: the first 8 bytes of its
/// header): UDP, TCP or GRE with the general walk's checks (UDP length, TCP data offset,
/// GRE flags and optional fields); fills `h` and says whether the packet may be a tunnel
/// (GRE, or UDP to the VXLAN or MPLS port). Each protocol's branch writes the headers in
/// full, so no value is carried through a merge of the branches (where the compiler would
/// keep some on the stack).
#[inline(always)]
fn fast_l4(buf: &[u8], proto: u8, first: &[u8; 8], ip: &FastIp, h: &mut Headers) -> Option<bool> {
    let (_, l4, end) = ip.span;
    // The caller has checked that l4 <= end <= buf.len().
    let seg_len = end - l4;
    // Both ports as the flow key's word holds them (source in the low half): a
    // big-endian load, then the halves swapped.
    let [a, b, c, d, ..] = *first;
    let ports = u32::from_be_bytes([a, b, c, d]).rotate_left(16);
    // UDP and TCP first, in that order; GRE is the rarer case.
    if proto == 17 {
        // A UDP length of at least its header and within the IP packet (which so holds
        // the header).
        let len = usize::from(u16::from_be_bytes([first[4], first[5]]));
        if !(udp::HEADER_LEN..=seg_len).contains(&len) {
            return None;
        }
        *h = fast_headers(ip, IpProtocol::Udp, (l4 + udp::HEADER_LEN, l4 + len), 0, ports);
        Some(matches!((ports >> 16) as u16, udp::PORT_VXLAN | udp::PORT_MPLS))
    } else if proto == 6 {
        let seg = buf.get(l4..end)?;
        if seg.len() < 20 {
            return None;
        }
        let header = usize::from(seg[12] >> 4) * 4;
        if header < 20 || header > seg.len() {
            return None;
        }
        *h = fast_headers(ip, IpProtocol::Tcp, (l4 + header, end), seg[13], ports);
        Some(false)
    } else if proto == 47 {
        std::hint::cold_path();
        let header = gre_header_len(buf.get(l4..end)?)?;
        *h = fast_headers(ip, IpProtocol::Gre, (l4 + header, end), 0, 0);
        Some(true)
    } else {
        std::hint::cold_path();
        None
    }
}

/// The headers the fast path found: `payload` is where the L4 payload starts and ends,
/// `ports` the flow key's port word.
#[inline(always)]
fn fast_headers(ip: &FastIp, l4_proto: IpProtocol, payload: (usize, usize), tcp_flags: u8, ports: u32) -> Headers {
    Headers {
        key: ip.key(ports),
        l2: ip.link.0,
        l3: off16(ip.span.0),
        l4: off16(ip.span.1),
        payload: off16(payload.0),
        payload_end: off16(payload.1),
        l3_end: off16(ip.span.2),
        vlan_id: 0,
        vlans: 0,
        l3_kind: ip.l3_kind,
        fragment: Fragment::Whole,
        tcp_flags,
        ttl: ip.ttl(),
        l4_proto,
        ethertype: ip.link.1,
    }
}

/// The length of the GRE header at the start of `seg` if its flags are ones we parse
/// and it fits; out of line, as GRE is the rarer case.
#[inline(never)]
fn gre_header_len(seg: &[u8]) -> Option<usize> {
    let g = GrePacket::new_checked(seg).ok()?;
    g.check_reserved().ok()?;
    Some(g.header_len())
}

/// Parses a packet that starts at the IP header (a TAP frame, a decapsulated payload).
pub fn parse_ip(packet: &[u8]) -> Result<Headers> {
    if packet.len() > MAX_FRAME_LEN {
        return Err(Error::unsupported(Layer::Ipv4, "length"));
    }
    let mut h = Headers::default();
    parse_ip_at(packet, 0, &mut h, Layer::Mpls, "payload")?;
    Ok(h)
}

#[inline]
fn off16(x: usize) -> u16 {
    // Every offset is bounded by the frame length, checked against MAX_FRAME_LEN.
    x as u16
}

#[inline]
fn parse_ethernet(buf: &[u8], at: usize, h: &mut Headers) -> Result<()> {
    let eth = EthernetFrame::new_checked(&buf[at..])?;
    h.l2 = off16(at);
    let mut ethertype = eth.ethertype();
    let mut off = at + ethernet::HEADER_LEN;
    while matches!(ethertype, EtherType::Vlan | EtherType::QinQ) {
        if h.vlans == MAX_VLAN_TAGS {
            return Err(Error::new(Layer::Vlan, "tpid", Reason::TooDeep));
        }
        let tag = VlanTag::new_checked(&buf[off..])?;
        if h.vlans == 0 {
            h.vlan_id = tag.vid();
        }
        h.vlans += 1;
        ethertype = tag.ethertype();
        off += vlan::HEADER_LEN;
    }
    h.ethertype = ethertype;
    match ethertype {
        EtherType::Ipv4 => parse_ipv4(buf, off, h),
        EtherType::Ipv6 => parse_ipv6(buf, off, h),
        EtherType::Arp => {
            arp::ArpPacket::new_checked(&buf[off..])?;
            h.l3 = off16(off);
            h.l3_end = off16(off + arp::HEADER_LEN);
            h.l3_kind = L3::Arp;
            Ok(())
        }
        _ => {
            h.l3 = off16(off);
            h.l3_kind = L3::Other;
            Ok(())
        }
    }
}

/// Dispatches on the IP version nibble (MPLS and L3 GRE payloads carry no EtherType).
#[inline]
fn parse_ip_at(buf: &[u8], at: usize, h: &mut Headers, layer: Layer, field: &'static str) -> Result<()> {
    match buf.get(at).map(|b| b >> 4) {
        Some(4) => parse_ipv4(buf, at, h),
        Some(6) => parse_ipv6(buf, at, h),
        Some(_) => Err(Error::unsupported(layer, field)),
        None => Err(Error::truncated(layer, field)),
    }
}

#[inline]
fn parse_ipv4(buf: &[u8], at: usize, h: &mut Headers) -> Result<()> {
    let p = Ipv4Packet::new_checked(&buf[at..])?;
    if p.version() != 4 {
        return Err(Error::invalid(Layer::Ipv4, "version"));
    }
    if !p.verify_checksum() {
        return Err(Error::new(Layer::Ipv4, "checksum", Reason::Checksum));
    }
    h.l3 = off16(at);
    h.l3_kind = L3::Ipv4;
    h.ttl = p.ttl();
    let end = at + usize::from(p.total_len());
    h.l3_end = off16(end);
    let proto = p.protocol();
    h.key = FlowKey::v4(p.src_addr(), p.dst_addr(), proto.into(), 0, 0);
    h.fragment = Fragment::from_fields(p.frag_offset(), p.more_frags());
    h.l4_proto = proto;
    if h.fragment == Fragment::Later {
        return Ok(());
    }
    parse_l4(&buf[..end], at + p.header_len(), h)
}

#[inline]
fn parse_ipv6(buf: &[u8], at: usize, h: &mut Headers) -> Result<()> {
    let p = Ipv6Packet::new_checked(&buf[at..])?;
    if p.version() != 6 {
        return Err(Error::invalid(Layer::Ipv6, "version"));
    }
    let walk = crate::ipv6ext::walk(p.payload(), p.next_header())?;
    h.l3 = off16(at);
    h.l3_kind = L3::Ipv6;
    h.ttl = p.hop_limit();
    let end = at + ipv6::HEADER_LEN + usize::from(p.payload_len());
    h.l3_end = off16(end);
    h.key = FlowKey::v6(p.src_addr(), p.dst_addr(), walk.protocol.into(), 0, 0);
    h.fragment = walk.fragment;
    h.l4_proto = walk.protocol;
    if h.fragment == Fragment::Later {
        return Ok(());
    }
    parse_l4(&buf[..end], at + ipv6::HEADER_LEN + walk.offset, h)
}

/// `buf` ends where the IP packet ends.
#[inline]
fn parse_l4(buf: &[u8], at: usize, h: &mut Headers) -> Result<()> {
    let seg = &buf[at..];
    h.l4 = off16(at);
    h.payload_end = off16(buf.len());
    let (hl, sport, dport) = match (h.l4_proto, h.l3_kind) {
        // A first fragment holds the start of the datagram only: its UDP length counts
        // the bytes of the later fragments too.
        (IpProtocol::Udp, _) if h.fragment == Fragment::First => {
            let u = UdpPacket::new_checked_header(seg)?;
            (udp::HEADER_LEN, u.src_port(), u.dst_port())
        }
        (IpProtocol::Udp, _) => {
            let u = UdpPacket::new_checked(seg)?;
            h.payload_end = off16(at + usize::from(u.len()));
            (udp::HEADER_LEN, u.src_port(), u.dst_port())
        }
        (IpProtocol::Tcp, _) => {
            let t = TcpPacket::new_checked(seg)?;
            h.tcp_flags = t.flags().0 as u8;
            (t.header_len(), t.src_port(), t.dst_port())
        }
        (IpProtocol::Icmp, L3::Ipv4) => {
            let i = IcmpPacket::new_checked(seg, Layer::Icmpv4)?;
            let echo = matches!(i.msg_type(), icmpv4::TYPE_ECHO_REQUEST | icmpv4::TYPE_ECHO_REPLY);
            let id = if echo { i.echo_ident() } else { 0 };
            (crate::icmp::HEADER_LEN, id, id)
        }
        (IpProtocol::Icmpv6, L3::Ipv6) => {
            let i = IcmpPacket::new_checked(seg, Layer::Icmpv6)?;
            let echo = matches!(i.msg_type(), icmpv6::TYPE_ECHO_REQUEST | icmpv6::TYPE_ECHO_REPLY);
            let id = if echo { i.echo_ident() } else { 0 };
            (crate::icmp::HEADER_LEN, id, id)
        }
        (IpProtocol::Gre, _) => {
            let g = GrePacket::new_checked(seg)?;
            g.check_reserved()?;
            (g.header_len(), 0, 0)
        }
        (IpProtocol::Sctp, _) => {
            let s = SctpPacket::new_checked(seg)?;
            h.tcp_flags = s.closing_flags();
            (sctp::HEADER_LEN, s.src_port(), s.dst_port())
        }
        _ => (0, 0, 0),
    };
    h.payload = off16(at + hl);
    h.key.src_port = sport;
    h.key.dst_port = dport;
    Ok(())
}

#[inline(never)]
fn parse_tunnel(buf: &[u8], meta: &mut PacketMeta, fast: bool) -> Result<()> {
    let o = &meta.outer;
    // A fragment of a tunnel packet is no tunnel until it is reassembled.
    if o.l4 == ABSENT || o.fragment != Fragment::Whole {
        return Ok(());
    }
    let (l4, start, end) = (usize::from(o.l4), usize::from(o.payload), usize::from(o.payload_end));
    let (proto, dst_port) = (o.l4_proto, o.key.dst_port);
    let body = &buf[..end];
    let inner = &mut meta.inner;
    let tunnel = match proto {
        IpProtocol::Udp if dst_port == udp::PORT_VXLAN => {
            let v = VxlanPacket::new_checked(&body[start..])?;
            let r = crate::vxlan::VxlanRepr::parse(&v)?;
            let at = start + vxlan::HEADER_LEN;
            if !(fast && fast_ethernet(body, at, inner).is_some()) {
                *inner = Headers::default();
                parse_ethernet(body, at, inner).map_err(Error::into_inner)?;
            }
            Tunnel::Vxlan { vni: r.vni }
        }
        IpProtocol::Udp if dst_port == udp::PORT_MPLS => {
            let s = mpls::walk_stack(&body[start..])?;
            let at = start + s.payload_offset;
            if !(fast && fast_ip(body, at, inner)) {
                *inner = Headers::default();
                parse_ip_at(body, at, inner, Layer::Mpls, "payload").map_err(Error::into_inner)?;
            }
            Tunnel::MplsOverUdp {
                top: s.top,
                depth: s.depth,
            }
        }
        IpProtocol::Gre => {
            let g = GrePacket::new_unchecked(&body[l4..]);
            if !g.verify_checksum() {
                return Err(Error::new(Layer::Gre, "checksum", Reason::Checksum));
            }
            let key = g.key();
            // Each branch resets `inner` only where the general walk fills it (the fast
            // path writes all of it).
            match g.protocol() {
                EtherType::MplsUnicast => {
                    let s = mpls::walk_stack(&body[start..])?;
                    let at = start + s.payload_offset;
                    if !(fast && fast_ip(body, at, inner)) {
                        *inner = Headers::default();
                        parse_ip_at(body, at, inner, Layer::Mpls, "payload").map_err(Error::into_inner)?;
                    }
                    Tunnel::MplsOverGre {
                        top: s.top,
                        depth: s.depth,
                        key,
                    }
                }
                p @ EtherType::Ipv4 => {
                    if !(fast && fast_ip(body, start, inner)) {
                        *inner = Headers::default();
                        parse_ipv4(body, start, inner).map_err(Error::into_inner)?;
                    }
                    Tunnel::Gre { protocol: p, key }
                }
                p @ EtherType::Ipv6 => {
                    *inner = Headers::default();
                    parse_ipv6(body, start, inner).map_err(Error::into_inner)?;
                    Tunnel::Gre { protocol: p, key }
                }
                p @ EtherType::TransparentEthernet => {
                    if !(fast && fast_ethernet(body, start, inner).is_some()) {
                        *inner = Headers::default();
                        parse_ethernet(body, start, inner).map_err(Error::into_inner)?;
                    }
                    Tunnel::Gre { protocol: p, key }
                }
                _ => {
                    *inner = Headers::default();
                    return Ok(());
                }
            }
        }
        _ => return Ok(()),
    };
    meta.tunnel = tunnel;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::{self, Header};
    use crate::ethernet::{EthernetRepr, MacAddr};
    use crate::ipv4::Ipv4Repr;
    use crate::udp::UdpRepr;
    use std::net::Ipv4Addr;

    fn eth() -> Header<'static> {
        Header::Ethernet(EthernetRepr {
            src: MacAddr([2, 0, 0, 0, 0, 1]),
            dst: MacAddr([2, 0, 0, 0, 0, 2]),
            ethertype: EtherType::Ipv4,
        })
    }

    fn ip(src: [u8; 4], dst: [u8; 4]) -> Header<'static> {
        Header::Ipv4(Ipv4Repr::new(src.into(), dst.into(), IpProtocol::Udp))
    }

    #[test]
    fn vxlan_outer_and_inner() {
        let frame = compose::frame(
            &[
                eth(),
                ip([192, 0, 2, 1], [192, 0, 2, 2]),
                Header::Udp(UdpRepr {
                    src_port: 49152,
                    dst_port: 4789,
                }),
                Header::Vxlan(crate::vxlan::VxlanRepr { vni: 5001 }),
                eth(),
                ip([10, 0, 0, 1], [10, 0, 0, 2]),
                Header::Udp(UdpRepr {
                    src_port: 1111,
                    dst_port: 2222,
                }),
            ],
            b"payload",
        )
        .unwrap();
        let m = parse(&frame).unwrap();
        assert_eq!(m.tunnel, Tunnel::Vxlan { vni: 5001 });
        assert_eq!((m.outer.l2, m.outer.l3, m.outer.l4, m.outer.payload), (0, 14, 34, 42));
        assert_eq!((m.inner.l2, m.inner.l3, m.inner.l4, m.inner.payload), (50, 64, 84, 92));
        assert_eq!(
            m.inner.key,
            FlowKey::v4(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2), 17, 1111, 2222)
        );
        assert_eq!(usize::from(m.inner.payload_end), frame.len());
        assert_eq!(m.innermost(), &m.inner);
    }

    #[test]
    fn inner_errors_are_marked_inner() {
        let mut frame = compose::example_vxlan_frame();
        let inner_ihl = 50 + 14;
        frame[inner_ihl] = 0x44;
        let e = parse(&frame).unwrap_err();
        assert!(e.inner);
        assert_eq!((e.layer, e.field), (Layer::Ipv4, "ihl"));
    }

    #[test]
    fn never_panics_on_any_prefix() {
        let frame = compose::example_vxlan_frame();
        for len in 0..frame.len() {
            assert!(parse(&frame[..len]).is_err(), "prefix {len}");
        }
    }

    #[test]
    fn too_many_vlan_tags() {
        let mut f = vec![0u8; 12];
        for _ in 0..3 {
            f.extend_from_slice(&[0x81, 0x00, 0, 1]);
        }
        f.extend_from_slice(&[0x08, 0x00]);
        f.resize(80, 0);
        let e = parse(&f).unwrap_err();
        assert_eq!((e.layer, e.reason), (Layer::Vlan, Reason::TooDeep));
    }

    /// A small deterministic generator of near-valid frames: IPv4 or IPv6 with UDP, TCP
    /// or something else, lengths, flags and checksums mostly right and sometimes wrong,
    /// UDP sometimes to the VXLAN or MPLS port with an inner packet built the same way.
    struct Gen(u64);

    /// The EtherType of an IP packet, by its version nibble (IPv4 for anything else).
    fn ethertype_of(packet: &[u8]) -> [u8; 2] {
        if packet.first().is_some_and(|b| b >> 4 == 6) {
            [0x86, 0xdd]
        } else {
            [0x08, 0x00]
        }
    }

    impl Gen {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 33
        }
        fn pick<T: Copy>(&mut self, from: &[T]) -> T {
            from[self.next() as usize % from.len()]
        }
        fn chance(&mut self, one_in: u64) -> bool {
            self.next().is_multiple_of(one_in)
        }

        fn ip_packet(&mut self, depth: u8) -> Vec<u8> {
            let proto = self.pick(&[17u8, 17, 17, 6, 6, 1, 47]);
            let mut l4 = Vec::new();
            let payload_len = self.next() as usize % 40;
            match proto {
                17 => {
                    let dport = if depth == 0 {
                        self.pick(&[53u16, 4789, 6635, 9])
                    } else {
                        53
                    };
                    let inner = match dport {
                        4789 => {
                            let mut v = vec![0x08, 0, 0, 0, 0, 0x13, 0x89, 0];
                            v.extend_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
                            let inner = self.ip_packet(depth + 1);
                            v.extend_from_slice(&ethertype_of(&inner));
                            v.extend(inner);
                            v
                        }
                        6635 => {
                            let mut v = vec![0x00, 0x06, 0x41, 0x40];
                            v.extend(self.ip_packet(depth + 1));
                            v
                        }
                        _ => (0..payload_len).map(|_| self.next() as u8).collect(),
                    };
                    let len = (8 + inner.len()) as i64
                        + if self.chance(8) {
                            self.pick(&[-1i64, 1, -8, 100])
                        } else {
                            0
                        };
                    l4.extend_from_slice(&(self.next() as u16).to_be_bytes());
                    l4.extend_from_slice(&dport.to_be_bytes());
                    l4.extend_from_slice(&(len.clamp(0, 65535) as u16).to_be_bytes());
                    l4.extend_from_slice(&[0, 0]);
                    l4.extend(inner);
                }
                6 => {
                    let doff = if self.chance(8) {
                        self.pick(&[15u8, 4, 0])
                    } else {
                        self.pick(&[5u8, 6])
                    };
                    l4.extend((0..12).map(|_| self.next() as u8));
                    l4.push(doff << 4 | (self.next() as u8 & 1));
                    l4.push(self.next() as u8);
                    l4.extend((0..6).map(|_| self.next() as u8));
                    l4.extend((0..payload_len).map(|_| self.next() as u8));
                }
                47 if depth == 0 => {
                    // GRE: checksum / key / sequence flags, MPLS or IPv4 inside.
                    let flags = if self.chance(8) {
                        self.next() as u8
                    } else {
                        self.pick(&[0u8, 0x20, 0x30, 0x10])
                    };
                    // MPLS, Ethernet (0x6558) or IP inside.
                    let (mpls, ethernet) = match self.next() % 4 {
                        0 | 1 => (true, false),
                        2 => (false, true),
                        _ => (false, false),
                    };
                    // The second byte: reserved bits and the version, now and then not 0.
                    let low = if self.chance(8) { self.next() as u8 } else { 0 };
                    let mut inner = self.ip_packet(depth + 1);
                    l4.extend_from_slice(&[flags, low]);
                    l4.extend_from_slice(&if mpls {
                        [0x88, 0x47]
                    } else if ethernet {
                        let mut frame = vec![2, 0, 0, 0, 0, 4, 2, 0, 0, 0, 0, 3];
                        frame.extend_from_slice(&ethertype_of(&inner));
                        frame.append(&mut inner);
                        inner = frame;
                        [0x65, 0x58]
                    } else {
                        ethertype_of(&inner)
                    });
                    for bit in [0x20u8, 0x10] {
                        if flags & bit != 0 {
                            l4.extend((0..4).map(|_| self.next() as u8));
                        }
                    }
                    if mpls {
                        l4.extend_from_slice(&[0x00, 0x06, 0x41, 0x40]);
                    }
                    l4.extend(inner);
                }
                _ => l4.extend((0..8 + payload_len).map(|_| self.next() as u8)),
            }
            if self.chance(3) {
                return self.ipv6_header(proto, l4);
            }
            let total = (20 + l4.len()) as i64 + if self.chance(8) { self.pick(&[-1i64, 1, -30]) } else { 0 };
            let mut ip = vec![
                if self.chance(10) {
                    self.pick(&[0x46u8, 0x44, 0x65])
                } else {
                    0x45
                },
                0,
            ];
            ip.extend_from_slice(&(total.clamp(0, 65535) as u16).to_be_bytes());
            ip.extend_from_slice(&[0x12, 0x34]);
            let flags = if self.chance(8) {
                self.pick(&[0x2000u16, 0x0001, 0x8000])
            } else {
                self.pick(&[0, 0x4000])
            };
            ip.extend_from_slice(&flags.to_be_bytes());
            ip.extend_from_slice(&[self.next() as u8, proto, 0, 0]);
            ip.extend((0..8).map(|_| self.next() as u8));
            let c = crate::checksum::checksum(&ip);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            if self.chance(12) {
                ip[11] ^= 1;
            }
            ip.extend(l4);
            if self.chance(12) {
                let cut = self.next() as usize % ip.len();
                ip.truncate(cut);
            }
            ip
        }

        /// An IPv6 header in front of `l4` (protocol `proto`, ICMP as ICMPv6): lengths
        /// mostly right, now and then a version that is not 6 or a hop-by-hop options
        /// header first (which the fast path leaves to the general walk).
        fn ipv6_header(&mut self, proto: u8, mut l4: Vec<u8>) -> Vec<u8> {
            let mut next = if proto == 1 { 58 } else { proto };
            if self.chance(8) {
                let mut hop_by_hop = vec![next, 0, 1, 4, 0, 0, 0, 0];
                hop_by_hop.extend(l4);
                (l4, next) = (hop_by_hop, 0);
            }
            let len = l4.len() as i64 + if self.chance(8) { self.pick(&[-1i64, 1, -8]) } else { 0 };
            let version = if self.chance(10) { 0x40 } else { 0x60 };
            let mut ip = vec![version, 0, 0, 0];
            ip.extend_from_slice(&(len.clamp(0, 65535) as u16).to_be_bytes());
            ip.extend_from_slice(&[next, self.next() as u8]);
            ip.extend((0..32).map(|_| self.next() as u8));
            ip.extend(l4);
            if self.chance(12) {
                let cut = self.next() as usize % ip.len();
                ip.truncate(cut);
            }
            ip
        }

        fn frame(&mut self) -> Vec<u8> {
            let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
            let packet = self.ip_packet(0);
            f.extend_from_slice(&if self.chance(10) {
                self.pick(&[[0x86u8, 0xdd], [0x08, 0x00], [0x81, 0x00]])
            } else {
                ethertype_of(&packet)
            });
            f.extend(packet);
            if self.chance(4) {
                f.resize(f.len() + 6, 0); // Ethernet padding
            }
            f
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(20_000))]
        /// The fast path answers exactly as the general walk: the same metadata when both
        /// parse, the same error when the frame is bad.
        #[test]
        fn the_fast_path_agrees_with_the_general_walk(seed in proptest::prelude::any::<u64>()) {
            let frame = Gen(seed).frame();
            proptest::prop_assert_eq!(parse(&frame), parse_general(&frame));
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(20_000))]
        /// Decapsulating the parsed metadata gives what parsing the decapsulated frame
        /// gives (an Ethernet header written in front of an IP payload, as the pipeline
        /// does), unless that frame is itself a tunnel packet (parsed as one, it would be
        /// checked deeper than the first parse went).
        #[test]
        fn decapsulate_agrees_with_parsing_the_inner_frame(seed in proptest::prelude::any::<u64>()) {
            let frame = Gen(seed).frame();
            let Ok(mut meta) = parse(&frame) else { return Ok(()) };
            let i = &meta.inner;
            let nested = i.l4_proto == IpProtocol::Gre
                || (i.l4_proto == IpProtocol::Udp && matches!(i.key.dst_port, udp::PORT_VXLAN | udp::PORT_MPLS));
            if meta.tunnel == Tunnel::None || nested {
                return Ok(());
            }
            let (start, mut inner) = if meta.inner.l2 == ABSENT {
                let start = meta.inner.l3 - 14;
                let ethertype = if meta.inner.l3_kind == L3::Ipv6 { [0x86, 0xdd] } else { [0x08, 0x00] };
                let mut f = vec![2, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0];
                f.extend_from_slice(&ethertype);
                (start, f)
            } else {
                (meta.inner.l2, Vec::new())
            };
            inner.extend_from_slice(&frame[usize::from(start) + inner.len()..usize::from(meta.outer.l3_end)]);
            let want = parse(&inner);
            proptest::prop_assert!(want.is_ok(), "the inner packet parsed once: {:?}", want);
            let want = want.unwrap();
            proptest::prop_assert!(meta.decapsulate(start));
            proptest::prop_assert_eq!(want.tunnel, Tunnel::None);
            proptest::prop_assert_eq!(meta.outer, want.outer);
            proptest::prop_assert_eq!(meta.tunnel, Tunnel::None);
        }
    }

    #[test]
    fn decapsulate_refuses_a_start_inside_the_inner_headers() {
        let mut m = parse(&compose::example_vxlan_frame()).unwrap();
        let before = m;
        assert!(!m.decapsulate(m.inner.l2 + 1));
        assert_eq!(m, before);
        assert!(m.decapsulate(m.inner.l2));
        assert!(!m.decapsulate(0), "no tunnel left");
        assert_eq!((m.tunnel, m.outer.l2, m.outer.l3), (Tunnel::None, 0, 14));
    }

    #[test]
    fn the_generator_reaches_the_fast_path_and_tunnels() {
        let (mut fast_v4, mut fast_v6, mut vxlan, mut mpls, mut gre, mut errors) = (0, 0, 0, 0, 0, 0);
        let mut gre_ethernet = 0;
        for seed in 0..5000 {
            let f = Gen(seed).frame();
            match parse(&f) {
                Ok(m) => {
                    let mut h = Headers::default();
                    if fast_ethernet(&f, 0, &mut h).is_some() {
                        fast_v4 += usize::from(h.l3_kind == L3::Ipv4);
                        fast_v6 += usize::from(h.l3_kind == L3::Ipv6);
                    }
                    vxlan += usize::from(matches!(m.tunnel, Tunnel::Vxlan { .. }));
                    mpls += usize::from(matches!(m.tunnel, Tunnel::MplsOverUdp { .. }));
                    gre += usize::from(matches!(m.tunnel, Tunnel::MplsOverGre { .. } | Tunnel::Gre { .. }));
                    let teb = EtherType::TransparentEthernet;
                    gre_ethernet += usize::from(matches!(m.tunnel, Tunnel::Gre { protocol, .. } if protocol == teb));
                }
                Err(_) => errors += 1,
            }
        }
        assert!(
            fast_v4 > 1000
                && fast_v6 > 300
                && vxlan > 100
                && mpls > 100
                && gre > 100
                && gre_ethernet > 20
                && errors > 300,
            "{fast_v4} {fast_v6} {vxlan} {mpls} {gre} {gre_ethernet} {errors}"
        );
    }
}
