#![allow(missing_docs)] // criterion_group! generates an undocumented public function.

//! The flow table at 1M live flows versus papaya, scc (`HashMap` and `HashIndex`), dashmap
//! and `RwLock<HashMap>` (all with ahash) on the same keys, in the same run: hit and miss
//! lookups and inserts (in bursts of 64; papaya with one guard per burst or batch,
//! `HashIndex` per burst of lookups), a 90/10 lookup/update mix, with 1 and 2 threads; the
//! machine's floor: independent random reads over a buffer as large as our table and, as it
//! is, on huge pages (one line per key, also with the key and hash read in as a lookup
//! reads them, and two lines: in one 4 KiB page or far apart).

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use flow::{Action, FlowTable, FlowTableConfig, Generations, NewPair};
use vrouter_benches::shuffled_flow_keys;
use wire::flow::FlowKey;

const LIVE: usize = 1 << 20;
const BURST: usize = 64;

type Ahash = ahash::RandomState;

trait Map: Sync {
    fn name(&self) -> &'static str;
    fn insert(&self, k: FlowKey, v: u64) -> bool;
    fn get(&self, k: &FlowKey) -> Option<u64>;
    fn remove(&self, k: &FlowKey);
    /// How many of `keys` are present, looked up the way this map serves a burst best.
    fn hits(&self, keys: &[FlowKey]) -> u32 {
        keys.iter().map(|k| u32::from(self.get(k).is_some())).sum()
    }
    /// Inserts every key of `keys` (value 1), the way this map takes a batch best.
    fn insert_all(&self, keys: &[FlowKey]) {
        for k in keys {
            self.insert(*k, 1);
        }
    }
}

struct Papaya(papaya::HashMap<FlowKey, u64, Ahash>);
struct Scc(scc::HashMap<FlowKey, u64, Ahash>);
/// scc's read-optimised map: lock-free reads under an epoch guard.
struct SccIndex(scc::HashIndex<FlowKey, u64, Ahash>);
struct Dash(dashmap::DashMap<FlowKey, u64, Ahash>);
struct Locked(RwLock<HashMap<FlowKey, u64, Ahash>>);

impl Map for Papaya {
    fn name(&self) -> &'static str {
        "papaya"
    }
    fn insert(&self, k: FlowKey, v: u64) -> bool {
        self.0.pin().insert(k, v).is_none()
    }
    fn get(&self, k: &FlowKey) -> Option<u64> {
        self.0.pin().get(k).copied()
    }
    fn remove(&self, k: &FlowKey) {
        self.0.pin().remove(k);
    }
    // One guard for the burst, as papaya's docs advise: pinning per key cost it 20-40 ns
    // a lookup here (docs/PERFORMANCE.md).
    fn hits(&self, keys: &[FlowKey]) -> u32 {
        let guard = self.0.guard();
        keys.iter().map(|k| u32::from(self.0.get(k, &guard).is_some())).sum()
    }
    fn insert_all(&self, keys: &[FlowKey]) {
        let guard = self.0.guard();
        for k in keys {
            self.0.insert(*k, 1, &guard);
        }
    }
}
impl Map for Scc {
    fn name(&self) -> &'static str {
        "scc"
    }
    fn insert(&self, k: FlowKey, v: u64) -> bool {
        self.0.insert_sync(k, v).is_ok()
    }
    fn get(&self, k: &FlowKey) -> Option<u64> {
        self.0.read_sync(k, |_, v| *v)
    }
    fn remove(&self, k: &FlowKey) {
        self.0.remove_sync(k);
    }
}
impl Map for SccIndex {
    fn name(&self) -> &'static str {
        "scc_hashindex"
    }
    fn insert(&self, k: FlowKey, v: u64) -> bool {
        self.0.insert_sync(k, v).is_ok()
    }
    fn get(&self, k: &FlowKey) -> Option<u64> {
        self.0.peek_with(k, |_, v| *v)
    }
    fn remove(&self, k: &FlowKey) {
        self.0.remove_sync(k);
    }
    // One guard for the burst, as with papaya.
    fn hits(&self, keys: &[FlowKey]) -> u32 {
        let guard = scc::Guard::new();
        keys.iter().map(|k| u32::from(self.0.peek(k, &guard).is_some())).sum()
    }
}
impl Map for Dash {
    fn name(&self) -> &'static str {
        "dashmap"
    }
    fn insert(&self, k: FlowKey, v: u64) -> bool {
        self.0.insert(k, v).is_none()
    }
    fn get(&self, k: &FlowKey) -> Option<u64> {
        self.0.get(k).map(|v| *v)
    }
    fn remove(&self, k: &FlowKey) {
        self.0.remove(k);
    }
}
impl Map for Locked {
    fn name(&self) -> &'static str {
        "rwlock_hashmap"
    }
    fn insert(&self, k: FlowKey, v: u64) -> bool {
        self.0.write().unwrap().insert(k, v).is_none()
    }
    fn get(&self, k: &FlowKey) -> Option<u64> {
        self.0.read().unwrap().get(k).copied()
    }
    fn remove(&self, k: &FlowKey) {
        self.0.write().unwrap().remove(k);
    }
}

