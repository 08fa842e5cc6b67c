//! Fuzz target `ipv6_ext`: see `wire_fuzz::ipv6_ext`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| wire_fuzz::ipv6_ext(data));
