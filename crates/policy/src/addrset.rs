//! Address sets: prefixes normalised into sorted, disjoint, inclusive ranges per family, so
//! membership, union and `except` are range arithmetic and the compiler gets its interval
//! boundaries directly.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IPv4 or IPv6 prefix with no host bits set.
///
/// ```
/// use policy::Cidr;
/// let c: Cidr = "10.1.0.0/16".parse().unwrap();
/// assert!(c.contains("10.1.2.3".parse().unwrap()));
/// assert!("10.1.0.1/16".parse::<Cidr>().is_err()); // host bits
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

/// Why a prefix was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CidrError {
    /// Not `ADDRESS/LEN` or not an address.
    Syntax(String),
    /// Length above 32 (IPv4) or 128 (IPv6).
    Length(u8),
    /// Bits set after the prefix length.
    HostBits,
}

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CidrError::Syntax(s) => write!(f, "`{s}` is not ADDRESS/LENGTH"),
            CidrError::Length(l) => write!(f, "prefix length {l} is too long for the address family"),
            CidrError::HostBits => write!(f, "host bits are set after the prefix length"),
        }
    }
}

impl std::error::Error for CidrError {}

impl Cidr {
    /// A prefix; refuses host bits rather than masking them (a typo should not widen a rule).
    pub fn new(addr: IpAddr, len: u8) -> Result<Self, CidrError> {
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        if len > bits {
            return Err(CidrError::Length(len));
        }
        let c = Cidr { addr, len };
        let (lo, _) = c.range();
        if lo != addr_bits(addr) {
            return Err(CidrError::HostBits);
        }
        Ok(c)
    }

    /// A single host (`/32` or `/128`).
    pub fn host(addr: IpAddr) -> Self {
        Cidr {
            addr,
            len: if addr.is_ipv4() { 32 } else { 128 },
        }
    }

    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// Whether `ip` is inside.
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4() && {
            let (lo, hi) = self.range();
            (lo..=hi).contains(&addr_bits(ip))
        }
    }

    /// First and last address as integers (IPv4 in the low 32 bits).
    fn range(&self) -> (u128, u128) {
        let bits = if self.addr.is_ipv4() { 32 } else { 128 };
        let host = bits - u32::from(self.len);
        let mask = if host == 128 { u128::MAX } else { (1u128 << host) - 1 };
        let a = addr_bits(self.addr);
        (a & !mask, (a & !mask) | mask)
    }
}

impl FromStr for Cidr {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<Self, CidrError> {
        let syntax = || CidrError::Syntax(s.to_string());
        let (a, l) = s.split_once('/').ok_or_else(syntax)?;
        let addr: IpAddr = a.parse().map_err(|_| syntax())?;
        let len: u8 = l.parse().map_err(|_| syntax())?;
        Cidr::new(addr, len)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

pub(crate) fn addr_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// A set of IPv4 and IPv6 addresses, kept as sorted, disjoint, non-adjacent inclusive ranges.
///
/// ```
/// use policy::AddrSet;
/// let block = AddrSet::from_cidrs(&["10.0.0.0/8".parse().unwrap()]);
/// let except = AddrSet::from_cidrs(&["10.9.0.0/16".parse().unwrap()]);
/// let s = block.difference(&except);
/// assert!(s.contains("10.1.2.3".parse().unwrap()));
/// assert!(!s.contains("10.9.2.3".parse().unwrap()));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct AddrSet {
    pub(crate) v4: Vec<(u32, u32)>,
    pub(crate) v6: Vec<(u128, u128)>,
}

impl AddrSet {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every IPv4 and IPv6 address.
    pub fn everything() -> Self {
        AddrSet {
            v4: vec![(0, u32::MAX)],
            v6: vec![(0, u128::MAX)],
        }
    }

    /// The union of `cidrs`.
    pub fn from_cidrs(cidrs: &[Cidr]) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for c in cidrs {
            let (lo, hi) = c.range();
            if c.addr.is_ipv4() {
                v4.push((lo as u32, hi as u32));
            } else {
                v6.push((lo, hi));
            }
        }
        AddrSet {
            v4: normalise(v4),
            v6: normalise(v6),
        }
    }

    /// Single host addresses (a resolved label selector, typically).
    pub fn from_addrs(addrs: impl IntoIterator<Item = IpAddr>) -> Self {
        Self::from_cidrs(&addrs.into_iter().map(Cidr::host).collect::<Vec<_>>())
    }

    /// Whether the set holds no address.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// Whether the set holds any IPv4 (`v6 == false`) or IPv6 address.
    pub fn has_family(&self, v6: bool) -> bool {
        if v6 { !self.v6.is_empty() } else { !self.v4.is_empty() }
    }

