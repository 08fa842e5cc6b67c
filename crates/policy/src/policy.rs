//! Rule sets per endpoint, compiled into an immutable, generation-numbered [`Policy`]
//! snapshot, and the [`PolicyStore`] workers load it from.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;

use crate::addrset::addr_bits;
use crate::classify::{MAX_BURST, Table};
use crate::counters::{HitCounters, Local};
use crate::rule::{Action, Direction, Fields, PolicyError, Rule, RuleId};

/// Identifies a workload endpoint (an interface and its addresses), chosen by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EndpointId(pub u32);

/// An ordered rule list and what happens when no rule matches.
///
/// Rules are evaluated by ascending `priority`, ties in list order; the first match decides.
/// Shared by `Arc` so a security group attached to many endpoints compiles once.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RuleList {
    /// The rules.
    pub rules: Vec<Rule>,
    /// Action when no rule matches.
    pub default: Action,
}

/// A workload endpoint and its policy in each direction (`None` = open: everything allowed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Identifier.
    pub id: EndpointId,
    /// VRF its addresses live in.
    pub vrf: u32,
    /// Its addresses: flows from them use its egress list, flows to them its ingress list.
    pub addrs: Vec<IpAddr>,
    /// Rules for traffic arriving at the endpoint.
    pub ingress: Option<Arc<RuleList>>,
    /// Rules for traffic leaving the endpoint.
    pub egress: Option<Arc<RuleList>>,
}

/// Everything the compiler takes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicySet {
    /// The endpoints.
    pub endpoints: Vec<Endpoint>,
}

impl PolicySet {
    /// One endpoint owning `addrs` in `vrf`, with `ingress` rules and an open egress.
    pub fn ingress_for(id: EndpointId, vrf: u32, addrs: Vec<IpAddr>, ingress: RuleList) -> Self {
        PolicySet {
            endpoints: vec![Endpoint {
                id,
                vrf,
                addrs,
                ingress: Some(Arc::new(ingress)),
                egress: None,
            }],
        }
    }

    /// The same set with logging asked for: every decision that denies (rules and
    /// defaults) with `denied`, every one that allows with `allowed`, becomes its logging
    /// twin (`Deny` -> `DenyLog`, `Allow` -> `AllowLog`). Lists shared by endpoints stay
    /// shared. For an operator who wants to see what a policy refuses (a tenant's
    /// NetworkPolicy, whose rules cannot ask for logging themselves).
    ///
    /// ```
    /// use policy::{Action, EndpointId, PolicySet, RuleList};
    /// let mut set = PolicySet::ingress_for(EndpointId(1), 0, vec![], RuleList::allow_only(6));
    /// let mut twin = set.endpoints[0].clone();
    /// twin.id = EndpointId(2);
    /// set.endpoints.push(twin);
    /// let logged = set.with_logging(true, false);
    /// let (one, two) = (logged.endpoints[0].ingress.as_ref().unwrap(), logged.endpoints[1].ingress.as_ref().unwrap());
    /// assert_eq!((one.rules[0].action, one.default), (Action::Allow, Action::DenyLog));
    /// assert!(std::sync::Arc::ptr_eq(one, two), "a shared list stays shared");
    /// ```
    pub fn with_logging(&self, denied: bool, allowed: bool) -> PolicySet {
        let log = |a: Action| match a {
            Action::Deny if denied => Action::DenyLog,
            Action::Allow if allowed => Action::AllowLog,
            other => other,
        };
        let mut done: HashMap<*const RuleList, Arc<RuleList>> = HashMap::new();
        let mut relist = |l: &Option<Arc<RuleList>>| {
            l.as_ref().map(|l| {
                done.entry(Arc::as_ptr(l))
                    .or_insert_with(|| {
                        Arc::new(RuleList {
                            rules: l
                                .rules
                                .iter()
                                .map(|r| Rule {
                                    action: log(r.action),
                                    ..r.clone()
                                })
                                .collect(),
                            default: log(l.default),
                        })
                    })
                    .clone()
            })
        };
        PolicySet {
            endpoints: self
                .endpoints
                .iter()
                .map(|ep| Endpoint {
                    ingress: relist(&ep.ingress),
                    egress: relist(&ep.egress),
                    ..ep.clone()
                })
                .collect(),
        }
    }

