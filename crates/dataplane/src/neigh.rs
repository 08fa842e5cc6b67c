//! Neighbour resolution: next-hop MACs the control plane did not configure are learned
//! from ARP and neighbour discovery, and packets for a next hop being resolved are parked
//! (a few per next hop) instead of dropped.
//!
//! The learned table is shared by every worker and read once per burst (a copy-on-write
//! snapshot: learning is rare, reading is every packet). What is being resolved, and the
//! packets parked meanwhile, belong to one worker ([`Resolver`]): parked packets sit in
//! that worker's frames. The protocol follows Linux's defaults: a request is sent at once
//! and retried every [`NeighborConfig::retry`] up to [`NeighborConfig::tries`] times, then
//! the parked packets are dropped (`NeighborUnresolved`); an entry older than
//! [`NeighborConfig::refresh_secs`] is still used while a fresh request confirms it, and
//! one older than [`NeighborConfig::expire_secs`] is resolved again.
//!
//! Learning is guarded against poisoning: on a workload port only the workload's own
//! addresses are learned; on other ports only answers for something a worker asked about,
//! refreshes of known entries, and requests for the router's own addresses.
//!
//! And against floods: every write copies the table, so writes nobody asked for (a host
//! announcing itself, a changed MAC) are limited to [`NeighborConfig::learn_per_sec`] for
//! the whole node, and an unchanged MAC heard again is rewritten (its age reset) at most
//! every quarter of [`NeighborConfig::refresh_secs`]. Answers to the router's own
//! requests are never limited. A flood of spoofed ARP from a workload or the fabric is
//! still answered, but costs at most that many copies a second.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use wire::arp::{ArpOperation, ArpPacket, ArpRepr};
use wire::ethernet::{EtherType, EthernetFrame, EthernetRepr, MacAddr};
use wire::icmp::IcmpPacket;
use wire::icmpv6::Icmpv6Repr;
use wire::ip::IpProtocol;
use wire::ipv6::{Ipv6Packet, Ipv6Repr};

use crate::port::Pkt;

/// Timers and bounds of neighbour resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighborConfig {
    /// Time between requests for one next hop.
    pub retry: Duration,
    /// Requests before giving up and dropping what is parked.
    pub tries: u8,
    /// Packets parked per next hop being resolved; more are dropped (`ParkFull`).
    pub park_per_neighbor: usize,
    /// Next hops one worker resolves at once; packets for more are dropped (`ParkFull`).
    pub resolving_per_worker: usize,
    /// Age after which a learned entry is confirmed by a new request (still used).
    pub refresh_secs: u32,
    /// Age after which a learned entry is no longer used.
    pub expire_secs: u32,
    /// Learned entries at most; beyond it nothing more is learned (counted).
    pub capacity: usize,
    /// Writes to the learned table per second (for the whole node) that are not answers
    /// to the router's own requests; more are refused (counted).
    pub learn_per_sec: u32,
}

impl Default for NeighborConfig {
    fn default() -> Self {
        NeighborConfig {
            retry: Duration::from_secs(1),
            tries: 3,
            park_per_neighbor: 4,
            resolving_per_worker: 64,
            refresh_secs: 60,
            expire_secs: 300,
            capacity: 65_536,
            learn_per_sec: 64,
        }
    }
}

/// A learned MAC and when it was last confirmed (seconds on the tables' clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Learned {
    /// The MAC.
    pub mac: MacAddr,
    /// When it was last learned or confirmed.
    pub at: u32,
}

/// The learned entries, by (port, IP).
pub type LearnedMap = HashMap<(u32, IpAddr), Learned, ahash::RandomState>;

/// The neighbour table every worker shares: what was learned, and what is being asked.
pub struct NeighborCache {
    config: NeighborConfig,
    learned: ArcSwap<LearnedMap>,
    /// (port, IP) some worker is resolving: answers for these are learned.
    asked: Mutex<HashSet<(u32, IpAddr)>>,
    refused: AtomicU64,
    /// The second of the tables' clock unsolicited writes are counted in (high 32 bits)
    /// and how many it has had (low 32 bits).
    budget: AtomicU64,
    throttled: AtomicU64,
}

impl Default for NeighborCache {
    fn default() -> Self {
        Self::new(NeighborConfig::default())
    }
}

