//! `vrouter run` and `vrouter check`: start the router a config file describes, reload it
//! on SIGHUP (ports included), stop on SIGINT / SIGTERM.

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vrouter::dataplane::flowlog::FlowLog;
use vrouter::policy::{EndpointId, RuleId};
use vrouter::{ChangeError, Paused, Router, Running, af_xdp::AttachMode, fib::Fib};

use crate::{ctl, metrics};
use vrouter_cli::config::{self, Config, Listing};
use vrouter_cli::dynamic::Routing;
use vrouter_cli::kernel_routes::{self, KernelRoutes, PortDevice};

/// Blocks the stop and reload signals in this thread (and the threads it starts), so
/// `sigwait` receives them.
fn block_signals() -> libc::sigset_t {
    // SAFETY: a zeroed sigset_t is a valid argument to sigemptyset, which initialises it.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a live sigset_t; the signal numbers are valid; pthread_sigmask
    // only changes this thread's mask.
    unsafe {
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    set
}

/// The running router and what it was started or last reloaded from.
struct Live {
    path: String,
    /// The text of the configuration running, to go back to when new ports fail to start.
    text: String,
    /// The running configuration; its routes are in `routing`.
    cfg: Config,
    fib: Arc<Fib>,
    /// The file's routes and the control socket's, shared with its thread.
    routing: Arc<Mutex<Routing>>,
    router: Router,
    running: Option<Running>,
    listing: Arc<Mutex<Listing>>,
    ports: Arc<Mutex<ctl::Ports>>,
    /// The kernel tables followed, and their followers.
    kernel: Vec<(KernelRoutes, kernel_routes::Handle)>,
    /// The followers' states, for `show kernel-routes`.
    kernel_slot: ctl::KernelRoutesSlot,
}

/// The file at `path`, its text and what it configures, with the warnings about it.
fn read(path: &str) -> Result<(String, Config, Vec<String>), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let (cfg, warnings) = parse(path, &text)?;
    Ok((text, cfg, warnings))
}

/// [`config::parse`], each port without an `mtu` given its device's.
fn parse(path: &str, text: &str) -> Result<(Config, Vec<String>), String> {
    let mut cfg = config::parse(path, text)?;
    let warnings = cfg.take_device_mtus(device_mtu);
    Ok((cfg, warnings))
}

/// The MTU of network device `dev`, if there is one by that name.
fn device_mtu(dev: &str) -> Option<u16> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{dev}/mtu")).ok()?;
    text.trim().parse().ok()
}

