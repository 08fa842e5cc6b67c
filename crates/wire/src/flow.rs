//! The flow key (VRF + 5-tuple) and the hashes computed from it.
//!
//! The key is 48 bytes with no implicit padding, so it is read as six 64-bit words and
//! hashed with a few folded multiplies: fast, fixed-seed (identical on every worker and
//! every run, which ECMP stickiness and RSS-style steering need), and well mixed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Address family marker in a [`FlowKey`].
pub const FAMILY_V4: u8 = 4;
/// Address family marker in a [`FlowKey`].
pub const FAMILY_V6: u8 = 6;

/// What identifies a flow: VRF, addresses, protocol and ports (the ICMP echo identifier
/// in both port fields for ICMP echo; zero where there are no ports).
///
/// IPv4 addresses occupy the first four bytes of `src`/`dst`; the rest stays zero.
#[repr(C, align(8))]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug, PartialOrd, Ord)]
pub struct FlowKey {
    /// Source address bytes.
    pub src: [u8; 16],
    /// Destination address bytes.
    pub dst: [u8; 16],
    /// Source port (or ICMP identifier).
    pub src_port: u16,
    /// Destination port (or ICMP identifier).
    pub dst_port: u16,
    /// Routing instance; the parser leaves 0 and the pipeline fills it in.
    pub vrf: u32,
    /// IP protocol number.
    pub proto: u8,
    /// [`FAMILY_V4`], [`FAMILY_V6`] or 0 for "no IP".
    pub family: u8,
    pad: [u8; 6],
}

const _: () = assert!(core::mem::size_of::<FlowKey>() == 48);

const SEEDS: [u64; 4] = [
    0x243f_6a88_85a3_08d3,
    0x1319_8a2e_0370_7344,
    0xa409_3822_299f_31d0,
    0x082e_fa98_ec4e_6c89,
];

#[inline(always)]
fn fold_mul(a: u64, b: u64) -> u64 {
    let m = u128::from(a) * u128::from(b);
    (m as u64) ^ ((m >> 64) as u64)
}

#[inline(always)]
fn word(b: &[u8; 16], half: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[half * 8..half * 8 + 8]);
    u64::from_le_bytes(w)
}

/// `vrf 1 10.0.1.2 40000 -> 10.0.2.2 53 proto 17`: how flows are shown to operators.
impl std::fmt::Display for FlowKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ip = |a: Option<IpAddr>| a.map_or_else(|| "?".to_string(), |a| a.to_string());
        write!(
            f,
            "vrf {} {} {} -> {} {} proto {}",
            self.vrf,
            ip(self.src_ip()),
            self.src_port,
            ip(self.dst_ip()),
            self.dst_port,
            self.proto
        )
    }
}

