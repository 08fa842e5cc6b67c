//! Big IPv6 tables: a multibit trie with leaf pushing, strides 16 then 8 bits. A /48
//! resolves in at most 5 reads and a /64 in 7, never bit by bit; the burst lookup walks
//! all keys level by level with prefetching, so their misses overlap.

use std::collections::BTreeMap;

use crate::lpm::Lineage;
use crate::prefix::{Addr, Route};

const ROOT_BITS: u32 = 16;
const STRIDE: u32 = 8;
const NODE: usize = 1 << STRIDE;
const CHILD: u32 = 1 << 31;

pub(crate) struct Trie6 {
    /// Root (2^16 entries) then 256-entry nodes. Entry: 0 = no route, CHILD|offset, or
    /// nexthop + 1. On huge pages: 100K prefixes take about 100 MiB. A `Vec`, so that a
    /// patch into a spare grows it in place when it can.
    arena: Vec<u32>,
    /// Nodes no entry points to any more (left by patches), for later ones to reuse.
    free: Vec<u32>,
    lineage: Lineage<u128>,
}

#[inline(always)]
fn chunk(addr: u128, pos: u32, bits: u32) -> usize {
    ((addr << pos) >> (128 - bits)) as usize
}

/// The node entry `i` points to; made if `i` is a leaf, its value pushed down.
fn descend(arena: &mut Vec<u32>, free: &mut Vec<u32>, i: usize) -> usize {
    if arena[i] & CHILD == 0 {
        let pushed = arena[i];
        let child = match free.pop() {
            Some(c) => {
                arena[c as usize..c as usize + NODE].fill(pushed);
                c as usize
            }
            None => {
                arena.resize(arena.len() + NODE, pushed);
                arena.len() - NODE
            }
        };
        arena[i] = CHILD | child as u32;
    }
    (arena[i] & !CHILD) as usize
}

/// The entries prefix `net/len` spans, in the node holding them (made on the way down):
/// (first entry, count, the entries passed on the way).
fn entries(arena: &mut Vec<u32>, free: &mut Vec<u32>, net: u128, len: u8) -> (usize, usize, Vec<usize>) {
    let len = u32::from(len);
    let (mut node, mut pos, mut bits, mut path) = (0usize, 0u32, ROOT_BITS, Vec::new());
    while len > pos + bits {
        let i = node + chunk(net, pos, bits);
        path.push(i);
        node = descend(arena, free, i);
        pos += bits;
        bits = STRIDE;
    }
    (node + chunk(net, pos, bits), 1 << (pos + bits - len), path)
}

/// Writes route `r` over what the arena holds.
fn paint(arena: &mut Vec<u32>, free: &mut Vec<u32>, r: &Route<u128>) {
    let (first, span, _) = entries(arena, free, r.net, r.len);
    arena[first..first + span].fill(r.nexthop + 1);
}

/// Paints `routes` shorter first, so that longer ones overwrite what they cover (and no
/// child node lies under a range a prefix fills: it would need a longer prefix painted
/// before).
fn paint_all(arena: &mut Vec<u32>, free: &mut Vec<u32>, mut routes: Vec<Route<u128>>) {
    routes.sort_by_key(|r| r.len);
    for r in &routes {
        paint(arena, free, r);
    }
}

/// Gives back the nodes under entry `e` (none if it is a leaf).
fn release(arena: &[u32], free: &mut Vec<u32>, e: u32) {
    let mut stack = Vec::new();
    if e & CHILD != 0 {
        stack.push((e & !CHILD) as usize);
    }
    while let Some(n) = stack.pop() {
        free.push(n as u32);
        stack.extend(
            arena[n..n + NODE]
                .iter()
                .filter(|&&e| e & CHILD != 0)
                .map(|&e| (e & !CHILD) as usize),
        );
    }
}

/// Recomputes everything under prefix `net/len` from `routes`: its entries' subtrees go
/// back, the entries take the longest route covering the prefix, the routes inside are
/// painted, and nodes on the way down left uniform fold back into their entries.
fn repaint(arena: &mut Vec<u32>, free: &mut Vec<u32>, routes: &BTreeMap<(u128, u8), u32>, net: u128, len: u8) {
    let (first, span, path) = entries(arena, free, net, len);
    for i in first..first + span {
        release(arena, free, arena[i]);
    }
    let covering = (0..len).rev().find_map(|k| routes.get(&(net.network(k), k)));
    arena[first..first + span].fill(covering.map_or(0, |nh| nh + 1));
    let inside = routes
        .range((net, len)..=(net.last(len), 128))
        .filter(|&(&(_, rl), _)| rl >= len)
        .map(|(&(net, len), &nexthop)| Route { net, len, nexthop })
        .collect();
    paint_all(arena, free, inside);
    for &i in path.iter().rev() {
        let child = (arena[i] & !CHILD) as usize;
        let v = arena[child];
        if v & CHILD != 0 || arena[child..child + NODE].iter().any(|&e| e != v) {
            break;
        }
        arena[i] = v;
        free.push(child as u32);
    }
}

#[cfg(test)]
impl Trie6 {
    /// The memory behind the arena (for tests that check it is reused).
    pub(crate) fn first_level(&self) -> *const u32 {
        self.arena.as_ptr()
    }
}

impl crate::lpm::BigTable<u128> for Trie6 {
    fn build(routes: &[Route<u128>]) -> Self {
        let (mut arena, mut free) = (vec![0u32; 1 << ROOT_BITS], Vec::new());
        paint_all(&mut arena, &mut free, routes.to_vec());
        Trie6 {
            arena: hugemem::copy_of(&arena).into_vec(),
            free,
            lineage: Lineage::new(),
        }
    }