pub(crate) fn run(path: &str, check_only: bool, socket: &str) -> ExitCode {
    let (text, mut cfg, warnings) = match read(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if check_only {
        for w in &warnings {
            eprintln!("{path}: {w}");
        }
        println!("{path}: ok ({} ports)", cfg.node.ports.len());
        return ExitCode::SUCCESS;
    }
    // Structured logs (key=value) on stderr; stdout keeps one plain status line per event.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .try_init();
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let set = block_signals();
    let fib = Arc::new(Fib::new());
    fib.set_max_spares(cfg.spare_tables.unwrap_or(usize::MAX));
    if let Err(e) = cfg.routes.publish(&fib) {
        eprintln!("{path}: {e}");
        return ExitCode::FAILURE;
    }
    let router = match Router::with_flow_table(cfg.node.clone(), fib.clone(), cfg.flows.clone()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = router.tables().policy.publish(&cfg.policy) {
        eprintln!("{path}: policy: {e}");
        return ExitCode::FAILURE;
    }
    let running = match router.start_af_xdp(&cfg.devices, &cfg.cpus, AttachMode::Auto) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "start failed");
            eprintln!("starting: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listing = Arc::new(Mutex::new(cfg.listing.clone()));
    let routing = Routing::new(std::mem::take(&mut cfg.routes), cfg.port_names());
    let route_counters = routing.counters();
    let routing = Arc::new(Mutex::new(routing));
    let ports = Arc::new(Mutex::new(ctl::Ports {
        node: cfg.node.clone(),
        devices: cfg.devices.clone(),
        changes: Default::default(),
    }));
    let kernel_slot = ctl::KernelRoutesSlot::default();
    let mut kernel = Vec::new();
    for k in cfg.kernel_routes.clone() {
        match kernel_routes::spawn(k.clone(), cfg.port_devices(), routing.clone(), fib.clone()) {
            Ok(h) => {
                let (followed, skipped) = h.state.lock().map(|f| f.counts()).unwrap_or_default();
                tracing::info!(table = k.table, vrf = k.vrf, followed, skipped, "kernel routes read");
                kernel.push((k, h));
            }
            Err(e) => {
                eprintln!("{path}: kernel_routes table {}: {e}", k.table);
                return ExitCode::FAILURE;
            }
        }
    }
    if let Ok(mut slot) = kernel_slot.lock() {
        *slot = kernel.iter().map(|(_, h)| h.state.clone()).collect();
    }
    let state = ctl::State {
        ports: ports.clone(),
        tables: router.tables().clone(),
        counters: running.counters(),
        listing: listing.clone(),
        route_counters: route_counters.clone(),
        routing: routing.clone(),
        kernel_routes: kernel_slot.clone(),
    };
    if let Err(e) = ctl::serve(socket, state) {
        eprintln!("control socket {socket}: {e}");
        return ExitCode::FAILURE;
    }
    if let Some(addr) = cfg.metrics
        && let Err(e) = metrics::serve(
            addr,
            router.tables().clone(),
            running.counters(),
            ports.clone(),
            route_counters,
            kernel_slot.clone(),
        )
    {
        eprintln!("metrics on {addr}: {e}");
        return ExitCode::FAILURE;
    }
    let flow_log = (router.tables().flow_log.clone(), ports.clone(), listing.clone());
    spawn_flow_logger(flow_log.clone());
    tracing::info!(ports = cfg.devices.len(), workers = running.stats().len(), socket, metrics = ?cfg.metrics, "started");
    println!(
        "vrouter running: {} ports, {} workers, control socket {socket}",
        cfg.devices.len(),
        running.stats().len()
    );
    let mut live = Live {
        path: path.to_string(),
        text,
        cfg,
        fib,
        routing,
        router,
        running: Some(running),
        listing,
        ports,
        kernel,
        kernel_slot,
    };
    loop {
        let mut sig: libc::c_int = 0;
        // SAFETY: `set` holds the blocked signals; `sig` is a live int.
        if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
            continue;
        }
        if sig != libc::SIGHUP {
            break;
        }
        match live.reload() {
            Ok(line) => println!("{line}"),
            Err(e) => tracing::warn!(error = %e, "reload refused, still running the old configuration"),
        }
        if live.running.is_none() {
            eprintln!("the workers could not start again on either configuration: stopping");
            let _ = std::fs::remove_file(socket);
            return ExitCode::FAILURE;
        }
    }
    let reports = live.running.take().map(Running::stop).unwrap_or_default();
    // What the workers logged since the logger's last pass.
    write_flow_log(&flow_log);
    check_frames(&reports);
    let stats = vrouter::Stats::sum(reports.iter().map(|r| &r.stats));
    tracing::info!(
        rx = stats.rx,
        tx = stats.tx,
        dropped = stats.dropped(),
        "stopped; XDP detached"
    );
    println!(
        "stopped: rx {} tx {} dropped {}; XDP detached",
        stats.rx,
        stats.tx,
        stats.dropped()
    );
    let _ = std::fs::remove_file(socket);
    ExitCode::SUCCESS
}

/// How often the flow log is written out.
const FLOW_LOG_EVERY: Duration = Duration::from_millis(100);

/// The flow log and what names its records: the ports, and the config's rule origins.
type FlowLogged = (Arc<FlowLog>, Arc<Mutex<ctl::Ports>>, Arc<Mutex<Listing>>);

/// Writes out the flows that rules with a logging action decided (`allow-log`,
/// `deny-log`) every [`FLOW_LOG_EVERY`], and warns when a full flow log lost records; on
/// a thread of its own, for the life of the process.
fn spawn_flow_logger(logged: FlowLogged) {
    let each = move || {
        let mut lost = 0;
        loop {
            std::thread::sleep(FLOW_LOG_EVERY);
            let now = logged.0.lost();
            if now > lost {
                tracing::warn!(lost = now - lost, "the flow log was full: records lost");
                lost = now;
            }
            write_flow_log(&logged);
        }
    };
    if let Err(e) = std::thread::Builder::new().name("vrouter-flowlog".into()).spawn(each) {
        tracing::warn!(error = %e, "no flow log thread: rules' log actions write nothing");
    }
}

/// Writes the flow log's records, a `flow` line each with the workload ports by name and
/// NetworkPolicy rules by origin.
fn write_flow_log((log, ports, listing): &FlowLogged) {
    if log.is_empty() {
        return;
    }
    let names: Vec<String> = ports
        .lock()
        .map(|p| p.node.ports.iter().map(|p| p.name.clone()).collect())
        .unwrap_or_default();
    let name = |ep: EndpointId| {
        names
            .get(ep.0 as usize)
            .cloned()
            .unwrap_or_else(|| format!("endpoint {}", ep.0))
    };
    let origins = listing.lock().map(|l| l.rule_origins.clone()).unwrap_or_default();
    let rule = |r: RuleId| ctl::rule_name(r.0, &origins);
    while let Some(r) = log.pop() {
        tracing::info!(at = r.at, "flow {}", r.describe(name, rule));
    }
}

fn check_frames(reports: &[vrouter::WorkerReport]) {
    for (i, r) in reports.iter().enumerate() {
        if let Err(e) = &r.frames_ok {
            tracing::error!(worker = i, error = %e, "frame accounting");
        }
    }
}

impl Live {
    /// Re-reads the file and applies it: routes, nexthops, labels, VNIs, neighbours,
    /// policy and the live flow options at once. Ports are added and removed while the
    /// workers run; only when the UMEMs must grow do the workers pause around the change. Returns the status line, or why nothing changed.
    fn reload(&mut self) -> Result<String, String> {
        let (text, new, warnings) = read(&self.path)?;
        for w in &warnings {
            tracing::warn!("{w}");
        }
        let kernel = (new.kernel_routes.clone(), new.port_devices());
        let line = self.reload_routing(text, new)?;
        // After the routing state's lock is let go: the follower takes it to apply.
        Ok(match self.follow(kernel) {
            Ok(()) => line,
            Err(e) => format!("{line}; but {e}"),
        })
    }

    /// Tells the kernel routes followers of a reload: those of tables the file no longer
    /// follows as before stop first (withdrawing what they installed: a VRF a table
    /// leaves is free before another takes it), the others are told the ports, and the
    /// new ones start.
    fn follow(&mut self, (tables, ports): (Vec<KernelRoutes>, Vec<PortDevice>)) -> Result<(), String> {
        let (kept, gone): (Vec<_>, Vec<_>) = std::mem::take(&mut self.kernel)
            .into_iter()
            .partition(|(k, _)| tables.contains(k));
        drop(gone);
        for (_, h) in &kept {
            h.set_ports(ports.clone());
        }
        self.kernel = kept;
        let mut failed = Vec::new();
        for k in tables {
            if self.kernel.iter().any(|(o, _)| *o == k) {
                continue;
            }
            match kernel_routes::spawn(k.clone(), ports.clone(), self.routing.clone(), self.fib.clone()) {
                Ok(h) => self.kernel.push((k, h)),
                Err(e) => failed.push(format!("kernel_routes table {}: {e}", k.table)),
            }
        }
        if let Ok(mut slot) = self.kernel_slot.lock() {
            *slot = self.kernel.iter().map(|(_, h)| h.state.clone()).collect();
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(failed.join("; "))
        }
    }

    /// [`Live::reload`] of the file read as `text`, `new`, up to the kernel routes.
    fn reload_routing(&mut self, text: String, new: Config) -> Result<String, String> {
        // Held for the whole reload: a `route` command waits for it.
        let routing = self.routing.clone();
        let mut routing = routing.lock().map_err(|_| "the routing state is poisoned")?;
        let saved = routing.saved();
        let reloaded = self.apply(&mut routing, text, new);
        if reloaded.is_err() {
            // The builder is what the next `route` command publishes: back to the running
            // file's routes and the dynamic routes as they were, and published so (a port
            // change undone may have published the old file without the dynamic routes the
            // new one dropped; otherwise this publishes what runs).
            routing.restore(saved);
            if let Ok((mut old, _)) = parse(&self.path, &self.text) {
                routing.take_file(std::mem::take(&mut old.routes), old.port_names());
                if let Err(e) = routing.builder.publish(&self.fib) {
                    tracing::error!(error = %e, "the running routes could not be published again");
                }
            }
        }
        reloaded
    }

    /// [`Live::reload`] of `new` (read from `text`), with the routing state locked.
    fn apply(&mut self, r: &mut Routing, text: String, mut new: Config) -> Result<String, String> {
        let ports_changed = new.node != self.cfg.node || new.devices != self.cfg.devices;
        if !ports_changed {
            let (g, notes) = self.publish(r, &mut new)?;
            self.text = text;
            tracing::info!(generation = g, "reloaded");
            return Ok(format!(
                "reloaded {}: routing generation {g}; established flows re-decided on their next packet{}",
                self.path,
                notes.iter().map(|n| format!("; {n}")).collect::<String>()
            ));
        }
        let router = self.router.with_ports(new.node.clone());
        let mut running = self.running.take().ok_or("the workers are not running")?;
        let devices = new.devices.clone();
        // Compiled while the workers run: only the swap happens while they are parked.
        let dropped = r.take_file(std::mem::take(&mut new.routes), new.port_names());
        let staged = self.restage(r, &new, dropped.clone());
        let live = running.change_ports(&router, &devices, || self.install(r, staged, &new));
        self.running = Some(running);
        let why_pause = match live {
            Ok(((g, notes), report)) => {
                let parked_ms = report.parked.as_secs_f64() * 1e3;
                let opening_ms = report.opening.as_secs_f64() * 1e3;
                let ports = self.adopt(router, new, text, Still::Parked(report.parked));
                tracing::info!(
                    generation = g,
                    %ports,
                    opening_ms,
                    parked_ms,
                    given_up = report.given_up,
                    "reloaded"
                );
                return Ok(format!(
                    "reloaded {}: routing generation {g}; {ports} while the workers ran (opening {opening_ms:.1} ms, parked {parked_ms:.1} ms); established flows re-decided on their next packet{}",
                    self.path,
                    notes.iter().map(|n| format!("; {n}")).collect::<String>()
                ));
            }
            // The builder keeps the routes staged and marked changed: a later publish
            // compiles them against what runs, whatever came between.
            Err(ChangeError::Refused(e)) => return Err(format!("the new ports: {e}")),
            Err(ChangeError::NeedsPause(why)) => why,
        };
        tracing::info!(why = %why_pause, "the port change pauses the workers");
        // Programs for the new devices are attached while the workers still run: a
        // missing device is refused before anything pauses, and the pause is shorter.
        let running = self.running.as_mut().ok_or("the workers are not running")?;
        running
            .attach_ahead(&router, &new.devices)
            .map_err(|e| format!("the new ports: {e}"))?;
        let staged = self.restage(r, &new, dropped);
        let began = Instant::now();
        let running = self.running.take().ok_or("the workers are not running")?;
        let (paused, reports) = running.pause();
        check_frames(&reports);
        let published = self.install(r, staged, &new);
        let (g, notes) = match published {
            Ok(p) => p,
            Err(e) => {
                // Nothing was published: the old ports go on with the old tables.
                self.resume_old(paused)?;
                return Err(e);
            }
        };
        match paused.resume(&router, &new.devices) {
            Ok(running) => {
                let paused = began.elapsed();
                let pause_ms = paused.as_secs_f64() * 1e3;
                self.running = Some(running);
                let ports = self.adopt(router, new, text, Still::Paused(paused));
                tracing::info!(generation = g, %ports, pause_ms, "reloaded");
                Ok(format!(
                    "reloaded {}: routing generation {g}; {ports}, workers paused {pause_ms:.1} ms ({why_pause}); established flows re-decided on their next packet{}",
                    self.path,
                    notes.iter().map(|n| format!("; {n}")).collect::<String>()
                ))
            }
            Err((paused, e)) => {
                // Back to the file as it was: its routes and policy for the old numbers
                // (the dynamic routes the new file dropped come back after: `reload`).
                let (mut old, _) = parse(&self.path, &self.text)?;
                self.publish(r, &mut old)?;
                self.resume_old(*paused)?;
                Err(format!("the new ports did not start ({e}); the old ports run again"))
            }
        }
    }

    /// Makes `new`'s ports (run by `router`) and `text` the running configuration, after
    /// a change that stood the workers `still`. Returns what changed.
    fn adopt(&mut self, router: Router, new: Config, text: String, still: Still) -> PortChanges {
        let changes = PortChanges::between(&self.cfg, &new);
        self.show(new.listing);
        self.router = router;
        if let Ok(mut p) = self.ports.lock() {
            p.node = new.node.clone();
            p.devices = new.devices.clone();
            let c = &mut p.changes;
            match still {
                Still::Parked(d) => (c.live, c.last_stand_still) = (c.live + 1, d),
                Still::Paused(d) => (c.paused, c.last_stand_still) = (c.paused + 1, d),
            }
        }
        self.cfg.node = new.node;
        self.cfg.devices = new.devices;
        self.text = text;
        changes
    }

    /// Publishes `new`'s routes (compiling only what changed), policy and live flow
    /// options. Returns the routing generation and notes on what needs a restart.
    fn publish(&mut self, r: &mut Routing, new: &mut Config) -> Result<(u32, Vec<String>), String> {
        let staged = self.stage(r, new);
        let installed = self.install(r, staged, new)?;
        self.show(std::mem::take(&mut new.listing));
        Ok(installed)
    }

    /// What `show vrfs|routes|nexthops|neighbors|labels|vnis` lists from now on.
    fn show(&self, listing: Listing) {
        if let Ok(mut l) = self.listing.lock() {
            *l = listing;
        }
    }

    /// Takes `new`'s routes into the builder (with the dynamic routes it leaves room
    /// for), and compiles them and `new`'s policy ([`Live::restage`]).
    fn stage(&mut self, r: &mut Routing, new: &mut Config) -> Staged {
        let dropped = r.take_file(std::mem::take(&mut new.routes), new.port_names());
        self.restage(r, new, dropped)
    }

    /// Compiles the builder's routes (only what changed) and `new`'s policy, for
    /// [`Live::install`]; nothing is visible yet. A policy that does not compile is warned
    /// about, and the old one stays. `notes` go to the reload's status line.
    fn restage(&self, r: &Routing, new: &Config, notes: Vec<String>) -> Staged {
        let policy = match self.router.tables().policy.prepare(&new.policy) {
            Ok((p, _)) => Some(p),
            Err(e) => {
                tracing::warn!(error = %e, "reload: policy refused, the old policy stays");
                None
            }
        };
        Staged {
            fib: r.builder.prepare(&self.fib),
            policy,
            notes,
        }
    }

    /// Swaps in what was staged, with `new`'s live flow options: quick whatever the
    /// tables' size, for the workers may be standing still meanwhile (the listing for
    /// `show` follows after: [`Live::show`]; a copy of 100,000 routes' took 7-8 ms).
    fn install(&mut self, r: &mut Routing, staged: Staged, new: &Config) -> Result<(u32, Vec<String>), String> {
        let g = r.builder.install(&self.fib, staged.fib).map_err(|e| e.to_string())?;
        // Applies from the next reap on.
        self.fib.set_max_spares(new.spare_tables.unwrap_or(usize::MAX));
        if let Some(p) = staged.policy {
            self.router.tables().policy.install(p);
        }
        let mut notes = staged.notes;
        notes.extend(config::reload_flows(
            &self.router.tables().flows,
            &self.cfg.flows,
            &new.flows,
        ));
        for note in &notes {
            tracing::warn!("reload: {note}");
        }
        Ok((g, notes))
    }

    fn resume_old(&mut self, paused: Paused) -> Result<(), String> {
        match paused.resume(&self.router, &self.cfg.devices) {
            Ok(r) => {
                self.running = Some(r);
                Ok(())
            }
            Err((_, e)) => Err(format!("the old ports did not start again either: {e}")),
        }
    }
}

/// A new configuration's routes and policy, compiled and not yet visible.
struct Staged {
    fib: vrouter::fib::Prepared,
    policy: Option<vrouter::policy::Policy>,
    /// The dynamic routes the new file dropped, and why.
    notes: Vec<String>,
}

/// How long a port change stood the workers still.
enum Still {
    /// Parked between two bursts while they ran on.
    Parked(Duration),
    /// Stopped and started again.
    Paused(Duration),
}

/// Ports by name, told apart by device: added (a device new to the file), removed (a
/// device gone from it) and changed (the same device, another `[[port]]`).
struct PortChanges {
    added: Vec<String>,
    removed: Vec<String>,
    changed: Vec<String>,
}

impl PortChanges {
    fn between(old: &Config, new: &Config) -> Self {
        let on = |c: &Config, dev: &str| -> Option<vrouter::PortConfig> {
            c.devices.iter().position(|d| d == dev).map(|i| c.node.ports[i].clone())
        };
        let names = |c: &Config, keep: &dyn Fn(&vrouter::PortConfig, &str) -> bool| -> Vec<String> {
            c.node
                .ports
                .iter()
                .zip(&c.devices)
                .filter(|(p, d)| keep(p, d))
                .map(|(p, _)| p.name.clone())
                .collect()
        };
        PortChanges {
            added: names(new, &|_, d| on(old, d).is_none()),
            removed: names(old, &|_, d| on(new, d).is_none()),
            changed: names(new, &|p, d| on(old, d).is_some_and(|o| o != *p)),
        }
    }
}

impl std::fmt::Display for PortChanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ports added [{}] removed [{}] changed [{}]",
            self.added.join(", "),
            self.removed.join(", "),
            self.changed.join(", ")
        )
    }
}
