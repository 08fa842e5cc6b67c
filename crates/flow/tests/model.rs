//! The table against a `HashMap` model: random single-threaded sequences of pair inserts
//! (one by one and in bursts), lookups, deletes, packets, ageing with timeouts changed on
//! the live table, and quiescent points, on a table small enough to fill.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use flow::{Action, FlowTable, FlowTableConfig, FullPolicy, Generations, InsertError, NewPair, Timeouts};
use proptest::prelude::*;
use wire::flow::FlowKey;

#[derive(Debug, Clone)]
enum Op {
    Insert(u8),
    InsertBurst(Vec<u8>),
    Lookup(u8, bool),
    Delete(u8),
    Packet(u8, bool),
    Advance(u8),
    Sweep,
    UdpTimeout(u8),
    Quiesce,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<u8>().prop_map(Op::Insert),
        1 => proptest::collection::vec(any::<u8>(), 1..80).prop_map(Op::InsertBurst),
        4 => (any::<u8>(), any::<bool>()).prop_map(|(k, r)| Op::Lookup(k, r)),
        2 => any::<u8>().prop_map(Op::Delete),
        2 => (any::<u8>(), any::<bool>()).prop_map(|(k, r)| Op::Packet(k, r)),
        1 => (0u8..20).prop_map(Op::Advance),
        1 => Just(Op::Sweep),
        1 => (1u8..60).prop_map(Op::UdpTimeout),
        2 => Just(Op::Quiesce),
    ]
}

const KEYS: u8 = 64;

fn key(k: u8) -> FlowKey {
    let k = k % KEYS;
    FlowKey::v4(
        Ipv4Addr::new(10, 0, 0, k),
        Ipv4Addr::new(10, 1, 0, 1),
        17,
        1000 + u16::from(k),
        53,
    )
}

/// What the model knows of a pair, keyed by its forward key index.
struct Pair {
    action: Action,
    last: u32,
}

/// Checks one pair insert's outcome against the model and applies it; `full` records a
/// refusal for lack of room.
fn insert_outcome(
    model: &mut HashMap<u8, Pair>,
    k: u8,
    res: Result<(), InsertError>,
    now: u32,
    full: &mut bool,
) -> Result<(), TestCaseError> {
    match res {
        Ok(()) => {
            prop_assert!(!model.contains_key(&k), "inserted a duplicate");
            model.insert(
                k,
                Pair {
                    action: Action::allow(u32::from(k)),
                    last: now,
                },
            );
        }
        Err(InsertError::Exists) => prop_assert!(model.contains_key(&k)),
        Err(InsertError::Full) => {
            prop_assert!(!model.contains_key(&k));
            *full = true;
        }
        Err(e) => prop_assert!(false, "unexpected {e}"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn table_matches_model(ops in proptest::collection::vec(op(), 1..300)) {
        let mut cfg = FlowTableConfig::with_capacity(45);
        cfg.full_policy = FullPolicy::Refuse;
        cfg.timeouts = Timeouts { udp: 30, ..Timeouts::default() };
        let t = FlowTable::new(cfg).unwrap();
        let mut r = t.reader().unwrap();
        let mut model: HashMap<u8, Pair> = HashMap::new();
        let mut now = 0u32;
        let mut full_seen = false;
        let mut udp_timeout = 30;
        for op in ops {
            match op {
                Op::Insert(k) => {
                    let (k, f) = (k % KEYS, key(k));
                    let action = Action::allow(u32::from(k));
                    let res = r.insert_pair(&f, &f.reversed(), action, action, Generations::default(), now);
                    insert_outcome(&mut model, k, res.map(|_| ()), now, &mut full_seen)?;
                }
                Op::InsertBurst(ks) => {
                    let pairs: Vec<NewPair> = ks
                        .iter()
                        .map(|&k| {
                            let (f, action) = (key(k), Action::allow(u32::from(k % KEYS)));
                            NewPair { fwd: f, rev: f.reversed(), fwd_action: action, rev_action: action, first_packet: None }
                        })
                        .collect();
                    let mut results = Vec::new();
                    r.insert_pairs(&pairs, Generations::default(), now, |i, res| results.push((i, res.map(|_| ()))));
                    prop_assert_eq!(results.iter().map(|r| r.0).collect::<Vec<_>>(), (0..ks.len()).collect::<Vec<_>>());
                    // In order, each as if inserted alone.
                    for (i, res) in results {
                        insert_outcome(&mut model, ks[i] % KEYS, res, now, &mut full_seen)?;
                    }
                }
                Op::Lookup(k, rev) => {
                    let (k, f) = (k % KEYS, key(k));
                    let q = if rev { f.reversed() } else { f };
                    let got = r.lookup(&q, q.hash());
                    prop_assert_eq!(got.is_some(), model.contains_key(&k));
                    if let Some(id) = got {
                        prop_assert_eq!(r.flow(id).key(), q);
                        prop_assert_eq!(r.flow(id).action(), model[&k].action);
                        let back = r.flow(id).reverse().unwrap();
                        let other = if rev { f } else { f.reversed() };
                        prop_assert_eq!(r.lookup(&other, other.hash()).map(|i| i.index()), Some(back));
                    }
                }
                Op::Delete(k) => {
                    let (k, f) = (k % KEYS, key(k));
                    if let Some(id) = r.lookup(&f, f.hash()) {
                        prop_assert_eq!(r.delete(id, |_| {}), 2);
                        prop_assert!(model.remove(&k).is_some());
                    } else {
                        prop_assert!(!model.contains_key(&k));
                    }
                }
                Op::Packet(k, rev) => {
                    let (k, f) = (k % KEYS, key(k));
                    let q = if rev { f.reversed() } else { f };
                    if let Some(id) = r.lookup(&q, q.hash()) {
                        r.flow(id).record(64, now, 0);
                        model.get_mut(&k).unwrap().last = now;
                    }
                }
                Op::Advance(d) => now += u32::from(d),
                Op::Sweep => {
                    let rep = r.sweep(now, usize::MAX, |_| {});
                    let before = model.len();
                    model.retain(|_, p| now - p.last <= udp_timeout);
                    prop_assert_eq!(rep.aged, 2 * (before - model.len()));
                }
                Op::UdpTimeout(secs) => {
                    udp_timeout = u32::from(secs);
                    let mut live = t.config().live_options();
                    live.timeouts.udp = udp_timeout;
                    t.set_live_options(live).unwrap();
                }
                Op::Quiesce => r.quiescent(),
            }
            prop_assert_eq!(t.stats().entries as usize, 2 * model.len());
        }
        // A refusal only happens when the table is genuinely crowded.
        if full_seen {
            prop_assert!(t.stats().full_refusals > 0);
        }
    }
}
