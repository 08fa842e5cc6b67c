/*
 * Embedding vrouter from C: a node with two workloads and a fabric port on in-memory
 * ports; one frame routed between the workloads, one encapsulated in VXLAN towards
 * another node; a policy denying a port range, then a new policy cutting an established
 * flow; counters and flows printed. Built and run (also under AddressSanitizer)
 * by `cargo test -p vrouter-ffi`.
 */
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include "vrouter.h"

#define CHECK(call)                                                                      \
    do {                                                                                 \
        vr_result rc_ = (call);                                                          \
        if (rc_ != VR_OK) {                                                              \
            fprintf(stderr, "%s: %s (%s)\n", #call, vr_result_message(rc_),             \
                    vr_router_last_error(router));                                       \
            return 1;                                                                    \
        }                                                                                \
    } while (0)

/* Writes the IPv4 header checksum of the 20-byte header at ip. */
static void ip_checksum(uint8_t *ip) {
    ip[10] = ip[11] = 0;
    uint32_t sum = 0;
    for (int i = 0; i < 20; i += 2) sum += (uint32_t)(ip[i] << 8 | ip[i + 1]);
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    sum = ~sum & 0xffff;
    ip[10] = (uint8_t)(sum >> 8); ip[11] = (uint8_t)sum;
}

/* A UDP/IPv4 frame from 10.0.1.2 port 40000 to dst:dport, Ethernet to the router's port MAC,
   marked expedited forwarding (DSCP 46). */
static size_t udp_frame(uint8_t *f, const uint8_t src_mac[6], const uint8_t dst_mac[6], const uint8_t dst[4], uint16_t dport) {
    memset(f, 0, 64);
    memcpy(f, dst_mac, 6);
    memcpy(f + 6, src_mac, 6);
    f[12] = 0x08; f[13] = 0x00;
    uint8_t *ip = f + 14;
    ip[0] = 0x45; ip[1] = 46 << 2; ip[3] = 46; ip[8] = 64; ip[9] = 17;
    ip[12] = 10; ip[13] = 0; ip[14] = 1; ip[15] = 2;
    memcpy(ip + 16, dst, 4);
    ip_checksum(ip);
    uint8_t *udp = ip + 20;
    udp[0] = 0x9c; udp[1] = 0x40; udp[2] = (uint8_t)(dport >> 8); udp[3] = (uint8_t)dport; udp[5] = 26;
    return 60;
}

/* Sends w1's UDP frame to dst:dport through the router and tries to pull what `out_port`
   got: the pull's result, its text. */
static const char *send_one(vr_router *router, uint32_t in_port, const uint8_t w1[6], const uint8_t gw1[6],
                            const uint8_t dst[4], uint16_t dport, uint32_t out_port) {
    uint8_t frame[2048], out[2048];
    size_t len = 0, n = udp_frame(frame, w1, gw1, dst, dport);
    uint64_t processed = 0;
    vr_result rc = vr_router_push(router, in_port, frame, n);
    if (rc == VR_OK) rc = vr_router_poll(router, &processed);
    if (rc == VR_OK) rc = vr_router_pull(router, out_port, out, sizeof out, &len);
    return vr_result_message(rc);
}

static void print_flow(void *ctx, const char *line) {
    (void)ctx;
    printf("  flow: %s\n", line);
}

static void print_drop(void *ctx, const char *name, const char *description, uint64_t count) {
    (void)ctx;
    if (count > 0) printf("  dropped: %s %llu (%s)\n", name, (unsigned long long)count, description);
}

