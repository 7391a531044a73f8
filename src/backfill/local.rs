//! `backfill --local`: this machine processes the picked objects itself, through the same
//! pipeline as the Lambda function (`pipeline::process_event` on a synthesized object event, no
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

/// Objects in flight by default: 32 per CPU, at least 16 and at most 128.
///
/// A small object spends its time waiting on S3, not on the CPU: the pipeline makes several
/// requests in a row for one (the manifest read, HEAD, GET, the part and the conditional
/// manifest write: five, BENCHMARKS.md), and the decoding runs on the blocking pool. Measured on
/// 2 cores with 1,000 message archives and 20 ms per request (docs/DEPLOY.md; a build from
/// before the request cuts, about eight requests an object): 24 objects/s at 4 in flight, 99 at
/// 16, 184 at 32, 239 at 64, 213 at 128, so 32 per core. The cap bounds memory: an object in
/// flight holds at most three 8 MiB part buffers and its read-ahead, about 26 MiB, so 128 large
/// exports stay near 3.3 GiB; a small object holds about 1 MiB.
pub fn default_concurrency() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cpus * 32).clamp(16, 128)
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
/// run), so that its manifests record the run (`source.batch_job_id`) and a retried object is
/// reprocessed at most once per run.
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

/// The id of a `--local` run, as its manifests record it in `source.batch_job_id`:
/// `local-` and a job id (`local-20250401T171500Z-3fa2`).
pub fn run_id() -> String {
    format!("local-{}", super::job::new_job_id())
}

/// Processes `objects`, `concurrency` at a time, as the run `job`, with a progress bar on a
/// terminal; returns what happened to them.
pub async fn run(
    env: Arc<Env>,
    objects: Vec<Listed>,
    concurrency: usize,
    job: Job,
) -> (Summary, Duration) {
    let job = Arc::new(job);
    let started = Instant::now();
    let total_bytes: u64 = objects.iter().map(|o| o.size).sum();
    let bar = Progress::objects(objects.len() as u64);
    let mut summary = Summary::default();
    let mut in_flight: HashMap<tokio::task::Id, (String, u64)> = HashMap::new();
    let mut tasks = JoinSet::new();
    let mut queue = objects.into_iter();
    let mut done_bytes = 0u64;
    loop {
        while tasks.len() < concurrency.max(1)
            && let Some(obj) = queue.next()
        {
            let (env, job) = (env.clone(), job.clone());
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
                "{:.0} objects/s, {} of {}, {} failed",
                summary.objects() as f64 / started.elapsed().as_secs_f64().max(1e-3),
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
