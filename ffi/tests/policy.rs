//! The C policy calls' bad input, called from Rust: each refusal has its code and a
//! message naming the rule and field.

mod common;

use std::ffi::CString;
use std::ptr;

use common::*;
use vrouter::wire::compose::{Header, frame, ip_header};
use vrouter::wire::ethernet::{EtherType, EthernetRepr, MacAddr};
use vrouter::wire::icmpv4::Icmpv4Repr;
use vrouter::wire::ip::IpProtocol;
use vrouter_c::*;

fn rule() -> VrRule {
    VrRule {
        priority: 0,
        action: VR_DENY,
        proto: 6,
        src: ptr::null(),
        dst: ptr::null(),
        src_port_min: 0,
        src_port_max: 0,
        dst_port_min: 22,
        dst_port_max: 22,
        match_icmp_type: false,
        icmp_type: 0,
        match_icmp_code: false,
        icmp_code: 0,
    }
}

#[test]
fn bad_rules_are_refused_with_rule_and_field_named() {
    let mut r = ptr::null_mut();
    assert_eq!(vr_router_new(&mut r), VrResult::VrOk);
    let (mac, gw, me) = (
        [2u8, 0, 0, 0, 0, 1],
        CString::new("10.0.1.1").unwrap(),
        CString::new("10.0.1.2").unwrap(),
    );
    let mut fabric = 0;
    let mut pod = 0;
    let fab_addr = CString::new("192.0.2.1").unwrap();
    assert_eq!(
        vr_router_add_port(
            r,
            VR_PORT_FABRIC,
            0,
            mac.as_ptr(),
            fab_addr.as_ptr(),
            ptr::null(),
            ptr::null(),
            &mut fabric
        ),
        VrResult::VrOk
    );
    assert_eq!(
        vr_router_add_port(
            r,
            VR_PORT_WORKLOAD,
            1,
            mac.as_ptr(),
            me.as_ptr(),
            mac.as_ptr(),
            gw.as_ptr(),
            &mut pod
        ),
        VrResult::VrOk
    );
    let good = rule();
    assert_eq!(
        vr_router_set_policy(r, pod, VR_INGRESS, &good, 1, VR_ALLOW),
        VrResult::VrOk
    );
    let bad_prefix = CString::new("10.0.0.1/8").unwrap();
    let cases: Vec<(u32, u8, VrRule, u8, VrResult, &str)> = vec![
        (
            fabric,
            VR_INGRESS,
            good,
            VR_ALLOW,
            VrResult::VrInvalidArgument,
            "port 0 is not a workload port",
        ),
        (
            pod,
            7,
            good,
            VR_ALLOW,
            VrResult::VrInvalidArgument,
            "direction 7 is not VR_INGRESS or VR_EGRESS",
        ),
        (
            pod,
            VR_EGRESS,
            VrRule { action: 9, ..good },
            VR_ALLOW,
            VrResult::VrInvalidArgument,
            "rules[0].action: action 9",
        ),
        (
            pod,
            VR_EGRESS,
            good,
            5,
            VrResult::VrInvalidArgument,
            "default_action: action 5",
        ),
        (
            pod,
            VR_EGRESS,
            VrRule {
                src: bad_prefix.as_ptr(),
                ..good
            },
            VR_ALLOW,
            VrResult::VrInvalidArgument,
            "rules[0].src: `10.0.0.1/8`",
        ),
        (
            pod,
            VR_EGRESS,
            VrRule { proto: 1, ..good },
            VR_ALLOW,
            VrResult::VrInvalidArgument,
            "rules[0].dst_ports",
        ),
        (
            pod,
            VR_EGRESS,
            VrRule {
                match_icmp_type: true,
                icmp_type: 8,
                dst_port_min: 0,
                dst_port_max: 0,
                ..good
            },
            VR_ALLOW,
            VrResult::VrInvalidArgument,
            "rules[0].icmp",
        ),
        (
            pod,
            VR_EGRESS,
            VrRule {
                proto: 1,
                match_icmp_code: true,
                dst_port_min: 0,
                dst_port_max: 0,
                ..good
            },
            VR_ALLOW,
            VrResult::VrInvalidArgument,
            "rules[0].icmp_code: a code needs match_icmp_type",
        ),
    ];
    for (port, dir, rule, default, code, want) in cases {
        assert_eq!(vr_router_set_policy(r, port, dir, &rule, 1, default), code, "{want}");
        let e = last_error(r);
        assert!(e.contains(want), "got `{e}`, want `{want}`");
    }
    assert_eq!(
        vr_router_set_policy(r, pod, VR_INGRESS, ptr::null(), 2, VR_ALLOW),
        VrResult::VrNullParameter
    );
    assert_eq!(vr_router_publish_policy(r), VrResult::VrInvalidState, "not started");
    assert_eq!(vr_router_free(r), VrResult::VrOk);
    assert_eq!(vr_router_publish_policy(r), VrResult::VrStaleHandle);
}

