//! Postgres's storage read in Rust: heap pages, the tuples on them, the
//! filters evaluated on those tuples in place, and btree leaves. Nothing
//! above this folder reaches into page or tuple layouts, and nothing here
//! knows about plans.
//!
//! - [`stream`]: one participant's share of a parallel heap scan, as
//!   Arrow batches;
//! - [`buffer`]: a block's buffer found by a guess, not the mapping
//!   table;
//! - [`page`]: a scan's next page, read as `heapgetpage` reads it, and
//!   rows fetched by TID;
//! - [`deform`]: a page's visible tuples walked attribute by attribute
//!   into column readers, with the pages ahead prefetched;
//! - [`prefetch`]: pages and tuples brought into the CPU's cache ahead
//!   of the walk;
//! - [`filter`]: a scan's conditions evaluated on the walked values;
//! - [`keys`]: the join keys a scan keeps rows by;
//! - [`btree`]: ascending integer keys looked up along a btree's leaves;
//! - [`probe`]: one participant's index lookups, the walk and the fetch.

pub mod btree;
pub mod buffer;
pub mod deform;
pub mod filter;
pub mod keys;
pub mod page;
pub mod prefetch;
pub mod probe;
pub mod stream;
