//! Following IP fragments (IPv4 and IPv6): only the first fragment carries the ports, so the first one
//! is classified like any packet and leaves its ports here; later fragments of the same
//! datagram borrow them and so hit the first one's flow and its decision.
//!
//! Per worker, fixed size, open addressing over a small table; entries age out after
//! [`FRAG_TIMEOUT_SECS`] and are dropped when the last fragment passes. A later fragment
//! with no entry (it overtook its first, or the entry aged out) is a counted drop.

use std::time::Instant;

/// Datagrams being followed at once, per worker.
pub const FRAG_SLOTS: usize = 1024;
/// Seconds a datagram's entry lives after its first fragment.
pub const FRAG_TIMEOUT_SECS: u64 = 2;

/// Identifies a datagram: VRF, addresses (IPv4 in the first 4 bytes), protocol, IP
/// identification (16 bits in IPv4, 32 in the IPv6 fragment header).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Key {
    pub(crate) vrf: u32,
    pub(crate) src: [u8; 16],
    pub(crate) dst: [u8; 16],
    pub(crate) proto: u8,
    pub(crate) ident: u32,
}

#[derive(Clone, Copy)]
struct Entry {
    key: Key,
    ports: (u16, u16),
    born: u64,
}

/// One worker's fragment table.
pub(crate) struct FragTable {
    slots: Box<[Option<Entry>]>,
    epoch: Instant,
}

/// How far a key probes before giving up.
const PROBE: usize = 8;

impl FragTable {
    pub(crate) fn new() -> Self {
        FragTable {
            slots: vec![None; FRAG_SLOTS].into_boxed_slice(),
            epoch: Instant::now(),
        }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_secs()
    }

    fn home(k: &Key) -> usize {
        let fold = |a: &[u8; 16]| {
            a.chunks(8)
                .fold(0u64, |h, c| h ^ u64::from_be_bytes(c.try_into().expect("8")))
        };
        let mut h = u64::from(k.vrf) ^ fold(&k.src) << 20 ^ fold(&k.dst);
        h ^= u64::from(k.ident) << 24 ^ u64::from(k.proto) << 56;
        h = h.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (h >> 32) as usize % FRAG_SLOTS
    }

    fn live(&self, e: &Option<Entry>, now: u64) -> bool {
        e.is_some_and(|e| now.saturating_sub(e.born) < FRAG_TIMEOUT_SECS)
    }

    /// The first slot of `key`'s probe sequence that `fits`.
    fn probe(&self, key: &Key, fits: impl Fn(&Option<Entry>) -> bool) -> Option<usize> {
        let h = Self::home(key);
        (0..PROBE).map(|p| (h + p) % FRAG_SLOTS).find(|&i| fits(&self.slots[i]))
    }

    /// The first fragment of datagram `key` passed with these ports. `false` if the
    /// table is full around its slot (its later fragments will then be dropped).
    pub(crate) fn first(&mut self, key: Key, ports: (u16, u16)) -> bool {
        let now = self.now();
        let Some(i) = self.probe(&key, |s| !self.live(s, now) || s.is_some_and(|e| e.key == key)) else {
            return false;
        };
        self.slots[i] = Some(Entry { key, ports, born: now });
        true
    }

    /// The ports of a later fragment's datagram; `last` (no more fragments) ends the entry.
    pub(crate) fn later(&mut self, key: Key, last: bool) -> Option<(u16, u16)> {
        let now = self.now();
        let i = self.probe(&key, |s| self.live(s, now) && s.is_some_and(|e| e.key == key))?;
        let ports = self.slots[i]?.ports;
        if last {
            self.slots[i] = None;
        }
        Some(ports)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(vrf: u32, ident: u32) -> Key {
        let addr = |last| {
            let mut a = [0; 16];
            a[..4].copy_from_slice(&[10, 0, 0, last]);
            a
        };
        Key {
            vrf,
            src: addr(1),
            dst: addr(2),
            proto: 17,
            ident,
        }
    }

    #[test]
    fn later_fragments_find_their_first_and_the_last_ends_it() {
        let mut t = FragTable::new();
        let k = key(1, 77);
        assert!(t.first(k, (4000, 53)));
        assert_eq!(t.later(k, false), Some((4000, 53)));
        assert_eq!(t.later(key(2, 77), false), None, "another VRF");
        assert_eq!(t.later(key(1, 78), false), None, "another datagram");
        assert_eq!(t.later(k, true), Some((4000, 53)));
        assert_eq!(t.later(k, false), None, "ended by the last fragment");
    }

    #[test]
    fn a_full_neighbourhood_refuses_rather_than_overwrites() {
        let mut t = FragTable::new();
        let mut stored = 0;
        for id in 0..(FRAG_SLOTS as u32 * 2) {
            if t.first(key(1, id), (id as u16, id as u16)) {
                stored += 1;
            }
        }
        assert!(stored <= FRAG_SLOTS);
        // Everything stored is still found with its own ports.
        let found = (0..(FRAG_SLOTS as u32 * 2))
            .filter(|&id| t.later(key(1, id), false) == Some((id as u16, id as u16)))
            .count();
        assert_eq!(found, stored);
    }
}
