//! The frame pool of one worker, and the accounting that proves no frame is lost or
//! duplicated.
//!
//! Every frame is in exactly one [`Place`]: the pool's free list, the worker (a packet
//! being processed), with the kernel for receiving (fill ring, being received into, RX
//! ring) or with the kernel for sending (TX ring, being sent, completion ring), per port.
//! Counts per place are always kept (a few adds per burst); debug builds also keep each
//! frame's place and check every move starts where the frame is, so a double free, a send
//! of a frame the kernel owns or a leak panics at the faulty move.

use std::sync::Arc;

use af_xdp::Umem;

/// Where a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// On the free list.
    Free,
    /// Held by the worker (a packet in a burst).
    Worker,
    /// Given to the kernel to receive into, on this port.
    KernelRx(u16),
    /// Given to the kernel to send, on this port.
    KernelTx(u16),
}

/// Frames per place.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Census {
    /// On the free list.
    pub free: u64,
    /// In the worker.
    pub worker: u64,
    /// With the kernel for RX, per port.
    pub kernel_rx: Vec<u64>,
    /// With the kernel for TX, per port.
    pub kernel_tx: Vec<u64>,
}

impl Census {
    /// All frames, wherever they are.
    pub fn total(&self) -> u64 {
        self.free + self.worker + self.kernel_rx.iter().sum::<u64>() + self.kernel_tx.iter().sum::<u64>()
    }
}

/// A worker's frames: a UMEM, its free list and the accounting.
pub struct FramePool {
    umem: Arc<Umem>,
    free: Vec<u64>,
    frame_size: u64,
    headroom: u32,
    census: Census,
    #[cfg(debug_assertions)]
    places: Vec<Place>,
}

impl FramePool {
    /// All frames of `umem` free. `ports` is how many ports the worker has.
    pub fn new(umem: Arc<Umem>, ports: usize) -> Self {
        let n = umem.config().frame_count;
        let free = (0..n).rev().map(|i| umem.frame_addr(i)).collect();
        FramePool {
            frame_size: u64::from(umem.config().frame_size),
            headroom: umem.config().headroom,
            free,
            census: Census {
                free: u64::from(n),
                worker: 0,
                kernel_rx: vec![0; ports],
                kernel_tx: vec![0; ports],
            },
            #[cfg(debug_assertions)]
            places: vec![Place::Free; n as usize],
            umem,
        }
    }

    /// The memory.
    pub fn umem(&self) -> &Arc<Umem> {
        &self.umem
    }

    /// The start of the frame holding `addr`.
    #[inline]
    pub fn frame_base(&self, addr: u64) -> u64 {
        // Frame sizes are powers of two (the UMEM checks): a mask, not a division.
        addr & !(self.frame_size - 1)
    }

    /// Bytes of headroom a packet placed by [`FramePool::alloc`] gets in front of it.
    pub fn headroom(&self) -> u32 {
        self.headroom
    }

    /// Free frames.
    pub fn available(&self) -> usize {
        self.free.len()
    }

    /// Takes a free frame into the worker; returns its base address.
    #[inline]
    pub fn alloc(&mut self) -> Option<u64> {
        let a = self.free.pop()?;
        self.moved(a, Place::Free, Place::Worker);
        Some(a)
    }

    /// Takes up to `n` free frames and hands them straight to `to` (filling a fill ring).
    pub fn take_for(&mut self, n: usize, to: Place, out: &mut Vec<u64>) {
        let k = n.min(self.free.len());
        let start = self.free.len() - k;
        for i in start..self.free.len() {
            let a = self.free[i];
            self.moved(a, Place::Free, to);
        }
        out.extend(self.free.drain(start..));
    }

    /// Puts back frames from `from` that `take_for` handed out but were not used.
    pub fn untake(&mut self, addrs: &[u64], from: Place) {
        for &a in addrs {
            self.moved(a, from, Place::Free);
            self.free.push(a);
        }
    }

    /// Returns a frame (any address inside it) to the free list.
    #[inline]
    pub fn free(&mut self, addr: u64, from: Place) {
        let a = self.frame_base(addr);
        self.moved(a, from, Place::Free);
        self.free.push(a);
    }

    /// Records a move between places without touching the free list (a packet received
    /// from or sent to the kernel).
    #[inline]
    pub fn moved(&mut self, addr: u64, from: Place, to: Place) {
        #[cfg(not(debug_assertions))]
        let _ = addr;
        #[cfg(debug_assertions)]
        {
            let i = (self.frame_base(addr) / self.frame_size) as usize;
            assert_eq!(
                self.places[i], from,
                "frame {addr:#x} moved to {to:?} from the wrong place"
            );
            self.places[i] = to;
        }
        *self.slot(from) -= 1;
        *self.slot(to) += 1;
    }

