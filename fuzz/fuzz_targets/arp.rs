//! Fuzz target `arp`: see `wire_fuzz::arp`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| wire_fuzz::arp(data));