    /// The first endpoint with a rule list whose every address another endpoint of its
    /// VRF owns too (a service address alone). [`Policy::evaluate`] names no endpoint for
    /// a shared address, and a dataplane that tells a shared address's flows apart by the
    /// workload port's own addresses (ours: docs/pipeline.md, Services) finds none for it,
    /// so its lists could never apply: front ends refuse such a set (`vrouter run`, the C
    /// API) rather than leave the endpoint open.
    ///
    /// ```
    /// use policy::{EndpointId, PolicySet, RuleList};
    /// let vip = "10.96.0.10".parse().unwrap();
    /// let mut set = PolicySet::ingress_for(EndpointId(1), 0, vec![vip], RuleList::allow_only(6));
    /// assert_eq!(set.policed_without_own_address(), None, "alone, the address is its own");
    /// let mut other = set.endpoints[0].clone();
    /// (other.id, other.ingress) = (EndpointId(2), None);
    /// set.endpoints.push(other);
    /// assert_eq!(set.policed_without_own_address().map(|e| e.id), Some(EndpointId(1)));
    /// ```
    pub fn policed_without_own_address(&self) -> Option<&Endpoint> {
        let mut owners: HashMap<(u32, IpAddr), HashSet<EndpointId>> = HashMap::new();
        for ep in &self.endpoints {
            for &a in &ep.addrs {
                owners.entry((ep.vrf, a)).or_default().insert(ep.id);
            }
        }
        self.endpoints.iter().find(|ep| {
            (ep.ingress.is_some() || ep.egress.is_some())
                && !ep.addrs.is_empty()
                && ep.addrs.iter().all(|&a| owners[&(ep.vrf, a)].len() > 1)
        })
    }
}

impl RuleList {
    /// Denies `proto` traffic to destination `port` (rule id 1), allows the rest.
    ///
    /// ```
    /// let l = policy::RuleList::deny_port(6, 22);
    /// assert_eq!(l.rules.len(), 1);
    /// ```
    pub fn deny_port(proto: u8, port: u16) -> Self {
        RuleList {
            rules: vec![Rule {
                proto: Some(proto),
                dst_ports: Some(crate::PortRange::single(port)),
                ..Rule::any(RuleId(1), Action::Deny)
            }],
            default: Action::Allow,
        }
    }

    /// Allows `proto` traffic (rule id 1), denies the rest.
    ///
    /// ```
    /// let l = policy::RuleList::allow_only(17);
    /// assert_eq!((l.rules[0].proto, l.default), (Some(17), policy::Action::Deny));
    /// ```
    pub fn allow_only(proto: u8) -> Self {
        RuleList {
            rules: vec![Rule {
                proto: Some(proto),
                ..Rule::any(RuleId(1), Action::Allow)
            }],
            default: Action::Deny,
        }
    }

    /// Checks the list as the compiler will (port ranges, ports without a port protocol,
    /// ICMP fields without ICMP, ...), alone: for front ends that want to report a bad list
    /// where it is written rather than when a whole set is published.
    ///
    /// ```
    /// use policy::{Action, PortRange, Rule, RuleId, RuleList};
    /// let backwards = Rule { proto: Some(6), dst_ports: Some(PortRange::new(9, 1)), ..Rule::any(RuleId(1), Action::Deny) };
    /// let e = RuleList { rules: vec![backwards], default: Action::Allow }.check().unwrap_err();
    /// assert_eq!((e.rule, e.field), (Some(RuleId(1)), "dst_ports"));
    /// ```
    pub fn check(&self) -> Result<(), PolicyError> {
        let alone = PolicySet {
            endpoints: vec![Endpoint {
                id: EndpointId(0),
                vrf: 0,
                addrs: vec![],
                ingress: Some(Arc::new(self.clone())),
                egress: None,
            }],
        };
        Policy::compile(&alone, 0).map(|_| ())
    }
}

/// The outcome of one rule list for one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// What to do.
    pub action: Action,
    /// The rule that matched; `None` when the list's default applied.
    pub rule: Option<RuleId>,
}

/// A compiled rule list.
pub struct RuleTable {
    v4: Table<u32>,
    v6: Table<u128>,
    /// What each rule decides, in evaluation order, then the default (no rule matched):
    /// a match position indexes it straight.
    decisions: Box<[Decision]>,
    /// One per rule, then one for the default.
    hits: HitCounters,
}

