//! `vrouter run --config FILE` as a real process in a namespace lab: it forwards between
//! two workloads, reloads on SIGHUP, stops on SIGTERM leaving no XDP program attached; a
//! bad config starts nothing; a VXLAN tunnel from the file talks to a Linux VXLAN device;
//! a fabric port on a VLAN talks to a tagged peer; the node's kernel routing tables are
//! followed, as `ip` and a real route daemon (BIRD 2) change them; Kubernetes
//! NetworkPolicy YAML with named ports admits and refuses real connections.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use vrouter::lab::{Conn, Echo, Netns, Reaped, Veth, no_offloads, ping, set_mac};
use vrouter::wire::ethernet::MacAddr;

fn mac(m: MacAddr) -> String {
    m.0.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

fn xdp_attached(ns: &Netns, dev: &str) -> bool {
    String::from_utf8_lossy(&ns.exec(&["ip", "-d", "link", "show", "dev", dev]).unwrap().stdout).contains("prog/xdp")
}

/// Whether `dev` lost its XDP program within 5 s (the kernel may release a link a moment
/// after the socket or process holding it goes).
fn detached_soon(ns: &Netns, dev: &str) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while xdp_attached(ns, dev) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    !xdp_attached(ns, dev)
}

/// [`start_reloadable`], the file removed once the router runs. Returns the running
/// router and its socket's path.
fn run_file(node: &Netns, what: &str, config: &str) -> (Reaped, String) {
    let (child, path, sock, _) = start_reloadable(node, what, config);
    let _ = std::fs::remove_file(&path);
    (child, sock)
}

/// Writes `config` to a file named after `what`, kept for reloads, and runs the router on
/// it in `node` with a control socket, up to its first status line. Returns the running
/// router, the file, the socket's path and the status lines to come.
fn start_reloadable(
    node: &Netns,
    what: &str,
    config: &str,
) -> (Reaped, std::path::PathBuf, String, std::sync::mpsc::Receiver<String>) {
    let path = std::env::temp_dir().join(format!("vrouter-{what}-{}.toml", std::process::id()));
    std::fs::write(&path, config).unwrap();
    let sock = std::env::temp_dir().join(format!("vrouter-{what}-{}.sock", std::process::id()));
    let sock = sock.to_str().unwrap().to_string();
    let mut child = start_router(node, &path, &sock, Stdio::inherit());
    let status = lines_of(Box::new(child.0.stdout.take().unwrap()));
    let first = status
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("a status line");
    assert!(first.starts_with("vrouter running"), "{first}");
    (child, path, sock, status)
}

/// `vrouter run --config PATH` in `node`.
fn run_command(node: &Netns, path: &std::path::Path) -> Command {
    let mut c = Command::new("ip");
    c.args([
        "netns",
        "exec",
        node.name(),
        env!("CARGO_BIN_EXE_vrouter"),
        "run",
        "--config",
    ])
    .arg(path);
    c
}

/// `vrouter run --config PATH --socket SOCK` in `node`, its status lines piped.
fn start_router(node: &Netns, path: &std::path::Path, sock: &str, stderr: Stdio) -> Reaped {
    let child = run_command(node, path)
        .args(["--socket", sock])
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    Reaped(child)
}

/// The lines `r` gives, read on a thread: the router never blocks writing its status and
/// log lines, and a line that does not come fails a test (`recv_timeout`) instead of
/// hanging it.
fn lines_of(r: Box<dyn std::io::Read + Send>) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(r).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    rx
}

/// `vrouter ctl --socket SOCK ARGS...`: whether it succeeded, and its output.
fn ctl(sock: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vrouter"))
        .args(["ctl", "--socket", sock])
        .args(args)
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string())
}

/// A workload namespace `10.0.I.2/24` behind a veth into `node`, and its config: the
/// `[[port]]` table and the nexthop and /32 route to it (nexthop id I).
/// 500 pings at 500 per second from a namespace, running while the test goes on.
struct Flood(std::process::Child);

impl Flood {
    fn start(ns: &Netns, to: &str) -> Self {
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns.name(),
                "ping",
                "-q",
                "-i",
                "0.002",
                "-c",
                "500",
                "-W",
                "1",
                to,
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        // The change lands in the middle of the stream, not before it.
        std::thread::sleep(std::time::Duration::from_millis(200));
        Flood(child)
    }

    /// Waits for the last reply; how many of the 500 got none.
    fn lost(self) -> u64 {
        let out = self.0.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let received = text
            .split(", ")
            .find_map(|part| part.strip_suffix(" received"))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{text}"));
        500 - received
    }
}

/// A router config for `ws`' ports, on one worker (cpu 0).
fn config_of<'a>(ws: impl Iterator<Item = &'a Workload> + Clone) -> String {
    let mut text = "cpus = [0]\n\n[[vrf]]\nid = 1\n\n".to_string();
    for w in ws.clone() {
        text += &w.port;
    }
    for w in ws {
        text += &w.route;
    }
    text
}

struct Workload {
    ns: Netns,
    dev: String,
    port: String,
    route: String,
}

impl Workload {
    fn new(node: &Netns, i: u8) -> Self {
        let w = Netns::new("w").unwrap();
        let v = Veth::new(&w, node, 1).unwrap();
        let (wm, gm) = (MacAddr([2, 0, 0, 0, i, 2]), MacAddr([2, 0xa, 0, 0, i, 1]));
        set_mac(&w, &v.a, wm);
        set_mac(node, &v.b, gm);
        no_offloads(&w, &v.a);
        w.exec(&["ip", "addr", "add", &format!("10.0.{i}.2/24"), "dev", &v.a])
            .unwrap();
        w.exec(&["ip", "route", "add", "default", "via", &format!("10.0.{i}.1")])
            .unwrap();
        let port = format!(
            "[[port]]\nname = \"w{i}\"\ndevice = \"{}\"\nkind = \"workload\"\nvrf = 1\nmac = \"{}\"\nworkload_mac = \"{}\"\nworkload_addresses = [\"10.0.{i}.2\"]\ngateways = [\"10.0.{i}.1\"]\n\n",
            v.b,
            mac(gm),
            mac(wm)
        );
        let route = format!(
            "[[nexthop]]\nid = {i}\nport = \"w{i}\"\n\n[[route]]\nvrf = 1\nprefix = \"10.0.{i}.2/32\"\nnexthop = {i}\n\n"
        );
        Workload {
            ns: w,
            dev: v.b,
            port,
            route,
        }
    }
}

