//! The table itself: buckets of slot words, hot and cold entry arrays, and the reader
//! handle through which every operation goes.

use crate::sync::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use core::fmt;
use std::marker::PhantomData;

use crossbeam_utils::CachePadded;
use wire::flow::FlowKey;

use crate::action::{Action, Generations, Verdict};
use crate::config::{ConfigError, FlowTableConfig, FullPolicy, LiveCell, LiveOptions};
use crate::epoch::Epochs;
use crate::hold::{HoldPool, ParkResult, Ticket};
use crate::stats::{Counters, FlowTableStats, bump};
use hugemem::table_of;

/// Most keys one burst call looks up.
pub const MAX_BURST: usize = 64;

/// How many keys ahead of the one being compared a burst lookup has its home line in
/// flight. Issuing all 64 prefetches before the first compare left the compares to run
/// after the memory had gone quiet; keeping some ahead overlaps them with the fetches.
/// Measured on 1M-flow hits (docs/flow.md): 16 ahead for plain lookups, 32 for counted
/// ones, which also fetch each hit's counters line.
const LOOKAHEAD: usize = 16;
const LOOKAHEAD_COUNTED: usize = 32;

/// Slots per bucket: 15 slot words and the insert bit fill one cache line.
const SLOTS: usize = 15;
/// Slots in use from which an insert goes to the emptier of its key's two buckets instead
/// of the first. Always first bucket, the table refuses its first flow at about 44% of its
/// slots (a bucket pair both full); spilling from 11 at about 82%, with only 2% of the keys
/// in their second bucket at half load (docs/flow.md).
const SPILL_AT: usize = 11;
const NO_FLOW: u32 = u32::MAX;

// Slot word: 2-bit state, 30 low bits. VALID and CLAIMED carry the key's signature
// (never 0); DEAD carries the retirement epoch stamp; CLAIMED|0 marks a delete in progress.
const EMPTY: u32 = 0;
const CLAIMED: u32 = 1 << 30;
const VALID: u32 = 2 << 30;
const DEAD: u32 = 3 << 30;
const STATE_MASK: u32 = 3 << 30;
const LOW_MASK: u32 = (1 << 30) - 1;

/// Set in the last key word of a published entry (the key uses only its low 16 bits), so a
/// lookup that compares the whole key at the key's home slot has also checked that the
/// entry is live, without reading the bucket.
const LIVE: u64 = 1 << 63;
/// The bits of the last key word that are the key's.
const KEY5_MASK: u64 = 0xffff;
/// In the last key word of a home slot, whoever occupies it: how many keys whose home it is
/// live elsewhere (their home was taken when they were inserted), in two counts: in the
/// slot after the home (0 or 1), and anywhere else. While both are zero, a key not at its
/// home is absent, so most misses also read one line; while only the first is not, the
/// slot after the home is the one place left to look, a line that shares the home's page,
/// so the bucket's line (another page walk) is fetched only for keys displaced further.
const NEXT_ONE: u64 = 1 << 16;
const NEXT_MASK: u64 = 0xf << 16;
const FAR_ONE: u64 = 1 << 20;
const FAR_MASK: u64 = 0xff << 20;
/// Beside the far count, a guess: the slot in the home's bucket of the last key displaced
/// beyond the next slot ([`SLOTS`] when it went to its second bucket). While the count is
/// one the guess is most likely right, and a lookup reads that key line directly, in the
/// home's page, instead of the bucket's line and then the entry's. Deletes leave it, so it
/// can be stale: a lookup that does not find the key there searches the buckets.
const GUESS_SHIFT: u32 = 28;
const GUESS_MASK: u64 = 0xf << GUESS_SHIFT;
/// The displaced counts and the guess, which belong to the slot, not to its occupant.
const DISPLACED_MASK: u64 = 0xffff << 16;
/// In the last key word, fixed for the entry's life: a held flow's hold ticket (31 bits).
const HOLD_SHIFT: u32 = 32;
const HOLD_MASK: u64 = 0x7fff_ffff << HOLD_SHIFT;

/// What a key's home slot says about the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AtHome {
    /// The key is there, published.
    Hit,
    /// The key is in the table only if it is there: nothing with this home lives elsewhere.
    Absent,
    /// Not there; only the slot after the home can hold it.
    Next,
    /// Not there; look in the slot after the home if `next`, then at the home bucket's
    /// slot `guess` if there is one, then in the buckets.
    Elsewhere { next: bool, guess: Option<usize> },
}

// Bucket control word.
const LOCKED: u32 = 1;
/// Sticky: some key whose first bucket this is lives in its second bucket. Until it is
/// set, lookups and duplicate checks never touch the second bucket's cache line.
const OVERFLOWED: u32 = 2;

// Cold state word: TCP flags, held, and above them the counter drains.
const ST_TCP_MASK: u32 = 0xff;
const ST_HELD: u32 = 1 << 8;
const ST_DRAIN_SHIFT: u32 = 9;

// The counter word a packet adds to with one locked add: packets above ACC_PACKET_SHIFT,
// bytes below. Every ACC_DRAIN_AT packets the packet that reaches that count moves them
// out: their bytes into the wide byte counter, one more drain into the state word. Flows
// thus count 2^23 drains of 2^23 packets, 2^46 packets (OpenContrail's vRouter keeps 40
// bits), and bytes to 2^64. Between drains the byte field takes at most 2^23 packets of at
// most 2^16 bytes (larger ones add their bytes to the wide counter directly): 2^39 of its
// 2^40.
const ACC_PACKET_SHIFT: u32 = 40;
const ACC_ONE_PACKET: u64 = 1 << ACC_PACKET_SHIFT;
const ACC_BYTES_MASK: u64 = ACC_ONE_PACKET - 1;
/// Small under test and loom, so tests reach the drain.
#[cfg(not(any(test, loom)))]
const ACC_DRAIN_AT: u64 = 1 << 23;
#[cfg(any(test, loom))]
const ACC_DRAIN_AT: u64 = 1 << 3;
const ACC_MAX_PACKET_BYTES: u32 = 0xffff;

// The owner's counter word: the owner (the inserting reader's id plus one, fixed for the
// entry's life; 0 for none) in the top 7 bits, then 7 bits of packets and 18 of bytes,
// kept with a plain load and store. Every OWN_FLUSH_AT packets, or before the byte field
// could overflow, one locked add moves them into `acc`.
const OWN_OWNER_SHIFT: u32 = 25;
const OWN_OWNER_MASK: u32 = 0x7f << OWN_OWNER_SHIFT;
const OWN_PACKET_SHIFT: u32 = 18;
const OWN_PACKET_MASK: u32 = 0x7f;
const OWN_BYTES_MASK: u32 = (1 << OWN_PACKET_SHIFT) - 1;
#[cfg(not(any(test, loom)))]
const OWN_FLUSH_AT: u32 = 128;
#[cfg(any(test, loom))]
const OWN_FLUSH_AT: u32 = 4;
/// Bytes past which the owner's word is flushed (small under test, so tests reach it).
#[cfg(not(any(test, loom)))]
const OWN_FLUSH_BYTES: u32 = OWN_BYTES_MASK - ACC_MAX_PACKET_BYTES;
#[cfg(any(test, loom))]
const OWN_FLUSH_BYTES: u32 = 100_000;
const TCP_FIN: u32 = 0x01;
const TCP_RST: u32 = 0x04;

#[repr(C, align(64))]
#[derive(Default)]
struct Bucket {
    /// [`LOCKED`] while an insert of a key whose first bucket this is runs; [`OVERFLOWED`]
    /// once such a key has gone to its second bucket.
    ctrl: AtomicU32,
    slots: [AtomicU32; SLOTS],
}

/// The line a lookup touches: key (with [`LIVE`] while published), action and generations.
#[repr(C, align(64))]
#[derive(Default)]
struct Hot {
    key: [AtomicU64; 6],
    action: AtomicU64,
    gens: AtomicU64,
}

/// Two entries' key lines followed by their counters (three cache lines). An entry's two
/// lines then share a 4 KiB page (all but 3 entries in 128), so a hit on a table far
/// beyond the TLB's reach costs one page walk, not two: on the development VM two random
/// lines per key cost 28-31 ns apart and 20-22 ns within one page (see docs/flow.md).
#[repr(C, align(64))]
#[derive(Default)]
struct EntryPair {
    hot: [Hot; 2],
    cold: [Cold; 2],
}

#[cfg(not(loom))]
const _: () = assert!(size_of::<EntryPair>() == 3 * 64);

/// The line a packet's accounting touches.
#[repr(C, align(32))]
#[derive(Default)]
struct Cold {
    /// Recent packets and bytes counted by readers other than the owner, one locked add
    /// per packet (see [`ACC_PACKET_SHIFT`]), and the owner's flushes.
    acc: AtomicU64,
    /// Bytes drained out of `acc`.
    bytes: AtomicU64,
    reverse: AtomicU32,
    last_seen: AtomicU32,
    state: AtomicU32,
    /// The owner and its recent packets and bytes (see [`OWN_PACKET_SHIFT`]): with
    /// receive-side scaling a flow's packets arrive at one worker, the one that inserted
    /// it, and it counts them without a locked instruction.
    own: AtomicU32,
}

impl Cold {
    /// How a packet (or none) of `bytes` is counted: (add to `acc`, add to `bytes`).
    #[inline]
    fn split(packet: bool, bytes: u32) -> (u64, u64) {
        let one = if packet { ACC_ONE_PACKET } else { 0 };
        if bytes <= ACC_MAX_PACKET_BYTES {
            (one | u64::from(bytes), 0)
        } else {
            (one, u64::from(bytes))
        }
    }

    /// Adds packets and bytes to `acc` with one locked add.
    #[inline]
    fn add(&self, add: u64) {
        let old = self.acc.fetch_add(add, Ordering::Relaxed);
        if old >> ACC_PACKET_SHIFT < ACC_DRAIN_AT && (old + add) >> ACC_PACKET_SHIFT >= ACC_DRAIN_AT {
            self.drain(old + add);
        }
    }

