//! One object from fetch to manifest: detect, decode, index and write every part. The failure
//! policy lives here, once:
//!
//! - `complete`: every part decoded to its end and every record valid;
//! - `partial`: every part decoded to its end, some records invalid (listed per part);
//! - `failed`: a stream or archive could not be decoded to its end, or a limit was crossed.
//!   Parts that did decode are still listed; the failed part is listed with its error and its
//!   output is discarded. A transient failure (source or writer I/O) also sets
//!   [`Outcome::retryable`], so the caller retries instead of publishing the manifest.

use std::collections::HashSet;
use std::io::{self, Cursor, Read};
use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::config::{Config, KeyFilter};
use crate::decode::zip::{Archive, ArchiveError};
use crate::decode::{self, Budget, limit_of};
use crate::detect::{MAGIC_LEN, codec_from_magic, kind_from_key, single_part_name};
use crate::index::{self, FormatError, Indexed, Options, SNIFF_LEN};
use crate::manifest::{
    Braze, Compression, Format, Kind, MANIFEST_VERSION, Manifest, ObjectError, Output, Part,
    Producer, Source, Status, Totals, manifest_key, now_rfc3339, part_key, sanitize_part_name,
};
use crate::sink::{self, Sinks};
use crate::store::s3::S3Store;
use crate::store::{
    Condition, ObjectInfo, ObjectSource, PartWriter, Pending, SeekableSource, StoreError,
    Transient, is_transient,
};
use crate::trigger::ObjectEvent;
use stage::ChunkReader;

mod stage;

/// The result of processing one object.
#[derive(Debug)]
pub struct Outcome {
    pub manifest: Manifest,
    /// Set when the failure was transient (I/O of the source or of the writer): the work should
    /// be retried and this manifest not published as final.
    pub retryable: Option<String>,
}

/// Processes one object on a blocking thread, off the async executor.
pub async fn run(
    source: Arc<dyn ObjectSource>,
    meta: Source,
    cfg: Arc<Config>,
    writer: Option<Arc<dyn PartWriter>>,
    deadline: Option<Instant>,
) -> Outcome {
    let fallback = meta.clone();
    let prefix = cfg.output_prefix.clone();
    tokio::task::spawn_blocking(move || {
        index_object(&*source, meta, &cfg, writer.as_deref(), deadline)
    })
    .await
    .unwrap_or_else(|e| {
        let message = format!("processing stopped unexpectedly: {e}");
        let mut manifest = empty_manifest(fallback, &prefix);
        manifest.status = Status::Failed;
        manifest.errors.push(ObjectError {
            message: message.clone(),
            part: None,
        });
        Outcome {
            manifest,
            retryable: Some(message),
        }
    })
}

fn empty_manifest(source: Source, prefix: &str) -> Manifest {
    Manifest {
        manifest_version: MANIFEST_VERSION,
        status: Status::Complete,
        kind: Kind::Unknown,
        manifest_key: manifest_key(prefix, &source.key),
        source,
        braze: Braze::default(),
        compression: Compression::None,
        parts: Vec::new(),
        totals: Totals::default(),
        errors: Vec::new(),
        processed_at: now_rfc3339(),
        duration_ms: 0,
        producer: Producer::default(),
    }
}

/// Everything one object's parts share.
struct Ctx<'a> {
    cfg: &'a Config,
    key: &'a str,
    kind: Option<Kind>,
    writer: Option<&'a dyn PartWriter>,
    budget: Budget,
    used_keys: HashSet<String>,
    deadline: Option<Instant>,
    /// Some stream or archive could not be read to its end, or a limit was crossed.
    failed: bool,
    retryable: Option<String>,
    /// Part uploads still completing in the background, by output key.
    pending: Vec<(String, Pending)>,
}

