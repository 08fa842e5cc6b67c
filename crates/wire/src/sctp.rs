//! SCTP's common header (RFC 9260 §3.1): the ports that make an association a flow.
//!
//! The chunks behind it are the endpoints' business; a router forwards them untouched,
//! so only their types are read (to see an association end) and the CRC32c checksum not
//! at all.

use crate::bytes::{Field, get_u16, get_u32};
use crate::{Error, Layer, Result};

mod field {
    use super::Field;
    pub(super) const SRC_PORT: Field = 0..2;
    pub(super) const DST_PORT: Field = 2..4;
    pub(super) const VERIFICATION_TAG: Field = 4..8;
    pub(super) const CHECKSUM: Field = 8..12;
}

/// Chunk type ABORT (RFC 9260 §3.3.7).
pub const CHUNK_ABORT: u8 = 6;
/// Chunk type SHUTDOWN COMPLETE (RFC 9260 §3.3.13).
pub const CHUNK_SHUTDOWN_COMPLETE: u8 = 14;

/// Chunks [`SctpPacket::closing_flags`] reads at most: an ABORT follows only control
/// chunks, never DATA, and a packet of hundreds of tiny chunks costs no more than this.
pub const CLOSING_CHUNKS: usize = 16;

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

    /// The types of the chunks behind the header, in order (RFC 9260 §3.2: type, flags,
    /// a length of at least 4 counting the chunk's header, padding to a multiple of 4
    /// after). Ends at the packet's end, or after a chunk whose length field is missing or
    /// below 4 (nothing after it can be found).
    pub fn chunk_types(&self) -> impl Iterator<Item = u8> + '_ {
        let b = self.buffer.as_ref();
        let mut at = Some(HEADER_LEN);
        std::iter::from_fn(move || {
            let here = at?;
            let kind = *b.get(here)?;
            at = b
                .get(here + 2..here + 4)
                .map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])))
                .filter(|&len| len >= 4)
                .map(|len| here + len.next_multiple_of(4));
            Some(kind)
        })
    }

    /// The association's end in TCP's terms, for flow tables that age both alike: RST
    /// (0x04) for an ABORT, FIN (0x01) for a SHUTDOWN COMPLETE, whichever comes first
    /// (an ABORT may follow other control chunks: RFC 9260 §3.3.7) among the first
    /// [`CLOSING_CHUNKS`], else 0.
    #[inline]
    pub fn closing_flags(&self) -> u8 {
        self.chunk_types()
            .take(CLOSING_CHUNKS)
            .find_map(|kind| match kind {
                CHUNK_ABORT => Some(0x04),
                CHUNK_SHUTDOWN_COMPLETE => Some(0x01),
                _ => None,
            })
            .unwrap_or(0)
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

    /// A packet with the common header and then `chunks` (type, length field, bytes).
    fn packet(chunks: &[(u8, u16, usize)]) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_LEN];
        for &(kind, len, size) in chunks {
            let mut c = vec![0u8; size];
            c[0] = kind;
            if size >= 4 {
                c[2..4].copy_from_slice(&len.to_be_bytes());
            }
            b.extend(c);
        }
        b
    }

    #[test]
    fn an_abort_or_shutdown_complete_ends_the_association() {
        let alone = |kind: u8| {
            SctpPacket::new_checked(packet(&[(kind, 4, 4)]))
                .unwrap()
                .closing_flags()
        };
        assert_eq!((alone(CHUNK_ABORT), alone(CHUNK_SHUTDOWN_COMPLETE)), (0x04, 0x01));
        assert_eq!((alone(0), alone(1), alone(7)), (0, 0, 0), "DATA, INIT, SHUTDOWN");
        assert_eq!(
            SctpPacket::new_checked([0u8; 12]).unwrap().closing_flags(),
            0,
            "no chunk"
        );
        // An ABORT behind a SACK (16 bytes) and an ERROR of 5 bytes, padded to 8.
        let bundled = packet(&[(3, 16, 16), (9, 5, 8), (CHUNK_ABORT, 4, 4)]);
        let p = SctpPacket::new_checked(&bundled[..]).unwrap();
        assert_eq!(p.chunk_types().collect::<Vec<_>>(), [3, 9, CHUNK_ABORT]);
        assert_eq!(p.closing_flags(), 0x04);
        // Beyond the chunks read, an ABORT is not seen.
        let mut late = vec![(3, 4, 4); CLOSING_CHUNKS];
        late.push((CHUNK_ABORT, 4, 4));
        assert_eq!(SctpPacket::new_checked(packet(&late)).unwrap().closing_flags(), 0);
        late.remove(0);
        assert_eq!(SctpPacket::new_checked(packet(&late)).unwrap().closing_flags(), 0x04);
    }

    #[test]
    fn the_chunk_walk_stops_where_lengths_give_out() {
        let types = |b: Vec<u8>| SctpPacket::new_checked(b).unwrap().chunk_types().collect::<Vec<_>>();
        // A length below 4 hides whatever follows.
        assert_eq!(types(packet(&[(0, 3, 8), (CHUNK_ABORT, 4, 4)])), [0]);
        // A chunk cut short: its type is there, its length is not.
        assert_eq!(types(packet(&[(3, 16, 16), (CHUNK_ABORT, 0, 2)])), [3, CHUNK_ABORT]);
        // A length past the end: nothing after it.
        assert_eq!(types(packet(&[(0, 400, 8)])), [0]);
    }
}
