//! The per-VRF longest-prefix-match tables, each in the layout its size calls for.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::dir248::Dir248;
use crate::intervals::Intervals;
use crate::prefix::{Addr, Route};
use crate::trie6::Trie6;

/// Up to this many routes a VRF table is a sorted interval array (kilobytes); above it,
/// a direct-indexed structure (DIR-24-8 for IPv4, a 16-8-8... trie for IPv6).
pub const SMALL_TABLE_ROUTES: usize = 2048;

/// What a big layout offers; the small one is always [`Intervals`].
pub(crate) trait BigTable<A>: Sized {
    fn build(routes: &[Route<A>]) -> Self;
    fn lookup(&self, a: A) -> Option<u32>;
    fn lookup_burst(&self, addrs: &[A], out: &mut [Option<u32>]);
    /// Starts loading the first line a lookup of `a` reads.
    fn prefetch(&self, a: A);
    fn bytes(&self) -> usize;

    /// This table with everything under the `changed` prefixes recomputed from
    /// `routes`, the VRF's whole route set after the changes: what lets a route change
    /// in a full-table VRF publish in microseconds where a build takes a second.
    ///
    /// `spare`, a table no reader holds any more, lends its memory (fresh memory costs
    /// more in page faults than the patch itself). If it is this table's predecessor,
    /// only the prefixes of both patches are repainted in it, and nothing is copied: the
    /// steady state of a stream of publishes. Any other spare is overwritten with a copy.
    fn patched(&self, routes: &BTreeMap<(A, u8), u32>, changed: &[(A, u8)], spare: Option<Self>) -> Self;

    fn lineage(&self) -> &Lineage<A>;
}

/// Where a big table came from, so that a patch knows what its spare lacks.
pub(crate) struct Lineage<A> {
    /// Unique in the process.
    id: u64,
    /// The table this one was patched from, and the prefixes that patch repainted;
    /// `None` when built whole. The predecessor differs from this table only under them.
    parent: Option<(u64, Vec<(A, u8)>)>,
}

impl<A: Addr> Lineage<A> {
    /// A table built whole.
    pub(crate) fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        Lineage {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            parent: None,
        }
    }

    /// A table patched from this one under `changed`.
    pub(crate) fn child(&self, changed: &[(A, u8)]) -> Self {
        Lineage {
            parent: Some((self.id, changed.to_vec())),
            ..Lineage::new()
        }
    }

    /// The prefixes to repaint in `spare` to make it this table patched under
    /// `changed`, when `spare` is this table's predecessor.
    pub(crate) fn regions(&self, spare: &Lineage<A>, changed: &[(A, u8)]) -> Option<Vec<(A, u8)>> {
        let (_, theirs) = self.parent.as_ref().filter(|(p, _)| *p == spare.id)?;
        let mut regions = [changed, theirs].concat();
        regions.sort_unstable();
        regions.dedup();
        Some(regions)
    }

    /// Whether `other` is the table this one was patched from.
    pub(crate) fn is_parent(&self, other: &Lineage<A>) -> bool {
        self.parent.as_ref().is_some_and(|(p, _)| *p == other.id)
    }
}

/// A VRF's table for one family: intervals when small, `B` when big.
pub(crate) enum Lpm<A, B> {
    Small(Intervals<A>),
    Big(B),
}

pub(crate) type Lpm4 = Lpm<u32, Dir248>;
pub(crate) type Lpm6 = Lpm<u128, Trie6>;

impl<A: Addr, B: BigTable<A>> Lpm<A, B> {
    pub(crate) fn build(routes: &[Route<A>]) -> Self {
        if routes.len() <= SMALL_TABLE_ROUTES {
            Lpm::Small(Intervals::build(routes))
        } else {
            Lpm::Big(B::build(routes))
        }
    }

    #[inline]
    pub(crate) fn lookup(&self, a: A) -> Option<u32> {
        match self {
            Lpm::Small(t) => t.lookup(a),
            Lpm::Big(t) => t.lookup(a),
        }
    }

