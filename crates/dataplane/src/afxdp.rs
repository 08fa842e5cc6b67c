//! The production port: one AF_XDP socket on one (interface, queue).

use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use af_xdp::{BusyPoll, Desc, SocketConfig, TxKick, XdpProgram, XskSocket};

use crate::frames::{FramePool, Place};
use crate::port::{Pkt, Port};
use crate::stats::{DropReason, PortState, WorkerCounters};

/// An AF_XDP socket as a [`Port`]. Ports of one worker share its UMEM: a packet received
/// on one and sent on another moves as a descriptor.
pub struct AfXdpPort {
    sock: XskSocket,
    prog: Arc<XdpProgram>,
    name: String,
    index: u16,
    descs: Vec<Desc>,
    comp: Vec<u64>,
    scratch: Vec<u64>,
    /// Up; down (nothing is sent until it is up: the TX ring is emptied and sends are
    /// refused); gone (the socket is unbound and takes nothing more).
    state: PortState,
    /// The state last written to the worker's counters.
    shown: PortState,
    /// Polls since the socket was last asked whether it is still bound.
    polls: u32,
    /// When the socket left the XSKMAP ([`Port::withdraw`], or a drain).
    withdrawn: Option<Instant>,
    /// Frames the device dropped whose completions are still to come.
    unsent: u64,
    /// Kicks in a row that said the device dropped a frame.
    drops_in_a_row: u32,
    /// The socket's kernel drops already counted in the worker's per-port counters.
    kernel_counted: u64,
}

/// Kicks in a row that drop a frame before the device is asked whether it has carrier
/// (once per this many: a congested device drops too, and is running).
const CARRIER_CHECK: u32 = 16;

/// How long after a socket leaves the XSKMAP a packet the program was redirecting to it
/// may still land on its RX ring: the redirect completes within the NAPI poll that ran
/// the program, well inside this.
pub(crate) const SETTLE: Duration = Duration::from_millis(1);

/// Polls between asking an idle socket whether its device is still there and running (one
/// cheap `recvfrom` and one ioctl; traffic to a port finds out at once): a few
/// milliseconds when idle.
const LIVENESS_POLLS: u32 = 1 << 14;

/// Polls between asking a down device whether it is up again: about a millisecond.
const DOWN_POLLS: u32 = 1 << 10;

/// Most descriptors moved per ring operation.
const BATCH: usize = 256;

impl AfXdpPort {
    /// Opens `queue` of the interface `prog` is attached to, with frames from `pool`
    /// (in the calling thread's network namespace). `share` is the worker's first AF_XDP
    /// port, if it has one already: the UMEM is registered once and shared.
    pub fn open(
        pool: &FramePool,
        prog: &Arc<XdpProgram>,
        queue: u32,
        cfg: SocketConfig,
        share: Option<&AfXdpPort>,
    ) -> af_xdp::Result<Self> {
        let sock = XskSocket::new(pool.umem(), prog.ifname(), queue, cfg, share.map(|p| &p.sock))?;
        if let BusyPoll::Unavailable(why) = sock.busy_poll() {
            eprintln!("{why}");
        }
        Ok(AfXdpPort {
            name: format!("{}:q{queue}", prog.ifname()),
            sock,
            prog: prog.clone(),
            index: 0,
            descs: vec![Desc::default(); BATCH],
            comp: vec![0; BATCH],
            scratch: Vec::with_capacity(BATCH),
            state: PortState::Up,
            shown: PortState::Up,
            polls: 0,
            withdrawn: None,
            unsent: 0,
            drops_in_a_row: 0,
            kernel_counted: 0,
        })
    }

    /// Adds what the kernel dropped for this socket since the last time to the worker's
    /// per-port counter (a `getsockopt`: at liveness checks and at the drain).
    fn count_kernel_drops(&mut self, counters: &WorkerCounters) {
        let now = self.kernel_drops();
        if now > self.kernel_counted {
            counters.kernel_dropped(self.index, now - self.kernel_counted);
            self.kernel_counted = now;
        }
    }

    /// The socket (for its kernel statistics).
    pub fn socket(&self) -> &XskSocket {
        &self.sock
    }

