//! Many workers at once: concurrent inserts (single and burst), lookups, deletes and ageing on overlapping
//! keys, then the invariants: no key twice, no owned flow lost, reverse links mutual,
//! counters equal to what the threads did.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use flow::{Action, FlowTable, FlowTableConfig, Generations, InsertError, NewPair, Reader, Timeouts};
use wire::flow::FlowKey;

/// Keys every thread fights over (UDP, aged quickly).
fn shared(n: u32) -> FlowKey {
    FlowKey::v4(
        Ipv4Addr::from(0x0a00_0000 | n),
        Ipv4Addr::new(10, 255, 0, 1),
        17,
        5000,
        53,
    )
}

/// Keys only thread `t` touches (TCP, never aged in the test's time).
fn owned(t: u32, n: u32) -> FlowKey {
    FlowKey::v4(
        Ipv4Addr::from(0x0b00_0000 | t << 16 | n),
        Ipv4Addr::new(10, 255, 0, 2),
        6,
        6000,
        80,
    )
}

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

/// A new shared pair: odd threads through the burst API, even ones one by one.
fn insert(r: &Reader<'_>, t: u32, k: &FlowKey, now: u32) -> Result<(), InsertError> {
    let (fwd, rev) = (*k, k.reversed());
    let a = Action::allow(99);
    if t.is_multiple_of(2) {
        return r.insert_pair(&fwd, &rev, a, a, Generations::default(), now).map(|_| ());
    }
    let mut res = Err(InsertError::Full);
    let pair = NewPair {
        fwd,
        rev,
        fwd_action: a,
        rev_action: a,
        first_packet: None,
    };
    r.insert_pairs(&[pair], Generations::default(), now, |_, x| res = x.map(|_| ()));
    res
}

/// `threads` workers for `duration`, each also installing `owned_per_thread` flows of its
/// own, in a table of `capacity` slots.
fn run(threads: u32, duration: Duration, capacity: usize, owned_per_thread: u32) {
    let mut cfg = FlowTableConfig::with_capacity(capacity);
    cfg.timeouts = Timeouts {
        udp: 3,
        tcp_established: u32::MAX / 2,
        ..Timeouts::default()
    };
    let table = FlowTable::new(cfg).unwrap();
    let inserted = AtomicU64::new(0);
    let deleted = AtomicU64::new(0);
    let clock = AtomicU32::new(0);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        // The sweeper: a maintenance thread advancing time and ageing shared flows.
        s.spawn(|| {
            let mut r = table.reader().unwrap();
            while !stop.load(Ordering::Relaxed) {
                let now = clock.fetch_add(1, Ordering::Relaxed) + 1;
                r.sweep(now, 4096, |_| {});
                r.quiescent();
                std::thread::sleep(Duration::from_micros(200));
            }
        });
        for t in 0..threads {
            let (table, inserted, deleted, clock, stop) = (&table, &inserted, &deleted, &clock, &stop);
            s.spawn(move || {
                let mut r = table.reader().unwrap();
                let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(t + 1);
                let mut next_owned = 0;
                let start = Instant::now();
                let mut ops = 0u64;
                while start.elapsed() < duration || next_owned < owned_per_thread {
                    let now = clock.load(Ordering::Relaxed);
                    let x = xorshift(&mut rng);
                    if next_owned < owned_per_thread && x.is_multiple_of(4) {
                        let k = owned(t, next_owned);
                        // With more threads than CPUs a preempted reader stretches the grace
                        // period, and a churning bucket pair can fill with retired slots:
                        // a counted refusal, after which a retry succeeds.
                        let mut tries = 0;
                        loop {
                            match r.insert_pair(
                                &k,
                                &k.reversed(),
                                Action::allow(t),
                                Action::allow(t),
                                Generations::default(),
                                now,
                            ) {
                                Ok((f, b)) => {
                                    assert_ne!(f, b);
                                    break;
                                }
                                Err(InsertError::Full) if tries < 10_000 => {
                                    tries += 1;
                                    r.quiescent();
                                    std::thread::yield_now();
                                }
                                Err(e) => panic!("owned flow {t}/{next_owned}: {e}"),
                            }
                        }
                        inserted.fetch_add(2, Ordering::Relaxed);
                        next_owned += 1;
                    } else {
                        let k = shared((x >> 8) as u32 % 3000);
                        let k = if x & 1 == 0 { k } else { k.reversed() };
                        match r.lookup(&k, k.hash()) {
                            Some(id) if x.is_multiple_of(3) => {
                                deleted.fetch_add(r.delete(id, |_| {}) as u64, Ordering::Relaxed);
                            }
                            Some(id) => {
                                let f = r.flow(id);
                                assert_eq!(f.key(), k, "a reader saw another flow's entry");
                                f.record(100, now, 0);
                            }
                            None => match insert(&r, t, &k, now) {
                                Ok(()) => {
                                    inserted.fetch_add(2, Ordering::Relaxed);
                                }
                                Err(InsertError::Exists | InsertError::Full) => {}
                                Err(e) => panic!("{e}"),
                            },
                        }
                    }
                    ops += 1;
                    if ops.is_multiple_of(32) {
                        r.quiescent();
                    }
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                }
            });
        }
        std::thread::sleep(duration + Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
    });

    let r = table.reader().unwrap();
    let mut keys = HashSet::new();
    let mut snapshots = Vec::new();
    r.for_each(|f| {
        assert!(keys.insert(f.key), "key present twice: {:?}", f.key);
        snapshots.push(f);
    });
    for f in &snapshots {
        let back = f.reverse.expect("every flow was installed as a pair");
        let partner = snapshots.iter().find(|p| p.index == back);
        if let Some(p) = partner {
            assert_eq!(p.reverse, Some(f.index), "reverse links are mutual");
            assert_eq!(p.key, f.key.reversed());
        }
    }
    for t in 0..threads {
        for n in 0..owned_per_thread {
            let k = owned(t, n);
            assert!(
                keys.contains(&k) && keys.contains(&k.reversed()),
                "owned flow {t}/{n} lost"
            );
        }
    }
    let s = table.stats();
    assert_eq!(s.entries as usize, keys.len());
    assert_eq!(s.inserts, inserted.load(Ordering::Relaxed));
    assert_eq!(s.deletes, deleted.load(Ordering::Relaxed) + s.aged + s.evictions);
    assert_eq!(s.inserts - s.deletes, s.entries);
    eprintln!("{threads} threads: {s:?}");
}

#[test]
fn two_threads() {
    run(2, Duration::from_millis(1500), 1 << 16, 2000);
}

#[test]
fn four_threads() {
    run(4, Duration::from_millis(1500), 1 << 16, 2000);
}

#[test]
fn eight_threads() {
    run(8, Duration::from_millis(1500), 1 << 16, 2000);
}

/// The owned flows alone fill 61% of the slots and the shared ones churn above them, so
/// most first buckets pass the spill threshold and inserts race for second buckets,
/// refusals included.
#[test]
fn four_threads_in_a_nearly_full_table() {
    run(4, Duration::from_millis(1500), 1 << 14, 1250);
}
