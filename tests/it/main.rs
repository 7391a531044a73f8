//! Integration tests for `export-fetcher` (one test binary: `cargo test --test it`).

mod aws;
mod fixtures;
mod hostile_formats;
mod index_cli;
mod lambda_s3;
mod reliability;
mod runtime_api;
mod sinks;
mod support;
