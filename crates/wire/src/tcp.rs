//! TCP header (RFC 9293), with the checksum over the IPv4 or IPv6 pseudo-header.

use std::net::IpAddr;

use crate::bytes::{Field, get_u16, get_u32, set_u16, set_u32};
use crate::checksum;
use crate::ip::IpProtocol;
use crate::options::HeaderOptions;
use crate::{Error, Layer, Result};

mod field {
    use super::Field;
    pub(super) const SRC_PORT: Field = 0..2;
    pub(super) const DST_PORT: Field = 2..4;
    pub(super) const SEQ: Field = 4..8;
    pub(super) const ACK: Field = 8..12;
    pub(super) const OFF_FLAGS: Field = 12..14;
    pub(super) const WINDOW: Field = 14..16;
    pub(super) const CHECKSUM: Field = 16..18;
    pub(super) const URGENT: Field = 18..20;
}

/// Length of a header without options.
pub const HEADER_LEN: usize = field::URGENT.end;

/// TCP control bits (the nine bits after the data offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u16);

impl TcpFlags {
    /// No more data from sender.
    pub const FIN: u16 = 0x001;
    /// Synchronise sequence numbers.
    pub const SYN: u16 = 0x002;
    /// Reset the connection.
    pub const RST: u16 = 0x004;
    /// Push.
    pub const PSH: u16 = 0x008;
    /// Acknowledgment field is significant.
    pub const ACK: u16 = 0x010;
    /// Urgent pointer is significant.
    pub const URG: u16 = 0x020;
    /// ECN echo.
    pub const ECE: u16 = 0x040;
    /// Congestion window reduced.
    pub const CWR: u16 = 0x080;
    /// ECN nonce (historic, RFC 3540).
    pub const NS: u16 = 0x100;

    /// True if every bit of `mask` is set.
    #[inline]
    pub const fn contains(self, mask: u16) -> bool {
        self.0 & mask == mask
    }
}

/// A zero-copy view of a TCP segment; the buffer is exactly the segment (the IP payload).
#[derive(Debug, Clone)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Wraps without checking.
    pub const fn new_unchecked(buffer: T) -> Self {
        TcpPacket { buffer }
    }

    /// Wraps after checking `20 <= data offset * 4 <= buffer length`.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = TcpPacket { buffer };
        let len = p.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::truncated(Layer::Tcp, "header"));
        }
        let hl = p.header_len();
        if hl < HEADER_LEN {
            return Err(Error::invalid(Layer::Tcp, "data_offset"));
        }
        if hl > len {
            return Err(Error::truncated(Layer::Tcp, "options"));
        }
        Ok(p)
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
    /// Sequence number.
    #[inline]
    pub fn seq_number(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::SEQ.start)
    }
    /// Acknowledgment number.
    #[inline]
    pub fn ack_number(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::ACK.start)
    }
    /// Header length in bytes (data offset * 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::OFF_FLAGS.start] >> 4) * 4
    }
    /// Control bits.
    #[inline]
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(get_u16(self.buffer.as_ref(), field::OFF_FLAGS.start) & 0x01ff)
    }
    /// Receive window.
    #[inline]
    pub fn window(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::WINDOW.start)
    }
    /// Checksum as stored.
    #[inline]
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM.start)
    }
    /// Urgent pointer.
    #[inline]
    pub fn urgent(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::URGENT.start)
    }
    /// Option bytes.
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }
    /// Payload.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }

    /// True when the checksum verifies over the whole buffer. Always true when fuzzing.
    pub fn verify_checksum(&self, src: IpAddr, dst: IpAddr) -> bool {
        if cfg!(fuzzing) {
            return true;
        }
        let seg = self.buffer.as_ref();
        let pseudo = checksum::pseudo_header(src, dst, IpProtocol::Tcp.into(), seg.len() as u32);
        checksum::finish(checksum::combine(&[pseudo, checksum::sum(seg)])) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM.start, value);
    }

    /// Computes and stores the checksum over the whole buffer.
    pub fn fill_checksum(&mut self, src: IpAddr, dst: IpAddr) {
        self.set_checksum(0);
        let seg = self.buffer.as_ref();
        let pseudo = checksum::pseudo_header(src, dst, IpProtocol::Tcp.into(), seg.len() as u32);
        let c = checksum::finish(checksum::combine(&[pseudo, checksum::sum(seg)]));
        self.set_checksum(c);
    }
}

