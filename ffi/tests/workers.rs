//! The C API driving AF_XDP workers (called from Rust here): a node in a namespace lab
//! routes between two workloads, counters move, stop detaches XDP.

use std::ffi::CString;
use std::ptr;

use vrouter::lab::{Netns, Veth, no_offloads, ping, set_mac};
use vrouter::wire::ethernet::MacAddr;
use vrouter_c::*;

fn xdp_attached(ns: &Netns, dev: &str) -> bool {
    String::from_utf8_lossy(&ns.exec(&["ip", "-d", "link", "show", "dev", dev]).unwrap().stdout).contains("prog/xdp")
}

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

/// A workload namespace `10.0.I.2/24` behind a veth into `node`.
fn workload(node: &Netns, i: u8) -> (Netns, String) {
    let w = Netns::new("w").unwrap();
    let v = Veth::new(&w, node, 1).unwrap();
    set_mac(&w, &v.a, MacAddr([2, 0, 0, 0, i, 2]));
    no_offloads(&w, &v.a);
    w.exec(&["ip", "addr", "add", &format!("10.0.{i}.2/24"), "dev", &v.a])
        .unwrap();
    w.exec(&["ip", "route", "add", "default", "via", &format!("10.0.{i}.1")])
        .unwrap();
    (w, v.b)
}

/// Adds workload I's port, with nexthop I, its /32 route in VRF 1 and its neighbour;
/// returns the port's index.
fn add_workload_port(r: *mut VrRouter, i: u8) -> u32 {
    let (gw, wm) = ([2u8, 0xa, 0, 0, i, 1], [2u8, 0, 0, 0, i, 2]);
    let (addr, gwa) = (c(&format!("10.0.{i}.2")), c(&format!("10.0.{i}.1")));
    let mut idx = 0u32;
    assert_eq!(
        vr_router_add_port(
            r,
            VR_PORT_WORKLOAD,
            1,
            gw.as_ptr(),
            addr.as_ptr(),
            wm.as_ptr(),
            gwa.as_ptr(),
            &mut idx
        ),
        VrResult::VrOk
    );
    let i = u32::from(i);
    assert_eq!(vr_router_set_nexthop_port(r, i, idx, ptr::null()), VrResult::VrOk);
    let prefix = c(&format!("10.0.{i}.2/32"));
    assert_eq!(vr_router_add_route(r, 1, prefix.as_ptr(), i), VrResult::VrOk);
    let ip = c(&format!("10.0.{i}.2"));
    assert_eq!(vr_router_set_neighbor(r, idx, ip.as_ptr(), wm.as_ptr()), VrResult::VrOk);
    idx
}

fn last_error(r: *const VrRouter) -> String {
    // SAFETY: the API returns a NUL-terminated string that lives until the next call.
    unsafe { std::ffi::CStr::from_ptr(vr_router_last_error(r)) }
        .to_string_lossy()
        .into_owned()
}

#[test]
fn workers_started_through_the_c_api_forward_and_stop_cleanly() {
    let node = Netns::new("n").unwrap();
    let loads: Vec<_> = (1..=2).map(|i| workload(&node, i)).collect();
    let mut r: *mut VrRouter = ptr::null_mut();
    assert_eq!(vr_router_new(&mut r), VrResult::VrOk);
    assert_eq!(vr_router_add_vrf(r, 1), VrResult::VrOk);
    for i in 1..=2u8 {
        assert_eq!(add_workload_port(r, i), u32::from(i) - 1);
    }
    let names: Vec<CString> = loads.iter().map(|(_, d)| c(d)).collect();
    let cpu = [*vrouter::dataplane::online_cpus().last().unwrap() as u32];
    // The workers are created in the calling thread's namespace: the node's.
    let rr = r as usize;
    let rc = node.run(|| {
        let devs: Vec<*const std::ffi::c_char> = names.iter().map(|n| n.as_ptr()).collect();
        vr_router_start_workers(rr as *mut VrRouter, devs.as_ptr(), 2, cpu.as_ptr(), 1)
    });
    assert_eq!(rc, VrResult::VrOk);
    assert!(xdp_attached(&node, &loads[0].1));
    assert!(ping(&loads[0].0, "10.0.2.2"), "w1 -> w2 through workers started from C");
    let mut st = VrStats::default();
    assert_eq!(vr_router_stats(r, &mut st), VrResult::VrOk);
    assert!(st.rx >= 6 && st.tx >= 6 && st.flows >= 2, "{st:?}");
    let frame = [0u8; 60];
    assert_eq!(
        vr_router_push(r, 0, frame.as_ptr(), frame.len()),
        VrResult::VrInvalidState,
        "no memory ports in worker mode"
    );

    // A pod arrives: port 2 added and applied while the workers run.
    let loads: Vec<_> = loads.into_iter().chain([workload(&node, 3)]).collect();
    assert_eq!(add_workload_port(r, 3), 2);
    assert_eq!(
        vr_router_publish(r),
        VrResult::VrInvalidState,
        "nothing is published for ports not yet applied"
    );
    let apply = |devs: &[&str]| {
        let names: Vec<CString> = devs.iter().map(|d| c(d)).collect();
        node.run(|| {
            let ptrs: Vec<*const std::ffi::c_char> = names.iter().map(|n| n.as_ptr()).collect();
            vr_router_apply_ports(rr as *mut VrRouter, ptrs.as_ptr(), ptrs.len() as u32)
        })
    };
    let dev = |i: usize| loads[i].1.as_str();
    assert_eq!(
        apply(&[dev(0), dev(1)]),
        VrResult::VrInvalidArgument,
        "3 ports, 2 devices"
    );
    assert_eq!(apply(&[dev(0), dev(1), "nosuchdev0"]), VrResult::VrInvalidArgument);
    assert!(last_error(r).contains("no interface `nosuchdev0`"), "{}", last_error(r));
    assert!(
        ping(&loads[0].0, "10.0.2.2"),
        "refused changes leave the workers running"
    );
    assert_eq!(apply(&[dev(0), dev(1), dev(2)]), VrResult::VrOk, "{}", last_error(r));
    assert!(xdp_attached(&node, dev(2)));
    assert!(ping(&loads[0].0, "10.0.3.2"), "w1 -> w3, the port added");
    let mut after = VrStats::default();
    assert_eq!(vr_router_stats(r, &mut after), VrResult::VrOk);
    assert!(after.rx > st.rx && after.flows >= 2, "counters carry on: {after:?}");

    // The pod of port 1 leaves: port 2 becomes 1, its nexthop and neighbour with it.
    assert_eq!(vr_router_remove_port(r, 1), VrResult::VrOk);
    assert_eq!(vr_router_remove_port(r, 7), VrResult::VrInvalidArgument);
    assert_eq!(apply(&[dev(0), dev(2)]), VrResult::VrOk, "{}", last_error(r));
    assert!(ping(&loads[0].0, "10.0.3.2"), "w1 -> w3 under its new number");
    assert!(!ping(&loads[0].0, "10.0.2.2"), "w2's nexthop now discards");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while xdp_attached(&node, dev(1)) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(!xdp_attached(&node, dev(1)), "the removed port's program is detached");
    assert_eq!(vr_router_stop(r), VrResult::VrOk);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while xdp_attached(&node, &loads[0].1) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(!xdp_attached(&node, &loads[0].1), "stop detaches XDP");
    assert_eq!(vr_router_free(r), VrResult::VrOk);
}

