//! Single-threaded behaviour of the flow table: pairs, bursts, holds, ageing, eviction,
//! quotas, grace periods and counters.

use std::net::Ipv4Addr;

use flow::{
    Action, FlowId, FlowTable, FlowTableConfig, FullPolicy, Generations, InsertError, NewPair, ParkResult, Timeouts,
    Verdict,
};
use wire::flow::FlowKey;

fn key(n: u32, proto: u8) -> FlowKey {
    FlowKey::v4(
        Ipv4Addr::from(0x0a00_0000 + n),
        Ipv4Addr::new(192, 0, 2, 1),
        proto,
        (n % 50000) as u16 + 1024,
        80,
    )
}

/// Installs `k` and its reverse, both with `allow(nh)`.
fn install<'r>(
    r: &'r flow::Reader<'_>,
    k: &FlowKey,
    nh: u32,
    now: u32,
) -> Result<(FlowId<'r>, FlowId<'r>), InsertError> {
    r.insert_pair(
        k,
        &k.reversed(),
        Action::allow(nh),
        Action::allow(nh),
        Generations::default(),
        now,
    )
}

fn table(capacity: usize) -> FlowTable {
    FlowTable::new(FlowTableConfig::with_capacity(capacity)).unwrap()
}

#[test]
fn pair_insert_lookup_delete() {
    let t = table(1024);
    let r = t.reader().unwrap();
    let k = key(1, 6);
    let (f, b) = r
        .insert_pair(
            &k,
            &k.reversed(),
            Action::allow(5),
            Action::allow(6),
            Generations { route: 1, policy: 2 },
            10,
        )
        .unwrap();
    assert_eq!(r.lookup(&k, k.hash()), Some(f));
    assert_eq!(r.lookup(&k.reversed(), k.reversed().hash()), Some(b));
    assert_eq!(r.flow(f).reverse(), Some(b.index()));
    assert_eq!(r.flow(b).reverse(), Some(f.index()));
    assert_eq!(r.flow(b).action(), Action::allow(6));
    assert_eq!(r.flow(f).generations(), Generations { route: 1, policy: 2 });
    assert_eq!(r.flow(f).key(), k);
    assert_eq!(
        r.insert_pair(
            &k,
            &k.reversed(),
            Action::deny(),
            Action::deny(),
            Generations::default(),
            10
        ),
        Err(InsertError::Exists)
    );
    r.flow(f).record(100, 11, 0x12);
    r.flow(f).record(50, 12, 0x10);
    assert_eq!(
        (
            r.flow(f).packets(),
            r.flow(f).bytes(),
            r.flow(f).last_seen(),
            r.flow(f).tcp_flags()
        ),
        (2, 150, 12, 0x12)
    );
    assert_eq!(t.stats().entries, 2);
    assert_eq!(r.delete(f, |_| {}), 2);
    assert_eq!(r.delete(f, |_| {}), 0, "second delete finds nothing");
    assert!(r.lookup(&k, k.hash()).is_none() && r.lookup(&k.reversed(), k.reversed().hash()).is_none());
    let s = t.stats();
    assert_eq!((s.entries, s.inserts, s.deletes), (0, 2, 2));
}

#[test]
fn symmetric_key_is_its_own_reverse() {
    let t = table(64);
    let r = t.reader().unwrap();
    let k = FlowKey::v4(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 1), 1, 7, 7);
    let (f, b) = r
        .insert_pair(
            &k,
            &k.reversed(),
            Action::allow(1),
            Action::allow(1),
            Generations::default(),
            0,
        )
        .unwrap();
    assert_eq!(f, b);
    assert_eq!(t.stats().entries, 1);
}

