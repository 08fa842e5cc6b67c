//! Big IPv4 tables: DIR-24-8, as DPDK's `rte_lpm`. A 2^24-entry first level indexed by
//! the top 24 bits answers every prefix up to /24 in one memory access; longer prefixes
//! get a 256-entry second-level group under their /24. 64 MiB plus 1 KiB per /24 that
//! holds longer prefixes, whatever the route count: worth it only for big VRFs (see
//! `Lpm4`).

use std::collections::BTreeMap;

use crate::lpm::Lineage;
use crate::prefix::{Addr, Route};

/// First-level entries pointing to a second-level group have this bit set.
const GROUP: u32 = 1 << 31;

pub(crate) struct Dir248 {
    tbl24: Box<[u32]>,
    tbl8: Box<[u32]>,
    /// Second-level groups no first-level entry points to any more (left by
    /// [`patched`](crate::lpm::BigTable::patched)), for later patches to reuse.
    free: Vec<u32>,
    lineage: Lineage<u32>,
}

/// Writes route `r` over what the tables hold: its /24s when it is a /24 or shorter, else
/// its addresses in its /24's group (made from the /24's value if it has none yet).
fn paint(tbl24: &mut [u32], tbl8: &mut Vec<u32>, free: &mut Vec<u32>, r: &Route<u32>) {
    let value = r.nexthop + 1;
    let (first, last) = (r.net, r.net.last(r.len));
    if r.len <= 24 {
        tbl24[(first >> 8) as usize..=(last >> 8) as usize].fill(value);
        return;
    }
    let slot = &mut tbl24[(first >> 8) as usize];
    if *slot & GROUP == 0 {
        let g = free.pop().map_or_else(
            || {
                tbl8.resize(tbl8.len() + 256, 0);
                tbl8.len() / 256 - 1
            },
            |g| g as usize,
        );
        tbl8[g * 256..(g + 1) * 256].fill(*slot);
        *slot = GROUP | g as u32;
    }
    let base = ((*slot & !GROUP) as usize) * 256;
    tbl8[base + (first & 0xff) as usize..=base + (last & 0xff) as usize].fill(value);
}

/// Paints `routes` shorter first, so that longer ones overwrite what they cover.
fn paint_all(tbl24: &mut [u32], tbl8: &mut Vec<u32>, free: &mut Vec<u32>, mut routes: Vec<Route<u32>>) {
    routes.sort_by_key(|r| r.len);
    for r in &routes {
        paint(tbl24, tbl8, free, r);
    }
}

#[cfg(test)]
impl Dir248 {
    /// The memory behind the first level (for tests that check it is reused).
    pub(crate) fn first_level(&self) -> *const u32 {
        self.tbl24.as_ptr()
    }
}

impl crate::lpm::BigTable<u32> for Dir248 {
    fn build(routes: &[Route<u32>]) -> Self {
        // On huge pages: a random destination's entry then costs a cache miss without a
        // page walk.
        let mut tbl24: Box<[u32]> = hugemem::table_of(1 << 24);
        let (mut tbl8, mut free) = (Vec::new(), Vec::new());
        paint_all(&mut tbl24, &mut tbl8, &mut free, routes.to_vec());
        Dir248 {
            tbl24,
            tbl8: hugemem::copy_of(&tbl8),
            free,
            lineage: Lineage::new(),
        }
    }

    /// Repaints the /24s each region spans (freeing their groups first).
    fn patched(&self, routes: &BTreeMap<(u32, u8), u32>, changed: &[(u32, u8)], spare: Option<Dir248>) -> Dir248 {
        let (mut tbl24, mut tbl8, mut free, regions, in_place) = match spare {
            Some(s) => match self.lineage.regions(&s.lineage, changed) {
                Some(regions) => (s.tbl24, s.tbl8.into_vec(), s.free, regions, true),
                None => {
                    let mut tbl24 = s.tbl24;
                    tbl24.copy_from_slice(&self.tbl24);
                    (tbl24, self.tbl8.to_vec(), self.free.clone(), changed.to_vec(), false)
                }
            },
            None => (
                hugemem::copy_of(&self.tbl24),
                self.tbl8.to_vec(),
                self.free.clone(),
                changed.to_vec(),
                false,
            ),
        };
        let groups = tbl8.len();
        for &(net, len) in &regions {
            // The /24s the prefix spans, as one aligned prefix of at most 24 bits.
            let l = len.min(24);
            let region = net.network(l);
            let (lo, hi) = ((region >> 8) as usize, (region.last(l) >> 8) as usize);
            // The region's groups go back; painting re-creates those still needed.
            free.extend(tbl24[lo..=hi].iter().filter(|&&e| e & GROUP != 0).map(|&e| e & !GROUP));
            let covering = (0..l).rev().find_map(|k| routes.get(&(region.network(k), k)));
            tbl24[lo..=hi].fill(covering.map_or(0, |nh| nh + 1));
            let inside = routes
                .range((region, l)..=(region.last(l), 32))
                .filter(|&(&(_, rl), _)| rl >= l)
                .map(|(&(net, len), &nexthop)| Route { net, len, nexthop })
                .collect();
            paint_all(&mut tbl24, &mut tbl8, &mut free, inside);
        }
        Dir248 {
            tbl24,
            // The spare's second level stays where it lies unless it grew; a copy lands
            // on huge pages if big.
            tbl8: if in_place && tbl8.len() == groups {
                tbl8.into_boxed_slice()
            } else {
                hugemem::copy_of(&tbl8)
            },
            free,
            lineage: self.lineage.child(changed),
        }
    }

    fn lineage(&self) -> &Lineage<u32> {
        &self.lineage
    }

    #[inline]
    fn lookup(&self, addr: u32) -> Option<u32> {
        let e = self.tbl24[(addr >> 8) as usize];
        let e = if e & GROUP != 0 {
            self.tbl8[((e & !GROUP) as usize) * 256 + (addr & 0xff) as usize]
        } else {
            e
        };
        e.checked_sub(1)
    }

    /// Looks up a burst: prefetch every first-level entry, then read them (and the rare
    /// second level), so the misses overlap.
    fn lookup_burst(&self, addrs: &[u32], out: &mut [Option<u32>]) {
        for &a in addrs {
            wire::prefetch(&self.tbl24[(a >> 8) as usize]);
        }
        for (o, &a) in out.iter_mut().zip(addrs) {
            *o = self.lookup(a);
        }
    }

    #[inline]
    fn prefetch(&self, addr: u32) {
        wire::prefetch(&self.tbl24[(addr >> 8) as usize]);
    }

    fn bytes(&self) -> usize {
        self.tbl24.len() * 4 + self.tbl8.len() * 4
    }
}
