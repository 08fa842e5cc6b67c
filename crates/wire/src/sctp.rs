//! SCTP's common header (RFC 9260 §3.1): the ports that make an association a flow.
//!
//! The chunks behind it are the endpoints' business; a router forwards them untouched,
//! so neither they nor the CRC32c checksum are read here.

use crate::bytes::{Field, get_u16, get_u32};
use crate::{Error, Layer, Result};

mod field {
    use super::Field;
    pub(super) const SRC_PORT: Field = 0..2;
    pub(super) const DST_PORT: Field = 2..4;
    pub(super) const VERIFICATION_TAG: Field = 4..8;
    pub(super) const CHECKSUM: Field = 8..12;
}

/// Length of the common header.
pub const HEADER_LEN: usize = field::CHECKSUM.end;

/// A zero-copy view of an SCTP packet's common header.
///
/// ```
/// let bytes = [0x96, 0x2c, 0x0b, 0x59, 0, 0, 0, 7, 0, 0, 0, 0];
/// let p = wire::sctp::SctpPacket::new_checked(&bytes[..]).unwrap();
/// assert_eq!((p.src_port(), p.dst_port(), p.verification_tag()), (38444, 2905, 7));
/// ```
#[derive(Debug, Clone)]
pub struct SctpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> SctpPacket<T> {
    /// Wraps after checking the common header is there.
    pub fn new_checked(buffer: T) -> Result<Self> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::truncated(Layer::Sctp, "header"));
        }
        Ok(SctpPacket { buffer })
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
    /// Verification tag: the receiver's tag for the association (zero in an INIT).
    #[inline]
    pub fn verification_tag(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::VERIFICATION_TAG.start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_header_is_truncated() {
        let e = SctpPacket::new_checked(&[0u8; 11][..]).unwrap_err();
        assert_eq!(e, Error::truncated(Layer::Sctp, "header"));
        assert!(SctpPacket::new_checked(&[0u8; 12][..]).is_ok());
    }
}