    /// Counts a packet in the owner's word `w` (`bytes` at most [`ACC_MAX_PACKET_BYTES`]).
    /// Only the owner writes it, so a load and a store lose nothing.
    #[inline]
    fn add_owned(&self, w: u32, bytes: u32) {
        let owner = w & OWN_OWNER_MASK;
        let packets = (w >> OWN_PACKET_SHIFT & OWN_PACKET_MASK) + 1;
        let total = (w & OWN_BYTES_MASK) + bytes;
        if packets < OWN_FLUSH_AT && total <= OWN_FLUSH_BYTES {
            self.own
                .store(owner | packets << OWN_PACKET_SHIFT | total, Ordering::Relaxed);
        } else {
            self.add(u64::from(packets) << ACC_PACKET_SHIFT | u64::from(total));
            // Release: a reader that sees the word emptied sees the add above.
            self.own.store(owner, Ordering::Release);
        }
    }

    /// Moves [`ACC_DRAIN_AT`] packets and all bytes out of `acc`, given `reached`, the
    /// word as the add that took its packets from below that count to it or past left it.
    /// Only that add sees the crossing, and nobody sees another until a subtraction takes
    /// the count below it again, so each crossing drains once. Adds in between stay in
    /// `acc`, or are drained here too if they alone reach the count.
    #[cold]
    fn drain(&self, mut reached: u64) {
        loop {
            let bytes = reached & ACC_BYTES_MASK;
            self.bytes.fetch_add(bytes, Ordering::Relaxed);
            self.state.fetch_add(1 << ST_DRAIN_SHIFT, Ordering::Relaxed);
            let take = ACC_DRAIN_AT << ACC_PACKET_SHIFT | bytes;
            // Release: a reader that sees the word drained sees the two adds above.
            reached = self.acc.fetch_sub(take, Ordering::Release) - take;
            if reached >> ACC_PACKET_SHIFT < ACC_DRAIN_AT {
                return;
            }
        }
    }
}

/// A new flow and its reverse, for [`Reader::insert_pairs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewPair {
    /// The first packet's direction.
    pub fwd: FlowKey,
    /// The reply direction.
    pub rev: FlowKey,
    /// What the forward flow does.
    pub fwd_action: Action,
    /// What the reverse flow does.
    pub rev_action: Action,
    /// The packet that creates the pair, as (bytes, TCP flags): counted in the forward
    /// flow as it is written, which spares the counters' atomic adds on a new flow. `None`
    /// counts nothing.
    pub first_packet: Option<(u32, u8)>,
}

/// Why an insert did not install a flow. Each is counted in [`FlowTableStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertError {
    /// The key is already present (look it up again).
    Exists,
    /// Both candidate buckets are full (after eviction, if configured, the next attempt may
    /// succeed).
    Full,
    /// The flow's VRF is at its quota.
    Quota,
    /// Every hold record is in use.
    HoldLimit,
}

impl fmt::Display for InsertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InsertError::Exists => "flow already present",
            InsertError::Full => "flow table full",
            InsertError::Quota => "VRF flow quota reached",
            InsertError::HoldLimit => "too many held flows",
        })
    }
}

impl std::error::Error for InsertError {}

/// The concurrent flow table. Share it by reference (or `Arc`) between workers; each
/// worker operates through its own [`Reader`].
pub struct FlowTable {
    buckets: Box<[Bucket]>,
    entries: Box<[EntryPair]>,
    index: BucketIndex,
    /// The creation options; the live ones among them are only the first values of `live`.
    cfg: FlowTableConfig,
    live: LiveCell,
    epochs: Epochs,
    holds: HoldPool,
    counters: Counters,
    vrf_counts: Box<[AtomicU32]>,
    vrf_refusals: Box<[AtomicU64]>,
    sweep_cursor: CachePadded<AtomicUsize>,
}

/// A flow found or installed by a reader; valid until that reader's next
/// [`Reader::quiescent`] (the borrow checker enforces it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowId<'r> {
    idx: u32,
    _reader: PhantomData<&'r ()>,
}

impl FlowId<'_> {
    /// Slot index, stable for the flow's life (for dumps and logs).
    pub const fn index(self) -> u32 {
        self.idx
    }
}

/// Everything about one flow at one instant, for `show flows`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowSnapshot {
    /// Slot index.
    pub index: u32,
    /// The key.
    pub key: FlowKey,
    /// Cached action.
    pub action: Action,
    /// Snapshot generations the action came from.
    pub generations: Generations,
    /// Packets counted.
    pub packets: u64,
    /// Bytes counted.
    pub bytes: u64,
    /// Last time a packet was counted.
    pub last_seen: u32,
    /// Slot index of the reverse flow.
    pub reverse: Option<u32>,
    /// TCP flags seen on this direction.
    pub tcp_flags: u8,
}

/// What one [`Reader::sweep`] call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SweepReport {
    /// Slots visited.
    pub visited: usize,
    /// Flows removed for idleness.
    pub aged: usize,
    /// Retired slots made empty (their grace period is over).
    pub reclaimed: usize,
}

/// Whether a slot word is taken by a flow, published (VALID) or being installed (CLAIMED).
#[inline(always)]
fn in_use(w: u32) -> bool {
    matches!(w & STATE_MASK, VALID | CLAIMED)
}

/// Indexes of the set bits, lowest first.
#[inline]
fn bits(mut m: u64) -> impl Iterator<Item = usize> {
    core::iter::from_fn(move || {
        (m != 0).then(|| {
            let i = m.trailing_zeros() as usize;
            m &= m - 1;
            i
        })
    })
}

/// Flows a successful pair insert installed: one when the key is its own reverse.
fn entries((f, r): (FlowId<'_>, FlowId<'_>)) -> u64 {
    if f == r { 1 } else { 2 }
}

/// `x % n` for the table's bucket count `n` without a division (Lemire's fastmod: the
/// fraction `x / n` in 64 fixed-point bits, times `n`): two multiplies, where a mask would
/// need a power of two. Every bit of `x` counts, as in a division: the high bits of a
/// multiply alone put structured keys (one port counting up) in a few buckets.
#[derive(Clone, Copy)]
struct BucketIndex {
    n: u64,
    /// `ceil(2^64 / n)`.
    m: u64,
}

impl BucketIndex {
    fn new(n: usize) -> Self {
        let n = n as u64;
        BucketIndex { n, m: u64::MAX / n + 1 }
    }

    #[inline(always)]
    fn of(self, x: u32) -> usize {
        ((u128::from(self.m.wrapping_mul(u64::from(x))) * u128::from(self.n)) >> 64) as usize
    }
}

/// Bucket pair and signature of a hash. The low half picks the first bucket, the high half
/// the second and the signature, so the three are independent.
#[inline(always)]
fn locate(hash: u64, index: BucketIndex) -> (usize, usize, u32) {
    let b1 = index.of(hash as u32);
    let mut b2 = index.of((hash >> 32) as u32);
    if b2 == b1 {
        // The bucket count is even, so the pair's other bucket is in range.
        b2 = b1 ^ 1;
    }
    let sig = ((hash >> 34) as u32 & LOW_MASK).max(1);
    (b1, b2, sig)
}

/// Whether a key line's first five words are `words`' (the sixth carries flags and is
/// compared by the caller). One test of the words' differences ORed together, not a
/// branch per word: a hit reads all five anyway, and the fewer branches and live
/// registers leave the burst loop's state in registers.
#[inline(always)]
fn first_words_equal(k: &[AtomicU64; 6], words: &[u64; 6]) -> bool {
    (0..5).fold(0, |d, i| d | (k[i].load(Ordering::Relaxed) ^ words[i])) == 0
}

/// [`FlowTable::at_home`] on the home entry's key line.
#[inline(always)]
fn at_home_line(line: &Hot, words: &[u64; 6]) -> AtHome {
    let k = &line.key;
    let w5 = k[5].load(Ordering::Acquire);
    if w5 & (LIVE | KEY5_MASK) == words[5] | LIVE && first_words_equal(k, words) {
        AtHome::Hit
    } else if w5 & (NEXT_MASK | FAR_MASK) == 0 {
        AtHome::Absent
    } else if w5 & FAR_MASK == 0 {
        AtHome::Next
    } else {
        let slot = ((w5 & GUESS_MASK) >> GUESS_SHIFT) as usize;
        AtHome::Elsewhere {
            next: w5 & NEXT_MASK != 0,
            guess: (w5 & FAR_MASK == FAR_ONE && slot < SLOTS).then_some(slot),
        }
    }
}

/// The key's home slot in its first bucket, from hash bits the signature does not use and
/// that keys of one bucket have in any combination (the bucket is their low half modulo
/// the bucket count). Inserts try it first, so most lookups are answered by the one line of
/// entry `b1 * SLOTS + home`.
#[inline(always)]
fn home(hash: u64) -> usize {
    (((hash >> 24) & 0xff) as usize * SLOTS) >> 8
}

/// The slot after entry `idx`'s in its bucket, round: where an insert that found its home
/// taken most likely went.
#[inline(always)]
fn next_slot(idx: usize) -> usize {
    let slot = idx % SLOTS;
    idx - slot + if slot + 1 == SLOTS { 0 } else { slot + 1 }
}

/// The entry index of slot `slot` in the bucket of entry `idx`.
#[inline(always)]
fn in_bucket_of(idx: usize, slot: usize) -> usize {
    idx - idx % SLOTS + slot
}

/// A bucket's slot indexes from the key's home slot round.
#[inline(always)]
fn from_home(hash: u64) -> impl Iterator<Item = usize> {
    let h = home(hash);
    (h..SLOTS).chain(0..h)
}

