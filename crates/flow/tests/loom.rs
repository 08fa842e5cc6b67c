//! loom model checks of the slot protocol on the real table code (its atomics are loom's
//! under `--cfg loom`):
//!
//! ```sh
//! RUSTFLAGS="--cfg loom" cargo test -p flow --test loom --release
//! ```
#![cfg(loom)]

use std::net::Ipv4Addr;

use flow::{Action, FlowTable, FlowTableConfig, Generations};
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;
use wire::flow::FlowKey;

fn tiny() -> Arc<FlowTable> {
    let mut cfg = FlowTableConfig::with_capacity(15);
    cfg.max_readers = 3;
    cfg.max_held_flows = 1;
    cfg.hold_packets_per_flow = 1;
    Arc::new(FlowTable::new(cfg).unwrap())
}

fn key(n: u8) -> FlowKey {
    FlowKey::v4(Ipv4Addr::new(10, 0, 0, n), Ipv4Addr::new(10, 0, 0, 100), 17, 1, 2)
}

/// Two workers install the same flow at once: exactly one succeeds, the key is present
/// once, and a concurrent reader sees it whole or not at all.
#[test]
fn concurrent_inserts_of_one_key() {
    model(|| {
        let t = tiny();
        let k = key(1);
        let ins = |t: Arc<FlowTable>| {
            thread::spawn(move || {
                let r = t.reader().unwrap();
                r.insert_pair(&k, &k, Action::allow(1), Action::allow(1), Generations::default(), 0)
                    .is_ok()
            })
        };
        let (a, b) = (ins(t.clone()), ins(t.clone()));
        let reader = {
            let t = t.clone();
            thread::spawn(move || {
                let r = t.reader().unwrap();
                if let Some(id) = r.lookup(&k, k.hash()) {
                    assert_eq!(r.flow(id).key(), k);
                    assert_eq!(r.flow(id).action(), Action::allow(1));
                }
            })
        };
        let (a, b) = (a.join().unwrap(), b.join().unwrap());
        reader.join().unwrap();
        assert!(a ^ b, "exactly one insert wins: {a} {b}");
        let r = t.reader().unwrap();
        let mut n = 0;
        r.for_each(|_| n += 1);
        assert_eq!(n, 1);
        assert_eq!(t.stats().entries, 1);
    });
}

/// A delete racing a reader that found the flow: the reader's id keeps showing the old
/// flow, never a reused slot, even when a new flow lands in the same bucket at once.
#[test]
fn delete_waits_for_readers_before_reuse() {
    model(|| {
        let t = tiny();
        let k1 = key(1);
        // A second key whose first bucket is k1's (the tiny table has two buckets).
        let k2 = (2..=255).map(key).find(|k| k.hash() & 1 == k1.hash() & 1).unwrap();
        {
            let r = t.reader().unwrap();
            r.insert_pair(&k1, &k1, Action::allow(1), Action::allow(1), Generations::default(), 0)
                .unwrap();
        }
        let reader = t.reader().unwrap();
        let writer = {
            let t = t.clone();
            thread::spawn(move || {
                let r = t.reader().unwrap();
                if let Some(id) = r.lookup(&k1, k1.hash()) {
                    r.delete(id, |_| {});
                }
                r.insert_pair(&k2, &k2, Action::allow(2), Action::allow(2), Generations::default(), 0)
                    .unwrap();
            })
        };
        if let Some(id) = reader.lookup(&k1, k1.hash()) {
            let f = reader.flow(id);
            assert_eq!(f.key(), k1, "slot reused under a reader");
            assert_eq!(f.action(), Action::allow(1));
        }
        writer.join().unwrap();
    });
}

