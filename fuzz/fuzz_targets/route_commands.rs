//! Fuzz target `route_commands`: see `wire_fuzz::route_commands`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| wire_fuzz::route_commands(data));
