//! ICMPv6 (RFC 4443) and the neighbour discovery messages the vRouter answers (RFC 4861).

use std::net::Ipv6Addr;

use crate::bytes::{get_array, get_u16, get_u32};
use crate::ethernet::MacAddr;
use crate::icmp::{HEADER_LEN, IcmpPacket};
use crate::{Error, Layer, Result};

/// Destination unreachable.
pub const TYPE_DST_UNREACHABLE: u8 = 1;
/// Packet too big.
pub const TYPE_PACKET_TOO_BIG: u8 = 2;
/// Time exceeded.
pub const TYPE_TIME_EXCEEDED: u8 = 3;
/// Parameter problem.
pub const TYPE_PARAM_PROBLEM: u8 = 4;
/// Echo request.
pub const TYPE_ECHO_REQUEST: u8 = 128;
/// Echo reply.
pub const TYPE_ECHO_REPLY: u8 = 129;
/// Neighbour solicitation.
pub const TYPE_NEIGHBOR_SOLICIT: u8 = 135;
/// Neighbour advertisement.
pub const TYPE_NEIGHBOR_ADVERT: u8 = 136;

const OPT_SOURCE_LLADDR: u8 = 1;
const OPT_TARGET_LLADDR: u8 = 2;
const NA_ROUTER: u32 = 0x8000_0000;
const NA_SOLICITED: u32 = 0x4000_0000;
const NA_OVERRIDE: u32 = 0x2000_0000;
/// Target address plus the header: the smallest NS or NA.
const ND_LEN: usize = HEADER_LEN + 16;

/// An ICMPv6 message header (and, for neighbour discovery, its target and link-layer
/// address option). Error and echo bodies are the payload after [`buffer_len`](Self::buffer_len).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Icmpv6Repr {
    /// Destination unreachable.
    DstUnreachable {
        /// Code.
        code: u8,
    },
    /// Packet too big, with the MTU of the next hop.
    PacketTooBig {
        /// MTU.
        mtu: u32,
    },
    /// Time exceeded (code 0 hop limit, 1 reassembly).
    TimeExceeded {
        /// Code.
        code: u8,
    },
    /// Echo request.
    EchoRequest {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
    },
    /// Echo reply.
    EchoReply {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
    },
    /// Neighbour solicitation.
    NeighborSolicit {
        /// Address being resolved.
        target: Ipv6Addr,
        /// Source link-layer address option, if present.
        lladdr: Option<MacAddr>,
    },
    /// Neighbour advertisement.
    NeighborAdvert {
        /// Sender is a router.
        router: bool,
        /// Sent in answer to a solicitation.
        solicited: bool,
        /// Override an existing cache entry.
        override_: bool,
        /// Address advertised.
        target: Ipv6Addr,
        /// Target link-layer address option, if present.
        lladdr: Option<MacAddr>,
    },
    /// Any other header (including ND messages with a non-zero code).
    Other {
        /// Type.
        msg_type: u8,
        /// Code.
        code: u8,
        /// Type-specific bytes.
        rest: u32,
    },
}

/// Finds the link-layer address option of `kind` in an ND option list.
fn find_lladdr(mut opts: &[u8], kind: u8) -> Result<Option<MacAddr>> {
    let mut found = None;
    while !opts.is_empty() {
        if opts.len() < 2 {
            return Err(Error::truncated(Layer::Icmpv6, "option"));
        }
        let len = usize::from(opts[1]) * 8;
        if len == 0 {
            return Err(Error::invalid(Layer::Icmpv6, "option_length"));
        }
        if len > opts.len() {
            return Err(Error::truncated(Layer::Icmpv6, "option_length"));
        }
        if opts[0] == kind && found.is_none() {
            if len != 8 {
                return Err(Error::unsupported(Layer::Icmpv6, "option_length"));
            }
            found = Some(MacAddr(get_array(opts, 2)));
        }
        opts = &opts[len..];
    }
    Ok(found)
}

