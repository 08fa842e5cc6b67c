//! Fuzz target `mpls`: see `wire_fuzz::mpls`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| wire_fuzz::mpls(data));