/// Processes one object, blocking. Never panics on any input; every problem ends up in the
/// manifest.
/// Work stops with a transient error once `deadline` has passed.
pub fn index_object(
    source: &dyn ObjectSource,
    meta: Source,
    cfg: &Config,
    writer: Option<&dyn PartWriter>,
    deadline: Option<Instant>,
) -> Outcome {
    let started = Instant::now();
    let mut manifest = empty_manifest(meta, &cfg.output_prefix);
    manifest.source.size = source.size();
    let key_kind = kind_from_key(&manifest.source.key);
    if let Some((kind, braze)) = &key_kind {
        manifest.kind = *kind;
        manifest.braze = braze.clone();
    }
    let key = manifest.source.key.clone();
    let mut ctx = Ctx {
        cfg,
        key: &key,
        kind: key_kind.map(|(k, _)| k),
        writer: if cfg.write_parts { writer } else { None },
        budget: Budget::new(source.size(), &cfg.limits),
        used_keys: HashSet::new(),
        deadline,
        failed: false,
        retryable: None,
        pending: Vec::new(),
    };
    let size = source.size();
    if let Err(limit) = decode::check_object_size(size, &cfg.limits) {
        ctx.failed = true;
        manifest.errors.push(ObjectError {
            message: limit.to_string(),
            part: None,
        });
    } else {
        match read_head(source) {
            Err(e) => {
                ctx.failed = true;
                let message = format!("the object cannot be read: {e}");
                if is_transient(&e) {
                    ctx.retryable = Some(message.clone());
                }
                manifest.errors.push(ObjectError {
                    message,
                    part: None,
                });
            }
            Ok(head) => {
                manifest.compression = codec_from_magic(&head);
                if manifest.compression == Compression::Zip {
                    process_zip(&mut ctx, source, &mut manifest);
                } else {
                    process_stream(&mut ctx, source, &mut manifest);
                }
            }
        }
    }
    settle_uploads(&mut ctx, &mut manifest);
    if ctx.kind.is_none() {
        manifest.kind = if manifest.parts.iter().any(|p| p.format == Format::Csv) {
            Kind::Report
        } else {
            Kind::Unknown
        };
    }
    manifest.compute_totals();
    manifest.status = if ctx.failed {
        Status::Failed
    } else if manifest.parts.iter().any(|p| !p.errors.is_empty()) {
        Status::Partial
    } else {
        Status::Complete
    };
    manifest.duration_ms = started.elapsed().as_millis() as u64;
    manifest.processed_at = now_rfc3339();
    info!(
        key = %crate::sanitize_for_log(&key),
        size,
        kind = manifest.kind.as_str(),
        compression = manifest.compression.as_str(),
        status = manifest.status.as_str(),
        parts = manifest.totals.parts,
        records = manifest.totals.records,
        bytes = manifest.totals.bytes,
        duration_ms = manifest.duration_ms,
        "indexed object"
    );
    Outcome {
        manifest,
        retryable: ctx.retryable,
    }
}

/// Waits for the part uploads still completing. A part whose upload failed loses its output and
/// fails the object as retryable, as if its upload had failed while it was being written: no
/// manifest claims a part that is not there.
fn settle_uploads(ctx: &mut Ctx<'_>, manifest: &mut Manifest) {
    for (key, pending) in std::mem::take(&mut ctx.pending) {
        let Err(e) = pending.wait() else { continue };
        let message = format!("writing part {key:?} failed: {e}");
        warn!(part_key = %crate::sanitize_for_log(&key), error = %e, "part upload failed");
        ctx.failed = true;
        ctx.retryable.get_or_insert_with(|| message.clone());
        let part = manifest
            .parts
            .iter_mut()
            .find(|p| p.output.as_ref().is_some_and(|o| o.key == key));
        let name = part.map(|part| {
            part.output = None;
            part.errors.push(crate::manifest::RecordError {
                record: None,
                line: None,
                message: message.clone(),
            });
            part.name.clone()
        });
        manifest.errors.push(ObjectError {
            message,
            part: name,
        });
    }
}

fn read_head(source: &dyn ObjectSource) -> io::Result<Vec<u8>> {
    let n = source.size().min(MAGIC_LEN as u64);
    let mut head = Vec::with_capacity(n as usize);
    source.read_range(0, n)?.read_to_end(&mut head)?;
    Ok(head)
}

fn process_stream(ctx: &mut Ctx<'_>, source: &dyn ObjectSource, manifest: &mut Manifest) {
    let size = source.size();
    let name = single_part_name(ctx.key, manifest.compression);
    let container = match manifest.compression {
        Compression::Gzip => "gzip stream",
        Compression::Zstd => "zstd stream",
        _ => "object",
    };
    let opened = source
        .read_range(0, size)
        .and_then(|raw| decode::open_stream(manifest.compression, raw, &ctx.budget));
    match opened {
        Ok(mut stream) => {
            let (part, fatal) = process_part(ctx, &name, size, &mut stream);
            push_part(ctx, manifest, part, fatal, container);
        }
        Err(e) => {
            let part = failed_part(&name, size);
            push_part(ctx, manifest, part, Some(e), container);
        }
    }
}

