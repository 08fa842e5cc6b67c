//! What the last publishes changed, so that a flow cached under an older generation can
//! tell that its route cannot have changed, and skip deciding it again: with a stream of
//! route updates, every publish would otherwise send each flow's next packet through the
//! slow path.

use std::net::IpAddr;
use std::sync::Arc;

use crate::nexthop::VrfId;

/// Publishes a snapshot remembers.
const KEPT: usize = 32;
/// Most prefixes a record lists per VRF; past it, the record says the whole VRF.
const LISTED: usize = 64;

/// A prefix as address bits (IPv4 in the low 32) and length.
#[derive(Debug, Clone, Copy)]
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

/// What one publish changed.
#[derive(Debug, Clone)]
struct Record {
    generation: u32,
    /// The VRFs whose routes changed. `None`: anything may have changed (nexthops,
    /// labels, VNIs, neighbours, the route to a tunnel's far end, or another builder's
    /// publish).
    vrfs: Option<Vec<VrfChange<Prefix>>>,
}

/// A change to one VRF's routes.
#[derive(Debug, Clone)]
pub(crate) struct VrfChange<P> {
    pub(crate) vrf: VrfId,
    /// The prefixes added, changed or removed; `None`: any of its routes.
    pub(crate) prefixes: Option<Vec<P>>,
    /// Other VRFs translate into this one: the change holds for flows of every VRF.
    pub(crate) every_vrf: bool,
}

/// The records of the last publishes, oldest first (each shared by the snapshots that
/// remember it: a publish copies pointers, not prefix lists).
#[derive(Debug, Clone, Default)]
pub(crate) struct Recent(Arc<[Arc<Record>]>);

impl Recent {
    /// These records and publish `generation`'s, which changed `vrfs` (`None`: anything).
    pub(crate) fn then(&self, generation: u32, vrfs: Option<Vec<VrfChange<Prefix>>>) -> Recent {
        let vrfs = vrfs.map(|v| {
            v.into_iter()
                .map(|c| VrfChange {
                    prefixes: c.prefixes.filter(|p| p.len() <= LISTED),
                    ..c
                })
                .collect()
        });
        let skip = self.0.len().saturating_sub(KEPT - 1);
        let records: Vec<Arc<Record>> = self.0[skip..]
            .iter()
            .cloned()
            .chain([Arc::new(Record { generation, vrfs })])
            .collect();
        Recent(records.into())
    }

    /// Whether `dst`'s route in `vrf` is the same now (generation `now`) as under
    /// generation `since`: true only if every publish since is remembered and none can
    /// have changed it (none touched a prefix holding `dst` in `vrf`, nor anything a
    /// route depends on). `false` means "decide again", not "changed".
    pub(crate) fn unchanged_since(&self, now: u32, since: u32, vrf: VrfId, dst: IpAddr) -> bool {
        let n = now.wrapping_sub(since) as usize;
        if n == 0 {
            return true;
        }
        // The records run up to `now`, one per publish.
        if n > self.0.len() || self.0.last().map(|r| r.generation) != Some(now) {
            return false;
        }
        self.0[self.0.len() - n..].iter().all(|r| {
            let Some(vrfs) = &r.vrfs else { return false };
            vrfs.iter().all(|c| {
                (c.vrf != vrf && !c.every_vrf)
                    || c.prefixes.as_ref().is_some_and(|p| !p.iter().any(|p| p.contains(dst)))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        r = r.then(1, Some(vec![change(1, Some(&[("10.1.0.0", 16)]))]));
        r = r.then(2, Some(vec![change(2, None)]));
        r = r.then(3, Some(vec![change(1, Some(&[("2001:db8::", 32)]))]));
        assert!(r.unchanged_since(3, 3, 1, ip("10.1.2.3")), "nothing since");
        assert!(!r.unchanged_since(3, 0, 1, ip("10.1.2.3")), "its prefix changed in 1");
        assert!(r.unchanged_since(3, 1, 1, ip("10.1.2.3")));
        assert!(r.unchanged_since(3, 0, 1, ip("10.2.0.1")), "another prefix");
        assert!(!r.unchanged_since(3, 1, 2, ip("10.2.0.1")), "VRF 2 changed whole");
        assert!(!r.unchanged_since(3, 2, 1, ip("2001:db8::1")));
        assert!(r.unchanged_since(3, 2, 1, ip("2001:db9::1")));
        // 10.0.0.0/16's bits as an IPv6 address do not match it.
        assert!(r.unchanged_since(3, 0, 1, ip("::a01:203")));
        // Generation 4 changed anything: nothing before it is known unchanged.
        r = r.then(4, None);
        assert!(!r.unchanged_since(4, 3, 1, ip("10.9.9.9")));
        assert!(r.unchanged_since(4, 4, 1, ip("10.9.9.9")));
        // A default route's change holds every address; too many prefixes, the whole VRF.
        r = r.then(5, Some(vec![change(1, Some(&[("0.0.0.0", 0)]))]));
        assert!(!r.unchanged_since(5, 4, 1, ip("192.0.2.1")));
        let many = (0..=LISTED as u32)
            .map(|i| Prefix::new(IpAddr::from((0x0b00_0000 + (i << 8)).to_be_bytes()), 24))
            .collect();
        r = r.then(
            6,
            Some(vec![VrfChange {
                prefixes: Some(many),
                ..change(1, None)
            }]),
        );
        assert!(
            !r.unchanged_since(6, 5, 1, ip("192.0.2.1")),
            "listed no more: the whole VRF"
        );
        // Only the last KEPT publishes are remembered.
        for g in 7..7 + KEPT as u32 {
            r = r.then(g, Some(vec![]));
        }
        let now = 6 + KEPT as u32;
        assert!(r.unchanged_since(now, now - KEPT as u32, 1, ip("192.0.2.1")));
        assert!(!r.unchanged_since(now, now - KEPT as u32 - 1, 1, ip("192.0.2.1")));
        // A VRF others translate into: its change holds for flows of every VRF.
        let translated = VrfChange {
            every_vrf: true,
            ..change(3, Some(&[("192.0.2.0", 24)]))
        };
        r = r.then(now + 1, Some(vec![translated]));
        assert!(!r.unchanged_since(now + 1, now, 1, ip("192.0.2.1")));
        assert!(r.unchanged_since(now + 1, now, 1, ip("198.51.100.1")));
    }
}