#[test]
fn run_forwards_reloads_and_stops_cleanly() {
    let node = Netns::new("n").unwrap();
    let mut ws = Vec::new();
    let mut ports = String::new();
    let mut rest = String::new();
    for i in 1..=2u8 {
        let w = Workload::new(&node, i);
        ports += &w.port;
        rest += &w.route;
        ws.push((w.ns, w.dev));
    }
    // w2's link has an MTU of 1400 at both ends, which its port (no `mtu` in the file)
    // takes from its device.
    let w2_dev = String::from_utf8_lossy(&ws[1].0.exec(&["ls", "/sys/class/net"]).unwrap().stdout)
        .split_whitespace()
        .find(|d| *d != "lo")
        .unwrap()
        .to_string();
    ws[1]
        .0
        .exec(&["ip", "link", "set", "dev", &w2_dev, "mtu", "1400"])
        .unwrap();
    node.exec(&["ip", "link", "set", "dev", &ws[1].1, "mtu", "1400"])
        .unwrap();
    let config = format!(
        "cpus = [0]\nmetrics = \"127.0.0.1:9469\"\n\n[flows]\nentries = 30000\nvrf_quota = 1000\n\n[[vrf]]\nid = 1\n\n{ports}{rest}"
    );
    let path = std::env::temp_dir().join(format!("vrouter-run-{}.toml", std::process::id()));
    std::fs::write(&path, &config).unwrap();

    // A bad config: nothing starts.
    let bad = std::env::temp_dir().join(format!("vrouter-bad-{}.toml", std::process::id()));
    std::fs::write(
        &bad,
        config.replace("prefix = \"10.0.2.2/32\"", "prefix = \"10.0.2.2/16\""),
    )
    .unwrap();
    let out = run_command(&node, &bad).output().unwrap();
    let _ = std::fs::remove_file(&bad);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("field `prefix`") && err.contains("host bits set"), "{err}");
    assert!(!xdp_attached(&node, &ws[0].1), "nothing started on a bad config");

    let sock = std::env::temp_dir().join(format!("vrouter-ctl-{}.sock", std::process::id()));
    let sock = sock.to_str().unwrap().to_string();
    let mut child = start_router(&node, &path, &sock, Stdio::piped());
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let log = lines_of(Box::new(child.0.stderr.take().unwrap()));
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("vrouter running: 2 ports, 1 workers"), "{first}");
    assert!(xdp_attached(&node, &ws[0].1));
    assert!(ping(&ws[0].0, "10.0.2.2"), "w1 -> w2 through `vrouter run`");
    // Echoes w1's kernel sends in 1500-byte fragments: split again for w2's 1400; with
    // don't-fragment, "fragmentation needed" with w2's MTU.
    let echo = |how: &str, size: &str| {
        let args = [
            "ping", "-c", "2", "-i", "0.2", "-W", "1", "-M", how, "-s", size, "10.0.2.2",
        ];
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", ws[0].0.name()])
            .args(args)
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string())
    };
    let (ok, out) = echo("dont", "2000");
    assert!(ok, "2028-byte echoes to w2: {out}");
    let (ok, out) = echo("do", "1400");
    assert!(
        !ok && out.contains("mtu = 1400"),
        "fragmentation needed, with w2's MTU: {out}"
    );
    let (_, events) = ctl(&sock, &["show", "events"]);
    assert!(
        events
            .lines()
            .any(|l| l.starts_with("Fragmented") && l.split_whitespace().nth(1) == Some("2")),
        "{events}"
    );

    // The control socket: root only, commands answered, garbage refused, the router
    // unharmed by a client that hangs up without a word.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777, 0o600);
    let ctl = |args: &[&str]| ctl(&sock, args);
    drop(std::os::unix::net::UnixStream::connect(&sock).unwrap());
    let (ok, stats) = ctl(&["show", "stats"]);
    assert!(
        ok && stats.starts_with("total rx ")
            && stats.contains(" of 30000\n")
            && stats.contains("flow settings: when full evict quota 1000 timeouts (s) tcp 7200 closing 10 udp 30 ")
            && stats.contains("worker 0")
            && stats.contains("refused: full 0 quota 0")
            && stats.contains("\nvrf 1 flows ")
            && stats.contains(" of quota 1000, refused 0")
            && stats.contains(
                " vrfs 2 (0 dynamic) routes 2 (0 dynamic) dynamic nexthops 0 labels 0 vnis 0 neighbors 0 tables "
            )
            && stats.contains(" spares 0 KiB misses: no route "),
        "{stats}"
    );
    let (_, flows) = ctl(&["show", "flows"]);
    assert!(
        flows.contains("vrf 1 10.0.1.2") && flows.contains("proto 1 Allow"),
        "{flows}"
    );
    let (_, filtered) = ctl(&["show", "flows", "vrf", "1", "ip", "10.0.2.2", "proto", "icmp"]);
    assert!(
        !filtered.is_empty() && filtered.lines().all(|l| l.contains("10.0.2.2")),
        "{filtered}"
    );
    let (_, top) = ctl(&["show", "flows", "vrf", "1", "top", "1"]);
    assert!(
        top.lines().count() == 2 && top.contains("the most bytes first"),
        "{top}"
    );
    let (_, none) = ctl(&["show", "flows", "vrf", "2"]);
    assert_eq!(none.trim(), "", "no flows in VRF 2");
    let (_, bad) = ctl(&["show", "flows", "port", "x"]);
    assert!(bad.starts_with("error: `port x`: not a valid port"), "{bad}");
    // Cleared flows are decided afresh on their next packet.
    let (ok, cleared) = ctl(&["clear", "flows", "vrf", "1", "proto", "icmp"]);
    assert!(
        ok && cleared.starts_with("cleared ") && !cleared.starts_with("cleared 0 "),
        "{cleared}"
    );
    let (_, left) = ctl(&["show", "flows", "proto", "icmp"]);
    assert_eq!(left.trim(), "", "every ICMP flow cleared");
    assert!(ping(&ws[0].0, "10.0.2.2"), "forwarding again after the clear");
    let (_, again) = ctl(&["show", "flows", "proto", "icmp"]);
    assert!(again.contains("10.0.1.2"), "the ping installed its flows anew: {again}");
    let (_, routes) = ctl(&["show", "routes"]);
    assert!(routes.contains("vrf 1 10.0.2.2/32 -> nexthop 2"), "{routes}");
    let (_, ports) = ctl(&["show", "ports"]);
    assert!(ports.lines().count() == 2 && ports.contains("w1 dev"), "{ports}");
    assert!(ports.lines().all(|l| l.contains(" kernel-dropped ")), "{ports}");
    let (_, drops) = ctl(&["show", "drops"]);
    assert!(
        drops.contains("PolicyDenied") && drops.contains("denied by policy"),
        "{drops}"
    );
    // No neighbour is configured: the workloads' MACs come from `workload_mac`, and
    // their ARP requests for the gateway teach the router too.
    let (_, neighbors) = ctl(&["show", "neighbors"]);
    assert!(
        neighbors.contains("10.0.1.2") && neighbors.contains("learned"),
        "{neighbors}"
    );
    for cmd in [&["show", "nexthops"][..], &["show", "vrfs"]] {
        let (ok, out) = ctl(cmd);
        assert!(ok && !out.trim().is_empty(), "{cmd:?}: {out}");
    }
    // Prometheus text on loopback (inside the node's namespace).
    let scrape = || {
        node.run(|| {
            use std::io::{Read, Write};
            let mut c = std::net::TcpStream::connect("127.0.0.1:9469").unwrap();
            c.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
            let mut s = String::new();
            c.read_to_string(&mut s).unwrap();
            s
        })
    };
    let metrics = scrape();
    assert!(
        metrics.contains("# TYPE vrouter_policy_flows_total counter\n# HELP"),
        "no policy yet, no rows: {metrics}"
    );
    assert!(metrics.starts_with("HTTP/1.0 200 OK"), "{metrics}");
    assert!(metrics.contains("# TYPE vrouter_rx_packets_total counter"), "{metrics}");
    assert!(metrics.contains("vrouter_rx_packets_total{worker=\"0\"}"), "{metrics}");
    assert!(
        metrics.contains("vrouter_originated_packets_total{worker=\"0\"}"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("vrouter_neighbors_learned 0\n"),
        "workloads' ARP taught the router: {metrics}"
    );
    assert!(
        metrics.contains("vrouter_neighbor_learning_throttled_total 0\n"),
        "a few workloads stay well inside the learning budget: {metrics}"
    );
    assert!(
        metrics.contains("vrouter_dropped_packets_total{reason=\"PolicyDenied\"} 0"),
        "{metrics}"
    );
    // The value of the sample `name{label}`.
    let value = |name: &str, label: &str| -> u64 {
        let row = format!("{name}{{{label}}} ");
        let at = metrics.find(&row).unwrap_or_else(|| panic!("no {row}: {metrics}"));
        metrics[at + row.len()..].lines().next().unwrap().parse().unwrap()
    };
    // The echoes above: two split (each request's first 1500-byte fragment in two), and
    // "fragmentation needed" sent at least once.
    let event = |e: &str| value("vrouter_events_total", &format!("event=\"{e}\""));
    assert_eq!((event("Fragmented"), event("FragmentsMade")), (2, 2));
    assert!(event("IcmpErrors") >= 1, "{metrics}");
    let flow_event = |event: &str| value("vrouter_flow_events_total", &format!("event=\"{event}\""));
    assert!(flow_event("inserts") >= 2, "the pings installed a flow pair: {metrics}");
    assert_eq!(flow_event("full_refusals"), 0, "{metrics}");
    assert!(
        value("vrouter_vrf_flows", "vrf=\"1\"") >= 2,
        "VRF 1's flows against its quota: {metrics}"
    );
    assert!(metrics.contains("\nvrouter_flow_vrf_quota 1000\n"), "{metrics}");
    assert!(metrics.contains("\nvrouter_ports_device_gone 0\n"), "{metrics}");
    assert!(metrics.contains("\nvrouter_ports_device_down 0\n"), "{metrics}");
    assert_eq!(value("vrouter_port_changes_total", "how=\"live\""), 0, "{metrics}");
    assert!(
        metrics.contains("\nvrouter_routes 2\n")
            && metrics.contains("\nvrouter_dynamic_routes 0\n")
            && metrics.contains("\nvrouter_route_command_lines_total{result=\"refused\"} 0\n"),
        "the workloads' two, none of them added by command: {metrics}"
    );
    assert!(
        value("vrouter_routing_table_bytes", "tables=\"running\"") > 0,
        "{metrics}"
    );
    assert_eq!(value("vrouter_routing_table_bytes", "tables=\"spare\""), 0, "{metrics}");
    assert_eq!(
        value("vrouter_route_misses_total", "reason=\"translate_loop\""),
        0,
        "{metrics}"
    );
    for port in ["w1", "w2"] {
        let row = format!("vrouter_port_kernel_dropped_packets_total{{port=\"{port}\"}} ");
        assert!(metrics.contains(&row), "{row}: {metrics}");
        for family in ["vrouter_port_rx_packets_total", "vrouter_port_tx_packets_total"] {
            assert!(
                value(family, &format!("port=\"{port}\"")) > 0,
                "{family} {port}: {metrics}"
            );
        }
    }
    assert_eq!(
        value("vrouter_vrf_flow_quota_refusals_total", "vrf=\"1\""),
        0,
        "{metrics}"
    );
    let (ok, garbage) = ctl(&["frobnicate", "\u{1}"]);
    assert!(!ok && garbage.starts_with("error: unknown command"), "{garbage}");
    assert!(ping(&ws[1].0, "10.0.1.2"), "still forwarding after the control traffic");

    // trace and capture while traffic flows.
    std::thread::scope(|sc| {
        let w1 = &ws[0].0;
        sc.spawn(move || w1.exec(&["ping", "-c", "15", "-i", "0.2", "10.0.2.2"]));
        let (ok, trace) = ctl(&["trace", "4"]);
        assert!(ok && trace.lines().count() == 4, "{trace}");
        assert!(
            trace.contains("vrf 1 10.0.1.2") && trace.contains("proto 1") && trace.contains("=> Tx("),
            "{trace}"
        );
        let pcap = std::env::temp_dir().join(format!("vrouter-cap-{}.pcap", std::process::id()));
        let (ok, cap) = ctl(&["capture", "w1", pcap.to_str().unwrap(), "3"]);
        assert!(ok && cap.starts_with("captured 3 frames from w1"), "{cap}");
        let out = Command::new("tshark")
            .args(["-r", pcap.to_str().unwrap(), "-T", "fields", "-e", "frame.protocols"])
            .output()
            .unwrap();
        let _ = std::fs::remove_file(&pcap);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(text.lines().all(|l| l.starts_with("eth:ethertype:")), "{text}");
        assert!(text.contains("icmp"), "{text}");
    });

    let pid = child.0.id() as libc::pid_t;
    // Reload through the control socket (the same path as SIGHUP).
    let (ok, _) = ctl(&["reload"]);
    assert!(ok);
    let reload = lines.next().unwrap().unwrap();
    assert!(reload.starts_with("reloaded"), "{reload}");
    // Reloads under traffic lose nothing of an established flow.
    std::thread::scope(|sc| {
        let w1 = &ws[0].0;
        let flood = sc.spawn(move || w1.exec(&["ping", "-c", "200", "-i", "0.01", "10.0.2.2"]));
        for _ in 0..5 {
            std::thread::sleep(std::time::Duration::from_millis(200));
            assert!(ctl(&["reload"]).0);
            let line = lines.next().unwrap().unwrap();
            assert!(line.starts_with("reloaded"), "{line}");
        }
        let out = flood.join().unwrap().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("200 received, 0% packet loss"), "{text}");
    });

    // A policy arrives by SIGHUP: w2 refuses echo requests, and logs each refused flow;
    // its own pings to w1 still work, their replies riding the allowed flow back
    // (stateful). The same reload changes
    // the flow table's quota and a timeout, which apply at once, and its size, which needs
    // a restart.
    let policy = "\n[[policy]]\nendpoint = \"w2\"\ndirection = \"ingress\"\n[[policy.rule]]\naction = \"deny-log\"\nproto = \"icmp\"\nicmp_type = 8\n";
    let flows = config.replace(
        "entries = 30000\nvrf_quota = 1000\n",
        "entries = 60000\nvrf_quota = 500\ntimeouts = { udp = 90 }\n",
    );
    assert_ne!(flows, config);
    std::fs::write(&path, format!("{flows}{policy}")).unwrap();
    // SAFETY: signalling the process this test started.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    let reload = lines.next().unwrap().unwrap();
    assert!(reload.starts_with("reloaded"), "{reload}");
    assert!(
        reload.ends_with("; flows.entries 60000 needs a restart: the table keeps 30000 slots"),
        "{reload}"
    );
    let (_, stats) = ctl(&["show", "stats"]);
    assert!(
        stats.contains(
            "flow settings: when full evict quota 500 timeouts (s) tcp 7200 closing 10 udp 90 sctp 210 icmp 10 other 30"
        ),
        "{stats}"
    );
    assert!(stats.contains("of 30000\n"), "{stats}");
    assert!(!ping(&ws[0].0, "10.0.2.2"), "w2 denies echo requests after the reload");
    assert!(ping(&ws[1].0, "10.0.1.2"), "w2 -> w1 still works, replies included");
    let (_, drops) = ctl(&["show", "drops"]);
    assert!(
        drops
            .lines()
            .any(|l| l.starts_with("PolicyDenied") && !l.contains(" 0  ")),
        "{drops}"
    );
    // Which rule did it: w2's one ingress rule decided w1's echo flow, and the log says so.
    let flow_line = std::iter::from_fn(|| log.recv_timeout(std::time::Duration::from_secs(5)).ok())
        .find(|l| l.contains("flow vrf 1 10.0.1.2"));
    assert!(
        flow_line
            .as_ref()
            .is_some_and(|l| l.contains(" -> 10.0.2.2 ") && l.contains("denied: ingress of w2 rule 1 deny-log")),
        "{flow_line:?}"
    );
    let (_, policy) = ctl(&["show", "policy"]);
    let denied = policy
        .strip_prefix("w2 ingress: rule 1 deny-log ")
        .and_then(|rest| rest.split(',').next()?.parse::<u64>().ok());
    assert!(denied.is_some_and(|n| n > 0), "{policy}");
    let row = "vrouter_policy_flows_total{port=\"w2\",direction=\"ingress\",rule=\"1\",action=\"deny-log\"} ";
    let metrics = scrape();
    let counted = metrics
        .find(row)
        .and_then(|at| metrics[at + row.len()..].lines().next()?.parse::<u64>().ok());
    assert_eq!(counted, denied, "the same count as a metric: {metrics}");

    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let stopped = lines.next().unwrap().unwrap();
    assert!(
        stopped.starts_with("stopped:") && stopped.contains("XDP detached"),
        "{stopped}"
    );
    assert!(child.0.wait().unwrap().success());
    let _ = std::fs::remove_file(&path);
    for (_, dev) in &ws {
        assert!(detached_soon(&node, dev), "SIGTERM leaves no XDP program on {dev}");
    }
}

