//! Internet checksum (RFC 1071), pseudo-headers, and incremental update (RFC 1624).
//!
//! Sums are kept as `u32` accumulators and folded once at the end, so a pseudo-header
//! and a payload can be summed separately and combined with [`combine`].

use std::net::{Ipv4Addr, Ipv6Addr};

/// Ones-complement sum of `data` (folded to 16 bits, not inverted). An odd trailing byte
/// is padded with zero, as RFC 1071 requires.
///
/// Words are added eight bytes at a time in native byte order and swapped once at the end:
/// the ones-complement sum is byte-order independent (RFC 1071 section 2(B)).
#[inline]
pub fn sum(data: &[u8]) -> u32 {
    let mut acc: u64 = 0;
    let mut carries: u64 = 0;
    let mut add = |w: u64| {
        let (s, o) = acc.overflowing_add(w);
        acc = s;
        carries += u64::from(o);
    };
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        add(u64::from_ne_bytes(w));
    }
    // The tail in 4-, 2- and 1-byte steps (a variable-length copy would call memcpy). Each
    // 16-bit word keeps its bytes together, and 16-bit lanes are equivalent modulo 0xffff,
    // so where in the accumulator a word lands does not matter.
    let mut rest = chunks.remainder();
    if rest.len() >= 4 {
        add(u64::from(u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]])));
        rest = &rest[4..];
    }
    if rest.len() >= 2 {
        add(u64::from(u16::from_ne_bytes([rest[0], rest[1]])));
        rest = &rest[2..];
    }
    if let [last] = rest {
        add(u64::from(u16::from_ne_bytes([*last, 0])));
    }
    let folded = fold64((acc & 0xffff_ffff) + (acc >> 32) + carries);
    let mut v = folded;
    while v >> 16 != 0 {
        v = (v & 0xffff) + (v >> 16);
    }
    u32::from(u16::from_be(v as u16))
}

#[inline]
fn fold64(mut acc: u64) -> u32 {
    while acc >> 32 != 0 {
        acc = (acc & 0xffff_ffff) + (acc >> 32);
    }
    acc as u32
}

/// Adds partial sums together.
#[inline]
pub fn combine(sums: &[u32]) -> u32 {
    fold64(sums.iter().map(|&s| u64::from(s)).sum())
}

/// Folds a partial sum to 16 bits and inverts it: the value written into a header.
#[inline]
pub fn finish(acc: u32) -> u16 {
    // Two folds suffice for any u32: the first leaves at most 0x1fffe, the second 0xffff.
    let acc = (acc & 0xffff) + (acc >> 16);
    let acc = (acc & 0xffff) + (acc >> 16);
    !(acc as u16)
}

/// Checksum of `data`, ready to store (the field inside `data` must be zero when computing,
/// or the result is 0 when verifying a correct header).
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    finish(sum(data))
}

/// True when an IPv4 header (IHL*4 bytes: 20 to 60, a multiple of 4) checksums to zero.
///
/// The hot path's form of `checksum(hdr) == 0`. The ones' complement sum is all ones
/// exactly when the plain sum of the header's words is a non-zero multiple of 65535
/// (2^16, 2^32 and 2^64 are all 1 modulo 65535), and that holds in either byte order (a
/// byte swap multiplies a 16-bit word by 256 modulo 65535, which is invertible), so one
/// remainder (a multiply) replaces the carry folds. The common 20-byte header is summed
/// as two 64-bit words and one 32-bit word with end-around carries (each carry is 2^64,
/// which is 1 modulo 65535; and the sum stays non-zero exactly when the header is);
/// longer ones as 32-bit words into a `u64`, where fifteen cannot overflow.
#[inline(always)]
pub fn ipv4_header_valid(hdr: &[u8]) -> bool {
    let acc = if let Ok(h) = <&[u8; 20]>::try_from(hdr) {
        let (a, rest) = h.split_first_chunk::<8>().expect("20 > 8");
        let (b, c) = rest.split_first_chunk::<8>().expect("12 > 8");
        let c = c.first_chunk::<4>().expect("4 bytes left");
        let (s, carry) = u64::from_ne_bytes(*a).overflowing_add(u64::from_ne_bytes(*b));
        let (s, carry2) = (s + u64::from(carry)).overflowing_add(u64::from(u32::from_ne_bytes(*c)));
        s + u64::from(carry2)
    } else {
        hdr.chunks_exact(4)
            .map(|w| u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]])))
            .sum()
    };
    // A multiple of 65535 times its inverse modulo 2^64 stays at most MAX / 65535; any
    // other value lands above (the divisibility test compilers use, written out so the
    // compiler does not trade it for a division by multiplication).
    const INVERSE: u64 = 0xfffe_fffe_fffe_ffff;
    const _: () = assert!(INVERSE.wrapping_mul(0xffff) == 1);
    acc != 0 && acc.wrapping_mul(INVERSE) <= u64::MAX / 0xffff
}