impl NeighborCache {
    /// An empty table.
    pub fn new(config: NeighborConfig) -> Self {
        NeighborCache {
            config,
            learned: ArcSwap::from_pointee(LearnedMap::default()),
            asked: Mutex::new(HashSet::new()),
            refused: AtomicU64::new(0),
            budget: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
        }
    }

    /// The timers and bounds.
    pub fn config(&self) -> &NeighborConfig {
        &self.config
    }

    /// The learned entries now (a snapshot that later learning does not change).
    pub fn snapshot(&self) -> Arc<LearnedMap> {
        self.learned.load_full()
    }

    /// The learned entries now, for the hot path: no shared reference count is touched;
    /// hold it for one burst, not longer.
    pub fn current(&self) -> arc_swap::Guard<Arc<LearnedMap>> {
        self.learned.load()
    }

    /// Times learning was refused because the table was full.
    pub fn full_refusals(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Times learning was refused because [`NeighborConfig::learn_per_sec`] was used up.
    pub fn throttled(&self) -> u64 {
        self.throttled.load(Ordering::Relaxed)
    }

    /// Records `mac` for `ip` on `port` at time `now`; `false` if the table is full or,
    /// for what the router did not ask about, this second's writes are used up. The same
    /// MAC heard again within a quarter of the refresh age changes nothing (no copy of the
    /// table).
    pub fn learn(&self, port: u32, ip: IpAddr, mac: MacAddr, now: u32) -> bool {
        {
            let current = self.learned.load();
            let fresh = self.config.refresh_secs / 4;
            match current.get(&(port, ip)) {
                Some(l) if l.mac == mac && now.saturating_sub(l.at) < fresh.max(1) => return true,
                Some(_) => {}
                None if current.len() >= self.config.capacity => {
                    self.refused.fetch_add(1, Ordering::Relaxed);
                    return false;
                }
                None => {}
            }
        }
        if !self.asked.lock().is_ok_and(|a| a.contains(&(port, ip))) && !self.take_budget(now) {
            self.throttled.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let mut full = false;
        self.learned.rcu(|m| {
            full = m.len() >= self.config.capacity && !m.contains_key(&(port, ip));
            let mut m = LearnedMap::clone(m);
            if !full {
                m.insert((port, ip), Learned { mac, at: now });
            }
            m
        });
        if full {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        !full
    }

    /// One unsolicited write in second `now`, if its budget allows.
    fn take_budget(&self, now: u32) -> bool {
        let limit = u64::from(self.config.learn_per_sec);
        self.budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                if b >> 32 != u64::from(now) {
                    Some(u64::from(now) << 32 | 1).filter(|_| limit > 0)
                } else {
                    Some(b + 1).filter(|_| b & 0xffff_ffff < limit)
                }
            })
            .is_ok()
    }

    /// Moves learned entries to the ports' new numbers after the node's ports changed
    /// (`new_port(old)`; `None`: the port is gone, and its entries with it) and forgets
    /// what was being asked (the workers asking have stopped). Call while no worker runs.
    pub fn renumber(&self, new_port: impl Fn(u32) -> Option<u32>) {
        self.learned.rcu(|m| {
            m.iter()
                .filter_map(|(&(port, ip), l)| Some(((new_port(port)?, ip), *l)))
                .collect::<LearnedMap>()
        });
        if let Ok(mut a) = self.asked.lock() {
            a.clear();
        }
    }

    /// Removes entries older than the expiry age (called now and then, not per packet).
    pub fn expire(&self, now: u32) {
        let old = |l: &Learned| now.saturating_sub(l.at) >= self.config.expire_secs;
        if self.learned.load().values().any(old) {
            self.learned.rcu(|m| {
                let mut m = LearnedMap::clone(m);
                m.retain(|_, l| !old(l));
                m
            });
        }
    }

    /// Whether an answer about `ip` on `port` may be learned from a port that is not a
    /// workload's: someone asked, or it refreshes a known entry.
    pub fn expected(&self, port: u32, ip: IpAddr) -> bool {
        self.learned.load().contains_key(&(port, ip)) || self.asked.lock().is_ok_and(|a| a.contains(&(port, ip)))
    }

    fn ask(&self, port: u32, ip: IpAddr) {
        if let Ok(mut a) = self.asked.lock() {
            a.insert((port, ip));
        }
    }

    fn done(&self, port: u32, ip: IpAddr) {
        if let Ok(mut a) = self.asked.lock() {
            a.remove(&(port, ip));
        }
    }
}

/// What a MAC lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Use it; it is due for confirmation at `stale_at` (seconds on the tables' clock).
    Known {
        /// The MAC.
        mac: MacAddr,
        /// When it turns stale.
        stale_at: u32,
    },
    /// Use it, and confirm it with a request.
    Stale(MacAddr),
    /// Resolve it; park the packet meanwhile.
    Unknown,
}

