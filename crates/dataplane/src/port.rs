//! Ports: where bursts of packets come from and go to.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_queue::ArrayQueue;

use crate::frames::{FramePool, Place};
use crate::stats::{DropReason, WorkerCounters};

/// A packet held by a worker: where its first byte is in the pool and how long it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pkt {
    /// Address of the first byte (headroom lies in front of it, inside the same frame).
    pub addr: u64,
    /// Length in bytes.
    pub len: u32,
}

/// A source and sink of packet bursts, owned by one worker.
///
/// Frames move between the port and the worker's [`FramePool`]; a port records every move
/// so the pool's accounting stays whole. Calls are per burst, never per packet.
pub trait Port: Send {
    /// Name for counters and messages.
    fn name(&self) -> &str;

    /// Called before the first burst with the port's index in its worker, and again
    /// after a port change (with its new index) or an aborted one (undoing
    /// [`Port::withdraw`]).
    fn start(&mut self, index: u16, pool: &mut FramePool);

    /// Receives up to `out.len()` packets; returns how many. The frames are the worker's.
    fn rx_burst(&mut self, pool: &mut FramePool, out: &mut [Pkt], counters: &WorkerCounters) -> usize;

    /// Takes packets to send, in order; returns how many it took (the rest stay the
    /// worker's, to drop or retry). The port counts them as sent
    /// ([`WorkerCounters::sent`]) once they are: an AF_XDP port when the kernel
    /// completes them, so a frame it takes back unsent is counted only as a drop.
    fn tx_burst(&mut self, pool: &mut FramePool, pkts: &[Pkt], counters: &WorkerCounters) -> usize;

    /// Housekeeping between bursts: reclaim sent frames, restock receive frames, wake the
    /// kernel when it asks.
    fn poll(&mut self, pool: &mut FramePool, counters: &WorkerCounters);

    /// Stops receiving and takes back every frame it can (at worker stop). Returns the
    /// frames the kernel keeps until the port is closed (its fill ring, and the frame its
    /// buffer pool may hold after a receive failed on a full RX ring), for accounting.
    fn drain(&mut self, pool: &mut FramePool, counters: &WorkerCounters) -> u64;

    /// Whether [`Port::retire`] can take this port out while its worker runs on. A
    /// zero-copy AF_XDP socket cannot: its driver takes fill-ring frames ahead of packets.
    fn can_retire(&self) -> bool {
        true
    }

    /// Stops new packets reaching the port (an AF_XDP port leaves the XSKMAP) while it is
    /// still polled and can send: the first step of a live change that removes it, taken
    /// before the workers park, so that [`Port::retire`] finds nothing left in flight and
    /// need not wait. [`Port::start`] undoes it.
    fn withdraw(&mut self) {}

    /// Stops the port for good while its worker runs on (a live port change removed it):
    /// what [`Port::drain`] takes back, and the frames waiting on its fill ring too. What
    /// the kernel keeps after that, the worker writes off ([`FramePool::give_up`]).
    fn retire(&mut self, pool: &mut FramePool, counters: &WorkerCounters) {
        let _ = self.drain(pool, counters);
    }

    /// The AF_XDP port this is, if it is one: a new port of the same worker shares its
    /// UMEM registration.
    fn as_af_xdp(&self) -> Option<&crate::AfXdpPort> {
        None
    }

    /// Packets the kernel dropped before they reached the port (ring full, no frame,
    /// invalid descriptors); 0 for ports without a kernel side.
    fn kernel_drops(&self) -> u64 {
        0
    }

    /// Whether the port's device can carry packets. Gone (it went away): it takes no
    /// more packets, and what is sent to it is dropped as
    /// [`DropReason::PortGone`] until the port is removed.
    /// Down: what is sent to it is dropped as
    /// [`DropReason::PortDown`] until it is up again.
    fn state(&self) -> crate::PortState {
        crate::PortState::Up
    }
}

/// The outside end of a [`MemoryPort`]: packets are injected here and collected from here,
/// by tests, benchmarks or an embedder that brings its own packets (e.g. from its own
/// DPDK). Bounded both ways; a full queue refuses (and counts) rather than blocks.
pub struct MemoryLink {
    to_port: ArrayQueue<Vec<u8>>,
    from_port: ArrayQueue<Vec<u8>>,
    refused_in: AtomicU64,
}

impl MemoryLink {
    /// Queues of `capacity` packets each way.
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(MemoryLink {
            to_port: ArrayQueue::new(capacity),
            from_port: ArrayQueue::new(capacity),
            refused_in: AtomicU64::new(0),
        })
    }

    /// Hands a frame to the port; `false` (and counted) if the queue is full.
    pub fn inject(&self, frame: &[u8]) -> bool {
        let ok = self.to_port.push(frame.to_vec()).is_ok();
        if !ok {
            self.refused_in.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// A frame the port sent, if any.
    pub fn take(&self) -> Option<Vec<u8>> {
        self.from_port.pop()
    }

    /// Frames refused by [`MemoryLink::inject`] because the queue was full.
    pub fn refused(&self) -> u64 {
        self.refused_in.load(Ordering::Relaxed)
    }

    /// Frames injected and not yet received by the port.
    pub fn pending_in(&self) -> usize {
        self.to_port.len()
    }
}

/// An in-process port: packets are copied from its [`MemoryLink`] into pool frames on
/// receive and out of them on transmit.
pub struct MemoryPort {
    name: String,
    link: Arc<MemoryLink>,
    index: u16,
}

impl MemoryPort {
    /// A port named `name` on `link`.
    pub fn new(name: &str, link: Arc<MemoryLink>) -> Self {
        MemoryPort {
            name: name.into(),
            link,
            index: 0,
        }
    }
}

impl Port for MemoryPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn start(&mut self, index: u16, _pool: &mut FramePool) {
        self.index = index;
    }

    fn rx_burst(&mut self, pool: &mut FramePool, out: &mut [Pkt], counters: &WorkerCounters) -> usize {
        let room = pool.umem().config().frame_size as usize - pool.headroom() as usize;
        let mut n = 0;
        while n < out.len() {
            let Some(frame) = self.link.to_port.pop() else { break };
            WorkerCounters::add(&counters.rx, 1);
            if frame.len() > room {
                counters.dropped(DropReason::TooLong, 1);
                continue;
            }
            let Some(base) = pool.alloc() else {
                counters.dropped(DropReason::NoFreeFrame, 1);
                continue;
            };
            let addr = base + u64::from(pool.headroom());
            pool.bytes_mut(addr, frame.len()).copy_from_slice(&frame);
            out[n] = Pkt {
                addr,
                len: frame.len() as u32,
            };
            n += 1;
        }
        n
    }

    fn tx_burst(&mut self, pool: &mut FramePool, pkts: &[Pkt], counters: &WorkerCounters) -> usize {
        let mut sent = 0;
        for p in pkts {
            let bytes = pool.bytes_mut(p.addr, p.len as usize).to_vec();
            if self.link.from_port.push(bytes).is_err() {
                break;
            }
            pool.free(p.addr, Place::Worker);
            sent += 1;
        }
        counters.sent(self.index, sent as u64);
        sent
    }

    fn poll(&mut self, _pool: &mut FramePool, _counters: &WorkerCounters) {}

    fn drain(&mut self, _pool: &mut FramePool, _counters: &WorkerCounters) -> u64 {
        0
    }
}