impl RuleTable {
    fn compile(list: &RuleList, warnings: &mut Vec<PolicyError>) -> Result<Self, PolicyError> {
        let mut order: Vec<(u32, &Rule)> = Vec::with_capacity(list.rules.len());
        let mut seen = HashMap::new();
        for r in &list.rules {
            if seen.insert(r.id, ()).is_some() {
                return Err(PolicyError {
                    rule: Some(r.id),
                    field: "id",
                    reason: "the id appears twice in one rule list".into(),
                });
            }
            match r.check()? {
                Some(w) => warnings.push(w),
                None => order.push((0, r)),
            }
        }
        // Stable: equal priorities keep list order.
        order.sort_by_key(|(_, r)| r.priority);
        for (i, e) in order.iter_mut().enumerate() {
            e.0 = i as u32;
        }
        Ok(RuleTable {
            v4: Table::build(&order),
            v6: Table::build(&order),
            decisions: order
                .iter()
                .map(|(_, r)| Decision {
                    action: r.action,
                    rule: Some(r.id),
                })
                .chain([Decision {
                    action: list.default,
                    rule: None,
                }])
                .collect(),
            hits: HitCounters::new(order.len() + 1),
        })
    }

    /// Classifies one packet and counts the hit.
    pub fn classify(&self, f: &Fields) -> Decision {
        self.classify_counted(f, &self.hits.local())
    }

    #[inline]
    fn classify_counted(&self, f: &Fields, hits: &Local<'_>) -> Decision {
        let pos = if f.v6 {
            self.v6.first_match(f)
        } else {
            self.v4.first_match(f)
        };
        self.decide(pos, hits)
    }

    #[inline]
    fn decide(&self, pos: Option<u32>, hits: &Local<'_>) -> Decision {
        let i = pos.map_or(self.len(), |p| p as usize);
        hits.bump(i);
        self.decisions[i]
    }

    /// Classifies a burst: `out[i]` is the decision for `pkts[i]`. A burst of one family
    /// (the usual case) is classified field by field across all its packets.
    ///
    /// # Panics
    /// If `out` is shorter than `pkts`.
    pub fn classify_burst(&self, pkts: &[Fields], out: &mut [Decision]) {
        let out = &mut out[..pkts.len()];
        let hits = self.hits.local();
        let mut pos = [None; MAX_BURST];
        for (pkts, out) in pkts.chunks(MAX_BURST).zip(out.chunks_mut(MAX_BURST)) {
            let v6 = pkts[0].v6;
            if pkts.iter().any(|p| p.v6 != v6) {
                for (p, o) in pkts.iter().zip(out) {
                    *o = self.classify_counted(p, &hits);
                }
                continue;
            }
            if v6 {
                self.v6.first_match_burst(pkts, &mut pos);
            } else {
                self.v4.first_match_burst(pkts, &mut pos);
            }
            for (o, &p) in out.iter_mut().zip(&pos) {
                *o = self.decide(p, &hits);
            }
        }
    }

    /// Rules in evaluation order with their hit counts (rules left out with a warning are
    /// absent).
    pub fn hits(&self) -> impl Iterator<Item = (RuleId, u64)> + '_ {
        self.decisions
            .iter()
            .filter_map(|d| d.rule)
            .enumerate()
            .map(|(i, id)| (id, self.hits.get(i)))
    }

    /// Packets that matched no rule and took the default.
    pub fn default_hits(&self) -> u64 {
        self.hits.get(self.len())
    }

    /// Every decision in evaluation order, the default last (rule `None`), with its hit
    /// count: what an operator reads to see which rule lets a flow through or stops it.
    ///
    /// ```
    /// use policy::{Action, Decision, EndpointId, Policy, PolicySet, RuleId, RuleList};
    /// let set = PolicySet::ingress_for(EndpointId(1), 0, vec![], RuleList::deny_port(6, 22));
    /// let (p, _) = Policy::compile(&set, 1).unwrap();
    /// let t = p.table(EndpointId(1), policy::Direction::Ingress).unwrap();
    /// let listed: Vec<_> = t.counted().collect();
    /// let deny = Decision { action: Action::Deny, rule: Some(RuleId(1)) };
    /// let default = Decision { action: Action::Allow, rule: None };
    /// assert_eq!(listed, [(deny, 0), (default, 0)]);
    /// ```
    pub fn counted(&self) -> impl Iterator<Item = (Decision, u64)> + '_ {
        self.decisions.iter().enumerate().map(|(i, d)| (*d, self.hits.get(i)))
    }

    /// Rules compiled in.
    pub fn len(&self) -> usize {
        self.decisions.len() - 1
    }

    /// Whether no rule was compiled in (the default decides everything).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Memory held by the classifier, in bytes.
    pub fn bytes(&self) -> usize {
        self.v4.bytes() + self.v6.bytes()
    }
}

