//! Fuzz target `ipv6`: see `wire_fuzz::ipv6`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| wire_fuzz::ipv6(data));
