//! Fuzz target `sctp`: see `wire_fuzz::sctp`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| wire_fuzz::sctp(data));
