//! A lean S3 backend for measuring the fetcher's S3 path: objects are plain files in one
//! folder, their metadata lives in memory.
//!
//! The benchmark runs its S3 server on the same two cores as the fetcher. `s3s-fs` hashes every
//! uploaded byte with MD5 twice (once per part, once more when the upload completes), writes
//! through tokio's file API in small chunks and copies every part into the final object on
//! completion: about 7 s of CPU per GiB of parts written, more than the fetcher spends on the
//! whole pipeline. Real S3 spends none of the function's CPU. This backend does what the fetcher
//! needs of S3 with one file write per byte received, the same disk work as `index --out`:
//!
//! - bodies are written once, checked against the CRC-32C the client sent (header or aws-chunked
//!   trailer; a mismatch is `BadDigest`, as in S3);
//! - a completed multipart object is the list of its part files, in order (no copy);
//! - ETags are opaque tokens, unique per write, not MD5 sums;
//! - conditional writes (`If-None-Match: *`, `If-Match`) are checked atomically when the object is
//!   committed, so of two racing writers exactly one wins.
//!
//! Served: CreateBucket, HeadBucket, PutObject, GetObject (ranges, `If-Match`, `If-None-Match`),
//! HeadObject, DeleteObject, ListObjectsV2 (prefix, delimiter, `max-keys` up to 1,000,
//! continuation token, `start-after`; keys in byte order; no encoding type) and the four
//! multipart operations.
//! Everything else answers `NotImplemented`. The
//! state is the process's: a restarted server starts empty (files left in the folder are not
//! read back).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use futures_util::StreamExt;
use s3s::dto::{
    AbortMultipartUploadInput, AbortMultipartUploadOutput, CommonPrefix,
    CompleteMultipartUploadInput, CompleteMultipartUploadOutput, CreateBucketInput,
    CreateBucketOutput, CreateMultipartUploadInput, CreateMultipartUploadOutput, DeleteObjectInput,
    DeleteObjectOutput, ETag, ETagCondition, GetObjectInput, GetObjectOutput, HeadBucketInput,
    HeadBucketOutput, HeadObjectInput, HeadObjectOutput, ListObjectsV2Input, ListObjectsV2Output,
    Object as ListedObject, PutObjectInput, PutObjectOutput, Range, StreamingBlob, Timestamp,
    UploadPartInput, UploadPartOutput,
};
use s3s::{S3, S3Error, S3Request, S3Response, S3Result, TrailingHeaders, s3_error};
use tokio::sync::mpsc;

use export_fetcher::demo::server::Reply;

/// S3's smallest part size, for every part but the last.
const MIN_PART: u64 = 5 << 20;
/// Bytes per chunk of a GET body.
const READ_CHUNK: usize = 1 << 20;
/// Write buffer per upload: body chunks arrive in pieces of a few KiB.
const WRITE_BUFFER: usize = 1 << 20;
/// S3's largest (and default) page of ListObjectsV2.
const MAX_KEYS: i32 = 1000;

/// The backend; see the module documentation.
pub struct PlainStore {
    dir: PathBuf,
    next_id: AtomicU64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    buckets: HashSet<String>,
    objects: HashMap<(String, String), Arc<Object>>,
    uploads: HashMap<String, Upload>,
}

/// A file and how many bytes of it belong to the object.
#[derive(Clone, Debug)]
struct Piece {
    path: PathBuf,
    len: u64,
}

struct Object {
    /// The files whose concatenation is the object.
    pieces: Vec<Piece>,
    size: u64,
    etag: String,
    content_type: Option<String>,
    /// Base64 CRC-32C of a single PUT, or S3's composite `<base64>-<parts>` of a multipart one.
    crc32c: String,
    /// Whether `crc32c` is the checksum of the whole object (a single PUT).
    full_crc: bool,
    last_modified: SystemTime,
}

struct Upload {
    bucket: String,
    key: String,
    content_type: Option<String>,
    parts: BTreeMap<i32, Part>,
}

struct Part {
    piece: Piece,
    etag: String,
    crc32c: u32,
}

impl PlainStore {
    /// Stores objects as files in `dir` (created when missing).
    pub fn new(dir: &Path) -> io::Result<PlainStore> {
        std::fs::create_dir_all(dir)?;
        Ok(PlainStore {
            dir: dir.to_path_buf(),
            next_id: AtomicU64::new(1),
            state: Mutex::new(State::default()),
        })
    }

    fn id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent maps behind (every update is one
        // insert or remove), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check_bucket(&self, bucket: &str) -> S3Result<()> {
        if self.lock().buckets.contains(bucket) {
            Ok(())
        } else {
            Err(s3_error!(NoSuchBucket))
        }
    }

