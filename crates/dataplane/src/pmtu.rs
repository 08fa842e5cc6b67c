//! Path MTUs toward tunnel ends, learned from the underlay.
//!
//! Tunnel packets leave with don't-fragment set (IPv4; IPv6 is never fragmented on the
//! way), so an underlay link narrower than the fabric port drops them, and its router
//! answers "fragmentation needed" / "packet too big" to this node's tunnel endpoint. The
//! pipeline reads those errors (they still go on to the host, as before) and keeps the MTU
//! they report for the tunnel's far end for [`PMTU_EXPIRES_SECS`], as the kernel keeps a
//! route's PMTU. Tunnels to that end then carry less: inner packets are split or refused
//! for it, and SYNs clamped to it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

/// How long a learned path MTU holds, in seconds (the kernel's `mtu_expires`).
pub const PMTU_EXPIRES_SECS: u32 = 600;

/// The lowest path MTU taken from an IPv4 error (the kernel's `min_pmtu`): lower reports
/// are ignored, so a forged error cannot shrink a tunnel to nothing.
pub const MIN_PMTU_V4: u16 = 552;

/// The lowest path MTU taken from an IPv6 error: every IPv6 link carries 1280 bytes.
pub const MIN_PMTU_V6: u16 = 1280;

/// Path MTUs toward tunnel far ends, shared by the workers. Learned rarely (an ICMP error
/// from the underlay), read when a worker makes an egress plan, so a lock is cheap here;
/// the generation tells the workers' plan caches when to drop what they made before.
#[derive(Debug, Default)]
pub struct PathMtus {
    learned: Mutex<HashMap<IpAddr, (u16, u32)>>,
    generation: AtomicU32,
}

impl PathMtus {
    /// Keeps `mtu` as the path MTU toward `to` until `now + PMTU_EXPIRES_SECS` (seconds on
    /// the tables' clock), if it is no lower than its family's minimum and lower than
    /// what holds now. Whether it changed anything.
    ///
    /// ```
    /// use dataplane::pmtu::PathMtus;
    /// let p = PathMtus::default();
    /// let far = "192.0.2.2".parse().unwrap();
    /// assert!(p.learn(far, 1400, 10));
    /// assert!(!p.learn(far, 1450, 11), "only ever lowered while it holds");
    /// assert!(!p.learn(far, 100, 12), "below the minimum: ignored");
    /// assert_eq!(p.get(far, 20), Some((1400, 610)));
    /// assert_eq!(p.get(far, 610), None, "expired");
    /// ```
    pub fn learn(&self, to: IpAddr, mtu: u16, now: u32) -> bool {
        let min = if to.is_ipv6() { MIN_PMTU_V6 } else { MIN_PMTU_V4 };
        if mtu < min {
            return false;
        }
        let mut learned = self.learned.lock().unwrap_or_else(|e| e.into_inner());
        if learned.get(&to).is_some_and(|&(m, until)| now < until && m <= mtu) {
            return false;
        }
        learned.retain(|_, &mut (_, until)| now < until);
        learned.insert(to, (mtu, now.saturating_add(PMTU_EXPIRES_SECS)));
        self.generation.fetch_add(1, Ordering::Release);
        true
    }

    /// The path MTU toward `to` at `now`, and until when it holds, if one was learned.
    pub fn get(&self, to: IpAddr, now: u32) -> Option<(u16, u32)> {
        let learned = self.learned.lock().unwrap_or_else(|e| e.into_inner());
        learned.get(&to).copied().filter(|&(_, until)| now < until)
    }

    /// Moves whenever a path MTU is learned: plans made before may be too wide.
    #[inline]
    pub fn generation(&self) -> u32 {
        self.generation.load(Ordering::Acquire)
    }

