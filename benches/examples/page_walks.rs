//! What a random cache line of a big table costs on this machine, and how much of it is
//! the page walk: the figures docs/flow.md gives for laying an entry's two lines out in
//! one 4 KiB page. Run: `cargo run --release -p vrouter-benches --example page_walks`.
//!
//! 1. Dependent random reads over 256 MB, on memory advised to transparent huge pages and
//!    on memory advised against them (if huge pages remove the walks, the first is faster).
//! 2. Independent random keys in batches of 64 over 512 MB (huge pages advised), reading
//!    one line per key, two lines in one 4 KiB page, or two lines half the buffer apart.

use std::hint::black_box;
use std::time::Instant;

use vrouter_benches::{Rng, advised_buffer};

const LINE_WORDS: usize = 8;

/// A key's second line, from its first and the buffer's length in lines.
type Second = fn(usize, usize) -> usize;

/// ns per read of a pointer chase through every line of `buf` in a random cycle.
fn chase(buf: &mut [u64], rng: &mut Rng) -> f64 {
    let lines = buf.len() / LINE_WORDS;
    let mut order: Vec<usize> = (0..lines).collect();
    for i in (1..lines).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    for w in 0..lines {
        buf[order[w] * LINE_WORDS] = (order[(w + 1) % lines] * LINE_WORDS) as u64;
    }
    let steps = 2_000_000;
    let mut at = order[0] * LINE_WORDS;
    let t = Instant::now();
    for _ in 0..steps {
        at = buf[at] as usize;
    }
    black_box(at);
    t.elapsed().as_nanos() as f64 / steps as f64
}

/// ns per key of batches of 64 random keys, each reading its line and `other(line)`.
fn batches(buf: &[u64], keys: &[usize], other: Option<Second>) -> f64 {
    let lines = buf.len() / LINE_WORDS;
    let t = Instant::now();
    let mut sum = 0u64;
    for batch in keys.chunks(64) {
        for &k in batch {
            sum = sum.wrapping_add(buf[k * LINE_WORDS]);
            if let Some(other) = other {
                sum = sum.wrapping_add(buf[other(k, lines) * LINE_WORDS]);
            }
        }
    }
    black_box(sum);
    t.elapsed().as_nanos() as f64 / keys.len() as f64
}

fn main() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for huge in [true, false] {
        let mut buf = advised_buffer(256 << 20, huge);
        let ns = chase(&mut buf, &mut rng);
        let label = if huge {
            "huge pages advised"
        } else {
            "huge pages refused"
        };
        println!("dependent random reads over 256 MB, {label}: {ns:.1} ns per read");
    }
    let mut buf = advised_buffer(512 << 20, true);
    for (i, w) in buf.iter_mut().enumerate().step_by(LINE_WORDS) {
        *w = i as u64;
    }
    let lines = buf.len() / LINE_WORDS;
    let keys: Vec<usize> = (0..1 << 20).map(|_| rng.below(lines as u64) as usize).collect();
    let cases: [(&str, Option<Second>); 3] = [
        ("one line", None),
        ("two lines in one 4 KiB page", Some(|k, _| k ^ 32)),
        (
            "two lines half the buffer apart",
            Some(|k, lines| (k + lines / 2) % lines),
        ),
    ];
    for round in 1..=3 {
        for (name, other) in cases {
            let ns = batches(&buf, &keys, other);
            println!("round {round}, batches of 64 random keys over 512 MB, {name}: {ns:.1} ns per key");
        }
    }
}
