//! weft's transport: a lock-free frame ring and the mesh of rings one query
//! uses, laid out in memory the caller provides (a dynamic shared memory
//! segment, mapped at a different address in each process).
//!
//! - [`Ring`]: one producer, one consumer; variable-length frames, zero-copy
//!   on both sides ([`Producer::reserve`], [`Consumer::read`]); messages of
//!   any length as fragments ([`Producer::send_message`],
//!   [`Consumer::read_message`]); close from either side; a wake handshake
//!   ([`Producer::arm_wakeup`] / [`Consumer::peer_waiting`] and vice versa)
//!   that needs no notification while the peer is busy and loses none.
//! - [`Mesh`]: a query's region: participant slots with wake tokens, a
//!   mesh-wide abort flag and first-error slot, and a ring per (exchange,
//!   sender, receiver), laid out by the pure function [`MeshLayout`].
//!
//! Nothing here blocks, spins, allocates or panics on any input: operations
//! return [`Error::WouldBlock`], [`Error::Closed`], [`Error::TooLarge`] or
//! [`Error::Corrupt`], and the caller decides how to wait. Shared memory is
//! untrusted: every length and position read from it is checked before use.
//!
//! Built with `--cfg loom`, atomics and data-area accesses are loom's (see
//! `sync.rs`), so the loom models in `loom-tests/` check this same code.
//!
//! ```
//! use weft_core::{MessageKind, Region, Ring, SendProgress};
//! # use core::ptr::NonNull;
//! #[repr(C, align(128))]
//! struct Mem([u8; 512 + 4096]);
//! let mut mem = Mem([0; 512 + 4096]);
//! // SAFETY: `mem` outlives the region and is only used through it.
//! let region = unsafe { Region::new(NonNull::from(&mut mem).cast(), 512 + 4096) };
//!
//! let ring = Ring::init(region, 4096, 1)?;
//! let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
//! tx.send(b"batch")?;
//! tx.send_message(MessageKind::End, &[], &mut SendProgress::default())?;
//! tx.close();
//!
//! assert_eq!(rx.read()?.payload(), b"batch");
//! # rx.read()?.release(); // (the frame above was only peeked)
//! assert_eq!(rx.read()?.kind(), MessageKind::End);
//! # rx.read()?.release();
//! assert_eq!(rx.read().unwrap_err(), weft_core::Error::Closed);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![no_std]
#![warn(missing_docs)]

#[cfg(loom)]
extern crate std;

mod error;
mod frame;
mod mesh;
mod region;
mod ring;
mod sync;

#[cfg(not(loom))]
#[doc(hidden)]
pub mod doc_support;
#[cfg(loom)]
pub mod loom_support;

pub use error::{Corruption, Error, LayoutError};
pub use frame::{MessageKind, FRAME_ALIGN, FRAME_HEADER_LEN};
pub use mesh::{
    ErrorSlot, FirstError, MeshLayout, ParticipantSlot, ParticipantState, ERROR_MESSAGE_MAX, MAX_EXCHANGES,
    MAX_PARTICIPANTS,
};
#[cfg(not(loom))]
pub use mesh::{Mesh, MeshError};
pub use region::{Region, REGION_ALIGN};
pub use ring::{
    Armed, Consumer, Frame, Grant, MessageBuf, Producer, Ring, SendProgress, SliceBuf, LAYOUT_VERSION, MAX_CAPACITY,
    MIN_CAPACITY, RING_HEADER_LEN,
};