#[test]
fn burst_insert_counts_the_first_packet_in_the_forward_flow() {
    let t = table(1 << 12);
    let r = t.reader().unwrap();
    let pair = |n, first_packet| NewPair {
        fwd: key(n, 6),
        rev: key(n, 6).reversed(),
        fwd_action: Action::allow(1),
        rev_action: Action::allow(1),
        first_packet,
    };
    let pairs = [pair(1, Some((60, 0x02))), pair(2, None)];
    let mut ids = Vec::new();
    r.insert_pairs(&pairs, Generations::default(), 7, |i, res| ids.push((i, res.unwrap())));
    let ((_, (f1, r1)), (_, (f2, _))) = (ids[0], ids[1]);
    let s = r.flow(f1).snapshot();
    assert_eq!((s.packets, s.bytes, s.tcp_flags, s.last_seen), (1, 60, 0x02, 7));
    assert_eq!(
        (r.flow(r1).packets(), r.flow(r1).bytes(), r.flow(r1).tcp_flags()),
        (0, 0, 0)
    );
    assert_eq!((r.flow(f2).packets(), r.flow(f2).bytes()), (0, 0));
    // Later packets add to what the insert wrote.
    r.flow(f1).record(40, 8, 0x10);
    let s = r.flow(f1).snapshot();
    assert_eq!((s.packets, s.bytes, s.tcp_flags, s.last_seen), (2, 100, 0x12, 8));
}

/// With the hashes given, a burst of more than one chunk installs exactly the pairs that
/// have hashes, each findable by its keys, and reports each by its index.
#[test]
fn burst_insert_with_hashes_installs_the_hashed_pairs() {
    let t = table(1 << 12);
    let r = t.reader().unwrap();
    let pairs: Vec<NewPair> = (0..100)
        .map(|n| NewPair {
            fwd: key(n, 17),
            rev: key(n, 17).reversed(),
            fwd_action: Action::allow(n),
            rev_action: Action::allow(n),
            first_packet: None,
        })
        .collect();
    let hashes: Vec<[u64; 2]> = pairs[..90].iter().map(|p| [p.fwd.hash(), p.rev.hash()]).collect();
    let mut done = Vec::new();
    r.insert_pairs_hashed(&pairs, &hashes, Generations::default(), 0, |i, res| {
        done.push((i, res.is_ok()))
    });
    assert_eq!(done, (0..90).map(|i| (i, true)).collect::<Vec<_>>());
    for (n, p) in pairs.iter().enumerate() {
        let found = r.lookup(&p.fwd, p.fwd.hash());
        assert_eq!(found.is_some(), n < 90, "pair {n}");
        if let Some(id) = found {
            assert_eq!(r.flow(id).action(), Action::allow(n as u32));
            assert!(r.lookup(&p.rev, p.rev.hash()).is_some());
        }
    }
    assert_eq!(t.stats().entries, 180);
}

#[test]
fn burst_lookup_matches_single_lookups() {
    let t = table(1 << 12);
    let r = t.reader().unwrap();
    for n in 0..1000 {
        let k = key(n, 17);
        install(&r, &k, n, 0).unwrap();
    }
    // Half present, half absent, in one burst of 64.
    let keys: Vec<FlowKey> = (0..64)
        .map(|i| if i % 2 == 0 { key(i * 7, 17) } else { key(5000 + i, 17) })
        .collect();
    let hashes: Vec<u64> = keys.iter().map(FlowKey::hash).collect();
    // Every burst length, plain and counted: each keeps a fixed number of keys' lines in
    // flight ahead of the compares, so short bursts and the last keys of long ones take
    // other branches.
    for len in 1..=64 {
        let mut out = [None; 64];
        let mask = r.lookup_burst(&keys[..len], &hashes[..len], &mut out[..len]);
        let mut counted = [None; 64];
        assert_eq!(
            r.lookup_burst_counted(&keys[..len], &hashes[..len], &mut counted[..len]),
            mask
        );
        assert_eq!(counted, out, "a burst of {len}, counted");
        for (i, k) in keys[..len].iter().enumerate() {
            let single = r.lookup(k, hashes[i]);
            assert_eq!(out[i], single, "key {i} of a burst of {len}");
            assert_eq!(mask >> i & 1 == 1, single.is_some());
            if let Some(id) = single {
                assert_eq!(r.flow(id).key(), *k);
            }
        }
        assert_eq!(mask.count_ones() as usize, len.div_ceil(2));
    }
}

