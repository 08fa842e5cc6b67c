//! The control socket: one command per connection, one text answer. Only root may
//! connect (the socket is created mode 0600). A client that sends garbage gets an error
//! line; one that disconnects early is simply dropped; the router keeps forwarding.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vrouter::dataplane::SharedCounters;
use vrouter::flow::FullPolicy;
use vrouter::{DropReason, NodeConfig, Stats, Tables};

use crate::config::Listing;

/// What the control thread can read.
pub(crate) struct State {
    pub(crate) node: NodeConfig,
    pub(crate) devices: Vec<String>,
    pub(crate) tables: Tables,
    pub(crate) counters: Vec<SharedCounters>,
    pub(crate) listing: Arc<Mutex<Listing>>,
}

const HELP: &str =
    "commands: show ports|vrfs|routes|nexthops|flows|neighbors|stats|drops, trace N, capture PORT FILE [COUNT], reload";

/// How long `trace` and `capture` wait for packets.
const TAP_WAIT: Duration = Duration::from_secs(5);

/// Most flows `show flows` prints.
const MAX_FLOWS: usize = 1000;

/// Binds `path` (replacing a stale socket) with mode 0600 and serves it on a thread.
pub(crate) fn serve(path: &str, state: State) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    std::thread::Builder::new().name("vrouter-ctl".into()).spawn(move || {
        for conn in listener.incoming().flatten() {
            let _ = handle(conn, &state);
        }
    })?;
    Ok(())
}

fn handle(conn: UnixStream, state: &State) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut line = String::new();
    // At most one short line: a client cannot make us buffer without bound.
    BufReader::new((&conn).take(4096)).read_line(&mut line)?;
    let answer = answer(line.trim(), state);
    (&conn).write_all(answer.as_bytes())
}