fn process_zip(ctx: &mut Ctx<'_>, source: &dyn ObjectSource, manifest: &mut Manifest) {
    let size = source.size();
    // Buffered itself, with one stream for members that follow each other.
    let reader = SeekableSource::new(source);
    let (mut archive, members) = match Archive::open(reader, size, &ctx.cfg.limits, &ctx.budget) {
        Ok(archive) => {
            let members = archive.members();
            (archive, members)
        }
        Err(e) => {
            let message = archive_error_message(ctx, e);
            manifest.errors.push(ObjectError {
                message,
                part: None,
            });
            return;
        }
    };
    for member in members.iter().filter(|m| !m.is_dir) {
        let container = format!("zip member {:?}", member.name);
        match archive.open_member(member, &ctx.budget) {
            Ok(mut stream) => {
                let (part, fatal) =
                    process_part(ctx, &member.name, member.compressed_size, &mut stream);
                push_part(ctx, manifest, part, fatal, &container);
            }
            Err(e) => {
                let message = archive_error_message(ctx, e);
                let mut part = failed_part(&member.name, member.compressed_size);
                part.errors.push(crate::manifest::RecordError {
                    record: None,
                    line: None,
                    message: message.clone(),
                });
                manifest.parts.push(part);
                manifest.errors.push(ObjectError {
                    message,
                    part: Some(member.name.clone()),
                });
            }
        }
        if ctx.retryable.is_some() {
            // The source is failing: stop here, the whole object will be retried.
            break;
        }
    }
}

fn archive_error_message(ctx: &mut Ctx<'_>, e: ArchiveError) -> String {
    ctx.failed = true;
    match e {
        ArchiveError::Io(io) => {
            let message = format!("the zip archive cannot be read: {io}");
            if is_transient(&io) {
                ctx.retryable = Some(message.clone());
            }
            message
        }
        other => other.to_string(),
    }
}

/// A part that could not be opened at all.
fn failed_part(name: &str, compressed_bytes: u64) -> Part {
    Part {
        name: name.to_string(),
        format: Format::Binary,
        records: 0,
        bytes: 0,
        compressed_bytes,
        sha256: format!("{:x}", Sha256::digest(b"")),
        columns: None,
        delimiter: None,
        offsets: vec![[0, 0]],
        output: None,
        errors: Vec::new(),
    }
}

/// Adds a part and, when it failed, the object-level error that says why.
fn push_part(
    ctx: &mut Ctx<'_>,
    manifest: &mut Manifest,
    mut part: Part,
    fatal: Option<io::Error>,
    container: &str,
) {
    if let Some(e) = fatal {
        ctx.failed = true;
        let message = describe(&e, container);
        if is_transient(&e) {
            ctx.retryable.get_or_insert_with(|| message.clone());
        }
        part.errors.push(crate::manifest::RecordError {
            record: None,
            line: None,
            message: message.clone(),
        });
        manifest.errors.push(ObjectError {
            message,
            part: Some(part.name.clone()),
        });
    } else if !part.errors.is_empty() {
        let bad = part.errors.iter().filter(|e| e.record.is_some()).count();
        let first = &part.errors[0];
        manifest.errors.push(ObjectError {
            message: format!(
                "bad records: {}{} (first{}: {})",
                bad,
                if bad == part.errors.len() {
                    ""
                } else {
                    " and more"
                },
                first
                    .line
                    .map(|l| format!(" at line {l}"))
                    .unwrap_or_default(),
                first.message
            ),
            part: Some(part.name.clone()),
        });
    }
    manifest.parts.push(part);
}

/// A clear message for a stream that stopped.
fn describe(e: &io::Error, container: &str) -> String {
    if let Some(limit) = limit_of(e) {
        return limit.to_string();
    }
    if let Some(inner) = e.get_ref()
        && (inner.is::<FormatError>() || inner.is::<Transient>())
    {
        return inner.to_string();
    }
    match e.kind() {
        io::ErrorKind::UnexpectedEof => format!("{container} is truncated: {e}"),
        _ if e.to_string() == "Invalid checksum" => {
            format!("{container} fails its CRC-32 check: the data is corrupt")
        }
        _ => format!("{container} cannot be decoded: {e}"),
    }
}

