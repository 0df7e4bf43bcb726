//! Built by `make no-std` as a static library with `-C panic=abort`:
//!
//! ```text
//! cargo rustc -p weft-no-std-check --release --crate-type staticlib -- -C panic=abort
//! ```
//!
//! The crate is `#![no_std]` and defines the panic handler itself. If
//! weft-core, or anything it depends on, linked `std`, std's own panic
//! handler would collide with this one and the build would fail with
//! "duplicate lang item `panic_impl`". (As an rlib, for `cargo check` and
//! clippy, the handler is left out: the lang item is only required, and only
//! checked, when a final artifact is linked.)

#![no_std]

use core::ptr::NonNull;

use weft_core::{Region, Ring};

/// Initialises a ring in caller-provided memory and sends one frame through
/// it: enough to link the producer and consumer paths.
///
/// # Safety
///
/// `mem` must point to `len` writable bytes, 128-byte aligned, unused by
/// anything else for the duration of the call.
#[no_mangle]
pub unsafe extern "C" fn weft_no_std_roundtrip(mem: *mut u8, len: usize) -> i32 {
    let Some(ptr) = NonNull::new(mem) else { return -1 };
    // SAFETY: the caller's contract above.
    let region = unsafe { Region::new(ptr, len) };
    let Ok(ring) = Ring::init(region, len.saturating_sub(weft_core::RING_HEADER_LEN), 1) else {
        return -2;
    };
    let (Ok(mut tx), Ok(mut rx)) = (ring.producer(), ring.consumer()) else {
        return -3;
    };
    if tx.send(b"no_std").is_err() {
        return -4;
    }
    match rx.read() {
        Ok(frame) if frame.payload() == b"no_std" => 0,
        _ => -5,
    }
}

#[cfg(not(test))]
#[cfg(panic = "abort")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {
        core::hint::spin_loop();
    }
}
