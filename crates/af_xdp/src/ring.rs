//! The single-producer/single-consumer rings shared with the kernel.
//!
//! Each ring is a power-of-two array of entries plus a producer and a consumer index that
//! run freely (wrapping u32) and a flags word. We are the producer of the fill and TX
//! rings and the consumer of the RX and completion rings. The protocol, as the kernel's
//! `xsk_queue.h` describes it:
//!
//! * producer: check free space against the consumer index (`Acquire`, so the consumer's
//!   reads of those slots are done), write the entries, then publish the new producer
//!   index (`Release`, so the entries are visible before the index);
//! * consumer: read the producer index (`Acquire`, so the entries are visible), read the
//!   entries, then publish the new consumer index (`Release`, so our reads are done before
//!   the slots can be reused).
//!
//! Indices are cached locally and the shared ones touched once per batch.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

/// A frame descriptor as on the RX and TX rings (`struct xdp_desc`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Desc {
    /// Offset of the packet's first byte in the UMEM.
    pub addr: u64,
    /// Packet length.
    pub len: u32,
    /// Options (0).
    pub options: u32,
}

/// Where a ring lives: the shared memory and the offsets of its parts.
pub(crate) struct RingLayout {
    pub(crate) base: NonNull<u8>,
    pub(crate) producer: usize,
    pub(crate) consumer: usize,
    pub(crate) flags: usize,
    pub(crate) desc: usize,
    pub(crate) size: u32,
}

struct Shared<T> {
    producer: NonNull<AtomicU32>,
    consumer: NonNull<AtomicU32>,
    flags: NonNull<AtomicU32>,
    entries: NonNull<T>,
    mask: u32,
}

impl<T: Copy> Shared<T> {
    /// # Safety
    /// `l.base` must point to memory that stays mapped while the returned value is used,
    /// holding aligned u32 indices at the three offsets and `l.size` (a power of two)
    /// entries of `T` at `l.desc`.
    unsafe fn new(l: &RingLayout) -> Self {
        debug_assert!(l.size.is_power_of_two());
        // SAFETY: the caller guarantees the offsets are inside the mapping.
        unsafe {
            Shared {
                producer: l.base.add(l.producer).cast(),
                consumer: l.base.add(l.consumer).cast(),
                flags: l.base.add(l.flags).cast(),
                entries: l.base.add(l.desc).cast(),
                mask: l.size - 1,
            }
        }
    }

    fn index(&self, which: NonNull<AtomicU32>) -> &AtomicU32 {
        // SAFETY: the pointer is into the live, aligned mapping (see `new`), and the index
        // words are only ever accessed atomically, by us and by the kernel.
        unsafe { which.as_ref() }
    }

    fn read(&self, i: u32) -> T {
        // SAFETY: `i & mask` is within the ring's entries; the slot is between the consumer
        // and producer indices, so the producer is done writing it and will not touch it
        // until we advance the consumer index.
        unsafe { self.entries.add((i & self.mask) as usize).read_volatile() }
    }

    fn write(&self, i: u32, v: T) {
        // SAFETY: `i & mask` is within the entries; the slot is between the producer index
        // and the consumer index plus the ring size, so the consumer has released it and
        // will not read it until we advance the producer index.
        unsafe { self.entries.add((i & self.mask) as usize).write_volatile(v) }
    }
}

/// A ring we fill: fill ring (frame addresses) or TX ring (descriptors).
pub struct ProducerRing<T> {
    ring: Shared<T>,
    size: u32,
    cached_prod: u32,
    /// The consumer index plus the ring size: producing up to it is safe.
    cached_limit: u32,
}

// SAFETY: the ring is used through `&mut self` only, by one thread at a time; the memory
// it points to is shared with the kernel, not with other threads.
unsafe impl<T: Send> Send for ProducerRing<T> {}

