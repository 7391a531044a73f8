//! One manifest per Currents partition: the files of one (integration, event type, hour),
//! closed into `<OUTPUT_PREFIX>currents/<partition prefix>partition.manifest.json` (JSON Schema
//! `schema/partition-manifest.v1.schema.json`) with a Redshift COPY manifest of its Avro files
//! beside it, `redshift.manifest.json`.
//!
//! The partition prefix is the source key up to and including `date=<YYYY-MM-DD-HH>/` (the
//! connector's folder included; the `version=…/`, `<schema_id>/<zone>/` levels below it are
//! listed as part of the partition). The scheduled sweep closes a partition once its hour has
//! ended and `CURRENTS_GRACE_MINUTES` have passed: it lists the prefix (the truth of which files
//! exist), indexes any file still without its manifest, and writes generation 1. A file indexed
//! after the close amends it (generation + 1, `closed_by: late_file`). Generations are written
//! conditionally, as export manifests are (see [`super::export`]), and each is forwarded once
//! per sink (`message_type=partition`, EventBridge detail-type `Braze Currents Partition
//! Closed`). While a partition is open, a small record under
//! `<OUTPUT_PREFIX>open/partitions/<partition prefix>open.json` names it for the sweep.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::{info, warn};

use crate::detect::kind_from_key;
use crate::manifest::{Braze, Kind, Manifest, ObjectError, Producer, Status, fit_key};
use crate::pipeline::Env;
use crate::sink::{self, Identity, MessageType};
use crate::store::Condition;
use crate::store::StoreError;
use crate::store::s3::{Listed, OutputKind};

use super::closer::{self, ATTEMPTS, CloseError, Group, Look, Outcome, RollUp, Wrote, store_error};
use super::export::ExportTotals;
use super::unix_now;

pub const PARTITION_MANIFEST_VERSION: u32 = 1;
/// The partition manifest's JSON Schema.
pub const SCHEMA_JSON: &str = include_str!("../../schema/partition-manifest.v1.schema.json");
/// The `source.event_name` of a file's manifest when a close indexed it.
pub const CLOSE_EVENT_NAME: &str = "PartitionClose:Listed";

/// What wrote a generation of the partition manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartitionClosedBy {
    /// The scheduled sweep: the hour ended `CURRENTS_GRACE_MINUTES` ago.
    GracePeriod,
    /// A file indexed after the partition was closed.
    LateFile,
}

impl PartitionClosedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            PartitionClosedBy::GracePeriod => "grace_period",
            PartitionClosedBy::LateFile => "late_file",
        }
    }
}

/// One Currents partition of a bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub bucket: String,
    /// The source key up to and including `date=<YYYY-MM-DD-HH>/`.
    pub prefix: String,
    /// cluster, integration_id, event_type, date_hour, currents_version.
    pub braze: Braze,
}

impl Partition {
    /// The partition a Currents object belongs to.
    pub fn of_key(bucket: &str, key: &str) -> Option<Partition> {
        let (kind, braze) = kind_from_key(key)?;
        if kind != Kind::Currents {
            return None;
        }
        let event_type = key.find("event_type=")?;
        let marker = format!("date={}/", braze.date_hour.as_deref()?);
        let date = event_type + key[event_type..].find(&marker)?;
        Some(Partition {
            bucket: bucket.to_string(),
            prefix: key[..date + marker.len()].to_string(),
            braze: Braze {
                cluster: braze.cluster,
                integration_id: braze.integration_id,
                event_type: braze.event_type,
                date_hour: braze.date_hour,
                currents_version: braze.currents_version,
                ..Braze::default()
            },
        })
    }

    /// The partition of a prefix ending with `date=<YYYY-MM-DD-HH>/`.
    pub fn parse(bucket: &str, prefix: &str) -> Option<Partition> {
        let p = Partition::of_key(bucket, &format!("{prefix}file.avro"))?;
        (p.prefix == prefix).then_some(p)
    }

