//! IPv4 (RFC 791): header with options, fragment fields and header checksum.

use std::net::Ipv4Addr;

use crate::bytes::{Field, get_array, get_u16, set_u16};
use crate::checksum;
use crate::ip::IpProtocol;
use crate::options::HeaderOptions;
use crate::{Error, Layer, Result};

mod field {
    use super::Field;
    pub(super) const VER_IHL: usize = 0;
    pub(super) const DSCP_ECN: usize = 1;
    pub(super) const LENGTH: Field = 2..4;
    pub(super) const IDENT: Field = 4..6;
    pub(super) const FLG_OFF: Field = 6..8;
    pub(super) const TTL: usize = 8;
    pub(super) const PROTOCOL: usize = 9;
    pub(super) const CHECKSUM: Field = 10..12;
    pub(super) const SRC: Field = 12..16;
    pub(super) const DST: Field = 16..20;
}

/// Length of a header without options.
pub const HEADER_LEN: usize = field::DST.end;
/// Longest header (IHL 15).
pub const MAX_HEADER_LEN: usize = 60;

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// A zero-copy view of an IPv4 packet.
#[derive(Debug, Clone)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps without checking.
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    /// Wraps after checking that IHL and total length are consistent with the buffer:
    /// `20 <= IHL*4 <= total length <= buffer length`. Trailing bytes (Ethernet padding)
    /// are allowed and excluded from [`payload`](Self::payload).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Ipv4Packet { buffer };
        let len = p.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::truncated(Layer::Ipv4, "header"));
        }
        let hl = p.header_len();
        if hl < HEADER_LEN {
            return Err(Error::invalid(Layer::Ipv4, "ihl"));
        }
        if hl > len {
            return Err(Error::truncated(Layer::Ipv4, "options"));
        }
        let total = usize::from(p.total_len());
        if total < hl {
            return Err(Error::invalid(Layer::Ipv4, "total_length"));
        }
        if total > len {
            return Err(Error::truncated(Layer::Ipv4, "total_length"));
        }
        Ok(p)
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Version field (4 for IPv4).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }
    /// Header length in bytes (IHL * 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }
    /// Differentiated services code point.
    #[inline]
    pub fn dscp(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] >> 2
    }
    /// Explicit congestion notification bits.
    #[inline]
    pub fn ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] & 3
    }
    /// Total length (header + payload).
    #[inline]
    pub fn total_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LENGTH.start)
    }
    /// Identification.
    #[inline]
    pub fn ident(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::IDENT.start)
    }
    /// Don't-fragment flag.
    #[inline]
    pub fn dont_frag(&self) -> bool {
        get_u16(self.buffer.as_ref(), field::FLG_OFF.start) & FLAG_DF != 0
    }
    /// More-fragments flag.
    #[inline]
    pub fn more_frags(&self) -> bool {
        get_u16(self.buffer.as_ref(), field::FLG_OFF.start) & FLAG_MF != 0
    }
    /// Fragment offset in bytes.
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (get_u16(self.buffer.as_ref(), field::FLG_OFF.start) & OFFSET_MASK) << 3
    }
    /// Time to live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }
    /// Protocol of the payload.
    #[inline]
    pub fn protocol(&self) -> IpProtocol {
        self.buffer.as_ref()[field::PROTOCOL].into()
    }
    /// Header checksum as stored.
    #[inline]
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM.start)
    }
    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        get_array::<4>(self.buffer.as_ref(), field::SRC.start).into()
    }
    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        get_array::<4>(self.buffer.as_ref(), field::DST.start).into()
    }
    /// Options bytes (between the fixed header and IHL*4).
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }
    /// True when the header checksum verifies. Always true when built for fuzzing.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        cfg!(fuzzing) || checksum::ipv4_header_valid(&self.buffer.as_ref()[..self.header_len()])
    }
    /// Payload: from IHL*4 to the total length.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets the TTL and updates the checksum incrementally (RFC 1624).
    #[inline]
    pub fn set_ttl_update_checksum(&mut self, ttl: u8) {
        let b = self.buffer.as_mut();
        let old = get_u16(b, field::TTL);
        b[field::TTL] = ttl;
        let new = get_u16(b, field::TTL);
        let c = checksum::update_u16(get_u16(b, field::CHECKSUM.start), old, new);
        set_u16(b, field::CHECKSUM.start, c);
    }

    /// Rewrites the source address and updates the header checksum incrementally.
    #[inline]
    pub fn set_src_addr_update_checksum(&mut self, addr: Ipv4Addr) {
        self.rewrite_addr(field::SRC.start, addr);
    }

    /// Rewrites the destination address and updates the header checksum incrementally.
    #[inline]
    pub fn set_dst_addr_update_checksum(&mut self, addr: Ipv4Addr) {
        self.rewrite_addr(field::DST.start, addr);
    }

    fn rewrite_addr(&mut self, at: usize, addr: Ipv4Addr) {
        let b = self.buffer.as_mut();
        let old = u32::from_be_bytes(get_array(b, at));
        b[at..at + 4].copy_from_slice(&addr.octets());
        let c = checksum::update_u32(get_u16(b, field::CHECKSUM.start), old, addr.into());
        set_u16(b, field::CHECKSUM.start, c);
    }

    /// Recomputes the header checksum from scratch.
    pub fn fill_checksum(&mut self) {
        let hl = self.header_len();
        let b = self.buffer.as_mut();
        set_u16(b, field::CHECKSUM.start, 0);
        let c = checksum::checksum(&b[..hl]);
        set_u16(b, field::CHECKSUM.start, c);
    }

    /// Payload, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (hl, total) = (self.header_len(), usize::from(self.total_len()));
        &mut self.buffer.as_mut()[hl..total]
    }
}