/// How many maps [`new_peers`] makes.
const PEERS: usize = 5;

fn new_peers() -> Vec<Box<dyn Map>> {
    vec![
        Box::new(Papaya(papaya::HashMap::with_capacity_and_hasher(LIVE, Ahash::new()))),
        Box::new(Scc(scc::HashMap::with_capacity_and_hasher(LIVE, Ahash::new()))),
        Box::new(SccIndex(scc::HashIndex::with_capacity_and_hasher(LIVE, Ahash::new()))),
        Box::new(Dash(dashmap::DashMap::with_capacity_and_hasher(LIVE, Ahash::new()))),
        Box::new(Locked(RwLock::new(HashMap::with_capacity_and_hasher(
            LIVE,
            Ahash::new(),
        )))),
    ]
}

/// 4M slots for the 1M flows: a quarter load, the size earlier runs measured (a 2M
/// request then rounded up to 3.9M slots). `hit_rounds` measures fuller tables.
fn our_table() -> FlowTable {
    FlowTable::new(FlowTableConfig::with_capacity(4 * LIVE)).unwrap()
}

/// Runs `work(thread, iterations)` on `threads` threads and returns the wall time.
fn timed(threads: usize, iters: u64, work: &(dyn Fn(usize, u64) + Sync)) -> Duration {
    let per = iters.div_ceil(threads as u64);
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || work(t, per));
        }
    });
    start.elapsed()
}

const INSERT_BATCH: usize = 1 << 16;

/// Times `iters` batches of [`INSERT_BATCH`] new keys split over `threads`, on tables from
/// `fresh` (built outside the timing whenever 1M keys are used up).
fn insert_batches<M: Sync>(
    iters: u64,
    threads: usize,
    keys: &[FlowKey],
    fresh: impl Fn() -> M,
    insert: &(dyn Fn(&M, &[FlowKey]) + Sync),
) -> Duration {
    let mut total = Duration::ZERO;
    let mut table = fresh();
    let mut used = 0;
    for _ in 0..iters {
        if used + INSERT_BATCH > keys.len() {
            table = fresh();
            used = 0;
        }
        let batch = &keys[used..used + INSERT_BATCH];
        let per = INSERT_BATCH / threads;
        let t = &table;
        total += timed(threads, 1, &|th, _| insert(t, &batch[th * per..(th + 1) * per]));
        used += INSERT_BATCH;
    }
    total
}

