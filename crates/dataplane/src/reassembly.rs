//! Tunnel packets the underlay fragmented, made whole again.
//!
//! A tunnel peer that lets its packets be fragmented (a Linux VXLAN device does by
//! default: its outer header has no don't-fragment) has them split by its own stack when
//! its device's MTU is above what its link carries, and by any underlay router whose link
//! is narrower. No fragment of a tunnel packet is a tunnel packet: only the first carries
//! the tunnel header, and none the whole inner packet. So each worker holds the fragments
//! of UDP and GRE datagrams to this node's tunnel endpoints, and once all of a datagram's
//! bytes are in, rebuilds it in the frame of the fragment that completed it. It then goes
//! through the pipeline like a packet that came whole.
//!
//! Bounded, and losing nothing the host stack could have used: at most [`DATAGRAMS`]
//! datagrams held at once, [`PARTS`] fragments each, for [`HOLD_SECS`] seconds. A
//! datagram this cannot rebuild (no room left to hold it, too many fragments, fragments
//! that overlap or disagree on its end, longer than a frame) goes to the host fragment by
//! fragment, as it did before any reassembly; one whose fragments do not all come in time
//! is dropped, counted.

use wire::parse::Headers;

use crate::frag::{Piece, piece};
use crate::frames::FramePool;
use crate::port::Pkt;

/// Datagrams held at once, per worker.
pub const DATAGRAMS: usize = 64;
/// Fragments held per datagram: a 9000-byte packet through a 1280-byte link is eight.
pub const PARTS: usize = 16;
/// Seconds (on the whole-second flow clock) a datagram is held after its first
/// fragment came: 2 to 3 in all.
pub const HOLD_SECS: u32 = 3;

/// Identifies a datagram (RFC 791: addresses, protocol, identification; RFC 8200 has no
/// protocol in it, and the same rule is no less right there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    src: [u8; 16],
    dst: [u8; 16],
    proto: u8,
    ident: u32,
}

/// One held fragment: its frame, and where its bytes go.
#[derive(Debug, Clone, Copy, Default)]
struct Part {
    pkt: Pkt,
    head: u16,
    data: u16,
    names: Option<u16>,
    at: u32,
    len: u32,
}

#[derive(Debug)]
struct Datagram {
    key: Key,
    born: u32,
    /// Given up on: its fragments go to the host as they come.
    passing: bool,
    /// The fragmentable part's length, once the last fragment told it.
    end: Option<u32>,
    parts: [Part; PARTS],
    n: usize,
}

impl Datagram {
    fn parts(&self) -> &[Part] {
        &self.parts[..self.n]
    }

    /// Whether fragment `p` can join the ones held: not empty, whole eights unless last,
    /// inside the end and overlapping none, and (with the header it came behind) no
    /// longer than a frame holds.
    fn takes(&self, p: &Piece, room: usize) -> bool {
        let end = p.at + p.len;
        let beside = |q: &Part| end <= q.at || q.at + q.len <= p.at;
        p.len > 0
            && (p.more || self.end.is_none())
            && (!p.more || p.len.is_multiple_of(8))
            && self.n < PARTS
            && p.head + end as usize <= room
            && self.end.is_none_or(|e| end <= e)
            && (p.more || self.parts().iter().all(|q| q.at + q.len <= end))
            && self.parts().iter().all(beside)
    }
}

/// What became of a fragment given to [`Reassembly::add`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Added {
    /// Held until its datagram is whole: its frame stays with the worker.
    Held,
    /// It completed its datagram, which is now the packet, whole.
    Whole,
    /// Not held: it goes on as it came.
    Pass,
}

/// Why [`Reassembly::release`] hands a held fragment back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Release {
    /// Its bytes are in its rebuilt datagram.
    Merged,
    /// Its datagram cannot be rebuilt: it goes on as it came.
    Pass,
    /// Its datagram did not come whole in time (or the worker is stopping).
    Late,
}

/// One worker's datagrams being put back together.
pub(crate) struct Reassembly {
    held: Vec<Datagram>,
    released: Vec<(Pkt, Release)>,
    /// The datagram being rebuilt (kept, so rebuilding allocates nothing once grown).
    scratch: Vec<u8>,
}

