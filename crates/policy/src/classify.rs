//! The compiled classifier: field partitioning with aggregated bit vectors.
//!
//! Rules are numbered in evaluation order. Each field (VRF, source, destination, source
//! port, and protocol joined with the destination port or ICMP type/code as one 24-bit
//! value, since a port range always comes with one protocol) is cut into elementary
//! intervals at every rule boundary; every interval maps to the set of rules that accept
//! it (an equivalence class, stored once). A lookup finds its interval in each field by
//! binary search and intersects the classes: the lowest set bit of the intersection is the
//! first matching rule. A field on which every rule is a wildcard is left out.
//!
//! Up to 64 rules a class is one word, kept in the interval itself. Up to 256 it is a plain
//! bitmap in a shared arena. Above, it is compressed: a summary word per
//! 64 words of rule bits (bit set = that word is non-zero) followed by only the non-zero
//! words; the intersection walks the ANDed summaries in order and stops at the first word
//! with a common bit, so the work per packet is a few binary searches plus a few words,
//! however many rules there are.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::Hash;

use crate::addrset::Step;
use crate::rule::{Fields, Rule};

/// Integer keys a field is partitioned over.
pub(crate) trait Key: Copy + Ord + Hash + Step {
    const MIN: Self;
    const MAX: Self;
}

macro_rules! key {
    ($($t:ty),*) => {$(
        impl Key for $t {
            const MIN: Self = <$t>::MIN;
            const MAX: Self = <$t>::MAX;
        }
    )*};
}
key!(u16, u32, u128);

/// Up to this many words of rule bits (256 rules) classes are stored dense: ANDing a few
/// whole words is cheaper than ranking into compressed ones.
const DENSE_WORDS: usize = 4;

/// Class bitmaps, shared by every field of one table.
struct Arena {
    words: Vec<u64>,
    /// Words of rule bits per class.
    width: usize,
    /// Summary words per compressed class: one bit per word of rule bits; 0 when dense.
    summary: usize,
    interned: HashMap<Vec<u64>, u32>,
}

impl Arena {
    fn new(rules: usize) -> Self {
        let width = rules.div_ceil(64);
        Arena {
            words: Vec::new(),
            width,
            summary: if width <= DENSE_WORDS { 0 } else { width.div_ceil(64) },
            interned: HashMap::new(),
        }
    }

    /// What an interval keeps of its class (see [`Dim::class`]).
    fn handle(&mut self, dense: &[u64]) -> u64 {
        if self.width == 1 {
            dense[0]
        } else {
            u64::from(self.intern(dense))
        }
    }

    /// Stores a class once; returns its offset.
    fn intern(&mut self, dense: &[u64]) -> u32 {
        match self.interned.entry(dense.to_vec()) {
            Entry::Occupied(e) => *e.get(),
            Entry::Vacant(e) => {
                let at = self.words.len();
                if self.summary == 0 {
                    self.words.extend_from_slice(dense);
                    return *e.insert(u32::try_from(at).expect("class arena above 4G words"));
                }
                self.words.resize(at + self.summary, 0);
                for (i, &w) in dense.iter().enumerate() {
                    if w != 0 {
                        self.words[at + i / 64] |= 1 << (i % 64);
                    }
                }
                self.words.extend(dense.iter().copied().filter(|&w| w != 0));
                *e.insert(u32::try_from(at).expect("class arena above 4G words"))
            }
        }
    }
}

/// Up to this many boundaries a field is searched by counting, not bisecting.
const SCAN_LIMIT: usize = 32;
/// Packets bisected together by [`Dim::find_burst`] (more chains in flight; too many and
/// their positions no longer fit in registers).
const GROUP: usize = 8;
const _: () = assert!(MAX_BURST.is_multiple_of(GROUP));
/// Boundaries counted per step (one or two vector registers of `u32`).
const LANES: usize = 8;

/// One field, partitioned into elementary intervals.
struct Dim<T> {
    /// First value of each interval; `starts[0] == T::MIN`. A short field is padded with
    /// `T::MAX` to a whole number of [`LANES`] so the count runs in full vectors.
    starts: Box<[T]>,
    /// Intervals (the unpadded length of `starts`).
    len: usize,
    /// Each interval's class: its rule bits themselves when the rules fit one word (up
    /// to 64: one load less per field), else its arena offset.
    class: Box<[u64]>,
}

