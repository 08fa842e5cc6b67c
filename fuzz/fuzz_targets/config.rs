//! Fuzz target `config`: see `wire_fuzz::config`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| wire_fuzz::config(data));
