//! S3 Batch Operations invocations (`LambdaInvoke`, invocation schema `1.0` and `2.0`) and the
//! response Batch Operations requires.
//!
//! Schema 1.0 names the bucket by ARN (`tasks[].s3BucketArn`), 2.0 by name (`tasks[].s3Bucket`)
//! and adds `job.userArguments`. Keys arrive percent-encoded as they stand in the job's CSV
//! manifest, and are decoded here with plain percent-decoding: a `+` is a plus (Batch
//! Operations manifests encode a space as `%20`), unlike S3 event notifications.
//!
//! `aws_lambda_events` has only the 1.0 fields (no `s3Bucket`, no `userArguments`), so the
//! invocation is read leniently from a [`Value`] here, like every other envelope
//! (see [`super`]). The response is [`BatchResponse`]: exactly the four fields Batch Operations
//! reads, nothing more.

use serde::Serialize;
use serde_json::Value;

use super::{Envelope, ObjectEvent, SNIPPET_CHARS, TriggerError};

/// The event name a Batch Operations task carries through the pipeline (and into its manifest's
/// `source.event_name`).
pub const BATCH_EVENT_NAME: &str = "BatchOperations:LambdaInvoke";

/// The longest `resultString` returned per task, in bytes. Batch Operations copies it into the
/// completion report (a CSV row per task); messages longer than this are cut at a character
/// boundary and end in `…`. Documented in README ("Backfill").
pub const MAX_RESULT_STRING: usize = 1024;

/// One Batch Operations invocation.
#[derive(Debug)]
pub struct BatchInvocation {
    /// Echoed in the response, as sent (`"1.0"` or `"2.0"`).
    pub schema_version: String,
    /// Echoed in the response.
    pub invocation_id: String,
    pub job_id: Option<String>,
    /// `job.userArguments.reprocess == "true"` (schema 2.0): index again even when a current
    /// manifest exists.
    pub reprocess: bool,
    pub tasks: Vec<BatchTask>,
}

/// One task: an object, or why its fields cannot be read (reported for that task alone).
#[derive(Debug)]
pub struct BatchTask {
    pub task_id: String,
    pub object: Result<ObjectEvent, TriggerError>,
}

/// Whether the event is a Batch Operations invocation: `invocationSchemaVersion` and a `tasks`
/// array at the top level.
pub fn is_batch(event: &Value) -> bool {
    event.get("invocationSchemaVersion").is_some()
        && event.get("tasks").is_some_and(Value::is_array)
}

/// Reads a Batch Operations invocation. `Err` only when the invocation as a whole cannot be
/// answered (no `invocationId`, a task without `taskId`): then there is no response Batch
/// Operations could match to its tasks, and the invocation fails (Batch Operations retries it).
pub fn parse_batch(event: &Value) -> Result<BatchInvocation, TriggerError> {
    let schema_version = match event.get("invocationSchemaVersion") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => {
            return Err(missing(
                "the Batch Operations invocation",
                "invocationSchemaVersion",
            ));
        }
    };
    let invocation_id = event
        .get("invocationId")
        .and_then(Value::as_str)
        .ok_or_else(|| missing("the Batch Operations invocation", "invocationId"))?
        .to_string();
    let job = event.get("job");
    let job_id = job
        .and_then(|j| j.get("id"))
        .and_then(Value::as_str)
        .map(String::from);
    let reprocess = job
        .and_then(|j| j.get("userArguments"))
        .and_then(|a| a.get("reprocess"))
        .is_some_and(|v| match v {
            Value::String(s) => s.eq_ignore_ascii_case("true"),
            Value::Bool(b) => *b,
            _ => false,
        });
    let tasks = event
        .get("tasks")
        .and_then(Value::as_array)
        .ok_or_else(|| missing("the Batch Operations invocation", "tasks"))?
        .iter()
        .map(|task| {
            let task_id = task
                .get("taskId")
                .and_then(Value::as_str)
                .ok_or_else(|| missing("a Batch Operations task", "taskId"))?
                .to_string();
            Ok(BatchTask {
                object: task_object(task),
                task_id,
            })
        })
        .collect::<Result<Vec<_>, TriggerError>>()?;
    Ok(BatchInvocation {
        schema_version,
        invocation_id,
        job_id,
        reprocess,
        tasks,
    })
}