impl Icmpv6Repr {
    /// Reads the message after verifying the checksum with the pseudo-header.
    pub fn parse<T: AsRef<[u8]>>(p: &IcmpPacket<T>, src: Ipv6Addr, dst: Ipv6Addr) -> Result<Self> {
        if !p.verify_checksum_v6(src, dst) {
            return Err(Error::checksum(Layer::Icmpv6));
        }
        let (t, code, rest) = (p.msg_type(), p.code(), p.rest());
        let msg = p.as_bytes();
        let nd = |opt_kind| -> Result<(Ipv6Addr, Option<MacAddr>)> {
            if msg.len() < ND_LEN {
                return Err(Error::truncated(Layer::Icmpv6, "target"));
            }
            Ok((
                get_array::<16>(msg, HEADER_LEN).into(),
                find_lladdr(&msg[ND_LEN..], opt_kind)?,
            ))
        };
        Ok(match (t, code) {
            (TYPE_DST_UNREACHABLE, _) if rest == 0 => Icmpv6Repr::DstUnreachable { code },
            (TYPE_PACKET_TOO_BIG, 0) => Icmpv6Repr::PacketTooBig { mtu: rest },
            (TYPE_TIME_EXCEEDED, _) if rest == 0 => Icmpv6Repr::TimeExceeded { code },
            (TYPE_ECHO_REQUEST, 0) => Icmpv6Repr::EchoRequest {
                ident: get_u16(msg, 4),
                seq_no: get_u16(msg, 6),
            },
            (TYPE_ECHO_REPLY, 0) => Icmpv6Repr::EchoReply {
                ident: get_u16(msg, 4),
                seq_no: get_u16(msg, 6),
            },
            (TYPE_NEIGHBOR_SOLICIT, 0) if rest == 0 => {
                let (target, lladdr) = nd(OPT_SOURCE_LLADDR)?;
                Icmpv6Repr::NeighborSolicit { target, lladdr }
            }
            (TYPE_NEIGHBOR_ADVERT, 0) if rest & 0x1fff_ffff == 0 => {
                let (target, lladdr) = nd(OPT_TARGET_LLADDR)?;
                Icmpv6Repr::NeighborAdvert {
                    router: rest & NA_ROUTER != 0,
                    solicited: rest & NA_SOLICITED != 0,
                    override_: rest & NA_OVERRIDE != 0,
                    target,
                    lladdr,
                }
            }
            _ => Icmpv6Repr::Other {
                msg_type: t,
                code,
                rest: get_u32(msg, 4),
            },
        })
    }

    /// Bytes [`emit`](Self::emit) writes: 8, or 24/32 for neighbour discovery.
    pub const fn buffer_len(&self) -> usize {
        match self {
            Icmpv6Repr::NeighborSolicit { lladdr, .. } | Icmpv6Repr::NeighborAdvert { lladdr, .. } => {
                ND_LEN + if lladdr.is_some() { 8 } else { 0 }
            }
            _ => HEADER_LEN,
        }
    }