    /// Tops the fill ring up to this port's share of the pool: half the frames, split
    /// evenly over the worker's ports (the other half is for packets in flight and TX),
    /// capped by the ring size. Without a share, the first port of a worker would take
    /// every frame and starve the others.
    fn restock(&mut self, pool: &mut FramePool, counters: Option<&WorkerCounters>) {
        let ports = pool.census().kernel_rx.len().max(1);
        let share = (pool.umem().config().frame_count as usize / (2 * ports)).min(self.sock.fill.size() as usize);
        let held = pool.census().kernel_rx[usize::from(self.index)] as usize;
        // Top up in whole batches, not a few frames after every burst: the ring's lines
        // and indices then cross to the kernel's CPU once per batch.
        if held + BATCH.min(share.div_ceil(2)) > share {
            return;
        }
        let room = (self.sock.fill.free(self.sock.fill.size()) as usize).min(share - held);
        if room == 0 {
            return;
        }
        let want = room.min(BATCH);
        self.scratch.clear();
        pool.take_for(want, Place::KernelRx(self.index), &mut self.scratch);
        if self.scratch.len() < want
            && let Some(c) = counters
        {
            WorkerCounters::add(&c.fill_starved, 1);
        }
        let pushed = self.sock.fill.push(&self.scratch);
        pool.untake(&self.scratch[pushed..], Place::KernelRx(self.index));
    }

    /// Notes what a kick or wake-up said: when the device is gone, the frames still on the
    /// TX ring (which the kernel will never take now) come back, and the port goes quiet.
    fn check(&mut self, r: af_xdp::Result<()>, pool: &mut FramePool, counters: &WorkerCounters) {
        let Err(e) = r else {
            return;
        };
        if !matches!(e, af_xdp::Error::DeviceGone { .. }) || self.state == PortState::Gone {
            return;
        }
        eprintln!("{}: {e}", self.name);
        self.state = PortState::Gone;
        self.take_back_tx(pool, counters);
    }

    /// Notes what a TX kick said, which tells whether the device can send: set down
    /// (ENETDOWN), or without carrier (it drops every frame, and says so: `TxKick::
    /// Dropped`, then asked whether it is running), the frames on the TX ring come back
    /// (in copy mode the kernel reads that ring only in our kicks), so nothing goes out
    /// stale later; up and running again, sending resumes.
    fn check_tx(&mut self, r: af_xdp::Result<TxKick>, pool: &mut FramePool, counters: &WorkerCounters) {
        if matches!(r, Ok(TxKick::Dropped)) {
            self.unsent += 1;
            self.drops_in_a_row += 1;
        } else if r.is_ok() {
            self.drops_in_a_row = 0;
        }
        match (r, self.state) {
            (Err(e @ af_xdp::Error::DeviceDown { .. }), PortState::Up) => {
                self.went_down(&e.to_string(), pool, counters)
            }
            (Ok(TxKick::Dropped), PortState::Up) if self.drops_in_a_row.is_multiple_of(CARRIER_CHECK) => {
                self.check_running(pool, counters)
            }
            (Ok(_), PortState::Down) if self.sock.device_running().unwrap_or(false) => {
                eprintln!("{}: up again", self.name);
                self.state = PortState::Up;
            }
            (Ok(_), _) => {}
            (Err(e), _) => self.check(Err(e), pool, counters),
        }
    }

    /// Asks the device whether it runs (up, with carrier), and takes the port down if not.
    fn check_running(&mut self, pool: &mut FramePool, counters: &WorkerCounters) {
        if self.sock.device_running().is_ok_and(|running| !running) {
            let why = format!(
                "`{}` is not running (down, or without carrier: a veth whose peer is down, a \
                 link without signal): nothing is sent until it runs",
                self.sock.ifname()
            );
            self.went_down(&why, pool, counters);
        }
    }

    /// Marks the port down (saying why) and takes its TX ring's frames back.
    fn went_down(&mut self, why: &str, pool: &mut FramePool, counters: &WorkerCounters) {
        eprintln!("{}: {why}", self.name);
        self.state = PortState::Down;
        self.take_back_tx(pool, counters);
    }

