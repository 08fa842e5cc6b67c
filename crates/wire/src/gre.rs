//! GRE (RFC 2784) with the key and sequence number extensions (RFC 2890).

use crate::bytes::{get_u16, get_u32, set_u16, set_u32};
use crate::checksum;
use crate::ethernet::EtherType;
use crate::{Error, Layer, Result};

const FLAG_C: u16 = 0x8000;
const FLAG_R: u16 = 0x4000;
const FLAG_K: u16 = 0x2000;
const FLAG_S: u16 = 0x1000;
/// Strict source route and the top recursion bit: bits 4-5, which RFC 2784 says a
/// receiver must discard on (bits 6-12 are ignored).
const RESERVED0_1701: u16 = 0x0800 | 0x0400;
const VERSION_MASK: u16 = 0x0007;

/// Length of the base header.
pub const BASE_LEN: usize = 4;

/// A zero-copy view of a GRE packet.
#[derive(Debug, Clone)]
pub struct GrePacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> GrePacket<T> {
    /// Wraps without checking.
    pub const fn new_unchecked(buffer: T) -> Self {
        GrePacket { buffer }
    }

    /// Wraps after checking that the header, with the optional fields its flags announce,
    /// is present.
    pub fn new_checked(buffer: T) -> Result<Self> {
        if buffer.as_ref().len() < BASE_LEN {
            return Err(Error::truncated(Layer::Gre, "header"));
        }
        let p = GrePacket { buffer };
        if p.header_len() > p.buffer.as_ref().len() {
            return Err(Error::truncated(Layer::Gre, "optional_fields"));
        }
        Ok(p)
    }

    #[inline]
    fn flags(&self) -> u16 {
        get_u16(self.buffer.as_ref(), 0)
    }
    /// Checksum present.
    #[inline]
    pub fn has_checksum(&self) -> bool {
        self.flags() & FLAG_C != 0
    }
    /// Key present.
    #[inline]
    pub fn has_key(&self) -> bool {
        self.flags() & FLAG_K != 0
    }
    /// Sequence number present.
    #[inline]
    pub fn has_sequence(&self) -> bool {
        self.flags() & FLAG_S != 0
    }
    /// Version (must be 0).
    #[inline]
    pub fn version(&self) -> u8 {
        (self.flags() & VERSION_MASK) as u8
    }
    /// Protocol type of the payload.
    #[inline]
    pub fn protocol(&self) -> EtherType {
        get_u16(self.buffer.as_ref(), 2).into()
    }
    /// Header length including present optional fields.
    #[inline]
    pub fn header_len(&self) -> usize {
        BASE_LEN
            + 4 * (usize::from(self.has_checksum()) + usize::from(self.has_key()) + usize::from(self.has_sequence()))
    }
    /// Key, if present.
    #[inline]
    pub fn key(&self) -> Option<u32> {
        let at = BASE_LEN + 4 * usize::from(self.has_checksum());
        self.has_key().then(|| get_u32(self.buffer.as_ref(), at))
    }
    /// Sequence number, if present.
    #[inline]
    pub fn sequence(&self) -> Option<u32> {
        let at = BASE_LEN + 4 * (usize::from(self.has_checksum()) + usize::from(self.has_key()));
        self.has_sequence().then(|| get_u32(self.buffer.as_ref(), at))
    }
    /// Payload after the header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
    /// Checks the flag bits RFC 2784 reserves: routing, strict source route, recursion
    /// and version must all be zero for us.
    pub fn check_reserved(&self) -> Result<()> {
        let f = self.flags();
        if f & (FLAG_R | RESERVED0_1701) != 0 {
            return Err(Error::unsupported(Layer::Gre, "reserved0"));
        }
        if self.version() != 0 {
            return Err(Error::unsupported(Layer::Gre, "version"));
        }
        Ok(())
    }
    /// True when there is no checksum or it verifies over header and payload.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        cfg!(fuzzing) || !self.has_checksum() || checksum::checksum(self.buffer.as_ref()) == 0
    }
}

/// The fields of a GRE header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GreRepr {
    /// Protocol type of the payload (IPv4, IPv6, MPLS 0x8847, Ethernet 0x6558, ...).
    pub protocol: EtherType,
    /// Whether a checksum is carried.
    pub checksum: bool,
    /// Key (RFC 2890), e.g. a tenant id.
    pub key: Option<u32>,
    /// Sequence number (RFC 2890).
    pub sequence: Option<u32>,
}

