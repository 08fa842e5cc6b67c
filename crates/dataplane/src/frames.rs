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
    /// Kept by the kernel for a port removed while its worker ran on: the frame a
    /// receive on a full RX ring leaves in the socket's buffer pool, freed with the socket
    /// rather than handed back.
    GivenUp,
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
    /// Given up with ports removed live ([`Place::GivenUp`]).
    pub given_up: u64,
}

impl Census {
    /// All frames, wherever they are.
    pub fn total(&self) -> u64 {
        self.free
            + self.worker
            + self.given_up
            + self.kernel_rx.iter().sum::<u64>()
            + self.kernel_tx.iter().sum::<u64>()
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
                given_up: 0,
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

    /// The address `n` bytes before `addr`, if that is still in `addr`'s frame: where a
    /// header pushed in front of a packet starting at `addr` starts.
    pub fn before(&self, addr: u64, n: u64) -> Option<u64> {
        addr.checked_sub(n)
            .filter(|&a| self.frame_base(a) == self.frame_base(addr))
    }

    /// Bytes of headroom a packet placed by [`FramePool::alloc`] gets in front of it.
    pub fn headroom(&self) -> u32 {
        self.headroom
    }

    /// Bytes a packet placed by [`FramePool::alloc`] may hold: the frame behind the
    /// headroom.
    pub fn room(&self) -> usize {
        (self.frame_size - u64::from(self.headroom)) as usize
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
            Place::GivenUp => &mut self.census.given_up,
        }
    }

    /// Writes off what the kernel still holds for `port` after it was retired (stopped
    /// for good, everything it could hand back handed back): those frames are the
    /// socket's until it closes, and then nobody's. Returns how many.
    pub fn give_up(&mut self, port: u16) -> u64 {
        let i = usize::from(port);
        let n = self.census.kernel_rx[i] + self.census.kernel_tx[i];
        self.census.kernel_rx[i] = 0;
        self.census.kernel_tx[i] = 0;
        self.census.given_up += n;
        #[cfg(debug_assertions)]
        for p in &mut self.places {
            if matches!(*p, Place::KernelRx(q) | Place::KernelTx(q) if q == port) {
                *p = Place::GivenUp;
            }
        }
        n
    }

    /// Follows a change of the worker's ports: `old_of[new]` is the old index of the port
    /// now at index `new`, `None` for a port just added. Ports left out must hold no
    /// frames (retired and given up first).
    ///
    /// # Panics
    /// If a port left out still holds frames, or an old index is out of range.
    pub fn renumber(&mut self, old_of: &[Option<u16>]) {
        let moved = |v: &[u64]| -> Vec<u64> { old_of.iter().map(|o| o.map_or(0, |i| v[usize::from(i)])).collect() };
        let (rx, tx) = (moved(&self.census.kernel_rx), moved(&self.census.kernel_tx));
        assert_eq!(
            (rx.iter().sum::<u64>(), tx.iter().sum::<u64>()),
            (
                self.census.kernel_rx.iter().sum::<u64>(),
                self.census.kernel_tx.iter().sum::<u64>()
            ),
            "a port left out of the change still holds frames"
        );
        #[cfg(debug_assertions)]
        {
            let mut new_of = vec![u16::MAX; self.census.kernel_rx.len()];
            for (new, old) in old_of.iter().enumerate() {
                if let Some(o) = old {
                    new_of[usize::from(*o)] = new as u16;
                }
            }
            for p in &mut self.places {
                match p {
                    Place::KernelRx(q) | Place::KernelTx(q) => *q = new_of[usize::from(*q)],
                    _ => {}
                }
            }
        }
        self.census.kernel_rx = rx;
        self.census.kernel_tx = tx;
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
                    Place::GivenUp => counted.given_up += 1,
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
impl FramePool {
    /// A pool of `frames` frames of `frame_size` bytes for `ports` ports, for unit tests.
    pub(crate) fn for_tests(frames: u32, frame_size: u32, ports: usize) -> Self {
        let umem = Umem::new(af_xdp::UmemConfig {
            frame_count: frames,
            frame_size,
            ..af_xdp::UmemConfig::default()
        })
        .unwrap();
        FramePool::new(Arc::new(umem), ports)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> FramePool {
        FramePool::for_tests(64, 4096, 2)
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
    fn renumbering_follows_the_ports_and_giving_up_keeps_the_census_whole() {
        let mut p = pool();
        let (mut on0, mut on1) = (Vec::new(), Vec::new());
        p.take_for(3, Place::KernelRx(0), &mut on0);
        p.take_for(5, Place::KernelRx(1), &mut on1);
        let a = p.alloc().unwrap();
        p.moved(a, Place::Worker, Place::KernelTx(1));
        // Port 0 is removed; two of its frames come back, one stays with the kernel.
        p.untake(&on0[..2], Place::KernelRx(0));
        assert_eq!(p.give_up(0), 1);
        // Port 1 becomes port 0, and a new port 1 holds nothing yet.
        p.renumber(&[Some(1), None]);
        let c = p.census().clone();
        assert_eq!((c.kernel_rx, c.kernel_tx, c.given_up), (vec![5, 0], vec![1, 0], 1));
        p.verify().unwrap();
        // The moved frames are found under their new number.
        p.free(a, Place::KernelTx(0));
        p.untake(&on1, Place::KernelRx(0));
        assert_eq!(p.census().free, 63);
        p.verify().unwrap();
    }

    #[test]
    #[should_panic(expected = "still holds frames")]
    fn a_port_left_out_with_frames_is_refused() {
        let mut p = pool();
        let mut on1 = Vec::new();
        p.take_for(2, Place::KernelRx(1), &mut on1);
        p.renumber(&[Some(0)]);
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