#[test]
fn route_commands_steer_traffic_and_survive_reloads() {
    let node = Netns::new("n").unwrap();
    let ws: Vec<Workload> = (1..=2).map(|i| Workload::new(&node, i)).collect();
    // w2's nexthop is in the file, its route is not.
    let without_route = ws[1].route.split("[[route]]").next().unwrap();
    let config = |w2_route: &str| {
        format!(
            "cpus = [0]\n\n[[vrf]]\nid = 1\n\n{}{}{}{w2_route}",
            ws[0].port, ws[1].port, ws[0].route
        )
    };
    let (mut child, path, sock, status) = start_reloadable(&node, "routes", &config(without_route));
    let next_line = || {
        status
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("a status line")
    };
    let ctl = |args: &[&str]| ctl(&sock, args);
    assert!(!ping(&ws[0].ns, "10.0.2.2"), "no route to w2 yet");

    let (ok, out) = ctl(&["route", "add", "vrf", "1", "10.0.2.2/32", "nexthop", "2"]);
    assert!(ok && out.contains("1 added, 0 removed; 1 dynamic routes"), "{out}");
    assert!(ping(&ws[0].ns, "10.0.2.2"), "w1 -> w2 by the dynamic route");
    let (_, routes) = ctl(&["show", "routes"]);
    assert!(routes.contains("vrf 1 10.0.1.2/32 -> nexthop 1\n"), "{routes}");
    assert!(routes.contains("vrf 1 10.0.2.2/32 -> nexthop 2 dynamic"), "{routes}");
    assert_eq!(
        ctl(&["show", "routes", "vrf", "1"]).1,
        routes,
        "every route is in VRF 1"
    );
    assert_eq!(ctl(&["show", "routes", "vrf", "2"]).1, "\n");
    let (ok, bad) = ctl(&["show", "routes", "vrf", "x"]);
    assert!(!ok && bad.contains("`x` is not a VRF id"), "{bad}");
    let (_, stats) = ctl(&["show", "stats"]);
    assert!(stats.contains("routes 2 (1 dynamic)"), "{stats}");
    let (ok, get) = ctl(&["route", "get", "vrf", "1", "10.0.2.2"]);
    assert!(ok, "{get}");
    assert!(
        get.starts_with("vrf 1 10.0.2.2: route 10.0.2.2/32 -> nexthop 2 dynamic\nresolves to nexthop 2: out of w2 to 10.0.2.2, MAC 02:00:00:00:02:02"),
        "w2's MAC, learned from its traffic: {get}"
    );
    let (ok, get) = ctl(&["route", "get", "vrf", "1", "10.0.3.3"]);
    assert!(ok && get == "vrf 1 10.0.3.3: no route\n", "{get}");
    let (ok, get) = ctl(&["route", "get", "vrf", "1", "10.0.3"]);
    assert!(!ok && get.contains("takes a VRF id and an IP address"), "{get}");

    // The file's routes are the file's; a bad line changes nothing.
    let (ok, out) = ctl(&["route", "del", "vrf", "1", "10.0.1.2/32"]);
    assert!(!ok && out.contains("the config file routes this prefix"), "{out}");
    let (ok, out) = ctl(&["route", "add", "vrf", "1", "10.0.3.0/24", "nexthop", "9"]);
    assert!(
        !ok && out.contains("nexthop 9 is not defined; nothing changed"),
        "{out}"
    );

    // A reload of the same file keeps the dynamic route.
    assert!(ctl(&["reload"]).0);
    let line = next_line();
    assert!(line.starts_with("reloaded") && !line.contains("dropped"), "{line}");
    assert!(ping(&ws[0].ns, "10.0.2.2"), "w1 -> w2 after the reload");

    // A refused reload (a port on a missing device) changes no route: not now, and not
    // when the next command publishes (the refused file had no route to w1).
    let gone = ws[1]
        .port
        .replacen("name = \"w2\"", "name = \"w9\"", 1)
        .replacen(&ws[1].dev, "vrt-missing0", 1);
    let refused = format!(
        "cpus = [0]\n\n[[vrf]]\nid = 1\n\n{}{}{gone}{without_route}",
        ws[0].port, ws[1].port
    );
    std::fs::write(&path, refused).unwrap();
    assert!(ctl(&["reload"]).0);
    assert!(ctl(&["route", "add", "vrf", "1", "10.0.9.0/24", "nexthop", "2"]).0);
    assert!(
        ping(&ws[0].ns, "10.0.2.2"),
        "w1 <-> w2 after a refused reload and a command"
    );
    assert!(ctl(&["route", "del", "vrf", "1", "10.0.9.0/24"]).0);
    std::fs::write(&path, config(without_route)).unwrap();

    // Withdrawn: w2 is unreachable again, the flow of a running ping included.
    let (ok, out) = ctl(&["route", "del", "vrf", "1", "10.0.2.2/32"]);
    assert!(ok && out.contains("0 added, 1 removed; 0 dynamic routes"), "{out}");
    assert!(!ping(&ws[0].ns, "10.0.2.2"), "w2's route withdrawn");

    // Nexthops by command: w2 by its port's name, in an ECMP group with the file's
    // nexthop 2. A reload that swaps the ports' order (a live port change) keeps nexthop
    // 12 on w2, now port 0.
    let (ok, out) = ctl(&["nexthop add 12 port w2; nexthop add 13 ecmp 12,2; route add vrf 1 10.0.2.2/32 nexthop 13"]);
    assert!(
        ok && out.contains("nexthops 2 set, 0 removed; 2 dynamic nexthops"),
        "{out}"
    );
    assert!(ping(&ws[0].ns, "10.0.2.2"), "w1 -> w2 through the dynamic nexthops");
    let (_, listed) = ctl(&["show", "nexthops"]);
    assert!(
        listed.contains("12: port w2 dynamic\n13: ecmp 12,2 dynamic"),
        "{listed}"
    );
    let (_, saved) = ctl(&["show", "commands"]);
    assert_eq!(
        saved, "nexthop add 12 port w2\nnexthop add 13 ecmp 12,2\nroute add vrf 1 10.0.2.2/32 nexthop 13\n",
        "what makes the dynamic state again"
    );
    let (_, stats) = ctl(&["show", "stats"]);
    assert!(stats.contains("dynamic nexthops 2"), "{stats}");
    // Tunnel ids by command: a label to w2's port (its VRF), a VNI into VRF 1; a label
    // to a group would deliver nowhere.
    let (ok, out) = ctl(&["label add 3000 nexthop 13"]);
    assert!(!ok && out.contains("not by an ECMP group one"), "{out}");
    let (ok, out) = ctl(&["label add 3000 nexthop 12; vni add 5001 vrf 1"]);
    assert!(
        ok && out.ends_with("1 dynamic labels; vnis 1 set, 0 removed; 1 dynamic vnis\n"),
        "{out}"
    );
    let (_, labels) = ctl(&["show", "labels"]);
    let (_, vnis) = ctl(&["show", "vnis"]);
    assert_eq!(
        (labels.as_str(), vnis.as_str()),
        ("label 3000 -> nexthop 12 dynamic\n", "vni 5001 -> vrf 1 dynamic\n")
    );
    let (_, stats) = ctl(&["show", "stats"]);
    assert!(stats.contains("dynamic nexthops 2 labels 1 vnis 1 "), "{stats}");
    let (ok, out) = ctl(&["route del vrf 1 10.0.2.2/32; nexthop del 13; nexthop del 12"]);
    assert!(!ok && out.contains("nexthop del 12: label 3000 goes to it"), "{out}");
    assert!(ctl(&["label del 3000; vni del 5001"]).0);
    // A tenant VRF by command, reached by VNI, then withdrawn.
    assert!(ctl(&["vrf add 7; vni add 7007 vrf 7; route add vrf 7 10.7.0.0/16 nexthop 13"]).0);
    let (_, vrfs) = ctl(&["show", "vrfs"]);
    assert!(vrfs.ends_with("\n7 dynamic\n"), "{vrfs}");
    let (_, stats) = ctl(&["show", "stats"]);
    assert!(stats.contains(" vrfs 3 (1 dynamic) "), "{stats}");
    let (ok, out) = ctl(&["vrf del 7"]);
    assert!(!ok && out.contains("route vrf 7 10.7.0.0/16 uses it"), "{out}");
    let (ok, out) = ctl(&["route del vrf 7 10.7.0.0/16; vni del 7007; vrf del 7"]);
    assert!(
        ok && out.ends_with("vrfs 0 added, 1 removed; 0 dynamic vrfs\n"),
        "{out}"
    );
    let (ok, out) = ctl(&["nexthop", "del", "12"]);
    assert!(!ok && out.contains("ECMP group 13 holds it"), "{out}");
    let swapped = format!(
        "cpus = [0]\n\n[[vrf]]\nid = 1\n\n{}{}{}{without_route}",
        ws[1].port, ws[0].port, ws[0].route
    );
    std::fs::write(&path, swapped).unwrap();
    assert!(ctl(&["reload"]).0);
    let line = next_line();
    assert!(line.starts_with("reloaded") && !line.contains("dropped"), "{line}");
    let (_, get) = ctl(&["route", "get", "vrf", "1", "10.0.2.2"]);
    assert!(get.contains("out of w2 to 10.0.2.2"), "{get}");
    assert!(ping(&ws[0].ns, "10.0.2.2"), "w1 -> w2 with the ports renumbered");
    let (ok, out) = ctl(&["route del vrf 1 10.0.2.2/32; nexthop del 13; nexthop del 12"]);
    assert!(
        ok && out.contains("nexthops 0 set, 2 removed; 0 dynamic nexthops"),
        "{out}"
    );
    assert!(!ping(&ws[0].ns, "10.0.2.2"), "w2's route and nexthops withdrawn");
    std::fs::write(&path, config(without_route)).unwrap();

    // Added again, then the file routes the prefix itself: the reload drops the dynamic
    // route, says so, and the file's route carries the traffic.
    assert!(ctl(&["route", "add", "vrf", "1", "10.0.2.2/32", "nexthop", "2"]).0);
    std::fs::write(&path, config(&ws[1].route)).unwrap();
    assert!(ctl(&["reload"]).0);
    let line = next_line();
    assert!(
        line.contains("dynamic route vrf 1 10.0.2.2/32 dropped: the file routes it now"),
        "{line}"
    );
    let (_, routes) = ctl(&["show", "routes"]);
    assert!(!routes.contains("dynamic"), "{routes}");
    assert!(ping(&ws[0].ns, "10.0.2.2"), "w1 -> w2 by the file's route");

    // SAFETY: signalling the process this test started.
    unsafe { libc::kill(child.0.id() as libc::pid_t, libc::SIGTERM) };
    assert!(child.0.wait().unwrap().success());
    let _ = std::fs::remove_file(&path);
}

