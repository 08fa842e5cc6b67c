//! The exception path: a TAP interface to the host's own network stack, driven by
//! io_uring. Packets for the node itself leave the pipeline here; what the host sends
//! into the TAP enters the pipeline like any port's traffic (the role of OpenContrail's
//! `vhost0`).

use std::ffi::CString;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use io_uring::{IoUring, opcode, types};

use crate::frames::{FramePool, Place};
use crate::port::{Pkt, Port};
use crate::stats::{DropReason, WorkerCounters};

/// Reads kept in flight, and write buffers.
const READS: usize = 32;
const WRITES: usize = 64;
/// Largest frame read or written: a whole UMEM frame.
const BUF: usize = 4096;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
/// One queue per opener: each worker opens its own.
const IFF_MULTI_QUEUE: libc::c_short = 0x0100;

#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    pad: [u8; 22],
}

/// A TAP device as a [`Port`]. Frames are copied in and out (the host stack is the slow
/// path); reads and writes go through one io_uring, never blocking the worker.
pub struct TapPort {
    // Dropped first: closing the ring cancels the reads still in flight before the
    // buffers they point into go away.
    ring: IoUring,
    name: String,
    fd: OwnedFd,
    reads: Box<[[u8; BUF]]>,
    writes: Box<[[u8; BUF]]>,
    free_writes: Vec<usize>,
    started: bool,
    index: u16,
}

impl TapPort {
    /// Creates TAP device `name` in the calling thread's network namespace, or attaches
    /// another queue to it (one per worker). Bring it up and give it addresses with `ip`,
    /// as for any interface.
    pub fn open(name: &str) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(true).open("/dev/net/tun")?;
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            flags: IFF_TAP | IFF_NO_PI | IFF_MULTI_QUEUE,
            pad: [0; 22],
        };
        let c = CString::new(name).map_err(io::Error::other)?;
        for (d, s) in req.name.iter_mut().zip(c.as_bytes().iter().take(libc::IFNAMSIZ - 1)) {
            *d = *s as libc::c_char;
        }
        // SAFETY: `req` is a valid `struct ifreq` prefix of the size TUNSETIFF reads and
        // writes; the fd is the open tun control device.
        if unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, &mut req) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(TapPort {
            ring: IoUring::new((READS + WRITES).next_power_of_two() as u32)?,
            name: name.into(),
            fd: file.into(),
            reads: vec![[0u8; BUF]; READS].into_boxed_slice(),
            writes: vec![[0u8; BUF]; WRITES].into_boxed_slice(),
            free_writes: (0..WRITES).collect(),
            started: false,
            index: 0,
        })
    }

    fn queue_read(&mut self, i: usize) {
        let buf = &mut self.reads[i];
        let e = opcode::Read::new(types::Fd(self.fd.as_raw_fd()), buf.as_mut_ptr(), BUF as u32)
            .build()
            .user_data(i as u64);
        // SAFETY: read buffer `i` lives in `self.reads` (boxed, never moved or resized)
        // until the ring is dropped, which happens first; it has no other operation in
        // flight (it is queued again only after its completion was consumed).
        let pushed = unsafe { self.ring.submission().push(&e) };
        debug_assert!(pushed.is_ok(), "the ring has room for every buffer");
    }
}

impl TapPort {
    /// Counts a finished write (buffer `id`) as sent or failed, and frees its buffer.
    fn wrote(&mut self, id: usize, res: i32, counters: &WorkerCounters) {
        self.free_writes.push(id - READS);
        if res > 0 {
            counters.sent(self.index, 1);
        } else {
            counters.dropped(DropReason::TxFailed, 1);
        }
    }
}

impl Port for TapPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn start(&mut self, index: u16, _pool: &mut FramePool) {
        self.index = index;
        if !self.started {
            for i in 0..READS {
                self.queue_read(i);
            }
            let _ = self.ring.submit();
            self.started = true;
        }
    }

    fn rx_burst(&mut self, pool: &mut FramePool, out: &mut [Pkt], counters: &WorkerCounters) -> usize {
        let mut n = 0;
        let mut done = Vec::new();
        {
            let mut cq = self.ring.completion();
            while n + done.len() < out.len() {
                let Some(c) = cq.next() else { break };
                done.push((c.user_data() as usize, c.result()));
            }
        }
        for (id, res) in done {
            if id >= READS {
                self.wrote(id, res, counters);
                continue;
            }
            if res > 0 {
                WorkerCounters::add(&counters.rx, 1);
                let len = res as usize;
                match pool.alloc() {
                    Some(base) => {
                        let addr = base + u64::from(pool.headroom());
                        pool.bytes_mut(addr, len).copy_from_slice(&self.reads[id][..len]);
                        out[n] = Pkt { addr, len: len as u32 };
                        n += 1;
                    }
                    None => counters.dropped(DropReason::NoFreeFrame, 1),
                }
            }
            self.queue_read(id);
        }
        let _ = self.ring.submit();
        n
    }

    fn tx_burst(&mut self, pool: &mut FramePool, pkts: &[Pkt], _counters: &WorkerCounters) -> usize {
        let mut sent = 0;
        for p in pkts {
            let len = p.len as usize;
            // Packets come from frames of at most BUF bytes, so `len <= BUF`; a longer one
            // is left to the worker (counted) rather than cut.
            if len > BUF {
                break;
            }
            let Some(w) = self.free_writes.pop() else { break };
            self.writes[w][..len].copy_from_slice(pool.bytes_mut(p.addr, len));
            pool.free(p.addr, Place::Worker);
            let e = opcode::Write::new(types::Fd(self.fd.as_raw_fd()), self.writes[w].as_ptr(), len as u32)
                .build()
                .user_data((READS + w) as u64);
            // SAFETY: write buffer `w` was free (its previous write completed), lives in
            // `self.writes` until the ring is dropped first, and is not touched until this
            // write's completion returns it to `free_writes`.
            if unsafe { self.ring.submission().push(&e) }.is_err() {
                self.free_writes.push(w);
                break;
            }
            sent += 1;
        }
        let _ = self.ring.submit();
        sent
    }

    fn poll(&mut self, _pool: &mut FramePool, _counters: &WorkerCounters) {}

    /// Waits (briefly) for the writes in flight, so each is counted sent or failed (a
    /// read finishing meanwhile is counted dropped as `PortClosing`).
    fn drain(&mut self, _pool: &mut FramePool, counters: &WorkerCounters) -> u64 {
        let deadline = Instant::now() + Duration::from_millis(100);
        while self.free_writes.len() < WRITES && Instant::now() < deadline {
            let _ = self.ring.submit();
            let done: Vec<(usize, i32)> = self
                .ring
                .completion()
                .map(|c| (c.user_data() as usize, c.result()))
                .collect();
            for (id, res) in done {
                if id >= READS {
                    self.wrote(id, res, counters);
                } else if res > 0 {
                    counters.closing(self.index, 1);
                }
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        0
    }
}