impl FlowTable {
    /// Allocates the whole table. Fails with the offending field on a bad configuration.
    pub fn new(cfg: FlowTableConfig) -> Result<Self, ConfigError> {
        cfg.validate()?;
        // An even count: a bucket's pair partner `b ^ 1` exists, and the entries' pairs
        // of slots come out whole.
        let buckets = cfg.capacity.div_ceil(SLOTS).next_multiple_of(2);
        let slots = buckets * SLOTS;
        let quota_len = if cfg.vrf_quota.is_some() {
            cfg.quota_vrfs as usize
        } else {
            0
        };
        Ok(FlowTable {
            buckets: table_of(buckets),
            entries: table_of(slots / 2),
            index: BucketIndex::new(buckets),
            epochs: Epochs::new(cfg.max_readers),
            holds: HoldPool::new(cfg.max_held_flows, cfg.hold_packets_per_flow),
            counters: Counters::default(),
            vrf_counts: (0..quota_len).map(|_| AtomicU32::new(0)).collect(),
            vrf_refusals: (0..quota_len).map(|_| AtomicU64::new(0)).collect(),
            sweep_cursor: CachePadded::new(AtomicUsize::new(0)),
            live: LiveCell::new(cfg.live_options()),
            cfg,
        })
    }

    /// Number of flow slots.
    pub fn capacity(&self) -> usize {
        self.entries.len() * 2
    }

    /// Entry `idx`'s key line.
    #[inline(always)]
    fn hot(&self, idx: usize) -> &Hot {
        &self.entries[idx / 2].hot[idx % 2]
    }

    /// Entry `idx`'s counters.
    #[inline(always)]
    fn cold(&self, idx: usize) -> &Cold {
        &self.entries[idx / 2].cold[idx % 2]
    }

    /// Bytes allocated per flow slot (bucket share, hot line, cold record).
    pub const fn bytes_per_flow() -> usize {
        core::mem::size_of::<Hot>() + core::mem::size_of::<Cold>() + core::mem::size_of::<Bucket>() / SLOTS
    }

    /// The table's configuration: as built, with the live options as they are now.
    pub fn config(&self) -> FlowTableConfig {
        let live = self.live.get();
        FlowTableConfig {
            full_policy: live.full_policy,
            timeouts: live.timeouts,
            vrf_quota: live.vrf_quota,
            ..self.cfg.clone()
        }
    }

    /// Changes what the table does when full, its idle timeouts and its per-VRF quota while
    /// workers use it, for a reload that should not drop every flow. Each takes effect from
    /// the next insert or sweep step that reads it: new timeouts apply to flows already
    /// installed, and a quota lowered below a VRF's flows refuses that VRF's new flows
    /// until enough of the old ones end.
    ///
    /// A quota can be changed or removed, but not added to a table built without one: the
    /// per-VRF counts it needs are kept only from creation.
    ///
    /// ```
    /// use flow::{FlowTable, FlowTableConfig, FullPolicy};
    ///
    /// let table = FlowTable::new(FlowTableConfig::with_capacity(1 << 10)).unwrap();
    /// let mut options = table.config().live_options();
    /// options.full_policy = FullPolicy::Refuse;
    /// options.timeouts.udp = 120;
    /// table.set_live_options(options).unwrap();
    /// assert_eq!(table.config().timeouts.udp, 120);
    ///
    /// options.vrf_quota = Some(1000);
    /// let e = table.set_live_options(options).unwrap_err();
    /// assert_eq!(e.field, "vrf_quota");
    /// ```
    pub fn set_live_options(&self, options: LiveOptions) -> Result<(), ConfigError> {
        if options.vrf_quota.is_some() && self.vrf_counts.is_empty() {
            return Err(ConfigError {
                field: "vrf_quota",
                reason: "cannot be added to a running table built without one (its per-VRF counts start at creation)",
            });
        }
        self.live.set(options);
        Ok(())
    }