impl FlowKey {
    /// An IPv4 flow.
    #[inline]
    pub fn v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, src_port: u16, dst_port: u16) -> Self {
        // Built from words so that writing one takes six 8-byte stores, not a dozen
        // narrow ones (the parser writes one per packet).
        let addr = |a: Ipv4Addr| u64::from(u32::from_le_bytes(a.octets()));
        FlowKey::from_words([
            addr(src),
            0,
            addr(dst),
            0,
            u64::from(src_port) | u64::from(dst_port) << 16,
            u64::from(proto) | u64::from(FAMILY_V4) << 8,
        ])
    }

    /// An IPv6 flow.
    #[inline]
    pub fn v6(src: Ipv6Addr, dst: Ipv6Addr, proto: u8, src_port: u16, dst_port: u16) -> Self {
        FlowKey {
            src: src.octets(),
            dst: dst.octets(),
            proto,
            src_port,
            dst_port,
            family: FAMILY_V6,
            ..Default::default()
        }
    }

    /// The same key with a VRF set.
    #[inline]
    pub const fn with_vrf(mut self, vrf: u32) -> Self {
        self.vrf = vrf;
        self
    }

    /// Source address as an `IpAddr` (`None` if the key holds no IP flow).
    pub fn src_ip(&self) -> Option<IpAddr> {
        Self::ip(self.family, &self.src)
    }

    /// Destination address as an `IpAddr`.
    pub fn dst_ip(&self) -> Option<IpAddr> {
        Self::ip(self.family, &self.dst)
    }

    fn ip(family: u8, b: &[u8; 16]) -> Option<IpAddr> {
        match family {
            FAMILY_V4 => Some(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))),
            FAMILY_V6 => Some(IpAddr::V6(Ipv6Addr::from(*b))),
            _ => None,
        }
    }

    /// The key of the opposite direction (addresses and ports swapped).
    ///
    /// ```
    /// use std::net::Ipv4Addr;
    /// use wire::flow::FlowKey;
    /// let k = FlowKey::v4(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2), 6, 40000, 80);
    /// assert_eq!(k.reversed().reversed(), k);
    /// assert_eq!(k.symmetric_hash(), k.reversed().symmetric_hash());
    /// ```
    #[inline]
    pub const fn reversed(&self) -> Self {
        let mut r = *self;
        r.src = self.dst;
        r.dst = self.src;
        r.src_port = self.dst_port;
        r.dst_port = self.src_port;
        r
    }

    /// The key as six little-endian words: the form the flow table stores and compares.
    #[inline]
    pub fn to_words(&self) -> [u64; 6] {
        [
            word(&self.src, 0),
            word(&self.src, 1),
            word(&self.dst, 0),
            word(&self.dst, 1),
            u64::from(self.src_port) | u64::from(self.dst_port) << 16 | u64::from(self.vrf) << 32,
            u64::from(self.proto) | u64::from(self.family) << 8,
        ]
    }

    /// The inverse of [`to_words`](Self::to_words).
    ///
    /// ```
    /// use std::net::Ipv4Addr;
    /// use wire::flow::FlowKey;
    /// let k = FlowKey::v4(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2), 17, 1, 2).with_vrf(7);
    /// assert_eq!(FlowKey::from_words(k.to_words()), k);
    /// ```
    #[inline]
    pub fn from_words(w: [u64; 6]) -> Self {
        let half = |a: u64, b: u64| {
            let mut h = [0u8; 16];
            h[..8].copy_from_slice(&a.to_le_bytes());
            h[8..].copy_from_slice(&b.to_le_bytes());
            h
        };
        FlowKey {
            src: half(w[0], w[1]),
            dst: half(w[2], w[3]),
            src_port: w[4] as u16,
            dst_port: (w[4] >> 16) as u16,
            vrf: (w[4] >> 32) as u32,
            proto: w[5] as u8,
            family: (w[5] >> 8) as u8,
            pad: [0; 6],
        }
    }

    /// A 64-bit hash of the whole key (VRF included), fixed-seeded.
    ///
    /// An IPv4 key takes two multiplies instead of four: its two 4-byte addresses are
    /// multiplied together, then the ports, VRF and protocol folded in. Each multiplicand
    /// keeps a seed's upper half, so no choice of addresses zeroes one and collapses every
    /// port pair of two hosts onto one value. (The other address bytes of an IPv4 key are
    /// zero by construction; were they not, such keys would only collide more.)
    #[inline]
    pub fn hash(&self) -> u64 {
        if self.family == FAMILY_V4 {
            let w = self.to_words();
            let a = fold_mul(w[0] as u32 as u64 ^ SEEDS[0], w[2] as u32 as u64 ^ SEEDS[1]);
            return fold_mul(a ^ w[4] ^ SEEDS[2], w[5] ^ SEEDS[3]);
        }
        let meta = u64::from(self.src_port)
            | u64::from(self.dst_port) << 16
            | u64::from(self.proto) << 32
            | u64::from(self.family) << 40;
        let a = fold_mul(word(&self.src, 0) ^ SEEDS[0], word(&self.src, 1) ^ SEEDS[1]);
        let b = fold_mul(word(&self.dst, 0) ^ SEEDS[2], word(&self.dst, 1) ^ SEEDS[3]);
        let c = fold_mul(meta ^ SEEDS[1], u64::from(self.vrf) ^ SEEDS[2]);
        fold_mul(a ^ c.rotate_left(29), b ^ SEEDS[0])
    }

    /// A hash equal for both directions of a connection: the endpoints are put in a
    /// canonical order first.
    #[inline]
    pub fn symmetric_hash(&self) -> u64 {
        if (self.src, self.src_port) > (self.dst, self.dst_port) {
            self.reversed().hash()
        } else {
            self.hash()
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn displays_as_operators_read_it() {
        let k = FlowKey::v4(Ipv4Addr::new(10, 0, 1, 2), Ipv4Addr::new(10, 0, 2, 2), 17, 40000, 53).with_vrf(1);
        assert_eq!(k.to_string(), "vrf 1 10.0.1.2 40000 -> 10.0.2.2 53 proto 17");
        let k6 = FlowKey::v6("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap(), 6, 1, 2);
        assert_eq!(k6.to_string(), "vrf 0 fd00::1 1 -> fd00::2 2 proto 6");
    }
    use super::*;

    #[test]
    fn hash_depends_on_every_field() {
        let base = FlowKey::v4(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2), 17, 1000, 53);
        let variants = [
            FlowKey::v4(Ipv4Addr::new(10, 0, 0, 3), Ipv4Addr::new(10, 0, 0, 2), 17, 1000, 53),
            FlowKey::v4(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 3), 17, 1000, 53),
            FlowKey::v4(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2), 6, 1000, 53),
            FlowKey::v4(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2), 17, 1001, 53),
            FlowKey::v4(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2), 17, 1000, 54),
            base.with_vrf(1),
            base.reversed(),
        ];
        for v in variants {
            assert_ne!(v.hash(), base.hash(), "{v:?}");
        }
    }

    #[test]
    fn symmetric_hash_ignores_direction_only() {
        let k = FlowKey::v6(
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
            6,
            5555,
            443,
        );
        assert_eq!(k.symmetric_hash(), k.reversed().symmetric_hash());
        let other = FlowKey { src_port: 5556, ..k };
        assert_ne!(k.symmetric_hash(), other.symmetric_hash());
    }

    #[test]
    fn low_bits_spread_over_buckets() {
        // 64K sequential source ports into 1024 buckets: no bucket far from the mean of 64.
        let mut buckets = vec![0u32; 1024];
        for p in 0..65536u32 {
            let k = FlowKey::v4(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2), 6, p as u16, 80);
            buckets[(k.hash() & 1023) as usize] += 1;
        }
        let (min, max) = (buckets.iter().min().unwrap(), buckets.iter().max().unwrap());
        assert!(*min > 25 && *max < 110, "min {min} max {max}");
    }

    #[test]
    fn ipv4_keys_spread_in_every_bit_range_the_table_uses() {
        // Sequential sources (or destinations, or VRFs) with one port pair: the flow table
        // takes its first bucket from the low bits, its second from bits 32 and up, and the
        // home slot from bits 24 to 31. Each range spreads 64K keys over 256 values evenly.
        let keys: [fn(u32) -> FlowKey; 3] = [
            |i| {
                FlowKey::v4(
                    Ipv4Addr::from(0x0a00_0000 + i),
                    Ipv4Addr::new(10, 9, 0, 1),
                    17,
                    5000,
                    53,
                )
            },
            |i| {
                FlowKey::v4(
                    Ipv4Addr::new(10, 9, 0, 1),
                    Ipv4Addr::from(0x0a00_0000 + i),
                    6,
                    40000,
                    443,
                )
            },
            |i| FlowKey::v4(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2), 6, 1, 2).with_vrf(i),
        ];
        for (n, key) in keys.iter().enumerate() {
            for shift in [0, 24, 32, 48] {
                let mut counts = vec![0u32; 256];
                for i in 0..65536 {
                    counts[(key(i).hash() >> shift & 0xff) as usize] += 1;
                }
                let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
                assert!(
                    *min > 180 && *max < 340,
                    "keys {n}, bits from {shift}: min {min} max {max}"
                );
            }
        }
    }
}
