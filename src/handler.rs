//! Lambda event → pipeline runs → response. For SQS the response lists the messages to retry
//! (`batchItemFailures`); for other envelopes a retryable failure fails the invocation; an S3
//! Batch Operations invocation gets one result code per task (see [`batch_result`]).
//!
//! A message task that panics is a failure of that message, reported by its own `messageId`
//! (Lambda would otherwise delete it with the batch); a direct, SNS or EventBridge invocation
//! with a panicked task fails. An SQS message that failed but has no id cannot be reported on
//! its own, so the whole invocation fails and the batch is retried.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use thiserror::Error;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{Instrument, info, info_span, warn};

use crate::config::{Config, ConfigError, KeyFilter};
use crate::manifest::{FailureCause, Status};
use crate::pipeline::{Env, Job, ObjectOutcome, process_event, process_task};
use crate::sanitize_for_log;
use crate::sink::Sinks;
use crate::sink::eventbridge::EventBridgeSink;
use crate::sink::sns::SnsSink;
use crate::sink::sqs::SqsSink;
use crate::sink::webhook::WebhookSink;
use crate::store::s3::S3Store;
use crate::trigger::batch::{self, BatchInvocation, BatchResponse, ResultCode, TaskResult};
use crate::trigger::{self, Item, Message};

/// Messages processed at once within one invocation.
pub const PARALLEL_MESSAGES: usize = 4;
/// Work stops this long before the invocation deadline (or half the time left, if less),
/// leaving time to clean up (abort uploads, release delivery claims) and report the failure.
/// Every wait of the work ends at that point; a cleanup wait lasts at most
/// `store::s3::LONGEST_WAIT`, which the margin is longer than.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(30);
const _: () = assert!(DEADLINE_MARGIN.as_millis() > crate::store::s3::LONGEST_WAIT.as_millis());

#[derive(Debug, Error)]
pub enum HandlerError {
    #[error("the event is not a supported trigger: {0}")]
    Unrecognised(String),
    #[error("the scheduled sweep failed: {0}")]
    Sweep(String),
    #[error("{failed} of {total} objects must be retried: {first}")]
    Retryable {
        failed: usize,
        total: usize,
        first: String,
    },
}

impl From<HandlerError> for lambda_runtime::Diagnostic {
    fn from(e: HandlerError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: match e {
                HandlerError::Unrecognised(_) => "UnrecognisedEvent",
                HandlerError::Sweep(_) => "SweepFailed",
                HandlerError::Retryable { .. } => "RetryableFailure",
            }
            .to_string(),
            error_message: e.to_string(),
        }
    }
}

/// Builds the clients once per cold start. `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT_URL_S3`) points
/// the SDK at another S3 endpoint; path-style addressing is then used.
pub async fn build_env(cfg: Config) -> Result<Env, ConfigError> {
    let shared = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let custom_endpoint = ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|s| !s.is_empty()));
    env_from_sdk_config(cfg, &shared, custom_endpoint)
}

/// Every client built from one SDK configuration (`path_style`: S3 addressed by path, for an
/// endpoint other than AWS's); the Glue client only when `GLUE_DATABASE` is set.
pub fn env_from_sdk_config(
    cfg: Config,
    shared: &aws_config::SdkConfig,
    path_style: bool,
) -> Result<Env, ConfigError> {
    let s3_config = aws_sdk_s3::config::Builder::from(shared)
        .force_path_style(path_style)
        .build();
    let sinks = sinks_from_config(
        &cfg,
        aws_sdk_sns::Client::new(shared),
        aws_sdk_sqs::Client::new(shared),
        aws_sdk_eventbridge::Client::new(shared),
    )?;
    let glue = cfg
        .glue_database
        .is_some()
        .then(|| aws_sdk_glue::Client::new(shared));
    let env = env_with_clients(cfg, aws_sdk_s3::Client::from_conf(s3_config))?.with_sinks(sinks);
    Ok(match glue {
        Some(glue) => env.with_glue(glue),
        None => env,
    })
}

