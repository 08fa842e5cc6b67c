//! What a read of the precise clock (`Instant::now`) and of the coarse monotonic clock
//! (the flow clock's source, `CLOCK_MONOTONIC_COARSE`) cost here: docs/PERFORMANCE.md's
//! reason for the flow clock. Run: `cargo run --release -p vrouter-benches --example clock_reads`.

use std::hint::black_box;
use std::time::Instant;

const READS: u32 = 2_000_000;

fn main() {
    for round in 1..=3 {
        let t = Instant::now();
        for _ in 0..READS {
            black_box(Instant::now());
        }
        let precise = t.elapsed().as_nanos() as f64 / f64::from(READS);
        let t = Instant::now();
        for _ in 0..READS {
            let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            // SAFETY: `ts` is a live, writable timespec, the only memory the call writes.
            black_box(unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) });
            black_box(ts);
        }
        let coarse = t.elapsed().as_nanos() as f64 / f64::from(READS);
        println!(
            "round {round}: Instant::now {precise:.1} ns per read, coarse monotonic clock {coarse:.1} ns per read"
        );
    }
}
