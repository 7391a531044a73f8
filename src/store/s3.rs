//! Amazon S3 through `aws-sdk-s3`: ranged, prefetched, resumable reads; multipart uploads with
//! concurrent parts and CRC-32C checksums; conditional manifest writes.
//!
//! The pipeline runs on a blocking thread; these adapters bridge to the async SDK with the
//! runtime's `Handle`. A GET's body is pulled by a task on the runtime into a bounded channel, so
//! network I/O overlaps with decoding; a dropped connection resumes with a ranged GET from the
//! last byte received.
//!
//! Uploads are sent with an unsigned payload (`UNSIGNED-PAYLOAD`): each carries a CRC-32C
//! checksum that S3 verifies before it stores the bytes, and the connection to S3 is TLS. A
//! signed payload would add a SHA-256 pass over every byte written, on top of the SHA-256 the
//! manifest already records: 15% of the CPU of a 1 GiB export (measured; see BENCHMARKS.md).

use super::requests::{CountRequests, Requests};
use std::future::Future;
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::create_multipart_upload::builders::CreateMultipartUploadFluentBuilder;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, ServerSideEncryption,
};
use bytes::Bytes;
use tokio::runtime::Handle;
use tokio::sync::{OnceCell, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tracing::{debug, error, warn};

use super::{
    Condition, ObjectInfo, ObjectSource, PartUpload, PartWriter, Pending, StoreError, Transient,
};
use crate::config::Sse;

/// Size of one multipart part unless the configuration needs larger ones
/// (`Limits::part_size`); objects smaller than a part are written with one PUT.
pub const PART_SIZE: usize = 8 << 20;
/// The user metadata that marks every object this adapter writes as an output of the fetcher
/// (`x-amz-meta-export-fetcher-output: part | manifest | delivery`): the loop guard checks it, so
/// an output is never processed as a Braze file, wherever it lies.
pub const OUTPUT_METADATA: &str = "export-fetcher-output";
/// The user metadata on a part naming the source version (ETag) it was written from.
pub const SOURCE_METADATA: &str = "export-fetcher-source";

/// What an output object is (the value of [`OUTPUT_METADATA`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    Part,
    Manifest,
    Delivery,
}

impl OutputKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OutputKind::Part => "part",
            OutputKind::Manifest => "manifest",
            OutputKind::Delivery => "delivery",
        }
    }
}
/// Uploads in flight at once per object, parts and single PUTs of small parts alike, across all
/// of its parts (bounds upload memory to about `(PARALLEL_PARTS + 1) × PART_SIZE`).
pub const PARALLEL_PARTS: usize = 2;
/// Chunks of a GET body buffered ahead of the decoder.
const PREFETCH_CHUNKS: usize = 16;
/// Attempts to resume one range after a dropped connection.
const READ_ATTEMPTS: u32 = 5;
/// A GET body that sends nothing for this long is treated as a dropped connection.
const CHUNK_TIMEOUT: Duration = Duration::from_secs(20);

/// The longest attempt of an S3 request with no body to speak of, whatever the deadline.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(20);
/// An upload's attempt may take `ATTEMPT_TIMEOUT` plus its bytes at this rate (a slow but
/// working connection is not cut).
const MIN_UPLOAD_BYTES_PER_SEC: u64 = 4 << 20;
/// One attempt of a cleanup request (an abort, the release of a delivery claim), made after the
/// work deadline; the SDK retries it within `CLEANUP_TIMEOUT`.
const CLEANUP_ATTEMPT: Duration = Duration::from_secs(4);
/// All attempts of one cleanup request.
pub const CLEANUP_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest any single wait of this adapter lasts: a request attempt (an upload's attempt
/// may add time for its bytes, but never outlasts the deadline), a stalled body, a cleanup
/// request. Work waits end at the work deadline anyway; the Lambda margin after it
/// (`handler::DEADLINE_MARGIN`) is longer than this, so that cleanup always fits.
pub const LONGEST_WAIT: Duration = {
    let mut longest = ATTEMPT_TIMEOUT;
    if CHUNK_TIMEOUT.as_millis() > longest.as_millis() {
        longest = CHUNK_TIMEOUT;
    }
    if CLEANUP_TIMEOUT.as_millis() > longest.as_millis() {
        longest = CLEANUP_TIMEOUT;
    }
    longest
};
/// Below this much time left no request is started: it could not finish.
const MIN_TIME_LEFT: Duration = Duration::from_millis(50);

/// How long the S3 requests of the current work may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// No deadline (the CLI, tests): each attempt is still capped.
    Unbounded,
    /// Work of an invocation: every request ends by this instant.
    Deadline(Instant),
    /// Cleanup after the work (aborts, releasing a claim): not bound by the work deadline, but
    /// by `CLEANUP_TIMEOUT`, which the Lambda margin leaves room for.
    Cleanup,
}

tokio::task_local! {
    /// The bound of the S3 requests made by the current task (see [`within_deadline`]).
    static BOUND: Bound;
}

/// Runs `work` with every S3 request it makes (directly, or through the sources and writers it
/// creates) ending by `deadline`: each attempt's timeout is the time left, at most
/// [`ATTEMPT_TIMEOUT`], and no request starts once it has passed.
pub async fn within_deadline<F: Future>(deadline: Option<Instant>, work: F) -> F::Output {
    let bound = deadline.map_or(Bound::Unbounded, Bound::Deadline);
    BOUND.scope(bound, work).await
}

/// Runs `work` (cleanup after the work deadline) with requests bound by [`CLEANUP_TIMEOUT`]
/// instead of the deadline.
pub async fn as_cleanup<F: Future>(work: F) -> F::Output {
    BOUND.scope(Bound::Cleanup, work).await
}

impl Bound {
    /// The bound of the current task.
    pub fn current() -> Bound {
        BOUND.try_with(|b| *b).unwrap_or(Bound::Unbounded)
    }

    /// The time left before the deadline (`None` without one).
    pub fn time_left(self) -> Option<Duration> {
        match self {
            Bound::Deadline(d) => Some(d.saturating_duration_since(Instant::now())),
            _ => None,
        }
    }

