//! Burst hit lookups of a 1M-flow table (the flow bench's table: capacity 2M, the same
//! keys), timed in short rounds; prints the fastest and the median. On a VM whose speed
//! moves from minute to minute, two builds are compared by running this alternately on
//! each: `cargo run --release -p vrouter-benches --example hit_rounds [ROUNDS]`.

use std::net::Ipv4Addr;
use std::time::Instant;

use flow::{Action, FlowTable, FlowTableConfig, Generations};
use wire::flow::FlowKey;

const LIVE: usize = 1 << 20;
const BURST: usize = 64;

/// The flow bench's keys: addresses and ports vary as real 5-tuples do.
fn key(n: u64) -> FlowKey {
    let x = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    FlowKey::v4(
        Ipv4Addr::from((x >> 32) as u32),
        Ipv4Addr::from(0x0a00_0000 | (n as u32 & 0xffff)),
        6,
        x as u16,
        443,
    )
}

fn main() {
    let rounds: usize = std::env::args().nth(1).map_or(10, |r| r.parse().expect("ROUNDS"));
    let mut live: Vec<FlowKey> = (0..LIVE as u64).map(key).collect();
    let mut s = 0x2545_f491_4f6c_dd1du64;
    for i in (1..live.len()).rev() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        live.swap(i, (s % (i as u64 + 1)) as usize);
    }
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
