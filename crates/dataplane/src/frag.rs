//! Following IPv4 fragments: only the first fragment carries the ports, so the first one
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

#[derive(Clone, Copy, PartialEq, Eq)]
struct Key {
    vrf: u32,
    src: [u8; 4],
    dst: [u8; 4],
    proto: u8,
    ident: u16,
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
        let mut h =
            u64::from(k.vrf) ^ u64::from(u32::from_be_bytes(k.src)) << 20 ^ u64::from(u32::from_be_bytes(k.dst));
        h ^= u64::from(k.ident) << 40 ^ u64::from(k.proto) << 56;
        h = h.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (h >> 32) as usize % FRAG_SLOTS
    }

    fn live(&self, e: &Option<Entry>, now: u64) -> bool {
        e.is_some_and(|e| now.saturating_sub(e.born) < FRAG_TIMEOUT_SECS)
    }

    /// The first fragment of a datagram passed with these ports. `false` if the table
    /// is full around its slot (later fragments will then be dropped).
    pub(crate) fn first(
        &mut self,
        vrf: u32,
        src: [u8; 4],
        dst: [u8; 4],
        proto: u8,
        ident: u16,
        ports: (u16, u16),
    ) -> bool {
        let key = Key {
            vrf,
            src,
            dst,
            proto,
            ident,
        };
        let now = self.now();
        let h = Self::home(&key);
        for p in 0..PROBE {
            let i = (h + p) % FRAG_SLOTS;
            let slot = self.slots[i];
            if !self.live(&slot, now) || slot.is_some_and(|e| e.key == key) {
                self.slots[i] = Some(Entry { key, ports, born: now });
                return true;
            }
        }
        false
    }

    /// The ports of a later fragment's datagram; `last` (no more fragments) ends the entry.
    pub(crate) fn later(
        &mut self,
        vrf: u32,
        src: [u8; 4],
        dst: [u8; 4],
        proto: u8,
        ident: u16,
        last: bool,
    ) -> Option<(u16, u16)> {
        let key = Key {
            vrf,
            src,
            dst,
            proto,
            ident,
        };
        let now = self.now();
        let h = Self::home(&key);
        for p in 0..PROBE {
            let i = (h + p) % FRAG_SLOTS;
            if let Some(e) = self.slots[i]
                && e.key == key
                && self.live(&self.slots[i], now)
            {
                if last {
                    self.slots[i] = None;
                }
                return Some(e.ports);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_fragments_find_their_first_and_the_last_ends_it() {
        let mut t = FragTable::new();
        let (s, d) = ([10, 0, 0, 1], [10, 0, 0, 2]);
        assert!(t.first(1, s, d, 17, 77, (4000, 53)));
        assert_eq!(t.later(1, s, d, 17, 77, false), Some((4000, 53)));
        assert_eq!(t.later(2, s, d, 17, 77, false), None, "another VRF");
        assert_eq!(t.later(1, s, d, 17, 78, false), None, "another datagram");
        assert_eq!(t.later(1, s, d, 17, 77, true), Some((4000, 53)));
        assert_eq!(t.later(1, s, d, 17, 77, false), None, "ended by the last fragment");
    }

    #[test]
    fn a_full_neighbourhood_refuses_rather_than_overwrites() {
        let mut t = FragTable::new();
        let (s, d) = ([10, 0, 0, 1], [10, 0, 0, 2]);
        let mut stored = 0;
        for id in 0..(FRAG_SLOTS as u16 * 2) {
            if t.first(1, s, d, 17, id, (id, id)) {
                stored += 1;
            }
        }
        assert!(stored <= FRAG_SLOTS);
        // Everything stored is still found with its own ports.
        let found = (0..(FRAG_SLOTS as u16 * 2))
            .filter(|&id| t.later(1, s, d, 17, id, false) == Some((id, id)))
            .count();
        assert_eq!(found, stored);
    }
}
