//! Fuzz target `icmpv4`: see `wire_fuzz::icmpv4`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| wire_fuzz::icmpv4(data));
