//! Memory ports: a million packets forwarded between two ports, every one accounted for,
//! and the frame pool whole after a clean stop.

use std::sync::Arc;

use dataplane::*;

fn frame(seq: u64) -> Vec<u8> {
    testnet::udp_frame([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2], seq, 60 + (seq % 200) as usize)
}

/// A worker forwarding between two memory ports (queues of `cap_a` and `cap_b`) by `peer`.
fn forwarder(frames: u32, cap_a: usize, cap_b: usize, peer: Vec<u16>) -> (Arc<MemoryLink>, Arc<MemoryLink>, Worker) {
    let umem = Arc::new(
        af_xdp::Umem::new(af_xdp::UmemConfig {
            frame_count: frames,
            ..Default::default()
        })
        .unwrap(),
    );
    let (a, b) = (MemoryLink::new(cap_a), MemoryLink::new(cap_b));
    let ports: Vec<Box<dyn Port>> = vec![
        Box::new(MemoryPort::new("a", a.clone())),
        Box::new(MemoryPort::new("b", b.clone())),
    ];
    let w = Worker::new(FramePool::new(umem, 2), ports, Box::new(apps::Forward { peer }));
    (a, b, w)
}

#[test]
fn a_million_packets_forwarded_and_every_frame_accounted() {
    let (a, b, mut w) = forwarder(512, 1024, 1024, vec![1, 0]);
    const N: u64 = 1_000_000;
    let (mut sent, mut got_b, mut got_a) = (0u64, 0u64, 0u64);
    let mut next_b = 0u64;
    while got_a + got_b < N {
        // Both directions at once; 1 in 4 to b->a.
        while sent < N && a.pending_in() < 512 && b.pending_in() < 512 {
            let link = if sent % 4 == 3 { &b } else { &a };
            assert!(link.inject(&frame(sent)));
            sent += 1;
        }
        w.run_once();
        while let Some(f) = b.take() {
            // a -> b keeps order.
            let seq = testnet::frame_seq(&f).unwrap();
            assert_ne!(seq % 4, 3);
            assert!(seq >= next_b, "reordered");
            next_b = seq;
            assert_eq!(f, frame(seq), "bytes changed in flight");
            got_b += 1;
        }
        while let Some(f) = a.take() {
            assert_eq!(testnet::frame_seq(&f).unwrap() % 4, 3);
            got_a += 1;
        }
    }
    let r = w.finish();
    assert_eq!((r.stats.rx, r.stats.tx, r.stats.dropped()), (N, N, 0));
    assert_eq!(got_a + got_b, N);
    r.frames_ok.unwrap();
    assert_eq!(r.census.free, 512);
}

#[test]
fn drops_are_counted_by_reason_and_lose_no_frame() {
    // Port 0 forwards to 1; port 1 to a port that does not exist.
    let (a, b, mut w) = forwarder(64, 4096, 16, vec![1, 7]);
    for s in 0..100 {
        a.inject(&frame(s));
    }
    a.inject(&vec![0u8; 5000]); // longer than a frame
    b.inject(&frame(1000));
    while a.pending_in() > 0 || b.pending_in() > 0 {
        w.run_once();
    }
    let r = w.finish();
    let s = &r.stats;
    // b's queue holds 16: the rest of a's 100 find the TX queue full.
    assert_eq!(
        b.take().into_iter().count() + std::iter::from_fn(|| b.take()).count(),
        16
    );
    assert_eq!(s.rx, 102);
    assert_eq!(s.tx, 16);
    assert_eq!(s.dropped_for(DropReason::TxRingFull), 84);
    assert_eq!(s.dropped_for(DropReason::TooLong), 1);
    assert_eq!(s.dropped_for(DropReason::NoSuchPort), 1);
    assert_eq!(s.rx, s.tx + s.dropped());
    r.frames_ok.unwrap();
}