    pub(crate) fn lookup_burst(&self, addrs: &[A], out: &mut [Option<u32>]) {
        match self {
            Lpm::Small(t) => t.lookup_burst(addrs, out),
            Lpm::Big(t) => t.lookup_burst(addrs, out),
        }
    }

    /// A small table is kilobytes, in cache when it is used at all.
    #[inline]
    pub(crate) fn prefetch(&self, a: A) {
        if let Lpm::Big(t) = self {
            t.prefetch(a);
        }
    }

    pub(crate) fn bytes(&self) -> usize {
        match self {
            Lpm::Small(t) => t.bytes(),
            Lpm::Big(t) => t.bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The reference: longest matching prefix by scanning every route.
    fn naive<A: Addr>(routes: &[Route<A>], a: A) -> Option<u32> {
        routes
            .iter()
            .filter(|r| a.network(r.len) == r.net)
            .max_by_key(|r| r.len)
            .map(|r| r.nexthop)
    }

    /// Keeps IPv4 addresses within a few /8s so prefixes overlap often.
    fn squash4(a: u32) -> u32 {
        (a & 0x03ff_ffff) | 0x0a00_0000
    }

    /// IPv6 addresses under 2001:db8::/32.
    fn squash6(a: u128) -> u128 {
        (a & ((1u128 << 100) - 1)) | (0x2001_0db8u128 << 96)
    }

    /// IPv6 addresses under 2001:db8::/32 that differ in only four 2-bit fields, ending
    /// at bits 34, 50, 66 and 124: prefixes then nest across the trie's levels.
    fn squash6_nested(a: u128) -> u128 {
        let field = |shift: u32, end: u32| ((a >> shift) & 3) << (128 - end);
        (0x2001_0db8u128 << 96) | field(0, 34) | field(2, 50) | field(4, 66) | field(6, 124)
    }

    /// Prefixes of addresses squashed by `squash` (to nest and overlap), with /0 and host
    /// routes.
    fn routes_in<A: Addr + Arbitrary>(squash: fn(A) -> A) -> impl Strategy<Value = Vec<Route<A>>> {
        proptest::collection::vec((any::<A>(), 0u8..=A::BITS, 0u32..1000), 0..200).prop_map(move |v| {
            let mut seen = std::collections::BTreeMap::new();
            for (a, len, nh) in v {
                seen.insert((squash(a).network(len), len), nh);
            }
            seen.into_iter()
                .map(|((net, len), nexthop)| Route { net, len, nexthop })
                .collect()
        })
    }

    /// Probe addresses: each route's first and last address, the one after, and randoms.
    fn probes<A: Addr>(routes: &[Route<A>], extra: &[A]) -> Vec<A> {
        let mut v: Vec<A> = extra.to_vec();
        for r in routes {
            v.push(r.net);
            v.push(r.net.last(r.len));
            if let Some(s) = r.net.last(r.len).succ() {
                v.push(s);
            }
        }
        v
    }

    /// Both layouts of one family, single and burst lookups, against the reference on
    /// every probe address; the first disagreement, if any.
    fn disagreement<A: Addr + core::fmt::LowerHex, B: BigTable<A>>(routes: &[Route<A>], extra: &[A]) -> Option<String> {
        let small = Intervals::build(routes);
        let big = B::build(routes);
        let addrs = probes(routes, extra);
        let mut burst = vec![None; addrs.len().min(64)];
        big.lookup_burst(&addrs[..burst.len()], &mut burst);
        // The intervals' burst over every probe: whole bursts of 64 and a partial last one.
        let mut small_burst = vec![None; addrs.len()];
        small.lookup_burst(&addrs, &mut small_burst);
        addrs.iter().enumerate().find_map(|(i, &a)| {
            let want = naive(routes, a);
            let got = (
                small.lookup(a),
                small_burst[i],
                big.lookup(a),
                burst.get(i).copied().unwrap_or(want),
            );
            (got != (want, want, want, want))
                .then(|| format!("{a:#x}: want {want:?}, intervals/intervals burst/big/big burst {got:?}"))
        })
    }

    /// One round of edits: (address bits, length, new nexthop or removal), picks of
    /// existing routes to remove, and which earlier table lends its memory (0: none, 1:
    /// the current one's predecessor, 2: the oldest kept).
    type Round<A> = (Vec<(A, u8, Option<u32>)>, Vec<proptest::sample::Index>, u8);

    /// Rounds of edits (routes added, renumbered, removed) applied to a DIR-24-8 by
    /// patching, into fresh memory or an earlier table's, each checked against the
    /// reference on the probes of every route the table has held; the first
    /// disagreement, if any.
    fn patch_disagreement<A: Addr + core::fmt::LowerHex, B: BigTable<A>>(
        base: &[Route<A>],
        rounds: &[Round<A>],
        extra: &[A],
        squash: fn(A) -> A,
    ) -> Option<String> {
        let mut routes: BTreeMap<(A, u8), u32> = base.iter().map(|r| ((r.net, r.len), r.nexthop)).collect();
        let mut ever: Vec<Route<A>> = base.to_vec();
        let mut table = B::build(base);
        // Earlier tables, the newest last.
        let mut earlier: Vec<B> = Vec::new();
        for (round, (edits, removals, lend)) in rounds.iter().enumerate() {
            let mut changed = Vec::new();
            for &(a, len, nexthop) in edits {
                let key = (squash(a).network(len.min(A::BITS)), len.min(A::BITS));
                match nexthop {
                    Some(nh) => routes.insert(key, nh),
                    None => routes.remove(&key),
                };
                changed.push(key);
            }
            let present: Vec<(A, u8)> = routes.keys().copied().collect();
            for i in removals.iter().filter(|_| !present.is_empty()) {
                let key = present[i.index(present.len())];
                routes.remove(&key);
                changed.push(key);
            }
            let spare = match lend {
                1 => earlier.pop(),
                2 if !earlier.is_empty() => Some(earlier.remove(0)),
                _ => None,
            };
            let next = table.patched(&routes, &changed, spare);
            earlier.push(std::mem::replace(&mut table, next));
            let now: Vec<Route<A>> = routes
                .iter()
                .map(|(&(net, len), &nexthop)| Route { net, len, nexthop })
                .collect();
            ever.extend(&now);
            for a in probes(&ever, extra) {
                let (want, got) = (naive(&now, a), table.lookup(a));
                if want != got {
                    return Some(format!("round {round}, {a:#x}: want {want:?}, patched {got:?}"));
                }
            }
        }
        None
    }

    /// Rounds of edits for [`patch_disagreement`].
    fn rounds<A: Addr + Arbitrary>() -> impl Strategy<Value = Vec<Round<A>>> {
        proptest::collection::vec(
            (
                proptest::collection::vec((any::<A>(), 0u8..=A::BITS, proptest::option::of(0u32..1000)), 0..12),
                proptest::collection::vec(any::<proptest::sample::Index>(), 0..8),
                0u8..3,
            ),
            4,
        )
    }

    proptest! {
        // Each case copies or writes a 64 MiB first level per round: fewer cases.
        #![proptest_config(ProptestConfig::with_cases(16))]

        #[test]
        fn a_patched_dir248_matches_the_reference(
            base in routes_in(squash4),
            rounds in rounds::<u32>(),
            extra in proptest::collection::vec(any::<u32>(), 32),
        ) {
            prop_assert_eq!(patch_disagreement::<u32, Dir248>(&base, &rounds, &extra, squash4), None);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn a_patched_trie6_matches_the_reference(
            base in routes_in(squash6_nested),
            rounds in rounds::<u128>(),
            extra in proptest::collection::vec(any::<u128>().prop_map(squash6_nested), 32),
        ) {
            prop_assert_eq!(patch_disagreement::<u128, Trie6>(&base, &rounds, &extra, squash6_nested), None);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn ipv4_layouts_match_the_reference(routes in routes_in(squash4), extra in proptest::collection::vec(any::<u32>(), 32)) {
            prop_assert_eq!(disagreement::<u32, Dir248>(&routes, &extra), None);
        }

        #[test]
        fn ipv6_layouts_match_the_reference(routes in routes_in(squash6), extra in proptest::collection::vec(any::<u128>(), 32)) {
            prop_assert_eq!(disagreement::<u128, Trie6>(&routes, &extra), None);
        }
    }
}
