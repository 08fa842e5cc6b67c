//! `vrouter demo`: builds namespace networks on this machine, runs pure-L3 routing, each
//! overlay and an ECMP service with real traffic through vrouter, prints the results and
//! removes everything it made. Needs root.

use std::process::ExitCode;

use vrouter::lab::{self, KernelLab, L3Lab, Node, Overlay, OverlayLab, ServiceLab};

mod ctl;
mod metrics;
mod run;

/// The most packets one `trace` or `capture` collects.
fn vrouter_taps_max() -> u32 {
    vrouter::dataplane::TAP_QUEUE as u32
}

/// Where `run` listens and `ctl` connects unless `--socket` says otherwise.
const DEFAULT_SOCKET: &str = "/run/vrouter.sock";

const USAGE: &str = "usage: vrouter demo | vrouter run --config FILE [--socket PATH] | vrouter check --config FILE\n       vrouter ctl [--socket PATH] show ports|vrfs|routes|nexthops|neighbors|kernel-routes|stats|drops | show routes|kernel-routes [vrf V] [within PREFIX/LEN] | show flows [vrf N] [ip ADDR] [port N] [proto P] [top N] | clear flows [FILTERS] | trace N | capture PORT FILE [COUNT]\n                          | route add vrf V PREFIX/LEN nexthop N | route del vrf V PREFIX/LEN | route get vrf V ADDRESS | reload\n\n  demo    build a namespace lab (workloads, two nodes, a service with three backends),\n          run pure L3 and each overlay with real traffic, print the results (root)\n  run     start the router described by FILE on its interfaces (AF_XDP, root);\n          SIGHUP reloads routes from FILE, SIGINT/SIGTERM stop and detach XDP\n  check   check FILE and report the first error (line, field, reason)\n  ctl     ask the running router (control socket, root only; default /run/vrouter.sock)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `--help` anywhere asks for the usage, never runs the command it follows.
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    match args.first().map(String::as_str) {
        Some("demo") if args.len() == 1 => demo(),
        Some("demo") => {
            eprintln!("`demo` takes no arguments\n{USAGE}");
            ExitCode::from(2)
        }
        Some(cmd @ ("run" | "check")) => match (
            args.get(1).map(String::as_str),
            args.get(2),
            args.get(3).map(String::as_str),
            args.get(4),
        ) {
            (Some("--config"), Some(path), None, None) => run::run(path, cmd == "check", DEFAULT_SOCKET),
            (Some("--config"), Some(path), Some("--socket"), Some(sock)) => run::run(path, cmd == "check", sock),
            _ => {
                eprintln!("{USAGE}");
                ExitCode::from(2)
            }
        },
        Some("ctl") => {
            let (sock, words) = match args.get(1).map(String::as_str) {
                Some("--socket") if args.len() > 2 => (args[2].as_str(), &args[3..]),
                _ => (DEFAULT_SOCKET, &args[1..]),
            };
            match ctl::client(sock, &words.join(" ")) {
                Ok(out) => {
                    print!("{out}");
                    if out.starts_with("error") {
                        ExitCode::FAILURE
                    } else {
                        ExitCode::SUCCESS
                    }
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some("help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("unknown command `{other}`\n{USAGE}");
            ExitCode::from(2)
        }
        None => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// One measured scenario; the packet counts are vrouter's (none for the kernel rows).
struct Row {
    name: String,
    rtt_ms: Option<f64>,
    gbps: Option<f64>,
    counts: Option<(u64, u64, u64)>,
    note: String,
}

fn measure(name: &str, node: &mut [&mut Node], client: &lab::Netns, server: &lab::Netns, dst: &str) -> Row {
    let rtt_ms = lab::ping_rtt(client, dst, 10);
    let gbps = lab::iperf3(server, client, dst, 2).map(|b| b / 1e9);
    let mut row = Row {
        name: name.into(),
        rtt_ms,
        gbps,
        counts: Some((0, 0, 0)),
        note: String::new(),
    };
    for n in node.iter_mut() {
        match (n.stop(), row.counts.as_mut()) {
            (Ok(s), Some((rx, tx, drops))) => {
                *rx += s.rx;
                *tx += s.tx;
                *drops += s.dropped();
            }
            (Err(e), _) => row.note = format!("accounting: {e}"),
            (Ok(_), None) => {}
        }
    }
    if row.note.is_empty() {
        row.note = "packets and frames conserved".into();
    }
    row
}

fn demo() -> ExitCode {
    if !lab::is_root() {
        eprintln!("vrouter demo must run as root");
        return ExitCode::FAILURE;
    }
    for tool in ["ip", "ping", "iperf3", "ethtool", "python3"] {
        if std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map_or(true, |o| !o.status.success())
        {
            eprintln!(
                "`{tool}` is missing: apt-get install iproute2 iputils-ping iperf3 ethtool python3 (or run scripts/demo)"
            );
            return ExitCode::FAILURE;
        }
    }
    let run = || -> Result<Vec<Row>, String> {
        let mut rows = Vec::new();
        eprintln!("pure L3 (Calico model): two workloads, /32 routes, proxy-ARP gateway ...");
        let mut l3 = L3Lab::new();
        rows.push(measure(
            "pure L3",
            &mut [&mut l3.node],
            &l3.w1.ns,
            &l3.w2.ns,
            "10.0.2.2",
        ));
        drop(l3);
        // Each tunnel on an IPv4 underlay, and VXLAN on an IPv6 one too.
        let overlays = Overlay::ALL
            .map(|o| (o, false))
            .into_iter()
            .chain([(Overlay::Vxlan, true)]);
        for (o, v6) in overlays {
            let underlay = if v6 { ", IPv6 underlay" } else { "" };
            eprintln!(
                "overlay over {}{underlay} (OpenContrail model): two nodes, tenant VRF ...",
                o.name()
            );
            let mut lab = if v6 {
                OverlayLab::over_ipv6(o, 1)
            } else {
                OverlayLab::new(o, 1)
            };
            let ((na, wa), (nb, wb)) = (&mut lab.a, &mut lab.b);
            rows.push(measure(
                &format!("overlay {}{underlay}", o.name()),
                &mut [na, nb],
                &wa[0].ns,
                &wb[0].ns,
                "10.2.0.2",
            ));
        }
        eprintln!("service 10.96.0.10 with three backends by ECMP ...");
        let mut svc = ServiceLab::new();
        let spread = svc.spread(30)?;
        let mut counts: Vec<String> = spread.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        counts.sort();
        let mut row = measure(
            "service (ECMP, 3 backends)",
            &mut [&mut svc.node],
            &svc.client.ns,
            &svc.backends[0].ns,
            "10.0.3.1",
        );
        row.note = format!("30 connections: {}; each stayed on its backend", counts.join(" "));
        rows.push(row);
        drop(svc);
        // The Linux kernel doing the same jobs, same machine, same run.
        for (vxlan, offloads) in [(false, false), (false, true), (true, false), (true, true)] {
            let what = if vxlan {
                "Linux kernel VXLAN, two nodes"
            } else {
                "Linux kernel routing"
            };
            let how = if offloads { "TSO/GSO on" } else { "offloads off" };
            eprintln!("{what} ({how}), for comparison ...");
            let k = if vxlan {
                KernelLab::vxlan(offloads)
            } else {
                KernelLab::routed(offloads)
            };
            rows.push(Row {
                name: format!("{what} ({how})"),
                rtt_ms: lab::ping_rtt(&k.w1, "10.2.0.2", 10),
                gbps: lab::iperf3(&k.w2, &k.w1, "10.2.0.2", 2).map(|b| b / 1e9),
                counts: None,
                note: "the kernel's own path, for comparison".into(),
            });
        }
        Ok(rows)
    };
    match run() {
        Ok(rows) => {
            println!();
            println!("| scenario | ping avg (ms) | iperf3 TCP (Gbit/s) | vrouter rx | tx | drops | notes |");
            println!("|---|---:|---:|---:|---:|---:|---|");
            for r in rows {
                let f = |v: Option<f64>, p: usize| v.map_or("failed".to_string(), |v| format!("{v:.p$}"));
                let counts = r
                    .counts
                    .map_or("- | - | -".to_string(), |(rx, tx, d)| format!("{rx} | {tx} | {d}"));
                println!(
                    "| {} | {} | {} | {counts} | {} |",
                    r.name,
                    f(r.rtt_ms, 3),
                    f(r.gbps, 2),
                    r.note
                );
            }
            println!("\nEvery namespace and veth the demo made has been removed.");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}
