//! The route and nexthop object dumps our netlink parser reads, cross-checked against
//! iproute2's own reading of the same tables (`ip -j -d route show table all`, `ip -j
//! nexthop show`), in a namespace of the test's making with routes and objects of every
//! kind the kernel routes follower meets.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use vrouter::fib::{Fib, FibBuilder};
use vrouter::lab::{Netns, Veth};
use vrouter_cli::dynamic::Routing;
use vrouter_cli::kernel_routes::{Follower, KernelRoutes, PROTOCOLS, PortDevice, device_name};
use vrouter_cli::netlink::{Dump, Message, ObjectVia, Received, RouteSocket, parse};

const KINDS: [&str; 9] = [
    "unspec",
    "unicast",
    "local",
    "broadcast",
    "anycast",
    "multicast",
    "blackhole",
    "unreachable",
    "prohibit",
];

fn table_name(t: u32) -> String {
    match t {
        253 => "default".into(),
        254 => "main".into(),
        255 => "local".into(),
        t => t.to_string(),
    }
}

fn protocol_name(p: u8) -> String {
    PROTOCOLS
        .iter()
        .find(|(_, n)| *n == p)
        .map(|(name, _)| name.to_string())
        .unwrap_or_else(|| p.to_string())
}

/// Every route of both families, or every nexthop object, as our parser reads the dump,
/// one line each.
fn ours(what: Dump) -> BTreeSet<String> {
    let mut sock = RouteSocket::for_dumps(Duration::from_millis(200)).unwrap();
    sock.request_dump(what).unwrap();
    let mut buf = vec![0u8; 1 << 16];
    let mut out = BTreeSet::new();
    loop {
        let Received::Bytes(n) = sock.recv(&mut buf).unwrap() else {
            panic!("the dump stopped short")
        };
        for m in parse(&buf[..n]).unwrap() {
            match m {
                Message::Done => return out,
                Message::Nexthop(o) => {
                    let via = match o.via {
                        ObjectVia::Blackhole => "blackhole".to_string(),
                        ObjectVia::Hop(h) => format!(
                            "{}@{}",
                            h.gateway.map(|g| g.to_string()).unwrap_or_default(),
                            device_name(h.ifindex).unwrap_or_default()
                        ),
                        ObjectVia::Group(m) => {
                            let m: Vec<String> = m.iter().map(|(id, w)| format!("{id}*{w}")).collect();
                            format!("group {}", m.join(","))
                        }
                    };
                    out.insert(format!("object {} {via}", o.id));
                }
                Message::Route(r) => {
                    let hops: Vec<String> = r
                        .hops
                        .iter()
                        .map(|h| {
                            let gw = h.gateway.map(|g| g.to_string()).unwrap_or_default();
                            format!("{gw}@{}*{}", device_name(h.ifindex).unwrap_or_default(), h.weight)
                        })
                        .collect();
                    let nhid = r.nexthop_object.map(|n| format!(" nhid {n}")).unwrap_or_default();
                    out.insert(format!(
                        "table {} {} {}/{} proto {} metric {}{nhid} hops {}",
                        table_name(r.table),
                        KINDS[usize::from(r.kind).min(8)],
                        r.dst,
                        r.len,
                        protocol_name(r.protocol),
                        r.metric,
                        hops.join(",")
                    ));
                }
                _ => {}
            }
        }
    }
}

