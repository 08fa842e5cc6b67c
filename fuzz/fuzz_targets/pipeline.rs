//! Fuzz target `pipeline`: see `wire_fuzz::pipeline`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| wire_fuzz::pipeline(data));
