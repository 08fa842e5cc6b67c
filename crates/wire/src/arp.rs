//! ARP for IPv4 over Ethernet (RFC 826). Other hardware or protocol types parse as a
//! view but are `Unsupported` as a [`ArpRepr`].

use std::net::Ipv4Addr;

use crate::bytes::{Field, get_array, get_u16, set_u16};
use crate::ethernet::{EtherType, MacAddr};
use crate::{Error, Layer, Result};

enum_with_unknown! {
    /// ARP operation code.
    pub enum ArpOperation(u16) {
        /// Who has this address?
        Request = 1,
        /// This address is at this MAC.
        Reply = 2,
    }
}

mod field {
    use super::Field;
    pub(super) const HTYPE: Field = 0..2;
    pub(super) const PTYPE: Field = 2..4;
    pub(super) const HLEN: usize = 4;
    pub(super) const PLEN: usize = 5;
    pub(super) const OPER: Field = 6..8;
    pub(super) const SHA: Field = 8..14;
    pub(super) const SPA: Field = 14..18;
    pub(super) const THA: Field = 18..24;
    pub(super) const TPA: Field = 24..28;
}

/// Length of an Ethernet/IPv4 ARP packet.
pub const HEADER_LEN: usize = field::TPA.end;

/// A zero-copy view of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Wraps without checking the length.
    pub const fn new_unchecked(buffer: T) -> Self {
        ArpPacket { buffer }
    }

    /// Wraps after checking that the 28 bytes of an Ethernet/IPv4 ARP packet are present.
    pub fn new_checked(buffer: T) -> Result<Self> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::truncated(Layer::Arp, "header"));
        }
        Ok(ArpPacket { buffer })
    }

    /// Hardware type (1 = Ethernet).
    pub fn hardware_type(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::HTYPE.start)
    }
    /// Protocol type (0x0800 = IPv4).
    pub fn protocol_type(&self) -> EtherType {
        get_u16(self.buffer.as_ref(), field::PTYPE.start).into()
    }
    /// Hardware address length.
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }
    /// Protocol address length.
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }
    /// Operation.
    pub fn operation(&self) -> ArpOperation {
        get_u16(self.buffer.as_ref(), field::OPER.start).into()
    }
    /// Sender hardware address.
    pub fn sender_mac(&self) -> MacAddr {
        MacAddr(get_array(self.buffer.as_ref(), field::SHA.start))
    }
    /// Sender protocol address.
    pub fn sender_ip(&self) -> Ipv4Addr {
        get_array::<4>(self.buffer.as_ref(), field::SPA.start).into()
    }
    /// Target hardware address.
    pub fn target_mac(&self) -> MacAddr {
        MacAddr(get_array(self.buffer.as_ref(), field::THA.start))
    }
    /// Target protocol address.
    pub fn target_ip(&self) -> Ipv4Addr {
        get_array::<4>(self.buffer.as_ref(), field::TPA.start).into()
    }
}

/// The fields of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArpRepr {
    /// Request or reply.
    pub operation: ArpOperation,
    /// Sender MAC.
    pub sender_mac: MacAddr,
    /// Sender IPv4 address.
    pub sender_ip: Ipv4Addr,
    /// Target MAC (zero in a request).
    pub target_mac: MacAddr,
    /// Target IPv4 address.
    pub target_ip: Ipv4Addr,
}

impl ArpRepr {
    /// Reads the packet; anything but Ethernet/IPv4 with 6/4-byte addresses is unsupported.
    pub fn parse<T: AsRef<[u8]>>(p: &ArpPacket<T>) -> Result<Self> {
        if p.hardware_type() != 1 {
            return Err(Error::unsupported(Layer::Arp, "htype"));
        }
        if p.protocol_type() != EtherType::Ipv4 {
            return Err(Error::unsupported(Layer::Arp, "ptype"));
        }
        if p.hardware_len() != 6 {
            return Err(Error::invalid(Layer::Arp, "hlen"));
        }
        if p.protocol_len() != 4 {
            return Err(Error::invalid(Layer::Arp, "plen"));
        }
        Ok(ArpRepr {
            operation: p.operation(),
            sender_mac: p.sender_mac(),
            sender_ip: p.sender_ip(),
            target_mac: p.target_mac(),
            target_ip: p.target_ip(),
        })
    }

    /// Bytes [`emit`](Self::emit) writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the packet into the first [`HEADER_LEN`] bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut ArpPacket<T>) {
        let b = p.buffer.as_mut();
        set_u16(b, field::HTYPE.start, 1);
        set_u16(b, field::PTYPE.start, EtherType::Ipv4.into());
        b[field::HLEN] = 6;
        b[field::PLEN] = 4;
        set_u16(b, field::OPER.start, self.operation.into());
        b[field::SHA].copy_from_slice(&self.sender_mac.0);
        b[field::SPA].copy_from_slice(&self.sender_ip.octets());
        b[field::THA].copy_from_slice(&self.target_mac.0);
        b[field::TPA].copy_from_slice(&self.target_ip.octets());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUEST: [u8; 28] = [
        0, 1, 8, 0, 6, 4, 0, 1, // eth/ipv4 request
        2, 0, 0, 0, 0, 1, 10, 0, 0, 1, // sender
        0, 0, 0, 0, 0, 0, 10, 0, 0, 2, // target
    ];

    #[test]
    fn golden() {
        let r = ArpRepr::parse(&ArpPacket::new_checked(&REQUEST[..]).unwrap()).unwrap();
        assert_eq!(r.operation, ArpOperation::Request);
        assert_eq!(r.sender_ip, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(r.target_ip, Ipv4Addr::new(10, 0, 0, 2));
        let mut out = [0u8; 28];
        r.emit(&mut ArpPacket::new_unchecked(&mut out[..]));
        assert_eq!(out, REQUEST);
    }

    #[test]
    fn adversarial() {
        for len in 0..HEADER_LEN {
            assert!(ArpPacket::new_checked(&REQUEST[..len]).is_err());
        }
        let mut bad = REQUEST;
        bad[4] = 8;
        let e = ArpRepr::parse(&ArpPacket::new_checked(&bad[..]).unwrap()).unwrap_err();
        assert_eq!(e.field, "hlen");
        let mut bad = REQUEST;
        bad[1] = 6;
        let e = ArpRepr::parse(&ArpPacket::new_checked(&bad[..]).unwrap()).unwrap_err();
        assert_eq!(e.field, "htype");
    }
}
