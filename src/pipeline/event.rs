//! One object-created event, from the loop guard to the written manifest: which version the
//! notification is about and whether it is still current, whether a manifest already answers
//! it, the conditional manifest write and its lost races, and the hand-over to
//! [`super::forward`]. Indexing itself is [`super::object`].

use std::sync::Arc;
use std::time::Instant;

use tracing::info;

use crate::detect::kind_from_key;
use crate::manifest::{Failure, FailureCause, Manifest, ObjectError, Source, Status, manifest_key};
use crate::store::s3::{self, Fetched};
use crate::store::{Condition, ObjectInfo, ObjectSource, PartWriter, StoreError};
use crate::trigger::ObjectEvent;

use super::forward::forward;
use super::object::{empty_manifest, run};
use super::{Env, ObjectOutcome};

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
///
/// With `fetch`, the key is read with a ranged GET instead of a HEAD ([`S3Store::get_current`]):
/// the same answer, and a small object's whole body with it, so that new work costs one request
/// less. A likely duplicate (a manifest exists) is asked with a HEAD, which transfers nothing.
async fn current_object(
    env: &Env,
    ev: &ObjectEvent,
    fetch: bool,
) -> Result<Result<Fetched, String>, StoreError> {
    let current = if fetch {
        env.s3.get_current(&ev.bucket, &ev.key).await
    } else {
        env.s3
            .head(&ev.bucket, &ev.key, None)
            .await
            .map(|info| Fetched { info, body: None })
    };
    match (&ev.version_id, current) {
        (Some(v), Ok(f)) if f.info.version_id.as_deref() == Some(v.as_str()) => Ok(Ok(f)),
        (Some(v), Ok(Fetched { info, .. })) => Ok(Err(format!(
            "version {v:?} is no longer the current one ({:?} is)",
            info.version_id.as_deref().unwrap_or("null")
        ))),
        (Some(v), Err(StoreError::NotFound(_))) => env
            .s3
            .head(&ev.bucket, &ev.key, Some(v))
            .await
            .map(|info| Ok(Fetched { info, body: None })),
        (None, Ok(f)) => match (&ev.etag, &f.info.etag) {
            (Some(theirs), Some(now)) if theirs != now && f.info.version_id.is_none() => {
                Ok(Err(format!(
                    "the object was overwritten since this notification (ETag {theirs:?}, now {now:?})"
                )))
            }
            _ => Ok(Ok(f)),
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
    process_task(env, ev, deadline, &Job::default()).await
}

/// [`process_event`] for a task of a job (S3 Batch Operations, `backfill --local`), which may
/// ask to `reprocess`.
pub async fn process_event_with(
    env: &Env,
    ev: &ObjectEvent,
    deadline: Option<Instant>,
    reprocess: bool,
) -> ObjectOutcome {
    let job = Job {
        id: None,
        reprocess,
    };
    process_task(env, ev, deadline, &job).await
}

/// What a job asks of each of its tasks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Job {
    /// The job's id, recorded in the manifests its tasks write (`source.batch_job_id`).
    pub id: Option<String>,
    /// Index again an object version that already has its manifest: the new manifest replaces
    /// the old one with `generation` one higher and is forwarded again, once (its idempotency
    /// key names the generation). A job reprocesses each version at most once: a task of the
    /// same job that finds the manifest its job wrote (a redriven task, a key listed twice)
    /// is a duplicate. A concurrent reprocess of the same version loses the conditional
    /// manifest write and leaves the winner's generation standing.
    pub reprocess: bool,
}

/// [`process_event`] for one task of `job`.
pub async fn process_task(
    env: &Env,
    ev: &ObjectEvent,
    deadline: Option<Instant>,
    job: &Job,
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
    s3::within_deadline(deadline, process_object(env, ev, deadline, job)).await
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
async fn process_object(
    env: &Env,
    ev: &ObjectEvent,
    deadline: Option<Instant>,
    job: &Job,
) -> ObjectOutcome {
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
        batch_job_id: job.id.clone(),
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
    let (info, body) = match current_object(env, ev, existing_manifest.is_none()).await {
        Ok(Ok(Fetched { info, body })) => (info, body),
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
    let mut generation = 1;
    if let Some(m) = &existing_manifest
        && m.is_final_for(info.version_id.as_deref(), info.etag.as_deref(), info.size)
    {
        let written_by_this_job = job.id.is_some() && m.source.batch_job_id == job.id;
        if !job.reprocess || written_by_this_job {
            return forward_again(env, &out_bucket, m, deadline).await;
        }
        generation = m.generation.max(1) + 1;
    }
    meta.size = info.size;
    meta.etag = info.etag.clone();
    meta.version_id = info.version_id.clone();
    let handle = tokio::runtime::Handle::current();
    let source: Arc<dyn ObjectSource> =
        Arc::new(env.s3.source(&info, handle.clone()).with_body(body));
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
    let mut manifest = outcome.manifest;
    manifest.generation = generation;
    write_manifest(env, &out_bucket, manifest, existing_etag, deadline).await
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
    let fresh = existing_etag.is_none();
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
        Ok(()) => match forward(env, out_bucket, &manifest, deadline, fresh).await {
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
    } else if theirs.reprocessable() && !ours.reprocessable() {
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
        let fresh = condition == Condition::IfNoneMatch;
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
                return match forward(env, out_bucket, &manifest, deadline, fresh).await {
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

/// A duplicate notification: the manifest exists for this version. Forwards it to the sinks
/// that have not accepted it yet (nothing, normally).
async fn forward_again(
    env: &Env,
    out_bucket: &str,
    manifest: &Manifest,
    deadline: Option<Instant>,
) -> ObjectOutcome {
    match forward(env, out_bucket, manifest, deadline, false).await {
        Ok(deliveries) => ObjectOutcome::Duplicate {
            manifest_key: manifest.manifest_key.clone(),
            deliveries,
        },
        Err(error) => ObjectOutcome::Retry { error },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Failure;

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
}