    /// Frees the frames on the TX ring the kernel has not taken (it will not: the device
    /// is gone or down), and counts them dropped for the port's state: a device going
    /// away or down mid-stream loses them.
    fn take_back_tx(&mut self, pool: &mut FramePool, counters: &WorkerCounters) {
        let mut back = Vec::new();
        self.sock.tx.take_back(&mut back);
        for d in &back {
            pool.free(d.addr, Place::KernelTx(self.index));
        }
        let why = if self.state == PortState::Gone {
            DropReason::PortGone
        } else {
            DropReason::PortDown
        };
        counters.dropped(why, back.len() as u64);
    }

    /// Takes the kernel's TX completions: these frames are sent, but for those the
    /// device dropped (each kick that said so).
    fn reclaim(&mut self, pool: &mut FramePool, counters: &WorkerCounters) -> usize {
        let n = self.sock.comp.pop(&mut self.comp);
        for &a in &self.comp[..n] {
            pool.free(a, Place::KernelTx(self.index));
        }
        if n > 0 {
            let lost = self.unsent.min(n as u64);
            self.unsent -= lost;
            counters.sent(self.index, n as u64 - lost);
            if lost > 0 {
                counters.dropped(DropReason::DeviceDropped, lost);
            }
        }
        n
    }
}

