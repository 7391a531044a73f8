//! One manifest per API user export: the folder
//! `segment-export/<segment>/<date>/<object_prefix>/` closed into
//! `<OUTPUT_PREFIX>exports/<folder>/export.manifest.json` (JSON Schema
//! `schema/export-manifest.v1.schema.json`).
//!
//! Closing lists the folder (the truth of which files exist) and reads each file's manifest. A
//! file without one is indexed on the spot ([`Mode::Index`]: the sweep, the command) or makes
//! the close wait for it ([`Mode::Wait`]: the callback, whose close is recorded and completed by
//! the file's own run, see [`after_object`]). So the export manifest never lists a file that is
//! not indexed, and no file is left out for good:
//!
//! - every generation is written conditionally (`If-None-Match` for the first, `If-Match` on the
//!   one it replaces), so concurrent closers write it once; the loser reads it back and stops
//!   when it already lists every file;
//! - after writing, the closer lists the folder again; a file that appeared meanwhile makes it
//!   amend at once (generation + 1, `closed_by` the closer's own);
//! - a file indexed after the close finds the export manifest without it and amends it the same
//!   way ([`after_object`]). Its manifest is written before it looks, and the closer lists after
//!   writing, so one of the two always sees the other.
//!
//! The writer of a generation forwards it (once per sink: delivery records under
//! `<OUTPUT_PREFIX>exports/<folder>/deliveries/`), then removes the export's open record; when
//! forwarding fails the record stays and the sweep forwards it again.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::{info, warn};

use crate::detect::kind_from_key;
use crate::manifest::{Braze, Kind, Manifest, ObjectError, Producer, Status, fit_key};
use crate::pipeline::Env;
use crate::sink::{self, Identity, MessageType};
use crate::store::s3::{Listed, OutputKind};
use crate::store::{Condition, StoreError};

pub use super::closer::CloseError;
use super::closer::store_error;
use super::closer::{self, ATTEMPTS, Group, Look, Outcome, RollUp, Wrote};
use super::unix_now;

pub const EXPORT_MANIFEST_VERSION: u32 = 1;
/// The export manifest's JSON Schema.
pub const SCHEMA_JSON: &str = include_str!("../../schema/export-manifest.v1.schema.json");
/// The `source.event_name` of a file's manifest when a close indexed it (no notification had
/// been processed for it yet; its own notification then finds the manifest, a duplicate).
pub const CLOSE_EVENT_NAME: &str = "ExportClose:Listed";

/// What wrote a generation of the export manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClosedBy {
    /// Braze's `callback_endpoint` POST.
    Callback,
    /// The scheduled sweep: no new object for `EXPORT_QUIET_MINUTES`.
    QuietPeriod,
    /// `export-fetcher close-export`.
    Command,
    /// A file that arrived after the export was closed.
    LateFile,
}

impl ClosedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            ClosedBy::Callback => "callback",
            ClosedBy::QuietPeriod => "quiet_period",
            ClosedBy::Command => "command",
            ClosedBy::LateFile => "late_file",
        }
    }
}

/// One object of the export, as listed, with its manifest's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportFile {
    pub key: String,
    pub size: u64,
    /// Without quotes, as in per-object manifests.
    pub etag: Option<String>,
    /// The file's own manifest; absent only for a file the key filters leave out (`skipped`).
    pub manifest_key: Option<String>,
    /// The file's manifest status (`skipped` when the key filters leave it out).
    pub status: Status,
    pub records: u64,
    /// Decompressed bytes.
    pub bytes: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportTotals {
    pub files: u64,
    pub records: u64,
    pub bytes: u64,
    pub compressed_bytes: u64,
}

/// The export manifest, version 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportManifest {
    pub export_manifest_version: u32,
    /// `complete` when every file's manifest is; `failed` when none could be read (or Braze
    /// said the export failed); else `partial`.
    pub status: Status,
    pub kind: Kind,
    /// The bucket Braze wrote the export to.
    pub bucket: String,
    /// The export's folder: `segment-export/<segment>/<date>/<object_prefix>/`.
    pub folder: String,
    pub braze: Braze,
    pub closed_by: ClosedBy,
    pub closed_at: String,
    pub generation: u64,
    pub files: Vec<ExportFile>,
    pub totals: ExportTotals,
    /// Why the export is not `complete`, beyond its files' own statuses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ObjectError>,
    pub manifest_key: String,
    pub producer: Producer,
}

