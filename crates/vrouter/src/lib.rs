//! vrouter: a userspace vRouter over AF_XDP. This crate is the public face: [`Router`]
//! runs the forwarding pipeline on pinned workers over AF_XDP ports; the building blocks
//! are re-exported (`wire`, `flow`, `fib`, `policy`, `af_xdp`, `dataplane`); [`lab`]
//! builds namespace topologies with real traffic for the demo and the end-to-end tests.
//!
//! ```no_run
//! use std::sync::Arc;
//! use vrouter::{MssClamp, Router, NodeConfig, PortConfig, PortRole};
//! use vrouter::fib::{Fib, FibBuilder, Nexthop};
//!
//! let fib = Arc::new(Fib::new());
//! let mut b = FibBuilder::new();
//! b.add_vrf(0).unwrap();
//! b.set_nexthop(1, Nexthop::Interface { port: 1, gateway: None }).unwrap();
//! b.add_route(0, "10.0.0.0".parse().unwrap(), 8, 1).unwrap();
//! b.publish(&fib).unwrap();
//! let port = |name: &str| PortConfig {
//!     name: name.into(),
//!     mac: vrouter::wire::ethernet::MacAddr([2, 0, 0, 0, 0, 1]),
//!     mtu: 1500,
//!     addrs: vec![],
//!     vlan: None,
//!     role: PortRole::Fabric { vrf: 0 },
//! };
//! let node = NodeConfig {
//!     ports: vec![port("eth0"), port("eth1")],
//!     tunnel_endpoints: vec![],
//!     // TCP SYNs announce no larger segments than each path carries.
//!     tcp_mss_clamp: MssClamp::Path,
//!     ..Default::default()
//! };
//! let router = Router::new(node, fib, 1 << 20).unwrap();
//! let running = router.start_af_xdp(&["eth0".into(), "eth1".into()], &[], vrouter::af_xdp::AttachMode::Auto).unwrap();
//! println!("{:?}", running.stats());
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

pub use af_xdp;
pub use dataplane;
pub use dataplane::pipeline::{MssClamp, NodeConfig, PortConfig, PortRole, Tables};
pub use dataplane::{DropReason, Stats, WorkerReport};
pub use fib;
pub use flow;
pub use policy;
pub use wire;

use af_xdp::{AttachMode, SocketConfig, Umem, UmemConfig, XdpProgram};
use dataplane::pipeline::Pipeline;
use dataplane::{AfXdpPort, FramePool, OpenError, Port, TapPort, Worker, WorkerSet};

pub mod lab;

/// A configured router: its node, FIB, policy and flow table, ready to run.
#[derive(Clone)]
pub struct Router {
    tables: Tables,
}

impl Router {
    /// A router for `node` routing with `fib`, a flow table of `flows` entries (a flow is
    /// two, forward and reverse; inserts may be refused from about 80% of them, and hits
    /// are fastest below half: docs/flow.md), and everything allowed until a policy is
    /// published.
    pub fn new(node: NodeConfig, fib: Arc<fib::Fib>, flows: usize) -> Result<Self, String> {
        Self::with_flow_table(node, fib, flow::FlowTableConfig::with_capacity(flows))
    }

    /// [`Router::new`] with every flow table option chosen: size, what a full table does,
    /// per-VRF quotas, idle timeouts (seconds), holds. At most `cfg.max_readers` workers
    /// and control readers run at once. While it runs, `tables().flows.set_live_options`
    /// changes the full-table behaviour, quota and timeouts.
    pub fn with_flow_table(node: NodeConfig, fib: Arc<fib::Fib>, cfg: flow::FlowTableConfig) -> Result<Self, String> {
        Ok(Router {
            tables: Tables {
                fib,
                policy: Arc::new(policy::PolicyStore::new()),
                flows: Arc::new(flow::FlowTable::new(cfg).map_err(|e| format!("flow table: {e}"))?),
                node: Arc::new(node),
                epoch: Instant::now(),
                taps: Default::default(),
                neighbors: Default::default(),
                path_mtus: Default::default(),
                flow_log: Default::default(),
            },
        })
    }

