#!/usr/bin/env python3
"""Generates frames with scapy and scapy's own decoding of their fields.

Output (stdout), one frame per line, tab separated:
    kind  expect  hex  fields
expect is "ok" (well-formed: the Rust parser must agree field by field), "error"
(truncated: the parser must return an error) or "any" (fuzzed: it must not panic).
fields is "key=value;key=value..." as decoded by scapy from the bytes, not from the
values used to build them.

Usage: frames.py SEED GOOD_PER_KIND MALFORMED
"""
import ipaddress
import random
import sys

from scapy.all import (ARP, GRE, ICMP, IP, TCP, UDP, Dot1AD, Dot1Q, Ether, IPv6,
                       IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop,
                       IPv6ExtHdrRouting, ICMPv6EchoReply, ICMPv6EchoRequest,
                       ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6NDOptDstLLAddr,
                       ICMPv6NDOptSrcLLAddr, ICMPv6PacketTooBig, ICMPv6TimeExceeded,
                       Raw, bind_layers, conf, fragment, fuzz)
from scapy.contrib.mpls import MPLS
from scapy.layers.sctp import (SCTP, SCTPChunkAbort, SCTPChunkData, SCTPChunkError, SCTPChunkInit,
                               SCTPChunkSACK, SCTPChunkShutdownComplete)
from scapy.layers.vxlan import VXLAN

bind_layers(UDP, MPLS, dport=6635)
bind_layers(GRE, MPLS, proto=0x8847)
conf.verb = 0

R = random.Random(int(sys.argv[1]) if len(sys.argv) > 1 else 1)


def mac():
    return "02:%02x:%02x:%02x:%02x:%02x" % tuple(R.randrange(256) for _ in range(5))


def v4():
    return str(ipaddress.IPv4Address(R.randrange(1, 2**32 - 1)))


def v6():
    return str(ipaddress.IPv6Address(R.randrange(1, 2**128 - 1)))


def port():
    # Avoid the tunnel ports so a plain UDP frame is not read as a tunnel.
    p = R.randrange(1, 65536)
    return p if p not in (4789, 6635) else 1


def payload():
    return Raw(bytes(R.randrange(256) for _ in range(R.randrange(0, 64))))


def ip4(**kw):
    flags = R.choice(["", "DF"])
    return IP(src=v4(), dst=v4(), ttl=R.randrange(1, 256), id=R.randrange(65536),
              tos=R.randrange(256), flags=flags, **kw)


def ip6(**kw):
    return IPv6(src=v6(), dst=v6(), hlim=R.randrange(256), tc=R.randrange(256),
                fl=R.randrange(2**20), **kw)


def l4(v6=False):
    c = R.randrange(4)
    if c == 0:
        return UDP(sport=port(), dport=port()) / payload()
    if c == 1:
        return TCP(sport=port(), dport=port(), seq=R.randrange(2**32), ack=R.randrange(2**32),
                   flags=R.randrange(256), window=R.randrange(65536)) / payload()
    if c == 2:
        chunk = R.choice([SCTPChunkInit(init_tag=R.randrange(1, 2**32)),
                          SCTPChunkData(tsn=R.randrange(2**32), data=bytes(payload())),
                          SCTPChunkAbort(), SCTPChunkShutdownComplete(),
                          # An ABORT may come behind control chunks (RFC 9260 3.3.7).
                          SCTPChunkSACK(cumul_tsn_ack=R.randrange(2**32)) / SCTPChunkAbort(),
                          SCTPChunkSACK() / SCTPChunkError(error_causes=bytes(R.randrange(1, 9)))
                          / SCTPChunkAbort()])
        return SCTP(sport=port(), dport=port(), tag=R.randrange(2**32)) / chunk
    if v6:
        return R.choice([ICMPv6EchoRequest, ICMPv6EchoReply])(id=R.randrange(65536), seq=R.randrange(65536)) / payload()
    return ICMP(type=R.choice([0, 8]), id=R.randrange(65536), seq=R.randrange(65536)) / payload()


def sctp_closing(sctp):
    """TCP's RST for the first ABORT among scapy's decoded chunks, FIN for a SHUTDOWN
    COMPLETE, else 0."""
    chunk = sctp.payload
    while chunk and hasattr(chunk, "type"):
        if chunk.type in (6, 14):
            return {6: 4, 14: 1}[chunk.type]
        chunk = chunk.payload
    return 0