impl Reassembly {
    pub(crate) fn new() -> Self {
        Reassembly {
            held: Vec::with_capacity(DATAGRAMS),
            released: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Nothing held and nothing to hand back.
    pub(crate) fn is_idle(&self) -> bool {
        self.held.is_empty() && self.released.is_empty()
    }

    /// Takes fragment `pkt` (IPv4, or IPv6 with its fragment header anywhere in the
    /// chain), parsed into `h`, at `now`. On
    /// [`Added::Whole`] `pkt` is the rebuilt datagram, behind the first fragment's link
    /// header, where [`FramePool::alloc`] would place it in the completing fragment's
    /// frame.
    pub(crate) fn add(&mut self, pool: &mut FramePool, pkt: &mut Pkt, h: &Headers, now: u32) -> Added {
        let Ok(p) = piece(pool.bytes_mut(pkt.addr, pkt.len as usize), h) else {
            return Added::Pass;
        };
        let key = Key {
            src: h.key.src,
            dst: h.key.dst,
            proto: h.key.proto,
            ident: p.ident,
        };
        let d = match self.held.iter().position(|d| d.key == key) {
            Some(d) => d,
            None if self.held.len() < DATAGRAMS => {
                self.held.push(Datagram {
                    key,
                    born: now,
                    passing: false,
                    end: None,
                    parts: [Part::default(); PARTS],
                    n: 0,
                });
                self.held.len() - 1
            }
            None => return Added::Pass,
        };
        let dg = &mut self.held[d];
        if dg.passing {
            return Added::Pass;
        }
        if !dg.takes(&p, pool.room()) {
            dg.passing = true;
            self.released.extend(dg.parts().iter().map(|q| (q.pkt, Release::Pass)));
            dg.n = 0;
            return Added::Pass;
        }
        dg.parts[dg.n] = Part {
            pkt: *pkt,
            head: p.head as u16,
            data: p.data as u16,
            names: p.names.map(|n| n as u16),
            at: p.at,
            len: p.len,
        };
        dg.n += 1;
        if !p.more {
            dg.end = Some(p.at + p.len);
        }
        if dg.end != Some(dg.parts().iter().map(|q| q.len).sum()) {
            return Added::Held;
        }
        // Every byte is in: no overlaps, all inside the end.
        let dg = self.held.swap_remove(d);
        let (others, verdict) = match rebuild(pool, &dg, h, &mut self.scratch) {
            Some(whole) => {
                *pkt = whole;
                (Release::Merged, Added::Whole)
            }
            None => (Release::Pass, Added::Pass),
        };
        let earlier = &dg.parts()[..dg.n - 1];
        self.released.extend(earlier.iter().map(|q| (q.pkt, others)));
        verdict
    }

    /// Hands back (to `each`) the fragments released since the last call, and those of
    /// datagrams held [`HOLD_SECS`] by `now` (all held ones when `stopping`) as
    /// [`Release::Late`].
    pub(crate) fn release(&mut self, now: u32, stopping: bool, mut each: impl FnMut(Pkt, Release)) {
        for (pkt, why) in self.released.drain(..) {
            each(pkt, why);
        }
        self.held.retain(|d| {
            let keep = !stopping && now.saturating_sub(d.born) < HOLD_SECS;
            if !keep {
                for q in d.parts() {
                    each(q.pkt, Release::Late);
                }
            }
            keep
        });
    }
}

/// Writes datagram `dg`, all of whose bytes are in (parsed like `h`), whole into the
/// frame of its last part; `None` if the frame cannot hold it behind the first
/// fragment's headers.
fn rebuild(pool: &mut FramePool, dg: &Datagram, h: &Headers, scratch: &mut Vec<u8>) -> Option<Pkt> {
    let first = dg.parts().iter().find(|q| q.at == 0)?;
    let (l3, head, data) = (usize::from(h.l3), usize::from(first.head), usize::from(first.data));
    let end = dg.end? as usize;
    if head + end > pool.room() {
        return None;
    }
    scratch.clear();
    scratch.extend_from_slice(pool.bytes_mut(first.pkt.addr, data));
    // IPv6: the fragment header's next header, and what names it (IPv4 has no such
    // header: `head` is `data`).
    let ipv6 = first.names.map(|names| (usize::from(names), scratch[head]));
    scratch.resize(head, 0);
    scratch.resize(head + end, 0);
    for q in dg.parts() {
        let (from, len) = (usize::from(q.data), q.len as usize);
        let bytes = &pool.bytes_mut(q.pkt.addr, from + len)[from..];
        scratch[head + q.at as usize..][..len].copy_from_slice(bytes);
    }
    if let Some((names, next)) = ipv6 {
        // The fragment header goes: the header that named it names what it said came
        // next, and the payload is the headers before it and the rebuilt part.
        scratch[names] = next;
        let payload = (head - l3 - 40 + end) as u16;
        scratch[l3 + 4..l3 + 6].copy_from_slice(&payload.to_be_bytes());
    } else {
        let ip = &mut scratch[l3..];
        let hl = head - l3;
        ip[2..4].copy_from_slice(&((hl + end) as u16).to_be_bytes());
        let kept = u16::from_be_bytes([ip[6], ip[7]]) & 0x4000;
        ip[6..8].copy_from_slice(&kept.to_be_bytes());
        ip[10..12].fill(0);
        let c = wire::checksum::checksum(&ip[..hl]);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
    }
    let last = dg.parts[dg.n - 1].pkt;
    let addr = pool.frame_base(last.addr) + u64::from(pool.headroom());
    pool.bytes_mut(addr, scratch.len()).copy_from_slice(scratch);
    Some(Pkt {
        addr,
        len: scratch.len() as u32,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use wire::parse::{PacketMeta, parse_into};

    use super::*;
    use crate::frag::split_ipv4;

    /// An Ethernet frame with a UDP datagram of `payload` bytes (0, 1, 2, ...) from
    /// 192.0.2.2 to 192.0.2.1, IP identification `ident`, checksums right.
    fn datagram(payload: usize, ident: u16) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 8, 0];
        let total = 28 + payload;
        f.extend_from_slice(&[0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 192, 0, 2, 2, 192, 0, 2, 1]);
        f[16..18].copy_from_slice(&(total as u16).to_be_bytes());
        f[18..20].copy_from_slice(&ident.to_be_bytes());
        let c = wire::checksum::checksum(&f[14..34]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&[0xc3, 0x50, 0x12, 0xb5]);
        f.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend((0..payload).map(|i| i as u8));
        f
    }

    fn put(pool: &mut FramePool, f: &[u8]) -> Pkt {
        let addr = pool.alloc().unwrap() + u64::from(pool.headroom());
        pool.bytes_mut(addr, f.len()).copy_from_slice(f);
        Pkt {
            addr,
            len: f.len() as u32,
        }
    }

    /// `f` split by our own splitter into fragments of at most `mtu` IP bytes.
    fn fragments(pool: &mut FramePool, f: &[u8], mtu: u16) -> Vec<Pkt> {
        let mut first = put(pool, f);
        let mut rest = Vec::new();
        split_ipv4(pool, &mut first, 14, mtu, &mut Vec::new(), &mut rest).unwrap();
        [vec![first], rest].concat()
    }

    fn add(r: &mut Reassembly, pool: &mut FramePool, pkt: &mut Pkt, now: u32) -> Added {
        let mut meta = PacketMeta::default();
        parse_into(pool.bytes_mut(pkt.addr, pkt.len as usize), &mut meta).unwrap();
        r.add(pool, pkt, &meta.outer, now)
    }

    fn released(r: &mut Reassembly, now: u32, stopping: bool) -> Vec<(Pkt, Release)> {
        let mut out = Vec::new();
        r.release(now, stopping, |p, why| out.push((p, why)));
        out
    }

    proptest! {
        /// Whatever the order its fragments come in, a datagram comes out byte for byte
        /// as it was before it was split, and every other fragment's frame is handed
        /// back as merged.
        #[test]
        fn fragments_in_any_order_make_the_datagram_again(
            payload in 40usize..3000,
            mtu in 68u16..1500,
            order in any::<prop::sample::Index>(),
            seed in any::<u64>(),
        ) {
            let mut pool = FramePool::for_tests(64, 4096, 1);
            let f = datagram(payload, 7);
            let mut frags = fragments(&mut pool, &f, mtu);
            prop_assume!(frags.len() > 1 && frags.len() <= PARTS);
            // A permutation from the seed: rotate, then swap pairs.
            let k = order.index(frags.len());
            frags.rotate_left(k);
            let mut s = seed;
            for i in (1..frags.len()).rev() {
                frags.swap(i, (s % (i as u64 + 1)) as usize);
                s /= i as u64 + 1;
            }
            let mut r = Reassembly::new();
            let last = frags.len() - 1;
            for (i, pkt) in frags.iter_mut().enumerate() {
                let want = if i == last { Added::Whole } else { Added::Held };
                prop_assert_eq!(add(&mut r, &mut pool, pkt, 5), want);
            }
            let whole = frags[last];
            prop_assert_eq!(pool.bytes_mut(whole.addr, whole.len as usize), &f[..]);
            let back = released(&mut r, 5, false);
            prop_assert_eq!(back.len(), last);
            prop_assert!(back.iter().all(|(_, why)| *why == Release::Merged));
            prop_assert!(r.is_idle());
        }

        /// Fragments of three datagrams, interleaved, some delivered twice, some never,
        /// with time passing: every frame handed in comes back exactly once (passed on,
        /// rebuilt into, or released), and every datagram rebuilt is the one that was
        /// split.
        #[test]
        fn every_frame_comes_back_once_whatever_arrives(
            sizes in proptest::collection::vec((1000usize..2500, 68u16..1000), 3),
            ops in proptest::collection::vec((0usize..3, any::<prop::sample::Index>(), 0u32..2), 1..40),
        ) {
            let mut pool = FramePool::for_tests(128, 4096, 1);
            let originals: Vec<Vec<u8>> = sizes.iter().enumerate().map(|(d, &(n, _))| datagram(n, d as u16)).collect();
            let pieces: Vec<Vec<Vec<u8>>> = originals
                .iter()
                .zip(&sizes)
                .map(|(f, &(_, mtu))| {
                    let frags = fragments(&mut pool, f, mtu);
                    let bytes = frags.iter().map(|p| pool.bytes_mut(p.addr, p.len as usize).to_vec()).collect();
                    for p in frags {
                        pool.free(p.addr, crate::frames::Place::Worker);
                    }
                    bytes
                })
                .collect();
            let mut r = Reassembly::new();
            let (mut now, mut given, mut back) = (0, Vec::new(), Vec::new());
            for (d, k, wait) in ops {
                now += wait;
                back.extend(released(&mut r, now, false).into_iter().map(|(p, _)| pool.frame_base(p.addr)));
                let mut pkt = put(&mut pool, &pieces[d][k.index(pieces[d].len())]);
                given.push(pool.frame_base(pkt.addr));
                match add(&mut r, &mut pool, &mut pkt, now) {
                    Added::Held => {}
                    Added::Pass => back.push(pool.frame_base(pkt.addr)),
                    Added::Whole => {
                        let whole = pool.bytes_mut(pkt.addr, pkt.len as usize);
                        prop_assert_eq!(whole, &originals[d][..]);
                        back.push(pool.frame_base(pkt.addr));
                    }
                }
            }
            back.extend(released(&mut r, now, true).into_iter().map(|(p, _)| pool.frame_base(p.addr)));
            given.sort_unstable();
            back.sort_unstable();
            prop_assert_eq!(given, back);
            prop_assert!(r.is_idle());
        }
    }

    /// An IPv6 datagram with the fixed header's payload `rest` (next header `first`)
    /// from fd00:f::2 to fd00:f::1.
    fn ipv6(first: u8, rest: &[u8]) -> Vec<u8> {
        let mut f = vec![
            2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x86, 0xdd, 0x60, 0, 0, 0, 0, 0, first, 64,
        ];
        let addr = |last: u8| [0xfd, 0, 0, 0xf, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, last];
        f.extend_from_slice(&addr(2));
        f.extend_from_slice(&addr(1));
        f[18..20].copy_from_slice(&(rest.len() as u16).to_be_bytes());
        f.extend_from_slice(rest);
        f
    }

    /// Whole again, an IPv6 datagram has no fragment header, and what named it names what
    /// it said came next: the fixed header, or a hop-by-hop header before it (RFC 8200
    /// 4.5: the headers before the fragment header are the first fragment's).
    #[test]
    fn an_ipv6_datagram_loses_its_fragment_header() {
        let udp: Vec<u8> = [&[0xc3, 0x50, 0x12, 0xb5, 0x03, 0xf0, 0, 0][..], &[0xab; 1000]].concat();
        // A hop-by-hop header: padding only (PadN, four bytes).
        let hop_by_hop = |next: u8| [next, 0, 1, 4, 0, 0, 0, 0];
        for before in [None, Some(hop_by_hop)] {
            let mut pool = FramePool::for_tests(8, 4096, 1);
            let (first, head) = match before {
                None => (17, vec![]),
                Some(h) => (0, h(17).to_vec()),
            };
            let whole = ipv6(first, &[&head[..], &udp].concat());
            // Fragments of 512 and 496 bytes, the second first; a later fragment carries
            // the headers before the fragment header too.
            let piece = |at: usize, len: usize, more: bool| {
                let mut frag = before.map_or(vec![], |h| h(44).to_vec());
                frag.extend_from_slice(&[17, 0]);
                frag.extend_from_slice(&((at as u16) | u16::from(more)).to_be_bytes());
                frag.extend_from_slice(&0x0102_0304u32.to_be_bytes());
                frag.extend_from_slice(&udp[at..at + len]);
                ipv6(if before.is_some() { 0 } else { 44 }, &frag)
            };
            let mut r = Reassembly::new();
            let mut second = put(&mut pool, &piece(512, 496, false));
            let mut first = put(&mut pool, &piece(0, 512, true));
            assert_eq!(add(&mut r, &mut pool, &mut second, 1), Added::Held);
            assert_eq!(add(&mut r, &mut pool, &mut first, 1), Added::Whole);
            assert_eq!(pool.bytes_mut(first.addr, first.len as usize), &whole[..]);
            assert_eq!(released(&mut r, 1, false), [(second, Release::Merged)]);
        }
    }

    #[test]
    fn overlapping_fragments_go_on_as_they_came() {
        let mut pool = FramePool::for_tests(16, 4096, 1);
        let f = datagram(1000, 9);
        let mut frags = fragments(&mut pool, &f, 500);
        let copy = pool.bytes_mut(frags[0].addr, frags[0].len as usize).to_vec();
        let mut again = put(&mut pool, &copy);
        let mut r = Reassembly::new();
        assert_eq!(add(&mut r, &mut pool, &mut frags[0], 1), Added::Held);
        assert_eq!(add(&mut r, &mut pool, &mut again, 1), Added::Pass);
        assert_eq!(released(&mut r, 1, false), [(frags[0], Release::Pass)]);
        // And so do the rest of that datagram's.
        assert_eq!(add(&mut r, &mut pool, &mut frags[1], 1), Added::Pass);
    }

    #[test]
    fn a_datagram_longer_than_a_frame_goes_on_as_it_came() {
        // 1942 bytes, split where frames are larger, into 2048-byte frames, which hold
        // 1792 bytes behind the headroom.
        let mut large = FramePool::for_tests(16, 4096, 1);
        let bytes: Vec<Vec<u8>> = fragments(&mut large, &datagram(1900, 3), 700)
            .into_iter()
            .map(|p| large.bytes_mut(p.addr, p.len as usize).to_vec())
            .collect();
        let mut pool = FramePool::for_tests(16, 2048, 1);
        let mut frags: Vec<Pkt> = bytes.iter().map(|b| put(&mut pool, b)).collect();
        let mut r = Reassembly::new();
        let got: Vec<Added> = frags.iter_mut().map(|p| add(&mut r, &mut pool, p, 1)).collect();
        assert_eq!(got, [Added::Held, Added::Held, Added::Pass]);
        let back = released(&mut r, 1, false);
        assert_eq!(back, [(frags[0], Release::Pass), (frags[1], Release::Pass)]);
    }

    #[test]
    fn datagrams_not_whole_in_time_are_let_go_and_no_more_are_held_than_fit() {
        let mut pool = FramePool::for_tests(256, 2048, 1);
        let mut r = Reassembly::new();
        let mut firsts: Vec<Pkt> = (0..=DATAGRAMS as u16)
            .map(|ident| fragments(&mut pool, &datagram(1000, ident), 600)[0])
            .collect();
        for (k, p) in firsts.iter_mut().enumerate() {
            let want = if k < DATAGRAMS { Added::Held } else { Added::Pass };
            assert_eq!(add(&mut r, &mut pool, p, 10), want, "datagram {k}");
        }
        assert!(released(&mut r, 10 + HOLD_SECS - 1, false).is_empty());
        let late = released(&mut r, 10 + HOLD_SECS, false);
        assert_eq!(late.len(), DATAGRAMS);
        assert!(late.iter().all(|(_, why)| *why == Release::Late));
        assert!(r.is_idle());
        // A stopping worker gets everything back at once.
        assert_eq!(add(&mut r, &mut pool, &mut firsts[DATAGRAMS], 20), Added::Held);
        assert_eq!(released(&mut r, 20, true), [(firsts[DATAGRAMS], Release::Late)]);
    }
}
