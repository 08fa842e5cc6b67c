//! The flows that rules with a logging action (`AllowLog`, `DenyLog`) decided, for the
//! control plane to write out: which connections a tenant's policy let through or
//! stopped, where operators of firewalls expect to read it.
//!
//! Workers push one record per decision (a new flow, or one decided again after a
//! change; never per packet) into a bounded lock-free queue; whoever runs the router
//! drains it (`vrouter run` logs each record, the C API hands them over). A queue found
//! full loses the record and counts it: logging never slows or blocks forwarding.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_queue::ArrayQueue;
use policy::{Decision, EndpointId, RuleId};
use wire::flow::FlowKey;

/// Records a [`FlowLog`] holds before it loses new ones, by default.
pub const FLOW_LOG_RECORDS: usize = 4096;

/// One logged decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoggedFlow {
    /// When, in seconds on the flow clock (`Tables::epoch`).
    pub at: u32,
    /// The flow, in the direction of its first packet.
    pub key: FlowKey,
    /// Whether it may pass.
    pub allowed: bool,
    /// The source endpoint and its egress list's decision, where it has a list.
    pub egress: Option<(EndpointId, Decision)>,
    /// The destination endpoint and its ingress list's decision, where it has a list.
    pub ingress: Option<(EndpointId, Decision)>,
}

impl LoggedFlow {
    /// The record in one line, endpoints named by `name` and rules by `rule`: the flow
    /// key, then `allowed` or `denied` and each list's decision, as in `denied: ingress
    /// of w2 rule 3 deny-log`.
    pub fn describe(&self, name: impl Fn(EndpointId) -> String, rule: impl Fn(RuleId) -> String) -> String {
        let mut line = format!("{} {}", self.key, if self.allowed { "allowed" } else { "denied" });
        let mut sep = ":";
        for (dir, decided) in [("egress", self.egress), ("ingress", self.ingress)] {
            let Some((ep, d)) = decided else { continue };
            let by = d.rule.map_or("default".to_string(), &rule);
            line += &format!("{sep} {dir} of {} {by} {}", name(ep), d.action);
            sep = ",";
        }
        line
    }
}

impl fmt::Display for LoggedFlow {
    /// [`LoggedFlow::describe`] with endpoints and rules by number (`endpoint 2`,
    /// `rule 3`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe(|ep| format!("endpoint {}", ep.0), rule_number))
    }
}

/// A rule by its number: `rule 3`.
pub fn rule_number(r: RuleId) -> String {
    format!("rule {}", r.0)
}

/// The bounded queue of [`LoggedFlow`]s, shared by the workers and the control plane.
pub struct FlowLog {
    queue: ArrayQueue<LoggedFlow>,
    lost: AtomicU64,
}

impl FlowLog {
    /// A log that holds `records` records (at least one) before it loses new ones.
    pub fn new(records: usize) -> Self {
        FlowLog {
            queue: ArrayQueue::new(records.max(1)),
            lost: AtomicU64::new(0),
        }
    }

    /// Queues `record`; counts it lost if the queue is full.
    pub fn push(&self, record: LoggedFlow) {
        if self.queue.push(record).is_err() {
            self.lost.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The oldest record not taken yet.
    pub fn pop(&self) -> Option<LoggedFlow> {
        self.queue.pop()
    }

    /// Whether no record waits.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Records lost to a full queue so far.
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }
}

impl Default for FlowLog {
    fn default() -> Self {
        FlowLog::new(FLOW_LOG_RECORDS)
    }
}

impl fmt::Debug for FlowLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlowLog")
            .field("queued", &self.queue.len())
            .field("lost", &self.lost())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use policy::Action;

    use super::*;

    fn record(at: u32) -> LoggedFlow {
        let key = FlowKey::v4("10.0.1.2".parse().unwrap(), "10.0.2.2".parse().unwrap(), 6, 40000, 22).with_vrf(1);
        LoggedFlow {
            at,
            key,
            allowed: false,
            egress: None,
            ingress: Some((
                EndpointId(1),
                Decision {
                    action: Action::DenyLog,
                    rule: Some(RuleId(3)),
                },
            )),
        }
    }

    #[test]
    fn records_come_out_in_order_and_a_full_log_counts_what_it_loses() {
        let log = FlowLog::new(2);
        for at in 0..5 {
            log.push(record(at));
        }
        assert_eq!(
            (log.pop().map(|r| r.at), log.pop().map(|r| r.at), log.pop()),
            (Some(0), Some(1), None)
        );
        assert_eq!(log.lost(), 3);
    }

    #[test]
    fn a_record_reads_as_one_line() {
        let line = record(0).to_string();
        assert!(
            line.ends_with(" denied: ingress of endpoint 1 rule 3 deny-log"),
            "{line}"
        );
        assert!(line.starts_with(&record(0).key.to_string()), "{line}");
    }
}
