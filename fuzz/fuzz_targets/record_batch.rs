#![no_main]
//! See `strom_fuzz::batch::record_batch`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| strom_fuzz::batch::record_batch(data));