impl ExportManifest {
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).expect("export manifest serialises")
    }

    /// Whether it lists this version of `key` with this result of its own manifest (when
    /// given: a file indexed again may have a new one).
    pub fn lists(&self, key: &str, etag: Option<&str>, result: Option<&Manifest>) -> bool {
        let files = self.files.iter();
        let files = files.map(|f| (f.key.as_str(), f.etag.as_deref(), f.status, f.records));
        super::lists_version(files, key, etag, result)
    }
}

/// An API export's folder in a bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folder {
    pub bucket: String,
    /// `…segment-export/<segment>/<date>/<object_prefix>/`, ending with `/`.
    pub prefix: String,
    /// segment_id, date, export_id, object_prefix, requested_at.
    pub braze: Braze,
}

impl Folder {
    /// The export folder an object key belongs to, when it is an API export's file.
    pub fn of_key(bucket: &str, key: &str) -> Option<Folder> {
        let (kind, braze) = kind_from_key(key)?;
        if kind != Kind::ApiUserExport {
            return None;
        }
        let prefix = &key[..key.rfind('/')? + 1];
        Some(Folder {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            braze,
        })
    }

    /// A folder given as `segment-export/<segment>/<date>/<object_prefix>` (with or without its
    /// final `/`).
    pub fn parse(bucket: &str, folder: &str) -> Option<Folder> {
        let prefix = folder.trim_end_matches('/');
        Folder::of_key(bucket, &format!("{prefix}/file"))
    }

    /// The request time, unix seconds (from `<uuid>-<unix>`).
    pub fn requested_unix(&self) -> Option<i64> {
        self.braze
            .object_prefix
            .as_deref()?
            .rsplit_once('-')?
            .1
            .parse()
            .ok()
    }
}

/// `<prefix>exports/<folder>/export.manifest.json`
pub fn export_manifest_key(output_prefix: &str, folder: &str) -> String {
    fit_key(
        format!("{output_prefix}exports/{folder}export.manifest.json"),
        "export.manifest.json",
    )
}

/// Where open records live: `<prefix>open/exports/`.
pub fn open_records_prefix(output_prefix: &str) -> String {
    format!("{output_prefix}open/exports/")
}

/// `<prefix>open/exports/<folder>/open.json`
pub fn open_record_key(output_prefix: &str, folder: &str) -> String {
    fit_key(
        format!("{}{folder}open.json", open_records_prefix(output_prefix)),
        "open.json",
    )
}

/// An open export: written when one of its files is indexed, removed once its export manifest
/// is written and forwarded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenRecord {
    pub bucket: String,
    pub folder: String,
    /// Unix second the record was first written.
    pub opened_at: i64,
    /// A close that waits for files still being indexed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub close: Option<PendingClose>,
}

/// A close asked for while some files had no manifest yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingClose {
    pub by: ClosedBy,
    /// Unix second it was asked for.
    pub at: i64,
    /// What Braze's callback said (`success`); `false` makes the export `failed`.
    #[serde(default = "yes")]
    pub success: bool,
}

fn yes() -> bool {
    true
}

/// How a close treats a file that has no manifest yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The close waits: nothing is written ([`Closed::Waiting`]).
    Wait,
    /// The file is indexed now, through the pipeline.
    Index,
}

/// What a close did.
#[derive(Debug, Clone, PartialEq)]
pub enum Closed {
    /// This call wrote a new generation, and forwarded it.
    Written {
        manifest: Box<ExportManifest>,
        /// Forwarding failed: the open record stays, and the sweep forwards it again.
        forward_error: Option<String>,
    },
    /// The export manifest already lists every file of the folder: nothing written.
    Unchanged(Box<ExportManifest>),
    /// Some files have no manifest yet (with [`Mode::Wait`]): nothing written.
    Waiting { missing: Vec<String> },
    /// The folder holds no object.
    Empty,
}

/// The export manifest and its ETag, when written.
pub async fn read_export_manifest(
    env: &Env,
    out_bucket: &str,
    folder: &str,
) -> Result<Option<(ExportManifest, String)>, CloseError> {
    let key = export_manifest_key(&env.cfg.output_prefix, folder);
    closer::read_standing::<ExportClose>(env, out_bucket, &key).await
}

/// The open record and its ETag.
pub async fn read_record(
    env: &Env,
    out_bucket: &str,
    key: &str,
) -> Result<Option<(OpenRecord, String)>, CloseError> {
    super::read_json(env, out_bucket, key, "open record").await
}

