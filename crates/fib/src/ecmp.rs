//! ECMP: a member per flow through a power-of-two bucket table. Each member owns a share
//! of buckets proportional to its weight; when the membership changes, only the buckets
//! of removed (or over-quota) members move, so removing one of N members moves about 1/N
//! of the flows (resilient hashing).

use wire::flow::FlowKey;

/// Buckets per group: enough for 64 members at 64 buckets each.
pub const ECMP_BUCKETS: usize = 4096;

/// The largest member weight, as `ip route`'s: finer shares would round to nothing in
/// [`ECMP_BUCKETS`] buckets.
pub const MAX_ECMP_WEIGHT: u32 = 256;

/// Which flow fields feed the ECMP hash, and whether both directions hash alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashFields {
    /// Source address.
    pub src_addr: bool,
    /// Destination address.
    pub dst_addr: bool,
    /// IP protocol.
    pub protocol: bool,
    /// Source and destination ports.
    pub ports: bool,
    /// Hash both directions of a connection to the same value.
    pub symmetric: bool,
}

impl Default for HashFields {
    /// The full 5-tuple, direction-sensitive.
    fn default() -> Self {
        HashFields {
            src_addr: true,
            dst_addr: true,
            protocol: true,
            ports: true,
            symmetric: false,
        }
    }
}

impl HashFields {
    /// The ECMP hash of a flow under these fields.
    ///
    /// ```
    /// use std::net::Ipv4Addr;
    /// use fib::HashFields;
    /// use wire::flow::FlowKey;
    /// let k = FlowKey::v4(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2), 6, 1000, 80);
    /// let sym = HashFields { symmetric: true, ..HashFields::default() };
    /// assert_eq!(sym.hash(&k), sym.hash(&k.reversed()));
    /// let l3 = HashFields { ports: false, protocol: false, ..HashFields::default() };
    /// let mut other_port = k;
    /// other_port.src_port = 9;
    /// assert_eq!(l3.hash(&k), l3.hash(&other_port));
    /// ```
    pub fn hash(&self, key: &FlowKey) -> u64 {
        let mut k = *key;
        if !self.src_addr {
            k.src = [0; 16];
        }
        if !self.dst_addr {
            k.dst = [0; 16];
        }
        if !self.protocol {
            k.proto = 0;
        }
        if !self.ports {
            k.src_port = 0;
            k.dst_port = 0;
        }
        if self.symmetric { k.symmetric_hash() } else { k.hash() }
    }
}

/// A compiled group: the bucket table (member indices).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EcmpGroup {
    pub(crate) members: Box<[(u32, u32)]>,
    pub(crate) buckets: Box<[u8]>,
}

impl EcmpGroup {
    /// Member index for a flow hash (the high bits: the flow table uses the low ones).
    #[inline]
    pub(crate) fn pick(&self, hash: u64) -> usize {
        usize::from(self.buckets[(hash >> 40) as usize % ECMP_BUCKETS])
    }

    /// Builds the table for `members` (nexthop, weight), keeping every bucket of
    /// `previous` whose member is still present and under its new quota.
    pub(crate) fn build(members: &[(u32, u32)], previous: Option<&EcmpGroup>) -> Self {
        let n = members.len();
        let total: u64 = members.iter().map(|m| u64::from(m.1.max(1))).sum();
        // Largest-remainder quotas summing to ECMP_BUCKETS.
        let mut quota: Vec<usize> = members
            .iter()
            .map(|m| (u64::from(m.1.max(1)) * ECMP_BUCKETS as u64 / total) as usize)
            .collect();
        let mut rem: Vec<(u64, usize)> = members
            .iter()
            .enumerate()
            .map(|(i, m)| (u64::from(m.1.max(1)) * ECMP_BUCKETS as u64 % total, i))
            .collect();
        rem.sort_by(|a, b| b.cmp(a));
        let short = ECMP_BUCKETS - quota.iter().sum::<usize>();
        for &(_, i) in rem.iter().take(short) {
            quota[i] += 1;
        }
        let mut buckets = vec![u8::MAX; ECMP_BUCKETS];
        let mut used = vec![0usize; n];
        if let Some(prev) = previous {
            for (b, &m) in prev.buckets.iter().enumerate() {
                let nh = prev.members[usize::from(m)].0;
                if let Some(i) = members.iter().position(|x| x.0 == nh)
                    && used[i] < quota[i]
                {
                    buckets[b] = i as u8;
                    used[i] += 1;
                }
            }
        }
        // Hand out the free buckets round-robin among members below quota, so each
        // member's buckets are spread over the table.
        let mut next = 0;
        for b in buckets.iter_mut().filter(|b| **b == u8::MAX) {
            while used[next % n] >= quota[next % n] {
                next += 1;
            }
            *b = (next % n) as u8;
            used[next % n] += 1;
            next += 1;
        }
        EcmpGroup {
            members: members.into(),
            buckets: buckets.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shares(g: &EcmpGroup) -> Vec<usize> {
        let mut c = vec![0; g.members.len()];
        for &b in g.buckets.iter() {
            c[usize::from(b)] += 1;
        }
        c
    }

    #[test]
    fn weights_are_honoured() {
        let g = EcmpGroup::build(&[(1, 1), (2, 2), (3, 1)], None);
        assert_eq!(shares(&g), vec![1024, 2048, 1024]);
    }

    #[test]
    fn removing_a_member_moves_only_its_buckets() {
        let members: Vec<(u32, u32)> = (0..8).map(|i| (i, 1)).collect();
        let g = EcmpGroup::build(&members, None);
        let fewer: Vec<(u32, u32)> = members.iter().copied().filter(|m| m.0 != 3).collect();
        let h = EcmpGroup::build(&fewer, Some(&g));
        let mut moved = 0;
        for b in 0..ECMP_BUCKETS {
            let before = g.members[usize::from(g.buckets[b])].0;
            let after = h.members[usize::from(h.buckets[b])].0;
            if before != after {
                assert_eq!(before, 3, "only the removed member's buckets move");
                moved += 1;
            }
        }
        assert_eq!(moved, ECMP_BUCKETS / 8);
    }
}
