//! A kernel routing table followed into a VRF (`[[kernel_routes]]`): what a route daemon
//! (BIRD, FRR's zebra), a CNI or an operator with `ip route` puts into that table becomes
//! a dynamic route of the router, changes with it and leaves with it. This is how the
//! Calico model's route daemons keep programming the kernel, and the router follows.
//!
//! The follower reads the table once whole (an rtnetlink dump of that table alone), then
//! hears every change ([`crate::netlink`]); a link change has it read the table whole
//! again, as the kernel flushes the IPv4 routes of a link that goes down without announcing them. For each
//! prefix it takes the route the kernel would use (the lowest metric) and turns it into
//! a port nexthop (out of the router port on that device, to its gateway or on-link), an
//! ECMP group of them (a multipath route, its weights kept), or a discard (blackhole,
//! unreachable, prohibit). It goes through the same checked path as the `route` commands
//! ([`Routing::apply`]): a dump, or a burst of changes, in one line and one publish.
//!
//! Routes through kernel nexthop objects (`ip nexthop`, `nhid`: how FRR installs them)
//! are resolved through the objects, which are followed too: a changed object moves the
//! routes through it.
//!
//! A route the router cannot take is skipped and says why (`show kernel-routes`): its
//! device is no port of the router, or the host's TAP; the config file routes the
//! prefix; it is source- or TOS-specific; its nexthop object is unknown. Ports that come
//! and go with reloads are applied again, so a skipped route is taken once its port
//! exists. Nexthops it defines get ids from [`FIRST_NEXTHOP`] up
//! (skipping ids in use); they are dynamic nexthops like the others.

use std::collections::BTreeMap;
use std::io;
use std::net::IpAddr;
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::NexthopSpec;
use crate::dynamic::{Command, Routing};
use crate::netlink::{self, Dump, Hop, Message, NexthopObject, ObjectVia, Received, Route, RouteSocket, kind};
use vrouter::fib::{Fib, NexthopId, VrfId};

/// A `[[kernel_routes]]` table, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelRoutes {
    /// The kernel table followed (254 is `main`).
    pub table: u32,
    /// The VRF its routes go into.
    pub vrf: VrfId,
    /// The protocols followed (`rtm_protocol`: 4 static, 12 bird, ...); all if empty.
    pub protocols: Vec<u8>,
}

/// Protocol names `[[kernel_routes]] protocols` takes besides numbers
/// (`/etc/iproute2/rt_protos`).
pub const PROTOCOLS: [(&str, u8); 12] = [
    ("redirect", 1),
    ("kernel", 2),
    ("boot", 3),
    ("static", 4),
    ("ra", 9),
    ("zebra", 11),
    ("bird", 12),
    ("dhcp", 16),
    ("babel", 42),
    ("bgp", 186),
    ("isis", 187),
    ("ospf", 188),
];

/// The first nexthop id the follower gives out.
pub const FIRST_NEXTHOP: NexthopId = 1 << 31;

/// A router port as the follower matches routes to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortDevice {
    /// The port's name.
    pub name: String,
    /// Its device.
    pub device: String,
    /// Whether it is the host's TAP (the exception path), which routes may not use.
    pub host: bool,
}

/// Where a followed route goes, in the router's terms.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Via {
    Discard,
    Port { port: String, gateway: Option<IpAddr> },
    Ecmp(Vec<(String, Option<IpAddr>, u32)>),
}