/// Waits up to a second for a frame on `link`.
fn arrives(link: &MemoryLink) -> Option<Vec<u8>> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    loop {
        if let Some(f) = link.take() {
            return Some(f);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

#[test]
fn running_workers_change_ports_between_bursts() {
    // Two workers (on one CPU, so the test runs the same on any machine), each with its
    // own links: `links[w][p]`.
    let links: Vec<Vec<Arc<MemoryLink>>> = (0..2).map(|_| (0..5).map(|_| MemoryLink::new(64)).collect()).collect();
    let first: Vec<Vec<Arc<MemoryLink>>> = links.iter().map(|l| l[..3].to_vec()).collect();
    // a <-> b, c -> a.
    let set = WorkerSet::start(&[0, 0], move |w, _| {
        let umem = Arc::new(af_xdp::Umem::new(af_xdp::UmemConfig::default()).map_err(|e| e.to_string())?);
        let ports = ["a", "b", "c"]
            .iter()
            .zip(&first[w])
            .map(|(n, l)| Box::new(MemoryPort::new(n, l.clone())) as Box<dyn Port>)
            .collect();
        Ok(Worker::new(
            FramePool::new(umem, 3),
            ports,
            Box::new(apps::Forward { peer: vec![1, 0, 0] }),
        ))
    })
    .unwrap();
    let through = |w: usize, from: usize, to: usize, seq: u64| {
        assert!(links[w][from].inject(&frame(seq)));
        arrives(&links[w][to]) == Some(frame(seq))
    };
    for w in 0..2 {
        assert!(through(w, 0, 1, 1), "worker {w}: a -> b before the change");
    }

    // b goes, d comes: a is 0, c is 1, d is 2; a -> d, c -> a, d -> a.
    let open_d = |w: usize| -> PortOpener {
        let d = links[w][3].clone();
        Box::new(move |_| Ok(Box::new(MemoryPort::new("d", d.clone())) as Box<dyn Port>))
    };
    let change = |open: PortOpener| PortChange {
        old_of: vec![Some(0), Some(2), None],
        open: vec![open],
        handler: Box::new(apps::Forward { peer: vec![2, 0, 0] }),
    };
    let refused: PortOpener = Box::new(|_| Err("no such device".into()));

    // A port that cannot be opened on one worker, a port kept twice, or tables that
    // cannot be published: nothing changes on any worker.
    let e = set
        .change_ports(vec![change(open_d(0)), change(refused)], || Ok(()))
        .unwrap_err();
    assert_eq!(e, "worker 1: no such device");
    let twice = || PortChange {
        old_of: vec![Some(0), Some(0)],
        open: vec![],
        handler: Box::new(apps::Forward { peer: vec![1, 0] }),
    };
    let e = set.change_ports(vec![twice(), twice()], || Ok(())).unwrap_err();
    assert_eq!(e, "worker 0: port 0 kept twice");
    let e = set
        .change_ports(vec![change(open_d(0)), change(open_d(1))], || {
            Err::<(), _>("publishing failed".to_string())
        })
        .unwrap_err();
    assert_eq!(e, "publishing failed");
    for w in 0..2 {
        assert!(through(w, 0, 1, 2), "worker {w}: a -> b still");
    }

    let (answer, report) = set
        .change_ports(vec![change(open_d(0)), change(open_d(1))], || Ok(42))
        .unwrap();
    assert_eq!((answer, report.given_up), (42, 0));
    for (w, l) in links.iter().enumerate() {
        assert!(through(w, 0, 3, 3), "worker {w}: a -> d, the new port");
        assert!(through(w, 2, 0, 4), "worker {w}: c -> a under its new number");
        assert!(l[1].inject(&frame(5)));
        assert!(through(w, 3, 0, 6), "worker {w}: d -> a");
        assert_eq!(l[1].pending_in(), 1, "b is no port any more: nothing takes its frames");
        assert!(l[1].take().is_none() && l[2].take().is_none());
    }

    // d goes, and two ports come at once (opened one per pass): e on a fifth link as
    // port 1, f on d's as port 3; c keeps its link as port 2.
    let open_on = |w: usize, name: &'static str, link: usize| -> PortOpener {
        let l = links[w][link].clone();
        Box::new(move |_| Ok(Box::new(MemoryPort::new(name, l.clone())) as Box<dyn Port>))
    };
    let two = |w: usize| PortChange {
        old_of: vec![Some(0), None, Some(1), None],
        open: vec![open_on(w, "e", 4), open_on(w, "f", 3)],
        handler: Box::new(apps::Forward { peer: vec![3, 0, 0, 2] }),
    };
    set.change_ports(vec![two(0), two(1)], || Ok(())).unwrap();
    for w in 0..2 {
        assert!(through(w, 0, 3, 7), "worker {w}: a -> f, port 3");
        assert!(through(w, 4, 0, 8), "worker {w}: e -> a, port 1");
        assert!(through(w, 3, 2, 9), "worker {w}: f -> c, port 2");
    }

    for r in set.stop() {
        r.frames_ok.unwrap();
        assert_eq!((r.stats.rx, r.stats.tx, r.stats.dropped()), (8, 8, 0));
        assert_eq!(
            &r.stats.port_rx[..4],
            &[4, 1, 1, 1],
            "a's count went on, c's moved with it, e's and f's began (d's went)"
        );
    }
}
