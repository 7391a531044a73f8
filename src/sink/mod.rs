//! Downstream systems the manifest is forwarded to, one module per sink. Each sink only sends;
//! which sinks still need a message, and the delivery records that make forwarding exactly-once
//! per object version, live in `pipeline`.

pub mod eventbridge;
pub mod sns;
pub mod sqs;
pub mod webhook;

use std::time::Instant;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::manifest::{Manifest, Status};

/// SNS, SQS and EventBridge refuse messages over 256 KiB; above this many bytes of body a
/// pointer message is sent instead (leaving room for attributes and the envelope).
pub const MAX_INLINE_BYTES: usize = 240 * 1024;

/// Why a sink did not accept a message.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{sink}: {message}")]
pub struct SinkError {
    pub sink: &'static str,
    pub message: String,
}

impl SinkError {
    /// An AWS SDK call's error, as its service code and message where it has them.
    pub(crate) fn sdk<E: std::fmt::Debug + aws_sdk_s3::error::ProvideErrorMetadata>(
        sink: &'static str,
        e: &aws_sdk_s3::error::SdkError<E>,
    ) -> SinkError {
        SinkError {
            sink,
            message: sdk_error(e),
        }
    }
}

/// The message attributes and FIFO ids of an SNS `Publish` or SQS `SendMessage` request `$req`
/// for `$msg` sent to `$target`: the two services take them alike, through builders of their own
/// types (`$value`: the service's `MessageAttributeValue`).
macro_rules! with_attributes_and_fifo_ids {
    ($req:expr, $value:ty, $msg:expr, $target:expr) => {{
        let attributes = $msg.attributes.iter().map(|(name, value)| {
            let built = <$value>::builder().data_type("String");
            let built = built.string_value(value).build().expect("typed");
            (name.to_string(), built)
        });
        let (group, dedup) = $msg.fifo_ids($target);
        $req.set_message_attributes(Some(attributes.collect()))
            .set_message_group_id(group)
            .set_message_deduplication_id(dedup)
    }};
}
pub(crate) use with_attributes_and_fifo_ids;

/// What a forwarded message announces: its `message_type` attribute (SNS, SQS), its
/// EventBridge detail-type and the webhook's `X-Export-Fetcher-Message-Type` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    /// A per-object manifest (`manifest_version` 1).
    Object,
    /// An API export closed: an export manifest (`export_manifest_version` 1).
    Export,
    /// A Currents hour closed: a partition manifest.
    Partition,
}

impl MessageType {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Object => "object",
            MessageType::Export => "export",
            MessageType::Partition => "partition",
        }
    }
}

/// EventBridge detail-types, one per message type (and two for objects).
pub const DETAIL_TYPE_INDEXED: &str = "Braze Export Indexed";
pub const DETAIL_TYPE_FAILED: &str = "Braze Export Failed";
pub const DETAIL_TYPE_EXPORT_CLOSED: &str = "Braze API Export Closed";
pub const DETAIL_TYPE_PARTITION_CLOSED: &str = "Braze Currents Partition Closed";

/// What is sent for one manifest, the same for every sink.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// What the message is: `message_type` attribute and EventBridge detail-type.
    pub message_type: MessageType,
    /// The EventBridge detail-type.
    pub detail_type: &'static str,
    /// The deterministic id of (bucket, key, version or ETag): `Idempotency-Key`, FIFO
    /// deduplication id.
    pub idempotency_key: String,
    /// FIFO message group: the source key (or its SHA-256 when SQS/SNS would refuse it).
    pub group_id: String,
    /// The manifest JSON.
    pub full: String,
    /// The manifest JSON, or a pointer to the manifest object when it is too large.
    pub body: String,
    pub is_pointer: bool,
    /// `message_type`, `kind`, `status`, and `segment_id` / `event_type` where known: for
    /// subscription filters.
    pub attributes: Vec<(&'static str, String)>,
    pub status: Status,
    /// When `body` carries the manifest, `detail` is the manifest as a JSON value.
    pub detail: Value,
    pub deadline: Option<Instant>,
}

impl Outgoing {
    /// The FIFO message group and deduplication ids for an SNS topic or SQS queue named
    /// `target` (`None` for a standard one).
    pub fn fifo_ids(&self, target: &str) -> (Option<String>, Option<String>) {
        if target.ends_with(".fifo") {
            (
                Some(self.group_id.clone()),
                Some(self.idempotency_key.clone()),
            )
        } else {
            (None, None)
        }
    }
}

