//! IP fragments, followed and made.
//!
//! Following (IPv4 and IPv6): only the first fragment carries the ports, so the first one
//! is classified like any packet and leaves its ports here; later fragments of the same
//! datagram borrow them and so hit the first one's flow and its decision.
//! Per worker, fixed size, open addressing over a small table; entries age out after
//! [`FRAG_TIMEOUT_SECS`] and are dropped when the last fragment passes. A later fragment
//! with no entry (it overtook its first) waits for it in [`Orphans`], briefly; one whose
//! first never comes (or aged out) is a counted drop.
//!
//! Making ([`split_ipv4`]): an IPv4 packet that may be fragmented (no don't-fragment)
//! and is too big for its egress is split, as RFC 791 and RFC 1812 ask of a router.
//! Tunnels split the inner packet, so that every fragment is a whole tunnel packet that
//! the far end decapsulates without reassembling anything.

use std::time::Instant;

use crate::frames::{FramePool, Place};
use crate::port::Pkt;
use crate::stats::DropReason;

/// Datagrams being followed at once, per worker.
pub const FRAG_SLOTS: usize = 1024;
/// Seconds a datagram's entry lives after its first fragment.
pub const FRAG_TIMEOUT_SECS: u64 = 2;

/// Identifies a datagram: VRF, addresses (IPv4 in the first 4 bytes), protocol, IP
/// identification (16 bits in IPv4, 32 in the IPv6 fragment header).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Key {
    pub(crate) vrf: u32,
    pub(crate) src: [u8; 16],
    pub(crate) dst: [u8; 16],
    pub(crate) proto: u8,
    pub(crate) ident: u32,
}

#[derive(Clone, Copy)]
struct Entry {
    key: Key,
    ports: (u16, u16),
    born: u64,
    /// Bytes of the datagram's fragmentable part seen so far, and its length once the
    /// last fragment told it (0 until then). The entry ends when all have passed, in
    /// whatever order they came: a fragment split again on the way may arrive after the
    /// datagram's last one.
    seen: u32,
    end: u32,
}

/// One worker's fragment table.
pub(crate) struct FragTable {
    slots: Box<[Option<Entry>]>,
    epoch: Instant,
}

/// How far a key probes before giving up.
const PROBE: usize = 8;

impl FragTable {
    pub(crate) fn new() -> Self {
        FragTable {
            slots: vec![None; FRAG_SLOTS].into_boxed_slice(),
            epoch: Instant::now(),
        }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_secs()
    }

    fn home(k: &Key) -> usize {
        let fold = |a: &[u8; 16]| {
            a.chunks(8)
                .fold(0u64, |h, c| h ^ u64::from_be_bytes(c.try_into().expect("8")))
        };
        let mut h = u64::from(k.vrf) ^ fold(&k.src) << 20 ^ fold(&k.dst);
        h ^= u64::from(k.ident) << 24 ^ u64::from(k.proto) << 56;
        h = h.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (h >> 32) as usize % FRAG_SLOTS
    }

    fn live(&self, e: &Option<Entry>, now: u64) -> bool {
        e.is_some_and(|e| now.saturating_sub(e.born) < FRAG_TIMEOUT_SECS)
    }

    /// The first slot of `key`'s probe sequence that `fits`.
    fn probe(&self, key: &Key, fits: impl Fn(&Option<Entry>) -> bool) -> Option<usize> {
        let h = Self::home(key);
        (0..PROBE).map(|p| (h + p) % FRAG_SLOTS).find(|&i| fits(&self.slots[i]))
    }

    /// The first fragment of datagram `key` passed with these ports, carrying `len`
    /// bytes of the datagram. `false` if the table is full around its slot (its later
    /// fragments will then be dropped).
    pub(crate) fn first(&mut self, key: Key, ports: (u16, u16), len: u32) -> bool {
        let now = self.now();
        let Some(i) = self.probe(&key, |s| !self.live(s, now) || s.is_some_and(|e| e.key == key)) else {
            return false;
        };
        self.slots[i] = Some(Entry {
            key,
            ports,
            born: now,
            seen: len,
            end: 0,
        });
        true
    }

