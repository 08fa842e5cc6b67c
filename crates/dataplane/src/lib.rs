//! The dataplane's moving parts: ports, the frames they move, and the poll-mode workers
//! that run a [`Handler`] over bursts.
//!
//! * [`Port`]: burst receive/transmit. [`AfXdpPort`] is the production port (an AF_XDP
//!   socket per interface queue; the ports of a worker share its UMEM, so forwarding moves
//!   descriptors); [`MemoryPort`] serves tests, benchmarks and embedders that bring their
//!   own packets through a [`MemoryLink`].
//! * [`FramePool`]: a worker's frames, each always in exactly one [`Place`]; counted in
//!   every build, tracked per frame and checked on every move in debug builds.
//! * [`Worker`] / [`WorkerSet`]: one worker per CPU, pinned, owning its ports, pool and
//!   counters, busy-polling in bursts of [`BURST`], stopping cleanly with a
//!   [`WorkerReport`] that includes the frame accounting check.
//!
//! ```
//! use std::sync::Arc;
//! use dataplane::*;
//!
//! let umem = Arc::new(af_xdp::Umem::new(af_xdp::UmemConfig { frame_count: 256, ..Default::default() }).unwrap());
//! let link = MemoryLink::new(64);
//! let port = MemoryPort::new("mem0", link.clone());
//! let mut w = Worker::new(FramePool::new(umem, 1), vec![Box::new(port)], Box::new(apps::Reflect));
//! let mut frame = vec![0u8; 60];
//! frame[..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]); // dst
//! frame[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]); // src
//! link.inject(&frame);
//! assert_eq!(w.run_once(), 1);
//! let back = link.take().unwrap();
//! assert_eq!(&back[..12], &[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
//! assert!(w.finish().frames_ok.is_ok());
//! ```

mod afxdp;
pub mod apps;
mod clock;
mod decap;
mod egress;
mod encap;
pub mod flowlog;
mod frag;
mod frames;
pub mod neigh;
pub mod pipeline;
pub mod pmtu;
mod port;
pub mod reassembly;
mod stats;
mod tap;
mod taps;
mod worker;

pub use afxdp::AfXdpPort;
pub use frag::{FRAG_SLOTS, FRAG_TIMEOUT_SECS, ORPHAN_SECS, ORPHANS};
pub use frames::{Census, FramePool, Place};
pub use port::{MemoryLink, MemoryPort, Pkt, Port};
pub use stats::{COUNTED_PORTS, DropReason, Event, PortState, SharedCounters, Stats, WorkerCounters};
pub use tap::TapPort;
pub use taps::{TAP_QUEUE, Taps};
pub use worker::{
    BURST, ChangeReport, Emitted, Handler, OpenError, PortChange, PortOpener, Verdict, Worker, WorkerReport, WorkerSet,
    online_cpus, pin_current_thread,
};
