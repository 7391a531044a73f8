//! CloudWatch metrics as Embedded Metric Format (EMF) lines in the function's log: one JSON line
//! on stdout per object, which CloudWatch Logs turns into metrics. No API call, no permission,
//! nothing sent from the hot path but one line.
//!
//! Namespace `ExportFetcher`; every metric is published by `FunctionName` (so that stacks in one
//! account stay apart) alone, with `Status`, and with `Kind` and `Status`:
//!
//! | metric | unit | what |
//! |---|---|---|
//! | `Objects` | Count | 1 per object event (outcome `done`, `duplicate`, `skipped`, `superseded`, `retry`) |
//! | `FailedObjects` | Count | 1 when the manifest written is `failed` |
//! | `RetriedObjects` | Count | 1 when the object will be retried |
//! | `Records`, `Bytes`, `CompressedBytes` | Count / Bytes | the manifest's totals |
//! | `Duration` | Milliseconds | the object's processing time |
//! | `Lag` | Seconds | from the S3 event time to the manifest written (new manifests only) |
//! | `SinkFailures` | Count | sinks that did not accept the manifest |
//! | `ExportsClosed` | Count | 1 per export manifest generation written (with `ClosedBy`, `Status`) |
//! | `OpenExports` | Count | exports still open after a scheduled sweep |
//! | `OldestOpenExportAge` | Seconds | since the oldest export still open was first seen |
//! | `PartitionsClosed` | Count | 1 per Currents partition manifest generation written (with `ClosedBy`, `Status`) |
//! | `OpenPartitions` | Count | Currents partitions still open after a scheduled sweep |
//! | `SweepErrors` | Count | open exports and partitions a sweep could not handle (tried again at the next) |
//!
//! Only the Lambda runtime loop emits them ([`enable`]); the command line never does, so that
//! `invoke` and `backfill --local` keep stdout for their own output.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::manifest::Status;
use crate::pipeline::ObjectOutcome;

/// The metrics' CloudWatch namespace.
pub const NAMESPACE: &str = "ExportFetcher";

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns the EMF lines on (the Lambda runtime loop does, once).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// One export manifest generation written, when enabled.
pub fn record_export_closed(m: &crate::rollup::export::ExportManifest) {
    record_closed("ExportsClosed", m.closed_by.as_str(), m.status.as_str());
}

/// One partition manifest generation written, when enabled.
pub fn record_partition_closed(m: &crate::rollup::partition::PartitionManifest) {
    record_closed("PartitionsClosed", m.closed_by.as_str(), m.status.as_str());
}

fn record_closed(metric: &str, closed_by: &str, status: &str) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    let function = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_default();
    println!(
        "{}",
        closed_line(metric, closed_by, status, &function, now_millis())
    );
}

/// The EMF line for one roll-up generation written: `metric` (`ExportsClosed`,
/// `PartitionsClosed`) 1, by what closed it and its status.
pub fn closed_line(
    metric: &str,
    closed_by: &str,
    status: &str,
    function: &str,
    now_ms: u64,
) -> Value {
    let mut line = json!({
        "FunctionName": function,
        "ClosedBy": closed_by,
        "Status": status,
        "_aws": {
            "Timestamp": now_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["FunctionName"], ["FunctionName", "ClosedBy"], ["FunctionName", "Status"]],
                "Metrics": [{"Name": metric, "Unit": "Count"}],
            }],
        },
    });
    line[metric] = json!(1);
    line
}

/// One scheduled sweep's gauges, when enabled.
pub fn record_sweep(report: &crate::rollup::sweep::SweepReport) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    let function = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_default();
    println!("{}", sweep_line(report, &function, now_millis()));
}