/// A flow deleted and its home slot reused by a new flow while a reader looks both up:
/// the writer waits for the reader to pass a quiescent point after the delete, so the new
/// flow takes the old one's slot, and every lookup sees a whole flow, old or new, never a
/// mix of the two.
#[test]
fn reuse_of_a_home_slot_after_the_grace_period() {
    let n = same_home_as_1(1)[0];
    model(move || {
        let t = tiny();
        let (k1, k2) = (key(1), key(n));
        let k1_at = {
            let r = t.reader().unwrap();
            let (id, _) = r
                .insert_pair(&k1, &k1, Action::allow(1), Action::allow(1), Generations::default(), 0)
                .unwrap();
            id.index()
        };
        let deleted = Arc::new(AtomicBool::new(false));
        let passed = Arc::new(AtomicBool::new(false));
        let mut reader = t.reader().unwrap();
        let writer = {
            let (t, deleted, passed) = (t.clone(), deleted.clone(), passed.clone());
            thread::spawn(move || {
                let mut r = t.reader().unwrap();
                let id = r.lookup(&k1, k1.hash()).unwrap();
                assert_eq!(r.delete(id, |_| {}), 1);
                r.quiescent();
                deleted.store(true, Ordering::Release);
                while !passed.load(Ordering::Acquire) {
                    thread::yield_now();
                }
                let (id, _) = r
                    .insert_pair(&k2, &k2, Action::allow(2), Action::allow(2), Generations::default(), 0)
                    .unwrap();
                id.index()
            })
        };
        let check = |reader: &flow::Reader<'_>, k: &FlowKey, nh: u32| {
            if let Some(id) = reader.lookup(k, k.hash()) {
                let f = reader.flow(id);
                assert_eq!(f.key(), *k, "another flow's slot");
                assert_eq!(f.action(), Action::allow(nh));
            }
        };
        check(&reader, &k1, 1);
        while !deleted.load(Ordering::Acquire) {
            thread::yield_now();
        }
        reader.quiescent();
        passed.store(true, Ordering::Release);
        check(&reader, &k2, 2);
        check(&reader, &k1, 1);
        assert_eq!(
            writer.join().unwrap(),
            k1_at,
            "the new flow takes the retired home slot"
        );
        assert!(reader.lookup(&k1, k1.hash()).is_none());
    });
}

/// A flow installed away from its home (the home is taken) while a reader looks it up:
/// once the reader has seen the flow published (listed by `for_each`) or the insert
/// finish, the lookup finds it. The displaced count at the home must be raised before the
/// flow is published, or the reader would stop at the home line and miss it.
#[test]
fn a_displaced_flow_is_found_once_its_insert_is_seen() {
    let n = same_home_as_1(1)[0];
    model(move || {
        let t = tiny();
        let (k1, k2) = (key(1), key(n));
        t.reader()
            .unwrap()
            .insert_pair(&k1, &k1, Action::allow(1), Action::allow(1), Generations::default(), 0)
            .unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let writer = {
            let (t, done) = (t.clone(), done.clone());
            thread::spawn(move || {
                t.reader()
                    .unwrap()
                    .insert_pair(&k2, &k2, Action::allow(2), Action::allow(2), Generations::default(), 0)
                    .unwrap();
                done.store(true, Ordering::Release);
            })
        };
        let reader = t.reader().unwrap();
        let mut seen = done.load(Ordering::Acquire);
        reader.for_each(|f| seen |= f.key == k2);
        let found = reader.lookup(&k2, k2.hash());
        assert!(found.is_some() || !seen, "the insert was seen to finish, the flow not");
        if let Some(id) = found {
            assert_eq!(reader.flow(id).key(), k2);
        }
        writer.join().unwrap();
    });
}