/// Looks `ip` on `port` up in a learned snapshot, judging age against `now`.
pub fn lookup(map: &LearnedMap, config: &NeighborConfig, port: u32, ip: IpAddr, now: u32) -> Lookup {
    match map.get(&(port, ip)) {
        Some(l) => {
            let age = now.saturating_sub(l.at);
            if age >= config.expire_secs {
                Lookup::Unknown
            } else if age >= config.refresh_secs {
                Lookup::Stale(l.mac)
            } else {
                Lookup::Known {
                    mac: l.mac,
                    stale_at: l.at.saturating_add(config.refresh_secs),
                }
            }
        }
        None => Lookup::Unknown,
    }
}

/// A packet parked until its next hop's MAC is known: sent out of `port` with the MAC
/// written into its first six bytes.
#[derive(Debug, Clone, Copy)]
pub struct Parked {
    /// The packet, ready but for the destination MAC.
    pub pkt: Pkt,
    /// Its egress port.
    pub port: u16,
    /// Made by the pipeline (a fragment of a received packet), not received: counted as
    /// originated when it leaves.
    pub originated: bool,
}

/// One next hop a worker is resolving.
struct Resolving {
    port: u16,
    ip: IpAddr,
    parked: Vec<Parked>,
    sent: u8,
    next: Instant,
    /// Learned entries at least this new answer the request.
    since: u32,
}

/// What [`Resolver::poll`] asks of its caller for one next hop.
#[derive(Debug)]
pub enum Step {
    /// Send a request for `ip` out of `port`.
    Request {
        /// Egress port.
        port: u16,
        /// The address to resolve.
        ip: IpAddr,
    },
    /// Resolved: send these with this MAC.
    Release(MacAddr, Vec<Parked>),
    /// Given up: drop these.
    GiveUp(Vec<Parked>),
}

/// One worker's resolutions in progress and the packets parked on them.
pub struct Resolver {
    cache: Arc<NeighborCache>,
    pending: Vec<Resolving>,
}

impl Resolver {
    /// A resolver learning into and reading from `cache`.
    pub fn new(cache: Arc<NeighborCache>) -> Self {
        Resolver {
            cache,
            pending: Vec::new(),
        }
    }

    /// Whether nothing is being resolved (the common case: `poll` is then free).
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty()
    }

    fn entry(&mut self, port: u16, ip: IpAddr, now: u32) -> Option<&mut Resolving> {
        if let Some(i) = self.pending.iter().position(|r| r.port == port && r.ip == ip) {
            return Some(&mut self.pending[i]);
        }
        if self.pending.len() >= self.cache.config.resolving_per_worker {
            return None;
        }
        self.cache.ask(u32::from(port), ip);
        self.pending.push(Resolving {
            port,
            ip,
            parked: Vec::new(),
            sent: 0,
            next: Instant::now(),
            since: now,
        });
        self.pending.last_mut()
    }

    /// Parks `p` until `ip` on `p.port` resolves; gives it back if there is no room.
    pub fn park(&mut self, ip: IpAddr, p: Parked, now: u32) -> Result<(), Parked> {
        let limit = self.cache.config.park_per_neighbor;
        match self.entry(p.port, ip, now) {
            Some(r) if r.parked.len() < limit => {
                r.parked.push(p);
                Ok(())
            }
            _ => Err(p),
        }
    }

    /// Starts confirming a stale entry (nothing parked).
    pub fn confirm(&mut self, port: u16, ip: IpAddr, now: u32) {
        let _ = self.entry(port, ip, now);
    }

    /// Advances every resolution: what to send, release or drop, through `step`.
    /// `stopping`: give everything up now.
    pub fn poll(&mut self, stopping: bool, mut step: impl FnMut(Step)) {
        if self.pending.is_empty() {
            return;
        }
        let learned = self.cache.current();
        let at = Instant::now();
        let config = self.cache.config;
        let mut i = 0;
        while i < self.pending.len() {
            let r = &mut self.pending[i];
            let answer = learned.get(&(u32::from(r.port), r.ip)).filter(|l| l.at >= r.since);
            let finished = if let Some(l) = answer {
                step(Step::Release(l.mac, std::mem::take(&mut r.parked)));
                true
            } else if stopping || (r.sent >= config.tries && at >= r.next) {
                step(Step::GiveUp(std::mem::take(&mut r.parked)));
                true
            } else {
                if at >= r.next {
                    step(Step::Request { port: r.port, ip: r.ip });
                    r.sent += 1;
                    r.next = at + config.retry;
                }
                false
            };
            if finished {
                let r = self.pending.swap_remove(i);
                self.cache.done(u32::from(r.port), r.ip);
            } else {
                i += 1;
            }
        }
    }
}