/// The EMF line for one sweep.
pub fn sweep_line(
    report: &crate::rollup::sweep::SweepReport,
    function: &str,
    now_ms: u64,
) -> Value {
    json!({
        "FunctionName": function,
        "OpenExports": report.open,
        "OldestOpenExportAge": report.oldest_open_seconds,
        "OpenPartitions": report.open_partitions,
        "SweepErrors": report.errors.len(),
        "_aws": {
            "Timestamp": now_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["FunctionName"]],
                "Metrics": [
                    {"Name": "OpenExports", "Unit": "Count"},
                    {"Name": "OldestOpenExportAge", "Unit": "Seconds"},
                    {"Name": "OpenPartitions", "Unit": "Count"},
                    {"Name": "SweepErrors", "Unit": "Count"},
                ],
            }],
        },
    })
}

/// One object's metrics, when enabled: printed as one EMF line on stdout.
pub fn record_object(outcome: &ObjectOutcome, event_time: Option<&str>, took: Duration) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    let function = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_default();
    let line = object_line(outcome, event_time, took, &function, now_millis());
    println!("{line}");
}

fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Seconds from an RFC 3339 time to `now_ms`, when it parses and is not in the future.
fn lag_seconds(event_time: &str, now_ms: u64) -> Option<f64> {
    let t = time::OffsetDateTime::parse(event_time, &time::format_description::well_known::Rfc3339)
        .ok()?;
    let then_ms = t.unix_timestamp_nanos() / 1_000_000;
    let lag = now_ms as i128 - then_ms;
    (lag >= 0).then(|| lag as f64 / 1000.0)
}