fn bench_flow(c: &mut Criterion) {
    let live = shuffled_flow_keys(LIVE, 0);
    let absent = shuffled_flow_keys(LIVE, 1 << 40);
    let live_hashes: Vec<u64> = live.iter().map(FlowKey::hash).collect();
    let absent_hashes: Vec<u64> = absent.iter().map(FlowKey::hash).collect();

    let table = our_table();
    {
        let r = table.reader().unwrap();
        for (i, k) in live.iter().enumerate() {
            r.insert_pair(
                k,
                k,
                Action::allow(i as u32),
                Action::allow(i as u32),
                Generations::default(),
                0,
            )
            .unwrap();
        }
    }
    let peers = new_peers();
    for m in &peers {
        for (i, k) in live.iter().enumerate() {
            m.insert(*k, i as u64);
        }
    }

    for threads in [1usize, 2] {
        for (label, keys, hashes) in [("hit", &live, &live_hashes), ("miss", &absent, &absent_hashes)] {
            let mut g = c.benchmark_group(format!("flow_lookup_{label}/{threads}t"));
            g.throughput(Throughput::Elements(BURST as u64));
            g.bench_function("vrouter_flow_burst", |b| {
                b.iter_custom(|iters| {
                    timed(threads, iters, &|t, n| {
                        let mut r = table.reader().unwrap();
                        let mut at = t * 7919 * BURST % (LIVE - BURST);
                        let mut hits = 0u32;
                        for _ in 0..n {
                            // Ids live for one burst: the borrow checker ends them at quiescent().
                            let mut out = [None; BURST];
                            let m = r.lookup_burst(&keys[at..at + BURST], &hashes[at..at + BURST], &mut out);
                            hits += m.count_ones();
                            r.quiescent();
                            at = (at + BURST) % (LIVE - BURST);
                        }
                        black_box(hits);
                    })
                })
            });
            for m in &peers {
                g.bench_function(m.name(), |b| {
                    b.iter_custom(|iters| {
                        timed(threads, iters, &|t, n| {
                            let mut at = t * 7919 * BURST % (LIVE - BURST);
                            let mut hits = 0u32;
                            for _ in 0..n {
                                hits += m.hits(&keys[at..at + BURST]);
                                at = (at + BURST) % (LIVE - BURST);
                            }
                            black_box(hits);
                        })
                    })
                });
            }
            g.finish();
        }

        // 90% hit lookups, 10% updates (delete one live flow, insert one new one).
        let mut g = c.benchmark_group(format!("flow_mixed_90_10/{threads}t"));
        g.throughput(Throughput::Elements(BURST as u64));
        g.bench_function("vrouter_flow_burst", |b| {
            b.iter_custom(|iters| {
                timed(threads, iters, &|t, n| {
                    let mut r = table.reader().unwrap();
                    let mut at = t * 7919 * BURST % (LIVE - BURST);
                    for i in 0..n {
                        let mut out = [None; BURST];
                        r.lookup_burst(&live[at..at + BURST - 6], &live_hashes[at..at + BURST - 6], &mut out);
                        for j in 0..3 {
                            let k = &absent[(at + j + t * 3) % LIVE];
                            if let Some(id) = r.lookup(k, k.hash()) {
                                r.delete(id, |_| {});
                            } else {
                                let _ = r.insert_pair(
                                    k,
                                    k,
                                    Action::allow(1),
                                    Action::allow(1),
                                    Generations::default(),
                                    i as u32,
                                );
                            }
                        }
                        r.quiescent();
                        at = (at + BURST) % (LIVE - BURST);
                    }
                })
            })
        });
        for m in &peers {
            g.bench_function(m.name(), |b| {
                b.iter_custom(|iters| {
                    timed(threads, iters, &|t, n| {
                        let mut at = t * 7919 * BURST % (LIVE - BURST);
                        for _ in 0..n {
                            black_box(m.hits(&live[at..at + BURST - 6]));
                            for j in 0..3 {
                                let k = absent[(at + j + t * 3) % LIVE];
                                if m.get(&k).is_some() {
                                    m.remove(&k);
                                } else {
                                    m.insert(k, 1);
                                }
                            }
                            at = (at + BURST) % (LIVE - BURST);
                        }
                    })
                })
            });
        }
        g.finish();
    }
    drop(table);
    drop(peers);

    // Flow setup rate: inserts into an empty table until 1M flows, then a fresh table.
    // Flow setup rate: batches of inserts of new keys into a table that is refilled from
    // empty (untimed) whenever the next batch would pass 1M flows.
    let mut g = c.benchmark_group("flow_insert");
    g.throughput(Throughput::Elements(INSERT_BATCH as u64));
    g.sample_size(10);
    for threads in [1usize, 2] {
        g.bench_function(BenchmarkId::new("vrouter_flow", format!("{threads}t")), |b| {
            b.iter_custom(|iters| {
                insert_batches(iters, threads, &live, our_table, &|t: &FlowTable, keys: &[FlowKey]| {
                    let r = t.reader().unwrap();
                    let mut pairs = [NewPair {
                        fwd: FlowKey::default(),
                        rev: FlowKey::default(),
                        fwd_action: Action::allow(1),
                        rev_action: Action::allow(1),
                        first_packet: None,
                    }; BURST];
                    for burst in keys.chunks(BURST) {
                        for (p, k) in pairs.iter_mut().zip(burst) {
                            (p.fwd, p.rev) = (*k, *k);
                        }
                        r.insert_pairs(&pairs[..burst.len()], Generations::default(), 0, |_, res| {
                            black_box(res.is_ok());
                        });
                    }
                })
            })
        });
        for make in 0..PEERS {
            let name = new_peers()[make].name();
            g.bench_function(BenchmarkId::new(name, format!("{threads}t")), |b| {
                b.iter_custom(|iters| {
                    let fresh = || new_peers().swap_remove(make);
                    insert_batches(iters, threads, &live, fresh, &|m, keys| m.insert_all(keys))
                })
            });
        }
    }
    g.finish();

    // The floor: independent random 8-byte reads over a buffer the size of our table.
    let words = our_table().capacity() * FlowTable::bytes_per_flow() / 8;
    // Advised to huge pages as our table is, so the floor is the memory's, not page walks'.
    let mut buf = vrouter_benches::advised_buffer(words * 8, true);
    for (i, w) in buf.iter_mut().enumerate() {
        *w = i as u64;
    }
    let idx: Vec<usize> = live_hashes.iter().map(|h| (*h as usize) % words).collect();
    let mut g = c.benchmark_group("flow_floor");
    g.throughput(Throughput::Elements(BURST as u64));
    g.bench_function("random_read_same_size", |b| {
        let mut at = 0;
        b.iter(|| {
            let s: u64 = idx[at..at + BURST].iter().map(|&i| buf[i]).sum();
            at = (at + BURST) % (LIVE - BURST);
            black_box(s)
        })
    });
    // The same random line per key, found from the key's hash and read together with the
    // key's 48 bytes, as any burst lookup must read its inputs: the floor for a lookup API
    // that takes keys and hashes.
    g.bench_function("random_read_with_keys", |b| {
        let mut at = 0;
        b.iter(|| {
            let s: u64 = live[at..at + BURST]
                .iter()
                .zip(&live_hashes[at..at + BURST])
                .map(|(k, &h)| {
                    let i = ((u128::from(h) * words as u128) >> 64) as usize;
                    k.to_words().iter().fold(buf[i], |a, w| a ^ w)
                })
                .sum();
            at = (at + BURST) % (LIVE - BURST);
            black_box(s)
        })
    });
    // Two random lines per key, as a counted packet of a 1M-flow table reads: in the same
    // 4 KiB page (an entry's key line and counters) or half the buffer apart.
    for (name, other) in [
        (
            "two_lines_same_page",
            (|i: usize, _: usize| i ^ 32) as fn(usize, usize) -> usize,
        ),
        ("two_lines_apart", |i, words| (i + words / 2) % words),
    ] {
        g.bench_function(name, |b| {
            let mut at = 0;
            b.iter(|| {
                let s: u64 = idx[at..at + BURST].iter().map(|&i| buf[i] + buf[other(i, words)]).sum();
                at = (at + BURST) % (LIVE - BURST);
                black_box(s)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_flow);
criterion_main!(benches);