    /// The shared tables (publish routes and policy through them while running).
    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    /// Publishes `set` as the policy (live on each flow's next packet), after the check a
    /// raw `tables().policy.publish` skips: an endpoint with rule lists must own an
    /// address no other endpoint owns, since the pipeline tells a shared (service)
    /// address's flows apart by the workload port's own addresses. Returns the new
    /// generation and the compiler's warnings (rules left out).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use vrouter::policy::{EndpointId, PolicySet, RuleList};
    /// let r = vrouter::Router::new(Default::default(), Arc::new(vrouter::fib::Fib::new()), 1024).unwrap();
    /// let vip = "10.96.0.10".parse().unwrap();
    /// let mut set = PolicySet::ingress_for(EndpointId(1), 0, vec![vip], RuleList::allow_only(6));
    /// let mut other = set.endpoints[0].clone();
    /// (other.id, other.ingress) = (EndpointId(2), None);
    /// set.endpoints.push(other);
    /// assert!(r.publish_policy(&set).unwrap_err().starts_with("endpoint 1: every address"));
    /// set.endpoints[0].addrs.push("10.0.1.2".parse().unwrap());
    /// assert_eq!(r.publish_policy(&set).unwrap().0, 1, "the first generation");
    /// ```
    pub fn publish_policy(&self, set: &policy::PolicySet) -> Result<(u32, Vec<policy::PolicyError>), String> {
        if let Some(ep) = set.policed_without_own_address() {
            return Err(format!(
                "endpoint {}: every address is another endpoint's too (a service address): its rule lists need an address of its own",
                ep.id.0
            ));
        }
        self.tables.policy.publish(set).map_err(|e| e.to_string())
    }

    /// The same router with other ports: routing, policy, flows, neighbours and taps stay
    /// shared. Run it with [`Paused::resume`] once the running workers are paused and the
    /// routes and policy for the new port numbers are published.
    pub fn with_ports(&self, node: NodeConfig) -> Router {
        Router {
            tables: Tables {
                node: Arc::new(node),
                ..self.tables.clone()
            },
        }
    }

    /// Starts one pipeline worker per CPU of `cpus` (empty: all) over `devs`, one per
    /// node port in order, in the calling thread's network namespace: an AF_XDP port with
    /// the XDP program attached for every port, except a `PortRole::Host` port, which is
    /// the TAP device of that name (created if missing; one queue per worker). Worker `i`
    /// uses queue `i` of every interface; its AF_XDP ports share one UMEM.
    pub fn start_af_xdp(&self, devs: &[String], cpus: &[usize], mode: AttachMode) -> Result<Running, String> {
        let cpus = if cpus.is_empty() {
            dataplane::online_cpus()
        } else {
            cpus.to_vec()
        };
        let progs = self.attach(devs, mode, &[])?;
        let umems = Umems::default();
        let set = self.spawn(&progs, devs, &cpus, None, &umems)?;
        Ok(Running {
            set: Some(set),
            _reaper: Reaper::start(&self.tables),
            kept: Paused {
                progs: progs.into_iter().flatten().collect(),
                ports: (self.tables.node.clone(), devs.to_vec()),
                counters: Vec::new(),
                cpus,
                mode,
                umems,
            },
        })
    }

    /// The XDP program of each port's device (`None` for the TAP of a host port): one
    /// already in `attached` for that device, else attached now.
    fn attach(
        &self,
        devs: &[String],
        mode: AttachMode,
        attached: &[Arc<XdpProgram>],
    ) -> Result<Vec<Option<Arc<XdpProgram>>>, String> {
        let ports = &self.tables.node.ports;
        if devs.len() != ports.len() {
            return Err(format!("{} devices for {} ports", devs.len(), ports.len()));
        }
        devs.iter()
            .zip(ports)
            .map(|(d, pc)| match pc.role {
                PortRole::Host { .. } => Ok(None),
                _ => match attached.iter().find(|p| p.ifname() == d) {
                    Some(p) => Ok(Some(p.clone())),
                    None => XdpProgram::attach(d, mode)
                        .map(|p| Some(Arc::new(p)))
                        .map_err(|e| e.to_string()),
                },
            })
            .collect()
    }