/// Partial sum of the IPv4 pseudo-header (RFC 768 / RFC 793).
#[inline]
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: u32) -> u32 {
    let s = u32::from(src);
    let d = u32::from(dst);
    combine(&[
        s >> 16,
        s & 0xffff,
        d >> 16,
        d & 0xffff,
        u32::from(protocol),
        length >> 16,
        length & 0xffff,
    ])
}

/// Partial sum of the IPv6 pseudo-header (RFC 8200 section 8.1).
#[inline]
pub fn pseudo_header_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, length: u32) -> u32 {
    combine(&[
        sum(&src.octets()),
        sum(&dst.octets()),
        length >> 16,
        length & 0xffff,
        u32::from(next_header),
    ])
}

/// Partial sum of the pseudo-header for either address family.
///
/// Both addresses must be of the same family; a mixed pair sums the IPv6 form of both.
#[inline]
pub fn pseudo_header(src: std::net::IpAddr, dst: std::net::IpAddr, protocol: u8, length: u32) -> u32 {
    use std::net::IpAddr::V4;
    match (src, dst) {
        (V4(s), V4(d)) => pseudo_header_v4(s, d, protocol, length),
        (s, d) => pseudo_header_v6(to_v6(s), to_v6(d), protocol, length),
    }
}

fn to_v6(a: std::net::IpAddr) -> Ipv6Addr {
    match a {
        std::net::IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        std::net::IpAddr::V6(v6) => v6,
    }
}

/// RFC 1624 eqn. 3: the new checksum after a 16-bit word changes from `old` to `new`.
///
/// ```
/// // Decrementing the TTL of an IPv4 header: TTL is the high byte of word 4.
/// let mut hdr = [0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
/// let c = wire::checksum::checksum(&hdr);
/// hdr[10..12].copy_from_slice(&c.to_be_bytes());
/// let old = u16::from_be_bytes([hdr[8], hdr[9]]);
/// hdr[8] -= 1;
/// let new = u16::from_be_bytes([hdr[8], hdr[9]]);
/// let updated = wire::checksum::update_u16(c, old, new);
/// hdr[10..12].copy_from_slice(&updated.to_be_bytes());
/// assert_eq!(wire::checksum::checksum(&hdr), 0);
/// ```
#[inline]
pub fn update_u16(checksum: u16, old: u16, new: u16) -> u16 {
    // HC' = ~(~HC + ~m + m')
    finish(u32::from(!checksum) + u32::from(!old) + u32::from(new))
}

/// The IPv4 header checksum after the TTL drops by one: [`update_u16`] for that case alone
/// (the TTL is the high byte of its word, so the sum falls by 0x0100 and the checksum rises
/// by it, with the end-around carry), as routers do it per packet.
#[inline]
pub fn ttl_decremented(checksum: u16) -> u16 {
    let c = u32::from(checksum) + 0x0100;
    // 0xffff and a carry out both wrap, as eqn. 3's complement of a sum would.
    (c + u32::from(c >= 0xffff)) as u16
}

/// RFC 1624 update for a 32-bit field (an IPv4 address, say) changing from `old` to `new`.
#[inline]
pub fn update_u32(checksum: u16, old: u32, new: u32) -> u16 {
    let c = update_u16(checksum, (old >> 16) as u16, (new >> 16) as u16);
    update_u16(c, old as u16, new as u16)
}

