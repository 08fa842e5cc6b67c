//! Toeplitz hashing as NICs compute it for receive-side scaling, so software steering
//! can agree with hardware queues.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The 40-byte key Microsoft's RSS verification suite uses, and many NICs default to.
pub const MICROSOFT_KEY: [u8; 40] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0, 0xd0, 0xca, 0x2b,
    0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac,
    0x01, 0xfa,
];

/// Longest input: two IPv6 addresses and two ports.
pub const MAX_INPUT: usize = 36;

/// A Toeplitz hasher with a per-position lookup table (one XOR per input byte).
pub struct Toeplitz {
    table: Box<[[u32; 256]; MAX_INPUT]>,
}

impl Toeplitz {
    /// Builds the table for a 40-byte key.
    pub fn new(key: &[u8; 40]) -> Self {
        let mut table = Box::new([[0u32; 256]; MAX_INPUT]);
        for (pos, row) in table.iter_mut().enumerate() {
            // The 40 key bits starting at bit 8*pos.
            let window = u64::from_be_bytes([
                key[pos],
                key[pos + 1],
                key[pos + 2],
                key[pos + 3],
                key[pos + 4],
                0,
                0,
                0,
            ]);
            for (value, slot) in row.iter_mut().enumerate() {
                let mut h = 0u32;
                for bit in 0..8 {
                    if value & (0x80 >> bit) != 0 {
                        h ^= (window << bit >> 32) as u32;
                    }
                }
                *slot = h;
            }
        }
        Toeplitz { table }
    }

    /// Hash of up to [`MAX_INPUT`] bytes (longer input is cut at 36 bytes).
    #[inline]
    pub fn hash(&self, input: &[u8]) -> u32 {
        input
            .iter()
            .zip(self.table.iter())
            .fold(0, |h, (&b, row)| h ^ row[usize::from(b)])
    }

    /// Hash of source address, destination address and, if given, source and destination
    /// ports: the RSS input order. Mixed families hash as `None`.
    pub fn hash_tuple(&self, src: IpAddr, dst: IpAddr, ports: Option<(u16, u16)>) -> Option<u32> {
        let mut buf = [0u8; MAX_INPUT];
        let mut n = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => put_v4(&mut buf, s, d),
            (IpAddr::V6(s), IpAddr::V6(d)) => put_v6(&mut buf, s, d),
            _ => return None,
        };
        if let Some((sp, dp)) = ports {
            buf[n..n + 2].copy_from_slice(&sp.to_be_bytes());
            buf[n + 2..n + 4].copy_from_slice(&dp.to_be_bytes());
            n += 4;
        }
        Some(self.hash(&buf[..n]))
    }
}

fn put_v4(buf: &mut [u8; MAX_INPUT], s: Ipv4Addr, d: Ipv4Addr) -> usize {
    buf[..4].copy_from_slice(&s.octets());
    buf[4..8].copy_from_slice(&d.octets());
    8
}

fn put_v6(buf: &mut [u8; MAX_INPUT], s: Ipv6Addr, d: Ipv6Addr) -> usize {
    buf[..16].copy_from_slice(&s.octets());
    buf[16..32].copy_from_slice(&d.octets());
    32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Microsoft's "Verifying the RSS Hash Calculation" vectors:
    /// (destination, dst port, source, src port, hash of IPs, hash with ports).
    const V4: [(&str, u16, &str, u16, u32, u32); 5] = [
        ("161.142.100.80", 1766, "66.9.149.187", 2794, 0x323e8fc2, 0x51ccc178),
        ("65.69.140.83", 4739, "199.92.111.2", 14230, 0xd718262a, 0xc626b0ea),
        ("12.22.207.184", 38024, "24.19.198.95", 12898, 0xd2d0a5de, 0x5c2b394a),
        ("209.142.163.6", 2217, "38.27.205.30", 48228, 0x82989176, 0xafc7327f),
        ("202.188.127.2", 1303, "153.39.163.191", 44251, 0x5d1809c5, 0x10e828a2),
    ];
    const V6: [(&str, u16, &str, u16, u32, u32); 3] = [
        (
            "3ffe:2501:200:3::1",
            1766,
            "3ffe:2501:200:1fff::7",
            2794,
            0x2cc18cd5,
            0x40207d3d,
        ),
        (
            "ff02::1",
            4739,
            "3ffe:501:8::260:97ff:fe40:efab",
            14230,
            0x0f0c461c,
            0xdde51bbf,
        ),
        (
            "fe80::200:f8ff:fe21:67cf",
            38024,
            "3ffe:1900:4545:3:200:f8ff:fe21:67cf",
            44251,
            0x4b61e985,
            0x02d1feef,
        ),
    ];

    #[test]
    fn microsoft_verification_vectors() {
        let t = Toeplitz::new(&MICROSOFT_KEY);
        for (dst, dp, src, sp, ip_only, with_ports) in V4.iter().chain(V6.iter()) {
            let (s, d): (IpAddr, IpAddr) = (src.parse().unwrap(), dst.parse().unwrap());
            assert_eq!(t.hash_tuple(s, d, None), Some(*ip_only), "{src} -> {dst}");
            assert_eq!(
                t.hash_tuple(s, d, Some((*sp, *dp))),
                Some(*with_ports),
                "{src}:{sp} -> {dst}:{dp}"
            );
        }
    }

    #[test]
    fn mixed_families_have_no_hash() {
        let t = Toeplitz::new(&MICROSOFT_KEY);
        assert_eq!(
            t.hash_tuple("1.2.3.4".parse().unwrap(), "::1".parse().unwrap(), None),
            None
        );
    }
}
