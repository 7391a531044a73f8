//! Every Lambda envelope → object events: direct S3 notifications, S3 → SQS, S3 → SNS,
//! S3 → SNS → SQS, EventBridge "Object Created" and EventBridge → SQS; S3 Batch Operations
//! invocations are read by [`batch`] (their response differs), Function URL requests (Braze's
//! export callback) and EventBridge schedules by [`http`].
//!
//! Events are read leniently from a [`serde_json::Value`]: only the fields used are required,
//! because real senders differ in what they include (moto omits `userIdentity` and
//! `requestParameters`, hand-written events omit more). Every record of every message is
//! returned; the caller decides what to do with each [`Item`].
//!
//! Keys from S3 notifications are form-URL-encoded and are decoded here, once
//! ([`decode_s3_key`]); EventBridge keys are not encoded and are taken as they are.
//!
//! The unit of failure is a [`Message`]: one SQS message (reported by its `messageId` in
//! `batchItemFailures`), or the whole invocation for the other envelopes. A message that
//! cannot be read never hides the others of its batch.
//!
//! # Why not `aws_lambda_events`
//!
//! Read in the source of `aws_lambda_events` 0.18.0 (awslabs/aws-lambda-rust-runtime 4c4e5fa).
//! Where a type fits it is still unused: the event is told apart as a `Value` first (one `Records`
//! array may be S3, SQS or SNS), and the `s3`, `sns`, `eventbridge` features bring chrono, which
//! the Lambda build (no demo) does not compile. `tests::` is `trigger::tests`; files: `events/`.
//!
//! - S3 notification, direct: `S3Event`. `S3EventRecord` requires `eventTime` (a chrono
//!   `DateTime<Utc>`), `userIdentity` and `requestParameters`; moto sends neither of the last two
//!   and an `eventTime` without offset (`%Y-%m-%dT%H:%M:%S.%f`), tests/it's `s3_event` omits them
//!   too; `S3Object.size` is an `Option<i64>`, so a size given as a string fails. Tests:
//!   `tests::every_event_file_parses_as_expected` (s3-put, s3-multipart, s3-delete),
//!   `tests::minimal_s3_record_needs_only_event_name_bucket_and_key`,
//!   `tests::object_fields_are_read_leniently`.
//! - `s3:TestEvent`: no type in 0.18 (`S3Event` requires `Records`). Test:
//!   `tests::s3_test_event_is_recognised_in_every_envelope` (s3-test-event, sqs-s3-test-event).
//! - SQS: `SqsEvent`/`SqsMessage` fit (every message field optional); the body is parsed from its
//!   string either way. `SqsEventObj<T>` does not: one non-JSON body fails the whole batch, not
//!   its message alone (sqs-mixed-with-poison, `tests::a_bad_record_fails_only_its_sqs_message`).
//!   S3 body: as direct S3 (moto's S3 to SQS body is the same record; sqs-s3). SNS body:
//!   `SnsMessage` requires `UnsubscribeURL`, which a `SubscriptionConfirmation` never has; here
//!   it is skipped (sqs-sns-s3, `tests::sns_subscription_confirmation_in_sqs_is_skipped`).
//!   EventBridge body: as below (sqs-eventbridge).
//! - SNS, direct: `SnsEvent` fits what SNS sends (sns-s3), but `SnsMessage` requires nine fields
//!   (`Timestamp` as `DateTime<Utc>`, `Signature`, `SigningCertUrl`, …) where only `Message` is
//!   read; tests/it/exactly_once_ack.rs sends no `Signature`, `SigningCertUrl`, `UnsubscribeUrl`.
//! - EventBridge "Object Created": `EventBridgeEvent<Value>` fits what S3 sends (it requires only
//!   `detail-type`, `source`, `detail`), but `time` is an `Option<DateTime<Utc>>` and moto sends a
//!   number; no type for the S3 `detail`. Tests: `tests::every_event_file_parses_as_expected`
//!   (eventbridge-object-created, -deleted), `tests::eventbridge_reason_maps_to_s3_event_name`,
//!   `tests::eventbridge_keys_are_not_decoded`.
//! - `SqsBatchResponse`: fits, same JSON; the handler writes it in one `json!` rather than add the
//!   crate and `serde_with` (tests/it/exactly_once_ack.rs compares the whole response).
//! - S3 Batch Operations: `S3BatchJobEvent` fits 1.0; in 2.0, `S3BatchJob` has only `id` and
//!   `S3BatchJobTask` only `s3BucketArn`, so `job.userArguments` and a task's `s3Bucket` are lost
//!   (kept untyped in `other` with the `catch-all-fields` feature). `S3BatchJobResponse` fits the
//!   wire, but every field is an `Option` and `resultCode` a `String` (`batch::ResultCode`: enum).
//!   Tests (`batch::tests`): `the_documented_schema_1_0_example_is_read`,
//!   `the_documented_schema_2_0_example_is_read_with_its_user_arguments`,
//!   `the_response_has_exactly_the_fields_batch_operations_reads`.
//! - Function URL: `LambdaFunctionUrlRequest` fits what Lambda sends (function-url-export-callback;
//!   `http::tests::the_callback_example_reads_as_a_post_with_its_segment`) but requires
//!   `requestContext.timeEpoch`, which the demo's callback (src/demo/mod.rs) and
//!   `http::tests::query_and_body_are_decoded` lack. `LambdaFunctionUrlResponse` fits (adding
//!   `"cookies": []`); `http::http_response` is one `json!` (`http::tests::responses_have_…`).
//! - EventBridge schedule: `EventBridgeEvent<Value>` fits schedule.json; only `source` and
//!   `detail-type` are compared
//!   (`http::tests::the_schedule_example_is_a_scheduled_event_and_nothing_else`).