fn answer(cmd: &str, s: &State) -> String {
    let words: Vec<&str> = cmd.split_whitespace().collect();
    let lines: Vec<String> = match words.as_slice() {
        ["show", "ports"] => s
            .node
            .ports
            .iter()
            .zip(&s.devices)
            .enumerate()
            .map(|(i, (p, d))| format!("{i} {} dev {d} mac {} mtu {} {:?}", p.name, p.mac, p.mtu, p.role))
            .collect(),
        ["show", "vrfs"] => s.listing.lock().map(|l| l.vrfs.clone()).unwrap_or_default(),
        ["show", "routes"] => s.listing.lock().map(|l| l.routes.clone()).unwrap_or_default(),
        ["show", "nexthops"] => s.listing.lock().map(|l| l.nexthops.clone()).unwrap_or_default(),
        ["show", "neighbors"] => {
            let mut v: Vec<String> = s
                .listing
                .lock()
                .map(|l| l.neighbors.iter().map(|n| format!("{n} static")).collect())
                .unwrap_or_default();
            let now = s.tables.epoch.elapsed().as_secs() as u32;
            let learned = s.tables.neighbors.snapshot();
            let mut learned: Vec<_> = learned.iter().collect();
            learned.sort_by_key(|(k, _)| **k);
            v.extend(learned.into_iter().map(|((port, ip), l)| {
                let port = s.node.ports.get(*port as usize).map_or("?", |p| p.name.as_str());
                format!("{ip} {} on {port} learned {}s ago", l.mac, now.saturating_sub(l.at))
            }));
            v
        }
        ["show", "stats"] => {
            let per: Vec<Stats> = s.counters.iter().map(|c| c.snapshot()).collect();
            let t = Stats::sum(&per);
            let f = s.tables.flows.stats();
            let mut v = vec![format!(
                "total rx {} tx {} dropped {} flows {} of {}",
                t.rx,
                t.tx,
                t.dropped(),
                f.entries,
                f.capacity
            )];
            v.push(format!(
                "flow table: inserts {} aged {} evicted {} refused: full {} quota {} hold {}",
                f.inserts, f.aged, f.evictions, f.full_refusals, f.quota_refusals, f.hold_refusals
            ));
            let cfg = s.tables.flows.config();
            let o = cfg.timeouts;
            v.push(format!(
                "flow settings: when full {} quota {} timeouts (s) tcp {} closing {} udp {} icmp {} other {}",
                match cfg.full_policy {
                    FullPolicy::Refuse => "refuse",
                    FullPolicy::EvictExpiredOrClosing => "evict",
                },
                cfg.vrf_quota.map_or("none".into(), |q| q.to_string()),
                o.tcp_established,
                o.tcp_closing,
                o.udp,
                o.icmp,
                o.other
            ));
            if let Some(quota) = cfg.vrf_quota {
                v.extend(s.tables.fib.snapshot().vrf_ids().map(|vrf| {
                    let (n, refused) = s.tables.flows.vrf_usage(vrf);
                    format!("vrf {vrf} flows {n} of quota {quota}, refused {refused}")
                }));
            }
            v.extend(per.iter().enumerate().map(|(i, w)| {
                format!(
                    "worker {i} rx {} tx {} dropped {} bursts {} empty_polls {} fill_starved {}",
                    w.rx,
                    w.tx,
                    w.dropped(),
                    w.bursts,
                    w.empty_polls,
                    w.fill_starved
                )
            }));
            v
        }
        ["show", "drops"] => {
            let t = Stats::sum(&s.counters.iter().map(|c| c.snapshot()).collect::<Vec<_>>());
            DropReason::ALL
                .iter()
                .map(|&r| format!("{:<16} {:>12}  {}", format!("{r:?}"), t.dropped_for(r), r.description()))
                .collect()
        }
        ["show", "flows"] => match s.tables.flows.reader() {
            None => vec!["error: no flow reader slot free".into()],
            Some(reader) => {
                let mut v = Vec::new();
                reader.for_each(|f| {
                    if v.len() < MAX_FLOWS {
                        v.push(format!(
                            "{} {:?} packets {} bytes {}",
                            f.key, f.action.verdict, f.packets, f.bytes
                        ));
                    }
                });
                v
            }
        },
        ["trace", n] => match n.parse::<u32>() {
            Ok(n) if n > 0 && n <= crate::vrouter_taps_max() => trace(s, n),
            _ => vec![format!(
                "error: `trace N` takes a packet count 1..={}",
                crate::vrouter_taps_max()
            )],
        },
        ["capture", port, file] => capture(s, port, file, 100),
        ["capture", port, file, count] => match count.parse::<usize>() {
            Ok(c) if c > 0 && c <= crate::vrouter_taps_max() as usize => capture(s, port, file, c),
            _ => vec![format!("error: COUNT must be 1..={}", crate::vrouter_taps_max())],
        },
        ["reload"] => {
            // The main thread reloads on SIGHUP: the same path as `kill -HUP`.
            // SAFETY: signalling our own process.
            unsafe { libc::kill(libc::getpid(), libc::SIGHUP) };
            vec!["reload requested (see the router's output)".into()]
        }
        [] => vec![format!("error: empty command; {HELP}")],
        _ => vec![format!("error: unknown command `{cmd}`; {HELP}")],
    };
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// `vrouter ctl`: sends `cmd` to the socket and prints the answer.
pub(crate) fn client(path: &str, cmd: &str) -> Result<String, String> {
    let mut s =
        UnixStream::connect(path).map_err(|e| format!("{path}: {e} (is `vrouter run` running, and are you root?)"))?;
    s.write_all(format!("{cmd}\n").as_bytes()).map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// Traces the next `n` packets through the pipeline, waiting up to [`TAP_WAIT`].
fn trace(s: &State, n: u32) -> Vec<String> {
    let taps = &s.tables.taps;
    while taps.next_trace().is_some() {}
    taps.trace(n);
    let deadline = std::time::Instant::now() + TAP_WAIT;
    let mut lines = Vec::new();
    while lines.len() < n as usize && std::time::Instant::now() < deadline {
        match taps.next_trace() {
            Some(l) => lines.push(l),
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    taps.trace(0);
    if lines.is_empty() {
        lines.push(format!("no packets in {}s", TAP_WAIT.as_secs()));
    }
    lines
}

/// Captures up to `count` frames received on `port` (a name or index) into a pcap file.
fn capture(s: &State, port: &str, file: &str, count: usize) -> Vec<String> {
    let index = s
        .node
        .ports
        .iter()
        .position(|p| p.name == port)
        .or_else(|| port.parse().ok().filter(|&i: &usize| i < s.node.ports.len()));
    let Some(index) = index else {
        return vec![format!("error: no port `{port}`")];
    };
    let taps = &s.tables.taps;
    while taps.next_frame().is_some() {}
    taps.capture(Some(index as u16));
    let deadline = std::time::Instant::now() + TAP_WAIT;
    let mut frames = Vec::new();
    while frames.len() < count && std::time::Instant::now() < deadline {
        match taps.next_frame() {
            Some((_, f)) => frames.push(f),
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    taps.capture(None);
    match write_pcap(file, &frames) {
        Ok(()) => vec![format!(
            "captured {} frames from {} to {file}",
            frames.len(),
            s.node.ports[index].name
        )],
        Err(e) => vec![format!("error: writing {file}: {e}")],
    }
}

/// A classic pcap file (microsecond timestamps of the write, Ethernet link type).
fn write_pcap(path: &str, frames: &[Vec<u8>]) -> std::io::Result<()> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    for f in frames {
        out.extend_from_slice(&(now.as_secs() as u32).to_le_bytes());
        out.extend_from_slice(&now.subsec_micros().to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
    }
    std::fs::write(path, out)
}
