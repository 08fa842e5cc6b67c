//! What a flow entry caches: the decision of the slow path, packed into one atomic word so
//! a reader never sees half of an update.

/// The policy verdict of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Installed by the first packet; the slow path has not decided yet. Packets are parked.
    Hold,
    /// Forward.
    Allow,
    /// Drop.
    Deny,
}

/// The cached forwarding decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Action {
    /// Allow, deny or hold.
    pub verdict: Verdict,
    /// Nexthop id in the routing snapshot.
    pub nexthop: u32,
    /// ECMP member chosen (stays fixed for the flow's life: stickiness).
    pub ecmp_member: u8,
    /// Free bits for the pipeline (e.g. "log", "mirror").
    pub flags: u8,
}

impl Action {
    /// The action of a held flow.
    pub const HOLD: Action = Action {
        verdict: Verdict::Hold,
        nexthop: 0,
        ecmp_member: 0,
        flags: 0,
    };

    /// Forward to `nexthop`.
    pub const fn allow(nexthop: u32) -> Self {
        Action {
            verdict: Verdict::Allow,
            nexthop,
            ecmp_member: 0,
            flags: 0,
        }
    }

    /// Drop.
    pub const fn deny() -> Self {
        Action {
            verdict: Verdict::Deny,
            nexthop: 0,
            ecmp_member: 0,
            flags: 0,
        }
    }

    pub(crate) const fn pack(self) -> u64 {
        let v = match self.verdict {
            Verdict::Hold => 0,
            Verdict::Allow => 1,
            Verdict::Deny => 2,
        };
        v | (self.flags as u64) << 8 | (self.ecmp_member as u64) << 16 | (self.nexthop as u64) << 32
    }

    pub(crate) const fn unpack(w: u64) -> Self {
        let verdict = match w & 0xff {
            0 => Verdict::Hold,
            1 => Verdict::Allow,
            _ => Verdict::Deny,
        };
        Action {
            verdict,
            flags: (w >> 8) as u8,
            ecmp_member: (w >> 16) as u8,
            nexthop: (w >> 32) as u32,
        }
    }
}

/// Generation numbers of the routing and policy snapshots an action was computed from.
/// When a snapshot is replaced, flows with an older generation are re-evaluated on their
/// next packet.
#[derive(Debug, Clone, Copy, Eq, Default)]
pub struct Generations {
    /// Routing (FIB) snapshot generation.
    pub route: u32,
    /// Policy snapshot generation.
    pub policy: u32,
}

/// Compared as the packed word the table stores: a flow hit compares one stored word
/// with the current generations, so this is one compare, not two after unpacking.
impl PartialEq for Generations {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        self.pack() == other.pack()
    }
}

impl std::hash::Hash for Generations {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.pack().hash(state);
    }
}

impl Generations {
    pub(crate) const fn pack(self) -> u64 {
        self.route as u64 | (self.policy as u64) << 32
    }

    pub(crate) const fn unpack(w: u64) -> Self {
        Generations {
            route: w as u32,
            policy: (w >> 32) as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_round_trips() {
        for a in [
            Action::HOLD,
            Action::deny(),
            Action {
                verdict: Verdict::Allow,
                nexthop: u32::MAX,
                ecmp_member: 255,
                flags: 0xa5,
            },
        ] {
            assert_eq!(Action::unpack(a.pack()), a);
        }
        let g = Generations {
            route: 7,
            policy: u32::MAX,
        };
        assert_eq!(Generations::unpack(g.pack()), g);
    }
}