pub mod batch;
pub mod http;
mod key;
#[cfg(test)]
mod tests;

pub use key::decode_s3_key;

use serde_json::Value;

/// How many characters of an offending body or key an error message quotes.
const SNIPPET_CHARS: usize = 200;

/// Which envelope carried an S3 event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Envelope {
    /// A direct S3 event notification to the function.
    S3,
    /// An S3 notification in an SQS message body (also S3 → SNS → SQS with raw message
    /// delivery, which cannot be told apart).
    Sqs,
    /// An S3 notification in the `Message` of a direct SNS invocation.
    Sns,
    /// An S3 notification in an SNS notification (raw message delivery off) in an SQS body.
    SqsSns,
    /// An EventBridge event from `aws.s3` invoking the function directly.
    EventBridge,
    /// An EventBridge event from `aws.s3` in an SQS message body.
    SqsEventBridge,
    /// A task of an S3 Batch Operations job (see [`batch`]).
    BatchOperations,
}

/// One object-created event, key already decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectEvent {
    pub bucket: String,
    /// The real key: decoded for S3 notifications, as given for EventBridge.
    pub key: String,
    pub size: Option<u64>,
    /// As given, surrounding quotes stripped. A multipart ETag (`…-12`) is not an MD5.
    pub etag: Option<String>,
    pub version_id: Option<String>,
    /// Duplicate notifications of one write share it.
    pub sequencer: Option<String>,
    pub event_time: Option<String>,
    /// `ObjectCreated:Put`, `ObjectCreated:CompleteMultipartUpload`, …; for EventBridge,
    /// `ObjectCreated:` and the name matching `detail.reason` (`ObjectCreated:*` without one).
    pub event_name: String,
    pub envelope: Envelope,
}

/// What one record of an event asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// An object was created: fetch it.
    Object(ObjectEvent),
    /// `s3:TestEvent`: a no-op.
    Test,
    /// A record that is not ObjectCreated (e.g. ObjectRemoved:Delete, EventBridge "Object
    /// Deleted" / "Object Tags Added"): skipped and logged by the caller. The key is decoded
    /// when it can be, else as given.
    Skipped {
        event_name: String,
        bucket: Option<String>,
        key: Option<String>,
    },
}