    /// Writes a request body to a new file; returns it with the body's CRC-32C. The file is
    /// removed again when the body fails or does not match the checksum the client sent.
    async fn write_body(
        &self,
        body: Option<StreamingBlob>,
        sent_crc: Option<&str>,
        trailers: Option<&TrailingHeaders>,
    ) -> S3Result<(Piece, u32, String)> {
        let mut body = body.ok_or_else(|| s3_error!(IncompleteBody))?;
        let path = self.dir.join(format!("{:016x}", self.id()));
        let file = File::create(&path).map_err(internal)?;
        let mut out = BufWriter::with_capacity(WRITE_BUFFER, file);
        let mut crc = 0u32;
        let mut len = 0u64;
        let result: S3Result<String> = async {
            while let Some(chunk) = body.next().await {
                let chunk =
                    chunk.map_err(|e| s3_error!(IncompleteBody, "reading the body: {e}"))?;
                crc = crc32c::crc32c_append(crc, &chunk);
                // A plain blocking write: it lands in the page cache, and this server exists
                // to be cheap, not to serve many clients.
                out.write_all(&chunk).map_err(internal)?;
                len += chunk.len() as u64;
            }
            out.flush().map_err(internal)?;
            let actual = BASE64.encode(crc.to_be_bytes());
            let trailer = trailers.and_then(|t| {
                t.read(|h| {
                    h.get("x-amz-checksum-crc32c")
                        .and_then(|v| v.to_str().ok())
                        .map(String::from)
                })
                .flatten()
            });
            match sent_crc.map(String::from).or(trailer) {
                Some(sent) if sent != actual => Err(s3_error!(
                    BadDigest,
                    "the CRC-32C you specified ({sent}) did not match the body ({actual})"
                )),
                _ => Ok(actual),
            }
        }
        .await;
        match result {
            Ok(actual) => Ok((Piece { path, len }, crc, actual)),
            Err(e) => {
                drop(out);
                let _ = std::fs::remove_file(&path);
                Err(e)
            }
        }
    }

    /// Makes `object` the current version of `bucket/key` if the preconditions hold; removes the
    /// files of the version it replaces (or, when refused, its own).
    fn commit(
        &self,
        bucket: &str,
        key: &str,
        object: Object,
        if_match: Option<&ETagCondition>,
        if_none_match: Option<&ETagCondition>,
    ) -> S3Result<()> {
        let mut state = self.lock();
        let id = (bucket.to_string(), key.to_string());
        let current = state.objects.get(&id).map(|o| o.etag.as_str());
        if let Err(e) = write_allowed(current, if_match, if_none_match) {
            drop(state);
            remove_pieces(&object.pieces);
            return Err(e);
        }
        let old = state.objects.insert(id, Arc::new(object));
        drop(state);
        if let Some(old) = old {
            remove_pieces(&old.pieces);
        }
        Ok(())
    }

    /// The object, with its files opened (under the lock, so that a concurrent overwrite cannot
    /// remove them first; an open file stays readable after it is removed).
    fn open(&self, bucket: &str, key: &str) -> S3Result<(Arc<Object>, Vec<File>)> {
        let state = self.lock();
        let Some(object) = state.objects.get(&(bucket.to_string(), key.to_string())) else {
            return Err(if state.buckets.contains(bucket) {
                s3_error!(NoSuchKey)
            } else {
                s3_error!(NoSuchBucket)
            });
        };
        let files = object
            .pieces
            .iter()
            .map(|p| File::open(&p.path))
            .collect::<io::Result<Vec<_>>>()
            .map_err(internal)?;
        Ok((object.clone(), files))
    }

