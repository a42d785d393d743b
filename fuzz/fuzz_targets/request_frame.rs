#![no_main]
//! See `strom_fuzz::request::request_frame`; also checks what each input allocates.
use libfuzzer_sys::fuzz_target;
use strom_fuzz::request::{CountingAlloc, allocation_bound, request_frame};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fuzz_target!(|data: &[u8]| {
    static WARM: std::sync::Once = std::sync::Once::new();
    // Start the broker before measuring: its own memory is not the input's.
    WARM.call_once(|| request_frame(&[]));
    let base = CountingAlloc::reset_peak();
    request_frame(data);
    let peak = CountingAlloc::peak_above(base);
    assert!(
        peak <= allocation_bound(data.len()),
        "an input of {} bytes made the broker allocate {peak} bytes",
        data.len()
    );
});