/// RFC 1624 update for a 128-bit field (an IPv6 address in an L4 pseudo-header).
#[inline]
pub fn update_u128(checksum: u16, old: &[u8; 16], new: &[u8; 16]) -> u16 {
    let mut acc = u32::from(!checksum);
    for i in (0..16).step_by(2) {
        acc += u32::from(!u16::from_be_bytes([old[i], old[i + 1]]));
        acc += u32::from(u16::from_be_bytes([new[i], new[i + 1]]));
    }
    finish(acc)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ttl_decrement_agrees_with_eqn_3_for_every_checksum() {
        for c in 0..=u16::MAX {
            for (ttl, proto) in [(64u8, 17u8), (1, 6), (255, 0)] {
                let old = u16::from_be_bytes([ttl, proto]);
                let new = u16::from_be_bytes([ttl - 1, proto]);
                assert_eq!(
                    super::ttl_decremented(c),
                    super::update_u16(c, old, new),
                    "checksum {c:#06x}"
                );
            }
        }
    }

    use super::*;

    #[test]
    fn rfc1071_example() {
        // The worked example of RFC 1071 section 3: sum 0xddf2, checksum 0x220d.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(finish(sum(&data)), !0xddf2);
    }

    #[test]
    fn every_length_matches_the_word_by_word_definition() {
        let data: Vec<u8> = (0..64u32).map(|i| (i * 73 + 11) as u8).collect();
        for len in 0..data.len() {
            let mut naive = 0u32;
            for pair in data[..len].chunks(2) {
                naive += u32::from(pair[0]) << 8 | u32::from(*pair.get(1).unwrap_or(&0));
            }
            while naive >> 16 != 0 {
                naive = (naive & 0xffff) + (naive >> 16);
            }
            assert_eq!(sum(&data[..len]), naive, "length {len}");
        }
    }

    #[test]
    fn ipv4_header_fast_path_agrees() {
        let mut hdr = [
            0x45u8, 0, 0, 40, 0x1c, 0x46, 0x40, 0, 64, 6, 0, 0, 172, 16, 10, 99, 172, 16, 10, 12,
        ];
        let c = checksum(&hdr);
        hdr[10..12].copy_from_slice(&c.to_be_bytes());
        assert!(ipv4_header_valid(&hdr));
        for i in 0..20 {
            let mut bad = hdr;
            bad[i] ^= 0x10;
            assert_eq!(ipv4_header_valid(&bad), checksum(&bad) == 0, "byte {i}");
        }
        // 0xffff vs 0x0000 words, and a header with options.
        let mut opt = [0u8; 24];
        opt[..20].copy_from_slice(&hdr);
        opt[0] = 0x46;
        opt[20..].copy_from_slice(&[0xff, 0xff, 0, 0]);
        opt[10] = 0;
        opt[11] = 0;
        let c = checksum(&opt);
        opt[10..12].copy_from_slice(&c.to_be_bytes());
        assert!(ipv4_header_valid(&opt));
        // A zero sum is not a valid one (all-zero words); all ones is.
        for fill in [0u8, 0xff] {
            assert_eq!(ipv4_header_valid(&[fill; 20]), checksum(&[fill; 20]) == 0, "{fill:#x}");
        }
    }

    proptest::proptest! {
        /// Random headers of every legal length, half of them given a correct checksum:
        /// the remainder test says what the full checksum says.
        #[test]
        fn ipv4_header_valid_equals_full_checksum(
            words in proptest::collection::vec(proptest::prelude::any::<u32>(), 5..=15),
            fix in proptest::prelude::any::<bool>(),
        ) {
            let mut hdr: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
            if fix {
                hdr[10] = 0;
                hdr[11] = 0;
                let c = checksum(&hdr);
                hdr[10..12].copy_from_slice(&c.to_be_bytes());
            }
            proptest::prop_assert_eq!(ipv4_header_valid(&hdr), checksum(&hdr) == 0);
        }
    }

    #[test]
    fn odd_length_is_zero_padded() {
        assert_eq!(sum(&[0xab]), 0xab00);
        assert_eq!(sum(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
    }

    #[test]
    fn incremental_matches_full_recompute() {
        let mut data: Vec<u8> = (0..40u8).map(|i| i.wrapping_mul(37)).collect();
        data[10] = 0;
        data[11] = 0;
        let c = checksum(&data);
        for at in (0..40).step_by(2).filter(|&i| i != 10) {
            let old = u16::from_be_bytes([data[at], data[at + 1]]);
            let mut changed = data.clone();
            changed[at] ^= 0x5a;
            changed[at + 1] = changed[at + 1].wrapping_add(3);
            let new = u16::from_be_bytes([changed[at], changed[at + 1]]);
            let inc = update_u16(c, old, new);
            assert_eq!(inc, checksum(&changed), "word at {at}");
        }
    }

    #[test]
    fn incremental_u32_and_u128() {
        let mut data = [0u8; 40];
        for (i, b) in data.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(91).wrapping_add(7);
        }
        let c = checksum(&data);
        let mut v4 = data;
        v4[4..8].copy_from_slice(&[192, 0, 2, 77]);
        let old = u32::from_be_bytes(data[4..8].try_into().unwrap());
        assert_eq!(update_u32(c, old, u32::from_be_bytes([192, 0, 2, 77])), checksum(&v4));
        let mut v6 = data;
        let new = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        v6[8..24].copy_from_slice(&new);
        let old: [u8; 16] = data[8..24].try_into().unwrap();
        assert_eq!(update_u128(c, &old, &new), checksum(&v6));
    }
}
