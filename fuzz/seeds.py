#!/usr/bin/env python3
"""Writes the seed corpus: a few scapy-built frames of every kind, and each header cut
out of them for the per-header targets, and frames for the pipeline target. Run from the
repository root with Debian's python3 (it has python3-scapy):  /usr/bin/python3
fuzz/seeds.py  (with ONLY=pipeline in the environment, the pipeline seeds alone)
"""
import hashlib
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "crates", "wire", "tests", "scapy"))
import frames  # noqa: E402
from scapy.all import (ARP, GRE, ICMP, IP, TCP, UDP, Dot1Q, Ether, IPv6,  # noqa: E402
                       ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6PacketTooBig, ICMPv6NDOptDstLLAddr, ICMPv6NDOptSrcLLAddr,
                       IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting, IPv6ExtHdrDestOpt,
                       ICMPv6DestUnreach, fragment, fragment6)
from scapy.contrib.mpls import MPLS  # noqa: E402
from scapy.layers.sctp import SCTP, SCTPChunkInit  # noqa: E402
from scapy.layers.inet6 import _ICMPv6  # noqa: E402
from scapy.layers.vxlan import VXLAN  # noqa: E402

TARGET_LAYERS = {
    "ethernet": [Ether], "vlan": [Dot1Q], "arp": [ARP], "ipv4": [IP], "ipv6": [IPv6],
    "udp": [UDP], "tcp": [TCP], "sctp": [SCTP], "icmpv4": [ICMP], "icmpv6": [_ICMPv6], "mpls": [MPLS],
    "gre": [GRE], "vxlan": [VXLAN],
}
EXT = {IPv6ExtHdrHopByHop: 0, IPv6ExtHdrRouting: 43, IPv6ExtHdrFragment: 44, IPv6ExtHdrDestOpt: 60}


