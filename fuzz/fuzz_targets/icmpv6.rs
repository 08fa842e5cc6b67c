//! Fuzz target `icmpv6`: see `wire_fuzz::icmpv6`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| wire_fuzz::icmpv6(data));
