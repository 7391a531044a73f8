//! One object from fetch to manifest: detect, decode, index and write every part. The failure
//! policy lives here, once:
//!
//! - `complete`: every part decoded to its end and every record valid;
//! - `partial`: every part decoded to its end, some records invalid (listed per part);
//! - `failed`: a stream or archive could not be decoded to its end, or a limit was crossed.
//!   Parts that did decode are still listed; the failed part is listed with its error and its
//!   output is discarded. A transient failure (source or writer I/O) also sets
//!   [`Outcome::retryable`], so the caller retries instead of publishing the manifest.
//!
//! A `failed` manifest says what its failure is a property of ([`FailureCause`], decided in one
//! place, `cause_of`): the object (corrupt, truncated, not decodable), which a redelivered
//! notification leaves alone; the environment (a limit crossed, permissions), or an object
//! that was missing, which a redelivered notification processes again.

use std::collections::HashSet;
use std::io::{self, Cursor, Read};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::config::{Config, KeyFilter};
use crate::decode::zip::{Archive, ArchiveError, MemberInfo};
use crate::decode::{self, Budget, limit_of};
use crate::detect::{
    MAGIC_LEN, ZIP_TAIL_LEN, codec_from_magic, ends_like_zip, kind_from_key, single_part_name,
};
use crate::index::{self, FormatError, Indexed, Options, SNIFF_LEN};
use crate::manifest::{
    Braze, Compression, Failure, FailureCause, Format, Kind, MANIFEST_VERSION, MAX_LISTED_ERRORS,
    Manifest, ObjectError, Output, Part, Producer, Source, Status, Totals, manifest_key,
    now_rfc3339, part_key_of, sanitize_part_name,
};
use crate::sink::{self, Sinks};
use crate::store::s3::{self, OutputKind, S3Store};
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
        manifest.failure = Some(Failure {
            cause: FailureCause::Environment,
        });
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
        failure: None,
        processed_at: now_rfc3339(),
        duration_ms: 0,
        producer: Producer::default(),
    }
}

