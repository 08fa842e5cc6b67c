//! Creation options of a flow table, validated before any memory is allocated.

use core::fmt;

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
