//! Prefixes as integer ranges, and the route lists the compiled tables are built from.

/// An unsigned address type: `u32` for IPv4, `u128` for IPv6.
pub(crate) trait Addr: Copy + Ord + Eq + core::fmt::Debug + Send + Sync + 'static {
    /// Address width in bits.
    const BITS: u8;
    /// Zero.
    const ZERO: Self;
    /// The first address of `len`-bit prefix `p` (host bits cleared).
    fn network(self, len: u8) -> Self;
    /// The last address of the prefix.
    fn last(self, len: u8) -> Self;
    /// The address one above, or `None` at the top.
    fn succ(self) -> Option<Self>;
}

macro_rules! impl_addr {
    ($t:ty) => {
        impl Addr for $t {
            const BITS: u8 = <$t>::BITS as u8;
            const ZERO: Self = 0;
            #[inline]
            fn network(self, len: u8) -> Self {
                if len == 0 {
                    0
                } else {
                    self & (<$t>::MAX << (<Self as Addr>::BITS - len))
                }
            }
            #[inline]
            fn last(self, len: u8) -> Self {
                match len {
                    0 => <$t>::MAX,
                    l if l >= <Self as Addr>::BITS => self,
                    l => self.network(l) | (<$t>::MAX >> l),
                }
            }
            #[inline]
            fn succ(self) -> Option<Self> {
                self.checked_add(1)
            }
        }
    };
}
impl_addr!(u32);
impl_addr!(u128);

/// A route as the compilers see it: network (host bits clear), length, nexthop id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Route<A> {
    /// Network address.
    pub(crate) net: A,
    /// Prefix length.
    pub(crate) len: u8,
    /// Nexthop id.
    pub(crate) nexthop: u32,
}
