//! Ports set up through the C API beyond `vr_router_add_port`: a second address (a
//! dual-stack workload) and an MTU, checked by traffic through in-memory ports, and the
//! calls' bad input refused with a message.

mod common;

use std::ffi::CString;
use std::ptr;

use common::*;
use vrouter::wire::compose::{Header, frame, ip_header};
use vrouter::wire::ethernet::{EtherType, EthernetRepr, MacAddr};
use vrouter::wire::ip::IpProtocol;
use vrouter::wire::ipv4::Ipv4Repr;
use vrouter::wire::parse::parse;
use vrouter::wire::udp::UdpRepr;
use vrouter_c::*;

/// Each workload given an IPv6 address (and gateway) beside its IPv4 one: IPv6 flows
/// between them, hop limit lowered, and a source the port was not given is spoofed.
#[test]
fn a_second_address_makes_a_workload_dual_stack() {
    let r = two_workloads();
    for i in 0..2u32 {
        let (me, gw) = (c(&format!("fd00:{}::2", i + 1)), c(&format!("fd00:{}::1", i + 1)));
        assert_eq!(
            vr_router_add_port_address(r, i, me.as_ptr(), gw.as_ptr()),
            VrResult::VrOk
        );
        let host = c(&format!("fd00:{}::2/128", i + 1));
        assert_eq!(vr_router_add_route(r, 1, host.as_ptr(), i + 1), VrResult::VrOk);
    }
    assert_eq!(vr_router_start(r), VrResult::VrOk);
    let v6 = |src: &str| ip_header(ip(src), ip("fd00:2::2"), IpProtocol::Udp).unwrap();
    let [back, out, ..] = through(r, 0, &udp(0, v6("fd00:1::2"), 20));
    assert!(back.is_empty());
    assert_eq!(out.len(), 1, "w1 -> w2 over IPv6");
    let m = parse(&out[0]).unwrap();
    assert_eq!((m.outer.key.src_ip(), m.outer.ttl), (Some(ip("fd00:1::2")), 63));
    assert_eq!(&out[0][..6], &WL[1], "to w2's MAC");
    // IPv4 still flows, and an IPv6 source that is not w1's is dropped.
    let v4 = ip_header(ip("10.0.1.2"), ip("10.0.2.2"), IpProtocol::Udp).unwrap();
    assert_eq!(through(r, 0, &udp(0, v4, 20))[1].len(), 1);
    let mut st = VrStats::default();
    assert_eq!(vr_router_stats(r, &mut st), VrResult::VrOk);
    assert!(through(r, 0, &udp(0, v6("fd00:1::99"), 20)).iter().all(Vec::is_empty));
    let dropped = st.dropped;
    assert_eq!(vr_router_stats(r, &mut st), VrResult::VrOk);
    assert_eq!(st.dropped, dropped + 1, "spoofed");
    // Its IPv6 address taken back, w1's IPv6 packets are spoofed too. The port stays
    // the same port: an IPv4 frame queued before the change goes through after it.
    let queued = udp(0, v4, 20);
    assert_eq!(vr_router_push(r, 0, queued.as_ptr(), queued.len()), VrResult::VrOk);
    let (mine, gw) = (c("fd00:1::2"), c("fd00:1::1"));
    assert_eq!(
        vr_router_remove_port_address(r, 0, mine.as_ptr(), gw.as_ptr()),
        VrResult::VrOk
    );
    assert_eq!(vr_router_apply_ports(r, ptr::null(), 0), VrResult::VrOk);
    let out = through(r, 0, &udp(0, v6("fd00:1::2"), 20));
    assert_eq!(out[1].len(), 1, "the queued IPv4 frame, and not the IPv6 one");
    assert_eq!(parse(&out[1][0]).unwrap().outer.key.src_ip(), Some(ip("10.0.1.2")));
    assert_eq!(vr_router_stats(r, &mut st), VrResult::VrOk);
    assert_eq!(st.dropped, dropped + 2, "spoofed now");
    assert_eq!(dropped_for(r, "Spoofed"), 2);
    // Per port, across the port change: w1's port took the five frames pushed, w2's
    // sent the three that passed.
    let port = |p| {
        let mut ps = VrPortStats::default();
        assert_eq!(vr_router_port_stats(r, p, &mut ps), VrResult::VrOk);
        (ps.rx, ps.tx, ps.state)
    };
    assert_eq!((port(0), port(1)), ((5, 0, VR_PORT_UP), (0, 3, VR_PORT_UP)));
    let mut ps = VrPortStats::default();
    assert_eq!(vr_router_port_stats(r, 2, &mut ps), VrResult::VrInvalidArgument);
    assert_eq!(
        last_error(r),
        "no counted port 2 (the router has 2; the first 256 are counted)"
    );
    assert_eq!(
        drops(r).len(),
        vrouter::DropReason::ALL.len(),
        "every reason, counted or not"
    );
    assert_eq!(vr_router_drops(r, None, ptr::null_mut()), VrResult::VrNullParameter);
    let v4 = ip_header(ip("10.0.1.2"), ip("10.0.2.2"), IpProtocol::Udp).unwrap();
    assert_eq!(through(r, 0, &udp(0, v4, 20))[1].len(), 1, "IPv4 as before");
    assert_eq!(vr_router_stop(r), VrResult::VrOk);
    assert_eq!(vr_router_free(r), VrResult::VrOk);
}

