//! Fuzz target `vxlan`: see `wire_fuzz::vxlan`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| wire_fuzz::vxlan(data));
