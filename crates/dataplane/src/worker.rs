//! Poll-mode workers: one per CPU, pinned, each owning its ports, frame pool and counters,
//! busy-polling in bursts until told to stop.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use crate::frames::{Census, FramePool, Place};
use crate::port::{Pkt, Port};
use crate::stats::{DropReason, PortState, SharedCounters, Stats, WorkerCounters};
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

    /// The worker's counters, for a handler that counts [`Event`](crate::Event)s: given
    /// when the worker is made and whenever it counts into others.
    fn count_into(&mut self, _counters: SharedCounters) {}
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
    pub fn new(pool: FramePool, ports: Vec<Box<dyn Port>>, mut handler: Box<dyn Handler>) -> Self {
        let n = ports.len();
        let counters = Arc::new(CachePadded::new(WorkerCounters::default()));
        handler.count_into(Arc::clone(&counters));
        Worker {
            pool,
            ports,
            handler,
            counters,
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
        self.handler.count_into(Arc::clone(&counters));
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
            let sent = self.ports[q].tx_burst(&mut self.pool, out, c);
            if sent < out.len() {
                let why = match self.ports[q].state() {
                    PortState::Gone => DropReason::PortGone,
                    PortState::Down => DropReason::PortDown,
                    PortState::Up => DropReason::TxRingFull,
                };
                for p in &out[sent..] {
                    c.dropped(why, 1);
                    self.pool.free(p.addr, Place::Worker);
                }
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

    /// Moves this worker onto other ports between two bursts, keeping its frame pool and
    /// counters: `old_of[new]` is the old index of the port that takes index `new`, or
    /// `None` for the next of `added`; `handler` replaces the current one (a pipeline for
    /// the new port numbers). Ports left out are retired ([`Port::can_retire`] must hold
    /// for each) and returned, to be closed off the worker's thread: closing an AF_XDP
    /// socket waits for an RCU grace period. Returns them with the frames given up (the
    /// kernel kept them, [`FramePool::give_up`]).
    ///
    /// # Panics
    /// If `old_of` names a port twice or one out of range, or `added` does not match its
    /// `None`s.
    pub fn change_ports(
        &mut self,
        old_of: &[Option<u16>],
        added: Vec<Box<dyn Port>>,
        handler: Box<dyn Handler>,
    ) -> (Vec<Box<dyn Port>>, u64) {
        assert_eq!(
            old_of.iter().filter(|o| o.is_none()).count(),
            added.len(),
            "one added port per new index"
        );
        // What the old handler holds goes out (or is dropped) under the old numbers.
        self.emit_pending(true);
        let mut old: Vec<Option<Box<dyn Port>>> = self.ports.drain(..).map(Some).collect();
        let mut kept = vec![false; old.len()];
        for &i in old_of.iter().flatten() {
            kept[usize::from(i)] = true;
        }
        let mut given_up = 0;
        for (i, p) in old.iter_mut().enumerate() {
            if let Some(p) = p.as_mut().filter(|_| !kept[i]) {
                p.retire(&mut self.pool, &self.counters);
                given_up += self.pool.give_up(i as u16);
            }
        }
        self.pool.renumber(old_of);
        self.counters.renumber_ports(old_of);
        let mut added = added.into_iter();
        self.ports = old_of
            .iter()
            .map(|o| match o {
                Some(i) => old[usize::from(*i)].take().expect("each old port kept once"),
                None => added.next().expect("counted above"),
            })
            .collect();
        self.out = (0..self.ports.len()).map(|_| Vec::with_capacity(BURST)).collect();
        self.handler = handler;
        if self.started {
            for (i, p) in self.ports.iter_mut().enumerate() {
                p.start(i as u16, &mut self.pool);
            }
        }
        (old.into_iter().flatten().collect(), given_up)
    }

    /// Opens the ports of a prepared change, in order, one per pass, and when all are
    /// open withdraws the ports to go and answers. A port whose queue is still held (by a
    /// socket just closed) is tried again between later bursts, so the worker forwards
    /// meanwhile.
    /// `false` when the control side has gone.
    fn open_ports(&mut self, inbox: &Inbox, added: &mut Vec<Box<dyn Port>>, opening: &mut Option<Opening>) -> bool {
        let reply = |r: Reply| inbox.reply.send((inbox.index, r)).is_ok();
        let Some(o) = opening.as_mut() else { return true };
        while let Some(open) = o.open.front_mut() {
            match open(self) {
                Ok(p) => {
                    added.push(p);
                    o.open.pop_front();
                    if !o.open.is_empty() {
                        // One socket per pass (a bind takes 0.3-0.4 ms): a burst goes
                        // through between two.
                        o.retry_at = Instant::now();
                        return true;
                    }
                }
                Err(OpenError::Busy(_)) if Instant::now() + o.wait < o.give_up => {
                    o.retry_at = Instant::now() + o.wait;
                    o.wait = (o.wait * 2).min(Duration::from_millis(16));
                    return true;
                }
                Err(OpenError::Busy(e) | OpenError::Failed(e)) => {
                    added.clear();
                    *opening = None;
                    return reply(Reply::Failed(e));
                }
            }
        }
        let mut withdrawn = 0;
        for (p, kept) in self.ports.iter_mut().zip(&o.kept) {
            if !kept {
                p.withdraw();
                withdrawn += 1;
            }
        }
        *opening = None;
        reply(Reply::Prepared(withdrawn))
    }

    /// Undoes a prepared change: the ports opened for it go, the ports it withdrew take
    /// packets again.
    fn abort_change(&mut self, added: &mut Vec<Box<dyn Port>>) {
        added.clear();
        for (i, p) in self.ports.iter_mut().enumerate() {
            p.start(i as u16, &mut self.pool);
        }
    }

    /// The worker's first AF_XDP port: a port added later shares its UMEM registration.
    pub fn first_af_xdp(&self) -> Option<&crate::AfXdpPort> {
        self.ports.iter().find_map(|p| p.as_af_xdp())
    }

    /// Busy-polls until `stop` is set, obeying what comes through `inbox` between bursts.
    fn serve(&mut self, stop: &AtomicBool, inbox: &Inbox) {
        self.start();
        let mut added = Vec::new();
        let mut opening = None;
        while !stop.load(Ordering::Relaxed) {
            self.run_once();
            // A plain load on every pass (the line stays shared); the swap only when told.
            if inbox.flag.load(Ordering::Relaxed) && inbox.flag.swap(false, Ordering::Acquire) {
                while let Ok(m) = inbox.rx.try_recv() {
                    if !self.obey(m, inbox, &mut added, &mut opening) {
                        return;
                    }
                }
            }
            if opening.as_ref().is_some_and(|o: &Opening| Instant::now() >= o.retry_at)
                && !self.open_ports(inbox, &mut added, &mut opening)
            {
                return;
            }
        }
    }

    /// Carries out one control message; `false` when the control side has gone.
    fn obey(
        &mut self,
        m: Control,
        inbox: &Inbox,
        added: &mut Vec<Box<dyn Port>>,
        opening: &mut Option<Opening>,
    ) -> bool {
        let reply = |r: Reply| inbox.reply.send((inbox.index, r)).is_ok();
        match m {
            Control::Prepare { old_of, open } => {
                added.clear();
                if let Some(p) = (0..self.ports.len())
                    .filter(|&i| !old_of.contains(&Some(i as u16)))
                    .map(|i| &self.ports[i])
                    .find(|p| !p.can_retire())
                {
                    return reply(Reply::Failed(format!(
                        "port {} cannot be removed while its worker runs (a zero-copy socket)",
                        p.name()
                    )));
                }
                let mut seen = vec![false; self.ports.len()];
                for &i in old_of.iter().flatten() {
                    match seen.get_mut(usize::from(i)) {
                        Some(s) if !*s => *s = true,
                        Some(_) => return reply(Reply::Failed(format!("port {i} kept twice"))),
                        None => return reply(Reply::Failed(format!("no port {i} to keep"))),
                    }
                }
                if old_of.iter().filter(|o| o.is_none()).count() != open.len() {
                    return reply(Reply::Failed("one port to open per new index".into()));
                }
                let now = Instant::now();
                *opening = Some(Opening {
                    open: open.into(),
                    kept: seen,
                    wait: Duration::from_millis(1),
                    retry_at: now,
                    give_up: now + OPEN_WAIT,
                });
                self.open_ports(inbox, added, opening)
            }
            Control::Park => {
                // Nothing held under the old numbers survives the tables changing.
                self.emit_pending(true);
                if !reply(Reply::Done) {
                    return false;
                }
                match recv_polling(&inbox.rx, PARKED_POLL) {
                    Ok(Control::Commit { old_of, handler }) => {
                        let (removed, given_up) = self.change_ports(&old_of, std::mem::take(added), handler);
                        reply(Reply::Committed {
                            removed,
                            given_up,
                            resumed: Instant::now(),
                        })
                    }
                    Ok(_) => {
                        self.abort_change(added);
                        reply(Reply::Done)
                    }
                    Err(_) => false,
                }
            }
            Control::Commit { .. } | Control::Abort => {
                self.abort_change(added);
                reply(Reply::Done)
            }
        }
    }

    /// Drains every port and checks the frame accounting.
    pub fn finish(mut self) -> WorkerReport {
        self.emit_pending(true);
        let held: Vec<u64> = self
            .ports
            .iter_mut()
            .map(|p| p.drain(&mut self.pool, &self.counters))
            .collect();
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

/// Opens one port a live change adds, on its worker's thread, given the worker (for its
/// pool, and its first AF_XDP port to share the UMEM with). Called again, between bursts,
/// while it answers [`OpenError::Busy`].
pub type PortOpener = Box<dyn FnMut(&Worker) -> Result<Box<dyn Port>, OpenError> + Send>;

/// Why a [`PortOpener`] did not open its port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError {
    /// Not yet: its queue is still held (a socket just closed lets go of it a moment
    /// later). The worker forwards on and asks again, for up to a second.
    Busy(String),
    /// Not at all: the change is refused with this message.
    Failed(String),
}

impl From<String> for OpenError {
    fn from(why: String) -> Self {
        OpenError::Failed(why)
    }
}

/// A socket's queue still held is [`OpenError::Busy`]; any other error fails the change.
impl From<af_xdp::Error> for OpenError {
    fn from(e: af_xdp::Error) -> Self {
        match e {
            af_xdp::Error::QueueBusy { .. } => OpenError::Busy(e.to_string()),
            e => OpenError::Failed(e.to_string()),
        }
    }
}

impl From<&str> for OpenError {
    fn from(why: &str) -> Self {
        OpenError::Failed(why.into())
    }
}

/// How long a worker keeps trying to open a port whose queue is held.
const OPEN_WAIT: Duration = Duration::from_secs(1);

/// A prepared change's ports still to open.
struct Opening {
    open: std::collections::VecDeque<PortOpener>,
    /// Which of the worker's ports the change keeps.
    kept: Vec<bool>,
    /// The next wait between tries (doubling, to 16 ms).
    wait: Duration,
    retry_at: Instant,
    give_up: Instant,
}

/// One worker's part of a live port change ([`WorkerSet::change_ports`]).
pub struct PortChange {
    /// `old_of[new]`: the old index of the port that takes index `new`, or `None` for the
    /// next port `open` makes.
    pub old_of: Vec<Option<u16>>,
    /// Makes the added ports, in order.
    pub open: Vec<PortOpener>,
    /// The handler for the new port numbers.
    pub handler: Box<dyn Handler>,
}

/// What a live port change did.
#[derive(Debug, Clone)]
pub struct ChangeReport {
    /// How long the workers took to open the new ports (each between two bursts of its
    /// own, so its ports wait that long; the slowest worker's time).
    pub opening: Duration,
    /// How long the workers stood still between two bursts: from the first asked to stop
    /// to the last running again on the new ports.
    pub parked: Duration,
    /// Frames written off with removed ports ([`FramePool::give_up`]).
    pub given_up: u64,
}

enum Control {
    /// Open these ports (not started: nothing arrives on them yet) and check the old
    /// ones `old_of` leaves out can go.
    Prepare {
        old_of: Vec<Option<u16>>,
        open: Vec<PortOpener>,
    },
    /// Stop between bursts until `Commit` or `Abort`.
    Park,
    Commit {
        old_of: Vec<Option<u16>>,
        handler: Box<dyn Handler>,
    },
    Abort,
}

enum Reply {
    Done,
    /// Prepared, with this many ports withdrawn.
    Prepared(usize),
    Failed(String),
    /// Committed: the ports removed, the frames given up, and when the worker ran again.
    Committed {
        removed: Vec<Box<dyn Port>>,
        given_up: u64,
        resumed: Instant,
    },
}

/// How long parked workers and the control thread poll for each other's messages before
/// they sleep: they wait on each other for well under a millisecond, and waking a thread
/// that slept (on a VM, a vCPU that halted) can take longer than the wait.
const PARKED_POLL: Duration = Duration::from_millis(20);

/// The next message on `rx`, polled for up to `poll`, then slept on.
fn recv_polling<T>(rx: &mpsc::Receiver<T>, poll: Duration) -> Result<T, mpsc::RecvError> {
    let until = Instant::now() + poll;
    while Instant::now() < until {
        match rx.try_recv() {
            Ok(m) => return Ok(m),
            // Yielding, not spinning: a thread sharing this CPU (the other side, on a
            // machine with fewer CPUs than threads) runs first.
            Err(mpsc::TryRecvError::Empty) => std::thread::yield_now(),
            Err(mpsc::TryRecvError::Disconnected) => return Err(mpsc::RecvError),
        }
    }
    rx.recv()
}

/// A worker's end of its control channel.
struct Inbox {
    index: usize,
    rx: mpsc::Receiver<Control>,
    /// Set after each message: the worker looks at the channel only then.
    flag: Arc<CachePadded<AtomicBool>>,
    reply: mpsc::Sender<(usize, Reply)>,
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
    /// Each worker's control channel, and the flag that tells it to look.
    control: Vec<(mpsc::Sender<Control>, Arc<CachePadded<AtomicBool>>)>,
    replies: std::sync::Mutex<mpsc::Receiver<(usize, Reply)>>,
}

impl WorkerSet {
    /// Starts one worker per CPU in `cpus` (empty: all online CPUs). Each thread pins
    /// itself, then calls `build(worker_index, cpu)` to make its worker, so sockets are
    /// created on the worker's own thread (and network namespace, if `build` enters one).
    /// Returns once every worker is built and receiving, or the first build error (the
    /// others stopped).
    pub fn start<F>(cpus: &[usize], build: F) -> Result<Self, String>
    where
        F: Fn(usize, usize) -> Result<Worker, String> + Send + Sync + 'static,
    {
        let cpus = if cpus.is_empty() { online_cpus() } else { cpus.to_vec() };
        let build = Arc::new(build);
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let (reply_tx, replies) = mpsc::channel();
        let mut threads = Vec::new();
        let mut control = Vec::new();
        for (i, &cpu) in cpus.iter().enumerate() {
            let (build, stop, tx) = (build.clone(), stop.clone(), tx.clone());
            let (ctl_tx, ctl_rx) = mpsc::channel();
            let flag = Arc::new(CachePadded::new(AtomicBool::new(false)));
            control.push((ctl_tx, flag.clone()));
            let inbox = Inbox {
                index: i,
                rx: ctl_rx,
                flag,
                reply: reply_tx.clone(),
            };
            let t = std::thread::Builder::new()
                .name(format!("vrouter-w{i}"))
                .spawn(move || {
                    let built = pin_current_thread(cpu)
                        .map_err(|e| format!("worker {i}: pinning to cpu {cpu}: {e}"))
                        .and_then(|_| build(i, cpu));
                    // What the builder holds (XDP programs among it) must not outlive a
                    // live change that removes it.
                    drop(build);
                    match built {
                        Ok(mut w) => {
                            // Receiving (sockets in the XSKMAP, fill rings filled) before
                            // the start returns: a sender started next loses nothing.
                            w.start();
                            let _ = tx.send(Ok((i, w.counters())));
                            w.serve(&stop, &inbox);
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
            control,
            replies: std::sync::Mutex::new(replies),
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

    /// Moves the running workers onto other ports without stopping them: `changes[i]` is
    /// worker `i`'s part. First every worker opens its new ports while it forwards on the
    /// old ones, and withdraws the ports to go ([`Port::withdraw`]); a millisecond later,
    /// when nothing is on its way to those any more, all stand still between two bursts
    /// (packets wait in their rings) while `parked` runs (swap in the tables for the new
    /// port numbers there, compiled before: it stands them still); then each
    /// retires its removed ports and carries on. If a port cannot be opened or removed,
    /// or `parked` fails, nothing changes. Removed ports are closed before this returns.
    pub fn change_ports<T>(
        &self,
        changes: Vec<PortChange>,
        parked: impl FnOnce() -> Result<T, String>,
    ) -> Result<(T, ChangeReport), String> {
        if changes.len() != self.control.len() {
            return Err(format!("{} changes for {} workers", changes.len(), self.control.len()));
        }
        let replies = self.replies.lock().map_err(|_| "worker control poisoned")?;
        let mut commits = Vec::new();
        let mut prepare = Vec::new();
        for c in changes {
            prepare.push(Control::Prepare {
                old_of: c.old_of.clone(),
                open: c.open,
            });
            commits.push((c.old_of, c.handler));
        }
        let abort = |why: String| {
            let _ = self.ask(&replies, || Control::Abort, PARKED_POLL);
            Err(why)
        };
        let mut prepare = prepare.into_iter();
        let opening = Instant::now();
        // The workers run while they open ports: this thread sleeps meanwhile, leaving
        // its CPU to a worker that may share it.
        let next = || prepare.next().expect("one per worker");
        let withdrawn = match self.ask(&replies, next, Duration::ZERO) {
            Ok(n) => n,
            Err(e) => return abort(e),
        };
        let opening = opening.elapsed();
        if withdrawn > 0 {
            // The removed ports are out of the XSKMAP; what was on its way to them lands
            // while the workers still run, and their retirement need not wait for it.
            std::thread::sleep(crate::afxdp::SETTLE);
        }
        let began = Instant::now();
        if let Err(e) = self.ask(&replies, || Control::Park, PARKED_POLL) {
            return abort(e);
        }
        let t = match parked() {
            Ok(t) => t,
            Err(e) => return abort(e),
        };
        let mut commits = commits.into_iter();
        let mut removed = Vec::new();
        let mut given_up = 0;
        let mut last_resumed = began;
        for (tx, flag) in &self.control {
            let (old_of, handler) = commits.next().expect("one per worker");
            tx.send(Control::Commit { old_of, handler })
                .map_err(|_| "a worker has gone")?;
            flag.store(true, Ordering::Release);
        }
        for _ in 0..self.control.len() {
            match recv_polling(&replies, PARKED_POLL) {
                Ok((
                    _,
                    Reply::Committed {
                        removed: r,
                        given_up: g,
                        resumed,
                    },
                )) => {
                    removed.extend(r);
                    given_up += g;
                    last_resumed = last_resumed.max(resumed);
                }
                Ok(_) => return Err("a worker did not take the change".into()),
                Err(_) => return Err("a worker has gone".into()),
            }
        }
        // Up to the last worker running again, not to this thread waking up to hear it.
        let parked = last_resumed - began;
        std::thread::scope(|s| {
            for p in removed {
                s.spawn(move || drop(p));
            }
        });
        Ok((
            t,
            ChangeReport {
                opening,
                parked,
                given_up,
            },
        ))
    }

    /// Sends each worker the message `next` makes and waits for every answer (polling for
    /// each up to `poll`); the refusal of the lowest-numbered worker, if any, or the
    /// ports withdrawn in all.
    fn ask(
        &self,
        replies: &mpsc::Receiver<(usize, Reply)>,
        mut next: impl FnMut() -> Control,
        poll: Duration,
    ) -> Result<usize, String> {
        for (tx, flag) in &self.control {
            tx.send(next()).map_err(|_| "a worker has gone")?;
            flag.store(true, Ordering::Release);
        }
        // The refusal of the lowest-numbered worker, whichever answered first.
        let mut first: Option<(usize, String)> = None;
        let mut withdrawn = 0;
        for _ in 0..self.control.len() {
            let failed = match recv_polling(replies, poll) {
                Ok((_, Reply::Done)) => continue,
                Ok((_, Reply::Prepared(n))) => {
                    withdrawn += n;
                    continue;
                }
                Ok((i, Reply::Failed(e))) => (i, e),
                Ok((i, Reply::Committed { .. })) => (i, "an unexpected commit".into()),
                Err(_) => return Err("a worker has gone".into()),
            };
            if first.as_ref().is_none_or(|(i, _)| failed.0 < *i) {
                first = Some(failed);
            }
        }
        first.map_or(Ok(withdrawn), |(i, e)| Err(format!("worker {i}: {e}")))
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
