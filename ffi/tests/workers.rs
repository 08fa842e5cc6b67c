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

#[test]
fn workers_started_through_the_c_api_forward_and_stop_cleanly() {
    let node = Netns::new("n").unwrap();
    let mut loads = Vec::new();
    for i in 1..=2u8 {
        let w = Netns::new("w").unwrap();
        let v = Veth::new(&w, &node, 1).unwrap();
        set_mac(&w, &v.a, MacAddr([2, 0, 0, 0, i, 2]));
        no_offloads(&w, &v.a);
        w.exec(&["ip", "addr", "add", &format!("10.0.{i}.2/24"), "dev", &v.a])
            .unwrap();
        w.exec(&["ip", "route", "add", "default", "via", &format!("10.0.{i}.1")])
            .unwrap();
        loads.push((w, v.b));
    }
    let c = |s: &str| CString::new(s).unwrap();
    let mut r: *mut VrRouter = ptr::null_mut();
    assert_eq!(vr_router_new(&mut r), VrResult::VrOk);
    for i in 1..=2u8 {
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
        assert_eq!(idx, u32::from(i) - 1);
    }
    assert_eq!(vr_router_add_vrf(r, 1), VrResult::VrOk);
    for i in 1..=2u32 {
        assert_eq!(vr_router_set_nexthop_port(r, i, i - 1, ptr::null()), VrResult::VrOk);
        let prefix = c(&format!("10.0.{i}.2/32"));
        assert_eq!(vr_router_add_route(r, 1, prefix.as_ptr(), i), VrResult::VrOk);
        let ip = c(&format!("10.0.{i}.2"));
        let wm = [2u8, 0, 0, 0, i as u8, 2];
        assert_eq!(
            vr_router_set_neighbor(r, i - 1, ip.as_ptr(), wm.as_ptr()),
            VrResult::VrOk
        );
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
    assert_eq!(vr_router_stop(r), VrResult::VrOk);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while xdp_attached(&node, &loads[0].1) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(!xdp_attached(&node, &loads[0].1), "stop detaches XDP");
    assert_eq!(vr_router_free(r), VrResult::VrOk);
}