    fn slot(&mut self, p: Place) -> &mut u64 {
        match p {
            Place::Free => &mut self.census.free,
            Place::Worker => &mut self.census.worker,
            Place::KernelRx(i) => &mut self.census.kernel_rx[usize::from(i)],
            Place::KernelTx(i) => &mut self.census.kernel_tx[usize::from(i)],
        }
    }

    /// Frames per place.
    pub fn census(&self) -> &Census {
        &self.census
    }

    /// Debug builds: checks that each frame's recorded place agrees with the counts and
    /// that the free list holds each free frame exactly once. Release builds: checks the
    /// counts add up and match the free list.
    pub fn verify(&self) -> Result<(), String> {
        let total = u64::from(self.umem.config().frame_count);
        if self.census.total() != total {
            return Err(format!(
                "{} frames accounted, {total} exist: {:?}",
                self.census.total(),
                self.census
            ));
        }
        if self.free.len() as u64 != self.census.free {
            return Err(format!(
                "free list has {} frames, census says {}",
                self.free.len(),
                self.census.free
            ));
        }
        #[cfg(debug_assertions)]
        {
            let mut seen = vec![false; total as usize];
            for &a in &self.free {
                let i = (a / self.frame_size) as usize;
                if std::mem::replace(&mut seen[i], true) {
                    return Err(format!("frame {a:#x} is on the free list twice"));
                }
                if self.places[i] != Place::Free {
                    return Err(format!(
                        "frame {a:#x} is on the free list but recorded at {:?}",
                        self.places[i]
                    ));
                }
            }
            let mut counted = Census {
                kernel_rx: vec![0; self.census.kernel_rx.len()],
                kernel_tx: vec![0; self.census.kernel_tx.len()],
                ..Census::default()
            };
            for p in &self.places {
                match *p {
                    Place::Free => counted.free += 1,
                    Place::Worker => counted.worker += 1,
                    Place::KernelRx(i) => counted.kernel_rx[usize::from(i)] += 1,
                    Place::KernelTx(i) => counted.kernel_tx[usize::from(i)] += 1,
                }
            }
            if counted != self.census {
                return Err(format!("places {counted:?} disagree with counts {:?}", self.census));
            }
        }
        Ok(())
    }

    /// The bytes of a packet the worker holds.
    ///
    /// # Panics
    /// If the range leaves the frame or the UMEM (a bug in the caller's descriptor).
    #[inline]
    pub fn bytes_mut(&mut self, addr: u64, len: usize) -> &mut [u8] {
        #[cfg(debug_assertions)]
        {
            let i = (self.frame_base(addr) / self.frame_size) as usize;
            assert_eq!(
                self.places[i],
                Place::Worker,
                "touching frame {addr:#x} the worker does not hold"
            );
        }
        // SAFETY: frames in `Place::Worker` are off every kernel ring (they came off an RX
        // ring or the free list and have not been put on a fill or TX ring since), and
        // `&mut self` makes this the only borrow of pool memory.
        unsafe { self.umem.bytes_mut(addr, len) }.expect("packet inside its frame")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use af_xdp::UmemConfig;

    fn pool() -> FramePool {
        let umem = Arc::new(
            Umem::new(UmemConfig {
                frame_count: 64,
                ..UmemConfig::default()
            })
            .unwrap(),
        );
        FramePool::new(umem, 2)
    }

    #[test]
    fn moves_keep_the_census_whole() {
        let mut p = pool();
        let a = p.alloc().unwrap();
        let mut fill = Vec::new();
        p.take_for(10, Place::KernelRx(1), &mut fill);
        assert_eq!(fill.len(), 10);
        p.moved(fill[0] + 300, Place::KernelRx(1), Place::Worker);
        p.moved(a, Place::Worker, Place::KernelTx(0));
        p.free(a + 256, Place::KernelTx(0));
        p.free(fill[0] + 300, Place::Worker);
        let c = p.census().clone();
        assert_eq!((c.free, c.worker, c.kernel_rx[1], c.kernel_tx[0]), (55, 0, 9, 0));
        p.verify().unwrap();
        p.untake(&fill[1..], Place::KernelRx(1));
        assert_eq!(p.census().free, 64);
        p.verify().unwrap();
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "from the wrong place")]
    fn a_double_free_is_caught() {
        let mut p = pool();
        let a = p.alloc().unwrap();
        p.free(a, Place::Worker);
        p.free(a, Place::Worker);
    }
}