impl Via {
    fn words(&self) -> String {
        let hop = |port: &str, gw: &Option<IpAddr>| match gw {
            Some(g) => format!("out of {port} via {g}"),
            None => format!("out of {port}"),
        };
        match self {
            Via::Discard => "discard".into(),
            Via::Port { port, gateway } => hop(port, gateway),
            Via::Ecmp(m) => m
                .iter()
                .map(|(p, g, w)| format!("{} weight {w}", hop(p, g)))
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

/// A destination prefix: its address and length.
pub type Prefix = (IpAddr, u8);

/// A change to undo when a line is refused.
enum Undo {
    Installed(Prefix, Option<Via>),
    Nexthop(Via, Option<(NexthopId, usize)>),
}

/// The follower's state: the kernel's routes for the table, what of them is installed,
/// and the nexthops installed for them.
pub struct Follower {
    cfg: KernelRoutes,
    ports: Vec<PortDevice>,
    /// The table's routes, by prefix, then metric.
    kernel: BTreeMap<Prefix, BTreeMap<u32, Route>>,
    /// The kernel's nexthop objects, by id.
    objects: BTreeMap<u32, ObjectVia>,
    /// What is installed per prefix.
    installed: BTreeMap<Prefix, Via>,
    /// Nexthops installed: their ids and how many routes and groups use them.
    nexthops: BTreeMap<Via, (NexthopId, usize)>,
    /// Why a prefix the kernel has is not installed.
    skipped: BTreeMap<Prefix, String>,
    next_id: NexthopId,
    undo: Vec<Undo>,
}

fn prefix_words((ip, len): Prefix) -> String {
    format!("{ip}/{len}")
}

impl Follower {
    /// Follows `cfg` with `ports`; nothing is read or installed yet.
    pub fn new(cfg: KernelRoutes, ports: Vec<PortDevice>) -> Self {
        Follower {
            cfg,
            ports,
            kernel: BTreeMap::new(),
            objects: BTreeMap::new(),
            installed: BTreeMap::new(),
            nexthops: BTreeMap::new(),
            skipped: BTreeMap::new(),
            next_id: FIRST_NEXTHOP,
            undo: Vec::new(),
        }
    }

    /// The kernel table followed, and the VRF it goes into.
    pub fn table_and_vrf(&self) -> (u32, VrfId) {
        (self.cfg.table, self.cfg.vrf)
    }

    /// How many prefixes are installed, and how many skipped.
    pub fn counts(&self) -> (usize, usize) {
        (self.installed.len(), self.skipped.len())
    }

    /// Takes a route message into the kernel's view; returns its prefix if it concerns the
    /// followed table (a route it cannot use is kept too, to say why it is skipped).
    pub fn note(&mut self, r: Route) -> Option<Prefix> {
        let followed = r.table == self.cfg.table
            && (self.cfg.protocols.is_empty() || self.cfg.protocols.contains(&r.protocol))
            && r.flags & netlink::RTM_F_CLONED == 0
            && matches!(
                r.kind,
                kind::UNICAST | kind::BLACKHOLE | kind::UNREACHABLE | kind::PROHIBIT
            )
            && !matches!(r.dst, IpAddr::V6(a) if a.is_unicast_link_local() || a.is_multicast());
        if !followed {
            return None;
        }
        let key = (r.dst, r.len);
        let by_metric = self.kernel.entry(key).or_default();
        if r.deleted {
            // IPv6 keeps the hops of a multipath route apart: deleting one (`ip -6 route
            // del P via G`) announces that hop alone, and the others stay.
            let stays = by_metric.get_mut(&r.metric).is_some_and(|kept| {
                let one_of_more = r.dst.is_ipv6()
                    && r.nexthop_object.is_none()
                    && kept.nexthop_object.is_none()
                    && !r.hops.is_empty()
                    && kept.hops.len() > r.hops.len();
                one_of_more && {
                    kept.hops
                        .retain(|h| !r.hops.iter().any(|d| d.ifindex == h.ifindex && d.gateway == h.gateway));
                    !kept.hops.is_empty()
                }
            });
            if !stays {
                by_metric.remove(&r.metric);
            }
            if by_metric.is_empty() {
                self.kernel.remove(&key);
            }
        } else {
            by_metric.insert(r.metric, r);
        }
        Some(key)
    }

    /// Takes a nexthop object message into the kernel's view; returns the prefixes whose
    /// route uses the object, directly or in a group, to apply again.
    pub fn note_object(&mut self, o: NexthopObject) -> Vec<Prefix> {
        let id = o.id;
        if o.deleted {
            self.objects.remove(&id);
        } else {
            self.objects.insert(id, o.via);
        }
        let mut users = vec![id];
        users.extend(
            self.objects
                .iter()
                .filter(|(_, v)| matches!(v, ObjectVia::Group(m) if m.iter().any(|x| x.0 == id)))
                .map(|(&g, _)| g),
        );
        self.kernel
            .iter()
            .filter(|(_, m)| {
                m.values()
                    .next()
                    .and_then(|r| r.nexthop_object)
                    .is_some_and(|n| users.contains(&n))
            })
            .map(|(p, _)| *p)
            .collect()
    }

    /// Forgets the kernel's routes and nexthop objects.
    fn forget_kernel(&mut self) {
        self.kernel.clear();
        self.objects.clear();
    }

    /// A follower of the same table that has read nothing, for a dump to read into.
    fn empty_view(&self) -> Follower {
        Follower::new(self.cfg.clone(), Vec::new())
    }

    /// Takes the kernel's routes and nexthop objects as `dumped` read them, whole.
    fn take_view(&mut self, dumped: Follower) {
        self.kernel = dumped.kernel;
        self.objects = dumped.objects;
    }

    /// Where the kernel's route for `p` goes, in the router's terms: `Ok(None)` if the
    /// kernel has none, `Err` why the router cannot take it.
    fn wanted(&self, p: &Prefix, dev_of: &dyn Fn(u32) -> Option<String>) -> Result<Option<Via>, String> {
        let Some(r) = self.kernel.get(p).and_then(|m| m.values().next()) else {
            return Ok(None);
        };
        if r.src_len > 0 {
            return Err("source-specific (`from`): not followed".into());
        }
        if r.tos != 0 {
            return Err(format!("TOS-specific (tos {:#x}): not followed", r.tos));
        }
        if r.kind != kind::UNICAST {
            return Ok(Some(Via::Discard));
        }
        let hops = match r.nexthop_object {
            None => r.hops.clone(),
            Some(id) => match self.object_hops(id)? {
                Some(hops) => hops,
                None => return Ok(Some(Via::Discard)),
            },
        };
        self.via(&hops, dev_of).map(Some)
    }

    /// The hops of kernel nexthop object `id` (`None`: a blackhole).
    fn object_hops(&self, id: u32) -> Result<Option<Vec<Hop>>, String> {
        let unknown = |id| format!("kernel nexthop object {id} is not known");
        match self.objects.get(&id).ok_or_else(|| unknown(id))? {
            ObjectVia::Blackhole => Ok(None),
            ObjectVia::Hop(h) => Ok(Some(vec![h.clone()])),
            ObjectVia::Group(members) => members
                .iter()
                .map(|&(m, weight)| match self.objects.get(&m) {
                    Some(ObjectVia::Hop(h)) => Ok(Hop { weight, ..h.clone() }),
                    Some(_) => Err(format!("kernel nexthop group {id} holds {m}, which is no single hop")),
                    None => Err(unknown(m)),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
        }
    }

    /// Where `hops` go from the router.
    fn via(&self, hops: &[Hop], dev_of: &dyn Fn(u32) -> Option<String>) -> Result<Via, String> {
        let live: Vec<&Hop> = hops
            .iter()
            .filter(|h| h.flags & (netlink::RTNH_F_DEAD | netlink::RTNH_F_LINKDOWN) == 0)
            .collect();
        if live.is_empty() {
            return Err(if hops.is_empty() {
                "no next hop"
            } else {
                "every next hop is down"
            }
            .into());
        }
        let mut members: BTreeMap<(String, Option<IpAddr>), u32> = BTreeMap::new();
        // A gateway may be of the other family (an IPv4 route via an IPv6 next hop, RFC
        // 8950: BGP unnumbered); forwarding resolves it by its own family.
        for h in live {
            let dev = dev_of(h.ifindex).ok_or_else(|| format!("interface {} is gone", h.ifindex))?;
            let port = match self.ports.iter().find(|p| p.device == dev) {
                Some(p) if p.host => return Err(format!("`{dev}` is the host's TAP: the host's own route")),
                Some(p) => p.name.clone(),
                None => return Err(format!("`{dev}` is not a port of the router")),
            };
            *members.entry((port, h.gateway)).or_default() += h.weight;
        }
        Ok(if members.len() == 1 {
            let ((port, gateway), _) = members.into_iter().next().unwrap_or_default();
            Via::Port { port, gateway }
        } else {
            Via::Ecmp(
                members
                    .into_iter()
                    .map(|((p, g), w)| (p, g, w.min(vrouter::fib::MAX_ECMP_WEIGHT)))
                    .collect(),
            )
        })
    }

    fn set_installed(&mut self, p: Prefix, v: Option<Via>) {
        let old = match v {
            Some(v) => self.installed.insert(p, v),
            None => self.installed.remove(&p),
        };
        self.undo.push(Undo::Installed(p, old));
    }

    fn set_nexthop(&mut self, v: Via, to: Option<(NexthopId, usize)>) {
        let old = match to {
            Some(e) => self.nexthops.insert(v.clone(), e),
            None => self.nexthops.remove(&v),
        };
        self.undo.push(Undo::Nexthop(v, old));
    }

    /// Rolls the state back to where the undo log had `mark` entries.
    fn roll_back(&mut self, mark: usize) {
        while self.undo.len() > mark {
            match self.undo.pop() {
                Some(Undo::Installed(p, Some(v))) => {
                    self.installed.insert(p, v);
                }
                Some(Undo::Installed(p, None)) => {
                    self.installed.remove(&p);
                }
                Some(Undo::Nexthop(v, Some(e))) => {
                    self.nexthops.insert(v, e);
                }
                Some(Undo::Nexthop(v, None)) => {
                    self.nexthops.remove(&v);
                }
                None => break,
            }
        }
    }

    /// A nexthop id no nexthop has.
    fn fresh_id(&mut self, routing: &Routing) -> NexthopId {
        loop {
            let id = self.next_id;
            self.next_id = id.checked_add(1).unwrap_or(FIRST_NEXTHOP);
            if !routing.builder.has_nexthop(id) {
                return id;
            }
        }
    }

    /// The id of `v`'s nexthop, defined (its members first) if not yet, one more use
    /// counted.
    fn acquire(&mut self, v: &Via, routing: &Routing, out: &mut Vec<Command>) -> NexthopId {
        if let Some(&(id, uses)) = self.nexthops.get(v) {
            self.set_nexthop(v.clone(), Some((id, uses + 1)));
            return id;
        }
        let nexthop = match v {
            Via::Discard => NexthopSpec::Discard,
            Via::Port { port, gateway } => NexthopSpec::Port {
                name: port.clone(),
                gateway: *gateway,
            },
            Via::Ecmp(members) => NexthopSpec::Ecmp(
                members
                    .iter()
                    .map(|(port, gateway, w)| {
                        let member = Via::Port {
                            port: port.clone(),
                            gateway: *gateway,
                        };
                        (self.acquire(&member, routing, out), *w)
                    })
                    .collect(),
            ),
        };
        let id = self.fresh_id(routing);
        self.set_nexthop(v.clone(), Some((id, 1)));
        out.push(Command::NexthopAdd { id, nexthop });
        id
    }

    /// One use of `v`'s nexthop fewer; removed (then its members) at none.
    fn release(&mut self, v: &Via, out: &mut Vec<Command>) {
        let Some(&(id, uses)) = self.nexthops.get(v) else {
            return;
        };
        if uses > 1 {
            self.set_nexthop(v.clone(), Some((id, uses - 1)));
            return;
        }
        self.set_nexthop(v.clone(), None);
        out.push(Command::NexthopDel(id));
        if let Via::Ecmp(members) = v {
            for (port, gateway, _) in members {
                let member = Via::Port {
                    port: port.clone(),
                    gateway: *gateway,
                };
                self.release(&member, out);
            }
        }
    }

    /// The commands that take `p` from what is installed to `want`, the state changed to
    /// match (undoable).
    fn plan(&mut self, p: Prefix, want: Option<Via>, routing: &Routing, out: &mut Vec<Command>) {
        let old = self.installed.get(&p).cloned();
        if old == want {
            return;
        }
        let route = (self.cfg.vrf, p.0, p.1);
        match &want {
            Some(v) => {
                let nexthop = self.acquire(v, routing, out);
                out.push(Command::RouteAdd { route, nexthop });
            }
            None => out.push(Command::RouteDel(route)),
        }
        if let Some(v) = &old {
            self.release(v, out);
        }
        self.set_installed(p, want);
    }

    /// Brings the prefixes `keys` to what the kernel has, in one line (one publish: a
    /// line's checks and publish cost the size of the dynamic state, not only its own,
    /// so one long line is cheapest); a refused line is taken back and applied again in
    /// halves, down to single prefixes, so one route the router cannot take does not
    /// hold back the others (k of them cost about 2k log2(n) lines more). Returns how
    /// many prefixes were refused.
    pub fn reconcile(
        &mut self,
        keys: &[Prefix],
        routing: &mut Routing,
        fib: &Fib,
        dev_of: &dyn Fn(u32) -> Option<String>,
    ) -> usize {
        let refused = if keys.is_empty() {
            0
        } else {
            self.line(keys, routing, fib, dev_of)
        };
        self.undo.clear();
        refused
    }

    /// Applies `chunk` as one line, or in halves if refused (see [`Follower::reconcile`]).
    fn line(
        &mut self,
        chunk: &[Prefix],
        routing: &mut Routing,
        fib: &Fib,
        dev_of: &dyn Fn(u32) -> Option<String>,
    ) -> usize {
        if let [p] = chunk {
            return usize::from(!self.one(*p, routing, fib, dev_of));
        }
        self.undo.clear();
        let mut line = Vec::new();
        for p in chunk {
            let want = self.checked_want(p, routing, dev_of);
            self.plan(*p, want, routing, &mut line);
        }
        if line.is_empty() || routing.apply(&line, fib).is_ok() {
            return 0;
        }
        self.roll_back(0);
        let (a, b) = chunk.split_at(chunk.len() / 2);
        self.line(a, routing, fib, dev_of) + self.line(b, routing, fib, dev_of)
    }

    /// [`Follower::want`], but a prefix the file routes is skipped before it is tried.
    fn checked_want(&mut self, p: &Prefix, routing: &Routing, dev_of: &dyn Fn(u32) -> Option<String>) -> Option<Via> {
        let want = self.want(p, dev_of);
        if want.is_some() && routing.file_routes((self.cfg.vrf, p.0, p.1)) {
            self.skipped.insert(*p, "the config file routes this prefix".into());
            return None;
        }
        want
    }

    /// What `p` should have installed, its skip reason noted.
    fn want(&mut self, p: &Prefix, dev_of: &dyn Fn(u32) -> Option<String>) -> Option<Via> {
        match self.wanted(p, dev_of) {
            Ok(v) => {
                self.skipped.remove(p);
                v
            }
            Err(why) => {
                self.skipped.insert(*p, why);
                None
            }
        }
    }

    /// Brings `p` alone to what the kernel has; if the router refuses, `p` is left
    /// without a route (the refusal noted as why) and its nexthops are removed where
    /// nothing else uses them. Whether it was applied.
    fn one(&mut self, p: Prefix, routing: &mut Routing, fib: &Fib, dev_of: &dyn Fn(u32) -> Option<String>) -> bool {
        let mark = self.undo.len();
        let want = self.checked_want(&p, routing, dev_of);
        let mut line = Vec::new();
        self.plan(p, want, routing, &mut line);
        let why = match routing.apply(&line, fib) {
            Ok(_) => return true,
            Err(e) => e,
        };
        self.roll_back(mark);
        if self.skipped.get(&p) != Some(&why) {
            tracing::warn!(prefix = %prefix_words(p), error = %why, "kernel route not followed");
        }
        // Whatever was installed for it goes, as far as it is still there (a reload may
        // have taken it): each removal alone, a refused one changing nothing.
        if let Some(old) = self.installed.get(&p).cloned() {
            let _ = routing.apply(&[Command::RouteDel((self.cfg.vrf, p.0, p.1))], fib);
            let mut dels = Vec::new();
            self.release(&old, &mut dels);
            self.set_installed(p, None);
            for d in dels {
                let _ = routing.apply(&[d], fib);
            }
        }
        if self.kernel.contains_key(&p) {
            self.skipped.insert(p, why);
        }
        false
    }

    /// Forgets what a reload took away (a route dropped with its port, or taken over by
    /// the file), removing its nexthops where nothing else uses them, so that applying
    /// the prefixes again installs what is missing.
    fn forget_lost(&mut self, routing: &mut Routing, fib: &Fib) {
        let lost: Vec<(Prefix, Via)> = self
            .installed
            .iter()
            .filter(|(p, v)| {
                let id = self.nexthops.get(*v).map(|e| e.0);
                routing.dynamic_route((self.cfg.vrf, p.0, p.1)) != id
            })
            .map(|(p, v)| (*p, v.clone()))
            .collect();
        let mut dels = Vec::new();
        for (p, v) in lost {
            self.release(&v, &mut dels);
            self.set_installed(p, None);
        }
        for d in dels {
            let _ = routing.apply(&[d], fib);
        }
        self.undo.clear();
    }

    /// Every prefix the kernel has or the follower installed.
    fn all_keys(&self) -> Vec<Prefix> {
        let mut keys: Vec<Prefix> = self.kernel.keys().chain(self.installed.keys()).copied().collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// `show kernel-routes`: a summary, then a line per prefix the kernel has.
    pub fn listing(&self) -> Vec<String> {
        let (installed, skipped) = self.counts();
        let mut out = vec![format!(
            "kernel table {} -> vrf {}: {installed} routes followed, {skipped} skipped",
            self.cfg.table, self.cfg.vrf
        )];
        for (p, by_metric) in &self.kernel {
            let metric = by_metric.keys().next().copied().unwrap_or_default();
            let what = match (self.installed.get(p), self.skipped.get(p)) {
                (Some(v), _) => {
                    let id = self.nexthops.get(v).map(|e| e.0).unwrap_or_default();
                    format!("nexthop {id}: {}", v.words())
                }
                (None, Some(why)) => format!("skipped: {why}"),
                (None, None) => "not installed".into(),
            };
            out.push(format!("{} metric {metric}: {what}", prefix_words(*p)));
        }
        out
    }
}

/// The interface name of `ifindex` in the calling thread's namespace.
pub fn device_name(ifindex: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `buf` holds IF_NAMESIZE bytes, as if_indextoname(3) asks.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: on success the name in `buf` is NUL-terminated.
    let name = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}

/// A follower running on its thread: its state for `show kernel-routes`, and a way to tell
/// it of reloads. Dropping it withdraws what it installed and stops the thread.
pub struct Handle {
    /// The state, for listings.
    pub state: Arc<Mutex<Follower>>,
    tx: Option<Sender<Vec<PortDevice>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Handle {
    /// Tells the follower the ports after a reload: every prefix is applied again.
    pub fn set_ports(&self, ports: Vec<PortDevice>) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(ports);
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How long a receive waits before the thread looks for updates.
const POLL: Duration = Duration::from_millis(100);

/// How long after a link change (or a nexthop object removed) the table is read again at
/// the latest.
const SETTLE: Duration = Duration::from_secs(1);

/// How long a dump may go without a message.
const DUMP_WAIT: Duration = Duration::from_secs(5);

/// How long after a failed dump the table is read again (until a dump works).
const RETRY: Duration = Duration::from_secs(5);

/// Reads the table whole and installs it, then follows it on a thread of its own.
/// Returns once the table is installed (`show kernel-routes` says what was skipped).
pub fn spawn(
    cfg: KernelRoutes,
    ports: Vec<PortDevice>,
    routing: Arc<Mutex<Routing>>,
    fib: Arc<Fib>,
) -> io::Result<Handle> {
    // Subscribed before the dump: changes during it wait on this socket, to be applied
    // after it in the order they came.
    let sock = RouteSocket::subscribed(POLL)?;
    let state = Arc::new(Mutex::new(Follower::new(cfg, ports)));
    let mut thread = Thread {
        state: state.clone(),
        routing,
        fib,
        buf: vec![0; 1 << 16],
    };
    thread.dump()?;
    let (tx, rx) = channel();
    let t = std::thread::Builder::new()
        .name("kernel-routes".into())
        .spawn(move || thread.run(sock, rx))?;
    Ok(Handle {
        state,
        tx: Some(tx),
        thread: Some(t),
    })
}

/// What a round of receiving found.
enum Round {
    /// Changes, to these prefixes (maybe none: links, acknowledgements).
    Changed(Vec<Prefix>),
    /// Nothing within `POLL`.
    Quiet,
    /// Messages lost or unreadable: the table is to be read again.
    Redump,
    /// The socket failed: following ends.
    Stop,
}

/// Most datagrams received before the changes they hold are applied.
const DRAIN: usize = 1024;

struct Thread {
    state: Arc<Mutex<Follower>>,
    routing: Arc<Mutex<Routing>>,
    fib: Arc<Fib>,
    buf: Vec<u8>,
}

impl Thread {
    /// Applies `keys` (all the follower knows if `None`).
    fn reconcile(&self, keys: Option<Vec<Prefix>>) {
        let (Ok(mut f), Ok(mut r)) = (self.state.lock(), self.routing.lock()) else {
            return;
        };
        let keys = keys.unwrap_or_else(|| f.all_keys());
        f.reconcile(&keys, &mut r, &self.fib, &device_name);
    }

    /// Reads the kernel's routes anew, applying what changed since. On a socket of its
    /// own: a dump is sent as fast as it is read, so it cannot overrun, and changes
    /// waiting on the subscribed socket are applied after it, in order, which leaves each
    /// prefix as its last change (or the dump, if none) says. The dump is read aside and
    /// taken only once whole: one that fails half way leaves the last whole view, where
    /// a half view would have had the next full reconcile (a port change) withdraw every
    /// route the dump had not reached yet.
    fn dump(&mut self) -> io::Result<()> {
        let mut sock = RouteSocket::for_dumps(POLL)?;
        let (mut view, (table, _)) = {
            let f = self
                .state
                .lock()
                .map_err(|_| io::Error::other("the kernel routes state is poisoned"))?;
            (f.empty_view(), f.table_and_vrf())
        };
        // Objects first, for the routes that name them. A kernel without nexthop
        // objects (before 5.3) refuses their dump: there are none.
        match self.read_dump(&mut sock, Dump::Nexthops, &mut view) {
            Err(e) if e.kind() == io::ErrorKind::Unsupported => {}
            r => r?,
        }
        self.read_dump(&mut sock, Dump::Table(table), &mut view)?;
        if let Ok(mut f) = self.state.lock() {
            f.take_view(view);
        }
        self.reconcile(None);
        Ok(())
    }

    /// Asks for a dump of `what` on `sock` and notes all of it in `view`.
    fn read_dump(&mut self, sock: &mut RouteSocket, what: Dump, view: &mut Follower) -> io::Result<()> {
        sock.request_dump(what)?;
        let mut waited = Duration::ZERO;
        loop {
            let n = match sock.recv(&mut self.buf)? {
                Received::Bytes(n) => n,
                Received::Nothing if waited < DUMP_WAIT => {
                    waited += POLL;
                    continue;
                }
                Received::Nothing => {
                    return Err(io::Error::other(format!("the kernel sent no end to its {what:?} dump")));
                }
                Received::Overrun => return Err(io::Error::other(format!("the {what:?} dump overran its socket"))),
            };
            let messages = netlink::parse(&self.buf[..n]).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            for m in messages {
                match m {
                    Message::Route(r) => {
                        view.note(r);
                    }
                    Message::Nexthop(o) => {
                        view.note_object(o);
                    }
                    Message::Done => return Ok(()),
                    Message::Error(e) if e < 0 => {
                        let e = io::Error::from_raw_os_error(-e);
                        return Err(io::Error::new(e.kind(), format!("the {what:?} dump was refused: {e}")));
                    }
                    _ => {}
                }
            }
        }
    }

    fn run(mut self, sock: RouteSocket, rx: Receiver<Vec<PortDevice>>) {
        let (mut reread, mut quiet): (Option<Instant>, bool) = (None, false);
        let mut retry: Option<Instant> = None;
        loop {
            match rx.try_recv() {
                Ok(ports) => {
                    if let (Ok(mut f), Ok(mut r)) = (self.state.lock(), self.routing.lock()) {
                        f.ports = ports;
                        f.forget_lost(&mut r, &self.fib);
                    }
                    self.reconcile(None);
                }
                Err(TryRecvError::Disconnected) => return self.withdraw(),
                Err(TryRecvError::Empty) => {}
            }
            // Links changed, or objects went: the table is read again once changes settle
            // (a receive found nothing), or a second after the first at the latest.
            let settled = reread.is_some_and(|since| quiet || since.elapsed() > SETTLE);
            if settled || retry.is_some_and(|at| Instant::now() >= at) {
                reread = None;
                self.redump(&mut retry);
            }
            match self.receive(&sock, &mut reread) {
                Round::Changed(keys) => {
                    quiet = false;
                    if !keys.is_empty() {
                        self.reconcile(Some(keys));
                    }
                }
                Round::Quiet => quiet = true,
                Round::Redump => self.redump(&mut retry),
                Round::Stop => return,
            }
        }
    }

    /// Receives what waits on `sock` (the first receive waits up to `POLL`, the others
    /// take only what is there, up to `DRAIN` datagrams), noting every route: a burst of
    /// changes is applied in a few lines, not one line each.
    fn receive(&mut self, sock: &RouteSocket, reread: &mut Option<Instant>) -> Round {
        let mut keys = Vec::new();
        for i in 0..DRAIN {
            let got = if i == 0 {
                sock.recv(&mut self.buf)
            } else {
                sock.try_recv(&mut self.buf)
            };
            let n = match got {
                Ok(Received::Bytes(n)) => n,
                Ok(Received::Nothing) if i == 0 => return Round::Quiet,
                Ok(Received::Nothing) => break,
                Ok(Received::Overrun) => {
                    tracing::warn!("kernel route changes overran the socket: reading the table again");
                    return Round::Redump;
                }
                Err(e) => {
                    tracing::error!(error = %e, "kernel routes: no longer followed");
                    return Round::Stop;
                }
            };
            let messages = match netlink::parse(&self.buf[..n]) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "a malformed route message: reading the table again");
                    return Round::Redump;
                }
            };
            let Ok(mut f) = self.state.lock() else {
                return Round::Stop;
            };
            for m in messages {
                match m {
                    Message::Route(r) => keys.extend(f.note(r)),
                    // Routes the kernel flushed with a link or an object that went away
                    // went without a message each.
                    Message::Link => {
                        reread.get_or_insert_with(Instant::now);
                    }
                    Message::Nexthop(o) => {
                        if o.deleted {
                            reread.get_or_insert_with(Instant::now);
                        }
                        keys.extend(f.note_object(o));
                    }
                    _ => {}
                }
            }
        }
        Round::Changed(keys)
    }

    /// Reads the table again; if that fails, `retry` says when to try once more.
    fn redump(&mut self, retry: &mut Option<Instant>) {
        *retry = match self.dump() {
            Ok(()) => None,
            Err(e) => {
                tracing::error!(error = %e, retry_in = ?RETRY, "kernel routes: reading the table again failed");
                Some(Instant::now() + RETRY)
            }
        };
    }

    /// Removes every route and nexthop the follower installed.
    fn withdraw(&self) {
        if let Ok(mut f) = self.state.lock() {
            f.forget_kernel();
            f.skipped.clear();
        }
        self.reconcile(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use vrouter::fib::{FibBuilder, Nexthop};

    /// Devices by index: `da` and `db` are ports `a` and `b`, `dh` the host's TAP `h`,
    /// `dx` no port; other indexes are gone.
    fn dev_of(ifindex: u32) -> Option<String> {
        ["da", "db", "dh", "dx"]
            .get(ifindex.wrapping_sub(1) as usize)
            .map(|s| s.to_string())
    }

    fn ports() -> Vec<PortDevice> {
        [("a", "da", false), ("b", "db", false), ("h", "dh", true)]
            .map(|(name, device, host)| PortDevice {
                name: name.into(),
                device: device.into(),
                host,
            })
            .to_vec()
    }

    /// VRF 1 with the file's route 10.0.1.0/24 to its nexthop 1.
    fn file() -> FibBuilder {
        let mut b = FibBuilder::new();
        b.add_vrf(1).unwrap();
        b.set_nexthop(1, Nexthop::Discard).unwrap();
        b.add_route(1, "10.0.1.0".parse().unwrap(), 24, 1).unwrap();
        b
    }

    /// [`file`] published, and a follower of table 254 into VRF 1.
    fn started() -> (Follower, Routing, Fib) {
        let mut b = file();
        let fib = Fib::new();
        b.publish(&fib).unwrap();
        let names = ports().into_iter().map(|p| p.name).collect();
        let cfg = KernelRoutes {
            table: 254,
            vrf: 1,
            protocols: vec![],
        };
        (Follower::new(cfg, ports()), Routing::new(b, names), fib)
    }

    /// A route of table 254, protocol static.
    fn route(dst: &str, metric: u32, kind: u8, hops: &[(u32, Option<&str>, u32)]) -> Route {
        let (ip, len) = dst.split_once('/').unwrap();
        Route {
            deleted: false,
            dst: ip.parse().unwrap(),
            len: len.parse().unwrap(),
            src_len: 0,
            tos: 0,
            table: 254,
            protocol: 4,
            kind,
            flags: 0,
            metric,
            hops: hops
                .iter()
                .map(|&(ifindex, gw, weight)| Hop {
                    ifindex,
                    gateway: gw.map(|g| g.parse().unwrap()),
                    weight,
                    flags: 0,
                })
                .collect(),
            nexthop_object: None,
        }
    }

    fn deleted(mut r: Route) -> Route {
        r.deleted = true;
        r
    }

    /// Notes `routes` and applies their prefixes; how many lines were refused.
    fn feed(f: &mut Follower, r: &mut Routing, fib: &Fib, routes: Vec<Route>) -> usize {
        let keys: Vec<Prefix> = routes.into_iter().filter_map(|x| f.note(x)).collect();
        f.reconcile(&keys, r, fib, &dev_of)
    }

    /// The nexthop VRF 1's route for `addr` goes to, if it is a dynamic route.
    fn goes(r: &Routing, addr: &str) -> Option<Nexthop> {
        let (_, id, dynamic) = r.route_for(1, addr.parse().unwrap())?;
        dynamic.then(|| r.builder.nexthop(id).cloned()).flatten()
    }

    fn port(port: u32, gw: Option<&str>) -> Option<Nexthop> {
        Some(Nexthop::Interface {
            port,
            gateway: gw.map(|g| g.parse().unwrap()),
        })
    }

    #[test]
    fn the_lowest_metric_is_followed_through_changes_and_deletes() {
        let (mut f, mut r, fib) = started();
        let via_b = route("10.0.9.0/24", 0, kind::UNICAST, &[(2, Some("10.0.2.2"), 1)]);
        let via_a = route("10.0.9.0/24", 10, kind::UNICAST, &[(1, Some("10.0.1.2"), 1)]);
        assert_eq!(feed(&mut f, &mut r, &fib, vec![via_b.clone(), via_a.clone()]), 0);
        assert_eq!(goes(&r, "10.0.9.1"), port(1, Some("10.0.2.2")));
        assert_eq!(fib.snapshot().route_count(1), 2, "published");
        feed(&mut f, &mut r, &fib, vec![deleted(via_b)]);
        assert_eq!(goes(&r, "10.0.9.1"), port(0, Some("10.0.1.2")), "the metric 10 route");
        assert_eq!(r.dynamic_nexthops(), 1, "b's nexthop went with its last route");
        feed(&mut f, &mut r, &fib, vec![deleted(via_a)]);
        assert_eq!(goes(&r, "10.0.9.1"), None);
        assert_eq!((r.dynamic_count(), r.dynamic_nexthops()), (0, 0), "nothing left behind");
        assert_eq!(f.listing(), ["kernel table 254 -> vrf 1: 0 routes followed, 0 skipped"]);
    }

    #[test]
    fn multipath_is_a_weighted_group_blackholes_discard_and_nexthops_are_shared() {
        let (mut f, mut r, fib) = started();
        let two = [(1, Some("10.0.1.2"), 1), (2, Some("10.0.2.2"), 3)];
        let routes = vec![
            route("10.0.8.0/24", 0, kind::UNICAST, &two),
            route("10.0.7.0/24", 0, kind::UNICAST, &[(2, Some("10.0.2.2"), 1)]),
            route("10.0.6.0/24", 0, kind::BLACKHOLE, &[]),
            route("fd00:9::/64", 1024, kind::UNREACHABLE, &[]),
            route("10.0.2.2/32", 0, kind::UNICAST, &[(2, None, 1)]),
            route("10.0.5.0/24", 0, kind::UNICAST, &[(2, Some("fe80::2"), 1)]),
        ];
        assert_eq!(feed(&mut f, &mut r, &fib, routes), 0);
        assert_eq!(
            goes(&r, "10.0.5.1"),
            port(1, Some("fe80::2")),
            "via an IPv6 next hop (RFC 8950)"
        );
        let Some(Nexthop::Ecmp { members }) = goes(&r, "10.0.8.1") else {
            panic!("{:?}", goes(&r, "10.0.8.1"))
        };
        let weights: Vec<u32> = members.iter().map(|m| m.1).collect();
        assert_eq!(weights, [1, 3]);
        let ids: Vec<NexthopId> = members.iter().map(|m| m.0).collect();
        assert_eq!(r.builder.nexthop(ids[1]).cloned(), port(1, Some("10.0.2.2")));
        assert_eq!(
            r.route_for(1, "10.0.7.1".parse().unwrap()).unwrap().1,
            ids[1],
            "shared with the group"
        );
        assert_eq!(goes(&r, "10.0.6.1"), Some(Nexthop::Discard));
        assert_eq!(goes(&r, "fd00:9::1"), Some(Nexthop::Discard));
        assert_eq!(goes(&r, "10.0.2.2"), port(1, None), "on-link");
        // Group, two members, discard, on-link b, b via fe80::2.
        assert_eq!(r.dynamic_nexthops(), 6);
        let listing = f.listing();
        assert!(
            listing.contains(&format!(
                "10.0.8.0/24 metric 0: nexthop {}: out of a via 10.0.1.2 weight 1, out of b via 10.0.2.2 weight 3",
                r.route_for(1, "10.0.8.1".parse().unwrap()).unwrap().1
            )),
            "{listing:?}"
        );
        // The group goes; its member b stays for 10.0.7.0/24, a goes.
        feed(
            &mut f,
            &mut r,
            &fib,
            vec![deleted(route("10.0.8.0/24", 0, kind::UNICAST, &two))],
        );
        assert_eq!(r.dynamic_nexthops(), 4);
        assert!(r.builder.has_nexthop(ids[1]) && !r.builder.has_nexthop(ids[0]));
    }

    #[test]
    fn routes_the_router_cannot_take_are_skipped_with_the_reason_and_hold_back_no_other() {
        let (mut f, mut r, fib) = started();
        let mut from = route("10.0.5.0/24", 0, kind::UNICAST, &[(1, None, 1)]);
        from.src_len = 16;
        let mut object = route("10.0.4.0/24", 0, kind::UNICAST, &[]);
        object.nexthop_object = Some(7);
        let mut other_table = route("10.0.3.0/24", 0, kind::UNICAST, &[(1, None, 1)]);
        other_table.table = 100;
        let mut down = route("10.0.10.0/24", 0, kind::UNICAST, &[(1, None, 1)]);
        down.hops[0].flags = netlink::RTNH_F_LINKDOWN;
        let routes = vec![
            route("10.0.1.0/24", 0, kind::UNICAST, &[(1, None, 1)]),
            route("10.0.9.0/24", 0, kind::UNICAST, &[(4, Some("192.0.2.1"), 1)]),
            route("10.0.11.0/24", 0, kind::UNICAST, &[(3, None, 1)]),
            route("10.0.12.0/24", 0, kind::UNICAST, &[(9, None, 1)]),
            from,
            object,
            other_table,
            down,
            route("10.0.2.0/24", 0, kind::UNICAST, &[(2, None, 1)]),
        ];
        assert_eq!(feed(&mut f, &mut r, &fib, routes), 0, "the file's prefix is not tried");
        assert_eq!(goes(&r, "10.0.2.1"), port(1, None), "applied all the same");
        assert_eq!(
            r.route_for(1, "10.0.1.1".parse().unwrap()).unwrap().1,
            1,
            "still the file's"
        );
        assert_eq!((r.dynamic_count(), r.dynamic_nexthops()), (1, 1));
        let listing = f.listing().join("\n");
        for says in [
            "kernel table 254 -> vrf 1: 1 routes followed, 7 skipped",
            "10.0.1.0/24 metric 0: skipped: the config file routes this prefix",
            "10.0.9.0/24 metric 0: skipped: `dx` is not a port of the router",
            "10.0.11.0/24 metric 0: skipped: `dh` is the host's TAP",
            "10.0.12.0/24 metric 0: skipped: interface 9 is gone",
            "10.0.5.0/24 metric 0: skipped: source-specific",
            "10.0.4.0/24 metric 0: skipped: kernel nexthop object 7 is not known",
            "10.0.10.0/24 metric 0: skipped: every next hop is down",
        ] {
            assert!(listing.contains(says), "{says}\n{listing}");
        }
        assert!(!listing.contains("10.0.3.0"), "table 100 is not followed: {listing}");
    }

    #[test]
    fn routes_through_kernel_nexthop_objects_follow_the_objects() {
        let (mut f, mut r, fib) = started();
        let hop = |id, ifindex, gw: &str| NexthopObject {
            deleted: false,
            id,
            via: ObjectVia::Hop(Hop {
                ifindex,
                gateway: Some(gw.parse().unwrap()),
                weight: 1,
                flags: 0,
            }),
        };
        let group = NexthopObject {
            deleted: false,
            id: 12,
            via: ObjectVia::Group(vec![(10, 1), (11, 3)]),
        };
        for o in [hop(10, 1, "10.0.1.2"), hop(11, 2, "10.0.2.2"), group] {
            assert!(f.note_object(o).is_empty(), "no route uses it yet");
        }
        let through = |dst: &str, id| {
            let mut x = route(dst, 0, kind::UNICAST, &[]);
            x.nexthop_object = Some(id);
            x
        };
        let routes = vec![
            through("10.0.8.0/24", 12),
            through("10.0.9.0/24", 10),
            through("10.0.7.0/24", 99),
        ];
        assert_eq!(feed(&mut f, &mut r, &fib, routes), 0);
        let Some(Nexthop::Ecmp { members }) = goes(&r, "10.0.8.1") else {
            panic!("{:?}", goes(&r, "10.0.8.1"))
        };
        assert_eq!(members.iter().map(|m| m.1).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(goes(&r, "10.0.9.1"), port(0, Some("10.0.1.2")));
        let listing = f.listing().join("\n");
        assert!(
            listing.contains("10.0.7.0/24 metric 0: skipped: kernel nexthop object 99 is not known"),
            "{listing}"
        );
        // Object 10 moves to b: the routes through it, alone or in the group, follow
        // without a route message of their own.
        let keys = f.note_object(hop(10, 2, "10.0.2.3"));
        assert_eq!(keys.len(), 2, "{keys:?}");
        f.reconcile(&keys, &mut r, &fib, &dev_of);
        assert_eq!(goes(&r, "10.0.9.1"), port(1, Some("10.0.2.3")));
        // Object 99 comes: its route is taken.
        let keys = f.note_object(hop(99, 1, "10.0.1.9"));
        f.reconcile(&keys, &mut r, &fib, &dev_of);
        assert_eq!(goes(&r, "10.0.7.1"), port(0, Some("10.0.1.9")));
    }

    /// A line the router refuses (here a port a reload took away before the follower was
    /// told) is taken back whole, then applied in halves: the others apply.
    #[test]
    fn a_refused_line_is_applied_in_halves() {
        let (mut f, mut r, fib) = started();
        r.take_file(file(), vec!["a".into()]);
        let routes = vec![
            route("10.0.8.0/24", 0, kind::UNICAST, &[(2, Some("10.0.2.2"), 1)]),
            route("10.0.9.0/24", 0, kind::UNICAST, &[(1, Some("10.0.1.2"), 1)]),
        ];
        assert_eq!(feed(&mut f, &mut r, &fib, routes), 1);
        assert_eq!(goes(&r, "10.0.9.1"), port(0, Some("10.0.1.2")));
        assert_eq!(goes(&r, "10.0.8.1"), None);
        assert_eq!((r.dynamic_count(), r.dynamic_nexthops()), (1, 1), "nothing of b's left");
        let listing = f.listing().join("\n");
        assert!(
            listing.contains("10.0.8.0/24 metric 0: skipped: nexthop add "),
            "{listing}"
        );
        assert!(listing.contains(": no port named `b`"), "{listing}");
    }

    #[test]
    fn a_reload_that_takes_a_port_away_and_back_is_followed() {
        let (mut f, mut r, fib) = started();
        feed(
            &mut f,
            &mut r,
            &fib,
            vec![route("10.0.9.0/24", 0, kind::UNICAST, &[(2, Some("10.0.2.2"), 1)])],
        );
        assert!(goes(&r, "10.0.9.1").is_some());
        let without_b: Vec<PortDevice> = ports().into_iter().filter(|p| p.name != "b").collect();
        let dropped = r.take_file(file(), without_b.iter().map(|p| p.name.clone()).collect());
        assert_eq!(dropped.len(), 2, "the route and its nexthop: {dropped:?}");
        f.ports = without_b;
        f.forget_lost(&mut r, &fib);
        f.reconcile(&f.all_keys(), &mut r, &fib, &dev_of);
        assert!(
            f.listing().join("\n").contains("skipped: `db` is not a port"),
            "{:?}",
            f.listing()
        );
        r.take_file(file(), ports().into_iter().map(|p| p.name).collect());
        f.ports = ports();
        f.forget_lost(&mut r, &fib);
        f.reconcile(&f.all_keys(), &mut r, &fib, &dev_of);
        assert_eq!(goes(&r, "10.0.9.1"), port(1, Some("10.0.2.2")), "back with its port");
    }

    proptest! {
        /// After any sequence of route messages, VRF 1 routes each prefix as the kernel's
        /// lowest-metric route says (a model that recomputes it from scratch), and the
        /// dynamic nexthops are exactly those the routes use.
        #[test]
        fn follows_the_kernel_as_a_model_says(ops in proptest::collection::vec(
            (0..4u8, 0..3u32, any::<bool>(), 0..5u8, 1..4u32), 1..60)
        ) {
            let (mut f, mut r, fib) = started();
            let mut model: BTreeMap<u8, BTreeMap<u32, Route>> = BTreeMap::new();
            for (p, metric, delete, how, weight) in ops {
                let dst = format!("10.1.{p}.0/24");
                let hops: Vec<(u32, Option<&str>, u32)> = match how {
                    0 => vec![(1, None, 1)],
                    1 => vec![(2, Some("10.0.2.2"), weight)],
                    2 => vec![(1, Some("10.0.1.2"), 1), (2, Some("10.0.2.2"), weight)],
                    3 => vec![(4, None, 1)],
                    _ => vec![],
                };
                let k = if how == 4 { kind::BLACKHOLE } else { kind::UNICAST };
                let x = route(&dst, metric, k, &hops);
                if delete {
                    model.entry(p).or_default().remove(&metric);
                    feed(&mut f, &mut r, &fib, vec![deleted(x)]);
                } else {
                    model.entry(p).or_default().insert(metric, x.clone());
                    feed(&mut f, &mut r, &fib, vec![x]);
                }
                for (p, by_metric) in &model {
                    let got = goes(&r, &format!("10.1.{p}.1"));
                    let want = by_metric.values().next().and_then(|best| match best.hops.as_slice() {
                        [] => Some(Nexthop::Discard),
                        [h] if h.ifindex == 4 => None,
                        [h] => port(h.ifindex - 1, None).map(|_| Nexthop::Interface { port: h.ifindex - 1, gateway: h.gateway }),
                        hs => Some(Nexthop::Ecmp { members: hs.iter().map(|h| (0, h.weight)).collect() }),
                    });
                    match (got, want) {
                        (Some(Nexthop::Ecmp { members: g }), Some(Nexthop::Ecmp { members: w })) => {
                            prop_assert_eq!(g.iter().map(|m| m.1).collect::<Vec<_>>(), w.iter().map(|m| m.1).collect::<Vec<_>>());
                        }
                        (got, want) => prop_assert_eq!(got, want, "10.1.{}.0/24", p),
                    }
                }
                let used: std::collections::BTreeSet<NexthopId> = f.nexthops.values().map(|e| e.0).collect();
                prop_assert_eq!(r.dynamic_nexthops(), used.len());
                prop_assert!(used.iter().all(|id| r.builder.has_nexthop(*id)));
            }
        }
    }
}
