//! Packet taps an operator switches on while the workers run: capture of a port's
//! received frames (for a pcap file) and a per-packet trace through the pipeline stages.
//! Off, each costs one relaxed load per burst.

use std::sync::atomic::{AtomicU32, Ordering};

use crossbeam_queue::ArrayQueue;

/// Frames or trace lines held for the reader; beyond this they are not recorded.
pub const TAP_QUEUE: usize = 4096;

/// Capture and trace switches with their output queues, shared by all workers.
pub struct Taps {
    capture_port: AtomicU32,
    captured: ArrayQueue<(u16, Vec<u8>)>,
    trace_budget: AtomicU32,
    traced: ArrayQueue<String>,
}

impl Default for Taps {
    fn default() -> Self {
        Taps {
            capture_port: AtomicU32::new(u32::MAX),
            captured: ArrayQueue::new(TAP_QUEUE),
            trace_budget: AtomicU32::new(0),
            traced: ArrayQueue::new(TAP_QUEUE),
        }
    }
}

impl Taps {
    /// Starts (`Some`) or stops capturing frames received on `port`.
    pub fn capture(&self, port: Option<u16>) {
        self.capture_port
            .store(port.map_or(u32::MAX, u32::from), Ordering::Relaxed);
    }

    /// The port being captured, if any.
    #[inline]
    pub fn capturing(&self) -> Option<u16> {
        u16::try_from(self.capture_port.load(Ordering::Relaxed)).ok()
    }

    /// Records a captured frame (dropped if the reader is behind).
    pub fn record_frame(&self, port: u16, frame: &[u8]) {
        let _ = self.captured.push((port, frame.to_vec()));
    }

    /// The next captured frame.
    pub fn next_frame(&self) -> Option<(u16, Vec<u8>)> {
        self.captured.pop()
    }

    /// Traces the next `n` packets (any worker, any port).
    pub fn trace(&self, n: u32) {
        self.trace_budget.store(n, Ordering::Relaxed);
    }

    /// Whether tracing is on (one relaxed load).
    #[inline]
    pub fn tracing(&self) -> bool {
        self.trace_budget.load(Ordering::Relaxed) > 0
    }

    /// Records one packet's trace line if budget is left.
    pub fn record_trace(&self, line: impl FnOnce() -> String) {
        let took = self
            .trace_budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1))
            .is_ok();
        if took {
            let _ = self.traced.push(line());
        }
    }

    /// The next trace line.
    pub fn next_trace(&self) -> Option<String> {
        self.traced.pop()
    }
}