impl<T: Key> Dim<T> {
    /// Partitions one field. `ranges[r]` are rule `r`'s accepted values as sorted, disjoint,
    /// non-adjacent inclusive ranges. Returns `None` when every rule accepts every value.
    fn build(ranges: &[Vec<(T, T)>], arena: &mut Arena) -> Option<Self> {
        let full = [(T::MIN, T::MAX)];
        if ranges.iter().all(|r| r.as_slice() == full) {
            return None;
        }
        let mut starts = vec![T::MIN];
        for &(lo, hi) in ranges.iter().flatten() {
            starts.push(lo);
            starts.extend(hi.next());
        }
        starts.sort_unstable();
        starts.dedup();
        let index = |x: T| starts.binary_search(&x).expect("boundary was collected");
        // (interval index, rule, set?) events for a left-to-right sweep.
        let mut events: Vec<(usize, u32, bool)> = Vec::new();
        for (rule, rs) in ranges.iter().enumerate() {
            for &(lo, hi) in rs {
                events.push((index(lo), rule as u32, true));
                if let Some(end) = hi.next() {
                    events.push((index(end), rule as u32, false));
                }
            }
        }
        events.sort_unstable();
        let mut dense = vec![0u64; ranges.len().div_ceil(64)];
        let mut class = Vec::with_capacity(starts.len());
        let mut ev = events.iter().peekable();
        let mut current = None;
        for i in 0..starts.len() {
            while let Some(&&(at, rule, set)) = ev.peek().filter(|e| e.0 == i) {
                debug_assert_eq!(at, i);
                let (w, b) = (rule as usize / 64, rule % 64);
                if set {
                    dense[w] |= 1 << b;
                } else {
                    dense[w] &= !(1 << b);
                }
                current = None;
                ev.next();
            }
            let c = *current.get_or_insert_with(|| arena.handle(&dense));
            class.push(c);
        }
        let len = starts.len();
        if len <= SCAN_LIMIT {
            starts.resize(len.next_multiple_of(LANES), T::MAX);
        }
        Some(Dim {
            starts: starts.into(),
            len,
            class: class.into(),
        })
    }

    #[inline]
    fn find(&self, x: T) -> u64 {
        // `starts[0] == MIN <= x`, so the count is at least 1. Few boundaries: count them
        // without branches (the compiler vectorises it); many: binary search.
        let below = if self.len <= SCAN_LIMIT {
            // Padding counts only when `x == T::MAX`, where every real start counts too.
            let n: u32 = self
                .starts
                .chunks_exact(LANES)
                .map(|c| c.iter().map(|&s| u32::from(s <= x)).sum::<u32>())
                .sum();
            (n as usize).min(self.len)
        } else {
            self.starts.partition_point(|&s| s <= x)
        };
        self.class[below - 1]
    }

    /// `out[i]` = class of `xs[i]`: one field across the whole burst keeps its keys hot.
    /// A long field is bisected for the whole burst in lockstep: every search over the same
    /// boundaries halves the same way, so each step is one independent load per packet,
    /// where searching packet by packet chains ~15 dependent loads each.
    #[inline]
    fn find_burst(&self, xs: impl Iterator<Item = T>, out: &mut [u64; MAX_BURST]) {
        if self.len <= SCAN_LIMIT {
            for (o, x) in out.iter_mut().zip(xs) {
                *o = self.find(x);
            }
            return;
        }
        let mut keys = [T::MIN; MAX_BURST];
        let mut n = 0usize;
        for (k, x) in keys.iter_mut().zip(xs) {
            *k = x;
            n += 1;
        }
        let (keys, starts) = (&keys[..n.next_multiple_of(GROUP)], &self.starts[..self.len]);
        // A few packets at a time, so their positions stay in registers. `b[j]` is the last
        // start known to be `<= k[j]` (`starts[0] == MIN`); the answer lies in
        // `b[j]..b[j] + size`. Padding keys (`MIN`) find interval 0; nobody reads theirs.
        for (k, out) in keys.chunks_exact(GROUP).zip(out.chunks_exact_mut(GROUP)) {
            let mut b = [0usize; GROUP];
            let mut size = starts.len();
            while size > 1 {
                let half = size / 2;
                for j in 0..GROUP {
                    // A conditional move, not a branch: the comparison is a coin toss.
                    b[j] = std::hint::select_unpredictable(starts[b[j] + half] <= k[j], b[j] + half, b[j]);
                }
                size -= half;
            }
            for (o, &b) in out.iter_mut().zip(&b) {
                *o = self.class[b];
            }
        }
    }
}

/// Address types a table is built for.
pub(crate) trait Family: Key {
    const V6: bool;
    fn ranges(set: &crate::AddrSet) -> Vec<(Self, Self)>;
    fn from_bits(bits: u128) -> Self;
}

