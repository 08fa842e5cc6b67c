//! Per-worker memory of which VRF a tunnel's packets belong to, so decapsulating a packet
//! does not repeat the control plane's lookups for its tunnel.
//!
//! A VXLAN VNI maps to a VRF through one FIB hash lookup; an MPLS label through two (label
//! to nexthop, nexthop to VRF) and the node's port roles. The answers change only when the
//! FIB is republished, so each worker keeps the recent ones (refusals too: a stream of
//! packets for an unknown VNI is dropped without a lookup each) and forgets them all when
//! the FIB generation moves.

/// What a tunnel header names its packets' VRF by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TunnelId {
    /// A VXLAN network identifier.
    Vni(u32),
    /// The top MPLS label (over UDP or GRE).
    Label(u32),
}

const SLOT_BITS: u32 = 6;

/// Tunnel id -> VRF (or `None`: not ours); direct-mapped, a collision replaces.
pub(crate) struct TunnelVrfs {
    /// The FIB generation the answers were taken from (`None` before the first lookup).
    generation: Option<u32>,
    slots: [Option<(TunnelId, Option<u32>)>; 1 << SLOT_BITS],
}

impl TunnelVrfs {
    pub(crate) fn new() -> Self {
        TunnelVrfs {
            generation: None,
            slots: [None; 1 << SLOT_BITS],
        }
    }

    /// The VRF of `id`'s packets under the FIB of `fib_generation`: kept, or `resolve`d
    /// and kept. Everything kept is forgotten when the generation moves.
    #[inline]
    pub(crate) fn get(
        &mut self,
        fib_generation: u32,
        id: TunnelId,
        resolve: impl FnOnce() -> Option<u32>,
    ) -> Option<u32> {
        if self.generation != Some(fib_generation) {
            self.slots = [None; 1 << SLOT_BITS];
            self.generation = Some(fib_generation);
        }
        let (kind, value) = match id {
            TunnelId::Vni(v) => (0, v),
            TunnelId::Label(l) => (1, l),
        };
        let mixed = (u64::from(value) | kind << 32).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let slot = &mut self.slots[(mixed >> (64 - SLOT_BITS)) as usize];
        match *slot {
            Some((kept, vrf)) if kept == id => vrf,
            _ => {
                let vrf = resolve();
                *slot = Some((id, vrf));
                vrf
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn answers_are_kept_until_the_fib_changes() {
        let mut c = TunnelVrfs::new();
        let asked = Cell::new(0);
        let ask = |vrf| {
            asked.set(asked.get() + 1);
            vrf
        };
        assert_eq!(c.get(7, TunnelId::Vni(42), || ask(Some(1))), Some(1));
        assert_eq!(c.get(7, TunnelId::Vni(42), || ask(Some(9))), Some(1), "kept");
        // The same number as a label is another tunnel.
        assert_eq!(c.get(7, TunnelId::Label(42), || ask(Some(2))), Some(2));
        // Refusals are kept too.
        assert_eq!(c.get(7, TunnelId::Vni(43), || ask(None)), None);
        assert_eq!(c.get(7, TunnelId::Vni(43), || ask(Some(5))), None);
        assert_eq!(asked.get(), 3);

        assert_eq!(c.get(8, TunnelId::Vni(42), || ask(Some(9))), Some(9), "FIB republished");
        assert_eq!(c.get(8, TunnelId::Vni(43), || ask(Some(5))), Some(5));
        assert_eq!(c.get(8, TunnelId::Label(42), || ask(Some(6))), Some(6));
        assert_eq!(asked.get(), 6);
    }

    #[test]
    fn colliding_ids_replace_each_other_and_stay_right() {
        let mut c = TunnelVrfs::new();
        // More labels than slots: every answer is still the label's own.
        for round in 0..2 {
            for l in 0..200u32 {
                assert_eq!(
                    c.get(0, TunnelId::Label(l), || Some(l * 3)),
                    Some(l * 3),
                    "round {round}"
                );
            }
        }
    }
}