def inner_ip():
    return ip4() / l4() if R.random() < 0.5 else ip6() / l4(True)


def outer_ip(proto_layer):
    return ip4() / proto_layer if R.random() < 0.5 else ip6() / proto_layer


def mpls_stack():
    n = R.randrange(1, 4)
    stack = None
    for i in range(n):
        e = MPLS(label=R.randrange(16, 2**20), cos=R.randrange(8), ttl=R.randrange(256), s=int(i == n - 1))
        stack = e if stack is None else stack / e
    return stack


def gre(proto_payload):
    kw = {}
    if R.random() < 0.5:
        kw.update(key_present=1, key=R.randrange(2**32))
    if R.random() < 0.5:
        kw.update(seqnum_present=1, sequence_number=R.randrange(2**32))
    if R.random() < 0.5:
        kw.update(chksum_present=1)
    return GRE(**kw) / proto_payload


KINDS = {
    "ipv4": lambda: Ether(src=mac(), dst=mac()) / ip4() / l4(),
    "ipv4_options": lambda: Ether(src=mac(), dst=mac()) / ip4(options=b"\x94\x04\x00\x00" * R.randrange(1, 5)) / l4(),
    "ipv4_fragment": lambda: Ether(src=mac(), dst=mac()) / IP(src=v4(), dst=v4(), flags=R.choice(["MF", ""]), frag=R.randrange(1, 8000)) / payload(),
    # The first fragment of a datagram: its UDP length counts the whole datagram.
    "ipv4_first_fragment": lambda: Ether(src=mac(), dst=mac()) / fragment(
        ip4() / R.choice([UDP(sport=port(), dport=port()), TCP(sport=port(), dport=port(), seq=R.randrange(2**32))])
        / Raw(bytes(R.randrange(256) for _ in range(R.randrange(80, 400)))), fragsize=R.choice([32, 40, 64]))[0],
    "ipv4_icmp_error": lambda: Ether(src=mac(), dst=mac()) / ip4() / R.choice([
        ICMP(type=3, code=4, nexthopmtu=R.randrange(68, 9000)), ICMP(type=11, code=R.randrange(2)), ICMP(type=3, code=R.randrange(16))]) / ip4() / UDP(sport=port(), dport=port()),
    "ipv6": lambda: Ether(src=mac(), dst=mac()) / ip6() / l4(True),
    "ipv6_ext": lambda: Ether(src=mac(), dst=mac()) / ip6() / IPv6ExtHdrHopByHop() / IPv6ExtHdrRouting(addresses=[v6() for _ in range(R.randrange(3))], segleft=0) / IPv6ExtHdrDestOpt() / l4(True),
    "ipv6_fragment": lambda: Ether(src=mac(), dst=mac()) / ip6() / IPv6ExtHdrFragment(offset=R.randrange(0, 8000), m=R.randrange(2), id=R.randrange(2**32)) / l4(True),
    "ipv6_icmp": lambda: Ether(src=mac(), dst=mac()) / ip6() / R.choice([
        ICMPv6PacketTooBig(mtu=R.randrange(1280, 9000)) / ip6() / UDP(sport=port(), dport=port()),
        ICMPv6TimeExceeded(code=R.randrange(2)) / ip6() / UDP(sport=port(), dport=port()),
        ICMPv6ND_NS(tgt=v6()) / ICMPv6NDOptSrcLLAddr(lladdr=mac()),
        ICMPv6ND_NA(tgt=v6(), R=R.randrange(2), S=R.randrange(2), O=R.randrange(2)) / ICMPv6NDOptDstLLAddr(lladdr=mac())]),
    "dot1q": lambda: Ether(src=mac(), dst=mac()) / Dot1Q(vlan=R.randrange(4095), prio=R.randrange(8), id=R.randrange(2)) / inner_ip(),
    "qinq": lambda: Ether(src=mac(), dst=mac()) / Dot1AD(vlan=R.randrange(4095)) / Dot1Q(vlan=R.randrange(4095)) / inner_ip(),
    "arp": lambda: Ether(src=mac(), dst=mac()) / ARP(op=R.choice([1, 2]), hwsrc=mac(), psrc=v4(), hwdst=mac(), pdst=v4()),
    "vxlan": lambda: Ether(src=mac(), dst=mac()) / outer_ip(UDP(sport=port(), dport=4789) / VXLAN(vni=R.randrange(2**24)) / Ether(src=mac(), dst=mac()) / inner_ip()),
    "mpls_udp": lambda: Ether(src=mac(), dst=mac()) / outer_ip(UDP(sport=port(), dport=6635) / mpls_stack() / inner_ip()),
    "mpls_gre": lambda: Ether(src=mac(), dst=mac()) / outer_ip(gre(mpls_stack() / inner_ip())),
    "gre_ip": lambda: Ether(src=mac(), dst=mac()) / outer_ip(gre(inner_ip())),
    "gre_eth": lambda: Ether(src=mac(), dst=mac()) / outer_ip(gre(Ether(src=mac(), dst=mac()) / inner_ip())),
}


