//! UDP (RFC 768), with the checksum over the IPv4 or IPv6 pseudo-header.

use std::net::IpAddr;

use crate::bytes::{Field, get_u16, set_u16};
use crate::checksum;
use crate::ip::IpProtocol;
use crate::{Error, Layer, Result};

mod field {
    use super::Field;
    pub(super) const SRC_PORT: Field = 0..2;
    pub(super) const DST_PORT: Field = 2..4;
    pub(super) const LENGTH: Field = 4..6;
    pub(super) const CHECKSUM: Field = 6..8;
}

/// Length of a UDP header.
pub const HEADER_LEN: usize = field::CHECKSUM.end;

/// VXLAN's IANA port (RFC 7348).
pub const PORT_VXLAN: u16 = 4789;
/// MPLS-in-UDP's IANA port (RFC 7510).
pub const PORT_MPLS: u16 = 6635;

/// A zero-copy view of a UDP datagram.
#[derive(Debug, Clone)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wraps without checking.
    pub const fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
    }

    /// Wraps after checking `8 <= length <= buffer length`.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_checked_header(buffer)?;
        if usize::from(p.len()) > p.buffer.as_ref().len() {
            return Err(Error::truncated(Layer::Udp, "length"));
        }
        Ok(p)
    }

    /// Wraps after checking the header is there and `8 <= length`, for the start of a
    /// datagram whose end is in later IP fragments.
    pub fn new_checked_header(buffer: T) -> Result<Self> {
        let p = UdpPacket { buffer };
        if p.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::truncated(Layer::Udp, "header"));
        }
        if usize::from(p.len()) < HEADER_LEN {
            return Err(Error::invalid(Layer::Udp, "length"));
        }
        Ok(p)
    }

    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::SRC_PORT.start)
    }
    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::DST_PORT.start)
    }
    /// Length field (header + payload).
    #[inline]
    pub fn len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LENGTH.start)
    }
    /// True when the length field says there is no payload.
    #[inline]
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) == HEADER_LEN
    }
    /// Checksum as stored (0 = none, IPv4 only).
    #[inline]
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM.start)
    }
    /// Payload, bounded by the length field.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.len())]
    }

    /// True when the checksum verifies. A zero checksum means "none" over IPv4 and is
    /// an error over IPv6 (RFC 8200 8.1). Always true when built for fuzzing.
    pub fn verify_checksum(&self, src: IpAddr, dst: IpAddr) -> bool {
        if cfg!(fuzzing) {
            return true;
        }
        if self.checksum() == 0 {
            return src.is_ipv4();
        }
        let segment = &self.buffer.as_ref()[..usize::from(self.len())];
        let pseudo = checksum::pseudo_header(src, dst, IpProtocol::Udp.into(), u32::from(self.len()));
        checksum::finish(checksum::combine(&[pseudo, checksum::sum(segment)])) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    /// Sets the source port (checksum not updated).
    #[inline]
    pub fn set_src_port(&mut self, port: u16) {
        set_u16(self.buffer.as_mut(), field::SRC_PORT.start, port);
    }
    /// Sets the destination port (checksum not updated).
    #[inline]
    pub fn set_dst_port(&mut self, port: u16) {
        set_u16(self.buffer.as_mut(), field::DST_PORT.start, port);
    }
    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM.start, value);
    }

    /// Computes and stores the checksum over header and payload (as the length field says).
    pub fn fill_checksum(&mut self, src: IpAddr, dst: IpAddr) {
        self.set_checksum(0);
        let len = self.len();
        let pseudo = checksum::pseudo_header(src, dst, IpProtocol::Udp.into(), u32::from(len));
        let body = checksum::sum(&self.buffer.as_ref()[..usize::from(len)]);
        let c = checksum::finish(checksum::combine(&[pseudo, body]));
        // An all-zero result is sent as all-ones: zero means "no checksum".
        self.set_checksum(if c == 0 { 0xffff } else { c });
    }

    /// Payload, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

/// The fields of a UDP header (length and checksum are derived).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UdpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
}

impl UdpRepr {
    /// Reads the header and verifies the checksum against the enclosing addresses.
    pub fn parse<T: AsRef<[u8]>>(p: &UdpPacket<T>, src: IpAddr, dst: IpAddr) -> Result<Self> {
        if !p.verify_checksum(src, dst) {
            return Err(Error::checksum(Layer::Udp));
        }
        Ok(UdpRepr {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
        })
    }

    /// Header bytes [`emit`](Self::emit) writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes ports and length with a zero checksum; call
    /// [`UdpPacket::fill_checksum`] once the payload is in place.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut UdpPacket<T>, payload_len: usize) -> Result<()> {
        let len = u16::try_from(HEADER_LEN + payload_len).map_err(|_| Error::invalid(Layer::Udp, "length"))?;
        p.set_src_port(self.src_port);
        p.set_dst_port(self.dst_port);
        set_u16(p.buffer.as_mut(), field::LENGTH.start, len);
        p.set_checksum(0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Reason;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const SRC: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 1));
    const DST: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 2));

    fn datagram(src: IpAddr, dst: IpAddr) -> Vec<u8> {
        let mut b = vec![0u8; 13];
        b[8..].copy_from_slice(b"hello");
        let mut p = UdpPacket::new_unchecked(&mut b[..]);
        UdpRepr {
            src_port: 1234,
            dst_port: 53,
        }
        .emit(&mut p, 5)
        .unwrap();
        p.fill_checksum(src, dst);
        b
    }

    #[test]
    fn golden_v4() {
        let b = datagram(SRC, DST);
        // Independently computed: pseudo 0xc0a8+0x0101+0xc0a8+0x0102+17+13, segment words.
        assert_eq!(&b[..6], &[0x04, 0xd2, 0x00, 0x35, 0x00, 0x0d]);
        let p = UdpPacket::new_checked(&b[..]).unwrap();
        assert_eq!(
            UdpRepr::parse(&p, SRC, DST).unwrap(),
            UdpRepr {
                src_port: 1234,
                dst_port: 53
            }
        );
        assert_eq!(p.payload(), b"hello");
    }

    #[test]
    fn checksum_v6_and_zero_rules() {
        let s6: IpAddr = "fe80::1".parse::<Ipv6Addr>().unwrap().into();
        let d6: IpAddr = "fe80::2".parse::<Ipv6Addr>().unwrap().into();
        let mut b = datagram(s6, d6);
        assert!(UdpPacket::new_checked(&b[..]).unwrap().verify_checksum(s6, d6));
        assert!(!UdpPacket::new_checked(&b[..]).unwrap().verify_checksum(SRC, DST));
        b[6] = 0;
        b[7] = 0;
        let p = UdpPacket::new_checked(&b[..]).unwrap();
        assert!(p.verify_checksum(SRC, DST), "zero = none over IPv4");
        assert_eq!(UdpRepr::parse(&p, s6, d6).unwrap_err().reason, Reason::Checksum);
    }

    #[test]
    fn lengths() {
        let b = datagram(SRC, DST);
        for len in 0..b.len() {
            assert_eq!(UdpPacket::new_checked(&b[..len]).unwrap_err().reason, Reason::Truncated);
        }
        let mut short = b.clone();
        short[5] = 7;
        assert_eq!(UdpPacket::new_checked(&short[..]).unwrap_err().reason, Reason::Invalid);
        let mut longer = b.clone();
        longer.push(0);
        assert_eq!(UdpPacket::new_checked(&longer[..]).unwrap().payload(), b"hello");
    }
}