#[test]
fn flow_table_options_are_checked_and_applied() {
    let mut r = ptr::null_mut();
    assert_eq!(vr_router_new(&mut r), VrResult::VrOk);
    assert_eq!(vr_router_set_flow_options(r, ptr::null()), VrResult::VrNullParameter);
    let refused = [
        (
            VrFlowOptions {
                entries: (1 << 30) + 1,
                ..Default::default()
            },
            "flow options: `entries` 1073741825 is above 2^30",
        ),
        (
            VrFlowOptions {
                when_full: 7,
                ..Default::default()
            },
            "flow options: `when_full` 7 is neither VR_FULL_EVICT nor VR_FULL_REFUSE",
        ),
        (
            VrFlowOptions {
                udp: u32::MAX,
                ..Default::default()
            },
            "flow options: `udp` 4294967295 is above 2^31 - 1 seconds",
        ),
    ];
    for (o, why) in refused {
        assert_eq!(vr_router_set_flow_options(r, &o), VrResult::VrInvalidArgument);
        assert_eq!(last_error(r), why);
    }
    let o = VrFlowOptions {
        entries: 30_000,
        when_full: VR_FULL_REFUSE,
        vrf_quota: 100,
        udp: 5,
        ..Default::default()
    };
    assert_eq!(vr_router_set_flow_options(r, &o), VrResult::VrOk);
    let (mac, me) = ([2u8, 0, 0, 0, 0, 1], CString::new("192.0.2.1").unwrap());
    let add_fabric = |r| {
        let mut fabric = 0;
        assert_eq!(
            vr_router_add_port(
                r,
                VR_PORT_FABRIC,
                0,
                mac.as_ptr(),
                me.as_ptr(),
                ptr::null(),
                ptr::null(),
                &mut fabric
            ),
            VrResult::VrOk
        );
    };
    add_fabric(r);
    let (mut flows, mut refused) = (7, 7);
    assert_eq!(
        vr_router_vrf_flows(r, 1, &mut flows, &mut refused),
        VrResult::VrInvalidState
    );
    assert_eq!(vr_router_start(r), VrResult::VrOk);
    let mut st = VrStats::default();
    assert_eq!(vr_router_stats(r, &mut st), VrResult::VrOk);
    assert_eq!((st.flows, st.flow_capacity), (0, 30_000));
    assert_eq!(
        vr_router_vrf_flows(r, 1, ptr::null_mut(), &mut refused),
        VrResult::VrNullParameter
    );
    assert_eq!(vr_router_vrf_flows(r, 1, &mut flows, &mut refused), VrResult::VrOk);
    assert_eq!((flows, refused), (0, 0));
    let mut now = VrFlowOptions::default();
    assert_eq!(
        vr_router_get_flow_options(r, ptr::null_mut()),
        VrResult::VrNullParameter
    );
    assert_eq!(vr_router_get_flow_options(r, &mut now), VrResult::VrOk);
    assert_eq!(
        (now.entries, now.when_full, now.vrf_quota, now.udp, now.tcp_established),
        (30_000, VR_FULL_REFUSE, 100, 5, 7200),
        "as set, with the defaults filled in"
    );
    // Started: the size is fixed, the rest changes live.
    let resize = VrFlowOptions { entries: 60_000, ..o };
    assert_eq!(vr_router_set_flow_options(r, &resize), VrResult::VrInvalidState);
    assert_eq!(
        last_error(r),
        "flow options: `entries` is fixed once the router is started (it has 30000 slots)"
    );
    let live = VrFlowOptions {
        entries: 0,
        when_full: VR_FULL_EVICT,
        vrf_quota: 0,
        udp: 90,
        ..o
    };
    assert_eq!(vr_router_set_flow_options(r, &live), VrResult::VrOk);
    assert_eq!(vr_router_get_flow_options(r, &mut now), VrResult::VrOk);
    assert_eq!(
        (now.entries, now.when_full, now.vrf_quota, now.udp),
        (30_000, VR_FULL_EVICT, 0, 90)
    );
    assert_eq!(
        vr_router_set_flow_options(r, &now),
        VrResult::VrOk,
        "what get gave back"
    );
    let mut cleared = 7;
    assert_eq!(
        vr_router_clear_flows(r, VR_ALL_VRFS, ptr::null_mut()),
        VrResult::VrNullParameter
    );
    assert_eq!(vr_router_clear_flows(r, VR_ALL_VRFS, &mut cleared), VrResult::VrOk);
    assert_eq!(cleared, 0, "no traffic, no flows");
    assert_eq!(vr_router_free(r), VrResult::VrOk);

    // A router started without a quota cannot take one.
    assert_eq!(vr_router_new(&mut r), VrResult::VrOk);
    add_fabric(r);
    assert_eq!(vr_router_start(r), VrResult::VrOk);
    assert_eq!(vr_router_get_flow_options(r, &mut now), VrResult::VrOk);
    assert_eq!(
        (now.entries, now.vrf_quota),
        (65_550, 0),
        "the default 65,536 in whole buckets"
    );
    let quota = VrFlowOptions {
        vrf_quota: 10,
        ..Default::default()
    };
    assert_eq!(vr_router_set_flow_options(r, &quota), VrResult::VrInvalidState);
    assert!(
        last_error(r).starts_with("flow options: `vrf_quota` cannot be added"),
        "{}",
        last_error(r)
    );
    assert_eq!(vr_router_get_flow_options(r, &mut now), VrResult::VrOk);
    assert_eq!(now.vrf_quota, 0, "nothing changed");
    assert_eq!(vr_router_free(r), VrResult::VrOk);
}