fn missing(context: &str, field: &'static str) -> TriggerError {
    TriggerError::MissingField {
        context: context.to_string(),
        field,
    }
}

/// The bucket of a 1.0 task's `s3BucketArn` (`arn:aws:s3:::bucket`; what follows the last `:`,
/// since bucket names hold none).
fn bucket_of_arn(arn: &str) -> Option<&str> {
    let name = arn.rsplit(':').next()?;
    (arn.starts_with("arn:") && !name.is_empty()).then_some(name)
}

fn task_object(task: &Value) -> Result<ObjectEvent, TriggerError> {
    let context = "a Batch Operations task";
    let bucket = match task.get("s3Bucket").and_then(Value::as_str) {
        Some(b) if !b.is_empty() => b.to_string(),
        _ => {
            let arn = task
                .get("s3BucketArn")
                .and_then(Value::as_str)
                .ok_or_else(|| missing(context, "s3Bucket"))?;
            bucket_of_arn(arn)
                .ok_or_else(|| missing(context, "s3BucketArn"))?
                .to_string()
        }
    };
    let raw = task
        .get("s3Key")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| missing(context, "s3Key"))?;
    let key = decode_batch_key(raw).map_err(|reason| TriggerError::InvalidKey {
        bucket: Some(bucket.clone()),
        raw: raw.chars().take(SNIPPET_CHARS).collect(),
        reason,
    })?;
    let version_id = task
        .get("s3VersionId")
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty() && *v != "null")
        .map(String::from);
    Ok(ObjectEvent {
        bucket,
        key,
        size: None,
        etag: None,
        version_id,
        sequencer: None,
        event_time: None,
        event_name: BATCH_EVENT_NAME.to_string(),
        envelope: Envelope::BatchOperations,
    })
}

/// Percent-decodes a Batch Operations key: `%XX` escapes only (`+` stays a plus); the result
/// must be UTF-8 and non-empty.
pub fn decode_batch_key(raw: &str) -> Result<String, String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("a `%` at byte {i} is not followed by two hex digits"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let key = String::from_utf8(out).map_err(|_| "the decoded key is not UTF-8".to_string())?;
    if key.is_empty() {
        return Err("the decoded key is empty".into());
    }
    Ok(key)
}

/// A task's result code, as Batch Operations reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ResultCode {
    Succeeded,
    TemporaryFailure,
    PermanentFailure,
}

/// One task's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskResult {
    pub task_id: String,
    pub result_code: ResultCode,
    pub result_string: String,
}

impl TaskResult {
    /// A result whose string is cut to [`MAX_RESULT_STRING`] bytes.
    pub fn new(task_id: String, result_code: ResultCode, result_string: &str) -> TaskResult {
        TaskResult {
            task_id,
            result_code,
            result_string: cut(result_string, MAX_RESULT_STRING),
        }
    }
}

fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let ellipsis = "…";
    let mut end = max - ellipsis.len();
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ellipsis}", &s[..end])
}

/// The response to a Batch Operations invocation: exactly what Batch Operations reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchResponse {
    pub invocation_schema_version: String,
    pub treat_missing_keys_as: ResultCode,
    pub invocation_id: String,
    pub results: Vec<TaskResult>,
}

