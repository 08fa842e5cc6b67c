//! Poll-mode workers: one per CPU, pinned, each owning its ports, frame pool and counters,
//! busy-polling in bursts until told to stop.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

use crossbeam_utils::CachePadded;

use crate::frames::{Census, FramePool, Place};
use crate::port::{Pkt, Port};
use crate::stats::{DropReason, SharedCounters, Stats, WorkerCounters};
use crate::taps::Taps;

/// Packets per burst.
pub const BURST: usize = 64;

/// What happens to one packet of a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send out of this port (index in the worker).
    Tx(u16),
    /// Drop, counted under this reason.
    Drop(DropReason),
    /// The handler keeps the packet (its frame stays in the worker) and hands it back
    /// later through [`Handler::pending`]: parked while its next hop is resolved.
    Keep,
}

/// A packet a handler hands to the worker between bursts.
#[derive(Debug, Clone, Copy)]
pub struct Emitted {
    /// The packet.
    pub pkt: Pkt,
    /// Where it goes (never [`Verdict::Keep`]).
    pub verdict: Verdict,
    /// The handler made it (an ARP request): counted as originated, not received.
    pub originated: bool,
}

/// The packet work a worker runs on every burst (the forwarding pipeline, or the reference
/// reflect/forward apps). It may rewrite packets in place, and grow them into their
/// headroom by moving `addr` back.
pub trait Handler: Send {
    /// Decides `verdicts[i]` for `pkts[i]`, received on port `port`. A worker passes at
    /// most [`BURST`] packets and as many verdict slots.
    fn process(&mut self, port: u16, pkts: &mut [Pkt], pool: &mut FramePool, verdicts: &mut [Verdict]);

    /// Between bursts: packets the handler originated or kept earlier, now to be sent or
    /// dropped. `stopping`: the worker is stopping, so everything kept must come back now.
    /// Handlers that never keep or originate packets leave this out.
    fn pending(&mut self, _pool: &mut FramePool, _stopping: bool, _out: &mut Vec<Emitted>) {}
}

/// One worker: its ports, pool, handler and counters.
pub struct Worker {
    pool: FramePool,
    ports: Vec<Box<dyn Port>>,
    handler: Box<dyn Handler>,
    counters: SharedCounters,
    pkts: [Pkt; BURST],
    verdicts: [Verdict; BURST],
    out: Vec<Vec<Pkt>>,
    emitted: Vec<Emitted>,
    started: bool,
    taps: Arc<Taps>,
}

/// What a stopped worker reports.
#[derive(Debug, Clone)]
pub struct WorkerReport {
    /// Final counters.
    pub stats: Stats,
    /// Where the frames were after draining.
    pub census: Census,
    /// Frames each port's kernel fill ring still held (released when the port closes).
    pub held_by_kernel: Vec<u64>,
    /// Packets the kernel dropped before they reached each port.
    pub kernel_drops: Vec<u64>,
    /// The frame accounting check: `Ok` if every frame is in exactly one place and none is
    /// left in the worker or in flight.
    pub frames_ok: Result<(), String>,
}

impl Worker {
    /// A worker over `ports` (at most 65535) with frames from `pool`.
    pub fn new(pool: FramePool, ports: Vec<Box<dyn Port>>, handler: Box<dyn Handler>) -> Self {
        let n = ports.len();
        Worker {
            pool,
            ports,
            handler,
            counters: Arc::new(CachePadded::new(WorkerCounters::default())),
            pkts: [Pkt::default(); BURST],
            verdicts: [Verdict::Drop(DropReason::Filtered); BURST],
            out: (0..n).map(|_| Vec::with_capacity(BURST)).collect(),
            emitted: Vec::new(),
            started: false,
            taps: Arc::new(Taps::default()),
        }
    }

    /// Shares `taps` (capture switches) with this worker.
    pub fn with_taps(mut self, taps: Arc<Taps>) -> Self {
        self.taps = taps;
        self
    }

    /// Counts into `counters` (a stopped worker's, so totals carry on across a restart;
    /// the per-port counts start afresh, as the ports may be others).
    pub fn with_counters(mut self, counters: SharedCounters) -> Self {
        counters.reset_ports();
        self.counters = counters;
        self
    }

    /// The worker's counters (readable from any thread while it runs).
    pub fn counters(&self) -> SharedCounters {
        self.counters.clone()
    }

    /// The frame pool.
    pub fn pool(&self) -> &FramePool {
        &self.pool
    }

