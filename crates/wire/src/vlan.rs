//! 802.1Q (C-tag, TPID 0x8100) and 802.1ad (S-tag, TPID 0x88a8) VLAN tags.
//!
//! The TPID is the EtherType of the enclosing header, so a tag view covers only the
//! four bytes that follow it: the TCI and the EtherType of what comes next.

use crate::bytes::{Field, get_u16, set_u16};
use crate::ethernet::EtherType;
use crate::{Error, Layer, Result};

mod field {
    use super::Field;
    pub(super) const TCI: Field = 0..2;
    pub(super) const ETHERTYPE: Field = 2..4;
}

/// Length of one tag after its TPID.
pub const HEADER_LEN: usize = field::ETHERTYPE.end;

/// A zero-copy view of a VLAN tag (TCI + inner EtherType).
#[derive(Debug, Clone)]
pub struct VlanTag<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VlanTag<T> {
    /// Wraps without checking the length.
    pub const fn new_unchecked(buffer: T) -> Self {
        VlanTag { buffer }
    }

    /// Wraps after checking the tag is complete.
    pub fn new_checked(buffer: T) -> Result<Self> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::truncated(Layer::Vlan, "tci"));
        }
        Ok(VlanTag { buffer })
    }

    /// Priority code point (3 bits).
    #[inline]
    pub fn pcp(&self) -> u8 {
        (get_u16(self.buffer.as_ref(), field::TCI.start) >> 13) as u8
    }

    /// Drop eligible indicator.
    #[inline]
    pub fn dei(&self) -> bool {
        get_u16(self.buffer.as_ref(), field::TCI.start) & 0x1000 != 0
    }

    /// VLAN identifier (12 bits).
    #[inline]
    pub fn vid(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::TCI.start) & 0x0fff
    }

    /// EtherType of what follows the tag.
    #[inline]
    pub fn ethertype(&self) -> EtherType {
        get_u16(self.buffer.as_ref(), field::ETHERTYPE.start).into()
    }

    /// Everything after the tag.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VlanTag<T> {
    /// Sets PCP, DEI and VID at once.
    #[inline]
    pub fn set_tci(&mut self, pcp: u8, dei: bool, vid: u16) {
        let tci = (u16::from(pcp & 7) << 13) | (u16::from(dei) << 12) | (vid & 0x0fff);
        set_u16(self.buffer.as_mut(), field::TCI.start, tci);
    }

    /// Sets the inner EtherType.
    #[inline]
    pub fn set_ethertype(&mut self, ethertype: EtherType) {
        set_u16(self.buffer.as_mut(), field::ETHERTYPE.start, ethertype.into());
    }
}

/// The fields of one VLAN tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VlanRepr {
    /// Priority code point, 0-7.
    pub pcp: u8,
    /// Drop eligible indicator.
    pub dei: bool,
    /// VLAN id, 0-4095.
    pub vid: u16,
    /// EtherType of what follows.
    pub ethertype: EtherType,
}

impl VlanRepr {
    /// Reads the tag. VID 4095 is reserved by 802.1Q and rejected.
    pub fn parse<T: AsRef<[u8]>>(tag: &VlanTag<T>) -> Result<Self> {
        if tag.vid() == 0x0fff {
            return Err(Error::invalid(Layer::Vlan, "vid"));
        }
        Ok(VlanRepr {
            pcp: tag.pcp(),
            dei: tag.dei(),
            vid: tag.vid(),
            ethertype: tag.ethertype(),
        })
    }

    /// Bytes [`emit`](Self::emit) writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the tag.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, tag: &mut VlanTag<T>) {
        tag.set_tci(self.pcp, self.dei, self.vid);
        tag.set_ethertype(self.ethertype);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden() {
        // PCP 5, DEI 1, VID 0x123, then IPv6.
        let bytes = [0xb1, 0x23, 0x86, 0xdd];
        let r = VlanRepr::parse(&VlanTag::new_checked(&bytes[..]).unwrap()).unwrap();
        assert_eq!(
            r,
            VlanRepr {
                pcp: 5,
                dei: true,
                vid: 0x123,
                ethertype: EtherType::Ipv6
            }
        );
        let mut out = [0u8; 4];
        r.emit(&mut VlanTag::new_unchecked(&mut out[..]));
        assert_eq!(out, bytes);
    }

    #[test]
    fn truncated_and_reserved_vid() {
        for len in 0..HEADER_LEN {
            assert!(VlanTag::new_checked(&[0u8; 4][..len]).is_err());
        }
        let e = VlanRepr::parse(&VlanTag::new_checked(&[0x0f, 0xff, 8, 0][..]).unwrap());
        assert_eq!(e.unwrap_err().field, "vid");
    }
}
