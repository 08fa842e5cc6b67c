//! Burst hit lookups of a 1M-flow table (the flow bench's table: capacity 2M, the same
//! keys), timed in short rounds; prints the fastest and the median. On a VM whose speed
//! moves from minute to minute, two builds are compared by running this alternately on
//! each: `cargo run --release -p vrouter-benches --example hit_rounds [ROUNDS]`.

use std::time::Instant;

use flow::{Action, FlowTable, FlowTableConfig, Generations};
use vrouter_benches::shuffled_flow_keys;
use wire::flow::FlowKey;

const LIVE: usize = 1 << 20;
const BURST: usize = 64;

fn main() {
    let rounds: usize = std::env::args().nth(1).map_or(10, |r| r.parse().expect("ROUNDS"));
    let live = shuffled_flow_keys(LIVE, 0);
    let hashes: Vec<u64> = live.iter().map(FlowKey::hash).collect();
    let table = FlowTable::new(FlowTableConfig::with_capacity(2 * LIVE)).unwrap();
    let mut r = table.reader().unwrap();
    for (i, k) in live.iter().enumerate() {
        let a = Action::allow(i as u32);
        r.insert_pair(k, k, a, a, Generations::default(), 0).unwrap();
    }
    let bursts = 2 * LIVE / BURST;
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let start = Instant::now();
        let (mut at, mut hits) = (0, 0);
        for _ in 0..bursts {
            let mut out = [None; BURST];
            let keys = at..at + BURST;
            hits += r
                .lookup_burst(&live[keys.clone()], &hashes[keys], &mut out)
                .count_ones();
            r.quiescent();
            at = (at + BURST) % (LIVE - BURST);
        }
        assert_eq!(hits as usize, bursts * BURST, "every key a hit");
        times.push(start.elapsed().as_nanos() as f64 / (bursts * BURST) as f64);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "1M-flow burst hit lookups, {rounds} rounds: fastest {:.1} ns, median {:.1} ns per key",
        times[0],
        times[rounds / 2]
    );
}