    /// Whether `ip` is in the set.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => find(&self.v4, u32::from(a)),
            IpAddr::V6(a) => find(&self.v6, u128::from(a)),
        }
    }

    /// Both sets together.
    pub fn union(&self, other: &AddrSet) -> AddrSet {
        AddrSet {
            v4: normalise(self.v4.iter().chain(&other.v4).copied().collect()),
            v6: normalise(self.v6.iter().chain(&other.v6).copied().collect()),
        }
    }

    /// `self` without the addresses of `other` (`ipBlock.except`).
    pub fn difference(&self, other: &AddrSet) -> AddrSet {
        AddrSet {
            v4: subtract(&self.v4, &other.v4),
            v6: subtract(&self.v6, &other.v6),
        }
    }

    /// Whether every address of `other` is in `self`.
    pub fn is_superset(&self, other: &AddrSet) -> bool {
        other.difference(self).is_empty()
    }

    /// The IPv4 ranges, as `(first, last)` addresses.
    pub fn v4_ranges(&self) -> impl Iterator<Item = (Ipv4Addr, Ipv4Addr)> + '_ {
        self.v4.iter().map(|&(a, b)| (a.into(), b.into()))
    }

    /// The IPv6 ranges, as `(first, last)` addresses.
    pub fn v6_ranges(&self) -> impl Iterator<Item = (Ipv6Addr, Ipv6Addr)> + '_ {
        self.v6.iter().map(|&(a, b)| (a.into(), b.into()))
    }
}

fn find<T: Ord + Copy>(ranges: &[(T, T)], x: T) -> bool {
    let i = ranges.partition_point(|r| r.1 < x);
    ranges.get(i).is_some_and(|r| r.0 <= x)
}

/// Sorts and merges overlapping or adjacent ranges.
fn normalise<T: Ord + Copy + Step>(mut v: Vec<(T, T)>) -> Vec<(T, T)> {
    v.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(v.len());
    for (lo, hi) in v {
        match out.last_mut() {
            Some(last) if last.1.next().is_none_or(|n| lo <= n) => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

fn subtract<T: Ord + Copy + Step>(a: &[(T, T)], b: &[(T, T)]) -> Vec<(T, T)> {
    let mut out = Vec::new();
    for &(mut lo, hi) in a {
        let mut alive = true;
        for &(blo, bhi) in b.iter().skip(b.partition_point(|r| r.1 < lo)) {
            if blo > hi {
                break;
            }
            if blo > lo {
                out.push((lo, blo.prev().expect("blo > lo")));
            }
            match bhi.next() {
                Some(n) if bhi < hi => lo = n,
                _ => {
                    alive = false;
                    break;
                }
            }
        }
        if alive {
            out.push((lo, hi));
        }
    }
    out
}

/// Integers with a successor and predecessor, for range arithmetic.
pub(crate) trait Step: Sized {
    fn next(self) -> Option<Self>;
    fn prev(self) -> Option<Self>;
}

macro_rules! step {
    ($($t:ty),*) => {$(
        impl Step for $t {
            #[inline]
            fn next(self) -> Option<Self> { self.checked_add(1) }
            #[inline]
            fn prev(self) -> Option<Self> { self.checked_sub(1) }
        }
    )*};
}
step!(u8, u16, u32, u128);

#[cfg(test)]
mod tests {
    use super::*;

    fn set(s: &[&str]) -> AddrSet {
        AddrSet::from_cidrs(&s.iter().map(|c| c.parse().unwrap()).collect::<Vec<_>>())
    }

    #[test]
    fn cidr_rejects_host_bits_and_long_lengths() {
        assert_eq!("10.0.0.1/8".parse::<Cidr>(), Err(CidrError::HostBits));
        assert_eq!("10.0.0.0/33".parse::<Cidr>(), Err(CidrError::Length(33)));
        assert!(matches!("10.0.0.0".parse::<Cidr>(), Err(CidrError::Syntax(_))));
        assert!(matches!("bogus/8".parse::<Cidr>(), Err(CidrError::Syntax(_))));
        assert!("::/0".parse::<Cidr>().is_ok());
        assert!("0.0.0.0/0".parse::<Cidr>().is_ok());
        assert_eq!("2001:db8::1/128".parse::<Cidr>().unwrap().prefix_len(), 128);
    }

    #[test]
    fn normalise_merges_overlap_and_adjacency() {
        let s = set(&["10.0.0.0/25", "10.0.0.128/25", "10.0.0.0/30", "192.168.0.0/16"]);
        assert_eq!(s.v4, vec![(0x0a00_0000, 0x0a00_00ff), (0xc0a8_0000, 0xc0a8_ffff)]);
        let all = set(&["0.0.0.0/1", "128.0.0.0/1"]);
        assert_eq!(all.v4, vec![(0, u32::MAX)]);
    }

    #[test]
    fn difference_splits_ranges() {
        let s = set(&["10.0.0.0/8"]).difference(&set(&["10.0.0.0/16", "10.128.0.0/9", "11.0.0.0/8"]));
        assert_eq!(s.v4, vec![(0x0a01_0000, 0x0a7f_ffff)]);
        assert!(set(&["10.0.0.0/8"]).difference(&set(&["0.0.0.0/0"])).is_empty());
        let e = AddrSet::everything().difference(&set(&["::/1"]));
        assert_eq!(e.v6, vec![(1u128 << 127, u128::MAX)]);
        assert!(set(&["10.0.0.0/8"]).is_superset(&set(&["10.3.0.0/16"])));
        assert!(!set(&["10.0.0.0/8"]).is_superset(&set(&["10.0.0.0/7"])));
    }

    #[test]
    fn membership_matches_cidrs() {
        let s = set(&["10.0.0.0/24", "2001:db8::/32"]);
        assert!(s.contains("10.0.0.255".parse().unwrap()));
        assert!(!s.contains("10.0.1.0".parse().unwrap()));
        assert!(s.contains("2001:db8:1::".parse().unwrap()));
        assert!(!s.contains("::a00:1".parse().unwrap()));
        assert!(s.has_family(false) && s.has_family(true));
    }
}