/// A port's MTU is what it sends whole: a longer IPv4 packet that may be fragmented is
/// split to it, one that may not is answered with fragmentation needed (naming the MTU).
#[test]
fn a_port_mtu_splits_or_refuses_what_it_cannot_carry() {
    let r = two_workloads();
    assert_eq!(vr_router_set_port_mtu(r, 1, 1280), VrResult::VrOk);
    assert_eq!(vr_router_start(r), VrResult::VrOk);
    let v4 = |dont_frag| {
        Header::Ipv4(Ipv4Repr {
            dont_frag,
            ..Ipv4Repr::new(
                "10.0.1.2".parse().unwrap(),
                "10.0.2.2".parse().unwrap(),
                IpProtocol::Udp,
            )
        })
    };
    let [back, out, ..] = through(r, 0, &udp(0, v4(false), 1400));
    assert!(back.is_empty());
    assert_eq!(out.len(), 2, "split in two");
    assert!(out.iter().all(|f| f.len() - 14 <= 1280), "each fits the MTU");
    let [back, out, ..] = through(r, 0, &udp(0, v4(true), 1400));
    assert!(out.is_empty());
    assert_eq!(back.len(), 1, "an ICMP error back to w1");
    let m = parse(&back[0]).unwrap();
    let icmp = &back[0][usize::from(m.outer.l4)..];
    assert_eq!((icmp[0], icmp[1]), (3, 4), "fragmentation needed");
    assert_eq!(u16::from_be_bytes([icmp[6], icmp[7]]), 1280, "the next hop's MTU");
    assert_eq!(vr_router_stop(r), VrResult::VrOk);
    assert_eq!(vr_router_free(r), VrResult::VrOk);
}

#[test]
fn bad_port_changes_are_refused_and_change_nothing() {
    let r = two_workloads();
    let mut fabric = 0;
    let me = c("192.0.2.1");
    let added = vr_router_add_port(
        r,
        VR_PORT_FABRIC,
        0,
        GW[0].as_ptr(),
        me.as_ptr(),
        ptr::null(),
        ptr::null(),
        &mut fabric,
    );
    assert_eq!(added, VrResult::VrOk);
    let (v6, gw, junk) = (c("fd00:9::1"), c("fd00:9::fe"), c("10.0.1.300"));
    let (have, gw0) = (c("10.0.1.2"), c("10.0.1.1"));
    let cases: [(&dyn Fn() -> VrResult, &str); 11] = [
        (&|| vr_router_set_port_mtu(r, 0, 575), "MTU 575 is outside 576..=9000"),
        (&|| vr_router_set_port_mtu(r, 0, 9001), "MTU 9001 is outside 576..=9000"),
        (&|| vr_router_set_port_mtu(r, 7, 1500), "no port 7 (the router has 3)"),
        (
            &|| vr_router_add_port_address(r, 0, have.as_ptr(), ptr::null()),
            "port 0 has 10.0.1.2 already",
        ),
        (
            &|| vr_router_add_port_address(r, 0, junk.as_ptr(), ptr::null()),
            "address `10.0.1.300` is not an IP address",
        ),
        (
            &|| vr_router_add_port_address(r, fabric, v6.as_ptr(), gw.as_ptr()),
            "port 2 is not a workload port: it has no gateway",
        ),
        (
            &|| vr_router_add_port_address(r, 9, v6.as_ptr(), ptr::null()),
            "no port 9 (the router has 3)",
        ),
        (
            &|| vr_router_remove_port_address(r, 0, have.as_ptr(), gw0.as_ptr()),
            "10.0.1.2 is port 0's last address: a workload port keeps one (remove the port instead)",
        ),
        (
            &|| vr_router_remove_port_address(r, 0, v6.as_ptr(), ptr::null()),
            "port 0 has no address fd00:9::1",
        ),
        (
            &|| vr_router_remove_port_address(r, 0, have.as_ptr(), gw.as_ptr()),
            "port 0 has no gateway fd00:9::fe",
        ),
        (
            &|| vr_router_remove_port_address(r, fabric, me.as_ptr(), gw0.as_ptr()),
            "port 2 is not a workload port: it has no gateway",
        ),
    ];
    for (call, why) in cases {
        assert_eq!(call(), VrResult::VrInvalidArgument, "{why}");
        assert_eq!(last_error(r), why);
    }
    assert_eq!(
        vr_router_add_port_address(r, 0, ptr::null(), ptr::null()),
        VrResult::VrNullParameter
    );
    // A fabric port takes a second router address (its IPv6 underlay one, say), and
    // gives either back.
    let fabric_address = |add: bool, a: &CString| {
        let f = if add {
            vr_router_add_port_address
        } else {
            vr_router_remove_port_address
        };
        f(r, fabric, a.as_ptr(), ptr::null())
    };
    assert_eq!(fabric_address(true, &v6), VrResult::VrOk);
    assert_eq!(fabric_address(false, &v6), VrResult::VrOk);
    assert_eq!(fabric_address(false, &me), VrResult::VrOk);
    assert_eq!(vr_router_start(r), VrResult::VrOk);
    // Port 0 kept its MTU of 1500: a 1,428-byte packet that may not be split goes whole.
    let v4 = ip_header(ip("10.0.2.2"), ip("10.0.1.2"), IpProtocol::Udp).unwrap();
    let [out, back, ..] = through(r, 1, &udp(1, v4, 1400));
    assert!(back.is_empty());
    assert_eq!(out.iter().map(Vec::len).collect::<Vec<_>>(), [14 + 1428]);
    assert_eq!(vr_router_stop(r), VrResult::VrOk);
    assert_eq!(vr_router_free(r), VrResult::VrOk);
}

