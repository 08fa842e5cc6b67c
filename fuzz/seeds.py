#!/usr/bin/env python3
"""Writes the seed corpus: a few scapy-built frames of every kind, and each header cut
out of them for the per-header targets. Run from the repository root with Debian's
python3 (it has python3-scapy):  /usr/bin/python3 fuzz/seeds.py
"""
import hashlib
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "crates", "wire", "tests", "scapy"))
import frames  # noqa: E402
from scapy.all import (ARP, GRE, ICMP, IP, TCP, UDP, Dot1Q, Ether, IPv6,  # noqa: E402
                       IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting, IPv6ExtHdrDestOpt)
from scapy.contrib.mpls import MPLS  # noqa: E402
from scapy.layers.inet6 import _ICMPv6  # noqa: E402
from scapy.layers.vxlan import VXLAN  # noqa: E402

TARGET_LAYERS = {
    "ethernet": [Ether], "vlan": [Dot1Q], "arp": [ARP], "ipv4": [IP], "ipv6": [IPv6],
    "udp": [UDP], "tcp": [TCP], "icmpv4": [ICMP], "icmpv6": [_ICMPv6], "mpls": [MPLS],
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


if __name__ == "__main__":
    main()