impl Family for u32 {
    const V6: bool = false;
    fn ranges(set: &crate::AddrSet) -> Vec<(u32, u32)> {
        set.v4.clone()
    }
    #[inline]
    fn from_bits(bits: u128) -> u32 {
        bits as u32
    }
}

impl Family for u128 {
    const V6: bool = true;
    fn ranges(set: &crate::AddrSet) -> Vec<(u128, u128)> {
        set.v6.clone()
    }
    #[inline]
    fn from_bits(bits: u128) -> u128 {
        bits
    }
}

/// The classifier of one address family over an ordered rule list.
pub(crate) struct Table<A> {
    vrf: Option<Dim<u32>>,
    src: Option<Dim<A>>,
    dst: Option<Dim<A>>,
    /// `proto << 16 | b`.
    l4: Option<Dim<u32>>,
    a: Option<Dim<u16>>,
    arena: Box<[u64]>,
    width: usize,
    summary: usize,
    /// Table position -> index in the rule list.
    rule: Box<[u32]>,
}

const MAX_DIMS: usize = 5;

/// Most packets [`Table::first_match_burst`] takes.
pub(crate) const MAX_BURST: usize = 64;

#[inline]
fn l4_key(f: &Fields) -> u32 {
    u32::from(f.proto) << 16 | u32::from(f.b)
}

fn full<T>(lo: T, hi: T) -> Vec<(T, T)> {
    vec![(lo, hi)]
}

impl<A: Family> Table<A> {
    /// `rules` in evaluation order (with their list indices), already checked.
    pub(crate) fn build(rules: &[(u32, &Rule)]) -> Self {
        let rules: Vec<_> = rules.iter().filter(|(_, r)| r.admits_family(A::V6)).collect();
        let mut arena = Arena::new(rules.len());
        let vrf: Vec<Vec<(u32, u32)>> = rules
            .iter()
            .map(|(_, r)| r.vrf.map_or(full(0, u32::MAX), |v| full(v, v)))
            .collect();
        let addr = |pick: fn(&Rule) -> &Option<std::sync::Arc<crate::AddrSet>>| -> Vec<Vec<(A, A)>> {
            rules
                .iter()
                .map(|(_, r)| pick(r).as_ref().map_or(full(A::MIN, A::MAX), |s| A::ranges(s)))
                .collect()
        };
        let l4: Vec<Vec<(u32, u32)>> = rules
            .iter()
            .map(|(_, r)| {
                let Some(p) = r.proto.map(|p| u32::from(p) << 16) else {
                    return full(0, u32::MAX);
                };
                match (r.dst_ports, r.icmp) {
                    (Some(ports), _) => full(p | u32::from(ports.lo), p | u32::from(ports.hi)),
                    (None, Some(m)) => {
                        let t = p | u32::from(m.kind) << 8;
                        m.code
                            .map_or(full(t, t | 0xff), |c| full(t | u32::from(c), t | u32::from(c)))
                    }
                    (None, None) => full(p, p | 0xffff),
                }
            })
            .collect();
        let a: Vec<Vec<(u16, u16)>> = rules
            .iter()
            .map(|(_, r)| r.src_ports.map_or(full(0, u16::MAX), |p| full(p.lo, p.hi)))
            .collect();
        Table {
            vrf: Dim::build(&vrf, &mut arena),
            src: Dim::build(&addr(|r| &r.src), &mut arena),
            dst: Dim::build(&addr(|r| &r.dst), &mut arena),
            l4: Dim::build(&l4, &mut arena),
            a: Dim::build(&a, &mut arena),
            width: arena.width,
            summary: arena.summary,
            arena: arena.words.into(),
            rule: rules.iter().map(|(i, _)| *i).collect(),
        }
    }

    /// Index in the rule list of the first rule matching `f`.
    #[inline]
    pub(crate) fn first_match(&self, f: &Fields) -> Option<u32> {
        let mut offs = [0u64; MAX_DIMS];
        let mut n = 0;
        let mut push = |o: Option<u64>| {
            if let Some(o) = o {
                offs[n] = o;
                n += 1;
            }
        };
        push(self.vrf.as_ref().map(|d| d.find(f.vrf)));
        push(self.src.as_ref().map(|d| d.find(A::from_bits(f.src))));
        push(self.dst.as_ref().map(|d| d.find(A::from_bits(f.dst))));
        push(self.l4.as_ref().map(|d| d.find(l4_key(f))));
        push(self.a.as_ref().map(|d| d.find(f.a)));
        let pos = self.intersect(&offs[..n])?;
        Some(self.rule[pos])
    }