impl GreRepr {
    /// Reads the header, rejecting reserved flags and bad checksums.
    pub fn parse<T: AsRef<[u8]>>(p: &GrePacket<T>) -> Result<Self> {
        p.check_reserved()?;
        if !p.verify_checksum() {
            return Err(Error::checksum(Layer::Gre));
        }
        Ok(GreRepr {
            protocol: p.protocol(),
            checksum: p.has_checksum(),
            key: p.key(),
            sequence: p.sequence(),
        })
    }

    /// Header bytes [`emit`](Self::emit) writes.
    pub const fn buffer_len(&self) -> usize {
        BASE_LEN + 4 * (self.checksum as usize + self.key.is_some() as usize + self.sequence.is_some() as usize)
    }

    /// Writes the header. With a checksum, the payload must already follow the header in
    /// `buf`: the checksum covers header and payload.
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        let hl = self.buffer_len();
        if buf.len() < hl {
            return Err(Error::truncated(Layer::Gre, "header"));
        }
        let mut flags = 0;
        if self.checksum {
            flags |= FLAG_C;
        }
        if self.key.is_some() {
            flags |= FLAG_K;
        }
        if self.sequence.is_some() {
            flags |= FLAG_S;
        }
        set_u16(buf, 0, flags);
        set_u16(buf, 2, self.protocol.into());
        let mut at = BASE_LEN;
        if self.checksum {
            set_u32(buf, at, 0);
            at += 4;
        }
        for v in [self.key, self.sequence].into_iter().flatten() {
            set_u32(buf, at, v);
            at += 4;
        }
        if self.checksum {
            let c = checksum::checksum(buf);
            set_u16(buf, BASE_LEN, c);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Reason;

    #[test]
    fn every_flag_combination_round_trips_and_truncates() {
        for bits in 0..8u8 {
            let r = GreRepr {
                protocol: EtherType::MplsUnicast,
                checksum: bits & 1 != 0,
                key: (bits & 2 != 0).then_some(0xdead_beef),
                sequence: (bits & 4 != 0).then_some(42),
            };
            let mut b = vec![0u8; r.buffer_len() + 4];
            b[r.buffer_len()..].copy_from_slice(&[0, 0, 0x11, 64]);
            r.emit(&mut b).unwrap();
            let p = GrePacket::new_checked(&b[..]).unwrap();
            assert_eq!(GreRepr::parse(&p).unwrap(), r, "flags {bits}");
            assert_eq!(p.payload(), &[0, 0, 0x11, 64]);
            for len in 0..r.buffer_len() {
                let e = GrePacket::new_checked(&b[..len]).unwrap_err();
                assert_eq!(e.reason, Reason::Truncated, "flags {bits} len {len}");
            }
            if r.checksum {
                let mut bad = b.clone();
                *bad.last_mut().unwrap() ^= 1;
                let e = GreRepr::parse(&GrePacket::new_checked(&bad[..]).unwrap()).unwrap_err();
                assert_eq!(e.reason, Reason::Checksum);
            }
        }
    }

    #[test]
    fn golden_key_only() {
        // K bit, IPv4 payload, key 0x00000064.
        let b = [0x20, 0x00, 0x08, 0x00, 0, 0, 0, 100];
        let r = GreRepr::parse(&GrePacket::new_checked(&b[..]).unwrap()).unwrap();
        assert_eq!(
            r,
            GreRepr {
                protocol: EtherType::Ipv4,
                checksum: false,
                key: Some(100),
                sequence: None
            }
        );
    }

    #[test]
    fn reserved_bits_and_version() {
        for (flags, field) in [
            (0x4000u16, "reserved0"),
            (0x0800, "reserved0"),
            (0x0400, "reserved0"),
            (0x0001, "version"),
        ] {
            let mut b = [0u8; 8];
            b[..2].copy_from_slice(&flags.to_be_bytes());
            let e = GreRepr::parse(&GrePacket::new_checked(&b[..]).unwrap()).unwrap_err();
            assert_eq!((e.field, e.reason), (field, Reason::Unsupported));
        }
        // Bits 6-12 are ignored on receipt.
        let b = [0x03, 0xf8, 0x08, 0x00];
        assert!(GreRepr::parse(&GrePacket::new_checked(&b[..]).unwrap()).is_ok());
    }
}
