//! The close shared by both roll-ups: list the group's objects (the truth of which files
//! exist), read each file's manifest for the listed version, index the ones without (or wait
//! for them), write the next generation of the roll-up manifest where the standing one does not
//! list every file with its current result, and list again.
//!
//! Every generation is written conditionally (`If-None-Match` for the first, `If-Match` on the
//! one it replaces), so concurrent closers write it once; the loser reads it back and stops when
//! it already lists every file. After writing, the closer lists again: a file that appeared
//! meanwhile makes it amend at once (generation + 1). What differs between an API export and a
//! Currents partition (the manifest, what follows a write) is a [`RollUp`].

use std::future::Future;
use std::time::Instant;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::info;

use crate::manifest::{Manifest, manifest_key};
use crate::pipeline::{Env, ObjectOutcome, process_event};
use crate::store::s3::Listed;
use crate::store::{Condition, StoreError};
use crate::trigger::{Envelope, ObjectEvent};

use super::rfc3339;

/// Manifests read at once while closing.
const PARALLEL_READS: usize = 8;
/// Rounds of write-then-check before a close gives up (and is retried).
pub(super) const ATTEMPTS: usize = 4;

/// The group a roll-up closes: the source bucket, the group's prefix in it, and where the
/// roll-up manifest is written.
pub(super) struct Group<'a> {
    pub bucket: &'a str,
    pub prefix: &'a str,
    pub manifest_key: String,
}

/// What a close read before it builds a generation: the standing one (if any) and its ETag,
/// the listing, and each listed file's manifest.
pub(super) struct Look<'a, M> {
    pub existing: Option<&'a (M, String)>,
    pub files: &'a [Listed],
    pub manifests: &'a [Option<Manifest>],
}

/// Where a generation this call wrote goes: `fresh` when it is generation 1.
pub(super) struct Wrote<'a> {
    pub out_bucket: &'a str,
    pub deadline: Option<Instant>,
    pub fresh: bool,
}

