//! The table `backfill --local` prints at the end: objects and bytes by outcome, manifests by
//! status, throughput, and the objects that failed.

use std::collections::BTreeMap;
use std::time::Duration;

use super::progress;
use crate::manifest::Status;
use crate::pipeline::ObjectOutcome;

/// Failed objects listed by name at the end (all are counted).
pub const LISTED_FAILURES: usize = 20;

/// What `--local` did, object by object.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    /// By outcome label (`done`, `duplicate`, …): objects and bytes.
    outcomes: BTreeMap<&'static str, (u64, u64)>,
    /// Manifests written (`done`), by status.
    statuses: BTreeMap<&'static str, u64>,
    failed: u64,
    failures: Vec<(String, String)>,
}

impl Summary {
    /// Records one object's final outcome.
    pub fn record(&mut self, key: &str, size: u64, outcome: &ObjectOutcome) {
        let slot = self.outcomes.entry(outcome.label()).or_default();
        slot.0 += 1;
        slot.1 += size;
        let failure = match outcome {
            ObjectOutcome::Done { manifest, .. } => {
                *self.statuses.entry(manifest.status.as_str()).or_default() += 1;
                (manifest.status == Status::Failed).then(|| {
                    manifest
                        .errors
                        .first()
                        .map_or_else(|| "failed".to_string(), |e| e.message.clone())
                })
            }
            ObjectOutcome::Retry { error } => Some(format!("not done (retryable): {error}")),
            _ => None,
        };
        if let Some(reason) = failure {
            self.failed += 1;
            if self.failures.len() < LISTED_FAILURES {
                self.failures.push((key.to_string(), reason));
            }
        }
    }

    /// Objects that failed: a `failed` manifest, or a retryable failure that outlasted the
    /// attempts.
    pub fn failed(&self) -> u64 {
        self.failed
    }

    pub fn objects(&self) -> u64 {
        self.outcomes.values().map(|(n, _)| n).sum()
    }

    pub fn bytes(&self) -> u64 {
        self.outcomes.values().map(|(_, b)| b).sum()
    }

    /// The table, after `elapsed`.
    pub fn render(&self, elapsed: Duration) -> String {
        let mut out = format!("{:<14}{:>10}{:>14}\n", "outcome", "objects", "bytes");
        for label in ["done", "duplicate", "skipped", "superseded", "retry"] {
            let Some((n, bytes)) = self.outcomes.get(label) else {
                continue;
            };
            out.push_str(&format!(
                "{label:<14}{n:>10}{:>14}\n",
                progress::bytes(*bytes)
            ));
            if label == "done" {
                for status in ["complete", "partial", "failed"] {
                    if let Some(n) = self.statuses.get(status) {
                        out.push_str(&format!("  {status:<12}{n:>10}\n"));
                    }
                }
            }
        }
        let secs = elapsed.as_secs_f64().max(1e-3);
        out.push_str(&format!(
            "{:<14}{:>10}{:>14}\n{:.1} s: {:.1} objects/s, {}/s\n",
            "total",
            self.objects(),
            progress::bytes(self.bytes()),
            elapsed.as_secs_f64(),
            self.objects() as f64 / secs,
            progress::bytes((self.bytes() as f64 / secs) as u64),
        ));
        if self.failed > 0 {
            out.push_str(&format!("failed: {} objects\n", self.failed));
            for (key, reason) in &self.failures {
                out.push_str(&format!(
                    "  {}: {}\n",
                    crate::sanitize_for_log(key),
                    crate::sanitize_for_log(reason)
                ));
            }
            if self.failed as usize > self.failures.len() {
                out.push_str(&format!(
                    "  … and {} more\n",
                    self.failed as usize - self.failures.len()
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Manifest, ObjectError};

    fn manifest(status: Status, error: Option<&str>) -> Box<Manifest> {
        let mut m: Manifest = serde_json::from_value(serde_json::json!({
            "manifest_version": 1, "status": status.as_str(), "kind": "unknown",
            "source": {"bucket": "b", "key": "k", "size": 1, "etag": "e", "version_id": null,
                       "sequencer": null, "event_time": null, "event_name": null},
            "braze": {}, "compression": "none", "parts": [],
            "totals": {"parts": 0, "records": 0, "bytes": 0, "compressed_bytes": 0},
            "errors": [], "manifest_key": "k", "processed_at": "2025-04-01T00:00:00.000Z",
            "duration_ms": 1, "producer": {"name": "export-fetcher", "version": "0"}
        }))
        .unwrap();
        if let Some(e) = error {
            m.errors.push(ObjectError {
                message: e.into(),
                part: None,
            });
        }
        Box::new(m)
    }

    #[test]
    fn counts_outcomes_statuses_and_failures() {
        let mut s = Summary::default();
        let done = |status, error| ObjectOutcome::Done {
            manifest: manifest(status, error),
            deliveries: Vec::new(),
        };
        s.record("a.zip", 100, &done(Status::Complete, None));
        s.record("b.zip", 200, &done(Status::Complete, None));
        s.record(
            "c.gz",
            50,
            &done(Status::Failed, Some("corrupt deflate stream")),
        );
        s.record(
            "d.zip",
            10,
            &ObjectOutcome::Duplicate {
                manifest_key: "m".into(),
                deliveries: Vec::new(),
            },
        );
        s.record(
            "e.zip",
            5,
            &ObjectOutcome::Retry {
                error: "HTTP 503".into(),
            },
        );
        assert_eq!((s.objects(), s.bytes(), s.failed()), (5, 365, 2));
        let table = s.render(Duration::from_secs(2));
        let row = |label: &str, n: u64| format!("{label:<14}{n:>10}");
        let status = |label: &str, n: u64| format!("  {label:<12}{n:>10}");
        for want in [
            row("done", 3),
            status("complete", 2),
            status("failed", 1),
            row("duplicate", 1),
            row("retry", 1),
            row("total", 5),
            "2.5 objects/s".into(),
            "failed: 2 objects".into(),
            "c.gz: corrupt deflate stream".into(),
            "e.zip: not done (retryable): HTTP 503".into(),
        ] {
            assert!(table.contains(&want), "{want:?} not in\n{table}");
        }
        assert!(!table.contains("partial"), "{table}");
    }
}