    /// The ports of a later fragment's datagram; the fragment holds `len` bytes from
    /// byte `at`, and is the last one unless `more`. The entry ends once every byte up
    /// to the last fragment's end has passed.
    pub(crate) fn later(&mut self, key: Key, at: u32, len: u32, more: bool) -> Option<(u16, u16)> {
        let now = self.now();
        let i = self.probe(&key, |s| self.live(s, now) && s.is_some_and(|e| e.key == key))?;
        let slot = &mut self.slots[i];
        let e = slot.as_mut()?;
        let ports = e.ports;
        e.seen = e.seen.saturating_add(len);
        if !more {
            e.end = at + len;
        }
        if e.end != 0 && e.seen >= e.end {
            *slot = None;
        }
        Some(ports)
    }
}

/// Later fragments parked at once, per worker, waiting for their first.
pub const ORPHANS: usize = 64;
/// Seconds (on the whole-second flow clock) a later fragment waits for its first: 1 to 2.
pub const ORPHAN_SECS: u32 = 2;

/// Later fragments that came before their datagram's first (an underlay that hashes
/// fragments without their ports onto another path than the first can reorder them):
/// parked until the first passes, then handed back to follow it, or dropped when it does
/// not come in time. `T` is what the pipeline keeps of each.
pub(crate) struct Orphans<T> {
    parked: Vec<(Key, u32, T)>,
    ready: Vec<T>,
}

impl<T> Orphans<T> {
    pub(crate) fn new() -> Self {
        Orphans {
            parked: Vec::with_capacity(ORPHANS),
            ready: Vec::new(),
        }
    }

    /// Nothing parked and nothing ready.
    #[inline]
    pub(crate) fn is_idle(&self) -> bool {
        self.parked.is_empty() && self.ready.is_empty()
    }

    /// Parks `item`, a later fragment of datagram `key`, at `now`; gives it back if
    /// [`ORPHANS`] are parked already.
    pub(crate) fn park(&mut self, key: Key, now: u32, item: T) -> Result<(), T> {
        if self.parked.len() == ORPHANS {
            return Err(item);
        }
        self.parked.push((key, now, item));
        Ok(())
    }

    /// The first fragment of `key` passed: its parked fragments are ready, in the order
    /// they came.
    pub(crate) fn wake(&mut self, key: &Key) {
        let mut i = 0;
        while i < self.parked.len() {
            if self.parked[i].0 == *key {
                self.ready.push(self.parked.remove(i).2);
            } else {
                i += 1;
            }
        }
    }

    /// Takes the ready fragments into `into` (emptied first).
    pub(crate) fn take_ready(&mut self, into: &mut Vec<T>) {
        into.clear();
        std::mem::swap(into, &mut self.ready);
    }

    /// Hands `each` the fragments parked [`ORPHAN_SECS`] by `now` (all when `stopping`).
    pub(crate) fn expire(&mut self, now: u32, stopping: bool, mut each: impl FnMut(T)) {
        let mut i = 0;
        while i < self.parked.len() {
            if stopping || now.saturating_sub(self.parked[i].1) >= ORPHAN_SECS {
                each(self.parked.remove(i).2);
            } else {
                i += 1;
            }
        }
    }
}

/// Where one fragment's bytes sit: in its frame and in its datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Piece {
    /// The datagram's identification (16 bits in IPv4, 32 in the IPv6 fragment header).
    pub(crate) ident: u32,
    /// Offset in the frame where the header that is not fragmented ends: the IPv4
    /// header's end, or where the IPv6 fragment header starts.
    pub(crate) head: usize,
    /// Offset in the frame of the fragment's first byte of the fragmentable part.
    pub(crate) data: usize,
    /// IPv6: offset in the frame of the next-header field that names the fragment header
    /// (the fixed header's, or that of the extension header before it). `None` for IPv4,
    /// which has no fragment header.
    pub(crate) names: Option<usize>,
    /// Where those bytes go in the fragmentable part, and how many there are.
    pub(crate) at: u32,
    pub(crate) len: u32,
    /// More fragments follow (not the last one).
    pub(crate) more: bool,
}

