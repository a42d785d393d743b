#![no_main]
//! See `strom_fuzz::internal::state_machine`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| strom_fuzz::internal::state_machine(data));
