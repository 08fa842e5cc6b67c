//! Benchmarks live in `benches/`; this library holds the frames and flow keys they share,
//! so every contender parses the same bytes and looks up the same keys. See
//! `docs/PERFORMANCE.md` for results.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use wire::compose::{Header, frame, ip_header};
use wire::ethernet::{EtherType, EthernetRepr, MacAddr};
use wire::flow::FlowKey;
use wire::gre::GreRepr;
use wire::ip::IpProtocol;
use wire::mpls::MplsRepr;
use wire::options::HeaderOptions;
use wire::tcp::{TcpFlags, TcpRepr};
use wire::udp::UdpRepr;
use wire::vxlan::VxlanRepr;

fn eth() -> Header<'static> {
    Header::Ethernet(EthernetRepr {
        src: MacAddr([2, 0, 0, 0, 0, 1]),
        dst: MacAddr([2, 0, 0, 0, 0, 2]),
        ethertype: EtherType::Ipv4,
    })
}

fn ip(src: IpAddr, dst: IpAddr) -> Header<'static> {
    ip_header(src, dst, IpProtocol::Udp).expect("same family")
}

fn tcp() -> Header<'static> {
    Header::Tcp(TcpRepr {
        src_port: 40000,
        dst_port: 443,
        seq_number: 1,
        ack_number: 1,
        flags: TcpFlags(TcpFlags::ACK),
        window: 1024,
        urgent: 0,
        options: HeaderOptions::default(),
    })
}

fn udp(dst_port: u16) -> Header<'static> {
    Header::Udp(UdpRepr {
        src_port: 40000,
        dst_port,
    })
}

fn v4(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
}

fn mpls() -> Header<'static> {
    Header::Mpls(MplsRepr {
        label: 1000,
        tc: 0,
        bottom: true,
        ttl: 64,
    })
}

/// The benchmark frames, by name: 64-byte-class packets of each shape we forward.
pub fn frames() -> Vec<(&'static str, Vec<u8>)> {
    let v6 = |last| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last));
    let pad = [0u8; 18];
    let gre = GreRepr {
        protocol: EtherType::MplsUnicast,
        checksum: false,
        key: None,
        sequence: None,
    };
    let build = |hs: &[Header<'_>]| frame(hs, &pad).expect("benchmark frames are valid");
    vec![
        ("udp4", build(&[eth(), ip(v4(1), v4(2)), udp(53)])),
        ("tcp6", build(&[eth(), ip(v6(1), v6(2)), tcp()])),
        (
            "vxlan_tcp4",
            build(&[
                eth(),
                ip(v4(1), v4(2)),
                udp(4789),
                Header::Vxlan(VxlanRepr { vni: 100 }),
                eth(),
                ip(v4(3), v4(4)),
                tcp(),
            ]),
        ),
        (
            "mplsoudp_udp4",
            build(&[eth(), ip(v4(1), v4(2)), udp(6635), mpls(), ip(v4(3), v4(4)), udp(53)]),
        ),
        (
            "mplsogre_udp4",
            build(&[
                eth(),
                ip(v4(1), v4(2)),
                Header::Gre(gre),
                mpls(),
                ip(v4(3), v4(4)),
                udp(53),
            ]),
        ),
    ]
}

/// A xorshift generator: reproducible inputs for every bench, no dependency.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Flow key `n` of the flow-table benchmarks: addresses and ports vary as real 5-tuples do.
pub fn flow_key(n: u64) -> FlowKey {
    let x = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    FlowKey::v4(
        Ipv4Addr::from((x >> 32) as u32),
        Ipv4Addr::from(0x0a00_0000 | (n as u32 & 0xffff)),
        6,
        x as u16,
        443,
    )
}

/// Keys `flow_key(offset..offset + n)` in a fixed shuffled order.
pub fn shuffled_flow_keys(n: usize, offset: u64) -> Vec<FlowKey> {
    let mut v: Vec<FlowKey> = (0..n as u64).map(|i| flow_key(i + offset)).collect();
    let mut s = 0x2545_f491_4f6c_dd1du64;
    for i in (1..v.len()).rev() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        v.swap(i, (s % (i as u64 + 1)) as usize);
    }
    v
}

/// A zeroed buffer of `bytes`, advised to transparent huge pages (`huge`) or against them
/// before it is first written, as the flow table advises its arrays: random reads over it
/// measure the memory, with or without the page walks huge pages save.
pub fn advised_buffer(bytes: usize, huge: bool) -> Vec<u64> {
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
    unsafe { libc::madvise(start as *mut libc::c_void, end.saturating_sub(start), advice) };
    v
}