/// The output key of a part, unique within the object.
fn output_key(ctx: &mut Ctx<'_>, name: &str) -> String {
    let clean = sanitize_part_name(name).unwrap_or_else(|| "part".to_string());
    let mut key = part_key(&ctx.cfg.output_prefix, ctx.key, &clean);
    let mut n = 1;
    while !ctx.used_keys.insert(key.clone()) {
        n += 1;
        key = part_key(&ctx.cfg.output_prefix, ctx.key, &format!("{clean}~{n}"));
    }
    key
}

/// Streams one part through hashing, indexing and writing.
fn process_part(
    ctx: &mut Ctx<'_>,
    name: &str,
    compressed_bytes: u64,
    stream: &mut (dyn Read + Send),
) -> (Part, Option<io::Error>) {
    let key = output_key(ctx, name);
    let upload = match ctx.writer.map(|w| w.create(&key)).transpose() {
        Ok(u) => u,
        Err(e) => {
            let e = io::Error::other(Transient(format!("cannot write part {key:?}: {e}")));
            return (failed_part(name, compressed_bytes), Some(e));
        }
    };
    let ctx_view: &Ctx<'_> = ctx;
    let ((indexed, format), produced) = stage::run(stream, upload, &key, ctx.deadline, |reader| {
        sniff_and_index(ctx_view, reader)
    });
    let (sha, bytes, upload) = (produced.sha256, produced.bytes, produced.upload);
    let mut fatal = indexed.fatal;
    let mut output = None;
    if let (Some(upload), Some(writer)) = (upload, ctx.writer) {
        if fatal.is_some() {
            upload.abort();
        } else {
            match upload.finish() {
                Ok(pending) => {
                    // Settled before the manifest is made (`settle_uploads`).
                    ctx.pending.push((key.clone(), pending));
                    output = Some(Output {
                        bucket: writer.bucket().to_string(),
                        key: key.clone(),
                    })
                }
                Err(e) => {
                    fatal = Some(io::Error::other(Transient(format!(
                        "writing part {key:?} failed: {e}"
                    ))))
                }
            }
        }
    }
    if let Some(e) = &fatal {
        warn!(part = %crate::sanitize_for_log(name), error = %e, "part stopped");
    }
    let part = Part {
        name: name.to_string(),
        format: format.0,
        records: indexed.records,
        bytes,
        compressed_bytes,
        sha256: sha,
        columns: indexed.columns,
        delimiter: format.1.map(|d| (d as char).to_string()),
        offsets: indexed.offsets,
        output,
        errors: indexed.errors.into_listed(),
    };
    (part, fatal)
}

/// Reads the first bytes to decide the format, then indexes the whole part.
fn sniff_and_index(ctx: &Ctx<'_>, reader: &mut ChunkReader) -> (Indexed, (Format, Option<u8>)) {
    let mut sample = Vec::with_capacity(SNIFF_LEN);
    let whole = match (&mut *reader)
        .take(SNIFF_LEN as u64)
        .read_to_end(&mut sample)
    {
        Ok(_) => sample.len() < SNIFF_LEN,
        Err(e) => {
            let format = index::sniff(&sample, false, ctx.kind);
            let indexed = Indexed {
                offsets: vec![[0, 0]],
                fatal: Some(e),
                ..Indexed::default()
            };
            return (indexed, format);
        }
    };
    let format = index::sniff(&sample, whole, ctx.kind);
    let opts = Options {
        offset_interval: ctx.cfg.offset_interval,
        max_record_bytes: ctx.cfg.limits.max_record_bytes,
        budget: ctx.budget.clone(),
    };
    let mut reader = Cursor::new(sample).chain(reader);
    let indexed = index::run(format.0, format.1, &mut reader, &opts);
    (indexed, format)
}

