//! What the last publishes changed, so that a flow cached under an older generation can
//! tell that its route cannot have changed, and skip deciding it again: with a stream of
//! route updates, every publish would otherwise send each flow's next packet through the
//! slow path.

use std::net::IpAddr;

use crate::nexthop::{NexthopId, VrfId};

/// Publishes a snapshot remembers.
const KEPT: usize = 32;
/// Most prefixes a record lists per VRF, and most nexthops; past it, the record says the
/// whole VRF, or anything.
pub(crate) const LISTED: usize = 64;

/// A prefix as address bits (IPv4 in the low 32) and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Prefix {
    bits: u128,
    len: u8,
    v6: bool,
}

impl Prefix {
    pub(crate) fn new(addr: IpAddr, len: u8) -> Self {
        match addr {
            IpAddr::V4(a) => Prefix {
                bits: u128::from(u32::from(a)),
                len,
                v6: false,
            },
            IpAddr::V6(a) => Prefix {
                bits: u128::from(a),
                len,
                v6: true,
            },
        }
    }

    pub(crate) fn contains(&self, a: IpAddr) -> bool {
        let (bits, width) = match a {
            IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
            IpAddr::V6(a) => (u128::from(a), 128),
        };
        let v6 = width == 128;
        let host = u32::from(width - self.len.min(width));
        v6 == self.v6 && bits.checked_shr(host).unwrap_or(0) == self.bits.checked_shr(host).unwrap_or(0)
    }
}

/// What one publish changed: VRFs' routes, and nexthops (defined, redefined or removed).
pub(crate) type Changed = (Vec<VrfChange<Prefix>>, Vec<NexthopId>);

/// A change to one VRF's routes.
#[derive(Debug, Clone)]
pub(crate) struct VrfChange<P> {
    pub(crate) vrf: VrfId,
    /// The prefixes added, changed or removed; `None`: any of its routes.
    pub(crate) prefixes: Option<Vec<P>>,
    /// Other VRFs translate into this one: the change holds for flows of every VRF.
    pub(crate) every_vrf: bool,
}

/// One changed prefix of a VRF, or the whole VRF, or a changed nexthop, flattened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    /// `None`: the whole VRF.
    prefix: Option<Prefix>,
    vrf: VrfId,
    every_vrf: bool,
    /// A nexthop changed (the other fields unused).
    nexthop: Option<NexthopId>,
}

impl Entry {
    /// Whether this change may have moved `dst`'s route in `vrf`; for a changed nexthop,
    /// `uses` says.
    #[inline]
    fn touches(&self, vrf: VrfId, dst: IpAddr, uses: &mut impl FnMut(NexthopId) -> bool) -> bool {
        match self.nexthop {
            Some(id) => uses(id),
            None => (self.vrf == vrf || self.every_vrf) && self.prefix.is_none_or(|p| p.contains(dst)),
        }
    }
}

/// Most entries a check reads: past them a flow is decided again, which costs about
/// what reading them would.
const SCANNED: usize = 128;

/// What the last publishes changed, newest first, in one flat array: a flow `n` publishes
/// old reads the first entries, up to where the `n`th publish's end, in memory its
/// snapshot's publish wrote. Each publish copies the previous list behind its own
/// entries, without those it repeats, up to [`SCANNED`].
#[derive(Debug, Clone, Default)]
pub(crate) struct Recent {
    /// The generation the list runs up to (its snapshot's).
    now: u32,
    /// `ends[k]`: `entries[..ends[k]]` lists the changes of the last `k + 1` publishes.
    /// `None`: one of them may have changed anything (nexthops, labels, VNIs,
    /// neighbours, the route to a tunnel's far end, another builder's publish), or they
    /// list more than [`SCANNED`]; deeper levels then are `None` too.
    ends: Box<[Option<u16>]>,
    entries: Box<[Entry]>,
}

impl Recent {
    /// This list and publish `generation`'s changes (`None`: anything).
    pub(crate) fn then(&self, generation: u32, changed: Option<Changed>) -> Recent {
        let Some(mut entries) = changed.and_then(record).filter(|r| r.len() <= SCANNED) else {
            return Recent {
                now: generation,
                ends: Box::new([None]),
                entries: Box::default(),
            };
        };
        // Older levels count only if this publish directly follows them.
        let older = if generation == self.now.wrapping_add(1) {
            &self.ends[..self.ends.len().min(KEPT - 1)]
        } else {
            &[]
        };
        let r = entries.len();
        let used = older.iter().rev().find_map(|e| *e).map_or(0, usize::from);
        // Behind this publish's entries, the older ones it does not repeat (a flapping
        // route is listed once), and how many of the first `i` are kept.
        let mut kept_before = Vec::with_capacity(used + 1);
        kept_before.push(0);
        for e in &self.entries[..used] {
            if !entries[..r].contains(e) {
                entries.push(*e);
            }
            kept_before.push(entries.len() - r);
        }
        let fits = |n: usize| (n <= SCANNED).then_some(n as u16);
        let ends: Box<[Option<u16>]> = std::iter::once(fits(r))
            .chain(
                older
                    .iter()
                    .map(|e| e.and_then(|e| fits(r + kept_before[usize::from(e)]))),
            )
            .collect();
        entries.truncate(ends.iter().rev().find_map(|e| *e).map_or(0, usize::from));
        Recent {
            now: generation,
            ends,
            entries: entries.into(),
        }
    }