impl<T: Copy> ProducerRing<T> {
    /// # Safety
    /// As for the layout in `Shared::new`; no other producer may exist for the ring.
    pub(crate) unsafe fn new(l: &RingLayout) -> Self {
        // SAFETY: forwarded from the caller.
        let ring = unsafe { Shared::new(l) };
        let prod = ring.index(ring.producer).load(Ordering::Relaxed);
        let cons = ring.index(ring.consumer).load(Ordering::Acquire);
        ProducerRing {
            ring,
            size: l.size,
            cached_prod: prod,
            cached_limit: cons.wrapping_add(l.size),
        }
    }

    /// Entries that can be produced now (refreshes the consumer index if short of `want`).
    pub fn free(&mut self, want: u32) -> u32 {
        let free = self.cached_limit.wrapping_sub(self.cached_prod);
        if free >= want {
            return free;
        }
        let cons = self.ring.index(self.ring.consumer).load(Ordering::Acquire);
        self.cached_limit = cons.wrapping_add(self.size);
        self.cached_limit.wrapping_sub(self.cached_prod)
    }

    /// Produces as many of `items` as fit, in order; returns how many.
    pub fn push(&mut self, items: &[T]) -> usize {
        let n = self.free(items.len() as u32).min(items.len() as u32);
        for (k, &it) in items[..n as usize].iter().enumerate() {
            self.ring.write(self.cached_prod.wrapping_add(k as u32), it);
        }
        if n > 0 {
            self.cached_prod = self.cached_prod.wrapping_add(n);
            self.ring
                .index(self.ring.producer)
                .store(self.cached_prod, Ordering::Release);
        }
        n as usize
    }

    /// Whether the kernel asked to be woken up (`XDP_RING_NEED_WAKEUP`).
    pub fn needs_wakeup(&self) -> bool {
        self.ring.index(self.ring.flags).load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0
    }

    /// Takes back the entries the kernel has not consumed (appended to `out`, oldest
    /// first) and rewinds the producer index over them. Only for a ring the kernel will
    /// never read again: its socket was unbound (`Error::DeviceGone`), or, in copy mode,
    /// can no longer be given packets (out of the XSKMAP, its last receive over), so
    /// frames still on it are ours.
    pub fn take_back(&mut self, out: &mut Vec<T>) {
        let cons = self.ring.index(self.ring.consumer).load(Ordering::Acquire);
        let n = self.cached_prod.wrapping_sub(cons);
        out.extend((0..n).map(|k| self.ring.read(cons.wrapping_add(k))));
        self.cached_prod = cons;
        self.ring.index(self.ring.producer).store(cons, Ordering::Release);
    }

    /// Entries produced and not yet consumed by the kernel.
    pub fn pending(&self) -> u32 {
        let cons = self.ring.index(self.ring.consumer).load(Ordering::Acquire);
        self.cached_prod.wrapping_sub(cons)
    }

    /// Ring size.
    pub fn size(&self) -> u32 {
        self.size
    }
}

/// A ring we drain: RX ring (descriptors) or completion ring (frame addresses).
pub struct ConsumerRing<T> {
    ring: Shared<T>,
    cached_cons: u32,
    cached_prod: u32,
}

// SAFETY: as for `ProducerRing`.
unsafe impl<T: Send> Send for ConsumerRing<T> {}

impl<T: Copy> ConsumerRing<T> {
    /// # Safety
    /// As for the layout in `Shared::new`; no other consumer may exist for the ring.
    pub(crate) unsafe fn new(l: &RingLayout) -> Self {
        // SAFETY: forwarded from the caller.
        let ring = unsafe { Shared::new(l) };
        let cons = ring.index(ring.consumer).load(Ordering::Relaxed);
        let prod = ring.index(ring.producer).load(Ordering::Acquire);
        ConsumerRing {
            ring,
            cached_cons: cons,
            cached_prod: prod,
        }
    }

