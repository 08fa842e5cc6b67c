//! Fuzz target `kernel_routes`: see `wire_fuzz::kernel_routes`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| wire_fuzz::kernel_routes(data));