struct EndpointTables {
    ingress: Option<Arc<RuleTable>>,
    egress: Option<Arc<RuleTable>>,
}

/// The decision for a new flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowDecision {
    /// Whether the flow (and with it its reverse direction) may pass.
    pub allow: bool,
    /// Whether a deciding rule asked for logging.
    pub log: bool,
    /// The source endpoint's egress decision, if it has an egress list.
    pub egress: Option<Decision>,
    /// The destination endpoint's ingress decision, if it has an ingress list.
    pub ingress: Option<Decision>,
    /// Generation of the snapshot that decided; a flow holding an older one is
    /// re-evaluated on its next packet.
    pub generation: u32,
}

/// Compiled rule lists by content, with the warnings compiling them gave.
type Lists = HashMap<Arc<RuleList>, (Arc<RuleTable>, Vec<PolicyError>)>;

/// An immutable compiled policy.
pub struct Policy {
    generation: u32,
    endpoints: HashMap<EndpointId, EndpointTables>,
    by_addr: HashMap<(u32, u128, bool), Owner>,
}

/// Who owns an address in a VRF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// No endpoint: outside the node's policy.
    Nobody,
    /// One endpoint.
    One(EndpointId),
    /// Several endpoints, as the backends of a service routed by ECMP all own its address:
    /// which one a flow is of follows from the port it comes in by or leaves by, which the
    /// dataplane knows and the address does not.
    Shared,
}

impl Owner {
    /// The endpoint, when there is exactly one.
    pub fn single(self) -> Option<EndpointId> {
        match self {
            Owner::One(ep) => Some(ep),
            Owner::Nobody | Owner::Shared => None,
        }
    }
}

impl Policy {
    /// Compiles `set`. Errors name the rule and field; rules that can never match are left
    /// out and reported in the returned warnings.
    pub fn compile(set: &PolicySet, generation: u32) -> Result<(Policy, Vec<PolicyError>), PolicyError> {
        Self::compile_reusing(set, generation, &Lists::new()).map(|(p, warnings, _)| (p, warnings))
    }

    /// [`compile`](Self::compile), taking the tables of lists equal to one in `before`
    /// from there rather than compiling them again; also returns this set's lists.
    fn compile_reusing(
        set: &PolicySet,
        generation: u32,
        before: &Lists,
    ) -> Result<(Policy, Vec<PolicyError>, Lists), PolicyError> {
        let mut warnings = Vec::new();
        let mut now = Lists::new();
        let mut compiled: HashMap<*const RuleList, Arc<RuleTable>> = HashMap::new();
        let mut table = |l: &Option<Arc<RuleList>>, warnings: &mut Vec<PolicyError>| -> Result<_, PolicyError> {
            let Some(l) = l else { return Ok(None) };
            let Entry::Vacant(e) = compiled.entry(Arc::as_ptr(l)) else {
                return Ok(compiled.get(&Arc::as_ptr(l)).cloned());
            };
            let (t, w) = match now.get(l).or_else(|| before.get(l)) {
                Some(done) => done.clone(),
                None => {
                    let mut w = Vec::new();
                    (Arc::new(RuleTable::compile(l, &mut w)?), w)
                }
            };
            warnings.extend(w.iter().cloned());
            now.insert(l.clone(), (t.clone(), w));
            Ok(Some(e.insert(t).clone()))
        };
        let mut endpoints = HashMap::new();
        let mut by_addr = HashMap::new();
        for ep in &set.endpoints {
            let tables = EndpointTables {
                ingress: table(&ep.ingress, &mut warnings)?,
                egress: table(&ep.egress, &mut warnings)?,
            };
            if endpoints.insert(ep.id, tables).is_some() {
                return Err(PolicyError {
                    rule: None,
                    field: "endpoints",
                    reason: format!("endpoint {} is defined twice", ep.id.0),
                });
            }
            for &a in &ep.addrs {
                by_addr
                    .entry((ep.vrf, addr_bits(a), a.is_ipv6()))
                    .and_modify(|o| {
                        if *o != Owner::One(ep.id) {
                            *o = Owner::Shared;
                        }
                    })
                    .or_insert(Owner::One(ep.id));
            }
        }
        Ok((
            Policy {
                generation,
                endpoints,
                by_addr,
            },
            warnings,
            now,
        ))
    }