    fn start(&mut self) {
        if !self.started {
            for (i, p) in self.ports.iter_mut().enumerate() {
                p.start(i as u16, &mut self.pool);
            }
            self.started = true;
        }
    }

    /// One pass: a burst from every port, processed and sent, then housekeeping. Returns
    /// the packets received.
    pub fn run_once(&mut self) -> usize {
        self.start();
        let mut total = 0;
        for i in 0..self.ports.len() {
            let n = self.ports[i].rx_burst(&mut self.pool, &mut self.pkts, &self.counters);
            if n == 0 {
                continue;
            }
            total += n;
            WorkerCounters::add(&self.counters.bursts, 1);
            WorkerCounters::add_port(&self.counters.port_rx, i, n as u64);
            if self.taps.capturing() == Some(i as u16) {
                for p in &self.pkts[..n] {
                    self.taps
                        .record_frame(i as u16, self.pool.bytes_mut(p.addr, p.len as usize));
                }
            }
            self.handler
                .process(i as u16, &mut self.pkts[..n], &mut self.pool, &mut self.verdicts[..n]);
            for k in 0..n {
                self.dispatch(self.pkts[k], self.verdicts[k]);
            }
            self.flush();
        }
        self.emit_pending(false);
        if total == 0 {
            WorkerCounters::add(&self.counters.empty_polls, 1);
        }
        for p in &mut self.ports {
            p.poll(&mut self.pool, &self.counters);
        }
        total
    }

    /// Queues one packet by its verdict (frees it if dropped).
    #[inline]
    fn dispatch(&mut self, p: Pkt, v: Verdict) {
        let c = &*self.counters;
        match v {
            Verdict::Tx(q) if usize::from(q) < self.out.len() => self.out[usize::from(q)].push(p),
            Verdict::Tx(_) => {
                c.dropped(DropReason::NoSuchPort, 1);
                self.pool.free(p.addr, Place::Worker);
            }
            Verdict::Drop(why) => {
                c.dropped(why, 1);
                self.pool.free(p.addr, Place::Worker);
            }
            Verdict::Keep => {}
        }
    }

    /// Sends what is queued per port; what a full TX ring (or a port whose device is gone)
    /// refuses is dropped and counted.
    fn flush(&mut self) {
        let c = &*self.counters;
        for (q, out) in self.out.iter_mut().enumerate() {
            if out.is_empty() {
                continue;
            }
            let sent = self.ports[q].tx_burst(&mut self.pool, out);
            WorkerCounters::add(&c.tx, sent as u64);
            WorkerCounters::add_port(&c.port_tx, q, sent as u64);
            let why = if sent < out.len() && self.ports[q].is_gone() {
                DropReason::PortGone
            } else {
                DropReason::TxRingFull
            };
            for p in &out[sent..] {
                c.dropped(why, 1);
                self.pool.free(p.addr, Place::Worker);
            }
            out.clear();
        }
    }

    /// Sends or drops what the handler hands back between bursts.
    fn emit_pending(&mut self, stopping: bool) {
        self.handler.pending(&mut self.pool, stopping, &mut self.emitted);
        if self.emitted.is_empty() {
            return;
        }
        let mut emitted = std::mem::take(&mut self.emitted);
        for e in emitted.drain(..) {
            if e.originated {
                WorkerCounters::add(&self.counters.originated, 1);
            }
            let v = if e.verdict == Verdict::Keep {
                Verdict::Drop(DropReason::Filtered)
            } else {
                e.verdict
            };
            self.dispatch(e.pkt, v);
        }
        self.emitted = emitted;
        self.flush();
    }

    /// Busy-polls until `stop` is set.
    pub fn run(&mut self, stop: &AtomicBool) {
        self.start();
        while !stop.load(Ordering::Relaxed) {
            self.run_once();
        }
    }

