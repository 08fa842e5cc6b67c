//! Helpers shared by the cross-check tests: running external tools and describing a
//! frame as the flat `key=value` map the scapy and tshark checks compare against.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::process::Command;

/// Runs a command and returns its stdout, failing the test with a useful message if the
/// tool is missing or fails (the README's test command installs every tool).
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (run ./scripts/test, which installs it)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("tool output is UTF-8")
}

/// The Python interpreter that has scapy: Debian's, unless `SCAPY_PYTHON` says otherwise.
pub fn python() -> String {
    std::env::var("SCAPY_PYTHON").unwrap_or_else(|_| {
        if std::path::Path::new("/usr/bin/python3").exists() {
            "/usr/bin/python3".into()
        } else {
            "python3".into()
        }
    })
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

pub type Fields = BTreeMap<String, String>;