/// A host port started from C: its device is a TAP in the node's namespace (created by
/// the workers), through which the node's own stack reaches a workload and hears back;
/// the TAP goes with the workers.
#[test]
fn the_host_stack_reaches_a_workload_through_a_tap_started_from_c() {
    let node = Netns::new("n").unwrap();
    let (w1, w1_dev) = workload(&node, 1);
    let mut r: *mut VrRouter = ptr::null_mut();
    assert_eq!(vr_router_new(&mut r), VrResult::VrOk);
    assert_eq!(vr_router_add_vrf(r, 1), VrResult::VrOk);
    assert_eq!(add_workload_port(r, 1), 0);
    let (tap_mac, host_mac) = ([2u8, 0xa, 0, 0, 0, 0x54], [2u8, 0, 0, 0, 0, 0x55]);
    let mut host = 0;
    let added = vr_router_add_port(
        r,
        VR_PORT_HOST,
        1,
        tap_mac.as_ptr(),
        ptr::null(),
        host_mac.as_ptr(),
        ptr::null(),
        &mut host,
    );
    assert_eq!((added, host), (VrResult::VrOk, 1));
    // Replies to the host's address go back out of the TAP, to the host side's MAC.
    assert_eq!(vr_router_set_nexthop_port(r, 9, host, ptr::null()), VrResult::VrOk);
    let (net, me) = (c("10.0.99.0/24"), c("10.0.99.1"));
    assert_eq!(vr_router_add_route(r, 1, net.as_ptr(), 9), VrResult::VrOk);
    assert_eq!(
        vr_router_set_neighbor(r, host, me.as_ptr(), host_mac.as_ptr()),
        VrResult::VrOk
    );
    let names = [c(&w1_dev), c("vhost0")];
    let cpu = [*vrouter::dataplane::online_cpus().last().unwrap() as u32];
    let rr = r as usize;
    let rc = node.run(|| {
        let devs: Vec<*const std::ffi::c_char> = names.iter().map(|n| n.as_ptr()).collect();
        vr_router_start_workers(rr as *mut VrRouter, devs.as_ptr(), 2, cpu.as_ptr(), 1)
    });
    assert_eq!(rc, VrResult::VrOk, "{}", last_error(r));
    let mac = "02:00:00:00:00:55";
    for cmd in [
        &["ip", "link", "set", "vhost0", "address", mac, "up"][..],
        &["ip", "addr", "add", "10.0.99.1/24", "dev", "vhost0"],
        &[
            "ip",
            "route",
            "add",
            "10.0.1.0/24",
            "via",
            "10.0.99.254",
            "dev",
            "vhost0",
        ],
    ] {
        let out = node.exec(cmd).unwrap();
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        ping(&node, "10.0.1.2"),
        "the host stack -> w1 through the TAP, and back"
    );
    assert!(ping(&w1, "10.0.99.1"), "w1 -> the host stack");
    assert_eq!(vr_router_stop(r), VrResult::VrOk);
    assert!(
        node.exec(&["ip", "link", "show", "vhost0"]).is_err(),
        "the TAP went with the workers"
    );
    assert_eq!(vr_router_free(r), VrResult::VrOk);
}