    /// Starts the workers over `devs` with `progs` attached; worker `i` counts into
    /// `counters[i]` when given, and takes its UMEM from `umems[i]` when that is big
    /// enough (a paused worker's), else makes one and leaves it there.
    fn spawn(
        &self,
        progs: &[Option<Arc<XdpProgram>>],
        devs: &[String],
        cpus: &[usize],
        counters: Option<&[dataplane::SharedCounters]>,
        umems: &Umems,
    ) -> Result<WorkerSet, String> {
        let (p, tables, names) = (progs.to_vec(), self.tables.clone(), devs.to_vec());
        let counters = counters.map(<[_]>::to_vec);
        let umems = umems.clone();
        let frames = frames_for(devs.len());
        WorkerSet::start(cpus, move |i, _cpu| {
            let e = |e: af_xdp::Error| e.to_string();
            // Made on the worker's own thread when new: its pages are first touched there.
            let umem = umem_for(&umems, i, frames)?;
            let pool = FramePool::new(umem, p.len());
            let mut xdp: Vec<(usize, AfXdpPort)> = Vec::new();
            let mut taps: Vec<(usize, TapPort)> = Vec::new();
            for (k, prog) in p.iter().enumerate() {
                match prog {
                    Some(prog) => {
                        let first = xdp.first().map(|(_, port)| port);
                        let port = AfXdpPort::open(&pool, prog, i as u32, SocketConfig::default(), first).map_err(e)?;
                        xdp.push((k, port));
                    }
                    None => taps.push((
                        k,
                        TapPort::open(&names[k]).map_err(|e| format!("TAP {}: {e}", names[k]))?,
                    )),
                }
            }
            let mut all: Vec<(usize, Box<dyn Port>)> = xdp
                .into_iter()
                .map(|(k, p)| (k, Box::new(p) as Box<dyn Port>))
                .collect();
            all.extend(taps.into_iter().map(|(k, p)| (k, Box::new(p) as Box<dyn Port>)));
            all.sort_by_key(|(k, _)| *k);
            let ports = all.into_iter().map(|(_, p)| p).collect();
            let pipeline = Pipeline::new(tables.clone()).ok_or("the flow table has no reader slot left")?;
            let worker = Worker::new(pool, ports, Box::new(pipeline)).with_taps(tables.taps.clone());
            Ok(match counters.as_ref().and_then(|c| c.get(i)) {
                Some(c) => worker.with_counters(c.clone()),
                None => worker,
            })
        })
    }
}

impl Router {
    /// One pipeline worker over in-memory ports, one per node port, for embedders that
    /// bring their own packets (from their own DPDK, a test, a simulator): push frames
    /// into the returned links, call [`Worker::run_once`], take frames out. The caller
    /// owns the worker and drives it from one thread.
    pub fn memory_worker(&self, frames: u32) -> Result<(Worker, Vec<Arc<dataplane::MemoryLink>>), String> {
        let umem = Arc::new(
            Umem::new(UmemConfig {
                frame_count: frames,
                ..Default::default()
            })
            .map_err(|e| e.to_string())?,
        );
        let n = self.tables.node.ports.len();
        let links: Vec<_> = (0..n)
            .map(|_| dataplane::MemoryLink::new(MEMORY_LINK_PACKETS))
            .collect();
        let ports = links
            .iter()
            .zip(&self.tables.node.ports)
            .map(|(l, pc)| Box::new(dataplane::MemoryPort::new(&pc.name, l.clone())) as Box<dyn Port>)
            .collect();
        let pipeline = Pipeline::new(self.tables.clone()).ok_or("the flow table has no reader slot left")?;
        let worker =
            Worker::new(FramePool::new(umem, n), ports, Box::new(pipeline)).with_taps(self.tables.taps.clone());
        Ok((worker, links))
    }
}

