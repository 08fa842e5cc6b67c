//! Fuzz target `ethernet`: see `wire_fuzz::ethernet`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| wire_fuzz::ethernet(data));