/// Two workload ports owning one address (a service address alone): policy lists on
/// either could never apply, since the pipeline tells a shared address's flows apart by
/// the port's own addresses, so starting or publishing with them is refused, naming the
/// port, and nothing starts. Opened again (no rules, allow), the router starts.
#[test]
fn policy_on_a_port_with_no_address_of_its_own_is_refused() {
    let mut r = ptr::null_mut();
    assert_eq!(vr_router_new(&mut r), VrResult::VrOk);
    let (mac, gw, vip) = (
        [2u8, 0, 0, 0, 0, 1],
        CString::new("10.0.1.1").unwrap(),
        CString::new("10.96.0.10").unwrap(),
    );
    let mut ports = [0u32; 2];
    for p in &mut ports {
        let added = vr_router_add_port(
            r,
            VR_PORT_WORKLOAD,
            1,
            mac.as_ptr(),
            vip.as_ptr(),
            mac.as_ptr(),
            gw.as_ptr(),
            p,
        );
        assert_eq!(added, VrResult::VrOk);
    }
    let good = rule();
    assert_eq!(
        vr_router_set_policy(r, ports[1], VR_INGRESS, &good, 1, VR_ALLOW),
        VrResult::VrOk
    );
    assert_eq!(vr_router_start(r), VrResult::VrInvalidArgument);
    assert_eq!(
        last_error(r),
        "port 1: every address is another workload port's too (a service address): its policy lists need an address of its own to tell its flows apart"
    );
    let mut stats = VrStats::default();
    assert_eq!(vr_router_stats(r, &mut stats), VrResult::VrInvalidState, "not started");
    assert_eq!(
        vr_router_set_policy(r, ports[1], VR_INGRESS, ptr::null(), 0, VR_ALLOW),
        VrResult::VrOk
    );
    assert_eq!(vr_router_start(r), VrResult::VrOk);
    // Started, the same list is refused when published.
    assert_eq!(
        vr_router_set_policy(r, ports[0], VR_EGRESS, &good, 1, VR_DENY),
        VrResult::VrOk
    );
    assert_eq!(vr_router_publish_policy(r), VrResult::VrInvalidArgument);
    assert!(last_error(r).starts_with("port 0: every address"), "{}", last_error(r));
    assert_eq!(vr_router_stop(r), VrResult::VrOk);
    assert_eq!(vr_router_free(r), VrResult::VrOk);
}

