//! IPv6 extension headers (RFC 8200 section 4): hop-by-hop and destination options,
//! routing, and fragment; plus the bounded walk from the fixed header to the upper layer.

use crate::bytes::{get_u16, get_u32, set_u16, set_u32};
use crate::ip::{Fragment, IpProtocol};
use crate::{Error, Layer, Reason, Result};

/// Most extension headers [`walk`] follows before giving up with [`Reason::TooDeep`].
/// RFC 8200 recommends at most one of each kind (two destination options), i.e. six.
pub const MAX_EXT_HEADERS: usize = 8;

/// Length of a fragment header.
pub const FRAG_HEADER_LEN: usize = 8;

/// True for the next-header values [`walk`] steps over.
#[inline]
pub const fn is_extension(p: IpProtocol) -> bool {
    matches!(
        p,
        IpProtocol::HopByHop | IpProtocol::Ipv6Route | IpProtocol::Ipv6Frag | IpProtocol::Ipv6Opts
    )
}

/// A zero-copy view of a length-prefixed extension header (hop-by-hop, routing,
/// destination options): next header, length in 8-octet units beyond the first, data.
#[derive(Debug, Clone)]
pub struct Ipv6ExtHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6ExtHeader<T> {
    /// Wraps without checking.
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv6ExtHeader { buffer }
    }

    /// Wraps after checking the whole header (`(hdr_ext_len + 1) * 8` bytes) is present.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let len = buffer.as_ref().len();
        if len < 2 {
            return Err(Error::truncated(Layer::Ipv6Ext, "header"));
        }
        let h = Ipv6ExtHeader { buffer };
        if h.header_len() > len {
            return Err(Error::truncated(Layer::Ipv6Ext, "hdr_ext_len"));
        }
        Ok(h)
    }

    /// Next header.
    #[inline]
    pub fn next_header(&self) -> IpProtocol {
        self.buffer.as_ref()[0].into()
    }
    /// Whole header length in bytes.
    #[inline]
    pub fn header_len(&self) -> usize {
        (usize::from(self.buffer.as_ref()[1]) + 1) * 8
    }
    /// The bytes after next-header and length (options, or routing type onwards).
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[2..self.header_len()]
    }
    /// Routing type (meaningful for a routing header).
    #[inline]
    pub fn routing_type(&self) -> u8 {
        self.buffer.as_ref()[2]
    }
    /// Segments left (meaningful for a routing header).
    #[inline]
    pub fn segments_left(&self) -> u8 {
        self.buffer.as_ref()[3]
    }
}

/// The fields of a length-prefixed extension header; the data is borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6ExtRepr<'a> {
    /// Next header.
    pub next_header: IpProtocol,
    /// Bytes after the two-byte prefix; `len + 2` must be a multiple of 8, at most 2048.
    pub data: &'a [u8],
}

impl<'a> Ipv6ExtRepr<'a> {
    /// Reads the header.
    pub fn parse(h: &Ipv6ExtHeader<&'a [u8]>) -> Result<Self> {
        let buffer: &'a [u8] = h.buffer;
        Ok(Ipv6ExtRepr {
            next_header: h.next_header(),
            data: &buffer[2..h.header_len()],
        })
    }

    /// Bytes [`emit`](Self::emit) writes.
    pub const fn buffer_len(&self) -> usize {
        2 + self.data.len()
    }

    /// Writes the header; fails if the data length is not representable.
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        let total = self.buffer_len();
        if !total.is_multiple_of(8) || total > 256 * 8 {
            return Err(Error::invalid(Layer::Ipv6Ext, "hdr_ext_len"));
        }
        if buf.len() < total {
            return Err(Error::truncated(Layer::Ipv6Ext, "header"));
        }
        buf[0] = self.next_header.into();
        buf[1] = (total / 8 - 1) as u8;
        buf[2..total].copy_from_slice(self.data);
        Ok(())
    }
}

/// A zero-copy view of a fragment header.
#[derive(Debug, Clone)]
pub struct Ipv6FragHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6FragHeader<T> {
    /// Wraps after checking the 8 bytes are present.
    pub fn new_checked(buffer: T) -> Result<Self> {
        if buffer.as_ref().len() < FRAG_HEADER_LEN {
            return Err(Error::truncated(Layer::Ipv6Ext, "fragment"));
        }
        Ok(Ipv6FragHeader { buffer })
    }