/// Writes the open record of `folder` unless one exists; returns the record that stands.
pub async fn ensure_record(
    env: &Env,
    out_bucket: &str,
    folder: &Folder,
) -> Result<(OpenRecord, String), CloseError> {
    let key = open_record_key(&env.cfg.output_prefix, &folder.prefix);
    for _ in 0..ATTEMPTS {
        if let Some(found) = read_record(env, out_bucket, &key).await? {
            return Ok(found);
        }
        let record = OpenRecord {
            bucket: folder.bucket.clone(),
            folder: folder.prefix.clone(),
            opened_at: unix_now(),
            close: None,
        };
        match put_record(env, out_bucket, &key, &record, Condition::IfNoneMatch).await {
            Ok(etag) => return Ok((record, etag)),
            Err(StoreError::PreconditionFailed) => continue,
            Err(e) => return Err(store_error("writing the open record", e)),
        }
    }
    Err("the open record kept changing".into())
}

async fn put_record(
    env: &Env,
    out_bucket: &str,
    key: &str,
    record: &OpenRecord,
    condition: Condition,
) -> Result<String, StoreError> {
    let body = serde_json::to_vec(record).expect("record serialises");
    env.s3
        .put_output(
            OutputKind::Manifest,
            out_bucket,
            key,
            body,
            "application/json",
            condition,
        )
        .await
        .map(Option::unwrap_or_default)
}

/// Records a close that waits for files (keeping the earliest one asked for).
pub async fn record_pending_close(
    env: &Env,
    out_bucket: &str,
    folder: &Folder,
    pending: PendingClose,
) -> Result<(), CloseError> {
    let key = open_record_key(&env.cfg.output_prefix, &folder.prefix);
    for _ in 0..ATTEMPTS {
        let (mut record, etag) = ensure_record(env, out_bucket, folder).await?;
        if record
            .close
            .is_some_and(|c| c.by == pending.by && c.success == pending.success)
        {
            return Ok(());
        }
        record.close = Some(pending);
        match put_record(env, out_bucket, &key, &record, Condition::IfMatch(etag)).await {
            Ok(_) => return Ok(()),
            Err(StoreError::PreconditionFailed) => continue,
            Err(e) => return Err(store_error("writing the open record", e)),
        }
    }
    Err("the open record kept changing".into())
}

/// Removes the open record once the export is closed and forwarded, unless it changed since
/// `seen` (a file's run or a callback wrote it meanwhile: the sweep looks at it again).
async fn remove_record(env: &Env, out_bucket: &str, folder: &str, seen: Option<&str>) {
    let key = open_record_key(&env.cfg.output_prefix, folder);
    if let Some(seen) = seen {
        match env.s3.get_small(out_bucket, &key).await {
            Ok(Some((_, etag))) if etag != seen => return,
            Ok(None) => return,
            Err(e) => {
                warn!(error = %e, "the open record was not removed: the sweep removes it");
                return;
            }
            Ok(Some(_)) => {}
        }
    }
    if let Err(e) = env.s3.delete(out_bucket, &key).await {
        warn!(error = %e, "the open record was not removed: the sweep removes it");
    }
}

/// What a file contributes, from its listing and its manifest.
fn file_of(listed: &Listed, manifest: Option<&Manifest>) -> (ExportFile, u64) {
    match manifest {
        Some(m) => (
            ExportFile {
                key: listed.key.clone(),
                size: listed.size,
                etag: listed.etag.clone(),
                manifest_key: Some(m.manifest_key.clone()),
                status: m.status,
                records: m.totals.records,
                bytes: m.totals.bytes,
            },
            m.totals.compressed_bytes,
        ),
        None => (
            ExportFile {
                key: listed.key.clone(),
                size: listed.size,
                etag: listed.etag.clone(),
                manifest_key: None,
                status: Status::Skipped,
                records: 0,
                bytes: 0,
            },
            0,
        ),
    }
}

/// The export's status from its files'.
pub fn export_status(files: &[ExportFile]) -> Status {
    rollup_status(files.iter().map(|f| f.status))
}

/// A roll-up's status from its files': `complete` when every one is; `failed` when none is
/// `complete` or `partial`; else `partial`.
pub fn rollup_status(statuses: impl Iterator<Item = Status> + Clone) -> Status {
    let mut all = statuses.clone().peekable();
    if all.peek().is_some() && statuses.clone().all(|s| s == Status::Complete) {
        Status::Complete
    } else if statuses
        .into_iter()
        .any(|s| matches!(s, Status::Complete | Status::Partial))
    {
        Status::Partial
    } else {
        Status::Failed
    }
}