/// The same lines from iproute2's JSON.
fn iproute2(ns: &Netns) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for family in ["-4", "-6"] {
        let o = ns
            .exec(&["ip", family, "-j", "-d", "route", "show", "table", "all"])
            .unwrap();
        let routes: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
        for r in routes {
            let s = |k: &str| r.get(k).and_then(Value::as_str).map(str::to_string);
            let v6 = family == "-6";
            let dst = match s("dst").unwrap() {
                d if d == "default" => if v6 { "::/0" } else { "0.0.0.0/0" }.to_string(),
                d if d.contains('/') => d,
                d => format!("{d}/{}", if v6 { 128 } else { 32 }),
            };
            let hop = |h: &Value| {
                // Another family's gateway comes as `via` (RTA_VIA).
                let gw = h
                    .get("gateway")
                    .or_else(|| h.get("via").and_then(|v| v.get("host")))
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let dev = h.get("dev").and_then(Value::as_str).unwrap_or_default();
                let weight = h.get("weight").and_then(Value::as_u64).unwrap_or(1);
                format!("{gw}@{dev}*{weight}")
            };
            let hops: Vec<String> = match r.get("nexthops").and_then(Value::as_array) {
                Some(hs) => hs.iter().map(hop).collect(),
                None if r.get("dev").is_some() || r.get("gateway").is_some() => vec![hop(&r)],
                None => vec![],
            };
            let nhid = r.get("nhid").map(|n| format!(" nhid {n}")).unwrap_or_default();
            out.insert(format!(
                "table {} {} {dst} proto {} metric {}{nhid} hops {}",
                s("table").unwrap_or_else(|| "main".into()),
                s("type").unwrap_or_else(|| "unicast".into()),
                s("protocol").unwrap_or_else(|| "boot".into()),
                r.get("metric").and_then(Value::as_u64).unwrap_or(0),
                hops.join(",")
            ));
        }
    }
    out
}

/// The nexthop objects' lines from iproute2's JSON.
fn iproute2_objects(ns: &Netns) -> BTreeSet<String> {
    let o = ns.exec(&["ip", "-j", "nexthop", "show"]).unwrap();
    let objects: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
    objects
        .iter()
        .map(|n| {
            let via = if n.get("blackhole").is_some() {
                "blackhole".to_string()
            } else if let Some(g) = n.get("group").and_then(Value::as_array) {
                let m: Vec<String> = g
                    .iter()
                    .map(|m| format!("{}*{}", m["id"], m.get("weight").and_then(Value::as_u64).unwrap_or(1)))
                    .collect();
                format!("group {}", m.join(","))
            } else {
                format!(
                    "{}@{}",
                    n.get("gateway").and_then(Value::as_str).unwrap_or_default(),
                    n.get("dev").and_then(Value::as_str).unwrap_or_default()
                )
            };
            format!("object {} {via}", n["id"])
        })
        .collect()
}

/// `ip` with the words of `cmd`, in `ns`.
fn ip(ns: &Netns, cmd: &str) {
    let args: Vec<&str> = cmd.split(' ').collect();
    ns.exec(&[&["ip"], args.as_slice()].concat()).unwrap();
}

/// A namespace tagged `tag` with a veth (to a peer namespace) holding 10.1.0.1/24 and
/// fd00::1/64: the namespaces, the veth, and the device's name.
fn lab(tag: &str) -> (Netns, Netns, Veth, String) {
    let (ns, peer) = (Netns::new(tag).unwrap(), Netns::new("np").unwrap());
    let veth = Veth::new(&ns, &peer, 1).unwrap();
    let dev = veth.a.clone();
    ns.exec(&[
        "sysctl",
        "-qw",
        "net.ipv6.conf.all.disable_ipv6=0",
        &format!("net.ipv6.conf.{dev}.disable_ipv6=0"),
    ])
    .unwrap();
    ip(&ns, &format!("addr add 10.1.0.1/24 dev {dev}"));
    ip(&ns, &format!("-6 addr add fd00::1/64 dev {dev} nodad"));
    (ns, peer, veth, dev)
}

