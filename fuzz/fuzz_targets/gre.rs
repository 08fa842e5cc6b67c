//! Fuzz target `gre`: see `wire_fuzz::gre`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| wire_fuzz::gre(data));