    /// `Err` when the deadline has passed: the work stops, retryably.
    pub fn check(self, what: &str) -> Result<(), StoreError> {
        match self.time_left() {
            Some(left) if left < MIN_TIME_LEFT => Err(StoreError::Transient(format!(
                "the invocation deadline is near: {what} was not started, so that the object is retried"
            ))),
            _ => Ok(()),
        }
    }

    /// Timeouts for one request with a body of `bytes`: an attempt at most the time left (and
    /// at most `ATTEMPT_TIMEOUT` plus the body at a slow rate), all attempts within the time
    /// left. `Err` when no time is left.
    pub fn timeouts(self, bytes: u64, what: &str) -> Result<TimeoutConfig, StoreError> {
        self.check(what)?;
        let attempt = ATTEMPT_TIMEOUT + Duration::from_secs(bytes / MIN_UPLOAD_BYTES_PER_SEC);
        let t = TimeoutConfig::builder();
        Ok(match self {
            Bound::Unbounded => t.operation_attempt_timeout(attempt).build(),
            Bound::Deadline(_) => {
                let left = self.time_left().unwrap_or_default();
                t.operation_attempt_timeout(attempt.min(left))
                    .operation_timeout(left)
                    .build()
            }
            Bound::Cleanup => t
                .operation_attempt_timeout(CLEANUP_ATTEMPT)
                .operation_timeout(CLEANUP_TIMEOUT)
                .build(),
        })
    }

    /// [`Bound::timeouts`] as a per-request configuration override.
    fn config(self, bytes: u64, what: &str) -> Result<aws_sdk_s3::config::Builder, StoreError> {
        Ok(aws_sdk_s3::config::Builder::new().timeout_config(self.timeouts(bytes, what)?))
    }

    /// How long a GET body may send nothing: `CHUNK_TIMEOUT`, or less when the deadline is nearer.
    fn chunk_timeout(self) -> Duration {
        self.time_left()
            .map_or(CHUNK_TIMEOUT, |left| left.min(CHUNK_TIMEOUT))
    }
}

/// The S3 adapter: built once per cold start, shared by every invocation.
#[derive(Clone)]
pub struct S3Store {
    client: Client,
    sse: Sse,
    requests: Requests,
}

impl S3Store {
    /// The store on `client`, counting the requests it sends ([`S3Store::requests`]).
    pub fn new(client: Client, sse: Sse) -> Self {
        let requests = Requests::default();
        let config = client
            .config()
            .to_builder()
            .interceptor(CountRequests(requests.clone()))
            .build();
        S3Store {
            client: Client::from_conf(config),
            sse,
            requests,
        }
    }

    /// The S3 requests this store has sent, by operation.
    pub fn requests(&self) -> &Requests {
        &self.requests
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// HEAD of the object; `NotFound` when it does not exist (any more), `Denied` naming
    /// `NoSuchBucket` when its bucket does not exist.
    pub async fn head(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<ObjectInfo, StoreError> {
        self.head_checked(bucket, key, version_id, true).await
    }

    /// [`S3Store::head`]; without `check_bucket`, a 404 is `NotFound` with no `HeadBucket` to
    /// tell a missing bucket apart (for keys whose absence is the common case: a new part).
    async fn head_checked(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        check_bucket: bool,
    ) -> Result<ObjectInfo, StoreError> {
        let head = self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .set_version_id(version_id.map(String::from))
            .customize()
            .config_override(Bound::current().config(0, "HeadObject")?)
            .send()
            .await
            .map_err(|e| classify(e, "HeadObject", bucket, key));
        let out = match head {
            Ok(out) => out,
            // A HEAD answer has no body, so no error code: a 404 may be the bucket's.
            Err(StoreError::NotFound(m)) if check_bucket => {
                return Err(self
                    .missing_bucket(bucket)
                    .await
                    .unwrap_or(StoreError::NotFound(m)));
            }
            Err(e) => return Err(e),
        };
        Ok(ObjectInfo {
            bucket: bucket.to_string(),
            key: key.to_string(),
            // `null`: an object written while versioning was off or suspended, overwritten in
            // place like an unversioned one.
            version_id: out.version_id().filter(|v| *v != "null").map(String::from),
            size: out.content_length().unwrap_or(0).max(0) as u64,
            etag: out.e_tag().map(|e| e.trim_matches('"').to_string()),
            output: out.metadata().and_then(|m| m.get(OUTPUT_METADATA)).cloned(),
            source_tag: out.metadata().and_then(|m| m.get(SOURCE_METADATA)).cloned(),
        })
    }

    /// The key's current object, as a HEAD gives it, from one ranged GET of its first
    /// [`WHOLE_OBJECT_BYTES`]: with the whole body when the object is no larger (a small object
    /// then costs one request, not a HEAD and the GETs of its reads). An empty object (which no
    /// range fits) falls back to a HEAD.
    pub async fn get_current(&self, bucket: &str, key: &str) -> Result<Fetched, StoreError> {
        let sent = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .range(format!("bytes=0-{}", WHOLE_OBJECT_BYTES - 1))
            .customize()
            .config_override(Bound::current().config(0, "GetObject")?)
            .send()
            .await;
        let out = match sent {
            Ok(out) => out,
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 416) => {
                return Ok(Fetched {
                    info: self.head(bucket, key, None).await?,
                    body: None,
                });
            }
            Err(e) => {
                // A request cut by the invocation deadline says so.
                Bound::current().check("reading the object")?;
                return Err(classify(e, "GetObject", bucket, key));
            }
        };
        // `bytes 0-N/TOTAL`: the object's size; without it the body is the whole object.
        let total = out
            .content_range()
            .and_then(|r| r.rsplit('/').next())
            .and_then(|t| t.parse::<u64>().ok());
        let info = ObjectInfo {
            bucket: bucket.to_string(),
            key: key.to_string(),
            version_id: out.version_id().filter(|v| *v != "null").map(String::from),
            size: total.unwrap_or(out.content_length().unwrap_or(0).max(0) as u64),
            etag: out.e_tag().map(|e| e.trim_matches('"').to_string()),
            output: out.metadata().and_then(|m| m.get(OUTPUT_METADATA)).cloned(),
            source_tag: out.metadata().and_then(|m| m.get(SOURCE_METADATA)).cloned(),
        };
        if info.size > WHOLE_OBJECT_BYTES {
            // Dropping the body closes the connection: what was not read is not transferred.
            return Ok(Fetched { info, body: None });
        }
        let body = tokio::time::timeout(Bound::current().chunk_timeout(), out.body.collect())
            .await
            .map_err(|_| StoreError::Transient(format!("reading {key}: timed out")))?
            .map_err(|e| StoreError::Transient(format!("reading {key}: {e}")))?
            .into_bytes();
        if body.len() as u64 != info.size {
            return Err(StoreError::Transient(format!(
                "reading {key}: {} bytes received of {}",
                body.len(),
                info.size
            )));
        }
        Ok(Fetched {
            info,
            body: Some(body),
        })
    }

    /// `NoSuchBucket` (as [`StoreError::Denied`]) when `HeadBucket` says the bucket does not
    /// exist; `None` when it does, or cannot say.
    async fn missing_bucket(&self, bucket: &str) -> Option<StoreError> {
        let answer = self
            .client
            .head_bucket()
            .bucket(bucket)
            .customize()
            .config_override(Bound::current().config(0, "HeadBucket").ok()?)
            .send()
            .await;
        let status = answer.err()?.raw_response().map(|r| r.status().as_u16());
        (status == Some(404)).then(|| no_such_bucket(bucket))
    }

    /// A blocking, range-readable view of the object for the pipeline.
    pub fn source(&self, info: &ObjectInfo, handle: Handle) -> S3Source {
        S3Source {
            client: self.client.clone(),
            handle,
            info: info.clone(),
            bound: Bound::current(),
            whole: std::sync::OnceLock::new(),
        }
    }

    /// A blocking writer into `bucket` for the pipeline, in parts of [`PART_SIZE`] (see
    /// [`S3Writer::with_part_size`]). Its requests keep the bound of the task that creates it.
    pub fn writer(&self, bucket: &str, handle: Handle) -> S3Writer {
        S3Writer {
            client: self.client.clone(),
            handle,
            bucket: bucket.to_string(),
            sse: self.sse.clone(),
            permits: Arc::new(Semaphore::new(PARALLEL_PARTS)),
            buffers: Arc::new(Mutex::new(Vec::new())),
            part_size: PART_SIZE,
            bound: Bound::current(),
            source_tag: None,
        }
    }

    /// The object's bytes and ETag, or `None` when it does not exist.
    pub async fn get_small(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<(Vec<u8>, String)>, StoreError> {
        let out = match self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .customize()
            .config_override(Bound::current().config(0, "GetObject")?)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                return match classify(e, "GetObject", bucket, key) {
                    StoreError::NotFound(_) => Ok(None),
                    other => Err(other),
                };
            }
        };
        let etag = out.e_tag().unwrap_or_default().to_string();
        let body = tokio::time::timeout(Bound::current().chunk_timeout(), out.body.collect())
            .await
            .map_err(|_| StoreError::Transient(format!("reading {key}: timed out")))?
            .map_err(|e| StoreError::Transient(format!("reading {key}: {e}")))?;
        Ok(Some((body.into_bytes().to_vec(), etag)))
    }

