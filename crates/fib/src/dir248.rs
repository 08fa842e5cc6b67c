//! Big IPv4 tables: DIR-24-8, as DPDK's `rte_lpm`. A 2^24-entry first level indexed by
//! the top 24 bits answers every prefix up to /24 in one memory access; longer prefixes
//! get a 256-entry second-level group under their /24. 64 MiB plus 1 KiB per /24 that
//! holds longer prefixes, whatever the route count: worth it only for big VRFs (see
//! `Lpm4`).

use crate::prefix::{Addr, Route};

/// First-level entries pointing to a second-level group have this bit set.
const GROUP: u32 = 1 << 31;

pub(crate) struct Dir248 {
    tbl24: Box<[u32]>,
    tbl8: Box<[u32]>,
}

impl crate::lpm::BigTable<u32> for Dir248 {
    fn build(routes: &[Route<u32>]) -> Self {
        let mut sorted = routes.to_vec();
        // Shorter prefixes first: longer ones then overwrite what they cover.
        sorted.sort_by_key(|r| r.len);
        // On huge pages: a random destination's entry then costs a cache miss without a
        // page walk.
        let mut tbl24: Box<[u32]> = hugemem::table_of(1 << 24);
        let mut tbl8: Vec<u32> = Vec::new();
        for r in &sorted {
            let value = r.nexthop + 1;
            let (first, last) = (r.net, r.net.last(r.len));
            if r.len <= 24 {
                tbl24[(first >> 8) as usize..=(last >> 8) as usize].fill(value);
            } else {
                let slot = &mut tbl24[(first >> 8) as usize];
                if *slot & GROUP == 0 {
                    let covering = *slot;
                    *slot = GROUP | (tbl8.len() / 256) as u32;
                    tbl8.resize(tbl8.len() + 256, covering);
                }
                let base = ((*slot & !GROUP) as usize) * 256;
                tbl8[base + (first & 0xff) as usize..=base + (last & 0xff) as usize].fill(value);
            }
        }
        let mut groups: Box<[u32]> = hugemem::table_of(tbl8.len());
        groups.copy_from_slice(&tbl8);
        Dir248 { tbl24, tbl8: groups }
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

    fn bytes(&self) -> usize {
        self.tbl24.len() * 4 + self.tbl8.len() * 4
    }
}