    async fn put(&self, req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
        let trailers = req.trailing_headers.clone();
        let input = req.input;
        self.check_bucket(&input.bucket)?;
        // Refuse early (as S3 does) and check again at the commit, where it counts.
        let current = self.current_etag(&input.bucket, &input.key);
        write_allowed(
            current.as_deref(),
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
        )?;
        let (piece, _, crc) = self
            .write_body(
                input.body,
                input.checksum_crc32c.as_deref(),
                trailers.as_ref(),
            )
            .await?;
        let size = piece.len;
        let etag = format!("{:016x}", self.id());
        let object = Object {
            pieces: vec![piece],
            size,
            etag: etag.clone(),
            content_type: input.content_type,
            crc32c: crc.clone(),
            full_crc: true,
            last_modified: SystemTime::now(),
        };
        self.commit(
            &input.bucket,
            &input.key,
            object,
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
        )?;
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(ETag::Strong(etag)),
            checksum_crc32c: Some(crc),
            size: Some(size as i64),
            ..Default::default()
        }))
    }

    fn current_etag(&self, bucket: &str, key: &str) -> Option<String> {
        self.lock()
            .objects
            .get(&(bucket.to_string(), key.to_string()))
            .map(|o| o.etag.clone())
    }

    async fn get(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
        let input = req.input;
        let (object, files) = self.open(&input.bucket, &input.key)?;
        read_allowed(
            &object.etag,
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
        )?;
        let (start, end) = byte_range(input.range.as_ref(), object.size)?;
        let segments = segments(&object.pieces, files, start, end);
        let (tx, rx) = mpsc::channel(4);
        tokio::task::spawn_blocking(move || send_segments(segments, tx));
        let partial = input.range.is_some();
        Ok(S3Response::new(GetObjectOutput {
            body: Some(StreamingBlob::wrap(ChannelBody(rx))),
            content_length: Some((end - start) as i64),
            content_range: partial.then(|| {
                format!(
                    "bytes {start}-{}/{}",
                    end.saturating_sub(1).max(start),
                    object.size
                )
            }),
            accept_ranges: Some("bytes".into()),
            e_tag: Some(ETag::Strong(object.etag.clone())),
            last_modified: Some(Timestamp::from(object.last_modified)),
            content_type: object.content_type.clone(),
            // Like S3: a ranged read carries no checksum of the whole object.
            checksum_crc32c: (!partial).then(|| object.crc32c.clone()),
            ..Default::default()
        }))
    }

    async fn head(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let input = req.input;
        let (object, _) = self.open(&input.bucket, &input.key)?;
        read_allowed(
            &object.etag,
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
        )?;
        Ok(S3Response::new(HeadObjectOutput {
            content_length: Some(object.size as i64),
            accept_ranges: Some("bytes".into()),
            e_tag: Some(ETag::Strong(object.etag.clone())),
            last_modified: Some(Timestamp::from(object.last_modified)),
            content_type: object.content_type.clone(),
            checksum_crc32c: object.full_crc.then(|| object.crc32c.clone()),
            ..Default::default()
        }))
    }

    /// One page of the bucket's keys under the prefix, in byte order, after the continuation
    /// token (the last key of the previous page, base64) or else `start-after`.
    fn list(&self, input: ListObjectsV2Input) -> S3Result<S3Response<ListObjectsV2Output>> {
        self.check_bucket(&input.bucket)?;
        if input.encoding_type.is_some() {
            return Err(s3_error!(
                NotImplemented,
                "ListObjectsV2 with an encoding type"
            ));
        }
        let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
        let max_keys = input.max_keys.unwrap_or(MAX_KEYS);
        if max_keys < 0 {
            return Err(s3_error!(InvalidArgument, "max-keys must not be negative"));
        }
        let after = match &input.continuation_token {
            Some(token) => Some(
                BASE64
                    .decode(token)
                    .ok()
                    .and_then(|k| String::from_utf8(k).ok())
                    .ok_or_else(|| {
                        s3_error!(
                            InvalidArgument,
                            "The continuation token provided is incorrect"
                        )
                    })?,
            ),
            None => input.start_after.clone(),
        };
        let prefix = input.prefix.clone().unwrap_or_default();
        // A common prefix the previous page ended on stands for every key under it.
        let resumed_in = after
            .as_ref()
            .filter(|a| delimiter.as_ref().is_some_and(|d| a.ends_with(d.as_str())));
        let mut found: Vec<(String, Arc<Object>)> = self
            .lock()
            .objects
            .iter()
            .filter(|((bucket, key), _)| {
                *bucket == input.bucket
                    && key.starts_with(&prefix)
                    && after.as_ref().is_none_or(|a| key > a)
                    && resumed_in.is_none_or(|p| !key.starts_with(p.as_str()))
            })
            .map(|((_, key), object)| (key.clone(), object.clone()))
            .collect();
        found.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        // Keys past the delimiter roll up into their common prefix, listed once in key order.
        let mut entries: Vec<(String, Option<Arc<Object>>)> = Vec::with_capacity(found.len());
        for (key, object) in found {
            let rolled = delimiter.as_ref().and_then(|d| {
                key[prefix.len()..]
                    .find(d.as_str())
                    .map(|at| key[..prefix.len() + at + d.len()].to_string())
            });
            match rolled {
                Some(common) => {
                    if entries.last().is_none_or(|(last, _)| *last != common) {
                        entries.push((common, None));
                    }
                }
                None => entries.push((key, Some(object))),
            }
        }
        let page = max_keys.min(MAX_KEYS) as usize;
        let truncated = entries.len() > page;
        entries.truncate(page);
        let next = truncated.then(|| BASE64.encode(&entries[entries.len() - 1].0));
        let mut common_prefixes = Vec::new();
        let mut found = Vec::with_capacity(entries.len());
        for (key, object) in entries {
            match object {
                Some(object) => found.push((key, object)),
                None => common_prefixes.push(CommonPrefix { prefix: Some(key) }),
            }
        }
        let contents = found
            .into_iter()
            .map(|(key, object)| ListedObject {
                key: Some(key),
                size: Some(object.size as i64),
                e_tag: Some(ETag::Strong(object.etag.clone())),
                last_modified: Some(Timestamp::from(object.last_modified)),
                storage_class: Some(s3s::dto::ObjectStorageClass::from_static(
                    s3s::dto::ObjectStorageClass::STANDARD,
                )),
                ..Default::default()
            })
            .collect::<Vec<_>>();
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: input.prefix,
            max_keys: Some(max_keys),
            key_count: Some((contents.len() + common_prefixes.len()) as i32),
            delimiter: input.delimiter,
            common_prefixes: (!common_prefixes.is_empty()).then_some(common_prefixes),
            continuation_token: input.continuation_token,
            start_after: input.start_after,
            is_truncated: Some(truncated),
            next_continuation_token: next,
            contents: Some(contents),
            ..Default::default()
        }))
    }

    fn create_upload(
        &self,
        input: CreateMultipartUploadInput,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        self.check_bucket(&input.bucket)?;
        let upload_id = format!("{:016x}", self.id());
        self.lock().uploads.insert(
            upload_id.clone(),
            Upload {
                bucket: input.bucket.clone(),
                key: input.key.clone(),
                content_type: input.content_type,
                parts: BTreeMap::new(),
            },
        );
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(upload_id),
            checksum_algorithm: input.checksum_algorithm,
            ..Default::default()
        }))
    }

    fn upload_exists(&self, upload_id: &str, bucket: &str, key: &str) -> S3Result<()> {
        match self.lock().uploads.get(upload_id) {
            Some(u) if u.bucket == bucket && u.key == key => Ok(()),
            _ => Err(s3_error!(NoSuchUpload)),
        }
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let trailers = req.trailing_headers.clone();
        let input = req.input;
        if !(1..=10_000).contains(&input.part_number) {
            return Err(s3_error!(
                InvalidArgument,
                "Part number must be an integer between 1 and 10000, inclusive"
            ));
        }
        self.upload_exists(&input.upload_id, &input.bucket, &input.key)?;
        let (piece, crc, crc_b64) = self
            .write_body(
                input.body,
                input.checksum_crc32c.as_deref(),
                trailers.as_ref(),
            )
            .await?;
        let etag = format!("{crc:08x}{:016x}", self.id());
        let replaced = {
            let mut state = self.lock();
            match state.uploads.get_mut(&input.upload_id) {
                // Aborted or completed while the body was arriving.
                None => Err(piece.clone()),
                Some(upload) => Ok(upload
                    .parts
                    .insert(
                        input.part_number,
                        Part {
                            piece,
                            etag: etag.clone(),
                            crc32c: crc,
                        },
                    )
                    .map(|old| old.piece)),
            }
        };
        match replaced {
            Err(orphan) => {
                remove_pieces(&[orphan]);
                Err(s3_error!(NoSuchUpload))
            }
            Ok(old) => {
                remove_pieces(old.as_slice());
                Ok(S3Response::new(UploadPartOutput {
                    e_tag: Some(ETag::Strong(etag)),
                    checksum_crc32c: Some(crc_b64),
                    ..Default::default()
                }))
            }
        }
    }

    fn complete_upload(
        &self,
        input: CompleteMultipartUploadInput,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let listed = input
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default();
        if listed.is_empty() {
            return Err(s3_error!(InvalidPart, "You must specify at least one part"));
        }
        let mut state = self.lock();
        let upload = match state.uploads.get(&input.upload_id) {
            Some(u) if u.bucket == input.bucket && u.key == input.key => u,
            _ => return Err(s3_error!(NoSuchUpload)),
        };
        // Everything is checked before anything changes: a refused completion leaves the
        // upload as it was, so the client may complete it again or abort it.
        let mut numbers = Vec::with_capacity(listed.len());
        for (i, p) in listed.iter().enumerate() {
            let number = p
                .part_number
                .ok_or_else(|| s3_error!(InvalidPart, "a part has no part number"))?;
            if numbers.last().is_some_and(|&last| number <= last) {
                return Err(s3_error!(InvalidPartOrder));
            }
            let part = upload
                .parts
                .get(&number)
                .ok_or_else(|| s3_error!(InvalidPart, "part {number} was not uploaded"))?;
            if let Some(etag) = &p.e_tag
                && etag.value() != part.etag
            {
                return Err(s3_error!(InvalidPart, "part {number} has another ETag"));
            }
            if i + 1 < listed.len() && part.piece.len < MIN_PART {
                return Err(s3_error!(EntityTooSmall, "part {number} is under 5 MiB"));
            }
            numbers.push(number);
        }
        let id = (input.bucket.clone(), input.key.clone());
        let current = state.objects.get(&id).map(|o| o.etag.as_str());
        write_allowed(
            current,
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
        )?;
        let mut upload = state
            .uploads
            .remove(&input.upload_id)
            .expect("checked above, under the same lock");
        let mut pieces = Vec::with_capacity(numbers.len());
        let mut crcs = Vec::with_capacity(4 * numbers.len());
        for number in &numbers {
            let part = upload.parts.remove(number).expect("checked above");
            crcs.extend_from_slice(&part.crc32c.to_be_bytes());
            pieces.push(part.piece);
        }
        let unlisted: Vec<Piece> = upload.parts.into_values().map(|p| p.piece).collect();
        let n = numbers.len();
        let etag = format!("{:016x}-{n}", self.id());
        let crc32c = format!("{}-{n}", BASE64.encode(crc32c::crc32c(&crcs).to_be_bytes()));
        let object = Object {
            size: pieces.iter().map(|p| p.len).sum(),
            pieces,
            etag: etag.clone(),
            content_type: upload.content_type,
            crc32c: crc32c.clone(),
            full_crc: false,
            last_modified: SystemTime::now(),
        };
        let old = state.objects.insert(id, Arc::new(object));
        drop(state);
        remove_pieces(&unlisted);
        if let Some(old) = old {
            remove_pieces(&old.pieces);
        }
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            e_tag: Some(ETag::Strong(etag)),
            checksum_crc32c: Some(crc32c),
            ..Default::default()
        }))
    }

    fn abort_upload(
        &self,
        input: AbortMultipartUploadInput,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let upload = {
            let mut state = self.lock();
            match state.uploads.get(&input.upload_id) {
                Some(u) if u.bucket == input.bucket && u.key == input.key => {}
                _ => return Err(s3_error!(NoSuchUpload)),
            }
            state.uploads.remove(&input.upload_id)
        };
        if let Some(upload) = upload {
            let pieces: Vec<Piece> = upload.parts.into_values().map(|p| p.piece).collect();
            remove_pieces(&pieces);
        }
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }
}