    /// The unix second the partition's hour ends.
    pub fn hour_ends(&self) -> Option<i64> {
        let h = self.braze.date_hour.as_deref()?;
        let format = time::macros::format_description!("[year]-[month]-[day]-[hour]");
        let t = time::PrimitiveDateTime::parse(h, &format).ok()?;
        Some(t.assume_utc().unix_timestamp() + 3600)
    }
}

/// `<prefix>currents/<partition prefix>partition.manifest.json`
pub fn partition_manifest_key(output_prefix: &str, prefix: &str) -> String {
    fit_key(
        format!("{output_prefix}currents/{prefix}partition.manifest.json"),
        "partition.manifest.json",
    )
}

/// `<prefix>currents/<partition prefix>redshift.manifest.json`
pub fn redshift_manifest_key(output_prefix: &str, prefix: &str) -> String {
    fit_key(
        format!("{output_prefix}currents/{prefix}redshift.manifest.json"),
        "redshift.manifest.json",
    )
}

/// Where the open records of partitions are.
pub fn open_records_prefix(output_prefix: &str) -> String {
    format!("{output_prefix}open/partitions/")
}

/// `<prefix>open/partitions/<partition prefix>open.json`
pub fn open_record_key(output_prefix: &str, prefix: &str) -> String {
    fit_key(
        format!("{}{prefix}open.json", open_records_prefix(output_prefix)),
        "open.json",
    )
}

/// One file of the partition, as listed, with its manifest's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionFile {
    pub key: String,
    pub size: u64,
    pub etag: Option<String>,
    pub manifest_key: Option<String>,
    pub status: Status,
    pub records: u64,
    pub writer_schema_fingerprint: Option<String>,
}

/// One distinct writer schema of the partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriterSchema {
    /// Lowercase hex SHA-256 of its Parsing Canonical Form.
    pub fingerprint: String,
    /// Its top-level field names, in order.
    pub columns: Vec<String>,
}

/// The partition manifest (`partition_manifest_version` 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionManifest {
    pub partition_manifest_version: u32,
    pub status: Status,
    pub kind: Kind,
    pub bucket: String,
    /// The partition prefix in `bucket`.
    pub prefix: String,
    pub braze: Braze,
    pub closed_by: PartitionClosedBy,
    pub closed_at: String,
    pub generation: u64,
    pub files: Vec<PartitionFile>,
    pub schemas: Vec<WriterSchema>,
    pub totals: ExportTotals,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub errors: Vec<ObjectError>,
    pub manifest_key: String,
    pub redshift_manifest_key: String,
    pub producer: Producer,
}

impl PartitionManifest {
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).expect("partition manifest serialises")
    }

    /// Whether it lists this version of `key` with this result of its own manifest (when
    /// given: a file indexed again may have a new one).
    pub fn lists(&self, key: &str, etag: Option<&str>, result: Option<&Manifest>) -> bool {
        let files = self.files.iter();
        let files = files.map(|f| (f.key.as_str(), f.etag.as_deref(), f.status, f.records));
        super::lists_version(files, key, etag, result)
    }
}

/// The open record of a partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenPartition {
    pub bucket: String,
    pub prefix: String,
    pub opened_at: i64,
}

/// What a close did.
#[derive(Debug)]
pub enum Closed {
    /// A generation was written by this call; `forward_error` when a sink did not take it.
    Written {
        manifest: Box<PartitionManifest>,
        forward_error: Option<String>,
    },
    /// The partition manifest already lists every file.
    Unchanged(Box<PartitionManifest>),
    /// The prefix holds no object.
    Empty,
}

/// The Redshift COPY manifest of the partition's Avro files whose manifests are `complete`
/// (a file Redshift could not load is left out; the partition is then not `complete`).
pub fn redshift_manifest(m: &PartitionManifest) -> serde_json::Value {
    let entries: Vec<_> = m
        .files
        .iter()
        .filter(|f| f.status == Status::Complete && f.key.ends_with(".avro"))
        .map(|f| {
            json!({"url": format!("s3://{}/{}", m.bucket, f.key), "mandatory": true,
                   "meta": {"content_length": f.size}})
        })
        .collect();
    json!({ "entries": entries })
}

