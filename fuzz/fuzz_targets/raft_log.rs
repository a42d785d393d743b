#![no_main]
//! See `strom_fuzz::internal::raft_log`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| strom_fuzz::internal::raft_log(data));
