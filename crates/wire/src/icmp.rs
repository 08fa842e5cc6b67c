//! The 8-byte header ICMPv4 and ICMPv6 share (type, code, checksum, four more bytes),
//! and the checksum rules that differ: ICMPv6 adds the IPv6 pseudo-header.

use std::net::Ipv6Addr;

use crate::bytes::{Field, get_u16, get_u32, set_u16, set_u32};
use crate::checksum;
use crate::ip::IpProtocol;
use crate::{Error, Layer, Result};

mod field {
    use super::Field;
    pub(super) const TYPE: usize = 0;
    pub(super) const CODE: usize = 1;
    pub(super) const CHECKSUM: Field = 2..4;
    pub(super) const REST: Field = 4..8;
}

/// Length of the common ICMP header.
pub const HEADER_LEN: usize = field::REST.end;

/// A zero-copy view of an ICMPv4 or ICMPv6 message; the buffer is the whole message.
#[derive(Debug, Clone)]
pub struct IcmpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> IcmpPacket<T> {
    /// Wraps without checking.
    pub const fn new_unchecked(buffer: T) -> Self {
        IcmpPacket { buffer }
    }

    /// Wraps after checking the 8-byte header is present; `layer` names the family in
    /// the error.
    pub fn new_checked(buffer: T, layer: Layer) -> Result<Self> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::truncated(layer, "header"));
        }
        Ok(IcmpPacket { buffer })
    }

    /// Message type.
    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }
    /// Code.
    #[inline]
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }
    /// Checksum as stored.
    #[inline]
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM.start)
    }
    /// The four type-specific bytes after the checksum.
    #[inline]
    pub fn rest(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::REST.start)
    }
    /// Echo identifier (first half of `rest`).
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::REST.start)
    }
    /// The whole message.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    /// Everything after the 8-byte header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// ICMPv4 checksum (over the message only) verifies. Always true when fuzzing.
    pub fn verify_checksum_v4(&self) -> bool {
        cfg!(fuzzing) || checksum::checksum(self.buffer.as_ref()) == 0
    }

    /// ICMPv6 checksum (message plus pseudo-header) verifies. Always true when fuzzing.
    pub fn verify_checksum_v6(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        cfg!(fuzzing) || checksum::finish(self.sum_v6(src, dst)) == 0
    }

    fn sum_v6(&self, src: Ipv6Addr, dst: Ipv6Addr) -> u32 {
        let msg = self.buffer.as_ref();
        let pseudo = checksum::pseudo_header_v6(src, dst, IpProtocol::Icmpv6.into(), msg.len() as u32);
        checksum::combine(&[pseudo, checksum::sum(msg)])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> IcmpPacket<T> {
    /// Writes type, code and the four type-specific bytes; zeroes the checksum.
    pub fn set_header(&mut self, msg_type: u8, code: u8, rest: u32) {
        let b = self.buffer.as_mut();
        b[field::TYPE] = msg_type;
        b[field::CODE] = code;
        set_u16(b, field::CHECKSUM.start, 0);
        set_u32(b, field::REST.start, rest);
    }

    /// Everything after the header, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }

    /// Computes and stores the ICMPv4 checksum over the whole buffer.
    pub fn fill_checksum_v4(&mut self) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM.start, 0);
        let c = checksum::checksum(self.buffer.as_ref());
        set_u16(self.buffer.as_mut(), field::CHECKSUM.start, c);
    }

    /// Computes and stores the ICMPv6 checksum over the whole buffer and pseudo-header.
    pub fn fill_checksum_v6(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM.start, 0);
        let c = checksum::finish(self.sum_v6(src, dst));
        set_u16(self.buffer.as_mut(), field::CHECKSUM.start, c);
    }
}