/// A rule on an ICMP type: w2 denies echo requests (ping), logging them, and takes the
/// rest of ICMP, here a port unreachable that is no reply to anything it sent.
#[test]
fn an_icmp_type_rule_denies_that_type_alone() {
    let r = two_workloads();
    let no_ping = VrRule {
        proto: 1,
        dst_port_min: 0,
        dst_port_max: 0,
        match_icmp_type: true,
        icmp_type: 8,
        action: VR_DENY_LOG,
        ..rule()
    };
    assert_eq!(
        vr_router_set_policy(r, 1, VR_INGRESS, &no_ping, 1, VR_ALLOW),
        VrResult::VrOk
    );
    assert_eq!(vr_router_start(r), VrResult::VrOk);
    let icmp = |msg: Icmpv4Repr| {
        let eth = EthernetRepr {
            src: MacAddr(WL[0]),
            dst: MacAddr(GW[0]),
            ethertype: EtherType::Ipv4,
        };
        let ip = ip_header(
            "10.0.1.2".parse().unwrap(),
            "10.0.2.2".parse().unwrap(),
            IpProtocol::Icmp,
        )
        .unwrap();
        frame(&[Header::Ethernet(eth), ip, Header::Icmpv4(msg)], &[0; 28]).unwrap()
    };
    let ping = icmp(Icmpv4Repr::EchoRequest { ident: 7, seq_no: 1 });
    assert!(through(r, 0, &ping)[1].is_empty(), "ping denied");
    assert_eq!(dropped_for(r, "PolicyDenied"), 1);
    let unreachable = icmp(Icmpv4Repr::DstUnreachable {
        code: 3,
        next_hop_mtu: 0,
    });
    assert_eq!(through(r, 0, &unreachable)[1].len(), 1, "other ICMP taken");
    // Which decided what: the ping flow by rule 1, the other by the default.
    assert_eq!(
        policy_flows(r),
        [
            (1, VR_INGRESS, 1, VR_DENY_LOG, 1),
            (1, VR_INGRESS, VR_RULE_DEFAULT, VR_ALLOW, 1)
        ]
    );
    // The rule logs: the ping flow it refused is in the flow log, once; the other flow,
    // decided by a default that does not log, is not.
    let (lines, lost) = flow_log(r);
    assert_eq!(lost, 0);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("vrf 1 10.0.1.2 7 -> 10.0.2.2 7 proto 1 denied: ingress of port 1 rule 1 deny-log"),
        "{lines:?}"
    );
    assert_eq!(flow_log(r).0.len(), 0, "taken");
    // Everything the lists decide logged: the other flow, re-decided on its next packet
    // under the republished policy, by the default.
    assert_eq!(vr_router_set_policy_log(r, 7), VrResult::VrInvalidArgument);
    assert_eq!(vr_router_set_policy_log(r, VR_POLICY_LOG_ALL), VrResult::VrOk);
    assert_eq!(vr_router_publish_policy(r), VrResult::VrOk);
    assert_eq!(through(r, 0, &unreachable)[1].len(), 1);
    let (lines, _) = flow_log(r);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].ends_with("allowed: ingress of port 1 default allow-log"),
        "{lines:?}"
    );
    assert_eq!(vr_router_stop(r), VrResult::VrOk);
    assert_eq!(vr_router_free(r), VrResult::VrOk);
}
