//! Integration tests for `export-fetcher` (one test binary: `cargo test --test it`).

mod fixtures;
mod index_cli;
mod support;
