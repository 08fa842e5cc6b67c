//! VXLAN (RFC 7348).

use crate::bytes::{get_u32, set_u32};
use crate::{Error, Layer, Result};

/// Length of a VXLAN header.
pub const HEADER_LEN: usize = 8;
const FLAG_I: u32 = 0x0800_0000;

/// A zero-copy view of a VXLAN header and its inner Ethernet frame.
#[derive(Debug, Clone)]
pub struct VxlanPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VxlanPacket<T> {
    /// Wraps without checking.
    pub const fn new_unchecked(buffer: T) -> Self {
        VxlanPacket { buffer }
    }

    /// Wraps after checking the 8-byte header is present.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::truncated(Layer::Vxlan, "header"));
        }
        Ok(VxlanPacket { buffer })
    }

    /// The I flag: the VNI is valid.
    #[inline]
    pub fn vni_valid(&self) -> bool {
        get_u32(self.buffer.as_ref(), 0) & FLAG_I != 0
    }
    /// VXLAN network identifier (24 bits).
    #[inline]
    pub fn vni(&self) -> u32 {
        get_u32(self.buffer.as_ref(), 4) >> 8
    }
    /// The inner Ethernet frame.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

/// The fields of a VXLAN header. Reserved bits are ignored on receipt and sent as zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VxlanRepr {
    /// VXLAN network identifier, 0 to 2^24-1.
    pub vni: u32,
}

impl VxlanRepr {
    /// Reads the header; the I flag must be set.
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(p: &VxlanPacket<T>) -> Result<Self> {
        if !p.vni_valid() {
            return Err(Error::invalid(Layer::Vxlan, "flags"));
        }
        Ok(VxlanRepr { vni: p.vni() })
    }

    /// Bytes [`emit`](Self::emit) writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header; fails on a VNI above 24 bits.
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        if self.vni >= 1 << 24 {
            return Err(Error::invalid(Layer::Vxlan, "vni"));
        }
        if buf.len() < HEADER_LEN {
            return Err(Error::truncated(Layer::Vxlan, "header"));
        }
        set_u32(buf, 0, FLAG_I);
        set_u32(buf, 4, self.vni << 8);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden() {
        let b = [0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0];
        let r = VxlanRepr::parse(&VxlanPacket::new_checked(&b[..]).unwrap()).unwrap();
        assert_eq!(r.vni, 0x123456);
        let mut out = [0xffu8; 8];
        r.emit(&mut out).unwrap();
        assert_eq!(out, b);
    }

    #[test]
    fn adversarial() {
        for len in 0..HEADER_LEN {
            assert!(VxlanPacket::new_checked(&[8u8; 8][..len]).is_err());
        }
        let e = VxlanRepr::parse(&VxlanPacket::new_checked(&[0u8; 8][..]).unwrap()).unwrap_err();
        assert_eq!(e.field, "flags");
        assert!(VxlanRepr { vni: 1 << 24 }.emit(&mut [0; 8]).is_err());
    }
}