    /// [`Table::first_match`] for up to [`MAX_BURST`] packets of this family, one field at a
    /// time across the burst, then one intersection per packet.
    pub(crate) fn first_match_burst(&self, pkts: &[Fields], out: &mut [Option<u32>]) {
        debug_assert!(pkts.len() <= MAX_BURST && out.len() >= pkts.len());
        let out = &mut out[..pkts.len()];
        if self.width == 1 {
            // Up to 64 rules a class is one word: AND each field's word straight into the
            // packet's running intersection.
            let mut acc = [!0u64; MAX_BURST];
            self.each_field(pkts, |classes| {
                for (a, &c) in acc.iter_mut().zip(&classes[..pkts.len()]) {
                    *a &= c;
                }
            });
            for (o, &a) in out.iter_mut().zip(&acc) {
                *o = (a != 0).then(|| self.rule[a.trailing_zeros() as usize]);
            }
            return;
        }
        let mut offs = [[0u64; MAX_BURST]; MAX_DIMS];
        let mut n = 0;
        self.each_field(pkts, |classes| {
            // The classes lie scattered over the arena: start loading every packet's
            // summary words now, so the misses overlap the next field's searches.
            for &c in &classes[..pkts.len()] {
                wire::prefetch(&self.arena[c as usize]);
            }
            offs[n] = *classes;
            n += 1;
        });
        for (i, o) in out.iter_mut().enumerate() {
            let mut mine = [0u64; MAX_DIMS];
            for (m, field) in mine.iter_mut().zip(&offs[..n]) {
                *m = field[i];
            }
            *o = self.intersect(&mine[..n]).map(|pos| self.rule[pos]);
        }
    }

    /// Calls `f` with the burst's classes in each field that is not all wildcards.
    #[inline]
    fn each_field(&self, pkts: &[Fields], mut f: impl FnMut(&[u64; MAX_BURST])) {
        let mut classes = [0u64; MAX_BURST];
        if let Some(d) = &self.vrf {
            d.find_burst(pkts.iter().map(|p| p.vrf), &mut classes);
            f(&classes);
        }
        if let Some(d) = &self.src {
            d.find_burst(pkts.iter().map(|p| A::from_bits(p.src)), &mut classes);
            f(&classes);
        }
        if let Some(d) = &self.dst {
            d.find_burst(pkts.iter().map(|p| A::from_bits(p.dst)), &mut classes);
            f(&classes);
        }
        if let Some(d) = &self.l4 {
            d.find_burst(pkts.iter().map(l4_key), &mut classes);
            f(&classes);
        }
        if let Some(d) = &self.a {
            d.find_burst(pkts.iter().map(|p| p.a), &mut classes);
            f(&classes);
        }
    }

    /// Lowest rule position set in every class of `offs` (see [`Dim::class`]).
    #[inline]
    fn intersect(&self, offs: &[u64]) -> Option<usize> {
        if offs.is_empty() {
            return (!self.rule.is_empty()).then_some(0);
        }
        if self.width == 1 {
            let acc = offs.iter().fold(!0u64, |a, &w| a & w);
            return (acc != 0).then_some(acc.trailing_zeros() as usize);
        }
        let s = self.summary;
        let words = &self.arena;
        if s == 0 {
            for w in 0..self.width {
                let mut acc = !0u64;
                for &o in offs {
                    acc &= words[o as usize + w];
                }
                if acc != 0 {
                    return Some(w * 64 + acc.trailing_zeros() as usize);
                }
            }
            return None;
        }
        for sw in 0..s {
            let mut sum = !0u64;
            for &o in offs {
                sum &= words[o as usize + sw];
            }
            while sum != 0 {
                let bit = sum.trailing_zeros();
                let below = (1u64 << bit) - 1;
                let mut acc = !0u64;
                for &o in offs {
                    let o = o as usize;
                    let rank: u32 = words[o..o + sw].iter().map(|w| w.count_ones()).sum::<u32>()
                        + (words[o + sw] & below).count_ones();
                    acc &= words[o + s + rank as usize];
                }
                if acc != 0 {
                    return Some((sw * 64 + bit as usize) * 64 + acc.trailing_zeros() as usize);
                }
                sum &= sum - 1;
            }
        }
        None
    }

    /// Memory held, in bytes.
    pub(crate) fn bytes(&self) -> usize {
        fn dim<T>(d: &Option<Dim<T>>) -> usize {
            d.as_ref()
                .map_or(0, |d| d.starts.len() * size_of::<T>() + d.class.len() * 8)
        }
        dim(&self.vrf)
            + dim(&self.src)
            + dim(&self.dst)
            + dim(&self.l4)
            + dim(&self.a)
            + self.arena.len() * 8
            + self.rule.len() * 4
    }
}