/// Reads the fragment at `h.l3` of `frame` (parsed into `h`), whose IP bytes end at
/// `h.l3_end`.
pub(crate) fn piece(frame: &[u8], h: &wire::parse::Headers) -> Result<Piece, DropReason> {
    let (l3, end) = (usize::from(h.l3), usize::from(h.l3_end));
    match h.l3_kind {
        wire::parse::L3::Ipv4 => {
            let ip = frame.get(l3..l3 + 20).ok_or(DropReason::Malformed)?;
            let field = u16::from_be_bytes([ip[6], ip[7]]);
            let data = l3 + usize::from(ip[0] & 0xf) * 4;
            Ok(Piece {
                ident: u32::from(u16::from_be_bytes([ip[4], ip[5]])),
                head: data,
                data,
                names: None,
                at: u32::from(field & 0x1fff) * 8,
                len: end.saturating_sub(data) as u32,
                more: field & 0x2000 != 0,
            })
        }
        wire::parse::L3::Ipv6 => {
            let payload = frame.get(l3 + 40..end).ok_or(DropReason::Malformed)?;
            let walk = wire::ipv6ext::walk(payload, frame[l3 + 6].into()).map_err(|_| DropReason::Malformed)?;
            let header = payload
                .get(walk.fragment_end.wrapping_sub(8)..walk.fragment_end)
                .ok_or(DropReason::Malformed)?;
            let field = u16::from_be_bytes([header[2], header[3]]);
            Ok(Piece {
                ident: walk.ident,
                head: l3 + 40 + walk.fragment_end - 8,
                data: l3 + 40 + walk.fragment_end,
                names: Some(walk.fragment_after.map_or(l3 + 6, |at| l3 + 40 + at)),
                at: u32::from(field & !7),
                len: (payload.len() - walk.fragment_end) as u32,
                more: field & 1 != 0,
            })
        }
        _ => Err(DropReason::Unsupported),
    }
}