    /// Every object under `prefix` (all pages; ListObjectsV2), and with a `delimiter` the common
    /// prefixes one level below it. ETags without their quotes.
    pub async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
    ) -> Result<Listing, StoreError> {
        let mut listing = Listing::default();
        let mut token = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .set_delimiter(delimiter.map(String::from))
                .set_continuation_token(token.take())
                .customize()
                .config_override(Bound::current().config(0, "ListObjectsV2")?)
                .send()
                .await
                .map_err(|e| match classify(e, "ListObjectsV2", bucket, prefix) {
                    // A listing never misses a key: a 404 is the bucket's.
                    StoreError::NotFound(_) => no_such_bucket(bucket),
                    other => other,
                })?;
            for o in out.contents() {
                let Some(key) = o.key() else { continue };
                listing.objects.push(Listed {
                    key: key.to_string(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                    etag: o.e_tag().map(|e| e.trim_matches('"').to_string()),
                    last_modified: o.last_modified().map(|t| t.secs()),
                });
            }
            listing.prefixes.extend(
                out.common_prefixes()
                    .iter()
                    .filter_map(|p| p.prefix().map(String::from)),
            );
            token = out.next_continuation_token().map(String::from);
            if out.is_truncated() != Some(true) || token.is_none() {
                return Ok(listing);
            }
        }
    }

    /// Deletes an output object (never a source: the fetcher only deletes what it wrote, such
    /// as an export's open record once the export is closed). A key that is gone is fine.
    pub async fn delete(&self, bucket: &str, key: &str) -> Result<(), StoreError> {
        match self
            .client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .customize()
            .config_override(Bound::current().config(0, "DeleteObject")?)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match classify(e, "DeleteObject", bucket, key) {
                StoreError::NotFound(_) => Ok(()),
                other => Err(other),
            },
        }
    }

    /// A PUT of a small object with a CRC-32C checksum, SSE and an optional precondition,
    /// marked as a manifest ([`OUTPUT_METADATA`]).
    pub async fn put_small(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
        condition: Condition,
    ) -> Result<(), StoreError> {
        self.put_output(
            OutputKind::Manifest,
            bucket,
            key,
            body,
            content_type,
            condition,
        )
        .await
        .map(|_| ())
    }

    /// A PUT of a small output of `kind`, as [`S3Store::put_small`]; returns the new ETag
    /// (with its quotes, as `Condition::IfMatch` takes it).
    pub async fn put_output(
        &self,
        kind: OutputKind,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
        condition: Condition,
    ) -> Result<Option<String>, StoreError> {
        self.put_tagged(kind, bucket, key, body, content_type, condition, None)
            .await
    }

    /// [`S3Store::put_output`], naming the source version a part was written from.
    #[allow(clippy::too_many_arguments)]
    async fn put_tagged(
        &self,
        kind: OutputKind,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
        condition: Condition,
        source_tag: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        let timeouts = Bound::current().config(body.len() as u64, "PutObject")?;
        let mut req = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .metadata(OUTPUT_METADATA, kind.as_str());
        if let Some(tag) = source_tag {
            req = req.metadata(SOURCE_METADATA, tag);
        }
        let mut req = req
            .checksum_algorithm(ChecksumAlgorithm::Crc32C)
            .body(ByteStream::from(body));
        req = match condition {
            Condition::None => req,
            Condition::IfNoneMatch => req.if_none_match("*"),
            Condition::IfMatch(etag) => req.if_match(etag),
        };
        req = apply_sse_put(req, &self.sse);
        // Unsigned payload: the CRC-32C checksum (which S3 verifies) and TLS protect the body;
        // a signed payload would hash every byte once more with SHA-256 (see the module docs).
        req.customize()
            .disable_payload_signing()
            .config_override(timeouts)
            .send()
            .await
            .map(|out| out.e_tag().map(String::from))
            .map_err(|e| classify(e, "PutObject", bucket, key))
    }
}