async fn read_partition_manifest(
    env: &Env,
    out_bucket: &str,
    prefix: &str,
) -> Result<Option<(PartitionManifest, String)>, CloseError> {
    let key = partition_manifest_key(&env.cfg.output_prefix, prefix);
    closer::read_standing::<PartitionClose>(env, out_bucket, &key).await
}

/// The file's entry, from its listing and its manifest.
fn file_of(listed: &Listed, manifest: Option<&Manifest>) -> (PartitionFile, Option<WriterSchema>) {
    let Some(m) = manifest else {
        let entry = PartitionFile {
            key: listed.key.clone(),
            size: listed.size,
            etag: listed.etag.clone(),
            manifest_key: None,
            status: Status::Skipped,
            records: 0,
            writer_schema_fingerprint: None,
        };
        return (entry, None);
    };
    let part = m.parts.first();
    let fingerprint = part.and_then(|p| p.schema_fingerprint.clone());
    let schema = fingerprint.clone().map(|fingerprint| WriterSchema {
        fingerprint,
        columns: part.and_then(|p| p.columns.clone()).unwrap_or_default(),
    });
    let entry = PartitionFile {
        key: listed.key.clone(),
        size: listed.size,
        etag: listed.etag.clone(),
        manifest_key: Some(m.manifest_key.clone()),
        status: m.status,
        records: m.totals.records,
        writer_schema_fingerprint: fingerprint,
    };
    (entry, schema)
}

/// Closes the partition now: lists it, indexes any file without its manifest, writes the next
/// generation where the partition manifest does not already list every file (and the Redshift
/// manifest beside it), and forwards it.
pub async fn close(
    env: &Env,
    p: &Partition,
    by: PartitionClosedBy,
    deadline: Option<Instant>,
) -> Result<Closed, CloseError> {
    let close = PartitionClose { p, by };
    let outcome = crate::store::s3::within_deadline(
        deadline,
        Box::pin(closer::close(env, &close, true, deadline)),
    )
    .await?;
    Ok(match outcome {
        Outcome::Written {
            manifest,
            forward_error,
            ..
        } => Closed::Written {
            manifest,
            forward_error,
        },
        Outcome::Unchanged(m) => Closed::Unchanged(m),
        Outcome::Empty => Closed::Empty,
        // The partition's close indexes what is missing, so it never waits; were it to, the
        // close is retried and the open record stays.
        Outcome::Waiting(missing) => {
            return Err(format!(
                "files of the partition still without manifests: {missing:?}"
            ));
        }
    })
}

/// A partition's close, as a [`RollUp`].
struct PartitionClose<'a> {
    p: &'a Partition,
    by: PartitionClosedBy,
}

impl RollUp for PartitionClose<'_> {
    type Manifest = PartitionManifest;
    type File = PartitionFile;
    const WHAT: &'static str = "partition";
    const CLOSE_EVENT_NAME: &'static str = CLOSE_EVENT_NAME;

    fn group(&self, env: &Env) -> Group<'_> {
        Group {
            bucket: &self.p.bucket,
            prefix: &self.p.prefix,
            manifest_key: partition_manifest_key(&env.cfg.output_prefix, &self.p.prefix),
        }
    }

    fn files(m: &PartitionManifest) -> &[PartitionFile] {
        &m.files
    }

    fn build(&self, env: &Env, look: Look<'_, PartitionManifest>) -> PartitionManifest {
        build(env, self.p, self.by, look)
    }

    async fn written(
        &self,
        env: &Env,
        manifest: &PartitionManifest,
        to: Wrote<'_>,
    ) -> Result<Option<String>, CloseError> {
        info!(
            partition = %crate::sanitize_for_log(&manifest.prefix),
            generation = manifest.generation,
            closed_by = manifest.closed_by.as_str(),
            status = manifest.status.as_str(),
            files = manifest.totals.files,
            "partition manifest written"
        );
        write_redshift(env, to.out_bucket, manifest).await?;
        crate::metrics::record_partition_closed(manifest);
        let forwarded = forward_partition(env, to.out_bucket, manifest, to.deadline, to.fresh);
        Ok(forwarded.await.err())
    }
}