fn internal(e: io::Error) -> S3Error {
    s3_error!(e, InternalError)
}

fn remove_pieces(pieces: &[Piece]) {
    for p in pieces {
        let _ = std::fs::remove_file(&p.path);
    }
}

/// S3's rules for a conditional write against the current version's ETag.
fn write_allowed(
    current: Option<&str>,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
) -> S3Result<()> {
    let refused = || {
        Err(s3_error!(
            PreconditionFailed,
            "At least one of the pre-conditions you specified did not hold"
        ))
    };
    match if_none_match {
        Some(ETagCondition::Any) if current.is_some() => return refused(),
        Some(ETagCondition::ETag(e)) if current == Some(e.value()) => return refused(),
        _ => {}
    }
    match if_match {
        Some(ETagCondition::Any) if current.is_none() => refused(),
        Some(ETagCondition::ETag(e)) if current != Some(e.value()) => refused(),
        _ => Ok(()),
    }
}

/// S3's rules for a conditional read: `If-Match` fails with 412, `If-None-Match` with 304.
fn read_allowed(
    etag: &str,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
) -> S3Result<()> {
    if let Some(ETagCondition::ETag(e)) = if_match
        && e.value() != etag
    {
        return Err(s3_error!(PreconditionFailed));
    }
    match if_none_match {
        Some(ETagCondition::Any) => Err(s3_error!(NotModified)),
        Some(ETagCondition::ETag(e)) if e.value() == etag => Err(s3_error!(NotModified)),
        _ => Ok(()),
    }
}

