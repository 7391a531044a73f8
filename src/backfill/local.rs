//! `backfill --local`: this machine processes the picked objects itself, through the same
//! pipeline as the Lambda function (`pipeline::process_task` on a synthesized object event, no
//! deadline), many at a time.
//!
//! Resumable: a rerun lists again and skips objects whose manifest is current (the selection
//! pass), and the pipeline itself answers an object that got its manifest meanwhile as a
//! duplicate, so an interrupted run loses at most the objects in flight, which the rerun picks
//! up. A retryable failure (throttling, a dropped connection) is tried [`ATTEMPTS`] times,
//! then counted as failed; the rerun picks it up too.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tracing::{Instrument, info_span};

use super::progress::{self, Progress};
use super::select::Listed;
use super::summary::Summary;
use crate::pipeline::{self, Env, Job, ObjectOutcome};
use crate::trigger::{Envelope, ObjectEvent};

/// The `event_name` of the objects `--local` processes, as their manifests record it.
pub const LOCAL_EVENT_NAME: &str = "Backfill:Local";
/// Attempts per object when the pipeline answers "retry".
pub const ATTEMPTS: u32 = 3;
/// The wait before the second attempt; doubled before each next one.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// Objects in flight by default: eight per CPU, at least 8 and at most 128.
///
/// Per object the pipeline makes a handful of sequential S3 requests (HEAD, GETs, the
/// conditional manifest write) whose latency, not the CPU, bounds a small object; the decoding
/// runs on the blocking pool, so objects waiting on S3 leave the cores to the others. Eight per
/// core keeps the cores busy with 2 KiB objects against S3's ~20 ms (measured numbers in
/// docs/DEPLOY.md). The cap bounds memory: an object in flight holds up to three 8 MiB part
/// buffers and its read-ahead, about 26 MiB, so 128 large objects stay under 4 GiB; a small
/// object holds about 1 MiB.
pub fn default_concurrency() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cpus * 8).clamp(8, 128)
}

/// The object-created event `--local` feeds the pipeline for a listed object. Its ETag lets the
/// pipeline notice an object overwritten since the listing (superseded: the new upload has its
/// own notification).
pub fn event_of(obj: &Listed) -> ObjectEvent {
    ObjectEvent {
        bucket: obj.bucket.clone(),
        key: obj.key.clone(),
        size: Some(obj.size),
        etag: obj.etag.clone(),
        version_id: obj.version_id.clone(),
        sequencer: None,
        event_time: obj
            .last_modified
            .and_then(|t| t.fmt(aws_sdk_s3::primitives::DateTimeFormat::DateTime).ok()),
        event_name: LOCAL_EVENT_NAME.to_string(),
        // No envelope carried it: as if S3 had invoked the function directly.
        envelope: Envelope::S3,
    }
}

/// The pipeline, for one object: the one place `--local` enters it, as a task of `job` (the
/// run's id is recorded in the manifests it writes; with `--reprocess` a current manifest is
/// indexed again, once per run: a retry of the same run finds its own generation).
async fn process(env: &Env, ev: &ObjectEvent, job: &Job) -> ObjectOutcome {
    pipeline::process_task(env, ev, None, job).await
}

/// One object, with retries of retryable failures.
async fn process_with_retries(env: &Env, ev: &ObjectEvent, job: &Job) -> ObjectOutcome {
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        let outcome = process(env, ev, job).await;
        if !matches!(outcome, ObjectOutcome::Retry { .. }) || attempt == ATTEMPTS {
            return outcome;
        }
        tokio::time::sleep(backoff).await;
        backoff *= 2;
        attempt += 1;
    }
}

/// Processes `objects`, `concurrency` at a time, with a progress bar on a terminal; returns
/// what happened to them.
pub async fn run(
    env: Arc<Env>,
    objects: Vec<Listed>,
    concurrency: usize,
    reprocess: bool,
) -> (Summary, Duration) {
    let started = Instant::now();
    let total_bytes: u64 = objects.iter().map(|o| o.size).sum();
    let bar = Progress::objects(objects.len() as u64);
    let mut summary = Summary::default();
    let mut in_flight: HashMap<tokio::task::Id, (String, u64)> = HashMap::new();
    let mut tasks = JoinSet::new();
    let mut queue = objects.into_iter();
    let mut done_bytes = 0u64;
    let job = Arc::new(Job {
        id: Some(format!("local-{}", super::job::new_job_id())),
        reprocess,
    });
    loop {
        while tasks.len() < concurrency.max(1)
            && let Some(obj) = queue.next()
        {
            let env = env.clone();
            let job = job.clone();
            let ev = event_of(&obj);
            let span = info_span!("object", bucket = %obj.bucket, key = %crate::sanitize_for_log(&obj.key));
            let handle = tasks
                .spawn(async move { process_with_retries(&env, &ev, &job).await }.instrument(span));
            in_flight.insert(handle.id(), (obj.key, obj.size));
        }
        let Some(joined) = tasks.join_next_with_id().await else {
            break;
        };
        let (id, outcome) = match joined {
            Ok((id, outcome)) => (id, outcome),
            Err(e) => (e.id(), panicked(&e.to_string())),
        };
        let (key, size) = in_flight.remove(&id).unwrap_or_default();
        summary.record(&key, size, &outcome);
        done_bytes += size;
        bar.inc();
        bar.message(|| {
            format!(
                "{} of {}, {} failed",
                progress::bytes(done_bytes),
                progress::bytes(total_bytes),
                summary.failed()
            )
        });
    }
    bar.finish();
    (summary, started.elapsed())
}

/// The outcome of an object whose task panicked: a failure of that object alone, written
/// nowhere, so that a rerun picks it up.
fn panicked(message: &str) -> ObjectOutcome {
    ObjectOutcome::Retry {
        error: format!("processing stopped unexpectedly: {message}"),
    }
}
