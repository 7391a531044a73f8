//! The scheduled sweep (an EventBridge rule every 5 minutes invokes the function with a
//! `Scheduled Event`): looks at each open export record, and
//!
//! - closes an export whose newest object is at least `EXPORT_QUIET_MINUTES` old (closed by
//!   `quiet_period`), indexing any file still without its manifest;
//! - finishes a close that waits for files (Braze's callback came first), indexing them;
//! - for an export already closed (its record remains when forwarding failed, or a late file
//!   wrote it again): amends it when the folder holds files it does not list, forwards the
//!   current generation to the sinks that did not accept it, and removes the record.
//!
//! Then each open Currents partition record ([`super::partition::sweep_one`]): closes the hour
//! once it and `CURRENTS_GRACE_MINUTES` have passed, forwards and amends a closed one.
//!
//! Its cost grows with the number of open exports and partitions (a listing of the records, and
//! one of each folder or hour closed), never with the bucket's size. One failure is logged and
//! left for the next sweep; the others go on.

use std::time::Instant;

use serde::Serialize;
use tracing::{info, warn};

use crate::pipeline::Env;

use super::export::{
    self, Closed, ClosedBy, Folder, Mode, open_records_prefix, read_export_manifest, read_record,
};
use super::partition::Turn as PartitionTurn;
use super::unix_now;

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    /// Export manifests written (folder, generation, closed_by).
    pub closed: Vec<ClosedExport>,
    /// Exports still open after the sweep.
    pub open: usize,
    /// Seconds since the oldest export still open was first seen (0 when none is).
    pub oldest_open_seconds: i64,
    /// Exports and partitions whose turn failed (retried at the next sweep).
    pub errors: Vec<String>,
    /// Partition manifests written (prefix, generation, closed_by, status).
    pub partitions_closed: Vec<ClosedPartition>,
    /// Currents partitions still open after the sweep.
    pub open_partitions: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClosedPartition {
    pub prefix: String,
    pub generation: u64,
    pub closed_by: &'static str,
    pub status: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClosedExport {
    pub folder: String,
    pub generation: u64,
    pub closed_by: &'static str,
    pub status: &'static str,
}

/// The bucket the sweep finds open records in: `OUTPUT_BUCKET`, else `SOURCE_BUCKET`.
pub fn records_bucket(env: &Env) -> Option<String> {
    env.cfg
        .output_bucket
        .clone()
        .or_else(|| env.cfg.source_bucket.clone())
}

/// Runs one sweep at `now` (unix seconds).
pub async fn sweep(env: &Env, now: i64, deadline: Option<Instant>) -> Result<SweepReport, String> {
    let Some(out_bucket) = records_bucket(env) else {
        return Err(
            "the scheduled sweep needs OUTPUT_BUCKET or SOURCE_BUCKET to find open exports and partitions".into(),
        );
    };
    let prefix = open_records_prefix(&env.cfg.output_prefix);
    let records =
        crate::store::s3::within_deadline(deadline, env.s3.list(&out_bucket, &prefix, None))
            .await
            .map_err(|e| format!("listing the open exports under {prefix}: {e}"))?
            .objects;
    let mut report = SweepReport::default();
    for listed in records {
        match sweep_one(env, &out_bucket, &listed.key, now, deadline).await {
            Ok(Turn::Closed(c)) => report.closed.push(c),
            Ok(Turn::Open { opened_at }) => {
                report.open += 1;
                report.oldest_open_seconds = report.oldest_open_seconds.max(now - opened_at);
            }
            Ok(Turn::Gone) => {}
            Err(e) => {
                warn!(record = %crate::sanitize_for_log(&listed.key), error = %e, "an open export was not swept: the next sweep tries again");
                report.errors.push(e);
                report.open += 1;
                // The record was written when the export was first seen (or later, when a
                // close was recorded): its age is a lower bound, so an export whose closes keep
                // failing still ages into the alarm.
                if let Some(written) = listed.last_modified {
                    report.oldest_open_seconds = report.oldest_open_seconds.max(now - written);
                }
            }
        }
    }
    let prefix = super::partition::open_records_prefix(&env.cfg.output_prefix);
    // The exports' turns are done: a failure to list the partitions is reported with them.
    let records =
        match crate::store::s3::within_deadline(deadline, env.s3.list(&out_bucket, &prefix, None))
            .await
        {
            Ok(listing) => listing.objects,
            Err(e) => {
                let e = format!("listing the open partitions under {prefix}: {e}");
                warn!(error = %e, "the open partitions were not swept: the next sweep tries again");
                report.errors.push(e);
                Vec::new()
            }
        };
    for listed in records {
        match super::partition::sweep_one(env, &out_bucket, &listed.key, now, deadline).await {
            Ok(PartitionTurn::Closed(m)) => report.partitions_closed.push(ClosedPartition {
                prefix: m.prefix.clone(),
                generation: m.generation,
                closed_by: m.closed_by.as_str(),
                status: m.status.as_str(),
            }),
            Ok(PartitionTurn::Open { .. }) => report.open_partitions += 1,
            Ok(PartitionTurn::Gone) => {}
            Err(e) => {
                warn!(record = %crate::sanitize_for_log(&listed.key), error = %e, "an open partition was not swept: the next sweep tries again");
                report.errors.push(e);
                report.open_partitions += 1;
            }
        }
    }
    crate::metrics::record_sweep(&report);
    info!(
        closed = report.closed.len(),
        open = report.open,
        partitions_closed = report.partitions_closed.len(),
        open_partitions = report.open_partitions,
        errors = report.errors.len(),
        "sweep finished"
    );
    Ok(report)
}

enum Turn {
    Closed(ClosedExport),
    Open { opened_at: i64 },
    Gone,
}

fn closed(m: &export::ExportManifest) -> Turn {
    Turn::Closed(ClosedExport {
        folder: m.folder.clone(),
        generation: m.generation,
        closed_by: m.closed_by.as_str(),
        status: m.status.as_str(),
    })
}

async fn sweep_one(
    env: &Env,
    out_bucket: &str,
    record_key: &str,
    now: i64,
    deadline: Option<Instant>,
) -> Result<Turn, String> {
    crate::store::s3::within_deadline(deadline, async {
        let Some((record, etag)) = read_record(env, out_bucket, record_key).await? else {
            return Ok(Turn::Gone);
        };
        let Some(folder) = Folder::parse(&record.bucket, &record.folder) else {
            // Not an export folder (written by hand?): nothing to close; removed.
            let _ = env.s3.delete(out_bucket, record_key).await;
            return Ok(Turn::Gone);
        };
        // Closed already: amend it when files came late, else forward what may not have been,
        // and remove the record.
        let standing = read_export_manifest(env, out_bucket, &folder.prefix)
            .await?
            .is_some();
        let (by, success) = match record.close {
            _ if standing => (ClosedBy::LateFile, true),
            Some(pending) => (pending.by, pending.success),
            None => {
                let files = env
                    .s3
                    .list(&folder.bucket, &folder.prefix, None)
                    .await
                    .map_err(|e| format!("listing {}: {e}", folder.prefix))?
                    .objects;
                let newest = files.iter().filter_map(|f| f.last_modified).max();
                let quiet = env.cfg.export_quiet_minutes as i64 * 60;
                match newest {
                    Some(t) if now - t < quiet => {
                        return Ok(Turn::Open {
                            opened_at: record.opened_at,
                        });
                    }
                    _ => (ClosedBy::QuietPeriod, true),
                }
            }
        };
        match export::close(env, &folder, by, Mode::Index, !success, deadline).await? {
            Closed::Written {
                manifest,
                forward_error: None,
            } => Ok(closed(&manifest)),
            Closed::Written {
                forward_error: Some(e),
                ..
            } => Err(format!("forwarding the export manifest: {e}")),
            Closed::Unchanged(current) if standing => {
                export::forward_export(env, out_bucket, &current, deadline, false)
                    .await
                    .map_err(|e| format!("forwarding the export manifest: {e}"))?;
                remove_if_unchanged(env, out_bucket, record_key, &etag).await;
                Ok(Turn::Gone)
            }
            // Another closer wrote it meanwhile, and removes the record.
            Closed::Unchanged(_) => Ok(Turn::Gone),
            Closed::Waiting { .. } => Ok(Turn::Open {
                opened_at: record.opened_at,
            }),
            Closed::Empty => {
                // The folder is gone (Braze removes exports after some hours): nothing to close.
                info!(folder = %folder.prefix, "an open export's folder is empty: its record is removed");
                remove_if_unchanged(env, out_bucket, record_key, &etag).await;
                Ok(Turn::Gone)
            }
        }
    })
    .await
}

pub(super) async fn remove_if_unchanged(env: &Env, out_bucket: &str, key: &str, etag: &str) {
    match env.s3.get_small(out_bucket, key).await {
        Ok(Some((_, now))) if now == etag => {
            if let Err(e) = env.s3.delete(out_bucket, key).await {
                warn!(error = %e, "an open record was not removed: the next sweep removes it");
            }
        }
        Ok(_) => {}
        Err(e) => warn!(error = %e, "an open record was not removed: the next sweep removes it"),
    }
}

/// For tests and the command line: one sweep now.
pub async fn sweep_now(env: &Env, deadline: Option<Instant>) -> Result<SweepReport, String> {
    sweep(env, unix_now(), deadline).await
}
