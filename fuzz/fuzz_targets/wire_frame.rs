#![no_main]
//! See `strom_fuzz::internal::wire_frame`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| strom_fuzz::internal::wire_frame(data));