/// The half-open byte range a request asks for.
fn byte_range(range: Option<&Range>, size: u64) -> S3Result<(u64, u64)> {
    match range {
        None => Ok((0, size)),
        Some(r) => {
            let r = r.check(size).map_err(|_| s3_error!(InvalidRange))?;
            Ok((r.start, r.end))
        }
    }
}

/// The (file, offset, length) runs that make up bytes `start..end` of an object.
fn segments(pieces: &[Piece], files: Vec<File>, start: u64, end: u64) -> Vec<(File, u64, u64)> {
    let mut out = Vec::new();
    let mut at = 0u64;
    for (piece, file) in pieces.iter().zip(files) {
        let (lo, hi) = (at, at + piece.len);
        at = hi;
        let from = start.max(lo);
        let to = end.min(hi);
        if from < to {
            out.push((file, from - lo, to - from));
        }
    }
    out
}

/// Reads the segments in chunks into the channel of a GET body (on a blocking thread).
fn send_segments(segments: Vec<(File, u64, u64)>, tx: mpsc::Sender<io::Result<Bytes>>) {
    for (mut file, offset, len) in segments {
        if let Err(e) = file.seek(SeekFrom::Start(offset)) {
            let _ = tx.blocking_send(Err(e));
            return;
        }
        let mut left = len;
        while left > 0 {
            let n = left.min(READ_CHUNK as u64) as usize;
            let mut buf = vec![0u8; n];
            if let Err(e) = file.read_exact(&mut buf) {
                let _ = tx.blocking_send(Err(e));
                return;
            }
            if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                return; // the client went away
            }
            left -= n as u64;
        }
    }
}

/// A GET body fed by [`send_segments`].
struct ChannelBody(mpsc::Receiver<io::Result<Bytes>>);

impl futures_util::Stream for ChannelBody {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

/// One trait method that hands its request to an inherent one.
macro_rules! serve {
    ($method:ident, $input:ty, $output:ty, |$s:ident, $req:ident| $body:expr) => {
        fn $method<'life0, 'async_trait>(
            &'life0 self,
            $req: S3Request<$input>,
        ) -> Reply<'async_trait, $output>
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            let $s = self;
            Box::pin(async move { $body })
        }
    };
}

impl S3 for PlainStore {
    serve!(
        create_bucket,
        CreateBucketInput,
        CreateBucketOutput,
        |s, req| {
            if s.lock().buckets.insert(req.input.bucket) {
                Ok(S3Response::new(CreateBucketOutput::default()))
            } else {
                Err(s3_error!(BucketAlreadyOwnedByYou))
            }
        }
    );
    serve!(head_bucket, HeadBucketInput, HeadBucketOutput, |s, req| {
        s.check_bucket(&req.input.bucket)?;
        Ok(S3Response::new(HeadBucketOutput::default()))
    });
    serve!(put_object, PutObjectInput, PutObjectOutput, |s, req| s
        .put(req)
        .await);
    serve!(get_object, GetObjectInput, GetObjectOutput, |s, req| s
        .get(req)
        .await);
    serve!(head_object, HeadObjectInput, HeadObjectOutput, |s, req| s
        .head(req)
        .await);
    serve!(
        delete_object,
        DeleteObjectInput,
        DeleteObjectOutput,
        |s, req| {
            s.check_bucket(&req.input.bucket)?;
            let id = (req.input.bucket, req.input.key);
            let old = s.lock().objects.remove(&id);
            if let Some(old) = old {
                remove_pieces(&old.pieces);
            }
            Ok(S3Response::new(DeleteObjectOutput::default()))
        }
    );
    serve!(
        list_objects_v2,
        ListObjectsV2Input,
        ListObjectsV2Output,
        |s, req| s.list(req.input)
    );
    serve!(
        create_multipart_upload,
        CreateMultipartUploadInput,
        CreateMultipartUploadOutput,
        |s, req| s.create_upload(req.input)
    );
    serve!(upload_part, UploadPartInput, UploadPartOutput, |s, req| s
        .upload_part(req)
        .await);
    serve!(
        complete_multipart_upload,
        CompleteMultipartUploadInput,
        CompleteMultipartUploadOutput,
        |s, req| s.complete_upload(req.input)
    );
    serve!(
        abort_multipart_upload,
        AbortMultipartUploadInput,
        AbortMultipartUploadOutput,
        |s, req| s.abort_upload(req.input)
    );
}

