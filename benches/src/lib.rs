//! Benchmarks of weft-core's frame ring; the code is in `benches/`, the
//! figures in `README.md`. This library is empty: it exists because cargo
//! wants a target besides the benches.
