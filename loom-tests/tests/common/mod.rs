//! Helpers shared by the loom models.

#![allow(dead_code)] // each model file uses a different part

use loom::sync::{Condvar, Mutex};
use weft_core::{Error, MessageBuf};

/// A Postgres-style latch: `set` wakes the owner's `wait`, or makes the next
/// `wait` return at once; `wait` consumes the setting.
#[derive(Default)]
pub struct Latch {
    set: Mutex<bool>,
    cv: Condvar,
}

impl Latch {
    pub fn set(&self) {
        *self.set.lock().unwrap() = true;
        self.cv.notify_one();
    }

    pub fn wait(&self) {
        let mut set = self.set.lock().unwrap();
        while !*set {
            set = self.cv.wait(set).unwrap();
        }
        *set = false;
    }
}

/// A growable message buffer for `read_message`.
pub struct VecBuf<'v>(pub &'v mut Vec<u8>);

impl MessageBuf for VecBuf<'_> {
    fn append(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

/// Retries `op` while it would block, telling loom this thread is waiting
/// on another (so it schedules the other instead of spinning forever).
pub fn retry<T>(mut op: impl FnMut() -> Result<T, Error>) -> Result<T, Error> {
    loop {
        match op() {
            Err(Error::WouldBlock) => loom::thread::yield_now(),
            other => return other,
        }
    }
}

/// Frame `i`'s payload: `len` bytes that identify it.
pub fn payload(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 31 + j) as u8).collect()
}

/// Waits for the next frame, copies its payload out and releases it.
pub fn next_frame(rx: &mut weft_core::Consumer<'_>) -> Result<Vec<u8>, Error> {
    loop {
        match rx.read() {
            Ok(frame) => {
                let payload = frame.payload().to_vec();
                frame.release();
                return Ok(payload);
            }
            Err(Error::WouldBlock) => loom::thread::yield_now(),
            Err(e) => return Err(e),
        }
    }
}