    /// Registers a reader (one per worker thread). `None` when `max_readers` are in use.
    pub fn reader(&self) -> Option<Reader<'_>> {
        Some(Reader::new(TableRef::Borrowed(self), self.epochs.register()?))
    }

    /// A reader that keeps the table alive itself, for a worker that owns its state
    /// (`'static`) rather than borrowing the table from a scope.
    pub fn shared_reader(self: &std::sync::Arc<Self>) -> Option<Reader<'static>> {
        let id = self.epochs.register()?;
        Some(Reader::new(TableRef::Shared(self.clone()), id))
    }

    /// Counters now.
    pub fn stats(&self) -> FlowTableStats {
        self.counters
            .snapshot(self.capacity() as u64, self.holds.in_use() as u64)
    }

    /// Flows and quota refusals of a VRF (zeros when quotas are off).
    pub fn vrf_usage(&self, vrf: u32) -> (u32, u64) {
        match self.quota_index(vrf) {
            Some(i) => (
                self.vrf_counts[i].load(Ordering::Relaxed),
                self.vrf_refusals[i].load(Ordering::Relaxed),
            ),
            None => (0, 0),
        }
    }

    fn quota_index(&self, vrf: u32) -> Option<usize> {
        (!self.vrf_counts.is_empty()).then(|| (vrf as usize).min(self.vrf_counts.len() - 1))
    }

    #[inline(always)]
    fn slot(&self, idx: usize) -> &AtomicU32 {
        &self.buckets[idx / SLOTS].slots[idx % SLOTS]
    }

    /// The key at `idx` equals `words`, live or not (the slot word says which).
    #[inline(always)]
    fn key_matches(&self, idx: usize, words: &[u64; 6]) -> bool {
        let k = &self.hot(idx).key;
        k[5].load(Ordering::Relaxed) & KEY5_MASK == words[5] && first_words_equal(k, words)
    }

    /// The one-line lookup at the key's home slot `idx`. The Acquire load of the last key
    /// word pairs with [`publish`](Self::publish)'s Release, so the other key words read
    /// are the publisher's (reuse waits for this reader's next quiescent point, see
    /// `retire`), and with the displaced count's increment, which comes before the
    /// displaced key is published.
    #[inline(always)]
    fn at_home(&self, idx: usize, words: &[u64; 6]) -> AtHome {
        at_home_line(self.hot(idx), words)
    }

    /// The entry index of the home slot of a key with this hash.
    #[inline(always)]
    fn home_index(&self, hash: u64) -> usize {
        locate(hash, self.index).0 * SLOTS + home(hash)
    }

    /// The home entry's index and its pair (whose key line, `pair.hot[idx % 2]`, it starts
    /// fetching): a hit then finds its counters in the same pair without indexing again.
    #[inline(always)]
    fn fetch_home(&self, hash: u64) -> (usize, &EntryPair) {
        let idx = self.home_index(hash);
        let pair = &self.entries[idx / 2];
        wire::prefetch(&pair.hot[idx % 2]);
        (idx, pair)
    }

    /// Counts `idx` in its key's home as displaced (`delta` 1) or no longer (`delta` -1),
    /// if it is not the home itself.
    fn displaced(&self, idx: usize, hash: u64, delta: i8) {
        let h = self.home_index(hash);
        if h == idx {
            return;
        }
        let k5 = &self.hot(h).key[5];
        let one = if idx == next_slot(h) { NEXT_ONE } else { FAR_ONE };
        if delta < 0 {
            k5.fetch_sub(one, Ordering::Relaxed);
        } else if one == NEXT_ONE {
            k5.fetch_add(one, Ordering::Relaxed);
        } else {
            let guess = if idx / SLOTS == h / SLOTS { idx % SLOTS } else { SLOTS } as u64;
            let _ = k5.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
                Some(((w & !GUESS_MASK) + FAR_ONE) | (guess << GUESS_SHIFT))
            });
        }
    }

    /// Finds the key in bucket `b` among slots whose word satisfies `state_ok`.
    #[inline]
    fn find_in(&self, b: usize, words: &[u64; 6], state_ok: impl Fn(u32) -> bool) -> Option<usize> {
        self.find_and_count(b, words, state_ok).0
    }

    /// [`find_in`](Self::find_in), and how many of the bucket's slots are in use (VALID
    /// or CLAIMED) in the same pass over its words, for an insert's choice of bucket.
    #[inline(always)]
    fn find_and_count(&self, b: usize, words: &[u64; 6], state_ok: impl Fn(u32) -> bool) -> (Option<usize>, usize) {
        // The slot words first, as a mask, in a loop with no branches; then the keys of the
        // few candidates (each read after its slot word's Acquire load).
        let bucket = &self.buckets[b];
        let (mut candidates, mut used) = (0u64, 0);
        for (j, slot) in bucket.slots.iter().enumerate() {
            let w = slot.load(Ordering::Acquire);
            candidates |= u64::from(state_ok(w)) << j;
            used += usize::from(in_use(w));
        }
        let found = bits(candidates)
            .map(|j| b * SLOTS + j)
            .find(|&idx| self.key_matches(idx, words));
        (found, used)
    }

    #[inline]
    fn find(&self, words: &[u64; 6], hash: u64) -> Option<usize> {
        let at_home = self.home_index(hash);
        match self.at_home(at_home, words) {
            AtHome::Hit => Some(at_home),
            AtHome::Absent => None,
            AtHome::Next => self.found_at(next_slot(at_home), words),
            AtHome::Elsewhere { next, guess } => next
                .then(|| self.found_at(next_slot(at_home), words))
                .flatten()
                .or_else(|| guess.and_then(|g| self.found_at(in_bucket_of(at_home, g), words)))
                .or_else(|| self.find_in_buckets(words, hash)),
        }
    }

    /// `idx` if the key is published there (the home's one-line test, valid at any entry).
    #[inline(always)]
    fn found_at(&self, idx: usize, words: &[u64; 6]) -> Option<usize> {
        (self.at_home(idx, words) == AtHome::Hit).then_some(idx)
    }

    /// The search through the slot words, for a key not at its home slot.
    #[inline]
    fn find_in_buckets(&self, words: &[u64; 6], hash: u64) -> Option<usize> {
        let (b1, b2, sig) = locate(hash, self.index);
        let valid = |w| w == VALID | sig;
        self.find_in(b1, words, valid)
            .or_else(|| self.find_second(b1, b2, words, valid))
    }

    /// Searches the second bucket, only if the first has ever overflowed into it.
    #[inline]
    fn find_second(&self, b1: usize, b2: usize, words: &[u64; 6], state_ok: impl Fn(u32) -> bool) -> Option<usize> {
        if self.buckets[b1].ctrl.load(Ordering::Acquire) & OVERFLOWED == 0 {
            return None;
        }
        self.find_in(b2, words, state_ok)
    }

    fn lock(&self, b: usize) {
        let c = &self.buckets[b].ctrl;
        while c.fetch_or(LOCKED, Ordering::Acquire) & LOCKED != 0 {
            crate::sync::spin();
        }
    }

    /// A read-modify-write although a plain Release store would do (the holder is the only
    /// writer of the word's other bits): loom cannot check that variant (a minimal model
    /// of a `fetch_or` spin lock released by a plain store exceeds its branch limit), and
    /// one locked instruction per insert is not worth an unchecked protocol.
    fn unlock(&self, b: usize) {
        self.buckets[b].ctrl.fetch_and(!LOCKED, Ordering::Release);
    }

    /// Prefetches the slot an insert of a key with this hash will most likely claim (the
    /// first free one from its home), so the insert's writes do not each wait for memory in
    /// turn.
    #[inline]
    fn prefetch_free_slot(&self, hash: u64) {
        let b = locate(hash, self.index).0;
        let bucket = &self.buckets[b];
        if let Some(j) = from_home(hash).find(|&j| bucket.slots[j].load(Ordering::Relaxed) & STATE_MASK != VALID) {
            wire::prefetch(self.hot(b * SLOTS + j));
            wire::prefetch(self.cold(b * SLOTS + j));
        }
    }

    /// Claims a free slot of bucket `b` for a key with this hash and signature `sig`,
    /// trying its home slot first.
    fn claim(&self, b: usize, hash: u64, sig: u32) -> Option<usize> {
        let bucket = &self.buckets[b];
        for j in from_home(hash) {
            let w = bucket.slots[j].load(Ordering::Acquire);
            let free = w == EMPTY || (w & STATE_MASK == DEAD && self.epochs.reusable(w & LOW_MASK));
            if free
                && bucket.slots[j]
                    .compare_exchange(w, CLAIMED | sig, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return Some(b * SLOTS + j);
            }
        }
        None
    }

    /// Installs a key unpublished (state CLAIMED), owned by `owner` (a reader's owner
    /// bits), with `first` (bytes, TCP flags) counted if given: the caller publishes or
    /// abandons it.
    #[allow(clippy::too_many_arguments)]
    fn reserve(
        &self,
        owner: u32,
        key: &FlowKey,
        hash: u64,
        action: Action,
        gens: Generations,
        now: u32,
        hold: Option<Ticket>,
        first: Option<(u32, u8)>,
    ) -> Result<usize, InsertError> {
        let words = key.to_words();
        let (b1, _, _) = locate(hash, self.index);
        self.lock(b1);
        let result = self.reserve_locked(&words, key.vrf, hash, now);
        if let Ok(idx) = result {
            let h = self.hot(idx);
            for (slot, w) in h.key[..5].iter().zip(words) {
                slot.store(w, Ordering::Relaxed);
            }
            // A read-modify-write: the displaced count in this word is not the entry's, and
            // removals of displaced keys change it without this bucket's lock.
            let ticket = u64::from(hold.unwrap_or(0)) << HOLD_SHIFT;
            let _ = h.key[5].fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
                Some(w & DISPLACED_MASK | words[5] | ticket)
            });
            // Before the key is published: a reader that could find it must know to look.
            self.displaced(idx, hash, 1);
            h.action.store(action.pack(), Ordering::Relaxed);
            h.gens.store(gens.pack(), Ordering::Relaxed);
            let c = self.cold(idx);
            let (bytes, tcp) = first.unwrap_or_default();
            let (acc, wide) = Cold::split(first.is_some(), bytes);
            c.acc.store(acc, Ordering::Relaxed);
            c.bytes.store(wide, Ordering::Relaxed);
            c.reverse.store(NO_FLOW, Ordering::Relaxed);
            c.last_seen.store(now, Ordering::Relaxed);
            let held = if hold.is_some() { ST_HELD } else { 0 };
            c.state.store(held | u32::from(tcp), Ordering::Relaxed);
            c.own.store(owner, Ordering::Relaxed);
        }
        // The unlock publishes the key to the next inserter's duplicate check.
        self.unlock(b1);
        result
    }

    fn reserve_locked(&self, words: &[u64; 6], vrf: u32, hash: u64, now: u32) -> Result<usize, InsertError> {
        let (b1, b2, sig) = locate(hash, self.index);
        // A flow being installed by another worker (CLAIMED with our signature) counts too.
        // One load per slot decides both states: a slot going CLAIMED -> VALID between two
        // separate passes would be missed by both (loom found exactly that).
        let present = |w| w == VALID | sig || w == CLAIMED | sig;
        let (found, in_first) = self.find_and_count(b1, words, present);
        if found.or_else(|| self.find_second(b1, b2, words, present)).is_some() {
            return Err(InsertError::Exists);
        }
        // A table built with a quota counts every VRF's flows, also while the quota is
        // lifted ([`FlowTable::set_live_options`]), so the counts stay right.
        let quota = self.quota_index(vrf);
        if let Some(i) = quota
            && self.vrf_counts[i].fetch_add(1, Ordering::AcqRel) >= self.live.quota().unwrap_or(u32::MAX)
        {
            self.vrf_counts[i].fetch_sub(1, Ordering::AcqRel);
            self.vrf_refusals[i].fetch_add(1, Ordering::Relaxed);
            bump(&self.counters.quota_refusals);
            return Err(InsertError::Quota);
        }
        let second = || {
            let idx = self.claim(b2, hash, sig)?;
            // Before the key is published: a reader that finds it must know to look.
            self.buckets[b1].ctrl.fetch_or(OVERFLOWED, Ordering::AcqRel);
            Some(idx)
        };
        // The second bucket's count, read without its lock, is only a preference: the
        // claim decides.
        let in_second = || {
            let slots = &self.buckets[b2].slots;
            slots.iter().filter(|w| in_use(w.load(Ordering::Relaxed))).count()
        };
        let spill = in_first >= SPILL_AT && in_second() < in_first;
        let claimed = if spill {
            second().or_else(|| self.claim(b1, hash, sig))
        } else {
            self.claim(b1, hash, sig).or_else(second)
        };
        match claimed {
            Some(idx) => Ok(idx),
            None => {
                if let Some(i) = quota {
                    self.vrf_counts[i].fetch_sub(1, Ordering::AcqRel);
                }
                if self.live.full_policy() == FullPolicy::EvictExpiredOrClosing {
                    self.evict_one(b1, b2, now);
                }
                bump(&self.counters.full_refusals);
                Err(InsertError::Full)
            }
        }
    }

    /// Makes a reserved entry visible: to one-line lookups by its [`LIVE`] bit, to bucket
    /// scans by its slot word (both Release: the entry's other writes come first).
    fn publish(&self, idx: usize) {
        self.hot(idx).key[5].fetch_or(LIVE, Ordering::Release);
        let w = self.slot(idx).load(Ordering::Relaxed);
        self.slot(idx).store(VALID | (w & LOW_MASK), Ordering::Release);
    }

    /// Counts `n` published flows (once per call, so a burst of inserts adds once).
    fn installed(&self, n: u64) {
        if n > 0 {
            self.counters.inserts.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Gives back a reserved slot nobody has seen, reserved for a key with this hash.
    fn abandon(&self, idx: usize, hash: u64) {
        self.displaced(idx, hash, -1);
        if let Some(i) = self.quota_index(self.vrf_of(idx)) {
            self.vrf_counts[i].fetch_sub(1, Ordering::AcqRel);
        }
        self.slot(idx).store(EMPTY, Ordering::Release);
    }

    /// The hold record of a held entry.
    fn hold_of(&self, idx: usize) -> Ticket {
        ((self.hot(idx).key[5].load(Ordering::Relaxed) & HOLD_MASK) >> HOLD_SHIFT) as Ticket
    }

    fn vrf_of(&self, idx: usize) -> u32 {
        (self.hot(idx).key[4].load(Ordering::Relaxed) >> 32) as u32
    }

    /// Removes one published flow. The slot is reused only after a grace period.
    fn retire(&self, idx: usize, dropped: &mut impl FnMut(u32)) -> bool {
        let s = self.slot(idx);
        let w = s.load(Ordering::Acquire);
        if w & STATE_MASK != VALID
            || s.compare_exchange(w, CLAIMED, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return false;
        }
        if let Some(i) = self.quota_index(self.vrf_of(idx)) {
            self.vrf_counts[i].fetch_sub(1, Ordering::AcqRel);
        }
        let c = self.cold(idx);
        if c.state.fetch_and(!ST_HELD, Ordering::AcqRel) & ST_HELD != 0 {
            self.holds.release(self.hold_of(idx), dropped);
        }
        // Unreachable for one-line lookups too. The stamp's Release orders this clear before
        // any reader announces a later epoch, so a reader that still saw the entry live did
        // so before its next quiescent point, which the slot's reuse waits for.
        let k = &self.hot(idx).key;
        k[5].fetch_and(!LIVE, Ordering::Relaxed);
        let key = FlowKey::from_words(core::array::from_fn(|i| k[i].load(Ordering::Relaxed)));
        self.displaced(idx, key.hash(), -1);
        // Only now is the slot unreachable, so the stamp orders after every reader's find.
        let stamp = self.epochs.retire_stamp();
        s.store(DEAD | stamp, Ordering::Release);
        bump(&self.counters.deletes);
        true
    }

    /// Retires a flow and, if it still points back, its reverse.
    fn retire_pair(&self, idx: usize, dropped: &mut impl FnMut(u32)) -> usize {
        let rev = self.cold(idx).reverse.load(Ordering::Acquire);
        let mut n = usize::from(self.retire(idx, dropped));
        if rev != NO_FLOW && self.cold(rev as usize).reverse.load(Ordering::Acquire) == idx as u32 {
            n += usize::from(self.retire(rev as usize, dropped));
        }
        n
    }

    fn is_valid(&self, idx: usize) -> bool {
        self.slot(idx).load(Ordering::Acquire) & STATE_MASK == VALID
    }

    /// Last activity and "closing" state of a flow together with its reverse.
    fn pair_activity(&self, idx: usize) -> (u32, bool, bool) {
        let c = self.cold(idx);
        let mut last = c.last_seen.load(Ordering::Relaxed);
        let mut state = c.state.load(Ordering::Relaxed);
        let rev = c.reverse.load(Ordering::Acquire);
        if rev != NO_FLOW && self.is_valid(rev as usize) {
            let r = self.cold(rev as usize);
            let rl = r.last_seen.load(Ordering::Relaxed);
            if (rl.wrapping_sub(last) as i32) > 0 {
                last = rl;
            }
            state |= r.state.load(Ordering::Relaxed) & ST_TCP_MASK;
        }
        (last, state & (TCP_FIN | TCP_RST) != 0, state & ST_HELD != 0)
    }

    fn timeout(&self, idx: usize, closing: bool, held: bool) -> u32 {
        let t = self.live.timeouts();
        if held {
            return t.hold;
        }
        match (self.hot(idx).key[5].load(Ordering::Relaxed) & 0xff) as u8 {
            // An SCTP association ended (ABORT, SHUTDOWN COMPLETE) closes as TCP does.
            6 | 132 if closing => t.tcp_closing,
            6 => t.tcp_established,
            17 => t.udp,
            132 => t.sctp,
            1 | 58 => t.icmp,
            _ => t.other,
        }
    }

    fn expired(&self, idx: usize, now: u32) -> (bool, bool, u32) {
        let (last, closing, held) = self.pair_activity(idx);
        // Workers' clocks differ a little: a last-seen "in the future" counts as now.
        let idle = (now.wrapping_sub(last) as i32).max(0) as u32;
        (idle > self.timeout(idx, closing, held), closing, idle)
    }

    fn evict_one(&self, b1: usize, b2: usize, now: u32) {
        let victim = [b1, b2]
            .into_iter()
            .flat_map(|b| (0..SLOTS).map(move |j| b * SLOTS + j))
            .filter(|&idx| self.is_valid(idx))
            .filter_map(|idx| {
                let (expired, closing, idle) = self.expired(idx, now);
                (expired || closing).then_some((idle, idx))
            })
            .max();
        if let Some((_, idx)) = victim {
            // Parked packets of an evicted held flow cannot be held anywhere: they were
            // bounded by the hold pool, and an evicted flow is never held (holds expire
            // first), so nothing is dropped here.
            let n = self.retire_pair(idx, &mut |_| {});
            self.counters.evictions.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
}

/// A worker's handle on the table. Every operation goes through one; ids it hands out
/// live until its next [`quiescent`](Self::quiescent).
pub struct Reader<'t> {
    table: TableRef<'t>,
    id: usize,
    /// This reader as the owner of the entries it inserts, in the owner's word's bits; 0
    /// (owns nothing) past the first 127 readers.
    owner: u32,
}

enum TableRef<'t> {
    Borrowed(&'t FlowTable),
    Shared(std::sync::Arc<FlowTable>),
}

impl Drop for Reader<'_> {
    fn drop(&mut self) {
        self.t().epochs.unregister(self.id);
    }
}

impl<'t> Reader<'t> {
    /// Announces that this reader holds no flow ids: call it between bursts. Retired slots
    /// are reused only after every reader has done so.
    #[inline]
    pub fn quiescent(&mut self) {
        self.t().epochs.quiescent(self.id);
    }

    /// The table.
    #[inline]
    pub fn table(&self) -> &FlowTable {
        self.t()
    }

    #[inline]
    fn t(&self) -> &FlowTable {
        match &self.table {
            TableRef::Borrowed(t) => t,
            TableRef::Shared(t) => t,
        }
    }

    fn new(table: TableRef<'t>, id: usize) -> Self {
        let owner = if id < (OWN_OWNER_MASK >> OWN_OWNER_SHIFT) as usize {
            (id as u32 + 1) << OWN_OWNER_SHIFT
        } else {
            0
        };
        Reader { table, id, owner }
    }

    fn id(&self, idx: usize) -> FlowId<'_> {
        FlowId {
            idx: idx as u32,
            _reader: PhantomData,
        }
    }

    /// Looks up one key with its precomputed [`FlowKey::hash`].
    #[inline]
    pub fn lookup(&self, key: &FlowKey, hash: u64) -> Option<FlowId<'_>> {
        self.t().find(&key.to_words(), hash).map(|i| self.id(i))
    }

    /// Looks up a burst of keys with precomputed hashes (at most [`MAX_BURST`]; extra keys
    /// are ignored). Fills `out` and returns the hit mask (bit i set when `keys[i]` hit).
    ///
    /// Passes overlap the cache misses: compare each key at its home entry, whose line was
    /// requested some keys earlier (16; 32 for a counted lookup); most hits and misses end
    /// there, one line each. For the rest, prefetch the first bucket, scan its slot words
    /// for the signature and prefetch the candidates, then compare.
    #[inline]
    pub fn lookup_burst<'r>(&'r self, keys: &[FlowKey], hashes: &[u64], out: &mut [Option<FlowId<'r>>]) -> u64 {
        self.lookup_burst_with::<false>(keys, hashes, out)
    }

    /// [`lookup_burst`](Self::lookup_burst) for a caller that counts a packet in each hit
    /// right after: each hit's counters line is fetched as soon as the hit is known, so
    /// with a table far larger than the cache those misses overlap the remaining key
    /// compares instead of all starting after them.
    #[inline]
    pub fn lookup_burst_counted<'r>(&'r self, keys: &[FlowKey], hashes: &[u64], out: &mut [Option<FlowId<'r>>]) -> u64 {
        self.lookup_burst_with::<true>(keys, hashes, out)
    }

    fn lookup_burst_with<'r, const COUNTED: bool>(
        &'r self,
        keys: &[FlowKey],
        hashes: &[u64],
        out: &mut [Option<FlowId<'r>>],
    ) -> u64 {
        let t = self.t();
        let n = keys.len().min(hashes.len()).min(out.len()).min(MAX_BURST);
        let mut homes = [0usize; MAX_BURST];
        let mut pairs = [&t.entries[0]; MAX_BURST];
        let ahead = if COUNTED { LOOKAHEAD_COUNTED } else { LOOKAHEAD };
        for i in 0..n.min(ahead) {
            (homes[i], pairs[i]) = t.fetch_home(hashes[i]);
        }
        let mut mask = 0u64;
        // Keys to look for in the slot after their home, at their home's guess (`cand`),
        // and in their buckets.
        let (mut next, mut guessed, mut rest) = (0u64, 0u64, 0u64);
        let mut cand = [usize::MAX; MAX_BURST];
        for i in 0..n {
            if i + ahead < n {
                (homes[i + ahead], pairs[i + ahead]) = t.fetch_home(hashes[i + ahead]);
            }
            out[i] = None;
            let at_home = homes[i];
            match at_home_line(&pairs[i].hot[at_home % 2], &keys[i].to_words()) {
                AtHome::Hit => {
                    if COUNTED {
                        wire::prefetch(&pairs[i].cold[at_home % 2]);
                    }
                    out[i] = Some(self.id(at_home));
                    mask |= 1 << i;
                }
                AtHome::Absent => {}
                AtHome::Next => {
                    next |= 1 << i;
                    wire::prefetch(t.hot(next_slot(at_home)));
                }
                AtHome::Elsewhere { next: n, guess } => {
                    if n {
                        next |= 1 << i;
                        wire::prefetch(t.hot(next_slot(at_home)));
                    }
                    if let Some(slot) = guess {
                        cand[i] = in_bucket_of(at_home, slot);
                        guessed |= 1 << i;
                        wire::prefetch(t.hot(cand[i]));
                    } else {
                        rest |= 1 << i;
                        // Inserts fill the first bucket to `SPILL_AT` slots before they
                        // consider the second, so at half load 98% of the keys are in
                        // their first bucket: prefetching the second would waste bandwidth.
                        wire::prefetch(&t.buckets[locate(hashes[i], t.index).0]);
                    }
                }
            }
        }
        // Records key `i` as found at entry `idx`.
        let mut found = |i: usize, idx: usize| {
            if COUNTED {
                wire::prefetch(t.cold(idx));
            }
            out[i] = Some(self.id(idx));
            mask |= 1 << i;
        };
        for i in bits(next) {
            if let Some(at) = t.found_at(next_slot(homes[i]), &keys[i].to_words()) {
                found(i, at);
                guessed &= !(1 << i);
                rest &= !(1 << i);
            }
        }
        for i in bits(guessed) {
            if let Some(at) = t.found_at(cand[i], &keys[i].to_words()) {
                found(i, at);
            } else {
                // A stale guess: the buckets have it, if anything does.
                rest |= 1 << i;
                wire::prefetch(&t.buckets[locate(hashes[i], t.index).0]);
            }
        }
        for i in bits(rest) {
            let (b1, b2, sig) = locate(hashes[i], t.index);
            let want = VALID | sig;
            let overflowed = t.buckets[b1].ctrl.load(Ordering::Acquire) & OVERFLOWED != 0;
            let buckets = if overflowed { &[b1, b2][..] } else { &[b1][..] };
            let first = buckets.iter().find_map(|&b| {
                let bucket = &t.buckets[b];
                (0..SLOTS)
                    .find(|&j| bucket.slots[j].load(Ordering::Acquire) == want)
                    .map(|j| b * SLOTS + j)
            });
            if let Some(idx) = first {
                wire::prefetch(t.hot(idx));
            }
            cand[i] = first.unwrap_or(usize::MAX);
        }
        for i in bits(rest) {
            if cand[i] == usize::MAX {
                continue;
            }
            let words = keys[i].to_words();
            // A signature collision sends us to the full two-bucket search.
            let hit = if t.key_matches(cand[i], &words) {
                Some(cand[i])
            } else {
                t.find_in_buckets(&words, hashes[i])
            };
            if let Some(idx) = hit {
                found(i, idx);
            }
        }
        mask
    }

    /// Installs a forward flow and its reverse in one call, linked to each other. If the
    /// reverse cannot be installed, neither is.
    pub fn insert_pair(
        &self,
        fwd: &FlowKey,
        rev: &FlowKey,
        fwd_action: Action,
        rev_action: Action,
        gens: Generations,
        now: u32,
    ) -> Result<(FlowId<'_>, FlowId<'_>), InsertError> {
        let hashes = [fwd.hash(), rev.hash()];
        let r = self.insert_pair_hashed(fwd, rev, hashes, fwd_action, rev_action, gens, now, None);
        self.t().installed(r.map_or(0, entries));
        r
    }

    /// Installs new flows with their reverses ([`Reader::insert_pair`]
    /// for each), calling `done(i, result)` for `pairs[i]`. Like [`Reader::lookup_burst`] it
    /// works in bursts: all buckets are fetched first, then the slots the inserts will
    /// claim, so a burst of new flows waits for memory about once instead of four times
    /// per flow.
    pub fn insert_pairs<'r>(
        &'r self,
        pairs: &[NewPair],
        gens: Generations,
        now: u32,
        mut done: impl FnMut(usize, Result<(FlowId<'r>, FlowId<'r>), InsertError>),
    ) {
        for (c, chunk) in pairs.chunks(MAX_BURST).enumerate() {
            let mut hashes = [[0u64; 2]; MAX_BURST];
            for (h, p) in hashes.iter_mut().zip(chunk) {
                *h = [p.fwd.hash(), p.rev.hash()];
            }
            self.insert_pairs_hashed(chunk, &hashes[..chunk.len()], gens, now, |i, r| {
                done(c * MAX_BURST + i, r)
            });
        }
    }

    /// [`insert_pairs`](Self::insert_pairs) with each pair's [`FlowKey::hash`]es, forward
    /// and reverse, already computed (as a pipeline has them from its lookups and routes).
    /// Only the pairs that have hashes are installed.
    pub fn insert_pairs_hashed<'r>(
        &'r self,
        pairs: &[NewPair],
        hashes: &[[u64; 2]],
        gens: Generations,
        now: u32,
        mut done: impl FnMut(usize, Result<(FlowId<'r>, FlowId<'r>), InsertError>),
    ) {
        let t = self.t();
        let n = pairs.len().min(hashes.len());
        for (c, (chunk, chunk_hashes)) in pairs[..n].chunks(MAX_BURST).zip(hashes.chunks(MAX_BURST)).enumerate() {
            for (p, h) in chunk.iter().zip(chunk_hashes) {
                debug_assert_eq!(*h, [p.fwd.hash(), p.rev.hash()], "the pair's own hashes");
                for &x in h {
                    wire::prefetch(&t.buckets[locate(x, t.index).0]);
                }
            }
            for &x in chunk_hashes.iter().flatten() {
                t.prefetch_free_slot(x);
            }
            let mut installed = 0;
            for (i, (p, &h)) in chunk.iter().zip(chunk_hashes).enumerate() {
                let r =
                    self.insert_pair_hashed(&p.fwd, &p.rev, h, p.fwd_action, p.rev_action, gens, now, p.first_packet);
                installed += r.map_or(0, entries);
                done(c * MAX_BURST + i, r);
            }
            t.installed(installed);
        }
    }

    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn insert_pair_hashed(
        &self,
        fwd: &FlowKey,
        rev: &FlowKey,
        [fwd_hash, rev_hash]: [u64; 2],
        fwd_action: Action,
        rev_action: Action,
        gens: Generations,
        now: u32,
        first: Option<(u32, u8)>,
    ) -> Result<(FlowId<'_>, FlowId<'_>), InsertError> {
        let t = self.t();
        let f = t.reserve(self.owner, fwd, fwd_hash, fwd_action, gens, now, None, first)?;
        if fwd == rev {
            t.cold(f).reverse.store(f as u32, Ordering::Relaxed);
            t.publish(f);
            return Ok((self.id(f), self.id(f)));
        }
        let r = match t.reserve(self.owner, rev, rev_hash, rev_action, gens, now, None, None) {
            Ok(r) => r,
            Err(e) => {
                t.abandon(f, fwd_hash);
                return Err(e);
            }
        };
        t.cold(f).reverse.store(r as u32, Ordering::Relaxed);
        t.cold(r).reverse.store(f as u32, Ordering::Relaxed);
        t.publish(r);
        t.publish(f);
        Ok((self.id(f), self.id(r)))
    }

    /// Installs a flow in the *hold* state: the first packet of a new connection does
    /// this, so later packets find it and park instead of all taking the slow path.
    pub fn insert_held(&self, key: &FlowKey, now: u32) -> Result<FlowId<'_>, InsertError> {
        let t = self.t();
        let Some(ticket) = t.holds.acquire() else {
            bump(&t.counters.hold_refusals);
            return Err(InsertError::HoldLimit);
        };
        match t.reserve(
            self.owner,
            key,
            key.hash(),
            Action::HOLD,
            Generations::default(),
            now,
            Some(ticket),
            None,
        ) {
            Ok(idx) => {
                t.publish(idx);
                t.installed(1);
                Ok(self.id(idx))
            }
            Err(e) => {
                t.holds.release(ticket, &mut |_| {});
                Err(e)
            }
        }
    }

    /// Parks a packet (a frame id) on a held flow.
    pub fn park(&self, id: FlowId<'_>, token: u32) -> ParkResult {
        let t = self.t();
        let c = t.cold(id.idx as usize);
        if c.state.load(Ordering::Acquire) & ST_HELD == 0 {
            return ParkResult::Resolved;
        }
        let r = t.holds.park(t.hold_of(id.idx as usize), token);
        if r == ParkResult::Overflow {
            bump(&t.counters.hold_overflows);
        }
        r
    }

    /// Ends the hold of a flow with the slow path's decision: sets its action, installs
    /// and links the reverse flow, and hands the parked packets to `parked` in arrival
    /// order. If the reverse cannot be installed the forward flow is still resolved.
    #[allow(clippy::too_many_arguments)]
    pub fn resolve(
        &self,
        id: FlowId<'_>,
        rev: &FlowKey,
        action: Action,
        rev_action: Action,
        gens: Generations,
        now: u32,
        mut parked: impl FnMut(u32),
    ) -> Result<FlowId<'_>, InsertError> {
        let t = self.t();
        let f = id.idx as usize;
        let reverse = t.reserve(self.owner, rev, rev.hash(), rev_action, gens, now, None, None);
        if let Ok(r) = reverse {
            t.cold(r).reverse.store(f as u32, Ordering::Relaxed);
            t.cold(f).reverse.store(r as u32, Ordering::Release);
            t.publish(r);
            t.installed(1);
        }
        let h = t.hot(f);
        h.gens.store(gens.pack(), Ordering::Release);
        h.action.store(action.pack(), Ordering::Release);
        let c = t.cold(f);
        if c.state.fetch_and(!ST_HELD, Ordering::AcqRel) & ST_HELD != 0 {
            t.holds.release(t.hold_of(f), &mut parked);
        }
        reverse.map(|r| self.id(r))
    }

    /// Deletes a flow and its reverse. Packets parked on a held flow go to `dropped`.
    /// Returns how many entries were removed (0 if another worker was first).
    pub fn delete(&self, id: FlowId<'_>, mut dropped: impl FnMut(u32)) -> usize {
        self.t().retire_pair(id.idx as usize, &mut dropped)
    }

    /// Access to a flow's fields and counters.
    #[inline]
    pub fn flow<'r>(&'r self, id: FlowId<'r>) -> FlowRef<'r> {
        let (table, idx) = (self.t(), id.idx as usize);
        FlowRef {
            table,
            idx,
            hot: table.hot(idx),
            cold: table.cold(idx),
            owner: self.owner,
            _reader: PhantomData,
        }
    }

    /// Ages flows: visits `budget` slots from a shared cursor (so workers and a
    /// maintenance thread can share the job), removes pairs idle longer than their
    /// timeout, and empties retired slots whose grace period is over. Packets parked on an
    /// expired held flow go to `dropped`.
    pub fn sweep(&self, now: u32, budget: usize, mut dropped: impl FnMut(u32)) -> SweepReport {
        let t = self.t();
        let total = t.capacity();
        let budget = budget.min(total);
        let start = t.sweep_cursor.fetch_add(budget, Ordering::Relaxed) % total;
        let mut report = SweepReport {
            visited: budget,
            ..Default::default()
        };
        for k in 0..budget {
            let idx = (start + k) % total;
            let s = t.slot(idx);
            let w = s.load(Ordering::Acquire);
            match w & STATE_MASK {
                VALID if t.expired(idx, now).0 => {
                    let n = t.retire_pair(idx, &mut dropped);
                    t.counters.aged.fetch_add(n as u64, Ordering::Relaxed);
                    report.aged += n;
                }
                DEAD if t.epochs.reusable(w & LOW_MASK)
                    && s.compare_exchange(w, EMPTY, Ordering::AcqRel, Ordering::Relaxed)
                        .is_ok() =>
                {
                    report.reclaimed += 1;
                }
                _ => {}
            }
        }
        report
    }

    /// Calls `f` with a snapshot of every live flow (for `show flows`). Concurrent changes
    /// may or may not be seen; every snapshot is of a live entry.
    pub fn for_each(&self, mut f: impl FnMut(FlowSnapshot)) {
        for idx in 0..self.t().capacity() {
            if self.t().is_valid(idx) {
                f(self.flow(self.id(idx)).snapshot());
            }
        }
    }

    /// Deletes every live flow whose key `pick` chooses, each with its reverse, so their
    /// next packets are decided afresh (an operator's "clear flows"). Returns the entries
    /// deleted and the held flows left: a held flow's parked packets belong to the worker
    /// that parked them. Passes a quiescent point every 1,024 slots, so that slots retired
    /// meanwhile can be reused during a long clear.
    pub fn delete_where(&mut self, mut pick: impl FnMut(&FlowKey) -> bool) -> (usize, usize) {
        let (mut deleted, mut held) = (0, 0);
        for idx in 0..self.t().capacity() {
            if idx % 1024 == 0 {
                self.quiescent();
            }
            if !self.t().is_valid(idx) {
                continue;
            }
            let flow = self.flow(self.id(idx));
            if !pick(&flow.key()) {
                continue;
            }
            if flow.is_held() {
                held += 1;
            } else {
                // Neither a flow that is not held nor its reverse has parked packets.
                deleted += self.t().retire_pair(idx, &mut |_| {});
            }
        }
        (deleted, held)
    }
}

