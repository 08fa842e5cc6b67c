//! Burst hit lookups of a 1M-flow table (the flow bench's table: 4M slots, the same
//! keys), timed in short rounds, each followed by the same lookups on papaya (the best
//! peer of the flow bench), so every round gives a ratio measured within seconds. On a VM
//! whose speed moves from minute to minute, two builds are compared by running this
//! alternately on each, and the 1-thread ratio to papaya is read as the median of the
//! rounds': `cargo run --release -p vrouter-benches --example hit_rounds [ROUNDS] [ours|both]
//! [SLOTS_PER_FLOW]`. With `ours`, papaya is left out (for counting our instructions with
//! callgrind). `SLOTS_PER_FLOW` (default 4, a quarter load) sizes our table: 2 is half
//! load, 1.5 two thirds.

use std::hint::black_box;
use std::time::Instant;

use flow::{Action, FlowTable, FlowTableConfig, Generations};
use vrouter_benches::shuffled_flow_keys;
use wire::flow::FlowKey;

const LIVE: usize = 1 << 20;
const BURST: usize = 64;

/// Nanoseconds per key of `bursts` bursts of `lookup`, stepping through `LIVE` keys.
fn per_key(bursts: usize, mut lookup: impl FnMut(std::ops::Range<usize>) -> u32) -> f64 {
    let start = Instant::now();
    let (mut at, mut hits) = (0, 0);
    for _ in 0..bursts {
        hits += lookup(at..at + BURST);
        at = (at + BURST) % (LIVE - BURST);
    }
    let ns = start.elapsed().as_nanos() as f64 / (bursts * BURST) as f64;
    assert_eq!(black_box(hits) as usize, bursts * BURST, "every key a hit");
    ns
}

/// Fastest and median of `v`, as "fastest F, median M".
fn fastest_median(mut v: Vec<f64>, unit: &str) -> String {
    v.sort_by(f64::total_cmp);
    format!("fastest {:.2}{unit}, median {:.2}{unit}", v[0], v[v.len() / 2])
}

fn main() {
    let rounds: usize = std::env::args().nth(1).map_or(10, |r| r.parse().expect("ROUNDS"));
    let with_papaya = std::env::args().nth(2).as_deref() != Some("ours");
    let slots_per_flow: f64 = std::env::args()
        .nth(3)
        .map_or(4.0, |s| s.parse().expect("SLOTS_PER_FLOW"));
    let live = shuffled_flow_keys(LIVE, 0);
    let hashes: Vec<u64> = live.iter().map(FlowKey::hash).collect();
    let capacity = (slots_per_flow * LIVE as f64) as usize;
    let table = FlowTable::new(FlowTableConfig::with_capacity(capacity)).unwrap();
    let mut r = table.reader().unwrap();
    let papaya_len = if with_papaya { LIVE } else { 0 };
    let papaya = papaya::HashMap::with_capacity_and_hasher(papaya_len, ahash::RandomState::new());
    for (i, k) in live.iter().enumerate() {
        let a = Action::allow(i as u32);
        r.insert_pair(k, k, a, a, Generations::default(), 0).unwrap();
        if with_papaya {
            papaya.pin().insert(*k, i as u64);
        }
    }
    let bursts = 2 * LIVE / BURST;
    let (mut ours, mut theirs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let o = per_key(bursts, |keys| {
            let mut out = [None; BURST];
            let m = r
                .lookup_burst(&live[keys.clone()], &hashes[keys], &mut out)
                .count_ones();
            r.quiescent();
            m
        });
        ours.push(o);
        if with_papaya {
            // The flow bench's papaya workload: one guard per burst.
            let p = per_key(bursts, |keys| {
                let guard = papaya.guard();
                live[keys]
                    .iter()
                    .map(|k| u32::from(papaya.get(k, &guard).is_some()))
                    .sum()
            });
            theirs.push(p);
            ratios.push(p / o);
        }
    }
    println!(
        "1M-flow burst hit lookups, {rounds} rounds, {} slots, ns per key",
        table.capacity()
    );
    println!("  ours:   {}", fastest_median(ours, " ns"));
    if !with_papaya {
        return;
    }
    println!("  papaya: {}", fastest_median(theirs, " ns"));
    let mut r = ratios;
    r.sort_by(f64::total_cmp);
    println!(
        "  papaya / ours per round: median {:.2}x, range {:.2}x-{:.2}x",
        r[r.len() / 2],
        r[0],
        r[r.len() - 1]
    );
}