/// What happened to one object event in the Lambda.
#[derive(Debug, Clone, PartialEq)]
pub enum ObjectOutcome {
    /// Processed: the manifest was written and forwarded to every configured sink.
    Done {
        manifest: Box<Manifest>,
        deliveries: Vec<Delivery>,
    },
    /// A manifest for this very version already exists: nothing was rewritten, and only sinks
    /// that had not accepted it yet (after an earlier failure) were sent it.
    Duplicate {
        manifest_key: String,
        deliveries: Vec<Delivery>,
    },
    /// Not processed by design (loop guard, key filters).
    Skipped { reason: String },
    /// A transient failure: the work must be retried (nothing final was written).
    Retry { error: String },
}

impl ObjectOutcome {
    pub fn label(&self) -> &'static str {
        match self {
            ObjectOutcome::Done { .. } => "done",
            ObjectOutcome::Duplicate { .. } => "duplicate",
            ObjectOutcome::Skipped { .. } => "skipped",
            ObjectOutcome::Retry { .. } => "retry",
        }
    }
}

/// Everything the Lambda builds once per cold start.
pub struct Env {
    pub cfg: Arc<Config>,
    pub filter: KeyFilter,
    pub s3: S3Store,
    pub sinks: Sinks,
}

impl Env {
    /// The same environment, forwarding manifests to `sinks`.
    pub fn with_sinks(mut self, sinks: Sinks) -> Env {
        self.sinks = sinks;
        self
    }

    /// The bucket outputs go to for an object of `source_bucket`.
    pub fn output_bucket<'a>(&'a self, source_bucket: &'a str) -> &'a str {
        self.cfg.output_bucket.as_deref().unwrap_or(source_bucket)
    }
}

/// Whether an existing manifest describes this very version of the object.
fn same_version(existing: &Source, info: &ObjectInfo) -> bool {
    match (&existing.version_id, &info.version_id) {
        (Some(a), Some(b)) => a == b,
        _ => existing.etag.is_some() && existing.etag == info.etag && existing.size == info.size,
    }
}

/// One object-created event, from the loop guard to the written manifest.
pub async fn process_event(
    env: &Env,
    ev: &ObjectEvent,
    deadline: Option<Instant>,
) -> ObjectOutcome {
    let cfg = &env.cfg;
    let out_bucket = env.output_bucket(&ev.bucket).to_string();
    if out_bucket == ev.bucket && ev.key.starts_with(&cfg.output_prefix) {
        return ObjectOutcome::Skipped {
            reason: format!(
                "loop guard: the key is under OUTPUT_PREFIX {:?} of the output bucket",
                cfg.output_prefix
            ),
        };
    }
    if let Err(reason) = env.filter.check(&ev.key) {
        return ObjectOutcome::Skipped {
            reason: reason.to_string(),
        };
    }
    let mkey = manifest_key(&cfg.output_prefix, &ev.key);
    let existing = match env.s3.get_small(&out_bucket, &mkey).await {
        Ok(found) => found,
        Err(e) => {
            return ObjectOutcome::Retry {
                error: e.to_string(),
            };
        }
    };
    let existing_manifest = existing
        .as_ref()
        .and_then(|(body, _)| serde_json::from_slice::<Manifest>(body).ok());
    let mut meta = Source {
        bucket: ev.bucket.clone(),
        key: ev.key.clone(),
        size: ev.size.unwrap_or(0),
        etag: ev.etag.clone(),
        version_id: ev.version_id.clone(),
        sequencer: ev.sequencer.clone(),
        event_time: ev.event_time.clone(),
        event_name: Some(ev.event_name.clone()),
    };
    let info = match env
        .s3
        .head(&ev.bucket, &ev.key, ev.version_id.as_deref())
        .await
    {
        Ok(info) => info,
        Err(StoreError::NotFound(message)) => {
            // Permanent: Braze removes exports after some hours. A `failed` manifest says so,
            // unless one was already written for this notification.
            if let Some(m) = existing_manifest
                .as_ref()
                .filter(|m| m.status == Status::Failed && m.source.sequencer == meta.sequencer)
            {
                return forward_again(env, &out_bucket, m, deadline).await;
            }
            let mut manifest = empty_manifest(meta, &cfg.output_prefix);
            if let Some((kind, braze)) = kind_from_key(&ev.key) {
                manifest.kind = kind;
                manifest.braze = braze;
            }
            manifest.status = Status::Failed;
            manifest.errors.push(ObjectError {
                message,
                part: None,
            });
            return write_manifest(
                env,
                &out_bucket,
                manifest,
                existing.map(|(_, e)| e),
                deadline,
            )
            .await;
        }
        Err(e) => {
            return ObjectOutcome::Retry {
                error: e.to_string(),
            };
        }
    };
    if let Some(m) = &existing_manifest
        && m.status != Status::Skipped
        && same_version(&m.source, &info)
    {
        return forward_again(env, &out_bucket, m, deadline).await;
    }
    meta.size = info.size;
    meta.etag = info.etag.clone();
    meta.version_id = info.version_id.clone();
    let handle = tokio::runtime::Handle::current();
    let source: Arc<dyn ObjectSource> = Arc::new(env.s3.source(&info, handle.clone()));
    let writer: Arc<dyn PartWriter> = Arc::new(env.s3.writer(&out_bucket, handle));
    let outcome = run(source, meta, cfg.clone(), Some(writer), deadline).await;
    if let Some(error) = outcome.retryable {
        return ObjectOutcome::Retry { error };
    }
    write_manifest(
        env,
        &out_bucket,
        outcome.manifest,
        existing.map(|(_, e)| e),
        deadline,
    )
    .await
}