def hex6(addr):
    return ipaddress.IPv6Address(addr).packed.hex()


def decode(frame):
    """scapy's reading of the bytes, flattened."""
    f = {}
    layer = Ether(frame)
    prefix = "o"
    while layer is not None and not isinstance(layer, (Raw,)) and layer.name != "NoPayload":
        p = prefix
        if isinstance(layer, Ether):
            f[p + ".eth.src"], f[p + ".eth.dst"] = layer.src, layer.dst
        elif isinstance(layer, (Dot1Q, Dot1AD)):
            f[p + ".vlan.vids"] = f.get(p + ".vlan.vids", "") + ("," if p + ".vlan.vids" in f else "") + str(layer.vlan)
            if isinstance(layer, Dot1Q) and not isinstance(layer.underlayer, Dot1AD):
                f[p + ".vlan.pcp"] = layer.prio
        elif isinstance(layer, ARP):
            f.update({p + ".arp.op": layer.op, p + ".arp.psrc": layer.psrc, p + ".arp.pdst": layer.pdst,
                      p + ".arp.hwsrc": layer.hwsrc, p + ".arp.hwdst": layer.hwdst})
        elif isinstance(layer, IP) and not isinstance(layer.underlayer, ICMP):
            f.update({p + ".ip.src": layer.src, p + ".ip.dst": layer.dst, p + ".ip.ttl": layer.ttl,
                      p + ".ip.proto": layer.proto, p + ".ip.len": layer.len, p + ".ip.id": layer.id,
                      p + ".ip.df": int(layer.flags.DF), p + ".ip.mf": int(layer.flags.MF),
                      p + ".ip.frag": layer.frag * 8, p + ".ip.tos": layer.tos, p + ".ip.ihl": layer.ihl})
        elif isinstance(layer, IPv6) and not isinstance(layer.underlayer, (ICMPv6PacketTooBig, ICMPv6TimeExceeded)):
            f.update({p + ".ip6.src": hex6(layer.src), p + ".ip6.dst": hex6(layer.dst), p + ".ip.ttl": layer.hlim,
                      p + ".ip6.plen": layer.plen, p + ".ip6.tc": layer.tc, p + ".ip6.fl": layer.fl})
            f[p + ".ip.proto"] = layer.nh
        elif isinstance(layer, (IPv6ExtHdrHopByHop, IPv6ExtHdrRouting, IPv6ExtHdrDestOpt)):
            f[p + ".ip.proto"] = layer.nh
        elif isinstance(layer, IPv6ExtHdrFragment):
            f.update({p + ".ip.proto": layer.nh, p + ".frag.offset": layer.offset * 8,
                      p + ".frag.m": layer.m, p + ".frag.id": layer.id})
            if layer.offset != 0:
                break
        elif isinstance(layer, (UDP, TCP)):
            f[p + ".l4.sport"], f[p + ".l4.dport"] = layer.sport, layer.dport
            if isinstance(layer, TCP):
                f.update({p + ".tcp.flags": int(layer.flags), p + ".tcp.seq": layer.seq,
                          p + ".tcp.ack": layer.ack, p + ".tcp.window": layer.window})
        elif isinstance(layer, SCTP):
            f.update({p + ".l4.sport": layer.sport, p + ".l4.dport": layer.dport, p + ".sctp.tag": layer.tag,
                      p + ".sctp.closing": sctp_closing(layer)})
            break
        elif isinstance(layer, ICMP):
            f.update({p + ".icmp.type": layer.type, p + ".icmp.code": layer.code})
            if layer.type in (0, 8):
                f[p + ".icmp.id"] = layer.id
            if layer.type == 3 and layer.code == 4:
                f[p + ".icmp.mtu"] = layer.nexthopmtu
        elif isinstance(layer, (ICMPv6EchoRequest, ICMPv6EchoReply)):
            f.update({p + ".icmp.type": layer.type, p + ".icmp.code": layer.code, p + ".icmp.id": layer.id})
        elif isinstance(layer, ICMPv6PacketTooBig):
            f.update({p + ".icmp.type": 2, p + ".icmp.code": layer.code, p + ".icmp.mtu": layer.mtu})
        elif isinstance(layer, ICMPv6TimeExceeded):
            f.update({p + ".icmp.type": 3, p + ".icmp.code": layer.code})
        elif isinstance(layer, ICMPv6ND_NS):
            f.update({p + ".icmp.type": 135, p + ".nd.target": hex6(layer.tgt)})
        elif isinstance(layer, ICMPv6ND_NA):
            f.update({p + ".icmp.type": 136, p + ".nd.target": hex6(layer.tgt),
                      p + ".nd.flags": layer.R * 4 + layer.S * 2 + layer.O})
        elif isinstance(layer, (ICMPv6NDOptSrcLLAddr, ICMPv6NDOptDstLLAddr)):
            f[p + ".nd.lladdr"] = layer.lladdr
        elif isinstance(layer, VXLAN):
            f.update({"t.kind": "vxlan", "t.vni": layer.vni})
            prefix = "i"
        elif isinstance(layer, GRE):
            f.update({"t.gre.proto": layer.proto,
                      "t.gre.key": layer.key if layer.key_present else "none",
                      "t.gre.seq": layer.sequence_number if layer.seqnum_present else "none",
                      "t.gre.csum": layer.chksum_present})
            f["t.kind"] = "mpls_gre" if layer.proto == 0x8847 else "gre"
            prefix = "i"
        elif isinstance(layer, MPLS):
            f["t.labels"] = f.get("t.labels", "") + ("," if "t.labels" in f else "") + str(layer.label)
            if "t.kind" not in f:
                f["t.kind"] = "mpls_udp"
            prefix = "i"
        if isinstance(layer, (ICMP, ICMPv6PacketTooBig, ICMPv6TimeExceeded)):
            break
        layer = layer.payload
    return f