/// One unit that succeeds or fails together: an SQS message (its `messageId` is what goes into
/// batchItemFailures) or, for non-SQS envelopes, the whole invocation (message_id None).
#[derive(Debug)]
pub struct Message {
    pub message_id: Option<String>,
    pub items: Result<Vec<Item>, TriggerError>,
}

/// A whole Lambda event, split into the units that succeed or fail together.
#[derive(Debug)]
pub struct Parsed {
    /// Whether the event came from SQS, so the response must carry `batchItemFailures`.
    pub is_sqs: bool,
    pub messages: Vec<Message>,
}

/// Why an event, a message or a record could not be read. None of these heal on retry: the
/// same bytes give the same error (see [`TriggerError::is_transient`]).
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    /// The event as a whole is none of the supported envelopes.
    #[error("unrecognised Lambda event ({reason}): {snippet}")]
    Unrecognised {
        reason: &'static str,
        snippet: String,
    },
    /// An SQS body or SNS `Message` that should hold JSON does not.
    #[error("{context} is not JSON ({cause}): {snippet:?}")]
    NotJson {
        context: &'static str,
        cause: String,
        snippet: String,
    },
    /// An SQS body or SNS `Message` that is JSON but holds no supported event.
    #[error("{context} holds no S3 notification, SNS notification or EventBridge event: {snippet}")]
    UnrecognisedBody {
        context: &'static str,
        snippet: String,
    },
    /// A field the record needs is missing, empty or of the wrong type.
    #[error("{context} lacks `{field}`")]
    MissingField {
        context: String,
        field: &'static str,
    },
    /// An S3 notification key that is not valid form-URL-encoded UTF-8.
    #[error("invalid URL-encoded S3 key {raw:?}{}: {reason}", in_bucket(.bucket))]
    InvalidKey {
        bucket: Option<String>,
        raw: String,
        reason: String,
    },
}

impl TriggerError {
    /// Always false: parsing is deterministic. With SQS the message is still reported as a
    /// batch item failure, so it is retried and then lands in the dead-letter queue, never lost.
    pub fn is_transient(&self) -> bool {
        false
    }
}

fn in_bucket(bucket: &Option<String>) -> String {
    bucket
        .as_deref()
        .map(|b| format!(" in bucket {b:?}"))
        .unwrap_or_default()
}

/// Parses any supported Lambda event. Err only when the event as a whole is not recognised
/// (then the caller fails the invocation). For SQS, a message whose body cannot be parsed
/// becomes `Message { message_id: Some(id), items: Err(..) }` so that only that message is
/// reported as a batch item failure.
///
/// A `Records` array that is empty gives no messages.
pub fn parse(event: &Value) -> Result<Parsed, TriggerError> {
    if let Some(records) = event.get("Records") {
        let records = records
            .as_array()
            .ok_or_else(|| unrecognised("`Records` is not an array", event))?;
        return parse_records(event, records);
    }
    if is_test_event(event) {
        return Ok(whole(Ok(vec![Item::Test])));
    }
    if is_eventbridge(event) {
        if !is_s3_eventbridge(event) {
            return Err(unrecognised("EventBridge event not from aws.s3", event));
        }
        let item = eventbridge_item(event, Envelope::EventBridge);
        return Ok(whole(item.map(|item| vec![item])));
    }
    Err(unrecognised(
        "neither `Records`, an s3:TestEvent nor an EventBridge event",
        event,
    ))
}

/// The source of one record of a top-level `Records` array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    S3,
    Sqs,
    Sns,
}