#[cfg(test)]
mod tests {
    //! The backend through the fetcher's own S3 adapter and the real SDK, over loopback.
    use std::io::{BufReader, Read, Seek, SeekFrom, Write};
    use std::path::Path;

    use export_fetcher::config::Sse;
    use export_fetcher::demo::server::Server;
    use export_fetcher::demo::{ACCESS_KEY, SECRET_KEY};
    use export_fetcher::store::s3::{PART_SIZE, S3Store};
    use export_fetcher::store::{Condition, ObjectSource, PartWriter, SeekableSource, StoreError};
    use s3s::dto::{ETag, ETagCondition};

    use super::PlainStore;

    async fn start(dir: &Path) -> (Server, S3Store) {
        let server = Server::serve(PlainStore::new(dir).unwrap(), ACCESS_KEY, SECRET_KEY)
            .await
            .unwrap();
        let s3 =
            export_fetcher::demo::server::local_client(&server.endpoint(), ACCESS_KEY, SECRET_KEY);
        s3.create_bucket()
            .bucket("plain-tests")
            .send()
            .await
            .unwrap();
        (server, S3Store::new(s3, Sse::None))
    }

    fn files_in(dir: &Path) -> usize {
        std::fs::read_dir(dir).unwrap().count()
    }

    /// Deterministic bytes that do not repeat with the part size.
    fn content(n: usize) -> Vec<u8> {
        let mut x = 0x9e37_79b9_u32;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn delimiter_listings_page_through_common_prefixes_and_deletes_remove() {
        let dir = tempfile::tempdir().unwrap();
        let (server, store) = start(dir.path()).await;
        for key in ["a/1", "a/2/x", "a/2/y", "a/3/z", "a/4", "b"] {
            store
                .put_small(
                    "plain-tests",
                    key,
                    b"x".to_vec(),
                    "text/plain",
                    Condition::None,
                )
                .await
                .unwrap();
        }
        // One entry per page: a common prefix is one entry, and the next page skips its keys.
        let (mut objects, mut prefixes, mut token) = (Vec::new(), Vec::new(), None);
        loop {
            let page = store
                .client()
                .list_objects_v2()
                .bucket("plain-tests")
                .prefix("a/")
                .delimiter("/")
                .max_keys(1)
                .set_continuation_token(token)
                .send()
                .await
                .unwrap();
            assert_eq!(page.key_count(), Some(1));
            objects.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(String::from)),
            );
            prefixes.extend(
                page.common_prefixes()
                    .iter()
                    .filter_map(|p| p.prefix().map(String::from)),
            );
            token = page.next_continuation_token().map(String::from);
            if token.is_none() {
                break;
            }
        }
        assert_eq!(objects, ["a/1", "a/4"]);
        assert_eq!(prefixes, ["a/2/", "a/3/"]);
        let listing = store.list("plain-tests", "", Some("/")).await.unwrap();
        assert_eq!(listing.prefixes, ["a/"]);
        assert_eq!(listing.objects.len(), 1);
        store.delete("plain-tests", "a/2/x").await.unwrap();
        store.delete("plain-tests", "a/2/x").await.unwrap();
        let listing = store.list("plain-tests", "a/2/", None).await.unwrap();
        let keys: Vec<&str> = listing.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["a/2/y"]);
        server.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conditional_writes_and_reads_follow_s3() {
        let dir = tempfile::tempdir().unwrap();
        let (server, store) = start(dir.path()).await;
        let put = |body: &'static [u8], c: Condition| {
            let store = store.clone();
            async move {
                store
                    .put_small(
                        "plain-tests",
                        "m.json",
                        body.to_vec(),
                        "application/json",
                        c,
                    )
                    .await
            }
        };
        put(b"one", Condition::IfNoneMatch).await.unwrap();
        assert!(matches!(
            put(b"two", Condition::IfNoneMatch).await,
            Err(StoreError::PreconditionFailed)
        ));
        let (body, etag) = store
            .get_small("plain-tests", "m.json")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(body, b"one");
        assert!(matches!(
            put(b"two", Condition::IfMatch("\"not-the-etag\"".into())).await,
            Err(StoreError::PreconditionFailed)
        ));
        put(b"two", Condition::IfMatch(etag.clone())).await.unwrap();
        let (body, etag2) = store
            .get_small("plain-tests", "m.json")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(body, b"two");
        assert_ne!(etag, etag2, "a new write has a new ETag");
        // The old version's file is gone: one object, one file.
        assert_eq!(files_in(dir.path()), 1);
        let info = store.head("plain-tests", "m.json", None).await.unwrap();
        assert_eq!(
            (info.size, info.etag.as_deref()),
            (3, Some(etag2.trim_matches('"')))
        );
        // A read that names the old version is refused, as S3 refuses it.
        let err = store
            .client()
            .get_object()
            .bucket("plain-tests")
            .key("m.json")
            .if_match(etag)
            .send()
            .await
            .unwrap_err();
        assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(412));
        assert!(matches!(
            store.head("plain-tests", "missing", None).await,
            Err(StoreError::NotFound(_))
        ));
        assert!(
            store
                .get_small("plain-tests", "missing")
                .await
                .unwrap()
                .is_none()
        );
        server.stop().await;
    }

    /// The object read whole, by ranges that start, end or cross at its part files' edges, and
    /// by a seek to its tail.
    fn reads_back_across_pieces(source: &dyn ObjectSource, data: &[u8]) {
        let read = |a: usize, b: usize| {
            let mut got = Vec::new();
            source
                .read_range(a as u64, b as u64)
                .unwrap()
                .read_to_end(&mut got)
                .unwrap();
            assert!(got == data[a..b], "range {a}..{b} differs");
        };
        let (p, n) = (PART_SIZE, data.len());
        for (a, b) in [
            (0, n),
            (p - 3, p + 5),
            (p, 2 * p),
            (1, 2 * p + 1),
            (2 * p - 1, n),
        ] {
            read(a, b);
        }
        let mut seekable = BufReader::with_capacity(7, SeekableSource::new(source));
        seekable.seek(SeekFrom::End(-5)).unwrap();
        let mut tail = Vec::new();
        seekable.read_to_end(&mut tail).unwrap();
        assert_eq!(tail, &data[n - 5..]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn multipart_objects_are_their_parts_and_read_back_by_range() {
        let dir = tempfile::tempdir().unwrap();
        let (server, store) = start(dir.path()).await;
        let data = content(2 * PART_SIZE + 4321);
        let handle = tokio::runtime::Handle::current();
        let (store2, data2, handle2) = (store.clone(), data.clone(), handle.clone());
        tokio::task::spawn_blocking(move || {
            let writer = store2.writer("plain-tests", handle2);
            let mut upload = writer.create("parts/big.txt").unwrap();
            for chunk in data2.chunks(1 << 20) {
                upload.write_all(chunk).unwrap();
            }
            upload.finish().unwrap().wait().unwrap();
        })
        .await
        .unwrap();
        // Three parts, three files: completing the upload copied nothing.
        assert_eq!(files_in(dir.path()), 3);
        let info = store
            .head("plain-tests", "parts/big.txt", None)
            .await
            .unwrap();
        assert_eq!(info.size, data.len() as u64);
        assert!(info.etag.as_deref().unwrap().ends_with("-3"), "{info:?}");
        // Whole, by ranges that cross part boundaries, and through the seekable view.
        let source = store.source(&info, handle);
        tokio::task::spawn_blocking(move || reads_back_across_pieces(&source, &data))
            .await
            .unwrap();
        // Overwriting the object removes its part files.
        store
            .put_small(
                "plain-tests",
                "parts/big.txt",
                b"small".to_vec(),
                "text/plain",
                Condition::None,
            )
            .await
            .unwrap();
        assert_eq!(files_in(dir.path()), 1);
        server.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_aborted_upload_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (server, store) = start(dir.path()).await;
        let handle = tokio::runtime::Handle::current();
        let store2 = store.clone();
        tokio::task::spawn_blocking(move || {
            let writer = store2.writer("plain-tests", handle);
            let mut upload = writer.create("gone.txt").unwrap();
            // One part shipped, a second one buffered.
            upload.write_all(&content(PART_SIZE + 10)).unwrap();
            upload.abort();
        })
        .await
        .unwrap();
        assert_eq!(files_in(dir.path()), 0);
        assert!(matches!(
            store.head("plain-tests", "gone.txt", None).await,
            Err(StoreError::NotFound(_))
        ));
        server.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_body_that_does_not_match_its_checksum_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (server, store) = start(dir.path()).await;
        let err = store
            .client()
            .put_object()
            .bucket("plain-tests")
            .key("k")
            .checksum_crc32_c("AAAAAA==")
            .body(b"hello".to_vec().into())
            .send()
            .await
            .unwrap_err();
        let code = err.as_service_error().and_then(|e| e.meta().code());
        assert_eq!(code, Some("BadDigest"), "{err:?}");
        assert_eq!(files_in(dir.path()), 0);
        assert!(matches!(
            store.head("plain-tests", "k", None).await,
            Err(StoreError::NotFound(_))
        ));
        server.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lists_keys_under_a_prefix_in_order_page_by_page() {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::serve(PlainStore::new(dir.path()).unwrap(), ACCESS_KEY, SECRET_KEY)
            .await
            .unwrap();
        let s3 =
            export_fetcher::demo::server::local_client(&server.endpoint(), ACCESS_KEY, SECRET_KEY);
        s3.create_bucket().bucket("list").send().await.unwrap();
        s3.create_bucket().bucket("other").send().await.unwrap();
        // Put out of order; "a/" holds 7 keys, the others must not be listed under it.
        let under: Vec<String> = ["a/7", "a/1", "a/b/2", "a/3", "a/10", "a/5", "a/0"]
            .map(String::from)
            .to_vec();
        for key in under.iter().map(String::as_str).chain(["a", "b/1", "a0"]) {
            s3.put_object()
                .bucket("list")
                .key(key)
                .body(key.as_bytes().to_vec().into())
                .send()
                .await
                .unwrap();
        }
        s3.put_object()
            .bucket("other")
            .key("a/2")
            .body(b"x".to_vec().into())
            .send()
            .await
            .unwrap();
        // Overwriting a key lists it once, with its latest size.
        s3.put_object()
            .bucket("list")
            .key("a/3")
            .body(b"three".to_vec().into())
            .send()
            .await
            .unwrap();
        let mut expected = under.clone();
        expected.sort();

        let mut pages = Vec::new();
        let mut token = None;
        loop {
            let out = s3
                .list_objects_v2()
                .bucket("list")
                .prefix("a/")
                .max_keys(3)
                .set_continuation_token(token)
                .send()
                .await
                .unwrap();
            let keys: Vec<String> = out
                .contents()
                .iter()
                .map(|o| o.key().unwrap().to_string())
                .collect();
            assert_eq!(out.key_count(), Some(keys.len() as i32));
            for o in out.contents() {
                let size = if o.key() == Some("a/3") {
                    5
                } else {
                    o.key().unwrap().len()
                };
                assert_eq!(o.size(), Some(size as i64), "{:?}", o.key());
                assert!(o.e_tag().is_some() && o.last_modified().is_some());
            }
            pages.push(keys);
            token = out.next_continuation_token().map(String::from);
            assert_eq!(out.is_truncated(), Some(token.is_some()));
            if token.is_none() {
                break;
            }
        }
        assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 1]);
        assert_eq!(pages.concat(), expected);

        // One page of everything, start-after, an empty prefix, another bucket.
        let all = |prefix: &'static str, after: Option<&'static str>| {
            let s3 = s3.clone();
            async move {
                let out = s3
                    .list_objects_v2()
                    .bucket("list")
                    .prefix(prefix)
                    .set_start_after(after.map(String::from))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(out.is_truncated(), Some(false));
                assert_eq!(out.next_continuation_token(), None);
                out.contents()
                    .iter()
                    .map(|o| o.key().unwrap().to_string())
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(all("a/", None).await, expected);
        assert_eq!(all("a/", Some("a/3")).await, ["a/5", "a/7", "a/b/2"]);
        assert_eq!(all("", None).await.len(), 10);
        assert_eq!(all("", None).await[..3], ["a", "a/0", "a/1"]);
        assert!(all("c/", None).await.is_empty());

        // A key count of exactly the page size is not truncated.
        let out = s3
            .list_objects_v2()
            .bucket("list")
            .prefix("a/")
            .max_keys(7)
            .send()
            .await
            .unwrap();
        assert_eq!(
            (out.key_count(), out.is_truncated()),
            (Some(7), Some(false))
        );

        let err = s3
            .list_objects_v2()
            .bucket("list")
            .continuation_token("not base64!")
            .send()
            .await
            .unwrap_err();
        assert_eq!(
            err.into_service_error().meta().code(),
            Some("InvalidArgument")
        );
        let err = s3
            .list_objects_v2()
            .bucket("missing")
            .send()
            .await
            .unwrap_err();
        assert_eq!(err.into_service_error().meta().code(), Some("NoSuchBucket"));
        let rolled = s3
            .list_objects_v2()
            .bucket("list")
            .delimiter("/")
            .send()
            .await
            .unwrap();
        let keys: Vec<&str> = rolled.contents().iter().filter_map(|o| o.key()).collect();
        let prefixes: Vec<&str> = rolled
            .common_prefixes()
            .iter()
            .filter_map(|p| p.prefix())
            .collect();
        assert_eq!((keys, prefixes), (vec!["a", "a0"], vec!["a/", "b/"]));
        let err = s3
            .list_objects_v2()
            .bucket("list")
            .encoding_type(aws_sdk_s3::types::EncodingType::Url)
            .send()
            .await
            .unwrap_err();
        assert_eq!(
            err.into_service_error().meta().code(),
            Some("NotImplemented")
        );
        drop(server);
    }

    #[test]
    fn preconditions_follow_s3() {
        let etag = |s: &str| ETagCondition::ETag(ETag::Strong(s.into()));
        let any = ETagCondition::Any;
        // (current, If-Match, If-None-Match, write allowed)
        let cases = [
            (None, None, None, true),
            (Some("a"), None, None, true),
            (None, None, Some(&any), true),
            (Some("a"), None, Some(&any), false),
            (Some("a"), Some(etag("a")), None, true),
            (Some("a"), Some(etag("z")), None, false),
            (None, Some(etag("a")), None, false),
            (None, Some(any.clone()), None, false),
            (Some("a"), Some(any.clone()), None, true),
        ];
        for (current, if_match, if_none_match, allowed) in cases {
            let got = super::write_allowed(current, if_match.as_ref(), if_none_match).is_ok();
            assert_eq!(got, allowed, "{current:?} {if_match:?} {if_none_match:?}");
        }
        assert!(super::read_allowed("a", Some(&etag("a")), None).is_ok());
        assert!(super::read_allowed("a", Some(&etag("z")), None).is_err());
        assert!(super::read_allowed("a", None, Some(&etag("a"))).is_err());
        assert!(super::read_allowed("a", None, Some(&etag("z"))).is_ok());
    }
}