/// Writes the manifest last, conditionally: only where none exists, or over the exact manifest
/// that was read before the work. A lost race means a concurrent duplicate wrote it first.
async fn write_manifest(
    env: &Env,
    out_bucket: &str,
    manifest: Manifest,
    previous_etag: Option<String>,
    deadline: Option<Instant>,
) -> ObjectOutcome {
    let body = manifest.to_json_pretty().into_bytes();
    let condition = match previous_etag {
        Some(etag) => Condition::IfMatch(etag),
        None => Condition::IfNoneMatch,
    };
    match env
        .s3
        .put_small(
            out_bucket,
            &manifest.manifest_key,
            body,
            "application/json",
            condition,
        )
        .await
    {
        Ok(()) => match forward(env, out_bucket, &manifest, deadline).await {
            Ok(deliveries) => ObjectOutcome::Done {
                manifest: Box::new(manifest),
                deliveries,
            },
            Err(error) => ObjectOutcome::Retry { error },
        },
        Err(StoreError::PreconditionFailed) => {
            // Someone else wrote it meanwhile: theirs stands if it is for this version.
            match env.s3.get_small(out_bucket, &manifest.manifest_key).await {
                Ok(Some((body, _))) => match serde_json::from_slice::<Manifest>(&body) {
                    Ok(theirs)
                        if theirs.source.etag == manifest.source.etag
                            && theirs.source.version_id == manifest.source.version_id =>
                    {
                        // The winner of the race forwards it; sending here too would deliver
                        // it twice.
                        ObjectOutcome::Duplicate {
                            manifest_key: manifest.manifest_key,
                            deliveries: Vec::new(),
                        }
                    }
                    _ => ObjectOutcome::Retry {
                        error: "the manifest changed while the object was processed".into(),
                    },
                },
                Ok(None) => ObjectOutcome::Retry {
                    error: "the manifest vanished during a conditional write".into(),
                },
                Err(e) => ObjectOutcome::Retry {
                    error: e.to_string(),
                },
            }
        }
        Err(e) => ObjectOutcome::Retry {
            error: format!("writing the manifest failed: {e}"),
        },
    }
}

/// One sink's part in forwarding a manifest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Delivery {
    pub sink: &'static str,
    /// `delivered`, `already_delivered`, `failed` or `in_progress` (another invocation is
    /// delivering it right now).
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Time from the start of forwarding until the sink accepted the message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
}

/// A delivery record: `<OUTPUT_PREFIX>deliveries/<source key>/<sink>.json`. Claimed (`sending`)
/// with a conditional write before the message is sent, `delivered` once the sink accepted it,
/// `failed` when it did not, so that a retry sends only to the sinks that did not accept it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct DeliveryRecord {
    idempotency_key: String,
    sink: String,
    state: String,
    unix: u64,
}

/// A `sending` claim older than this (the longest Lambda invocation) belongs to an invocation
/// that died: it may be taken over.
const STALE_CLAIM_SECS: u64 = 15 * 60;

