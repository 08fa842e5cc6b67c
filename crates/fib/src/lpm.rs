//! The per-VRF longest-prefix-match tables, each in the layout its size calls for.

use crate::dir248::Dir248;
use crate::intervals::Intervals;
use crate::prefix::Route;
use crate::trie6::Trie6;

/// Up to this many routes a VRF table is a sorted interval array (kilobytes); above it,
/// a direct-indexed structure (DIR-24-8 for IPv4, a 16-8-8... trie for IPv6).
pub const SMALL_TABLE_ROUTES: usize = 2048;

pub(crate) enum Lpm4 {
    Small(Intervals<u32>),
    Big(Dir248),
}

pub(crate) enum Lpm6 {
    Small(Intervals<u128>),
    Big(Trie6),
}

impl Lpm4 {
    pub(crate) fn build(routes: &[Route<u32>]) -> Self {
        if routes.len() <= SMALL_TABLE_ROUTES {
            Lpm4::Small(Intervals::build(routes))
        } else {
            Lpm4::Big(Dir248::build(routes))
        }
    }

    #[inline]
    pub(crate) fn lookup(&self, a: u32) -> Option<u32> {
        match self {
            Lpm4::Small(t) => t.lookup(a),
            Lpm4::Big(t) => t.lookup(a),
        }
    }

    pub(crate) fn lookup_burst(&self, addrs: &[u32], out: &mut [Option<u32>]) {
        match self {
            Lpm4::Small(t) => out.iter_mut().zip(addrs).for_each(|(o, &a)| *o = t.lookup(a)),
            Lpm4::Big(t) => t.lookup_burst(addrs, out),
        }
    }

    pub(crate) fn bytes(&self) -> usize {
        match self {
            Lpm4::Small(t) => t.bytes(),
            Lpm4::Big(t) => t.bytes(),
        }
    }
}

impl Lpm6 {
    pub(crate) fn build(routes: &[Route<u128>]) -> Self {
        if routes.len() <= SMALL_TABLE_ROUTES {
            Lpm6::Small(Intervals::build(routes))
        } else {
            Lpm6::Big(Trie6::build(routes))
        }
    }

    #[inline]
    pub(crate) fn lookup(&self, a: u128) -> Option<u32> {
        match self {
            Lpm6::Small(t) => t.lookup(a),
            Lpm6::Big(t) => t.lookup(a),
        }
    }

    pub(crate) fn lookup_burst(&self, addrs: &[u128], out: &mut [Option<u32>]) {
        match self {
            Lpm6::Small(t) => out.iter_mut().zip(addrs).for_each(|(o, &a)| *o = t.lookup(a)),
            Lpm6::Big(t) => t.lookup_burst(addrs, out),
        }
    }

    pub(crate) fn bytes(&self) -> usize {
        match self {
            Lpm6::Small(t) => t.bytes(),
            Lpm6::Big(t) => t.bytes(),
        }
    }
}
