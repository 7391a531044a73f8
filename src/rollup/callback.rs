//! Braze's export callback: `POST /braze/export-callback/<token>?segment_id=<SEGMENT_ID>` (or
//! `?export=global_control_group`) through the function's Function URL, with Braze's body
//! `{"success": true}`. It closes the segment's newest open export.
//!
//! Braze runs one export per segment at a time and its callback names no file nor
//! `object_prefix`, so the export is found by listing: among the folders under
//! `segment-export/<SEGMENT_ID>/` of `SOURCE_BUCKET` that have no export manifest, the one with
//! the greatest request time (the `<unix>` of `<uuid>-<unix>`). Dates are walked newest first
//! and the walk stops once no older date can hold a later request (a folder's date is the day
//! the export finished, never before its request), so a segment exported every day for years
//! costs a few listings, not one per day.
//!
//! A global control group export's folder is named by an id the caller does not know: the
//! callback closes the newest of the open exports the function has seen (its open records).
//! For a segment, the listing of its two newest dates is joined by its open records, which
//! name older exports still open without a listing per day.
//!
//! Answers (`statusCode`, JSON body): 200 when the export manifest was written now, or was
//! already (a repeated callback: no new generation); 202 when the close is recorded and waits
//! for files still being indexed (their runs complete it); 404 for a wrong token, a path or
//! method that is not the callback's, or a segment with no open export; 400 for a request
//! without a segment; 503 when S3 failed (the quiet period closes the export anyway). The token
//! is compared in constant time and never logged.

use std::time::Instant;

use serde_json::{Value, json};
use tracing::{info, warn};

use crate::pipeline::Env;
use crate::trigger::http::{HttpRequest, http_response};

use super::export::{
    self, Closed, ClosedBy, Folder, Mode, PendingClose, open_records_prefix, read_export_manifest,
    read_record,
};
use super::unix_now;

/// The callback's path, followed by the token.
pub const CALLBACK_PATH: &str = "/braze/export-callback/";
/// The `export` query value for `/users/export/global_control_group`.
pub const GLOBAL_CONTROL_GROUP: &str = "global_control_group";

/// Equal-length comparison whose time does not depend on where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // The length is not secret (the token's length is fixed by the template); the content is.
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn answer(status: u16, body: Value) -> Value {
    http_response(status, &body)
}

fn not_found() -> Value {
    answer(404, json!({"error": "not found"}))
}

/// Answers one Function URL request.
pub async fn handle(env: &Env, req: &HttpRequest, deadline: Option<Instant>) -> Value {
    let Some(token) = req.path.strip_prefix(CALLBACK_PATH) else {
        return not_found();
    };
    let Some(expected) = env.cfg.callback_token.as_deref() else {
        warn!("an export callback arrived but CALLBACK_TOKEN is not set: answered 404");
        return not_found();
    };
    if !constant_time_eq(token.as_bytes(), expected.as_bytes()) {
        warn!("an export callback with a wrong token: answered 404");
        return not_found();
    }
    if req.method != "POST" {
        return answer(405, json!({"error": "the export callback takes POST"}));
    }
    let Some(bucket) = env
        .cfg
        .source_bucket
        .clone()
        .or_else(|| env.cfg.output_bucket.clone())
    else {
        warn!("an export callback arrived but SOURCE_BUCKET is not set");
        return answer(
            500,
            json!({"error": "the function is not configured with SOURCE_BUCKET"}),
        );
    };
    // Braze's body says whether the export succeeded; a body that says nothing counts as done.
    let success = serde_json::from_slice::<Value>(&req.body)
        .ok()
        .and_then(|v| v.get("success").and_then(Value::as_bool))
        .unwrap_or(true);
    let target = match (req.param("segment_id"), req.param("export")) {
        (Some(segment), _) if !segment.is_empty() && !segment.contains('/') => {
            Target::Segment(segment.to_string())
        }
        (_, Some(GLOBAL_CONTROL_GROUP)) => Target::GlobalControlGroup,
        _ => {
            return answer(
                400,
                json!({"error": "name the export: ?segment_id=<SEGMENT_ID> or ?export=global_control_group"}),
            );
        }
    };
    match close_newest(env, &bucket, &target, success, deadline).await {
        Ok(v) => v,
        Err(e) => {
            warn!(error = %e, "the export callback could not close the export: the quiet period will");
            answer(503, json!({"error": e}))
        }
    }
}

