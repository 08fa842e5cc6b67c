//! The C API as a fuzz target: the input is a program of calls (ports added, changed and
//! removed, addresses, MTUs, VLANs, VRFs, nexthops, routes, policy lists, starts and
//! stops, frames pushed, polled and pulled, port changes applied, counters read) on one
//! router, with arguments good and bad. Every call must answer with a result code: none
//! may panic (`VR_PANIC`), whatever came before it.

use std::ffi::{CString, c_char, c_void};
use std::ptr;

use vrouter_c::*;

/// Reads the program's bytes; past the end every read is zero.
struct Program<'a> {
    data: &'a [u8],
    at: usize,
}

impl Program<'_> {
    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }

    /// A yes or no (an even byte: yes).
    fn flag(&mut self) -> bool {
        self.byte().is_multiple_of(2)
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }

    /// One of `choices`.
    fn pick<T: Copy>(&mut self, choices: &[T]) -> T {
        choices[usize::from(self.byte()) % choices.len()]
    }

    /// A port index: mostly ones that may exist, now and then one that does not.
    fn port(&mut self) -> u32 {
        u32::from(self.byte() % 6)
    }

    fn done(&self) -> bool {
        self.at >= self.data.len()
    }
}

/// Addresses and prefixes to choose from: both families, a router's own, a shared one,
/// and text that is none.
const ADDRS: &[&str] = &[
    "10.0.1.2",
    "10.0.2.2",
    "10.0.1.1",
    "192.0.2.1",
    "fd00:1::2",
    "10.96.0.10",
    "300.1.1.1",
    "",
];
const PREFIXES: &[&str] = &[
    "10.0.1.2/32",
    "10.0.2.0/24",
    "0.0.0.0/0",
    "fd00:1::/64",
    "10.0.0.1/8",
    "10.0.0.0/33",
    "x",
];

extern "C" fn on_drop(_: *mut c_void, _: *const c_char, _: *const c_char, _: u64) {}
extern "C" fn on_flow(_: *mut c_void, _: *const c_char) {}
extern "C" fn on_rule(_: *mut c_void, _: u32, _: u8, _: i64, _: u8, _: u64) {}

/// Runs the program `data` against a new router; panics if a call answers `VR_PANIC`.
pub fn c_api(data: &[u8]) {
    let mut p = Program { data, at: 0 };
    let mut r: *mut VrRouter = ptr::null_mut();
    assert_eq!(vr_router_new(&mut r), VrResult::VrOk);
    // A small flow table: each input makes a router of its own.
    let small = VrFlowOptions {
        entries: 1024,
        ..Default::default()
    };
    assert_eq!(vr_router_set_flow_options(r, &small), VrResult::VrOk);
    let mut buf = vec![0u8; 4096];
    while !p.done() {
        let rc = step(&mut p, r, &mut buf);
        assert_ne!(rc, VrResult::VrPanic, "a call panicked at byte {}", p.at);
    }
    let _ = vr_router_stop(r);
    assert_eq!(vr_router_free(r), VrResult::VrOk);
}

