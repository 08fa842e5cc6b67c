//! The frame census against a naive model: random moves, port removals (frames handed
//! back, the rest given up) and additions, with the pool's own check and its counts
//! compared to the model's after every step.

use std::sync::Arc;

use dataplane::{FramePool, Place};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// Fill ring of port `p` takes up to `n` frames.
    Fill { p: usize, n: usize },
    /// A packet arrives on port `p` (the `k`-th frame the kernel holds for it).
    Receive { p: usize, k: usize },
    /// The worker sends its `k`-th frame out of port `p`.
    Send { p: usize, k: usize },
    /// Port `p` completes its `k`-th sent frame.
    Complete { p: usize, k: usize },
    /// The worker drops its `k`-th frame.
    Drop { k: usize },
    /// Port `p` is removed: every `every`-th of its receive frames comes back (the fill
    /// ring taken back), the rest is given up; later ports move down one.
    Remove { p: usize, every: usize },
    /// A port is added at the end.
    Add,
}

fn op() -> impl Strategy<Value = Op> {
    let (p, k) = (0..4usize, 0..64usize);
    prop_oneof![
        (p.clone(), 0..40usize).prop_map(|(p, n)| Op::Fill { p, n }),
        (p.clone(), k.clone()).prop_map(|(p, k)| Op::Receive { p, k }),
        (p.clone(), k.clone()).prop_map(|(p, k)| Op::Send { p, k }),
        (p.clone(), k.clone()).prop_map(|(p, k)| Op::Complete { p, k }),
        k.prop_map(|k| Op::Drop { k }),
        (p, 1..4usize).prop_map(|(p, every)| Op::Remove { p, every }),
        Just(Op::Add),
    ]
}

/// The `k`-th (wrapping) frame the model has at `place`, if any.
fn nth(model: &[(u64, Place)], place: Place, k: usize) -> Option<u64> {
    let at: Vec<u64> = model.iter().filter(|f| f.1 == place).map(|f| f.0).collect();
    (!at.is_empty()).then(|| at[k % at.len()])
}

fn set(model: &mut [(u64, Place)], a: u64, to: Place) {
    model.iter_mut().find(|f| f.0 == a).expect("a frame of the pool").1 = to;
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn the_census_matches_a_model_through_moves_and_port_changes(ops in proptest::collection::vec(op(), 1..120)) {
        let umem = Arc::new(af_xdp::Umem::new(af_xdp::UmemConfig { frame_count: 128, ..Default::default() }).unwrap());
        let mut pool = FramePool::new(umem.clone(), 2);
        let mut ports = 2usize;
        let mut model: Vec<(u64, Place)> = (0..128).map(|i| (umem.frame_addr(i), Place::Free)).collect();
        let mut out = Vec::new();
        for op in ops {
            match op {
                Op::Fill { p, n } if p < ports => {
                    out.clear();
                    pool.take_for(n, Place::KernelRx(p as u16), &mut out);
                    for &a in &out {
                        set(&mut model, a, Place::KernelRx(p as u16));
                    }
                }
                Op::Receive { p, k } if p < ports => {
                    if let Some(a) = nth(&model, Place::KernelRx(p as u16), k) {
                        pool.moved(a + 256, Place::KernelRx(p as u16), Place::Worker);
                        set(&mut model, a, Place::Worker);
                    }
                }
                Op::Send { p, k } if p < ports => {
                    if let Some(a) = nth(&model, Place::Worker, k) {
                        pool.moved(a, Place::Worker, Place::KernelTx(p as u16));
                        set(&mut model, a, Place::KernelTx(p as u16));
                    }
                }
                Op::Complete { p, k } if p < ports => {
                    if let Some(a) = nth(&model, Place::KernelTx(p as u16), k) {
                        pool.free(a + 100, Place::KernelTx(p as u16));
                        set(&mut model, a, Place::Free);
                    }
                }
                Op::Drop { k } => {
                    if let Some(a) = nth(&model, Place::Worker, k) {
                        pool.free(a, Place::Worker);
                        set(&mut model, a, Place::Free);
                    }
                }
                Op::Remove { p, every } if p < ports && ports > 1 => {
                    let rx: Vec<u64> = model.iter().filter(|f| f.1 == Place::KernelRx(p as u16)).map(|f| f.0).collect();
                    let back: Vec<u64> = rx.iter().copied().step_by(every).collect();
                    pool.untake(&back, Place::KernelRx(p as u16));
                    for &a in &back {
                        set(&mut model, a, Place::Free);
                    }
                    let expect_given = model
                        .iter()
                        .filter(|f| matches!(f.1, Place::KernelRx(q) | Place::KernelTx(q) if usize::from(q) == p))
                        .count() as u64;
                    prop_assert_eq!(pool.give_up(p as u16), expect_given);
                    let old_of: Vec<Option<u16>> = (0..ports).filter(|&i| i != p).map(|i| Some(i as u16)).collect();
                    pool.renumber(&old_of);
                    for f in &mut model {
                        f.1 = match f.1 {
                            Place::KernelRx(q) | Place::KernelTx(q) if usize::from(q) == p => Place::GivenUp,
                            Place::KernelRx(q) if usize::from(q) > p => Place::KernelRx(q - 1),
                            Place::KernelTx(q) if usize::from(q) > p => Place::KernelTx(q - 1),
                            other => other,
                        };
                    }
                    ports -= 1;
                }
                Op::Add if ports < 4 => {
                    let old_of: Vec<Option<u16>> = (0..ports).map(|i| Some(i as u16)).chain([None]).collect();
                    pool.renumber(&old_of);
                    ports += 1;
                }
                _ => {}
            }
            prop_assert!(pool.verify().is_ok(), "{:?}", pool.verify());
            let c = pool.census();
            let count = |place: Place| model.iter().filter(|f| f.1 == place).count() as u64;
            prop_assert_eq!(c.free, count(Place::Free));
            prop_assert_eq!(c.worker, count(Place::Worker));
            prop_assert_eq!(c.given_up, count(Place::GivenUp));
            let rx: Vec<u64> = (0..ports).map(|p| count(Place::KernelRx(p as u16))).collect();
            let tx: Vec<u64> = (0..ports).map(|p| count(Place::KernelTx(p as u16))).collect();
            prop_assert_eq!(&c.kernel_rx, &rx);
            prop_assert_eq!(&c.kernel_tx, &tx);
        }
    }
}