#[test]
fn full_table_refuses_and_counts() {
    let mut cfg = FlowTableConfig::with_capacity(30);
    cfg.full_policy = FullPolicy::Refuse;
    let t = FlowTable::new(cfg).unwrap();
    let r = t.reader().unwrap();
    let (mut ok, mut full) = (0, 0);
    for n in 0..200 {
        let k = key(n, 17);
        match install(&r, &k, 1, 0) {
            Ok(_) => ok += 2,
            Err(InsertError::Full) => full += 1,
            Err(e) => panic!("{e}"),
        }
    }
    let s = t.stats();
    assert_eq!(s.entries, ok);
    assert!(s.entries <= s.capacity && s.entries >= s.capacity / 2, "{s:?}");
    assert_eq!(s.full_refusals, full);
    // Every installed flow is still intact.
    let mut seen = 0;
    r.for_each(|f| {
        assert_eq!(f.action, Action::allow(1));
        seen += 1;
    });
    assert_eq!(seen, ok);
}

#[test]
fn a_table_holds_what_it_was_sized_for_and_fills_past_three_quarters() {
    let mut cfg = FlowTableConfig::with_capacity(30_000);
    cfg.full_policy = FullPolicy::Refuse;
    let t = FlowTable::new(cfg).unwrap();
    // Whole buckets of 15, an even number of them: 30,000 exactly, not a power of two's worth.
    assert_eq!(t.capacity(), 30_000);
    let r = t.reader().unwrap();
    let mut n = 0;
    while install(&r, &key(n, 17), 1, 0).is_ok() {
        n += 1;
    }
    let s = t.stats();
    // A refusal means both of a key's buckets are full; spilling to the emptier one keeps
    // that rare until the table is about 80% full (always the first bucket: about 44%).
    assert!(
        s.entries * 4 >= s.capacity * 3,
        "first refusal at {} of {}",
        s.entries,
        s.capacity
    );
    assert_eq!(s.full_refusals, 1);
    // Every flow installed is found, in its first bucket or its second.
    for m in 0..n {
        let k = key(m, 17);
        for k in [k, k.reversed()] {
            assert!(r.lookup(&k, k.hash()).is_some(), "flow {m} lost");
        }
    }
}