fn delivery_key(prefix: &str, source_key: &str, sink: &str) -> String {
    format!("{prefix}deliveries/{source_key}/{sink}.json")
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A duplicate notification: the manifest exists for this version. Forwards it to the sinks
/// that have not accepted it yet (nothing, normally).
async fn forward_again(
    env: &Env,
    out_bucket: &str,
    manifest: &Manifest,
    deadline: Option<Instant>,
) -> ObjectOutcome {
    match forward(env, out_bucket, manifest, deadline).await {
        Ok(deliveries) => ObjectOutcome::Duplicate {
            manifest_key: manifest.manifest_key.clone(),
            deliveries,
        },
        Err(error) => ObjectOutcome::Retry { error },
    }
}

/// Sends the manifest to every configured sink that has not accepted it for this object version.
/// `Err` when a sink failed (the object is retried; the next attempt sends only to that sink).
async fn forward(
    env: &Env,
    out_bucket: &str,
    manifest: &Manifest,
    deadline: Option<Instant>,
) -> Result<Vec<Delivery>, String> {
    let names = env.sinks.names();
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let started = Instant::now();
    let msg = sink::outgoing(manifest, out_bucket, deadline);
    let mut deliveries = Vec::new();
    for name in names {
        let key = delivery_key(&env.cfg.output_prefix, &manifest.source.key, name);
        let delivery = deliver_once(env, out_bucket, &key, name, &msg, started).await;
        match &delivery.error {
            None => {
                info!(sink = name, outcome = delivery.outcome, latency_ms = ?delivery.latency_ms, "manifest forwarded")
            }
            Some(e) => {
                warn!(sink = name, outcome = delivery.outcome, error = %e, "manifest not forwarded")
            }
        }
        deliveries.push(delivery);
    }
    let failed: Vec<String> = deliveries
        .iter()
        .filter_map(|d| d.error.as_ref().map(|e| format!("{}: {e}", d.sink)))
        .collect();
    if failed.is_empty() {
        Ok(deliveries)
    } else {
        Err(format!("forwarding failed: {}", failed.join("; ")))
    }
}

async fn deliver_once(
    env: &Env,
    out_bucket: &str,
    key: &str,
    name: &'static str,
    msg: &sink::Outgoing,
    started: Instant,
) -> Delivery {
    let record = |state: &str| {
        serde_json::to_vec(&DeliveryRecord {
            idempotency_key: msg.idempotency_key.clone(),
            sink: name.to_string(),
            state: state.to_string(),
            unix: unix_now(),
        })
        .expect("record serialises")
    };
    let fail = |outcome: &'static str, error: String| Delivery {
        sink: name,
        outcome,
        error: Some(error),
        latency_ms: None,
    };
    // Claim the delivery, so that concurrent duplicates never send twice.
    let condition = match env.s3.get_small(out_bucket, key).await {
        Err(e) => return fail("failed", e.to_string()),
        Ok(None) => Condition::IfNoneMatch,
        Ok(Some((body, etag))) => {
            let existing = serde_json::from_slice::<DeliveryRecord>(&body).ok();
            match existing {
                Some(r) if r.idempotency_key == msg.idempotency_key && r.state == "delivered" => {
                    return Delivery {
                        sink: name,
                        outcome: "already_delivered",
                        error: None,
                        latency_ms: None,
                    };
                }
                Some(r)
                    if r.idempotency_key == msg.idempotency_key
                        && r.state == "sending"
                        && unix_now().saturating_sub(r.unix) < STALE_CLAIM_SECS =>
                {
                    return fail(
                        "in_progress",
                        "another invocation is delivering this manifest".into(),
                    );
                }
                _ => Condition::IfMatch(etag),
            }
        }
    };
    match env
        .s3
        .put_small(
            out_bucket,
            key,
            record("sending"),
            "application/json",
            condition,
        )
        .await
    {
        Ok(()) => {}
        Err(StoreError::PreconditionFailed) => {
            return fail(
                "in_progress",
                "another invocation is delivering this manifest".into(),
            );
        }
        Err(e) => return fail("failed", e.to_string()),
    }
    let sent = env.sinks.send(name, msg).await;
    let state = if sent.is_ok() { "delivered" } else { "failed" };
    let recorded = env
        .s3
        .put_small(
            out_bucket,
            key,
            record(state),
            "application/json",
            Condition::None,
        )
        .await;
    match (sent, recorded) {
        (Ok(()), Ok(())) => Delivery {
            sink: name,
            outcome: "delivered",
            error: None,
            latency_ms: Some(started.elapsed().as_millis() as u64),
        },
        // Delivered, but not recorded: a retry sends it again with the same idempotency key
        // (duplicates over loss); the receiver deduplicates on it.
        (Ok(()), Err(e)) => fail("failed", format!("delivered, but the record failed: {e}")),
        (Err(e), _) => fail("failed", e.message),
    }
}