/// A host port (the exception path): a fabric packet to the node's address goes out of
/// it to the host side's MAC, what the host sends is routed in its VRF, and only one
/// host port is taken.
#[test]
fn a_host_port_takes_the_nodes_traffic_and_routes_the_hosts() {
    let r = two_workloads();
    let (fab_mac, host_mac, tap_mac) = ([2, 0xa, 0, 0, 0, 3], [2, 0, 0, 0, 0, 0x55], [2, 0xa, 0, 0, 0, 4]);
    let (mut fabric, mut host) = (0, 0);
    let me = c("192.0.2.1");
    let (no, none) = (ptr::null(), ptr::null());
    assert_eq!(
        vr_router_add_port(
            r,
            VR_PORT_FABRIC,
            0,
            fab_mac.as_ptr(),
            me.as_ptr(),
            none,
            no,
            &mut fabric
        ),
        VrResult::VrOk
    );
    let added = vr_router_add_port(
        r,
        VR_PORT_HOST,
        1,
        tap_mac.as_ptr(),
        no,
        host_mac.as_ptr(),
        no,
        &mut host,
    );
    assert_eq!((added, host), (VrResult::VrOk, 3));
    let mut again = 0;
    let second = vr_router_add_port(
        r,
        VR_PORT_HOST,
        1,
        tap_mac.as_ptr(),
        no,
        host_mac.as_ptr(),
        no,
        &mut again,
    );
    assert_eq!(second, VrResult::VrInvalidArgument);
    assert_eq!(last_error(r), "the router has a host port already");
    assert_eq!(vr_router_start(r), VrResult::VrOk);
    let eth = |src: [u8; 6], dst: [u8; 6]| EthernetRepr {
        src: MacAddr(src),
        dst: MacAddr(dst),
        ethertype: EtherType::Ipv4,
    };
    let u = Header::Udp(UdpRepr {
        src_port: 40000,
        dst_port: 22,
    });
    let to_node = frame(
        &[
            Header::Ethernet(eth([2, 0, 0, 0, 9, 9], fab_mac)),
            ip_header(ip("192.0.2.9"), ip("192.0.2.1"), IpProtocol::Udp).unwrap(),
            u,
        ],
        b"ssh?",
    )
    .unwrap();
    let out = through(r, fabric, &to_node);
    assert_eq!(out[3].len(), 1, "to the host: {out:?}");
    assert_eq!((&out[3][0][..6], &out[3][0][14..]), (&host_mac[..], &to_node[14..]));
    let from_host = frame(
        &[
            Header::Ethernet(eth(host_mac, tap_mac)),
            ip_header(ip("10.0.99.1"), ip("10.0.2.2"), IpProtocol::Udp).unwrap(),
            u,
        ],
        b"probe",
    )
    .unwrap();
    let out = through(r, host, &from_host);
    assert_eq!(out[1].len(), 1, "the host's packet routed to w2: {out:?}");
    assert_eq!(&out[1][0][..6], &WL[1]);
    assert_eq!(vr_router_stop(r), VrResult::VrOk);
    assert_eq!(vr_router_free(r), VrResult::VrOk);
}
