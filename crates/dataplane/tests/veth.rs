//! Workers on AF_XDP ports over veth pairs in namespaces the tests create and remove:
//! reflect and port-to-port forward with 1 and 2 workers, native and generic mode, every
//! packet accounted for (sent = received + counted drops), and the frame pool whole after
//! a clean stop.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use af_xdp::{AttachMode, SocketConfig, Umem, UmemConfig, XdpProgram, XskSocket};
use dataplane::*;
use testnet::{Netns, PacketSocket, Veth, frame_seq, udp_frame};

const MAC_G: [u8; 6] = [2, 0, 0, 0, 0, 0x11];
const MAC_D: [u8; 6] = [2, 0, 0, 0, 0, 0x22];

/// Sends `seqs` from one thread per entry of `cpus` (AF_PACKET picks the TX queue by CPU,
/// which spreads frames over a multi-queue veth), pacing so nothing overflows.
fn send_from_cpus(ifname: &str, cpus: &[usize], seqs: std::ops::Range<u64>, paced: bool) {
    let per = (seqs.end - seqs.start).div_ceil(cpus.len() as u64);
    std::thread::scope(|s| {
        for (k, &cpu) in cpus.iter().enumerate() {
            let lo = seqs.start + k as u64 * per;
            let hi = (lo + per).min(seqs.end);
            s.spawn(move || {
                pin_current_thread(cpu).unwrap();
                let ps = PacketSocket::new(ifname).unwrap();
                for seq in lo..hi {
                    ps.send(&udp_frame(MAC_G, MAC_D, seq, 64)).unwrap();
                    if paced && seq % 128 == 127 {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            });
        }
    });
}

fn collect(ps: &PacketSocket, n: usize) -> HashSet<u64> {
    let mut got = HashSet::new();
    ps.recv_until(Duration::from_secs(3), |f| {
        if let Some(seq) = frame_seq(f) {
            got.insert(seq);
        }
        got.len() == n
    })
    .unwrap();
    got
}

fn check_reports(reports: &[WorkerReport]) -> (Stats, u64) {
    for (i, r) in reports.iter().enumerate() {
        assert!(r.frames_ok.is_ok(), "worker {i}: {:?}", r.frames_ok);
        assert_eq!(
            r.stats.rx,
            r.stats.tx + r.stats.dropped(),
            "worker {i} conserves packets"
        );
    }
    let total = Stats::sum(reports.iter().map(|r| &r.stats));
    let kernel: u64 = reports.iter().flat_map(|r| &r.kernel_drops).sum();
    (total, kernel)
}

fn reflect(workers: usize, mode: AttachMode, n: u64) {
    let (ng, nd) = (Netns::new("g").unwrap(), Netns::new("d").unwrap());
    let veth = Veth::new(&ng, &nd, workers as u32).unwrap();
    let cpus: Vec<usize> = (0..workers).map(|i| i % online_cpus().len()).collect();
    let dut_if = veth.b.clone();
    let set = nd.run(|| {
        let prog = Arc::new(XdpProgram::attach(&dut_if, mode).unwrap());
        WorkerSet::start(&cpus, move |i, _cpu| {
            let umem = Arc::new(Umem::new(UmemConfig::default()).map_err(|e| e.to_string())?);
            let pool = FramePool::new(umem, 1);
            let port =
                AfXdpPort::open(&pool, &prog, i as u32, SocketConfig::default(), None).map_err(|e| e.to_string())?;
            Ok(Worker::new(pool, vec![Box::new(port)], Box::new(apps::Reflect)))
        })
        .unwrap()
    });
    let gen_if = veth.a.clone();
    let got = ng.run(|| {
        let ps = PacketSocket::new(&gen_if).unwrap();
        std::thread::scope(|s| {
            let rx = s.spawn(|| collect(&ps, n as usize));
            send_from_cpus(&gen_if, &cpus, 0..n, true);
            rx.join().unwrap()
        })
    });
    let per_worker: Vec<u64> = set.stats().iter().map(|s| s.rx).collect();
    let reports = set.stop();
    let (total, kernel) = check_reports(&reports);
    assert_eq!(n, total.rx + kernel, "sent = received + kernel drops");
    assert_eq!(got.len() as u64, total.tx, "every packet reflected came back");
    assert!(
        total.tx * 100 >= n * 99,
        "paced traffic is not dropped: {total:?}, kernel {kernel}"
    );
    if workers > 1 {
        assert!(
            per_worker.iter().all(|&r| r > 0),
            "every worker got traffic: {per_worker:?}"
        );
    }
}

#[test]
fn reflect_one_worker_native() {
    reflect(1, AttachMode::Native, 5000);
}

#[test]
fn reflect_one_worker_generic() {
    reflect(1, AttachMode::Generic, 5000);
}

#[test]
fn reflect_two_workers_native() {
    reflect(2, AttachMode::Native, 8000);
}

fn forward(workers: usize, mode: AttachMode, n: u64) {
    let (g1, nd, g2) = (
        Netns::new("g").unwrap(),
        Netns::new("d").unwrap(),
        Netns::new("h").unwrap(),
    );
    let (v1, v2) = (
        Veth::new(&g1, &nd, workers as u32).unwrap(),
        Veth::new(&g2, &nd, workers as u32).unwrap(),
    );
    let cpus: Vec<usize> = (0..workers).map(|i| i % online_cpus().len()).collect();
    let (d1, d2) = (v1.b.clone(), v2.b.clone());
    let set = nd.run(|| {
        let p1 = Arc::new(XdpProgram::attach(&d1, mode).unwrap());
        let p2 = Arc::new(XdpProgram::attach(&d2, mode).unwrap());
        WorkerSet::start(&cpus, move |i, _cpu| {
            let e = |e: af_xdp::Error| e.to_string();
            let umem = Arc::new(Umem::new(UmemConfig::default()).map_err(e)?);
            let pool = FramePool::new(umem, 2);
            let a = AfXdpPort::open(&pool, &p1, i as u32, SocketConfig::default(), None).map_err(e)?;
            // Shares the first port's UMEM: forwarding moves descriptors.
            let b = AfXdpPort::open(&pool, &p2, i as u32, SocketConfig::default(), Some(&a)).map_err(e)?;
            Ok(Worker::new(
                pool,
                vec![Box::new(a), Box::new(b)],
                Box::new(apps::Forward { peer: vec![1, 0] }),
            ))
        })
        .unwrap()
    });
    // Open the receiver before anything is sent.
    let (s1, s2) = (v1.a.clone(), v2.a.clone());
    let stop = AtomicBool::new(false);
    let got = std::thread::scope(|s| {
        let rx = s.spawn(|| {
            g2.run(|| {
                let ps = PacketSocket::new(&s2).unwrap();
                let got = collect(&ps, n as usize);
                stop.store(true, Ordering::Relaxed);
                got
            })
        });
        std::thread::sleep(Duration::from_millis(200));
        g1.run(|| send_from_cpus(&s1, &cpus, 0..n, true));
        rx.join().unwrap()
    });
    let per_worker: Vec<u64> = set.stats().iter().map(|s| s.rx).collect();
    assert!(
        per_worker.iter().all(|&r| r > 0),
        "every worker got traffic: {per_worker:?}"
    );
    let reports = set.stop();
    let (total, kernel) = check_reports(&reports);
    assert_eq!(n, total.rx + kernel, "sent = received + kernel drops");
    assert_eq!(got.len() as u64, total.tx, "every packet forwarded arrived");
    assert!(total.tx * 100 >= n * 99, "{total:?}, kernel {kernel}");
}

#[test]
fn forward_one_worker_native() {
    forward(1, AttachMode::Native, 5000);
}

#[test]
fn forward_one_worker_generic() {
    forward(1, AttachMode::Generic, 5000);
}

#[test]
fn forward_two_workers_native() {
    forward(2, AttachMode::Native, 8000);
}

/// A million packets through AF_XDP, as fast as the sender goes (drops allowed, but
/// counted), then a clean stop: the worker conserves packets and every frame is in exactly
/// one place.
#[test]
fn a_million_packets_through_af_xdp_lose_no_frame() {
    let (ng, nd) = (Netns::new("g").unwrap(), Netns::new("d").unwrap());
    let veth = Veth::new(&ng, &nd, 1).unwrap();
    let dut_if = veth.b.clone();
    let set = nd.run(|| {
        let prog = Arc::new(XdpProgram::attach(&dut_if, AttachMode::Native).unwrap());
        WorkerSet::start(&[online_cpus()[online_cpus().len() - 1]], move |_, _| {
            let umem = Arc::new(Umem::new(UmemConfig::default()).map_err(|e| e.to_string())?);
            let pool = FramePool::new(umem, 1);
            let port = AfXdpPort::open(&pool, &prog, 0, SocketConfig::default(), None).map_err(|e| e.to_string())?;
            Ok(Worker::new(pool, vec![Box::new(port)], Box::new(apps::Reflect)))
        })
        .unwrap()
    });
    const N: u64 = 1_000_000;
    let gen_if = veth.a.clone();
    ng.run(|| send_from_cpus(&gen_if, &[0], 0..N, false));
    std::thread::sleep(Duration::from_millis(200));
    let reports = set.stop();
    let (total, kernel) = check_reports(&reports);
    assert_eq!(N, total.rx + kernel, "sent = received + kernel drops ({total:?})");
    assert!(total.rx > N / 2, "{total:?}");
}

/// A worker that does not keep up: its RX ring (64 entries) fills and the kernel drops
/// the rest, counted. After a receive fails on a full ring the kernel keeps that frame in
/// its own buffer pool for the next packet, off the fill ring (in generic mode every time;
/// in native mode when the failure follows a success in one NAPI poll): the accounting at
/// stop allows for that one frame.
fn full_rx_ring(mode: AttachMode) {
    let (ng, nd) = (Netns::new("g").unwrap(), Netns::new("d").unwrap());
    let veth = Veth::new(&ng, &nd, 1).unwrap();
    const N: u64 = 500;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (sent_tx, sent_rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        let (nd, dut_if) = (&nd, veth.b.clone());
        let dut = s.spawn(move || {
            nd.enter().unwrap();
            let prog = Arc::new(XdpProgram::attach(&dut_if, mode).unwrap());
            let umem = Arc::new(Umem::new(UmemConfig::default()).unwrap());
            let pool = FramePool::new(umem, 1);
            let cfg = SocketConfig {
                rx_size: 64,
                ..SocketConfig::default()
            };
            let port = AfXdpPort::open(&pool, &prog, 0, cfg, None).unwrap();
            let mut w = Worker::new(pool, vec![Box::new(port)], Box::new(apps::Reflect));
            // One poll registers the socket and fills the fill ring; then no more polls
            // while the sender sends.
            w.run_once();
            ready_tx.send(()).unwrap();
            sent_rx.recv().unwrap();
            std::thread::sleep(Duration::from_millis(50));
            w.finish()
        });
        let gen_if = veth.a.clone();
        ng.run(move || {
            ready_rx.recv().unwrap();
            send_from_cpus(&gen_if, &[0], 0..N, false);
        });
        sent_tx.send(()).unwrap();
        let r = dut.join().unwrap();
        assert!(r.frames_ok.is_ok(), "{:?}", r.frames_ok);
        let kernel: u64 = r.kernel_drops.iter().sum();
        // The worker never polled after the start: what the ring took is counted at
        // the stop, as packets that arrived as the port closed.
        assert_eq!(r.stats.rx, 64, "{:?}", r.stats);
        assert_eq!(r.stats.dropped_for(DropReason::PortClosing), 64);
        assert_eq!(r.stats.rx + kernel, N, "the ring took 64, the kernel dropped the rest");
        assert_eq!(r.stats.port_kernel_dropped[0], kernel, "counted for the port too");
    });
}

#[test]
fn a_full_rx_ring_drops_counted_and_loses_no_frame_native() {
    full_rx_ring(AttachMode::Native);
}

#[test]
fn a_full_rx_ring_drops_counted_and_loses_no_frame_generic() {
    full_rx_ring(AttachMode::Generic);
}

/// A worker forwarding from a memory port (0) to an AF_XDP port (1) on `ifname` (in the
/// calling thread's namespace), and the memory port's link.
fn memory_to_af_xdp(ifname: &str) -> (Worker, Arc<MemoryLink>) {
    let prog = Arc::new(XdpProgram::attach(ifname, AttachMode::Native).unwrap());
    let umem = Arc::new(Umem::new(UmemConfig::default()).unwrap());
    let pool = FramePool::new(umem, 2);
    let x = AfXdpPort::open(&pool, &prog, 0, SocketConfig::default(), None).unwrap();
    let link = MemoryLink::new(256);
    let ports: Vec<Box<dyn Port>> = vec![Box::new(MemoryPort::new("m", link.clone())), Box::new(x)];
    let w = Worker::new(pool, ports, Box::new(apps::Forward { peer: vec![1, 0] }));
    (w, link)
}

/// Sends `seqs` into the memory port of a [`memory_to_af_xdp`] worker, a pass after each.
fn send_each(w: &mut Worker, link: &MemoryLink, seqs: std::ops::Range<u64>) {
    for seq in seqs {
        assert!(link.inject(&udp_frame(MAC_G, MAC_D, seq, 60)));
        w.run_once();
    }
    for _ in 0..4 {
        w.run_once();
    }
}

/// The AF_XDP port's state in a [`memory_to_af_xdp`] worker.
fn port_state(w: &Worker) -> PortState {
    w.counters().snapshot().port_state[1]
}

/// A [`memory_to_af_xdp`] worker on `veth.a` of a pair in namespaces of its own, run in
/// its namespace by `body` (given the namespaces, the pair, the worker, its memory link
/// and a socket on the peer end) once 10 packets went through it to the peer.
fn ten_sent_on_a_veth(body: impl FnOnce(&Netns, &Netns, &Veth, Worker, &MemoryLink, &PacketSocket) + Send) {
    let nd = Netns::new("d").unwrap();
    let peer = Netns::new("p").unwrap();
    let veth = Veth::new(&nd, &peer, 1).unwrap();
    let ps = peer.run(|| PacketSocket::new(&veth.b).unwrap());
    nd.run(|| {
        let (mut w, link) = memory_to_af_xdp(&veth.a);
        send_each(&mut w, &link, 0..10);
        assert_eq!(collect(&ps, 10), (0..10).collect(), "sent while up");
        body(&nd, &peer, &veth, w, &link, &ps);
    });
}

/// Once the AF_XDP port of a [`memory_to_af_xdp`] worker is up again: `seqs` sent arrive
/// at `ps`, nothing stale before them; at the stop, `sent` packets went out in all and
/// every packet and frame is accounted for.
fn up_again_then_stop(mut w: Worker, link: &MemoryLink, ps: &PacketSocket, seqs: std::ops::Range<u64>, sent: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while port_state(&w) != PortState::Up && std::time::Instant::now() < deadline {
        w.run_once();
    }
    assert_eq!(port_state(&w), PortState::Up, "noticed up again");
    send_each(&mut w, link, seqs.clone());
    assert_eq!(
        collect(ps, seqs.clone().count()),
        seqs.collect(),
        "only what was sent after it came up, nothing stale"
    );
    let r = w.finish();
    assert!(r.frames_ok.is_ok(), "{:?}", r.frames_ok);
    assert_eq!(r.stats.port_tx[1], sent);
    assert!(r.stats.conserved(), "{:?}", r.stats);
}

/// A port whose device is down when a live change removes it: every frame comes back at
/// once (the kernel takes nothing from the TX ring of a device that is down, so none is
/// left there), and the worker does not wait for completions that never come.
#[test]
fn a_port_retired_while_its_device_is_down_gives_every_frame_back_at_once() {
    let nd = Netns::new("d").unwrap();
    let peer = Netns::new("p").unwrap();
    let veth = Veth::new(&nd, &peer, 1).unwrap();
    nd.run(|| {
        let (mut w, link) = memory_to_af_xdp(&veth.a);
        w.run_once();
        nd.exec(&["ip", "link", "set", &veth.a, "down"]).unwrap();
        for seq in 0..100 {
            assert!(link.inject(&udp_frame(MAC_G, MAC_D, seq, 60)));
        }
        for _ in 0..4 {
            w.run_once();
        }
        assert_eq!(w.counters().snapshot().port_state[1], PortState::Down);
        let began = std::time::Instant::now();
        let (removed, given_up) = w.change_ports(&[Some(0)], vec![], Box::new(apps::Forward { peer: vec![0] }));
        let took = began.elapsed();
        assert_eq!((removed.len(), given_up), (1, 0), "every frame came back");
        assert!(
            took < Duration::from_millis(100),
            "retired in {took:?}, not after a timeout"
        );
        drop(removed);
        let r = w.finish();
        assert!(r.frames_ok.is_ok(), "{:?}", r.frames_ok);
        // The frame taken back from the ring is a drop, not a packet sent.
        assert_eq!((r.stats.tx, r.stats.dropped_for(DropReason::PortDown)), (0, 100));
        assert!(r.stats.conserved(), "{:?}", r.stats);
    });
}

/// A port whose device goes down: what is routed to it is dropped as `PortDown` (not
/// queued to go out stale), the port shows as down, and when the device is up again
/// sending resumes.
#[test]
fn a_port_whose_device_goes_down_drops_counted_and_resumes_when_up() {
    ten_sent_on_a_veth(|nd, _, veth, mut w, link, ps| {
        nd.exec(&["ip", "link", "set", &veth.a, "down"]).unwrap();
        // The first send finds the device down, and takes its frame back from the ring.
        send_each(&mut w, link, 10..11);
        assert_eq!(port_state(&w), PortState::Down);
        assert_eq!(w.pool().census().kernel_tx[1], 0, "nothing waits on the TX ring");
        // Asked again now and then while down (every 1,024 polls), it stays down.
        for _ in 0..3000 {
            w.run_once();
        }
        assert_eq!(port_state(&w), PortState::Down, "still down");
        send_each(&mut w, link, 11..61);
        let s = w.counters().snapshot();
        assert_eq!(
            s.dropped_for(DropReason::PortDown),
            51,
            "the frame taken back from the ring, and the 50 refused"
        );
        assert_eq!(s.port_tx[1], 10, "only what went out counted as sent");
        assert_eq!(s.dropped_for(DropReason::TxRingFull), 0);

        nd.exec(&["ip", "link", "set", &veth.a, "up"]).unwrap();
        up_again_then_stop(w, link, ps, 61..71, 20);
    });
}

/// A live change withdraws an AF_XDP port it removes before the workers park: when the
/// change is refused, the port takes packets again; when it goes through, the port takes
/// nothing more and every frame comes back.
#[test]
fn a_port_withdrawn_by_a_refused_change_takes_packets_again() {
    let nd = Netns::new("d").unwrap();
    let peer = Netns::new("p").unwrap();
    let veth = Veth::new(&nd, &peer, 1).unwrap();
    let link = MemoryLink::new(256);
    let worker_link = link.clone();
    let dut_if = veth.a.clone();
    // The veth port (1) forwards to the memory port (0).
    let set = nd.run(|| {
        let prog = Arc::new(XdpProgram::attach(&dut_if, AttachMode::Native).unwrap());
        WorkerSet::start(&[online_cpus()[0]], move |_, _| {
            let umem = Arc::new(Umem::new(UmemConfig::default()).map_err(|e| e.to_string())?);
            let pool = FramePool::new(umem, 2);
            let x = AfXdpPort::open(&pool, &prog, 0, SocketConfig::default(), None).map_err(|e| e.to_string())?;
            let ports: Vec<Box<dyn Port>> = vec![Box::new(MemoryPort::new("m", worker_link.clone())), Box::new(x)];
            Ok(Worker::new(pool, ports, Box::new(apps::Forward { peer: vec![1, 0] })))
        })
        .unwrap()
    });
    let ps = peer.run(|| PacketSocket::new(&veth.b).unwrap());
    let arrived = |seqs: std::ops::Range<u64>| -> HashSet<u64> {
        for seq in seqs.clone() {
            ps.send(&udp_frame(MAC_D, MAC_G, seq, 60)).unwrap();
        }
        let deadline = std::time::Instant::now() + Duration::from_millis(500);
        let mut got = HashSet::new();
        while got.len() < (seqs.end - seqs.start) as usize && std::time::Instant::now() < deadline {
            match link.take() {
                Some(f) => {
                    got.extend(frame_seq(&f));
                }
                None => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        got
    };
    assert_eq!(arrived(0..10), (0..10).collect(), "through the port before any change");
    let remove = || {
        vec![PortChange {
            old_of: vec![Some(0)],
            open: vec![],
            handler: Box::new(apps::Forward { peer: vec![0] }),
        }]
    };
    let e = set
        .change_ports(remove(), || Err::<(), _>("publishing failed".to_string()))
        .unwrap_err();
    assert_eq!(e, "publishing failed");
    assert_eq!(
        arrived(10..20),
        (10..20).collect(),
        "the refused change gave the port back"
    );

    let ((), report) = set.change_ports(remove(), || Ok(())).unwrap();
    assert_eq!(report.given_up, 0);
    assert!(arrived(20..30).is_empty(), "the removed port takes nothing");
    let reports = set.stop();
    let (total, _) = check_reports(&reports);
    assert_eq!((total.rx, total.tx), (20, 20));
}

/// The device's own count of frames it dropped on transmit (`ip -s link`), in the
/// calling thread's namespace.
fn kernel_tx_dropped(ns: &Netns, ifname: &str) -> u64 {
    let out = ns.exec(&["ip", "-s", "link", "show", ifname]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut lines = text.lines().skip_while(|l| !l.trim_start().starts_with("TX:"));
    let values = lines.nth(1).expect("a TX counters line");
    values.split_whitespace().nth(3).unwrap().parse().unwrap()
}

/// Whether `ip link` in `ns` shows `ifname` up without carrier.
fn shows_no_carrier(ns: &Netns, ifname: &str) -> bool {
    let out = ns.exec(&["ip", "link", "show", ifname]).unwrap();
    String::from_utf8_lossy(&out.stdout).contains("NO-CARRIER")
}

/// A port whose veth peer goes down: the device is still up but has no carrier, and
/// drops what the kernel hands it. Those frames are counted as `DeviceDropped` (as the
/// device counts them), not as sent; the port is found down, drops the rest as
/// `PortDown`, and sends again once the peer is up.
#[test]
fn a_port_without_carrier_counts_what_its_device_drops_and_resumes() {
    ten_sent_on_a_veth(|nd, peer, veth, mut w, link, ps| {
        peer.exec(&["ip", "link", "set", &veth.b, "down"]).unwrap();
        // The kernel shows the lost carrier a moment after it drops frames for it; the
        // port asks the shown state, so it is waited for.
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while !shows_no_carrier(nd, &veth.a) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        send_each(&mut w, link, 10..110);
        assert_eq!(port_state(&w), PortState::Down, "no carrier found");
        let s = w.counters().snapshot();
        let device = s.dropped_for(DropReason::DeviceDropped);
        assert!(device > 0, "{s:?}");
        assert_eq!(device, kernel_tx_dropped(nd, &veth.a), "as the device counts them");
        assert_eq!(device + s.dropped_for(DropReason::PortDown), 100, "{s:?}");
        assert_eq!(s.port_tx[1], 10, "only what went out counted as sent");

        peer.exec(&["ip", "link", "set", &veth.b, "up"]).unwrap();
        up_again_then_stop(w, link, ps, 110..120, 20);
    });
}

/// An idle port learns of a lost carrier without sending: it shows down before anything
/// is routed to it, so nothing goes to the device to be dropped there.
#[test]
fn an_idle_port_learns_its_carrier_is_lost() {
    ten_sent_on_a_veth(|_, peer, veth, mut w, link, ps| {
        peer.exec(&["ip", "link", "set", &veth.b, "down"]).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while port_state(&w) != PortState::Down && std::time::Instant::now() < deadline {
            w.run_once();
        }
        assert_eq!(port_state(&w), PortState::Down, "noticed while idle");
        send_each(&mut w, link, 10..20);
        let s = w.counters().snapshot();
        assert_eq!(
            (
                s.dropped_for(DropReason::PortDown),
                s.dropped_for(DropReason::DeviceDropped)
            ),
            (10, 0)
        );
        peer.exec(&["ip", "link", "set", &veth.b, "up"]).unwrap();
        up_again_then_stop(w, link, ps, 20..30, 20);
    });
}

/// Packets that reach a port's RX ring after its worker's last burst are counted at stop
/// (received, and dropped as `PortClosing`): a stopped worker's counters add up to what
/// the kernel delivered.
#[test]
fn packets_left_on_the_rx_ring_at_stop_are_counted() {
    let nd = Netns::new("d").unwrap();
    let peer = Netns::new("p").unwrap();
    let veth = Veth::new(&nd, &peer, 1).unwrap();
    let ps = peer.run(|| PacketSocket::new(&veth.b).unwrap());
    nd.run(|| {
        let (mut w, _link) = memory_to_af_xdp(&veth.a);
        w.run_once();
        for seq in 0..20 {
            ps.send(&udp_frame(MAC_D, MAC_G, seq, 60)).unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
        let r = w.finish();
        assert!(r.frames_ok.is_ok(), "{:?}", r.frames_ok);
        assert_eq!(r.stats.port_rx[1], 20);
        assert_eq!(r.stats.dropped_for(DropReason::PortClosing), 20);
        assert!(r.stats.conserved(), "{:?}", r.stats);
    });
}

/// A live change adding a port whose queue is still held (a socket on it closing, or not
/// closed yet) does not stall the worker: it forwards on and opens the port once the
/// queue is free; held for good, the change is refused after a second.
#[test]
fn a_port_added_on_a_held_queue_waits_without_stalling_the_worker() {
    let nd = Netns::new("d").unwrap();
    let peer = Netns::new("p").unwrap();
    let veth = Veth::new(&nd, &peer, 1).unwrap();
    let (m, n) = (MemoryLink::new(64), MemoryLink::new(64));
    let (prog, set) = nd.run(|| {
        let prog = Arc::new(XdpProgram::attach(&veth.a, AttachMode::Native).unwrap());
        let links = (m.clone(), n.clone());
        let set = WorkerSet::start(&[online_cpus()[0]], move |_, _| {
            let umem = Arc::new(Umem::new(UmemConfig::default()).map_err(|e| e.to_string())?);
            let ports: Vec<Box<dyn Port>> = vec![
                Box::new(MemoryPort::new("m", links.0.clone())),
                Box::new(MemoryPort::new("n", links.1.clone())),
            ];
            Ok(Worker::new(
                FramePool::new(umem, 2),
                ports,
                Box::new(apps::Forward { peer: vec![1, 0] }),
            ))
        })
        .unwrap();
        (prog, set)
    });
    let hold = || {
        nd.run(|| {
            XskSocket::new(
                &Arc::new(Umem::new(UmemConfig::default()).unwrap()),
                &veth.a,
                0,
                SocketConfig::default(),
                None,
            )
            .unwrap()
        })
    };
    let add = || {
        let prog = prog.clone();
        let open: PortOpener = Box::new(move |w: &Worker| {
            let cfg = SocketConfig {
                queue_wait: Duration::ZERO,
                ..SocketConfig::default()
            };
            Ok(Box::new(AfXdpPort::open(w.pool(), &prog, 0, cfg, w.first_af_xdp())?) as Box<dyn Port>)
        });
        vec![PortChange {
            old_of: vec![Some(0), Some(1), None],
            open: vec![open],
            handler: Box::new(apps::Forward { peer: vec![1, 0, 0] }),
        }]
    };
    let forwards = |seq: u64| {
        assert!(m.inject(&udp_frame(MAC_G, MAC_D, seq, 60)));
        let deadline = std::time::Instant::now() + Duration::from_secs(1);
        while std::time::Instant::now() < deadline {
            if let Some(f) = n.take() {
                return frame_seq(&f) == Some(seq);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        false
    };

    // Held for good: refused after about a second, and nothing changed.
    let held = hold();
    let e = set.change_ports(add(), || Ok(())).unwrap_err();
    assert!(e.contains("another AF_XDP socket holds this queue"), "{e}");
    assert!(forwards(0), "forwarding on the ports it had");
    drop(held);

    // Held for a moment: the change waits for it, the worker forwarding meanwhile.
    let held = hold();
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let change = s.spawn(|| {
            let r = set.change_ports(add(), || Ok(()));
            done.store(true, Ordering::SeqCst);
            r
        });
        std::thread::sleep(Duration::from_millis(50));
        for seq in 1..6 {
            assert!(forwards(seq), "the worker forwards while the queue is held");
        }
        assert!(!done.load(Ordering::SeqCst), "the change waits for the queue");
        drop(held);
        let ((), report) = change.join().unwrap().unwrap();
        assert_eq!(report.given_up, 0);
    });
    assert!(forwards(6), "and after the change");
    let reports = set.stop();
    let (total, _) = check_reports(&reports);
    assert_eq!((total.rx, total.tx), (7, 7));
}
