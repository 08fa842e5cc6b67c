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
    let links: Vec<Arc<MemoryLink>> = (0..4).map(|_| MemoryLink::new(64)).collect();
    let first = links[..3].to_vec();
    // a <-> b, c -> a.
    let set = WorkerSet::start(&[0], move |_, _| {
        let umem = Arc::new(af_xdp::Umem::new(af_xdp::UmemConfig::default()).map_err(|e| e.to_string())?);
        let ports = ["a", "b", "c"]
            .iter()
            .zip(&first)
            .map(|(n, l)| Box::new(MemoryPort::new(n, l.clone())) as Box<dyn Port>)
            .collect();
        Ok(Worker::new(
            FramePool::new(umem, 3),
            ports,
            Box::new(apps::Forward { peer: vec![1, 0, 0] }),
        ))
    })
    .unwrap();
    let (a, b, c, d) = (&links[0], &links[1], &links[2], &links[3]);
    assert!(a.inject(&frame(1)));
    assert_eq!(arrives(b), Some(frame(1)), "a -> b before the change");

    // b goes, d comes: a is 0, c is 1, d is 2; a -> d, c -> a, d -> a.
    let change = |open: PortOpener| PortChange {
        old_of: vec![Some(0), Some(2), None],
        open: vec![open],
        handler: Box::new(apps::Forward { peer: vec![2, 0, 0] }),
    };
    let d_link = d.clone();
    let open_d: PortOpener = Box::new(move |_| Ok(Box::new(MemoryPort::new("d", d_link)) as Box<dyn Port>));
    let refused: PortOpener = Box::new(|_| Err("no such device".into()));

    // A port that cannot be opened, a port kept twice, or tables that cannot be
    // published: nothing changes.
    let e = set.change_ports(vec![change(refused)], || Ok(())).unwrap_err();
    assert_eq!(e, "worker 0: no such device");
    let twice = PortChange {
        old_of: vec![Some(0), Some(0)],
        open: vec![],
        handler: Box::new(apps::Forward { peer: vec![1, 0] }),
    };
    let e = set.change_ports(vec![twice], || Ok(())).unwrap_err();
    assert_eq!(e, "worker 0: port 0 kept twice");
    let d_link = d.clone();
    let open_later: PortOpener = Box::new(move |_| Ok(Box::new(MemoryPort::new("d", d_link)) as Box<dyn Port>));
    let e = set
        .change_ports(vec![change(open_later)], || {
            Err::<(), _>("publishing failed".to_string())
        })
        .unwrap_err();
    assert_eq!(e, "publishing failed");
    assert!(a.inject(&frame(2)));
    assert_eq!(arrives(b), Some(frame(2)), "a -> b still");

    let (answer, report) = set.change_ports(vec![change(open_d)], || Ok(42)).unwrap();
    assert_eq!((answer, report.given_up), (42, 0));
    assert!(a.inject(&frame(3)));
    assert_eq!(arrives(d), Some(frame(3)), "a -> d, the new port");
    assert!(c.inject(&frame(4)));
    assert_eq!(arrives(a), Some(frame(4)), "c -> a under its new number");
    assert!(b.inject(&frame(5)));
    assert!(d.inject(&frame(6)));
    assert_eq!(arrives(a), Some(frame(6)), "d -> a");
    assert_eq!(b.pending_in(), 1, "b is no port any more: nothing takes its frames");
    assert!(b.take().is_none() && c.take().is_none());

    let r = set.stop().pop().unwrap();
    r.frames_ok.unwrap();
    assert_eq!((r.stats.rx, r.stats.tx, r.stats.dropped()), (5, 5, 0));
    assert_eq!(
        &r.stats.port_rx[..3],
        &[3, 1, 1],
        "a's count went on, c's moved with it, d's began"
    );
}
