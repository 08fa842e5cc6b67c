//! UMEM: the packet memory shared with the kernel, cut into equal frames.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicI32, Ordering};

use crate::error::{Error, Result, last};

/// Shapes the UMEM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UmemConfig {
    /// Bytes per frame: 2048 or 4096.
    pub frame_size: u32,
    /// Number of frames.
    pub frame_count: u32,
    /// Bytes reserved in front of every received packet for encapsulation (at least 128
    /// is the project's rule; the kernel adds its own XDP headroom in front of that).
    pub headroom: u32,
    /// Back the UMEM with 2 MiB hugepages (fails if none are reserved).
    pub hugepages: bool,
}

impl Default for UmemConfig {
    fn default() -> Self {
        UmemConfig {
            frame_size: 4096,
            frame_count: 4096,
            headroom: 256,
            hugepages: false,
        }
    }
}

/// An mmap'd region, unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mmap {
    pub(crate) ptr: NonNull<u8>,
    pub(crate) len: usize,
}

// SAFETY: the mapping is plain memory; who may touch which bytes is governed by the ring
// protocol and frame ownership, not by the thread.
unsafe impl Send for Mmap {}
// SAFETY: as above.
unsafe impl Sync for Mmap {}

impl Mmap {
    pub(crate) fn new(
        len: usize,
        prot_flags: libc::c_int,
        fd: libc::c_int,
        offset: libc::off_t,
        op: &'static str,
    ) -> Result<Self> {
        // SAFETY: a fresh mapping chosen by the kernel; arguments are checked by it and the
        // result is checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                prot_flags,
                fd,
                offset,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(last(op));
        }
        Ok(Mmap {
            ptr: NonNull::new(p.cast()).expect("mmap succeeded"),
            len,
        })
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly the mapping created in `new`, unmapped once.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// The packet memory of one worker: frames its sockets receive into and send from.
#[derive(Debug)]
pub struct Umem {
    area: Mmap,
    cfg: UmemConfig,
    /// fd of the socket the UMEM is registered with (-1 until then).
    pub(crate) owner: AtomicI32,
}

impl Umem {
    /// Maps `frame_count * frame_size` bytes, page aligned (and prefaulted).
    pub fn new(cfg: UmemConfig) -> Result<Self> {
        if !matches!(cfg.frame_size, 2048 | 4096) {
            return Err(Error::Config(format!(
                "UMEM frame size {} must be 2048 or 4096",
                cfg.frame_size
            )));
        }
        if cfg.frame_count == 0 || !cfg.frame_count.is_power_of_two() {
            return Err(Error::Config(format!(
                "UMEM frame count {} must be a power of two",
                cfg.frame_count
            )));
        }
        if cfg.headroom + 256 + 1500 > cfg.frame_size {
            return Err(Error::Config(format!(
                "headroom {} leaves no room for a 1500-byte packet in a {}-byte frame (the kernel reserves 256 more)",
                cfg.headroom, cfg.frame_size
            )));
        }
        let len = cfg.frame_count as usize * cfg.frame_size as usize;
        let mut flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE;
        if cfg.hugepages {
            flags |= libc::MAP_HUGETLB;
        }
        let area = Mmap::new(len, flags, -1, 0, "mapping the UMEM").map_err(|e| match e {
            Error::Sys { .. } if cfg.hugepages => Error::NoHugepages { bytes: len },
            e => e,
        })?;
        Ok(Umem {
            area,
            cfg,
            owner: AtomicI32::new(-1),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &UmemConfig {
        &self.cfg
    }

    /// Frame `i`'s address (offset in the UMEM).
    pub fn frame_addr(&self, i: u32) -> u64 {
        u64::from(i) << self.frame_shift()
    }

    /// The frame holding `addr`.
    pub fn frame_of(&self, addr: u64) -> u32 {
        (addr >> self.frame_shift()) as u32
    }

    /// log2 of the frame size (a power of two, checked at creation): the per-packet
    /// bounds checks shift instead of dividing.
    #[inline]
    fn frame_shift(&self) -> u32 {
        self.cfg.frame_size.trailing_zeros()
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.area.len
    }

    /// Never empty; for symmetry with `len`.
    pub fn is_empty(&self) -> bool {
        false
    }

    pub(crate) fn base(&self) -> NonNull<u8> {
        self.area.ptr
    }

    pub(crate) fn registered_with(&self) -> Option<i32> {
        let fd = self.owner.load(Ordering::Acquire);
        (fd >= 0).then_some(fd)
    }

    /// `len` bytes at `addr`, if `addr` is inside the UMEM and the bytes inside its frame.
    ///
    /// # Safety
    /// The frame must be owned by the caller: not on the fill or TX ring, not being
    /// received into, and not borrowed elsewhere, for as long as the slice lives.
    #[allow(clippy::mut_from_ref)] // Frame ownership, not `&mut self`, makes it exclusive.
    #[inline]
    pub unsafe fn bytes_mut(&self, addr: u64, len: usize) -> Option<&mut [u8]> {
        // Frames are aligned powers of two, so what is left of `addr`'s frame is one mask
        // away; no sum here can overflow.
        let size = u64::from(self.cfg.frame_size);
        if addr >= self.area.len as u64 || len as u64 > size - (addr & (size - 1)) {
            return None;
        }
        // SAFETY: in bounds (checked above); exclusivity is the caller's contract.
        Some(unsafe { std::slice::from_raw_parts_mut(self.area.ptr.as_ptr().add(addr as usize), len) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(miri, ignore = "maps memory with mmap")]
    fn bytes_stay_inside_one_frame_of_the_area() {
        let umem = Umem::new(UmemConfig {
            frame_size: 2048,
            frame_count: 4,
            ..Default::default()
        })
        .unwrap();
        // SAFETY: no socket, so no ring: every frame is this test's.
        let len = |addr, len| unsafe { umem.bytes_mut(addr, len) }.map(|b| b.len());
        for (addr, n, fits) in [
            (0, 2048, true),
            (1, 2048, false),
            (2047, 1, true),
            (2047, 2, false),
            (2048 * 3 + 100, 1948, true),
            (2048 * 3 + 100, 1949, false),
            (8191, 1, true),
            (8191, 0, true),
            (8192, 0, false),
            (u64::MAX, 1, false),
            (0, usize::MAX, false),
        ] {
            assert_eq!(len(addr, n), fits.then_some(n), "{addr} {n}");
        }
    }
}