def save(target, data):
    d = os.path.join("fuzz", "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()[:16]), "wb") as f:
        f.write(data)


def main():
    for kind, make in frames.KINDS.items():
        for _ in range(3):
            raw = bytes(make())
            save("packet", raw)
            pkt = Ether(raw)
            layer = pkt
            while layer.name != "NoPayload":
                for target, classes in TARGET_LAYERS.items():
                    if isinstance(layer, tuple(classes)):
                        data = bytes(layer)
                        # The VLAN target sees the tag after its TPID.
                        save(target, data)
                for cls, nh in EXT.items():
                    if isinstance(layer, cls):
                        save("ipv6_ext", bytes([nh]) + bytes(layer))
                layer = layer.payload


def pipeline_seeds():
    """Frames the fuzzed node (fuzz/src/pipeline.rs) acts on, each after the byte that picks
    its ingress port: 0 workload 1, 1 workload 2, 2 fabric, 3 the trunk port on VLAN 100;
    with its top bit set, a route
    change is published first (0x80 | n << 2: 10.9.n.0/24 toggled, 0xc0: w2's host route
    moved)."""
    w1, g1 = "02:00:00:00:01:02", "02:0a:00:00:00:01"
    fab, peer = "02:0a:00:00:00:03", "02:00:00:00:09:09"
    out = Ether(src=peer, dst=fab)
    frames_ = [
        (0, Ether(src=w1, dst="ff:ff:ff:ff:ff:ff") / ARP(hwsrc=w1, psrc="10.0.1.2", pdst="10.0.1.1")),
        (0, Ether(src=w1, dst=g1) / IPv6(src="fd00:1::2", dst="ff02::1:ff00:1")
            / ICMPv6ND_NS(tgt="fd00:1::1") / ICMPv6NDOptSrcLLAddr(lladdr=w1)),
        (0, Ether(src=w1, dst=g1) / IP(src="10.0.1.2", dst="10.0.2.2") / UDP(sport=4000, dport=80) / (b"x" * 20)),
        (0, Ether(src=w1, dst=g1) / IP(src="10.0.1.2", dst="10.0.2.2") / UDP(sport=4000, dport=53)),
        (0, Ether(src=w1, dst=g1) / IP(src="10.0.1.2", dst="10.9.0.5") / TCP(sport=4000, dport=80, flags="S")),
        (0, Ether(src=w1, dst=g1) / IP(src="10.0.1.2", dst="10.8.0.5") / UDP(sport=1, dport=2)),
        (0, Ether(src=w1, dst=g1) / IP(src="10.0.1.2", dst="10.7.0.5") / ICMP()),
        (0, Ether(src=w1, dst=g1) / IP(src="10.0.1.2", dst="10.6.0.5") / UDP(sport=1, dport=2)),
        (0, Ether(src=w1, dst=g1) / IPv6(src="fd00:1::2", dst="fd00:6::5") / UDP(sport=1, dport=2)),
        (0, Ether(src=w1, dst=g1) / IP(src="10.0.1.2", dst="10.96.0.10") / TCP(sport=5000, dport=80)),
        (0, Ether(src=w1, dst=g1) / IP(src="10.0.1.2", dst="10.0.2.2", ttl=1) / UDP(sport=1, dport=2)),
        (0, Ether(src=w1, dst=g1) / IPv6(src="fd00:1::2", dst="fd00:2::2", hlim=1) / UDP(sport=1, dport=2)),
        (0, Ether(src=w1, dst=g1) / IP(src="10.0.1.2", dst="10.9.0.5", flags="DF") / UDP(sport=1, dport=2)
            / (b"z" * 1400)),
        (0, Ether(src=w1, dst=g1) / IP(src="10.0.1.2", dst="10.0.2.2", flags="MF", id=7) / UDP(sport=1, dport=9)),
        (0, Ether(src=w1, dst=g1) / IP(src="10.0.1.2", dst="10.0.2.2", frag=8, id=7, proto=17) / (b"f" * 16)),
        (0, Ether(src=w1, dst=g1) / IPv6(src="fd00:1::2", dst="fd00:2::2") / IPv6ExtHdrFragment(id=9, m=1)
            / UDP(sport=1, dport=9)),
        (0, Ether(src=w1, dst=g1) / IP(src="10.0.1.99", dst="10.0.2.2") / UDP(sport=1, dport=2)),
        (2, Ether(src=peer, dst="ff:ff:ff:ff:ff:ff") / ARP(op=2, hwsrc=peer, psrc="192.0.2.9", pdst="192.0.2.1")),
        (2, out / IPv6(src="fd00:f::9", dst="fd00:f::1") / ICMPv6ND_NA(tgt="fd00:f::9", R=1, S=1, O=1)
            / ICMPv6NDOptDstLLAddr(lladdr=peer)),
        (2, out / IP(src="192.0.2.2", dst="192.0.2.1") / UDP(sport=49152, dport=4789) / VXLAN(vni=42)
            / Ether(src=peer, dst=g1) / IP(src="10.9.0.5", dst="10.0.1.2") / UDP(sport=1, dport=2)),
        (2, out / IP(src="192.0.2.2", dst="192.0.2.1") / UDP(sport=49152, dport=6635) / MPLS(label=100, s=1)
            / IP(src="10.9.0.5", dst="10.0.2.2") / UDP(sport=1, dport=2)),
        (2, out / IP(src="192.0.2.2", dst="192.0.2.1") / GRE(proto=0x8847) / MPLS(label=101, s=1)
            / IP(src="10.9.0.5", dst="10.0.2.2") / TCP(sport=1, dport=2)),
        (2, out / IP(src="192.0.2.2", dst="192.0.2.1") / ICMP()),
        # Tunnels over the IPv6 underlay, out and in.
        (0, Ether(src=w1, dst=g1) / IP(src="10.0.1.2", dst="10.5.0.5") / UDP(sport=1, dport=2)),
        (0, Ether(src=w1, dst=g1) / IPv6(src="fd00:1::2", dst="fd00:5::5") / TCP(sport=1, dport=2)),
        (0, Ether(src=w1, dst=g1) / IP(src="10.0.1.2", dst="10.4.0.5") / UDP(sport=1, dport=2)),
        (0, Ether(src=w1, dst=g1) / IP(src="10.0.1.2", dst="10.3.0.5") / ICMP()),
        (2, out / IPv6(src="fd00:f::2", dst="fd00:f::1") / UDP(sport=49152, dport=4789) / VXLAN(vni=42)
            / Ether(src=peer, dst=g1) / IP(src="10.5.0.5", dst="10.0.1.2") / UDP(sport=1, dport=2)),
        (2, out / IPv6(src="fd00:f::2", dst="fd00:f::1") / UDP(sport=49152, dport=6635) / MPLS(label=100, s=1)
            / IP(src="10.4.0.5", dst="10.0.2.2") / UDP(sport=1, dport=2)),
        (2, out / IPv6(src="fd00:f::2", dst="fd00:f::1") / GRE(proto=0x8847) / MPLS(label=101, s=1)
            / IPv6(src="fd00:5::5", dst="fd00:2::2") / TCP(sport=1, dport=2)),
        (2, out / IP(src="192.0.2.2", dst="203.0.113.9") / UDP(sport=1, dport=2)),
        # ECN across the tunnel: congestion marked outside, an ECN-capable packet inside.
        (2, out / IPv6(src="fd00:f::2", dst="fd00:f::1", tc=3) / UDP(sport=49152, dport=4789) / VXLAN(vni=42)
            / Ether(src=peer, dst=g1) / IP(src="10.5.0.5", dst="10.0.1.2", tos=2) / UDP(sport=1, dport=2)),
        # The trunk port on VLAN 100: out (its next hop asked for, tagged), the answer, in;
        # another VLAN, untagged, tagged on a workload port.
        (0, Ether(src=w1, dst=g1) / IP(src="10.0.1.2", dst="198.51.100.9") / UDP(sport=1, dport=2)),
        (3, Ether(src=peer, dst="02:0a:00:00:00:04") / Dot1Q(vlan=100)
            / ARP(op=2, hwsrc=peer, psrc="198.51.100.9", pdst="198.51.100.1")),
        (3, Ether(src=peer, dst="02:0a:00:00:00:04") / Dot1Q(vlan=100) / IP(src="198.51.100.9", dst="10.0.1.2")
            / UDP(sport=2, dport=1)),
        (3, Ether(src=peer, dst="02:0a:00:00:00:04") / Dot1Q(vlan=200) / IP(src="198.51.100.9", dst="10.0.1.2")
            / UDP(sport=2, dport=1)),
        (3, Ether(src=peer, dst="02:0a:00:00:00:04") / IP(src="198.51.100.9", dst="10.0.1.2") / UDP(sport=2, dport=1)),
        (0, Ether(src=w1, dst=g1) / Dot1Q(vlan=100) / IP(src="10.0.1.2", dst="10.0.2.2") / UDP(sport=1, dport=2)),
        # Too big for w2's 1280 bytes or the tunnel: split (no DF, options copied or not),
        # refused (DF, IPv6); SYNs whose MSS is lowered, one after a NOP, one out of VXLAN.
        (0, Ether(src=w1, dst=g1) / IP(src="10.0.1.2", dst="10.0.2.2", options=b"\x94\x04\x00\x00\x07\x07\x04\x00\x00\x00\x00\x00")
            / UDP(sport=1, dport=2) / (b"s" * 1400)),
        (0, Ether(src=w1, dst=g1) / IP(src="10.0.1.2", dst="10.9.0.5") / UDP(sport=1, dport=2) / (b"v" * 1420)),
        (0, Ether(src=w1, dst=g1) / IPv6(src="fd00:1::2", dst="fd00:2::2") / UDP(sport=1, dport=2) / (b"6" * 1300)),
        (0, Ether(src=w1, dst=g1) / IP(src="10.0.1.2", dst="10.0.2.2") / TCP(sport=4000, dport=80, flags="S",
            options=[("MSS", 1460), ("SAckOK", b"")])),
        (0, Ether(src=w1, dst=g1) / IPv6(src="fd00:1::2", dst="fd00:5::5") / TCP(sport=4000, dport=80, flags="S",
            options=[("NOP", None), ("MSS", 1440), ("WScale", 7)])),
        (2, out / IP(src="192.0.2.2", dst="192.0.2.1") / UDP(sport=49152, dport=4789) / VXLAN(vni=42)
            / Ether(src=peer, dst=g1) / IP(src="10.9.0.5", dst="10.0.1.2")
            / TCP(sport=80, dport=4000, flags="SA", options=[("MSS", 1460)])),
        # The underlay says a tunnel's path is narrower (about our VXLAN packet to
        # 192.0.2.2, and over IPv6 to fd00:f::2).
        (2, out / IP(src="192.0.2.254", dst="192.0.2.1") / ICMP(type=3, code=4, nexthopmtu=1400)
            / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=50000, dport=4789)),
        (2, out / IPv6(src="fd00:f::fe", dst="fd00:f::1") / ICMPv6PacketTooBig(mtu=1300)
            / IPv6(src="fd00:f::1", dst="fd00:f::2") / UDP(sport=50000, dport=4789)),
        # Route churn: a flow beside the changed /24, one under it, and w2's route moved.
        (0x80 | 3 << 2, Ether(src=w1, dst=g1) / IP(src="10.0.1.2", dst="10.9.0.5") / TCP(sport=4000, dport=80)),
        (0x80, Ether(src=w1, dst=g1) / IP(src="10.0.1.2", dst="10.9.0.5") / TCP(sport=4000, dport=80)),
        (0xc0, Ether(src=w1, dst=g1) / IP(src="10.0.1.2", dst="10.0.2.2") / UDP(sport=4000, dport=80) / (b"x" * 20)),
    ]
    # Tunnel packets the underlay fragmented, over either family: held until whole, then
    # rebuilt and decapsulated.
    vx4 = (out / IP(src="192.0.2.2", dst="192.0.2.1", id=77) / UDP(sport=49152, dport=4789) / VXLAN(vni=42)
           / Ether(src=peer, dst=g1) / IP(src="10.9.0.5", dst="10.0.1.2") / UDP(sport=1, dport=2) / (b"r" * 600))
    frames_ += [(2, f) for f in reversed(fragment(vx4, fragsize=256))]
    vx6 = (IPv6(src="fd00:f::2", dst="fd00:f::1") / IPv6ExtHdrFragment(id=78) / UDP(sport=49152, dport=4789)
           / VXLAN(vni=42) / Ether(src=peer, dst=g1) / IP(src="10.5.0.5", dst="10.0.1.2") / UDP(sport=1, dport=2)
           / (b"r" * 600))
    frames_ += [(2, out / f) for f in fragment6(vx6, 320)]
    # The same behind a hop-by-hop header, which every fragment carries and the rebuilt
    # packet keeps.
    vx6h = (IPv6(src="fd00:f::2", dst="fd00:f::1") / IPv6ExtHdrHopByHop() / IPv6ExtHdrFragment(id=79)
            / UDP(sport=49152, dport=4789) / VXLAN(vni=42) / Ether(src=peer, dst=g1)
            / IP(src="10.5.0.5", dst="10.0.1.2") / UDP(sport=1, dport=2) / (b"h" * 600))
    frames_ += [(2, out / f) for f in reversed(fragment6(vx6h, 328))]
    # ICMP errors from w2 about w1's packets: of an allowed flow (RELATED), over either family.
    w2, g2 = "02:00:00:00:02:02", "02:0a:00:00:00:02"
    frames_ += [
        (1, Ether(src=w2, dst=g2) / IP(src="10.0.2.2", dst="10.0.1.2") / ICMP(type=3, code=3)
            / IP(src="10.0.1.2", dst="10.0.2.2") / UDP(sport=4000, dport=80)),
        (1, Ether(src=w2, dst=g2) / IPv6(src="fd00:2::2", dst="fd00:1::2") / ICMPv6DestUnreach(code=4)
            / IPv6(src="fd00:1::2", dst="fd00:2::2") / UDP(sport=1, dport=2)),
    ]
    # A later fragment before its first: parked, then sent after it.
    frames_ += [
        (0, Ether(src=w1, dst=g1) / IP(src="10.0.1.2", dst="10.0.2.2", frag=8, id=11, proto=17) / (b"o" * 16)),
        (0, Ether(src=w1, dst=g1) / IP(src="10.0.1.2", dst="10.0.2.2", flags="MF", id=11) / UDP(sport=1, dport=9)
            / (b"o" * 56)),
    ]
    # An SCTP association (a flow by its ports), and an ICMP error quoting it.
    frames_ += [
        (0, Ether(src=w1, dst=g1) / IP(src="10.0.1.2", dst="10.0.2.2") / SCTP(sport=5000, dport=38412)
            / SCTPChunkInit(init_tag=7)),
        (1, Ether(src=w2, dst=g2) / IP(src="10.0.2.2", dst="10.0.1.2") / ICMP(type=3, code=3)
            / IP(src="10.0.1.2", dst="10.0.2.2") / SCTP(sport=5000, dport=38412)),
    ]
    # The service address both workloads own: to it (denied and allowed at w2, if the
    # hash picks w2), and from it at w2 (w2's own egress list).
    frames_ += [
        (0, Ether(src=w1, dst=g1) / IP(src="10.0.1.2", dst="10.96.0.10") / UDP(sport=4000, dport=53)),
        (0, Ether(src=w1, dst=g1) / IP(src="10.0.1.2", dst="10.96.0.10") / UDP(sport=4001, dport=5353)),
        (1, Ether(src=w2, dst=g2) / IP(src="10.96.0.10", dst="10.0.1.2") / UDP(sport=5353, dport=9)),
    ]
    for port, frame in frames_:
        save("pipeline", bytes([port]) + bytes(frame))


if __name__ == "__main__":
    if os.environ.get("ONLY") == "pipeline":
        pipeline_seeds()
    else:
        main()
        pipeline_seeds()
