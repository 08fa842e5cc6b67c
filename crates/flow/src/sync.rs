//! The atomics the table is built from: std's, or loom's when model-checking
//! (`RUSTFLAGS="--cfg loom" cargo test -p flow --test loom --release`).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// One turn of a spin-wait: a CPU hint normally; under loom, a yield so the model lets the
/// thread being waited for run.
#[inline]
pub(crate) fn spin() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::hint::spin_loop();
}
