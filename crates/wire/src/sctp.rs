//! SCTP's common header (RFC 9260 §3.1): the ports that make an association a flow.
//!
//! The chunks behind it are the endpoints' business; a router forwards them untouched,
//! so only the first chunk's type is read (to see an association end) and the CRC32c
//! checksum not at all.

use crate::bytes::{Field, get_u16, get_u32};
use crate::{Error, Layer, Result};

mod field {
    use super::Field;
    pub(super) const SRC_PORT: Field = 0..2;
    pub(super) const DST_PORT: Field = 2..4;
    pub(super) const VERIFICATION_TAG: Field = 4..8;
    pub(super) const CHECKSUM: Field = 8..12;
    pub(super) const FIRST_CHUNK_TYPE: usize = 12;
}

/// Chunk type ABORT (RFC 9260 §3.3.7).
pub const CHUNK_ABORT: u8 = 6;
/// Chunk type SHUTDOWN COMPLETE (RFC 9260 §3.3.13).
pub const CHUNK_SHUTDOWN_COMPLETE: u8 = 14;

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

    /// The first chunk's type, if a chunk follows the header.
    #[inline]
    pub fn first_chunk_type(&self) -> Option<u8> {
        self.buffer.as_ref().get(field::FIRST_CHUNK_TYPE).copied()
    }

    /// The association's end in TCP's terms, for flow tables that age both alike: RST
    /// (0x04) for an ABORT, FIN (0x01) for a SHUTDOWN COMPLETE, else 0.
    #[inline]
    pub fn closing_flags(&self) -> u8 {
        match self.first_chunk_type() {
            Some(CHUNK_ABORT) => 0x04,
            Some(CHUNK_SHUTDOWN_COMPLETE) => 0x01,
            _ => 0,
        }
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

    #[test]
    fn an_abort_or_shutdown_complete_ends_the_association() {
        let with = |chunk: u8| {
            let mut b = [0u8; 16];
            b[12] = chunk;
            SctpPacket::new_checked(b).unwrap().closing_flags()
        };
        assert_eq!((with(CHUNK_ABORT), with(CHUNK_SHUTDOWN_COMPLETE)), (0x04, 0x01));
        assert_eq!((with(0), with(1), with(7)), (0, 0, 0), "DATA, INIT, SHUTDOWN");
        assert_eq!(
            SctpPacket::new_checked([0u8; 12]).unwrap().closing_flags(),
            0,
            "no chunk"
        );
    }
}