    /// Drains every port and checks the frame accounting.
    pub fn finish(mut self) -> WorkerReport {
        self.emit_pending(true);
        let held: Vec<u64> = self.ports.iter_mut().map(|p| p.drain(&mut self.pool)).collect();
        let kernel_drops = self.ports.iter().map(|p| p.kernel_drops()).collect();
        let census = self.pool.census().clone();
        let mut frames_ok = self.pool.verify();
        if frames_ok.is_ok() {
            if census.worker != 0 {
                frames_ok = Err(format!("{} frames left in the worker", census.worker));
            } else if census.kernel_tx.iter().any(|&t| t != 0) {
                frames_ok = Err(format!("frames never completed by TX: {:?}", census.kernel_tx));
            } else if census.kernel_rx != held {
                frames_ok = Err(format!(
                    "kernel RX holds {:?} frames, fill rings {held:?}",
                    census.kernel_rx
                ));
            }
        }
        // Closing an AF_XDP socket waits for an RCU grace period (10-15 ms here): the
        // ports close side by side, so a stop or a pause waits for about one.
        std::thread::scope(|s| {
            for p in self.ports.drain(..) {
                s.spawn(move || drop(p));
            }
        });
        WorkerReport {
            stats: self.counters.snapshot(),
            census,
            held_by_kernel: held,
            kernel_drops,
            frames_ok,
        }
    }
}

/// The CPUs this process may run on.
pub fn online_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is valid; sched_getaffinity fills it for this process.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is live and of the size passed.
    let r = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) };
    if r != 0 {
        return vec![0];
    }
    // SAFETY: reading bits of an initialised set.
    (0..libc::CPU_SETSIZE as usize)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

/// Pins the calling thread to `cpu`.
pub fn pin_current_thread(cpu: usize) -> std::io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes one bit inside it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(std::io::Error::other(format!("cpu {cpu} out of range")));
    }
    // SAFETY: `cpu` is within the set (checked above).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is live and of the size passed; pid 0 is the calling thread.
    if unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Workers running on a list of CPUs.
pub struct WorkerSet {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<WorkerReport>>,
    counters: Vec<SharedCounters>,
}

impl WorkerSet {
    /// Starts one worker per CPU in `cpus` (empty: all online CPUs). Each thread pins
    /// itself, then calls `build(worker_index, cpu)` to make its worker, so sockets are
    /// created on the worker's own thread (and network namespace, if `build` enters one).
    /// Returns once every worker is built, or the first build error (the others stopped).
    pub fn start<F>(cpus: &[usize], build: F) -> Result<Self, String>
    where
        F: Fn(usize, usize) -> Result<Worker, String> + Send + Sync + 'static,
    {
        let cpus = if cpus.is_empty() { online_cpus() } else { cpus.to_vec() };
        let build = Arc::new(build);
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let mut threads = Vec::new();
        for (i, &cpu) in cpus.iter().enumerate() {
            let (build, stop, tx) = (build.clone(), stop.clone(), tx.clone());
            let t = std::thread::Builder::new()
                .name(format!("vrouter-w{i}"))
                .spawn(move || {
                    let built = pin_current_thread(cpu)
                        .map_err(|e| format!("worker {i}: pinning to cpu {cpu}: {e}"))
                        .and_then(|_| build(i, cpu));
                    match built {
                        Ok(mut w) => {
                            let _ = tx.send(Ok((i, w.counters())));
                            w.run(&stop);
                            w.finish()
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e.clone()));
                            WorkerReport {
                                stats: Stats::default(),
                                census: Census::default(),
                                held_by_kernel: vec![],
                                kernel_drops: vec![],
                                frames_ok: Err(e),
                            }
                        }
                    }
                })
                .map_err(|e| format!("spawning worker {i}: {e}"))?;
            threads.push(t);
        }
        drop(tx);
        let mut counters = vec![None; cpus.len()];
        let mut first_err = None;
        for r in rx.iter().take(cpus.len()) {
            match r {
                Ok((i, c)) => counters[i] = Some(c),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        let set = WorkerSet {
            stop,
            threads,
            counters: counters.into_iter().flatten().collect(),
        };
        match first_err {
            Some(e) => {
                let _ = set.stop();
                Err(e)
            }
            None => Ok(set),
        }
    }

    /// Counters of each worker, now.
    pub fn stats(&self) -> Vec<Stats> {
        self.counters.iter().map(|c| c.snapshot()).collect()
    }

    /// Handles on each worker's counters, for readers on other threads.
    pub fn counters(&self) -> Vec<SharedCounters> {
        self.counters.clone()
    }

    /// Stops every worker, drains its ports and returns its report.
    pub fn stop(self) -> Vec<WorkerReport> {
        self.stop.store(true, Ordering::Relaxed);
        self.threads
            .into_iter()
            .map(|t| {
                t.join().unwrap_or_else(|_| WorkerReport {
                    stats: Stats::default(),
                    census: Census::default(),
                    held_by_kernel: vec![],
                    kernel_drops: vec![],
                    frames_ok: Err("worker panicked".into()),
                })
            })
            .collect()
    }
}