    /// Consumes up to `out.len()` entries into `out`; returns how many.
    pub fn pop(&mut self, out: &mut [T]) -> usize {
        let mut avail = self.cached_prod.wrapping_sub(self.cached_cons);
        if (avail as usize) < out.len() {
            self.cached_prod = self.ring.index(self.ring.producer).load(Ordering::Acquire);
            avail = self.cached_prod.wrapping_sub(self.cached_cons);
        }
        let n = avail.min(out.len() as u32);
        for (k, o) in out[..n as usize].iter_mut().enumerate() {
            *o = self.ring.read(self.cached_cons.wrapping_add(k as u32));
        }
        if n > 0 {
            self.cached_cons = self.cached_cons.wrapping_add(n);
            self.ring
                .index(self.ring.consumer)
                .store(self.cached_cons, Ordering::Release);
        }
        n as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ring in ordinary memory; a producer and a consumer view of it stand in for us
    /// and the kernel (runs under Miri).
    struct Fake {
        mem: Vec<u64>,
    }

    impl Fake {
        fn new(size: u32) -> Self {
            Fake {
                mem: vec![0; 4 + size as usize * 2],
            }
        }
        fn layout(&mut self, size: u32) -> RingLayout {
            RingLayout {
                base: NonNull::new(self.mem.as_mut_ptr().cast()).unwrap(),
                producer: 0,
                consumer: 8,
                flags: 16,
                desc: 32,
                size,
            }
        }
    }

    #[test]
    fn entries_pass_in_order_and_the_ring_fills_up() {
        let mut f = Fake::new(8);
        let l = f.layout(8);
        // SAFETY: the fake ring outlives both views; one producer, one consumer.
        let (mut p, mut c) = unsafe { (ProducerRing::<Desc>::new(&l), ConsumerRing::<Desc>::new(&l)) };
        let d = |i: u64| Desc {
            addr: i * 4096,
            len: i as u32,
            options: 0,
        };
        let items: Vec<Desc> = (0..10).map(d).collect();
        assert_eq!(p.push(&items), 8, "only the ring size fits");
        assert_eq!(p.push(&items[8..]), 0);
        assert_eq!(p.pending(), 8);
        let mut out = [Desc::default(); 3];
        assert_eq!(c.pop(&mut out), 3);
        assert_eq!(out.to_vec(), items[..3].to_vec());
        assert_eq!(p.push(&items[8..]), 2, "released slots are reused");
        let mut rest = [Desc::default(); 16];
        assert_eq!(c.pop(&mut rest), 7);
        assert_eq!(rest[..7].to_vec(), items[3..].to_vec());
        assert_eq!(c.pop(&mut rest), 0);
        assert!(!p.needs_wakeup());
    }

    #[test]
    fn what_the_consumer_never_took_comes_back_in_order() {
        let mut f = Fake::new(8);
        let l = f.layout(8);
        // SAFETY: as above.
        let (mut p, mut c) = unsafe { (ProducerRing::<u64>::new(&l), ConsumerRing::<u64>::new(&l)) };
        assert_eq!(p.push(&[1, 2, 3, 4, 5]), 5);
        let mut got = [0u64; 2];
        assert_eq!(c.pop(&mut got), 2);
        let mut back = Vec::new();
        p.take_back(&mut back);
        assert_eq!(back, [3, 4, 5]);
        assert_eq!(p.pending(), 0);
        assert_eq!(p.free(8), 8, "the whole ring is free again");
    }

    #[test]
    fn indices_wrap_around_u32() {
        let mut f = Fake::new(4);
        // Start both indices just below the wrap.
        f.mem[0] = u64::from(u32::MAX - 1);
        f.mem[1] = u64::from(u32::MAX - 1);
        let l = f.layout(4);
        // SAFETY: as above.
        let (mut p, mut c) = unsafe { (ProducerRing::<u64>::new(&l), ConsumerRing::<u64>::new(&l)) };
        let mut seen = Vec::new();
        for round in 0..5u64 {
            let batch: Vec<u64> = (0..3).map(|k| round * 10 + k).collect();
            assert_eq!(p.push(&batch), 3);
            let mut out = [0u64; 4];
            let n = c.pop(&mut out);
            seen.extend_from_slice(&out[..n]);
        }
        let want: Vec<u64> = (0..5u64).flat_map(|r| (0..3).map(move |k| r * 10 + k)).collect();
        assert_eq!(seen, want);
    }
}