#[test]
fn eviction_frees_closing_flows_after_a_grace_period() {
    let t = FlowTable::new(FlowTableConfig::with_capacity(30)).unwrap();
    let mut r = t.reader().unwrap();
    let mut n = 0;
    // Fill with TCP flows that saw a FIN.
    loop {
        let k = key(n, 6);
        n += 1;
        match install(&r, &k, 1, 0) {
            Ok((f, _)) => r.flow(f).record(60, 0, 0x11),
            Err(InsertError::Full) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(t.stats().evictions >= 1, "a closing flow was evicted");
    let k = key(n - 1, 6);
    r.quiescent();
    // The evicted pair's slots are reusable now that the only reader has moved on.
    assert!(install(&r, &k, 2, 1).is_ok());
}

#[test]
fn retired_slots_wait_for_every_reader() {
    let t = FlowTable::new(FlowTableConfig::with_capacity(15)).unwrap();
    let mut a = t.reader().unwrap();
    let b = t.reader().unwrap();
    // Fill one tiny table completely with single-direction flows.
    let mut keys = Vec::new();
    for n in 0..1000 {
        let k = key(n, 17);
        if a.insert_pair(&k, &k, Action::allow(1), Action::allow(1), Generations::default(), 0)
            .is_ok()
        {
            keys.push(k);
        }
    }
    let cap = keys.len();
    let victim = keys[0];
    let id = a.lookup(&victim, victim.hash()).unwrap();
    a.delete(id, |_| {});
    // Reader b has not passed a quiescent point, so the slot stays retired.
    let fresh: Vec<FlowKey> = (5000..6000).map(|n| key(n, 17)).collect();
    let try_fill = |r: &flow::Reader<'_>| {
        fresh.iter().any(|k| {
            r.insert_pair(k, k, Action::deny(), Action::deny(), Generations::default(), 0)
                .is_ok()
        })
    };
    assert!(!try_fill(&a), "slot reused while reader b may still hold it");
    drop(b);
    a.quiescent();
    assert!(try_fill(&a));
    assert_eq!(t.stats().entries as usize, cap);
}

#[test]
fn hold_park_resolve() {
    let mut cfg = FlowTableConfig::with_capacity(256);
    cfg.max_held_flows = 2;
    cfg.hold_packets_per_flow = 3;
    let t = FlowTable::new(cfg).unwrap();
    let r = t.reader().unwrap();
    let k = key(1, 17);
    let h = r.insert_held(&k, 5).unwrap();
    assert!(r.flow(h).is_held());
    // The rest of the burst finds the held flow and parks.
    let found = r.lookup(&k, k.hash()).unwrap();
    for tok in [100, 101, 102] {
        assert_eq!(r.park(found, tok), ParkResult::Parked);
    }
    assert_eq!(r.park(found, 103), ParkResult::Overflow);
    assert_eq!(t.stats().held, 1);
    // Bounded number of held flows.
    r.insert_held(&key(2, 17), 5).unwrap();
    assert_eq!(r.insert_held(&key(3, 17), 5), Err(InsertError::HoldLimit));
    let mut released = Vec::new();
    let rev = r
        .resolve(
            h,
            &k.reversed(),
            Action::allow(9),
            Action::allow(8),
            Generations { route: 3, policy: 4 },
            6,
            |t| released.push(t),
        )
        .unwrap();
    assert_eq!(released, vec![100, 101, 102]);
    assert_eq!(r.flow(h).action(), Action::allow(9));
    assert_eq!(r.flow(h).reverse(), Some(rev.index()));
    assert_eq!(r.park(h, 104), ParkResult::Resolved);
    let s = t.stats();
    assert_eq!((s.held, s.hold_overflows, s.hold_refusals), (1, 1, 1));
}

#[test]
fn ageing_by_protocol_and_tcp_state() {
    let mut cfg = FlowTableConfig::with_capacity(1024);
    cfg.timeouts = Timeouts {
        tcp_established: 100,
        tcp_closing: 5,
        udp: 20,
        sctp: 70,
        icmp: 10,
        other: 30,
        hold: 2,
    };
    let t = FlowTable::new(cfg).unwrap();
    let r = t.reader().unwrap();
    let install = |k: FlowKey| install(&r, &k, 1, 0).unwrap().0;
    let tcp = install(key(1, 6));
    let tcp_fin = install(key(2, 6));
    let udp = install(key(3, 17));
    let icmp = install(key(4, 1));
    let sctp = install(key(6, 132));
    let gre = install(key(7, 47));
    let sctp_abort = install(key(8, 132));
    let held = r.insert_held(&key(5, 17), 0).unwrap();
    assert_eq!(r.park(held, 77), ParkResult::Parked);
    // FIN seen on the reverse direction closes the pair.
    let rev_fin = r.flow(tcp_fin).reverse().unwrap();
    let rev_id = r.lookup(&key(2, 6).reversed(), key(2, 6).reversed().hash()).unwrap();
    assert_eq!(rev_id.index(), rev_fin);
    r.flow(rev_id).record(40, 0, 0x11);
    // An SCTP ABORT (the parser's RST) closes its association the same way.
    r.flow(sctp_abort).record(40, 0, 0x04);
    // UDP activity on the reverse direction keeps the pair alive.
    let udp_rev = r.lookup(&key(3, 17).reversed(), key(3, 17).reversed().hash()).unwrap();
    r.flow(udp_rev).record(40, 10, 0);
    let mut dropped = Vec::new();
    let rep = r.sweep(12, usize::MAX, |t| dropped.push(t));
    assert_eq!(dropped, vec![77], "parked packet of the expired held flow handed back");
    assert_eq!(
        rep.aged,
        2 + 2 + 2 + 1,
        "closing TCP and SCTP pairs, ICMP pair, held flow"
    );
    assert!(!r.flow(sctp_abort).is_live());
    assert!(r.flow(tcp).is_live() && r.flow(udp).is_live());
    assert!(!r.flow(tcp_fin).is_live() && !r.flow(icmp).is_live() && !r.flow(held).is_live());
    r.sweep(40, usize::MAX, |_| {});
    assert!(r.flow(tcp).is_live() && !r.flow(udp).is_live());
    assert!(
        r.flow(sctp).is_live() && !r.flow(gre).is_live(),
        "SCTP outlives other protocols"
    );
    r.sweep(101, usize::MAX, |_| {});
    assert!(!r.flow(tcp).is_live() && !r.flow(sctp).is_live());
    assert_eq!(t.stats().entries, 0);
    assert_eq!(t.stats().aged, 15);
}

#[test]
fn sweep_is_incremental() {
    let t = table(1 << 12);
    let r = t.reader().unwrap();
    for n in 0..500 {
        let k = key(n, 17);
        install(&r, &k, 1, 0).unwrap();
    }
    let mut aged = 0;
    let mut calls = 0;
    while aged < 1000 {
        let rep = r.sweep(1000, 256, |_| {});
        assert_eq!(rep.visited, 256);
        aged += rep.aged;
        calls += 1;
        assert!(calls < 100);
    }
    assert!(calls > 1, "bounded work per call");
}

#[test]
fn vrf_quota() {
    let mut cfg = FlowTableConfig::with_capacity(1024);
    cfg.vrf_quota = Some(10);
    let t = FlowTable::new(cfg).unwrap();
    let r = t.reader().unwrap();
    let mut ok = 0;
    for n in 0..20 {
        let k = key(n, 17).with_vrf(3);
        match install(&r, &k, 1, 0) {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(e, InsertError::Quota),
        }
    }
    assert_eq!(ok, 5, "pairs count twice against the quota");
    assert_eq!(t.vrf_usage(3).0, 10);
    assert!(t.vrf_usage(3).1 >= 15);
    // Another VRF is unaffected.
    let k = key(1, 17).with_vrf(4);
    assert!(install(&r, &k, 1, 0).is_ok());
}

#[test]
fn live_timeouts_apply_to_installed_flows() {
    let t = table(1024);
    let r = t.reader().unwrap();
    let udp = install(&r, &key(1, 17), 1, 0).unwrap().0;
    let tcp = install(&r, &key(2, 6), 1, 0).unwrap().0;
    // Under the defaults (UDP 30 s, TCP 7200 s) a sweep at 40 s would age the UDP pair and
    // keep the TCP one; the new timeouts reverse that.
    let mut live = t.config().live_options();
    live.timeouts.udp = 60;
    live.timeouts.tcp_established = 35;
    t.set_live_options(live).unwrap();
    assert_eq!(t.config().timeouts, live.timeouts);
    r.sweep(40, usize::MAX, |_| {});
    assert!(r.flow(udp).is_live(), "the longer UDP timeout kept it");
    assert!(!r.flow(tcp).is_live(), "the shorter TCP timeout aged it");
    assert_eq!(t.stats().aged, 2);
}

#[test]
fn live_quota_changes_and_lifts_but_is_not_added() {
    let mut cfg = FlowTableConfig::with_capacity(1024);
    cfg.vrf_quota = Some(4);
    let t = FlowTable::new(cfg).unwrap();
    let r = t.reader().unwrap();
    // Installs pairs in VRF 7 until the quota refuses one or 200 keys are used: (pairs
    // installed, refused).
    let mut next = 0;
    let mut fill = |r: &flow::Reader<'_>| {
        let mut ok = 0;
        while next < 200 {
            next += 1;
            match install(r, &key(next, 17).with_vrf(7), 1, 0) {
                Ok(_) => ok += 1,
                Err(InsertError::Quota) => return (ok, true),
                Err(e) => panic!("{e}"),
            }
        }
        (ok, false)
    };
    assert_eq!(fill(&r), (2, true), "two pairs under a quota of 4");
    let mut live = t.config().live_options();
    live.vrf_quota = Some(10);
    t.set_live_options(live).unwrap();
    assert_eq!(fill(&r), (3, true), "three more pairs under the raised quota");
    // Lifted, the VRF's flows are still counted, so a quota set again is enforced at once.
    live.vrf_quota = None;
    t.set_live_options(live).unwrap();
    let (lifted, refused) = fill(&r);
    assert!(!refused && lifted > 100);
    assert_eq!(t.vrf_usage(7).0 as usize, 2 * (5 + lifted));
    live.vrf_quota = Some(20);
    t.set_live_options(live).unwrap();
    assert_eq!(install(&r, &key(5000, 17).with_vrf(7), 1, 0), Err(InsertError::Quota));

    let plain = table(1024);
    let mut live = plain.config().live_options();
    live.vrf_quota = Some(10);
    let e = plain.set_live_options(live).unwrap_err();
    assert_eq!(e.field, "vrf_quota");
    assert_eq!(plain.config().vrf_quota, None, "nothing changed");
}