/// Closes the export in `folder` now: lists it, reads (or, with [`Mode::Index`], writes) each
/// file's manifest, writes the next generation of the export manifest where it does not
/// already list every file, and forwards it. `by` is what asked, and what the generation's
/// `closed_by` says. `braze_failed`: Braze's callback said `success: false`.
pub async fn close(
    env: &Env,
    folder: &Folder,
    by: ClosedBy,
    mode: Mode,
    braze_failed: bool,
    deadline: Option<Instant>,
) -> Result<Closed, CloseError> {
    crate::store::s3::within_deadline(deadline, async {
        let out_bucket = env.output_bucket(&folder.bucket).to_string();
        let record_key = open_record_key(&env.cfg.output_prefix, &folder.prefix);
        let record_seen = match env.s3.get_small(&out_bucket, &record_key).await {
            Ok(found) => found.map(|(_, etag)| etag),
            Err(e) => return Err(store_error("reading the open record", e)),
        };
        let closer = ExportClose {
            folder,
            by,
            braze_failed,
        };
        Ok(
            // Boxed: the close can index a file through the pipeline, whose roll-up step can
            // close again; a boxed future keeps the nesting of future types shallow.
            match Box::pin(closer::close(env, &closer, mode == Mode::Index, deadline)).await? {
                Outcome::Written {
                    manifest,
                    forward_error,
                    settled,
                } => {
                    if settled && forward_error.is_none() {
                        remove_record(env, &out_bucket, &folder.prefix, record_seen.as_deref())
                            .await;
                    }
                    Closed::Written {
                        manifest,
                        forward_error,
                    }
                }
                Outcome::Unchanged(m) => Closed::Unchanged(m),
                Outcome::Waiting(missing) => Closed::Waiting { missing },
                Outcome::Empty => Closed::Empty,
            },
        )
    })
    .await
}

/// An export folder's close, as a [`RollUp`].
struct ExportClose<'a> {
    folder: &'a Folder,
    /// What asked for it, and what the generation's `closed_by` says.
    by: ClosedBy,
    /// Braze's callback said `success: false`.
    braze_failed: bool,
}

impl RollUp for ExportClose<'_> {
    type Manifest = ExportManifest;
    type File = ExportFile;
    const WHAT: &'static str = "export";
    const CLOSE_EVENT_NAME: &'static str = CLOSE_EVENT_NAME;

    fn group(&self, env: &Env) -> Group<'_> {
        Group {
            bucket: &self.folder.bucket,
            prefix: &self.folder.prefix,
            manifest_key: export_manifest_key(&env.cfg.output_prefix, &self.folder.prefix),
        }
    }

    fn files(m: &ExportManifest) -> &[ExportFile] {
        &m.files
    }

    fn build(&self, env: &Env, look: Look<'_, ExportManifest>) -> ExportManifest {
        let Look {
            existing,
            files,
            manifests,
        } = look;
        let mut entries = Vec::with_capacity(files.len());
        let mut totals = ExportTotals::default();
        for (file, manifest) in files.iter().zip(manifests) {
            let (entry, compressed) = file_of(file, manifest.as_ref());
            totals.files += 1;
            totals.records += entry.records;
            totals.bytes += entry.bytes;
            totals.compressed_bytes += compressed;
            entries.push(entry);
        }
        let mut errors = Vec::new();
        let mut status = export_status(&entries);
        let previous_failed = existing.is_some_and(|(m, _)| {
            m.errors
                .iter()
                .any(|e| e.message.starts_with(BRAZE_FAILED_PREFIX))
        });
        if self.braze_failed || previous_failed {
            status = Status::Failed;
            errors.push(ObjectError {
                message: format!(
                    "{BRAZE_FAILED_PREFIX} (its callback said \"success\": false): the files may \
                     not be the whole export"
                ),
                part: None,
            });
        }
        ExportManifest {
            export_manifest_version: EXPORT_MANIFEST_VERSION,
            status,
            kind: Kind::ApiUserExport,
            bucket: self.folder.bucket.clone(),
            folder: self.folder.prefix.clone(),
            braze: self.folder.braze.clone(),
            // What wrote this generation: a late file's own run, or a closer (the callback,
            // the sweep, the command) that found the folder changed.
            closed_by: self.by,
            closed_at: crate::manifest::now_rfc3339(),
            generation: existing.map_or(1, |(m, _)| m.generation + 1),
            files: entries,
            totals,
            errors,
            manifest_key: export_manifest_key(&env.cfg.output_prefix, &self.folder.prefix),
            producer: Producer::default(),
        }
    }

    async fn written(
        &self,
        env: &Env,
        manifest: &ExportManifest,
        to: Wrote<'_>,
    ) -> Result<Option<String>, CloseError> {
        info!(
            folder = %crate::sanitize_for_log(&manifest.folder),
            generation = manifest.generation,
            closed_by = manifest.closed_by.as_str(),
            status = manifest.status.as_str(),
            files = manifest.totals.files,
            "export manifest written"
        );
        crate::metrics::record_export_closed(manifest);
        let forwarded = forward_export(env, to.out_bucket, manifest, to.deadline, to.fresh);
        Ok(forwarded.await.err())
    }
}