/// Splits the IPv4 packet at `l3` of `pkt` (behind `l3` bytes of link header) into
/// fragments of at most `mtu` IP bytes each: `pkt` becomes the first, and the others are
/// written into fresh frames of `pool`, each behind a copy of the link header, and pushed
/// onto `out` in order. Later fragments carry only the options whose copy flag is set.
/// A packet that already is a fragment keeps its offset and its more-fragments flag on
/// the last piece. `scratch` holds the original meanwhile (kept by the caller, so
/// splitting allocates nothing once it has grown).
///
/// Changes nothing and fails with `TooBig` when `mtu` leaves no room for eight bytes of
/// payload beside a header, `NoFreeFrame` when the pool cannot give every frame needed,
/// `Malformed` for a header that does not hold together.
pub(crate) fn split_ipv4(
    pool: &mut FramePool,
    pkt: &mut Pkt,
    l3: usize,
    mtu: u16,
    scratch: &mut Vec<u8>,
    out: &mut Vec<Pkt>,
) -> Result<(), DropReason> {
    let frame = pool.bytes_mut(pkt.addr, pkt.len as usize);
    let ip = frame.get(l3..l3 + 20).ok_or(DropReason::Malformed)?;
    let hl = usize::from(ip[0] & 0xf) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if ip[0] >> 4 != 4 || hl < 20 || total < hl || l3 + total > frame.len() {
        return Err(DropReason::Malformed);
    }
    scratch.clear();
    scratch.extend_from_slice(&frame[..l3 + total]);
    let orig = &scratch[..];
    let header = &orig[l3..l3 + hl];
    let field = u16::from_be_bytes([header[6], header[7]]);
    let (offset, more) = (usize::from(field & 0x1fff) * 8, field & 0x2000 != 0);
    // Later fragments' header: the fixed part, then the options marked copied (the high
    // bit of their type), padded with end-of-options to a multiple of four bytes.
    let mut later_header = [0u8; 60];
    later_header[..20].copy_from_slice(&header[..20]);
    let mut n = 20;
    let mut at = 20;
    while at < hl {
        match header[at] {
            0 => break,
            1 => at += 1,
            kind => {
                let len = usize::from(*header.get(at + 1).ok_or(DropReason::Malformed)?);
                if len < 2 || at + len > hl {
                    return Err(DropReason::Malformed);
                }
                if kind & 0x80 != 0 {
                    later_header[n..n + len].copy_from_slice(&header[at..at + len]);
                    n += len;
                }
                at += len;
            }
        }
    }
    let later_hl = n.div_ceil(4) * 4;
    // Payload bytes per fragment: multiples of eight, as offsets count in eights.
    let room = |hl: usize| usize::from(mtu).saturating_sub(hl) & !7;
    let (first_room, later_room) = (room(hl), room(later_hl));
    if first_room == 0 || later_room == 0 {
        return Err(DropReason::TooBig);
    }
    let payload = &orig[l3 + hl..];
    if payload.len() <= first_room {
        return Ok(());
    }
    // Every frame first, so that a dry pool changes nothing. Each piece is shorter than
    // the original, which fit its frame behind at least the pool's headroom, so each
    // fits a fresh frame.
    let pieces = (payload.len() - first_room).div_ceil(later_room);
    let from = out.len();
    for _ in 0..pieces {
        match pool.alloc() {
            Some(base) => out.push(Pkt {
                addr: base + u64::from(pool.headroom()),
                len: 0,
            }),
            None => {
                for p in out.drain(from..) {
                    pool.free(p.addr, Place::Worker);
                }
                return Err(DropReason::NoFreeFrame);
            }
        }
    }
    let write = |f: &mut [u8], head: &[u8], at: usize, data: &[u8], last: bool| {
        f[..l3].copy_from_slice(&orig[..l3]);
        let len = head.len() + data.len();
        let ip = &mut f[l3..l3 + len];
        ip[..head.len()].copy_from_slice(head);
        ip[head.len()..].copy_from_slice(data);
        ip[0] = 0x40 | (head.len() / 4) as u8;
        ip[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        let mf = if last && !more { 0 } else { 0x2000 };
        let field = field & 0x4000 | mf | ((offset + at) / 8) as u16;
        ip[6..8].copy_from_slice(&field.to_be_bytes());
        ip[10..12].fill(0);
        let c = wire::checksum::checksum(&ip[..head.len()]);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        l3 + len
    };
    for (k, chunk) in payload[first_room..].chunks(later_room).enumerate() {
        let p = &mut out[from + k];
        let f = pool.bytes_mut(p.addr, l3 + later_hl + chunk.len());
        let last = k + 1 == pieces;
        p.len = write(f, &later_header[..later_hl], first_room + k * later_room, chunk, last) as u32;
    }
    let f = pool.bytes_mut(pkt.addr, l3 + total);
    pkt.len = write(f, header, 0, &payload[..first_room], false) as u32;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(frames: u32) -> FramePool {
        FramePool::for_tests(frames, 4096, 1)
    }

    /// An Ethernet frame holding an IPv4 packet with `options` and `payload` bytes of
    /// payload (0, 1, 2, ...), fragment field `field`, header checksum right.
    fn packet(pool: &mut FramePool, options: &[u8], payload: usize, field: u16) -> Pkt {
        let hl = 20 + options.len();
        let mut f = vec![0xee; 14];
        f.extend_from_slice(&[0x40 | (hl / 4) as u8, 0, 0, 0, 0x12, 0x34, 0, 0, 64, 17, 0, 0]);
        f[16..18].copy_from_slice(&((hl + payload) as u16).to_be_bytes());
        f[20..22].copy_from_slice(&field.to_be_bytes());
        f.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        f.extend_from_slice(options);
        let c = wire::checksum::checksum(&f[14..14 + hl]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        f.extend((0..payload).map(|i| i as u8));
        let addr = pool.alloc().unwrap() + u64::from(pool.headroom());
        pool.bytes_mut(addr, f.len()).copy_from_slice(&f);
        Pkt {
            addr,
            len: f.len() as u32,
        }
    }

    /// Each piece: (header length, offset in bytes, more-fragments, payload), its header
    /// checksum and link header checked.
    fn pieces(pool: &mut FramePool, pkts: &[Pkt]) -> Vec<(usize, usize, bool, Vec<u8>)> {
        pkts.iter()
            .map(|p| {
                let f = pool.bytes_mut(p.addr, p.len as usize);
                assert_eq!(&f[..14], &[0xee; 14]);
                let ip = &f[14..];
                let hl = usize::from(ip[0] & 0xf) * 4;
                assert_eq!(usize::from(u16::from_be_bytes([ip[2], ip[3]])), ip.len());
                assert_eq!(wire::checksum::checksum(&ip[..hl]), 0, "header checksum");
                let field = u16::from_be_bytes([ip[6], ip[7]]);
                (
                    hl,
                    usize::from(field & 0x1fff) * 8,
                    field & 0x2000 != 0,
                    ip[hl..].to_vec(),
                )
            })
            .collect()
    }

    #[test]
    fn later_pieces_carry_only_the_options_marked_copied() {
        let mut pool = pool(8);
        // Record route (7: not copied), a NOP, a copied option (0x94, router alert), end.
        let options = [7, 7, 4, 0, 0, 0, 0, 1, 0x94, 4, 0, 0];
        let mut pkt = packet(&mut pool, &options, 100, 0);
        let mut out = Vec::new();
        split_ipv4(&mut pool, &mut pkt, 14, 64, &mut Vec::new(), &mut out).unwrap();
        let all = pieces(&mut pool, &[&[pkt][..], &out].concat());
        // 64 - 32 leaves 32 bytes in the first; 64 - 24 leaves 40 in each later one.
        let shape: Vec<_> = all
            .iter()
            .map(|(hl, at, more, data)| (*hl, *at, *more, data.len()))
            .collect();
        assert_eq!(shape, [(32, 0, true, 32), (24, 32, true, 40), (24, 72, false, 28)]);
        let f = pool.bytes_mut(out[0].addr, 38);
        assert_eq!(&f[34..38], &[0x94, 4, 0, 0], "only the copied option");
        let joined: Vec<u8> = all.iter().flat_map(|p| p.3.clone()).collect();
        assert_eq!(joined, (0..100).map(|i| i as u8).collect::<Vec<_>>());
    }

    #[test]
    fn a_fragment_split_again_keeps_its_place_and_its_more_flag() {
        let mut pool = pool(8);
        // A middle fragment at byte 800 of its datagram, more to come.
        let mut pkt = packet(&mut pool, &[], 60, 0x2000 | 100);
        let mut out = Vec::new();
        split_ipv4(&mut pool, &mut pkt, 14, 52, &mut Vec::new(), &mut out).unwrap();
        let all = pieces(&mut pool, &[&[pkt][..], &out].concat());
        let shape: Vec<_> = all.iter().map(|(_, at, more, data)| (*at, *more, data.len())).collect();
        assert_eq!(shape, [(800, true, 32), (832, true, 28)]);
    }

    #[test]
    fn a_dry_pool_or_a_tiny_mtu_changes_nothing() {
        // The packet's frame and three free ones, where five pieces beyond the first
        // would be needed.
        let mut pool = pool(4);
        let mut pkt = packet(&mut pool, &[], 1000, 0);
        let before = pool.bytes_mut(pkt.addr, pkt.len as usize).to_vec();
        let mut out = Vec::new();
        let free = pool.available();
        let split = |pool: &mut FramePool, pkt: &mut Pkt, out: &mut Vec<Pkt>, mtu| {
            split_ipv4(pool, pkt, 14, mtu, &mut Vec::new(), out)
        };
        assert_eq!(split(&mut pool, &mut pkt, &mut out, 200), Err(DropReason::NoFreeFrame));
        assert_eq!(split(&mut pool, &mut pkt, &mut out, 27), Err(DropReason::TooBig));
        assert!(out.is_empty());
        assert_eq!(pool.available(), free, "frames taken were given back");
        assert_eq!(pool.bytes_mut(pkt.addr, pkt.len as usize), &before[..]);
    }

    #[test]
    fn orphans_wait_for_their_first_in_order_and_no_longer_than_their_time() {
        let mut o = Orphans::new();
        for (i, ident) in [(0, 7), (1, 8), (2, 7)] {
            assert!(o.park(key(1, ident), 10, i).is_ok());
        }
        o.wake(&key(2, 7));
        let mut ready = Vec::new();
        o.take_ready(&mut ready);
        assert!(ready.is_empty(), "another VRF's datagram");
        o.wake(&key(1, 7));
        o.take_ready(&mut ready);
        assert_eq!(ready, [0, 2]);
        let mut gone = Vec::new();
        o.expire(10 + ORPHAN_SECS - 1, false, |i| gone.push(i));
        assert!(gone.is_empty());
        o.expire(10 + ORPHAN_SECS, false, |i| gone.push(i));
        assert_eq!(gone, [1]);
        assert!(o.is_idle());
        for i in 0..ORPHANS {
            assert!(o.park(key(1, 9), 20, i).is_ok());
        }
        assert_eq!(o.park(key(1, 9), 20, ORPHANS), Err(ORPHANS), "full");
        o.expire(20, true, |i| gone.push(i));
        assert_eq!(gone.len(), 1 + ORPHANS, "all of them when stopping");
    }

    fn key(vrf: u32, ident: u32) -> Key {
        let addr = |last| {
            let mut a = [0; 16];
            a[..4].copy_from_slice(&[10, 0, 0, last]);
            a
        };
        Key {
            vrf,
            src: addr(1),
            dst: addr(2),
            proto: 17,
            ident,
        }
    }

    #[test]
    fn later_fragments_find_their_first_and_the_last_byte_ends_it() {
        let mut t = FragTable::new();
        let k = key(1, 77);
        assert!(t.first(k, (4000, 53), 800));
        assert_eq!(t.later(k, 800, 400, true), Some((4000, 53)));
        assert_eq!(t.later(key(2, 77), 800, 400, true), None, "another VRF");
        assert_eq!(t.later(key(1, 78), 800, 400, true), None, "another datagram");
        assert_eq!(t.later(k, 1200, 100, false), Some((4000, 53)));
        assert_eq!(t.later(k, 1300, 8, true), None, "ended with the last byte");
    }

    #[test]
    fn a_fragment_after_the_last_still_finds_its_datagram() {
        let mut t = FragTable::new();
        let k = key(1, 9);
        // 0..1424 and 1424..1480 were one fragment, split again on the way; the
        // datagram's last fragment (1480..2008) overtook the second piece.
        assert!(t.first(k, (1, 2), 1424));
        assert_eq!(t.later(k, 1480, 528, false), Some((1, 2)));
        assert_eq!(t.later(k, 1424, 56, true), Some((1, 2)));
        assert_eq!(t.later(k, 1424, 56, true), None, "every byte passed: ended");
    }

    #[test]
    fn a_full_neighbourhood_refuses_rather_than_overwrites() {
        let mut t = FragTable::new();
        let mut stored = 0;
        for id in 0..(FRAG_SLOTS as u32 * 2) {
            if t.first(key(1, id), (id as u16, id as u16), 8) {
                stored += 1;
            }
        }
        assert!(stored <= FRAG_SLOTS);
        // Everything stored is still found with its own ports.
        let found = (0..(FRAG_SLOTS as u32 * 2))
            .filter(|&id| t.later(key(1, id), 8, 8, true) == Some((id as u16, id as u16)))
            .count();
        assert_eq!(found, stored);
    }
}