fn apply_sse_put(
    req: aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder,
    sse: &Sse,
) -> aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder {
    match sse {
        Sse::None => req,
        Sse::Aes256 => req.server_side_encryption(ServerSideEncryption::Aes256),
        Sse::Kms { key_id } => req
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .set_ssekms_key_id(key_id.clone()),
    }
}

/// Maps an SDK error to what the pipeline needs to know: missing, precondition, or transient.
fn classify<E: ProvideErrorMetadata + std::fmt::Debug>(
    err: SdkError<E>,
    op: &str,
    bucket: &str,
    key: &str,
) -> StoreError {
    let status = err.raw_response().map(|r| r.status().as_u16());
    let code = err
        .as_service_error()
        .and_then(|e| e.code())
        .map(String::from);
    let message = format!(
        "{op} {key:?} failed: {}",
        code.clone()
            .or_else(|| status.map(|s| format!("HTTP {s}")))
            .unwrap_or_else(|| aws_smithy_error_display(&err))
    );
    match (code.as_deref(), status) {
        (Some("NoSuchBucket"), _) => no_such_bucket(bucket),
        (Some("NoSuchKey") | Some("NotFound"), _) | (_, Some(404)) => StoreError::NotFound(
            format!("NoSuchKey: {key:?} does not exist (Braze may have removed the export)"),
        ),
        (Some("PreconditionFailed"), _) | (_, Some(412)) => StoreError::PreconditionFailed,
        _ if is_denial(code.as_deref(), status) => StoreError::Denied(format!(
            "{message} (access denied or KMS key unusable: check the function's IAM and KMS \
             permissions; retried)"
        )),
        _ => StoreError::Transient(message),
    }
}

/// A bucket that does not exist: the environment (a wrong bucket name or `OUTPUT_BUCKET`, a
/// deleted bucket), never a removed export. Like access denied, it writes no manifest and is
/// retried, so the notification ends in the DLQ, redrivable once the bucket is there.
fn no_such_bucket(bucket: &str) -> StoreError {
    StoreError::Denied(format!(
        "NoSuchBucket: the bucket {bucket:?} does not exist (check the bucket name and \
         OUTPUT_BUCKET; retried)"
    ))
}

/// Access denied (403) or a KMS error (`KMS.*`, as S3 reports a key that is disabled, missing
/// or not granted): the environment, never the object.
fn is_denial(code: Option<&str>, status: Option<u16>) -> bool {
    status == Some(403) || code.is_some_and(|c| c == "AccessDenied" || c.starts_with("KMS."))
}

fn aws_smithy_error_display<E: std::fmt::Debug>(err: &SdkError<E>) -> String {
    match err {
        SdkError::DispatchFailure(e) => format!("dispatch failure: {e:?}"),
        SdkError::TimeoutError(_) => "timeout".to_string(),
        SdkError::ResponseError(_) => "unreadable response".to_string(),
        other => format!("{other:?}").chars().take(300).collect(),
    }
}

/// What [`S3Store::list`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    pub objects: Vec<Listed>,
    /// With a delimiter: the common prefixes (each ends with the delimiter).
    pub prefixes: Vec<String>,
}

/// One object of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub size: u64,
    /// Without quotes.
    pub etag: Option<String>,
    /// Unix seconds.
    pub last_modified: Option<i64>,
}

/// Objects no larger than this are read whole, once, and their ranges served from memory (the
/// magic bytes, the zip tail and the stream then cost one GET, not three).
pub const WHOLE_OBJECT_BYTES: u64 = 1 << 20;

/// What [`S3Store::get_current`] found.
pub struct Fetched {
    pub info: ObjectInfo,
    /// The whole object, when it is no larger than [`WHOLE_OBJECT_BYTES`].
    pub body: Option<Bytes>,
}

/// The object being processed, read by ranges from a blocking thread.
pub struct S3Source {
    client: Client,
    handle: Handle,
    info: ObjectInfo,
    bound: Bound,
    /// A small object's bytes, read once.
    whole: std::sync::OnceLock<Bytes>,
}

impl S3Source {
    /// The same source with the object's bytes already read (see [`S3Store::get_current`]).
    pub fn with_body(self, body: Option<Bytes>) -> S3Source {
        if let Some(body) = body.filter(|b| b.len() as u64 == self.info.size) {
            let _ = self.whole.set(body);
        }
        self
    }

    fn streamed(&self, start: u64, end: u64) -> RangeReader<'_> {
        RangeReader {
            source: self,
            pos: start,
            end,
            rx: None,
            chunk: Bytes::new(),
            failures: 0,
        }
    }

    /// A small object's bytes: read whole on first use, with one (pinned, resumable) GET.
    fn whole(&self) -> io::Result<Option<&Bytes>> {
        if self.info.size > WHOLE_OBJECT_BYTES {
            return Ok(None);
        }
        if let Some(b) = self.whole.get() {
            return Ok(Some(b));
        }
        let mut buf = Vec::with_capacity(self.info.size as usize);
        self.streamed(0, self.info.size).read_to_end(&mut buf)?;
        let _ = self.whole.set(Bytes::from(buf));
        Ok(self.whole.get())
    }
}