enum Target {
    Segment(String),
    GlobalControlGroup,
}

/// Finds the export the callback is about and closes it.
async fn close_newest(
    env: &Env,
    bucket: &str,
    target: &Target,
    success: bool,
    deadline: Option<Instant>,
) -> Result<Value, String> {
    let out_bucket = env.output_bucket(bucket).to_string();
    let found = crate::store::s3::within_deadline(deadline, async {
        match target {
            Target::Segment(segment) => newest_open_of_segment(env, bucket, segment).await,
            Target::GlobalControlGroup => newest_open_recorded(env, &out_bucket).await,
        }
    })
    .await?;
    let folder = match found {
        Found::Open(folder) => *folder,
        Found::AllClosed(manifest_key) => {
            return Ok(answer(
                200,
                json!({"result": "already_closed", "manifest_key": manifest_key}),
            ));
        }
        Found::Nothing => {
            return Ok(answer(
                404,
                json!({"error": "no open export found for this callback"}),
            ));
        }
    };
    let described = |result: &str| {
        json!({"result": result, "folder": folder.prefix,
               "manifest_key": export::export_manifest_key(&env.cfg.output_prefix, &folder.prefix)})
    };
    let close_now = || {
        export::close(
            env,
            &folder,
            ClosedBy::Callback,
            Mode::Wait,
            !success,
            deadline,
        )
    };
    let first = close_now().await?;
    let closed = match first {
        Closed::Waiting { .. } => {
            // Recorded first, then looked at again: a file whose run finished in between is
            // seen here, and one that finishes later sees the recorded close.
            export::record_pending_close(
                env,
                &out_bucket,
                &folder,
                PendingClose {
                    by: ClosedBy::Callback,
                    at: unix_now(),
                    success,
                },
            )
            .await?;
            close_now().await?
        }
        other => other,
    };
    Ok(match closed {
        Closed::Written { manifest, .. } => {
            info!(folder = %folder.prefix, generation = manifest.generation, "export closed by Braze's callback");
            let mut body = described("closed");
            body["generation"] = json!(manifest.generation);
            body["status"] = json!(manifest.status.as_str());
            answer(200, body)
        }
        Closed::Unchanged(manifest) => {
            let mut body = described("already_closed");
            body["generation"] = json!(manifest.generation);
            answer(200, body)
        }
        Closed::Waiting { missing } => {
            info!(folder = %folder.prefix, waiting_for = missing.len(), "export close recorded: waiting for files still being indexed");
            let mut body = described("waiting");
            body["waiting_for"] = json!(missing.len());
            answer(202, body)
        }
        Closed::Empty => answer(
            404,
            json!({"error": "no open export found for this callback"}),
        ),
    })
}

enum Found {
    Open(Box<Folder>),
    /// No open export, and the newest one is closed: a repeated callback.
    AllClosed(String),
    Nothing,
}

/// End of the day `date` (`YYYY-MM-DD`), unix seconds.
fn end_of_day(date: &str) -> Option<i64> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let day = time::Date::parse(date, &format).ok()?;
    Some(day.next_day()?.midnight().assume_utc().unix_timestamp())
}

