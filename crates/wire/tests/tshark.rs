//! Cross-check against Wireshark: frames our builders emit (every tunnel type, IPv4 and
//! IPv6 inside and outside, plus plain L3 and L2 frames) are written to a pcap and
//! decoded by `tshark` with checksum validation on. There must be no malformed packet and
//! no error-level expert item, every checksum must be "good", and the fields tshark reads
//! must be the ones we built.

mod common;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::Command;

use common::run;
use wire::compose::{self, Header};
use wire::ethernet::{EtherType, EthernetRepr, MacAddr};
use wire::gre::GreRepr;
use wire::icmpv4::Icmpv4Repr;
use wire::icmpv6::Icmpv6Repr;
use wire::ip::IpProtocol;
use wire::ipv6ext::Ipv6ExtRepr;
use wire::mpls::MplsRepr;
use wire::options::HeaderOptions;
use wire::tcp::{TcpFlags, TcpRepr};
use wire::udp::UdpRepr;
use wire::vlan::VlanRepr;
use wire::vxlan::VxlanRepr;

/// tshark fields read back, in this order.
const FIELDS: &[&str] = &[
    "ip.src",
    "ip.dst",
    "ipv6.src",
    "ipv6.dst",
    "udp.srcport",
    "udp.dstport",
    "tcp.srcport",
    "tcp.dstport",
    "vxlan.vni",
    "mpls.label",
    "mpls.bottom",
    "gre.proto",
    "gre.key",
    "ieee8021ad.id",
    "vlan.id",
    "icmp.type",
    "icmpv6.type",
    "icmpv6.nd.ns.target_address",
    "ip.checksum.status",
    "udp.checksum.status",
    "tcp.checksum.status",
    "icmp.checksum.status",
    "icmpv6.checksum.status",
    "gre.checksum.status",
    "_ws.expert.severity",
    "_ws.malformed",
];

/// Field values that must hold for every frame, whatever it contains.
const STATUS_FIELDS: &[&str] = &[
    "ip.checksum.status",
    "udp.checksum.status",
    "tcp.checksum.status",
    "icmp.checksum.status",
    "icmpv6.checksum.status",
    "gre.checksum.status",
];

fn eth() -> Header<'static> {
    Header::Ethernet(EthernetRepr {
        src: MacAddr([2, 0, 0, 0, 0, 1]),
        dst: MacAddr([2, 0, 0, 0, 0, 2]),
        ethertype: EtherType::Ipv4,
    })
}

fn ip(src: IpAddr, dst: IpAddr) -> Header<'static> {
    let mut h = compose::ip_header(src, dst, IpProtocol::Udp).expect("same family");
    match &mut h {
        Header::Ipv4(r) => {
            r.dscp = 10;
            r.ident = 0x1234;
        }
        Header::Ipv6(r) => r.flow_label = 0x12345,
        _ => {}
    }
    h
}

fn udp(sp: u16, dp: u16) -> Header<'static> {
    Header::Udp(UdpRepr {
        src_port: sp,
        dst_port: dp,
    })
}

fn tcp(sp: u16, dp: u16) -> Header<'static> {
    Header::Tcp(TcpRepr {
        src_port: sp,
        dst_port: dp,
        seq_number: 1000,
        ack_number: 2000,
        flags: TcpFlags(TcpFlags::ACK | TcpFlags::PSH),
        window: 512,
        urgent: 0,
        options: HeaderOptions::new(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]).unwrap(),
    })
}

fn mpls(label: u32) -> Header<'static> {
    Header::Mpls(MplsRepr {
        label,
        tc: 0,
        bottom: false,
        ttl: 64,
    })
}