fn build(
    env: &Env,
    p: &Partition,
    by: PartitionClosedBy,
    look: Look<'_, PartitionManifest>,
) -> PartitionManifest {
    let Look {
        existing,
        files,
        manifests,
    } = look;
    let mut entries = Vec::with_capacity(files.len());
    let mut schemas: Vec<WriterSchema> = Vec::new();
    let mut totals = ExportTotals::default();
    for (file, m) in files.iter().zip(manifests) {
        let (entry, schema) = file_of(file, m.as_ref());
        if let Some(s) = schema
            && !schemas
                .iter()
                .any(|known| known.fingerprint == s.fingerprint)
        {
            schemas.push(s);
        }
        totals.files += 1;
        totals.records += entry.records;
        if let Some(m) = m {
            totals.bytes += m.totals.bytes;
            totals.compressed_bytes += m.totals.compressed_bytes;
        }
        entries.push(entry);
    }
    let status = super::export::rollup_status(entries.iter().map(|f| f.status));
    // The version folder sits below the partition prefix: its files' keys name it.
    let mut braze = p.braze.clone();
    if braze.currents_version.is_none() {
        braze.currents_version = manifests
            .iter()
            .flatten()
            .find_map(|m| m.braze.currents_version);
    }
    let generation = existing.map_or(1, |(m, _)| m.generation + 1);
    PartitionManifest {
        partition_manifest_version: PARTITION_MANIFEST_VERSION,
        status,
        kind: Kind::Currents,
        bucket: p.bucket.clone(),
        prefix: p.prefix.clone(),
        braze,
        closed_by: by,
        closed_at: crate::manifest::now_rfc3339(),
        generation,
        files: entries,
        schemas,
        totals,
        errors: Vec::new(),
        manifest_key: partition_manifest_key(&env.cfg.output_prefix, &p.prefix),
        redshift_manifest_key: redshift_manifest_key(&env.cfg.output_prefix, &p.prefix),
        producer: Producer::default(),
    }
}

/// Writes the Redshift manifest of the newest generation. Two closers may write it in either
/// order: after writing, the partition manifest is read again and, when a newer generation
/// stands, its Redshift manifest is written (its own writer writes it too).
async fn write_redshift(
    env: &Env,
    out_bucket: &str,
    written: &PartitionManifest,
) -> Result<(), CloseError> {
    let mut m = written.clone();
    for _ in 0..ATTEMPTS {
        let body = serde_json::to_vec_pretty(&redshift_manifest(&m)).expect("serialises");
        env.s3
            .put_output(
                OutputKind::Manifest,
                out_bucket,
                &m.redshift_manifest_key,
                body,
                "application/json",
                Condition::None,
            )
            .await
            .map_err(|e| store_error("writing the Redshift manifest", e))?;
        match read_partition_manifest(env, out_bucket, &m.prefix).await? {
            Some((now, _)) if now.generation > m.generation => m = now,
            _ => return Ok(()),
        }
    }
    Ok(())
}

/// The deterministic id of one generation of a partition manifest.
pub fn partition_idempotency_key(m: &PartitionManifest) -> String {
    super::idempotency_key("partition", &m.bucket, &m.prefix, m.generation)
}

/// What every sink is sent for a partition manifest.
pub fn outgoing(
    m: &PartitionManifest,
    out_bucket: &str,
    deadline: Option<Instant>,
) -> sink::Outgoing {
    let mut attributes = vec![
        ("kind", m.kind.as_str().to_string()),
        ("status", m.status.as_str().to_string()),
    ];
    if let Some(t) = &m.braze.event_type {
        attributes.push(("event_type", t.clone()));
    }
    let pointer = json!({
        "partition_manifest_version": m.partition_manifest_version,
        "manifest": {"bucket": out_bucket, "key": m.manifest_key},
        "redshift_manifest": {"bucket": out_bucket, "key": m.redshift_manifest_key},
        "status": m.status,
        "kind": m.kind,
        "bucket": m.bucket,
        "prefix": m.prefix,
        "braze": m.braze,
        "closed_by": m.closed_by,
        "generation": m.generation,
        "totals": m.totals,
    });
    sink::outgoing_rollup(
        MessageType::Partition,
        serde_json::to_string(m).expect("partition manifest serialises"),
        attributes,
        pointer,
        Identity {
            idempotency_key: partition_idempotency_key(m),
            group_id: sink::group_id(&m.prefix),
            status: m.status,
        },
        deadline,
    )
}

