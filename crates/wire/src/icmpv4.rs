//! ICMPv4 messages (RFC 792, RFC 1191 for the fragmentation-needed MTU).

use crate::icmp::{HEADER_LEN, IcmpPacket};
use crate::{Error, Layer, Result};

/// Echo reply.
pub const TYPE_ECHO_REPLY: u8 = 0;
/// Destination unreachable.
pub const TYPE_DST_UNREACHABLE: u8 = 3;
/// Echo request.
pub const TYPE_ECHO_REQUEST: u8 = 8;
/// Time exceeded.
pub const TYPE_TIME_EXCEEDED: u8 = 11;
/// Destination unreachable code: fragmentation needed and DF set.
pub const CODE_FRAG_NEEDED: u8 = 4;

/// The header of an ICMPv4 message; the body (echo data, or the offending datagram of an
/// error) is the payload after it. Every 8-byte header maps to exactly one value and
/// back, so nothing is lost: values the named variants cannot express are `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Icmpv4Repr {
    /// Echo request (code 0).
    EchoRequest {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
    },
    /// Echo reply (code 0).
    EchoReply {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
    },
    /// Destination unreachable; `next_hop_mtu` is used with code 4 (fragmentation needed).
    DstUnreachable {
        /// Code (0 net, 1 host, 3 port, 4 fragmentation needed, ...).
        code: u8,
        /// Next-hop MTU (RFC 1191), zero otherwise.
        next_hop_mtu: u16,
    },
    /// Time exceeded (code 0 TTL in transit, 1 reassembly).
    TimeExceeded {
        /// Code.
        code: u8,
    },
    /// Any other header.
    Other {
        /// Type.
        msg_type: u8,
        /// Code.
        code: u8,
        /// The four type-specific bytes.
        rest: u32,
    },
}

impl Icmpv4Repr {
    /// Reads the header after verifying the checksum over the whole message.
    pub fn parse<T: AsRef<[u8]>>(p: &IcmpPacket<T>) -> Result<Self> {
        if !p.verify_checksum_v4() {
            return Err(Error::checksum(Layer::Icmpv4));
        }
        let (t, code, rest) = (p.msg_type(), p.code(), p.rest());
        let (hi, lo) = ((rest >> 16) as u16, rest as u16);
        Ok(match (t, code) {
            (TYPE_ECHO_REQUEST, 0) => Icmpv4Repr::EchoRequest { ident: hi, seq_no: lo },
            (TYPE_ECHO_REPLY, 0) => Icmpv4Repr::EchoReply { ident: hi, seq_no: lo },
            (TYPE_DST_UNREACHABLE, _) if hi == 0 => Icmpv4Repr::DstUnreachable { code, next_hop_mtu: lo },
            (TYPE_TIME_EXCEEDED, _) if rest == 0 => Icmpv4Repr::TimeExceeded { code },
            _ => Icmpv4Repr::Other {
                msg_type: t,
                code,
                rest,
            },
        })
    }

    /// Header bytes [`emit`](Self::emit) writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Type, code and type-specific bytes.
    pub const fn fields(&self) -> (u8, u8, u32) {
        match *self {
            Icmpv4Repr::EchoRequest { ident, seq_no } => (TYPE_ECHO_REQUEST, 0, ((ident as u32) << 16) | seq_no as u32),
            Icmpv4Repr::EchoReply { ident, seq_no } => (TYPE_ECHO_REPLY, 0, ((ident as u32) << 16) | seq_no as u32),
            Icmpv4Repr::DstUnreachable { code, next_hop_mtu } => (TYPE_DST_UNREACHABLE, code, next_hop_mtu as u32),
            Icmpv4Repr::TimeExceeded { code } => (TYPE_TIME_EXCEEDED, code, 0),
            Icmpv4Repr::Other { msg_type, code, rest } => (msg_type, code, rest),
        }
    }

    /// Writes the header and the checksum over the whole buffer, so put the body in place
    /// first (or call [`IcmpPacket::fill_checksum_v4`] afterwards).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut IcmpPacket<T>) {
        let (t, c, rest) = self.fields();
        p.set_header(t, c, rest);
        p.fill_checksum_v4();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Reason;

    #[test]
    fn golden_echo() {
        // ping: type 8, id 0x1234, seq 1, data "ab"; checksum computed by hand.
        let b = [8, 0, 0x84, 0x68, 0x12, 0x34, 0, 1, b'a', b'b'];
        let p = IcmpPacket::new_checked(&b[..], Layer::Icmpv4).unwrap();
        assert_eq!(
            Icmpv4Repr::parse(&p).unwrap(),
            Icmpv4Repr::EchoRequest {
                ident: 0x1234,
                seq_no: 1
            }
        );
        let mut out = [0u8; 10];
        out[8..].copy_from_slice(b"ab");
        Icmpv4Repr::EchoRequest {
            ident: 0x1234,
            seq_no: 1,
        }
        .emit(&mut IcmpPacket::new_unchecked(&mut out[..]));
        assert_eq!(out, b);
    }

    #[test]
    fn frag_needed_and_time_exceeded() {
        for r in [
            Icmpv4Repr::DstUnreachable {
                code: CODE_FRAG_NEEDED,
                next_hop_mtu: 1400,
            },
            Icmpv4Repr::TimeExceeded { code: 0 },
            Icmpv4Repr::Other {
                msg_type: 3,
                code: 4,
                rest: 0x0001_0578,
            },
            Icmpv4Repr::Other {
                msg_type: 8,
                code: 1,
                rest: 7,
            },
        ] {
            let mut b = [0u8; 36];
            r.emit(&mut IcmpPacket::new_unchecked(&mut b[..]));
            let p = IcmpPacket::new_checked(&b[..], Layer::Icmpv4).unwrap();
            assert_eq!(Icmpv4Repr::parse(&p).unwrap(), r);
        }
    }

    #[test]
    fn adversarial() {
        for len in 0..8 {
            let e = IcmpPacket::new_checked(&[0u8; 8][..len], Layer::Icmpv4).unwrap_err();
            assert_eq!((e.layer, e.reason), (Layer::Icmpv4, Reason::Truncated));
        }
        let b = [8, 0, 0, 0, 0, 0, 0, 0];
        let e = Icmpv4Repr::parse(&IcmpPacket::new_checked(&b[..], Layer::Icmpv4).unwrap()).unwrap_err();
        assert_eq!(e.reason, Reason::Checksum);
    }
}
