//! What the C API tests share: a router with two workloads on memory ports, frames
//! pushed through it, the last error.
#![allow(dead_code)] // each test crate uses its own part

use std::ffi::{CStr, CString, c_char, c_void};
use std::net::IpAddr;
use std::ptr;

use vrouter::wire::compose::{Header, frame};
use vrouter::wire::ethernet::{EtherType, EthernetRepr, MacAddr};
use vrouter::wire::udp::UdpRepr;
use vrouter_c::*;

pub(crate) const GW: [[u8; 6]; 2] = [[2, 0xa, 0, 0, 0, 1], [2, 0xa, 0, 0, 0, 2]];
pub(crate) const WL: [[u8; 6]; 2] = [[2, 0, 0, 0, 1, 2], [2, 0, 0, 0, 2, 2]];

pub(crate) fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

pub(crate) fn last_error(r: *mut VrRouter) -> String {
    // SAFETY: the router is live; the message is a NUL-terminated string it owns.
    unsafe { CStr::from_ptr(vr_router_last_error(r)) }
        .to_string_lossy()
        .into()
}

/// A router with workloads 10.0.1.2 (port 0) and 10.0.2.2 (port 1) in VRF 1, each
/// routed by a host route through a port nexthop (ids 1 and 2), not started.
pub(crate) fn two_workloads() -> *mut VrRouter {
    let mut r = ptr::null_mut();
    assert_eq!(vr_router_new(&mut r), VrResult::VrOk);
    assert_eq!(vr_router_add_vrf(r, 1), VrResult::VrOk);
    for i in 0..2u32 {
        let (me, gw) = (c(&format!("10.0.{}.2", i + 1)), c(&format!("10.0.{}.1", i + 1)));
        let mut port = u32::MAX;
        let (own, peer) = (GW[i as usize].as_ptr(), WL[i as usize].as_ptr());
        let added = vr_router_add_port(r, VR_PORT_WORKLOAD, 1, own, me.as_ptr(), peer, gw.as_ptr(), &mut port);
        assert_eq!((added, port), (VrResult::VrOk, i));
        assert_eq!(vr_router_set_nexthop_port(r, i + 1, i, ptr::null()), VrResult::VrOk);
        let host = c(&format!("10.0.{}.2/32", i + 1));
        assert_eq!(vr_router_add_route(r, 1, host.as_ptr(), i + 1), VrResult::VrOk);
    }
    r
}

/// A UDP frame of `payload` bytes from workload `from` (its MAC, to its gateway's) with
/// the IP header `ip`.
pub(crate) fn udp(from: usize, ip: Header<'_>, payload: usize) -> Vec<u8> {
    let eth = EthernetRepr {
        src: MacAddr(WL[from]),
        dst: MacAddr(GW[from]),
        ethertype: if matches!(ip, Header::Ipv4(_)) {
            EtherType::Ipv4
        } else {
            EtherType::Ipv6
        },
    };
    let u = UdpRepr {
        src_port: 40000,
        dst_port: 53,
    };
    frame(&[Header::Ethernet(eth), ip, Header::Udp(u)], &vec![7; payload]).unwrap()
}

pub(crate) fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Pushes `f` on `port`, polls, and pulls every frame each of the first four ports sent.
pub(crate) fn through(r: *mut VrRouter, port: u32, f: &[u8]) -> [Vec<Vec<u8>>; 4] {
    assert_eq!(vr_router_push(r, port, f.as_ptr(), f.len()), VrResult::VrOk);
    assert_eq!(vr_router_poll(r, ptr::null_mut()), VrResult::VrOk);
    [0, 1, 2, 3].map(|p| {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        let mut len = 0;
        while vr_router_pull(r, p, buf.as_mut_ptr(), buf.len(), &mut len) == VrResult::VrOk {
            out.push(buf[..len].to_vec());
        }
        out
    })
}

/// Every drop reason's name and count, as `vr_router_drops` gives them.
pub(crate) fn drops(r: *mut VrRouter) -> Vec<(String, u64)> {
    extern "C" fn note(ctx: *mut c_void, name: *const c_char, what: *const c_char, n: u64) {
        // SAFETY: `ctx` is the Vec passed below, alive and not otherwise borrowed during
        // the call; `name` and `what` are NUL-terminated strings valid during it.
        let (out, name, what) = unsafe {
            (
                &mut *ctx.cast::<Vec<(String, u64)>>(),
                CStr::from_ptr(name),
                CStr::from_ptr(what),
            )
        };
        assert!(!what.is_empty(), "every reason is described");
        out.push((name.to_string_lossy().into(), n));
    }
    let mut out: Vec<(String, u64)> = Vec::new();
    assert_eq!(vr_router_drops(r, Some(note), (&raw mut out).cast()), VrResult::VrOk);
    out
}

/// The count of drop reason `name`.
pub(crate) fn dropped_for(r: *mut VrRouter, name: &str) -> u64 {
    drops(r)
        .into_iter()
        .find(|(n, _)| n == name)
        .map_or_else(|| panic!("no reason {name}"), |(_, n)| n)
}

/// Every decision of every rule list, as `vr_router_policy_flows` gives them: (port,
/// direction, rule, action, flows).
pub(crate) fn policy_flows(r: *mut VrRouter) -> Vec<(u32, u8, i64, u8, u64)> {
    extern "C" fn note(ctx: *mut c_void, port: u32, dir: u8, rule: i64, action: u8, n: u64) {
        // SAFETY: `ctx` is the Vec passed below, alive and not otherwise borrowed during
        // the call.
        unsafe { &mut *ctx.cast::<Vec<(u32, u8, i64, u8, u64)>>() }.push((port, dir, rule, action, n));
    }
    let mut out: Vec<(u32, u8, i64, u8, u64)> = Vec::new();
    assert_eq!(
        vr_router_policy_flows(r, Some(note), (&raw mut out).cast()),
        VrResult::VrOk
    );
    out
}

/// The flow log's lines, as `vr_router_flow_log` gives them, and the records lost.
pub(crate) fn flow_log(r: *mut VrRouter) -> (Vec<String>, u64) {
    extern "C" fn note(ctx: *mut c_void, line: *const c_char) {
        // SAFETY: `ctx` is the Vec passed below, alive and not otherwise borrowed during
        // the call; `line` is a NUL-terminated string valid during it.
        let (out, line) = unsafe { (&mut *ctx.cast::<Vec<String>>(), CStr::from_ptr(line)) };
        out.push(line.to_string_lossy().into());
    }
    let (mut out, mut lost): (Vec<String>, u64) = (Vec::new(), u64::MAX);
    assert_eq!(
        vr_router_flow_log(r, Some(note), (&raw mut out).cast(), &mut lost),
        VrResult::VrOk
    );
    (out, lost)
}