impl ObjectSource for S3Source {
    fn size(&self) -> u64 {
        self.info.size
    }

    fn read_range(&self, start: u64, end: u64) -> io::Result<Box<dyn Read + Send + '_>> {
        if let Some(whole) = self.whole()? {
            let end = (end.min(whole.len() as u64)) as usize;
            let start = (start as usize).min(end);
            return Ok(Box::new(io::Cursor::new(whole.slice(start..end))));
        }
        Ok(Box::new(RangeReader {
            source: self,
            pos: start,
            end,
            rx: None,
            chunk: Bytes::new(),
            failures: 0,
        }))
    }
}

type Chunk = Result<Bytes, StoreError>;

/// A streaming ranged GET that resumes from its last byte when the connection drops.
struct RangeReader<'a> {
    source: &'a S3Source,
    pos: u64,
    end: u64,
    rx: Option<mpsc::Receiver<Chunk>>,
    chunk: Bytes,
    failures: u32,
}

impl RangeReader<'_> {
    fn open(&mut self) -> Result<(), StoreError> {
        let (tx, rx) = mpsc::channel(PREFETCH_CHUNKS);
        let s = self.source;
        let bound = s.bound;
        let timeouts = bound.config(0, "GetObject")?;
        let req = s
            .client
            .get_object()
            .bucket(&s.info.bucket)
            .key(&s.info.key)
            .set_version_id(s.info.version_id.clone())
            .set_if_match(s.info.etag.as_ref().map(|e| format!("\"{e}\"")))
            .range(format!("bytes={}-{}", self.pos, self.end - 1))
            .customize()
            .config_override(timeouts);
        let (bucket, key) = (s.info.bucket.clone(), s.info.key.clone());
        s.handle.spawn(async move {
            let mut out = match req.send().await {
                Ok(out) => out,
                Err(e) => {
                    let _ = tx.send(Err(classify(e, "GetObject", &bucket, &key))).await;
                    return;
                }
            };
            loop {
                let wait = bound.chunk_timeout();
                let next = tokio::time::timeout(wait, out.body.next()).await;
                let Ok(next) = next else {
                    let _ = tx
                        .send(Err(StoreError::Transient(format!(
                            "reading {key:?} stalled for {wait:?}"
                        ))))
                        .await;
                    return;
                };
                match next {
                    None => return,
                    Some(Ok(bytes)) => {
                        if tx.send(Ok(bytes)).await.is_err() {
                            return; // the reader went away (seek or stop): drop the connection
                        }
                    }
                    Some(Err(e)) => {
                        let _ = tx
                            .send(Err(StoreError::Transient(format!(
                                "reading {key:?} was interrupted: {e}"
                            ))))
                            .await;
                        return;
                    }
                }
            }
        });
        self.rx = Some(rx);
        Ok(())
    }
}

impl Read for RangeReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if !self.chunk.is_empty() {
                let n = self.chunk.len().min(buf.len());
                buf[..n].copy_from_slice(&self.chunk[..n]);
                let _ = self.chunk.split_to(n);
                self.pos += n as u64;
                return Ok(n);
            }
            if self.pos >= self.end || buf.is_empty() {
                return Ok(0);
            }
            if self.rx.is_none() {
                self.open().map_err(StoreError::into_io)?;
            }
            let next = self.rx.as_mut().expect("opened").blocking_recv();
            let failure = match next {
                Some(Ok(bytes)) => {
                    let room = (self.end - self.pos) as usize;
                    self.chunk = if bytes.len() > room {
                        bytes.slice(..room)
                    } else {
                        bytes
                    };
                    continue;
                }
                Some(Err(StoreError::Transient(m))) => m,
                Some(Err(StoreError::NotFound(m))) => {
                    return Err(io::Error::new(io::ErrorKind::NotFound, m));
                }
                Some(Err(StoreError::PreconditionFailed)) => {
                    return Err(io::Error::other(Transient(
                        "the object changed while it was being read".to_string(),
                    )));
                }
                Some(Err(e @ StoreError::Denied(_))) => return Err(e.into_io()),
                None => format!("the connection ended at byte {} of {}", self.pos, self.end),
            };
            self.rx = None;
            self.failures += 1;
            if self.failures > READ_ATTEMPTS {
                return Err(io::Error::other(Transient(format!(
                    "giving up after {READ_ATTEMPTS} resumed reads: {failure}"
                ))));
            }
            // No resumption past the deadline: the object is retried by the next invocation.
            if self.source.bound.check("resuming a read").is_err() {
                return Err(io::Error::other(Transient(format!(
                    "the invocation deadline is near, not resuming: {failure}"
                ))));
            }
            warn!(
                key = %crate::sanitize_for_log(&self.source.info.key),
                offset = self.pos,
                attempt = self.failures,
                error = %failure,
                "resuming read"
            );
            let backoff = Duration::from_millis(100 << self.failures.min(5));
            std::thread::sleep(
                self.source
                    .bound
                    .time_left()
                    .map_or(backoff, |l| l.min(backoff)),
            );
        }
    }
}

/// Writes parts into one bucket from a blocking thread. A part's upload completes in the
/// background once its last bytes are handed over ([`PartUpload::finish`] returns a
/// [`Pending`]), so the next part is decoded meanwhile; the uploads of all parts share
/// `PARALLEL_PARTS` slots, which bounds the memory they hold.
pub struct S3Writer {
    client: Client,
    handle: Handle,
    bucket: String,
    sse: Sse,
    permits: Arc<Semaphore>,
    /// Part buffers back from finished uploads, reused for the next parts: a fresh 8 MiB
    /// allocation per part leaves the allocator holding freed ones (peak RSS of a 1 GiB zip on
    /// the S3 path varied from 68 to 98 MiB with it).
    buffers: Arc<Mutex<Vec<Vec<u8>>>>,
    /// Bytes per multipart part.
    part_size: usize,
    /// The bound of every request, taken from the task that created the writer.
    bound: Bound,
    /// The source version (ETag) parts are written from, for an unversioned source: parts are
    /// then written only over what their key held when the upload started (see
    /// [`S3Writer::with_source_tag`]).
    source_tag: Option<String>,
}