impl Port for AfXdpPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn start(&mut self, index: u16, pool: &mut FramePool) {
        self.index = index;
        loop {
            let before = pool.available();
            self.restock(pool, None);
            if pool.available() == before {
                break;
            }
        }
        if let Err(e) = self.prog.register(self.sock.queue(), self.sock.as_fd()) {
            eprintln!("{}: {e}", self.name);
        }
        self.withdrawn = None;
    }

    fn rx_burst(&mut self, pool: &mut FramePool, out: &mut [Pkt], counters: &WorkerCounters) -> usize {
        let want = out.len().min(BATCH);
        let n = self.sock.rx.pop(&mut self.descs[..want]);
        for (o, d) in out.iter_mut().zip(&self.descs[..n]) {
            pool.moved(d.addr, Place::KernelRx(self.index), Place::Worker);
            *o = Pkt {
                addr: d.addr,
                len: d.len,
            };
        }
        WorkerCounters::add(&counters.rx, n as u64);
        if n > 0
            && matches!(self.sock.busy_poll(), BusyPoll::Pending)
            && let BusyPoll::Unavailable(why) = self.sock.settle_busy_poll()
        {
            eprintln!("{why}");
        }
        if n == 0 && self.state != PortState::Gone && (self.sock.is_busy_poll() || self.sock.fill.needs_wakeup()) {
            let r = self.sock.wake_rx();
            self.check(r, pool, counters);
        }
        n
    }

    fn tx_burst(&mut self, pool: &mut FramePool, pkts: &[Pkt], counters: &WorkerCounters) -> usize {
        if self.state != PortState::Up {
            return 0;
        }
        let mut done = 0;
        for chunk in pkts.chunks(BATCH) {
            for (d, p) in self.descs.iter_mut().zip(chunk) {
                *d = Desc {
                    addr: p.addr,
                    len: p.len,
                    options: 0,
                };
            }
            let pushed = self.sock.tx.push(&self.descs[..chunk.len()]);
            for p in &chunk[..pushed] {
                pool.moved(p.addr, Place::Worker, Place::KernelTx(self.index));
            }
            done += pushed;
            if pushed < chunk.len() {
                break;
            }
        }
        if done > 0 && (self.sock.is_busy_poll() || self.sock.tx.needs_wakeup()) {
            let r = self.sock.kick_tx();
            self.check_tx(r, pool, counters);
        }
        done
    }

    fn poll(&mut self, pool: &mut FramePool, counters: &WorkerCounters) {
        self.reclaim(pool, counters);
        self.polls = self.polls.wrapping_add(1);
        if self.state != PortState::Gone && self.polls.is_multiple_of(LIVENESS_POLLS) {
            self.count_kernel_drops(counters);
            let r = self.sock.wake_rx();
            self.check(r, pool, counters);
            // An idle port learns of a lost carrier too, not only from its next send.
            if self.state == PortState::Up {
                self.check_running(pool, counters);
            }
        }
        // A down device is asked again now and then (an empty kick says whether it is up).
        let probe = self.state == PortState::Down && self.polls.is_multiple_of(DOWN_POLLS);
        if probe || (self.state == PortState::Up && self.sock.tx.pending() > 0 && self.sock.tx.needs_wakeup()) {
            let r = self.sock.kick_tx();
            self.check_tx(r, pool, counters);
        }
        if self.state != self.shown {
            counters.set_state(self.index, self.state);
            self.shown = self.state;
        }
        if self.state != PortState::Gone {
            self.restock(pool, Some(counters));
        }
    }

    fn state(&self) -> PortState {
        self.state
    }

    fn withdraw(&mut self) {
        let _ = self.prog.unregister(self.sock.queue());
        self.withdrawn = Some(Instant::now());
    }

    fn can_retire(&self) -> bool {
        !self.sock.is_zero_copy()
    }

    fn retire(&mut self, pool: &mut FramePool, counters: &WorkerCounters) {
        self.drain(pool, counters);
        // Out of the XSKMAP and quiet since, a copy-mode socket is never given
        // another packet, and the kernel takes fill-ring frames only for a packet it is
        // given; each receive ends by publishing its consumer index. So what lies past
        // that index now is ours again, while the socket stays open.
        let mut back = Vec::new();
        self.sock.fill.take_back(&mut back);
        for a in back {
            pool.free(a, Place::KernelRx(self.index));
        }
    }

    fn as_af_xdp(&self) -> Option<&AfXdpPort> {
        Some(self)
    }

    fn kernel_drops(&self) -> u64 {
        self.sock.stats().map_or(0, |s| {
            s.rx_dropped + s.rx_ring_full + s.rx_invalid_descs + s.tx_invalid_descs
        })
    }

    fn drain(&mut self, pool: &mut FramePool, counters: &WorkerCounters) -> u64 {
        if self.withdrawn.is_none() {
            self.withdraw();
        }
        let withdrawn = self.withdrawn.unwrap_or_else(Instant::now);
        let deadline = Instant::now() + Duration::from_millis(500);
        // Done at a quiet pass that comes SETTLE after the socket left the XSKMAP: a
        // packet the kernel was delivering then has landed. Withdrawn at a change's
        // prepare step, that is the first pass.
        loop {
            let n = self.sock.rx.pop(&mut self.descs);
            for d in &self.descs[..n] {
                pool.moved(d.addr, Place::KernelRx(self.index), Place::Worker);
                pool.free(d.addr, Place::Worker);
            }
            counters.closing(self.index, n as u64);
            if self.state == PortState::Up {
                // Down, the frames on the TX ring come back rather than completions
                // never arriving.
                let r = self.sock.kick_tx();
                self.check_tx(r, pool, counters);
            }
            let c = self.reclaim(pool, counters);
            let in_tx = pool.census().kernel_tx[usize::from(self.index)];
            let quiet = n == 0 && c == 0 && in_tx == 0;
            if (quiet && withdrawn.elapsed() >= SETTLE) || Instant::now() > deadline {
                break;
            }
            if n == 0 && c == 0 {
                std::thread::sleep(
                    SETTLE
                        .saturating_sub(withdrawn.elapsed())
                        .max(Duration::from_micros(50)),
                );
            }
        }
        self.count_kernel_drops(counters);
        let in_ring = u64::from(self.sock.fill.pending());
        // A receive that fails on a full RX ring leaves the frame the kernel took for it in
        // the kernel's own buffer pool, for its next packet: off the fill ring, but the
        // kernel's until the socket closes. One frame at most (a single-buffer socket), and
        // only once the ring has been full.
        let given = pool.census().kernel_rx[usize::from(self.index)];
        let ring_was_full = self.sock.stats().is_ok_and(|s| s.rx_ring_full > 0);
        in_ring + u64::from(ring_was_full && given > in_ring)
    }
}