/// Workloads w1 and w2 behind `node`, w2 answering for 10.0.9.1 too (reached through its
/// address 10.0.2.2), and w2's `[[port]]` table that allows it that source.
fn workloads_behind_w2(node: &Netns) -> (Vec<Workload>, String) {
    let ws: Vec<Workload> = (1..=2).map(|i| Workload::new(node, i)).collect();
    ws[1]
        .ns
        .exec(&["ip", "addr", "add", "10.0.9.1/32", "dev", "lo"])
        .unwrap();
    let w2_port = ws[1].port.replace(
        "workload_addresses = [\"10.0.2.2\"]",
        "workload_addresses = [\"10.0.2.2\", \"10.0.9.1\"]",
    );
    (ws, w2_port)
}

/// Whether `text` has a line that starts with `start` and ends with `end` (a nexthop id
/// between, which the kernel routes followers give out in the order they need them).
fn has_line(text: &str, start: &str, end: &str) -> bool {
    text.lines().any(|l| l.starts_with(start) && l.ends_with(end))
}

/// Polls `show kernel-routes` until `done` holds of it (2 s at most); returns it.
fn kernel_routes_until(sock: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let (_, listing) = ctl(sock, &["show", "kernel-routes"]);
        if done(&listing) || std::time::Instant::now() > deadline {
            return listing;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The Calico model's route daemons write the node's kernel table; the router follows
/// it: routes there before it starts and added, changed or removed while it runs, skipped
/// with the reason where it cannot take them, taken up again when a reload brings their
/// port back, and withdrawn when the file stops following the table.
#[test]
fn kernel_routes_are_followed_into_a_vrf() {
    let node = Netns::new("n").unwrap();
    let (ws, w2_port) = workloads_behind_w2(&node);
    let config = |ports: &[&str], follow: &str| {
        format!(
            "cpus = [0]\nmetrics = \"127.0.0.1:9469\"\n\n[[vrf]]\nid = 1\n\n{}{}{follow}",
            ports.concat(),
            ws[0].route
        )
    };
    let both = [ws[0].port.as_str(), w2_port.as_str()];
    // Main into the workloads' VRF 1; table 100 (a Linux VRF's, say) into VRF 0.
    let follow = "[[kernel_routes]]\nvrf = 1\n\n[[kernel_routes]]\ntable = 100\n";
    node.exec(&["ip", "link", "set", "lo", "up"]).unwrap();
    node.exec(&["ip", "route", "add", "10.0.2.2/32", "dev", &ws[1].dev])
        .unwrap();
    let table_100 = [
        "10.0.5.0/24",
        "via",
        "10.0.2.2",
        "dev",
        &ws[1].dev,
        "onlink",
        "table",
        "100",
    ];
    node.exec(&[&["ip", "route", "add"], &table_100[..]].concat()).unwrap();
    let (mut child, path, sock, status) = start_reloadable(&node, "kernel", &config(&both, follow));
    let next_line = || {
        status
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("a status line")
    };
    let ctl = |args: &[&str]| ctl(&sock, args);

    assert!(
        ping(&ws[0].ns, "10.0.2.2"),
        "w1 -> w2 by the route in the kernel at the start"
    );
    let (_, get) = ctl(&["route", "get", "vrf", "1", "10.0.2.2"]);
    assert!(get.contains("route 10.0.2.2/32 -> nexthop 2147483648 dynamic"), "{get}");

    // Added while running: a route through w2's address, one to a device that is no
    // port, one for the file's own prefix.
    node.exec(&[
        "ip",
        "route",
        "add",
        "10.0.9.0/24",
        "via",
        "10.0.2.2",
        "dev",
        &ws[1].dev,
    ])
    .unwrap();
    node.exec(&["ip", "route", "add", "10.0.7.0/24", "dev", "lo"]).unwrap();
    node.exec(&["ip", "route", "add", "10.0.1.2/32", "dev", &ws[0].dev])
        .unwrap();
    let listing = kernel_routes_until(&sock, |l| l.contains("10.0.1.2/32"));
    assert!(
        listing.starts_with("kernel table 254 -> vrf 1: 2 routes followed, 2 skipped\n"),
        "{listing}"
    );
    assert!(
        has_line(&listing, "10.0.9.0/24 metric 0: nexthop ", ": out of w2 via 10.0.2.2"),
        "{listing}"
    );
    assert!(
        listing.contains("\nkernel table 100 -> vrf 0: 1 routes followed, 0 skipped\n")
            && has_line(&listing, "10.0.5.0/24 metric 0: nexthop ", ": out of w2 via 10.0.2.2"),
        "{listing}"
    );
    let (_, get) = ctl(&["route", "get", "vrf", "0", "10.0.5.1"]);
    assert!(
        get.starts_with("vrf 0 10.0.5.1: route 10.0.5.0/24 -> nexthop "),
        "{get}"
    );
    assert!(
        listing.contains("10.0.7.0/24 metric 0: skipped: `lo` is not a port of the router"),
        "{listing}"
    );
    assert!(
        listing.contains("10.0.1.2/32 metric 0: skipped: the config file routes this prefix"),
        "{listing}"
    );
    assert!(ping(&ws[0].ns, "10.0.9.1"), "w1 -> 10.0.9.1 via w2, by the route added");
    let (_, stats) = ctl(&["show", "stats"]);
    assert!(
        stats.contains("\nkernel routes: table 254 -> vrf 1: 2 followed, 2 skipped\n")
            && stats.contains("\nkernel routes: table 100 -> vrf 0: 1 followed, 0 skipped\n"),
        "{stats}"
    );
    let metrics = node.run(|| {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect("127.0.0.1:9469").unwrap();
        c.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut s = String::new();
        c.read_to_string(&mut s).unwrap();
        s
    });
    assert!(
        metrics.contains("\nvrouter_kernel_routes_followed{table=\"254\",vrf=\"1\"} 2\n")
            && metrics.contains("\nvrouter_kernel_routes_skipped{table=\"254\",vrf=\"1\"} 2\n")
            && metrics.contains("\nvrouter_kernel_routes_followed{table=\"100\",vrf=\"0\"} 1\n")
            && metrics.contains("\nvrouter_dynamic_routes 3\n"),
        "{metrics}"
    );
    node.exec(&["ip", "route", "del", "10.0.9.0/24"]).unwrap();
    kernel_routes_until(&sock, |l| !l.contains("10.0.9.0/24"));
    assert!(!ping(&ws[0].ns, "10.0.9.1"), "the route went with the kernel's");

    // Through a kernel nexthop object, as FRR installs routes; removing the object
    // removes the route (the kernel says nothing of it), and the router's goes too.
    node.exec(&["ip", "nexthop", "add", "id", "7", "via", "10.0.2.2", "dev", &ws[1].dev])
        .unwrap();
    node.exec(&["ip", "route", "add", "10.0.9.0/24", "nhid", "7"]).unwrap();
    let listing = kernel_routes_until(&sock, |l| l.contains("10.0.9.0/24"));
    assert!(
        has_line(&listing, "10.0.9.0/24 metric 0: nexthop ", ": out of w2 via 10.0.2.2"),
        "{listing}"
    );
    assert!(
        ping(&ws[0].ns, "10.0.9.1"),
        "w1 -> 10.0.9.1 through the kernel's nexthop object"
    );
    node.exec(&["ip", "nexthop", "del", "id", "7"]).unwrap();
    let listing = kernel_routes_until(&sock, |l| !l.contains("10.0.9.0/24"));
    assert!(!listing.contains("10.0.9.0/24"), "{listing}");
    assert!(!ping(&ws[0].ns, "10.0.9.1"), "gone with the object");

    // A reload without w2's port skips its route; with it again, the route is back.
    let next_reload = || {
        assert!(ctl(&["reload"]).0);
        let line = next_line();
        assert!(line.starts_with("reloaded"), "{line}");
    };
    std::fs::write(&path, config(&both[..1], follow)).unwrap();
    next_reload();
    let listing = kernel_routes_until(&sock, |l| l.contains("10.0.2.2/32 metric 0: skipped"));
    assert!(
        listing.contains(&format!(
            "10.0.2.2/32 metric 0: skipped: `{}` is not a port of the router",
            ws[1].dev
        )),
        "{listing}"
    );
    std::fs::write(&path, config(&both, follow)).unwrap();
    next_reload();
    kernel_routes_until(&sock, |l| l.contains("10.0.2.2/32 metric 0: nexthop"));
    assert!(ping(&ws[0].ns, "10.0.2.2"), "w1 -> w2 once its port is back");

    // w2's device goes down: the kernel flushes its route without a word, and the
    // router, told the link changed, reads the table again and withdraws it too.
    node.exec(&["ip", "link", "set", &ws[1].dev, "down"]).unwrap();
    let listing = kernel_routes_until(&sock, |l| !l.contains("10.0.2.2/32"));
    assert!(!listing.contains("10.0.2.2/32"), "{listing}");
    assert!(!ctl(&["show", "routes"]).1.contains("10.0.2.2/32"));
    node.exec(&["ip", "link", "set", &ws[1].dev, "up"]).unwrap();
    node.exec(&["ip", "route", "add", "10.0.2.2/32", "dev", &ws[1].dev])
        .unwrap();
    kernel_routes_until(&sock, |l| l.contains("10.0.2.2/32 metric 0: nexthop"));
    assert!(ping(&ws[0].ns, "10.0.2.2"), "w1 -> w2 by the route added again");

    // The file stops following the table: its routes are withdrawn.
    std::fs::write(&path, config(&both, "")).unwrap();
    next_reload();
    assert!(
        ctl(&["show", "kernel-routes"])
            .1
            .starts_with("no kernel table is followed")
    );
    assert!(!ctl(&["show", "routes"]).1.contains("dynamic"));
    assert!(!ping(&ws[0].ns, "10.0.2.2"), "withdrawn");

    // SAFETY: signalling the process this test started.
    unsafe { libc::kill(child.0.id() as libc::pid_t, libc::SIGTERM) };
    assert!(child.0.wait().unwrap().success());
    let _ = std::fs::remove_file(&path);
}

/// A real route daemon drives the router through the kernel, as in the Calico model:
/// BIRD 2 exports static routes (a host route to w2 on-link, a route through w2's
/// address, a blackhole) into the node's main table, and the router, following the
/// table's `bird` routes, forwards by them; BIRD's reconfiguration withdraws one, and
/// BIRD stopping withdraws its others, from the kernel and so from the router.
#[test]
fn routes_bird_exports_into_the_kernel_are_followed() {
    let node = Netns::new("n").unwrap();
    let (ws, w2_port) = workloads_behind_w2(&node);
    // BIRD takes 10.0.2.2 for a neighbour on w2's link by the node's address there.
    node.exec(&["ip", "addr", "add", "10.0.2.1/24", "dev", &ws[1].dev])
        .unwrap();
    let config = format!(
        "cpus = [0]\n\n[[vrf]]\nid = 1\n\n{}{w2_port}{}[[kernel_routes]]\nvrf = 1\nprotocols = [\"bird\"]\n",
        ws[0].port, ws[0].route
    );
    let (mut child, path, sock, _) = start_reloadable(&node, "bird", &config);
    let tmp = std::env::temp_dir();
    let (conf, ctl_sock) = (
        tmp.join(format!("vrouter-bird-{}.conf", std::process::id())),
        tmp.join(format!("vrouter-bird-{}.ctl", std::process::id())),
    );
    let bird_conf = |with_9: bool| {
        let route_9 = if with_9 {
            "  route 10.0.9.0/24 via 10.0.2.2;\n"
        } else {
            ""
        };
        format!(
            "router id 10.0.2.1;\nprotocol device {{ scan time 1; }}\nprotocol kernel {{ ipv4 {{ export all; }}; }}\nprotocol static {{\n  ipv4;\n  route 10.0.2.2/32 via \"{}\";\n{route_9}  route 10.0.8.0/24 blackhole;\n}}\n",
            ws[1].dev
        )
    };
    std::fs::write(&conf, bird_conf(true)).unwrap();
    let mut bird = Reaped(
        Command::new("ip")
            .args(["netns", "exec", node.name(), "bird", "-f", "-c"])
            .arg(&conf)
            .arg("-s")
            .arg(&ctl_sock)
            .spawn()
            .expect("bird (BIRD 2: apt-get install bird2)"),
    );
    let listing = kernel_routes_until(&sock, |l| l.contains("10.0.9.0/24") && l.contains("10.0.8.0/24"));
    for want in [
        "kernel table 254 -> vrf 1: 3 routes followed, 0 skipped",
        "10.0.2.2/32 metric 32: nexthop ",
        "10.0.8.0/24 metric 32: nexthop ",
    ] {
        assert!(listing.contains(want), "{want}\n{listing}");
    }
    assert!(
        has_line(&listing, "10.0.9.0/24 metric 32: nexthop ", ": out of w2 via 10.0.2.2"),
        "{listing}"
    );
    assert!(
        has_line(&listing, "10.0.8.0/24 metric 32: nexthop ", ": discard"),
        "{listing}"
    );
    assert!(
        !listing.contains("10.0.2.0/24"),
        "the kernel's own connected route is not BIRD's"
    );
    assert!(ping(&ws[0].ns, "10.0.2.2"), "w1 -> w2 by BIRD's route");
    assert!(ping(&ws[0].ns, "10.0.9.1"), "w1 -> 10.0.9.1 via w2, by BIRD's route");

    // BIRD reconfigured without 10.0.9.0/24: withdrawn from the kernel, then the router.
    std::fs::write(&conf, bird_conf(false)).unwrap();
    let out = node
        .exec(&["birdc", "-s", ctl_sock.to_str().unwrap(), "configure"])
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("Reconfigured"), "{out:?}");
    let listing = kernel_routes_until(&sock, |l| !l.contains("10.0.9.0/24"));
    assert!(!listing.contains("10.0.9.0/24"), "{listing}");
    assert!(!ping(&ws[0].ns, "10.0.9.1"), "withdrawn with BIRD's route");
    assert!(ping(&ws[0].ns, "10.0.2.2"), "the others stay");

    // BIRD stops: it takes its routes out of the kernel, and the router follows.
    // SAFETY: signalling the process this test started.
    unsafe { libc::kill(bird.0.id() as libc::pid_t, libc::SIGTERM) };
    let _ = bird.0.wait();
    let listing = kernel_routes_until(&sock, |l| !l.contains("10.0.2.2/32"));
    assert!(
        listing.starts_with("kernel table 254 -> vrf 1: 0 routes followed"),
        "{listing}"
    );
    assert!(!ping(&ws[0].ns, "10.0.2.2"), "no route to w2 once BIRD is gone");

    // SAFETY: signalling the process this test started.
    unsafe { libc::kill(child.0.id() as libc::pid_t, libc::SIGTERM) };
    assert!(child.0.wait().unwrap().success());
    for f in [path, conf, ctl_sock] {
        let _ = std::fs::remove_file(f);
    }
}

#[test]
fn check_reports_the_first_error() {
    let path = std::env::temp_dir().join(format!("vrouter-check-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        "[[port]]\nname = \"p\"\ndevice = \"eth9\"\nkind = \"router\"\nvrf = 0\nmac = \"02:00:00:00:00:01\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vrouter"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(":1: port `p`: field `kind`: `router` is not fabric, workload or host"),
        "{err}"
    );
}

#[test]
fn help_prints_the_usage_and_runs_nothing() {
    // `demo --help` once ran the whole demo; `demo` with any other word is a usage error.
    for args in [&["--help"][..], &["demo", "--help"], &["run", "-h"], &["help"]] {
        let out = Command::new(env!("CARGO_BIN_EXE_vrouter")).args(args).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.starts_with("usage: vrouter demo"),
            "{args:?}: {text}"
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_vrouter"))
        .args(["demo", "now"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage: vrouter demo"));
}

#[test]
fn reload_adds_and_removes_ports_while_running() {
    let node = Netns::new("n").unwrap();
    let mut ws: Vec<Workload> = (1..=3).map(|i| Workload::new(&node, i)).collect();
    let config = |of: &[usize]| config_of(of.iter().map(|&i| &ws[i]));
    let path = std::env::temp_dir().join(format!("vrouter-ports-{}.toml", std::process::id()));
    std::fs::write(&path, config(&[0, 1])).unwrap();
    let sock = std::env::temp_dir().join(format!("vrouter-ports-{}.sock", std::process::id()));
    let sock = sock.to_str().unwrap().to_string();
    let mut child = start_router(&node, &path, &sock, Stdio::piped());
    let status = lines_of(Box::new(child.0.stdout.take().unwrap()));
    let log = lines_of(Box::new(child.0.stderr.take().unwrap()));
    let next_line = || {
        status
            .recv_timeout(std::time::Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no status line; the log: {:?}", log.try_iter().collect::<Vec<_>>()))
    };
    let first = next_line();
    assert!(first.starts_with("vrouter running: 2 ports"), "{first}");
    let ctl = |args: &[&str]| ctl(&sock, args).1;
    let rx = || -> u64 {
        let stats = ctl(&["show", "stats"]);
        stats
            .split_whitespace()
            .nth(2)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{stats}"))
    };
    let pid = child.0.id() as libc::pid_t;
    let reload = |text: String| {
        std::fs::write(&path, text).unwrap();
        // SAFETY: signalling the process this test started.
        unsafe { libc::kill(pid, libc::SIGHUP) };
    };
    assert!(ping(&ws[0].ns, "10.0.2.2"), "w1 -> w2 before any change");
    assert!(!xdp_attached(&node, &ws[2].dev), "w3 is not a port yet");
    let rx_before = rx();

    // w3 joins: its device gets the program, the workloads reach it, the others carry on
    // without losing a packet: the workers change ports between two bursts.
    let flood = Flood::start(&ws[0].ns, "10.0.2.2");
    reload(config(&[0, 1, 2]));
    let line = next_line();
    assert!(line.contains("ports added [w3] removed []"), "{line}");
    assert!(line.contains("while the workers ran"), "{line}");
    assert_eq!(flood.lost(), 0, "w1 -> w2 lost nothing while w3 was added");
    assert!(xdp_attached(&node, &ws[2].dev));
    assert!(ping(&ws[0].ns, "10.0.3.2"), "w1 -> w3, the new port");
    assert!(ping(&ws[2].ns, "10.0.2.2"), "w3 -> w2");
    assert!(ping(&ws[0].ns, "10.0.2.2"), "w1 -> w2 still");
    let ports = ctl(&["show", "ports"]);
    assert_eq!(ports.lines().count(), 3, "{ports}");
    let w3 = ports.lines().find(|l| l.starts_with("2 w3 ")).unwrap_or_default();
    let count = |what: &str| -> u64 {
        let mut words = w3.split_whitespace();
        words.find(|&w| w == what);
        words.next().and_then(|n| n.parse().ok()).unwrap_or(0)
    };
    assert!(count("rx") > 0 && count("tx") > 0, "w3 counted both ways: {ports}");
    let neighbors = ctl(&["show", "neighbors"]);
    assert!(neighbors.contains("on w3 learned"), "{neighbors}");
    assert!(rx() > rx_before, "the counters carry on across the change");

    // w1's port changes (a second address for the pod) on the same device: it keeps its
    // socket, so nothing waits for the kernel to let go of the queue, and nothing is lost.
    let flood = Flood::start(&ws[0].ns, "10.0.2.2");
    reload(config(&[0, 1, 2]).replace(
        "workload_addresses = [\"10.0.1.2\"]",
        "workload_addresses = [\"10.0.1.2\", \"10.0.1.3\"]",
    ));
    let line = next_line();
    assert!(
        line.contains("ports added [] removed [] changed [w1] while the workers ran"),
        "{line}"
    );
    assert_eq!(flood.lost(), 0, "w1 -> w2 lost nothing while w1's port changed");

    // w1's device goes down under the router: what is routed to it is dropped as
    // PortDown, not queued; `show ports` says so; up again, it carries traffic again.
    node.exec(&["ip", "link", "set", &ws[0].dev, "down"]).unwrap();
    assert!(!ping(&ws[1].ns, "10.0.1.2"), "w2 -> w1 while w1's port is down");
    let ports = ctl(&["show", "ports"]);
    assert!(
        ports
            .lines()
            .any(|l| l.starts_with("0 w1 ") && l.ends_with(" DEVICE DOWN")),
        "{ports}"
    );
    let drops = ctl(&["show", "drops"]);
    assert!(
        drops.lines().any(|l| l.starts_with("PortDown") && !l.contains(" 0  ")),
        "{drops}"
    );
    node.exec(&["ip", "link", "set", &ws[0].dev, "up"]).unwrap();
    assert!(ping(&ws[1].ns, "10.0.1.2"), "w2 -> w1 once it is up again");
    assert!(!ctl(&["show", "ports"]).contains("DEVICE DOWN"));

    // w2 leaves: w3 moves from port 2 to port 1; its flows are re-decided and its learned
    // neighbours follow it; w2's device loses the program.
    let flood = Flood::start(&ws[0].ns, "10.0.3.2");
    reload(config(&[0, 2]));
    let line = next_line();
    assert!(line.contains("ports added [] removed [w2]"), "{line}");
    assert!(line.contains("while the workers ran"), "{line}");
    assert_eq!(flood.lost(), 0, "w1 -> w3 lost nothing while w2 was removed");
    assert!(ping(&ws[0].ns, "10.0.3.2"), "w1 -> w3 after it changed number");
    assert!(!ping(&ws[0].ns, "10.0.2.2"), "w2 is gone");
    let ports = ctl(&["show", "ports"]);
    assert!(ports.contains("1 w3 dev"), "{ports}");
    let neighbors = ctl(&["show", "neighbors"]);
    assert!(
        neighbors.contains("on w3 learned") && !neighbors.contains("on w2"),
        "{neighbors}"
    );
    assert!(
        detached_soon(&node, &ws[1].dev),
        "the removed port's program is detached"
    );

    // A port on a device that does not exist: refused before anything pauses, and
    // nothing of the file applied, not even its other changes (w3's route dropped).
    let without_w3_route = config(&[0, 2]).replace(&ws[2].route, "");
    reload(without_w3_route.replace(&ws[2].dev, "nosuchdev0"));
    let refusal = std::iter::from_fn(|| log.recv_timeout(std::time::Duration::from_secs(10)).ok())
        .find(|l| l.contains("reload refused"))
        .unwrap_or_default();
    assert!(
        refusal.contains("the new ports: no interface `nosuchdev0`"),
        "{refusal}"
    );
    assert!(ping(&ws[0].ns, "10.0.3.2"), "the old ports and routes still run");
    // The same route change alone then takes effect: the refused file left nothing
    // half-applied behind to hide it.
    reload(without_w3_route);
    let line = next_line();
    assert!(line.starts_with("reloaded"), "{line}");
    assert!(!ping(&ws[0].ns, "10.0.3.2"), "w3's route is gone");
    reload(config(&[0, 2]));
    let line = next_line();
    assert!(line.starts_with("reloaded"), "{line}");
    assert!(ping(&ws[0].ns, "10.0.3.2"), "w3's route is back");

    // w3's pod goes before the file says so: its device goes with its namespace. What is
    // routed there is dropped as PortGone, and the reload removing the port finds every
    // frame (none left on the dead socket's TX ring).
    let only_w1 = config(&[0]);
    drop(ws.pop());
    // Noticed without traffic to it (the worker asks its sockets now and then).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut ports = ctl(&["show", "ports"]);
    while !ports.contains("DEVICE GONE") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
        ports = ctl(&["show", "ports"]);
    }
    assert!(
        ports
            .lines()
            .any(|l| l.starts_with("1 w3 ") && l.ends_with(" DEVICE GONE")),
        "{ports}"
    );
    assert!(!ports.lines().next().unwrap_or("").ends_with("GONE"), "{ports}");
    assert!(!ping(&ws[0].ns, "10.0.3.2"), "w3 is gone");
    let drops = ctl(&["show", "drops"]);
    assert!(
        drops.lines().any(|l| l.starts_with("PortGone") && !l.contains(" 0  ")),
        "{drops}"
    );
    reload(only_w1);
    let line = next_line();
    assert!(line.contains("ports added [] removed [w3]"), "{line}");

    // Nine ports are more than a UMEM made for two serves (each fill ring would get
    // fewer than 256 frames): the workers pause, and start again on bigger UMEMs.
    let more: Vec<Workload> = (4..=11).map(|i| Workload::new(&node, i)).collect();
    reload(config_of(std::iter::once(&ws[0]).chain(&more)));
    let line = next_line();
    assert!(
        line.contains("workers paused") && line.contains("need more than the 4096 frames"),
        "{line}"
    );
    assert!(ping(&ws[0].ns, "10.0.11.2"), "w1 -> w11 after the pause");
    // Back to one port: the bigger UMEMs serve it, no pause.
    reload(config_of(std::iter::once(&ws[0])));
    let line = next_line();
    assert!(line.contains("while the workers ran"), "{line}");
    assert!(detached_soon(&node, &more[7].dev));
    let stats = ctl(&["show", "stats"]);
    assert!(
        stats.contains("port changes: 5 while the workers ran, 1 with them paused"),
        "{stats}"
    );

    // SAFETY: signalling the process this test started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let stopped = next_line();
    assert!(stopped.starts_with("stopped:"), "{stopped}");
    assert!(child.0.wait().unwrap().success());
    let _ = std::fs::remove_file(&path);
    // Every line up to the router's exit (the reader's sender goes at end of file).
    let rest: Vec<String> = log.iter().collect();
    assert!(
        !rest.iter().any(|l| l.contains("frame accounting")),
        "every frame accounted for at each pause and at the stop: {rest:?}"
    );
    for w in &ws {
        assert!(detached_soon(&node, &w.dev), "no program left on {}", w.dev);
    }
}

/// A node with workload w1, and a peer namespace on the far end of a veth whose node end
/// (MAC `fabric`) is to be the fabric port, its own end MAC `peer`, offloads off.
fn fabric_peer(fabric: MacAddr, peer: MacAddr) -> (Netns, Netns, Workload, Veth) {
    let (node, other) = (Netns::new("n").unwrap(), Netns::new("lx").unwrap());
    let w = Workload::new(&node, 1);
    let u = Veth::new(&other, &node, 1).unwrap();
    set_mac(&node, &u.b, fabric);
    set_mac(&other, &u.a, peer);
    no_offloads(&other, &u.a);
    (node, other, w, u)
}

/// The bundled router, from its file alone, talks VXLAN to a Linux kernel `vxlan` device:
/// the tunnel's `router_mac` addresses the inner frames to the device, which takes no
/// others; overlay neighbour entries of the file come first, within their own VNI.
#[test]
fn a_vxlan_tunnel_in_the_file_talks_to_the_linux_kernel() {
    const FAB: MacAddr = MacAddr([2, 0xa, 0, 0, 9, 1]);
    const LX: MacAddr = MacAddr([2, 0, 0, 0, 7, 1]);
    const VX: MacAddr = MacAddr([2, 0, 0, 0, 7, 7]);
    let (node, linux, w, u) = fabric_peer(FAB, LX);
    let sh = |args: &str| {
        let out = linux.exec(&args.split_whitespace().collect::<Vec<_>>()).unwrap();
        assert!(out.status.success(), "{args}: {}", String::from_utf8_lossy(&out.stderr));
    };
    sh(&format!("ip addr add 192.0.2.2/24 dev {}", u.a));
    sh(&format!(
        "ip link add vxlan0 type vxlan id 42 local 192.0.2.2 remote 192.0.2.1 dstport 4789 dev {}",
        u.a
    ));
    sh(&format!("ip link set vxlan0 address {}", mac(VX)));
    sh("ip addr add 10.9.0.2/24 dev vxlan0");
    sh("ip link set vxlan0 up");
    sh("ip route add 10.0.1.0/24 dev vxlan0");
    sh(&format!(
        "ip neigh add 10.0.1.2 lladdr {} dev vxlan0 nud permanent",
        mac(FAB)
    ));
    let config = format!(
        "cpus = [0]\ntunnel_endpoints = [\"192.0.2.1\"]\n\n[[vrf]]\nid = 1\n\n{}\
         [[port]]\nname = \"fabric\"\ndevice = \"{}\"\nkind = \"fabric\"\nvrf = 0\nmac = \"{}\"\naddresses = [\"192.0.2.1\"]\n\n{}\
         [[nexthop]]\nid = 20\nport = \"fabric\"\n\n[[route]]\nvrf = 0\nprefix = \"192.0.2.0/24\"\nnexthop = 20\n\n\
         [[nexthop]]\nid = 21\ntunnel = \"vxlan\"\nkey = 42\nsrc = \"192.0.2.1\"\ndst = \"192.0.2.2\"\nrouter_mac = \"{}\"\n\n\
         [[route]]\nvrf = 1\nprefix = \"10.9.0.0/24\"\nnexthop = 21\n\n[[vni]]\nvni = 42\nvrf = 1\n\n\
         [[neighbor]]\nvni = 42\nip = \"10.9.0.3\"\nmac = \"02:00:00:00:42:03\"\n\n\
         [[neighbor]]\nvni = 43\nip = \"10.9.0.2\"\nmac = \"02:00:00:00:43:02\"\n",
        w.port,
        u.b,
        mac(FAB),
        w.route,
        mac(VX)
    );
    let (_router, sock) = run_file(&node, "vxlan", &config);
    assert!(ping(&w.ns, "10.9.0.2"), "workload -> Linux VXLAN");
    assert!(ping(&linux, "10.0.1.2"), "Linux VXLAN -> workload");
    let (_, get) = ctl(&sock, &["route", "get", "vrf", "1", "10.9.0.2"]);
    assert!(
        get.contains(", inner MAC 02:00:00:00:07:07 (router MAC)\n"),
        "VNI 43's 10.9.0.2 is another tenant's: {get}"
    );
    let (_, get) = ctl(&sock, &["route", "get", "vrf", "1", "10.9.0.3"]);
    assert!(
        get.contains(", inner MAC 02:00:00:00:42:03 (overlay neighbour)\n"),
        "{get}"
    );
    let (_, neighbors) = ctl(&sock, &["show", "neighbors"]);
    assert!(
        neighbors.contains("10.9.0.3 02:00:00:00:42:03 in vni 42 static"),
        "{neighbors}"
    );
    let (_, hops) = ctl(&sock, &["show", "nexthops"]);
    assert!(
        hops.contains("21: tunnel vxlan key 42 src 192.0.2.1 dst 192.0.2.2 router_mac 02:00:00:00:07:07"),
        "{hops}"
    );
    // An overlay agent's entry by command comes first: with a MAC the Linux device does
    // not have, it drops the inner frames; withdrawn, the router MAC is used again.
    let (_, out) = ctl(
        &sock,
        &["neighbor", "add", "vni", "42", "10.9.0.2", "02:00:00:00:de:ad"],
    );
    assert!(out.ends_with("; 1 dynamic neighbors\n"), "{out}");
    let (_, neighbors) = ctl(&sock, &["show", "neighbors"]);
    assert!(
        neighbors.contains("10.9.0.2 02:00:00:00:de:ad in vni 42 dynamic"),
        "{neighbors}"
    );
    let (_, stats) = ctl(&sock, &["show", "stats"]);
    assert!(stats.contains(" vnis 0 neighbors 1 "), "{stats}");
    assert!(
        !ping(&w.ns, "10.9.0.2"),
        "inner frames to a MAC the device does not have"
    );
    let (_, out) = ctl(&sock, &["neighbor", "del", "vni", "42", "10.9.0.2"]);
    assert!(out.ends_with("; 0 dynamic neighbors\n"), "{out}");
    assert!(ping(&w.ns, "10.9.0.2"), "the router MAC again");
}

/// What scapy, as the host at the other end of a trunk, sends and hears on `iface`
/// (argv: iface, its MAC, the router's MAC), one line each: the VLAN of the answer to a
/// tagged ARP request, of the echo reply from the workload behind the router, and whether
/// an untagged ARP request got any answer.
const VLAN_PEER: &str = r#"
import sys
from scapy.all import ARP, ICMP, IP, Dot1Q, Ether, conf, srp1
conf.verb = 0
iface, me, router = sys.argv[1:4]
arp = ARP(op=1, hwsrc=me, psrc="192.0.2.2", pdst="192.0.2.1")
a = srp1(Ether(src=me, dst="ff:ff:ff:ff:ff:ff") / Dot1Q(vlan=100) / arp, iface=iface, timeout=5)
print("arp", a[Dot1Q].vlan if a and Dot1Q in a else None, a[ARP].hwsrc if a and ARP in a else None)
echo = IP(src="192.0.2.2", dst="10.0.1.2") / ICMP(id=7, seq=1)
e = srp1(Ether(src=me, dst=router) / Dot1Q(vlan=100) / echo, iface=iface, timeout=5)
print("echo", e[Dot1Q].vlan if e and Dot1Q in e else None, e[ICMP].type if e and ICMP in e else None)
u = srp1(Ether(src=me, dst="ff:ff:ff:ff:ff:ff") / arp, iface=iface, timeout=1)
print("untagged", u is not None)
"#;

/// A fabric port on VLAN 100 of a trunk, from the file, against scapy as the host at the
/// other end (this kernel has no 802.1Q devices): a tagged ARP request is answered
/// tagged, a tagged echo request reaches the workload and its reply comes back tagged, an
/// untagged frame is a counted drop.
#[test]
fn a_fabric_port_on_a_vlan_talks_to_a_tagged_peer() {
    const FAB: MacAddr = MacAddr([2, 0xa, 0, 0, 9, 1]);
    const LX: MacAddr = MacAddr([2, 0, 0, 0, 7, 7]);
    let (node, peer, w, u) = fabric_peer(FAB, LX);
    // The workload in VRF 0 with the fabric: plain routing between them.
    let config = format!(
        "cpus = [0]\n\n{}\
         [[port]]\nname = \"fabric\"\ndevice = \"{}\"\nkind = \"fabric\"\nvrf = 0\nmac = \"{}\"\naddresses = [\"192.0.2.1\"]\nvlan = 100\n\n{}\
         [[nexthop]]\nid = 20\nport = \"fabric\"\n\n[[route]]\nvrf = 0\nprefix = \"192.0.2.0/24\"\nnexthop = 20\n\n\
         [[neighbor]]\nport = \"fabric\"\nip = \"192.0.2.2\"\nmac = \"{}\"\n",
        w.port.replace("vrf = 1", "vrf = 0"),
        u.b,
        mac(FAB),
        w.route.replace("vrf = 1", "vrf = 0"),
        mac(LX),
    );
    let (_router, sock) = run_file(&node, "vlan", &config);
    let out = peer
        .exec(&["/usr/bin/python3", "-c", VLAN_PEER, &u.a, &mac(LX), &mac(FAB)])
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        said.lines().collect::<Vec<_>>(),
        [format!("arp 100 {}", mac(FAB)).as_str(), "echo 100 0", "untagged False"],
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, drops) = ctl(&sock, &["show", "drops"]);
    let wrong_vlan = drops
        .lines()
        .find(|l| l.starts_with("WrongVlan "))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok());
    assert!(wrong_vlan.is_some_and(|n| n >= 1), "the untagged request: {drops}");
    let (_, ports) = ctl(&sock, &["show", "ports"]);
    assert!(ports.contains(&format!("fabric dev {} vlan 100 mac", u.b)), "{ports}");
}

/// A file of the test's own, removed when the test ends, also when it fails.
struct TempFile(std::path::PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A NetworkPolicy naming its port `http` admits connections to the server pod's own
/// `http` container port and no other; when a reload gives `http` another number, the
/// policy follows it, and a connection to the old number is cut on its next packet.
#[test]
fn network_policy_yaml_with_a_named_port_admits_only_that_port() {
    let node = Netns::new("n").unwrap();
    let ws: Vec<Workload> = (1..=2).map(|i| Workload::new(&node, i)).collect();
    let (client, server) = (&ws[0].ns, &ws[1].ns);
    let _servers = (Echo::start(server, 8080), Echo::start(server, 9090));
    let yaml = TempFile(std::env::temp_dir().join(format!("vrouter-netpol-{}.yaml", std::process::id())));
    std::fs::write(
        &yaml.0,
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: { name: server }\nspec:\n  \
         podSelector: { matchLabels: { app: server } }\n  ingress:\n    \
         - from: [{ podSelector: { matchLabels: { app: client } } }]\n      ports: [{ port: http }]\n",
    )
    .unwrap();
    let config = |http: u16| {
        let pods = format!(
            "[[pod]]\nname = \"client\"\nlabels = {{ app = \"client\" }}\nport = \"w1\"\n\n\
             [[pod]]\nname = \"server\"\nlabels = {{ app = \"server\" }}\nport = \"w2\"\n\
             container_ports = [{{ name = \"http\", port = {http} }}]\n"
        );
        let file = yaml.0.file_name().unwrap().to_str().unwrap();
        config_of(ws.iter()).replace(
            "cpus = [0]\n",
            &format!("cpus = [0]\nnetwork_policies = [\"{file}\"]\n"),
        ) + &pods
    };
    let (_router, path, sock, status) = start_reloadable(&node, "netpol", &config(8080));
    let _config = TempFile(path.clone());
    let answers = |port| Conn::open(client, "10.0.2.2", port).and_then(|mut c| c.ask()).is_some();
    assert!(answers(8080), "the server's http port admits the client");
    assert!(!answers(9090), "another port of the server does not");
    assert!(!ping(client, "10.0.2.2"), "nor does ICMP");
    assert!(
        ping(server, "10.0.1.2"),
        "the client is not isolated: the server's pings pass"
    );

    let mut old = Conn::open(client, "10.0.2.2", 8080).expect("a connection to http on 8080");
    assert!(old.ask().is_some());
    std::fs::write(&path, config(9090)).unwrap();
    assert!(ctl(&sock, &["reload"]).0);
    let line = status.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
    assert!(line.starts_with("reloaded"), "{line}");
    assert!(old.ask().is_none(), "the connection to the old number is cut");
    assert!(answers(9090), "http is 9090 now");
    assert!(!answers(8080), "and 8080 no longer");
    let (_, drops) = ctl(&sock, &["show", "drops"]);
    assert!(
        drops
            .lines()
            .any(|l| l.starts_with("PolicyDenied") && !l.contains(" 0  ")),
        "{drops}"
    );
    // The counters say which NetworkPolicy rule let the connections in.
    let (_, policy) = ctl(&sock, &["show", "policy"]);
    let server = policy
        .lines()
        .find(|l| l.starts_with("w2 ingress: "))
        .unwrap_or_default();
    assert!(
        server.starts_with("w2 ingress: rule 1 (server ingress[0]) allow ") && server.contains(", default deny "),
        "{policy}"
    );
}