impl PartWriter for S3Writer {
    fn bucket(&self) -> &str {
        &self.bucket
    }

    fn create(&self, key: &str) -> io::Result<Box<dyn PartUpload + '_>> {
        // What the key holds now, looked up while the part is decoded: the condition of its
        // completion.
        let prior = self.source_tag.as_ref().map(|_| {
            let store = S3Store::new(self.client.clone(), self.sse.clone());
            let (bucket, key) = (self.bucket.clone(), key.to_string());
            self.handle.spawn(BOUND.scope(self.bound, async move {
                prior_condition(&store, &bucket, &key).await
            }))
        });
        Ok(Box::new(S3Upload {
            writer: self,
            prior,
            key: key.to_string(),
            buf: Vec::new(),
            upload: None,
            next_part: 1,
            in_flight: Vec::new(),
            completed: Vec::new(),
        }))
    }

    fn put(&self, key: &str, body: &[u8]) -> io::Result<()> {
        let store = S3Store::new(self.client.clone(), self.sse.clone());
        self.handle
            .block_on(BOUND.scope(
                self.bound,
                store.put_small(
                    &self.bucket,
                    key,
                    body.to_vec(),
                    "application/octet-stream",
                    Condition::None,
                ),
            ))
            .map_err(StoreError::into_io)
    }
}

impl S3Writer {
    /// The same writer with parts of `part_size` bytes (at least [`PART_SIZE`]): large enough
    /// that the largest output fits in S3's 10,000 parts (`Limits::part_size`).
    pub fn with_part_size(mut self, part_size: usize) -> S3Writer {
        self.part_size = part_size.max(PART_SIZE);
        self
    }

    /// The same writer for parts of the unversioned source version `etag`. Every part is
    /// written on the condition that its key still holds what it held when the part's upload
    /// started (`If-Match`, or `If-None-Match: *`), and carries `export-fetcher-source: <etag>`.
    /// A part that another run wrote meanwhile is kept when it comes from the same source
    /// version (the same bytes); from another version, this upload fails retryably and leaves
    /// that part alone: a late run of old bytes never overwrites the part of newer ones.
    pub fn with_source_tag(mut self, etag: &str) -> S3Writer {
        self.source_tag = Some(etag.to_string());
        self
    }

    /// An empty part buffer: a reused one when there is one.
    fn buffer(&self, or_capacity: usize) -> Vec<u8> {
        let reused = self.buffers.lock().ok().and_then(|mut b| b.pop());
        reused.unwrap_or_else(|| Vec::with_capacity(or_capacity))
    }

    /// One of the object's upload slots; blocks while all are taken.
    fn slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, StoreError> {
        self.handle
            .block_on(self.permits.clone().acquire_owned())
            .map_err(|_| StoreError::Transient("upload slots closed".into()))
    }
}

/// A background completion as the pipeline waits for it.
fn pending(handle: Handle, task: JoinHandle<Result<(), StoreError>>) -> Pending {
    Pending::later(move || {
        handle
            .block_on(task)
            .map_err(|e| io::Error::other(Transient(format!("upload stopped: {e}"))))?
            .map_err(StoreError::into_io)
    })
}

/// Aborts a multipart upload that will not be completed, so that its parts are not kept (and
/// billed) on a bucket without a lifecycle rule. Runs after the work deadline too: bound by
/// [`CLEANUP_TIMEOUT`], retried by the SDK within it.
async fn abort_upload(client: &Client, bucket: &str, key: &str, upload_id: &str) {
    let Ok(timeouts) = Bound::Cleanup.config(0, "AbortMultipartUpload") else {
        return;
    };
    let req = client
        .abort_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .customize()
        .config_override(timeouts);
    match req.send().await {
        Ok(_) => debug!(key = %crate::sanitize_for_log(key), "multipart upload aborted"),
        Err(e) => match classify(e, "AbortMultipartUpload", bucket, key) {
            // Already gone (aborted or completed by an earlier attempt).
            StoreError::NotFound(_) => {}
            e => error!(
                key = %crate::sanitize_for_log(key),
                upload_id,
                error = %e,
                "abort of multipart upload failed: its parts stay until a lifecycle rule or a retry removes them"
            ),
        },
    }
}

/// Aborts the open multipart uploads of `key` but `except`: those S3 started for a
/// CreateMultipartUpload whose answer never came (their id is known only by listing), and those
/// an invocation killed mid-upload left. An upload of a concurrent duplicate is aborted too: it
/// fails retryably, and its retry finds the output written here.
async fn abort_open_uploads(client: &Client, bucket: &str, key: &str, except: Option<&str>) {
    let Ok(timeouts) = Bound::Cleanup.config(0, "ListMultipartUploads") else {
        return;
    };
    let listed = client
        .list_multipart_uploads()
        .bucket(bucket)
        .prefix(key)
        .customize()
        .config_override(timeouts)
        .send()
        .await;
    let uploads = match listed {
        Ok(out) => out.uploads.unwrap_or_default(),
        Err(e) => {
            let e = classify(e, "ListMultipartUploads", bucket, key);
            error!(key = %crate::sanitize_for_log(key), error = %e, "cannot list the multipart uploads left open");
            return;
        }
    };
    for upload in uploads {
        if upload.key() == Some(key)
            && let Some(id) = upload.upload_id()
            && Some(id) != except
        {
            warn!(key = %crate::sanitize_for_log(key), upload_id = id, "aborting a multipart upload left open");
            abort_upload(client, bucket, key, id).await;
        }
    }
}

/// The id of a multipart upload, created by whichever of its requests needs it first (the first
/// part's upload, on the runtime, so the pipeline does not wait for it) and shared by the others;
/// a failed creation is shared too, so that it is made once.
#[derive(Clone)]
struct UploadId {
    cell: Arc<OnceCell<Result<String, StoreError>>>,
    create: CreateMultipartUploadFluentBuilder,
    client: Client,
    bucket: String,
    key: String,
    bound: Bound,
}