/// Forwards one generation to every sink that has not accepted it.
pub async fn forward_partition(
    env: &Env,
    out_bucket: &str,
    m: &PartitionManifest,
    deadline: Option<Instant>,
    fresh: bool,
) -> Result<(), String> {
    let records = format!("{}currents/{}deliveries/", env.cfg.output_prefix, m.prefix);
    let message = || outgoing(m, out_bucket, deadline);
    super::forward_generation(env, out_bucket, &records, m.generation, message, fresh).await
}

/// Writes the partition's open record unless one is there.
async fn ensure_record(env: &Env, out_bucket: &str, p: &Partition) -> Result<(), CloseError> {
    let key = open_record_key(&env.cfg.output_prefix, &p.prefix);
    match env.s3.get_small(out_bucket, &key).await {
        Ok(Some(_)) => return Ok(()),
        Ok(None) => {}
        Err(e) => return Err(store_error("reading the partition's open record", e)),
    }
    let record = OpenPartition {
        bucket: p.bucket.clone(),
        prefix: p.prefix.clone(),
        opened_at: unix_now(),
    };
    let body = serde_json::to_vec(&record).expect("record serialises");
    match env
        .s3
        .put_output(
            OutputKind::Manifest,
            out_bucket,
            &key,
            body,
            "application/json",
            Condition::IfNoneMatch,
        )
        .await
    {
        Ok(_) | Err(StoreError::PreconditionFailed) => Ok(()),
        Err(e) => Err(store_error("writing the partition's open record", e)),
    }
}

/// After a Currents file was indexed (or found indexed) by its notification: keeps its
/// partition's open record, or amends the closed partition when it does not list the file.
/// `Err` when the object must be retried.
pub async fn after_object(
    env: &Env,
    bucket: &str,
    key: &str,
    etag: Option<&str>,
    result: Option<&Manifest>,
    deadline: Option<Instant>,
) -> Result<(), CloseError> {
    let Some(p) = Partition::of_key(bucket, key) else {
        return Ok(());
    };
    crate::store::s3::within_deadline(deadline, async {
        super::glue::catalog(env, bucket, key, etag).await?;
        let out_bucket = env.output_bucket(bucket).to_string();
        match read_partition_manifest(env, &out_bucket, &p.prefix).await? {
            Some((m, _)) if m.lists(key, etag, result) => Ok(()),
            Some(_) => match close(env, &p, PartitionClosedBy::LateFile, deadline).await? {
                Closed::Written {
                    forward_error: Some(e),
                    ..
                } => {
                    warn!(error = %e, "the amended partition manifest is written but not forwarded: the sweep forwards it");
                    ensure_record(env, &out_bucket, &p).await
                }
                _ => Ok(()),
            },
            None => ensure_record(env, &out_bucket, &p).await,
        }
    })
    .await
}

/// One partition's turn in the sweep.
pub enum Turn {
    Closed(Box<PartitionManifest>),
    Open { opened_at: i64 },
    Gone,
}

