//! loom models of weft-core's protocol live in `tests/`; this crate has no
//! code of its own. Run them with
//! `RUSTFLAGS="--cfg loom" cargo test -p weft-loom-tests --release`.