/// The fields of an IPv4 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Repr {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Protocol of the payload.
    pub protocol: IpProtocol,
    /// Time to live.
    pub ttl: u8,
    /// DSCP (6 bits).
    pub dscp: u8,
    /// ECN (2 bits).
    pub ecn: u8,
    /// Identification.
    pub ident: u16,
    /// Don't fragment.
    pub dont_frag: bool,
    /// More fragments follow.
    pub more_frags: bool,
    /// Fragment offset in bytes (a multiple of 8).
    pub frag_offset: u16,
    /// Payload length in bytes.
    pub payload_len: u16,
    /// Header options.
    pub options: HeaderOptions,
}

impl Ipv4Repr {
    /// A plain header: TTL 64, don't-fragment, no options, no DSCP; lengths are filled in
    /// by `compose`, or set `payload_len` before emitting.
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr, protocol: IpProtocol) -> Self {
        Ipv4Repr {
            src,
            dst,
            protocol,
            ttl: 64,
            dscp: 0,
            ecn: 0,
            ident: 0,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
            payload_len: 0,
            options: HeaderOptions::default(),
        }
    }

    /// Reads and validates the header: version 4 and a correct checksum.
    pub fn parse<T: AsRef<[u8]>>(p: &Ipv4Packet<T>) -> Result<Self> {
        if p.version() != 4 {
            return Err(Error::invalid(Layer::Ipv4, "version"));
        }
        if !p.verify_checksum() {
            return Err(Error::checksum(Layer::Ipv4));
        }
        Ok(Ipv4Repr {
            src: p.src_addr(),
            dst: p.dst_addr(),
            protocol: p.protocol(),
            ttl: p.ttl(),
            dscp: p.dscp(),
            ecn: p.ecn(),
            ident: p.ident(),
            dont_frag: p.dont_frag(),
            more_frags: p.more_frags(),
            frag_offset: p.frag_offset(),
            payload_len: p.total_len() - p.header_len() as u16,
            // IHL*4 - 20 is a multiple of 4 and at most 40, so this cannot fail.
            options: HeaderOptions::new(p.options()).unwrap_or_default(),
        })
    }

    /// Header length [`emit`](Self::emit) writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.options.len()
    }

    /// Writes the header (with checksum) into the first [`buffer_len`](Self::buffer_len)
    /// bytes. Fails if header plus payload exceed 65535 bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Ipv4Packet<T>) -> Result<()> {
        let hl = self.buffer_len();
        let total = u16::try_from(hl + usize::from(self.payload_len))
            .map_err(|_| Error::invalid(Layer::Ipv4, "total_length"))?;
        let flags = if self.dont_frag { FLAG_DF } else { 0 } | if self.more_frags { FLAG_MF } else { 0 };
        let (src, dst) = (u32::from(self.src), u32::from(self.dst));
        // The fixed header as its ten 16-bit words. The checksum is summed from these
        // values, not read back from the buffer: reading bytes just stored one by one as
        // wider words would wait for the stores to reach the cache (store forwarding fails).
        let mut words: [u16; 10] = [
            u16::from_be_bytes([0x40 | (hl / 4) as u8, (self.dscp << 2) | (self.ecn & 3)]),
            total,
            self.ident,
            flags | ((self.frag_offset >> 3) & OFFSET_MASK),
            u16::from_be_bytes([self.ttl, self.protocol.into()]),
            0,
            (src >> 16) as u16,
            src as u16,
            (dst >> 16) as u16,
            dst as u16,
        ];
        let options = self.options.as_slice();
        let mut acc: u32 = words.iter().map(|&w| u32::from(w)).sum();
        if !options.is_empty() {
            acc += checksum::sum(options);
        }
        words[field::CHECKSUM.start / 2] = checksum::finish(acc);
        let mut fixed = [0u8; HEADER_LEN];
        for (bytes, w) in fixed.chunks_exact_mut(2).zip(words) {
            bytes.copy_from_slice(&w.to_be_bytes());
        }
        let b = p.buffer.as_mut();
        b[..HEADER_LEN].copy_from_slice(&fixed);
        if !options.is_empty() {
            b[HEADER_LEN..hl].copy_from_slice(options);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Reason;

    // 10.0.0.1 -> 10.0.0.2, UDP, TTL 64, DF, ident 0x1c46, 4 bytes payload.
    const PACKET: [u8; 24] = [
        0x45, 0x00, 0x00, 0x18, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x11, 0x0a, 0x8d, 10, 0, 0, 1, 10, 0, 0, 2, 1, 2, 3, 4,
    ];

    fn with_checksum(mut b: Vec<u8>) -> Vec<u8> {
        Ipv4Packet::new_unchecked(&mut b[..]).fill_checksum();
        b
    }

    #[test]
    fn golden() {
        let p = Ipv4Packet::new_checked(&PACKET[..]).unwrap();
        assert!(p.verify_checksum(), "golden checksum");
        let r = Ipv4Repr::parse(&p).unwrap();
        assert_eq!(r.src, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(r.protocol, IpProtocol::Udp);
        assert!(r.dont_frag && !r.more_frags);
        assert_eq!((r.ttl, r.ident, r.payload_len), (64, 0x1c46, 4));
        assert_eq!(p.payload(), &[1, 2, 3, 4]);
        let mut out = [0u8; 24];
        out[20..].copy_from_slice(&[1, 2, 3, 4]);
        r.emit(&mut Ipv4Packet::new_unchecked(&mut out[..])).unwrap();
        assert_eq!(out, PACKET);
    }

    #[test]
    fn truncated_at_every_length() {
        for len in 0..PACKET.len() {
            let e = Ipv4Packet::new_checked(&PACKET[..len]).unwrap_err();
            assert_eq!(e.reason, Reason::Truncated, "len {len}");
        }
    }

    #[test]
    fn ihl_below_five() {
        for ihl in 0..5u8 {
            let mut b = PACKET;
            b[0] = 0x40 | ihl;
            let e = Ipv4Packet::new_checked(&b[..]).unwrap_err();
            assert_eq!((e.field, e.reason), ("ihl", Reason::Invalid));
        }
    }

    #[test]
    fn ihl_past_buffer_and_total_length_mismatch() {
        let mut b = PACKET;
        b[0] = 0x46; // 24-byte header in a 24-byte buffer is fine
        assert!(Ipv4Packet::new_checked(&b[..]).is_ok());
        b[0] = 0x47; // 28 > 24
        assert_eq!(Ipv4Packet::new_checked(&b[..]).unwrap_err().field, "options");
        let mut b = PACKET;
        b[3] = 0x13; // total 19 < header 20
        assert_eq!(Ipv4Packet::new_checked(&b[..]).unwrap_err().reason, Reason::Invalid);
        b[3] = 0x19; // total 25 > buffer 24
        assert_eq!(Ipv4Packet::new_checked(&b[..]).unwrap_err().reason, Reason::Truncated);
        // Ethernet padding after the total length is not payload.
        let mut padded = PACKET.to_vec();
        padded.extend_from_slice(&[0; 10]);
        assert_eq!(Ipv4Packet::new_checked(&padded[..]).unwrap().payload().len(), 4);
    }

    #[test]
    fn wrong_version_and_bad_checksum() {
        let mut b = PACKET;
        b[0] = 0x65;
        let e = Ipv4Repr::parse(&Ipv4Packet::new_checked(&b[..]).unwrap()).unwrap_err();
        assert_eq!(e.field, "version");
        let mut b = PACKET;
        b[11] ^= 1;
        let e = Ipv4Repr::parse(&Ipv4Packet::new_checked(&b[..]).unwrap()).unwrap_err();
        assert_eq!(e.reason, Reason::Checksum);
    }

    #[test]
    fn options_and_fragments_round_trip() {
        let mut b = vec![0x47, 0, 0, 32, 0, 1, 0x20, 0x05, 1, 6, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2];
        b.extend_from_slice(&[0x94, 0x04, 0, 0, 1, 1, 1, 0]); // router alert, NOPs, EOL
        b.extend_from_slice(&[9, 9, 9, 9]);
        let b = with_checksum(b);
        let r = Ipv4Repr::parse(&Ipv4Packet::new_checked(&b[..]).unwrap()).unwrap();
        assert_eq!(r.options.as_slice(), &b[20..28]);
        assert!(r.more_frags);
        assert_eq!(r.frag_offset, 40);
        let mut out = vec![0u8; 32];
        out[28..].copy_from_slice(&[9, 9, 9, 9]);
        r.emit(&mut Ipv4Packet::new_unchecked(&mut out[..])).unwrap();
        assert_eq!(out, b);
    }

    #[test]
    fn incremental_rewrites_keep_checksum_valid() {
        let mut b = PACKET;
        let mut p = Ipv4Packet::new_unchecked(&mut b[..]);
        p.set_ttl_update_checksum(63);
        p.set_src_addr_update_checksum(Ipv4Addr::new(192, 0, 2, 1));
        p.set_dst_addr_update_checksum(Ipv4Addr::new(198, 51, 100, 254));
        assert!(p.verify_checksum());
        assert_eq!(p.ttl(), 63);
    }

    #[test]
    fn oversized_emit_is_an_error() {
        let p = Ipv4Packet::new_checked(&PACKET[..]).unwrap();
        let mut r = Ipv4Repr::parse(&p).unwrap();
        r.payload_len = 65535 - 19;
        let mut out = [0u8; 20];
        assert!(r.emit(&mut Ipv4Packet::new_unchecked(&mut out[..])).is_err());
    }
}