/// The fields of a TCP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TcpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq_number: u32,
    /// Acknowledgment number.
    pub ack_number: u32,
    /// Control bits.
    pub flags: TcpFlags,
    /// Receive window.
    pub window: u16,
    /// Urgent pointer.
    pub urgent: u16,
    /// Options.
    pub options: HeaderOptions,
}

impl TcpRepr {
    /// Reads the header and verifies the checksum against the enclosing addresses.
    pub fn parse<T: AsRef<[u8]>>(p: &TcpPacket<T>, src: IpAddr, dst: IpAddr) -> Result<Self> {
        if !p.verify_checksum(src, dst) {
            return Err(Error::checksum(Layer::Tcp));
        }
        Ok(TcpRepr {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
            seq_number: p.seq_number(),
            ack_number: p.ack_number(),
            flags: p.flags(),
            window: p.window(),
            urgent: p.urgent(),
            // data offset * 4 - 20 is a multiple of 4 and at most 40.
            options: HeaderOptions::new(p.options()).unwrap_or_default(),
        })
    }

    /// Header bytes [`emit`](Self::emit) writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.options.len()
    }

    /// Writes the header with a zero checksum; call [`TcpPacket::fill_checksum`] once the
    /// payload is in place.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut TcpPacket<T>) {
        let hl = self.buffer_len();
        let b = p.buffer.as_mut();
        set_u16(b, field::SRC_PORT.start, self.src_port);
        set_u16(b, field::DST_PORT.start, self.dst_port);
        set_u32(b, field::SEQ.start, self.seq_number);
        set_u32(b, field::ACK.start, self.ack_number);
        set_u16(
            b,
            field::OFF_FLAGS.start,
            ((hl as u16 / 4) << 12) | (self.flags.0 & 0x01ff),
        );
        set_u16(b, field::WINDOW.start, self.window);
        set_u16(b, field::CHECKSUM.start, 0);
        set_u16(b, field::URGENT.start, self.urgent);
        b[HEADER_LEN..hl].copy_from_slice(self.options.as_slice());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Reason;
    use std::net::Ipv4Addr;

    const SRC: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 1, 1, 1));
    const DST: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 1, 1, 2));

    fn syn() -> Vec<u8> {
        let r = TcpRepr {
            src_port: 40000,
            dst_port: 80,
            seq_number: 0x01020304,
            ack_number: 0,
            flags: TcpFlags(TcpFlags::SYN),
            window: 65535,
            urgent: 0,
            options: HeaderOptions::new(&[2, 4, 0x05, 0xb4]).unwrap(),
        };
        let mut b = vec![0u8; r.buffer_len() + 3];
        let mut p = TcpPacket::new_unchecked(&mut b[..]);
        r.emit(&mut p);
        p.fill_checksum(SRC, DST);
        b
    }

    #[test]
    fn golden_and_round_trip() {
        let b = syn();
        assert_eq!(&b[12..14], &[0x60, 0x02]);
        let p = TcpPacket::new_checked(&b[..]).unwrap();
        let r = TcpRepr::parse(&p, SRC, DST).unwrap();
        assert!(r.flags.contains(TcpFlags::SYN));
        assert_eq!(r.options.as_slice(), &[2, 4, 5, 0xb4]);
        assert_eq!(p.payload().len(), 3);
        let mut b2 = b.clone();
        b2[19] ^= 0xff;
        let e = TcpRepr::parse(&TcpPacket::new_checked(&b2[..]).unwrap(), SRC, DST).unwrap_err();
        assert_eq!(e.reason, Reason::Checksum);
    }

    #[test]
    fn adversarial() {
        let b = syn();
        for len in 0..24 {
            assert_eq!(TcpPacket::new_checked(&b[..len]).unwrap_err().reason, Reason::Truncated);
        }
        for off in 0..5u8 {
            let mut x = b.clone();
            x[12] = off << 4;
            assert_eq!(TcpPacket::new_checked(&x[..]).unwrap_err().field, "data_offset");
        }
        let mut x = b.clone();
        x[12] = 0xf0;
        assert_eq!(TcpPacket::new_checked(&x[..]).unwrap_err().field, "options");
    }
}
