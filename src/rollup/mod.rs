//! Roll-ups: one manifest for a group of objects that Braze writes with no completion marker.
//!
//! An API user export is one folder, `segment-export/<segment>/<date>/<object_prefix>/`, of
//! many objects. [`export`] closes it into an export manifest
//! (`<OUTPUT_PREFIX>exports/<folder>/export.manifest.json`) when Braze's callback says it is
//! done ([`callback`]), when the scheduled sweep finds it quiet ([`sweep`]), or by hand
//! (`export-fetcher close-export`). A file that arrives after the close amends it (generation
//! + 1). Every generation is written once (conditional writes) and forwarded once per sink.
//!
//! While an export is open, a small record under `<OUTPUT_PREFIX>open/exports/<folder>/` names
//! it (written when one of its objects is indexed), so that the sweep's cost grows with the
//! number of open exports, never with the bucket. The record also holds a close that waits for
//! files still being indexed. Listing the folder, not the records, is the truth of which files
//! an export holds.
//!
//! A Currents partition, one (integration, event type, hour), is closed the same way into a
//! partition manifest and a Redshift COPY manifest ([`partition`]) by the sweep, once the hour
//! and `CURRENTS_GRACE_MINUTES` have passed.
//!
//! This layer sits between the pipeline (which it calls to index a file the close finds without
//! its manifest) and the handler (which calls it after each object and for the callback and the
//! schedule).

pub mod callback;
mod closer;
pub mod export;
pub mod glue;
pub mod partition;
pub mod sweep;

/// The roll-up step after an object was indexed (or found indexed) by its notification or
/// task: an API export's file keeps its export open or amends it ([`export::after_object`]), a
/// Currents file its partition ([`partition::after_object`]). `result`: the manifest this run
/// wrote (a roll-up that lists the file with another result is amended). `Err`: the object is
/// retried.
pub async fn after_object(
    env: &crate::pipeline::Env,
    bucket: &str,
    key: &str,
    etag: Option<&str>,
    result: Option<&crate::manifest::Manifest>,
    deadline: Option<std::time::Instant>,
) -> Result<(), String> {
    export::after_object(env, bucket, key, etag, result, deadline).await?;
    partition::after_object(env, bucket, key, etag, result, deadline).await
}

/// The unix second now.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Unix seconds as RFC 3339 (`…Z`), as the manifests write times.
pub(crate) fn rfc3339(secs: i64) -> String {
    crate::detect::unix_to_rfc3339(secs).unwrap_or_else(|| secs.to_string())
}

/// The deterministic id of one generation of a roll-up manifest (`kind` `export` or
/// `partition`, the folder or partition prefix in `bucket`): SHA-256, lowercase hex.
pub fn idempotency_key(kind: &str, bucket: &str, prefix: &str, generation: u64) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for field in [kind, bucket, prefix] {
        h.update(field.as_bytes());
        h.update([0u8]);
    }
    h.update(format!("generation:{generation}").as_bytes());
    format!("{:x}", h.finalize())
}

/// Forwards one generation of a roll-up manifest to every sink that has not accepted it
/// (delivery records under `records_dir`); nothing to do without sinks.
pub async fn forward_generation(
    env: &crate::pipeline::Env,
    out_bucket: &str,
    records_dir: &str,
    generation: u64,
    message: impl FnOnce() -> crate::sink::Outgoing,
    fresh: bool,
) -> Result<(), String> {
    if env.sinks.names().is_empty() {
        return Ok(());
    }
    let stamp = format!("generation {generation}");
    crate::pipeline::forward_message(env, out_bucket, records_dir, &stamp, &message(), fresh)
        .await
        .map(|_| ())
}

/// A small JSON object of the output (a roll-up manifest, an open record) and its ETag; `what`
/// names it in errors. `Ok(None)` when there is none.
pub(crate) async fn read_json<T: serde::de::DeserializeOwned>(
    env: &crate::pipeline::Env,
    bucket: &str,
    key: &str,
    what: &str,
) -> Result<Option<(T, String)>, String> {
    match env.s3.get_small(bucket, key).await {
        Ok(None) => Ok(None),
        Ok(Some((body, etag))) => serde_json::from_slice::<T>(&body)
            .map(|v| Some((v, etag)))
            .map_err(|e| format!("the {what} {key:?} cannot be read: {e}")),
        Err(e) => Err(closer::store_error(&format!("reading the {what}"), e)),
    }
}

/// Whether a roll-up's files (key, ETag, status, records) list this version of `key` with this
/// result of its own manifest (when given: a file indexed again may have a new one).
pub(crate) fn lists_version<'a>(
    mut files: impl Iterator<Item = (&'a str, Option<&'a str>, crate::manifest::Status, u64)>,
    key: &str,
    etag: Option<&str>,
    result: Option<&crate::manifest::Manifest>,
) -> bool {
    files.any(|(k, e, status, records)| {
        k == key
            && (etag.is_none() || e == etag)
            && result.is_none_or(|m| status == m.status && records == m.totals.records)
    })
}
