//! The vRouter's flow cache: a fixed-capacity concurrent table of flows, shared by every
//! worker, with lock-free lookups.
//!
//! The first packet of a connection goes through policy and routing (the slow path); the
//! result is installed here as a forward flow and its reverse flow, and every later packet
//! of either direction is forwarded from one lookup.
//!
//! * **Layout** (see `docs/flow.md`): buckets of one cache line, 15 slot words of a 30-bit
//!   signature plus a 2-bit state; each key lives in two candidate buckets. Per flow: a
//!   64-byte hot line (key, action, generations), a 32-byte cold record (counters, reverse
//!   link, TCP state, last-seen) and a 4-byte slot word: 100 bytes, all allocated up front.
//! * **Concurrency**: lookups load slot words and key words atomically and never lock or
//!   wait. Inserts claim a slot by compare-and-swap; a per-bucket insert bit keeps two
//!   workers from installing the same key twice. Deleted slots are reused only after every
//!   registered [`Reader`] has passed a quiescent point (QSBR, as DPDK's `rte_hash` with
//!   RCU), so a reader never sees an entry torn or reused under it; the borrow checker
//!   enforces that no [`FlowId`] outlives its reader's next [`Reader::quiescent`].
//! * **Bursts**: [`Reader::lookup_burst`] hashes, prefetches buckets, then candidate
//!   entries, then compares, so the cache misses of a burst overlap.
//!
//! ```
//! use std::net::Ipv4Addr;
//! use flow::{Action, FlowTable, FlowTableConfig, Generations};
//! use wire::flow::FlowKey;
//!
//! let table = FlowTable::new(FlowTableConfig::with_capacity(1 << 16)).unwrap();
//! let mut reader = table.reader().unwrap();
//! let fwd = FlowKey::v4(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2), 6, 40000, 80);
//! let action = Action::allow(7);
//! let (f, _r) = reader.insert_pair(&fwd, &fwd.reversed(), action, action, Generations::default(), 0).unwrap();
//! assert_eq!(reader.flow(f).action(), action);
//! let hit = reader.lookup(&fwd.reversed(), fwd.reversed().hash()).unwrap();
//! assert_eq!(reader.flow(hit).reverse(), Some(f.index()));
//! reader.quiescent(); // between bursts: ids from before are gone
//! ```

mod action;
mod config;
mod epoch;
mod hold;
mod stats;
mod sync;
mod table;

pub use action::{Action, Generations, Verdict};
pub use config::{ConfigError, FlowTableConfig, FullPolicy, LiveOptions, Timeouts};
pub use hold::{MAX_PARKED, ParkResult};
pub use stats::FlowTableStats;
pub use table::{FlowId, FlowRef, FlowSnapshot, FlowTable, InsertError, MAX_BURST, NewPair, Reader, SweepReport};