/// By `eventSource` (`EventSource` for SNS) when present, else by shape (moto's S3 records may
/// lack `eventSource`).
fn record_source(record: &Value) -> Option<Source> {
    let declared = str_at(record, &["eventSource"]).or_else(|| str_at(record, &["EventSource"]));
    match declared {
        Some("aws:s3") => Some(Source::S3),
        Some("aws:sqs") => Some(Source::Sqs),
        Some("aws:sns") => Some(Source::Sns),
        Some(_) => None,
        None if record.get("s3").is_some() => Some(Source::S3),
        None if record.get("Sns").is_some() => Some(Source::Sns),
        None if record.get("messageId").is_some() && record.get("body").is_some() => {
            Some(Source::Sqs)
        }
        None => None,
    }
}

fn parse_records(event: &Value, records: &[Value]) -> Result<Parsed, TriggerError> {
    let mut sources = records.iter().map(record_source);
    let Some(first) = sources.next() else {
        return Ok(Parsed {
            is_sqs: false,
            messages: Vec::new(),
        });
    };
    let Some(source) = first else {
        return Err(unrecognised("records of an unknown source", event));
    };
    if sources.any(|s| s != Some(source)) {
        return Err(unrecognised("records of mixed sources", event));
    }
    match source {
        Source::S3 => Ok(whole(s3_records(records, Envelope::S3))),
        Source::Sns => Ok(whole(collect_items(records.iter().map(sns_record)))),
        Source::Sqs => {
            let messages = records
                .iter()
                .map(|record| {
                    let Some(id) = str_at(record, &["messageId"]) else {
                        // Without its id a failure could not be reported for this message alone:
                        // the whole batch fails instead (duplicates rather than loss).
                        return Err(unrecognised("an SQS record without `messageId`", event));
                    };
                    Ok(Message {
                        message_id: Some(id.to_string()),
                        items: sqs_body(record),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Parsed {
                is_sqs: true,
                messages,
            })
        }
    }
}

/// One message standing for the whole (non-SQS) invocation.
fn whole(items: Result<Vec<Item>, TriggerError>) -> Parsed {
    Parsed {
        is_sqs: false,
        messages: vec![Message {
            message_id: None,
            items,
        }],
    }
}

fn collect_items(
    parts: impl Iterator<Item = Result<Vec<Item>, TriggerError>>,
) -> Result<Vec<Item>, TriggerError> {
    let mut items = Vec::new();
    for part in parts {
        items.extend(part?);
    }
    Ok(items)
}

/// The body of one SQS message: an S3 notification (also SNS with raw delivery), an SNS
/// notification wrapping one, an s3:TestEvent or an EventBridge event.
fn sqs_body(record: &Value) -> Result<Vec<Item>, TriggerError> {
    let body = non_empty_str(record, &["body"]).ok_or_else(|| TriggerError::MissingField {
        context: "SQS message".to_string(),
        field: "body",
    })?;
    let body = parse_json("SQS message body", body)?;
    if let Some(kind) = sns_type(&body) {
        return match kind {
            "Notification" => sns_message(&body, Envelope::SqsSns),
            // Sent to the queue when a cross-account subscription awaits confirmation.
            other => Ok(vec![Item::Skipped {
                event_name: format!("sns:{other}"),
                bucket: None,
                key: None,
            }]),
        };
    }
    if is_eventbridge(&body) && is_s3_eventbridge(&body) {
        return eventbridge_item(&body, Envelope::SqsEventBridge).map(|item| vec![item]);
    }
    s3_payload(&body, Envelope::Sqs).ok_or_else(|| TriggerError::UnrecognisedBody {
        context: "SQS message body",
        snippet: snippet(&body),
    })?
}

/// The `Type` of an SNS message (`Notification`, `SubscriptionConfirmation`, …) when the value
/// is one.
fn sns_type(value: &Value) -> Option<&str> {
    let kind = str_at(value, &["Type"])?;
    (value.get("TopicArn").is_some() || value.get("MessageId").is_some()).then_some(kind)
}

/// One record of a direct SNS invocation.
fn sns_record(record: &Value) -> Result<Vec<Item>, TriggerError> {
    let sns = record
        .get("Sns")
        .ok_or_else(|| TriggerError::MissingField {
            context: "SNS record".to_string(),
            field: "Sns",
        })?;
    sns_message(sns, Envelope::Sns)
}

/// The S3 notification (or s3:TestEvent) in the `Message` string of an SNS notification.
fn sns_message(sns: &Value, envelope: Envelope) -> Result<Vec<Item>, TriggerError> {
    let message = non_empty_str(sns, &["Message"]).ok_or_else(|| TriggerError::MissingField {
        context: "SNS notification".to_string(),
        field: "Message",
    })?;
    let message = parse_json("SNS message", message)?;
    s3_payload(&message, envelope).ok_or_else(|| TriggerError::UnrecognisedBody {
        context: "SNS message",
        snippet: snippet(&message),
    })?
}

/// An S3 notification (`Records`) or an s3:TestEvent; None when the value is neither.
fn s3_payload(value: &Value, envelope: Envelope) -> Option<Result<Vec<Item>, TriggerError>> {
    if is_test_event(value) {
        return Some(Ok(vec![Item::Test]));
    }
    let records = value.get("Records")?.as_array()?;
    if records
        .iter()
        .any(|record| record_source(record) != Some(Source::S3))
    {
        return None;
    }
    Some(s3_records(records, envelope))
}

fn s3_records(records: &[Value], envelope: Envelope) -> Result<Vec<Item>, TriggerError> {
    records
        .iter()
        .enumerate()
        .map(|(index, record)| s3_record(record, index, envelope))
        .collect()
}

/// One S3 notification record. Only `eventName`, the bucket name and the key are required.
fn s3_record(record: &Value, index: usize, envelope: Envelope) -> Result<Item, TriggerError> {
    let context = || format!("S3 notification record {index}");
    let event_name =
        non_empty_str(record, &["eventName"]).ok_or_else(|| TriggerError::MissingField {
            context: context(),
            field: "eventName",
        })?;
    let bucket = non_empty_str(record, &["s3", "bucket", "name"]);
    let raw_key = non_empty_str(record, &["s3", "object", "key"]);
    if !event_name.starts_with("ObjectCreated:") {
        return Ok(Item::Skipped {
            event_name: event_name.to_string(),
            bucket: bucket.map(str::to_string),
            key: raw_key.map(|raw| decode_s3_key(raw).unwrap_or_else(|_| raw.to_string())),
        });
    }
    let missing = |field| TriggerError::MissingField {
        context: format!("{} ({event_name})", context()),
        field,
    };
    let bucket = bucket.ok_or_else(|| missing("s3.bucket.name"))?;
    let raw_key = raw_key.ok_or_else(|| missing("s3.object.key"))?;
    let key = decode_s3_key(raw_key).map_err(|err| match err {
        TriggerError::InvalidKey { raw, reason, .. } => TriggerError::InvalidKey {
            bucket: Some(bucket.to_string()),
            raw,
            reason,
        },
        other => other,
    })?;
    let object = &record["s3"]["object"];
    Ok(Item::Object(ObjectEvent {
        bucket: bucket.to_string(),
        key,
        size: u64_at(object, "size"),
        etag: non_empty_str(object, &["eTag"]).and_then(strip_quotes),
        version_id: version_id(non_empty_str(object, &["versionId"])),
        sequencer: owned(non_empty_str(object, &["sequencer"])),
        event_time: owned(non_empty_str(record, &["eventTime"])),
        event_name: event_name.to_string(),
        envelope,
    }))
}

fn is_test_event(value: &Value) -> bool {
    str_at(value, &["Event"]) == Some("s3:TestEvent")
}

fn is_eventbridge(value: &Value) -> bool {
    value.get("detail-type").is_some() && value.get("detail").is_some()
}

fn is_s3_eventbridge(value: &Value) -> bool {
    str_at(value, &["source"]) == Some("aws.s3")
}

/// One EventBridge event from `aws.s3`. Its key is not URL-encoded.
fn eventbridge_item(event: &Value, envelope: Envelope) -> Result<Item, TriggerError> {
    let detail_type =
        non_empty_str(event, &["detail-type"]).ok_or_else(|| TriggerError::MissingField {
            context: "EventBridge event".to_string(),
            field: "detail-type",
        })?;
    let detail = &event["detail"];
    let bucket = non_empty_str(detail, &["bucket", "name"]);
    let key = non_empty_str(detail, &["object", "key"]);
    if detail_type != "Object Created" {
        return Ok(Item::Skipped {
            event_name: detail_type.to_string(),
            bucket: owned(bucket),
            key: owned(key),
        });
    }
    let missing = |field| TriggerError::MissingField {
        context: "EventBridge \"Object Created\" event".to_string(),
        field,
    };
    let bucket = bucket.ok_or_else(|| missing("detail.bucket.name"))?;
    let key = key.ok_or_else(|| missing("detail.object.key"))?;
    let object = &detail["object"];
    let event_name = match non_empty_str(detail, &["reason"]) {
        Some(reason) => format!("ObjectCreated:{}", s3_event_suffix(reason)),
        None => "ObjectCreated:*".to_string(),
    };
    Ok(Item::Object(ObjectEvent {
        bucket: bucket.to_string(),
        key: key.to_string(),
        size: u64_at(object, "size"),
        // S3 writes `etag`; some emitters (moto) write `eTag`.
        etag: non_empty_str(object, &["etag"])
            .or_else(|| non_empty_str(object, &["eTag"]))
            .and_then(strip_quotes),
        version_id: version_id(non_empty_str(object, &["version-id"])),
        sequencer: owned(non_empty_str(object, &["sequencer"])),
        event_time: owned(non_empty_str(event, &["time"])),
        event_name,
        envelope,
    }))
}

/// The S3 notification event name for an EventBridge `detail.reason`; unknown reasons are kept
/// as they are.
fn s3_event_suffix(reason: &str) -> &str {
    match reason {
        "PutObject" => "Put",
        "POST Object" => "Post",
        "CopyObject" => "Copy",
        "CompleteMultipartUpload" => "CompleteMultipartUpload",
        "ObjectCreated" => "*",
        other => other,
    }
}

/// A version id, where `null` (the version of an object in an unversioned bucket) means none:
/// reads then simply fetch the object as it is.
fn version_id(v: Option<&str>) -> Option<String> {
    v.filter(|v| *v != "null").map(String::from)
}

fn parse_json(context: &'static str, text: &str) -> Result<Value, TriggerError> {
    serde_json::from_str(text).map_err(|err| TriggerError::NotJson {
        context,
        cause: err.to_string(),
        snippet: truncate(text),
    })
}

fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(value, |v, field| v.get(field))?
        .as_str()
}

fn non_empty_str<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    str_at(value, path).filter(|s| !s.is_empty())
}

fn owned(s: Option<&str>) -> Option<String> {
    s.map(str::to_string)
}

/// A size given as a number or, leniently, as a string of digits.
fn u64_at(value: &Value, field: &str) -> Option<u64> {
    match value.get(field)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn strip_quotes(etag: &str) -> Option<String> {
    let inner = etag
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(etag);
    (!inner.is_empty()).then(|| inner.to_string())
}

fn unrecognised(reason: &'static str, event: &Value) -> TriggerError {
    TriggerError::Unrecognised {
        reason,
        snippet: snippet(event),
    }
}

fn snippet(value: &Value) -> String {
    truncate(&value.to_string())
}

/// At most [`SNIPPET_CHARS`] characters of `s`. Raw text is shown with `{:?}`, which escapes
/// control characters; JSON snippets are escaped by serialisation.
fn truncate(s: &str) -> String {
    let mut cut: String = s.chars().take(SNIPPET_CHARS).collect();
    if cut.len() < s.len() {
        cut.push('…');
    }
    cut
}