    /// The generation this snapshot was published with.
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// The compiled list of `ep` in `dir`; `None` if the endpoint is unknown or open.
    pub fn table(&self, ep: EndpointId, dir: Direction) -> Option<&RuleTable> {
        let t = self.endpoints.get(&ep)?;
        match dir {
            Direction::Ingress => t.ingress.as_deref(),
            Direction::Egress => t.egress.as_deref(),
        }
    }

    /// Who owns `addr` in `vrf`.
    pub fn owner(&self, vrf: u32, addr: IpAddr) -> Owner {
        self.owner_bits(vrf, addr_bits(addr), addr.is_ipv6())
    }

    fn owner_bits(&self, vrf: u32, bits: u128, v6: bool) -> Owner {
        self.by_addr.get(&(vrf, bits, v6)).copied().unwrap_or(Owner::Nobody)
    }

    /// Who owns the source and who the destination address of `f`.
    pub fn owners(&self, f: &Fields) -> (Owner, Owner) {
        (self.owner_bits(f.vrf, f.src, f.v6), self.owner_bits(f.vrf, f.dst, f.v6))
    }

    /// The endpoint owning `addr` in `vrf` alone.
    pub fn endpoint_of(&self, vrf: u32, addr: IpAddr) -> Option<EndpointId> {
        self.owner(vrf, addr).single()
    }

    /// Decides a new flow: the egress list of the endpoint owning the source address, then
    /// the ingress list of the endpoint owning the destination; the flow passes only if
    /// both allow (an endpoint that is unknown or open in that direction allows). The
    /// reverse direction of an allowed flow is allowed without evaluation. A shared
    /// address ([`Owner::Shared`]) names no endpoint here: a caller that knows which of
    /// its owners the flow is of says so with [`Policy::evaluate_endpoints`].
    pub fn evaluate(&self, f: &Fields) -> FlowDecision {
        let (src, dst) = self.owners(f);
        self.evaluate_endpoints(src.single(), dst.single(), f)
    }

    /// [`Policy::evaluate`] with the endpoints already known (e.g. from the ingress port).
    pub fn evaluate_endpoints(&self, src: Option<EndpointId>, dst: Option<EndpointId>, f: &Fields) -> FlowDecision {
        let egress = src
            .and_then(|e| self.table(e, Direction::Egress))
            .map(|t| t.classify(f));
        // Ingress is only consulted if egress allowed, so its counters reflect traffic that
        // actually reached it.
        let ingress = if egress.is_none_or(|d| d.action.allows()) {
            dst.and_then(|e| self.table(e, Direction::Ingress))
                .map(|t| t.classify(f))
        } else {
            None
        };
        let allow = egress.is_none_or(|d| d.action.allows()) && ingress.is_none_or(|d| d.action.allows());
        FlowDecision {
            allow,
            log: egress.is_some_and(|d| d.action.logs()) || ingress.is_some_and(|d| d.action.logs()),
            egress,
            ingress,
            generation: self.generation,
        }
    }
}

/// The published policy: workers load the current snapshot, the control plane swaps in a
/// new one. Generations start at 1 and rise by one per publish.
pub struct PolicyStore {
    current: ArcSwap<Policy>,
    next: AtomicU32,
    /// The generation of `current`, stored after it (the newest when publishes race).
    published: AtomicU32,
    /// Policies replaced while workers may hold them still, freed by
    /// [`PolicyStore::reap`] on the publisher's thread (never by a worker, between
    /// bursts).
    retired: Mutex<Vec<Arc<Policy>>>,
    /// The lists the last [`prepare`](PolicyStore::prepare) compiled: the next compiles
    /// only lists it has not seen, so one pod's change in a big cluster costs that pod's
    /// lists, not every list.
    lists: Mutex<Lists>,
}

