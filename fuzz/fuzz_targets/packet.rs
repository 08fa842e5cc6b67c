//! Fuzz target `packet`: see `wire_fuzz::packet`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| wire_fuzz::packet(data));