impl UploadId {
    async fn get(&self) -> Result<String, StoreError> {
        self.cell
            .get_or_init(|| async {
                let timeouts = self.bound.config(0, "CreateMultipartUpload")?;
                let out = match self
                    .create
                    .clone()
                    .customize()
                    .config_override(timeouts)
                    .send()
                    .await
                {
                    Ok(out) => out,
                    Err(e) => {
                        let e = classify(e, "CreateMultipartUpload", &self.bucket, &self.key);
                        if !matches!(e, StoreError::Denied(_) | StoreError::NotFound(_)) {
                            // S3 may have created it with the answer lost (a timeout): the id
                            // is unknown, so the upload is found by listing.
                            abort_open_uploads(&self.client, &self.bucket, &self.key, None).await;
                        }
                        return Err(e);
                    }
                };
                out.upload_id().map(String::from).ok_or_else(|| {
                    StoreError::Transient("CreateMultipartUpload returned no id".into())
                })
            })
            .await
            .clone()
    }
}

struct S3Upload<'a> {
    writer: &'a S3Writer,
    /// The condition the part is written on (with a source tag), looked up in the background.
    prior: Option<JoinHandle<Result<Condition, StoreError>>>,
    key: String,
    buf: Vec<u8>,
    /// Set once the first part ships; taken by `finish` (or the abort).
    upload: Option<UploadId>,
    next_part: i32,
    in_flight: Vec<JoinHandle<Result<CompletedPart, StoreError>>>,
    completed: Vec<CompletedPart>,
}

/// The condition on which a part of `key` may be written: over the object the key holds now,
/// or where there is none.
async fn prior_condition(
    store: &S3Store,
    bucket: &str,
    key: &str,
) -> Result<Condition, StoreError> {
    match store.head_checked(bucket, key, None, false).await {
        Ok(info) => Ok(Condition::IfMatch(format!(
            "\"{}\"",
            info.etag.unwrap_or_default()
        ))),
        Err(StoreError::NotFound(_)) => Ok(Condition::IfNoneMatch),
        Err(e) => Err(e),
    }
}

/// The condition a part's completion waits for (`None` without a source tag).
async fn await_prior(
    prior: Option<JoinHandle<Result<Condition, StoreError>>>,
) -> Result<Condition, StoreError> {
    match prior {
        None => Ok(Condition::None),
        Some(task) => task
            .await
            .map_err(|e| StoreError::Transient(format!("part lookup stopped: {e}")))?,
    }
}

/// After a conditional part write lost (`412`): the part another run wrote meanwhile stands. It
/// holds the same bytes when it comes from the same source version (`Ok`); from another one
/// this run is stale or lost a race, and fails retryably.
async fn after_lost_part_race(
    store: &S3Store,
    bucket: &str,
    key: &str,
    tag: Option<&str>,
) -> Result<(), StoreError> {
    let theirs = store.head(bucket, key, None).await?;
    if tag.is_some() && theirs.source_tag.as_deref() == tag {
        return Ok(());
    }
    Err(StoreError::Transient(format!(
        "part {key:?} was written meanwhile from another version of the source ({:?}): left \
         as it is",
        theirs.source_tag.as_deref().unwrap_or("unknown")
    )))
}

/// The id of a new multipart upload of `key`, created in the background by the first part that
/// needs it.
fn start_multipart(w: &S3Writer, key: &str) -> UploadId {
    let mut req = w
        .client
        .create_multipart_upload()
        .bucket(&w.bucket)
        .key(key)
        .metadata(OUTPUT_METADATA, OutputKind::Part.as_str())
        .checksum_algorithm(ChecksumAlgorithm::Crc32C);
    if let Some(tag) = &w.source_tag {
        req = req.metadata(SOURCE_METADATA, tag);
    }
    req = match &w.sse {
        Sse::None => req,
        Sse::Aes256 => req.server_side_encryption(ServerSideEncryption::Aes256),
        Sse::Kms { key_id } => req
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .set_ssekms_key_id(key_id.clone()),
    };
    UploadId {
        cell: Arc::new(OnceCell::new()),
        create: req,
        client: w.client.clone(),
        bucket: w.bucket.clone(),
        key: key.to_string(),
        bound: w.bound,
    }
}