/// The EMF line for one object.
pub fn object_line(
    outcome: &ObjectOutcome,
    event_time: Option<&str>,
    took: Duration,
    function: &str,
    now_ms: u64,
) -> Value {
    let (kind, status) = match outcome {
        ObjectOutcome::Done { manifest, .. } => (manifest.kind.as_str(), manifest.status.as_str()),
        other => ("unknown", other.label()),
    };
    let mut metrics = vec![
        json!({"Name": "Objects", "Unit": "Count"}),
        json!({"Name": "FailedObjects", "Unit": "Count"}),
        json!({"Name": "RetriedObjects", "Unit": "Count"}),
        json!({"Name": "Duration", "Unit": "Milliseconds"}),
        json!({"Name": "SinkFailures", "Unit": "Count"}),
    ];
    let mut line = json!({
        "FunctionName": function,
        "Kind": kind,
        "Status": status,
        "Objects": 1,
        "FailedObjects": 0,
        "RetriedObjects": u8::from(matches!(outcome, ObjectOutcome::Retry { .. })),
        "Duration": took.as_millis() as u64,
        "SinkFailures": 0,
        "Outcome": outcome.label(),
    });
    if let ObjectOutcome::Done {
        manifest,
        deliveries,
    } = outcome
    {
        line["FailedObjects"] = json!(u8::from(manifest.status == Status::Failed));
        line["SinkFailures"] = json!(deliveries.iter().filter(|d| d.error.is_some()).count());
        line["Records"] = json!(manifest.totals.records);
        line["Bytes"] = json!(manifest.totals.bytes);
        line["CompressedBytes"] = json!(manifest.totals.compressed_bytes);
        metrics.push(json!({"Name": "Records", "Unit": "Count"}));
        metrics.push(json!({"Name": "Bytes", "Unit": "Bytes"}));
        metrics.push(json!({"Name": "CompressedBytes", "Unit": "Bytes"}));
        if let Some(lag) = event_time.and_then(|t| lag_seconds(t, now_ms)) {
            line["Lag"] = json!(lag);
            metrics.push(json!({"Name": "Lag", "Unit": "Seconds"}));
        }
    }
    if let ObjectOutcome::Duplicate { deliveries, .. } = outcome {
        line["SinkFailures"] = json!(deliveries.iter().filter(|d| d.error.is_some()).count());
    }
    line["_aws"] = json!({
        "Timestamp": now_ms,
        "CloudWatchMetrics": [{
            "Namespace": NAMESPACE,
            "Dimensions": [
                ["FunctionName", "Kind", "Status"],
                ["FunctionName", "Status"],
                ["FunctionName"],
            ],
            "Metrics": metrics,
        }],
    });
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Manifest;

    fn manifest(status: &str) -> Manifest {
        serde_json::from_value(json!({
            "manifest_version": 1, "status": status, "kind": "api_user_export",
            "source": {"bucket": "b", "key": "k", "size": 10},
            "braze": {}, "compression": "gzip", "parts": [],
            "totals": {"parts": 1, "records": 7, "bytes": 100, "compressed_bytes": 10},
            "errors": [{"message": "x"}], "manifest_key": "m", "processed_at": "2026-01-01T00:00:00Z",
            "duration_ms": 0, "producer": {"name": "export-fetcher", "version": "0"}
        }))
        .unwrap()
    }

    /// Checks the EMF contract: every metric named in the directive has a number at the top
    /// level, every dimension a string.
    fn assert_emf(line: &Value) {
        let directive = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], NAMESPACE);
        assert!(line["_aws"]["Timestamp"].is_u64());
        for m in directive["Metrics"].as_array().unwrap() {
            let name = m["Name"].as_str().unwrap();
            assert!(line[name].is_number(), "{name} has no value: {line}");
        }
        for set in directive["Dimensions"].as_array().unwrap() {
            for d in set.as_array().unwrap() {
                assert!(line[d.as_str().unwrap()].is_string(), "{d}: {line}");
            }
        }
    }

    #[test]
    fn a_written_manifest_gives_its_totals_lag_and_failures() {
        let now = 1_767_225_610_500; // 2026-01-01T00:00:10.500Z
        let outcome = ObjectOutcome::Done {
            manifest: Box::new(manifest("failed")),
            deliveries: Vec::new(),
        };
        let line = object_line(
            &outcome,
            Some("2026-01-01T00:00:00.000Z"),
            Duration::from_millis(42),
            "fn",
            now,
        );
        assert_emf(&line);
        assert_eq!(line["Kind"], "api_user_export");
        assert_eq!(line["Status"], "failed");
        assert_eq!(line["FailedObjects"], 1);
        assert_eq!(line["Records"], 7);
        assert_eq!(line["Duration"], 42);
        assert_eq!(line["Lag"], 10.5);
    }

    #[test]
    fn other_outcomes_count_as_objects_with_their_label() {
        for outcome in [
            ObjectOutcome::Retry { error: "e".into() },
            ObjectOutcome::Skipped { reason: "r".into() },
            ObjectOutcome::Duplicate {
                manifest_key: "m".into(),
                deliveries: Vec::new(),
            },
        ] {
            let line = object_line(&outcome, Some("not a time"), Duration::ZERO, "fn", 0);
            assert_emf(&line);
            assert_eq!(line["Status"], outcome.label());
            assert!(line.get("Lag").is_none());
            assert_eq!(
                line["RetriedObjects"],
                u8::from(matches!(outcome, ObjectOutcome::Retry { .. }))
            );
        }
    }

    #[test]
    fn roll_up_and_sweep_lines_follow_the_emf_contract() {
        for metric in ["ExportsClosed", "PartitionsClosed"] {
            let line = closed_line(metric, "late_file", "partial", "fn", 7);
            assert_emf(&line);
            assert_eq!(
                (&line[metric], &line["ClosedBy"]),
                (&json!(1), &json!("late_file"))
            );
        }
        let report = crate::rollup::sweep::SweepReport {
            open: 2,
            oldest_open_seconds: 90_000,
            open_partitions: 3,
            errors: vec!["x".into()],
            ..Default::default()
        };
        let line = sweep_line(&report, "fn", 7);
        assert_emf(&line);
        assert_eq!(line["OldestOpenExportAge"], 90_000);
        assert_eq!(line["OpenPartitions"], 3);
        assert_eq!(line["SweepErrors"], 1);
    }
}