#[test]
fn our_dump_reads_as_iproute2_reads_it() {
    let (ns, _peer, _veth, dev) = lab("nl");
    for cmd in [
        "route add 10.2.0.0/16 via 10.1.0.2 metric 20",
        "route add 10.3.0.0/16 nexthop via 10.1.0.2 weight 1 nexthop via 10.1.0.3 weight 3",
        "route add blackhole 10.4.0.0/16",
        "route add unreachable 10.5.0.0/16 table 100",
        "route add prohibit 10.5.0.0/16 table 70000",
        "route add 10.6.0.0/16 via 10.1.0.2 proto bird",
        "route add default via 10.1.0.2 metric 100",
        &format!("route add 10.10.0.0/16 via inet6 fe80::2 dev {dev}"),
        "-6 route add fd01::/48 via fd00::2 metric 1024",
        "-6 route add fd02::/48 nexthop via fd00::2 weight 2 nexthop via fd00::3 weight 5",
        "-6 route add blackhole fd03::/48",
        &format!("nexthop add id 10 via 10.1.0.2 dev {dev}"),
        &format!("nexthop add id 11 via 10.1.0.3 dev {dev}"),
        "nexthop add id 12 group 10/11,3",
        "nexthop add id 13 blackhole",
        &format!("-6 nexthop add id 14 via fd00::2 dev {dev}"),
        &format!("nexthop add id 15 dev {dev}"),
        "route add 10.7.0.0/16 nhid 12",
        "route add 10.8.0.0/16 nhid 13",
        "route add 10.9.0.0/16 nhid 15",
        "-6 route add fd04::/48 nhid 14",
    ] {
        ip(&ns, cmd);
    }
    let (got, want) = ns.run(|| (ours(Dump::Routes), iproute2(&ns)));
    assert_eq!(got, want);
    let (objects, want) = ns.run(|| (ours(Dump::Nexthops), iproute2_objects(&ns)));
    assert_eq!(objects, want);
    assert!(objects.contains("object 12 group 10*1,11*3"), "{objects:#?}");
    assert_eq!(objects.len(), 6, "{objects:#?}");
    for line in [
        "table main unicast 10.3.0.0/16 proto boot metric 0 hops 10.1.0.2@",
        "table 70000 prohibit 10.5.0.0/16 proto boot metric 0 hops ",
        "table main unicast 10.6.0.0/16 proto bird metric 0 hops 10.1.0.2@",
        "table main unicast fd02::/48 proto boot metric 1024 hops fd00::2@",
        "table main unicast 10.7.0.0/16 proto boot metric 0 nhid 12 hops 10.1.0.2@",
        "table main unicast 10.10.0.0/16 proto boot metric 0 hops fe80::2@",
    ] {
        assert!(got.iter().any(|l| l.starts_with(line)), "{line}\n{got:#?}");
    }
}

/// A dump of one table (`Dump::Table`, what the follower asks for) holds that table's
/// routes, of both families, and no other table's: the kernel filters, so a follower of
/// a small table does not read a big main table on every link change. A table that does
/// not exist dumps empty, without an error.
#[test]
fn a_dump_of_one_table_holds_its_routes_alone() {
    let (ns, _peer, _veth, _dev) = lab("nt");
    for cmd in [
        "route add 10.2.0.0/16 via 10.1.0.2",
        "route add 10.3.0.0/16 via 10.1.0.2 table 100",
        "route add blackhole 10.4.0.0/16 table 100",
        "-6 route add fd01::/48 via fd00::2 table 100",
        "route add 10.5.0.0/16 via 10.1.0.3 table 70000",
        "-6 route add fd02::/48 via fd00::3 table 70000",
    ] {
        ip(&ns, cmd);
    }
    let (all, listed) = ns.run(|| (ours(Dump::Routes), iproute2(&ns)));
    for table in [100, 70000] {
        let got = ns.run(|| ours(Dump::Table(table)));
        let prefix = format!("table {table} ");
        let want: BTreeSet<String> = listed.iter().filter(|l| l.starts_with(&prefix)).cloned().collect();
        assert_eq!(got, want, "table {table}");
        assert!(got.len() >= 2 && got.len() < all.len(), "table {table}: {got:#?}");
    }
    assert!(ns.run(|| ours(Dump::Table(555))).is_empty());
}

/// A follower of the main table into VRF 0 against a router whose one port `a` is on
/// `dev`.
fn follower(dev: &str) -> (Follower, Routing, Fib) {
    let mut b = FibBuilder::new();
    b.add_vrf(0).unwrap();
    let fib = Fib::new();
    b.publish(&fib).unwrap();
    let port = PortDevice {
        name: "a".into(),
        device: dev.into(),
        host: false,
    };
    let cfg = KernelRoutes {
        table: 254,
        vrf: 0,
        protocols: vec![],
    };
    (Follower::new(cfg, vec![port]), Routing::new(b, vec!["a".into()]), fib)
}