/// A flow's fields and counters, read and written atomically.
pub struct FlowRef<'r> {
    table: &'r FlowTable,
    idx: usize,
    // Both halves indexed once, not on every field access.
    hot: &'r Hot,
    cold: &'r Cold,
    /// The owner bits of the reader it came from.
    owner: u32,
    _reader: PhantomData<&'r ()>,
}

impl<'r> FlowRef<'r> {
    /// The key.
    pub fn key(&self) -> FlowKey {
        let k = &self.hot.key;
        FlowKey::from_words(core::array::from_fn(|i| k[i].load(Ordering::Relaxed)))
    }
    /// Cached action.
    #[inline]
    pub fn action(&self) -> Action {
        Action::unpack(self.hot.action.load(Ordering::Acquire))
    }
    /// Replaces the action (re-evaluation after a generation change).
    pub fn set_action(&self, action: Action, gens: Generations) {
        self.hot.gens.store(gens.pack(), Ordering::Release);
        self.hot.action.store(action.pack(), Ordering::Release);
    }
    /// Generations the action was computed from.
    #[inline]
    pub fn generations(&self) -> Generations {
        Generations::unpack(self.hot.gens.load(Ordering::Acquire))
    }
    /// True while the slow path has not decided.
    pub fn is_held(&self) -> bool {
        self.action().verdict == Verdict::Hold
    }
    /// True while the flow is in the table (it may be deleted concurrently).
    pub fn is_live(&self) -> bool {
        self.table.is_valid(self.idx)
    }
    /// Slot index of the reverse flow.
    pub fn reverse(&self) -> Option<u32> {
        let r = self.cold.reverse.load(Ordering::Acquire);
        (r != NO_FLOW).then_some(r)
    }
    /// Counts a packet: packets, bytes, last-seen time and TCP flags (FIN/SYN/RST/ACK...).
    /// Through the reader that inserted the flow this takes no locked instruction.
    #[inline]
    pub fn record(&self, bytes: u32, now: u32, tcp_flags: u8) {
        let c = self.cold;
        let own = c.own.load(Ordering::Relaxed);
        if own & OWN_OWNER_MASK == self.owner && self.owner != 0 && bytes <= ACC_MAX_PACKET_BYTES {
            c.add_owned(own, bytes);
        } else {
            let (add, wide) = Cold::split(true, bytes);
            if wide != 0 {
                c.bytes.fetch_add(wide, Ordering::Relaxed);
            }
            c.add(add);
        }
        if c.last_seen.load(Ordering::Relaxed) != now {
            c.last_seen.store(now, Ordering::Relaxed);
        }
        let flags = u32::from(tcp_flags);
        if c.state.load(Ordering::Relaxed) & flags != flags {
            c.state.fetch_or(flags, Ordering::Relaxed);
        }
    }
    /// Packets counted. Read while another worker drains the flow's counter word (once
    /// every 2^23 packets) or its owner flushes its own word (every 128), this can be over
    /// by that many for a moment, never under.
    pub fn packets(&self) -> u64 {
        // An emptied owner's word brings its flush with it, and a counter word after a
        // drain the drain's other writes.
        let own = self.cold.own.load(Ordering::Acquire);
        let acc = self.cold.acc.load(Ordering::Acquire);
        let drains = u64::from(self.cold.state.load(Ordering::Relaxed) >> ST_DRAIN_SHIFT);
        drains * ACC_DRAIN_AT + (acc >> ACC_PACKET_SHIFT) + u64::from(own >> OWN_PACKET_SHIFT & OWN_PACKET_MASK)
    }
    /// Bytes counted (with the same caveat as [`packets`](Self::packets)).
    pub fn bytes(&self) -> u64 {
        let own = self.cold.own.load(Ordering::Acquire);
        let acc = self.cold.acc.load(Ordering::Acquire);
        self.cold.bytes.load(Ordering::Relaxed) + (acc & ACC_BYTES_MASK) + u64::from(own & OWN_BYTES_MASK)
    }
    /// Last time a packet was counted.
    pub fn last_seen(&self) -> u32 {
        self.cold.last_seen.load(Ordering::Relaxed)
    }
    /// TCP flags seen.
    pub fn tcp_flags(&self) -> u8 {
        (self.cold.state.load(Ordering::Relaxed) & ST_TCP_MASK) as u8
    }
    /// Everything at once.
    pub fn snapshot(&self) -> FlowSnapshot {
        FlowSnapshot {
            index: self.idx as u32,
            key: self.key(),
            action: self.action(),
            generations: self.generations(),
            packets: self.packets(),
            bytes: self.bytes(),
            last_seen: self.last_seen(),
            reverse: self.reverse(),
            tcp_flags: self.tcp_flags(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FlowTableConfig;
    use std::net::Ipv4Addr;

    fn key(n: u32) -> FlowKey {
        FlowKey::v4(Ipv4Addr::from(0x0a00_0000 + n), Ipv4Addr::new(192, 0, 2, 1), 17, 1, 2)
    }

    /// A flow and its reverse, both allowed, inserted by `r`.
    fn allowed_pair<'r>(r: &'r Reader<'_>, k: &FlowKey) -> FlowId<'r> {
        let allow = Action::allow(1);
        r.insert_pair(k, &k.reversed(), allow, allow, Generations::default(), 0)
            .unwrap()
            .0
    }

    #[test]
    fn the_bucket_index_is_the_remainder() {
        for n in [2, 4, 274, 139_812, 1 << 20, (1 << 28) - 2] {
            let index = BucketIndex::new(n);
            let mut x = 0x9e37_79b9u32;
            for edge in [0, 1, n as u32 - 1, n as u32, u32::MAX - 1, u32::MAX] {
                assert_eq!(index.of(edge), edge as usize % n, "{edge} % {n}");
            }
            for _ in 0..10_000 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                assert_eq!(index.of(x), x as usize % n, "{x} % {n}");
            }
        }
    }

    /// Flows that differ in one port only (a client's connections to one service, the
    /// pipeline bench's flows) spread over the buckets as random keys would: taking the
    /// high bits of a multiply instead of the remainder put up to 55 of these 2,000 keys
    /// in one bucket of 15.
    #[test]
    fn keys_that_differ_in_one_port_spread_over_the_buckets() {
        let index = BucketIndex::new(274);
        let mut per_bucket = vec![0; 274];
        for port in 0..1000 {
            let k = FlowKey::v4(Ipv4Addr::new(10, 0, 1, 0), Ipv4Addr::new(10, 0, 2, 2), 17, port, 1000);
            for k in [k, k.reversed()] {
                per_bucket[locate(k.hash(), index).0] += 1;
            }
        }
        let most = per_bucket.iter().max().unwrap();
        assert!(*most <= 15, "{most} keys in one bucket");
    }

    /// The inserting reader counts in its own word; another reader's packets take the
    /// shared word's locked add.
    #[test]
    fn the_inserting_reader_owns_the_counts() {
        let t = FlowTable::new(small()).unwrap();
        let (r, other) = (t.reader().unwrap(), t.reader().unwrap());
        let f = allowed_pair(&r, &key(1));
        let words = || {
            let c = t.cold(f.index() as usize);
            (
                c.own.load(Ordering::Relaxed) & !OWN_OWNER_MASK,
                c.acc.load(Ordering::Relaxed),
            )
        };
        r.flow(f).record(100, 0, 0);
        r.flow(f).record(200, 0, 0);
        assert_eq!(words(), (2 << OWN_PACKET_SHIFT | 300, 0));
        other.flow(f).record(50, 0, 0);
        assert_eq!(words(), (2 << OWN_PACKET_SHIFT | 300, ACC_ONE_PACKET | 50));
        assert_eq!((r.flow(f).packets(), other.flow(f).bytes()), (3, 350));
    }

    /// Counts stay exact across many drains of the counter word (every 8 packets under
    /// test) and flushes of the owner's word (every 4 packets or 100,000 bytes), with
    /// packets too large for either, and with the owner and another thread counting at
    /// once.
    #[test]
    fn counters_stay_exact_across_drains() {
        let t = FlowTable::new(small()).unwrap();
        let r = t.reader().unwrap();
        let k = key(1);
        let f = allowed_pair(&r, &k);
        let (mut packets, mut bytes) = (0u64, 0u64);
        for n in 0..100u32 {
            let b = match n {
                _ if n % 7 == 0 => 70_000 + n,
                _ if n % 5 == 0 => 60_000 + n,
                _ => 60 + n,
            };
            r.flow(f).record(b, n, 0);
            packets += 1;
            bytes += u64::from(b);
            assert_eq!((r.flow(f).packets(), r.flow(f).bytes()), (packets, bytes), "after {n}");
        }
        // This thread and one more (the table has two reader slots).
        std::thread::scope(|s| {
            s.spawn(|| {
                let r = t.reader().unwrap();
                let id = r.lookup(&k, k.hash()).unwrap();
                assert_eq!(id.index(), f.index());
                for _ in 0..50 {
                    r.flow(id).record(100, 0, 0);
                }
            });
            for _ in 0..50 {
                r.flow(f).record(100, 0, 0);
            }
        });
        assert_eq!(
            (r.flow(f).packets(), r.flow(f).bytes()),
            (packets + 100, bytes + 100 * 100)
        );
        assert_eq!(r.flow(f).snapshot().packets, packets + 100);
    }

    /// Inserts `k` as its own reverse; the forward entry's index.
    fn add(r: &Reader<'_>, k: &FlowKey) -> usize {
        r.insert_pair(k, k, Action::allow(1), Action::allow(1), Generations::default(), 0)
            .unwrap()
            .0
            .index() as usize
    }

    /// A burst lookup of `keys`: the hit mask and each key's entry index. The counted
    /// lookup must give the same answer.
    fn burst(r: &Reader<'_>, keys: &[FlowKey]) -> (u64, Vec<Option<usize>>) {
        let hashes: Vec<u64> = keys.iter().map(FlowKey::hash).collect();
        let mut out = vec![None; keys.len()];
        let mask = r.lookup_burst(keys, &hashes, &mut out);
        let mut counted = vec![None; keys.len()];
        assert_eq!(r.lookup_burst_counted(keys, &hashes, &mut counted), mask);
        assert_eq!(counted, out);
        let ids = out
            .iter()
            .map(|o| o.map(|id: FlowId<'_>| id.index() as usize))
            .collect();
        (mask, ids)
    }

    /// Four buckets, and every other pool small: Miri runs these tests.
    fn small() -> FlowTableConfig {
        let mut cfg = FlowTableConfig::with_capacity(4 * SLOTS);
        cfg.max_readers = 2;
        cfg.max_held_flows = 2;
        cfg.quota_vrfs = 2;
        cfg
    }

    /// A key goes to its home slot when it is free and is found there from one line; a
    /// key whose home is taken goes elsewhere, is counted at its home as displaced, and is
    /// still found, singly and in bursts, also after the home's occupant is deleted and
    /// the slot reused by another key. A key whose home counts no displaced keys is known
    /// absent from the home line alone.
    #[test]
    fn home_slots_first_and_the_bucket_scan_for_the_rest() {
        let t = FlowTable::new(small()).unwrap();
        let mut r = t.reader().unwrap();
        let home_of = |k: &FlowKey| t.home_index(k.hash());
        let at = |k: &FlowKey| t.at_home(home_of(k), &k.to_words());
        let same_home =
            |k: &FlowKey, from: u32| (from..).map(key).find(|c| c != k && home_of(c) == home_of(k)).unwrap();
        let a = key(1);
        let b = same_home(&a, 2);
        assert_eq!(at(&a), AtHome::Absent, "an empty table");
        assert_eq!(add(&r, &a), home_of(&a));
        assert_eq!((at(&a), at(&b)), (AtHome::Hit, AtHome::Absent));
        let b_at = add(&r, &b);
        assert_eq!(b_at, next_slot(home_of(&b)), "the home slot was taken");
        assert_eq!((at(&a), at(&b)), (AtHome::Hit, AtHome::Next));
        let absent = same_home(&a, 10_000);
        assert_eq!(
            burst(&r, &[a, b, absent, key(99_999)]),
            (0b0011, vec![Some(home_of(&a)), Some(b_at), None, None])
        );
        let id = r.lookup(&a, a.hash()).unwrap();
        assert_eq!(r.delete(id, |_| {}), 1);
        assert_eq!(at(&a), AtHome::Next, "deleted, and b still counts");
        assert_eq!(burst(&r, &[a, b]), (0b10, vec![None, Some(b_at)]));
        r.quiescent();
        let c = same_home(&a, 20_000);
        assert_eq!(
            add(&r, &c),
            home_of(&a),
            "the retired home slot is reused after the grace period"
        );
        assert_eq!(at(&b), AtHome::Next, "the count outlives the home's occupants");
        assert_eq!(
            burst(&r, &[a, b, c]),
            (0b110, vec![None, Some(b_at), Some(home_of(&a))])
        );
        let id = r.lookup(&b, b.hash()).unwrap();
        assert_eq!(r.delete(id, |_| {}), 1);
        assert_eq!(at(&b), AtHome::Absent, "no displaced key left");
        assert_eq!(r.flow(r.lookup(&c, c.hash()).unwrap()).key(), c);
    }

    /// A displaced key is looked for first in the slot after its home (where its insert
    /// most likely went), then in its buckets; a key deleted from that slot is not found
    /// there, while another key of the same home still counts as displaced. The home
    /// counts the two places apart: once only the slot after it holds a displaced key, no
    /// other slot is searched, and a key found nowhere else is found there.
    #[test]
    fn the_slot_after_the_home_is_tried_before_the_buckets() {
        let t = FlowTable::new(small()).unwrap();
        let mut r = t.reader().unwrap();
        let home_of = |k: &FlowKey| t.home_index(k.hash());
        let a = key(1);
        let [b, c] = [2, 20_000].map(|from| (from..).map(key).find(|k| home_of(k) == home_of(&a)).unwrap());
        assert_eq!(add(&r, &a), home_of(&a));
        assert_eq!(
            add(&r, &b),
            next_slot(home_of(&a)),
            "the first displaced key takes the next slot"
        );
        let at = |k: &FlowKey| t.at_home(home_of(k), &k.to_words());
        assert_eq!(at(&c), AtHome::Next, "before c is added");
        let c_at = add(&r, &c);
        assert!(c_at != home_of(&a) && c_at != next_slot(home_of(&a)));
        assert_eq!(
            at(&c),
            AtHome::Elsewhere {
                next: true,
                guess: Some(c_at % SLOTS)
            },
            "one displaced key is beyond the next slot, and the home knows where"
        );
        assert_eq!(
            burst(&r, &[a, b, c]),
            (0b111, vec![Some(home_of(&a)), Some(next_slot(home_of(&a))), Some(c_at)])
        );
        let id = r.lookup(&b, b.hash()).unwrap();
        assert_eq!(r.delete(id, |_| {}), 1);
        r.quiescent();
        // b's key words stay in its retired slot; only the live bit says it is gone.
        assert_eq!(burst(&r, &[b, c]), (0b10, vec![None, Some(c_at)]));
        let id = r.lookup(&c, c.hash()).unwrap();
        assert_eq!(r.delete(id, |_| {}), 1);
        r.quiescent();
        assert_eq!(at(&b), AtHome::Absent);
        assert_eq!(add(&r, &c), next_slot(home_of(&a)), "c takes the slot b left");
        assert_eq!(at(&b), AtHome::Next);
        assert_eq!(burst(&r, &[b, c]), (0b10, vec![None, Some(next_slot(home_of(&a)))]));
        assert_eq!(r.lookup(&c, c.hash()).map(|id| r.flow(id).key()), Some(c));
        assert_eq!(r.lookup(&b, b.hash()), None);
    }

    /// With one key of a home displaced beyond the next slot, the home's guess names its
    /// slot; a second such key moves the guess to itself, and once it is deleted the guess
    /// is stale while the count is one again: the first key is still found, through the
    /// buckets, singly and in bursts.
    #[test]
    fn a_stale_guess_falls_back_to_the_buckets() {
        let t = FlowTable::new(small()).unwrap();
        let mut r = t.reader().unwrap();
        let home_of = |k: &FlowKey| t.home_index(k.hash());
        let at = |k: &FlowKey| t.at_home(home_of(k), &k.to_words());
        let a = key(1);
        let [b, c, d] = [2, 20_000, 40_000].map(|from| (from..).map(key).find(|k| home_of(k) == home_of(&a)).unwrap());
        let [_, _, c_at, d_at] = [a, b, c, d].map(|k| add(&r, &k));
        assert_eq!(at(&a), AtHome::Hit);
        assert_eq!(
            at(&c),
            AtHome::Elsewhere {
                next: true,
                guess: None
            },
            "two keys beyond the next slot: no guess"
        );
        let id = r.lookup(&d, d.hash()).unwrap();
        assert_eq!(r.delete(id, |_| {}), 1);
        assert_eq!(
            at(&c),
            AtHome::Elsewhere {
                next: true,
                guess: Some(d_at % SLOTS)
            },
            "the guess still names the deleted key's slot"
        );
        assert_eq!(r.lookup(&c, c.hash()).map(|id| id.index() as usize), Some(c_at));
        assert_eq!(burst(&r, &[c, d]), (0b01, vec![Some(c_at), None]));
        r.quiescent();
        let e = (60_000..).map(key).find(|k| home_of(k) == home_of(&a)).unwrap();
        let e_at = add(&r, &e);
        assert_eq!(
            at(&e),
            AtHome::Elsewhere {
                next: true,
                guess: None
            }
        );
        assert_eq!(burst(&r, &[c, d, e]), (0b101, vec![Some(c_at), None, Some(e_at)]));
        let id = r.lookup(&c, c.hash()).unwrap();
        assert_eq!(r.delete(id, |_| {}), 1);
        assert_eq!(
            at(&e),
            AtHome::Elsewhere {
                next: true,
                guess: Some(e_at % SLOTS)
            },
            "the last key placed beyond the next slot is the one left"
        );
        assert_eq!(burst(&r, &[c, e]), (0b10, vec![None, Some(e_at)]));
    }

    /// A pair whose reverse cannot be installed gives its forward slot back, and the
    /// forward key's displaced count with it.
    #[test]
    fn an_abandoned_displaced_key_is_uncounted() {
        let mut cfg = small();
        cfg.vrf_quota = Some(2);
        let t = FlowTable::new(cfg).unwrap();
        let r = t.reader().unwrap();
        let home_of = |k: &FlowKey| t.home_index(k.hash());
        let a = key(1);
        let b = (2..).map(key).find(|c| home_of(c) == home_of(&a)).unwrap();
        let gens = Generations::default();
        r.insert_pair(&a, &a, Action::allow(1), Action::allow(1), gens, 0)
            .unwrap();
        let refused = r.insert_pair(&b, &b.reversed(), Action::allow(1), Action::allow(1), gens, 0);
        assert_eq!(refused, Err(InsertError::Quota), "the reverse is the VRF's third flow");
        assert_eq!(t.at_home(home_of(&b), &b.to_words()), AtHome::Absent);
        assert_eq!(r.lookup(&b, b.hash()), None);
    }
}