impl Router {
    /// Moves `worker`, made by [`Router::memory_worker`] on `old`'s ports with `links`,
    /// onto this router's ports (made from `old` by [`Router::with_ports`]): a port kept
    /// (the same name and kind, whatever else of it changed) keeps its link, its packets
    /// in flight and its counters, a new port gets a new link. Returns each new port's
    /// link and, if it was kept, its old index. Learned neighbours follow their port if
    /// its configuration did not change. Publish the routes and policy written for
    /// the new port numbers first.
    pub fn change_memory_ports(
        &self,
        worker: &mut Worker,
        old: &Router,
        links: &[Arc<dataplane::MemoryLink>],
    ) -> Result<Vec<KeptLink>, String> {
        let (old_node, new) = (&old.tables.node, &self.tables.node);
        if links.len() != old_node.ports.len() {
            return Err(format!("{} links for {} ports", links.len(), old_node.ports.len()));
        }
        let names = |n: &NodeConfig| n.ports.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
        // A port that stays keeps its link, packets and counters, whatever else of it
        // changed (as a worker's port keeps its socket); its learned neighbours stay only
        // if nothing did.
        let old_of = old_indices((old_node, &names(old_node)), (new, &names(new)), same_kind);
        let neighbors_of = old_indices((old_node, &names(old_node)), (new, &names(new)), PartialEq::eq);
        let pipeline = Pipeline::new(self.tables.clone()).ok_or("the flow table has no reader slot left")?;
        let mut added: Vec<Box<dyn Port>> = Vec::new();
        let ports = old_of
            .iter()
            .zip(&new.ports)
            .map(|(o, pc)| match o {
                Some(i) => (links[usize::from(*i)].clone(), Some(usize::from(*i))),
                None => {
                    let l = dataplane::MemoryLink::new(MEMORY_LINK_PACKETS);
                    added.push(Box::new(dataplane::MemoryPort::new(&pc.name, l.clone())));
                    (l, None)
                }
            })
            .collect();
        renumber_neighbors(self, &neighbors_of, old_node.ports.len());
        worker.change_ports(&old_of, added, Box::new(pipeline));
        Ok(ports)
    }
}

/// A memory port's link after a port change, and the port's old index if it was kept.
pub type KeptLink = (Arc<dataplane::MemoryLink>, Option<usize>);

/// Packets each way a memory port's link holds.
const MEMORY_LINK_PACKETS: usize = 1024;

/// Workers running; stops them (and detaches XDP) when dropped.
pub struct Running {
    set: Option<WorkerSet>,
    _reaper: Reaper,
    /// What a pause keeps: programs, ports, CPUs, UMEMs (counters are filled in then).
    kept: Paused,
}

impl Running {
    /// Counters per worker, now.
    pub fn stats(&self) -> Vec<Stats> {
        self.set.as_ref().map_or_else(Vec::new, |s| s.stats())
    }

    /// Handles on the workers' counters (to read them from another thread). They stay
    /// the same across [`Running::pause`] and [`Paused::resume`].
    pub fn counters(&self) -> Vec<dataplane::SharedCounters> {
        self.set.as_ref().map_or_else(Vec::new, |s| s.counters())
    }

    /// Stops the workers; their reports include the frame accounting check.
    pub fn stop(mut self) -> Vec<WorkerReport> {
        self.set.take().map_or_else(Vec::new, |s| s.stop())
    }

    /// Attaches the XDP program to those of `devs` (the devices of `router`'s ports) that
    /// lack it, and grows the workers' UMEMs if these ports need more frames, while the
    /// workers run: both take milliseconds a pause then does not. [`Paused::resume`]
    /// detaches what its ports do not use.
    pub fn attach_ahead(&mut self, router: &Router, devs: &[String]) -> Result<(), String> {
        let progs = router.attach(devs, self.kept.mode, &self.kept.progs)?;
        for p in progs.into_iter().flatten() {
            if !self.kept.progs.iter().any(|q| Arc::ptr_eq(q, &p)) {
                self.kept.progs.push(p);
            }
        }
        // More ports than the UMEMs were made for: the bigger ones are made now, each on
        // its worker's CPU, rather than during the pause.
        let frames = frames_for(devs.len());
        std::thread::scope(|s| {
            let made: Vec<_> = self
                .kept
                .cpus
                .iter()
                .enumerate()
                .map(|(i, &cpu)| {
                    let umems = &self.kept.umems;
                    s.spawn(move || {
                        dataplane::pin_current_thread(cpu).map_err(|e| format!("pinning to cpu {cpu}: {e}"))?;
                        umem_for(umems, i, frames).map(drop)
                    })
                })
                .collect();
            made.into_iter()
                .try_for_each(|t| t.join().unwrap_or_else(|_| Err("making a UMEM panicked".into())))
        })
    }

