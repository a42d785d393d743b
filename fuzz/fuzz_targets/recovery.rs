#![no_main]
//! See `strom_fuzz::recovery::recovery`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| strom_fuzz::recovery::recovery(data));
