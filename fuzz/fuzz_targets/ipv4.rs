//! Fuzz target `ipv4`: see `wire_fuzz::ipv4`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| wire_fuzz::ipv4(data));
