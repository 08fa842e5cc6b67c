//! Creation options of a flow table, validated before any memory is allocated.

use core::fmt;
// std's atomics even under loom: these are settings, not part of the slot protocol loom
// checks, and modelling their loads would only multiply its interleavings.
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

/// Idle timeouts per flow class, in the caller's time unit (the `now` passed to the table;
/// seconds in the pipeline).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP with no FIN or RST seen.
    pub tcp_established: u32,
    /// TCP after a FIN or RST in either direction.
    pub tcp_closing: u32,
    /// UDP.
    pub udp: u32,
    /// SCTP: longer than its heartbeat interval (30 s by default, RFC 9260), so an idle
    /// association keeps its flow.
    pub sctp: u32,
    /// ICMP and ICMPv6.
    pub icmp: u32,
    /// Any other protocol.
    pub other: u32,
    /// A held flow the slow path never resolved.
    pub hold: u32,
}

impl Default for Timeouts {
    /// Conntrack-like defaults, in seconds.
    fn default() -> Self {
        Timeouts {
            tcp_established: 7200,
            tcp_closing: 10,
            udp: 30,
            sctp: 210,
            icmp: 10,
            other: 30,
            hold: 2,
        }
    }
}

/// What an insert does when both candidate buckets are full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FullPolicy {
    /// Refuse the new flow (counted).
    Refuse,
    /// Evict the idlest expired or closing flow of the two buckets (counted), so the slot is
    /// free for the next attempt once readers have passed a quiescent point; this attempt is
    /// still refused.
    EvictExpiredOrClosing,
}

/// The options a running table takes new values for ([`FlowTable::set_live_options`]):
/// what it does when full, its timeouts and its quota. The rest of [`FlowTableConfig`]
/// sizes memory and is fixed at creation.
///
/// [`FlowTable::set_live_options`]: crate::FlowTable::set_live_options
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveOptions {
    /// Behaviour of a full bucket pair.
    pub full_policy: FullPolicy,
    /// Idle timeouts.
    pub timeouts: Timeouts,
    /// Per-VRF flow limit, if any.
    pub vrf_quota: Option<u32>,
}

/// Creation options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowTableConfig {
    /// Slots to allocate, rounded up to an even number of buckets of 15. An insert is
    /// refused only when both of its key's buckets are full, which random keys first meet
    /// at about 80% of the slots; hits are fastest below half load (docs/flow.md).
    pub capacity: usize,
    /// Most readers (workers) registered at once.
    pub max_readers: usize,
    /// Behaviour of a full bucket pair.
    pub full_policy: FullPolicy,
    /// Idle timeouts.
    pub timeouts: Timeouts,
    /// Most flows held (awaiting the slow path) at once.
    pub max_held_flows: usize,
    /// Most packets parked per held flow (at most 8).
    pub hold_packets_per_flow: usize,
    /// Per-VRF flow limit, if any.
    pub vrf_quota: Option<u32>,
    /// VRF ids below this are counted individually for quotas; larger ids share the last
    /// counter.
    pub quota_vrfs: u32,
}

impl FlowTableConfig {
    /// Defaults with the given capacity.
    pub fn with_capacity(capacity: usize) -> Self {
        FlowTableConfig {
            capacity,
            max_readers: 64,
            full_policy: FullPolicy::EvictExpiredOrClosing,
            timeouts: Timeouts::default(),
            max_held_flows: 4096,
            hold_packets_per_flow: 4,
            vrf_quota: None,
            quota_vrfs: 4096,
        }
    }

    /// The options among these that a running table can change.
    pub fn live_options(&self) -> LiveOptions {
        LiveOptions {
            full_policy: self.full_policy,
            timeouts: self.timeouts,
            vrf_quota: self.vrf_quota,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let err = |field, reason| Err(ConfigError { field, reason });
        if self.capacity == 0 || self.capacity > 1 << 30 {
            return err("capacity", "must be between 1 and 2^30 flows");
        }
        if self.max_readers == 0 || self.max_readers > 1024 {
            return err("max_readers", "must be between 1 and 1024");
        }
        if self.max_held_flows == 0 || self.max_held_flows > 65535 {
            return err("max_held_flows", "must be between 1 and 65535");
        }
        if self.hold_packets_per_flow == 0 || self.hold_packets_per_flow > crate::hold::MAX_PARKED {
            return err("hold_packets_per_flow", "must be between 1 and 8");
        }
        if self.quota_vrfs == 0 {
            return err("quota_vrfs", "must be at least 1");
        }
        Ok(())
    }
}

/// [`LiveOptions`] as a running table keeps them. Each option is a word of its own, read
/// with a relaxed load where it is used: a worker may see one option changed before
/// another, never a torn one.
pub(crate) struct LiveCell {
    refuse: AtomicU32,
    /// `NO_QUOTA` or the quota.
    quota: AtomicU64,
    /// In [`Timeouts`]' field order.
    timeouts: [AtomicU32; 7],
}

const NO_QUOTA: u64 = u64::MAX;

impl LiveCell {
    pub(crate) fn new(o: LiveOptions) -> Self {
        let cell = LiveCell {
            refuse: AtomicU32::new(0),
            quota: AtomicU64::new(NO_QUOTA),
            timeouts: Default::default(),
        };
        cell.set(o);
        cell
    }

    pub(crate) fn set(&self, o: LiveOptions) {
        self.refuse
            .store(u32::from(o.full_policy == FullPolicy::Refuse), Relaxed);
        self.quota.store(o.vrf_quota.map_or(NO_QUOTA, u64::from), Relaxed);
        let t = o.timeouts;
        for (cell, v) in
            self.timeouts
                .iter()
                .zip([t.tcp_established, t.tcp_closing, t.udp, t.sctp, t.icmp, t.other, t.hold])
        {
            cell.store(v, Relaxed);
        }
    }

    pub(crate) fn get(&self) -> LiveOptions {
        LiveOptions {
            full_policy: self.full_policy(),
            timeouts: self.timeouts(),
            vrf_quota: self.quota(),
        }
    }

    pub(crate) fn full_policy(&self) -> FullPolicy {
        if self.refuse.load(Relaxed) == 0 {
            FullPolicy::EvictExpiredOrClosing
        } else {
            FullPolicy::Refuse
        }
    }

    pub(crate) fn quota(&self) -> Option<u32> {
        u32::try_from(self.quota.load(Relaxed)).ok()
    }

    pub(crate) fn timeouts(&self) -> Timeouts {
        let [tcp_established, tcp_closing, udp, sctp, icmp, other, hold] =
            self.timeouts.each_ref().map(|t| t.load(Relaxed));
        Timeouts {
            tcp_established,
            tcp_closing,
            udp,
            sctp,
            icmp,
            other,
            hold,
        }
    }
}

/// A configuration value that cannot be used, with the field it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Field name.
    pub field: &'static str,
    /// What is wrong.
    pub reason: &'static str,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "flow table config: `{}` {}", self.field, self.reason)
    }
}

impl std::error::Error for ConfigError {}
