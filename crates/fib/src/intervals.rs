//! Small tables: the prefixes flattened into sorted, non-overlapping intervals, each
//! carrying the nexthop of its longest covering prefix. A lookup is a binary search over
//! a few cache lines; memory is about two entries per prefix, so thousands of small VRFs
//! cost kilobytes each, not the megabytes a direct-indexed table would.

use crate::prefix::{Addr, Route};

/// Marks "no route" in the nexthop column.
const NONE: u32 = u32::MAX;

pub(crate) struct Intervals<A> {
    starts: Box<[A]>,
    nexthops: Box<[u32]>,
}

impl<A: Addr> Intervals<A> {
    /// Builds from routes with distinct (net, len).
    pub(crate) fn build(routes: &[Route<A>]) -> Self {
        let mut sorted = routes.to_vec();
        // Outer prefixes before the inner ones that share their start.
        sorted.sort_by(|a, b| a.net.cmp(&b.net).then(a.len.cmp(&b.len)));
        let mut bounds: Vec<A> = Vec::with_capacity(2 * sorted.len() + 1);
        bounds.push(A::ZERO);
        for r in &sorted {
            bounds.push(r.net);
            if let Some(s) = r.net.last(r.len).succ() {
                bounds.push(s);
            }
        }
        bounds.sort_unstable();
        bounds.dedup();
        let mut starts = Vec::with_capacity(bounds.len());
        let mut nexthops = Vec::with_capacity(bounds.len());
        // Sweep: a stack of the prefixes covering the current boundary, innermost on top.
        let mut stack: Vec<&Route<A>> = Vec::new();
        let mut next = 0;
        for &b in &bounds {
            while stack.last().is_some_and(|r| r.net.last(r.len) < b) {
                stack.pop();
            }
            while next < sorted.len() && sorted[next].net <= b {
                let r = &sorted[next];
                if r.net.last(r.len) >= b {
                    while stack.last().is_some_and(|top| top.net.last(top.len) < r.net) {
                        stack.pop();
                    }
                    stack.push(r);
                }
                next += 1;
            }
            let nh = stack.last().map_or(NONE, |r| r.nexthop);
            if nexthops.last() != Some(&nh) {
                starts.push(b);
                nexthops.push(nh);
            }
        }
        Intervals {
            starts: starts.into(),
            nexthops: nexthops.into(),
        }
    }

    #[inline]
    pub(crate) fn lookup(&self, addr: A) -> Option<u32> {
        // The first boundary is ZERO, so index 0 is at or below any address to start with.
        let (mut base, mut len) = (0, self.starts.len());
        while len > 1 {
            let half = len / 2;
            base = self.step(base, half, addr);
            len -= half;
        }
        self.nexthop_at(base)
    }

    /// Binary searches for the whole burst in lockstep: every step moves each address's
    /// search one level down. One address's steps depend on each other, but the burst's
    /// do not, so their loads overlap instead of waiting in turn.
    pub(crate) fn lookup_burst(&self, addrs: &[A], out: &mut [Option<u32>]) {
        for (addrs, out) in addrs.chunks(64).zip(out.chunks_mut(64)) {
            let n = addrs.len().min(out.len());
            let mut base = [0usize; 64];
            let mut len = self.starts.len();
            while len > 1 {
                let half = len / 2;
                for (b, &a) in base[..n].iter_mut().zip(addrs) {
                    *b = self.step(*b, half, a);
                }
                len -= half;
            }
            for (o, &b) in out[..n].iter_mut().zip(&base[..n]) {
                *o = self.nexthop_at(b);
            }
        }
    }

    /// One step of the search: `base` (the last boundary known to be at or below `a`)
    /// moves up by `half` if the boundary there is too. A conditional move, not a branch,
    /// which a random address would mispredict half the time (an `if` here compiled to a
    /// branch and made lookups several times slower).
    #[inline(always)]
    fn step(&self, base: usize, half: usize, a: A) -> usize {
        let probe = base + half;
        core::hint::select_unpredictable(self.starts[probe] <= a, probe, base)
    }

    #[inline(always)]
    fn nexthop_at(&self, i: usize) -> Option<u32> {
        let nh = self.nexthops[i];
        (nh != NONE).then_some(nh)
    }

    pub(crate) fn bytes(&self) -> usize {
        self.starts.len() * (core::mem::size_of::<A>() + 4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(net: u32, len: u8, nexthop: u32) -> Route<u32> {
        Route {
            net: net.network(len),
            len,
            nexthop,
        }
    }

    #[test]
    fn nested_and_adjacent() {
        let t = Intervals::build(&[
            r(0x0a00_0000, 8, 1),
            r(0x0a01_0000, 16, 2),
            r(0x0a01_0100, 24, 3),
            r(0x0a01_0200, 24, 2),
            r(0xffff_ffff, 32, 9),
        ]);
        assert_eq!(t.lookup(0x0900_0000), None);
        assert_eq!(t.lookup(0x0a00_0001), Some(1));
        assert_eq!(t.lookup(0x0a01_0001), Some(2));
        assert_eq!(t.lookup(0x0a01_01ff), Some(3));
        assert_eq!(t.lookup(0x0a01_0201), Some(2));
        assert_eq!(t.lookup(0x0a02_0000), Some(1));
        assert_eq!(t.lookup(0x0b00_0000), None);
        assert_eq!(t.lookup(0xffff_ffff), Some(9));
        assert_eq!(t.lookup(0xffff_fffe), None);
    }

    #[test]
    fn default_route_and_empty() {
        assert_eq!(Intervals::<u32>::build(&[]).lookup(7), None);
        let t = Intervals::build(&[r(0, 0, 5), r(0x8000_0000, 1, 6)]);
        assert_eq!(t.lookup(1), Some(5));
        assert_eq!(t.lookup(0x8000_0001), Some(6));
    }
}