/// The sinks the configuration names, built on the given clients.
pub fn sinks_from_config(
    cfg: &Config,
    sns: aws_sdk_sns::Client,
    sqs: aws_sdk_sqs::Client,
    eventbridge: aws_sdk_eventbridge::Client,
) -> Result<Sinks, ConfigError> {
    let webhook = match &cfg.webhook_url {
        None => None,
        Some(url) => Some(
            WebhookSink::new(url.clone(), cfg.webhook_secret.clone()).map_err(|e| ConfigError {
                name: "WEBHOOK_URL",
                value: url.clone(),
                reason: e.to_string(),
            })?,
        ),
    };
    Ok(Sinks {
        sns: cfg.sns_topic_arn.clone().map(|arn| SnsSink::new(sns, arn)),
        sqs: cfg.sqs_queue_url.clone().map(|url| SqsSink::new(sqs, url)),
        eventbridge: cfg
            .event_bus_name
            .clone()
            .map(|bus| EventBridgeSink::new(eventbridge, bus)),
        webhook,
    })
}

/// The same as [`build_env`] with clients built by the caller (tests, the demo).
pub fn env_with_clients(cfg: Config, s3: aws_sdk_s3::Client) -> Result<Env, ConfigError> {
    let filter = KeyFilter::new(&cfg.include_keys, &cfg.exclude_keys)?;
    Ok(Env {
        s3: S3Store::new(s3, cfg.sse.clone()),
        filter,
        cfg: Arc::new(cfg),
        sinks: Sinks::default(),
        glue: None,
    })
}

/// The deadline to stop work at, from Lambda's deadline in epoch milliseconds.
pub fn work_deadline(deadline_epoch_ms: u64) -> Option<Instant> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_millis() as u64;
    let left = Duration::from_millis(deadline_epoch_ms.saturating_sub(now_ms));
    let margin = DEADLINE_MARGIN.min(left / 2);
    Some(Instant::now() + left.saturating_sub(margin))
}

/// One object's result, as reported in the response and the logs.
fn describe(bucket: &str, key: &str, outcome: &ObjectOutcome) -> Value {
    let mut v = json!({"bucket": bucket, "key": key, "outcome": outcome.label()});
    match outcome {
        ObjectOutcome::Done {
            manifest,
            deliveries,
        } => {
            v["status"] = json!(manifest.status.as_str());
            v["manifest_key"] = json!(manifest.manifest_key);
            v["deliveries"] = json!(deliveries);
        }
        ObjectOutcome::Duplicate {
            manifest_key,
            deliveries,
        } => {
            v["manifest_key"] = json!(manifest_key);
            v["deliveries"] = json!(deliveries);
        }
        ObjectOutcome::Skipped { reason } | ObjectOutcome::Superseded { reason } => {
            v["reason"] = json!(reason)
        }
        ObjectOutcome::Retry { error } => v["error"] = json!(error),
    }
    v
}

/// Processes every object of one message; `Err` when the message must be retried.
async fn run_message(env: Arc<Env>, message: Message, deadline: Option<Instant>) -> MessageResult {
    let mut results = Vec::new();
    let mut retry = None;
    match message.items {
        Err(e) => {
            warn!(message_id = ?message.message_id, error = %e, "message cannot be parsed");
            retry = Some(e.to_string());
        }
        Ok(items) => {
            for item in items {
                match item {
                    Item::Test => info!("s3:TestEvent: nothing to do"),
                    Item::Skipped {
                        event_name,
                        bucket,
                        key,
                    } => info!(
                        event_name = %sanitize_for_log(&event_name),
                        bucket = ?bucket,
                        key = %sanitize_for_log(key.as_deref().unwrap_or("")),
                        "not an object-created event: skipped"
                    ),
                    Item::Object(ev) => {
                        #[cfg(feature = "failpoints")]
                        panic_failpoint("handler::message_task", &ev.key);
                        let span = info_span!(
                            "object",
                            bucket = %ev.bucket,
                            key = %sanitize_for_log(&ev.key),
                            size = ev.size,
                        );
                        let started = Instant::now();
                        let outcome = process_event(&env, &ev, deadline)
                            .instrument(span.clone())
                            .await;
                        let outcome = after_object(&env, &ev, outcome, deadline)
                            .instrument(span.clone())
                            .await;
                        crate::metrics::record_object(
                            &outcome,
                            ev.event_time.as_deref(),
                            started.elapsed(),
                        );
                        span.in_scope(|| match &outcome {
                            ObjectOutcome::Retry { error } => {
                                warn!(error = %error, duration_ms = started.elapsed().as_millis() as u64, "object will be retried")
                            }
                            other => info!(
                                outcome = other.label(),
                                duration_ms = started.elapsed().as_millis() as u64,
                                "object finished"
                            ),
                        });
                        if let ObjectOutcome::Retry { error } = &outcome {
                            retry.get_or_insert_with(|| error.clone());
                        }
                        results.push(describe(&ev.bucket, &ev.key, &outcome));
                    }
                }
            }
        }
    }
    MessageResult {
        message_id: message.message_id,
        results,
        retry,
    }
}