/// The open export of `segment` with the greatest request time (see the module docs).
async fn newest_open_of_segment(env: &Env, bucket: &str, segment: &str) -> Result<Found, String> {
    let out_bucket = env.output_bucket(bucket).to_string();
    let root = format!("segment-export/{segment}/");
    let mut dates = env
        .s3
        .list(bucket, &root, Some("/"))
        .await
        .map_err(|e| format!("listing {root}: {e}"))?
        .prefixes;
    dates.sort();
    dates.reverse();
    let mut best: Option<(i64, Folder)> = None;
    let mut newest_closed: Option<(i64, String)> = None;
    let mut dates_walked = 0;
    for date_prefix in dates {
        let date = date_prefix
            .strip_prefix(&root)
            .unwrap_or("")
            .trim_end_matches('/');
        let Some(end) = end_of_day(date) else {
            continue;
        };
        // Nothing under this date or an older one was requested after the best so far.
        if best.as_ref().is_some_and(|(t, _)| end <= *t) {
            break;
        }
        let folders = env
            .s3
            .list(bucket, &date_prefix, Some("/"))
            .await
            .map_err(|e| format!("listing {date_prefix}: {e}"))?
            .prefixes;
        for prefix in folders {
            let Some(folder) = Folder::parse(bucket, &prefix) else {
                continue;
            };
            let Some(t) = folder.requested_unix() else {
                continue;
            };
            if best.as_ref().is_some_and(|(b, _)| t <= *b) {
                continue;
            }
            match read_export_manifest(env, &out_bucket, &folder.prefix).await? {
                None => best = Some((t, folder)),
                Some((m, _)) => {
                    if newest_closed.as_ref().is_none_or(|(c, _)| t > *c) {
                        newest_closed = Some((t, m.manifest_key));
                    }
                }
            }
        }
        dates_walked += 1;
        // A callback is about a recent export: past the two newest dates, older open exports
        // are found through their open records (below) instead of a listing per day.
        if best.is_none() && dates_walked >= 2 {
            break;
        }
    }
    let recorded = open_recorded(env, &out_bucket, Some(&root)).await?;
    for (t, folder) in recorded {
        if folder.bucket == bucket && best.as_ref().is_none_or(|(b, _)| t > *b) {
            best = Some((t, folder));
        }
    }
    Ok(match (best, newest_closed) {
        (Some((_, folder)), _) => Found::Open(Box::new(folder)),
        (None, Some((_, key))) => Found::AllClosed(key),
        (None, None) => Found::Nothing,
    })
}

/// The newest open export among the open records (for the global control group).
async fn newest_open_recorded(env: &Env, out_bucket: &str) -> Result<Found, String> {
    let best = open_recorded(env, out_bucket, None)
        .await?
        .into_iter()
        .max_by_key(|(t, _)| *t);
    Ok(best.map_or(Found::Nothing, |(_, f)| Found::Open(Box::new(f))))
}

/// The exports with an open record and no export manifest (under `segment-export/<…>/` of
/// `under` when given), with their request times.
async fn open_recorded(
    env: &Env,
    out_bucket: &str,
    under: Option<&str>,
) -> Result<Vec<(i64, Folder)>, String> {
    let prefix = format!(
        "{}{}",
        open_records_prefix(&env.cfg.output_prefix),
        under.unwrap_or("")
    );
    let records = env
        .s3
        .list(out_bucket, &prefix, None)
        .await
        .map_err(|e| format!("listing {prefix}: {e}"))?
        .objects;
    let mut open = Vec::new();
    for listed in records {
        let Some((record, _)) = read_record(env, out_bucket, &listed.key).await? else {
            continue;
        };
        let Some(folder) = Folder::parse(&record.bucket, &record.folder) else {
            continue;
        };
        if read_export_manifest(env, out_bucket, &folder.prefix)
            .await?
            .is_some()
        {
            continue;
        }
        open.push((folder.requested_unix().unwrap_or(0), folder));
    }
    Ok(open)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"abcdef0123456789", b"abcdef0123456789"));
        assert!(!constant_time_eq(b"abcdef0123456789", b"abcdef012345678X"));
        assert!(!constant_time_eq(b"abcdef0123456789", b"abcdef012345678"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn days_end_at_the_next_midnight_utc() {
        assert_eq!(end_of_day("2019-04-25"), Some(1556236800));
        assert_eq!(end_of_day("2019-04-2x"), None);
    }
}