/// Everything one object's parts share.
struct Ctx<'a> {
    cfg: &'a Config,
    key: &'a str,
    /// The source's version id, when it has one: part keys carry it (see [`part_key_of`]).
    version_id: Option<&'a str>,
    kind: Option<Kind>,
    writer: Option<&'a dyn PartWriter>,
    budget: Budget,
    used_keys: HashSet<String>,
    next_suffix: std::collections::HashMap<String, u64>,
    deadline: Option<Instant>,
    /// Set when some stream or archive could not be read to its end, or a limit was crossed:
    /// what the failure is a property of (see [`Ctx::fail`]).
    cause: Option<FailureCause>,
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
    let version_id = manifest.source.version_id.clone();
    let mut ctx = Ctx {
        cfg,
        key: &key,
        version_id: version_id.as_deref(),
        kind: key_kind.map(|(k, _)| k),
        writer: if cfg.write_parts { writer } else { None },
        budget: Budget::new(source.size(), &cfg.limits),
        used_keys: HashSet::new(),
        next_suffix: Default::default(),
        deadline,
        cause: None,
        retryable: None,
        pending: Vec::new(),
    };
    let size = source.size();
    if let Err(limit) = decode::check_object_size(size, &cfg.limits) {
        ctx.fail(FailureCause::Environment);
        manifest.errors.push(ObjectError {
            message: limit.to_string(),
            part: None,
        });
    } else {
        match read_head(source) {
            Err(e) => {
                ctx.fail(cause_of(&e));
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
                if manifest.compression == Compression::None
                    && !head.starts_with(crate::detect::AVRO_MAGIC)
                    && size >= 22
                {
                    // A zip with data prepended (self-extracting style) is still a zip.
                    match read_tail(source) {
                        Ok(tail) if ends_like_zip(&tail, size) => {
                            manifest.compression = Compression::Zip
                        }
                        Ok(_) => {}
                        Err(e) => {
                            let message = format!("the object cannot be read: {e}");
                            if is_transient(&e) {
                                ctx.retryable = Some(message.clone());
                            }
                            ctx.fail(cause_of(&e));
                            manifest.errors.push(ObjectError {
                                message,
                                part: None,
                            });
                        }
                    }
                }
                // Unless reading the tail failed already.
                if ctx.cause.is_none() {
                    if manifest.compression == Compression::Zip {
                        process_zip(&mut ctx, source, &mut manifest);
                    } else {
                        process_stream(&mut ctx, source, &mut manifest);
                    }
                }
            }
        }
    }
    settle_uploads(&mut ctx, &mut manifest);
    deadline_passed(&mut ctx, &mut manifest, "once the parts were written");
    if ctx.kind.is_none() {
        manifest.kind = if manifest.parts.iter().any(|p| p.format == Format::Csv) {
            Kind::Report
        } else {
            Kind::Unknown
        };
    }
    limit_object_errors(&mut manifest.errors);
    manifest.compute_totals();
    manifest.failure = ctx.cause.map(|cause| Failure { cause });
    manifest.status = if ctx.cause.is_some() {
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

/// Members of a zip that may fail before the rest of the archive is left unread.
const MAX_FAILED_MEMBERS: usize = MAX_LISTED_ERRORS;

/// Lists at most [`MAX_LISTED_ERRORS`] object-level errors, then one that counts the rest (each
/// part still lists its own).
fn limit_object_errors(errors: &mut Vec<ObjectError>) {
    if errors.len() <= MAX_LISTED_ERRORS {
        return;
    }
    let unlisted = errors.len() - MAX_LISTED_ERRORS;
    errors.truncate(MAX_LISTED_ERRORS);
    errors.push(ObjectError {
        message: format!("{unlisted} more errors not listed (see the parts)"),
        part: None,
    });
}

/// Waits for the part uploads still completing. A part whose upload failed loses its output and
/// fails the object as retryable, as if its upload had failed while it was being written: no
/// manifest claims a part that is not there.
fn settle_uploads(ctx: &mut Ctx<'_>, manifest: &mut Manifest) {
    for (key, pending) in std::mem::take(&mut ctx.pending) {
        let Err(e) = pending.wait() else { continue };
        let message = format!("writing part {key:?} failed: {e}");
        warn!(part_key = %crate::sanitize_for_log(&key), error = %e, "part upload failed");
        ctx.fail(FailureCause::Environment);
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

fn read_tail(source: &dyn ObjectSource) -> io::Result<Vec<u8>> {
    let size = source.size();
    let len = size.min(ZIP_TAIL_LEN as u64);
    let mut tail = Vec::with_capacity(len as usize);
    source
        .read_range(size - len, size)?
        .read_to_end(&mut tail)?;
    Ok(tail)
}

/// Whether the deadline has passed; if so the object fails retryably, saying where it stopped.
fn deadline_passed(ctx: &mut Ctx<'_>, manifest: &mut Manifest, stage: &str) -> bool {
    if ctx.deadline.is_none_or(|d| Instant::now() < d) {
        return false;
    }
    let message =
        format!("the invocation deadline is near: stopped {stage}, so that the object is retried");
    ctx.fail(FailureCause::Environment);
    ctx.retryable.get_or_insert_with(|| message.clone());
    manifest.errors.push(ObjectError {
        message,
        part: None,
    });
    true
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
            let processed = process_part(ctx, &name, size, &mut stream);
            push_part(ctx, manifest, processed, container);
        }
        Err(e) => {
            push_part(
                ctx,
                manifest,
                (failed_part(&name, size), 0, Some(e)),
                container,
            );
        }
    }
}

fn process_zip(ctx: &mut Ctx<'_>, source: &dyn ObjectSource, manifest: &mut Manifest) {
    let size = source.size();
    if deadline_passed(ctx, manifest, "before opening the archive") {
        return;
    }
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
    // Reading a large central directory takes time of its own.
    if deadline_passed(ctx, manifest, "after reading the archive's directory") {
        return;
    }
    // Read in the order the data lies (one forward stream, whatever order the directory lists
    // them in); listed in the manifest in directory order.
    let mut order: Vec<&MemberInfo> = members.iter().collect();
    order.sort_by_key(|m| archive.data_offset(m));
    let first_part = manifest.parts.len();
    let mut part_index: Vec<usize> = Vec::new();
    let file_members = members.iter().filter(|m| !m.is_dir).count();
    let mut failed_members = 0usize;
    for member in order {
        if failed_members >= MAX_FAILED_MEMBERS {
            // The object is failed already: reading on would only make the work and the
            // manifest grow with an archive whose members all fail.
            manifest.errors.insert(
                0,
                ObjectError {
                message: format!(
                    "stopped after {failed_members} members failed: {} of {file_members} members \
                     were not read",
                    file_members - part_index.len()
                ),
                part: None,
            },
            );
            break;
        }
        if member.is_dir {
            if let Err(e) = archive.check_entry(member) {
                let message = archive_error_message(ctx, e);
                manifest.errors.push(ObjectError {
                    message,
                    part: None,
                });
            }
            continue;
        }
        part_index.push(member.index);
        let container = format!("zip member {:?}", member.name);
        let mut read_to_end = false;
        match archive.open_member(member, &ctx.budget) {
            Ok(mut stream) => {
                let processed =
                    process_part(ctx, &member.name, member.compressed_size, &mut stream);
                read_to_end = processed.2.is_none();
                failed_members += usize::from(!read_to_end);
                push_part(ctx, manifest, processed, &container);
            }
            Err(e) => {
                failed_members += 1;
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
        if read_to_end && let Err(e) = archive.check_gap_after(member) {
            let message = archive_error_message(ctx, e);
            manifest.errors.push(ObjectError {
                message,
                part: None,
            });
        }
        if ctx.retryable.is_some() {
            // The source is failing: stop here, the whole object will be retried.
            break;
        }
    }
    let mut listed: Vec<(usize, Part)> = part_index
        .into_iter()
        .zip(manifest.parts.drain(first_part..))
        .collect();
    listed.sort_by_key(|(index, _)| *index);
    manifest
        .parts
        .extend(listed.into_iter().map(|(_, part)| part));
}

fn archive_error_message(ctx: &mut Ctx<'_>, e: ArchiveError) -> String {
    ctx.fail(match &e {
        ArchiveError::Io(io) => cause_of(io),
        ArchiveError::Limit(_) => FailureCause::Environment,
        _ => FailureCause::Object,
    });
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
    (mut part, bad_records, fatal): (Part, u64, Option<io::Error>),
    container: &str,
) {
    if let Some(e) = fatal {
        ctx.fail(cause_of(&e));
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
        let first = &part.errors[0];
        manifest.errors.push(ObjectError {
            message: format!(
                "{bad_records} bad record{} (first{}: {})",
                if bad_records == 1 { "" } else { "s" },
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

impl Ctx<'_> {
    /// Marks the object failed. The first cause that a redelivery would process again wins over
    /// `object`: a limit crossed in one part makes the whole manifest worth reprocessing.
    fn fail(&mut self, cause: FailureCause) {
        match self.cause {
            Some(c) if c.reprocess_on_redelivery() => {}
            Some(_) if !cause.reprocess_on_redelivery() => {}
            _ => self.cause = Some(cause),
        }
    }
}

/// What a failure that stopped a stream is a property of: the one place that decides it.
/// A limit crossed (`MAX_*`, perhaps set too low), a transient or access failure of the source
/// or the writer: the environment. The object gone mid-read: missing. Anything else the bytes
/// themselves said (corrupt, truncated, bad format): the object.
fn cause_of(e: &io::Error) -> FailureCause {
    if limit_of(e).is_some() || is_transient(e) || e.kind() == io::ErrorKind::PermissionDenied {
        FailureCause::Environment
    } else if e.kind() == io::ErrorKind::NotFound {
        FailureCause::Missing
    } else {
        FailureCause::Object
    }
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
    let prefix = &ctx.cfg.output_prefix;
    let mut key = part_key_of(prefix, ctx.key, ctx.version_id, &clean);
    // The next suffix to try per name: many parts with one clean name cost linear time.
    let n = ctx.next_suffix.entry(clean.clone()).or_insert(1);
    while !ctx.used_keys.insert(key.clone()) {
        *n += 1;
        key = part_key_of(prefix, ctx.key, ctx.version_id, &format!("{clean}~{n}"));
    }
    key
}

/// Streams one part through hashing, indexing and writing.
fn process_part(
    ctx: &mut Ctx<'_>,
    name: &str,
    compressed_bytes: u64,
    stream: &mut (dyn Read + Send),
) -> (Part, u64, Option<io::Error>) {
    let key = output_key(ctx, name);
    let upload = match ctx.writer.map(|w| w.create(&key)).transpose() {
        Ok(u) => u,
        Err(e) => {
            let e = io::Error::other(Transient(format!("cannot write part {key:?}: {e}")));
            return (failed_part(name, compressed_bytes), 0, Some(e));
        }
    };
    let ctx_view: &Ctx<'_> = ctx;
    let ((indexed, format), produced) = stage::run(stream, upload, &key, ctx.deadline, |reader| {
        sniff_and_index(ctx_view, reader)
    });
    let (sha, bytes, upload) = (produced.sha256, produced.bytes, produced.upload);
    let mut fatal = indexed.fatal;
    let bad_records = indexed.errors.total;
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
    (part, bad_records, fatal)
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
    /// The notification is older than what the key holds now (a later version or overwrite,
    /// processed or on its way): acknowledged as done, not retried; nothing written or
    /// forwarded.
    Superseded { reason: String },
}

impl ObjectOutcome {
    pub fn label(&self) -> &'static str {
        match self {
            ObjectOutcome::Done { .. } => "done",
            ObjectOutcome::Duplicate { .. } => "duplicate",
            ObjectOutcome::Skipped { .. } => "skipped",
            ObjectOutcome::Retry { .. } => "retry",
            ObjectOutcome::Superseded { .. } => "superseded",
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

/// Whether a manifest's failure is one a redelivered notification processes again (the
/// environment, or a missing object).
fn reprocessable(m: &Manifest) -> bool {
    m.failure.is_some_and(|f| f.cause.reprocess_on_redelivery())
}

/// Whether an existing manifest is this version's final result, so that a redelivered
/// notification only forwards it again: not a `skipped` one, not a failure a redelivery
/// processes again. A `missing` manifest in particular never makes a later upload of the same
/// bytes (same ETag and size) look done.
fn already_done(existing: &Manifest, info: &ObjectInfo) -> bool {
    existing.status != Status::Skipped
        && !reprocessable(existing)
        && same_version(&existing.source, info)
}

/// Orders two S3 sequencers of one key: hex strings compared after left-padding to equal length
/// (S3's event documentation). `None` when either is empty or not hex.
fn sequencer_order(a: &str, b: &str) -> Option<std::cmp::Ordering> {
    let hex = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_hexdigit());
    if !hex(a) || !hex(b) {
        return None;
    }
    let width = a.len().max(b.len());
    let pad = |s: &str| format!("{:0>width$}", s.to_ascii_uppercase());
    Some(pad(a).cmp(&pad(b)))
}

/// Whether `a` was written after `b`: the same object key, and both sequencers known with
/// `a`'s the greater.
fn is_newer(a: &Source, b: &Source) -> bool {
    if a.bucket != b.bucket || a.key != b.key {
        return false;
    }
    match (&a.sequencer, &b.sequencer) {
        (Some(x), Some(y)) => sequencer_order(x, y) == Some(std::cmp::Ordering::Greater),
        _ => false,
    }
}

/// A notification older than what the key now holds: acknowledged (not retried, so it never
/// ends in the DLQ), nothing written, nothing forwarded.
fn superseded(reason: String) -> ObjectOutcome {
    info!(reason = %reason, "notification superseded: nothing to do");
    ObjectOutcome::Superseded { reason }
}

/// The object a notification is about, when it is still the key's current one; `Ok(Err(why))`
/// when it was replaced since. A versioned notification names its version: a HEAD of the key
/// says whether it is still current, and an older one is superseded (its notification came
/// late; the newer version's is processed or on its way). When the key has no current version
/// (a delete marker), the named version itself is read. An unversioned notification whose ETag
/// is no longer the key's was overwritten since: superseded too.
async fn current_object(
    env: &Env,
    ev: &ObjectEvent,
) -> Result<Result<ObjectInfo, String>, StoreError> {
    let current = env.s3.head(&ev.bucket, &ev.key, None).await;
    match (&ev.version_id, current) {
        (Some(v), Ok(info)) if info.version_id.as_deref() == Some(v.as_str()) => Ok(Ok(info)),
        (Some(v), Ok(info)) => Ok(Err(format!(
            "version {v:?} is no longer the current one ({:?} is)",
            info.version_id.as_deref().unwrap_or("null")
        ))),
        (Some(v), Err(StoreError::NotFound(_))) => {
            env.s3.head(&ev.bucket, &ev.key, Some(v)).await.map(Ok)
        }
        (None, Ok(info)) => match (&ev.etag, &info.etag) {
            (Some(theirs), Some(now)) if theirs != now && info.version_id.is_none() => {
                Ok(Err(format!(
                    "the object was overwritten since this notification (ETag {theirs:?}, now {now:?})"
                )))
            }
            _ => Ok(Ok(info)),
        },
        (_, Err(e)) => Err(e),
    }
}

/// One object-created event, from the loop guard to the written manifest. Every S3 request it
/// makes ends by `deadline` (`store::s3::within_deadline`).
pub async fn process_event(
    env: &Env,
    ev: &ObjectEvent,
    deadline: Option<Instant>,
) -> ObjectOutcome {
    let out_bucket = env.output_bucket(&ev.bucket);
    if out_bucket == ev.bucket && ev.key.starts_with(&env.cfg.output_prefix) {
        return ObjectOutcome::Skipped {
            reason: format!(
                "loop guard: the key is under OUTPUT_PREFIX {:?} of the output bucket",
                env.cfg.output_prefix
            ),
        };
    }
    s3::within_deadline(deadline, process_object(env, ev, deadline)).await
}

/// The loop guard's second look, at the object itself: an output written by the fetcher
/// (under any earlier `OUTPUT_PREFIX` or `OUTPUT_BUCKET`) carries `export-fetcher-output`.
fn output_marker_guard(info: &ObjectInfo) -> Option<ObjectOutcome> {
    let kind = info.output.as_deref()?;
    Some(ObjectOutcome::Skipped {
        reason: format!(
            "loop guard: the object is an export-fetcher output ({} metadata {kind:?})",
            s3::OUTPUT_METADATA
        ),
    })
}

/// [`process_event`] past the key-based loop guard.
async fn process_object(env: &Env, ev: &ObjectEvent, deadline: Option<Instant>) -> ObjectOutcome {
    let cfg = &env.cfg;
    let out_bucket = env.output_bucket(&ev.bucket).to_string();
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
    let existing_etag = existing.map(|(_, etag)| etag);
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
    if let Some(m) = existing_manifest
        .as_ref()
        .filter(|m| is_newer(&m.source, &meta))
    {
        return superseded(format!(
            "the manifest holds a later notification of this key (sequencer {:?} after {:?})",
            m.source.sequencer.as_deref().unwrap_or(""),
            meta.sequencer.as_deref().unwrap_or("")
        ));
    }
    let info = match current_object(env, ev).await {
        Ok(Ok(info)) => info,
        Ok(Err(reason)) => return superseded(reason),
        Err(StoreError::NotFound(message)) => {
            return object_missing(
                env,
                &out_bucket,
                meta,
                existing_manifest,
                existing_etag,
                message,
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
    if let Some(skipped) = output_marker_guard(&info) {
        return skipped;
    }
    if let Some(m) = &existing_manifest
        && already_done(m, &info)
    {
        return forward_again(env, &out_bucket, m, deadline).await;
    }
    meta.size = info.size;
    meta.etag = info.etag.clone();
    meta.version_id = info.version_id.clone();
    let handle = tokio::runtime::Handle::current();
    let source: Arc<dyn ObjectSource> = Arc::new(env.s3.source(&info, handle.clone()));
    let mut writer = env
        .s3
        .writer(&out_bucket, handle)
        .with_part_size(cfg.limits.part_size() as usize);
    // Parts of a versioned source have keys of their own (`@<version id>`); those of an
    // unversioned one share their key across overwrites, so they are written conditionally.
    if info.version_id.is_none()
        && let Some(etag) = &info.etag
    {
        writer = writer.with_source_tag(etag);
    }
    let writer: Arc<dyn PartWriter> = Arc::new(writer);
    let outcome = run(source, meta, cfg.clone(), Some(writer), deadline).await;
    if let Some(error) = outcome.retryable {
        return ObjectOutcome::Retry { error };
    }
    write_manifest(env, &out_bucket, outcome.manifest, existing_etag, deadline).await
}

/// The notification's object does not exist (any more): Braze removes exports after some hours.
/// A `failed` manifest with cause `missing` says so, but only where no other result stands: it
/// never replaces a `complete` or `partial` manifest, and it yields to whatever a run wrote
/// meanwhile (it is written conditionally, and a lost race leaves the winner's manifest).
async fn object_missing(
    env: &Env,
    out_bucket: &str,
    meta: Source,
    existing: Option<Manifest>,
    existing_etag: Option<String>,
    message: String,
    deadline: Option<Instant>,
) -> ObjectOutcome {
    if let Some(m) = existing.as_ref().filter(|m| {
        matches!(m.status, Status::Complete | Status::Partial)
            || (m.status == Status::Failed && m.source.sequencer == meta.sequencer)
    }) {
        // A result of a real run, or this notification's own answer: it stands.
        return forward_again(env, out_bucket, m, deadline).await;
    }
    let key = meta.key.clone();
    let mut manifest = empty_manifest(meta, &env.cfg.output_prefix);
    if let Some((kind, braze)) = kind_from_key(&key) {
        manifest.kind = kind;
        manifest.braze = braze;
    }
    manifest.status = Status::Failed;
    manifest.failure = Some(Failure {
        cause: FailureCause::Missing,
    });
    manifest.errors.push(ObjectError {
        message,
        part: None,
    });
    let condition = match existing_etag {
        Some(etag) => Condition::IfMatch(etag),
        None => Condition::IfNoneMatch,
    };
    let body = manifest.to_json_pretty().into_bytes();
    let written = env
        .s3
        .put_small(
            out_bucket,
            &manifest.manifest_key,
            body,
            "application/json",
            condition,
        )
        .await;
    match written {
        Ok(()) => match forward(env, out_bucket, &manifest, deadline).await {
            Ok(deliveries) => ObjectOutcome::Done {
                manifest: Box::new(manifest),
                deliveries,
            },
            Err(error) => ObjectOutcome::Retry { error },
        },
        // A run wrote the manifest meanwhile: its result stands, and it forwards it.
        Err(StoreError::PreconditionFailed) => ObjectOutcome::Duplicate {
            manifest_key: manifest.manifest_key,
            deliveries: Vec::new(),
        },
        Err(e) => ObjectOutcome::Retry {
            error: format!("writing the manifest failed: {e}"),
        },
    }
}

/// Conditional manifest writes tried before the object is retried instead.
const MANIFEST_ATTEMPTS: usize = 3;

/// What a run does when the manifest changed under it.
#[derive(Debug, PartialEq)]
enum LostRace {
    /// Theirs is for this very version: it stands, and its writer forwards it.
    TheirsStands,
    /// Theirs is for a later notification of the key: ours is superseded.
    Superseded,
    /// Ours replaces theirs: theirs is for an earlier notification, or a failure a run that
    /// read the object overrides (a `missing` object, the environment).
    Replace,
    /// Not known which is newer: the object is retried and decides then.
    Unknown,
}

fn after_lost_race(ours: &Manifest, theirs: &Manifest) -> LostRace {
    if is_newer(&theirs.source, &ours.source) {
        LostRace::Superseded
    } else if reprocessable(theirs) && !reprocessable(ours) {
        LostRace::Replace
    } else if theirs.source.etag == ours.source.etag
        && theirs.source.version_id == ours.source.version_id
    {
        LostRace::TheirsStands
    } else if is_newer(&ours.source, &theirs.source) {
        LostRace::Replace
    } else {
        LostRace::Unknown
    }
}

/// Writes the manifest last, conditionally: only where none exists, or over the exact manifest
/// that was read before the work. When it changed meanwhile, [`after_lost_race`] decides: a
/// later notification's manifest or one for this same version stands; an earlier one, or a
/// `missing` or environment failure, is replaced (conditionally again, on what was just read).
async fn write_manifest(
    env: &Env,
    out_bucket: &str,
    manifest: Manifest,
    previous_etag: Option<String>,
    deadline: Option<Instant>,
) -> ObjectOutcome {
    let body = manifest.to_json_pretty().into_bytes();
    let mut condition = match previous_etag {
        Some(etag) => Condition::IfMatch(etag),
        None => Condition::IfNoneMatch,
    };
    for _ in 0..MANIFEST_ATTEMPTS {
        let written = env
            .s3
            .put_small(
                out_bucket,
                &manifest.manifest_key,
                body.clone(),
                "application/json",
                condition,
            )
            .await;
        match written {
            Ok(()) => {
                return match forward(env, out_bucket, &manifest, deadline).await {
                    Ok(deliveries) => ObjectOutcome::Done {
                        manifest: Box::new(manifest),
                        deliveries,
                    },
                    Err(error) => ObjectOutcome::Retry { error },
                };
            }
            Err(StoreError::PreconditionFailed) => {}
            Err(e) => {
                return ObjectOutcome::Retry {
                    error: format!("writing the manifest failed: {e}"),
                };
            }
        }
        // Someone else wrote it meanwhile.
        let (theirs, etag) = match env.s3.get_small(out_bucket, &manifest.manifest_key).await {
            Ok(Some((body, etag))) => (serde_json::from_slice::<Manifest>(&body).ok(), etag),
            Ok(None) => {
                return ObjectOutcome::Retry {
                    error: "the manifest vanished during a conditional write".into(),
                };
            }
            Err(e) => {
                return ObjectOutcome::Retry {
                    error: e.to_string(),
                };
            }
        };
        let verdict = theirs
            .as_ref()
            .map_or(LostRace::Unknown, |t| after_lost_race(&manifest, t));
        match verdict {
            // The winner of the race forwards it; sending here too would deliver it twice.
            LostRace::TheirsStands => {
                return ObjectOutcome::Duplicate {
                    manifest_key: manifest.manifest_key,
                    deliveries: Vec::new(),
                };
            }
            LostRace::Superseded => {
                return superseded(
                    "a later notification of this key wrote its manifest while this one ran".into(),
                );
            }
            LostRace::Replace => condition = Condition::IfMatch(etag),
            LostRace::Unknown => {
                return ObjectOutcome::Retry {
                    error: "the manifest changed while the object was processed".into(),
                };
            }
        }
    }
    ObjectOutcome::Retry {
        error: "the manifest kept changing while it was written".into(),
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
/// `failed` when it did not (or did not in time), so that a retry sends only to the sinks that
/// did not accept it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct DeliveryRecord {
    idempotency_key: String,
    sink: String,
    state: String,
    unix: u64,
    /// For a `sending` claim: the unix second from which it no longer holds, the deadline of
    /// the invocation that made it (its send is cut there). Absent in older records: then
    /// `unix + STALE_CLAIM_SECS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires: Option<u64>,
    /// Which manifest of the version was delivered ([`manifest_stamp`]): a manifest that
    /// replaces a delivered one for the same version (an environment failure reprocessed, a
    /// `missing` object uploaded again) is delivered too. Absent in older records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    manifest: Option<String>,
}

/// Tells apart two manifests written for one object version: their status and time of writing.
fn manifest_stamp(manifest: &Manifest) -> String {
    format!("{} {}", manifest.status.as_str(), manifest.processed_at)
}

impl DeliveryRecord {
    /// Whether this is a claim that another invocation may still be sending under.
    fn is_live_claim(&self) -> bool {
        self.state == "sending" && unix_now() < self.expires.unwrap_or(self.unix + STALE_CLAIM_SECS)
    }
}

/// A `sending` claim made without a deadline (not in Lambda) holds this long, the longest
/// Lambda invocation.
const STALE_CLAIM_SECS: u64 = 15 * 60;
/// No delivery is claimed with less time than this left before the deadline: the send could
/// not finish.
const MIN_SEND_TIME: Duration = Duration::from_secs(1);

/// The unix second at which a claim made now stops holding: just after `deadline`, when the
/// send it covers has been cut.
fn claim_expiry(deadline: Option<Instant>) -> u64 {
    unix_now()
        + deadline.map_or(STALE_CLAIM_SECS, |d| {
            d.saturating_duration_since(Instant::now()).as_secs() + 1
        })
}

fn delivery_key(prefix: &str, source_key: &str, sink: &str) -> String {
    crate::manifest::fit_key(
        format!("{prefix}deliveries/{source_key}/{sink}.json"),
        ".json",
    )
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
        let stamp = manifest_stamp(manifest);
        let delivery = deliver_once(env, out_bucket, &key, name, &msg, &stamp, started).await;
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

/// Sends `msg` to one sink at most once per object version, through the delivery record at
/// `key`. The claim holds until the deadline (recorded in it); the send is cut at the deadline,
/// and a send that fails or is cut releases the claim (`failed`), so that the retry sends it.
async fn deliver_once(
    env: &Env,
    out_bucket: &str,
    key: &str,
    name: &'static str,
    msg: &sink::Outgoing,
    stamp: &str,
    started: Instant,
) -> Delivery {
    let deadline = msg.deadline;
    let record = |state: &str, expires: Option<u64>| {
        serde_json::to_vec(&DeliveryRecord {
            idempotency_key: msg.idempotency_key.clone(),
            sink: name.to_string(),
            state: state.to_string(),
            unix: unix_now(),
            expires,
            manifest: Some(stamp.to_string()),
        })
        .expect("record serialises")
    };
    let fail = |outcome: &'static str, error: String| Delivery {
        sink: name,
        outcome,
        error: Some(error),
        latency_ms: None,
    };
    if deadline.is_some_and(|d| d.saturating_duration_since(Instant::now()) < MIN_SEND_TIME) {
        return fail(
            "failed",
            "the invocation deadline is near: not sent, so that the retry sends it".into(),
        );
    }
    // Claim the delivery, so that concurrent duplicates never send twice.
    let condition = match env.s3.get_small(out_bucket, key).await {
        Err(e) => return fail("failed", e.to_string()),
        Ok(None) => Condition::IfNoneMatch,
        Ok(Some((body, etag))) => {
            let existing = serde_json::from_slice::<DeliveryRecord>(&body).ok();
            match existing {
                Some(r)
                    if r.idempotency_key == msg.idempotency_key
                        && r.state == "delivered"
                        && r.manifest.as_deref().is_none_or(|m| m == stamp) =>
                {
                    return Delivery {
                        sink: name,
                        outcome: "already_delivered",
                        error: None,
                        latency_ms: None,
                    };
                }
                Some(r) if r.idempotency_key == msg.idempotency_key && r.is_live_claim() => {
                    return fail(
                        "in_progress",
                        "another invocation is delivering this manifest".into(),
                    );
                }
                _ => Condition::IfMatch(etag),
            }
        }
    };
    let claim = env
        .s3
        .put_output(
            OutputKind::Delivery,
            out_bucket,
            key,
            record("sending", Some(claim_expiry(deadline))),
            "application/json",
            condition,
        )
        .await;
    let claim_etag = match claim {
        Ok(etag) => etag,
        Err(StoreError::PreconditionFailed) => {
            return fail(
                "in_progress",
                "another invocation is delivering this manifest".into(),
            );
        }
        Err(e) => return fail("failed", e.to_string()),
    };
    let send = env.sinks.send(name, msg);
    let sent = match deadline {
        None => send.await,
        Some(d) => tokio::time::timeout_at(d.into(), send)
            .await
            .unwrap_or_else(|_| {
                // It may have been accepted all the same: the retry sends it again with the
                // same idempotency key (duplicates over loss).
                Err(sink::SinkError {
                    sink: name,
                    message: "not accepted before the invocation deadline".into(),
                })
            }),
    };
    let state = if sent.is_ok() { "delivered" } else { "failed" };
    // After the deadline too (bound by the cleanup timeout), and only over our own claim: one
    // that expired may have been taken over meanwhile.
    let recorded = s3::as_cleanup(env.s3.put_output(
        OutputKind::Delivery,
        out_bucket,
        key,
        record(state, None),
        "application/json",
        claim_etag.map_or(Condition::None, Condition::IfMatch),
    ))
    .await;
    match (sent, recorded) {
        (Ok(()), Ok(_)) => Delivery {
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
    fn sequencers_compare_as_left_padded_hex() {
        use std::cmp::Ordering::*;
        let cases = [
            ("0055AED6DCD90281E5", "0055AED6DCD90281E6", Some(Less)),
            ("0055AED6DCD90281E5", "0055AED6DCD90281E5", Some(Equal)),
            // Shorter ones are padded with zeros on the left, case does not matter.
            ("FF", "0100", Some(Less)),
            ("0a", "9", Some(Greater)),
            ("0055aed6dcd90281e6", "0055AED6DCD90281E5", Some(Greater)),
            ("", "01", None),
            ("xyz", "01", None),
        ];
        for (a, b, want) in cases {
            assert_eq!(sequencer_order(a, b), want, "sequencer_order({a:?}, {b:?})");
        }
    }

    #[test]
    fn a_lost_manifest_race_lets_the_later_or_real_result_stand() {
        let m = |seq: &str, etag: &str, cause: Option<FailureCause>| {
            let mut m = empty_manifest(
                Source {
                    bucket: "b".into(),
                    key: "k".into(),
                    etag: Some(etag.into()),
                    sequencer: (!seq.is_empty()).then(|| seq.to_string()),
                    ..Source::default()
                },
                "export-fetcher/",
            );
            m.failure = cause.map(|cause| Failure { cause });
            m
        };
        let missing = Some(FailureCause::Missing);
        let env = Some(FailureCause::Environment);
        let object = Some(FailureCause::Object);
        let cases = [
            // (ours, theirs, verdict)
            (m("02", "e2", None), m("01", "e1", None), LostRace::Replace),
            (
                m("01", "e1", None),
                m("02", "e2", None),
                LostRace::Superseded,
            ),
            (
                m("01", "e1", None),
                m("02", "e1", missing),
                LostRace::Superseded,
            ),
            (
                m("01", "e1", None),
                m("01", "e1", missing),
                LostRace::Replace,
            ),
            (m("", "e1", None), m("", "e1", env), LostRace::Replace),
            (m("", "e1", None), m("", "e1", None), LostRace::TheirsStands),
            (
                m("", "e1", None),
                m("", "e1", object),
                LostRace::TheirsStands,
            ),
            (
                m("", "e1", missing),
                m("", "e1", None),
                LostRace::TheirsStands,
            ),
            (m("", "e1", None), m("", "e2", None), LostRace::Unknown),
        ];
        for (i, (ours, theirs, want)) in cases.iter().enumerate() {
            assert_eq!(&after_lost_race(ours, theirs), want, "case {i}");
        }
    }

    #[test]
    fn failure_causes_are_decided_in_one_place() {
        use crate::decode::LimitExceeded;
        let limit = LimitExceeded {
            variable: "MAX_EXPANDED_BYTES",
            limit: 1,
            what: "x".into(),
        }
        .into_io();
        let cases = [
            (limit, FailureCause::Environment),
            (
                io::Error::other(Transient("503".into())),
                FailureCause::Environment,
            ),
            (
                StoreError::Denied("AccessDenied".into()).into_io(),
                FailureCause::Environment,
            ),
            (
                io::Error::new(io::ErrorKind::NotFound, "gone"),
                FailureCause::Missing,
            ),
            (
                io::Error::new(io::ErrorKind::UnexpectedEof, "truncated"),
                FailureCause::Object,
            ),
            (
                io::Error::new(io::ErrorKind::InvalidData, "corrupt deflate stream"),
                FailureCause::Object,
            ),
        ];
        for (e, want) in cases {
            assert_eq!(cause_of(&e), want, "{e}");
        }
    }

    #[test]
    fn a_limit_crossed_fails_the_manifest_as_environment_and_corruption_as_object() {
        let writer = LateFailures {
            fail: Vec::new(),
            finished: Mutex::new(Vec::new()),
        };
        let object = zip_of(&[("a.txt", &[b'x'; 4096][..])]);
        let mut cfg = Config::default();
        cfg.limits.max_expanded_bytes = 100;
        let meta = Source {
            key: "segment-export/seg/2024-05-01/export.zip".into(),
            ..Source::default()
        };
        let m = index_object(&MemSource::new(object), meta, &cfg, Some(&writer), None).manifest;
        assert_eq!(m.status, Status::Failed);
        assert_eq!(m.failure.map(|f| f.cause), Some(FailureCause::Environment));

        let mut corrupt = zip_of(&[("a.txt", &[b'x'; 4096][..])]);
        corrupt.truncate(corrupt.len() / 2);
        let m = run(corrupt, &writer).manifest;
        assert_eq!(m.status, Status::Failed);
        assert_eq!(m.failure.map(|f| f.cause), Some(FailureCause::Object));

        let ok = run(zip_of(&[("a.txt", b"{}\n")]), &writer).manifest;
        assert_eq!(ok.failure, None);
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