struct MessageResult {
    message_id: Option<String>,
    results: Vec<Value>,
    retry: Option<String>,
}

/// A failpoint that panics when its configured argument (`return(<marker>)`) occurs in
/// `subject`, so that a test can aim it at one object while other tests run alongside.
#[cfg(feature = "failpoints")]
fn panic_failpoint(name: &str, subject: &str) {
    fail::fail_point!(name, |marker: Option<String>| {
        if marker.is_some_and(|m| !m.is_empty() && subject.contains(&m)) {
            panic!("failpoint {name}: injected panic for {subject:?}");
        }
    });
}

/// Why a message task ended without a result.
fn task_failure(e: tokio::task::JoinError) -> String {
    if !e.is_panic() {
        return format!("the message task stopped unexpectedly: {e}");
    }
    let panic = e.into_panic();
    let message = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    format!("the message task panicked: {message}")
}

/// The roll-up step after an object: an API export's file keeps its export's open record,
/// completes a close that waited for it, or amends a closed export; a Currents file keeps its
/// hour's open record (and its Glue table and partition) or amends the closed hour (see
/// [`crate::rollup::after_object`]). When the step fails the object is retried (its manifest
/// stands: the retry is a duplicate that runs this step again).
async fn after_object(
    env: &Env,
    ev: &trigger::ObjectEvent,
    outcome: ObjectOutcome,
    deadline: Option<Instant>,
) -> ObjectOutcome {
    let (etag, result) = match &outcome {
        ObjectOutcome::Done { manifest, .. } => (manifest.source.etag.clone(), Some(manifest)),
        ObjectOutcome::Duplicate { .. } => (ev.etag.clone(), None),
        _ => return outcome,
    };
    // Boxed: the roll-up's future is large and this runs inside every object's task.
    let step = crate::rollup::after_object(
        env,
        &ev.bucket,
        &ev.key,
        etag.as_deref(),
        result.map(|m| m.as_ref()),
        deadline,
    );
    let stepped = Box::pin(step).await;
    match stepped {
        Ok(()) => outcome,
        Err(e) => {
            warn!(error = %e, "the roll-up step failed: the object will be retried");
            ObjectOutcome::Retry {
                error: format!("the roll-up step failed: {e}"),
            }
        }
    }
}