/// An ARP request for `target` from (`mac`, `sender`) into `frame` (at least 42 bytes);
/// returns the length. An unknown sender address is 0.0.0.0 (an RFC 5227 probe, which
/// hosts answer).
pub fn arp_request(frame: &mut [u8], mac: MacAddr, sender: Option<Ipv4Addr>, target: Ipv4Addr) -> usize {
    EthernetRepr {
        src: mac,
        dst: MacAddr::BROADCAST,
        ethertype: EtherType::Arp,
    }
    .emit(&mut EthernetFrame::new_unchecked(&mut frame[..14]));
    ArpRepr {
        operation: ArpOperation::Request,
        sender_mac: mac,
        sender_ip: sender.unwrap_or(Ipv4Addr::UNSPECIFIED),
        target_mac: MacAddr([0; 6]),
        target_ip: target,
    }
    .emit(&mut ArpPacket::new_unchecked(&mut frame[14..42]));
    42
}

/// A neighbour solicitation for `target` to its solicited-node multicast group, from
/// (`mac`, `source`) with the source link-layer option, into `frame` (at least 86 bytes);
/// returns the length. Without a source address the solicitation comes from `::` and
/// carries no option (RFC 4861 7.2.2), and the answer goes to all nodes.
pub fn ns_request(frame: &mut [u8], mac: MacAddr, source: Option<Ipv6Addr>, target: Ipv6Addr) -> usize {
    let t = target.octets();
    let group = Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(t[13]),
        u16::from_be_bytes([t[14], t[15]]),
    );
    let src = source.unwrap_or(Ipv6Addr::UNSPECIFIED);
    let ns = Icmpv6Repr::NeighborSolicit {
        target,
        lladdr: source.map(|_| mac),
    };
    let len = 14 + 40 + ns.buffer_len();
    EthernetRepr {
        src: mac,
        dst: MacAddr([0x33, 0x33, 0xff, t[13], t[14], t[15]]),
        ethertype: EtherType::Ipv6,
    }
    .emit(&mut EthernetFrame::new_unchecked(&mut frame[..14]));
    let mut ip = Ipv6Repr::new(src, group, IpProtocol::Icmpv6);
    ip.hop_limit = 255;
    ip.payload_len = ns.buffer_len() as u16;
    ip.emit(&mut Ipv6Packet::new_unchecked(&mut frame[14..54]));
    ns.emit(&mut IcmpPacket::new_unchecked(&mut frame[54..len]), src, group);
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: MacAddr = MacAddr([2, 0, 0, 0, 0, 7]);

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn pkt(n: u64) -> Parked {
        Parked {
            pkt: Pkt { addr: n, len: 60 },
            port: 1,
            originated: false,
        }
    }

    #[test]
    fn renumbering_moves_entries_with_their_port_and_drops_gone_ports() {
        let c = NeighborCache::default();
        for (port, addr) in [(0, "10.0.0.1"), (1, "10.0.1.1"), (2, "10.0.2.1")] {
            assert!(c.learn(port, ip(addr), M, 100));
        }
        // Port 1 removed: port 2 becomes 1.
        c.renumber(|p| match p {
            0 => Some(0),
            2 => Some(1),
            _ => None,
        });
        let m = c.snapshot();
        assert_eq!(m.len(), 2);
        assert_eq!(m[&(0, ip("10.0.0.1"))].mac, M);
        assert_eq!(m[&(1, ip("10.0.2.1"))].at, 100);
        assert!(!m.contains_key(&(1, ip("10.0.1.1"))));
    }

    #[test]
    fn lookups_age_from_known_to_stale_to_unknown() {
        let c = NeighborCache::default();
        assert!(c.learn(1, ip("10.0.0.1"), M, 100));
        let (m, cfg) = (c.snapshot(), *c.config());
        let known = Lookup::Known {
            mac: M,
            stale_at: 100 + cfg.refresh_secs,
        };
        assert_eq!(lookup(&m, &cfg, 1, ip("10.0.0.1"), 100), known);
        assert_eq!(lookup(&m, &cfg, 1, ip("10.0.0.1"), 160), Lookup::Stale(M));
        assert_eq!(lookup(&m, &cfg, 1, ip("10.0.0.1"), 400), Lookup::Unknown);
        assert_eq!(lookup(&m, &cfg, 2, ip("10.0.0.1"), 100), Lookup::Unknown);
        c.expire(399);
        assert_eq!(c.snapshot().len(), 1);
        c.expire(400);
        assert!(c.snapshot().is_empty());
    }

    #[test]
    fn a_full_table_refuses_and_counts() {
        let c = NeighborCache::new(NeighborConfig {
            capacity: 2,
            ..Default::default()
        });
        assert!(c.learn(0, ip("10.0.0.1"), M, 0));
        assert!(c.learn(0, ip("10.0.0.2"), M, 0));
        assert!(c.learn(0, ip("10.0.0.2"), M, 5), "a refresh always fits");
        let before = c.snapshot();
        assert!(c.learn(0, ip("10.0.0.2"), M, 5));
        assert!(
            Arc::ptr_eq(&before, &c.snapshot()),
            "a repeat in the same second copies nothing"
        );
        assert!(!c.learn(0, ip("10.0.0.3"), M, 0));
        assert_eq!(c.full_refusals(), 1);
        assert_eq!(c.snapshot().len(), 2);
    }

    #[test]
    fn unsolicited_writes_are_limited_per_second_and_answers_are_not() {
        let c = NeighborCache::new(NeighborConfig {
            learn_per_sec: 2,
            ..Default::default()
        });
        let host = |n: u8| IpAddr::V4(Ipv4Addr::new(192, 0, 2, n));
        assert!(c.learn(2, host(1), M, 10));
        assert!(c.learn(2, host(2), M, 10));
        assert!(!c.learn(2, host(3), M, 10), "this second's writes are used up");
        assert_eq!(c.throttled(), 1);
        // The same MAC again: nothing to write, so nothing refused and nothing copied.
        let before = c.snapshot();
        assert!(c.learn(2, host(1), M, 20));
        assert!(
            Arc::ptr_eq(&before, &c.snapshot()),
            "younger than a quarter of the refresh age"
        );
        // A changed MAC is a write.
        assert!(!c.learn(2, host(1), MacAddr([2, 0, 0, 0, 0, 9]), 10));
        assert_eq!(c.throttled(), 2);
        // An answer to the router's own request is always learned.
        c.ask(2, host(4));
        assert!(c.learn(2, host(4), M, 10));
        // A later second, a new budget: a new host and an old enough refresh use it up.
        let later = 10 + c.config().refresh_secs / 4;
        assert!(c.learn(2, host(3), M, later));
        assert!(c.learn(2, host(1), M, later));
        assert!(!c.learn(2, host(5), M, later));
        let learned: HashSet<_> = c.snapshot().keys().map(|&(_, ip)| ip).collect();
        assert_eq!(learned, [1, 2, 3, 4].map(host).into());
        assert_eq!(c.snapshot()[&(2, host(1))].at, later);
        assert_eq!(c.throttled(), 3);
    }

    #[test]
    fn parks_requests_retries_and_releases_on_an_answer() {
        let c = Arc::new(NeighborCache::new(NeighborConfig {
            retry: Duration::ZERO,
            ..Default::default()
        }));
        let mut r = Resolver::new(c.clone());
        let gw = ip("192.0.2.9");
        for n in 0..4 {
            assert!(r.park(gw, pkt(n), 10).is_ok());
        }
        assert!(r.park(gw, pkt(9), 10).is_err(), "at most four parked");
        assert!(c.expected(1, gw), "answers about it may be learned");
        let mut steps = Vec::new();
        r.poll(false, |s| steps.push(s));
        assert!(matches!(steps[..], [Step::Request { port: 1, ip }] if ip == gw));
        c.learn(1, gw, M, 10);
        steps.clear();
        r.poll(false, |s| steps.push(s));
        match &steps[..] {
            [Step::Release(mac, p)] => assert_eq!((*mac, p.len()), (M, 4)),
            other => panic!("{other:?}"),
        }
        assert!(r.is_idle());
        assert!(c.expected(1, gw), "known now");
        assert!(!c.expected(1, ip("192.0.2.10")));
    }

    #[test]
    fn gives_up_after_the_last_try_and_on_stop() {
        let c = Arc::new(NeighborCache::new(NeighborConfig {
            retry: Duration::ZERO,
            tries: 2,
            ..Default::default()
        }));
        let mut r = Resolver::new(c.clone());
        let gw = ip("192.0.2.9");
        r.park(gw, pkt(1), 0).unwrap();
        let mut kinds = Vec::new();
        for _ in 0..3 {
            r.poll(false, |s| {
                kinds.push(match s {
                    Step::Request { .. } => "request".to_string(),
                    Step::GiveUp(p) => format!("give up {}", p.len()),
                    Step::Release(..) => "release".into(),
                })
            });
        }
        assert_eq!(kinds, ["request", "request", "give up 1"]);
        assert!(r.is_idle() && !c.expected(1, gw));
        r.park(gw, pkt(2), 0).unwrap();
        let mut dropped = 0;
        r.poll(true, |s| {
            if let Step::GiveUp(p) = s {
                dropped += p.len();
            }
        });
        assert_eq!(dropped, 1);
    }

    #[test]
    fn an_old_entry_does_not_answer_a_new_request() {
        let c = Arc::new(NeighborCache::default());
        let gw = ip("192.0.2.9");
        c.learn(1, gw, M, 5);
        let mut r = Resolver::new(c.clone());
        r.confirm(1, gw, 400);
        let mut released = false;
        r.poll(false, |s| released |= matches!(s, Step::Release(..)));
        assert!(!released);
        c.learn(1, gw, M, 401);
        r.poll(false, |s| released |= matches!(s, Step::Release(..)));
        assert!(released);
    }

    #[test]
    fn requests_decode_as_arp_and_neighbour_solicitation() {
        let mut f = [0u8; 128];
        let n = arp_request(
            &mut f,
            M,
            Some(Ipv4Addr::new(192, 0, 2, 1)),
            Ipv4Addr::new(192, 0, 2, 9),
        );
        let a = ArpRepr::parse(&ArpPacket::new_checked(&f[14..n]).unwrap()).unwrap();
        assert_eq!(a.operation, ArpOperation::Request);
        assert_eq!((a.sender_mac, a.target_ip), (M, Ipv4Addr::new(192, 0, 2, 9)));
        let target: Ipv6Addr = "fd00::1:2:3".parse().unwrap();
        let n = ns_request(&mut f, M, Some("fd00::1".parse().unwrap()), target);
        let meta = wire::parse::parse(&f[..n]).unwrap();
        assert_eq!(&f[..6], &[0x33, 0x33, 0xff, 0x02, 0x00, 0x03]);
        let l4 = usize::from(meta.outer.l4);
        let icmp = IcmpPacket::new_checked(&f[l4..n], wire::Layer::Icmpv6).unwrap();
        let dst: Ipv6Addr = "ff02::1:ff02:3".parse().unwrap();
        let repr = Icmpv6Repr::parse(&icmp, "fd00::1".parse().unwrap(), dst).unwrap();
        assert_eq!(
            repr,
            Icmpv6Repr::NeighborSolicit {
                target,
                lladdr: Some(M)
            }
        );
    }
}