    /// Moves the running workers onto `router`'s ports on `devs` without stopping them:
    /// the new ports' programs are attached and their sockets opened while the workers
    /// forward; then the workers stand still between two bursts (packets wait in their
    /// rings; nothing is closed or bound) while `parked` runs, which swaps in the routes
    /// and policy written for the new port numbers (compile them before, and only install
    /// them there: the workers stand still meanwhile); then each worker retires its removed
    /// ports and goes on with the same sockets for the ports kept, the same frames and
    /// counters. Learned neighbours follow their port (as for [`Paused::resume`]).
    ///
    /// [`ChangeError::NeedsPause`] when it cannot be done live (the UMEMs are too small for
    /// the new port count, or a removed port is zero-copy): then pause and resume.
    /// [`ChangeError::Refused`] when a device is missing, a socket cannot be opened or
    /// `parked` fails: the old ports run on and nothing `parked` did not do is published.
    ///
    /// ```no_run
    /// # use vrouter::{ChangeError, NodeConfig, Router, Running, fib::{Fib, FibBuilder}};
    /// # fn f(running: &mut Running, router: &Router, fib: &Fib, routes: &mut FibBuilder,
    /// #      node: NodeConfig, devs: Vec<String>) -> Result<(), String> {
    /// // `node` lists the ports after the change, `devs` their devices; `routes` names the
    /// // new port numbers.
    /// let new = router.with_ports(node);
    /// // Compiled while the workers run; only the swap happens while they are parked.
    /// let tables = routes.prepare(fib);
    /// match running.change_ports(&new, &devs, || routes.install(fib, tables).map_err(|e| e.to_string())) {
    ///     Ok((generation, report)) => println!("generation {generation}, parked {:?}", report.parked),
    ///     Err(ChangeError::NeedsPause(why)) => println!("pause and resume instead: {why}"),
    ///     Err(ChangeError::Refused(why)) => return Err(why),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn change_ports<T>(
        &mut self,
        router: &Router,
        devs: &[String],
        parked: impl FnOnce() -> Result<T, String>,
    ) -> Result<(T, dataplane::ChangeReport), ChangeError> {
        let Running { set, kept, .. } = self;
        let set = set.as_ref().ok_or(ChangeError::Refused("not running".into()))?;
        let progs = router
            .attach(devs, kept.mode, &kept.progs)
            .map_err(ChangeError::Refused)?;
        for p in progs.iter().flatten() {
            if !kept.progs.iter().any(|q| Arc::ptr_eq(q, p)) {
                kept.progs.push(p.clone());
            }
        }
        let result = kept.change_live(set, router, devs, &progs, parked);
        // Programs stay on the devices now in use only.
        let (node, in_use) = &kept.ports;
        let used = |p: &Arc<XdpProgram>| {
            in_use
                .iter()
                .zip(&node.ports)
                .any(|(d, pc)| d == p.ifname() && !matches!(pc.role, PortRole::Host { .. }))
        };
        kept.progs.retain(used);
        result
    }
}

