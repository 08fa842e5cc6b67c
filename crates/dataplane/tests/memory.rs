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