/// Sweeps the partition of one open record: closes it once its hour and the grace period have
/// passed, forwards and amends a closed one, and removes the record when nothing is left to do.
pub async fn sweep_one(
    env: &Env,
    out_bucket: &str,
    record_key: &str,
    now: i64,
    deadline: Option<Instant>,
) -> Result<Turn, String> {
    let Some((record, etag)) =
        super::read_json::<OpenPartition>(env, out_bucket, record_key, "open record").await?
    else {
        return Ok(Turn::Gone);
    };
    let Some(p) = Partition::parse(&record.bucket, &record.prefix) else {
        warn!(record = %crate::sanitize_for_log(record_key), "an open record names no Currents partition: removed");
        super::sweep::remove_if_unchanged(env, out_bucket, record_key, &etag).await;
        return Ok(Turn::Gone);
    };
    let closed_before = read_partition_manifest(env, out_bucket, &p.prefix).await?;
    let by = if closed_before.is_some() {
        PartitionClosedBy::LateFile
    } else {
        let grace = env.cfg.currents_grace_minutes as i64 * 60;
        match p.hour_ends() {
            Some(end) if now >= end + grace => PartitionClosedBy::GracePeriod,
            _ => {
                return Ok(Turn::Open {
                    opened_at: record.opened_at,
                });
            }
        }
    };
    let turn = match close(env, &p, by, deadline).await? {
        Closed::Written {
            forward_error: Some(e),
            ..
        } => return Err(format!("forwarding the partition manifest: {e}")),
        Closed::Written { manifest, .. } => Turn::Closed(manifest),
        Closed::Unchanged(current) => {
            forward_partition(env, out_bucket, &current, deadline, false)
                .await
                .map_err(|e| format!("forwarding the partition manifest: {e}"))?;
            Turn::Gone
        }
        Closed::Empty => Turn::Gone,
    };
    super::sweep::remove_if_unchanged(env, out_bucket, record_key, &etag).await;
    Ok(turn)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "currents/dataexport.prod-01.S3.integration.69cad1b2aa/event_type=users.messages.email.Send/date=2024-05-01-13/version=6/us-01/dataexport.prod-01.S3.integration.69cad1b2aa+0+00012.avro";

    #[test]
    fn a_partition_is_the_key_up_to_its_hour() {
        let p = Partition::of_key("b", KEY).unwrap();
        assert_eq!(
            p.prefix,
            "currents/dataexport.prod-01.S3.integration.69cad1b2aa/event_type=users.messages.email.Send/date=2024-05-01-13/"
        );
        assert_eq!(
            p.braze.event_type.as_deref(),
            Some("users.messages.email.Send")
        );
        assert_eq!(p.braze.integration_id.as_deref(), Some("69cad1b2aa"));
        assert_eq!(p.braze.currents_version, Some(6));
        let parsed = Partition::parse("b", &p.prefix).unwrap();
        assert_eq!(
            (&parsed.prefix, parsed.braze.currents_version),
            (&p.prefix, None)
        );
        // 2024-05-01T14:00:00Z
        assert_eq!(p.hour_ends(), Some(1_714_572_000));
        assert!(Partition::of_key("b", "segment-export/s/2024-05-01/x-1/a.zip").is_none());
        assert!(
            Partition::parse("b", "currents/x/event_type=a/date=2024-05-01-13/version=6/")
                .is_none()
        );
    }

    #[test]
    fn the_redshift_manifest_lists_complete_avro_files() {
        let file = |key: &str, status| PartitionFile {
            key: key.into(),
            size: 42,
            etag: None,
            manifest_key: None,
            status,
            records: 1,
            writer_schema_fingerprint: None,
        };
        let m = PartitionManifest {
            partition_manifest_version: 1,
            status: Status::Partial,
            kind: Kind::Currents,
            bucket: "b".into(),
            prefix: "p/".into(),
            braze: Braze::default(),
            closed_by: PartitionClosedBy::GracePeriod,
            closed_at: "x".into(),
            generation: 1,
            files: vec![
                file("p/a.avro", Status::Complete),
                file("p/b.avro", Status::Failed),
                file("p/c.txt", Status::Complete),
            ],
            schemas: vec![],
            totals: ExportTotals::default(),
            errors: vec![],
            manifest_key: "m".into(),
            redshift_manifest_key: "r".into(),
            producer: Producer::default(),
        };
        assert_eq!(
            redshift_manifest(&m),
            json!({"entries": [{"url": "s3://b/p/a.avro", "mandatory": true, "meta": {"content_length": 42}}]})
        );
    }
}
