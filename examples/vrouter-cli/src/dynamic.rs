//! Routes a running router takes over its control socket (`route add|del`), for route
//! daemons and operators that change a few routes without editing and re-reading a file
//! of thousands. A command line is checked whole, then published at once: only the
//! changed prefixes are patched (microseconds in a big VRF: docs/fib.md).
//!
//! These routes live beside the file's. The file stays authoritative: a command may not
//! add or remove a route the file has, and a reload keeps the dynamic routes except those
//! the new file routes itself or whose VRF or nexthop it no longer defines; the reload
//! names each one it drops. They are not written anywhere: a restarted router has the
//! file's routes only (a route daemon announces its own again).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use vrouter::fib::{Fib, FibBuilder, NexthopId, VrfId};

/// One `route` command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteCommand {
    /// `route add vrf V PREFIX/LEN nexthop N`: adds the route, or changes its nexthop.
    Add {
        /// VRF, prefix and length.
        route: RouteKey,
        /// Where it goes.
        nexthop: NexthopId,
    },
    /// `route del vrf V PREFIX/LEN`.
    Del(RouteKey),
}

/// A route's VRF, prefix and prefix length.
pub type RouteKey = (VrfId, IpAddr, u8);

/// The syntax, for error messages and the control socket's help.
pub const SYNTAX: &str =
    "route add vrf V PREFIX/LEN nexthop N | route del vrf V PREFIX/LEN (several joined by `;` apply together)";

/// Reads `route add ...; route del ...`: each command's words, in order.
pub fn parse(line: &str) -> Result<Vec<RouteCommand>, String> {
    let commands: Vec<RouteCommand> = line
        .split(';')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(parse_one)
        .collect::<Result<_, _>>()?;
    if commands.is_empty() {
        return Err(format!("no route command; {SYNTAX}"));
    }
    Ok(commands)
}

fn parse_one(cmd: &str) -> Result<RouteCommand, String> {
    let words: Vec<&str> = cmd.split_whitespace().collect();
    let key = |vrf: &str, prefix: &str| -> Result<RouteKey, String> {
        let vrf = vrf.parse().map_err(|_| format!("`{cmd}`: `{vrf}` is not a VRF id"))?;
        let (addr, len) = prefix
            .split_once('/')
            .ok_or_else(|| format!("`{cmd}`: `{prefix}` is not ADDRESS/LENGTH"))?;
        let addr = addr
            .parse()
            .map_err(|_| format!("`{cmd}`: `{addr}` is not an IP address"))?;
        let len = len
            .parse()
            .map_err(|_| format!("`{cmd}`: `{len}` is not a prefix length"))?;
        Ok((vrf, addr, len))
    };
    match words.as_slice() {
        ["route", "add", "vrf", vrf, prefix, "nexthop", nh] => Ok(RouteCommand::Add {
            route: key(vrf, prefix)?,
            nexthop: nh.parse().map_err(|_| format!("`{cmd}`: `{nh}` is not a nexthop id"))?,
        }),
        ["route", "del", "vrf", vrf, prefix] => Ok(RouteCommand::Del(key(vrf, prefix)?)),
        _ => Err(format!("`{cmd}`: expected {SYNTAX}")),
    }
}

/// How many routes are dynamic, and how many `route` lines were applied and refused.
#[derive(Debug, Default)]
pub struct RouteCounters {
    /// Dynamic routes now.
    pub routes: AtomicUsize,
    /// Lines applied.
    pub applied: AtomicU64,
    /// Lines refused: unreadable, or failing a check (nothing of them applied).
    pub refused: AtomicU64,
}