impl S3Upload<'_> {
    /// Hands the buffer to a concurrent part upload; blocks while `PARALLEL_PARTS` are in flight.
    fn ship_part(&mut self) -> Result<(), StoreError> {
        let w = self.writer;
        let upload = self
            .upload
            .get_or_insert_with(|| start_multipart(w, &self.key))
            .clone();
        let permit = w.slot()?;
        let body = Bytes::from(std::mem::replace(&mut self.buf, w.buffer(w.part_size)));
        let bytes = body.len() as u64;
        let bound = w.bound;
        let returned = (body.clone(), w.buffers.clone());
        let number = self.next_part;
        self.next_part += 1;
        let req = w
            .client
            .upload_part()
            .bucket(&w.bucket)
            .key(&self.key)
            .part_number(number)
            .checksum_algorithm(ChecksumAlgorithm::Crc32C)
            .body(ByteStream::from(body));
        let (bucket, key) = (w.bucket.clone(), self.key.clone());
        self.in_flight.push(w.handle.spawn(async move {
            let out = match (upload.get().await, bound.config(bytes, "UploadPart")) {
                // Unsigned payload, as for `put_small` (see the module docs).
                (Ok(upload_id), Ok(timeouts)) => req
                    .upload_id(upload_id)
                    .customize()
                    .disable_payload_signing()
                    .config_override(timeouts)
                    .send()
                    .await
                    .map_err(|e| classify(e, "UploadPart", &bucket, &key)),
                (Err(e), _) | (_, Err(e)) => Err(e),
            };
            // The request is over, so ours is the last reference to the body: take the buffer
            // back before the slot is freed, for the part that will take the slot.
            let (body, buffers) = returned;
            if let (Ok(body), Ok(mut buffers)) = (body.try_into_mut(), buffers.lock())
                && buffers.len() < PARALLEL_PARTS + 1
            {
                let mut buf = Vec::from(body);
                buf.clear();
                buffers.push(buf);
            }
            drop(permit);
            let out = out?;
            Ok(CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag().map(String::from))
                .set_checksum_crc32_c(out.checksum_crc32_c().map(String::from))
                .build())
        }));
        // Surface failures early rather than at the end.
        if let Some(done) = self.in_flight.iter().position(|h| h.is_finished()) {
            let handle = self.in_flight.swap_remove(done);
            let part = w
                .handle
                .block_on(handle)
                .map_err(|e| StoreError::Transient(format!("part upload stopped: {e}")))??;
            self.completed.push(part);
        }
        Ok(())
    }

    /// Starts the completion in the background: the single PUT of a small part, or the wait
    /// for the last parts and CompleteMultipartUpload (which aborts the upload if it fails).
    fn finish_inner(&mut self) -> Result<Pending, StoreError> {
        let w = self.writer;
        let (client, bucket, key) = (w.client.clone(), w.bucket.clone(), self.key.clone());
        if self.upload.is_none() {
            let body = std::mem::take(&mut self.buf);
            let permit = w.slot()?;
            let store = S3Store::new(client, w.sse.clone());
            let bound = w.bound;
            let prior = self.prior.take();
            let tag = w.source_tag.clone();
            let task = w.handle.spawn(async move {
                let put = async {
                    let condition = await_prior(prior).await?;
                    let put = store.put_tagged(
                        OutputKind::Part,
                        &bucket,
                        &key,
                        body,
                        "application/octet-stream",
                        condition,
                        tag.as_deref(),
                    );
                    match put.await {
                        Err(StoreError::PreconditionFailed) => {
                            after_lost_part_race(&store, &bucket, &key, tag.as_deref()).await
                        }
                        other => other.map(|_| ()),
                    }
                };
                let result = BOUND.scope(bound, put).await;
                drop(permit);
                result
            });
            return Ok(pending(w.handle.clone(), task));
        }
        if !self.buf.is_empty() {
            self.ship_part()?;
        }
        let mut parts = std::mem::take(&mut self.completed);
        let in_flight = std::mem::take(&mut self.in_flight);
        let number_of_parts = self.next_part - 1;
        // From here on the task owns the upload: it completes it or aborts it.
        let upload = self.upload.take().expect("multipart started");
        let bound = w.bound;
        let prior = self.prior.take();
        let tag = w.source_tag.clone();
        let store = S3Store::new(client.clone(), w.sse.clone());
        let task = w.handle.spawn(async move {
            let result = async {
                let condition = await_prior(prior).await?;
                for handle in in_flight {
                    let part = handle
                        .await
                        .map_err(|e| StoreError::Transient(format!("part upload stopped: {e}")))??;
                    parts.push(part);
                }
                parts.sort_by_key(|p| p.part_number());
                let upload_id = upload.get().await?;
                let (if_match, if_none_match) = match condition {
                    Condition::None => (None, None),
                    Condition::IfNoneMatch => (None, Some("*".to_string())),
                    Condition::IfMatch(etag) => (Some(etag), None),
                };
                client
                    .complete_multipart_upload()
                    .bucket(&bucket)
                    .key(&key)
                    .upload_id(upload_id)
                    .set_if_match(if_match)
                    .set_if_none_match(if_none_match)
                    .multipart_upload(
                        CompletedMultipartUpload::builder()
                            .set_parts(Some(parts))
                            .build(),
                    )
                    .customize()
                    .config_override(bound.config(0, "CompleteMultipartUpload")?)
                    .send()
                    .await
                    .map_err(|e| classify(e, "CompleteMultipartUpload", &bucket, &key))
            }
            .await;
            match &result {
                Ok(_) => {
                    debug!(key = %crate::sanitize_for_log(&key), parts = number_of_parts, "multipart upload complete");
                    // Uploads of this key left by an earlier, killed attempt.
                    if let Some(Ok(upload_id)) = upload.cell.get() {
                        abort_open_uploads(&client, &bucket, &key, Some(upload_id)).await;
                    }
                }
                Err(_) => {
                    if let Some(Ok(upload_id)) = upload.cell.get() {
                        abort_upload(&client, &bucket, &key, upload_id).await;
                    }
                }
            }
            match result {
                Err(StoreError::PreconditionFailed) => {
                    after_lost_part_race(&store, &bucket, &key, tag.as_deref()).await
                }
                other => other.map(|_| ()),
            }
        });
        Ok(pending(w.handle.clone(), task))
    }

    fn abort_inner(&mut self) {
        let w = self.writer;
        if let Some(prior) = self.prior.take() {
            prior.abort();
        }
        // The id first (a creation under way finishes), so that the upload can be aborted.
        let upload_id = self
            .upload
            .take()
            .and_then(|upload| w.handle.block_on(upload.get()).ok());
        for handle in self.in_flight.drain(..) {
            handle.abort();
        }
        if let Some(upload_id) = upload_id {
            w.handle
                .block_on(abort_upload(&w.client, &w.bucket, &self.key, &upload_id));
        }
    }
}

impl Write for S3Upload<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let part_size = self.writer.part_size;
        let room = part_size - self.buf.len();
        let n = data.len().min(room);
        if self.buf.capacity() == 0 {
            self.buf = self.writer.buffer(part_size.min(1 << 20));
        }
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == part_size {
            self.ship_part().map_err(StoreError::into_io)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl PartUpload for S3Upload<'_> {
    fn finish(mut self: Box<Self>) -> io::Result<Pending> {
        let result = self.finish_inner();
        if result.is_err() {
            self.abort_inner();
        }
        result.map_err(StoreError::into_io)
    }

    fn abort(mut self: Box<Self>) {
        self.abort_inner();
    }
}

impl Drop for S3Upload<'_> {
    fn drop(&mut self) {
        if self.upload.is_some() {
            self.abort_inner();
        }
    }
}