/// Handles one Lambda event.
pub async fn handle(
    env: Arc<Env>,
    event: Value,
    deadline: Option<Instant>,
) -> Result<Value, HandlerError> {
    if trigger::http::is_http(&event) {
        let request = trigger::http::parse_http(&event)
            .map_err(|e| HandlerError::Unrecognised(e.to_string()))?;
        return Ok(Box::pin(crate::rollup::callback::handle(&env, &request, deadline)).await);
    }
    if trigger::http::is_scheduled(&event) {
        let report = Box::pin(crate::rollup::sweep::sweep_now(&env, deadline))
            .await
            .map_err(HandlerError::Sweep)?;
        return Ok(serde_json::to_value(report).expect("the report serialises: plain data"));
    }
    if batch::is_batch(&event) {
        let invocation =
            batch::parse_batch(&event).map_err(|e| HandlerError::Unrecognised(e.to_string()))?;
        let response = handle_batch(env, invocation, deadline).await;
        return Ok(serde_json::to_value(response).expect("the response serialises: plain data"));
    }
    let parsed = trigger::parse(&event).map_err(|e| HandlerError::Unrecognised(e.to_string()))?;
    let permits = Arc::new(Semaphore::new(PARALLEL_MESSAGES));
    let mut tasks = JoinSet::new();
    let count = parsed.messages.len();
    // Kept outside the tasks: a task that panics takes its message with it, not its id.
    let ids: Vec<Option<String>> = parsed
        .messages
        .iter()
        .map(|m| m.message_id.clone())
        .collect();
    let mut index_of = HashMap::with_capacity(count);
    for (i, message) in parsed.messages.into_iter().enumerate() {
        let env = env.clone();
        let permits = permits.clone();
        let task = tasks.spawn(
            async move {
                let _permit = permits.acquire_owned().await;
                run_message(env, message, deadline).await
            }
            .in_current_span(),
        );
        index_of.insert(task.id(), i);
    }
    let mut done: Vec<Option<MessageResult>> = (0..count).map(|_| None).collect();
    while let Some(joined) = tasks.join_next_with_id().await {
        let (id, result) = match joined {
            Ok((id, r)) => (id, r),
            Err(e) => {
                let id = e.id();
                let i = index_of.get(&id).copied();
                let message_id = i.and_then(|i| ids[i].clone());
                let error = task_failure(e);
                warn!(
                    message_id = ?message_id,
                    error = %sanitize_for_log(&error),
                    "a message task failed: the message will be retried"
                );
                let failed = MessageResult {
                    results: vec![
                        json!({"message_id": message_id, "outcome": "retry", "error": error}),
                    ],
                    message_id,
                    retry: Some(error),
                };
                (id, failed)
            }
        };
        if let Some(&i) = index_of.get(&id) {
            done[i] = Some(result);
        }
    }
    // Every task is joined above, so none is missing; should one be, it is retried like any
    // failure, under the id it was spawned with.
    let done: Vec<MessageResult> = done
        .into_iter()
        .zip(ids)
        .map(|(r, message_id)| {
            r.unwrap_or(MessageResult {
                message_id,
                results: Vec::new(),
                retry: Some("the message task stopped unexpectedly".into()),
            })
        })
        .collect();
    let results: Vec<Value> = done.iter().flat_map(|m| m.results.clone()).collect();
    let failed: Vec<&MessageResult> = done.iter().filter(|m| m.retry.is_some()).collect();
    let unreportable = failed.iter().any(|m| m.message_id.is_none());
    if parsed.is_sqs && !unreportable {
        let failures: Vec<Value> = failed
            .iter()
            .filter_map(|m| m.message_id.clone())
            .map(|id| json!({"itemIdentifier": id}))
            .collect();
        let summary = Value::Array(results);
        info!(messages = count, failures = failures.len(), results = %summary, "batch finished");
        // Exactly the shape Lambda's ReportBatchItemFailures expects, nothing else.
        return Ok(json!({"batchItemFailures": failures}));
    }
    // Not SQS, or an SQS message failed that cannot be named: the invocation fails (for SQS,
    // the whole batch becomes visible again).
    if let Some(first) = failed.first() {
        return Err(HandlerError::Retryable {
            failed: failed.len(),
            total: count,
            first: first.retry.clone().unwrap_or_default(),
        });
    }
    Ok(json!({"results": results}))
}

/// A task's result for S3 Batch Operations: `Succeeded` for a manifest that stands (complete,
/// partial, skipped, a duplicate, a notification superseded by a newer version), with the
/// manifest key (or why nothing was written) as its string; `TemporaryFailure` for anything
/// retryable, and for a `failed` manifest caused by the environment (a limit, a permission:
/// Batch Operations redrives it, and `backfill --failed-only` picks it up once fixed);
/// `PermanentFailure` for a `failed` manifest caused by the object itself or for a missing key,
/// with the reason.
pub fn batch_result(outcome: &ObjectOutcome) -> (ResultCode, String) {
    match outcome {
        ObjectOutcome::Done { manifest, .. } => match (manifest.status, manifest.failure) {
            (Status::Failed, failure) => {
                let cause = failure.map_or(FailureCause::Object, |f| f.cause);
                let reason = manifest
                    .errors
                    .first()
                    .map(|e| e.message.as_str())
                    .or_else(|| {
                        manifest
                            .parts
                            .iter()
                            .find_map(|p| p.errors.first().map(|e| e.message.as_str()))
                    })
                    .unwrap_or("the object could not be read");
                let code = match cause {
                    FailureCause::Environment => ResultCode::TemporaryFailure,
                    FailureCause::Object | FailureCause::Missing => ResultCode::PermanentFailure,
                };
                (
                    code,
                    format!(
                        "failed ({}): {reason}; manifest {}",
                        cause.as_str(),
                        manifest.manifest_key
                    ),
                )
            }
            _ => (ResultCode::Succeeded, manifest.manifest_key.clone()),
        },
        ObjectOutcome::Duplicate { manifest_key, .. } => {
            (ResultCode::Succeeded, manifest_key.clone())
        }
        ObjectOutcome::Skipped { reason } => (ResultCode::Succeeded, format!("skipped: {reason}")),
        ObjectOutcome::Superseded { reason } => {
            (ResultCode::Succeeded, format!("superseded: {reason}"))
        }
        ObjectOutcome::Retry { error } => (ResultCode::TemporaryFailure, error.clone()),
    }
}