impl BatchResponse {
    /// The response to `invocation` with `results` (one per task, in task order).
    pub fn new(invocation: &BatchInvocation, results: Vec<TaskResult>) -> BatchResponse {
        BatchResponse {
            invocation_schema_version: invocation.schema_version.clone(),
            // A key that vanished before the task ran is not retried: Braze removes exports.
            treat_missing_keys_as: ResultCode::PermanentFailure,
            invocation_id: invocation.invocation_id.clone(),
            results,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_documented_schema_1_0_example_is_read() {
        let event: Value =
            serde_json::from_str(include_str!("../../events/batch-operations-1.0.json")).unwrap();
        assert!(is_batch(&event));
        let inv = parse_batch(&event).unwrap();
        assert_eq!(inv.schema_version, "1.0");
        assert!(!inv.reprocess);
        assert_eq!(inv.tasks.len(), 1);
        let ev = inv.tasks[0].object.as_ref().unwrap();
        assert_eq!(ev.bucket, "braze-exports");
        assert_eq!(
            ev.key,
            "segment-export/5f1c2a/2024-05-01/object prefix/users+1.json.gz"
        );
        assert_eq!(ev.version_id.as_deref(), Some("1"));
        assert_eq!(ev.envelope, Envelope::BatchOperations);
    }

    #[test]
    fn the_documented_schema_2_0_example_is_read_with_its_user_arguments() {
        let event: Value =
            serde_json::from_str(include_str!("../../events/batch-operations-2.0.json")).unwrap();
        let inv = parse_batch(&event).unwrap();
        assert_eq!(inv.schema_version, "2.0");
        assert!(inv.reprocess);
        let ev = inv.tasks[0].object.as_ref().unwrap();
        assert_eq!(ev.bucket, "braze-exports");
        assert_eq!(ev.version_id, None, "a null version is none");
        assert_eq!(
            ev.key,
            "currents/dataexport.prod-01.S3.integration.69cad1b2/event_type=users.messages.email.Send/date=2024-05-01-13/0_0_0.avro"
        );
    }

    #[test]
    fn keys_are_percent_decoded_and_plus_stays_a_plus() {
        for (raw, want) in [
            ("a%20b", Ok("a b")),
            ("a+b", Ok("a+b")),
            ("a%2Bb", Ok("a+b")),
            ("dir/%C3%A9t%C3%A9.csv", Ok("dir/été.csv")),
            ("dir%2Fx", Ok("dir/x")),
            ("bad%2", Err(())),
            ("bad%zz", Err(())),
            ("%FF", Err(())),
        ] {
            assert_eq!(
                decode_batch_key(raw).map_err(|_| ()),
                want.map(String::from),
                "{raw}"
            );
        }
    }

    #[test]
    fn a_task_that_cannot_be_read_fails_alone_and_the_invocation_stands() {
        let event = json!({
            "invocationSchemaVersion": "2.0",
            "invocationId": "inv",
            "job": {"id": "j", "userArguments": {"reprocess": "false"}},
            "tasks": [
                {"taskId": "t1", "s3Bucket": "b", "s3Key": "ok.csv", "s3VersionId": null},
                {"taskId": "t2", "s3Bucket": "b", "s3Key": "bad%zz"},
                {"taskId": "t3", "s3Key": "no-bucket"},
            ]
        });
        let inv = parse_batch(&event).unwrap();
        assert!(!inv.reprocess);
        assert!(inv.tasks[0].object.is_ok());
        assert!(inv.tasks[1].object.is_err());
        assert!(inv.tasks[2].object.is_err());
        // Without a taskId or invocationId there is nothing to answer with.
        let no_task_id = json!({"invocationSchemaVersion": "1.0", "invocationId": "i",
            "job": {"id": "j"}, "tasks": [{"s3Key": "k", "s3BucketArn": "arn:aws:s3:::b"}]});
        assert!(parse_batch(&no_task_id).is_err());
        let no_invocation = json!({"invocationSchemaVersion": "1.0", "tasks": []});
        assert!(parse_batch(&no_invocation).is_err());
    }

    #[test]
    fn the_response_has_exactly_the_fields_batch_operations_reads() {
        let event: Value =
            serde_json::from_str(include_str!("../../events/batch-operations-1.0.json")).unwrap();
        let inv = parse_batch(&event).unwrap();
        let long = "é".repeat(MAX_RESULT_STRING);
        let response = BatchResponse::new(
            &inv,
            vec![TaskResult::new(
                inv.tasks[0].task_id.clone(),
                ResultCode::PermanentFailure,
                &long,
            )],
        );
        let text = serde_json::to_string(&response).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "invocationId",
                "invocationSchemaVersion",
                "results",
                "treatMissingKeysAs"
            ]
        );
        assert!(text.starts_with(r#"{"invocationSchemaVersion":"1.0","treatMissingKeysAs""#));
        assert_eq!(v["invocationId"], event["invocationId"]);
        assert_eq!(v["invocationSchemaVersion"], "1.0");
        assert_eq!(v["treatMissingKeysAs"], "PermanentFailure");
        let result = &v["results"][0];
        assert_eq!(result.as_object().unwrap().len(), 3);
        assert_eq!(result["taskId"], event["tasks"][0]["taskId"]);
        assert_eq!(result["resultCode"], "PermanentFailure");
        let s = result["resultString"].as_str().unwrap();
        assert!(
            s.len() <= MAX_RESULT_STRING && s.ends_with('…'),
            "{}",
            s.len()
        );
    }
}
