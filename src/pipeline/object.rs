//! Indexing one object: bytes in, parts written and a manifest out. Detects the codec, decodes
//! streams and zip members, indexes every part and writes it. The failure policy lives here, once:
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
//!
//! Knows nothing of events, S3 versions or sinks: [`super::event`] calls it.

use std::collections::HashSet;
use std::io::{self, Cursor, Read};
use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::config::Config;
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
use crate::store::{ObjectSource, PartWriter, Pending, SeekableSource, Transient, is_transient};

use super::stage::{self, ChunkReader};

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

pub(super) fn empty_manifest(source: Source, prefix: &str) -> Manifest {
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
        generation: 1,
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
        schema_fingerprint: None,
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
        schema_fingerprint: indexed.schema_fingerprint,
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

#[cfg(test)]
mod tests {
    //! The pipeline against in-memory doubles of the store traits.
    use std::io::{self, Cursor, Write};
    use std::sync::Mutex;

    use super::*;
    use crate::store::conformance::MemSource;
    use crate::store::{PartUpload, Pending, StoreError};

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