const BRAZE_FAILED_PREFIX: &str = "Braze reported that the export failed";

/// The deterministic id of one generation of an export manifest.
pub fn export_idempotency_key(m: &ExportManifest) -> String {
    super::idempotency_key("export", &m.bucket, &m.folder, m.generation)
}

/// What every sink is sent for an export manifest.
pub fn outgoing(m: &ExportManifest, out_bucket: &str, deadline: Option<Instant>) -> sink::Outgoing {
    let mut attributes = vec![
        ("kind", m.kind.as_str().to_string()),
        ("status", m.status.as_str().to_string()),
    ];
    if let Some(s) = &m.braze.segment_id {
        attributes.push(("segment_id", s.clone()));
    }
    let pointer = json!({
        "export_manifest_version": m.export_manifest_version,
        "manifest": {"bucket": out_bucket, "key": m.manifest_key},
        "status": m.status,
        "kind": m.kind,
        "bucket": m.bucket,
        "folder": m.folder,
        "braze": m.braze,
        "closed_by": m.closed_by,
        "generation": m.generation,
        "totals": m.totals,
    });
    sink::outgoing_rollup(
        MessageType::Export,
        serde_json::to_string(m).expect("export manifest serialises"),
        attributes,
        pointer,
        Identity {
            idempotency_key: export_idempotency_key(m),
            group_id: sink::group_id(&m.folder),
            status: m.status,
        },
        deadline,
    )
}

/// Forwards one generation to every sink that has not accepted it.
pub async fn forward_export(
    env: &Env,
    out_bucket: &str,
    m: &ExportManifest,
    deadline: Option<Instant>,
    fresh: bool,
) -> Result<(), String> {
    let records = format!("{}exports/{}deliveries/", env.cfg.output_prefix, m.folder);
    let message = || outgoing(m, out_bucket, deadline);
    super::forward_generation(env, out_bucket, &records, m.generation, message, fresh).await
}