#[cfg(test)]
mod tests {
    //! The pipeline against in-memory doubles of the store traits.
    use std::io::{self, Cursor, Write};
    use std::sync::Mutex;

    use super::*;
    use crate::store::conformance::MemSource;
    use crate::store::{PartUpload, Pending};

    /// Accepts every part; the completion of the parts named in `fail` fails afterwards, as a
    /// CompleteMultipartUpload can once `finish` has returned.
    struct LateFailures {
        fail: Vec<&'static str>,
        finished: Mutex<Vec<String>>,
    }

    struct Upload<'a> {
        writer: &'a LateFailures,
        key: String,
    }

    impl Write for Upload<'_> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl PartUpload for Upload<'_> {
        fn finish(self: Box<Self>) -> io::Result<Pending> {
            self.writer.finished.lock().unwrap().push(self.key.clone());
            if self.writer.fail.iter().any(|f| self.key.ends_with(f)) {
                Ok(Pending::later(|| {
                    Err(io::Error::other(Transient(
                        "CompleteMultipartUpload: HTTP 503".into(),
                    )))
                }))
            } else {
                Ok(Pending::done())
            }
        }
        fn abort(self: Box<Self>) {}
    }

    impl PartWriter for LateFailures {
        fn bucket(&self) -> &str {
            "out"
        }
        fn create(&self, key: &str) -> io::Result<Box<dyn PartUpload + '_>> {
            Ok(Box::new(Upload {
                writer: self,
                key: key.to_string(),
            }))
        }
        fn put(&self, _: &str, _: &[u8]) -> io::Result<()> {
            Ok(())
        }
    }

    fn zip_of(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, body) in members {
            w.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            w.write_all(body).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    fn run(object: Vec<u8>, writer: &LateFailures) -> Outcome {
        let meta = Source {
            key: "segment-export/seg/2024-05-01/export.zip".into(),
            ..Source::default()
        };
        index_object(
            &MemSource::new(object),
            meta,
            &Config::default(),
            Some(writer),
            None,
        )
    }

    #[test]
    fn a_part_upload_that_fails_after_finish_fails_the_object_as_retryable() {
        let object = zip_of(&[
            ("a.txt", b"{\"external_id\":\"1\"}\n"),
            ("b.txt", b"{\"external_id\":\"2\"}\n"),
        ]);
        let writer = LateFailures {
            fail: vec!["b.txt"],
            finished: Mutex::new(Vec::new()),
        };
        let outcome = run(object, &writer);
        let m = &outcome.manifest;
        assert_eq!(m.status, Status::Failed);
        let retryable = outcome.retryable.expect("retryable");
        assert!(
            retryable.contains("b.txt") && retryable.contains("503"),
            "{retryable}"
        );
        // The part whose upload did complete keeps its output; the other one claims none.
        assert!(m.parts[0].output.is_some(), "{:?}", m.parts[0]);
        assert!(m.parts[1].output.is_none(), "{:?}", m.parts[1]);
        assert_eq!(m.parts[1].errors.len(), 1);
        assert_eq!(m.errors[0].part.as_deref(), Some("b.txt"));
        // Both parts were handed over before either completion was waited for.
        assert_eq!(writer.finished.lock().unwrap().len(), 2);
    }

    #[test]
    fn completed_uploads_make_a_complete_manifest() {
        let object = zip_of(&[("a.txt", b"{\"external_id\":\"1\"}\n")]);
        let writer = LateFailures {
            fail: Vec::new(),
            finished: Mutex::new(Vec::new()),
        };
        let outcome = run(object, &writer);
        assert_eq!(outcome.manifest.status, Status::Complete);
        assert!(outcome.retryable.is_none());
        assert!(outcome.manifest.parts[0].output.is_some());
    }
}