impl Paused {
    /// [`Running::change_ports`] once the programs are attached.
    fn change_live<T>(
        &mut self,
        set: &WorkerSet,
        router: &Router,
        devs: &[String],
        progs: &[Option<Arc<XdpProgram>>],
        parked: impl FnOnce() -> Result<T, String>,
    ) -> Result<(T, dataplane::ChangeReport), ChangeError> {
        let umems = self
            .umems
            .lock()
            .map_err(|_| ChangeError::Refused("UMEM list poisoned".into()))?;
        if let Some(small) = umems
            .iter()
            .flatten()
            .find(|u| !fits(u.config().frame_count, devs.len()))
        {
            return Err(ChangeError::NeedsPause(format!(
                "{} ports need more than the {} frames of a worker's UMEM",
                devs.len(),
                small.config().frame_count
            )));
        }
        drop(umems);
        let new = router.tables.node.clone();
        // A port whose device stays keeps its socket, whatever else of it changed; its
        // learned neighbours stay only if nothing did.
        let old_of = old_indices((&self.ports.0, &self.ports.1), (&new, devs), same_kind);
        let neighbors_of = old_indices((&self.ports.0, &self.ports.1), (&new, devs), PartialEq::eq);
        let mut changes = Vec::new();
        for queue in 0..self.cpus.len() {
            let handler = Pipeline::new(router.tables.clone()).ok_or(ChangeError::Refused(
                "the flow table has no reader slot left for the new pipelines".into(),
            ))?;
            let open = (0..new.ports.len())
                .filter(|&j| old_of[j].is_none())
                .map(|j| opener(progs[j].clone(), devs[j].clone(), queue as u32))
                .collect();
            changes.push(dataplane::PortChange {
                old_of: old_of.clone(),
                open,
                handler: Box::new(handler),
            });
        }
        let result = set
            .change_ports(changes, || {
                let t = parked()?;
                renumber_neighbors(router, &neighbors_of, self.ports.0.ports.len());
                Ok(t)
            })
            .map_err(ChangeError::Refused)?;
        self.ports = (new, devs.to_vec());
        Ok(result)
    }
}

impl Running {
    /// Stops the workers but keeps XDP attached, so that they can start again on other
    /// ports ([`Paused::resume`]): how ports are added and removed while the tables,
    /// flows included, carry on. Meanwhile the program finds no socket and passes packets
    /// to the kernel's stack. The reports include the frame accounting check.
    pub fn pause(mut self) -> (Paused, Vec<WorkerReport>) {
        let Some(set) = self.set.take() else {
            return (self.take_kept(), Vec::new());
        };
        let counters = set.counters();
        let reports = set.stop();
        let mut paused = self.take_kept();
        paused.counters = counters;
        (paused, reports)
    }