impl RouteCounters {
    /// Counts a line applied, or refused.
    pub fn line(&self, applied: bool) {
        let c = if applied { &self.applied } else { &self.refused };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Dynamic routes put aside by [`Routing::saved`].
pub struct Saved(BTreeMap<RouteKey, NexthopId>);

/// The router's routing state: the builder all publishes go through (the file's routes
/// and the dynamic ones), and which routes are dynamic.
#[derive(Default)]
pub struct Routing {
    /// What is published.
    pub builder: FibBuilder,
    /// The routes added by command, with their nexthops.
    dynamic: BTreeMap<RouteKey, NexthopId>,
    /// Their count and the lines applied, for readers that must not wait for a reload
    /// holding the state.
    counters: Arc<RouteCounters>,
}

impl Routing {
    /// Starts from a file's routes, with no dynamic ones.
    pub fn new(builder: FibBuilder) -> Self {
        Routing {
            builder,
            dynamic: BTreeMap::new(),
            counters: Arc::default(),
        }
    }

    /// How many routes are dynamic.
    pub fn dynamic_count(&self) -> usize {
        self.dynamic.len()
    }

    /// The dynamic routes' counters, kept current without the state's lock (statistics
    /// and metrics read them while a reload holds the lock).
    pub fn counters(&self) -> Arc<RouteCounters> {
        self.counters.clone()
    }

    fn counted(&mut self) {
        self.counters.routes.store(self.dynamic.len(), Ordering::Relaxed);
    }

    /// Checks every command against the state (and the commands before it), then applies
    /// them all and publishes once; on any error nothing changes. Returns the status line.
    /// Counted as a line applied or refused.
    pub fn apply(&mut self, commands: &[RouteCommand], fib: &Fib) -> Result<String, String> {
        let applied = self.apply_checked(commands, fib);
        self.counters.line(applied.is_ok());
        applied
    }

    fn apply_checked(&mut self, commands: &[RouteCommand], fib: &Fib) -> Result<String, String> {
        let mut dynamic = self.dynamic.clone();
        let (mut added, mut removed) = (0, 0);
        for c in commands {
            match *c {
                RouteCommand::Add {
                    route: (vrf, prefix, len),
                    nexthop,
                } => {
                    let what = format!("route add vrf {vrf} {prefix}/{len}");
                    self.builder
                        .check_route(vrf, prefix, len)
                        .map_err(|e| format!("{what}: {e}"))?;
                    if !self.builder.has_nexthop(nexthop) {
                        return Err(format!("{what}: nexthop {nexthop} is not defined"));
                    }
                    if self.file_routes((vrf, prefix, len)) {
                        return Err(format!("{what}: the config file routes this prefix; change it there"));
                    }
                    dynamic.insert((vrf, prefix, len), nexthop);
                    added += 1;
                }
                RouteCommand::Del(key @ (vrf, prefix, len)) => {
                    let what = format!("route del vrf {vrf} {prefix}/{len}");
                    if dynamic.remove(&key).is_none() {
                        return Err(if self.file_routes(key) {
                            format!("{what}: the config file routes this prefix; change it there")
                        } else {
                            format!("{what}: no such dynamic route")
                        });
                    }
                    removed += 1;
                }
            }
        }
        for key @ &(vrf, prefix, len) in self.dynamic.keys() {
            if !dynamic.contains_key(key) {
                self.builder.remove_route(vrf, prefix, len);
            }
        }
        for (&(vrf, prefix, len), &nexthop) in &dynamic {
            if self.dynamic.get(&(vrf, prefix, len)) != Some(&nexthop) {
                self.builder
                    .add_route(vrf, prefix, len, nexthop)
                    .map_err(|e| format!("route add: {e}"))?;
            }
        }
        self.dynamic = dynamic;
        self.counted();
        let g = self.builder.publish(fib).map_err(|e| e.to_string())?;
        Ok(format!(
            "routing generation {g}: {added} added, {removed} removed; {} dynamic routes",
            self.dynamic.len()
        ))
    }

    /// Whether the route for `key` is one of the file's (in the builder, not dynamic).
    fn file_routes(&self, (vrf, prefix, len): RouteKey) -> bool {
        !self.dynamic.contains_key(&(vrf, prefix, len)) && self.builder.route(vrf, prefix, len).is_some()
    }

    /// Takes a reloaded file's routes, with the dynamic routes the file leaves room for,
    /// into the builder (nothing is published). Returns why each dropped route went.
    pub fn take_file(&mut self, mut file: FibBuilder) -> Vec<String> {
        let mut dropped = Vec::new();
        self.dynamic.retain(|&(vrf, prefix, len), &mut nexthop| {
            let why = if file.route(vrf, prefix, len).is_some() {
                Some("the file routes it now".to_string())
            } else if !file.has_nexthop(nexthop) {
                Some(format!("nexthop {nexthop} is gone"))
            } else {
                file.add_route(vrf, prefix, len, nexthop).err().map(|e| e.to_string())
            };
            if let Some(why) = &why {
                dropped.push(format!("dynamic route vrf {vrf} {prefix}/{len} dropped: {why}"));
            }
            why.is_none()
        });
        self.builder.replace_with(file);
        self.counted();
        dropped
    }

    /// The route `dst` takes in `vrf` (`route get`): the longest prefix holding it, its
    /// nexthop, and whether it was added by command.
    pub fn route_for(&self, vrf: VrfId, dst: IpAddr) -> Option<(RouteKey, NexthopId, bool)> {
        let (prefix, len, nexthop) = self.builder.longest_match(vrf, dst)?;
        let key = (vrf, prefix, len);
        Some((key, nexthop, self.dynamic.contains_key(&key)))
    }

    /// The dynamic routes as they are, for [`Routing::restore`].
    pub fn saved(&self) -> Saved {
        Saved(self.dynamic.clone())
    }

    /// Makes `saved` the dynamic routes again, for when the file that dropped some is
    /// given up (its ports did not start): the next [`Routing::take_file`] routes them.
    pub fn restore(&mut self, saved: Saved) {
        self.dynamic = saved.0;
        self.counted();
    }

    /// `show routes` lines for the dynamic routes.
    pub fn listing(&self) -> impl Iterator<Item = String> + '_ {
        self.dynamic
            .iter()
            .map(|((vrf, prefix, len), nh)| format!("vrf {vrf} {prefix}/{len} -> nexthop {nh} dynamic"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vrouter::fib::Nexthop;

    /// VRFs 0 and 1, nexthops 1 and 2, and the file's route 10.0.1.0/24 -> 1 in VRF 1.
    fn file() -> FibBuilder {
        let mut b = FibBuilder::new();
        b.add_vrf(0).unwrap();
        b.add_vrf(1).unwrap();
        for id in [1, 2] {
            b.set_nexthop(id, Nexthop::Discard).unwrap();
        }
        b.add_route(1, "10.0.1.0".parse().unwrap(), 24, 1).unwrap();
        b
    }

    fn started() -> (Routing, Fib) {
        let fib = Fib::new();
        let mut r = Routing::new(file());
        r.builder.publish(&fib).unwrap();
        (r, fib)
    }

    fn run(r: &mut Routing, fib: &Fib, line: &str) -> Result<String, String> {
        r.apply(&parse(line)?, fib)
    }

    fn lookup(fib: &Fib, vrf: VrfId, ip: &str) -> Option<NexthopId> {
        fib.snapshot().lookup(vrf, ip.parse().unwrap()).ok()
    }

    #[test]
    fn parses_commands_and_names_what_is_wrong() {
        assert_eq!(
            parse("route add vrf 1 10.9.0.0/16 nexthop 2 ; route del vrf 0 2001:db8::/32;").unwrap(),
            vec![
                RouteCommand::Add {
                    route: (1, "10.9.0.0".parse().unwrap(), 16),
                    nexthop: 2
                },
                RouteCommand::Del((0, "2001:db8::".parse().unwrap(), 32)),
            ]
        );
        for (line, says) in [
            ("route add vrf x 10.0.0.0/8 nexthop 1", "`x` is not a VRF id"),
            ("route add vrf 1 10.0.0.0 nexthop 1", "is not ADDRESS/LENGTH"),
            ("route add vrf 1 10.0.0.256/8 nexthop 1", "is not an IP address"),
            ("route add vrf 1 10.0.0.0/999 nexthop 1", "`999` is not a prefix length"),
            ("route add vrf 1 10.0.0.0/8 nexthop -1", "`-1` is not a nexthop id"),
            ("route add vrf 1 10.0.0.0/8", "expected route add"),
            ("route flap", "expected route add"),
            (" ; ", "no route command"),
        ] {
            let e = parse(line).unwrap_err();
            assert!(e.contains(says), "{line}: {e}");
        }
    }

    #[test]
    fn commands_route_at_once_and_take_only_dynamic_routes_back() {
        let (mut r, fib) = started();
        assert_eq!(lookup(&fib, 1, "10.9.1.1"), None);
        let line = run(
            &mut r,
            &fib,
            "route add vrf 1 10.9.0.0/16 nexthop 2; route add vrf 1 2001:db8::/32 nexthop 1",
        )
        .unwrap();
        assert!(line.ends_with("2 added, 0 removed; 2 dynamic routes"), "{line}");
        assert_eq!(lookup(&fib, 1, "10.9.1.1"), Some(2));
        assert_eq!(lookup(&fib, 1, "2001:db8::1"), Some(1));
        // A second add changes the nexthop.
        run(&mut r, &fib, "route add vrf 1 10.9.0.0/16 nexthop 1").unwrap();
        assert_eq!(lookup(&fib, 1, "10.9.1.1"), Some(1));
        assert_eq!(
            r.listing().collect::<Vec<_>>(),
            [
                "vrf 1 10.9.0.0/16 -> nexthop 1 dynamic",
                "vrf 1 2001:db8::/32 -> nexthop 1 dynamic"
            ]
        );
        assert_eq!(
            r.route_for(1, "10.9.3.4".parse().unwrap()),
            Some(((1, "10.9.0.0".parse().unwrap(), 16), 1, true))
        );
        assert_eq!(
            r.route_for(1, "10.0.1.9".parse().unwrap()),
            Some(((1, "10.0.1.0".parse().unwrap(), 24), 1, false)),
            "the file's route"
        );
        assert_eq!(r.route_for(0, "10.9.3.4".parse().unwrap()), None);
        run(&mut r, &fib, "route del vrf 1 10.9.0.0/16").unwrap();
        assert_eq!(lookup(&fib, 1, "10.9.1.1"), None);
        assert_eq!(lookup(&fib, 1, "10.0.1.1"), Some(1), "the file's route stays");
        assert_eq!(r.dynamic_count(), 1);
        let c = r.counters();
        assert_eq!(c.routes.load(Ordering::Relaxed), 1);
        assert_eq!(c.applied.load(Ordering::Relaxed), 3);
        assert_eq!(c.refused.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_batch_with_one_bad_command_changes_nothing() {
        let (mut r, fib) = started();
        let g = fib.snapshot().generation();
        for (line, says) in [
            (
                "route add vrf 1 10.9.0.0/16 nexthop 2; route add vrf 7 10.8.0.0/16 nexthop 2",
                "VRF 7 does not exist",
            ),
            (
                "route add vrf 1 10.9.0.0/16 nexthop 2; route add vrf 1 10.8.0.0/16 nexthop 9",
                "nexthop 9 is not defined",
            ),
            (
                "route add vrf 1 10.9.0.0/16 nexthop 2; route add vrf 1 10.8.0.1/16 nexthop 2",
                "host bits set",
            ),
            (
                "route add vrf 1 10.9.0.0/16 nexthop 2; route add vrf 1 10.0.0.0/33 nexthop 2",
                "length above 32",
            ),
            (
                "route add vrf 1 10.0.1.0/24 nexthop 2",
                "the config file routes this prefix",
            ),
            ("route del vrf 1 10.0.1.0/24", "the config file routes this prefix"),
            (
                "route add vrf 1 10.9.0.0/16 nexthop 2; route del vrf 1 10.7.0.0/16",
                "no such dynamic route",
            ),
            (
                "route add vrf 1 10.9.0.0/16 nexthop 2; route del vrf 1 10.9.0.0/16; route del vrf 1 10.9.0.0/16",
                "no such dynamic route",
            ),
        ] {
            let e = run(&mut r, &fib, line).unwrap_err();
            assert!(e.contains(says), "{line}: {e}");
            assert_eq!(fib.snapshot().generation(), g, "{line}: nothing published");
            assert_eq!(r.dynamic_count(), 0, "{line}");
            assert_eq!(lookup(&fib, 1, "10.9.0.1"), None, "{line}");
        }
        // Added and removed in one line: published, and gone.
        let line = run(
            &mut r,
            &fib,
            "route add vrf 1 10.9.0.0/16 nexthop 2; route del vrf 1 10.9.0.0/16",
        )
        .unwrap();
        assert!(line.ends_with("1 added, 1 removed; 0 dynamic routes"), "{line}");
        assert_eq!(lookup(&fib, 1, "10.9.0.1"), None);
        let c = r.counters();
        assert_eq!(
            (c.applied.load(Ordering::Relaxed), c.refused.load(Ordering::Relaxed)),
            (1, 8)
        );
    }

    #[test]
    fn reloads_keep_dynamic_routes_the_file_leaves_room_for() {
        let (mut r, fib) = started();
        run(
            &mut r,
            &fib,
            "route add vrf 1 10.9.0.0/16 nexthop 2; route add vrf 1 10.8.0.0/16 nexthop 1; route add vrf 0 10.7.0.0/16 nexthop 2; route add vrf 1 10.6.0.0/16 nexthop 1",
        )
        .unwrap();
        // The new file routes 10.8.0.0/16 itself, has no nexthop 2 and no VRF 0 routes of
        // its own; 10.6.0.0/16 stays.
        let mut f = FibBuilder::new();
        f.add_vrf(1).unwrap();
        f.set_nexthop(1, Nexthop::Discard).unwrap();
        f.set_nexthop(3, Nexthop::Discard).unwrap();
        f.add_route(1, "10.8.0.0".parse().unwrap(), 16, 3).unwrap();
        let mut dropped = r.take_file(f);
        dropped.sort();
        assert_eq!(
            dropped,
            [
                "dynamic route vrf 0 10.7.0.0/16 dropped: nexthop 2 is gone",
                "dynamic route vrf 1 10.8.0.0/16 dropped: the file routes it now",
                "dynamic route vrf 1 10.9.0.0/16 dropped: nexthop 2 is gone",
            ]
        );
        r.builder.publish(&fib).unwrap();
        assert_eq!(lookup(&fib, 1, "10.6.0.1"), Some(1));
        assert_eq!(lookup(&fib, 1, "10.8.0.1"), Some(3));
        assert_eq!(lookup(&fib, 1, "10.9.0.1"), None);
        assert_eq!(
            r.listing().collect::<Vec<_>>(),
            ["vrf 1 10.6.0.0/16 -> nexthop 1 dynamic"]
        );
        // 10.8.0.0/16 is the file's now: commands may not touch it.
        assert!(run(&mut r, &fib, "route del vrf 1 10.8.0.0/16").is_err());
        // A file given up: what it dropped comes back with the file before it.
        let saved = r.saved();
        let mut empty = FibBuilder::new();
        empty.add_vrf(1).unwrap();
        assert_eq!(r.take_file(empty).len(), 1);
        r.restore(saved);
        let mut f = FibBuilder::new();
        f.add_vrf(1).unwrap();
        f.set_nexthop(1, Nexthop::Discard).unwrap();
        assert!(r.take_file(f).is_empty());
        r.builder.publish(&fib).unwrap();
        assert_eq!(lookup(&fib, 1, "10.6.0.1"), Some(1));
        // A file without VRF 1 takes the last one.
        let mut f = FibBuilder::new();
        f.add_vrf(0).unwrap();
        f.set_nexthop(1, Nexthop::Discard).unwrap();
        let dropped = r.take_file(f);
        assert_eq!(dropped.len(), 1);
        assert!(dropped[0].contains("VRF 1 does not exist"), "{dropped:?}");
        assert_eq!(r.dynamic_count(), 0);
        assert_eq!(r.counters().routes.load(Ordering::Relaxed), 0);
    }
}