struct Case {
    name: String,
    frame: Vec<u8>,
    expect: Vec<(&'static str, String)>,
}

fn cases() -> Vec<Case> {
    let v4 = |a: u8| IpAddr::V4(Ipv4Addr::new(10, 0, 0, a));
    let u4 = |a: u8| IpAddr::V4(Ipv4Addr::new(192, 0, 2, a));
    let v6 = |a: u16| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, a));
    let u6 = |a: u16| IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, a));
    let list = |a: &[String]| a.join(",");
    let mut out = Vec::new();
    let payload = b"vrouter tshark cross-check";
    for (oi, (os, od)) in [(u4(1), u4(2)), (u6(1), u6(2))].into_iter().enumerate() {
        for (ii, (is, id)) in [(v4(1), v4(2)), (v6(1), v6(2))].into_iter().enumerate() {
            let inner_l4 = if ii == 0 { udp(41111, 42222) } else { tcp(43333, 44444) };
            let src_field = |a: IpAddr| if a.is_ipv4() { "ip.src" } else { "ipv6.src" };
            let dst_field = |a: IpAddr| if a.is_ipv4() { "ip.dst" } else { "ipv6.dst" };
            let addrs = |expect: &mut Vec<(&'static str, String)>| {
                let mut m: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
                m.entry(src_field(os)).or_default().push(os.to_string());
                m.entry(dst_field(od)).or_default().push(od.to_string());
                m.entry(src_field(is)).or_default().push(is.to_string());
                m.entry(dst_field(id)).or_default().push(id.to_string());
                for (k, v) in m {
                    expect.push((k, list(&v)));
                }
            };
            let tag = format!(
                "outer{} inner{}",
                if oi == 0 { 4 } else { 6 },
                if ii == 0 { 4 } else { 6 }
            );
            let inner_ports = |expect: &mut Vec<(&'static str, String)>, outer_udp: Option<(u16, u16)>| {
                let (mut us, mut ud) = (Vec::new(), Vec::new());
                if let Some((s, d)) = outer_udp {
                    us.push(s.to_string());
                    ud.push(d.to_string());
                }
                if ii == 0 {
                    us.push("41111".into());
                    ud.push("42222".into());
                } else {
                    expect.push(("tcp.srcport", "43333".into()));
                    expect.push(("tcp.dstport", "44444".into()));
                }
                if !us.is_empty() {
                    expect.push(("udp.srcport", list(&us)));
                    expect.push(("udp.dstport", list(&ud)));
                }
            };

            // VXLAN
            let vni = 5000 + 10 * oi as u32 + ii as u32;
            let frame = compose::frame(
                &[
                    eth(),
                    ip(os, od),
                    udp(49152, 4789),
                    Header::Vxlan(VxlanRepr { vni }),
                    eth(),
                    ip(is, id),
                    inner_l4,
                ],
                payload,
            )
            .unwrap();
            let mut expect = vec![("vxlan.vni", vni.to_string())];
            addrs(&mut expect);
            inner_ports(&mut expect, Some((49152, 4789)));
            out.push(Case {
                name: format!("vxlan {tag}"),
                frame,
                expect,
            });

            // MPLS over UDP, two labels
            let frame = compose::frame(
                &[
                    eth(),
                    ip(os, od),
                    udp(50001, 6635),
                    mpls(100),
                    mpls(200),
                    ip(is, id),
                    inner_l4,
                ],
                payload,
            )
            .unwrap();
            let mut expect = vec![("mpls.label", "100,200".into()), ("mpls.bottom", "0,1".into())];
            addrs(&mut expect);
            inner_ports(&mut expect, Some((50001, 6635)));
            out.push(Case {
                name: format!("mpls-udp {tag}"),
                frame,
                expect,
            });

            // MPLS over GRE with key and checksum
            let gre = GreRepr {
                protocol: EtherType::MplsUnicast,
                checksum: true,
                key: Some(77),
                sequence: Some(5),
            };
            let frame = compose::frame(
                &[eth(), ip(os, od), Header::Gre(gre), mpls(300), ip(is, id), inner_l4],
                payload,
            )
            .unwrap();
            let mut expect = vec![
                ("mpls.label", "300".into()),
                ("mpls.bottom", "1".into()),
                ("gre.proto", "0x8847".into()),
                ("gre.key", "0x0000004d".into()),
            ];
            addrs(&mut expect);
            inner_ports(&mut expect, None);
            out.push(Case {
                name: format!("mpls-gre {tag}"),
                frame,
                expect,
            });

            // GRE carrying IP directly
            let gre = GreRepr {
                protocol: EtherType::Ipv4,
                checksum: false,
                key: None,
                sequence: None,
            };
            let frame = compose::frame(&[eth(), ip(os, od), Header::Gre(gre), ip(is, id), inner_l4], payload).unwrap();
            let proto = if ii == 0 { "0x0800" } else { "0x86dd" };
            let mut expect = vec![("gre.proto", proto.into())];
            addrs(&mut expect);
            inner_ports(&mut expect, None);
            out.push(Case {
                name: format!("gre-ip {tag}"),
                frame,
                expect,
            });
        }
    }

    // Ethernet over GRE, QinQ, ICMP echo, ICMPv6 NS, IPv6 with extension headers.
    let gre = GreRepr {
        protocol: EtherType::TransparentEthernet,
        checksum: true,
        key: Some(9),
        sequence: None,
    };
    let frame = compose::frame(
        &[
            eth(),
            ip(u4(1), u4(2)),
            Header::Gre(gre),
            eth(),
            ip(v4(1), v4(2)),
            udp(50505, 50506),
        ],
        payload,
    )
    .unwrap();
    out.push(Case {
        name: "gre-eth".into(),
        frame,
        expect: vec![
            ("gre.proto", "0x6558".into()),
            ("gre.key", "0x00000009".into()),
            ("ip.src", "192.0.2.1,10.0.0.1".into()),
        ],
    });
    let tag = |vid| VlanRepr {
        pcp: 3,
        dei: false,
        vid,
        ethertype: EtherType::Ipv4,
    };
    let frame = compose::frame(
        &[
            eth(),
            Header::QinQ(tag(100)),
            Header::Vlan(tag(200)),
            ip(v4(1), v4(2)),
            udp(50507, 50508),
        ],
        payload,
    )
    .unwrap();
    out.push(Case {
        name: "qinq".into(),
        frame,
        expect: vec![
            ("ieee8021ad.id", "100".into()),
            ("vlan.id", "200".into()),
            ("udp.dstport", "50508".into()),
        ],
    });
    let frame = compose::frame(
        &[
            eth(),
            ip(v4(1), v4(2)),
            Header::Icmpv4(Icmpv4Repr::EchoRequest { ident: 1, seq_no: 2 }),
        ],
        payload,
    )
    .unwrap();
    out.push(Case {
        name: "icmp-echo".into(),
        frame,
        expect: vec![("icmp.type", "8".into())],
    });
    let target = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 9);
    let ns = Icmpv6Repr::NeighborSolicit {
        target,
        lladdr: Some(MacAddr([2, 0, 0, 0, 0, 1])),
    };
    let mut ns_ip = ip(v6(1), IpAddr::V6("ff02::1:ff00:9".parse().unwrap()));
    if let Header::Ipv6(r) = &mut ns_ip {
        r.hop_limit = 255;
    }
    let frame = compose::frame(&[eth(), ns_ip, Header::Icmpv6(ns)], &[]).unwrap();
    out.push(Case {
        name: "icmpv6-ns".into(),
        frame,
        expect: vec![
            ("icmpv6.type", "135".into()),
            ("icmpv6.nd.ns.target_address", target.to_string()),
        ],
    });
    let opts = [1u8, 4, 0, 0, 0, 0];
    let frame = compose::frame(
        &[
            eth(),
            ip(v6(1), v6(2)),
            Header::Ipv6Ext(
                IpProtocol::HopByHop,
                Ipv6ExtRepr {
                    next_header: IpProtocol::Tcp,
                    data: &opts,
                },
            ),
            Header::Ipv6Ext(
                IpProtocol::Ipv6Opts,
                Ipv6ExtRepr {
                    next_header: IpProtocol::Tcp,
                    data: &opts,
                },
            ),
            tcp(45000, 45001),
        ],
        payload,
    )
    .unwrap();
    out.push(Case {
        name: "ipv6-ext-tcp".into(),
        frame,
        expect: vec![("tcp.dstport", "45001".into())],
    });
    out
}