    fn patched(&self, routes: &BTreeMap<(u128, u8), u32>, changed: &[(u128, u8)], spare: Option<Trie6>) -> Trie6 {
        let (mut arena, mut free, regions) = match spare {
            Some(s) => match self.lineage.regions(&s.lineage, changed) {
                Some(regions) => (s.arena, s.free, regions),
                None => {
                    let mut arena = s.arena;
                    arena.clear();
                    arena.extend_from_slice(&self.arena);
                    (arena, self.free.clone(), changed.to_vec())
                }
            },
            None => (
                hugemem::copy_of(&self.arena).into_vec(),
                self.free.clone(),
                changed.to_vec(),
            ),
        };
        for &(net, len) in &regions {
            repaint(&mut arena, &mut free, routes, net, len);
        }
        Trie6 {
            arena,
            free,
            lineage: self.lineage.child(changed),
        }
    }

    fn lineage(&self) -> &Lineage<u128> {
        &self.lineage
    }

    #[inline]
    fn lookup(&self, addr: u128) -> Option<u32> {
        let mut e = self.arena[chunk(addr, 0, ROOT_BITS)];
        let mut pos = ROOT_BITS;
        while e & CHILD != 0 {
            e = self.arena[(e & !CHILD) as usize + chunk(addr, pos, STRIDE)];
            pos += STRIDE;
        }
        e.checked_sub(1)
    }

    #[inline]
    fn prefetch(&self, addr: u128) {
        wire::prefetch(&self.arena[chunk(addr, 0, ROOT_BITS)]);
    }

    /// Level-synchronous burst walk: each round reads one level for every unfinished key
    /// after prefetching it for all of them.
    fn lookup_burst(&self, addrs: &[u128], out: &mut [Option<u32>]) {
        let n = addrs.len().min(out.len()).min(crate::MAX_BURST);
        let mut at = [0usize; crate::MAX_BURST];
        for i in 0..n {
            at[i] = chunk(addrs[i], 0, ROOT_BITS);
            wire::prefetch(&self.arena[at[i]]);
        }
        let mut pos = ROOT_BITS;
        let mut pending = n;
        while pending > 0 {
            pending = 0;
            for i in 0..n {
                if at[i] == usize::MAX {
                    continue;
                }
                let e = self.arena[at[i]];
                if e & CHILD != 0 {
                    at[i] = (e & !CHILD) as usize + chunk(addrs[i], pos, STRIDE);
                    wire::prefetch(&self.arena[at[i]]);
                    pending += 1;
                } else {
                    out[i] = e.checked_sub(1);
                    at[i] = usize::MAX;
                }
            }
            pos += STRIDE;
        }
    }

    /// The arena's nodes; room reserved past them is never touched, so costs no memory.
    fn bytes(&self) -> usize {
        self.arena.len() * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lpm::BigTable;

    #[test]
    fn nested_prefixes() {
        let p = |s: &str| u128::from(s.parse::<std::net::Ipv6Addr>().unwrap());
        let routes = [
            Route {
                net: 0,
                len: 0,
                nexthop: 1,
            },
            Route {
                net: p("2001:db8::"),
                len: 32,
                nexthop: 2,
            },
            Route {
                net: p("2001:db8:1::"),
                len: 48,
                nexthop: 3,
            },
            Route {
                net: p("2001:db8:1::1"),
                len: 128,
                nexthop: 4,
            },
            Route {
                net: p("2001:db8:1:8000::"),
                len: 49,
                nexthop: 5,
            },
        ];
        let t = Trie6::build(&routes);
        check(&t);
        // Host routes added and removed again, one at a time: the nodes they need come
        // back when they go (folded into their entries) and are reused.
        let mut all: BTreeMap<(u128, u8), u32> = routes.iter().map(|r| ((r.net, r.len), r.nexthop)).collect();
        let mut t = t;
        let grown = |t: &Trie6| t.arena.len() - t.free.len() * NODE;
        let before = grown(&t);
        for i in 0..50u128 {
            let host = (p("2001:db8:1:8000::") | (i << 64) | i, 128);
            all.insert(host, 9);
            t = t.patched(&all, &[host], None);
            assert_eq!(t.lookup(host.0), Some(9));
            all.remove(&host);
            t = t.patched(&all, &[host], None);
            assert_eq!(t.lookup(host.0), Some(5));
            assert_eq!(grown(&t), before, "nodes in use after removing host route {i}");
        }
        check(&t);
    }

    fn check(t: &Trie6) {
        let p = |s: &str| u128::from(s.parse::<std::net::Ipv6Addr>().unwrap());
        assert_eq!(t.lookup(p("::1")), Some(1));
        assert_eq!(t.lookup(p("2001:db8:2::")), Some(2));
        assert_eq!(t.lookup(p("2001:db8:1::2")), Some(3));
        assert_eq!(t.lookup(p("2001:db8:1::1")), Some(4));
        assert_eq!(t.lookup(p("2001:db8:1:8000::1")), Some(5));
        let addrs = [p("::1"), p("2001:db8:1::1"), p("2001:db8:1:8000::1"), p("2001:db8:9::")];
        let mut out = [None; 4];
        t.lookup_burst(&addrs, &mut out);
        assert_eq!(out, [Some(1), Some(4), Some(5), Some(2)]);
    }
}
