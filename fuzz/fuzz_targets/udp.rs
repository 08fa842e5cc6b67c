//! Fuzz target `udp`: see `wire_fuzz::udp`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| wire_fuzz::udp(data));