impl Default for PolicyStore {
    fn default() -> Self {
        Self::new()
    }
}

impl PolicyStore {
    /// A store holding the empty policy (everything open), generation 0.
    pub fn new() -> Self {
        let (empty, _) = Policy::compile(&PolicySet::default(), 0).expect("the empty set compiles");
        PolicyStore {
            current: ArcSwap::from_pointee(empty),
            next: AtomicU32::new(1),
            published: AtomicU32::new(0),
            retired: Mutex::default(),
            lists: Mutex::default(),
        }
    }

    /// The generation of the policy most recently published: a worker that keeps a
    /// snapshot across bursts compares its generation with this (one load) to know when to
    /// take a new one.
    #[inline]
    pub fn generation(&self) -> u32 {
        self.published.load(Ordering::Acquire)
    }

    /// The current snapshot.
    pub fn load(&self) -> Arc<Policy> {
        self.current.load_full()
    }

    /// Compiles `set` and, if it compiles, makes it current. On error the old policy stays.
    /// Returns the new generation and the warnings.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use policy::*;
    /// let store = PolicyStore::new();
    /// let web = Arc::new(RuleList {
    ///     rules: vec![Rule { proto: Some(6), dst_ports: Some(PortRange::single(80)), ..Rule::any(RuleId(1), Action::Allow) }],
    ///     default: Action::Deny,
    /// });
    /// let ep = Endpoint { id: EndpointId(1), vrf: 0, addrs: vec!["10.0.0.2".parse().unwrap()], ingress: Some(web), egress: None };
    /// let (generation, warnings) = store.publish(&PolicySet { endpoints: vec![ep] }).unwrap();
    /// assert_eq!((generation, warnings.len()), (1, 0));
    ///
    /// let key = wire::flow::FlowKey::v4("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap(), 6, 40000, 80);
    /// let d = store.load().evaluate(&Fields::from_key(&key, None));
    /// assert!(d.allow && d.ingress.unwrap().rule == Some(RuleId(1)));
    /// ```
    pub fn publish(&self, set: &PolicySet) -> Result<(u32, Vec<PolicyError>), PolicyError> {
        let (p, warnings) = self.prepare(set)?;
        let generation = p.generation();
        // Refused only when a policy prepared later is current: as if this one had been
        // published just before it.
        let _ = self.install(p);
        Ok((generation, warnings))
    }

    /// Compiles `set` under the next generation without making it current: the slow half
    /// of [`publish`](Self::publish), done ahead of a moment when the swap must be quick
    /// (a live port change). Returns it with the warnings.
    ///
    /// A list equal to one the last prepare compiled (the same rules, however built) is
    /// not compiled again: its table, and with it its hit counters, carry over.
    pub fn prepare(&self, set: &PolicySet) -> Result<(Policy, Vec<PolicyError>), PolicyError> {
        let mut lists = self.lists.lock().unwrap_or_else(PoisonError::into_inner);
        let (p, warnings, now) = Policy::compile_reusing(set, self.next.fetch_add(1, Ordering::Relaxed), &lists)?;
        *lists = now;
        Ok((p, warnings))
    }

    /// Makes a policy from [`prepare`](Self::prepare) current and returns its generation;
    /// `None` (and nothing changes) if one prepared later is current already.
    pub fn install(&self, p: Policy) -> Option<u32> {
        let generation = p.generation();
        let p = Arc::new(p);
        let before = self.current.rcu(|cur| {
            if cur.generation() > generation {
                cur.clone()
            } else {
                p.clone()
            }
        });
        if before.generation() > generation {
            return None;
        }
        // Release, after the store: a worker that sees this generation loads a policy at
        // least as new.
        self.published.fetch_max(generation, Ordering::Release);
        self.retired.lock().unwrap_or_else(PoisonError::into_inner).push(before);
        self.reap();
        Some(generation)
    }

    /// Frees the replaced policies no worker holds any more (an idle worker keeps its
    /// last); installing calls it. Returns how many replaced policies are still held.
    pub fn reap(&self) -> usize {
        let mut retired = self.retired.lock().unwrap_or_else(PoisonError::into_inner);
        retired.retain(|p| Arc::strong_count(p) > 1);
        retired.len()
    }
}