/// One kind of roll-up: its group of objects and its manifest.
pub(super) trait RollUp: Sync {
    type Manifest: Clone + Send + Sync + Serialize + DeserializeOwned;
    type File: PartialEq;
    /// `export` or `partition`, in errors.
    const WHAT: &'static str;
    /// The `source.event_name` of a file's manifest when a close indexed it.
    const CLOSE_EVENT_NAME: &'static str;
    fn group(&self, env: &Env) -> Group<'_>;
    fn files(m: &Self::Manifest) -> &[Self::File];
    /// The next generation.
    fn build(&self, env: &Env, look: Look<'_, Self::Manifest>) -> Self::Manifest;
    /// What follows a generation this call wrote (a log line, a Redshift manifest, metrics)
    /// and its forwarding: `Ok(Some(error))` when a sink did not take it.
    fn written(
        &self,
        env: &Env,
        m: &Self::Manifest,
        to: Wrote<'_>,
    ) -> impl Future<Output = Result<Option<String>, CloseError>> + Send;
}

/// What [`close`] did.
#[derive(Debug)]
pub(super) enum Outcome<M> {
    /// This call wrote a generation; `settled` when it then found it standing with every file.
    Written {
        manifest: Box<M>,
        forward_error: Option<String>,
        settled: bool,
    },
    /// The roll-up manifest already lists every file: nothing written.
    Unchanged(Box<M>),
    /// Some files have no manifest yet (when the close waits for them): nothing written.
    Waiting(Vec<String>),
    /// The prefix holds no object.
    Empty,
}

/// Reads the roll-up manifest standing at `r`'s key, and its ETag.
pub(super) async fn read_standing<R: RollUp>(
    env: &Env,
    out_bucket: &str,
    key: &str,
) -> Result<Option<(R::Manifest, String)>, CloseError> {
    super::read_json(env, out_bucket, key, &format!("{} manifest", R::WHAT)).await
}

/// Closes `r` now. `index_missing`: a file without its manifest is indexed on the spot;
/// otherwise the close waits ([`Outcome::Waiting`]).
pub(super) async fn close<R: RollUp>(
    env: &Env,
    r: &R,
    index_missing: bool,
    deadline: Option<Instant>,
) -> Result<Outcome<R::Manifest>, CloseError> {
    let Group {
        bucket,
        prefix,
        manifest_key: key,
    } = r.group(env);
    let out_bucket = env.output_bucket(bucket).to_string();
    let mut written: Option<(Box<R::Manifest>, Option<String>)> = None;
    let mut files = list_objects(env, bucket, prefix).await?;
    for _ in 0..ATTEMPTS {
        let existing = read_standing::<R>(env, &out_bucket, &key).await?;
        if files.is_empty() {
            return Ok(existing.map_or(Outcome::Empty, |(m, _)| Outcome::Unchanged(Box::new(m))));
        }
        let mut manifests = read_manifests(env, &out_bucket, &files).await?;
        if manifests.iter().any(Option::is_none) {
            let missing = files.iter().zip(&manifests).filter(|(_, m)| m.is_none());
            if !index_missing {
                return Ok(Outcome::Waiting(
                    missing.map(|(f, _)| f.key.clone()).collect(),
                ));
            }
            for (file, _) in missing {
                index_file(env, file, bucket, R::CLOSE_EVENT_NAME, deadline).await?;
            }
            manifests = read_manifests(env, &out_bucket, &files).await?;
        }
        let look = Look {
            existing: existing.as_ref(),
            files: &files,
            manifests: &manifests,
        };
        let manifest = r.build(env, look);
        if let Some((m, _)) = &existing
            && R::files(m) == R::files(&manifest)
        {
            // Done: by this call (checked after its write) or by another closer. Compared file
            // by file with the manifests as they are now, so that a file indexed again (a new
            // result for the same version) makes the next generation too.
            return Ok(match written {
                Some((manifest, forward_error)) => Outcome::Written {
                    manifest,
                    forward_error,
                    settled: true,
                },
                None => Outcome::Unchanged(Box::new(m.clone())),
            });
        }
        let condition = match &existing {
            None => Condition::IfNoneMatch,
            Some((_, etag)) => Condition::IfMatch(etag.clone()),
        };
        let fresh = condition == Condition::IfNoneMatch;
        let body = serde_json::to_vec_pretty(&manifest).expect("roll-up manifest serialises");
        let put = env
            .s3
            .put_small(&out_bucket, &key, body, "application/json", condition)
            .await;
        match put {
            Ok(()) => {
                let to = Wrote {
                    out_bucket: &out_bucket,
                    deadline,
                    fresh,
                };
                let forward_error = r.written(env, &manifest, to).await?;
                written = Some((Box::new(manifest), forward_error));
            }
            // Another closer wrote a generation meanwhile: look again.
            Err(StoreError::PreconditionFailed) => {}
            Err(e) => return Err(store_error(&format!("writing the {} manifest", R::WHAT), e)),
        }
        // List again: a file that appeared while this close ran is amended at once.
        files = list_objects(env, bucket, prefix).await?;
    }
    match written {
        Some((manifest, forward_error)) => Ok(Outcome::Written {
            manifest,
            forward_error,
            settled: false,
        }),
        None => Err(format!(
            "the {} kept changing while it was closed: retried",
            R::WHAT
        )),
    }
}

/// Why a close could not finish (all retryable: S3, the pipeline, a race that kept going).
pub type CloseError = String;

pub(super) fn store_error(what: &str, e: StoreError) -> CloseError {
    format!("{what}: {e}")
}

/// The objects under `prefix`, in key order, as listed (folder markers left out).
pub(super) async fn list_objects(
    env: &Env,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<Listed>, CloseError> {
    let mut files = env
        .s3
        .list(bucket, prefix, None)
        .await
        .map_err(|e| store_error("listing the objects under the prefix", e))?
        .objects;
    files.retain(|f| !f.key.ends_with('/'));
    files.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(files)
}

/// A file's manifest, when one is written for this version of it (same ETag).
async fn manifest_of(
    env: &Env,
    out_bucket: &str,
    file: &Listed,
) -> Result<Option<Manifest>, CloseError> {
    let key = manifest_key(&env.cfg.output_prefix, &file.key);
    match env.s3.get_small(out_bucket, &key).await {
        Ok(None) => Ok(None),
        Ok(Some((body, _))) => Ok(serde_json::from_slice::<Manifest>(&body)
            .ok()
            .filter(|m| file.etag.is_none() || m.source.etag == file.etag)),
        Err(e) => Err(store_error("reading a file's manifest", e)),
    }
}

/// Indexes a file the close found without its manifest, through the pipeline (as if its
/// notification had come). `Ok(true)`: a manifest now stands; `Ok(false)`: the key filters
/// leave it out.
pub(super) async fn index_file(
    env: &Env,
    file: &Listed,
    bucket: &str,
    event_name: &str,
    deadline: Option<Instant>,
) -> Result<bool, CloseError> {
    let ev = ObjectEvent {
        bucket: bucket.to_string(),
        key: file.key.clone(),
        size: Some(file.size),
        etag: file.etag.clone(),
        version_id: None,
        sequencer: None,
        event_time: file.last_modified.map(rfc3339),
        event_name: event_name.to_string(),
        envelope: Envelope::S3,
    };
    match Box::pin(process_event(env, &ev, deadline)).await {
        ObjectOutcome::Done { .. } | ObjectOutcome::Duplicate { .. } => Ok(true),
        ObjectOutcome::Skipped { reason } => {
            info!(key = %crate::sanitize_for_log(&file.key), reason = %reason, "file left out of its roll-up by the key filters");
            Ok(false)
        }
        ObjectOutcome::Superseded { reason } => Err(format!(
            "{:?} changed while its roll-up was closed ({reason}): retried",
            file.key
        )),
        ObjectOutcome::Retry { error } => Err(format!("indexing {:?}: {error}", file.key)),
    }
}

pub(super) async fn read_manifests(
    env: &Env,
    out_bucket: &str,
    files: &[Listed],
) -> Result<Vec<Option<Manifest>>, CloseError> {
    // Chunks of futures collected up front (a stream combinator's closure would make the future
    // not `Send` for every lifetime, which the handler's tasks need).
    let mut out = Vec::with_capacity(files.len());
    for chunk in files.chunks(PARALLEL_READS) {
        let reads: Vec<_> = chunk
            .iter()
            .map(|f| manifest_of(env, out_bucket, f))
            .collect();
        for read in futures_util::future::join_all(reads).await {
            out.push(read?);
        }
    }
    Ok(out)
}
