//! Fuzz target `tcp`: see `wire_fuzz::tcp`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| wire_fuzz::tcp(data));