    /// Wraps without checking.
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv6FragHeader { buffer }
    }

    /// Next header.
    #[inline]
    pub fn next_header(&self) -> IpProtocol {
        self.buffer.as_ref()[0].into()
    }
    /// Fragment offset in bytes.
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        get_u16(self.buffer.as_ref(), 2) & 0xfff8
    }
    /// More fragments follow.
    #[inline]
    pub fn more_frags(&self) -> bool {
        get_u16(self.buffer.as_ref(), 2) & 1 != 0
    }
    /// Identification.
    #[inline]
    pub fn ident(&self) -> u32 {
        get_u32(self.buffer.as_ref(), 4)
    }
}

/// The fields of a fragment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6FragRepr {
    /// Next header.
    pub next_header: IpProtocol,
    /// Offset in bytes (multiple of 8).
    pub frag_offset: u16,
    /// More fragments follow.
    pub more_frags: bool,
    /// Identification.
    pub ident: u32,
}

impl Ipv6FragRepr {
    /// Reads the header.
    pub fn parse<T: AsRef<[u8]>>(h: &Ipv6FragHeader<T>) -> Result<Self> {
        Ok(Ipv6FragRepr {
            next_header: h.next_header(),
            frag_offset: h.frag_offset(),
            more_frags: h.more_frags(),
            ident: h.ident(),
        })
    }

    /// Bytes [`emit`](Self::emit) writes.
    pub const fn buffer_len(&self) -> usize {
        FRAG_HEADER_LEN
    }

    /// Writes the header into the first 8 bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, h: &mut Ipv6FragHeader<T>) {
        let b = h.buffer.as_mut();
        b[0] = self.next_header.into();
        b[1] = 0;
        set_u16(b, 2, (self.frag_offset & 0xfff8) | u16::from(self.more_frags));
        set_u32(b, 4, self.ident);
    }
}

/// Where the extension-header chain ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtWalk {
    /// The upper-layer protocol (or the next header of a later fragment).
    pub protocol: IpProtocol,
    /// Offset of the upper-layer header from the start of the IPv6 payload.
    pub offset: usize,
    /// Fragment state, from the fragment header if there is one.
    pub fragment: Fragment,
    /// Number of extension headers stepped over.
    pub count: u8,
    /// The fragment header's identification (0 without one).
    pub ident: u32,
    /// Where the fragment header ends, from the start of the IPv6 payload: the start of
    /// the part of the datagram that was split (0 without one).
    pub fragment_end: usize,
    /// Where the extension header whose next-header field names the fragment header
    /// starts, from the start of the IPv6 payload: `None` when the fixed header names it
    /// (or there is none). Reassembly writes the fragment header's next header there.
    pub fragment_after: Option<usize>,
}