    /// Every path MTU holding at `now`: (far end, MTU, seconds left), by address.
    pub fn list(&self, now: u32) -> Vec<(IpAddr, u16, u32)> {
        let learned = self.learned.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = learned
            .iter()
            .filter(|(_, (_, until))| now < *until)
            .map(|(&a, &(m, until))| (a, m, until - now))
            .collect();
        v.sort();
        v
    }
}

/// The far end and MTU an ICMP error reports about a tunnel packet of this node: the
/// ICMP message `icmp` (from its type on) of family `v6`, about a packet it quotes from
/// one of `ends` over UDP or GRE. `None` for any other message.
pub(crate) fn reported(icmp: &[u8], v6: bool, ends: &[IpAddr]) -> Option<(IpAddr, u16)> {
    let quoted = icmp.get(8..)?;
    let (mtu, src, dst, proto) = if v6 {
        if icmp[0] != wire::icmpv6::TYPE_PACKET_TOO_BIG {
            return None;
        }
        let mtu = u32::from_be_bytes(icmp.get(4..8)?.try_into().ok()?);
        let ip = quoted.get(..40)?;
        let addr = |at: usize| Some(IpAddr::from(<[u8; 16]>::try_from(&ip[at..at + 16]).ok()?));
        (u16::try_from(mtu).unwrap_or(u16::MAX), addr(8)?, addr(24)?, ip[6])
    } else {
        if (icmp[0], icmp.get(1).copied()?) != (wire::icmpv4::TYPE_DST_UNREACHABLE, wire::icmpv4::CODE_FRAG_NEEDED) {
            return None;
        }
        let mtu = u16::from_be_bytes(icmp.get(6..8)?.try_into().ok()?);
        let ip = quoted.get(..20)?;
        let addr = |at: usize| Some(IpAddr::from(<[u8; 4]>::try_from(&ip[at..at + 4]).ok()?));
        (mtu, addr(12)?, addr(16)?, ip[9])
    };
    let tunnel = matches!(proto, 17 | 47);
    (tunnel && ends.contains(&src)).then_some((dst, mtu))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ICMPv4 "fragmentation needed" reporting `mtu`, quoting an IPv4 header from
    /// `src` to 192.0.2.2 of protocol `proto`.
    fn frag_needed(mtu: u16, src: [u8; 4], proto: u8) -> Vec<u8> {
        let mut m = vec![3, 4, 0, 0, 0, 0];
        m.extend_from_slice(&mtu.to_be_bytes());
        let mut ip = [0u8; 28];
        ip[0] = 0x45;
        ip[9] = proto;
        ip[12..16].copy_from_slice(&src);
        ip[16..20].copy_from_slice(&[192, 0, 2, 2]);
        m.extend_from_slice(&ip);
        m
    }

    #[test]
    fn only_errors_about_our_tunnel_packets_count() {
        let ends = ["192.0.2.1".parse().unwrap()];
        let far: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(
            reported(&frag_needed(1400, [192, 0, 2, 1], 17), false, &ends),
            Some((far, 1400))
        );
        assert_eq!(
            reported(&frag_needed(1400, [192, 0, 2, 1], 47), false, &ends),
            Some((far, 1400))
        );
        assert_eq!(
            reported(&frag_needed(1400, [192, 0, 2, 1], 6), false, &ends),
            None,
            "TCP: no tunnel"
        );
        assert_eq!(
            reported(&frag_needed(1400, [192, 0, 2, 7], 17), false, &ends),
            None,
            "not ours"
        );
        let mut unreachable = frag_needed(1400, [192, 0, 2, 1], 17);
        unreachable[1] = 1;
        assert_eq!(reported(&unreachable, false, &ends), None, "host unreachable");
        // Cut anywhere before the quoted IP header's end: nothing (after it, the header
        // is all it needs).
        let short = frag_needed(1400, [192, 0, 2, 1], 17);
        for n in 0..28 {
            assert_eq!(reported(&short[..n], false, &ends), None, "cut at {n}");
            assert_eq!(reported(&short[..n], true, &ends), None, "cut at {n}");
        }
    }
}