/// Notes the messages waiting on `sock` (with `dump`, every message up to the dump's end,
/// waiting for them), and applies them.
fn take(sock: &mut RouteSocket, f: &mut Follower, r: &mut Routing, fib: &Fib, dump: bool) {
    let mut buf = vec![0u8; 1 << 16];
    let mut keys = Vec::new();
    loop {
        let got = if dump {
            sock.recv(&mut buf)
        } else {
            sock.try_recv(&mut buf)
        };
        let Received::Bytes(n) = got.unwrap() else { break };
        let mut done = false;
        for m in parse(&buf[..n]).unwrap() {
            match m {
                Message::Route(x) => keys.extend(f.note(x)),
                Message::Nexthop(o) => keys.extend(f.note_object(o)),
                Message::Done => done = true,
                _ => {}
            }
        }
        if done {
            break;
        }
    }
    f.reconcile(&keys, r, fib, &device_name);
}

/// `show kernel-routes` without the nexthop ids (two followers number them apart).
fn without_ids(listing: Vec<String>) -> Vec<String> {
    listing
        .into_iter()
        .map(|l| match l.split_once(": nexthop ") {
            Some((p, rest)) => format!("{p}: {}", rest.split_once(": ").map_or(rest, |x| x.1)),
            None => l,
        })
        .collect()
}

/// The kernel's own announcements, heard and applied one after another, leave a follower
/// where a fresh dump of the table leaves another: for replaced, appended and deleted
/// multipath hops of both families (IPv6 announces one deleted hop alone), metrics, and
/// routes through a nexthop object that is then replaced.
#[test]
fn changes_heard_leave_the_follower_where_a_fresh_dump_does() {
    let (ns, _peer, _veth, dev) = lab("nc");
    let (heard, fresh) = ns.run(|| {
        // As the router starts: subscribed, then the table read whole.
        let mut sock = RouteSocket::subscribed(Duration::from_millis(200)).unwrap();
        let dumped = |f: &mut Follower, r: &mut Routing, fib: &Fib| {
            let mut dumps = RouteSocket::for_dumps(Duration::from_millis(200)).unwrap();
            for what in [Dump::Nexthops, Dump::Routes] {
                dumps.request_dump(what).unwrap();
                take(&mut dumps, f, r, fib, true);
            }
        };
        let (mut f, mut r, fib) = follower(&dev);
        dumped(&mut f, &mut r, &fib);
        for cmd in [
            "route add 10.2.0.0/16 via 10.1.0.2".to_string(),
            "route add 10.3.0.0/16 nexthop via 10.1.0.2 nexthop via 10.1.0.3 weight 2".into(),
            "route replace 10.3.0.0/16 via 10.1.0.3".into(),
            "route add 10.4.0.0/16 via 10.1.0.2 metric 10".into(),
            "route add 10.4.0.0/16 via 10.1.0.3 metric 5".into(),
            "route del 10.4.0.0/16 metric 5".into(),
            "-6 route add fd09::/48 via fd00::2".into(),
            "-6 route append fd09::/48 via fd00::3".into(),
            "-6 route append fd09::/48 via fd00::4".into(),
            "-6 route del fd09::/48 via fd00::2".into(),
            "-6 route add fd0a::/48 nexthop via fd00::2 nexthop via fd00::3".into(),
            "-6 route del fd0a::/48".into(),
            format!("nexthop add id 10 via 10.1.0.2 dev {dev}"),
            "route add 10.5.0.0/16 nhid 10".into(),
            format!("nexthop replace id 10 via 10.1.0.3 dev {dev}"),
            "route add blackhole 10.6.0.0/16".into(),
            "route del 10.2.0.0/16".into(),
        ] {
            ip(&ns, &cmd);
            take(&mut sock, &mut f, &mut r, &fib, false);
        }
        std::thread::sleep(Duration::from_millis(100));
        take(&mut sock, &mut f, &mut r, &fib, false);
        let (mut g, mut q, fib2) = follower(&dev);
        dumped(&mut g, &mut q, &fib2);
        (f.listing(), g.listing())
    });
    assert_eq!(without_ids(heard.clone()), without_ids(fresh), "{heard:#?}");
    let heard = without_ids(heard);
    for line in [
        "fd09::/48 metric 1024: out of a via fd00::3 weight 1, out of a via fd00::4 weight 1",
        "10.5.0.0/16 metric 0: out of a via 10.1.0.3",
        "10.4.0.0/16 metric 10: out of a via 10.1.0.2",
        "10.6.0.0/16 metric 0: discard",
    ] {
        assert!(heard.iter().any(|l| l == line), "{line}\n{heard:#?}");
    }
}
