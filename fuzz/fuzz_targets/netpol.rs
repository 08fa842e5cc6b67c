//! Fuzz target `netpol`: see `wire_fuzz::netpol`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| wire_fuzz::netpol(data));
