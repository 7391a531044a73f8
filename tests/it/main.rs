//! Integration tests for `export-fetcher` (one test binary: `cargo test --test it`).

mod aws;
#[cfg(feature = "backfill")]
mod backfill;
mod batch_ops;
mod cli_edges;
mod deploy_artifact;
mod exactly_once_ack;
mod exactly_once_deadlines;
mod exactly_once_versions;
mod exports;
mod fixtures;
mod hostile_avro;
mod hostile_formats;
mod hostile_keys;
mod hostile_zip;
mod index_cli;
mod lambda_s3;
mod partitions;
mod readme;
mod reliability;
mod requests;
mod runtime_api;
mod sinks;
mod support;