/// The deterministic id of an object version's result: SHA-256 of bucket, key and version (or
/// ETag). A `failed` manifest whose cause a redelivery processes again (`environment`,
/// `missing`) is provisional: its id also covers the cause, so that the manifest which later
/// replaces it for the same version is not dropped by a receiver that deduplicates on the id.
pub fn idempotency_key(manifest: &Manifest) -> String {
    let s = &manifest.source;
    let version = s.version_id.as_deref().or(s.etag.as_deref()).unwrap_or("");
    let mut h = Sha256::new();
    for field in [s.bucket.as_str(), s.key.as_str(), version] {
        h.update(field.as_bytes());
        h.update([0u8]);
    }
    // A reprocessed version is forwarded again, once per generation; the first keeps the key
    // it always had.
    if manifest.generation > 1 {
        h.update(b"generation:");
        h.update(manifest.generation.to_string().as_bytes());
        h.update([0u8]);
    }
    if let Some(failure) = manifest
        .failure
        .filter(|f| f.cause.reprocess_on_redelivery())
    {
        h.update(b"provisional:");
        h.update(failure.cause.as_str().as_bytes());
        h.update([0u8]);
    }
    format!("{:x}", h.finalize())
}

/// The FIFO message group id for a key: the key itself when SQS/SNS accept it (at most 128
/// characters of `a-zA-Z0-9` and punctuation), else `sha256:` and its hash.
pub fn group_id(key: &str) -> String {
    let ok = key.len() <= 128 && key.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        key.to_string()
    } else {
        format!("sha256-{:x}", Sha256::digest(key.as_bytes()))
    }
}

/// Builds what every sink sends for `manifest`, whose object is `manifest_bucket`/`manifest_key`.
pub fn outgoing(manifest: &Manifest, manifest_bucket: &str, deadline: Option<Instant>) -> Outgoing {
    let full = serde_json::to_string(manifest).expect("manifest serialises");
    let mut attributes = vec![
        ("kind", manifest.kind.as_str().to_string()),
        ("status", manifest.status.as_str().to_string()),
    ];
    if let Some(s) = &manifest.braze.segment_id {
        attributes.push(("segment_id", s.clone()));
    }
    if let Some(e) = &manifest.braze.event_type {
        attributes.push(("event_type", e.clone()));
    }
    let pointer = || {
        json!({
            "manifest_version": manifest.manifest_version,
            "manifest": {"bucket": manifest_bucket, "key": manifest.manifest_key},
            "status": manifest.status,
            "kind": manifest.kind,
            "totals": manifest.totals,
            "source": manifest.source,
        })
    };
    assemble(
        MessageType::Object,
        full,
        attributes,
        pointer,
        Identity {
            idempotency_key: idempotency_key(manifest),
            group_id: group_id(&manifest.source.key),
            status: manifest.status,
        },
        deadline,
    )
}

/// Who a message is and how it ends: its idempotency key, FIFO group and status.
pub struct Identity {
    pub idempotency_key: String,
    pub group_id: String,
    pub status: Status,
}