/// One call, its arguments read from `p`.
fn step(p: &mut Program<'_>, r: *mut VrRouter, buf: &mut [u8]) -> VrResult {
    let text = |s: &str| CString::new(s).expect("no NUL in the literals");
    let mac = [2u8, 0, 0, 0, p.byte() % 4, 1];
    match p.byte() % 24 {
        0 => {
            let (kind, vrf) = (u32::from(p.byte() % 4), u32::from(p.byte() % 3));
            let (a, g) = (text(p.pick(ADDRS)), text(p.pick(ADDRS)));
            let mut idx = 0;
            vr_router_add_port(
                r,
                kind,
                vrf,
                mac.as_ptr(),
                a.as_ptr(),
                mac.as_ptr(),
                g.as_ptr(),
                &mut idx,
            )
        }
        1 => vr_router_remove_port(r, p.port()),
        2 => vr_router_set_port_mtu(r, p.port(), p.u16()),
        3 => vr_router_set_port_vlan(r, p.port(), p.u16() % 4200),
        4 | 5 => {
            let (port, a) = (p.port(), text(p.pick(ADDRS)));
            let g = (p.flag()).then(|| text(p.pick(ADDRS)));
            let g = g.as_ref().map_or(ptr::null(), |g| g.as_ptr());
            if p.flag() {
                vr_router_add_port_address(r, port, a.as_ptr(), g)
            } else {
                vr_router_remove_port_address(r, port, a.as_ptr(), g)
            }
        }
        6 => vr_router_add_vrf(r, u32::from(p.byte() % 3)),
        7 => vr_router_remove_vrf(r, u32::from(p.byte() % 3)),
        8 => {
            let (id, port) = (u32::from(p.byte() % 6), p.port());
            let g = text(p.pick(ADDRS));
            let g = if p.flag() { g.as_ptr() } else { ptr::null() };
            vr_router_set_nexthop_port(r, id, port, g)
        }
        9 => vr_router_remove_nexthop(r, u32::from(p.byte() % 6)),
        10 => {
            let (vrf, prefix, nh) = (u32::from(p.byte() % 3), text(p.pick(PREFIXES)), u32::from(p.byte() % 6));
            vr_router_add_route(r, vrf, prefix.as_ptr(), nh)
        }
        11 => vr_router_remove_route(r, u32::from(p.byte() % 3), text(p.pick(PREFIXES)).as_ptr()),
        12 => {
            let (port, dir) = (p.port(), p.byte() % 3);
            let lo = p.u16() % 100;
            let rule = VrRule {
                priority: u32::from(p.byte()),
                action: p.byte() % 5,
                proto: p.pick(&[0, 1, 6, 17, 58, 132]),
                src: ptr::null(),
                dst: ptr::null(),
                src_port_min: 0,
                src_port_max: 0,
                dst_port_min: lo,
                dst_port_max: lo + u16::from(p.byte() % 4),
                match_icmp_type: p.flag(),
                icmp_type: p.byte(),
                match_icmp_code: p.flag(),
                icmp_code: p.byte(),
            };
            let count = u32::from(p.byte() % 2);
            vr_router_set_policy(r, port, dir, &rule, count, p.byte() % 3)
        }
        13 => match vr_router_set_policy_log(r, u32::from(p.byte() % 4)) {
            VrResult::VrOk | VrResult::VrInvalidArgument => vr_router_publish(r),
            other => other,
        },
        14 => vr_router_publish_policy(r),
        15 => vr_router_start(r),
        16 => vr_router_stop(r),
        17 => vr_router_apply_ports(r, ptr::null(), 0),
        18 => {
            // A frame of the program's own bytes, behind an Ethernet header to the port.
            let port = p.port();
            let len = usize::from(p.byte()) + 14;
            let mut frame: Vec<u8> = (0..len).map(|_| p.byte()).collect();
            frame[..6].copy_from_slice(&[2, 0, 0, 0, p.byte() % 4, 1]);
            frame[12..14].copy_from_slice(&p.pick(&[[8u8, 0], [0x86, 0xdd], [8, 6]]));
            vr_router_push(r, port, frame.as_ptr(), frame.len())
        }
        19 => vr_router_poll(r, ptr::null_mut()),
        20 => {
            let (port, cap) = (p.port(), usize::from(p.u16()) % buf.len());
            let mut len = 0;
            vr_router_pull(r, port, buf.as_mut_ptr(), cap, &mut len)
        }
        21 => {
            let mut st = VrStats::default();
            let mut ps = VrPortStats::default();
            let port = p.port();
            match vr_router_stats(r, &mut st) {
                VrResult::VrOk => vr_router_port_stats(r, port, &mut ps),
                other => other,
            }
        }
        22 => match vr_router_drops(r, Some(on_drop), ptr::null_mut()) {
            VrResult::VrOk => match vr_router_policy_flows(r, Some(on_rule), ptr::null_mut()) {
                VrResult::VrOk => match vr_router_dump_flows(r, Some(on_flow), ptr::null_mut()) {
                    VrResult::VrOk => vr_router_flow_log(r, Some(on_flow), ptr::null_mut(), ptr::null_mut()),
                    other => other,
                },
                other => other,
            },
            other => other,
        },
        _ => {
            let mut cleared = 0;
            vr_router_clear_flows(r, u32::from(p.byte() % 3), &mut cleared)
        }
    }
}