fn write_pcap(path: &std::path::Path, frames: &[&[u8]]) {
    let mut b = Vec::new();
    for v in [
        0xa1b2_c3d4u32.to_le_bytes().as_slice(),
        &2u16.to_le_bytes(),
        &4u16.to_le_bytes(),
        &[0; 8],
        &65535u32.to_le_bytes(),
        &1u32.to_le_bytes(),
    ] {
        b.extend_from_slice(v);
    }
    for (i, f) in frames.iter().enumerate() {
        let len = (f.len() as u32).to_le_bytes();
        b.extend_from_slice(&(i as u32).to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&len);
        b.extend_from_slice(&len);
        b.extend_from_slice(f);
    }
    std::fs::write(path, b).unwrap();
}

#[test]
fn tshark_decodes_what_we_build() {
    let cases = cases();
    let dir = std::env::temp_dir().join(format!("wire-tshark-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("frames.pcap");
    write_pcap(&pcap, &cases.iter().map(|c| c.frame.as_slice()).collect::<Vec<_>>());
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(&pcap).args([
        "-n",
        "-d",
        "udp.port==6635,mpls",
        "-T",
        "fields",
        "-E",
        "separator=|",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=,",
    ]);
    for pref in [
        "ip.check_checksum:TRUE",
        "udp.check_checksum:TRUE",
        "tcp.check_checksum:TRUE",
    ] {
        cmd.args(["-o", pref]);
    }
    for f in FIELDS {
        cmd.args(["-e", f]);
    }
    let out = run(&mut cmd);
    std::fs::remove_dir_all(&dir).ok();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), cases.len(), "tshark output:\n{out}");
    for (case, line) in cases.iter().zip(lines) {
        let got: BTreeMap<&str, &str> = FIELDS.iter().copied().zip(line.split('|')).collect();
        assert_eq!(got["_ws.malformed"], "", "{}: malformed\n{line}", case.name);
        for sev in got["_ws.expert.severity"].split(',').filter(|s| !s.is_empty()) {
            let sev: u32 = sev.parse().unwrap();
            assert!(
                sev < 0x0080_0000,
                "{}: expert error (severity {sev:#x})\n{line}",
                case.name
            );
        }
        for f in STATUS_FIELDS {
            for s in got[f].split(',').filter(|s| !s.is_empty()) {
                assert_eq!(s, "1", "{}: {f} is {s}, not good\n{line}", case.name);
            }
        }
        for (field, want) in &case.expect {
            assert_eq!(got[field], want, "{}: field {field}\n{line}", case.name);
        }
    }
    // Every checksum kind was actually validated somewhere.
    for f in STATUS_FIELDS {
        assert!(
            out.lines()
                .any(|l| FIELDS.iter().zip(l.split('|')).any(|(k, v)| k == f && v.contains('1'))),
            "{f} never validated"
        );
    }
}
