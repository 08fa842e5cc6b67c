//! Fuzz target `c_api`: see `wire_fuzz::c_api`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| wire_fuzz::c_api(data));