    fn take_kept(&mut self) -> Paused {
        Paused {
            progs: std::mem::take(&mut self.kept.progs),
            ports: std::mem::take(&mut self.kept.ports),
            counters: std::mem::take(&mut self.kept.counters),
            cpus: std::mem::take(&mut self.kept.cpus),
            mode: self.kept.mode,
            umems: self.kept.umems.clone(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.set.take() {
            s.stop();
        }
    }
}

/// A thread that frees, once a second, the routing and policy tables publishes replaced
/// and the workers have let go of (`Fib::reap`, `PolicyStore::reap`): never a worker,
/// between two bursts. Stopped and joined when dropped.
struct Reaper {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Reaper {
    fn start(tables: &Tables) -> Self {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let tables = tables.clone();
        let thread = std::thread::Builder::new()
            .name("vrouter-reaper".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(Duration::from_secs(1))
                {
                    tables.fib.reap();
                    tables.policy.reap();
                }
            })
            .ok();
        Reaper {
            stop: Some(stop),
            thread,
        }
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Why [`Running::change_ports`] changed nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeError {
    /// The change needs the workers paused ([`Running::pause`], [`Paused::resume`]): says
    /// why. Nothing was published.
    NeedsPause(String),
    /// Refused, with the reason; the old ports run on.
    Refused(String),
}

impl std::fmt::Display for ChangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChangeError::NeedsPause(why) => write!(f, "needs the workers paused: {why}"),
            ChangeError::Refused(why) => f.write_str(why),
        }
    }
}

/// Whether a worker's UMEM of `frames` frames serves `ports` ports: each port's fill ring
/// then gets at least 256 (half the frames are shared among the fill rings), or the UMEM
/// is as big as UMEMs get.
fn fits(frames: u32, ports: usize) -> bool {
    frames as usize >= (ports * 512).min(MAX_UMEM_FRAMES as usize)
}

/// Makes a port a live change adds, on the worker's thread: an AF_XDP socket on queue
/// `queue` of the device `prog` is attached to, sharing the worker's UMEM; or, for a
/// host port (`prog` is `None`), the TAP device `dev`. A queue still held (a port on the
/// same device removed a moment ago) is not waited for: the worker forwards on and asks
/// again.
fn opener(prog: Option<Arc<XdpProgram>>, dev: String, queue: u32) -> dataplane::PortOpener {
    Box::new(move |w: &Worker| -> Result<Box<dyn Port>, OpenError> {
        Ok(match &prog {
            Some(prog) => {
                let cfg = SocketConfig {
                    queue_wait: Duration::ZERO,
                    ..SocketConfig::default()
                };
                Box::new(AfXdpPort::open(w.pool(), prog, queue, cfg, w.first_af_xdp())?)
            }
            None => Box::new(TapPort::open(&dev).map_err(|e| format!("TAP {dev}: {e}"))?),
        })
    })
}

/// For each of the `new` ports (configurations and devices), the index of the same port
/// among the `old` ones, if it was there: the same device, and configurations that are
/// `same`.
fn old_indices(
    (old, old_devs): (&NodeConfig, &[String]),
    (new, devs): (&NodeConfig, &[String]),
    same: impl Fn(&PortConfig, &PortConfig) -> bool,
) -> Vec<Option<u16>> {
    let mut taken = vec![false; old.ports.len()];
    (0..new.ports.len())
        .map(|j| {
            let i = (0..old.ports.len())
                .find(|&i| !taken[i] && old_devs[i] == devs[j] && same(&old.ports[i], &new.ports[j]))?;
            taken[i] = true;
            Some(i as u16)
        })
        .collect()
}

/// Whether two port configurations can share a socket: both host ports (a TAP) or
/// neither (AF_XDP). The rest of a configuration (addresses, MAC, role) is the
/// pipeline's, which is made anew at a change.
fn same_kind(a: &PortConfig, b: &PortConfig) -> bool {
    matches!(a.role, PortRole::Host { .. }) == matches!(b.role, PortRole::Host { .. })
}

/// Moves learned neighbours to their port's new number (`old_of` as from [`old_indices`],
/// for `old_ports` ports before); those of ports gone are forgotten, those numbered past
/// the old ports (the overlay's) stay.
fn renumber_neighbors(router: &Router, old_of: &[Option<u16>], old_ports: usize) {
    router.tables.neighbors.renumber(
        |port| match old_of.iter().position(|&o| o.map(u32::from) == Some(port)) {
            Some(j) => Some(j as u32),
            None if port as usize >= old_ports => Some(port),
            None => None,
        },
    );
}

/// Workers stopped by [`Running::pause`], XDP still attached to their devices.
pub struct Paused {
    progs: Vec<Arc<XdpProgram>>,
    /// The ports the workers ran on, and their devices.
    ports: (Arc<NodeConfig>, Vec<String>),
    counters: Vec<dataplane::SharedCounters>,
    cpus: Vec<usize>,
    mode: AttachMode,
    /// Each worker's UMEM, reused by the next worker on its CPU: a fresh one costs tens
    /// of milliseconds of page faults, a resume waits for none.
    umems: Umems,
}

/// The UMEM of each worker, by worker index.
type Umems = Arc<std::sync::Mutex<Vec<Option<Arc<Umem>>>>>;

/// Frames in each worker's UMEM for `ports` ports: 2,048 per port (half of a port's
/// share goes on its fill ring) up to 16 ports; past that the ports share
/// [`MAX_UMEM_FRAMES`] (128 MiB).
fn frames_for(ports: usize) -> u32 {
    let want = (ports.min(MAX_UMEM_FRAMES as usize) as u32 * 2048).next_power_of_two();
    want.clamp(4096, MAX_UMEM_FRAMES)
}

/// The most frames a worker's UMEM gets: 128 MiB of 4 KiB frames. A node with a hundred
/// pods would otherwise lock up a gigabyte per worker; its ports then get 163 fill-ring
/// frames each, plenty at one pod's rate.
const MAX_UMEM_FRAMES: u32 = 32768;

/// Worker `i`'s UMEM from `umems` if it has `frames` frames or more, else a new one,
/// left there for the next.
fn umem_for(umems: &Umems, i: usize, frames: u32) -> Result<Arc<Umem>, String> {
    let mut kept = umems.lock().map_err(|_| "UMEM list poisoned")?;
    if kept.len() <= i {
        kept.resize(i + 1, None);
    }
    if let Some(u) = kept[i].as_ref().filter(|u| u.config().frame_count >= frames) {
        return Ok(u.clone());
    }
    let u = Arc::new(
        Umem::new(UmemConfig {
            frame_count: frames,
            ..Default::default()
        })
        .map_err(|e| e.to_string())?,
    );
    kept[i] = Some(u.clone());
    Ok(u)
}

impl Paused {
    /// Starts the workers again, on the same CPUs with the same counters, over `router`'s
    /// ports on `devs`: programs stay attached to devices still in use, are attached to new
    /// ones and detached from the others. Learned neighbours follow their port (the same
    /// configuration on the same device) to its new number; those of ports gone are
    /// forgotten. Publish the routes and policy written for the new port numbers first.
    /// On an error nothing already attached is detached, and `self` comes back to resume
    /// the old ports (after publishing their tables again).
    pub fn resume(self, router: &Router, devs: &[String]) -> Result<Running, (Box<Paused>, String)> {
        let progs = match router.attach(devs, self.mode, &self.progs) {
            Ok(p) => p,
            Err(e) => return Err((Box::new(self), e)),
        };
        let new = &router.tables.node;
        let old_of = old_indices((&self.ports.0, &self.ports.1), (new, devs), PartialEq::eq);
        renumber_neighbors(router, &old_of, self.ports.0.ports.len());
        match router.spawn(&progs, devs, &self.cpus, Some(&self.counters), &self.umems) {
            Ok(set) => Ok(Running {
                set: Some(set),
                _reaper: Reaper::start(&router.tables),
                kept: Paused {
                    progs: progs.into_iter().flatten().collect(),
                    ports: (new.clone(), devs.to_vec()),
                    ..self
                },
            }),
            Err(e) => Err((Box::new(self), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_umem_made_for_some_ports_serves_them_live_and_stays_bounded() {
        for ports in 1..=1000 {
            let frames = frames_for(ports);
            assert!(fits(frames, ports), "{ports} ports, {frames} frames");
            assert!((4096..=MAX_UMEM_FRAMES).contains(&frames) && frames.is_power_of_two());
        }
        // Made for two ports: up to eight change live; the ninth needs a pause.
        assert!(fits(frames_for(2), 8) && !fits(frames_for(2), 9));
        // Past the cap nothing grows, so nothing pauses either.
        assert!(fits(MAX_UMEM_FRAMES, 5000));
    }

    /// A table a publish replaced, let go of by its last reader (a worker), is freed by
    /// the reaper thread within a second or so, and the reaper stops when dropped.
    #[test]
    fn the_reaper_frees_what_the_workers_let_go_of() {
        let fib = Arc::new(fib::Fib::new());
        let router = Router::new(NodeConfig::default(), fib.clone(), 1024).unwrap();
        let reaper = Reaper::start(router.tables());
        let held = fib.snapshot();
        let weak = Arc::downgrade(&held);
        let mut b = fib::FibBuilder::new();
        b.add_vrf(1).unwrap();
        b.publish(&fib).unwrap();
        drop(held);
        assert!(weak.upgrade().is_some(), "not freed by its last reader");
        let deadline = Instant::now() + Duration::from_secs(5);
        while weak.upgrade().is_some() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(weak.upgrade().is_none(), "freed by the reaper");
        let began = Instant::now();
        drop(reaper);
        assert!(began.elapsed() < Duration::from_millis(500), "stopped at once");
    }
}
