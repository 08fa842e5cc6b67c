//! The flow clock: whole seconds since the tables' epoch, read once per burst.

use std::time::{Duration, Instant};

/// Seconds since an epoch, from the coarse monotonic clock (resolution: one timer tick, a
/// few milliseconds). Its vDSO read is a few loads, where the precise clock behind
/// `Instant` measured about 50 ns per call on the VMs this was built on: with small
/// bursts at low load, that was tens of nanoseconds per packet for a value counted in
/// seconds.
pub(crate) struct FlowClock {
    /// The coarse clock's reading at the epoch.
    at_epoch: Duration,
}

impl FlowClock {
    pub(crate) fn new(epoch: Instant) -> Self {
        // `Instant` reads the same monotonic clock, at full resolution: the two readings
        // give the epoch on the coarse clock, within one tick.
        let at_epoch = coarse().map_or(Duration::ZERO, |c| c.saturating_sub(epoch.elapsed()));
        FlowClock { at_epoch }
    }

    /// Whole seconds since the epoch (within a tick of `epoch.elapsed()`).
    #[inline]
    pub(crate) fn now(&self) -> u32 {
        coarse().map_or(0, |c| c.saturating_sub(self.at_epoch).as_secs() as u32)
    }
}

fn coarse() -> Option<Duration> {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a live, writable timespec, the only memory the call writes.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    (rc == 0).then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_seconds_since_the_epoch() {
        // Half a second from any boundary, so the clock's tick cannot move the answer.
        let epoch = Instant::now() - Duration::from_millis(100_500);
        let clock = FlowClock::new(epoch);
        assert_eq!(clock.now(), 100);
        assert_eq!(clock.now(), epoch.elapsed().as_secs() as u32);
        assert_eq!(FlowClock::new(Instant::now()).now(), 0);
    }
}