int main(void) {
    vr_router *router = NULL;
    const uint8_t gw1[6] = {2, 0xa, 0, 0, 0, 1}, gw2[6] = {2, 0xa, 0, 0, 0, 2}, fab[6] = {2, 0xa, 0, 0, 0, 3};
    const uint8_t w1[6] = {2, 0, 0, 0, 1, 2}, w2[6] = {2, 0, 0, 0, 2, 2}, peer[6] = {2, 0, 0, 0, 9, 9};
    uint32_t p_w1, p_w2, p_fab;

    CHECK(vr_router_new(&router));
    /* A small flow table (slots; a flow takes two), a per-tenant cap, short UDP idling. */
    vr_flow_options flows = {.entries = 4096, .vrf_quota = 1000, .udp = 10};
    CHECK(vr_router_set_flow_options(router, &flows));
    CHECK(vr_router_add_port(router, VR_PORT_WORKLOAD, 1, gw1, "10.0.1.2", w1, "10.0.1.1", &p_w1));
    CHECK(vr_router_add_port(router, VR_PORT_WORKLOAD, 1, gw2, "10.0.2.2", w2, "10.0.2.1", &p_w2));
    CHECK(vr_router_add_port(router, VR_PORT_FABRIC, 0, fab, "192.0.2.1", NULL, NULL, &p_fab));
    /* Dual stack: w1's IPv6 address and gateway beside its IPv4 ones. Its link carries
       1450 bytes (as behind an overlay); the fabric keeps the 1500 every port starts with. */
    CHECK(vr_router_add_port_address(router, p_w1, "fd00:1::2", "fd00:1::1"));
    CHECK(vr_router_set_port_mtu(router, p_w1, 1450));
    /* A port on a trunk would take its VLAN's tag off and put it on; 4095 is reserved. */
    vr_result vlan_rc = vr_router_set_port_vlan(router, p_fab, 4095);
    printf("vlan 4095: %s: %s\n", vr_result_message(vlan_rc), vr_router_last_error(router));
    CHECK(vr_router_add_tunnel_endpoint(router, "192.0.2.1"));
    /* Tunnel packets over IPv6 without a UDP checksum are taken (the default). */
    CHECK(vr_router_set_ipv6_zero_udp_checksum(router, true));
    /* TCP SYNs announce no larger segments than each path carries. */
    CHECK(vr_router_set_tcp_mss_clamp(router, VR_MSS_CLAMP_PATH));
    vr_result tiny_mss = vr_router_set_tcp_mss_clamp(router, 100);
    printf("mss 100: %s: %s\n", vr_result_message(tiny_mss), vr_router_last_error(router));
    CHECK(vr_router_add_vrf(router, 1));
    CHECK(vr_router_set_nexthop_port(router, 1, p_w1, NULL));
    CHECK(vr_router_set_nexthop_port(router, 2, p_w2, NULL));
    CHECK(vr_router_set_nexthop_port(router, 3, p_fab, NULL));
    CHECK(vr_router_set_nexthop_tunnel(router, 4, VR_TUNNEL_VXLAN, 42, "192.0.2.1", "192.0.2.2", 0));
    /* The remote VTEP's MAC for the inner header (a Linux VXLAN device wants its own). */
    const uint8_t vtep[6] = {2, 0, 0, 0, 7, 7};
    CHECK(vr_router_set_nexthop_router_mac(router, 4, vtep));
    vr_result not_tunnel = vr_router_set_nexthop_router_mac(router, 3, vtep);
    printf("router mac on a port: %s: %s\n", vr_result_message(not_tunnel), vr_router_last_error(router));
    /* The inner packet's DSCP on the outer header too; a code point must fit 6 bits. */
    CHECK(vr_router_set_nexthop_dscp(router, 4, VR_DSCP_INHERIT));
    vr_result wide_dscp = vr_router_set_nexthop_dscp(router, 4, 64);
    printf("dscp 64: %s: %s\n", vr_result_message(wide_dscp), vr_router_last_error(router));
    /* Over IPv4 a tunnel's UDP checksum is zero anyway: nothing to leave out. */
    vr_result zero_v4 = vr_router_set_nexthop_zero_udp_checksum(router, 4, true);
    printf("zero checksum over IPv4: %s: %s\n", vr_result_message(zero_v4), vr_router_last_error(router));
    CHECK(vr_router_add_route(router, 1, "10.0.1.2/32", 1));
    CHECK(vr_router_add_route(router, 1, "10.0.2.2/32", 2));
    CHECK(vr_router_add_route(router, 1, "10.9.0.0/16", 4));
    CHECK(vr_router_add_route(router, 0, "192.0.2.0/24", 3));
    CHECK(vr_router_set_vni(router, 42, 1));
    /* VRF 2 leaks into VRF 1 for 10/8; nexthop 21 sends three flows in four to w1. */
    CHECK(vr_router_add_vrf(router, 2));
    CHECK(vr_router_set_nexthop_lookup_vrf(router, 20, 1));
    CHECK(vr_router_add_route(router, 2, "10.0.0.0/8", 20));
    const uint32_t members[2] = {1, 2}, weights[2] = {3, 1}, zero[2] = {0, 1};
    CHECK(vr_router_set_nexthop_ecmp_weighted(router, 21, members, weights, 2));
    vr_result zero_rc = vr_router_set_nexthop_ecmp_weighted(router, 22, members, zero, 2);
    printf("zero weight: %s: %s\n", vr_result_message(zero_rc), vr_router_last_error(router));
    CHECK(vr_router_set_neighbor(router, p_w1, "10.0.1.2", w1));
    CHECK(vr_router_set_neighbor(router, p_w2, "10.0.2.2", w2));
    CHECK(vr_router_set_neighbor(router, p_fab, "192.0.2.2", peer));
    /* Another tenant's 10.9.0.5, in VNI 43: not the inner MAC of VNI 42's 10.9.0.5. */
    const uint8_t other[6] = {2, 0, 0, 0, 0x43, 5};
    CHECK(vr_router_set_overlay_neighbor(router, 43, "10.9.0.5", other));
    vr_result no_entry = vr_router_remove_overlay_neighbor(router, 42, "10.9.0.5");
    printf("overlay neighbour: %s: %s\n", vr_result_message(no_entry), vr_router_last_error(router));
    /* w2 accepts nothing on UDP 5000-5999 from 10/8 (logged); everything else is allowed. */
    vr_rule deny_range = {.priority = 10, .action = VR_DENY_LOG, .proto = 17, .src = "10.0.0.0/8",
                         .dst_port_min = 5000, .dst_port_max = 5999};
    CHECK(vr_router_set_policy(router, p_w2, VR_INGRESS, &deny_range, 1, VR_ALLOW));
    CHECK(vr_router_start(router));
    vr_result late = vr_router_set_ipv6_zero_udp_checksum(router, false);
    printf("zero checksums after start: %s\n", vr_result_message(late));

    /* A bad rule is refused with the rule and field named. */
    vr_rule backwards = {.action = VR_DENY, .proto = 6, .dst_port_min = 9000, .dst_port_max = 8000};
    vr_result bad_rule = vr_router_set_policy(router, p_w2, VR_INGRESS, &backwards, 1, VR_ALLOW);
    printf("bad rule: %s: %s\n", vr_result_message(bad_rule), vr_router_last_error(router));

    /* A bad prefix is an error with a message, not a crash. */
    vr_result rc = vr_router_add_route(router, 1, "10.0.0.1/8", 1);
    printf("bad route: %s: %s\n", vr_result_message(rc), vr_router_last_error(router));
    /* So is a VNI the VXLAN header cannot carry (it would go out as another), and a
       tunnel whose ends are of two address families (no outer header has both). */
    rc = vr_router_set_nexthop_tunnel(router, 9, VR_TUNNEL_VXLAN, 1u << 24, "192.0.2.1", "192.0.2.2", 0);
    printf("wide vni: %s: %s\n", vr_result_message(rc), vr_router_last_error(router));
    rc = vr_router_set_nexthop_tunnel(router, 9, VR_TUNNEL_VXLAN, 7, "192.0.2.1", "2001:db8::2", 0);
    printf("mixed ends: %s: %s\n", vr_result_message(rc), vr_router_last_error(router));

    uint8_t frame[2048];
    const uint8_t to_w2[4] = {10, 0, 2, 2}, to_remote[4] = {10, 9, 0, 5};
    size_t n = udp_frame(frame, w1, gw1, to_w2, 53);
    CHECK(vr_router_push(router, p_w1, frame, n));
    n = udp_frame(frame, w1, gw1, to_remote, 53);
    CHECK(vr_router_push(router, p_w1, frame, n));
    uint64_t processed = 0;
    CHECK(vr_router_poll(router, &processed));
    printf("processed %llu frames\n", (unsigned long long)processed);

    uint8_t out[2048];
    size_t len = 0;
    CHECK(vr_router_pull(router, p_w2, out, sizeof out, &len));
    printf("w2 got %zu bytes, ttl %u, dst mac %02x:%02x:%02x:%02x:%02x:%02x\n", len, out[22], out[0], out[1], out[2], out[3], out[4], out[5]);
    CHECK(vr_router_pull(router, p_fab, out, sizeof out, &len));
    unsigned vni = (unsigned)(out[46] << 16 | out[47] << 8 | out[48]);
    printf("fabric got %zu bytes: VXLAN udp port %u vni %u, inner dst %u.%u.%u.%u mac %02x:%02x:%02x:%02x:%02x:%02x, "
           "outer tos %#x inner tos %#x\n",
           len, (unsigned)(out[36] << 8 | out[37]), vni, out[80], out[81], out[82], out[83], out[50], out[51], out[52],
           out[53], out[54], out[55], out[15], out[65]);
    rc = vr_router_pull(router, p_fab, out, sizeof out, &len);
    printf("nothing more: %s\n", vr_result_message(rc));

    /* 1600 bytes of the same flow, without don't-fragment: split to fit the tunnel. */
    uint8_t big[1600];
    udp_frame(big, w1, gw1, to_remote, 53);
    memset(big + 42, 0x5a, sizeof big - 42);
    big[16] = (1586 >> 8); big[17] = (uint8_t)1586;
    big[38] = (1566 >> 8); big[39] = (uint8_t)1566;
    ip_checksum(big + 14);
    CHECK(vr_router_push(router, p_w1, big, sizeof big));
    CHECK(vr_router_poll(router, &processed));
    size_t pieces = 0, longest = 0;
    while (vr_router_pull(router, p_fab, out, sizeof out, &len) == VR_OK) {
        pieces++;
        if (len > longest) longest = len;
    }
    vr_stats split;
    CHECK(vr_router_stats(router, &split));
    printf("1600 bytes to the tunnel: %zu frames, the longest %zu bytes; fragmented %llu (fragments made %llu), "
           "icmp errors %llu, mss lowered %llu, path mtus learned %llu\n",
           pieces, longest, (unsigned long long)split.fragmented, (unsigned long long)split.fragments_made,
           (unsigned long long)split.icmp_errors, (unsigned long long)split.mss_clamped,
           (unsigned long long)split.path_mtus_learned);

    /* Where an address goes, as `ip route get` says: the route, the way out, the MAC. */
    vr_route route;
    CHECK(vr_router_route_get(router, 1, "10.9.7.7", &route));
    printf("route get 10.9.7.7: %s nexthop %u, resolved %u, out of port %d, mac known %u (%02x:%02x:%02x:%02x:%02x:%02x)\n",
           route.prefix, route.nexthop, route.resolved_nexthop, route.port, route.mac_known, route.mac[0], route.mac[1],
           route.mac[2], route.mac[3], route.mac[4], route.mac[5]);
    CHECK(vr_router_route_get(router, 2, "10.0.2.2", &route));
    printf("route get vrf 2 10.0.2.2: %s nexthop %u, resolved %u, out of port %d\n", route.prefix, route.nexthop,
           route.resolved_nexthop, route.port);
    rc = vr_router_route_get(router, 1, "172.16.0.1", &route);
    printf("route get 172.16.0.1: %s: %s\n", vr_result_message(rc), vr_router_last_error(router));

    /* Port 5353 falls in the denied range. */
    printf("to w2 port 5353: %s\n", send_one(router, p_w1, w1, gw1, to_w2, 5353, p_w2));

    /* A new policy denying UDP 53 cuts the established flow on its next packet. */
    vr_rule deny_dns = {.action = VR_DENY, .proto = 17, .dst_port_min = 53, .dst_port_max = 53};
    CHECK(vr_router_set_policy(router, p_w2, VR_INGRESS, &deny_dns, 1, VR_ALLOW));
    CHECK(vr_router_publish_policy(router));
    printf("to w2 port 53 after the new policy: %s\n", send_one(router, p_w1, w1, gw1, to_w2, 53, p_w2));

    vr_stats stats;
    CHECK(vr_router_stats(router, &stats));
    printf("stats: rx %llu tx %llu dropped %llu flows %llu\n", (unsigned long long)stats.rx, (unsigned long long)stats.tx,
           (unsigned long long)stats.dropped, (unsigned long long)stats.flows);
    /* Why: each drop reason with its count (the ones counted printed). */
    CHECK(vr_router_drops(router, print_drop, NULL));
    uint64_t vrf_flows, vrf_refused;
    CHECK(vr_router_vrf_flows(router, 1, &vrf_flows, &vrf_refused));
    printf("vrf 1: flows %llu of quota %u, refused %llu\n", (unsigned long long)vrf_flows, flows.vrf_quota,
           (unsigned long long)vrf_refused);
    CHECK(vr_router_dump_flows(router, print_flow, NULL));

    /* A running router takes new timeouts and quota (not a new size): read back what holds. */
    flows.udp = 60;
    flows.vrf_quota = 2000;
    CHECK(vr_router_set_flow_options(router, &flows));
    vr_flow_options now;
    CHECK(vr_router_get_flow_options(router, &now));
    printf("flow options now: %llu slots, udp timeout %u s, quota %u\n", (unsigned long long)now.entries, now.udp,
           now.vrf_quota);

    /* Clearing VRF 1's flows: their next packets are decided afresh. */
    uint64_t cleared;
    CHECK(vr_router_clear_flows(router, 1, &cleared));
    CHECK(vr_router_stats(router, &stats));
    printf("cleared %llu flow entries in vrf 1, %llu left\n", (unsigned long long)cleared,
           (unsigned long long)stats.flows);

    /* A pod comes (w3) and one goes (w2) while the router runs. The ports after w2 move
       down one index, with their nexthops; vr_router_apply_ports makes the change live
       (the flow table, counters and the kept ports' queues carry on). */
    const uint8_t gw3[6] = {2, 0xa, 0, 0, 0, 4}, w3[6] = {2, 0, 0, 0, 3, 2};
    uint32_t p_w3;
    CHECK(vr_router_add_port(router, VR_PORT_WORKLOAD, 1, gw3, "10.0.3.2", w3, "10.0.3.1", &p_w3));
    CHECK(vr_router_set_nexthop_port(router, 5, p_w3, NULL));
    CHECK(vr_router_add_route(router, 1, "10.0.3.2/32", 5));
    CHECK(vr_router_set_neighbor(router, p_w3, "10.0.3.2", w3));
    printf("publish with ports pending: %s\n", vr_result_message(vr_router_publish(router)));
    CHECK(vr_router_remove_port(router, p_w2));
    p_fab -= 1;
    p_w3 -= 1;
    CHECK(vr_router_apply_ports(router, NULL, 0));
    const uint8_t to_w3[4] = {10, 0, 3, 2};
    n = udp_frame(frame, w1, gw1, to_w3, 53);
    CHECK(vr_router_push(router, p_w1, frame, n));
    n = udp_frame(frame, w1, gw1, to_remote, 53);
    CHECK(vr_router_push(router, p_w1, frame, n));
    n = udp_frame(frame, w1, gw1, to_w2, 80);
    CHECK(vr_router_push(router, p_w1, frame, n));
    CHECK(vr_router_poll(router, &processed));
    CHECK(vr_router_pull(router, p_w3, out, sizeof out, &len));
    printf("after the change: w3 on port %u got %zu bytes, dst mac %02x:%02x:%02x:%02x:%02x:%02x\n", p_w3, len, out[0],
           out[1], out[2], out[3], out[4], out[5]);
    CHECK(vr_router_pull(router, p_fab, out, sizeof out, &len));
    printf("after the change: fabric on port %u got %zu bytes, vni %u\n", p_fab, len,
           (unsigned)(out[46] << 16 | out[47] << 8 | out[48]));
    CHECK(vr_router_stats(router, &stats));
    printf("after the change: rx %llu tx %llu dropped %llu\n", (unsigned long long)stats.rx,
           (unsigned long long)stats.tx, (unsigned long long)stats.dropped);

    /* The remote network is withdrawn: its established flow is re-decided on its next
       packet, which is dropped (no route) and counted. */
    CHECK(vr_router_remove_route(router, 1, "10.9.0.0/16"));
    CHECK(vr_router_publish(router));
    printf("after withdrawing 10.9.0.0/16: %s\n", send_one(router, p_w1, w1, gw1, to_remote, 53, p_fab));
    rc = vr_router_remove_route(router, 1, "10.9.0.0/16");
    printf("withdrawn twice: %s: %s\n", vr_result_message(rc), vr_router_last_error(router));
    CHECK(vr_router_stats(router, &stats));
    printf("after the withdrawal: rx %llu tx %llu dropped %llu\n", (unsigned long long)stats.rx,
           (unsigned long long)stats.tx, (unsigned long long)stats.dropped);

    CHECK(vr_router_free(router));
    /* The handle is gone: using it is an error, not a crash. */
    printf("after free: %s\n", vr_result_message(vr_router_stats(router, &stats)));
    printf("null handle: %s\n", vr_result_message(vr_router_poll(NULL, NULL)));
    return 0;
}