/// Walks the extension headers of an IPv6 payload to the upper layer.
///
/// Stops at the first non-extension next header, at a later fragment (its upper-layer
/// header is in the first fragment), or with an error: a truncated header, hop-by-hop
/// anywhere but first (RFC 8200 4.3), or more than [`MAX_EXT_HEADERS`] headers.
pub fn walk(payload: &[u8], first: IpProtocol) -> Result<ExtWalk> {
    let mut protocol = first;
    let mut offset = 0usize;
    let mut fragment = Fragment::Whole;
    let mut count = 0u8;
    let mut ident = 0;
    let mut fragment_end = 0;
    let mut fragment_after = None;
    let mut previous = None;
    while is_extension(protocol) {
        if usize::from(count) == MAX_EXT_HEADERS {
            return Err(Error::new(Layer::Ipv6Ext, "next_header", Reason::TooDeep));
        }
        if protocol == IpProtocol::HopByHop && count != 0 {
            return Err(Error::invalid(Layer::Ipv6Ext, "next_header"));
        }
        let (start, rest) = (offset, &payload[offset..]);
        count += 1;
        if protocol == IpProtocol::Ipv6Frag {
            let f = Ipv6FragHeader::new_checked(rest)?;
            offset += FRAG_HEADER_LEN;
            fragment_end = offset;
            fragment_after = previous;
            protocol = f.next_header();
            fragment = Fragment::from_fields(f.frag_offset(), f.more_frags());
            ident = f.ident();
            if fragment == Fragment::Later {
                break;
            }
        } else {
            let h = Ipv6ExtHeader::new_checked(rest)?;
            offset += h.header_len();
            protocol = h.next_header();
        }
        previous = Some(start);
    }
    Ok(ExtWalk {
        protocol,
        offset,
        fragment,
        count,
        ident,
        fragment_end,
        fragment_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(next: u8, len8: u8) -> Vec<u8> {
        let mut v = vec![next, len8];
        v.resize((usize::from(len8) + 1) * 8, 1);
        v
    }

    #[test]
    fn walks_to_upper_layer() {
        let mut p = ext(43, 0); // HBH -> routing
        p.extend(ext(44, 1)); // routing (16 bytes) -> fragment
        p.extend([60, 0, 0, 1, 0, 0, 0, 7]); // first fragment -> dest opts
        p.extend(ext(6, 0)); // dest opts -> TCP
        p.extend([0u8; 20]);
        let w = walk(&p, IpProtocol::HopByHop).unwrap();
        assert_eq!(w.protocol, IpProtocol::Tcp);
        assert_eq!(w.offset, 8 + 16 + 8 + 8);
        assert_eq!(w.fragment, Fragment::First);
        assert_eq!(w.count, 4);
        // The routing header, after the hop-by-hop one, names the fragment header.
        assert_eq!((w.fragment_after, w.fragment_end), (Some(8), 8 + 16 + 8));
    }

    #[test]
    fn later_fragment_stops_the_walk() {
        let p = [17, 0, 0x00, 0x18, 0, 0, 0, 1, 0xde, 0xad];
        let w = walk(&p, IpProtocol::Ipv6Frag).unwrap();
        assert_eq!(
            (w.protocol, w.offset, w.fragment),
            (IpProtocol::Udp, 8, Fragment::Later)
        );
        assert_eq!(w.fragment_after, None, "the fixed header names it");
    }

    #[test]
    fn loops_and_overlong_chains_are_bounded() {
        // Destination options pointing at destination options, forever.
        let mut p = Vec::new();
        for _ in 0..20 {
            p.extend(ext(60, 0));
        }
        let e = walk(&p, IpProtocol::Ipv6Opts).unwrap_err();
        assert_eq!(e.reason, Reason::TooDeep);
        // Exactly the bound is fine.
        let mut p = Vec::new();
        for i in 0..MAX_EXT_HEADERS {
            p.extend(ext(if i + 1 == MAX_EXT_HEADERS { 59 } else { 60 }, 0));
        }
        assert_eq!(walk(&p, IpProtocol::Ipv6Opts).unwrap().protocol, IpProtocol::Ipv6NoNxt);
    }

    #[test]
    fn hop_by_hop_only_first() {
        let mut p = ext(0, 0);
        p.extend(ext(6, 0));
        let e = walk(&p, IpProtocol::Ipv6Opts).unwrap_err();
        assert_eq!((e.field, e.reason), ("next_header", Reason::Invalid));
    }

    #[test]
    fn truncated_headers() {
        let p = ext(6, 2);
        for len in 0..p.len() {
            let e = walk(&p[..len], IpProtocol::Ipv6Route).unwrap_err();
            assert_eq!(e.reason, Reason::Truncated, "len {len}");
        }
        for len in 0..FRAG_HEADER_LEN {
            assert!(walk(&[6u8; 8][..len], IpProtocol::Ipv6Frag).is_err());
        }
    }

    #[test]
    fn reprs_round_trip() {
        let data = [4u8, 0, 1, 2, 3, 4];
        let r = Ipv6ExtRepr {
            next_header: IpProtocol::Tcp,
            data: &data,
        };
        let mut out = [0u8; 8];
        r.emit(&mut out).unwrap();
        let h = Ipv6ExtHeader::new_checked(&out[..]).unwrap();
        assert_eq!(Ipv6ExtRepr::parse(&h).unwrap(), r);
        assert_eq!((h.routing_type(), h.segments_left()), (4, 0));
        assert!(
            Ipv6ExtRepr {
                next_header: IpProtocol::Tcp,
                data: &[0; 5]
            }
            .emit(&mut out)
            .is_err()
        );

        let f = Ipv6FragRepr {
            next_header: IpProtocol::Udp,
            frag_offset: 1480,
            more_frags: true,
            ident: 77,
        };
        let mut out = [0u8; 8];
        f.emit(&mut Ipv6FragHeader::new_unchecked(&mut out[..]));
        assert_eq!(
            Ipv6FragRepr::parse(&Ipv6FragHeader::new_checked(&out[..]).unwrap()).unwrap(),
            f
        );
    }
}
