//! # export-fetcher
//!
//! Indexes, decompresses and forwards the files Braze writes into a connected S3 bucket: API
//! user exports, dashboard CSV exports, engagement reports, Currents Avro files and message
//! archives. See the README for the product and `schema/manifest.v1.schema.json` for the manifest.
//!
//! ## Layout
//!
//! Data flows down this list and never back:
//!
//! - [`config`]: typed configuration from the environment, validated once.
//! - [`detect`]: Braze kind and metadata from the key, codec from the bytes (pure functions).
//! - [`decode`]: the only place that constructs decompressors; every limit is enforced there.
//! - [`index`]: one module per content format (jsonl, csv, avro, json, lines); pure over bytes.
//! - [`manifest`]: the manifest v1 types, its JSON Schema and the deterministic output keys.
//! - [`store`]: object access behind narrow traits (`ObjectSource`, `PartWriter`); local files.
//! - [`trigger`]: every Lambda envelope → object events (S3, SQS, SNS, EventBridge, key decoding).
//! - [`sink`]: one module per downstream (SNS, SQS, EventBridge, webhook); they only send.
//! - [`pipeline`]: one object from fetch to manifest; the failure policy lives there, once.
//! - [`rollup`]: one manifest per API export (closed by Braze's callback, a quiet period or
//!   by hand; amended by late files), on top of the pipeline.
//! - [`handler`]: Lambda event → pipeline runs → response (batch item failures, Batch
//!   Operations result codes, the export callback's HTTP answer, the scheduled sweep).
//! - [`metrics`]: CloudWatch Embedded Metric Format lines, one per object, in the Lambda only.
//! - `demo`: `export-fetcher demo`: an embedded S3 server, sample Braze files, the real handler
//!   (the `demo` feature: on for the command line, off in the Lambda build).
//! - `backfill`: `export-fetcher backfill`: objects already in a bucket, through S3 Batch
//!   Operations or on this machine (the `backfill` feature: on for the command line, off in the
//!   Lambda build).
//! - [`braze_policy`]: the IAM policies Braze documents for a connected bucket.
//! - [`cli`]: the `export-fetcher` command line (`index`, `invoke`, `demo`, `backfill`,
//!   `close-export`, `braze-policy`).

#[cfg(feature = "backfill")]
pub mod backfill;
pub mod braze_policy;
pub mod cli;
pub mod config;
pub mod decode;
#[cfg(feature = "demo")]
pub mod demo;
pub mod detect;
pub mod handler;
pub mod index;
pub mod manifest;
pub mod metrics;
pub mod pipeline;
pub mod rollup;
pub mod sink;
pub mod store;
pub mod trigger;

/// Makes a key or name safe to put in a log line: control characters (newlines, escape
/// sequences) are escaped and very long values are cut.
pub fn sanitize_for_log(s: &str) -> String {
    const MAX: usize = 1024;
    let mut out = String::with_capacity(s.len().min(MAX) + 8);
    for (i, c) in s.chars().enumerate() {
        if i >= MAX {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// `Read::read` for a reader that is also `BufRead`: copies from its buffer (one copy, no
/// second buffer).
pub(crate) fn read_from_buffer<R: std::io::BufRead + ?Sized>(
    r: &mut R,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    let avail = r.fill_buf()?;
    let n = avail.len().min(buf.len());
    buf[..n].copy_from_slice(&avail[..n]);
    r.consume(n);
    Ok(n)
}

/// Lowercase hexadecimal of `bytes` (a digest, as manifests write it).
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn log_sanitising_escapes_control_characters() {
        assert_eq!(
            super::sanitize_for_log("a\nb\u{1b}[31mc\r"),
            "a\\nb\\u{1b}[31mc\\r"
        );
        assert_eq!(super::sanitize_for_log("plain é+=/ key"), "plain é+=/ key");
    }
}