/// A flow displaced beyond the slot after its home while another flow of that home is
/// installed further on and deleted: the home's guess names the newcomer's slot and,
/// after its delete, a slot the flow is not in. A reader looking the flow up meanwhile,
/// singly and in a burst, finds it every time: a wrong guess sends it to the buckets.
#[test]
fn a_far_displaced_flow_is_found_while_the_guess_moves() {
    let same = same_home_as_1(3);
    model(move || {
        let t = tiny();
        let [k1, k2, k3, k4] = [key(1), key(same[0]), key(same[1]), key(same[2])];
        let add = |r: &flow::Reader<'_>, k: &FlowKey| {
            r.insert_pair(k, k, Action::allow(1), Action::allow(1), Generations::default(), 0)
                .unwrap()
                .0
                .index()
        };
        let r = t.reader().unwrap();
        let at = [k1, k2, k3].map(|k| add(&r, &k));
        drop(r);
        let writer = {
            let t = t.clone();
            thread::spawn(move || {
                let r = t.reader().unwrap();
                let (id, _) = r
                    .insert_pair(&k4, &k4, Action::allow(4), Action::allow(4), Generations::default(), 0)
                    .unwrap();
                assert_eq!(r.delete(id, |_| {}), 1);
            })
        };
        let reader = t.reader().unwrap();
        for _ in 0..2 {
            let id = reader.lookup(&k3, k3.hash()).expect("a present flow was missed");
            assert_eq!(id.index(), at[2]);
        }
        let mut out = [None];
        assert_eq!(
            reader.lookup_burst(&[k3], &[k3.hash()], &mut out),
            1,
            "missed in a burst"
        );
        writer.join().unwrap();
        assert!(reader.lookup(&k4, k4.hash()).is_none());
        assert_eq!(reader.lookup(&k3, k3.hash()).map(|id| id.index()), Some(at[2]));
    });
}

/// The flow's owner (the worker that inserted it) flushes its own counter word into the
/// shared one (every 4 packets under loom) while another worker's locked add goes there
/// too, together taking it past the drain point (8 packets under loom), and a third worker
/// reads the counts. The totals come out exact (a drain run by two adders or by none, or a
/// flush counted twice, would miscount), and the racing read is never below the packets
/// counted before it started, over by at most a flush and a drain.
#[test]
fn counts_stay_exact_across_a_flush_and_a_drain() {
    model(|| {
        let t = tiny();
        let k = key(1);
        let r = t.reader().unwrap();
        let (f, _) = r
            .insert_pair(&k, &k, Action::allow(1), Action::allow(1), Generations::default(), 0)
            .unwrap();
        // Four flushed into the shared word, three waiting in the owner's.
        for _ in 0..7 {
            r.flow(f).record(10, 0, 0);
        }
        let other = |read: bool| {
            let t = t.clone();
            thread::spawn(move || {
                let r = t.reader().unwrap();
                let id = r.lookup(&k, k.hash()).unwrap();
                if read {
                    let (packets, bytes) = (r.flow(id).packets(), r.flow(id).bytes());
                    assert!(
                        (7..=9 + 4 + 8).contains(&packets) && (70..=2 * 1080 + 40).contains(&bytes),
                        "{packets} {bytes}"
                    );
                } else {
                    r.flow(id).record(1000, 0, 0);
                }
            })
        };
        let (adder, reader) = (other(false), other(true));
        // The eighth flushes four more.
        r.flow(f).record(10, 0, 0);
        adder.join().unwrap();
        reader.join().unwrap();
        assert_eq!((r.flow(f).packets(), r.flow(f).bytes()), (9, 80 + 1000));
    });
}

/// `count` keys that an empty table puts in the same slot as `key(1)`: its home. Found in
/// one single-threaded loom execution (the table's atomics need loom's runtime).
fn same_home_as_1(count: usize) -> Vec<u8> {
    // This call's own result slot: tests run in parallel, and a slot shared by all calls
    // once handed one test another's keys.
    let found = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let slot = found.clone();
    let mut b = loom::model::Builder::new();
    b.max_branches = 1_000_000;
    b.check(move || {
        let slot_in_empty_table = |k: &FlowKey| {
            let t = tiny();
            let r = t.reader().unwrap();
            let id = r
                .insert_pair(k, k, Action::allow(1), Action::allow(1), Generations::default(), 0)
                .unwrap()
                .0;
            id.index()
        };
        let home = slot_in_empty_table(&key(1));
        let same = (2..=255).filter(|&n| slot_in_empty_table(&key(n)) == home).take(count);
        *slot.lock().unwrap() = same.collect();
    });
    let found = found.lock().unwrap().clone();
    assert_eq!(found.len(), count, "keys sharing key(1)'s home");
    found
}

/// Bounded exploration: every interleaving with up to three preemptions.
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(f);
}