    /// Whether `dst`'s route in `vrf` is the same now (generation `now`) as under
    /// generation `since`: true only if every publish since is remembered and none can
    /// have changed it (none touched a prefix holding `dst` in `vrf`, nor anything a
    /// route depends on, nor a nexthop for which `uses` answers true). `false` means
    /// "decide again", not "changed".
    #[inline]
    pub(crate) fn unchanged_since(
        &self,
        now: u32,
        since: u32,
        vrf: VrfId,
        dst: IpAddr,
        mut uses: impl FnMut(NexthopId) -> bool,
    ) -> bool {
        let n = now.wrapping_sub(since) as usize;
        if n == 0 {
            return true;
        }
        if self.now != now {
            return false;
        }
        match self.ends.get(n - 1) {
            Some(Some(end)) => !self.entries[..usize::from(*end)]
                .iter()
                .any(|e| e.touches(vrf, dst, &mut uses)),
            _ => false,
        }
    }
}

/// One publish's changes as entries: each VRF's prefixes, or the whole VRF past
/// [`LISTED`] of them, and the nexthops; `None` (anything) past [`LISTED`] VRFs or
/// nexthops.
fn record((vrfs, nexthops): Changed) -> Option<Vec<Entry>> {
    if vrfs.len() > LISTED || nexthops.len() > LISTED {
        return None;
    }
    let mut e: Vec<Entry> = nexthops
        .into_iter()
        .map(|id| Entry {
            prefix: None,
            vrf: 0,
            every_vrf: false,
            nexthop: Some(id),
        })
        .collect();
    for c in vrfs {
        let whole = Entry {
            prefix: None,
            vrf: c.vrf,
            every_vrf: c.every_vrf,
            nexthop: None,
        };
        match c.prefixes.filter(|p| p.len() <= LISTED) {
            Some(p) => e.extend(p.into_iter().map(|p| Entry {
                prefix: Some(p),
                ..whole
            })),
            None => e.push(whole),
        }
    }
    Some(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Routes changed, no nexthop.
    fn routes(v: Vec<VrfChange<Prefix>>) -> Option<Changed> {
        Some((v, Vec::new()))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// VRF `vrf` changed under `prefixes` (`None`: whole).
    fn change(vrf: VrfId, prefixes: Option<&[(&str, u8)]>) -> VrfChange<Prefix> {
        VrfChange {
            vrf,
            prefixes: prefixes.map(|p| p.iter().map(|&(a, l)| Prefix::new(ip(a), l)).collect()),
            every_vrf: false,
        }
    }

    #[test]
    fn a_flow_decides_again_only_when_a_publish_since_may_have_changed_its_route() {
        let mut r = Recent::default();
        // Generation 1: 10.1.0.0/16 in VRF 1; 2: VRF 2 whole; 3: 2001:db8::/32 in VRF 1.
        r = r.then(1, routes(vec![change(1, Some(&[("10.1.0.0", 16)]))]));
        r = r.then(2, routes(vec![change(2, None)]));
        r = r.then(3, routes(vec![change(1, Some(&[("2001:db8::", 32)]))]));
        assert!(r.unchanged_since(3, 3, 1, ip("10.1.2.3"), |_| true), "nothing since");
        assert!(
            !r.unchanged_since(3, 0, 1, ip("10.1.2.3"), |_| true),
            "its prefix changed in 1"
        );
        assert!(r.unchanged_since(3, 1, 1, ip("10.1.2.3"), |_| true));
        assert!(r.unchanged_since(3, 0, 1, ip("10.2.0.1"), |_| true), "another prefix");
        assert!(
            !r.unchanged_since(3, 1, 2, ip("10.2.0.1"), |_| true),
            "VRF 2 changed whole"
        );
        assert!(!r.unchanged_since(3, 2, 1, ip("2001:db8::1"), |_| true));
        assert!(r.unchanged_since(3, 2, 1, ip("2001:db9::1"), |_| true));
        // 10.0.0.0/16's bits as an IPv6 address do not match it.
        assert!(r.unchanged_since(3, 0, 1, ip("::a01:203"), |_| true));
        // Generation 4 changed anything: nothing before it is known unchanged.
        r = r.then(4, None);
        assert!(!r.unchanged_since(4, 3, 1, ip("10.9.9.9"), |_| true));
        assert!(r.unchanged_since(4, 4, 1, ip("10.9.9.9"), |_| true));
        // A default route's change holds every address; too many prefixes, the whole VRF.
        r = r.then(5, routes(vec![change(1, Some(&[("0.0.0.0", 0)]))]));
        assert!(!r.unchanged_since(5, 4, 1, ip("192.0.2.1"), |_| true));
        let many = (0..=LISTED as u32)
            .map(|i| Prefix::new(IpAddr::from((0x0b00_0000 + (i << 8)).to_be_bytes()), 24))
            .collect();
        r = r.then(
            6,
            routes(vec![VrfChange {
                prefixes: Some(many),
                ..change(1, None)
            }]),
        );
        assert!(
            !r.unchanged_since(6, 5, 1, ip("192.0.2.1"), |_| true),
            "listed no more: the whole VRF"
        );
        // Only the last KEPT publishes are remembered.
        for g in 7..7 + KEPT as u32 {
            r = r.then(g, routes(vec![]));
        }
        let now = 6 + KEPT as u32;
        assert!(r.unchanged_since(now, now - KEPT as u32, 1, ip("192.0.2.1"), |_| true));
        assert!(!r.unchanged_since(now, now - KEPT as u32 - 1, 1, ip("192.0.2.1"), |_| true));
        // A VRF others translate into: its change holds for flows of every VRF.
        let translated = VrfChange {
            every_vrf: true,
            ..change(3, Some(&[("192.0.2.0", 24)]))
        };
        r = r.then(now + 1, routes(vec![translated]));
        assert!(!r.unchanged_since(now + 1, now, 1, ip("192.0.2.1"), |_| true));
        assert!(r.unchanged_since(now + 1, now, 1, ip("198.51.100.1"), |_| true));
        // A publish that does not follow the last one remembered starts afresh.
        let r = r.then(now + 3, routes(vec![]));
        assert!(r.unchanged_since(now + 3, now + 2, 1, ip("192.0.2.1"), |_| true));
        assert!(!r.unchanged_since(now + 3, now + 1, 1, ip("198.51.100.1"), |_| true));
    }

    #[test]
    fn a_flapping_route_is_listed_once() {
        let mut r = Recent::default();
        for g in 1..=100 {
            let p = if g % 2 == 0 { "10.1.0.0" } else { "10.2.0.0" };
            r = r.then(g, routes(vec![change(1, Some(&[(p, 16)]))]));
        }
        assert_eq!(r.entries.len(), 2);
        assert_eq!(r.ends.len(), KEPT);
        assert!(r.unchanged_since(100, 99, 1, ip("10.2.3.4"), |_| true));
        assert!(!r.unchanged_since(100, 98, 1, ip("10.2.3.4"), |_| true));
        assert!(!r.unchanged_since(100, 70, 1, ip("10.1.3.4"), |_| true));
        assert!(r.unchanged_since(100, 68, 1, ip("10.3.3.4"), |_| true));
        assert!(
            !r.unchanged_since(100, 67, 1, ip("10.3.3.4"), |_| true),
            "not remembered"
        );
    }

    #[test]
    fn a_check_reads_a_bounded_list() {
        // Distinct prefixes, five per publish: listed while the publishes since list at
        // most SCANNED, and past that the flow is decided again.
        let mut r = Recent::default();
        for g in 1..=KEPT as u32 + 5 {
            let a = IpAddr::from((0x0b00_0000u32 + (g << 8)).to_be_bytes());
            let mut c = vec![change(1, None)];
            c[0].prefixes = Some((0..5).map(|j| Prefix::new(a, 24 + j)).collect());
            r = r.then(g, routes(c));
        }
        let now = KEPT as u32 + 5;
        assert!(r.entries.len() <= SCANNED, "{} entries", r.entries.len());
        assert!(
            r.unchanged_since(now, now - 25, 1, ip("12.0.0.1"), |_| true),
            "125 listed: not it"
        );
        assert!(
            !r.unchanged_since(now, now - 25, 1, ip("11.0.30.1"), |_| true),
            "listed"
        );
        assert!(
            !r.unchanged_since(now, now - 26, 1, ip("12.0.0.1"), |_| true),
            "130: decided again"
        );
        assert!(!r.unchanged_since(now, now - 26, 2, ip("12.0.0.1"), |_| true));
        // Past LISTED VRFs in one publish, anything.
        let many = (0..=LISTED as u32).map(|v| change(v + 10, None)).collect();
        let r = r.then(now + 1, routes(many));
        assert!(!r.unchanged_since(now + 1, now, 1, ip("12.0.0.1"), |_| true));
    }
}