    /// Writes the message and the checksum over the whole buffer (so place any body first).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut IcmpPacket<T>, src: Ipv6Addr, dst: Ipv6Addr) {
        let echo = |ident: u16, seq: u16| (u32::from(ident) << 16) | u32::from(seq);
        let (t, code, rest) = match *self {
            Icmpv6Repr::DstUnreachable { code } => (TYPE_DST_UNREACHABLE, code, 0),
            Icmpv6Repr::PacketTooBig { mtu } => (TYPE_PACKET_TOO_BIG, 0, mtu),
            Icmpv6Repr::TimeExceeded { code } => (TYPE_TIME_EXCEEDED, code, 0),
            Icmpv6Repr::EchoRequest { ident, seq_no } => (TYPE_ECHO_REQUEST, 0, echo(ident, seq_no)),
            Icmpv6Repr::EchoReply { ident, seq_no } => (TYPE_ECHO_REPLY, 0, echo(ident, seq_no)),
            Icmpv6Repr::NeighborSolicit { .. } => (TYPE_NEIGHBOR_SOLICIT, 0, 0),
            Icmpv6Repr::NeighborAdvert {
                router,
                solicited,
                override_,
                ..
            } => {
                let mut flags = 0;
                if router {
                    flags |= NA_ROUTER;
                }
                if solicited {
                    flags |= NA_SOLICITED;
                }
                if override_ {
                    flags |= NA_OVERRIDE;
                }
                (TYPE_NEIGHBOR_ADVERT, 0, flags)
            }
            Icmpv6Repr::Other { msg_type, code, rest } => (msg_type, code, rest),
        };
        p.set_header(t, code, rest);
        let (target, lladdr, kind) = match *self {
            Icmpv6Repr::NeighborSolicit { target, lladdr } => (target, lladdr, OPT_SOURCE_LLADDR),
            Icmpv6Repr::NeighborAdvert { target, lladdr, .. } => (target, lladdr, OPT_TARGET_LLADDR),
            _ => {
                p.fill_checksum_v6(src, dst);
                return;
            }
        };
        let body = p.payload_mut();
        body[..16].copy_from_slice(&target.octets());
        if let Some(mac) = lladdr {
            body[16] = kind;
            body[17] = 1;
            body[18..24].copy_from_slice(&mac.0);
        }
        p.fill_checksum_v6(src, dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Reason;

    fn addrs() -> (Ipv6Addr, Ipv6Addr) {
        ("fe80::1".parse().unwrap(), "ff02::1:ff00:2".parse().unwrap())
    }

    fn round_trip(r: Icmpv6Repr, body: usize) {
        let (s, d) = addrs();
        let mut b = vec![0u8; r.buffer_len() + body];
        r.emit(&mut IcmpPacket::new_unchecked(&mut b[..]), s, d);
        let p = IcmpPacket::new_checked(&b[..], Layer::Icmpv6).unwrap();
        assert_eq!(Icmpv6Repr::parse(&p, s, d).unwrap(), r);
    }

    #[test]
    fn every_variant_round_trips() {
        let t: Ipv6Addr = "2001:db8::2".parse().unwrap();
        round_trip(Icmpv6Repr::EchoRequest { ident: 7, seq_no: 9 }, 16);
        round_trip(Icmpv6Repr::EchoReply { ident: 7, seq_no: 9 }, 0);
        round_trip(Icmpv6Repr::PacketTooBig { mtu: 1280 }, 48);
        round_trip(Icmpv6Repr::TimeExceeded { code: 0 }, 48);
        round_trip(Icmpv6Repr::DstUnreachable { code: 4 }, 48);
        round_trip(
            Icmpv6Repr::NeighborSolicit {
                target: t,
                lladdr: Some(MacAddr([2, 0, 0, 0, 0, 1])),
            },
            0,
        );
        round_trip(
            Icmpv6Repr::NeighborSolicit {
                target: t,
                lladdr: None,
            },
            0,
        );
        round_trip(
            Icmpv6Repr::NeighborAdvert {
                router: true,
                solicited: true,
                override_: false,
                target: t,
                lladdr: Some(MacAddr([2, 0, 0, 0, 0, 2])),
            },
            0,
        );
        round_trip(
            Icmpv6Repr::Other {
                msg_type: 4,
                code: 1,
                rest: 40,
            },
            8,
        );
    }

    #[test]
    fn checksum_includes_pseudo_header() {
        let (s, d) = addrs();
        let mut b = [0u8; 8];
        Icmpv6Repr::EchoRequest { ident: 1, seq_no: 1 }.emit(&mut IcmpPacket::new_unchecked(&mut b[..]), s, d);
        let p = IcmpPacket::new_checked(&b[..], Layer::Icmpv6).unwrap();
        assert!(Icmpv6Repr::parse(&p, s, d).is_ok());
        assert_eq!(
            Icmpv6Repr::parse(&p, "fe80::9".parse().unwrap(), d).unwrap_err().reason,
            Reason::Checksum
        );
        assert_eq!(
            Icmpv6Repr::parse(&p, s, "ff02::2".parse().unwrap()).unwrap_err().reason,
            Reason::Checksum
        );
    }

    #[test]
    fn nd_options_adversarial() {
        let (s, d) = addrs();
        let t: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let build = |opts: &[u8]| {
            let mut b = vec![0u8; ND_LEN + opts.len()];
            b[0] = TYPE_NEIGHBOR_SOLICIT;
            b[8..24].copy_from_slice(&t.octets());
            b[24..].copy_from_slice(opts);
            IcmpPacket::new_unchecked(&mut b[..]).fill_checksum_v6(s, d);
            b
        };
        let parse = |b: &[u8]| Icmpv6Repr::parse(&IcmpPacket::new_checked(b, Layer::Icmpv6).unwrap(), s, d);
        assert_eq!(
            parse(&build(&[1, 0, 0, 0, 0, 0, 0, 0])).unwrap_err().field,
            "option_length"
        );
        assert_eq!(
            parse(&build(&[1, 2, 0, 0, 0, 0, 0, 0])).unwrap_err().reason,
            Reason::Truncated
        );
        assert_eq!(parse(&build(&[1])).unwrap_err().reason, Reason::Truncated);
        // An unknown option is skipped; the lladdr after it is found.
        let r = parse(&build(&[14, 1, 9, 9, 9, 9, 9, 9, 1, 1, 2, 0, 0, 0, 0, 3])).unwrap();
        assert_eq!(
            r,
            Icmpv6Repr::NeighborSolicit {
                target: t,
                lladdr: Some(MacAddr([2, 0, 0, 0, 0, 3]))
            }
        );
        // A solicitation cut short before its target.
        let mut short = build(&[]);
        short.truncate(20);
        IcmpPacket::new_unchecked(&mut short[..]).fill_checksum_v6(s, d);
        assert_eq!(parse(&short).unwrap_err().field, "target");
    }
}
