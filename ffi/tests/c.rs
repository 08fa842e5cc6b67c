//! The C side: the committed header matches what cbindgen generates from the code, and
//! the C example compiles with `-Wall -Werror`, runs, and runs clean under
//! AddressSanitizer.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn generate() -> String {
    let dir = env!("CARGO_MANIFEST_DIR");
    let config = cbindgen::Config::from_file(Path::new(dir).join("cbindgen.toml")).unwrap();
    let mut out = Vec::new();
    cbindgen::Builder::new()
        .with_crate(dir)
        .with_config(config)
        .generate()
        .expect("cbindgen")
        .write(&mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn the_committed_header_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("include/vrouter.h");
    let now = generate();
    if std::env::var_os("VR_UPDATE_HEADER").is_some() {
        std::fs::write(&path, &now).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == now,
        "ffi/include/vrouter.h is out of date: run VR_UPDATE_HEADER=1 cargo test -p vrouter-ffi and commit it"
    );
}

/// The static library, built now: `cargo test` builds the crate as an rlib for the
/// tests but does not refresh `libvrouter_c.a`, so a stale one could be linked.
fn staticlib() -> PathBuf {
    static BUILD: std::sync::Once = std::sync::Once::new();
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    BUILD.call_once(|| {
        let mut cargo = Command::new(env!("CARGO"));
        cargo.args(["build", "-p", "vrouter-ffi"]).current_dir(root());
        if profile_dir.ends_with("release") {
            cargo.arg("--release");
        }
        assert!(cargo.status().unwrap().success(), "building the static library");
    });
    let lib = profile_dir.join("libvrouter_c.a");
    assert!(lib.exists(), "{} not built", lib.display());
    lib
}

fn build_and_run(extra: &[&str], name: &str) -> String {
    let out = std::env::temp_dir().join(format!("vrouter-c-{name}-{}", std::process::id()));
    let r = root();
    let status = Command::new("cc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-g"])
        .args(extra)
        .arg("-I")
        .arg(r.join("ffi/include"))
        .arg(r.join("examples/c/demo.c"))
        .arg(staticlib())
        .args(["-lpthread", "-ldl", "-lm", "-o"])
        .arg(&out)
        .status()
        .expect("a C compiler (cc)");
    assert!(status.success(), "compiling examples/c/demo.c");
    let run = Command::new(&out).output().unwrap();
    let _ = std::fs::remove_file(&out);
    let stdout = String::from_utf8_lossy(&run.stdout).to_string();
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    stdout
}

fn check(stdout: &str) {
    for want in [
        "bad route: invalid argument",
        "host bits set",
        "wide vni: invalid argument (see vr_router_last_error): nexthop: tunnel 9: VNI 16777216 exceeds 24 bits",
        "mixed ends: invalid argument (see vr_router_last_error): nexthop: tunnel 9: 192.0.2.1 -> 2001:db8::2: the ends are of two families",
        "vlan 4095: invalid argument (see vr_router_last_error): VLAN 4095 is outside 1..=4094",
        "mss 100: invalid argument (see vr_router_last_error): mss 100 is not 0, VR_MSS_CLAMP_PATH or 536..=8960",
        "processed 2 frames",
        "w2 got 60 bytes, ttl 63, dst mac 02:00:00:00:02:02",
        "VXLAN udp port 4789 vni 42, inner dst 10.9.0.5 mac 02:00:00:00:07:07, outer tos 0xb8 inner tos 0xb8",
        "dscp 64: invalid argument (see vr_router_last_error): DSCP 64 is not 0-63 or VR_DSCP_INHERIT",
        "zero checksum over IPv4: invalid argument (see vr_router_last_error): nexthop: tunnel 4: a zero UDP checksum is for UDP tunnels over IPv6: over IPv4 it is zero anyway, and GRE has none",
        "zero checksums after start: not allowed in the router's current state",
        "router mac on a port: invalid argument (see vr_router_last_error): nexthop 3 is not a tunnel",
        "overlay neighbour: invalid argument (see vr_router_last_error): no overlay neighbour 10.9.0.5 in VNI 42",
        "nothing more: nothing to pull",
        // 1586 IP bytes in a 1500-byte underlay: two inner fragments, each a whole VXLAN
        // packet; the first carries 1424 payload bytes (the most in eight-byte steps
        // within VXLAN's 1450), 1444 with its IP header, 1508 in its frame.
        "1600 bytes to the tunnel: 2 frames, the longest 1508 bytes; fragmented 1 (fragments made 1), icmp errors 0, mss lowered 0, path mtus learned 0",
        "bad rule: invalid argument (see vr_router_last_error): rules[0].dst_ports: range low 9000 is above high 8000",
        "to w2 port 5353: nothing to pull",
        "to w2 port 53 after the new policy: nothing to pull",
        "stats: rx 5 tx 4 dropped 2 flows 6",
        "  dropped: PolicyDenied 2 (denied by policy)",
        "vrf 1: flows 6 of quota 1000, refused 0",
        "flow options now: 4110 slots, udp timeout 60 s, quota 2000",
        "cleared 6 flow entries in vrf 1, 0 left",
        "flow: vrf 1 10.0.1.2 40000 -> 10.0.2.2 5353 proto 17 Deny packets 1",
        // The established flow, denied by the new policy on its second packet.
        "flow: vrf 1 10.0.1.2 40000 -> 10.0.2.2 53 proto 17 Deny packets 2",
        "flow: vrf 1 10.0.1.2 40000 -> 10.9.0.5 53 proto 17 Allow packets 2",
        // Through the VXLAN tunnel: the underlay's port and the far end's MAC.
        "route get 10.9.7.7: 10.9.0.0/16 nexthop 4, resolved 4, out of port 2, mac known 1 (02:00:00:00:09:09)",
        "zero weight: invalid argument (see vr_router_last_error): nexthop: ECMP group 22: member 1 weight 0 is outside 1..=256",
        "route get vrf 2 10.0.2.2: 10.0.0.0/8 nexthop 20, resolved 2, out of port 1",
        "route get 172.16.0.1: invalid argument (see vr_router_last_error): no route holds 172.16.0.1 in VRF 1",
        "publish with ports pending: not allowed in the router's current state",
        "after the change: w3 on port 2 got 60 bytes, dst mac 02:00:00:00:03:02",
        "after the change: fabric on port 1 got 110 bytes, vni 42",
        // The counters carried on: three more received, two sent, the one to the removed
        // w2 dropped (its route's nexthop is now a discard).
        "after the change: rx 8 tx 6 dropped 3",
        "after withdrawing 10.9.0.0/16: nothing to pull",
        "withdrawn twice: invalid argument (see vr_router_last_error): no route 10.9.0.0/16 in VRF 1",
        "after the withdrawal: rx 9 tx 6 dropped 4",
        "after free: not a live router handle",
        "null handle: a pointer argument was NULL",
    ] {
        assert!(stdout.contains(want), "missing `{want}` in:\n{stdout}");
    }
}

#[test]
fn the_c_example_runs() {
    check(&build_and_run(&[], "plain"));
}

#[test]
fn the_c_example_runs_under_address_sanitizer() {
    check(&build_and_run(
        &["-fsanitize=address", "-fno-omit-frame-pointer"],
        "asan",
    ));
}