def emit(kind, expect, frame, fields):
    kv = ";".join("%s=%s" % (k, v) for k, v in sorted(fields.items()))
    print("%s\t%s\t%s\t%s" % (kind, expect, frame.hex(), kv))


def main():
    per_kind = int(sys.argv[2]) if len(sys.argv) > 2 else 130
    malformed = int(sys.argv[3]) if len(sys.argv) > 3 else 600
    good = []
    for kind, make in KINDS.items():
        for _ in range(per_kind):
            frame = bytes(make())
            good.append((kind, frame))
            emit(kind, "ok", frame, decode(frame))
    kinds = list(KINDS.items())
    for i in range(malformed):
        kind, frame = R.choice(good)
        if i % 3 == 0:
            # Cut short: some length field no longer fits, so this must be an error.
            emit(kind + "_truncated", "error", frame[:R.randrange(0, len(frame))], {})
        elif i % 3 == 1:
            # scapy's fuzz(): every field we did not set (lengths, checksums, IHL, flags,
            # offsets, versions) takes a random value.
            kind, make = R.choice(kinds)
            try:
                raw = bytes(fuzz(make()))
            except Exception:
                raw = frame[:14] + bytes(R.randrange(256) for _ in range(40))
            emit(kind + "_fuzzed", "any", raw, {})
        else:
            # A few random bytes of the headers overwritten.
            raw = bytearray(frame)
            for _ in range(R.randrange(1, 5)):
                raw[R.randrange(min(len(raw), 96))] = R.randrange(256)
            emit(kind + "_flipped", "any", bytes(raw), {})


if __name__ == "__main__":
    main()