/// After an API export's file was indexed (or found indexed) by its notification: keeps the
/// export's open record, completes a close that waited for this file, and amends a closed
/// export that does not list it. `Err` when the object must be retried (its record could not
/// be written: without it the sweep would not know the export).
pub async fn after_object(
    env: &Env,
    bucket: &str,
    key: &str,
    etag: Option<&str>,
    result: Option<&Manifest>,
    deadline: Option<Instant>,
) -> Result<(), CloseError> {
    let Some(folder) = Folder::of_key(bucket, key) else {
        return Ok(());
    };
    crate::store::s3::within_deadline(deadline, async {
        let out_bucket = env.output_bucket(bucket).to_string();
        // Closed already: a late file amends it (or the close included it: nothing to do).
        if let Some((m, _)) = read_export_manifest(env, &out_bucket, &folder.prefix).await? {
            if m.lists(key, etag, result) {
                return Ok(());
            }
            return match close(env, &folder, ClosedBy::LateFile, Mode::Wait, false, deadline)
                .await?
            {
                Closed::Waiting { .. } => {
                    // Other files are still being indexed: their runs, or the sweep, finish it.
                    ensure_record(env, &out_bucket, &folder).await.map(|_| ())
                }
                Closed::Written {
                    forward_error: Some(e),
                    ..
                } => {
                    warn!(error = %e, "the amended export manifest is written but not forwarded: the sweep forwards it");
                    ensure_record(env, &out_bucket, &folder).await.map(|_| ())
                }
                _ => Ok(()),
            };
        }
        let (record, _) = ensure_record(env, &out_bucket, &folder).await?;
        if let Some(pending) = record.close {
            match close(env, &folder, pending.by, Mode::Wait, !pending.success, deadline).await {
                Ok(Closed::Written {
                    forward_error: Some(e),
                    ..
                }) => {
                    warn!(error = %e, "the export manifest is written but not forwarded: the sweep forwards it")
                }
                Ok(_) => {}
                // The record stands: the sweep finishes the close.
                Err(e) => warn!(error = %e, "the waiting close did not finish: the sweep finishes it"),
            }
        }
        Ok(())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(status: Status) -> ExportFile {
        ExportFile {
            key: "k".into(),
            size: 1,
            etag: None,
            manifest_key: Some("m".into()),
            status,
            records: 0,
            bytes: 0,
        }
    }

    #[test]
    fn an_export_is_complete_only_when_every_file_is() {
        use Status::*;
        let cases: &[(&[Status], Status)] = &[
            (&[Complete, Complete], Complete),
            (&[Complete, Partial], Partial),
            (&[Complete, Failed], Partial),
            (&[Failed, Failed], Failed),
            (&[Skipped, Complete], Partial),
            (&[Skipped], Failed),
            (&[], Failed),
        ];
        for (statuses, want) in cases {
            let files: Vec<ExportFile> = statuses.iter().map(|s| file(*s)).collect();
            assert_eq!(export_status(&files), *want, "files {statuses:?}");
        }
    }

    #[test]
    fn folders_come_from_api_export_keys_only() {
        let key = "segment-export/seg-1/2019-04-25/d9696570-dfb7-45ae-baa2-25e302r2da27-1556044807/114f0226319130e1a4770f2602b5639a.zip";
        let f = Folder::of_key("b", key).unwrap();
        assert_eq!(
            f.prefix,
            "segment-export/seg-1/2019-04-25/d9696570-dfb7-45ae-baa2-25e302r2da27-1556044807/"
        );
        assert_eq!(f.requested_unix(), Some(1556044807));
        assert_eq!(f.braze.segment_id.as_deref(), Some("seg-1"));
        assert_eq!(Folder::parse("b", &f.prefix), Some(f.clone()));
        assert_eq!(Folder::parse("b", f.prefix.trim_end_matches('/')), Some(f));
        for other in [
            "segment-export/seg-1/2019-04-25/users-abc.zip",
            "currents/dataexport.prod-01.S3.integration.1/event_type=x/date=2025-04-01-17/a.avro",
            "reports/a.csv",
        ] {
            assert_eq!(Folder::of_key("b", other), None, "{other}");
        }
        assert_eq!(Folder::parse("b", "segment-export/seg-1/2019-04-25"), None);
    }

    #[test]
    fn output_keys_sit_under_the_output_prefix() {
        let folder = "segment-export/s/2019-04-25/u-1/";
        assert_eq!(
            export_manifest_key("export-fetcher/", folder),
            "export-fetcher/exports/segment-export/s/2019-04-25/u-1/export.manifest.json"
        );
        assert_eq!(
            open_record_key("export-fetcher/", folder),
            "export-fetcher/open/exports/segment-export/s/2019-04-25/u-1/open.json"
        );
        let long = format!("segment-export/{}/2019-04-25/u-1/", "s".repeat(1100));
        let key = export_manifest_key("p/", &long);
        assert!(
            key.len() <= 1024 && key.ends_with("export.manifest.json"),
            "{key}"
        );
    }

    #[test]
    fn each_generation_has_its_own_idempotency_key() {
        let mut m = ExportManifest {
            export_manifest_version: 1,
            status: Status::Complete,
            kind: Kind::ApiUserExport,
            bucket: "b".into(),
            folder: "f/".into(),
            braze: Braze::default(),
            closed_by: ClosedBy::Callback,
            closed_at: "2026-01-01T00:00:00Z".into(),
            generation: 1,
            files: vec![],
            totals: ExportTotals::default(),
            errors: vec![],
            manifest_key: "m".into(),
            producer: Producer::default(),
        };
        let first = export_idempotency_key(&m);
        m.closed_at = "2026-01-02T00:00:00Z".into();
        assert_eq!(
            export_idempotency_key(&m),
            first,
            "a rewrite of one generation"
        );
        m.generation = 2;
        assert_ne!(export_idempotency_key(&m), first);
    }
}