/// Builds what every sink sends for a roll-up (an export or partition manifest): `full` is its
/// JSON; `pointer` the fields a pointer message carries when `full` is too large (the message
/// adds `pointer: true` and `message_type`).
pub fn outgoing_rollup(
    message_type: MessageType,
    full: String,
    attributes: Vec<(&'static str, String)>,
    pointer: Value,
    identity: Identity,
    deadline: Option<Instant>,
) -> Outgoing {
    assemble(
        message_type,
        full,
        attributes,
        || pointer,
        identity,
        deadline,
    )
}

fn assemble(
    message_type: MessageType,
    full: String,
    mut attributes: Vec<(&'static str, String)>,
    pointer: impl FnOnce() -> Value,
    identity: Identity,
    deadline: Option<Instant>,
) -> Outgoing {
    attributes.insert(0, ("message_type", message_type.as_str().to_string()));
    let (body, detail, is_pointer) = if full.len() <= MAX_INLINE_BYTES {
        let detail = serde_json::from_str(&full).expect("a serialised manifest reads back");
        (full.clone(), detail, false)
    } else {
        let mut pointer = pointer();
        pointer["pointer"] = json!(true);
        pointer["message_type"] = json!(message_type.as_str());
        (pointer.to_string(), pointer, true)
    };
    let detail_type = match (message_type, identity.status) {
        (MessageType::Object, Status::Failed) => DETAIL_TYPE_FAILED,
        (MessageType::Object, _) => DETAIL_TYPE_INDEXED,
        (MessageType::Export, _) => DETAIL_TYPE_EXPORT_CLOSED,
        (MessageType::Partition, _) => DETAIL_TYPE_PARTITION_CLOSED,
    };
    Outgoing {
        message_type,
        detail_type,
        idempotency_key: identity.idempotency_key,
        group_id: identity.group_id,
        full,
        body,
        is_pointer,
        attributes,
        status: identity.status,
        detail,
        deadline,
    }
}

/// The configured sinks, built once per cold start.
#[derive(Default)]
pub struct Sinks {
    pub sns: Option<sns::SnsSink>,
    pub sqs: Option<sqs::SqsSink>,
    pub eventbridge: Option<eventbridge::EventBridgeSink>,
    pub webhook: Option<webhook::WebhookSink>,
}

impl Sinks {
    /// The names of the configured sinks, in a fixed order.
    pub fn names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.sns.is_some() {
            v.push(sns::NAME);
        }
        if self.sqs.is_some() {
            v.push(sqs::NAME);
        }
        if self.eventbridge.is_some() {
            v.push(eventbridge::NAME);
        }
        if self.webhook.is_some() {
            v.push(webhook::NAME);
        }
        v
    }

    /// Sends to one sink by name.
    pub async fn send(&self, name: &str, msg: &Outgoing) -> Result<(), SinkError> {
        match (name, &self.sns, &self.sqs, &self.eventbridge, &self.webhook) {
            (sns::NAME, Some(s), ..) => s.send(msg).await,
            (sqs::NAME, _, Some(s), ..) => s.send(msg).await,
            (eventbridge::NAME, _, _, Some(s), _) => s.send(msg).await,
            (webhook::NAME, .., Some(s)) => s.send(msg).await,
            _ => Err(SinkError {
                sink: "unknown",
                message: format!("no sink named {name} is configured"),
            }),
        }
    }
}

/// Shortens an SDK error for a message (no request bodies, bounded).
pub(crate) fn sdk_error<E: std::fmt::Debug + aws_sdk_s3::error::ProvideErrorMetadata>(
    e: &aws_sdk_s3::error::SdkError<E>,
) -> String {
    let code = e
        .as_service_error()
        .and_then(|s| s.code())
        .map(String::from);
    let msg = e
        .as_service_error()
        .and_then(|s| s.message())
        .map(String::from);
    match (code, msg) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c,
        _ => format!("{e:?}").chars().take(300).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_ids_are_the_key_or_its_hash() {
        assert_eq!(group_id("reports/a.csv"), "reports/a.csv");
        assert!(group_id("with space").starts_with("sha256-"));
        assert!(group_id(&"k".repeat(129)).starts_with("sha256-"));
        assert_eq!(group_id("é"), group_id("é"));
    }

    #[test]
    fn a_provisional_failure_and_the_manifest_that_replaces_it_have_distinct_ids() {
        use crate::manifest::{Failure, FailureCause};
        let mut m: Manifest = serde_json::from_value(serde_json::json!({
            "manifest_version": 1, "status": "complete", "kind": "unknown",
            "source": {"bucket": "b", "key": "k", "size": 1, "etag": "\"e\""},
            "braze": {}, "compression": "none", "parts": [],
            "totals": {"parts": 0, "records": 0, "bytes": 0, "compressed_bytes": 0},
            "errors": [], "manifest_key": "m", "processed_at": "2026-01-01T00:00:00Z",
            "duration_ms": 0, "producer": {"name": "export-fetcher", "version": "0"}
        }))
        .unwrap();
        let complete = idempotency_key(&m);
        m.status = Status::Failed;
        m.failure = Some(Failure {
            cause: FailureCause::Object,
        });
        assert_eq!(idempotency_key(&m), complete, "an object failure is final");
        for cause in [FailureCause::Environment, FailureCause::Missing] {
            m.failure = Some(Failure { cause });
            assert_ne!(idempotency_key(&m), complete, "{cause:?} is provisional");
        }
        // A manifest read without `generation` is the first; each reprocessed generation has
        // an id of its own, and the first keeps the id it always had.
        m.failure = None;
        m.status = Status::Complete;
        assert_eq!(m.generation, 1);
        m.generation = 2;
        let second = idempotency_key(&m);
        assert_ne!(second, complete);
        m.generation = 3;
        assert_ne!(idempotency_key(&m), second);
    }
}
