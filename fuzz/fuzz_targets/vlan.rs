//! Fuzz target `vlan`: see `wire_fuzz::vlan`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| wire_fuzz::vlan(data));
