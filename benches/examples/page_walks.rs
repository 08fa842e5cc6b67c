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

const LINE_WORDS: usize = 8;

/// A key's second line, from its first and the buffer's length in lines.
type Second = fn(usize, usize) -> usize;

/// A zeroed buffer of `bytes`, advised (before its first write) to huge pages or not.
fn buffer(bytes: usize, huge: bool) -> Vec<u64> {
    let v = vec![0u64; bytes / 8];
    let advice = if huge {
        libc::MADV_HUGEPAGE
    } else {
        libc::MADV_NOHUGEPAGE
    };
    let start = (v.as_ptr() as usize).next_multiple_of(4096);
    let end = (v.as_ptr() as usize + bytes) & !4095;
    // SAFETY: whole pages inside the vector's allocation; the advice changes how the kernel
    // backs them, never their contents.
    unsafe { libc::madvise(start as *mut libc::c_void, end - start, advice) };
    v
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// ns per read of a pointer chase through every line of `buf` in a random cycle.
fn chase(buf: &mut [u64], rng: &mut Rng) -> f64 {
    let lines = buf.len() / LINE_WORDS;
    let mut order: Vec<usize> = (0..lines).collect();
    for i in (1..lines).rev() {
        order.swap(i, rng.below(i + 1));
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
        let mut buf = buffer(256 << 20, huge);
        let ns = chase(&mut buf, &mut rng);
        let label = if huge {
            "huge pages advised"
        } else {
            "huge pages refused"
        };
        println!("dependent random reads over 256 MB, {label}: {ns:.1} ns per read");
    }
    let mut buf = buffer(512 << 20, true);
    for (i, w) in buf.iter_mut().enumerate().step_by(LINE_WORDS) {
        *w = i as u64;
    }
    let lines = buf.len() / LINE_WORDS;
    let keys: Vec<usize> = (0..1 << 20).map(|_| rng.below(lines)).collect();
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