/// Runs every task of a Batch Operations invocation, at most [`PARALLEL_MESSAGES`] at once, and
/// answers one result per task in task order. A task that cannot be read fails alone
/// (`PermanentFailure`: the same bytes would fail again); a task that panics is retried
/// (`TemporaryFailure`).
async fn handle_batch(
    env: Arc<Env>,
    invocation: BatchInvocation,
    deadline: Option<Instant>,
) -> BatchResponse {
    let permits = Arc::new(Semaphore::new(PARALLEL_MESSAGES));
    let mut tasks = JoinSet::new();
    let count = invocation.tasks.len();
    let mut results: Vec<Option<TaskResult>> = (0..count).map(|_| None).collect();
    let mut index_of = HashMap::with_capacity(count);
    for (i, task) in invocation.tasks.iter().enumerate() {
        let ev = match &task.object {
            Ok(ev) => ev.clone(),
            Err(e) => {
                warn!(task_id = %sanitize_for_log(&task.task_id), error = %e, "Batch Operations task cannot be read");
                results[i] = Some(TaskResult::new(
                    task.task_id.clone(),
                    ResultCode::PermanentFailure,
                    &e.to_string(),
                ));
                continue;
            }
        };
        let env = env.clone();
        let permits = permits.clone();
        let job = Job {
            id: invocation.job_id.clone(),
            reprocess: invocation.reprocess,
        };
        let span = info_span!(
            "object",
            bucket = %ev.bucket,
            key = %sanitize_for_log(&ev.key),
            task_id = %sanitize_for_log(&task.task_id),
        );
        let handle = tasks.spawn(
            async move {
                let _permit = permits.acquire_owned().await;
                #[cfg(feature = "failpoints")]
                panic_failpoint("handler::message_task", &ev.key);
                let started = Instant::now();
                let outcome = process_task(&env, &ev, deadline, &job).await;
                let outcome = after_object(&env, &ev, outcome, deadline).await;
                crate::metrics::record_object(&outcome, None, started.elapsed());
                let (code, text) = batch_result(&outcome);
                info!(
                    outcome = outcome.label(),
                    result_code = ?code,
                    duration_ms = started.elapsed().as_millis() as u64,
                    "Batch Operations task finished"
                );
                (code, text)
            }
            .instrument(span),
        );
        index_of.insert(handle.id(), i);
    }
    while let Some(joined) = tasks.join_next_with_id().await {
        let (id, (code, text)) = match joined {
            Ok(done) => done,
            Err(e) => {
                let id = e.id();
                let error = task_failure(e);
                warn!(error = %sanitize_for_log(&error), "a Batch Operations task failed: it will be retried");
                (id, (ResultCode::TemporaryFailure, error))
            }
        };
        if let Some(&i) = index_of.get(&id) {
            results[i] = Some(TaskResult::new(
                invocation.tasks[i].task_id.clone(),
                code,
                &text,
            ));
        }
    }
    let results = results
        .into_iter()
        .zip(&invocation.tasks)
        .map(|(r, task)| {
            r.unwrap_or_else(|| {
                TaskResult::new(
                    task.task_id.clone(),
                    ResultCode::TemporaryFailure,
                    "the task stopped unexpectedly",
                )
            })
        })
        .collect();
    BatchResponse::new(&invocation, results)
}
