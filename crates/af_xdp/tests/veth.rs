//! AF_XDP against real veth pairs in network namespaces the tests create and remove:
//! receive and transmit in native and generic mode with exact counts, errors that say what
//! to do, and the program detaching on drop and when the process is killed.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use af_xdp::*;
use testnet::{Netns, PacketSocket, Reaped, Veth, frame_seq, udp_frame};

const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];

fn xdp_attached(ns: &Netns, ifname: &str) -> bool {
    let out = ns.exec(&["ip", "-d", "link", "show", "dev", ifname]).unwrap();
    String::from_utf8_lossy(&out.stdout).contains("prog/xdp")
}

/// Whether no XDP program is attached to `dev`, allowing the kernel 5 s to release it.
fn detached_soon(ns: &Netns, dev: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while xdp_attached(ns, dev) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Receives `n` frames sent from the other end, then sends `n` back; counts are exact.
fn rx_tx(mode: AttachMode, expect: XdpMode) {
    let (na, nb) = (Netns::new("a").unwrap(), Netns::new("b").unwrap());
    let veth = Veth::new(&na, &nb, 1).unwrap();
    const N: u64 = 2000;
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::scope(|s| {
        let dp = s.spawn(|| {
            nb.enter().unwrap();
            let prog = XdpProgram::attach(&veth.b, mode).unwrap();
            assert_eq!(prog.mode(), expect);
            let umem = Arc::new(
                Umem::new(UmemConfig {
                    frame_count: 4096,
                    ..UmemConfig::default()
                })
                .unwrap(),
            );
            let mut sock = XskSocket::new(&umem, &veth.b, 0, SocketConfig::default(), None).unwrap();
            assert!(!sock.is_zero_copy(), "veth is copy mode only");
            assert!(sock.fallback_reason().is_some());
            prog.register(0, sock.as_fd()).unwrap();
            assert!(xdp_attached(&nb, &veth.b));
            // Frames 0..2048 to the fill ring, 2048.. kept for TX.
            let fill: Vec<u64> = (0..2048).map(|i| umem.frame_addr(i)).collect();
            assert_eq!(sock.fill.push(&fill), 2048);
            ready_tx.send(()).unwrap();

            let mut seen = HashSet::new();
            let mut descs = [Desc::default(); 64];
            // Frames to give back. The kernel publishes its fill-ring consumer lazily (when
            // it next needs entries), so the ring can look full for a moment after frames
            // arrived: what does not fit now goes in on a later turn.
            let mut refill: Vec<u64> = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(20);
            while (seen.len() as u64) < N && Instant::now() < deadline {
                let n = sock.rx.pop(&mut descs);
                if n == 0 && sock.fill.needs_wakeup() {
                    sock.wake_rx().unwrap();
                }
                for d in &descs[..n] {
                    // SAFETY: the frame came off the RX ring and is ours until refilled.
                    let bytes = unsafe { umem.bytes_mut(d.addr, d.len as usize) }.unwrap();
                    if let Some(seq) = frame_seq(bytes) {
                        assert!(seen.insert(seq), "frame {seq} received twice");
                    }
                    // Headroom for encapsulation sits in front of the packet.
                    assert!(d.addr % 4096 >= 256, "headroom {}", d.addr % 4096);
                    refill.push(d.addr - d.addr % 4096);
                }
                let pushed = sock.fill.push(&refill);
                refill.drain(..pushed);
            }
            assert_eq!(seen.len() as u64, N, "every frame sent arrived");
            let st = sock.stats().unwrap();
            assert_eq!(st.rx_dropped + st.rx_ring_full, 0, "{st:?}");

            // Transmit N frames from the spare frames, recycling completions.
            let mut free: Vec<u64> = (2048..4096).map(|i| umem.frame_addr(i)).collect();
            let mut sent = 0u64;
            let mut completed = 0u64;
            let mut comp = [0u64; 64];
            while completed < N {
                while sent < N {
                    let Some(addr) = free.pop() else { break };
                    let f = udp_frame(MAC_B, MAC_A, sent, 64);
                    // SAFETY: a free frame is ours.
                    let buf = unsafe { umem.bytes_mut(addr + 256, f.len()) }.unwrap();
                    buf.copy_from_slice(&f);
                    let d = Desc {
                        addr: addr + 256,
                        len: f.len() as u32,
                        options: 0,
                    };
                    if sock.tx.push(&[d]) == 0 {
                        free.push(addr);
                        break;
                    }
                    sent += 1;
                }
                sock.kick_tx().unwrap();
                let n = sock.comp.pop(&mut comp);
                completed += n as u64;
                free.extend(comp[..n].iter().map(|a| a - a % 4096));
            }
            assert_eq!(free.len(), 2048, "every TX frame came back on the completion ring");
            drop(sock);
            drop(prog);
            // The kernel releases the link when its last reference goes, which can trail
            // the close by a moment.
            assert!(detached_soon(&nb, &veth.b), "dropping the program detaches it");
        });
        let a = veth.a.clone();
        na.run(move || {
            let ps = PacketSocket::new(&a).unwrap();
            ready_rx.recv().unwrap();
            for seq in 0..N {
                ps.send(&udp_frame(MAC_A, MAC_B, seq, 64)).unwrap();
                if seq % 256 == 255 {
                    // The kernel's veth queue is shallow; let the socket drain.
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            let mut got = HashSet::new();
            ps.recv_until(Duration::from_secs(5), |f| {
                if let Some(seq) = frame_seq(f) {
                    got.insert(seq);
                }
                got.len() as u64 == N
            })
            .unwrap();
            assert_eq!(got.len() as u64, N, "every transmitted frame arrived");
        });
        dp.join().unwrap();
    });
}

#[test]
fn receive_and_transmit_native() {
    rx_tx(AttachMode::Native, XdpMode::Native);
}

#[test]
fn receive_and_transmit_generic() {
    rx_tx(AttachMode::Generic, XdpMode::Generic);
}

/// The kernel's release as (major, minor).
fn kernel_version() -> (u32, u32) {
    let r = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut parts = r
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

#[test]
fn busy_polling_is_on_only_where_there_is_a_napi_instance_to_poll() {
    let (na, nb) = (Netns::new("a").unwrap(), Netns::new("b").unwrap());
    let veth = Veth::new(&na, &nb, 1).unwrap();
    let (ready_tx, ready_rx) = mpsc::channel();
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let dp = s.spawn(|| {
            nb.enter().unwrap();
            let prog = XdpProgram::attach(&veth.b, AttachMode::Native).unwrap();
            let umem = Arc::new(Umem::new(UmemConfig::default()).unwrap());
            let cfg = SocketConfig {
                busy_poll_budget: 16,
                ..SocketConfig::default()
            };
            let mut sock = XskSocket::new(&umem, &veth.b, 0, cfg, None).unwrap();
            assert!(!sock.is_zero_copy(), "veth is copy mode only");
            // A copy-mode socket without an id yet may get one with its first packet.
            match sock.busy_poll() {
                BusyPoll::Pending => assert_eq!(sock.napi_id(), None),
                BusyPoll::On { napi_id } => assert_eq!(sock.napi_id(), Some(*napi_id)),
                other => panic!("a copy-mode socket is decided by its first packet, not {other:?}"),
            }
            assert!(sock.is_busy_poll());
            prog.register(0, sock.as_fd()).unwrap();
            let fill: Vec<u64> = (0..64).map(|i| umem.frame_addr(i)).collect();
            assert_eq!(sock.fill.push(&fill), 64);
            ready_tx.send(()).unwrap();
            let mut descs = [Desc::default(); 64];
            let deadline = Instant::now() + Duration::from_secs(10);
            while sock.rx.pop(&mut descs) == 0 {
                assert!(Instant::now() < deadline, "no frame arrived");
                sock.wake_rx().unwrap();
            }
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            let settled = sock.settle_busy_poll().clone();
            match &settled {
                BusyPoll::On { napi_id } => assert_eq!(sock.napi_id(), Some(*napi_id)),
                BusyPoll::Unavailable(why) => {
                    assert_eq!(sock.napi_id(), None);
                    assert!(why.contains(&veth.b) && why.contains("NAPI"), "{why}");
                    assert!(!sock.is_busy_poll());
                }
                other => panic!("still undecided after a packet: {other:?}"),
            }
            // Since Linux 6.13 the kernel binds a NAPI id to zero-copy sockets only.
            if kernel_version() >= (6, 13) {
                assert!(matches!(settled, BusyPoll::Unavailable(_)), "{settled:?}");
            }
            assert_eq!(sock.settle_busy_poll(), &settled, "decided once");
        });
        let (a, done) = (veth.a.clone(), &done);
        na.run(move || {
            let ps = PacketSocket::new(&a).unwrap();
            ready_rx.recv().unwrap();
            let mut seq = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) && seq < 10_000 {
                ps.send(&udp_frame(MAC_A, MAC_B, seq, 64)).unwrap();
                seq += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        dp.join().unwrap();
    });
}

#[test]
fn a_queue_and_umem_given_up_bind_again_at_once_and_a_held_queue_is_named() {
    let (na, nb) = (Netns::new("a").unwrap(), Netns::new("b").unwrap());
    let veth = Veth::new(&na, &nb, 1).unwrap();
    nb.run(|| {
        let umem = || Arc::new(Umem::new(UmemConfig::default()).unwrap());
        // The kernel releases a closed socket's queue a moment later, from a work queue:
        // what a router restarting its workers on the same queues, and the same UMEM,
        // runs into.
        let reused = umem();
        for _ in 0..20 {
            drop(XskSocket::new(&reused, &veth.b, 0, SocketConfig::default(), None).unwrap());
        }
        let held = XskSocket::new(&umem(), &veth.b, 0, SocketConfig::default(), None).unwrap();
        let e = XskSocket::new(&umem(), &veth.b, 0, SocketConfig::default(), None)
            .err()
            .unwrap();
        assert!(e.to_string().contains("another AF_XDP socket holds this queue"), "{e}");
        drop(held);
    });
}

/// A veth whose peer is down is up but not running: a kick hands the frame to the
/// device, which drops it, and says so; the frame still completes. Down and up again are
/// told by `device_running`, and a frame then goes out.
#[test]
fn a_device_without_carrier_drops_and_says_so() {
    let (na, nb) = (Netns::new("a").unwrap(), Netns::new("b").unwrap());
    let veth = Veth::new(&na, &nb, 1).unwrap();
    let ps = na.run(|| PacketSocket::new(&veth.a).unwrap());
    nb.run(|| {
        let umem = Arc::new(Umem::new(UmemConfig::default()).unwrap());
        let mut sock = XskSocket::new(&umem, &veth.b, 0, SocketConfig::default(), None).unwrap();
        let send = |sock: &mut XskSocket, seq: u64| {
            let f = udp_frame(MAC_B, MAC_A, seq, 60);
            let addr = umem.frame_addr(seq as u32);
            // SAFETY: the frame is on no ring: ours until it is pushed below.
            unsafe { umem.bytes_mut(addr, f.len()) }.unwrap().copy_from_slice(&f);
            let d = Desc {
                addr,
                len: f.len() as u32,
                options: 0,
            };
            assert_eq!(sock.tx.push(&[d]), 1);
            let kick = sock.kick_tx().unwrap();
            let mut comp = [0u64; 4];
            let deadline = Instant::now() + Duration::from_secs(1);
            while sock.comp.pop(&mut comp) == 0 {
                assert!(Instant::now() < deadline, "frame {seq} never completed");
            }
            assert_eq!(comp[0], addr);
            kick
        };
        // The kernel's link watcher updates the operational state a moment after the
        // carrier changes, so the state is waited for, within a bound.
        let running_within_2s = |sock: &XskSocket, want: bool| {
            let deadline = Instant::now() + Duration::from_secs(2);
            while sock.device_running().unwrap() != want {
                if Instant::now() > deadline {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            true
        };
        assert!(running_within_2s(&sock, true));
        assert_eq!(send(&mut sock, 0), TxKick::Done);
        na.exec(&["ip", "link", "set", &veth.a, "down"]).unwrap();
        assert!(running_within_2s(&sock, false), "still running without carrier");
        assert_eq!(send(&mut sock, 1), TxKick::Dropped);
        na.exec(&["ip", "link", "set", &veth.a, "up"]).unwrap();
        assert!(running_within_2s(&sock, true), "carrier never came back");
        assert_eq!(send(&mut sock, 2), TxKick::Done);
    });
    let mut got = HashSet::new();
    ps.recv_until(Duration::from_secs(2), |f| {
        got.extend(frame_seq(f));
        got.contains(&2)
    })
    .unwrap();
    assert_eq!(
        got,
        HashSet::from([0, 2]),
        "the frame sent without carrier never arrived"
    );
}

#[test]
fn errors_say_what_to_do() {
    let (na, nb) = (Netns::new("a").unwrap(), Netns::new("b").unwrap());
    let veth = Veth::new(&na, &nb, 2).unwrap();
    nb.run(|| {
        let e = XdpProgram::attach("vr-no-such-if", AttachMode::Auto).unwrap_err();
        assert!(matches!(e, Error::NoInterface(_)));
        assert!(e.to_string().contains("no interface `vr-no-such-if`"), "{e}");

        let umem = Arc::new(Umem::new(UmemConfig::default()).unwrap());
        let e = XskSocket::new(&umem, &veth.b, 5, SocketConfig::default(), None)
            .err()
            .unwrap();
        assert!(
            matches!(
                e,
                Error::QueueOutOfRange {
                    queue: 5,
                    queues: 2,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("has 2 queue(s); queue 5 does not exist"), "{e}");

        let e = XskSocket::new(
            &umem,
            &veth.b,
            0,
            SocketConfig {
                zero_copy: ZeroCopy::Required,
                ..Default::default()
            },
            None,
        )
        .err()
        .unwrap();
        assert!(matches!(e, Error::ZeroCopyUnsupported { .. }), "{e}");

        let e = Umem::new(UmemConfig {
            frame_size: 3000,
            ..UmemConfig::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("2048 or 4096"), "{e}");
    });
    // The peer's MTU above the native-XDP limit: native refused with the rule named, Auto
    // falls back to generic and says why.
    na.exec(&["ip", "link", "set", &veth.a, "mtu", "9000"]).unwrap();
    nb.run(|| {
        let e = XdpProgram::attach(&veth.b, AttachMode::Native).unwrap_err();
        assert!(e.to_string().contains("MTU of the peer is above the XDP limit"), "{e}");
        let p = XdpProgram::attach(&veth.b, AttachMode::Auto).unwrap();
        assert_eq!(p.mode(), XdpMode::Generic);
        assert!(
            p.fallback_reason().unwrap().contains("peer MTU"),
            "{:?}",
            p.fallback_reason()
        );
    });
}

/// Child process body for the tests below: attach, say so, and wait to be killed.
#[test]
#[ignore = "run as a child process by other tests"]
fn child_attach_and_wait() {
    let Ok(ifname) = std::env::var("VR_CHILD_IF") else {
        return;
    };
    match XdpProgram::attach(&ifname, AttachMode::Auto) {
        Ok(p) => {
            println!("attached {:?}", p.mode());
            std::thread::sleep(Duration::from_secs(60));
        }
        Err(e) => {
            println!("error: {e}");
            std::process::exit(3);
        }
    }
}

fn child(ns: &Netns, ifname: &str, prefix: &[&str]) -> std::process::Child {
    let exe = std::env::current_exe().unwrap();
    let mut args: Vec<String> = vec!["netns".into(), "exec".into(), ns.name().into()];
    args.extend(prefix.iter().map(|s| s.to_string()));
    args.push(exe.to_string_lossy().into());
    args.extend(
        [
            "--ignored",
            "--exact",
            "child_attach_and_wait",
            "--nocapture",
            "--test-threads=1",
        ]
        .map(String::from),
    );
    Command::new("ip")
        .args(&args)
        .env("VR_CHILD_IF", ifname)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn a_killed_process_leaves_no_program_attached() {
    let (na, nb) = (Netns::new("a").unwrap(), Netns::new("b").unwrap());
    let veth = Veth::new(&na, &nb, 1).unwrap();
    let mut c = Reaped(child(&nb, &veth.b, &[]));
    let mut lines = BufReader::new(c.0.stdout.take().unwrap()).lines();
    // libtest prints "test NAME ... " first, on the same line.
    let line = lines
        .find_map(|l| l.ok().filter(|l| l.contains("attached") || l.contains("error")))
        .unwrap();
    assert!(line.contains("attached"), "{line}");
    assert!(xdp_attached(&nb, &veth.b));
    c.0.kill().unwrap(); // SIGKILL to the PID we started.
    c.0.wait().unwrap();
    assert!(detached_soon(&nb, &veth.b), "the link died with the process");
}

#[test]
fn without_capabilities_the_error_is_permission() {
    let (na, nb) = (Netns::new("a").unwrap(), Netns::new("b").unwrap());
    let veth = Veth::new(&na, &nb, 1).unwrap();
    let c = child(&nb, &veth.b, &["setpriv", "--bounding-set=-all", "--inh-caps=-all"]);
    let out = c.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(
        text.contains("permission denied") && text.contains("CAP_NET_ADMIN"),
        "{text}"
    );
    assert!(!xdp_attached(&nb, &veth.b));
}