#[test]
fn live_full_policy_switches_eviction() {
    let mut cfg = FlowTableConfig::with_capacity(30);
    cfg.full_policy = FullPolicy::Refuse;
    let t = FlowTable::new(cfg).unwrap();
    let r = t.reader().unwrap();
    // Fill with closing TCP flows: evictable, but the table refuses without evicting.
    let mut n = 0;
    let mut fill = || loop {
        n += 1;
        match install(&r, &key(n, 6), 1, 0) {
            Ok((f, _)) => r.flow(f).record(60, 0, 0x11),
            Err(InsertError::Full) => return,
            Err(e) => panic!("{e}"),
        }
    };
    fill();
    assert_eq!(t.stats().evictions, 0);
    let mut live = t.config().live_options();
    live.full_policy = FullPolicy::EvictExpiredOrClosing;
    t.set_live_options(live).unwrap();
    fill();
    assert!(t.stats().evictions >= 1, "a closing flow was evicted");
}

#[test]
fn delete_where_clears_chosen_pairs_and_leaves_held_flows() {
    let t = table(1024);
    let mut r = t.reader().unwrap();
    for n in 0..10 {
        install(&r, &key(n, if n % 2 == 0 { 6 } else { 17 }), 1, 0).unwrap();
    }
    let held = key(99, 6);
    r.insert_held(&held, 0).unwrap();
    // Every TCP flow: five pairs, found from either direction, and the held one left.
    assert_eq!(r.delete_where(|k| k.proto == 6), (10, 1));
    assert_eq!(t.stats().entries, 10 + 1);
    for n in 0..10 {
        let k = key(n, if n % 2 == 0 { 6 } else { 17 });
        assert_eq!(r.lookup(&k, k.hash()).is_some(), n % 2 == 1, "flow {n}");
    }
    assert!(r.lookup(&held, held.hash()).is_some());
    assert_eq!(r.delete_where(|_| true), (10, 1));
    assert_eq!(t.stats().entries, 1);
}

#[test]
fn config_errors_name_the_field() {
    let mut cfg = FlowTableConfig::with_capacity(0);
    assert_eq!(FlowTable::new(cfg.clone()).err().unwrap().field, "capacity");
    cfg.capacity = 10;
    cfg.hold_packets_per_flow = 9;
    let e = FlowTable::new(cfg).err().unwrap();
    assert_eq!(e.field, "hold_packets_per_flow");
    assert!(e.to_string().contains("hold_packets_per_flow"));
}

#[test]
fn stats_and_memory() {
    let t = table(1 << 16);
    assert!(
        FlowTable::bytes_per_flow() <= 128,
        "{} bytes per flow",
        FlowTable::bytes_per_flow()
    );
    let r = t.reader().unwrap();
    let k = key(1, 17);
    r.insert_pair(
        &k,
        &k.reversed(),
        Action::allow(1),
        Action {
            verdict: Verdict::Deny,
            ..Action::deny()
        },
        Generations::default(),
        0,
    )
    .unwrap();
    let s = t.stats();
    assert_eq!(s.entries, 2);
    assert!(s.occupancy() > 0.0 && s.occupancy() < 0.001);
}

#[test]
fn a_shared_reader_keeps_the_table_alive_on_another_thread() {
    let table = std::sync::Arc::new(flow::FlowTable::new(flow::FlowTableConfig::with_capacity(1024)).unwrap());
    let key = wire::flow::FlowKey::v4("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap(), 17, 1, 2);
    let reader = table.shared_reader().unwrap();
    drop(table); // the reader holds it now
    std::thread::spawn(move || {
        let gens = flow::Generations::default();
        reader
            .insert_pair(
                &key,
                &key.reversed(),
                flow::Action::allow(3),
                flow::Action::allow(4),
                gens,
                0,
            )
            .unwrap();
        let id = reader.lookup(&key, key.hash()).unwrap();
        assert_eq!(reader.flow(id).action(), flow::Action::allow(3));
        assert_eq!(reader.table().stats().entries, 2);
    })
    .join()
    .unwrap();
}
